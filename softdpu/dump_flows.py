"""`softdpu dump-flows`: a flow table with its counters, as `ovs-ofctl dump-flows` prints it.

    lines = dump_flows.format_flows(program, duration_ns=..., stats=True, where=False, table=None)

One line per rule, by table, then priority (highest first), then file order:

     cookie=0x0, duration=1.234s, table=0, n_packets=3, n_bytes=180, priority=100,in_port=1 actions=output:2

The match is printed in Open vSwitch's normalized form (lib/match.c
match_format, as `ovs-ofctl parse-flow` and `dump-flows` print it): protocol
shorthands (ip, tcp6, arp, ...), fields in OVS's order, prefixes for CIDR
masks, hex for masked values, `priority=` left out when it is the default
32768.  It is built from the rule's OVS flow members (Rule.members); a rule
without them prints its own match text.  The actions are printed as OVS prints
them (flows/action_format.py): `2` -> `output:2`, `normal` -> `NORMAL`, in the
OpenFlow 1.0 forms unless the flows need OpenFlow 1.1+ (push_vlan), then in the
forms of `ovs-ofctl -O OpenFlow13 dump-flows`.

duration: OVS prints the wall-clock age of each flow; softdpu has no wall clock
in a capture run, so every rule's duration is the capture clock's span: the
last packet's timestamp minus the first's (0.000s without packets).
"""
import ipaddress
from pathlib import Path

from softdpu.stages.flows import action_format

DEFAULT_PRIORITY = 32768
ETH_IP, ETH_IPV6, ETH_ARP, ETH_RARP = 0x0800, 0x86DD, 0x0806, 0x8035
IPPROTO_ICMP, IPPROTO_IGMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMPV6 = 1, 2, 6, 17, 132, 58

CT_STATE = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"]   # bit 0 upwards, as OVS prints
TCP_FLAGS = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns"]
SPECIAL_PORTS = {0xfff8: "IN_PORT", 0xfff9: "TABLE", 0xfffa: "NORMAL", 0xfffb: "FLOOD", 0xfffc: "ALL",
                 0xfffd: "CONTROLLER", 0xfffe: "LOCAL", 0xffff: "ANY"}


def _hex(v):
    """C's %#x: 0 prints as 0, not 0x0."""
    return "0" if v == 0 else f"{v:#x}"


def _uint_masked(name, v, m, bits):
    if not m:
        return []
    if m == (1 << bits) - 1:
        return [f"{name}={_hex(v)}"]
    return [f"{name}={_hex(v)}/{_hex(m)}"]


def _be16_masked(name, v, m):
    if not m:
        return []
    return [f"{name}={v}" if m == 0xFFFF else f"{name}={v:#x}/{m:#x}"]


def _mac(v):
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _eth_masked(name, v, m):
    if not m:
        return []
    return [f"{name}={_mac(v)}" if m == (1 << 48) - 1 else f"{name}={_mac(v)}/{_mac(m)}"]


def _prefix_len(m, bits):
    """The prefix length of a CIDR mask, or None."""
    inv = ~m & ((1 << bits) - 1)
    return bits - inv.bit_length() if inv & (inv + 1) == 0 else None


def _ip_masked(name, v, m):
    if not m:
        return []
    addr = ipaddress.IPv4Address(v)
    if m == 0xFFFFFFFF:
        return [f"{name}={addr}"]
    n = _prefix_len(m, 32)
    return [f"{name}={addr}/{n}" if n is not None else f"{name}={addr}/{ipaddress.IPv4Address(m)}"]


def _ipv6_masked(name, v, m):
    if not m:
        return []
    addr = ipaddress.IPv6Address(v)
    if m == (1 << 128) - 1:
        return [f"{name}={addr}"]
    n = _prefix_len(m, 128)
    return [f"{name}={addr}/{n}" if n is not None else f"{name}={addr}/{ipaddress.IPv6Address(m)}"]


def _flags_masked(name, v, m, names):
    out = "".join(("+" if v >> b & 1 else "-") + names[b] for b in range(len(names)) if m >> b & 1)
    return [f"{name}={out}"] if m else []


def _port(p):
    return SPECIAL_PORTS.get(p, str(p))


def format_match(members, priority=DEFAULT_PRIORITY):
    """OVS flow members {member: (value, mask)} -> the match as OVS prints it (match_format)."""
    get = lambda name: members.get(name, (0, 0))   # noqa: E731
    out = []
    if priority != DEFAULT_PRIORITY:
        out.append(f"priority={priority}")
    v, m = get("ct_state")
    if m:
        if m == 0xFF:   # OVS: every bit matched prints only the set ones
            out.append("ct_state=" + ("|".join(n for b, n in enumerate(CT_STATE) if v >> b & 1) or "0"))
        else:
            out += _flags_masked("ct_state", v, m, CT_STATE)
    v, m = get("ct_zone")
    if m:
        out.append(f"ct_zone={v}" if m == 0xFFFF else f"ct_zone={v:#x}/{m:#x}")
    out += _uint_masked("ct_mark", *get("ct_mark"), 32)
    out += _uint_masked("ct_label", *get("ct_label"), 128)
    out += _ip_masked("ct_nw_src", *get("ct_nw_src"))
    out += _ip_masked("ct_nw_dst", *get("ct_nw_dst"))
    out += _ipv6_masked("ct_ipv6_src", *get("ct_ipv6_src"))
    out += _ipv6_masked("ct_ipv6_dst", *get("ct_ipv6_dst"))
    v, m = get("ct_nw_proto")
    if m:
        out.append(f"ct_nw_proto={v}")
        out += _be16_masked("ct_tp_src", *get("ct_tp_src"))
        out += _be16_masked("ct_tp_dst", *get("ct_tp_dst"))
    dl_type, dl_mask = get("dl_type")
    proto, proto_mask = get("nw_proto")
    dl_type = dl_type if dl_mask else 0
    skip_type = skip_proto = False
    if dl_mask:
        skip_type = True
        if dl_type in (ETH_IP, ETH_IPV6):
            six = dl_type == ETH_IPV6
            names = ({IPPROTO_ICMPV6: "icmp6", IPPROTO_TCP: "tcp6", IPPROTO_UDP: "udp6", IPPROTO_SCTP: "sctp6"}
                     if six else
                     {IPPROTO_ICMP: "icmp", IPPROTO_IGMP: "igmp", IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp",
                      IPPROTO_SCTP: "sctp"})
            if proto_mask and proto in names:
                out.append(names[proto])
                skip_proto = True
            else:
                out.append("ipv6" if six else "ip")
        elif dl_type == ETH_ARP:
            out.append("arp")
        elif dl_type == ETH_RARP:
            out.append("rarp")
        elif dl_type == 0x8847:
            out.append("mpls")
        elif dl_type == 0x8848:
            out.append("mplsm")
        else:
            skip_type = False
    for i in range(16):
        out += _uint_masked(f"reg{i}", *get(f"reg{i}"), 32)
    out += _uint_masked("tun_id", *get("tun_id"), 64)
    out += _ip_masked("tun_src", *get("tun_src"))
    out += _ip_masked("tun_dst", *get("tun_dst"))
    out += _ipv6_masked("tun_ipv6_src", *get("tun_ipv6_src"))
    out += _ipv6_masked("tun_ipv6_dst", *get("tun_ipv6_dst"))
    for i in range(4):
        out += _uint_masked(f"tun_metadata{i}", *get(f"tun_metadata{i}"), 64)
    out += _uint_masked("metadata", *get("metadata"), 64)
    v, m = get("in_port")
    if m:
        out.append(f"in_port={_port(v)}")
    v, m = get("vlan_tci")
    if m:
        vid_m, pcp_m, cfi = m & 0x0FFF, m & 0xE000, m & 0x1000
        if (cfi and v & 0x1000 and vid_m in (0, 0x0FFF) and pcp_m in (0, 0xE000) and (vid_m or pcp_m)):
            if vid_m:
                out.append(f"dl_vlan={v & 0x0FFF}")
            if pcp_m:
                out.append(f"dl_vlan_pcp={v >> 13}")
        elif m == 0xFFFF:
            out.append(f"vlan_tci={v:#06x}")
        else:
            out.append(f"vlan_tci={v:#06x}/{m:#06x}")
    out += _eth_masked("dl_src", *get("dl_src"))
    out += _eth_masked("dl_dst", *get("dl_dst"))
    if not skip_type and dl_mask:
        out.append(f"dl_type={dl_type:#06x}" if dl_mask == 0xFFFF else f"dl_type={dl_type:#06x}/{dl_mask:#06x}")
    arp = dl_type in (ETH_ARP, ETH_RARP)
    if dl_type == ETH_IPV6:
        out += _ipv6_masked("ipv6_src", *get("ipv6_src"))
        out += _ipv6_masked("ipv6_dst", *get("ipv6_dst"))
        v, m = get("ipv6_label")
        if m:
            out.append(f"ipv6_label={v:#07x}" if m == 0xFFFFF else f"ipv6_label={v:#07x}/{m:#07x}")
    elif arp:
        out += _ip_masked("arp_spa", *get("nw_src"))
        out += _ip_masked("arp_tpa", *get("nw_dst"))
    else:
        out += _ip_masked("nw_src", *get("nw_src"))
        out += _ip_masked("nw_dst", *get("nw_dst"))
    if not skip_proto and proto_mask:
        out.append(f"arp_op={proto}" if arp else f"nw_proto={proto}")
    if arp:
        out += _eth_masked("arp_sha", *get("arp_sha"))
        out += _eth_masked("arp_tha", *get("arp_tha"))
    v, m = get("nw_tos")
    if m & 0xFC:
        out.append(f"nw_tos={v & 0xFC}")
    if m & 0x03:
        out.append(f"nw_ecn={v & 0x03}")
    v, m = get("nw_ttl")
    if m:
        out.append(f"nw_ttl={v}")
    v, m = get("nw_frag")
    if m == 3:
        out.append("nw_frag=" + (("later" if v & 2 else "first") if v & 1 else ("<error>" if v & 2 else "no")))
    elif m == 1:
        out.append("nw_frag=" + ("yes" if v & 1 else "no"))
    elif m == 2:
        out.append("nw_frag=" + ("later" if v & 2 else "not_later"))
    if (dl_type == ETH_IP and proto == IPPROTO_ICMP) or (dl_type == ETH_IPV6 and proto == IPPROTO_ICMPV6):
        out += _be16_masked("icmp_type", *get("tp_src"))
        out += _be16_masked("icmp_code", *get("tp_dst"))
    elif dl_type == ETH_IP and proto == IPPROTO_IGMP:
        out += _be16_masked("igmp_type", *get("tp_src"))
        out += _be16_masked("igmp_code", *get("tp_dst"))
    else:
        out += _be16_masked("tp_src", *get("tp_src"))
        out += _be16_masked("tp_dst", *get("tp_dst"))
    v, m = get("tcp_flags")
    if dl_type in (ETH_IP, ETH_IPV6) and proto == IPPROTO_TCP and m:
        if m == 0xFFF:
            out.append("tcp_flags=" + ("|".join(n for b, n in enumerate(TCP_FLAGS) if v >> b & 1) or "0"))
        else:
            out += _flags_masked("tcp_flags", v, m, TCP_FLAGS)
    return ",".join(out)


def _split_text(text):
    """A flow line -> (match text without table/priority/cookie, actions text), as written."""
    low = text.lower()
    at = low.find("actions=")
    if at < 0:
        at = low.find("actions:")
    match, actions = (text, "") if at < 0 else (text[:at], text[at + len("actions="):])
    words = [w for w in match.replace(",", " ").split()
             if w.partition("=")[0].partition(":")[0].strip().lower()
             not in ("table", "priority", "cookie", "idle_timeout", "hard_timeout")]
    return ",".join(words), actions.strip()


def rule_match(rule):
    """The match of a Rule, normalized as OVS prints it (its own text when it has no members)."""
    members = getattr(rule, "members", None)
    if members is not None and (members or not rule.match):
        return format_match(members, rule.priority)
    match, _ = _split_text(rule.text)
    prio = [] if rule.priority == DEFAULT_PRIORITY else [f"priority={rule.priority}"]
    return ",".join(prio + ([match] if match else []))


def _shown(path):
    """A rule's file as the user would type it: relative to the working directory when under it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def format_rule(rule, n_packets=0, n_bytes=0, duration_s=0.0, stats=True, where=False, openflow11=False):
    """One dump-flows line (with its leading space, as ovs-ofctl prints it).

    Without stats, as `ovs-ofctl --no-stats dump-flows`: cookie and table only when not 0.
    idle_timeout= and hard_timeout= follow n_bytes when not 0, as OVS prints them; idle_age= and
    hard_age= (OVS's NXST_FLOW replies) are not printed, as in OVS's OpenFlow 1.1+ replies."""
    head = []
    if stats or rule.cookie:
        head.append(f"cookie={rule.cookie:#x}")
    if stats:
        head.append(f"duration={duration_s:.3f}s")
    if stats or rule.table:
        head.append(f"table={rule.table}")
    if stats:
        head += [f"n_packets={n_packets}", f"n_bytes={n_bytes}"]
    for name in ("idle_timeout", "hard_timeout"):     # as OVS: with or without stats, when not 0
        if getattr(rule, name, 0):
            head.append(f"{name}={getattr(rule, name)}")
    match = rule_match(rule)
    actions = action_format.format_actions(rule, openflow11)
    line = " " + "".join(h + ", " for h in head) + (match + " " if match else "") + f"actions={actions}"
    if where:
        line += f"  # {_shown(rule.path)}:{rule.line}"
    return line


def order(program):
    """Indexes of program.rules as dump-flows lists them: by table, priority (highest first), file order."""
    rules = program.rules
    return sorted(range(len(rules)), key=lambda k: (rules[k].table, -rules[k].priority, k))


def format_flows(program, duration_ns=0, stats=True, where=False, table=None):
    """Every rule of a FlowProgram (or only table `table`) as dump-flows lines."""
    duration_s = max(duration_ns, 0) / 1e9
    of11 = action_format.needs_openflow11(program.rules)
    lines = []
    for k in order(program):
        rule = program.rules[k]
        if table is not None and rule.table != table:
            continue
        lines.append(format_rule(rule, int(program.n_packets[k]), int(program.n_bytes[k]), duration_s,
                                 stats=stats, where=where, openflow11=of11))
    return lines
