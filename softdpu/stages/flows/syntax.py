"""Flow files in ovs-ofctl `add-flows` syntax, read into Rule records.

One flow per line; blank lines and lines starting with '#' are skipped:

    [table=N,] [priority=N,] [cookie=N,] [idle_timeout=N,] [hard_timeout=N,]
    match-field[=value[/mask]], ... actions=a,b,...

idle_timeout / hard_timeout are seconds 0..65535 (0: none), as ovs-ofctl;
Rule keeps them and flows/timeouts.py expires rules on the capture clock.

Match keywords are split as ovs-ofctl splits them (`key=value`, `key:value`
or `key(value)`, separated by commas or white space) and looked up in
fields.py (the field table, how each lands in the flow key, conflicts) and
prereqs.py (what each field needs, e.g. tp_dst needs tcp/udp/...); actions
in ACTIONS below.  Anything not in them is an error naming
file:line:column, the token and what was expected, never ignored.  Fields
and actions that Open vSwitch has but softdpu does not run yet are named as
such.  Rule.match maps softdpu.key field names to (value, mask).  The
compiler (flows/compile.py) turns Rules into arrays; this module only reads
text.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

from softdpu.errors import FlowSyntaxError
from softdpu.stages.flows import action_syntax, fields, values

DEFAULT_PRIORITY = 32768  # OFP_DEFAULT_PRIORITY


MATCH_FIELDS = fields.FIELDS           # match keyword -> fields.Spec; and fields.SHORTHANDS

# Open vSwitch words softdpu knows of but does not implement yet (the match
# keywords among them are in fields.NOT_YET, the actions in action_syntax.NOT_YET).
NOT_YET = {
    "importance", "send_flow_rem", "check_overlap",
    "reset_counts", "no_packet_counts", "no_byte_counts", *action_syntax.NOT_YET,
}

# Counters in `ovs-ofctl dump-flows` output; ovs-ofctl skips them so that its
# output can be read back as flows, and so does softdpu.
DUMP_FLOWS_WORDS = {"duration", "n_packets", "n_bytes", "idle_age", "hard_age"}


ACTIONS = action_syntax.PARSERS   # action -> argument parser (None: no argument)
Action = action_syntax.Action


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
    members: dict = field(repr=False, default_factory=dict)   # OVS flow members of the match
    idle_timeout: int = 0            # seconds without a match before the rule expires; 0 never
    hard_timeout: int = 0            # seconds after it was added before it expires; 0 never

    @property
    def where(self):
        return f"{self.path}:{self.line}"


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
    rule.match = _match(rule, raw, m.start(), error, members=rule.members)
    rule.actions = _actions(raw, act_col, error, rule.members)
    for a in rule.actions:
        if a.name == "goto_table" and a.arg <= rule.table:
            raise error(a.column - 1, a.text, f"goto_table:{a.arg} from table {rule.table}: "
                        "OpenFlow only goes to a later table")
    return rule


def parse_match(text, path="<match>", n=1, check_prerequisites=True):
    """A match alone (no actions), e.g. `tcp,tp_dst=80`, -> {key field: (value, mask)}.

    check_prerequisites=False keeps fields whose prerequisites are missing
    (what the line says, before the check; for tests and explanations)."""
    def error(column, token, message):
        return FlowSyntaxError(path, n, column + 1, token, message)
    rule = Rule(table=0, priority=DEFAULT_PRIORITY, cookie=0, match={}, actions=[],
                path=str(path), line=n, text=text.strip())
    return _match(rule, text, len(text), error, check_prerequisites)


def _match(rule, raw, end, error, check_prerequisites=True, members=None):
    match = fields.Match()
    for name, value, token, column in _match_tokens(raw, end):
        _match_token(rule, match, name, value, token, column, error)
    if members is not None:
        members.update(match.members())
    try:
        return match.finish(check_prerequisites)
    except fields.MatchError as e:
        raise error(e.column, e.token, str(e)) from None


def _match_tokens(raw, end):
    """The `key=value` words before the actions, split as ovs-ofctl does
    (ofputil_parse_key_value): a key ends at '=', ':', '(', a comma or white
    space; after '=' or ':' the value runs to a comma or white space, after
    '(' to ')'.  Yields (key, value or None when there is none, token, column)."""
    i = 0
    while True:
        while i < end and raw[i] in ", \t\r\n":
            i += 1
        if i >= end:
            return
        start = i
        while i < end and raw[i] not in ":=(, \t\r\n":
            i += 1
        key, value = raw[start:i], None
        if i < end and raw[i] in ":=(":
            stop = ")" if raw[i] == "(" else ", \t\r\n"
            j = i + 1
            while j < end and raw[j] not in stop:
                j += 1
            value = raw[i + 1:j]
            if raw[i] == "(" and j < end:
                j += 1
            i = j
        yield key, value, raw[start:i], start


def _match_token(rule, match, name, value, token, column, error):
    try:
        if name in ("table", "priority", "cookie"):
            if value is None:
                raise ValueError(f"expected {name}=<number>")
            bits = {"table": 8, "priority": 16, "cookie": 64}[name]
            v, mask = values.integer(value, bits)
            if mask != (1 << bits) - 1:
                raise ValueError(f"{name} takes no mask")
            if name == "table" and v > 254:
                raise ValueError("expected a table number 0..254")
            setattr(rule, name, v)
        elif name in ("idle_timeout", "hard_timeout"):
            if value is None:
                raise ValueError(f"expected {name}=<seconds 0..65535>")
            if value[:1] == "-":
                raise ValueError(f"expected {name}=<seconds 0..65535>, got '{value}'")
            try:
                v = values.number(value, 64)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            if v > 65535:
                raise ValueError(f"expected {name}=<seconds 0..65535>, got '{value}'")
            setattr(rule, name, v)
        elif fields.known(name):
            match.add(name, value, token, column)
        elif name in DUMP_FLOWS_WORDS and value is not None:
            pass
        elif name in fields.NOT_YET or name in NOT_YET:
            raise ValueError(f"match field '{name}' is not supported by softdpu yet")
        elif "[" in name:
            raise ValueError(f"matching a part of a field ('{name}') is not supported by softdpu yet")
        else:
            raise ValueError(f"unknown match field '{name}'{fields.suggest(name)}; expected one of: "
                             + ", ".join(["table", "priority", "cookie", *fields.SHORTHANDS,
                                          *fields.NAMES]))
    except fields.MatchError as e:
        raise error(e.column, e.token, str(e)) from None
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


def _actions(raw, start, error, members=None):
    actions = []
    if not raw[start:].strip():
        return actions  # ovs-ofctl: an empty action list drops
    for text, column in _split_actions(raw, start):
        if not text:
            raise error(column, raw[start:].strip() or "actions=", "expected an action")
        try:
            name, arg = action_syntax.parse_action(text)
            action = Action(name, arg, column + 1)
            problem = action_syntax.check_prereq(action, members or {})
            if problem:
                raise ValueError(problem)
        except ValueError as e:
            raise error(column, text, str(e)) from None
        action.text = text
        actions.append(action)
    if any(a.name == "drop" for a in actions) and len(actions) > 1:
        raise error(start, raw[start:].strip(), "'drop' must be the only action")
    bad = action_syntax.check_order(actions) or action_syntax.check_consistency(actions, members or {})
    if bad:
        raise error(bad[0].column - 1, bad[0].text, bad[1])
    return actions
