"""softdpu's benchmark suite for the core: parser, pcap ports, `softdpu run` end to end.

    python bench/run.py [--packets 1000000] [--json]

  parse        Parse.run on hot 256-packet batches of a realistic mix (call
               overhead included), median of repeats
  pcap_read    libpcap reader alone, 64-byte frames
  pcap_rw      reader + writer, 64-byte frames
  run_e2e      pipelines/l2-passthrough through Dpu.run_pcaps: 1M 64-byte
               IPv4/UDP frames (many flows), file in, parse, flow tables,
               file out; best of 3, kernels warm (numba cache loaded)
  run_cli      the same as one `softdpu run` process, wall clock, including
               interpreter start and loading the cached kernels
  classifier   10k rules in 50 masks (bench/classifier_bench.py): tuple-space
               search, flow cache missing and hitting, parse + flow tables
               over 64k / 1k / Zipf / 256 flows with the cache hit rate
  firewall     pipelines/firewall (ct(), conntrack) in memory
               (bench/firewall_bench.py): dpu.process on 64-byte TCP/UDP
               packets of 1k / 100k / 1M established connections, and the
               parse / flows (incl. conntrack) / stats split
  l2_switch    pipelines/l2-switch (normal, MAC learning, 2 VLANs) in memory
               (bench/l2_switch_bench.py): dpu.process on 64-byte frames of
               1000 hosts, MAC table warm, and the parse / flows / stats split
  tunnels      VXLAN / Geneve encapsulation and decapsulation pipelines in
               memory (bench/tunnel_bench.py): dpu.process on 64-byte inner
               frames, IPv4 and IPv6 underlays, fixed and flow-based tunnels,
               and the parse / decap / flows / encap / stats split

Results and the command go in bench/RESULTS.md by hand, with the date and machine.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from classifier_bench import bench_classifier  # noqa: E402
from firewall_bench import bench_firewall  # noqa: E402
from l2_switch_bench import bench_l2_switch  # noqa: E402
from parse_bench import bench_parse  # noqa: E402
from pcap_bench import bench_pcap  # noqa: E402
from tunnel_bench import STAGES, bench_tunnels  # noqa: E402


def udp_pcap(path, n, size=64, flows=4096, t0=1_700_000_000):
    """A libpcap file of n valid Ethernet/IPv4/UDP frames of `size` bytes over `flows` flows."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    head = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="10.0.0.1", dst="10.0.0.2", len=size - 14)
                 / UDP(sport=1, dport=5000, len=size - 34, chksum=0))
    frame = np.frombuffer(head + bytes(size - len(head)), np.uint8)
    rec = np.dtype([("sec", "<u4"), ("usec", "<u4"), ("incl", "<u4"), ("orig", "<u4"),
                    ("frame", "u1", (size,))])
    recs = np.zeros(n, rec)
    i = np.arange(n, dtype=np.int64)
    recs["sec"] = t0 + i // 1_000_000
    recs["usec"] = i % 1_000_000
    recs["incl"] = recs["orig"] = size
    recs["frame"] = frame
    sport = (1024 + i % flows).astype(">u2")
    recs["frame"][:, 34:36] = sport.view(np.uint8).reshape(n, 2)
    with open(path, "wb") as f:
        f.write(np.array([0xA1B2C3D4], "<u4").tobytes() + np.array([2, 4], "<u2").tobytes()
                + np.array([0, 0, 65535, 1], "<u4").tobytes())
        recs.tofile(f)


def bench_run(n, size=64, repeat=3):
    from softdpu.pipeline import Dpu

    pipeline = ROOT / "pipelines" / "l2-passthrough.toml"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.pcap"
        udp_pcap(src, n, size)
        warm = Path(tmp) / "warm.pcap"
        udp_pcap(warm, 1000, size)
        Dpu.load(pipeline).run_pcaps({"p1": warm}, Path(tmp) / "w")
        best = float("inf")
        for _ in range(repeat):
            dpu = Dpu.load(pipeline)
            t = time.perf_counter()
            stats = dpu.run_pcaps({"p1": src}, Path(tmp) / "out")
            best = min(best, time.perf_counter() - t)
            if stats.port("p2")["tx_packets"] != n:
                raise AssertionError(f"expected {n} packets out, got {stats.port('p2')}")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "softdpu.cli", "run", str(pipeline), "--in", f"p1={src}",
                        "--out-dir", str(Path(tmp) / "cli"), "--no-progress"],
                       check=True, stdout=subprocess.DEVNULL)
        cli = time.perf_counter() - t
    return {"run_e2e_mpps": n / best / 1e6, "run_e2e_ns_per_pkt": best / n * 1e9,
            "run_e2e_gbps": n * size * 8 / best / 1e9, "run_cli_mpps": n / cli / 1e6,
            "run_cli_seconds": cli}


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = {"date": time.strftime("%Y-%m-%d"), "machine": machine()}
    res.update({f"parse_{k}": v for k, v in bench_parse().items()})
    res.update(bench_pcap(n=args.packets))
    res.update(bench_run(args.packets))
    res["classifier"] = bench_classifier()
    res["l2_switch"] = bench_l2_switch()
    res["firewall"] = [bench_firewall(n) for n in (1000, 100_000, 1_000_000)]
    res["tunnels"] = bench_tunnels()
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{res['date']}  {res['machine']}")
    print(f"parse (hot 256-batches)      {res['parse_mpps']:8.1f} Mpps  {res['parse_ns_per_pkt']:6.1f} ns/pkt")
    print(f"pcap read, 64 B              {res['pcap_read']:8.1f} Mpps")
    print(f"pcap read+write, 64 B        {res['pcap_read_write']:8.1f} Mpps")
    print(f"softdpu run e2e, 64 B        {res['run_e2e_mpps']:8.2f} Mpps  {res['run_e2e_ns_per_pkt']:6.1f} ns/pkt"
          f"  {res['run_e2e_gbps']:.2f} Gbps")
    print(f"softdpu run CLI process      {res['run_cli_mpps']:8.2f} Mpps  ({res['run_cli_seconds']:.2f} s wall)")
    c = res["classifier"]
    for k, label in (("tss", "10k rules/50 masks, search"), ("cache_miss", "10k/50, cache missing"),
                     ("cache_hit", "10k/50, cache hitting"), ("e2e_many", "10k/50 parse+flows 64k fl"),
                     ("e2e_1k", "10k/50 parse+flows 1k fl"), ("e2e_zipf", "10k/50 parse+flows Zipf"),
                     ("e2e_few", "10k/50 parse+flows 256 fl")):
        hit = f"  cache hits {c[k]['cache_hit_rate']:.1%}" if "cache_hit_rate" in c[k] else ""
        print(f"{label:28s} {c[k]['mpps']:8.2f} Mpps  {c[k]['ns_per_pkt']:6.1f} ns/pkt{hit}")
    s = res["l2_switch"]
    for k, label in (("total", "l2-switch dpu.process, 64 B"), ("parse", "  parse"), ("flows", "  flows (normal)"),
                     ("stats", "  stats")):
        print(f"{label:28s} {s[k]['mpps']:8.2f} Mpps  {s[k]['ns_per_pkt']:6.1f} ns/pkt")
    for f in res["firewall"]:
        for k, label in (("total", f"firewall {f['conns']:,} conns"), ("parse", "  parse"),
                         ("flows", "  flows incl. conntrack"), ("stats", "  stats")):
            print(f"{label:28s} {f[k]['mpps']:8.2f} Mpps  {f[k]['ns_per_pkt']:6.1f} ns/pkt")
    for name, r in res["tunnels"].items():
        split = ", ".join(f"{st} {r[st]['ns_per_pkt']:.1f}" for st in STAGES)
        print(f"{'tunnel ' + name:28s} {r['total']['mpps']:8.2f} Mpps  {r['total']['ns_per_pkt']:6.1f} ns/pkt  ({split})")


if __name__ == "__main__":
    main()
