"""The `reject` flow action (softdpu only): drop the packet and tell its sender.

Open vSwitch has no such action (OVN's reject ACL sends the packet to
ovn-controller, which builds the answer); softdpu builds it in the
datapath, so a .flows file that uses `reject` runs in softdpu only
(`ovs-ofctl add-flows` refuses the word).

What goes back, out of the packet's in_port, in a clone row of the batch
(its M_ORIGIN is -1: made by softdpu, as an ARP request of the tunnels):

  TCP        a reset, as RFC 793 ("Reset Generation", group 1) and Linux's
             tcp_v4_send_reset: if the segment has ACK, <SEQ=SEG.ACK><CTL=RST>;
             otherwise <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, SEG.LEN
             counting the payload, SYN and FIN.  Ports swapped, window 0.
  other IPv4 ICMP destination unreachable, code 13 "communication
             administratively prohibited" (RFC 1812 5.2.7.1), quoting the
             packet from its IP header on, as much as fits in 576 bytes
             (RFC 792: at least the header and 64 bits; RFC 1812 4.3.2.3).
  other IPv6 ICMPv6 destination unreachable, code 1 "communication with
             destination administratively prohibited" (RFC 4443 3.1),
             quoting as much of the packet as fits in 1280 bytes.

The reply's Ethernet addresses are the packet's swapped, and its VLAN
tags (the bytes between the source MAC and the IP header) are copied, so
it goes back on the packet's VLAN; IPv4 TTL / IPv6 hop limit 64; IPv4
identification 0, DF set on a reset.  Addresses and bytes come from the
packet as received (header rewrites made by earlier actions are not seen).

No answer (the packet is only dropped), as RFC 1122 3.2.2 / RFC 4443 2.4 (e)
and RFC 793 ask: a TCP segment with RST; an ICMP error message (ICMPv4 3,
4, 5, 11, 12; ICMPv6 types below 128); a non-first fragment; a packet sent to
a link-layer broadcast/multicast address or to an IP multicast/broadcast
address, or from an address that does not name one host (IPv4 0.0.0.0,
multicast, 255.255.255.255; IPv6 :: or multicast); a frame that is not
Ethernet II with IPv4/IPv6 (LLC), or whose TCP header is cut short.

reject(...) -> 1 the answer is queued, 0 none is due, or a drop code
(clone_full, tx_full) when the batch had no room for it; the caller drops
the packet with reason `rejected` in every case (unless another action
sent it).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import (HEADROOM, M_DROP, M_FLAGS, M_L2, M_L3, M_L4, M_L5, M_LEN, M_ORIGIN,
                           M_PARSE_ERR, M_START, M_TRACED, M_WIRE_LEN)
from softdpu.headers.bytes import be16, be32, put16, put32
from softdpu.headers.ipv4 import fold, ones_sum, pseudo_sum
from softdpu.headers import ipv6 as ip6
from softdpu.stages.flows.outputs import S_CLONES, S_LOST_CLONE, push_tx
from softdpu.stages.parse import (F_FRAG_LATER, F_ICMP, F_ICMP6, F_IPV4, F_IPV6, F_LLC, F_QINQ, F_TCP,
                                  F_VLAN)

TTL = 64
ICMP4_MAX = 576          # RFC 1812 4.3.2.3: the whole ICMPv4 error datagram
ICMP6_MAX = 1280         # RFC 4443 2.4 (c): the minimum IPv6 MTU
ICMP4_UNREACH, ICMP4_ADMIN_PROHIBITED = 3, 13
ICMP6_UNREACH, ICMP6_ADMIN_PROHIBITED = 1, 1
TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


@njit(alloc=False)
def _copy(data, src, so, dst, do, n):
    for b in range(n):
        data[dst, do + b] = data[src, so + b]


@njit(alloc=False)
def _v4_unicast(a):
    return a != 0 and (a >> 28) < 14 and a != 0xFFFFFFFF and (a >> 24) != 127


@njit(alloc=False)
def _due(data, meta, i, proto):
    """Is an answer due for packet i (see the module docstring)?  -> 0 no, 4 or 6."""
    f = meta[i, M_FLAGS]
    if f & F_LLC or f & F_FRAG_LATER or meta[i, M_L3] < 0:
        return 0
    l2 = meta[i, M_L2]
    l3 = meta[i, M_L3]
    l4 = meta[i, M_L4]
    if data[i, l2] & 1:                          # link-layer broadcast / multicast destination
        return 0
    fam = 4 if f & F_IPV4 else (6 if f & F_IPV6 else 0)
    if fam == 0:
        return 0
    if fam == 4:
        if not (_v4_unicast(be32(data, i, l3 + 12)) and _v4_unicast(be32(data, i, l3 + 16))):
            return 0
    else:
        if data[i, l3 + 8] == 0xFF or data[i, l3 + 24] == 0xFF:
            return 0
        zero = True
        for b in range(16):
            if data[i, l3 + 8 + b] != 0:
                zero = False
        if zero:
            return 0
    if proto == 6:
        if not f & F_TCP or l4 < 0 or data[i, l4 + 13] & TCP_RST:
            return 0
    elif fam == 4 and proto == 1:
        if f & F_ICMP and l4 >= 0:
            t = data[i, l4]
            if t == 3 or t == 4 or t == 5 or t == 11 or t == 12:
                return 0
    elif fam == 6 and proto == 58:
        if not (f & F_ICMP6 and l4 >= 0) or data[i, l4] < 128:
            return 0
    return fam


@njit(alloc=False)
def reject(data, meta, key, tx, i, clone_base, state, in_port):
    """Build the answer to packet i in the next clone row and queue it to in_port."""
    proto = np.int64((key[i, 2] >> np.uint64(8)) & np.uint64(0xFF))
    fam = _due(data, meta, i, proto)
    if fam == 0:
        return 0
    c = clone_base + state[S_CLONES]
    if c >= data.shape[0]:
        state[S_LOST_CLONE] += 1
        return drops.CLONE_FULL
    s = meta[i, M_START]
    l2 = meta[i, M_L2]
    l3 = meta[i, M_L3]
    l4 = meta[i, M_L4]
    have = s + meta[i, M_LEN]                    # end of the bytes in the slot
    start = HEADROOM
    # Ethernet: addresses swapped, tags and EtherType copied
    _copy(data, i, l2 + 6, c, start, 6)
    _copy(data, i, l2, c, start + 6, 6)
    _copy(data, i, l2 + 12, c, start + 12, l3 - l2 - 12)
    o3 = start + (l3 - l2)
    hl = 20 if fam == 4 else 40
    o4 = o3 + hl
    room = data.shape[1] - o4
    tcp = proto == 6
    if tcp:
        flags = np.int64(data[i, l4 + 13])
        doff = np.int64(data[i, l4 + 12] >> 4) * 4
        if fam == 4:
            ip_end = l3 + be16(data, i, l3 + 2)
        else:
            ip_end = l3 + 40 + be16(data, i, l3 + 4)
        seglen = ip_end - l4 - doff
        if seglen < 0:
            seglen = 0
        if flags & TCP_SYN:
            seglen += 1
        if flags & TCP_FIN:
            seglen += 1
        put16(data, c, o4, be16(data, i, l4 + 2))
        put16(data, c, o4 + 2, be16(data, i, l4))
        if flags & TCP_ACK:
            put32(data, c, o4 + 4, be32(data, i, l4 + 8))
            put32(data, c, o4 + 8, 0)
            out_flags = TCP_RST
        else:
            put32(data, c, o4 + 4, 0)
            put32(data, c, o4 + 8, (be32(data, i, l4 + 4) + seglen) & 0xFFFFFFFF)
            out_flags = TCP_RST | TCP_ACK
        data[c, o4 + 12] = np.uint8(5 << 4)
        data[c, o4 + 13] = np.uint8(out_flags)
        put32(data, c, o4 + 14, 0)             # window 0, checksum 0 for now
        put16(data, c, o4 + 18, 0)              # urgent pointer
        l4len = 20
        quote = 0
    else:
        limit = (ICMP4_MAX - 28) if fam == 4 else (ICMP6_MAX - 48)
        if fam == 4:
            ip_len = be16(data, i, l3 + 2)
        else:
            ip_len = 40 + be16(data, i, l3 + 4)
        quote = min(ip_len, have - l3, limit, room - 8)
        data[c, o4] = np.uint8(ICMP4_UNREACH if fam == 4 else ICMP6_UNREACH)
        data[c, o4 + 1] = np.uint8(ICMP4_ADMIN_PROHIBITED if fam == 4 else ICMP6_ADMIN_PROHIBITED)
        put16(data, c, o4 + 2, 0)
        put32(data, c, o4 + 4, 0)               # unused
        _copy(data, i, l3, c, o4 + 8, quote)
        l4len = 8 + quote
    # IP header: addresses swapped
    if fam == 4:
        data[c, o3] = np.uint8(0x45)
        data[c, o3 + 1] = np.uint8(0 if tcp else 0xC0)    # ICMP errors: precedence 6 (RFC 1812 4.3.2.5)
        put16(data, c, o3 + 2, hl + l4len)
        put16(data, c, o3 + 4, 0)
        put16(data, c, o3 + 6, 0x4000 if tcp else 0)
        data[c, o3 + 8] = np.uint8(TTL)
        data[c, o3 + 9] = np.uint8(6 if tcp else 1)
        put16(data, c, o3 + 10, 0)
        _copy(data, i, l3 + 16, c, o3 + 12, 4)
        _copy(data, i, l3 + 12, c, o3 + 16, 4)
        put16(data, c, o3 + 10, (~fold(ones_sum(data, c, o3, 20, np.int64(0)))) & 0xFFFF)
        if tcp:
            acc = pseudo_sum(be32(data, c, o3 + 12), be32(data, c, o3 + 16), 6, l4len)
            put16(data, c, o4 + 16, (~fold(ones_sum(data, c, o4, l4len, acc))) & 0xFFFF)
        else:
            put16(data, c, o4 + 2, (~fold(ones_sum(data, c, o4, l4len, np.int64(0)))) & 0xFFFF)
    else:
        put32(data, c, o3, 0x60000000)
        put16(data, c, o3 + 4, l4len)
        data[c, o3 + 6] = np.uint8(6 if tcp else 58)
        data[c, o3 + 7] = np.uint8(TTL)
        _copy(data, i, l3 + 24, c, o3 + 8, 16)
        _copy(data, i, l3 + 8, c, o3 + 24, 16)
        acc = ip6.pseudo_sum(data, c, o3 + 8, o3 + 24, 6 if tcp else 58, l4len)
        ck = (~fold(ones_sum(data, c, o4, l4len, acc))) & 0xFFFF
        put16(data, c, o4 + 16 if tcp else o4 + 2, ck)
    length = o4 + l4len - start
    for m in range(meta.shape[1]):
        meta[c, m] = meta[i, m]
    meta[c, M_START] = start
    meta[c, M_LEN] = length
    meta[c, M_WIRE_LEN] = length
    meta[c, M_L2] = start
    meta[c, M_L3] = o3
    meta[c, M_L4] = o4
    meta[c, M_L5] = o4 + l4len
    meta[c, M_DROP] = 0
    meta[c, M_PARSE_ERR] = 0
    meta[c, M_TRACED] = 0
    meta[c, M_ORIGIN] = -1                       # made by softdpu: no received packet behind it
    meta[c, M_FLAGS] = (meta[i, M_FLAGS] & (F_VLAN | F_QINQ | F_IPV4 | F_IPV6)) | (
        F_TCP if tcp else (F_ICMP if fam == 4 else F_ICMP6))
    st = push_tx(tx, state, c, in_port, key, i)
    if st == 1:
        state[S_CLONES] += 1
    return st
