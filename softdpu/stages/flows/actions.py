"""The action interpreter: runs each packet's matched rule and fills the output list.

One kernel over the batch.  For each live packet: look up table 0, count the
rule's packets and bytes, then interpret its ops.  OUTPUT appends a
(packet, port) pair to the batch's tx list; a packet that ends with no
output gets a drop reason: no_match (table miss: dropped, as Open vSwitch
without a controller), output_port_unknown, or action_drop (explicit
`drop`, an empty action list, or output only to its own in_port, which
OpenFlow forbids without the in_port action).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_IN_PORT, M_LEN
from softdpu.stages.flows.classify import lookup
from softdpu.stages.flows.compile import OP_DROP, OP_OUTPUT


@njit(alloc=False)  # no reference counting around the inlined lookup (5x slower with it)
def run_actions(meta, key, n, tx, tss_sub, tss_words, tss_slots, act, ops, port_index,
                n_packets, n_bytes, cache, gen):
    """Interpret the flow tables over packets 0..n-1; returns the tx list length."""
    n_tx = 0
    cap = tx.shape[0]
    for i in range(n):
        if meta[i, M_DROP] != 0:
            continue
        r = lookup(key, i, 0, tss_sub, tss_words, tss_slots, cache, gen)
        if r < 0:
            meta[i, M_DROP] = drops.NO_MATCH
            continue
        n_packets[r] += 1
        n_bytes[r] += meta[i, M_LEN]
        reason = drops.ACTION_DROP
        sent = 0
        for k in range(act[r, 0], act[r, 0] + act[r, 1]):
            op = ops[k, 0]
            if op == OP_OUTPUT:
                port = ops[k, 1]
                if port_index[port] < 0:
                    reason = drops.OUTPUT_PORT_UNKNOWN
                elif port == meta[i, M_IN_PORT]:
                    pass  # OpenFlow: output to the input port needs the in_port action
                elif n_tx < cap:
                    tx[n_tx, 0] = i
                    tx[n_tx, 1] = port
                    n_tx += 1
                    sent += 1
            elif op == OP_DROP:
                break
        if sent == 0:
            meta[i, M_DROP] = reason
    return n_tx


def port_index_table(ofports):
    """int64[65536]: index of each OpenFlow port number among the pipeline's ports, -1 if none."""
    table = np.full(65536, -1, np.int64)
    for k, p in enumerate(ofports):
        table[p] = k
    return table
