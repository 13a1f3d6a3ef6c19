"""Tests of the parse stage: scapy oracle, truncation, fuzz, flow hash, reference parser."""
import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.layers.l2 import Dot1Q, Ether

from softdpu import drops
from softdpu.batch import (M_DROP, M_PARSE_ERR, M_FLAGS, M_HASH, M_L2, M_L3, M_L4, M_L5, M_LEN, M_START,
                           Batch)
from softdpu.key import KEY_WORDS, PACKET_WORDS, get, ipv6
from softdpu.stages import parse as P
from softdpu.stages.parse import Parse, flag_names
import reference_parse as ref
from parse_corpus import MAC_A, MAC_B, edge_corpus, oracle, scapy_corpus

PARSE_CODES = {code for code, name in enumerate(drops.NAMES) if name.startswith("parse_")}
SCALAR_FIELDS = ("in_port", "dl_type", "vlan_tci", "dl_src", "vlan_tci2", "dl_dst", "nw_proto",
                 "nw_tos", "nw_src", "nw_dst", "tp_src", "tp_dst", "tcp_flags", "nw_ttl",
                 "nw_frag", "ipv6_label", "arp_op", "arp_sha", "arp_tha")


def E():
    """An Ethernet header with fixed MACs (scapy would otherwise resolve them)."""
    return Ether(src=MAC_A, dst=MAC_B)


def parse_frames(frames, fill=0, in_port=5, size=256):
    """Parse frames through Parse.run in batches; -> (meta, key) rows, one per frame."""
    metas, keys = [], []
    for first in range(0, len(frames), size):
        batch = Batch(size=min(size, len(frames) - first))
        batch.data[:] = fill
        for frame in frames[first:first + size]:
            batch.append(frame, in_port=in_port)
        Parse().run(batch)
        metas.append(batch.meta[: batch.n].copy())
        keys.append(batch.key[: batch.n].copy())
    return np.concatenate(metas), np.concatenate(keys)


def rel(meta_row, col):
    """An offset column relative to the frame start, None when absent."""
    v = int(meta_row[col])
    return None if v == -1 else v - int(meta_row[M_START])


def describe(meta_row):
    return f"drop={drops.NAMES[meta_row[M_PARSE_ERR]]} flags={flag_names(meta_row[M_FLAGS])}"


@pytest.fixture(scope="module")
def corpus():
    return scapy_corpus()


@pytest.fixture(scope="module")
def all_frames(corpus):
    return corpus + edge_corpus()


# (a) scapy is the oracle, field by field -------------------------------------------------

def test_corpus_matches_scapy_field_by_field(corpus):
    meta, key = parse_frames([f for _, f in corpus])
    for (name, frame), m, k in zip(corpus, meta, key):
        fields, flags, l3, l4, l5 = oracle(frame)
        assert m[M_PARSE_ERR] == 0, (name, describe(m))
        for fname in SCALAR_FIELDS:
            want = 5 if fname == "in_port" else fields.get(fname, 0)
            assert get(k, fname) == want, (name, fname, hex(get(k, fname)), hex(want))
        assert ipv6(k, "src") == fields.get("ipv6_src", 0), name
        assert ipv6(k, "dst") == fields.get("ipv6_dst", 0), name
        assert m[M_FLAGS] == flags, (name, flag_names(m[M_FLAGS]), flag_names(flags))
        assert (rel(m, M_L2), rel(m, M_L3), rel(m, M_L4), rel(m, M_L5)) == (0, l3, l4, l5), name
        assert not k[PACKET_WORDS:].any(), name


def test_corpus_covers_every_protocol_flag(corpus):
    meta, _ = parse_frames([f for _, f in corpus])
    seen = np.bitwise_or.reduce(meta[:, M_FLAGS])
    missing = [name for name, bit in P.FLAGS if not seen & bit]
    assert not missing


def test_corpus_spot_values(corpus):
    """A few values written out by hand, so a shared misreading of scapy cannot hide."""
    frames = dict(corpus)
    meta, key = parse_frames([frames["qinq_88a8"], frames["tcp_all_flags"], frames["arp_request"],
                              frames["ipv4_frag_1"], frames["ipv6_frag_1"], frames["vxlan"]])
    assert get(key[0], "vlan_tci") == 0x1000 | 3 << 13 | 10 and get(key[0], "vlan_tci2") == 0x1000 | 20
    assert get(key[0], "dl_type") == 0x0800
    assert get(key[1], "tcp_flags") == 0xBFF   # reserved 0b101 and all nine flags
    assert get(key[2], "nw_proto") == 1 and get(key[2], "arp_op") == 1
    assert get(key[2], "nw_src") == 0x0A010203 and get(key[2], "dl_dst") == 0xFFFFFFFFFFFF
    assert get(key[3], "nw_frag") == 3 and get(key[3], "tp_src") == 0 and meta[3, M_L4] == -1
    assert get(key[4], "nw_frag") == 3 and get(key[4], "nw_proto") == 44
    assert meta[5, M_L5] - meta[5, M_START] == 14 + 20 + 8
    assert get(key[5], "dl_src") == int(MAC_A.replace(":", ""), 16)
    assert get(key[5], "dl_dst") == int(MAC_B.replace(":", ""), 16)


# (e) the plain-Python reference parser agrees on everything ------------------------------

def assert_matches_reference(frames, meta, key, in_port=5):
    for n, (frame, m, k) in enumerate(zip(frames, meta, key)):
        r = ref.parse(frame, in_port)
        assert m[M_PARSE_ERR] == r.code, (n, frame.hex(), describe(m), drops.NAMES[r.code])
        if r.code:
            continue
        assert m[M_FLAGS] == r.flags, (n, frame.hex(), flag_names(m[M_FLAGS]), flag_names(r.flags))
        assert [int(w) for w in k] == r.key_words(), (n, frame.hex())
        assert (rel(m, M_L3), rel(m, M_L4), rel(m, M_L5)) == (r.l3, r.l4, r.l5), (n, frame.hex())


def test_kernel_matches_reference_on_corpus(all_frames):
    frames = [f for _, f in all_frames]
    meta, key = parse_frames(frames)
    assert_matches_reference(frames, meta, key)


@pytest.mark.parametrize("name, code, flags_set, check", [
    ("rarp", 0, P.F_ARP, lambda k: get(k, "arp_op") == 3 and get(k, "dl_type") == 0x8035),
    ("triple_tag", 0, P.F_QINQ, lambda k: get(k, "dl_type") == 0x8100 and get(k, "nw_proto") == 0),
    ("ipv6_ah_tcp", 0, P.F_TCP | P.F_IP6_EXT, lambda k: get(k, "tp_dst") == 2),
    ("tiny_first_frag_tcp", 0, P.F_FRAG, lambda k: get(k, "tp_src") == 0 and get(k, "nw_frag") == 1),
    ("first_frag_bad_doff", 0, P.F_TCP | P.F_FRAG, lambda k: get(k, "tp_dst") == 0 and get(k, "tcp_flags") != 0),
    ("udp_surplus", 0, P.F_UDP, lambda k: get(k, "tp_dst") == 2),
    ("vxlan_short", 0, P.F_UDP, lambda k: get(k, "tp_dst") == 4789),
    ("esp_short", 0, P.F_IPV4, lambda k: get(k, "nw_proto") == 50),
    ("icmp_on_v6_proto1", 0, P.F_IPV6, lambda k: get(k, "tp_src") == 0),
    ("ipv6_atomic_frag", 0, P.F_TCP, lambda k: get(k, "nw_frag") == 0),
    ("ipv6_frag_res_bits", 0, P.F_FRAG | P.F_UDP, lambda k: get(k, "nw_frag") == 1),
    ("snap_nonzero_oui", 0, P.F_LLC, lambda k: get(k, "dl_type") == 0x05FF),
    ("ipv6_nine_ext", drops.PARSE_TRUNC_IP6_EXT, 0, None),
    ("eth_only", drops.PARSE_TRUNC_IP, 0, None),
    ("runt_8", drops.PARSE_TRUNC_L2, 0, None),
])
def test_edge_cases(name, code, flags_set, check):
    frame = dict(edge_corpus())[name]
    meta, key = parse_frames([frame])
    assert meta[0, M_PARSE_ERR] == code, describe(meta[0])
    assert meta[0, M_FLAGS] & flags_set == flags_set, describe(meta[0])
    if check:
        assert check(key[0])
    if name in ("vxlan_short", "esp_short"):
        assert not meta[0, M_FLAGS] & (P.F_VXLAN | P.F_ESP)
    if name in ("tiny_first_frag_tcp",):
        assert not meta[0, M_FLAGS] & P.F_TCP and meta[0, M_L5] == -1


def _ip4_frame(**ip_fields):
    return bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="1.1.1.1", dst="2.2.2.2", **ip_fields)
                 / UDP(sport=1, dport=2) / b"payload!")


def _set(frame, offset, value):
    b = bytearray(frame)
    b[offset:offset + len(value)] = value
    return bytes(b)


BAD_FRAMES = [
    (bytes(13), drops.PARSE_TRUNC_L2),
    (bytes(12) + b"\x81\x00\x00\x05", drops.PARSE_TRUNC_VLAN),
    (bytes(12) + b"\x88\xa8\x00\x05\x81\x00\x00", drops.PARSE_TRUNC_VLAN),
    (bytes(12) + b"\x08\x06" + bytes(27), drops.PARSE_TRUNC_ARP),
    (bytes(12) + b"\x08\x06\x00\x06\x08\x00\x06\x04" + bytes(20), drops.PARSE_TRUNC_ARP),
    (_ip4_frame()[:30], drops.PARSE_TRUNC_IP),
    (_set(_ip4_frame(), 14, b"\x65"), drops.PARSE_BAD_IP_VERSION),
    (bytes(E() / IPv6() / UDP())[:14] + b"\x45" + bytes(60), drops.PARSE_BAD_IP_VERSION),
    (_set(_ip4_frame(), 14, b"\x44"), drops.PARSE_BAD_IHL),
    (_set(_ip4_frame(), 14, b"\x4f"), drops.PARSE_BAD_IHL),
    (_set(_ip4_frame(), 16, b"\x00\x13"), drops.PARSE_BAD_IP_LEN),
    (_set(_ip4_frame(), 16, b"\x01\x00"), drops.PARSE_BAD_IP_LEN),
    (_set(bytes(E() / IPv6() / UDP()), 18, b"\x00\x09"), drops.PARSE_BAD_IP_LEN),
    (bytes(E() / IPv6(nh=0, plen=6) / bytes(6)), drops.PARSE_TRUNC_IP6_EXT),
    (bytes(E() / IPv6(nh=60, plen=8) / (b"\x11\x01" + bytes(6))), drops.PARSE_TRUNC_IP6_EXT),
    (bytes(E() / IP(proto=6) / bytes(19)), drops.PARSE_TRUNC_L4),
    (bytes(E() / IP(proto=17) / bytes(7)), drops.PARSE_TRUNC_L4),
    (bytes(E() / IP(proto=1) / bytes(7)), drops.PARSE_TRUNC_L4),
    (bytes(E() / IPv6(nh=58) / bytes(4)), drops.PARSE_TRUNC_L4),
    (bytes(E() / IP() / TCP(dataofs=4)), drops.PARSE_BAD_TCP_OFF),
    (bytes(E() / IP() / TCP(dataofs=6)), drops.PARSE_BAD_TCP_OFF),
    (bytes(E() / IP() / UDP(len=7)), drops.PARSE_BAD_UDP_LEN),
    (bytes(E() / IP() / UDP(len=20) / bytes(11)), drops.PARSE_BAD_UDP_LEN),
    (bytes(E() / IPv6() / UDP(len=9)), drops.PARSE_BAD_UDP_LEN),
]


@pytest.mark.parametrize("frame, code", [
    pytest.param(frame, code, id=f"{drops.NAMES[code]}-{n}") for n, (frame, code) in enumerate(BAD_FRAMES)])
def test_each_parse_error_has_its_code(frame, code):
    meta, _ = parse_frames([frame])
    assert meta[0, M_PARSE_ERR] == code, (drops.NAMES[code], describe(meta[0]))
    assert ref.parse(frame).code == code


# (b) every truncation: a drop code or the fields seen so far, never a read past the frame --

def test_every_truncation_is_safe(all_frames):
    cuts = [frame[:n] for _, frame in all_frames for n in range(len(frame) + 1)]
    base_meta, base_key = parse_frames(cuts, fill=0)
    for poison in (0xA5, 0x45, 0xFF, 0x81):
        meta, key = parse_frames(cuts, fill=poison)
        same = (meta == base_meta).all(axis=1) & (key == base_key).all(axis=1)
        bad = np.flatnonzero(~same)
        assert not bad.size, f"bytes outside the frame changed the parse of {cuts[bad[0]].hex()}"
    drop = base_meta[:, M_PARSE_ERR]
    assert set(np.unique(drop)) <= PARSE_CODES | {0}
    assert_matches_reference(cuts, base_meta, base_key)
    origin = [n for n, (_, frame) in enumerate(all_frames) for _ in range(len(frame) + 1)]
    whole_meta, whole_key = parse_frames([frame for _, frame in all_frames])
    for n in np.flatnonzero((drop == 0) & (base_meta[:, M_FLAGS] & (P.F_IPV4 | P.F_IPV6) != 0)):
        # an IP packet parses whole or not at all: a cut is fine only after the IP end
        o = origin[n]
        assert (base_key[n] == whole_key[o]).all(), cuts[n].hex()
        assert base_meta[n, M_FLAGS] | P.F_L2_PAD == whole_meta[o, M_FLAGS] | P.F_L2_PAD


# (c) fuzz: random and mutated frames end in a sane state, and agree with the reference ---

def assert_sane(frames, meta, key):
    for frame, m, k in zip(frames, meta, key):
        code = int(m[M_PARSE_ERR])
        assert code == 0 or code in PARSE_CODES, frame.hex()
        assert not k[PACKET_WORDS:].any()
        if code:
            continue
        start, end = int(m[M_START]), int(m[M_START] + m[M_LEN])
        assert m[M_L2] == start
        prev = start
        for col in (M_L3, M_L4, M_L5):
            if m[col] != -1:
                assert prev <= m[col] <= end, (frame.hex(), describe(m))
                prev = m[col]
        flags = int(m[M_FLAGS])
        if flags & (P.F_TCP | P.F_UDP | P.F_ICMP | P.F_ICMP6):
            assert m[M_L4] != -1
        if flags & (P.F_VXLAN | P.F_GENEVE | P.F_ESP):
            assert m[M_L5] != -1 and m[M_L5] + 8 <= end
        assert 0 <= m[M_HASH] < 1 << 32


def mutants(frames, rng, per_frame):
    out = []
    for frame in frames:
        for _ in range(per_frame):
            b = bytearray(frame)
            for _ in range(int(rng.integers(1, 4))):
                pos = int(rng.integers(0, min(len(b), 90)))
                b[pos] = int(rng.choice([0, 0xFF, int(rng.integers(0, 256)), b[pos] ^ 1 << int(rng.integers(8))]))
            if rng.random() < 0.3:
                b = b[: int(rng.integers(0, len(b) + 1))]
            out.append(bytes(b))
    return out


def random_frames(rng, n):
    types = [b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x08\x06", b"\x00\x40", b"\x12\x34"]
    out = []
    for _ in range(n):
        b = bytearray(rng.integers(0, 256, int(rng.integers(0, 160)), dtype=np.uint8).tobytes())
        if len(b) >= 16 and rng.random() < 0.8:
            b[12:14] = types[int(rng.integers(len(types)))]
            b[14] = int(rng.choice([0x45, 0x46, 0x60, 0x4F, b[14]]))
        out.append(bytes(b))
    return out


def test_fuzz_random_and_mutated(all_frames):
    rng = np.random.default_rng(20261125)
    frames = random_frames(rng, 3000) + mutants([f for _, f in all_frames], rng, 60)
    meta, key = parse_frames(frames)
    assert_sane(frames, meta, key)
    assert_matches_reference(frames, meta, key)


_corpus_frames = [f for _, f in scapy_corpus()]


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(st.binary(max_size=120),
                 st.tuples(st.sampled_from(_corpus_frames), st.integers(0, 89), st.binary(min_size=1, max_size=4))
                 .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + len(t[2]):])))
def test_fuzz_hypothesis(frame):
    meta, key = parse_frames([frame])
    assert_sane([frame], meta, key)
    assert_matches_reference([frame], meta, key)


# (d) the symmetric flow hash ------------------------------------------------------------

def _flows(n, rng, v6):
    out = []
    for _ in range(n):
        if v6:
            a, b = (str(ipaddress.IPv6Address(int(x) << 64 | int(y)))
                    for x, y in rng.integers(0, 2**63, (2, 2)))
            l3 = lambda s, d: IPv6(src=s, dst=d)  # noqa: E731
        else:
            a, b = (str(ipaddress.IPv4Address(int(x))) for x in rng.integers(1, 2**32, 2))
            l3 = lambda s, d: IP(src=s, dst=d)  # noqa: E731
        sp, dp = (int(x) for x in rng.integers(1, 65536, 2))
        l4 = TCP if rng.random() < 0.5 else UDP
        fwd = Ether(src=MAC_A, dst=MAC_B) / l3(a, b) / l4(sport=sp, dport=dp)
        rev = Ether(src=MAC_B, dst=MAC_A) / l3(b, a) / l4(sport=dp, dport=sp)
        out.append((bytes(fwd), bytes(rev)))
    return out


def _hashes(frames):
    meta, _ = parse_frames(frames)
    assert not meta[:, M_PARSE_ERR].any()
    return meta[:, M_HASH].astype(np.uint64)


def test_hash_is_symmetric_and_distinct():
    rng = np.random.default_rng(7)
    pairs = _flows(300, rng, v6=False) + _flows(300, rng, v6=True)
    fwd = _hashes([f for f, _ in pairs])
    rev = _hashes([r for _, r in pairs])
    assert (fwd == rev).all()
    assert len(set(fwd.tolist())) == len(pairs)
    bits = (fwd[:, None] >> np.arange(32, dtype=np.uint64)) & np.uint64(1)
    share = bits.mean(axis=0)
    assert (share > 0.4).all() and (share < 0.6).all(), share


def test_hash_separates_close_flows():
    base = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2")
    frames = [bytes(base / TCP(sport=1000, dport=80)), bytes(base / TCP(sport=1001, dport=80)),
              bytes(base / TCP(sport=80, dport=1000)), bytes(base / UDP(sport=1000, dport=80)),
              bytes(E() / IP(src="10.0.0.1", dst="10.0.0.3") / TCP(sport=1000, dport=80)),
              bytes(E() / IP(src="10.0.0.3", dst="10.0.0.0") / TCP(sport=1000, dport=80))]
    h = _hashes(frames)
    assert len(set(h.tolist())) == len(frames)
    flips = [bin(int(a) ^ int(b)).count("1") for a, b in zip(h, h[1:])]
    assert min(flips) >= 6, flips     # one changed bit of input moves many output bits


def test_hash_fragments_icmp_and_non_ip_stay_together():
    big = IP(src="10.9.8.7", dst="10.1.1.1", id=5) / UDP(sport=5, dport=6) / bytes(100)
    frags = [bytes(E() / f) for f in fragment(big, fragsize=40)]
    frags6 = [bytes(E() / f) for f in fragment6(
        IPv6(src="2001:db8::5", dst="2001:db8::6") / IPv6ExtHdrFragment(id=1) / UDP() / bytes(200), 100)]
    h = _hashes(frags)
    assert len(set(h.tolist())) == 1
    h6 = _hashes(frags6)
    assert len(set(h6.tolist())) == 1
    ping = _hashes([bytes(E() / IP(src="1.1.1.1", dst="2.2.2.2") / ICMP(type=8, id=3)),
                    bytes(E() / IP(src="2.2.2.2", dst="1.1.1.1") / ICMP(type=0, id=3))])
    assert ping[0] == ping[1]
    l2 = _hashes([bytes(Ether(src=MAC_A, dst=MAC_B, type=0x88B5) / bytes(46)),
                  bytes(Ether(src=MAC_B, dst=MAC_A, type=0x88B5) / bytes(46)),
                  bytes(Ether(src=MAC_A, dst="02:00:00:00:00:99", type=0x88B5) / bytes(46))])
    assert l2[0] == l2[1] != l2[2]
    tagged = _hashes([bytes(E() / Dot1Q(vlan=9) / IP(src="1.1.1.1", dst="2.2.2.2") / UDP()),
                      bytes(E() / IP(src="2.2.2.2", dst="1.1.1.1") / UDP(sport=53, dport=53))])
    assert tagged[0] == tagged[1]


# batch handling --------------------------------------------------------------------------

def test_dropped_rows_are_left_alone_and_key_tail_is_zeroed(corpus):
    batch = Batch(size=8)
    for _, frame in corpus[:4]:
        batch.append(frame, in_port=0xFFFFFFFE)
    batch.key[:] = np.uint64(0xDEADBEEFDEADBEEF)
    batch.meta[1, M_DROP] = drops.FRAME_TOO_BIG
    meta_before = batch.meta[1].copy()
    batch.data[5:] = 0xAB
    batch.meta[5:, M_LEN] = 60       # rows past n must not be touched
    Parse().run(batch)
    assert (batch.meta[1] == meta_before).all()
    assert (batch.key[1] == np.uint64(0xDEADBEEFDEADBEEF)).all()
    assert (batch.key[4:] == np.uint64(0xDEADBEEFDEADBEEF)).all()
    for i in (0, 2, 3):
        assert batch.meta[i, M_DROP] == 0
        assert get(batch.key[i], "in_port") == 0xFFFFFFFE
        assert not batch.key[i, PACKET_WORDS:].any()
    Parse().run(batch)                # idempotent: a second run gives the same rows
    again = batch.meta.copy()
    Parse().run(batch)
    assert (batch.meta == again).all()


def test_meta_pointing_outside_the_slot_is_refused():
    batch = Batch(size=2)
    batch.append(bytes(60))
    batch.append(bytes(60))
    batch.meta[0, M_LEN] = batch.slot          # start + len past the slot
    batch.meta[1, M_START] = -4
    Parse().run(batch)
    assert (batch.meta[:2, M_DROP] == drops.PARSE_TRUNC_L2).all()
    assert (batch.meta[:2, M_L2] == -1).all()


def test_parse_works_after_start_moves():
    """Offsets are absolute in the slot: an encapsulation that moved start keeps them valid."""
    frame = dict(scapy_corpus())["tcp_syn_mss"]
    batch = Batch(size=1)
    batch.append(frame)
    batch.meta[0, M_START] -= 100
    s = batch.meta[0, M_START]
    batch.data[0, s: s + len(frame)] = np.frombuffer(frame, np.uint8)
    Parse().run(batch)
    assert batch.meta[0, M_DROP] == 0
    assert batch.meta[0, M_L3] == s + 14 and batch.meta[0, M_L4] == s + 34
    assert batch.meta[0, M_LEN] == len(frame)


# header helpers --------------------------------------------------------------------------

def test_checksum_helpers_agree_with_scapy():
    from softdpu.headers import ipv4 as v4
    pkt = Ether(bytes(E() / IP(src="10.0.0.1", dst="10.0.0.2", ttl=9) / UDP(sport=1, dport=2) / b"odd"))
    raw = np.frombuffer(bytes(pkt), np.uint8).reshape(1, -1).copy()
    raw[0, 24:26] = 0
    assert v4.checksum(raw, 0, 14, 20) == pkt[IP].chksum
    udp_len = pkt[UDP].len
    raw[0, 40:42] = 0
    acc = v4.pseudo_sum(0x0A000001, 0x0A000002, 17, udp_len)
    assert (~v4.fold(v4.ones_sum(raw, 0, 34, udp_len, acc))) & 0xFFFF == pkt[UDP].chksum
    new = pkt.copy()
    new[IP].src = "172.16.5.4"
    del new[IP].chksum
    want = Ether(bytes(new))[IP].chksum
    assert v4.csum_replace32(pkt[IP].chksum, 0x0A000001, 0xAC100504) == want
    assert v4.csum_replace16(0x0000, 0x0000, 0x0000) == 0x0000


def test_malformed_packets_go_on_unless_the_stage_drops_them():
    """As OVS, a malformed packet keeps the fields parsed before the fault; drop_malformed drops it."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    frame = bytes(Ether() / IP(len=30) / TCP(dport=80))[:44]   # IP says 10 bytes of TCP: cut short
    for drop_malformed, dropped in ((False, 0), (True, drops.PARSE_TRUNC_L4)):
        batch = Batch(size=1)
        batch.append(frame)
        Parse(drop_malformed=drop_malformed).run(batch)
        assert batch.meta[0, M_PARSE_ERR] == drops.PARSE_TRUNC_L4
        assert batch.meta[0, M_DROP] == dropped
        assert get(batch.key[0], "nw_proto") == 6 and get(batch.key[0], "tp_dst") == 0
