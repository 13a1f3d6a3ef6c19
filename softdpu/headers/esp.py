"""ESP, RFC 4303, and its UDP encapsulation for NAT traversal, RFC 3948.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |               Security Parameters Index (SPI)                 |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                      Sequence Number                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |       IV + encrypted payload ...  | Padding | Pad Len | Next  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Integrity Check Value (ICV)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

ESP rides in IP protocol 50, or after a UDP header on port 4500.  On port
4500 the first 4 payload bytes tell the kinds apart: zero is the non-ESP
marker (an IKE message follows), non-zero is an ESP SPI (SPI 0 is
reserved), and a 1-byte payload 0xff is a NAT-keepalive (RFC 3948 2.3).
"""

HEADER_LEN = 8           # SPI + sequence number
OFF_SPI = 0
OFF_SEQ = 4
IP_PROTO = 50
UDP_PORT_NATT = 4500
NON_ESP_MARKER_LEN = 4
NATT_KEEPALIVE = 0xFF
TRAILER_LEN = 2          # pad length + next header, before the ICV
