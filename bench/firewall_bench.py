"""Benchmark of the stateful firewall pipeline (ct(), conntrack), in memory, one core.

    python bench/firewall_bench.py [--conns 1000,100000,1000000] [--dist uniform|zipf]
                                   [--runs 5] [--passes 2] [--json]

pipelines/firewall.toml (its .flows: table 0 `ip, ct(table=1)`; table 1 commits
new connections from inside (port 1) with ct_mark=1 and passes +est packets
with ct_mark=1 both ways), with `[conntrack] size` raised to the number of
connections (config.load, then cfg.conntrack_size; the file is not changed).
Batches of 256 (the file's), checksums verified by conntrack as OVS does.

Connections: N, half TCP (to port 80), half UDP (to port 53), clients
10.0.0.0/8 on `inside`, servers 192.168.0.0/16 on `outside`.  Set-up (not
timed): every TCP connection does its handshake (SYN from inside, SYN-ACK
from outside, ACK from inside), every UDP one a request and a reply, all
through dpu.process; then the table must hold N connections, every packet
having left (no drops).

Steady state (timed): a pool of 64-byte frames of established connections,
each packet of a connection drawn at random (uniform, or Zipf s=1.1 over a
random permutation of the connections) and a random direction: TCP pure
ACKs (IP length 40, padded to 64 bytes, seq/ack/window of the handshake:
valid and +est every time), UDP datagrams (IP length 50).  The pool has
max(65,536, N) packets capped at 1,048,576, so at 1M connections it touches
~63 % of them (uniform) and the table does not fit in the caches.  Each
batch is refilled as the pcap reader fills it (l2_switch_bench.Feeder: not
timed), then `dpu.process(batch)` is timed: parse -> flow tables (two
passes per packet: ct() lookup + update, recirculation to table 1) -> stats.
A second loop times the stages one by one (parse, flows incl. conntrack,
stats).  Every figure is the median over `runs` runs of `passes` passes of
the pool; every packet must leave (checked after the timed runs).
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from l2_switch_bench import Feeder, _pass_process, timed_runs, _put, clock  # noqa: E402
from softdpu import config  # noqa: E402
from softdpu.pipeline import Dpu  # noqa: E402

FRAME = 64
INSIDE, OUTSIDE = 1, 2
# packet kinds
SYN, SYNACK, C2S, S2C = 0, 1, 2, 3
TCP_FLAGS = {SYN: 0x02, SYNACK: 0x12, C2S: 0x10, S2C: 0x10}


def _csum(words_sum):
    s = words_sum
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _sum16(b):
    """Sum of the big-endian 16-bit words of uint8[n, even]."""
    w = b.reshape(len(b), b.shape[1] // 2, 2).astype(np.uint64)
    return (w[:, :, 0] << np.uint64(8) | w[:, :, 1]).sum(axis=1)


def conn_fields(c):
    """Per connection c (int64 array): client ip, server ip, sport, dport, tcp?, client ISN, server ISN."""
    c = np.asarray(c, np.int64)
    tcp = (c & 1) == 0
    cip = (0x0A000000 | (c >> 10)).astype(np.uint64)
    sport = (1024 + (c & 1023)).astype(np.uint64)
    sip = (0xC0A80000 | (c % 4093)).astype(np.uint64)
    dport = np.where(tcp, 80, 53).astype(np.uint64)
    cisn = ((c.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF))
    sisn = ((c.astype(np.uint64) * np.uint64(40503) + np.uint64(12345)) & np.uint64(0xFFFFFFFF))
    return cip, sip, sport, dport, tcp, cisn, sisn


def frames(c, kind):
    """uint8[n, 64] frames of connections c, kinds (SYN / SYNACK / C2S / S2C); in_port int64[n]."""
    c = np.asarray(c, np.int64)
    kind = np.asarray(kind, np.int64)
    n = len(c)
    cip, sip, sport, dport, tcp, cisn, sisn = conn_fields(c)
    fwd = (kind == SYN) | (kind == C2S)
    src, dst = np.where(fwd, cip, sip), np.where(fwd, sip, cip)
    sp, dp = np.where(fwd, sport, dport), np.where(fwd, dport, sport)
    out = np.zeros((n, FRAME), np.uint8)
    _put(out, 0, np.where(fwd, 0x02_00_00_00_00_02, 0x02_00_00_00_00_01), 6)
    _put(out, 6, np.where(fwd, 0x02_00_00_00_00_01, 0x02_00_00_00_00_02), 6)
    _put(out, 12, np.full(n, 0x0800), 2)
    ip_len = np.where(tcp, 40, 50)
    hdr = np.zeros((n, 20), np.uint8)
    hdr[:, 0] = 0x45
    _put(hdr, 2, ip_len, 2)
    hdr[:, 8] = 64
    hdr[:, 9] = np.where(tcp, 6, 17)
    _put(hdr, 12, src, 4)
    _put(hdr, 16, dst, 4)
    _put(hdr, 10, _csum(_sum16(hdr)), 2)
    out[:, 14:34] = hdr
    l4 = np.zeros((n, 30), np.uint8)           # TCP header (20) or UDP header + 22 bytes payload
    _put(l4, 0, sp, 2)
    _put(l4, 2, dp, 2)
    # TCP: seq/ack as after the handshake (SYN: seq = ISN, SYN-ACK: seq = ISN, ack = peer ISN + 1)
    one = np.uint64(1)
    m32 = np.uint64(0xFFFFFFFF)
    seq = np.select([kind == SYN, kind == SYNACK, kind == C2S], [cisn, sisn, (cisn + one) & m32],
                    (sisn + one) & m32)
    ack = np.select([kind == SYN, kind == SYNACK, kind == C2S], [np.zeros_like(cisn), (cisn + one) & m32,
                                                                   (sisn + one) & m32], (cisn + one) & m32)
    flags = np.array([TCP_FLAGS[int(k)] for k in range(4)], np.uint64)[kind]
    t = np.flatnonzero(tcp)
    tl = l4[t]
    _put(tl, 4, seq[t], 4)
    _put(tl, 8, ack[t], 4)
    tl[:, 12] = 0x50
    _put(tl, 13, flags[t], 1)
    _put(tl, 14, np.full(len(t), 65535), 2)
    l4[t] = tl
    u = np.flatnonzero(~tcp)
    ul = l4[u]
    _put(ul, 4, np.full(len(u), 30), 2)
    ul[:, 8:30] = 0x61
    l4[u] = ul
    # L4 checksums over the pseudo-header
    pseudo = np.zeros((n, 12), np.uint8)
    _put(pseudo, 0, src, 4)
    _put(pseudo, 4, dst, 4)
    pseudo[:, 9] = np.where(tcp, 6, 17)
    _put(pseudo, 10, ip_len - 20, 2)
    s_t = _sum16(pseudo[t]) + _sum16(l4[t, :20])
    s_u = _sum16(pseudo[u]) + _sum16(l4[u])
    ck_t = _csum(s_t)
    ck_u = _csum(s_u)
    ck_u[ck_u == 0] = 0xFFFF
    tl = l4[t]
    _put(tl, 16, ck_t, 2)
    l4[t] = tl
    ul = l4[u]
    _put(ul, 6, ck_u, 2)
    l4[u] = ul
    out[:, 34:64] = l4                         # TCP: 10 bytes of Ethernet padding after IP length 40
    out[t, 54:64] = 0
    in_port = np.where(fwd, INSIDE, OUTSIDE).astype(np.int64)
    return out, in_port


def setup_sequence(n):
    """(connection, kind) of the set-up traffic, in order, as chunks of at most 64k connections:
    per chunk SYNs / UDP requests, then SYN-ACKs / replies, then the handshake ACKs."""
    step = 65536
    for lo in range(0, n, step):
        c = np.arange(lo, min(n, lo + step), dtype=np.int64)
        tcp = (c & 1) == 0
        yield c, np.full(len(c), SYN)
        yield c, np.full(len(c), SYNACK)
        yield c[tcp], np.full(int(tcp.sum()), C2S)


def pool_sequence(n, size, dist, seed=11):
    rng = np.random.default_rng(seed)
    if dist == "zipf":
        perm = rng.permutation(n)
        ranks = np.arange(1, n + 1, dtype=np.float64)
        p = ranks ** -1.1
        p /= p.sum()
        c = perm[rng.choice(n, size, p=p)]
    else:
        c = rng.integers(0, n, size)
    kind = np.where(rng.random(size) < 0.5, C2S, S2C)
    return c.astype(np.int64), kind


def _pass_stages(dpu, feed):
    """The stages one by one, as Dpu.process calls them; the conntrack prefetch (when the
    table is big enough for Conntrack.prefetch to work) is timed with the flow tables."""
    batch, pk = dpu.batch, 0
    tp = tf = ts = 0.0
    ct = dpu.flows.conntrack
    pre = hasattr(ct, "prefetch")
    for lo in feed.batches():
        pk += feed.fill(batch, lo)
        t0 = clock()
        dpu.parse.run(batch)
        t1 = clock()
        if pre:
            ct.prefetch(batch)
        dpu.flows.run(batch)
        t2 = clock()
        dpu.stats.add(batch, dpu.port_index)
        t3 = clock()
        tp += t1 - t0
        tf += t2 - t1
        ts += t3 - t2
    return (tp, tf, ts), pk


def _drain(dpu, feed):
    for lo in feed.batches():
        feed.fill(dpu.batch, lo)
        dpu.process(dpu.batch)


def bench_firewall(conns=100_000, runs=5, passes=2, dist="uniform",
                   pipeline=ROOT / "pipelines" / "firewall.toml", pool=None):
    """{total, parse, flows, stats: {ns_per_pkt, mpps}} medians, plus the traffic's shape."""
    cfg = config.load(pipeline)
    cfg.conntrack_size = max(cfg.conntrack_size, conns)
    dpu = Dpu(cfg)
    if getattr(dpu, "tracer", None) is not None:
        raise AssertionError("tracing should be off")
    clock = Feeder(np.zeros((0, FRAME), np.uint8), np.zeros(0, np.int64), dpu.batch.size).clock
    t_setup = time.perf_counter()
    for c, kind in setup_sequence(conns):
        f, port = frames(c, kind)
        feed = Feeder(f, port, dpu.batch.size)
        feed.clock = clock
        _drain(dpu, feed)
        clock = feed.clock
    t_setup = time.perf_counter() - t_setup
    ct = dpu.flows.conntrack.table
    entries = ct.counters()["entries"]
    if entries != conns or dpu.stats.dropped:
        raise AssertionError(f"set-up: {entries} connections (want {conns}), drops {dpu.stats.drop_counts()}")
    size = pool or min(max(65536, conns), 1 << 20)
    c, kind = pool_sequence(conns, size, dist)
    f, port = frames(c, kind)
    feed = Feeder(f, port, dpu.batch.size)
    feed.clock = clock
    rx0, left0 = dpu.stats.rx, dpu.stats.left
    _pass_process(dpu, feed)                      # warm, untimed
    if dpu.stats.rx - rx0 != size or dpu.stats.left - left0 != size or dpu.stats.dropped:
        raise AssertionError(f"every packet should leave: drops {dpu.stats.drop_counts()}")
    total, split = timed_runs(dpu, feed, runs, passes, _pass_stages, 3)
    cnt = ct.counters()
    if dpu.stats.dropped or cnt["entries"] != conns or cnt["created"] != conns:
        raise AssertionError(f"steady state: drops {dpu.stats.drop_counts()}, table {cnt}")
    split = np.array(split)

    def entry(ns):
        return {"ns_per_pkt": round(float(ns), 1), "mpps": round(1e3 / float(ns), 2)}

    return {"conns": conns, "dist": dist, "total": entry(statistics.median(total)),
            "total_runs_ns": [round(x, 1) for x in total],
            "parse": entry(np.median(split[:, 0])), "flows": entry(np.median(split[:, 1])),
            "stats": entry(np.median(split[:, 2])), "stages_sum": entry(np.median(split.sum(axis=1))),
            "pool": size, "packets_per_run": passes * size, "runs": runs,
            "distinct_conns_in_pool": int(len(np.unique(c))), "setup_s": round(t_setup, 1),
            "table_mb": round((ct.idx.nbytes + ct.keys.nbytes + ct.ent.nbytes + ct.free.nbytes) / 2**20, 1),
            "prefetch": bool(getattr(dpu.flows.conntrack, "prefetching", lambda: False)())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", default="1000,100000,1000000")
    ap.add_argument("--dist", default="uniform", choices=("uniform", "zipf"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = [bench_firewall(int(n), args.runs, args.passes, args.dist) for n in args.conns.split(",")]
    if args.json:
        print(json.dumps(res, indent=2))
        return
    for r in res:
        print(f"firewall, {r['conns']:,} connections ({r['dist']}, pool {r['pool']:,} packets over "
              f"{r['distinct_conns_in_pool']:,} connections, table {r['table_mb']} MB), 64 B, "
              f"median of {r['runs']} runs of {r['packets_per_run']:,} packets")
        for k, label in (("total", "dpu.process (parse + flows + stats)"), ("parse", "  parse"),
                         ("flows", "  flow tables incl. conntrack" + (" + prefetch" if r["prefetch"] else "")), ("stats", "  stats"),
                         ("stages_sum", "  sum of the stages")):
            print(f"  {label:40s} {r[k]['mpps']:8.2f} Mpps  {r[k]['ns_per_pkt']:7.1f} ns/packet")
        print(f"  runs (ns/packet): {r['total_runs_ns']}")


if __name__ == "__main__":
    main()
