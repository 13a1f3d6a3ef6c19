"""bench/xdp_generator.py, the live bench's in-kernel traffic generator: its hand-assembled
XDP program is accepted by the kernel's verifier and what it sends arrives on the veth
peer as the frame it was given, over `flows` UDP source ports (checked with scapy on
frames captured by a packet socket in the peer's namespace).  Skips without root/netns."""
import secrets
import socket
import subprocess
import sys
import time

import pytest

from live_harness import ROOT, require_netns

sys.path.insert(0, str(ROOT / "bench"))
import xdp_generator  # noqa: E402

from softdpu.live import netns  # noqa: E402


def test_program_is_ten_instructions_and_flows_must_be_a_power_of_two():
    assert len(xdp_generator.program(64)) == 10 * 8
    for bad in (0, 3, 100, 512):
        with pytest.raises(ValueError, match="power of two"):
            xdp_generator.program(bad)


def test_frame_has_no_udp_checksum_and_the_asked_size():
    from scapy.all import UDP, Ether
    f = xdp_generator.udp_frame(64, "02:00:00:00:00:99", "02:00:00:00:00:01")
    assert len(f) == 64 and Ether(f)[UDP].chksum == 0 and Ether(f)[UDP].sport == 1024
    with pytest.raises(ValueError, match="smaller"):
        xdp_generator.udp_frame(30, "02:00:00:00:00:99", "02:00:00:00:00:01")


@pytest.fixture
def pair():
    require_netns()
    tag = secrets.token_hex(2)
    a, b = f"xg{tag}-a", f"xg{tag}-b"
    made = []
    try:
        for ns in (a, b):
            netns.create(ns)
            made.append(ns)
        netns.veth(a, "g0", b, "p0")
        netns.gro_on(b, "p0")                 # the peer's NAPI queue, which XDP_TX needs
        yield a, b
    finally:
        for ns in made:
            netns.destroy(ns)


def _receive(sock, n, timeout=5.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        try:
            got.append(sock.recv(4096))
        except socket.timeout:
            pass
    return got


def test_sends_the_frame_over_flows_source_ports(pair):
    from scapy.all import IP, UDP, Ether
    a, b = pair
    cap = netns.run_in(b, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)))
    try:
        cap.bind(("p0", 0))
        cap.settimeout(0.2)
        gen = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, str(ROOT / "bench/xdp_generator.py"),
                                "g0", "--size", "80", "--flows", "8", "--seconds", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert gen.stdout.readline().strip() == "ready", gen.stderr.read()
            frames = _receive(cap, 400)
        finally:
            out, err = gen.communicate(timeout=30)
        assert gen.returncode == 0, err
    finally:
        cap.close()
    assert len(frames) == 400
    sports = set()
    for f in frames:
        p = Ether(f)
        assert len(f) == 80 and p.dst == "02:00:00:00:00:99" and p[IP].dst == "10.2.0.1"
        assert p[UDP].dport == 9 and p[UDP].chksum == 0 and bytes(p[UDP].payload) == bytes(80 - 42)
        sports.add(p[UDP].sport)
    assert sports <= set(range(1024, 1032)) and len(sports) == 8


def test_with_the_peer_down_it_still_runs_and_stops_on_time(pair):
    """The peer down: the kernel drops what XDP_TX hands the veth; the generator neither
    fails nor runs on past its time."""
    a, b = pair
    netns.set_link(b, "p0", state="down")
    t0 = time.monotonic()
    r = subprocess.run(["ip", "netns", "exec", a, sys.executable, str(ROOT / "bench/xdp_generator.py"),
                        "g0", "--seconds", "0.3"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 20
