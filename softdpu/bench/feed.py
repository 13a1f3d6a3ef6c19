"""Feeder: refills a Batch from frames in memory, as the pcap reader fills it.

    feed = Feeder(frames, in_port, batch_size, lengths=None)
    for lo in feed.batches():
        feed.fill(batch, lo)         # untimed: reading is the ports' job
        dpu.process(batch)

Per packet, as put_packet does: the meta row zeroed, then start (HEADROOM),
length and wire length, timestamp, in_port, drop = 0; the frame's bytes copied
into the slot (one kernel call a batch).  frames is uint8[n, width]; a row's frame is its first
lengths[k] bytes (all `width` when lengths is None).  Timestamps go up
NS_PER_PKT_CLOCK ns a packet (10 GbE line rate at 64 B) from T0, so MAC aging,
flow and conntrack timeouts see a live clock.  The in-memory benches in
bench/ and `softdpu bench` share it.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.batch import HEADROOM, M_COLS, M_DROP, M_IN_PORT, M_LEN, M_START, M_TS, M_WIRE_LEN

T0 = 1_700_000_000 * 10**9
NS_PER_PKT_CLOCK = 67


@njit(alloc=False)
def _refill(frames, fmeta, lo, n, clock, step, data, meta):
    """Rows lo..lo+n-1 of the pool into batch rows 0..n-1: the meta row, the timestamp, the
    frame's own bytes (M_LEN of them) at HEADROOM."""
    cols = np.uint64(fmeta.shape[1])
    head = np.uint64(HEADROOM)
    for k in range(np.uint64(n)):
        i = np.uint64(lo) + k
        for c in range(cols):
            meta[k, c] = fmeta[i, c]
        meta[k, M_TS] = clock + np.int64(k) * step
        for b in range(np.uint64(fmeta[i, M_LEN])):
            data[k, head + b] = frames[i, b]


class Feeder:
    def __init__(self, frames_, in_port, size, lengths=None):
        self.frames, self.size = frames_, size
        self.flen = frames_.shape[1]
        n = len(frames_)
        self.meta = np.zeros((n, M_COLS), np.int64)
        self.meta[:, M_START] = HEADROOM
        self.meta[:, M_LEN] = self.flen if lengths is None else lengths
        self.meta[:, M_WIRE_LEN] = self.meta[:, M_LEN]
        self.meta[:, M_IN_PORT] = in_port
        self.meta[:, M_DROP] = 0
        self.clock = T0

    def batches(self):
        return range(0, len(self.frames), self.size)

    def fill(self, batch, lo):
        hi = min(lo + self.size, len(self.frames))
        n = hi - lo
        batch.clear()
        _refill(self.frames, self.meta, lo, n, self.clock, NS_PER_PKT_CLOCK, batch.data, batch.meta)
        self.clock += n * NS_PER_PKT_CLOCK
        batch.n = n
        return n
