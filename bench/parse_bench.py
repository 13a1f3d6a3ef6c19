"""Benchmark of the parse stage: hot batches of a realistic 64-byte mix, in Mpps.

One Batch is filled once with a seeded mix (IPv4 TCP 40 %, IPv4 UDP 30 %,
IPv6 TCP/UDP 15 %, 802.1Q-tagged IPv4 15 %; random addresses, ports and
directions), then Parse().run(batch) is timed over many calls, so the numba
dispatch cost of each call is included.  The result is the median of repeats.
"""
import statistics
import time

import numpy as np

from softdpu.batch import M_PARSE_ERR, Batch
from softdpu.stages.parse import Parse


def mixed_frames(n, seed=1):
    """n realistic frames (bytes), padded to at least 60 bytes as on the wire."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        kind = rng.random()
        sport, dport = (int(p) for p in rng.integers(1024, 65536, 2))
        a = ".".join(str(int(x)) for x in rng.integers(1, 255, 4))
        b = ".".join(str(int(x)) for x in rng.integers(1, 255, 4))
        if kind < 0.40:
            p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=a, dst=b) / TCP(sport=sport, dport=dport, flags="A")
        elif kind < 0.70:
            p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=a, dst=b) / UDP(sport=sport, dport=dport) / bytes(18)
        elif kind < 0.85:
            a6, b6 = (f"2001:db8::{int(x):x}" for x in rng.integers(1, 65535, 2))
            l4 = TCP(sport=sport, dport=dport) if rng.random() < 0.5 else UDP(sport=sport, dport=dport)
            p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src=a6, dst=b6) / l4
        else:
            p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=int(rng.integers(1, 4095))) / IP(src=a, dst=b) / TCP(
                sport=sport, dport=dport)
        frame = bytes(p)
        frames.append(frame + bytes(max(0, 60 - len(frame))))
    return frames


def bench_parse(batch_size=256, repeats=7, calls=2000):
    """Time hot Parse.run calls on one full batch; {mpps, ns_per_pkt} (median)."""
    batch = Batch(size=batch_size)
    for frame in mixed_frames(batch_size):
        batch.append(frame, in_port=1)
    stage = Parse()
    stage.run(batch)                                   # compile or load the kernel
    if batch.meta[: batch.n, M_PARSE_ERR].any():
        raise AssertionError("the benchmark mix should parse without drops")
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            stage.run(batch)
        per_call.append((time.perf_counter() - t) / calls)
    ns = statistics.median(per_call) / batch.n * 1e9
    return {"mpps": 1e3 / ns, "ns_per_pkt": ns}


if __name__ == "__main__":
    r = bench_parse()
    print(f"parse {r['mpps']:7.2f} Mpps  ({r['ns_per_pkt']:5.1f} ns/packet, batch 256, hot)")
