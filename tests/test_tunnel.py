"""VXLAN and Geneve tunnel ports end to end: pipelines written to tmp_path, captures run
through Dpu.run_pcaps, outputs checked against independent oracles — the expected outer
frame is built with scapy's Ether/IP/IPv6/UDP/VXLAN/GENEVE layers (scapy computes lengths
and checksums) and compared byte for byte, and tshark dissects every output with checksum
validation on and must find nothing malformed.  Decapsulation is fed frames scapy built;
every drop is counted under its reason; pipeline-file errors name file:line:key.
"""
import subprocess

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from conftest import need_tool
from ovs_oracle import read_pcap
from softdpu import config
from softdpu.errors import ConfigError
from softdpu.pipeline import Dpu
from test_config import check
from test_trace import write_capture

UL_MAC = "02:00:00:00:00:04"
LOCAL4, R2, R3, R9 = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.9"
LOCAL6, R6, R7 = "2001:db8::1", "2001:db8::2", "2001:db8::7"
MAC2, MAC3, MAC6 = "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:00:06"
NEIGHBORS = {R2: MAC2, R3: MAC3, R6: MAC6}
UNDERLAY = 4                          # ofport of "uplink"
DEFAULT_PORT = {"vxlan": 4789, "geneve": 6081}


# -- helpers ------------------------------------------------------------------------

def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def pipeline(tmp_path, flows, tunnels, neighbors=NEIGHBORS, mtu=None, batch=8, local=LOCAL4, mac=UL_MAC):
    """p1..p3 (pcap, ofports 1..3), uplink (pcap, ofport 4, the underlay) and the tunnel ports
    {name: {type, ofport, options...}} on uplink; [[neighbor]] tables for `neighbors`."""
    (tmp_path / "t.flows").write_text(flows)
    lines = ["[pipeline]", 'name = "t"', 'flows = "t.flows"', f"batch = {batch}"]
    for p in (1, 2, 3):
        lines += ["[[port]]", f'name = "p{p}"', f"ofport = {p}", 'type = "pcap"']
    lines += ["[[port]]", 'name = "uplink"', f"ofport = {UNDERLAY}", 'type = "pcap"', f'mac = "{UL_MAC}"']
    if mtu is not None:
        lines.append(f"mtu = {mtu}")
    for name, opts in tunnels.items():
        opts = {"underlay": "uplink", "local_ip": local, **opts}
        lines += ["[[port]]", f'name = "{name}"'] + [f"{k} = {_value(v)}" for k, v in opts.items()]
    for ip, mac in neighbors.items():
        lines += ["[[neighbor]]", f'ip = "{ip}"', f'mac = "{mac}"']
    (tmp_path / "t.toml").write_text("\n".join(lines) + "\n")
    return tmp_path / "t.toml"


def run(tmp_path, path, inputs, out="out"):
    """Run {port name: [frames]} through the pipeline -> (dpu, stats, {port name: [frames out]})."""
    dpu = Dpu.load(path)
    caps = {name: write_capture(tmp_path / f"in-{out}-{name}.pcap", frames) for name, frames in inputs.items()}
    stats = dpu.run_pcaps(inputs=caps, out_dir=tmp_path / out)
    outs = {name: read_pcap(f) for name, f in dpu.outputs.items()}
    assert stats.rx == stats.left + stats.dropped
    return dpu, stats, outs


def inner_udp(sport=1234, dport=80, tos=0, src="10.0.0.1", dst="10.0.0.2", payload=b"hello tunnel",
              smac="02:00:00:00:01:01", dmac="02:00:00:00:01:02"):
    return bytes(Ether(src=smac, dst=dmac) / IP(src=src, dst=dst, tos=tos, id=7) /
                 UDP(sport=sport, dport=dport) / payload)


def inner_tcp6(tc=0):
    return bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") /
                 IPv6(src="fd00::1", dst="fd00::2", tc=tc) / TCP(sport=4000, dport=443, flags="S") / (b"x" * 30))


def inner_vlan(tos=0):
    return bytes(Ether(src="02:00:00:00:01:01", dst="02:00:00:00:01:02") / Dot1Q(vlan=42, prio=3) /
                 IP(src="10.0.0.1", dst="10.0.0.2", tos=tos) / UDP(sport=7, dport=8) / b"tagged")


def inner_arp():
    return bytes(Ether(src="02:00:00:00:01:01", dst="ff:ff:ff:ff:ff:ff") /
                 ARP(op=1, hwsrc="02:00:00:00:01:01", psrc="10.0.0.1", pdst="10.0.0.2"))


def tunnel_header(kind, vni):
    return VXLAN(vni=vni, flags=8, NextProtocol=0) if kind == "vxlan" else GENEVE(vni=vni, proto=0x6558)


def outer(kind, inner, vni, src=R2, dst=LOCAL4, sport=50000, dport=None, tos=0, csum=False,
          smac=MAC2, dmac=UL_MAC, header=None):
    """A tunnel packet as a peer would send it (IPv4 or IPv6 by the addresses)."""
    dport = dport or DEFAULT_PORT[kind]
    l3 = IP(src=src, dst=dst, tos=tos, flags="DF") if ":" not in src else IPv6(src=src, dst=dst, tc=tos)
    u = UDP(sport=sport, dport=dport)
    if not csum:
        u.chksum = 0
    return bytes(Ether(src=smac, dst=dmac) / l3 / u / (header if header is not None else tunnel_header(kind, vni))
                 / Raw(inner))


def expected_encap(kind, inner, vni, sport, remote=R2, remote_mac=MAC2, tos=0, ttl=64, df=True,
                   dport=None, csum=None):
    """What an encapsulated copy must be, built by scapy (its lengths and checksums)."""
    six = ":" in remote
    if csum is None:
        csum = six
    if six:
        l3 = IPv6(src=LOCAL6, dst=remote, tc=tos, fl=0, hlim=ttl)
    else:
        l3 = IP(src=LOCAL4, dst=remote, tos=tos, id=0, flags="DF" if df else 0, ttl=ttl)
    u = UDP(sport=sport, dport=dport or DEFAULT_PORT[kind])
    if not csum:
        u.chksum = 0
    return bytes(Ether(dst=remote_mac, src=UL_MAC) / l3 / u / tunnel_header(kind, vni) / Raw(inner))


def outer_sport(frame):
    """The UDP source port of an encapsulated frame (IPv4 or IPv6 outer)."""
    l4 = 14 + (20 if frame[12:14] == b"\x08\x00" else 40)
    return int.from_bytes(frame[l4:l4 + 2], "big")


def tshark_clean(path, decode_as=(), expect=None, zero_udp6=False):
    """tshark dissects every frame with checksum validation on: nothing malformed, no expert
    error, and (expect) each frame decoded as the tunnel protocol with good checksums.
    zero_udp6: an outer UDP checksum 0 over IPv6 is expected (RFC 6935 allows it for
    tunnels; tshark calls it illegal), so that one error is let through."""
    tshark = need_tool("tshark")
    base = [tshark, "-n", "-r", str(path), "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
            "-o", "tcp.check_checksum:TRUE"]
    for d in decode_as:
        base += ["-d", d]
    errors = '_ws.expert.severity >= "error"'
    if zero_udp6:
        errors = f"({errors} && !(ipv6 && udp.checksum == 0))"
    bad = subprocess.run(base + ["-Y", f"_ws.malformed || {errors}"],
                         capture_output=True, text=True, check=True).stdout
    assert bad.strip() == "", bad
    fields = subprocess.run(base + ["-T", "fields", "-E", "separator=|", "-e", "vxlan.vni", "-e", "geneve.vni",
                                    "-e", "ip.checksum.status", "-e", "udp.checksum.status"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|") for line in fields]
    if expect is not None:
        kind, vnis = expect
        assert len(rows) == len(vnis)
        col = 0 if kind == "vxlan" else 1
        for row, vni in zip(rows, vnis):
            assert int(row[col].split(",")[0], 0) == vni, row
            for status in row[2].split(",") + row[3].split(","):
                assert status in ("", "1", "3") or zero_udp6 and status == "4", row   # 1 good, 3 not present (0); 0 bad, 4 illegal
    return rows


def inner_tos(frame):
    """The TOS / traffic class of an inner frame as scapy dissects it (past VLAN tags), 0 if not IP."""
    pkt = Ether(frame)
    if IP in pkt:
        return pkt[IP].tos
    if IPv6 in pkt:
        return pkt[IPv6].tc
    return 0


def ecn_out(tos):
    """RFC 6040 normal mode: the outer ECN copies the inner one, CE sent as ECT(0)."""
    return 2 if tos & 3 == 3 else tos & 3


def summary(stats, name):
    return next(line for line in stats.table() if line.startswith(f"tunnel {name} "))


MIXED = ([inner_udp(tos=0xB8 | e, sport=100 + e) for e in range(4)] +
         [inner_tcp6(tc=0x20 | e) for e in range(4)] + [inner_vlan(tos=0x61), inner_arp()])


# -- 1. encapsulation ------------------------------------------------------------------

VARIANTS = {
    "defaults": {},
    "custom": dict(tos=0x28, ttl=17, df_default=False, dst_port=8472, csum="flip"),
    "inherit": dict(tos="inherit"),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_encap_every_outer_field(tmp_path, kind, family, variant):
    opts = dict(VARIANTS[variant])
    csum = family == 6
    if opts.get("csum") == "flip":
        csum = opts["csum"] = not csum
    vni = 5000 if kind == "vxlan" else 0xABCDEF
    remote, local, rmac = (R2, LOCAL4, MAC2) if family == 4 else (R6, LOCAL6, MAC6)
    tun = dict(type=kind, ofport=10, remote_ip=remote, key=vni, **opts)
    path = pipeline(tmp_path, "in_port=1,actions=output:10\n", {"t": tun}, local=local)
    dpu, stats, outs = run(tmp_path, path, {"p1": MIXED})
    got = outs["uplink"]
    assert len(got) == len(MIXED) and stats.dropped == 0
    dport = opts.get("dst_port", DEFAULT_PORT[kind])
    for inner, frame in zip(MIXED, got):
        sport = outer_sport(frame)
        assert 49152 <= sport <= 65535
        tos = inner_tos(inner) if opts.get("tos") == "inherit" else opts.get("tos", 0)
        tos = (tos & 0xFC) | ecn_out(inner_tos(inner))
        want = expected_encap(kind, inner, vni, sport, remote=remote, remote_mac=rmac, tos=tos,
                              ttl=opts.get("ttl", 64), df=opts.get("df_default", True), dport=dport, csum=csum)
        assert frame == want, f"{Ether(frame)!r}\n{Ether(want)!r}"
        # the same facts spelled out, from scapy's dissection of what softdpu sent
        pkt = Ether(frame)
        assert (pkt.dst, pkt.src) == (rmac, UL_MAC)
        if family == 4:
            ip = pkt[IP]
            assert (ip.src, ip.dst, ip.id, ip.ttl, ip.proto, ip.tos) == (LOCAL4, R2, 0, opts.get("ttl", 64), 17, tos)
            assert ip.flags == ("DF" if opts.get("df_default", True) else 0) and ip.frag == 0
            chk = ip.chksum
            del ip.chksum
            assert IP(bytes(ip)).chksum == chk
        else:
            ip6 = pkt[IPv6]
            assert (ip6.src, ip6.dst, ip6.tc, ip6.fl, ip6.hlim, ip6.nh) == (LOCAL6, R6, tos, 0, opts.get("ttl", 64), 17)
        l4 = 14 + (20 if family == 4 else 40)
        assert int.from_bytes(frame[l4 + 2:l4 + 4], "big") == dport
        assert int.from_bytes(frame[l4 + 4:l4 + 6], "big") == 16 + len(inner)
        assert (int.from_bytes(frame[l4 + 6:l4 + 8], "big") != 0) == csum
        h = frame[l4 + 8:l4 + 16]
        if kind == "vxlan":
            assert h == b"\x08\x00\x00\x00" + vni.to_bytes(3, "big") + b"\x00"
        else:
            assert h == b"\x00\x00\x65\x58" + vni.to_bytes(3, "big") + b"\x00"
        assert frame[l4 + 16:] == inner
    decode = [f"udp.port=={dport},{kind}"] if dport != DEFAULT_PORT[kind] else []
    tshark_clean(dpu.outputs["uplink"], decode, expect=(kind, [vni] * len(MIXED)), zero_udp6=family == 6 and not csum)
    assert stats.port("uplink")["tx_packets"] == len(MIXED)
    assert stats.port("uplink")["tx_bytes"] == sum(map(len, got))
    assert summary(stats, "t").endswith(f"tx {len(MIXED)} packets {sum(map(len, got))} bytes (not sent 0)")


def _reverse(frame):
    pkt = Ether(frame)
    pkt.src, pkt.dst = pkt.dst, pkt.src
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    ip.src, ip.dst = ip.dst, ip.src
    l4 = pkt[UDP] if UDP in pkt else pkt[TCP]
    l4.sport, l4.dport = l4.dport, l4.sport
    if IP in pkt:
        del pkt[IP].chksum
    del l4.chksum
    return bytes(pkt)


@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_source_port_same_both_ways_of_a_flow_differs_across_flows(tmp_path, kind):
    flows_fwd = [inner_udp(sport=1000 + k, dport=53) for k in range(32)] + \
                [bytes(Ether() / IPv6(src="fd00::1", dst=f"fd00::{k + 2:x}") / TCP(sport=5000, dport=80))
                 for k in range(8)]
    frames = [f for fwd in flows_fwd for f in (fwd, _reverse(fwd))]
    path = pipeline(tmp_path, "actions=output:10\n", {"t": dict(type=kind, ofport=10, remote_ip=R2, key=1)})
    _, stats, outs = run(tmp_path, path, {"p1": frames})
    sports = [outer_sport(f) for f in outs["uplink"]]
    assert len(sports) == len(frames)
    assert all(49152 <= s <= 65535 for s in sports)
    assert sports[0::2] == sports[1::2]                  # both directions of each flow
    assert len(set(sports[0::2])) >= 36                  # 40 flows: a few collisions at most
    # the same inner flow gets the same port every time
    _, _, again = run(tmp_path, path, {"p1": frames[:4]}, out="again")
    assert [outer_sport(f) for f in again["uplink"]] == sports[:4]


# -- 2. decapsulation ------------------------------------------------------------------

INNERS = [inner_udp(), inner_tcp6(), inner_vlan(), inner_arp(), inner_udp(payload=b"z" * 1000)]


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_decap_inner_frame_tunnel_fields_and_what_is_not_taken(tmp_path, kind, family):
    remote, local, other, elsewhere = ((R2, LOCAL4, R9, "192.0.2.50") if family == 4
                                       else (R6, LOCAL6, R7, "2001:db8::50"))
    match = f"tun_id=5000,tun_src={R2},tun_dst={LOCAL4}" if family == 4 else "tun_id=5000"
    flows = (f"priority=20,in_port=10,{match},actions=output:1\n"
             "priority=10,in_port=10,actions=output:3\n"          # taken, but the tunnel fields wrong
             "priority=5,in_port=4,actions=output:2\n"            # ordinary packets of the underlay
             "priority=5,in_port=1,actions=output:3\n")
    path = pipeline(tmp_path, flows, {"t": dict(type=kind, ofport=10, remote_ip=remote, key=5000)}, local=local)
    csum = family == 6
    taken = [outer(kind, f, 5000, src=remote, dst=local, sport=50000 + k, csum=csum and k % 2 == 0)
             for k, f in enumerate(INNERS)]
    dport = DEFAULT_PORT[kind]
    not_taken = [outer(kind, INNERS[0], 5001, src=remote, dst=local),            # another VNI
                 outer(kind, INNERS[0], 5000, src=remote, dst=local, dport=dport + 1),
                 outer(kind, INNERS[0], 5000, src=other, dst=local),             # another remote
                 outer(kind, INNERS[0], 5000, src=remote, dst=elsewhere)]        # not our VTEP
    wrong_port = outer(kind, INNERS[0], 5000, src=remote, dst=local)           # not on the underlay
    frames = [x for pair in zip(taken, not_taken + [None] * 5) for x in pair if x is not None]
    _, stats, outs = run(tmp_path, path, {"uplink": frames, "p1": [wrong_port]})
    assert outs["p1"] == INNERS                          # byte for byte, tun_id/tun_src/tun_dst matched
    assert outs["p2"] == not_taken                       # untouched, as ordinary UDP of in_port 4
    assert outs["p3"] == [wrong_port]
    assert stats.dropped == 0
    up = stats.port("uplink")
    assert (up["rx_packets"], up["rx_bytes"]) == (len(frames), sum(map(len, frames)))
    assert summary(stats, "t") == (f"tunnel t ({kind}, ofport 10): rx {len(INNERS)} packets "
                                   f"{sum(map(len, INNERS))} bytes (dropped 0), tx 0 packets 0 bytes (not sent 0)")


def test_decap_flow_based_tunnel_takes_any_remote_and_key(tmp_path):
    flows = (f"in_port=11,tun_id=1,tun_src={R2},tun_dst={LOCAL4},actions=output:1\n"
             f"in_port=11,tun_id=2,tun_src={R3},actions=output:2\n"
             f"in_port=11,tun_id=0xffffff,tun_src={R9},actions=output:3\n"
             "in_port=4,actions=drop\n")
    path = pipeline(tmp_path, flows, {"f": dict(type="vxlan", ofport=11, remote_ip="flow", key="flow")})
    a, b, c = inner_udp(sport=1), inner_udp(sport=2), inner_udp(sport=3)
    frames = [outer("vxlan", a, 1, src=R2), outer("vxlan", b, 2, src=R3), outer("vxlan", c, 0xFFFFFF, src=R9),
              outer("vxlan", a, 1, src=R2, dst=R3)]       # not to our VTEP: not taken
    _, stats, outs = run(tmp_path, path, {"uplink": frames})
    assert (outs["p1"], outs["p2"], outs["p3"]) == ([a], [b], [c])
    assert stats.drop_counts() == {"action_drop": 1}


def test_decap_fixed_key_then_fixed_remote_first_as_ovs(tmp_path):
    """Open vSwitch's tnl_find (ofproto/tunnel.c) looks for a port with a fixed key first, then
    among those with a fixed remote_ip before remote_ip=flow; then the key=flow ports the same way."""
    tunnels = {"a": dict(type="vxlan", ofport=10, remote_ip=R2, key="flow"),
               "b": dict(type="vxlan", ofport=11, remote_ip="flow", key="flow"),
               "c": dict(type="vxlan", ofport=12, remote_ip="flow", key=7),
               "d": dict(type="vxlan", ofport=13, remote_ip=R2, key=7)}
    flows = "in_port=10,actions=output:1\nin_port=11,actions=output:2\nin_port=12,actions=output:3\n" \
            "in_port=13,actions=output:4\n"
    cases = [(R2, 5, "p1"), (R3, 5, "p2"), (R3, 7, "p3"), (R2, 7, "uplink")]
    inners = [inner_udp(sport=k + 1) for k in range(len(cases))]
    frames = [outer("vxlan", f, vni, src=src) for f, (src, vni, _) in zip(inners, cases)]
    _, _, outs = run(tmp_path, pipeline(tmp_path, flows, tunnels), {"uplink": frames})
    for f, (_, _, port) in zip(inners, cases):
        assert f in outs[port], port
    del tunnels["d"]                                     # no exact port: the fixed key wins
    _, _, outs = run(tmp_path, pipeline(tmp_path, flows, tunnels), {"uplink": frames[3:]}, out="no-d")
    assert outs["p3"] == [inners[3]] and outs["p1"] == []


def geneve_raw(vni, options=b"", version=0, proto=0x6558, optlen=None):
    """A Geneve header built by hand (options as raw TLV bytes)."""
    optlen = len(options) // 4 if optlen is None else optlen
    return Raw(bytes([(version << 6) | optlen, 0]) + proto.to_bytes(2, "big") + vni.to_bytes(3, "big") + b"\0"
               + options)


def _bad_ip_checksum(frame):
    f = bytearray(frame)
    f[24] ^= 0x01
    return bytes(f)


def _corrupt_payload(frame):
    f = bytearray(frame)
    f[-1] ^= 0xFF
    return bytes(f)


INNER = inner_udp()
CRITICAL = bytes.fromhex("0102" "80" "01") + b"\0\0\0\0"      # class 0x0102, type 0x80 (critical), 4 bytes
PLAIN_OPT = bytes.fromhex("0102" "01" "01") + b"\0\0\0\1"     # the same, not critical

DROPS = {
    "ipv4-header-checksum": (_bad_ip_checksum(outer("vxlan", INNER, 5000)), "tunnel_bad_checksum"),
    "udp-checksum-v4": (_corrupt_payload(outer("vxlan", INNER, 5000, csum=True)), "tunnel_bad_checksum"),
    "udp-checksum-v6": (_corrupt_payload(outer("geneve", INNER, 5000, src=R6, dst=LOCAL6, csum=True)),
                        "tunnel_bad_checksum"),
    "vxlan-no-i-flag": (outer("vxlan", INNER, 5000, header=VXLAN(vni=5000, flags=0, NextProtocol=0)),
                        "tunnel_bad_header"),
    "geneve-version-1": (outer("geneve", INNER, 5000, header=geneve_raw(5000, version=1)), "tunnel_bad_header"),
    "geneve-protocol-ipv4": (outer("geneve", INNER, 5000, header=geneve_raw(5000, proto=0x0800)),
                             "tunnel_bad_header"),
    "geneve-options-past-packet": (outer("geneve", b"", 5000, header=geneve_raw(5000, optlen=63)),
                                   "tunnel_bad_header"),
    "geneve-option-past-options": (outer("geneve", INNER, 5000, header=geneve_raw(
        5000, bytes.fromhex("0102" "01" "03") + b"\0\0\0\0")), "tunnel_bad_header"),
    "geneve-critical-option": (outer("geneve", INNER, 5000, header=geneve_raw(5000, CRITICAL)),
                               "tunnel_critical_option"),
    "vxlan-inner-13-bytes": (outer("vxlan", INNER[:13], 5000), "tunnel_bad_header"),
    "geneve-inner-0-bytes": (outer("geneve", b"", 5000), "tunnel_bad_header"),
    "ecn-ce-not-ect-v4": (outer("vxlan", inner_udp(tos=0xB8), 5000, tos=3), "tunnel_ecn"),
    "ecn-ce-not-ect-v6": (outer("geneve", inner_tcp6(tc=0x20), 5000, src=R6, dst=LOCAL6, tos=3), "tunnel_ecn"),
}
TUNNELS = {"vx": dict(type="vxlan", ofport=10, remote_ip=R2, key=5000),
           "gn": dict(type="geneve", ofport=20, remote_ip=R2, key=5000),
           "gn6": dict(type="geneve", ofport=30, remote_ip=R6, key=5000, local_ip=LOCAL6)}
TUNNEL_OF_PORT = {10: "vx", 20: "gn", 30: "gn6"}
DECAP_FLOWS = "in_port=10,actions=output:1\nin_port=20,actions=output:1\nin_port=30,actions=output:1\n" \
              "in_port=4,actions=output:2\n"


@pytest.mark.parametrize("case", DROPS)
def test_decap_drops_are_counted(tmp_path, case):
    frame, reason = DROPS[case]
    _, stats, outs = run(tmp_path, pipeline(tmp_path, DECAP_FLOWS, TUNNELS), {"uplink": [frame]})
    assert stats.drop_counts() == {reason: 1}
    assert outs["p1"] == outs["p2"] == []
    assert stats.port("uplink")["rx_packets"] == 1
    name = "gn6" if ":" in str(Ether(frame)[1].src) else ("vx" if "vxlan" in case or b"\x12\xb5" == frame[36:38]
                                                           else "gn")
    assert "(dropped 1)" in summary(stats, name), stats.table()


def test_decap_accepts_zero_udp_checksum_and_plain_geneve_options(tmp_path):
    frames = [outer("vxlan", INNER, 5000, csum=False), outer("vxlan", INNER, 5000, csum=True),
              outer("geneve", INNER, 5000, src=R6, dst=LOCAL6, csum=False),
              outer("geneve", INNER, 5000, header=geneve_raw(5000, PLAIN_OPT + PLAIN_OPT))]
    _, stats, outs = run(tmp_path, pipeline(tmp_path, DECAP_FLOWS, TUNNELS), {"uplink": frames})
    assert outs["p1"] == [INNER] * 4 and stats.dropped == 0


def _with_tos(frame, tos):
    pkt = Ether(frame)
    if IP in pkt:
        pkt[IP].tos = tos
        del pkt[IP].chksum
    else:
        pkt[IPv6].tc = tos
    return bytes(pkt)


@pytest.mark.parametrize("src, dst", [(R2, LOCAL4), (R6, LOCAL6)], ids=["outer-v4", "outer-v6"])
def test_decap_outer_ce_marks_an_ecn_capable_inner_packet(tmp_path, src, dst):
    inners = [inner_udp(tos=0xB8 | 2), inner_udp(tos=0xB8 | 1), inner_udp(tos=0xB8 | 3), inner_tcp6(tc=0x20 | 2),
              inner_vlan(tos=0x48 | 1), inner_arp()]
    want = [_with_tos(f, inner_tos(f) | 3) for f in inners[:5]] + [inners[5]]
    frames = [outer("geneve", f, 5000, src=src, dst=dst, tos=3) for f in inners]
    frames += [outer("geneve", inner_udp(tos=0xB8), 5000, src=src, dst=dst, tos=2)]   # ECT(0) outer: nothing
    _, stats, outs = run(tmp_path, pipeline(tmp_path, DECAP_FLOWS, TUNNELS), {"uplink": frames})
    assert outs["p1"] == want + [inner_udp(tos=0xB8)]
    for f in outs["p1"]:                                 # scapy's checksum of the marked header agrees
        pkt = Ether(f)
        if IP in pkt:
            chk = pkt[IP].chksum
            del pkt[IP].chksum
            assert Ether(bytes(pkt))[IP].chksum == chk
    assert stats.dropped == 0


# -- 3. flow-based tunnels -----------------------------------------------------------------

def test_flow_based_key_and_remote_from_the_flows(tmp_path):
    flows = (f"udp,tp_src=1,actions=set_field:5001->tun_id,set_field:{R3}->tun_dst,output:11\n"
             f"udp,tp_src=2,actions=set_tunnel:0x1234,set_field:{R2}->tun_dst,output:11\n"
             f"udp,tp_src=3,actions=set_field:7->tun_id,set_field:{R2}->tun_dst,output:11,"
             f"set_field:8->tun_id,set_field:{R3}->tun_dst,output:11\n"
             f"udp,tp_src=4,actions=set_field:9->tun_id,output:11\n"                  # no tun_dst
             f"udp,tp_src=5,actions=set_field:9->tun_id,set_field:{R9}->tun_dst,output:11\n"   # no neighbour
             f"udp,tp_src=6,actions=set_field:{R2}->tun_dst,output:11,output:12\n")   # VNI 0; fixed port 12
    tunnels = {"f": dict(type="vxlan", ofport=11, remote_ip="flow", key="flow"),
               "g": dict(type="geneve", ofport=12, remote_ip="flow", key=77)}
    frames = [inner_udp(sport=k) for k in range(1, 7)]
    dpu, stats, outs = run(tmp_path, pipeline(tmp_path, flows, tunnels), {"p1": frames})
    got = outs["uplink"]
    want = [("vxlan", frames[0], 5001, R3, MAC3), ("vxlan", frames[1], 0x1234, R2, MAC2),
            ("vxlan", frames[2], 7, R2, MAC2), ("vxlan", frames[2], 8, R3, MAC3),
            ("vxlan", frames[5], 0, R2, MAC2), ("geneve", frames[5], 77, R2, MAC2)]
    assert len(got) == len(want)
    for frame, (kind, inner, vni, remote, mac) in zip(got, want):
        assert frame == expected_encap(kind, inner, vni, outer_sport(frame), remote=remote, remote_mac=mac)
    assert stats.drop_counts() == {"tunnel_no_remote": 1, "tunnel_no_neighbor": 1}
    assert summary(stats, "f").endswith("(not sent 2)")
    tshark_clean(dpu.outputs["uplink"])


def test_decapsulated_vni_goes_on_to_a_key_flow_tunnel(tmp_path):
    """A packet from a tunnel keeps its tun_id into the flows; a key=flow output uses it."""
    tunnels = {"in": dict(type="vxlan", ofport=10, remote_ip=R2, key="flow"),
               "out": dict(type="geneve", ofport=11, remote_ip=R3, key="flow")}
    inner = inner_udp()
    _, _, outs = run(tmp_path, pipeline(tmp_path, "in_port=10,actions=output:11\n", tunnels),
                     {"uplink": [outer("vxlan", inner, 4242)]})
    [frame] = outs["uplink"]
    assert frame == expected_encap("geneve", inner, 4242, outer_sport(frame), remote=R3, remote_mac=MAC3)


# -- 4. counted drops on output ------------------------------------------------------------

@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_mtu_boundary(tmp_path, kind, family):
    mtu = 600
    remote, local = (R2, LOCAL4) if family == 4 else (R6, LOCAL6)
    room = mtu - (20 if family == 4 else 40) - 8 - 8          # the largest inner frame
    base = len(inner_udp(payload=b""))
    fits, over = inner_udp(payload=b"f" * (room - base)), inner_udp(payload=b"o" * (room + 1 - base))
    assert (len(fits), len(over)) == (room, room + 1)
    path = pipeline(tmp_path, "in_port=1,actions=output:10\nin_port=2,actions=output:10,output:3\n",
                    {"t": dict(type=kind, ofport=10, remote_ip=remote, key=3)}, mtu=mtu, local=local)
    _, stats, outs = run(tmp_path, path, {"p1": [fits, over], "p2": [over]})
    assert len(outs["uplink"]) == 1
    frame = outs["uplink"][0]
    assert frame[14:] and len(frame) - 14 == mtu              # the outer IP packet is exactly mtu
    assert frame == expected_encap(kind, fits, 3, outer_sport(frame), remote=remote,
                                   remote_mac=MAC2 if family == 4 else MAC6)
    assert outs["p3"] == [over]                               # its other copy still goes
    assert stats.drop_counts() == {"tunnel_mtu": 1}           # only the packet with no way out
    assert (stats.rx, stats.left, stats.dropped) == (3, 2, 1)
    assert summary(stats, "t").endswith("(not sent 2)")


def test_no_neighbour_and_a_copy_that_still_leaves(tmp_path):
    flows = "in_port=1,actions=output:10\nin_port=2,actions=output:10,output:3\nin_port=3,actions=output:3\n"
    path = pipeline(tmp_path, flows, {"t": dict(type="vxlan", ofport=10, remote_ip=R9, key=3)})
    a, b = inner_udp(sport=1), inner_udp(sport=2)
    _, stats, outs = run(tmp_path, path, {"p1": [a, a], "p2": [b]})
    assert outs["uplink"] == [] and outs["p3"] == [b]
    assert stats.drop_counts() == {"tunnel_no_neighbor": 2}
    assert (stats.rx, stats.left, stats.dropped) == (3, 1, 2)


# -- 5. rows shared by several outputs -----------------------------------------------------

def test_one_packet_to_local_ports_and_tunnels(tmp_path):
    flows = ("udp,tp_src=1,actions=output:2,output:10\n"
             "udp,tp_src=2,actions=output:10,output:2\n"
             "udp,tp_src=3,actions=output:10,output:20\n"
             "udp,tp_src=4,actions=output:10,output:2,output:20,output:3\n"
             "udp,tp_src=5,actions=output:2,mod_dl_src:02:00:00:00:ee:ee,output:10,mod_nw_tos:32,output:20\n")
    tunnels = {"vx": dict(type="vxlan", ofport=10, remote_ip=R2, key=10),
               "gn": dict(type="geneve", ofport=20, remote_ip=R3, key=20)}
    frames = [inner_udp(sport=k) for k in range(1, 6)]
    dpu, stats, outs = run(tmp_path, pipeline(tmp_path, flows, tunnels), {"p1": frames})
    f1, f2, f3, f4, f5 = frames
    pkt = Ether(f5)
    pkt.src = "02:00:00:00:ee:ee"
    f5_mac = bytes(pkt)
    pkt[IP].tos = 32
    del pkt[IP].chksum
    del pkt[UDP].chksum
    f5_tos = bytes(Ether(bytes(pkt)))
    assert outs["p2"] == [f1, f2, f4, f5]                      # local copies not wrapped
    assert outs["p3"] == [f4]
    want = [("vxlan", f1), ("vxlan", f2), ("vxlan", f3), ("geneve", f3), ("vxlan", f4), ("geneve", f4),
            ("vxlan", f5_mac), ("geneve", f5_tos)]
    got = outs["uplink"]
    assert len(got) == len(want)
    for frame, (kind, inner) in zip(got, want):
        vni, remote, mac = (10, R2, MAC2) if kind == "vxlan" else (20, R3, MAC3)
        assert frame == expected_encap(kind, inner, vni, outer_sport(frame), remote=remote, remote_mac=mac)
    assert stats.dropped == 0 and stats.left == 5
    tshark_clean(dpu.outputs["uplink"])


# -- 6. round trip ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("kind", ["vxlan", "geneve"])
def test_round_trip_through_a_mirrored_pipeline(tmp_path, kind, family):
    """Our encapsulation fed to a peer built from the same code, mirrored, gives back the frames."""
    here, there = (LOCAL4, R2) if family == 4 else (LOCAL6, R6)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    frames = MIXED + [inner_udp(payload=b"j" * 1400)]
    a = pipeline(a_dir, "in_port=1,actions=output:10\n", {"t": dict(type=kind, ofport=10, remote_ip=there, key=99)},
                 local=here, neighbors={there: MAC2})
    _, _, a_out = run(a_dir, a, {"p1": frames})
    b = pipeline(b_dir, "in_port=10,tun_id=99,actions=output:1\n",
                 {"t": dict(type=kind, ofport=10, remote_ip=here, key=99)},
                 local=there, neighbors={here: UL_MAC}, mac=MAC2)
    _, stats, b_out = run(b_dir, b, {"uplink": a_out["uplink"]})
    assert b_out["p1"] == frames
    assert stats.dropped == 0


# -- 7. pipeline-file errors -------------------------------------------------------------------

HEAD = '[pipeline]\nflows = "p.flows"\n'                                                      # lines 1-2
UPLINK = '[[port]]\nname = "uplink"\nofport = 4\ntype = "pcap"\nmac = "02:00:00:00:00:04"\n'  # lines 3-7
VX = ('[[port]]\nname = "vx"\nofport = 10\ntype = "vxlan"\nunderlay = "uplink"\n'           # lines 8-12
      'local_ip = "192.0.2.1"\nremote_ip = "192.0.2.2"\n')                                    # lines 13-14
NEIGH = '[[neighbor]]\nip = "192.0.2.2"\nmac = "02:00:00:00:00:02"\n'                          # 3 lines


def load_error(tmp_path, text):
    (tmp_path / "p.flows").write_text("actions=drop\n")
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    return path, info.value


def _without(text, key):
    return "".join(line + "\n" for line in text.splitlines() if not line.startswith(f"{key} ="))


def _set(text, key, value):
    return "".join((f"{key} = {value}" if line.startswith(f"{key} =") else line) + "\n" for line in text.splitlines())


def test_a_good_tunnel_file_loads(tmp_path):
    (tmp_path / "p.flows").write_text("actions=drop\n")
    (tmp_path / "p.toml").write_text(HEAD + UPLINK + VX + NEIGH)
    cfg = config.load(tmp_path / "p.toml")
    vx = cfg.ports[1].options
    assert (vx["key"], vx["dst_port"], vx["ttl"], vx["tos"], vx["df_default"], vx["csum"]) == (0, 4789, 64, 0, True,
                                                                                              False)
    assert cfg.ports[0].options["mtu"] == 1500
    assert len(cfg.neighbors) == 1


@pytest.mark.parametrize("key", ["underlay", "local_ip", "remote_ip"])
def test_missing_required_tunnel_key(tmp_path, key):
    path, err = load_error(tmp_path, HEAD + UPLINK + _without(VX, key))
    check(err, path, 8, f"port[1].{key}", "missing", "expected")


TUNNEL_ERRORS = {
    # name: (text, line, key, words in the message)
    "underlay-unknown": (HEAD + UPLINK + _set(VX, "underlay", '"nope"'), 12, "port[1].underlay",
                         "no port named 'nope'", "uplink, vx"),
    "underlay-is-a-tunnel": (HEAD + UPLINK + VX + _set(_set(_set(VX, "name", '"vy"'), "ofport", "11"),
                                                       "underlay", '"vx"'), 19, "port[2].underlay",
                             "'vx' is a tunnel port"),
    "underlay-without-mac": (HEAD + _without(UPLINK, "mac") + VX, 3, "port[0].mac", "carries tunnel 'vx'",
                             "MAC address"),
    "bad-mac": (HEAD + _set(UPLINK, "mac", '"02:00:00:00:00"') + VX, 7, "port[0].mac", "MAC address",
                "'02:00:00:00:00'"),
    "mtu-low": (HEAD + UPLINK + "mtu = 67\n" + VX, 8, "port[0].mtu", "68..65535", "67"),
    "mtu-high": (HEAD + UPLINK + "mtu = 65536\n" + VX, 8, "port[0].mtu", "68..65535", "65536"),
    "remote-family": (HEAD + UPLINK + _set(VX, "remote_ip", '"2001:db8::2"'), 14, "port[1].remote_ip",
                      "IPv4", "IPv6", "one family"),
    "bad-local-ip": (HEAD + UPLINK + _set(VX, "local_ip", '"192.0.2"'), 13, "port[1].local_ip", "IPv4 or IPv6"),
    "key-high": (HEAD + UPLINK + VX + "key = 16777216\n", 15, "port[1].key", "0..16777215"),
    "key-negative": (HEAD + UPLINK + VX + "key = -1\n", 15, "port[1].key", "0..16777215"),
    "key-text": (HEAD + UPLINK + VX + 'key = "any"\n', 15, "port[1].key", '"flow"'),
    "tos-ecn-bits": (HEAD + UPLINK + VX + "tos = 0x2a\n", 15, "port[1].tos", "DSCP", "42"),
    "tos-ecn-bit-1": (HEAD + UPLINK + VX + "tos = 1\n", 15, "port[1].tos", "steps of 4"),
    "tos-high": (HEAD + UPLINK + VX + "tos = 256\n", 15, "port[1].tos", "inherit"),
    "dst-port-0": (HEAD + UPLINK + VX + "dst_port = 0\n", 15, "port[1].dst_port", "1..65535"),
    "dst-port-high": (HEAD + UPLINK + VX + "dst_port = 65536\n", 15, "port[1].dst_port", "1..65535"),
    "dst-port-text": (HEAD + UPLINK + VX + 'dst_port = "4789"\n', 15, "port[1].dst_port", "1..65535"),
    "ttl-0": (HEAD + UPLINK + VX + "ttl = 0\n", 15, "port[1].ttl", "1..255"),
    "df-not-bool": (HEAD + UPLINK + VX + "df_default = 1\n", 15, "port[1].df_default", "true or false"),
    "csum-not-bool": (HEAD + UPLINK + VX + 'csum = "yes"\n', 15, "port[1].csum", "true or false"),
    "unknown-key-on-tunnel": (HEAD + UPLINK + VX + 'mac = "02:00:00:00:00:05"\n', 15, "port[1].mac",
                              "unknown key for a vxlan port", "remote_ip"),
    "misspelt-key-on-tunnel": (HEAD + UPLINK + VX + 'remote = "192.0.2.3"\n', 15, "port[1].remote",
                               "unknown key"),
    "duplicate-tunnels": (HEAD + UPLINK + VX + _set(_set(VX, "name", '"vy"'), "ofport", "11"), 15, "port[2]",
                          "'vy' receives the same packets as 'vx'"),
    "neighbor-missing-ip": (HEAD + UPLINK + VX + '[[neighbor]]\nmac = "02:00:00:00:00:02"\n', 15,
                            "neighbor[0].ip", "missing"),
    "neighbor-missing-mac": (HEAD + UPLINK + VX + '[[neighbor]]\nip = "192.0.2.2"\n', 15, "neighbor[0].mac",
                             "missing", "MAC address"),
    "neighbor-bad-mac": (HEAD + UPLINK + VX + '[[neighbor]]\nip = "192.0.2.2"\nmac = "zz"\n', 17,
                         "neighbor[0].mac", "MAC address", "'zz'"),
    "neighbor-duplicate": (HEAD + UPLINK + VX + NEIGH + NEIGH.replace(":02\"", ":03\""), 19, "neighbor[1].ip",
                           "duplicate neighbour 192.0.2.2"),
    "neighbor-unknown-key": (HEAD + UPLINK + VX + NEIGH + "port = 4\n", 18, "neighbor[0].port",
                             "unknown key", "ip, mac"),
}


@pytest.mark.parametrize("case", TUNNEL_ERRORS)
def test_tunnel_pipeline_file_errors(tmp_path, case):
    text, line, key, *words = TUNNEL_ERRORS[case]
    path, err = load_error(tmp_path, text)
    check(err, path, line, key, *words)


def test_different_keys_or_remotes_are_not_duplicates(tmp_path):
    (tmp_path / "p.flows").write_text("actions=drop\n")
    vy = _set(_set(VX, "name", '"vy"'), "ofport", "11")
    for extra in ("key = 5\n", 'remote_ip = "flow"\n', "dst_port = 4790\n"):
        text = HEAD + UPLINK + VX + (_without(vy, "remote_ip") if "remote" in extra else vy) + extra
        (tmp_path / "p.toml").write_text(text)
        assert len(config.load(tmp_path / "p.toml").ports) == 3


# -- 8. Geneve options ([[geneve_option]] <-> tun_metadataN) -----------------------------------

GOPTS = [(0x0102, 0x80, 4, 0), (0xFFFF, 0x01, 8, 1), (0x0103, 0x02, 4, 2)]   # (class, type, len, field)


def with_geneve_options(path, gopts=GOPTS):
    """The pipeline file with [[geneve_option]] tables appended."""
    path.write_text(path.read_text() + "".join(
        f'[[geneve_option]]\nclass = {c:#x}\ntype = {t:#x}\nlen = {n}\nfield = "tun_metadata{f}"\n'
        for c, t, n, f in gopts))
    return path


def option_tlv(cls, typ, data):
    return cls.to_bytes(2, "big") + bytes([typ, len(data) // 4]) + data


def tlvs(opts):
    """Option TLV bytes -> [(class, type, length in 4-byte words, data)]."""
    out, k = [], 0
    while k < len(opts):
        n = opts[k + 3] & 0x1F
        out.append((int.from_bytes(opts[k:k + 2], "big"), opts[k + 2], n, opts[k + 4:k + 4 + 4 * n]))
        k += 4 + 4 * n
    return out


def geneve_with_options(vni, options, critical):
    """A Geneve header with option TLVs (bytes) and the C flag as given."""
    return Raw(bytes([len(options) // 4, 0x40 if critical else 0]) + b"\x65\x58" + vni.to_bytes(3, "big") + b"\0"
               + options)


def expected_geneve(inner, vni, sport, options, critical, remote=R2, remote_mac=MAC2, csum=None):
    """An encapsulated Geneve copy with options, built by scapy (its lengths and checksums)."""
    six = ":" in remote
    l3 = (IPv6(src=LOCAL6, dst=remote, tc=0, fl=0, hlim=64) if six
          else IP(src=LOCAL4, dst=remote, tos=0, id=0, flags="DF", ttl=64))
    u = UDP(sport=sport, dport=6081)
    if not (six if csum is None else csum):
        u.chksum = 0
    return bytes(Ether(dst=remote_mac, src=UL_MAC) / l3 / u / geneve_with_options(vni, options, critical)
                 / Raw(inner))


OPT_FLOWS = ("udp,tp_src=1,actions=set_field:0x1122334455667788->tun_metadata1,output:10\n"
             "udp,tp_src=2,actions=set_field:0xabcd->tun_metadata2,set_field:7->tun_metadata0,output:10\n"
             "udp,tp_src=3,actions=set_field:0xabcd->tun_metadata2,set_field:0x1122334455667788->tun_metadata1,"
             "set_field:0xffffffff->tun_metadata0,output:10\n"
             "udp,tp_src=4,actions=output:10\n"
             "udp,tp_src=5,actions=set_field:0->tun_metadata0,set_field:1->tun_metadata2,output:10\n")
OPT_T0 = option_tlv(0x0102, 0x80, (7).to_bytes(4, "big"))
OPT_T1 = option_tlv(0xFFFF, 0x01, bytes.fromhex("1122334455667788"))
OPT_T2 = option_tlv(0x0103, 0x02, (0xABCD).to_bytes(4, "big"))
# tp_src -> (option bytes, C flag)
OPT_SENT = {1: (OPT_T1, False), 2: (OPT_T0 + OPT_T2, True),
            3: (option_tlv(0x0102, 0x80, b"\xff" * 4) + OPT_T1 + OPT_T2, True), 4: (b"", False),
            5: (option_tlv(0x0103, 0x02, (1).to_bytes(4, "big")), False)}


@pytest.mark.parametrize("csum", [False, True])
@pytest.mark.parametrize("family", [4, 6])
def test_geneve_options_encap_layout(tmp_path, family, csum):
    """Each non-zero mapped field an option, in field order: class, type, length/4, data; the C flag
    when one is critical; options length in the header; UDP/IP lengths and checksums count them."""
    remote, local = (R2, LOCAL4) if family == 4 else (R6, LOCAL6)
    mac = MAC2 if family == 4 else MAC6
    path = with_geneve_options(pipeline(tmp_path, OPT_FLOWS, {"g": dict(type="geneve", ofport=10, remote_ip=remote,
                                                                        key=42, csum=csum)}, local=local))
    frames = [inner_udp(sport=k) for k in OPT_SENT]
    dpu, stats, outs = run(tmp_path, path, {"p1": frames})
    got = outs["uplink"]
    assert len(got) == len(frames)
    for frame, inner, (opts, critical) in zip(got, frames, OPT_SENT.values()):
        assert frame == expected_geneve(inner, 42, outer_sport(frame), opts, critical, remote=remote,
                                        remote_mac=mac, csum=csum)
        g = Ether(frame)[GENEVE]
        assert (g.optionlen, g.critical, g.vni) == (len(opts) // 4, int(critical), 42)
        assert [(o.classid, o.type, o.length, bytes(o.data)) for o in g.options] == tlvs(opts)
        assert bytes(g.payload) == inner
    assert stats.dropped == 0
    tshark_clean(dpu.outputs["uplink"], expect=("geneve", [42] * len(frames)), zero_udp6=family == 6 and not csum)
    tshark = need_tool("tshark")
    rows = subprocess.run([tshark, "-n", "-r", str(dpu.outputs["uplink"]), "-T", "fields", "-E", "separator=|",
                           "-e", "geneve.flags.critical", "-e", "geneve.option.class", "-e", "geneve.option.type",
                           "-e", "geneve.option.length", "-e", "geneve.option.unknown.data"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(rows) == len(frames)
    for row, (opts, critical) in zip(rows, OPT_SENT.values()):
        crit, classes, types, lengths, data = row.split("|")
        assert crit in (("1", "True") if critical else ("0", "False")), row
        want = tlvs(opts)
        assert [int(c, 0) for c in classes.split(",") if c] == [c for c, _, _, _ in want], row
        assert [int(t, 0) for t in types.split(",") if t] == [t for _, t, _, _ in want], row
        # tshark's geneve.option.length: the options' total length, then each option's (header included)
        assert [int(n, 0) for n in lengths.split(",") if n] == \
            ([len(opts)] if opts else [0]) + [4 + 4 * n for _, _, n, _ in want], row
        assert [d for d in data.split(",") if d] == [d.hex() for _, _, _, d in want], row


@pytest.mark.parametrize("family", [4, 6])
def test_geneve_options_mtu_boundary_counts_the_options(tmp_path, family):
    """The outer IP packet with 20 bytes of options is exactly mtu: sent; one byte more: tunnel_mtu.
    The same inner frame without options fits."""
    mtu = 600
    remote, local = (R2, LOCAL4) if family == 4 else (R6, LOCAL6)
    opts_len = len(OPT_T0 + OPT_T1)
    room = mtu - (20 if family == 4 else 40) - 8 - 8 - opts_len
    base = len(inner_udp(payload=b""))
    flows = ("in_port=1,actions=set_field:7->tun_metadata0,set_field:0x1122334455667788->tun_metadata1,output:10\n"
             "in_port=2,actions=output:10\n")
    path = with_geneve_options(pipeline(tmp_path, flows, {"t": dict(type="geneve", ofport=10, remote_ip=remote,
                                                                    key=3)}, mtu=mtu, local=local))
    fits, over = inner_udp(payload=b"f" * (room - base)), inner_udp(payload=b"o" * (room + 1 - base))
    _, stats, outs = run(tmp_path, path, {"p1": [fits, over], "p2": [over]})
    assert [len(f) - 14 for f in outs["uplink"]] == [mtu, mtu + 1 - opts_len]
    frame = outs["uplink"][0]
    assert frame == expected_geneve(fits, 3, outer_sport(frame), OPT_T0 + OPT_T1, True, remote=remote,
                                    remote_mac=MAC2 if family == 4 else MAC6)
    assert stats.drop_counts() == {"tunnel_mtu": 1}


GOPT_TUNNELS = {"gn": dict(type="geneve", ofport=20, remote_ip=R2, key=5000),
                "gn6": dict(type="geneve", ofport=30, remote_ip=R6, key=5000, local_ip=LOCAL6)}
GOPT_FLOWS = ("priority=300,tun_metadata0=7,tun_metadata1=0x1122334455667788,actions=output:1\n"
              "priority=200,tun_metadata2=0xab00/0xff00,actions=output:2\n"
              "priority=100,in_port=20,actions=output:3\npriority=100,in_port=30,actions=output:3\n")


@pytest.mark.parametrize("src, dst", [(R2, LOCAL4), (R6, LOCAL6)], ids=["outer-v4", "outer-v6"])
def test_geneve_options_received_set_their_fields(tmp_path, src, dst):
    unmapped = option_tlv(0x0104, 0x01, b"\0\0\0\1")
    cases = [(OPT_T0 + OPT_T1, True, "p1"), (OPT_T1 + unmapped + OPT_T0, True, "p1"), (OPT_T2, False, "p2"),
             (unmapped + OPT_T1, False, "p3"), (b"", False, "p3"), (OPT_T0, True, "p3")]
    inners = [inner_udp(sport=k + 1) for k in range(len(cases))]
    frames = [outer("geneve", i, 5000, src=src, dst=dst, csum=k % 2 == 0, header=geneve_with_options(5000, o, c))
              for k, (i, (o, c, _)) in enumerate(zip(inners, cases))]
    _, stats, outs = run(tmp_path, with_geneve_options(pipeline(tmp_path, GOPT_FLOWS, GOPT_TUNNELS)),
                         {"uplink": frames})
    for p in ("p1", "p2", "p3"):
        assert outs[p] == [i for i, (_, _, q) in zip(inners, cases) if q == p], p
    assert stats.dropped == 0


GOPT_DROPS = {
    "unmapped-critical": (option_tlv(0x0104, 0x81, b"\0\0\0\1"), "tunnel_critical_option"),
    "unmapped-critical-after-mapped": (OPT_T0 + option_tlv(0x0104, 0x81, b""), "tunnel_critical_option"),
    "mapped-len4-as-8": (option_tlv(0x0102, 0x80, bytes(8)), "tunnel_bad_header"),
    "mapped-len8-as-4": (option_tlv(0xFFFF, 0x01, bytes(4)), "tunnel_bad_header"),
    "mapped-as-0": (option_tlv(0x0103, 0x02, b""), "tunnel_bad_header"),
}


@pytest.mark.parametrize("case", GOPT_DROPS)
def test_geneve_option_errors_are_counted(tmp_path, case):
    opts, reason = GOPT_DROPS[case]
    frame = outer("geneve", INNER, 5000, header=geneve_with_options(5000, opts, True))
    _, stats, outs = run(tmp_path, with_geneve_options(pipeline(tmp_path, GOPT_FLOWS, GOPT_TUNNELS)),
                         {"uplink": [frame]})
    assert stats.drop_counts() == {reason: 1}
    assert outs["p1"] == outs["p2"] == outs["p3"] == []
    assert "(dropped 1)" in summary(stats, "gn"), stats.table()


def test_trace_shows_geneve_options_both_ways(tmp_path, capsys):
    from softdpu import cli
    flows = ("in_port=1,actions=set_field:0xabcd->tun_metadata2,set_field:7->tun_metadata0,output:20\n"
             "in_port=20,tun_metadata0=7,actions=output:2\n")
    path = with_geneve_options(pipeline(tmp_path, flows, {"gn": GOPT_TUNNELS["gn"]}))
    p1 = write_capture(tmp_path / "tr-p1.pcap", [inner_udp()])
    up = write_capture(tmp_path / "tr-up.pcap", [outer("geneve", INNER, 5000,
                                                       header=geneve_with_options(5000, OPT_T0 + OPT_T1, True))])
    assert cli.main(["trace", str(path), "--in", f"p1={p1}", "--in", f"uplink={up}"]) == 0
    out = capsys.readouterr().out
    assert ("Encapsulated: geneve VNI 5000 options {class=0x102,type=0x80,len=4}=00000007,"
            "{class=0x103,type=0x2,len=4}=0000abcd from 192.0.2.1 to 192.0.2.2, UDP ") in out
    assert "tun_metadata0=0x7" in out and "tun_metadata1=0x1122334455667788" in out
    assert "Result: sent to p2" in out


GOPT = '[[geneve_option]]\nclass = 0x0102\ntype = 0x80\nlen = 4\nfield = "tun_metadata0"\n'   # lines 15-19
GOPT2 = _set(_set(GOPT, "class", "0x0103"), "field", '"tun_metadata1"')                       # lines 20-24
GENEVE_OPTION_ERRORS = {
    # name: (text after HEAD + UPLINK + VX, line, key, words in the message)
    "not-an-array": ("[geneve_option]\nclass = 1\n", 15, "geneve_option", "[[geneve_option]] tables"),
    "missing-class": (_without(GOPT, "class"), 15, "geneve_option[0].class", "missing", "0..65535"),
    "missing-type": (_without(GOPT, "type"), 15, "geneve_option[0].type", "missing", "0..255"),
    "missing-len": (_without(GOPT, "len"), 15, "geneve_option[0].len", "missing", "4 or 8"),
    "missing-field": (_without(GOPT, "field"), 15, "geneve_option[0].field", "missing", "tun_metadata0"),
    "unknown-key": (GOPT + "length = 4\n", 20, "geneve_option[0].length", "unknown key",
                    "class, field, len, type"),
    "misspelt-key": (_without(GOPT, "class") + "klass = 1\n", 19, "geneve_option[0].klass", "unknown key"),
    "class-negative": (_set(GOPT, "class", "-1"), 16, "geneve_option[0].class", "0..65535", "-1"),
    "class-high": (_set(GOPT, "class", "0x10000"), 16, "geneve_option[0].class", "0..65535", "65536"),
    "class-text": (_set(GOPT, "class", '"0x0102"'), 16, "geneve_option[0].class", "0..65535"),
    "type-high": (_set(GOPT, "type", "256"), 17, "geneve_option[0].type", "0..255", "256"),
    "type-negative": (_set(GOPT, "type", "-1"), 17, "geneve_option[0].type", "0..255"),
    "len-12": (_set(GOPT, "len", "12"), 18, "geneve_option[0].len", "4 or 8", "12"),
    "len-0": (_set(GOPT, "len", "0"), 18, "geneve_option[0].len", "4 or 8"),
    "len-bool": (_set(GOPT, "len", "true"), 18, "geneve_option[0].len", "4 or 8"),
    "len-text": (_set(GOPT, "len", '"4"'), 18, "geneve_option[0].len", "4 or 8"),
    "field-4": (_set(GOPT, "field", '"tun_metadata4"'), 19, "geneve_option[0].field", "tun_metadata3"),
    "field-reg": (_set(GOPT, "field", '"reg0"'), 19, "geneve_option[0].field", "tun_metadata0"),
    "field-number": (_set(GOPT, "field", "0"), 19, "geneve_option[0].field", "tun_metadata0"),
    "duplicate-field": (GOPT + _set(GOPT2, "field", '"tun_metadata0"'), 24, "geneve_option[1].field",
                        "tun_metadata0 already holds geneve_option[0]"),
    "duplicate-class-type": (GOPT + _set(GOPT2, "class", "0x0102"), 22, "geneve_option[1].type",
                             "class 0x102 type 0x80 already mapped by geneve_option[0]"),
}


@pytest.mark.parametrize("case", GENEVE_OPTION_ERRORS)
def test_geneve_option_pipeline_file_errors(tmp_path, case):
    text, line, key, *words = GENEVE_OPTION_ERRORS[case]
    path, err = load_error(tmp_path, HEAD + UPLINK + VX + text)
    check(err, path, line, key, *words)


def test_geneve_option_tables_load(tmp_path):
    (tmp_path / "p.flows").write_text("actions=drop\n")
    (tmp_path / "p.toml").write_text(HEAD + UPLINK + VX + GOPT + GOPT2 + _set(_set(_set(_set(
        GOPT, "class", "0xffff"), "type", "0xff"), "len", "8"), "field", '"tun_metadata3"'))
    cfg = config.load(tmp_path / "p.toml")
    assert cfg.geneve_options == [(0x102, 0x80, 4, 0), (0x103, 0x80, 4, 1), (0xFFFF, 0xFF, 8, 3)]


# -- IPv6 underlays: tun_ipv6_src / tun_ipv6_dst ---------------------------------------------

def test_ipv6_tunnel_fields_match_and_flow_based_ipv6_remote(tmp_path):
    """Decapsulation over IPv6 sets tun_ipv6_src/dst (matchable); a remote_ip = "flow" tunnel over
    IPv6 takes its remote VTEP from set_field:...->tun_ipv6_dst."""
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap, wrpcap

    (tmp_path / "t.flows").write_text(
        "in_port=10,tun_ipv6_src=2001:db8::2,tun_ipv6_dst=2001:db8::1,tun_id=9,actions=output:1\n"
        "in_port=1,actions=set_field:2001:db8::3->tun_ipv6_dst,set_field:12->tun_id,output:10\n")
    (tmp_path / "t.toml").write_text("""[pipeline]
flows = "t.flows"
[[port]]
name = "p1"
ofport = 1
type = "pcap"
[[port]]
name = "uplink"
ofport = 2
type = "pcap"
mac = "02:00:00:00:00:02"
[[port]]
name = "vx"
ofport = 10
type = "vxlan"
underlay = "uplink"
local_ip = "2001:db8::1"
remote_ip = "flow"
key = "flow"
[[neighbor]]
ip = "2001:db8::3"
mac = "02:00:00:00:00:33"
""")
    inner = Ether(src="02:00:00:00:00:0b", dst="02:00:00:00:00:0a") / IP(src="10.0.0.2", dst="10.0.0.1") / UDP()
    outer = (Ether(src="02:00:00:00:00:99", dst="02:00:00:00:00:02") / IPv6(src="2001:db8::2", dst="2001:db8::1")
             / UDP(sport=5000, dport=4789) / VXLAN(vni=9, flags=8, NextProtocol=0) / inner)
    outer.time, inner.time = 1700000000.0, 1700000000.001
    wrpcap(str(tmp_path / "up.pcap"), [outer])
    wrpcap(str(tmp_path / "p1.pcap"), [inner])
    dpu = Dpu.load(tmp_path / "t.toml")
    stats = dpu.run_pcaps(inputs={"uplink": tmp_path / "up.pcap", "p1": tmp_path / "p1.pcap"}, out_dir=tmp_path)
    assert [bytes(p) for p in rdpcap(str(tmp_path / "p1.pcap"))] == [bytes(inner)]
    (sent,) = rdpcap(str(tmp_path / "uplink.pcap"))
    assert sent[IPv6].src == "2001:db8::1" and sent[IPv6].dst == "2001:db8::3"
    assert sent[Ether].dst == "02:00:00:00:00:33" and sent[VXLAN].vni == 12
    assert bytes(sent[VXLAN].payload) == bytes(inner)
    assert stats.rx == stats.left == 2
