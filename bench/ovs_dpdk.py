"""Open vSwitch with DPDK, userspace datapath on one PMD core, as the in-memory peer of softdpu.

    python bench/ovs_dpdk.py CASE --pcap IN.pcap [--seconds 5]      (CASE: output normal firewall vxlan)
    from ovs_dpdk import run_case; run_case("firewall", "in.pcap", seconds=5) -> {mpps, ...}
    from ovs_dpdk import run_pipeline; run_pipeline("pipelines/acl.toml", {"p1": "p1.pcap", ...})

What runs (Debian package openvswitch-switch-dpdk; its binary is called by its full
path, /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk, so the system's
ovs-vswitchd alternative is left alone): tests/ovs_oracle.py's OvsDummy with
its private ovsdb-server and every path (database, sockets, pid files, logs)
under a temp dir, so it never meets the test suite's OVS instances.  EAL:
`--no-huge --no-pci --legacy-mem -m 1024 --file-prefix=bench-ovs-PID`, main lcore 0, one PMD
thread on core 1 (pmd-cpu-mask=0x2).  Bridge br0 (datapath_type=netdev,
fail_mode=secure): port `in` (ofport 1) a `net_pcap` vdev replaying IN.pcap
from memory forever (`infinite_rx=1`), port `out` (ofport 2) a `net_null` vdev
that frees what it is sent.  The EMC, SMC and megaflow caches are left as
OVS ships them (on), as a user would run it.

Cases (the same flows softdpu runs in bench/compare.py):
  output    in_port=1,actions=output:2                     (l2-passthrough)
  normal    actions=NORMAL                                 (learning switch)
  firewall  pipelines/firewall.flows as is: ct(table=1), commit from inside, +est passes
  vxlan     in_port=1,actions=output:10, port 10 a vxlan tunnel (remote 192.0.2.2, VNI 5000)
            whose underlay is bridge br-phy (192.0.2.1/24 on its internal port, neighbour
            192.0.2.2 set with tnl/neigh/set) with the net_null port; br-phy runs NORMAL.
            The internal port is a tap: OVS runs in a network namespace of its own here.

run_pipeline: an example pipeline as it is: its .flows (with a [firewall] compiled
by softdpu, reject as drop), one dpdk port per pipeline port with its ofport and VLAN
settings, each replaying its own capture (net_pcap, infinite_rx) or a net_null;
tunnel ports (vxlan, geneve) as bench/ovs_tunnels.py translates them: the underlay
port on a bridge of its own whose internal port has the VTEP address (OVS then runs
in a network namespace of its own), routes and neighbours as the pipeline's.
run_pipeline(..., capture=True) feeds the ports from veths instead, sends each capture
through twice and returns what left each port the second time (bench/ovs_check.py
compares it with softdpu's output before compare.py trusts a rate).
Each port loops over its own capture, so the ports' packets interleave differently
than in softdpu's merged order: out_per_packet says whether both did the same work.

Measurement: after `warm` seconds, port `in`'s RX counter (dpctl/show -s) is read,
then again `seconds` later: packets / wall seconds between the two reads = Mpps; the
`out` port's TX counter over the same interval says the packets really left
(out_per_packet).  mpps_cpu divides by the time the PMD thread was really on a CPU
over the interval (/proc/PID/task/TID/schedstat), not the wall time: on a shared
machine, the figure to compare with `softdpu bench --clock cpu`.  OVS's own "avg processing cycles per packet" comes from
`dpif-netdev/pmd-stats-show` (cleared at the start of the interval).  net_null is
given `no-rx=1`: by default it also *receives* endless null frames, which the PMD
would then spend its time on.
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ovs_oracle import ALL_OPENFLOW, OvsDummy, OvsError  # noqa: E402

VSWITCHD_DPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
EAL = "--no-huge --no-pci --legacy-mem -m 1024"   # + --file-prefix of its own
FLOWS = {
    "output": "in_port=1,actions=output:2\n",
    "normal": "actions=NORMAL\n",
    "firewall": (ROOT / "pipelines" / "firewall.flows").read_text(),
    "vxlan": "in_port=1,actions=output:10\n",
}
LOCAL, REMOTE, REMOTE_MAC, VNI = "192.0.2.1", "192.0.2.2", "02:00:00:00:02:fe", 5000


def available():
    """None if OVS-DPDK can run here, else why not."""
    if not Path(VSWITCHD_DPDK).is_file():
        return f"{VSWITCHD_DPDK} missing (apt-get install openvswitch-switch-dpdk)"
    if os.geteuid() != 0:
        return "needs root (DPDK EAL, tap device)"
    return None


class OvsDpdk(OvsDummy):
    VSWITCHD_OPTIONS = ()

    def __init__(self, tmpdir, netns=None):
        super().__init__(tmpdir, ports={})
        self.netns = netns
        self._vdevs = 0
        self.prefix = f"bench-ovs-{os.getpid()}"    # EAL's runtime files: /var/run/dpdk/<prefix>/

    def _wrap(self, argv):
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + argv

    def _spawn(self, name, argv, ready):
        if name == "ovs-vswitchd":
            argv = [VSWITCHD_DPDK, *argv[1:]]
        if self.netns and name == "ovs-vswitchd":
            # ip netns exec ... the daemon: OvsDummy._spawn resolves argv[0] with _which
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return super()._spawn(name, argv, ready)

    def start(self):
        self._paths()
        if self.db.exists():
            self.db.unlink()
        self._run("ovsdb-tool", "create", self.db, "/usr/share/openvswitch/vswitch.ovsschema")
        from ovs_oracle import unixctl
        self._spawn("ovsdb-server",
                    ["ovsdb-server", self.db, f"--remote=punix:{self.db_sock}", f"--unixctl={self.db_ctl}"],
                    ready=lambda: unixctl(self.db_ctl, "version", timeout=1) is not None)
        self._run("ovs-vsctl", f"--db=unix:{self.db_sock}", "--no-wait", "init", "--",
                  "set", "Open_vSwitch", ".", "other_config:dpdk-init=true", "other_config:vlan-limit=0",
                  f"other_config:dpdk-extra={EAL} --file-prefix={self.prefix}", "other_config:dpdk-lcore-mask=0x1",
                  "other_config:pmd-cpu-mask=0x2")
        self._spawn("ovs-vswitchd", ["ovs-vswitchd", f"unix:{self.db_sock}", f"--unixctl={self.vs_ctl}"],
                    ready=lambda: unixctl(self.vs_ctl, "version", timeout=1) is not None)
        self.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev", "fail_mode=secure",
                   "other_config:disable-in-band=true", f"protocols={ALL_OPENFLOW}")

    def add_port(self, name, ofport, pcap=None, bridge="br0", spec=None, tx_pcap=None, rx_iface=None):
        """A dpdk port: a net_pcap vdev replaying `pcap` from memory forever (what it is sent is
        dropped), or without pcap a net_null vdev (no-rx=1).  spec: tag / trunks as OvsDummy's.
        tx_pcap: instead, a net_pcap receiving what arrives on the Linux interface rx_iface
        and writing what it is sent to tx_pcap."""
        self._vdevs += 1
        k = self._vdevs
        if tx_pcap:
            devargs = f"net_pcap{k},rx_iface_in={rx_iface},tx_pcap={Path(tx_pcap).resolve()}"
        elif pcap:
            devargs = f"net_pcap{k},rx_pcap={Path(pcap).resolve()},infinite_rx=1"
        else:
            devargs = f"net_null{k},no-rx=1"
        extra = []
        for key in ("tag", "trunks", "vlan_mode"):
            if spec and key in spec:
                v = spec[key]
                extra.append(f"{key}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}")
        self.vsctl("add-port", bridge, name, *extra, "--", "set", "Interface", name, "type=dpdk",
                   f"options:dpdk-devargs={devargs}", f"ofport_request={ofport}")

    def add_out(self, bridge="br0", ofport=2):
        self.add_port("out", ofport, bridge=bridge)

    def add_vxlan_underlay(self):
        self.vsctl("add-br", "br-phy", "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
                   "other_config:hwaddr=02:00:00:00:00:fe", "other_config:disable-in-band=true")
        self.add_out("br-phy", 1)
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "addr", "add", f"{LOCAL}/24", "dev", "br-phy"],
                       check=True, timeout=20)
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "br-phy", "up"],
                       check=True, timeout=20)
        self.appctl("ovs/route/add", f"{LOCAL}/24", "br-phy")
        self.appctl("tnl/neigh/set", "br-phy", REMOTE, REMOTE_MAC)
        self.vsctl("add-port", "br0", "vx0", "--", "set", "Interface", "vx0", "type=vxlan",
                   f"options:remote_ip={REMOTE}", f"options:local_ip={LOCAL}", f"options:key={VNI}",
                   "ofport_request=10")

    def pmd_stats(self):
        text = self.appctl("dpif-netdev/pmd-stats-show")
        rx = sum(int(x) for x in re.findall(r"packets received:\s*(\d+)", text))
        cyc = re.findall(r"avg processing cycles per packet:\s*([\d.]+)", text)
        return rx, (float(cyc[0]) if cyc else None), text

    def pmd_cpu_ns(self):
        """Nanoseconds the PMD thread has been on a CPU (/proc/PID/task/TID/schedstat, first field)."""
        pid = self._procs["ovs-vswitchd"][0].pid
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if (task / "comm").read_text().startswith("pmd"):
                    total += int((task / "schedstat").read_text().split()[0])
            except OSError:
                pass
        return total

    def counters(self):
        """{port: (rx packets, tx packets)} from dpctl/show -s."""
        text = self.appctl("dpctl/show", "-s")
        return {m.group(1): (int(m.group(2)), int(m.group(3))) for m in
                re.finditer(r"port \d+: (\S+) \([^)]*\)\s*\n\s*RX packets:(\d+).*\n\s*TX packets:(\d+)", text)}


@contextlib.contextmanager
def _workspace(tmp, netns):
    """OVS-DPDK's directory (tmp, or a temporary one) and network namespace (when named):
    made, then removed with DPDK's runtime directory, also on failure."""
    own = tempfile.TemporaryDirectory(prefix="bench-ovs-dpdk-") if tmp is None else None
    try:
        if netns:
            subprocess.run(["ip", "netns", "add", netns], check=True, timeout=20)
        yield Path(tmp or own.name)
    finally:
        if netns:
            subprocess.run(["ip", "netns", "del", netns], timeout=20)
        if own is not None:
            own.cleanup()
        shutil.rmtree(f"/var/run/dpdk/bench-ovs-{os.getpid()}", ignore_errors=True)


def run_case(case, pcap, seconds=5.0, warm=3.0, tmp=None):
    """{case, mpps, ns_per_packet, ovs_cycles_per_packet, out_share, seconds}."""
    why = available()
    if why:
        raise OvsError(why)
    netns = f"bench-ovs-{os.getpid()}" if case == "vxlan" else None
    with _workspace(tmp, netns) as d:
        ovs = OvsDpdk(d, netns)
        with ovs:
            ovs.add_port("in", 1, pcap)
            if case == "vxlan":
                ovs.add_vxlan_underlay()
            else:
                ovs.add_out()
            ovs.add_flows(FLOWS[case])
            if case == "vxlan":
                ovs._run("ovs-ofctl", "add-flow", f"unix:{ovs.run_dir / 'br-phy.mgmt'}", "actions=normal")
            time.sleep(warm)
            ovs.appctl("dpif-netdev/pmd-stats-clear")
            c0 = ovs.counters()
            cpu0 = ovs.pmd_cpu_ns()
            t0 = time.perf_counter()
            time.sleep(seconds)
            c1 = ovs.counters()
            cpu1 = ovs.pmd_cpu_ns()
            dt = time.perf_counter() - t0
            pmd_rx, cycles, text = ovs.pmd_stats()
        rx = c1["in"][0] - c0["in"][0]
        tx = c1["out"][1] - c0["out"][1]
        mpps = rx / dt / 1e6
        cpu = (cpu1 - cpu0) / 1e9
        return {"case": case, "mpps": round(mpps, 3), "ns_per_packet": round(1e3 / mpps, 1) if mpps else None,
                "pmd_cpu_seconds": round(cpu, 3), "mpps_cpu": round(rx / cpu / 1e6, 3) if cpu > 0 else None,
                "ovs_cycles_per_packet": cycles, "packets": rx, "pmd_packets": pmd_rx, "seconds": round(dt, 2),
                "out_per_packet": round(tx / rx, 3) if rx else None}


def run_pipeline(pipeline, pcaps, seconds=5.0, warm=3.0, tmp=None, capture=False):
    """An example pipeline as it is in OVS-DPDK: its .flows (with a [firewall] compiled by
    softdpu, reject as drop), one dpdk port per pcap port (same ofport, tag, trunks), a
    net_pcap replaying pcaps[port name] where given, else a net_null; tunnel ports,
    their underlay bridge, routes and neighbours as bench/ovs_tunnels.py translates them
    (then OVS runs in a network namespace of its own: the underlay bridge's internal
    port is a tap).  {mpps, mpps_cpu, out_per_packet, ...}

    capture=True: each port receives from a veth in OVS's namespace and writes what it is
    sent to a pcap; once everything is set up, the captures are sent into their ports'
    veths (scapy, port after port) twice: returns {port name: [frame bytes]} of the second pass.  (A
    net_pcap reading the capture itself starts at the port's creation, before ofproto
    knows the port: OVS loses those first packets' upcalls.)"""
    import ovs_tunnels
    from ovs_oracle import port_specs, read_capture
    from softdpu import config, policy

    why = available()
    if why:
        raise OvsError(why)
    cfg = config.load(pipeline)
    if getattr(cfg, "esp", None):
        raise OvsError(f"{cfg.name}: IPsec ESP has no OVS-DPDK peer here (OVS's IPsec is the kernel's, "
                       "keyed by an IKE daemon)")
    kinds = {p.type for p in cfg.ports} - {"pcap"}
    if kinds - set(ovs_tunnels.TUNNEL_TYPES):
        raise OvsError(f"{cfg.name}: ports of type {', '.join(sorted(kinds))} are not set up in OVS-DPDK here")
    tun = ovs_tunnels.plan(cfg) if kinds else None
    text = Path(cfg.flows).read_text()
    if cfg.firewall is not None:
        text = "\n".join(policy.compile_flows(cfg.firewall, ovs=True)) + "\n" + text
    specs = port_specs(cfg)
    netns = f"bench-ovs-{os.getpid()}" if tun or capture else None
    plain = [p for p in cfg.ports if p.type == "pcap"]
    veth = {p.name: f"vcap{k}" for k, p in enumerate(plain)} if capture else {}
    with _workspace(tmp, netns) as d:
        tx = {p.name: d / f"tx-{p.name}.pcap" for p in plain} if capture else {}
        for v in veth.values():
            _veth(netns, v)
        with OvsDpdk(d, netns) as ovs:
            if tun:
                ovs_tunnels.apply(ovs, tun, netns)   # (the Geneve TLV map before flows that use it)
            ovs.add_flows(text)               # flows before the ports: packets are forwarded from the start
            for p in plain:
                u = tun["underlays"].get(p.name) if tun else None
                ovs.add_port(p.name, p.ofport, pcaps.get(p.name), bridge=u["bridge"] if u else "br0",
                             spec=None if u else specs[p.name], tx_pcap=tx.get(p.name), rx_iface=veth.get(p.name))
            if tun:
                ovs_tunnels.settle(ovs, tun)
            if capture:
                out = _captured(ovs, netns, pcaps, veth, tx, read_capture, tun)
                return out
            time.sleep(warm)
            c0, cpu0, t0 = ovs.counters(), ovs.pmd_cpu_ns(), time.perf_counter()
            time.sleep(seconds)
            c1, cpu1, dt = ovs.counters(), ovs.pmd_cpu_ns(), time.perf_counter() - t0
            lost = ovs_tunnels.neighbours_missing(ovs, tun) if tun else []
            if lost:
                raise OvsError(f"OVS lost the tunnel neighbours {lost} while measuring: rate not valid")
    rx = sum(c1[p][0] - c0[p][0] for p in pcaps)
    tx = sum(c1[p][1] - c0[p][1] for p in c1 if p in specs)
    cpu = (cpu1 - cpu0) / 1e9
    return {"pipeline": cfg.name, "mpps": round(rx / dt / 1e6, 3), "mpps_cpu": round(rx / cpu / 1e6, 3) if cpu else None,
            "pmd_cpu_seconds": round(cpu, 3), "seconds": round(dt, 2), "packets": rx,
            "out_per_packet": round(tx / rx, 3) if rx else None}


def _veth(netns, name):
    """A veth pair name / name+"p" in netns, up, without IPv6 (no router or neighbour solicitations)."""
    def ip(*argv):
        subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, timeout=20, capture_output=True)
    ip("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    for n in (name, name + "p"):
        ip("sysctl", "-qw", f"net.ipv6.conf.{n}.disable_ipv6=1")
        ip("ip", "link", "set", n, "up")


SENDER = ("import sys\nfrom scapy.all import RawPcapReader, conf\n"
          "s = conf.L2socket(iface=sys.argv[2])\n"
          "for frame, _ in RawPcapReader(sys.argv[1]):\n    s.send(frame)\ns.close()\n")


def _captured(ovs, netns, pcaps, veth, tx, read_capture, tun=None, timeout=20.0, settle=1.5):
    """Send every capture into its port's veth, port after port, twice; return what left each
    port in the second pass.  The first pass warms OVS's caches: right after start-up some
    packets are dropped by datapath flows that the revalidator replaces a moment later (seen
    with the tunnel pipelines), which says nothing about the forwarding that is timed."""
    want = {p: len(read_capture(f)) for p, f in pcaps.items()}

    def frames(port):
        path = tx[port]
        return [bytes(f) for _, f, _ in read_capture(path)] if path.exists() and path.stat().st_size > 24 else []

    time.sleep(1.0)
    first = {}
    for n in (1, 2):
        for p, f in pcaps.items():
            subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SENDER, str(Path(f).resolve()),
                            veth[p] + "p"], check=True, timeout=60, capture_output=True)
            time.sleep(0.2)
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            c = ovs.counters()
            now = {p: c.get(p, (0, 0)) for p in veth}
            if all(now[p][0] >= n * want[p] for p in pcaps) and now == last:
                break
            last = now
            time.sleep(0.5)
        else:
            raise OvsError(f"OVS-DPDK did not receive every capture within {timeout} s: {last} of {want} x {n}")
        if n == 1:
            first = {p: len(frames(p)) for p in tx}    # net_pcap flushes its tx_pcap after every burst
            time.sleep(settle)
    import ovs_tunnels
    lost = ovs_tunnels.neighbours_missing(ovs, tun) if tun else []
    if lost:
        raise OvsError(f"OVS lost the tunnel neighbours {lost} while the captures went through")
    ovs.stop()
    return {p: frames(p)[first[p]:] for p in tx}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=sorted(FLOWS))
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--keep", default=None, help="run in this directory and keep its logs")
    args = ap.parse_args(argv)
    print(json.dumps(run_case(args.case, args.pcap, args.seconds, tmp=args.keep), indent=2))


if __name__ == "__main__":
    main()
