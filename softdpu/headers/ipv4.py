"""IPv4, RFC 791, and the Internet checksum (RFC 1071, incremental RFC 1624).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |   TOS (DSCP|ECN)  |         Total Length      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |0|D|M|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options (IHL > 5)          |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

IHL and Fragment Offset count 4- and 8-byte units.  A fragment has MF set or
a non-zero offset; a later fragment has a non-zero offset and no L4 header.

Checksum helpers work on 32-bit one's-complement partial sums (`acc`) so a
caller can chain a pseudo header and a payload, then `fold` and complement.
Callers check bounds before summing packet bytes.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.headers.bytes import be16, u8

MIN_HEADER_LEN = 20
MAX_HEADER_LEN = 60
VERSION = 4
OFF_VER_IHL = 0
OFF_TOS = 1
OFF_TOTAL_LEN = 2
OFF_ID = 4
OFF_FRAG = 6
OFF_TTL = 8
OFF_PROTO = 9
OFF_CSUM = 10
OFF_SRC = 12
OFF_DST = 16

FLAG_DF = 0x4000        # in the 16-bit flags/fragment-offset word
FLAG_MF = 0x2000
FRAG_OFFSET_MASK = 0x1FFF

# IP protocol numbers (also IPv6 next-header values)
PROTO_HOPOPT = 0
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_GRE = 47
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_NONE = 59
PROTO_DSTOPTS = 60
PROTO_SCTP = 132


@njit(alloc=False)
def ones_sum(data, row, off, n, acc):
    """Add bytes off..off+n-1 as big-endian 16-bit words to the partial sum acc
    (an odd last byte is the high half of a word)."""
    end = off + n
    o = off
    while o + 1 < end:
        acc += be16(data, row, o)
        o += 2
    if o < end:
        acc += u8(data, row, o) << 8
    return acc


@njit(alloc=False)
def fold(acc):
    """Fold a partial sum to 16 bits with end-around carry."""
    while acc > 0xFFFF:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


@njit(alloc=False)
def checksum(data, row, off, n):
    """The Internet checksum of bytes off..off+n-1 (store it as is)."""
    return (~fold(ones_sum(data, row, off, n, np.int64(0)))) & 0xFFFF


@njit(alloc=False)
def pseudo_sum(src, dst, proto, length):
    """Partial sum of the IPv4 pseudo header for TCP/UDP checksums."""
    return ((src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
            + proto + length)


@njit(alloc=False)
def csum_replace16(csum, old, new):
    """Checksum after one 16-bit word changes from old to new (RFC 1624 eqn 3)."""
    acc = ((~csum) & 0xFFFF) + ((~old) & 0xFFFF) + (new & 0xFFFF)
    return (~fold(acc)) & 0xFFFF


@njit(alloc=False)
def csum_replace32(csum, old, new):
    """Checksum after a 32-bit field (an address) changes from old to new."""
    return csum_replace16(csum_replace16(csum, old >> 16, new >> 16),
                          old & 0xFFFF, new & 0xFFFF)
