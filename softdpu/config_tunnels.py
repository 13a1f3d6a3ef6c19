"""Pipeline files: tunnel ports, underlay settings and static neighbours.

    [[port]]                         # the underlay: where encapsulated packets go and come from
    name = "uplink"
    ofport = 4
    type = "pcap"
    mac = "02:00:00:00:00:04"        # source MAC of the outer Ethernet header
    mtu = 1500                       # largest outer IP packet (default 1500)
    resolve = false                  # true: answer ARP/ND for our VTEP addresses and ask
                                     # for remote VTEPs' MACs (neighbours.py)

    [[port]]                         # a tunnel port, as an Open vSwitch vxlan/geneve interface
    name = "vx0"
    ofport = 10
    type = "vxlan"                   # or "geneve"
    underlay = "uplink"
    local_ip = "192.0.2.1"           # our VTEP address (IPv4 or IPv6)
    remote_ip = "192.0.2.2"          # the peer, or "flow" (set_field:...->tun_dst / tun_ipv6_dst)
    key = 5000                       # the VNI, or "flow" (set_field:...->tun_id); default 0
    dst_port = 4789                  # default 4789 (vxlan) / 6081 (geneve)
    ttl = 64                         # outer TTL / hop limit
    tos = 0                          # outer DSCP as a TOS byte (multiple of 4), or "inherit";
                                     # the ECN bits always follow the inner packet (RFC 6040)
    df_default = true                # set DF in the outer IPv4 header (OVS's default)
    csum = false                     # outer UDP checksum; default false over IPv4, true over IPv6

    [[neighbor]]                     # static next hops for remote VTEPs (required in pcap mode)
    ip = "192.0.2.2"
    mac = "02:00:00:00:00:99"

    [[geneve_option]]                # a Geneve option <-> a flow field, as ovs-ofctl add-tlv-map
    class = 0x0102                   # option class
    type = 0x80                      # option type (0x80 set: critical)
    len = 4                          # data bytes: 4 or 8
    field = "tun_metadata0"          # tun_metadata0..3

Option names follow Open vSwitch's (ovs-vswitchd.conf.db(5), Interface options).
Errors name the file, the line and the key, as config.py's.
"""
import ipaddress
import re

from softdpu.errors import ConfigError

TUNNEL_TYPES = ("vxlan", "geneve")
DEFAULT_DST_PORT = {"vxlan": 4789, "geneve": 6081}
MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def _ip(text):
    if not isinstance(text, str):
        raise ValueError
    return ipaddress.ip_address(text)


def _ip_or_flow(text):
    return "flow" if text == "flow" else _ip(text)


def _int_in(lo, hi):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError
        return v
    return check


def _key(v):
    return "flow" if v == "flow" else _int_in(0, (1 << 24) - 1)(v)


def _tos(v):
    if v == "inherit":
        return v
    v = _int_in(0, 255)(v)
    if v & 3:
        raise ValueError      # ECN bits: OVS refuses them too
    return v


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError
    return v


def _name(v):
    if not isinstance(v, str):
        raise ValueError
    return v


def mac(v):
    if not isinstance(v, str) or not MAC_RE.match(v):
        raise ValueError
    return int(v.replace(":", ""), 16)


# key -> (validator, description)
TUNNEL_KEYS = {
    "underlay": (_name, "the name of the port the encapsulated packets use"),
    "local_ip": (_ip, 'our VTEP address, an IPv4 or IPv6 address like "192.0.2.1"'),
    "remote_ip": (_ip_or_flow, 'the remote VTEP address, or "flow" (set_field:...->tun_dst)'),
    "key": (_key, 'the VNI, 0..16777215, or "flow" (set_field:...->tun_id)'),
    "dst_port": (_int_in(1, 65535), "the UDP destination port, 1..65535"),
    "ttl": (_int_in(1, 255), "the outer TTL / hop limit, 1..255"),
    "tos": (_tos, 'the outer TOS byte, a DSCP value 0..252 in steps of 4 (ECN follows the inner packet), '
                  'or "inherit"'),
    "df_default": (_bool, "true or false: DF in the outer IPv4 header"),
    "csum": (_bool, "true or false: compute the outer UDP checksum"),
}
REQUIRED = ("underlay", "local_ip", "remote_ip")
UNDERLAY_KEYS = {
    "mac": (mac, 'a MAC address like "02:00:00:00:00:04" (the outer source MAC)'),
    "mtu": (_int_in(68, 65535), "the largest outer IP packet, 68..65535"),
    "resolve": (_bool, "true or false: answer ARP/ND for the VTEP addresses and ask for remote VTEPs"),
}
def _one_of(*allowed):
    def check(v):
        if isinstance(v, bool) or v not in allowed:
            raise ValueError
        return v
    return check


GENEVE_OPTION_KEYS = {
    "class": (_int_in(0, 0xFFFF), "an option class, 0..65535"),
    "type": (_int_in(0, 0xFF), "an option type, 0..255 (0x80 set: critical)"),
    "len": (_one_of(4, 8), "the option's data length in bytes: 4 or 8"),
    "field": (_one_of(*(f"tun_metadata{n}" for n in range(4))),
              'the flow field that holds it: "tun_metadata0" .. "tun_metadata3"'),
}
NEIGHBOR_KEYS = {
    "ip": (_ip, 'an IPv4 or IPv6 address like "192.0.2.2"'),
    "mac": (mac, 'a MAC address like "02:00:00:00:00:99"'),
}


def check_value(path, where, key, value, validator, expected):
    try:
        return validator(value)
    except ValueError:
        raise ConfigError(path, key, f"expected {expected}, got {value!r}", where) from None


def tunnel_options(path, i, p, line):
    """The options of [[port]] i of a tunnel type, validated (underlay not yet resolved)."""
    options = {}
    for key in REQUIRED:
        if key not in p:
            raise ConfigError(path, f"port[{i}].{key}", f"missing; expected {TUNNEL_KEYS[key][1]}", line())
    for key, (validator, expected) in TUNNEL_KEYS.items():
        if key in p:
            options[key] = check_value(path, line(key), f"port[{i}].{key}", p[key], validator, expected)
    local, remote = options["local_ip"], options["remote_ip"]
    if remote != "flow" and remote.version != local.version:
        raise ConfigError(path, f"port[{i}].remote_ip",
                          f"local_ip {local} is IPv{local.version}, remote_ip {remote} IPv{remote.version}: "
                          "expected both of one family", line("remote_ip"))
    options.setdefault("key", 0)
    options.setdefault("dst_port", DEFAULT_DST_PORT[p["type"]])
    options.setdefault("ttl", 64)
    options.setdefault("tos", 0)
    options.setdefault("df_default", True)
    options.setdefault("csum", local.version == 6)
    return options


def underlay_options(path, i, p, line):
    """mac / mtu of a port that may carry tunnels."""
    options = {}
    for key, (validator, expected) in UNDERLAY_KEYS.items():
        if key in p:
            options[key] = check_value(path, line(key), f"port[{i}].{key}", p[key], validator, expected)
    return options


def resolve_underlays(path, ports, line):
    """Point each tunnel port at its underlay port; the underlay must be a non-tunnel port with a mac."""
    by_name = {p.name: (k, p) for k, p in enumerate(ports)}
    for k, p in enumerate(ports):
        if p.type not in TUNNEL_TYPES:
            continue
        name = p.options["underlay"]
        if name not in by_name:
            raise ConfigError(path, f"port[{k}].underlay", f"no port named {name!r}; ports are: "
                              f"{', '.join(q.name for q in ports)}", line(k, "underlay"))
        j, u = by_name[name]
        if u.type in TUNNEL_TYPES:
            raise ConfigError(path, f"port[{k}].underlay", f"port {name!r} is a tunnel port; expected the "
                              "port the encapsulated packets use", line(k, "underlay"))
        if "mac" not in u.options:
            raise ConfigError(path, f"port[{j}].mac", f"port {name!r} carries tunnel {p.name!r}: expected "
                              f"{UNDERLAY_KEYS['mac'][1]}", line(j, None))
        u.options.setdefault("mtu", 1500)
    seen = {}
    for k, p in enumerate(ports):
        if p.type in TUNNEL_TYPES:
            o = p.options
            ident = (o["underlay"], p.type, o["local_ip"], o["dst_port"], o["remote_ip"], o["key"])
            if ident in seen:
                raise ConfigError(path, f"port[{k}]", f"tunnel {p.name!r} receives the same packets as "
                                  f"{seen[ident]!r} (same underlay, type, local_ip, dst_port, remote_ip and key)",
                                  line(k, None))
            seen[ident] = p.name


def _table_list(path, doc, loc, name, keys):
    """[[name]] tables, each checked against `keys` (all required) -> [(index, values, line)]."""
    entries = doc.get(name, [])
    if not isinstance(entries, list):
        raise ConfigError(path, name, f"expected [[{name}]] tables", loc.line(name))
    out = []
    for i, e in enumerate(entries):
        line = lambda k=None, i=i: loc.line(name, i, k)  # noqa: E731
        if not isinstance(e, dict):
            raise ConfigError(path, f"{name}[{i}]", f"expected a [[{name}]] table, got {e!r}", line())
        for key in e:
            if key not in keys:
                raise ConfigError(path, f"{name}[{i}].{key}",
                                  f"unknown key; expected one of: {', '.join(sorted(keys))}", line(key))
        values = {}
        for key, (validator, expected) in keys.items():
            if key not in e:
                raise ConfigError(path, f"{name}[{i}].{key}", f"missing; expected {expected}", line())
            values[key] = check_value(path, line(key), f"{name}[{i}].{key}", e[key], validator, expected)
        out.append((i, values, line))
    return out


def geneve_options(path, doc, loc):
    """[[geneve_option]] tables -> [(class, type, len, field index)]."""
    out, fields, classes = [], {}, {}
    for i, v, line in _table_list(path, doc, loc, "geneve_option", GENEVE_OPTION_KEYS):
        if v["field"] in fields:
            raise ConfigError(path, f"geneve_option[{i}].field", f"{v['field']} already holds geneve_option"
                              f"[{fields[v['field']]}]", line("field"))
        if (v["class"], v["type"]) in classes:
            raise ConfigError(path, f"geneve_option[{i}].type", f"class {v['class']:#x} type {v['type']:#x} "
                              f"already mapped by geneve_option[{classes[v['class'], v['type']]}]", line("type"))
        fields[v["field"]], classes[v["class"], v["type"]] = i, i
        out.append((v["class"], v["type"], v["len"], int(v["field"][len("tun_metadata"):])))
    return out


def neighbours(path, doc, loc):
    """[[neighbor]] tables -> {ip address: mac int}."""
    out = {}
    for i, v, line in _table_list(path, doc, loc, "neighbor", NEIGHBOR_KEYS):
        if v["ip"] in out:
            raise ConfigError(path, f"neighbor[{i}].ip", f"duplicate neighbour {v['ip']}", line("ip"))
        out[v["ip"]] = v["mac"]
    return out
