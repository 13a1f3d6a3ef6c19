"""The same pipelines written the way a Python user would: scapy, one packet at a time.

    python bench/scapy_pipelines.py CASE --pcap IN.pcap [--packets 20000]
    from scapy_pipelines import PIPELINES, run; run("firewall", frames) -> {mpps, ...}

Each pipeline is a class with process(in_port, frame bytes) -> [(out_port, frame
bytes)], fed from memory (the capture is read before timing, not by scapy's rdpcap):

  output    l2-passthrough: port 1 <-> port 2; the frame is dissected (Ether(frame)),
            as any scapy program that looks at its packets does, and sent as bytes
  normal    a learning switch (dict MAC -> port, one VLAN): learn the source,
            forward to the known port or flood to the others
  firewall  pipelines/firewall.flows' policy: a dict of connections keyed by the
            5-tuple sorted by direction; from port 1 a new one is committed and
            passes, from port 2 only replies of known connections pass; ARP floods
            (no TCP state machine, no checksum checks: simpler than what softdpu
            and OVS do)
  vxlan     VXLAN encap (RFC 7348): Ether/IP/UDP(sport from a hash of the inner
            flow)/VXLAN(vni=5000)/inner, outer IPv4 DF, TTL 64, checksums by scapy
  acl       pipelines/acl.flows' three tables as Python: classify by port and
            source prefix (ipaddress), an ordered rule list for the ACL, then the
            rewrites (MACs, TTL, the VIP's NAT, VLAN 100 to the WAN)
  ipsec-overlay  pipelines/ipsec-overlay.toml: VXLAN encap (as `vxlan`) then
            transport-mode ESP with scapy's SecurityAssociation, and back:
            decrypt (after an anti-replay check), decap VNI 5000
  ipsec-gateway  pipelines/ipsec-gateway.toml: MAC rewrites, then the policies
            (first match) pick a tunnel-mode SA (scapy's SecurityAssociation);
            from the wan, ESP of the inbound SA is decrypted (anti-replay
            first), plain traffic its policy covers is dropped

The ESP analogs read their SAs (SPI, algorithm, key, salt, ESN, replay window,
addresses) from the pipeline file with tomllib; the IV is the 64-bit sequence
number, as softdpu's (RFC 4106 3.1).  The encrypted packets carry what scapy's
SecurityAssociation writes: outer IPv4 ID 1 and no DF in tunnel mode (softdpu:
the sequence number's low 16 bits and the inner DF).

The time is the whole loop (dissect, decide, build bytes) over the packets in
memory, median of `repeat` runs, single thread, in the thread's CPU time (as
`softdpu bench --clock cpu`).
"""
import argparse
import ipaddress
import json
import statistics
import sys
import time
import tomllib
import zlib
from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

PIPELINES_DIR = Path(__file__).resolve().parent.parent / "pipelines"


class Output:
    def process(self, in_port, frame):
        pkt = Ether(frame)
        return [(2 if in_port == 1 else 1, bytes(pkt))]


class Normal:
    def __init__(self, ports=(1, 2)):
        self.ports = ports
        self.macs = {}

    def process(self, in_port, frame):
        pkt = Ether(frame)
        self.macs[pkt.src] = in_port
        out = self.macs.get(pkt.dst)
        raw = bytes(pkt)
        if out is not None and pkt.dst != "ff:ff:ff:ff:ff:ff":
            return [] if out == in_port else [(out, raw)]
        return [(p, raw) for p in self.ports if p != in_port]


class Firewall:
    INSIDE, OUTSIDE = 1, 2

    def __init__(self):
        self.conns = set()

    @staticmethod
    def _key(pkt):
        ip = pkt[IP]
        l4 = pkt[TCP] if TCP in pkt else pkt[UDP] if UDP in pkt else None
        sp, dp = (l4.sport, l4.dport) if l4 is not None else (0, 0)
        return (ip.proto, ip.src, sp, ip.dst, dp)

    def process(self, in_port, frame):
        pkt = Ether(frame)
        if ARP in pkt:
            return [(self.OUTSIDE if in_port == self.INSIDE else self.INSIDE, bytes(pkt))]
        if IP not in pkt:
            return []
        proto, src, sp, dst, dp = self._key(pkt)
        if in_port == self.INSIDE:
            self.conns.add((proto, src, sp, dst, dp))
            return [(self.OUTSIDE, bytes(pkt))]
        if (proto, dst, dp, src, sp) in self.conns:
            return [(self.INSIDE, bytes(pkt))]
        return []


class VxlanEncap:
    def __init__(self, local="192.0.2.1", remote="192.0.2.2", vni=5000,
                 src_mac="02:00:00:00:00:fe", dst_mac="02:00:00:00:02:fe"):
        self.outer = Ether(src=src_mac, dst=dst_mac) / IP(src=local, dst=remote, flags="DF", ttl=64)
        self.vni = vni

    def process(self, in_port, frame):
        inner = Ether(frame)
        sport = 49152 + zlib.crc32(frame[26:38]) % 16384      # addresses + ports of the inner IPv4 flow
        # the inner frame as bytes: scapy leaves an Ethernet trailer (Padding) out of the UDP length
        pkt = self.outer / UDP(sport=sport, dport=4789, chksum=0) / VXLAN(vni=self.vni, flags=0x08) / Raw(bytes(inner))
        return [(2, bytes(pkt))]


def net(prefix):
    return ipaddress.ip_network(prefix)


def inside(addr, prefix):
    return ipaddress.ip_address(addr) in net(prefix)


class Acl:
    """pipelines/acl.flows: LAN p1 10.1.0.0/24, DMZ p2 10.2.0.0/24, WAN p3 (VLAN 100), log host p4."""
    ROUTER = "02:00:00:00:00:fe"
    LAN, DMZ, WAN, LOG = 1, 2, 3, 4
    HOSTS = {"10.1.0.5": (1, "02:00:00:01:00:05"), "10.1.0.200": (1, "02:00:00:01:00:c8"),
             "10.2.0.10": (2, "02:00:00:02:00:0a")}
    UPSTREAM = "02:00:00:03:00:01"
    VIP, SERVER = "203.0.113.10", "10.2.0.10"
    ALLOW, DENY = 1, 2

    def __init__(self):
        self.lan, self.dmz, self.ten = net("10.1.0.0/24"), net("10.2.0.0/24"), net("10.0.0.0/8")
        self.admins, self.blocked = net("10.1.0.0/25"), net("10.66.0.0/16")

    def process(self, in_port, frame):
        pkt = Ether(frame)
        vlan = pkt[Dot1Q].vlan if pkt.type == 0x8100 else None
        if in_port == self.LOG:                                    # the log host answers ARP
            if ARP in pkt:
                tpa = ipaddress.ip_address(pkt[ARP].pdst)
                if tpa in self.lan:
                    return [(self.LAN, bytes(pkt))]
                if tpa in self.dmz:
                    return [(self.DMZ, bytes(pkt))]
            return []
        if ARP in pkt:                                             # ARP to the log host
            spa = ipaddress.ip_address(pkt[ARP].psrc)
            if in_port == self.LAN and spa in self.lan or in_port == self.DMZ and spa in self.dmz:
                return [(self.LOG, bytes(pkt))]
            if in_port == self.WAN and vlan == 100:
                return [(self.LOG, bytes(self.untag(pkt)))]
            return []
        if IP not in pkt:                                          # IPv6, LLDP, ...: dropped
            return []
        src = ipaddress.ip_address(pkt[IP].src)
        if in_port == self.WAN and vlan == 100:
            if src in self.ten:                                    # spoofed inside address
                return []
            pkt, zone = self.untag(pkt), self.WAN
        elif in_port == self.LAN and src in self.lan:
            zone = self.LAN
        elif in_port == self.DMZ and src in self.dmz:
            zone = self.DMZ
        else:
            return []
        if self.decide(pkt[IP], zone) == self.DENY:
            return [(self.LOG, bytes(pkt))]
        return self.route(pkt, zone)

    @staticmethod
    def untag(pkt):
        inner = pkt[Dot1Q].payload
        return Ether(src=pkt.src, dst=pkt.dst, type=pkt[Dot1Q].type) / inner

    def decide(self, ip, zone):
        dst = ipaddress.ip_address(ip.dst)
        fragment = ip.flags.MF or ip.frag > 0
        if dst in self.blocked:
            return self.DENY
        if fragment:
            return self.ALLOW if zone == self.LAN and dst in self.dmz else self.DENY
        tcp = ip[TCP] if ip.proto == 6 else None
        udp = ip[UDP] if ip.proto == 17 else None
        icmp = ip[ICMP] if ip.proto == 1 else None
        tport = tcp.dport if tcp is not None else None
        ack = tcp is not None and bool(tcp.flags.A)
        if zone == self.LAN:
            if str(dst) == self.SERVER and tport == 80:
                return self.ALLOW
            if ipaddress.ip_address(ip.src) in self.admins and dst in self.dmz and tport == 22:
                return self.ALLOW
            if dst in self.ten:
                return self.DENY
            if tport in (80, 443) or tport is not None and 8000 <= tport <= 8063 \
                    or udp is not None and udp.dport == 53 or icmp is not None and icmp.type == 8:
                return self.ALLOW
        elif zone == self.DMZ:
            if ack:
                return self.ALLOW
        else:
            if str(dst) == self.VIP and tport == 443:
                return self.ALLOW
            if dst in self.lan and (ack or udp is not None and udp.sport == 53
                                    or icmp is not None and icmp.type in (0, 3)):
                return self.ALLOW
        return self.DENY

    def route(self, pkt, zone):
        ip = pkt[IP]
        tcp = ip[TCP] if ip.proto == 6 else None
        if zone == self.WAN and tcp is not None and ip.dst == self.VIP and tcp.dport == 443:
            ip.dst = self.SERVER                                   # the published server
            del tcp.chksum
        if ip.dst in self.HOSTS:
            port, mac = self.HOSTS[ip.dst]
        elif inside(ip.dst, "10.0.0.0/8"):
            return []                                              # no neighbour
        else:
            if zone == self.DMZ and tcp is not None and ip.src == self.SERVER and tcp.sport == 443:
                ip.src = self.VIP
                del tcp.chksum
            port, mac = self.WAN, self.UPSTREAM
        if ip.ttl <= 1:
            return []
        ip.ttl -= 1
        del ip.chksum
        pkt.src, pkt.dst = self.ROUTER, mac
        if port == self.WAN:
            pkt = Ether(src=pkt.src, dst=pkt.dst) / Dot1Q(vlan=100, type=pkt.type) / pkt.payload
        return [(port, bytes(pkt))]


def read_sas(pipeline):
    """{name: the [[esp.sa]] table} of a pipeline file, and the file."""
    doc = tomllib.loads(Path(pipeline).read_text())
    return {sa["name"]: sa for sa in doc.get("esp", {}).get("sa", [])}, doc


SCAPY_AEAD = {"aes-gcm-128": "AES-GCM", "aes-gcm-256": "AES-GCM", "chacha20-poly1305": "CHACHA20-POLY1305"}


class Sa:
    """One ESP SA: scapy's SecurityAssociation, our sequence number (the IV) and, inbound, a replay window."""

    def __init__(self, sa):
        ip = IP if ipaddress.ip_address(sa["local"]).version == 4 else IPv6
        tunnel = None
        if sa["mode"] == "tunnel":
            tunnel = ip(src=sa["local"], dst=sa["remote"]) if sa["direction"] == "out" else \
                ip(src=sa["remote"], dst=sa["local"])
        self.spi, self.esn = sa["spi"], sa.get("esn", False)
        self.sa = SecurityAssociation(ESP, spi=sa["spi"], crypt_algo=SCAPY_AEAD[sa["aead"]],
                                      crypt_key=bytes.fromhex(sa["key"]) + bytes.fromhex(sa["salt"]),
                                      tunnel_header=tunnel, esn_en=self.esn)
        self.seq = 0
        self.window, self.top, self.seen = sa.get("replay_window", 64), 0, set()

    def encrypt(self, ip):
        self.seq += 1
        return self.sa.encrypt(ip, seq_num=self.seq & 0xFFFFFFFF, iv=self.seq.to_bytes(8, "big"),
                               esn=self.seq >> 32)

    def decrypt(self, ip):
        """The decrypted packet, or None (replayed, too old, or not authentic)."""
        seq = ip[ESP].seq                       # (ESN: the high half is taken as the top's)
        full = (self.top >> 32 << 32 | seq) if self.esn else seq
        if full == 0 or full + self.window <= self.top or full in self.seen:
            return None
        try:
            plain = self.sa.decrypt(ip, esn=full >> 32)
        except Exception:                       # noqa: BLE001 -- scapy raises IPSecIntegrityError
            return None
        self.seen.add(full)
        if full > self.top:
            self.top = full
            self.seen = {s for s in self.seen if s + self.window > full}
        return plain


class IpsecOverlay(VxlanEncap):
    """pipelines/ipsec-overlay.toml: VM p1 <-> VXLAN VNI 5000 to 192.0.2.2, in transport-mode ESP."""
    VM, UPLINK = 1, 2

    def __init__(self, pipeline=PIPELINES_DIR / "ipsec-overlay.toml"):
        super().__init__()
        sas, doc = read_sas(pipeline)
        self.mtu = next(p.get("mtu", 1500) for p in doc["port"] if p["name"] == "uplink")
        self.outer[IP].id = 0                    # as OVS and softdpu
        self.out = Sa(sas["to-b"])
        self.inb = Sa(sas["from-b"])
        self.local, self.remote = sas["to-b"]["local"], sas["to-b"]["remote"]

    def process(self, in_port, frame):
        if in_port == self.VM:
            (_, outer), = super().process(in_port, frame)
            pkt = Ether(outer)
            body = len(pkt[IP]) - 20 + 2             # + pad length, next header, padded to 4 bytes
            if 20 + 8 + 8 + (body + 3) // 4 * 4 + 16 > self.mtu:     # + ESP header, IV, ICV: too big
                return []
            return [(self.UPLINK, bytes(Ether(src=pkt.src, dst=pkt.dst) / self.out.encrypt(pkt[IP])))]
        pkt = Ether(frame)
        if IP not in pkt or pkt[IP].src != self.remote or pkt[IP].dst != self.local:
            return []
        if ESP not in pkt or pkt[ESP].spi != self.inb.spi:
            return []                            # plaintext VXLAN from the VTEP is refused
        plain = self.inb.decrypt(pkt[IP])
        if plain is None or UDP not in plain or plain[UDP].dport != 4789 or plain[VXLAN].vni != self.vni:
            return []
        return [(self.VM, bytes(plain[VXLAN].payload))]


class IpsecGateway:
    """pipelines/ipsec-gateway.toml: lan (1) <-> wan (2), [[esp.policy]] in order, tunnel-mode SAs."""
    LAN, WAN = 1, 2

    def __init__(self, pipeline=PIPELINES_DIR / "ipsec-gateway.toml"):
        sas, doc = read_sas(pipeline)
        self.sas = {name: Sa(sa) for name, sa in sas.items()}
        self.out_policies, self.in_policies = [], []
        for p in doc["esp"]["policy"]:
            rule = (net(p["src"]), net(p["dst"]), {"tcp": 6, "udp": 17}.get(p.get("proto")), p.get("dport"),
                    self.sas[p["sa"]])
            (self.out_policies if sas[p["sa"]]["direction"] == "out" else self.in_policies).append(rule)
        self.by_spi = {sa.spi: sa for name, sa in self.sas.items() if sas[name]["direction"] == "in"}

    @staticmethod
    def _match(rules, ip):
        src, dst = ipaddress.ip_address(ip.src), ipaddress.ip_address(ip.dst)
        for s, d, proto, dport, sa in rules:
            if src in s and dst in d and (proto is None or ip.proto == proto) and \
                    (dport is None or ip.proto in (6, 17) and ip.payload.dport == dport):
                return sa
        return None

    def process(self, in_port, frame):
        pkt = Ether(frame)
        if IP not in pkt:
            return []
        ip = pkt[IP]
        if in_port == self.LAN:
            sa = self._match(self.out_policies, ip)
            if sa is not None:
                ip = sa.encrypt(IP(bytes(ip)[:ip.len]))          # without the Ethernet trailer
            return [(self.WAN, bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:99") / ip))]
        if ESP in pkt:
            sa = self.by_spi.get(pkt[ESP].spi)
            ip = sa.decrypt(ip) if sa is not None else None
            if ip is None or self._match(self.in_policies, ip) is not sa:
                return []
        elif self._match(self.in_policies, ip) is not None:
            return []                            # plain, but its policy says it must come through an SA
        if not inside(ip.dst, "10.1.0.0/16"):
            return []
        return [(self.LAN, bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:01:05") / ip))]


PIPELINES = {"output": Output, "normal": Normal, "firewall": Firewall, "vxlan": VxlanEncap, "acl": Acl,
             "ipsec-overlay": IpsecOverlay, "ipsec-gateway": IpsecGateway}


def run(case, frames, repeat=3):
    """{case, mpps, ns_per_packet, packets, out_per_packet}; frames: [(in_port, bytes)]."""
    times, outs = [], 0
    for _ in range(repeat):
        p = PIPELINES[case]()
        t = time.thread_time()
        outs = 0
        for port, frame in frames:
            outs += len(p.process(port, frame))
        times.append(time.thread_time() - t)
    dt = statistics.median(times)
    return {"case": case, "mpps": round(len(frames) / dt / 1e6, 5), "ns_per_packet": round(dt / len(frames) * 1e9),
            "packets": len(frames), "out_per_packet": round(outs / len(frames), 3), "runs": repeat}


def read_frames(path, port=1, limit=None):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from ovs_oracle import read_capture

    out = []
    for _, frame, _ in read_capture(path):
        out.append((port, bytes(frame)))
        if limit and len(out) >= limit:
            break
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=sorted(PIPELINES))
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--packets", type=int, default=20_000)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.case, read_frames(args.pcap, limit=args.packets)), indent=2))


if __name__ == "__main__":
    main()
