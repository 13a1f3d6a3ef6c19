"""`softdpu dump-flows`: per-rule counters and the printed flows, against Open vSwitch.

The same flows and inputs go through softdpu (`softdpu dump-flows` via cli.main)
and through OVS (OvsDummy: ovs-ofctl add-flows, the packets injected one by one
in capture order, then `ovs-ofctl dump-flows`).  Each rule is found on both
sides by table and its printed match (which includes priority=), so the match
text must be OVS's normalized form; n_packets and n_bytes must then be equal.
Durations are wall clock in OVS and capture clock in softdpu: never compared.
The normalized match is also checked line by line against `ovs-ofctl parse-flow`.
"""
import io
import random
import re
from pathlib import Path

import pytest
from ovs_oracle import OvsDummy, merge_captures, parse_flow, port_specs, require_ovs, write_pcap

from softdpu import cli, config, dump_flows
from softdpu.stages.flows.syntax import parse_line

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.toml"))
PORTS4 = {"p1": 1, "p2": 2, "p3": 3, "p4": 4}
T0 = 1_764_000_000 * 10**9  # ns
SEED = 20251125

LINE = re.compile(r"^ (?:cookie=(?P<cookie>0x[0-9a-f]+), )?(?:duration=(?P<duration>[0-9.]+)s, )?"
                  r"(?:table=(?P<table>\d+), )?"
                  r"(?:n_packets=(?P<n_packets>\d+), n_bytes=(?P<n_bytes>\d+), )?(?:idle_age=\d+, )?"
                  r"(?:hard_age=\d+, )?(?P<match>.*?) ?actions=(?P<actions>.*)$")


def parse_dump(text):
    """dump-flows text -> {(table, match incl. priority): (n_packets, n_bytes, cookie)}; one entry per flow."""
    flows = {}
    for line in text.splitlines():
        if not line.startswith(" ") or "actions=" not in line:
            continue
        m = LINE.match(line.split("  # ")[0])
        assert m, f"not a dump-flows line: {line!r}"
        key = (int(m["table"] or 0), m["match"].rstrip(", "))
        assert key not in flows, f"two flows print as {key}"
        flows[key] = (int(m["n_packets"] or 0), int(m["n_bytes"] or 0), m["cookie"] or "0x0")
    return flows


def softdpu_dump(toml, inputs=(), extra=()):
    out = io.StringIO()
    argv = ["dump-flows", str(toml), *extra]
    for port, path in inputs:
        argv += ["--in", f"{port}={path}"]
    assert cli.main(argv, out=out) == 0
    return out.getvalue()


def write_case(tmp_path, flows_text, packets, ports=PORTS4):
    """A pipeline dir: case.toml, case.flows and one input pcap per port (timestamps 1 ms apart)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "case.flows").write_text(flows_text)
    lines = ["[pipeline]", 'name = "case"', 'flows = "case.flows"', "batch = 8", "max_frame = 1600"]
    for name, ofport in ports.items():
        lines += ["[[port]]", f'name = "{name}"', f"ofport = {ofport}", 'type = "pcap"']
    (tmp_path / "case.toml").write_text("\n".join(lines) + "\n")
    per_port = {}
    for i, (port, frame) in enumerate(packets):
        per_port.setdefault(port, []).append((T0 + i * 1_000_000, frame))
    inputs = []
    for port in ports:
        if port in per_port:
            write_pcap(tmp_path / f"in-{port}.pcap", per_port[port])
            inputs.append((port, tmp_path / f"in-{port}.pcap"))
    return tmp_path / "case.toml", inputs


def assert_counters_agree(sd_text, ovs_text, flows_text):
    sd, ov = parse_dump(sd_text), parse_dump(ovs_text)
    context = f"\nflows:\n{flows_text}\nsoftdpu:\n{sd_text}\nOVS:\n{ovs_text}"
    assert sorted(sd) == sorted(ov), "the flows print differently" + context
    for key in sd:
        assert sd[key] == ov[key], f"flow {key}: softdpu (n_packets, n_bytes, cookie) {sd[key]}, OVS {ov[key]}" + context


@pytest.fixture(scope="module")
def ovs(tmp_path_factory):
    require_ovs()
    with OvsDummy(tmp_path_factory.mktemp("ovs"), ports=PORTS4) as o:
        yield o


# -- against OVS ------------------------------------------------------------------
@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_example_pipeline_counters_agree_with_ovs(ovs, pipeline):
    cfg = config.load(pipeline)
    if any(port.type != "pcap" for port in cfg.ports):
        pytest.skip("tunnel ports: OVS's tunnels are compared in tests/test_tunnel_ovs.py")
    if cfg.firewall is not None:
        pytest.skip("[firewall]: its compiled flows are compared with OVS in tests/test_policy.py")
    if cfg.esp is not None:
        pytest.skip("ESP: the flow tables count decrypted packets; OVS's userspace datapath has no IPsec")
    from softdpu.pipeline import Dpu
    inputs = [(p.name, path) for p, path in Dpu(cfg).inputs()]
    sd_text = softdpu_dump(pipeline)
    packets = [(port, frame) for port, frame, wirelen in merge_captures(inputs)
               if wirelen in (None, len(frame)) and 14 <= len(frame) <= cfg.max_frame]
    assert packets
    ovs.reset(ports=port_specs(cfg))
    ovs.add_flows(cfg.flows)
    ovs.inject(packets)
    ovs.outputs()   # waits until OVS has taken every packet
    assert_counters_agree(sd_text, ovs.dump_flows(stats=True), cfg.flows.read_text())
    assert sum(n for n, _, _ in parse_dump(sd_text).values()) > 0


MULTI_TABLE = """\
# several tables, resubmits, cookies, shorthands and masks
cookie=0x11,priority=300,arp,actions=output:4
priority=200,ip,nw_src=10.1.0.0/16,actions=resubmit(,1)
priority=190,udp,tp_dst=0x1000/0xf000,actions=output:3,output:4
priority=180,tcp,tp_dst=80,actions=goto_table:2
priority=170,icmp,icmp_type=8,actions=output:1
priority=160,dl_vlan=10,actions=drop
priority=150,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,1)
priority=140,ipv6,actions=output:2
priority=100,in_port=1,actions=output:2
priority=100,in_port=2,actions=output:1
in_port=3,actions=output:4
priority=0,actions=resubmit(,2)
table=1,cookie=0x22,priority=10,ip,nw_ttl=64,actions=output:2
table=1,priority=5,dl_src=02:00:00:00:00:01,actions=output:3
table=1,priority=1,actions=drop
table=2,priority=20,dl_type=0x88cc,actions=output:1
table=2,priority=10,tcp,actions=output:3
"""


def _is_fragment(frame):
    """An Ethernet II IPv4 fragment (MF set or a fragment offset)."""
    return frame[12:14] == b"\x08\x00" and len(frame) >= 22 and int.from_bytes(frame[20:22], "big") & 0x3FFF


def _frames(rng, n, fragments=True):
    from test_ovs_agreement import random_frame
    frames = [(rng.choice(list(PORTS4)), random_frame(rng)) for _ in range(n)]
    return frames if fragments else [(p, f) for p, f in frames if not _is_fragment(f)]


def test_multi_table_counters_agree_with_ovs(ovs, tmp_path):
    rng = random.Random(SEED)
    packets = _frames(rng, 200, fragments=False)   # see test_first_fragment_matches_ports_as_zero
    toml, inputs = write_case(tmp_path, MULTI_TABLE, packets)
    sd_text = softdpu_dump(toml, inputs)
    ovs.reset(ports=PORTS4)
    ovs.add_flows(MULTI_TABLE)
    ovs.inject(packets)
    ovs.outputs()
    assert_counters_agree(sd_text, ovs.dump_flows(stats=True), MULTI_TABLE)
    counted = parse_dump(sd_text)
    assert sum(1 for n, _, _ in counted.values() if n) >= 8, "the case should hit most rules"


@pytest.mark.parametrize("case", range(10), ids=lambda c: f"seed{SEED}-{c}")
def test_random_rule_counters_agree_with_ovs(ovs, case, tmp_path):
    from test_ovs_agreement import random_rules
    rng = random.Random(SEED * 1000 + case)
    packets = _frames(rng, rng.randint(5, 60))
    flows = random_rules(rng, packets)
    toml, inputs = write_case(tmp_path, flows, packets)
    sd_text = softdpu_dump(toml, inputs)
    ovs.reset(ports=PORTS4)
    ovs.add_flows(flows)
    ovs.inject(packets)
    ovs.outputs()
    assert_counters_agree(sd_text, ovs.dump_flows(stats=True), flows)


FIRST_FRAGMENT = bytes.fromhex("020000000003001b21aabbcc08004500001c00012000401164440a03113e0a01d14a8b901e9400085f2d")


def test_first_fragment_matches_ports_as_zero(ovs, tmp_path):
    # a UDP first fragment (MF set, offset 0) to port 7828 = 0x1e94: OVS takes the priority=0 flow
    flows = "priority=190,udp,tp_dst=0x1000/0xf000,actions=output:3\npriority=0,actions=output:2\n"
    toml, inputs = write_case(tmp_path, flows, [("p4", FIRST_FRAGMENT)])
    sd_text = softdpu_dump(toml, inputs)
    ovs.reset(ports=PORTS4)
    ovs.add_flows(flows)
    ovs.inject([("p4", FIRST_FRAGMENT)])
    ovs.outputs()
    assert_counters_agree(sd_text, ovs.dump_flows(stats=True), flows)


def test_no_stats_agrees_with_ovs(ovs, tmp_path):
    flows = MULTI_TABLE + "table=3,cookie=0,priority=32768,actions=drop\ncookie=0x5,priority=9,actions=drop\n"
    toml, inputs = write_case(tmp_path, flows, _frames(random.Random(1), 3))
    sd = softdpu_dump(toml, inputs, extra=["--no-stats"])
    ovs.reset(ports=PORTS4)
    ovs.add_flows(flows)
    ov = ovs.dump_flows(stats=False)
    # whole lines, actions too (as OVS normalizes them: goto_table:2 -> resubmit(,2))
    lines = lambda text: sorted(line for line in text.splitlines() if "actions=" in line)  # noqa: E731
    assert lines(sd) == lines(ov)
    assert "n_packets" not in sd and "duration" not in sd


MATCHES = [
    "in_port=1", "in_port=65534", "ip", "ipv6", "arp", "rarp", "tcp", "udp", "icmp", "tcp6", "udp6", "icmp6",
    "dl_type=0x88cc", "dl_type=2048", "dl_type=0x0806,nw_proto=2", "ip,nw_proto=47", "ipv6,nw_proto=47",
    "priority=100,ip,nw_src=10.0.0.0/8", "tcp,nw_src=10.1.2.3/255.0.0.0", "ip,nw_dst=10.1.2.3/255.0.255.0",
    "nw_src=10.0.0.1,ip", "priority=32768,ip", "priority=0", "priority=65535,in_port=2",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", "dl_src=00:11:22:33:44:55/ff:ff:ff:00:00:00",
    "dl_dst=ff:ff:ff:ff:ff:ff,dl_src=02:00:00:00:00:01", "tcp,tp_dst=0x1000/0xf000", "tcp,tp_dst=80,tp_src=1024",
    "udp,tp_src=53", "tcp6,tp_src=0x10/0xf0", "icmp,icmp_type=8,icmp_code=0", "icmp6,icmp_type=135",
    "arp,arp_op=1,nw_src=10.0.0.1", "arp,arp_spa=10.0.0.0/24,arp_tpa=10.0.0.9,arp_sha=02:00:00:00:00:01",
    "ip,nw_tos=8,nw_ecn=1,nw_ttl=3", "ip,ip_dscp=46", "ipv6,ipv6_src=2001:db8::/32", "ipv6,ipv6_dst=fd00::1",
    "ipv6,ipv6_label=5", "dl_vlan=5", "dl_vlan=5,dl_vlan_pcp=3", "dl_vlan_pcp=7", "dl_vlan=0xffff",
    "vlan_tci=0x1005/0x1fff", "vlan_tci=0x1000/0x1000", "vlan_tci=0", "reg3=5", "reg3=5/0xff", "reg0=0",
    "metadata=0x10", "metadata=0x5/0xff", "tun_id=0x5", "ct_state=+trk+est-rel", "ct_state=+trk",
    "ct_zone=5", "ct_mark=5", "ct_mark=0x5/0xf", "tcp,tcp_flags=+syn-ack", "tcp,tcp_flags=+syn",
    "ip,nw_frag=first", "ip,nw_frag=no", "ip,nw_frag=yes", "ip,nw_frag=later", "ip,nw_frag=not_later",
    "in_port=3,dl_vlan=10,dl_src=02:00:00:00:00:01,ip,nw_dst=192.168.0.0/16,nw_proto=17",
    "udp,in_port=2,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=1,tp_dst=2,nw_tos=4",
]


def _ovs_match(line):
    """The match (with priority) of `ovs-ofctl parse-flow LINE`'s flow_mod text."""
    ok, text = parse_flow(line)
    assert ok, text
    mod = next(x for x in text.splitlines() if ": ADD " in x).partition(": ADD ")[2]
    mod = re.sub(r"^table:\d+ ", "", mod.partition("actions=")[0])
    return re.sub(r" ?cookie:0x[0-9a-f]+", "", mod).strip()


@pytest.mark.parametrize("match", MATCHES)
def test_match_is_printed_as_ovs_normalizes_it(match):
    require_ovs()
    line = f"{match},actions=drop"
    try:
        rule = parse_line(line)
    except Exception as e:   # a field softdpu does not take (yet): nothing to print
        pytest.skip(f"softdpu does not take {match!r}: {e}")
    assert dump_flows.rule_match(rule) == _ovs_match(line)


# -- the command line (no OVS needed) -----------------------------------------------
PASS = ROOT / "pipelines" / "l2-passthrough.toml"


def test_cli_prints_one_line_per_flow_with_counters():
    text = softdpu_dump(PASS)
    lines = text.splitlines()
    cfg = config.load(PASS)
    n_rules = sum(1 for raw in cfg.flows.read_text().splitlines() if raw.partition("#")[0].strip())
    assert len(lines) == n_rules
    for line in lines:
        m = LINE.match(line)
        assert m and m["duration"] and m["n_packets"] is not None, line
        assert line.startswith(" cookie=0x0, duration=")
    assert sum(int(LINE.match(x)["n_packets"]) for x in lines) > 0


def test_cli_duration_is_the_capture_clock(tmp_path):
    from scapy.layers.l2 import Ether
    frame = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x88B5) / (b"x" * 50))
    toml, inputs = write_case(tmp_path, "in_port=1,actions=output:2\n", [("p1", frame)] * 4)
    text = softdpu_dump(toml, inputs)
    assert text == " cookie=0x0, duration=0.003s, table=0, n_packets=4, n_bytes=256, in_port=1 actions=output:2\n"


def test_cli_no_stats_where_and_table(tmp_path):
    flows = "priority=5,in_port=1,actions=output:2\ncookie=0x1f,table=3,ip,actions=drop\n"
    toml, inputs = write_case(tmp_path, flows, [])
    from scapy.layers.l2 import Ether
    _, inputs = write_case(tmp_path, flows, [("p1", bytes(Ether() / (b"y" * 60)))])
    text = softdpu_dump(toml, inputs, ["--no-stats", "--where"])
    flows_path = tmp_path / "case.flows"
    assert text.splitlines() == [
        f" priority=5,in_port=1 actions=output:2  # {flows_path}:1",
        f" cookie=0x1f, table=3, ip actions=drop  # {flows_path}:2",
    ]
    text = softdpu_dump(toml, inputs, ["--table", "3"])
    assert len(text.splitlines()) == 1 and "table=3, n_packets=0, n_bytes=0, ip actions=drop" in text


def test_cli_out_dir_keeps_the_outputs(tmp_path):
    out = tmp_path / "out"
    softdpu_dump(PASS, extra=["--out-dir", str(out)])
    assert {p.name for p in out.iterdir()} == {f"{p.name}.pcap" for p in config.load(PASS).ports}


@pytest.mark.parametrize("argv", [
    ["dump-flows", "no-such-pipeline.toml"],
    ["dump-flows", str(PASS), "--in", "no-equals-sign"],
    ["dump-flows", str(PASS), "--in", "nosuchport=x.pcap"],
    ["dump-flows", str(PASS), "--in", f"{config.load(PASS).ports[0].name}=/no/such/file.pcap"],
    ["dump-flows", str(PASS), "--table", "999"],
    ["dump-flows"],
])
def test_cli_bad_input_is_one_error_line(argv, capsys):
    out = io.StringIO()
    assert cli.main(argv, out=out) == 2
    err = capsys.readouterr().err
    assert out.getvalue() == ""
    assert len(err.splitlines()) == 1 and err.startswith("softdpu: error: "), err
