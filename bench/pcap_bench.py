"""Benchmark of the pcap ports: read-only and read+write throughput in Mpps.

A synthetic libpcap file of n frames of `size` bytes is built with numpy
(one structured array, one tofile), then read in batches of 256 and, in a
second pass, read and written back whole to one output file.
"""
import os
import tempfile
import time

import numpy as np

from softdpu.batch import Batch
from softdpu.ports.capture import open_capture
from softdpu.ports.pcap_write import PcapWriter


def synth_pcap(path, n, size=64, t0=1_700_000_000):
    """Write a libpcap (µs) file of n Ethernet frames of `size` bytes, fast."""
    rec = np.dtype([("sec", "<u4"), ("usec", "<u4"), ("incl", "<u4"), ("orig", "<u4"),
                    ("frame", "u1", (size,))])
    recs = np.zeros(n, dtype=rec)
    i = np.arange(n, dtype=np.int64)
    recs["sec"] = t0 + i // 1_000_000
    recs["usec"] = i % 1_000_000
    recs["incl"] = recs["orig"] = size
    frame = np.zeros(size, dtype=np.uint8)
    frame[:14] = list(bytes.fromhex("02000000000202000000000108 00".replace(" ", "")))
    recs["frame"] = frame
    recs["frame"][:, size - 4:] = i.astype("<u4").view(np.uint8).reshape(n, 4)  # seq no
    with open(path, "wb") as f:
        f.write(np.array([0xA1B2C3D4], "<u4").tobytes()
                + np.array([2, 4], "<u2").tobytes()
                + np.array([0, 0, 262144, 1], "<u4").tobytes())
        recs.tofile(f)


def _read(path, batch):
    with open_capture(path, 1) as reader:
        while True:
            batch.clear()
            if not reader.fill(batch):
                return reader.packets


def _read_write(path, out, batch):
    idx = np.arange(batch.size, dtype=np.int64)
    batch.tx[:, 1] = 1
    with open_capture(path, 1) as reader, PcapWriter(out) as writer:
        while True:
            batch.clear()
            n = reader.fill(batch)
            if not n:
                return writer.packets
            batch.tx[:n, 0] = idx[:n]
            batch.n_tx = n
            writer.write_tx(batch, 1)


def bench_pcap(n=1_000_000, size=64, repeat=3):
    """Time reading and reading+writing n frames of `size` bytes; {name: Mpps}."""
    batch = Batch(size=256)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.pcap"), os.path.join(tmp, "out.pcap")
        synth_pcap(src, n, size)
        synth_pcap(os.path.join(tmp, "warm.pcap"), 1000, size)   # compile / load kernels
        _read_write(os.path.join(tmp, "warm.pcap"), dst, batch)
        result = {}
        for name, run in (("pcap_read", lambda: _read(src, batch)),
                          ("pcap_read_write", lambda: _read_write(src, dst, batch))):
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                got = run()
                best = min(best, time.perf_counter() - t)
                assert got == n, (name, got, n)
            result[name] = n / best / 1e6
        if os.path.getsize(dst) != os.path.getsize(src):
            raise AssertionError("read+write output differs in size from the input")
    return result


if __name__ == "__main__":
    for name, mpps in bench_pcap().items():
        print(f"{name:18s} {mpps:7.2f} Mpps  ({1e3 / mpps:5.1f} ns/packet)")
