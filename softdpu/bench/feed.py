"""Feeder: refills a Batch from frames in memory, as the pcap reader fills it.

    feed = Feeder(frames, in_port, batch_size, lengths=None)
    for lo in feed.batches():
        feed.fill(batch, lo)         # untimed: reading is the ports' job
        dpu.process(batch)

Per packet, as put_packet does: the meta row zeroed, then start (HEADROOM),
length and wire length, timestamp, in_port, drop = 0; the frame bytes copied
into the slot.  frames is uint8[n, width]; a row's frame is its first
lengths[k] bytes (all `width` when lengths is None).  Timestamps go up
NS_PER_PKT_CLOCK ns a packet (10 GbE line rate at 64 B) from T0, so MAC aging,
flow and conntrack timeouts see a live clock.  The in-memory benches in
bench/ and `softdpu bench` share it.
"""
import numpy as np

from softdpu.batch import HEADROOM, M_COLS, M_DROP, M_IN_PORT, M_LEN, M_START, M_TS, M_WIRE_LEN

T0 = 1_700_000_000 * 10**9
NS_PER_PKT_CLOCK = 67


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
        self.steps = np.arange(size, dtype=np.int64) * NS_PER_PKT_CLOCK

    def batches(self):
        return range(0, len(self.frames), self.size)

    def fill(self, batch, lo):
        hi = min(lo + self.size, len(self.frames))
        n = hi - lo
        batch.clear()
        batch.data[:n, HEADROOM: HEADROOM + self.flen] = self.frames[lo:hi]
        batch.meta[:n] = self.meta[lo:hi]
        batch.meta[:n, M_TS] = self.clock + self.steps[:n]
        self.clock += n * NS_PER_PKT_CLOCK
        batch.n = n
        return n
