"""Traffic selectors: read a packet's IP fields from its bytes and match them to policies.

The ESP stages meet packets the parser never saw in their present form (after
encapsulation, after decryption), so they read what selectors need straight
from the bytes: Ethernet, up to two VLAN tags, IPv4 or IPv6 (fixed header),
then TCP/UDP ports or ICMP type/code (as RFC 4301 4.4.1.1 puts them in the
port fields).  `ip_fields` returns

    (l3, family, hdr_len, ip_end, proto, sport, dport, shi, slo, dhi, dlo, odd)

l3 = -1 when the frame is not a whole IP packet.  Addresses are (hi, lo)
64-bit halves, IPv4 in lo.  odd = 1 for an IPv4 fragment, 2 for an IPv6
extension header after the fixed one (proto is then that header's number
and the ports are 0).

A policy row (int64[P_COLS]) matches when every field does: family (0 any),
src/dst prefix as (value, mask) halves, proto (-1 any), port ranges, and
for outbound ones the output port (0 any).
"""
import numpy as np

from softdpu._jit import njit
from softdpu.headers.bytes import be16, be32, be64, u8

(P_SA, P_DIR, P_FAMILY, P_SRC_HI, P_SRC_LO, P_SRC_MHI, P_SRC_MLO, P_DST_HI, P_DST_LO, P_DST_MHI, P_DST_MLO,
 P_PROTO, P_SPORT_LO, P_SPORT_HI, P_DPORT_LO, P_DPORT_HI, P_PORT) = range(17)
P_COLS = 17
DIR_IN, DIR_OUT = 0, 1


@njit(alloc=False)
def _ext(nh):
    return nh == 0 or nh == 43 or nh == 44 or nh == 60 or nh == 51 or nh == 135 or nh == 139 or nh == 140


@njit(alloc=False)
def ip_fields(data, r, start, end):
    """The selector fields of the frame data[r, start:end] (module doc)."""
    z = np.int64(0)
    off = start + 12
    for _ in range(3):
        if off + 2 > end:
            return -1, z, z, z, z, z, z, z, z, z, z, z
        t = be16(data, r, off)
        if t == 0x8100 or t == 0x88A8:
            off += 4
            continue
        break
    l3 = off + 2
    if t == 0x0800:
        if l3 + 20 > end or u8(data, r, l3) >> 4 != 4:
            return -1, z, z, z, z, z, z, z, z, z, z, z
        hl = (u8(data, r, l3) & 0xF) * 4
        ip_end = l3 + be16(data, r, l3 + 2)
        if hl < 20 or ip_end > end or ip_end < l3 + hl:
            return -1, z, z, z, z, z, z, z, z, z, z, z
        proto = u8(data, r, l3 + 9)
        odd = np.int64(1) if be16(data, r, l3 + 6) & 0x3FFF else z
        family = np.int64(4)
        shi, slo = z, be32(data, r, l3 + 12)
        dhi, dlo = z, be32(data, r, l3 + 16)
    elif t == 0x86DD:
        hl = np.int64(40)
        if l3 + 40 > end or u8(data, r, l3) >> 4 != 6:
            return -1, z, z, z, z, z, z, z, z, z, z, z
        ip_end = l3 + 40 + be16(data, r, l3 + 4)
        if ip_end > end:
            return -1, z, z, z, z, z, z, z, z, z, z, z
        proto = u8(data, r, l3 + 6)
        odd = np.int64(2) if _ext(proto) else z
        family = np.int64(6)
        shi, slo = np.int64(be64(data, r, l3 + 8)), np.int64(be64(data, r, l3 + 16))
        dhi, dlo = np.int64(be64(data, r, l3 + 24)), np.int64(be64(data, r, l3 + 32))
    else:
        return -1, z, z, z, z, z, z, z, z, z, z, z
    sport, dport = z, z
    l4 = l3 + hl
    if odd == 0:
        if (proto == 6 or proto == 17 or proto == 132) and l4 + 4 <= ip_end:
            sport, dport = be16(data, r, l4), be16(data, r, l4 + 2)
        elif (proto == 1 or proto == 58) and l4 + 2 <= ip_end:
            sport, dport = u8(data, r, l4), u8(data, r, l4 + 1)
    return l3, family, hl, ip_end, proto, sport, dport, shi, slo, dhi, dlo, odd


@njit(alloc=False)
def matches(pol, k, family, proto, sport, dport, shi, slo, dhi, dlo, port):
    """Does policy row k take this packet (port: the output ofport, 0 when receiving)?"""
    if pol[k, P_FAMILY] != 0 and pol[k, P_FAMILY] != family:
        return False
    if pol[k, P_PROTO] >= 0 and pol[k, P_PROTO] != proto:
        return False
    if pol[k, P_PORT] != 0 and pol[k, P_PORT] != port:
        return False
    if (shi & pol[k, P_SRC_MHI]) != pol[k, P_SRC_HI] or (slo & pol[k, P_SRC_MLO]) != pol[k, P_SRC_LO]:
        return False
    if (dhi & pol[k, P_DST_MHI]) != pol[k, P_DST_HI] or (dlo & pol[k, P_DST_MLO]) != pol[k, P_DST_LO]:
        return False
    return (pol[k, P_SPORT_LO] <= sport <= pol[k, P_SPORT_HI]
            and pol[k, P_DPORT_LO] <= dport <= pol[k, P_DPORT_HI])
