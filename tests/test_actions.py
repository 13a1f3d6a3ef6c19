"""The action interpreter against Open vSwitch, byte for byte, and its drop reasons.

Each case runs the same .flows and the same packets through softdpu and a
private OVS (ovs_oracle.OvsDummy, one per module) and compares every port's
output.  Cases: each action alone; replication with rewrites in between;
multi-table and resubmit chains; `normal` learning and flooding over access
and trunk ports; and N_RANDOM seeded random (rules, packets) cases mixing
rewrites, resubmits, several tables and normal.  Drop reasons the
interpreter adds are checked on softdpu's counters.
"""
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ovs_oracle import OvsDummy, read_pcap, require_ovs, write_pcap
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from softdpu.pipeline import Dpu
from softdpu.stages.flows.syntax import parse_text
from softdpu.stages.flows.stage import FlowTables
from softdpu.batch import Batch

PORTS4 = {"p1": {"ofport": 1}, "p2": {"ofport": 2}, "p3": {"ofport": 3}, "p4": {"ofport": 4}}
VLAN_PORTS = {"p1": {"ofport": 1, "tag": 10}, "p2": {"ofport": 2, "tag": 20},
              "p3": {"ofport": 3, "trunks": [10, 20]}, "p4": {"ofport": 4}}
T0 = 1_764_000_000 * 10**9
N_RANDOM = 200
SEED = 20251125


@pytest.fixture(scope="module")
def ovs(tmp_path_factory):
    require_ovs()
    with OvsDummy(tmp_path_factory.mktemp("ovs"), ports=PORTS4) as o:
        yield o


def softdpu_run(tmp_path, flows_text, packets, ports=PORTS4, batch=8):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "case.flows").write_text(flows_text)
    lines = ["[pipeline]", 'name = "case"', 'flows = "case.flows"', f"batch = {batch}"]
    for name, spec in ports.items():
        lines += ["[[port]]", f'name = "{name}"', f"ofport = {spec['ofport']}", 'type = "pcap"']
        if "tag" in spec:
            lines.append(f"tag = {spec['tag']}")
        if "trunks" in spec:
            lines.append(f"trunks = {list(spec['trunks'])}")
    (tmp_path / "case.toml").write_text("\n".join(lines) + "\n")
    per_port = {}
    for i, (port, frame) in enumerate(packets):
        per_port.setdefault(port, []).append((T0 + i * 1_000_000, bytes(frame)))
    inputs = {}
    for port, records in per_port.items():
        inputs[port] = tmp_path / f"in-{port}.pcap"
        write_pcap(inputs[port], records)
    dpu = Dpu.load(tmp_path / "case.toml")
    stats = dpu.run_pcaps(inputs=inputs, out_dir=tmp_path / "out")
    out = {name: read_pcap(tmp_path / "out" / f"{name}.pcap") for name in ports}
    return dpu, stats, out


def run_case(ovs, tmp_path, flows_text, packets, ports=PORTS4, batch=8):
    packets = [(p, bytes(f)) for p, f in packets]
    dpu, stats, sd = softdpu_run(tmp_path, flows_text, packets, ports, batch)
    ovs.reset(ports=ports)
    ovs.add_flows(flows_text)
    ovs.inject(packets)
    ov = ovs.outputs()
    for port in ports:
        a, b = sd.get(port, []), ov.get(port, [])
        if a != b:
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            src = [f for _, f in packets]
            pytest.fail("\n".join([
                f"port {port}: softdpu sent {len(a)} frames, OVS {len(b)}; first difference at {k}",
                f"  softdpu: {a[k].hex() if k < len(a) else '(none)'}",
                f"  OVS:     {b[k].hex() if k < len(b) else '(none)'}",
                "flows:", flows_text, *stats.table(),
                "trace of the first input:", ovs.trace(packets[0][0], src[0])]), pytrace=False)
    return dpu, stats, sd


def rx(stats):
    return stats.rx, stats.left, stats.dropped


# -- packets ---------------------------------------------------------------------------
A, B, C, D = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c", "02:00:00:00:00:0d"


def udp4(src=A, dst=B, ttl=64, tos=0, sport=1000, dport=53, ip_src="10.0.0.1", ip_dst="10.0.0.2"):
    return Ether(src=src, dst=dst) / IP(src=ip_src, dst=ip_dst, ttl=ttl, tos=tos) / \
        UDP(sport=sport, dport=dport) / Raw(b"x" * 20)


def tcp4(src=A, dst=B, ttl=64):
    return Ether(src=src, dst=dst) / IP(src="10.1.0.1", dst="10.2.0.2", ttl=ttl) / \
        TCP(sport=4000, dport=80, flags="S") / Raw(b"hello")


def tcp6(src=A, dst=B, hlim=64):
    return Ether(src=src, dst=dst) / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=hlim) / \
        TCP(sport=4000, dport=443) / Raw(b"v6")


def icmp4(src=A, dst=B):
    return Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.9") / ICMP(type=8) / Raw(b"ping")


def arp(src=A, dst="ff:ff:ff:ff:ff:ff"):
    return Ether(src=src, dst=dst) / ARP(op=1, hwsrc=src, psrc="10.0.0.1", pdst="10.0.0.2")


def tagged(vid, inner, pcp=0):
    e = inner[Ether]
    return Ether(src=e.src, dst=e.dst) / Dot1Q(vlan=vid, prio=pcp) / e.payload


MIX = [udp4(), tcp4(), tcp6(), icmp4(), arp(), tagged(5, udp4()), tagged(7, tcp6(), pcp=3),
       udp4(ttl=1), tcp6(hlim=1), Ether(src=A, dst=B, type=0x88B5) / Raw(b"z" * 46)]


# -- each action alone -----------------------------------------------------------------
SINGLE = [
    "actions=output:2",
    "actions=2,3",
    "actions=in_port",
    "actions=output:1",
    "actions=flood",
    "actions=all",
    "actions=drop",
    "actions=",
    "actions=mod_vlan_vid:100,output:2",
    "actions=mod_vlan_pcp:5,output:2",
    "actions=strip_vlan,output:2",
    "actions=pop_vlan,output:2",
    "actions=push_vlan:0x8100,output:2",
    "actions=push_vlan:0x8100,mod_vlan_vid:33,output:2",
    "actions=mod_dl_src:02:11:22:33:44:55,mod_dl_dst:02:66:77:88:99:aa,output:2",
    "actions=mod_nw_src:192.168.1.1,mod_nw_dst:192.168.1.2,output:2",
    "actions=mod_nw_tos:0x28,output:2",
    "ip,actions=mod_nw_ttl:9,output:2",
    "ipv6,actions=mod_nw_ttl:0,output:2",
    "actions=mod_tp_src:1234,mod_tp_dst:4321,output:2",
    "actions=dec_ttl,output:2",
    "ip,actions=set_field:172.16.0.1->nw_src,set_field:172.16.0.9->nw_dst,output:2",
    "actions=set_field:0x50/0xf0->reg3,set_field:0xa/0xf->reg3,move:NXM_NX_REG3[0..7]->NXM_OF_ETH_SRC[8..15],"
    "output:2",
    "udp,actions=set_field:5555->udp_dst,output:2",
    "tcp,actions=set_field:8080->tcp_src,output:2",
    "ipv6,actions=set_field:2001:db8::99->ipv6_dst,set_field:5->ipv6_label,output:2",
    "ipv6,actions=set_field:7->nw_ttl,output:2",
    "arp,actions=set_field:02:00:00:00:00:99->arp_sha,set_field:10.9.9.9->arp_tpa,"
    "set_field:2->arp_op,output:2",
    "actions=set_field:02:00:00:00:00:77->eth_dst,output:2",
    "actions=load:0x020000000042->NXM_OF_ETH_DST[],output:2",
    "actions=load:0xab->NXM_OF_ETH_SRC[0..7],output:2",
    "ip,actions=load:0x0a0a0a0a->NXM_OF_IP_SRC[],output:2",
    "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],output:2",
    "ip,actions=move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],output:2",
    "actions=load:5->NXM_NX_REG0[0..15],move:NXM_NX_REG0[0..7]->NXM_OF_ETH_DST[0..7],output:2",
    "ipv6,actions=move:NXM_NX_IPV6_SRC[]->NXM_NX_IPV6_DST[],output:2",
    "actions=set_tunnel:5,output:2,clear_actions,write_metadata:0x10/0xff",
    "vlan_tci=0x1000/0x1000,actions=set_field:9->vlan_vid,set_field:2->vlan_pcp,output:2",
    "dl_vlan=5,actions=load:0x123->OXM_OF_VLAN_VID[],output:2",
]


@pytest.mark.parametrize("flow", SINGLE)
def test_single_action_agrees_with_ovs(ovs, tmp_path, flow):
    packets = [("p1", f) for f in MIX] + [("p3", udp4(src=C))]
    run_case(ovs, tmp_path, flow + "\n", packets)


def test_replication_with_rewrites_between_outputs(ovs, tmp_path):
    flows = ("ip,actions=mod_dl_dst:02:00:00:00:00:99,output:2,mod_nw_dst:10.9.9.9,output:3,"
             "output:4,strip_vlan,mod_tp_dst:99,output:1\n"
             "ipv6,actions=output:2,set_field:2001:db8::5->ipv6_src,output:3,dec_ttl,output:4\n")
    packets = [("p1", f) for f in MIX[:8]] + [("p2", tagged(9, udp4()))]
    dpu, stats, out = run_case(ovs, tmp_path, flows, packets)
    assert len(out["p3"]) > 0 and out["p2"][0] != out["p3"][0]
    assert stats.left + stats.dropped == stats.rx


CHAINS = [
    "table=0,actions=resubmit(,1),output:4\ntable=1,ip,actions=mod_nw_ttl:3,output:2\n"
    "table=1,priority=1,actions=output:3\n",
    "table=0,in_port=1,actions=load:7->NXM_NX_REG1[],resubmit(,2)\n"
    "table=2,reg1=7,ip,actions=dec_ttl,goto_table:3\ntable=2,priority=1,actions=output:4\n"
    "table=3,actions=output:2\n",
    "table=0,actions=goto_table:1\ntable=1,udp,actions=mod_tp_dst:7,goto_table:5\n"
    "table=5,udp,tp_dst=7,actions=output:3\ntable=5,priority=1,actions=output:4\n",
    "table=0,actions=resubmit:2\ntable=0,in_port=2,actions=output:3,resubmit(3,1)\n"
    "table=1,in_port=3,actions=output:4\ntable=1,in_port=1,actions=output:2\n",
    "table=0,actions=load:5->OXM_OF_METADATA[],goto_table:1\ntable=1,metadata=5,actions=resubmit(,2),"
    "resubmit(,2),output:2\ntable=2,actions=mod_dl_src:02:00:00:00:00:01,output:3\n",
    "table=0,actions=output:2,goto_table:1\n",    # goto a table with no flows: a miss after an output
    "table=0,ip,actions=goto_table:1\n",           # a miss with no output: no_match
    "table=0,actions=resubmit(,0)\n",              # unbounded recursion: too deep
    # push_vlan makes ovs-ofctl use OpenFlow 1.1+ for the whole file, where mod_vlan_* always push
    "table=0,in_port=2,actions=push_vlan:0x8100,output:3\ntable=0,in_port=1,actions=mod_vlan_vid:44,output:2\n"
    "table=0,in_port=3,dl_vlan=5,actions=mod_vlan_pcp:3,output:4\n",
    "table=0,tcp,actions=dec_ttl,resubmit(,0),output:2\n",   # 63 levels, each copy its own TTL
    "table=0,ip,actions=goto_table:1\ntable=1,tcp,actions=dec_ttl,resubmit(,0),normal\n",
]


@pytest.mark.parametrize("flows", CHAINS)
def test_tables_and_resubmit_chains_agree_with_ovs(ovs, tmp_path, flows):
    packets = [("p1", f) for f in MIX] + [("p2", udp4()), ("p3", tcp4(ttl=64)), ("p1", tcp4(ttl=200))]
    run_case(ovs, tmp_path, flows, packets)


def test_normal_learning_and_flooding_with_vlans(ovs, tmp_path):
    """4 ports: p1 access VLAN 10, p2 access VLAN 20, p3 trunk 10+20, p4 trunk (all VLANs)."""
    seq = [
        ("p1", udp4(src=A, dst=B)),                   # unknown: flood VLAN 10 -> p3 (tagged), p4
        ("p3", tagged(10, udp4(src=B, dst=A))),       # learned A on p1: only p1, untagged
        ("p1", udp4(src=A, dst=B)),                   # learned B on p3: tagged 10
        ("p2", udp4(src=C, dst="ff:ff:ff:ff:ff:ff")), # broadcast in VLAN 20
        ("p4", tagged(20, udp4(src=D, dst=C))),       # to C on p2
        ("p4", udp4(src=D, dst=C)),                   # untagged on p4: VLAN 0, C unknown there
        ("p3", tagged(30, udp4(src=D, dst=A))),       # VLAN 30 not on p3: refused
        ("p1", tagged(10, udp4(src=A, dst=B))),       # tagged on an access port: refused
        ("p1", tagged(0, udp4(src=A, dst=D), pcp=5)), # priority tag on access: VLAN 10
        ("p2", arp(src=C)),
        ("p3", tagged(20, tcp6(src=B, dst=C), pcp=2)),
        ("p1", Ether(src=A, dst="01:80:c2:00:00:00") / Raw(b"s" * 50)),  # reserved multicast
        ("p3", tagged(10, udp4(src=A, dst=B))),       # A moves to p3
        ("p2", udp4(src=C, dst=A)),
        ("p1", udp4(src=B, dst=A)),
    ]
    flows = "actions=normal\n"
    dpu, stats, out = run_case(ovs, tmp_path, flows, seq, ports=VLAN_PORTS)
    assert stats.drop_counts().get("vlan_refused") == 2
    run_case(ovs, tmp_path / "2", "priority=10,ip,actions=mod_nw_tos:8,normal\nactions=normal\n", seq,
             ports=VLAN_PORTS, batch=3)


# -- random cases ------------------------------------------------------------------------
MACS = [A, B, C, D, "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"]


def random_packet(rng):
    src, dst = rng.choice(MACS[:4]), rng.choice(MACS)
    kind = rng.randrange(6)
    f = [udp4(src=src, dst=dst, ttl=rng.choice([1, 2, 64]), sport=rng.choice([53, 1000])),
         tcp4(src=src, dst=dst), tcp6(src=src, dst=dst, hlim=rng.choice([1, 64])),
         icmp4(src=src, dst=dst), arp(src=src, dst=dst),
         Ether(src=src, dst=dst, type=0x88B5) / Raw(b"q" * 46)][kind]
    if rng.random() < 0.3:
        f = tagged(rng.choice([0, 10, 20, 30]), f, pcp=rng.choice([0, 3]))
    return f


REWRITES = ["mod_dl_src:02:00:00:00:00:e1", "mod_dl_dst:02:00:00:00:00:e2", "mod_nw_src:10.7.7.7",
            "mod_nw_dst:10.8.8.8", "mod_nw_tos:0x20", "mod_tp_src:777", "mod_tp_dst:888",
            "dec_ttl", "strip_vlan", "mod_vlan_vid:44", "mod_vlan_pcp:6", "push_vlan:0x8100",
            "load:0x1->NXM_NX_REG0[]", "load:0x2->NXM_NX_REG0[]", "move:NXM_OF_ETH_SRC[0..15]->NXM_NX_REG1[0..15]",
            "set_field:0x3->reg2"]
MATCHES = ["", "ip", "udp", "tcp", "ipv6", "arp", "dl_vlan=10", "in_port=1", "in_port=3",
           "reg0=1", "reg0=2", "dl_dst=ff:ff:ff:ff:ff:ff", "dl_src=02:00:00:00:00:0a"]


def random_flows(rng):
    lines = []
    n_tables = rng.randint(1, 3)
    for t in range(n_tables):
        for _ in range(rng.randint(1, 4)):
            acts = []
            for _ in range(rng.randint(0, 4)):
                x = rng.random()
                if x < 0.45:
                    acts.append(rng.choice(REWRITES))
                elif x < 0.75:
                    acts.append(f"output:{rng.randint(1, 4)}")
                elif x < 0.8:
                    acts.append(rng.choice(["in_port", "flood", "all", "normal"]))
                elif x < 0.9 and n_tables > 1:
                    acts.append(f"resubmit(,{rng.randrange(n_tables)})")
                else:
                    acts.append("normal")
            if t + 1 < n_tables and rng.random() < 0.4:
                acts.append(f"goto_table:{rng.randint(t + 1, n_tables - 1)}")
            match = rng.choice(MATCHES)
            prio = rng.randrange(1, 65535)
            head = f"table={t},priority={prio}" + (f",{match}" if match else "")
            lines.append(f"{head},actions={','.join(acts)}")
    return "\n".join(lines) + "\n"


def ovs_accepts(tmp_path, flows):
    """Does ovs-ofctl take this flow set (some mixes are unencodable in any one OpenFlow version)?"""
    f = tmp_path / "try.flows"
    f.write_text(flows)
    for proto in ("OpenFlow10,NXM", "OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15"):
        r = subprocess.run(["ovs-ofctl", "-O", proto, "parse-flows", str(f)], capture_output=True, text=True)
        if r.returncode == 0:
            return True
    return False


# Known differences, strict: they fail on purpose once softdpu agrees.
KNOWN = {
}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(reason=KNOWN[c], strict=True))
                                  if c in KNOWN else c for c in range(N_RANDOM)])
def test_random_cases_agree_with_ovs(ovs, tmp_path, case):
    rng = random.Random(SEED * 1000 + case)
    tmp_path.mkdir(parents=True, exist_ok=True)
    while True:
        flows = random_flows(rng)
        if ovs_accepts(tmp_path, flows):
            break
    packets = [(rng.choice(["p1", "p2", "p3", "p4"]), random_packet(rng)) for _ in range(rng.randint(3, 12))]
    ports = VLAN_PORTS if rng.random() < 0.3 else PORTS4
    run_case(ovs, tmp_path, flows, packets, ports=ports, batch=rng.choice([1, 4, 16]))


# -- softdpu's own counters -------------------------------------------------------------
def _stage_run(flows_text, frames, ofports=(1, 2, 3, 4), clones=None, fanout=4):
    from softdpu.stages.parse import Parse
    stage = FlowTables(parse_text(flows_text), ofports=list(ofports))
    b = Batch(size=len(frames), fanout=fanout, clones=clones)
    for f in frames:
        b.append(bytes(f), in_port=1)
    Parse().run(b)
    stage.run(b)
    return stage, b


def test_drop_reasons_ttl_depth_and_counters():
    from softdpu import drops
    stage, b = _stage_run("in_port=1,actions=dec_ttl,output:2\n", [udp4(ttl=1), udp4(ttl=5)])
    assert b.meta[0, 5] == drops.TTL_EXPIRED and b.n_tx == 1
    stage, b = _stage_run("actions=output:2,resubmit(,0)\n", [udp4()])
    assert b.meta[0, 5] == drops.RESUBMIT_DEPTH and b.n_tx == 0
    assert stage.program.n_packets[0] == 65


def test_clone_and_tx_exhaustion_are_counted():
    from softdpu import drops
    flows = "ip,actions=mod_nw_ttl:1,output:2,mod_nw_ttl:2,output:3\n"
    stage, b = _stage_run(flows, [udp4(), udp4()], clones=1)
    assert b.n_tx == 1 and stage.lost_copies()["clone_full"] == 3
    assert b.meta[0, 5] == 0 and b.meta[1, 5] == drops.CLONE_FULL
    stage, b = _stage_run("ip,actions=mod_nw_ttl:1,output:2\n", [udp4(), udp4()], clones=1)
    assert b.meta[1, 5] == drops.CLONE_FULL
    stage, b = _stage_run("actions=output:2,output:3,output:4\n", [udp4()], fanout=2)
    assert b.n_tx == 2 and stage.lost_copies()["tx_full"] == 1
    stage, b = _stage_run("actions=output:2\n", [udp4(), udp4(), udp4()], fanout=0)
    assert (b.meta[:3, 5] == drops.TX_FULL).all()


def test_goto_table_chain_sizes_the_fanout():
    """A goto_table chain runs one rule per table, so the tx list must hold the sum of the
    tables' largest output counts (random case 106 lost copies as tx_full when it held only
    the largest single rule's)."""
    flows = "table=0,actions=output:2,goto_table:1\ntable=1,actions=normal,output:1\n"
    assert FlowTables(parse_text(flows), ofports=[1, 2, 3, 4]).max_outputs == 1 + 4 + 1

def test_replicas_count_once_in_stats(tmp_path):
    flows = "actions=mod_dl_dst:02:00:00:00:00:99,output:2,mod_nw_dst:10.9.9.9,output:3,output:4\n"
    dpu, stats, out = softdpu_run(tmp_path, flows, [("p1", udp4()), ("p1", udp4())])
    assert stats.rx == 2 and stats.left == 2 and stats.dropped == 0
    assert len(out["p2"]) == len(out["p3"]) == len(out["p4"]) == 2
    assert out["p3"][0] == out["p4"][0] != out["p2"][0]
    assert dpu.flows.program.n_packets[0] == 2
    assert np.all(dpu.flows.program.n_bytes[:1] == 2 * len(udp4()))


def test_lost_copies_show_in_the_summary(tmp_path):
    dpu, stats, out = softdpu_run(tmp_path, "actions=output:2,output:3\n", [("p1", udp4())])
    dpu.flows.replace_rules(parse_text("actions=output:2,output:3,output:4,output:2\n"))  # fanout stays 2
    dpu.batch.clear()
    for _ in range(8):                      # a full batch: 8 packets x 4 copies, room for 16
        dpu.batch.append(bytes(udp4()), in_port=1)
    dpu.process(dpu.batch)
    assert dpu.batch.n_tx == 16 and dpu.flows.lost_copies()["tx_full"] == 16
    assert any("lost copies tx_full" in line for line in dpu.stats.table())


def test_random_action_lines_accepted_as_ovs_ofctl_accepts(tmp_path):
    """softdpu takes a random flow line exactly when ovs-ofctl does (in some OpenFlow version)."""
    require_ovs()
    from softdpu.errors import FlowSyntaxError
    from softdpu.stages.flows.syntax import parse_line
    rng = random.Random(SEED + 7)
    lines = [line for _ in range(40) for line in random_flows(rng).splitlines()]
    for line in lines:
        try:
            parse_line(line)
            ours = True
        except FlowSyntaxError:
            ours = False
        assert ours == ovs_accepts(tmp_path, line + "\n"), line


def test_port_rewrite_on_a_first_fragment(ovs, tmp_path):
    frag = Ether(src=A, dst=B) / IP(flags="MF", src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b"x" * 16)
    run_case(ovs, tmp_path, "udp,actions=mod_tp_src:777,output:2\n", [("p1", frag)])
