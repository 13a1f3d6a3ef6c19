"""The `normal` action's L2 switch: MAC learning per VLAN with aging, and port VLAN modes.

As Open vSwitch's NORMAL (ofproto/ofproto-dpif-xlate.c, lib/mac-learning.c):

  ingress   an access port (`tag = N`) takes untagged or priority-tagged
            frames into VLAN N and refuses other tagged frames; a trunk
            port (`trunks = [...]`, or neither key: all VLANs) takes frames
            whose VLAN it carries, untagged ones into VLAN 0
  learn     (VLAN, source MAC) -> input port, unless the source is multicast
  forward   a known unicast destination goes to its port (never back to
            the input port); unknown unicast, broadcast and multicast flood
            to every port carrying the VLAN but the input one
  egress    access ports send untagged; trunks tag, VLAN 0 untagged

The MAC table is open addressing in one int64 array, entries[cap, 3] =
(vlan << 48 | mac) + 1 (0 = empty), port, last seen (ns).  An entry older
than `aging` is absent; when the table holds `max_entries` the expired
entries are swept and, if still full, the least recently seen one is
evicted (counted).  Clock: the packet timestamps, so pcap runs repeat.
counters[] = (entries, learned, moved, evicted, expired).
"""
import numpy as np

from softdpu._jit import njit

DEFAULT_AGING_S = 300          # OVS's default mac-aging-time
DEFAULT_MAX_ENTRIES = 8192     # OVS's default mac-table-size
C_ENTRIES, C_LEARNED, C_MOVED, C_EVICTED, C_EXPIRED = range(5)
TRUNK = -1                     # port_tag value of a trunk port


@njit(alloc=False, inline=True)
def _slot0(k, mask):
    h = np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64((h >> np.uint64(40)) & np.uint64(mask))


@njit(alloc=False)
def _find(entries, k):
    """Slot holding key k, or -1."""
    mask = entries.shape[0] - 1
    s = _slot0(k, mask)
    for _ in range(entries.shape[0]):
        e = entries[s, 0]
        if e == k:
            return s
        if e == 0:
            return -1
        s = (s + 1) & mask
    return -1


@njit(alloc=False)
def _remove(entries, s):
    """Delete slot s with backward-shift deletion (linear probing stays gap-free)."""
    mask = entries.shape[0] - 1
    j = s
    while True:
        entries[s, 0] = 0
        while True:
            j = (j + 1) & mask
            if entries[j, 0] == 0:
                return
            home = _slot0(entries[j, 0], mask)
            # can entry j move to s?  yes if s lies cyclically in [home, j)
            if (j > s and (home <= s or home > j)) or (j < s and home <= s and home > j):
                break
        entries[s, 0] = entries[j, 0]
        entries[s, 1] = entries[j, 1]
        entries[s, 2] = entries[j, 2]
        s = j


@njit(alloc=False)
def _make_room(entries, counters, now, aging):
    """Sweep expired entries; if still full, evict the least recently seen."""
    s = 0
    while s < entries.shape[0]:
        if entries[s, 0] != 0 and now - entries[s, 2] > aging:
            _remove(entries, s)
            counters[C_ENTRIES] -= 1
            counters[C_EXPIRED] += 1
            continue  # slot s now holds a shifted entry: look again
        s += 1


@njit(alloc=False)
def mac_key(vlan, mac):
    return (np.int64(vlan) << 48 | np.int64(mac)) + 1


@njit(alloc=False)
def mac_lookup(entries, counters, vlan, mac, now, aging):
    """Port where (vlan, mac) was last seen, or -1 (unknown or aged out)."""
    s = _find(entries, mac_key(vlan, mac))
    if s < 0:
        return -1
    if now - entries[s, 2] > aging:
        _remove(entries, s)
        counters[C_ENTRIES] -= 1
        counters[C_EXPIRED] += 1
        return -1
    return entries[s, 1]


@njit(alloc=False)
def mac_learn(entries, counters, vlan, mac, port, now, aging, max_entries):
    """Record that (vlan, mac) is behind port, as of now.  -> True when that is news
    (a new entry, or the MAC moved), False for a refresh or a multicast source."""
    if (mac >> 40) & 1:
        return False  # a multicast source is never learned
    k = mac_key(vlan, mac)
    s = _find(entries, k)
    if s >= 0:
        moved = entries[s, 1] != port
        if moved:
            counters[C_MOVED] += 1
            entries[s, 1] = port
        entries[s, 2] = now
        return moved
    if counters[C_ENTRIES] >= max_entries:
        _make_room(entries, counters, now, aging)
        if counters[C_ENTRIES] >= max_entries:
            oldest, when = -1, np.int64(0)
            for j in range(entries.shape[0]):
                if entries[j, 0] != 0 and (oldest < 0 or entries[j, 2] < when):
                    oldest, when = j, entries[j, 2]
            _remove(entries, oldest)
            counters[C_ENTRIES] -= 1
            counters[C_EVICTED] += 1
    mask = entries.shape[0] - 1
    s = _slot0(k, mask)
    while entries[s, 0] != 0:
        s = (s + 1) & mask
    entries[s, 0] = k
    entries[s, 1] = port
    entries[s, 2] = now
    counters[C_ENTRIES] += 1
    counters[C_LEARNED] += 1
    return True


@njit(alloc=False)
def ingress_vlan(port_tag, trunks, k, tci):
    """VLAN a frame with TCI `tci` (key vlan_tci: 0x1000 set if tagged) joins on port index k; -1 refused."""
    vid = tci & 0xFFF
    tagged = (tci & 0x1000) != 0
    if port_tag[k] != TRUNK:
        if tagged and vid != 0:
            return -1
        return port_tag[k]
    if not tagged:
        vid = 0
    return vid if trunks[k, vid] else -1


@njit(alloc=False)
def carries(port_tag, trunks, k, vlan):
    """Does port index k carry VLAN `vlan`?"""
    if port_tag[k] != TRUNK:
        return port_tag[k] == vlan
    return trunks[k, vlan]


class MacTable:
    """One pipeline's MAC learning table and its counters."""

    def __init__(self, max_entries=DEFAULT_MAX_ENTRIES, aging_s=DEFAULT_AGING_S):
        cap = 1
        while cap < 2 * max_entries:
            cap *= 2
        self.entries = np.zeros((cap, 3), np.int64)
        self.counters = np.zeros(5, np.int64)
        self.max_entries = max_entries
        self.aging = int(aging_s * 1_000_000_000)

    def learn(self, vlan, mac, port, now):
        mac_learn(self.entries, self.counters, vlan, mac, port, now, self.aging, self.max_entries)

    def lookup(self, vlan, mac, now):
        return int(mac_lookup(self.entries, self.counters, vlan, mac, now, self.aging))

    def dump(self, now):
        """[(port, vlan, mac, age_s)] like `ovs-appctl fdb/show`, live entries only."""
        rows = []
        for k, port, seen in self.entries:
            if k and now - seen <= self.aging:
                k -= 1
                rows.append((int(port), int(k >> 48), int(k & 0xFFFFFFFFFFFF), (now - seen) // 1_000_000_000))
        return sorted(rows, key=lambda r: (r[1], r[2]))


def port_vlan_arrays(ports):
    """(port_tag int64[P], trunks bool[P, 4096]) from PortConfigs' `tag` / `trunks` options."""
    tag = np.full(len(ports), TRUNK, np.int64)
    trunks = np.ones((len(ports), 4096), np.bool_)
    for k, p in enumerate(ports):
        if p.options.get("tag") is not None:
            tag[k] = p.options["tag"]
        elif p.options.get("trunks"):
            trunks[k] = False
            trunks[k, list(p.options["trunks"])] = True
    return tag, trunks
