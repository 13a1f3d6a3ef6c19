"""Micro-segmentation ([firewall] in pipeline files, softdpu/policy.py) and the reject action
(softdpu/stages/flows/reject.py): config errors, compiled flows, traffic through a Dpu, and
agreement with Open vSwitch where no reject is involved."""
import itertools
import random
from pathlib import Path

import pytest
from ovs_oracle import OvsDummy, merge_captures, port_specs, read_pcap, require_ovs, write_pcap
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import rdpcap

from softdpu import cli, config, policy
from softdpu.errors import ConfigError
from softdpu.pipeline import Dpu
from softdpu.stages.flows.syntax import parse_text
from softdpu.testing import Harness

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_764_000_000_000_000_000
MAC = {1: "02:00:00:00:00:01", 2: "02:00:00:00:00:02", 3: "02:00:00:00:00:03"}
HEAD = """\
[pipeline]
name = "fw"
flows = "fw.flows"
batch = 8
[[port]]
name = "p1"
ofport = 1
type = "pcap"
[[port]]
name = "p2"
ofport = 2
type = "pcap"
[[port]]
name = "p3"
ofport = 3
type = "pcap"
"""
POLICY = """\
[firewall]
default = "drop"
zone = 1
[firewall.groups]
web = { cidrs = ["10.0.1.0/24", "fd00:1::/64"] }
db = { cidrs = ["10.0.2.10/32", "fd00:2::/64"] }
admins = { cidrs = ["10.9.0.0/16"], ports = ["p3"] }
[firewall.services]
http = { protocol = "tcp", ports = [80, 443] }
pg = { protocol = "tcp", ports = ["5432"] }
ping = { protocol = "icmp" }
dns = { protocol = "udp", ports = [53] }

[[firewall.rule]]
name = "web to db"
from = "web"
to = "db"
service = "pg"
action = "allow"

[[firewall.rule]]
name = "admins ping"
from = "admins"
service = "ping"
action = "allow"

[[firewall.rule]]
name = "dns stateless"
from = "web"
service = "dns"
action = "allow"
stateful = false

[[firewall.rule]]
name = "no web to db http"
from = "web"
to = "db"
service = "http"
action = "reject"
"""


def pipeline(tmp_path, firewall=POLICY, flows="", name="fw.toml"):
    (tmp_path / "fw.flows").write_text(flows)
    path = tmp_path / name
    path.write_text(HEAD + firewall)
    return path


def load_error(tmp_path, firewall, flows=""):
    with pytest.raises(ConfigError) as e:
        cfg = config.load(pipeline(tmp_path, firewall, flows))
        policy.flow_rules(cfg)
    return e.value


# -- port ranges ------------------------------------------------------------------------
def _covered(pairs, bits=16):
    return sorted(v for v in range(1 << bits) if any(v & m == val for val, m in pairs))


def test_port_ranges_cover_exactly_the_range_exhaustively_on_8_bits():
    for lo in range(256):
        for hi in range(lo, 256):
            pairs = policy.port_ranges(lo, hi, bits=8)
            assert _covered(pairs, 8) == list(range(lo, hi + 1)), (lo, hi)
            # the fewest prefixes: the greedy aligned blocks are the minimal prefix cover
            assert len(pairs) <= 2 * 8 - 2 or (lo, hi) == (0, 255)


def test_port_ranges_on_16_bits_against_range():
    rng = random.Random(5)
    cases = [(0, 65535), (0, 0), (65535, 65535), (1, 65534), (1024, 65535), (8000, 8080), (5432, 5432),
             (32768, 32768), (1, 1)] + [tuple(sorted((rng.randrange(65536), rng.randrange(65536))))
                                        for _ in range(60)]
    for lo, hi in cases:
        pairs = policy.port_ranges(lo, hi)
        assert _covered(pairs) == list(range(lo, hi + 1)), (lo, hi)
        assert len(pairs) <= 30
        for v, m in pairs:                  # prefixes: the mask is some leading ones
            assert m == (0xFFFF << (16 - bin(m).count("1"))) & 0xFFFF and v & ~m == 0
    assert policy.port_ranges(8000, 8080) == [(8000, 0xFFC0), (8064, 0xFFF0), (8080, 0xFFFF)]
    assert policy.port_ranges(0, 65535) == [(0, 0)]


# -- config errors -------------------------------------------------------------------------
@pytest.mark.parametrize("text, key, message, line", [
    ('[firewall]\ndefault = "deny"\n', "firewall.default", "allow", 2),
    ('[firewall]\nzone = 70000\n', "firewall.zone", "0..65535", 2),
    ('[firewall]\ncolour = 1\n', "firewall.colour", "unknown key", 2),
    ('[firewall]\nnext_table = 1\n', "firewall.next_table", "2..254", 2),
    ('[firewall]\n[firewall.groups]\nweb = { cidrs = ["10.0.1.5/24"] }\n', "firewall.groups.web.cidrs",
     "did you mean 10.0.1.0/24", 3),
    ('[firewall]\n[firewall.groups]\nweb = { cidrs = ["10.0.1.0/33"] }\n', "firewall.groups.web.cidrs",
     "bad CIDR", 3),
    ('[firewall]\n[firewall.groups]\nweb = { ports = ["p9"] }\n', "firewall.groups.web.ports",
     "no port named 'p9'", 3),
    ('[firewall]\n[firewall.groups]\nweb = { vlans = [5000] }\n', "firewall.groups.web.vlans", "0..4095", 3),
    ('[firewall]\n[firewall.groups]\nweb = { hosts = [] }\n', "firewall.groups.web.hosts", "unknown key", 3),
    ('[firewall]\n[firewall.groups]\nany = { cidrs = ["10.0.0.0/8"] }\n', "firewall.groups.any", "not 'any'", 3),
    ('[firewall]\n[firewall.services]\nx = { protocol = "gre" }\n', "firewall.services.x.protocol",
     "tcp, udp", 3),
    ('[firewall]\n[firewall.services]\nx = { protocol = "icmp", ports = [1] }\n', "firewall.services.x.ports",
     "tcp or udp", 3),
    ('[firewall]\n[firewall.services]\nx = { protocol = "tcp", ports = ["90-80"] }\n',
     "firewall.services.x.ports", "LO <= HI", 3),
    ('[firewall]\n[firewall.services]\nx = { protocol = "tcp", ports = [70000] }\n',
     "firewall.services.x.ports", "0..65535", 3),
    ('[firewall]\n[firewall.services]\nx = { ports = [80] }\n', "firewall.services.x.protocol", "missing", 3),
    ('[firewall]\n[[firewall.rule]]\nname = "a"\nfrom = "web"\naction = "allow"\n', "firewall.rule[0].from",
     "no group named 'web'", 4),
    ('[firewall]\n[[firewall.rule]]\nname = "a"\nservice = "x"\naction = "allow"\n',
     "firewall.rule[0].service", "no service named 'x'", 4),
    ('[firewall]\n[[firewall.rule]]\nname = "a"\n', "firewall.rule[0].action", "missing", 2),
    ('[firewall]\n[[firewall.rule]]\nname = "a"\naction = "deny"\n', "firewall.rule[0].action",
     "allow, drop or reject", 4),
    ('[firewall]\n[[firewall.rule]]\nname = "a"\naction = "allow"\nstateful = "yes"\n',
     "firewall.rule[0].stateful", "true or false", 5),
    ('[firewall]\n[[firewall.rule]]\naction = "allow"\nfrom = ["any", "any"]\n', "firewall.rule[0].from",
     '"any" alone', 4),
    ('[firewall]\n[[firewall.rule]]\naction = "drop"\npriority = 5\n', "firewall.rule[0].priority",
     "unknown key", 4),
    ('[firewall]\n[[firewall.rule]]\nname = "a"\naction = "drop"\n[[firewall.rule]]\nname = "a"\naction = "drop"\n',
     "firewall.rule[1].name", "duplicate rule name", 6),
    ('[firewall]\n[firewall.groups]\nadm = { ports = ["p3"] }\n[[firewall.rule]]\nto = "adm"\naction = "drop"\n',
     "firewall.rule[0].to", "only be used in `from`", 5),
])
def test_config_errors_name_file_line_and_key(tmp_path, text, key, message, line):
    e = load_error(tmp_path, text)
    offset = HEAD.count("\n")
    assert e.key == key
    assert message in str(e)
    assert e.line == offset + line, str(e)
    assert str(e).startswith(f"{tmp_path / 'fw.toml'}:{offset + line}: {key}: ")


def test_flows_in_the_firewall_tables_are_refused(tmp_path):
    e = load_error(tmp_path, '[firewall]\n', flows="table=1,actions=normal\n")
    assert e.key == "firewall.table" and "fw.flows:1" in str(e) and "owns tables 0 and 1" in str(e)
    e = load_error(tmp_path, '[firewall]\nnext_table = 5\n', flows="table=4,actions=normal\n")
    assert e.key == "firewall.next_table" and "no flow in table 5" in str(e)


def test_groups_as_subtables_and_line_numbers(tmp_path):
    text = '[firewall]\n[firewall.groups.web]\ncidrs = ["10.0.1.0/24"]\nvlans = [9999]\n'
    e = load_error(tmp_path, text)
    assert e.key == "firewall.groups.web.vlans" and e.line == HEAD.count("\n") + 4


def test_a_pipeline_without_firewall_is_unchanged(tmp_path):
    (tmp_path / "fw.flows").write_text("actions=normal\n")
    (tmp_path / "p.toml").write_text(HEAD)
    cfg = config.load(tmp_path / "p.toml")
    assert cfg.firewall is None
    assert [r.text for r in policy.flow_rules(cfg)] == ["actions=normal"]


# -- compiled flows ---------------------------------------------------------------------
def test_compiled_flows(tmp_path):
    cfg = config.load(pipeline(tmp_path))
    lines = policy.compile_flows(cfg.firewall)
    flows = [x for x in lines if not x.startswith("#")]
    assert "table=0,priority=100,ip,actions=ct(zone=1,table=1)" in flows
    assert "table=0,priority=100,ipv6,actions=ct(zone=1,table=1)" in flows
    assert "table=0,priority=0,actions=normal" in flows
    assert "table=1,priority=65534,ct_state=+est-inv+trk,actions=normal" in flows
    assert "# rule: web to db (allow stateful)" in lines
    assert ("table=1,priority=60000,tcp,nw_src=10.0.1.0/24,nw_dst=10.0.2.10,tp_dst=5432,ct_state=+new+trk,"
            "actions=ct(commit,zone=1),normal") in flows
    assert ("table=1,priority=60000,tcp6,ipv6_src=fd00:1::/64,ipv6_dst=fd00:2::/64,tp_dst=5432,"
            "ct_state=+new+trk,actions=ct(commit,zone=1),normal") in flows
    # an ingress member (port p3) and an IPv4 CIDR; icmp is IPv4 only, so no IPv6 flow
    assert ("table=1,priority=59999,icmp,nw_src=10.9.0.0/16,ct_state=+new+trk,"
            "actions=ct(commit,zone=1),normal") in flows
    assert "table=1,priority=59999,icmp,in_port=3,ct_state=+new+trk,actions=ct(commit,zone=1),normal" in flows
    assert not any("59999" in f and "ipv6" in f for f in flows)
    assert "table=1,priority=59998,udp,nw_src=10.0.1.0/24,tp_dst=53,actions=normal" in flows    # stateless
    assert "table=1,priority=59998,udp6,ipv6_src=fd00:1::/64,tp_dst=53,actions=normal" in flows
    assert ("table=1,priority=59997,tcp,nw_src=10.0.1.0/24,nw_dst=10.0.2.10,tp_dst=80,ct_state=-inv+trk,"
            "actions=reject") in flows
    assert flows[-1] == "table=1,priority=1,actions=drop"
    ovs = [x for x in policy.compile_flows(cfg.firewall, ovs=True) if not x.startswith("#")]
    assert not any("reject" in f for f in ovs) and len(ovs) == len(flows)
    # every line reads back as a flow; the whole pipeline's rules come first, then the file's
    assert len(parse_text("\n".join(lines))) == len(flows)
    rules = policy.flow_rules(cfg)
    assert len(rules) == len(flows)
    rule_line = next(r for r in rules if "tp_dst=5432" in r.text).line
    assert (tmp_path / "fw.toml").read_text().splitlines()[rule_line - 1] == "[[firewall.rule]]"


def test_ranges_vlans_tunnel_keys_any_and_defaults(tmp_path):
    text = """\
[firewall]
default = "allow"
table = 3
next_table = 7
[firewall.groups]
lab = { vlans = [10], tunnel_keys = [5001] }
[firewall.services]
web = { protocol = "tcp", ports = ["8000-8080"] }
[[firewall.rule]]
from = "lab"
service = "web"
action = "drop"
[[firewall.rule]]
name = "v4 meets v6"
from = "lab"
to = "lab6"
action = "allow"
"""
    text = text.replace('to = "lab6"\n', "").replace("[firewall.services]", 'lab6 = { cidrs = ["fd00::/8"] }\n'
                                                                       "[firewall.services]")
    cfg = config.load(pipeline(tmp_path, text, flows="table=7,actions=normal\n"))
    flows = [x for x in policy.compile_flows(cfg.firewall) if not x.startswith("#")]
    assert "table=3,priority=100,ip,actions=ct(zone=0,table=4)" in flows
    assert "table=3,priority=0,actions=goto_table:7" in flows
    drops = [f for f in flows if "priority=60000" in f]
    assert "table=4,priority=60000,tcp,dl_vlan=10,tp_dst=0x1f40/0xffc0,actions=drop" in drops
    assert "table=4,priority=60000,tcp6,tun_id=0x1389,tp_dst=8080,actions=drop" in drops
    assert len(drops) == 2 * 2 * 3
    assert "table=4,priority=1,ip,actions=ct(commit,zone=0),goto_table:7" in flows
    assert len(policy.flow_rules(cfg)) == len(flows) + 1


def test_cli_compile_policy(tmp_path, capsys):
    path = pipeline(tmp_path)
    assert cli.main(["compile-policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "# rule: no web to db http (reject)" in out and "actions=reject" in out
    assert cli.main(["compile-policy", "--ovs", str(path)]) == 0
    out = capsys.readouterr().out
    assert "actions=reject" not in out and "compiled as drop" in out
    (tmp_path / "plain.toml").write_text(HEAD)
    assert cli.main(["compile-policy", str(tmp_path / "plain.toml")]) == 2
    assert "no [firewall] section" in capsys.readouterr().err
    bad = pipeline(tmp_path, '[firewall]\nzone = -1\n', name="bad.toml")
    assert cli.main(["compile-policy", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("softdpu: error: ") and "firewall.zone" in err[0]


# -- traffic ----------------------------------------------------------------------------
def eth(src, dst):
    return Ether(src=MAC[src], dst=MAC[dst])


def run(tmp_path, packets, firewall=POLICY, flows=""):
    """packets: [(port number, scapy packet)] in order -> ({port number: [scapy packets]}, stats)."""
    path = pipeline(tmp_path, firewall, flows)
    per_port = {}
    for i, (port, p) in enumerate(packets):
        per_port.setdefault(port, []).append((T0 + i * 1_000_000, bytes(p)))
    inputs = {}
    for port, records in per_port.items():
        inputs[f"p{port}"] = tmp_path / f"in-p{port}.pcap"
        write_pcap(inputs[f"p{port}"], records)
    dpu = Dpu.load(path)
    stats = dpu.run_pcaps(inputs=inputs, out_dir=tmp_path / "out")
    return {n: [Ether(f) for f in read_pcap(tmp_path / "out" / f"p{n}.pcap")] for n in (1, 2, 3)}, stats


def learn():
    """Gratuitous ARPs: the switch learns where each MAC is (nothing floods afterwards)."""
    return [(n, Ether(src=MAC[n], dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=MAC[n], psrc=f"10.0.0.{n}",
                                                                 pdst=f"10.0.0.{n}")) for n in (1, 2, 3)]


def ip_packets(out):
    return [p for p in out if IP in p or IPv6 in p]


def test_allowed_connection_and_its_replies_pass_others_drop(tmp_path):
    """A conversation through the policy, packet by packet (softdpu.testing: one Dpu, state carried over)."""
    dpu = Harness.load(pipeline(tmp_path))
    for port, arp in learn():
        dpu.send(port, arp)
    dpu.clear()

    def passes(port, pkt, to):
        dpu.send(port, pkt)
        dpu.expect(to, pkt)
        dpu.expect_nothing_else()

    def dropped(port, pkt):
        dpu.send(port, pkt)
        dpu.expect_drop("action_drop")
        dpu.expect_nothing_else()

    web = lambda l4: eth(1, 2) / IP(src="10.0.1.5", dst="10.0.2.10") / l4   # noqa: E731
    db = lambda l4: eth(2, 1) / IP(src="10.0.2.10", dst="10.0.1.5") / l4    # noqa: E731
    passes(1, web(TCP(sport=40000, dport=5432, flags="S", seq=100)), 2)            # web to db: pg
    passes(2, db(TCP(sport=5432, dport=40000, flags="SA", seq=500, ack=101)), 1)   # its replies
    passes(1, web(TCP(sport=40000, dport=5432, flags="A", seq=101, ack=501)), 2)
    passes(2, db(TCP(sport=5432, dport=40000, flags="PA", seq=501, ack=101) / b"rows"), 1)
    dropped(2, db(TCP(sport=5432, dport=40001, flags="S", seq=1)))                 # db opens: no rule
    dropped(1, web(TCP(sport=40002, dport=22, flags="S", seq=1)))                  # ssh: no rule
    passes(1, web(UDP(sport=5353, dport=53)), 2)                                   # stateless allow
    dropped(2, db(UDP(sport=53, dport=5353)))                                      # its reply: no rule
    passes(3, eth(3, 2) / IP(src="192.0.2.1", dst="10.0.2.10") / ICMP(type=8), 2)  # admins by port
    passes(2, eth(2, 3) / IP(src="10.0.2.10", dst="192.0.2.1") / ICMP(type=0), 3)  # the reply: +est
    assert dpu.stats.drop_counts() == {"action_drop": 3}


def _checksums_ok(p):
    again = Ether(bytes(p))
    for layer in (IP, TCP, ICMP, IPv6, ICMPv6DestUnreach):
        if layer in again and hasattr(again[layer], "chksum"):
            del again[layer].chksum
    return bytes(Ether(bytes(again))) == bytes(p)


def test_reject_sends_a_tcp_rst_as_rfc_793(tmp_path):
    syn = eth(1, 2) / Dot1Q(vlan=7) / IP(src="10.0.1.5", dst="10.0.2.10", ttl=9) / TCP(
        sport=40000, dport=80, flags="S", seq=1000)
    data = eth(1, 2) / IP(src="10.0.1.5", dst="10.0.2.10") / TCP(sport=40001, dport=443, flags="PA",
                                                                  seq=5, ack=777) / b"hello"
    fin = eth(1, 2) / IPv6(src="fd00:1::5", dst="fd00:2::10") / TCP(sport=40002, dport=80, flags="S",
                                                                     seq=0xFFFFFFFF) / b"ab"
    rst = eth(1, 2) / IP(src="10.0.1.5", dst="10.0.2.10") / TCP(sport=40003, dport=80, flags="R", seq=1)
    out, stats = run(tmp_path, learn() + [(1, syn), (1, data), (1, fin), (1, rst)])
    back = ip_packets(out[1])
    assert len(back) == 3 and not ip_packets(out[2])
    # the RST is only dropped, never answered (rejected if conntrack finds it valid, else +inv: dropped)
    assert sum(stats.drop_counts().values()) == 4 and stats.drop_counts()["rejected"] >= 3
    a, b, c = back
    for reply, orig in ((a, syn), (b, data), (c, fin)):
        assert reply.src == orig.dst and reply.dst == orig.src
        assert reply[TCP].sport == orig[TCP].dport and reply[TCP].dport == orig[TCP].sport
        assert reply[TCP].window == 0 and _checksums_ok(reply)
    assert a[Dot1Q].vlan == 7 and a[IP].src == "10.0.2.10" and a[IP].dst == "10.0.1.5" and a[IP].ttl == 64
    assert a[TCP].flags == "RA" and a[TCP].seq == 0 and a[TCP].ack == 1001       # no ACK: SEQ + SYN
    assert b[TCP].flags == "R" and b[TCP].seq == 777 and b[TCP].ack == 0         # ACK: SEQ=SEG.ACK
    assert c[IPv6].src == "fd00:2::10" and c[IPv6].dst == "fd00:1::5" and c[IPv6].hlim == 64
    assert c[TCP].flags == "RA" and c[TCP].ack == 2                              # wraps: -1 + SYN + 2
    assert len(a) == 14 + 4 + 40 and len(c) == 14 + 40 + 20


def test_reject_sends_icmp_administratively_prohibited_quoting_the_packet(tmp_path):
    fw = POLICY + '[[firewall.rule]]\nname = "rest"\nfrom = "web"\nto = "db"\naction = "reject"\n'
    udp = eth(1, 2) / IP(src="10.0.1.5", dst="10.0.2.10", id=42) / UDP(sport=999, dport=7) / (b"z" * 600)
    echo6 = eth(1, 2) / IPv6(src="fd00:1::5", dst="fd00:2::10") / ICMPv6EchoRequest(data=b"q" * 1400)
    err = eth(1, 2) / IP(src="10.0.1.5", dst="10.0.2.10") / ICMP(type=3, code=1) / IP(
        src="10.0.2.10", dst="10.0.1.5") / UDP()
    mcast = Ether(src=MAC[1], dst="01:00:5e:00:00:01") / IP(src="10.0.1.5", dst="10.0.2.10") / UDP(dport=9)
    out, stats = run(tmp_path, learn() + [(1, udp), (1, echo6), (1, err), (1, mcast)], firewall=fw)
    back = ip_packets(out[1])
    # the ICMP error about no known connection is +inv: dropped; the multicast frame is not answered
    assert len(back) == 2 and stats.drop_counts() == {"rejected": 3, "action_drop": 1}
    v4, v6 = back
    assert v4[IP].src == "10.0.2.10" and v4[IP].dst == "10.0.1.5" and v4[IP].proto == 1
    assert v4[ICMP].type == 3 and v4[ICMP].code == 13 and len(v4[IP]) == 576
    assert bytes(v4[ICMP])[8:] == bytes(udp[IP])[:548]                  # RFC 1812: as much as fits in 576
    assert v6[IPv6].src == "fd00:2::10" and v6[IPv6].nh == 58
    assert v6[ICMPv6DestUnreach].code == 1 and len(v6[IPv6]) == 1280
    assert bytes(v6[IPv6].payload)[8:] == bytes(echo6[IPv6])[:1232]       # RFC 4443: up to 1280 bytes
    assert _checksums_ok(v4) and _checksums_ok(v6)


# -- the example and Open vSwitch --------------------------------------------------------
def test_microseg_example(tmp_path):
    dpu = Dpu.load(ROOT / "pipelines" / "microseg.toml")
    stats = dpu.run_pcaps(out_dir=tmp_path)
    assert stats.drop_counts() == {"action_drop": 2, "rejected": 4}
    back = {n: [p for p in rdpcap(str(tmp_path / f"{n}.pcap")) if TCP in p and p[TCP].flags.R
                or ICMP in p and p[ICMP].type == 3] for n in ("p1", "p2")}
    assert len(back["p2"]) == 3 and len(back["p1"]) == 1       # web's RSTs, the client's ICMP error


def _without_reject(text):
    return text.replace('action = "reject"', 'action = "drop"')


def _ovs_compare(tmp_path, cfg_path, packets):
    """softdpu's outputs of `packets` [(port name, frame)] == OVS's with the compiled flows (--ovs)."""
    cfg = config.load(cfg_path)
    per_port = {}
    for i, (port, frame) in enumerate(packets):
        per_port.setdefault(port, []).append((T0 + i * 1_000_000, frame))
    inputs = {}
    for port, records in per_port.items():
        inputs[port] = tmp_path / f"in-{port}.pcap"
        write_pcap(inputs[port], records)
    dpu = Dpu(cfg)
    dpu.run_pcaps(inputs=inputs, out_dir=tmp_path / "sd")
    sd = {p.name: read_pcap(tmp_path / "sd" / f"{p.name}.pcap") for p in cfg.ports}
    flows = "\n".join(policy.compile_flows(cfg.firewall, ovs=True)) + "\n" + cfg.flows.read_text()
    with OvsDummy(tmp_path / "ovs", ports=port_specs(cfg)) as ovs:
        ovs.add_flows(flows)
        ovs.inject(packets)
        ov = ovs.outputs()
    for name in sd:
        assert [f.hex() for f in sd[name]] == [f.hex() for f in ov[name]], name
    return sd


def test_microseg_agrees_with_ovs_without_reject(tmp_path):
    require_ovs()
    src = (ROOT / "pipelines" / "microseg.toml").read_text()
    src = _without_reject(src).replace('"../fixtures/', f'"{ROOT}/fixtures/')
    path = tmp_path / "microseg.toml"
    path.write_text(src)
    (tmp_path / "microseg.flows").write_text((ROOT / "pipelines" / "microseg.flows").read_text())
    cfg = config.load(path)
    packets = [(name, f) for name, f, _ in merge_captures([(p.name, x) for p, x in Dpu(cfg).inputs()])]
    sd = _ovs_compare(tmp_path, path, packets)
    assert sum(map(len, sd.values())) > 30


def test_policy_agrees_with_ovs_on_mixed_traffic(tmp_path):
    require_ovs()
    (tmp_path / "fw.flows").write_text("")
    path = tmp_path / "fw.toml"
    path.write_text(HEAD + _without_reject(POLICY))
    web4, db4 = "10.0.1.5", "10.0.2.10"
    f = []
    for n in (1, 2, 3):
        f.append((f"p{n}", bytes(Ether(src=MAC[n], dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=MAC[n], psrc=f"10.0.0.{n}"))))
    for sport, dport, flags in itertools.product((40000, 40001), (5432, 80, 53), ("S", "SA", "A", "R")):
        f.append(("p1", bytes(eth(1, 2) / IP(src=web4, dst=db4) / TCP(sport=sport, dport=dport, flags=flags,
                                                                        seq=10, ack=20))))
        f.append(("p2", bytes(eth(2, 1) / IP(src=db4, dst=web4) / TCP(sport=dport, dport=sport, flags=flags,
                                                                        seq=20, ack=11))))
    f.append(("p1", bytes(eth(1, 2) / IPv6(src="fd00:1::5", dst="fd00:2::9") / TCP(dport=5432, flags="S"))))
    f.append(("p2", bytes(eth(2, 1) / IPv6(src="fd00:2::9", dst="fd00:1::5") / TCP(sport=5432, flags="SA", ack=1))))
    f.append(("p1", bytes(eth(1, 2) / IP(src=web4, dst=db4) / UDP(sport=1, dport=53))))
    f.append(("p3", bytes(eth(3, 2) / IP(src="1.2.3.4", dst=db4) / ICMP(type=8))))
    f.append(("p2", bytes(eth(2, 3) / IP(src=db4, dst="1.2.3.4") / ICMP(type=0))))
    f.append(("p2", bytes(eth(2, 3) / IP(src=db4, dst="1.2.3.4") / ICMP(type=0, id=5))))
    _ovs_compare(tmp_path, path, f)
