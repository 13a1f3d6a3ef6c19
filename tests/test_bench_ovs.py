"""bench/: the translation of a pipeline's tunnels for OVS-DPDK (ovs_tunnels.py), the output check
(ovs_check.py) and, where Open vSwitch with DPDK runs, the check itself on the overlay examples.

The translation is checked against what pipelines/*.toml say (ports, addresses,
neighbours, Geneve options) and against what Open vSwitch takes (option names and
defaults, ovs-vswitchd.conf.db(5)); the end-to-end test is the real oracle: OVS-DPDK,
set up by that translation, forwards the pipeline's packets as softdpu does.
"""
import os
import sys
import textwrap
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from softdpu import config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import ovs_check  # noqa: E402
import ovs_tunnels  # noqa: E402
from ovs_oracle import OvsError  # noqa: E402


def test_plan_of_the_vxlan_overlay():
    p = ovs_tunnels.plan(config.load(ROOT / "pipelines" / "vxlan-overlay.toml"))
    assert p["tunnels"] == [
        ("vx0", 10, "vxlan", {"remote_ip": "192.0.2.2", "key": "5000", "local_ip": "192.0.2.1"}),
        ("vxflow", 11, "vxlan", {"remote_ip": "flow", "key": "flow", "local_ip": "192.0.2.1"})]
    u = p["underlays"]["uplink"]
    assert (u["bridge"], u["ofport"], u["mac"], u["addresses"]) == ("br-uplink", 2, "02:00:00:00:00:fe",
                                                                     ["192.0.2.1/24"])
    assert sorted(p["neighbours"]) == [("br-uplink", "192.0.2.2", "02:00:00:00:02:fe"),
                                       ("br-uplink", "192.0.2.3", "02:00:00:00:03:fe")]
    assert sorted(p["routes"]) == [("192.0.2.2/32", "br-uplink"), ("192.0.2.3/32", "br-uplink")]
    assert p["tlv_map"] is None
    assert p["underlay_flows"]["br-uplink"].splitlines() == [
        "priority=100,in_port=LOCAL,udp,tp_dst=4789,actions=output:2",
        "priority=100,in_port=2,udp,nw_dst=192.0.2.1,tp_dst=4789,actions=LOCAL",
        "priority=0,actions=drop"]


def test_plan_of_the_geneve_overlay_over_ipv6():
    p = ovs_tunnels.plan(config.load(ROOT / "pipelines" / "geneve-overlay.toml"))
    assert p["tunnels"] == [("gv0", 10, "geneve", {"remote_ip": "2001:db8::2", "key": "100",
                                                   "local_ip": "2001:db8::1"})]     # csum: OVS's IPv6 default
    assert p["underlays"]["uplink"]["addresses"] == ["2001:db8::1/64"]
    assert p["routes"] == [("2001:db8::2/128", "br-uplink")]
    assert p["tlv_map"] == "{class=0x102,type=0x80,len=4}->tun_metadata0"
    assert "in_port=2,udp6,ipv6_dst=2001:db8::1,tp_dst=6081,actions=LOCAL" in p["underlay_flows"]["br-uplink"]


def _tunnel_pipeline(tmp_path, port_extra, flows="actions=drop\n"):
    (tmp_path / "t.flows").write_text(flows)
    (tmp_path / "t.toml").write_text(textwrap.dedent(f"""\
        [pipeline]
        flows = "t.flows"
        [[port]]
        name = "p1"
        ofport = 1
        type = "pcap"
        [[port]]
        name = "up"
        ofport = 2
        type = "pcap"
        mac = "02:00:00:00:00:fe"
        [[port]]
        name = "t"
        ofport = 10
        underlay = "up"
        """) + port_extra + '\n[[neighbor]]\nip = "198.51.100.2"\nmac = "02:00:00:00:00:99"\n')
    return config.load(tmp_path / "t.toml")


def test_tunnel_options_only_where_they_differ_from_ovs_defaults(tmp_path):
    cfg = _tunnel_pipeline(tmp_path, 'type = "vxlan"\nlocal_ip = "198.51.100.1"\nremote_ip = "198.51.100.2"\n'
                                     'key = 7\ndst_port = 8472\nttl = 9\ntos = "inherit"\ndf_default = false\n'
                                     'csum = true\n')
    (_, _, kind, options), = ovs_tunnels.plan(cfg)["tunnels"]
    assert kind == "vxlan"
    assert options == {"remote_ip": "198.51.100.2", "key": "7", "local_ip": "198.51.100.1", "dst_port": "8472",
                       "ttl": "9", "tos": "inherit", "df_default": "false", "csum": "true"}
    p = ovs_tunnels.plan(cfg)
    assert "udp,tp_dst=8472,actions=output:2" in p["underlay_flows"]["br-up"]


def test_plan_refuses_what_it_cannot_translate(tmp_path):
    base = 'type = "geneve"\nlocal_ip = "2001:db8::1"\nremote_ip = "2001:db8::2"\n'
    with pytest.raises(OvsError, match="csum = false over IPv6"):
        ovs_tunnels.plan(_tunnel_pipeline(tmp_path, base + "csum = false\n"))
    with pytest.raises(OvsError, match="underlay port's ofport 2"):
        ovs_tunnels.plan(_tunnel_pipeline(tmp_path, base, flows="in_port=2,actions=output:1\n"))


def _vxlan(sport, ip_id=0, v6=False):
    inner = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP() / b"x"
    outer = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(src="192.0.2.1", dst="192.0.2.2", id=ip_id)
    udp = UDP(sport=sport, dport=4789) if v6 else UDP(sport=sport, dport=4789, chksum=0)   # as OVS and softdpu
    return bytes(Ether() / outer / udp / VXLAN(vni=5) / inner)


def test_mask_hides_only_what_may_differ_in_a_tunnel_packet():
    assert ovs_check.mask(_vxlan(50000, 0)) == ovs_check.mask(_vxlan(61000, 3))
    assert ovs_check.mask(_vxlan(50000, v6=True)) == ovs_check.mask(_vxlan(61000, v6=True))
    other_vni = bytearray(_vxlan(50000))
    other_vni[14 + 20 + 8 + 6] ^= 1
    assert ovs_check.mask(bytes(other_vni)) != ovs_check.mask(_vxlan(50000))
    plain = bytes(Ether() / IP(id=5) / UDP(sport=1, dport=2))
    assert ovs_check.mask(plain) == plain                    # not a tunnel: untouched


def test_compare_outputs_counts_per_port_and_sets_rejects_apart():
    a = bytes(Ether() / IP() / UDP() / b"a")
    b = bytes(Ether() / IP() / UDP() / b"b")
    rst = bytes(Ether() / IP() / TCP(flags="RA"))
    icmp = bytes(Ether() / IP() / ICMP(type=3, code=13))
    icmp6 = bytes(Ether() / IPv6() / ICMPv6DestUnreach(code=1))
    r = ovs_check.compare_outputs({"p1": [a, a, b, rst], "p2": [icmp, icmp6]}, {"p1": [a, b], "p2": [b]})
    assert (r["softdpu"], r["ovs"], r["same"], r["rejects"], r["differ"]) == (6, 3, 2, 3, 2)
    assert r["only_softdpu"] == [("p1", a.hex())] and r["only_ovs"] == [("p2", b.hex())]
    assert not ovs_check.is_reject(bytes(Ether() / IP() / TCP(flags="S")))
    assert not ovs_check.is_reject(bytes(Ether() / IP() / ICMP(type=3, code=3)))


def _ovs_dpdk_or_skip():
    from ovs_dpdk import available
    why = available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"OVS-DPDK unavailable under CI: {why}")
        pytest.skip(why)


@pytest.mark.parametrize("name", ["vxlan-overlay", "acl"])
def test_ovs_dpdk_forwards_the_pipeline_as_softdpu_does(tmp_path, name):
    """The oracle: OVS-DPDK set up from the pipeline file (the tunnels by ovs_tunnels.plan/apply)."""
    _ovs_dpdk_or_skip()
    from compare import pipeline_traffic
    pcaps, _ = pipeline_traffic(ROOT / "pipelines" / f"{name}.toml", tmp_path, "64", 2, min_pool=1)
    r = ovs_check.check(ROOT / "pipelines" / f"{name}.toml", pcaps)
    assert r["differ"] == 0, r
    assert r["same"] >= r["in"] // 2                       # most packets leave: not an empty agreement
