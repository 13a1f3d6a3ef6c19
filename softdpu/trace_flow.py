"""The flow and the packet as `softdpu trace` prints them, in ofproto/trace's words.

flow_text(key) is the "Flow:" line (OVS's flow_format over a parsed key row);
changes() says which fields an action changed; _set_pieces() the datapath actions
("set(ipv4(src=...))", "push_vlan(...)") between two outputs; the rest reads what
the key does not hold from the packet bytes (first-fragment ports, ND fields, a
tunnel packet's outer headers).
"""
import ipaddress

import numpy as np

from softdpu.batch import M_L4, M_LEN, M_START
from softdpu.dump_flows import CT_STATE, format_match
from softdpu.key import FIELDS

def _outer_text(batch, row, vteps):
    """A tunnel packet's outer headers in a few words, when it leaves from one of our VTEPs
    {(local_ip, dst_port)} ("" for any other frame)."""
    m = batch.meta[row]
    b = batch.data[row, m[M_START]: m[M_START] + m[M_LEN]].tobytes()
    if len(b) < 14 + 20 + 16:
        return ""
    etype = int.from_bytes(b[12:14], "big")
    if etype == 0x0800 and b[23] == 17:
        src, dst, l4 = ipaddress.IPv4Address(b[26:30]), ipaddress.IPv4Address(b[30:34]), 14 + (b[14] & 15) * 4
    elif etype == 0x86DD and len(b) >= 14 + 40 + 16 and b[20] == 17:
        src, dst, l4 = ipaddress.IPv6Address(b[22:38]), ipaddress.IPv6Address(b[38:54]), 54
    else:
        return ""
    sport, dport = int.from_bytes(b[l4:l4 + 2], "big"), int.from_bytes(b[l4 + 2:l4 + 4], "big")
    if (src, dport) not in vteps:
        return ""
    h = l4 + 8
    kind = "geneve" if b[h + 2:h + 4] == b"\x65\x58" else "vxlan"
    vni = int.from_bytes(b[h + 4:h + 7], "big")
    options = ""
    if kind == "geneve" and b[h] & 0x3F:
        o, end, opts = h + 8, h + 8 + (b[h] & 0x3F) * 4, []
        while o + 4 <= end:
            n = (b[o + 3] & 0x1F) * 4
            opts.append(f"{{class={int.from_bytes(b[o:o + 2], 'big'):#x},type={b[o + 2]:#x},"
                        f"len={n}}}={b[o + 4:o + 4 + n].hex()}")
            o += 4 + n
        options = " options " + ",".join(opts)
    return f"{kind} VNI {vni}{options} from {src} to {dst}, UDP {sport} -> {dport}"


def _first_fragment_ports(batch, i):
    """The L4 ports (ICMP type, code) of a first fragment, which the key holds as 0 (OVS looks
    fragments up without them) but ofproto/trace shows; None for other packets."""
    key = batch.key[i]
    if _get(key, "nw_frag") != 1 or _get(key, "nw_proto") not in (1, 6, 17, 58, 132):
        return None
    m = batch.meta[i]
    l4, end = int(m[M_L4]), int(m[M_START] + m[M_LEN])
    if l4 < 0 or l4 + 4 > end:
        return None
    b = batch.data[i, l4: l4 + 4].tobytes()
    if _get(key, "nw_proto") in (1, 58):
        return b[0], b[1]
    return int.from_bytes(b[:2], "big"), int.from_bytes(b[2:], "big")


def _nd_text(batch, i):
    """The IPv6 neighbour discovery fields ofproto/trace shows (softdpu's key does not hold them)."""
    key = batch.key[i]
    if (_get(key, "dl_type") != 0x86DD or _get(key, "nw_proto") != 58 or _get(key, "nw_frag")
            or _get(key, "tp_src") not in (135, 136) or _get(key, "tp_dst") != 0):
        return ""
    m = batch.meta[i]
    l4, end = int(m[M_L4]), int(m[M_START] + m[M_LEN])
    if l4 < 0 or l4 + 24 > end:
        return ""
    b = batch.data[i, l4:end].tobytes()
    macs = {1: "00:00:00:00:00:00", 2: "00:00:00:00:00:00"}
    off = 24
    while off + 8 <= len(b) and b[off + 1]:
        if b[off] in macs and b[off + 1] == 1:
            macs[b[off]] = ":".join(f"{x:02x}" for x in b[off + 2: off + 8])
        off += 8 * b[off + 1]
    return (f",nd_target={ipaddress.IPv6Address(b[8:24])},nd_sll={macs[1]},nd_tll={macs[2]}")


def _put_ports(key, ports):
    for name, v in zip(("tp_src", "tp_dst"), ports):
        f = FIELDS[name]
        key[f.word] = np.uint64((int(key[f.word]) & ~(0xFFFF << f.shift)) | (v << f.shift))


# -- the flow as OVS prints it ----------------------------------------------

def _get(key, name):
    f = FIELDS[name]
    return (int(key[f.word]) >> f.shift) & ((1 << f.bits) - 1)


def members_of(key):
    """The OVS flow members {name: (value, full mask)} a parsed key holds, as ofproto/trace shows them."""
    g = lambda name: _get(key, name)   # noqa: E731
    full = lambda name: (g(name), (1 << FIELDS[name].bits) - 1)   # noqa: E731
    m = {"in_port": full("in_port"), "vlan_tci": full("vlan_tci"), "dl_src": full("dl_src"),
         "dl_dst": full("dl_dst"), "dl_type": full("dl_type")}
    for name in [f"reg{r}" for r in range(16)] + ["metadata", "tun_id", "tun_src", "tun_dst", "ct_state",
                                                  "ct_zone", "ct_mark"] + [f"tun_metadata{n}" for n in range(4)]:
        if g(name):
            m[name] = full(name)
    if g("ct_state"):
        m["ct_state"] = (g("ct_state") & 0xFF, 0xFF)
    for name, w in (("tun_ipv6_src", 30), ("tun_ipv6_dst", 32), ("ct_ipv6_src", 36), ("ct_ipv6_dst", 38)):
        v = int(key[w]) << 64 | int(key[w + 1])
        if v:
            m[name] = (v, (1 << 128) - 1)
    if g("ct_nw_proto"):                  # the connection's original tuple (after ct(table=N))
        for name in ("ct_nw_src", "ct_nw_dst", "ct_nw_proto", "ct_tp_src", "ct_tp_dst"):
            if g(name) or name != "ct_nw_src" and name != "ct_nw_dst":
                m[name] = full(name)
    t = g("dl_type")
    if t in (0x0800, 0x86DD):
        proto = g("nw_proto")
        m["nw_proto"] = (proto, 0xFF)
        if t == 0x0800:
            m["nw_src"], m["nw_dst"] = full("nw_src"), full("nw_dst")
        else:
            m["ipv6_src"] = (int(key[5]) << 64 | int(key[6]), (1 << 128) - 1)
            m["ipv6_dst"] = (int(key[7]) << 64 | int(key[8]), (1 << 128) - 1)
            m["ipv6_label"] = full("ipv6_label")
        m["nw_tos"], m["nw_ttl"], m["nw_frag"] = (g("nw_tos"), 0xFF), full("nw_ttl"), (g("nw_frag") & 3, 3)
        if g("nw_frag") & 2:
            return m                  # a later fragment has no L4 header
        if proto in (1, 6, 17, 58, 132):
            m["tp_src"], m["tp_dst"] = full("tp_src"), full("tp_dst")
        if proto == 6:
            m["tcp_flags"] = (g("tcp_flags") & 0xFFF, 0xFFF)
    elif t in (0x0806, 0x8035):
        m["nw_src"], m["nw_dst"] = full("nw_src"), full("nw_dst")
        m["nw_proto"] = (g("arp_op") & 0xFF, 0xFF)
        m["arp_sha"], m["arp_tha"] = full("arp_sha"), full("arp_tha")
    return m


def flow_text(key):
    """The flow as ofproto/trace prints it (with OVS's vlan-limit=0: the inner tag after the outer)."""
    text = format_match(members_of(key))
    outer, inner = _get(key, "vlan_tci"), _get(key, "vlan_tci2")
    if outer & 0x1000:
        second = (f"dl_vlan1={inner & 0xFFF},dl_vlan_pcp1={inner >> 13}" if inner & 0x1000
                  else f"vlan_tci1={inner:#06x}")
        text = text.replace(f",dl_vlan_pcp={outer >> 13},", f",dl_vlan_pcp={outer >> 13},{second},", 1)
    return text


# -- what changed --------------------------------------------------------------

def _field_value(name, v):
    if name in ("vlan_tci", "vlan_tci2"):
        return f"{v:#06x} (VLAN {v & 0xFFF}, pcp {v >> 13})" if v & 0x1000 else f"{v:#06x} (no tag)"
    if name in ("dl_src", "dl_dst", "arp_sha", "arp_tha"):
        return ":".join(f"{b:02x}" for b in v.to_bytes(6, "big"))
    if name in ("nw_src", "nw_dst", "tun_src", "tun_dst"):
        return ".".join(str(b) for b in v.to_bytes(4, "big"))
    if name.startswith("reg") or name in ("metadata", "tun_id", "vlan_tci", "vlan_tci2", "ct_mark"):
        return f"{v:#x}"
    return str(v)


_NAMED = [f for f in FIELDS.values() if not f.name.endswith(("_hi", "_lo"))]


def changes(before, after):
    """[(field, old, new)] for the fields that differ between two key rows, values as text."""
    out = []
    for f in _NAMED:
        if before[f.word] != after[f.word]:
            old, new = _get(before, f.name), _get(after, f.name)
            if old != new:
                out.append((f.name, _field_value(f.name, old), _field_value(f.name, new)))
    for name, w in (("ipv6_src", 5), ("ipv6_dst", 7)):
        old, new = (int(k[w]) << 64 | int(k[w + 1]) for k in (before, after))
        if old != new:
            out.append((name, str(ipaddress.IPv6Address(old)), str(ipaddress.IPv6Address(new))))
    return out


def _set_pieces(before, after):
    """The datapath actions that turn the packet `before` into `after`, as ofproto/trace's
    "Datapath actions" shows them: set(eth(...)), set(ipv4(...)), set(tcp(...)), then the VLAN."""
    g0 = lambda name: _get(before, name)   # noqa: E731
    g1 = lambda name: _get(after, name)    # noqa: E731
    out = []
    eth = [f"{n[3:]}={_field_value(n, g1(n))}" for n in ("dl_src", "dl_dst") if g0(n) != g1(n)]
    if eth:
        out.append(f"set(eth({','.join(eth)}))")
    dl_type = g1("dl_type")
    if dl_type == 0x0800:
        ip = [f"{n[3:]}={_field_value(n, g1(n))}" for n in ("nw_src", "nw_dst") if g0(n) != g1(n)]
        if g0("nw_tos") != g1("nw_tos"):
            ip.append(f"tos={g1('nw_tos'):#x}")
        if g0("nw_ttl") != g1("nw_ttl"):
            ip.append(f"ttl={g1('nw_ttl')}")
        if ip:
            out.append(f"set(ipv4({','.join(ip)}))")
    elif dl_type == 0x86DD:
        ip = [f"{n[5:]}={new}" for n, _, new in changes(before, after) if n in ("ipv6_src", "ipv6_dst")]
        if g0("nw_tos") != g1("nw_tos"):
            ip.append(f"tclass={g1('nw_tos'):#x}")
        if g0("nw_ttl") != g1("nw_ttl"):
            ip.append(f"hlimit={g1('nw_ttl')}")
        if ip:
            out.append(f"set(ipv6({','.join(ip)}))")
    elif dl_type in (0x0806, 0x8035):
        arp = [f"{a}={_field_value(n, g1(n))}" for a, n in (("sip", "nw_src"), ("tip", "nw_dst"),
                                                            ("sha", "arp_sha"), ("tha", "arp_tha"))
               if g0(n) != g1(n)]
        if g0("arp_op") != g1("arp_op"):
            arp.append(f"op={g1('arp_op')}")
        if arp:
            out.append(f"set(arp({','.join(arp)}))")
    proto = {6: "tcp", 17: "udp", 132: "sctp"}.get(g1("nw_proto"))
    if dl_type in (0x0800, 0x86DD) and proto:
        l4 = [f"{n[3:]}={g1(n)}" for n in ("tp_src", "tp_dst") if g0(n) != g1(n)]
        if l4:
            out.append(f"set({proto}({','.join(l4)}))")
    t0, t1 = g0("vlan_tci"), g1("vlan_tci")        # OVS commits the VLAN after L3/L4 (odp-util.c)
    if t0 != t1:
        if t0 & 0x1000:
            out.append("pop_vlan")
        if t1 & 0x1000:
            out.append(f"push_vlan(vid={t1 & 0xFFF},pcp={t1 >> 13})")
    return out


def _ct_state_text(bits):
    """ct_state bits as OVS prints a flow's: 'est|rpl|trk' (or '-trk' for none)."""
    return "|".join(n for b, n in enumerate(CT_STATE) if bits >> b & 1) or "-trk"
