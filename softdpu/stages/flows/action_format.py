"""A rule's actions as `ovs-ofctl dump-flows` prints them.

    text = action_format.format_actions(rule, openflow11=False)   # "output:2,NORMAL" or "drop"

Open vSwitch does not print the actions as written: ovs-ofctl parses them,
encodes them for the OpenFlow version it talks to the switch in, the switch
decodes that, and dump-flows prints what it encodes back (lib/ofp-actions.c).
So the printed form depends on the version, and softdpu prints what the
harness (tests/ovs_oracle.py) gets:

  OpenFlow 1.0 (ovs-ofctl's default; `ovs-ofctl dump-flows`): port words
    upper case (`2` -> `output:2`, `normal` -> `NORMAL`); a set_field of a field
    OpenFlow 1.0 has an action for becomes that action (`mod_nw_dst:`,
    `mod_dl_src:`, `mod_tp_dst:`, `mod_vlan_vid:`, `mod_vlan_pcp:`, `mod_nw_tos:`,
    `strip_vlan`), any other set_field and every `load` an NXAST_REG_LOAD per
    run of mask bits (`load:0xa->NXM_NX_REG0[]`, at most 64 bits each), except
    those of tun_metadataN, an NXAST_REG_LOAD2 in any version
    (`set_field:0x3/0xf->tun_metadata2`);
    `mod_nw_ttl` a load of NXM_NX_IP_TTL; `goto_table:N` -> `resubmit(,N)`;
    `clear_actions` is not printed; `set_tunnel` -> `set_tunnel:0x5`
    (`set_tunnel64:` above 32 bits); `pop_vlan` -> `strip_vlan`.
  OpenFlow 1.1+ (a file with push_vlan: ovs-ofctl needs 1.1+ for it, the
    switch is queried with `-O OpenFlow13`): the OpenFlow 1.2+ forms
    (`set_field:1.2.3.4->ip_src`, `set_field:4106->vlan_vid` after a
    `push_vlan:0x8100` where mod_vlan_vid adds a tag, `pop_vlan`, `goto_table:1`,
    `clear_actions`); a set_field or load of part of a field as loads, as above.

Field names: OVS's (`eth_src`, `ip_dst`, `tcp_src`, ...) after set_field, the
NXM/OXM header names in load and move (`NXM_OF_IP_DST[24..31]`,
`OXM_OF_METADATA[]`).
"""
import ipaddress
import re

from softdpu.stages.flows import action_syntax

FULL = {}   # filled below: field -> width

# softdpu field -> OVS's name of the field (what set_field prints after "->")
OVS_NAME = {"dl_src": "eth_src", "dl_dst": "eth_dst", "nw_src": "ip_src", "nw_dst": "ip_dst",
            "tp_src": "tcp_src", "tp_dst": "tcp_dst", "tunnel_id": "tun_id", "ip_ecn": "nw_ecn",
            "eth_type": "dl_type", "ip_proto": "nw_proto"}

# OVS field name -> the NXM/OXM header name ovs-ofctl prints in load and move
NXM_NAME = {
    "in_port": "NXM_OF_IN_PORT", "eth_src": "NXM_OF_ETH_SRC", "eth_dst": "NXM_OF_ETH_DST",
    "dl_type": "NXM_OF_ETH_TYPE", "vlan_tci": "NXM_OF_VLAN_TCI", "vlan_vid": "OXM_OF_VLAN_VID",
    "vlan_pcp": "OXM_OF_VLAN_PCP", "ip_src": "NXM_OF_IP_SRC", "ip_dst": "NXM_OF_IP_DST",
    "arp_spa": "NXM_OF_ARP_SPA", "arp_tpa": "NXM_OF_ARP_TPA", "nw_proto": "NXM_OF_IP_PROTO",
    "nw_tos": "NXM_OF_IP_TOS", "ip_dscp": "OXM_OF_IP_DSCP", "nw_ecn": "NXM_NX_IP_ECN",
    "nw_ttl": "NXM_NX_IP_TTL", "tcp_src": "NXM_OF_TCP_SRC", "tcp_dst": "NXM_OF_TCP_DST",
    "udp_src": "NXM_OF_UDP_SRC", "udp_dst": "NXM_OF_UDP_DST", "sctp_src": "OXM_OF_SCTP_SRC",
    "sctp_dst": "OXM_OF_SCTP_DST", "icmp_type": "NXM_OF_ICMP_TYPE", "icmp_code": "NXM_OF_ICMP_CODE",
    "icmpv6_type": "NXM_NX_ICMPV6_TYPE", "icmpv6_code": "NXM_NX_ICMPV6_CODE",
    "arp_op": "NXM_OF_ARP_OP", "arp_sha": "NXM_NX_ARP_SHA", "arp_tha": "NXM_NX_ARP_THA",
    "ipv6_src": "NXM_NX_IPV6_SRC", "ipv6_dst": "NXM_NX_IPV6_DST", "ipv6_label": "NXM_NX_IPV6_LABEL",
    "metadata": "OXM_OF_METADATA", "tun_id": "NXM_NX_TUN_ID", "tun_src": "NXM_NX_TUN_IPV4_SRC",
    "tun_dst": "NXM_NX_TUN_IPV4_DST", "ct_state": "NXM_NX_CT_STATE", "ct_zone": "NXM_NX_CT_ZONE",
    "ct_mark": "NXM_NX_CT_MARK", "ct_label": "NXM_NX_CT_LABEL",
    **{f"tun_metadata{n}": f"NXM_NX_TUN_METADATA{n}" for n in range(4)},
    "tun_ipv6_src": "NXM_NX_TUN_IPV6_SRC", "tun_ipv6_dst": "NXM_NX_TUN_IPV6_DST",
    **{f"reg{n}": f"NXM_NX_REG{n}" for n in range(16)},
    **{f"xreg{n}": f"OXM_OF_PKT_REG{n}" for n in range(8)},
    **{f"xxreg{n}": f"NXM_NX_XXREG{n}" for n in range(4)},
}

_MAC = {"eth_src", "eth_dst", "arp_sha", "arp_tha"}
_IPV4 = {"ip_src", "ip_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst"}
_IPV6 = {"ipv6_src", "ipv6_dst", "tun_ipv6_src", "tun_ipv6_dst"}
_DECIMAL = {"in_port", "vlan_vid", "vlan_pcp", "nw_tos", "ip_dscp", "nw_ecn", "nw_ttl", "nw_proto",
            "tcp_src", "tcp_dst", "udp_src", "udp_dst", "sctp_src", "sctp_dst", "icmp_type",
            "icmp_code", "icmpv6_type", "icmpv6_code", "arp_op"}
# the OpenFlow 1.0 action a set_field of the field becomes (ofp-actions.c set_field_to_legacy_openflow)
_OF10_ACTION = {"eth_src": "mod_dl_src", "eth_dst": "mod_dl_dst", "ip_src": "mod_nw_src",
                "ip_dst": "mod_nw_dst", "tcp_src": "mod_tp_src", "tcp_dst": "mod_tp_dst",
                "udp_src": "mod_tp_src", "udp_dst": "mod_tp_dst", "vlan_vid": "mod_vlan_vid",
                "vlan_pcp": "mod_vlan_pcp", "nw_tos": "mod_nw_tos", "ip_dscp": "mod_nw_tos"}
PORT_WORDS = {"in_port": "IN_PORT", "flood": "FLOOD", "all": "ALL", "normal": "NORMAL"}
ETH_IPV6, IPPROTO_UDP, IPPROTO_SCTP = 0x86DD, 17, 132


def _hex(v):
    """C's %#x: 0 prints as 0."""
    return "0" if v == 0 else f"{v:#x}"


def ovs_name(field):
    return OVS_NAME.get(field, field)


def width(field):
    return action_syntax._F[field][1]


def format_value(name, v):
    """A field value as OVS's mf_format prints it (name: the OVS field name)."""
    if name in _MAC:
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    if name in _IPV4:
        return str(ipaddress.IPv4Address(v))
    if name in _IPV6:
        return str(ipaddress.IPv6Address(v))
    if name in _DECIMAL:
        return str(v)
    return _hex(v)


def subfield(name, lo, bits, total):
    """NXM_NX_REG0[], NXM_NX_REG0[3], NXM_NX_REG0[0..15] (mf_format_subfield)."""
    nxm = NXM_NAME[name]
    if lo == 0 and bits == total:
        return f"{nxm}[]"
    if bits == 1:
        return f"{nxm}[{lo}]"
    return f"{nxm}[{lo}..{lo + bits - 1}]"


def loads(field, v, m):
    """A write of value v under mask m as NXAST_REG_LOADs: one per run of 1-bits in the mask,
    at most 64 bits each (ofp-actions.c next_load_segment)."""
    name, total = ovs_name(field), width(field)
    out, start = [], 0
    while start < total:
        if not m >> start & 1:
            start += 1
            continue
        end = start + 1
        while end < min(start + 64, total) and m >> end & 1:
            end += 1
        bits = end - start
        out.append(f"load:{_hex(v >> start & ((1 << bits) - 1))}->{subfield(name, start, bits, total)}")
        start = end
    return out


def _l4_name(rule, which):
    """mod_tp_src/dst as OpenFlow 1.2+ set_field: tcp_src, udp_src or sctp_src by the match."""
    proto = rule.members.get("nw_proto", (0, 0)) if getattr(rule, "members", None) else (0, 0)
    kind = {IPPROTO_UDP: "udp", IPPROTO_SCTP: "sctp"}.get(proto[0] if proto[1] else None, "tcp")
    return f"{kind}_{which}"


def _set_field_of10(field, v, m):
    """set_field under OpenFlow 1.0: the 1.0 action when the field has one (whole field), else loads."""
    name = ovs_name(field)
    full = (1 << width(field)) - 1
    if name == "vlan_tci":
        return ["strip_vlan"] if not v & 0x1000 else [f"mod_vlan_vid:{v & 0xFFF}", f"mod_vlan_pcp:{v >> 13}"]
    if name in _OF10_ACTION:
        shown = v << 2 if name == "ip_dscp" else v
        return [f"{_OF10_ACTION[name]}:{format_value(name if name not in ('ip_dscp', 'nw_tos') else 'nw_tos', shown)}"]
    return loads(field, v, m & full)


def _set_field_of11(field, v, m, load=False):
    """set_field/load under OpenFlow 1.2+: set_field of a whole field, loads of a part.  A load
    covers only the field's bits, not its whole bytes: OVS sends a load of a field whose width
    is not a multiple of 8 bits (nw_ecn, ip_dscp, ipv6_label, ...) as a load again."""
    name = ovs_name(field)
    full = (1 << width(field)) - 1
    if m & full != full or (load and width(field) % 8):
        return loads(field, v, m & full)
    if name == "vlan_vid":
        v |= 0x1000               # OFPVID_PRESENT
    return [f"set_field:{format_value(name, v)}->{name}"]


def _set_tun_metadata(field, v, m):
    """A set_field or load of tun_metadataN, in any OpenFlow version: OVS sends it as an
    NXAST_REG_LOAD2 (the field is variable-length) and prints it as a set_field, with the mask
    when it is not the whole field (`set_field:0x3/0xf->tun_metadata2`)."""
    full = (1 << width(field)) - 1
    m &= full
    return f"set_field:{_hex(v & m)}" + ("" if m == full else f"/{_hex(m)}") + f"->{field}"


def _dec_ttl(action):
    text = getattr(action, "text", "dec_ttl")
    m = re.fullmatch(r"dec_ttl\((.*)\)", text.strip(), re.S)
    if not m:
        return "dec_ttl"
    ids = [int(x.strip(), 0) for x in m.group(1).split(",") if x.strip()]
    return "dec_ttl(" + ",".join(str(i) for i in ids) + ")"


def _resubmit(arg):
    port, table = arg
    if table < 0:
        return f"resubmit:{port}"
    return f"resubmit({'' if port < 0 else port},{table})"


def _ct(x):
    """ct(...) as OVS prints it: commit, force, table=, zone=, exec(loads) (format_CT)."""
    parts = (["commit"] if x.commit else []) + (["force"] if x.force else [])
    if x.table is not None:
        parts.append(f"table={x.table}")
    if x.zone_field is not None:
        name, lo, bits = x.zone_field
        parts.append(f"zone={subfield(ovs_name(name), lo, bits, width(name))}")
    elif x.zone:
        parts.append(f"zone={x.zone}")
    sets = []
    if x.mark is not None:
        sets += loads("ct_mark", *x.mark)
    if x.label is not None:
        sets += loads("ct_label", *x.label)
    if sets:
        parts.append(f"exec({','.join(sets)})")
    return f"ct({','.join(parts)})"


def format_action_list(rule, openflow11=False):
    """The rule's actions as the list of words dump-flows prints (empty: it prints 'drop')."""
    out = []
    vlan_known = action_syntax.vlan_in_match(getattr(rule, "members", {}) or {})
    for a in rule.actions:
        n, x = a.name, a.arg
        if n == "output":
            out.append(f"output:{x}")
        elif n in PORT_WORDS:
            out.append(PORT_WORDS[n])
        elif n == "drop":
            pass
        elif n in ("mod_dl_src", "mod_dl_dst"):
            name = "eth_" + n[-3:]
            out.append(f"{n}:{format_value(name, x[0])}" if not openflow11
                       else f"set_field:{format_value(name, x[0])}->{name}")
        elif n in ("mod_nw_src", "mod_nw_dst"):
            name = "ip_" + n[-3:]
            out.append(f"{n}:{format_value(name, x[0])}" if not openflow11
                       else f"set_field:{format_value(name, x[0])}->{name}")
        elif n == "mod_nw_tos":
            out.append(f"mod_nw_tos:{x}" if not openflow11 else f"set_field:{x >> 2}->ip_dscp")
        elif n == "mod_nw_ttl":
            out.append(f"load:{_hex(x)}->NXM_NX_IP_TTL[]" if not openflow11 else f"mod_nw_ttl:{x}")
        elif n in ("mod_tp_src", "mod_tp_dst"):
            out.append(f"{n}:{x}" if not openflow11 else f"set_field:{x}->{_l4_name(rule, n[-3:])}")
        elif n in ("mod_vlan_vid", "mod_vlan_pcp"):
            if not openflow11:
                out.append(f"{n}:{x}")
            else:
                if not vlan_known:
                    out.append("push_vlan:0x8100")
                out.append(f"set_field:{x | 0x1000}->vlan_vid" if n == "mod_vlan_vid" else f"set_field:{x}->vlan_pcp")
            vlan_known = True
        elif n in ("strip_vlan", "pop_vlan"):
            out.append("pop_vlan" if openflow11 else "strip_vlan")
            vlan_known = False     # ovs-ofctl: a later mod_vlan_vid pushes a tag again
        elif n == "push_vlan":
            out.append(f"push_vlan:{x:#06x}")
            vlan_known = True
        elif n == "dec_ttl":
            out.append(_dec_ttl(a))
        elif n in ("set_field", "load") and x[0].startswith("tun_metadata"):
            out.append(_set_tun_metadata(*x))
        elif n == "set_field":
            out += _set_field_of11(*x) if openflow11 else _set_field_of10(*x)
        elif n == "load":
            out += _set_field_of11(*x, load=True) if openflow11 else loads(*x)
        elif n == "move":
            (sn, slo, bits), (dn, dlo, _) = x
            out.append(f"move:{subfield(ovs_name(sn), slo, bits, width(sn))}"
                       f"->{subfield(ovs_name(dn), dlo, bits, width(dn))}")
        elif n in ("set_tunnel", "set_tunnel64"):
            if openflow11:
                out.append(f"set_field:{_hex(x)}->tun_id")
            else:
                out.append(f"{'set_tunnel64' if n == 'set_tunnel64' or x >> 32 else 'set_tunnel'}:{_hex(x)}")
        elif n == "write_metadata":
            v, m = x
            out.append(f"write_metadata:{_hex(v)}" + ("" if m == (1 << 64) - 1 else f"/{_hex(m)}"))
        elif n == "resubmit":
            out.append(_resubmit(x))
        elif n == "goto_table":
            out.append(f"goto_table:{x}" if openflow11 else f"resubmit(,{x})")
        elif n == "clear_actions":
            if openflow11:
                out.append("clear_actions")
        elif n == "ct":
            out.append(_ct(x))
        elif n == "ct_clear":
            out.append("ct_clear")
        elif n == "reject":
            out.append("reject")             # softdpu only (flows/reject.py)
        else:
            raise AssertionError(f"no printed form for action {n}")
    return out


def format_actions(rule, openflow11=False):
    """The rule's actions as dump-flows prints them after `actions=` ('drop' when there are none)."""
    return ",".join(format_action_list(rule, openflow11)) or "drop"


def needs_openflow11(rules):
    """Whether ovs-ofctl sends these flows in OpenFlow 1.1+ (and so prints them in 1.2+ forms)."""
    return action_syntax.needs_openflow11(rules)
