"""Sweeps for bench/RESULTS.md: Mpps against packet size, number of rules and number of
connections (PNG plots in bench/plots/), and peak memory for 1M connections / 100k rules.

    python bench/sweep.py [--only sizes rules conns memory] [--repeat 3] [--cpu 1] [--json FILE]
    python bench/sweep.py --plot-only FILE            # redraw the plots from a saved JSON
    python bench/sweep.py --markdown FILE             # the RESULTS.md tables of a saved JSON

  sizes    `softdpu bench` (softdpu/bench/report.run_bench) on every example pipeline at
           --size 64, 512, 1400 and imix, 1024 flows, median of --repeat runs of 200k packets
  rules    parse + flow tables over 64-byte frames of 65,536 flows (every packet a flow-cache
           miss) against 100 / 1k / 10k / 100k rules in min(50, rules) masks
           (bench/classifier_bench.py's acl_rules and bench_end_to_end)
  conns    the firewall pipeline over 1k / 10k / 100k / 1M established connections
           (bench/firewall_bench.py's bench_firewall, uniform choice, 64-byte packets)
  memory   peak RSS (getrusage ru_maxrss) of a fresh process that (a) sets up 1M connections
           in pipelines/firewall (conntrack size 1M) and (b) compiles 100k rules and runs
           traffic through them; each next to a baseline process that does the same with
           1k connections / 100 rules, so the difference is the table's cost (the baseline runs
           twice, the first time only to fill numba's cache: a process that compiles kernels
           peaks higher than one that loads them)

Times are the thread's CPU time by default (--clock cpu; `softdpu bench --clock cpu`, and
the older benches' perf_counter swapped for time.thread_time), so that what other
processes do on the shared cores is left out; --clock wall for the wall clock.

Plots: bench/plots/mpps_vs_size.png, mpps_vs_rules.png, mpps_vs_connections.png.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PLOTS = ROOT / "bench" / "plots"
SIZES = ("64", "512", "1400", "imix")
RULES = (100, 1_000, 10_000, 100_000)
CONNS = (1_000, 10_000, 100_000, 1_000_000)


class _CpuTime:
    """A stand-in for the `time` module of the older benches: perf_counter is the thread's CPU time."""
    perf_counter = staticmethod(time.thread_time)
    strftime = staticmethod(time.strftime)
    time = staticmethod(time.time)


def cpu_clock_for_old_benches():
    """Make classifier_bench / firewall_bench / l2_switch_bench time with CPU time (see --clock):
    the latter two read a module-level `clock` (SOFTDPU_BENCH_CLOCK=cpu at import), the first
    calls time.perf_counter."""
    os.environ["SOFTDPU_BENCH_CLOCK"] = "cpu"
    import classifier_bench
    import firewall_bench
    import l2_switch_bench
    classifier_bench.time = _CpuTime
    for m in (firewall_bench, l2_switch_bench):
        if hasattr(m, "clock"):
            m.clock = time.thread_time
        else:
            m.time = _CpuTime


def sweep_sizes(repeat=3, log=print, clock="cpu"):
    from softdpu.bench.report import run_bench

    out = {}
    for p in sorted((ROOT / "pipelines").glob("*.toml")):
        out[p.stem] = {}
        for size in SIZES:
            r = run_bench(p, size=size, flows=1024, repeat=repeat, packets=200_000, clock=clock)
            t = r["total"]
            out[p.stem][size] = {"mean_frame": r["traffic"]["mean_frame"], "mpps": t["mpps"],
                                 "ns_per_packet": t["ns_per_packet"], "min": t["min"], "max": t["max"],
                                 "gbps_l1": t["gbps_l1"], "dropped_share": round(
                                     r["per_pass"]["dropped"] / r["per_pass"]["received"], 3),
                                 "stages": {k: v["ns_per_packet"] for k, v in r["stages"].items()}}
            log(f"sizes {p.stem:15s} {size:5s} {t['mpps']:7.2f} Mpps {t['ns_per_packet']:7.1f} ns")
    return out


def sweep_rules(repeat=3, log=print, clock="cpu"):
    from classifier_bench import acl_rules, bench_end_to_end
    from softdpu.stages.flows.compile import compile_rules

    out = {}
    for n in RULES:
        rules = acl_rules(n, min(50, n))
        program = compile_rules(rules)
        ns, hit = bench_end_to_end(rules, program, 65_536, repeats=repeat, passes=1)
        out[str(n)] = {"rules": n, "masks": min(50, n), "ns_per_packet": round(ns, 1), "mpps": round(1e3 / ns, 2),
                       "cache_hit_rate": round(hit, 3)}
        log(f"rules {n:7d} {1e3 / ns:7.2f} Mpps (cache hits {hit:.1%})")
    return out


def sweep_conns(repeat=3, log=print, clock="cpu"):
    from firewall_bench import bench_firewall

    out = {}
    for n in CONNS:
        r = bench_firewall(n, runs=repeat, passes=1)
        out[str(n)] = {"conns": n, "ns_per_packet": r["total"]["ns_per_pkt"], "mpps": r["total"]["mpps"],
                       "table_mb": r["table_mb"], "prefetch": r["prefetch"]}
        log(f"conns {n:9d} {r['total']['mpps']:7.2f} Mpps")
    return out


_MEMORY_CHILD = r"""
import resource, sys, json
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
kind, n = sys.argv[1], int(sys.argv[2])
if kind == "conns":
    import numpy as np
    from firewall_bench import Feeder, _drain, frames, setup_sequence
    from softdpu import config
    from softdpu.pipeline import Dpu
    cfg = config.load({firewall!r})
    cfg.conntrack_size = 1 << 20
    dpu = Dpu(cfg)
    clock = None
    for c, k in setup_sequence(n):
        f, port = frames(c, k)
        feed = Feeder(f, port, dpu.batch.size)
        if clock is not None:
            feed.clock = clock
        _drain(dpu, feed)
        clock = feed.clock
    got = dpu.flows.conntrack.table.counters()["entries"]
else:
    from classifier_bench import acl_rules, bench_end_to_end
    from softdpu.stages.flows.compile import compile_rules
    rules = acl_rules(n, min(50, n))
    program = compile_rules(rules)
    bench_end_to_end(rules, program, 65536, repeats=1, passes=1)
    got = len(rules)
print(json.dumps({{"kind": kind, "n": n, "got": got,
                  "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}}))
"""


def memory(log=print):
    code = _MEMORY_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"),
                                firewall=str(ROOT / "pipelines" / "firewall.toml"))
    out = {}
    for kind, n, base in (("conns", 1_000_000, 1_000), ("rules", 100_000, 100)):
        res = {}
        for m in (base, base, n):      # the first run fills numba's cache: compiling in-process costs RSS
            r = subprocess.run([sys.executable, "-c", code, kind, str(m)], capture_output=True, text=True,
                               timeout=1800, cwd=ROOT)
            if r.returncode:
                raise RuntimeError(f"memory child {kind} {m} failed:\n{r.stderr[-2000:]}")
            res[m] = json.loads(r.stdout.strip().splitlines()[-1])
        out[kind] = {"n": n, "peak_rss_mb": res[n]["max_rss_mb"], "baseline_n": base,
                     "baseline_peak_rss_mb": res[base]["max_rss_mb"],
                     "difference_mb": round(res[n]["max_rss_mb"] - res[base]["max_rss_mb"], 1),
                     "entries": res[n]["got"]}
        log(f"memory {kind}: {out[kind]}")
    return out


def plot(res, where=PLOTS):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    where.mkdir(parents=True, exist_ok=True)
    stamp = f"{res['date']}, {res['machine']}"
    made = []
    if "sizes" in res:
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, by in res["sizes"].items():
            pts = sorted((v["mean_frame"], v["mpps"], s) for s, v in by.items())
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("mean frame size, bytes (64, IMIX 354, 512, 1400 asked; larger where headers are)")
        ax.set_ylabel("Mpps, one core (median)")
        ax.set_title("softdpu bench: Mpps against packet size, 1024 flows")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.subplots_adjust(bottom=0.16)
        fig.text(0.01, 0.01, stamp, fontsize=7)
        fig.savefig(where / "mpps_vs_size.png", dpi=110)
        plt.close(fig)
        made.append(where / "mpps_vs_size.png")
    for key, xlabel, title, fname in (
            ("rules", "rules (in min(50, rules) masks)", "parse + flow tables, 65,536 flows (flow-cache misses)",
             "mpps_vs_rules.png"),
            ("conns", "established connections", "firewall pipeline (ct), 64-byte packets",
             "mpps_vs_connections.png")):
        if key not in res:
            continue
        pts = sorted((int(k), v["mpps"]) for k, v in res[key].items())
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Mpps, one core (median)")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        fig.subplots_adjust(bottom=0.16)
        fig.text(0.01, 0.01, stamp, fontsize=7)
        fig.savefig(where / fname, dpi=110)
        plt.close(fig)
        made.append(where / fname)
    return made


def markdown(res):
    """The RESULTS.md tables of a sweep's results, as lines."""
    from softdpu.bench.tax import tax

    out = [f"{res['date']}, {res['machine']}, `{res['command']}`, {res.get('clock', 'wall')} clock, "
           f"load average {res['load_average_start']} -> {res['load_average_end']}", ""]
    if "sizes" in res:
        out += ["| pipeline | size | mean frame B | Mpps median | ns/packet [min .. max] | Gbps L1 | dropped | "
                "cores for 25 Gbps (L1) |", "|---|---|---|---|---|---|---|---|"]
        for name, by in res["sizes"].items():
            for size, v in by.items():
                cores = tax(("bps", 25e9), v["mean_frame"], v["ns_per_packet"])["cores"]
                out.append(f"| {name} | {size} | {v['mean_frame']:.0f} | {v['mpps']:.2f} | {v['ns_per_packet']:.1f} "
                           f"[{v['min']:.1f} .. {v['max']:.1f}] | {v['gbps_l1']:.2f} | {v['dropped_share']:.0%} | "
                           f"{cores:.2f} |")
        out.append("")
    if "rules" in res:
        out += ["| rules (masks) | Mpps | ns/packet | flow-cache hits |", "|---|---|---|---|"]
        out += [f"| {v['rules']:,} ({v['masks']}) | {v['mpps']:.2f} | {v['ns_per_packet']:.1f} | "
                f"{v['cache_hit_rate']:.0%} |" for v in res["rules"].values()]
        out.append("")
    if "conns" in res:
        out += ["| connections | Mpps | ns/packet | table MB | prefetch |", "|---|---|---|---|---|"]
        out += [f"| {v['conns']:,} | {v['mpps']:.2f} | {v['ns_per_packet']:.1f} | {v['table_mb']} | "
                f"{'on' if v['prefetch'] else 'off'} |" for v in res["conns"].values()]
        out.append("")
    if "memory" in res:
        out += ["| what | peak RSS MB | baseline | baseline peak RSS MB | difference MB |", "|---|---|---|---|---|"]
        m = res["memory"]
        if "conns" in m:
            c = m["conns"]
            out.append(f"| {c['n']:,} connections (firewall, conntrack size 1M) | {c['peak_rss_mb']} | "
                       f"{c['baseline_n']:,} connections | {c['baseline_peak_rss_mb']} | {c['difference_mb']} |")
        if "rules" in m:
            r = m["rules"]
            out.append(f"| {r['n']:,} flow rules (50 masks), 65,536 flows through them | {r['peak_rss_mb']} | "
                       f"{r['baseline_n']:,} rules | {r['baseline_peak_rss_mb']} | {r['difference_mb']} |")
    return out


def main(argv=None):
    from run import machine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=("sizes", "rules", "conns", "memory"),
                    default=["sizes", "rules", "conns", "memory"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=1, help="pin to this core (-1: no pinning)")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="time with the thread's CPU time (default: leaves out time the core ran other "
                         "processes) or the wall clock")
    ap.add_argument("--json", default=None, help="also save the results here")
    ap.add_argument("--plot-only", default=None, metavar="FILE", help="redraw the plots from a saved JSON")
    ap.add_argument("--markdown", default=None, metavar="FILE", help="print the RESULTS.md tables of a saved JSON")
    args = ap.parse_args(argv)
    if args.plot_only:
        for p in plot(json.loads(Path(args.plot_only).read_text())):
            print(p)
        return
    if args.markdown:
        print("\n".join(markdown(json.loads(Path(args.markdown).read_text()))))
        return
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})
    log = (lambda m: print(m, file=sys.stderr, flush=True))
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "command": "python bench/sweep.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "load_average_start": [round(x, 2) for x in os.getloadavg()]}
    res["clock"] = args.clock
    if args.clock == "cpu":
        cpu_clock_for_old_benches()
    fns = {"sizes": sweep_sizes, "rules": sweep_rules, "conns": sweep_conns}
    for k in args.only:
        res[k] = memory(log) if k == "memory" else fns[k](args.repeat, log, args.clock)
    res["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    for p in plot(res):
        log(f"plot: {p}")
    print("\n".join(markdown(res)))


if __name__ == "__main__":
    main()
