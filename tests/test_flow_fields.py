"""The match side of flow lines against Open vSwitch, field by field.

Oracle: `ovs-ofctl -F nxm parse-flow LINE` reads a flow as Open vSwitch does
and prints the match it would send to the switch, normalized (CIDR, hex
masks, dl_vlan folded into vlan_tci, protocol shorthands).  For every line
of a corpus (tests/flow_fields_corpus.py: hand-written lines plus seeded
random combinations of fields and masks) softdpu must accept exactly what
ovs-ofctl accepts, and for accepted lines the (value, mask) of every
softdpu.key field must equal what ovs-ofctl printed.  Its output is read here
by an independent little parser (`ovs_key`), not by softdpu's.

softdpu refuses some lines ovs-ofctl takes, on purpose; each such case says
why and checks that ovs-ofctl would indeed not install what the line says:
  prereq    a field without its prerequisite: ovs-ofctl drops the field
            (`tp_dst=80` becomes a catch-all), so its match has fewer fields
  strict    ovs-fields(7) gives the field its own prerequisite but ovs-ofctl
            treats it as an alias (udp,tcp_dst=53; ip,arp_spa=1.2.3.4):
            its match equals what softdpu reads before the check
  twice     a field given twice or two keywords setting the same bits:
            ovs-ofctl silently keeps the last one
  truncate  a value ovs-ofctl silently changes (nw_tos=5 -> nw_tos=4,
            icmp,tp_src=5407 -> icmp_type=31)
  syntax    number forms softdpu refuses (octal 010, '+1', '0x', bare `field`)

Also: each error message (file:line:column, token, expectation), and
compiled rules against packets built with scapy and parsed by the parse
stage (key & mask == value), which ties the syntax to the parser's key layout.
"""
import ipaddress
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from conftest import need_tool
from flow_fields_corpus import REFUSED, STRICT_NAMES, STRICTER, VALID, random_lines
from softdpu.batch import Batch
from softdpu.errors import FlowSyntaxError
from softdpu.key import FIELDS as KEY_FIELDS
from softdpu.stages.flows.compile import compile_rules
from softdpu.stages.flows.syntax import parse_line, parse_match, parse_text
from softdpu.stages.parse import Parse

# -- reading ovs-ofctl's printed match (independently of softdpu) -----------------

SHORT = {"ip": (0x0800, None), "icmp": (0x0800, 1), "tcp": (0x0800, 6), "udp": (0x0800, 17),
         "sctp": (0x0800, 132), "ipv6": (0x86DD, None), "icmp6": (0x86DD, 58),
         "tcp6": (0x86DD, 6), "udp6": (0x86DD, 17), "sctp6": (0x86DD, 132),
         "arp": (0x0806, None), "rarp": (0x8035, None), "mpls": (0x8847, None), "mplsm": (0x8848, None)}
PORTS = {"UNSET": 0xFFF7, "IN_PORT": 0xFFF8, "TABLE": 0xFFF9, "NORMAL": 0xFFFA, "FLOOD": 0xFFFB,
         "ALL": 0xFFFC, "CONTROLLER": 0xFFFD, "LOCAL": 0xFFFE, "ANY": 0xFFFF}
TCP_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ece": 64, "cwr": 128,
            "ns": 256, "[200]": 512, "[400]": 1024, "[800]": 2048}
CT_BITS = {"new": 1, "est": 2, "rel": 4, "rpl": 8, "inv": 16, "trk": 32, "snat": 64, "dnat": 128}
FRAGS = {"no": (0, 3), "first": (1, 3), "later": (3, 3), "yes": (1, 1), "not_later": (0, 2)}
M16, M32, M64 = 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1


def _num_masked(text, full):
    v, _, m = text.partition("/")
    return int(v, 0), int(m, 0) if m else full


def _mac(text):
    v, _, m = text.partition("/")
    return int(v.replace(":", ""), 16), int(m.replace(":", ""), 16) if m else (1 << 48) - 1


def _net(text, cls, bits):
    v, _, m = text.partition("/")
    full = (1 << bits) - 1
    if not m:
        return int(cls(v)), full
    mask = full ^ ((1 << (bits - int(m))) - 1) if m.isdigit() else int(cls(m))
    return int(cls(v)), mask


def _flags(text, bits, full):
    if text[:1] in "+-":
        v = m = 0
        for part in text.replace("-", " -").replace("+", " +").split():
            m |= bits[part[1:]]
            v |= bits[part[1:]] if part[0] == "+" else 0
        return v, m
    if text == "0/0":
        return 0, 0
    v = 0
    for part in text.split("|"):
        v |= bits[part] if part in bits else int(part, 0)
    return v, full


def ovs_key(match):
    """ovs-ofctl's printed match -> {softdpu key field: (value, mask)}."""
    key = {}

    def put(field, v, m):
        ov, om = key.get(field, (0, 0))
        key[field] = (ov | v, om | m)

    for tok in filter(None, match.split(",")):
        name, _, val = tok.partition("=")
        if name in SHORT:
            t, p = SHORT[name]
            put("dl_type", t, M16)
            if p is not None:
                put("nw_proto", p, 0xFF)
        elif name == "priority":
            pass
        elif name == "in_port":
            put("in_port", PORTS[val] if val in PORTS else int(val), M16)
        elif name == "dl_vlan":
            put("vlan_tci", 0x1000 | int(val), 0x1FFF)
        elif name == "dl_vlan_pcp":
            put("vlan_tci", int(val) << 13 | 0x1000, 0xF000)
        elif name in ("vlan_tci", "ipv6_label", "tp_src", "tp_dst", "ct_zone", "ct_mark", "metadata",
                      "tun_id") or name.startswith("reg"):
            width = KEY_FIELDS[name].bits
            put(name, *_num_masked(val, (1 << width) - 1))
        elif name in ("icmp_type", "icmp_code"):
            put("tp_src" if name == "icmp_type" else "tp_dst", *_num_masked(val, M16))
        elif name in ("dl_src", "dl_dst", "arp_sha", "arp_tha"):
            put(name, *_mac(val))
        elif name == "dl_type":
            put("dl_type", int(val, 16), M16)
        elif name in ("nw_src", "nw_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst"):
            put({"arp_spa": "nw_src", "arp_tpa": "nw_dst"}.get(name, name),
                *_net(val, ipaddress.IPv4Address, 32))
        elif name in ("ipv6_src", "ipv6_dst"):
            v, m = _net(val, ipaddress.IPv6Address, 128)
            for part, shift in (("_hi", 64), ("_lo", 0)):
                if (m >> shift) & M64:
                    put(name + part, (v >> shift) & M64, (m >> shift) & M64)
        elif name == "nw_proto":
            put("nw_proto", int(val), 0xFF)
        elif name == "arp_op":
            put("arp_op", int(val), M16)
        elif name == "nw_tos":
            put("nw_tos", int(val), 0xFC)
        elif name == "nw_ecn":
            put("nw_tos", int(val), 0x03)
        elif name == "nw_ttl":
            put("nw_ttl", int(val), 0xFF)
        elif name == "nw_frag":
            put("nw_frag", *FRAGS[val])
        elif name == "tcp_flags":
            put("tcp_flags", *_flags(val, TCP_BITS, 0xFFF))
        elif name == "ct_state":
            put("ct_state", *_flags(val, CT_BITS, 0xFF))
        elif name == "ct_label":
            v, m = _num_masked(val, (1 << 128) - 1)
            for part, shift in (("_hi", 64), ("_lo", 0)):
                if (m >> shift) & M64:
                    put("ct_label" + part, (v >> shift) & M64, (m >> shift) & M64)
        else:
            raise AssertionError(f"ovs_key: no reading for '{tok}' in '{match}'")
    # OVS keeps the ARP opcode in nw_proto and prints it as arp_op; softdpu's key has it apart
    if key.get("dl_type", (0, 0))[0] in (0x0806, 0x8035) and "nw_proto" in key:
        v, m = key.pop("nw_proto")
        key["arp_op"] = (v, M16)
    return {f: (v & m, m) for f, (v, m) in key.items() if m}


def ovs(match):
    """ovs-ofctl's reading of a match: (accepted, {key field: (value, mask)}, printed match),
    or (False, None, the error) when it refuses the line."""
    line = f"{match},actions=drop" if match else "actions=drop"
    exe = need_tool("ovs-ofctl")
    p = subprocess.run([exe, "-F", "nxm", "parse-flow", line], capture_output=True, text=True,
                       timeout=30)
    out = p.stdout + p.stderr
    if p.returncode != 0 or "decode error" in out:
        return False, None, out.strip()
    flow_mod = [x for x in p.stdout.splitlines() if "FLOW_MOD" in x][0]
    printed = flow_mod.split(" ADD ", 1)[1].rsplit("actions=", 1)[0].strip()
    return True, ovs_key(printed), printed


def softdpu(match, check=True):
    """softdpu's reading: (accepted, {key field: (value, mask)} or the FlowSyntaxError)."""
    try:
        return True, parse_match(match, "corpus.flows", 1, check_prerequisites=check)
    except FlowSyntaxError as e:
        return False, e


# -- agreement with ovs-ofctl ------------------------------------------------------------

@pytest.mark.parametrize("match", VALID)
def test_valid_matches_agree_with_ovs(match):
    ok, key, printed = ovs(match)
    assert ok, f"ovs-ofctl refuses '{match}': {printed}"
    accepted, ours = softdpu(match)
    assert accepted, str(ours)
    assert ours == key, f"ovs-ofctl prints '{printed}'"


@pytest.mark.parametrize("match", REFUSED)
def test_refused_matches_agree_with_ovs(match):
    ok, _, printed = ovs(match)
    assert not ok, f"ovs-ofctl takes '{match}' as '{printed}'"
    accepted, err = softdpu(match)
    assert not accepted, f"softdpu takes '{match}' as {err}"


@pytest.mark.parametrize("match, kind, evidence", STRICTER, ids=[s[0] for s in STRICTER])
def test_softdpu_refuses_what_ovs_would_not_install_as_written(match, kind, evidence):
    accepted, err = softdpu(match)
    assert not accepted, f"softdpu takes '{match}' as {err}"
    ok, key, printed = ovs(match)
    assert ok, f"ovs-ofctl refuses '{match}' too: {printed}"
    if kind in ("prereq", "strict"):
        assert str(err).split(": ", 1)[1].startswith("prerequisites not met"), str(err)
        _, written = softdpu(match, check=False)          # what the line says, unchecked
        if kind == "prereq":                              # ovs-ofctl drops the field
            assert key.items() < written.items(), (printed, written)
        else:                                             # ovs-ofctl reads it as an alias
            assert key == written, (printed, written)
    elif kind == "twice":
        assert any(w in str(err) for w in ("given twice", "same bits", "contradicts")), str(err)
        assert printed == evidence, printed                   # what ovs-ofctl kept
    else:                                                 # truncate, syntax
        assert evidence in printed, printed


def test_random_matches_agree_with_ovs():
    """Seeded random lines (1-5 fields, random values and masks, a random protocol):
    softdpu takes a line iff ovs-ofctl installs it as written, with the same key."""
    seen = {"same": 0, "prereq": 0, "refused": 0}
    for match in random_lines():
        ok, key, printed = ovs(match)
        accepted, ours = softdpu(match)
        if accepted:
            assert ok and ours == key, (match, printed, ours)
            seen["same"] += 1
            continue
        message = str(ours)
        if not ok:                              # both refuse (bad value; or BAD_PREREQ)
            seen["refused"] += 1
            continue
        _, written = softdpu(match, check=False)
        if "prerequisites not met" in message:  # ovs-ofctl drops the field, or reads an alias
            assert (key.items() < written.items()
                    or (key == written and ours.token.split("=")[0] in STRICT_NAMES)), (match, printed)
        else:                                   # an ICMP type/code ovs-ofctl would truncate
            assert "in an ICMP flow" in message and key != written, (match, printed, message)
        seen["prereq"] += 1
    assert min(seen.values()) >= 10, seen       # the corpus exercises every outcome


# -- error messages: file:line:column, the token, what was expected ----------------------

ERRORS = [
    # match, column, token, message (a part of it)
    ("in_port=1,icmp,tp_src=8,icmp_type=3", 25, "icmp_type=3", "icmp_type sets the same bits of tp_src as tp_src"),
    ("ip tcp_flags=+syn", 4, "tcp_flags=+syn", "prerequisites not met: tcp_flags needs tcp or tcp6"),
    ("priority=5,nw_src=1.2.3.4", 12, "nw_src=1.2.3.4", "nw_src needs ip (dl_type=0x0800), or arp/rarp"),
    ("ip,ipv6_src=::1", 4, "ipv6_src=::1", "ipv6_src needs ipv6 (dl_type=0x86dd)"),
    ("arp_sha=0:0:0:0:0:1", 1, "arp_sha=0:0:0:0:0:1", "arp_sha needs arp or rarp"),
    ("ip,nw_ttl=1,udp_dst=53", 13, "udp_dst=53", "udp_dst needs udp or udp6"),
    ("ipv6,icmpv6_type=1", 6, "icmpv6_type=1", "icmpv6_type needs icmp6"),
    ("tcp,nw_frag=later,tp_dst=80", 19, "tp_dst=80", "which later fragments do not have (nw_frag=later)"),
    ("icmp,icmp_type=3,tp_dst=0x100", 18, "tp_dst=0x100", "in an ICMP flow tp_dst is the 8-bit ICMP code"),
    ("tcp,udp", 5, "udp", "udp contradicts tcp, earlier on the line: they need different nw_proto"),
    ("dl_type=0x86dd,tcp", 16, "tcp", "tcp contradicts dl_type"),
    ("tcp,tcp", 5, "tcp", "field tcp given twice"),
    ("ct_state=+trk,ct_state=+new", 15, "ct_state=+new", "field ct_state given twice"),
    ("dl_vlan=0xffff,dl_vlan_pcp=1", 16, "dl_vlan_pcp=1", "dl_vlan_pcp sets the same bits of vlan_tci as dl_vlan"),
    ("tcp=1", 1, "tcp=1", "'tcp' is a protocol shorthand and takes no value"),
    ("ip,nw_ttl", 4, "nw_ttl", "expected nw_ttl=<value>"),
    ("ip,nw_ttl=", 4, "nw_ttl=", "expected an integer (decimal or 0x hex), got ''"),
    ("tcp,tp_dst=010", 5, "tp_dst=010", "Open vSwitch reads a leading 0 as octal"),
    ("tcp,tp_dst=65536", 5, "tp_dst=65536", "expected a value that fits in 16 bits, got '65536'"),
    ("ct_label=340282366920938463463374607431768211455", 1,
     "ct_label=340282366920938463463374607431768211455", "expected a decimal that fits in 64 bits"),
    ("ip,nw_ttl=5/1", 4, "nw_ttl=5/1", "this field takes no mask"),
    ("in_port=1/1", 1, "in_port=1/1", "in_port takes no mask"),
    ("in_port=port1", 1, "in_port=port1", "expected a port number (decimal) or a reserved port name"),
    ("in_port=0x1", 1, "in_port=0x1", "(UNSET, IN_PORT, TABLE, NORMAL, FLOOD, ALL, CONTROLLER, LOCAL, ANY, NONE)"),
    ("dl_vlan=4096", 1, "dl_vlan=4096", "expected a VLAN ID 0..4095, or 0xffff for no VLAN tag"),
    ("dl_vlan_pcp=8", 1, "dl_vlan_pcp=8", "expected a VLAN priority 0..7, got 8"),
    ("vlan_vid=0x2000", 1, "vlan_vid=0x2000", "plus 0x1000 when a tag must be present"),
    ("ip,nw_tos=1", 4, "nw_tos=1", "its low 2 bits must be 0 (use nw_ecn for those)"),
    ("ip,ip_dscp=64", 4, "ip_dscp=64", "expected a DSCP value 0..63, got 64"),
    ("ip,nw_ecn=4", 4, "nw_ecn=4", "expected an ECN value 0..3, got 4"),
    ("arp,arp_op=256", 5, "arp_op=256", "expected an ARP opcode 0..255"),
    ("dl_src=00:11:22:33:44", 1, "dl_src=00:11:22:33:44", "expected an Ethernet address like 00:11:22:33:44:55"),
    ("ip,nw_src=10.0.0.256", 4, "nw_src=10.0.0.256", "expected an IPv4 address like 10.0.0.1, got '10.0.0.256'"),
    ("ip,nw_dst=10.0.0.0/33", 4, "nw_dst=10.0.0.0/33", "expected a prefix length 0..32, got '33'"),
    ("ip,nw_dst=10.0.0.0/255.0", 4, "nw_dst=10.0.0.0/255.0", "or a dotted mask like 255.255.0.0"),
    ("ipv6,ipv6_src=fe80::1%eth0", 6, "ipv6_src=fe80::1%eth0", "expected an IPv6 address like 2001:db8::1"),
    ("ipv6,ipv6_dst=::1/129", 6, "ipv6_dst=::1/129", "expected a prefix length 0..128, got '129'"),
    ("ipv6,ipv6_dst=::/0:ffff::", 6, "ipv6_dst=::/0:ffff::", "ovs-ofctl cannot read '0:ffff::'"),
    ("ipv6,ipv6_label=0x100000", 6, "ipv6_label=0x100000", "expected a value that fits in 20 bits"),
    ("ip,nw_frag=maybe", 4, "nw_frag=maybe", "expected one of no, yes, first, later, not_later, got 'maybe'"),
    ("tcp,tcp_flags=+syn+sin", 5, "tcp_flags=+syn+sin", "unknown tcp_flags flag 'sin'; expected fin, syn"),
    ("tcp,tcp_flags=+syn-syn", 5, "tcp_flags=+syn-syn", "tcp_flags flag 'syn' given twice"),
    ("tcp,tcp_flags=0x1000", 5, "tcp_flags=0x1000", "or a number that fits in 12 bits"),
    ("ct_state=+trk+bogus", 1, "ct_state=+trk+bogus", "unknown ct_state flag 'bogus'; expected new, est"),
    ("ct_state=trk|nope", 1, "ct_state=trk|nope", "expected ct_state as +flag-flag, flags like new|est"),
    ("tp_dts=80", 1, "tp_dts=80", "unknown match field 'tp_dts' (did you mean 'tp_dst'?); expected one of: table"),
    ("xreg8=1", 1, "xreg8=1", "unknown match field 'xreg8'"),
    ("icmp6,nd_target=::1", 7, "nd_target=::1", "match field 'nd_target' is not supported by softdpu yet"),
    ("importance=10", 1, "importance=10", "match field 'importance' is not supported by softdpu yet"),
    ("reg0[0..3]=1", 1, "reg0[0..3]=1", "matching a part of a field ('reg0[0..3]') is not supported"),
    ("  in_port=1   ip,  nw_tos:5", 20, "nw_tos:5", "its low 2 bits must be 0"),
    ("tcp,tp_dst(99999)", 5, "tp_dst(99999)", "expected a value that fits in 16 bits"),
]


@pytest.mark.parametrize("match, column, token, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_names_file_line_column_and_token(tmp_path, match, column, token, message):
    f = tmp_path / "m.flows"
    f.write_text("# ok first\ntcp,tp_dst=22,actions=drop\n\n" + match + " actions=drop\n")
    with pytest.raises(FlowSyntaxError) as info:
        parse_text(f.read_text(), f)
    e = info.value
    assert (e.path, e.line, e.column, e.token) == (str(f), 4, column, token), str(e)
    assert str(e).startswith(f"{f}:4:{column}: ") and str(e).endswith(f"(at '{token}')"), str(e)
    assert message in str(e), str(e)


def test_rule_match_uses_key_field_names():
    r = parse_line("priority=7,tcp6,ipv6_src=2001:db8::/32,tp_dst=443,ct_label=0x1/0x3,"
                   "xreg1=0x100000002,arp_op=1 actions=drop".replace(",arp_op=1", ""), "f.flows", 3)
    assert r.priority == 7
    assert r.match == {
        "dl_type": (0x86DD, 0xFFFF), "nw_proto": (6, 0xFF), "tp_dst": (443, 0xFFFF),
        "ipv6_src_hi": (0x20010DB800000000, 0xFFFFFFFF00000000),
        "ct_label_lo": (1, 3), "reg2": (1, M32), "reg3": (2, M32)}
    assert set(r.match) <= set(KEY_FIELDS)
    assert parse_match("arp,nw_proto=2") == parse_match("arp,arp_op=2") == {
        "dl_type": (0x0806, 0xFFFF), "arp_op": (2, 0xFFFF)}


def test_dump_flows_counters_are_skipped_as_ovs_ofctl_does():
    r = parse_line(" cookie=0x5, duration=3.2s, table=1, n_packets=4, n_bytes=240, idle_age=1, "
                   "priority=9,ip actions=drop")
    assert (r.cookie, r.table, r.priority, r.match) == (5, 1, 9, {"dl_type": (0x0800, 0xFFFF)})


# -- compiled rules against parsed packets: the key layout agrees ------------------------

def _in_net(p, layer, attr, net):
    return layer in p and ipaddress.ip_address(getattr(p[layer], attr)) in ipaddress.ip_network(net)


def _later(p):
    return IP in p and p[IP].frag > 0


def _l4(p, layer):
    return layer in p and not _later(p) and (IP in p or IPv6 in p)


def _tci(p):
    return (p[Dot1Q].prio << 13 | p[Dot1Q].id << 12 | p[Dot1Q].vlan) if Dot1Q in p else None


def _ip4(p):
    return IP in p and ARP not in p


def _arp(p):
    return ARP in p and _ethertype(p) == 0x0806


# rule -> what it should match, said about the scapy packet (not about any key)
PACKET_RULES = [
    ("ip,nw_src=10.0.0.0/8", lambda p: _ip4(p) and _in_net(p, IP, "src", "10.0.0.0/8")),
    ("ip,nw_dst=192.168.0.0/255.255.0.0", lambda p: _ip4(p) and _in_net(p, IP, "dst", "192.168.0.0/16")),
    ("tcp,tp_dst=80", lambda p: _l4(p, TCP) and IP in p and p[TCP].dport == 80),
    ("tcp,tcp_flags=+syn-ack", lambda p: _l4(p, TCP) and IP in p and p[TCP].flags & 0x12 == 0x02),
    # a fragment is looked up with ports 0, as OVS's normal fragment handling
    ("udp,tp_src=0x1000/0xf000", lambda p: _l4(p, UDP) and IP in p and not (p[IP].flags.MF or p[IP].frag)
     and p[UDP].sport & 0xF000 == 0x1000),
    ("dl_vlan=5", lambda p: Dot1Q in p and p[Dot1Q].vlan == 5),
    ("dl_vlan=0xffff", lambda p: Dot1Q not in p),
    ("dl_vlan_pcp=3", lambda p: Dot1Q in p and p[Dot1Q].prio == 3),
    ("vlan_tci=0x1000/0x1000", lambda p: Dot1Q in p),
    ("vlan_vid=0x1007", lambda p: Dot1Q in p and p[Dot1Q].vlan == 7),
    ("ip,nw_tos=184", lambda p: _ip4(p) and p[IP].tos & 0xFC == 184),
    ("ip,nw_ecn=3", lambda p: _ip4(p) and p[IP].tos & 3 == 3),
    ("ip,ip_dscp=0,nw_ecn=0", lambda p: _ip4(p) and p[IP].tos == 0),
    ("ip,nw_ttl=1", lambda p: _ip4(p) and p[IP].ttl == 1),
    ("ip,nw_frag=yes", lambda p: _ip4(p) and (p[IP].flags.MF or p[IP].frag > 0)),
    ("ip,nw_frag=no", lambda p: _ip4(p) and not (p[IP].flags.MF or p[IP].frag > 0)),
    ("ip,nw_frag=first", lambda p: _ip4(p) and p[IP].flags.MF and p[IP].frag == 0),
    ("ip,nw_frag=later", lambda p: _ip4(p) and p[IP].frag > 0),
    ("ip,nw_frag=not_later", lambda p: _ip4(p) and p[IP].frag == 0),
    ("ip,nw_proto=17", lambda p: _ip4(p) and p[IP].proto == 17),
    ("icmp,icmp_type=8,icmp_code=0", lambda p: _ip4(p) and ICMP in p and p[ICMP].type == 8 and p[ICMP].code == 0),
    ("arp,arp_op=1", lambda p: _arp(p) and p[ARP].op == 1),
    ("arp,nw_proto=2", lambda p: _arp(p) and p[ARP].op == 2),
    ("arp,arp_spa=10.0.0.1,arp_tpa=10.0.0.0/24",
     lambda p: _arp(p) and p[ARP].psrc == "10.0.0.1" and _in_net(p, ARP, "pdst", "10.0.0.0/24")),
    ("arp,nw_src=10.0.0.1", lambda p: _arp(p) and p[ARP].psrc == "10.0.0.1"),
    ("arp,arp_sha=00:00:00:00:00:aa", lambda p: _arp(p) and p[ARP].hwsrc == "00:00:00:00:00:aa"),
    ("arp,arp_tha=00:00:00:00:00:00/ff:00:00:00:00:00",
     lambda p: _arp(p) and p[ARP].hwdst.startswith("00:")),
    ("rarp,arp_op=3", lambda p: ARP in p and _ethertype(p) == 0x8035 and p[ARP].op == 3),
    ("ipv6,ipv6_src=2001:db8::/32", lambda p: IPv6 in p and _in_net(p, IPv6, "src", "2001:db8::/32")),
    ("ipv6,ipv6_dst=2001:db8::2", lambda p: IPv6 in p and p[IPv6].dst == "2001:db8::2"),
    ("ipv6,ipv6_src=::/ffff:0:0:0:0:0:0:1", lambda p: IPv6 in p and _in_net(p, IPv6, "src", "::/128")),
    ("ipv6,ipv6_src=::1/::1", lambda p: IPv6 in p and int(ipaddress.ip_address(p[IPv6].src)) & 1),
    ("ipv6,ipv6_label=0x12345", lambda p: IPv6 in p and p[IPv6].fl == 0x12345),
    ("ipv6,nw_tos=0x20", lambda p: IPv6 in p and p[IPv6].tc & 0xFC == 0x20),
    ("ipv6,nw_ttl=7", lambda p: IPv6 in p and p[IPv6].hlim == 7),
    ("icmp6,icmp_type=128", lambda p: ICMPv6EchoRequest in p),
    ("tcp6,tp_dst=443", lambda p: IPv6 in p and TCP in p and p[TCP].dport == 443),
    ("udp6,udp_src=546", lambda p: IPv6 in p and UDP in p and p[UDP].sport == 546),
    ("dl_src=02:00:00:00:00:01", lambda p: p[Ether].src == "02:00:00:00:00:01"),
    ("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", lambda p: int(p[Ether].dst[:2], 16) & 1),
    ("dl_type=0x88cc", lambda p: _ethertype(p) == 0x88CC),
    ("in_port=2", lambda p: p.in_port == 2),
    ("in_port=2,tcp,tp_src=1234", lambda p: p.in_port == 2 and _ip4(p) and _l4(p, TCP) and p[TCP].sport == 1234),
    ("ct_state=-trk", lambda p: True),        # no conntrack yet: every packet is untracked
    ("ct_state=+trk", lambda p: False),
    ("reg5=0,metadata=0,tun_id=0,ct_mark=0/1", lambda p: True),
    ("xreg3=1", lambda p: False),
]


def _ethertype(p):
    return p[Dot1Q].type if Dot1Q in p else p[Ether].type


def _packets():
    E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    arp = dict(hwsrc="00:00:00:00:00:aa", hwdst="00:00:00:00:00:00", psrc="10.0.0.1", pdst="10.0.0.2")
    pkts = [
        (E / IP(src="10.1.2.3", dst="192.168.7.1", tos=0xB8, ttl=1) / TCP(sport=1234, dport=80, flags="S"), 2),
        (E / IP(src="10.1.2.3", dst="192.168.7.1") / TCP(sport=1234, dport=80, flags="SA"), 1),
        (Ether(dst="01:00:5e:00:00:01") / Dot1Q(vlan=5, prio=3) / IP(src="11.0.0.1", tos=0x03)
         / UDP(sport=0x1234, dport=53), 1),
        (E / Dot1Q(vlan=7, prio=0) / IP(src="10.0.0.1", dst="1.1.1.1") / UDP(sport=0x2000, dport=53), 3),
        (E / IP(src="10.0.0.1", flags="MF", frag=0, proto=17) / UDP(sport=0x1fff, dport=9) / bytes(8), 2),
        (E / IP(src="10.0.0.1", frag=100, proto=6) / bytes(TCP(dport=80, flags="S")), 2),
        (E / IP(src="172.16.0.1", dst="192.168.0.9", ttl=64) / ICMP(type=8, code=0), 4),
        (E / IP(src="172.16.0.1") / ICMP(type=0, code=0), 4),
        (Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, **arp), 1),
        (E / ARP(op=2, hwsrc="00:00:00:00:00:bb", hwdst="00:00:00:00:00:aa", psrc="10.0.0.2", pdst="10.0.0.1"), 1),
        (E / ARP(op=2, hwsrc="00:00:00:00:00:cc", hwdst="11:00:00:00:00:aa", psrc="10.0.1.2", pdst="10.0.1.1"), 2),
        (Ether(type=0x8035) / ARP(op=3, **arp), 1),
        (E / Dot1Q(vlan=7) / ARP(op=1, **arp), 1),
        (E / IPv6(src="2001:db8::1", dst="2001:db8::2", fl=0x12345, tc=0x21, hlim=7) / ICMPv6EchoRequest(), 1),
        (E / IPv6(src="2001:db9::1", dst="::1") / TCP(dport=443, sport=1234), 2),
        (E / IPv6(src="::", dst="2001:db8::2") / UDP(sport=546, dport=547), 3),
        (Ether(src="02:00:00:00:00:09", dst="03:00:00:00:00:01", type=0x88CC) / bytes(40), 3),
    ]
    out = []
    for p, port in pkts:
        raw = bytes(p)
        p = Ether(raw)                   # as built on the wire, every default filled in
        if p.type == 0x8035:             # scapy does not decode RARP by itself
            p = Ether(raw[:14]) / ARP(raw[14:])
        p.in_port = port
        out.append((p, port))
    return out


def test_compiled_rules_match_parsed_packets():
    rules = parse_text("".join(f"{m},actions=drop\n" for m, _ in PACKET_RULES), "k.flows")
    prog = compile_rules(rules)
    assert [r.line for r in prog.rules] == list(range(1, len(PACKET_RULES) + 1))   # file order kept
    packets = _packets()
    batch = Batch(size=len(packets))
    for p, port in packets:
        batch.append(bytes(p), in_port=port)
    Parse().run(batch)
    assert not batch.meta[: batch.n, 5].any(), "every test packet parses"
    key = batch.key[: batch.n]
    got = (key[:, None, :] & prog.mask[None, : len(rules), :]) == prog.value[None, : len(rules), :]
    got = got.all(axis=2)
    for r, (match, want) in enumerate(PACKET_RULES):
        for i, (p, _) in enumerate(packets):
            assert bool(got[i, r]) == bool(want(p)), f"rule '{match}' vs packet {i}: {p.summary()}"
    # the packets tell the rules apart: each (but the constant ones) matches some and misses some
    varied = [m for r, (m, _) in enumerate(PACKET_RULES) if got[:, r].any() and not got[:, r].all()]
    assert len(varied) == len(PACKET_RULES) - 4
