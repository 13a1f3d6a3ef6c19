"""Output glue for the action interpreter: emit one copy of a packet, and `normal`.

emit(): if the packet words of the key row equal the parsed key (orig), the
tx entry references the packet's own row (no copy, the common case);
otherwise the packet is copied into a clone row (rows `size`.. of the Batch)
and its bytes are committed there (commit.py).  A later output with the same
key reuses the clone.  The packet's row itself is never rewritten, so earlier
tx entries keep their bytes.  A clone's meta M_ORIGIN names its packet.

State (int64[S_COLS]) carries the kernel's running counts between helpers:
the MAC table counters (l2.py, first five), its aging and size, the tx list
length, the clone rows used, and the copies lost for want of room.
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_LEN, M_ORIGIN, M_START, M_TRACED, M_TS, M_WIRE_LEN
from softdpu.key import N_TUN_METADATA, PACKET_WORDS, W_TUN_ADDRS, W_TUN_ID, W_TUN_IPV6_DST, W_TUN_METADATA
from softdpu.stages.flows.commit import commit_row
from softdpu.stages.l2 import TRUNK, carries, ingress_vlan, mac_learn, mac_lookup
from softdpu.stages.flows.trace_records import (N_FLOOD, N_KNOWN, N_LEARNED, N_RESERVED, N_VLAN_REFUSED,
                                                T_NORMAL, T_OUTPUT, record)

S_AGING = 5
S_MAX_MACS = 6
S_NTX = 7
S_CLONES = 8          # clone rows used in this batch
S_LAST = 9            # the clone row made for the current packet, -1 none
S_LOST_TX = 10        # copies lost: tx list full
S_LOST_CLONE = 11     # copies lost: no clone row
S_LOST_COMMIT = 12    # copies lost: commit failed (no headroom)
S_CLONE_BASE = 13     # first clone row (the batch size)
# 14, 15: the trace buffer's fill level and lost records (trace_records.py)
S_TUNNELS = 16        # 1: the pipeline has tunnel ports (tx entries carry the tunnel fields)
S_COLS = 17

P_INDEX = 0           # portinfo rows: port index of an ofport (-1 none)
P_OFPORT = 1          # ofport of port index k
P_TAG = 2             # l2 port_tag of port index k (TRUNK = -1)
P_COUNT = 3           # portinfo[3, 0]: number of ports


@njit(alloc=False, inline=True)
def _same(key, orig, i, row):
    for w in range(PACKET_WORDS):
        if key[i, w] != orig[row, w]:
            return False
    return True


@njit(alloc=False, inline=True)
def push_tx(tx, state, row, port, key, i):
    """Append (row, port, tun_id, tun_src|tun_dst, tun_metadata0..3) to the tx list, the tunnel fields as packet i's
    key has them now (a tunnel port with key/remote_ip "flow" uses them).  -> 1, or the counted
    drop code TX_FULL."""
    n = state[S_NTX]
    if n >= tx.shape[0]:
        state[S_LOST_TX] += 1
        return drops.TX_FULL
    tx[n, 0] = row
    tx[n, 1] = port
    if state[S_TUNNELS]:
        tunnel_fields(tx, n, key, i)
    state[S_NTX] = n + 1
    return 1


@njit(alloc=False, inline=True)
def tunnel_fields(tx, n, key, i):
    """tx entry n carries packet i's tunnel fields as they are now (for key/remote "flow")."""
    tx[n, 2] = np.int64(key[i, W_TUN_ID])
    tx[n, 3] = np.int64(key[i, W_TUN_ADDRS])
    for m in range(N_TUN_METADATA):
        tx[n, 4 + m] = np.int64(key[i, W_TUN_METADATA + m])
    tx[n, 8] = np.int64(key[i, W_TUN_IPV6_DST])
    tx[n, 9] = np.int64(key[i, W_TUN_IPV6_DST + 1])


@njit(alloc=False, inline=True)
def snapshot(key, orig, i, state):
    """Packet i is about to be rewritten: keep its key as the bytes stand, forget its last clone."""
    state[S_LAST] = -1
    for w in range(PACKET_WORDS):
        orig[i, w] = key[i, w]


@njit(alloc=False)
def emit(data, meta, key, orig, tx, i, port, clone_base, state):
    """One copy of packet i to `port`, with the key as modified so far.  -> 1 sent, else a drop code."""
    row = i
    if not _same(key, orig, i, i):
        last = state[S_LAST]
        if last >= 0 and _same(key, orig, i, last):
            row = last
        else:
            c = clone_base + state[S_CLONES]
            if c >= data.shape[0]:
                state[S_LOST_CLONE] += 1
                return drops.CLONE_FULL
            if state[S_NTX] >= tx.shape[0]:
                state[S_LOST_TX] += 1
                return drops.TX_FULL
            for m in range(meta.shape[1]):
                meta[c, m] = meta[i, m]
            s = meta[i, M_START]
            for b in range(s, s + meta[i, M_LEN]):
                data[c, b] = data[i, b]
            for w in range(PACKET_WORDS):
                orig[c, w] = orig[i, w]
            if commit_row(data, meta, c, key, orig, i, c) < 0:
                state[S_LOST_COMMIT] += 1
                return drops.COMMIT_FAILED
            meta[c, M_ORIGIN] = i
            state[S_CLONES] += 1
            state[S_LAST] = c
            row = c
    return push_tx(tx, state, row, port, key, i)


@njit(alloc=False)
def normal(data, meta, key, orig, tx, i, clone_base, state, portinfo, trunks, macs, dirty, trace, own=False):
    """OVS NORMAL for packet i: learn, then forward or flood within the VLAN.  -> copies sent, or -drop code.

    dirty: orig[i] holds the parsed packet words (the key may differ from them).  When
    not dirty, a copy whose tags are unchanged goes out as the packet's own row without
    a compare, and orig[i] is filled only when some port needs other tags.  A traced
    packet gets T_NORMAL and T_OUTPUT records.

    own: the caller owns row i outright (no tx entry uses it yet, nothing reads its
    bytes afterwards): a known unicast destination that needs other tags gets the
    packet's own row retagged in place instead of a clone (the common trunk <-> access
    case costs no copy)."""
    traced = meta[i, M_TRACED] != 0
    in_port = np.int64((key[i, 0] >> np.uint64(32)) & np.uint64(0xFFFF))
    kin = portinfo[P_INDEX, in_port]
    if kin < 0:
        return 0
    w0 = key[i, 0]
    w1 = key[i, 1]
    tci = np.int64(w0 & np.uint64(0xFFFF))
    port_tag = portinfo[P_TAG]
    vlan = ingress_vlan(port_tag, trunks, kin, tci)
    if vlan < 0:
        if traced:
            record(trace, state, i, T_NORMAL, N_VLAN_REFUSED, tci & 0xFFF, in_port, 0, 0)
        return -drops.VLAN_REFUSED
    src = np.int64(w1 >> np.uint64(16))
    dst = np.int64(key[i, 2] >> np.uint64(16))
    if (dst & 0xFFFFFFFFFFF0) == 0x0180C2000000:
        if traced:
            record(trace, state, i, T_NORMAL, N_RESERVED, vlan, in_port, dst, 0)
        return 0                        # reserved multicast (STP, LLDP, ...): OVS drops
    now = meta[i, M_TS]
    aging = state[S_AGING]
    if mac_learn(macs, state, vlan, src, in_port, now, aging, state[S_MAX_MACS]) and traced:
        record(trace, state, i, T_NORMAL, N_LEARNED, vlan, in_port, src, 0)
    out = np.int64(-1)
    if not (dst >> 40) & 1:
        out = mac_lookup(macs, state, vlan, dst, now, aging)
    if traced:
        record(trace, state, i, T_NORMAL, N_KNOWN if out >= 0 else N_FLOOD, vlan, out, dst, 0)
    pcp = tci & 0xE000 if tci & 0x1000 else 0
    sent = 0
    reason = 0
    for k in range(portinfo[P_COUNT, 0]):
        p = portinfo[P_OFPORT, k]
        if k == kin or (out >= 0 and p != out) or not carries(port_tag, trunks, k, vlan):
            continue
        t = 0
        if port_tag[k] == TRUNK:
            t = vlan | pcp
            if t != 0:
                t |= 0x1000
        nw0 = (w0 & ~np.uint64(0xFFFF)) | np.uint64(t)
        nw1 = w1 & ~np.uint64(0xFFFF) if t == 0 else w1   # no outer tag: OVS's stack ends there
        if not dirty and nw0 == w0 and nw1 == w1:           # the packet as it is: no copy
            st = push_tx(tx, state, i, p, key, i)
            if st == 1:
                sent += 1
            else:
                reason = st
            if traced:
                record(trace, state, i, T_OUTPUT, p, st, i if st == 1 else -1, 1 + t, 0)
            continue
        if not dirty:
            dirty = True
            snapshot(key, orig, i, state)
        key[i, 0] = nw0
        key[i, 1] = nw1
        if own and out >= 0:             # the only copy: retag the packet's own row
            wire = meta[i, M_WIRE_LEN]   # what was received (counted as rx), whatever leaves
            ok = commit_row(data, meta, i, key, orig, i, i) >= 0
            meta[i, M_WIRE_LEN] = wire
            if not ok:
                state[S_LOST_COMMIT] += 1
                st = drops.COMMIT_FAILED
            else:
                st = push_tx(tx, state, i, p, key, i)
        else:
            st = emit(data, meta, key, orig, tx, i, p, clone_base, state)
        if st == 1:
            sent += 1
        else:
            reason = st
        if traced:
            record(trace, state, i, T_OUTPUT, p, st, tx[state[S_NTX] - 1, 0] if st == 1 else -1, 1 + t, 0)
    key[i, 0] = w0
    key[i, 1] = w1
    if sent == 0 and reason != 0:
        return -reason
    return sent
