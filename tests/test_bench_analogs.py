"""bench/scapy_pipelines.py's analogs of the acl and ESP example pipelines against softdpu itself.

The analogs are what softdpu is compared with in bench/compare.py, so they must do
the same work: every packet of the pipeline's own trace (and of the 64-byte bench
traffic built from it) goes into softdpu (one packet at a time, the test harness)
and into the analog; what leaves must be the same packets on the same ports.

What may differ, and is masked: in ESP tunnel mode the outer IPv4 ID (softdpu: the
sequence number's low 16 bits, scapy's SecurityAssociation: 1) and so the header
checksum; in ipsec-overlay the outer VXLAN UDP source port (softdpu: OVS's hash of
the inner flow, the analog: a CRC-32 of it), which is inside the ciphertext, so
both packets are decrypted with scapy (the SA of the pipeline file) and compared
in the clear.
"""
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP

from softdpu.bench.traffic import _scapy, build, read_trace
from softdpu.testing.harness import Harness

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import scapy_pipelines as sp  # noqa: E402


def softdpu_outputs(h, port, frame):
    """[(ofport, bytes)] that left the harness's Dpu for one frame sent into ofport `port`."""
    by = {p.ofport: p.name for p in h.dpu.ports}
    h.send(by[port], frame)
    out = []
    for name, q in h.queues.items():
        ofport = next(p.ofport for p in h.dpu.ports if p.name == name)
        while q:
            out.append((ofport, bytes(q.popleft().frame)))
    return sorted(out)


def _mask_tunnel_ip(frame):
    """Outer IPv4 ID and checksum zeroed (ESP tunnel mode: they legitimately differ)."""
    b = bytearray(frame)
    if len(b) > 34 and b[12:14] == b"\x08\x00" and b[23] == 50:
        b[18:20] = b[24:26] = b"\0\0"
    return bytes(b)


def _overlay_clear(frame, sas):
    """An ESP frame of ipsec-overlay to the uplink, decrypted, with the VXLAN UDP source port zeroed."""
    from scapy.layers.l2 import Ether
    pkt = Ether(frame)
    if ESP not in pkt:
        return frame
    sa = sp.Sa(sas["to-b"]).sa                # the same keys; a fresh SA decrypts any sequence number
    plain = sa.decrypt(pkt[IP])
    plain[UDP].sport = 0
    return bytes(pkt.getlayer(0).copy().__class__(src=pkt.src, dst=pkt.dst) / plain)


def normalise(name, outs):
    if name == "ipsec-gateway":
        return sorted((p, _mask_tunnel_ip(f)) for p, f in outs)
    if name == "ipsec-overlay":
        sas, _ = sp.read_sas(ROOT / "pipelines" / "ipsec-overlay.toml")
        return sorted((p, _overlay_clear(f, sas)) for p, f in outs)
    return sorted(outs)


def run_both(name, frames):
    _scapy()
    h = Harness.load(ROOT / "pipelines" / f"{name}.toml")
    analog = sp.PIPELINES[name]()
    differ, left = [], 0
    try:
        for k, (port, frame) in enumerate(frames):
            got = normalise(name, softdpu_outputs(h, port, frame))
            want = normalise(name, analog.process(port, frame))
            left += len(got)
            if got != want:
                differ.append((k, port, got, want))
    finally:
        h.close()
    return differ, left


@pytest.mark.parametrize("name", ["acl", "ipsec-overlay", "ipsec-gateway"])
def test_analog_does_what_softdpu_does_on_the_pipelines_trace(name):
    h = Harness.load(ROOT / "pipelines" / f"{name}.toml")
    trace, _ = read_trace(h.dpu)
    h.close()
    differ, left = run_both(name, trace)
    assert not differ, differ[:3]
    assert left >= len(trace) // 3             # not a vacuous agreement: packets did leave


@pytest.mark.parametrize("name", ["acl", "ipsec-overlay", "ipsec-gateway"])
def test_analog_does_what_softdpu_does_on_the_bench_traffic(name):
    """The 64-byte, 3-flow traffic `softdpu bench` (and compare.py) measures with: one pass of it."""
    h = Harness.load(ROOT / "pipelines" / f"{name}.toml")
    t = build(h.dpu, size="64", flows=3, min_pool=1)
    h.close()
    frames = [(int(t.in_port[r]), bytes(t.frames[r, :t.lengths[r]])) for r in range(t.n)]
    differ, left = run_both(name, frames)
    assert not differ, differ[:3]
    assert left >= len(frames) // 3


def test_analog_esp_replay_window_refuses_repeats_and_old_packets():
    sas, _ = sp.read_sas(ROOT / "pipelines" / "ipsec-overlay.toml")
    peer = sp.Sa(dict(sas["from-b"], direction="out"))   # the peer's side of "from-b": encrypts
    inb = sp.Sa(sas["from-b"])
    wire = [bytes(peer.encrypt(IP(src="192.0.2.2", dst="192.0.2.1") / UDP(dport=4789) / b"x")) for _ in range(200)]
    pkts = [IP(w) for w in wire]                          # (scapy's decrypt takes the packet apart: one each)
    again = [IP(w) for w in wire]
    assert inb.decrypt(pkts[150]) is not None
    assert inb.decrypt(again[150]) is None                # a repeat
    assert inb.decrypt(pkts[10]) is None                  # older than the 128-packet window
    assert inb.decrypt(pkts[100]) is not None             # in the window, not seen yet
    forged = IP(bytes(pkts[199]))
    forged[ESP].data = bytes(forged[ESP].data)[:-1] + bytes([forged[ESP].data[-1] ^ 1])
    assert inb.decrypt(forged) is None                    # not authentic
    assert inb.decrypt(again[199]) is not None            # and the forgery did not burn its number


def test_acl_analog_refuses_nothing_it_should_pass():
    """A hand-written case per zone: the analog's decision and rewrite (independent of softdpu)."""
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Dot1Q, Ether
    acl = sp.Acl()
    syn = Ether(src="02:00:00:01:00:05", dst="02:00:00:00:00:fe") / IP(src="10.1.0.5", dst="198.51.100.7", ttl=9) \
        / TCP(sport=40000, dport=443, flags="S")
    (port, out), = acl.process(1, bytes(syn))
    o = Ether(out)
    assert port == 3 and o[Dot1Q].vlan == 100 and o[IP].ttl == 8 and o.dst == "02:00:00:03:00:01"
    vip = Ether(src="02:00:00:03:00:01", dst="02:00:00:00:00:fe") / Dot1Q(vlan=100) / \
        IP(src="198.51.100.7", dst="203.0.113.10") / TCP(sport=50001, dport=443, flags="S")
    (port, out), = acl.process(3, bytes(vip))
    o = Ether(out)
    assert port == 2 and Dot1Q not in o and o[IP].dst == "10.2.0.10"
    assert TCP(bytes(o[TCP])).chksum == o[TCP].chksum
    telnet = syn.copy()
    telnet[TCP].dport = 23
    assert acl.process(1, bytes(telnet)) == [(4, bytes(telnet))]   # denied: to the log host unchanged
