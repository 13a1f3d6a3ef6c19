"""libpcap writer: a batch's tx list for one port, packed by a kernel into a buffer.

  file header, little-endian (24 bytes)     record (16 + incl_len bytes)
  ┌──────────────────────────────────┐      ┌──────────────────────────────┐
  │ magic a1b2c3d4 (µs) / a1b23c4d   │      │ ts_sec                  u32  │
  │       (ns), stored d4c3b2a1 ...  │      │ ts_usec / ts_nsec       u32  │
  │ version 2.4, thiszone 0,         │      │ incl_len = min(len, snaplen) │
  │ sigfigs 0, snaplen, linktype 1   │      │ orig_len = len               │
  └──────────────────────────────────┘      ├──────────────────────────────┤
                                            │ incl_len bytes of frame      │
                                            └──────────────────────────────┘

Records accumulate in one preallocated buffer, written with a single
file.write() whenever it fills and at close().  Microsecond files round
nanosecond timestamps down.
"""
import struct

import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_LEN, M_START, M_TS

MAGIC_US, MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
LINKTYPE_ETHERNET = 1
BUFFER = 1 << 20
MIN_BUFFER = 1 << 17     # always holds one record of the largest slot

# kernel state slots
S_J, S_POS, S_NS, S_SNAP, S_PACKETS, S_BYTES = range(6)
# kernel results
DONE, FULL, BAD_ENTRY = 0, 1, 2


@njit
def _put32(out, p, v):
    out[p] = v & 0xFF
    out[p + 1] = (v >> 8) & 0xFF
    out[p + 2] = (v >> 16) & 0xFF
    out[p + 3] = (v >> 24) & 0xFF


@njit
def _pack_tx(tx, n_tx, port, data, meta, out, st):
    """Append records for tx entries st[S_J]..n_tx-1 going to `port` to out[st[S_POS]:].

    Returns DONE, FULL (flush out[:pos] and call again) or BAD_ENTRY (tx
    entry st[S_J] points outside the batch or its slot).
    """
    j, pos, ns, snap = st[S_J], st[S_POS], st[S_NS] != 0, st[S_SNAP]
    cap, rows, slot = out.shape[0], data.shape[0], data.shape[1]
    packets = nbytes = 0
    status = DONE
    while j < n_tx:
        if tx[j, 1] != port:
            j += 1
            continue
        i = tx[j, 0]
        if i < 0 or i >= rows:
            status = BAD_ENTRY
            break
        s, n = meta[i, M_START], meta[i, M_LEN]
        if s < 0 or n < 0 or s + n > slot:
            status = BAD_ENTRY
            break
        incl = min(n, snap)
        if pos + 16 + incl > cap:
            status = FULL
            break
        ts = meta[i, M_TS]
        sec = ts // 1_000_000_000
        frac = ts - sec * 1_000_000_000
        if not ns:
            frac //= 1000
        _put32(out, pos, sec)
        _put32(out, pos + 4, frac)
        _put32(out, pos + 8, incl)
        _put32(out, pos + 12, n)
        src = data[i, s: s + incl]   # views indexed from 0 and a plain loop:
        dst = out[pos + 16: pos + 16 + incl]   # vectorized, unlike a slice assignment
        for k in range(incl):
            dst[k] = src[k]
        pos += 16 + incl
        packets += 1
        nbytes += incl
        j += 1
    st[S_J], st[S_POS] = j, pos
    st[S_PACKETS] += packets
    st[S_BYTES] += nbytes
    return status


class PcapWriter:
    """Writes Ethernet frames to a libpcap file (µs, or ns with nanosecond=True)."""

    def __init__(self, path, nanosecond=False, snaplen=262144, buffer_size=BUFFER):
        if not 1 <= snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be 1..4294967295, got {snaplen}")
        self.path, self.nanosecond, self.snaplen = str(path), nanosecond, snaplen
        self.packets = self.bytes = 0
        self._out = np.empty(max(buffer_size, MIN_BUFFER), dtype=np.uint8)
        self._st = np.zeros(6, dtype=np.int64)
        self._st[S_NS], self._st[S_SNAP] = nanosecond, snaplen
        self._file = open(path, "wb", buffering=0)
        magic = MAGIC_NS if nanosecond else MAGIC_US
        struct.pack_into("<IHHiIII", self._out, 0, magic, 2, 4, 0, 0, snaplen,
                         LINKTYPE_ETHERNET)
        self._st[S_POS] = 24

    def write_tx(self, batch, port_no):
        """Write, in order, the packets of batch.tx[:n_tx] going to port_no -> (packets, bytes)."""
        st = self._st
        st[S_J] = st[S_PACKETS] = st[S_BYTES] = 0
        while True:
            status = _pack_tx(batch.tx, batch.n_tx, port_no, batch.data, batch.meta,
                              self._out, st)
            if status == DONE:
                break
            if status == FULL:
                self._flush()
            else:
                j = int(st[S_J])
                self._count(st)
                raise ValueError(f"tx entry {j} (packet {int(batch.tx[j, 0])}) is outside "
                                 f"the batch or its slot")
        return self._count(st)

    def _count(self, st):
        packets, nbytes = int(st[S_PACKETS]), int(st[S_BYTES])
        self.packets += packets
        self.bytes += nbytes
        return packets, nbytes

    def write_frame(self, frame, ts_ns):
        """Write one frame (bytes-like) with a timestamp in ns since the epoch."""
        frame = memoryview(frame).cast("B")
        n = len(frame)
        incl = min(n, self.snaplen)
        sec, frac = divmod(int(ts_ns), 1_000_000_000)
        if not self.nanosecond:
            frac //= 1000
        head = struct.pack("<IIII", sec & 0xFFFFFFFF, frac, incl, n)
        pos = int(self._st[S_POS])
        if pos + 16 + incl > len(self._out):
            self._flush()
            pos = 0
        if 16 + incl > len(self._out):
            self._write(head)
            self._write(frame[:incl])
        else:
            self._out[pos: pos + 16] = np.frombuffer(head, dtype=np.uint8)
            self._out[pos + 16: pos + 16 + incl] = np.frombuffer(frame[:incl], dtype=np.uint8)
            self._st[S_POS] = pos + 16 + incl
        self.packets += 1
        self.bytes += incl

    def _flush(self):
        pos = int(self._st[S_POS])
        if pos:
            self._write(memoryview(self._out)[:pos])
            self._st[S_POS] = 0

    def _write(self, view):
        view = memoryview(view)
        while len(view):
            view = view[self._file.write(view):]

    def close(self):
        if not self._file.closed:
            self._flush()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
