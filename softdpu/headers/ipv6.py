"""IPv6, RFC 8200, and the extension headers the parser walks.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Source Address (128)                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Destination Address (128)                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Hop-by-hop (0), routing (43) and destination options (60) share a form:
next header, then the length in 8-byte units not counting the first 8:

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |  Hdr Ext Len  |   (options / routing data)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

AH (51, RFC 4302) counts 4-byte units minus 2: length = (len + 2) * 4.
The fragment header (44) is always 8 bytes:

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Identification                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""
import numpy as np

from softdpu._jit import njit
from softdpu.headers.bytes import be16

HEADER_LEN = 40
VERSION = 6
OFF_VER_TC_LABEL = 0
OFF_PAYLOAD_LEN = 4
OFF_NEXT = 6
OFF_HOP_LIMIT = 7
OFF_SRC = 8
OFF_DST = 24
LABEL_MASK = 0xFFFFF

EXT_HOPOPTS = 0
EXT_ROUTING = 43
EXT_FRAGMENT = 44
EXT_AH = 51
EXT_DSTOPTS = 60
EXT_MIN_LEN = 8          # every extension header is at least 8 bytes
FRAG_HEADER_LEN = 8
FRAG_OFF_OFFLG = 2       # offset(13) | res(2) | M(1)
FRAG_OFFSET_MASK = 0xFFF8
FRAG_MORE = 0x0001
MAX_EXT_HEADERS = 8      # a longer chain is refused (RFC 8200 order has <= 7)


@njit(alloc=False)
def pseudo_sum(data, row, src_off, dst_off, next_header, length):
    """Partial sum of the IPv6 pseudo header (addresses read from data[row]; caller
    checks bounds) for TCP/UDP/ICMPv6 checksums."""
    acc = np.int64(next_header) + (length >> 16) + (length & 0xFFFF)
    for o in range(0, 16, 2):
        acc += be16(data, row, src_off + o) + be16(data, row, dst_off + o)
    return acc
