"""Micro-segmentation: the [firewall] section of pipeline files, compiled into ct() flows.

In the spirit of NSX distributed-firewall sections and OVN ACLs (allow-related):

    [firewall]
    default = "drop"            # what no rule matches: "drop" (default), "allow" or "reject"
    zone = 1                    # conntrack zone of the firewall's ct() (default 0)
    table = 0                   # the firewall's first table (default 0); it uses table and table+1
    next_table = "normal"       # where allowed packets go: "normal" (default) or a table of the .flows file

    [firewall.groups]           # named sets of endpoints; a packet is in a group when it matches any member
    web = { cidrs = ["10.0.1.0/24", "fd00:1::/64"] }
    admins = { cidrs = ["10.9.0.0/16"], ports = ["p3"] }   # also vlans = [10], tunnel_keys = [5001]

    [firewall.services]         # protocol (tcp, udp, icmp, icmp6, any) and destination ports
    http = { protocol = "tcp", ports = [80, 443, "8000-8080"] }
    ping = { protocol = "icmp" }

    [[firewall.rule]]           # in order: the first rule that matches decides
    name = "web to db"
    from = "web"                # a group, a list of groups, or "any" (default)
    to = "db"                   # idem
    service = "pg"              # a service, a list of services, or "any" (default)
    action = "allow"            # allow | drop | reject
    stateful = true             # allow only: commit the connection so its replies pass (default)

Semantics (what an NSX or OVN user expects):
  - Rules are ordered; the first that matches a new connection decides (rule k gets
    priority 60000 - k).  Packets of connections conntrack already knows (+est, +rel,
    not +inv) pass before any rule: a stateful allow lets the replies and the related
    ICMP errors through (OVN allow-related, NSX stateful rules).  Invalid packets
    (+inv) match only stateless allow and drop rules, else are dropped.
  - A stateful allow commits the connection (ct(commit,zone=Z)) and sends the packet on.
    A stateless allow (stateful = false) only sends it on: its replies are new
    packets that need a rule of their own (NSX stateless rules, OVN allow-stateless).
  - drop drops silently.  reject drops and answers the sender: a TCP RST for TCP, an
    ICMP/ICMPv6 destination unreachable (administratively prohibited) otherwise
    (stages/flows/reject.py).  `reject` is a softdpu flow action: Open vSwitch has none
    (OVN builds these answers in ovn-controller), so `compile-policy --ovs` prints
    reject rules as drop for OVS, with a comment.  An invalid packet matching a
    reject rule is dropped, not answered.
  - Groups: CIDRs (IPv4 and IPv6; an IPv4 member only meets IPv4 traffic), and ingress
    members: ports (softdpu port names -> in_port), vlans (dl_vlan) and tunnel_keys
    (tun_id).  Ingress members say where a packet comes from, so a group that has
    them may be used in `from` only.  "any" is every endpoint / every service.
  - Services: tcp/udp with destination ports and ranges ("8000-8080" becomes the
    fewest masked tp_dst matches, as ovs-ofctl users write by hand); icmp (IPv4),
    icmp6, any (every IP protocol, no ports).
  - The default action applies to IP packets no rule matched (a default "allow" is
    stateful).  Non-IP frames (ARP, ...) and IPv6 neighbour discovery (ICMPv6 133-136)
    are not policed: they go straight to next_table, as OVN lets ARP/ND through.

Table layout (T = table, N = next: `normal` or `goto_table:N`):
  T    priority 65535  icmp6, icmpv6_type=133..136 -> N             (ND bypass)
       priority 100    ip / ipv6 -> ct(zone=Z,table=T+1)
       priority 0      anything else -> N                           (non-IP)
  T+1  priority 65534  ct_state=+est-inv+trk / +rel-new-inv+trk -> N  (allow-related)
       priority 60000-k  rule k's flows (# rule: <name>)
       priority 2      ct_state=+inv+trk -> drop
       priority 1      default: drop | reject | ip/ipv6 -> ct(commit,zone=Z),N

In a pipeline the compiled flows come first, then the .flows file's, which must not
use tables T and T+1 (next_table, when a number, must be a table of the .flows file,
after T+1).  `softdpu compile-policy PIPELINE` prints the compiled flows.

  parse(path, section, loc, ports) -> Firewall   (config.py calls it; ConfigError names
                                                  file:line and the key)
  compile_flows(fw, ovs=False) -> [flow lines]   (ovs-ofctl add-flows syntax, with comments)
  flow_rules(cfg) -> [Rule]                      (the compiled flows and the .flows file's)
  port_ranges(lo, hi) -> [(value, mask)]         (a range as masked matches)
"""
import ipaddress
import re
from dataclasses import dataclass, field

from softdpu.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
ACTIONS = ("allow", "drop", "reject")
PROTOCOLS = ("tcp", "udp", "icmp", "icmp6", "any")
FIREWALL_KEYS = {"default", "zone", "table", "next_table", "groups", "services", "rule"}
GROUP_KEYS = {"cidrs", "ports", "vlans", "tunnel_keys"}
SERVICE_KEYS = {"protocol", "ports"}
RULE_KEYS = {"name", "from", "to", "service", "action", "stateful"}
RULE_PRIORITY = 60000
MAX_RULES = 50000
ND_TYPES = (133, 134, 135, 136)      # router/neighbour solicitation and advertisement


@dataclass
class Group:
    name: str
    members: list          # ("ip", ip_network) | ("in_port", ofport) | ("vlan", vid) | ("tun_id", key)

    @property
    def ingress(self):
        return any(kind != "ip" for kind, _ in self.members)


@dataclass
class Service:
    name: str
    protocol: str           # tcp, udp, icmp, icmp6, any
    ports: list             # [(lo, hi)]; [] every port


@dataclass
class FwRule:
    name: str
    src: list               # [Group] ([] = any)
    dst: list
    services: list          # [Service] ([] = any)
    action: str
    stateful: bool
    line: int


@dataclass
class Firewall:
    path: object
    default: str = "drop"
    zone: int = 0
    table: int = 0
    next_table: object = "normal"   # "normal" or an int
    line: int = None
    groups: dict = field(default_factory=dict)
    services: dict = field(default_factory=dict)
    rules: list = field(default_factory=list)

    @property
    def tables(self):
        return (self.table, self.table + 1)


ANY_GROUP = Group("any", [])
ANY_SERVICE = Service("any", "any", [])


# -- port ranges --------------------------------------------------------------------
def port_ranges(lo, hi, bits=16):
    """The fewest (value, mask) prefix matches covering lo..hi exactly."""
    if not 0 <= lo <= hi < 1 << bits:
        raise ValueError(f"bad range {lo}-{hi}")
    full = (1 << bits) - 1
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << bits          # the largest aligned block at lo ...
        while size > hi - lo + 1:                     # ... that fits
            size >>= 1
        out.append((lo, full & ~(size - 1)))
        lo += size
    return out


# -- parsing --------------------------------------------------------------------------
class _Where:
    """Lines of the [firewall] keys in the pipeline file, for error messages."""

    def __init__(self, path, loc):
        self.path, self.loc = path, loc

    def top(self, key=None):
        return self.loc.line("firewall", key=key) or self.section()

    def section(self):
        for n, text in enumerate(self.loc.lines):
            if re.match(r"^\s*\[\[?\s*firewall\s*[\].]", text):
                return n + 1
        return None

    def entry(self, table, name, key=None):
        """Line of `name = {...}` in [firewall.<table>], or of [firewall.<table>.<name>] (its key)."""
        sub = self.loc.line(f"firewall.{table}.{name}", key=key)
        if sub is not None:
            return sub
        return self.loc.line(f"firewall.{table}", key=name) or self.top(table)

    def rule(self, k, key=None):
        return self.loc.line("firewall.rule", k, key) or self.top("rule")

    def error(self, key, message, line):
        return ConfigError(self.path, key, message, line)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def parse(path, fw, loc, ports):
    """The [firewall] table `fw` of pipeline file `path` -> Firewall.
    loc: config._Locator of the file; ports: its PortConfigs (port names -> in_port)."""
    w = _Where(path, loc)
    if not isinstance(fw, dict):
        raise w.error("firewall", "expected a [firewall] table", w.section())
    for key in fw:
        if key not in FIREWALL_KEYS:
            raise w.error(f"firewall.{key}", f"unknown key; expected one of: {', '.join(sorted(FIREWALL_KEYS))}",
                          w.top(key))
    out = Firewall(path=path, line=w.section())
    if "default" in fw:
        if fw["default"] not in ACTIONS:
            raise w.error("firewall.default", f'expected "allow", "drop" or "reject", got {fw["default"]!r}',
                          w.top("default"))
        out.default = fw["default"]
    if "zone" in fw:
        if not _is_int(fw["zone"]) or not 0 <= fw["zone"] <= 65535:
            raise w.error("firewall.zone", f"expected a conntrack zone 0..65535, got {fw['zone']!r}", w.top("zone"))
        out.zone = fw["zone"]
    if "table" in fw:
        if not _is_int(fw["table"]) or not 0 <= fw["table"] <= 252:
            raise w.error("firewall.table", f"expected the firewall's first table 0..252 (it uses two), "
                          f"got {fw['table']!r}", w.top("table"))
        out.table = fw["table"]
    if "next_table" in fw:
        n = fw["next_table"]
        if n != "normal" and not (_is_int(n) and out.table + 2 <= n <= 254):
            raise w.error("firewall.next_table", f'expected "normal" or a table {out.table + 2}..254 of the '
                          f".flows file (after the firewall's tables {out.table} and {out.table + 1}), got {n!r}",
                          w.top("next_table"))
        out.next_table = n
    ofports = {p.name: p.ofport for p in ports}
    groups = fw.get("groups", {})
    if not isinstance(groups, dict):
        raise w.error("firewall.groups", "expected a table of groups: name = { cidrs = [...], ... }",
                      w.top("groups"))
    for name, g in groups.items():
        out.groups[name] = _group(w, name, g, ofports)
    services = fw.get("services", {})
    if not isinstance(services, dict):
        raise w.error("firewall.services", 'expected a table of services: name = { protocol = "tcp", ... }',
                      w.top("services"))
    for name, s in services.items():
        out.services[name] = _service(w, name, s)
    rules = fw.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise w.error("firewall.rule", "expected [[firewall.rule]] tables", w.top("rule"))
    if len(rules) > MAX_RULES:
        raise w.error("firewall.rule", f"at most {MAX_RULES} rules, got {len(rules)}", w.top("rule"))
    names = {}
    for k, r in enumerate(rules):
        rule = _rule(w, k, r, out)
        if rule.name in names:
            raise w.error(f"firewall.rule[{k}].name", f"duplicate rule name {rule.name!r} (also "
                          f"firewall.rule[{names[rule.name]}])", w.rule(k, "name"))
        names[rule.name] = k
        out.rules.append(rule)
    return out


def _name(w, key, name, line):
    if not NAME_RE.match(name) or name == "any":
        raise w.error(key, f"expected a name (a letter or _, then letters, digits, _ . -; not 'any'), "
                      f"got {name!r}", line)


def _list(w, key, value, line, what):
    if not isinstance(value, list) or not value:
        raise w.error(key, f"expected a non-empty list of {what}, got {value!r}", line)
    return value


def _group(w, name, g, ofports):
    where = lambda k=None: w.entry("groups", name, k)  # noqa: E731
    key = f"firewall.groups.{name}"
    _name(w, key, name, where())
    if not isinstance(g, dict):
        raise w.error(key, 'expected { cidrs = ["10.0.0.0/24", ...], ports = [...], vlans = [...], '
                      f"tunnel_keys = [...] }}, got {g!r}", where())
    for k in g:
        if k not in GROUP_KEYS:
            raise w.error(f"{key}.{k}", f"unknown key; expected one of: {', '.join(sorted(GROUP_KEYS))}", where(k))
    if not g:
        raise w.error(key, "an empty group: give it cidrs, ports, vlans or tunnel_keys", where())
    members = []
    for c in _list(w, f"{key}.cidrs", g["cidrs"], where("cidrs"), "CIDRs") if "cidrs" in g else []:
        if not isinstance(c, str):
            raise w.error(f"{key}.cidrs", f"expected a CIDR string such as \"10.0.1.0/24\", got {c!r}", where("cidrs"))
        try:
            net = ipaddress.ip_network(c, strict=True)
        except ValueError as e:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(c, strict=False)}?"
            except ValueError:
                pass
            raise w.error(f"{key}.cidrs", f"bad CIDR {c!r}: {e}{hint}", where("cidrs")) from None
        members.append(("ip", net))
    for p in _list(w, f"{key}.ports", g["ports"], where("ports"), "port names") if "ports" in g else []:
        if p not in ofports:
            raise w.error(f"{key}.ports", f"no port named {p!r}; ports are: {', '.join(ofports)}", where("ports"))
        members.append(("in_port", ofports[p]))
    for v in _list(w, f"{key}.vlans", g["vlans"], where("vlans"), "VLAN ids") if "vlans" in g else []:
        if not _is_int(v) or not 0 <= v <= 4095:
            raise w.error(f"{key}.vlans", f"expected VLAN ids 0..4095, got {v!r}", where("vlans"))
        members.append(("vlan", v))
    for t in _list(w, f"{key}.tunnel_keys", g["tunnel_keys"], where("tunnel_keys"), "tunnel keys") \
            if "tunnel_keys" in g else []:
        if not _is_int(t) or not 0 <= t < 1 << 64:
            raise w.error(f"{key}.tunnel_keys", f"expected tunnel keys (tun_id) 0..2^64-1, got {t!r}",
                          where("tunnel_keys"))
        members.append(("tun_id", t))
    return Group(name, members)


def _service(w, name, s):
    where = lambda k=None: w.entry("services", name, k)  # noqa: E731
    key = f"firewall.services.{name}"
    _name(w, key, name, where())
    if not isinstance(s, dict):
        raise w.error(key, f'expected {{ protocol = "tcp", ports = [80, "8000-8080"] }}, got {s!r}', where())
    for k in s:
        if k not in SERVICE_KEYS:
            raise w.error(f"{key}.{k}", f"unknown key; expected one of: {', '.join(sorted(SERVICE_KEYS))}", where(k))
    if "protocol" not in s:
        raise w.error(f"{key}.protocol", f"missing; expected one of: {', '.join(PROTOCOLS)}", where())
    proto = s["protocol"]
    if proto not in PROTOCOLS:
        raise w.error(f"{key}.protocol", f"expected one of: {', '.join(PROTOCOLS)}, got {proto!r}", where("protocol"))
    ranges = []
    if "ports" in s:
        if proto not in ("tcp", "udp"):
            raise w.error(f"{key}.ports", f"ports need protocol tcp or udp (this service is {proto})", where("ports"))
        for p in _list(w, f"{key}.ports", s["ports"], where("ports"), 'ports (80, "443", "8000-8080")'):
            r = _port_range(p)
            if r is None:
                raise w.error(f"{key}.ports", f'expected a port 0..65535 or a range "LO-HI" (LO <= HI), got {p!r}',
                              where("ports"))
            ranges.append(r)
    return Service(name, proto, ranges)


def _port_range(p):
    if _is_int(p):
        return (p, p) if 0 <= p <= 65535 else None
    if not isinstance(p, str):
        return None
    m = re.fullmatch(r"\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?", p)
    if not m:
        return None
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    return (lo, hi) if lo <= hi <= 65535 else None


def _names(w, key, value, line, table, kind):
    """A name, a list of names, or "any" -> [objects] ([] for any)."""
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) for n in names):
        raise w.error(key, f'expected a {kind} name, a list of them, or "any", got {value!r}', line)
    if "any" in names:
        if len(names) > 1:
            raise w.error(key, f'"any" with other {kind}s: "any" alone already means every {kind}', line)
        return []
    out = []
    for n in names:
        if n not in table:
            known = ", ".join(sorted(table)) or f"none defined in [firewall.{kind}s]"
            raise w.error(key, f"no {kind} named {n!r}; {kind}s are: {known} (or \"any\")", line)
        out.append(table[n])
    return out


def _rule(w, k, r, fw):
    key = f"firewall.rule[{k}]"
    for x in r:
        if x not in RULE_KEYS:
            raise w.error(f"{key}.{x}", f"unknown key; expected one of: {', '.join(sorted(RULE_KEYS))}", w.rule(k, x))
    name = r.get("name", f"rule {k + 1}")
    if not isinstance(name, str) or not name.strip() or "\n" in name or len(name) > 200:
        raise w.error(f"{key}.name", f"expected a one-line name, got {name!r}", w.rule(k, "name"))
    if "action" not in r:
        raise w.error(f"{key}.action", "missing; expected allow, drop or reject", w.rule(k))
    if r["action"] not in ACTIONS:
        raise w.error(f"{key}.action", f"expected allow, drop or reject, got {r['action']!r}", w.rule(k, "action"))
    stateful = r.get("stateful", True)
    if not isinstance(stateful, bool):
        raise w.error(f"{key}.stateful", f"expected true or false, got {stateful!r}", w.rule(k, "stateful"))
    src = _names(w, f"{key}.from", r.get("from", "any"), w.rule(k, "from"), fw.groups, "group")
    dst = _names(w, f"{key}.to", r.get("to", "any"), w.rule(k, "to"), fw.groups, "group")
    for g in dst:
        if g.ingress:
            raise w.error(f"{key}.to", f"group {g.name!r} has ports, vlans or tunnel_keys: those say where a "
                          "packet comes from, so the group can only be used in `from`", w.rule(k, "to"))
    services = _names(w, f"{key}.service", r.get("service", "any"), w.rule(k, "service"), fw.services, "service")
    return FwRule(name.strip(), src, dst, services, r["action"], stateful, w.rule(k))


# -- compiling ------------------------------------------------------------------------
def _ip_match(net, side):
    fam = 4 if net.version == 4 else 6
    field = ("nw_" if fam == 4 else "ipv6_") + side
    full = net.prefixlen == net.max_prefixlen
    text = str(net.network_address) if full else str(net)
    return fam, (None if net.prefixlen == 0 else f"{field}={text}")


def _member_match(member, side):
    """-> (family or None, match text or None)."""
    if member is None:
        return None, None
    kind, v = member
    if kind == "ip":
        return _ip_match(v, "src" if side == "src" else "dst")
    return None, {"in_port": f"in_port={v}", "vlan": f"dl_vlan={v}", "tun_id": f"tun_id={v:#x}"}[kind]


_PROTO = {("tcp", 4): "tcp", ("tcp", 6): "tcp6", ("udp", 4): "udp", ("udp", 6): "udp6",
          ("icmp", 4): "icmp", ("icmp6", 6): "icmp6", ("any", 4): "ip", ("any", 6): "ipv6"}
_SERVICE_FAMILY = {"icmp": 4, "icmp6": 6}


def _port_matches(service):
    if not service.ports:
        return [None]
    out = []
    for lo, hi in service.ports:
        for v, m in port_ranges(lo, hi):
            text = f"tp_dst={v}" if m == 0xFFFF else f"tp_dst={v:#x}/{m:#x}"
            if text not in out:
                out.append(text)
    return out


def rule_matches(rule):
    """The match texts (protocol first) of one firewall rule, without ct_state."""
    out = []
    for s in rule.src and [m for g in rule.src for m in g.members] or [None]:
        for d in rule.dst and [m for g in rule.dst for m in g.members] or [None]:
            for svc in rule.services or [ANY_SERVICE]:
                fs, ms = _member_match(s, "src")
                fd, md = _member_match(d, "dst")
                fams = {f for f in (fs, fd, _SERVICE_FAMILY.get(svc.protocol)) if f}
                if len(fams) > 1:
                    continue          # IPv4 with IPv6: nothing can match
                for fam in sorted(fams) if fams else (4, 6):
                    proto = _PROTO[(svc.protocol, fam)]
                    for pm in _port_matches(svc):
                        text = ",".join(p for p in (proto, ms, md, pm) if p)
                        if text not in out:
                            out.append(text)
    return out


def _next(fw):
    return "normal" if fw.next_table == "normal" else f"goto_table:{fw.next_table}"


def compile_flows(fw, ovs=False, source=None):
    """The firewall as ovs-ofctl add-flows lines (comments start with '#').

    ovs=True: for Open vSwitch, which has no reject action: reject becomes drop."""
    t0, t1 = fw.tables
    nxt = _next(fw)
    z = f"zone={fw.zone}"
    lines = [f"# micro-segmentation policy compiled by softdpu from {source or fw.path} [firewall]",
             f"# table {t0}: IP into conntrack (zone {fw.zone}), table {t1}: the rules; "
             f"allowed packets -> {nxt}"]
    if ovs and any(r.action == "reject" for r in fw.rules) or (ovs and fw.default == "reject"):
        lines.append("# reject is a softdpu action (TCP RST / ICMP unreachable); Open vSwitch has none: "
                     "compiled as drop here")
    reject = "drop" if ovs else "reject"
    lines.append(f"# table {t0}: IPv6 neighbour discovery and non-IP frames are not policed")
    for typ in ND_TYPES:
        lines.append(f"table={t0},priority=65535,icmp6,icmpv6_type={typ},actions={nxt}")
    lines.append(f"table={t0},priority=100,ip,actions=ct({z},table={t1})")
    lines.append(f"table={t0},priority=100,ipv6,actions=ct({z},table={t1})")
    lines.append(f"table={t0},priority=0,actions={nxt}")
    lines.append(f"# table {t1}: connections conntrack knows (allow-related); invalid packets")
    lines.append(f"table={t1},priority=65534,ct_state=+est-inv+trk,actions={nxt}")
    lines.append(f"table={t1},priority=65534,ct_state=+rel-new-inv+trk,actions={nxt}")
    for k, rule in enumerate(fw.rules):
        prio = RULE_PRIORITY - k
        kind = rule.action + ("" if rule.action != "allow" else (" stateful" if rule.stateful else " stateless"))
        lines.append(f"# rule: {rule.name} ({kind})")
        matches = rule_matches(rule)
        if not matches:
            lines.append("# (matches nothing: IPv4 and IPv6 members or services never meet)")
        for m in matches:
            head = f"table={t1},priority={prio},{m}"
            if rule.action == "allow" and rule.stateful:
                lines.append(f"{head},ct_state=+new+trk,actions=ct(commit,{z}),{nxt}")
            elif rule.action == "allow":
                lines.append(f"{head},actions={nxt}")
            elif rule.action == "drop":
                lines.append(f"{head},actions=drop")
            else:
                lines.append(f"{head},ct_state=-inv+trk,actions={reject}")
                lines.append(f"{head},ct_state=+inv+trk,actions=drop")
    lines.append(f"# invalid packets no rule allowed; the default action ({fw.default})")
    lines.append(f"table={t1},priority=2,ct_state=+inv+trk,actions=drop")
    if fw.default == "allow":
        lines.append(f"table={t1},priority=1,ip,actions=ct(commit,{z}),{nxt}")
        lines.append(f"table={t1},priority=1,ipv6,actions=ct(commit,{z}),{nxt}")
    else:
        lines.append(f"table={t1},priority=1,actions={'drop' if fw.default == 'drop' else reject}")
    return lines


def flow_rules(cfg):
    """The Rules a pipeline runs: its compiled [firewall] (if any) then its .flows file's.

    A compiled flow's source (trace, dump-flows --where) is the pipeline file at the line of
    its [[firewall.rule]] (of [firewall] for the fixed flows)."""
    from softdpu.stages.flows.syntax import parse_file, parse_line

    rules = parse_file(cfg.flows)
    fw = getattr(cfg, "firewall", None)
    if fw is None:
        return rules
    for r in rules:
        if r.table in fw.tables:
            raise ConfigError(cfg.path, "firewall.table", f"{r.where}: a flow in table {r.table}: the firewall "
                              f"owns tables {fw.tables[0]} and {fw.tables[1]} (move the flow, or set "
                              "[firewall] table)", fw.line)
    if fw.next_table != "normal" and not any(r.table == fw.next_table for r in rules):
        raise ConfigError(cfg.path, "firewall.next_table", f"{cfg.flows} has no flow in table {fw.next_table}: "
                          "allowed packets would all miss", fw.line)
    compiled = []
    line = fw.line or 0
    for text in compile_flows(fw):
        m = re.match(r"# rule: (.*) \((allow|drop|reject)", text)
        if m:
            line = next(r.line for r in fw.rules if r.name == m.group(1))
        if text.startswith("#"):
            continue
        if "priority=2," in text or "priority=1," in text:
            line = fw.line or 0
        compiled.append(parse_line(text, cfg.path, line))
    return compiled + rules
