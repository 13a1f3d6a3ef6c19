"""Ethernet II (and the 802.3 LLC/SNAP escape), IEEE 802.3.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination MAC (48)                       |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                       Source MAC (48)                         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     EtherType / Length        |  payload ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

A type/length value below 0x0600 is an 802.3 length: the payload starts with
an LLC header.  LLC aa aa 03 + SNAP OUI 00 00 00 carries an EtherType after
8 bytes; Open vSwitch then uses that EtherType, and for any other 802.3 frame
uses dl_type 0x05ff (FLOW_DL_TYPE_NONE).  Frames arrive without the FCS.
"""

HEADER_LEN = 14
OFF_DST = 0
OFF_SRC = 6
OFF_TYPE = 12
MIN_FRAME = 60         # without FCS; shorter frames are padded on the wire
ADDR_LEN = 6

TYPE_IPV4 = 0x0800
TYPE_ARP = 0x0806
TYPE_RARP = 0x8035
TYPE_VLAN = 0x8100     # 802.1Q customer tag
TYPE_QINQ = 0x88A8     # 802.1ad service tag
TYPE_IPV6 = 0x86DD
TYPE_MIN = 0x0600      # below: an 802.3 length, not an EtherType
TYPE_NONE = 0x05FF     # OVS's dl_type for 802.3 frames without SNAP

LLC_SNAP_LEN = 8       # DSAP, SSAP, control, OUI(3), type(2)
LLC_SAP_SNAP = 0xAA
LLC_CTRL_UI = 0x03

BROADCAST = 0xFFFFFFFFFFFF
MULTICAST_BIT = 0x010000000000   # I/G bit of the first octet, in a 48-bit MAC
