"""pcap ports: libpcap/pcapng reading into batches, libpcap writing from tx lists.

Oracles: scapy (wrpcap, wrpcapng, rdpcap), editcap/tshark, and files built
by hand with struct for what those tools do not write (big-endian, several
interfaces and resolutions, SPB, damage).
"""
import random
import struct
import subprocess
import tracemalloc
from decimal import Decimal

import numpy as np
import pytest
from conftest import need_tool
from hypothesis import HealthCheck, given, settings, strategies as hst
from scapy.all import ARP, IP, TCP, UDP, Ether, IPv6, Raw, rdpcap, wrpcap
from scapy.utils import wrpcapng

from softdpu import drops
from softdpu.batch import (M_COLS, M_DROP, M_IN_PORT, M_LEN, M_START, M_TS, M_WIRE_LEN,
                           Batch)
from softdpu.ports.capture import CaptureError, CaptureWarning, open_capture
from softdpu.ports.pcap_write import PcapWriter

T0 = 1_700_000_000
NS = 1_000_000_000
OTHER_COLS = [c for c in range(M_COLS)
              if c not in (M_START, M_LEN, M_WIRE_LEN, M_TS, M_IN_PORT, M_DROP)]


# ---------------------------------------------------------------- helpers

def frames(sizes):
    """Valid Ethernet frames of exactly these sizes, of a few protocols."""
    bases = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(dst="10.0.0.2")
             / UDP(sport=40000, dport=40001),
             Ether() / IP(dst="10.0.0.3") / TCP(sport=40000, dport=40001, flags="A"),
             Ether() / IPv6() / UDP(sport=40000, dport=40001),
             Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(),
             Ether(type=0x88B5)]                                # local experimental
    out = []
    for k, size in enumerate(sizes):
        base = next(b for b in bases[k % 4:] + bases[-1:] if len(b) <= size)
        pad = bytes((k + i) % 256 for i in range(size - len(base)))
        out.append(Ether(bytes(base / Raw(pad)) if pad else bytes(base)))
        assert len(out[-1]) == size
    return out


def read_all(path, port=1, max_frame=1600, size=256, chunk=1 << 20):
    """[(bytes, ts, wire_len, drop)], reader, warnings; checks every row's meta."""
    warns, out = [], []
    b = Batch(size=size, max_frame=max_frame)
    with open_capture(path, port, warn=warns.append, chunk=chunk) as r:
        while True:
            b.clear()
            b.meta[:] = -7                       # every column must be rewritten
            n = r.fill(b)
            assert b.n == n
            if not n:
                break
            m = b.meta[:n]
            assert (m[:, M_START] == b.headroom).all() and (m[:, M_IN_PORT] == port).all()
            assert (m[:, OTHER_COLS] == 0).all()
            out += [(b.packet(i), int(m[i, M_TS]), int(m[i, M_WIRE_LEN]), int(m[i, M_DROP]))
                    for i in range(n)]
    assert r.packets == len(out)
    return out, r, warns


def pcap_file(records, order="<", ns=False, snaplen=65535, linktype=1):
    """libpcap bytes; records are (sec, frac, data, orig_len or None)."""
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, orig in records:
        out.append(struct.pack(order + "IIII", sec, frac, len(data),
                               len(data) if orig is None else orig) + data)
    return b"".join(out)


def write_all(path, records, snaplen=65535, nanosecond=False, max_frame=1600):
    """Read `records` (from read_all) into batches, send all to port 1, write them."""
    b = Batch(size=4, max_frame=max_frame)
    with PcapWriter(path, nanosecond=nanosecond, snaplen=snaplen) as w:
        for k in range(0, len(records), b.size):
            b.clear()
            for j, (data, ts, wire, _) in enumerate(records[k: k + b.size]):
                b.append(data, ts=ts, wire_len=wire)
                b.tx[j, :2] = (j, 1)
            b.n_tx = b.n
            w.write_tx(b, 1)
    return w


# pcapng, by hand
def block(o, btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def opt(o, code, value):
    return struct.pack(o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(o="<", section_len=-1):
    return block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, section_len))


def idb(o="<", linktype=1, snaplen=0, tsresol=None, tsoffset=None):
    opts = b""
    if tsresol is not None:
        opts += opt(o, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += opt(o, 14, struct.pack(o + "q", tsoffset))
    opts += opt(o, 0, b"") if opts else b""
    return block(o, 1, struct.pack(o + "HHI", linktype, 0, snaplen) + opts)


def epb(o, iface, raw, data, orig=None):
    return block(o, 6, struct.pack(o + "IIIII", iface, raw >> 32, raw & 0xFFFFFFFF, len(data),
                                   len(data) if orig is None else orig) + data)


def spb(o, data, orig=None):
    return block(o, 3, struct.pack(o + "I", len(data) if orig is None else orig) + data)


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def tshark_count(path):
    """Packets tshark reads from path, asserting no error and no malformed packet."""
    r = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number",
                        "-e", "_ws.malformed"], capture_output=True, text=True, timeout=60)
    errors = [ln for ln in r.stderr.splitlines() if "Running as user" not in ln and ln.strip()]
    assert r.returncode == 0 and not errors, r.stderr
    lines = r.stdout.splitlines()
    assert all(ln.split("\t")[1:] in ([], [""]) for ln in lines), r.stdout
    return len(lines)


def synth(path, n, size=64):
    """A libpcap file of n frames of `size` bytes, fast (numpy)."""
    rec = np.dtype([("h", "<u4", 4), ("f", "u1", (size,))])
    r = np.zeros(n, rec)
    i = np.arange(n)
    r["h"][:, 0], r["h"][:, 1] = T0 + i // 1_000_000, i % 1_000_000
    r["h"][:, 2] = r["h"][:, 3] = size
    r["f"][:, :4] = i.astype("<u4").view(np.uint8).reshape(n, 4)
    with open(path, "wb") as f:
        f.write(pcap_file([]))
        r.tofile(f)


# ---------------------------------------------------------------- round trips

SIZES = [60, 64, 61, 100, 128, 333, 1514, 9000, 60, 1514]


def test_roundtrip_scapy_microseconds_byte_identical(tmp_path):
    pkts = frames(SIZES)
    for k, p in enumerate(pkts):
        p.time = Decimal(T0 + k) + Decimal(k * 111_111 % 1_000_000) / 1_000_000
    src = tmp_path / "in.pcap"
    wrpcap(str(src), pkts)
    recs, r, warns = read_all(src, max_frame=9216, size=3)
    assert (r.nanosecond, r.linktype, r.snaplen, warns) == (False, 1, 65535, [])
    assert [x[0] for x in recs] == [bytes(p) for p in pkts]
    raw = src.read_bytes()
    pos = 24
    for data, ts, wire, drop in recs:     # timestamps are what the file says
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, pos)
        assert (ts, wire, drop) == (sec * NS + usec * 1000, orig, 0)
        pos += 16 + incl
    assert r.bytes == sum(SIZES)
    dst = tmp_path / "out.pcap"
    w = write_all(dst, recs, max_frame=9216)
    assert (w.packets, w.bytes) == (len(SIZES), sum(SIZES))
    assert dst.read_bytes() == raw
    assert len(rdpcap(str(dst))) == len(SIZES)
    need_tool("tshark")
    assert tshark_count(dst) == len(SIZES)


def test_roundtrip_nanoseconds_byte_identical(tmp_path):
    pkts = frames(SIZES[:8])
    recs_in = [(T0 + k, k * 123_456_789 % NS, bytes(p), None) for k, p in enumerate(pkts)]
    src = write(tmp_path, "in.pcap", pcap_file(recs_in, ns=True, snaplen=262144))
    recs, r, _ = read_all(src, max_frame=9216)
    assert r.nanosecond
    assert [x[1] for x in recs] == [s * NS + f for s, _, f in
                                    ((s, 0, f) for s, f, _, _ in recs_in)]
    dst = tmp_path / "out.pcap"
    write_all(dst, recs, nanosecond=True, snaplen=262144, max_frame=9216)
    assert dst.read_bytes() == src.read_bytes()
    # scapy's own nanosecond files too
    for p, (s, f, _, _) in zip(pkts, recs_in):
        p.time = Decimal(s) + Decimal(f) / NS
    wrpcap(str(src), pkts, nano=True)
    recs2, _, _ = read_all(src, max_frame=9216)
    assert recs2 == recs
    write_all(dst, recs2, nanosecond=True, max_frame=9216)
    assert dst.read_bytes() == src.read_bytes()
    need_tool("tshark")
    assert tshark_count(dst) == len(pkts)


@pytest.mark.parametrize("ns", [False, True])
def test_big_endian_reads_the_same(tmp_path, ns):
    pkts = [bytes(p) for p in frames([60, 1514, 77, 64])]
    recs = [(T0 + k, 999_999 - k, d, None) for k, d in enumerate(pkts)]
    le, r1, _ = read_all(write(tmp_path, "le.pcap", pcap_file(recs, "<", ns)))
    be, r2, _ = read_all(write(tmp_path, "be.pcap", pcap_file(recs, ">", ns)))
    assert le == be and [x[0] for x in be] == pkts
    assert be[0][1] == T0 * NS + 999_999 * (1 if ns else 1000)
    assert r1.nanosecond == r2.nanosecond == ns


# ---------------------------------------------------------------- pcapng

def test_pcapng_from_scapy_and_editcap(tmp_path):
    pkts = frames([60, 64, 1514, 200, 61])
    for k, p in enumerate(pkts):
        p.time = Decimal(T0 + k) + Decimal(k * 7 + 1) / 1_000_000
    src = tmp_path / "in.pcap"
    wrpcap(str(src), pkts)
    want, _, _ = read_all(src)
    ng = tmp_path / "scapy.pcapng"
    wrpcapng(str(ng), pkts)
    got, r, warns = read_all(ng, size=2)
    assert got == want and r.linktype == 1 and warns == []
    need_tool("editcap")
    for nano in (False, True):
        srcn = src
        if nano:
            srcn = tmp_path / "in_ns.pcap"
            wrpcap(str(srcn), pkts, nano=True)
        conv = tmp_path / f"editcap{nano}.pcapng"
        subprocess.run(["editcap", "-F", "pcapng", str(srcn), str(conv)], check=True)
        got, r, _ = read_all(conv)
        assert got == want and r.nanosecond == nano


def test_pcapng_interfaces_resolutions_sections_and_skipped_blocks(tmp_path):
    o = "<"
    d = [bytes(p) for p in frames([60, 70, 80, 90, 100, 110])]
    content = b"".join([
        shb(o), idb(o),                                  # 0: default 10^-6
        idb(o, tsresol=9, snaplen=65535),                # 1: ns
        block(o, 4, b"\x01\x00\x08\x00" + bytes(8) + b"\0" * 4),  # NRB, skipped
        idb(o, tsresol=0x80 | 20, tsoffset=100),         # 2: 2^-20 s, +100 s
        idb(o, tsresol=12),                              # 3: picoseconds
        epb(o, 0, (T0 * 1_000_000) + 123_456, d[0]),
        epb(o, 1, T0 * NS + 123_456_789, d[1]),
        block(o, 0x00000BAD, b"custom block body"),      # custom, skipped
        epb(o, 2, (T0 << 20) | (1 << 19), d[2]),
        block(o, 5, struct.pack(o + "III", 0, 0, 0)),    # ISB, skipped
        block(o, 2, struct.pack(o + "HHIIII", 3, 0, 1192, 3855772180, 90, 90) + d[3]),  # PB
        shb(">"), idb(">", tsresol=3),                   # a big-endian section: ms
        epb(">", 0, T0 * 1000 + 123, d[4]),
        shb("<"), idb("<", tsresol=0x80),                # 2^0: seconds
        epb("<", 0, T0, d[5]),
    ])
    got, r, warns = read_all(write(tmp_path, "multi.pcapng", content), size=4)
    assert [x[0] for x in got] == d and warns == []
    assert [x[1] for x in got] == [T0 * NS + 123_456_000, T0 * NS + 123_456_789,
                                   (T0 + 100) * NS + 500_000_000, 5_123_456_789,
                                   T0 * NS + 123_000_000, T0 * NS]
    assert r.nanosecond and r.linktype == 1


def test_pcapng_simple_packet_blocks(tmp_path):
    o = "<"
    d = [bytes(p) for p in frames([61, 200, 64])]
    content = (shb(o) + idb(o, snaplen=100) + epb(o, 0, T0 * 1_000_000 + 5, d[2])
               + spb(o, d[0])                       # 61 bytes, block padded to 64
               + spb(o, d[1][:100], orig=200))      # cut by interface 0's snaplen
    got, r, _ = read_all(write(tmp_path, "spb.pcapng", content))
    ts = T0 * NS + 5000
    assert got == [(d[2], ts, 64, 0), (d[0], ts, 61, 0),
                   (d[1][:100], ts, 200, drops.SNAPLEN_TRUNCATED)]


# ---------------------------------------------------------------- flags

def test_snaplen_truncated_and_frame_too_big(tmp_path):
    d = [bytes(p) for p in frames([100, 2000, 64, 1600, 1601])]
    recs = [(T0, 1, d[0][:60], 100), (T0, 2, d[1], None), (T0, 3, d[2], None),
            (T0, 4, d[3], None), (T0, 5, d[4], None)]
    got, r, _ = read_all(write(tmp_path, "f.pcap", pcap_file(recs)))
    assert got == [(d[0][:60], T0 * NS + 1000, 100, drops.SNAPLEN_TRUNCATED),
                   (b"", T0 * NS + 2000, 2000, drops.FRAME_TOO_BIG),
                   (d[2], T0 * NS + 3000, 64, 0),
                   (d[3], T0 * NS + 4000, 1600, 0),
                   (b"", T0 * NS + 5000, 1601, drops.FRAME_TOO_BIG)]
    ng = shb() + idb() + b"".join(epb("<", 0, T0 * 1_000_000 + k, data, orig)
                                 for k, (_, _, data, orig) in enumerate(recs))
    got2, _, _ = read_all(write(tmp_path, "f.pcapng", ng))
    assert [x[2:] for x in got2] == [x[2:] for x in got]
    assert [x[0] for x in got2] == [x[0] for x in got]


def test_fill_appends_after_existing_rows(tmp_path):
    d = [bytes(p) for p in frames([60, 61, 62])]
    path = write(tmp_path, "a.pcap", pcap_file([(T0, k, x, None) for k, x in enumerate(d)]))
    b = Batch(size=4)
    b.append(b"\x01" * 60)
    with open_capture(path, 7) as r:
        assert r.fill(b) == 3 and b.n == 4 and not r.eof
        b.clear()
        assert r.fill(b) == 0 and r.eof and r.fill(b) == 0
        assert r.packets == 3 and r.path == str(path)
    b.n = 4
    assert [b.packet(i) for i in range(1, 4)] == d
    assert list(b.meta[1:4, M_IN_PORT]) == [7, 7, 7]


# ---------------------------------------------------------------- streaming

def _random_records(n, seed, big=()):
    rng = random.Random(seed)
    sizes = [rng.choice([0, 14, 60, 64, 65, rng.randrange(60, 1601), 1514, 9000])
             for _ in range(n)]
    for pos, size in big:
        sizes[pos] = size
    return [(T0 + k // 1000, k % 1000, bytes((k + i) % 251 for i in range(s)), None)
            for k, s in enumerate(sizes)]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_streams_many_chunks_in_order(tmp_path, fmt):
    recs = _random_records(1500, seed=fmt, big=[(700, 200_000), (701, 262144)])
    if fmt == "pcap":
        content = pcap_file(recs, snaplen=262144)
    else:
        content = shb() + idb() + b"".join(
            epb("<", 0, s * 1_000_000 + f, x) for s, f, x, _ in recs)
    path = write(tmp_path, "big." + fmt, content)
    assert len(content) > 20 * 4096
    got, r, warns = read_all(path, max_frame=9216, size=7, chunk=4096)
    assert warns == [] and len(got) == len(recs)
    for (s, f, x, _), (data, ts, wire, drop) in zip(recs, got):
        assert ts == s * NS + f * 1000 and wire == len(x)
        if len(x) > 9216:
            assert (data, drop) == (b"", drops.FRAME_TOO_BIG)
        else:
            assert (data, drop) == (x, 0)
    assert r.bytes == sum(len(x) for _, _, x, _ in recs)


def _traced_peak(path, batch):
    tracemalloc.start()
    tracemalloc.reset_peak()
    with open_capture(path, 1) as r:
        while r.fill(batch):
            batch.clear()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, r.packets


def test_memory_stays_flat(tmp_path):
    small, big = tmp_path / "50k.pcap", tmp_path / "200k.pcap"
    synth(small, 50_000)
    synth(big, 200_000)
    b = Batch()
    _traced_peak(small, b)                   # warm up: kernels loaded, caches filled
    p_small, n_small = _traced_peak(small, b)
    p_big, n_big = _traced_peak(big, b)
    assert (n_small, n_big) == (50_000, 200_000)
    assert big.stat().st_size > 10 * (1 << 20)
    assert p_big < p_small + (64 << 10)      # independent of the file size
    assert p_big < (1 << 20) + (256 << 10)   # the 1 MiB chunk and change


# ---------------------------------------------------------------- errors

def _error(path, **kw):
    with pytest.raises(CaptureError) as e:
        read_all(path, **kw)
    msg = str(e.value)
    assert str(path) in msg, msg
    return msg


def test_error_messages(tmp_path):
    p = write(tmp_path, "empty.pcap", b"")
    assert "empty file, not a pcap" in _error(p)
    p = write(tmp_path, "text.pcap", b"hello world, this is text")
    msg = _error(p)
    assert "offset 0" in msg and "68656c6c" in msg and "not a pcap" in msg
    assert "gzip" in _error(write(tmp_path, "gz.pcap", b"\x1f\x8b\x08\x00" + bytes(40)))
    assert "too short" in _error(write(tmp_path, "two.pcap", b"\xd4\xc3"))
    msg = _error(write(tmp_path, "short.pcap", pcap_file([])[:14]))
    assert "header cut short" in msg and "14 of 24" in msg
    msg = _error(write(tmp_path, "lt.pcap", pcap_file([(0, 0, bytes(60), None)], linktype=101)))
    assert "linktype 101" in msg and "offset 20" in msg
    good = pcap_file([(0, 0, bytes(60), None)])
    bad = good + struct.pack("<IIII", 0, 0, 300_000, 300_000) + bytes(100)
    msg = _error(write(tmp_path, "huge.pcap", bad))
    assert f"offset {len(good)}" in msg and "300000" in msg and "262144" in msg
    msg = _error(write(tmp_path, "shb.pcapng", shb()[:20]))
    assert "cut short" in msg and "offset 0" in msg


@pytest.mark.parametrize("blen, what", [(30, "multiple of 4"), (8, "at least 12"),
                                        (36, "trailing copy 32")])
def test_pcapng_bad_block_length(tmp_path, blen, what):
    head = shb() + idb()
    blk = bytearray(epb("<", 0, 1, bytes(4)))       # a 36-byte block
    if blen == 36:
        blk[-4:] = struct.pack("<I", 32)
    else:
        blk[4:8] = struct.pack("<I", blen)
    path = write(tmp_path, "b.pcapng", head + epb("<", 0, 1, bytes(60)) + bytes(blk))
    msg = _error(path)
    assert f"offset {len(head) + 92}" in msg and what in msg, msg
    b = Batch()
    with open_capture(path, 1) as r, pytest.raises(CaptureError):
        r.fill(b)
    assert b.n == r.packets == 1                  # the packet before the error is kept


def test_pcapng_linktype_and_interface_errors(tmp_path):
    head = shb() + idb() + idb(linktype=113)
    msg = _error(write(tmp_path, "lt.pcapng", head + epb("<", 1, 1, bytes(60))))
    assert "linktype 113" in msg and f"offset {len(head)}" in msg
    msg = _error(write(tmp_path, "cap.pcapng", head
                       + block("<", 6, struct.pack("<IIIII", 0, 0, 0, 300_000, 300_000))))
    assert f"offset {len(head)}" in msg and "record length 300000 exceeds 262144" in msg
    msg = _error(write(tmp_path, "if.pcapng", head + epb("<", 5, 1, bytes(60))))
    assert "interface 5" in msg and "defines 2" in msg
    bom = bytearray(shb())
    bom[8:12] = b"\x01\x02\x03\x04"
    assert "byte-order magic" in _error(write(tmp_path, "bom.pcapng", bytes(bom)))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncated_tail_is_a_warning_with_count(tmp_path, fmt):
    d = [bytes(p) for p in frames([60, 64, 100, 1514, 80])]
    if fmt == "pcap":
        content = pcap_file([(T0, k, x, None) for k, x in enumerate(d)])
        last = len(content) - 16 - 80
    else:
        content = shb() + idb() + b"".join(epb("<", 0, k, x) for k, x in enumerate(d))
        last = len(content) - 32 - 80
    path = write(tmp_path, "t." + fmt, content[:-30])
    got, r, warns = read_all(path)
    assert [x[0] for x in got] == d[:4] and len(warns) == 1
    assert str(path) in warns[0] and f"offset {last}" in warns[0]
    assert "4 packets read" in warns[0]
    with pytest.warns(CaptureWarning, match="4 packets read"):
        with open_capture(path, 1) as r2:
            while r2.fill(Batch()):
                pass


# ---------------------------------------------------------------- writer

def test_writer_ports_order_timestamps_and_frames(tmp_path):
    d = [bytes(p) for p in frames([60, 61, 62, 63])]
    b = Batch(size=4)
    for k, x in enumerate(d):
        b.append(x, ts=T0 * NS + k * 1000 + 999)    # µs output rounds down
    b.tx[:6, :2] = [(2, 1), (0, 2), (1, 1), (2, 1), (3, 3), (0, 1)]
    b.n_tx = 6
    path = tmp_path / "w.pcap"
    with PcapWriter(path) as w:
        w.write_frame(d[3], T0 * NS + 5)
        assert w.write_tx(b, 1) == (4, 62 + 61 + 62 + 60)
        assert w.write_tx(b, 9) == (0, 0)
        w.write_frame(memoryview(d[1]), (T0 + 1) * NS)
    assert (w.packets, w.bytes) == (6, 63 + 245 + 61)
    raw = path.read_bytes()
    assert raw[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    got, _, _ = read_all(path)
    assert [x[0] for x in got] == [d[3], d[2], d[1], d[2], d[0], d[1]]
    assert [x[1] - T0 * NS for x in got] == [0, 2000, 1000, 2000, 0, NS]
    ns = tmp_path / "ns.pcap"
    with PcapWriter(ns, nanosecond=True, snaplen=61) as w:
        assert w.write_tx(b, 1) == (4, 61 * 3 + 60)     # cut to the snaplen
    got, r, _ = read_all(ns)
    assert r.nanosecond and got[0] == (d[2][:61], T0 * NS + 2999, 62,
                                       drops.SNAPLEN_TRUNCATED)


def test_writer_flushes_big_outputs_and_rejects_bad_entries(tmp_path):
    b = Batch(size=256)
    frame = bytes(frames([1500])[0])
    for k in range(256):
        b.append(frame[:-1] + bytes([k]), ts=k)
        b.tx[k, :2] = (k, 1)
    b.n_tx = 256
    path = tmp_path / "big.pcap"
    with PcapWriter(path, buffer_size=0) as w:          # the 128 KiB minimum
        for _ in range(3):
            w.write_tx(b, 1)
    got, _, _ = read_all(path)
    assert len(got) == 768 and all(x[0] == frame[:-1] + bytes([k % 256])
                                   for k, x in enumerate(got))
    need_tool("tshark")
    assert tshark_count(path) == 768
    b.tx[5, :2] = (9999, 1)
    with PcapWriter(tmp_path / "bad.pcap") as w, pytest.raises(ValueError, match="tx entry 5"):
        w.write_tx(b, 1)
    assert w.packets == 5


# ---------------------------------------------------------------- fuzz

def _robust(path, max_frame=1600):
    """Read path whatever it holds: CaptureError or packets, with sane rows."""
    b = Batch(size=16, max_frame=max_frame)
    total, calls, warns = 0, 0, []
    limit = path.stat().st_size // 12 + 3
    try:
        with open_capture(path, 1, warn=warns.append, chunk=256) as r:
            while True:
                calls += 1
                assert calls <= limit, "no progress"
                b.clear()
                n = r.fill(b)
                if not n:
                    break
                total += n
                m = b.meta[:n]
                ok = m[:, M_DROP] == 0
                assert (m[ok, M_LEN] == m[ok, M_WIRE_LEN]).all()
                assert (m[:, M_LEN] <= max_frame).all() and (m[:, M_LEN] >= 0).all()
                cut = m[:, M_DROP] == drops.SNAPLEN_TRUNCATED
                assert (m[cut, M_LEN] < m[cut, M_WIRE_LEN]).all()
                assert np.isin(m[:, M_DROP], [0, drops.SNAPLEN_TRUNCATED,
                                              drops.FRAME_TOO_BIG]).all()
            assert r.packets == total and len(warns) <= 1
    except CaptureError as e:
        assert str(path) in str(e)
        return None
    return total


def _valid_files():
    d = [bytes(p) for p in frames([60, 14, 100, 1514, 61])]
    pcap = pcap_file([(T0, k, x, None) for k, x in enumerate(d)], snaplen=262144)
    ng = shb() + idb() + idb(tsresol=9) + b"".join(
        epb("<", k % 2, k, x) for k, x in enumerate(d)) + spb("<", d[0])
    return {"pcap": (pcap, 24, 16, [len(x) for x in d]),
            "pcapng": (ng, len(shb() + idb() + idb(tsresol=9)), 32, [len(x) for x in d])}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_every_truncation_is_accounted_for(tmp_path, fmt):
    content, start, overhead, sizes = _valid_files()[fmt]
    ends, pos = [], start
    for s in sizes:
        pos += overhead + s + (-s % 4 if fmt == "pcapng" else 0)
        ends.append(pos)
    path = tmp_path / "cut"
    for cut in range(start, ends[-1] + 1):
        path.write_bytes(content[:cut])
        got = _robust(path)
        assert got == sum(e <= cut for e in ends), cut


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_mutated_files(tmp_path, fmt):
    content = _valid_files()[fmt][0]
    rng = random.Random(1234)
    path = tmp_path / "m"
    outcomes = set()
    for _ in range(400):
        m = bytearray(content)
        for _ in range(rng.randrange(1, 6)):
            kind = rng.random()
            p = rng.randrange(len(m))
            if kind < 0.6:
                m[p] = rng.randrange(256)
            elif kind < 0.8:
                m[p: p + 4] = struct.pack("<I", rng.choice([0, 4, 11, 12, 13, 65536, 0x7FFFFFFF,
                                                            0xFFFFFFFF, rng.randrange(1 << 32)]))
            elif kind < 0.9:
                del m[p: p + rng.randrange(1, 40)]
            else:
                m[p:p] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        path.write_bytes(bytes(m))
        outcomes.add(_robust(path) is None)
    assert outcomes == {True, False}       # both outcomes really happen


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=hst.sampled_from([b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", b"\xa1\xb2\x3c\x4d",
                                shb(), shb(">"), shb() + idb(), pcap_file([])]),
       body=hst.binary(max_size=300))
def test_fuzz_random_bytes(tmp_path, prefix, body):
    path = tmp_path / "fuzz"
    path.write_bytes(prefix + body)
    _robust(path)
