"""`softdpu run`: outputs, the printed summary, input overrides and merging,
and one-line errors (exit 2) for everything a user can get wrong."""
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import need_tool
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import PcapWriter as ScapyPcapWriter, rdpcap

from softdpu.cli import main

ROOT = Path(__file__).resolve().parent.parent
PASSTHROUGH = ROOT / "pipelines" / "l2-passthrough.toml"
MIX = ROOT / "fixtures" / "pcaps" / "l2-mix.pcap"


def run(*args):
    """main() in process: (exit status, stdout text)."""
    out = io.StringIO()
    status = main(["run", *map(str, args), "--no-progress"], out=out)
    return status, out.getvalue()


def summary(text):
    """The printed summary: {port: (ofport, rx_p, rx_b, tx_p, tx_b)}, (received, left, dropped), {reason: n}."""
    lines = text.splitlines()
    assert lines[0].split() == ["port", "ofport", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes"], text
    ports = {}
    for line in lines[1:]:
        if not line.strip():
            break
        name, *nums = line.split()
        ports[name] = tuple(int(v) for v in nums)
    m = re.search(r"^received (\d+), left (\d+), dropped (\d+)$", text, re.M)
    assert m, text
    totals = tuple(int(v) for v in m.groups())
    dropped = {name: int(n) for name, n in re.findall(r"^  drop (\w+)\s+(\d+)  ", text, re.M)}
    assert re.search(r"^\d+ packets in [\d.]+ s ", text, re.M), text
    # the invariant: every packet received either left or was dropped, under a reason
    received, left, dropped_total = totals
    assert received == left + dropped_total
    assert dropped_total == sum(dropped.values())
    assert received == sum(p[1] for p in ports.values())
    return ports, totals, dropped


def one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("softdpu: error: "), err
    for w in words:
        assert str(w) in lines[0], f"{w!r} not in {lines[0]!r}"
    return lines[0]


def same_packets(a, b):
    pa, pb = rdpcap(str(a)), rdpcap(str(b))
    assert [bytes(p) for p in pa] == [bytes(p) for p in pb]
    assert [p.time for p in pa] == [p.time for p in pb]
    return len(pa)


def udp(sport, dst="02:00:00:00:00:02", n=10):
    return Ether(src="02:00:00:00:00:01", dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport,
                                                                                           dport=9) / bytes(n)


def write_pcap(path, packets):
    """packets: [(scapy packet, time in s)]."""
    with ScapyPcapWriter(str(path), linktype=1, sync=True) as w:
        for pkt, t in packets:
            pkt.time = t
            w.write(pkt)
    return path


def check_tshark_clean(path, count):
    tshark = need_tool("tshark")
    r = subprocess.run([tshark, "-r", str(path), "-Y", "_ws.malformed"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"{path}: malformed packets:\n{r.stdout}"
    r = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "_ws.expert"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert len(rows) == count               # tshark read every packet
    assert not any("alformed" in row for row in rows), r.stdout


# -- the example pipeline -----------------------------------------------------------

def test_run_l2_passthrough(tmp_path):
    status, text = run(PASSTHROUGH, "--out-dir", tmp_path)
    assert status == 0
    ports, (received, left, dropped), drops = summary(text)
    src = rdpcap(str(MIX))
    n, nbytes = len(src), sum(len(p) for p in src)
    assert ports == {"p1": (1, n, nbytes, 0, 0), "p2": (2, 0, 0, n, nbytes)}
    assert (received, left, dropped, drops) == (n, n, 0, {})
    assert f"outputs in {tmp_path}/" in text
    assert sorted(f.name for f in tmp_path.iterdir()) == ["p1.pcap", "p2.pcap"]
    assert len(rdpcap(str(tmp_path / "p1.pcap"))) == 0
    assert same_packets(tmp_path / "p2.pcap", MIX) == n
    check_tshark_clean(tmp_path / "p2.pcap", n)


def test_console_script_in_a_subprocess(tmp_path):
    exe = shutil.which("softdpu")
    assert exe, "the softdpu console script is not installed (pip install -e .)"
    r = subprocess.run([exe, "run", "pipelines/l2-passthrough.toml", "--out-dir", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ports, (received, left, dropped), _ = summary(r.stdout)
    assert received == left == ports["p2"][3] == len(rdpcap(str(MIX))) and dropped == 0
    assert "error" not in r.stderr
    same_packets(tmp_path / "o" / "p2.pcap", MIX)
    # and the same bytes as an in-process run
    assert run(PASSTHROUGH, "--out-dir", tmp_path / "i")[0] == 0
    for name in ("p1.pcap", "p2.pcap"):
        assert (tmp_path / "o" / name).read_bytes() == (tmp_path / "i" / name).read_bytes()


def test_console_script_error_is_one_line(tmp_path):
    r = subprocess.run([shutil.which("softdpu") or "softdpu", "run", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"softdpu: error: {tmp_path / 'nope.toml'}: file: no such pipeline file"]
    assert r.stdout == ""


def test_python_dash_m_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "softdpu.cli", "run", str(PASSTHROUGH), "--batch", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.startswith("softdpu: error: --batch") and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("batch", [1, 7])
def test_batch_size_does_not_change_the_output(tmp_path, batch):
    assert run(PASSTHROUGH, "--out-dir", tmp_path / "default")[0] == 0
    status, text = run(PASSTHROUGH, "--out-dir", tmp_path / "b", "--batch", batch)
    assert status == 0
    assert summary(text)[1] == summary(run(PASSTHROUGH, "--out-dir", tmp_path / "again")[1])[1]
    for name in ("p1.pcap", "p2.pcap"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "default" / name).read_bytes()


def test_in_replaces_the_default_input(tmp_path):
    mine = write_pcap(tmp_path / "mine.pcap", [(udp(k), 2000 + k) for k in range(3)])
    status, text = run(PASSTHROUGH, "--in", f"p1={mine}", "--out-dir", tmp_path / "o")
    assert status == 0
    ports, totals, _ = summary(text)
    assert totals == (3, 3, 0) and ports["p1"][1] == 3
    assert same_packets(tmp_path / "o" / "p2.pcap", mine) == 3


def test_in_on_the_other_port_adds_an_input(tmp_path):
    mine = write_pcap(tmp_path / "mine.pcap", [(udp(k), 2000 + k) for k in range(3)])
    status, text = run(PASSTHROUGH, "--in", f"p2={mine}", "--out-dir", tmp_path / "o")
    assert status == 0
    ports, totals, _ = summary(text)
    n = len(rdpcap(str(MIX)))
    assert totals == (n + 3, n + 3, 0)
    assert ports["p1"][3] == 3 and ports["p2"][3] == n   # the default p1 input still runs
    same_packets(tmp_path / "o" / "p1.pcap", mine)


# -- several inputs, merged by timestamp --------------------------------------------

MERGE_FLOWS = """\
in_port=1,actions=output:3
in_port=2,dl_type=0x0800,actions=output:3
priority=40000,dl_dst=02:00:00:00:00:66,actions=drop
"""
MERGE_TOML = """\
[pipeline]
flows = "m.flows"

[[port]]
name = "p1"
ofport = 1
type = "pcap"
input = "a.pcap"

[[port]]
name = "p2"
ofport = 2
type = "pcap"
input = "b.pcap"

[[port]]
name = "p3"
ofport = 3
type = "pcap"
"""


def merge_pipeline(tmp_path, a, b):
    """a, b: [(sport, time)] for p1 and p2 (sport 0: an ARP, which p2's rules miss; 66: dropped)."""
    def pkt(sport):
        if sport == 0:
            return Ether(src="02:00:00:00:00:05", dst="ff:ff:ff:ff:ff:ff") / ARP()
        return udp(sport, dst="02:00:00:00:00:66" if sport == 66 else "02:00:00:00:00:02")
    write_pcap(tmp_path / "a.pcap", [(pkt(s), t) for s, t in a])
    write_pcap(tmp_path / "b.pcap", [(pkt(s), t) for s, t in b])
    (tmp_path / "m.flows").write_text(MERGE_FLOWS)
    (tmp_path / "m.toml").write_text(MERGE_TOML)
    return tmp_path / "m.toml"


def sports(path):
    return [(float(p.time), p[UDP].sport) for p in rdpcap(str(path))]


def test_two_inputs_merge_by_timestamp(tmp_path):
    a = [(101, 1.0), (102, 1.2), (103, 1.4), (104, 1.6), (105, 2.0), (106, 2.0)]
    b = [(201, 1.1), (202, 1.3), (0, 1.5), (66, 1.7), (203, 2.0), (204, 2.1)]
    toml = merge_pipeline(tmp_path, a, b)
    want = [(1.0, 101), (1.1, 201), (1.2, 102), (1.3, 202), (1.4, 103), (1.6, 104),
            (2.0, 105), (2.0, 106), (2.0, 203), (2.1, 204)]   # ties: port order, then file order
    outputs = {}
    for batch in (None, 1, 2, 3, 7):
        out = tmp_path / f"o{batch}"
        status, text = run(toml, "--out-dir", out, *(["--batch", batch] if batch else []))
        assert status == 0
        ports, totals, dropped = summary(text)
        assert totals == (12, 10, 2)
        assert dropped == {"no_match": 1, "action_drop": 1}
        assert ports["p3"] == (3, 0, 0, 10, ports["p1"][2] + ports["p2"][2] - 42 - len(udp(66)))
        assert [(round(t, 6), s) for t, s in sports(out / "p3.pcap")] == want, f"--batch {batch}"
        outputs[batch] = (out / "p3.pcap").read_bytes()
    assert len(set(outputs.values())) == 1, "the batch size changed the output"


def test_ties_across_batch_boundaries_keep_port_order(tmp_path):
    # p1's later packets at t=5 must still come before p2's t=5 packet, whatever the batch size
    a = [(101, 1.0), (102, 2.0), (103, 3.0), (104, 5.0), (105, 5.0), (106, 5.0)]
    b = [(201, 4.0), (202, 5.0), (203, 6.0)]
    toml = merge_pipeline(tmp_path, a, b)
    want = [101, 102, 103, 201, 104, 105, 106, 202, 203]
    for batch in (1, 2, 3, 4, 5, 8, 256):
        assert run(toml, "--out-dir", tmp_path / f"o{batch}", "--batch", batch)[0] == 0
        assert [s for _, s in sports(tmp_path / f"o{batch}" / "p3.pcap")] == want, f"--batch {batch}"


def test_a_capture_out_of_time_order_keeps_its_order_and_loses_nothing(tmp_path):
    # p1's file goes back in time (5, 3, 6): its packets stay in file order, each exactly once
    a = [(101, 5.0), (102, 3.0), (103, 6.0), (104, 6.5)]
    b = [(201, 4.0), (202, 5.5), (203, 7.0)]
    toml = merge_pipeline(tmp_path, a, b)
    want = [201, 101, 102, 202, 103, 104, 203]   # 102 sorts at 5.0, the latest time before it in its file
    for batch in (1, 2, 3, 256):
        status, text = run(toml, "--out-dir", tmp_path / f"o{batch}", "--batch", batch)
        assert status == 0
        assert summary(text)[1] == (7, 7, 0)
        assert [s for _, s in sports(tmp_path / f"o{batch}" / "p3.pcap")] == want, f"--batch {batch}"


def test_merged_inputs_from_the_command_line(tmp_path):
    a = write_pcap(tmp_path / "x.pcap", [(udp(1), 10.0), (udp(3), 30.0)])
    b = write_pcap(tmp_path / "y.pcap", [(udp(2), 20.0), (udp(4), 40.0)])
    status, text = run(PASSTHROUGH, "--in", f"p1={a}", "--in", f"p2={b}", "--out-dir", tmp_path / "o")
    assert status == 0
    assert summary(text)[1] == (4, 4, 0)
    assert sports(tmp_path / "o" / "p2.pcap") == [(10.0, 1), (30.0, 3)]
    assert sports(tmp_path / "o" / "p1.pcap") == [(20.0, 2), (40.0, 4)]


# -- errors: one line on stderr, exit 2 ---------------------------------------------

def test_missing_pipeline(tmp_path, capsys):
    assert run(tmp_path / "nope.toml")[0] == 2
    one_error_line(capsys, tmp_path / "nope.toml", "no such pipeline file")


def test_bad_toml(tmp_path, capsys):
    (tmp_path / "p.toml").write_text('[pipeline]\nflows = "p.flows"\nbatch = = 3\n')
    assert run(tmp_path / "p.toml")[0] == 2
    one_error_line(capsys, f"{tmp_path / 'p.toml'}:3:", "not valid TOML")


def test_bad_pipeline_key(tmp_path, capsys):
    (tmp_path / "p.flows").write_text("actions=drop\n")
    (tmp_path / "p.toml").write_text('[pipeline]\nflows = "p.flows"\nbatch = 0\n')
    assert run(tmp_path / "p.toml")[0] == 2
    one_error_line(capsys, f"{tmp_path / 'p.toml'}:3: pipeline.batch: expected 1..65536, got 0")


def test_bad_flows_line(tmp_path, capsys):
    a = [(101, 1.0)]
    toml = merge_pipeline(tmp_path, a, a)
    (tmp_path / "m.flows").write_text("in_port=1,actions=output:3\n\nin_port=2 bogus=1 actions=output:3\n")
    assert run(toml, "--out-dir", tmp_path / "o")[0] == 2
    one_error_line(capsys, f"{(tmp_path / 'm.flows').resolve()}:3:11: unknown match field 'bogus'", "(at 'bogus=1')")
    assert not (tmp_path / "o").exists()


def test_in_unknown_port(tmp_path, capsys):
    assert run(PASSTHROUGH, "--in", f"p9={MIX}", "--out-dir", tmp_path)[0] == 2
    one_error_line(capsys, "--in", "no port named 'p9'", "p1, p2", PASSTHROUGH)


def test_in_missing_file(tmp_path, capsys):
    assert run(PASSTHROUGH, "--in", f"p1={tmp_path / 'none.pcap'}", "--out-dir", tmp_path)[0] == 2
    one_error_line(capsys, "--in", "no such capture file", tmp_path / "none.pcap")


@pytest.mark.parametrize("arg", ["p1", "p1:x.pcap", "=x.pcap", "p1="])
def test_in_without_port_equals_file(tmp_path, capsys, arg):
    assert run(PASSTHROUGH, "--in", arg, "--out-dir", tmp_path)[0] == 2
    one_error_line(capsys, "--in", "expected PORT=FILE", f"got '{arg}'")


def test_in_same_port_twice(tmp_path, capsys):
    assert run(PASSTHROUGH, "--in", f"p1={MIX}", "--in", f"p1={MIX}", "--out-dir", tmp_path)[0] == 2
    one_error_line(capsys, "--in", "p1", "more than once")


def test_input_that_is_not_a_pcap(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a capture\n")
    assert run(PASSTHROUGH, "--in", f"p1={bad}", "--out-dir", tmp_path / "o")[0] == 2
    one_error_line(capsys, bad, "offset 0", "not a pcap")


def test_empty_input(tmp_path, capsys):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert run(PASSTHROUGH, "--in", f"p1={empty}", "--out-dir", tmp_path / "o")[0] == 2
    one_error_line(capsys, empty, "empty file")


def test_truncated_input_warns_with_the_count_and_succeeds(tmp_path, capsys):
    raw = MIX.read_bytes()
    # walk the records; cut the file halfway into the 6th one
    pos, starts = 24, []
    while pos < len(raw):
        starts.append(pos)
        pos += 16 + int.from_bytes(raw[pos + 8: pos + 12], "little")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(raw[: starts[5] + 20])
    status, text = run(PASSTHROUGH, "--in", f"p1={cut}", "--out-dir", tmp_path / "o")
    assert status == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("softdpu: warning: "), err
    assert str(cut) in err[0] and "truncated" in err[0] and "5 packets read" in err[0]
    assert summary(text)[1] == (5, 5, 0)
    assert len(rdpcap(str(tmp_path / "o" / "p2.pcap"))) == 5


@pytest.mark.parametrize("value", ["0", "65537", "-3"])
def test_bad_batch(tmp_path, capsys, value):
    assert run(PASSTHROUGH, "--batch", value, "--out-dir", tmp_path)[0] == 2
    one_error_line(capsys, "--batch", f"got {value}")


def test_batch_not_a_number(tmp_path, capsys):
    assert run(PASSTHROUGH, "--batch", "lots", "--out-dir", tmp_path)[0] == 2
    one_error_line(capsys, "--batch", "'lots'")


def test_no_input_at_all(tmp_path, capsys):
    (tmp_path / "p.flows").write_text("actions=drop\n")
    (tmp_path / "p.toml").write_text('[pipeline]\nflows = "p.flows"\n[[port]]\nname = "a"\nofport = 1\ntype = "pcap"\n')
    assert run(tmp_path / "p.toml", "--out-dir", tmp_path / "o")[0] == 2
    one_error_line(capsys, tmp_path / "p.toml", "no input capture", "--in PORT=FILE")


def test_no_command(capsys):
    assert main([], out=io.StringIO()) == 2
    one_error_line(capsys, "command")
