"""IEEE 802.1Q VLAN tag (TPID 0x8100) and 802.1ad service tag (TPID 0x88a8).

The tag sits where the EtherType was; the original EtherType follows it.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   TPID (0x8100 / 0x88a8)      | PCP |D|        VLAN ID        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   next EtherType              |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

QinQ: an outer tag (0x88a8, or 0x8100 in older gear) followed by an inner
0x8100 tag.  Open vSwitch's vlan_tci is the TCI with 0x1000 forced on as a
"tag present" bit (so the DEI bit is not matchable); softdpu follows it.
"""

TAG_LEN = 4             # TPID + TCI
OFF_TCI = 2             # from the TPID
TPID_8021Q = 0x8100
TPID_8021AD = 0x88A8
MAX_TAGS = 2            # outer + inner, as OVS's FLOW_MAX_VLAN_HEADERS

VID_MASK = 0x0FFF
DEI_BIT = 0x1000
PCP_SHIFT = 13
PRESENT = 0x1000        # OVS's VLAN_CFI "tag present" bit in vlan_tci
