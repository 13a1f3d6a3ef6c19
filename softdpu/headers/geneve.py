"""Geneve, RFC 8926: UDP port 6081, protocol type and variable options.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Virtual Network Identifier (VNI)       |    Reserved   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Variable-Length Options                    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Opt Len counts 4-byte words of options; the payload follows them.  Protocol
type 0x6558 (Transparent Ethernet Bridging) carries an Ethernet frame.
Option TLV: class(16) type(8) R R R len(5 bits, 4-byte words).
"""

HEADER_LEN = 8
UDP_PORT = 6081
VERSION = 0
OFF_VER_OPTLEN = 0       # version in the top 2 bits, opt len in the low 6
OFF_FLAGS = 1            # O = 0x80 (control), C = 0x40 (critical options)
OFF_PROTO = 2
OFF_VNI = 4
OPTLEN_MASK = 0x3F
FLAG_OAM = 0x80
FLAG_CRITICAL = 0x40
PROTO_ETHERNET = 0x6558
VNI_SHIFT = 8
OPTION_HEADER_LEN = 4
