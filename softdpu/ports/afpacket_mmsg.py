"""Batched AF_PACKET transmit with sendmmsg(2): one system call per batch, frames sent from
their batch slots (no copy in user space).

  mmsghdr (64 bytes, x86-64 / aarch64)          iovec (16 bytes)
  ┌───────────────────────────────────┐         ┌──────────────────────┐
  │ 0 msg_name       (NULL: the bound │         │ 0 iov_base  (the     │
  │   interface)                      │         │   frame in its slot) │
  │ 8 msg_namelen, 16 msg_iov ───────────────►  │ 8 iov_len            │
  │ 24 msg_iovlen = 1                 │         └──────────────────────┘
  │ 32 msg_control, 40 controllen = 0 │
  │ 48 msg_flags, 56 msg_len (set by  │
  │   the kernel: bytes sent)         │
  └───────────────────────────────────┘

Why not only the TX ring: a TPACKET TX frame becomes an skb whose payload points into the
ring's pages; when it crosses into another namespace (a veth), the kernel must copy those
pages into fresh ones (skb_copy_ubufs, a page allocation per packet).  sendmsg copies a
frame shorter than a page into the skb's linear part at once, which costs less there.
mmsg_fill (a kernel) writes the headers for the tx entries of one port; Python makes one
ctypes call per batch (per 1024 frames).
"""
import ctypes
import os

import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_LEN, M_START

CHUNK = 1024                 # messages per sendmmsg call
_libc = ctypes.CDLL(None, use_errno=True)
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
_sendmmsg.restype = ctypes.c_int

# state (int64[M_COLS])
M_J, M_PACKETS, M_BYTES, M_FAILED = range(4)
M_COLS = 4


@njit
def mmsg_fill(tx, n_tx, port, meta, data_addr, slot, iov, iov_addr, hdrs, st):
    """Headers for the tx entries st[M_J].. going to `port`, at most hdrs.shape[0]; -> how many.

    data_addr: the address of batch.data (rows of `slot` bytes); iov_addr: of iov."""
    j = np.uint64(st[M_J])
    n_tx = np.uint64(n_tx)
    cap = np.uint64(hdrs.shape[0])
    k = np.uint64(0)
    while j < n_tx and k < cap:
        if tx[j, 1] == port:
            i = np.uint64(tx[j, 0])
            iov[k, 0] = np.uint64(data_addr) + i * np.uint64(slot) + np.uint64(meta[i, M_START])
            iov[k, 1] = np.uint64(meta[i, M_LEN])
            for c in range(8):
                hdrs[k, c] = 0
            hdrs[k, 2] = np.uint64(iov_addr) + k * np.uint64(16)
            hdrs[k, 3] = 1
            k += np.uint64(1)
        j += np.uint64(1)
    st[M_J] = j
    return k


class MmsgSender:
    """sendmmsg transmit for one socket (bound to its interface)."""

    def __init__(self, sock):
        self.sock = sock
        self.iov = np.zeros((CHUNK, 2), np.uint64)
        self.hdrs = np.zeros((CHUNK, 8), np.uint64)
        self.st = np.zeros(M_COLS, np.int64)
        self.errors = {}
        self._batch = self._addrs = None

    def warm(self, batch):
        mmsg_fill(batch.tx, 0, 0, batch.meta, 0, batch.data.shape[1], self.iov, 0, self.hdrs, self.st)

    def send(self, batch, port):
        st = self.st
        st[M_J] = 0
        if self._batch is not batch:          # addresses looked up once per batch object
            self._batch = batch
            self._addrs = (batch.data.ctypes.data, batch.data.shape[1], self.iov.ctypes.data, self.hdrs.ctypes.data)
        data_addr, slot, iov_addr, hdr_addr = self._addrs
        fd = self.sock.fileno()
        while True:
            k = int(mmsg_fill(batch.tx, batch.n_tx, port, batch.meta, data_addr, slot, self.iov, iov_addr,
                              self.hdrs, st))
            if k == 0:
                return
            done = 0
            for _ in range(k + 1):            # bounded: each round sends or skips at least one
                if done >= k:
                    break
                sent = _sendmmsg(fd, hdr_addr + 64 * done, k - done, 0)
                if sent > 0:
                    st[M_PACKETS] += sent
                    st[M_BYTES] += int(self.iov[done: done + sent, 1].sum())
                    done += sent
                else:                          # the first message failed: count it, go on
                    err = ctypes.get_errno()
                    self.errors[os.strerror(err)] = self.errors.get(os.strerror(err), 0) + 1
                    st[M_FAILED] += 1
                    done += 1
