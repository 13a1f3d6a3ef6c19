"""The MAC learning table and VLAN port modes against a plain-Python model."""
import numpy as np

from softdpu.config import PortConfig
from softdpu.stages.l2 import (C_ENTRIES, C_EVICTED, C_EXPIRED, C_MOVED, MacTable, carries,
                               ingress_vlan, port_vlan_arrays)

S = 1_000_000_000


class RefTable:
    """Dict model: {(vlan, mac): (port, seen)} with aging and least-recently-seen eviction."""

    def __init__(self, max_entries, aging):
        self.t, self.max, self.aging = {}, max_entries, aging
        self.evicted = self.expired = self.moved = 0

    def lookup(self, vlan, mac, now):
        e = self.t.get((vlan, mac))
        if e is None:
            return -1
        if now - e[1] > self.aging:
            del self.t[(vlan, mac)]
            self.expired += 1
            return -1
        return e[0]

    def learn(self, vlan, mac, port, now):
        if (mac >> 40) & 1:
            return
        if (vlan, mac) in self.t:
            if self.t[(vlan, mac)][0] != port:
                self.moved += 1
            self.t[(vlan, mac)] = (port, now)
            return
        if len(self.t) >= self.max:
            for k in [k for k, e in self.t.items() if now - e[1] > self.aging]:
                del self.t[k]
                self.expired += 1
            if len(self.t) >= self.max:
                del self.t[min(self.t, key=lambda k: self.t[k][1])]
                self.evicted += 1
        self.t[(vlan, mac)] = (port, now)


def test_mac_table_matches_the_model_under_churn():
    rng = np.random.default_rng(3)
    for max_entries, aging_s in ((8, 5), (64, 300), (1000, 2)):
        table, ref = MacTable(max_entries, aging_s), RefTable(max_entries, aging_s * S)
        now = 0
        macs = [int(m) & ~(1 << 40) for m in rng.integers(1, 1 << 47, 3 * max_entries)] + [0x010000000001]
        for step in range(6000):
            now += int(rng.integers(1, S // 4))
            vlan = int(rng.integers(0, 3))
            mac = macs[int(rng.integers(0, len(macs)))]
            if rng.random() < 0.5:
                port = int(rng.integers(1, 5))
                table.learn(vlan, mac, port, now)
                ref.learn(vlan, mac, port, now)
            else:
                assert table.lookup(vlan, mac, now) == ref.lookup(vlan, mac, now), step
            assert table.counters[C_ENTRIES] == len(ref.t)
        assert table.counters[C_EVICTED] == ref.evicted
        assert table.counters[C_EXPIRED] == ref.expired
        assert table.counters[C_MOVED] == ref.moved
        assert (max_entries, ref.evicted > 0) != (8, False)  # the small table really evicted
        assert sorted((p, v, m) for p, v, m, _ in table.dump(now)) == sorted(
            (e[0], k[0], k[1]) for k, e in ref.t.items() if now - e[1] <= ref.aging)


def test_multicast_sources_are_not_learned():
    t = MacTable()
    t.learn(0, 0x01005E000001, 3, 0)
    assert t.lookup(0, 0x01005E000001, 0) == -1
    assert t.counters[C_ENTRIES] == 0


def test_aging_follows_the_given_clock():
    t = MacTable(aging_s=300)
    t.learn(10, 0x020000000001, 2, 0)
    assert t.lookup(10, 0x020000000001, 300 * S) == 2
    assert t.lookup(11, 0x020000000001, 300 * S) == -1  # per VLAN
    assert t.lookup(10, 0x020000000001, 300 * S + 1) == -1
    assert t.counters[C_EXPIRED] == 1


def test_port_vlan_modes():
    ports = [PortConfig("acc", 1, "pcap", {"tag": 10}), PortConfig("trk", 2, "pcap", {"trunks": [0, 10, 20]}),
             PortConfig("all", 3, "pcap", {})]
    tag, trunks = port_vlan_arrays(ports)
    # access: untagged and priority-tagged join VLAN 10; other tags refused
    assert ingress_vlan(tag, trunks, 0, 0) == 10
    assert ingress_vlan(tag, trunks, 0, 0x1000 | (5 << 13)) == 10
    assert ingress_vlan(tag, trunks, 0, 0x1000 | 20) == -1
    # trunk: listed VLANs, untagged = VLAN 0 (listed here)
    assert ingress_vlan(tag, trunks, 1, 0x1000 | 20) == 20
    assert ingress_vlan(tag, trunks, 1, 0x1000 | 30) == -1
    assert ingress_vlan(tag, trunks, 1, 0) == 0
    # no tag, no trunks: every VLAN
    assert ingress_vlan(tag, trunks, 2, 0x1000 | 4000) == 4000
    assert carries(tag, trunks, 0, 10) and not carries(tag, trunks, 0, 20)
    assert carries(tag, trunks, 1, 20) and not carries(tag, trunks, 1, 30)
    assert carries(tag, trunks, 2, 30)


def test_vlan_keys_in_pipeline_files(tmp_path):
    import pytest

    from softdpu import config
    from softdpu.errors import ConfigError

    (tmp_path / "p.flows").write_text("actions=drop\n")

    def load(port_lines):
        (tmp_path / "p.toml").write_text('[pipeline]\nflows = "p.flows"\n\n[[port]]\nname = "a"\nofport = 1\n'
                                         'type = "pcap"\n' + port_lines)
        return config.load(tmp_path / "p.toml")

    assert load("tag = 10\n").ports[0].options == {"tag": 10}
    assert load("trunks = [1, 2]\n").ports[0].options == {"trunks": [1, 2]}
    for bad, line, key in (("tag = 4096\n", 8, "tag"), ("trunks = [1, 5000]\n", 8, "trunks"),
                           ("tag = 1\ntrunks = [1]\n", 9, "trunks"), ('tag = "x"\n', 8, "tag")):
        with pytest.raises(ConfigError) as e:
            load(bad)
        assert f"p.toml:{line}:" in str(e.value) and f"port[0].{key}" in str(e.value)


def test_rx_bytes_are_what_was_received_though_normal_retags_in_place(tmp_path):
    """normal retags a unicast packet's own row in place; rx still counts the frame as received."""
    from pathlib import Path

    from ovs_oracle import read_capture
    from softdpu.pipeline import Dpu

    dpu = Dpu.load(Path(__file__).resolve().parent.parent / "pipelines" / "l2-switch.toml")
    stats = dpu.run_pcaps(out_dir=tmp_path)
    retagged = 0
    for port, path in dpu.inputs():
        frames = [f for _, f, _ in read_capture(path)]
        row = stats.port(port.name)
        assert (row["rx_packets"], row["rx_bytes"]) == (len(frames), sum(map(len, frames)))
        retagged += sum(len(f) for f in frames)
    assert retagged
