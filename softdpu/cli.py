"""The softdpu command line.

  softdpu run PIPELINE [--in PORT=FILE ...] [--out-dir DIR] [--batch N]
  softdpu check PIPELINE CASE_DIR... [--update]   (golden cases: softdpu/testing/check.py)
  softdpu dump-flows PIPELINE [--in PORT=FILE ...] [--table N] [--no-stats] [--where]
  softdpu trace PIPELINE [--in PORT=FILE ...] [--packet N|N-M ...] [--json]
  softdpu dump-conntrack PIPELINE [--in PORT=FILE ...] [--zone N] [-s]
  softdpu bench PIPELINE [--size 64|512|1400|imix] [--flows N] [--pcap [PORT=]FILE] [--tax LOAD] [--json]
  softdpu start PIPELINE [--workers N]   softdpu ctl [--dpu NAME] COMMAND ...
  softdpu lab up|down|status TOPOLOGY    (live mode: softdpu/live/)

Errors a user can fix (bad pipeline file, bad flow line, bad capture) print
as one line, `softdpu: error: ...`, and exit with status 2.
"""
import argparse
import sys
import time
from pathlib import Path

from softdpu.errors import SoftdpuError


def _port_file(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected PORT=FILE, got '{text}'")
    return name, path


def _packets(text):
    """--packet N or N-M (1-based, inclusive) -> range."""
    lo, sep, hi = text.partition("-")
    try:
        lo, hi = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a packet number N or a range N-M, got '{text}'") from None
    if lo < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"expected packet numbers from 1 (N or N-M with N <= M), got '{text}'")
    return range(lo, hi + 1)


class _UsageError(Exception):
    """A bad command line (argparse's complaint), reported as one line like other errors."""


class _Parser(argparse.ArgumentParser):
    # argparse prints the usage and exits; softdpu prints one `softdpu: error:` line and returns 2
    def error(self, message):
        raise _UsageError(f"{message} (see {self.prog} --help)")


def build_parser():
    ap = _Parser(prog="softdpu", description="A software DPU data plane.")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run capture files through a pipeline, writing one pcap per port")
    run.add_argument("pipeline", help="the pipeline file (.toml)")
    run.add_argument("--in", dest="inputs", action="append", type=_port_file, default=[],
                     metavar="PORT=FILE", help="input capture for a port (replaces the file's default)")
    run.add_argument("--out-dir", default=None, help="where output pcaps go (default: out/<pipeline>)")
    run.add_argument("--batch", type=int, default=None, help="packets per batch (default: the pipeline's)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    dump = sub.add_parser("dump-flows", help="run the inputs, then print the flow tables with counters "
                                             "as ovs-ofctl dump-flows does")
    dump.add_argument("pipeline", help="the pipeline file (.toml)")
    dump.add_argument("--in", dest="inputs", action="append", type=_port_file, default=[],
                      metavar="PORT=FILE", help="input capture for a port (replaces the file's default)")
    dump.add_argument("--out-dir", default=None, help="where output pcaps go (default: a temporary directory)")
    dump.add_argument("--batch", type=int, default=None, help="packets per batch (default: the pipeline's)")
    dump.add_argument("--table", type=int, default=None, metavar="N", help="only the flows of table N")
    dump.add_argument("--no-stats", action="store_true",
                      help="leave out duration, n_packets and n_bytes (as ovs-ofctl --no-stats)")
    dump.add_argument("--where", action="store_true", help="append each flow's source as '# file:line'")
    trace = sub.add_parser("trace", help="why did a packet go there: run the inputs and print, for the chosen "
                                          "packets, every table, rule, action and the result (as "
                                          "ovs-appctl ofproto/trace)")
    trace.add_argument("pipeline", help="the pipeline file (.toml)")
    trace.add_argument("--in", dest="inputs", action="append", type=_port_file, default=[],
                       metavar="PORT=FILE", help="input capture for a port (replaces the file's default)")
    trace.add_argument("--packet", dest="packets", action="append", type=_packets, default=[],
                       metavar="N|N-M", help="trace packet N (1-based, in capture order; Wireshark's frame "
                                             "number for one input) or packets N to M; default: all")
    trace.add_argument("--json", action="store_true", help="print the traces as a JSON list")
    trace.add_argument("--batch", type=int, default=None, help="packets per batch (default: the pipeline's)")
    dct = sub.add_parser("dump-conntrack", help="run the inputs, then print the connection table as "
                                               "ovs-appctl dpctl/dump-conntrack does")
    dct.add_argument("pipeline", help="the pipeline file (.toml)")
    dct.add_argument("--in", dest="inputs", action="append", type=_port_file, default=[],
                     metavar="PORT=FILE", help="input capture for a port (replaces the file's default)")
    dct.add_argument("--zone", type=int, default=None, metavar="N", help="only connections of zone N")
    dct.add_argument("-s", "--stats", action="store_true", help="also packets, bytes and expiry per connection")
    dct.add_argument("--batch", type=int, default=None, help="packets per batch (default: the pipeline's)")
    chk = sub.add_parser("check", help="golden cases: run CASE_DIR/in/PORT.pcap, compare with "
                                       "CASE_DIR/expected/PORT.pcap (and expected/drops.toml); exit 1 on a difference")
    chk.add_argument("pipeline", help="the pipeline file (.toml)")
    chk.add_argument("cases", nargs="+", metavar="CASE_DIR", help="a directory with in/ and expected/")
    chk.add_argument("--update", action="store_true", help="write the outputs and drop counts as the expectations")
    chk.add_argument("--batch", type=int, default=None, help="packets per batch (default: the pipeline's)")
    pol = sub.add_parser("compile-policy", help="print the flows (ovs-ofctl add-flows syntax) the pipeline's "
                                                 "[firewall] section compiles into")
    pol.add_argument("pipeline", help="the pipeline file (.toml)")
    pol.add_argument("--ovs", action="store_true",
                     help="for Open vSwitch, which has no reject action: print reject as drop")
    bench = sub.add_parser("bench", help="what the pipeline costs per packet, in memory on one core: Mpps, "
                                         "Gbps, ns and cycles per packet, end to end and per stage")
    bench.add_argument("pipeline", help="the pipeline file (.toml)")
    bench.add_argument("--size", choices=("64", "512", "1400", "imix"), default=None,
                       help="frame size in bytes, or imix (7:4:1 of 64/576/1500); default: as captured")
    bench.add_argument("--flows", type=int, default=1024, help="copies of the traffic, each its own flows "
                                                                  "(default 1024)")
    bench.add_argument("--pcap", type=_bench_pcap, default=None, metavar="[PORT=]FILE",
                       help="benchmark with this capture (entering PORT, default the first input port) "
                            "instead of the pipeline's")
    bench.add_argument("--repeat", type=int, default=5, help="timed runs; the median is reported (default 5)")
    bench.add_argument("--packets", type=int, default=200_000, help="packets per timed run (default 200000)")
    bench.add_argument("--batch", type=int, default=None, help="packets per batch (default: the pipeline's)")
    bench.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                       help="time with the wall clock, or this thread's CPU time (leaves out time the core "
                            "ran other processes; for a shared machine)")
    bench.add_argument("--tax", action="append", default=[], metavar="LOAD",
                       help="host cores this load would take: 25G, 100Gbps (line rate, +20 B/frame), "
                            "10Mpps; repeatable")
    bench.add_argument("--json", action="store_true", help="print the results as JSON")
    from softdpu.live import commands as live
    live.add_parsers(sub)
    return ap


def _bench_pcap(text):
    name, sep, path = text.partition("=")
    return (name, path) if sep and name and path else (None, text)


def cmd_bench(args, out):
    from softdpu.bench.report import main

    return main(args, out)


def cmd_compile_policy(args, out):
    from softdpu import config, policy

    cfg = config.load(args.pipeline)
    if cfg.firewall is None:
        raise SoftdpuError(f"{args.pipeline}: no [firewall] section to compile")
    policy.flow_rules(cfg)          # the same checks as a run (tables shared with the .flows file)
    for line in policy.compile_flows(cfg.firewall, ovs=args.ovs, source=args.pipeline):
        print(line, file=out)
    return 0


def _dpu(args):
    """The pipeline's Dpu with --in / --batch checked, as `run` and `dump-flows` share them."""
    from softdpu import config
    from softdpu.pipeline import Dpu

    cfg = config.load(args.pipeline)
    ports = [name for name, _ in args.inputs]
    for name in ports:
        if ports.count(name) > 1:
            raise SoftdpuError(f"--in: port {name} given more than once")
    if args.batch is not None:
        if not 1 <= args.batch <= 65536:
            raise SoftdpuError(f"--batch: expected 1..65536, got {args.batch}")
        cfg.batch = args.batch
    return cfg, Dpu(cfg)


def cmd_run(args, out):
    t_start = time.perf_counter()
    cfg, dpu = _dpu(args)
    out_dir = Path(args.out_dir) if args.out_dir else Path("out") / cfg.name
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(unit="pkt", unit_scale=True, disable=None, leave=False, file=sys.stderr,
                   desc=cfg.name, mininterval=0.5)
    t0 = time.perf_counter()
    try:
        stats = dpu.run_pcaps(dict(args.inputs), out_dir, progress=None if bar is None else bar.update,
                              warn=lambda m: print(f"softdpu: warning: {m}", file=sys.stderr))
    finally:
        if bar is not None:
            bar.close()
    dt = time.perf_counter() - t0
    for line in stats.table():
        print(line, file=out)
    pps = stats.rx / dt if dt > 0 else 0.0
    rate = f"{pps / 1e6:.2f} Mpps" if pps >= 1e5 else f"{pps:,.0f} packets/s"
    print(f"{stats.rx} packets in {dt:.3f} s ({rate}) after {t0 - t_start:.2f} s of set-up "
          f"(loading compiled kernels); outputs in {out_dir}/", file=out)
    return 0


def cmd_dump_flows(args, out):
    import tempfile

    from softdpu import dump_flows
    from softdpu.batch import M_TS

    if args.table is not None and not 0 <= args.table <= 254:
        raise SoftdpuError(f"--table: expected 0..254, got {args.table}")
    cfg, dpu = _dpu(args)
    clock = []                       # [first, last] packet timestamp (ns) seen by the flow tables
    process = dpu.process

    def timed(batch):
        if batch.n:
            ts = batch.meta[: batch.n, M_TS]
            lo, hi = int(ts.min()), int(ts.max())
            clock[:] = [min(clock[0], lo), max(clock[1], hi)] if clock else [lo, hi]
        process(batch)
    dpu.process = timed
    warn = lambda m: print(f"softdpu: warning: {m}", file=sys.stderr)  # noqa: E731
    if args.out_dir:
        dpu.run_pcaps(dict(args.inputs), Path(args.out_dir), warn=warn)
    else:
        with tempfile.TemporaryDirectory(prefix="softdpu-") as d:
            dpu.run_pcaps(dict(args.inputs), Path(d), warn=warn)
    duration = clock[1] - clock[0] if clock else 0
    for line in dump_flows.format_flows(dpu.flows.program, duration_ns=duration, stats=not args.no_stats,
                                        where=args.where, table=args.table):
        print(line, file=out)
    return 0


def cmd_trace(args, out):
    import json
    import tempfile

    from softdpu.trace import Tracer, explain

    cfg, dpu = _dpu(args)
    wanted = None
    if args.packets:
        wanted = sorted({n for r in args.packets for n in r})
    tracer = Tracer(dpu, wanted)
    dpu.tracer = tracer
    warn = lambda m: print(f"softdpu: warning: {m}", file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="softdpu-") as d:
        dpu.run_pcaps(dict(args.inputs), Path(d), warn=warn, until=lambda: tracer.done)
    if wanted and tracer.seen < wanted[-1]:
        missing = [n for n in wanted if n > tracer.seen]
        raise SoftdpuError(f"--packet: the input has {tracer.seen} packets; no packet "
                           f"{', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
    names = {p.ofport: p.name for p in cfg.ports}
    docs = []
    for k, t in enumerate(tracer.traces):
        lines, doc = explain(t, dpu.flows.program, names, bridge=cfg.name)
        docs.append(doc)
        if not args.json:
            if k:
                print(file=out)
            print("\n".join(lines), file=out)
    if args.json:
        json.dump(docs, out, indent=2)
        print(file=out)
    return 0


def cmd_dump_conntrack(args, out):
    import re
    import tempfile

    from softdpu.batch import M_TS

    if args.zone is not None and not 0 <= args.zone <= 65535:
        raise SoftdpuError(f"--zone: expected 0..65535, got {args.zone}")
    cfg, dpu = _dpu(args)
    last = [0]
    process = dpu.process

    def timed(batch):
        if batch.n:
            last[0] = max(last[0], int(batch.meta[: batch.n, M_TS].max()))
        process(batch)
    dpu.process = timed
    warn = lambda m: print(f"softdpu: warning: {m}", file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="softdpu-") as d:
        dpu.run_pcaps(dict(args.inputs), Path(d), warn=warn)
    if not dpu.flows.uses_ct:
        print(f"softdpu: note: {cfg.flows.name} has no ct() action: no connections are tracked", file=sys.stderr)
    for line in dpu.flows.conntrack.dump(last[0]):
        zone = re.search(r",zone=(\d+)", line)
        if args.zone is not None and int(zone.group(1) if zone else 0) != args.zone:
            continue
        if not args.stats:
            line = line.split(" packets=")[0]
        print(line, file=out)
    return 0


def cmd_check(args, out):
    from softdpu.testing import check

    if args.batch is not None and not 1 <= args.batch <= 65536:
        raise SoftdpuError(f"--batch: expected 1..65536, got {args.batch}")
    return check.main(args.pipeline, args.cases, update=args.update, batch=args.batch, out=out)


def main(argv=None, out=None):
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if args.command in ("start", "ctl", "lab"):
            from softdpu.live import commands as live
            return live.run(args, out)
        return {"run": cmd_run, "dump-flows": cmd_dump_flows, "trace": cmd_trace,
                "dump-conntrack": cmd_dump_conntrack, "check": cmd_check,
                "compile-policy": cmd_compile_policy, "bench": cmd_bench}[args.command](args, out)
    except _UsageError as e:
        print(f"softdpu: error: {e}", file=sys.stderr)
        return 2
    except SoftdpuError as e:
        print(f"softdpu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
