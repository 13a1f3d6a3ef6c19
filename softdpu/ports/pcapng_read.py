"""pcapng reader: blocks streamed from a chunk buffer into a Batch by a kernel.

  every block:  ┌ type u32 ┬ total length u32 ┬ body (padded to 4) ┬ total length u32 ┐

  SHB 0x0A0D0D0A  byte-order magic 1A2B3C4D, version 1.x, section length i64
                  (-1 = unknown), options; starts a section: new byte order,
                  interface ids restart at 0
  IDB 1           linktype u16, reserved u16, snaplen u32, options:
                  if_tsresol (9, u8: 10^-v, or 2^-v when bit 7 is set;
                  default 10^-6), if_tsoffset (14, i64 seconds)
  EPB 6           interface u32, ts high u32, ts low u32 (units of that
                  interface's if_tsresol), captured len u32, original len
                  u32, packet bytes, options
  SPB 3           original len u32, packet bytes; interface 0, no timestamp
                  (the last one seen is used); captured = min(original,
                  total length - 16, interface 0 snaplen if not 0)
  PB  2           obsolete: interface u16, drops u16, then as EPB
  other types     (NRB, ISB, DSB, custom, ...) skipped by total length

  options:      ┌ code u16 ┬ length u16 ┬ value (padded to 4) ┐ ... code 0 ends

The kernel walks EPB/SPB/PB and skips unknown blocks; SHB and IDB are rare
and parsed in Python, which also turns kernel status codes into errors.
"""
import struct

import numpy as np

from softdpu._jit import njit
from softdpu.ports.pcap_stream import (
    MAX_CAPLEN, WALK_FULL, WALK_NEED, CaptureError, StreamReader, put_packet, u16, u32)

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MAX_BLOCK = 16 << 20          # a longer block is taken as corruption
LINKTYPE_ETHERNET = 1
OPT_TSRESOL, OPT_TSOFFSET = 9, 14

# interface table columns
IF_LT, IF_SNAP, IF_BIN, IF_MUL, IF_DIV, IF_SHIFT, IF_OFF = range(7)
IF_COLS = 8
# kernel state slots
S_LO, S_HI, S_ROW, S_END, S_SWAP, S_NIF, S_LAST_TS, S_NEED, S_BYTES, S_AUX = range(10)
# kernel results
FULL, NEED, META, BAD_LEN, TOO_BIG, BAD_TRAILER, BAD_BLOCK, BAD_CAPLEN, NO_IFACE, \
    LINKTYPE = range(10)
assert (FULL, NEED) == (WALK_FULL, WALK_NEED)  # the statuses StreamReader.fill handles
BLOCK_NAMES = {PB: "packet block", SPB: "simple packet block", EPB: "enhanced packet block"}


@njit
def _ts_ns(ifs, iface, raw):
    """A raw timestamp of interface `iface` in nanoseconds since the epoch."""
    if ifs[iface, IF_BIN]:
        shift = ifs[iface, IF_SHIFT]
        frac = raw & ((np.int64(1) << shift) - 1)
        if shift > 32:
            sub = ((frac >> (shift - 32)) * 1_000_000_000) >> 32
        else:
            sub = (frac * 1_000_000_000) >> shift
        ns = (raw >> shift) * 1_000_000_000 + sub
    elif ifs[iface, IF_DIV] == 1:
        ns = raw * ifs[iface, IF_MUL]
    else:
        ns = raw // ifs[iface, IF_DIV]
    return ns + ifs[iface, IF_OFF]


@njit
def _walk(buf, st, ifs, data, meta, headroom, max_frame, port):
    """Copy packet blocks from buf[lo:hi] into batch rows row..end-1, skip others.

    Stops at a block it cannot handle alone: FULL, NEED (st[S_NEED] bytes at
    lo), META (an SHB or IDB at lo, for Python), or an error code with the
    offending block at lo (st[S_AUX]: a detail for the message).
    """
    lo, hi, row, end = st[S_LO], st[S_HI], st[S_ROW], st[S_END]
    swap, nif, last_ts = st[S_SWAP] != 0, st[S_NIF], st[S_LAST_TS]
    nbytes = 0
    status = FULL
    while row < end:
        if hi - lo < 8:
            status, st[S_NEED] = NEED, 8
            break
        btype = u32(buf, lo, swap)
        if btype == SHB:
            status = META
            break
        blen = u32(buf, lo + 4, swap)
        if blen < 12 or blen % 4:
            status, st[S_AUX] = BAD_LEN, blen
            break
        if blen > MAX_BLOCK:
            status, st[S_AUX] = TOO_BIG, blen
            break
        if hi - lo < blen:
            status, st[S_NEED] = NEED, blen
            break
        if u32(buf, lo + blen - 4, swap) != blen:
            status, st[S_AUX] = BAD_TRAILER, u32(buf, lo + blen - 4, swap)
            break
        if btype == IDB:
            status = META
            break
        if btype == EPB or btype == PB:
            if blen < 32:
                status, st[S_AUX] = BAD_BLOCK, btype
                break
            iface = u32(buf, lo + 8, swap) if btype == EPB else u16(buf, lo + 8, swap)
            caplen, origlen = u32(buf, lo + 20, swap), u32(buf, lo + 24, swap)
            pay = lo + 28
            if caplen > MAX_CAPLEN:
                status, st[S_AUX] = BAD_CAPLEN, caplen
                break
            if 32 + caplen > blen:
                status, st[S_AUX] = BAD_BLOCK, btype
                break
        elif btype == SPB:
            if blen < 16:
                status, st[S_AUX] = BAD_BLOCK, btype
                break
            iface = 0
            origlen = u32(buf, lo + 8, swap)
            pay = lo + 12
            caplen = min(origlen, blen - 16)
        else:
            lo += blen
            continue
        if iface >= nif:
            status, st[S_AUX] = NO_IFACE, iface
            break
        if ifs[iface, IF_LT] != LINKTYPE_ETHERNET:
            status, st[S_AUX] = LINKTYPE, iface
            break
        if btype == SPB:
            if ifs[0, IF_SNAP] > 0:
                caplen = min(caplen, ifs[0, IF_SNAP])
            if caplen > MAX_CAPLEN:
                status, st[S_AUX] = BAD_CAPLEN, caplen
                break
        else:
            raw = u32(buf, lo + 12, swap) << 32 | u32(buf, lo + 16, swap)
            last_ts = _ts_ns(ifs, iface, raw)
        put_packet(buf, pay, caplen, origlen, last_ts, data, meta, row, headroom,
                   max_frame, port)
        nbytes += caplen
        row += 1
        lo += blen
    st[S_LO], st[S_ROW], st[S_BYTES], st[S_LAST_TS] = lo, row, nbytes, last_ts
    return status


def tsresol_columns(v):
    """(IF_BIN, IF_MUL, IF_DIV, IF_SHIFT) for an if_tsresol byte, None if unsupported."""
    if v & 0x80:
        shift = v & 0x7F
        return (1, 1, 1, shift) if shift <= 62 else None
    if v > 18:
        return None
    return (0, 10 ** (9 - v), 1, 0) if v <= 9 else (0, 1, 10 ** (v - 9), 0)


class PcapngReader(StreamReader):
    """Streams a pcapng file into batches; see open_capture()."""
    S_LO, S_HI, S_ROW, S_END, S_NEED, S_BYTES = S_LO, S_HI, S_ROW, S_END, S_NEED, S_BYTES
    RECORD = "block"

    def __init__(self, stream, port_no, warn=None):
        super().__init__(stream, port_no, warn)
        self.nanosecond = False
        self.linktype = None
        self._order = "<"
        self._st = np.zeros(10, dtype=np.int64)
        self._ifs = np.zeros((8, IF_COLS), dtype=np.int64)
        if not self._section():
            raise CaptureError(self.path, 0, "pcapng section header block cut short")
        s = self.stream   # read the interfaces that follow, so linktype is known
        while s.more(8) and self._u32(s.lo) == IDB:
            blen = self._u32(s.lo + 4)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK or not s.more(blen):
                break                       # fill() reports it
            if self._u32(s.lo + blen - 4) != blen:
                break
            self._interface(blen)

    def _u32(self, pos):
        return struct.unpack_from(self._order + "I", self.stream.buf, pos)[0]

    def _section(self):
        """Parse the SHB at lo; False if the file ends inside it."""
        s = self.stream
        at = s.offset()
        if not s.more(12):
            return False
        bom = s.bytes_at(s.lo + 8, 4)
        if bom == b"\x4d\x3c\x2b\x1a":
            self._order = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            self._order = ">"
        else:
            raise CaptureError(self.path, at + 8, f"bad pcapng byte-order magic {bom.hex()} "
                               f"(expected 1a2b3c4d in either byte order)")
        blen = self._u32(s.lo + 4)
        if blen < 28 or blen % 4 or blen > MAX_BLOCK:
            raise CaptureError(self.path, at, f"bad section header block length {blen} "
                               f"(must be 28..{MAX_BLOCK} and a multiple of 4)")
        if not s.more(blen):
            return False
        self._check_trailer(blen)
        major, minor = struct.unpack_from(self._order + "HH", s.buf, s.lo + 12)
        if major != 1:
            raise CaptureError(self.path, at + 12, f"unsupported pcapng version {major}.{minor}")
        self._st[S_SWAP] = self._order == ">"
        self._st[S_NIF] = 0
        s.lo += blen
        return True

    def _check_trailer(self, blen):
        s = self.stream
        trailer = self._u32(s.lo + blen - 4)
        if trailer != blen:
            raise CaptureError(self.path, s.offset(), f"block length {blen} does not match "
                               f"its trailing copy {trailer}")

    def _interface(self, blen):
        """Parse the IDB at lo (whole, trailer checked) into the interface table."""
        s, o = self.stream, self._order
        at = s.offset()
        if blen < 20:
            raise CaptureError(self.path, at, f"interface description block of {blen} bytes "
                               f"(at least 20)")
        linktype, _, snaplen = struct.unpack_from(o + "HHI", s.buf, s.lo + 8)
        tsresol, tsoffset = 6, 0
        p, end = s.lo + 16, s.lo + blen - 4
        while p + 4 <= end:
            code, olen = struct.unpack_from(o + "HH", s.buf, p)
            if code == 0:
                break
            if p + 4 + olen > end:
                raise CaptureError(self.path, s.offset(p), f"option {code} of length {olen} "
                                   f"runs past its interface description block")
            if code == OPT_TSRESOL and olen >= 1:
                tsresol = int(s.buf[p + 4])
            elif code == OPT_TSOFFSET and olen >= 8:
                tsoffset = struct.unpack_from(o + "q", s.buf, p + 4)[0]
            p += 4 + (olen + 3) // 4 * 4
        res = tsresol_columns(tsresol)
        if res is None:
            raise CaptureError(self.path, at, f"unsupported if_tsresol 0x{tsresol:02x}")
        nif = int(self._st[S_NIF])
        if nif == len(self._ifs):
            self._ifs = np.concatenate([self._ifs, np.zeros_like(self._ifs)])
        row = self._ifs[nif]
        row[:] = 0
        row[IF_LT], row[IF_SNAP] = linktype, snaplen
        row[IF_BIN], row[IF_MUL], row[IF_DIV], row[IF_SHIFT] = res
        row[IF_OFF] = tsoffset * 1_000_000_000
        self._st[S_NIF] = nif + 1
        if self.linktype is None:
            self.linktype = linktype
        if (res[0] and res[3] >= 20) or (not res[0] and tsresol > 6):
            self.nanosecond = True
        s.lo += blen

    def _walk(self, batch):
        return _walk(self.stream.buf, self._st, self._ifs, batch.data, batch.meta, batch.headroom,
                     batch.max_frame, self.port_no)

    def _status(self, status, first):
        s = self.stream
        if status != META:
            raise self._error(status, int(self._st[S_AUX]))
        if self._u32(s.lo) == IDB:
            self._interface(self._u32(s.lo + 4))
        elif not self._section():
            self._end(int(self._st[S_ROW]) - first)

    def _error(self, status, aux):
        s = self.stream
        at = s.offset()
        if status == BAD_LEN:
            msg = f"bad block length {aux} (must be at least 12 and a multiple of 4)"
        elif status == TOO_BIG:
            msg = f"block length {aux} exceeds {MAX_BLOCK} (corrupt file)"
        elif status == BAD_TRAILER:
            msg = f"block length {self._u32(s.lo + 4)} does not match its trailing copy {aux}"
        elif status == BAD_BLOCK:
            msg = f"{BLOCK_NAMES[aux]} of {self._u32(s.lo + 4)} bytes is too short for its fields"
        elif status == BAD_CAPLEN:
            msg = f"record length {aux} exceeds {MAX_CAPLEN} (corrupt file)"
        elif status == NO_IFACE:
            msg = f"packet on interface {aux}, but the section defines {int(self._st[S_NIF])}"
        else:
            lt = int(self._ifs[aux, IF_LT])
            msg = f"unsupported linktype {lt} on interface {aux} (only 1, Ethernet, is supported)"
        return CaptureError(self.path, at, msg)
