"""Warm the connection table for a batch before the flow tables run (a prefetch, no state).

    ct_prefetch(idx, keys, ent, data, meta, n, zone)   # -> a checksum of what it read

The action interpreter calls ct_execute one packet at a time, each lookup a
chain of dependent loads (index slot -> key row -> entry row) that misses the
caches when the table is large (~100 ns each from DRAM): one packet's misses
cannot overlap.  This kernel walks the batch in two passes of prefetch instructions
(softdpu/prefetch.py: they start a load and do not wait for it) -- (1) the
canonical key's hash of every TCP/UDP row and a prefetch of its home index
slot, (2) the entry that slot names (by then the slots have arrived, their
misses overlapped) and prefetches of its key row and ent row -- so the
misses of the whole batch overlap, and the lines are in L2 when ct() comes
(256 packets x ~5 lines = 80 kB).

It is a hint only: it writes nothing but its scratch, reads only what ct() will read, and a wrong guess
(another zone, a rewritten packet, ICMP, a probe past the home slot) just
costs the loads.  Zone: the caller's guess (the pipeline's only constant
ct zone, else 0).  The key is built as execute.ct_execute builds it.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.batch import M_DROP, M_FLAGS, M_L3, M_L4, M_PARSE_ERR
from softdpu.headers.bytes import be16, be32, be64
from softdpu.prefetch import prefetch1, prefetch2
from softdpu.stages.conntrack.table import E_COLS, key_hash
from softdpu.stages.parse import F_FRAG, F_IPV4, F_IPV6, F_TCP, F_UDP

U32 = np.uint64(32)


@njit(alloc=False)
def ct_prefetch(idx, keys, ent, data, meta, n, zone, slots):
    """Prefetch the index slots, key rows and entry rows the batch's ct() lookups will read.
    slots: int64[>= n] scratch."""
    mask = np.uint64(idx.shape[0] - 1)
    zw = np.uint64(zone & 0xFFFF) << U32
    for i in range(n):
        r = np.uint64(i)
        slots[i] = -1
        f = meta[r, M_FLAGS]
        if meta[r, M_DROP] != 0 or meta[r, M_PARSE_ERR] != 0 or (f & F_FRAG) or not (f & (F_TCP | F_UDP)):
            continue
        l3 = meta[r, M_L3]
        l4 = meta[r, M_L4]
        if l3 < 0 or l4 < 0:
            continue
        if f & F_IPV6:
            s_hi = be64(data, r, l3 + 8)
            s_lo = be64(data, r, l3 + 16)
            d_hi = be64(data, r, l3 + 24)
            d_lo = be64(data, r, l3 + 32)
            v6 = np.uint64(1)
        elif f & F_IPV4:
            s_hi = np.uint64(0)
            d_hi = np.uint64(0)
            s_lo = np.uint64(be32(data, r, l3 + 12))
            d_lo = np.uint64(be32(data, r, l3 + 16))
            v6 = np.uint64(0)
        else:
            continue
        proto = np.uint64(6 if f & F_TCP else 17)
        sp = be16(data, r, l4)
        dp = be16(data, r, l4 + 2)
        if s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sp <= dp))):
            h = key_hash(s_hi, s_lo, d_hi, d_lo, (np.uint64(sp) << U32) | np.uint64(dp),
                         zw | (v6 << np.uint64(8)) | proto)
        else:
            h = key_hash(d_hi, d_lo, s_hi, s_lo, (np.uint64(dp) << U32) | np.uint64(sp),
                         zw | (v6 << np.uint64(8)) | proto)
        s = h & mask
        slots[i] = np.int64(s)
        prefetch1(idx, s)
    # the entries the home slots name (the usual case: load <= 0.5, most keys at home); a row
    # of keys (48 bytes) spans at most 2 lines, one of ent (112 bytes) at most 3
    for i in range(n):
        if slots[i] >= 0:
            v = idx[np.uint64(slots[i])]
            if v != 0:
                e = np.uint64((v & 0xFFFFFFFF) - 1)
                prefetch2(keys, e, 0)
                prefetch2(keys, e, 5)
                prefetch2(ent, e, 0)
                prefetch2(ent, e, 7)
                prefetch2(ent, e, E_COLS - 1)
