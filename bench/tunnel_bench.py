"""Benchmark of VXLAN / Geneve encapsulation and decapsulation pipelines, in memory, one core.

    python bench/tunnel_bench.py [--runs 7] [--passes 4] [--only NAME ...] [--json]

Each case is a pipeline written to a temp dir: a local port p1 (ofport 1), the underlay
"uplink" (ofport 2, mac, mtu 1500) and one tunnel port on it (ofport 10), local VTEP
192.0.2.1 / 2001:db8::1, remote 192.0.2.2 / 2001:db8::2 with a static [[neighbor]]; batches
of 256.  Traffic: a pool of 65,536 packets over 1024 inner flows (inner UDP source port
varies: the outer source port / flow hash varies too), inner frames 64-byte Ethernet/IPv4/UDP.

  encap cases: the inner frames arrive on p1; flows `in_port=1,actions=output:10`:
    vxlan4_encap      vxlan port, fixed remote_ip and key (IPv4 underlay, UDP csum off)
    geneve4_encap     the same with a geneve port
    vxlan4flow_encap  remote_ip = "flow", key = "flow":
                      `in_port=1,actions=set_field:5000->tun_id,set_field:192.0.2.2->tun_dst,output:10`
    vxlan6_encap      vxlan port over IPv6 (UDP checksum computed, the IPv6 default)
  decap cases: the same inner frames encapsulated by the remote VTEP (built with scapy) arrive
  on uplink; flows `in_port=10,tun_id=5000,actions=output:1`:
    vxlan4_decap      VXLAN over IPv4, outer UDP checksum 0 (csum off, the default)
    geneve4_decap     Geneve over IPv4, no options, UDP checksum 0
    vxlan6_decap      VXLAN over IPv6, outer UDP checksum computed (and verified on receive)

Each timed batch is first refilled as the pcap reader fills it (meta row zeroed, start,
length, wire length, timestamp, in_port, drop = 0; frame bytes copied) -- not timed -- then
`dpu.process(batch)` is timed (parse -> tunnels.decap -> flows -> tunnels.encap -> stats,
as a `softdpu run` calls them, tracing off).  A second loop times the stages one by one
for the split.  Every figure is the median over `runs` runs of `passes` passes of the pool;
every packet must leave by the expected port (checked on an untimed pass).
"""
import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from l2_switch_bench import Feeder, _pass_process, timed_runs  # noqa: E402
from softdpu.batch import M_LEN  # noqa: E402
from softdpu.pipeline import Dpu  # noqa: E402
from softdpu.stages.flows.outputs import S_CLONES  # noqa: E402

INNER = 64
FLOWS = 1024
POOL = 65_536
LOCAL4, REMOTE4 = "192.0.2.1", "192.0.2.2"
LOCAL6, REMOTE6 = "2001:db8::1", "2001:db8::2"
UL_MAC, REMOTE_MAC = "02:00:00:00:00:fe", "02:00:00:00:02:fe"
VNI = 5000
P1, UPLINK, TUN = 1, 2, 10

# name: (direction, tunnel type, family, flow-based)
CASES = {
    "vxlan4_encap": ("encap", "vxlan", 4, False),
    "geneve4_encap": ("encap", "geneve", 4, False),
    "vxlan4flow_encap": ("encap", "vxlan", 4, True),
    "vxlan6_encap": ("encap", "vxlan", 6, False),
    "vxlan4_decap": ("decap", "vxlan", 4, False),
    "geneve4_decap": ("decap", "geneve", 4, False),
    "vxlan6_decap": ("decap", "vxlan", 6, False),
}


def write_pipeline(tmp, direction, kind, family, flow_based):
    local, remote = (LOCAL4, REMOTE4) if family == 4 else (LOCAL6, REMOTE6)
    if direction == "encap":
        if flow_based:
            flows = (f"in_port={P1},actions=set_field:{VNI}->tun_id,"
                     f"set_field:{remote}->{'tun_dst' if family == 4 else 'tun_ipv6_dst'},output:{TUN}\n")
        else:
            flows = f"in_port={P1},actions=output:{TUN}\n"
    else:
        flows = f"in_port={TUN},tun_id={VNI},actions=output:{P1}\n"
    (tmp / "b.flows").write_text(flows)
    rem, key = ('"flow"', '"flow"') if flow_based else (f'"{remote}"', str(VNI))
    (tmp / "b.toml").write_text(f"""[pipeline]
name = "tunnel-bench"
flows = "b.flows"
batch = 256

[[port]]
name = "p1"
ofport = {P1}
type = "pcap"

[[port]]
name = "uplink"
ofport = {UPLINK}
type = "pcap"
mac = "{UL_MAC}"
mtu = 1500

[[port]]
name = "t0"
ofport = {TUN}
type = "{kind}"
underlay = "uplink"
local_ip = "{local}"
remote_ip = {rem}
key = {key}

[[neighbor]]
ip = "{remote}"
mac = "{REMOTE_MAC}"
""")
    return tmp / "b.toml"


def inner_frames(n=FLOWS):
    """uint8[n, 64]: Ethernet/IPv4/UDP frames 10.0.0.1 -> 10.0.0.2, UDP source port 1024 + k."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    head = bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02")
                 / IP(src="10.0.0.1", dst="10.0.0.2", len=INNER - 14, id=7)
                 / UDP(sport=1, dport=5000, len=INNER - 34, chksum=0))
    frame = np.frombuffer(head + bytes(INNER - len(head)), np.uint8)
    out = np.tile(frame, (n, 1))
    sport = (1024 + np.arange(n)).astype(">u2")
    out[:, 34:36] = sport.view(np.uint8).reshape(n, 2)
    return out


def outer_frames(inner, kind, family):
    """The inner frames as the remote VTEP sends them to us (scapy computes the lengths and,
    over IPv6, the UDP checksum; over IPv4 the UDP checksum is 0)."""
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    rows = []
    for k, f in enumerate(inner):
        l3 = (IP(src=REMOTE4, dst=LOCAL4, flags="DF") if family == 4 else IPv6(src=REMOTE6, dst=LOCAL6))
        u = UDP(sport=49152 + (k * 37) % 16384, dport=4789 if kind == "vxlan" else 6081)
        if family == 4:
            u.chksum = 0
        hdr = VXLAN(vni=VNI, flags=8, NextProtocol=0) if kind == "vxlan" else GENEVE(vni=VNI, proto=0x6558)
        rows.append(bytes(Ether(src=REMOTE_MAC, dst=UL_MAC) / l3 / u / hdr / Raw(f.tobytes())))
    return np.array([np.frombuffer(r, np.uint8) for r in rows])


def _pass_stages(dpu, feed):
    """parse, decap, flows, encap, stats timed one by one, as Dpu.process calls them."""
    batch, pk = dpu.batch, 0
    acc = np.zeros(5)
    tun, drop_malformed = dpu.tunnels, dpu.config.drop_malformed
    for lo in feed.batches():
        pk += feed.fill(batch, lo)
        t0 = time.perf_counter()
        dpu.parse.run(batch)
        t1 = time.perf_counter()
        tun.decap(batch, drop_malformed)
        t2 = time.perf_counter()
        dpu.flows.run(batch)
        t3 = time.perf_counter()
        tun.encap(batch, int(dpu.flows.state[S_CLONES]))
        t4 = time.perf_counter()
        dpu.stats.add(batch, dpu.port_index)
        t5 = time.perf_counter()
        acc += (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
    return acc, pk


STAGES = ("parse", "decap", "flows", "encap", "stats")


def bench_case(name, runs=7, passes=4, inner=None):
    direction, kind, family, flow_based = CASES[name]
    inner = inner_frames() if inner is None else inner
    rng = np.random.default_rng(11)
    pick = rng.integers(0, FLOWS, POOL)
    if direction == "encap":
        pool, in_port, out_port = inner[pick], P1, UPLINK
    else:
        pool, in_port, out_port = outer_frames(inner, kind, family)[pick], UPLINK, P1
    with tempfile.TemporaryDirectory() as tmp:
        dpu = Dpu.load(write_pipeline(Path(tmp), direction, kind, family, flow_based))
    if getattr(dpu, "tracer", None) is not None:
        raise AssertionError("tracing should be off")
    feed = Feeder(pool, in_port, dpu.batch.size)
    _pass_process(dpu, feed)                      # warm: kernels, flow cache
    # one untimed pass: every packet leaves by out_port, wrapped / unwrapped as expected
    batch = dpu.batch
    out, want_len = 0, (INNER + (50 if family == 4 else 70)) if direction == "encap" else INNER
    for lo in feed.batches():
        feed.fill(batch, lo)
        dpu.process(batch)
        tx = batch.tx[: batch.n_tx]
        if not ((tx[:, 1] == out_port).all() and (batch.meta[tx[:, 0], M_LEN] == want_len).all()):
            raise AssertionError(f"{name}: unexpected outputs {tx[:4, :2]} lens {batch.meta[tx[:4, 0], M_LEN]}")
        out += batch.n_tx
    if out != POOL or dpu.stats.dropped:
        raise AssertionError(f"{name}: {out} of {POOL} out, drops {dpu.stats.drop_counts()}")
    total, split = timed_runs(dpu, feed, runs, passes, _pass_stages, 5)
    if dpu.stats.dropped:
        raise AssertionError(f"{name}: drops {dpu.stats.drop_counts()}")
    split = np.array(split)

    def entry(ns):
        return {"ns_per_pkt": round(float(ns), 1), "mpps": round(1e3 / float(ns), 2)}

    res = {"total": entry(statistics.median(total)), "total_runs_ns": [round(x, 1) for x in total]}
    for k, s in enumerate(STAGES):
        res[s] = entry(np.median(split[:, k]))
    res["stages_sum"] = entry(np.median(split.sum(axis=1)))
    res.update(packets_per_run=passes * POOL, runs=runs, frame_len=int(pool.shape[1]))
    return res


def bench_tunnels(runs=7, passes=4, only=None):
    inner = inner_frames()
    return {name: bench_case(name, runs, passes, inner) for name in CASES if not only or name in only}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--only", nargs="*", choices=list(CASES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = bench_tunnels(args.runs, args.passes, args.only)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"tunnels, 64-byte inner frames in memory, batches of 256, {FLOWS} flows, median of "
          f"{args.runs} runs of {args.passes * POOL} packets (ns/packet; Mpps of dpu.process)")
    print(f"  {'case':18s} {'Mpps':>7s} {'total':>7s} " + " ".join(f"{s:>7s}" for s in STAGES) + f" {'sum':>7s}")
    for name, r in res.items():
        print(f"  {name:18s} {r['total']['mpps']:7.2f} {r['total']['ns_per_pkt']:7.1f} "
              + " ".join(f"{r[s]['ns_per_pkt']:7.1f}" for s in STAGES) + f" {r['stages_sum']['ns_per_pkt']:7.1f}")


if __name__ == "__main__":
    main()
