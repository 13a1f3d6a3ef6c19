"""Why an output capture differs from the expected one: its first differing packet, field by field, and its trace.

Used by `softdpu check` (check.py) only when the bytes differ: it reads
both captures (softdpu's reader, exact nanosecond times), finds the first
packet that is not the same (frame or timestamp), prints a field-level diff
(fields.py), then runs the case again to learn which input packet the
differing output is a copy of, and prints that packet's `softdpu trace`.
"""
import tempfile
from pathlib import Path

from softdpu.pipeline import Dpu
from softdpu.testing import fields, frames
from softdpu.trace import Tracer, explain


def _records(path, max_frame):
    return frames.from_capture(path, max(max_frame, 65535)) if Path(path).is_file() else []


def _when(ns):
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def explain_port(name, out, want, pipeline, cfg, inputs):
    """Text lines about output port `name`: out (what left) against want (expected, may be absent)."""
    got, exp = _records(out, cfg.max_frame), _records(want, cfg.max_frame)
    k = next((i for i, (g, e) in enumerate(zip(got, exp)) if (g.data, g.ts_ns) != (e.data, e.ts_ns)),
             min(len(got), len(exp)))
    head = f"  {name}.pcap: {len(got)} packets left, expected {len(exp)}" + ("" if Path(want).is_file() else
                                                                            f" (no {want})")
    if k == len(got) == len(exp):                  # same packets, other bytes (e.g. the file header)
        return [head + "; the packets are the same but the file differs (header: timestamp resolution?)"]
    lines = [head + f"; packet {k + 1} is the first that differs:"]
    if k < len(got) and k < len(exp):
        g, e = got[k], exp[k]
        if g.data == e.data:
            lines.append(f"    same frame, but it left at {_when(g.ts_ns)} instead of {_when(e.ts_ns)}")
        else:
            diff = fields.compare(e.data, g.data)
            lines += diff.table(indent="    ")
            if g.ts_ns != e.ts_ns:
                lines.append(f"    and it left at {_when(g.ts_ns)} instead of {_when(e.ts_ns)}")
    elif k < len(exp):
        lines.append(f"    expected packet {k + 1} did not leave; it was:")
        lines += [f"      {r.name:<16} {r.expected}" for r in fields.compare(exp[k].data, exp[k].data).rows]
    else:
        lines.append(f"    packet {k + 1} left but was not expected:")
        lines += [f"      {r.name:<16} {r.expected}" for r in fields.compare(got[k].data, got[k].data).rows]
    ins = " ".join(f"--in {p}={f}" for p, f in inputs.items())
    number = _origin(cfg, inputs, name, k) if k < len(got) else 0
    if number:
        lines += ["", f"    it is a copy of input packet {number}: softdpu trace {pipeline} {ins} --packet {number}"]
        lines += ["      " + x for x in _trace(cfg, inputs, number)]
    else:
        lines.append(f"    to see why: softdpu trace {pipeline} {ins}")
    return lines


def _origin(cfg, inputs, port_name, k):
    """The number of the input packet whose copy is output k (0-based) of port_name, 0 if none."""
    ofport = next(p.ofport for p in cfg.ports if p.name == port_name)
    dpu = Dpu(cfg)
    seen = {"base": 0, "count": 0, "number": 0}
    process = dpu.process

    def watch(batch):
        process(batch)
        for o in frames.outputs(batch, {ofport}):
            if seen["count"] == k and not seen["number"]:
                seen["number"] = seen["base"] + o.origin + 1 if o.origin >= 0 else -1
            seen["count"] += 1
        seen["base"] += batch.n
    dpu.process = watch
    with tempfile.TemporaryDirectory(prefix="softdpu-check-") as tmp:
        dpu.run_pcaps(inputs, Path(tmp), warn=lambda m: None, until=lambda: seen["number"] != 0)
    return max(seen["number"], 0)


def _trace(cfg, inputs, number):
    dpu = Dpu(cfg)
    tracer = Tracer(dpu, {number})
    dpu.tracer = tracer
    with tempfile.TemporaryDirectory(prefix="softdpu-check-") as tmp:
        dpu.run_pcaps(inputs, Path(tmp), warn=lambda m: None, until=lambda: tracer.done)
    names = {p.ofport: p.name for p in cfg.ports}
    return [line for t in tracer.traces for line in explain(t, dpu.flows.program, names, bridge=cfg.name)[0]]
