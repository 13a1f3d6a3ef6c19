"""Open vSwitch as a test oracle: a private ovs-vswitchd on the userspace dummy datapath.

    from ovs_oracle import OvsDummy, require_ovs

    require_ovs()                                   # skip without OVS (fail under CI=true)
    with OvsDummy(tmp_path, ports={"p1": 1, "p2": 2}) as ovs:
        ovs.add_flows("pipelines/l2-passthrough.flows")
        ovs.receive("p1", frame_bytes)              # or ovs.run_pcap("p1", "in.pcap")
        ovs.outputs()                               # {"p1": [], "p2": [frame_bytes]}
        print(ovs.trace("p1", frame_bytes))         # ofproto/trace: why it went there
        ovs.reset(ports={...})                      # next case: no flows, no outputs, same daemons

What runs: `ovsdb-tool create` makes a database from the vswitch schema in
`tmpdir`; a private ovsdb-server serves it on a unix socket in `tmpdir`;
`ovs-vswitchd --enable-dummy=override --disable-system` connects to it.  No
kernel module, nothing under /var/run/openvswitch, the system database is
never opened: every path (database, sockets, pid files, logs) is explicit and
inside `tmpdir`, and OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR/OVS_SYSCONFDIR point
there for every OVS command we run.

The bridge has datapath_type=dummy, fail_mode=secure (no NORMAL flow of its
own), in-band disabled and no controller, so the only flows are ours and a
table miss drops.  Open_vSwitch other_config:flow-limit=0 keeps the datapath
from caching flows: every packet is translated afresh through the OpenFlow
tables (OVS counts these as "lost" upcalls; the packet is still executed).
other_config:vlan-limit=0 lets OVS parse two VLAN tags as softdpu does (the OVS
default, 1, stops after the outer tag: dl_type of a QinQ frame is then 0x8100).
Ports are type=dummy with ofport_request=N and options:tx_pcap=FILE: OVS
appends every frame a port transmits to FILE (and fflushes it).

Ordering.  `receive` injects ONE packet per unixctl request over a fresh
connection.  ovs-vswitchd's main loop runs bridge_run (which polls every
dummy port's rx queue and forwards what it finds, synchronously) before
unixctl_server_run (which accepts new connections), and a dummy port yields
one packet per poll; so a packet injected by one request has been forwarded
before the next request is even accepted, whatever port it is on.  Packets
therefore go through OVS in exactly the order they were injected, across
ports.  `outputs()` first waits until every port's rx counter (dpctl/show -s)
equals what was injected, so nothing is still queued, then reads each tx_pcap
from where it stood at the last reset.  Compare frames and their order per
port; tx_pcap timestamps are OVS's own clock.

Daemons.  ovsdb-server and ovs-vswitchd run as direct children of this
process, with --pidfile, --unixctl and --log-file in tmpdir, but without
--detach.  A detached daemon is re-parented to PID 1, which in this project's
VMs reaps orphans only lazily (a stopped detached daemon stayed a zombie for
about 2 s), so "stopped" could not be told from "still there" by pid.  As our
children they are waited for (and reaped) on stop, and they get SIGTERM if
the test process dies (PR_SET_PDEATHSIG), so a killed test run leaves no
daemon behind.  Stop asks each to `exit` over its unixctl socket, then sends
SIGTERM, then SIGKILL, to the pid from its pid file checked against the
child's.  Readiness: a unixctl `version` call answers.  Every subprocess and
socket call has a timeout.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovs-appctl")
SCHEMA_CANDIDATES = ("/usr/share/openvswitch/vswitch.ovsschema",
                     "/usr/local/share/openvswitch/vswitch.ovsschema")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
TIMEOUT = 20.0            # seconds, any one OVS command
MTU = 65000               # dummy ports drop frames over mtu+14 on transmit; never limit here
ALL_OPENFLOW = "OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15"
ETH_HEADER_LEN = 14       # OVS's netdev-dummy/receive refuses shorter frames


class OvsError(RuntimeError):
    """An OVS command failed; the message carries its stderr (and log tails)."""


# -- finding OVS -------------------------------------------------------------
def _which(name):
    path = shutil.which(name)
    if path is None:
        for d in _SBIN:
            p = Path(d) / name
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
    return path


def _schema():
    for c in ([os.environ["OVS_PKGDATADIR"] + "/vswitch.ovsschema"] if "OVS_PKGDATADIR" in os.environ
              else []) + list(SCHEMA_CANDIDATES):
        if Path(c).is_file():
            return c
    return None


def ovs_missing():
    """What of Open vSwitch is missing here: a list of names (empty when all is present)."""
    missing = [t for t in OVS_TOOLS if _which(t) is None]
    if _schema() is None:
        missing.append("vswitch.ovsschema")
    return missing


def ovs_available():
    return not ovs_missing()


def require_ovs():
    """Skip the calling test without Open vSwitch, except under CI (CI=true) where it must be there.

    The same policy as conftest.need_tool, but ovs-vswitchd and ovsdb-server live in
    /usr/sbin, which may not be on PATH.
    """
    import pytest
    missing = ovs_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"Open vSwitch is not installed ({', '.join(missing)} missing): "
                        ".ci/run must apt-get install openvswitch-switch")
        pytest.skip(f"Open vSwitch is not installed ({', '.join(missing)} missing)")


# -- pcap files ----------------------------------------------------------------
def read_pcap(path, offset=0):
    """Frames of a libpcap file as a list of bytes, from byte `offset` (0: after the header).

    A record cut short at the end (a writer mid-way) is left out.
    """
    data = Path(path).read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise ValueError(f"{path}: not a libpcap file")
    pos = max(offset, 24)
    frames = []
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from(end + "IIII", data, pos)
        if pos + 16 + incl > len(data):
            break
        frames.append(data[pos + 16: pos + 16 + incl])
        pos += 16 + incl
    return frames


def write_pcap(path, records, nanosecond=False):
    """Write [(ts_ns, frame_bytes)] as a little-endian libpcap file (Ethernet)."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, 1)]
    for ts, frame in records:
        sec, frac = divmod(int(ts), 1_000_000_000)
        out.append(struct.pack("<IIII", sec, frac if nanosecond else frac // 1000, len(frame), len(frame)))
        out.append(bytes(frame))
    Path(path).write_bytes(b"".join(out))


def read_capture(path):
    """Every record of a pcap or pcapng capture: [(ts_ns, frame_bytes, wirelen)] in file order.

    Read with scapy's raw readers (independent of softdpu's own readers).
    """
    from scapy.utils import RawPcapNgReader, RawPcapReader
    records = []
    with RawPcapReader(str(path)) as r:
        ng = isinstance(r, RawPcapNgReader)
        nano = getattr(r, "nano", False)
        for frame, meta in r:
            if ng:
                ts = ((meta.tshigh << 32) | meta.tslow) * 1_000_000_000 // meta.tsresol \
                    if meta.tshigh is not None else 0
            else:
                ts = meta.sec * 1_000_000_000 + meta.usec * (1 if nano else 1000)
            records.append((ts, bytes(frame), meta.wirelen))
    return records


def merge_captures(inputs):
    """[(port, capture path)] in port order -> [(port, frame, wirelen)] in the order to inject.

    One capture: file order.  Several: by timestamp, ties broken by port order then
    file order (what softdpu's Dpu.run_pcaps does).
    """
    tagged = []
    for k, (port, path) in enumerate(inputs):
        for j, (ts, frame, wirelen) in enumerate(read_capture(path)):
            tagged.append(((ts, k, j) if len(inputs) > 1 else (0, k, j), port, frame, wirelen))
    tagged.sort(key=lambda t: t[0])
    return [(port, frame, wirelen) for _, port, frame, wirelen in tagged]


# -- unixctl: ovs-appctl without a process per call -----------------------------
def unixctl(path, method, *params, timeout=TIMEOUT):
    """One ovs-appctl command over the daemon's unixctl socket (JSON-RPC); returns the reply text.

    A fresh connection per call: see the module docstring (ordering).
    """
    request = json.dumps({"method": method, "params": [str(p) for p in params], "id": 0}).encode()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(request)
        buf = b""
        decoder = json.JSONDecoder()
        while True:
            if time.monotonic() > deadline:
                raise OvsError(f"{method}: no reply from {path} within {timeout} s")
            chunk = s.recv(65536)
            if not chunk:
                raise OvsError(f"{method}: {path} closed the connection without a reply")
            buf += chunk
            try:
                reply, _ = decoder.raw_decode(buf.decode())
            except (ValueError, UnicodeDecodeError):
                continue
            break
    if reply.get("error") is not None:
        raise OvsError(f"ovs-appctl {method} {' '.join(map(str, params))}: {str(reply['error']).strip()}")
    result = reply.get("result")
    return result if isinstance(result, str) else ("" if result is None else json.dumps(result))


def parse_flow(line):
    """ovs-ofctl parse-flow LINE -> (accepted, output text).  Needs no running switch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVS_")}
    with tempfile.TemporaryDirectory(prefix="ovs-") as d:
        env.update(OVS_RUNDIR=d, OVS_DBDIR=d, OVS_LOGDIR=d, OVS_SYSCONFDIR=d)
        r = subprocess.run([_which("ovs-ofctl"), "parse-flow", line], env=env, capture_output=True,
                           text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def _pdeathsig():
    """In the child before exec: get SIGTERM when the test process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# -- the oracle ----------------------------------------------------------------
def _port_spec(spec):
    """ports={} values: an ofport number, or {"ofport": N, "tag": N, "trunks": [..], "vlan_mode": ...}."""
    if isinstance(spec, int):
        spec = {"ofport": spec}
    spec = dict(spec)
    unknown = set(spec) - {"ofport", "tag", "trunks", "vlan_mode"}
    if unknown or not isinstance(spec.get("ofport"), int):
        raise ValueError(f"bad port spec {spec!r}: expected an ofport, or a dict with ofport "
                         "and optionally tag, trunks, vlan_mode")
    return spec


class OvsDummy:
    """A private Open vSwitch (ovsdb-server + ovs-vswitchd, dummy datapath) in tmpdir.

    Use as a context manager; see the module docstring.  Attributes after start:
    start_seconds, stop_seconds, ports ({name: spec}), ofport ({name: N}).
    """

    # ovs-vswitchd's dummy options (a subclass may change them: tests/ovs_tunnel_oracle.py)
    VSWITCHD_OPTIONS = ("--enable-dummy=override", "--disable-system")

    def __init__(self, tmpdir, ports=None, bridge="br0", vlan_limit=0):
        self.dir = Path(tmpdir).resolve()
        self.bridge = bridge
        self.vlan_limit = vlan_limit
        self.ports = {}
        self.ofport = {}
        self._initial_ports = {n: _port_spec(s) for n, s in (ports or {}).items()}
        self._procs = {}            # name -> (Popen, pidfile)
        self._tx_offset = {}        # port -> byte offset in its tx_pcap at the last reset
        self._rx_base = {}          # port -> rx_packets at the last reset
        self._injected = {}         # port -> packets injected since the last reset
        self._nflows = 0
        self.flow_protocols = None  # ovs-ofctl -O used by the last add_flows (None: OpenFlow 1.0)
        self._short = None          # a short run dir for sockets, if self.dir's path is too long
        self.start_seconds = self.stop_seconds = None

    # paths
    def _paths(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        run = self.dir
        if len(str(run)) > 80:  # unix socket paths are limited to 107 bytes
            self._short = Path(tempfile.mkdtemp(prefix="ovs-", dir="/tmp"))
            run = self._short
        self.run_dir = run
        self.db = self.dir / "conf.db"
        self.db_sock = run / "db.sock"
        self.db_ctl = run / "ovsdb-server.ctl"
        self.vs_ctl = run / "ovs-vswitchd.ctl"
        self.mgmt = run / f"{self.bridge}.mgmt"
        self.tx_dir = self.dir / "tx"
        self.tx_dir.mkdir(exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OVS_")}
        self.env.update(OVS_RUNDIR=str(run), OVS_DBDIR=str(self.dir), OVS_LOGDIR=str(self.dir),
                        OVS_SYSCONFDIR=str(self.dir))

    def tx_pcap(self, port):
        return self.tx_dir / f"{port}.pcap"

    # commands
    def _run(self, *argv, timeout=TIMEOUT, check=True):
        argv = [_which(argv[0]) or argv[0], *map(str, argv[1:])]
        try:
            r = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise OvsError(f"timed out after {timeout} s: {' '.join(argv)}{self._logs()}") from None
        if check and r.returncode != 0:
            raise OvsError(f"{' '.join(argv)} exited {r.returncode}:\n{r.stderr.strip()}{self._logs()}")
        return r

    def vsctl(self, *args):
        """ovs-vsctl against the private database (waits for ovs-vswitchd to apply)."""
        return self._run("ovs-vsctl", f"--db=unix:{self.db_sock}", f"--timeout={int(TIMEOUT)}",
                         *args).stdout

    def ofctl(self, command, *args, protocols=None):
        """ovs-ofctl COMMAND unix:<bridge mgmt socket> ARGS..."""
        opts = ["-O", protocols] if protocols else []
        return self._run("ovs-ofctl", *opts, command, f"unix:{self.mgmt}", *args).stdout

    def appctl(self, method, *params, target="vswitchd"):
        """ovs-appctl METHOD PARAMS... to ovs-vswitchd (or target="ovsdb-server")."""
        return unixctl(self.vs_ctl if target == "vswitchd" else self.db_ctl, method, *params)

    def _logs(self, lines=15):
        out = []
        for name in ("ovsdb-server", "ovs-vswitchd"):
            for suffix in (".log", ".stderr"):
                f = self.dir / f"{name}{suffix}"
                if f.is_file() and f.stat().st_size:
                    tail = f.read_text(errors="replace").splitlines()[-lines:]
                    out.append(f"\n--- {f} (last {len(tail)} lines) ---\n" + "\n".join(tail))
        return "".join(out)

    # start / stop
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _spawn(self, name, argv, ready):
        """Start a daemon as our child; wait until ready() is true."""
        pidfile = self.dir / f"{name}.pid"
        err = open(self.dir / f"{name}.stderr", "wb")
        try:
            proc = subprocess.Popen([_which(argv[0]), *map(str, argv[1:]), f"--pidfile={pidfile}",
                                     f"--log-file={self.dir / (name + '.log')}", "--no-chdir",
                                     "-vconsole:off", "-vsyslog:off"],
                                    env=self.env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    preexec_fn=_pdeathsig)
        finally:
            err.close()
        self._procs[name] = (proc, pidfile)
        deadline = time.monotonic() + TIMEOUT
        while True:
            if proc.poll() is not None:
                raise OvsError(f"{name} exited with status {proc.returncode} while starting{self._logs()}")
            try:
                if ready():
                    return
            except (OSError, OvsError):
                pass
            if time.monotonic() > deadline:
                raise OvsError(f"{name} not ready after {TIMEOUT} s{self._logs()}")
            time.sleep(0.01)

    def start(self):
        t0 = time.perf_counter()
        missing = ovs_missing()
        if missing:
            raise OvsError(f"Open vSwitch is not installed: {', '.join(missing)} missing")
        self._paths()
        if self.db.exists():
            self.db.unlink()
        self._run("ovsdb-tool", "create", self.db, _schema())
        self._spawn("ovsdb-server",
                    ["ovsdb-server", self.db, f"--remote=punix:{self.db_sock}", f"--unixctl={self.db_ctl}"],
                    ready=lambda: unixctl(self.db_ctl, "version", timeout=1) is not None)
        self._run("ovs-vsctl", f"--db=unix:{self.db_sock}", "--no-wait", "init", "--",
                  "set", "Open_vSwitch", ".", "other_config:flow-limit=0",
                  f"other_config:vlan-limit={self.vlan_limit}")
        self._spawn("ovs-vswitchd",
                    ["ovs-vswitchd", f"unix:{self.db_sock}", *self.VSWITCHD_OPTIONS,
                     f"--unixctl={self.vs_ctl}"],
                    ready=lambda: unixctl(self.vs_ctl, "version", timeout=1) is not None)
        self.vsctl("add-br", self.bridge, "--", "set", "Bridge", self.bridge, "datapath_type=dummy",
                   "fail_mode=secure", "other_config:disable-in-band=true", f"protocols={ALL_OPENFLOW}",
                   "mcast_snooping_enable=false", "stp_enable=false", "rstp_enable=false")
        self.set_ports(self._initial_ports)
        self._mark()
        self.start_seconds = time.perf_counter() - t0

    def _alive(self, proc):
        return proc.poll() is None

    def stop(self):
        """Stop both daemons (exit over unixctl, then SIGTERM, then SIGKILL) and reap them."""
        t0 = time.perf_counter()
        for name, ctl in (("ovs-vswitchd", getattr(self, "vs_ctl", None)),
                          ("ovsdb-server", getattr(self, "db_ctl", None))):
            if name not in self._procs:
                continue
            proc, pidfile = self._procs[name]
            if self._alive(proc) and ctl is not None:
                try:
                    unixctl(ctl, "exit", timeout=5)
                except (OSError, OvsError):
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            pid = self._pid_from(pidfile, proc.pid)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not self._alive(proc):
                    break
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            del self._procs[name]
        if self._short is not None:
            shutil.rmtree(self._short, ignore_errors=True)
            self._short = None
        self.stop_seconds = time.perf_counter() - t0

    @staticmethod
    def _pid_from(pidfile, child_pid):
        """The pid in the pid file if it is our child's, else the child's pid."""
        try:
            pid = int(Path(pidfile).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return child_pid
        return pid if pid == child_pid else child_pid

    # ports
    def set_ports(self, ports):
        """Make the bridge's dummy ports exactly `ports` ({name: ofport or spec}), in one transaction."""
        want = {n: _port_spec(s) for n, s in ports.items()}
        if want == self.ports:
            return
        cmds = []
        for name in self.ports:
            cmds += ["--", "--if-exists", "del-port", self.bridge, name]
        for name, spec in want.items():
            cmds += ["--", "add-port", self.bridge, name]
            if "tag" in spec:
                cmds.append(f"tag={spec['tag']}")
            if "trunks" in spec:
                cmds.append("trunks=" + ",".join(str(t) for t in spec["trunks"]))
            if "vlan_mode" in spec:
                cmds.append(f"vlan_mode={spec['vlan_mode']}")
            cmds += ["--", "set", "Interface", name, "type=dummy", f"ofport_request={spec['ofport']}",
                     f"options:tx_pcap={self.tx_pcap(name)}", f"mtu_request={MTU}"]
        self.ports = {}
        self.ofport = {}
        if cmds:
            self.vsctl(*cmds)
        got = {}
        for name in want:
            out = self.vsctl("get", "Interface", name, "ofport", "error").split("\n")
            got[name] = out[0].strip()
            if got[name] != str(want[name]["ofport"]):
                raise OvsError(f"port {name}: asked for ofport {want[name]['ofport']}, got {got[name]} "
                               f"(error: {out[1].strip() if len(out) > 1 else '?'}){self._logs()}")
        self.ports = want
        self.ofport = {n: s["ofport"] for n, s in want.items()}

    # state between cases
    def _rx_counts(self):
        text = self.appctl("dpctl/show", "-s")
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"port \d+: (\S+) \([^)]*\)\s*\n\s*RX packets:(\d+)", text)}

    def sync(self, timeout=TIMEOUT):
        """Wait until OVS has taken in (and so forwarded) every packet injected since the last reset."""
        want = {p: self._rx_base.get(p, 0) + n for p, n in self._injected.items() if n}
        deadline = time.monotonic() + timeout
        while True:
            rx = self._rx_counts()
            if all(rx.get(p, 0) >= n for p, n in want.items()):
                if any(rx.get(p, 0) > n for p, n in want.items()):
                    raise OvsError(f"a port received more than was injected: rx {rx}, expected {want}")
                return
            if time.monotonic() > deadline:
                raise OvsError(f"OVS did not take in every injected packet within {timeout} s: "
                               f"rx {rx}, expected {want}{self._logs()}")
            time.sleep(0.002)

    def _mark(self):
        rx = self._rx_counts()
        self._rx_base = {p: rx.get(p, 0) for p in self.ports}
        self._injected = {p: 0 for p in self.ports}
        self._tx_offset = {p: self.tx_pcap(p).stat().st_size if self.tx_pcap(p).exists() else 0
                           for p in self.ports}

    def reset(self, ports=None):
        """Start a new case: no flows, empty MAC table and conntrack, outputs counted from now."""
        self.sync()  # packets still queued are forwarded by the old flows, counted by the old ports
        self.ofctl("del-flows", protocols=ALL_OPENFLOW)
        self.flow_protocols = None
        self.appctl("fdb/flush", self.bridge)
        self.appctl("dpctl/flush-conntrack")
        if ports is not None:
            self.set_ports(ports)
        self._mark()

    # flows
    def add_flows(self, flows, protocols=None):
        """ovs-ofctl add-flows from a .flows file (a Path or an existing path) or flow text.

        protocols: ovs-ofctl -O value; by default OpenFlow 1.0 + Nicira extensions, and,
        if the flows need a later version, all of 1.0-1.5 (ovs-ofctl then talks 1.5).  A
        later version is needed when ovs-ofctl says so ("none of the usable flow formats":
        push_vlan), and when the switch refuses the OpenFlow 1.0 encoding with
        OFPBAC_UNSUPPORTED_ORDER (write_metadata then goto_table: in 1.0 the goto_table
        is sent as a resubmit action after the write_metadata instruction).
        self.flow_protocols is what was used: None (1.0) or ALL_OPENFLOW; dump_flows
        queries the switch in OpenFlow 1.3 after the latter.
        """
        is_file = isinstance(flows, Path) or ("\n" not in str(flows) and Path(str(flows)).is_file())
        path = Path(flows) if is_file else None
        if path is None:
            self._nflows += 1
            path = self.dir / f"flows-{self._nflows}.flows"
            path.write_text(str(flows) if str(flows).endswith("\n") else str(flows) + "\n")
        try:
            self.ofctl("add-flows", path, protocols=protocols)
            self.flow_protocols = protocols
        except OvsError as e:
            if protocols is None and ("none of the usable flow formats" in str(e)
                                      or "OFPBAC_UNSUPPORTED_ORDER" in str(e)):
                self.ofctl("add-flows", path, protocols=ALL_OPENFLOW)
                self.flow_protocols = ALL_OPENFLOW
            else:
                raise

    def del_flows(self):
        self.ofctl("del-flows", protocols=ALL_OPENFLOW)

    def dump_flows(self, stats=False, protocols="auto"):
        """ovs-ofctl dump-flows text (without counters and durations unless stats=True).

        protocols: ovs-ofctl -O value; "auto": OpenFlow 1.0 after flows added in 1.0,
        OpenFlow 1.3 after flows that needed a later version (1.0 cannot show push_vlan)."""
        if protocols == "auto":
            protocols = None if self.flow_protocols is None else "OpenFlow13"
        return self.ofctl("dump-flows", *([] if stats else ["--no-stats"]), protocols=protocols)

    # packets
    def receive(self, port, frame):
        """Inject one frame as received on `port` (ovs-appctl netdev-dummy/receive PORT HEX)."""
        frame = bytes(frame)
        if port not in self.ports:
            raise KeyError(f"no port {port!r}; ports are {', '.join(self.ports)}")
        if len(frame) < ETH_HEADER_LEN:
            raise ValueError(f"a {len(frame)}-byte frame: OVS cannot receive frames under 14 bytes")
        self.appctl("netdev-dummy/receive", port, frame.hex())
        self._injected[port] = self._injected.get(port, 0) + 1

    def inject(self, packets):
        """Inject [(port, frame), ...] in order."""
        for port, frame in packets:
            self.receive(port, frame)

    def run_pcap(self, port, pcap_path):
        """Inject every packet of a capture (pcap or pcapng) on `port`, in file order."""
        for _, frame, _ in read_capture(pcap_path):
            self.receive(port, frame)

    def run_pcaps(self, inputs):
        """Inject several captures [(port, path)] merged as softdpu merges them (see merge_captures)."""
        for port, frame, _ in merge_captures(inputs):
            self.receive(port, frame)

    def outputs(self):
        """{port: [frame bytes, ...]}: what each port transmitted since the last reset, in order."""
        self.sync()
        return {p: read_pcap(self.tx_pcap(p), self._tx_offset.get(p, 0)) if self.tx_pcap(p).exists() else []
                for p in self.ports}

    def trace(self, port, frame):
        """ovs-appctl ofproto/trace BRIDGE in_port=N HEX: OVS's explanation of one packet."""
        return self.appctl("ofproto/trace", self.bridge, f"in_port={self.ofport[port]}", bytes(frame).hex())



def port_specs(cfg):
    """OvsDummy port specs of a softdpu pipeline's ports (VLAN settings pass through when a port has them)."""
    return {p.name: {"ofport": p.ofport, **{k: p.options[k] for k in ("tag", "trunks", "vlan_mode")
                                            if k in p.options}}
            for p in cfg.ports}
