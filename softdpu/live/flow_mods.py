"""Flow changes of a running Dpu, in ovs-ofctl's terms (add-flow(s), del-flows, mod-flows).

Each builds the new rule list, compiles it off to the side and installs it in one
step (FlowTables._install) between two batches: a packet sees the old table or the
new one, never half of each.  Rules that persist keep their counters (n_packets,
n_bytes, their added/used times), as in Open vSwitch; mod-flows keeps them too.

A spec for del-flows / mod-flows is `[table=N,] [priority=N,] [cookie=V[/M],] match`:
without --strict a rule is taken when it is in that table (any table if none given),
its cookie matches and its match is at least as specific as the spec's (every field
of the spec, with the rule's mask covering the spec's and equal under the spec's mask),
as ovs-ofctl; with --strict, priority and match must be the same.
"""
import dataclasses
import re

from softdpu.errors import FlowSyntaxError
from softdpu.stages.flows.compile import compile_rules
from softdpu.stages.flows.syntax import DEFAULT_PRIORITY, parse_line, parse_match, parse_text

_HEAD = re.compile(r"^\s*(table|priority|cookie)\s*[=:]\s*([^,\s]+)\s*(?:,|\s|$)", re.I)


def parse_spec(text, where="<ctl>"):
    """-> (table or None, priority or None, (cookie, mask) or None, match dict)."""
    table = priority = cookie = None
    rest = text.strip()
    while True:
        m = _HEAD.match(rest)
        if not m:
            break
        key, value = m.group(1).lower(), m.group(2)
        try:
            if key == "cookie":
                v, _, mask = value.partition("/")
                cookie = (int(v, 0), int(mask, 0) if mask else (1 << 64) - 1)
            else:
                n = int(value, 0)
                table, priority = (n, priority) if key == "table" else (table, n)
        except ValueError:
            raise FlowSyntaxError(where, 1, 1, value, f"expected a number for {key}") from None
        rest = rest[m.end():]
    match = parse_match(rest, where) if rest.strip() else {}
    return table, priority, cookie, match


def _covers(rule, table, cookie, match):
    if table is not None and rule.table != table:
        return False
    if cookie is not None and (rule.cookie & cookie[1]) != (cookie[0] & cookie[1]):
        return False
    for name, (v, m) in match.items():
        if name not in rule.match:
            return False
        rv, rm = rule.match[name]
        if rm & m != m or rv & m != v & m:
            return False
    return True


def _selected(rules, spec, strict):
    table, priority, cookie, match = parse_spec(spec)
    if strict:
        prio = DEFAULT_PRIORITY if priority is None else priority
        return [r.priority == prio and (table is None or r.table == table) and r.match == match
                and (cookie is None or (r.cookie & cookie[1]) == (cookie[0] & cookie[1])) for r in rules]
    return [_covers(r, table, cookie, match) for r in rules]


def _install(flows, rules, carry):
    """Run `rules`; carry {id(new rule): old rule} keeps an old rule's counters on a new one."""
    old = flows.program
    index = {id(r): k for k, r in enumerate(old.rules)}
    program = compile_rules(rules)
    flows._install(program, keep=old)
    for j, r in enumerate(program.rules):
        src = carry.get(id(r))
        if src is not None and id(src) in index:
            k = index[id(src)]
            program.n_packets[j] = old.n_packets[k]
            program.n_bytes[j] = old.n_bytes[k]
    flows._ensure_conntrack(program.rules)
    return len(program.rules)


def add_flows(flows, text):
    """add-flow / add-flows: rules replacing ones with the same table, priority and match."""
    new = parse_text(text, "<ctl>")
    flows.add_rules(new)
    return f"added {len(new)} flow(s); {len(flows.program.rules)} in all"


def del_flows(flows, spec="", strict=False):
    rules = flows.program.rules
    gone = _selected(rules, spec, strict)
    kept = [r for r, g in zip(rules, gone) if not g]
    _install(flows, kept, {})
    return f"deleted {sum(gone)} flow(s); {len(kept)} left"


def mod_flows(flows, line, strict=False):
    """mod-flows SPEC,actions=...: the matching rules get the new actions (counters kept)."""
    at = re.search(r"(?:^|[,\s])actions\s*=", line)
    if not at:
        raise FlowSyntaxError("<ctl>", 1, 1, line.strip(), "expected 'actions=' in a mod-flows line")
    spec = line[: at.start()]
    actions = parse_line("actions=" + line[at.end():], "<ctl>").actions
    rules = flows.program.rules
    hit = _selected(rules, spec, strict)
    out, carry = [], {}
    for r, h in zip(rules, hit):
        if h:
            n = dataclasses.replace(r, actions=actions, text=_retext(r.text, line[at.end():]))
            carry[id(n)] = r
            r = n
        out.append(r)
    _install(flows, out, carry)
    return f"modified {sum(hit)} flow(s)"


def _retext(text, actions):
    at = re.search(r"(?:^|[,\s])actions\s*=", text)
    return (text[: at.end()] if at else text + ",actions=") + actions.strip()


def rule_key(rule):
    """What identifies a rule across workers (they apply the same changes in the same order)."""
    return (rule.table, rule.priority, rule.text)


def dump(flows, totals=None, table=None, stats=True, duration_ns=0):
    """dump-flows lines; totals: [(rule_key, n_packets, n_bytes)] summed over the workers (matched by
    key: a worker whose rule expired on its own clock simply has none to add), else this worker's."""
    from softdpu import dump_flows

    p = flows.program
    saved = p.n_packets.copy(), p.n_bytes.copy()
    try:
        if totals is not None:
            by_key = {tuple(k): (n, b) for k, n, b in totals}
            for j, r in enumerate(p.rules):
                p.n_packets[j], p.n_bytes[j] = by_key.get(rule_key(r), (0, 0))
        return dump_flows.format_flows(p, duration_ns=duration_ns, stats=stats, table=table)
    finally:
        p.n_packets[:], p.n_bytes[:] = saved


OPS = {"add-flows": add_flows, "del-flows": del_flows, "mod-flows": mod_flows}
