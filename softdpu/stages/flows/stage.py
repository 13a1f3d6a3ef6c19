"""The flow-table stage: a .flows file, compiled, run over each batch."""
from softdpu.stages.flows.actions import port_index_table, run_actions
from softdpu.stages.flows.compile import compile_rules
from softdpu.stages.flows.syntax import parse_file


class FlowTables:
    """Owns the compiled program and its counters; `run(batch)` fills batch.tx."""

    def __init__(self, rules, ofports):
        self.program = compile_rules(rules)
        self.port_index = port_index_table(ofports)
        # most tx entries one packet can make: sizes the batch's tx list
        self.max_outputs = max([sum(a.name == "output" for a in r.actions) for r in rules] + [1])

    @classmethod
    def from_file(cls, path, ofports):
        return cls(parse_file(path), ofports)

    def run(self, batch):
        p = self.program
        batch.n_tx = run_actions(batch.meta, batch.key, batch.n, batch.tx, p.mask, p.value,
                                 p.table_bounds, p.act, p.ops, self.port_index,
                                 p.n_packets, p.n_bytes)
