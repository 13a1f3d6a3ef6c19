"""Big-endian readers and writers of packet bytes, for kernels.

`data` is a batch's 2-D uint8 slot array, `row` the packet's row and `off`
an absolute, non-negative byte offset in the slot.  Kernels index the 2-D
array directly: taking a 1-D view (`data[i]`) per packet costs numba a
reference-count increment and decrement, which made the parser 15x slower.
The helpers here (and the checksum helpers in ipv4/ipv6) are compiled with
`njit(alloc=False)`: they never allocate, so callers pay no reference counting for
the arrays they pass, whatever the caller's own flags.

The readers do NOT check bounds (kernels run with boundscheck off): the
caller proves `off + width <= end` before every call.  Offsets are cast to
uint64 so numba emits no negative-index wraparound code.  u8/be16/be32/be48
return int64 (the value always fits); be64 returns uint64.
"""
import numpy as np

from softdpu._jit import njit


@njit(alloc=False)
def u8(data, row, off):
    """Byte off as an int64."""
    return np.int64(data[np.uint64(row), np.uint64(off)])


@njit(alloc=False)
def be16(data, row, off):
    """Bytes off, off+1 as a big-endian 16-bit value."""
    r = np.uint64(row)
    o = np.uint64(off)
    return (np.int64(data[r, o]) << 8) | np.int64(data[r, o + np.uint64(1)])


@njit(alloc=False)
def be32(data, row, off):
    """Bytes off..off+3 as a big-endian 32-bit value."""
    return (be16(data, row, off) << 16) | be16(data, row, off + 2)


@njit(alloc=False)
def be48(data, row, off):
    """Bytes off..off+5 as a big-endian 48-bit value (a MAC address)."""
    return (be16(data, row, off) << 32) | be32(data, row, off + 2)


@njit(alloc=False)
def be64(data, row, off):
    """Bytes off..off+7 as a big-endian 64-bit value (uint64)."""
    return ((np.uint64(be32(data, row, off)) << np.uint64(32))
            | np.uint64(be32(data, row, off + 4)))


@njit(alloc=False)
def put16(data, row, off, value):
    """Store the low 16 bits of value big-endian at off (caller checks bounds)."""
    r = np.uint64(row)
    o = np.uint64(off)
    data[r, o] = np.uint8((value >> 8) & 0xFF)
    data[r, o + np.uint64(1)] = np.uint8(value & 0xFF)


@njit(alloc=False)
def put32(data, row, off, value):
    """Store the low 32 bits of value big-endian at off (caller checks bounds)."""
    put16(data, row, off, value >> 16)
    put16(data, row, off + 2, value)


@njit(alloc=False)
def put48(data, row, off, value):
    """Store the low 48 bits of value big-endian at off (a MAC address; caller checks bounds)."""
    put16(data, row, off, value >> 32)
    put32(data, row, off + 2, value)


@njit(alloc=False)
def put64(data, row, off, value):
    """Store a 64-bit value (uint64) big-endian at off (caller checks bounds)."""
    v = np.uint64(value)
    put32(data, row, off, np.int64(v >> np.uint64(32)))
    put32(data, row, off + 4, np.int64(v & np.uint64(0xFFFFFFFF)))
