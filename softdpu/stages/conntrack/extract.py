"""The connection key of a packet, read from its bytes, as OVS's conn_key_extract.

`extract(data, meta, row, check_csum)` returns

  (reason, v6, proto, s_hi, s_lo, d_hi, d_lo, s_port, d_port, related, l3, l4, ip_end)

reason 0 = a key was extracted, else an R_* code (the packet is +inv).  The
packet's source endpoint is (s_hi:s_lo, s_port), its destination (d_hi:d_lo,
d_port) — IPv4 addresses in the low 32 bits of *_lo.  Ports as in table.py
(ICMP echo: type << 16 | id per endpoint, each endpoint carrying the type it
sends).  It reads the packet's bytes (what the ct() action sees after earlier
rewrites were written back), using the parser's meta offsets M_L3 / M_L4 and
flags; ip_end is the IP packet's end from its length field (Ethernet padding
excluded).

As Open vSwitch (lib/conntrack.c):
  - IPv4 header checksum and TCP/UDP/ICMP/ICMPv6 checksums are verified when
    check_csum (an IPv4 UDP checksum of 0 means none); bad -> R_CSUM
  - TCP: data offset >= 5 words and within the segment; TCP/UDP port 0 -> R_MALFORMED
  - ICMP echo / timestamp / information (code 0), ICMPv6 echo (code 0):
    their own connections keyed by id
  - ICMP errors (unreachable, time exceeded, parameter problem, source
    quench, redirect; ICMPv6 unreachable, too big, time exceeded, parameter
    problem): the key of the embedded packet, reversed (the error travels
    back towards the embedded packet's sender), related = True.  The
    embedded source must be the error's destination; at least 8 bytes of its
    L4 header (ICMPv6: a whole TCP header) must be present; not a later
    fragment; no nested errors
  - any other ICMP/ICMPv6 type -> R_MALFORMED
  - other IP protocols: ports 0
Unlike OVS (whose ipf module reassembles), every fragment is R_FRAG: this
tracker does not reassemble.  Packets the parser flagged malformed, and
non-IP packets, are R_MALFORMED.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_FLAGS, M_L3, M_L4, M_PARSE_ERR
from softdpu.headers.bytes import be16, be32, be64, u8
from softdpu.headers.ipv4 import fold, ones_sum, pseudo_sum
from softdpu.headers import ipv6 as ip6
from softdpu.stages.parse import F_FRAG, F_IPV4, F_IPV6

R_MALFORMED = 1
R_FRAG = 2
R_CSUM = 3
R_NEW = 4
R_TCP = 5
R_RELATED = 6
REASON_NAMES = ("", "malformed", "fragment", "checksum", "not_valid_new", "tcp_window", "related_unknown")

P_ICMP = 1
P_TCP = 6
P_UDP = 17
P_ICMPV6 = 58
P_SCTP = 132
ICMP_ERROR_L4_LEN = 8
Z = np.uint64(0)


@njit(alloc=False, inline=True)
def icmp4_reverse(t):
    """The answering type of an ICMP query type (echo 8<->0, timestamp 13<->14, info 15<->16); -1 if none."""
    if t == 8:
        return 0
    if t == 0:
        return 8
    if t == 13 or t == 15:
        return t + 1
    if t == 14 or t == 16:
        return t - 1
    return -1


@njit(alloc=False, inline=True)
def icmp6_reverse(t):
    """ICMPv6 echo request 128 <-> reply 129; -1 otherwise."""
    if t == 128:
        return 129
    if t == 129:
        return 128
    return -1


@njit(alloc=False, inline=True)
def _l4_sum_ok(data, r, v6, l3, l4, n, proto):
    """Does the TCP/UDP/ICMPv6 checksum (with the pseudo header) of bytes l4..l4+n verify?"""
    if v6:
        acc = ip6.pseudo_sum(data, r, l3 + ip6.OFF_SRC, l3 + ip6.OFF_DST, proto, n)
    else:
        acc = pseudo_sum(be32(data, r, l3 + 12), be32(data, r, l3 + 16), proto, n)
    return fold(ones_sum(data, r, l4, n, acc)) == 0xFFFF


@njit(alloc=False, inline=True)
def _inner_ports(data, r, v6, proto, il4, tail):
    """Ports of a packet embedded in an ICMP error (nested: no checksum, no
    further errors).  -> (ok, s_port, d_port)"""
    avail = tail - il4
    if proto == P_TCP or proto == P_UDP or proto == P_SCTP:
        need = 20 if (v6 and proto == P_TCP) else ICMP_ERROR_L4_LEN
        if avail < need:
            return False, 0, 0
        sp = be16(data, r, il4)
        dp = be16(data, r, il4 + 2)
        return sp != 0 and dp != 0, sp, dp
    if (proto == P_ICMP and not v6) or (proto == P_ICMPV6 and v6):
        if avail < 8:
            return False, 0, 0
        t = u8(data, r, il4)
        rt = icmp6_reverse(t) if v6 else icmp4_reverse(t)
        if rt < 0 or u8(data, r, il4 + 1) != 0:
            return False, 0, 0
        ident = be16(data, r, il4 + 4)
        return True, (t << 16) | ident, (rt << 16) | ident
    return True, 0, 0


@njit(alloc=False)
def extract(data, meta, row, check_csum):
    """The packet's connection key (see the module docstring)."""
    r = np.uint64(row)
    flags = meta[r, M_FLAGS]
    l3 = meta[r, M_L3]
    l4 = meta[r, M_L4]
    bad = (R_MALFORMED, False, 0, Z, Z, Z, Z, 0, 0, False, l3, l4, 0)
    if meta[r, M_PARSE_ERR] != 0 or not (flags & (F_IPV4 | F_IPV6)):
        return bad
    if flags & F_FRAG:
        return (R_FRAG, False, 0, Z, Z, Z, Z, 0, 0, False, l3, l4, 0)
    if l3 < 0 or l4 < 0:
        return bad
    v6 = (flags & F_IPV6) != 0
    if v6:
        ip_end = l3 + ip6.HEADER_LEN + be16(data, r, l3 + ip6.OFF_PAYLOAD_LEN)
        s_hi = be64(data, r, l3 + ip6.OFF_SRC)
        s_lo = be64(data, r, l3 + ip6.OFF_SRC + 8)
        d_hi = be64(data, r, l3 + ip6.OFF_DST)
        d_lo = be64(data, r, l3 + ip6.OFF_DST + 8)
        # the last next-header: the byte before M_L4's header chain ends is not at a
        # fixed place, so take it from the fixed header or the last extension header
        proto = u8(data, r, l3 + ip6.OFF_NEXT)
        off = l3 + ip6.HEADER_LEN
        while off < l4:
            nxt = u8(data, r, off)
            size = (u8(data, r, off + 1) + 2) * 4 if proto == 51 else (u8(data, r, off + 1) + 1) * 8
            if proto == 44:
                size = 8
            proto = nxt
            off += size
    else:
        ip_end = l3 + be16(data, r, l3 + 2)
        ihl = (u8(data, r, l3) & 0xF) * 4
        if check_csum and fold(ones_sum(data, r, l3, ihl, np.int64(0))) != 0xFFFF:
            return (R_CSUM, False, 0, Z, Z, Z, Z, 0, 0, False, l3, l4, 0)
        s_hi = Z
        d_hi = Z
        s_lo = np.uint64(be32(data, r, l3 + 12))
        d_lo = np.uint64(be32(data, r, l3 + 16))
        proto = u8(data, r, l3 + 9)
    n = ip_end - l4
    s_port = 0
    d_port = 0
    if proto == P_TCP or proto == P_UDP:
        hl = 8
        if proto == P_TCP:
            if n < 20:
                return bad
            hl = (u8(data, r, l4 + 12) >> 4) * 4
        if n < hl or hl < 8 or (proto == P_TCP and hl < 20):
            return bad
        if check_csum and not (proto == P_UDP and not v6 and be16(data, r, l4 + 6) == 0):
            if not _l4_sum_ok(data, r, v6, l3, l4, n, proto):
                return (R_CSUM, v6, proto, s_hi, s_lo, d_hi, d_lo, 0, 0, False, l3, l4, ip_end)
        s_port = be16(data, r, l4)
        d_port = be16(data, r, l4 + 2)
        if s_port == 0 or d_port == 0:
            return bad
        return (0, v6, proto, s_hi, s_lo, d_hi, d_lo, s_port, d_port, False, l3, l4, ip_end)
    is_icmp4 = proto == P_ICMP and not v6
    is_icmp6 = proto == P_ICMPV6 and v6
    if not (is_icmp4 or is_icmp6):
        return (0, v6, proto, s_hi, s_lo, d_hi, d_lo, 0, 0, False, l3, l4, ip_end)
    if n < 8:
        return bad
    if check_csum:
        ok = (_l4_sum_ok(data, r, True, l3, l4, n, P_ICMPV6) if v6
              else fold(ones_sum(data, r, l4, n, np.int64(0))) == 0xFFFF)
        if not ok:
            return (R_CSUM, v6, proto, s_hi, s_lo, d_hi, d_lo, 0, 0, False, l3, l4, ip_end)
    t = u8(data, r, l4)
    code = u8(data, r, l4 + 1)
    rt = icmp6_reverse(t) if v6 else icmp4_reverse(t)
    if rt >= 0:
        if code != 0:
            return bad
        ident = be16(data, r, l4 + 4)
        return (0, v6, proto, s_hi, s_lo, d_hi, d_lo, (t << 16) | ident, (rt << 16) | ident,
                False, l3, l4, ip_end)
    if v6:
        is_err = t == 1 or t == 2 or t == 3 or t == 4
    else:
        is_err = t == 3 or t == 11 or t == 12 or t == 4 or t == 5
    if not is_err:
        return bad
    # the embedded packet
    il3 = l4 + 8
    tail = ip_end
    if v6:
        if tail - il3 < ip6.HEADER_LEN:
            return bad
        i_s_hi = be64(data, r, il3 + ip6.OFF_SRC)
        i_s_lo = be64(data, r, il3 + ip6.OFF_SRC + 8)
        i_d_hi = be64(data, r, il3 + ip6.OFF_DST)
        i_d_lo = be64(data, r, il3 + ip6.OFF_DST + 8)
        iproto = u8(data, r, il3 + ip6.OFF_NEXT)
        il4 = il3 + ip6.HEADER_LEN
        for _ in range(ip6.MAX_EXT_HEADERS):
            if iproto != 0 and iproto != 43 and iproto != 60 and iproto != 51:
                break
            if il4 + 8 > tail:
                return bad
            size = ((u8(data, r, il4 + 1) + 2) * 4 if iproto == 51
                    else (u8(data, r, il4 + 1) + 1) * 8)
            iproto = u8(data, r, il4)
            il4 += size
        if iproto == 44 or il4 > tail:
            return bad
    else:
        if tail - il3 < 20:
            return bad
        ihl = (u8(data, r, il3) & 0xF) * 4
        if ihl < 20 or tail - il3 < ihl or (be16(data, r, il3 + 6) & 0x1FFF) != 0:
            return bad
        i_s_hi = Z
        i_d_hi = Z
        i_s_lo = np.uint64(be32(data, r, il3 + 12))
        i_d_lo = np.uint64(be32(data, r, il3 + 16))
        iproto = u8(data, r, il3 + 9)
        il4 = il3 + ihl
    if i_s_hi != d_hi or i_s_lo != d_lo:
        return bad
    ok, isp, idp = _inner_ports(data, r, v6, iproto, il4, tail)
    if not ok:
        return bad
    # reversed: the error goes from the embedded packet's destination to its source
    return (0, v6, iproto, i_d_hi, i_d_lo, i_s_hi, i_s_lo, idp, isp, True, l3, l4, ip_end)
