"""Counters of a pipeline run: per-port rx/tx packets and bytes, drops per reason.

`account` is one kernel call per batch, after the flow tables: it counts
every received row on its in_port, every tx entry on its port, and every
dropped row under its reason, so `rx == left + dropped` always holds
(a packet that leaves through several ports counts once in `left`).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_IN_PORT, M_LEN, M_ORIGIN, M_PARSE_ERR, M_WIRE_LEN


@njit
def account(meta, n, tx, n_tx, port_index, counters, drop_counts, sent):
    """counters[k] = (rx_pkts, rx_bytes, tx_pkts, tx_bytes) of port index k; returns packets that left.

    drop_counts[0, code]: packets dropped for that reason; drop_counts[1, code]:
    malformed packets with that parse error (dropped or not).
    """
    for i in range(n):
        sent[i] = 0
        k = port_index[meta[i, M_IN_PORT]]
        if k >= 0:
            counters[k, 0] += 1
            counters[k, 1] += meta[i, M_WIRE_LEN]
        drop_counts[0, meta[i, M_DROP]] += 1
        drop_counts[1, meta[i, M_PARSE_ERR]] += 1
    for j in range(n_tx):
        i = tx[j, 0]
        k = port_index[tx[j, 1]]
        counters[k, 2] += 1
        counters[k, 3] += meta[i, M_LEN]
        if i >= n:                 # a clone row: its packet left (none: made by softdpu, e.g. ARP)
            i = meta[i, M_ORIGIN]
        if i >= 0:
            sent[i] = 1
    left = 0
    for i in range(n):
        left += sent[i]
    return left


class Stats:
    """Counters for the ports of one pipeline (in config order)."""

    def __init__(self, ports, batch_size):
        self.ports = ports
        self.counters = np.zeros((len(ports), 4), np.int64)
        self._reasons = np.zeros((2, drops.N_REASONS), np.int64)
        self.drops = self._reasons[0]       # per drop reason
        self.malformed = self._reasons[1]   # per parse error, forwarded or dropped
        self.left = 0
        self._sent = np.zeros(batch_size, np.int64)
        self.lost_copies = dict   # -> {reason: copies lost for want of room}; the Dpu sets it
        self.expired_flows = int  # -> flow rules removed by idle_timeout / hard_timeout; the Dpu sets it
        self.extra_lines = list   # -> more summary lines (tunnel ports); the Dpu sets it

    def add(self, batch, port_index):
        self.left += account(batch.meta, batch.n, batch.tx, batch.n_tx, port_index,
                             self.counters, self._reasons, self._sent)

    @property
    def rx(self):
        return int(self.counters[:, 0].sum())

    @property
    def dropped(self):
        return int(self.drops[1:].sum())

    def port(self, name):
        k = [p.name for p in self.ports].index(name)
        rxp, rxb, txp, txb = (int(v) for v in self.counters[k])
        return dict(rx_packets=rxp, rx_bytes=rxb, tx_packets=txp, tx_bytes=txb)

    def drop_counts(self):
        """{reason name: count} for the reasons that occurred."""
        return {drops.NAMES[c]: int(v) for c, v in enumerate(self.drops) if c and v}

    def malformed_counts(self):
        """{parse error name: count} of malformed packets seen (forwarded or dropped)."""
        return {drops.NAMES[c]: int(v) for c, v in enumerate(self.malformed) if c and v}

    def table(self):
        """The run summary as text lines."""
        rows = [("port", "ofport", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes")]
        for p, c in zip(self.ports, self.counters):
            rows.append((p.name, str(p.ofport), *(str(int(v)) for v in c)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.append("")
        lines.append(f"received {self.rx}, left {self.left}, dropped {self.dropped}")
        for name, v in self.drop_counts().items():
            lines.append(f"  drop {name:<22} {v:>10}  {drops.REASONS[drops.CODE[name]][1]}")
        for name, v in self.lost_copies().items():
            if v:
                lines.append(f"  lost copies {name:<15} {v:>10}  copies of packets that left by another "
                             "copy (raise the fanout)")
        expired = self.expired_flows()
        if expired:
            lines.append(f"flows expired {expired} (idle_timeout / hard_timeout, on the capture clock)")
        for name, v in self.malformed_counts().items():
            lines.append(f"  malformed {name:<17} {v:>10}  {drops.REASONS[drops.CODE[name]][1]}")
        lines += self.extra_lines()
        return lines
