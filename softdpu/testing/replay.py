"""Traces for failure messages: the sends so far replayed on a fresh Dpu with a tracer.

    texts = traces(path, batch_size, history, [3, 7])   # {number: `softdpu trace` text}

The harness keeps every batch it ran (the port and its records); running
the same batches again on a new Dpu of the same pipeline file gives the
same state before each packet (MAC table, connections, flow timeouts), so
the trace of packet N is the one `softdpu trace --packet N` would print for
those inputs.  Only failures pay for this: the Dpu under test never traces.
"""
from softdpu import config
from softdpu.pipeline import Dpu
from softdpu.testing import frames
from softdpu.trace import Tracer, explain


def traces(path, batch_size, history, numbers):
    """{number: trace text} of the chosen packets (1-based numbers of the whole history)."""
    cfg = config.load(path)
    cfg.batch = batch_size
    dpu = Dpu(cfg)
    tracer = Tracer(dpu, set(numbers))
    dpu.tracer = tracer
    for ofport, records in history:
        frames.fill(dpu.batch, ofport, records)
        dpu.process(dpu.batch)
        if tracer.done:
            break
    names = {p.ofport: p.name for p in cfg.ports}
    return {t.number: "\n".join(explain(t, dpu.flows.program, names, bridge=cfg.name)[0])
            for t in tracer.traces}
