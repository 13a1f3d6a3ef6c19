"""Golden outputs: every example pipeline, run on its default inputs, gives the stored pcaps byte for byte.

    python -m pytest tests/test_golden.py --update-golden   # after an intended change

The golden files live in fixtures/golden/<pipeline>/<port>.pcap.  Besides
softdpu against its own past, each output is checked by outside readers:
tshark dissects it with no malformed packet, and scapy reads the same
number of packets as the summary says went out.
"""
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import need_tool
from scapy.utils import rdpcap

from softdpu.pipeline import Dpu

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.toml"))
GOLDEN = ROOT / "fixtures" / "golden"


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_pipeline_matches_golden(pipeline, tmp_path, update_golden):
    dpu = Dpu.load(pipeline)
    stats = dpu.run_pcaps(out_dir=tmp_path)
    assert stats.rx > 0, "an example pipeline must ship a default input"
    assert stats.rx == stats.left + stats.dropped
    golden = GOLDEN / pipeline.stem
    for port in dpu.ports:
        if port.type != "pcap":          # tunnel ports: their packets leave by their underlay
            continue
        out = tmp_path / f"{port.name}.pcap"
        want = golden / f"{port.name}.pcap"
        if update_golden:
            golden.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out, want)
        assert want.is_file(), f"no golden output {want}; run pytest --update-golden"
        assert out.read_bytes() == want.read_bytes(), f"{port.name}.pcap differs from {want}"
        assert len(rdpcap(str(out))) == stats.port(port.name)["tx_packets"]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_golden_outputs_dissect_cleanly(pipeline):
    tshark = need_tool("tshark")
    for f in sorted((GOLDEN / pipeline.stem).glob("*.pcap")):
        r = subprocess.run([tshark, "-r", str(f), "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "", f"{f}: tshark reports problems:\n{r.stdout}"


def test_passthrough_output_is_the_input():
    """l2-passthrough forwards every packet unchanged: p2's frames and times are the input's."""
    src = rdpcap(str(ROOT / "fixtures" / "pcaps" / "l2-mix.pcap"))
    out = rdpcap(str(GOLDEN / "l2-passthrough" / "p2.pcap"))
    assert [bytes(p) for p in out] == [bytes(p) for p in src]
    assert [p.time for p in out] == [p.time for p in src]
