"""Timed runs of a Dpu over a pool of packets in memory: end to end and per stage.

One run = `passes` passes over the pool, at least `packets` packets.  Each
batch is refilled by the Feeder (untimed, as reading is the ports' job), then

  end to end   dpu.process(batch) is timed (every stage of Dpu.steps, as a
               `softdpu run` calls them, tracing off);
  per stage    a second loop over the same passes calls the Dpu.steps one by
               one, timing each (perf_counter around each call: ~40 ns per
               call, 0.15 ns per packet at batches of 256).

The clock is the wall clock (perf_counter), or with clock="cpu" the thread's
CPU time (CLOCK_THREAD_CPUTIME_ID, a system call of ~0.3 us: ~1-2 ns more per
packet and stage at batches of 256), which leaves out the time the core ran
other processes: the better figure on a shared machine.

The stage loop also times the Feeder's refill of each batch (`refill`: the
copy of the frames and metadata rows into the batch, what a port's rx does
at the least; it copies whole rows, as wide as the largest frame of the pool,
so with IMIX it is pessimistic); it is not part of the end-to-end figure.

The stage names are whatever Dpu.steps holds (parse, decap, ct-prefetch,
flows, encap, stats, and esp-in / esp-out where a pipeline has them).
Figures are ns per packet received; the median of `repeat` runs, with the
fastest and slowest run.  Before the timed runs, one untimed pass warms the
caches and state (MAC tables, connections) and its counters say what the
traffic does: packets received, copies sent, drops by reason.
"""
import statistics
import time

import numpy as np


def _counts(dpu):
    st = dpu.stats
    return st.rx, st.left, int(st.counters[:, 2].sum()), int(st.counters[:, 3].sum()), st.drops.copy()


def warm_pass(dpu, feed):
    """One untimed pass; {received, left, copies_out, bytes_out, dropped, drops{reason: n}} of it."""
    from softdpu import drops as reasons

    rx0, left0, tx0, txb0, d0 = _counts(dpu)
    batch = dpu.batch
    for lo in feed.batches():
        feed.fill(batch, lo)
        dpu.process(batch)
    rx, left, tx, txb, d = _counts(dpu)
    d = d - d0
    return {"received": rx - rx0, "left": left - left0, "copies_out": tx - tx0, "bytes_out": txb - txb0,
            "dropped": int(d[1:].sum()),
            "drops": {reasons.NAMES[c]: int(v) for c, v in enumerate(d) if c and v}}


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def _run_process(dpu, feed, passes, clock):
    batch, t_all, pk = dpu.batch, 0.0, 0
    for _ in range(passes):
        for lo in feed.batches():
            pk += feed.fill(batch, lo)
            t = clock()
            dpu.process(batch)
            t_all += clock() - t
    return t_all, pk


def _run_steps(dpu, feed, passes, clock):
    """Per step times, and last the refill's (the Feeder's copy into the batch)."""
    steps = dpu.steps
    acc = np.zeros(len(steps) + 1)
    batch, pk = dpu.batch, 0
    for _ in range(passes):
        for lo in feed.batches():
            t0 = clock()
            pk += feed.fill(batch, lo)
            t1 = clock()
            acc[-1] += t1 - t0
            t0 = t1
            for j, (_, step) in enumerate(steps):
                step(batch)
                t1 = clock()
                acc[j] += t1 - t0
                t0 = t1
    return acc, pk


def _summary(values):
    return {"ns_per_packet": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def measure(dpu, feed, repeat=5, packets=200_000, clock="wall"):
    """{passes, packets_per_run, runs, total{ns_per_packet, min, max, runs_ns}, stages{name: {...}},
    stages_sum{...}}: ns per packet received.  clock: "wall" (perf_counter) or "cpu" (this
    thread's CPU time: time the core spent on other processes is left out)."""
    clock = CLOCKS[clock]
    pool = len(feed.frames)
    passes = max(1, -(-packets // pool))
    total, split = [], []
    names = [name for name, _ in dpu.steps]
    for _ in range(repeat):
        t, pk = _run_process(dpu, feed, passes, clock)
        total.append(t / pk * 1e9)
        acc, pk = _run_steps(dpu, feed, passes, clock)
        split.append(acc / pk * 1e9)
    split = np.array(split)
    refill = _summary(list(split[:, -1]))
    split = split[:, :-1]
    stages = {}
    for name in dict.fromkeys(names):            # a name twice (e.g. trace): summed
        cols = [j for j, n in enumerate(names) if n == name]
        stages[name] = _summary(list(split[:, cols].sum(axis=1)))
    out = {"passes": passes, "packets_per_run": passes * pool, "runs": repeat, "refill": refill,
           "total": _summary(total), "stages": stages, "stages_sum": _summary(list(split.sum(axis=1)))}
    out["total"]["runs_ns"] = [round(x, 2) for x in total]
    return out
