"""ARP / IPv6 neighbour discovery of an underlay with `resolve = true` (stages/tunnel/neighbours.py),
against independent oracles:

  (1) scapy builds what each packet softdpu makes must be (the ARP reply, the neighbour
      advertisement - also the one to a DAD probe from ::, multicast with S clear, RFC 4861
      7.2.4 - the ARP request and the neighbour solicitation; scapy computes the lengths and
      the ICMPv6 checksum, its in6_getnsma/in6_getnsmac the solicited-node addresses) and the
      outputs are compared byte for byte; tshark dissects every one with no malformed packet
      and no expert warning or error, ICMPv6 checksums good;
  (2) behaviour: what is not answered (other addresses, ports without `resolve`, gratuitous
      ARP - also one claiming the VTEP address -, unsolicited adverts, invalid ND: hop limit
      not 255, ICMPv6 code not 0, bad checksum, too short) reaches the flows unchanged and
      teaches nothing; what teaches a MAC (request, reply, solicitation, advert to the VTEP);
      static [[neighbor]] entries win; one request per address per second of capture time;
      the first copy dropped (tunnel_no_neighbor), later ones encapsulated once the answer is
      in, answers in packet order, the same for batch sizes 1, 3 and 256; rx == left +
      dropped; the dynamic table full; `softdpu trace` of these packets (two trace.py
      defects once pinned as strict xfails, fixed since);
  (3) the Linux kernel (tests/kernel_vxlan.py, without the static underlay neighbour) as the
      peer, IPv4 and IPv6 underlays: its own ARP request / solicitation for softdpu's VTEP
      (byte for byte the format softdpu asks with) answered by softdpu teaches it softdpu's MAC
      (REACHABLE; the echo request it held back and its next ones go there as VXLAN);
      softdpu's request / solicitation is answered by the kernel (byte for byte the format
      softdpu answers with), which teaches softdpu the kernel's MAC, and an echo request
      encapsulated to it comes back as an echo reply; the kernel's duplicate address
      detection fails on softdpu's advert; the kernel ignores gratuitous ARP for its address
      and invalid solicitations, as softdpu does.
"""
import io
import socket
import subprocess
import time

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                ICMPv6NDOptSrcLLAddr, IPv6, in6_getnsma, in6_getnsmac)
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.pton_ntop import inet_ntop, inet_pton

import kernel_vxlan
from conftest import need_tool
from kernel_vxlan import KernelVtep, require_kernel_vxlan
from ovs_oracle import read_pcap, write_pcap
from softdpu.cli import main as cli_main
from softdpu.pipeline import Dpu
from softdpu.stages.tunnel.table import DYNAMIC
from test_tunnel import LOCAL4, LOCAL6, MAC2, MAC6, R2, R3, R6, UL_MAC, inner_udp
from test_tunnel import pipeline as tunnel_pipeline

T0 = 1_764_000_000 * 10**9
MS = 10**6
SEC = 10**9
BCAST = "ff:ff:ff:ff:ff:ff"
ZERO = "00:00:00:00:00:00"
LEARNED2, LEARNED6 = "02:00:00:00:aa:02", "02:00:00:00:aa:06"   # MACs only ARP/ND can teach
R6B = "2001:db8::12:3456"                                       # low 24 bits not all zero
VX4, VX6 = 10, 11
FLOWS = (f"in_port=1,actions=output:{VX4}\n"        # p1 -> the IPv4 tunnel (remote R2)
         f"in_port=2,actions=output:{VX6}\n"        # p2 -> the IPv6 tunnel (remote R6)
         "in_port=4,actions=output:3\n")            # what the underlay hands the flows -> p3
TUNNELS = {"vx4": dict(type="vxlan", ofport=VX4, remote_ip=R2, key=5),
           "vx6": dict(type="vxlan", ofport=VX6, local_ip=LOCAL6, remote_ip=R6, key=6)}


# -- helpers ------------------------------------------------------------------------

def resolving(tmp_path, neighbors=None, batch=8, resolve=True, flows=FLOWS, tunnels=TUNNELS):
    """tests/test_tunnel's pipeline (p1..p3, uplink = ofport 4) with `resolve` on the uplink."""
    path = tunnel_pipeline(tmp_path, flows, tunnels, neighbors=neighbors or {}, batch=batch)
    text = path.read_text()
    line = f'mac = "{UL_MAC}"\n'
    assert text.count(line) == 1
    path.write_text(text.replace(line, line + f"resolve = {'true' if resolve else 'false'}\n"))
    return path


def run(tmp_path, path, inputs, out="out", dpu=None):
    """{port: [(ts_ns, frame)]} through the pipeline -> (dpu, stats, {port: [frames out]})."""
    dpu = dpu or Dpu.load(path)
    caps = {}
    for name, records in inputs.items():
        caps[name] = tmp_path / f"in-{out}-{name}.pcap"
        write_pcap(caps[name], records, nanosecond=True)
    stats = dpu.run_pcaps(inputs=caps, out_dir=tmp_path / out)
    outs = {name: read_pcap(f) for name, f in dpu.outputs.items()}
    assert stats.rx == stats.left + stats.dropped
    return dpu, stats, outs


def arp(op, sha, spa, tpa, tha=ZERO, dst=BCAST, src=None):
    return bytes(Ether(src=src or sha, dst=dst) / ARP(op=op, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa))


def ns(src, target, smac, sllao=True, hlim=255, dst=None):
    dst = dst or in6_getnsma(inet_pton(socket.AF_INET6, target))
    dst = dst if isinstance(dst, str) else inet_ntop(socket.AF_INET6, dst)
    p = (Ether(src=smac, dst=in6_getnsmac(inet_pton(socket.AF_INET6, dst)) if dst.startswith("ff02") else UL_MAC)
         / IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=target))
    if sllao:
        p = p / ICMPv6NDOptSrcLLAddr(lladdr=smac)
    return bytes(p)


def na(src, dst, target, mac, dmac=UL_MAC, solicited=1, tllao=True):
    p = Ether(src=mac, dst=dmac) / IPv6(src=src, dst=dst, hlim=255) / ICMPv6ND_NA(tgt=target, R=0, S=solicited, O=1)
    if tllao:
        p = p / ICMPv6NDOptDstLLAddr(lladdr=mac)
    return bytes(p)


def nsma(addr):
    """The solicited-node multicast address and MAC of addr, as scapy computes them."""
    n = in6_getnsma(inet_pton(socket.AF_INET6, addr))
    return inet_ntop(socket.AF_INET6, n), in6_getnsmac(n)


def icmp6_checksum_ok(frame):
    """scapy recomputes the ICMPv6 checksum of frame: the same as the one it carries?"""
    p = Ether(frame)
    layer = p[IPv6].payload
    got = layer.cksum
    del layer.cksum
    return got == Ether(bytes(p))[IPv6].payload.cksum


def expected_reply(sha, spa, my_ip=LOCAL4, my_mac=UL_MAC):
    return bytes(Ether(dst=sha, src=my_mac) / ARP(op=2, hwsrc=my_mac, psrc=my_ip, hwdst=sha, pdst=spa))


def expected_na(target, dst, dmac, solicited=1, my_mac=UL_MAC):
    return bytes(Ether(dst=dmac, src=my_mac) / IPv6(src=target, dst=dst, hlim=255, tc=0, fl=0)
                 / ICMPv6ND_NA(tgt=target, R=0, S=solicited, O=1) / ICMPv6NDOptDstLLAddr(lladdr=my_mac))


def expected_arp_request(tpa, spa=LOCAL4, my_mac=UL_MAC):
    return bytes(Ether(dst=BCAST, src=my_mac) / ARP(op=1, hwsrc=my_mac, psrc=spa, hwdst=ZERO, pdst=tpa))


def expected_ns(target, src=LOCAL6, my_mac=UL_MAC):
    group, gmac = nsma(target)
    return bytes(Ether(dst=gmac, src=my_mac) / IPv6(src=src, dst=group, hlim=255, tc=0, fl=0)
                 / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=my_mac))


def expected_vxlan(inner, remote_mac, vni, remote=R2, local=LOCAL4, sport=None):
    """scapy's encapsulation of inner (the source port is softdpu's flow hash: taken from `sport`)."""
    l3 = (IP(src=local, dst=remote, id=0, flags="DF", ttl=64) if ":" not in remote
          else IPv6(src=local, dst=remote, hlim=64))
    u = UDP(sport=sport, dport=4789)
    if ":" not in remote:
        u.chksum = 0
    return bytes(Ether(dst=remote_mac, src=UL_MAC) / l3 / u / VXLAN(vni=vni, flags=8, NextProtocol=0) / Raw(inner))


def same_encap(frame, inner, remote_mac, vni, remote=R2, local=LOCAL4):
    l4 = 14 + (20 if ":" not in remote else 40)
    sport = int.from_bytes(frame[l4:l4 + 2], "big")
    assert frame == expected_vxlan(inner, remote_mac, vni, remote, local, sport)


def tshark_check(tmp_path, frames, name):
    """tshark dissects frames: nothing malformed, no expert error; -> [(arp.opcode, icmpv6.type,
    icmpv6.checksum.status)]."""
    tshark = need_tool("tshark")
    path = tmp_path / f"tshark-{name}.pcap"
    write_pcap(path, [(T0 + k * MS, f) for k, f in enumerate(frames)])
    base = [tshark, "-n", "-r", str(path)]
    bad = subprocess.run(base + ["-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
                         capture_output=True, text=True, check=True).stdout
    assert bad.strip() == "", bad
    rows = subprocess.run(base + ["-T", "fields", "-E", "separator=|", "-e", "arp.opcode", "-e", "icmpv6.type",
                                  "-e", "icmpv6.checksum.status", "-e", "_ws.col.Info"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(rows) == len(frames)
    return [tuple(r.split("|")) for r in rows]


# -- 1. the packets softdpu makes, against scapy and tshark -------------------------------

def test_arp_reply_as_scapy_builds_it(tmp_path):
    padded = arp(1, MAC2, R2, LOCAL4) + b"\0" * 18                   # a 60-byte frame off a real wire
    probe = arp(1, MAC2, "0.0.0.0", LOCAL4)                          # RFC 5227 probe: spa 0
    other_src = arp(1, MAC2, R2, LOCAL4, src="02:00:00:00:77:77")    # Ethernet source not the sha
    _, stats, outs = run(tmp_path, resolving(tmp_path), {"uplink": [
        (T0, arp(1, MAC2, R2, LOCAL4)), (T0 + MS, padded), (T0 + 2 * MS, probe), (T0 + 3 * MS, other_src)]})
    up = outs["uplink"]
    assert len(up) == 4 and outs["p3"] == []
    assert up[0] == expected_reply(MAC2, R2)
    assert len(up[1]) == 60 and up[1] == expected_reply(MAC2, R2) + b"\0" * 18     # padding kept as it was
    assert up[2] == expected_reply(MAC2, "0.0.0.0")                 # to the prober's MAC, tpa 0 (as Linux)
    assert up[3] == expected_reply(MAC2, R2)                         # to the sha (RFC 826), not the Ethernet src
    assert stats.drop_counts() == {}                                 # answered: left, not dropped
    assert stats.left == 4
    rows = tshark_check(tmp_path, up, "arp-reply")
    assert [r[0] for r in rows] == ["2"] * 4


@pytest.mark.parametrize("target", [LOCAL6, R6B])
def test_neighbour_advert_as_scapy_builds_it(tmp_path, target):
    tunnels = {"vx6": dict(type="vxlan", ofport=VX6, local_ip=target, remote_ip=R6, key=6)}
    path = resolving(tmp_path, tunnels=tunnels)
    _, stats, outs = run(tmp_path, path, {"uplink": [
        (T0, ns(R6, target, MAC6)),
        (T0 + MS, ns(R6, target, MAC6, dst=target)),                 # unicast solicitation (NUD)
        (T0 + 2 * MS, ns(R6, target, MAC6) + b"\xee" * 10)]})        # trailing bytes past the IPv6 payload
    up = outs["uplink"]
    assert len(up) == 3 and outs["p3"] == []
    for frame in up:
        assert frame == expected_na(target, R6, MAC6)
        assert icmp6_checksum_ok(frame)
        p = Ether(frame)
        assert p[IPv6].hlim == 255 and p[ICMPv6ND_NA].S == 1 and p[ICMPv6ND_NA].O == 1 and p[ICMPv6ND_NA].R == 0
        assert p[ICMPv6NDOptDstLLAddr].lladdr == UL_MAC
    rows = tshark_check(tmp_path, up, "na")
    assert [(r[1], r[2]) for r in rows] == [("136", "1")] * 3           # 1: checksum good


def test_neighbour_advert_to_a_dad_probe(tmp_path):
    """A solicitation from :: (duplicate address detection, no source link-layer option,
    RFC 4862 5.4.2): RFC 4861 7.2.4 - the advert goes to all nodes (ff02::1, 33:33:00:00:00:01)
    with the Solicited flag CLEAR (Linux drops a multicast advert with S set: ndisc_recv_na
    "solicited NA is multicasted", see the kernel test below)."""
    _, _, outs = run(tmp_path, resolving(tmp_path), {"uplink": [(T0, ns("::", LOCAL6, MAC6, sllao=False))]})
    up = outs["uplink"]
    assert len(up) == 1
    assert up[0] == expected_na(LOCAL6, "ff02::1", "33:33:00:00:00:01", solicited=0)
    assert icmp6_checksum_ok(up[0])
    assert tshark_check(tmp_path, up, "dad-na")[0][1:3] == ("136", "1")


@pytest.mark.parametrize("remote", [R2, "198.51.100.77"])
def test_arp_request_as_scapy_builds_it(tmp_path, remote):
    tunnels = {"vx4": dict(type="vxlan", ofport=VX4, remote_ip=remote, key=5)}
    _, stats, outs = run(tmp_path, resolving(tmp_path, tunnels=tunnels), {"p1": [(T0, inner_udp())]})
    assert outs["uplink"] == [expected_arp_request(remote)]
    assert stats.drop_counts() == {"tunnel_no_neighbor": 1}
    assert tshark_check(tmp_path, outs["uplink"], "arp-request")[0][0] == "1"


@pytest.mark.parametrize("remote", [R6, R6B, "fe80::abcd:ef01:2345:6789"])
def test_neighbour_solicitation_as_scapy_builds_it(tmp_path, remote):
    tunnels = {"vx6": dict(type="vxlan", ofport=VX6, local_ip=LOCAL6, remote_ip=remote, key=6)}
    _, stats, outs = run(tmp_path, resolving(tmp_path, tunnels=tunnels), {"p2": [(T0, inner_udp())]})
    up = outs["uplink"]
    assert up == [expected_ns(remote)]
    p = Ether(up[0])
    group, gmac = nsma(remote)
    assert p.dst == gmac and p[IPv6].dst == group and p[IPv6].hlim == 255
    assert p[ICMPv6NDOptSrcLLAddr].lladdr == UL_MAC and icmp6_checksum_ok(up[0])
    assert stats.drop_counts() == {"tunnel_no_neighbor": 1}
    assert tshark_check(tmp_path, up, "ns")[0][1:3] == ("135", "1")


# -- 2. behaviour --------------------------------------------------------------------------

def spoil(frame, **changes):
    """frame with ICMPv6 fields changed (scapy recomputes the checksum unless cksum is given)."""
    p = Ether(frame)
    layer = p[IPv6].payload
    for k, v in changes.items():
        setattr(layer, k, v)
    if "cksum" not in changes:
        del layer.cksum
    return bytes(p)


def bad_checksum(frame):
    b = bytearray(frame)
    b[14 + 40 + 2] ^= 0x5A
    return bytes(b)


NOT_FOR_US = {
    "arp request for another address": arp(1, MAC2, R2, R3),
    "arp reply to another address": arp(2, MAC2, R2, R3, tha="02:00:00:00:00:03", dst="02:00:00:00:00:03"),
    "gratuitous arp request": arp(1, MAC2, R2, R2),
    "gratuitous arp reply": arp(2, MAC2, R2, R2, tha=BCAST),
    "gratuitous arp claiming the vtep address": arp(1, MAC2, LOCAL4, LOCAL4),
    "gratuitous arp reply claiming the vtep address": arp(2, MAC2, LOCAL4, LOCAL4, tha=BCAST),
    "solicitation for another address": ns(R6, R6B, MAC6),
    "solicitation with hop limit 64": ns(R6, LOCAL6, MAC6, hlim=64),
    "unsolicited advert to all nodes": na(R6, "ff02::1", R6, MAC6, dmac="33:33:00:00:00:01", solicited=0),
    "advert to another address": na(R6, R6B, R6, MAC6),
    # RFC 4861 7.1.1 / 7.1.2: invalid ND is silently discarded by the host (not answered, not
    # learned from), so to softdpu it is an ordinary packet of the underlay
    "solicitation with a bad checksum": bad_checksum(ns(R6, LOCAL6, MAC6)),
    "solicitation with icmp code 1": spoil(ns(R6, LOCAL6, MAC6), code=1),
    "advert with a bad checksum": bad_checksum(na(R6, LOCAL6, R6, MAC6)),
    "advert with hop limit 64": bytes(Ether(src=MAC6, dst=UL_MAC) / IPv6(src=R6, dst=LOCAL6, hlim=64)
                                      / ICMPv6ND_NA(tgt=R6, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=MAC6)),
    "solicitation, payload length under 24": bytes(Ether(src=MAC6, dst=UL_MAC) / IPv6(src=R6, dst=LOCAL6, plen=20)
                                                   / ICMPv6ND_NS(tgt=LOCAL6)),
}


@pytest.mark.parametrize("case", NOT_FOR_US)
@pytest.mark.parametrize("resolve", [True, False])
def test_not_ours_reaches_the_flows(tmp_path, case, resolve):
    frame = NOT_FOR_US[case]
    dpu, stats, outs = run(tmp_path, resolving(tmp_path, resolve=resolve), {"uplink": [(T0, frame)]})
    assert outs["p3"] == [frame] and outs["uplink"] == []
    assert stats.drop_counts() == {}
    assert dpu.tunnels.table.nstate[0] == 0, "learned from a packet that was not for us"


@pytest.mark.parametrize("case", ["arp request", "solicitation", "arp reply", "advert"])
def test_without_resolve_nothing_is_answered_or_learned(tmp_path, case):
    frame = {"arp request": arp(1, MAC2, R2, LOCAL4), "solicitation": ns(R6, LOCAL6, MAC6),
             "arp reply": arp(2, LEARNED2, R2, LOCAL4, tha=UL_MAC, dst=UL_MAC),
             "advert": na(R6, LOCAL6, R6, LEARNED6)}[case]
    dpu, stats, outs = run(tmp_path, resolving(tmp_path, resolve=False),
                           {"uplink": [(T0, frame)], "p1": [(T0 + MS, inner_udp())], "p2": [(T0 + MS, inner_udp())]})
    assert outs["p3"] == [frame] and outs["uplink"] == []            # no answer, no ARP/NS asked
    assert stats.drop_counts() == {"tunnel_no_neighbor": 2}


LEARN_FROM = {
    "arp request": (4, arp(1, LEARNED2, R2, LOCAL4), "answered"),
    "arp reply": (4, arp(2, LEARNED2, R2, LOCAL4, tha=UL_MAC, dst=UL_MAC), "vtep_consumed"),
    "unsolicited arp reply": (4, arp(2, LEARNED2, R2, LOCAL4, tha=BCAST), "vtep_consumed"),
    "solicitation": (6, ns(R6, LOCAL6, LEARNED6), "answered"),
    "advert": (6, na(R6, LOCAL6, R6, LEARNED6), "vtep_consumed"),
    "advert, override clear": (6, bytes(Ether(src=LEARNED6, dst=UL_MAC) / IPv6(src=R6, dst=LOCAL6, hlim=255)
                                        / ICMPv6ND_NA(tgt=R6, R=0, S=1, O=0) / ICMPv6NDOptDstLLAddr(lladdr=LEARNED6)),
                               "vtep_consumed"),
}


@pytest.mark.parametrize("case", LEARN_FROM)
def test_learning(tmp_path, case):
    family, frame, fate = LEARN_FROM[case]
    port, mac, vni, remote, local = ("p1", LEARNED2, 5, R2, LOCAL4) if family == 4 else ("p2", LEARNED6, 6, R6, LOCAL6)
    inner = inner_udp()
    _, stats, outs = run(tmp_path, resolving(tmp_path), {"uplink": [(T0, frame)], port: [(T0 + MS, inner)]})
    up = outs["uplink"]
    assert outs["p3"] == []
    if fate == "answered":
        assert len(up) == 2 and up[0] == (expected_reply(LEARNED2, R2) if family == 4 else
                                          expected_na(LOCAL6, R6, LEARNED6))
        assert stats.drop_counts() == {}
    else:
        assert len(up) == 1 and stats.drop_counts() == {"vtep_consumed": 1}
    same_encap(up[-1], inner, mac, vni, remote, local)


@pytest.mark.parametrize("family", [4, 6])
def test_static_neighbours_win(tmp_path, family):
    if family == 4:
        port, static, vni, remote, local = "p1", MAC2, 5, R2, LOCAL4
        teach = [arp(2, LEARNED2, R2, LOCAL4, tha=UL_MAC, dst=UL_MAC), arp(1, LEARNED2, R2, LOCAL4)]
    else:
        port, static, vni, remote, local = "p2", MAC6, 6, R6, LOCAL6
        teach = [na(R6, LOCAL6, R6, LEARNED6), ns(R6, LOCAL6, LEARNED6)]
    inner = inner_udp()
    dpu, stats, outs = run(tmp_path, resolving(tmp_path, neighbors={R2: MAC2, R6: MAC6}),
                           {"uplink": [(T0, teach[0]), (T0 + MS, teach[1])], port: [(T0 + 2 * MS, inner)]})
    up = outs["uplink"]
    assert len(up) == 2                                   # the answer to the request, then the copy
    same_encap(up[1], inner, static, vni, remote, local)
    assert dpu.tunnels.table.nstate.tolist() == [2, 2]    # nothing learned beside the static entries


@pytest.mark.parametrize("gap_ms, requests", [(500, 1), (999, 1), (1000, 2), (1500, 2)])
@pytest.mark.parametrize("family", [4, 6])
def test_one_request_a_second(tmp_path, family, gap_ms, requests):
    port = "p1" if family == 4 else "p2"
    want = expected_arp_request(R2) if family == 4 else expected_ns(R6)
    _, stats, outs = run(tmp_path, resolving(tmp_path),
                         {port: [(T0, inner_udp()), (T0 + gap_ms * MS, inner_udp(sport=7))]})
    assert outs["uplink"] == [want] * requests
    assert stats.drop_counts() == {"tunnel_no_neighbor": 2}


def test_one_request_a_second_per_address(tmp_path):
    """Two remotes asked for at the same time: one request each."""
    flows = FLOWS + "in_port=3,actions=output:12\n"
    tunnels = dict(TUNNELS, vx3=dict(type="vxlan", ofport=12, remote_ip=R3, key=7))
    _, stats, outs = run(tmp_path, resolving(tmp_path, flows=flows, tunnels=tunnels),
                         {"p1": [(T0, inner_udp()), (T0 + 2 * MS, inner_udp())],
                          "p3": [(T0 + MS, inner_udp()), (T0 + 3 * MS, inner_udp())]})
    assert outs["uplink"] == [expected_arp_request(R2), expected_arp_request(R3)]
    assert stats.drop_counts() == {"tunnel_no_neighbor": 4}


def _sequence(family):
    """Copies before and after the remote's answer, and a request from another host between them."""
    if family == 4:
        port, vni, remote, local, mac = "p1", 5, R2, LOCAL4, LEARNED2
        answer = arp(2, LEARNED2, R2, LOCAL4, tha=UL_MAC, dst=UL_MAC)
        asked = expected_arp_request(R2)
        other = arp(1, MAC2, R3, LOCAL4)
        other_answer = expected_reply(MAC2, R3)
    else:
        port, vni, remote, local, mac = "p2", 6, R6, LOCAL6, LEARNED6
        answer = na(R6, LOCAL6, R6, LEARNED6)
        asked = expected_ns(R6)
        other = ns(R6B, LOCAL6, MAC6)
        other_answer = expected_na(LOCAL6, R6B, MAC6)
    inners = [inner_udp(sport=100 + k) for k in range(6)]
    inputs = {port: [(T0, inners[0]), (T0 + 5 * MS, inners[1]), (T0 + 20 * MS, inners[2]),
                     (T0 + 30 * MS, inners[3]), (T0 + 40 * MS, inners[4]), (T0 + 50 * MS, inners[5])],
              "uplink": [(T0 + 10 * MS, answer), (T0 + 35 * MS, other)]}
    return inputs, inners, asked, other_answer, (mac, vni, remote, local)


@pytest.mark.parametrize("family", [4, 6])
def test_first_copy_dropped_later_ones_encapsulated(tmp_path, family):
    inputs, inners, asked, other_answer, (mac, vni, remote, local) = _sequence(family)
    results = {}
    for batch in (1, 3, 256):
        d = tmp_path / f"b{batch}"
        d.mkdir()
        _, stats, outs = run(d, resolving(d, batch=batch), inputs)
        up = outs["uplink"]
        # T0: asked, copy dropped; T0+5ms: before the answer (T0+10ms), asked < 1 s ago: dropped
        assert len(up) == 6 and up[0] == asked and up[3] == other_answer      # in packet order
        for frame, inner in zip(up[1:3] + up[4:], inners[2:]):
            same_encap(frame, inner, mac, vni, remote, local)
        assert stats.drop_counts() == {"tunnel_no_neighbor": 2, "vtep_consumed": 1}
        assert (stats.rx, stats.left, stats.dropped) == (8, 5, 3)     # 6 copies + answer + request
        assert outs["p3"] == []
        results[batch] = (up, stats.drop_counts(), stats.table())
    assert results[1] == results[3] == results[256]


def test_dynamic_table_full(tmp_path):
    """DYNAMIC learned entries: the next address is not learned (still answered); a copy to a
    remote not in the full table is dropped without a request; learned ones still work."""
    assert DYNAMIC == 256
    flows = FLOWS + "in_port=3,actions=output:12\n"
    tunnels = dict(TUNNELS, vx3=dict(type="vxlan", ofport=12, remote_ip=R3, key=7))
    fillers = [f"10.1.{k // 250}.{k % 250 + 1}" for k in range(DYNAMIC - 1)] + [R2]    # R2 the 256th
    extra = [f"10.2.0.{k + 1}" for k in range(5)]
    reqs = [(T0 + k * MS, arp(1, LEARNED2 if a == R2 else "02:00:00:00:bb:01", a, LOCAL4))
            for k, a in enumerate(fillers + extra)]
    t = T0 + SEC
    inner = inner_udp()
    dpu, stats, outs = run(tmp_path, resolving(tmp_path, flows=flows, tunnels=tunnels), {
        "uplink": reqs, "p1": [(t, inner)], "p3": [(t + MS, inner_udp()), (t + 2 * SEC, inner_udp())],
        "p2": [(t + 3 * MS, inner_udp())]})
    up = outs["uplink"]
    assert dpu.tunnels.table.nstate.tolist() == [DYNAMIC, 0]
    assert len(up) == len(reqs) + 1                                 # every request answered; no ARP/NS asked
    assert up[:len(reqs)] == [expected_reply(ARP(f[14:]).hwsrc, ARP(f[14:]).psrc)
                              for _, f in reqs]
    same_encap(up[-1], inner, LEARNED2, 5)                            # R2, learned last, still works
    assert stats.drop_counts() == {"tunnel_no_neighbor": 3}          # R3 twice, R6 once: not asked


def trace_blocks(tmp_path, family, json=False):
    """`softdpu trace` of _sequence(family): the text of each packet (or the JSON list)."""
    inputs, *_ = _sequence(family)
    path = resolving(tmp_path)
    caps = []
    for name, records in inputs.items():
        write_pcap(tmp_path / f"{name}.pcap", records, nanosecond=True)
        caps += ["--in", f"{name}={tmp_path / f'{name}.pcap'}"]
    out = io.StringIO()
    assert cli_main(["trace", str(path)] + caps + (["--json"] if json else []), out=out) == 0
    if json:
        import json as js
        return js.loads(out.getvalue())
    text = out.getvalue()
    assert "internal error" not in text and "Traceback" not in text, text
    blocks = ["Packet " + b for b in text.split("Packet ")[1:]]
    assert len(blocks) == 8
    return blocks


@pytest.mark.parametrize("family", [4, 6])
def test_trace_reads_sensibly(tmp_path, family):
    b = trace_blocks(tmp_path, family)
    for k in (0, 1):                      # before the answer: no neighbour
        assert "Result: dropped: tunnel_no_neighbor" in b[k], b[k]
    assert "Result: dropped before the flow tables: vtep_consumed" in b[2], b[2]
    assert ("arp_op=2" if family == 4 else "icmp_type=136") in b[2]
    for k in (3, 4, 6, 7):                # after it: encapsulated
        assert "Encapsulated: vxlan VNI" in b[k] and "Result: sent to uplink" in b[k], b[k]
    assert ("arp_op=1" if family == 4 else "icmp_type=135") in b[5]
    (tmp_path / "json").mkdir()
    docs = trace_blocks(tmp_path / "json", family, json=True)
    assert len(docs) == 8
    assert [docs[k]["drop"]["reason"] for k in (0, 1, 2)] == ["tunnel_no_neighbor"] * 2 + ["vtep_consumed"]
    assert all(docs[k]["drop"] is None and docs[k]["wire"][0]["port"] == "uplink" for k in (3, 4, 6, 7))


@pytest.mark.parametrize("family", [4, 6])
def test_trace_answered_request(tmp_path, family):
    b = trace_blocks(tmp_path, family)[5]
    assert "never expected" not in b and "punted" not in b, b
    assert "uplink" in b.split("Result:")[1], b


def test_trace_solicitation_flow_as_received(tmp_path):
    b = trace_blocks(tmp_path, 6)[5]
    flow = next(line for line in b.splitlines() if line.startswith("Flow: "))
    assert "icmp_type=135" in flow and f"nd_sll={MAC6}" in flow and "nd_tll=00:00:00:00:00:00" in flow, flow


# -- 3. the Linux kernel as the peer ---------------------------------------------------------

VNI = 5000
OVERLAY_SD, OVERLAY_K = "10.10.0.1", "10.10.0.2"
SD_OVERLAY_MAC = "02:00:00:00:01:01"
SD_UL_MAC = "02:5d:00:00:00:02"          # softdpu's underlay MAC: not p0's, the kernel can only learn it from us
K_LOCAL, K_UPLINK, K_VX = 1, 2, 10


def kernel_pipeline(tmp_path, k):
    (tmp_path / "kv.flows").write_text(f"in_port={K_LOCAL},actions=output:{K_VX}\n"
                                       f"in_port={K_VX},tun_id={VNI},actions=output:{K_LOCAL}\n")
    toml = tmp_path / "kv.toml"
    toml.write_text(f"""[pipeline]
flows = "kv.flows"
batch = 8

[[port]]
name = "local"
ofport = {K_LOCAL}
type = "pcap"

[[port]]
name = "uplink"
ofport = {K_UPLINK}
type = "pcap"
mac = "{SD_UL_MAC}"
resolve = true

[[port]]
name = "vx"
ofport = {K_VX}
type = "vxlan"
underlay = "uplink"
local_ip = "{k.peer_ip}"
remote_ip = "{k.local_ip}"
key = {VNI}
""")
    return toml


def is_question(k, target):
    """keep=: an ARP request / neighbour solicitation for target."""
    def keep(frame):
        p = Ether(frame)
        if ARP in p:
            return p[ARP].op == 1 and p[ARP].pdst == target
        return ICMPv6ND_NS in p and p[ICMPv6ND_NS].tgt == target
    return keep


def is_answer(frame):
    p = Ether(frame)
    return (ARP in p and p[ARP].op == 2) or ICMPv6ND_NA in p


def kernel_echo(k, seq):
    return bytes(Ether(src=SD_OVERLAY_MAC, dst=k.vxlan_mac) / IP(src=OVERLAY_SD, dst=OVERLAY_K)
                 / ICMP(type=8, id=0x5e, seq=seq) / b"softdpu-resolve")


@pytest.fixture
def kernel():
    """Needs the kernel oracle; afterwards none of this module's namespaces may be left."""
    require_kernel_vxlan()
    yield
    assert not [ns for ns in kernel_vxlan.list_netns() if ns.startswith("sdnb-")]


def _warm(tmp_path, toml):
    """Load and run the pipeline once so the kernel's timers do not wait on the JIT."""
    dpu = Dpu.load(toml)
    run(tmp_path, toml, {"local": []}, out="warm", dpu=dpu)
    return dpu


@pytest.mark.parametrize("family", [4, 6])
def test_kernel_learns_softdpu_mac(tmp_path, kernel, family):
    with KernelVtep("sdnb", family=family, vni=VNI, overlay_ip=f"{OVERLAY_K}/24", underlay_neigh=False) as k:
        k.neigh_add(OVERLAY_SD, SD_OVERLAY_MAC)
        toml = kernel_pipeline(tmp_path, k)
        dpu = _warm(tmp_path, toml)
        assert k.neighbour(k.peer_ip) is None
        asked = k.capture(lambda: k.ping(OVERLAY_SD, count=1), timeout=3, count=1,
                          keep=is_question(k, k.peer_ip), keep_noise=True)
        assert len(asked) == 1, "the kernel did not ask for softdpu's VTEP"
        q = Ether(asked[0])
        if family == 4:                  # what the kernel asks with
            assert (q.dst, q[ARP].hwsrc, q[ARP].psrc) == (BCAST, k.underlay_mac, k.local_ip)
        else:
            group, gmac = nsma(k.peer_ip)
            assert (q.dst, q[IPv6].dst, q[IPv6].src, q[IPv6].hlim) == (gmac, group, k.local_ip, 255)
            assert q[ICMPv6NDOptSrcLLAddr].lladdr == k.underlay_mac
        # byte for byte what softdpu asks with in the kernel's place (tests above)
        assert asked[0] == (expected_arp_request(k.peer_ip, spa=k.local_ip, my_mac=k.underlay_mac) if family == 4
                            else expected_ns(k.peer_ip, src=k.local_ip, my_mac=k.underlay_mac))
        assert "INCOMPLETE" in k.neighbour(k.peer_ip)[1]
        _, stats, outs = run(tmp_path, toml, {"uplink": [(T0, asked[0])]}, out="answer", dpu=dpu)
        assert len(outs["uplink"]) == 1 and stats.drop_counts() == {}
        answer = outs["uplink"][0]
        a = Ether(answer)
        assert a.dst == k.underlay_mac and a.src == SD_UL_MAC
        # the kernel takes the answer and sends the echo request it held back, to softdpu's MAC
        released = k.inject_and_capture([answer], timeout=2, count=1, keep=k.is_vxlan)
        mac, state = k.neighbour(k.peer_ip)
        assert mac == SD_UL_MAC and ("REACHABLE" in state or "STALE" in state), state
        assert len(released) == 1 and Ether(released[0]).dst == SD_UL_MAC
        nxt = k.capture(lambda: k.ping(OVERLAY_SD, count=2), timeout=3, count=2, keep=k.is_vxlan)
        assert len(nxt) == 2 and all(Ether(f).dst == SD_UL_MAC and Ether(f).src == k.underlay_mac for f in nxt)
        assert not k.capture(timeout=0.3, keep=is_question(k, k.peer_ip), keep_noise=True)
        # and softdpu decapsulates them: the kernel's echo requests leave `local`
        _, stats, outs = run(tmp_path, toml, {"uplink": [(T0 + SEC, nxt[0]), (T0 + SEC + MS, nxt[1])]},
                             out="decap", dpu=dpu)
        assert len(outs["local"]) == 2 and all(ICMP in Ether(f) and Ether(f)[ICMP].type == 8 for f in outs["local"])


@pytest.mark.parametrize("family", [4, 6])
def test_softdpu_learns_kernel_mac(tmp_path, kernel, family):
    with KernelVtep("sdnb", family=family, vni=VNI, overlay_ip=f"{OVERLAY_K}/24", underlay_neigh=False) as k:
        k.neigh_add(OVERLAY_SD, SD_OVERLAY_MAC)
        toml = kernel_pipeline(tmp_path, k)
        dpu = Dpu.load(toml)
        _, stats, outs = run(tmp_path, toml, {"local": [(T0, kernel_echo(k, 1))]}, out="ask", dpu=dpu)
        assert stats.drop_counts() == {"tunnel_no_neighbor": 1}
        assert outs["uplink"] == [expected_arp_request(k.local_ip, spa=k.peer_ip, my_mac=SD_UL_MAC) if family == 4
                                  else expected_ns(k.local_ip, src=k.peer_ip, my_mac=SD_UL_MAC)]
        answers = k.inject_and_capture(outs["uplink"], timeout=3, count=1, keep=is_answer, keep_noise=True)
        assert len(answers) == 1, "the kernel did not answer softdpu's request"
        a = Ether(answers[0])
        assert a.dst == SD_UL_MAC and a.src == k.underlay_mac
        if family == 4:
            assert (a[ARP].hwsrc, a[ARP].psrc, a[ARP].hwdst, a[ARP].pdst) == (k.underlay_mac, k.local_ip,
                                                                              SD_UL_MAC, k.peer_ip)
        else:
            assert a[IPv6].dst == k.peer_ip and a[ICMPv6ND_NA].tgt == k.local_ip and a[ICMPv6ND_NA].S == 1
            assert a[ICMPv6NDOptDstLLAddr].lladdr == k.underlay_mac
        # the kernel learned softdpu's MAC from the request itself (not confirmed: STALE)
        mac, state = k.neighbour(k.peer_ip)
        assert mac == SD_UL_MAC and ("STALE" in state or "DELAY" in state), state
        _, stats, outs = run(tmp_path, toml, {"uplink": [(T0 + SEC, answers[0])],
                                              "local": [(T0 + 2 * SEC, kernel_echo(k, 2))]}, out="send", dpu=dpu)
        assert stats.drop_counts() == {"tunnel_no_neighbor": 1, "vtep_consumed": 1}    # the Dpu's totals
        assert len(outs["uplink"]) == 1
        vx = outs["uplink"][0]
        assert Ether(vx).dst == k.underlay_mac
        replies = k.inject_and_capture(outs["uplink"], timeout=3, count=1, keep=k.is_vxlan)
        assert len(replies) == 1 and Ether(replies[0]).dst == SD_UL_MAC
        _, stats, outs = run(tmp_path, toml, {"uplink": [(T0 + 3 * SEC, replies[0])]}, out="back", dpu=dpu)
        back = [Ether(f) for f in outs["local"]]
        assert len(back) == 1 and back[0][ICMP].type == 0 and back[0][ICMP].seq == 2
        assert back[0][IP].src == OVERLAY_K and back[0][IP].dst == OVERLAY_SD


def test_kernel_dad_sees_softdpu_advert(tmp_path, kernel):
    """The kernel adds softdpu's VTEP address to its underlay with duplicate address detection
    on: softdpu's answer to the DAD probe (from ::) makes it fail (IFA_F_DADFAILED).  The advert
    must be multicast with S clear: Linux ignores a multicast advert with S set."""
    with KernelVtep("sdnb", family=6, vni=VNI, overlay_ip=f"{OVERLAY_K}/24") as k:
        toml = kernel_pipeline(tmp_path, k)
        dpu = _warm(tmp_path, toml)
        u0 = k.K_UNDERLAY
        k.sysctl([(f"ipv6/conf/{u0}/accept_dad", 1), (f"ipv6/conf/{u0}/dad_transmits", 1),
                  (f"ipv6/neigh/{u0}/retrans_time_ms", 5000)])
        probes = k.capture(lambda: k.addr_add(k.peer_ip, 64, nodad=False), timeout=3, count=1,
                           keep=is_question(k, k.peer_ip), keep_noise=True)
        assert len(probes) == 1
        p = Ether(probes[0])
        assert p[IPv6].src == "::" and ICMPv6NDOptSrcLLAddr not in p
        assert k.addr_flags(k.peer_ip) & kernel_vxlan.IFA_F_TENTATIVE
        _, _, outs = run(tmp_path, toml, {"uplink": [(T0, probes[0])]}, out="dad", dpu=dpu)
        assert len(outs["uplink"]) == 1
        k.inject(outs["uplink"])
        deadline = time.monotonic() + 2
        while not (k.addr_flags(k.peer_ip) & kernel_vxlan.IFA_F_DADFAILED) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert k.addr_flags(k.peer_ip) & kernel_vxlan.IFA_F_DADFAILED, hex(k.addr_flags(k.peer_ip))


def test_kernel_ignores_gratuitous_arp_for_its_address(tmp_path, kernel):
    """The oracle for not answering a gratuitous ARP that claims the VTEP address: Linux does not
    answer one that claims its own address (arp_process: the route check of a local source
    fails), while it answers an ordinary request for it; neither changes its neighbour table."""
    with KernelVtep("sdnb", family=4, vni=VNI, overlay_ip=f"{OVERLAY_K}/24") as k:
        claim = arp(1, LEARNED2, k.local_ip, k.local_ip)
        assert k.inject_and_capture([claim], timeout=1, keep=is_answer) == []
        assert k.neighbour(k.local_ip) is None
        asked = arp(1, LEARNED2, "192.0.2.77", k.local_ip)
        answers = k.inject_and_capture([asked], timeout=2, count=1, keep=is_answer)
        assert len(answers) == 1 and Ether(answers[0])[ARP].pdst == "192.0.2.77"
        # byte for byte what softdpu sends in the kernel's place (tests above)
        assert answers[0] == expected_reply(LEARNED2, "192.0.2.77", my_ip=k.local_ip, my_mac=k.underlay_mac)


def test_kernel_discards_invalid_solicitations(tmp_path, kernel):
    """The oracle for the ND validity checks softdpu applies: Linux answers a solicitation for
    its underlay address, but not one with a bad ICMPv6 checksum, an ICMPv6 code other than 0
    or a hop limit under 255 (RFC 4861 7.1.1)."""
    with KernelVtep("sdnb", family=6, vni=VNI, overlay_ip=f"{OVERLAY_K}/24") as k:
        good = ns("2001:db8::77", k.local_ip, LEARNED6)
        for frame in (bad_checksum(good), spoil(good, code=1), ns("2001:db8::77", k.local_ip, LEARNED6, hlim=64)):
            assert k.inject_and_capture([frame], timeout=1, keep=is_answer, keep_noise=True) == []
        answers = k.inject_and_capture([good], timeout=2, count=1, keep=is_answer, keep_noise=True)
        assert len(answers) == 1
        a = Ether(answers[0])
        assert a[IPv6].dst == "2001:db8::77" and a[ICMPv6ND_NA].S == 1 and a[ICMPv6ND_NA].O == 1
        assert a[ICMPv6NDOptDstLLAddr].lladdr == k.underlay_mac and icmp6_checksum_ok(answers[0])
        # byte for byte what softdpu sends in the kernel's place (tests above)
        assert answers[0] == expected_na(k.local_ip, "2001:db8::77", LEARNED6, my_mac=k.underlay_mac)
