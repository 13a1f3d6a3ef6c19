"""The connection table: open addressing over numpy arrays, both directions in one entry.

Five arrays hold a table (allocated once by `CtTable`, passed to every kernel):

  idx   int64[cap]         the hash index, cap = a power of two >= 2 * max_entries
                           (load <= 0.5).  0 = empty slot, else
                           (hash >> 32) << 32 | (entry + 1): a 32-bit tag of the
                           key's hash (compared before the key) and the entry
  keys  uint64[M, 6]       the canonical key of entry e (M = max_entries):
                             0,1  endpoint A address (IPv6 high, low; IPv4: 0, addr)
                             2,3  endpoint B address
                             4    A port << 32 | B port   (see "ports" below)
                             5    K_USED | zone << 32 | is_ipv6 << 8 | ip protocol
                           A is the smaller of the two (address, port) endpoints,
                           so both directions of a connection make the same key
  ent   int64[M, E_COLS]   per entry (the E_* columns below): expiry, direction,
                           protocol state, packets/bytes per direction, mark,
                           label, TCP peers
  free  int64[M]           a stack of free entry numbers (st[S_NFREE] deep)
  st    int64[64]          counters (C_*), the sweep cursor, and configuration:
                           timeouts in ns per timeout class (S_TMO + TM_*),
                           S_CHECK_CSUM, S_MAX_ENTRIES

Ports: TCP/UDP/SCTP ports; for ICMP/ICMPv6 echo (and ICMP timestamp /
information) an endpoint's "port" is type << 16 | id, the type being the one
that endpoint sends (request or reply), as OVS's conn_key (icmp_id, icmp_type
per endpoint); 0 for other protocols.

Deletion is backward-shift (linear probing stays gap-free; no tombstones).
Expiry (ns on the caller's clock: capture timestamps in pcap mode): an entry
whose expiry is <= now is dead (OVS: now >= expiration).  Dead entries are
reclaimed three ways: (1) lazily, when a lookup probes its own key; (2) by
`ct_sweep`, which checks a bounded number of index slots from a cursor per
call (the stage calls it once per batch); (3) when the table is full and a
new connection must be created, a sweep of up to FULL_SWEEP slots first.
If it is still full the new connection is refused (C_REFUSED_FULL; the
caller counts a drop): live entries are never evicted.  Because dead entries
are invisible to lookups, the only observable effect of sweep timing is at
the capacity boundary.

Memory: 8 * (6 + E_COLS) = 160 bytes per entry + 16 bytes per entry of index:
1M connections = 176 MB.
"""
import numpy as np

from softdpu._jit import njit

K_USED = np.uint64(1 << 63)

# ent columns
E_EXP = 0           # expiry, ns
E_INFO = 1          # bit 0: the original direction's source is endpoint A;
#                     bits 8-15 protocol state (OTHERS_* / ICMPS_*); bits 16-23 timeout class TM_*
E_PKTS_O = 2        # packets, original direction
E_BYTES_O = 3       # bytes (IP length), original direction
E_PKTS_R = 4        # reply direction
E_BYTES_R = 5
E_MARK = 6          # ct_mark (32 bits)
E_LABEL_HI = 7      # ct_label, high 64 bits (as int64 bits)
E_LABEL_LO = 8
E_CREATED = 9       # ns
E_TCP = 10          # TCP peer p (0 = original sender, 1 = reply sender):
#                     E_TCP + 2p     seqlo << 32 | seqhi   (OVS tcp_peer; ~ Linux td_end, td_maxend)
#                     E_TCP + 2p + 1 max_win | wscale << 16 | state << 24   (~ td_maxwin, td_scale)
E_COLS = 14

# st: counters
C_ENTRIES = 0       # entries allocated (live or dead but not yet reclaimed)
C_CREATED = 1
C_EXPIRED = 2       # dead entries reclaimed
C_REFUSED_FULL = 3  # new connections refused: table full
C_INV_MALFORMED = 4  # +inv: not IP, truncated, bad lengths, port 0, unsupported ICMP type
C_INV_FRAG = 5      # +inv: an IP fragment (no reassembly)
C_INV_CSUM = 6      # +inv: bad IPv4 header or L4 checksum
C_INV_NEW = 7       # +inv: no entry and the packet may not start one (SYN-ACK, echo reply, bad flags)
C_INV_TCP = 8       # +inv: TCP flags or sequence/ack out of window
C_INV_RELATED = 9   # +inv: ICMP error about no tracked connection
C_REOPENED = 10     # a SYN reopened a connection closed in both directions (TIME_WAIT)
C_FORCED = 11       # ct(force) ended a connection seen in the reply direction
C_LOOKUPS = 12      # ct_execute calls
S_CURSOR = 13       # ct_sweep's next index slot
S_NFREE = 14        # depth of the free stack
S_CHECK_CSUM = 15   # 1: verify checksums as OVS (IPv4 header, TCP/UDP/ICMP/ICMPv6)
S_MAX_ENTRIES = 16
S_TMO = 32          # + TM_*: timeout of each class, ns
ST_LEN = 64
N_COUNTERS = 13

FULL_SWEEP = 4096   # index slots swept before refusing a new connection
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
U32 = np.uint64(32)
M32 = np.uint64(0xFFFFFFFF)


@njit(alloc=False, inline=True)
def _mix(h, w):
    h = (h ^ w) * GOLDEN
    return h ^ (h >> np.uint64(29))


@njit(alloc=False)
def key_hash(k0, k1, k2, k3, k4, k5):
    """64-bit hash of a canonical key (k5 with or without K_USED: the bit is masked)."""
    h = _mix(np.uint64(0x243F6A8885A308D3), k5 & ~K_USED)
    h = _mix(h, k0)
    h = _mix(h, k1)
    h = _mix(h, k2)
    h = _mix(h, k3)
    h = _mix(h, k4)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@njit(alloc=False, inline=True)
def _key_eq(keys, e, k0, k1, k2, k3, k4, k5):
    u = np.uint64(e)
    return (keys[u, 5] == (k5 | K_USED) and keys[u, 4] == k4 and keys[u, 1] == k1
            and keys[u, 3] == k3 and keys[u, 0] == k0 and keys[u, 2] == k2)


@njit(alloc=False)
def ct_find(idx, keys, k0, k1, k2, k3, k4, k5, h):
    """(slot, entry) holding the key, or (-1, -1)."""
    mask = np.uint64(idx.shape[0] - 1)
    s = h & mask
    tag = np.int64(h >> U32)
    for _ in range(idx.shape[0]):
        v = idx[s]
        if v == 0:
            return -1, -1
        if (v >> 32) & 0xFFFFFFFF == tag:
            e = (v & 0xFFFFFFFF) - 1
            if _key_eq(keys, e, k0, k1, k2, k3, k4, k5):
                return np.int64(s), e
        s = (s + np.uint64(1)) & mask
    return -1, -1


@njit(alloc=False)
def _home(keys, e, mask):
    u = np.uint64(e)
    return key_hash(keys[u, 0], keys[u, 1], keys[u, 2], keys[u, 3], keys[u, 4], keys[u, 5]) & mask


@njit(alloc=False)
def _remove_slot(idx, keys, s):
    """Empty index slot s with backward-shift deletion."""
    mask = np.uint64(idx.shape[0] - 1)
    s = np.uint64(s)
    j = s
    while True:
        idx[s] = 0
        while True:
            j = (j + np.uint64(1)) & mask
            v = idx[j]
            if v == 0:
                return
            home = _home(keys, (v & 0xFFFFFFFF) - 1, mask)
            # the entry at j may move to s iff s lies cyclically in [home, j)
            if (j > s and (home <= s or home > j)) or (j < s and home <= s and home > j):
                break
        idx[s] = idx[j]
        s = j


@njit(alloc=False)
def ct_delete_at(idx, keys, free, st, s, e):
    """Delete entry e, whose index slot is s: free the entry and the slot."""
    _remove_slot(idx, keys, s)
    keys[np.uint64(e), 5] = 0
    free[np.uint64(st[S_NFREE])] = e
    st[S_NFREE] += 1
    st[C_ENTRIES] -= 1


@njit(alloc=False)
def ct_delete(idx, keys, free, st, e):
    """Delete entry e (finding its index slot from its key)."""
    u = np.uint64(e)
    s, f = ct_find(idx, keys, keys[u, 0], keys[u, 1], keys[u, 2], keys[u, 3], keys[u, 4],
                   keys[u, 5] & ~K_USED,
                   key_hash(keys[u, 0], keys[u, 1], keys[u, 2], keys[u, 3], keys[u, 4], keys[u, 5]))
    if f == e:
        ct_delete_at(idx, keys, free, st, s, e)


@njit(alloc=False)
def ct_sweep(idx, keys, ent, free, st, now, budget):
    """Reclaim dead entries among the next `budget` index slots (from the cursor).  -> reclaimed"""
    cap = idx.shape[0]
    s = st[S_CURSOR] & (cap - 1)
    n = 0
    done = 0
    while done < budget:
        v = idx[np.uint64(s)]
        if v != 0:
            e = (v & 0xFFFFFFFF) - 1
            if ent[np.uint64(e), E_EXP] <= now:
                ct_delete_at(idx, keys, free, st, s, e)
                st[C_EXPIRED] += 1
                n += 1
                done += 1
                continue        # slot s now holds a shifted entry (or is empty): look again
        s = (s + 1) & (cap - 1)
        done += 1
    st[S_CURSOR] = s
    return n


@njit(alloc=False)
def ct_insert(idx, keys, ent, free, st, k0, k1, k2, k3, k4, k5, h, now):
    """A new entry for a key known to be absent; -1 when the table is full (counted).

    The entry's ent row is zeroed but for E_CREATED; the caller fills the rest."""
    if st[S_NFREE] == 0:
        ct_sweep(idx, keys, ent, free, st, now, FULL_SWEEP)
        if st[S_NFREE] == 0:
            st[C_REFUSED_FULL] += 1
            return -1
    st[S_NFREE] -= 1
    e = free[np.uint64(st[S_NFREE])]
    u = np.uint64(e)
    keys[u, 0] = k0
    keys[u, 1] = k1
    keys[u, 2] = k2
    keys[u, 3] = k3
    keys[u, 4] = k4
    keys[u, 5] = k5 | K_USED
    for c in range(E_COLS):
        ent[u, c] = 0
    ent[u, E_CREATED] = now
    mask = np.uint64(idx.shape[0] - 1)
    s = h & mask
    while idx[s] != 0:
        s = (s + np.uint64(1)) & mask
    idx[s] = (np.int64(h >> U32) << 32) | (e + 1)
    st[C_ENTRIES] += 1
    st[C_CREATED] += 1
    return e


class CtTable:
    """One connection table's arrays (see the module docstring) and its configuration."""

    def __init__(self, max_entries=1_000_000, timeouts=None, check_csum=True):
        from softdpu.stages.conntrack.timeouts import CtTimeouts, N_TM
        if max_entries < 1:
            raise ValueError(f"conntrack max_entries must be at least 1, got {max_entries}")
        cap = 2
        while cap < 2 * max_entries:
            cap *= 2
        self.max_entries = max_entries
        self.idx = np.zeros(cap, np.int64)
        self.keys = np.zeros((max_entries, 6), np.uint64)
        self.ent = np.zeros((max_entries, E_COLS), np.int64)
        self.free = np.arange(max_entries - 1, -1, -1, dtype=np.int64)
        self.st = np.zeros(ST_LEN, np.int64)
        self.st[S_NFREE] = max_entries
        self.st[S_MAX_ENTRIES] = max_entries
        self.st[S_CHECK_CSUM] = int(bool(check_csum))
        self.timeouts = timeouts or CtTimeouts()
        self.st[S_TMO:S_TMO + N_TM] = self.timeouts.as_ns()

    @property
    def arrays(self):
        """(idx, keys, ent, free, st): the leading arguments of every kernel."""
        return self.idx, self.keys, self.ent, self.free, self.st

    def counters(self):
        """{name: value} of the C_* counters."""
        names = ("entries", "created", "expired", "refused_full", "inv_malformed", "inv_frag",
                 "inv_csum", "inv_new", "inv_tcp", "inv_related", "reopened", "forced", "lookups")
        return {n: int(self.st[i]) for i, n in enumerate(names)}

    def live(self, now):
        """Entry numbers of the live (unexpired) connections."""
        used = (self.keys[:, 5] & K_USED) != 0
        return np.nonzero(used & (self.ent[:, E_EXP] > now))[0]
