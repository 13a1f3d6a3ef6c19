"""The tunnel stage of a Dpu: decapsulate before the flow tables, encapsulate after them."""
import numpy as np

from softdpu.stages.tunnel.decap import decap_batch
from softdpu.stages.tunnel.encap import (C_COLS, C_RX_BYTES, C_RX_DROPPED, C_RX_PACKETS, C_TX_BYTES,
                                         C_TX_FAILED, C_TX_PACKETS, encap_tx)
from softdpu.stages.tunnel.table import TunnelTable


class Tunnels:
    """Owns the tunnel table, its counters and the encapsulation scratch of one Dpu."""

    def __init__(self, ports, neighbors, rows, geneve_options=()):
        self.table = TunnelTable(ports, neighbors, geneve_options)
        self.counters = np.zeros((max(self.table.count, 1), C_COLS), np.int64)
        self.refs = np.zeros((rows, 2), np.int64)
        self.clones = np.zeros(1, np.int64)
        self.resolve_any = bool(self.table.resolve.any())

    def __bool__(self):
        return bool(self.table)

    def decap(self, batch, drop_malformed):
        t = self.table
        return decap_batch(batch.data, batch.meta, batch.key, batch.n, t.underlay, t.tunnels, t.count,
                           t.geneve_options, t.n_geneve_options, t.resolve, t.neighbours, t.nstate,
                           drop_malformed, self.counters)

    def encap(self, batch, clones_used):
        """Wrap the tx entries to tunnel ports; clone rows from batch.size + clones_used on are free.
        -> clone rows used in all."""
        t = self.table
        self.clones[0] = clones_used
        batch.n_tx = encap_tx(batch.data, batch.meta, batch.tx, batch.n_tx, batch.n, batch.size, self.clones,
                              t.port_tunnel, t.tunnels, t.neighbours, t.nstate, t.resolve,
                              self.resolve_any, t.geneve_options, t.n_geneve_options, self.refs,
                              self.counters)
        return int(self.clones[0])

    def lines(self):
        """Per tunnel port: what it carried, for the run summary."""
        out = []
        for k, p in enumerate(self.table.ports):
            c = self.counters[k]
            out.append(f"tunnel {p.name} ({p.type}, ofport {p.ofport}): rx {c[C_RX_PACKETS]} packets "
                       f"{c[C_RX_BYTES]} bytes (dropped {c[C_RX_DROPPED]}), tx {c[C_TX_PACKETS]} packets "
                       f"{c[C_TX_BYTES]} bytes (not sent {c[C_TX_FAILED]})")
        return out
