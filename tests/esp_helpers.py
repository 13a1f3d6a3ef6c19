"""Pipelines with ESP SAs for tests: a gateway (lan <-> wan) whose SAs the test chooses.

    dpu, sas = gateway(tmp_path, aead="aes-gcm-128", mode="tunnel", family=4, esn=False, natt=False)

Port lan (1) <-> wan (2); flows forward between them.  SA "out" (spi
0x1001) protects lan -> remote traffic, SA "in" (spi 0x2001) is what the
peer sends.  `scapy_sa(sas["out"])` is scapy's independent
SecurityAssociation for the same keys, so scapy can check our ESP and make
ESP for us.
"""
import ipaddress
import textwrap

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation

from softdpu.pipeline import Dpu

KEYS = {"aes-gcm-128": 16, "aes-gcm-256": 32, "chacha20-poly1305": 32}
SCAPY_ALGO = {"aes-gcm-128": "AES-GCM", "aes-gcm-256": "AES-GCM", "chacha20-poly1305": "CHACHA20-POLY1305"}
ADDRS = {4: ("198.51.100.1", "203.0.113.2", "10.1.0.0/16", "10.2.0.0/16", "10.1.0.5", "10.2.0.7"),
         6: ("2001:db8:1::1", "2001:db8:2::2", "fd00:1::/48", "fd00:2::/48", "fd00:1::5", "fd00:2::7")}


def key_of(aead, spi):
    n = KEYS[aead]
    return bytes((spi + 7 * k) & 0xFF for k in range(n)), bytes((spi >> 4) + k & 0xFF for k in range(4))


def sa_toml(name, spi, direction, mode, aead, local, remote, esn=False, natt=False, window=None, extra=""):
    key, salt = key_of(aead, spi)
    lines = [f'[[esp.sa]]', f'name = "{name}"', f"spi = {spi}", f'direction = "{direction}"',
             f'mode = "{mode}"', f'aead = "{aead}"', f'key = "{key.hex()}"', f'salt = "{salt.hex()}"',
             f'local = "{local}"', f'remote = "{remote}"', f"esn = {str(esn).lower()}",
             f"natt = {str(natt).lower()}"]
    if window:
        lines.append(f"replay_window = {window}")
    return "\n".join(lines) + "\n" + extra + "\n"


def gateway(tmp_path, aead="aes-gcm-128", mode="tunnel", family=4, esn=False, natt=False, window=None,
            backend=None, policies=True, batch=64, text="", flows=None, ports=""):
    local, remote, lan, far, _, _ = ADDRS[family]
    if mode == "transport":          # host to host: the policies select the endpoints themselves
        h = 32 if family == 4 else 128
        lan, far = f"{local}/{h}", f"{remote}/{h}"
    (tmp_path / "gw.flows").write_text(flows or ("table=0, priority=10, in_port=1, actions=output:2\n"
                                                 "table=0, priority=10, in_port=2, actions=output:1\n"))
    doc = textwrap.dedent(f"""\
        [pipeline]
        flows = "gw.flows"
        batch = {batch}
        [[port]]
        name = "lan"
        ofport = 1
        type = "pcap"
        [[port]]
        name = "wan"
        ofport = 2
        type = "pcap"
        mtu = 1500
        mac = "02:00:00:00:00:02"
        """) + ports
    doc += sa_toml("out", 0x1001, "out", mode, aead, local, remote, esn, natt)
    doc += sa_toml("in", 0x2001, "in", mode, aead, local, remote, esn, natt, window)
    if policies:
        doc += f'[[esp.policy]]\nsa = "out"\nsrc = "{lan}"\ndst = "{far}"\n'
        doc += f'[[esp.policy]]\nsa = "in"\nsrc = "{far}"\ndst = "{lan}"\n'
    doc += text
    path = tmp_path / "gw.toml"
    path.write_text(doc)
    dpu = Dpu.load(path)
    if backend is not None:
        from softdpu.stages.esp.stage import Esp
        dpu.esp = Esp(dpu.config.esp, dpu.config.ports, dpu.batch.data.shape[0], dpu.config.max_frame,
                      backend=backend)
        dpu.tracer = None                   # rebuild the steps around the new stage
    return dpu, {s.name: s for s in dpu.config.esp.sas}


def scapy_sa(sa, seq=1):
    """scapy's SecurityAssociation for one of our SAs (as the peer: "in" is what it sends)."""
    ip = IP if sa.local.version == 4 else IPv6
    if sa.direction == "out":
        src, dst = sa.local, sa.remote
    else:
        src, dst = sa.remote, sa.local
    tunnel = ip(src=str(src), dst=str(dst)) if sa.mode == "tunnel" else None
    natt = UDP(sport=sa.natt_sport, dport=sa.natt_dport) if sa.natt else None
    return SecurityAssociation(ESP, spi=sa.spi, seq_num=seq, crypt_algo=SCAPY_ALGO[sa.aead],
                               crypt_key=sa.key + sa.salt, tunnel_header=tunnel, nat_t_header=natt,
                               esn_en=sa.esn)


def inner_packet(family, size, n=0, reply=False):
    """A UDP packet between the two sides' hosts with `size` payload bytes."""
    from scapy.packet import Raw
    *_, a, b = ADDRS[family]
    if reply:
        a, b = b, a
    ip = IP(src=a, dst=b, ttl=63, id=n) if family == 4 else IPv6(src=a, dst=b, hlim=63)
    return ip / UDP(sport=50000 + n, dport=60000) / Raw(bytes((n + k) & 0xFF for k in range(size)))


def host_packet(sa_local, sa_remote, size, n=0):
    """Transport mode: a UDP packet from one endpoint to the other."""
    from scapy.packet import Raw
    v = ipaddress.ip_address(sa_local).version
    ip = IP(src=sa_local, dst=sa_remote, ttl=63, id=n) if v == 4 else IPv6(src=sa_local, dst=sa_remote, hlim=63)
    return ip / UDP(sport=50000 + n, dport=60000) / Raw(bytes((n + k) & 0xFF for k in range(size)))
