"""The Open vSwitch tunnel oracle (tests/ovs_tunnel_oracle.py): OVS's userspace VXLAN/Geneve
push and pop on the dummy datapath, checked with scapy.  One OVS for the module; each test
resets it.  These tests pin down the outer-header facts the module docstring states."""
import struct

import pytest

from ovs_oracle import require_ovs

scapy_all = pytest.importorskip("scapy.all")
from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw, raw  # noqa: E402
from scapy.contrib.geneve import GENEVE  # noqa: E402
from scapy.layers.vxlan import VXLAN  # noqa: E402

from ovs_tunnel_oracle import OvsTunnels, mask_udp_sport, udp_source_port  # noqa: E402

UNDERLAY_MAC = "aa:55:aa:55:00:00"
LOCAL4, LOCAL6 = "192.0.2.1", "2001:db8::1"
R2, R3, R6 = "192.0.2.2", "192.0.2.3", "2001:db8::2"
MAC2, MAC3, MAC6 = "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:06"
TLV_MAP = "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x0102,type=0x80,len=8}->tun_metadata1"
PORTS = {"p1": 1, "p2": 2, "p3": 3}
TUNNELS = {
    "vx1": dict(type="vxlan", ofport=10, remote_ip=R2, key=5000),
    "vx2": dict(type="vxlan", ofport=11, remote_ip="flow", key="flow", csum=True),
    "vx3": dict(type="vxlan", ofport=12, remote_ip=R3, key=7, dst_port=8472, ttl=17, tos=0x28,
                df_default=False),
    "vx4": dict(type="vxlan", ofport=13, remote_ip=R2, key=9, tos="inherit", ttl="inherit"),
    "gn1": dict(type="geneve", ofport=20, remote_ip=R2, key=100, csum=True),
    "gn2": dict(type="geneve", ofport=21, remote_ip="flow", key="flow"),
    "vx6": dict(type="vxlan", ofport=30, remote_ip=R6, key=600),
    "gn6": dict(type="geneve", ofport=31, remote_ip=R6, key=601, csum=False),
    "vx7": dict(type="vxlan", ofport=40, remote_ip=R3, key=77, local_ip=LOCAL4),
}


@pytest.fixture(scope="module")
def ovs(tmp_path_factory):
    require_ovs()
    with OvsTunnels(tmp_path_factory.mktemp("ovs-tnl"), underlay_mac=UNDERLAY_MAC,
                    local_ip=LOCAL4 + "/24", local_ip6=LOCAL6 + "/64",
                    neighbours={R2: MAC2, R3: MAC3, R6: MAC6}, tunnels=TUNNELS, ports=PORTS,
                    tlv_map=TLV_MAP) as o:
        yield o


@pytest.fixture
def sw(ovs):
    ovs.reset()
    return ovs


def inner_udp(tos=0, ttl=64, payload=b"hello tunnel"):
    return raw(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") /
               IP(src="10.0.0.1", dst="10.0.0.2", tos=tos, ttl=ttl, id=7) /
               UDP(sport=1234, dport=80) / payload)


def push(sw, tunnel_ofport, inner, actions=""):
    sw.add_flows(f"in_port=1,actions={actions}output:{tunnel_ofport}")
    sw.receive("p1", inner)
    out = sw.underlay_outputs()
    assert len(out) == 1, out
    assert all(v == [] for v in sw.outputs().values())
    return out[0]


def udp_csum_ok(pkt):
    """The UDP checksum in pkt is what scapy computes (non-zero)."""
    udp = pkt[UDP]
    got = udp.chksum
    again = pkt.__class__(raw(pkt))
    del again[UDP].chksum
    return got != 0 and got == again.__class__(raw(again))[UDP].chksum


# -- push ----------------------------------------------------------------------------------------
def test_vxlan_push_default_is_byte_exact(sw):
    inner = inner_udp()
    out = push(sw, 10, inner)
    expected = raw(Ether(dst=MAC2, src=UNDERLAY_MAC) /
                   IP(src=LOCAL4, dst=R2, id=0, flags="DF", ttl=64, tos=0) /
                   UDP(sport=udp_source_port(inner), dport=4789, chksum=0) /
                   VXLAN(flags=0x08, NextProtocol=0, vni=5000) / Raw(inner))
    assert out == expected
    p = Ether(out)
    assert p[VXLAN].vni == 5000 and p[VXLAN].flags == 0x08
    assert raw(p[VXLAN].payload) == inner
    assert mask_udp_sport(out) == mask_udp_sport(expected)


@pytest.mark.parametrize("frame", [
    Ether() / IP(src="10.1.2.3", dst="10.9.8.7") / TCP(sport=40000, dport=443),
    Ether() / IP(src="10.1.2.3", dst="10.9.8.7") / ICMP(type=8, code=0),
    Ether() / IP(src="10.1.2.3", dst="10.9.8.7", proto=47) / Raw(b"x" * 8),
    Ether() / IP(src="10.1.2.3", dst="10.9.8.7", frag=100) / Raw(b"x" * 8),
    Ether() / Dot1Q(vlan=5) / IP(src="10.1.2.4", dst="10.9.8.7") / UDP(sport=1, dport=2),
    Ether() / IPv6(src="2001:db8:1::1", dst="2001:db8:2::2") / UDP(sport=5353, dport=53),
    Ether() / IPv6(src="fe80::1", dst="ff02::1") / Raw(b"\x80\x00\x00\x00"),
    Ether() / ARP(psrc="10.0.0.1", pdst="10.0.0.2"),
    Ether(type=0x88B5) / Raw(b"abcdefgh" * 6),
], ids=["tcp4", "icmp4", "gre4", "frag4", "vlan-udp4", "udp6", "ipv6-other", "arp", "non-ip"])
def test_udp_source_port_is_the_inner_5tuple_hash(sw, frame):
    inner = raw(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / frame.payload) \
        if not isinstance(frame.payload, Raw) else raw(frame)
    out = Ether(push(sw, 10, inner))
    assert out[UDP].sport == udp_source_port(inner)
    assert raw(out[VXLAN].payload) == inner


def test_vxlan_flow_remote_ip_key_and_csum(sw):
    inner = inner_udp()
    out = Ether(push(sw, 11, inner, actions=f"set_field:{R3}->tun_dst,set_tunnel:424242,"))
    assert out.dst == MAC3 and out.src == UNDERLAY_MAC
    assert out[IP].src == LOCAL4 and out[IP].dst == R3
    assert out[VXLAN].vni == 424242 and out[UDP].dport == 4789
    assert udp_csum_ok(out)
    assert raw(out[VXLAN].payload) == inner


def test_vxlan_dst_port_ttl_tos_df_and_ecn(sw):
    inner = inner_udp(tos=0x03)            # ECN CE inside -> ECT(0) outside
    out = Ether(push(sw, 12, inner))
    assert out[UDP].dport == 8472 and out[UDP].chksum == 0
    assert out[IP].ttl == 17 and out[IP].tos == 0x28 | 0x02
    assert out[IP].flags == 0 and out[IP].frag == 0 and out[IP].id == 0
    assert out[IP].src == LOCAL4 and out[IP].dst == R3 and out.dst == MAC3
    assert raw(out)[-len(inner):] == inner


@pytest.mark.parametrize("ecn", [0, 1, 2])
def test_ecn_not_ce_is_copied(sw, ecn):
    out = Ether(push(sw, 10, inner_udp(tos=0x10 | ecn)))
    assert out[IP].tos == ecn                      # DSCP not inherited without tos=inherit


def test_tos_and_ttl_inherit(sw):
    out = Ether(push(sw, 13, inner_udp(tos=0xB9, ttl=33)))
    assert out[IP].tos == 0xB9 and out[IP].ttl == 33
    sw.reset()
    non_ip = raw(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02", type=0x88B5) / Raw(b"z" * 50))
    out = Ether(push(sw, 13, non_ip))
    assert out[IP].tos == 0 and out[IP].ttl == 64


def test_geneve_push_with_csum(sw):
    inner = inner_udp()
    out = Ether(push(sw, 20, inner))
    g = out[GENEVE]
    assert out[UDP].dport == 6081 and udp_csum_ok(out)
    assert (g.version, g.optionlen, g.oam, g.critical, g.proto, g.vni) == (0, 0, 0, 0, 0x6558, 100)
    assert raw(out)[-len(inner):] == inner
    assert out[IP].flags == "DF" and out[IP].ttl == 64 and out[IP].id == 0


def test_geneve_options_from_flows(sw):
    inner = inner_udp()
    raw_out = push(sw, 21, inner, actions=(f"set_field:{R2}->tun_dst,set_field:0x1234->tun_id,"
                                           "set_field:0xdeadbeef->tun_metadata0,"
                                           "set_field:0x0102030405060708->tun_metadata1,"))
    out = Ether(raw_out)
    assert out[IP].dst == R2 and out[UDP].chksum == 0
    h = 14 + 20 + 8
    opts = bytes.fromhex("ffff0001deadbeef" "01028002" "0102030405060708")
    assert raw_out[h:h + 4] == bytes([len(opts) // 4, 0x40, 0x65, 0x58])   # ver 0|opt_len, C bit
    assert raw_out[h + 4:h + 8] == struct.pack(">I", 0x1234 << 8)
    assert raw_out[h + 8:h + 8 + len(opts)] == opts
    g = out[GENEVE]
    assert g.optionlen == 5 and g.critical == 1 and g.vni == 0x1234
    assert raw_out[h + 8 + len(opts):] == inner


def test_geneve_only_set_options_are_sent(sw):
    raw_out = push(sw, 21, inner_udp(), actions=f"set_field:{R2}->tun_dst,set_field:0xa->tun_metadata0,")
    g = Ether(raw_out)[GENEVE]
    assert g.optionlen == 2 and g.critical == 0
    assert raw_out[50:58] == bytes.fromhex("ffff00010000000a")


def test_ipv6_underlay_vxlan_always_checksummed(sw):
    inner = inner_udp(tos=0x02)
    out = Ether(push(sw, 30, inner))
    assert out.type == 0x86DD and out.dst == MAC6 and out.src == UNDERLAY_MAC
    v6 = out[IPv6]
    assert (v6.src, v6.dst, v6.hlim, v6.tc, v6.fl, v6.nh) == (LOCAL6, R6, 64, 0x02, 0, 17)
    assert out[UDP].dport == 4789 and out[UDP].sport == udp_source_port(inner)
    assert udp_csum_ok(out)                        # no csum option, still checksummed
    assert out[VXLAN].vni == 600 and raw(out[VXLAN].payload) == inner


def test_ipv6_underlay_geneve_csum_false_still_checksummed(sw):
    inner = inner_udp()
    out = Ether(push(sw, 31, inner))
    assert out[IPv6].src == LOCAL6 and out[UDP].dport == 6081 and udp_csum_ok(out)
    assert out[GENEVE].vni == 601 and raw(out)[-len(inner):] == inner


def test_missing_neighbour_sends_arp_and_drops(sw):
    sw.add_flows("in_port=1,actions=set_field:192.0.2.77->tun_dst,set_tunnel:1,output:11")
    sw.receive("p1", inner_udp())
    out = sw.underlay_outputs()
    assert len(out) == 1
    a = Ether(out[0])
    assert a.dst == "ff:ff:ff:ff:ff:ff" and a.src == UNDERLAY_MAC
    assert a[ARP].op == 1 and a[ARP].psrc == LOCAL4 and a[ARP].pdst == "192.0.2.77"


def test_local_ip_cannot_push_in_ovs_3_1_dummy(sw):
    """OVS 3.1: a tunnel source (local_ip) must have a *local* ovs/route entry, which only the
    kernel's routing table provides (netdev-dummy/ip4addr adds none): routing fails, nothing is sent."""
    sw.add_flows("in_port=1,actions=output:40")
    assert "native tunnel routing failed" in sw.trace("p1", inner_udp())
    sw.receive("p1", inner_udp())
    assert sw.underlay_outputs() == []


def test_local_ip_tunnel_pops_on_its_address(sw):
    inner = inner_udp()
    sw.add_flows("in_port=40,actions=output:2")
    outer = vxlan_outer(inner, 77, src=R3, mac=MAC3)
    assert "on tunnel vx7" in sw.trace_underlay(outer)
    sw.receive_underlay(outer)
    assert sw.outputs()["p2"] == [inner]


def test_trace_shows_tnl_push(sw):
    sw.add_flows("in_port=1,actions=output:10")
    text = sw.trace("p1", inner_udp())
    last = text.strip().splitlines()[-1]
    assert "tnl_push(tnl_port(4789)" in last and f"dst={R2}" in last and "vni=0x1388" in last
    assert sw.underlay_outputs() == []


# -- pop -----------------------------------------------------------------------------------------
def vxlan_outer(inner, vni, src=R2, dst=LOCAL4, mac=MAC2, dport=4789, tos=0, ttl=64, csum=None):
    udp = UDP(sport=55555, dport=dport) if csum is None else UDP(sport=55555, dport=dport, chksum=csum)
    return raw(Ether(src=mac, dst=UNDERLAY_MAC) / IP(src=src, dst=dst, tos=tos, ttl=ttl) / udp /
               VXLAN(flags=0x08, NextProtocol=0, vni=vni) / Raw(inner))


def test_vxlan_pop_byte_identical_and_traced(sw):
    inner = inner_udp()
    sw.add_flows("in_port=10,actions=output:2")
    outer = vxlan_outer(inner, 5000, tos=0x20, ttl=33)
    text = sw.trace_underlay(outer)
    assert "Datapath actions: tnl_pop(4789)" in text
    assert "on tunnel vx1" in text and "tun_id=0x1388" in text and f"tun_src={R2}" in text
    assert f"tun_dst={LOCAL4}" in text and "tun_ttl=33" in text and "output:2" in text
    assert sw.outputs() == {"p1": [], "p2": [], "p3": []}     # the trace's own emission is left out
    sw.receive_underlay(outer)
    assert sw.outputs() == {"p1": [], "p2": [inner], "p3": []}
    assert sw.underlay_outputs() == []


def test_vxlan_pop_flow_key_and_checksummed_outer(sw):
    inner = inner_udp()
    sw.add_flows(f"in_port=11,tun_id=777,tun_src={R3},actions=output:3")
    sw.receive_underlay(vxlan_outer(inner, 777, src=R3, mac=MAC3))   # scapy computes a valid csum
    assert sw.outputs()["p3"] == [inner]


def test_vxlan_pop_drops_bad_checksum_and_bad_flags(sw):
    inner = inner_udp()
    sw.add_flows("in_port=10,actions=output:2")
    sw.receive_underlay(vxlan_outer(inner, 5000, csum=0x1234))
    bad_flags = bytearray(vxlan_outer(inner, 5000, csum=0))
    bad_flags[42] = 0x88
    sw.receive_underlay(bytes(bad_flags))
    bad_ip = bytearray(vxlan_outer(inner, 5000))
    bad_ip[24] ^= 0xFF
    sw.receive_underlay(bytes(bad_ip))
    assert sw.outputs()["p2"] == []
    sw.receive_underlay(vxlan_outer(inner, 5000, csum=0))
    assert sw.outputs()["p2"] == [inner]


def test_pop_ecn(sw):
    sw.add_flows("in_port=10,actions=output:2")
    ect = inner_udp(tos=0x02)
    sw.receive_underlay(vxlan_outer(ect, 5000, tos=0x03))
    sw.receive_underlay(vxlan_outer(inner_udp(tos=0x00), 5000, tos=0x03))   # not-ECT: dropped
    out = sw.outputs()["p2"]
    assert len(out) == 1
    want = Ether(ect)
    want[IP].tos = 0x03
    del want[IP].chksum
    assert out[0] == raw(want)


def test_geneve_pop_with_options(sw):
    inner = inner_udp()
    sw.add_flows("in_port=21,tun_metadata0=0xdeadbeef,actions=output:3\n"
                 "in_port=21,priority=1,actions=output:2")
    opts = bytes.fromhex("ffff0001deadbeef")
    gen = bytes([len(opts) // 4, 0, 0x65, 0x58]) + struct.pack(">I", 42 << 8)
    outer = raw(Ether(src=MAC3, dst=UNDERLAY_MAC) / IP(src=R3, dst=LOCAL4) / UDP(sport=1, dport=6081) /
                Raw(gen + opts + inner))
    text = sw.trace_underlay(outer)
    assert "tnl_pop(6081)" in text and "on tunnel gn2" in text and "tun_id=0x2a" in text
    sw.receive_underlay(outer)
    outer_no_opt = raw(Ether(src=MAC3, dst=UNDERLAY_MAC) / IP(src=R3, dst=LOCAL4) / UDP(sport=1, dport=6081) /
                       GENEVE(vni=42, proto=0x6558) / Raw(inner))
    sw.receive_underlay(outer_no_opt)
    assert sw.outputs() == {"p1": [], "p2": [inner], "p3": [inner]}


def test_ipv6_pop(sw):
    inner = inner_udp()
    sw.add_flows(f"in_port=30,tun_id=600,tun_ipv6_src={R6},actions=output:2")
    outer = raw(Ether(src=MAC6, dst=UNDERLAY_MAC) / IPv6(src=R6, dst=LOCAL6, hlim=9) /
                UDP(sport=999, dport=4789) / VXLAN(flags=0x08, NextProtocol=0, vni=600) / Raw(inner))
    text = sw.trace_underlay(outer)
    assert "tnl_pop(4789)" in text and "on tunnel vx6" in text and f"tun_ipv6_src={R6}" in text
    sw.receive_underlay(outer)
    assert sw.outputs()["p2"] == [inner]


def test_round_trip_push_then_pop(sw):
    """A frame OVS encapsulated, mirrored (addresses swapped), is popped back to the same inner frame."""
    inner = inner_udp(payload=b"round trip")
    pushed = Ether(push(sw, 10, inner))
    sw.reset()
    sw.add_flows("in_port=10,actions=output:3")
    pushed.src, pushed.dst = MAC2, UNDERLAY_MAC
    pushed[IP].src, pushed[IP].dst = R2, LOCAL4
    del pushed[IP].chksum
    sw.receive_underlay(raw(pushed))
    assert sw.outputs()["p3"] == [inner]
