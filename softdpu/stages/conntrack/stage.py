"""Conntrack: one pipeline's connection table, the per-row ct scratch, and a dump.

    ct = Conntrack(max_entries=1_000_000, timeouts=CtTimeouts(tcp_established=3600))
    ct.run(batch, zone=0, commit=True)        # ct(commit,zone=0) on every live row
    ct.dump(now)                              # lines as `ovs-appctl dpctl/dump-conntrack`

The action interpreter will not use `run` (it calls execute.ct_execute per
packet from its own kernel, with `*ct.table.arrays` and `ct.out`); `run` is
the whole-batch form, for tests, benchmarks and simple pipelines.
`sweep_budget` index slots are swept per batch (default 2 * batch rows, so a
table of capacity C is swept fully every C / (2 * rows) batches).
"""
import ipaddress

import numpy as np

from softdpu.stages.conntrack.execute import OUT_COLS, ct_execute_batch
from softdpu.stages.conntrack.prefetch import ct_prefetch
from softdpu.stages.conntrack.extract import P_ICMP, P_ICMPV6, P_TCP
from softdpu.stages.conntrack.table import (C_ENTRIES, E_BYTES_O, E_BYTES_R, E_EXP, E_INFO, E_LABEL_HI,
                                            E_LABEL_LO, E_MARK, E_PKTS_O, E_PKTS_R, E_TCP,
                                            K_USED, CtTable)
from softdpu.stages.conntrack.tcp import (TCPS_ESTABLISHED, TCPS_FIN_WAIT_2, TCPS_NAMES, TCPS_SYN_RECV,
                                          TCPS_TIME_WAIT)

PREFETCH_MIN = 1 << 14   # entries (~2.8 MB of table lines, more than L2): below, ct_prefetch costs more than it saves

# OVS's ct_dpif_format_ipproto: by protocol number whatever the IP version, else the number
PROTO_NAMES = {1: "icmp", 58: "icmpv6", 6: "tcp", 17: "udp", 132: "sctp", 136: "udplite", 33: "dccp",
               2: "igmp"}


class Conntrack:
    """A connection table plus the batch-row scratch `out` (execute.O_* columns)."""

    def __init__(self, max_entries=1_000_000, timeouts=None, check_csum=True, rows=512,
                 sweep_budget=None):
        self.table = CtTable(max_entries, timeouts, check_csum)
        self.out = np.zeros((rows, OUT_COLS), np.uint64)
        self.no_set = np.zeros((1, 6), np.uint64)
        self.zones = np.zeros(rows, np.int64)
        self.sweep_budget = 2 * rows if sweep_budget is None else sweep_budget
        self.slots = np.zeros(rows, np.int64)
        self.prefetch_zone = 0        # the zone ct_prefetch guesses (the pipeline's ct zone)

    def prefetching(self):
        """Does prefetch() work: the table holds at least PREFETCH_MIN entries (below that it
        stays in the caches and the extra pass costs more than it saves)."""
        return self.table.st[C_ENTRIES] >= PREFETCH_MIN

    def prefetch(self, batch):
        """Warm the table lines this batch's ct() lookups will read (prefetch.py; no state),
        when the table is big enough for that to pay."""
        if self.table.st[C_ENTRIES] < PREFETCH_MIN:
            return
        n = batch.n
        if n > len(self.slots):
            self.slots = np.zeros(n, np.int64)
        t = self.table
        ct_prefetch(t.idx, t.keys, t.ent, batch.data, batch.meta, n, self.prefetch_zone, self.slots)

    def run(self, batch, zone=0, commit=False, force=False, mark=None, label=None, new_packets=True):
        """ct(...) on every live row of `batch` (zone: an int or an int64 array per row).
        mark/label: (value, mask) pairs, label values 128-bit ints.  new_packets: the rows
        are packets entering the pipeline (their cached connection is reset first)."""
        n = batch.n
        if new_packets:
            self.out[:n] = 0
        if np.isscalar(zone):
            self.zones[:n] = zone
        else:
            self.zones[:n] = zone[:n]
        setm, srow = self.no_set, -1
        if mark is not None or label is not None:
            mv, mm = mark or (0, 0)
            lv, lm = label or (0, 0)
            setm = np.array([[mv, mm, lv >> 64, lv & (2**64 - 1), lm >> 64, lm & (2**64 - 1)]],
                            np.uint64)
            srow = 0
        t = self.table
        ct_execute_batch(t.idx, t.keys, t.ent, t.free, t.st, batch.data, batch.meta, batch.key,
                         self.out, n, self.zones, commit, force, setm, srow, self.sweep_budget)

    def dump(self, now):
        """The live connections, one `ovs-appctl dpctl/dump-conntrack` line each, sorted."""
        return sorted(entry_line(self.table, int(e)) for e in self.table.live(now))


def _addr(hi, lo, v6):
    if v6:
        return str(ipaddress.IPv6Address((int(hi) << 64) | int(lo)))
    return str(ipaddress.IPv4Address(int(lo) & 0xFFFFFFFF))


def _side(src, dst, sport, dport, proto, v6):
    s = f"src={src},dst={dst}"
    if proto in (P_TCP, 17, 132):
        return f"{s},sport={sport},dport={dport}"
    if (proto == P_ICMP and not v6) or (proto == P_ICMPV6 and v6):
        return f"{s},id={sport & 0xFFFF},type={sport >> 16},code=0"
    return f"{s},sport={sport},dport={dport}"      # OVS prints ports 0 for other protocols


def entry_line(table, e):
    """One entry as dpctl/dump-conntrack prints it (plus packets/bytes as `-s` would)."""
    k = [int(x) for x in table.keys[e]]
    ent = table.ent[e]
    v6 = (k[5] >> 8) & 1
    proto = k[5] & 0xFF
    zone = (k[5] >> 32) & 0xFFFF
    a = (_addr(k[0], k[1], v6), k[4] >> 32)
    b = (_addr(k[2], k[3], v6), k[4] & 0xFFFFFFFF)
    o, p = (a, b) if ent[E_INFO] & 1 else (b, a)
    name = PROTO_NAMES.get(proto, str(proto))
    line = (f"{name},orig=({_side(o[0], p[0], o[1], p[1], proto, v6)}),"
            f"reply=({_side(p[0], o[0], p[1], o[1], proto, v6)})")
    if zone:
        line += f",zone={zone}"
    if ent[E_MARK]:
        line += f",mark={int(ent[E_MARK])}"
    label = ((int(ent[E_LABEL_HI]) & (2**64 - 1)) << 64) | (int(ent[E_LABEL_LO]) & (2**64 - 1))
    if label:
        line += f",labels=0x{label:x}"
    if proto == P_TCP:
        st0 = (int(ent[E_TCP + 1]) >> 24) & 0xFF
        st1 = (int(ent[E_TCP + 3]) >> 24) & 0xFF
        state = max(st0, st1)
        # OVS's coalesce_tcp_state (lib/ct-dpif.c): the non-verbose dump shows the kernel's view
        state = {TCPS_FIN_WAIT_2: TCPS_TIME_WAIT, TCPS_SYN_RECV: TCPS_ESTABLISHED}.get(state, state)
        line += f",protoinfo=(state={TCPS_NAMES[state]})"
    line += (f" packets={int(ent[E_PKTS_O])}/{int(ent[E_PKTS_R])}"
             f" bytes={int(ent[E_BYTES_O])}/{int(ent[E_BYTES_R])} expiry_ns={int(ent[E_EXP])}")
    assert k[5] & int(K_USED)
    return line
