"""Building the tuple-space classifier: one hash subtable per distinct mask, as arrays.

As Open vSwitch's classifier (lib/classifier.c; dpcls in its userspace
datapath): the rules of a table are grouped by their mask, and each group is
an open-addressing hash table keyed by `key & mask`.  A lookup probes each
subtable once instead of testing every rule.  This module builds the arrays
in Python from the compiled (mask, value) rows; softdpu.stages.flows.classify
holds the kernels that read them.

Which rule wins.  Rules arrive in compiled order (table, priority descending,
file order), so within a table a lower rule index is always at least as good:
the answer is the LOWEST index among the rules that match.  That is the
highest priority and, among equal priorities (overlapping rules in different
masks), the rule first in the .flows file -- what the linear scan returns.

  * rules with the same mask and value: the subtable keeps the first (lowest
    index); the others can never win
  * each subtable records `min_rule`, the lowest index it holds (its highest
    priority); a table's subtables are stored in min_rule order, and a
    lookup stops at the first one whose min_rule is above the best match so
    far (it holds only lower priorities, or equal ones later in the file)

Layout: three arrays, all uint64 so kernels index without wraparound code.

  sub    uint64[N_TABLES + S, SUB_COLS], 64-byte rows
         rows 0..N_TABLES-1, the table directory: row t holds in T_FIRST,
         T_END the rows [first, end) of table t's subtables (empty: equal),
         and in T_EMC_LO, T_EMC_HI the rows [lo, hi) of `words` that key the
         flow cache for table t: every key word some rule of t matches on,
         with the union of the rules' masks (the rule a key gets depends on
         no other bit, so the cache keeps only these: an entry of a table
         matching on 3 words is 3 words, not the whole key)
         rows N_TABLES.., one per subtable:
           S_MIN_RULE   lowest rule index held (its best rule)
           S_WORD_LO/HI rows [lo, hi) of `words`: the key words its mask uses
           S_HASH_HI    rows [lo, hash_hi) of those are hashed (see below)
           S_BASE       offset of its tags in `slots`
           S_BMASK      buckets - 1 (a power of two minus one)
           S_KEYS       offset of its entries in `slots`
  words  uint64[NW, 4]  per subtable, each key word whose mask is not zero:
                        (word index, mask, MIX_LO[word], MIX_HI[word]); then
                        per table its flow cache words (word index, union
                        mask, MIX_LO[j], MIX_HI[j] for the j-th of them)
  slots  uint64[P]      per subtable, BUCKET * buckets tags, then its entries:
                        tag   ((hash >> 32) | 1) << 32 | (entry + 1); 0 = empty
                        entry [rule, key[w] & m for each word used]
                        (1 + n_words uint64 each, densely)

Hashing: open addressing over buckets of BUCKET = 4 tags (32 bytes,
aligned), capacity >= SLOTS_PER_ENTRY (4) x entries, so load <= 0.25.  The
hash picks the home bucket (h & bmask); an entry takes the first free tag
there, or in the next buckets if it is full.  A lookup compares the home
bucket's four tags at once; with no tag alike and room in the bucket it is
a miss after one 32-byte read, and a tag alike sends it to the entry's key
words (a 31-bit tag matches a wrong key about once in 2**31 probes).

The hash of a masked key: for each hashed word, x = key[w] & m in 32-bit
halves, acc += ((lo + MIX_LO[w]) mod 2**32) * ((hi + MIX_HI[w]) mod 2**32)
(the NH hash of UMAC: every bit of a word reaches the high bits of the sum;
a plain sum of x * K keeps a difference in high bits in the high bits), then
acc *= FMIX_1, h = acc ^ (acc >> 32).  `subtable_hash` here (numpy) and
`classify._sub_hash` (numba) compute the same value; a test checks it.

Hashing fewer words.  The hash is half the cost of a probe, and often one
word tells a subtable's entries apart (an ACL's addresses in w3, while w0
holds dl_type, the same for all).  So the build sorts a subtable's words by
how many distinct values its entries have there, and hashes the shortest
prefix of that order (at least one word) under which its entries still
differ; the other words are only compared.  A key hashed like an entry but
different in the other words fails the comparison: a miss, as it must be.
"""
import numpy as np

from softdpu.key import KEY_WORDS

# table directory columns
T_FIRST = 0
T_END = 1
T_EMC_LO = 2
T_EMC_HI = 3
# subtable columns
S_MIN_RULE = 0
S_WORD_LO = 1
S_WORD_HI = 2
S_BASE = 3
S_BMASK = 4
S_KEYS = 5
S_HASH_HI = 6
SUB_COLS = 8            # one spare: a row is one 64-byte cache line
BUCKET = 4
SLOTS_PER_ENTRY = 4     # capacity >= 4 x entries: load <= 0.25, ~1 % full home buckets

NO_RULE = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # "no match" inside kernels


def _splitmix64(n, seed):
    out, x = [], seed
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFF_FFFF_FFFF_FFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFF_FFFF_FFFF_FFFF
        out.append((z ^ (z >> 31)) | 1)   # odd: multiplication is a bijection
    return out


# Two 32-bit hash keys per key word (NH), then an odd multiplier for the table id (flow cache).
_CONSTS = _splitmix64(KEY_WORDS + 1, seed=0x5D0F_D9B0)
MIX_LO = np.array([c & 0xFFFF_FFFF for c in _CONSTS[:KEY_WORDS]], np.uint64)
MIX_HI = np.array([c >> 32 for c in _CONSTS[:KEY_WORDS]], np.uint64)
MIX_TABLE = np.uint64(_CONSTS[KEY_WORDS])
LOW32 = np.uint64(0xFFFF_FFFF)
FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)


def subtable_hash(masked, used):
    """Hashes of rows `masked` (uint64[n, len(used)]: key words already masked) over words `used`."""
    with np.errstate(over="ignore"):
        lo = ((masked & LOW32) + MIX_LO[used]) & LOW32
        hi = ((masked >> np.uint64(32)) + MIX_HI[used]) & LOW32
        acc = (lo * hi).sum(axis=1, dtype=np.uint64) * FMIX_1
        return acc ^ (acc >> np.uint64(32))


def aligned_zeros(n):
    """uint64[n] zeros starting on a 64-byte boundary (whole buckets in one cache line)."""
    raw = np.zeros(n + 8, np.uint64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip: skip + n]


def _next_pow2(n):
    c = 1
    while c < n:
        c <<= 1
    return c


def build(mask, value, table_bounds, slots_per_entry=SLOTS_PER_ENTRY):
    """(sub, words, slots) for compiled rows mask/value (uint64[R, KEY_WORDS]).

    table_bounds[t] = [lo, hi) rows of table t, rows in compiled order.
    slots_per_entry (>= 2, so a probe always ends at a free tag) sets the
    load; tests lower it to exercise full buckets.
    """
    if slots_per_entry < 2:
        raise ValueError("slots_per_entry must be at least 2 (load <= 0.5)")
    n_tables = table_bounds.shape[0]
    subs = []      # (min_rule, used word indices, mask words, [(rule, masked value row)])
    directory = np.zeros((n_tables, 2), np.uint64)
    for t in range(n_tables):
        lo, hi = int(table_bounds[t, 0]), int(table_bounds[t, 1])
        first = n_tables + len(subs)
        groups = {}  # mask bytes -> index into subs; insertion order = min rule order
        for r in range(lo, hi):
            m = mask[r]
            k = m.tobytes()
            g = groups.get(k)
            if g is None:
                g = groups[k] = len(subs)
                used = np.flatnonzero(m)
                subs.append((r, used, m[used], {}))
            _, used, mw, entries = subs[g]
            v = value[r, used] & mw
            entries.setdefault(v.tobytes(), (r, v))   # the first (best) rule per value
        directory[t] = (first, n_tables + len(subs))

    emc = []       # per table: (used word indices, union mask words)
    for t in range(n_tables):
        lo, hi = int(table_bounds[t, 0]), int(table_bounds[t, 1])
        union = np.bitwise_or.reduce(mask[lo:hi], axis=0) if hi > lo else np.zeros(mask.shape[1], np.uint64)
        used = np.flatnonzero(union)
        emc.append((used, union[used]))
    n_words = sum(len(s[1]) for s in subs)
    n_emc = sum(len(u) for u, _ in emc)
    sub = aligned_zeros((n_tables + len(subs)) * SUB_COLS).reshape(-1, SUB_COLS)
    sub[:n_tables, :2] = directory
    words = np.zeros((max(n_words + n_emc, 1), 4), np.uint64)
    caps = [BUCKET * _next_pow2(-(-slots_per_entry * len(s[3]) // BUCKET)) for s in subs]
    slots = aligned_zeros(max(sum(c + len(s[3]) * (1 + len(s[1])) for c, s in zip(caps, subs)), 1))
    w_at = 0
    base = 0
    for j, ((min_rule, used, mw, entries), cap) in enumerate(zip(subs, caps)):
        nw = len(used)
        rules = np.array([r for r, _ in entries.values()], np.uint64)
        masked = np.array([v for _, v in entries.values()], np.uint64).reshape(len(rules), nw)
        order, n_hashed = _hash_order(masked)
        used, mw, masked = used[order], mw[order], masked[:, order]
        keys = base + cap
        n_buckets = cap // BUCKET
        sub[n_tables + j, :7] = (min_rule, w_at, w_at + nw, base, n_buckets - 1, keys, w_at + n_hashed)
        words[w_at: w_at + nw] = np.stack([used.astype(np.uint64), mw, MIX_LO[used], MIX_HI[used]], axis=1)
        w_at += nw
        hashes = subtable_hash(masked[:, :n_hashed], used[:n_hashed])
        entry = np.concatenate([rules[:, None], masked], axis=1)
        slots[keys: keys + entry.size] = entry.ravel()
        fill = [0] * n_buckets
        for e, h in enumerate(hashes.tolist()):
            b = h & (n_buckets - 1)
            while fill[b] == BUCKET:
                b = (b + 1) & (n_buckets - 1)
            slots[base + b * BUCKET + fill[b]] = (((h >> 32) | 1) << 32) | (e + 1)
            fill[b] += 1
        base = keys + entry.size
    for t, (used, union) in enumerate(emc):
        j = np.arange(len(used))
        sub[t, T_EMC_LO:T_EMC_HI + 1] = (w_at, w_at + len(used))
        words[w_at: w_at + len(used)] = np.stack([used.astype(np.uint64), union, MIX_LO[j], MIX_HI[j]], axis=1)
        w_at += len(used)
    return sub, words, slots


def emc_words(sub, n_tables):
    """The most key words any of the n_tables tables' flow cache entries hold."""
    return int((sub[:n_tables, T_EMC_HI] - sub[:n_tables, T_EMC_LO]).max()) if n_tables else 0


def _hash_order(masked):
    """(column order, how many to hash): most distinct columns first, the shortest prefix
    (>= 1 column) under which the rows stay distinct."""
    n, nw = masked.shape
    if nw == 0:
        return np.arange(0), 0
    distinct = [len(np.unique(masked[:, c])) for c in range(nw)]
    order = np.argsort([-d for d in distinct], kind="stable")
    for k in range(1, nw):
        if len(np.unique(masked[:, order[:k]], axis=0)) == n:
            return order, k
    return order, nw
