"""The flow-table stage: a .flows file, compiled, run over each batch."""
from softdpu.stages.flows.actions import port_index_table, run_actions
from softdpu.stages.flows.compile import compile_rules, identity
from softdpu.stages.flows.flow_cache import DEFAULT_ENTRIES, FlowCache
from softdpu.stages.flows.syntax import parse_file


class FlowTables:
    """Owns the compiled program, its counters and the flow cache; `run(batch)` fills batch.tx."""

    def __init__(self, rules, ofports, cache_entries=DEFAULT_ENTRIES):
        self.program = compile_rules(rules)
        self.port_index = port_index_table(ofports)
        self.cache = FlowCache(cache_entries)
        # most tx entries one packet can make: sizes the batch's tx list
        self.max_outputs = max([sum(a.name == "output" for a in r.actions) for r in rules] + [1])

    @classmethod
    def from_file(cls, path, ofports):
        return cls(parse_file(path), ofports)

    def replace_rules(self, rules):
        """Run `rules` from now on: recompile (counters start at 0) and invalidate the flow cache.

        The batch's tx list was sized for the old rules' max_outputs; a rule
        with more outputs than that has the extra copies cut.
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
        batch.n_tx = run_actions(batch.meta, batch.key, batch.n, batch.tx, p.tss_sub, p.tss_words,
                                 p.tss_slots, p.act, p.ops, self.port_index,
                                 p.n_packets, p.n_bytes, self.cache.entries, self.cache.generation)

