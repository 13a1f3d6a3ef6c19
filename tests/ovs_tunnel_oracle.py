"""Open vSwitch as a test oracle for overlay tunnels: userspace VXLAN/Geneve push and pop.

    from ovs_oracle import require_ovs
    from ovs_tunnel_oracle import OvsTunnels, udp_source_port

    require_ovs()
    with OvsTunnels(tmp_path, underlay_mac="aa:55:aa:55:00:00", local_ip="192.0.2.1/24",
                    neighbours={"192.0.2.2": "02:00:00:00:00:02"},
                    tunnels={"vx1": dict(type="vxlan", ofport=10, remote_ip="192.0.2.2", key=5000)},
                    ports={"p1": 1, "p2": 2}) as ovs:
        ovs.add_flows("in_port=1,actions=output:10\\nin_port=10,actions=output:2")
        ovs.receive("p1", inner_frame)             # int-br port p1 receives; flows send it to vx1
        ovs.underlay_outputs()                     # [outer frames p0 transmitted]
        ovs.receive_underlay(outer_frame)          # p0 receives an encapsulated frame
        ovs.outputs()                              # {"p1": [], "p2": [inner frame]}
        ovs.trace("p1", inner_frame)               # ofproto/trace int-br (shows tnl_push(...))
        ovs.trace_underlay(outer_frame)            # ofproto/trace br0 (tnl_pop(...)), then int-br
                                                   # with the tunnel metadata of the outer headers
        ovs.reset(tunnels={...}, ports={...})      # next case, same daemons

Topology (as OVS's own tests/tunnel-push-pop*.at).  The OvsDummy daemons (see
ovs_oracle.py: private ovsdb-server + ovs-vswitchd, our children, stopped on any
failure) run two datapath_type=dummy bridges sharing one userspace datapath:

  * the integration bridge `int-br` (OvsDummy's own bridge: fail_mode=secure, only our
    flows) with type=dummy ports (`ports=`, tx_pcap) and tunnel ports (`tunnels=`,
    type=vxlan|geneve);
  * the underlay bridge `br0`: other_config:hwaddr=underlay_mac, one type=dummy port
    `p0` (ofport 1, tx_pcap) and one flow, `actions=normal`.  `netdev-dummy/ip4addr br0
    local_ip` (and ip6addr), `ovs/route/add <local subnet> br0` (OVS 3.1 adds no route
    for an ip4addr by itself), `tnl/neigh/set br0 IP MAC` for every neighbour.

ovs-vswitchd runs with `--enable-dummy=system --disable-system --disable-system-route`
instead of OvsDummy's `--enable-dummy=override`: "override" replaces EVERY netdev
class by dummy, tunnel vports included (a vxlan port then is a plain dummy netdev, the
flows output to it as to any port, and nothing is encapsulated); "system" only
replaces the system class, so vxlan/geneve keep their native-tunnel vport classes
(tnl/ports/show lists vxlan_sys_4789, genev_sys_6081).  --disable-system-route keeps
the kernel's routing table out of ovs/route: only our routes exist.

Push: a frame that int-br's flows output to a tunnel port is translated by OVS's native
tunnelling: ovs/route picks the output bridge (br0) and source address, the tunnel
neighbour cache gives the destination MAC, the datapath action is
`tnl_push(header(...)),out_port(br0)` and the encapsulated frame then goes through
br0's flows as if received on br0's LOCAL port: NORMAL sends it out of p0.  A missing
neighbour makes OVS send an ARP request (ND solicitation for IPv6) out of p0 instead
and drop the frame.  Pop: a frame received on p0 that NORMAL forwards to br0's LOCAL
port (destination MAC = underlay_mac or flooded) with destination IP = a br0 address
and UDP destination port = a listening tunnel port is popped (`tnl_pop(4789)`); the
inner frame enters int-br on the tunnel port whose remote_ip/key/local_ip match (OVS's
tnl_find), with tun_id, tun_src, tun_dst, tun_tos, tun_ttl, tp_src/tp_dst, tun_flags
(+key, +csum when the outer UDP checksum was non-zero) and, for Geneve, the options.
ofproto/trace does not follow a tnl_pop; trace_underlay therefore appends a second
trace: int-br, in_port = the tunnel that matches by the rules below, metadata as OVS's
netdev_*_pop_header sets it from the outer headers (Geneve options are not passed).
Beware: ofproto/trace of a packet whose datapath actions recirculate EXECUTES the
actions other than outputs (ofproto-dpif-trace.c execute_actions_except_outputs), and
tnl_pop is not an output: tracing a frame that OVS pops really decapsulates it and the
inner frame is really forwarded by int-br's flows.  trace_underlay records what that
adds to every tx_pcap and outputs()/underlay_outputs() leave those frames out.

What OVS 3.1 writes in the outer headers (lib/netdev-native-tnl.c, ofproto/tunnel.c,
lib/netdev-vport.c; each point checked by tests/test_ovs_tunnel_oracle.py):

  Ethernet   dst = the neighbour's MAC (tnl/neigh cache for the route's next hop: the
             gateway if the route has one, else remote_ip); src = the MAC of the output
             bridge's internal port (br0: underlay_mac); type 0x0800 / 0x86dd.  No VLAN.
  IPv4       version/IHL 0x45, no options.  TOS = DSCP from options:tos (a number whose
             low 2 bits are 0, default 0) or the inner IP's DSCP with tos=inherit
             (non-IP inner: 0); ECN is ALWAYS from the inner IP packet: inner CE (3)
             becomes ECT(0) (2) outside, ECT(0)/ECT(1) are copied, non-IP inner: 0.
             Total length = frame - 14.  ID = 0 always (the header template is zeroed
             and never given an ID).  Flags: DF (0x4000) by default, none with
             options:df_default=false; fragment offset 0.  TTL = options:ttl (default
             64), ttl=inherit copies the inner IP TTL / hop limit (non-IP: 64).
             Protocol 17.  Checksum valid.  src = the source address of the ovs/route
             entry (br0's address); dst = remote_ip (fixed, or set_field:...->tun_dst
             with remote_ip=flow).  options:local_ip (or tun_src set by flows) would be
             the source, but OVS 3.1 then requires a *local* ovs/route entry for it,
             which only the kernel's routing table provides (netdev-dummy/ip4addr adds
             none, ovs/route/add cannot make one): on this dummy setup a tunnel with
             local_ip cannot push ("native tunnel routing failed", frame dropped).  It
             still matters on receive (the outer destination must equal it).
  IPv6       version 6, traffic class = the same TOS byte as IPv4, flow label 0,
             payload length, next header 17, hop limit = TTL as above; src/dst as above
             (tun_ipv6_dst with remote_ip=flow).  Extension headers: none.
  UDP        dst = options:dst_port (default 4789 VXLAN, 6081 Geneve).  src =
             32768 + ((rss_hash * (61000 - 32768)) >> 32), rss_hash = OVS's
             miniflow_hash_5tuple of the INNER frame (murmur3-style mhash over inner
             IPv4 src,dst (or the four 64-bit words of IPv6 src,dst), nw_proto and the
             two L4 ports, finished with 42; non-IP/ARP-less frames hash to a constant)
             -- deterministic: udp_source_port(inner) below computes it, so it need not
             be masked (mask it, UDP_SPORT_OFFSET, only when the hash is not what is
             being compared).  Length = frame - 14 - IP header.  Checksum: IPv4: 0
             unless options:csum=true; IPv6: ALWAYS computed (csum=false or unset does
             not turn it off); a computed 0 is sent as 0xffff.
  VXLAN      8 bytes: flags word 0x08000000 (I flag only), VNI << 8 (reserved low byte
             0).  VNI = options:key (or out_key), or tun_id from the flows with key=flow.
             Receive accepts a first word of exactly 0x08000000 and a zero reserved
             byte after the VNI; any other flags or reserved bits: dropped -- except
             0x0C000003 (VXLAN-GPE: I+P flags, next protocol 3 = Ethernet, scapy's
             default VXLAN()/Ether()), which a plain vxlan port also takes (tested in
             tests/test_tunnel_ovs.py; Linux without `gpe` drops it).
  Geneve     8 bytes + options: byte 0 = version 0 | opt_len (options length / 4),
             byte 1 = O bit (0x80, only when the flow's tun_flags has +oam) | C bit
             (0x40, set when an option's type has its critical bit 0x80), protocol 0x6558,
             VNI << 8.  Options are the flow's tun_metadata fields mapped with
             add-tlv-map, in tun_metadata index order, each {class (16 bits), type (8),
             3 reserved bits 0 + length/4 (5 bits), data (len bytes, 4..124, multiple of 4)};
             only fields the flows set are present.  No options: opt_len 0.

Decapsulation keeps the inner frame byte for byte, except ECN: outer CE on an inner
ECT(0|1) IP packet sets the inner ECN to CE (and fixes the inner IPv4 checksum); outer
CE on a not-ECT inner IP packet drops it.  Outer frames with a bad IPv4 checksum, IPv4
options, a bad non-zero UDP checksum, or a total length past the frame are dropped.

Tunnel matching on receive (tnl_find; what trace_underlay reproduces): the tunnel port
type with that UDP destination port; remote_ip = outer source (or remote_ip=flow);
local_ip, if set, = outer destination; key (in_key) = VNI or key=flow.  An exact match
wins over a flow one.
"""
import ipaddress
import struct

from ovs_oracle import OvsDummy, OvsError, read_pcap  # noqa: F401  (re-exported)

UNDERLAY_BRIDGE = "br0"
UNDERLAY_PORT = "p0"
VXLAN_PORT = 4789
GENEVE_PORT = 6081
TUNNEL_KEYS = {"type", "ofport", "remote_ip", "local_ip", "key", "in_key", "out_key", "dst_port",
               "ttl", "tos", "df_default", "csum", "options"}

# -- the UDP source port OVS chooses ---------------------------------------------------
_M = 0xFFFFFFFF
UDP_SPORT_MIN, UDP_SPORT_MAX = 32768, 61000


def _rot(x, k):
    return ((x << k) | (x >> (32 - k))) & _M


def _mhash_add(h, d):
    if d:
        d = (d * 0xCC9E2D51) & _M
        d = _rot(d, 15)
        d = (d * 0x1B873593) & _M
        h ^= d
    h = _rot(h, 13)
    return (h * 5 + 0xE6546B64) & _M


def _mhash_finish(h, final):
    h ^= final
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M
    h ^= h >> 16
    return h


def _le32(b):
    return struct.unpack("<I", bytes(b))[0]


def ovs_5tuple_hash(frame):
    """OVS's miniflow_hash_5tuple(flow, 0) of an Ethernet frame (lib/flow.c, mhash build).

    The RSS hash dpif-netdev gives a packet received on a dummy port (no NIC hash).
    """
    frame = bytes(frame)
    h = 0
    off = 12
    dl_type = struct.unpack_from(">H", frame, off)[0]
    off += 2
    while dl_type in (0x8100, 0x88A8) and len(frame) >= off + 4:   # dl_type is after the VLANs
        dl_type = struct.unpack_from(">H", frame, off + 2)[0]
        off += 4
    ports = 0
    if dl_type == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        h = _mhash_add(h, _le32(frame[off + 12:off + 16]))
        h = _mhash_add(h, _le32(frame[off + 16:off + 20]))
        proto = frame[off + 9]
        frag = struct.unpack_from(">H", frame, off + 6)[0]
        l4 = off + ihl
        later_fragment = frag & 0x1FFF
    elif dl_type == 0x86DD and len(frame) >= off + 40:
        for w in range(4):
            v = struct.unpack_from("<Q", frame, off + 8 + 8 * w)[0]
            h = _mhash_add(_mhash_add(h, v & _M), v >> 32)
        proto = frame[off + 6]
        l4 = off + 40
        later_fragment = False
        while proto in (0, 43, 60, 44) and len(frame) >= l4 + 8:      # extension headers
            nxt = frame[l4]
            if proto == 44:
                later_fragment = struct.unpack_from(">H", frame, l4 + 2)[0] & 0xFFF8
                l4 += 8
            else:
                l4 += (frame[l4 + 1] + 1) * 8
            proto = nxt
    elif dl_type == 0x0806 and len(frame) >= off + 28:
        h = _mhash_add(h, _le32(frame[off + 14:off + 18]))            # spa
        h = _mhash_add(h, _le32(frame[off + 24:off + 28]))            # tpa
        proto = struct.unpack_from(">H", frame, off + 6)[0] & 0xFF    # nw_proto = ARP opcode
        later_fragment = True
        l4 = off
    else:
        return _mhash_finish(h, 42)
    h = _mhash_add(h, proto)
    if proto not in (6, 17, 132, 1, 58):
        return _mhash_finish(h, 42)
    if not later_fragment and len(frame) >= l4 + 4:
        if proto in (1, 58):   # ICMP: tp_src = type, tp_dst = code (16 bits each)
            ports = _le32(struct.pack(">HH", frame[l4], frame[l4 + 1]))
        else:
            ports = _le32(frame[l4:l4 + 4])
    h = _mhash_add(h, ports)
    return _mhash_finish(h, 42)


def udp_source_port(inner_frame):
    """The outer UDP source port OVS's userspace tnl_push gives `inner_frame` (see the docstring)."""
    return ((ovs_5tuple_hash(inner_frame) * (UDP_SPORT_MAX - UDP_SPORT_MIN)) >> 32) + UDP_SPORT_MIN


def udp_sport_offset(outer_frame):
    """Byte offset of the outer UDP source port in an encapsulated frame (to mask it)."""
    return 14 + (20 if struct.unpack_from(">H", outer_frame, 12)[0] == 0x0800 else 40)


def mask_udp_sport(outer_frame):
    """The frame with its outer UDP source port zeroed (UDP checksum left as is)."""
    f = bytearray(outer_frame)
    o = udp_sport_offset(f)
    f[o:o + 2] = b"\0\0"
    return bytes(f)


# -- the oracle ----------------------------------------------------------------------------
def _tunnel_spec(name, spec):
    spec = dict(spec)
    unknown = set(spec) - TUNNEL_KEYS
    if unknown or spec.get("type") not in ("vxlan", "geneve") or not isinstance(spec.get("ofport"), int) \
            or "remote_ip" not in spec:
        raise ValueError(f"tunnel {name}: bad spec {spec!r}: type vxlan|geneve, ofport, remote_ip are "
                         f"required; known keys {sorted(TUNNEL_KEYS)}")
    return spec


def _opt(v):
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _addr(text, default_plen):
    """'192.0.2.1/24' or '192.0.2.1' -> (address text, interface)."""
    if text is None:
        return None
    iface = ipaddress.ip_interface(text if "/" in text else f"{text}/{default_plen}")
    return iface


class OvsTunnels(OvsDummy):
    """OVS with an underlay bridge (br0, port p0) and tunnel ports on int-br; see the module docstring.

    tunnels: {name: dict(type="vxlan"|"geneve", ofport=N, remote_ip=IP|"flow",
              key=N|"flow" (or in_key/out_key), local_ip=IP, dst_port=N, ttl=N|"inherit",
              tos=N|"inherit", df_default=bool, csum=bool, options={other: value})}
    local_ip / local_ip6: br0's addresses ("192.0.2.1/24", default prefix 24 / 64);
    neighbours: {IP: MAC} for the tunnel neighbour cache; routes: {prefix: gateway or None}
    added after the local subnets' routes; tlv_map: add-tlv-map text for Geneve options.
    """

    VSWITCHD_OPTIONS = ("--enable-dummy=system", "--disable-system", "--disable-system-route")

    def __init__(self, tmpdir, tunnels=None, ports=None, underlay_mac="aa:55:aa:55:00:00",
                 local_ip="192.0.2.1/24", local_ip6=None, neighbours=None, routes=None, tlv_map=None,
                 bridge="int-br", vlan_limit=0):
        super().__init__(tmpdir, ports=ports, bridge=bridge, vlan_limit=vlan_limit)
        if UNDERLAY_PORT in (ports or {}):
            raise ValueError(f"{UNDERLAY_PORT} is the underlay port's name")
        self.underlay_mac = underlay_mac
        self.local_ip = _addr(local_ip, 24)
        self.local_ip6 = _addr(local_ip6, 64)
        self.neighbours = dict(neighbours or {})
        self.routes = dict(routes or {})
        self.tlv_map = tlv_map
        self.tunnels = {}
        self._initial_tunnels = {n: _tunnel_spec(n, s) for n, s in (tunnels or {}).items()}
        self._underlay = False
        self._skip = {}             # port -> [(start, end)] tx_pcap byte ranges a trace emitted

    # setup
    def start(self):
        super().start()
        self.vsctl("add-br", UNDERLAY_BRIDGE, "--", "set", "Bridge", UNDERLAY_BRIDGE, "datapath_type=dummy",
                   "fail_mode=secure", f"other_config:hwaddr={self.underlay_mac}",
                   "other_config:disable-in-band=true", "mcast_snooping_enable=false", "stp_enable=false",
                   "rstp_enable=false",
                   "--", "add-port", UNDERLAY_BRIDGE, UNDERLAY_PORT,
                   "--", "set", "Interface", UNDERLAY_PORT, "type=dummy", "ofport_request=1",
                   f"options:tx_pcap={self.tx_pcap(UNDERLAY_PORT)}", "mtu_request=65000")
        self._run("ovs-ofctl", "add-flow", f"unix:{self.run_dir / (UNDERLAY_BRIDGE + '.mgmt')}",
                  "actions=normal")
        if self.local_ip is not None:
            self.appctl("netdev-dummy/ip4addr", UNDERLAY_BRIDGE, self.local_ip.with_prefixlen)
            self.appctl("ovs/route/add", self.local_ip.network.with_prefixlen, UNDERLAY_BRIDGE)
        if self.local_ip6 is not None:
            self.appctl("netdev-dummy/ip6addr", UNDERLAY_BRIDGE, self.local_ip6.with_prefixlen)
            self.appctl("ovs/route/add", self.local_ip6.network.with_prefixlen, UNDERLAY_BRIDGE)
        for prefix, gw in self.routes.items():
            self.appctl("ovs/route/add", prefix, UNDERLAY_BRIDGE, *([gw] if gw else []))
        self.set_neighbours(self.neighbours)
        self._underlay = True
        self.set_tunnels(self._initial_tunnels)
        if self.tlv_map:
            self.set_tlv_map(self.tlv_map)
        self._mark()

    def set_neighbours(self, neighbours):
        """Add {IP: MAC} to OVS's tunnel neighbour cache (tnl/neigh/set br0 IP MAC)."""
        for ip, mac in neighbours.items():
            self.appctl("tnl/neigh/set", UNDERLAY_BRIDGE, ip, mac)
        self.neighbours.update(neighbours)

    def set_tunnels(self, tunnels):
        """Make int-br's tunnel ports exactly `tunnels` ({name: spec}), in one transaction."""
        want = {n: _tunnel_spec(n, s) for n, s in tunnels.items()}
        if want == self.tunnels:
            return
        clash = set(want) & set(self.ports)
        if clash:
            raise ValueError(f"tunnel names {sorted(clash)} are also dummy ports")
        cmds = []
        for name in self.tunnels:
            cmds += ["--", "--if-exists", "del-port", self.bridge, name]
        for name, spec in want.items():
            opts = {k: v for k, v in spec.items() if k not in ("type", "ofport", "options")}
            opts.update(spec.get("options", {}))
            cmds += ["--", "add-port", self.bridge, name, "--", "set", "Interface", name,
                     f"type={spec['type']}", f"ofport_request={spec['ofport']}"]
            cmds += [f"options:{k}={_opt(v)}" for k, v in opts.items()]
        self.tunnels = {}
        if cmds:
            self.vsctl(*cmds)
        for name, spec in want.items():
            out = self.vsctl("get", "Interface", name, "ofport", "error").split("\n")
            if out[0].strip() != str(spec["ofport"]):
                raise OvsError(f"tunnel {name}: asked for ofport {spec['ofport']}, got {out[0].strip()} "
                               f"(error: {out[1].strip() if len(out) > 1 else '?'}){self._logs()}")
        self.tunnels = want
        self.ofport.update({n: s["ofport"] for n, s in want.items()})

    def set_tlv_map(self, text):
        """Replace int-br's Geneve TLV map: del-tlv-map, then add-tlv-map TEXT (None: just clear)."""
        self.ofctl("del-tlv-map")
        if text:
            self.ofctl("add-tlv-map", text)
        self.tlv_map = text

    # between cases
    def _mark(self):
        super()._mark()
        if self._underlay:
            rx = self._rx_counts()
            p = self.tx_pcap(UNDERLAY_PORT)
            self._rx_base[UNDERLAY_PORT] = rx.get(UNDERLAY_PORT, 0)
            self._injected[UNDERLAY_PORT] = 0
            self._tx_offset[UNDERLAY_PORT] = p.stat().st_size if p.exists() else 0
        self._skip = {}

    def reset(self, ports=None, tunnels=None, neighbours=None):
        """Next case: no int-br flows, empty MAC tables and conntrack, outputs counted from now.

        ports/tunnels: replace int-br's dummy/tunnel ports; neighbours: add to the cache."""
        self.sync()
        self.appctl("fdb/flush", UNDERLAY_BRIDGE)
        if tunnels is not None:
            self.ofctl("del-flows")   # flows may name the old tunnels' ofports
            self.set_tunnels(tunnels)
        if neighbours:
            self.set_neighbours(neighbours)
        super().reset(ports=ports)
        if ports is not None:       # set_ports rebuilt ofport{} from the dummy ports only
            self.ofport.update({n: s["ofport"] for n, s in self.tunnels.items()})

    # packets
    def receive_underlay(self, frame):
        """Inject one (encapsulated) frame as received on the underlay port p0."""
        frame = bytes(frame)
        if len(frame) < 14:
            raise ValueError("OVS cannot receive frames under 14 bytes")
        self.appctl("netdev-dummy/receive", UNDERLAY_PORT, frame.hex())
        self._injected[UNDERLAY_PORT] = self._injected.get(UNDERLAY_PORT, 0) + 1

    def _tx_sizes(self):
        return {p: self.tx_pcap(p).stat().st_size if self.tx_pcap(p).exists() else 0
                for p in [*self.ports, UNDERLAY_PORT]}

    def _frames(self, port):
        """Frames in port's tx_pcap since the last reset, less those a trace emitted."""
        path = self.tx_pcap(port)
        if not path.exists():
            return []
        data = path.read_bytes()
        pos = max(self._tx_offset.get(port, 0), 24)
        end = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        frames = []
        while pos + 16 <= len(data):
            incl = struct.unpack_from(end + "I", data, pos + 8)[0]
            if pos + 16 + incl > len(data):
                break
            if not any(a <= pos < b for a, b in self._skip.get(port, ())):
                frames.append(data[pos + 16: pos + 16 + incl])
            pos += 16 + incl
        return frames

    def outputs(self):
        """{port: [frame bytes]}: what int-br's dummy ports transmitted since the last reset."""
        self.sync()
        return {p: self._frames(p) for p in self.ports}

    def underlay_outputs(self):
        """[frame bytes]: what p0 transmitted since the last reset (encapsulated frames, ARP/ND)."""
        self.sync()
        return self._frames(UNDERLAY_PORT)

    def trace_tunnel(self, tunnel, inner_frame, **metadata):
        """ofproto/trace int-br in_port=<tunnel> plus tunnel metadata (tun_id=..., tun_src=...)."""
        fields = ",".join([f"in_port={self.ofport[tunnel]}"] + [f"{k}={v}" for k, v in metadata.items()])
        return self.appctl("ofproto/trace", self.bridge, fields, bytes(inner_frame).hex())

    def trace_underlay(self, outer_frame):
        """ofproto/trace br0 in_port=p0 of an outer frame; when OVS pops it, also the int-br trace
        of the inner frame on the matching tunnel port with the metadata tnl_pop gives it."""
        self.sync()
        before = self._tx_sizes()
        text = self.appctl("ofproto/trace", UNDERLAY_BRIDGE, "in_port=1", bytes(outer_frame).hex())
        after = self._tx_sizes()
        for p, n in after.items():
            if n > before[p]:
                self._skip.setdefault(p, []).append((before[p], n))
        last = text.strip().splitlines()[-1] if text.strip() else ""
        if "tnl_pop(" not in last:
            return text
        decap = decapsulate(outer_frame, kind=self._kind_of(outer_frame))
        if decap is None:
            return text
        name = self.match_tunnel(decap)
        if name is None:
            return text + "\n(no tunnel port matches: OVS drops the inner frame)\n"
        md = decap["metadata"]
        return (text + f"\n-- tnl_pop: the inner frame enters {self.bridge} on tunnel {name} "
                f"(ofport {self.ofport[name]}) with {','.join(f'{k}={v}' for k, v in md.items())}\n\n"
                + self.trace_tunnel(name, decap["inner"], **md))

    def _dst_port(self, spec):
        return int(spec.get("dst_port", VXLAN_PORT if spec["type"] == "vxlan" else GENEVE_PORT))

    def _kind_of(self, outer_frame):
        """vxlan or geneve: the type of the tunnel ports listening on the frame's UDP dst port."""
        f = bytes(outer_frame)
        u = 14 + ((f[14] & 0x0F) * 4 if struct.unpack_from(">H", f, 12)[0] == 0x0800 else 40)
        dport = struct.unpack_from(">H", f, u + 2)[0]
        for spec in self.tunnels.values():
            if self._dst_port(spec) == dport:
                return spec["type"]
        return None

    def match_tunnel(self, decap):
        """The tunnel port OVS's tnl_find picks for a decapsulate() result (None: none)."""
        best = None
        for name, spec in self.tunnels.items():
            if spec["type"] != decap["type"] or self._dst_port(spec) != decap["dst_port"]:
                continue
            key = spec.get("in_key", spec.get("key", 0))
            remote = spec["remote_ip"]
            local = spec.get("local_ip")
            score = 0
            if key != "flow":
                if int(key) != decap["vni"]:
                    continue
                score += 1
            if remote != "flow":
                if ipaddress.ip_address(remote) != ipaddress.ip_address(decap["src"]):
                    continue
                score += 2
            if local not in (None, "flow"):
                if ipaddress.ip_address(local) != ipaddress.ip_address(decap["dst"]):
                    continue
            if best is None or score > best[0]:
                best = (score, name)
        return best and best[1]


def decapsulate(outer_frame, kind=None):
    """Parse an outer VXLAN/Geneve frame: {type, src, dst, dst_port, vni, inner, metadata} or None.

    kind: "vxlan" or "geneve"; None: by the UDP destination port (4789, 6081).
    metadata: the int-br match fields tnl_pop sets (for ofproto/trace), as OVS spells them."""
    f = bytes(outer_frame)
    et = struct.unpack_from(">H", f, 12)[0]
    if et == 0x0800:
        ihl = (f[14] & 0x0F) * 4
        tos, ttl, proto = f[15], f[22], f[23]
        src, dst = ipaddress.ip_address(f[26:30]), ipaddress.ip_address(f[30:34])
        u = 14 + ihl
        srck, dstk = "tun_src", "tun_dst"
    elif et == 0x86DD:
        tos = (struct.unpack_from(">I", f, 14)[0] >> 20) & 0xFF
        proto, ttl = f[20], f[21]
        src, dst = ipaddress.ip_address(f[22:38]), ipaddress.ip_address(f[38:54])
        u = 54
        srck, dstk = "tun_ipv6_src", "tun_ipv6_dst"
    else:
        return None
    if proto != 17:
        return None
    sport, dport, _, csum = struct.unpack_from(">HHHH", f, u)
    h = u + 8
    vni = struct.unpack_from(">I", f, h + 4)[0] >> 8
    flags = ""          # OpenFlow's tun_flags has only oam (key, csum are datapath-only flags)
    md = {"tun_id": hex(vni), srck: str(src), dstk: str(dst), "tun_tos": tos, "tun_ttl": ttl}
    kind = kind or {VXLAN_PORT: "vxlan", GENEVE_PORT: "geneve"}.get(dport)
    if kind == "vxlan":
        inner = f[h + 8:]
    elif kind == "geneve":
        opt_len = (f[h] & 0x3F) * 4
        if f[h + 1] & 0x80:
            flags += "+oam"
        inner = f[h + 8 + opt_len:]
    else:
        return None
    if flags:
        md["tun_flags"] = flags
    return {"type": kind, "src": str(src), "dst": str(dst), "dst_port": dport, "vni": vni,
            "inner": inner, "metadata": md}
