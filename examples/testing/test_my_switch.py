import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

pytestmark = pytest.mark.pipeline("my-switch.toml")   # the `dpu` fixture loads it (a fresh one per test)

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def udp(src, dst):
    return Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1234, dport=53)


def test_unknown_destination_floods_then_is_learned(dpu):
    dpu.send("p1", udp(A, B))          # B is not known yet: flooded
    dpu.expect("p2", udp(A, B))
    dpu.expect("p3", udp(A, B))
    dpu.send("p2", udp(B, A))          # A was learned on p1
    dpu.expect("p1", udp(B, A))
    dpu.expect_nothing_else()


def test_learned_addresses_age_out(dpu):
    dpu.send("p1", udp(A, B))
    dpu.clear()                        # forget the flood; what the switch learned stays
    dpu.advance(61)                    # seconds: past mac_aging
    dpu.send("p2", udp(B, A))
    dpu.expect("p1", udp(B, A))        # A aged out: flooded again
    dpu.expect("p3", udp(B, A))
    dpu.expect_nothing_else()


def test_ssh_is_dropped(dpu):
    dpu.send("p1", Ether(src=A, dst=B) / IP(dst="10.0.0.2") / TCP(dport=22, flags="S"))
    dpu.expect_drop("action_drop")
    dpu.expect_nothing_else()
