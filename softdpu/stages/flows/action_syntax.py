"""The actions side of a flow line: ovs-ofctl action words -> ops rows.

Each action is parsed into an Action(name, arg, column) by `parse_action`
and encoded by action_encode.encode into rows of the flat program
(opcode, a, b, c, d, e) that actions.py interprets.  Header rewrites only
change the packet's key row (as Open vSwitch's flow); an output commits the
key to the bytes (commit.py).  Fields for set_field/load/move are the match
keywords of fields.py and the NXM/OXM names ovs-ofctl prints
(NXM_NX_REG0[0..15], NXM_OF_ETH_DST[], OXM_OF_METADATA[]); a field maps to
segments of key words, (word, shift, first member bit, bits).

Runtime guards (OVS's xlate checks the packet actually has the field):
G_* codes, tested on the key's dl_type / nw_proto / nw_frag / vlan_tci.
"""
import re

from softdpu.stages.flows import ct_syntax, fields, prereqs, values

# opcodes
OP_OUTPUT = 1        # a = port
OP_DROP = 2
OP_IN_PORT = 3       # output to the packet's in_port
OP_FLOOD = 4         # flood / all: every port but the input one
OP_NORMAL = 5
OP_SET = 6           # key[a] = key[a] & ~b | c, when guard d holds
OP_MOVE = 7          # key[c] bits d.. = key[a] bits b.., e bits
OP_PUSH_VLAN = 8
OP_POP_VLAN = 9
OP_SET_VLAN = 10     # mod_vlan_vid / mod_vlan_pcp: tci = tci & ~b | c (push a tag if none)
OP_DEC_TTL = 11
OP_RESUBMIT = 12     # a = port (-1: in_port), b = table (-1: this table)
OP_GOTO = 13         # a = table
OP_NOP = 14
OP_CT = 15           # a = commit 1 | force 2, b = zone (-1: from a field), c = zone field
                     # word << 16 | shift, d = table to recirculate to (-1: none), e = ct_sets row (-1)
OP_CT_CLEAR = 16
OP_REJECT = 17       # softdpu only: drop, and answer the sender (flows/reject.py)
OP_COLS = 6

# guards
G_NONE, G_IPV4, G_IP_ANY, G_IPV6, G_ARP, G_IPV4_OR_ARP, G_TCP, G_UDP, G_SCTP, G_L4, \
    G_ICMP_ANY, G_ICMPV6, G_IP_ANY_OR_ARP, G_VLAN, G_L4_PORTS = range(15)
GUARD = {"none": G_NONE, "ipv4": G_IPV4, "icmpv4": G_ICMP_ANY, "ipv4_or_arp": G_IPV4_OR_ARP, "arp": G_ARP, "ipv6": G_IPV6,
         "ip_any": G_IP_ANY, "ip_any_or_arp": G_IP_ANY_OR_ARP, "tcp": G_TCP, "udp": G_UDP,
         "sctp": G_SCTP, "l4": G_L4, "icmp_any": G_ICMP_ANY, "icmpv6": G_ICMPV6}

M64 = (1 << 64) - 1


def _reg(n):
    return [(13 + n // 2, 32 if n % 2 == 0 else 0, 0, 32)]


# writable/readable field -> (segments, bits, prereq rule, writable)
_F = {
    "in_port": ([(0, 32, 0, 16)], 16, "none", True),
    "dl_src": ([(1, 16, 0, 48)], 48, "none", True),
    "dl_dst": ([(2, 16, 0, 48)], 48, "none", True),
    "dl_type": ([(0, 16, 0, 16)], 16, "none", False),
    "vlan_tci": ([(0, 0, 0, 16)], 16, "none", True),
    "vlan_vid": ([(0, 0, 0, 12)], 12, "vlan", True),
    "vlan_pcp": ([(0, 13, 0, 3)], 3, "vlan", True),
    "nw_src": ([(3, 32, 0, 32)], 32, "ipv4", True),   # OVS: ip_src; an ARP flow writes arp_spa
    "nw_dst": ([(3, 0, 0, 32)], 32, "ipv4", True),
    "arp_spa": ([(3, 32, 0, 32)], 32, "arp", True),
    "arp_tpa": ([(3, 0, 0, 32)], 32, "arp", True),
    "nw_proto": ([(2, 8, 0, 8)], 8, "ip_any_or_arp", False),
    "nw_tos": ([(2, 0, 0, 8)], 8, "ip_any", True),
    "ip_dscp": ([(2, 2, 0, 6)], 6, "ip_any", True),
    "nw_ecn": ([(2, 0, 0, 2)], 2, "ip_any", True),
    "nw_ttl": ([(4, 8, 0, 8)], 8, "ip_any", True),
    "tp_src": ([(4, 48, 0, 16)], 16, "tcp", True),    # OVS: tp_src is tcp_src here
    "tp_dst": ([(4, 32, 0, 16)], 16, "tcp", True),
    "sctp_src": ([(4, 48, 0, 16)], 16, "sctp", True),
    "sctp_dst": ([(4, 32, 0, 16)], 16, "sctp", True),
    "tcp_src": ([(4, 48, 0, 16)], 16, "tcp", True),
    "tcp_dst": ([(4, 32, 0, 16)], 16, "tcp", True),
    "udp_src": ([(4, 48, 0, 16)], 16, "udp", True),
    "udp_dst": ([(4, 32, 0, 16)], 16, "udp", True),
    "icmp_type": ([(4, 48, 0, 8)], 8, "icmpv4", True),   # OVS: ICMPv4 only here
    "icmp_code": ([(4, 32, 0, 8)], 8, "icmpv4", True),
    "icmpv6_type": ([(4, 48, 0, 8)], 8, "icmpv6", True),
    "icmpv6_code": ([(4, 32, 0, 8)], 8, "icmpv6", True),
    "arp_op": ([(9, 0, 0, 16)], 16, "arp", True),
    "arp_sha": ([(10, 16, 0, 48)], 48, "arp", True),
    "arp_tha": ([(11, 16, 0, 48)], 48, "arp", True),
    "ipv6_src": ([(6, 0, 0, 64), (5, 0, 64, 64)], 128, "ipv6", True),
    "ipv6_dst": ([(8, 0, 0, 64), (7, 0, 64, 64)], 128, "ipv6", True),
    "ipv6_label": ([(9, 32, 0, 20)], 20, "ipv6", True),
    "metadata": ([(12, 0, 0, 64)], 64, "none", True),
    "tun_id": ([(21, 0, 0, 64)], 64, "none", True),
    "tun_src": ([(22, 32, 0, 32)], 32, "none", True),
    "tun_dst": ([(22, 0, 0, 32)], 32, "none", True),
    **{f"tun_metadata{n}": ([(26 + n, 0, 0, 64)], 64, "none", True) for n in range(4)},
    "tun_ipv6_src": ([(31, 0, 0, 64), (30, 0, 64, 64)], 128, "none", True),
    "tun_ipv6_dst": ([(33, 0, 0, 64), (32, 0, 64, 64)], 128, "none", True),
    "ct_nw_src": ([(34, 32, 0, 32)], 32, "none", False),
    "ct_nw_dst": ([(34, 0, 0, 32)], 32, "none", False),
    "ct_nw_proto": ([(35, 32, 0, 8)], 8, "none", False),
    "ct_tp_src": ([(35, 16, 0, 16)], 16, "none", False),
    "ct_tp_dst": ([(35, 0, 0, 16)], 16, "none", False),
    "ct_ipv6_src": ([(37, 0, 0, 64), (36, 0, 64, 64)], 128, "none", False),
    "ct_ipv6_dst": ([(39, 0, 0, 64), (38, 0, 64, 64)], 128, "none", False),
    "ct_state": ([(23, 48, 0, 8)], 8, "none", False),
    "ct_zone": ([(23, 32, 0, 16)], 16, "none", False),
    "ct_mark": ([(23, 0, 0, 32)], 32, "none", False),
    "ct_label": ([(25, 0, 0, 64), (24, 0, 64, 64)], 128, "none", False),
    **{f"reg{n}": (_reg(n), 32, "none", True) for n in range(16)},
    **{f"xreg{n}": ([(13 + n, 0, 0, 64)], 64, "none", True) for n in range(8)},
    **{f"xxreg{n}": ([(14 + 2 * n, 0, 0, 64), (13 + 2 * n, 0, 64, 64)], 128, "none", True)
       for n in range(4)},
}
_F.update({a: _F[n] for a, n in {"eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type",
                                 "ip_src": "nw_src", "ip_dst": "nw_dst", "ip_proto": "nw_proto",
                                 "ip_ecn": "nw_ecn", "tunnel_id": "tun_id"}.items()})

NXM = {
    "NXM_OF_IN_PORT": "in_port", "NXM_OF_ETH_DST": "dl_dst", "NXM_OF_ETH_SRC": "dl_src",
    "NXM_OF_ETH_TYPE": "dl_type", "NXM_OF_VLAN_TCI": "vlan_tci", "NXM_OF_IP_TOS": "nw_tos",
    "NXM_OF_IP_PROTO": "nw_proto", "NXM_OF_IP_SRC": "nw_src", "NXM_OF_IP_DST": "nw_dst",
    "NXM_OF_TCP_SRC": "tcp_src", "NXM_OF_TCP_DST": "tcp_dst", "NXM_OF_UDP_SRC": "udp_src",
    "NXM_OF_UDP_DST": "udp_dst", "NXM_OF_ICMP_TYPE": "icmp_type", "NXM_OF_ICMP_CODE": "icmp_code",
    "NXM_OF_ARP_OP": "arp_op", "NXM_OF_ARP_SPA": "arp_spa", "NXM_OF_ARP_TPA": "arp_tpa",
    "NXM_NX_ARP_SHA": "arp_sha", "NXM_NX_ARP_THA": "arp_tha", "NXM_NX_IPV6_SRC": "ipv6_src",
    "NXM_NX_IPV6_DST": "ipv6_dst", "NXM_NX_IPV6_LABEL": "ipv6_label",
    "NXM_NX_ICMPV6_TYPE": "icmpv6_type", "NXM_NX_ICMPV6_CODE": "icmpv6_code",
    "NXM_NX_IP_ECN": "nw_ecn", "NXM_NX_IP_TTL": "nw_ttl", "NXM_NX_TUN_ID": "tun_id",
    "NXM_NX_TUN_IPV4_SRC": "tun_src", "NXM_NX_TUN_IPV4_DST": "tun_dst",
    **{f"NXM_NX_TUN_METADATA{n}": f"tun_metadata{n}" for n in range(4)},
    "NXM_NX_TUN_IPV6_SRC": "tun_ipv6_src", "NXM_NX_TUN_IPV6_DST": "tun_ipv6_dst",
    "NXM_NX_CT_STATE": "ct_state", "NXM_NX_CT_ZONE": "ct_zone", "NXM_NX_CT_MARK": "ct_mark",
    "NXM_NX_CT_LABEL": "ct_label", "NXM_NX_CT_NW_SRC": "ct_nw_src", "NXM_NX_CT_NW_DST": "ct_nw_dst",
    "NXM_NX_CT_NW_PROTO": "ct_nw_proto", "NXM_NX_CT_TP_SRC": "ct_tp_src", "NXM_NX_CT_TP_DST": "ct_tp_dst",
    "NXM_NX_CT_IPV6_SRC": "ct_ipv6_src", "NXM_NX_CT_IPV6_DST": "ct_ipv6_dst",
    "OXM_OF_METADATA": "metadata", "OXM_OF_ETH_DST": "dl_dst", "OXM_OF_ETH_SRC": "dl_src",
    "OXM_OF_ETH_TYPE": "dl_type", "OXM_OF_VLAN_VID": "vlan_vid", "OXM_OF_VLAN_PCP": "vlan_pcp",
    "OXM_OF_IP_DSCP": "ip_dscp", "OXM_OF_IP_ECN": "nw_ecn", "OXM_OF_IP_PROTO": "nw_proto",
    "OXM_OF_IPV4_SRC": "nw_src", "OXM_OF_IPV4_DST": "nw_dst", "OXM_OF_TCP_SRC": "tcp_src",
    "OXM_OF_TCP_DST": "tcp_dst", "OXM_OF_UDP_SRC": "udp_src", "OXM_OF_UDP_DST": "udp_dst",
    "OXM_OF_ICMPV4_TYPE": "icmp_type", "OXM_OF_ICMPV4_CODE": "icmp_code",
    "OXM_OF_ARP_OP": "arp_op", "OXM_OF_ARP_SPA": "arp_spa", "OXM_OF_ARP_TPA": "arp_tpa",
    "OXM_OF_ARP_SHA": "arp_sha", "OXM_OF_ARP_THA": "arp_tha", "OXM_OF_IPV6_SRC": "ipv6_src",
    "OXM_OF_IPV6_DST": "ipv6_dst", "OXM_OF_IPV6_FLABEL": "ipv6_label",
    "OXM_OF_ICMPV6_TYPE": "icmpv6_type", "OXM_OF_ICMPV6_CODE": "icmpv6_code",
    "OXM_OF_TUNNEL_ID": "tun_id", "OXM_OF_SCTP_SRC": "sctp_src", "OXM_OF_SCTP_DST": "sctp_dst",
    **{f"NXM_NX_REG{n}": f"reg{n}" for n in range(16)},
    **{f"OXM_OF_PKT_REG{n}": f"xreg{n}" for n in range(8)},
    **{f"NXM_NX_XXREG{n}": f"xxreg{n}" for n in range(4)},
}


class Action:
    def __init__(self, name, arg, column):
        self.name, self.arg, self.column = name, arg, column

    def __repr__(self):
        return f"Action({self.name!r}, {self.arg!r})"

    def __eq__(self, other):
        return (self.name, self.arg) == (other.name, other.arg)


def _port(text):
    v, _ = values.integer(text, 16)
    if not 1 <= v < 0xFF00:
        raise ValueError(f"expected a port number 1..65279, got '{text}'")
    return v


def _table(text):
    v, m = values.integer(text, 8)
    if m != 0xFF or v > 254:
        raise ValueError(f"expected a table number 0..254, got '{text}'")
    return v


def _int(text, bits):
    v, m = values.integer(text, bits)
    if m != (1 << bits) - 1:
        raise ValueError("takes no mask")
    return v


def field_ref(text, write=False):
    """`NAME[a..b]`, `NAME[a]`, `NAME[]` or `NAME` -> (field name, first bit, bits)."""
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(?:(\d+)(?:\.\.(\d+))?)?\])?", text.strip())
    if not m:
        raise ValueError(f"expected a field like NXM_NX_REG0[0..15], got '{text}'")
    name = NXM.get(m.group(1), m.group(1))
    if name not in _F:
        raise ValueError(f"unknown field '{m.group(1)}'")
    segs, bits, _, writable = _F[name]
    if write and not writable:
        raise ValueError(f"field '{m.group(1)}' is read-only")
    lo = int(m.group(2)) if m.group(2) else 0
    hi = int(m.group(3)) if m.group(3) else (lo if m.group(2) else bits - 1)
    if not lo <= hi < bits:
        raise ValueError(f"bits [{lo}..{hi}] are outside the {bits}-bit field {m.group(1)}")
    return name, lo, hi - lo + 1


# set_field of these fields reaches the switch, in OpenFlow 1.0 (ovs-ofctl's choice unless a
# flow needs 1.1+), as the OpenFlow 1.0 action (mod_dl_src, mod_nw_dst, mod_tp_src, mod_vlan_vid,
# mod_vlan_pcp, mod_nw_tos; vlan_tci as mod_vlan_vid+mod_vlan_pcp, or strip_vlan without the CFI
# bit): ofp-actions.c set_field_to_legacy_openflow drops the mask, so OVS writes the WHOLE field
# with the value as written (`set_field:10.1.2.3/255.0.0.0->nw_dst` sets nw_dst to 10.1.2.3).
# Any other field goes as NXAST_REG_LOADs of the mask's bit runs: a true masked write.
OF10_WHOLE_FIELD = {"dl_src", "dl_dst", "eth_src", "eth_dst", "nw_src", "nw_dst", "ip_src", "ip_dst",
                    "tp_src", "tp_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst", "vlan_vid",
                    "vlan_pcp", "vlan_tci", "nw_tos", "ip_dscp"}
# fields whose set_field takes no /mask in OVS ("invalid mask for field ...", meta-flow MFM_NONE)
UNMASKABLE = {"in_port", "vlan_pcp", "nw_tos", "ip_dscp", "nw_ecn", "ip_ecn", "nw_ttl", "arp_op",
              "icmp_type", "icmp_code", "icmpv6_type", "icmpv6_code"}


def _set_value(text, name, bits):
    """A set_field value for `name` -> (value, mask) in member bits: what OVS writes."""
    value_text, slash, mask_text = text.partition("/")
    if slash and name in UNMASKABLE:
        raise ValueError(f"invalid mask for field {name}: set_field writes it whole")
    if name in ("dl_src", "dl_dst", "arp_sha", "arp_tha", "eth_src", "eth_dst"):
        v, m = values.mac(text)
        raw = values.mac(value_text)[0]
    elif name in ("nw_src", "nw_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst", "ip_src", "ip_dst"):
        v, m = values.ipv4(text)
        raw = values.ipv4(value_text)[0]
    elif name in ("ipv6_src", "ipv6_dst", "tun_ipv6_src", "tun_ipv6_dst"):
        v, m = values.ipv6(text)
        raw = values.ipv6(value_text)[0]
    else:
        v, m = values.integer(text, max(bits, 8))
        raw = values.number(value_text, max(bits, 8))
        m &= (1 << bits) - 1
        if raw >> bits:
            raise ValueError(f"value '{text}' does not fit the {bits}-bit field {name}")
    if name in OF10_WHOLE_FIELD:
        v, m = raw, (1 << bits) - 1
        if name == "vlan_tci" and not v & 0x1000:
            v = 0                      # no CFI bit: OpenFlow 1.0 strip_vlan
    return v, m


def _set_field(arg):
    if "->" not in arg:
        raise ValueError("expected set_field:VALUE[/MASK]->FIELD")
    value, dst = arg.rsplit("->", 1)
    name, lo, bits = field_ref(dst, write=True)
    if "[" in dst:
        raise ValueError("set_field takes a whole field (use load for bits)")
    v, m = _set_value(value.strip(), name, bits)
    return name, v, m


def _load(arg):
    if "->" not in arg:
        raise ValueError("expected load:VALUE->FIELD[a..b]")
    value, dst = arg.rsplit("->", 1)
    name, lo, bits = field_ref(dst, write=True)
    v, m = values.integer(value.strip(), 128)
    if v >> bits or m != (1 << 128) - 1:
        raise ValueError(f"value '{value}' does not fit {bits} bits")
    return name, v << lo, ((1 << bits) - 1) << lo


def _move(arg):
    if "->" not in arg:
        raise ValueError("expected move:SRC[a..b]->DST[c..d]")
    src, dst = arg.split("->", 1)
    s, d = field_ref(src), field_ref(dst, write=True)
    if s[2] != d[2]:
        raise ValueError(f"source has {s[2]} bits, destination {d[2]}")
    return s, d


def _masked_int(bits):
    def parse(text):
        return values.integer(text, bits)
    return parse


def _vid(text):
    v = _int(text, 16)
    if v > 4095:
        raise ValueError("expected a VLAN ID 0..4095")
    return v


def _pcp(text):
    v = _int(text, 8)
    if v > 7:
        raise ValueError("expected a VLAN priority 0..7")
    return v


def _tos(text):
    v = _int(text, 8)
    if v & 3:
        raise ValueError("expected a TOS with the low two (ECN) bits zero")
    return v


def _push_vlan(text):
    v = _int(text, 16)
    if v != 0x8100:
        raise ValueError("softdpu pushes 802.1Q tags only (push_vlan:0x8100)")
    return v


def _resubmit(text):
    if text.startswith("("):
        inner = text[1:-1] if text.endswith(")") else None
        if inner is None or inner.count(",") < 1:
            raise ValueError("expected resubmit(PORT,TABLE)")
        port, table = [t.strip() for t in inner.split(",")[:2]]
        p = -1 if port in ("", "in_port") else _port(port)
        t = -1 if table == "" else _table(table)
        return p, t
    return (-1 if text == "in_port" else _port(text)), -1


# action -> argument parser (None: no argument)
PARSERS = {
    "output": _port, "drop": None, "in_port": None, "normal": None, "flood": None, "all": None,
    "mod_vlan_vid": _vid, "mod_vlan_pcp": _pcp, "strip_vlan": None, "pop_vlan": None,
    "push_vlan": _push_vlan, "mod_dl_src": values.mac, "mod_dl_dst": values.mac,
    "mod_nw_src": values.ipv4, "mod_nw_dst": values.ipv4, "mod_nw_tos": _tos,
    "mod_nw_ttl": lambda t: _int(t, 8), "mod_tp_src": lambda t: _int(t, 16),
    "mod_tp_dst": lambda t: _int(t, 16), "dec_ttl": None, "set_field": _set_field, "load": _load,
    "move": _move, "set_tunnel": lambda t: _int(t, 64), "set_tunnel64": lambda t: _int(t, 64),
    "write_metadata": _masked_int(64), "resubmit": _resubmit, "goto_table": _table,
    "clear_actions": None, "ct_clear": None,
    "reject": None,      # softdpu only (flows/reject.py): Open vSwitch has no such action
}
# instructions, in the order OpenFlow requires them after the apply-actions list
INSTRUCTIONS = {"clear_actions": 1, "write_metadata": 2, "goto_table": 3}
NOT_YET = {"controller", "local", "enqueue", "set_queue", "learn",
           "conjunction", "note", "group", "write_actions", "meter", "exit", "multipath",
           "bundle", "sample", "push_mpls", "pop_mpls", "check_pkt_larger", "clone"}


def parse_action(text):
    """One action word -> Action name and parsed argument (ValueError when bad)."""
    name, sep, arg = re.match(r"([A-Za-z_][A-Za-z0-9_]*)?([:(]?)(.*)", text, re.S).groups()
    if name is None and text.isdigit():
        return "output", _port(text)
    if name == "resubmit" and sep == "(":
        return name, _resubmit("(" + arg)
    if name == "dec_ttl" and sep == "(":
        return name, None
    if name == "ct":
        if sep == ":":
            raise ValueError("expected ct or ct(ARGUMENTS)")
        return name, ct_syntax.parse(sep + arg)
    if name in PARSERS:
        parse = PARSERS[name]
        if parse is None:
            if sep or arg:
                raise ValueError(f"action '{name}' takes no argument")
            return name, None
        if sep != ":" or not arg:
            raise ValueError(f"expected {name}:<argument>")
        return name, parse(arg)
    if name in NOT_YET:
        raise ValueError(f"action '{name}' is not supported by softdpu yet")
    raise ValueError("unknown action; expected one of: " + ", ".join(PARSERS))


def check_order(actions):
    """OpenFlow's instruction order: apply-actions, clear_actions, write_metadata, goto_table;
    each instruction at most once.  -> None or the offending action and message."""
    last = 0
    for a in actions:
        rank = INSTRUCTIONS.get(a.name, 0)
        if rank == 0 and last:
            return a, f"'{a.name}' after an instruction ({_rank_name(last)}): instructions come last"
        if rank and rank <= last:
            return a, f"instruction '{a.name}' out of order or repeated (clear_actions, write_metadata, goto_table)"
        last = max(last, rank)
    return None


# actions OVS checks against the match only loosely in OpenFlow 1.0 ("inconsistent match":
# usable in OpenFlow 1.0 only) -> the prerequisite rule that makes them consistent
_OF10_LOOSE = {"mod_nw_src": "ipv4", "mod_nw_dst": "ipv4", "mod_nw_tos": "ip_any", "dec_ttl": "ip_any",
               "mod_tp_src": "l4_ports", "mod_tp_dst": "l4_ports"}
_OF11_ONLY = {"push_vlan"}


def check_consistency(actions, members):
    """What ovs-ofctl refuses about a whole action list, as (action, message) or None:
    an OpenFlow 1.1+ action (push_vlan) with an action that is only usable in OpenFlow
    1.0 for this match (OFPBAC_MATCH_INCONSISTENT), and more than two VLAN tags
    (OFPBAC_BAD_TAG)."""
    dl_type = members.get("dl_type", (0, 0))
    dl_type = dl_type[0] if dl_type[1] == 0xFFFF else None
    proto = members.get("nw_proto", (0, 0))
    proto = proto[0] if proto[1] == 0xFF else None
    ip_any = dl_type in (0x0800, 0x86DD)
    ok = {"ipv4": dl_type == 0x0800, "ip_any": ip_any, "l4_ports": ip_any and proto in (6, 17, 132)}
    if any(a.name in _OF11_ONLY for a in actions):
        for a in actions:
            if a.name in _OF10_LOOSE and not ok[_OF10_LOOSE[a.name]]:
                need = {"ipv4": "ip", "ip_any": "ip or ipv6", "l4_ports": "tcp, udp or sctp"}[_OF10_LOOSE[a.name]]
                return a, (f"'{a.name}' without {need} in the match works only in OpenFlow 1.0, and "
                           "push_vlan needs OpenFlow 1.1+ (Open vSwitch refuses the flow)")
    tci = members.get("vlan_tci", (0, 0))
    tags = 1 if tci[0] & tci[1] & 0x1000 else 0
    for a in actions:
        if a.name == "push_vlan" or (a.name in ("mod_vlan_vid", "mod_vlan_pcp") and tags == 0):
            tags += 1
            if tags > 2:
                return a, "a third VLAN tag: at most two (Open vSwitch: OFPBAC_BAD_TAG)"
        elif a.name in ("strip_vlan", "pop_vlan"):
            if tags == 0 and any(b.name in _OF11_ONLY for b in actions):
                return a, (f"'{a.name}' without a VLAN tag in the match works only in OpenFlow 1.0, "
                           "and push_vlan needs OpenFlow 1.1+ (Open vSwitch refuses the flow)")
            tags = max(tags - 1, 0)
    return None


def _rank_name(rank):
    return next(n for n, r in INSTRUCTIONS.items() if r == rank)


def check_prereq(action, members):
    """set_field/load/move on a field the match does not guarantee: OVS refuses the flow."""
    names = []
    if action.name == "ct":                     # OVS: ct needs the packet to be IP (OFPBAC_MATCH_INCONSISTENT)
        v, m = members.get("dl_type", (0, 0))
        if m != 0xFFFF or v not in (prereqs.IPV4, 0x86DD):
            return "prerequisites not met: ct needs ip or ipv6 in the match"
        return None
    if action.name == "mod_nw_ttl":             # OVS 3.x: a set_field of nw_ttl underneath
        names = ["nw_ttl"]
    elif action.name == "set_field":
        names = [action.arg[0]]
    elif action.name == "load":
        names = [action.arg[0]]
    elif action.name == "move":
        names = [action.arg[0][0], action.arg[1][0]]
    for n in names:
        rule = _F[n][2]
        if rule in ("ipv4", "icmpv4"):   # stricter for actions than for matches, as OVS
            v, m = members.get("dl_type", (0, 0))
            pv, pm = members.get("nw_proto", (0, 0))
            if not (m == 0xFFFF and v == prereqs.IPV4 and (rule == "ipv4" or (pm == 0xFF and pv == 1))):
                return (f"prerequisites not met: {n} needs "
                        + ("ip (dl_type=0x0800)" if rule == "ipv4" else "icmp") + " in the match")
            continue
        if rule == "vlan":
            v, m = members.get("vlan_tci", (0, 0))
            if not v & m & 0x1000:
                return f"prerequisites not met: {n} needs a VLAN tag in the match (e.g. dl_vlan=N or vlan_tci=0x1000/0x1000)"
            continue
        problem = prereqs.check(rule, n, members)
        if problem:
            return problem
    return None


def needs_openflow11(rules):
    """Does ovs-ofctl need OpenFlow 1.1+ for this set of flows (so uses it for all of them)?

    push_vlan; and write_metadata with goto_table, which OpenFlow 1.0 sends as an action
    followed by a resubmit (OFPBAC_UNSUPPORTED_ORDER: the harness then retries in 1.1+)."""
    return any(any(a.name in _OF11_ONLY for a in r.actions)
               or {"write_metadata", "goto_table"} <= {a.name for a in r.actions} for r in rules)


def vlan_in_match(members):
    v, m = members.get("vlan_tci", (0, 0))
    return bool(v & m & 0x1000)


def max_outputs(actions):
    return sum(a.name in ("output", "in_port", "normal", "flood", "all", "reject") for a in actions)


def referenced_tables(actions):
    return [a.arg for a in actions if a.name == "goto_table"]


__all__ = ["Action", "parse_action", "encode", "check_order", "check_prereq", "fields"]
