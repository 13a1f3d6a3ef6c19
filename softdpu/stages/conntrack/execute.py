"""The ct() action's kernel: one packet through the connection tracker, as OVS's
conntrack_execute / process_one (lib/conntrack.c).

    state = ct_execute(idx, keys, ent, free, st,        # the table (CtTable.arrays)
                       data, meta, key, out, row,       # the batch and the packet's row
                       zone, commit, force,             # the ct() arguments
                       setm, srow,                      # exec(set_field) values, or srow = -1
                       now)                             # ns, the capture clock in pcap mode

Inputs: the packet's bytes data[row] at the parser's meta offsets (M_L3,
M_L4, M_FLAGS, M_PARSE_ERR), and its previous ct fields in key[row] w23 (a
second ct() in the same zone keeps earlier state bits, as OVS).
setm[srow] (uint64[K, 6]) = mark value, mark mask, label value high, low,
label mask high, low: the ct(commit, exec(set_field:V/M->ct_mark,
set_field:V/M->ct_label)) of the action; srow < 0 for none.

Results:
  return value   ct_state: CS_* bits (+trk always; +new/+est/+rel/+inv, +rpl)
  key[row] w23   ct_state:16 | ct_zone:16 | ct_mark:32, w24-25 ct_label (as OVS:
                 mark/label 0 when no connection)
  out[row]       (uint64[N, OUT_COLS], the caller's per-row scratch)
                   O_SRC_HI, O_SRC_LO, O_DST_HI, O_DST_LO  ct_nw_src/dst or
                       ct_ipv6_src/dst (IPv4 in the low 32 bits of *_LO)
                   O_PORTS   ct_tp_src << 16 | ct_tp_dst (ICMP: type, code 0)
                   O_PROTO   ct_nw_proto | is_ipv6 << 8 | OP_PRESENT (1 << 16);
                             0 when there is no original tuple (+inv)
                   O_CONN    entry + 1 of the packet's connection, 0 if none:
                             OVS's cached md.conn.  A later ct() on this row in
                             the same zone without force takes the fast path
                             (no tracking update, only zone/mark/label) — the
                             caller must zero O_CONN when a packet enters the
                             pipeline and on ct_clear (see ct_clear)
                   O_INFO    OI_REPLY | OI_RELATED | OI_REFUSED (commit found the
                             table full: the caller counts a drop) | reason << 8
                             (extract.R_* for +inv)
The original tuple is the connection's original direction when there is
one, else the packet's own (or, for an ICMP error, its reversed embedded) key.

Semantics (OVS userspace): no entry -> +new if the packet may start a
connection (TCP: not a SYN-ACK, legal flags; ICMP: an echo/timestamp/info
request; others: any), else +inv; with commit the entry is created (table
full: stays +new with OI_REFUSED).  An entry -> its protocol's update:
valid -> +est (+rpl in the reply direction); UDP/other's and ICMP echo's
second packet in the original direction before any reply -> +new; TCP out of window -> +inv;
a SYN on a connection closed both ways -> the old entry is removed and the
packet is treated as having none (reopen).  ICMP errors about a connection
-> +rel (+rpl), without updating it; about none -> +inv.  force: an entry
found in the reply direction is removed first.  Packets/bytes (IP length)
are counted per direction on every valid update and on creation.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_DROP, M_LEN, M_ORIGIN, M_START, M_TS
from softdpu.key import PACKET_WORDS, U32, U48, W_CT, W_CT_LABEL
from softdpu.stages.conntrack import tcp
from softdpu.stages.flows.commit import commit_row
from softdpu.stages.conntrack.extract import (P_ICMP, P_ICMPV6, P_TCP, R_CSUM, R_FRAG,
                                              R_NEW, R_RELATED, R_TCP, extract)
from softdpu.stages.conntrack.table import (C_EXPIRED, C_FORCED, C_INV_CSUM, C_INV_FRAG,
                                            C_INV_MALFORMED, C_INV_NEW, C_INV_RELATED, C_INV_TCP,
                                            C_LOOKUPS, C_REOPENED, E_BYTES_O, E_BYTES_R, E_EXP,
                                            E_INFO, E_LABEL_HI, E_LABEL_LO, E_MARK, E_PKTS_O,
                                            E_PKTS_R, K_USED, S_CHECK_CSUM, S_TMO, ct_delete_at,
                                            ct_find, ct_insert, ct_sweep, key_hash)
from softdpu.stages.conntrack.timeouts import (TM_ICMP_FIRST, TM_ICMP_REPLY, TM_OTHER_BIDIR,
                                               TM_OTHER_FIRST, TM_OTHER_MULTIPLE)

CS_NEW, CS_EST, CS_REL, CS_RPL, CS_INV, CS_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
O_SRC_HI, O_SRC_LO, O_DST_HI, O_DST_LO, O_PORTS, O_PROTO, O_CONN, O_INFO = range(8)
OUT_COLS = 8
OP_PRESENT = 1 << 16
OI_REPLY, OI_RELATED, OI_REFUSED = 1, 2, 4
# E_INFO protocol states (bits 8-15)
OTHERS_FIRST, OTHERS_MULTIPLE, OTHERS_BIDIR = 0, 1, 2
ICMPS_FIRST, ICMPS_REPLY = 0, 1
M32 = np.uint64(0xFFFFFFFF)


@njit(alloc=False, inline=True)
def _is_icmp(proto, v6):
    return (proto == P_ICMP and not v6) or (proto == P_ICMPV6 and v6)


@njit(alloc=False, inline=True)
def _set_proto_state(ent, u, st, pstate, tm, now):
    ent[u, E_INFO] = (ent[u, E_INFO] & 1) | (pstate << 8) | (tm << 16)
    ent[u, E_EXP] = now + st[S_TMO + tm]


@njit(alloc=False, inline=True)
def _count(ent, u, reply, nbytes):
    if reply:
        ent[u, E_PKTS_R] += 1
        ent[u, E_BYTES_R] += nbytes
    else:
        ent[u, E_PKTS_O] += 1
        ent[u, E_BYTES_O] += nbytes


@njit(alloc=False, inline=True)
def _update(ent, e, st, data, r, proto, v6, l4, ip_end, reply, now):
    """The protocol's conn_update.  -> tcp.UPD_*"""
    u = np.uint64(e)
    if proto == P_TCP:
        return tcp.tcp_update(ent, e, st, data, r, l4, ip_end, reply, now)
    ps = (ent[u, E_INFO] >> 8) & 0xFF
    if _is_icmp(proto, v6):
        res = tcp.UPD_VALID
        if reply and ps == ICMPS_FIRST:
            ps = ICMPS_REPLY
        elif ps == ICMPS_FIRST:
            res = tcp.UPD_VALID_NEW      # another request before any reply: +new (OVS icmp_conn_update)
        _set_proto_state(ent, u, st, ps, TM_ICMP_REPLY if ps == ICMPS_REPLY else TM_ICMP_FIRST, now)
        return res
    res = tcp.UPD_VALID
    if reply and ps != OTHERS_BIDIR:
        ps = OTHERS_BIDIR
    elif ps != OTHERS_BIDIR:
        ps = OTHERS_MULTIPLE
        res = tcp.UPD_VALID_NEW          # +new until a reply is seen (as OVS 3.1 answers)
    tm = TM_OTHER_FIRST if ps == OTHERS_FIRST else (TM_OTHER_MULTIPLE if ps == OTHERS_MULTIPLE
                                                    else TM_OTHER_BIDIR)
    _set_proto_state(ent, u, st, ps, tm, now)
    return res


@njit(alloc=False, inline=True)
def _valid_new(data, r, proto, v6, l4, s_port):
    if proto == P_TCP:
        return tcp.valid_new((np.int64(data[r, np.uint64(l4 + 13)])
                              | (np.int64(data[r, np.uint64(l4 + 12)]) << 8)) & 0xFFF)
    if _is_icmp(proto, v6):
        t = s_port >> 16
        return (t == 128) if v6 else (t == 8 or t == 13 or t == 15)
    return True


@njit(alloc=False)
def _write_md(ent, key, out, r, state, zone, e, setm, srow):
    """OVS write_ct_md + set_mark/set_label: the key's ct fields and O_CONN."""
    mark = np.int64(0)
    lhi = np.int64(0)
    llo = np.int64(0)
    if e >= 0:
        u = np.uint64(e)
        mark = ent[u, E_MARK]
        lhi = ent[u, E_LABEL_HI]
        llo = ent[u, E_LABEL_LO]
        if srow >= 0:
            s = np.uint64(srow)
            mark = (np.int64(setm[s, 0]) | (mark & ~np.int64(setm[s, 1]))) & 0xFFFFFFFF
            lhi = np.int64(setm[s, 2]) | (lhi & ~np.int64(setm[s, 4]))
            llo = np.int64(setm[s, 3]) | (llo & ~np.int64(setm[s, 5]))
            ent[u, E_MARK] = mark
            ent[u, E_LABEL_HI] = lhi
            ent[u, E_LABEL_LO] = llo
    key[r, W_CT] = ((np.uint64(state) << U48) | (np.uint64(zone & 0xFFFF) << U32)
                    | (np.uint64(mark) & M32))
    key[r, W_CT_LABEL] = np.uint64(lhi)
    key[r, W_CT_LABEL + 1] = np.uint64(llo)
    out[r, 6] = np.uint64(e + 1)


@njit(alloc=False, inline=True)
def ct_execute(idx, keys, ent, free, st, data, meta, key, out, row, zone, commit, force,
               setm, srow, now):
    """One packet through ct() (see the module docstring).  -> ct_state"""
    r = np.uint64(row)
    st[C_LOOKUPS] += 1
    w = key[r, W_CT]
    prior = np.int64(w >> U48)
    prior_zone = np.int64((w >> U32) & np.uint64(0xFFFF))
    c = np.int64(out[r, O_CONN])
    if c != 0 and not force:
        u = np.uint64(c - 1)
        if ((keys[u, 5] & K_USED) != 0 and np.int64((keys[u, 5] >> U32) & np.uint64(0xFFFF)) == zone
                and ent[u, E_EXP] > now):
            _write_md(ent, key, out, r, prior, zone, c - 1, setm, srow)
            return prior
    state = prior if prior_zone == zone else 0
    reason, v6, proto, s_hi, s_lo, d_hi, d_lo, sp, dp, related, l3, l4, ip_end = extract(
        data, meta, row, st[S_CHECK_CSUM] != 0)
    if reason != 0:
        if reason == R_FRAG:
            st[C_INV_FRAG] += 1
        elif reason == R_CSUM:
            st[C_INV_CSUM] += 1
        else:
            st[C_INV_MALFORMED] += 1
        state = CS_INV | CS_TRK
        _write_md(ent, key, out, r, state, zone, -1, setm, srow)
        for j in range(6):
            out[r, j] = 0
        out[r, O_INFO] = np.uint64(reason << 8)
        return state
    a_is_src = s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sp <= dp)))
    if a_is_src:
        k0, k1, k2, k3 = s_hi, s_lo, d_hi, d_lo
        k4 = (np.uint64(sp) << U32) | np.uint64(dp)
    else:
        k0, k1, k2, k3 = d_hi, d_lo, s_hi, s_lo
        k4 = (np.uint64(dp) << U32) | np.uint64(sp)
    k5 = (np.uint64(zone & 0xFFFF) << U32) | (np.uint64(1 if v6 else 0) << np.uint64(8)) | np.uint64(proto)
    h = key_hash(k0, k1, k2, k3, k4, k5)
    slot, e = ct_find(idx, keys, k0, k1, k2, k3, k4, k5, h)
    if e >= 0 and ent[np.uint64(e), E_EXP] <= now:
        ct_delete_at(idx, keys, free, st, slot, e)
        st[C_EXPIRED] += 1
        e = -1
    reply = False
    if e >= 0:
        reply = (ent[np.uint64(e), E_INFO] & 1) != (1 if a_is_src else 0)
        if force and reply:
            ct_delete_at(idx, keys, free, st, slot, e)
            st[C_FORCED] += 1
            e = -1
            reply = False
    nbytes = ip_end - l3
    create = False
    inv_reason = 0
    if e >= 0:
        if related:
            state |= CS_REL
            if reply:
                state |= CS_RPL
        else:
            res = _update(ent, e, st, data, r, proto, v6, l4, ip_end, reply, now)
            if res == tcp.UPD_VALID:
                state = (state | CS_EST) & ~CS_NEW
                if reply:
                    state |= CS_RPL
                _count(ent, np.uint64(e), reply, nbytes)
            elif res == tcp.UPD_INVALID:
                state = CS_INV
                inv_reason = R_TCP
                st[C_INV_TCP] += 1
            elif res == tcp.UPD_NEW:
                ct_delete_at(idx, keys, free, st, slot, e)
                st[C_REOPENED] += 1
                e = -1
                reply = False
                create = True
            else:
                state |= CS_NEW
                _count(ent, np.uint64(e), reply, nbytes)
    elif related:
        state = CS_INV
        inv_reason = R_RELATED
        st[C_INV_RELATED] += 1
    else:
        create = True
    refused = False
    if create:
        if not _valid_new(data, r, proto, v6, l4, sp):
            state = CS_INV
            inv_reason = R_NEW
            st[C_INV_NEW] += 1
        else:
            state = CS_NEW
            if commit:
                e = ct_insert(idx, keys, ent, free, st, k0, k1, k2, k3, k4, k5, h, now)
                if e < 0:
                    refused = True
                else:
                    u = np.uint64(e)
                    ent[u, E_INFO] = 1 if a_is_src else 0
                    if proto == P_TCP:
                        tcp.tcp_new(ent, e, st, data, r, l4, ip_end, now)
                    elif _is_icmp(proto, v6):
                        _set_proto_state(ent, u, st, ICMPS_FIRST, TM_ICMP_FIRST, now)
                    else:
                        _set_proto_state(ent, u, st, OTHERS_FIRST, TM_OTHER_FIRST, now)
                    _count(ent, u, False, nbytes)
    state |= CS_TRK
    _write_md(ent, key, out, r, state, zone, e, setm, srow)
    # the original tuple: the connection's original direction, else the packet's key
    if e >= 0 and (ent[np.uint64(e), E_INFO] & 1) != (1 if a_is_src else 0):
        o_hi, o_lo, p_hi, p_lo, o_port, p_port = d_hi, d_lo, s_hi, s_lo, dp, sp
    else:
        o_hi, o_lo, p_hi, p_lo, o_port, p_port = s_hi, s_lo, d_hi, d_lo, sp, dp
    if _is_icmp(proto, v6):
        ports = (o_port >> 16) << 16          # tp_src = the original sender's type, tp_dst = code 0
    elif proto == P_TCP or proto == 17 or proto == 132:
        ports = (o_port << 16) | p_port
    else:
        ports = 0
    out[r, O_SRC_HI] = o_hi
    out[r, O_SRC_LO] = o_lo
    out[r, O_DST_HI] = p_hi
    out[r, O_DST_LO] = p_lo
    out[r, O_PORTS] = np.uint64(ports)
    out[r, O_PROTO] = np.uint64(proto | ((1 if v6 else 0) << 8) | OP_PRESENT)
    info = (OI_REPLY if reply else 0) | (OI_RELATED if related else 0) | (OI_REFUSED if refused else 0)
    out[r, O_INFO] = np.uint64(info | (inv_reason << 8))
    return state


@njit(alloc=False)
def commit_for_ct(data, meta, key, orig, tx, i, tx0, tx_end, clone_row, clone_cap):
    """Before ct() on a modified packet: its bytes made to match the key (as OVS commits the
    actions before ct, so the tracker sees the rewritten addresses and ports).

    Row i is committed in place (orig[i] then equals key[i], so later outputs commit only
    what changes after).  tx entries tx0.. already on row i (outputs before the rewrite)
    (tx0..tx_end-1) keep the bytes they had: they move to a copy of the row made at clone_row (when
    clone_row < clone_cap).  -> 1 if a clone row was used, 0 if not, -1 when nothing could
    be committed (no clone row, or the commit failed: ct sees the bytes as parsed)."""
    same = True
    for w in range(PACKET_WORDS):
        if key[i, w] != orig[i, w]:
            same = False
    if same:
        return 0
    shared = False
    for q in range(tx0, tx_end):
        if tx[q, 0] == i:
            shared = True
    used = 0
    if shared:
        c = clone_row
        if c >= clone_cap:
            return -1
        for m in range(meta.shape[1]):
            meta[c, m] = meta[i, m]
        st = meta[i, M_START]
        for b in range(st, st + meta[i, M_LEN]):
            data[c, b] = data[i, b]
        for w in range(PACKET_WORDS):
            orig[c, w] = orig[i, w]
        meta[c, M_ORIGIN] = i
        for q in range(tx0, tx_end):
            if tx[q, 0] == i:
                tx[q, 0] = c
        used = 1
    if commit_row(data, meta, i, key, orig, i, i) < 0:
        return -1
    return used


@njit(alloc=False)
def ct_clear(key, out, row):
    """OVS ct_clear: the row's ct fields and its cached connection back to none."""
    r = np.uint64(row)
    key[r, W_CT] = 0
    key[r, W_CT_LABEL] = 0
    key[r, W_CT_LABEL + 1] = 0
    for j in range(out.shape[1]):
        out[r, j] = 0


@njit(alloc=False)
def ct_execute_batch(idx, keys, ent, free, st, data, meta, key, out, n, zones, commit, force,
                     setm, srow, sweep_budget):
    """ct() on rows 0..n-1 not dropped (zone zones[i], now = the row's M_TS), then one
    bounded sweep of sweep_budget index slots at the last timestamp.  States land in
    key[i] w23 (see ct_execute); for tests and benchmarks, and a model for the stage."""
    now = np.int64(0)
    for i in range(n):
        r = np.uint64(i)
        if meta[r, M_DROP] != 0:
            continue
        now = meta[r, M_TS]
        ct_execute(idx, keys, ent, free, st, data, meta, key, out, i, zones[r], commit, force,
                   setm, srow, now)
    if sweep_budget > 0 and n > 0:
        ct_sweep(idx, keys, ent, free, st, now, sweep_budget)
