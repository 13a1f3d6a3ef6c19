"""softdpu.testing on itself: sends, expectations, the clock, and the failure messages (checked word for word).

The pipelines are given as text (Harness.from_text); scapy builds the
packets and is the oracle for what must come out.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import PcapWriter as ScapyPcapWriter

from softdpu.errors import ConfigError, SoftdpuError
from softdpu.testing import START, Harness, fields, from_text, load

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def ports(n, extra=""):
    return extra + "".join(f'\n[[port]]\nname = "p{k}"\nofport = {k}\ntype = "pcap"\n' for k in range(1, n + 1))


SWITCH = ports(3, "[pipeline]\nmac_aging = 60\n")
SWITCH_FLOWS = "priority=100,tcp,tp_dst=22,actions=drop\npriority=0,actions=normal\n"


@pytest.fixture
def switch():
    with from_text(SWITCH, SWITCH_FLOWS) as h:
        yield h


def udp(src, dst, dport=53):
    return Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=dport)


# -- what works --------------------------------------------------------------------------
def test_flood_learn_and_state_carried_over(switch):
    got = switch.send("p1", udp(A, B))
    assert {k: [bytes(p) for p in v] for k, v in got.items()} == {"p2": [bytes(udp(A, B))], "p3": [bytes(udp(A, B))]}
    assert bytes(switch.expect("p2", udp(A, B))) == bytes(udp(A, B))
    switch.expect(3, udp(A, B))                        # a port by its number
    switch.expect_nothing_else()
    switch.send("p2", udp(B, A))                       # A learned on p1 by the first send
    switch.expect("p1", udp(B, A))
    switch.expect_nothing_else()
    assert switch.stats.port("p1")["rx_packets"] == 1 and switch.stats.left == 2
    assert switch.dump_flows(stats=False) == [" priority=100,tcp,tp_dst=22 actions=drop", " priority=0 actions=NORMAL"]
    assert "n_packets=2, n_bytes=84, priority=0 actions=NORMAL" in switch.dump_flows()[1]
    assert switch.dump_conntrack() == []


def test_outputs_are_per_port_fifo_and_lists_expect_in_order(switch):
    switch.send("p2", udp(B, A))                       # learn B
    switch.clear()
    pkts = [udp(A, B, dport=d) for d in (1, 2, 3)]
    switch.send("p1", pkts)
    switch.expect("p2", pkts[0])
    with pytest.raises(AssertionError, match=r"expect\(p2\): the packet that left p2 \(its #2, a copy of packet 3"):
        switch.expect("p2", pkts[2])                   # the oldest first: pkts[1] is next
    switch.expect("p2", pkts[1:])
    switch.expect_nothing_else()


def test_clock_stamps_packets_and_drives_mac_aging(switch):
    assert switch.now_ns == START
    switch.send("p1", udp(A, B))
    switch.advance(59.5)
    switch.clear()
    out = switch.send("p2", udp(B, A))
    assert list(out) == ["p1"]                         # A still known after 59.5 s
    assert out["p1"][0].time == pytest.approx(START / 1e9 + 59.5)
    switch.clear()
    switch.advance(61)                                 # past mac_aging = 60 since A was last seen
    switch.send("p2", udp(B, A))
    switch.expect("p1", udp(B, A))
    switch.expect("p3", udp(B, A))                     # A aged out: flooded
    switch.expect_nothing_else()


FIREWALL = ports(2, "[conntrack]\nsize = 1024\n")
FIREWALL_FLOWS = """\
table=0, priority=100, ip, actions=ct(table=1)
table=0, priority=0, actions=drop
table=1, priority=90, ct_state=+trk+new, ip, in_port=1, actions=ct(commit),output:2
table=1, priority=80, ct_state=+trk+est, ip, in_port=1, actions=output:2
table=1, priority=80, ct_state=+trk+est, ip, in_port=2, actions=output:1
table=1, priority=0, actions=drop
"""


def test_clock_drives_conntrack_timeouts():
    out = Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="192.0.2.1") / UDP(sport=5000, dport=53)
    back = Ether(src=B, dst=A) / IP(src="192.0.2.1", dst="10.0.0.1") / UDP(sport=53, dport=5000)
    with from_text(FIREWALL, FIREWALL_FLOWS) as fw:
        fw.send("p2", back)                            # nothing opened it: dropped
        fw.expect_drop("action_drop")
        fw.send("p1", out)
        fw.expect("p2", out)
        fw.advance(10)
        fw.send("p2", back)                            # the reply: established (udp_multiple 30 s from now)
        fw.expect("p1", back)
        fw.advance(29)
        fw.send("p2", back)
        fw.expect("p1", back)
        assert [x.split(" packets=")[0] for x in fw.dump_conntrack()] == [
            "udp,orig=(src=10.0.0.1,dst=192.0.2.1,sport=5000,dport=53),"
            "reply=(src=192.0.2.1,dst=10.0.0.1,sport=53,dport=5000)"]
        fw.advance(31)                                 # idle past udp_multiple: the connection is gone
        assert fw.dump_conntrack() == []
        fw.send("p2", back)
        fw.expect_drop("action_drop")
        fw.expect_nothing_else()


def test_send_a_capture_keeps_its_spacing_from_the_clock(tmp_path, switch):
    path = tmp_path / "in.pcap"
    with ScapyPcapWriter(str(path), linktype=1, sync=True) as w:
        for k, dport in enumerate((1, 2, 3)):
            p = udp(A, B, dport)
            p.time = 1000.0 + k * 0.25                 # an old capture: only its spacing counts
            w.write(p)
    switch.advance(5)
    got = switch.send("p1", path)
    assert [p.time for p in got["p2"]] == pytest.approx([START / 1e9 + 5 + k * 0.25 for k in range(3)])
    assert switch.now == pytest.approx(START / 1e9 + 5.5)
    switch.expect("p2", [udp(A, B, d) for d in (1, 2, 3)])
    switch.expect("p3", [udp(A, B, d) for d in (1, 2, 3)])
    switch.expect_nothing_else()


def test_more_packets_than_a_batch():
    with from_text(ports(2, "[pipeline]\nbatch = 7\n"), "in_port=1,actions=output:2\n") as h:
        pkts = [udp(A, B, d) for d in range(1, 40)]
        h.send("p1", pkts)
        h.expect("p2", pkts)
        h.expect_nothing_else()
        assert [s.number for s in h.sent] == list(range(1, 40))


def test_ignore_fields_that_a_rewrite_changes():
    flows = "in_port=1,ip,actions=mod_dl_src:02:00:00:00:00:fe,dec_ttl,output:2\n"
    with from_text(ports(2), flows) as h:
        p = udp(A, B)
        h.send("p1", [p, p])
        h.expect("p2", p, ignore=["Ether.src", "IP.ttl", "IP.chksum"])
        with pytest.raises(AssertionError) as e:
            h.expect("p2", p, ignore=["IP.chksum"])
        msg = str(e.value)
        assert "differs from the expected one in Ether.src, IP.ttl:" in msg
        assert "! Ether.src   02:00:00:00:00:0a  02:00:00:00:00:fe" in msg
        assert "! IP.ttl      64                 63" in msg
        assert "~ IP.chksum" in msg                    # different, but ignored
        routed = p.copy()
        routed[Ether].src, routed[IP].ttl = "02:00:00:00:00:fe", 63
        h.expect("p2", routed)                         # exact: scapy recomputes the checksum


def test_two_harnesses_do_not_share_state():
    with from_text(SWITCH, SWITCH_FLOWS) as one, from_text(SWITCH, SWITCH_FLOWS) as two:
        one.send("p1", udp(A, B))
        one.clear()
        one.send("p2", udp(B, A))
        assert list(one.pending()) == ["p1"]
        two.send("p2", udp(B, A))
        assert list(two.pending()) == ["p1", "p3"]     # two never learned A


def test_load_a_pipeline_file():
    from pathlib import Path
    h = load(Path(__file__).resolve().parent.parent / "examples" / "testing" / "my-switch.toml")
    h.send("p1", udp(A, B))
    assert sorted(h.pending()) == ["p2", "p3"]


def test_trace_of_a_sent_packet(switch):
    switch.send("p1", udp(A, B))
    switch.send("p2", udp(B, A))
    text = switch.trace(2)
    assert text.startswith("Packet 2: 42 bytes on p2 (in_port=2)")
    assert "forwarding to learned port p1" in text and text.endswith("Result: sent to p1")
    with pytest.raises(ValueError, match="no packet 3; 2 were sent"):
        switch.trace(3)


# -- failing expectations: the messages --------------------------------------------------
def test_a_differing_packet_shows_both_field_by_field_and_the_trace(switch):
    switch.send("p1", udp(A, B))
    with pytest.raises(AssertionError) as e:
        switch.expect("p2", udp(A, B, dport=80))
    lines = str(e.value).splitlines()
    assert lines[0] == ("expect(p2): the packet that left p2 (its #1, a copy of packet 1, sent on p1) differs "
                        "from the expected one in UDP.dport, UDP.chksum:")
    assert lines[1].split() == ["field", "expected", "actual"]
    assert "    IP.src      10.0.0.1           10.0.0.1" in lines
    assert "  ! UDP.dport   80                 53 (domain)" in lines
    assert "  packet 1 on p1: Ether / IP / UDP 10.0.0.1:1234 > 10.0.0.2:domain -> left by p2, p3" in lines
    assert "softdpu trace of packet 1:" in lines
    assert "       -> no learned MAC for destination, flooding VLAN 0" in lines
    assert lines[-1] == "  Result: sent to p2, p3"
    assert any(x.endswith("pipeline.flows:2") for x in lines)          # the rule that matched
    switch.expect("p2", udp(A, B))                                      # the failure took nothing


def test_a_missing_packet_says_what_happened_instead(switch):
    switch.send("p1", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22))
    with pytest.raises(AssertionError) as e:
        switch.expect("p2", udp(A, B))
    msg = str(e.value)
    assert msg.startswith("expect(p2): nothing (more) left p2; expected:\n    Ether.dst   02:00:00:00:00:0b")
    assert "-> dropped: action_drop" in msg
    assert "not yet expected: no packets; drops action_drop=1" in msg
    assert "Result: dropped: action_drop" in msg


def test_a_missing_drop_names_the_reason_and_what_was_dropped(switch):
    switch.send("p1", udp(A, B))
    with pytest.raises(AssertionError) as e:
        switch.expect_drop("no_match")
    msg = str(e.value).splitlines()
    assert msg[0] == ("expect_drop(no_match): expected 1 packet dropped for no_match (no flow matched (table miss, "
                      "no controller)), not yet expected: 0")
    assert msg[1] == "  drops not yet expected: none"
    assert "softdpu trace of packet 1:" in msg


def test_drops_are_counted_and_taken(switch):
    ssh = Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22)
    switch.send("p1", [ssh, ssh, ssh])
    switch.expect_drop("action_drop", count=2)
    switch.expect_drop()                               # any reason
    with pytest.raises(AssertionError, match=r"expect_drop\(any reason\): expected 1 packet dropped"):
        switch.expect_drop()
    switch.send("p1", Ether(src=A, dst=B) / (b"x" * 2000))   # over max_frame (1600): the port counts it
    switch.expect_drop("frame_too_big")
    switch.expect_nothing_else()
    assert switch.stats.drop_counts() == {"action_drop": 3, "frame_too_big": 1}


def test_nothing_else_lists_what_is_left(switch):
    switch.send("p1", udp(A, B))
    switch.send("p1", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22))
    switch.expect("p2", udp(A, B))
    with pytest.raises(AssertionError) as e:
        switch.expect_nothing_else()
    lines = str(e.value).splitlines()
    assert lines[0] == ("expect_nothing_else: 1 packet left that no expect() took; "
                        "drops not expected: action_drop=1")
    assert lines[1] == "  p3: Ether / IP / UDP 10.0.0.1:1234 > 10.0.0.2:domain  (a copy of packet 1, sent on p1)"
    assert "softdpu trace of packet 1:" in lines and "softdpu trace of packet 2:" in lines
    switch.expect("p3", udp(A, B))
    switch.expect_nothing_else(drops=False)            # the drop alone is tolerated on request
    with pytest.raises(AssertionError):
        switch.expect_nothing_else()


# -- bad input ---------------------------------------------------------------------------
def test_bad_calls_are_clear_errors(switch, tmp_path):
    with pytest.raises(ValueError, match=r"send: no port 'p9'; the ports are: p1 \(1\), p2 \(2\), p3 \(3\)"):
        switch.send("p9", udp(A, B))
    with pytest.raises(ValueError, match="expect: no port 7"):
        switch.expect(7, udp(A, B))
    with pytest.raises(TypeError, match="expected scapy packets, bytes or a capture path, got int"):
        switch.send("p1", [udp(A, B), 5])
    with pytest.raises(FileNotFoundError, match="no such capture file"):
        switch.send("p1", tmp_path / "nope.pcap")
    (tmp_path / "junk.pcap").write_bytes(b"not a capture at all")
    with pytest.raises(Exception, match="not a pcap or pcapng file"):
        switch.send("p1", tmp_path / "junk.pcap")
    with pytest.raises(ValueError, match="advance: expected a number of seconds >= 0"):
        switch.advance(-1)
    with pytest.raises(ValueError, match="unknown drop reason 'no_such'; the reasons are: frame_too_big"):
        switch.expect_drop("no_such")
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        switch.expect_drop("no_match", count=0)
    with pytest.raises(ValueError, match="IP has no field 'checksum'; its fields are: version"):
        switch.expect("p2", udp(A, B), ignore=["IP.checksum"])
    with pytest.raises(ValueError, match="scapy has no layer named 'Ethernet'"):
        switch.expect("p2", udp(A, B), ignore=["Ethernet.src"])
    assert switch.sent == []                           # none of that sent anything


def test_bad_pipelines_are_config_errors():
    with pytest.raises(ConfigError, match=r"pipeline\.toml:5: port\[0\]\.ofport: expected an OpenFlow port"):
        from_text('[pipeline]\nname = "x"\n\n[[port]]\nofport = "one"\nname = "p1"\ntype = "pcap"\n', "")
    with pytest.raises(SoftdpuError, match="pipeline.flows:2:19: unknown action"):
        from_text(ports(2), "actions=drop\nin_port=1,actions=frobnicate\n")
    with pytest.raises(ValueError, match="give the flows as text instead"):
        from_text('[pipeline]\nflows = "x.flows"\n' + ports(1), "")
    with pytest.raises(ConfigError, match="no such pipeline file"):
        load("/nonexistent/p.toml")
    with pytest.raises(ValueError, match="batch: expected 1..65536 packets, got 0"):
        Harness.from_text(SWITCH, SWITCH_FLOWS, batch=0)


def test_tunnel_ports_are_refused_as_send_and_expect_targets():
    toml = ports(1) + """
[[port]]
name = "uplink"
ofport = 2
type = "pcap"
mac = "02:00:00:00:00:fe"

[[port]]
name = "vx0"
ofport = 10
type = "vxlan"
underlay = "uplink"
local_ip = "192.0.2.1"
remote_ip = "192.0.2.2"
key = 5000

[[neighbor]]
ip = "192.0.2.2"
mac = "02:00:00:00:02:fe"
"""
    with from_text(toml, "in_port=1,actions=output:10\nin_port=10,actions=output:1\n") as h:
        with pytest.raises(ValueError, match="vx0 is a vxlan port; send the encapsulated packet to its underlay"):
            h.send("vx0", udp(A, B))
        with pytest.raises(ValueError, match="vx0 is a vxlan port: its packets leave by its underlay uplink"):
            h.expect("vx0", udp(A, B))
        inner = udp(A, B)
        h.send("p1", inner)
        out = h.pending("uplink")[0]
        assert out[VXLAN].vni == 5000 and bytes(out[VXLAN].payload) == bytes(inner)
        # the outer headers: the inner IP's fields compared, the outer's UDP source port (a hash) ignored
        want = (Ether(src="02:00:00:00:00:fe", dst="02:00:00:00:02:fe") / IP(src="192.0.2.1", dst="192.0.2.2", ttl=64,
                flags="DF", id=0) / UDP(dport=4789, chksum=0) / VXLAN(vni=5000, flags=0x08) / inner)
        h.expect("uplink", want, ignore=["UDP[0].sport", "UDP[0].chksum", "IP[0].chksum"])
        h.expect_nothing_else()
        # and back: the remote VTEP's packet on the underlay comes out of p1 decapsulated
        reply = udp(B, A)
        h.send("uplink", Ether(src="02:00:00:00:02:fe", dst="02:00:00:00:00:fe")
               / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=50000, dport=4789) / VXLAN(vni=5000) / reply)
        h.expect("p1", reply)
        h.expect_nothing_else()


# -- fields.compare ----------------------------------------------------------------------
def test_compare_aligns_layers_when_a_tag_is_pushed():
    plain = Ether(src=A, dst=B) / IP(ttl=9) / ICMP()
    tagged = Ether(src=A, dst=B) / Dot1Q(vlan=7) / IP(ttl=9) / ICMP()
    d = fields.compare(plain, tagged)
    assert d.differing == ["Ether.type", "Dot1Q.prio", "Dot1Q.dei", "Dot1Q.vlan", "Dot1Q.type"]
    assert fields.compare(plain, tagged, ignore=["Ether.type", "Dot1Q"]).equal
    assert [r.expected for r in d.rows if r.name.startswith("Dot1Q")] == ["-"] * 4


def test_compare_occurrences_and_bytes():
    outer = lambda ttl: (Ether() / IP(ttl=1) / UDP(dport=4789) / VXLAN(vni=1)  # noqa: E731
                         / Ether() / IP(ttl=ttl) / ICMP())
    d = fields.compare(outer(5), outer(6))
    assert d.differing == ["IP[1].ttl", "IP[1].chksum"]
    assert fields.compare(outer(5), bytes(outer(6)), ignore=["IP[1].ttl", "IP[1].chksum"]).equal
    assert not fields.compare(outer(5), outer(6), ignore=["IP[0].ttl", "IP[0].chksum"]).equal
    with pytest.raises(TypeError, match="expected a scapy packet or bytes, got str"):
        fields.compare("Ether()", outer(5))
    with pytest.raises(ValueError, match="is not Layer.field"):
        fields.parse_ignore(["IP..ttl"])


def test_messages_name_packets_of_a_capture_and_frames_not_received(tmp_path, switch):
    path = tmp_path / "in.pcap"
    with ScapyPcapWriter(str(path), linktype=1, sync=True) as w:
        w.write(udp(A, B, 7))
    switch.send("p1", path)
    switch.send("p1", [Ether(src=A, dst=B) / (b"x" * 2000), udp(A, B, 8)])
    with pytest.raises(AssertionError) as e:
        switch.expect_nothing_else()
    msg = str(e.value)
    assert "  packet 2 on p1: a frame of 2014 bytes (not received: frame_too_big) -> dropped: frame_too_big" in msg
    assert "  packet 3 on p1: Ether / IP / UDP 10.0.0.1:1234 > 10.0.0.2:8 -> left by p2, p3" in msg
    assert "  p2: Ether / IP / UDP 10.0.0.1:1234 > 10.0.0.2:echo  (a copy of packet 1, sent on p1)" in msg


# -- fields.compare against the bytes: equal (with nothing ignored) means the same frame ----------
BASES = [
    Ether(src=A, dst=B) / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x94\x04\x00\x00")
    / TCP(sport=1, dport=2, flags="S", options=[("MSS", 1460), ("NOP", None), ("EOL", None)]) / b"data",
    Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=4789) / VXLAN(vni=7)
    / Ether(src=B, dst=A) / IP() / ICMP(type=8) / b"ping",
    Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2"),
]


@settings(max_examples=300, deadline=None)
@given(base=st.integers(0, len(BASES) - 1), where=st.integers(0, 10_000), value=st.integers(0, 255),
       cut=st.booleans())
def test_compare_is_equal_exactly_when_the_frames_are(base, where, value, cut):
    frame = bytes(BASES[base])
    k = where % len(frame)
    other = frame[:k] if cut else frame[:k] + bytes([value]) + frame[k + 1:]
    assert fields.compare(frame, other).equal == (frame == other)
    assert fields.compare(frame, frame).equal


def test_short_frames_pass_through_and_compare_as_bytes():
    """softdpu forwards a malformed frame as Open vSwitch does; the harness still shows and compares it."""
    with from_text(ports(2), "in_port=1,actions=output:2\n") as h:
        h.send("p1", [b"\x02\x00\x00", bytes(udp(A, B))[:20]])
        h.expect("p2", b"\x02\x00\x00")
        with pytest.raises(AssertionError) as e:
            h.expect("p2", bytes(udp(A, B))[:21])
        assert "differs from the expected one in Raw.load:" in str(e.value)
        assert "Malformed: parse_trunc_ip" in str(e.value)                 # the trace says why
        h.expect("p2", bytes(udp(A, B))[:20])
        h.expect_nothing_else()
