"""`softdpu bench PIPELINE`: generate the traffic, time the pipeline, print the figures.

  softdpu bench PIPELINE [--size 64|512|1400|imix] [--flows N] [--pcap [PORT=]FILE]
                         [--repeat N] [--packets N] [--clock wall|cpu] [--tax LOAD ...] [--json]

Per line: ns per packet received, Mpps, Gbps counting the frames' bytes
(L2, as captured: no preamble, no FCS) and Gbps with 20 B more per frame
(L1: preamble, SFD, inter-frame gap), cycles per packet (ns x the CPU's MHz,
when it can be read).  The median of --repeat runs, [fastest .. slowest].
"""
import json
import shlex
import sys
import time

from softdpu.bench import tax as taxes
from softdpu.bench.feed import Feeder
from softdpu.bench.machine import describe
from softdpu.bench.measure import measure, warm_pass
from softdpu.bench.traffic import build
from softdpu.errors import SoftdpuError


def rates(ns, mean_frame, mhz):
    """{ns_per_packet, mpps, gbps_l2, gbps_l1, cycles_per_packet} for a cost of ns per packet."""
    mpps = 1e3 / ns if ns > 0 else float("inf")
    out = {"ns_per_packet": round(ns, 2), "mpps": round(mpps, 3),
           "gbps_l2": round(mpps * mean_frame * 8 / 1e3, 3),
           "gbps_l1": round(mpps * (mean_frame + taxes.L1_OVERHEAD) * 8 / 1e3, 3)}
    if mhz:
        out["cycles_per_packet"] = round(ns * mhz / 1e3, 1)
    return out


def run_bench(pipeline, size=None, flows=1024, pcap=None, repeat=5, packets=200_000, loads=(), batch=None,
              clock="wall"):
    """The whole result as a dict (what --json prints)."""
    from softdpu import config
    from softdpu.pipeline import Dpu

    if repeat < 1 or repeat > 1000:
        raise SoftdpuError(f"--repeat: expected 1..1000, got {repeat}")
    if packets < 1:
        raise SoftdpuError(f"--packets: expected at least 1, got {packets}")
    parsed = [taxes.parse_load(x) for x in loads]
    cfg = config.load(pipeline)
    if batch is not None:
        if not 1 <= batch <= 65536:
            raise SoftdpuError(f"--batch: expected 1..65536, got {batch}")
        cfg.batch = batch
    if pcap is not None:
        name, path = pcap
        if name is None:
            with_input = [p.name for p in cfg.ports if p.options.get("input")]
            name = with_input[0] if with_input else cfg.ports[0].name
        pcap = (name, path)
    dpu = Dpu(cfg)
    traffic = build(dpu, size=size, flows=flows, pcap=pcap)
    feed = Feeder(traffic.frames, traffic.in_port, dpu.batch.size, traffic.lengths)
    what = warm_pass(dpu, feed)
    m = measure(dpu, feed, repeat=repeat, packets=packets, clock=clock)
    mach = describe()
    mean = traffic.mean_frame
    mhz = mach["mhz"]

    def figs(s):
        return dict(rates(s["ns_per_packet"], mean, mhz), min=s["min"], max=s["max"])

    res = {"pipeline": str(pipeline), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": mach,
           "traffic": {"source": traffic.source, "trace_packets": traffic.trace_packets, "flows": traffic.flows,
                       "pool_packets": traffic.n, "size": traffic.size, "mean_frame": round(mean, 2),
                       "too_big": traffic.too_big},
           "per_pass": what, "batch": dpu.batch.size, "clock": clock, "runs": m["runs"], "passes": m["passes"],
           "packets_per_run": m["packets_per_run"],
           "total": dict(figs(m["total"]), runs_ns=m["total"]["runs_ns"]),
           "stages": {k: figs(v) for k, v in m["stages"].items()},
           "stages_sum": figs(m["stages_sum"]), "refill": figs(m["refill"])}
    res["tax"] = [taxes.tax(load, mean, m["total"]["ns_per_packet"], m["total"]["min"], m["total"]["max"])
                  for load in parsed]
    return res


def format_text(res, command=None):
    t, w, mach = res["traffic"], res["per_pass"], res["machine"]
    lines = []
    if command:
        lines.append(f"$ {command}")
    lines.append(f"{res['pipeline']}: {t['pool_packets']:,} packets in memory = {t['trace_packets']} packets "
                 f"({t['source']}) x {t['flows']} flows, frames {t['size']} (mean {t['mean_frame']:.1f} B"
                 + (f"; {t['too_big']} packets' headers are longer" if t["too_big"] else "") + ")")
    drops = ", ".join(f"{k} {v}" for k, v in w["drops"].items())
    lines.append(f"per pass: received {w['received']:,}, left {w['left']:,}, copies out {w['copies_out']:,}, "
                 f"dropped {w['dropped']:,}" + (f" ({drops})" if drops else ""))
    mhz = f", {mach['mhz']:.0f} MHz" if mach["mhz"] else ", frequency unknown (no cycles/packet)"
    lines.append(f"machine: {mach['cpu']}, {mach['cores']} cores{mhz}, load average {mach['load_average']}; "
                 f"batches of {res['batch']}, one core")
    lines.append(f"median of {res['runs']} runs x {res['packets_per_run']:,} packets [fastest .. slowest run], "
                 f"{'CPU time' if res['clock'] == 'cpu' else 'wall clock'}; Gbps L2 = frame bytes, L1 = +20 B/frame")
    head = f"  {'':24s} {'ns/packet':>10s} {'[min .. max]':>18s} {'Mpps':>8s} {'Gbps L2':>8s} {'Gbps L1':>8s}"
    lines.append(head + (f" {'cycles/pkt':>10s}" if mach["mhz"] else ""))

    def row(label, f):
        s = (f"  {label:24s} {f['ns_per_packet']:10.1f} {'[' + format(f['min'], '.1f') + ' .. ' + format(f['max'], '.1f') + ']':>18s} "
             f"{f['mpps']:8.2f} {f['gbps_l2']:8.2f} {f['gbps_l1']:8.2f}")
        return s + (f" {f['cycles_per_packet']:10.0f}" if "cycles_per_packet" in f else "")

    lines.append(row("end to end (process)", res["total"]))
    for name, f in res["stages"].items():
        lines.append(row("  " + name, f))
    lines.append(row("  sum of the stages", res["stages_sum"]))
    lines.append(row("in-memory refill (rx)", res["refill"]) + "  (not in end to end)")
    for x in res["tax"]:
        rng = (f" ({x['cores_min']:.2f} .. {x['cores_max']:.2f} from the fastest and slowest run)"
               if "cores_min" in x else "")
        load = (f"{x['load']} of frames of mean {x['mean_frame']:.1f} B (+20 B on the wire) = {x['mpps']:.2f} Mpps"
                if x["load_unit"] == "bps" else x["load"])
        lines.append(f"infrastructure tax: {load} through {res['pipeline']} at {x['ns_per_packet']:.1f} ns/packet "
                     f"= {x['cores']:.2f} host cores{rng}")
    return lines


def main(args, out=sys.stdout):
    """The `softdpu bench` command (args from cli.py's parser)."""
    res = run_bench(args.pipeline, size=args.size, flows=args.flows, pcap=args.pcap, repeat=args.repeat,
                    packets=args.packets, loads=args.tax, batch=args.batch, clock=args.clock)
    res["command"] = "softdpu " + " ".join(shlex.quote(a) for a in (args.argv or []))
    if args.json:
        json.dump(res, out, indent=2)
        print(file=out)
    else:
        print("\n".join(format_text(res)), file=out)
    return 0
