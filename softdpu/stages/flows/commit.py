"""Commit: make a packet's bytes match its modified flow key, as Open vSwitch's
"commit" of a modified flow to the datapath (ofproto/ofproto-dpif-xlate.c
commit_odp_actions -> lib/odp-execute.c, lib/packets.c packet_set_*).

Flow actions (set_field, mod_dl_src, mod_nw_dst, dec_ttl, push_vlan,
strip_vlan, ...) only change the packet's key row.  Before the packet is
output, `commit_row` compares the key row as modified (`key[krow]`) with the
key row as parsed (`orig[orow]`, a copy taken before the actions) and
rewrites data[row] in place; the caller may first copy the packet into a
clone row (then `row` != `krow`).

  commit_row(data, meta, row, key, orig, krow, orow) -> status
  commit_batch(data, meta, key, orig, n, drop_code) -> number of errors
      rows 0..n-1 with key row = orig row = packet row; rows already dropped
      are skipped; a row whose commit fails gets M_DROP = drop_code

Status: COMMIT_UNCHANGED (0) packet words equal, nothing done (the fast
path: 12 word compares); COMMIT_DONE (1) the bytes now match the key;
COMMIT_NO_HEADROOM (-1) a VLAN push needs 4 bytes before `start` that the
slot does not have; COMMIT_BAD_L2 (-2) the frame is too short for the tags
`orig` says it has.  On an error nothing is written (packet and orig are
unchanged) and the caller counts a drop.

The orig contract: only the packet words w0..w11 (softdpu.key.PACKET_WORDS)
of key and orig are read, so orig may be PACKET_WORDS wide.  After a
COMMIT_DONE the packet words of orig[orow] are set equal to key[krow]: a
second output after further actions commits only the new difference.  orig
must describe the bytes in the slot (it is the parse of them, or the key of
the previous commit); old field values for checksum updates are read from
the packet itself, as OVS does.

What a difference in each key field does to the bytes:
  dl_src, dl_dst   the Ethernet addresses
  vlan_tci(2)      the tag stack [outer, inner] (a slot counts when its 0x1000
                   "present" bit is set) is aligned on its innermost tag with
                   the one in the packet, as OVS's commit_vlan_action
                   (pop the differing tags, push the new ones): the 12 MAC
                   bytes move 4 bytes back per added tag into the headroom
                   (start -= 4; the payload never moves) or 4 bytes forward per
                   removed tag (start += 4).  A tag rewritten in place keeps its
                   TPID; a new tag gets TPID 0x8100 (the key holds no TPID).  A
                   written TCI has the 0x1000 (DEI) bit clear, as OVS's
                   eth_push_vlan; a tag whose TCI is unchanged keeps its bytes.
                   M_START, M_L2, M_LEN, M_WIRE_LEN and the F_VLAN/F_QINQ flags
                   follow; M_L3.. are absolute and stay valid.
  IPv4             nw_src, nw_dst, nw_tos (the whole TOS byte), nw_ttl; the
                   header checksum is updated incrementally (RFC 1624), and
                   for an address the TCP/UDP checksum too (pseudo header)
                   when the L4 header is in the packet (not in a later
                   fragment; yes in a first fragment, as Linux and OVS).
  IPv6             ipv6_src, ipv6_dst (TCP/UDP/ICMPv6 pseudo header; not for
                   the destination when a routing header with segments left
                   names the final destination, as OVS), nw_tos (traffic
                   class), nw_ttl (hop limit), ipv6_label.
  tp_src, tp_dst   TCP/UDP ports (checksum updated), or ICMP/ICMPv6 type and
                   code (icmp_type/icmp_code set_field; checksum updated).
                   A UDP checksum of 0 (none) stays 0; an updated UDP
                   checksum that comes out 0 is sent as 0xffff (RFC 768).
  ARP              arp_op (else, if only nw_proto changed, its low byte, the
                   OVS member), nw_src/nw_dst (arp_spa/arp_tpa), arp_sha, arp_tha.
Ignored for bytes: in_port (metadata), dl_type (OVS sets it only by
push/pop, handled above through the tags), nw_proto of IP (not writable in
OVS), tcp_flags and nw_frag (not writable in OVS), and a field the packet
has no header for (tp_src of a later fragment, nw_src of a non-IP frame).
Metadata words (w12+: metadata, regs, tunnel, conntrack) never touch bytes.

M_HASH is not recomputed: it stays the hash of the packet as received.

Kernels follow parse.py: 2-D batch arrays plus row indices, never row views,
njit(alloc=False) so no reference counting, unsigned indices.  commit_row is
IR-inlined into its caller (the 12-word compare); the rewrite is one
out-of-line call (inlining it too makes a rewrite ~7 ns faster but adds ~4 s
of compile time to every calling kernel).  Ad hoc, batch of 256 IPv4/TCP:
~4 ns/packet unchanged, ~20 ns for a TTL + two-address rewrite.
"""
import numpy as np

from softdpu.key import U8, U16, U32, U48
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_FLAGS, M_L2, M_L3, M_L4, M_LEN, M_PARSE_ERR, M_START, M_WIRE_LEN
from softdpu.headers import arp, icmp, tcp, udp, vlan
from softdpu.headers import ethernet as eth
from softdpu.headers import ipv4 as ip4
from softdpu.headers import ipv6 as ip6
from softdpu.headers.bytes import be16, be32, put16, put32, put48, u8
from softdpu.headers.ipv4 import csum_replace16, csum_replace32
from softdpu.key import (PACKET_WORDS, W_ARP_SHA, W_ARP_THA, W_DST_PROTO_TOS, W_IPV6_DST,
                         W_IPV6_SRC, W_L4, W_LABEL_ARPOP, W_NW_ADDRS, W_PORT_TYPE_VLAN,
                         W_SRC_VLAN2)
from softdpu.stages.parse import (F_ARP, F_ICMP, F_ICMP6, F_IP6_EXT, F_IPV4, F_IPV6, F_QINQ,
                                  F_TCP, F_UDP, F_VLAN)

COMMIT_UNCHANGED = 0
COMMIT_DONE = 1
COMMIT_NO_HEADROOM = -1
COMMIT_BAD_L2 = -2

Z = np.uint64(0)
M8 = np.uint64(0xFF)
M32 = np.uint64(0xFFFFFFFF)
M48 = np.uint64(0xFFFFFFFFFFFF)
TCI_BITS = np.uint64(0xFFFF)              # vlan_tci in w0, vlan_tci2 in w1
MAC_BITS = np.uint64(0xFFFFFFFFFFFF0000)  # dl_src in w1, dl_dst in w2
TOS_BITS = np.uint64(0xFF)                # w2
PROTO_BITS = np.uint64(0xFF00)            # w2
PORT_BITS = np.uint64(0xFFFFFFFF00000000)  # tp_src, tp_dst in w4
SRC_PORT_BITS = np.uint64(0xFFFF000000000000)
DST_PORT_BITS = np.uint64(0x0000FFFF00000000)
M16 = np.uint64(0xFFFF)
TTL_BITS = np.uint64(0xFF00)              # w4
LABEL_BITS = np.uint64(0xFFFFF) << U32    # w9
ARPOP_BITS = np.uint64(0xFFFF)            # w9
MACS_LEN = 2 * eth.ADDR_LEN
PRESENT = vlan.PRESENT
TC_MASK = 0x0FF00000                      # traffic class in the first IPv6 word
LABEL_MASK = np.uint64(ip6.LABEL_MASK)


@njit(alloc=False, inline=True)
def _field(word, shift, mask):
    """A key field as an int64."""
    return np.int64((word >> shift) & mask)


@njit(alloc=False, inline=True)
def _tags(w0, w1):
    """The tag stack of a key row: (count, outer TCI, inner TCI), present slots only."""
    t0 = _field(w0, Z, TCI_BITS)
    t1 = _field(w1, Z, TCI_BITS)
    if t0 & PRESENT:
        if t1 & PRESENT:
            return 2, t0, t1
        return 1, t0, 0
    if t1 & PRESENT:
        return 1, t1, 0
    return 0, 0, 0


@njit(alloc=False, inline=True)
def _commit_vlan(data, meta, r, key, k, orig, o):
    """Rewrite/push/pop tags so the packet holds key's tag stack.  -> status"""
    nk, k0, k1 = _tags(key[k, W_PORT_TYPE_VLAN], key[k, W_SRC_VLAN2])
    no, o0, o1 = _tags(orig[o, W_PORT_TYPE_VLAN], orig[o, W_SRC_VLAN2])
    start = meta[r, M_START]
    if meta[r, M_LEN] < eth.HEADER_LEN + vlan.TAG_LEN * no:
        return COMMIT_BAD_L2
    d = nk - no                        # tags added (< 0: removed)
    ns = start - vlan.TAG_LEN * d
    if ns < 0:
        return COMMIT_NO_HEADROOM
    src = np.uint64(start)
    dst = np.uint64(ns)
    if d > 0:                          # MACs move back: copy ascending
        for j in range(MACS_LEN):
            data[r, dst + np.uint64(j)] = data[r, src + np.uint64(j)]
    elif d < 0:                        # MACs move forward: copy descending
        for j in range(MACS_LEN - 1, -1, -1):
            data[r, dst + np.uint64(j)] = data[r, src + np.uint64(j)]
    for j in range(nk):                # tags align on the innermost one
        t = k0 if j == 0 else k1
        pos = ns + MACS_LEN + vlan.TAG_LEN * j
        oj = j - d                     # the old tag at the same bytes, if any
        if 0 <= oj < no:
            if t == (o0 if oj == 0 else o1):
                continue
        else:
            put16(data, r, pos, vlan.TPID_8021Q)
        put16(data, r, pos + vlan.OFF_TCI, t & ~PRESENT)
    if d != 0:
        meta[r, M_START] = ns
        meta[r, M_L2] = ns
        meta[r, M_LEN] += vlan.TAG_LEN * d
        meta[r, M_WIRE_LEN] += vlan.TAG_LEN * d
        flags = meta[r, M_FLAGS] & ~(F_VLAN | F_QINQ)
        if nk >= 1:
            flags |= F_VLAN
        if nk == 2:
            flags |= F_QINQ
        meta[r, M_FLAGS] = flags
    return COMMIT_DONE


@njit(alloc=False, inline=True)
def _l4_begin(data, meta, r, flags):
    """-> (offset of the L4 checksum or -1 without an L4 header, its value,
    whether to update it: False for a UDP checksum of 0, "none")"""
    l4 = meta[r, M_L4]
    coff = -1
    if l4 >= 0:
        if flags & F_TCP:
            coff = l4 + tcp.OFF_CSUM
        elif flags & F_UDP:
            coff = l4 + udp.OFF_CSUM
        elif flags & (F_ICMP | F_ICMP6):
            coff = l4 + icmp.OFF_CSUM
    if coff < 0:
        return -1, 0, False
    lc = be16(data, r, coff)
    return coff, lc, not ((flags & F_UDP) != 0 and lc == 0)


@njit(alloc=False, inline=True)
def _l4_end(data, meta, r, flags, coff, lc, upd, touched, d4, w4):
    """Write new ports (TCP/UDP) or ICMP type+code, then store the L4 checksum if it
    changed (an updated UDP checksum of 0 goes out as 0xffff, RFC 768)."""
    if coff < 0:
        return
    if d4 & PORT_BITS:
        l4 = meta[r, M_L4]
        # only the half that changed: a fragment's key holds ports 0 (OVS), its bytes the real ones
        if flags & (F_ICMP | F_ICMP6):        # one type|code word
            old = be16(data, r, l4 + icmp.OFF_TYPE)
            new = old
            if d4 & SRC_PORT_BITS:
                new = (new & 0x00FF) | (_field(w4, U48, M8) << 8)
            if d4 & DST_PORT_BITS:
                new = (new & 0xFF00) | _field(w4, U32, M8)
            lc = csum_replace16(lc, old, new)
            put16(data, r, l4 + icmp.OFF_TYPE, new)
        else:                                 # TCP/UDP source and destination ports
            old = be32(data, r, l4)
            new = old
            if d4 & SRC_PORT_BITS:
                new = (new & 0x0000FFFF) | (_field(w4, U48, M16) << 16)
            if d4 & DST_PORT_BITS:
                new = (new & 0xFFFF0000) | _field(w4, U32, M16)
            lc = csum_replace32(lc, old, new)
            put32(data, r, l4, new)
        touched = True
    if upd and touched:
        if flags & F_UDP and lc == 0:
            lc = 0xFFFF
        put16(data, r, coff, lc)


@njit(alloc=False, inline=True)
def _commit_ipv4(data, meta, r, flags, key, k, d2, d3, d4):
    """IPv4 header fields, header checksum, pseudo header and ports."""
    l3 = meta[r, M_L3]
    w3 = key[k, W_NW_ADDRS]
    w4 = key[k, W_L4]
    hc = be16(data, r, l3 + ip4.OFF_CSUM)
    if d2 & TOS_BITS:
        old = be16(data, r, l3 + ip4.OFF_VER_IHL)
        new = (old & 0xFF00) | _field(key[k, W_DST_PROTO_TOS], Z, M8)
        hc = csum_replace16(hc, old, new)
        put16(data, r, l3 + ip4.OFF_VER_IHL, new)
    if d4 & TTL_BITS:
        old = be16(data, r, l3 + ip4.OFF_TTL)
        new = (_field(w4, U8, M8) << 8) | (old & 0xFF)
        hc = csum_replace16(hc, old, new)
        put16(data, r, l3 + ip4.OFF_TTL, new)
    coff, lc, upd = _l4_begin(data, meta, r, flags)
    pseudo = upd and (flags & (F_TCP | F_UDP)) != 0    # ICMPv4 has no pseudo header
    touched = False
    if d3 != Z:
        for off, shift in ((ip4.OFF_SRC, U32), (ip4.OFF_DST, Z)):
            old = be32(data, r, l3 + off)
            new = _field(w3, shift, M32)
            if old != new:
                hc = csum_replace32(hc, old, new)
                if pseudo:
                    lc = csum_replace32(lc, old, new)
                    touched = True
                put32(data, r, l3 + off, new)
    put16(data, r, l3 + ip4.OFF_CSUM, hc)
    _l4_end(data, meta, r, flags, coff, lc, upd, touched, d4, w4)


@njit(alloc=False, inline=True)
def _ip6_routed(data, r, l3, l4):
    """True when a routing header with segments left precedes L4: the pseudo
    header then carries the final destination, not the IPv6 destination."""
    nh = u8(data, r, l3 + ip6.OFF_NEXT)
    off = l3 + ip6.HEADER_LEN
    n = 0
    while off + ip6.EXT_MIN_LEN <= l4 and n < ip6.MAX_EXT_HEADERS:
        if nh == ip6.EXT_ROUTING and u8(data, r, off + 3) > 0:
            return True
        if nh == ip6.EXT_FRAGMENT:
            size = ip6.FRAG_HEADER_LEN
        elif nh == ip6.EXT_AH:
            size = (u8(data, r, off + 1) + 2) * 4
        else:
            size = (u8(data, r, off + 1) + 1) * 8
        nh = u8(data, r, off)
        off += size
        n += 1
    return False


@njit(alloc=False, inline=True)
def _ipv6_addr(data, r, off, hi, lo, pseudo, lc):
    """Write a 128-bit address (two key words); update lc when pseudo.  -> lc"""
    for j in range(4):
        w = hi if j < 2 else lo
        new = _field(w, U32 if j % 2 == 0 else Z, M32)
        old = be32(data, r, off + 4 * j)
        if old != new:
            if pseudo:
                lc = csum_replace32(lc, old, new)
            put32(data, r, off + 4 * j, new)
    return lc


@njit(alloc=False, inline=True)
def _commit_ipv6(data, meta, r, flags, key, k, orig, o, d2, d4, d9):
    """IPv6 header fields, pseudo header and ports."""
    l3 = meta[r, M_L3]
    if d2 & TOS_BITS or d9 & LABEL_BITS:
        first = be32(data, r, l3)
        if d2 & TOS_BITS:
            first = (first & ~TC_MASK) | (_field(key[k, W_DST_PROTO_TOS], Z, M8) << 20)
        if d9 & LABEL_BITS:
            first = (first & ~ip6.LABEL_MASK) | _field(key[k, W_LABEL_ARPOP], U32, LABEL_MASK)
        put32(data, r, l3, first)
    if d4 & TTL_BITS:
        data[r, np.uint64(l3 + ip6.OFF_HOP_LIMIT)] = np.uint8(_field(key[k, W_L4], U8, M8))
    coff, lc, upd = _l4_begin(data, meta, r, flags)    # TCP, UDP, ICMPv6: all pseudo
    touched = False
    s_hi, s_lo = key[k, W_IPV6_SRC], key[k, W_IPV6_SRC + 1]
    d_hi, d_lo = key[k, W_IPV6_DST], key[k, W_IPV6_DST + 1]
    if s_hi != orig[o, W_IPV6_SRC] or s_lo != orig[o, W_IPV6_SRC + 1]:
        lc = _ipv6_addr(data, r, l3 + ip6.OFF_SRC, s_hi, s_lo, upd, lc)
        touched = upd
    if d_hi != orig[o, W_IPV6_DST] or d_lo != orig[o, W_IPV6_DST + 1]:
        pseudo = upd and not ((flags & F_IP6_EXT) != 0 and _ip6_routed(data, r, l3, meta[r, M_L4]))
        lc = _ipv6_addr(data, r, l3 + ip6.OFF_DST, d_hi, d_lo, pseudo, lc)
        touched = touched or pseudo
    _l4_end(data, meta, r, flags, coff, lc, upd, touched, d4, key[k, W_L4])


@njit(alloc=False, inline=True)
def _commit_arp(data, meta, r, key, k, d2, d3, d9, d10, d11):
    """ARP opcode and addresses (no checksum)."""
    l3 = meta[r, M_L3]
    if l3 < 0 or l3 + arp.HEADER_LEN > meta[r, M_START] + meta[r, M_LEN]:
        return
    if d9 & ARPOP_BITS:
        put16(data, r, l3 + arp.OFF_OP, _field(key[k, W_LABEL_ARPOP], Z, ARPOP_BITS))
    elif d2 & PROTO_BITS:                 # OVS's member for arp_op: the low byte
        old = be16(data, r, l3 + arp.OFF_OP)
        put16(data, r, l3 + arp.OFF_OP, (old & 0xFF00) | _field(key[k, W_DST_PROTO_TOS], U8, M8))
    if d3 != Z:
        put32(data, r, l3 + arp.OFF_SPA, _field(key[k, W_NW_ADDRS], U32, M32))
        put32(data, r, l3 + arp.OFF_TPA, _field(key[k, W_NW_ADDRS], Z, M32))
    if d10 != Z:
        put48(data, r, l3 + arp.OFF_SHA, _field(key[k, W_ARP_SHA], U16, M48))
    if d11 != Z:
        put48(data, r, l3 + arp.OFF_THA, _field(key[k, W_ARP_THA], U16, M48))


@njit(alloc=False)
def _commit_diff(data, meta, row, key, orig, krow, orow):
    """The slow path of commit_row: some packet word differs."""
    r = np.uint64(row)
    k = np.uint64(krow)
    o = np.uint64(orow)
    d0 = key[k, W_PORT_TYPE_VLAN] ^ orig[o, W_PORT_TYPE_VLAN]
    d1 = key[k, W_SRC_VLAN2] ^ orig[o, W_SRC_VLAN2]
    d2 = key[k, W_DST_PROTO_TOS] ^ orig[o, W_DST_PROTO_TOS]
    d3 = key[k, W_NW_ADDRS] ^ orig[o, W_NW_ADDRS]
    d4 = key[k, W_L4] ^ orig[o, W_L4]
    d9 = key[k, W_LABEL_ARPOP] ^ orig[o, W_LABEL_ARPOP]
    if meta[r, M_L2] >= 0 and meta[r, M_LEN] >= eth.HEADER_LEN:
        if (d0 | d1) & TCI_BITS:
            status = _commit_vlan(data, meta, r, key, k, orig, o)
            if status < 0:
                return status
        start = meta[r, M_START]
        if d1 & MAC_BITS:
            put48(data, r, start + eth.OFF_SRC, _field(key[k, W_SRC_VLAN2], U16, M48))
        if d2 & MAC_BITS:
            put48(data, r, start + eth.OFF_DST, _field(key[k, W_DST_PROTO_TOS], U16, M48))
    flags = meta[r, M_FLAGS]
    if flags & F_IPV4:
        if d2 & TOS_BITS or d3 != Z or d4 & (TTL_BITS | PORT_BITS):
            _commit_ipv4(data, meta, r, flags, key, k, d2, d3, d4)
    elif flags & F_IPV6:
        d58 = Z
        for w in range(W_IPV6_SRC, W_IPV6_DST + 2):
            d58 |= key[k, w] ^ orig[o, w]
        if d2 & TOS_BITS or d4 & (TTL_BITS | PORT_BITS) or d9 & LABEL_BITS or d58 != Z:
            _commit_ipv6(data, meta, r, flags, key, k, orig, o, d2, d4, d9)
    elif flags & F_ARP and meta[r, M_PARSE_ERR] == 0:
        _commit_arp(data, meta, r, key, k, d2, d3, d9,
                    key[k, W_ARP_SHA] ^ orig[o, W_ARP_SHA], key[k, W_ARP_THA] ^ orig[o, W_ARP_THA])
    for w in range(PACKET_WORDS):
        orig[o, w] = key[k, w]
    return COMMIT_DONE


@njit(alloc=False, inline=True)
def commit_row(data, meta, row, key, orig, krow, orow):
    """Rewrite packet `row` so its bytes match key[krow], given orig[orow] (see module doc)."""
    k = np.uint64(krow)
    o = np.uint64(orow)
    diff = Z
    for w in range(PACKET_WORDS):
        diff |= key[k, w] ^ orig[o, w]
    if diff == Z:
        return COMMIT_UNCHANGED
    return _commit_diff(data, meta, row, key, orig, krow, orow)


@njit(alloc=False)
def commit_batch(data, meta, key, orig, n, drop_code):
    """commit_row for rows 0..n-1 not yet dropped (key, orig and packet share the row);
    a failed commit sets M_DROP = drop_code.  -> number of failed rows"""
    errors = 0
    for i in range(n):
        if meta[i, M_DROP] != 0:
            continue
        if commit_row(data, meta, i, key, orig, i, i) < 0:
            meta[i, M_DROP] = drop_code
            errors += 1
    return errors
