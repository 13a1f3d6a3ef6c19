"""Conntrack kernel cost: ns per packet of ct(commit) creating connections and of
ct(commit) on established ones, with 1k and 1M connections in the table.

    python bench/conntrack_bench.py [--sizes 1000,1000000]

UDP/IPv4 frames with distinct (source address, source port) are written into
pre-parsed batches of 256 (checksums not verified: the frames are patched in
place); batches are reused, so this is the kernel alone (ct_execute_batch:
extract, hash, probe, update, key write, one bounded sweep per batch).
"""
import argparse
import time

import numpy as np
from scapy.all import IP, UDP, Ether, raw

from softdpu.batch import Batch, M_TS
from softdpu.stages.conntrack.stage import Conntrack
from softdpu.stages.parse import parse_batch

ROWS = 256


def make_batches(flow_ids):
    tmpl = np.frombuffer(raw(Ether() / IP(src="10.0.0.1", dst="10.1.0.1") / UDP(sport=1, dport=53)
                             / (b"\x00" * 18)), np.uint8)
    batches = []
    for k in range(0, len(flow_ids), ROWS):
        b = Batch(size=ROWS)
        for f in flow_ids[k:k + ROWS]:
            i = b.append(tmpl.tobytes())
            s = b.meta[i, 0]
            src = 0x0A000000 | (int(f) >> 12)
            b.data[i, s + 26:s + 30] = np.frombuffer(src.to_bytes(4, "big"), np.uint8)
            b.data[i, s + 34:s + 36] = np.frombuffer((1024 + (int(f) & 0xFFF)).to_bytes(2, "big"), np.uint8)
        parse_batch(b.data, b.meta, b.key, b.n, False)
        batches.append(b)
    return batches


def run(ct, batches, ts):
    t0 = time.perf_counter()
    n = 0
    for b in batches:
        b.meta[:b.n, M_TS] = ts
        ct.run(b, zone=0, commit=True)
        n += b.n
    return (time.perf_counter() - t0) * 1e9 / n


def bench(size, rounds=3):
    ct = Conntrack(max_entries=size, check_csum=False, rows=ROWS)
    warm = Conntrack(max_entries=1024, check_csum=False, rows=ROWS)
    run(warm, make_batches(np.arange(512)), 1)     # compile
    fill = make_batches(np.arange(size))
    t_new = run(ct, fill, 10)
    rng = np.random.default_rng(1)
    hot = make_batches(rng.integers(0, size, min(size, 262144) * 2))
    t_est = min(run(ct, hot, 20 + r) for r in range(rounds))
    return t_new, t_est, ct.table.counters()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,1000000")
    a = ap.parse_args()
    for size in (int(x) for x in a.sizes.split(",")):
        t_new, t_est, c = bench(size)
        print(f"{size:>8} connections: create {t_new:6.1f} ns/pkt, established lookup+update "
              f"{t_est:6.1f} ns/pkt  (entries {c['entries']}, refused {c['refused_full']})")


if __name__ == "__main__":
    main()
