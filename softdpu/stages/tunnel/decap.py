"""Decapsulation: tunnel packets arriving on an underlay port become their inner frames.

After the parser, a packet that came in on a port carrying tunnels, is
IPv4/IPv6 (not a fragment) UDP to a local VTEP address, and whose UDP
destination port is a tunnel's dst_port, is matched to a tunnel port as Open
vSwitch does: its type, underlay, local_ip and dst_port, then remote_ip (the
outer source, or "flow" for any) and key (the VNI, or "flow" for any), as
OVS's tnl_find: a port with a fixed key first, then one with a fixed remote_ip.  A packet no tunnel port
takes stays what it is: an ordinary UDP packet of the underlay port.

Taken packets are checked (a bad one is dropped, counted per reason):
tunnel_bad_checksum when the outer IPv4 header checksum or a non-zero UDP
checksum is wrong; tunnel_bad_header for a VXLAN header whose first word is
not 0x08000000 (the I flag alone) or, as OVS also takes it, 0x0C000003
(VXLAN-GPE: I and P flags, next protocol Ethernet), or whose byte after the VNI
is not 0 (OVS; Linux takes only the first form),
a Geneve header of another version or protocol than 0x6558 (Ethernet), or
options or an inner frame that do not fit; tunnel_critical_option for a
Geneve option with the critical bit that no [[geneve_option]] maps (RFC 8926
3.5); a mapped option of another length is a bad header.  Mapped options set
their tun_metadataN (the data, right-aligned); unmapped ones are skipped.  Then the
row's frame becomes the inner Ethernet frame (M_START, M_LEN moved; no copy),
the row is parsed again with in_port = the tunnel port, and the key's tun_id
(the VNI), tun_src and tun_dst (IPv4 outer addresses) or tun_ipv6_src and
tun_ipv6_dst (IPv6) are set.  An outer CE
mark is carried to an ECN-capable inner IP packet; a not-ECN-capable one is
dropped (tunnel_ecn), as RFC 6040 4.2, Linux and Open vSwitch do.  meta
M_IN_PORT stays the underlay port: port counters count what arrived on the
wire; the tunnel's own counters count the inner frames.
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_FLAGS, M_IN_PORT, M_L3, M_L4, M_LEN, M_START
from softdpu.headers import ethernet as eth
from softdpu.headers import geneve
from softdpu.headers import ipv4 as ip4
from softdpu.headers import ipv6 as ip6
from softdpu.headers import udp
from softdpu.headers.bytes import be16, be32, be64, put16, u8
from softdpu.key import W_DST_PROTO_TOS, W_TUN_ADDRS, W_TUN_ID, W_TUN_IPV6_DST, W_TUN_IPV6_SRC, W_TUN_METADATA
from softdpu.stages.parse import F_ARP, F_FRAG, F_ICMP6, F_IPV4, F_IPV6, F_UDP, parse_row
from softdpu.stages.tunnel import neighbours
from softdpu.stages.tunnel.encap import C_RX_BYTES, C_RX_DROPPED, C_RX_PACKETS
from softdpu.stages.tunnel.table import (KIND_VXLAN, T_DST_PORT, T_FAMILY, T_KEY, T_KEY_FLOW, T_KIND,
                                         T_LOCAL_HI, T_LOCAL_LO, T_OFPORT, T_REMOTE_FLOW, T_REMOTE_HI,
                                         T_REMOTE_LO, T_UNDERLAY)


@njit(alloc=False)
def _find_tunnel(tun, n_tun, in_port, family, dhi, dlo, shi, slo, dport, vni):
    """The tunnel row that takes this packet, or -1: as OVS's tnl_find, a fixed key first, then
    a fixed remote (fixed key and remote, fixed key, fixed remote, neither)."""
    best, rank = -1, -1
    for t in range(n_tun):
        if (tun[t, T_UNDERLAY] != in_port or tun[t, T_FAMILY] != family or tun[t, T_DST_PORT] != dport
                or tun[t, T_LOCAL_HI] != dhi or tun[t, T_LOCAL_LO] != dlo):
            continue
        if not tun[t, T_REMOTE_FLOW] and (tun[t, T_REMOTE_HI] != shi or tun[t, T_REMOTE_LO] != slo):
            continue
        if not tun[t, T_KEY_FLOW] and tun[t, T_KEY] != vni:
            continue
        k = (0 if tun[t, T_KEY_FLOW] else 2) + (0 if tun[t, T_REMOTE_FLOW] else 1)
        if k > rank:
            best, rank = t, k
    return best


@njit(alloc=False)
def _udp_ok(data, r, family, l3, l4, udp_len):
    """Is the UDP checksum right (or 0 = none, allowed for tunnels on both families, RFC 6935)?"""
    c = be16(data, r, l4 + udp.OFF_CSUM)
    if c == 0:
        return True
    if family == 4:
        acc = ip4.pseudo_sum(be32(data, r, l3 + ip4.OFF_SRC), be32(data, r, l3 + ip4.OFF_DST),
                             ip4.PROTO_UDP, udp_len)
    else:
        acc = ip6.pseudo_sum(data, r, l3 + ip6.OFF_SRC, l3 + ip6.OFF_DST, ip4.PROTO_UDP, udp_len)
    return ip4.fold(ip4.ones_sum(data, r, l4, udp_len, acc)) == 0xFFFF


@njit(alloc=False)
def _mark_ce(data, meta, key, i):
    """The outer header said CE (congestion): mark the inner IP packet CE too (RFC 6040 4.2).
    -> False when the inner packet is IP but not ECN-capable: it must be dropped."""
    flags = meta[i, M_FLAGS]
    l3 = meta[i, M_L3]
    if l3 < 0 or not (flags & (F_IPV4 | F_IPV6)):
        return True                                  # not IP: no ECN field to mark
    tos = np.int64((key[i, W_DST_PROTO_TOS]) & np.uint64(0xFF))
    if tos & 3 == 0:
        return False
    if tos & 3 == 3:
        return True
    if flags & F_IPV4:
        old = be16(data, i, l3)
        put16(data, i, l3, old | 3)
        put16(data, i, l3 + ip4.OFF_CSUM, ip4.csum_replace16(be16(data, i, l3 + ip4.OFF_CSUM), old, old | 3))
    else:
        put16(data, i, l3, be16(data, i, l3) | 0x0030)
    key[i, W_DST_PROTO_TOS] |= np.uint64(3)
    return True


@njit(alloc=False)
def _option(gopts, n_gopts, cls, typ):
    """The row of the [[geneve_option]] for (class, type), or -1."""
    for g in range(n_gopts):
        if gopts[g, 0] == cls and gopts[g, 1] == typ:
            return g
    return -1


@njit(alloc=False)
def decap_batch(data, meta, key, n, underlay, tun, n_tun, gopts, n_gopts, resolve, neigh, nstate,
                drop_malformed, counters):
    """Decapsulate the rows 0..n-1 that are tunnel packets for us (module doc).  -> rows taken."""
    taken = 0
    for i in range(n):
        if meta[i, M_DROP] != 0 or underlay[meta[i, M_IN_PORT]] == 0:
            continue
        flags = meta[i, M_FLAGS]
        if resolve[meta[i, M_IN_PORT]] and flags & (F_ARP | F_ICMP6):     # ARP / ND for a VTEP?
            if flags & F_ARP:
                res = neighbours.answer_arp(data, meta, i, meta[i, M_IN_PORT], tun, n_tun, neigh, nstate)
            else:
                res = neighbours.answer_nd(data, meta, i, meta[i, M_IN_PORT], tun, n_tun, neigh, nstate)
            if res == 1:
                meta[i, M_DROP] = drops.PUNTED     # answered in place: encap sends it back out
            elif res == 2:
                meta[i, M_DROP] = drops.VTEP_CONSUMED
            continue
        if not (flags & F_UDP) or (flags & F_FRAG) or not (flags & (F_IPV4 | F_IPV6)):
            continue
        l3 = meta[i, M_L3]
        l4 = meta[i, M_L4]
        end = meta[i, M_START] + meta[i, M_LEN]
        family = 4 if flags & F_IPV4 else 6
        if family == 4:
            dhi, dlo = np.int64(0), np.int64(be32(data, i, l3 + ip4.OFF_DST))
            shi, slo = np.int64(0), np.int64(be32(data, i, l3 + ip4.OFF_SRC))
        else:
            dhi = np.int64(be64(data, i, l3 + ip6.OFF_DST))
            dlo = np.int64(be64(data, i, l3 + ip6.OFF_DST + 8))
            shi = np.int64(be64(data, i, l3 + ip6.OFF_SRC))
            slo = np.int64(be64(data, i, l3 + ip6.OFF_SRC + 8))
        udp_len = be16(data, i, l4 + udp.OFF_LEN)
        h = l4 + udp.HEADER_LEN
        if h + 8 > end:
            continue                                # too short to be a tunnel packet: not ours
        dport = be16(data, i, l4 + udp.OFF_DPORT)
        vni = np.int64(be32(data, i, h + 4) >> 8)
        t = _find_tunnel(tun, n_tun, meta[i, M_IN_PORT], family, dhi, dlo, shi, slo, dport, vni)
        if t < 0:
            continue
        taken += 1
        code = 0
        payload_end = l4 + udp_len
        if family == 4 and ip4.checksum(data, i, l3, (u8(data, i, l3) & 0xF) * 4) != 0:
            code = drops.TUNNEL_BAD_CHECKSUM
        elif udp_len < udp.HEADER_LEN + 8 or payload_end > end:
            code = drops.TUNNEL_BAD_HEADER
        elif not _udp_ok(data, i, family, l3, l4, udp_len):
            code = drops.TUNNEL_BAD_CHECKSUM
        inner = h + 8
        if code == 0 and tun[t, T_KIND] == KIND_VXLAN:
            w = be32(data, i, h)
            if (w != 0x08000000 and w != 0x0C000003) or u8(data, i, h + 7) != 0:   # as OVS
                code = drops.TUNNEL_BAD_HEADER
        elif code == 0:
            b0 = u8(data, i, h)
            opt_len = (b0 & geneve.OPTLEN_MASK) * 4
            if b0 >> 6 != geneve.VERSION or be16(data, i, h + geneve.OFF_PROTO) != geneve.PROTO_ETHERNET:
                code = drops.TUNNEL_BAD_HEADER
            elif inner + opt_len > payload_end:
                code = drops.TUNNEL_BAD_HEADER
            else:
                o = inner
                while o < inner + opt_len and code == 0:    # option TLVs: class, type, length
                    if o + geneve.OPTION_HEADER_LEN > inner + opt_len:
                        code = drops.TUNNEL_BAD_HEADER
                        break
                    olen = geneve.OPTION_HEADER_LEN + (u8(data, i, o + 3) & 0x1F) * 4
                    g = _option(gopts, n_gopts, be16(data, i, o), u8(data, i, o + 2))
                    if o + olen > inner + opt_len:
                        code = drops.TUNNEL_BAD_HEADER
                    elif g >= 0 and olen - geneve.OPTION_HEADER_LEN != gopts[g, 2]:
                        code = drops.TUNNEL_BAD_HEADER       # a known option of the wrong length
                    elif g < 0 and u8(data, i, o + 2) & 0x80:
                        code = drops.TUNNEL_CRITICAL_OPTION
                    o += olen
                inner += opt_len
        if code == 0 and payload_end - inner < eth.HEADER_LEN:
            code = drops.TUNNEL_BAD_HEADER
        if code != 0:
            meta[i, M_DROP] = code
            counters[t, C_RX_DROPPED] += 1
            continue
        counters[t, C_RX_PACKETS] += 1
        counters[t, C_RX_BYTES] += payload_end - inner
        meta[i, M_START] = inner
        meta[i, M_LEN] = payload_end - inner
        if family == 4:
            outer_ecn = u8(data, i, l3 + 1) & 3
        else:
            outer_ecn = (be16(data, i, l3) >> 4) & 3
        arrived = meta[i, M_IN_PORT]
        meta[i, M_IN_PORT] = tun[t, T_OFPORT]        # the inner frame's in_port, in its key
        parse_row(data, meta, key, i, drop_malformed)
        meta[i, M_IN_PORT] = arrived                 # port counters count what the wire brought
        if outer_ecn == 3 and not _mark_ce(data, meta, key, i):
            meta[i, M_DROP] = drops.TUNNEL_ECN
            counters[t, C_RX_DROPPED] += 1
            continue
        key[i, W_TUN_ID] = np.uint64(vni)
        if tun[t, T_KIND] != KIND_VXLAN:               # mapped Geneve options -> tun_metadataN
            o = h + 8
            while o < inner:
                olen = geneve.OPTION_HEADER_LEN + (u8(data, i, o + 3) & 0x1F) * 4
                g = _option(gopts, n_gopts, be16(data, i, o), u8(data, i, o + 2))
                if g >= 0:
                    if gopts[g, 2] == 4:
                        v = np.uint64(be32(data, i, o + 4))
                    else:
                        v = np.uint64(be64(data, i, o + 4))
                    key[i, W_TUN_METADATA + gopts[g, 3]] = v
                o += olen
        if family == 4:
            key[i, W_TUN_ADDRS] = (np.uint64(slo) << np.uint64(32)) | np.uint64(dlo)
        else:
            key[i, W_TUN_IPV6_SRC] = np.uint64(shi)
            key[i, W_TUN_IPV6_SRC + 1] = np.uint64(slo)
            key[i, W_TUN_IPV6_DST] = np.uint64(dhi)
            key[i, W_TUN_IPV6_DST + 1] = np.uint64(dlo)
    return taken
