"""Flow files (ovs-ofctl add-flows syntax): what parses, the exact error for
each bad form (file:line:column and the offending token), and rules picking
outputs end to end in a Dpu."""
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from softdpu import drops
from softdpu.batch import M_DROP
from softdpu.errors import FlowSyntaxError, SoftdpuError
from softdpu.pipeline import Dpu
from softdpu.stages.flows.syntax import DEFAULT_PRIORITY, parse_file, parse_line, parse_text

FULL16 = 0xFFFF
FULL48 = (1 << 48) - 1


def one(line):
    rules = parse_text(line + "\n", "t.flows")
    assert len(rules) == 1
    return rules[0]


def outputs(rule):
    return [(a.name, a.arg) for a in rule.actions]


# -- valid lines ---------------------------------------------------------------

def test_comments_and_blank_lines_are_skipped_and_lines_keep_their_numbers(tmp_path):
    f = tmp_path / "x.flows"
    f.write_text("# a comment\n\n   \n  # indented comment\n"
                 "in_port=1,actions=output:2\n"
                 "\t\n"
                 "in_port=2,actions=output:1   # a comment after the flow, as ovs-ofctl\n")
    rules = parse_file(f)
    assert [(r.line, r.path, outputs(r)) for r in rules] == [
        (5, str(f), [("output", 2)]), (7, str(f), [("output", 1)])]
    assert rules[0].where == f"{f}:5"
    assert rules[1].text == "in_port=2,actions=output:1"


def test_empty_file_has_no_rules():
    assert parse_text("") == []
    assert parse_text("# nothing\n\n") == []


def test_defaults():
    r = one("actions=drop")
    assert (r.table, r.priority, r.cookie, r.match) == (0, DEFAULT_PRIORITY, 0, {})
    assert DEFAULT_PRIORITY == 32768


def test_table_priority_cookie_decimal_and_hex():
    r = one("table=3, priority=100, cookie=0x1f, actions=drop")
    assert (r.table, r.priority, r.cookie) == (3, 100, 0x1F)
    r = one("table=0xfe,priority=0xffff,cookie=0xffffffffffffffff,actions=drop")
    assert (r.table, r.priority, r.cookie) == (254, 65535, (1 << 64) - 1)
    r = one("priority=0,cookie=12,actions=drop")
    assert (r.priority, r.cookie) == (0, 12)


def test_in_port_and_dl_type():
    r = one("in_port=7,dl_type=0x0800,actions=output:2")
    assert r.match == {"in_port": (7, FULL16), "dl_type": (0x0800, FULL16)}
    assert one("dl_type=2054,actions=drop").match == {"dl_type": (0x0806, FULL16)}
    assert one("dl_type=0X86dd,actions=drop").match == {"dl_type": (0x86DD, FULL16)}


def test_macs_with_and_without_masks():
    r = one("dl_src=AA:bb:cc:dd:ee:ff,dl_dst=1:2:3:4:5:6,actions=drop")
    assert r.match == {"dl_src": (0xAABBCCDDEEFF, FULL48), "dl_dst": (0x010203040506, FULL48)}
    r = one("dl_src=aa:bb:cc:dd:ee:ff/ff:ff:ff:00:00:00,"
            "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop")
    # the value is stored masked, as ovs-ofctl shows it
    assert r.match == {"dl_src": (0xAABBCC000000, 0xFFFFFF000000),
                       "dl_dst": (0x010000000000, 0x010000000000)}


@pytest.mark.parametrize("line", [
    "priority=5,in_port=1,dl_type=0x800,actions=output:2,output:3",
    "priority=5 in_port=1 dl_type=0x800 actions=output:2 output:3",
    "  priority=5, in_port=1 ,dl_type=0x800\tactions=output:2, output:3  ",
    "priority=5,in_port=1,dl_type=0x800,,actions = output:2 ,output:3",
])
def test_spaces_or_commas_separate(line):
    r = one(line)
    assert r.priority == 5
    assert r.match == {"in_port": (1, FULL16), "dl_type": (0x800, FULL16)}
    assert outputs(r) == [("output", 2), ("output", 3)]


def test_bare_number_is_output():
    assert outputs(one("actions=2")) == [("output", 2)]
    assert outputs(one("actions=2,output:3,4")) == [("output", 2), ("output", 3), ("output", 4)]


def test_drop_and_empty_actions():
    assert outputs(one("in_port=1,actions=drop")) == [("drop", None)]
    assert one("in_port=1,actions=").actions == []       # ovs-ofctl: no actions means drop
    assert one("in_port=1,actions=   ").actions == []


def test_action_columns_are_one_based():
    r = one("in_port=1,actions=output:2,output:3")
    assert [a.column for a in r.actions] == [19, 28]


def test_parse_line_directly():
    r = parse_line("in_port=3 actions=output:4", "f.flows", 9)
    assert (r.path, r.line, r.match, outputs(r)) == ("f.flows", 9, {"in_port": (3, FULL16)}, [("output", 4)])


# -- errors ----------------------------------------------------------------------

BAD = [
    # line, column, token, message
    ("in_port=1", 1, "in_port=1", "expected 'actions=' on every flow line"),
    ("   in_port=1 output:2", 4, "in_port=1 output:2", "expected 'actions='"),
    ("in_port=1,foo=2,actions=drop", 11, "foo=2", "unknown match field 'foo'; expected one of: table, priority"),
    ("tp_dst=80,actions=drop", 1, "tp_dst=80", "prerequisites not met: tp_dst needs tcp, udp"),
    ("icmp6,nd_target=::1,actions=drop", 7, "nd_target=::1", "match field 'nd_target' is not supported by softdpu yet"),
    ("in_port=1,actions=ct(commit)", 19, "ct(commit)", "prerequisites not met: ct needs ip or ipv6 in the match"),
    ("ip,actions=ct(commit,nat)", 12, "ct(commit,nat)", "ct nat: not supported by softdpu yet"),
    ("ip,actions=ct(force)", 12, "ct(force)", "ct: 'force' needs 'commit'"),
    ("ip,actions=controller", 12, "controller", "action 'controller' is not supported by softdpu yet"),
    ("actions=output:2,learn(table=1)", 18, "learn(table=1)", "action 'learn' is not supported"),
    ("table=1,actions=goto_table:1", 17, "goto_table:1", "OpenFlow only goes to a later table"),
    ("actions=goto_table:2,output:1", 22, "output:1", "instructions come last"),
    ("actions=mod_nw_tos:3", 9, "mod_nw_tos:3", "low two (ECN) bits zero"),
    ("actions=set_field:10.0.0.1->nw_src", 9, "set_field:10.0.0.1->nw_src", "prerequisites not met"),
    ("ip,actions=load:1->NXM_OF_IP_PROTO[]", 12, "load:1->NXM_OF_IP_PROTO[]", "read-only"),
    ("actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..15]", 9,
     "move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..15]", "source has 8 bits, destination 16"),
    ("actions=load:0x1ffff->NXM_NX_REG0[0..15]", 9, "load:0x1ffff->NXM_NX_REG0[0..15]", "does not fit"),
    ("actions=push_vlan:0x8100,mod_nw_tos:0x20", 26, "mod_nw_tos:0x20", "works only in OpenFlow 1.0"),
    ("dl_vlan=10,actions=push_vlan:0x8100,push_vlan:0x8100", 37, "push_vlan:0x8100", "a third VLAN tag"),
    ("actions=mod_nw_ttl:3", 9, "mod_nw_ttl:3", "prerequisites not met"),
    ("actions=push_vlan:0x88a8", 9, "push_vlan:0x88a8", "802.1Q tags only"),
    ("in_port=x,actions=drop", 1, "in_port=x", "expected a port number (decimal) or a reserved port name"),
    ("in_port=1_0,actions=drop", 1, "in_port=1_0", "expected a port number (decimal) or a reserved port name"),
    ("in_port=0b1,actions=drop", 1, "in_port=0b1", "expected a port number (decimal) or a reserved port name"),
    ("in_port=-1,actions=drop", 1, "in_port=-1", "expected a port number (decimal) or a reserved port name"),
    ("in_port=,actions=drop", 1, "in_port=", "expected a port number (decimal) or a reserved port name"),
    ("in_port,actions=drop", 1, "in_port", "expected in_port=<value>"),
    ("in_port=65536,actions=drop", 1, "in_port=65536", "expected a port number 0..65535, got '65536'"),
    ("in_port=0x5,actions=drop", 1, "in_port=0x5", "expected a port number (decimal)"),  # as ovs-ofctl
    ("dl_type=0x10000,actions=drop", 1, "dl_type=0x10000", "fits in 16 bits, got '0x10000'"),
    ("cookie=0x10000000000000000,actions=drop", 1, "cookie=0x10000000000000000", "fits in 64 bits"),
    ("in_port=1/0xff,actions=drop", 1, "in_port=1/0xff", "takes no mask"),
    ("dl_type=0x800/0xff00,actions=drop", 1, "dl_type=0x800/0xff00", "takes no mask"),
    ("dl_src=aa:bb:cc:dd:ee,actions=drop", 1, "dl_src=aa:bb:cc:dd:ee",
     "expected an Ethernet address like 00:11:22:33:44:55, got 'aa:bb:cc:dd:ee'"),
    ("dl_dst=aa:bb:cc:dd:ee:gg,actions=drop", 1, "dl_dst=aa:bb:cc:dd:ee:gg", "got 'aa:bb:cc:dd:ee:gg'"),
    ("dl_dst=aa:bb:cc:dd:ee:1_,actions=drop", 1, "dl_dst=aa:bb:cc:dd:ee:1_", "expected an Ethernet address"),
    ("dl_dst=aa:bb:cc:dd:ee:ff/ff:ff,actions=drop", 1, "dl_dst=aa:bb:cc:dd:ee:ff/ff:ff", "got 'ff:ff'"),
    ("dl_dst=aa:bb:cc:dd:ee:ff/,actions=drop", 1, "dl_dst=aa:bb:cc:dd:ee:ff/", "got ''"),
    ("in_port=1,actions=output:0", 19, "output:0", "expected a port number 1..65279, got '0'"),
    ("in_port=1,actions=output:65280", 19, "output:65280", "expected a port number 1..65279, got '65280'"),
    ("actions=0", 9, "0", "expected a port number 1..65279, got '0'"),
    ("actions=65280", 9, "65280", "expected a port number 1..65279"),
    ("actions=output", 9, "output", "expected output:<argument>"),
    ("actions=output:x", 9, "output:x", "expected an integer"),
    ("actions=drop:1", 9, "drop:1", "action 'drop' takes no argument"),
    ("in_port=1,actions=output:2,frobnicate", 28, "frobnicate", "unknown action; expected one of: output, drop"),
    ("actions=NORMAL", 9, "NORMAL", "unknown action"),
    ("in_port=1,actions=output:2,drop", 19, "output:2,drop", "'drop' must be the only action"),
    ("in_port=1,actions=drop,output:2", 19, "drop,output:2", "'drop' must be the only action"),
    ("actions=output:2,,output:3", 18, "output:2,,output:3", "expected an action"),
    ("in_port=1,in_port=2,actions=drop", 11, "in_port=2", "field in_port given twice"),
    ("dl_src=0:0:0:0:0:1 dl_src=0:0:0:0:0:2 actions=drop", 20, "dl_src=0:0:0:0:0:2", "field dl_src given twice"),
    ("table=255,actions=drop", 1, "table=255", "expected a table number 0..254"),
    ("priority=65536,actions=drop", 1, "priority=65536", "fits in 16 bits, got '65536'"),
    ("in_port=1,priority=5/0xff,actions=drop", 11, "priority=5/0xff", "priority takes no mask"),
    ("table=1/1,actions=drop", 1, "table=1/1", "table takes no mask"),
    ("priority,actions=drop", 1, "priority", "expected priority=<number>"),
]


@pytest.mark.parametrize("line, column, token, message", BAD, ids=[b[0] for b in BAD])
def test_bad_line(tmp_path, line, column, token, message):
    f = tmp_path / "bad.flows"
    f.write_text("# first a good rule\nin_port=1,actions=output:2\n\n" + line + "\nin_port=2,actions=output:1\n")
    with pytest.raises(FlowSyntaxError) as info:
        parse_file(f)
    e = info.value
    assert (e.path, e.line, e.column, e.token) == (str(f), 4, column, token), str(e)
    assert str(e).startswith(f"{f}:4:{column}: "), str(e)
    assert str(e).endswith(f"(at '{token}')"), str(e)
    assert message in str(e)
    assert isinstance(e, SoftdpuError)


def test_error_column_counts_leading_white_space():
    with pytest.raises(FlowSyntaxError) as info:
        parse_text("\t  in_port=1,bogus=1,actions=drop\n", "t.flows")
    assert (info.value.line, info.value.column, info.value.token) == (1, 14, "bogus=1")


def test_unreadable_flows_file(tmp_path):
    with pytest.raises(FlowSyntaxError) as info:
        parse_file(tmp_path)     # a directory
    assert str(tmp_path) in str(info.value) and "cannot read flows file" in str(info.value)


# -- end to end: rules pick outputs in a Dpu ---------------------------------------

FLOWS = """\
# port 1: unicast to 2, multicast/broadcast to 3, a few special destinations
priority=10,in_port=1,actions=output:2
priority=20,in_port=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=output:3
priority=30,in_port=1,dl_dst=02:00:00:00:00:99,actions=drop
priority=30,in_port=1,dl_dst=02:00:00:00:00:98,actions=output:9
priority=30,in_port=1,dl_dst=02:00:00:00:00:97,actions=output:1
priority=30,in_port=1,dl_dst=02:00:00:00:00:96,actions=
priority=30,in_port=1,dl_dst=02:00:00:00:00:95,actions=output:1,output:3
# port 2: IPv4 to both others (default priority); anything else from 2 misses
in_port=2,dl_type=0x0800,actions=output:1,output:3
# never reached: lower priority than the rule above and the same match
priority=5,in_port=2,dl_type=0x0800,actions=drop
"""

PIPELINE = """\
[pipeline]
flows = "p.flows"
batch = 64

[[port]]
name = "p1"
ofport = 1
type = "pcap"

[[port]]
name = "p2"
ofport = 2
type = "pcap"

[[port]]
name = "p3"
ofport = 3
type = "pcap"
"""


def frame(dst, payload=10, src="02:00:00:00:00:01"):
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
                 / bytes(payload))


@pytest.fixture
def dpu(tmp_path):
    (tmp_path / "p.flows").write_text(FLOWS)
    (tmp_path / "p.toml").write_text(PIPELINE)
    return Dpu.load(tmp_path / "p.toml")


def test_rules_pick_outputs_and_count(dpu):
    packets = [  # (frame, in_port, expected tx ports, expected drop reason)
        (frame("02:00:00:00:00:02", 10), 1, [2], drops.NONE),                       # unicast
        (frame("ff:ff:ff:ff:ff:ff", 20), 1, [3], drops.NONE),                       # broadcast: masked match
        (frame("01:00:5e:00:00:01", 30), 1, [3], drops.NONE),                       # multicast
        (frame("03:00:00:00:00:02", 40), 1, [3], drops.NONE),                       # group bit set
        (frame("02:00:00:00:00:99", 50), 1, [], drops.ACTION_DROP),                 # explicit drop
        (frame("02:00:00:00:00:98", 60), 1, [], drops.OUTPUT_PORT_UNKNOWN),         # output:9
        (frame("02:00:00:00:00:97", 70), 1, [], drops.ACTION_DROP),                 # output to in_port
        (frame("02:00:00:00:00:96", 80), 1, [], drops.ACTION_DROP),                 # empty actions
        (frame("02:00:00:00:00:95", 90), 1, [3], drops.NONE),                       # in_port skipped, 3 kept
        (frame("02:00:00:00:00:01", 100), 2, [1, 3], drops.NONE),                   # IPv4 from 2
        (bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP()), 2, [], drops.NO_MATCH),     # ARP from 2: miss
        (frame("02:00:00:00:00:02", 110), 3, [], drops.NO_MATCH),                   # nothing for port 3
    ]
    b = dpu.batch
    b.clear()
    for f, port, _, _ in packets:
        b.append(f, in_port=port)
    dpu.process(b)

    tx = {}
    for i, port in b.tx[: b.n_tx, :2].tolist():
        tx.setdefault(i, []).append(port)
    for i, (_, port, want_tx, want_drop) in enumerate(packets):
        assert tx.get(i, []) == want_tx, f"packet {i}"
        assert b.meta[i, M_DROP] == want_drop, f"packet {i}: {drops.NAMES[b.meta[i, M_DROP]]}"

    # rule counters, by the rule's line in the .flows file
    prog = dpu.flows.program
    by_line = {r.line: (int(prog.n_packets[k]), int(prog.n_bytes[k])) for k, r in enumerate(prog.rules)}
    lens = [len(f) for f, _, _, _ in packets]
    assert by_line == {
        2: (1, lens[0]),
        3: (3, lens[1] + lens[2] + lens[3]),
        4: (1, lens[4]),
        5: (1, lens[5]),
        6: (1, lens[6]),
        7: (1, lens[7]),
        8: (1, lens[8]),
        10: (1, lens[9]),
        12: (0, 0),
    }
    s = dpu.stats
    assert s.rx == len(packets)
    assert s.left == 6 and s.dropped == 6
    assert s.drop_counts() == {"no_match": 2, "action_drop": 3, "output_port_unknown": 1}
    assert s.port("p3")["tx_packets"] == 5 and s.port("p1")["tx_packets"] == 1
    assert [s.port(p)["rx_packets"] for p in ("p1", "p2", "p3")] == [9, 2, 1]

    # counters accumulate over batches
    b.clear()
    b.append(packets[0][0], in_port=1)
    dpu.process(b)
    assert prog.n_packets[[r.line for r in prog.rules].index(2)] == 2


def test_an_identical_flow_replaces_the_earlier_one_as_in_ovs(tmp_path):
    (tmp_path / "p.flows").write_text("in_port=1,actions=output:3\nin_port=1,actions=output:2\n")
    (tmp_path / "p.toml").write_text(PIPELINE)
    dpu = Dpu.load(tmp_path / "p.toml")
    dpu.batch.clear()
    dpu.batch.append(frame("02:00:00:00:00:02"), in_port=1)
    dpu.process(dpu.batch)
    assert dpu.batch.tx[: dpu.batch.n_tx, :2].tolist() == [[0, 2]]
    assert len(dpu.flows.program.rules) == 1 and dpu.flows.program.rules[0].line == 2


def test_a_bad_flows_file_fails_dpu_construction(tmp_path):
    (tmp_path / "p.flows").write_text("in_port=1,actions=output:2\nin_port=2,actions=ct(commit)\n")
    (tmp_path / "p.toml").write_text(PIPELINE)
    with pytest.raises(FlowSyntaxError) as info:
        Dpu.load(tmp_path / "p.toml")
    assert str(info.value).startswith(f"{(tmp_path / 'p.flows').resolve()}:2:19: ")
    assert "ct needs ip or ipv6" in str(info.value)
