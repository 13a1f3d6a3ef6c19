"""The same pipelines written the way a Python user would: scapy, one packet at a time.

    python bench/scapy_pipelines.py CASE --pcap IN.pcap [--packets 20000]
    from scapy_pipelines import PIPELINES, run; run("firewall", frames) -> {mpps, ...}

Each pipeline is a class with process(in_port, frame bytes) -> [(out_port, frame
bytes)], fed from memory (the capture is read before timing, not by scapy's rdpcap):

  output    l2-passthrough: port 1 <-> port 2; the frame is dissected (Ether(frame)),
            as any scapy program that looks at its packets does, and sent as bytes
  normal    a learning switch (dict MAC -> port, one VLAN): learn the source,
            forward to the known port or flood to the others
  firewall  pipelines/firewall.flows' policy: a dict of connections keyed by the
            5-tuple sorted by direction; from port 1 a new one is committed and
            passes, from port 2 only replies of known connections pass; ARP floods
            (no TCP state machine, no checksum checks: simpler than what softdpu
            and OVS do)
  vxlan     VXLAN encap (RFC 7348): Ether/IP/UDP(sport from a hash of the inner
            flow)/VXLAN(vni=5000)/inner, outer IPv4 DF, TTL 64, checksums by scapy

The time is the whole loop (dissect, decide, build bytes) over the packets in
memory, median of `repeat` runs, single thread, in the thread's CPU time (as
`softdpu bench --clock cpu`).
"""
import argparse
import json
import statistics
import sys
import time
import zlib
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN


class Output:
    def process(self, in_port, frame):
        pkt = Ether(frame)
        return [(2 if in_port == 1 else 1, bytes(pkt))]


class Normal:
    def __init__(self, ports=(1, 2)):
        self.ports = ports
        self.macs = {}

    def process(self, in_port, frame):
        pkt = Ether(frame)
        self.macs[pkt.src] = in_port
        out = self.macs.get(pkt.dst)
        raw = bytes(pkt)
        if out is not None and pkt.dst != "ff:ff:ff:ff:ff:ff":
            return [] if out == in_port else [(out, raw)]
        return [(p, raw) for p in self.ports if p != in_port]


class Firewall:
    INSIDE, OUTSIDE = 1, 2

    def __init__(self):
        self.conns = set()

    @staticmethod
    def _key(pkt):
        ip = pkt[IP]
        l4 = pkt[TCP] if TCP in pkt else pkt[UDP] if UDP in pkt else None
        sp, dp = (l4.sport, l4.dport) if l4 is not None else (0, 0)
        return (ip.proto, ip.src, sp, ip.dst, dp)

    def process(self, in_port, frame):
        pkt = Ether(frame)
        if ARP in pkt:
            return [(self.OUTSIDE if in_port == self.INSIDE else self.INSIDE, bytes(pkt))]
        if IP not in pkt:
            return []
        proto, src, sp, dst, dp = self._key(pkt)
        if in_port == self.INSIDE:
            self.conns.add((proto, src, sp, dst, dp))
            return [(self.OUTSIDE, bytes(pkt))]
        if (proto, dst, dp, src, sp) in self.conns:
            return [(self.INSIDE, bytes(pkt))]
        return []


class VxlanEncap:
    def __init__(self, local="192.0.2.1", remote="192.0.2.2", vni=5000,
                 src_mac="02:00:00:00:00:fe", dst_mac="02:00:00:00:02:fe"):
        self.outer = Ether(src=src_mac, dst=dst_mac) / IP(src=local, dst=remote, flags="DF", ttl=64)
        self.vni = vni

    def process(self, in_port, frame):
        inner = Ether(frame)
        sport = 49152 + zlib.crc32(frame[26:38]) % 16384      # addresses + ports of the inner IPv4 flow
        pkt = self.outer / UDP(sport=sport, dport=4789, chksum=0) / VXLAN(vni=self.vni, flags=0x08) / inner
        return [(2, bytes(pkt))]


PIPELINES = {"output": Output, "normal": Normal, "firewall": Firewall, "vxlan": VxlanEncap}


def run(case, frames, repeat=3):
    """{case, mpps, ns_per_packet, packets, out_per_packet}; frames: [(in_port, bytes)]."""
    times, outs = [], 0
    for _ in range(repeat):
        p = PIPELINES[case]()
        t = time.thread_time()
        outs = 0
        for port, frame in frames:
            outs += len(p.process(port, frame))
        times.append(time.thread_time() - t)
    dt = statistics.median(times)
    return {"case": case, "mpps": round(len(frames) / dt / 1e6, 5), "ns_per_packet": round(dt / len(frames) * 1e9),
            "packets": len(frames), "out_per_packet": round(outs / len(frames), 3), "runs": repeat}


def read_frames(path, port=1, limit=None):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from ovs_oracle import read_capture

    out = []
    for _, frame, _ in read_capture(path):
        out.append((port, bytes(frame)))
        if limit and len(out) >= limit:
            break
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=sorted(PIPELINES))
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--packets", type=int, default=20_000)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.case, read_frames(args.pcap, limit=args.packets)), indent=2))


if __name__ == "__main__":
    main()
