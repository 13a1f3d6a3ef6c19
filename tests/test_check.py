"""`softdpu check PIPELINE CASE_DIR...` (softdpu/testing/check.py): golden cases that pass, fail, update, and bad ones.

Cases are built in tmp_path with scapy on a wire pipeline (p1 -> p2 with
dec_ttl, p2 -> p1, UDP port 9 dropped); the expected outputs are written
by scapy, independently of softdpu's pcap writer.
"""
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapWriter as ScapyPcapWriter

from softdpu import cli

ROOT = Path(__file__).resolve().parent.parent
A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"
T0 = 1764000000.0
FLOWS = ("priority=100,udp,tp_dst=9,actions=drop\npriority=50,in_port=1,ip,actions=dec_ttl,output:2\n"
         "priority=50,in_port=2,actions=output:1\n")


def pipeline(tmp_path):
    (tmp_path / "w.flows").write_text(FLOWS)
    (tmp_path / "w.toml").write_text('[pipeline]\nflows = "w.flows"\n' + "".join(
        f'\n[[port]]\nname = "p{k}"\nofport = {k}\ntype = "pcap"\n' for k in (1, 2)))
    return tmp_path / "w.toml"


def pkt(dport, ttl=64, src=A, dst=B):
    return Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2", ttl=ttl) / UDP(sport=1, dport=dport)


def write(path, packets, t0=T0):
    path.parent.mkdir(parents=True, exist_ok=True)
    with ScapyPcapWriter(str(path), linktype=1, sync=True) as w:
        for k, p in enumerate(packets):
            p = p.copy()
            p.time = t0 + k * 0.001 if not isinstance(t0, list) else t0[k]
            w.write(p)


def case(tmp_path, name="c", expected=None, drops=None):
    """in/p1.pcap: UDP 7, 8, 9 (9 is dropped); expected/p2.pcap: 7 and 8 with TTL 63 unless given."""
    d = tmp_path / name
    write(d / "in" / "p1.pcap", [pkt(7), pkt(8), pkt(9)])
    if expected is not False:
        write(d / "expected" / "p2.pcap", expected or [pkt(7, 63), pkt(8, 63)])
    if drops is not None:
        (d / "expected" / "drops.toml").write_text(drops)
    return d


def check(capsys, *args):
    rc = cli.main(["check", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_a_case_that_matches_passes(tmp_path, capsys):
    p = pipeline(tmp_path)
    c = case(tmp_path, drops="action_drop = 1\n")
    rc, out, _ = check(capsys, p, c)
    assert rc == 0, out
    assert out.splitlines() == [f"PASS {c}  (3 packets in, 2 left, 1 dropped)",   # scapy wrote expected/:
                                "  p2.pcap: the same packets, in a file with another header (e.g. snaplen)"]


def test_a_differing_packet_is_shown_field_by_field_with_its_trace(tmp_path, capsys):
    p = pipeline(tmp_path)
    c = case(tmp_path, expected=[pkt(7, 63), pkt(8, 64)])          # forgot the dec_ttl on the second
    rc, out, _ = check(capsys, p, c)
    assert rc == 1
    lines = out.splitlines()
    assert lines[0] == f"FAIL {c}  (3 packets in, 2 left, 1 dropped)"
    assert lines[1] == "  p2.pcap: 2 packets left, expected 2; packet 2 is the first that differs:"
    assert "  !   IP.ttl      64                 63" in lines or "    ! IP.ttl      64                 63" in lines
    assert "    ! IP.chksum   0x66ce             0x67ce" in lines
    assert any(x.startswith("    it is a copy of input packet 2: softdpu trace ") and x.endswith("--packet 2")
               for x in lines)
    assert "      Result: sent to p2" in lines
    assert lines[-1] == "0 of 1 cases passed"


def test_timestamps_missing_and_extra_packets(tmp_path, capsys):
    p = pipeline(tmp_path)
    late = case(tmp_path, "late")
    write(late / "expected" / "p2.pcap", [pkt(7, 63), pkt(8, 63)], t0=[T0, T0 + 5])
    rc, out, _ = check(capsys, p, late)
    assert rc == 1 and "    same frame, but it left at 1764000000.001000000 instead of 1764000005.000000000" in out
    short = case(tmp_path, "short", expected=[pkt(7, 63)])
    rc, out, _ = check(capsys, p, short)
    assert rc == 1 and "2 packets left, expected 1; packet 2 is the first that differs" in out
    assert "    packet 2 left but was not expected:" in out and "it is a copy of input packet 2" in out
    more = case(tmp_path, "more", expected=[pkt(7, 63), pkt(8, 63), pkt(9, 63)])
    rc, out, _ = check(capsys, p, more)
    assert rc == 1 and "    expected packet 3 did not leave; it was:" in out
    assert "      UDP.dport        9" in out and "to see why: softdpu trace" in out


def test_drop_counts_and_ports_without_expectations(tmp_path, capsys):
    p = pipeline(tmp_path)
    c = case(tmp_path, drops="action_drop = 2\n")
    rc, out, _ = check(capsys, p, c)
    assert rc == 1 and f"  drops: expected action_drop=2, got action_drop=1 ({c / 'expected' / 'drops.toml'})" in out
    none = case(tmp_path, "none", expected=False)                   # no expected/: nothing may leave
    rc, out, _ = check(capsys, p, none)
    assert rc == 1 and "2 packets left, expected 0 (no " in out


def test_update_writes_the_expectations_then_they_pass(tmp_path, capsys):
    p = pipeline(tmp_path)
    c = case(tmp_path, expected=[pkt(1)])
    other = case(tmp_path, "other")
    rc, out, _ = check(capsys, p, c, other, "--update")
    assert rc == 0
    assert out.splitlines() == [f"UPDATED {c}  (3 packets in, 2 left, 1 dropped)",
                                f"  updated {c / 'expected'}: p1.pcap, p2.pcap, drops.toml",
                                f"UPDATED {other}  (3 packets in, 2 left, 1 dropped)",
                                f"  updated {other / 'expected'}: p1.pcap, p2.pcap, drops.toml",
                                "2 cases updated"]
    assert (c / "expected" / "drops.toml").read_text().splitlines()[1:] == ["action_drop = 1"]
    assert (c / "expected" / "p2.pcap").read_bytes() == (other / "expected" / "p2.pcap").read_bytes()
    rc, out, _ = check(capsys, p, c, other)
    assert rc == 0 and out.splitlines()[-1] == "2 of 2 cases passed"


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such case directory"),
    (lambda d: d.mkdir(), "no input captures: expected"),
    (lambda d: write(d / "in" / "p7.pcap", [pkt(7)]), "p7.pcap: no port named 'p7'"),
    (lambda d: (write(d / "in" / "p1.pcap", [pkt(7)]), write(d / "expected" / "x.pcap", [pkt(7)])),
     "x.pcap: not an expected output: expected/PORT.pcap for a port"),
    (lambda d: (write(d / "in" / "p1.pcap", [pkt(7)]), (d / "expected").mkdir(),
                (d / "expected" / "drops.toml").write_text("no_such = 1\n")),
     "drops.toml: no_such: unknown drop reason"),
    (lambda d: (write(d / "in" / "p1.pcap", [pkt(7)]), (d / "expected").mkdir(),
                (d / "expected" / "drops.toml").write_text("no_match = -1\n")),
     "drops.toml: no_match: expected a count (an integer >= 0), got -1"),
    (lambda d: (write(d / "in" / "p1.pcap", [pkt(7)]), (d / "expected").mkdir(),
                (d / "expected" / "drops.toml").write_text("no_match = \n")),
     "drops.toml: not valid TOML"),
    (lambda d: ((d / "in").mkdir(parents=True), (d / "in" / "p1.pcap").write_bytes(b"\x1f\x8b junk")),
     "not a pcap or pcapng file: magic 1f8b206a, looks like a gzip file"),
])
def test_bad_cases_are_errors_naming_the_file(tmp_path, capsys, setup, message):
    p = pipeline(tmp_path)
    d = tmp_path / "bad"
    setup(d)
    rc, out, err = check(capsys, p, d)
    assert rc == 2 and out == ""
    assert err.startswith("softdpu: error: ") and message in err and err.count("\n") == 1, err


def test_bad_command_lines(tmp_path, capsys):
    rc, _, err = check(capsys, tmp_path / "nope.toml", tmp_path)
    assert rc == 2 and "no such pipeline file" in err
    assert cli.main(["check", str(pipeline(tmp_path))]) == 2
    assert "the following arguments are required: CASE_DIR" in capsys.readouterr().err
    assert cli.main(["check", str(pipeline(tmp_path)), str(case(tmp_path)), "--batch", "0"]) == 2
    assert "--batch: expected 1..65536, got 0" in capsys.readouterr().err


def test_the_command_exits_nonzero_on_failure(tmp_path):
    """The real entry point, in a process of its own, as CI runs it."""
    p = pipeline(tmp_path)
    good, bad = case(tmp_path, "good"), case(tmp_path, "bad", expected=[pkt(7, 63)])
    cmd = [sys.executable, "-m", "softdpu.cli", "check", str(p)]
    r = subprocess.run(cmd + [str(good)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("PASS "), r.stdout + r.stderr
    r = subprocess.run(cmd + [str(good), str(bad)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 1 and "PASS " in r.stdout and "FAIL " in r.stdout
    assert r.stdout.splitlines()[-1] == "1 of 2 cases passed"


def test_batch_size_does_not_change_the_outcome(tmp_path, capsys):
    p = pipeline(tmp_path)
    c = case(tmp_path, drops="action_drop = 1\n")
    for b in ("1", "2", "256"):
        rc, out, _ = check(capsys, p, c, "--batch", b)
        assert rc == 0, out


def test_pcapng_inputs(tmp_path, capsys):
    from scapy.utils import PcapNgWriter
    p = pipeline(tmp_path)
    c = case(tmp_path)
    (c / "in" / "p1.pcap").unlink()
    w = PcapNgWriter(str(c / "in" / "p1.pcapng"))
    for k, d in enumerate((7, 8, 9)):
        x = pkt(d)
        x.time = T0 + k * 0.001
        w.write(x)
    w.close()
    rc, out, _ = check(capsys, p, c)
    assert rc == 0, out
