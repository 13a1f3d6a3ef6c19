"""The tuple-space classifier and the flow cache against the linear scan (the plain reference).

Rule sets are random (seeded): 1..60 distinct masks over realistic fields
(in_port, dl_dst prefixes, dl_type, nw_src/nw_dst prefixes, nw_proto, tp_dst
exact or masked, now and then metadata/reg0/tun_id), values from small pools
so rules overlap, priorities from a few values so many are equal.  Keys are
uint64 rows built directly: random ones from the same pools and ones made
from a rule's value with random bits where its mask is zero.  Every lookup
must give the same rule index as classify_linear over the same table.
"""
import dataclasses
import numpy as np
import pytest

from softdpu import drops
from softdpu.batch import M_DROP, Batch
from softdpu.key import FIELDS, KEY_WORDS
from softdpu.stages.flows import tuple_space
from softdpu.stages.flows.classify import (_sub_hash, classify, classify_linear, classify_tss)
from softdpu.stages.flows.compile import N_TABLES, compile_rules
from softdpu.stages.flows.flow_cache import C_GEN, MIN_SUBTABLES, FlowCache
from softdpu.stages.flows.stage import FlowTables
from softdpu.stages.flows.syntax import Action, Rule

# field -> ways to mask it: ("exact",) or ("prefix", min_len, max_len) or ("masks", [...])
SHAPES = {
    "in_port": [("exact",)],
    "dl_dst": [("exact",), ("prefix", 1, 47), ("masks", [0x010000000000])],
    "dl_type": [("exact",)],
    "nw_src": [("prefix", 0, 32), ("exact",)],
    "nw_dst": [("prefix", 0, 32), ("exact",)],
    "nw_proto": [("exact",)],
    "tp_dst": [("exact",), ("masks", [0xF000, 0xFF00, 0xFFF0, 0x8000, 0x00FF])],
    "metadata": [("exact",), ("masks", [0xFFFF_0000_0000_0000])],
    "reg0": [("exact",)],
    "tun_id": [("exact",)],
}
COMMON = ["in_port", "dl_dst", "dl_type", "nw_src", "nw_dst", "nw_proto", "tp_dst"]
RARE = ["metadata", "reg0", "tun_id"]


def pool(name, rng):
    """A value for field `name`, from a small pool so that rules and keys collide often."""
    if name == "in_port":
        return int(rng.integers(1, 5))
    if name == "dl_dst":
        return int(rng.choice([0x020000000001, 0x020000000002, 0x01005E000001, 0xFFFFFFFFFFFF,
                               int(rng.integers(0, 1 << 48))]))
    if name == "dl_type":
        return int(rng.choice([0x0800, 0x86DD, 0x0806]))
    if name in ("nw_src", "nw_dst"):
        base = int(rng.choice([0x0A000000, 0x0A010000, 0xC0A80100, 0xAC100000]))
        return base | int(rng.integers(0, 4)) << int(rng.choice([0, 8, 16]))
    if name == "nw_proto":
        return int(rng.choice([1, 6, 17]))
    if name == "tp_dst":
        return int(rng.choice([22, 53, 80, 443, 8080, 0x1234, int(rng.integers(0, 65536))]))
    if name in ("metadata", "tun_id"):
        return int(rng.choice([0, 1, 0xABCD_0000_0000_0001]))
    return int(rng.integers(0, 3))


def random_shape(rng):
    """{field: mask} of a random realistic mask (possibly empty: match-all)."""
    shape = {}
    names = [n for n in COMMON if rng.random() < 0.45] + [n for n in RARE if rng.random() < 0.08]
    for name in names:
        bits = FIELDS[name].bits
        full = (1 << bits) - 1
        kind = SHAPES[name][int(rng.integers(len(SHAPES[name])))]
        if kind[0] == "exact":
            m = full
        elif kind[0] == "prefix":
            n = int(rng.integers(kind[1], kind[2] + 1))
            m = full ^ ((1 << (bits - n)) - 1)
        else:
            m = int(rng.choice(kind[1]))
        if m:
            shape[name] = m
    return shape


def distinct_shapes(n, rng):
    shapes, seen = [], set()
    while len(shapes) < n:
        s = random_shape(rng)
        k = tuple(sorted(s.items()))
        if k not in seen:
            seen.add(k)
            shapes.append(s)
    return shapes


def rule(match, priority=32768, table=0, port=1, line=1):
    return Rule(table=table, priority=priority, cookie=0, match=match,
                actions=[Action("output", port, 1)], path="t.flows", line=line)


def random_rules(n_rules, n_masks, rng, tables=(0,), priorities=None):
    shapes = distinct_shapes(n_masks, rng)
    if priorities is None:
        priorities = [0, 10, 100, 100, 32768, 32768, 32768, 40000]
    rules = []
    for k in range(n_rules):
        shape = shapes[int(rng.integers(len(shapes)))]
        match = {name: (pool(name, rng) & m, m) for name, m in shape.items()}
        prio = int(rng.choice(priorities)) if rng.random() < 0.8 else int(rng.integers(0, 65536))
        rules.append(rule(match, prio, table=int(rng.choice(tables)), port=k % 4 + 1, line=k + 1))
    return rules


def random_keys(n, rng, program=None, table_rows=None, hit_fraction=0.5):
    """uint64[n, KEY_WORDS] keys: pool values, and (with a program) keys built from its rules."""
    keys = rng.integers(0, 1 << 63, size=(n, KEY_WORDS), dtype=np.uint64) << np.uint64(1)
    keys |= rng.integers(0, 2, size=(n, KEY_WORDS), dtype=np.uint64)
    for name in COMMON + RARE:
        f = FIELDS[name]
        vals = np.array([pool(name, rng) for _ in range(n)], np.uint64)
        keep = np.uint64(~f.mask & 0xFFFF_FFFF_FFFF_FFFF)
        keys[:, f.word] = (keys[:, f.word] & keep) | (vals << np.uint64(f.shift))
    if program is not None and table_rows is not None and table_rows[1] > table_rows[0]:
        pick = rng.random(n) < hit_fraction
        rows = rng.integers(table_rows[0], table_rows[1], size=n)
        m, v = program.mask[rows], program.value[rows]
        built = (keys & ~m) | v
        keys[pick] = built[pick]
    return keys


def reference(program, keys, table):
    lo, hi = program.table_bounds[table]
    out = np.empty(len(keys), np.int64)
    classify_linear(keys, len(keys), program.mask, program.value, lo, hi, out)
    return out


def numpy_reference(program, keys, table):
    """A second reference without numba: first row of the table matching each key."""
    lo, hi = program.table_bounds[table]
    out = np.full(len(keys), -1, np.int64)
    for i, k in enumerate(keys):
        hit = np.flatnonzero(((k & program.mask[lo:hi]) == program.value[lo:hi]).all(axis=1))
        if hit.size:
            out[i] = lo + hit[0]
    return out


def tss(program, keys, table):
    out = np.empty(len(keys), np.int64)
    classify_tss(keys, len(keys), table, program.tss_sub, program.tss_words, program.tss_slots, out)
    return out


def cached(program, cache, keys, table):
    out = np.empty(len(keys), np.int64)
    classify(keys, len(keys), table, program.tss_sub, program.tss_words, program.tss_slots,
             cache.entries, cache.generation, out)
    return out


def n_subtables(program, table=0):
    return int(program.tss_sub[table, 1] - program.tss_sub[table, 0])


# -- tuple space against the linear scan --------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_random_rule_sets_match_linear_scan(seed):
    rng = np.random.default_rng(seed)
    n_masks = int(rng.integers(1, 61))
    n_rules = int(rng.integers(1, 400))
    program = compile_rules(random_rules(n_rules, n_masks, rng))
    keys = random_keys(2000, rng, program, program.table_bounds[0])
    want = reference(program, keys, 0)
    assert (want >= 0).any() and n_subtables(program) <= n_masks
    np.testing.assert_array_equal(tss(program, keys, 0), want)
    cache = FlowCache(256)
    np.testing.assert_array_equal(cached(program, cache, keys, 0), want)
    np.testing.assert_array_equal(cached(program, cache, keys, 0), want)


def test_numpy_reference_agrees():
    """The reference itself, checked against plain numpy on one rule set."""
    rng = np.random.default_rng(100)
    program = compile_rules(random_rules(200, 30, rng))
    keys = random_keys(300, rng, program, program.table_bounds[0])
    want = numpy_reference(program, keys, 0)
    np.testing.assert_array_equal(reference(program, keys, 0), want)
    np.testing.assert_array_equal(tss(program, keys, 0), want)


def test_equal_priorities_in_different_masks_pick_the_first_in_file():
    both = {"dl_type": (0x0800, 0xFFFF)}
    rules = [rule({"in_port": (1, 0xFFFF)}, 100, port=1, line=1),
             rule({"nw_src": (0x0A000000, 0xFF000000)}, 100, port=2, line=2),
             rule(both, 100, port=3, line=3),
             rule({"in_port": (1, 0xFFFF), **both}, 50, port=4, line=4)]
    program = compile_rules(rules)
    keys = np.zeros((4, KEY_WORDS), np.uint64)
    in_port, nw_src, dl_type = FIELDS["in_port"], FIELDS["nw_src"], FIELDS["dl_type"]
    keys[:, in_port.word] |= np.uint64(1 << in_port.shift)                       # all match line 1
    keys[1:, nw_src.word] |= np.uint64(0x0A000001 << nw_src.shift)
    keys[2:, dl_type.word] |= np.uint64(0x0800 << dl_type.shift)
    keys[3, in_port.word] = np.uint64(0x0800 << dl_type.shift)                   # in_port 0,
    keys[3, nw_src.word] = 0                                                     # no nw_src
    got = tss(program, keys, 0)
    assert [program.rules[r].line for r in got] == [1, 1, 1, 3]
    # and with the first rule's priority lowered, the next equal ones follow file order
    rules[0].priority = 10
    program = compile_rules(rules)
    got = tss(program, keys, 0)
    np.testing.assert_array_equal(got, reference(program, keys, 0))
    assert [program.rules[r].line for r in got] == [1, 2, 2, 3]


def test_same_mask_and_value_keeps_the_best_rule():
    m = {"in_port": (2, 0xFFFF)}
    rules = [rule(m, 5, port=1, line=1), rule(m, 7, port=2, line=2), rule(m, 7, port=3, line=3)]
    program = compile_rules(rules)
    assert n_subtables(program) == 1
    keys = np.zeros((1, KEY_WORDS), np.uint64)
    keys[0, 0] = np.uint64(2 << 32)
    # lines 2 and 3 are the same flow (table, priority, match): as ovs-ofctl add-flows, the last replaces it
    assert len(program.rules) == 2
    assert program.rules[tss(program, keys, 0)[0]].line == 3


def test_match_all_rule_and_empty_table():
    program = compile_rules([rule({}, 0, port=3), rule({"in_port": (1, 0xFFFF)}, 10, table=1)])
    keys = random_keys(50, np.random.default_rng(1))
    assert (tss(program, keys, 0) == 0).all()
    np.testing.assert_array_equal(tss(program, keys, 1), reference(program, keys, 1))
    for t in (2, 254):
        assert (tss(program, keys, t) == -1).all()
        assert (cached(program, FlowCache(64), keys, t) == -1).all()
    empty = compile_rules([])
    assert (tss(empty, keys, 0) == -1).all()
    assert (cached(empty, FlowCache(64), keys, 0) == -1).all()
    assert empty.tss_sub.shape[0] == N_TABLES


@pytest.mark.parametrize("seed", range(5))
def test_multiple_tables(seed):
    rng = np.random.default_rng(1000 + seed)
    tables = (0, 1, 2, 7, 254)
    program = compile_rules(random_rules(600, 40, rng, tables=tables))
    cache = FlowCache(512)
    for t in (*tables, 3):
        keys = random_keys(1000, rng, program, program.table_bounds[t])
        want = reference(program, keys, t)
        np.testing.assert_array_equal(tss(program, keys, t), want)
        np.testing.assert_array_equal(cached(program, cache, keys, t), want)
    # one cache, the same keys looked up in different tables: table id is part of the key
    keys = random_keys(500, rng, program, program.table_bounds[0], hit_fraction=1.0)
    for _ in range(2):
        for t in tables:
            np.testing.assert_array_equal(cached(program, cache, keys, t), reference(program, keys, t))


def test_ten_thousand_rules():
    rng = np.random.default_rng(7)
    program = compile_rules(random_rules(10_000, 50, rng))
    assert 40 <= n_subtables(program) <= 50
    keys = random_keys(20_000, rng, program, program.table_bounds[0], hit_fraction=0.7)
    want = reference(program, keys, 0)
    np.testing.assert_array_equal(tss(program, keys, 0), want)
    np.testing.assert_array_equal(cached(program, FlowCache(4096), keys, 0), want)


def test_wide_priority_range_and_single_mask():
    rng = np.random.default_rng(11)
    for n_masks, prios in ((1, None), (60, list(range(0, 65536, 997)))):
        program = compile_rules(random_rules(500, n_masks, rng, priorities=prios))
        keys = random_keys(3000, rng, program, program.table_bounds[0])
        np.testing.assert_array_equal(tss(program, keys, 0), reference(program, keys, 0))


def test_subtables_ordered_by_best_rule_and_load_at_most_half():
    rng = np.random.default_rng(3)
    program = compile_rules(random_rules(3000, 50, rng))
    sub = program.tss_sub
    first, end = int(sub[0, 0]), int(sub[0, 1])
    best = sub[first:end, tuple_space.S_MIN_RULE]
    assert (np.diff(best.astype(np.int64)) > 0).all()
    for s in range(first, end):
        cap = tuple_space.BUCKET * (int(sub[s, tuple_space.S_BMASK]) + 1)
        base = int(sub[s, tuple_space.S_BASE])
        tags = program.tss_slots[base: base + cap]
        assert cap & (cap - 1) == 0 and 2 * np.count_nonzero(tags) <= cap
        assert int(sub[s, tuple_space.S_KEYS]) == base + cap
        # only words with a nonzero mask are hashed and compared
        lo, hi = int(sub[s, tuple_space.S_WORD_LO]), int(sub[s, tuple_space.S_WORD_HI])
        assert (program.tss_words[lo:hi, 1] != 0).all()


def test_numpy_and_kernel_subtable_hash_agree():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 1 << 63, size=(64, KEY_WORDS), dtype=np.uint64) * np.uint64(3)
    used = np.array([0, 2, 3, 4, 21], np.int64)
    masks = rng.integers(0, 1 << 63, size=len(used), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    words = np.stack([used.astype(np.uint64), masks, tuple_space.MIX_LO[used],
                      tuple_space.MIX_HI[used]], axis=1)
    want = tuple_space.subtable_hash(keys[:, used] & masks, used)
    got = [_sub_hash(keys, np.uint64(i), words, np.uint64(0), np.uint64(len(used))) for i in range(64)]
    np.testing.assert_array_equal(np.array(got, np.uint64), want)


def test_full_buckets_take_the_slow_path_correctly():
    """At load up to 0.5 many home buckets are full: the slow path must still agree."""
    rng = np.random.default_rng(31)
    program = compile_rules(random_rules(3000, 12, rng))
    n = len(program.rules)
    sub, words, slots = tuple_space.build(program.mask[:n], program.value[:n], program.table_bounds,
                                          slots_per_entry=2)
    first, end = int(sub[0, 0]), int(sub[0, 1])
    full = 0
    for s in range(first, end):
        base, n_buckets = int(sub[s, tuple_space.S_BASE]), int(sub[s, tuple_space.S_BMASK]) + 1
        full += int((slots[base: base + n_buckets * tuple_space.BUCKET].reshape(-1, 4)[:, 3] != 0).sum())
    assert full > 50
    keys = random_keys(5000, rng, program, program.table_bounds[0], hit_fraction=0.8)
    out = np.empty(len(keys), np.int64)
    classify_tss(keys, len(keys), 0, sub, words, slots, out)
    np.testing.assert_array_equal(out, reference(program, keys, 0))
    with pytest.raises(ValueError):
        tuple_space.build(program.mask[:n], program.value[:n], program.table_bounds, slots_per_entry=1)


def _key(nw_src, tp_dst):
    k = np.zeros(KEY_WORDS, np.uint64)
    for name, v in (("nw_src", nw_src), ("tp_dst", tp_dst)):
        f = FIELDS[name]
        k[f.word] |= np.uint64(v << f.shift)
    return k


def test_words_hashed_and_words_only_compared():
    """A subtable hashes only the words that tell its entries apart; keys alike there but
    different in another word are misses."""
    both = lambda src, port: {"nw_src": (src, 0xFFFF_FFFF), "tp_dst": (port, 0xFFFF)}  # noqa: E731
    rules = [rule(both(1, 80), line=1), rule(both(2, 80), line=2), rule(both(3, 443), line=3)]
    keys = np.stack([_key(1, 80), _key(1, 443), _key(3, 443), _key(3, 80), _key(4, 80)])
    program = compile_rules(rules)
    s = int(program.tss_sub[0, 0])
    assert program.tss_sub[s, tuple_space.S_HASH_HI] - program.tss_sub[s, tuple_space.S_WORD_LO] == 1
    assert program.tss_words[int(program.tss_sub[s, tuple_space.S_WORD_LO]), 0] == FIELDS["nw_src"].word
    np.testing.assert_array_equal(tss(program, keys, 0), [0, -1, 2, -1, -1])
    program = compile_rules(rules + [rule(both(1, 443), line=4)])    # now nw_src alone is not enough
    s = int(program.tss_sub[0, 0])
    assert program.tss_sub[s, tuple_space.S_HASH_HI] == program.tss_sub[s, tuple_space.S_WORD_HI]
    np.testing.assert_array_equal(tss(program, keys, 0), [0, 3, 2, -1, -1])


def test_a_tag_alike_with_a_different_key_is_not_a_match():
    """Plant tags equal to a key's in its home bucket, pointing at other entries (a hash
    collision in the tag bits): the lookup must compare the key words and go on."""
    rules = [rule({"nw_src": (a, 0xFFFF_FFFF), "tp_dst": (p, 0xFFFF)}, line=k)
             for k, (a, p) in enumerate([(1, 80), (2, 80), (3, 443), (4, 22)])]
    program = compile_rules(rules)
    sub, words, slots = program.tss_sub, program.tss_words, program.tss_slots.copy()
    s = int(sub[0, 0])
    lo, hh = int(sub[s, tuple_space.S_WORD_LO]), int(sub[s, tuple_space.S_HASH_HI])
    used, m = words[lo:hh, 0].astype(np.int64), words[lo:hh, 1]
    base, bmask = int(sub[s, tuple_space.S_BASE]), int(sub[s, tuple_space.S_BMASK])
    keys = np.stack([_key(3, 443), _key(9, 9)])
    for k in keys:
        h = int(tuple_space.subtable_hash((k[used] & m)[None, :], used)[0])
        b = h & bmask
        tags = slots[base + 4 * b: base + 4 * b + 4]
        real = [t for t in tags if t]
        fake = (((h >> 32) | 1) << 32) | 1                 # points at entry 0 (a different key)
        tags[:] = 0
        tags[: len(real) + 1] = [fake] + real              # the fake first: checked first
    out = np.empty(2, np.int64)
    classify_tss(keys, 2, 0, sub, words, slots, out)
    np.testing.assert_array_equal(out, [2, -1])


def test_kernels_calling_lookup_run_without_reference_counting():
    """lookup is inlined; in a kernel with numba's reference counting it runs 5x slower."""
    from softdpu.stages.flows.actions import run_actions
    for kernel in (run_actions, classify, classify_tss):
        assert kernel.targetoptions.get("_nrt") is False, kernel


# -- flow cache ----------------------------------------------------------------------

def test_cache_hits_and_generation_invalidates():
    rng = np.random.default_rng(21)
    old = compile_rules(random_rules(300, 20, rng))
    keys = random_keys(400, rng, old, old.table_bounds[0], hit_fraction=0.9)
    cache = FlowCache(1 << 16)    # big enough that no bucket of two ways overflows here
    want = reference(old, keys, 0)
    np.testing.assert_array_equal(cached(old, cache, keys, 0), want)
    assert cache.live() > 300
    np.testing.assert_array_equal(cached(old, cache, keys, 0), want)
    # the second pass is answered by the cache: with other rules (the same masks, so the same
    # cache words, priorities reversed) but the same generation the answers stay the old ones
    # (this is why the generation exists)
    new = compile_rules([dataclasses.replace(r, priority=65535 - r.priority) for r in old.rules])
    assert (reference(new, keys, 0) != want).any()
    np.testing.assert_array_equal(cached(new, cache, keys, 0), want)
    # a rule change bumps the generation: no stale answer
    cache.invalidate()
    assert cache.live() == 0
    np.testing.assert_array_equal(cached(new, cache, keys, 0), reference(new, keys, 0))
    np.testing.assert_array_equal(cached(new, cache, keys, 0), reference(new, keys, 0))


def test_tiny_cache_evicts_but_stays_correct():
    rng = np.random.default_rng(22)
    program = compile_rules(random_rules(500, 30, rng))
    keys = random_keys(2000, rng, program, program.table_bounds[0])
    cache = FlowCache(2)
    want = reference(program, keys, 0)
    for _ in range(2):
        np.testing.assert_array_equal(cached(program, cache, keys, 0), want)
    assert cache.live() == 2


def fillers(port=9):
    """Three rules in three more masks that no test key matches (in_port 9): the flow cache
    serves only tables of at least MIN_SUBTABLES subtables."""
    p = {"in_port": (port, 0xFFFF)}
    return [rule({**p, "dl_type": (0x0800, 0xFFFF)}, 1), rule({**p, "nw_proto": (6, 0xFF)}, 1),
            rule({**p, "tp_dst": (80, 0xFFFF)}, 1)]


def test_small_tables_skip_the_cache():
    rules = [rule({"in_port": (1, 0xFFFF)}, 5), rule({}, 0)]
    keys = random_keys(100, np.random.default_rng(4))
    for extra, cached_entries in (([], 0), (fillers()[:1], 0), (fillers(), 100)):
        program = compile_rules(rules + extra)
        assert n_subtables(program) == 2 + len(extra)
        cache = FlowCache(1 << 16)
        np.testing.assert_array_equal(cached(program, cache, keys, 0), reference(program, keys, 0))
        # one entry per distinct key under the union of the table's masks (its cache words)
        union = np.bitwise_or.reduce(program.mask[: len(program.rules)], axis=0)
        distinct = len({(k & union).tobytes() for k in keys})
        assert cache.live() == (distinct if cached_entries and MIN_SUBTABLES == 4 else 0 if MIN_SUBTABLES == 4
                                else cache.live())


def test_cache_keeps_only_the_words_the_table_matches_on():
    """Keys differing only in bits no rule of the table looks at share one cache entry (they
    get the same rule); keys differing in a matched bit are distinct entries."""
    program = compile_rules([rule({"in_port": (1, 0xFFFF)}, 5), rule({}, 0)] + fillers())
    union = np.bitwise_or.reduce(program.mask[: len(program.rules)], axis=0)
    keys = np.zeros((KEY_WORDS, KEY_WORDS), np.uint64)
    keys[:, 0] = np.uint64(1 << 32)
    for w in range(1, KEY_WORDS):
        keys[w, w] = np.uint64(1 << 63)      # no rule matches on bit 63 of any word
    cache = FlowCache(1024)
    assert (cached(program, cache, keys, 0) == 0).all()
    assert cache.live() == 1
    assert (np.array([union[w] & np.uint64(1 << 63) for w in range(1, KEY_WORDS)]) == 0).all()
    other = keys.copy()
    other[:, 0] |= np.uint64(1 << 48)           # in_port's neighbour bits: in_port is 16 bits at 32..47
    other[1:, FIELDS["tp_dst"].word] |= np.uint64(80 << FIELDS["tp_dst"].shift)   # a matched field
    reference_answers = reference(program, other, 0)
    np.testing.assert_array_equal(cached(program, cache, other, 0), reference_answers)
    assert cache.live() == 1 + len({(k & union).tobytes() for k in other} - {(keys[0] & union).tobytes()})
    with pytest.raises(ValueError):
        FlowCache(1000)


# -- the stage: rules replaced at run time ----------------------------------------------

def _batch_with_ports(ports):
    b = Batch(size=len(ports))
    for p in ports:
        b.append(bytes(60), in_port=p)
        b.key[b.n - 1, FIELDS["in_port"].word] = np.uint64(p << FIELDS["in_port"].shift)
    return b


def _run(stage, ports):
    b = _batch_with_ports(ports)
    stage.run(b)
    return [int(x) for x in b.tx[: b.n_tx, 1]], [int(x) for x in b.meta[: b.n, M_DROP]]


def test_stage_replace_and_add_rules_invalidate_the_cache():
    stage = FlowTables([rule({"in_port": (1, 0xFFFF)}, port=2), rule({"in_port": (2, 0xFFFF)}, port=1)]
                       + fillers(), ofports=[1, 2, 3])
    assert _run(stage, [1, 2, 3]) == ([2, 1], [0, 0, drops.NO_MATCH])
    assert stage.cache.live() == 3
    assert _run(stage, [1, 2, 3]) == ([2, 1], [0, 0, drops.NO_MATCH])    # from the cache
    gen = stage.cache.generation
    stage.replace_rules([rule({"in_port": (1, 0xFFFF)}, port=3), rule({}, 0, port=1)] + fillers())
    assert stage.cache.generation == gen + 1 and stage.cache.live() == 0
    assert _run(stage, [1, 2, 3]) == ([3, 1, 1], [0, 0, 0])
    assert list(stage.program.n_packets[[0, 4]]) == [1, 2]
    # add-flow: same table/priority/match replaces (counters restart), others keep theirs
    stage.add_rules([rule({"in_port": (1, 0xFFFF)}, port=2), rule({"in_port": (3, 0xFFFF)}, 7, port=2)])
    assert stage.cache.live() == 0
    assert _run(stage, [1, 2, 3]) == ([2, 1, 2], [0, 0, 0])
    counts = {(r.priority, tuple(r.match.items()), r.actions[0].arg): int(stage.program.n_packets[k])
              for k, r in enumerate(stage.program.rules) if r.priority != 1}
    assert counts == {(32768, (("in_port", (1, 0xFFFF)),), 2): 1, (0, (), 1): 3,
                      (7, (("in_port", (3, 0xFFFF)),), 2): 1}
    assert len(stage.program.rules) == 6


def test_two_stages_do_not_share_a_cache():
    a = FlowTables([rule({"in_port": (1, 0xFFFF)}, port=2)] + fillers(), ofports=[1, 2])
    b = FlowTables([rule({"in_port": (1, 0xFFFF)}, port=1)] + fillers(), ofports=[1, 2])
    assert a.cache.entries is not b.cache.entries
    assert _run(a, [1]) == ([2], [0])
    assert _run(b, [1]) == ([], [drops.ACTION_DROP])   # output to its own in_port
    assert _run(a, [1]) == ([2], [0])
    assert (a.cache.entries[:, C_GEN] != 0).sum() == 1
