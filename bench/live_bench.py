"""Live forwarding rate between two veths: softdpu (1 and 2 workers), the Linux bridge and
Open vSwitch's userspace datapath, in one run.

    python bench/live_bench.py [--rounds 5] [--seconds 2] [--sizes 64,1400] [--json]

    gen ns: g0 <=> d1 [dut ns: the switch under test] d2 <=> s0 :sink ns

The generator saturates the path: by default the kernel itself sends, XDP live
frames from BPF_PROG_TEST_RUN (bench/xdp_generator.py: an XDP program picks one of
`flows` UDP source ports, unknown destination MAC, so every switch floods to d2, and
returns XDP_TX out of g0 into d1's NAPI queue -- d1 has GRO on for that); with
--generator mmsg a user-space sender, sendmmsg() of 1024 prebuilt frames per call,
which on this machine offers less than softdpu forwards.  The rate is what arrives
at s0 (its rx_packets) per second of a measured window, after a warm-up second.  Each round starts each
switch in turn (interleaved, so load from other users of the machine spreads
over all), `--rounds` rounds; median / min / max over the rounds.  The CPU time
(user + system) of the switch's processes in the window is also given per
forwarded packet (the bridge's work runs in softirq on the sender's CPU: no
process to charge, so none).

Columns besides the rate: the switch's CPU per forwarded packet; the path's (the switch
plus what the generator's CPU spent beyond sending alone, measured each round with no
switch); and a model of the rate with a core each for the generator and every switch
process: 1 / max(generator CPU per packet sent, switch CPU per packet / workers) -- from
CPU times, so less sensitive to what else runs on the machine than the measured rate.

The generator is pinned to CPU 0, the switch's processes to CPU 1 (softdpu with
2 workers: CPUs 0-1, shared with the generator: this machine has 2 cores).
On veths the receive path of every frame (d1's NAPI poll -> AF_PACKET tap / bridge)
runs in the SENDER's context: the generator's CPU pays for the bridge's
forwarding and for copying into softdpu's and OVS's receive sockets; the
switch's CPU pays for s0's receive of what it sends.
OVS: a private ovsdb-server / ovs-vswitchd (own rundir, database and logs in a
temporary directory), bridge datapath_type=netdev, ports d1 and d2 (netdev-linux,
AF_PACKET), the default NORMAL flow.
"""
import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softdpu.live import netns  # noqa: E402

DST_MAC = bytes.fromhex("020000000099")
SRC_MAC = bytes.fromhex("020000000001")


# ---------------------------------------------------------------- the generator

def _frame(size, k):
    from scapy.all import IP, UDP, Ether
    f = bytes(Ether(dst=DST_MAC, src=SRC_MAC) / IP(src="10.1.0.1", dst="10.2.0.1") /
              UDP(sport=1024 + k, dport=9))
    return f + bytes(size - len(f))


def generate(ifname, size, flows, seconds, mode="xdp"):
    """Send as fast as the path takes frames for `seconds` (or until SIGTERM).

    mode "xdp": the kernel sends (bench/xdp_generator.py); "mmsg": sendmmsg() of 1024
    prebuilt frames per call, from user space (for kernels without XDP live frames)."""
    if mode == "xdp":
        import xdp_generator
        xdp_generator.run(ifname, xdp_generator.udp_frame(size, DST_MAC.hex(":"), SRC_MAC.hex(":")), flows, seconds,
                          ready=lambda: print("ready", flush=True))
        return
    import ctypes

    from softdpu.ports import afpacket as A
    from softdpu.ports.afpacket_mmsg import _sendmmsg

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s = A.open_tx_socket(ifname, max(size, 1600), "sendmmsg")
    n = 1024
    frames = np.zeros((flows, size), np.uint8)
    for k in range(flows):
        frames[k] = np.frombuffer(_frame(size, k), np.uint8)
    iov = np.zeros((n, 2), np.uint64)
    hdrs = np.zeros((n, 8), np.uint64)
    for k in range(n):
        iov[k] = (frames.ctypes.data + (k % flows) * size, size)
        hdrs[k, 2], hdrs[k, 3] = iov.ctypes.data + 16 * k, 1
    print("ready", flush=True)
    end = time.monotonic() + seconds
    fd, addr = s.sock.fileno(), hdrs.ctypes.data
    while not stop and time.monotonic() < end:
        r = _sendmmsg(fd, addr, n, 0)
        if r < 0 and ctypes.get_errno() not in (0, 105, 11):      # ENOBUFS / EAGAIN: go on
            raise OSError(ctypes.get_errno(), "sendmmsg")


# ---------------------------------------------------------------- the set-up

class Bench:
    def __init__(self, generator="xdp"):
        tag = secrets.token_hex(2)
        self.gen, self.dut, self.sink = (f"lb{tag}-{n}" for n in ("gen", "dut", "sink"))
        self.tmp = Path(tempfile.mkdtemp(prefix="softdpu-live-bench-"))
        self.made = []
        self.generator = generator

    def __enter__(self):
        for ns in (self.gen, self.dut, self.sink):
            netns.create(ns)
            self.made.append(ns)
        netns.veth(self.gen, "g0", self.dut, "d1")
        netns.veth(self.dut, "d2", self.sink, "s0")
        if self.generator == "xdp":          # XDP_TX from g0 needs d1's NAPI queue
            netns.gro_on(self.dut, "d1")
        return self

    def __exit__(self, *exc):
        for ns in self.made:
            netns.destroy(ns)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def counter(self, ns, dev, name):
        from pyroute2 import IPRoute
        with IPRoute(netns=ns) as ipr:
            link = ipr.get_links(ipr.link_lookup(ifname=dev)[0])[0]
            return link.get_attr("IFLA_STATS64")[name]

    def cpu(self, pids):
        """(user, system) CPU seconds of pids (and their threads)."""
        user = system = 0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                user += int(fields[11]) / tick
                system += int(fields[12]) / tick
            except (OSError, IndexError):
                pass
        return np.array([user, system])

    def start_generator(self, size, flows, seconds, generator=None):
        cmd = ["ip", "netns", "exec", self.gen, "taskset", "-c", "0", sys.executable, __file__, "--generate",
               "g0", "--size", str(size), "--flows", str(flows), "--seconds", str(seconds),
               "--generator", generator or self.generator]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


class Softdpu:
    def __init__(self, bench, workers, tx=None):
        self.bench, self.workers = bench, workers
        cpus = "1" if workers == 1 else "0-1"
        pipeline = ROOT / "pipelines/live/l2-switch.toml"
        if tx:                       # the same pipeline with another transmit mode
            text = pipeline.read_text().replace('flows = "../', f'flows = "{pipeline.parent.parent}/')
            pipeline = bench.tmp / f"l2-switch-{tx}.toml"
            pipeline.write_text(text.replace('type = "afpacket"', f'type = "afpacket"\ntx = "{tx}"'))
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", bench.dut, "taskset", "-c", cpus, sys.executable, "-m", "softdpu.cli", "start",
             str(pipeline), "--workers", str(workers), "--name", "bench",
             "--rundir", str(bench.tmp)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
        seen = []
        while True:
            line = self.proc.stdout.readline()
            seen.append(line)
            if " running: " in line:
                break
            if not line or len(seen) > 100:
                raise RuntimeError(f"softdpu did not start: {''.join(seen)}{self.proc.stdout.read()}")

    def pids(self):
        return netns.pids_in(self.bench.dut)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        if os.environ.get("LIVE_BENCH_VERBOSE"):
            print(out, file=sys.stderr)
        return out


class Bridge:
    def __init__(self, bench):
        from pyroute2 import IPRoute
        self.bench = bench
        with IPRoute(netns=bench.dut) as ipr:
            ipr.link("add", ifname="lbr0", kind="bridge")
            br = ipr.link_lookup(ifname="lbr0")[0]
            for dev in ("d1", "d2"):
                ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], master=br)
            ipr.link("set", index=br, state="up")

    def pids(self):
        return []

    def stop(self):
        from pyroute2 import IPRoute
        with IPRoute(netns=self.bench.dut) as ipr:
            ipr.link("del", index=ipr.link_lookup(ifname="lbr0")[0])
        return ""


class Ovs:
    def __init__(self, bench):
        self.bench = bench
        d = self.dir = bench.tmp / f"ovs-{secrets.token_hex(2)}"
        d.mkdir()
        self.env = dict(os.environ, OVS_RUNDIR=str(d), OVS_DBDIR=str(d), OVS_LOGDIR=str(d), OVS_SYSCONFDIR=str(d))
        db = f"unix:{d}/db.sock"
        self.db = db
        subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"],
                       check=True, env=self.env)
        self.server = subprocess.Popen(["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                                        f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
                                        f"--log-file={d}/ovsdb-server.log"], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(f"{d}/db.sock")
        self.vsctl("--no-wait", "init")
        self.switch = subprocess.Popen(["ip", "netns", "exec", bench.dut, "taskset", "-c", "1", "ovs-vswitchd", db,
                                        f"--pidfile={d}/ovs-vswitchd.pid", f"--unixctl={d}/ovs-vswitchd.ctl",
                                        f"--log-file={d}/ovs-vswitchd.log"], env=self.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(f"{d}/ovs-vswitchd.ctl")
        self.vsctl("add-br", "obr0", "--", "set", "bridge", "obr0", "datapath_type=netdev",
                   "--", "add-port", "obr0", "d1", "--", "add-port", "obr0", "d2")

    def vsctl(self, *args):
        subprocess.run(["ovs-vsctl", f"--db={self.db}", "--timeout=20", *args], check=True, env=self.env,
                       stdout=subprocess.DEVNULL)

    @staticmethod
    def _wait(path, timeout=20):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path} did not appear")
            time.sleep(0.05)

    def pids(self):
        return [self.switch.pid]

    def stop(self):
        from pyroute2 import IPRoute
        for p in (self.switch, self.server):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        with IPRoute(netns=self.bench.dut) as ipr:       # the bridge's internal port (a TAP) stays
            for idx in ipr.link_lookup(ifname="obr0"):
                ipr.link("del", index=idx)
        return ""


# OVS offered less: under the XDP generator's full load ovs-vswitchd leaves its core ~35 % idle and
# forwards less than when offered ~0.7 Mpps by the user-space generator; this row is OVS's better figure
GENERATOR_OF = {"ovs netdev (user-space generator)": "mmsg"}

SWITCHES = {
    "softdpu 1 worker": lambda b: Softdpu(b, 1),
    "softdpu 2 workers": lambda b: Softdpu(b, 2),
    "softdpu 1 worker sendmmsg": lambda b: Softdpu(b, 1, tx="sendmmsg"),
    "linux bridge": Bridge,
    "ovs netdev": Ovs,
    "ovs netdev (user-space generator)": Ovs,
}


class Nothing:
    """No switch: d1 is up in the dut namespace and nothing forwards (the generator's own cost)."""

    def __init__(self, bench):
        pass

    def pids(self):
        return []

    def stop(self):
        return ""


def measure(bench, make, size, flows, seconds, warm=1.0, generator=None):
    """One window with switch `make` -> {mpps (at the sink), offered (Mpps), switch CPU s (user, system),
    generator CPU s, forwarded and offered packets}."""
    sw = make(bench)
    gen = None
    try:
        gen = bench.start_generator(size, flows, warm + seconds + 60, generator)
        if gen.stdout.readline().strip() != "ready":
            raise RuntimeError("the generator did not start")
        time.sleep(warm)
        pids, gpids = sw.pids(), netns.pids_in(bench.gen)
        rx0, tx0 = bench.counter(bench.sink, "s0", "rx_packets"), bench.counter(bench.gen, "g0", "tx_packets")
        c0, g0 = bench.cpu(pids), bench.cpu(gpids)
        t0 = time.monotonic()
        time.sleep(seconds)
        rx1, tx1 = bench.counter(bench.sink, "s0", "rx_packets"), bench.counter(bench.gen, "g0", "tx_packets")
        c1, g1 = bench.cpu(pids), bench.cpu(gpids)
        dt = time.monotonic() - t0
    finally:
        if gen is not None:
            gen.terminate()
            gen.communicate(timeout=30)
        sw.stop()
    return {"mpps": (rx1 - rx0) / dt / 1e6, "offered": (tx1 - tx0) / dt / 1e6, "switch_cpu": c1 - c0,
            "gen_cpu": float((g1 - g0).sum()), "forwarded": rx1 - rx0, "sent": tx1 - tx0, "has_process": bool(pids)}


def _per_packet(m, base_gen_ns):
    """(switch CPU ns per forwarded packet as (user, system) or None, path CPU ns per forwarded packet):
    the path is the switch's processes plus what the generator's CPU spent beyond sending alone
    (the receive path runs in the sender's context on veths), per forwarded packet."""
    fwd = max(m["forwarded"], 1)
    sw = m["switch_cpu"] * 1e9 / fwd if m["has_process"] else None
    extra_gen = max(m["gen_cpu"] * 1e9 - base_gen_ns * m["sent"], 0.0)
    return sw, (float(m["switch_cpu"].sum()) * 1e9 + extra_gen) / fwd


def _dedicated(m, workers):
    """Mpps if the generator and each switch process had a core of their own: the slower of the
    generator's CPU per packet sent (with the receive work it does for the switch) and the switch's
    CPU per packet forwarded, over its workers (a model from CPU times, robust to other load)."""
    gen_ns = m["gen_cpu"] * 1e9 / max(m["sent"], 1)
    sw_ns = float(m["switch_cpu"].sum()) * 1e9 / max(m["forwarded"], 1) / workers if m["has_process"] else 0.0
    return 1e3 / max(gen_ns, sw_ns, 1e-9)


def _ratios(results, names, sizes, ours="softdpu 1 worker",
            others=("linux bridge", "ovs netdev", "ovs netdev (user-space generator)")):
    """softdpu's rate over each other switch's, round by round (the same round: the same
    conditions), and their median."""
    out = []
    for size in sizes:
        for other in others:
            if ours in names and other in names:
                per = [a[0] / max(b[0], 1e-9) for a, b in zip(results[(ours, size)], results[(other, size)])]
                out.append({"size": size, "switch": ours, "against": other, "per_round": per,
                            "median": statistics.median(per)})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--sizes", default="64,1400")
    ap.add_argument("--flows", type=int, default=64)
    ap.add_argument("--only", default=None, help="comma-separated switch names (default: all)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", default=None, help="also write the JSON (rows, ratios, every round) to this file")
    ap.add_argument("--generator", choices=("xdp", "mmsg"), default="xdp",
                    help="how the generator sends: XDP live frames in the kernel (default, bench/xdp_generator.py) "
                         "or sendmmsg from user space")
    ap.add_argument("--generate", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.generate:
        generate(args.generate, args.size, args.flows, args.seconds, args.generator)
        return 0
    names = list(SWITCHES) if not args.only else [n.strip() for n in args.only.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {(n, s): [] for n in names for s in sizes}
    with Bench(args.generator) as bench:
        for r in range(args.rounds):
            for size in sizes:
                base_ns = {}
                for g in sorted({GENERATOR_OF.get(n, args.generator) for n in names}):
                    base = measure(bench, Nothing, size, args.flows, args.seconds, generator=g)
                    base_ns[g] = base["gen_cpu"] * 1e9 / max(base["sent"], 1)
                    print(f"round {r + 1} {size:>5} B  {f'(generator {g} alone)':<18} offered "
                          f"{base['offered']:6.3f} Mpps, {base_ns[g]:.0f} ns CPU/packet sent", file=sys.stderr, flush=True)
                for n in names:
                    m = measure(bench, SWITCHES[n], size, args.flows, args.seconds, generator=GENERATOR_OF.get(n))
                    sw, path = _per_packet(m, base_ns[GENERATOR_OF.get(n, args.generator)])
                    ded = _dedicated(m, 2 if "2 workers" in n else 1)
                    results[(n, size)].append((m["mpps"], m["offered"], sw, path, ded))
                    print(f"round {r + 1} {size:>5} B  {n:<18} {m['mpps']:6.3f} Mpps (offered {m['offered']:6.3f})"
                          + (f"  switch {sw.sum():5.0f} ns CPU/packet (user {sw[0]:.0f}, system {sw[1]:.0f})"
                             if sw is not None else "") + f"  path {path:5.0f} ns CPU/packet"
                          + f"  dedicated cores ~{ded:5.3f} Mpps",
                          file=sys.stderr, flush=True)
    rows = []
    for (n, size), vals in results.items():
        rates = [v[0] for v in vals]
        sws = [float(v[2].sum()) for v in vals if v[2] is not None]
        rows.append({"switch": n, "size": size, "median_mpps": statistics.median(rates), "min_mpps": min(rates),
                     "max_mpps": max(rates), "offered_median_mpps": statistics.median(v[1] for v in vals),
                     "switch_cpu_ns": statistics.median(sws) if sws else None,
                     "path_cpu_ns": statistics.median(v[3] for v in vals),
                     "dedicated_mpps": statistics.median(v[4] for v in vals)})
    ratios = _ratios(results, names, sizes)
    if args.save:
        rounds = [{"switch": n, "size": size, "mpps": [v[0] for v in vals], "offered": [v[1] for v in vals]}
                  for (n, size), vals in results.items()]
        Path(args.save).write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg(),
                                               "argv": sys.argv[1:], "rows": rows, "ratios": ratios,
                                               "rounds": rounds}, indent=2) + "\n")
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratios}, indent=2))
        return 0
    print("| switch | frame | median Mpps | min | max | offered (median) | switch CPU ns/packet | "
          "path CPU ns/packet | Mpps, dedicated cores (model) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cpu = row["switch_cpu_ns"]
        print(f"| {row['switch']} | {row['size']} B | {row['median_mpps']:.3f} | {row['min_mpps']:.3f} | "
              f"{row['max_mpps']:.3f} | {row['offered_median_mpps']:.3f} | {f'{cpu:.0f}' if cpu else '-'} | "
              f"{row['path_cpu_ns']:.0f} | {row['dedicated_mpps']:.3f} |")
    print()
    for r in ratios:
        print(f"{r['size']} B, {r['switch']} / {r['against']} per round: "
              + ", ".join(f"{x:.2f}" for x in r["per_round"]) + f" (median {r['median']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
