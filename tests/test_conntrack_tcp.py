"""TCP connection tracking scenarios built with scapy, checked against the ct_state
Open vSwitch's userspace conntrack (conntrack-tcp.c) gives each packet, through the
ovs-actions(7) firewall pattern: ct(table=1), then ct(commit) for +new packets.
Also ICMP errors (+rel) about TCP connections, expiry, and IPv6.
"""
from scapy.all import ICMP, IP, TCP, Ether, ICMPv6DestUnreach, IPv6, raw

from softdpu.stages.conntrack.harness import CtHarness, state_str
from softdpu.stages.conntrack.timeouts import CtTimeouts

S = 1_000_000_000
E = Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02")
C, SV = "10.0.0.1", "10.0.0.2"


def c2s(flags, seq, ack=0, win=1000, data=b"", opts=(), sport=1234, v6=False):
    ip = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(src=C, dst=SV)
    return raw(E / ip / TCP(sport=sport, dport=80, flags=flags, seq=seq % 2**32, ack=ack % 2**32, window=win,
                            options=list(opts)) / data)


def s2c(flags, seq, ack=0, win=1000, data=b"", opts=(), sport=1234, v6=False):
    ip = IPv6(src="2001:db8::2", dst="2001:db8::1") if v6 else IP(src=SV, dst=C)
    return raw(E / ip / TCP(sport=80, dport=sport, flags=flags, seq=seq % 2**32, ack=ack % 2**32, window=win,
                            options=list(opts)) / data)


def run(pkts, h=None, dt=S // 1000):
    h = h or CtHarness()
    return [state_str(h.firewall(p, i * dt)) for i, p in enumerate(pkts)], h


HANDSHAKE = [c2s("S", 100), s2c("SA", 500, 101), c2s("A", 101, 501)]
N, EST, RPL, INV = "+new+trk", "+est+trk", "+est+rpl+trk", "+inv+trk"


def test_handshake_data_fin():
    pk = HANDSHAKE + [c2s("PA", 101, 501, data=b"x" * 100), s2c("A", 501, 201),
                      c2s("FA", 201, 501), s2c("FA", 501, 202), c2s("A", 202, 502)]
    states, h = run(pk)
    assert states == [N, RPL, EST, EST, RPL, EST, RPL, EST]
    # both peers FIN_WAIT_2, which OVS's dump (coalesce_tcp_state) prints as TIME_WAIT
    assert "protoinfo=(state=TIME_WAIT)" in h.conntrack.dump(10 * S)[0]
    assert "packets=5/3" in h.conntrack.dump(10 * S)[0]


def test_ipv6_handshake_and_syn_ack_cannot_start():
    pk = [s2c("SA", 500, 101, v6=True), c2s("S", 100, v6=True), s2c("SA", 500, 101, v6=True),
          c2s("A", 101, 501, v6=True)]
    assert run(pk)[0] == [INV, N, RPL, EST]


def test_retransmission_is_established():
    pk = HANDSHAKE + [c2s("PA", 101, 501, data=b"x" * 100)] * 3 + [c2s("S", 100)]
    assert run(pk)[0] == [N, RPL, EST, EST, EST, EST, EST]


def test_out_of_window_data_is_invalid():
    pk = HANDSHAKE + [c2s("PA", 101 + 5000, 501, data=b"x" * 10),      # past the 1000-byte window
                      c2s("PA", 101 - 200000, 501, data=b"x" * 10),    # far behind
                      c2s("PA", 101 + 900, 501, data=b"x" * 100),      # last byte within
                      s2c("A", 501, 101 + 400000)]                     # acks data never sent
    assert run(pk)[0] == [N, RPL, EST, INV, INV, EST, INV]


def test_window_scaling_widens_the_window():
    ws = [("WScale", 4)]
    pk = [c2s("S", 100, opts=ws), s2c("SA", 500, 101, opts=ws), c2s("A", 101, 501), s2c("A", 501, 101),
          c2s("PA", 101 + 12000, 501, data=b"x" * 100)]               # within 1000 << 4
    assert run(pk)[0] == [N, RPL, EST, RPL, EST]   # the SYN's window is unscaled; the ACK's is
    pk = [c2s("S", 100), s2c("SA", 500, 101), c2s("A", 101, 501), s2c("A", 501, 101),
          c2s("PA", 101 + 12000, 501, data=b"x" * 100)]
    assert run(pk)[0] == [N, RPL, EST, RPL, INV]
    pk = [c2s("S", 100, opts=ws), s2c("SA", 500, 101), c2s("A", 101, 501), s2c("A", 501, 101),
          c2s("PA", 101 + 12000, 501, data=b"x" * 100)]
    assert run(pk)[0] == [N, RPL, EST, RPL, INV]


def test_rst_closes_and_a_bad_rst_is_invalid():
    pk = HANDSHAKE + [s2c("R", 9999), s2c("R", 501), c2s("PA", 101, 501, data=b"x")]
    states, h = run(pk)
    assert states[:5] == [N, RPL, EST, INV, RPL]
    assert "state=TIME_WAIT" in h.conntrack.dump(1 * S)[0]
    assert h.conntrack.dump(1 * S + 30 * S) == []                     # tcp_close = 30 s


def test_time_wait_reuse_with_a_new_syn():
    pk = HANDSHAKE + [c2s("FA", 101, 501), s2c("FA", 501, 102), c2s("A", 102, 502),
                      c2s("S", 7777), s2c("SA", 9000, 7778), c2s("A", 7778, 9001)]
    states, h = run(pk)
    assert states == [N, RPL, EST, EST, RPL, EST, N, RPL, EST]
    assert h.table.counters()["reopened"] == 1 and h.table.counters()["entries"] == 1


def test_simultaneous_open():
    pk = [c2s("S", 100), s2c("S", 500), c2s("SA", 100, 501), s2c("SA", 500, 101),
          c2s("A", 101, 501)]
    assert run(pk)[0] == [N, N, EST, RPL, EST]      # the crossing SYN is +new (as OVS 3.1)


def test_midstream_pickup_and_timeouts():
    h = CtHarness(timeouts=CtTimeouts(tcp_syn_sent=5))
    assert state_str(h.firewall(c2s("A", 5000, 800), 0)) == N       # picked up (liberal)
    assert state_str(h.firewall(s2c("A", 800, 5000), 1)) == RPL
    h2 = CtHarness()
    assert state_str(h2.firewall(c2s("S", 100), 0)) == N
    assert state_str(h2.firewall(c2s("S", 100), 29 * S)) == N       # a retransmitted SYN is +new (OVS); syn_sent 30 s
    assert state_str(h2.firewall(c2s("S", 100), 29 * S + 30 * S)) == N


def test_icmp_errors_about_tracked_connections_are_related():
    h = CtHarness()
    run(HANDSHAKE, h)
    err = raw(E / IP(src="10.9.9.9", dst=C) / ICMP(type=11) / IP(src=C, dst=SV) /
              TCP(sport=1234, dport=80, flags="A", seq=101))
    assert state_str(h.firewall(err, S)) == "+rel+rpl+trk"
    other = raw(E / IP(src="10.9.9.9", dst=C) / ICMP(type=3, code=1) / IP(src=C, dst=SV) /
                TCP(sport=9, dport=80))
    assert state_str(h.firewall(other, S)) == INV
    spoof = raw(E / IP(src="10.9.9.9", dst="10.0.0.7") / ICMP(type=3, code=1) / IP(src=C, dst=SV) /
                TCP(sport=1234, dport=80))
    assert state_str(h.firewall(spoof, S)) == INV       # embedded source must be the error's destination
    h6 = CtHarness()
    run([c2s("S", 100, v6=True), s2c("SA", 500, 101, v6=True)], h6)
    e6 = raw(E / IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6DestUnreach() /
             IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1234, dport=80, flags="S", seq=100))
    assert state_str(h6.firewall(e6, S)) == "+rel+rpl+trk"
    assert h.table.counters()["inv_related"] == 1 and h.table.counters()["inv_malformed"] == 1
