"""`softdpu check PIPELINE CASE_DIR...`: golden cases, captures in and the captures expected out.

    CASE_DIR/in/PORT.pcap           what arrives on port PORT (pcap or pcapng; several ports merge by time)
    CASE_DIR/expected/PORT.pcap     what must leave PORT, byte for byte (no file: nothing leaves PORT)
    CASE_DIR/expected/drops.toml    optional: drop counts, `no_match = 3` per reason (softdpu/drops.py)

Each case runs on a fresh Dpu of the pipeline (run_pcaps, exactly as
`softdpu run --in PORT=in/PORT.pcap`) and passes when every output has the
expected packets byte for byte, with their timestamps and lengths on the
wire (a file header that differs, e.g. the snaplen of a capture written by
another tool, is noted but does not fail), the drop counts are
the expected ones (when drops.toml is there) and every packet is accounted
for (received = left + dropped).  A failure names the first differing
packet of each port with a field-level diff (fields.py) and, when it came
from an input packet, that packet's `softdpu trace`.  `--update` writes the
outputs and the drop counts as the new expectations.

Exit status: 0 all cases pass (or were updated), 1 a case failed, 2 a bad
pipeline, case directory or capture (as every softdpu error).
"""
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from softdpu import config, drops
from softdpu.errors import SoftdpuError
from softdpu.pipeline import Dpu

CAPTURES = (".pcap", ".pcapng")
DROPS = "drops.toml"
MAX_SHOWN = 3        # differing ports shown in full per case


@dataclass
class CaseResult:
    case: Path
    ok: bool
    lines: list = field(default_factory=list)    # the report, after the PASS/FAIL line
    stats: object = None


def inputs_of(case, cfg):
    """{port name: capture path} of case/in; SoftdpuError if it has none or names no port."""
    d = Path(case) / "in"
    files = sorted(f for f in d.iterdir() if f.suffix in CAPTURES) if d.is_dir() else []
    if not files:
        raise SoftdpuError(f"{case}: no input captures: expected {d}/PORT.pcap for a port of {cfg.path}")
    ports = {p.name: p for p in cfg.ports}
    out = {}
    for f in files:
        p = ports.get(f.stem)
        if p is None:
            raise SoftdpuError(f"{f}: no port named {f.stem!r} in {cfg.path}; ports are: {', '.join(ports)}")
        if p.type != "pcap":
            raise SoftdpuError(f"{f}: {f.stem} is a {p.type} port; its packets arrive on its underlay "
                               f"{p.options.get('underlay')}")
        if f.stem in out:
            raise SoftdpuError(f"{f}: port {f.stem} has two input captures in {d}")
        out[f.stem] = f
    return out


def expected_drops(path):
    """{reason: count} of an expected/drops.toml; SoftdpuError naming the file and key if it is wrong."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise SoftdpuError(f"{path}: not valid TOML: {e}") from None
    for k, v in doc.items():
        if k not in drops.CODE or k == "none":
            raise SoftdpuError(f"{path}: {k}: unknown drop reason; the reasons are: {', '.join(drops.NAMES[1:])}")
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise SoftdpuError(f"{path}: {k}: expected a count (an integer >= 0), got {v!r}")
    return {k: v for k, v in doc.items() if v}


def write_drops(path, counts):
    lines = ["# drop counts of this case, per reason (softdpu/drops.py); `softdpu check --update` rewrites it"]
    lines += [f"{k} = {v}" for k, v in sorted(counts.items())]
    Path(path).write_text("\n".join(lines) + "\n")


def run_case(pipeline, case, update=False, batch=None):
    """Run one case directory; returns a CaseResult (SoftdpuError for a bad case or pipeline)."""
    case = Path(case)
    if not case.is_dir():
        raise SoftdpuError(f"{case}: no such case directory")
    cfg = config.load(pipeline)
    if batch is not None:
        cfg.batch = batch
    inputs = inputs_of(case, cfg)
    want_dir = case / "expected"
    outs = [p.name for p in cfg.ports if p.type == "pcap"]
    if want_dir.is_dir():
        for f in sorted(want_dir.iterdir()):
            if f.name != DROPS and (f.suffix != ".pcap" or f.stem not in outs):
                raise SoftdpuError(f"{f}: not an expected output: expected/PORT.pcap for a port of "
                                   f"{cfg.path} ({', '.join(outs)}) or expected/{DROPS}")
    want_drops = None if update or not (want_dir / DROPS).is_file() else expected_drops(want_dir / DROPS)
    result = CaseResult(case, True)
    with tempfile.TemporaryDirectory(prefix="softdpu-check-") as tmp:
        dpu = Dpu(cfg)
        warnings = []
        stats = dpu.run_pcaps(inputs, Path(tmp), warn=warnings.append)
        result.stats = stats
        result.lines += [f"  warning: {w}" for w in warnings]
        if stats.rx != stats.left + stats.dropped:
            result.ok = False
            result.lines.append(f"  accounting: received {stats.rx} but left {stats.left} + dropped {stats.dropped}")
        got = stats.drop_counts()
        if update:
            want_dir.mkdir(parents=True, exist_ok=True)
            for name in outs:
                shutil.copyfile(Path(tmp) / f"{name}.pcap", want_dir / f"{name}.pcap")
            write_drops(want_dir / DROPS, got)
            result.lines.append(f"  updated {want_dir}: {', '.join(f'{n}.pcap' for n in outs)}, {DROPS}")
            return result
        differing = []
        for name in outs:
            out, want = Path(tmp) / f"{name}.pcap", want_dir / f"{name}.pcap"
            if want.is_file() and out.read_bytes() == want.read_bytes():
                continue
            if want.is_file() and _packets(out) == _packets(want):
                result.lines.append(f"  {name}.pcap: the same packets, in a file with another header (e.g. snaplen)")
                continue
            if not want.is_file() and stats.port(name)["tx_packets"] == 0:
                continue                              # no file: nothing may leave, and nothing did
            differing.append((name, out, want))
        if differing:
            result.ok = False
            from softdpu.testing.golden_diff import explain_port   # scapy: only when something differs
            for k, (name, out, want) in enumerate(differing):
                if k < MAX_SHOWN:
                    result.lines += explain_port(name, out, want, pipeline, cfg, inputs)
                else:
                    result.lines.append(f"  {name}.pcap: differs too (not shown)")
        if want_drops is not None and want_drops != got:
            result.ok = False
            result.lines.append(f"  drops: expected {_counts(want_drops)}, got {_counts(got)} ({want_dir / DROPS})")
    return result


def _packets(path):
    """[(frame, timestamp ns, length on the wire)] of a capture: what a port sent, whatever the file header."""
    from softdpu.testing.frames import from_capture
    return [(r.data, r.ts_ns, r.wire_len) for r in from_capture(path, 65535, warn=lambda m: None)]


def _counts(d):
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items())) or "none"


def main(pipeline, cases, update=False, batch=None, out=None):
    """Run the cases, print PASS/FAIL per case; returns the exit status (0 pass, 1 a failure)."""
    failed = 0
    for case in cases:
        r = run_case(pipeline, case, update=update, batch=batch)
        word = "UPDATED" if update else ("PASS" if r.ok else "FAIL")
        s = r.stats
        print(f"{word} {case}  ({s.rx} packets in, {s.left} left, {s.dropped} dropped)", file=out)
        for line in r.lines:
            print(line, file=out)
        failed += not r.ok
    if len(cases) > 1 or failed:
        print(f"{len(cases) - failed} of {len(cases)} cases passed" if not update
              else f"{len(cases)} cases updated", file=out)
    return 1 if failed else 0
