"""Rule lookup: an exact-match flow cache, then tuple-space search (as Open vSwitch).

    r = lookup(key, i, table, sub, words, slots, cache, gen)

returns the index (in compiled order) of the rule of `table` that key row i
matches, or -1.  The answer is always the one a linear scan of the table's
rows in compiled order gives (`lookup_linear`, kept as the reference): the
highest priority and, among equal priorities, the rule first in the .flows
file (the lowest rule index), whichever subtables the candidates are in.

1. Flow cache (layout in flow_cache.py), for tables of at least
   MIN_SUBTABLES subtables (below that the search is cheaper than the
   cache: ~12 ns for a hit, ~5 ns per subtable probed): hash the table's
   cache words of the key row (the words its rules match on, masked by the
   union of their masks: tuple_space.py T_EMC_LO/HI) and the table id (NH,
   murmur3's finalizer), look at the two ways of the bucket; an entry of
   the current generation with the same hash, table and words is the
   answer, a remembered miss included.
2. Otherwise tuple-space search (layout in tuple_space.py): the table's
   subtables in order of their best rule; for each, hash key & mask over
   its hashed words, compare the home bucket's four tags, and on a tag alike
   the entry's masked words.  Stop at the first subtable whose best rule is
   above the best match so far.  The answer, hit or miss, goes in the cache.

Speed (bench/classifier_bench.py, 10k rules in 50 masks): every helper is
`njit(alloc=False, inline=True)`, and so must be every kernel that calls
`lookup` (`njit(alloc=False)`): inlined into a kernel compiled with numba's
reference counting, the array arguments are incref'd and decref'd (atomic
operations) around each subtable probe, and the search ran 5x slower.  All
indices are uint64 (no wraparound code), and every constant mixed with a
uint64 is a uint64 (numba turns uint64 op int64 into float64).  Key
comparisons OR the differences of all words instead of stopping at the
first that differs: branch-free and vectorized, 4x faster on cache hits.
"""
import numpy as np

from softdpu.key import U32
from softdpu._jit import njit
from softdpu.stages.flows.flow_cache import C_GEN, C_HASH, C_KEY, C_RULE, C_TABLE, MIN_SUBTABLES
from softdpu.stages.flows.tuple_space import (BUCKET, FMIX_1, FMIX_2, LOW32, MIX_TABLE, NO_RULE,
                                              S_BASE, S_BMASK, S_HASH_HI, S_KEYS, S_MIN_RULE,
                                              S_WORD_HI, S_WORD_LO, T_EMC_HI, T_EMC_LO, T_END, T_FIRST)

U0 = np.uint64(0)
U1 = np.uint64(1)
U33 = np.uint64(33)
UC_KEY = np.uint64(C_KEY)
UBUCKET = np.uint64(BUCKET)
U2 = np.uint64(2)
U3 = np.uint64(3)
CACHE_MIN = np.uint64(MIN_SUBTABLES)
SLOW = NO_RULE - U1     # _probe's "take the slow path" (no rule index gets near it)


@njit(alloc=False, inline=True)
def _fmix(h):
    h ^= h >> U33
    h *= FMIX_1
    h ^= h >> U33
    h *= FMIX_2
    return h ^ (h >> U33)


@njit(alloc=False, inline=True)
def _sub_hash(key, i, words, lo, hi):
    """Hash of key[i] & mask over words rows [lo, hi) (tuple_space.subtable_hash)."""
    acc = U0
    for j in range(lo, hi):
        x = key[i, words[j, 0]] & words[j, 1]
        acc += (((x & LOW32) + words[j, 2]) & LOW32) * (((x >> U32) + words[j, 3]) & LOW32)
    acc *= FMIX_1
    return acc ^ (acc >> U32)


@njit(alloc=False, inline=True)
def _verify(key, i, words, lo, hi, slots, e):
    """key[i] & mask equals the masked words stored at slots[e:] (no early exit: branchless)."""
    diff = U0
    for j in range(lo, hi):
        diff |= (key[i, words[j, 0]] & words[j, 1]) ^ slots[e]
        e += U1
    return diff == U0


@njit(alloc=False)
def _probe_slow(key, i, sub, words, slots, s, h):
    """The whole probe, tag by tag from the home bucket on (a full bucket, or tags alike).

    Not inlined: rarely run (~1 % of probes), and it keeps the inlined loop small.
    """
    lo = sub[s, S_WORD_LO]
    hi = sub[s, S_WORD_HI]
    tag = (h >> U32) | U1
    bm = sub[s, S_BMASK]
    b = h & bm
    while True:
        for k in range(UBUCKET):
            p = b * UBUCKET + k
            t = slots[sub[s, S_BASE] + p]
            if t == U0:
                return NO_RULE          # buckets fill in order: the key is nowhere further
            if (t >> U32) == tag:
                e = sub[s, S_KEYS] + ((t & LOW32) - U1) * (U1 + hi - lo)
                if _verify(key, i, words, lo, hi, slots, e + U1):
                    return slots[e]
        b = (b + U1) & bm


@njit(alloc=False, inline=True)
def _probe(key, i, sub, words, slots, s, h):
    """Rule index stored in subtable row s for key[i] & mask (hash h), NO_RULE, or SLOW.

    The common cases, inline and nearly branch-free: read the home bucket's
    four tags; none matches and the bucket has room -> NO_RULE; one matches
    -> compare its key words once: equal -> its rule, else (bucket with room)
    NO_RULE.  Anything else (a full bucket, several tags alike) answers
    SLOW, and the caller runs _probe_slow.
    """
    lo = sub[s, S_WORD_LO]
    hi = sub[s, S_WORD_HI]
    tag = (h >> U32) | U1
    b = h & sub[s, S_BMASK]
    a = sub[s, S_BASE] + b * UBUCKET
    t0 = slots[a]
    t1 = slots[a + U1]
    t2 = slots[a + U2]
    t3 = slots[a + U3]
    m0 = (t0 >> U32) == tag
    m1 = (t1 >> U32) == tag
    m2 = (t2 >> U32) == tag
    m3 = (t3 >> U32) == tag
    room = t3 == U0
    if m0 | m1 | m2 | m3:
        t = t0 if m0 else (t1 if m1 else (t2 if m2 else t3))
        e = sub[s, S_KEYS] + ((t & LOW32) - U1) * (U1 + hi - lo)
        if _verify(key, i, words, lo, hi, slots, e + U1):
            r = slots[e]
        elif room and (np.uint64(m0) + np.uint64(m1) + np.uint64(m2) + np.uint64(m3)) == U1:
            r = NO_RULE
        else:
            r = SLOW
    elif room:
        r = NO_RULE
    else:
        r = SLOW
    return r


@njit(alloc=False, inline=True)
def _search(key, i, t, sub, words, slots):
    """Tuple-space search of table t (uint64) for key row i (uint64): rule index or NO_RULE."""
    best = NO_RULE
    for s in range(sub[t, T_FIRST], sub[t, T_END]):
        if sub[s, S_MIN_RULE] > best:
            break           # subtables are in min_rule order: none after can win
        h = _sub_hash(key, i, words, sub[s, S_WORD_LO], sub[s, S_HASH_HI])
        r = _probe(key, i, sub, words, slots, s, h)
        if r == SLOW:
            r = _probe_slow(key, i, sub, words, slots, s, h)
        if r < best:
            best = r
    return best


@njit(alloc=False, inline=True)
def _key_hash(key, i, t, words, lo, hi):
    """Hash of key row i's flow cache words (rows [lo, hi) of words, masked) and table t."""
    acc = (t + U1) * MIX_TABLE
    for j in range(lo, hi):
        x = key[i, words[j, 0]] & words[j, 1]
        acc += (((x & LOW32) + words[j, 2]) & LOW32) * (((x >> U32) + words[j, 3]) & LOW32)
    return _fmix(acc)


@njit(alloc=False, inline=True)
def lookup_tss(key, i, table, sub, words, slots):
    """Tuple-space search alone (no cache): rule index or -1."""
    r = _search(key, np.uint64(i), np.uint64(table), sub, words, slots)
    if r == NO_RULE:
        return np.int64(-1)
    return np.int64(r)


@njit(alloc=False, inline=True)
def lookup(key, i, table, sub, words, slots, cache, gen):
    """Rule of `table` matching key row i: flow cache, then tuple-space search; -1 if none."""
    ui = np.uint64(i)
    t = np.uint64(table)
    if sub[t, T_END] - sub[t, T_FIRST] < CACHE_MIN:
        r = _search(key, ui, t, sub, words, slots)     # a small table: searching is cheaper
        return np.int64(-1) if r == NO_RULE else np.int64(r)
    g = np.uint64(gen)
    lo = sub[t, T_EMC_LO]
    hi = sub[t, T_EMC_HI]
    h = _key_hash(key, ui, t, words, lo, hi)
    row = (h & np.uint64((cache.shape[0] >> 1) - 1)) << U1
    for way in range(2):
        e = row + np.uint64(way)
        if cache[e, C_GEN] == g and cache[e, C_HASH] == h and cache[e, C_TABLE] == t:
            diff = U0
            c = UC_KEY
            for j in range(lo, hi):  # no early exit (see the module docstring)
                diff |= cache[e, c] ^ (key[ui, words[j, 0]] & words[j, 1])
                c += U1
            if diff == U0:
                return np.int64(cache[e, C_RULE]) - 1
    r = _search(key, ui, t, sub, words, slots)
    e = row                            # the newest entry goes in way 0 ...
    if cache[row, C_GEN] == g:         # ... and a live one there moves to way 1
        for c in range(UC_KEY + hi - lo):
            cache[row + U1, c] = cache[row, c]
    cache[e, C_GEN] = g
    cache[e, C_HASH] = h
    cache[e, C_TABLE] = t
    cache[e, C_RULE] = r + U1          # NO_RULE + 1 wraps to 0: a cached miss
    c = UC_KEY
    for j in range(lo, hi):
        cache[e, c] = key[ui, words[j, 0]] & words[j, 1]
        c += U1
    if r == NO_RULE:
        return np.int64(-1)
    return np.int64(r)


@njit
def lookup_linear(key, i, mask, value, lo, hi):
    """Reference: index of the first rule in rows [lo, hi) matching key[i], or -1."""
    words = key.shape[1]
    for r in range(lo, hi):
        ok = True
        for w in range(words):
            if key[i, w] & mask[r, w] != value[r, w]:
                ok = False
                break
        if ok:
            return r
    return -1


# Whole-batch entry points, for tests and benchmarks (the action kernel calls lookup).
@njit(alloc=False)
def classify(key, n, table, sub, words, slots, cache, gen, out):
    """out[i] = lookup(...) for key rows 0..n-1."""
    for i in range(n):
        out[i] = lookup(key, i, table, sub, words, slots, cache, gen)


@njit(alloc=False)
def classify_tss(key, n, table, sub, words, slots, out):
    """out[i] = lookup_tss(...) for key rows 0..n-1 (no cache)."""
    for i in range(n):
        out[i] = lookup_tss(key, i, table, sub, words, slots)


@njit
def classify_linear(key, n, mask, value, lo, hi, out):
    """out[i] = lookup_linear(...) for key rows 0..n-1."""
    for i in range(n):
        out[i] = lookup_linear(key, i, mask, value, lo, hi)
