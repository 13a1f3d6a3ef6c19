"""PACKET_MMAP rings walked by kernels: a TPACKET_V3 RX ring into a Batch, a Batch's tx list
into a TPACKET_V2 TX ring (see packet_mmap.rst in the kernel's documentation).

RX ring (TPACKET_V3): blocks of block_size bytes, handed to user space whole.

  block (tpacket_block_desc)                packet (tpacket3_hdr), at block + offset_to_first_pkt,
  ┌─────────────────────────────────┐      then each at the previous + tp_next_offset
  │  0 version              u32     │      ┌─────────────────────────────────────┐
  │  4 offset_to_priv       u32     │      │  0 tp_next_offset   u32             │
  │  8 block_status         u32     │      │  4 tp_sec, 8 tp_nsec  u32 (unused:  │
  │    (TP_STATUS_USER = 1: ours;   │      │    the live clock is CLOCK_MONOTONIC│
  │     we write 0 to give it back) │      │    read once per batch)             │
  │ 12 num_pkts             u32     │      │ 12 tp_snaplen       u32 (bytes here)│
  │ 16 offset_to_first_pkt  u32     │      │ 16 tp_len           u32 (on the wire)│
  │ 20 blk_len              u32     │      │ 20 tp_status        u32 (VLAN_VALID │
  │ 24 seq_num              u64     │      │    0x10, VLAN_TPID_VALID 0x40)      │
  │ 32 ts_first, ts_last            │      │ 24 tp_mac u16, 26 tp_net u16        │
  └─────────────────────────────────┘      │ 28 rxhash u32, 32 tp_vlan_tci u32,  │
                                           │ 36 tp_vlan_tpid u16                 │
                                           └─────────────────────────────────────┘
A VLAN tag the kernel took out of the frame (tp_status VLAN_VALID) is put back after
the MAC addresses, so the pipeline sees the frame as it was on the wire.

TX ring (TPACKET_V2): frame_nr frames of frame_size bytes, contiguous.

  frame (tpacket2_hdr)
  ┌──────────────────────────────────────────────────────────────────────┐
  │ 0 tp_status u32: AVAILABLE 0 -> we fill and set SEND_REQUEST 1 ->    │
  │   the kernel sends on send() and sets SENDING 2, then AVAILABLE 0    │
  │   (WRONG_FORMAT 4: refused, e.g. longer than the MTU)                │
  │ 4 tp_len u32, 8 tp_snaplen u32, ...                                  │
  │ 32: struct virtio_net_hdr (10 bytes: flags 0, gso_type 0 (none),     │
  │     hdr_len u16 = the frame's length, gso_size, csum_start,          │
  │     csum_offset 0), then the frame's bytes                           │
  └──────────────────────────────────────────────────────────────────────┘
The socket has PACKET_VNET_HDR on, and hdr_len covering the whole frame makes the
kernel copy it into one linear skb (without it only the Ethernet header is copied
and the rest rides as page fragments of the ring, which a veth then copies again:
~20 % more CPU per packet here, and more than sendmmsg).
"""
import numpy as np

from softdpu._jit import njit
from softdpu import drops
from softdpu.batch import M_DROP, M_IN_PORT, M_LEN, M_START, M_TS, M_WIRE_LEN

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
TX_DATA = 32                # TPACKET_ALIGN(sizeof(tpacket2_hdr)): where a TX frame's vnet header starts
VNET_HDR_LEN = 10           # sizeof(struct virtio_net_hdr): the frame's bytes follow it

# RX state (int64[RX_COLS])
R_BLOCK, R_PKT, R_OFF, R_NBLOCKS, R_BSIZE, R_PACKETS, R_BYTES, R_TOO_BIG = range(8)
RX_COLS = 8
# TX state (int64[TX_COLS])
T_FRAME, T_NFRAMES, T_FSIZE, T_J, T_QUEUED, T_PACKETS, T_BYTES, T_FULL, T_REFUSED, T_FAILED = range(10)
TX_COLS = 10
# tx_fill results
TX_DONE, TX_RING_FULL = 0, 1


@njit(alloc=False, inline=True)
def _u32(buf, p):
    return (np.uint32(buf[p]) | np.uint32(buf[p + 1]) << 8 | np.uint32(buf[p + 2]) << 16
            | np.uint32(buf[p + 3]) << 24)


@njit(alloc=False, inline=True)
def _u16(buf, p):
    return np.uint32(buf[p]) | np.uint32(buf[p + 1]) << 8


@njit(alloc=False, inline=True)
def _put32(buf, p, v):
    buf[p + 1] = (v >> 8) & 0xFF
    buf[p + 2] = (v >> 16) & 0xFF
    buf[p + 3] = (v >> 24) & 0xFF
    buf[p] = v & 0xFF            # the status byte last


@njit
def rx_fill(ring, st, data, meta, row, end, headroom, max_frame, port, now):
    """Packets of the RX ring's user-owned blocks into batch rows row..end-1; -> the next free row.

    Every packet gives a row (in_port `port`, timestamp `now`): one longer than
    max_frame gets no bytes and the frame_too_big drop, one the ring cut short
    (tp_snaplen < tp_len) the snaplen_truncated drop.  A block is given back to
    the kernel as soon as its last packet is copied; a batch may end mid-block.
    """
    nblocks, bsize = np.uint64(st[R_NBLOCKS]), np.uint64(st[R_BSIZE])
    ncols = meta.shape[1]
    packets = nbytes = 0
    row = np.uint64(row)
    end = np.uint64(end)
    while row < end:
        b = np.uint64(st[R_BLOCK])
        base = b * bsize
        if (_u32(ring, base + 8) & TP_STATUS_USER) == 0:
            break
        num = np.uint64(_u32(ring, base + 12))
        k = np.uint64(st[R_PKT])
        off = base + np.uint64(_u32(ring, base + 16)) if k == 0 else np.uint64(st[R_OFF])
        while k < num and row < end:
            snap = np.uint64(_u32(ring, off + 12))
            wire = np.uint64(_u32(ring, off + 16))
            status = _u32(ring, off + 20)
            mac = off + np.uint64(_u16(ring, off + 24))
            vlan = (status & TP_STATUS_VLAN_VALID) != 0 and snap >= 12
            extra = np.uint64(4) if vlan else np.uint64(0)
            for c in range(ncols):
                meta[row, c] = 0
            length = snap + extra
            drop = 0
            if length > max_frame or mac + snap > base + bsize:
                drop = drops.FRAME_TOO_BIG
                length = 0
                st[R_TOO_BIG] += 1
            else:
                dst = data[row, headroom: headroom + length]
                if vlan:
                    for q in range(12):
                        dst[q] = ring[mac + q]
                    tpid = np.uint32(0x8100)
                    if (status & TP_STATUS_VLAN_TPID_VALID) != 0 and _u16(ring, off + 36) != 0:
                        tpid = _u16(ring, off + 36)
                    tci = _u32(ring, off + 32)
                    dst[12] = (tpid >> 8) & 0xFF
                    dst[13] = tpid & 0xFF
                    dst[14] = (tci >> 8) & 0xFF
                    dst[15] = tci & 0xFF
                    src = ring[mac + 12: mac + snap]
                    rest = dst[16:]
                    for q in range(snap - 12):
                        rest[q] = src[q]
                else:
                    src = ring[mac: mac + snap]
                    for q in range(snap):
                        dst[q] = src[q]
                if snap < wire:
                    drop = drops.SNAPLEN_TRUNCATED
            meta[row, M_START] = headroom
            meta[row, M_LEN] = length
            meta[row, M_WIRE_LEN] = max(wire + extra, length)
            meta[row, M_TS] = now
            meta[row, M_IN_PORT] = port
            meta[row, M_DROP] = drop
            packets += 1
            nbytes += wire + extra
            off += np.uint64(_u32(ring, off))
            k += np.uint64(1)
            row += np.uint64(1)
        if k >= num:
            _put32(ring, base + 8, TP_STATUS_KERNEL)      # the block goes back to the kernel
            st[R_BLOCK] = (b + np.uint64(1)) % nblocks
            st[R_PKT] = 0
        else:
            st[R_PKT] = k
            st[R_OFF] = off
    st[R_PACKETS] += packets
    st[R_BYTES] += nbytes
    return row


@njit
def rx_ready(ring, st):
    """True when the RX ring's next block is ours (a packet is waiting)."""
    base = np.uint64(st[R_BLOCK]) * np.uint64(st[R_BSIZE])
    return (_u32(ring, base + 8) & TP_STATUS_USER) != 0


@njit
def tx_fill(ring, st, tx, n_tx, port, data, meta):
    """Copy the tx entries st[T_J].. going to `port` into free TX ring frames (SEND_REQUEST).

    -> TX_DONE, or TX_RING_FULL (st[T_J] is the entry that found no free frame: flush
    the ring with send() and call again).  A frame the kernel refused (WRONG_FORMAT)
    is counted in st[T_REFUSED] and reused.
    """
    nframes, fsize = np.uint64(st[T_NFRAMES]), np.uint64(st[T_FSIZE])
    head = np.uint64(TX_DATA + VNET_HDR_LEN)
    room = fsize - head
    slot = np.uint64(data.shape[1])
    j = np.uint64(st[T_J])
    n_tx = np.uint64(n_tx)
    result = TX_DONE
    while j < n_tx:
        if tx[j, 1] != port:
            j += np.uint64(1)
            continue
        f = np.uint64(st[T_FRAME])
        base = f * fsize
        status = _u32(ring, base)
        if status == TP_STATUS_WRONG_FORMAT:
            st[T_REFUSED] += 1
        elif status != TP_STATUS_KERNEL:
            result = TX_RING_FULL
            break
        i = np.uint64(tx[j, 0])
        s, n = np.uint64(meta[i, M_START]), np.uint64(meta[i, M_LEN])
        if n > room or s + n > slot:     # the port's MTU step keeps these out; never expected
            st[T_REFUSED] += 1
            j += np.uint64(1)
            continue
        src = data[i, s: s + n]
        vnet = base + np.uint64(TX_DATA)
        for q in range(VNET_HDR_LEN):
            ring[vnet + np.uint64(q)] = 0
        ring[vnet + np.uint64(2)] = n & np.uint64(0xFF)             # hdr_len: all of it, linear
        ring[vnet + np.uint64(3)] = (n >> np.uint64(8)) & np.uint64(0xFF)
        dst = ring[base + head: base + head + n]
        for q in range(n):
            dst[q] = src[q]
        _put32(ring, base + 4, n + np.uint64(VNET_HDR_LEN))
        _put32(ring, base, TP_STATUS_SEND_REQUEST)
        st[T_FRAME] = (f + np.uint64(1)) % nframes
        st[T_QUEUED] += 1
        st[T_PACKETS] += 1
        st[T_BYTES] += n
        j += np.uint64(1)
    st[T_J] = j
    return result


@njit
def tx_unsend(ring, st):
    """After a failed send(): frames still SEND_REQUEST go back to AVAILABLE; -> how many."""
    nframes, fsize = np.uint64(st[T_NFRAMES]), np.uint64(st[T_FSIZE])
    n = 0
    for f in range(nframes):
        base = np.uint64(f) * fsize
        if _u32(ring, base) == TP_STATUS_SEND_REQUEST:
            _put32(ring, base, TP_STATUS_KERNEL)
            n += 1
    return n


def warm(batch):
    """Load (or compile) the ring kernels now, on a dummy ring, not in the first live batch."""
    ring = np.zeros(8192, np.uint8)
    st = np.zeros(RX_COLS, np.int64)
    st[R_NBLOCKS], st[R_BSIZE] = 2, 4096
    rx_ready(ring, st)
    rx_fill(ring, st, batch.data, batch.meta, 0, 0, batch.headroom, batch.max_frame, 0, 0)
    tst = np.zeros(TX_COLS, np.int64)
    tst[T_NFRAMES], tst[T_FSIZE] = 4, 2048
    tx_fill(ring, tst, batch.tx, 0, 0, batch.data, batch.meta)
    tx_unsend(ring, tst)
