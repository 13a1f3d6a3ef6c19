"""Encapsulation: copies the flow tables sent to a tunnel port leave by its underlay, wrapped.

For each tx entry to a tunnel port, the outer headers are written into the
slot's headroom in front of the inner frame (no copy of the payload):

    Ethernet  dst = the remote VTEP's neighbour MAC, src = the underlay port's mac
    IPv4      TOS: the DSCP of `tos` (or the inner packet's: "inherit") and the inner
              packet's ECN, CE sent as ECT(0) (RFC 6040 normal mode, as Open vSwitch
              and Linux); ID 0, DF per df_default, TTL,
              protocol 17, header checksum          | IPv6: traffic class, label 0,
                                                     | next header 17, hop limit
    UDP       source port 49152 + (inner flow hash mod 16384) (RFC 7348 5.),
              destination dst_port, checksum 0 over IPv4 unless csum, computed
              over IPv6 unless csum = false (RFC 6935/6936)
    VXLAN     flags 0x08 (I), VNI                   | Geneve: version 0, protocol
                                                     | 0x6558, VNI, then an option for
                                                     | each non-zero tun_metadataN a
                                                     | [[geneve_option]] maps (in N order,
                                                     | C set if one is critical)

The remote VTEP and the VNI come from the port (remote_ip, key) or, with
"flow", from the tunnel fields the tx entry carries (tun_dst, tun_id as the
flow set them before the output).  A row that another tx entry also uses is
copied to a clone row first (each copy its own outer header; the others keep
their bytes).  A copy that cannot go is not sent and, if it was the packet's
last way out, the packet is dropped under the reason: tunnel_mtu (outer IP
packet over the underlay's mtu), tunnel_no_neighbor, tunnel_no_remote,
tunnel_no_room.  Per tunnel: packets and bytes sent, and failures, in
counters[t] (C_*).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.ports.copy_rows import copy_row
from softdpu.batch import M_DROP, M_HASH, M_IN_PORT, M_LEN, M_ORIGIN, M_START, M_TS
from softdpu.headers import ethernet as eth
from softdpu.headers import ipv4 as ip4
from softdpu.headers import ipv6 as ip6
from softdpu.headers import udp
from softdpu.headers.bytes import be16, put16, put32, put48, u8
from softdpu.stages.tunnel import neighbours
from softdpu.stages.tunnel.table import (KIND_VXLAN, T_CSUM, T_DF, T_DST_PORT, T_FAMILY, T_KEY, T_KEY_FLOW,
                                         T_KIND, T_LOCAL_HI, T_LOCAL_LO, T_MTU, T_REMOTE_FLOW, T_REMOTE_HI,
                                         T_REMOTE_LO, T_SRC_MAC, T_TOS, T_TTL, T_UNDERLAY, TOS_INHERIT)

C_TX_PACKETS, C_TX_BYTES, C_TX_FAILED, C_RX_PACKETS, C_RX_BYTES, C_RX_DROPPED = range(6)
C_COLS = 6
TUNNEL_HEADER_LEN = 8     # VXLAN, and Geneve without options


@njit(alloc=False, inline=True)
def _put64(data, r, off, v):
    put32(data, r, off, (v >> 32) & 0xFFFFFFFF)
    put32(data, r, off + 4, v & 0xFFFFFFFF)


@njit(alloc=False, inline=True)
def _inner_tos(data, r, start, length):
    """TOS / traffic class of the inner IP packet (past up to two VLAN tags), 0 if not IP."""
    off = start + 12
    end = start + length
    for _ in range(3):
        if off + 2 > end:
            return 0
        t = be16(data, r, off)
        if t == 0x8100 or t == 0x88A8:
            off += 4
            continue
        if t == 0x0800 and off + 4 <= end:
            return u8(data, r, off + 3)
        if t == 0x86DD and off + 4 <= end:
            return (be16(data, r, off + 2) >> 4) & 0xFF
        return 0
    return 0


@njit(alloc=False, inline=True)
def encap_row(data, meta, r, tun, t, tx, j, neigh, nstate, gopts, n_gopts):
    """Wrap row r for tunnel t in place (meta M_START/M_LEN updated), with the tunnel fields of
    tx entry j.  -> 0, or a drop code."""
    key_flow = tx[j, 2]
    addrs_flow = tx[j, 3]
    family = tun[t, T_FAMILY]
    l3_len = 20 if family == 4 else 40
    geneve = tun[t, T_KIND] != KIND_VXLAN
    opt_len = 0
    critical = 0
    if geneve:                                    # the options the flow's tun_metadataN carry
        for g in range(n_gopts):
            if tx[j, 4 + gopts[g, 3]] != 0:
                opt_len += 4 + gopts[g, 2]
                if gopts[g, 1] & 0x80:
                    critical = 0x40
    overhead = eth.HEADER_LEN + l3_len + udp.HEADER_LEN + TUNNEL_HEADER_LEN + opt_len
    inner = meta[r, M_START]
    length = meta[r, M_LEN]
    if length + overhead - eth.HEADER_LEN > tun[t, T_MTU]:
        return drops.TUNNEL_MTU
    if inner < overhead:
        return drops.TUNNEL_NO_ROOM
    if tun[t, T_REMOTE_FLOW]:
        if family == 4:
            rhi = np.int64(0)
            rlo = addrs_flow & 0xFFFFFFFF
        else:
            rhi = tx[j, 8]
            rlo = tx[j, 9]
        if rhi == 0 and rlo == 0:
            return drops.TUNNEL_NO_REMOTE
    else:
        rhi = tun[t, T_REMOTE_HI]
        rlo = tun[t, T_REMOTE_LO]
    mac = neighbours.lookup(neigh, nstate, family, rhi, rlo, meta[r, M_TS])
    if mac < 0:
        return drops.TUNNEL_NO_NEIGHBOR
    vni = (key_flow if tun[t, T_KEY_FLOW] else tun[t, T_KEY]) & 0xFFFFFF
    inner_tos = _inner_tos(data, r, inner, length)
    ecn = inner_tos & 3
    if ecn == 3:
        ecn = 2                                   # CE leaves as ECT(0): RFC 6040 4.1
    tos = ((inner_tos if tun[t, T_TOS] == TOS_INHERIT else tun[t, T_TOS]) & 0xFC) | ecn
    s = inner - overhead
    # Ethernet
    put48(data, r, s, mac)
    put48(data, r, s + 6, tun[t, T_SRC_MAC])
    put16(data, r, s + 12, 0x0800 if family == 4 else 0x86DD)
    l3 = s + eth.HEADER_LEN
    l4 = l3 + l3_len
    udp_len = length + udp.HEADER_LEN + TUNNEL_HEADER_LEN + opt_len
    # UDP + tunnel header
    put16(data, r, l4 + udp.OFF_SPORT, 49152 + (meta[r, M_HASH] & 0x3FFF))
    put16(data, r, l4 + udp.OFF_DPORT, tun[t, T_DST_PORT])
    put16(data, r, l4 + udp.OFF_LEN, udp_len)
    put16(data, r, l4 + udp.OFF_CSUM, 0)
    h = l4 + udp.HEADER_LEN
    if not geneve:
        put32(data, r, h, 0x08000000)
    else:                                  # version 0, options length, C if one is critical
        put32(data, r, h, ((opt_len // 4) << 24) | (critical << 16) | 0x6558)
        o = h + TUNNEL_HEADER_LEN
        for g in range(n_gopts):
            v = tx[j, 4 + gopts[g, 3]]
            if v != 0:
                put16(data, r, o, gopts[g, 0])
                put16(data, r, o + 2, (gopts[g, 1] << 8) | (gopts[g, 2] // 4))
                if gopts[g, 2] == 4:
                    put32(data, r, o + 4, v & 0xFFFFFFFF)
                else:
                    _put64(data, r, o + 4, v)
                o += 4 + gopts[g, 2]
    put32(data, r, h + 4, vni << 8)
    if family == 4:
        src = tun[t, T_LOCAL_LO] & 0xFFFFFFFF
        put16(data, r, l3, 0x4500 | tos)
        put16(data, r, l3 + ip4.OFF_TOTAL_LEN, l3_len + udp_len)
        put16(data, r, l3 + ip4.OFF_ID, 0)
        put16(data, r, l3 + ip4.OFF_FRAG, ip4.FLAG_DF if tun[t, T_DF] else 0)
        put16(data, r, l3 + ip4.OFF_TTL, (tun[t, T_TTL] << 8) | ip4.PROTO_UDP)
        put16(data, r, l3 + ip4.OFF_CSUM, 0)
        put32(data, r, l3 + ip4.OFF_SRC, src)
        put32(data, r, l3 + ip4.OFF_DST, rlo)
        put16(data, r, l3 + ip4.OFF_CSUM, ip4.checksum(data, r, l3, 20))
        if tun[t, T_CSUM]:
            acc = ip4.pseudo_sum(src, rlo, ip4.PROTO_UDP, udp_len)
            c = (~ip4.fold(ip4.ones_sum(data, r, l4, udp_len, acc))) & 0xFFFF
            put16(data, r, l4 + udp.OFF_CSUM, c if c != 0 else 0xFFFF)
    else:
        put32(data, r, l3, (6 << 28) | (tos << 20))
        put16(data, r, l3 + ip6.OFF_PAYLOAD_LEN, udp_len)
        put16(data, r, l3 + ip6.OFF_NEXT, (ip4.PROTO_UDP << 8) | tun[t, T_TTL])
        _put64(data, r, l3 + ip6.OFF_SRC, tun[t, T_LOCAL_HI])
        _put64(data, r, l3 + ip6.OFF_SRC + 8, tun[t, T_LOCAL_LO])
        _put64(data, r, l3 + ip6.OFF_DST, rhi)
        _put64(data, r, l3 + ip6.OFF_DST + 8, rlo)
        if tun[t, T_CSUM]:
            acc = ip6.pseudo_sum(data, r, l3 + ip6.OFF_SRC, l3 + ip6.OFF_DST, ip4.PROTO_UDP, udp_len)
            c = (~ip4.fold(ip4.ones_sum(data, r, l4, udp_len, acc))) & 0xFFFF
            put16(data, r, l4 + udp.OFF_CSUM, c if c != 0 else 0xFFFF)
    meta[r, M_START] = s
    meta[r, M_LEN] = length + overhead
    return 0


@njit(alloc=False, inline=True)
def _origin(meta, row, n):
    """The packet row a tx row stands for (a request softdpu made: -1)."""
    return row if row < n else meta[row, M_ORIGIN]


@njit(alloc=False)
def encap_tx(data, meta, tx, n_tx, n, clone_base, clones, port_tunnel, tun, neigh, nstate, resolve,
             resolve_any, gopts, n_gopts, refs, counters):
    """Encapsulate the tx entries to tunnel ports.  clones[0]: clone rows used so far (updated).
    refs: int64[rows, 2] scratch, all zero on entry and on return.  -> the new tx length.

    With `resolve` underlays: a copy with no neighbour asks for it (an ARP request / neighbour
    solicitation in a clone row, sent in the copy's place), and packets the decapsulation
    answered in place (M_DROP = punted) are sent back out of their port, in packet order."""
    for j in range(n_tx):                              # who uses each row, and each packet
        r = tx[j, 0]
        refs[r, 0] += 1
        refs[r if r < n else meta[r, M_ORIGIN], 1] += 1
    out = 0
    for j in range(n_tx):
        r = tx[j, 0]
        p = tx[j, 1]
        t = port_tunnel[p]
        if t < 0:
            for c in range(tx.shape[1]):
                tx[out, c] = tx[j, c]
            out += 1
            continue
        origin = r if r < n else meta[r, M_ORIGIN]
        row = r
        code = 0
        if refs[r, 0] > 1:                             # shared: wrap a copy of its own
            c = clone_base + clones[0]
            if c >= data.shape[0]:
                code = drops.TUNNEL_NO_ROOM
            else:
                copy_row(data, meta, r, c)
                meta[c, M_ORIGIN] = origin
                clones[0] += 1
                row = c
        if code == 0:
            code = encap_row(data, meta, row, tun, t, tx, j, neigh, nstate, gopts, n_gopts)
            if code == drops.TUNNEL_NO_NEIGHBOR and resolve[tun[t, T_UNDERLAY]]:
                c = clone_base + clones[0]
                if row != r:
                    c = row                            # the copy made for it is free again
                elif c >= data.shape[0]:
                    c = -1
                if c >= 0:
                    fam = tun[t, T_FAMILY]
                    if tun[t, T_REMOTE_FLOW] and fam == 6:
                        ahi, alo = tx[j, 8], tx[j, 9]
                    elif tun[t, T_REMOTE_FLOW]:
                        ahi, alo = np.int64(0), tx[j, 3] & 0xFFFFFFFF
                    else:
                        ahi, alo = tun[t, T_REMOTE_HI], tun[t, T_REMOTE_LO]
                    if neighbours.solicit(data, meta, c, tun, t, fam, ahi, alo, neigh, nstate,
                                          meta[origin, M_TS]):
                        if c == clone_base + clones[0]:
                            clones[0] += 1
                        tx[out, 0] = c                 # the request goes where the copy would have
                        tx[out, 1] = tun[t, T_UNDERLAY]
                        out += 1
        if code == 0:
            if row == r:
                refs[r, 0] = 0                         # wrapped in place: nobody else may use it
            else:
                refs[r, 0] -= 1
            for c in range(2, tx.shape[1]):
                tx[out, c] = tx[j, c]
            tx[out, 0] = row
            tx[out, 1] = tun[t, T_UNDERLAY]
            out += 1
            counters[t, C_TX_PACKETS] += 1
            counters[t, C_TX_BYTES] += meta[row, M_LEN]
        else:
            counters[t, C_TX_FAILED] += 1
            refs[r, 0] -= 1
            refs[origin, 1] -= 1
            if refs[origin, 1] == 0 and meta[origin, M_DROP] == 0:   # its last way out: dropped
                meta[origin, M_DROP] = code
    if resolve_any:
        p = 0
        for r in range(n):                             # ARP/ND the decapsulation answered in place,
            if meta[r, M_DROP] != drops.PUNTED or out >= tx.shape[0]:   # in packet order
                continue
            while p < out and _origin(meta, tx[p, 0], n) <= r:
                p += 1
            for q in range(out, p, -1):
                for col in range(tx.shape[1]):
                    tx[q, col] = tx[q - 1, col]
            meta[r, M_DROP] = 0
            tx[p, 0] = r
            tx[p, 1] = meta[r, M_IN_PORT]
            out += 1
    for r in range(n):                                 # leave the scratch zeroed
        refs[r, 0] = 0
        refs[r, 1] = 0
    for r in range(clone_base, clone_base + clones[0]):
        refs[r, 0] = 0
        refs[r, 1] = 0
    return out
