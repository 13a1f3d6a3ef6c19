"""The match side of a flow line: every ovs-ofctl match keyword softdpu knows,
and how its value lands in the flow key (softdpu.key), with Open vSwitch's
semantics (ovs-fields(7), lib/meta-flow.c).

A keyword sets bits of one Open vSwitch flow *member* (struct flow: vlan_tci,
nw_tos, tp_src, ...).  Several keywords share a member: dl_vlan, dl_vlan_pcp
and vlan_tci all set vlan_tci; icmp_type, tp_src and tcp_src all set tp_src;
arp_op and nw_proto both set nw_proto; nw_tos and nw_ecn split the TOS byte.
`Match` collects a line's keywords as pieces (member, value, mask), refuses
two keywords that set the same bits (ovs-ofctl silently keeps the last one),
checks prerequisites (prereqs.py) and places the members into key fields:

  keyword                          member: value / mask
  dl_vlan=N   (N < 4096)           vlan_tci: 0x1000|N / 0x1fff
  dl_vlan=0xffff                   vlan_tci: 0 / 0xffff          (no tag)
  dl_vlan_pcp=P, vlan_pcp=P        vlan_tci: P<<13|0x1000 / 0xf000
  vlan_vid=V[/M]  (OpenFlow 1.2)   vlan_tci: V / M, within 0x1fff (0x1000: tag present)
  nw_tos=T    (T & 3 == 0)         nw_tos: T / 0xfc              (the DSCP bits of the TOS byte)
  ip_dscp=D                        nw_tos: D<<2 / 0xfc
  nw_ecn=E, ip_ecn=E               nw_tos: E / 0x03
  icmp_type, icmpv6_type           tp_src (8-bit value, mask 0xffff); the codes: tp_dst
  arp_op=N    (N < 256)            nw_proto, as OVS; placed in the key's 16-bit arp_op
  nw_src/dst in an ARP flow        arp_spa/tpa (the same key fields)
  xregN                            reg(2N) high word, reg(2N+1) low word; xxregN: four
  ip, tcp, ... shorthands          dl_type (and nw_proto), as implied pieces

Implied pieces (a shorthand's dl_type/nw_proto, the tag-present bit that
dl_vlan_pcp sets) may repeat what another keyword says (`ip,dl_type=0x0800`,
`dl_vlan=5,dl_vlan_pcp=3`) but never contradict it (`tcp,udp`).  `field=*`
and an all-zero mask match anything; such a keyword still counts as set.

Key placement: nw_proto in an ARP/RARP flow goes to the key's arp_op (the
16-bit opcode the parser stores; OVS keeps only opcodes < 256 and so does
arp_op=N here), ipv6_src/dst and ct_label to their _hi/_lo words.
"""
import difflib
from typing import Callable, NamedTuple

from softdpu.stages.flows import prereqs, values

ETH_ARP, ETH_RARP = 0x0806, 0x8035


class MatchError(ValueError):
    """A bad match keyword: the column (0-based) and token to report, and why."""

    def __init__(self, column, token, message):
        super().__init__(message)
        self.column, self.token = column, token


class Spec(NamedTuple):
    member: str            # the OVS flow member it sets (the first, for xregN)
    parse: Callable        # value text -> [(member, value, mask, claim, implied)]
    prereq: str            # a prereqs.RULES key
    claim: int             # the member bits the keyword addresses (for `field=*`)
    wide: tuple = ()       # xregN / xxregN: every register member it sets


def _spec(member, parse, prereq="none", claim=None, wide=()):
    return Spec(member, parse, prereq, (1 << MEMBERS[member]) - 1 if claim is None else claim, wide)


# Width of each OVS flow member, in bits.
MEMBERS = {
    "in_port": 16, "dl_src": 48, "dl_dst": 48, "dl_type": 16, "vlan_tci": 16,
    "nw_src": 32, "nw_dst": 32, "ipv6_src": 128, "ipv6_dst": 128, "ipv6_label": 20,
    "nw_proto": 8, "nw_tos": 8, "nw_ttl": 8, "nw_frag": 2, "tp_src": 16, "tp_dst": 16,
    "tcp_flags": 12, "arp_sha": 48, "arp_tha": 48,
    "ct_state": 8, "ct_zone": 16, "ct_mark": 32, "ct_label": 128,
    "tun_id": 64, "tun_src": 32, "tun_dst": 32, "metadata": 64,
    **{f"tun_metadata{i}": 64 for i in range(4)},
    "tun_ipv6_src": 128, "tun_ipv6_dst": 128,
    "ct_nw_src": 32, "ct_nw_dst": 32, "ct_ipv6_src": 128, "ct_ipv6_dst": 128, "ct_nw_proto": 8,
    "ct_tp_src": 16, "ct_tp_dst": 16,
    **{f"reg{i}": 32 for i in range(16)},
}

TCP_FLAGS = {"fin": 0x001, "syn": 0x002, "rst": 0x004, "psh": 0x008, "ack": 0x010, "urg": 0x020,
             "ece": 0x040, "cwr": 0x080, "ns": 0x100, "[200]": 0x200, "[400]": 0x400, "[800]": 0x800}
CT_STATE = {"new": 0x01, "est": 0x02, "rel": 0x04, "rpl": 0x08, "inv": 0x10, "trk": 0x20,
            "snat": 0x40, "dnat": 0x80}


def _full(member):
    return (1 << MEMBERS[member]) - 1


def _one(member, value, mask, claim=None):
    """One explicit piece; by default it claims the bits of its mask (all of the
    member's bits when the mask is zero, so `field=*` still conflicts)."""
    if claim is None:
        claim = mask if mask else _full(member)
    return [(member, value & mask, mask, claim, False)]


def _bitwise(member, parse_width=None):
    """A maskable integer field.  ovs-ofctl reads the value in the field's whole
    bytes (parse_width); a value beyond the member's bits is refused, mask bits
    beyond them mean nothing and are dropped."""
    width = MEMBERS[member]
    pw = parse_width or width

    def parse(text):
        v, m = values.integer(text, pw)
        if v >> width:
            raise ValueError(f"expected a value that fits in {width} bits, got '{text}'")
        return _one(member, v, m & _full(member))
    return parse


def _exact(member, bits=None, convert=None):
    """A field OVS does not let be masked: only an all-ones (or all-zero) mask."""
    width = bits or MEMBERS[member]

    def parse(text):
        v, m = values.integer(text, width)
        if m not in (0, (1 << width) - 1):
            raise ValueError("this field takes no mask")
        if m == 0:
            return _one(member, 0, 0)
        return convert(v) if convert else _one(member, v, _full(member))
    return parse


def _addr(member, parse_value):
    return lambda text: _one(member, *parse_value(text))


def _in_port(text):
    if "/" in text:
        raise ValueError("in_port takes no mask")
    return _one("in_port", values.port(text), 0xFFFF)


def _dl_vlan(v):
    if v == 0xFFFF:                                  # OFP_VLAN_NONE: no 802.1Q header
        return _one("vlan_tci", 0, 0xFFFF)
    if v > 0xFFF:
        raise ValueError(f"expected a VLAN ID 0..4095, or 0xffff for no VLAN tag, got {v:#x}")
    return _one("vlan_tci", 0x1000 | v, 0x1FFF)


def _vlan_pcp(v):
    if v > 7:
        raise ValueError(f"expected a VLAN priority 0..7, got {v}")
    return [("vlan_tci", v << 13, 0xE000, 0xE000, False), ("vlan_tci", 0x1000, 0x1000, 0x1000, True)]


def _vlan_vid(text):
    v, m = values.integer(text, 16)
    if v > 0x1FFF:
        raise ValueError("expected a VLAN ID 0..4095, plus 0x1000 when a tag must be present "
                         f"(OpenFlow 1.2 vlan_vid), got '{text}'")
    return _one("vlan_tci", v, m & 0x1FFF)


def _nw_tos(v):
    if v & 3:
        raise ValueError(f"nw_tos is the DSCP part of the TOS byte: its low 2 bits must be 0 "
                         f"(use nw_ecn for those), got {v}")
    return _one("nw_tos", v, 0xFC)


def _ip_dscp(v):
    if v > 63:
        raise ValueError(f"expected a DSCP value 0..63, got {v}")
    return _one("nw_tos", v << 2, 0xFC)


def _nw_ecn(v):
    if v > 3:
        raise ValueError(f"expected an ECN value 0..3, got {v}")
    return _one("nw_tos", v, 0x03)


def _arp_op(v):
    if v > 255:
        raise ValueError(f"expected an ARP opcode 0..255 (Open vSwitch matches only those), got {v}")
    return _one("nw_proto", v, 0xFF)


def _icmp(member):
    return _exact(member, 8, lambda v: _one(member, v, 0xFFFF))


def _frag(text):
    return _one("nw_frag", *values.frag(text))


def _flags(member, names):
    return lambda text: _one(member, *values.flags(text, names, MEMBERS[member], member))


def _wide(members):
    """xregN / xxregN: several 32-bit registers read as one big-endian integer."""
    bits = 32 * len(members)

    def parse(text):
        v, m = values.integer(text, bits)
        pieces = []
        for k, reg in enumerate(members):
            shift = 32 * (len(members) - 1 - k)
            pieces += _one(reg, (v >> shift) & 0xFFFFFFFF, (m >> shift) & 0xFFFFFFFF,
                           claim=0xFFFFFFFF)
        return pieces
    return parse


def _shorthand(dl_type, nw_proto=None):
    pieces = [("dl_type", dl_type, 0xFFFF, 0xFFFF, True)]
    if nw_proto is not None:
        pieces.append(("nw_proto", nw_proto, 0xFF, 0xFF, True))
    return pieces


# Protocol shorthands (ovs-ofctl's ofp_parse_protocol): name -> implied pieces.
SHORTHANDS = {
    "ip": _shorthand(0x0800), "ipv4": _shorthand(0x0800), "ip4": _shorthand(0x0800),
    "icmp": _shorthand(0x0800, 1), "tcp": _shorthand(0x0800, 6), "udp": _shorthand(0x0800, 17),
    "sctp": _shorthand(0x0800, 132),
    "ipv6": _shorthand(0x86DD), "ip6": _shorthand(0x86DD), "icmp6": _shorthand(0x86DD, 58),
    "tcp6": _shorthand(0x86DD, 6), "udp6": _shorthand(0x86DD, 17), "sctp6": _shorthand(0x86DD, 132),
    "arp": _shorthand(ETH_ARP), "rarp": _shorthand(ETH_RARP),
    "mpls": _shorthand(0x8847), "mplsm": _shorthand(0x8848),
}

FIELDS = {
    "in_port": _spec("in_port", _in_port),
    "in_port_oxm": _spec("in_port", _in_port),
    "dl_src": _spec("dl_src", _addr("dl_src", values.mac)),
    "dl_dst": _spec("dl_dst", _addr("dl_dst", values.mac)),
    "dl_type": _spec("dl_type", _exact("dl_type")),
    "vlan_tci": _spec("vlan_tci", _bitwise("vlan_tci")),
    "dl_vlan": _spec("vlan_tci", _exact("vlan_tci", 16, _dl_vlan), claim=0x1FFF),
    "dl_vlan_pcp": _spec("vlan_tci", _exact("vlan_tci", 8, _vlan_pcp), claim=0xE000),
    "vlan_vid": _spec("vlan_tci", _vlan_vid, claim=0x1FFF),
    "vlan_pcp": _spec("vlan_tci", _exact("vlan_tci", 8, _vlan_pcp), claim=0xE000),
    "nw_src": _spec("nw_src", _addr("nw_src", values.ipv4), "ipv4_or_arp"),
    "nw_dst": _spec("nw_dst", _addr("nw_dst", values.ipv4), "ipv4_or_arp"),
    "arp_spa": _spec("nw_src", _addr("nw_src", values.ipv4), "arp"),
    "arp_tpa": _spec("nw_dst", _addr("nw_dst", values.ipv4), "arp"),
    "arp_sha": _spec("arp_sha", _addr("arp_sha", values.mac), "arp"),
    "arp_tha": _spec("arp_tha", _addr("arp_tha", values.mac), "arp"),
    "arp_op": _spec("nw_proto", _exact("nw_proto", 16, _arp_op), "arp"),
    "ipv6_src": _spec("ipv6_src", _addr("ipv6_src", values.ipv6), "ipv6"),
    "ipv6_dst": _spec("ipv6_dst", _addr("ipv6_dst", values.ipv6), "ipv6"),
    "ipv6_label": _spec("ipv6_label", _bitwise("ipv6_label", 32), "ipv6"),
    "nw_proto": _spec("nw_proto", _exact("nw_proto"), "ip_any_or_arp"),
    "nw_tos": _spec("nw_tos", _exact("nw_tos", 8, _nw_tos), "ip_any", claim=0xFC),
    "ip_dscp": _spec("nw_tos", _exact("nw_tos", 8, _ip_dscp), "ip_any", claim=0xFC),
    "nw_ecn": _spec("nw_tos", _exact("nw_tos", 8, _nw_ecn), "ip_any", claim=0x03),
    "nw_ttl": _spec("nw_ttl", _exact("nw_ttl"), "ip_any"),
    "nw_frag": _spec("nw_frag", _frag, "ip_any"),
    "tp_src": _spec("tp_src", _bitwise("tp_src"), "l4"),
    "tp_dst": _spec("tp_dst", _bitwise("tp_dst"), "l4"),
    "tcp_src": _spec("tp_src", _bitwise("tp_src"), "tcp"),
    "tcp_dst": _spec("tp_dst", _bitwise("tp_dst"), "tcp"),
    "udp_src": _spec("tp_src", _bitwise("tp_src"), "udp"),
    "udp_dst": _spec("tp_dst", _bitwise("tp_dst"), "udp"),
    "sctp_src": _spec("tp_src", _bitwise("tp_src"), "sctp"),
    "sctp_dst": _spec("tp_dst", _bitwise("tp_dst"), "sctp"),
    "tcp_flags": _spec("tcp_flags", _flags("tcp_flags", TCP_FLAGS), "tcp"),
    "icmp_type": _spec("tp_src", _icmp("tp_src"), "icmp_any"),
    "icmp_code": _spec("tp_dst", _icmp("tp_dst"), "icmp_any"),
    "icmpv6_type": _spec("tp_src", _icmp("tp_src"), "icmpv6"),
    "icmpv6_code": _spec("tp_dst", _icmp("tp_dst"), "icmpv6"),
    "ct_state": _spec("ct_state", _flags("ct_state", CT_STATE)),
    "ct_zone": _spec("ct_zone", _exact("ct_zone")),
    "ct_mark": _spec("ct_mark", _bitwise("ct_mark")),
    "ct_label": _spec("ct_label", _bitwise("ct_label")),
    "tun_id": _spec("tun_id", _bitwise("tun_id")),
    "tun_src": _spec("tun_src", _addr("tun_src", values.ipv4)),
    "tun_dst": _spec("tun_dst", _addr("tun_dst", values.ipv4)),
    **{f"tun_metadata{i}": _spec(f"tun_metadata{i}", _bitwise(f"tun_metadata{i}")) for i in range(4)},
    "tun_ipv6_src": _spec("tun_ipv6_src", _addr("tun_ipv6_src", values.ipv6)),
    "ct_nw_src": _spec("ct_nw_src", _addr("ct_nw_src", values.ipv4), "ct_ipv4"),
    "ct_nw_dst": _spec("ct_nw_dst", _addr("ct_nw_dst", values.ipv4), "ct_ipv4"),
    "ct_ipv6_src": _spec("ct_ipv6_src", _addr("ct_ipv6_src", values.ipv6), "ct_ipv6"),
    "ct_ipv6_dst": _spec("ct_ipv6_dst", _addr("ct_ipv6_dst", values.ipv6), "ct_ipv6"),
    "ct_nw_proto": _spec("ct_nw_proto", _exact("ct_nw_proto"), "ct_ip"),
    "ct_tp_src": _spec("ct_tp_src", _bitwise("ct_tp_src"), "ct_l4"),
    "ct_tp_dst": _spec("ct_tp_dst", _bitwise("ct_tp_dst"), "ct_l4"),
    "tun_ipv6_dst": _spec("tun_ipv6_dst", _addr("tun_ipv6_dst", values.ipv6)),
    "metadata": _spec("metadata", _bitwise("metadata")),
    **{f"reg{i}": _spec(f"reg{i}", _bitwise(f"reg{i}")) for i in range(16)},
    **{f"xreg{i}": _spec(f"reg{2 * i}", _wide(regs), wide=regs)
       for i in range(8) for regs in [(f"reg{2 * i}", f"reg{2 * i + 1}")]},
    **{f"xxreg{i}": _spec(f"reg{4 * i}", _wide(regs), wide=regs)
       for i in range(4) for regs in [tuple(f"reg{4 * i + k}" for k in range(4))]},
}
# Other names ovs-ofctl accepts for the same fields (meta-flow.h "extra" names).
ALIASES = {"eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type", "ip_src": "nw_src",
           "ip_dst": "nw_dst", "ip_proto": "nw_proto", "ip_ecn": "nw_ecn", "ip_frag": "nw_frag",
           "tunnel_id": "tun_id"}
FIELDS.update({alias: FIELDS[name] for alias, name in ALIASES.items()})

# For messages: every keyword, registers abbreviated.
NAMES = [n for n in FIELDS if not n.lstrip("x").startswith("reg")] + [
    "reg0..reg15", "xreg0..xreg7", "xxreg0..xxreg3"]

# Match keywords Open vSwitch has that softdpu does not match on yet.
NOT_YET = {
    "dp_hash", "recirc_id", "packet_type", "conj_id", "eth",
    "tun_flags", "tun_ttl", "tun_tos", "tun_gbp_id", "tun_gbp_flags", "tun_erspan_idx",
    "tun_erspan_ver", "tun_erspan_dir", "tun_erspan_hwid", "tun_gtpu_flags", "tun_gtpu_msgtype",
    *[f"tun_metadata{i}" for i in range(4, 64)], "actset_output", "skb_priority", "pkt_mark",
    "mpls_label", "mpls_tc", "mpls_bos", "mpls_ttl", "nd_target", "nd_sll", "nd_tll", "nd_reserved",
    "nd_options_type", "nsh_flags", "nsh_mdtype", "nsh_np", "nsh_spi", "nsp", "nsh_si", "nsi",
    "nsh_ttl", "nsh_c1", "nsh_c2", "nsh_c3", "nsh_c4",
}

# 128-bit members -> their (high, low) 64-bit key fields
_SPLIT = {"ipv6_src": ("ipv6_src_hi", "ipv6_src_lo"), "ipv6_dst": ("ipv6_dst_hi", "ipv6_dst_lo"),
          "ct_label": ("ct_label_hi", "ct_label_lo"),
          "tun_ipv6_src": ("tun_ipv6_src_hi", "tun_ipv6_src_lo"),
          "tun_ipv6_dst": ("tun_ipv6_dst_hi", "tun_ipv6_dst_lo"),
          "ct_ipv6_src": ("ct_ipv6_src_hi", "ct_ipv6_src_lo"),
          "ct_ipv6_dst": ("ct_ipv6_dst_hi", "ct_ipv6_dst_lo")}


def known(name):
    """A match keyword softdpu supports (a field or a protocol shorthand)."""
    return name in FIELDS or name in SHORTHANDS


def suggest(name):
    """' (did you mean X?)' for a near miss, else ''."""
    close = difflib.get_close_matches(name, [*FIELDS, *SHORTHANDS], n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Match:
    """The match keywords of one flow line, checked and placed into key fields."""

    def __init__(self):
        self.pieces = []          # (member, value, mask, claim, implied, keyword)
        self.names = {}           # keyword -> (token, column), in line order

    def add(self, name, text, token, column):
        """One keyword: `name` (a FIELDS or SHORTHANDS name), its value text (None
        for a bare word), the whole token and its 0-based column, for errors."""
        def fail(message):
            return MatchError(column, token, message)
        if name in self.names:
            raise fail(f"field {name} given twice")
        if name in SHORTHANDS:
            if text is not None:
                raise fail(f"'{name}' is a protocol shorthand and takes no value")
            new = SHORTHANDS[name]
        elif text is None:
            raise fail(f"expected {name}=<value>")
        else:
            try:
                new = _pieces(FIELDS[name], text)
            except ValueError as e:
                raise fail(str(e)) from None
        for member, value, mask, claim, implied in new:
            for m, v, k, c, i, other in self.pieces:
                if m == member:
                    if _clash((value, mask, claim, implied), (v, k, c, i)):
                        raise fail(_clash_message(name, other, member, implied or i))
        self.names[name] = (token, column)
        self.pieces += [(*p, name) for p in new]

    def members(self):
        """OVS flow member -> (value, mask), over every keyword."""
        out = {}
        for m, v, k, *_ in self.pieces:
            ov, ok = out.get(m, (0, 0))
            out[m] = (ov | v, ok | k)
        return out

    def finish(self, check_prerequisites=True):
        """Check prerequisites; -> {key field: (value, mask)} (softdpu.key names)."""
        members = self.members()
        if check_prerequisites:
            for name, (token, column) in self.names.items():
                if name in SHORTHANDS or not any(p[2] for p in self.pieces if p[5] == name):
                    continue                              # `field=*` needs nothing
                problem = (prereqs.check(FIELDS[name].prereq, name, members)
                           or prereqs.check_icmp_value(FIELDS[name].member, name, members))
                if problem:
                    raise MatchError(column, token, problem)
        return place(members)


def _pieces(spec, text):
    """A keyword's pieces.  `*` and all-zero masks match anything but still
    claim the bits the keyword addresses; they imply nothing."""
    wild = [(m, spec.claim if not spec.wide else (1 << MEMBERS[m]) - 1)
            for m in (spec.wide or (spec.member,))]
    if text == "*":                                       # ovs-ofctl: any value
        return [(m, 0, 0, c, False) for m, c in wild]
    pieces = spec.parse(text)
    if any(p[2] for p in pieces if not p[4]):
        return pieces
    return [(m, 0, 0, c, False) for m, c in wild]


def _clash_message(name, other, member, implied):
    if implied:
        return f"{name} contradicts {other}, earlier on the line: they need different {member} values"
    return (f"{name} sets the same bits of {member} as {other}, earlier on the line "
            "(give each field once)")


def _clash(new, old):
    """True when two pieces on one member cannot both stand."""
    (va, ka, ca, ia), (vb, kb, cb, ib) = new, old
    if not ia and not ib:
        return bool(ca & cb)
    # an implied piece must agree with whatever the other says about its bits
    if ia and ib:
        bits = ka & kb
    elif ia:
        bits = ka & (cb | kb)
    else:
        bits = kb & (ca | ka)
    return bool(bits & ~ka or bits & ~kb or (va ^ vb) & bits)


def place(members):
    """OVS flow members -> {softdpu key field: (value, mask)}, masks never zero."""
    key = {}
    dl_type = members.get("dl_type", (0, 0))
    is_arp = dl_type[1] == 0xFFFF and dl_type[0] in (ETH_ARP, ETH_RARP)
    for member, (v, m) in members.items():
        if not m:
            continue
        if member in _SPLIT:
            hi, lo = _SPLIT[member]
            for name, shift in ((hi, 64), (lo, 0)):
                part_m = (m >> shift) & ((1 << 64) - 1)
                if part_m:
                    key[name] = ((v >> shift) & part_m, part_m)
        elif member == "nw_proto" and is_arp:
            key["arp_op"] = (v, 0xFFFF if m == 0xFF else m)   # the opcode, as OVS: < 256
        else:
            key[member] = (v, m)
    return key
