"""A softdpu pipeline's tunnel ports, underlays and neighbours as Open vSwitch userspace tunnelling.

    from ovs_tunnels import plan, apply
    p = plan(config.load("pipelines/vxlan-overlay.toml"))    # pure: what to create (tested)
    apply(ovs, p)                                           # on a running bench/ovs_dpdk.py OvsDpdk

softdpu (softdpu/config_tunnels.py) and OVS's native tunnelling say the same
things in different places:

  softdpu                                  OVS (netdev datapath, lib/netdev-native-tnl.c)
  [[port]] type=vxlan|geneve, ofport       Interface type=vxlan|geneve on the flows' bridge
    remote_ip / local_ip / key             options:remote_ip / local_ip / key (IP or "flow")
    dst_port, ttl, tos, df_default, csum   options of the same names, given when not OVS's default
    underlay = "uplink"                    the underlay port sits on a bridge of its own,
                                           br-<name> (other_config:hwaddr = the port's mac),
                                           whose internal port carries the local_ip addresses
                                           (in the kernel: OVS takes a tunnel's source address
                                           and the addresses it terminates from it)
  [[neighbor]] ip, mac                     tnl/neigh/set br-<name> IP MAC, and a host route
                                           ovs/route/add IP/32 (or /128) br-<name>
  [[geneve_option]] class, type, len,      ovs-ofctl add-tlv-map br0
    field = tun_metadata<n>                  {class=..,type=..,len=..}->tun_metadata<n>

The underlay bridge's flows (`underlay_flows`): an encapsulated packet that the
flows' bridge pushes arrives on br-<name> as from its LOCAL port and is sent out of
the underlay port (only UDP to a tunnel's destination port: whatever else the
kernel sends from the internal port is dropped); a packet from the underlay port
to one of our tunnel addresses and a tunnel's UDP port is output to LOCAL, where
OVS pops it (tnl_pop) into the tunnel port; anything else from the underlay is
dropped.  In softdpu the latter enters the flows with in_port = the underlay
port, so a pipeline whose flows name the underlay's ofport is refused here
(OvsError): the example overlays' flows do not, and drop such packets in table 0.
"""
import ipaddress
import subprocess

from ovs_oracle import OvsError

DEFAULTS = {"ttl": 64, "tos": 0, "df_default": True}
TUNNEL_TYPES = ("vxlan", "geneve")
DEFAULT_DST_PORT = {"vxlan": 4789, "geneve": 6081}


def _mac(v):
    return ":".join(f"{(v >> (8 * k)) & 0xFF:02x}" for k in range(5, -1, -1)) if isinstance(v, int) else str(v)


def bridge_of(underlay):
    name = f"br-{underlay}"
    if len(name) > 15:
        raise OvsError(f"underlay port {underlay!r}: the bridge name {name!r} is longer than a Linux "
                       "interface name (15)")
    return name


def tunnel_options(port):
    """options:* of one softdpu tunnel port as OVS takes them ({key: text})."""
    o = port.options
    out = {"remote_ip": str(o["remote_ip"]), "key": str(o.get("key", 0))}
    if o.get("local_ip") is not None:
        out["local_ip"] = str(o["local_ip"])
    if o.get("dst_port", DEFAULT_DST_PORT[port.type]) != DEFAULT_DST_PORT[port.type]:
        out["dst_port"] = str(o["dst_port"])
    for k, default in DEFAULTS.items():
        if k in o and o[k] != default:
            out[k] = str(o[k]).lower() if isinstance(o[k], bool) else str(o[k])
    family = ipaddress.ip_address(o["local_ip"]).version if o.get("local_ip") is not None else 4
    if o.get("csum") and family == 4:
        out["csum"] = "true"             # over IPv6 OVS always computes it (and so does softdpu by default)
    if o.get("csum") is False and family == 6:
        raise OvsError(f"{port.name}: csum = false over IPv6: OVS computes the UDP checksum regardless")
    return out


def plan(cfg):
    """What OVS needs for cfg's tunnels: {tunnels, underlays, neighbours, routes, tlv_map, underlay_flows}."""
    ports = {p.name: p for p in cfg.ports}
    tunnels = [p for p in cfg.ports if p.type in TUNNEL_TYPES]
    underlays = {}
    for t in tunnels:
        u = ports[t.options["underlay"]]
        if "mac" not in u.options:
            raise OvsError(f"underlay port {u.name}: no mac (OVS's underlay bridge needs its address)")
        d = underlays.setdefault(u.name, {"bridge": bridge_of(u.name), "ofport": u.ofport,
                                          "mac": _mac(u.options["mac"]), "addresses": [], "udp": set()})
        local = t.options.get("local_ip")
        if local is None:
            raise OvsError(f"{t.name}: no local_ip (OVS needs the VTEP address on the underlay bridge)")
        plen = 24 if local.version == 4 else 64
        a = f"{local}/{plen}"
        if a not in d["addresses"]:
            d["addresses"].append(a)
        d["udp"].add((local.version, t.options.get("dst_port", DEFAULT_DST_PORT[t.type]), str(local)))
    flows_text = cfg.flows.read_text() if hasattr(cfg.flows, "read_text") else ""
    for u in underlays.values():
        if f"in_port={u['ofport']}" in flows_text.replace(" ", "") or \
                f"output:{u['ofport']}" in flows_text.replace(" ", ""):
            raise OvsError(f"{cfg.name}: the flows use the underlay port's ofport {u['ofport']} directly; "
                           "only tunnel traffic is carried over the underlay bridge here")
    neighbours, routes = [], []
    only = next(iter(underlays.values()))["bridge"] if len(underlays) == 1 else None
    for ip, mac in cfg.neighbors.items():
        if only is None:
            raise OvsError(f"{cfg.name}: neighbours with more than one underlay are not translated")
        neighbours.append((only, str(ip), _mac(mac)))
        routes.append((f"{ip}/{32 if ip.version == 4 else 128}", only))
    tlv = ",".join(f"{{class=0x{c:x},type=0x{t:x},len={n}}}->tun_metadata{k}" for c, t, n, k in cfg.geneve_options)
    return {"tunnels": [(t.name, t.ofport, t.type, tunnel_options(t)) for t in tunnels],
            "underlays": {name: dict(d, udp=sorted(d["udp"])) for name, d in underlays.items()},
            "neighbours": neighbours, "routes": routes, "tlv_map": tlv or None,
            "underlay_flows": {d["bridge"]: underlay_flows(d["ofport"], sorted(d["udp"])) for d in underlays.values()}}


def underlay_flows(ofport, udp):
    """The underlay bridge's flows: udp = [(family, dst_port, local address)]."""
    lines = []
    for family, port, local in udp:
        proto, dst = ("udp", "nw_dst") if family == 4 else ("udp6", "ipv6_dst")
        lines.append(f"priority=100,in_port=LOCAL,{proto},tp_dst={port},actions=output:{ofport}")
        lines.append(f"priority=100,in_port={ofport},{proto},{dst}={local},tp_dst={port},actions=LOCAL")
    lines.append("priority=0,actions=drop")
    return "\n".join(lines) + "\n"


def apply(ovs, p, netns, bridge="br0"):
    """Create p's tunnel ports on `bridge` and its underlay bridges, addresses, routes and neighbours.
    Call settle() once the other ports are added, before sending (and neighbours_missing() after).

    The underlay ports themselves (dpdk ports) are added by the caller, with ofport and
    bridge from p["underlays"]; their flows are added here (ovs-ofctl before the port exists)."""
    def ip(*argv):
        subprocess.run(["ip", "netns", "exec", netns, "ip", *argv], check=True, timeout=20,
                       capture_output=True)

    for name, u in p["underlays"].items():
        b = u["bridge"]
        ovs.vsctl("add-br", b, "--", "set", "Bridge", b, "datapath_type=netdev", "fail_mode=secure",
                  f"other_config:hwaddr={u['mac']}", "other_config:disable-in-band=true")
        for a in u["addresses"]:
            ip(*(["-6", "addr", "add", a, "dev", b, "nodad"] if ":" in a else ["addr", "add", a, "dev", b]))
        ip("link", "set", b, "up")
        for a in u["addresses"]:
            net = ipaddress.ip_interface(a).network
            ovs.appctl("ovs/route/add", str(net), b)
        _add_flows(ovs, b, p["underlay_flows"][b])
    for prefix, b in p["routes"]:
        ovs.appctl("ovs/route/add", prefix, b)
    for b, addr, mac in p["neighbours"]:
        ovs.appctl("tnl/neigh/set", b, addr, mac)
    for name, ofport, kind, options in p["tunnels"]:
        ovs.vsctl("add-port", bridge, name, "--", "set", "Interface", name, f"type={kind}",
                  *(f"options:{k}={v}" for k, v in options.items()), f"ofport_request={ofport}")
    if p["tlv_map"]:
        ovs.ofctl("add-tlv-map", p["tlv_map"])
    for u in p["underlays"].values():
        wait_terminating(ovs, u, ip)


def wait_terminating(ovs, u, ip, timeout=15.0):
    """Wait until OVS pops tunnel packets arriving for each address on u's bridge: ofproto/trace
    of such a packet shows tnl_pop.  OVS learns the internal port's addresses from netlink
    notifications; one it missed (the address was added as OVS opened the tap) is added again."""
    import time

    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    probes = []
    for family, port, local in u["udp"]:
        ip_ = IP(src="192.0.2.254", dst=local) if family == 4 else IPv6(src="2001:db8::fe", dst=local)
        frame = Ether(src="02:00:00:00:00:01", dst=u["mac"]) / ip_ / UDP(sport=50000, dport=port) / bytes(8) / \
            Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:03", type=0x88B5)
        probes.append((f"in_port={u['ofport']}", bytes(frame).hex()))
    deadline, kick = time.monotonic() + timeout, time.monotonic() + 2.0
    for probe in probes:
        while "tnl_pop" not in ovs.appctl("ofproto/trace", u["bridge"], *probe):
            if time.monotonic() > deadline:
                raise OvsError(f"{u['bridge']}: OVS does not terminate tunnels after {timeout} s ({probe})")
            if time.monotonic() > kick:              # re-announce the addresses
                for a in u["addresses"]:
                    six = ["-6"] if ":" in a else []
                    ip(*six, "addr", "del", a, "dev", u["bridge"])
                    ip(*six, "addr", "add", a, "dev", u["bridge"], *(["nodad"] if six else []))
                kick = time.monotonic() + 2.0
            time.sleep(0.1)


def _add_flows(ovs, bridge, text):
    path = ovs.dir / f"{bridge}.flows"
    path.write_text(text)
    ovs._run("ovs-ofctl", "add-flows", f"unix:{ovs.run_dir / (bridge + '.mgmt')}", path)


def neighbours_missing(ovs, p):
    """The neighbours of p that OVS's tunnel neighbour cache does not hold (now)."""
    text = ovs.appctl("tnl/neigh/show")
    have = {(line.split()[0], line.split()[1].lower()) for line in text.splitlines()[2:] if len(line.split()) >= 2}
    return [(b, addr, mac) for b, addr, mac in p["neighbours"] if (addr, mac.lower()) not in have]


def settle(ovs, p, timeout=15.0, quiet=1.0):
    """Set p's neighbours until OVS has kept them all for `quiet` seconds: OVS flushes its tunnel
    neighbour cache when the kernel reports address or route changes on the underlay bridge's
    internal port (as it does for a while after the port comes up)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        for b, addr, mac in neighbours_missing(ovs, p):
            ovs.appctl("tnl/neigh/set", b, addr, mac)
        time.sleep(quiet)
        if not neighbours_missing(ovs, p):
            return
        if time.monotonic() > deadline:
            raise OvsError(f"OVS keeps losing the tunnel neighbours {neighbours_missing(ovs, p)}")
