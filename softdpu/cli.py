"""The softdpu command line.

  softdpu run PIPELINE [--in PORT=FILE ...] [--out-dir DIR] [--batch N]

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
    return ap


def cmd_run(args, out):
    t_start = time.perf_counter()
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
    dpu = Dpu(cfg)
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


def main(argv=None, out=None):
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        return {"run": cmd_run}[args.command](args, out)
    except _UsageError as e:
        print(f"softdpu: error: {e}", file=sys.stderr)
        return 2
    except SoftdpuError as e:
        print(f"softdpu: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
