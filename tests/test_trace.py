"""softdpu trace: records from the forwarding kernels, told as ovs-appctl ofproto/trace tells it.

Checked three ways: against what the packets really did (the trace's outputs are the
ports each packet left through, and tracing changes no output byte), against Open
vSwitch's own ofproto/trace for every packet of the example pipelines (tables visited,
rules matched, datapath actions), and case by case for each kind of record.
"""
import json
import re
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from ovs_oracle import OvsDummy, merge_captures, port_specs, read_pcap, require_ovs
from softdpu import cli, config
from softdpu.pipeline import Dpu
from softdpu.trace import Tracer, explain
from test_ovs_agreement import injectable

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.toml"))
T0 = 1_764_000_000 * 10**9


def traced_run(pipeline, tmp_path, packets=None, inputs=None):
    dpu = Dpu.load(pipeline)
    tracer = Tracer(dpu, packets)
    dpu.tracer = tracer
    dpu.run_pcaps(inputs=inputs, out_dir=tmp_path / "traced")
    names = {p.ofport: p.name for p in dpu.ports}
    return dpu, [explain(t, dpu.flows.program, names, bridge=dpu.config.name) for t in tracer.traces], tracer


# -- trace and forwarding agree ---------------------------------------------------

@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_trace_tells_what_the_packets_did(pipeline, tmp_path):
    dpu, explained, tracer = traced_run(pipeline, tmp_path)
    assert len(tracer.traces) == tracer.seen > 0
    plain = Dpu.load(pipeline)
    plain.run_pcaps(out_dir=tmp_path / "plain")
    for p in dpu.ports:                                   # tracing changes nothing that leaves
        if p.type != "pcap":
            continue
        assert (tmp_path / "traced" / f"{p.name}.pcap").read_bytes() == \
               (tmp_path / "plain" / f"{p.name}.pcap").read_bytes()
    for t, (lines, doc) in zip(tracer.traces, explained):
        assert [o["ofport"] for o in doc["outputs"]] == t.sent, "\n".join(lines)
        assert not any("internal error" in line for line in lines)
        if not t.sent:
            assert doc["drop"]["reason"] != "none"


# -- against Open vSwitch's ofproto/trace ------------------------------------------

TABLE_LINE = re.compile(r"^(\s*)(\d+)\. (.*?)(?:  # .*)?$")


def _bridge_section(text):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("----")) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("Final flow:"))
    return lines[start:end]


def _tables(section):
    """[(indent, table, rule text)] of the table lines of a bridge section."""
    return [(len(m.group(1)), int(m.group(2)), m.group(3)) for m in map(TABLE_LINE.match, section) if m]


def _datapath(text, ofports):
    line = next(line for line in text.splitlines() if line.startswith("Datapath actions:"))
    parts = re.findall(r"[a-z_]+\([^()]*(?:\([^()]*\))*[^()]*\)|[^,]+", line.split(":", 1)[1].strip())
    # OVS's NORMAL also floods to the bridge's LOCAL port (datapath port 100 here), and sends
    # dec_ttl's exceptions to a controller (userspace(...)); softdpu has neither
    parts = [p for p in parts if not (p.isdigit() and int(p) not in ofports) and not p.startswith("userspace(")]
    while parts and not parts[-1].isdigit():         # rewrites no output follows change nothing
        parts.pop()
    return parts or ["drop"]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
def test_trace_agrees_with_ovs_ofproto_trace(pipeline, tmp_path):
    require_ovs()
    cfg = config.load(pipeline)
    if any(port.type != "pcap" for port in cfg.ports):
        pytest.skip("tunnel ports: compared with OVS's tunnels in tests/test_tunnel_ovs.py")
    if cfg.esp is not None:
        pytest.skip("ESP: the flow tables see the decrypted packets (in OVS, IPsec is the kernel's); "
                    "ESP is checked against scapy and tshark in tests/test_esp_*.py")
    if "ct(" in cfg.flows.read_text() or cfg.firewall is not None:
        pytest.skip("ct(): ofproto/trace cannot know the real connection state (it assumes +new, or "
                    "--ct-next); the outputs are compared with OVS in tests/test_ovs_agreement.py")
    dpu, explained, tracer = traced_run(pipeline, tmp_path)
    packets = injectable(cfg, merge_captures([(p.name, path) for p, path in dpu.inputs()]))
    assert len(packets) == len(explained)   # the examples have no frame softdpu drops before the flows
    ofports = {p.ofport for p in cfg.ports}
    with OvsDummy(tmp_path / "ovs", ports=port_specs(cfg)) as ovs:
        ovs.add_flows(cfg.flows)
        for k, ((port, frame), (lines, _)) in enumerate(zip(packets, explained)):
            theirs = ovs.trace(port, frame)      # with the state the packets before it left
            ovs.receive(port, frame)
            ours = "\n".join(lines)
            where = f"packet {k + 1}:\n--- softdpu trace\n{ours}\n--- ovs-appctl ofproto/trace\n{theirs}"
            assert ours.splitlines()[1] == theirs.splitlines()[0], where          # Flow:
            assert _tables(_bridge_section(ours)) == _tables(_bridge_section(theirs)), where
            if "NORMAL" in theirs:   # OVS floods in its own port order: compare the ports
                assert sorted(p for p in _datapath(ours, ofports) if p.isdigit()) == \
                       sorted(p for p in _datapath(theirs, ofports) if p.isdigit()), where
            else:
                assert _datapath(ours, ofports) == _datapath(theirs, ofports), where


# -- each kind of record -------------------------------------------------------------

def make_pipeline(tmp_path, flows, ports=(1, 2, 3), extra=""):
    (tmp_path / "t.flows").write_text(flows)
    lines = ["[pipeline]", 'name = "t"', 'flows = "t.flows"', "batch = 4"]
    for p in ports:
        lines += ["[[port]]", f'name = "p{p}"', f"ofport = {p}", 'type = "pcap"']
    (tmp_path / "t.toml").write_text("\n".join(lines) + "\n" + extra)
    return tmp_path / "t.toml"


def write_capture(path, frames):
    from ovs_oracle import write_pcap
    write_pcap(path, [(T0 + i * 1_000_000, bytes(f)) for i, f in enumerate(frames)])
    return path


def trace_text(tmp_path, flows, frames, packets=None, extra="", ports=(1, 2, 3)):
    toml = make_pipeline(tmp_path, flows, ports, extra)
    pcap = write_capture(tmp_path / "in.pcap", frames)
    _, explained, _ = traced_run(toml, tmp_path, packets, inputs={"p1": pcap})
    return ["\n".join(lines) for lines, _ in explained], [doc for _, doc in explained]


TCP_PKT = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(
    sport=1234, dport=80)


def test_rewrites_resubmit_and_outputs(tmp_path):
    texts, docs = trace_text(tmp_path, """\
table=0, priority=100, tcp, actions=mod_nw_src:192.0.2.1,resubmit(,1),output:3
table=1, tcp, tp_dst=80, actions=mod_tp_dst:8080,output:2
""", [TCP_PKT])
    text, doc = texts[0], docs[0]
    assert " 0. tcp, priority 100  # " in text and "t.flows:1" in text
    assert "     1. tcp,tp_dst=80, priority 32768  # " in text   # nested one level, as OVS
    assert "-> nw_src is now 192.0.2.1" in text
    assert "-> tp_dst is now 8080" in text
    assert "Datapath actions: set(ipv4(src=192.0.2.1)),set(tcp(dst=8080)),2,3" in text
    assert "Result: sent to p2, p3" in text
    assert [s["table"] for s in doc["steps"]] == [0, 1]
    assert doc["steps"][0]["rule"]["line"] == 1 and doc["steps"][1]["rule"]["line"] == 2
    assert doc["steps"][1]["actions"][0] == {"action": "mod_tp_dst:8080", "effects": ["tp_dst is now 8080"]}


def test_table_miss_is_a_counted_drop(tmp_path):
    texts, docs = trace_text(tmp_path, "table=0, udp, actions=output:2\n", [TCP_PKT])
    assert " 0. No match." in texts[0]
    assert "Datapath actions: drop" in texts[0]
    assert docs[0]["drop"]["reason"] == "no_match"


def test_ttl_expiry_and_missing_header(tmp_path):
    frames = [Ether() / IP(ttl=1) / UDP(), Ether(type=0x88CC) / b"lldp-ish payload"]
    texts, docs = trace_text(tmp_path, "actions=dec_ttl,output:2\n", frames)
    assert "-> TTL 1 expires: the rest of this action list is skipped" in texts[0]
    assert docs[0]["drop"]["reason"] == "ttl_expired"
    assert "-> skipped: it needs an IP header, which this packet does not have" in texts[1]
    assert docs[1]["outputs"] == [{"ofport": 2, "port": "p2"}]


def test_resubmit_loop_is_reported(tmp_path):
    texts, docs = trace_text(tmp_path, "actions=resubmit(,0)\n", [TCP_PKT])
    assert "resubmit limit reached (depth 64" in texts[0]
    assert docs[0]["drop"]["reason"] == "resubmit_depth"


def test_output_to_input_port_is_explained(tmp_path):
    texts, _ = trace_text(tmp_path, "actions=output:1\n", [TCP_PKT])
    assert "not sent to p1 (port 1): it is the input port (use the in_port action)" in texts[0]


def test_normal_learns_floods_then_forwards(tmp_path):
    a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    frames = [Ether(src=a, dst=b) / IP() / UDP(), Ether(src=b, dst=a) / IP() / UDP(),
              Ether(src=a, dst=b) / IP() / UDP(), Ether(src=a, dst="01:80:c2:00:00:00") / (b"\0" * 40)]
    toml = make_pipeline(tmp_path, "actions=normal\n")
    from ovs_oracle import write_pcap
    p1 = tmp_path / "p1.pcap"
    write_pcap(p1, [(T0 + k * 1_000_000, bytes(frames[k])) for k in (0, 2, 3)])
    write_pcap(tmp_path / "p2.pcap", [(T0 + 1_000_000, bytes(frames[1]))])
    _, explained, _ = traced_run(toml, tmp_path, inputs={"p1": p1, "p2": tmp_path / "p2.pcap"})
    texts = ["\n".join(lines) for lines, _ in explained]
    assert f"-> learned that {a} is on port p1 in VLAN 0" in texts[0]
    assert "-> no learned MAC for destination, flooding VLAN 0" in texts[0]
    assert "Result: sent to p2, p3" in texts[0]
    assert f"-> learned that {b} is on port p2 in VLAN 0" in texts[1]
    assert "-> forwarding to learned port p1" in texts[1]
    assert "learned that" not in texts[2]            # already known: a refresh is not news
    assert "-> forwarding to learned port p2" in texts[2]
    assert "reserved multicast destination 01:80:c2:00:00:00, dropping" in texts[3]


def test_normal_vlan_refused(tmp_path):
    extra = ""
    toml = make_pipeline(tmp_path, "actions=normal\n")
    text = toml.read_text().replace('name = "p1"\nofport = 1\ntype = "pcap"',
                                    'name = "p1"\nofport = 1\ntype = "pcap"\ntag = 10')
    toml.write_text(text + extra)
    pcap = write_capture(tmp_path / "in.pcap", [Ether() / Dot1Q(vlan=20) / IP() / UDP()])
    _, explained, _ = traced_run(toml, tmp_path, inputs={"p1": pcap})
    lines, doc = explained[0]
    assert "port p1 does not carry VLAN 20, dropping" in "\n".join(lines)
    assert doc["drop"]["reason"] == "vlan_refused"


def test_chosen_packets_only_with_the_state_before_them(tmp_path):
    a, b = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    frames = [Ether(src=b, dst=a) / IP() / UDP()] + [Ether(src=a, dst=b) / IP() / UDP()] * 5
    texts, docs = trace_text(tmp_path, "actions=normal\n", frames, packets=[4])
    assert [d["packet"] for d in docs] == [4]
    assert "learned port is input port, dropping" in texts[0]   # packet 1 taught the MAC table


def test_malformed_and_dropped_before_flows(tmp_path):
    short_tcp = bytes(Ether() / IP(proto=6) / b"\x00\x50")         # TCP header cut short
    big = bytes(Ether() / IP() / UDP() / (b"x" * 3000))
    texts, docs = trace_text(tmp_path, "actions=output:2\n", [short_tcp, big],
                             extra="")
    assert "Malformed: parse_trunc_l4" in texts[0]
    assert docs[0]["outputs"] == [{"ofport": 2, "port": "p2"}]     # forwarded, as OVS
    assert "Result: dropped before the flow tables: frame_too_big" in texts[1]
    assert docs[1]["drop"]["reason"] == "frame_too_big"


# -- the command line ------------------------------------------------------------------

def test_cli_trace_text_and_json(tmp_path, capsys):
    acl = str(ROOT / "pipelines" / "acl.toml")
    assert cli.main(["trace", acl, "--packet", "7"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Packet 7: ")
    assert 'bridge("acl")' in text and "Datapath actions:" in text and "acl.flows:" in text
    assert cli.main(["trace", acl, "--packet", "2-3", "--packet", "7", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["packet"] for d in docs] == [2, 3, 7]
    assert all({"flow", "steps", "outputs", "drop", "datapath_actions"} <= set(d) for d in docs)


@pytest.mark.parametrize("arg, message", [
    ("0", "expected packet numbers from 1"),
    ("5-3", "expected packet numbers from 1"),
    ("x", "expected a packet number N or a range N-M"),
    ("100000", "the input has"),
])
def test_cli_trace_bad_packet_numbers(arg, message, capsys):
    assert cli.main(["trace", str(ROOT / "pipelines" / "acl.toml"), "--packet", arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("softdpu: error:") and message in err and err.count("\n") == 1


def test_trace_stops_reading_after_the_last_chosen_packet(tmp_path):
    frames = [TCP_PKT] * 40
    toml = make_pipeline(tmp_path, "actions=output:2\n")
    pcap = write_capture(tmp_path / "in.pcap", frames)
    _, _, tracer = traced_run(toml, tmp_path, [2], inputs={"p1": pcap})
    dpu = Dpu.load(toml)
    dpu.tracer = Tracer(dpu, [2])
    dpu.run_pcaps(inputs={"p1": pcap}, out_dir=tmp_path / "o", until=lambda: dpu.tracer.done)
    assert dpu.tracer.seen == 4          # one batch of 4, not 40
    assert len(read_pcap(tmp_path / "o" / "p2.pcap")) == 4


# -- resubmit chains: forwarding and trace nesting against OVS ----------------------------

CHAINS = {
    "forward-tail-80": "".join(f"table={i},actions=resubmit(,{i + 1})\n" for i in range(80))
                       + "table=80,actions=output:2\n",
    "forward-nested-80": "".join(f"table={i},actions=resubmit(,{i + 1}),output:3\n" for i in range(80))
                         + "table=80,actions=output:2\n",
    "nested-3": "table=0,actions=resubmit(,1),output:3\ntable=1,actions=resubmit(,2),output:3\n"
                "table=2,actions=mod_tp_dst:99,output:2\n",
    "loop": "table=0,actions=resubmit(,0)\n",
    "loop-nested": "table=0,actions=resubmit(,0),output:2\n",
    "back-and-forth": "table=0,reg0=0,actions=load:1->reg0,resubmit(,1),output:3\n"
                      "table=0,reg0=1,actions=output:2\ntable=1,actions=resubmit(,0)\n",
    "goto-then-miss": "table=0,actions=mod_nw_dst:10.9.9.9,goto_table:5\ntable=5,udp,actions=output:2\n",
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_resubmit_chains_agree_with_ovs(name, tmp_path):
    require_ovs()
    from test_ovs_agreement import run_case
    flows = CHAINS[name]
    frame = bytes(TCP_PKT)
    toml = make_pipeline(tmp_path, flows, ports=(1, 2, 3))
    pcap = write_capture(tmp_path / "in.pcap", [frame])
    _, explained, _ = traced_run(toml, tmp_path, inputs={"p1": pcap})
    ours = "\n".join(explained[0][0])
    with OvsDummy(tmp_path / "ovs", ports={"p1": 1, "p2": 2, "p3": 3}) as ovs:
        ovs.add_flows(tmp_path / "t.flows")
        theirs = ovs.trace("p1", frame)
        where = f"--- softdpu trace\n{ours}\n--- ovs-appctl ofproto/trace\n{theirs}"
        assert _tables(_bridge_section(ours)) == _tables(_bridge_section(theirs)), where
        if "translation depth" not in theirs and "resubmit" not in theirs.split("Datapath")[-1]:
            assert _datapath(ours, {1, 2, 3}) == _datapath(theirs, {1, 2, 3}), where
        run_case(ovs, tmp_path / "case", flows, [("p1", frame)], ports={"p1": 1, "p2": 2, "p3": 3})


# -- tunnels: decapsulation and encapsulation in the trace -------------------------------

def test_trace_shows_decapsulation_and_encapsulation(capsys):
    overlay = str(ROOT / "pipelines" / "vxlan-overlay.toml")
    assert cli.main(["trace", overlay, "--packet", "7-8", "--packet", "10"]) == 0
    out = capsys.readouterr().out
    enc, dec, big = out.split("\n\nPacket ")
    assert "-> output to vxflow (port 11)" in enc
    assert "Encapsulated: vxlan VNI 6000 from 192.0.2.1 to 192.0.2.3, UDP " in enc
    assert "; out of uplink (port 2), 112 bytes" in enc and "Result: sent to uplink" in enc
    assert dec.startswith("8: 112 bytes on uplink (in_port=2)")
    assert "Decapsulated by vxflow (vxlan, in_port=11): VNI 6000 from 192.0.2.3 to 192.0.2.1, a 62-byte" in dec
    assert "Flow: udp,tun_id=0x1770,tun_src=192.0.2.3,tun_dst=192.0.2.1,in_port=11," in dec
    assert "Encapsulated" not in dec and "Result: sent to p1" in dec
    assert "Result: dropped: tunnel_mtu" in big
