"""A real TCP session between two network namespaces, captured and replayed through the firewall.

Two namespaces (<prefix>-<random>-c, the client, and -s, the server) joined by
a veth pair: c0 10.77.0.1/24 <=> s0 10.77.0.2/24, static neighbours (no ARP),
IPv6 off (no RS/MLD/ND noise), tx checksum offload off on both ends (with it
on, AF_PACKET would see CHECKSUM_PARTIAL frames whose TCP checksum is only the
pseudo-header sum, which conntrack rejects as +inv, as OVS does).  A Python
socket server in -s and a client in -c do a whole session: connect, data
both ways, close.  An AF_PACKET socket on each end records the frames that
end SENT (PACKET_OUTGOING) with the kernel's timestamp (SO_TIMESTAMPNS): the
client's frames become the capture of the firewall's `inside` port (ofport
1), the server's that of `outside` (2) -- the firewall sits on the wire.

Replayed through pipelines/firewall.toml (connections opened from inside,
their replies back, everything else dropped):
  - every packet of the session passes, unchanged, to the other side;
  - dump-conntrack lists the connection, mark=1, state TIME_WAIT (both ends
    closed: OVS's coalesced state), as OVS prints it;
  - an unsolicited SYN from outside (appended to the outside capture) is dropped;
  - Open vSwitch (tests/ovs_oracle.py, the dummy datapath) given the same two
    captures and firewall.flows gives the same outputs byte for byte and the
    same dump-conntrack;
  - table full: [conntrack] size = 1 and two sessions one after the other:
    the first passes, the second is refused (ct_full drops; the first's
    TIME_WAIT entry is not evicted);
  - timeout: [conntrack.timeouts] tcp_established = 2 and a 10 s gap put into
    the capture before the first data segment from the client: that segment
    starts a new (mid-stream) connection, as OVS does, and the session still
    passes (created 2, expired 1); a gap before a server segment instead gets
    that segment dropped (+new from outside).

Root, pyroute2 and network namespaces are needed: without them the tests skip
locally and FAIL under CI=true (kernel_vxlan.require_kernel_vxlan's pattern).
Everything is torn down on exit, failed set-ups included; every wait is bounded.
"""
import io
import os
import secrets
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from kernel_vxlan import _netns_exists, _run_in_netns, _write_sysctls
from ovs_oracle import read_pcap, write_pcap

from softdpu import cli, config
from softdpu.live.netns import tx_csum_off
from softdpu.pipeline import Dpu

ROOT = Path(__file__).resolve().parent.parent
FIREWALL = ROOT / "pipelines" / "firewall.toml"
CLIENT_IP, SERVER_IP = "10.77.0.1", "10.77.0.2"
SERVER_PORT = 8080
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
NUD_PERMANENT = 0x80
WAIT = 5.0


class NetnsPair:
    """Two namespaces joined by a veth pair (see the module docstring); a context manager."""

    def __init__(self, prefix="ctn"):
        tag = secrets.token_hex(3)
        self.cns, self.sns = f"{prefix}-{tag}-c", f"{prefix}-{tag}-s"
        self._namespaces = []
        self._sockets = []

    def __enter__(self):
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        from pyroute2 import netns
        errors = []
        for s in self._sockets:
            try:
                s.close()
            except OSError as e:
                errors.append(e)
        self._sockets.clear()
        for ns in reversed(self._namespaces):
            if _netns_exists(ns):
                try:
                    netns.remove(ns)
                except Exception as e:
                    errors.append(e)
        self._namespaces.clear()
        if errors:
            raise errors[0]

    def _build(self):
        from pyroute2 import IPRoute, netns
        for ns in (self.cns, self.sns):
            if _netns_exists(ns):
                raise RuntimeError(f"namespace {ns} already exists")
            self._namespaces.append(ns)
            netns.create(ns)
            _write_sysctls(ns, [(f"ipv6/conf/{s}/disable_ipv6", 1) for s in ("default", "all")])
        with IPRoute(netns=self.cns) as ipr:
            ipr.link("add", ifname="c0", kind="veth", peer={"ifname": "s0", "net_ns_fd": self.sns})
        macs = {}
        for ns, dev, ip in ((self.cns, "c0", CLIENT_IP), (self.sns, "s0", SERVER_IP)):
            tx_csum_off(ns, dev)
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname=dev)[0]
                ipr.addr("add", index=idx, address=ip, prefixlen=24)
                macs[dev] = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
                for i in (ipr.link_lookup(ifname="lo")[0], idx):
                    ipr.link("set", index=i, state="up")
        for ns, dev, peer_ip, peer in ((self.cns, "c0", SERVER_IP, "s0"), (self.sns, "s0", CLIENT_IP, "c0")):
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname=dev)[0]
                ipr.neigh("add", dst=peer_ip, lladdr=macs[peer], ifindex=idx, state=NUD_PERMANENT)
                deadline = time.monotonic() + WAIT
                while ipr.get_links(idx)[0].get_attr("IFLA_OPERSTATE") not in ("UP", "UNKNOWN"):
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{dev} not up after {WAIT} s")
                    time.sleep(0.02)
        self.macs = macs

    def socket(self, ns, *args):
        s = _run_in_netns(ns, lambda: socket.socket(*args))
        self._sockets.append(s)
        return s

    def capture_socket(self, ns, dev):
        s = self.socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((dev, ETH_P_ALL))
        s.settimeout(0.3)
        return s

    def session(self, client_port, request=b"GET /thing HTTP/1.0\r\n\r\n", reply_size=1000):
        """One TCP session client -> server: connect, request, reply, client closes, server closes.
        -> (client's frames, server's frames), each [(ts_ns, frame)] as sent."""
        caps = {"c": self.capture_socket(self.cns, "c0"), "s": self.capture_socket(self.sns, "s0")}
        got = {"c": [], "s": []}
        stop = threading.Event()

        def record(side):
            s = caps[side]
            while True:
                try:
                    data, anc, _, addr = s.recvmsg(65536, 64)
                except socket.timeout:
                    if stop.is_set():
                        return
                    continue
                if addr[2] != PACKET_OUTGOING:
                    continue
                ts = time.time_ns()
                for level, kind, val in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", val[:16])
                        ts = sec * 1_000_000_000 + nsec
                got[side].append((ts, data))

        recorders = [threading.Thread(target=record, args=(k,), daemon=True) for k in caps]
        for t in recorders:
            t.start()
        srv = self.socket(self.sns, socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((SERVER_IP, SERVER_PORT))
        srv.listen(1)
        srv.settimeout(WAIT)
        result = {}

        def serve():
            conn, _ = srv.accept()
            conn.settimeout(WAIT)
            with conn:
                result["request"] = conn.recv(4096)
                conn.sendall(b"x" * reply_size)
                result["eof"] = conn.recv(4096)       # b"": the client closed
        server = threading.Thread(target=serve, daemon=True)
        server.start()
        cli_sock = self.socket(self.cns, socket.AF_INET, socket.SOCK_STREAM)
        cli_sock.settimeout(WAIT)
        cli_sock.bind((CLIENT_IP, client_port))
        cli_sock.connect((SERVER_IP, SERVER_PORT))
        cli_sock.sendall(request)
        body = b""
        while len(body) < reply_size:
            chunk = cli_sock.recv(65536)
            assert chunk, "the server closed early"
            body += chunk
        cli_sock.close()
        server.join(WAIT)
        assert not server.is_alive(), "the server did not finish"
        srv.close()
        time.sleep(0.3)              # the last ACK of the close, then stop the recorders
        stop.set()
        for t in recorders:
            t.join(WAIT)
        assert result["request"] == request and result["eof"] == b""
        for s in caps.values():
            s.close()
        return got["c"], got["s"]


@pytest.fixture(scope="module")
def pair():
    from kernel_vxlan import require_kernel_vxlan
    require_kernel_vxlan()
    with NetnsPair() as p:
        yield p


@pytest.fixture(scope="module")
def captured(pair):
    """Two sessions, one after the other (client ports 40001, 40002)."""
    c1, s1 = pair.session(40001)
    c2, s2 = pair.session(40002)
    return (c1, s1), (c2, s2)


def _tcp(frame):
    """(sport, dport, flags, payload length) of an Ethernet/IPv4/TCP frame."""
    ihl = (frame[14] & 0xF) * 4
    t = 14 + ihl
    ip_len = int.from_bytes(frame[16:18], "big")
    doff = (frame[t + 12] >> 4) * 4
    return (int.from_bytes(frame[t:t + 2], "big"), int.from_bytes(frame[t + 2:t + 4], "big"),
            frame[t + 13], ip_len - ihl - doff)


def _pipeline(tmp_path, conntrack=None):
    """A copy of pipelines/firewall.toml with another [conntrack] section (or the same)."""
    text = FIREWALL.read_text()
    if conntrack is not None:
        start = text.index("[conntrack]")
        end = text.index("[[port]]")
        text = text[:start] + conntrack + "\n" + text[end:]
    text = text.replace('flows = "firewall.flows"', f'flows = "{ROOT / "pipelines" / "firewall.flows"}"')
    text = text.replace('"../fixtures/', f'"{ROOT / "fixtures"}/')
    path = tmp_path / "fw.toml"
    path.write_text(text)
    return path


def _replay(toml, tmp_path, inside, outside, name="run"):
    """The captures through softdpu: (outputs {port: [frames]}, stats, conntrack counters, dump lines)."""
    d = tmp_path / name
    d.mkdir()
    ins, outs = d / "inside-in.pcap", d / "outside-in.pcap"
    write_pcap(ins, inside, nanosecond=True)
    write_pcap(outs, outside, nanosecond=True)
    dpu = Dpu.load(toml)
    stats = dpu.run_pcaps(inputs={"inside": ins, "outside": outs}, out_dir=d / "out")
    out = {p: read_pcap(d / "out" / f"{p}.pcap") for p in ("inside", "outside")}
    buf = io.StringIO()
    assert cli.main(["dump-conntrack", str(toml), "--in", f"inside={ins}", "--in", f"outside={outs}"],
                    out=buf) == 0
    dump = sorted(line for line in buf.getvalue().splitlines() if line)
    return out, stats, dpu.flows.conntrack.table.counters(), dump, (ins, outs)


def _frames(records):
    return [f for _, f in records]


def test_session_captured(captured):
    """The capture is a whole session: handshake, data both ways, FIN both ways, valid checksums."""
    (c, s), _ = captured
    cf = [_tcp(f) for _, f in c]
    sf = [_tcp(f) for _, f in s]
    assert cf[0][2] & 0x12 == 0x02 and sf[0][2] & 0x12 == 0x12          # SYN, SYN-ACK
    assert any(x[3] for x in cf) and sum(x[3] for x in sf) >= 1000       # data both ways
    assert any(x[2] & 0x01 for x in cf) and any(x[2] & 0x01 for x in sf)  # FIN both ways
    assert all(x[:2] == (40001, SERVER_PORT) for x in cf)
    from scapy.all import Ether
    for _, f in c + s:
        p = Ether(f)
        tcp = p["TCP"]
        sent = tcp.chksum
        del tcp.chksum
        assert Ether(bytes(p))["TCP"].chksum == sent, "checksum offload left a partial checksum"


def test_session_through_firewall_and_ovs(captured, tmp_path):
    (c, s), _ = captured
    toml = _pipeline(tmp_path)
    syn_from_outside = _unsolicited_syn(s)
    outside = s + [syn_from_outside]
    out, stats, counters, dump, (ins, outs) = _replay(toml, tmp_path, c, outside)
    # every packet of the session passes, unchanged; the unsolicited SYN does not
    assert out["outside"] == _frames(c)
    assert out["inside"] == _frames(s)
    assert stats.drop_counts() == {"action_drop": 1}, stats.drop_counts()
    assert len(dump) == 1, dump
    assert dump[0].startswith(f"tcp,orig=(src={CLIENT_IP},dst={SERVER_IP},sport=40001,dport={SERVER_PORT}),"
                              f"reply=(src={SERVER_IP},dst={CLIENT_IP},sport={SERVER_PORT},dport=40001)")
    assert dump[0].endswith(",mark=1,protoinfo=(state=TIME_WAIT)"), dump
    assert counters["created"] == 1 and counters["inv_tcp"] == 0 and counters["inv_csum"] == 0

    # Open vSwitch, the same captures and flows
    from ovs_oracle import OvsDummy, require_ovs
    require_ovs()
    ports = {"inside": 1, "outside": 2}
    with OvsDummy(tmp_path / "ovs", ports=ports) as ovs:
        ovs.add_flows(ROOT / "pipelines" / "firewall.flows")
        ovs.run_pcaps([("inside", ins), ("outside", outs)])
        theirs = ovs.outputs()
        assert theirs["outside"] == out["outside"]
        assert theirs["inside"] == out["inside"]
        assert sorted(line for line in ovs.appctl("dpctl/dump-conntrack").splitlines() if line) == dump


def _unsolicited_syn(server_records):
    """A SYN from the server's side to a client port nobody opened, a second after the session."""
    from scapy.all import IP, TCP, Ether
    ts, f = server_records[-1]
    e = Ether(f)
    syn = Ether(src=e.src, dst=e.dst) / IP(src=SERVER_IP, dst=CLIENT_IP) / TCP(sport=4444, dport=22, flags="S",
                                                                             seq=12345)
    return ts + 1_000_000_000, bytes(syn)


def test_table_full(captured, tmp_path):
    """size = 1: the first session passes; the second is refused while the first's entry lives."""
    (c1, s1), (c2, s2) = captured
    toml = _pipeline(tmp_path, "[conntrack]\nsize = 1\n")
    out, stats, counters, dump, _ = _replay(toml, tmp_path, c1 + c2, s1 + s2)
    assert out["outside"] == _frames(c1)
    assert out["inside"] == _frames(s1)
    drops = stats.drop_counts()
    assert drops.get("ct_full", 0) >= 1 and sum(drops.values()) == len(c2) + len(s2), drops
    assert counters["refused_full"] == drops["ct_full"] and counters["created"] == 1
    assert len(dump) == 1 and "sport=40001" in dump[0] and "state=TIME_WAIT" in dump[0]


def _gap_before(records_c, records_s, pick, gap_ns):
    """Shift every record at or after the first one pick(side, frame) chooses by gap_ns."""
    merged = sorted([(ts, 0, j, "c") for j, (ts, _) in enumerate(records_c)]
                    + [(ts, 1, j, "s") for j, (ts, _) in enumerate(records_s)])
    cut = next(ts for ts, _, j, side in merged
               if pick(side, (records_c if side == "c" else records_s)[j][1]))
    shift = lambda recs: [(ts + gap_ns if ts >= cut else ts, f) for ts, f in recs]  # noqa: E731
    return shift(records_c), shift(records_s)


def test_timeout_gap_client_first(captured, tmp_path):
    """tcp_established = 2 s, 10 s of silence before the client's first data: the connection expired,
    the client's segment starts a new one mid-stream (as OVS); the whole session still passes."""
    (c, s), _ = captured
    toml = _pipeline(tmp_path, "[conntrack]\nsize = 1024\n[conntrack.timeouts]\ntcp_established = 2\n")
    c2, s2 = _gap_before(c, s, lambda side, f: side == "c" and _tcp(f)[3] > 0, 10 * 10**9)
    out, stats, counters, dump, _ = _replay(toml, tmp_path, c2, s2)
    assert out["outside"] == _frames(c) and out["inside"] == _frames(s)
    assert stats.dropped == 0
    assert counters["created"] == 2 and counters["expired"] == 1, counters


def test_timeout_gap_server_first(captured, tmp_path):
    """The same gap before the server's first data segment: it comes from outside to a connection
    that expired, so it is +new on port 2 and dropped; the client's next segment re-creates it."""
    (c, s), _ = captured
    toml = _pipeline(tmp_path, "[conntrack]\nsize = 1024\n[conntrack.timeouts]\ntcp_established = 2\n")
    first = next(f for _, f in s if _tcp(f)[3] > 0)
    c2, s2 = _gap_before(c, s, lambda side, f: side == "s" and f == first, 10 * 10**9)
    out, stats, counters, dump, _ = _replay(toml, tmp_path, c2, s2)
    assert first not in out["inside"]
    assert out["outside"] == _frames(c)
    assert stats.drop_counts().get("action_drop", 0) >= 1
    assert counters["expired"] == 1 and counters["created"] >= 2, counters
