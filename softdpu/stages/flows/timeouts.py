"""Flow expiry: OpenFlow idle_timeout= and hard_timeout= on the capture clock.

Open vSwitch removes a flow once `idle_timeout` seconds pass with no packet
matching it, or `hard_timeout` seconds after it was added, whatever its use
(0: never), on its wall clock.  softdpu does the same on the CAPTURE clock,
the packets' timestamps (meta M_TS, ns), and exactly: a packet whose
timestamp is at or after a rule's deadline never matches the rule, one
before it does, whatever the batch size.

The clock.  It starts at the timestamp of the first packet the flow tables
see (the Dpu's first packet) and is the running maximum of the timestamps
since: it never goes back.  A rule loaded with the pipeline is added at the
clock's start; one given later to FlowTables.add_rules / replace_rules at the
clock's current time (FlowTables.now()).

Per rule (arrays in compiled order, kept across recompiles for the rules
that stay):
  used_ns   the latest timestamp of a packet that matched it, written by the
            forwarding kernel beside n_packets (`max`, so a use never moves back)
  added_ns  when it was added
  deadline  min(max(used, added) + idle, added + hard) over the timeouts it has

Idle deadlines only move later with use, so the earliest deadline before a
batch is a lower bound for the whole batch.  FlowTables.run compares the
batch's latest timestamp with it (one small kernel call per batch, only while
some rule has a timeout); when the batch reaches it, the batch runs in pieces:
rows up to the first packet at or after the (recomputed, exact) earliest
deadline, then the rules whose deadline is at or before the clock are
removed (the program recompiled without them, the other rules keeping their
counters and times, the flow cache invalidated, `expired` counted), and so
on.  A piece is the kernel run over views of the batch's rows (rows lo..,
tx entries, clone rows after the earlier pieces'), its row numbers shifted
back afterwards (stage.py _run_rows).  With no rule having a timeout, run()
costs one `if` more than before (the kernel's extra store aside).

Timestamps that go back (a pcap may): the packet is processed at the clock's
time for expiry, so it does not match a rule that expired at a later
timestamp than its own; its use of a rule counts at its own timestamp and
never moves the rule's last use back (so it refreshes an idle rule only up to
its own timestamp).

Not done: expired rules are not reported anywhere but the count (no
flow-removed messages); every expiry event recompiles the program, fine for
tens of timed rules, slow for thousands expiring at distinct times.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_TS

NEVER = np.iinfo(np.int64).max   # a deadline that never comes
UNSET = np.iinfo(np.int64).min   # added/used before the clock started: "at the clock's start"
NS = 10**9
MAX_TIMEOUT = 65535              # seconds (a 16-bit OpenFlow field)


def per_rule(rules, n):
    """(idle_ns, hard_ns) int64[n] of compiled rules (0: none); n >= len(rules) (the padding row)."""
    idle = np.zeros(n, np.int64)
    hard = np.zeros(n, np.int64)
    for k, r in enumerate(rules):
        idle[k] = getattr(r, "idle_timeout", 0) * NS
        hard[k] = getattr(r, "hard_timeout", 0) * NS
    return idle, hard


def deadlines(idle_ns, hard_ns, used_ns, added_ns):
    """Each rule's expiry time (ns), NEVER without timeouts.  The clock must have started
    (no UNSET among added_ns)."""
    last = np.maximum(used_ns, added_ns)
    idle = np.where(idle_ns > 0, last + idle_ns, NEVER)
    hard = np.where(hard_ns > 0, added_ns + hard_ns, NEVER)
    return np.minimum(idle, hard)


@njit
def latest(meta, n):
    """The latest timestamp of rows 0..n-1 (n >= 1); one call, cheaper than numpy on the column."""
    t = meta[0, M_TS]
    for i in range(1, n):
        if meta[i, M_TS] > t:
            t = meta[i, M_TS]
    return t


def first_at_or_after(ts, lo, deadline):
    """The first row >= lo whose timestamp is >= deadline, or len(ts)."""
    hit = ts[lo:] >= deadline
    k = int(np.argmax(hit)) if hit.size else 0
    return lo + k if hit.size and hit[k] else len(ts)
