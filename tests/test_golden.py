"""Golden cases: every example pipeline, run on its shipped captures by `softdpu check`, gives the stored outputs.

    python -m pytest tests/test_golden.py --update-golden   # after an intended change
    softdpu check pipelines/acl.toml fixtures/golden/acl    # the same, one pipeline

fixtures/golden/<pipeline>/ is a case directory (softdpu/testing/check.py):
in/<port>.pcap are links to the pipeline's default inputs in fixtures/pcaps/
(make_inputs.py writes those), expected/<port>.pcap the outputs byte for
byte and expected/drops.toml the drop counts.  --update-golden makes the
case directory of a new pipeline and rewrites the expectations.  Besides
softdpu against its own past, each output is checked by outside readers:
tshark dissects it with no malformed packet, and scapy reads as many
packets as the run says went out.
"""
import os
import subprocess
from pathlib import Path

import pytest
from conftest import need_tool
from scapy.utils import rdpcap

from softdpu import cli, config
from softdpu.testing import check

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.toml"))
GOLDEN = ROOT / "fixtures" / "golden"


def make_case(pipeline, case):
    """in/<port>.pcap links to the pipeline's default inputs; files of the old layout (<port>.pcap) to expected/."""
    (case / "in").mkdir(parents=True, exist_ok=True)
    (case / "expected").mkdir(exist_ok=True)
    for old in case.glob("*.pcap"):
        old.replace(case / "expected" / old.name)
    for p in config.load(pipeline).ports:
        src = p.options.get("input")
        if src:
            link = case / "in" / f"{p.name}{Path(src).suffix}"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(os.path.relpath(Path(src).resolve(), link.parent))


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_pipeline_matches_golden(pipeline, update_golden, capsys):
    case = GOLDEN / pipeline.stem
    if update_golden:
        make_case(pipeline, case)
    assert (case / "in").is_dir() and (case / "expected").is_dir(), (
        f"no golden case {case} (in/, expected/): run python -m pytest tests/test_golden.py --update-golden")
    assert not list(case.glob("*.pcap")), f"{case}: golden files of the old layout; run --update-golden"
    shipped = {p.name: Path(p.options["input"]).resolve() for p in config.load(pipeline).ports
               if p.options.get("input")}
    assert shipped, "an example pipeline must ship a default input"
    assert {f.stem: f.resolve() for f in (case / "in").iterdir()} == shipped, (
        f"{case}/in is not the pipeline's default inputs: run --update-golden")
    rc = cli.main(["check", str(pipeline), str(case)] + (["--update"] if update_golden else []))
    report = capsys.readouterr().out
    assert rc == 0, report
    assert report.startswith(("PASS ", "UPDATED "))
    assert "another header" not in report, report          # our own outputs: the files byte for byte


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_golden_packet_counts_agree_with_scapy(pipeline):
    case = GOLDEN / pipeline.stem
    r = check.run_case(pipeline, case)
    assert r.ok, "\n".join(r.lines)
    assert r.stats.rx > 0 and r.stats.rx == r.stats.left + r.stats.dropped
    for port in config.load(pipeline).ports:
        want = case / "expected" / f"{port.name}.pcap"
        if want.is_file():
            assert len(rdpcap(str(want))) == r.stats.port(port.name)["tx_packets"], port.name


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_golden_outputs_dissect_cleanly(pipeline):
    tshark = need_tool("tshark")
    files = sorted((GOLDEN / pipeline.stem / "expected").glob("*.pcap"))
    assert files
    for f in files:
        r = subprocess.run([tshark, "-r", str(f), "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "", f"{f}: tshark reports problems:\n{r.stdout}"


def test_passthrough_output_is_the_input():
    """l2-passthrough forwards every packet unchanged: p2's frames and times are the input's."""
    src = rdpcap(str(ROOT / "fixtures" / "pcaps" / "l2-mix.pcap"))
    out = rdpcap(str(GOLDEN / "l2-passthrough" / "expected" / "p2.pcap"))
    assert [bytes(p) for p in out] == [bytes(p) for p in src]
    assert [p.time for p in out] == [p.time for p in src]
