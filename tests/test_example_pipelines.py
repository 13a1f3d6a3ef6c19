"""The example pipelines as conversations: packets in with scapy, what must come out (the `dpu` fixture).

pipelines/l2-switch.toml: p1 access VLAN 10, p2 access VLAN 20, p3 trunk (10, 20),
p4 access VLAN 10, MAC aging 300 s, LLDP dropped.  pipelines/firewall.toml:
connections from inside (port 1) out to outside (port 2), only their
replies and related ICMP errors back in; tcp_established = 3600 s.
The golden cases (test_golden.py) check the same pipelines on whole
captures; these tests say what each behaviour is, one packet at a time.
"""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror
from scapy.layers.l2 import ARP, Dot1Q, Ether

L2 = pytest.mark.pipeline("pipelines/l2-switch.toml")     # from the rootdir
FW = pytest.mark.pipeline("pipelines/firewall.toml")

H1, H3, D = "02:00:00:00:10:01", "02:00:00:00:10:03", "02:00:00:00:10:0d"   # VLAN 10: p1, p4, behind p3
H2 = "02:00:00:00:20:02"                                                     # VLAN 20: p2
BC = "ff:ff:ff:ff:ff:ff"


def udp(src, dst, n=20):
    return Ether(src=src, dst=dst) / IP(src="10.0.10.1", dst="10.0.10.2") / UDP(sport=1000, dport=2000) / (b"u" * n)


def tagged(vid, frame):
    """The frame with an 802.1Q tag (as the trunk carries it)."""
    return Ether(src=frame.src, dst=frame.dst) / Dot1Q(vlan=vid) / frame.payload


# -- l2-switch -----------------------------------------------------------------------------
@L2
def test_l2_switch_floods_in_the_vlan_then_forwards_to_learned_ports(dpu):
    who_has = Ether(src=H1, dst=BC) / ARP(op=1, hwsrc=H1, psrc="10.0.10.1", pdst="10.0.10.3")
    dpu.send("p1", who_has)
    dpu.expect("p3", tagged(10, who_has))          # the trunk gets it tagged, p4 untagged, p2 (VLAN 20) not
    dpu.expect("p4", who_has)
    dpu.expect_nothing_else()

    is_at = Ether(src=H3, dst=H1) / ARP(op=2, hwsrc=H3, psrc="10.0.10.3", hwdst=H1, pdst="10.0.10.1")
    dpu.send("p4", is_at)
    dpu.expect("p1", is_at)                        # H1 was learned on p1
    dpu.expect_nothing_else()

    dpu.send("p3", tagged(10, udp(D, H1)))         # from behind the trunk, VLAN 10
    dpu.expect("p1", udp(D, H1))                   # access port: untagged
    dpu.send("p1", udp(H1, D))
    dpu.expect("p3", tagged(10, udp(H1, D)))       # D was learned on the trunk in VLAN 10
    dpu.expect_nothing_else()


@L2
def test_l2_switch_keeps_vlans_apart(dpu):
    dpu.send("p1", udp(H1, BC))
    dpu.clear()
    dpu.send("p2", udp(H2, H1))                    # H1 is known, but in VLAN 10: flooded in VLAN 20
    dpu.expect("p3", tagged(20, udp(H2, H1)))
    dpu.expect_nothing_else()


@L2
def test_l2_switch_refuses_frames_a_port_does_not_carry(dpu):
    dpu.send("p1", tagged(10, udp(H1, H3)))        # tagged on an access port
    dpu.send("p3", tagged(30, udp(D, H1)))         # VLAN 30 is not on the trunk
    dpu.send("p3", udp(D, H1))                     # untagged on the trunk
    dpu.expect_drop("vlan_refused", count=3)
    dpu.send("p4", Ether(src=H3, dst="01:80:c2:00:00:0e", type=0x88CC) / (b"l" * 46))   # LLDP
    dpu.expect_drop("action_drop")
    dpu.expect_nothing_else()


@L2
def test_l2_switch_forgets_addresses_after_mac_aging(dpu):
    dpu.send("p1", udp(H1, BC))                    # H1 learned at t
    dpu.clear()
    dpu.advance(300)
    dpu.send("p4", udp(H3, H1))                    # t + 300: still known (mac_aging = 300)
    dpu.expect("p1", udp(H3, H1))
    dpu.expect_nothing_else()
    dpu.advance(0.5)
    dpu.send("p4", udp(H3, H1))                    # t + 300.5: aged out, flooded in VLAN 10
    dpu.expect("p1", udp(H3, H1))
    dpu.expect("p3", tagged(10, udp(H3, H1)))
    dpu.expect_nothing_else()


# -- firewall ------------------------------------------------------------------------------
IN, OUT = "02:00:00:00:00:01", "02:00:00:00:00:02"


def out(l4, ttl=64):
    return Ether(src=IN, dst=OUT) / IP(src="10.0.0.5", dst="198.51.100.7", ttl=ttl) / l4


def back(l4):
    return Ether(src=OUT, dst=IN) / IP(src="198.51.100.7", dst="10.0.0.5") / l4


def handshake(dpu):
    syn = out(TCP(sport=40000, dport=80, flags="S", seq=100))
    synack = back(TCP(sport=80, dport=40000, flags="SA", seq=700, ack=101))
    ack = out(TCP(sport=40000, dport=80, flags="A", seq=101, ack=701))
    for port, pkt, there in (("inside", syn, "outside"), ("outside", synack, "inside"), ("inside", ack, "outside")):
        dpu.send(port, pkt)
        dpu.expect(there, pkt)


@FW
def test_firewall_lets_connections_out_and_only_their_replies_in(dpu):
    handshake(dpu)
    dpu.send("outside", back(TCP(sport=80, dport=40000, flags="PA", seq=701, ack=101) / b"hello"))
    dpu.expect("inside", back(TCP(sport=80, dport=40000, flags="PA", seq=701, ack=101) / b"hello"))
    dpu.send("outside", back(TCP(sport=22, dport=40001, flags="S", seq=1)))          # opened from outside
    dpu.send("outside", back(UDP(sport=53, dport=5353)))                             # a reply to nothing
    dpu.expect_drop("action_drop", count=2)
    dpu.expect_nothing_else()


@FW
def test_firewall_lets_related_icmp_errors_back_in(dpu):
    query = out(UDP(sport=5353, dport=53) / b"q")
    dpu.send("inside", query)
    dpu.expect("outside", query)
    # port unreachable from a router on the way, quoting the query's IP header and 8 bytes (RFC 792)
    unreachable = (Ether(src=OUT, dst=IN) / IP(src="198.51.100.1", dst="10.0.0.5") / ICMP(type=3, code=3)
                   / bytes(query[IP])[:28])
    dpu.send("outside", unreachable)
    got = dpu.expect("inside", unreachable)
    assert got[UDPerror].dport == 53                                                  # scapy reads the quote
    dpu.send("outside", Ether(src=OUT, dst=IN) / IP(src="198.51.100.1", dst="10.0.0.5") / ICMP(type=3, code=3)
             / bytes(out(UDP(sport=5354, dport=53))[IP])[:28])                        # about no connection
    dpu.expect_drop("action_drop")
    dpu.expect_nothing_else()


@FW
def test_firewall_forgets_idle_connections_after_their_timeout(dpu):
    handshake(dpu)
    data = back(TCP(sport=80, dport=40000, flags="A", seq=701, ack=101))
    dpu.advance(3599)                                                                 # tcp_established = 3600
    dpu.send("outside", data)
    dpu.expect("inside", data)
    dpu.advance(3601)                                                                 # idle past it: gone
    dpu.send("outside", data)
    dpu.expect_drop("action_drop")
    dpu.expect_nothing_else()
