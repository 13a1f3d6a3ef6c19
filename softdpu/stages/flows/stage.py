"""The flow-table stage: a .flows file, compiled, run over each batch."""
import numpy as np

from softdpu.stages.flows import action_syntax
from softdpu.stages.flows.actions import MAX_DEPTH, port_index_table, run_actions
from softdpu.stages.flows.compile import compile_rules, identity
from softdpu.stages.flows.flow_cache import DEFAULT_ENTRIES, FlowCache
from softdpu.stages.flows.outputs import (P_COUNT, P_INDEX, P_OFPORT, P_TAG, S_AGING, S_CLONE_BASE,
                                          S_COLS, S_LOST_CLONE, S_LOST_COMMIT, S_LOST_TX, S_MAX_MACS)
from softdpu.stages.flows.syntax import parse_file
from softdpu.stages.flows.trace_records import RECORDS, S_TRACE_LOST, S_TRACE_N
from softdpu.stages.l2 import DEFAULT_AGING_S, DEFAULT_MAX_ENTRIES, MacTable, port_vlan_arrays


class _Port:
    def __init__(self, ofport):
        self.ofport, self.options = ofport, {}


class FlowTables:
    """Owns the compiled program, its counters, the flow cache and `normal`'s MAC table;
    `run(batch)` fills batch.tx.

    ports: PortConfigs (their `tag`/`trunks` options set VLAN modes for normal) or plain
    OpenFlow port numbers (trunks carrying every VLAN)."""

    def __init__(self, rules, ofports=None, cache_entries=DEFAULT_ENTRIES, ports=None,
                 mac_table_size=DEFAULT_MAX_ENTRIES, mac_aging=DEFAULT_AGING_S):
        if ports is None:
            ports = [_Port(p) for p in ofports]
        self.ports = list(ports)
        ofports = [p.ofport for p in self.ports]
        self.program = compile_rules(rules)
        self.port_index = port_index_table(ofports)
        self.cache = FlowCache(cache_entries)
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
        self.stack = np.zeros((MAX_DEPTH + 1, 3), np.int64)
        self.trace = np.zeros((RECORDS, 6), np.int64)   # records of traced packets (trace_records.py)
        # can a packet be modified before an output (then the batch needs clone rows)?
        plain = {"output", "drop", "in_port", "flood", "all", "resubmit", "goto_table", "clear_actions",
                 "write_metadata", "set_tunnel", "set_tunnel64"}
        self.rewrites = any(a.name not in plain for r in rules for a in r.actions)
        # most tx entries one packet can make: sizes the batch's tx list and clone rows
        # (output/in_port: one; normal/flood/all: every port)
        def outputs(actions):
            return sum(1 if a.name in ("output", "in_port") else len(ofports)
                       for a in actions if a.name in ("output", "in_port", "normal", "flood", "all"))
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
        """
        self.program = compile_rules(rules)
        self.cache.invalidate()

    def add_rules(self, rules):
        """As ovs-ofctl add-flow: a new rule replaces one with the same table, priority and match
        (its counters restart); other rules keep theirs."""
        new = {identity(r) for r in rules}
        old = self.program
        kept = [(k, r) for k, r in enumerate(old.rules) if identity(r) not in new]
        self.replace_rules([r for _, r in kept] + list(rules))
        at = {id(r): k for k, r in enumerate(self.program.rules)}
        for k, r in kept:
            self.program.n_packets[at[id(r)]] = old.n_packets[k]
            self.program.n_bytes[at[id(r)]] = old.n_bytes[k]

    def run(self, batch):
        p = self.program
        self.state[S_CLONE_BASE] = batch.size
        batch.n_tx = run_actions(batch.data, batch.meta, batch.key, batch.orig, batch.n, batch.tx,
                                 p.tss_sub, p.tss_words, p.tss_slots, p.act, p.ops, self.portinfo,
                                 p.n_packets, p.n_bytes, self.cache.entries, self.cache.generation,
                                 self.trunks, self.macs.entries, self.state, self.stack, self.trace)

    def take_trace(self):
        """The trace records of the last batch (a copy), and how many were lost; resets the buffer."""
        n, lost = int(self.state[S_TRACE_N]), int(self.state[S_TRACE_LOST])
        self.state[S_TRACE_N] = self.state[S_TRACE_LOST] = 0
        return self.trace[:n].copy(), lost
