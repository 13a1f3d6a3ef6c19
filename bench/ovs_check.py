"""Does OVS-DPDK do what softdpu does?  Both run a pipeline on the same captures; their outputs compared.

    python bench/ovs_check.py PIPELINE [--size 64] [--flows 2]
    from ovs_check import check; check("pipelines/vxlan-overlay.toml", {"p1": a.pcap, "uplink": b.pcap})

bench/compare.py times OVS-DPDK on a pipeline's own packets; this is the check that
the rate is for the same work. OVS-DPDK runs the pipeline as bench/ovs_dpdk.py
run_pipeline(capture=True) sets it up (tunnels as bench/ovs_tunnels.py translates
them), every capture sent port after port, twice (the first pass warms OVS's
caches), the second pass compared; softdpu gets the same packets in the same order,
one at a time (the test harness), also twice. What left each port is compared as a
multiset of frames (the ports' captures interleave differently in time, so only each
port's own order is common), after `mask`: in a VXLAN/Geneve packet the outer UDP
source port, which legitimately differs (both hash the inner flow, each its own way:
OVS 32768 + its 5-tuple hash scaled to 28232 ports, softdpu 49152 + its flow hash
mod 16384; over IPv6 the UDP checksum follows), and the outer IPv4 ID and header
checksum (both write ID 0: masked only so that an ID would not count as a
difference). Frames only softdpu sent that are what its `reject` sends (TCP RST,
ICMP 3/13, ICMPv6 1/1) are counted as "rejects", not as differences: run_pipeline
compiles a [firewall]'s reject for OVS as a drop (OVS cannot send them).

{"in": packets sent, "softdpu": frames out, "ovs": frames out, "same": equal frames, "rejects": ..,
 "only_softdpu": [(port, hex)], "only_ovs": [(port, hex)]} -- at most 5 of each listed.
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

LISTED = 5


def mask(frame):
    """The frame with what legitimately differs in a UDP tunnel packet zeroed: the UDP source
    port (and so, over IPv6, the UDP checksum) and the outer IPv4 ID and header checksum."""
    b = bytearray(frame)
    if len(b) >= 42 and b[12:14] == b"\x08\x00" and b[23] == 17:
        l4 = 14 + (b[14] & 15) * 4
        ip_sums = (18, 24)
    elif len(b) >= 62 and b[12:14] == b"\x86\xdd" and b[20] == 17:
        l4, ip_sums = 54, ()
    else:
        return bytes(b)
    if int.from_bytes(b[l4 + 2: l4 + 4], "big") not in (4789, 6081):
        return bytes(b)
    for off in ip_sums:
        b[off: off + 2] = b"\0\0"
    b[l4: l4 + 2] = b"\0\0"
    if not ip_sums:
        b[l4 + 6: l4 + 8] = b"\0\0"
    return bytes(b)


def softdpu_outputs(pipeline, pcaps):
    """{port: [frames]} that leave softdpu when each capture is sent, in pcaps' order, in the
    second of two passes (as OVS-DPDK's in run_pipeline(capture=True))."""
    from ovs_oracle import read_capture
    from softdpu.testing.harness import Harness

    out = {}
    with Harness.load(pipeline) as h:
        for n in (1, 2):
            h.clear()
            for port, path in pcaps.items():
                for _, frame, _ in read_capture(path):
                    h.send(port, frame)
        for name, q in h.queues.items():
            out[name] = [bytes(x.frame) for x in q]
    return out


def is_reject(frame):
    """A TCP RST, ICMP "administratively prohibited" (3/13) or ICMPv6 (1/1): what softdpu's
    reject sends and run_pipeline's OVS flows (reject compiled as drop) do not."""
    from scapy.layers.inet import ICMP, TCP
    from scapy.layers.inet6 import ICMPv6DestUnreach
    from scapy.layers.l2 import Ether

    pkt = Ether(frame)
    if ICMP in pkt:
        return pkt[ICMP].type == 3 and pkt[ICMP].code == 13
    if ICMPv6DestUnreach in pkt:
        return pkt[ICMPv6DestUnreach].code == 1
    return TCP in pkt and bool(pkt[TCP].flags.R)


def compare_outputs(ours, theirs):
    res = {"softdpu": sum(map(len, ours.values())), "ovs": sum(map(len, theirs.values())), "same": 0,
           "rejects": 0, "only_softdpu": [], "only_ovs": []}
    for port in sorted(set(ours) | set(theirs)):
        a = Counter(mask(f) for f in ours.get(port, []))
        b = Counter(mask(f) for f in theirs.get(port, []))
        res["same"] += sum((a & b).values())
        rejects = Counter({f: n for f, n in (a - b).items() if is_reject(f)})
        res["rejects"] += sum(rejects.values())
        a -= rejects
        res["only_softdpu"] += [(port, f.hex()) for f in (a - b).elements()]
        res["only_ovs"] += [(port, f.hex()) for f in (b - a).elements()]
    res["differ"] = len(res["only_softdpu"]) + len(res["only_ovs"])
    res["only_softdpu"], res["only_ovs"] = res["only_softdpu"][:LISTED], res["only_ovs"][:LISTED]
    return res


def check(pipeline, pcaps):
    from ovs_dpdk import run_pipeline
    from ovs_oracle import read_capture

    theirs = run_pipeline(pipeline, pcaps, capture=True)
    ours = softdpu_outputs(pipeline, pcaps)
    res = compare_outputs(ours, theirs)
    res["in"] = sum(len(read_capture(p)) for p in pcaps.values())     # per pass
    return res


def main(argv=None):
    import tempfile

    from compare import pipeline_traffic

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--size", default="64")
    ap.add_argument("--flows", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ovs-check-") as d:
        pcaps, _ = pipeline_traffic(args.pipeline, Path(d), args.size, args.flows, min_pool=1)
        print(json.dumps(check(args.pipeline, pcaps), indent=2))


if __name__ == "__main__":
    main()
