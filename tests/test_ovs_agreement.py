"""softdpu against Open vSwitch, byte for byte: same .flows, same input, same output per port.

One private ovs-vswitchd (dummy datapath, see ovs_oracle.py) serves the whole
module; each case resets its flows and ports.  Cases:

  - every example pipeline (pipelines/*.toml) on its default inputs;
  - N_RANDOM seeded random cases: random rule sets in what softdpu runs today
    (table 0, priority, in_port, dl_src/dl_dst with masks, dl_type, output:N,
    drop, empty actions) over 4 ports, and random scapy frames on random ports;
  - the harness itself: injection order across ports is output order;
  - where softdpu and OVS are known to disagree, xfails naming the difference
    (the traffic ones strict: they fail, on purpose, once softdpu agrees);
  - flow syntax: lines softdpu accepts must be accepted by ovs-ofctl, lines
    OVS rejects must be rejected by softdpu.

A mismatch reports the first differing frame of the first differing port, and
OVS's ofproto/trace of the input packet that produced it.

    CI=true python -m pytest tests/test_ovs_agreement.py -q
"""
import random
from pathlib import Path

import pytest
from ovs_oracle import (OvsDummy, merge_captures, parse_flow, port_specs, read_pcap, require_ovs,
                        write_pcap)
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, LLC, SNAP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from softdpu import config
from softdpu.errors import FlowSyntaxError
from softdpu.pipeline import Dpu
from softdpu.stages.flows.syntax import parse_line

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.toml"))
PORTS4 = {"p1": 1, "p2": 2, "p3": 3, "p4": 4}
N_RANDOM = 50
SEED = 20251124
T0 = 1_764_000_000 * 10**9  # ns


@pytest.fixture(scope="module")
def ovs(tmp_path_factory):
    require_ovs()
    with OvsDummy(tmp_path_factory.mktemp("ovs"), ports=PORTS4) as o:
        yield o


# -- running one case on both sides ---------------------------------------------


def injectable(cfg, merged):
    """The frames OVS is given: what softdpu also takes in.

    softdpu drops, before any flow, records cut by the capture's snaplen and frames
    over max_frame (counted as snaplen_truncated / frame_too_big), and frames under
    14 bytes (parse_trunc_l2), which OVS's netdev-dummy/receive refuses anyway.
    """
    return [(port, frame) for port, frame, wirelen in merged
            if wirelen in (None, len(frame)) and 14 <= len(frame) <= cfg.max_frame]


def softdpu_outputs(dpu, out_dir):
    return {p.name: read_pcap(Path(out_dir) / f"{p.name}.pcap") for p in dpu.ports}


def _explain(ovs, injected, port, k, sd, ov):
    """The input packet behind the k-th frame out of `port` on one side, and OVS's trace of it."""
    for frames in (sd, ov):
        if k < len(frames):
            target = frames[k]
            nth = frames[:k].count(target)
            hits = [(p, f) for p, f in injected if f == target]
            if nth < len(hits):
                p, f = hits[nth]
                return (f"input packet: on {p}, {len(f)} bytes {f.hex()}\n"
                        f"ovs-appctl ofproto/trace {ovs.bridge} in_port={ovs.ofport[p]} <packet>"
                        f" (OVS state as the case left it):\n{ovs.trace(p, f)}")
    if injected:
        p, f = injected[0]
        return f"(no input equals the differing frame; trace of the first input)\n{ovs.trace(p, f)}"
    return "(no input packets)"


def assert_same(ovs, injected, sd_out, ovs_out, flows_text, stats=None):
    for port in sorted(set(sd_out) | set(ovs_out)):
        sd, ov = sd_out.get(port, []), ovs_out.get(port, [])
        if sd == ov:
            continue
        k = next((i for i, (a, b) in enumerate(zip(sd, ov)) if a != b), min(len(sd), len(ov)))
        msg = [f"port {port}: softdpu sent {len(sd)} frames, OVS {len(ov)}; first difference at frame {k}",
               f"  softdpu: {sd[k].hex() if k < len(sd) else '(none)'}",
               f"  OVS:     {ov[k].hex() if k < len(ov) else '(none)'}",
               "flows:", flows_text.rstrip()]
        if stats is not None:
            msg += ["softdpu summary:", *("  " + line for line in stats.table() if line.strip())]
        msg.append(_explain(ovs, injected, port, k, sd, ov))
        pytest.fail("\n".join(msg), pytrace=False)


def run_case(ovs, tmp_path, flows_text, packets, ports=PORTS4, max_frame=1600):
    """packets: [(port, frame)] in arrival order (timestamps 1 ms apart).  Both sides, compared."""
    assert all(14 <= len(f) <= max_frame for _, f in packets)
    tmp_path.mkdir(parents=True, exist_ok=True)
    flows = tmp_path / "case.flows"
    flows.write_text(flows_text)
    lines = ["[pipeline]", 'name = "case"', 'flows = "case.flows"', "batch = 8", f"max_frame = {max_frame}"]
    for name, ofport in ports.items():
        lines += ["[[port]]", f'name = "{name}"', f"ofport = {ofport}", 'type = "pcap"']
    (tmp_path / "case.toml").write_text("\n".join(lines) + "\n")
    per_port = {}
    for i, (port, frame) in enumerate(packets):
        per_port.setdefault(port, []).append((T0 + i * 1_000_000, frame))
    inputs = {}
    for port, records in per_port.items():
        inputs[port] = tmp_path / f"in-{port}.pcap"
        write_pcap(inputs[port], records)
    dpu = Dpu.load(tmp_path / "case.toml")
    stats = dpu.run_pcaps(inputs=inputs, out_dir=tmp_path / "softdpu")
    sd_out = softdpu_outputs(dpu, tmp_path / "softdpu")

    ovs.reset(ports=ports)
    ovs.add_flows(flows)
    ovs.inject(packets)
    assert_same(ovs, packets, sd_out, ovs.outputs(), flows_text, stats)
    return sd_out


# -- the example pipelines ------------------------------------------------------
@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_pipeline_agrees_with_ovs(ovs, pipeline, tmp_path):
    cfg = config.load(pipeline)
    if any(port.type != "pcap" for port in cfg.ports):
        pytest.skip("tunnel ports: compared with OVS's tunnels in tests/test_tunnel_ovs.py")
    if cfg.firewall is not None:
        pytest.skip("[firewall]: its compiled flows are compared with OVS in tests/test_policy.py")
    if cfg.esp is not None:
        pytest.skip("ESP: OVS's userspace datapath has no IPsec; checked against scapy and tshark in "
                    "tests/test_esp_*.py")
    dpu = Dpu(cfg)
    inputs = [(p.name, path) for p, path in dpu.inputs()]
    stats = dpu.run_pcaps(out_dir=tmp_path)
    sd_out = softdpu_outputs(dpu, tmp_path)

    packets = injectable(cfg, merge_captures(inputs))
    assert packets, "an example pipeline must ship a default input"
    ovs.reset(ports=port_specs(cfg))
    ovs.add_flows(cfg.flows)
    ovs.inject(packets)
    assert_same(ovs, packets, sd_out, ovs.outputs(), cfg.flows.read_text(), stats)


# -- random rule sets and frames ------------------------------------------------
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03", "02:00:00:00:01:02",
        "52:54:00:12:34:56", "00:1b:21:aa:bb:cc", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb",
        "33:33:00:00:00:01", "01:80:c2:00:00:0e"]
MAC_MASKS = ["ff:ff:ff:ff:ff:ff", "ff:ff:ff:00:00:00", "01:00:00:00:00:00", "00:00:00:00:00:ff",
             "fe:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "00:00:00:ff:ff:00"]
DL_TYPES = [0x0800, 0x0806, 0x86DD, 0x88CC, 0x05FF, 0x1234, 0x8100, 0x9000]


def _mac(b):
    return ":".join(f"{x:02x}" for x in b)


def _random_mac(rng):
    return rng.choice(MACS) if rng.random() < 0.8 else _mac(rng.randbytes(6))


def _masked(rng, mac):
    """A MAC match: exact half the time, else value/mask with a mask from the pool or random."""
    if rng.random() < 0.5:
        return mac
    return f"{mac}/{rng.choice(MAC_MASKS) if rng.random() < 0.7 else _mac(rng.randbytes(6))}"


def _dl_type_guess(frame):
    """Roughly the dl_type OVS gives a frame (after up to two VLAN tags; 802.3: SNAP type or 0x05ff).

    Only steers rule generation towards matching; the verdict is OVS's."""
    off = 12
    for _ in range(2):
        if int.from_bytes(frame[off:off + 2], "big") in (0x8100, 0x88A8):
            off += 4
    t = int.from_bytes(frame[off:off + 2], "big")
    if t >= 0x600:
        return t
    snap = frame[off + 2: off + 10]
    if len(snap) == 8 and snap[:6] == b"\xaa\xaa\x03\x00\x00\x00" and int.from_bytes(snap[6:], "big") >= 0x600:
        return int.from_bytes(snap[6:], "big")
    return 0x05FF


def random_rules(rng, packets):
    """A random table-0 rule set; most rules take their match values from one of the packets."""
    n = rng.randint(1, 12)
    priorities = rng.sample(range(0, 65536), n)  # distinct: OVS leaves equal-priority overlaps undefined
    if rng.random() < 0.3:
        priorities[0] = 32768
    lines = []
    for prio in priorities:
        parts = []
        if rng.random() < 0.15:
            parts.append("table=0")
        if rng.random() < 0.15:
            c = rng.randint(0, 1000)
            parts.append(f"cookie={c:#x}" if rng.random() < 0.5 else f"cookie={c}")
        if prio != 32768 or rng.random() < 0.5:
            parts.append(f"priority={prio}")
        if rng.random() < 0.7:   # values from a packet of the case
            port, frame = rng.choice(packets)
            in_port, src, dst, dl_type = PORTS4[port], _mac(frame[6:12]), _mac(frame[:6]), _dl_type_guess(frame)
        else:
            in_port, src, dst, dl_type = (rng.choice([1, 2, 3, 4, 5]), _random_mac(rng), _random_mac(rng),
                                          rng.choice(DL_TYPES))
        if rng.random() < 0.5:
            parts.append(f"in_port={in_port}")
        if rng.random() < 0.4:
            parts.append(f"dl_src={_masked(rng, src)}")
        if rng.random() < 0.5:
            parts.append(f"dl_dst={_masked(rng, dst)}")
        if rng.random() < 0.4:
            parts.append(f"dl_type={dl_type:#06x}" if rng.random() < 0.7 else f"dl_type={dl_type}")
        if len(parts) == sum(x.startswith(("table=", "cookie=", "priority=")) for x in parts) \
                and rng.random() < 0.7:  # mostly no match-all rules: they would shadow the rest
            parts.append(f"dl_type={dl_type:#06x}")
        r = rng.random()
        if r < 0.1:
            actions = "drop"
        elif r < 0.18:
            actions = ""
        else:
            outs = [rng.choice([1, 2, 3, 4, 1, 2, 3, 4, 5]) for _ in range(rng.choice([1, 1, 1, 2, 2, 3]))]
            actions = ",".join(f"output:{o}" if rng.random() < 0.75 else str(o) for o in outs)
        sep = "," if rng.random() < 0.8 else " "
        lines.append(sep.join(parts + [f"actions={actions}"]))
    return "\n".join(lines) + "\n"


def _ip4(rng):
    return f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def random_frame(rng):
    src = rng.choice(MACS[:6]) if rng.random() < 0.9 else rng.choice(MACS)
    dst = rng.choice(MACS)
    pay = rng.randbytes(rng.choice([0, 0, 4, 18, 60, 200]))
    ip = IP(src=_ip4(rng), dst=_ip4(rng), ttl=rng.randint(1, 255), tos=rng.getrandbits(8))
    udp = UDP(sport=rng.randint(1, 65535), dport=rng.randint(1, 65535))
    kind = rng.randrange(17)
    if kind == 0:
        p = Ether(src=src, dst=dst) / ip / TCP(sport=rng.randint(1, 65535), dport=rng.choice([80, 443, 22]),
                                               flags=rng.choice(["S", "SA", "A", "PA", "F", "R"])) / pay
    elif kind == 1:
        p = Ether(src=src, dst=dst) / ip / udp / pay
    elif kind == 2:
        p = Ether(src=src, dst=dst) / ip / ICMP(type=rng.choice([0, 8, 3, 11])) / pay
    elif kind == 3:
        p = Ether(src=src, dst=dst) / IPv6(src="fd00::1", dst=f"fd00::{rng.randint(2, 99):x}") / udp / pay
    elif kind == 4:
        p = Ether(src=src, dst=dst) / IPv6(src="fd00::2", dst="ff02::1") / ICMPv6EchoRequest(id=rng.randint(0, 9))
    elif kind == 5:
        p = Ether(src=src, dst=dst) / ARP(op=rng.choice([1, 2]), hwsrc=src, psrc=_ip4(rng), pdst=_ip4(rng))
    elif kind == 6:
        p = Ether(src=src, dst=dst) / Dot1Q(vlan=rng.randint(0, 4095), prio=rng.randint(0, 7)) / ip / udp / pay
    elif kind == 7:
        p = (Ether(src=src, dst=dst) / Dot1AD(vlan=rng.randint(1, 4094)) / Dot1Q(vlan=rng.randint(1, 4094))
             / ip / udp)
    elif kind == 8:
        p = Ether(src=src, dst=dst) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / ip / udp
    elif kind == 9:
        p = Ether(src=src, dst=dst, type=0x88CC) / Raw(rng.randbytes(30))
    elif kind == 10:
        p = Dot3(src=src, dst=dst) / LLC(dsap=0x42, ssap=0x42, ctrl=3) / Raw(rng.randbytes(38))
    elif kind == 11:
        p = Dot3(src=src, dst=dst) / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(OUI=0, code=0x0800) / ip / udp
    elif kind == 12:
        p = Ether(src=src, dst=dst, type=rng.choice([0x1234, 0x9000, 0x88B5, 0x0600])) / Raw(pay or b"\0" * 10)
    elif kind == 13:
        p = Ether(src=src, dst=dst) / Dot1Q(vlan=rng.randint(1, 4094)) / ARP(hwsrc=src, psrc=_ip4(rng))
    elif kind == 14:
        p = Ether(src=src, dst=dst) / IP(src=_ip4(rng), dst=_ip4(rng), flags="MF", frag=0) / udp / pay
    elif kind == 15:
        p = Ether(src=src, dst=dst) / IP(src=_ip4(rng), dst=_ip4(rng), frag=rng.randint(1, 100), proto=17) / pay
    else:
        p = Ether(src=src, dst=dst) / Dot1Q(vlan=5, type=0x88CC) / Raw(rng.randbytes(20))
    return bytes(p)


@pytest.mark.parametrize("case", range(N_RANDOM), ids=lambda c: f"seed{SEED}-{c}")
def test_random_rules_agree_with_ovs(ovs, case, tmp_path):
    rng = random.Random(SEED * 1000 + case)
    packets = [(rng.choice(list(PORTS4)), random_frame(rng)) for _ in range(rng.randint(5, 60))]
    flows = random_rules(rng, packets)
    run_case(ovs, tmp_path, flows, packets)


def test_jumbo_frames_agree_with_ovs(ovs, tmp_path):
    rng = random.Random(SEED + 1)
    packets = []
    for size in (1514, 1600, 4000, 9000, 9216):
        p = Ether(src=MACS[0], dst=MACS[1]) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP()
        packets.append((rng.choice(["p1", "p2"]), bytes(p / rng.randbytes(size - len(p)))))
    packets.append(("p1", bytes(Ether(src=MACS[0], dst=MACS[1]) / Dot1Q(vlan=7) / IP() / UDP()
                                / rng.randbytes(9216 - 46))))
    out = run_case(ovs, tmp_path, "in_port=1,actions=output:3,output:2\nin_port=2,actions=output:4\n",
                   packets, max_frame=9216)
    on_p1 = [f for p, f in packets if p == "p1"]
    assert out["p2"] == out["p3"] == on_p1 and out["p4"] == [f for p, f in packets if p == "p2"]


# -- the harness ----------------------------------------------------------------
def test_injection_order_is_output_order_across_ports(ovs, tmp_path):
    """Frames injected on three ports and sent out of a fourth leave in injection order."""
    rng = random.Random(SEED)
    base = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP() / UDP())
    packets = [(rng.choice(["p1", "p2", "p3"]), base + i.to_bytes(2, "big")) for i in range(300)]
    flows = "in_port=1,actions=output:4\nin_port=2,actions=output:4\nin_port=3,actions=output:4\n"
    out = run_case(ovs, tmp_path, flows, packets)
    assert out["p4"] == [f for _, f in packets]


def test_reset_forgets_flows_and_outputs(ovs, tmp_path):
    frame = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP() / UDP())
    run_case(ovs, tmp_path / "a", "in_port=1,actions=output:2\n", [("p1", frame)])
    ovs.reset(ports=PORTS4)
    assert ovs.dump_flows().strip() == ""
    ovs.receive("p1", frame)
    assert ovs.outputs() == {p: [] for p in PORTS4}


# -- once disagreements, now agreements --
def test_identical_rule_replaces_the_earlier_one(ovs, tmp_path):
    """Same table, priority and match: OpenFlow's add replaces the earlier flow (the last line wins)."""
    frame = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP() / UDP())
    flows = ("priority=10,in_port=1,actions=output:2\n"
             "priority=10,in_port=1,actions=output:3\n")
    out = run_case(ovs, tmp_path, flows, [("p1", frame)])
    assert out["p3"] == [frame]


MALFORMED = {
    "ipv4-ihl-4": lambda: Ether(src=MACS[0], dst=MACS[1]) / IP(ihl=4) / UDP(),
    "ipv4-total-length-past-frame": lambda: Ether(src=MACS[0], dst=MACS[1]) / IP(len=400) / UDP(),
    "tcp-cut-short": lambda: bytes(Ether(src=MACS[0], dst=MACS[1]) / IP(proto=6) / b"\x00\x50")[:38],
    "vlan-tag-cut-short": lambda: bytes(Ether(src=MACS[0], dst=MACS[1], type=0x8100)) + b"\x00",
    "ip-version-6-in-ipv4": lambda: Ether(src=MACS[0], dst=MACS[1], type=0x0800) / IPv6() / UDP(),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_frames_are_forwarded_like_ovs(ovs, tmp_path, name):
    """OVS extracts what it can from a malformed frame and forwards it by the rules that match;
    softdpu does the same by default (pipeline malformed = "forward") and counts the parse error."""
    frame = bytes(MALFORMED[name]())
    run_case(ovs, tmp_path, "in_port=1,actions=output:2\n", [("p1", frame)])


# -- flow syntax: softdpu accepts only what ovs-ofctl accepts --------------------
# (Every random rule above is also accepted by both: softdpu loads it, ovs-ofctl add-flows too.)
ACCEPTED_BY_BOTH = [
    "in_port=1,actions=output:2",
    "priority=0,actions=drop",
    "priority=65535,in_port=4,actions=1,2,3",
    "table=0,cookie=0x10,dl_type=0x0806,actions=",
    "dl_src=02:00:00:00:00:01/ff:ff:ff:00:00:00,actions=output:1",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=output:2,output:2",
    "dl_dst=1:2:3:4:5:6,actions=drop",
    "in_port=1 dl_type=0x800 actions=2",
    "dl_type=0x05ff,actions=output:3",
    "actions=output:65279",
    "ct_state=+trk-inv,ip,ct_nw_dst=1.2.3.4,actions=drop",
    "ct_state=+est+trk,ip,ct_nw_src=10.0.0.0/8,ct_nw_proto=6,ct_tp_dst=80,actions=drop",
    "ct_state=+new,ipv6,ct_ipv6_src=fd00::1,ct_nw_proto=17,ct_tp_src=0x10/0xf0,actions=drop",
    "ip,actions=ct(commit,zone=NXM_NX_REG0[0..15],table=3,exec(set_field:0x1->ct_mark))",
    "ip,actions=ct_clear,output:1",
]
REJECTED_BY_OVS = [
    pytest.param("in_port=1/0xff,actions=drop", id="in_port-mask"),
    pytest.param("dl_type=0x0800/0xff00,actions=drop", id="dl_type-mask"),
    pytest.param("cookie=0x1/0xff,actions=drop", id="cookie-mask-on-add"),
    pytest.param("priority=65536,actions=drop", id="priority-65536"),
    pytest.param("actions=output:2,drop", id="drop-with-output"),
    pytest.param("in_port=0xff00,actions=drop", id="in_port-reserved-0xff00"),   # ovs-ofctl: no hex ports
    pytest.param("in_port=0xfffe,actions=drop", id="in_port-reserved-LOCAL"),
    pytest.param("ct_state=+trk,ip,ct_nw_src=10.0.0.1,actions=drop", id="ct_nw_src-without-valid-state"),
    pytest.param("ip,ct_nw_src=10.0.0.1,actions=drop", id="ct_nw_src-without-ct_state"),
    pytest.param("ct_state=+trk-inv,ipv6,ct_nw_src=10.0.0.1,actions=drop", id="ct_nw_src-on-ipv6"),
    pytest.param("actions=ct(table=1)", id="ct-without-ip"),
    pytest.param("ip,actions=ct(force)", id="ct-force-without-commit"),
    pytest.param("ip,actions=ct(exec(set_field:1->ct_mark))", id="ct-exec-without-commit"),
]


@pytest.mark.parametrize("line", ACCEPTED_BY_BOTH)
def test_flow_accepted_by_softdpu_is_accepted_by_ovs(line):
    require_ovs()
    parse_line(line)
    ok, text = parse_flow(line)
    assert ok, f"softdpu accepts {line!r}, ovs-ofctl does not:\n{text}"


@pytest.mark.parametrize("line", REJECTED_BY_OVS)
def test_flow_rejected_by_ovs_is_rejected_by_softdpu(line):
    require_ovs()
    ok, text = parse_flow(line)
    # parse-flow encodes the flow and decodes it as the switch would: a decode error
    # (OFPBMC_BAD_PREREQ: ct_nw_src without a valid ct_state) is the switch refusing it
    assert not ok or "decode error" in text, f"ovs-ofctl accepts {line!r}:\n{text}"
    with pytest.raises(FlowSyntaxError):
        parse_line(line)


def test_in_port_65535_matches_no_port(ovs, tmp_path):
    """ovs-ofctl takes in_port=65535 as the reserved port ANY (with a deprecation warning): it matches
    no packet, like softdpu's exact match on a port numbered 65535."""
    frame = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP() / UDP())
    out = run_case(ovs, tmp_path, "in_port=65535,actions=output:2\npriority=1,actions=output:3\n",
                   [("p1", frame)])
    assert out["p2"] == [] and out["p3"] == [frame]


# -- masked set_field: what OVS writes ---------------------------------------------
# ovs-ofctl sends the flows in OpenFlow 1.0 (nothing here needs 1.1+).  A set_field of a
# field OpenFlow 1.0 has an action for (dl_src/dl_dst, nw_src/nw_dst, tp_src/tp_dst and
# tcp_/udp_, vlan_vid) goes as that action: the mask is dropped and the WHOLE field gets the
# value as written (`set_field:10.1.2.3/255.0.0.0->nw_dst` writes 10.1.2.3).  Any other field
# (registers, ipv6, arp, metadata, sctp ports) goes as NXAST_REG_LOADs, one per run of mask
# bits: only the masked bits change.
MASKED_SET_FIELD = [
    "ip,actions=set_field:10.1.2.3/255.0.0.0->nw_dst,output:2",
    "ip,actions=set_field:10.99.0.0/255.255.0.0->nw_src,set_field:192.168.7.9/24->ip_dst,output:2",
    "ip,actions=set_field:10.0.0.0/255.0.255.0->nw_dst,output:2",
    "actions=set_field:02:00:00:00:00:99/ff:ff:ff:00:00:00->dl_src,output:2",
    "actions=set_field:06:00:00:00:00:01/01:00:00:00:00:00->eth_dst,set_field:0a:0b:0c:0d:0e:0f/0:0:0:0:0:ff->dl_src,output:2",
    "tcp,actions=set_field:0x1234/0xff00->tp_src,set_field:0xabcd/0x00ff->tp_dst,output:2",
    "udp,actions=set_field:0x1234/0xf00f->udp_src,set_field:53/0xff->udp_dst,output:2",
    "ipv6,actions=set_field:fd00::99/64->ipv6_src,output:2",
    "ipv6,actions=set_field:2001:db8::/ffff::ffff->ipv6_src,set_field:fd00::1/48->ipv6_dst,output:2",
    "dl_vlan=10,actions=set_field:0x7f5/0xff->vlan_vid,output:2",
    "dl_vlan=10,actions=set_field:5/0xf->vlan_vid,output:2",
    "actions=set_field:0x1234/0xff00->reg0,set_field:0xffffffff/0x0f0f->reg1,"
    "move:NXM_NX_REG0[0..15]->NXM_OF_ETH_SRC[0..15],move:NXM_NX_REG1[0..15]->NXM_OF_ETH_DST[0..15],output:2",
    "actions=load:0xabcd->NXM_NX_REG2[],set_field:0x1200/0xff00->reg2,"
    "move:NXM_NX_REG2[0..15]->NXM_OF_ETH_SRC[0..15],output:2",
    "arp,actions=set_field:10.1.2.3/255.0.0.0->arp_spa,set_field:02:00:00:00:00:01/01:00:00:00:00:00->arp_sha,"
    "output:2",
]


def _later_fragment(frame):
    return frame[12:14] == b"\x08\x00" and int.from_bytes(frame[20:22], "big") & 0x1FFF


@pytest.mark.parametrize("flow", MASKED_SET_FIELD)
def test_masked_set_field_agrees_with_ovs(ovs, tmp_path, flow):
    rng = random.Random(SEED + 2)
    packets = [("p1", random_frame(rng)) for _ in range(40)]
    # Not IPv4 later fragments: OVS's packet_set_ipv4_addr also "updates" the TCP/UDP checksum
    # bytes at the L4 offset of a later fragment (payload there); softdpu leaves them (its
    # fragments reassemble with good checksums, tests/test_commit.py).  See
    # test_address_rewrite_of_a_later_fragment.
    packets = [(p, f) for p, f in packets if not _later_fragment(f)]
    packets += [("p1", bytes(Ether(src=MACS[0], dst=MACS[1]) / IP(src="172.16.5.6", dst="172.17.8.9")
                             / TCP(sport=4321, dport=80))),
                ("p1", bytes(Ether(src=MACS[0], dst=MACS[1]) / Dot1Q(vlan=10, prio=5) / IP() / UDP())),
                ("p1", bytes(Ether(src=MACS[0], dst=MACS[1]) / IPv6(src="fd00::1", dst="fd00::2") / UDP()))]
    run_case(ovs, tmp_path, flow + "\n", packets)


def test_write_metadata_then_goto_table_agrees_with_ovs(ovs, tmp_path):
    """OpenFlow 1.0 cannot carry write_metadata then goto_table (OFPBAC_UNSUPPORTED_ORDER); the
    harness loads such flows in OpenFlow 1.1+, where softdpu follows (mod_vlan_vid pushes a tag
    when the match has none)."""
    rng = random.Random(SEED + 3)
    packets = [(rng.choice(list(PORTS4)), random_frame(rng)) for _ in range(40)]
    # not QinQ: pushing a third tag is another story (OVS keeps two tags in its flow key)
    packets = [(p, f) for p, f in packets if f[16:18] not in (b"\x81\x00", b"\x88\xa8")]
    flows = ("in_port=1,actions=write_metadata:0x5/0xff,goto_table:1\n"
             "in_port=2,actions=output:4,write_metadata:7,goto_table:1\n"
             "priority=1,actions=mod_vlan_vid:9,output:4\n"
             "table=1,metadata=0x5/0xff,actions=output:3\n"
             "table=1,metadata=7,actions=mod_vlan_vid:4,output:1\n")
    run_case(ovs, tmp_path, flows, packets)
    assert ovs.flow_protocols is not None


@pytest.mark.xfail(strict=True, reason="OVS rewrites the 2 payload bytes where the UDP/TCP checksum "
                   "would be in a later IPv4 fragment on nw_src/nw_dst rewrites (packet_set_ipv4_addr "
                   "has no fragment check); softdpu keeps later fragments' payload intact")
def test_address_rewrite_of_a_later_fragment(ovs, tmp_path):
    frame = bytes(Ether(src=MACS[0], dst=MACS[1]) / IP(src="10.0.0.1", dst="10.0.0.2", frag=10, proto=17)
                  / Raw(bytes(range(40))))
    run_case(ovs, tmp_path, "ip,actions=mod_nw_dst:10.9.9.9,output:2\n", [("p1", frame)])
