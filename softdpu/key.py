"""The flow key: every matchable field of a packet, packed into uint64 words.

The parser fills the packet fields; stages (actions, conntrack, tunnels)
fill the metadata fields.  A classifier matches `key & mask == value` word by
word, so a field is just (word, shift, bits).  Values follow Open vSwitch's
flow fields (lib/meta-flow.h):

  vlan_tci   the outer 802.1Q/802.1ad TCI with bit 0x1000 (CFI) set when a tag
             is present, as OVS's vlan_tci; vlan_tci2 the inner (QinQ) tag
  nw_src/dst IPv4 addresses, or ARP sender/target protocol addresses
  nw_proto   IP protocol (IPv6: the last next-header), or the low 8 bits of
             the ARP opcode, as OVS
  nw_tos     the whole IPv4 TOS / IPv6 traffic-class byte (DSCP << 2 | ECN)
  nw_frag    1 = a fragment, 2 = a later (non-first) fragment, as OVS
  tp_src/dst ports, or the ICMP/ICMPv6 type and code, as OVS
  tcp_flags  the low 12 bits of TCP's offset/flags word
  arp_op     the whole 16-bit ARP opcode (a flow's arp_op=N, N < 256 as OVS, matches here)
  ct_state   OVS's CS_* bits: new 0x01, est 0x02, rel 0x04, rpl 0x08, inv 0x10, trk 0x20,
             snat 0x40, dnat 0x80
  regN       xregN (64 bits) is reg(2N) << 32 | reg(2N+1), as OVS

Word layout (bit 63 is the most significant):

  w0   in_port:32 | dl_type:16 | vlan_tci:16
  w1   dl_src:48 | vlan_tci2:16
  w2   dl_dst:48 | nw_proto:8 | nw_tos:8
  w3   nw_src:32 | nw_dst:32
  w4   tp_src:16 | tp_dst:16 | tcp_flags:16 | nw_ttl:8 | nw_frag:8
  w5-6 ipv6_src (high word first)     w7-8 ipv6_dst
  w9   ipv6_label:20 (at bit 32) | arp_op:16 (at bit 0)
  w10  arp_sha:48 (at bit 16)         w11 arp_tha:48 (at bit 16)
  w12  metadata:64
  w13-20 reg0..reg15, two per word, the even register high (so xregN is a word)
  w21  tun_id:64
  w22  tun_src:32 | tun_dst:32
  w23  ct_state:16 | ct_zone:16 | ct_mark:32
  w24-25 ct_label:128
  w26-29 tun_metadata0..3: the data of Geneve options mapped to them ([[geneve_option]]),
         right-aligned (an option of 4 bytes is the low 32 bits)
  w30-31 tun_ipv6_src, w32-33 tun_ipv6_dst (high word first): an IPv6 underlay's addresses
  w34  ct_nw_src:32 | ct_nw_dst:32    w35  ct_nw_proto:8 (at bit 32) | ct_tp_src:16 | ct_tp_dst:16
  w36-37 ct_ipv6_src, w38-39 ct_ipv6_dst: the connection's original direction, after ct()
"""
from typing import NamedTuple

import numpy as np


class Field(NamedTuple):
    name: str
    word: int
    shift: int
    bits: int

    @property
    def mask(self):
        """The field's bits within its word."""
        return ((1 << self.bits) - 1) << self.shift


_LAYOUT = [
    ("in_port", 0, 32, 32), ("dl_type", 0, 16, 16), ("vlan_tci", 0, 0, 16),
    ("dl_src", 1, 16, 48), ("vlan_tci2", 1, 0, 16),
    ("dl_dst", 2, 16, 48), ("nw_proto", 2, 8, 8), ("nw_tos", 2, 0, 8),
    ("nw_src", 3, 32, 32), ("nw_dst", 3, 0, 32),
    ("tp_src", 4, 48, 16), ("tp_dst", 4, 32, 16), ("tcp_flags", 4, 16, 16),
    ("nw_ttl", 4, 8, 8), ("nw_frag", 4, 0, 8),
    ("ipv6_src_hi", 5, 0, 64), ("ipv6_src_lo", 6, 0, 64),
    ("ipv6_dst_hi", 7, 0, 64), ("ipv6_dst_lo", 8, 0, 64),
    ("ipv6_label", 9, 32, 20), ("arp_op", 9, 0, 16),
    ("arp_sha", 10, 16, 48), ("arp_tha", 11, 16, 48),
    ("metadata", 12, 0, 64),
    *[(f"reg{r}", 13 + r // 2, 32 if r % 2 == 0 else 0, 32) for r in range(16)],
    ("tun_id", 21, 0, 64), ("tun_src", 22, 32, 32), ("tun_dst", 22, 0, 32),
    ("ct_state", 23, 48, 16), ("ct_zone", 23, 32, 16), ("ct_mark", 23, 0, 32),
    ("ct_label_hi", 24, 0, 64), ("ct_label_lo", 25, 0, 64),
    *[(f"tun_metadata{n}", 26 + n, 0, 64) for n in range(4)],
    ("tun_ipv6_src_hi", 30, 0, 64), ("tun_ipv6_src_lo", 31, 0, 64),
    ("tun_ipv6_dst_hi", 32, 0, 64), ("tun_ipv6_dst_lo", 33, 0, 64),
    ("ct_nw_src", 34, 32, 32), ("ct_nw_dst", 34, 0, 32),
    ("ct_nw_proto", 35, 32, 8), ("ct_tp_src", 35, 16, 16), ("ct_tp_dst", 35, 0, 16),
    ("ct_ipv6_src_hi", 36, 0, 64), ("ct_ipv6_src_lo", 37, 0, 64),
    ("ct_ipv6_dst_hi", 38, 0, 64), ("ct_ipv6_dst_lo", 39, 0, 64),
]

FIELDS = {name: Field(name, w, s, b) for name, w, s, b in _LAYOUT}
KEY_WORDS = 1 + max(f.word for f in FIELDS.values())
PACKET_WORDS = 12  # w0..w11 come from the packet; the parser zeroes the rest

# Word indices, for kernels.
W_PORT_TYPE_VLAN = 0
W_SRC_VLAN2 = 1
W_DST_PROTO_TOS = 2
W_NW_ADDRS = 3
W_L4 = 4
W_IPV6_SRC = 5
W_IPV6_DST = 7
W_LABEL_ARPOP = 9
W_ARP_SHA = 10
W_ARP_THA = 11
W_METADATA = 12
W_REGS = 13
W_TUN_ID = 21
W_TUN_ADDRS = 22
W_CT = 23
W_CT_LABEL = 24
W_TUN_METADATA = 26
N_TUN_METADATA = 4
W_TUN_IPV6_SRC = 30
W_TUN_IPV6_DST = 32
W_CT_TUPLE = 34        # 34-39: ct_nw_src|dst, ct_nw_proto|tp_src|tp_dst, ct_ipv6_src, ct_ipv6_dst

# uint64 shift amounts for kernels: numba promotes uint64 op int64 to float64
U8, U16, U32, U48 = (np.uint64(n) for n in (8, 16, 32, 48))

VLAN_CFI = 0x1000  # set in vlan_tci when a tag is present (OVS)
FRAG_ANY = 1
FRAG_LATER = 2


def get(key_row, name):
    """Read one field from a key row (a uint64 array of KEY_WORDS), as a Python int."""
    f = FIELDS[name]
    return (int(key_row[f.word]) >> f.shift) & ((1 << f.bits) - 1)


def ipv6(key_row, which):
    """The 128-bit ipv6_src or ipv6_dst of a key row, as a Python int."""
    w = W_IPV6_SRC if which == "src" else W_IPV6_DST
    return (int(key_row[w]) << 64) | int(key_row[w + 1])
