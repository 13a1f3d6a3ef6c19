"""Benchmark of the l2-switch pipeline (actions=normal, MAC learning, two VLANs), in memory, one core.

    python bench/l2_switch_bench.py [--runs 7] [--passes 4] [--json]

pipelines/l2-switch.toml: p1 access VLAN 10, p2 access VLAN 20, p3 trunk
(10, 20), p4 access VLAN 10; batches of 256.  Traffic: 1000 hosts, each on a
random port (a host on the trunk in VLAN 10 or 20, its frames tagged), a pool
of 65,536 64-byte frames (256 batches) drawn at random:

  97 %  IPv4/UDP unicast to a random host of the same VLAN on another port
        (known after warm-up: one copy, to its port; tagged/untagged as the
        ports need, so trunk <-> access traffic gets a rewritten copy)
   2 %  ARP requests to ff:ff:ff:ff:ff:ff (flood within the VLAN)
   1 %  IPv4/UDP to an unknown unicast MAC (flood within the VLAN)

Warm-up: every host sends one ARP request (the MAC table learns all 1000),
then one whole pass of the pool (kernels loaded, caches warm).  Each timed
batch is first refilled as the pcap reader fills it (put_packet: the meta row
zeroed, then start, length, wire length, timestamp, in_port, drop = 0; the
frame bytes copied to the slot) -- not timed, as reading is the ports' job --
then `dpu.process(batch)` is timed: parse -> flow tables (normal) -> stats,
exactly the calls of a `softdpu run`, tracing off.  Timestamps go up 67 ns a
packet (10 GbE line rate at 64 B), so MAC aging sees a live clock.

A second loop times the three stages one by one (dpu.parse.run,
dpu.flows.run, dpu.stats.add, as Dpu.process calls them) for the split.
Every figure is the median over `runs` runs of `passes` passes of the pool.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from softdpu.bench.feed import NS_PER_PKT_CLOCK, T0, Feeder  # noqa: E402,F401 (the other benches import them from here)
from softdpu.pipeline import Dpu  # noqa: E402

FRAME = 64
# SOFTDPU_BENCH_CLOCK=cpu times with this thread's CPU time instead of the wall clock: for A/B
# comparisons on a machine other work shares (a syscall per reading: ~1 ns/packet more)
clock = time.thread_time if os.environ.get("SOFTDPU_BENCH_CLOCK") == "cpu" else time.perf_counter
HOSTS = 1000
POOL = 65_536
PORTS = {1: 10, 2: 20, 3: None, 4: 10}   # ofport -> access VLAN (None: trunk 10+20)
BROADCAST, UNKNOWN = 0.02, 0.01


def _put(out, col, values, width):
    """Big-endian integers `values` (n,) into out[:, col:col+width]."""
    v = np.asarray(values, np.uint64)
    for b in range(width):
        out[:, col + b] = ((v >> np.uint64(8 * (width - 1 - b))) & np.uint64(0xFF)).astype(np.uint8)


def hosts(n=HOSTS, seed=7):
    """(mac, ip, ofport, vlan) arrays of n hosts spread over the ports and VLANs."""
    rng = np.random.default_rng(seed)
    port = rng.integers(1, 5, n)
    vlan = np.array([PORTS[p] if PORTS[p] else int(rng.choice([10, 20])) for p in port])
    k = np.arange(n, dtype=np.uint64)
    mac = np.uint64(0x02_00_00_00_00_00) | k
    ip = np.uint64(0x0A_00_00_00) | (vlan.astype(np.uint64) << np.uint64(16)) | k
    return mac, ip, port, vlan


def frames(src, dst_mac, dst_ip, kind, h):
    """uint8[n, 64] frames from hosts src to dst_mac/dst_ip; kind 0 = IPv4/UDP, 1 = ARP request."""
    mac, ip, port, vlan = h
    n = len(src)
    out = np.zeros((n, FRAME), np.uint8)
    tagged = port[src] == 3
    _put(out, 0, dst_mac, 6)
    _put(out, 6, mac[src], 6)
    for t in (False, True):
        rows = np.flatnonzero(tagged == t)
        if not len(rows):
            continue
        sub = np.zeros((len(rows), FRAME), np.uint8)
        sub[:, :12] = out[rows, :12]
        o = 12
        if t:
            _put(sub, 12, np.full(len(rows), 0x8100), 2)
            _put(sub, 14, vlan[src[rows]], 2)                # PCP 0, VID
            o = 16
        arp = kind[rows] == 1
        _put(sub, o, np.where(arp, 0x0806, 0x0800), 2)
        l3 = o + 2
        u = np.flatnonzero(~arp)
        ip_len = FRAME - l3
        hdr = np.zeros((len(u), 20), np.uint8)
        hdr[:, 0] = 0x45
        _put(hdr, 2, np.full(len(u), ip_len), 2)
        hdr[:, 8] = 64
        hdr[:, 9] = 17
        _put(hdr, 12, ip[src[rows[u]]], 4)
        _put(hdr, 16, dst_ip[rows[u]], 4)
        words = hdr.reshape(len(u), 10, 2).astype(np.uint32)
        s = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        _put(hdr, 10, (~s) & 0xFFFF, 2)
        sub[u, l3: l3 + 20] = hdr
        udp = np.zeros((len(u), 8), np.uint8)
        _put(udp, 0, 1024 + (src[rows[u]] % 60000), 2)
        _put(udp, 2, np.full(len(u), 5001), 2)
        _put(udp, 4, np.full(len(u), ip_len - 20), 2)          # checksum 0: none
        sub[u, l3 + 20: l3 + 28] = udp
        a = np.flatnonzero(arp)
        body = np.zeros((len(a), 28), np.uint8)
        _put(body, 0, np.full(len(a), 0x0001_0800_0604_0001), 8)   # Ethernet/IPv4, 6/4, request
        _put(body, 8, mac[src[rows[a]]], 6)
        _put(body, 14, ip[src[rows[a]]], 4)
        _put(body, 24, dst_ip[rows[a]], 4)
        sub[a, l3: l3 + 28] = body
        out[rows] = sub
    return out


def traffic(h, n=POOL, seed=8):
    """(frames uint8[n, 64], in_port int64[n], kind, retag) of the steady-state mix; kind 0
    unicast, 1 broadcast ARP, 2 unknown unicast; retag: unicast between the trunk and an access port."""
    mac, ip, port, vlan = h
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(mac), n)
    kind = np.zeros(n, np.int64)
    r = rng.random(n)
    kind[r < BROADCAST + UNKNOWN] = 2
    kind[r < BROADCAST] = 1
    dst = np.empty(n, np.int64)
    peers = {(v, p): np.flatnonzero((vlan == v) & (port != p)) for v in (10, 20) for p in PORTS}
    for j in range(n):
        cand = peers[(vlan[src[j]], port[src[j]])]
        dst[j] = cand[rng.integers(0, len(cand))]
    dst_mac = mac[dst].copy()
    dst_mac[kind == 1] = 0xFFFF_FFFF_FFFF
    dst_mac[kind == 2] = np.uint64(0x02_EE_00_00_00_00) | rng.integers(0, 1 << 24, (kind == 2).sum()).astype(np.uint64)
    dst_ip = ip[dst]
    f = frames(src, dst_mac, dst_ip, (kind == 1).astype(np.int64), h)
    retag = (kind == 0) & ((port[src] == 3) != (port[dst] == 3))   # trunk <-> access: a rewritten copy
    return f, port[src].astype(np.int64), kind, retag


def arp_hello(h):
    """One broadcast ARP request from every host (the warm-up that teaches the MAC table)."""
    mac, ip, port, vlan = h
    src = np.arange(len(mac))
    n = len(src)
    f = frames(src, np.full(n, 0xFFFF_FFFF_FFFF, np.uint64), ip[(src + 1) % n], np.ones(n, np.int64), h)
    return f, port.astype(np.int64)


def _pass_process(dpu, feed):
    batch, t_all, pk = dpu.batch, 0.0, 0
    for lo in feed.batches():
        pk += feed.fill(batch, lo)
        t = clock()
        dpu.process(batch)
        t_all += clock() - t
    return t_all, pk


def timed_runs(dpu, feed, runs, passes, pass_stages, n_stages):
    """`runs` rounds of `passes` timed passes of dpu.process and of the stages one by one
    (pass_stages(dpu, feed) -> (seconds per stage, packets)) -> ([ns/packet end to end],
    array[runs, n_stages] of ns/packet per stage)."""
    total, split = [], []
    for _ in range(runs):
        t, pk = 0.0, 0
        for _ in range(passes):
            dt, n = _pass_process(dpu, feed)
            t, pk = t + dt, pk + n
        total.append(t / pk * 1e9)
        acc, pk = np.zeros(n_stages), 0
        for _ in range(passes):
            dt, n = pass_stages(dpu, feed)
            acc, pk = acc + dt, pk + n
        split.append(acc / pk * 1e9)
    return total, np.array(split)


def _pass_stages(dpu, feed):
    batch, pk = dpu.batch, 0
    tp = tf = ts = 0.0
    for lo in feed.batches():
        pk += feed.fill(batch, lo)
        t0 = clock()
        dpu.parse.run(batch)
        t1 = clock()
        dpu.flows.run(batch)
        t2 = clock()
        dpu.stats.add(batch, dpu.port_index)
        t3 = clock()
        tp += t1 - t0
        tf += t2 - t1
        ts += t3 - t2
    return (tp, tf, ts), pk


def bench_l2_switch(runs=7, passes=4, pipeline=ROOT / "pipelines" / "l2-switch.toml"):
    """{total, parse, flows, stats: {ns_per_pkt, mpps}} medians, plus the traffic's shape."""
    h = hosts()
    pool, in_port, kind, retag = traffic(h)
    dpu = Dpu.load(pipeline)
    if getattr(dpu, "tracer", None) is not None:
        raise AssertionError("tracing should be off")
    hello = Feeder(*arp_hello(h), dpu.batch.size)
    feed = Feeder(pool, in_port, dpu.batch.size)
    for lo in hello.batches():
        hello.fill(dpu.batch, lo)
        dpu.process(dpu.batch)
    feed.clock = hello.clock
    counters = dpu.flows.mac_counters.copy()      # (entries, learned, moved, evicted, expired)
    if counters[0] != HOSTS:
        raise AssertionError(f"the MAC table should know {HOSTS} hosts after warm-up: {counters}")
    # one untimed pass: warm, and check what the traffic does
    rx0, left0, drops0 = dpu.stats.rx, dpu.stats.left, dpu.stats.drops.copy()
    tx0 = int(dpu.stats.counters[:, 2].sum())
    _pass_process(dpu, feed)
    rx, left = dpu.stats.rx - rx0, dpu.stats.left - left0
    tx = int(dpu.stats.counters[:, 2].sum()) - tx0
    dropped = {k: int(v) for k, v in enumerate(dpu.stats.drops - drops0) if k and v}
    if rx != POOL or left != POOL or dropped:
        raise AssertionError(f"every packet should leave: rx {rx}, left {left}, drops {dropped}")
    if not (dpu.flows.mac_counters[1:] == counters[1:]).all():
        raise AssertionError(f"steady state should learn nothing new: {dpu.flows.mac_counters} vs {counters}")
    total, split = timed_runs(dpu, feed, runs, passes, _pass_stages, 3)
    if dpu.flows.mac_counters[0] != HOSTS or dpu.stats.dropped:
        raise AssertionError(f"MAC table {dpu.flows.mac_counters}, drops {dpu.stats.drop_counts()}")
    split = np.array(split)

    def entry(ns):
        return {"ns_per_pkt": round(float(ns), 1), "mpps": round(1e3 / float(ns), 2)}

    res = {"total": entry(statistics.median(total)),
           "total_runs_ns": [round(x, 1) for x in total],
           "parse": entry(np.median(split[:, 0])), "flows": entry(np.median(split[:, 1])),
           "stats": entry(np.median(split[:, 2])), "stages_sum": entry(np.median(split.sum(axis=1))),
           "packets_per_run": passes * POOL, "runs": runs,
           "hosts": HOSTS, "tx_per_packet": round(tx / POOL, 3),
           "share_flooded": round(float((kind != 0).mean()), 3),
           "share_retagged": round(float(retag.mean()), 3)}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--passes", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = bench_l2_switch(args.runs, args.passes)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"l2-switch (normal, {r['hosts']} hosts, 2 VLANs, {r['share_flooded']:.0%} flooded, "
          f"{r['share_retagged']:.0%} unicast re-tagged, {r['tx_per_packet']} copies/packet), 64 B frames in memory, batches of 256, "
          f"median of {r['runs']} runs of {r['packets_per_run']} packets")
    for k, label in (("total", "dpu.process (parse + flows + stats)"), ("parse", "  parse"),
                     ("flows", "  flow tables (normal)"), ("stats", "  stats"),
                     ("stages_sum", "  sum of the stages")):
        print(f"  {label:40s} {r[k]['mpps']:8.2f} Mpps  {r[k]['ns_per_pkt']:7.1f} ns/packet")
    print(f"  runs (ns/packet): {r['total_runs_ns']}")


if __name__ == "__main__":
    main()
