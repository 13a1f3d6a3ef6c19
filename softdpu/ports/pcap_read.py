"""libpcap reader: records streamed from a chunk buffer into a Batch by a kernel.

  file header (24 bytes)                 record (16 + incl_len bytes)
  ┌─────────────────────────────┐        ┌────────────────────────────┐
  │ magic        u32            │        │ ts_sec              u32    │
  │ version      u16.u16 (2.4)  │        │ ts_usec / ts_nsec   u32    │
  │ thiszone     i32 (ignored)  │        │ incl_len (captured) u32    │
  │ sigfigs      u32 (ignored)  │        │ orig_len (on wire)  u32    │
  │ snaplen      u32            │        ├────────────────────────────┤
  │ linktype     u32 (1 = Eth)  │        │ incl_len bytes of frame    │
  └─────────────────────────────┘        └────────────────────────────┘

magic d4 c3 b2 a1 / a1 b2 c3 d4: microseconds, little / big endian;
magic 4d 3c b2 a1 / a1 b2 3c 4d: nanoseconds.  All fields use the
magic's byte order.  A record with incl_len > 262144 is corrupt.
"""
import struct

import numpy as np

from softdpu._jit import njit
from softdpu.ports.pcap_stream import (
    MAX_CAPLEN, WALK_FULL, WALK_NEED, CaptureError, StreamReader, put_packet, u32)

MAGICS = {   # first four bytes -> (byte order, nanosecond)
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
HEADER_LEN = 24
LINKTYPE_ETHERNET = 1

# kernel state slots (one int64 array, so the call takes few arguments)
S_LO, S_HI, S_ROW, S_END, S_SWAP, S_TSMUL, S_NEED, S_BYTES = range(8)
# kernel results
FULL, NEED, CORRUPT = WALK_FULL, WALK_NEED, 2


@njit
def _walk(buf, st, data, meta, headroom, max_frame, port):
    """Copy whole records from buf[lo:hi] into batch rows row..end-1.

    Returns FULL (batch full), NEED (st[S_NEED] bytes needed at lo) or
    CORRUPT (the record at lo has incl_len > 262144).
    """
    lo, hi, row, end = st[S_LO], st[S_HI], st[S_ROW], st[S_END]
    swap, mul = st[S_SWAP] != 0, st[S_TSMUL]
    nbytes = 0
    status = FULL
    while row < end:
        if hi - lo < 16:
            status, st[S_NEED] = NEED, 16
            break
        incl = u32(buf, lo + 8, swap)
        if incl > MAX_CAPLEN:
            status = CORRUPT
            break
        if hi - lo < 16 + incl:
            status, st[S_NEED] = NEED, 16 + incl
            break
        ts = u32(buf, lo, swap) * 1_000_000_000 + u32(buf, lo + 4, swap) * mul
        put_packet(buf, lo + 16, incl, u32(buf, lo + 12, swap), ts,
                   data, meta, row, headroom, max_frame, port)
        nbytes += incl
        row += 1
        lo += 16 + incl
    st[S_LO], st[S_ROW], st[S_BYTES] = lo, row, nbytes
    return status


class PcapReader(StreamReader):
    """Streams a libpcap file into batches; see open_capture()."""
    S_LO, S_HI, S_ROW, S_END, S_NEED, S_BYTES = S_LO, S_HI, S_ROW, S_END, S_NEED, S_BYTES

    def __init__(self, stream, port_no, warn=None):
        super().__init__(stream, port_no, warn)
        self._st = np.zeros(8, dtype=np.int64)
        self._read_header()

    def _read_header(self):
        s = self.stream
        if not s.more(HEADER_LEN):
            raise CaptureError(self.path, s.hi, f"pcap file header cut short: "
                               f"{s.hi} of {HEADER_LEN} bytes")
        head = s.bytes_at(s.lo, HEADER_LEN)
        order, self.nanosecond = MAGICS[head[:4]]
        major, minor, _, _, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:])
        if major != 2:
            raise CaptureError(self.path, 4, f"unsupported pcap version {major}.{minor}")
        self.version, self.snaplen = (major, minor), snaplen
        self.linktype = linktype & 0x03FFFFFF   # upper bits: FCS length / flags
        if self.linktype != LINKTYPE_ETHERNET:
            raise CaptureError(self.path, 20, f"unsupported linktype {self.linktype} "
                               f"(only 1, Ethernet, is supported)")
        self._order = order
        self._st[S_SWAP] = order == ">"
        self._st[S_TSMUL] = 1 if self.nanosecond else 1000
        s.lo += HEADER_LEN

    def _walk(self, batch):
        return _walk(self.stream.buf, self._st, batch.data, batch.meta, batch.headroom,
                     batch.max_frame, self.port_no)

    def _status(self, status, first):
        s = self.stream
        incl, = struct.unpack_from(self._order + "I", s.buf, s.lo + 8)
        raise CaptureError(self.path, s.offset(), f"record length {incl} exceeds "
                           f"{MAX_CAPLEN} (corrupt file)")
