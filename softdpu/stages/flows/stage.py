"""The flow-table stage: a .flows file, compiled, run over each batch.

Rules with idle_timeout / hard_timeout expire on the capture clock
(timeouts.py): while any rule has one, run() may process a batch in pieces.
"""
import numpy as np

from softdpu.batch import M_ORIGIN, M_TS
from softdpu.stages.flows import action_syntax, timeouts
from softdpu.stages.flows.actions import MAX_RESUBMITS, port_index_table, run_actions
from softdpu.stages.flows.compile import N_TABLES, compile_rules, identity
from softdpu.stages.flows.flow_cache import DEFAULT_ENTRIES, FlowCache
from softdpu.stages.flows.outputs import (P_COUNT, P_INDEX, P_OFPORT, P_TAG, S_AGING, S_CLONE_BASE,
                                          S_CLONES, S_COLS, S_LOST_CLONE, S_LOST_COMMIT, S_LOST_TX, S_MAX_MACS,
                                          S_NTX)
from softdpu.stages.flows.syntax import parse_file
from softdpu.stages.flows.tuple_space import emc_words
from softdpu.stages.flows.trace_records import RECORDS, S_TRACE_LOST, S_TRACE_N, T_OUTPUT
from softdpu.stages.conntrack.stage import Conntrack
from softdpu.stages.conntrack.table import ct_sweep
from softdpu.stages.l2 import DEFAULT_AGING_S, DEFAULT_MAX_ENTRIES, MacTable, port_vlan_arrays

DEFAULT_CT_SIZE = 1_000_000     # connections, as the issue asks (about 176 MB when ct() is used)


class _Port:
    def __init__(self, ofport):
        self.ofport, self.options = ofport, {}


class FlowTables:
    """Owns the compiled program, its counters, the flow cache and `normal`'s MAC table;
    `run(batch)` fills batch.tx.

    ports: PortConfigs (their `tag`/`trunks` options set VLAN modes for normal) or plain
    OpenFlow port numbers (trunks carrying every VLAN)."""

    def __init__(self, rules, ofports=None, cache_entries=DEFAULT_ENTRIES, ports=None,
                 mac_table_size=DEFAULT_MAX_ENTRIES, mac_aging=DEFAULT_AGING_S, ct_size=DEFAULT_CT_SIZE,
                 ct_timeouts=None, rows=512):
        if ports is None:
            ports = [_Port(p) for p in ofports]
        self.ports = list(ports)
        ofports = [p.ofport for p in self.ports]
        self.port_index = port_index_table(ofports)
        self.cache = FlowCache(cache_entries)
        # the capture clock (timeouts.py): ns, None before the first packet
        self.clock_start = self.clock_now = None
        self.expired = 0          # rules removed by their idle or hard timeout
        self._last = None         # the last batch run while no rule had a timeout
        self.used_ns = self.added_ns = None
        self._install(compile_rules(rules))
        tag, self.trunks = port_vlan_arrays(self.ports)
        self.portinfo = np.full((4, 65536), -1, np.int64)
        self.portinfo[P_INDEX] = self.port_index
        self.portinfo[P_OFPORT, : len(ofports)] = ofports
        self.portinfo[P_TAG, : len(ofports)] = tag
        self.portinfo[P_COUNT, 0] = len(ofports)
        self.macs = MacTable(mac_table_size, mac_aging)
        self.state = np.zeros(S_COLS, np.int64)
        self.state[S_AGING] = self.macs.aging
        self.state[S_MAX_MACS] = self.macs.max_entries
        self.state[:5] = self.macs.counters
        self.macs.counters = self.state[:5]      # the kernel updates the MAC counters in place
        self.stack = np.zeros((MAX_RESUBMITS + 1, 4), np.int64)   # (next op, end, table, depth) frames
        self.first_rule = np.zeros(max(rows, 1), np.int64)          # run_actions: each packet's table-0 rule
        self.trace = np.zeros((RECORDS, 7), np.int64)   # records of traced packets (trace_records.py)
        # the connection table of ct(): full size only when the flows use it
        self.ct_size, self.ct_timeouts, self.rows = ct_size, ct_timeouts, rows
        self.conntrack = None
        self._ct_tuple = None        # the kernel's conntrack argument while the flows use no ct()
        self._ensure_conntrack(rules)
        # can a packet be modified before an output (then the batch needs clone rows)?
        plain = {"output", "drop", "in_port", "flood", "all", "resubmit", "goto_table", "clear_actions",
                 "write_metadata", "set_tunnel", "set_tunnel64"}
        self.rewrites = any(a.name not in plain for r in rules for a in r.actions)
        # most tx entries one packet can make: sizes the batch's tx list and clone rows
        # (output/in_port: one; normal/flood/all: every port)
        def outputs(actions):
            return sum(1 if a.name in ("output", "in_port", "reject") else len(ofports)
                       for a in actions if a.name in ("output", "in_port", "normal", "flood", "all", "reject"))
        self.max_outputs = max([outputs(r.actions) for r in rules] + [1])
        if any(a.name == "goto_table" for r in rules for a in r.actions):
            # goto_table only goes forward, so a chain runs at most one rule per table:
            # its outputs add up over the tables
            per_table = {}
            for r in rules:
                per_table[r.table] = max(per_table.get(r.table, 0), outputs(r.actions))
            self.max_outputs = max(self.max_outputs, sum(per_table.values()))
        if any(a.name == "resubmit" for r in rules for a in r.actions):
            # a resubmit chain can run a rule's outputs up to 64 times deep (as OVS)
            self.max_outputs = max(self.max_outputs, 64)
        if any(a.name == "ct" and getattr(a.arg, "table", None) is not None for r in rules for a in r.actions):
            # ct(table=N): the packet's outputs add up over its passes (actions.MAX_RECIRC + 1)
            self.max_outputs *= 7

    @classmethod
    def from_file(cls, path, ofports=None, ports=None, **kw):
        return cls(parse_file(path), ofports, ports=ports, **kw)

    @property
    def mac_counters(self):
        return self.state[:5]

    def lost_copies(self):
        """Copies of packets that could not be sent for want of room (the packet may have left
        through another copy): {reason: count}."""
        return {"tx_full": int(self.state[S_LOST_TX]), "clone_full": int(self.state[S_LOST_CLONE]),
                "commit_failed": int(self.state[S_LOST_COMMIT])}

    def replace_rules(self, rules):
        """Run `rules` from now on: recompile (counters start at 0) and invalidate the flow cache.

        The batch's tx list was sized for the old rules' max_outputs; a rule
        with more outputs than that has the extra copies cut (counted tx_full); with
        rewrites where the old rules had none, modified copies are counted clone_full.
        The rules are added at the capture clock's current time (their timeouts count from it).
        """
        self._install(compile_rules(rules))
        self._ensure_conntrack(rules)

    def add_rules(self, rules):
        """As ovs-ofctl add-flow: a new rule replaces one with the same table, priority and match
        (its counters restart); other rules keep theirs, and their used and added times.
        The new rules are added at the capture clock's current time."""
        new = {identity(r) for r in rules}
        old = self.program
        kept = [r for r in old.rules if identity(r) not in new]
        self._install(compile_rules(kept + list(rules)), keep=old)
        self._ensure_conntrack(self.program.rules)

    def _install(self, program, keep=None):
        """Run `program` from now on (the flow cache invalidated); its rules that are also in
        `keep` (the program before) keep their counters and used/added times."""
        now = self.now()
        t = timeouts.UNSET if now is None else now
        size = len(program.n_packets)
        used = np.full(size, t, np.int64)
        added = np.full(size, t, np.int64)
        if keep is not None:
            at = {id(r): k for k, r in enumerate(keep.rules)}
            for j, r in enumerate(program.rules):
                k = at.get(id(r))
                if k is not None:
                    program.n_packets[j] = keep.n_packets[k]
                    program.n_bytes[j] = keep.n_bytes[k]
                    used[j] = self.used_ns[k]
                    added[j] = self.added_ns[k]
        self.program, self.used_ns, self.added_ns = program, used, added
        self.idle_ns, self.hard_ns = timeouts.per_rule(program.rules, size)
        self.timed = bool(self.idle_ns.any() or self.hard_ns.any())
        if self.timed and now is not None:
            self.clock_now = now
        self._next = self._earliest()
        self.cache.fit(emc_words(program.tss_sub, N_TABLES))
        self.cache.invalidate()

    # -- the capture clock and expiry (timeouts.py) ------------------------------------
    def now(self):
        """The capture clock's current time (ns): the latest packet timestamp seen; None before
        the first packet.  While no rule has a timeout the clock is not kept per batch: it is
        read back from the last batch run and the rules' last uses (call between batches)."""
        if self.clock_start is None:
            return None
        t = self.clock_now
        if not self.timed:
            t = max(t, int(self.used_ns.max()))
            b = self._last
            if b is not None and b.n:
                t = max(t, int(b.meta[: b.n, M_TS].max()))
        return t

    def deadlines(self):
        """int64 per compiled rule: when it expires (ns on the capture clock), timeouts.NEVER for
        none; None before the clock started (the loaded rules' deadlines count from it)."""
        if self.clock_start is None:
            return None
        return timeouts.deadlines(self.idle_ns, self.hard_ns, self.used_ns, self.added_ns)[: len(self.program.rules)]

    def _earliest(self):
        """The earliest deadline of any rule (exact now; only later as rules are used)."""
        if not self.timed or self.clock_start is None or not self.program.rules:
            return timeouts.NEVER
        return int(self.deadlines().min())

    def _start_clock(self, ts):
        self.clock_start = self.clock_now = ts
        self.added_ns[self.added_ns == timeouts.UNSET] = ts
        np.maximum(self.used_ns, self.added_ns, out=self.used_ns)
        self._next = self._earliest()

    def _expire(self):
        """Remove the rules whose deadline is at or before the clock."""
        gone = self.deadlines() <= self.clock_now
        if gone.any():
            old = self.program
            self.expired += int(gone.sum())
            self._install(compile_rules([r for r, g in zip(old.rules, gone) if not g]), keep=old)

    def run(self, batch):
        if self.timed:
            self._run_timed(batch)
            return
        if self.clock_start is None and batch.n:
            self._start_clock(int(batch.meta[0, M_TS]))
        self._last = batch
        self._run_all(batch)

    def _run_all(self, batch):
        """The kernel over the whole batch (run() without its checks)."""
        p = self.program
        self.state[S_CLONE_BASE] = batch.size
        batch.n_tx = run_actions(batch.data, batch.meta, batch.key, batch.orig, batch.n, batch.tx,
                                 p.tss_sub, p.tss_words, p.tss_slots, p.act, p.ops, self.portinfo,
                                 p.n_packets, p.n_bytes, self.cache.entries, self.cache.generation,
                                 self.trunks, self.macs.entries, self.state, self.stack, self.trace,
                                 self.used_ns, self._ct_args(batch, 0), self._first_rule(batch.n))
        self._ct_sweep(batch)

    def _run_timed(self, batch):
        """run() while some rule has a timeout: the batch in pieces split at deadlines (timeouts.py)."""
        n = batch.n
        self._last = None
        if n == 0:
            batch.n_tx, _ = self._run_rows(batch, 0, 0, 0, 0)
            return
        if self.clock_start is None:
            self._start_clock(int(batch.meta[0, M_TS]))
        top = max(self.clock_now, int(timeouts.latest(batch.meta, n)))
        if top < self._next:                  # no deadline in this batch: one kernel call
            self._run_all(batch)
            self.clock_now = top
            return
        ts = batch.meta[:n, M_TS]
        lo = n_tx = clones = 0
        while True:
            deadline = self._earliest()
            if deadline <= self.clock_now:
                self._expire()
                continue
            hi = timeouts.first_at_or_after(ts, lo, deadline)
            if hi > lo:
                k, c = self._run_rows(batch, lo, hi, n_tx, clones)
                n_tx += k
                clones += c
                self.clock_now = max(self.clock_now, int(ts[lo:hi].max()))
            if hi >= n:
                break
            self.clock_now = max(self.clock_now, int(ts[hi]))
            lo = hi
        self.state[S_CLONE_BASE] = batch.size
        self.state[S_NTX] = batch.n_tx = n_tx
        self.state[S_CLONES] = clones
        self._next = self._earliest()

    def _run_rows(self, batch, lo, hi, n_tx, clones):
        """The kernel over rows lo..hi-1 only, after n_tx tx entries and `clones` clone rows of
        earlier pieces: it runs on views starting at row lo, and the row numbers it wrote
        (tx entries, clones' M_ORIGIN, trace records) are shifted back by lo.
        -> (tx entries, clone rows) it added."""
        p = self.program
        state = self.state
        state[S_CLONE_BASE] = batch.size + clones - lo
        t0 = state[S_TRACE_N]
        k = run_actions(batch.data[lo:], batch.meta[lo:], batch.key[lo:], batch.orig[lo:], hi - lo,
                        batch.tx[n_tx:], p.tss_sub, p.tss_words, p.tss_slots, p.act, p.ops, self.portinfo,
                        p.n_packets, p.n_bytes, self.cache.entries, self.cache.generation,
                        self.trunks, self.macs.entries, state, self.stack, self.trace, self.used_ns,
                        self._ct_args(batch, lo), self._first_rule(hi - lo))
        c = int(state[S_CLONES])
        if lo:
            batch.tx[n_tx: n_tx + k, 0] += lo
            first = batch.size + clones
            batch.meta[first: first + c, M_ORIGIN] += lo
            rec = self.trace[t0: state[S_TRACE_N]]
            rec[:, 0] += lo
            out = rec[:, 1] == T_OUTPUT
            rec[out, 4] += np.where(rec[out, 4] >= 0, lo, 0)
        return int(k), c

    def _first_rule(self, n):
        """The kernel's scratch for n packets' table-0 rules (grown once, never per batch)."""
        if self.first_rule.shape[0] < n:
            self.first_rule = np.zeros(max(n, 256), np.int64)
        return self.first_rule

    def _ensure_conntrack(self, rules):
        uses = any(a.name in ("ct", "ct_clear") for r in rules for a in r.actions)
        if self.conntrack is None or (uses and self.conntrack.table.max_entries < self.ct_size):
            self.conntrack = Conntrack(self.ct_size if uses else 1, self.ct_timeouts, rows=self.rows)
        self.uses_ct = uses

    def _ct_args(self, batch, lo):
        """The conntrack tuple the kernel takes (table arrays, per-row scratch from row lo, ct exec
        values); a batch's packets enter with no cached connection."""
        ct = self.conntrack
        if not self.uses_ct:
            if self._ct_tuple is None or self._ct_tuple[6] is not self.program.ct_sets:
                self._ct_tuple = (*ct.table.arrays, ct.out, self.program.ct_sets)
            return self._ct_tuple
        if lo == 0:
            ct.out[: batch.n] = 0
        return (*ct.table.arrays, ct.out[lo:], self.program.ct_sets)

    def _ct_sweep(self, batch):
        """Reclaim expired connections: a bounded piece of the table per batch."""
        if self.uses_ct and batch.n:
            t = self.conntrack.table
            ct_sweep(*t.arrays, int(batch.meta[: batch.n, M_TS].max()), self.conntrack.sweep_budget)

    def take_trace(self):
        """The trace records of the last batch (a copy), and how many were lost; resets the buffer."""
        n, lost = int(self.state[S_TRACE_N]), int(self.state[S_TRACE_LOST])
        self.state[S_TRACE_N] = self.state[S_TRACE_LOST] = 0
        return self.trace[:n].copy(), lost
