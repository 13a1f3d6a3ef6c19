"""A small driver for conntrack tests and tools: frames in, ct_state bits out (Python, not the hot path).

    h = CtHarness(max_entries=64)
    h.ct(frame, ts_ns, zone=0, commit=True)      # -> ct_state of that packet
    h.firewall(frame, ts_ns)                     # the ovs-actions(7) firewall pattern:
                                                 # ct(table=1), then ct(commit) if +new
    h.last_tuple()                               # (src, dst, tp_src, tp_dst, proto, v6) or None

Each call parses the frame into row 0 of a one-row Batch and runs
execute.ct_execute on it, so the kernels under test are exactly the ones the
pipeline will run.
"""
import numpy as np

from softdpu.batch import Batch
from softdpu.stages.conntrack.execute import (CS_NEW, CS_TRK, O_CONN, O_DST_HI, O_DST_LO, O_INFO,
                                              O_PORTS, O_PROTO, O_SRC_HI, O_SRC_LO, OP_PRESENT,
                                              ct_clear, ct_execute)
from softdpu.stages.conntrack.stage import Conntrack
from softdpu.stages.parse import parse_batch

STATE_BITS = (("new", 0x01), ("est", 0x02), ("rel", 0x04), ("rpl", 0x08), ("inv", 0x10), ("trk", 0x20))


def state_str(s):
    """ct_state bits as OVS prints them, e.g. '+trk+est+rpl' ('' for 0)."""
    order = ("new", "est", "rel", "rpl", "inv", "trk")
    bits = dict(STATE_BITS)
    return "".join(f"+{n}" for n in order if s & bits[n]) or "-trk"


class CtHarness:
    def __init__(self, max_entries=64, timeouts=None, check_csum=True):
        self.conntrack = Conntrack(max_entries, timeouts, check_csum, rows=1)
        self.table = self.conntrack.table
        self.out = self.conntrack.out
        self.batch = Batch(size=1, max_frame=9216)
        self.setm = np.zeros((1, 6), np.uint64)

    def _load(self, frame, ts):
        self.batch.clear()
        self.batch.append(bytes(frame), ts=ts)
        parse_batch(self.batch.data, self.batch.meta, self.batch.key, 1, False)
        ct_clear(self.batch.key, self.out, 0)

    def _exec(self, zone, commit, force, mark, label, ts):
        srow = -1
        if mark is not None or label is not None:
            mv, mm = mark or (0, 0)
            lv, lm = label or (0, 0)
            self.setm[0] = [mv, mm, lv >> 64, lv & (2**64 - 1), lm >> 64, lm & (2**64 - 1)]
            srow = 0
        b = self.batch
        return int(ct_execute(*self.table.arrays, b.data, b.meta, b.key, self.out, 0, zone,
                              commit, force, self.setm, srow, ts))

    def ct(self, frame, ts=0, zone=0, commit=True, force=False, mark=None, label=None):
        """One fresh packet through one ct() action.  -> ct_state"""
        self._load(frame, ts)
        return self._exec(zone, commit, force, mark, label, ts)

    def firewall(self, frame, ts=0, zone=0):
        """ct(zone,table=1); in table 1, +trk+new packets go through ct(commit,zone) (the
        cached connection is kept across the two, as OVS's recirculation).  -> first ct_state"""
        self._load(frame, ts)
        s = self._exec(zone, False, False, None, None, ts)
        if s & (CS_TRK | CS_NEW) == (CS_TRK | CS_NEW):
            self._exec(zone, True, False, None, None, ts)
        return s

    def again(self, zone=0, commit=True, force=False, mark=None, label=None, ts=0):
        """Another ct() on the same packet (recirculated).  -> ct_state"""
        return self._exec(zone, commit, force, mark, label, ts)

    def key_ct(self):
        """(ct_state, ct_zone, ct_mark, ct_label) from the packet's key row."""
        w = int(self.batch.key[0, 23])
        return (w >> 48, (w >> 32) & 0xFFFF, w & 0xFFFFFFFF,
                (int(self.batch.key[0, 24]) << 64) | int(self.batch.key[0, 25]))

    def last_tuple(self):
        o = [int(x) for x in self.out[0]]
        if not o[O_PROTO] & OP_PRESENT:
            return None
        v6 = (o[O_PROTO] >> 8) & 1
        return ((o[O_SRC_HI] << 64) | o[O_SRC_LO], (o[O_DST_HI] << 64) | o[O_DST_LO],
                o[O_PORTS] >> 16, o[O_PORTS] & 0xFFFF, o[O_PROTO] & 0xFF, v6)

    def info(self):
        return int(self.out[0, O_INFO]), int(self.out[0, O_CONN])
