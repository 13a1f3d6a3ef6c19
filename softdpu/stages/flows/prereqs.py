"""Match-field prerequisites, as ovs-fields(7) states them ("Prerequisites").

A field that only exists in some packets (nw_src in IPv4, tp_dst in TCP/UDP,
...) may be matched only when the same flow also pins the protocol that has
it: dl_type (usually through a shorthand: ip, tcp, arp, ...) and, for L4
fields, nw_proto.  Open vSwitch's switch refuses such a match
(OFPBMC_BAD_PREREQ); ovs-ofctl instead quietly drops the field before
sending the flow (`tp_dst=80,actions=drop` becomes a catch-all drop, logged
at most as "normalization changed ofp_match").  softdpu refuses the line.

The rules, by name (fields.FIELDS says which field has which):

  none          no requirement (metadata, registers, tunnel, conntrack, Ethernet, VLAN)
  ipv4_or_arp   IPv4; or ARP/RARP, where nw_src/nw_dst are the ARP SPA/TPA (OVS's
                historical reading, ovs-fields(7) "IPv4 Source Address")
  arp           ARP or RARP
  ipv6          IPv6
  ip_any        IPv4 or IPv6
  ip_any_or_arp IPv4 or IPv6; or ARP/RARP, where nw_proto is the ARP opcode (historical)
  tcp/udp/sctp  IPv4 or IPv6 with that nw_proto, and not nw_frag=later: a later
                fragment has no L4 header (ovs-fields(7))
  l4            tp_src/tp_dst: TCP, UDP or SCTP as above, or ICMP (IPv4) / ICMPv6
                (IPv6), where they are the type and code (as ovs-ofctl reads them)
  icmp_any      icmp_type/icmp_code: ICMP, or ICMPv6 (ovs-ofctl accepts
                `icmp6,icmp_type=135` and matches the ICMPv6 type)
  icmpv6        icmpv6_type/icmpv6_code: ICMPv6
  ct_ipv4, ct_ipv6, ct_ip, ct_l4
                the connection's original tuple (ct_nw_src, ct_ipv6_dst, ct_nw_proto,
                ct_tp_src ...): a valid connection in the match (one of ct_state +new
                +est +rel +rpl, or +trk-inv, as OVS's is_ct_valid) and that
                family (ip / ipv6 / either), and for ct_tp_* an exact ct_nw_proto
                (OVS refuses these matches otherwise)

Where softdpu is stricter than ovs-ofctl on purpose: ovs-ofctl treats tcp_dst,
udp_dst and sctp_dst as the same field as tp_dst and icmpv6_type as icmp_type,
so it takes `udp,tcp_dst=53` or `icmp,icmpv6_type=3`; ovs-fields(7) gives
each its own protocol and so does softdpu.  TCP/UDP/SCTP fields with
nw_frag=later are refused by both (the switch answers OFPBMC_BAD_PREREQ).
"""
IPV4, IPV6, ARP, RARP = 0x0800, 0x86DD, 0x0806, 0x8035
TCP, UDP, SCTP, ICMP, ICMPV6 = 6, 17, 132, 1, 58
_PORTS = (TCP, UDP, SCTP)

# rule -> (what satisfies it, for messages; test(dl_type, nw_proto) -> bool)
RULES = {
    "none": (None, lambda t, p: True),
    "ipv4_or_arp": ("ip (dl_type=0x0800), or arp/rarp", lambda t, p: t in (IPV4, ARP, RARP)),
    "arp": ("arp or rarp (dl_type=0x0806 or 0x8035)", lambda t, p: t in (ARP, RARP)),
    "ipv6": ("ipv6 (dl_type=0x86dd)", lambda t, p: t == IPV6),
    "ip_any": ("ip or ipv6 (dl_type=0x0800 or 0x86dd)", lambda t, p: t in (IPV4, IPV6)),
    "ip_any_or_arp": ("ip or ipv6 (dl_type=0x0800 or 0x86dd), or arp/rarp",
                      lambda t, p: t in (IPV4, IPV6, ARP, RARP)),
    "tcp": ("tcp or tcp6 (nw_proto=6 with ip or ipv6)", lambda t, p: t in (IPV4, IPV6) and p == TCP),
    "udp": ("udp or udp6 (nw_proto=17 with ip or ipv6)", lambda t, p: t in (IPV4, IPV6) and p == UDP),
    "sctp": ("sctp or sctp6 (nw_proto=132 with ip or ipv6)",
             lambda t, p: t in (IPV4, IPV6) and p == SCTP),
    "l4": ("tcp, udp, sctp, icmp, tcp6, udp6, sctp6 or icmp6",
           lambda t, p: (t in (IPV4, IPV6) and p in _PORTS) or (t, p) in ((IPV4, ICMP), (IPV6, ICMPV6))),
    "icmp_any": ("icmp or icmp6", lambda t, p: (t, p) in ((IPV4, ICMP), (IPV6, ICMPV6))),
    "icmpv6": ("icmp6 (nw_proto=58 with ipv6)", lambda t, p: (t, p) == (IPV6, ICMPV6)),
    "ct_ipv4": ("a valid ct_state (+est, +new, ... or +trk-inv) and ip", lambda t, p: t == IPV4),
    "ct_ipv6": ("a valid ct_state (+est, +new, ... or +trk-inv) and ipv6", lambda t, p: t == IPV6),
    "ct_ip": ("a valid ct_state (+est, +new, ... or +trk-inv) and ip or ipv6", lambda t, p: t in (IPV4, IPV6)),
    "ct_l4": ("a valid ct_state (+est, +new, ... or +trk-inv), ip or ipv6 and ct_nw_proto", lambda t, p: t in (IPV4, IPV6)),
}
CS_TRK, CS_INV = 0x20, 0x10
CS_VALID = 0x01 | 0x02 | 0x04 | 0x08 | 0x40 | 0x80     # new, est, rel, rpl, snat, dnat


def _exact(members, member, full):
    v, m = members.get(member, (0, 0))
    return v if m == full else None


def check(rule, name, members):
    """None when field `name` (of prerequisite `rule`) may be matched in a flow whose
    OVS members (member -> (value, mask)) are `members`, else the error message."""
    need, test = RULES[rule]
    dl_type = _exact(members, "dl_type", 0xFFFF)
    nw_proto = _exact(members, "nw_proto", 0xFF)
    ct_ok = True
    if rule.startswith("ct_"):
        v, m = members.get("ct_state", (0, 0))      # OVS is_ct_valid: a bit that implies a
        ct_ok = bool(v & m & CS_VALID) or bool(    # connection, or an explicit +trk-inv
            v & m & CS_TRK and m & CS_INV and not v & CS_INV)
        if rule == "ct_l4":
            ct_ok = ct_ok and _exact(members, "ct_nw_proto", 0xFF) is not None
    if not ct_ok or not test(dl_type, nw_proto):
        return f"prerequisites not met: {name} needs {need} on the same line (ovs-fields(7))"
    frag_v, frag_m = members.get("nw_frag", (0, 0))
    if rule in ("tcp", "udp", "sctp", "l4") and nw_proto in _PORTS and frag_v & frag_m & 2:
        return (f"prerequisites not met: {name} needs the L4 header, which later fragments "
                "do not have (nw_frag=later)")
    return None


def check_icmp_value(member, name, members):
    """In an ICMP/ICMPv6 flow tp_src/tp_dst are the 8-bit type and code, which
    Open vSwitch matches exactly: it keeps the low 8 bits of the value and drops
    the mask (`icmp,tp_src=5407` matches type 31).  None when fine, else why not."""
    if member not in ("tp_src", "tp_dst"):
        return None
    dl_type = _exact(members, "dl_type", 0xFFFF)
    nw_proto = _exact(members, "nw_proto", 0xFF)
    if (dl_type, nw_proto) not in ((IPV4, ICMP), (IPV6, ICMPV6)):
        return None
    v, m = members[member]
    if m != 0xFFFF or v > 0xFF:
        what = "type" if member == "tp_src" else "code"
        return (f"in an ICMP flow {name} is the 8-bit ICMP {what}: expected 0..255 without a mask "
                f"(Open vSwitch would keep only the low 8 bits and drop the mask)")
    return None
