"""Test packets for the parser, built with scapy, and scapy as the oracle of their fields.

`scapy_corpus()` covers every protocol the parser knows; `edge_corpus()`
holds frames scapy cannot dissect the way the parser does (RARP, AH, tiny
fragments, 3 tags ...), checked against tests/reference_parse.py only.
`oracle(frame)` dissects a frame with scapy and reads the expected key fields,
flags and offsets from scapy's layers, never from the parser.
"""
import warnings

from scapy.config import conf
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert, \
    IPOption_RR, fragment
from scapy.layers.inet6 import (_ICMPv6, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA,
                                ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr,
                                ICMPv6NDOptDstLLAddr, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                                RouterAlert, fragment6)
from scapy.layers.ipsec import AH, ESP, NAT_KEEPALIVE, NON_ESP
from scapy.layers.l2 import ARP, LLC, SNAP, STP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Padding, Raw

from softdpu.stages import parse as P

conf.verb = 0
warnings.filterwarnings("ignore", module="scapy")

MAC_A, MAC_B = "02:00:00:00:0a:01", "02:00:00:00:0b:02"
V4_A, V4_B = "10.1.2.3", "192.168.7.9"
V6_A, V6_B = "2001:db8::1", "2001:db8:ffff::abcd"
IP6_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)


def _e(**kw):
    return Ether(src=MAC_A, dst=MAC_B, **kw)


def _pad60(frame):
    return frame + bytes(max(0, 60 - len(frame)))


def scapy_corpus():
    """[(name, frame bytes)] covering every protocol the parser handles."""
    ip = IP(src=V4_A, dst=V4_B)
    ip6 = IPv6(src=V6_A, dst=V6_B)
    inner = Ether(src="02:11:11:11:11:11", dst="02:22:22:22:22:22") / IP(src="172.16.0.1",
                                                                          dst="172.16.0.2")
    p = {
        "tcp_syn_mss": _e() / IP(src=V4_A, dst=V4_B, tos=0xB9, ttl=17) / TCP(
            sport=40000, dport=443, flags="S", options=[("MSS", 1460), ("WScale", 7)]),
        "tcp_all_flags": _e() / ip / TCP(sport=1, dport=65535, flags="FSRPAUECN", reserved=5),
        "tcp_payload": _e() / ip / TCP(sport=5000, dport=80, flags="PA") / b"GET / HTTP/1.1\r\n",
        "udp": _e() / ip / UDP(sport=5353, dport=53) / b"query-bytes-here",
        "udp_padded": _pad60(bytes(_e() / ip / UDP(sport=7, dport=9) / b"x")),
        "tcp_padded": _pad60(bytes(_e() / ip / TCP(sport=22, dport=2222, flags="A"))),
        "vlan_udp": _e() / Dot1Q(prio=5, dei=1, vlan=100) / ip / UDP(sport=1000, dport=2000),
        "qinq_88a8": _e() / Dot1AD(prio=3, vlan=10) / Dot1Q(vlan=20) / ip / TCP(sport=3, dport=4),
        "qinq_8100": _e() / Dot1Q(vlan=30) / Dot1Q(prio=7, vlan=4095) / ip6 / UDP(sport=5, dport=6),
        "vlan_arp": _e() / Dot1Q(vlan=7) / ARP(op=1, hwsrc=MAC_A, psrc=V4_A, pdst=V4_B),
        "arp_request": _pad60(bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=MAC_A, psrc=V4_A, hwdst="00:00:00:00:00:00", pdst=V4_B))),
        "arp_reply": _e() / ARP(op=2, hwsrc=MAC_A, psrc=V4_A, hwdst=MAC_B, pdst=V4_B),
        "ipv4_options_rr": _e() / IP(src=V4_A, dst=V4_B, options=[
            IPOption_RR(routers=["10.0.0.1", "10.0.0.2"]), IPOption_NOP()]) / UDP(sport=1, dport=2),
        "ipv4_router_alert": _e() / IP(src=V4_A, dst=V4_B, options=[IPOption_Router_Alert()]) / TCP(
            sport=9, dport=10, flags="R"),
        "ipv4_df": _e() / IP(src=V4_A, dst=V4_B, flags="DF") / UDP(sport=11, dport=12) / b"df",
        "ipv4_gre_proto": _e() / IP(src=V4_A, dst=V4_B, proto=47) / bytes(24),
        "ipv6_tcp": _e() / IPv6(src=V6_A, dst=V6_B, tc=0xB8, fl=0x12345, hlim=7) / TCP(
            sport=33000, dport=22, flags="SA"),
        "ipv6_hbh_udp": _e() / ip6 / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / UDP(
            sport=546, dport=547),
        "ipv6_routing_tcp": _e() / ip6 / IPv6ExtHdrRouting(addresses=["2001:db8::9"]) / TCP(
            sport=1234, dport=5678),
        "ipv6_dstopt_icmp6": _e() / ip6 / IPv6ExtHdrDestOpt() / ICMPv6EchoRequest(id=3, seq=4),
        "ipv6_chain": _e() / ip6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(
            addresses=["2001:db8::7", "2001:db8::8"]) / IPv6ExtHdrFragment(id=9) / IPv6ExtHdrDestOpt() / UDP(
            sport=40, dport=50) / b"chained",
        "ipv6_no_next": _e() / IPv6(src=V6_A, dst=V6_B, nh=59),
        "icmp_echo": _e() / ip / ICMP(type=8, id=0x1234, seq=1) / b"ping-payload",
        "icmp_echo_reply": _e() / IP(src=V4_B, dst=V4_A) / ICMP(type=0, id=0x1234, seq=1),
        "icmp_unreach": _e() / ip / ICMP(type=3, code=3) / IP(src=V4_B, dst=V4_A) / UDP(sport=1, dport=2),
        "icmp6_echo": _e() / ip6 / ICMPv6EchoRequest(id=1, seq=2, data=b"abc"),
        "icmp6_echo_reply": _e() / ip6 / ICMPv6EchoReply(id=1, seq=2),
        "icmp6_ns": _e() / IPv6(src=V6_A, dst="ff02::1:ff00:abcd", hlim=255) / ICMPv6ND_NS(
            tgt=V6_B) / ICMPv6NDOptSrcLLAddr(lladdr=MAC_A),
        "icmp6_na": _e() / IPv6(src=V6_B, dst=V6_A, hlim=255) / ICMPv6ND_NA(
            tgt=V6_B, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=MAC_B),
        "icmp6_rs": _e() / IPv6(src=V6_A, dst="ff02::2", hlim=255) / ICMPv6ND_RS(),
        "icmp6_ra": _e() / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA(),
        "vxlan": _e() / ip / UDP(sport=49152, dport=4789) / VXLAN(vni=42) / inner / TCP(sport=1, dport=2),
        "vxlan_v6": _e() / ip6 / UDP(sport=49153, dport=4789) / VXLAN(vni=0xFFFFFF) / inner / UDP(),
        "geneve": _e() / ip / UDP(sport=1111, dport=6081) / GENEVE(vni=0x123456, proto=0x6558) / inner,
        "geneve_options": _e() / ip / UDP(sport=1112, dport=6081) / GENEVE(
            vni=7, proto=0x6558, options=[GeneveOptions(classid=0x102, type=0x80, data=b"\x00" * 4)]) / inner,
        "esp_v4": _e() / ip / ESP(spi=0x1001, seq=7, data=bytes(range(32))),
        "esp_v6": _e() / ip6 / ESP(spi=0x2002, seq=8, data=bytes(24)),
        "esp_natt": _e() / ip / UDP(sport=4500, dport=4500) / ESP(spi=0x3003, seq=9, data=bytes(40)),
        "esp_natt_nat_port": _e() / ip / UDP(sport=4500, dport=61000) / ESP(spi=5, seq=1, data=bytes(16)),
        "natt_keepalive": _pad60(bytes(_e() / ip / UDP(sport=4500, dport=4500) / NAT_KEEPALIVE())),
        "ike_natt": _e() / ip / UDP(sport=4500, dport=4500) / NON_ESP() / (b"ike-header-bytes" * 2),
        "llc_stp": Dot3(src=MAC_A, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP(),
        "llc_snap_ip": Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(
            OUI=0, code=0x0800) / ip / UDP(sport=13, dport=14),
        "lldp_ethertype": _e(type=0x88CC) / Raw(bytes(range(40))),
    }
    frags = fragment(IP(src=V4_A, dst=V4_B, id=77) / UDP(sport=3000, dport=4000) / bytes(range(120)),
                     fragsize=48)
    for n, f in enumerate(frags):
        p[f"ipv4_frag_{n}"] = _e() / f
    tfrags = fragment(IP(src=V4_A, dst=V4_B, id=78) / TCP(sport=80, dport=3001, flags="A") / bytes(80),
                      fragsize=40)
    for n, f in enumerate(tfrags):
        p[f"ipv4_tcp_frag_{n}"] = _e() / f
    frags6 = fragment6(ip6 / IPv6ExtHdrFragment(id=0xABCD) / UDP(sport=3001, dport=4001) / bytes(300), 150)
    for n, f in enumerate(frags6):
        p[f"ipv6_frag_{n}"] = _e() / f
    return [(name, bytes(pkt) if not isinstance(pkt, bytes) else pkt) for name, pkt in p.items()]


def edge_corpus():
    """[(name, frame bytes)] the reference parser checks (scapy dissects these differently)."""
    ip = IP(src=V4_A, dst=V4_B)
    ip6 = IPv6(src=V6_A, dst=V6_B)
    ah = AH(nh=6, payloadlen=4, spi=0x77, seq=1, icv=bytes(12))
    p = {
        "rarp": bytes(_e(type=0x8035) / ARP(op=3, hwsrc=MAC_A, hwdst=MAC_A)),
        "triple_tag": bytes(_e() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / ip / UDP()),
        "ipv6_ah_tcp": bytes(_e() / ip6 / IPv6ExtHdrDestOpt(nh=51) / ah / TCP(sport=1, dport=2)),
        "tiny_first_frag_tcp": bytes(_e() / IP(src=V4_A, dst=V4_B, flags="MF", proto=6) / bytes(12)),
        "first_frag_bad_doff": bytes(_e() / IP(src=V4_A, dst=V4_B, flags="MF") / TCP(dataofs=15)),
        "udp_surplus": bytes(_e() / ip / UDP(sport=1, dport=2, len=10) / bytes(30)),
        "vxlan_short": bytes(_e() / ip / UDP(sport=1, dport=4789) / bytes(4)),
        "geneve_short": bytes(_e() / ip / UDP(sport=1, dport=6081) / bytes(7)),
        "natt_short": bytes(_e() / ip / UDP(sport=4500, dport=4500) / b"\x01\x02\x03\x04\x05"),
        "esp_short": bytes(_e() / IP(src=V4_A, dst=V4_B, proto=50) / bytes(6)),
        "icmp_on_v6_proto1": bytes(_e() / IPv6(src=V6_A, dst=V6_B, nh=1) / bytes(8)),
        "ipv6_atomic_frag": bytes(_e() / ip6 / IPv6ExtHdrFragment(offset=0, m=0) / TCP()),
        "ipv6_frag_res_bits": bytes(_e() / ip6 / IPv6ExtHdrFragment(res2=1) / UDP()),
        "ipv6_nine_ext": bytes(_e() / ip6 / (IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                              / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()
                                              / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt())
                               / UDP()),
        "snap_nonzero_oui": bytes(Dot3(src=MAC_A, dst=MAC_B) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(
            OUI=0x00000C, code=0x2000) / bytes(20)),
        "eth_only": bytes(_e(type=0x0800)),
        "runt_8": bytes(8),
    }
    return list(p.items())


def _layers(pkt):
    out = []
    while pkt is not None and not isinstance(pkt, (Raw, Padding)) and pkt.__class__.__name__ != "NoPayload":
        out.append(pkt)
        pkt = pkt.payload if pkt.payload else None
    return out


def _mac(text):
    return int(text.replace(":", ""), 16)


def _ip4(text):
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


def _ip6(text):
    import ipaddress
    return int(ipaddress.IPv6Address(text))


def oracle(frame):
    """Expected (fields, flags, l3, l4, l5) of a frame, read from scapy's dissection."""
    pkt = Ether(frame)
    layers = _layers(pkt)
    f = {"dl_dst": _mac(pkt.dst), "dl_src": _mac(pkt.src)}
    flags = 0
    pos = 1
    tags = []
    while pos < len(layers) and isinstance(layers[pos], Dot1Q):
        tags.append(layers[pos])
        pos += 1
    for n, tag in enumerate(tags[:2]):
        f["vlan_tci" if n == 0 else "vlan_tci2"] = tag.prio << 13 | tag.dei << 12 | tag.vlan | 0x1000
        flags |= P.F_VLAN if n == 0 else P.F_QINQ
    if len(tags) > 2:
        return dict(f, dl_type=0x8100), flags, 22, None, None
    l2 = layers[pos - 1]
    l3_layer = l2.payload
    if isinstance(l2, Dot3) or l2.type < 0x600:
        flags |= P.F_LLC
        snap = pkt.getlayer(SNAP)
        if snap is None or snap.OUI != 0 or snap.code < 0x600:
            return dict(f, dl_type=0x05FF), flags, len(frame) - len(bytes(l3_layer)), None, None
        dl_type, l3_layer, pos = snap.code, snap.payload, layers.index(snap) + 1
    else:
        dl_type = l2.type
    f["dl_type"] = dl_type
    l3 = len(frame) - len(bytes(l3_layer))
    if dl_type in (0x0806, 0x8035):
        arp = layers[pos]
        f.update(nw_proto=arp.op & 0xFF, arp_op=arp.op, nw_src=_ip4(arp.psrc), nw_dst=_ip4(arp.pdst),
                 arp_sha=_mac(arp.hwsrc), arp_tha=_mac(arp.hwdst))
        return f, flags | P.F_ARP, l3, None, None
    if dl_type not in (0x0800, 0x86DD):
        return f, flags, l3, None, None
    ipl = layers[pos]
    if pkt.getlayer(Padding) is not None:
        flags |= P.F_L2_PAD
    if isinstance(ipl, IP):
        flags |= P.F_IPV4 | (P.F_IP_OPTIONS if ipl.ihl > 5 else 0)
        frag = (1 if (ipl.flags.MF or ipl.frag) else 0) | (2 if ipl.frag else 0)
        f.update(nw_src=_ip4(ipl.src), nw_dst=_ip4(ipl.dst), nw_proto=ipl.proto, nw_tos=ipl.tos,
                 nw_ttl=ipl.ttl, nw_frag=frag)
        l4_layer = ipl.payload
    else:
        flags |= P.F_IPV6
        f.update(ipv6_src=_ip6(ipl.src), ipv6_dst=_ip6(ipl.dst), nw_tos=ipl.tc, nw_ttl=ipl.hlim,
                 ipv6_label=ipl.fl)
        nh, frag, l4_layer = ipl.nh, 0, ipl.payload
        while isinstance(l4_layer, IP6_EXT):
            flags |= P.F_IP6_EXT
            nh = l4_layer.nh
            if isinstance(l4_layer, IPv6ExtHdrFragment):
                offlg = l4_layer.offset << 3 | l4_layer.res2 << 1 | l4_layer.m
                frag = (1 if offlg else 0) | (2 if l4_layer.offset else 0)
                if l4_layer.offset:
                    nh = 44
            l4_layer = l4_layer.payload
        f.update(nw_proto=nh, nw_frag=frag)
    if frag:
        flags |= P.F_FRAG | (P.F_FRAG_LATER if frag & 2 else 0)
    if frag & 2:
        return f, flags, l3, None, None
    l4 = len(frame) - len(bytes(l4_layer))
    l5 = None
    if isinstance(l4_layer, TCP):
        flags |= P.F_TCP
        f.update(tp_src=l4_layer.sport, tp_dst=l4_layer.dport,
                 tcp_flags=l4_layer.reserved << 9 | int(l4_layer.flags))
        l5 = l4 + l4_layer.dataofs * 4
    elif isinstance(l4_layer, UDP):
        flags |= P.F_UDP
        f.update(tp_src=l4_layer.sport, tp_dst=l4_layer.dport)
        l5 = l4 + 8
        if not frag:
            nxt = l4_layer.payload
            flags |= (P.F_VXLAN if isinstance(nxt, VXLAN) else P.F_GENEVE if isinstance(nxt, GENEVE)
                      else P.F_ESP | P.F_ESP_NATT if isinstance(nxt, ESP)
                      else P.F_NATT_KEEPALIVE if isinstance(nxt, NAT_KEEPALIVE)
                      else P.F_IKE_NATT if isinstance(nxt, NON_ESP) else 0)
    elif isinstance(l4_layer, ICMP) or isinstance(l4_layer, _ICMPv6):
        flags |= P.F_ICMP if isinstance(l4_layer, ICMP) else P.F_ICMP6
        f.update(tp_src=l4_layer.type, tp_dst=l4_layer.code)
        l5 = l4 + 8
    elif isinstance(l4_layer, ESP):
        flags |= P.F_ESP
        l5 = l4
    if frag:  # OVS's "normal" fragment handling: fragments are looked up with ports 0
        f.update(tp_src=0, tp_dst=0)
    return f, flags, l3, l4, l5
