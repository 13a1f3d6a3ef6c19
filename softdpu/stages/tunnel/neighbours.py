"""Neighbours of the VTEPs: the static [[neighbor]] table, ARP (RFC 826) and IPv6 ND (RFC 4861).

An underlay port with `resolve = true` acts as a host for its VTEP addresses:

  - an ARP request / neighbour solicitation for a VTEP address is answered: the
    packet's own row is rewritten into the ARP reply / neighbour advertisement
    (from the underlay's mac) and sent back out of the port it came in on;
  - an ARP request or reply, or a solicitation or advertisement, addressed to a
    VTEP teaches the sender's MAC (dynamic entries, after the static ones);
  - a copy for a remote VTEP with no known MAC sends an ARP request / neighbour
    solicitation (at most one a second per address, capture clock) and is
    dropped (tunnel_no_neighbor), as Open vSwitch's tunnel push does.

A packet taken this way does not reach the flow tables: an answered request
leaves by its port; a reply to us is counted under vtep_consumed.

The table, int64[N, 6]: (family, address hi, address lo, MAC, last request ns,
known since ns); MAC -1 = asked, not answered yet.  A MAC learned from a
packet counts for copies of packets from its timestamp on, so what a batch
learns late does not help its earlier packets (results do not depend on the
batch size).  nstate int64[2]: (entries used, static
entries).  Searched linearly: a VTEP has few peers.  Full: a new address is
not learned (the copy is dropped, counted).
"""
import numpy as np

from softdpu._jit import njit
from softdpu.batch import HEADROOM, M_L3, M_L4, M_LEN, M_ORIGIN, M_START, M_TS
from softdpu.headers import arp
from softdpu.headers import ipv4 as ip4
from softdpu.headers import ipv6 as ip6
from softdpu.headers.bytes import be16, be32, be48, be64, put16, put32, put48, u8
from softdpu.stages.tunnel.table import T_FAMILY, T_LOCAL_HI, T_LOCAL_LO, T_SRC_MAC, T_UNDERLAY

N_FAMILY, N_HI, N_LO, N_MAC, N_ASKED, N_SINCE = range(6)
COLS = 6
ALWAYS = -(1 << 62)                # N_SINCE of a static entry
ASK_EVERY_NS = 1_000_000_000
NS_TYPE, NA_TYPE = 135, 136
ARP_FRAME = 42
NS_FRAME = 14 + 40 + 32
FF02_HI = -0x00FE000000000000      # ff02:: (the high 64 bits as int64)
ALL_NODES_MAC = 0x333300000001     # ff02::1's multicast MAC (RFC 2464)
DYNAMIC = 256                      # learned entries beside the static ones


@njit(alloc=False, inline=True)
def find(neigh, nstate, family, hi, lo):
    """Index of an entry, or -1."""
    for k in range(nstate[0]):
        if neigh[k, N_FAMILY] == family and neigh[k, N_HI] == hi and neigh[k, N_LO] == lo:
            return k
    return -1


@njit(alloc=False, inline=True)
def lookup(neigh, nstate, family, hi, lo, now):
    """The MAC of a neighbour known at time `now`, or -1."""
    k = find(neigh, nstate, family, hi, lo)
    if k < 0 or neigh[k, N_SINCE] > now:
        return -1
    return neigh[k, N_MAC]


@njit(alloc=False)
def learn(neigh, nstate, family, hi, lo, mac, now):
    """Record a dynamic entry as of `now` (static entries are never overwritten)."""
    k = find(neigh, nstate, family, hi, lo)
    if k < 0:
        if nstate[0] >= neigh.shape[0]:
            return
        k = nstate[0]
        nstate[0] += 1
        neigh[k, N_FAMILY] = family
        neigh[k, N_HI] = hi
        neigh[k, N_LO] = lo
        neigh[k, N_ASKED] = 0
    elif k < nstate[1]:
        return
    if neigh[k, N_MAC] != mac:
        neigh[k, N_SINCE] = now
    neigh[k, N_MAC] = mac


@njit(alloc=False)
def _vtep(tun, n_tun, port, family, hi, lo):
    """The tunnel whose VTEP address on underlay `port` this is, or -1."""
    for t in range(n_tun):
        if (tun[t, T_UNDERLAY] == port and tun[t, T_FAMILY] == family and tun[t, T_LOCAL_HI] == hi
                and tun[t, T_LOCAL_LO] == lo):
            return t
    return -1


@njit(alloc=False)
def _icmp6_checksum(data, r, l3, l4, length):
    put16(data, r, l4 + 2, 0)
    acc = ip6.pseudo_sum(data, r, l3 + ip6.OFF_SRC, l3 + ip6.OFF_DST, 58, length)
    put16(data, r, l4 + 2, (~ip4.fold(ip4.ones_sum(data, r, l4, length, acc))) & 0xFFFF)


@njit(alloc=False)
def _put_addr6(data, r, off, hi, lo):
    put32(data, r, off, (hi >> 32) & 0xFFFFFFFF)
    put32(data, r, off + 4, hi & 0xFFFFFFFF)
    put32(data, r, off + 8, (lo >> 32) & 0xFFFFFFFF)
    put32(data, r, off + 12, lo & 0xFFFFFFFF)


@njit(alloc=False)
def answer_arp(data, meta, r, port, tun, n_tun, neigh, nstate):
    """An ARP packet on a resolving underlay.  -> 1 answered in place (send it back out of
    `port`), 2 taken (a reply to a VTEP), 0 not for us."""
    l3 = meta[r, M_L3]
    if l3 < 0 or l3 + arp.HEADER_LEN > meta[r, M_START] + meta[r, M_LEN]:
        return 0
    op = be16(data, r, l3 + arp.OFF_OP)
    tpa = np.int64(be32(data, r, l3 + arp.OFF_TPA))
    t = _vtep(tun, n_tun, port, 4, 0, tpa)
    if t < 0 or (op != arp.OP_REQUEST and op != arp.OP_REPLY):
        return 0
    sha = np.int64(be48(data, r, l3 + arp.OFF_SHA))
    spa = np.int64(be32(data, r, l3 + arp.OFF_SPA))
    if spa == tpa:              # gratuitous: another host announcing (claiming) the VTEP address
        return 0
    if spa != 0:
        learn(neigh, nstate, 4, 0, spa, sha, meta[r, M_TS])
    if op == arp.OP_REPLY:
        return 2
    mine = tun[t, T_SRC_MAC]
    s = meta[r, M_START]
    put48(data, r, s, sha)                          # Ethernet: back to the asker
    put48(data, r, s + 6, mine)
    put16(data, r, l3 + arp.OFF_OP, arp.OP_REPLY)
    put48(data, r, l3 + arp.OFF_THA, sha)
    put32(data, r, l3 + arp.OFF_TPA, spa)
    put48(data, r, l3 + arp.OFF_SHA, mine)
    put32(data, r, l3 + arp.OFF_SPA, tpa)
    return 1


@njit(alloc=False)
def answer_nd(data, meta, r, port, tun, n_tun, neigh, nstate):
    """An ICMPv6 packet on a resolving underlay: NS for a VTEP -> NA in place (1); NA to a VTEP
    -> learned and taken (2); else 0."""
    l3 = meta[r, M_L3]
    l4 = meta[r, M_L4]
    end = meta[r, M_START] + meta[r, M_LEN]
    if l3 < 0 or l4 < 0 or l4 + 24 > end:
        return 0
    typ = u8(data, r, l4)
    if (typ != NS_TYPE and typ != NA_TYPE) or u8(data, r, l3 + ip6.OFF_HOP_LIMIT) != 255:
        return 0
    icmp_len = l3 + 40 + be16(data, r, l3 + ip6.OFF_PAYLOAD_LEN) - l4
    if u8(data, r, l4 + 1) != 0 or icmp_len < 24 or l4 + icmp_len > end:
        return 0                                    # RFC 4861 7.1.1/7.1.2: code 0, 24 bytes or more,
    acc = ip6.pseudo_sum(data, r, l3 + ip6.OFF_SRC, l3 + ip6.OFF_DST, 58, icmp_len)
    if ip4.fold(ip4.ones_sum(data, r, l4, icmp_len, acc)) != 0xFFFF:
        return 0                                    # and a valid checksum, or it is not ND to us
    end = l4 + icmp_len                             # options end with the ICMPv6 message
    thi = np.int64(be64(data, r, l4 + 8))
    tlo = np.int64(be64(data, r, l4 + 16))
    mac = np.int64(-1)
    o = l4 + 24
    while o + 8 <= end and u8(data, r, o + 1) != 0:    # the link-layer address option
        if (u8(data, r, o) == 1 or u8(data, r, o) == 2) and u8(data, r, o + 1) == 1:
            mac = np.int64(be48(data, r, o + 2))
        o += 8 * u8(data, r, o + 1)
    if typ == NA_TYPE:
        dhi = np.int64(be64(data, r, l3 + ip6.OFF_DST))
        dlo = np.int64(be64(data, r, l3 + ip6.OFF_DST + 8))
        if _vtep(tun, n_tun, port, 6, dhi, dlo) < 0:
            return 0
        if mac >= 0:
            learn(neigh, nstate, 6, thi, tlo, mac, meta[r, M_TS])
        return 2
    t = _vtep(tun, n_tun, port, 6, thi, tlo)
    if t < 0:
        return 0
    shi = np.int64(be64(data, r, l3 + ip6.OFF_SRC))
    slo = np.int64(be64(data, r, l3 + ip6.OFF_SRC + 8))
    asker = np.int64(be48(data, r, meta[r, M_START] + 6))
    dad = shi == 0 and slo == 0                    # a duplicate address detection probe
    if mac >= 0 and not dad:
        learn(neigh, nstate, 6, shi, slo, mac, meta[r, M_TS])
    mine = tun[t, T_SRC_MAC]
    s = meta[r, M_START]
    put48(data, r, s, ALL_NODES_MAC if dad else asker)
    put48(data, r, s + 6, mine)
    if dad:                                        # from the unspecified address: to all nodes,
        _put_addr6(data, r, l3 + ip6.OFF_DST, np.int64(FF02_HI), np.int64(1))   # S clear (RFC 4861 7.2.4)
    else:
        _put_addr6(data, r, l3 + ip6.OFF_DST, shi, slo)
    _put_addr6(data, r, l3 + ip6.OFF_SRC, thi, tlo)
    put16(data, r, l3 + ip6.OFF_PAYLOAD_LEN, 32)
    put32(data, r, l3, 0x60000000)
    put16(data, r, l3 + ip6.OFF_NEXT, (58 << 8) | 255)
    put16(data, r, l4, NA_TYPE << 8)
    put32(data, r, l4 + 4, 0x20000000 if dad else 0x60000000)   # (solicited,) override
    put16(data, r, l4 + 24, 0x0201)                 # target link-layer address option
    put48(data, r, l4 + 26, mine)
    _icmp6_checksum(data, r, l3, l4, 32)
    meta[r, M_LEN] = l4 + 32 - s
    return 1


@njit(alloc=False)
def solicit(data, meta, c, tun, t, family, hi, lo, neigh, nstate, now):
    """Ask for the MAC of a remote VTEP into row c (free), unless asked within the last second.
    -> True when row c now holds the request (send it out of the tunnel's underlay)."""
    k = find(neigh, nstate, family, hi, lo)
    if k < 0:
        if nstate[0] >= neigh.shape[0]:
            return False
        k = nstate[0]
        nstate[0] += 1
        neigh[k, N_FAMILY] = family
        neigh[k, N_HI] = hi
        neigh[k, N_LO] = lo
        neigh[k, N_MAC] = -1
        neigh[k, N_ASKED] = now - ASK_EVERY_NS
    if (neigh[k, N_MAC] >= 0 and neigh[k, N_SINCE] <= now) or now - neigh[k, N_ASKED] < ASK_EVERY_NS:
        return False
    neigh[k, N_ASKED] = now
    mine = tun[t, T_SRC_MAC]
    s = HEADROOM
    meta[c, :] = 0
    meta[c, M_START] = s
    meta[c, M_ORIGIN] = -1                        # made here: no received packet behind it
    meta[c, M_TS] = now
    put48(data, c, s + 6, mine)
    if family == 4:
        put48(data, c, s, 0xFFFFFFFFFFFF)
        put16(data, c, s + 12, 0x0806)
        a = s + 14
        put32(data, c, a, (arp.HTYPE_ETHERNET << 16) | arp.PTYPE_IPV4)
        put32(data, c, a + 4, (6 << 24) | (4 << 16) | arp.OP_REQUEST)
        put48(data, c, a + arp.OFF_SHA, mine)
        put32(data, c, a + arp.OFF_SPA, tun[t, T_LOCAL_LO] & 0xFFFFFFFF)
        put48(data, c, a + arp.OFF_THA, 0)
        put32(data, c, a + arp.OFF_TPA, lo & 0xFFFFFFFF)
        meta[c, M_LEN] = ARP_FRAME
    else:
        low24 = lo & 0xFFFFFF
        put48(data, c, s, 0x3333FF000000 | low24)
        put16(data, c, s + 12, 0x86DD)
        l3 = s + 14
        put32(data, c, l3, 0x60000000)
        put16(data, c, l3 + ip6.OFF_PAYLOAD_LEN, 32)
        put16(data, c, l3 + ip6.OFF_NEXT, (58 << 8) | 255)
        _put_addr6(data, c, l3 + ip6.OFF_SRC, tun[t, T_LOCAL_HI], tun[t, T_LOCAL_LO])
        _put_addr6(data, c, l3 + ip6.OFF_DST, np.int64(FF02_HI), np.int64(0x1FF000000) | low24)
        l4 = l3 + 40
        put32(data, c, l4, NS_TYPE << 24)
        put32(data, c, l4 + 4, 0)
        _put_addr6(data, c, l4 + 8, hi, lo)
        put16(data, c, l4 + 24, 0x0101)             # source link-layer address option
        put48(data, c, l4 + 26, mine)
        _icmp6_checksum(data, c, l3, l4, 32)
        meta[c, M_LEN] = NS_FRAME
    return True
