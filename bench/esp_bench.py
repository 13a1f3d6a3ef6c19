"""Benchmark of ESP encryption and decryption, in memory, one core, CPU time.

    python bench/esp_bench.py [--runs 5] [--only aes-gcm-128] [--sizes 64 1400] [--json]

A gateway pipeline written to a temp dir: port lan (1) and port wan (2, mtu 9000), flows
`in_port=1,actions=output:2` and `in_port=2,actions=output:1`, one tunnel-mode SA each way
(198.51.100.1 <-> 203.0.113.2), selectors 10.1.0.0/16 <-> 10.2.0.0/16; batches of 256.

  encrypt   plaintext Ethernet/IPv4/UDP frames arrive on lan, leave on wan in ESP
            (parse -> flows -> esp-out -> stats)
  decrypt   the same frames, encrypted by a peer (a second Dpu with the keys swapped),
            arrive on wan and leave on lan decrypted (parse -> esp-in -> flows -> stats);
            the SA's replay window is reset before each pass of the pool (untimed), so
            every packet is new

Frame sizes are the plaintext frame on the lan side: 64, 512, 1400 bytes, and IMIX
(64 / 570 / 1518 bytes in 7 : 4 : 1, the "simple IMIX"), 1024 flows (UDP source port).
Each batch is refilled as the pcap reader fills it (not timed); then the whole
`dpu.process(batch)` is timed, and in a second loop the ESP stage alone (Esp.outbound /
Esp.inbound, the crypto backend included).  Time is the thread's CPU time
(time.thread_time), not the wall clock: the machine is shared, so a busy neighbour slows
the wall clock but not, much, our CPU time (SOFTDPU_BENCH_CLOCK=wall for the wall clock).  Every figure is the median of `runs` passes;
Gbps counts the plaintext frame bytes, Mpps the packets.  Every packet must leave by the
expected port (checked on an untimed pass).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from l2_switch_bench import Feeder  # noqa: E402
from softdpu.batch import M_LEN  # noqa: E402
from softdpu.pipeline import Dpu  # noqa: E402
from softdpu.stages.esp import libcrypto  # noqa: E402

# CPU time by default (a shared machine); SOFTDPU_BENCH_CLOCK=wall for the wall clock
clock = time.perf_counter if os.environ.get("SOFTDPU_BENCH_CLOCK") == "wall" else time.thread_time
AEADS = {"aes-gcm-128": 16, "aes-gcm-256": 32, "chacha20-poly1305": 32}
SIZES = {"64": [64], "512": [512], "1400": [1400], "imix": [64] * 7 + [570] * 4 + [1518]}
FLOWS = 1024
POOL = 32_768
LAN, WAN = 1, 2


def _pipeline(tmp, aead, swap=False):
    k1 = bytes((7 * i + 1) & 0xFF for i in range(AEADS[aead])).hex()
    k2 = bytes((5 * i + 3) & 0xFF for i in range(AEADS[aead])).hex()
    local, remote = "198.51.100.1", "203.0.113.2"
    out_key, in_key = (k2, k1) if swap else (k1, k2)
    if swap:
        local, remote = remote, local
    mine, theirs = ("10.2.0.0/16", "10.1.0.0/16") if swap else ("10.1.0.0/16", "10.2.0.0/16")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "b.flows").write_text(f"in_port={LAN},actions=output:{WAN}\nin_port={WAN},actions=output:{LAN}\n")
    sa = '[[esp.sa]]\nname = "{n}"\nspi = {spi}\ndirection = "{d}"\nmode = "tunnel"\naead = "{a}"\n' \
         'key = "{k}"\nsalt = "0a0b0c0d"\nlocal = "{l}"\nremote = "{r}"\n'
    (tmp / "b.toml").write_text(
        f'[pipeline]\nflows = "b.flows"\nbatch = 256\n'
        f'[[port]]\nname = "lan"\nofport = {LAN}\ntype = "pcap"\n'
        f'[[port]]\nname = "wan"\nofport = {WAN}\ntype = "pcap"\nmtu = 9000\n'
        + sa.format(n="out", spi=0x1001 if not swap else 0x2001, d="out", a=aead, k=out_key, l=local, r=remote)
        + sa.format(n="in", spi=0x2001 if not swap else 0x1001, d="in", a=aead, k=in_key, l=local, r=remote)
        + f'[[esp.policy]]\nsa = "out"\nsrc = "{mine}"\ndst = "{theirs}"\n'
        + f'[[esp.policy]]\nsa = "in"\nsrc = "{theirs}"\ndst = "{mine}"\n')
    return Dpu.load(tmp / "b.toml")


def plain_frames(sizes, n=POOL):
    """uint8[n, max size] frames (lengths as `sizes` cycles) and their lengths; 10.1.0.5 -> 10.2.0.7 UDP."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    width = max(sizes)
    out = np.zeros((n, width), np.uint8)
    lens = np.zeros(n, np.int64)
    heads = {}
    for s in set(sizes):
        heads[s] = np.frombuffer(bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:00:01")
                                       / IP(src="10.1.0.5", dst="10.2.0.7", len=s - 14, id=7)
                                       / UDP(sport=1, dport=5000, len=s - 34, chksum=0)), np.uint8)
    rng = np.random.default_rng(5)
    for k in range(n):
        s = sizes[k % len(sizes)]
        out[k, :42] = heads[s]
        out[k, 42:s] = (k + np.arange(s - 42)) & 0xFF
        sport = 1024 + int(rng.integers(0, FLOWS))
        out[k, 34:36] = (sport >> 8, sport & 0xFF)
        lens[k] = s
    return out, lens


def _feeder(frames, lens, in_port, size):
    f = Feeder(frames, in_port, size)
    f.meta[:, M_LEN] = lens
    f.meta[:, 2] = lens          # wire length
    return f


def _encrypted(tmp, aead, frames, lens):
    """The frames as the peer sends them: its out SA is our in SA (seq 1..n, in order)."""
    peer = _pipeline(tmp / "peer", aead, swap=True)
    flipped = frames.copy()
    flipped[:, 26:30], flipped[:, 30:34] = frames[:, 30:34], frames[:, 26:30]     # 10.2 -> 10.1
    feed = _feeder(flipped, lens, LAN, peer.batch.size)
    rows, out_lens = [], []
    b = peer.batch
    for lo in feed.batches():
        feed.fill(b, lo)
        peer.process(b)
        assert b.n_tx == b.n, peer.esp.lines()
        for j in range(b.n_tx):
            rows.append(b.packet(int(b.tx[j, 0])))
    width = max(len(r) for r in rows)
    enc = np.zeros((len(rows), width), np.uint8)
    for k, r in enumerate(rows):
        enc[k, : len(r)] = np.frombuffer(r, np.uint8)
        out_lens.append(len(r))
    return enc, np.array(out_lens, np.int64)


def _reset_window(dpu):
    t = dpu.esp.table
    k = next(k for k, s in enumerate(t.sas) if s.direction == "in")
    t.seqs[k] = 0
    t.bitmap[k] = 0


def _timed_pass(dpu, feed, direction, stage_only):
    batch, cpu, n = dpu.batch, 0.0, 0
    esp, clones = dpu.esp, 0
    if direction == "decrypt":
        _reset_window(dpu)
    for lo in feed.batches():
        n += feed.fill(batch, lo)
        if stage_only:
            if direction == "encrypt":
                for name, step in dpu.steps:
                    if name == "esp-out":
                        break
                    step(batch)
                t = clock()
                esp.outbound(batch, clones)
                cpu += clock() - t
            else:
                dpu.parse.run(batch)
                t = clock()
                esp.inbound(batch, dpu.config.drop_malformed)
                cpu += clock() - t
        else:
            t = clock()
            dpu.process(batch)
            cpu += clock() - t
    return cpu, n


def bench_case(aead, size, direction, runs=5):
    sizes = SIZES[size]
    frames, lens = plain_frames(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        dpu = _pipeline(Path(tmp) / "me", aead)
        if direction == "decrypt":
            frames, lens = _encrypted(Path(tmp), aead, frames, lens)
    feed = _feeder(frames, lens, LAN if direction == "encrypt" else WAN, dpu.batch.size)
    want_port = WAN if direction == "encrypt" else LAN
    _timed_pass(dpu, feed, direction, False)                   # warm
    if direction == "decrypt":
        _reset_window(dpu)
    b = dpu.batch
    for lo in feed.batches():                                  # check: every packet leaves, right port
        feed.fill(b, lo)
        dpu.process(b)
        if b.n_tx != b.n or not (b.tx[: b.n_tx, 1] == want_port).all():
            raise AssertionError(f"{aead} {size} {direction}: {b.n_tx}/{b.n} out; {dpu.esp.lines()}")
    plain_bytes = float(sum(sizes) / len(sizes))
    res = {}
    for label, stage in (("process", False), ("esp", True)):
        per = []
        for _ in range(runs):
            cpu, n = _timed_pass(dpu, feed, direction, stage)
            per.append(cpu / n)
        s = statistics.median(per)
        res[label] = {"ns_per_packet": s * 1e9, "mpps": 1e-6 / s, "gbps": plain_bytes * 8 / s / 1e9}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=list(AEADS))
    ap.add_argument("--sizes", nargs="*", default=list(SIZES))
    ap.add_argument("--directions", nargs="*", default=["encrypt", "decrypt"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    print(f"crypto backend: {'libcrypto (numba)' if libcrypto.AVAILABLE else 'cryptography (fallback)'}",
          file=sys.stderr)
    results = {}
    if not args.json:
        print(f"{'case':36} {'process ns/pkt':>14} {'Mpps':>7} {'Gbps':>7}   {'esp ns/pkt':>10} {'Mpps':>7} {'Gbps':>7}")
    for aead in args.only:
        for size in args.sizes:
            for direction in args.directions:
                r = bench_case(aead, size, direction, args.runs)
                name = f"{aead} {direction} {size}"
                results[name] = r
                if not args.json:
                    p, e = r["process"], r["esp"]
                    print(f"{name:36} {p['ns_per_packet']:14.1f} {p['mpps']:7.2f} {p['gbps']:7.2f}   "
                          f"{e['ns_per_packet']:10.1f} {e['mpps']:7.2f} {e['gbps']:7.2f}", flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
