"""Dpu: a pipeline file made runnable — its Batch, stages, ports and counters.

    dpu = Dpu.load("pipelines/l2-passthrough.toml")
    stats = dpu.run_pcaps(out_dir="out")          # default inputs from the file
    dpu.process(batch)                            # one filled batch, for tests

Each batch goes: ports fill it -> parse -> [esp-in -> decap] -> flow tables
-> [encap -> esp-out] -> ports write the tx list -> counters.  With several input captures the packets are merged in
timestamp order (ties: ports in file order, then file order).  Everything
lives on the Dpu object: two Dpus in one process do not share state.
"""
from pathlib import Path

import numpy as np

from softdpu import config
from softdpu.config_tunnels import TUNNEL_TYPES
from softdpu.batch import M_TS, Batch
from softdpu.errors import ConfigError
from softdpu.policy import flow_rules
from softdpu.ports.capture import open_capture
from softdpu.ports.copy_rows import copy_rows
from softdpu.ports.pcap_write import PcapWriter
from softdpu.stages.flows.actions import port_index_table
from softdpu.stages.flows.stage import FlowTables
from softdpu.stages.esp.stage import Esp
from softdpu.stages.flows.outputs import S_CLONES, S_TUNNELS
from softdpu.stages.parse import Parse
from softdpu.stages.tunnel.stage import Tunnels
from softdpu.stats import Stats


def _ct_zone_guess(rules):
    """The zone of the pipeline's ct() actions when they all name the same constant one, else 0."""
    zones = {a.arg.zone for r in rules for a in r.actions
             if a.name == "ct" and getattr(a.arg, "zone_field", None) is None and hasattr(a.arg, "zone")}
    return zones.pop() if len(zones) == 1 else 0


class Dpu:
    def __init__(self, cfg):
        self.config = cfg
        self.ports = cfg.ports
        ofports = [p.ofport for p in cfg.ports]
        self.port_index = port_index_table(ofports)
        rules = flow_rules(cfg)          # the compiled [firewall] (policy.py), then the .flows file's
        if any(p.type in TUNNEL_TYPES for p in cfg.ports) and any(a.name == "reject" for r in rules
                                                                   for a in r.actions):
            raise ConfigError(cfg.path, "firewall", "the reject action is not supported with tunnel ports yet "
                              "(use drop)")
        self.flows = FlowTables(rules, ports=cfg.ports, mac_aging=cfg.mac_aging,
                                mac_table_size=cfg.mac_table_size, ct_size=cfg.conntrack_size,
                                ct_timeouts=cfg.conntrack_timeouts, rows=cfg.batch)
        fanout = self.flows.max_outputs
        # rows for modified copies: one per tx entry, at most 4096 (8 MB of 2 kB slots)
        clones = min(cfg.batch * fanout, max(4096, cfg.batch)) if self.flows.rewrites else 0
        if any(p.type in TUNNEL_TYPES for p in cfg.ports) or cfg.esp:
            # a copy to a tunnel (or one ESP protects) that other outputs share is wrapped in a clone row
            clones = max(clones, min(cfg.batch * fanout, max(4096, cfg.batch)))
        self.batch = Batch(cfg.batch, cfg.max_frame, fanout=fanout, clones=clones)
        self.tunnels = Tunnels(cfg.ports, cfg.neighbors, self.batch.data.shape[0], cfg.geneve_options)
        self.flows.state[S_TUNNELS] = int(bool(self.tunnels))   # tx entries carry the tunnel fields
        if self.flows.conntrack is not None:
            self.flows.conntrack.prefetch_zone = _ct_zone_guess(rules)
        self.parse = Parse(drop_malformed=cfg.drop_malformed)
        self.stats = Stats(cfg.ports, cfg.batch)
        self.stats.lost_copies = self.flows.lost_copies
        self.stats.expired_flows = lambda: self.flows.expired
        self.esp = Esp(cfg.esp, cfg.ports, self.batch.data.shape[0], cfg.max_frame) if cfg.esp else None
        self.stats.extra_lines = (self.tunnels.lines if self.esp is None
                                  else lambda: self.tunnels.lines() + self.esp.lines())
        self.tracer = None        # also builds self.steps
        self.process(self.batch)  # an empty batch: loads the compiled kernels now, not mid-run

    @classmethod
    def load(cls, path):
        return cls(config.load(path))

    @property
    def tracer(self):
        """A trace.Tracer that marks packets and collects their records, or None."""
        return self._tracer

    @tracer.setter
    def tracer(self, tracer):
        self._tracer = tracer
        self.steps = self._steps()

    def _steps(self):
        """The stages a batch goes through, in order: [(name, callable(batch))].

        The names are what per-stage timing reports (bench); "trace" steps
        are only there while a tracer is set.
        """
        trace = self._tracer
        steps = [("parse", self.parse.run)]
        if trace is not None:
            steps.append(("trace", trace.after_parse))
        if self.esp is not None:
            steps.append(("esp-in", lambda batch: self.esp.inbound(batch, self.config.drop_malformed)))
            if trace is not None:
                steps.append(("trace", trace.after_esp_in))
        if self.tunnels:
            steps.append(("decap", lambda batch: self.tunnels.decap(batch, self.config.drop_malformed)))
        if trace is not None:
            steps.append(("trace", trace.before_flows))
        if self.flows.uses_ct:
            # a big table: overlap its cache misses (reads only, no state)
            steps.append(("ct-prefetch", self.flows.conntrack.prefetch))
        steps.append(("flows", self.flows.run))
        if trace is not None:
            steps.append(("trace", trace.after_flows))
        if self.tunnels:
            steps.append(("encap", lambda batch: self.tunnels.encap(batch, int(self.flows.state[S_CLONES]))))
            if trace is not None:
                steps.append(("trace", trace.after_encap))
        if self.esp is not None:
            steps.append(("esp-out", self._esp_out))
            if trace is not None:
                steps.append(("trace", trace.after_esp_out))
        steps.append(("stats", lambda batch: self.stats.add(batch, self.port_index)))
        return steps

    def _esp_out(self, batch):
        used = int(self.tunnels.clones[0]) if self.tunnels else int(self.flows.state[S_CLONES])
        self.esp.outbound(batch, used)

    def process(self, batch):
        """Run the stages over one filled batch and count it."""
        if batch.n > self.batch.size or batch.tx.shape[0] < batch.n * self.flows.max_outputs:
            raise ValueError(f"a batch of {batch.n} packets (tx room {batch.tx.shape[0]}) is more than this "
                             f"Dpu was sized for ({self.batch.size}, fanout {self.flows.max_outputs}); "
                             f"use dpu.batch")
        for _, step in self.steps:
            step(batch)

    # -- pcap mode ---------------------------------------------------------
    def inputs(self, overrides=None):
        """[(port, capture path)] in port order: the defaults, replaced by overrides {name: path}."""
        chosen = {p.name: p.options["input"] for p in self.ports if p.options.get("input")}
        for name, path in (overrides or {}).items():
            if name not in {p.name for p in self.ports}:
                raise ConfigError(self.config.path, "--in",
                                  f"no port named {name!r}; ports are: {', '.join(p.name for p in self.ports)}")
            if not Path(path).is_file():
                raise ConfigError(self.config.path, "--in", f"no such capture file for port {name}: {path}")
            chosen[name] = Path(path)
        if not chosen:
            raise ConfigError(self.config.path, "port.input",
                              "no input capture: give a port an input file or use --in PORT=FILE")
        return [(p, chosen[p.name]) for p in self.ports if p.name in chosen]

    def run_pcaps(self, inputs=None, out_dir="out", progress=None, warn=None, until=None):
        """Run capture files through the pipeline, one output pcap per port in out_dir.

        progress: a callable(packets) called after each batch (e.g. a progress bar).
        until: a callable() -> True to stop after the current batch (e.g. trace is done).
        Returns the Stats.
        """
        sources = self.inputs(inputs)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        readers = []
        writers = {}
        try:
            for port, path in sources:
                readers.append(open_capture(path, port.ofport, warn=warn))
            nanosecond = any(r.nanosecond for r in readers)
            for p in self.ports:
                if p.type == "pcap":        # a tunnel port's packets leave by its underlay
                    writers[p.ofport] = PcapWriter(out_dir / f"{p.name}.pcap", nanosecond=nanosecond)
            batches = _single(readers[0], self.batch) if len(readers) == 1 else _merged(readers, self.batch)
            for batch in batches:
                self.process(batch)
                for ofport, w in writers.items():
                    w.write_tx(batch, ofport)
                if progress:
                    progress(batch.n)
                if until is not None and until():
                    break
        finally:
            for r in readers:
                r.close()
            for w in writers.values():
                w.close()
        self.outputs = {p.name: out_dir / f"{p.name}.pcap" for p in self.ports if p.type == "pcap"}
        return self.stats


def _single(reader, batch):
    """Batches straight from one reader."""
    while True:
        batch.clear()
        if reader.fill(batch) == 0:  # 0 only at end of file: the batch was empty
            return
        yield batch


def _merged(readers, batch):
    """Batches from several readers, merged by timestamp.

    Each reader fills a staging batch of its own.  A staged packet may go
    out once no reader that still has data could produce one that sorts
    before it: for every reader k not yet at end of file, its (timestamp,
    reader) is at most (k's last staged timestamp, k), so a tie with a
    packet k has not read yet waits when k comes first in port order.  The
    order is then the same whatever the batch size.  A capture's own order
    is always kept: a packet whose timestamp goes back sorts at the latest
    timestamp before it in its file (the running maximum, `key`).  Sorting
    is per batch with numpy; the copy is one kernel call per reader.
    """
    staged = [Batch(batch.size, batch.max_frame, fanout=1, clones=0) for _ in readers]
    key = [np.zeros(0, np.int64) for _ in readers]
    pos = [0] * len(readers)
    done = [False] * len(readers)
    while True:
        for j, (r, s) in enumerate(zip(readers, staged)):
            if pos[j] >= s.n and not done[j]:
                floor = key[j][-1:]          # the running maximum so far (none at the start)
                s.clear()
                pos[j] = 0
                while s.n == 0 and not r.eof:
                    r.fill(s)
                done[j] = s.n == 0
                key[j] = np.maximum.accumulate(np.concatenate([floor, s.meta[: s.n, M_TS]]))[len(floor):]
        live = [j for j in range(len(readers)) if pos[j] < staged[j].n]
        if not live:
            return
        ts = np.concatenate([key[j][pos[j]:] for j in live])
        src = np.concatenate([np.full(staged[j].n - pos[j], j) for j in live])
        idx = np.concatenate([np.arange(pos[j], staged[j].n) for j in live])
        ready = np.ones(len(ts), np.bool_)
        for k in live:
            if not readers[k].eof:
                last = key[k][-1]
                ready &= (ts < last) | ((ts == last) & (src <= k))
        order = np.lexsort((idx, src, ts))
        order = order[ready[order]][: batch.size]
        batch.clear()
        dst = np.arange(len(order), dtype=np.int64)
        for j in live:
            mine = src[order] == j
            rows = idx[order][mine].astype(np.int64)
            copy_rows(staged[j].data, staged[j].meta, rows, batch.data, batch.meta, dst[mine])
            pos[j] += len(rows)
        batch.n = len(order)
        yield batch
