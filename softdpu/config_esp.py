"""Pipeline files: IPsec ESP security associations and policies.

    [[esp.sa]]                       # one direction of a static SA (no IKE: keys from the file)
    name = "to-b"                    # referred to by policies and [port.ipsec]
    spi = 0x1001                     # 256..4294967295
    direction = "out"                # "out" (we encrypt) or "in" (we decrypt)
    mode = "tunnel"                  # or "transport"
    aead = "aes-gcm-128"             # "aes-gcm-256" (RFC 4106), "chacha20-poly1305" (RFC 7634)
    key = "00112233445566778899aabbccddeeff"  # hex; 16 bytes (aes-gcm-128) or 32
    salt = "01020304"                # hex, 4 bytes (the nonce's fixed part)
    # key_file = "keys/to-b.key"     # instead of key + salt: hex of key then salt, as `ip xfrm`'s
    #                                # KEYMAT; the file may not be readable by group or others
    local = "198.51.100.1"           # our address: source of "out", destination of "in"
    remote = "203.0.113.1"           # the peer's
    esn = false                      # 64-bit extended sequence numbers (RFC 4303 2.2.1)
    replay_window = 64               # "in" only: 64..4096, a multiple of 64 (RFC 6479 bitmap)
    seq = 0                          # "out" only: the last sequence number already sent (the
                                     # first packet carries seq + 1), e.g. to resume an SA;
                                     # < 2**32 without esn, < 2**63 with it
    natt = false                     # UDP encapsulation (RFC 3948), IPv4 only
    natt_sport = 4500                # its UDP ports on "out"
    natt_dport = 4500
    ttl = 64                         # tunnel mode: the outer TTL / hop limit

    [[esp.policy]]                   # traffic selectors: which packets an SA protects
    sa = "to-b"                      # an "out" SA: matching packets sent are encrypted with it;
                                     # an "in" SA: matching packets must arrive through it
    src = "10.1.0.0/16"              # prefixes (default: any address, of either family)
    dst = "10.2.0.0/16"
    proto = "tcp"                    # "tcp", "udp", "icmp", "icmpv6" or a number (default any)
    sport = 80                       # a port or "1024-65535" (default any)
    dport = "1-1023"
    port = "uplink"                  # "out" only: only packets output to this port (default any)

Policies are tried in file order; the first that matches decides.  A
VXLAN/Geneve port may say

    [port.ipsec]                     # right after its [[port]] table
    sa_out = "vtep-b-out"            # transport-mode SAs between local_ip and remote_ip
    sa_in = "vtep-b-in"              # or a list (several, e.g. during a rekey)

which makes the policies Open vSwitch's IPsec tunnels install: the tunnel's
UDP packets to remote_ip:dst_port leave encrypted with sa_out, and
unencrypted ones from remote_ip are refused (esp_unprotected).
Errors name the file, the line and the key, as config.py's.
"""
import ipaddress
import os
import re
from dataclasses import dataclass, field

from softdpu.config_tunnels import TUNNEL_TYPES
from softdpu.errors import ConfigError

AEADS = {"aes-gcm-128": 16, "aes-gcm-256": 32, "chacha20-poly1305": 32}
PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "icmp6": 58}
HEX_RE = re.compile(r"^(0x)?([0-9A-Fa-f]{2})+$")


@dataclass
class SA:
    name: str
    spi: int
    direction: str
    mode: str
    aead: str
    key: bytes
    salt: bytes
    local: object
    remote: object
    esn: bool = False
    replay_window: int = 64
    seq: int = 0
    natt: bool = False
    natt_sport: int = 4500
    natt_dport: int = 4500
    ttl: int = 64


@dataclass
class Policy:
    sa: str
    src: object = None            # ip_network, or None for any
    dst: object = None
    proto: int = -1               # -1: any
    sport: tuple = (0, 65535)
    dport: tuple = (0, 65535)
    port: int = 0                 # output ofport, 0 = any
    origin: str = ""              # where it came from, for messages


@dataclass
class EspConfig:
    sas: list = field(default_factory=list)
    policies: list = field(default_factory=list)

    def sa(self, name):
        return next(s for s in self.sas if s.name == name)


def _hex(v):
    if not isinstance(v, str) or not HEX_RE.match(v.strip()):
        raise ValueError
    return bytes.fromhex(v.strip()[2:] if v.strip().lower().startswith("0x") else v.strip())


def _port_range(v):
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535:
        return (v, v)
    m = re.match(r"^(\d+)-(\d+)$", v) if isinstance(v, str) else None
    if m and int(m.group(1)) <= int(m.group(2)) <= 65535:
        return (int(m.group(1)), int(m.group(2)))
    raise ValueError


def _proto(v):
    if isinstance(v, str) and v in PROTOS:
        return PROTOS[v]
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255:
        return v
    raise ValueError


def _net(v):
    if not isinstance(v, str):
        raise ValueError
    return ipaddress.ip_network(v, strict=True)


def _ip(v):
    if not isinstance(v, str):
        raise ValueError
    return ipaddress.ip_address(v)


def _int(lo, hi, step=1):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi or v % step:
            raise ValueError
        return v
    return check


def _choice(*allowed):
    def check(v):
        if v not in allowed:
            raise ValueError
        return v
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError
    return v


def _str(v):
    if not isinstance(v, str) or not v:
        raise ValueError
    return v


SA_KEYS = {
    "name": (_str, "an SA name"),
    "spi": (_int(256, 0xFFFFFFFF), "an SPI, 256..4294967295 (0..255 are reserved)"),
    "direction": (_choice("in", "out"), '"in" or "out"'),
    "mode": (_choice("tunnel", "transport"), '"tunnel" or "transport"'),
    "aead": (_choice(*AEADS), f"one of: {', '.join(AEADS)}"),
    "key": (_hex, "the key in hex"),
    "salt": (_hex, "the 4-byte salt in hex"),
    "key_file": (_str, "a file holding the key and salt in hex, relative to the pipeline file"),
    "local": (_ip, 'our IPv4 or IPv6 address, like "198.51.100.1"'),
    "remote": (_ip, 'the peer\'s IPv4 or IPv6 address, like "203.0.113.1"'),
    "esn": (_bool, "true or false: extended (64-bit) sequence numbers"),
    "replay_window": (_int(64, 4096, 64), "a replay window in packets, 64..4096, a multiple of 64"),
    "seq": (_int(0, 2**63 - 1), "the last sequence number sent, 0..2**32-1 (with esn: 0..2**63-1)"),
    "natt": (_bool, "true or false: UDP encapsulation (port 4500)"),
    "natt_sport": (_int(1, 65535), "a UDP port, 1..65535"),
    "natt_dport": (_int(1, 65535), "a UDP port, 1..65535"),
    "ttl": (_int(1, 255), "the outer TTL, 1..255"),
}
SA_REQUIRED = ("name", "spi", "direction", "mode", "aead", "local", "remote")
POLICY_KEYS = {
    "sa": (_str, "the name of an [[esp.sa]]"),
    "src": (_net, 'a prefix like "10.1.0.0/16"'),
    "dst": (_net, 'a prefix like "10.2.0.0/16"'),
    "proto": (_proto, '"tcp", "udp", "icmp", "icmpv6" or a protocol number 0..255'),
    "sport": (_port_range, 'a port 0..65535 or a range like "1024-65535"'),
    "dport": (_port_range, 'a port 0..65535 or a range like "1024-65535"'),
    "port": (_str, "the name of the port the policy applies to on output"),
}
IPSEC_KEYS = ("sa_out", "sa_in")


def _check(path, line, key, value, validator, expected):
    try:
        return validator(value)
    except ValueError:
        raise ConfigError(path, key, f"expected {expected}, got {value!r}", line) from None


def _key_file(path, i, f, line):
    p = (path.parent / f).resolve()
    where = f"esp.sa[{i}].key_file"
    try:
        st = p.stat()
        text = p.read_text()
    except OSError as e:
        raise ConfigError(path, where, f"cannot read {p}: {e.strerror}", line) from None
    if st.st_mode & 0o077:
        raise ConfigError(path, where, f"{p} is readable by others (mode {st.st_mode & 0o777:o}); "
                          "expected chmod 600", line)
    try:
        return _hex("".join(text.split()))
    except ValueError:
        raise ConfigError(path, where, f"{p}: expected the key and the salt in hex", line) from None


def _sa(path, i, e, loc):
    line = lambda k=None: loc.line("esp.sa", i, k)  # noqa: E731
    if not isinstance(e, dict):
        raise ConfigError(path, f"esp.sa[{i}]", "expected an [[esp.sa]] table", line())
    for k in e:
        if k not in SA_KEYS:
            raise ConfigError(path, f"esp.sa[{i}].{k}", f"unknown key; expected one of: {', '.join(SA_KEYS)}",
                              line(k))
    for k in SA_REQUIRED:
        if k not in e:
            raise ConfigError(path, f"esp.sa[{i}].{k}", f"missing; expected {SA_KEYS[k][1]}", line())
    v = {k: _check(path, line(k), f"esp.sa[{i}].{k}", e[k], *SA_KEYS[k]) for k in e}
    klen = AEADS[v["aead"]]
    if "key_file" in v:
        if "key" in v or "salt" in v:
            raise ConfigError(path, f"esp.sa[{i}].key_file", "give key and salt, or key_file, not both",
                              line("key_file"))
        material = _key_file(path, i, v.pop("key_file"), line("key_file"))
        if len(material) != klen + 4:
            raise ConfigError(path, f"esp.sa[{i}].key_file", f"expected {klen} key bytes and 4 salt bytes "
                              f"for {v['aead']}, got {len(material)} bytes", line("key_file"))
        v["key"], v["salt"] = material[:klen], material[klen:]
    for k, n in (("key", klen), ("salt", 4)):
        if k not in v:
            raise ConfigError(path, f"esp.sa[{i}].{k}", f"missing; expected {SA_KEYS[k][1]} (or key_file)", line())
        if len(v[k]) != n:
            raise ConfigError(path, f"esp.sa[{i}].{k}", f"expected {n} bytes for {v['aead'] if k == 'key' else 'the salt'}"
                              f", got {len(v[k])}", line(k))
    if v["local"].version != v["remote"].version:
        raise ConfigError(path, f"esp.sa[{i}].remote", "local and remote are of different IP families",
                          line("remote"))
    if v.get("natt") and v["local"].version != 4:
        raise ConfigError(path, f"esp.sa[{i}].natt", "UDP encapsulation is for IPv4 only", line("natt"))
    if v["direction"] == "out" and "replay_window" in v:
        raise ConfigError(path, f"esp.sa[{i}].replay_window", 'only an "in" SA has a replay window',
                          line("replay_window"))
    if "seq" in v and v["direction"] != "out":
        raise ConfigError(path, f"esp.sa[{i}].seq", 'only an "out" SA has a starting sequence number',
                          line("seq"))
    if v.get("seq", 0) > 0xFFFFFFFF and not v.get("esn"):
        raise ConfigError(path, f"esp.sa[{i}].seq", f"expected at most 4294967295 without esn, got {v['seq']}",
                          line("seq"))
    return SA(**v)


def _policy(path, i, e, loc, sas, ports):
    line = lambda k=None: loc.line("esp.policy", i, k)  # noqa: E731
    if not isinstance(e, dict):
        raise ConfigError(path, f"esp.policy[{i}]", "expected an [[esp.policy]] table", line())
    for k in e:
        if k not in POLICY_KEYS:
            raise ConfigError(path, f"esp.policy[{i}].{k}",
                              f"unknown key; expected one of: {', '.join(POLICY_KEYS)}", line(k))
    if "sa" not in e:
        raise ConfigError(path, f"esp.policy[{i}].sa", f"missing; expected {POLICY_KEYS['sa'][1]}", line())
    v = {k: _check(path, line(k), f"esp.policy[{i}].{k}", e[k], *POLICY_KEYS[k]) for k in e}
    if v["sa"] not in sas:
        raise ConfigError(path, f"esp.policy[{i}].sa", f"no [[esp.sa]] named {v['sa']!r}", line("sa"))
    if "port" in v:
        if sas[v["sa"]].direction != "out":
            raise ConfigError(path, f"esp.policy[{i}].port", 'port applies to policies of "out" SAs',
                              line("port"))
        byname = {p.name: p for p in ports}
        if v["port"] not in byname:
            raise ConfigError(path, f"esp.policy[{i}].port", f"no port named {v['port']!r}", line("port"))
        v["port"] = byname[v["port"]].ofport
    if "src" in v and "dst" in v and v["src"].version != v["dst"].version:
        raise ConfigError(path, f"esp.policy[{i}].dst", "src and dst are of different IP families", line("dst"))
    return Policy(origin=f"esp.policy[{i}]", **v)


def _ipsec_line(loc, k):
    """Line of the [port.ipsec] header that follows the k-th [[port]]."""
    start = loc.line("port", k)
    for n in range((start or 1), len(loc.lines)):
        text = loc.lines[n]
        if re.match(r"^\s*\[\[\s*port\s*\]\]", text):
            break
        if re.match(r"^\s*\[\s*port\s*\.\s*ipsec\s*\]", text):
            return n + 1
    return start


def _port_ipsec(path, k, p, loc, sas, underlay_ofport):
    """[port.ipsec] of tunnel port k -> its policies."""
    ipsec = p.options.pop("ipsec")
    line = _ipsec_line(loc, k)
    where = f"port[{k}].ipsec"
    if p.type not in TUNNEL_TYPES:
        raise ConfigError(path, where, "only a vxlan or geneve port has ipsec", line)
    if not isinstance(ipsec, dict):
        raise ConfigError(path, where, "expected a [port.ipsec] table", line)
    for key in ipsec:
        if key not in IPSEC_KEYS:
            raise ConfigError(path, f"{where}.{key}", f"unknown key; expected one of: {', '.join(IPSEC_KEYS)}",
                              line)
    o = p.options
    if o["remote_ip"] == "flow":
        raise ConfigError(path, where, 'needs a fixed remote_ip (not "flow")', line)
    out = []
    for key, direction in (("sa_out", "out"), ("sa_in", "in")):
        if key not in ipsec:
            raise ConfigError(path, f"{where}.{key}", f"missing; expected the name of an \"{direction}\" "
                              "transport-mode [[esp.sa]]", line)
        names = ipsec[key] if isinstance(ipsec[key], list) and key == "sa_in" else [ipsec[key]]
        for name in names:
            sa = sas.get(name) if isinstance(name, str) else None
            if sa is None:
                raise ConfigError(path, f"{where}.{key}", f"no [[esp.sa]] named {name!r}", line)
            local, remote = o["local_ip"], o["remote_ip"]
            if sa.direction != direction or sa.mode != "transport" or sa.local != local or sa.remote != remote:
                raise ConfigError(path, f"{where}.{key}", f"SA {name!r} must be an \"{direction}\" transport-mode "
                                  f"SA with local = {local} and remote = {remote}", line)
            host = 32 if local.version == 4 else 128
            src, dst = (local, remote) if direction == "out" else (remote, local)
            out.append(Policy(sa=name, src=ipaddress.ip_network(f"{src}/{host}"),
                              dst=ipaddress.ip_network(f"{dst}/{host}"), proto=17,
                              dport=(o["dst_port"], o["dst_port"]),
                              port=underlay_ofport if direction == "out" else 0, origin=where))
    return out


def load(path, doc, loc, ports):
    """The [esp] section and the ports' [port.ipsec] -> an EspConfig, or None when there are neither."""
    esp = doc.get("esp")
    has_ipsec = any("ipsec" in p.options for p in ports)
    if esp is None and not has_ipsec:
        return None
    esp = {} if esp is None else esp
    if not isinstance(esp, dict):
        raise ConfigError(path, "esp", "expected [[esp.sa]] and [[esp.policy]] tables", loc.line("esp"))
    for k in esp:
        if k not in ("sa", "policy"):
            raise ConfigError(path, f"esp.{k}", "unknown key; expected [[esp.sa]] or [[esp.policy]]",
                              loc.line("esp"))
    cfg = EspConfig()
    sas = {}
    seen_spi = {}
    for i, e in enumerate(_list(path, esp, "sa", loc)):
        sa = _sa(path, i, e, loc)
        if sa.name in sas:
            raise ConfigError(path, f"esp.sa[{i}].name", f"duplicate SA name {sa.name!r}",
                              loc.line("esp.sa", i, "name"))
        ident = (sa.direction, sa.spi, sa.local if sa.direction == "in" else sa.remote)
        if ident in seen_spi:
            raise ConfigError(path, f"esp.sa[{i}].spi", f"SPI {sa.spi:#x} already used by SA {seen_spi[ident]!r} "
                              "for the same address and direction", loc.line("esp.sa", i, "spi"))
        seen_spi[ident] = sa.name
        sas[sa.name] = sa
        cfg.sas.append(sa)
    by_name = {p.name: p for p in ports}
    for k, p in enumerate(ports):
        if "ipsec" in p.options:
            under = by_name[p.options["underlay"]].ofport if p.type in TUNNEL_TYPES else 0
            cfg.policies.extend(_port_ipsec(path, k, p, loc, sas, under))
    for i, e in enumerate(_list(path, esp, "policy", loc)):
        cfg.policies.append(_policy(path, i, e, loc, sas, ports))
    return cfg


def _list(path, esp, name, loc):
    v = esp.get(name, [])
    if not isinstance(v, list):
        raise ConfigError(path, f"esp.{name}", f"expected [[esp.{name}]] tables", loc.line(f"esp.{name}"))
    return v
