"""Runtime flow changes (softdpu/live/flow_mods.py, what `softdpu ctl` applies between batches):
ovs-ofctl's add/del/mod semantics, counters kept for rules that stay, bad specs refused."""
import pytest

from softdpu.errors import FlowSyntaxError
from softdpu.live import flow_mods
from softdpu.stages.flows.stage import FlowTables
from softdpu.stages.flows.syntax import parse_text

RULES = """
table=0, priority=100, cookie=0x5, udp, tp_dst=53, actions=drop
table=0, priority=100, tcp, tp_dst=80, actions=output:2
table=0, priority=90, tcp, actions=output:2
table=0, priority=0, actions=normal
table=1, priority=100, udp, actions=drop
"""


def _flows():
    f = FlowTables(parse_text(RULES), ofports=[1, 2])
    f.program.n_packets[:] = range(1, len(f.program.rules) + 1)     # mark each rule's counter
    return f


def _rules(f):
    return {(r.table, r.priority, r.text): int(n) for r, n in zip(f.program.rules, f.program.n_packets)}


def test_del_flows_non_strict_takes_more_specific_rules():
    f = _flows()
    before = _rules(f)
    assert flow_mods.del_flows(f, "tcp") == "deleted 2 flow(s); 3 left"
    after = _rules(f)
    assert all("tcp" not in k[2] for k in after)
    assert all(after[k] == before[k] for k in after)        # the rules that stay keep their counters


def test_del_flows_table_cookie_strict_and_all():
    f = _flows()
    assert flow_mods.del_flows(f, "table=1") == "deleted 1 flow(s); 4 left"
    assert flow_mods.del_flows(f, "cookie=0x5/0xff") == "deleted 1 flow(s); 3 left"
    assert flow_mods.del_flows(f, "tcp", strict=True) == "deleted 0 flow(s); 3 left"     # priority 32768
    assert flow_mods.del_flows(f, "priority=90,tcp", strict=True) == "deleted 1 flow(s); 2 left"
    assert flow_mods.del_flows(f, "") == "deleted 2 flow(s); 0 left"


def test_mod_flows_changes_actions_keeps_counters():
    f = _flows()
    before = _rules(f)
    assert flow_mods.mod_flows(f, "tcp,tp_dst=80,actions=drop") == "modified 1 flow(s)"
    r = next(r for r in f.program.rules if "tp_dst=80" in r.text)
    assert [a.name for a in r.actions] == ["drop"] and r.text.endswith("actions=drop")
    k = next(k for k in before if "tp_dst=80" in k[2])
    assert int(f.program.n_packets[f.program.rules.index(r)]) == before[k]


def test_add_flows_replaces_same_match_and_counts():
    f = _flows()
    assert flow_mods.add_flows(f, "table=0, priority=100, tcp, tp_dst=80, actions=normal\n"
                                  "table=2, actions=drop") == "added 2 flow(s); 6 in all"
    r = next(r for r in f.program.rules if "tp_dst=80" in r.text)
    assert [a.name for a in r.actions] == ["normal"]


def test_dump_with_totals_by_rule_key():
    f = _flows()
    totals = [(flow_mods.rule_key(r), 1000 + k, 64000) for k, r in enumerate(f.program.rules)]
    lines = flow_mods.dump(f, totals=totals)
    assert len(lines) == 5 and all("n_packets=10" in l for l in lines)
    assert list(f.program.n_packets) == list(range(1, 6))          # the worker's own counters untouched


@pytest.mark.parametrize("spec", ["table=x", "tp_dst=80", "nosuchfield=1", "cookie=zz"])
def test_bad_specs_are_errors(spec):
    f = _flows()
    with pytest.raises(FlowSyntaxError):
        flow_mods.del_flows(f, spec)
    assert len(f.program.rules) == 5


def test_mod_flows_needs_actions():
    with pytest.raises(FlowSyntaxError, match="actions="):
        flow_mods.mod_flows(_flows(), "tcp")
