"""Parse: the flow key, header offsets, parse flags and flow hash of each packet.

One kernel call per batch walks rows 0..n-1.  A row that already carries a
drop code is left alone.  Otherwise the key row is zeroed and w0..w11 filled
as softdpu.key describes (Open vSwitch semantics), and the meta row gets:

  M_L2    the frame start (-1 if shorter than an Ethernet header)
  M_L3    first byte after the Ethernet + VLAN (+ LLC/SNAP) headers, any EtherType
  M_L4    first byte after the IPv4 header / IPv6 header + extension headers,
          any protocol; -1 for non-IP and for later fragments
  M_L5    first byte after the TCP/UDP/ICMP/ICMPv6 header (the VXLAN, Geneve
          or NAT-T ESP header when a flag says so); for ESP in IP the ESP
          header (= M_L4); -1 when absent.  May equal the IP end (no payload)
  M_FLAGS the F_* bits below
  M_HASH  a 32-bit symmetric flow hash (see _flow_hash)

A truncated or inconsistent packet gets a parse_* code in M_PARSE_ERR and
parsing stops: the key holds the fields read before the fault, as Open
vSwitch's flow extraction does, and the packet goes on through the flow
tables (conntrack will call it +inv).  With drop_malformed the code is also
put in M_DROP: the packet is dropped, counted under that reason.
Ethernet padding after the IP packet is normal (F_L2_PAD).  Fragments: the
first fragment's L4 header is read when it fits (M_L4, flags, tcp_flags),
without length checks and without tunnel/ESP recognition (that needs
reassembly), but as Open vSwitch's "normal" fragment handling its ports
(or ICMP type/code) stay 0 in the key; a later fragment has no L4.  As OVS, an IPv6 later fragment has nw_proto 44, and an IPv6 fragment
header with offset 0 and M=0 (atomic fragment) is not a fragment.  As OVS,
the IPv6 chain also skips AH (51); at most 8 extension headers.

Every byte read is checked against the frame end first (boundscheck is off);
indices are cast to uint64 in softdpu.headers.bytes, so no wraparound code.

Speed (bench/parse_bench.py: ~14 ns/packet, ~70 Mpps with the call): the
helpers take the 2-D batch arrays plus a row index, never a row view, and
are compiled `njit(alloc=False, inline=True)` (no NRT, IR inlining).  With numba's reference
counting on, every array argument of a branchy helper is incref'd and
decref'd per call (86 ns/packet); without NRT the kernel cannot allocate
at all, which is also what a per-packet kernel wants.
"""
import numpy as np

from softdpu.key import U8, U16, U32, U48
from softdpu._jit import njit
from softdpu.batch import (M_DROP, M_FLAGS, M_PARSE_ERR, M_HASH, M_IN_PORT, M_L2, M_L3, M_L4,
                           M_L5, M_LEN, M_START)
from softdpu.drops import (PARSE_BAD_IHL, PARSE_BAD_IP_LEN, PARSE_BAD_IP_VERSION,
                           PARSE_BAD_TCP_OFF, PARSE_BAD_UDP_LEN, PARSE_TRUNC_ARP,
                           PARSE_TRUNC_IP, PARSE_TRUNC_IP6_EXT, PARSE_TRUNC_L2,
                           PARSE_TRUNC_L4, PARSE_TRUNC_VLAN)
from softdpu.headers import arp, esp, geneve, icmp, tcp, udp, vlan, vxlan
from softdpu.headers import ethernet as eth
from softdpu.headers import ipv4 as ip4
from softdpu.headers import ipv6 as ip6
from softdpu.headers.bytes import be16, be32, be48, be64, u8
from softdpu.key import (KEY_WORDS, W_ARP_SHA, W_ARP_THA, W_DST_PROTO_TOS, W_IPV6_DST, W_IPV6_SRC,
                         W_L4, W_LABEL_ARPOP, W_NW_ADDRS, W_PORT_TYPE_VLAN, W_SRC_VLAN2)

# Parse flags (meta M_FLAGS).
F_VLAN = 1 << 0            # at least one 802.1Q / 802.1ad tag (vlan_tci)
F_QINQ = 1 << 1            # two tags (vlan_tci2 holds the inner)
F_LLC = 1 << 2             # 802.3 length frame; LLC/SNAP OUI 0 continues with its type
F_ARP = 1 << 3             # Ethernet/IPv4 ARP or RARP
F_IPV4 = 1 << 4
F_IPV6 = 1 << 5
F_IP_OPTIONS = 1 << 6      # IPv4 IHL > 5
F_FRAG = 1 << 7            # a fragment (nw_frag bit 1)
F_FRAG_LATER = 1 << 8      # a non-first fragment: no L4 (nw_frag bit 2)
F_IP6_EXT = 1 << 9         # IPv6 extension headers were skipped
F_TCP = 1 << 10
F_UDP = 1 << 11
F_ICMP = 1 << 12
F_ICMP6 = 1 << 13
F_VXLAN = 1 << 14          # UDP dst 4789 with a full VXLAN header at M_L5
F_GENEVE = 1 << 15         # UDP dst 6081 with a full Geneve base header at M_L5
F_ESP = 1 << 16            # ESP header (SPI + seq) at M_L5, in IP or in UDP
F_ESP_NATT = 1 << 17       # ... carried in UDP port 4500 (RFC 3948)
F_IKE_NATT = 1 << 18       # UDP 4500 with the zero non-ESP marker: IKE
F_NATT_KEEPALIVE = 1 << 19  # UDP 4500 with the 1-byte 0xff payload
F_L2_PAD = 1 << 20         # bytes after the IP packet (Ethernet padding/trailer)

FLAGS = tuple((name, value) for name, value in globals().items() if name.startswith("F_"))


def flag_names(flags):
    """The names of the F_* bits set in flags (for traces and test messages)."""
    return [name for name, value in FLAGS if flags & value]


ARP_ETH_IPV4 = arp.HTYPE_ETHERNET << 16 | arp.PTYPE_IPV4    # first 4 bytes of an ARP we parse
ARP_LENS = arp.HLEN_ETHERNET << 8 | arp.PLEN_IPV4
LLC_SNAP_SAPS = eth.LLC_SAP_SNAP << 8 | eth.LLC_SAP_SNAP       # DSAP, SSAP = aa aa

MASK32 = np.uint64(0xFFFFFFFF)
HASH_SEED = np.uint64(0x243F6A8885A308D3)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
FMIX1 = np.uint64(0xFF51AFD7ED558CCD)
FMIX2 = np.uint64(0xC4CEB9FE1A85EC53)


@njit(alloc=False, inline=True)
def _is_vlan_tpid(t):
    return t == eth.TYPE_VLAN or t == eth.TYPE_QINQ


@njit(alloc=False, inline=True)
def _parse_l2(data, r, start, end, meta, key):
    """Ethernet, up to two VLAN tags, 802.3 LLC/SNAP.  -> (code, flags, l3, dl_type)"""
    if end - start < eth.HEADER_LEN:
        meta[r, M_L2] = -1
        return PARSE_TRUNC_L2, 0, 0, 0
    key[r, W_SRC_VLAN2] = np.uint64(be48(data, r, start + eth.OFF_SRC)) << U16
    key[r, W_DST_PROTO_TOS] = np.uint64(be48(data, r, start + eth.OFF_DST)) << U16
    flags = 0
    off = start + eth.OFF_TYPE               # the EtherType / TPID
    dl_type = be16(data, r, off)
    tci = 0
    if _is_vlan_tpid(dl_type):
        if off + 2 + vlan.TAG_LEN > end:          # TPID, TCI, next type
            return PARSE_TRUNC_VLAN, F_VLAN, 0, 0
        tci = be16(data, r, off + vlan.OFF_TCI) | vlan.PRESENT
        flags = F_VLAN
        off += vlan.TAG_LEN
        dl_type = be16(data, r, off)
        if _is_vlan_tpid(dl_type):
            if off + 2 + vlan.TAG_LEN > end:          # TPID, TCI, next type
                return PARSE_TRUNC_VLAN, F_VLAN | F_QINQ, 0, 0
            key[r, W_SRC_VLAN2] |= np.uint64(be16(data, r, off + vlan.OFF_TCI) | vlan.PRESENT)
            flags |= F_QINQ
            off += vlan.TAG_LEN
            dl_type = be16(data, r, off)
    l3 = off + 2
    if dl_type < eth.TYPE_MIN:
        flags |= F_LLC
        snap_type = 0
        if (l3 + eth.LLC_SNAP_LEN <= end and be16(data, r, l3) == LLC_SNAP_SAPS
                and u8(data, r, l3 + 2) == eth.LLC_CTRL_UI
                and be16(data, r, l3 + 3) == 0 and u8(data, r, l3 + 5) == 0):
            snap_type = be16(data, r, l3 + 6)
        if snap_type >= eth.TYPE_MIN:
            dl_type = snap_type
            l3 += eth.LLC_SNAP_LEN
        else:
            dl_type = eth.TYPE_NONE
    key[r, W_PORT_TYPE_VLAN] |= (np.uint64(dl_type) << U16) | np.uint64(tci)
    meta[r, M_L3] = l3
    return 0, flags, l3, dl_type


@njit(alloc=False, inline=True)
def _parse_arp(data, r, l3, end, key):
    """Ethernet/IPv4 ARP or RARP.  -> code"""
    if (l3 + arp.HEADER_LEN > end or be32(data, r, l3) != ARP_ETH_IPV4
            or be16(data, r, l3 + arp.OFF_HLEN) != ARP_LENS):
        return PARSE_TRUNC_ARP
    op = be16(data, r, l3 + arp.OFF_OP)
    key[r, W_DST_PROTO_TOS] |= np.uint64(op & 0xFF) << U8
    key[r, W_NW_ADDRS] = ((np.uint64(be32(data, r, l3 + arp.OFF_SPA)) << U32)
                          | np.uint64(be32(data, r, l3 + arp.OFF_TPA)))
    key[r, W_LABEL_ARPOP] = np.uint64(op)
    key[r, W_ARP_SHA] = np.uint64(be48(data, r, l3 + arp.OFF_SHA)) << U16
    key[r, W_ARP_THA] = np.uint64(be48(data, r, l3 + arp.OFF_THA)) << U16
    return 0


@njit(alloc=False, inline=True)
def _parse_ipv4(data, r, l3, end, key):
    """IPv4 header.  -> (code, flags, l4, ip_end, proto, nw_frag)"""
    if l3 + ip4.MIN_HEADER_LEN > end:
        return PARSE_TRUNC_IP, 0, 0, 0, 0, 0
    vihl = u8(data, r, l3 + ip4.OFF_VER_IHL)
    if vihl >> 4 != ip4.VERSION:
        return PARSE_BAD_IP_VERSION, 0, 0, 0, 0, 0
    ihl = (vihl & 0xF) * 4
    if ihl < ip4.MIN_HEADER_LEN or l3 + ihl > end:
        return PARSE_BAD_IHL, 0, 0, 0, 0, 0
    total = be16(data, r, l3 + ip4.OFF_TOTAL_LEN)
    if total < ihl or l3 + total > end:
        return PARSE_BAD_IP_LEN, 0, 0, 0, 0, 0
    flags = F_IPV4
    if ihl > ip4.MIN_HEADER_LEN:
        flags |= F_IP_OPTIONS
    fragw = be16(data, r, l3 + ip4.OFF_FRAG)
    frag = 0
    if fragw & (ip4.FLAG_MF | ip4.FRAG_OFFSET_MASK):
        frag = 1
        flags |= F_FRAG
        if fragw & ip4.FRAG_OFFSET_MASK:
            frag = 3
            flags |= F_FRAG_LATER
    proto = u8(data, r, l3 + ip4.OFF_PROTO)
    tos = u8(data, r, l3 + ip4.OFF_TOS)
    ttl = u8(data, r, l3 + ip4.OFF_TTL)
    key[r, W_DST_PROTO_TOS] |= np.uint64((proto << 8) | tos)
    key[r, W_NW_ADDRS] = ((np.uint64(be32(data, r, l3 + ip4.OFF_SRC)) << U32)
                          | np.uint64(be32(data, r, l3 + ip4.OFF_DST)))
    key[r, W_L4] = np.uint64((ttl << 8) | frag)
    return 0, flags, l3 + ihl, l3 + total, proto, frag


@njit(alloc=False, inline=True)
def _parse_ipv6(data, r, l3, end, key):
    """IPv6 header and extension-header chain.  -> (code, flags, l4, ip_end, proto, nw_frag)"""
    if l3 + ip6.HEADER_LEN > end:
        return PARSE_TRUNC_IP, 0, 0, 0, 0, 0
    first = be32(data, r, l3)
    if first >> 28 != ip6.VERSION:
        return PARSE_BAD_IP_VERSION, 0, 0, 0, 0, 0
    ip_end = l3 + ip6.HEADER_LEN + be16(data, r, l3 + ip6.OFF_PAYLOAD_LEN)
    if ip_end > end:
        return PARSE_BAD_IP_LEN, 0, 0, 0, 0, 0
    key[r, W_IPV6_SRC] = be64(data, r, l3 + ip6.OFF_SRC)
    key[r, W_IPV6_SRC + 1] = be64(data, r, l3 + ip6.OFF_SRC + 8)
    key[r, W_IPV6_DST] = be64(data, r, l3 + ip6.OFF_DST)
    key[r, W_IPV6_DST + 1] = be64(data, r, l3 + ip6.OFF_DST + 8)
    key[r, W_LABEL_ARPOP] = np.uint64(first & ip6.LABEL_MASK) << U32
    tos = (first >> 20) & 0xFF
    ttl = u8(data, r, l3 + ip6.OFF_HOP_LIMIT)
    flags = F_IPV6
    frag = 0
    nh = u8(data, r, l3 + ip6.OFF_NEXT)
    off = l3 + ip6.HEADER_LEN
    n = 0
    while (nh == ip6.EXT_HOPOPTS or nh == ip6.EXT_ROUTING or nh == ip6.EXT_FRAGMENT
           or nh == ip6.EXT_AH or nh == ip6.EXT_DSTOPTS):
        if n == ip6.MAX_EXT_HEADERS or off + ip6.EXT_MIN_LEN > ip_end:
            return PARSE_TRUNC_IP6_EXT, flags | F_IP6_EXT, 0, 0, 0, 0
        n += 1
        if nh == ip6.EXT_FRAGMENT:
            offlg = be16(data, r, off + ip6.FRAG_OFF_OFFLG)
            nh = u8(data, r, off)
            off += ip6.FRAG_HEADER_LEN
            if offlg != 0:
                frag = 1
                flags |= F_FRAG
                if offlg & ip6.FRAG_OFFSET_MASK:
                    frag = 3
                    flags |= F_FRAG_LATER
                    nh = ip6.EXT_FRAGMENT       # as OVS: a later fragment's nw_proto
                    break
        else:
            size = u8(data, r, off + 1)
            size = (size + 2) * 4 if nh == ip6.EXT_AH else (size + 1) * 8
            if off + size > ip_end:
                return PARSE_TRUNC_IP6_EXT, flags | F_IP6_EXT, 0, 0, 0, 0
            nh = u8(data, r, off)
            off += size
    if n:
        flags |= F_IP6_EXT
    key[r, W_DST_PROTO_TOS] |= np.uint64((nh << 8) | tos)
    key[r, W_L4] = np.uint64((ttl << 8) | frag)
    return 0, flags, off, ip_end, nh, frag


@njit(alloc=False, inline=True)
def _parse_l4(data, r, l4, ip_end, proto, frag, is_v6, meta, key):
    """TCP/UDP/ICMP/ICMPv6 and tunnel/ESP recognition.  -> (code, flags)

    In a first fragment (frag != 0) nothing here is an error: an L4 header
    that does not fit is just absent.
    """
    lax = frag != 0
    avail = ip_end - l4
    if proto == ip4.PROTO_TCP:
        if avail < tcp.MIN_HEADER_LEN:
            return (0 if lax else PARSE_TRUNC_L4), 0
        key[r, W_L4] |= ((np.uint64(be32(data, r, l4 + tcp.OFF_SPORT)) << U32)
                         | (np.uint64(be16(data, r, l4 + tcp.OFF_DOFF_FLAGS) & tcp.FLAGS_MASK) << U16))
        doff = (u8(data, r, l4 + tcp.OFF_DOFF_FLAGS) >> 4) * 4
        if doff < tcp.MIN_HEADER_LEN or doff > avail:
            return (0 if lax else PARSE_BAD_TCP_OFF), F_TCP
        meta[r, M_L5] = l4 + doff
        return 0, F_TCP
    if proto == ip4.PROTO_UDP:
        if avail < udp.HEADER_LEN:
            return (0 if lax else PARSE_TRUNC_L4), 0
        ports = be32(data, r, l4 + udp.OFF_SPORT)
        key[r, W_L4] |= np.uint64(ports) << U32
        if lax:
            meta[r, M_L5] = l4 + udp.HEADER_LEN
            return 0, F_UDP
        ulen = be16(data, r, l4 + udp.OFF_LEN)
        if ulen < udp.HEADER_LEN or ulen > avail:
            return PARSE_BAD_UDP_LEN, F_UDP
        p = l4 + udp.HEADER_LEN
        meta[r, M_L5] = p
        payload = ulen - udp.HEADER_LEN
        dport = ports & 0xFFFF
        if dport == vxlan.UDP_PORT:
            return 0, (F_UDP | F_VXLAN) if payload >= vxlan.HEADER_LEN else F_UDP
        if dport == geneve.UDP_PORT:
            return 0, (F_UDP | F_GENEVE) if payload >= geneve.HEADER_LEN else F_UDP
        if dport == esp.UDP_PORT_NATT or (ports >> 16) == esp.UDP_PORT_NATT:
            if payload == 1 and u8(data, r, p) == esp.NATT_KEEPALIVE:
                return 0, F_UDP | F_NATT_KEEPALIVE
            if payload >= esp.NON_ESP_MARKER_LEN and be32(data, r, p) == 0:
                return 0, F_UDP | F_IKE_NATT
            if payload >= esp.HEADER_LEN:
                return 0, F_UDP | F_ESP | F_ESP_NATT
        return 0, F_UDP
    if (proto == ip4.PROTO_ICMP and not is_v6) or (proto == ip4.PROTO_ICMPV6 and is_v6):
        if avail < icmp.HEADER_LEN:
            return (0 if lax else PARSE_TRUNC_L4), 0
        key[r, W_L4] |= ((np.uint64(u8(data, r, l4 + icmp.OFF_TYPE)) << U48)
                         | (np.uint64(u8(data, r, l4 + icmp.OFF_CODE)) << U32))
        meta[r, M_L5] = l4 + icmp.HEADER_LEN
        return 0, F_ICMP6 if is_v6 else F_ICMP
    if proto == ip4.PROTO_ESP and not lax and avail >= esp.HEADER_LEN:
        meta[r, M_L5] = l4
        return 0, F_ESP
    return 0, 0


@njit(alloc=False, inline=True)
def _parse_frame(data, r, start, end, meta, key):
    """Parse data[r, start:end] into meta[r] and key[r].  -> (code, flags)"""
    code, flags, l3, dl_type = _parse_l2(data, r, start, end, meta, key)
    if code:
        return code, flags
    if dl_type == eth.TYPE_ARP or dl_type == eth.TYPE_RARP:
        return _parse_arp(data, r, l3, end, key), flags | F_ARP
    if dl_type == eth.TYPE_IPV4:
        code, f3, l4, ip_end, proto, frag = _parse_ipv4(data, r, l3, end, key)
        is_v6 = False
    elif dl_type == eth.TYPE_IPV6:
        code, f3, l4, ip_end, proto, frag = _parse_ipv6(data, r, l3, end, key)
        is_v6 = True
    else:
        return 0, flags
    flags |= f3
    if code:
        return code, flags
    if ip_end < end:
        flags |= F_L2_PAD
    if frag & 2:
        return 0, flags
    meta[r, M_L4] = l4
    code, f4 = _parse_l4(data, r, l4, ip_end, proto, frag, is_v6, meta, key)
    if frag:  # as OVS (frag handling "normal"): every fragment is looked up with tp_src = tp_dst = 0
        key[r, W_L4] &= np.uint64(0x00000000FFFFFFFF)
    return code, flags | f4


@njit(alloc=False, inline=True)
def _mix(h, w):
    h = (h ^ w) * GOLDEN
    return h ^ (h >> U32)


@njit(alloc=False, inline=True)
def _flow_hash(key, r, flags):
    """Symmetric 32-bit flow hash from a parsed key row.

    IP: addresses, protocol and (TCP/UDP) ports, with the two endpoints put in
    a fixed order first so both directions hash alike.  Fragments hash on the
    addresses only, so every fragment of a datagram lands together.  Non-IP
    (ARP included): the two MACs and the EtherType.
    """
    z = np.uint64(0)
    a_hi = z
    b_hi = z
    a_port = z
    b_port = z
    if flags & F_IPV4:
        a_lo = key[r, W_NW_ADDRS] >> U32
        b_lo = key[r, W_NW_ADDRS] & MASK32
    elif flags & F_IPV6:
        a_hi = key[r, W_IPV6_SRC]
        a_lo = key[r, W_IPV6_SRC + 1]
        b_hi = key[r, W_IPV6_DST]
        b_lo = key[r, W_IPV6_DST + 1]
    else:
        a_lo = key[r, W_SRC_VLAN2] >> U16          # the MACs
        b_lo = key[r, W_DST_PROTO_TOS] >> U16
    if flags & (F_IPV4 | F_IPV6):
        if flags & F_FRAG:
            proto = z
        else:
            proto = (key[r, W_DST_PROTO_TOS] >> U8) & np.uint64(0xFF)
            if flags & (F_TCP | F_UDP):
                a_port = key[r, W_L4] >> U48
                b_port = (key[r, W_L4] >> U32) & np.uint64(0xFFFF)
    else:
        proto = (key[r, W_PORT_TYPE_VLAN] >> U16) & np.uint64(0xFFFF)   # dl_type
    if a_hi > b_hi or (a_hi == b_hi and (a_lo > b_lo or (a_lo == b_lo and a_port > b_port))):
        a_hi, b_hi = b_hi, a_hi
        a_lo, b_lo = b_lo, a_lo
        a_port, b_port = b_port, a_port
    h = _mix(HASH_SEED, (proto << U32) | (a_port << U16) | b_port)
    h = _mix(h, a_hi)
    h = _mix(h, a_lo)
    h = _mix(h, b_hi)
    h = _mix(h, b_lo)
    h ^= h >> np.uint64(33)          # murmur3 fmix64
    h *= FMIX1
    h ^= h >> np.uint64(33)
    h *= FMIX2
    h ^= h >> np.uint64(33)
    return np.int64(h >> U32)


@njit(alloc=False)
def parse_batch(data, meta, key, n, drop_malformed):
    """Parse rows 0..n-1 of a batch in place (see the module docstring)."""
    for i in range(min(n, meta.shape[0])):
        if meta[i, M_DROP] == 0:
            parse_row(data, meta, key, i, drop_malformed)


@njit(alloc=False, inline=True)
def parse_row(data, meta, key, i, drop_malformed):
    """Parse one row (its frame at meta M_START, M_LEN; in_port from M_IN_PORT)."""
    slot = data.shape[1]
    r = np.uint64(i)
    for w in range(KEY_WORDS):
        key[r, w] = 0
    key[r, W_PORT_TYPE_VLAN] = np.uint64(meta[r, M_IN_PORT] & 0xFFFFFFFF) << U32
    start = meta[r, M_START]
    end = start + meta[r, M_LEN]
    meta[r, M_L2] = start
    meta[r, M_L3] = -1
    meta[r, M_L4] = -1
    meta[r, M_L5] = -1
    meta[r, M_HASH] = 0
    meta[r, M_PARSE_ERR] = 0
    if start < 0 or end < start or end > slot:   # meta outside the slot: never read it
        meta[r, M_L2] = -1
        meta[r, M_FLAGS] = 0
        meta[r, M_DROP] = PARSE_TRUNC_L2
        return
    code, flags = _parse_frame(data, r, start, end, meta, key)
    meta[r, M_FLAGS] = flags
    meta[r, M_HASH] = _flow_hash(key, r, flags)
    if code:
        meta[r, M_PARSE_ERR] = code
        if drop_malformed:
            meta[r, M_DROP] = code


class Parse:
    """The parse stage: fills batch.key and the parse columns of batch.meta.

    drop_malformed: drop packets with a parse error (counted under its
    reason) instead of passing them on with the fields that did parse.
    """

    def __init__(self, drop_malformed=False):
        self.drop_malformed = drop_malformed

    def run(self, batch):
        parse_batch(batch.data, batch.meta, batch.key, batch.n, self.drop_malformed)
