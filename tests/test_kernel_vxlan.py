"""The kernel VXLAN oracle harness (tests/kernel_vxlan.py) and the kernel facts it documents.

No softdpu code here: these tests prove the harness can (a) capture what a
kernel VXLAN device sends on its underlay and (b) inject frames the kernel
accepts, over IPv4 and IPv6 underlays, and that it cleans up after itself.
scapy decodes and builds the frames.  Needs root and network namespaces:
skips without them, FAILS under CI=true.
"""
import ipaddress
import shutil
import subprocess

import pytest
from scapy.all import ICMP, IP, UDP, Ether, IPv6, raw
from scapy.layers.vxlan import VXLAN

from kernel_vxlan import KernelVtep, list_netns, read_pcap, require_kernel_vxlan, write_pcap

REMOTE_OVERLAY_IP = "10.10.0.1"
REMOTE_OVERLAY_MAC = "02:00:00:00:01:01"
LOCAL_OVERLAY_IP = "10.10.0.2"


@pytest.fixture(autouse=True)
def _need_kernel():
    require_kernel_vxlan()


def netns_names():
    """`ip netns list` when ip exists (as asked), and /run/netns in any case."""
    names = set(list_netns())
    ip = shutil.which("ip")
    if ip:
        out = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10,
                             check=True).stdout
        names |= {line.split()[0] for line in out.splitlines() if line.strip()}
    return names


def vtep(family, **kw):
    return KernelVtep("kvtest", family=family, **kw)


def echo_request(k, ident=0x77, seq=1, dst_mac=None, payload=b"from-softdpu"):
    return (Ether(src=REMOTE_OVERLAY_MAC, dst=dst_mac or k.vxlan_mac)
            / IP(src=REMOTE_OVERLAY_IP, dst=LOCAL_OVERLAY_IP) / ICMP(type=8, id=ident, seq=seq)
            / payload)


def udp_checksum_ok(frame):
    p = Ether(frame)
    c = p[UDP].chksum
    del p[UDP].chksum
    return c == Ether(raw(p))[UDP].chksum


def outer_ip(k, p):
    return p[IP] if k.family == 4 else p[IPv6]


def vxlan_replies(k, frames):
    return [Ether(f) for f in frames if k.is_vxlan(f)]


# ---------------------------------------------------------------- (1) kernel -> underlay

@pytest.mark.parametrize("family", [4, 6])
def test_kernel_ping_is_captured_as_vxlan(family, tmp_path):
    with vtep(family) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        frames = k.capture(lambda: k.ping(REMOTE_OVERLAY_IP, count=2), timeout=3, count=2)
        assert len(frames) == 2, [Ether(f).summary() for f in frames]
        write_pcap(tmp_path / "kernel-tx.pcap", frames)
        assert read_pcap(tmp_path / "kernel-tx.pcap") == frames

        sports = set()
        for seq, f in enumerate(frames, 1):
            p = Ether(f)
            assert p.src == k.underlay_mac and p.dst == k.peer_mac
            o = outer_ip(k, p)
            assert (o.src, o.dst) == (k.local_ip, k.peer_ip)
            if family == 4:
                assert p.type == 0x0800 and o.ttl == 64 and o.tos == 0 and o.ihl == 5
                assert not o.flags.DF and o.frag == 0
            else:
                assert p.type == 0x86DD and o.hlim == 64 and o.tc == 0 and o.fl == 0
                assert o.nh == 17
            u = p[UDP]
            assert u.dport == 4789
            assert 32768 <= u.sport < 60999        # net.ipv4.ip_local_port_range
            sports.add(u.sport)
            # this kernel computes the outer UDP checksum by default for IPv4 too
            assert u.chksum != 0 and udp_checksum_ok(f)
            assert raw(p[UDP].payload)[:8] == bytes([0x08, 0, 0, 0]) + (5000).to_bytes(3, "big") + b"\0"
            v = p[VXLAN]
            assert v.vni == 5000 and v.flags == 0x08
            inner = v.payload
            assert inner.src == k.vxlan_mac and inner.dst == REMOTE_OVERLAY_MAC
            assert inner[IP].src == LOCAL_OVERLAY_IP and inner[IP].dst == REMOTE_OVERLAY_IP
            assert inner[ICMP].type == 8 and inner[ICMP].seq == seq
        assert len(sports) == 1, "one inner flow, one source port"


def test_ipv4_udpcsum_off_sends_zero_and_ipv6_zerocsumtx():
    with vtep(4, udp_csum=False) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        [f] = k.capture(lambda: k.ping(REMOTE_OVERLAY_IP), timeout=3, count=1)
        assert Ether(f)[UDP].chksum == 0
    with vtep(6, udp6_zero_csum_tx=True) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        [f] = k.capture(lambda: k.ping(REMOTE_OVERLAY_IP), timeout=3, count=1)
        assert Ether(f)[UDP].chksum == 0


@pytest.mark.parametrize("family", [4, 6])
def test_source_port_range_and_per_flow_hash(family):
    with vtep(family, src_port_range=(40000, 40100)) as k:
        dsts = [f"10.10.0.{i}" for i in range(10, 26)]
        for i, d in enumerate(dsts):
            k.neigh_add(d, f"02:00:00:00:02:{i:02x}")
        sent = k.capture(lambda: [k.ping(d, count=2, interval=0.01) for d in dsts], timeout=5,
                         count=2 * len(dsts))
        assert len(sent) == 2 * len(dsts)
        by_dst = {}
        for f in sent:
            p = Ether(f)
            by_dst.setdefault(p[VXLAN].payload[IP].dst, set()).add(p[UDP].sport)
        ports = set()
        for d, s in by_dst.items():
            assert len(s) == 1, f"{d}: one flow, one port, got {s}"
            ports |= s
        assert all(40000 <= sp < 40100 for sp in ports), ports
        assert len(ports) > 1, "different inner flows hash to different source ports"


@pytest.mark.parametrize("family", [4, 6])
def test_outer_ecn_is_copied_from_inner(family):
    with vtep(family) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        got = {}
        for tos in (0xB8 | 0x01, 0x02, 0x03):
            [f] = k.capture(lambda: k.ping(REMOTE_OVERLAY_IP, tos=tos), timeout=3, count=1)
            p = Ether(f)
            assert p[VXLAN].payload[IP].tos == tos
            o = outer_ip(k, p)
            got[tos] = o.tos if family == 4 else o.tc
        # DSCP not inherited (tos 0 default), ECT kept, CE -> ECT(0) (RFC 6040 encapsulation)
        assert got == {0xB9: 0x01, 0x02: 0x02, 0x03: 0x02}


# ---------------------------------------------------------------- (2) underlay -> kernel

@pytest.mark.parametrize("family", [4, 6])
def test_injected_vxlan_echo_gets_vxlan_reply(family, tmp_path):
    with vtep(family) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        frame = k.encap(echo_request(k, ident=0x1234, seq=7), src_port=51000)
        write_pcap(tmp_path / "softdpu-tx.pcap", [frame])   # the way softdpu's output will come
        replies = k.inject_and_capture(read_pcap(tmp_path / "softdpu-tx.pcap"), timeout=3,
                                       count=1)
        [p] = vxlan_replies(k, replies)
        o = outer_ip(k, p)
        assert (o.src, o.dst) == (k.local_ip, k.peer_ip)
        assert p.src == k.underlay_mac and p.dst == k.peer_mac
        assert p[UDP].dport == 4789 and p[VXLAN].vni == 5000 and p[VXLAN].flags == 0x08
        inner = p[VXLAN].payload
        assert inner.src == k.vxlan_mac and inner.dst == REMOTE_OVERLAY_MAC
        assert inner[IP].src == LOCAL_OVERLAY_IP and inner[IP].dst == REMOTE_OVERLAY_IP
        assert inner[ICMP].type == 0 and inner[ICMP].id == 0x1234 and inner[ICMP].seq == 7
        assert raw(inner[ICMP].payload) == b"from-softdpu"


@pytest.mark.parametrize("family", [4, 6])
def test_kernel_accepts_any_source_port_and_ipv4_zero_checksum(family):
    with vtep(family) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        for seq, kw in enumerate([{"src_port": 1}, {"src_port": 65535}, {"udp_csum": 0}], 1):
            replies = vxlan_replies(k, k.inject_and_capture(
                [k.encap(echo_request(k, seq=seq), **kw)], timeout=2, count=1))
            if family == 6 and kw.get("udp_csum") == 0:
                assert replies == [], "IPv6 zero UDP checksum must be dropped by default"
            else:
                assert len(replies) == 1, kw


def test_ipv6_zero_checksum_accepted_with_udp6zerocsumrx():
    with vtep(6, udp6_zero_csum_rx=True) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        replies = k.inject_and_capture([k.encap(echo_request(k), udp_csum=0)], timeout=3, count=1)
        assert len(vxlan_replies(k, replies)) == 1


# ---------------------------------------------------------------- (3) malformed -> silence

MALFORMED = {
    "wrong-vni": dict(vni=5001),
    "wrong-dst-port": dict(dst_port=4790),
    "bad-udp-checksum": dict(udp_csum=0x1234),
    "gpe-flags(scapy-default)": dict(flags=0x0C),
    "no-I-flag": dict(flags=0x00),
    "wrong-outer-dst-mac": dict(dst_mac="02:00:00:00:ee:ee"),
    "wrong-inner-dst-mac": "inner",
}


@pytest.mark.parametrize("family", [4, 6])
def test_malformed_vxlan_gets_no_reply(family):
    with vtep(family) as k:
        k.neigh_add(REMOTE_OVERLAY_IP, REMOTE_OVERLAY_MAC)
        for seq, (name, kw) in enumerate(MALFORMED.items(), 1):
            if kw == "inner":
                frame = k.encap(echo_request(k, seq=seq, dst_mac="02:00:00:00:dd:dd"))
            else:
                frame = k.encap(echo_request(k, seq=seq), **kw)
            answers = k.inject_and_capture([frame], timeout=0.5)
            assert vxlan_replies(k, answers) == [], name
            if name == "wrong-dst-port":   # the underlay stack answers: port unreachable
                assert any(Ether(a).haslayer("ICMP" if family == 4 else "ICMPv6DestUnreach")
                           for a in answers), [Ether(a).summary() for a in answers]
        # control: the same VTEP still answers a good one, so silence above meant rejection
        good = k.inject_and_capture([k.encap(echo_request(k, seq=99))], timeout=3, count=1)
        assert len(vxlan_replies(k, good)) == 1


# ---------------------------------------------------------------- harness hygiene

def test_cleanup_after_normal_exit_and_exception():
    before = netns_names()
    with vtep(4) as k:
        names = {k.kns, k.sns}
        assert names <= netns_names()
    assert not (names & netns_names())

    with pytest.raises(RuntimeError, match="boom"):
        with vtep(6) as k:
            names = {k.kns, k.sns}
            raise RuntimeError("boom")
    assert not (names & netns_names())
    assert not any(n.startswith("kvtest-") for n in netns_names() - before)


def test_cleanup_after_half_built_setup(monkeypatch):
    made = []

    def fail(self, ifname):
        made.extend([self.kns, self.sns])
        assert {self.kns, self.sns} <= netns_names()
        raise OSError("simulated failure half way")

    monkeypatch.setattr(KernelVtep, "_tx_csum_off", fail)
    with pytest.raises(OSError, match="half way"):
        with vtep(4):
            pass
    assert made and not (set(made) & netns_names())


def test_fdb_and_overlay_ipv6():
    with vtep(6, overlay_ip="fd00:10::2/64") as k:
        assert ("00:00:00:00:00:00", k.peer_ip) in [(m, d) for m, d, _ in k.fdb()]
        k.fdb_append("02:00:00:00:09:09", "2001:db8::9")
        assert ("02:00:00:00:09:09", "2001:db8::9") in [(m, d) for m, d, _ in k.fdb()]
        k.neigh_add("fd00:10::1", REMOTE_OVERLAY_MAC)
        [f] = k.capture(lambda: k.ping("fd00:10::1"), timeout=3, count=1)
        p = Ether(f)
        assert p[VXLAN].payload[IPv6].dst == "fd00:10::1"
        assert ipaddress.ip_address(p[IPv6].dst) == ipaddress.ip_address(k.peer_ip)
        assert udp_checksum_ok(f)
