"""Pipeline files: the TOML schema and its validation.

A pipeline file declares the pipeline's settings and its ports, and points
to the .flows file (ovs-ofctl syntax) that programs it:

    [pipeline]
    flows = "l2-passthrough.flows"   # relative to this file
    batch = 256                      # packets per batch
    max_frame = 1600                 # longest frame accepted (9216 for jumbo)
    malformed = "forward"            # or "drop": packets with a parse error

    [[port]]
    name = "p1"                      # used for output file names
    ofport = 1                       # OpenFlow port number (in_port, output:)
    type = "pcap"
    input = "../fixtures/pcaps/x.pcap"   # default input, relative to this file

Loading checks everything: an unknown key, a missing key, a value of the
wrong type or range, a duplicate port name or number, a missing file.
Each error names the file, the line (found by reading the text) and the key.
The schema is plain data: later port types add entries to PORT_TYPES.
Tunnel ports (vxlan, geneve), the underlay's mac/mtu and [[neighbor]] tables
are in config_tunnels.py; IPsec SAs and policies ([[esp.sa]], [[esp.policy]],
[port.ipsec]) in config_esp.py.  A [firewall] section (micro-segmentation: groups, services,
ordered rules) is read by policy.py and compiled into flows run before the
.flows file's.
"""
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from softdpu import config_esp, config_tunnels
from softdpu.batch import DEFAULT_MAX_FRAME, DEFAULT_SIZE
from softdpu.errors import ConfigError

OFPP_MAX = 0xFF00  # OpenFlow 1.0 port numbers 1..0xfeff are physical/logical ports
PIPELINE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a safe folder name
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")  # fits an interface name

# key -> (type, description); checked in this order.
PIPELINE_KEYS = {
    "name": (str, "a pipeline name (letters, digits, _ . -; names the default output folder)"),
    "flows": (str, "the .flows file, relative to the pipeline file"),
    "batch": (int, "packets per batch, 1..65536"),
    "max_frame": (int, "longest frame in bytes, 60..65535"),
    "malformed": (str, '"forward" (as Open vSwitch: fields parsed so far) or "drop"'),
    "mac_aging": (int, "seconds a learned MAC entry of `normal` lives (capture clock), 1..86400"),
    "mac_table_size": (int, "most MAC entries `normal` keeps, 1..1048576"),
}
PORT_COMMON = {
    "name": (str, "a port name (letters, digits, _ . -, at most 15 characters)"),
    "ofport": (int, f"an OpenFlow port number, 1..{OFPP_MAX - 1}"),
    "type": (str, "a port type"),
}
# optional on every port type: its VLAN mode for the `normal` action
PORT_VLAN = {
    "tag": (int, "an access VLAN, 0..4095"),
    "trunks": (list, "a list of VLANs 0..4095 carried by this trunk port"),
}
PORT_TYPES = {
    "pcap": {"input": (str, "a capture file (pcap or pcapng), relative to the pipeline file")},
    # live ports (softdpu start): mac / mtu also apply (config_tunnels.UNDERLAY_KEYS)
    "afpacket": {"interface": (str, "the interface to attach to (default: the port's name)"),
                 "tx": (str, '"ring" (default: a TPACKET_V2 TX ring) or "sendmmsg"')},
    "tap": {"interface": (str, "the TAP device to create (default: the port's name)"),
            "netns": (str, "the network namespace to move the TAP device into (default: softdpu's)")},
    "vxlan": {},       # options: config_tunnels.TUNNEL_KEYS
    "geneve": {},
}


@dataclass
class PortConfig:
    name: str
    ofport: int
    type: str
    options: dict = field(default_factory=dict)


@dataclass
class PipelineConfig:
    path: Path
    name: str
    flows: Path
    batch: int = DEFAULT_SIZE
    max_frame: int = DEFAULT_MAX_FRAME
    drop_malformed: bool = False
    mac_aging: int = 300
    mac_table_size: int = 8192
    ports: list = field(default_factory=list)
    neighbors: dict = field(default_factory=dict)   # ip address -> MAC (int), [[neighbor]]
    geneve_options: list = field(default_factory=list)  # [(class, type, len, tun_metadata n)]
    conntrack_size: int = 1_000_000                 # [conntrack] size: connections ct() can track
    conntrack_timeouts: object = None               # [conntrack.timeouts]: a CtTimeouts, or OVS's
    firewall: object = None                         # [firewall]: a policy.Firewall, compiled before the flows
    esp: object = None                              # [[esp.sa]], [[esp.policy]], [port.ipsec]: config_esp

    def port(self, name):
        for p in self.ports:
            if p.name == name:
                return p
        raise KeyError(name)


class _Locator:
    """Finds the line of a key in the TOML text, for error messages."""

    def __init__(self, text):
        self.lines = text.splitlines()

    def line(self, table, index=None, key=None):
        """Line of `key` in [table] (or the index-th [[table]]), or of the header."""
        header = re.compile(r"^\s*\[\[\s*%s\s*\]\]" % re.escape(table) if index is not None
                            else r"^\s*\[\s*%s\s*\]" % re.escape(table))
        seen, start = -1, None
        for n, text in enumerate(self.lines):
            if header.match(text):
                seen += 1
                if index is None or seen == index:
                    start = n
                    break
        if start is None:
            return None
        if key is None:
            return start + 1
        keyre = re.compile(r"^\s*([\"']?)%s\1\s*=" % re.escape(key))
        for n in range(start + 1, len(self.lines)):
            if re.match(r"^\s*\[", self.lines[n]):
                break
            if keyre.match(self.lines[n]):
                return n + 1
        return start + 1


def _top_line(loc, key):
    """Line of a top-level key: its [key] / [[key]] / [key.x] header, or `key =` before any header."""
    keyre = re.escape(key)
    for n, text in enumerate(loc.lines):
        if re.match(r"^\s*\[\[?\s*([\"']?)%s\1\s*[\].]" % keyre, text):
            return n + 1
    for n, text in enumerate(loc.lines):
        if re.match(r"^\s*\[", text):
            break
        if re.match(r"^\s*([\"']?)%s\1\s*[=.]" % keyre, text):
            return n + 1
    return None


def load(path):
    """Read and validate a pipeline file; returns a PipelineConfig or raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(path, "file", "no such pipeline file") from None
    except OSError as e:
        raise ConfigError(path, "file", f"cannot read: {e.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"line (\d+)", str(e))
        raise ConfigError(path, "toml", f"not valid TOML: {e}", int(m.group(1)) if m else None) from None
    return _validate(path, doc, _Locator(text))


def _check(path, where, key, value, kind, expected):
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise ConfigError(path, key, f"expected {expected}, got {value!r}", where)
    return value


def _unknown(path, loc_line, table, known, got):
    for key in got:
        if key not in known:
            raise ConfigError(path, f"{table}.{key}" if table else key,
                              f"unknown key; expected one of: {', '.join(sorted(known))}",
                              loc_line(key))


def _validate(path, doc, loc):
    base = path.parent
    _unknown(path, lambda k: _top_line(loc, k), "",
             {"pipeline", "port", "neighbor", "geneve_option", "conntrack", "firewall", "esp"}, doc)
    pipe = doc.get("pipeline")
    if pipe is None:
        raise ConfigError(path, "pipeline", "missing [pipeline] table")
    if not isinstance(pipe, dict):
        raise ConfigError(path, "pipeline", f"expected a [pipeline] table, got {pipe!r}",
                          _top_line(loc, "pipeline"))
    _unknown(path, lambda k: loc.line("pipeline", key=k), "pipeline", PIPELINE_KEYS, pipe)
    for key, (kind, expected) in PIPELINE_KEYS.items():
        if key in pipe:
            _check(path, loc.line("pipeline", key=key), f"pipeline.{key}", pipe[key], kind, expected)
    if "flows" not in pipe:
        raise ConfigError(path, "pipeline.flows", "missing; expected " + PIPELINE_KEYS["flows"][1],
                          loc.line("pipeline"))
    flows = (base / pipe["flows"]).resolve()
    if not flows.is_file():
        raise ConfigError(path, "pipeline.flows", f"no such file: {flows}", loc.line("pipeline", key="flows"))
    cfg = PipelineConfig(path=path, name=pipe.get("name", path.stem), flows=flows)
    if not PIPELINE_NAME_RE.match(cfg.name):
        raise ConfigError(path, "pipeline.name", f"expected {PIPELINE_KEYS['name'][1]}, got {cfg.name!r}",
                          loc.line("pipeline", key="name"))
    if "batch" in pipe:
        if not 1 <= pipe["batch"] <= 65536:
            raise ConfigError(path, "pipeline.batch", f"expected 1..65536, got {pipe['batch']}",
                              loc.line("pipeline", key="batch"))
        cfg.batch = pipe["batch"]
    if "max_frame" in pipe:
        if not 60 <= pipe["max_frame"] <= 65535:
            raise ConfigError(path, "pipeline.max_frame", f"expected 60..65535, got {pipe['max_frame']}",
                              loc.line("pipeline", key="max_frame"))
        cfg.max_frame = pipe["max_frame"]
    if "malformed" in pipe:
        if pipe["malformed"] not in ("forward", "drop"):
            raise ConfigError(path, "pipeline.malformed",
                              f"expected {PIPELINE_KEYS['malformed'][1]}, got {pipe['malformed']!r}",
                              loc.line("pipeline", key="malformed"))
        cfg.drop_malformed = pipe["malformed"] == "drop"
    for key, hi in (("mac_aging", 86400), ("mac_table_size", 1 << 20)):
        if key in pipe:
            if not 1 <= pipe[key] <= hi:
                raise ConfigError(path, f"pipeline.{key}", f"expected {PIPELINE_KEYS[key][1]}, got {pipe[key]}",
                                  loc.line("pipeline", key=key))
            setattr(cfg, key, pipe[key])

    ports = doc.get("port", [])
    if not isinstance(ports, list) or not ports:
        got = "" if ports == [] else f", got {'a [port] table' if isinstance(ports, dict) else repr(ports)}"
        raise ConfigError(path, "port", "expected at least one [[port]] table" + got, _top_line(loc, "port"))
    names, numbers = {}, {}
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            raise ConfigError(path, f"port[{i}]", f"expected a [[port]] table, got {p!r}", _top_line(loc, "port"))
        cfg.ports.append(_port(path, base, i, p, loc, names, numbers))
    config_tunnels.resolve_underlays(path, cfg.ports, lambda k, key: loc.line("port", k, key))
    cfg.neighbors = config_tunnels.neighbours(path, doc, loc)
    cfg.geneve_options = config_tunnels.geneve_options(path, doc, loc)
    _conntrack(path, doc, loc, cfg)
    cfg.esp = config_esp.load(path, doc, loc, cfg.ports)
    if "firewall" in doc:                           # micro-segmentation: policy.py
        from softdpu import policy
        cfg.firewall = policy.parse(path, doc["firewall"], loc, cfg.ports)
    return cfg


def _port(path, base, i, p, loc, names, numbers):
    line = lambda k=None: loc.line("port", i, k)  # noqa: E731
    for key, (kind, expected) in PORT_COMMON.items():
        if key not in p:
            raise ConfigError(path, f"port[{i}].{key}", f"missing; expected {expected}", line())
        _check(path, line(key), f"port[{i}].{key}", p[key], kind, expected)
    name, ofport, ptype = p["name"], p["ofport"], p["type"]
    if not NAME_RE.match(name):
        raise ConfigError(path, f"port[{i}].name", f"expected {PORT_COMMON['name'][1]}, got {name!r}", line("name"))
    if not 1 <= ofport < OFPP_MAX:
        raise ConfigError(path, f"port[{i}].ofport", f"expected 1..{OFPP_MAX - 1}, got {ofport}", line("ofport"))
    if ptype not in PORT_TYPES:
        raise ConfigError(path, f"port[{i}].type",
                          f"unknown port type {ptype!r}; expected one of: {', '.join(sorted(PORT_TYPES))}",
                          line("type"))
    if name in names:
        raise ConfigError(path, f"port[{i}].name", f"duplicate port name {name!r} (also port[{names[name]}])",
                          line("name"))
    if ofport in numbers:
        raise ConfigError(path, f"port[{i}].ofport",
                          f"duplicate port number {ofport} (also port[{numbers[ofport]}])", line("ofport"))
    names[name], numbers[ofport] = i, i
    schema = PORT_TYPES[ptype]
    tunnel = ptype in config_tunnels.TUNNEL_TYPES
    extra = config_tunnels.TUNNEL_KEYS if tunnel else config_tunnels.UNDERLAY_KEYS
    known = {**PORT_COMMON, **PORT_VLAN, **schema, **extra}
    if tunnel:
        known["ipsec"] = (dict, "[port.ipsec]")             # config_esp.py
    for key in p:
        if key not in known:
            raise ConfigError(path, f"port[{i}].{key}",
                              f"unknown key for a {ptype} port; expected one of: {', '.join(sorted(known))}",
                              line(key))
    options = _vlan_options(path, i, p, line)
    if "ipsec" in p:
        options["ipsec"] = p["ipsec"]               # checked by config_esp once the SAs are read
    if tunnel:
        options.update(config_tunnels.tunnel_options(path, i, p, line))
    else:
        options.update(config_tunnels.underlay_options(path, i, p, line))
    for key, (kind, expected) in schema.items():
        if key in p:
            options[key] = _check(path, line(key), f"port[{i}].{key}", p[key], kind, expected)
    if "interface" in options and not NAME_RE.match(options["interface"]):
        raise ConfigError(path, f"port[{i}].interface", f"expected an interface name (letters, digits, _ . -, "
                          f"at most 15 characters), got {options['interface']!r}", line("interface"))
    if ptype == "pcap" and "input" in options:
        f = (base / options["input"]).resolve()
        if not f.is_file():
            raise ConfigError(path, f"port[{i}].input", f"no such file: {f}", line("input"))
        options["input"] = f
    return PortConfig(name, ofport, ptype, options)


def _conntrack(path, doc, loc, cfg):
    """[conntrack] size = N (default 1M), and [conntrack.timeouts] in seconds by OVS's
    timeout-policy names (tcp_established = 3600, udp_first = 30, ...)."""
    from softdpu.stages.conntrack.timeouts import CtTimeouts

    ct = doc.get("conntrack")
    if ct is None:
        return
    line = lambda key=None: loc.line("conntrack", key=key)  # noqa: E731
    if not isinstance(ct, dict):
        raise ConfigError(path, "conntrack", "expected a [conntrack] table", _top_line(loc, "conntrack"))
    _unknown(path, line, "conntrack", {"size", "timeouts"}, ct)
    if "size" in ct:
        size = ct["size"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1 << 26:
            raise ConfigError(path, "conntrack.size", f"expected a number of connections 1..{1 << 26}, got {size!r}",
                              line("size"))
        cfg.conntrack_size = size
    if "timeouts" in ct:
        t = ct["timeouts"]
        where = loc.line("conntrack.timeouts") or line("timeouts")
        if not isinstance(t, dict):
            raise ConfigError(path, "conntrack.timeouts", "expected a table of timeouts in seconds", where)
        try:
            cfg.conntrack_timeouts = CtTimeouts.from_dict(t)
        except (ValueError, TypeError) as e:
            bad = next((k for k in t if k not in CtTimeouts.__dataclass_fields__), None)
            raise ConfigError(path, f"conntrack.timeouts{'.' + bad if bad else ''}", str(e), where) from None


def _vlan_options(path, i, p, line):
    options = {}
    for key, (kind, expected) in PORT_VLAN.items():
        if key in p:
            options[key] = _check(path, line(key), f"port[{i}].{key}", p[key], kind, expected)
    if "tag" in options and "trunks" in options:
        raise ConfigError(path, f"port[{i}].trunks", "a port is access (tag) or trunk (trunks), not both",
                          line("trunks"))
    if "tag" in options and not 0 <= options["tag"] <= 4095:
        raise ConfigError(path, f"port[{i}].tag", f"expected {PORT_VLAN['tag'][1]}, got {options['tag']}",
                          line("tag"))
    for v in options.get("trunks", []):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 4095:
            raise ConfigError(path, f"port[{i}].trunks", f"expected {PORT_VLAN['trunks'][1]}, got {v!r}",
                              line("trunks"))
    return options
