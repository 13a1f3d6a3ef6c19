"""VXLAN, RFC 7348: Ethernet over UDP port 4789.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |R|R|R|R|I|R|R|R|            Reserved                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                VXLAN Network Identifier (VNI) |   Reserved    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 inner Ethernet frame ...
"""

HEADER_LEN = 8
UDP_PORT = 4789
OFF_FLAGS = 0
OFF_VNI = 4              # VNI in the top 24 bits of the word at 4
FLAG_I = 0x08            # VNI valid; must be set
VNI_SHIFT = 8
# Outer headers an encapsulation adds before the inner frame.
OVERHEAD_V4 = 14 + 20 + 8 + HEADER_LEN   # 50
OVERHEAD_V6 = 14 + 40 + 8 + HEADER_LEN   # 70
