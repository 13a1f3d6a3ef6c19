"""The Linux kernel's vxlan device as softdpu's peer VTEP (tests/kernel_vxlan.py builds it).

    kernel netns: vx0 (vxlan, VNI 5000, 10.10.0.2) on u0 (192.0.2.2 | 2001:db8::2)
            ||  veth  ||
    softdpu side: p0, driven with AF_PACKET by the harness; softdpu itself runs on pcaps:
    pipeline ports `local` (ofport 1, the overlay host 10.10.0.1), `uplink` (ofport 2, p0's
    MAC) and `vx` (vxlan, ofport 10, local_ip 192.0.2.1 | 2001:db8::1, remote_ip = the kernel).

  (1) the kernel pings through vx0; the captured VXLAN frames (the kernel's UDP checksum is
      on by default, also over IPv4) go through softdpu: the inner echo requests leave
      `local` byte for byte as the kernel encapsulated them;
  (2) softdpu encapsulates echo requests from `local`; the harness injects softdpu's
      uplink output into the kernel's underlay; the kernel answers with VXLAN echo replies,
      which softdpu decapsulates back out of `local`: a full round trip;
  (3) the same over an IPv6 underlay (softdpu's default csum is on over IPv6: the kernel
      drops a zero UDP checksum over IPv6 unless udp6zerocsumrx);
  (4) csum = true and csum = false over IPv4, and an IPv6 overlay;
  (5) vx0's rx_errors (and rx_dropped) stay 0 for everything softdpu sent, and vx0's
      rx_packets count every frame: the kernel rejected nothing.

Needs root and network namespaces: skips without them, FAILS under CI=true.
"""
import struct

import pytest
from scapy.all import ICMP, IP, UDP, Ether, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, raw

from kernel_vxlan import KernelVtep, read_pcap, require_kernel_vxlan, write_pcap
from softdpu.pipeline import Dpu

VNI = 5000
OVERLAY_SD, OVERLAY_K = "10.10.0.1", "10.10.0.2"
OVERLAY6_SD, OVERLAY6_K = "fd00:10::1", "fd00:10::2"
SD_OVERLAY_MAC = "02:00:00:00:01:01"
LOCAL, UPLINK, VX = 1, 2, 10


@pytest.fixture(autouse=True)
def _need_kernel():
    require_kernel_vxlan()


def vtep(family, overlay6=False, **kw):
    overlay = f"{OVERLAY6_K}/64" if overlay6 else f"{OVERLAY_K}/24"
    return KernelVtep("sdkv", family=family, vni=VNI, overlay_ip=overlay, **kw)


def pipeline(tmp_path, k, **vx_options):
    """softdpu facing the kernel VTEP k: local <-> vx, vx over uplink (p0's MAC)."""
    opts = dict(local_ip=k.peer_ip, remote_ip=k.local_ip, key=VNI, **vx_options)
    vx = "\n".join(f"{key} = {str(v).lower() if isinstance(v, bool) else (v if isinstance(v, int) else repr(v))}"
                   for key, v in opts.items()).replace("'", '"')
    (tmp_path / "kv.flows").write_text(f"in_port={LOCAL},actions=output:{VX}\n"
                                       f"in_port={VX},tun_id={VNI},actions=output:{LOCAL}\n")
    toml = tmp_path / "kv.toml"
    toml.write_text(f"""[pipeline]
flows = "kv.flows"

[[port]]
name = "local"
ofport = {LOCAL}
type = "pcap"

[[port]]
name = "uplink"
ofport = {UPLINK}
type = "pcap"
mac = "{k.peer_mac}"

[[port]]
name = "vx"
ofport = {VX}
type = "vxlan"
underlay = "uplink"
{vx}

[[neighbor]]
ip = "{k.local_ip}"
mac = "{k.underlay_mac}"
""")
    return toml


def run(tmp_path, toml, port, frames, tag):
    """frames in on `port` (a pcap written for it) -> {port: frames out}, and the Dpu."""
    dpu = Dpu.load(toml)
    inp = tmp_path / f"{tag}-in-{port}.pcap"
    write_pcap(inp, frames)
    out = tmp_path / f"{tag}-out"
    dpu.run_pcaps(inputs={port: inp}, out_dir=out)
    return {name: read_pcap(out / f"{name}.pcap") for name in ("local", "uplink")}, dpu


def vx_stats(k):
    """vx0's IFLA_STATS64 counters in the kernel namespace."""
    link = k._ipr.get_links(k._index(k.K_VXLAN))[0]
    return dict(link.get_attr("IFLA_STATS64"))


def outer_l4(frame):
    return 14 + ((frame[14] & 0xF) * 4 if frame[12:14] == b"\x08\x00" else 40)


def udp_csum(frame):
    return struct.unpack_from(">H", frame, outer_l4(frame) + 6)[0]


def udp_csum_valid(frame):
    p = Ether(frame)
    got = p[UDP].chksum
    del p[UDP].chksum
    return got == Ether(raw(p))[UDP].chksum


def inner_of(frame):
    return frame[outer_l4(frame) + 16:]


def echo_requests(k, n, overlay6=False, payload=b"softdpu-echo", tos=0):
    out = []
    for seq in range(1, n + 1):
        e = Ether(src=SD_OVERLAY_MAC, dst=k.vxlan_mac)
        if overlay6:
            p = e / IPv6(src=OVERLAY6_SD, dst=OVERLAY6_K, tc=tos) / ICMPv6EchoRequest(id=0x5d, seq=seq) / payload
        else:
            p = e / IP(src=OVERLAY_SD, dst=OVERLAY_K, tos=tos) / ICMP(type=8, id=0x5d, seq=seq) / payload
        out.append(raw(p))
    return out


# ---------------------------------------------------------------- (1) kernel -> softdpu

@pytest.mark.parametrize("family", [4, 6])
def test_kernel_ping_decapsulated_by_softdpu(tmp_path, family):
    with vtep(family) as k:
        k.neigh_add(OVERLAY_SD, SD_OVERLAY_MAC)
        sent = k.capture(lambda: k.ping(OVERLAY_SD, count=3), timeout=3, count=3, keep=k.is_vxlan)
        assert len(sent) == 3
        write_pcap(tmp_path / "kernel-tx.pcap", sent)
        for f in sent:
            assert udp_csum(f) != 0 and udp_csum_valid(f)     # the kernel's default: checksum on
        out, dpu = run(tmp_path, pipeline(tmp_path, k), "uplink", read_pcap(tmp_path / "kernel-tx.pcap"), "k2s")
        assert out["local"] == [inner_of(f) for f in sent]
        for seq, f in enumerate(out["local"], 1):
            p = Ether(f)
            assert p[ICMP].type == 8 and p[ICMP].seq == seq and p[IP].dst == OVERLAY_SD
            assert p.src == k.vxlan_mac and p.dst == SD_OVERLAY_MAC
        assert out["uplink"] == []


# ---------------------------------------------------------------- (2)-(4) round trips

def _is_echo_reply(frame):
    p = Ether(frame)
    return (ICMP in p and p[ICMP].type == 0) or ICMPv6EchoReply in p


def round_trip(tmp_path, k, n=4, overlay6=False, inner_tos=0, **vx_options):
    """softdpu encapsulates n echo requests, the kernel answers, softdpu decapsulates the replies.
    -> (what softdpu sent, the kernel's VXLAN replies, the replies out of softdpu's local port)."""
    if overlay6:
        k.neigh_add(OVERLAY6_SD, SD_OVERLAY_MAC)
    else:
        k.neigh_add(OVERLAY_SD, SD_OVERLAY_MAC)
    toml = pipeline(tmp_path, k, **vx_options)
    requests = echo_requests(k, n, overlay6=overlay6, tos=inner_tos)
    out, _ = run(tmp_path, toml, "local", requests, "s2k")
    encapsulated = out["uplink"]
    assert len(encapsulated) == n and out["local"] == []
    assert [inner_of(f) for f in encapsulated] == requests
    before = vx_stats(k)
    # only the echo replies: the kernel's VXLAN device also sends its own (MLD reports, neighbour
    # solicitations) over the overlay now and then
    replies = k.inject_and_capture(encapsulated, timeout=3, count=n,
                                   keep=lambda f: k.is_vxlan(f) and _is_echo_reply(inner_of(f)))
    after = vx_stats(k)
    assert len(replies) == n, [Ether(f).summary() for f in replies]
    assert after["rx_errors"] == before["rx_errors"] and after["rx_dropped"] == before["rx_dropped"]
    assert after["rx_packets"] - before["rx_packets"] == n
    write_pcap(tmp_path / "kernel-replies.pcap", replies)
    back, _ = run(tmp_path, toml, "uplink", read_pcap(tmp_path / "kernel-replies.pcap"), "k2s")
    assert back["local"] == [inner_of(f) for f in replies]
    for seq, f in enumerate(back["local"], 1):
        p = Ether(f)
        if overlay6:
            assert ICMPv6EchoReply in p and p[ICMPv6EchoReply].seq == seq and p[IPv6].src == OVERLAY6_K
        else:
            assert p[ICMP].type == 0 and p[ICMP].seq == seq and p[ICMP].id == 0x5d and p[IP].src == OVERLAY_K
            assert bytes(p[ICMP].payload) == b"softdpu-echo"
        assert p.dst == SD_OVERLAY_MAC and p.src == k.vxlan_mac
    return encapsulated, replies, back["local"]


def test_round_trip_ipv4_default_no_udp_checksum(tmp_path):
    with vtep(4) as k:
        sent, replies, _ = round_trip(tmp_path, k)
        assert all(udp_csum(f) == 0 for f in sent)                       # softdpu's IPv4 default
        assert all(udp_csum(f) != 0 and udp_csum_valid(f) for f in replies)


def test_round_trip_ipv4_csum_true(tmp_path):
    with vtep(4) as k:
        sent, _, _ = round_trip(tmp_path, k, csum=True)
        assert all(udp_csum(f) != 0 and udp_csum_valid(f) for f in sent)


def test_round_trip_ipv4_csum_false_kernel_noudpcsum(tmp_path):
    """csum = false on softdpu, noudpcsum on the kernel: no checksum either way over IPv4."""
    with vtep(4, udp_csum=False) as k:
        sent, replies, _ = round_trip(tmp_path, k, csum=False)
        assert all(udp_csum(f) == 0 for f in sent + replies)


def test_round_trip_ipv6_underlay(tmp_path):
    with vtep(6) as k:
        sent, replies, _ = round_trip(tmp_path, k)
        for f in sent:
            assert Ether(f)[IPv6].nh == 17 and udp_csum(f) != 0 and udp_csum_valid(f)
        assert all(udp_csum(f) != 0 and udp_csum_valid(f) for f in replies)


def test_ipv6_underlay_zero_checksum_dropped_by_kernel(tmp_path):
    """Why softdpu's csum defaults on over IPv6: with csum = false the kernel drops every frame
    (no udp6zerocsumrx) - and takes them all once udp6zerocsumrx is set."""
    with vtep(6) as k:
        k.neigh_add(OVERLAY_SD, SD_OVERLAY_MAC)
        out, _ = run(tmp_path, pipeline(tmp_path, k, csum=False), "local", echo_requests(k, 2), "s2k")
        assert all(udp_csum(f) == 0 for f in out["uplink"])
        assert k.inject_and_capture(out["uplink"], timeout=1, keep=k.is_vxlan) == []
    with vtep(6, udp6_zero_csum_rx=True) as k:
        round_trip(tmp_path, k, csum=False)


def test_round_trip_ipv6_overlay_over_ipv4(tmp_path):
    with vtep(4, overlay6=True) as k:
        round_trip(tmp_path, k, overlay6=True, csum=True)


def test_round_trip_ipv6_overlay_over_ipv6(tmp_path):
    with vtep(6, overlay6=True) as k:
        round_trip(tmp_path, k, overlay6=True)


@pytest.mark.parametrize("options", [dict(tos="inherit", ttl=3), dict(tos=0xB8, df_default=False, ttl=255),
                                     dict(dst_port=4789)], ids=["inherit-ttl3", "dscp-nodf", "port"])
def test_round_trip_outer_settings(tmp_path, options):
    """The kernel takes softdpu's outer TOS/TTL/DF choices (ECN ECT(0) inside and out)."""
    with vtep(4) as k:
        sent, _, _ = round_trip(tmp_path, k, inner_tos=0x2A, **options)
        o = Ether(sent[0])[IP]
        assert o.tos & 3 == 2
        if options.get("tos") == "inherit":
            assert o.tos == 0x2A and o.ttl == 3
        elif "tos" in options:
            assert o.tos == 0xBA and o.flags == 0 and o.ttl == 255


def test_kernel_ce_inner_reaches_softdpu(tmp_path):
    """A kernel ping with inner ECN CE: outer ECT(0) (RFC 6040); softdpu passes the inner frame intact."""
    with vtep(4) as k:
        k.neigh_add(OVERLAY_SD, SD_OVERLAY_MAC)
        sent = k.capture(lambda: k.ping(OVERLAY_SD, count=1, tos=0x03), timeout=3, count=1, keep=k.is_vxlan)
        assert len(sent) == 1 and Ether(sent[0])[IP].tos & 3 == 2
        out, _ = run(tmp_path, pipeline(tmp_path, k), "uplink", sent, "k2s")
        assert out["local"] == [inner_of(sent[0])] and Ether(out["local"][0])[IP].tos == 0x03


def test_rx_errors_check_is_live(tmp_path):
    """The (5) check can fail: a header softdpu never sends (scapy's VXLAN-GPE flags 0x0C) raises vx0's
    rx_errors, while softdpu's own frames right after leave it alone."""
    with vtep(4) as k:
        before = vx_stats(k)
        bad = k.encap(echo_requests(k, 1)[0], flags=0x0C)
        assert k.inject_and_capture([bad], timeout=0.5, keep=k.is_vxlan) == []
        assert vx_stats(k)["rx_errors"] == before["rx_errors"] + 1
        round_trip(tmp_path, k, n=8)
        assert vx_stats(k)["rx_errors"] == before["rx_errors"] + 1
