"""Benchmark of the classifier: 10k rules in 50 distinct masks, batches of 256, in Mpps.

The rule set is an ACL-like table (seeded): 50 distinct masks over in_port,
dl_dst (/40, /48), dl_type, nw_src/nw_dst prefixes (/16../32), nw_proto and
tp_dst (exact or masked), 200 rules each, priorities 1..1000 (many equal),
plus a priority-0 catch-all, so every packet has an answer.  Flows are built
from random rules' values (the bits a rule ignores random): a packet matches
about two rules, its own and the catch-all, at a random priority, so a
search can rarely stop early -- the hard case (`subtables_probed`, the mean
number of subtables a lookup visits, says how hard).

  tss            tuple-space search alone (no cache), key rows hot
  cache_miss     flow cache + search, 64k flows cycled (8k cache entries:
                 essentially every lookup misses, hashes, searches and inserts)
  cache_hit      flow cache + search, the same 256 flows again and again (all hits)
  linear         the old linear scan, for scale (a few batches only)
  e2e_*          64-byte IPv4 TCP/UDP frames in memory: parse + flow tables
                 (the real FlowTables stage: cache + search, counters, output);
                 refilling the batch is not timed.  Flow mixes:
                   e2e_many  64k flows, each once per pass (the 8k-entry cache
                             cannot hold them: ~every lookup misses)
                   e2e_1k    1000 flows, 64k packets at random among them
                             (the cache holds them all)
                   e2e_zipf  64k flows, 256k packets Zipf(1) over them (a few
                             elephants, a long tail of mice)
                   e2e_few   256 flows, the same batch again and again
                 each with the flow cache's steady-state hit rate (the parsed
                 keys replayed through a copy of the lookup, counting hits)

Each figure is ns per packet (kernel call included) and Mpps, the median of
repeats.  `python bench/classifier_bench.py` prints them.
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from softdpu.batch import HEADROOM, M_DROP, M_IN_PORT, M_LEN, M_START, M_WIRE_LEN, Batch  # noqa: E402
from softdpu.key import FIELDS, KEY_WORDS  # noqa: E402
from softdpu._jit import njit  # noqa: E402
from softdpu.stages.flows.classify import _key_hash, classify, classify_linear, classify_tss, lookup  # noqa: E402
from softdpu.stages.flows.compile import compile_rules  # noqa: E402
from softdpu.stages.flows.flow_cache import C_GEN, C_HASH, C_KEY, C_TABLE, FlowCache  # noqa: E402
from softdpu.stages.flows.stage import FlowTables  # noqa: E402
from softdpu.stages.flows.syntax import Action, Rule  # noqa: E402
from softdpu.stages.parse import Parse  # noqa: E402

BATCH = 256
FRAME = 64


def _shapes(n, rng):
    """n distinct {field: mask} shapes of an IPv4 ACL, each selective (few rules match a packet)."""
    shapes, seen = [], set()
    while len(shapes) < n:
        s = {"dl_type": 0xFFFF}
        if rng.random() < 0.3:
            s["in_port"] = 0xFFFF
        if rng.random() < 0.2:
            plen = int(rng.choice([40, 48]))
            s["dl_dst"] = ((1 << 48) - 1) ^ ((1 << (48 - plen)) - 1)
        for f in ("nw_src", "nw_dst"):
            if rng.random() < 0.75:
                plen = int(rng.choice([16, 20, 24, 28, 32]))
                s[f] = 0xFFFF_FFFF ^ ((1 << (32 - plen)) - 1)
        if rng.random() < 0.6:
            s["nw_proto"] = 0xFF
            if rng.random() < 0.8:
                s["tp_dst"] = int(rng.choice([0xFFFF, 0xFFFF, 0xFF00, 0xFFF0]))
        selective = sum(s.get(f, 0) >= 0xFFFF_FF00 for f in ("nw_src", "nw_dst")) + (s.get("tp_dst") == 0xFFFF)
        k = tuple(sorted(s.items()))
        if selective >= 1 and len(s) >= 3 and k not in seen:
            seen.add(k)
            shapes.append(s)
    return shapes


def _value(name, rng):
    if name == "in_port":
        return int(rng.integers(1, 3))
    if name == "dl_type":
        return 0x0800
    if name == "dl_dst":
        return 0x02_00_00_00_00_00 | int(rng.integers(0, 1 << 16))
    if name in ("nw_src", "nw_dst"):
        return 0x0A_00_00_00 | int(rng.integers(0, 1 << 24))
    if name == "nw_proto":
        return int(rng.choice([6, 17]))
    return int(rng.choice([22, 53, 80, 443, 8080])) if rng.random() < 0.3 else int(rng.integers(1, 65536))


def acl_rules(n_rules=10_000, n_masks=50, seed=1):
    """n_rules rules in n_masks distinct masks, then a priority-0 catch-all."""
    rng = np.random.default_rng(seed)
    shapes = _shapes(n_masks, rng)
    rules = []
    for k in range(n_rules):
        shape = shapes[k % n_masks]
        match = {f: (_value(f, rng) & m, m) for f, m in shape.items()}
        rules.append(Rule(table=0, priority=int(rng.integers(1, 1001)), cookie=0, match=match,
                          actions=[Action("output", 3 + k % 2, 1)], path="bench", line=k + 1))
    rules.append(Rule(table=0, priority=0, cookie=0, match={}, actions=[Action("output", 3, 1)],
                      path="bench", line=n_rules + 1))
    return rules


def flow_keys(program, n, seed=2):
    """n key rows: a random rule's value with random bits where its mask is zero (realistic fields)."""
    rng = np.random.default_rng(seed)
    keys = np.zeros((n, KEY_WORDS), np.uint64)
    rand = {"in_port": rng.integers(1, 3, n), "dl_type": np.full(n, 0x0800),
            "dl_dst": 0x02_00_00_00_00_00 | rng.integers(0, 1 << 16, n),
            "dl_src": np.full(n, 0x02_00_00_00_00_01),
            "nw_src": 0x0A_00_00_00 | rng.integers(0, 1 << 24, n),
            "nw_dst": 0x0A_00_00_00 | rng.integers(0, 1 << 24, n),
            "nw_proto": rng.choice([6, 17], n), "tp_src": rng.integers(1024, 65536, n),
            "tp_dst": rng.integers(1, 65536, n), "nw_ttl": np.full(n, 64)}
    for name, v in rand.items():
        f = FIELDS[name]
        keys[:, f.word] |= v.astype(np.uint64) << np.uint64(f.shift)
    lo, hi = program.table_bounds[0]
    rows = rng.integers(lo, hi, n)
    return (keys & ~program.mask[rows]) | program.value[rows]


def _median_ns(fn, packets, repeats):
    per = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        per.append((time.perf_counter() - t) / packets * 1e9)
    return statistics.median(per)


def _entry(ns):
    return {"ns_per_pkt": round(ns, 1), "mpps": round(1e3 / ns, 2)}


def frames_from_keys(keys):
    """uint8[n, FRAME] Ethernet/IPv4 TCP or UDP frames carrying the keys' fields (64 bytes)."""
    n = len(keys)
    out = np.zeros((n, FRAME), np.uint8)
    f = lambda name: (keys[:, FIELDS[name].word] >> np.uint64(FIELDS[name].shift)) & np.uint64(  # noqa: E731
        (1 << FIELDS[name].bits) - 1)

    def put(col, values, width):
        for b in range(width):
            out[:, col + b] = ((values >> np.uint64(8 * (width - 1 - b))) & np.uint64(0xFF)).astype(np.uint8)

    proto = f("nw_proto")
    put(0, f("dl_dst"), 6)
    put(6, f("dl_src"), 6)
    put(12, np.full(n, 0x0800, np.uint64), 2)
    out[:, 14] = 0x45
    put(16, np.full(n, FRAME - 14, np.uint64), 2)                 # IP total length: no padding
    out[:, 22] = 64
    out[:, 23] = proto.astype(np.uint8)
    put(26, f("nw_src"), 4)
    put(30, f("nw_dst"), 4)
    put(34, f("tp_src"), 2)
    put(36, f("tp_dst"), 2)
    udp = proto == np.uint64(17)
    out[udp, 38:40] = [0, FRAME - 34]                             # UDP length
    out[~udp, 46] = 0x50                                          # TCP data offset 5
    out[~udp, 47] = 0x10                                          # ACK
    return out


def _fill(batch, frames, ports):
    n = len(frames)
    batch.data[:n, HEADROOM: HEADROOM + FRAME] = frames
    batch.meta[:n] = 0
    batch.meta[:n, M_START] = HEADROOM
    batch.meta[:n, M_LEN] = FRAME
    batch.meta[:n, M_WIRE_LEN] = FRAME
    batch.meta[:n, M_IN_PORT] = ports
    batch.n = n
    batch.n_tx = 0


@njit(alloc=False)
def _count_hits(keys, sub, words, slots, cache, gen):
    """Look up key rows in order as the flow tables do (table 0); how many the flow cache answered."""
    hits = 0
    half = np.uint64((cache.shape[0] >> 1) - 1)
    for i in range(keys.shape[0]):
        h = _key_hash(keys, np.uint64(i), np.uint64(0))
        row = (h & half) << np.uint64(1)
        for way in range(2):
            e = row + np.uint64(way)
            if cache[e, C_GEN] == gen and cache[e, C_HASH] == h and cache[e, C_TABLE] == 0:
                diff = np.uint64(0)
                for w in range(keys.shape[1]):
                    diff |= cache[e, C_KEY + w] ^ keys[i, w]
                if diff == 0:
                    hits += 1
                    break
        lookup(keys, i, 0, sub, words, slots, cache, gen)
    return hits


def cache_hit_rate(program, parsed):
    """Share of lookups the exact-match cache answers in steady state: the parsed key rows
    looked up in order twice with a fresh cache, hits counted in the second pass."""
    cache = FlowCache()
    args = (program.tss_sub, program.tss_words, program.tss_slots, cache.entries, cache.generation)
    _count_hits(parsed, *args)
    return _count_hits(parsed, *args) / len(parsed)


def bench_end_to_end(rules, program, n_flows, repeats=5, passes=2, seq=None):
    """parse + flow tables over 64-byte frames in memory: (ns per packet (median), cache hit rate).

    seq: the flow of each packet, in order (default: every flow once, in order); the
    sequence is cycled, so the stage's flow cache is in steady state after the first pass."""
    keys = flow_keys(program, n_flows, seed=3)
    seq = np.arange(n_flows) if seq is None else np.asarray(seq)
    frames = frames_from_keys(keys)[seq]
    ports = (keys[seq, 0] >> np.uint64(32)).astype(np.int64)
    stage = FlowTables(rules, ofports=[1, 2, 3, 4])
    parse = Parse()
    batch = Batch(size=BATCH)
    n_batches = len(seq) // BATCH
    parsed = np.zeros((n_batches * BATCH, KEY_WORDS), np.uint64)

    def one_pass(keep=False):
        total = 0.0
        for k in range(n_batches):
            _fill(batch, frames[k * BATCH:(k + 1) * BATCH], ports[k * BATCH:(k + 1) * BATCH])
            t = time.perf_counter()
            parse.run(batch)
            stage.run(batch)
            total += time.perf_counter() - t
            if keep:
                parsed[k * BATCH:(k + 1) * BATCH] = batch.key[:BATCH]
        return total

    one_pass(keep=True)                                          # compile / load, warm the cache
    if batch.n_tx != BATCH or batch.meta[:BATCH, M_DROP].any():
        raise AssertionError("every benchmark packet should be forwarded")
    per = [sum(one_pass() for _ in range(passes)) / (passes * n_batches * BATCH) * 1e9
           for _ in range(repeats)]
    return statistics.median(per), cache_hit_rate(program, parsed)


def zipf_sequence(n_flows, n_packets, s=1.0, seed=4):
    """n_packets flow indices drawn with P(flow of rank k) ~ 1/k^s (a few elephants, many mice)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n_flows + 1) ** s
    return rng.choice(n_flows, n_packets, p=p / p.sum())


def bench_classifier(n_rules=10_000, n_masks=50, many=65_536, repeats=5):
    """{mode: {ns_per_pkt, mpps}} plus the table's shape; see the module docstring."""
    t = time.perf_counter()
    rules = acl_rules(n_rules, n_masks)
    program = compile_rules(rules)
    compile_s = time.perf_counter() - t
    sub, words, slots = program.tss_sub, program.tss_words, program.tss_slots
    out = np.empty(BATCH, np.int64)
    keys = flow_keys(program, many)
    batches = [np.ascontiguousarray(keys[k: k + BATCH]) for k in range(0, many, BATCH)]
    few = batches[0]

    def tss():
        for b in batches:
            classify_tss(b, BATCH, 0, sub, words, slots, out)

    cache = FlowCache()

    def with_cache(group):
        def run():
            for b in group:
                classify(b, BATCH, 0, sub, words, slots, cache.entries, cache.generation, out)
        return run

    lo, hi = program.table_bounds[0]

    def linear():
        for b in batches[:8]:
            classify_linear(b, BATCH, program.mask, program.value, lo, hi, out)

    for fn in (tss, with_cache(batches), linear):
        fn()                                                     # compile / load the kernels
    res = {"rules": len(rules), "masks": int(sub[0, 1] - sub[0, 0]), "compile_s": round(compile_s, 2)}
    best = sub[int(sub[0, 0]): int(sub[0, 1]), 0].astype(np.int64)
    answers = np.concatenate([(classify_tss(b, BATCH, 0, sub, words, slots, out), out.copy())[1]
                              for b in batches[:16]])
    res["subtables_probed"] = round(float(np.mean([(best <= a).sum() for a in answers])), 1)
    res["tss"] = _entry(_median_ns(tss, many, repeats))
    res["cache_miss"] = _entry(_median_ns(with_cache(batches), many, repeats))
    res["cache_hit"] = _entry(_median_ns(with_cache([few] * 256), 256 * BATCH, repeats))
    res["linear"] = _entry(_median_ns(linear, 8 * BATCH, 3))
    rng = np.random.default_rng(5)
    mixes = {"e2e_many": dict(n_flows=many),
             "e2e_1k": dict(n_flows=1000, seq=rng.integers(0, 1000, many)),
             "e2e_zipf": dict(n_flows=many, seq=zipf_sequence(many, 4 * many)),
             "e2e_few": dict(n_flows=BATCH, passes=256)}
    for name, kw in mixes.items():
        ns, hit = bench_end_to_end(rules, program, repeats=repeats, **kw)
        res[name] = {**_entry(ns), "cache_hit_rate": round(hit, 4)}
    return res


if __name__ == "__main__":
    r = bench_classifier()
    print(f"classifier: {r['rules']} rules in {r['masks']} subtables (compiled in {r['compile_s']} s), "
          f"{r['subtables_probed']} probed per lookup, batches of {BATCH}, median ns/packet, kernel call included")
    labels = {"tss": "tuple-space search, no cache",
              "cache_miss": "flow cache missing (64k flows) + search",
              "cache_hit": "flow cache hitting (256 flows)",
              "linear": "linear scan (the old lookup)",
              "e2e_many": "parse + flow tables, 64 B frames, 64k flows",
              "e2e_1k": "parse + flow tables, 64 B frames, 1k flows",
              "e2e_zipf": "parse + flow tables, 64 B, 64k flows Zipf(1)",
              "e2e_few": "parse + flow tables, 64 B frames, 256 flows hot"}
    for k, label in labels.items():
        hit = f"  cache hits {r[k]['cache_hit_rate']:.1%}" if "cache_hit_rate" in r[k] else ""
        print(f"  {label:46s} {r[k]['mpps']:8.2f} Mpps  {r[k]['ns_per_pkt']:8.1f} ns/packet{hit}")
