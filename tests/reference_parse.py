"""A small plain-Python parser with the parse stage's semantics, for differential tests.

Written straight from the rules in softdpu/stages/parse.py's docstring, with
struct and Python ints and no numba, so the kernel can be compared against it
on whole corpora, truncations and fuzz.  `parse(frame)` returns a Parsed with
the drop code, flags, offsets relative to the frame start (None = absent)
and the key fields by name; `key_words()` packs them with softdpu.key's layout.
"""
import struct
from dataclasses import dataclass, field

from softdpu import drops
from softdpu.key import FIELDS, KEY_WORDS
from softdpu.stages import parse as P

EXT_HEADERS = (0, 43, 44, 51, 60)


@dataclass
class Parsed:
    code: int = 0
    flags: int = 0
    l3: int | None = None
    l4: int | None = None
    l5: int | None = None
    fields: dict = field(default_factory=dict)

    def key_words(self):
        words = [0] * KEY_WORDS
        for name, value in self.fields.items():
            if name in ("ipv6_src", "ipv6_dst"):
                w = 5 if name == "ipv6_src" else 7
                words[w] |= value >> 64
                words[w + 1] |= value & (2**64 - 1)
                continue
            f = FIELDS[name]
            assert 0 <= value < 1 << f.bits, (name, value)
            words[f.word] |= value << f.shift
        return words


class _Stop(Exception):
    def __init__(self, code):
        self.code = code


def parse(frame, in_port=0):
    """Parse one frame (bytes) -> Parsed."""
    out = Parsed()
    out.fields["in_port"] = in_port & 0xFFFFFFFF
    try:
        _parse(bytes(frame), out)
    except _Stop as stop:
        out.code = stop.code
    return out


def _parse(buf, out):
    f = out.fields
    if len(buf) < 14:
        raise _Stop(drops.PARSE_TRUNC_L2)
    f["dl_dst"] = int.from_bytes(buf[0:6], "big")
    f["dl_src"] = int.from_bytes(buf[6:12], "big")
    pos = 12
    tags = []
    while len(tags) < 2 and struct.unpack_from("!H", buf, pos)[0] in (0x8100, 0x88A8):
        out.flags |= P.F_VLAN if not tags else P.F_QINQ
        if len(buf) < pos + 6:
            raise _Stop(drops.PARSE_TRUNC_VLAN)
        tags.append(struct.unpack_from("!H", buf, pos + 2)[0] | 0x1000)
        pos += 4
    if tags:
        f["vlan_tci"] = tags[0]
    if len(tags) == 2:
        f["vlan_tci2"] = tags[1]
    dl_type = struct.unpack_from("!H", buf, pos)[0]
    l3 = pos + 2
    if dl_type < 0x600:
        out.flags |= P.F_LLC
        snap = buf[l3:l3 + 8]
        if len(snap) == 8 and snap[:6] == b"\xaa\xaa\x03\x00\x00\x00" and \
                int.from_bytes(snap[6:], "big") >= 0x600:
            dl_type = int.from_bytes(snap[6:], "big")
            l3 += 8
        else:
            dl_type = 0x05FF
    f["dl_type"] = dl_type
    out.l3 = l3
    if dl_type in (0x0806, 0x8035):
        out.flags |= P.F_ARP
        _arp(buf, l3, f)
    elif dl_type == 0x0800:
        _ip(buf, l3, out, v6=False)
    elif dl_type == 0x86DD:
        _ip(buf, l3, out, v6=True)


def _arp(buf, l3, f):
    hdr = buf[l3:l3 + 28]
    if len(hdr) < 28 or hdr[:6] != b"\x00\x01\x08\x00\x06\x04":
        raise _Stop(drops.PARSE_TRUNC_ARP)
    op = int.from_bytes(hdr[6:8], "big")
    f.update(arp_op=op, nw_proto=op & 0xFF,
             arp_sha=int.from_bytes(hdr[8:14], "big"), nw_src=int.from_bytes(hdr[14:18], "big"),
             arp_tha=int.from_bytes(hdr[18:24], "big"), nw_dst=int.from_bytes(hdr[24:28], "big"))


def _ip(buf, l3, out, v6):
    f = out.fields
    if v6:
        if len(buf) < l3 + 40:
            raise _Stop(drops.PARSE_TRUNC_IP)
        if buf[l3] >> 4 != 6:
            raise _Stop(drops.PARSE_BAD_IP_VERSION)
        ip_end = l3 + 40 + struct.unpack_from("!H", buf, l3 + 4)[0]
        if ip_end > len(buf):
            raise _Stop(drops.PARSE_BAD_IP_LEN)
        out.flags |= P.F_IPV6
        first = struct.unpack_from("!I", buf, l3)[0]
        f.update(nw_tos=(first >> 20) & 0xFF, ipv6_label=first & 0xFFFFF, nw_ttl=buf[l3 + 7],
                 ipv6_src=int.from_bytes(buf[l3 + 8:l3 + 24], "big"),
                 ipv6_dst=int.from_bytes(buf[l3 + 24:l3 + 40], "big"))
        proto, l4, frag = _ipv6_chain(buf, l3 + 40, ip_end, buf[l3 + 6], out)
    else:
        if len(buf) < l3 + 20:
            raise _Stop(drops.PARSE_TRUNC_IP)
        if buf[l3] >> 4 != 4:
            raise _Stop(drops.PARSE_BAD_IP_VERSION)
        ihl = (buf[l3] & 15) * 4
        if ihl < 20 or l3 + ihl > len(buf):
            raise _Stop(drops.PARSE_BAD_IHL)
        total = struct.unpack_from("!H", buf, l3 + 2)[0]
        if total < ihl or l3 + total > len(buf):
            raise _Stop(drops.PARSE_BAD_IP_LEN)
        out.flags |= P.F_IPV4 | (P.F_IP_OPTIONS if ihl > 20 else 0)
        ip_end = l3 + total
        fragword = struct.unpack_from("!H", buf, l3 + 6)[0]
        mf, offset = bool(fragword & 0x2000), fragword & 0x1FFF
        frag = (1 if (mf or offset) else 0) | (2 if offset else 0)
        proto, l4 = buf[l3 + 9], l3 + ihl
        f.update(nw_tos=buf[l3 + 1], nw_ttl=buf[l3 + 8],
                 nw_src=int.from_bytes(buf[l3 + 12:l3 + 16], "big"),
                 nw_dst=int.from_bytes(buf[l3 + 16:l3 + 20], "big"))
    if frag:
        out.flags |= P.F_FRAG | (P.F_FRAG_LATER if frag & 2 else 0)
    f.update(nw_proto=proto, nw_frag=frag)
    if ip_end < len(buf):
        out.flags |= P.F_L2_PAD
    if frag & 2:
        return
    out.l4 = l4
    _l4(buf, l4, ip_end, proto, frag, v6, out)
    if frag:  # OVS's "normal" fragment handling: fragments are looked up with ports 0
        out.fields.update(tp_src=0, tp_dst=0)


def _ipv6_chain(buf, pos, ip_end, nh, out):
    frag = 0
    count = 0
    while nh in EXT_HEADERS:
        out.flags |= P.F_IP6_EXT
        count += 1
        if count > 8 or pos + 8 > ip_end:
            raise _Stop(drops.PARSE_TRUNC_IP6_EXT)
        if nh == 44:
            nh = buf[pos]
            offlg = struct.unpack_from("!H", buf, pos + 2)[0]
            pos += 8
            if offlg:
                frag = 1
                if offlg & 0xFFF8:
                    return 44, pos, 3
            continue
        size = (buf[pos + 1] + 2) * 4 if nh == 51 else (buf[pos + 1] + 1) * 8
        if pos + size > ip_end:
            raise _Stop(drops.PARSE_TRUNC_IP6_EXT)
        nh = buf[pos]
        pos += size
    return nh, pos, frag


def _l4(buf, l4, ip_end, proto, frag, v6, out):
    f = out.fields
    seg = buf[l4:ip_end]

    def short(code):
        if not frag:       # a first fragment is allowed to be short
            raise _Stop(code)

    if proto == 6:
        if len(seg) < 20:
            return short(drops.PARSE_TRUNC_L4)
        out.flags |= P.F_TCP
        sport, dport, _, _, offflags = struct.unpack_from("!HHIIH", seg)
        f.update(tp_src=sport, tp_dst=dport, tcp_flags=offflags & 0xFFF)
        doff = (offflags >> 12) * 4
        if doff < 20 or doff > len(seg):
            return short(drops.PARSE_BAD_TCP_OFF)
        out.l5 = l4 + doff
    elif proto == 17:
        if len(seg) < 8:
            return short(drops.PARSE_TRUNC_L4)
        out.flags |= P.F_UDP
        sport, dport, ulen = struct.unpack_from("!HHH", seg)
        f.update(tp_src=sport, tp_dst=dport)
        out.l5 = l4 + 8
        if frag:
            return
        if not 8 <= ulen <= len(seg):
            out.l5 = None
            raise _Stop(drops.PARSE_BAD_UDP_LEN)
        payload = seg[8:ulen]
        if dport == 4789 and len(payload) >= 8:
            out.flags |= P.F_VXLAN
        elif dport == 6081 and len(payload) >= 8:
            out.flags |= P.F_GENEVE
        elif 4500 in (sport, dport) and dport not in (4789, 6081):
            if payload == b"\xff":
                out.flags |= P.F_NATT_KEEPALIVE
            elif len(payload) >= 4 and payload[:4] == bytes(4):
                out.flags |= P.F_IKE_NATT
            elif len(payload) >= 8:
                out.flags |= P.F_ESP | P.F_ESP_NATT
    elif proto == (58 if v6 else 1):
        if len(seg) < 8:
            return short(drops.PARSE_TRUNC_L4)
        out.flags |= P.F_ICMP6 if v6 else P.F_ICMP
        f.update(tp_src=seg[0], tp_dst=seg[1])
        out.l5 = l4 + 8
    elif proto == 50 and not frag and len(seg) >= 8:
        out.flags |= P.F_ESP
        out.l5 = l4
