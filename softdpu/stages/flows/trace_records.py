"""Trace records: what the flow-table kernels did to a traced packet, step by step.

A packet whose meta M_TRACED is set gets records written by the very kernels
that forward it (actions.py, outputs.normal), so a trace and the forwarding
can never disagree.  Untraced packets cost one load and branch per packet.

A record is one int64[7] row of the stage's trace buffer:

  (row, kind, a, b, c, d, e)

  T_LOOKUP   a table, b rule (-1: no match), c depth, d lookup in_port (-1: the packet's),
             e how it was reached: 0 the first lookup, 1 a tail call (goto_table, or
             resubmit as the last action), 2 a resubmit to a later table, 3 to the same
             or an earlier one, 4 a recirculation after ct(table=N)
  T_ACTION   a op row, b depth                        (before the op runs)
  T_KEY      a key word, b its new value (uint64 bits) (after an op changed it)
  T_OUTPUT   a port, b 1 sent / 0 skipped (the in_port) / a drop code, c the row sent,
             d 0, or from normal 1 + the outer VLAN TCI the copy leaves with
  T_NORMAL   a event (N_*), b VLAN, c port, d MAC
  T_NOTE     a note (NOTE_*), b detail
  T_CT       a ct_state before, b after, c zone, d commit 1 | force 2, e recirculation table (-1)

The buffer's fill level and the records lost for want of room live in the
stage's state array (S_TRACE_N, S_TRACE_LOST); trace.py reads and resets them
after each batch.
"""
from softdpu._jit import njit

T_LOOKUP, T_ACTION, T_KEY, T_OUTPUT, T_NORMAL, T_NOTE, T_CT = range(1, 8)

# normal's events
N_LEARNED = 1        # a new or moved (VLAN, MAC) -> port
N_KNOWN = 2          # destination learned on port c
N_FLOOD = 3          # destination unknown, multicast or broadcast: flood the VLAN
N_RESERVED = 4       # reserved multicast (01:80:c2:00:00:0x): dropped
N_VLAN_REFUSED = 5   # the input port does not carry the packet's VLAN

# notes
NOTE_GUARD = 1            # the op's field is not in this packet (b: guard code), skipped
NOTE_TTL_EXPIRED = 2      # dec_ttl on TTL <= 1: the rest of the action list is skipped
NOTE_RESUBMIT_LIMIT = 3   # too deep or too many resubmits: the packet is dropped

S_TRACE_N = 14       # state columns (outputs.py S_*)
S_TRACE_LOST = 15

RECORDS = 1 << 16    # the buffer's rows: 3.5 MB, more than a batch of traced packets needs


@njit(alloc=False, inline=True)
def record(trace, state, row, kind, a, b, c, d, e):
    """Append one record (counted as lost when the buffer is full)."""
    n = state[S_TRACE_N]
    if n >= trace.shape[0]:
        state[S_TRACE_LOST] += 1
        return
    trace[n, 0] = row
    trace[n, 1] = kind
    trace[n, 2] = a
    trace[n, 3] = b
    trace[n, 4] = c
    trace[n, 5] = d
    trace[n, 6] = e
    state[S_TRACE_N] = n + 1
