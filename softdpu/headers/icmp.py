"""ICMP (RFC 792) and ICMPv6 (RFC 4443, neighbour discovery RFC 4861).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    rest of header (echo: identifier, sequence number)         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Every ICMP and ICMPv6 message has at least these 8 bytes (as OVS's
icmp_header / icmp6_data_header); the flow key carries type in tp_src and
code in tp_dst.  ICMPv6's checksum covers the IPv6 pseudo header.
"""

HEADER_LEN = 8
OFF_TYPE = 0
OFF_CODE = 1
OFF_CSUM = 2
OFF_ID = 4
OFF_SEQ = 6

# ICMPv4 types
ECHO_REPLY = 0
DEST_UNREACH = 3
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11

# ICMPv6 types
V6_DEST_UNREACH = 1
V6_PACKET_TOO_BIG = 2
V6_TIME_EXCEEDED = 3
V6_ECHO_REQUEST = 128
V6_ECHO_REPLY = 129
V6_ROUTER_SOLICIT = 133
V6_ROUTER_ADVERT = 134
V6_NEIGHBOR_SOLICIT = 135
V6_NEIGHBOR_ADVERT = 136

ND_TARGET_OFF = 8        # NS/NA: 16-byte target address after the 8-byte header
ND_OPT_SOURCE_LL = 1
ND_OPT_TARGET_LL = 2
