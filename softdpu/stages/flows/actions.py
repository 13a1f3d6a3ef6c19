"""The action interpreter: one kernel runs every packet through the flow tables.

For each live packet: copy its parsed packet words to `orig`, look up table
0, count the rule's packets and bytes, and interpret its ops (action_syntax.py
lists them) with Open vSwitch's semantics:

  - rewrites change the key row only; an output commits the key to a copy
    of the packet (outputs.emit: no copy while nothing changed);
  - resubmit(port,table) looks the table up (with in_port = port for the
    lookup only) and runs the rule's actions, then goes on after the
    resubmit; a miss does nothing.  goto_table continues in a later table
    (a tail call), as does a resubmit that is the last action of its list.
    As OVS, the depth counts resubmits to the same or an earlier table (64 at
    most), and a packet gets 4096 resubmits and goto_tables; over that the
    whole packet is dropped (resubmit_depth), its outputs taken back;
  - output to the packet's in_port is skipped unless by the in_port action;
  - dec_ttl on TTL <= 1 stops the current action list (OVS would send the
    packet to a controller): ttl_expired when nothing left;
  - a packet that ends with no output gets a drop reason: no_match (a table
    miss, as OVS with no controller), output_port_unknown, ttl_expired,
    vlan_refused (normal), tx_full/clone_full, rejected (the softdpu-only
    reject action, which answers the sender: reject.py), or action_drop.
"""
import numpy as np

from softdpu.key import U16, U32, U48, W_CT, W_CT_LABEL
from softdpu.stages.conntrack.execute import O_INFO, OI_REFUSED, commit_for_ct, ct_clear, ct_execute
from softdpu.stages.conntrack.tuple_fields import clear_tuple, put_tuple
from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_LEN, M_TRACED, M_TS
from softdpu.stages.flows.action_syntax import (G_ARP, G_ICMP_ANY, G_ICMPV6, G_IP_ANY,
                                                G_IP_ANY_OR_ARP, G_IPV4, G_IPV4_OR_ARP, G_IPV6,
                                                G_L4, G_L4_PORTS, G_NONE, G_SCTP, G_TCP, G_UDP,
                                                G_VLAN, OP_CT, OP_CT_CLEAR, OP_DEC_TTL, OP_DROP, OP_FLOOD,
                                                OP_GOTO, OP_IN_PORT,
                                                OP_MOVE, OP_NORMAL, OP_OUTPUT, OP_POP_VLAN,
                                                OP_PUSH_VLAN, OP_REJECT, OP_RESUBMIT, OP_SET, OP_SET_VLAN)
from softdpu.stages.flows.classify import lookup
from softdpu.stages.flows.reject import reject
from softdpu.stages.flows.outputs import (P_COUNT, P_INDEX, P_OFPORT, S_CLONE_BASE, S_CLONES, S_LAST,
                                          S_LOST_TX, S_NTX, S_TUNNELS, emit, normal, push_tx, snapshot,
                                          tunnel_fields)
from softdpu.stages.flows.trace_records import (NOTE_GUARD, NOTE_RESUBMIT_LIMIT, NOTE_TTL_EXPIRED, T_ACTION,
                                                T_CT, T_KEY, T_LOOKUP, T_NOTE, T_OUTPUT, record)

MAX_DEPTH = 64
MAX_RESUBMITS = 4096
MAX_RECIRC = 6         # ct(table=N) passes per packet (OVS's datapath recirculation limit)
FFFF = np.uint64(0xFFFF)


@njit(alloc=False, inline=True)
def _guard(key, i, g):
    if g == G_NONE:
        return True
    if g == G_VLAN:
        return (key[i, 0] & np.uint64(0x1000)) != 0
    t = np.int64((key[i, 0] >> U16) & FFFF)
    p = np.int64((key[i, 2] >> np.uint64(8)) & np.uint64(0xFF))
    ip = t == 0x0800 or t == 0x86DD
    arp = t == 0x0806 or t == 0x8035
    if g == G_IPV4:
        return t == 0x0800
    if g == G_IP_ANY:
        return ip
    if g == G_IPV6:
        return t == 0x86DD
    if g == G_ARP:
        return arp
    if g == G_IPV4_OR_ARP:
        return t == 0x0800 or arp
    if g == G_IP_ANY_OR_ARP:
        return ip or arp
    if g == G_L4_PORTS:
        return ip and (key[i, 4] & np.uint64(2)) == 0
    if g == G_TCP:
        return ip and p == 6
    if g == G_UDP:
        return ip and p == 17
    if g == G_SCTP:
        return ip and p == 132
    if g == G_ICMP_ANY:
        return (t == 0x0800 and p == 1) or (t == 0x86DD and p == 58)
    if g == G_ICMPV6:
        return t == 0x86DD and p == 58
    if g == G_L4:
        return ip and (p == 6 or p == 17 or p == 132 or p == 1 or p == 58)
    return False


@njit(alloc=False, inline=True)
def _bits(n):
    if n >= 64:
        return ~np.uint64(0)
    return (np.uint64(1) << np.uint64(n)) - np.uint64(1)


@njit(alloc=False)  # no reference counting around the inlined lookup (5x slower with it)
def run_actions(data, meta, key, orig, n, tx, tss_sub, tss_words, tss_slots, act, ops, portinfo,
                n_packets, n_bytes, cache, gen, trunks, macs, state, stack, trace, used_ns, ct, first_rule):
    """Interpret the flow tables over packets 0..n-1 (clone rows from row state[S_CLONE_BASE] on).

    First the table-0 lookup of every packet (first_rule[i]: its rule, -1 when
    dropped or no rule matched).  Then, in packet order: a rule of plain
    outputs, or just `normal`, runs here (the common cases, kept small); any
    other rule, and every traced packet, goes to _interpret, which writes
    their trace records (trace_records.py) and runs the packets after it too
    while they need it (one call per run of such packets: a call passes ~25
    arrays, which costs ~25 ns).
    used_ns[r]: the latest timestamp of a packet that matched rule r (flows/timeouts.py).
    Returns the tx list length (also in state[S_NTX])."""
    state[S_CLONES] = 0
    n_tx = 0
    cap = tx.shape[0]
    for i in range(n):
        first_rule[i] = -1
        if meta[i, M_DROP] != 0:
            continue
        r = lookup(key, i, 0, tss_sub, tss_words, tss_slots, cache, gen)
        if meta[i, M_TRACED] != 0:
            record(trace, state, i, T_LOOKUP, 0, r, 0, -1, 0)
        if r < 0:
            meta[i, M_DROP] = drops.NO_MATCH
            continue
        n_packets[r] += 1
        n_bytes[r] += meta[i, M_LEN]
        used_ns[r] = max(used_ns[r], meta[i, M_TS])
        first_rule[i] = r
    i = 0
    while i < n:
        r = first_rule[i]
        if r < 0:
            i += 1
            continue
        if meta[i, M_TRACED] != 0 or act[r, 2] == 0:
            state[S_NTX] = n_tx
            i = _interpret(data, meta, key, orig, i, n, first_rule, tx, tss_sub, tss_words, tss_slots, act, ops,
                           portinfo, n_packets, n_bytes, cache, gen, trunks, macs, state, stack, trace, used_ns, ct)
            n_tx = state[S_NTX]
            continue
        if act[r, 2] == 2:                     # actions=normal: the L2 switch, no interpreter
            state[S_NTX] = n_tx
            st = normal(data, meta, key, orig, tx, i, state[S_CLONE_BASE], state, portinfo, trunks,
                        macs, False, trace, True)
            n_tx = state[S_NTX]
            if st <= 0:
                meta[i, M_DROP] = -st if st < 0 else drops.ACTION_DROP
            i += 1
            continue
        reason = drops.ACTION_DROP
        sent = 0
        in_port = np.int64((key[i, 0] >> U32) & FFFF)
        for k in range(act[r, 0], act[r, 0] + act[r, 1]):
            port = ops[k, 1]
            if portinfo[P_INDEX, port] < 0:
                reason = drops.OUTPUT_PORT_UNKNOWN
            elif port == in_port:
                pass  # OpenFlow: output to the input port needs the in_port action
            elif n_tx < cap:
                tx[n_tx, 0] = i
                tx[n_tx, 1] = port
                if state[S_TUNNELS]:
                    tunnel_fields(tx, n_tx, key, i)
                n_tx += 1
                sent += 1
            else:
                state[S_LOST_TX] += 1
                reason = drops.TX_FULL
        if sent == 0:
            meta[i, M_DROP] = reason
        i += 1
    state[S_NTX] = n_tx
    return n_tx


@njit(alloc=False)
def _interpret(data, meta, key, orig, i, n, first_rule, tx, tss_sub, tss_words, tss_slots, act, ops, portinfo,
               n_packets, n_bytes, cache, gen, trunks, macs, state, stack, trace, used_ns, ct):
    """Run packets i.. (i < n) with every action kind, from their table-0 rules first_rule[]
    (already counted; -1: skipped), for as long as they need the interpreter (a rule not
    just plain outputs or `normal`, or a traced packet).  -> the first row it did not run."""
    while i < n:
        r = first_rule[i]
        if r >= 0:
            if meta[i, M_TRACED] == 0 and act[r, 2] != 0:
                break
            _run_packet(data, meta, key, orig, i, r, tx, tss_sub, tss_words, tss_slots, act, ops, portinfo,
                        n_packets, n_bytes, cache, gen, trunks, macs, state, stack, trace, used_ns, ct)
        i += 1
    return i


@njit(alloc=False, inline=True)
def _run_packet(data, meta, key, orig, i, r, tx, tss_sub, tss_words, tss_slots, act, ops, portinfo,
                n_packets, n_bytes, cache, gen, trunks, macs, state, stack, trace, used_ns, ct):
    """Run packet i from its table-0 rule r (already counted) with every action kind (inlined
    once, into _interpret)."""
    traced = meta[i, M_TRACED] != 0
    clone_base = state[S_CLONE_BASE]
    dirty = False     # packet words changed yet? (orig[i] holds the parsed ones from then on)
    tx0 = state[S_NTX]
    clones0 = state[S_CLONES]
    reason = drops.ACTION_DROP
    sent = 0
    sp = 0            # frames on the stack: nested (non-tail) resubmits, the trace's nesting
    depth = 0         # OVS's translation depth: resubmits to the same or an earlier table
    deep = 0          # does the pending lookup deepen?
    resubmits = 0
    table = np.int64(0)
    fatal = False
    pending = 0       # a lookup to do: 1 goto_table, 2 resubmit, 3 resubmit as the last action (tail calls: 1, 3)
    k = act[r, 0]
    end = k + act[r, 1]
    t = np.int64(0)   # its table
    lport = np.int64(-1)  # its in_port for resubmit(port, ...), -1 unchanged
    fatal_code = drops.RESUBMIT_DEPTH
    rejected = False  # a reject action ran (the packet's drop reason is then `rejected`)
    # conntrack: the packet's ct state as the datapath holds it (the flow's ct fields are
    # cleared after each ct(), as OVS's translation does), and a pending recirculation
    md_ct = key[i, W_CT]
    md_hi = key[i, W_CT_LABEL]
    md_lo = key[i, W_CT_LABEL + 1]
    recirc = np.int64(-1)
    recircs = 0
    while True:
        if pending != 0:                   # the one lookup site (inlined once)
            w0 = key[i, 0]
            if lport >= 0:
                key[i, 0] = (w0 & ~(FFFF << U32)) | (np.uint64(lport) << U32)
            r = lookup(key, i, t, tss_sub, tss_words, tss_slots, cache, gen)
            if lport >= 0:
                key[i, 0] = w0
            if traced:
                record(trace, state, i, T_LOOKUP, t, r, sp + 1 if pending == 2 else sp, lport,
                       2 + deep if pending == 2 else (4 if pending == 4 else 1))
            if r < 0:
                reason = drops.NO_MATCH
                if pending == 1 or pending == 4:
                    k = end                # a miss ends this action list (nothing after goto)
                pending = 0
                continue
            n_packets[r] += 1
            n_bytes[r] += meta[i, M_LEN]
            used_ns[r] = max(used_ns[r], meta[i, M_TS])
            if pending == 2:
                stack[sp, 0] = k
                stack[sp, 1] = end
                stack[sp, 2] = table
                stack[sp, 3] = depth
                sp += 1
            depth += deep
            pending = 0
            table = t
            k = act[r, 0]
            end = k + act[r, 1]
            continue
        if k >= end:
            if sp == 0:
                if recirc < 0:
                    break
                recircs += 1                 # ct(table=N): a new pass from table N, ct fields set
                if recircs > MAX_RECIRC:
                    fatal = True
                    fatal_code = drops.RECIRC_LIMIT
                    break
                key[i, W_CT] = md_ct
                key[i, W_CT_LABEL] = md_hi
                key[i, W_CT_LABEL + 1] = md_lo
                put_tuple(key, i, ct[5])
                t = recirc
                recirc = -1
                lport = -1
                deep = 0
                depth = 0
                resubmits = 0
                pending = 4
                continue
            sp -= 1
            k = stack[sp, 0]
            end = stack[sp, 1]
            table = stack[sp, 2]
            depth = stack[sp, 3]
            continue
        op = ops[k, 0]
        a = ops[k, 1]
        if traced:
            record(trace, state, i, T_ACTION, k, sp, 0, 0, 0)
        k += 1
        if op >= OP_SET and op <= OP_DEC_TTL and not dirty:
            dirty = True
            snapshot(key, orig, i, state)
        if op == OP_OUTPUT or op == OP_IN_PORT:
            in_port = np.int64((key[i, 0] >> U32) & FFFF)
            port = in_port if op == OP_IN_PORT else a
            st = 0
            if portinfo[P_INDEX, port] < 0:
                st = drops.OUTPUT_PORT_UNKNOWN
                reason = st
            elif op == OP_OUTPUT and port == in_port:
                pass  # OpenFlow: output to the input port needs the in_port action
            else:
                if dirty:   # modified: a committed clone
                    st = emit(data, meta, key, orig, tx, i, port, clone_base, state)
                else:       # unmodified: the packet's own row
                    st = push_tx(tx, state, i, port, key, i)
                if st == 1:
                    sent += 1
                else:
                    reason = st
            if traced:
                record(trace, state, i, T_OUTPUT, port, st, tx[state[S_NTX] - 1, 0] if st == 1 else -1, 0, 0)
        elif op == OP_SET:
            if _guard(key, i, ops[k - 1, 4]):
                m = np.uint64(ops[k - 1, 2])
                key[i, a] = (key[i, a] & ~m) | np.uint64(ops[k - 1, 3])
                if traced:
                    record(trace, state, i, T_KEY, a, np.int64(key[i, a]), 0, 0, 0)
            elif traced:
                record(trace, state, i, T_NOTE, NOTE_GUARD, ops[k - 1, 4], 0, 0, 0)
        elif op == OP_FLOOD:
            if not dirty:
                dirty = True
                snapshot(key, orig, i, state)
            in_port = np.int64((key[i, 0] >> U32) & FFFF)
            for q in range(portinfo[P_COUNT, 0]):
                port = portinfo[P_OFPORT, q]
                if port != in_port:
                    st = emit(data, meta, key, orig, tx, i, port, clone_base, state)
                    if st == 1:
                        sent += 1
                    else:
                        reason = st
                    if traced:
                        record(trace, state, i, T_OUTPUT, port, st, tx[state[S_NTX] - 1, 0] if st == 1 else -1, 0, 0)
        elif op == OP_NORMAL:
            st = normal(data, meta, key, orig, tx, i, clone_base, state, portinfo, trunks, macs, dirty, trace,
                        False)
            if st > 0:
                sent += st
            elif st < 0:
                reason = -st
        elif op == OP_RESUBMIT or op == OP_GOTO:
            if depth >= MAX_DEPTH or resubmits >= MAX_RESUBMITS:
                if traced:
                    record(trace, state, i, T_NOTE, NOTE_RESUBMIT_LIMIT, depth, resubmits, 0, 0)
                fatal = True
                break
            resubmits += 1
            if op == OP_GOTO:
                t = a
                lport = -1
                deep = 0
                pending = 1
            else:
                t = ops[k - 1, 2]
                if t < 0:
                    t = table
                lport = a
                deep = 1 if t <= table else 0
                pending = 2 if k < end else 3
        elif op == OP_SET_VLAN:
            tci = key[i, 0] & FFFF
            if tci & np.uint64(0x1000) == 0:
                key[i, 1] = (key[i, 1] & ~FFFF) | tci
                tci = np.uint64(0x1000)
            tci = (tci & ~np.uint64(ops[k - 1, 2])) | np.uint64(ops[k - 1, 3])
            key[i, 0] = (key[i, 0] & ~FFFF) | tci
            if traced:
                _record_tags(trace, state, key, i)
        elif op == OP_PUSH_VLAN:
            tci = key[i, 0] & FFFF
            key[i, 1] = (key[i, 1] & ~FFFF) | tci
            key[i, 0] = (key[i, 0] & ~FFFF) | np.uint64(0x1000)
            if traced:
                _record_tags(trace, state, key, i)
        elif op == OP_POP_VLAN:
            tci2 = key[i, 1] & FFFF
            key[i, 1] = key[i, 1] & ~FFFF
            key[i, 0] = (key[i, 0] & ~FFFF) | tci2
            if traced:
                _record_tags(trace, state, key, i)
        elif op == OP_DEC_TTL:
            if _guard(key, i, G_IP_ANY):
                ttl = (key[i, 4] >> np.uint64(8)) & np.uint64(0xFF)
                if ttl <= np.uint64(1):
                    reason = drops.TTL_EXPIRED
                    k = end
                    if traced:
                        record(trace, state, i, T_NOTE, NOTE_TTL_EXPIRED, np.int64(ttl), 0, 0, 0)
                else:
                    key[i, 4] -= np.uint64(0x100)
                    if traced:
                        record(trace, state, i, T_KEY, 4, np.int64(key[i, 4]), 0, 0, 0)
            elif traced:
                record(trace, state, i, T_NOTE, NOTE_GUARD, G_IP_ANY, 0, 0, 0)
        elif op == OP_CT:
            zone = ops[k - 1, 2]
            if zone < 0:                   # from a field: word << 16 | shift
                src = ops[k - 1, 3]
                zone = np.int64((key[i, src >> 16] >> np.uint64(src & 0xFFFF)) & FFFF)
            before = np.int64(md_ct >> U48)
            if dirty:                      # ct sees the rewritten packet (OVS commits first)
                if commit_for_ct(data, meta, key, orig, tx, i, tx0, state[S_NTX],
                                 clone_base + state[S_CLONES], data.shape[0]) == 1:
                    state[S_CLONES] += 1
                    state[S_LAST] = -1
            key[i, W_CT] = md_ct
            key[i, W_CT_LABEL] = md_hi
            key[i, W_CT_LABEL + 1] = md_lo
            cs = ct_execute(ct[0], ct[1], ct[2], ct[3], ct[4], data, meta, key, ct[5], i, zone,
                            (a & 1) != 0, (a & 2) != 0, ct[6], ops[k - 1, 5], meta[i, M_TS])
            md_ct = key[i, W_CT]
            md_hi = key[i, W_CT_LABEL]
            md_lo = key[i, W_CT_LABEL + 1]
            clear_tuple(key, i)            # the tuple: from ct[5][i] (the out row) at recirculation
            key[i, W_CT] = 0               # the rest of this pass sees an untracked packet (OVS)
            key[i, W_CT_LABEL] = 0
            key[i, W_CT_LABEL + 1] = 0
            if traced:
                record(trace, state, i, T_CT, before, cs, zone, a, ops[k - 1, 4])
            if ct[5][i, O_INFO] & OI_REFUSED:
                fatal = True               # the table is full: the new connection is refused
                fatal_code = drops.CT_FULL
                break
            if ops[k - 1, 4] >= 0:
                recirc = ops[k - 1, 4]
        elif op == OP_REJECT:              # softdpu only: answer the sender (reject.py)
            rejected = True
            in_port = np.int64((key[i, 0] >> U32) & FFFF)
            reject(data, meta, key, tx, i, clone_base, state, in_port)   # the answer is no output of the packet
        elif op == OP_CT_CLEAR:
            md_ct = np.uint64(0)
            md_hi = np.uint64(0)
            md_lo = np.uint64(0)
            ct_clear(key, ct[5], i)
            clear_tuple(key, i)
            if traced:
                record(trace, state, i, T_KEY, W_CT, 0, 0, 0, 0)
        elif op == OP_MOVE:
            nb = ops[k - 1, 5]
            m = _bits(nb)
            v = (key[i, a] >> np.uint64(ops[k - 1, 2])) & m
            ds = np.uint64(ops[k - 1, 4])
            dw = ops[k - 1, 3]
            key[i, dw] = (key[i, dw] & ~(m << ds)) | (v << ds)
            if traced:
                record(trace, state, i, T_KEY, dw, np.int64(key[i, dw]), 0, 0, 0)
    if fatal:
        state[S_NTX] = tx0
        state[S_CLONES] = clones0
        meta[i, M_DROP] = fatal_code
    elif sent == 0:
        meta[i, M_DROP] = drops.REJECTED if rejected else reason


@njit(alloc=False, inline=True)
def _record_tags(trace, state, key, i):
    """Trace the VLAN words (0: outer tag, 1: inner tag) after a VLAN action."""
    record(trace, state, i, T_KEY, 0, np.int64(key[i, 0]), 0, 0, 0)
    record(trace, state, i, T_KEY, 1, np.int64(key[i, 1]), 0, 0, 0)


def port_index_table(ofports):
    """int64[65536]: index of each OpenFlow port number among the pipeline's ports, -1 if none."""
    table = np.full(65536, -1, np.int64)
    for k, p in enumerate(ofports):
        table[p] = k
    return table
