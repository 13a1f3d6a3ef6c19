"""The SAs and policies of a pipeline as int64 arrays for the ESP kernels.

    sa       int64[S, S_COLS]   one row per [[esp.sa]] (columns S_*; addresses as
                                (hi, lo) 64-bit halves, IPv4 in lo)
    seqs     int64[S]           out: the last sequence number sent; in: the highest
                                accepted (the replay window's top)
    bitmap   uint64[S, B]       in: the replay window's words (replay.py)
    spi_hash int64[H]           in SAs by SPI: open addressing, linear probing, -1 empty
    addrs    int64[A, 3]        (family, hi, lo): our addresses (the in SAs' local ones)
    pol      int64[P, P_COLS]   the policies in file order (selectors.py)
    counters int64[S + 1, C_DROPS + N_REASONS]  per SA: packets and bytes, then drops
                                by drop code; row S: drops of no SA (unknown SPI)
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit
from softdpu.stages.esp.selectors import (DIR_IN, DIR_OUT, P_COLS, P_DIR, P_DPORT_HI, P_DPORT_LO, P_DST_HI,
                                          P_DST_LO, P_DST_MHI, P_DST_MLO, P_FAMILY, P_PORT, P_PROTO, P_SA,
                                          P_SPORT_HI, P_SPORT_LO, P_SRC_HI, P_SRC_LO, P_SRC_MHI, P_SRC_MLO)

(S_SPI, S_DIR, S_TUNNEL, S_ESN, S_WINDOW, S_NBLOCKS, S_FAMILY, S_LOCAL_HI, S_LOCAL_LO, S_REMOTE_HI,
 S_REMOTE_LO, S_NATT, S_SPORT, S_DPORT, S_TTL, S_SALT, S_POLICIES) = range(17)
S_COLS = 17
C_PACKETS, C_BYTES = 0, 1
C_DROPS = 2
MASK64 = 2**64 - 1


def i64(v):
    """An unsigned 64-bit value as the int64 with the same bits."""
    return int(np.uint64(v & MASK64).view(np.int64))


def halves(addr):
    v = int(addr)
    return i64(v >> 64), i64(v & MASK64)


def _prefix(net):
    """(value hi, lo, mask hi, lo) of an ip_network, IPv4 in the low half; any when None."""
    if net is None:
        return 0, 0, 0, 0
    bits = 32 if net.version == 4 else 128
    mask = ((1 << bits) - 1) ^ ((1 << (bits - net.prefixlen)) - 1)
    v = int(net.network_address)
    return i64(v >> 64), i64(v & MASK64), i64(mask >> 64), i64(mask & MASK64)


@njit(alloc=False)
def spi_slot(spi, mask):
    return ((spi * 2654435761) >> 7) & mask


class SaTable:
    def __init__(self, esp):
        sas = esp.sas
        self.sas = sas
        n = len(sas)
        self.count = n
        self.sa = np.zeros((max(n, 1), S_COLS), np.int64)
        self.seqs = np.zeros(max(n, 1), np.int64)
        blocks = max([s.replay_window // 64 + 1 for s in sas] + [2])
        self.bitmap = np.zeros((max(n, 1), blocks), np.uint64)
        size = 8
        while size < 2 * n:
            size *= 2
        self.spi_hash = np.full(size, -1, np.int64)
        addrs = []
        for k, s in enumerate(sas):
            row = self.sa[k]
            row[S_SPI] = s.spi
            row[S_DIR] = DIR_OUT if s.direction == "out" else DIR_IN
            row[S_TUNNEL] = int(s.mode == "tunnel")
            row[S_ESN] = int(s.esn)
            row[S_WINDOW] = s.replay_window
            row[S_NBLOCKS] = s.replay_window // 64 + 1
            row[S_FAMILY] = s.local.version
            row[S_LOCAL_HI], row[S_LOCAL_LO] = halves(s.local)
            row[S_REMOTE_HI], row[S_REMOTE_LO] = halves(s.remote)
            row[S_NATT] = int(s.natt)
            row[S_SPORT], row[S_DPORT] = s.natt_sport, s.natt_dport
            row[S_TTL] = s.ttl
            row[S_SALT] = int.from_bytes(s.salt, "big")
            if s.direction == "out":
                self.seqs[k] = s.seq
            if s.direction == "in":
                h = int(spi_slot(s.spi, size - 1))
                while self.spi_hash[h] >= 0:
                    h = (h + 1) & (size - 1)
                self.spi_hash[h] = k
                a = (s.local.version, *halves(s.local))
                if a not in addrs:
                    addrs.append(a)
        self.addrs = np.array(addrs or [(0, 0, 0)], np.int64).reshape(-1, 3)
        self.n_addrs = len(addrs)
        index = {s.name: k for k, s in enumerate(sas)}
        self.pol = np.zeros((max(len(esp.policies), 1), P_COLS), np.int64)
        self.n_pol = len(esp.policies)
        self.n_in_pol = 0
        for k, p in enumerate(esp.policies):
            row = self.pol[k]
            t = index[p.sa]
            row[P_SA] = t
            row[P_DIR] = self.sa[t, S_DIR]
            self.n_in_pol += int(row[P_DIR] == DIR_IN)
            self.sa[t, S_POLICIES] += 1
            fam = (p.src or p.dst).version if (p.src or p.dst) else 0
            row[P_FAMILY] = fam
            row[P_SRC_HI], row[P_SRC_LO], row[P_SRC_MHI], row[P_SRC_MLO] = _prefix(p.src)
            row[P_DST_HI], row[P_DST_LO], row[P_DST_MHI], row[P_DST_MLO] = _prefix(p.dst)
            row[P_PROTO] = p.proto
            row[P_SPORT_LO], row[P_SPORT_HI] = p.sport
            row[P_DPORT_LO], row[P_DPORT_HI] = p.dport
            row[P_PORT] = p.port
        self.counters = np.zeros((max(n, 1) + 1, C_DROPS + drops.N_REASONS), np.int64)

    def __len__(self):
        return self.count
