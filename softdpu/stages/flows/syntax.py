"""Flow files in ovs-ofctl `add-flows` syntax, read into Rule records.

One flow per line; blank lines and lines starting with '#' are skipped:

    [table=N,] [priority=N,] [cookie=N,] match-field[=value[/mask]], ... actions=a,b,...

Fields and actions are looked up in two tables (MATCH_FIELDS and ACTIONS
below); anything not in them is an error naming file:line:column, the token
and what was expected, never ignored.  Fields and actions that Open vSwitch
has but softdpu does not run yet are named as such.  The compiler
(flows/compile.py) turns Rules into arrays; this module only reads text.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

from softdpu.errors import FlowSyntaxError
from softdpu.stages.flows import values

DEFAULT_PRIORITY = 32768  # OFP_DEFAULT_PRIORITY


def _exact(parse):
    """A parser for a field Open vSwitch does not let be masked (in_port, dl_type)."""
    def exact(text):
        if "/" in text:
            raise ValueError("this field takes no mask")
        return parse(text)
    return exact


# match field -> value parser returning (value, mask)
MATCH_FIELDS = {
    "in_port": _exact(lambda t: values.integer(t, 16)),
    "dl_src": values.mac,
    "dl_dst": values.mac,
    "dl_type": _exact(lambda t: values.integer(t, 16)),
}

# Open vSwitch words softdpu knows of but does not implement yet.
NOT_YET = {
    "dl_vlan", "dl_vlan_pcp", "vlan_tci", "nw_src", "nw_dst", "nw_proto", "nw_tos", "nw_ecn",
    "nw_ttl", "nw_frag", "tp_src", "tp_dst", "tcp_flags", "icmp_type", "icmp_code", "arp_op",
    "arp_spa", "arp_tpa", "arp_sha", "arp_tha", "ipv6_src", "ipv6_dst", "ipv6_label",
    "icmpv6_type", "icmpv6_code", "ip", "ipv6", "tcp", "udp", "icmp", "icmp6", "arp", "tcp6",
    "udp6", "ct_state", "ct_zone", "ct_mark", "ct_label", "tun_id", "tun_src", "tun_dst",
    "metadata", *[f"reg{i}" for i in range(16)], "idle_timeout", "hard_timeout",
    "normal", "flood", "all", "mod_vlan_vid", "mod_vlan_pcp", "strip_vlan", "pop_vlan",
    "push_vlan", "mod_dl_src", "mod_dl_dst", "mod_nw_src", "mod_nw_dst", "mod_nw_tos",
    "mod_nw_ttl", "mod_tp_src", "mod_tp_dst", "dec_ttl", "set_field", "load", "move",
    "set_tunnel", "resubmit", "goto_table", "write_metadata", "clear_actions", "ct", "ct_clear",
}


def _port_number(text):
    v, _ = values.integer(text, 16)
    if not 1 <= v < 0xFF00:
        raise ValueError(f"expected a port number 1..65279, got '{text}'")
    return v


# action -> argument parser (None: the action takes no argument)
ACTIONS = {
    "output": _port_number,
    "drop": None,
}


@dataclass
class Action:
    name: str
    arg: object
    column: int


@dataclass
class Rule:
    table: int
    priority: int
    cookie: int
    match: dict                      # field -> (value, mask)
    actions: list                    # [Action]
    path: str
    line: int
    text: str = field(repr=False, default="")

    @property
    def where(self):
        return f"{self.path}:{self.line}"


_TOKEN = re.compile(r"[^,\s]+")


def parse_file(path):
    """Read a .flows file into a list of Rules, in file order."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise FlowSyntaxError(path, 0, 0, str(path), f"cannot read flows file: {e.strerror}") from None
    return parse_text(text, path)


def parse_text(text, path="<flows>"):
    rules = []
    for n, raw in enumerate(text.splitlines(), 1):
        raw = raw.partition("#")[0]  # as ovs-ofctl: '#' starts a comment, also after a flow
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        rules.append(parse_line(raw, path, n))
    return rules


def parse_line(raw, path="<flows>", n=1):
    """One flow line into a Rule."""
    def error(column, token, message):
        return FlowSyntaxError(path, n, column + 1, token, message)

    m = re.search(r"(?:^|[,\s])actions\s*=", raw)
    if not m:
        stripped = raw.strip()
        raise error(raw.find(stripped[0]), stripped, "expected 'actions=' on every flow line")
    act_col = m.end()
    rule = Rule(table=0, priority=DEFAULT_PRIORITY, cookie=0, match={}, actions=[],
                path=str(path), line=n, text=raw.strip())
    for tok in _TOKEN.finditer(raw[: m.start() + (1 if raw[m.start()] in ", \t" else 0)]):
        _match_token(rule, tok.group(), tok.start(), error)
    rule.actions = _actions(raw, act_col, error)
    return rule


def _match_token(rule, token, column, error):
    name, eq, value = token.partition("=")
    try:
        if name in ("table", "priority", "cookie"):
            if not eq:
                raise ValueError(f"expected {name}=<number>")
            bits = {"table": 8, "priority": 16, "cookie": 64}[name]
            v, mask = values.integer(value, bits)
            if mask != (1 << bits) - 1:
                raise ValueError(f"{name} takes no mask")
            if name == "table" and v > 254:
                raise ValueError("expected a table number 0..254")
            setattr(rule, name, v)
        elif name in MATCH_FIELDS:
            if not eq:
                raise ValueError(f"expected {name}=<value>")
            if name in rule.match:
                raise ValueError(f"field {name} given twice")
            rule.match[name] = MATCH_FIELDS[name](value)
        elif name in NOT_YET:
            raise ValueError(f"match field '{name}' is not supported by softdpu yet")
        else:
            raise ValueError(f"unknown match field '{name}'; expected one of: "
                             + ", ".join(["table", "priority", "cookie", *MATCH_FIELDS]))
    except ValueError as e:
        raise error(column, token, str(e)) from None


def _split_actions(raw, start):
    """Split the action list at top-level commas or white space (as ovs-ofctl); yields (text, column)."""
    depth, begin = 0, start
    for i in range(start, len(raw) + 1):
        c = raw[i] if i < len(raw) else ","
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth <= 0 and (c == "," or (c in " \t" and raw[begin:i].strip()
                                           and raw[i:].lstrip()[:1] not in ("", ","))):
            text = raw[begin:i]
            lead = len(text) - len(text.lstrip())
            yield text.strip(), begin + lead
            begin = i + 1


def _actions(raw, start, error):
    actions = []
    if not raw[start:].strip():
        return actions  # ovs-ofctl: an empty action list drops
    for text, column in _split_actions(raw, start):
        if not text:
            raise error(column, raw[start:].strip() or "actions=", "expected an action")
        name, sep, arg = re.match(r"([A-Za-z_][A-Za-z0-9_]*)?([:(]?)(.*)", text).groups()
        if name is None and text.isdigit():
            name, sep, arg = "output", ":", text  # ovs-ofctl: a bare number is output:N
        try:
            if name in ACTIONS:
                parse = ACTIONS[name]
                if parse is None:
                    if sep or arg:
                        raise ValueError(f"action '{name}' takes no argument")
                    actions.append(Action(name, None, column + 1))
                else:
                    if sep != ":" or not arg:
                        raise ValueError(f"expected {name}:<argument>")
                    actions.append(Action(name, parse(arg), column + 1))
            elif name in NOT_YET:
                raise ValueError(f"action '{name}' is not supported by softdpu yet")
            else:
                raise ValueError("unknown action; expected one of: " + ", ".join(ACTIONS))
        except ValueError as e:
            raise error(column, text, str(e)) from None
    if any(a.name == "drop" for a in actions) and len(actions) > 1:
        raise error(start, raw[start:].strip(), "'drop' must be the only action")
    return actions
