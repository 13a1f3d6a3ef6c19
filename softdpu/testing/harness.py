"""Harness: one Dpu driven packet by packet from a test, with expectations on what leaves.

    dpu = Harness.load("pipelines/l2-switch.toml")          # or Harness.from_text(toml, flows)
    dpu.send("p1", Ether(src=A, dst=B) / IP() / UDP())       # scapy packets, bytes, or a capture path
    dpu.expect("p4", Ether(src=A, dst=B) / IP() / UDP(), ignore=["IP.chksum"])
    dpu.expect_drop("no_match")
    dpu.expect_nothing_else()
    dpu.advance(301)                                          # the clock: MAC aging, ct timeouts

Everything is one Dpu: the MAC table, connections, flow counters and
timeouts carry over from one send() to the next.  Packets get their
timestamps from the harness's clock (`now_ns`, starting at START), which
only advance() moves; a capture keeps its own spacing, starting at now, and
leaves the clock at its last packet.

What leaves a port (a pcap port: a tunnel port's packets leave by its
underlay) waits in that port's queue, oldest first; expect(port, packet)
compares the oldest one with `packet` field by field and takes it.  Drops
are counted from the Dpu's Stats per reason (softdpu/drops.py) and taken by
expect_drop(reason).  expect_nothing_else() fails if anything is left.

A failed expectation raises AssertionError with the expected and actual
packets field by field (fields.py), what happened to the packets of the
last send(), and `softdpu trace` of the packet concerned (replay.py reruns
the sends on a fresh Dpu with a tracer, so the trace sees the same state).
"""
import os
import re
import shutil
import tempfile
import tomllib
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from scapy.layers.l2 import Ether
from scapy.packet import Packet

from softdpu import config, drops
from softdpu.batch import M_DROP
from softdpu.config_tunnels import TUNNEL_TYPES
from softdpu.errors import ConfigError
from softdpu.pipeline import Dpu
from softdpu.testing import fields, frames, replay

START = 1_764_000_000 * 10**9     # 2025-11-24 16:00:00 UTC, as the shipped captures
MAX_TRACES = 3                    # traces in one failure message
MAX_LISTED = 10                   # packets listed in one failure message
INLINE_FLOWS = "pipeline.flows"


@dataclass
class Sent:
    number: int          # 1-based, in the order the Dpu took them (as `softdpu trace --packet`)
    port: str
    record: frames.Record
    outputs: list        # port names its copies left by
    drop: str = ""       # drop reason name, "" if it left

    @property
    def summary(self):
        """scapy's one-line summary (dissected only when a message needs it)."""
        r = self.record
        return fields.dissect(r.data).summary() if r.data else f"a frame of {r.wire_len} bytes (not received: {self.drop})"


@dataclass
class Left:
    port: str
    packet: Packet       # scapy Ether, .time set from the timestamp
    frame: bytes
    ts_ns: int
    origin: int          # the Sent number it is a copy of, 0 for a packet softdpu made


class Harness:
    """A pipeline under test: send packets, expect outputs and drops (see the module docstring)."""

    __test__ = False      # not a pytest test class

    def __init__(self, path, batch=None, start_ns=START, _tmpdir=None):
        self.path = Path(path)
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 65536):
            raise ValueError(f"batch: expected 1..65536 packets, got {batch!r}")
        cfg = config.load(self.path)
        if batch is not None:
            cfg.batch = batch
        self.config = cfg
        self.dpu = Dpu(cfg)
        self.now_ns = int(start_ns)
        self._tmpdir = _tmpdir
        if _tmpdir is not None:
            self._cleanup = weakref.finalize(self, shutil.rmtree, _tmpdir, True)
        self._by_name = {p.name: p for p in cfg.ports}
        self._by_ofport = {p.ofport: p for p in cfg.ports}
        self._out = {p.ofport for p in cfg.ports if p.type == "pcap"}
        self.queues = {p.name: deque() for p in cfg.ports if p.type == "pcap"}
        self.pending_drops = Counter()
        self.sent = []                 # every Sent, in order
        self._history = []             # [(ofport, [Record])] per batch, for replay
        self._last = []                # the Sent numbers of the last send()
        self._taken = {}               # port -> how many expect() took

    # -- making one -------------------------------------------------------------------
    @classmethod
    def load(cls, path, **kw):
        """A harness for a pipeline file (.toml)."""
        return cls(path, **kw)

    @classmethod
    def from_text(cls, toml, flows="", **kw):
        """A harness for a pipeline given as text: the TOML and the .flows lines.

        The [pipeline] table may leave out `flows` (the text given here is used);
        the files live in a temporary directory removed by close().
        """
        tmp = Path(tempfile.mkdtemp(prefix="softdpu-test-"))
        try:
            (tmp / INLINE_FLOWS).write_text(flows)
            text, added = _with_flows(toml)
            (tmp / "pipeline.toml").write_text(text)
            try:
                return cls(tmp / "pipeline.toml", _tmpdir=tmp, **kw)
            except ConfigError as e:
                if added is None or not e.line or e.line <= added or not e.path.endswith("pipeline.toml"):
                    raise
                # the line of the text given, before the `flows =` line we added
                message = str(e).split(f": {e.key}: ", 1)[1]
                raise ConfigError(e.path, e.key, message, e.line - 1) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def close(self):
        """Remove the temporary files of a from_text() pipeline (nothing else to release)."""
        if self._tmpdir is not None:
            self._cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the clock --------------------------------------------------------------------
    @property
    def now(self):
        """The clock in seconds since the epoch (float); now_ns is exact."""
        return self.now_ns / 1e9

    def advance(self, seconds):
        """Move the clock forward: the next packets are sent `seconds` later."""
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError(f"advance: expected a number of seconds >= 0, got {seconds!r}")
        self.now_ns += round(seconds * 1e9)

    # -- sending ----------------------------------------------------------------------
    def send(self, port, packets):
        """Send packets into `port` (name or ofport) at the clock's time; returns {port: [packets]} that left.

        packets: a scapy packet, bytes, a list of those, or the path of a pcap / pcapng file.
        """
        p = self._port(port, "send")
        if p.type in TUNNEL_TYPES:
            raise ValueError(f"send: {p.name} is a {p.type} port; send the encapsulated packet to its "
                             f"underlay {p.options['underlay']}")
        records = self._records(packets)
        first = len(self.sent) + 1
        size = self.dpu.batch.size
        got = {}
        for k in range(0, len(records), size):
            chunk = records[k: k + size]
            self._run(p, chunk, got)
        self._last = list(range(first, len(self.sent) + 1))
        return got

    def _records(self, packets):
        mf = self.config.max_frame
        if isinstance(packets, (str, os.PathLike)):
            path = Path(packets)
            if not path.is_file():
                raise FileNotFoundError(f"send: no such capture file: {path}")
            records = frames.from_capture(path, mf)
            if records:
                t0 = records[0].ts_ns
                for r in records:
                    r.ts_ns = self.now_ns + max(0, r.ts_ns - t0)
                self.now_ns = max(r.ts_ns for r in records)
            return records
        if isinstance(packets, (Packet, bytes, bytearray)):
            packets = [packets]
        packets = list(packets)
        for x in packets:
            if not isinstance(x, (Packet, bytes, bytearray)):
                raise TypeError(f"send: expected scapy packets, bytes or a capture path, got {type(x).__name__}")
        return frames.from_packets(packets, self.now_ns, mf)

    def _run(self, port, records, got):
        batch = self.dpu.batch
        frames.fill(batch, port.ofport, records)
        before = self.dpu.stats.drops.copy()
        self.dpu.process(batch)
        self._history.append((port.ofport, records))
        base = len(self.sent)
        for i, r in enumerate(records):
            self.sent.append(Sent(base + i + 1, port.name, r, []))
        for i in range(batch.n):
            code = int(batch.meta[i, M_DROP])
            if code:
                self.sent[base + i].drop = drops.NAMES[code]
        for code, n in enumerate(self.dpu.stats.drops - before):
            if code and n:
                self.pending_drops[drops.NAMES[code]] += int(n)
        for o in frames.outputs(batch, self._out):
            name = self._by_ofport[o.ofport].name
            pkt = fields.dissect(o.frame)
            pkt.time = o.ts_ns / 1e9
            origin = base + o.origin + 1 if o.origin >= 0 else 0
            self.queues[name].append(Left(name, pkt, o.frame, o.ts_ns, origin))
            got.setdefault(name, []).append(pkt)
            if origin:
                self.sent[origin - 1].outputs.append(name)

    # -- expectations -----------------------------------------------------------------
    def pending(self, port=None):
        """The packets that left and are not expected yet: of one port, or {port: [...]} of all."""
        if port is not None:
            return [x.packet for x in self.queues[self._out_port(port, "pending").name]]
        return {name: [x.packet for x in q] for name, q in self.queues.items() if q}

    def expect(self, port, packet, ignore=()):
        """The oldest packet not yet expected on `port` is `packet` (fields in `ignore` aside); returns it.

        packet: a scapy packet or bytes, or a list of them (expected in that order).
        """
        __tracebackhide__ = True          # pytest shows the test's line, not ours
        if isinstance(packet, (list, tuple)):
            return [self.expect(port, p, ignore) for p in packet]
        p = self._out_port(port, "expect")
        fields.parse_ignore(ignore)          # a bad ignore entry is an error even when nothing left
        q = self.queues[p.name]
        if not q:
            lines = [f"expect({p.name}): nothing (more) left {p.name}; expected:"]
            lines += _fields_of(packet)
            lines += self._what_happened()
            raise AssertionError("\n".join(lines + self._traces(self._last)))
        left = q[0]
        diff = fields.compare(packet, left.frame, ignore)
        if not diff.equal:
            n = self._taken.get(p.name, 0) + 1
            lines = [f"expect({p.name}): the packet that left {p.name} (its #{n}, "
                     f"{_origin_text(left, self.sent)}) differs from the expected one in "
                     f"{_names(diff.differing)}:"]
            lines += diff.table()
            lines += self._what_happened()
            raise AssertionError("\n".join(lines + self._traces([left.origin] if left.origin else self._last)))
        q.popleft()
        self._taken[p.name] = self._taken.get(p.name, 0) + 1
        return left.packet

    def expect_drop(self, reason=None, count=1):
        """`count` packets were dropped for `reason` (a softdpu/drops.py name; None: any) and not expected yet."""
        __tracebackhide__ = True          # pytest shows the test's line, not ours
        if reason is not None and (reason not in drops.CODE or reason == "none"):
            raise ValueError(f"expect_drop: unknown drop reason {reason!r}; the reasons are: "
                             f"{', '.join(drops.NAMES[1:])}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"expect_drop: count must be an integer >= 1, got {count!r}")
        have = sum(self.pending_drops.values()) if reason is None else self.pending_drops[reason]
        if have < count:
            what = reason or "any reason"
            why = f" ({drops.describe(drops.CODE[reason])[1]})" if reason else ""
            lines = [f"expect_drop({what}): expected {count} packet{'s' * (count > 1)} dropped for "
                     f"{what}{why}, not yet expected: {have}",
                     f"  drops not yet expected: {_counts(self.pending_drops) or 'none'}"]
            lines += self._what_happened()
            suspects = [n for n in self._last       # the packets that did not do what was expected
                        if (self.sent[n - 1].drop != reason if reason else not self.sent[n - 1].drop)]
            raise AssertionError("\n".join(lines + self._traces(suspects or self._last)))
        left = count
        for name in ([reason] if reason else [n for n in drops.NAMES if self.pending_drops[n]]):
            take = min(left, self.pending_drops[name])
            self.pending_drops[name] -= take
            left -= take
        self.pending_drops += Counter()      # drop zero counts

    def expect_nothing_else(self, drops=True):
        """No packet left that was not expected, and (drops=True) no drop that was not expected."""
        __tracebackhide__ = True          # pytest shows the test's line, not ours
        rest = [x for q in self.queues.values() for x in q]
        rest.sort(key=lambda x: (x.origin or 1 << 62, x.port))
        dropped = {k: v for k, v in self.pending_drops.items() if v} if drops else {}
        if not rest and not dropped:
            return
        lines = ["expect_nothing_else: " + "; ".join(
            ([f"{len(rest)} packet{'s' * (len(rest) > 1)} left that no expect() took"] if rest else [])
            + ([f"drops not expected: {_counts(dropped)}"] if dropped else []))]
        for x in rest[:MAX_LISTED]:
            lines.append(f"  {x.port}: {x.packet.summary()}  ({_origin_text(x, self.sent)})")
        if len(rest) > MAX_LISTED:
            lines.append(f"  ... and {len(rest) - MAX_LISTED} more")
        lines += self._what_happened()
        origins = sorted({x.origin for x in rest if x.origin})
        origins += [s.number for s in self.sent if s.drop in dropped and s.number not in origins]
        raise AssertionError("\n".join(lines + self._traces(origins or self._last)))

    def clear(self):
        """Forget what left and what was dropped so far (e.g. after warm-up traffic); state stays."""
        for q in self.queues.values():
            q.clear()
        self.pending_drops.clear()

    # -- explaining -------------------------------------------------------------------
    @property
    def stats(self):
        """The Dpu's Stats: per-port counters and drops since the start."""
        return self.dpu.stats

    def trace(self, number):
        """`softdpu trace` of sent packet `number` (1-based) as text: the sends replayed on a fresh Dpu."""
        if not 1 <= number <= len(self.sent):
            raise ValueError(f"trace: no packet {number}; {len(self.sent)} were sent")
        return replay.traces(self.path, self.config.batch, self._history, [number])[number]

    def dump_flows(self, stats=True, table=None):
        """The flow tables with their counters, as `softdpu dump-flows` prints them (duration: the clock's span)."""
        from softdpu import dump_flows
        first = self.sent[0].record.ts_ns if self.sent else self.now_ns
        return dump_flows.format_flows(self.dpu.flows.program, duration_ns=self.now_ns - first, stats=stats,
                                       table=table)

    def dump_conntrack(self):
        """The connections alive at the clock's time, as `softdpu dump-conntrack -s` prints them ([] without ct)."""
        if not self.dpu.flows.uses_ct:
            return []
        return self.dpu.flows.conntrack.dump(self.now_ns)

    def _traces(self, numbers):
        numbers = sorted(set(numbers))[:MAX_TRACES]
        if not numbers:
            return []
        try:
            texts = replay.traces(self.path, self.config.batch, self._history, numbers)
        except Exception as e:  # noqa: BLE001 - the failure at hand matters more than its trace
            return ["", f"(no trace: {type(e).__name__}: {e})"]
        out = []
        for n in numbers:
            out += ["", f"softdpu trace of packet {n}:"] + ["  " + line for line in texts[n].splitlines()]
        return out

    def _what_happened(self):
        if not self._last:
            return ["  (nothing was sent)"]
        lines = ["what the last send() did:"]
        for n in self._last[:MAX_LISTED]:
            s = self.sent[n - 1]
            fate = f"left by {', '.join(s.outputs)}" if s.outputs else (f"dropped: {s.drop}" if s.drop else
                                                                       "did not leave")
            lines.append(f"  packet {n} on {s.port}: {s.summary} -> {fate}")
        if len(self._last) > MAX_LISTED:
            lines.append(f"  ... and {len(self._last) - MAX_LISTED} more")
        waiting = {k: len(v) for k, v in self.queues.items() if v}
        lines.append(f"  not yet expected: {_counts(waiting) or 'no packets'}; "
                     f"drops {_counts(self.pending_drops) or 'none'}")
        return lines

    # -- ports ------------------------------------------------------------------------
    def _port(self, port, who):
        p = self._by_ofport.get(port) if isinstance(port, int) else self._by_name.get(port)
        if p is None:
            raise ValueError(f"{who}: no port {port!r}; the ports are: "
                             f"{', '.join(f'{q.name} ({q.ofport})' for q in self.config.ports)}")
        return p

    def _out_port(self, port, who):
        p = self._port(port, who)
        if p.name not in self.queues:
            raise ValueError(f"{who}: {p.name} is a {p.type} port: its packets leave by its underlay "
                             f"{p.options.get('underlay')}")
        return p


def _with_flows(toml):
    """(the TOML text with [pipeline] flows = INLINE_FLOWS where it has none, the line added or None)."""
    try:
        doc = tomllib.loads(toml)
    except tomllib.TOMLDecodeError:
        return toml, None                 # config.load reports it, with the line
    pipe = doc.get("pipeline")
    if isinstance(pipe, dict) and "flows" in pipe:
        raise ValueError("from_text: the TOML names a flows file; give the flows as text instead "
                         "(leave `flows` out of [pipeline])")
    if pipe is None:                      # a [pipeline] table at the end: no line moves
        return toml + f'\n[pipeline]\nflows = "{INLINE_FLOWS}"\n', None
    m = re.search(r"^\s*\[\s*pipeline\s*\][^\n]*$", toml, re.M)
    if m is None:
        return toml, None
    return toml[: m.end()] + f'\nflows = "{INLINE_FLOWS}"' + toml[m.end():], toml[: m.end()].count("\n") + 2


def _fields_of(packet):
    rows = fields.compare(packet, packet).rows
    w = max([len(r.name) for r in rows] + [5])
    return [f"    {r.name:<{w}}  {r.expected}" for r in rows]


def _origin_text(left, sent):
    if not left.origin:
        return "made by softdpu"
    s = sent[left.origin - 1]
    return f"a copy of packet {s.number}, sent on {s.port}"


def _names(names, most=6):
    return ", ".join(names[:most]) + (f" and {len(names) - most} more fields" if len(names) > most else "")


def _counts(d):
    return ", ".join(f"{k}={v}" for k, v in d.items() if v)
