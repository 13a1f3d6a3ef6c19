"""Benchmark traffic: a pipeline's own captures, resized and replicated over many flows.

    t = build(dpu, size="64", flows=1024)        # or pcap=(port, path)
    t.frames uint8[n, width], t.lengths int64[n], t.in_port int64[n]

The trace: every packet of the pipeline's input captures (or of --pcap), in
the timestamp-merged order a `softdpu run` takes them.  It exercises what the
pipeline was written for: handshakes and replies for a firewall, both tunnel
directions for an overlay, learning and floods for a switch.

Size (`--size 64|512|1400|imix`, or None: as captured): each packet is
rebuilt with scapy with its innermost UDP/ICMP/other payload grown or cut so
the frame is the size; lengths and checksums are recomputed (a checksum of 0,
"none", stays 0).  TCP segments keep their payload (so sequence numbers and
conntrack's windows stay right) and are padded with an Ethernet trailer
instead, and so are ESP packets (their ciphertext and ICV cannot change).  A
packet whose headers alone are longer than the size keeps its headers
(`too_big` counts them; the mean size says what was measured).
With IMIX the k-th packet of the pool takes IMIX_PATTERN[k % 12].

Flows (`--flows N`): the trace is replicated N times; in copy k every TCP
and UDP header (also one quoted in an ICMP error; not a tunnel's outer UDP
nor NAT-T ESP's) has its ephemeral port, the larger of the two when >= 1024, mapped
1024 + (port - 1024 + 7919 k) mod 64512: both directions of a connection map
alike, so copy k is k new connections of the same shape.  The enclosing
TCP/UDP/ICMP checksums are updated incrementally (RFC 1624).  The pool is the
copies in order, repeated up to at least `min_pool` packets.  Inbound ESP
packets are replayed as captured: after their first pass the receiving SA's
anti-replay window drops them (esp_replay), as it should.
"""
from dataclasses import dataclass

import numpy as np

from softdpu.batch import M_IN_PORT, Batch
from softdpu.bench.tax import IMIX_PATTERN
from softdpu.errors import SoftdpuError

MAX_FLOWS = 64_512
MIN_POOL = 65_536
MAX_POOL_BYTES = 1 << 30
MAX_TRACE_REWRITE = 50_000           # trace packets --size / --flows may rebuild with scapy
_STRIDE = 7919                       # coprime with 64512: k -> port is one to one
TUNNEL_PORTS = (4789, 6081, 4500)    # VXLAN, Geneve, NAT-T ESP: the outer UDP is left alone


@dataclass
class Traffic:
    frames: np.ndarray      # uint8[n, width], row k's frame in [:lengths[k]]
    lengths: np.ndarray     # int64[n]
    in_port: np.ndarray     # int64[n] OpenFlow port numbers
    trace_packets: int      # packets in one copy of the trace
    flows: int
    size: str               # "64", "512", "1400", "imix" or "as captured"
    too_big: int            # trace packets longer than the size asked for (headers alone)
    source: str             # where the trace came from

    @property
    def n(self):
        return len(self.lengths)

    @property
    def mean_frame(self):
        return float(self.lengths.mean())


def read_trace(dpu, pcap=None):
    """[(ofport, frame bytes)] of the pipeline's inputs (or pcap = (port name, path)), merged."""
    from softdpu.pipeline import _merged, _single
    from softdpu.ports.capture import open_capture

    from pathlib import Path

    where = dpu.config.path
    if pcap is not None:
        name, path = pcap
        ports = {p.name: p for p in dpu.ports}
        if name not in ports:
            raise SoftdpuError(f"{where}: --pcap: no port named {name!r}; ports are: {', '.join(ports)}")
        if not Path(path).is_file():
            raise SoftdpuError(f"--pcap: no such capture file: {path}")
        sources = [(ports[name], Path(path))]
    else:
        sources = [(p, p.options["input"]) for p in dpu.ports if p.options.get("input")]
        if not sources:
            raise SoftdpuError(f"{where}: no input capture to benchmark with: give a port an input file "
                               "or use --pcap [PORT=]FILE")
    scratch = Batch(dpu.batch.size, dpu.batch.max_frame, fanout=1, clones=0)
    readers = [open_capture(path, port.ofport) for port, path in sources]
    out = []
    try:
        batches = _single(readers[0], scratch) if len(readers) == 1 else _merged(readers, scratch)
        for batch in batches:
            for i in range(batch.n):
                out.append((int(batch.meta[i, M_IN_PORT]), batch.packet(i)))
    finally:
        for r in readers:
            r.close()
    if not out:
        raise SoftdpuError(f"{', '.join(str(f) for _, f in sources)}: no packets to benchmark with")
    return out, ", ".join(f"{p.name}={f}" for p, f in sources)


def _scapy():
    """Load the scapy layers the traces need (VXLAN and Geneve are not loaded by default)."""
    import scapy.contrib.geneve  # noqa: F401
    import scapy.layers.inet6  # noqa: F401
    import scapy.layers.ipsec  # noqa: F401
    import scapy.layers.vxlan  # noqa: F401


def _layers(pkt):
    out, layer = [], pkt
    while layer is not None and layer.__class__.__name__ != "NoPayload":
        out.append(layer)
        layer = layer.payload if layer.payload else None
    return out


def resize(frame, size):
    """frame (bytes) rebuilt to `size` bytes as the module docstring says; may come out longer."""
    from scapy.layers.inet import TCP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.layers.l2 import Ether
    from scapy.packet import Padding, Raw

    if len(frame) == size:
        return frame
    _scapy()
    try:
        pkt = Ether(frame)
        layers = _layers(pkt)
        if any(isinstance(x, (TCP, ESP)) for x in layers) or not layers:
            raise ValueError("pad")            # keep the segment (or the ciphertext), pad the frame
        tunnel = [x for x in layers if isinstance(x, UDP) and (x.dport in TUNNEL_PORTS or x.sport in TUNNEL_PORTS)]
        if tunnel and not any(isinstance(x, Ether) for x in layers[1:]):
            raise ValueError("pad")            # a tunnel packet scapy cannot open
        while layers and isinstance(layers[-1], Padding):
            layers[-2].remove_payload()
            layers.pop()
        for x in layers:
            name = x.__class__.__name__
            if name.endswith("error") or name in ("Raw",):
                break                           # a quoted packet is kept as quoted
            for f in ("len", "plen", "chksum", "cksum"):
                if f in x.fields and not (f in ("chksum", "cksum") and x.fields[f] == 0):
                    setattr(x, f, None)          # recomputed (and scapy's cache of the bytes dropped)
        last = layers[-1]
        fixed = len(bytes(pkt)) - (len(last.load) if isinstance(last, Raw) else 0)
        room = max(0, size - fixed)
        body = bytes((i * 7) & 0xFF for i in range(room))
        if isinstance(last, Raw):
            last.load = body
        elif room:
            last.add_payload(Raw(body))
        out = bytes(pkt)
        if len(out) > size and len(frame) <= size:
            raise ValueError("pad")
    except ValueError:
        out = frame
    if len(out) < size:
        out += bytes(size - len(out))          # an Ethernet trailer
    elif len(out) > size and len(frame) > size:
        out = out if len(out) < len(frame) else frame
    return out


def _fields(frame):
    """(port offsets [(offset, value)], checksums [(chk offset, cover start, is_udp)]) of a frame."""
    from scapy.layers.inet import ICMP, TCP, UDP
    from scapy.layers.l2 import Ether

    _scapy()
    pkt = Ether(frame)
    raw = bytes(pkt)
    if raw != frame[: len(raw)] or len(raw) != len(frame):
        return [], []
    ports, sums = [], []
    for x in _layers(pkt):
        at = len(raw) - len(bytes(x))
        if isinstance(x, (TCP, UDP)):
            sport, dport = x.sport, x.dport
            tunnel = isinstance(x, UDP) and (dport in TUNNEL_PORTS or sport in TUNNEL_PORTS)
            if not tunnel and max(sport, dport) >= 1024:
                ports.append(at if sport >= dport else at + 2)
            is_udp = isinstance(x, UDP)
            if not (is_udp and x.chksum == 0):
                sums.append((at + (6 if is_udp else 16), at, is_udp))
        elif isinstance(x, ICMP) or "ICMPv6" in x.__class__.__name__ and "cksum" in x.fields:
            sums.append((at + 2, at, False))
    return ports, sums


def _word(rows, off):
    return rows[:, off].astype(np.int64) << 8 | rows[:, off + 1]


def _set_word(rows, off, v):
    rows[:, off] = (v >> 8) & 0xFF
    rows[:, off + 1] = v & 0xFF


def replicate(frame, k):
    """uint8[len(k), len(frame)]: copy j of frame with its ephemeral ports mapped for flow k[j]."""
    rows = np.tile(np.frombuffer(frame, np.uint8), (len(k), 1))
    ports, sums = _fields(frame)
    if not ports:
        return rows
    k = np.asarray(k, np.int64)
    changes = []
    for off in ports:
        old = _word(rows, off)
        new = np.where(old >= 1024, 1024 + (old - 1024 + _STRIDE * k) % MAX_FLOWS, old)
        _set_word(rows, off, new)
        changes.append((off, old, new))
    for chk, start, is_udp in sorted(sums, key=lambda s: -s[1]):
        acc = (~_word(rows, chk)) & 0xFFFF
        for off, old, new in changes:
            if off < start or off == chk:
                continue
            if (off - start) % 2:            # a word at an odd distance: bytes swap places
                old = ((old & 0xFF) << 8) | (old >> 8)
                new = ((new & 0xFF) << 8) | (new >> 8)
            acc = acc + ((~old) & 0xFFFF) + new
        while (acc >> 16).any():
            acc = (acc & 0xFFFF) + (acc >> 16)
        value = (~acc) & 0xFFFF
        if is_udp:
            value = np.where(value == 0, 0xFFFF, value)
        changes.append((chk, _word(rows, chk), value))
        _set_word(rows, chk, value)
    return rows


def build(dpu, size=None, flows=1, pcap=None, min_pool=MIN_POOL):
    """The benchmark pool for dpu: Traffic (see the module docstring)."""
    if size is not None and size not in ("64", "512", "1400", "imix"):
        raise SoftdpuError(f"--size: expected 64, 512, 1400 or imix, got {size!r}")
    if not 1 <= flows <= MAX_FLOWS:
        raise SoftdpuError(f"--flows: expected 1..{MAX_FLOWS}, got {flows}")
    trace, source = read_trace(dpu, pcap)
    t = len(trace)
    if (size is not None or flows > 1) and t > MAX_TRACE_REWRITE:
        raise SoftdpuError(f"{source}: {t:,} packets are too many to resize or replicate (each is rebuilt with "
                           f"scapy once; at most {MAX_TRACE_REWRITE:,}): use the capture as it is (no --size, "
                           "--flows 1) or a shorter one")
    reps = max(1, -(-min_pool // (t * flows)))
    n = t * flows * reps
    if size is None:
        sizes = [None]
    elif size == "imix":
        sizes = sorted(set(IMIX_PATTERN))
    else:
        sizes = [int(size)]
    limit = max(len(f) for _, f in trace) if size is None else max(sizes)
    variants = {}
    too_big = 0
    for j, (_, frame) in enumerate(trace):
        for s in sizes:
            v = frame if s is None else resize(frame, s)
            if s is not None and s == max(sizes) and len(v) > s:
                too_big += 1
            variants[j, s] = v
    width = max(limit, max(len(v) for v in variants.values()))
    if n * width > MAX_POOL_BYTES:
        raise SoftdpuError(f"the traffic ({flows} flows x {t} packets of up to {width} bytes, {n:,} packets) is more "
                           f"than {MAX_POOL_BYTES >> 20} MB in memory; use fewer flows or a shorter capture")
    frames = np.zeros((n, width), np.uint8)
    lengths = np.zeros(n, np.int64)
    in_port = np.zeros(n, np.int64)
    copies = n // t                             # the trace, n // t times over
    if size is None and flows == 1:             # as captured: one copy, then repeated by indexing
        base = np.zeros((t, width), np.uint8)
        for j, (_, frame) in enumerate(trace):
            base[j, : len(frame)] = np.frombuffer(frame, np.uint8)
        lens = np.array([len(f) for _, f in trace], np.int64)
        ports = np.array([p for p, _ in trace], np.int64)
        pos = np.arange(n) % t
        return Traffic(base[pos], lens[pos], ports[pos], t, flows, "as captured", 0, source)
    pattern = np.array(IMIX_PATTERN) if size == "imix" else None
    for j, (port, _) in enumerate(trace):
        rows = j + t * np.arange(copies)       # every occurrence of trace packet j
        in_port[rows] = port
        for s in sizes:
            mine = rows[pattern[rows % len(pattern)] == s] if pattern is not None else rows
            if not len(mine):
                continue
            v = variants[j, s]
            k = (mine // t) % flows             # the flow copy of each row
            frames[mine, : len(v)] = replicate(v, k) if flows > 1 else np.frombuffer(v, np.uint8)
            lengths[mine] = len(v)
    return Traffic(frames, lengths, in_port, t, flows, size or "as captured", too_big, source)
