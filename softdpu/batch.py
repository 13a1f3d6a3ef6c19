"""The Batch: a frame of packets as columns, allocated once and reused.

As VPP's vlib_buffer_t and OVS's dp_packet, turned into a struct of arrays:

  data  uint8[N, slot]     fixed-stride slots; a packet lives at
                           data[i, start : start + length]; `headroom` bytes
                           before the first byte let an encapsulation prepend
                           headers by moving `start` back, without a copy
  meta  int64[N, M_COLS]   per-packet metadata, one row per packet (the M_*
                           column indices below), so a kernel takes one array
  key   uint64[N, KEY_WORDS]  the parsed flow key (softdpu.key)
  tx    int64[N * fanout, 10]  the output list: (row, port, and with tunnel ports the
                           tunnel fields: tun_id, tun_src|tun_dst, tun_metadata0..3,
                           tun_ipv6_dst high, low),
                           filled by the flow tables, drained by the ports
  orig  uint64[N + C, PACKET_WORDS]  the packet words of each row's key as its
                           bytes stand (the flow tables' commit scratch)

Rows size..size+clones-1 of data/meta are clone rows: a packet output
after header rewrites is copied there and rewritten (its M_ORIGIN names the
packet row), so several outputs of one packet can each carry their own
modifications.  A tx entry's row is a packet row or a clone row.

`n` is how many rows hold packets.  Offsets in meta (M_L2..M_L5) are
absolute positions in the slot, -1 when absent, so they stay valid when
`start` moves.  Timestamps are nanoseconds since the Unix epoch.

A frame longer than `max_frame` never enters a slot: the receiving port
counts it as the `frame_too_big` drop.  The slot is sized to hold
headroom + max_frame + tailroom, so jumbo frames just need a larger
max_frame (9216 for the usual jumbo MTU).
"""
import numpy as np

from softdpu.key import KEY_WORDS, PACKET_WORDS

DEFAULT_SIZE = 256
DEFAULT_MAX_FRAME = 1600
HEADROOM = 256   # outer Ethernet + IPv6 + UDP + Geneve/VXLAN + ESP + tunnel IP
TAILROOM = 64    # ESP padding, pad length, next header and ICV

# meta columns
M_START = 0      # first byte of the packet in its slot
M_LEN = 1        # bytes of the packet in the slot
M_WIRE_LEN = 2   # length on the wire (pcap orig_len); > M_LEN if snaplen cut it
M_TS = 3         # timestamp, ns since the epoch
M_IN_PORT = 4    # OpenFlow port number it arrived on
M_DROP = 5       # softdpu.drops code, 0 = alive
M_FLAGS = 6      # parse flags (softdpu.stages.parse F_*)
M_HASH = 7       # symmetric flow hash (same both directions)
M_L2 = 8         # Ethernet header offset
M_L3 = 9         # IP / ARP header offset
M_L4 = 10        # TCP / UDP / ICMP header offset
M_L5 = 11        # first byte after the L4 header (tunnel / ESP header)
M_TRACED = 12    # 1 when trace records are wanted for this packet
M_PARSE_ERR = 13  # softdpu.drops parse_* code of a malformed packet, 0 if well formed
M_ORIGIN = 14    # in a clone row: the packet row it is a modified copy of
M_COLS = 16      # room for later columns without changing the stride much

TX_COLS = 10     # tx entries: row, port, and the tunnel fields of the key at the output


def slot_size(max_frame):
    """Bytes per slot for frames up to max_frame, rounded up to a cache line."""
    need = HEADROOM + max_frame + TAILROOM
    return (need + 63) // 64 * 64


class Batch:
    """Up to `size` packets, their metadata and parsed keys."""

    def __init__(self, size=DEFAULT_SIZE, max_frame=DEFAULT_MAX_FRAME, fanout=4, clones=None):
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        if not 60 <= max_frame <= 65535:
            raise ValueError(f"max_frame must be 60..65535, got {max_frame}")
        self.size = size
        self.max_frame = max_frame
        self.headroom = HEADROOM
        self.clones = size if clones is None else clones
        rows = size + self.clones
        self.data = np.zeros((rows, slot_size(max_frame)), dtype=np.uint8)
        self.meta = np.zeros((rows, M_COLS), dtype=np.int64)
        self.orig = np.zeros((rows, PACKET_WORDS), dtype=np.uint64)
        self.key = np.zeros((size, KEY_WORDS), dtype=np.uint64)
        self.tx = np.zeros((size * fanout, TX_COLS), dtype=np.int64)
        self.n = 0
        self.n_tx = 0

    @property
    def slot(self):
        return self.data.shape[1]

    # Column views, for tests and Python-side code (never the hot path).
    def column(self, m):
        return self.meta[: self.n, m]

    def packet(self, i):
        """Bytes of packet i (a copy)."""
        s, n = self.meta[i, M_START], self.meta[i, M_LEN]
        return bytes(self.data[i, s: s + n])

    def clear(self):
        self.n = 0
        self.n_tx = 0

    def append(self, frame, ts=0, in_port=0, wire_len=None):
        """Put one frame in the next slot (Python; for tests and tools, not the hot path)."""
        if self.n >= self.size:
            raise IndexError("batch is full")
        if len(frame) > self.max_frame:
            raise ValueError(f"frame of {len(frame)} bytes exceeds max_frame {self.max_frame}")
        i = self.n
        s = self.headroom
        self.data[i, s: s + len(frame)] = np.frombuffer(bytes(frame), dtype=np.uint8)
        row = self.meta[i]
        row[:] = 0
        row[M_START] = s
        row[M_LEN] = len(frame)
        row[M_WIRE_LEN] = len(frame) if wire_len is None else wire_len
        row[M_TS] = ts
        row[M_IN_PORT] = in_port
        self.n += 1
        return i
