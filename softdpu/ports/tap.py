"""The `tap` port: softdpu creates a TAP device and plays the card behind it.

    [[port]]
    name = "vf0"
    ofport = 1
    type = "tap"
    interface = "vf0"            # the device's name (default: the port's name)
    mac = "02:00:00:00:01:01"    # its MAC (default: the kernel's random one)
    mtu = 1500                   # its MTU (default 1500)
    netns = "host1"              # move it into this network namespace (default: softdpu's)

The host side sees an ordinary NIC (the DPU's representor / virtual function):
what its stack sends, softdpu reads; what softdpu writes, its stack receives.
The device is IFF_TAP | IFF_NO_PI (plain Ethernet frames), non-blocking; it
disappears when softdpu closes it.  Reading and writing are kernels that call
libc read()/write() in a loop over the batch (no Python per packet); a TAP has
one queue, so tap ports run with one worker.
"""
import ctypes
import fcntl
import os
import struct

import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_IN_PORT, M_LEN, M_START, M_TS, M_WIRE_LEN
from softdpu.errors import SoftdpuError

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

_libc = ctypes.CDLL(None, use_errno=True)
_read = _libc.read
_read.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t]     # (fd, buffer address, count)
_read.restype = ctypes.c_ssize_t
_write = _libc.write
_write.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t]
_write.restype = ctypes.c_ssize_t

# counters (int64[C_COLS])
C_RX, C_RX_BYTES, C_TX, C_TX_BYTES, C_TX_FAILED = range(5)
C_COLS = 5


@njit(cache=False)   # calls libc through ctypes: numba cannot cache a function holding its address
def tap_read(fd, data, meta, row, end, headroom, max_frame, port, now, counters):
    """Frames read from the TAP into batch rows row..end-1 until it has none; -> next free row."""
    room = data.shape[1] - headroom
    ncols = meta.shape[1]
    while row < end:
        n = _read(fd, data[row].ctypes.data + headroom, room)
        if n <= 0:
            break
        for c in range(ncols):
            meta[row, c] = 0
        meta[row, M_START] = headroom
        meta[row, M_WIRE_LEN] = n
        if n > max_frame:
            meta[row, M_DROP] = drops.FRAME_TOO_BIG
        else:
            meta[row, M_LEN] = n
        meta[row, M_TS] = now
        meta[row, M_IN_PORT] = port
        counters[C_RX] += 1
        counters[C_RX_BYTES] += n
        row += 1
    return row


@njit(cache=False)
def tap_write(fd, tx, n_tx, port, data, meta, counters):
    """Write the tx entries going to `port`, one write() each."""
    for j in range(n_tx):
        if tx[j, 1] != port:
            continue
        i = tx[j, 0]
        n = meta[i, M_LEN]
        if _write(fd, data[i].ctypes.data + meta[i, M_START], n) == n:
            counters[C_TX] += 1
            counters[C_TX_BYTES] += n
        else:
            counters[C_TX_FAILED] += 1


class TapPort:
    """A TAP device made for a port (see the module docstring)."""

    def __init__(self, port, max_frame):
        self.port, self.name, self.ofport = port, port.name, port.ofport
        self.ifname = port.options.get("interface", port.name)
        self.mtu = port.options.get("mtu", 1500)
        self.counters = np.zeros(C_COLS, np.int64)
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise SoftdpuError(f"port {self.name}: cannot open /dev/net/tun: {e.strerror}") from None
        try:
            fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", self.ifname.encode(), IFF_TAP | IFF_NO_PI))
            self._configure(port.options)
        except OSError as e:
            self.close()
            raise SoftdpuError(f"port {self.name}: cannot create TAP device {self.ifname}: {e.strerror}") from None
        except Exception:
            self.close()
            raise

    def _configure(self, options):
        from pyroute2 import IPRoute

        settings = {"mtu": self.mtu}
        if "mac" in options:
            settings["address"] = ":".join(f"{(options['mac'] >> (8 * (5 - k))) & 0xFF:02x}" for k in range(6))
        ns = options.get("netns")
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.ifname)[0]
            ipr.link("set", index=idx, **settings)
            if ns is None:
                ipr.link("set", index=idx, state="up")
                return
            if not os.path.exists(f"/run/netns/{ns}"):
                raise SoftdpuError(f"port {self.name}: no network namespace named {ns!r}")
            ipr.link("set", index=idx, net_ns_fd=ns)
        with IPRoute(netns=ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=self.ifname)[0], state="up")

    @property
    def frame_limit(self):
        """Longest untagged frame (ports/mtu.py allows a tagged one 4 bytes more)."""
        return self.mtu + 14

    def fileno(self):
        return self.fd

    def map(self):
        pass

    def warm(self, batch):
        """Compile the read/write kernels now (they cannot be cached), on an empty batch."""
        tap_read(-1, batch.data, batch.meta, 0, 1, batch.headroom, batch.max_frame, 0, 0, self.counters)
        tap_write(-1, batch.tx, 0, 0, batch.data, batch.meta, self.counters)

    def fill(self, batch, row, now):
        return int(tap_read(self.fd, batch.data, batch.meta, row, batch.size, batch.headroom,
                            batch.max_frame, self.ofport, now, self.counters))

    def send(self, batch):
        tap_write(self.fd, batch.tx, batch.n_tx, self.ofport, batch.data, batch.meta, self.counters)

    def counters_dict(self):
        c = self.counters
        return {"tap_rx_packets": int(c[C_RX]), "tap_rx_bytes": int(c[C_RX_BYTES]),
                "tap_tx_packets": int(c[C_TX]), "tap_tx_bytes": int(c[C_TX_BYTES]),
                "tx_failed": int(c[C_TX_FAILED])}

    def close(self):
        if self.fd is not None and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
