"""softdpu's ESP against the Linux kernel's (xfrm, esp4): a user-mode-linux guest is the peer.

A gateway, tunnel mode (pipelines/live/ipsec-gateway.toml):

    site A host (10.1.0.5)       softdpu live                         UML guest (Linux 6.1)
    [ns a] eth0 <=> lan [ns dpu] wan (198.51.100.1) <=> peer0 [ns peer] vec0 203.0.113.2, lo 10.2.0.5
                                       tunnel-mode ESP over this wire

A VTEP, transport mode (pipelines/live/overlay-esp-1.toml; the guest is overlay-esp-2's side
with a Linux vxlan device):

    h1 (10.0.0.1) eth0 <=> d1 [ns dpu] u1 (VTEP 192.168.50.1) <=> peer0 [ns peer] vec0 192.168.50.2,
                                                                       vxlan0 10.0.0.2
The guest's `ip xfrm state` / `ip xfrm policy` mirror the pipeline's [[esp.sa]] and
[[esp.policy]] / [port.ipsec] tables (tests/uml_peer.py).  The guest sends UDP and ICMP echoes
to the host behind softdpu, and echoes the UDP datagrams the test sends it from there: each
echo crossed the tunnel both ways, encrypted by one implementation and decrypted by the
other; softdpu's per-SA counters, the kernel's per-state counters and the frames on the wire
(only ESP) must agree.  A wrong key on either side: no echo, and the receiver counts ICV
failures (softdpu: esp_icv; the kernel: XfrmInStateProtoError and its state's "failed").

Needs root, network namespaces and /usr/bin/linux.uml (apt-get install user-mode-linux): skips
without them, fails under CI=true.  Everything is torn down also on failure.
"""
import contextlib
import re
import secrets
import select
import socket
import threading
import time

import pytest
from live_harness import ROOT, START_S, Softdpu, require_netns
from uml_peer import UmlPeer, require_uml, xfrm_policy, xfrm_state

from softdpu import config
from softdpu.live import netns

GATEWAY = ROOT / "pipelines/live/ipsec-gateway.toml"
SITE_A, SITE_A_GW, SITE_B = "10.1.0.5", "10.1.0.1", "10.2.0.5"
SITE_A_MAC = "02:00:00:00:01:05"      # as pipelines/ipsec-gateway.flows send to
LAN_MAC, WAN_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
PEER_MAC = "02:00:00:00:00:99"
PEER, WAN_IP = "203.0.113.2", "198.51.100.1"     # the pipeline's SA addresses
COUNT = 30                            # UDP and ICMP echoes the guest sends, UDP ones the test sends
GUEST_S = START_S                     # the guest's patience: softdpu compiles its ESP kernels on first use
KEY_128 = {"to-site-b": "3c1f0e2d4b5a69788796a5b4c3d2e1f0", "from-site-b": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}


class Lab:
    """Namespaces a, dpu and peer, joined by veths lan<->eth0 (a) and wan<->peer0 (peer); the
    host in a has address host_cidr (its eth0 MAC host_mac; gateway = (ip, MAC, prefix): a route
    to prefix via a static neighbour, softdpu answering no ARP)."""

    def __init__(self, lan="lan", wan="wan", host_cidr=f"{SITE_A}/16", host_mac=SITE_A_MAC,
                 gateway=(SITE_A_GW, LAN_MAC, "10.2.0.0/16"), mtu=None):
        tag = secrets.token_hex(3)
        self.a, self.dpu, self.peer = (f"sdk-{tag}-{n}" for n in ("a", "dpu", "peer"))
        self.lan, self.wan, self.host_cidr, self.host_mac, self.gateway, self.mtu = \
            lan, wan, host_cidr, host_mac, gateway, mtu
        self.made, self.wire = [], {}

    def __enter__(self):
        from pyroute2 import IPRoute
        try:
            for ns in (self.a, self.dpu, self.peer):
                netns.create(ns)
                self.made.append(ns)
            netns.veth(self.dpu, self.lan, self.a, "eth0", mtu=self.mtu)
            netns.veth(self.dpu, self.wan, self.peer, "peer0")
            for ns, dev in ((self.a, "eth0"), (self.peer, "peer0")):
                netns.tx_csum_off(ns, dev)
            if self.host_mac:
                netns.set_link(self.a, "eth0", address=self.host_mac)
            netns.address(self.a, "eth0", self.host_cidr)
            if self.gateway:
                ip, mac, prefix = self.gateway
                with IPRoute(netns=self.a) as ipr:
                    ipr.neigh("add", dst=ip, lladdr=mac, ifindex=ipr.link_lookup(ifname="eth0")[0],
                              state=0x80)              # NUD_PERMANENT
                netns.route(self.a, prefix, ip)
            netns.wait_up(self.a, "eth0")
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for ns in reversed(self.made):
            netns.destroy(ns)
        self.made.clear()

    def __exit__(self, *exc):
        self.close()
        return False


class Echo:
    """A UDP echo server on the site A host (ip, port 7000), on a thread of this process."""

    def __init__(self, ns, ip):
        self.sock = netns.run_in(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self.sock.bind((ip, 7000))
        self.echoed, self.stop = 0, False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            if select.select([self.sock], [], [], 0.1)[0]:
                data, addr = self.sock.recvfrom(4096)
                self.sock.sendto(data, addr)
                self.echoed += 1

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


class Wire:
    """Counts the frames received on dev in ns (a thread with an AF_PACKET socket) by IP protocol
    (IPv4 or IPv6), ESP in UDP 4500 as "natt"; the link's own ARP and ICMPv6 (neighbour
    discovery, MLD) are left out."""

    def __init__(self, ns, dev):
        self.sock = netns.run_in(ns, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
        self.sock.bind((dev, 0))
        self.counts, self.stop = {}, False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self.stop:
            if select.select([self.sock], [], [], 0.1)[0]:
                frame, addr = self.sock.recvfrom(65536)
                kind = int.from_bytes(frame[12:14], "big")
                if addr[2] == socket.PACKET_OUTGOING or kind not in (0x0800, 0x86DD):
                    continue
                ip = frame[14:]
                proto, l4 = (ip[9], ip[(ip[0] & 15) * 4:]) if kind == 0x0800 else (ip[6], ip[40:])
                if kind == 0x86DD and proto == 0:                # hop-by-hop options (MLD): skip them
                    proto, l4 = l4[0], l4[(l4[1] + 1) * 8:]
                if proto == 17 and int.from_bytes(l4[2:4], "big") == 4500:
                    proto = "natt"
                if proto != 58:
                    self.counts[proto] = self.counts.get(proto, 0) + 1

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()
        return self.counts


def _variant(tmp_path, name, **per_sa):
    """pipelines/live/ipsec-gateway.toml with fields of its SAs set: per_sa[sa] = {field: toml value}."""
    text = GATEWAY.read_text().replace('flows = "../', f'flows = "{ROOT}/pipelines/')
    for sa, fields in per_sa.items():
        m = re.search(rf'\[\[esp\.sa\]\]\nname = "{sa}"\n.*?(?=\n\[\[|\Z)', text, re.S)
        block = m.group(0)
        for key, value in fields.items():
            block, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", block, flags=re.M)
            if n == 0:
                block += f"\n{key} = {value}"
        text = text[:m.start()] + block + text[m.end():]
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def _sa(cfg, name):
    return next(s for s in cfg.esp.sas if s.name == name)


def _guest_commands(cfg, wrong_key=None, oseq=None, iseq=None):
    """The guest's network and xfrm set-up mirroring cfg's SAs and policies (the peer's view).
    wrong_key: the name of an SA whose key the guest gets wrong; oseq: where the kernel's
    outbound sequence numbers start (the last one "sent"); iseq: where its inbound replay
    window starts (the last one "received")."""
    out_sa, in_sa = _sa(cfg, "to-site-b"), _sa(cfg, "from-site-b")      # softdpu's view
    ours, theirs = str(out_sa.local), str(out_sa.remote)
    pol = {p.sa: p for p in cfg.esp.policies}
    site_a, site_b = str(pol["to-site-b"].src), str(pol["to-site-b"].dst)

    def key(sa):
        k = sa.key + sa.salt
        return bytes([k[0] ^ 0x01]) + k[1:] if sa.name == wrong_key else k
    if out_sa.local.version == 6:        # outer IPv6: the inner route only needs to leave on vec0
        link = ["/run/modprobe ipv6", "ip link set vec0 up", f"ip -6 addr add {theirs}/64 dev vec0 nodad",
                f"ip -6 route add {ours}/128 dev vec0", f"ip addr add {SITE_B}/32 dev lo",
                f"ip -6 neigh replace {ours} lladdr {WAN_MAC} dev vec0 nud permanent",
                f"ip route add {site_a} dev vec0 src {SITE_B}"]
    else:
        link = ["ip link set vec0 up", f"ip addr add {theirs}/24 dev vec0", f"ip addr add {SITE_B}/32 dev lo",
                f"ip route add {ours}/32 dev vec0", f"ip neigh replace {ours} lladdr {WAN_MAC} dev vec0 nud permanent",
                f"ip route add {site_a} via {ours} dev vec0 src {SITE_B}"]
    return [
        *link,
        xfrm_state(out_sa, ours, theirs, key(out_sa), sel=(site_a, site_b), iseq=iseq),  # softdpu encrypts, the kernel decrypts
        xfrm_state(in_sa, theirs, ours, key(in_sa), oseq, (site_b, site_a)),    # the kernel encrypts, softdpu decrypts
        xfrm_policy("out", site_b, site_a, in_sa, theirs, ours),
        xfrm_policy("in", site_a, site_b, out_sa, ours, theirs),
        "ip xfrm state",
    ]


def _esp_counts(text, sa):
    """{"packets": n, drop reason: n} from the `esp sa NAME (...)` line of softdpu's stats."""
    for line in text.splitlines():
        m = re.search(rf"esp sa {sa} \(.*?\): (?:en|de)crypted (\d+) packets \d+ bytes(.*)$", line)
        if m:
            out = {"packets": int(m.group(1))}
            out.update({k: int(v) for k, v in re.findall(r", (\w+) (\d+)", m.group(2))})
            return out
    raise AssertionError(f"no esp sa {sa} line in:\n{text}")


def _wait_counts(sd, sa, want, timeout=60.0):
    """Until softdpu's counters of sa include want (bounded); -> the counts."""
    deadline = time.monotonic() + timeout
    while True:
        counts = _esp_counts(sd.ctl("stats")[1], sa)
        if all(counts.get(k, 0) >= v for k, v in want.items()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def _datagram(k):
    """Datagram k from site A: 12 to 1212 bytes (every ESP padding length), its bytes depending on k."""
    return b"from-a %04d " % k + bytes((3 * k + j) & 255 for j in range((k * 41) % 1201))


def _send_from_site_a(ns, src, dst, count, wait=3.0):
    """count UDP datagrams site A (src) -> the guest's echo server (dst), then "bye"; -> echoes received."""
    s = netns.run_in(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    try:
        s.bind((src, 0))
        got = set()
        for k in range(count):
            s.sendto(_datagram(k), (dst, 7001))
            time.sleep(0.02)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(got) < count:
            if select.select([s], [], [], 0.05)[0]:
                data = s.recv(4096)
                if data.startswith(b"from-a ") and data[7:11].isdigit() and data == _datagram(int(data[7:11])):
                    got.add(int(data[7:11]))
        s.sendto(b"bye", (dst, 7001))
        return len(got)
    finally:
        s.close()


def _kernel_states(console):
    """From the guest's `ip -s xfrm state` and /proc/net/xfrm_stat: ({(src, dst): (packets the state
    carried, its integrity failures)}, XfrmInStateProtoError)."""
    text = console[console.index("GUEST-STATE"):console.index("GUEST-END")]
    states = {}
    for block in re.split(r"^(?=src )", text, flags=re.M)[1:]:
        src, dst = block.split()[1:4:2]
        packets = int(re.search(r"lifetime current:\s+\d+\(bytes\), (\d+)\(packets\)", block).group(1))
        failed = int(re.search(r"stats:\s+replay-window \d+ replay \d+ failed (\d+)", block).group(1))
        states[(src, dst)] = (packets, failed)
    return states, int(re.search(r"XfrmInStateProtoError\s+(\d+)", text).group(1))


def _guest_numbers(line):
    return [int(x) for x in re.findall(r"\d+", line)]


@pytest.fixture
def lab():
    require_netns()
    require_uml()
    with Lab() as lab:
        yield lab


@contextlib.contextmanager
def _session(lab, tmp_path, pipeline, commands, peer=SITE_A, local=SITE_B, serve=True):
    """The site A echo server (on peer), counters on the wire, softdpu running pipeline, then the
    guest set up by commands (its address local) booting: -> (softdpu, uml, echo); all stopped
    on exit, lab.wire: {"to-kernel" / "to-softdpu": {IP protocol or "natt": frames}}."""
    echo, sd, uml = Echo(lab.a, peer), None, None
    lab.wire = {"to-kernel": Wire(lab.peer, "peer0"), "to-softdpu": Wire(lab.dpu, lab.wan)}
    try:
        sd = Softdpu(lab.dpu, pipeline, tmp_path / "run").__enter__()
        uml = UmlPeer(lab.peer, "peer0", PEER_MAC, tmp_path / "uml", commands, peer, local, COUNT, GUEST_S,
                      serve=serve)
        yield sd, uml, echo
    finally:
        for p in (uml, sd):
            if p is not None:
                p.__exit__(None, None, None)
        echo.close()
        lab.wire = {way: w.close() for way, w in lab.wire.items()}


WRAP = 2**32 - 66       # the kernel's ESN counter starts here and passes 2^32 at its 66th packet
CASES = {               # case: (fields of the pipeline's SAs changed, the guest's options)
    "aes-gcm-256-esn": ({}, {}),                                      # the pipeline as shipped
    "aes-gcm-128": ({sa: {"aead": '"aes-gcm-128"', "key": f'"{k}"', "esn": "false"} for sa, k in KEY_128.items()},
                    {}),
    "chacha20-poly1305-esn": ({sa: {"aead": '"chacha20-poly1305"'} for sa in KEY_128}, {}),
    "aes-gcm-256-esn-natt": ({sa: {"natt": "true"} for sa in KEY_128}, {}),     # ESP in UDP 4500
    "aes-gcm-256-esn-ipv6": ({sa: {"local": '"2001:db8:1::1"', "remote": '"2001:db8:2::2"'} for sa in KEY_128},
                             {}),                                                  # IPv4 in IPv6
    # the kernel's sequence numbers cross 2^32: softdpu guesses the high half (RFC 4303 A2.2)
    # from its window (64: the first one, 2^32 - 65, is left of it: high half 0)
    "aes-gcm-256-esn-past-2^32": ({"from-site-b": {"replay_window": "64"}}, {"oseq": WRAP}),
    # and softdpu's: its SA starts at `seq = WRAP`, the kernel's inbound window there too; the
    # kernel infers the high half and checks it in the ICV
    "aes-gcm-256-esn-softdpu-past-2^32": ({"to-site-b": {"seq": str(WRAP)}}, {"iseq": WRAP}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_kernel_peer_both_ways(lab, tmp_path, case):
    fields, guest = CASES[case]
    pipeline = _variant(tmp_path, "variant", **fields) if fields else GATEWAY
    cfg = config.load(pipeline)
    with _session(lab, tmp_path, pipeline, _guest_commands(cfg, **guest)) as (sd, uml, echo):
        udp = _guest_numbers(uml.wait_line("GUEST-UDP", GUEST_S + 30))
        icmp = _guest_numbers(uml.wait_line("GUEST-ICMP", 60))
        uml.wait_line("GUEST-SERVING", 10)
        back = _send_from_site_a(lab.a, SITE_A, SITE_B, COUNT)
        served = _guest_numbers(uml.wait_line("GUEST-SERVED", 10))
        uml.wait_line("GUEST-END", 30)
        assert uml.wait_exit(30) == 0
        stats = sd.ctl("stats")[1]
        console = uml.output
    assert udp[:3] == [COUNT, COUNT, 0], console          # the kernel's UDP echoed, none refused
    assert icmp == [COUNT, COUNT], console
    assert back == COUNT and served[0] == COUNT, console
    decrypted, encrypted = _esp_counts(stats, "from-site-b"), _esp_counts(stats, "to-site-b")
    # every ESP packet the kernel sent softdpu decrypted, and the other way, and nothing else
    assert decrypted == {"packets": 2 * COUNT + COUNT}, stats
    assert encrypted == {"packets": 2 * COUNT + COUNT + 1}, stats
    # and the kernel's own count: what softdpu encrypted it decrypted, what softdpu decrypted it sent
    states, proto_errors = _kernel_states(console)
    ours, theirs = str(_sa(cfg, "to-site-b").local), str(_sa(cfg, "to-site-b").remote)
    assert states == {(ours, theirs): (3 * COUNT + 1, 0), (theirs, ours): (3 * COUNT, 0)}, console
    assert proto_errors == 0, console
    # and on the wire between them, only that ESP
    proto = "natt" if _sa(cfg, "to-site-b").natt else 50
    assert lab.wire == {"to-kernel": {proto: 3 * COUNT + 1}, "to-softdpu": {proto: 3 * COUNT}}, lab.wire
    if _sa(cfg, "from-site-b").esn:        # the kernel's last ESN sent: both halves (past 2^32 for WRAP)
        hi, lo = re.search(r"oseq-hi 0x([0-9a-f]+), oseq 0x([0-9a-f]+)", console.split(f"src {theirs} ")[-1]).groups()
        assert (int(hi, 16) << 32) + int(lo, 16) == guest.get("oseq", 0) + 3 * COUNT, console
    if _sa(cfg, "to-site-b").esn:          # the kernel's last ESN received from softdpu: both halves
        block = console.split(f"src {ours} ")[-1]
        hi, lo = re.search(r"(?<!o)seq-hi 0x([0-9a-f]+), (?<!o)seq 0x([0-9a-f]+)", block).groups()
        assert (int(hi, 16) << 32) + int(lo, 16) == guest.get("iseq", 0) + 3 * COUNT + 1, console


def test_wrong_key_in_the_kernel_is_softdpus_icv_drop(lab, tmp_path):
    """The guest encrypts with a key one bit off: softdpu refuses every packet as esp_icv; the
    other direction still works (the guest gets the test's datagrams)."""
    cfg = config.load(GATEWAY)
    with _session(lab, tmp_path, GATEWAY, _guest_commands(cfg, wrong_key="from-site-b")) as (sd, uml, echo):
        uml.wait_line("GUEST-READY", 60)
        refused = _wait_counts(sd, "from-site-b", {"esp_icv": COUNT}, timeout=GUEST_S)
        back = _send_from_site_a(lab.a, SITE_A, SITE_B, COUNT)            # echoed by the guest, refused by softdpu
        udp = _guest_numbers(uml.wait_line("GUEST-UDP", 30))
        served = _guest_numbers(uml.wait_line("GUEST-SERVED", 30))
        refused = _wait_counts(sd, "from-site-b", {"esp_icv": 2 * COUNT}, timeout=30)
        uml.wait_line("GUEST-END", 30)
        stats = sd.ctl("stats")[1]
        console = uml.output
    assert udp[:2] == [0, COUNT] and echo.echoed == 0, console
    assert back == 0 and served[0] == COUNT, console
    assert refused == {"packets": 0, "esp_icv": 2 * COUNT}, stats
    states, proto_errors = _kernel_states(console)        # the kernel sent 2 * COUNT, all refused
    assert states == {(WAN_IP, PEER): (COUNT + 1, 0), (PEER, WAN_IP): (2 * COUNT, 0)}, console
    assert _esp_counts(stats, "to-site-b") == {"packets": COUNT + 1}, stats


def test_wrong_key_in_softdpu_is_the_kernels_integrity_failure(lab, tmp_path):
    """softdpu encrypts with a key one bit off: softdpu decrypts the guest's datagrams and encrypts
    site A's echoes, the kernel refuses each (XfrmInStateProtoError, its state's integrity-failed)."""
    cfg = config.load(GATEWAY)
    key = _sa(cfg, "to-site-b").key
    bad = _variant(tmp_path, "bad-key", **{"to-site-b": {"key": f'"{key[0] ^ 1:02x}{key[1:].hex()}"'}})
    with _session(lab, tmp_path, bad, _guest_commands(cfg), serve=False) as (sd, uml, echo):
        udp = _guest_numbers(uml.wait_line("GUEST-UDP", GUEST_S + 30))
        uml.wait_line("GUEST-END", 30)
        stats = sd.ctl("stats")[1]
        console = uml.output
    assert udp[:3] == [0, COUNT, COUNT], console           # none echoed: COUNT ICV failures in the kernel
    assert echo.echoed == COUNT
    states, proto_errors = _kernel_states(console)
    assert states == {(WAN_IP, PEER): (0, COUNT), (PEER, WAN_IP): (COUNT, 0)}, console
    assert proto_errors == COUNT, console
    assert _esp_counts(stats, "from-site-b") == {"packets": COUNT}, stats
    assert _esp_counts(stats, "to-site-b") == {"packets": COUNT}, stats


OVERLAY = ROOT / "pipelines/live/overlay-esp-1.toml"
H1, H2 = "10.0.0.1", "10.0.0.2"       # labs/overlay-esp.toml's hosts: h1 behind softdpu, h2 in the guest


def _vtep_commands(cfg):
    """The guest as the other VTEP of pipelines/live/overlay-esp-1.toml (overlay-esp-2's part): a
    Linux vxlan device whose UDP to softdpu's VTEP is in transport-mode ESP (xfrm policies on
    UDP port 4789, as Open vSwitch's IPsec tunnels install)."""
    vx = next(p for p in cfg.ports if p.type == "vxlan").options
    out_sa, in_sa = _sa(cfg, "to-2"), _sa(cfg, "from-2")
    ours, theirs, port = str(vx["local_ip"]), str(vx["remote_ip"]), vx["dst_port"]
    return [
        "ip link set vec0 up",
        f"ip addr add {theirs}/24 dev vec0",
        f"ip link add vxlan0 type vxlan id {vx['key']} local {theirs} remote {ours} dstport {port} dev vec0",
        "ip link set vxlan0 mtu 1400 up",
        f"ip addr add {H2}/24 dev vxlan0",
        xfrm_state(out_sa, ours, theirs),
        xfrm_state(in_sa, theirs, ours),
        xfrm_policy("out", f"{theirs}/32", f"{ours}/32", in_sa, theirs, ours, f"proto udp dport {port}"),
        xfrm_policy("in", f"{ours}/32", f"{theirs}/32", out_sa, ours, theirs, f"proto udp dport {port}"),
    ]


def test_kernel_vtep_transport_mode(tmp_path):
    """pipelines/live/overlay-esp-1.toml with the guest's kernel as the other VTEP: VXLAN in
    transport-mode ESP, AES-GCM-128, softdpu answering ARP for its VTEP and resolving the guest's."""
    require_netns()
    require_uml()
    cfg = config.load(OVERLAY)
    with Lab(lan="d1", wan="u1", host_cidr=f"{H1}/24", host_mac=None, gateway=None, mtu=1400) as lab:
        with _session(lab, tmp_path, OVERLAY, _vtep_commands(cfg), peer=H1, local=H2) as (sd, uml, echo):
            udp = _guest_numbers(uml.wait_line("GUEST-UDP", GUEST_S + 30))
            icmp = _guest_numbers(uml.wait_line("GUEST-ICMP", 60))
            uml.wait_line("GUEST-SERVING", 10)
            back = _send_from_site_a(lab.a, H1, H2, COUNT)
            served = _guest_numbers(uml.wait_line("GUEST-SERVED", 10))
            uml.wait_line("GUEST-END", 30)
            stats = sd.ctl("stats")[1]
            console = uml.output
    assert udp[:3] == [COUNT, COUNT, 0], console
    assert icmp == [COUNT, COUNT], console
    assert back == COUNT and served[0] == COUNT, console
    decrypted, encrypted = _esp_counts(stats, "from-2"), _esp_counts(stats, "to-2")
    states, proto_errors = _kernel_states(console)
    ours, theirs = "192.168.50.1", "192.168.50.2"
    # ARP and IPv6 neighbour discovery inside the overlay add a few: the two sides' counts agree
    assert decrypted["packets"] >= 3 * COUNT and encrypted["packets"] >= 3 * COUNT + 1, stats
    assert len(decrypted) == len(encrypted) == 1, stats                     # no ESP drops
    assert states == {(ours, theirs): (encrypted["packets"], 0), (theirs, ours): (decrypted["packets"], 0)}, console
    assert proto_errors == 0, console
    assert lab.wire == {"to-kernel": {50: encrypted["packets"]}, "to-softdpu": {50: decrypted["packets"]}}, lab.wire
