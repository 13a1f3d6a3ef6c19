"""The PACKET_MMAP ring kernels on hand-built rings (no sockets): TPACKET_V3 RX blocks into a
batch (VLAN tags put back, blocks handed back, batches ending mid-block, oversize frames),
TPACKET_V2 TX frames from a tx list, and the MTU filter of live ports."""
import struct

import numpy as np

from softdpu import drops
from softdpu.batch import M_DROP, M_IN_PORT, M_TS, M_WIRE_LEN, Batch
from softdpu.ports import afpacket_ring as R
from softdpu.ports.mtu import PortMtu

BS, NB = 4096, 3


def _ring():
    return np.zeros(BS * NB, np.uint8)


def _block(ring, b, pkts, status=R.TP_STATUS_USER):
    """pkts: [(frame, vlan tci or None, wire length or None)] laid out as the kernel does."""
    base = b * BS
    off = 48
    struct.pack_into("<III", ring, base + 8, 0, len(pkts), off)
    for k, (frame, vlan, wire) in enumerate(pkts):
        mac = off + 48
        nxt = (mac + len(frame) + 15) // 16 * 16 - off if k < len(pkts) - 1 else 0
        st = R.TP_STATUS_VLAN_VALID if vlan is not None else 0
        struct.pack_into("<IIIIIIHH", ring, base + off, nxt, 0, 0, len(frame), wire or len(frame), st, 48, 62)
        if vlan is not None:
            struct.pack_into("<I", ring, base + off + 32, vlan)
        ring[base + mac: base + mac + len(frame)] = np.frombuffer(frame, np.uint8)
        off += nxt
    struct.pack_into("<I", ring, base + 8, status)


def _state():
    st = np.zeros(R.RX_COLS, np.int64)
    st[R.R_NBLOCKS], st[R.R_BSIZE] = NB, BS
    return st


def _frame(n, seed):
    return bytes((seed + i) & 0xFF for i in range(n))


def test_rx_blocks_into_batches_and_back_to_the_kernel():
    ring, st = _ring(), _state()
    f = [_frame(60, 1), _frame(100, 2), _frame(70, 3)]
    _block(ring, 0, [(f[0], None, None), (f[1], 5, None)])
    _block(ring, 1, [(f[2], None, None)])
    b = Batch(4, 1600)
    row = R.rx_fill(ring, st, b.data, b.meta, 0, 1, b.headroom, b.max_frame, 7, 123)   # ends mid-block
    assert row == 1 and ring[8] == 1 and st[R.R_PKT] == 1
    row = R.rx_fill(ring, st, b.data, b.meta, row, 4, b.headroom, b.max_frame, 7, 123)
    assert row == 3
    b.n = row
    assert ring[8] == 0 and ring[BS + 8] == 0                  # both blocks given back
    assert b.packet(0) == f[0] and b.packet(2) == f[2]
    assert b.packet(1) == f[1][:12] + b"\x81\x00\x00\x05" + f[1][12:]      # the tag put back
    assert list(b.meta[:3, M_IN_PORT]) == [7] * 3 and list(b.meta[:3, M_TS]) == [123] * 3
    assert b.meta[1, M_WIRE_LEN] == 104
    assert not R.rx_ready(ring, st)                          # block 2 is still the kernel's
    _block(ring, 2, [(f[0], None, None)])
    assert R.rx_ready(ring, st)
    assert R.rx_fill(ring, st, b.data, b.meta, 0, 4, b.headroom, b.max_frame, 7, 9) == 1
    assert st[R.R_BLOCK] == 0 and st[R.R_PACKETS] == 4


def test_rx_oversize_and_cut_frames_are_counted_drops():
    ring, st = _ring(), _state()
    _block(ring, 0, [(_frame(200, 0), None, None), (_frame(80, 0), None, 300)])
    b = Batch(4, 100)
    b.n = R.rx_fill(ring, st, b.data, b.meta, 0, 4, b.headroom, b.max_frame, 1, 0)
    assert b.n == 2
    assert b.meta[0, M_DROP] == drops.FRAME_TOO_BIG and b.packet(0) == b""
    assert b.meta[1, M_DROP] == drops.SNAPLEN_TRUNCATED and b.meta[1, M_WIRE_LEN] == 300


def test_tx_fills_frames_for_its_port_and_stops_when_full():
    b = Batch(4, 1600)
    frames = [_frame(60 + k, k) for k in range(4)]
    for fr in frames:
        b.append(fr)
    b.tx[:4, :2] = [(0, 1), (1, 2), (2, 1), (3, 1)]
    b.n_tx = 4
    ring = np.zeros(2048 * 2, np.uint8)
    st = np.zeros(R.TX_COLS, np.int64)
    st[R.T_NFRAMES], st[R.T_FSIZE] = 2, 2048
    assert R.tx_fill(ring, st, b.tx, 4, 1, b.data, b.meta) == R.TX_RING_FULL
    assert st[R.T_J] == 3 and st[R.T_QUEUED] == 2
    for k, fr in enumerate((frames[0], frames[2])):
        base = k * 2048
        assert struct.unpack_from("<II", ring, base) == (R.TP_STATUS_SEND_REQUEST, R.VNET_HDR_LEN + len(fr))
        # struct virtio_net_hdr: no GSO, no checksum offload, hdr_len = the whole frame (copied linear)
        assert struct.unpack_from("<BBHHHH", ring, base + R.TX_DATA) == (0, 0, len(fr), 0, 0, 0)
        data = base + R.TX_DATA + R.VNET_HDR_LEN
        assert bytes(ring[data: data + len(fr)]) == fr
    ring[0] = 0                                               # the kernel sent frame 0
    assert R.tx_fill(ring, st, b.tx, 4, 1, b.data, b.meta) == R.TX_DONE
    data = R.TX_DATA + R.VNET_HDR_LEN
    assert bytes(ring[data: data + len(frames[3])]) == frames[3]
    assert R.tx_unsend(ring, st) == 2 and ring[0] == 0 and ring[2048] == 0


def test_mtu_filter_counts_what_it_takes_out():
    b = Batch(4, 1600)
    for n in (100, 1500, 1500):
        b.append(bytes(n))
    b.append(bytes(12) + b"\x81\x00" + bytes(1004))         # tagged: 4 more bytes allowed
    # packet 0 to both ports, packet 1 only to the small one, packet 2 to both, 3 to the small one
    b.tx[:6, :2] = [(0, 1), (0, 2), (1, 2), (2, 1), (2, 2), (3, 2)]
    b.n_tx = 6
    step = PortMtu({2: 1000 + 14}, b.size)
    step.run(b)
    assert b.n_tx == 4 and [tuple(r) for r in b.tx[:4, :2]] == [(0, 1), (0, 2), (2, 1), (3, 2)]
    assert list(b.meta[:4, M_DROP]) == [0, drops.PORT_MTU, 0, 0] and step.cut == 2
    b.data[3, b.headroom + 12] = 0x08                          # untagged now: too long by 4
    b.tx[0, :2] = (3, 2)
    b.n_tx = 1
    step.run(b)
    assert b.n_tx == 0 and b.meta[3, M_DROP] == drops.PORT_MTU
