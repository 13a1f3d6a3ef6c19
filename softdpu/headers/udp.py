"""UDP, RFC 768, and the well-known ports the parser recognises.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            Length             |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Length counts the header; it may be shorter than the IP payload (the rest
is surplus area), never longer.  Checksum 0 over IPv4 means "none".
"""

HEADER_LEN = 8
OFF_SPORT = 0
OFF_DPORT = 2
OFF_LEN = 4
OFF_CSUM = 6

PORT_VXLAN = 4789        # RFC 7348
PORT_GENEVE = 6081       # RFC 8926
PORT_IPSEC_NATT = 4500   # RFC 3948 (UDP-encapsulated ESP, IKE)
PORT_IKE = 500
