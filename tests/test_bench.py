"""`softdpu bench`: the tax arithmetic, the traffic it generates (checked with scapy), the command.

No speed is asserted anywhere: only that the figures are consistent with each
other and with the arithmetic.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror
from scapy.layers.l2 import Ether

from softdpu.bench import tax
from softdpu.bench.feed import Feeder
from softdpu.bench.machine import cpu_mhz
from softdpu.bench.report import rates
from softdpu.bench.traffic import MAX_FLOWS, build, replicate, resize
from softdpu.cli import main
from softdpu.errors import SoftdpuError
from softdpu.pipeline import Dpu

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "pipelines").glob("*.toml"))


# -- the arithmetic ---------------------------------------------------------------
def test_imix_mean_is_7_4_1_of_64_576_1500():
    assert tax.imix_mean() == pytest.approx((7 * 64 + 4 * 576 + 1 * 1500) / 12)
    assert tax.imix_mean() == pytest.approx(354.3333, abs=1e-3)
    pattern = list(tax.IMIX_PATTERN)
    assert len(pattern) == 12
    assert (pattern.count(64), pattern.count(576), pattern.count(1500)) == (7, 4, 1)


@pytest.mark.parametrize("text, unit, value", [
    ("25G", "bps", 25e9), ("25g", "bps", 25e9), ("100Gbps", "bps", 100e9), ("400M", "bps", 400e6),
    ("1.5G", "bps", 1.5e9), ("10Mpps", "pps", 10e6), ("10M pps", "pps", 10e6), ("500kpps", "pps", 5e5),
    ("1e9", None, None), ("2000", "bps", 2000.0), ("10 Gb/s", "bps", 10e9), ("3 Mp/s", "pps", 3e6),
])
def test_parse_load(text, unit, value):
    if unit is None:
        with pytest.raises(SoftdpuError, match="--tax"):
            tax.parse_load(text)
    else:
        assert tax.parse_load(text) == (unit, pytest.approx(value))


@pytest.mark.parametrize("text", ["", "fast", "25X", "-1G", "0G", "G", "25 Gbps pps"])
def test_parse_load_refuses(text):
    with pytest.raises(SoftdpuError, match="--tax"):
        tax.parse_load(text)


def test_line_rate_packets_per_second():
    # the textbook figures: 64-byte frames take 84 bytes of wire, 1500-byte frames 1520
    assert tax.load_pps(("bps", 10e9), 64) == pytest.approx(14_880_952.38, rel=1e-9)
    assert tax.load_pps(("bps", 100e9), 64) == pytest.approx(148_809_523.8, rel=1e-9)
    assert tax.load_pps(("bps", 10e9), 1500) == pytest.approx(822_368.42, rel=1e-7)
    assert tax.load_pps(("bps", 25e9), tax.imix_mean()) == pytest.approx(25e9 / (374.3333 * 8), rel=1e-6)
    assert tax.load_pps(("pps", 10e6), 1500) == 10e6          # a packet rate is a packet rate
    with pytest.raises(ValueError):
        tax.load_pps(("bps", 1e9), 0)


def test_cores_and_tax():
    assert tax.cores(37_202_380.95, 100.0) == pytest.approx(3.7202, rel=1e-4)
    t = tax.tax(("bps", 25e9), 64.0, 100.0, 80.0, 150.0)
    assert t["mpps"] == pytest.approx(25e9 / (84 * 8) / 1e6, rel=1e-4)
    assert t["cores"] == pytest.approx(25e9 / (84 * 8) * 100e-9, rel=1e-3)
    assert t["cores_min"] < t["cores"] < t["cores_max"]
    assert t["mean_l1_frame"] == 84.0
    assert t["load"] == "25 Gbps"
    assert tax.tax(("pps", 10e6), 512.0, 250.0)["cores"] == pytest.approx(2.5)
    assert tax.describe_load(("pps", 1e7)) == "10 Mpps"


def test_rates():
    r = rates(100.0, 64.0, 2600.0)
    assert r["mpps"] == pytest.approx(10.0)
    assert r["gbps_l2"] == pytest.approx(10e6 * 64 * 8 / 1e9)
    assert r["gbps_l1"] == pytest.approx(10e6 * 84 * 8 / 1e9)
    assert r["cycles_per_packet"] == pytest.approx(260.0)
    assert "cycles_per_packet" not in rates(100.0, 64.0, None)


def test_cpu_mhz(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\ncpu MHz\t\t: 2596.120\n")
    assert cpu_mhz(info, tmp_path / "none") == (pytest.approx(2596.12), str(info))
    freq = tmp_path / "scaling_cur_freq"
    freq.write_text("3400000\n")
    info.write_text("processor\t: 0\n")
    assert cpu_mhz(info, freq) == (pytest.approx(3400.0), str(freq))
    assert cpu_mhz(tmp_path / "no-cpuinfo", tmp_path / "none") == (None, None)


# -- the traffic ------------------------------------------------------------------
def _checksums_ok(frame):
    """scapy's own checksums for every IP/TCP/UDP/ICMP header equal the frame's (UDP 0 = none)."""
    pkt = Ether(frame)
    for layer in (IP, TCP, UDP, ICMP):
        if layer in pkt:
            got = pkt[layer].chksum
            if layer is UDP and got == 0:
                continue
            fresh = pkt.copy()
            fresh[layer].chksum = None
            fresh = Ether(bytes(fresh))
            if fresh[layer].chksum != got:
                return False
    return True


UDP_FRAME = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2")
                  / UDP(sport=40000, dport=53) / (b"q" * 20))
TCP_FRAME = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443, flags="S", seq=7))
ICMP_ERR = bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3)
                 / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=53) / b"q")


@pytest.mark.parametrize("size", [64, 512, 1400, 1500])
def test_resize_udp_grows_payload_with_right_lengths_and_checksums(size):
    out = resize(UDP_FRAME, size)
    assert len(out) == size
    pkt = Ether(out)
    assert pkt[IP].len == size - 14 and pkt[UDP].len == size - 34
    assert _checksums_ok(out)


def test_resize_tcp_pads_keeping_the_segment():
    out = resize(TCP_FRAME, 512)
    assert len(out) == 512
    pkt = Ether(out)
    assert pkt[IP].len == 40 and pkt[TCP].seq == 7 and pkt[TCP].flags == "S"
    assert out[:len(TCP_FRAME)] == TCP_FRAME


def test_resize_and_replicate_leave_esp_alone():
    from scapy.layers.ipsec import ESP
    esp = bytes(Ether() / IP(src="203.0.113.2", dst="198.51.100.1") / ESP(spi=0x1001, seq=1, data=b"c" * 60))
    for size in (64, 512):
        out = resize(esp, size)
        assert out[:len(esp)] == esp and len(out) == max(size, len(esp))
    natt = bytes(Ether() / IP(src="203.0.113.2", dst="198.51.100.1") / UDP(sport=4500, dport=4500, chksum=0)
                 / ESP(spi=0x1001, seq=1, data=b"c" * 60))
    assert (replicate(natt, np.arange(3)) == np.frombuffer(natt, np.uint8)).all()


def test_resize_cannot_cut_headers():
    big = bytes(Ether() / IP() / TCP() / (b"x" * 100))
    assert len(resize(big, 64)) == len(big)


def test_replicate_maps_ephemeral_ports_alike_both_ways_with_valid_checksums():
    k = np.arange(50)
    req = replicate(UDP_FRAME, k)
    reply = bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / IP(src="10.0.0.2", dst="10.0.0.1")
                  / UDP(sport=53, dport=40000) / (b"a" * 20))
    rep = replicate(reply, k)
    err = replicate(ICMP_ERR, k)
    seen = set()
    for j in range(len(k)):
        a, b, e = Ether(bytes(req[j])), Ether(bytes(rep[j])), Ether(bytes(err[j]))
        assert a[UDP].dport == 53 and b[UDP].sport == 53
        assert a[UDP].sport == b[UDP].dport        # the reply belongs to the same flow
        assert e[UDPerror].sport == a[UDP].sport   # so does the ICMP error quoting it
        for f in (req[j], rep[j], err[j]):
            assert _checksums_ok(bytes(f))
        seen.add(a[UDP].sport)
    assert len(seen) == len(k)
    assert Ether(bytes(req[0]))[UDP].sport == 40000   # copy 0 is the trace itself


def test_replicate_leaves_tunnel_outer_ports_and_non_ip_alone():
    from scapy.layers.vxlan import VXLAN
    outer = bytes(Ether() / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=54321, dport=4789, chksum=0)
                  / VXLAN(vni=5000) / Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=2000, dport=40000))
    rows = replicate(outer, np.arange(3))
    pkts = [Ether(bytes(r)) for r in rows]
    assert {p[UDP].sport for p in pkts} == {54321}
    assert len({p[VXLAN].payload[UDP].dport for p in pkts}) == 3
    assert all(_checksums_ok(bytes(p[VXLAN].payload)) for p in pkts)
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / b"\x00\x01\x08\x00\x06\x04\x00\x01" / bytes(20))
    assert (replicate(arp, np.arange(4)) == np.frombuffer(arp, np.uint8)).all()


def test_build_imix_and_flows():
    dpu = Dpu.load(ROOT / "pipelines" / "firewall.toml")
    t = build(dpu, size="imix", flows=8, min_pool=1000)
    assert t.n % (t.trace_packets * 8) == 0 and t.n >= 1000
    # trace packets that can take every size: their lengths follow the 7:4:1 pattern
    lengths = t.lengths[: 12 * t.trace_packets]
    assert set(np.unique(lengths)) >= {64, 576, 1500}
    assert t.in_port.min() >= 1 and set(np.unique(t.in_port)) == {1, 2}
    for k in range(t.n):
        if t.lengths[k] in (64, 576, 1500) and t.lengths[k] != len(bytes(Ether(bytes(t.frames[k, :t.lengths[k]])))):
            pytest.fail(f"row {k}: scapy reads a different length")


def test_build_refuses_bad_arguments():
    dpu = Dpu.load(ROOT / "pipelines" / "l2-passthrough.toml")
    with pytest.raises(SoftdpuError, match="--size"):
        build(dpu, size="100")
    with pytest.raises(SoftdpuError, match="--flows"):
        build(dpu, flows=0)
    with pytest.raises(SoftdpuError, match="--flows"):
        build(dpu, flows=MAX_FLOWS + 1)


def test_feeder_variable_lengths():
    from softdpu.batch import M_LEN, M_TS
    dpu = Dpu.load(ROOT / "pipelines" / "l2-passthrough.toml")
    frames = np.zeros((300, 100), np.uint8)
    lengths = np.arange(300) % 40 + 60
    feed = Feeder(frames, np.ones(300, np.int64), dpu.batch.size, lengths)
    n = [feed.fill(dpu.batch, lo) for lo in feed.batches()]
    assert n == [256, 44]
    assert list(dpu.batch.meta[:44, M_LEN]) == list(lengths[256:])
    assert (np.diff(dpu.batch.meta[:44, M_TS]) > 0).all()


# -- the command ------------------------------------------------------------------
def _bench(capsys, *argv):
    rc = main(["bench", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("pipeline", EXAMPLES, ids=lambda p: p.stem)
def test_tax_on_every_example_pipeline(capsys, pipeline):
    rc, out, err = _bench(capsys, str(pipeline), "--tax", "25G", "--tax", "10Mpps", "--size", "imix",
                          "--flows", "4", "--repeat", "2", "--packets", "2000", "--json")
    assert rc == 0, err
    r = json.loads(out)
    dpu = Dpu.load(pipeline)
    assert list(r["stages"]) == list(dict.fromkeys(name for name, _ in dpu.steps))
    w = r["per_pass"]
    assert w["received"] == r["traffic"]["pool_packets"]
    assert w["received"] == w["left"] + w["dropped"]
    assert w["dropped"] == sum(w["drops"].values())
    total = r["total"]
    assert total["min"] <= total["ns_per_packet"] <= total["max"]
    assert total["mpps"] == pytest.approx(1e3 / total["ns_per_packet"], rel=1e-3)
    bps, pps = r["tax"]
    mean = r["traffic"]["mean_frame"]
    assert bps["mpps"] == pytest.approx(25e9 / ((mean + 20) * 8) / 1e6, rel=1e-3)
    assert bps["cores"] == pytest.approx(25e9 / ((mean + 20) * 8) * total["ns_per_packet"] * 1e-9, rel=1e-2)
    assert pps["cores"] == pytest.approx(10e6 * total["ns_per_packet"] * 1e-9, rel=1e-2)


def test_bench_text_output(capsys):
    rc, out, err = _bench(capsys, str(ROOT / "pipelines" / "l2-passthrough.toml"), "--size", "64", "--flows", "2",
                          "--repeat", "1", "--packets", "1000", "--tax", "100G")
    assert rc == 0, err
    assert "end to end (process)" in out and "  parse" in out and "sum of the stages" in out
    assert "infrastructure tax: 100 Gbps" in out and "host cores" in out
    assert "frames 64 (mean" in out


def test_bench_pcap_option(capsys, tmp_path):
    rc, out, err = _bench(capsys, str(ROOT / "pipelines" / "firewall.toml"), "--pcap",
                          f"outside={ROOT / 'fixtures/pcaps/firewall-outside.pcap'}", "--flows", "1",
                          "--repeat", "1", "--packets", "100", "--json")
    assert rc == 0, err
    r = json.loads(out)
    assert r["traffic"]["trace_packets"] == 9 and "outside=" in r["traffic"]["source"]
    rc, out, err = _bench(capsys, str(ROOT / "pipelines" / "l2-passthrough.toml"), "--pcap",
                          str(ROOT / "fixtures/pcaps/l2-mix.pcap"), "--flows", "1", "--repeat", "1",
                          "--packets", "100", "--json")
    assert rc == 0, err
    assert json.loads(out)["traffic"]["source"].startswith("p1=")


@pytest.mark.parametrize("argv, message", [
    (["--size", "100"], "--size"),
    (["--flows", "0"], "--flows"),
    (["--tax", "lots"], "--tax"),
    (["--repeat", "0"], "--repeat"),
    (["--packets", "0"], "--packets"),
    (["--pcap", "/nonexistent.pcap"], "--pcap: no such capture file"),
    (["--pcap", "nope=/nonexistent.pcap"], "--pcap: no port named 'nope'"),
    (["--batch", "0"], "--batch"),
])
def test_bench_bad_input(capsys, argv, message):
    rc, out, err = _bench(capsys, str(ROOT / "pipelines" / "l2-passthrough.toml"), *argv)
    assert rc == 2
    assert err.startswith("softdpu: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_bench_bad_pcap_and_pipeline(capsys, tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    rc, _, err = _bench(capsys, str(ROOT / "pipelines" / "l2-passthrough.toml"), "--pcap", str(bad))
    assert rc == 2 and str(bad) in err
    rc, _, err = _bench(capsys, str(tmp_path / "missing.toml"))
    assert rc == 2 and "missing.toml" in err


def test_bench_pipeline_without_captures(capsys, tmp_path):
    (tmp_path / "x.flows").write_text("actions=drop\n")
    (tmp_path / "x.toml").write_text('[pipeline]\nname = "x"\nflows = "x.flows"\n\n'
                                     '[[port]]\nname = "p1"\nofport = 1\ntype = "pcap"\n')
    rc, _, err = _bench(capsys, str(tmp_path / "x.toml"))
    assert rc == 2 and "no input capture to benchmark with" in err and "--pcap" in err
    rc, out, err = _bench(capsys, str(tmp_path / "x.toml"), "--pcap", str(ROOT / "fixtures/pcaps/l2-mix.pcap"),
                          "--flows", "1", "--repeat", "1", "--packets", "10", "--json")
    assert rc == 0, err
    w = json.loads(out)["per_pass"]
    assert w["left"] == 0 and w["dropped"] == w["received"] == w["drops"]["action_drop"]


def test_bench_as_a_process():
    r = subprocess.run([sys.executable, "-m", "softdpu.cli", "bench", str(ROOT / "pipelines" / "l2-passthrough.toml"),
                        "--repeat", "1", "--packets", "100", "--flows", "1", "--json"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["command"] == (f"softdpu bench {ROOT / 'pipelines' / 'l2-passthrough.toml'} "
                                               "--repeat 1 --packets 100 --flows 1 --json")


def test_build_refuses_to_rewrite_a_long_capture(monkeypatch):
    from softdpu.bench import traffic
    monkeypatch.setattr(traffic, "MAX_TRACE_REWRITE", 10)
    dpu = Dpu.load(ROOT / "pipelines" / "l2-passthrough.toml")        # a 17-packet trace
    with pytest.raises(SoftdpuError, match="too many to resize or replicate"):
        build(dpu, size="64", flows=1)
    t = build(dpu, flows=1, min_pool=100)                              # as captured: fine
    assert t.n == 17 * 6 and t.size == "as captured"
    assert (t.in_port == 1).all()
    frames = [bytes(f[:n]) for f, n in zip(t.frames[:17], t.lengths[:17])]
    assert frames == [f for _, f in traffic.read_trace(dpu)[0]]
