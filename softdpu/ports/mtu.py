"""The live ports' MTU: tx entries longer than their port allows are taken out before the stats.

A packet none of whose copies is left gets the port_mtu drop; a copy cut while
another copy of the packet leaves is counted in the port's `mtu_cut` counter.
The limit is a frame length per OpenFlow port number (-1: none), set by the
live runner from each interface's MTU (afpacket.py, tap.py): MTU + 14, and 4 more
for a tagged frame (what the kernel's AF_PACKET send accepts).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.batch import M_DROP, M_LEN, M_ORIGIN, M_START


@njit
def mtu_filter(tx, n_tx, data, meta, n, limit, sent):
    """Take out the tx entries longer than their port's limit (limit[ofport] bytes of frame,
    -1: none; 4 more for a frame with an 802.1Q / 802.1ad tag, as the kernel allows);
    a packet none of whose entries is left gets the port_mtu drop.
    -> (entries kept, copies taken out)."""
    for i in range(n):
        sent[i] = 0
    k = 0
    cut = 0
    for j in range(n_tx):
        i = tx[j, 0]
        lim = limit[tx[j, 1]]
        origin = i
        if i >= n:
            origin = meta[i, M_ORIGIN]          # a clone row: its packet
        length = meta[i, M_LEN]
        if lim >= 0 and length > lim and length >= 14:
            s = meta[i, M_START]
            tpid = (np.int64(data[i, s + 12]) << 8) | np.int64(data[i, s + 13])
            if tpid == 0x8100 or tpid == 0x88A8:
                lim += 4
        if lim >= 0 and length > lim:
            cut += 1
            if 0 <= origin < n and sent[origin] == 0:
                sent[origin] = 2
            continue
        if 0 <= origin < n:
            sent[origin] = 1
        if k != j:
            for c in range(tx.shape[1]):
                tx[k, c] = tx[j, c]
        k += 1
    for i in range(n):
        if sent[i] == 2 and meta[i, M_DROP] == 0:
            meta[i, M_DROP] = drops.PORT_MTU
    return k, cut


class PortMtu:
    """The step of a Dpu that applies the limits: limits {ofport: longest frame}."""

    def __init__(self, limits, batch_size):
        self.limit = np.full(65536, -1, np.int64)
        for ofport, n in limits.items():
            self.limit[ofport] = n
        self.sent = np.zeros(batch_size, np.int64)
        self.cut = 0

    def run(self, batch):
        n_tx, cut = mtu_filter(batch.tx, batch.n_tx, batch.data, batch.meta, batch.n, self.limit, self.sent)
        batch.n_tx = n_tx
        self.cut += cut
