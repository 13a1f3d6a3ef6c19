"""The streaming buffer under the capture readers, and their errors.

A reader never holds a whole file: it reads fixed chunks into one
preallocated buffer and lets a kernel walk the complete records in it.

      base (file offset of buf[0])
      │
  buf ├───────────┬──────────────────────────┬─────────────┤
      │ consumed  │ unread records ...  part │ free        │
      0           lo                         hi            capacity

`more(need)` makes at least `need` unread bytes available: it moves the
unread tail (a partial record) to the front, reads into the free space, and
grows the buffer only when one record is larger than the whole buffer.
"""
import warnings

import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_DROP, M_IN_PORT, M_LEN, M_START, M_TS, M_WIRE_LEN
from softdpu.drops import FRAME_TOO_BIG, SNAPLEN_TRUNCATED
from softdpu.errors import SoftdpuError

CHUNK = 1 << 20          # default read size: 1 MiB
MIN_CHUNK = 64
MAX_CAPLEN = 262144      # libpcap's largest snaplen; a longer record is corrupt


class CaptureError(SoftdpuError):
    """A capture file that cannot be read: names the file and the byte offset."""

    def __init__(self, path, offset, message):
        self.path, self.offset = str(path), offset
        where = self.path if offset is None else f"{self.path}: offset {offset}"
        super().__init__(f"{where}: {message}")


class CaptureWarning(UserWarning):
    """A readable capture with a problem (e.g. a truncated last record)."""


def default_warn(message):
    warnings.warn(message, CaptureWarning, stacklevel=3)


class ChunkStream:
    """A file read chunk by chunk into one reusable numpy buffer."""

    def __init__(self, path, chunk=CHUNK):
        if chunk < MIN_CHUNK:
            raise ValueError(f"chunk must be at least {MIN_CHUNK} bytes, got {chunk}")
        self.path = str(path)
        self.file = open(path, "rb", buffering=0)
        self.buf = np.empty(chunk, dtype=np.uint8)
        self.base = 0    # file offset of buf[0]
        self.lo = 0      # first unread byte in buf
        self.hi = 0      # end of valid data in buf
        self.eof = False

    def offset(self, pos=None):
        """File offset of buffer position `pos` (default: the first unread byte)."""
        return self.base + (self.lo if pos is None else pos)

    def more(self, need):
        """Make `need` unread bytes available; False if the file ends first."""
        if self.hi - self.lo >= need:
            return True
        self._compact()
        while self.hi < need and not self.eof:
            if self.hi == len(self.buf):          # one record larger than the buffer
                grown = np.empty(max(need, len(self.buf) * 2), dtype=np.uint8)
                grown[: self.hi] = self.buf[: self.hi]
                self.buf = grown
            self._read()
        return self.hi >= need

    def bytes_at(self, pos, n):
        """A copy of buffer bytes [pos, pos+n) (for headers parsed in Python)."""
        return self.buf[pos: pos + n].tobytes()

    def close(self):
        self.file.close()

    def _compact(self):
        n = self.hi - self.lo
        if self.lo:
            if n:
                self.buf[:n] = self.buf[self.lo: self.hi]
            self.base += self.lo
            self.lo, self.hi = 0, n

    def _read(self):
        view = memoryview(self.buf)[self.hi:]
        while len(view):
            got = self.file.readinto(view)
            if not got:
                self.eof = True
                break
            self.hi += got
            view = view[got:]


@njit
def u16(buf, p, swap):
    """Unsigned 16-bit integer at buf[p], little-endian unless swap."""
    a, b = np.int64(buf[p]), np.int64(buf[p + 1])
    return (a << 8 | b) if swap else (b << 8 | a)


@njit
def u32(buf, p, swap):
    """Unsigned 32-bit integer at buf[p], little-endian unless swap."""
    a, b = np.int64(buf[p]), np.int64(buf[p + 1])
    c, d = np.int64(buf[p + 2]), np.int64(buf[p + 3])
    if swap:
        return a << 24 | b << 16 | c << 8 | d
    return d << 24 | c << 16 | b << 8 | a


@njit(inline=True)
def put_packet(buf, pay, caplen, origlen, ts, data, meta, row, headroom, max_frame, port):
    """Fill batch row `row` with the record at buf[pay: pay+caplen]; returns its drop code.

    Every record gives a row: a frame longer than max_frame gets no bytes
    (M_LEN 0, FRAME_TOO_BIG); a record cut by the snaplen is copied and
    flagged SNAPLEN_TRUNCATED.
    """
    for c in range(meta.shape[1]):
        meta[row, c] = 0
    drop = 0
    if caplen > max_frame:
        drop = FRAME_TOO_BIG
    else:
        # a plain loop over views indexed from 0 (provably non-negative, so no
        # wraparound code): vectorized, unlike a slice assignment
        src = buf[pay: pay + caplen]
        dst = data[row, headroom: headroom + caplen]
        for k in range(caplen):
            dst[k] = src[k]
        meta[row, M_LEN] = caplen
        if caplen < origlen:
            drop = SNAPLEN_TRUNCATED
    meta[row, M_START] = headroom
    meta[row, M_WIRE_LEN] = max(origlen, caplen)
    meta[row, M_TS] = ts
    meta[row, M_IN_PORT] = port
    meta[row, M_DROP] = drop
    return drop


WALK_FULL, WALK_NEED = 0, 1   # statuses every walk kernel shares; others are the format's own


class StreamReader:
    """The part of a capture reader that does not depend on the format.

    A subclass sets stream, port_no, path, warn, packets, bytes, _done and
    _st (the walk kernel's state vector) in __init__, names the state indices
    it uses (S_LO, S_HI, S_ROW, S_END, S_NEED, S_BYTES), calls its kernel in
    _walk(batch) -> status, and handles its own statuses in _status(status, first).
    """
    RECORD = "record"   # what a truncated tail cuts short, for the warning

    def __init__(self, stream, port_no, warn=None):
        self.stream, self.port_no = stream, port_no
        self.path = stream.path
        self.warn = warn or default_warn
        self.packets = self.bytes = 0
        self._done = False

    def fill(self, batch):
        """Append packets to batch rows batch.n..; how many were added.

        0 at end of file (see `eof`), or when the batch is already full.
        """
        s, st = self.stream, self._st
        first = batch.n
        st[self.S_ROW], st[self.S_END] = batch.n, batch.size
        try:   # rows filled before an error still count, and stay in the batch
            while not self._done and st[self.S_ROW] < st[self.S_END]:
                st[self.S_LO], st[self.S_HI] = s.lo, s.hi
                status = self._walk(batch)
                s.lo = int(st[self.S_LO])
                self.bytes += int(st[self.S_BYTES])
                if status == WALK_NEED:
                    if not s.more(int(st[self.S_NEED])):
                        self._end(int(st[self.S_ROW]) - first)
                elif status != WALK_FULL:
                    self._status(status, first)
        finally:
            added = int(st[self.S_ROW]) - first
            batch.n += added
            self.packets += added
        return added

    def _end(self, pending):
        self._done = True
        s = self.stream
        if s.hi > s.lo:
            self.warn(f"{self.path}: offset {s.offset()}: truncated {self.RECORD} (the file ends "
                      f"{s.hi - s.lo} bytes into it); {self.packets + pending} packets read")

    @property
    def eof(self):
        """True once fill() has reached the end of the file."""
        return self._done

    def close(self):
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
