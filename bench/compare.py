"""softdpu side by side with scapy, Open vSwitch with DPDK and DPDK testpmd, in one run.

    python bench/compare.py [--cases output normal firewall vxlan] [--flows 1024] [--rounds 3]
                            [--seconds 5] [--cpu 1] [--no-ovs] [--no-testpmd] [--no-examples] [--json]

The same input for every contender: a capture of 65,536 64-byte Ethernet/IPv4/UDP
frames from 02:00:00:00:00:01 / 10.0.0.1 to 02:00:00:00:00:02 / 10.0.0.2 over
`--flows` flows (UDP source ports), all entering port 1 (bench/run.py udp_pcap).

  case      softdpu (softdpu bench --pcap, in memory)         OVS-DPDK flows (bench/ovs_dpdk.py)
  output    pipelines/l2-passthrough.toml                     in_port=1,actions=output:2
  normal    2 ports, `actions=normal` (unknown unicast:       actions=NORMAL
            flooded to the one other port, in both)
  firewall  pipelines/firewall.toml (ct(), first packet of    pipelines/firewall.flows
            each flow commits, the rest are +est)
  vxlan     bench/tunnel_bench.py's vxlan4_encap pipeline     in_port=1,actions=output:10 (vxlan port)

scapy: bench/scapy_pipelines.py over the first 5,000 packets.  testpmd
(bench/testpmd.py): io forwarding with no processing, replaying the capture from
memory into net_null (`null`), through libpcap to /dev/null (`memory`), and
pcap file to pcap file (`file`, the capture repeated to 4M packets).

Then every example pipeline (pipelines/*.toml) on its own traffic: `softdpu bench
PIPELINE --size 64 --flows 1024 --clock cpu`, OVS-DPDK running the same .flows
(bench/ovs_dpdk.py run_pipeline) on the same packets, one capture per input port
(tunnel ports translated by bench/ovs_tunnels.py; ESP: no OVS-DPDK peer), and the scapy analog
(scapy_pipelines: output / normal / firewall / vxlan / acl / ipsec-overlay /
ipsec-gateway) on the first 5,000 packets.

One core each: this process pins itself to --cpu (default 1) for softdpu and
scapy; OVS's PMD thread and testpmd's forwarding lcore are on core 1 too.

On a shared machine the wall clock says more about the neighbours than about the
contenders, so the main figures are per CPU second: softdpu timed with its thread's
CPU time (`softdpu bench --clock cpu`), OVS-DPDK's packets divided by the time its
PMD thread was on a CPU (schedstat), testpmd likewise (null, memory).  Wall-clock
rates are given next to them.
`--rounds` rounds, each measuring every case's softdpu and OVS-DPDK back to
back (so both see the same machine load); the figures are the median over
rounds (softdpu: each round the median of 3 runs of 200k packets).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

CASES = ("output", "normal", "firewall", "vxlan")
EXAMPLES = {"output": "l2-passthrough", "normal": "l2-switch (a 2-port normal)", "firewall": "firewall",
            "vxlan": "vxlan-overlay (encap)"}


def pipelines(tmp):
    """{case: (pipeline path, input port name)} for softdpu."""
    from tunnel_bench import write_pipeline

    normal = tmp / "normal"
    normal.mkdir()
    (normal / "n.flows").write_text("actions=normal\n")
    (normal / "n.toml").write_text('[pipeline]\nname = "normal"\nflows = "n.flows"\n\n'
                                   '[[port]]\nname = "p1"\nofport = 1\ntype = "pcap"\n\n'
                                   '[[port]]\nname = "p2"\nofport = 2\ntype = "pcap"\n')
    vx = tmp / "vxlan"
    vx.mkdir()
    return {"output": (ROOT / "pipelines" / "l2-passthrough.toml", "p1"),
            "normal": (normal / "n.toml", "p1"),
            "firewall": (ROOT / "pipelines" / "firewall.toml", "inside"),
            "vxlan": (write_pipeline(vx, "encap", "vxlan", 4, False), "p1")}


def softdpu_case(pipeline, port, pcap, repeat=3, packets=200_000):
    from softdpu.bench.report import run_bench

    r = run_bench(pipeline, flows=1, pcap=(port, str(pcap)), repeat=repeat, packets=packets, clock="cpu")
    w = r["per_pass"]
    return {"mpps": r["total"]["mpps"], "ns_per_packet": r["total"]["ns_per_packet"],
            "min_ns": r["total"]["min"], "max_ns": r["total"]["max"],
            "out_per_packet": round(w["copies_out"] / w["received"], 3), "dropped": w["dropped"],
            "refill_ns": r["refill"]["ns_per_packet"],
            "stages": {k: v["ns_per_packet"] for k, v in r["stages"].items()}}


SCAPY_ANALOG = {"l2-passthrough": "output", "l2-switch": "normal", "firewall": "firewall", "microseg": "firewall",
                "vxlan-overlay": "vxlan", "geneve-overlay": "vxlan", "acl": "acl", "ipsec-overlay": "ipsec-overlay",
                "ipsec-gateway": "ipsec-gateway"}


def pipeline_traffic(pipeline, tmp, size="64", flows=1024, min_pool=None):
    """softdpu bench's traffic for an example pipeline, and one pcap per input port of it (for OVS)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from ovs_oracle import write_pcap
    from softdpu.bench.traffic import build
    from softdpu.pipeline import Dpu

    dpu = Dpu.load(pipeline)
    t = build(dpu, size=size, flows=flows, **({} if min_pool is None else {"min_pool": min_pool}))
    pcaps, frames = {}, []
    for p in dpu.ports:
        rows = (t.in_port == p.ofport).nonzero()[0]
        if len(rows):
            f = tmp / f"{pipeline.stem}-{p.name}.pcap"
            write_pcap(f, [(i * 1000, bytes(t.frames[r, :t.lengths[r]])) for i, r in enumerate(rows)])
            pcaps[p.name] = f
    frames = [(int(t.in_port[r]), bytes(t.frames[r, :t.lengths[r]])) for r in range(min(5000, t.n))]
    return pcaps, frames


def ovs_check(pipeline, tmp, size="64", flows=2):
    """bench/ovs_check.py on one pass of the pipeline's traffic (flows copies): OVS-DPDK's output
    against softdpu's, before its rate is trusted; {"error": ...} if it could not run."""
    from ovs_check import check

    d = tmp / f"check-{pipeline.stem}"
    d.mkdir()
    try:
        pcaps, _ = pipeline_traffic(pipeline, d, size, flows, min_pool=1)
        return check(pipeline, pcaps)
    except Exception as e:  # noqa: BLE001 -- reported in the table
        return {"error": str(e)[:300]}


def note_esp(pipeline):
    """Why a pipeline with IPsec SAs has no OVS-DPDK row, or None."""
    from softdpu import config

    return "ESP: no OVS-DPDK peer (OVS's IPsec is the kernel's)" if config.load(pipeline).esp else None


def compare_pipelines(rounds=3, seconds=5.0, ovs=True, log=print, size="64", flows=1024):
    """Every example pipeline on its own traffic (softdpu bench --size 64 --flows 1024 --clock cpu), next
    to OVS-DPDK running the same .flows on the same packets (per port) and the scapy analog."""
    from ovs_dpdk import available as ovs_available
    from ovs_dpdk import run_pipeline
    from scapy_pipelines import run as scapy_run
    from softdpu.bench.report import run_bench

    why = ovs_available() if ovs else "--no-ovs"
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-p-") as d:
        for p in sorted((ROOT / "pipelines").glob("*.toml")):
            pcaps, frames = pipeline_traffic(p, Path(d), size, flows)
            s, o = [], []
            note = why
            checked = None
            if why is None and not note_esp(p):
                checked = ovs_check(p, Path(d), size)
                log(f"{p.stem:15s} OVS-DPDK output check: {checked.get('same')} of {checked.get('softdpu')} "
                    f"softdpu frames equal, {checked.get('differ')} differ {checked.get('error', '')}")
            for r in range(rounds):
                b = run_bench(p, size=size, flows=flows, repeat=3, packets=200_000, clock="cpu")
                w = b["per_pass"]
                s.append({"mpps": b["total"]["mpps"], "ns": b["total"]["ns_per_packet"],
                          "out": round(w["copies_out"] / w["received"], 3)})
                log(f"round {r + 1} {p.stem:15s} softdpu {s[-1]['mpps']:6.2f} Mpps")
                if why is None and not note_esp(p):
                    try:
                        o.append(run_pipeline(p, pcaps, seconds=seconds))
                        log(f"round {r + 1} {p.stem:15s} OVS-DPDK {o[-1]['mpps_cpu']:6.2f} Mpps per CPU second")
                    except Exception as e:  # noqa: BLE001 -- reported in the table
                        note = str(e)[:300]
                        log(f"round {r + 1} {p.stem:15s} OVS-DPDK failed: {note[:200]}")
            analog = SCAPY_ANALOG.get(p.stem)
            sc = scapy_run(analog, frames) if analog else None
            out[p.stem] = {"softdpu_mpps": _med([x["mpps"] for x in s]), "softdpu_best_mpps": max(x["mpps"] for x in s),
                           "softdpu_ns_per_packet": _med([x["ns"] for x in s]), "softdpu_out_per_packet": s[-1]["out"],
                           "ovs_dpdk_mpps": _med([x["mpps_cpu"] for x in o]),
                           "ovs_dpdk_best_mpps": max((x["mpps_cpu"] for x in o), default=None),
                           "ovs_dpdk_wall_mpps": _med([x["mpps"] for x in o]),
                           "ovs_dpdk_out_per_packet": o[-1]["out_per_packet"] if o else None,
                           "ovs_dpdk_note": None if o else note_esp(p) or note, "ovs_dpdk_check": checked,
                           "scapy_analog": analog, "scapy_mpps": sc["mpps"] if sc else None}
    return out


def _med(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def compare(cases=CASES, flows=1024, rounds=3, seconds=5.0, cpu=1, ovs=True, testpmd=True, log=print,
            examples=True):
    from ovs_dpdk import available as ovs_available
    from ovs_dpdk import run_case
    from run import machine, udp_pcap
    from scapy_pipelines import read_frames
    from scapy_pipelines import run as scapy_run
    from testpmd import available as testpmd_available
    from testpmd import run_testpmd

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "flows": flows, "rounds": rounds,
           "frame": 64, "cpu": cpu, "cases": {}, "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    why_ovs = ovs_available() if ovs else "--no-ovs"
    why_pmd = testpmd_available() if testpmd else "--no-testpmd"
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as d:
        tmp = Path(d)
        pcap = tmp / "udp64.pcap"
        udp_pcap(pcap, 65_536, 64, flows)
        pipes = pipelines(tmp)
        frames = read_frames(pcap, limit=5000)
        per = {c: {"softdpu": [], "ovs": [], "softdpu_detail": None, "ovs_detail": None} for c in cases}
        for r in range(rounds):
            for c in cases:
                s = softdpu_case(*pipes[c], pcap)
                per[c]["softdpu"].append(s)
                log(f"round {r + 1} {c:9s} softdpu {s['mpps']:6.2f} Mpps")
                if why_ovs is None:
                    try:
                        o = run_case(c, pcap, seconds=seconds)
                        per[c]["ovs"].append(o)
                        log(f"round {r + 1} {c:9s} OVS-DPDK {o['mpps_cpu']:6.2f} Mpps per CPU second "
                            f"({o['mpps']:.2f} wall, PMD on a CPU {o['pmd_cpu_seconds']:.2f} of {o['seconds']} s)")
                    except Exception as e:   # noqa: BLE001 -- reported, the other contenders still run
                        per[c]["ovs_error"] = str(e)[:500]
                        log(f"round {r + 1} {c:9s} OVS-DPDK failed: {str(e)[:200]}")
        for c in cases:
            sc = scapy_run(c, frames)
            log(f"{c:9s} scapy {sc['mpps'] * 1e3:.1f} kpps")
            s, o = per[c]["softdpu"], per[c]["ovs"]
            res["cases"][c] = {
                "example": EXAMPLES[c],
                "softdpu_mpps": _med([x["mpps"] for x in s]),
                "softdpu_mpps_rounds": [x["mpps"] for x in s], "softdpu_best_mpps": max(x["mpps"] for x in s),
                "softdpu_ns_per_packet": _med([x["ns_per_packet"] for x in s]),
                "softdpu_out_per_packet": s[-1]["out_per_packet"], "softdpu_dropped": s[-1]["dropped"],
                "softdpu_stages_ns": s[-1]["stages"], "softdpu_refill_ns": _med([x["refill_ns"] for x in s]),
                "scapy_mpps": sc["mpps"], "scapy_ns_per_packet": sc["ns_per_packet"],
                "ovs_dpdk_mpps": _med([x["mpps_cpu"] for x in o]),
                "ovs_dpdk_mpps_rounds": [x["mpps_cpu"] for x in o],
                "ovs_dpdk_best_mpps": max((x["mpps_cpu"] for x in o if x["mpps_cpu"]), default=None),
                "ovs_dpdk_wall_mpps": _med([x["mpps"] for x in o]),
                "ovs_dpdk_pmd_cpu_share": _med([x["pmd_cpu_seconds"] / x["seconds"] for x in o]),
                "ovs_dpdk_cycles_per_packet": _med([x["ovs_cycles_per_packet"] for x in o]),
                "ovs_dpdk_out_per_packet": o[-1]["out_per_packet"] if o else None,
                "ovs_dpdk_note": per[c].get("ovs_error") or (why_ovs if why_ovs else None),
            }
            cs = res["cases"][c]
            if cs["ovs_dpdk_mpps"]:
                cs["softdpu_vs_ovs_dpdk"] = round(cs["softdpu_mpps"] / cs["ovs_dpdk_mpps"], 2)
                cs["softdpu_vs_ovs_dpdk_best"] = round(cs["softdpu_best_mpps"] / cs["ovs_dpdk_best_mpps"], 2)
        if why_pmd is None:
            big = tmp / "udp64_4m.pcap"
            udp_pcap(big, 4_000_000, 64, flows)
            res["testpmd"] = {}
            for mode, src in (("null", pcap), ("memory", pcap), ("file", big)):
                try:
                    res["testpmd"][mode] = run_testpmd(src, seconds=seconds + 1, mode=mode)
                    log(f"testpmd {mode:6s} {res['testpmd'][mode]['mpps']:6.2f} Mpps")
                except Exception as e:  # noqa: BLE001
                    res["testpmd"][mode] = {"error": str(e)[:300]}
        else:
            res["testpmd_note"] = why_pmd
    if examples:
        res["pipelines"] = compare_pipelines(rounds, seconds, ovs, log, flows=flows)
    res["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return res


def check_text(c):
    """The OVS output check in a table cell: "20 of 20 frames", "10 of 12 frames (2 differ)"."""
    if not c:
        return "-"
    if "error" in c:
        return f"not checked ({c['error'][:80]})"
    text = f"{c['same']} of {max(c['softdpu'] - c.get('rejects', 0), c['ovs'])} frames"
    if c.get("rejects"):
        text += f" + {c['rejects']} rejects (OVS: drop)"
    return text + (f" ({c['differ']} differ)" if c["differ"] else "")


def _ovs_cell(r):
    """OVS-DPDK's Mpps median (best), or n/a and why."""
    if r["ovs_dpdk_mpps"]:
        return f"{r['ovs_dpdk_mpps']:.2f} ({r['ovs_dpdk_best_mpps']:.2f})"
    return f"n/a ({r['ovs_dpdk_note']})"


def format_table(res):
    lines = [f"{res['date']}  {res['machine']}  64-byte frames, {res['flows']} flows, one core (cpu {res['cpu']}), "
             f"median of {res['rounds']} rounds; load average {res['load_average_start']} -> "
             f"{res['load_average_end']}",
             "",
             "| case (example pipeline) | softdpu Mpps median (best) | ns/packet | scapy kpps | "
             "OVS-DPDK Mpps median (best) | OVS-DPDK wall Mpps | softdpu / OVS-DPDK median (best) |",
             "|---|---|---|---|---|---|---|"]
    for c, r in res["cases"].items():
        ovs = _ovs_cell(r)
        ratio = (f"{r['softdpu_vs_ovs_dpdk']:.2f}x ({r['softdpu_vs_ovs_dpdk_best']:.2f}x)"
                 if "softdpu_vs_ovs_dpdk" in r else "-")
        wall = f"{r['ovs_dpdk_wall_mpps']:.2f}" if r.get("ovs_dpdk_wall_mpps") else "-"
        lines.append(f"| {c} ({r['example']}) | {r['softdpu_mpps']:.2f} ({r['softdpu_best_mpps']:.2f}) | "
                     f"{r['softdpu_ns_per_packet']:.1f} | "
                     f"{r['scapy_mpps'] * 1e3:.1f} | {ovs} | {wall} | {ratio} |")
    if "pipelines" in res:
        floor = res.get("testpmd", {}).get("null", {}).get("mpps_cpu")
        lines += ["", "Every example pipeline on its own traffic (`softdpu bench PIPELINE --size 64 --flows 1024 "
                  "--clock cpu`), OVS-DPDK running the same .flows on the same packets (each port replaying its "
                  "own), the scapy analog on the first 5,000 packets; Mpps per CPU second, median (best):", "",
                  "| pipeline | softdpu Mpps | ns/packet | out/packet | OVS-DPDK Mpps | OVS out/packet | "
                  "softdpu / OVS | OVS output = softdpu's | scapy analog kpps | testpmd null (I/O only) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in res["pipelines"].items():
            ovs = _ovs_cell(r)
            ratio = f"{r['softdpu_mpps'] / r['ovs_dpdk_mpps']:.2f}x" if r["ovs_dpdk_mpps"] else "-"
            sc = f"{r['scapy_mpps'] * 1e3:.1f} ({r['scapy_analog']})" if r["scapy_mpps"] else "n/a"
            lines.append(f"| {name} | {r['softdpu_mpps']:.2f} ({r['softdpu_best_mpps']:.2f}) | "
                         f"{r['softdpu_ns_per_packet']:.1f} | {r['softdpu_out_per_packet']} | {ovs} | "
                         f"{r['ovs_dpdk_out_per_packet'] if r['ovs_dpdk_out_per_packet'] is not None else '-'} | "
                         f"{ratio} | {check_text(r.get('ovs_dpdk_check'))} | {sc} | {f'{floor:.1f}' if floor else '-'} |")
    if "testpmd" in res:
        t = res["testpmd"]
        lines.append("")
        lines.append("DPDK testpmd io forwarding, no processing: " + ", ".join(
            (f"{m} {v['mpps']:.2f} Mpps wall" + (f" ({v['mpps_cpu']:.2f} per CPU second)" if "mpps_cpu" in v else ""))
            if "mpps" in v else f"{m} failed" for m, v in t.items()))
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--flows", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="OVS-DPDK / testpmd measuring interval")
    ap.add_argument("--cpu", type=int, default=1, help="pin softdpu and scapy to this core (-1: no pinning)")
    ap.add_argument("--no-ovs", action="store_true")
    ap.add_argument("--no-testpmd", action="store_true")
    ap.add_argument("--no-examples", action="store_true", help="leave out the example pipelines' table")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    res = compare(args.cases, args.flows, args.rounds, args.seconds, None if args.cpu < 0 else args.cpu,
                  not args.no_ovs, not args.no_testpmd, log=log, examples=not args.no_examples)
    res["command"] = "python bench/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print("\n".join(format_table(res)))


if __name__ == "__main__":
    main()
