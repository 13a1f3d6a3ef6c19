"""idle_timeout= / hard_timeout= on the capture clock (softdpu/stages/flows/timeouts.py).

Packets are built with scapy at chosen timestamps and run through FlowTables (or a
whole Dpu from pcaps) in batches of several sizes; each packet's output port names
the rule it matched.  Deadlines are checked exactly (at the deadline: no match; 1 ns
before: match), and random cases against a plain-Python model of expiry.
"""
import io
import random

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from ovs_oracle import write_pcap
from scapy.utils import rdpcap

from softdpu import cli, dump_flows
from softdpu.batch import M_ORIGIN, Batch
from softdpu.errors import FlowSyntaxError
from softdpu.pipeline import Dpu
from softdpu.stages.flows.stage import FlowTables
from softdpu.stages.flows.syntax import parse_line, parse_text
from softdpu.stages.parse import Parse

S = 10**9
T0 = 1_764_000_000 * S
PORTS = list(range(1, 17))
SIZES = (1, 3, 256)


def frame(dport=9, vlan=None):
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=dport) / bytes(18))


def run(tables, packets, size):
    """packets: [(ts, frame)] (in_port 1) through `tables` in batches of `size`;
    -> [sorted output ports of each packet, [] when dropped]."""
    batch = Batch(size, fanout=tables.max_outputs)
    parse = Parse()
    out = []
    for at in range(0, len(packets), size):
        batch.clear()
        for ts, f in packets[at: at + size]:
            batch.append(f, ts=ts, in_port=1)
        parse.run(batch)
        tables.run(batch)
        ports = [[] for _ in range(batch.n)]
        for row, port in batch.tx[: batch.n_tx, :2]:
            ports[batch.meta[row, M_ORIGIN] if row >= batch.size else row].append(int(port))
        out += [sorted(p) for p in ports]
    return out


def go(flows, packets, size):
    tables = FlowTables(parse_text(flows), ofports=PORTS)
    return run(tables, packets, size), tables


def at(*seconds):
    """Packets (dport 9) at T0 + each time (seconds, or (seconds, extra ns))."""
    return [(T0 + (int(t[0] * S) + t[1] if isinstance(t, tuple) else int(t * S)), frame()) for t in seconds]


# -- syntax ---------------------------------------------------------------------------

def test_timeouts_are_read():
    r = parse_line("idle_timeout=10, hard_timeout=0x20,in_port=1 actions=drop")
    assert (r.idle_timeout, r.hard_timeout, r.match) == (10, 32, {"in_port": (1, 0xFFFF)})
    r = parse_line("in_port=1,actions=drop")
    assert (r.idle_timeout, r.hard_timeout) == (0, 0)
    assert parse_line("hard_timeout=65535,idle_timeout=0,actions=drop").hard_timeout == 65535


@pytest.mark.parametrize("line, column, token, message", [
    ("idle_timeout=-1,actions=drop", 1, "idle_timeout=-1", "expected idle_timeout=<seconds 0..65535>, got '-1'"),
    ("in_port=1,hard_timeout=65536,actions=drop", 11, "hard_timeout=65536",
     "expected hard_timeout=<seconds 0..65535>, got '65536'"),
    ("in_port=1 idle_timeout=abc actions=drop", 11, "idle_timeout=abc", "idle_timeout: expected an integer"),
    ("hard_timeout=1.5,actions=drop", 1, "hard_timeout=1.5", "hard_timeout: expected an integer"),
    ("idle_timeout,actions=drop", 1, "idle_timeout", "expected idle_timeout=<seconds 0..65535>"),
    ("idle_timeout=010,actions=drop", 1, "idle_timeout=010", "leading 0 as octal"),
])
def test_bad_timeouts_name_file_line_column(line, column, token, message):
    with pytest.raises(FlowSyntaxError) as info:
        parse_text("# a comment\n" + line + "\n", "t.flows")
    e = info.value
    assert (e.path, e.line, e.column, e.token) == ("t.flows", 2, column, token)
    assert message in str(e) and str(e).startswith(f"t.flows:2:{column}: ")


# -- exact deadlines ------------------------------------------------------------------

FALLBACK = "priority=0,actions=output:3\n"


@pytest.mark.parametrize("size", SIZES)
def test_hard_timeout_is_exact(size):
    out, tables = go("hard_timeout=2,in_port=1,actions=output:2\n" + FALLBACK,
                     at(0, 1, (2, -1), 2, 3), size)
    assert out == [[2], [2], [2], [3], [3]]
    assert tables.expired == 1 and len(tables.program.rules) == 1


@pytest.mark.parametrize("size", SIZES)
def test_idle_timeout_is_exact_and_refreshed_by_use(size):
    # used at 0, 0.9, 1.8, then 2.8 - 1 ns (1 ns before the deadline 2.8): still there;
    # the next packet comes exactly idle_timeout after that last use: gone
    out, tables = go("idle_timeout=1,in_port=1,actions=output:2\n" + FALLBACK,
                     at(0, 0.9, 1.8, (2.8, -1), (3.8, -1), 5), size)
    assert out == [[2], [2], [2], [2], [3], [3]]
    assert tables.expired == 1


@pytest.mark.parametrize("size", SIZES)
def test_idle_timeout_counts_from_the_add_when_never_used(size):
    tables = FlowTables(parse_text("idle_timeout=1,tcp,actions=output:2\nidle_timeout=2,in_port=1,actions=output:4\n"
                                   + FALLBACK), ofports=PORTS)
    # the clock starts at the first packet (10 s): the tcp rule, never matched, goes at 11 s
    assert run(tables, at(10, (11, -1)), size) == [[4], [4]]
    assert tables.expired == 0
    assert run(tables, at(11, (13, -1), (15, -1)), size) == [[4], [4], [3]]
    assert tables.expired == 2


@pytest.mark.parametrize("size", SIZES)
def test_hard_timeout_ignores_use(size):
    times = [k * 0.1 for k in range(15)]
    out, _ = go("hard_timeout=1,actions=output:2\n" + FALLBACK, at(*times), size)
    assert out == [[2]] * 10 + [[3]] * 5


@pytest.mark.parametrize("size", SIZES)
def test_both_timeouts_the_earliest_wins(size):
    busy = [k * 0.5 for k in range(9)]              # never idle for 1 s: hard_timeout=3 ends it
    out, _ = go("idle_timeout=1,hard_timeout=3,actions=output:2\n" + FALLBACK, at(*busy), size)
    assert out == [[2]] * 6 + [[3]] * 3
    out, _ = go("idle_timeout=1,hard_timeout=10,actions=output:2\n" + FALLBACK,
                at(0, 0.5, (1.5, -1), (2.5, -1), 2.5, 3), size)
    assert out == [[2], [2], [2], [3], [3], [3]]


@pytest.mark.parametrize("size", SIZES)
def test_a_resubmitted_lookup_is_a_use(size):
    flows = ("actions=resubmit(,1)\n"
             "table=1,idle_timeout=1,actions=output:2\ntable=1,priority=0,actions=output:3\n")
    out, _ = go(flows, at(0, 0.9, 1.8, (2.8, -1), (3.8, -1)), size)
    assert out == [[2], [2], [2], [2], [3]]


def test_the_clock_starts_at_the_first_packet():
    tables = FlowTables(parse_text("hard_timeout=1,actions=output:2\n" + FALLBACK), ofports=PORTS)
    assert tables.now() is None and tables.deadlines() is None
    run(tables, [], 4)                                  # an empty batch does not start it
    assert tables.now() is None
    assert run(tables, at(100, (101, -1), 101), 8) == [[2], [2], [3]]
    assert tables.clock_start == T0 + 100 * S


def test_without_timeouts_run_is_the_plain_kernel_call():
    tables = FlowTables(parse_text("in_port=1,actions=output:2\n"), ofports=PORTS)
    assert not tables.timed
    assert run(tables, at(0, 5, 9), 2) == [[2]] * 3
    assert tables.now() == T0 + 9 * S and tables.expired == 0
    assert tables.used_ns[0] == T0 + 9 * S


# -- batch sizes, counters, rules added later --------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_counters_of_the_other_rules_are_kept_across_expiry(size):
    flows = ("priority=20,hard_timeout=1,ip,actions=output:2\npriority=10,idle_timeout=3,ip,actions=output:4\n"
             "in_port=1,priority=5,actions=output:5\n" + FALLBACK)
    tables = FlowTables(parse_text(flows), ofports=PORTS)
    out = run(tables, at(*[k * 0.25 for k in range(12)]), size)   # 0 .. 2.75 s
    assert out == [[2]] * 4 + [[4]] * 8
    by_port = {r.actions[0].arg: (int(n), int(b))
               for r, n, b in zip(tables.program.rules, tables.program.n_packets, tables.program.n_bytes)}
    flen = len(frame())
    assert by_port == {4: (8, 8 * flen), 5: (0, 0), 3: (0, 0)}
    assert tables.expired == 1
    out = run(tables, at(5.75, 10), size)    # the ip rule: used at 2.75, gone at 5.75
    assert out == [[5], [5]] and tables.expired == 2


@pytest.mark.parametrize("size", (1, 3))
def test_rules_added_later_count_from_the_clock_then(size):
    tables = FlowTables(parse_text(FALLBACK), ofports=PORTS)
    assert run(tables, at(0, 4), size) == [[3], [3]]
    assert not tables.timed
    tables.add_rules(parse_text("hard_timeout=2,in_port=1,actions=output:2\n"))
    assert tables.timed and tables.now() == T0 + 4 * S
    assert run(tables, at(5, (6, -1), 6), size) == [[2], [2], [3]]
    # again while timed: added at 6 s, with the counters of the fallback kept
    n_before = int(tables.program.n_packets[0])
    tables.add_rules(parse_text("idle_timeout=1,in_port=1,actions=output:4\n"))
    assert run(tables, at((7, -1), (8, -1), 9), size) == [[4], [3], [3]]
    assert int(tables.program.n_packets[0]) == n_before + 2


@pytest.mark.parametrize("size", (1, 3))
def test_replacing_a_rule_restarts_its_times(size):
    tables = FlowTables(parse_text("hard_timeout=2,in_port=1,actions=output:2\n" + FALLBACK), ofports=PORTS)
    assert run(tables, at(0, 1.5), size) == [[2], [2]]
    tables.add_rules(parse_text("hard_timeout=2,in_port=1,actions=output:4\n"))   # same match: replaces
    assert run(tables, at(2.5, (3.5, -1), 3.5), size) == [[4], [4], [3]]


def test_time_going_back_never_resurrects_or_shortens():
    flows = "idle_timeout=1,actions=output:2\n" + FALLBACK
    pk = at(0, 0.8, 0.1, (1.8, -1), (0.5, 0), 2.9, 0.2)
    # 0.1 after 0.8: the last use stays 0.8 (deadline 1.8); 1.8-1ns uses it (deadline 2.8);
    # 0.5 (back in time) matches; at 2.9 the clock passes 2.8: gone, also for the later 0.2
    for size in SIZES:
        out, _ = go(flows, pk, size)
        assert out == [[2], [2], [2], [2], [2], [3], [3]], size


# -- against a plain-Python model ----------------------------------------------------------

def model(rules, packets):
    """rules: [(priority, dport or None, idle s, hard s, port)]; packets [(ts, dport)] ->
    (port per packet, expired count, n_packets of the remaining rules by port)."""
    live = [dict(prio=p, dport=d, idle=i * S, hard=h * S, port=o, used=None, added=None, n=0)
            for p, d, i, h, o in rules]
    clock = None
    out, expired = [], 0
    for ts, dport in packets:
        if clock is None:
            clock = ts
            for r in live:
                r["added"] = r["used"] = ts
        clock = max(clock, ts)
        keep = []
        for r in live:
            dl = min(r["used"] + r["idle"] if r["idle"] else float("inf"),
                     r["added"] + r["hard"] if r["hard"] else float("inf"))
            if dl <= clock:
                expired += 1
            else:
                keep.append(r)
        live = keep
        hits = [r for r in live if r["dport"] in (None, dport)]
        if not hits:
            out.append([])
            continue
        best = max(hits, key=lambda r: r["prio"])
        best["n"] += 1
        best["used"] = max(best["used"], ts)
        out.append([best["port"]])
    return out, expired, {r["port"]: r["n"] for r in live}


@pytest.mark.parametrize("seed", range(12))
def test_random_cases_agree_with_the_model(seed):
    rng = random.Random(seed)
    rules = []
    for k in range(rng.randint(2, 9)):
        dport = rng.choice([None, 1, 2, 3])
        rules.append((k + 1, dport, rng.choice([0, 0, 1, 2, 3]), rng.choice([0, 0, 2, 5]), k + 2))
    text = "".join(f"priority={p},{'udp,tp_dst=%d,' % d if d is not None else ''}"
                   f"idle_timeout={i},hard_timeout={h},actions=output:{o}\n" for p, d, i, h, o in rules)
    t, packets = T0, []
    for _ in range(rng.randint(20, 120)):
        step = rng.choice([0, 1, S // 10, S // 2, S, 2 * S - 1, 2 * S])
        if rng.random() < 0.08:
            step = -rng.randint(1, 2 * S)                 # time goes back now and then
        t += step
        packets.append((t, rng.choice([1, 2, 3, 4])))
    want, expired, counts = model(rules, packets)
    frames = [(ts, frame(d)) for ts, d in packets]
    for size in (1, 3, 7, 256):
        got, tables = go(text, frames, size)
        assert got == want, (size, text)
        assert tables.expired == expired
        assert {r.actions[0].arg: int(n) for r, n in zip(tables.program.rules, tables.program.n_packets)} == counts


def test_rows_of_a_later_piece_keep_their_numbers():
    """A piece runs on views from its first row: tx entries, clones' M_ORIGIN and trace records
    written for it name the batch's own rows."""
    from softdpu.batch import M_TRACED
    from softdpu.stages.flows.trace_records import T_OUTPUT
    tables = FlowTables(parse_text("hard_timeout=1,actions=output:2\npriority=0,actions=mod_vlan_vid:9,output:3\n"),
                        ofports=PORTS)
    batch = Batch(8, fanout=tables.max_outputs)
    for ts, f in at(0, 0.5, 1, 1.5):
        batch.append(f, ts=ts, in_port=1)
    Parse().run(batch)
    batch.meta[3, M_TRACED] = 1
    tables.run(batch)
    tx = batch.tx[: batch.n_tx, :2].tolist()
    assert tx[:2] == [[0, 2], [1, 2]]
    clones = [row for row, _ in tx[2:]]
    assert [p for _, p in tx[2:]] == [3, 3] and all(row >= batch.size for row in clones)
    assert [int(batch.meta[row, M_ORIGIN]) for row in clones] == [2, 3]
    records, lost = tables.take_trace()
    assert lost == 0 and len(records) and set(records[:, 0]) == {3}
    assert [int(r[4]) for r in records if r[1] == T_OUTPUT] == [clones[1]]


# -- the Dpu from pcaps: rewrites (clone rows) split across pieces ----------------------------

def pipeline(tmp_path, flows, batch):
    d = tmp_path / f"b{batch}"
    d.mkdir()
    (d / "p.flows").write_text(flows)
    text = f'[pipeline]\nflows = "p.flows"\nbatch = {batch}\n'
    for name, ofport in (("a", 1), ("b", 2), ("c", 3)):
        text += f'[[port]]\nname = "{name}"\nofport = {ofport}\ntype = "pcap"\n'
    (d / "p.toml").write_text(text)
    return d / "p.toml"


FLOWS_REWRITE = ("idle_timeout=1,in_port=1,udp,tp_dst=1,actions=mod_vlan_vid:5,output:2,mod_vlan_vid:6,output:3\n"
                 "hard_timeout=2,in_port=1,actions=mod_vlan_vid:7,output:2\n"
                 "priority=0,actions=output:3\n")


def test_dpu_outputs_are_the_same_for_every_batch_size(tmp_path):
    rng = random.Random(7)
    packets, t = [], T0
    for k in range(60):
        t += rng.choice([S // 10, S // 3, S - 1, S])
        packets.append((t, frame(rng.choice([1, 1, 2]))))
    write_pcap(tmp_path / "in.pcap", packets, nanosecond=True)
    results = {}
    for size in SIZES:
        dpu = Dpu.load(pipeline(tmp_path, FLOWS_REWRITE, size))
        stats = dpu.run_pcaps({"a": tmp_path / "in.pcap"}, out_dir=tmp_path / f"out{size}")
        outs = {p: [bytes(x) for x in rdpcap(str(path))] for p, path in dpu.outputs.items()}
        results[size] = (outs, dpu.flows.expired, stats.left, stats.drop_counts(), stats.table()[-1])
        assert stats.left == len(packets)
    assert results[1] == results[3] == results[256]
    outs, expired = results[1][0], results[1][1]
    assert expired == 2                                          # both timed rules went
    vlans = [Ether(f)[Dot1Q].vlan for f in outs["b"] if Dot1Q in Ether(f)]
    assert 5 in vlans and 7 in vlans                             # modified copies from both rules
    assert "flows expired 2" in results[256][4]


# -- dump-flows -------------------------------------------------------------------------

def test_dump_flows_prints_timeouts_as_ovs():
    r = parse_line("idle_timeout=100,hard_timeout=200,priority=5,in_port=1,actions=output:2")
    assert dump_flows.format_rule(r, 3, 180, 1.5) == (
        " cookie=0x0, duration=1.500s, table=0, n_packets=3, n_bytes=180, idle_timeout=100, hard_timeout=200, "
        "priority=5,in_port=1 actions=output:2")
    assert dump_flows.format_rule(r, stats=False) == " idle_timeout=100, hard_timeout=200, priority=5,in_port=1 actions=output:2"
    r = parse_line("hard_timeout=30,actions=drop")
    assert dump_flows.format_rule(r, stats=False) == " hard_timeout=30, actions=drop"       # as OVS 3.1
    assert "timeout" not in dump_flows.format_rule(parse_line("idle_timeout=0,in_port=2,actions=drop"))


def test_cli_dump_flows_leaves_out_expired_rules(tmp_path):
    toml = pipeline(tmp_path, "hard_timeout=1,in_port=1,actions=output:2\nidle_timeout=9,actions=output:3\n", 4)
    write_pcap(tmp_path / "in.pcap", at(0, 0.5, 1, 1.5), nanosecond=True)
    out = io.StringIO()
    assert cli.main(["dump-flows", str(toml), "--in", f"a={tmp_path / 'in.pcap'}"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines == [" cookie=0x0, duration=1.500s, table=0, n_packets=2, n_bytes=120, idle_timeout=9, "
                     "actions=output:3"], lines


def test_no_stats_dump_agrees_with_ovs(tmp_path):
    """OVS prints the timeouts in the same place, with and without a match."""
    from ovs_oracle import OvsDummy, require_ovs
    require_ovs()
    flows = ("idle_timeout=1000,hard_timeout=2000,priority=5,in_port=1,actions=output:2\n"
             "hard_timeout=3000,actions=drop\nidle_timeout=0,in_port=2,actions=drop\n"
             "table=1,idle_timeout=65535,cookie=0x7,ip,actions=output:3\n")
    toml = pipeline(tmp_path, flows, 4)
    write_pcap(tmp_path / "in.pcap", at(0), nanosecond=True)
    out = io.StringIO()
    assert cli.main(["dump-flows", str(toml), "--no-stats", "--in", f"a={tmp_path / 'in.pcap'}"], out=out) == 0
    with OvsDummy(tmp_path / "ovs", ports={"a": 1, "b": 2, "c": 3}) as ovs:
        ovs.add_flows(flows)
        theirs = ovs.dump_flows(stats=False)
    head = lambda text: sorted(line.partition(" actions=")[0] for line in text.splitlines()  # noqa: E731
                               if "actions=" in line)
    assert head(out.getvalue()) == head(theirs)
    assert " hard_timeout=3000, actions=drop" in out.getvalue().splitlines()
