"""The control socket of a live Dpu and `softdpu ctl`, in ovs-ofctl's style.

    softdpu ctl [--dpu NAME] [--rundir DIR] COMMAND [ARGS]
      add-flow FLOW          add-flows FILE (- for stdin)
      del-flows [SPEC]       mod-flows SPEC,actions=...      (--strict: exact priority and match)
      dump-flows [--table N] [--no-stats]
      dump-conntrack         show         stats

The socket is a Unix stream socket RUNDIR/NAME.sock (RUNDIR: --rundir, else
$SOFTDPU_RUNDIR, else /run/softdpu), mode 0600 in a 0700 directory: only its owner
(root) can connect.  One request per connection: a JSON line {"cmd": ..., ...};
the answer a JSON line {"ok": true, "lines": [...]} or {"ok": false, "error": "..."}.
The supervisor relays flow changes to every worker, which applies them between
batches; counters are summed over the workers.
"""
import json
import os
import socket
import time
from pathlib import Path

import numpy as np

from softdpu.errors import SoftdpuError

MAX_REQUEST = 16 << 20
TIMEOUT_S = 60.0


def default_rundir():
    return Path(os.environ.get("SOFTDPU_RUNDIR", "/run/softdpu"))


def socket_path(rundir, name):
    return Path(rundir) / f"{name}.sock"


def listen(rundir, name):
    rundir = Path(rundir)
    rundir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = socket_path(rundir, name)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            raise SoftdpuError(f"a softdpu named {name} is already running ({path}); use --name")
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)           # left by a softdpu that was killed
        finally:
            probe.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        s.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    s.listen(8)
    return s


def unlisten(server, rundir, name):
    server.close()
    socket_path(rundir, name).unlink(missing_ok=True)


def _recv_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise SoftdpuError("request too long")
    return data


def handle(client, sup):
    """Answer one request on an accepted connection (the supervisor's loop calls this)."""
    client.settimeout(5.0)
    try:
        req = json.loads(_recv_line(client) or b"null")
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            raise SoftdpuError('expected a JSON object with "cmd"')
        reply = {"ok": True, "lines": _command(sup, req)}
    except (SoftdpuError, ValueError, TypeError) as e:
        reply = {"ok": False, "error": str(e)}
    except OSError:
        return
    try:
        client.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass


def _command(sup, req):
    from softdpu.live import flow_mods
    from softdpu.stages.flows.syntax import parse_text

    cmd = req["cmd"]
    if cmd in ("add-flow", "add-flows"):
        text = str(req.get("text", ""))
        parse_text(text, "<ctl>")                   # errors before any worker changes
        return [sup.ask("add-flows", {"text": text})[0]]
    if cmd == "del-flows":
        flow_mods.parse_spec(str(req.get("spec", "")))
        return [sup.ask("del-flows", {"spec": str(req.get("spec", "")), "strict": bool(req.get("strict"))})[0]]
    if cmd == "mod-flows":
        return [sup.ask("mod-flows", {"line": str(req.get("line", "")), "strict": bool(req.get("strict"))})[0]]
    if cmd == "dump-flows":
        totals = {}
        for snap in sup.ask("snapshot"):
            for key, n, b in zip(snap["rules"], snap["n_packets"], snap["n_bytes"]):
                old = totals.get(key, (0, 0))
                totals[key] = (old[0] + int(n), old[1] + int(b))
        table = req.get("table")
        return sup.ask("dump-flows", {"totals": [(k, n, b) for k, (n, b) in totals.items()], "table": table,
                                      "stats": not req.get("no_stats"),
                                      "duration_ns": time.monotonic_ns() - sup.started}, workers=[0])[0]
    if cmd == "dump-conntrack":
        return sorted(line for lines in sup.ask("dump-conntrack") for line in lines)
    if cmd == "stats":
        return format_stats(sup.cfg, sup.ask("snapshot"))
    if cmd == "show":
        lines = [f"softdpu {sup.name}: pipeline {sup.cfg.path}, {sup.n_workers} worker(s), "
                 f"up {(time.monotonic_ns() - sup.started) / 1e9:.1f} s",
                 f"  workers: {' '.join(f'{w}:pid={p.pid}' for w, p in enumerate(sup.procs))}"]
        for name, ofport, kind, ifname, mtu in sup.port_info:
            lines.append(f"  {ofport}({name}): {kind} {ifname} mtu {mtu}")
        for p in sup.cfg.ports:
            if p.type in ("vxlan", "geneve"):
                lines.append(f"  {p.ofport}({p.name}): {p.type} over {p.options.get('underlay')}")
        return lines
    raise SoftdpuError(f"unknown command {cmd!r}")


def format_stats(cfg, snaps):
    """The run summary of the summed worker counters (as `softdpu run` prints), then the rings'."""
    from softdpu.stats import Stats

    if not snaps:
        return ["no counters (no worker answered)"]
    st = Stats(cfg.ports, 1)
    st.counters[:] = sum(s["counters"] for s in snaps)
    st.drops[:] = sum(s["drops"] for s in snaps)
    st.malformed[:] = sum(s["malformed"] for s in snaps)
    st.left = sum(s["left"] for s in snaps)
    lost = {}
    for s in snaps:
        for k, v in s["lost_copies"].items():
            lost[k] = lost.get(k, 0) + v
    st.lost_copies = lambda: lost
    extra = [line if len(snaps) == 1 else f"worker {s['worker']}: {line}" for s in snaps for line in s["extra_lines"]]
    st.extra_lines = lambda: extra
    lines = st.table()
    cut = sum(s["mtu_cut"] for s in snaps)
    if cut:
        lines.append(f"copies longer than their port's MTU: {cut}")
    names = list(snaps[0]["ports"])
    for name in names:
        total = {}
        for s in snaps:
            for k, v in s["ports"][name].items():
                total[k] = total.get(k, 0) + v
        lines.append(f"port {name}: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    if len(snaps) > 1:
        for s in snaps:
            lines.append(f"worker {s['worker']}: rx {int(np.asarray(s['counters'])[:, 0].sum())}, "
                         f"left {s['left']}")
    return lines


def request(req, name, rundir=None):
    """Send one request to softdpu `name`; -> its lines, or raise SoftdpuError."""
    path = socket_path(rundir or default_rundir(), name)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise SoftdpuError(f"no softdpu named {name} is running (no control socket at {path})") from None
        except PermissionError:
            raise SoftdpuError(f"{path}: permission denied (the control socket is mode 0600)") from None
        s.sendall(json.dumps(req).encode() + b"\n")
        reply = json.loads(_recv_line(s) or b"null")
    finally:
        s.close()
    if not isinstance(reply, dict):
        raise SoftdpuError(f"{path}: no answer")
    if not reply.get("ok"):
        raise SoftdpuError(reply.get("error", "failed"))
    return reply["lines"]
