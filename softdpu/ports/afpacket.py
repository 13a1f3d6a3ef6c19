"""The `afpacket` port: an existing interface (one end of a veth, a NIC) attached with
PACKET_MMAP rings.

    [[port]]
    name = "p1"
    ofport = 1
    type = "afpacket"
    interface = "veth-d1"       # default: the port's name
    tx = "ring"                 # or "sendmmsg"

Per worker the port has two packet sockets:
  - RX: TPACKET_V3 ring (afpacket_ring.rx_fill walks it into the batch, no Python per
    packet), promiscuous, PACKET_IGNORE_OUTGOING (softdpu never receives what it, or
    anything else, sends out of the interface), joined to the port's PACKET_FANOUT
    group in hash mode when there are several workers (the kernel's flow hash is the
    same both ways, so a connection stays on one worker);
  - TX: protocol 0 (it receives nothing), PACKET_QDISC_BYPASS; by default a TPACKET_V2
    ring filled by tx_fill and one send() per batch (PACKET_LOSS: a refused frame is
    skipped, counted; PACKET_VNET_HDR so that each frame is copied into one linear skb,
    see afpacket_ring.py), or with tx = "sendmmsg" one sendmmsg() per batch straight from
    the batch's slots (afpacket_mmsg.py).  On veths the ring costs ~15 % less CPU per
    packet than sendmmsg (no msghdr / iovec per packet; bench/RESULTS.md).
The interface's MTU is read at open: frames longer than MTU + Ethernet header (+ 4 per
VLAN tag) are taken out before the stats and counted as the port_mtu drop.
"""
import errno
import fcntl
import mmap
import socket
import struct

import numpy as np

from softdpu.errors import SoftdpuError
from softdpu.ports import afpacket_ring as R
from softdpu.ports.afpacket_mmsg import M_BYTES, M_FAILED, M_PACKETS, MmsgSender

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_FANOUT = 18
PACKET_VNET_HDR = 15
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2, TPACKET_V3 = 1, 2
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
ETH_P_ALL = 0x0003
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
PAGE = mmap.PAGESIZE

RX_BLOCK = 1 << 16          # 64 KiB blocks: many, so that blocks the timeout hands over part-full
RX_BLOCKS = 256             # still buffer 256 timeouts (a worker descheduled that long loses nothing)
RX_TIMEOUT_MS = 1           # a block not full is handed over after this long
TX_FRAMES = 1024
TX_MODES = ("ring", "sendmmsg")          # the first is the default


def interface_mtu(ifname):
    """The MTU of interface `ifname` in this network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            r = fcntl.ioctl(s.fileno(), SIOCGIFMTU, struct.pack("16si", ifname.encode(), 0) + b"\0" * 20)
        except OSError as e:
            raise SoftdpuError(f"interface {ifname}: cannot read its MTU: {e.strerror}") from None
    return struct.unpack_from("16si", r)[1]


def _frame_size(max_frame):
    """A TX frame: the header and max_frame bytes, rounded up to a power of two (>= 2048)."""
    size = 2048
    while size < R.TX_DATA + max_frame:
        size *= 2
    return size


class _Ring:
    def __init__(self, sock, size):
        self.map = mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.buf = np.frombuffer(self.map, dtype=np.uint8)

    def close(self):
        self.buf = None
        try:
            self.map.close()
        except BufferError:     # a view is still alive somewhere; the socket's close frees it
            pass


class _Socket:
    """A packet socket and its ring's geometry (RX: block size and count; TX: frame size and count)."""

    def __init__(self, sock, unit, count):
        self.sock, self.unit, self.count = sock, unit, count

    def fileno(self):
        return self.sock.fileno()

    def close(self):
        self.sock.close()


def open_rx_socket(ifname, max_frame, fanout_id=None):
    """A bound TPACKET_V3 RX socket on `ifname` (promiscuous, ignoring outgoing packets), not
    yet mapped; joined to fanout group `fanout_id` in hash mode when given."""
    try:
        idx = socket.if_nametoindex(ifname)
    except OSError:
        raise SoftdpuError(f"no interface named {ifname!r} in this network namespace") from None
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        frame = _frame_size(max_frame + 128)              # the V3 snaplen is bounded by the frame size
        block = max(RX_BLOCK, frame)
        req = struct.pack("7I", block, RX_BLOCKS, frame, block // frame * RX_BLOCKS, RX_TIMEOUT_MS, 0, 0)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        s.bind((ifname, ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", idx, PACKET_MR_PROMISC, 0, b""))
        if fanout_id is not None:
            s.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack(
                "I", (fanout_id & 0xFFFF) | (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16))
    except OSError as e:
        s.close()
        raise SoftdpuError(f"interface {ifname}: cannot set up its AF_PACKET RX ring: {e.strerror}") from None
    return _Socket(s, block, RX_BLOCKS)


def open_tx_socket(ifname, max_frame, mode=TX_MODES[0]):
    """A TX socket on `ifname` that receives nothing: for sendmmsg, or with a TPACKET_V2 TX ring
    (mode "ring"), not yet mapped."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    if mode == "sendmmsg":
        try:
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            s.bind((ifname, 0))
        except OSError as e:
            s.close()
            raise SoftdpuError(f"interface {ifname}: cannot open an AF_PACKET socket: {e.strerror}") from None
        return _Socket(s, 0, 0)
    try:
        s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)      # frames copied linear (afpacket_ring.py)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
        frame = _frame_size(max_frame + R.VNET_HDR_LEN)
        block = max(frame, 1 << 16)
        nframes = max(TX_FRAMES, block // frame)
        s.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack("4I", block, nframes * frame // block, frame, nframes))
        s.bind((ifname, 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 200_000))
    except OSError as e:
        s.close()
        raise SoftdpuError(f"interface {ifname}: cannot set up its AF_PACKET TX ring: {e.strerror}") from None
    return _Socket(s, frame, nframes)


class AfPacketPort:
    """One worker's side of an afpacket port: its RX and TX rings and counters.

    sockets: (rx, tx) from open_rx_socket / open_tx_socket (opened before the workers
    fork, so that every fanout group has its members in worker order); map() in the worker.
    """

    def __init__(self, port, sockets, max_frame):
        self.port, self.name, self.ofport = port, port.name, port.ofport
        self.ifname = port.options.get("interface", port.name)
        self.rx_sock, self.tx_sock = sockets
        self.max_frame = max_frame
        self.mtu = interface_mtu(self.ifname)
        self.rx_state = np.zeros(R.RX_COLS, np.int64)
        self.tx_state = np.zeros(R.TX_COLS, np.int64)
        self.rx = self.tx = None
        self.tx_mode = port.options.get("tx", TX_MODES[0])
        self.mmsg = None
        self.send_errors = 0
        self._kdrops = 0

    @property
    def frame_limit(self):
        """Longest untagged frame this port sends: the MTU and an Ethernet header (ports/mtu.py
        allows a tagged frame 4 bytes more, as the kernel does)."""
        return self.mtu + 14

    def fileno(self):
        return self.rx_sock.fileno()

    def map(self):
        block, nblocks = self.rx_sock.unit, self.rx_sock.count
        self.rx = _Ring(self.rx_sock.sock, block * nblocks)
        self.rx_state[R.R_NBLOCKS], self.rx_state[R.R_BSIZE] = nblocks, block
        if self.tx_mode == "sendmmsg":
            self.mmsg = MmsgSender(self.tx_sock.sock)
            return
        frame, nframes = self.tx_sock.unit, self.tx_sock.count
        self.tx = _Ring(self.tx_sock.sock, frame * nframes)
        self.tx_state[R.T_NFRAMES], self.tx_state[R.T_FSIZE] = nframes, frame

    def warm(self, batch):
        R.warm(batch)
        MmsgSender(None).warm(batch)

    def ready(self):
        return bool(R.rx_ready(self.rx.buf, self.rx_state))

    def fill(self, batch, row, now):
        """Received packets into batch rows row..; -> the next free row."""
        return int(R.rx_fill(self.rx.buf, self.rx_state, batch.data, batch.meta, row, batch.size,
                             batch.headroom, batch.max_frame, self.ofport, now))

    def send(self, batch):
        """The batch's tx entries for this port: one sendmmsg() per batch, or out of the TX ring
        with one send() per ring-full."""
        if self.mmsg is not None:
            self.mmsg.send(batch, self.ofport)
            return
        st = self.tx_state
        st[R.T_J] = 0
        for _ in range(64):                   # bounded: a ring-full flush per round
            st[R.T_QUEUED] = 0
            status = R.tx_fill(self.tx.buf, st, batch.tx, batch.n_tx, self.ofport, batch.data, batch.meta)
            if st[R.T_QUEUED]:
                self._flush(status == R.TX_RING_FULL)
            if status == R.TX_DONE:
                return
        left = int(np.count_nonzero(batch.tx[int(st[R.T_J]): batch.n_tx, 1] == self.ofport))
        st[R.T_FULL] += left

    def _flush(self, wait):
        try:
            self.tx_sock.sock.send(b"", 0 if wait else socket.MSG_DONTWAIT)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.ENOBUFS, errno.EINTR):
                return
            self.send_errors += 1
            lost = int(R.tx_unsend(self.tx.buf, self.tx_state))     # the interface went down or away
            self.tx_state[R.T_FAILED] += lost
            self.tx_state[R.T_PACKETS] -= lost

    def counters_dict(self):
        """{name: value} of what the rings did (rx from the ring, tx into it, and what was lost)."""
        r, t = self.rx_state, self.tx_state
        if self.mmsg is not None:
            m = self.mmsg.st
            return {"ring_rx_packets": int(r[R.R_PACKETS]), "ring_rx_bytes": int(r[R.R_BYTES]),
                    "tx_packets": int(m[M_PACKETS]), "tx_bytes": int(m[M_BYTES]), "tx_failed": int(m[M_FAILED]),
                    "kernel_drops": self.kernel_drops()}
        return {"ring_rx_packets": int(r[R.R_PACKETS]), "ring_rx_bytes": int(r[R.R_BYTES]),
                "ring_tx_packets": int(t[R.T_PACKETS]), "ring_tx_bytes": int(t[R.T_BYTES]),
                "tx_ring_full": int(t[R.T_FULL]), "tx_refused": int(t[R.T_REFUSED]), "tx_failed": int(t[R.T_FAILED]),
                "kernel_drops": self.kernel_drops()}

    def kernel_drops(self):
        """Packets the kernel could not put in the RX ring (PACKET_STATISTICS tp_drops), cumulative."""
        try:
            raw = self.rx_sock.sock.getsockopt(SOL_PACKET, 6, 12)      # PACKET_STATISTICS: tpacket_stats_v3
        except OSError:
            return self._kdrops
        _, dropped, _ = struct.unpack("3I", raw)
        self._kdrops += dropped             # reading resets the kernel's counters
        return self._kdrops

    def close(self):
        for ring in (self.rx, self.tx):
            if ring is not None:
                ring.close()
        self.rx = self.tx = None
        for s in (self.rx_sock, self.tx_sock):
            s.close()
