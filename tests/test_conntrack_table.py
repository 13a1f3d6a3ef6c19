"""Conntrack table and UDP/ICMP tracking: kernels against a plain-Python reference model.

Random packet sequences (IPv4 and IPv6, UDP and ICMP echo, two zones, both
directions, time jumps past the timeouts, a table small enough to fill) go
through ct(commit) and must give the ct_state the model gives; the index must
stay consistent (every entry findable, counts agree) through deletions,
lazy expiry, sweeps and refusals.
"""
import random

import numpy as np
import pytest
from scapy.all import ICMP, IP, UDP, Ether, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, raw

from softdpu.stages.conntrack.execute import ct_execute, ct_execute_batch
from softdpu.stages.conntrack.harness import CtHarness, state_str
from softdpu.stages.conntrack.table import (C_ENTRIES, E_EXP, K_USED, ct_find, ct_sweep, key_hash)
from softdpu.stages.conntrack.timeouts import CtTimeouts

S = 1_000_000_000
E = Ether(src="00:00:00:00:00:01", dst="00:00:00:00:00:02")
NEW, EST, RPL, INV, TRK = 0x01, 0x02, 0x08, 0x10, 0x20


def check_index(table):
    """Every used entry is findable at its key; the index holds exactly the used entries."""
    used = np.nonzero(table.keys[:, 5] & K_USED)[0]
    assert len(used) == table.st[C_ENTRIES]
    assert np.count_nonzero(table.idx) == len(used)
    for e in used:
        k = [np.uint64(x) for x in table.keys[e]]
        k5 = np.uint64(int(k[5]) & ~(1 << 63))
        s, f = ct_find(table.idx, table.keys, k[0], k[1], k[2], k[3], k[4], k5, np.uint64(key_hash(*k)))
        assert f == e


class Model:
    """OVS's "other" (UDP) and ICMP echo semantics for ct(commit), as plain Python."""

    def __init__(self, cap, tmo):
        self.cap = cap
        self.t = tmo
        self.conns = {}

    def step(self, zone, proto, src, dst, sport, dport, now, icmp_type=None):
        if proto == "icmp":
            rev = {8: 0, 0: 8, 128: 129, 129: 128}[icmp_type]
            a, b = (src, icmp_type, sport), (dst, rev, sport)
        else:
            a, b = (src, sport), (dst, dport)
        k = (zone, proto, frozenset((a, b)))
        c = self.conns.get(k)
        if c and c["exp"] <= now:
            del self.conns[k]
            c = None
        if c:
            reply = a != c["orig"]
            if proto == "icmp":       # OVS icmp_conn_update: more requests before a reply are +new
                res = EST
                if reply:
                    c["st"] = 1
                elif c["st"] == 0:
                    res = NEW
                c["exp"] = now + (self.t.icmp_reply if c["st"] else self.t.icmp_first) * S
                return TRK | res | (RPL if reply else 0)
            res = EST
            if reply and c["st"] != 2:
                c["st"] = 2
            elif c["st"] != 2:         # +new until a reply (OVS 3.1)
                c["st"] = 1
                res = NEW
            c["exp"] = now + (self.t.udp_first, self.t.udp_single, self.t.udp_multiple)[c["st"]] * S
            return TRK | res | (RPL if reply and res == EST else 0)
        if proto == "icmp" and icmp_type not in (8, 128):
            return TRK | INV
        live = sum(1 for v in self.conns.values() if v["exp"] > now)
        if live < self.cap:
            for kk in [kk for kk, v in self.conns.items() if v["exp"] <= now]:
                del self.conns[kk]
            first = self.t.icmp_first if proto == "icmp" else self.t.udp_first
            self.conns[k] = {"orig": a, "st": 0, "exp": now + first * S}
        return TRK | NEW


def frame(v6, proto, src, dst, sport, dport, icmp_type):
    ip = IPv6(src=f"2001:db8::{src}", dst=f"2001:db8::{dst}") if v6 else IP(src=f"10.0.0.{src}", dst=f"10.0.0.{dst}")
    if proto == "udp":
        return raw(E / ip / UDP(sport=sport, dport=dport) / b"data")
    if v6:
        l4 = (ICMPv6EchoRequest if icmp_type == 128 else ICMPv6EchoReply)(id=sport, seq=1)
    else:
        l4 = ICMP(type=icmp_type, id=sport, seq=1)
    return raw(E / ip / l4)


@pytest.mark.parametrize("seed", range(6))
def test_random_sequences_match_the_model(seed):
    rng = random.Random(seed)
    tmo = CtTimeouts(udp_first=3, udp_single=5, udp_multiple=2, icmp_first=4, icmp_reply=2)
    cap = rng.choice([4, 8, 16])
    h = CtHarness(max_entries=cap, timeouts=tmo)
    model = Model(cap, tmo)
    now = 0
    for step in range(400):
        now += rng.choice([0, 1, 10, 100, 1000]) * 1_000_000 + (rng.random() < 0.05) * 6 * S
        v6 = rng.random() < 0.4
        zone = rng.choice([0, 0, 7])
        src, dst = rng.sample([1, 2, 3, 4], 2)
        if rng.random() < 0.6:
            proto, t = "udp", None
            sport, dport = rng.choice([1000, 1001]), rng.choice([53, 1000])
        else:
            proto = "icmp"
            t = rng.choice([128, 129]) if v6 else rng.choice([8, 0])
            sport, dport = rng.choice([1, 2]), 0
        got = h.ct(frame(v6, proto, src, dst, sport, dport, t), now, zone=zone, commit=True)
        want = model.step((zone, v6), proto, src, dst, sport, dport, now, t)
        assert got == want, (step, state_str(got), state_str(want), proto, v6, src, dst, sport, dport, t)
        if step % 50 == 0:
            check_index(h.table)
    check_index(h.table)


def test_zones_isolate_and_ct_fields_land_in_the_key():
    h = CtHarness()
    f = raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6))
    r = raw(E / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=6, dport=5))
    assert h.ct(f, 0, zone=1, commit=True, mark=(0xAB, 0xFFFFFFFF), label=(1 << 100, 1 << 100)) == TRK | NEW
    assert h.key_ct() == (TRK | NEW, 1, 0xAB, 1 << 100)
    assert h.ct(r, 1, zone=2, commit=False) == TRK | NEW   # another zone: another connection
    assert h.key_ct() == (TRK | NEW, 2, 0, 0)
    assert h.ct(r, 2, zone=1) == TRK | EST | RPL
    assert h.key_ct() == (TRK | EST | RPL, 1, 0xAB, 1 << 100)
    assert h.last_tuple() == (0x0A000001, 0x0A000002, 5, 6, 17, 0)   # the original direction
    assert h.table.counters()["entries"] == 1                        # zone 2 was not committed


def test_table_full_refuses_new_connections_and_keeps_live_ones():
    h = CtHarness(max_entries=4, timeouts=CtTimeouts(udp_first=10, udp_single=10, udp_multiple=10))
    flows = [raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=100 + i, dport=53)) for i in range(6)]
    for i in range(4):
        assert h.ct(flows[i], i) == TRK | NEW
    assert h.ct(flows[4], 5) == TRK | NEW           # +new, but not tracked
    assert h.info()[0] & 4 and h.info()[1] == 0    # OI_REFUSED, no connection
    assert h.table.counters()["refused_full"] == 1
    for i in range(4):
        assert h.ct(flows[i], 6) == TRK | NEW       # the live ones are all still there:
        assert h.info()[1] != 0                     # (a second packet of "other" is still +new)
    assert h.ct(flows[4], 17 * S) == TRK | NEW      # now the others are dead: reclaimed
    assert h.info()[1] != 0
    check_index(h.table)


def test_sweep_reclaims_everything_expired_in_bounded_steps():
    h = CtHarness(max_entries=300, timeouts=CtTimeouts(udp_first=1))
    for i in range(300):
        h.ct(raw(E / IP(src="10.0.1.%d" % (i % 250), dst="10.0.0.2") / UDP(sport=100 + i, dport=53)), i)
    t = h.table
    assert t.st[C_ENTRIES] == 300
    swept = 0
    for _ in range(64):
        swept += ct_sweep(t.idx, t.keys, t.ent, t.free, t.st, 2 * S, 32)
        check_index(t)
    assert swept == 300 and t.st[C_ENTRIES] == 0 and t.counters()["expired"] == 300


def test_expiry_on_the_capture_clock_default_timeouts():
    h = CtHarness()
    f = raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6))
    r = raw(E / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=6, dport=5))
    assert h.ct(f, 0) == TRK | NEW
    assert h.ct(r, 59 * S) == TRK | EST | RPL            # udp_first = 60 s
    assert h.ct(f, 59 * S + 29 * S) == TRK | EST         # udp_multiple = 30 s
    assert h.ct(f, 59 * S + 29 * S + 30 * S) == TRK | NEW
    e = h.info()[1] - 1
    assert h.table.ent[e, E_EXP] == 118 * S + 60 * S


def test_ipv6_icmp_echo_and_other_protocols():
    h = CtHarness()
    req = raw(E / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=9))
    rep = raw(E / IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply(id=9))
    assert h.ct(rep, 0) == TRK | INV                # a reply cannot start a connection
    assert h.ct(req, 1) == TRK | NEW
    assert h.ct(rep, 2) == TRK | EST | RPL
    assert h.last_tuple() == (0x20010DB8 << 96 | 1, 0x20010DB8 << 96 | 2, 128, 0, 58, 1)
    gre = raw(E / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / (b"\x00" * 8))
    gre_r = raw(E / IP(src="10.0.0.2", dst="10.0.0.1", proto=47) / (b"\x00" * 8))
    assert h.ct(gre, 3) == TRK | NEW
    assert h.ct(gre_r, 4) == TRK | EST | RPL
    assert h.last_tuple()[2:5] == (0, 0, 47)


def test_bad_packets_are_invalid_with_a_counted_reason():
    h = CtHarness()
    frag = raw(E / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP(sport=5, dport=6) / (b"x" * 40))
    assert h.ct(frag, 0) == TRK | INV and h.info()[0] >> 8 == 2
    bad = bytearray(raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / b"abcd"))
    bad[-1] ^= 0xFF
    assert h.ct(bytes(bad), 0) == TRK | INV and h.info()[0] >> 8 == 3
    arp = raw(Ether(type=0x0806) / (b"\x00" * 28))
    assert h.ct(arp, 0) == TRK | INV
    port0 = raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=0, dport=6))
    assert h.ct(port0, 0) == TRK | INV
    c = h.table.counters()
    assert (c["inv_frag"], c["inv_csum"], c["inv_malformed"], c["entries"]) == (1, 1, 2, 0)
    assert h.last_tuple() is None and h.key_ct()[2:] == (0, 0)
    assert CtHarness(check_csum=False).ct(bytes(bad), 0) == TRK | NEW


def test_kernels_compile_without_the_runtime_and_batch_form_agrees():
    for fn in (ct_execute, ct_execute_batch, ct_sweep, ct_find):
        assert fn.targetoptions.get("_nrt") is False
    from softdpu.batch import Batch
    from softdpu.stages.conntrack.stage import Conntrack
    from softdpu.stages.parse import parse_batch
    ct = Conntrack(max_entries=16, rows=8)
    b = Batch(size=8)
    for i in range(4):
        b.append(raw(E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=8)), ts=i)
        b.append(raw(E / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=8, dport=7)), ts=i)
    parse_batch(b.data, b.meta, b.key, b.n, False)
    ct.run(b, zone=3, commit=True)
    states = [int(b.key[i, 23]) >> 48 for i in range(8)]
    assert [state_str(s) for s in states] == ["+new+trk"] + ["+est+rpl+trk", "+est+trk"] * 3 + ["+est+rpl+trk"]
    assert len(ct.dump(10)) == 1 and "zone=3" in ct.dump(10)[0]
