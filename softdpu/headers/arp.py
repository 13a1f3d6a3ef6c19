"""ARP for Ethernet/IPv4, RFC 826.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |      Hardware type (1)        |     Protocol type (0x0800)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  HLEN (6)     |   PLEN (4)    |          Operation            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Sender hardware address (SHA, 6)                 |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               | Sender protocol address (SPA) |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |              Target hardware address (THA, 6)                 |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Target protocol address (TPA, 4)                 |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

HEADER_LEN = 28
OFF_HTYPE = 0
OFF_PTYPE = 2
OFF_HLEN = 4
OFF_PLEN = 5
OFF_OP = 6
OFF_SHA = 8
OFF_SPA = 14
OFF_THA = 18
OFF_TPA = 24

HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
HLEN_ETHERNET = 6
PLEN_IPV4 = 4

OP_REQUEST = 1
OP_REPLY = 2
OP_RARP_REQUEST = 3
OP_RARP_REPLY = 4
