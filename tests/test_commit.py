"""Tests of flows/commit.py: key modifications committed to packet bytes, scapy as the oracle.

Each case is a `Model`: MACs, a VLAN tag stack and an L3 packet built with
scapy (for a fragment: the whole datagram and which fragment).  A
modification changes the model the scapy way (set the field; checksums are
left to scapy) and the key row the flow-action way (softdpu.key.FIELDS).
After commit_row the packet must equal the model's bytes, byte for byte, and
parse back to the modified key.

VLAN rule (the key holds no TPID or DEI, see commit.py): tag stacks align on
the innermost tag; an aligned tag with the same PCP/VID keeps its bytes, an
aligned tag with a new TCI keeps its TPID and gets DEI 0, a new tag is 0x8100.
"""
import ipaddress
import random
import subprocess

import numpy as np
import pytest
from conftest import need_tool
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR, fragment
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                                IPv6ExtHdrRouting, fragment6)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import checksum, wrpcap

from softdpu.batch import (HEADROOM, M_DROP, M_FLAGS, M_L2, M_L3, M_L4, M_L5, M_LEN, M_START,
                           M_WIRE_LEN, Batch)
from softdpu.key import FIELDS, PACKET_WORDS
from softdpu.stages.flows.commit import (COMMIT_BAD_L2, COMMIT_DONE, COMMIT_NO_HEADROOM,
                                         COMMIT_UNCHANGED, commit_batch, commit_row)
from softdpu.key import W_L4
from softdpu.stages.parse import F_FRAG, F_VLAN, Parse, parse_batch

MAC_A, MAC_B = "02:00:00:00:0a:01", "02:00:00:00:0b:02"
V4_A, V4_B = "10.1.2.3", "192.168.7.9"
V6_A, V6_B = "2001:db8::1", "2001:db8:ffff::abcd"


class Model:
    """A frame as scapy sees it: (dst, src, tags, l3 [fragment], pad)."""

    def __init__(self, l3, tags=(), frag=None, pad=0):
        self.dst, self.src = MAC_B, MAC_A
        self.l3 = l3
        self.frag = frag                         # (size, index) of l3 cut by scapy
        self.pad = pad                           # Ethernet padding bytes after the IP packet
        self.wire = [tuple(t) for t in tags]     # (tpid, pcp, dei, vid), outer first, as sent
        self.tags = [(pcp, vid) for _, pcp, _, vid in self.wire]   # as the actions left them
        self.l4 = "tcp" if TCP in l3 else "udp" if UDP in l3 else \
            "icmp6" if ICMPv6EchoRequest in l3 else "icmp" if ICMP in l3 else None

    def commit(self):
        """The tag stack the commit rule sends, then the frame."""
        d = len(self.tags) - len(self.wire)
        new = []
        for j, (pcp, vid) in enumerate(self.tags):
            oj = j - d
            if 0 <= oj < len(self.wire):
                tpid, opcp, dei, ovid = self.wire[oj]
                new.append(self.wire[oj] if (opcp, ovid) == (pcp, vid) else (tpid, pcp, 0, vid))
            else:
                new.append((0x8100, pcp, 0, vid))
        self.wire = new
        return self.frame()

    def frame(self):
        if self.frag is None:
            l3 = bytes(self.l3)
        elif IP in self.l3:
            l3 = bytes(fragment(self.l3, fragsize=self.frag[0])[self.frag[1]])
        else:
            l3 = bytes(fragment6(self.l3, self.frag[0])[self.frag[1]])
        etype = 0x0800 if IP in self.l3 else 0x86DD if IPv6 in self.l3 else 0x0806
        types = [t[0] for t in self.wire] + [etype]
        pkt = Ether(dst=self.dst, src=self.src, type=types[0])
        for (_, pcp, dei, vid), nxt in zip(self.wire, types[1:]):
            pkt = pkt / Dot1Q(prio=pcp, dei=dei, vlan=vid, type=nxt)
        return bytes(pkt / Raw(l3)) + bytes(self.pad)

    def kind(self):
        if ARP in self.l3:
            return "arp"
        later = self.frag is not None and self.frag[1] > 0
        return ("ip4" if IP in self.l3 else "ip6"), None if later else self.l4


def corpus():
    """{name: factory of a fresh Model}: every header layout commit handles."""
    ip = lambda **kw: IP(src=V4_A, dst=V4_B, id=7, **kw)   # noqa: E731
    ip6 = lambda **kw: IPv6(src=V6_A, dst=V6_B, **kw)      # noqa: E731
    arp = lambda: ARP(op=1, hwsrc=MAC_A, psrc=V4_A, hwdst="00:00:00:00:00:00", pdst=V4_B)  # noqa: E731
    return {
        "tcp4": lambda: Model(ip(tos=0xB9, ttl=17) / TCP(sport=60000, dport=60001, flags="PA") / b"GET /"),
        "tcp4_options": lambda: Model(ip(options=[IPOption_RR(routers=["10.0.0.1"]), IPOption_NOP()])
                                      / TCP(sport=1, dport=2, options=[("MSS", 1460)])),
        "udp4": lambda: Model(ip() / UDP(sport=50000, dport=50001) / b"query-bytes"),
        "udp4_no_csum": lambda: Model(ip() / UDP(sport=1000, dport=2000, chksum=0) / b"zero"),
        "udp4_padded": lambda: Model(ip() / UDP(sport=7, dport=9) / b"x", pad=60 - 43),
        "icmp4": lambda: Model(ip() / ICMP(type=8, id=0x1234, seq=1) / b"ping"),
        "udp4_frag_first": lambda: Model(ip() / UDP(sport=3000, dport=4000) / bytes(range(120)),
                                         frag=(48, 0)),
        "tcp4_frag_first": lambda: Model(ip() / TCP(sport=80, dport=3001, flags="A") / bytes(80),
                                         frag=(40, 0)),
        "udp4_frag_later": lambda: Model(ip() / UDP(sport=3000, dport=4000) / bytes(range(120)),
                                         frag=(48, 1)),
        "tcp6": lambda: Model(ip6(tc=0xB8, fl=0x12345, hlim=7) / TCP(sport=33000, dport=22, flags="SA")),
        "udp6": lambda: Model(ip6() / UDP(sport=50546, dport=50547) / b"udp6-payload"),
        "icmp6": lambda: Model(ip6() / ICMPv6EchoRequest(id=1, seq=2, data=b"abc")),
        "udp6_hbh": lambda: Model(ip6() / IPv6ExtHdrHopByHop() / UDP(sport=5, dport=6) / b"ext"),
        "tcp6_routing": lambda: Model(ip6() / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
                                      / TCP(sport=1234, dport=5678)),
        "udp6_frag_first": lambda: Model(ip6() / IPv6ExtHdrFragment(id=0xABCD) / UDP(sport=3001, dport=4001)
                                         / bytes(300), frag=(150, 0)),
        "vlan_tcp4": lambda: Model(ip() / TCP(sport=5, dport=6), tags=[(0x8100, 5, 1, 100)]),
        "vlan_udp6": lambda: Model(ip6() / UDP(sport=7, dport=8) / b"v", tags=[(0x8100, 0, 0, 4095)]),
        "qinq_88a8_udp4": lambda: Model(ip() / UDP(sport=1, dport=2) / b"q",
                                        tags=[(0x88A8, 3, 0, 10), (0x8100, 0, 1, 20)]),
        "qinq_8100_tcp6": lambda: Model(ip6() / TCP(sport=3, dport=4),
                                        tags=[(0x8100, 0, 0, 30), (0x8100, 7, 0, 1)]),
        "arp": lambda: Model(arp()),
        "vlan_arp": lambda: Model(ARP(op=2, hwsrc=MAC_A, psrc=V4_A, hwdst=MAC_B, pdst=V4_B),
                                  tags=[(0x8100, 0, 0, 7)]),
    }


CORPUS = corpus()


def setf(k, name, value):
    f = FIELDS[name]
    k[f.word] = np.uint64((int(k[f.word]) & ~f.mask) | (value << f.shift))


def getf(k, name):
    f = FIELDS[name]
    return (int(k[f.word]) >> f.shift) & ((1 << f.bits) - 1)


def mac(v):
    return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))


def _tci(pcp, vid):
    return 0x1000 | pcp << 13 | vid


def _ip6_layer(m, k, which, rng):
    v = rng.getrandbits(128)
    setattr(m.l3[IPv6], which, str(ipaddress.IPv6Address(v)))
    setf(k, f"ipv6_{which}_hi", v >> 64)
    setf(k, f"ipv6_{which}_lo", v & (2**64 - 1))


def _vlan_set(m, k, rng, inner=False):
    pcp, vid = rng.randrange(8), rng.randrange(4096)
    m.tags[1 if inner else 0] = (pcp, vid)
    setf(k, "vlan_tci2" if inner else "vlan_tci", _tci(pcp, vid))


def _vlan_push(m, k, rng):
    pcp, vid = rng.randrange(8), rng.randrange(4096)
    m.tags.insert(0, (pcp, vid))
    setf(k, "vlan_tci2", getf(k, "vlan_tci"))
    setf(k, "vlan_tci", _tci(pcp, vid))


def _vlan_pop(m, k, rng):
    m.tags.pop(0)
    setf(k, "vlan_tci", getf(k, "vlan_tci2"))
    setf(k, "vlan_tci2", 0)


def _ip4(attr, field, value):
    def mod(m, k, rng):
        v = value(rng)
        setattr(m.l3[IP], attr, str(ipaddress.IPv4Address(v)) if attr in ("src", "dst") else v)
        setf(k, field, v)
    return mod


def _l4(attr, field, layer_of):
    def mod(m, k, rng):
        if attr.endswith("port"):
            v = rng.randrange(49152, 65536)      # IANA dynamic ports: tshark decodes no payload
        elif attr == "type":                          # echo: tshark finds no malformed type body
            v = rng.choice((0, 8) if m.l4 == "icmp" else (128, 129))
        else:
            v = rng.randrange(256)
        setf(k, field, v)
        if m.l4 == "icmp":     # scapy's ICMP fields depend on the type: patch the bytes and
            raw = bytearray(bytes(m.l3[IP].payload))       # let scapy checksum them
            raw[0 if attr == "type" else 1] = v
            raw[2:4] = b"\0\0"
            raw[2:4] = checksum(bytes(raw)).to_bytes(2, "big")
            m.l3[IP].proto = 1
            m.l3[IP].remove_payload()
            m.l3[IP].add_payload(Raw(bytes(raw)))
        else:
            setattr(layer_of(m.l3), attr, v)
    return mod


def _arp(attr, field, bits):
    def mod(m, k, rng):
        v = rng.getrandbits(bits)
        text = mac(v) if bits == 48 else str(ipaddress.IPv4Address(v)) if bits == 32 else v
        setattr(m.l3[ARP], attr, text)
        setf(k, field, v)
        if field == "arp_op":
            setf(k, "nw_proto", v & 0xFF)     # OVS's arp_op member
    return mod


def _set(layer, attr, field, v):
    def mod(m, k, rng):
        setattr(m.l3[layer], attr, v(rng))
        setf(k, field, getattr(m.l3[layer], attr))
    return mod


def _l4_layer(kind):
    return {"tcp": lambda p: p[TCP], "udp": lambda p: p[UDP], "icmp": lambda p: p[ICMP],
            "icmp6": lambda p: p[ICMPv6EchoRequest]}[kind]


def _dl(which):
    def mod(m, k, rng):
        v = rng.getrandbits(48) & ~(1 << 40)
        setattr(m, which, mac(v))
        setf(k, "dl_src" if which == "src" else "dl_dst", v)
    return mod


def mods_for(m):
    """{name: mod(model, key_row, rng)} applicable to the model now (the OVS prerequisites)."""
    out = {"dl_src": _dl("src"), "dl_dst": _dl("dst")}
    n = len(m.tags)
    if n:
        out["mod_vlan"] = _vlan_set
        out["strip_vlan"] = _vlan_pop
    if n < 2:
        out["push_vlan"] = _vlan_push
    if n == 2:
        out["mod_vlan_inner"] = lambda m, k, rng: _vlan_set(m, k, rng, inner=True)
    kind = m.kind()
    if kind == "arp":
        out.update(arp_op=_arp("op", "arp_op", 8), arp_spa=_arp("psrc", "nw_src", 32),
                   arp_tpa=_arp("pdst", "nw_dst", 32), arp_sha=_arp("hwsrc", "arp_sha", 48),
                   arp_tha=_arp("hwdst", "arp_tha", 48))
        return out
    l3, l4 = kind
    if l3 == "ip4":
        out.update(nw_src=_ip4("src", "nw_src", lambda r: r.getrandbits(32)),
                   nw_dst=_ip4("dst", "nw_dst", lambda r: r.getrandbits(32)),
                   nw_tos=_ip4("tos", "nw_tos", lambda r: r.randrange(256)),
                   nw_ttl=_ip4("ttl", "nw_ttl", lambda r: r.randrange(256)),
                   dec_ttl=_set(IP, "ttl", "nw_ttl", lambda r: max(m.l3[IP].ttl - 1, 0)))
    else:
        out.update(ipv6_src=lambda m, k, r: _ip6_layer(m, k, "src", r),
                   ipv6_dst=lambda m, k, r: _ip6_layer(m, k, "dst", r),
                   nw_tos=_set(IPv6, "tc", "nw_tos", lambda r: r.randrange(256)),
                   nw_ttl=_set(IPv6, "hlim", "nw_ttl", lambda r: r.randrange(256)),
                   ipv6_label=_set(IPv6, "fl", "ipv6_label", lambda r: r.getrandbits(20)))
    if l4 in ("tcp", "udp"):
        out.update(tp_src=_l4("sport", "tp_src", _l4_layer(l4)),
                   tp_dst=_l4("dport", "tp_dst", _l4_layer(l4)))
    elif l4 in ("icmp", "icmp6"):
        out.update(icmp_type=_l4("type", "tp_src", _l4_layer(l4)),
                   icmp_code=_l4("code", "tp_dst", _l4_layer(l4)))
    return out


def load(frames, size=None, in_port=3):
    """A parsed Batch holding frames, and orig = a copy of its key (taken before actions)."""
    b = Batch(size=size or len(frames))
    for f in frames:
        b.append(f, in_port=in_port)
    Parse().run(b)
    return b, b.key.copy()


def check_reparse(b):
    """Parsing the committed bytes again gives the modified key and the same offsets/flags."""
    data, meta, key = b.data.copy(), b.meta.copy(), b.key.copy()
    parse_batch(data, meta, key, b.n, False)
    want = b.key[: b.n, :PACKET_WORDS].copy()
    frag = (b.meta[: b.n, M_FLAGS] & F_FRAG) != 0
    want[frag, W_L4] &= np.uint64(0xFFFFFFFF)   # a fragment is looked up with ports 0 (OVS)
    assert (key[: b.n, :PACKET_WORDS] == want).all()
    for col in (M_FLAGS, M_L2, M_L3, M_L4, M_L5, M_START, M_LEN):
        assert (meta[: b.n, col] == b.meta[: b.n, col]).all(), col


SINGLE = [(name, mod) for name, make in CORPUS.items() for mod in mods_for(make())]


@pytest.mark.parametrize("case,mod", SINGLE, ids=[f"{c}-{m}" for c, m in SINGLE])
def test_one_modification_matches_scapy(case, mod):
    m = CORPUS[case]()
    b, orig = load([m.frame()])
    rng = random.Random(f"{case}/{mod}")
    mods_for(m)[mod](m, b.key[0], rng)
    while (b.key[0, :PACKET_WORDS] == orig[0, :PACKET_WORDS]).all():   # drew the old value
        mods_for(m)[mod](m, b.key[0], rng)
    start, length = b.meta[0, M_START], b.meta[0, M_LEN]
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_DONE
    want = m.commit()
    assert b.packet(0) == want, f"\n got {b.packet(0).hex()}\nwant {want.hex()}"
    grow = len(want) - length
    assert b.meta[0, M_START] == start - grow and b.meta[0, M_L2] == start - grow
    assert b.meta[0, M_WIRE_LEN] == len(want)
    assert (orig[0, :PACKET_WORDS] == b.key[0, :PACKET_WORDS]).all()   # the orig contract
    check_reparse(b)
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_UNCHANGED
    assert b.packet(0) == want


def random_round(models, b, rng, most=6):
    """Apply 1..most random modifications to every model and its key row."""
    for i, m in enumerate(models):
        for _ in range(rng.randint(1, most)):
            mods = mods_for(m)
            mods[rng.choice(sorted(mods))](m, b.key[i], rng)


def test_random_sequences_then_one_commit(tmp_path):
    """Random modification sequences, one commit, then more changes and a second commit."""
    rng = random.Random(2026)
    models = [make() for _ in range(12) for make in CORPUS.values()]
    b, orig = load([m.frame() for m in models])
    sent = []
    for _ in range(2):      # the second round commits only the new difference (orig contract)
        random_round(models, b, rng)
        assert commit_batch(b.data, b.meta, b.key, orig, b.n, 99) == 0
        for i, m in enumerate(models):
            want = m.commit()
            assert b.packet(i) == want, f"row {i}\n got {b.packet(i).hex()}\nwant {want.hex()}"
            sent.append(want)
        check_reparse(b)
    assert_tshark_clean(tmp_path / "random.pcap", sent)


def assert_tshark_clean(path, frames):
    tshark = need_tool("tshark")
    wrpcap(str(path), [Ether(f) for f in frames])
    prefs = [f"{p}.check_checksum:TRUE" for p in ("ip", "tcp", "udp")]
    cmd = [tshark, "-r", str(path)] + [a for p in prefs for a in ("-o", p)]
    bad = subprocess.run(cmd + ["-Y", "ip.checksum.status==0 || tcp.checksum.status==0 || "
                                "udp.checksum.status==0 || icmp.checksum.status==0 || "
                                "icmpv6.checksum.status==0 || _ws.malformed"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert bad.stdout == "", bad.stdout
    count = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    assert len(count.stdout.splitlines()) == len(frames)
    return cmd


def test_fragments_reassemble_with_good_l4_checksums(tmp_path):
    """All fragments committed with the same changes: tshark reassembles them and
    verifies the L4 checksum of the whole datagram (updated in the first fragment)."""
    rng = random.Random(5)
    models = []
    for make in (CORPUS["udp4_frag_first"], CORPUS["tcp4_frag_first"]):   # 3 fragments each
        for _ in range(3):
            src, dst, ttl = rng.getrandbits(32), rng.getrandbits(32), rng.randrange(1, 256)
            for j in range(3):
                m = make()
                m.frag = (m.frag[0], j)
                models.append((m, src, dst, ttl))
    b, orig = load([m.frame() for m, *_ in models])
    for i, (m, src, dst, ttl) in enumerate(models):
        for attr, field, v in (("src", "nw_src", src), ("dst", "nw_dst", dst)):
            setattr(m.l3[IP], attr, str(ipaddress.IPv4Address(v)))
            setf(b.key[i], field, v)
        m.l3[IP].ttl = ttl
        setf(b.key[i], "nw_ttl", ttl)
    commit_batch(b.data, b.meta, b.key, orig, b.n, 99)
    for i, (m, *_) in enumerate(models):
        assert b.packet(i) == m.commit()
    frames = [b.packet(i) for i in range(b.n)]
    cmd = assert_tshark_clean(tmp_path / "frags.pcap", frames)
    fields = ["-T", "fields", "-e", "udp.checksum.status", "-e", "tcp.checksum.status"]
    out = subprocess.run(cmd + fields, capture_output=True, text=True, timeout=60, check=True).stdout
    good = [line for line in out.splitlines() if line.strip() == "1"]
    assert len(good) == 6, out           # one reassembled datagram per 3 fragments, checksum good


def test_unchanged_and_metadata_only_is_the_fast_path():
    frames = [make().frame() for make in CORPUS.values()]
    b, orig = load(frames)
    before = b.data.copy(), b.meta.copy()
    for i in range(b.n):
        assert commit_row(b.data, b.meta, i, b.key, orig, i, i) == COMMIT_UNCHANGED
    for name, v in (("metadata", 7), ("reg0", 1), ("reg15", 2), ("tun_id", 3), ("tun_src", 4),
                    ("ct_state", 0x21), ("ct_mark", 5), ("ct_label_lo", 6)):
        for i in range(b.n):
            setf(b.key[i], name, v)
    for i in range(b.n):
        assert commit_row(b.data, b.meta, i, b.key, orig, i, i) == COMMIT_UNCHANGED
    assert (b.data == before[0]).all() and (b.meta == before[1]).all()


@pytest.mark.parametrize("field,value", [("in_port", 9), ("dl_type", 0x88B5), ("tcp_flags", 0x3F),
                                         ("nw_frag", 1), ("nw_proto", 99)])
def test_fields_without_bytes_are_ignored(field, value):
    """in_port is metadata; dl_type/nw_proto/tcp_flags/nw_frag are not writable in OVS."""
    frames = [CORPUS["tcp4"]().frame(), CORPUS["udp6"]().frame()]
    b, orig = load(frames)
    before = b.data.copy()
    for i in range(b.n):
        setf(b.key[i], field, value)
        assert commit_row(b.data, b.meta, i, b.key, orig, i, i) == COMMIT_DONE
        assert (orig[i, :PACKET_WORDS] == b.key[i, :PACKET_WORDS]).all()
    assert (b.data == before).all()


def test_udp_zero_checksum_stays_zero_and_new_zero_becomes_ffff():
    b, orig = load([CORPUS["udp4_no_csum"]().frame(), CORPUS["udp4"]().frame()])
    setf(b.key[0], "nw_src", 0x01020304)
    setf(b.key[0], "tp_dst", 4321)
    l4 = b.meta[1, M_L4]
    csum, port = int.from_bytes(bytes(b.data[1, l4 + 6: l4 + 8]), "big"), getf(b.key[1], "tp_src")
    # choose a source port that makes the updated checksum 0 (RFC 1624: ~(~C + ~m + m') == 0)
    new_port = (0xFFFF - (~csum & 0xFFFF) - (~port & 0xFFFF)) % 0xFFFF
    setf(b.key[1], "tp_src", new_port)
    commit_batch(b.data, b.meta, b.key, orig, b.n, 99)
    assert b.data[0, b.meta[0, M_L4] + 6] == 0 and b.data[0, b.meta[0, M_L4] + 7] == 0
    assert bytes(b.data[1, l4 + 6: l4 + 8]) == b"\xff\xff"
    m = CORPUS["udp4"]()
    m.l3[UDP].sport = new_port
    assert b.packet(1) == m.frame()            # scapy also sends a computed 0 as 0xffff


def test_tag_with_unchanged_tci_keeps_its_bytes_and_88a8_keeps_its_tpid():
    m = CORPUS["qinq_88a8_udp4"]()
    b, orig = load([m.frame()])
    _vlan_pop(m, b.key[0], None)                   # strip the 0x88a8 tag; inner keeps DEI 1
    commit_row(b.data, b.meta, 0, b.key, orig, 0, 0)
    assert b.packet(0) == m.commit()
    assert b.packet(0)[12:16] == bytes.fromhex("81001014")
    m = CORPUS["qinq_88a8_udp4"]()
    b, orig = load([m.frame()])
    setf(b.key[0], "vlan_tci", _tci(1, 11))
    commit_row(b.data, b.meta, 0, b.key, orig, 0, 0)
    assert b.packet(0)[12:20] == bytes.fromhex("88a8200b81001014")


def _at(start, frames):
    """A parsed batch with each frame placed at `start` in its slot (little headroom)."""
    b = Batch(size=len(frames))
    for i, f in enumerate(frames):
        b.append(f)
        b.data[i, start: start + len(f)] = np.frombuffer(f, np.uint8)
        b.meta[i, M_START] = start
    Parse().run(b)
    return b, b.key.copy()


def test_headroom_exhausted_is_an_error_and_changes_nothing():
    frame = CORPUS["udp4"]().frame()
    b, orig = _at(3, [frame, frame])
    setf(b.key[0], "vlan_tci", _tci(0, 5))
    setf(b.key[0], "nw_ttl", 1)
    before = b.data.copy(), b.meta.copy(), orig.copy()
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_NO_HEADROOM
    assert (b.data == before[0]).all() and (b.meta == before[1]).all() and (orig == before[2]).all()
    assert commit_batch(b.data, b.meta, b.key, orig, b.n, 77) == 1
    assert list(b.meta[:2, M_DROP]) == [77, 0]
    b, orig = _at(4, [frame])                      # exactly one tag of headroom
    setf(b.key[0], "vlan_tci", _tci(0, 5))
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_DONE
    assert b.meta[0, M_START] == 0 and Ether(b.packet(0))[Dot1Q].vlan == 5
    b, orig = _at(4, [frame])                      # two tags need 8
    setf(b.key[0], "vlan_tci", _tci(0, 5))
    setf(b.key[0], "vlan_tci2", _tci(0, 6))
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_NO_HEADROOM


def test_push_twice_and_pop_twice():
    m = CORPUS["tcp4"]()
    b, orig = load([m.frame()])
    _vlan_push(m, b.key[0], random.Random(1))
    _vlan_push(m, b.key[0], random.Random(2))
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_DONE
    assert b.packet(0) == m.commit() and b.meta[0, M_START] == HEADROOM - 8
    check_reparse(b)
    _vlan_pop(m, b.key[0], None)
    _vlan_pop(m, b.key[0], None)
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_DONE
    assert b.packet(0) == m.commit() == CORPUS["tcp4"]().frame()
    assert b.meta[0, M_START] == HEADROOM and not b.meta[0, M_FLAGS] & F_VLAN
    check_reparse(b)


def test_clone_row_and_separate_orig_array():
    """The caller copies the packet into a clone row; key and orig rows are elsewhere."""
    m = CORPUS["vlan_tcp4"]()
    b, _ = load([m.frame(), CORPUS["udp4"]().frame(), CORPUS["udp4"]().frame()])
    orig = np.zeros((4, PACKET_WORDS), np.uint64)          # only the packet words are needed
    orig[2] = b.key[0, :PACKET_WORDS]
    b.data[2], b.meta[2] = b.data[0], b.meta[0]              # clone packet 0 into row 2
    key = np.zeros((3, b.key.shape[1]), np.uint64)
    key[1] = b.key[0]
    rng = random.Random(3)
    for name in ("strip_vlan", "nw_dst", "tp_src", "dl_dst"):
        mods_for(m)[name](m, key[1], rng)
    assert commit_row(b.data, b.meta, 2, key, orig, 1, 2) == COMMIT_DONE
    assert b.packet(2) == m.commit()
    assert b.packet(0) == CORPUS["vlan_tcp4"]().frame()     # the original row is untouched
    assert (orig[2] == key[1, :PACKET_WORDS]).all()


def test_short_and_inconsistent_frames_are_safe():
    b, orig = load([bytes(10), CORPUS["udp4"]().frame()[:14]])
    for i in range(2):
        setf(b.key[i], "dl_src", 0x020000000001)
        setf(b.key[i], "nw_src", 0x01020304)
        setf(b.key[i], "vlan_tci", _tci(0, 1))
    before = b.data.copy()
    # no Ethernet header: nothing to write, but the key is committed
    assert commit_row(b.data, b.meta, 0, b.key, orig, 0, 0) == COMMIT_DONE
    assert (b.data == before).all()
    setf(orig[1], "vlan_tci", _tci(0, 9))        # orig claims a tag the 14-byte frame lacks
    assert commit_row(b.data, b.meta, 1, b.key, orig, 1, 1) == COMMIT_BAD_L2
    assert (b.data == before).all()
