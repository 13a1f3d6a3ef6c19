"""The live subcommands of the command line: start, ctl (and lab, in lab.py).

cli.py calls add_parsers() to declare them and run(args, out) to run one.
"""
import sys
from pathlib import Path

from softdpu.errors import SoftdpuError

CTL_COMMANDS = ("add-flow", "add-flows", "del-flows", "mod-flows", "dump-flows", "dump-conntrack", "show", "stats")


def add_parsers(sub):
    st = sub.add_parser("start", help="run a pipeline live on its afpacket/tap ports until SIGINT/SIGTERM")
    st.add_argument("pipeline", help="the pipeline file (.toml)")
    st.add_argument("--workers", type=int, default=1, help="worker processes (PACKET_FANOUT hash), default 1")
    st.add_argument("--name", default=None, help="the DPU's name (control socket NAME.sock); default: the "
                                                 "pipeline's name")
    st.add_argument("--rundir", default=None, help="where the control socket goes (default $SOFTDPU_RUNDIR "
                                                   "or /run/softdpu)")
    st.add_argument("--isolate", action="store_true", help="a private mount namespace with a tmpfs on the "
                                                          "runtime dir: the socket is reachable only there")
    ctl = sub.add_parser("ctl", help="control a running softdpu (ovs-ofctl style)")
    ctl.add_argument("--dpu", default=None, help="the DPU's name (default: the only socket in the runtime dir)")
    ctl.add_argument("--rundir", default=None, help="the runtime dir (default $SOFTDPU_RUNDIR or /run/softdpu)")
    ctl.add_argument("--strict", action="store_true", help="del-flows/mod-flows: exact priority and match")
    ctl.add_argument("--table", type=int, default=None, help="dump-flows: only table N")
    ctl.add_argument("--no-stats", action="store_true", help="dump-flows: no counters")
    ctl.add_argument("ctl_command", metavar="COMMAND", choices=CTL_COMMANDS)
    ctl.add_argument("arg", nargs="?", default=None, help="the flow, file or spec")
    from softdpu.live import lab
    lab.add_parser(sub)


def run(args, out):
    if args.command == "start":
        return _start(args, out)
    if args.command == "ctl":
        return _ctl(args, out)
    from softdpu.live import lab
    return lab.run(args, out)


def _start(args, out):
    from softdpu import config
    from softdpu.live.supervisor import start

    cfg = config.load(args.pipeline)
    return start(cfg, workers=args.workers, name=args.name, rundir=args.rundir and Path(args.rundir),
                 isolated=args.isolate, out=out)


def _ctl(args, out):
    from softdpu.live import control

    rundir = Path(args.rundir) if args.rundir else control.default_rundir()
    name = args.dpu
    if name is None:
        socks = sorted(rundir.glob("*.sock")) if rundir.is_dir() else []
        if len(socks) != 1:
            raise SoftdpuError(f"--dpu: {'no' if not socks else 'several'} control sockets in {rundir}"
                               + (f" ({', '.join(s.stem for s in socks)})" if socks else "")
                               + "; name the DPU")
        name = socks[0].stem
    cmd, arg = args.ctl_command, args.arg
    req = {"cmd": cmd}
    if cmd in ("add-flow", "add-flows", "mod-flows") and not arg:
        raise SoftdpuError(f"ctl {cmd}: expected {'a FILE' if cmd == 'add-flows' else 'a flow'}")
    if cmd == "add-flow":
        req["text"] = arg
    elif cmd == "add-flows":
        try:
            req["text"] = sys.stdin.read() if arg == "-" else Path(arg).read_text()
        except OSError as e:
            raise SoftdpuError(f"ctl add-flows: cannot read {arg}: {e.strerror}") from None
        req["cmd"] = "add-flows"
    elif cmd == "del-flows":
        req.update(spec=arg or "", strict=args.strict)
    elif cmd == "mod-flows":
        req.update(line=arg, strict=args.strict)
    elif cmd == "dump-flows":
        req.update(table=args.table, no_stats=args.no_stats)
    for line in control.request(req, name, rundir):
        print(line, file=out)
    return 0
