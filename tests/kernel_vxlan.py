"""The Linux kernel's VXLAN device as an interoperability oracle, driven through pcap-sized lists of frames.

    from kernel_vxlan import KernelVtep, require_kernel_vxlan, write_pcap, read_pcap

    require_kernel_vxlan()        # skip without root/netns/vxlan (FAIL under CI=true)
    with KernelVtep("kv", local_ip="192.0.2.2", peer_ip="192.0.2.1", vni=5000,
                    dst_port=4789, overlay_ip="10.10.0.2/24", family=4) as k:
        k.neigh_add("10.10.0.1", "02:00:00:00:01:01")   # static overlay ARP entry
        sent = k.capture(lambda: k.ping("10.10.0.1", count=2), timeout=3, count=2)
        write_pcap(tmp_path / "kernel-tx.pcap", sent)    # what the kernel put on the underlay
        replies = k.inject_and_capture(read_pcap("softdpu-tx.pcap"), timeout=3)
        k.underlay_mac, k.vxlan_mac, k.peer_mac           # MACs to address frames to/expect

Frames are bytes, Ethernet II, exactly as on the underlay wire (no FCS).  The
"softdpu side" of the underlay is a veth end in a namespace of its own: the
test process injects on it and captures from it with AF_PACKET sockets that
are created inside that namespace.  softdpu itself needs no live ports: it
reads what `capture` returned (as a pcap) and its output pcap is fed back
with `inject_and_capture`.

What is built (all of it in two network namespaces named
<prefix>-<random>-k and <prefix>-<random>-s, nothing in the root namespace):

    namespace -k ("kernel")                     namespace -s ("softdpu side")
      vx0: vxlan id VNI dstport PORT              p0: veth, no address, IPv6 off
           local LOCAL_IP remote PEER_IP  <- u0 ===== p0 -> AF_PACKET inject/capture
           dev u0 nolearning, OVERLAY_IP
      u0: veth, LOCAL_IP/24 (or /64 nodad), tx checksum offload OFF
      neigh PEER_IP lladdr PEER_MAC nud permanent dev u0

`remote PEER_IP` makes the kernel install the all-zeros fdb entry
(00:00:00:00:00:00 dst PEER_IP self permanent, the same as `bridge fdb append
00:00:00:00:00:00 dev vx0 dst PEER_IP`), so every overlay destination is sent
to PEER_IP; `fdb_append` adds more.  The static underlay neighbour means the
kernel never ARPs/NDs on the underlay (underlay_neigh=False leaves it out: then
the kernel resolves PEER_IP itself; `neighbour(ip)` shows its entry); `neigh_add` makes static overlay
entries so the kernel does not ARP through the tunnel either.  PEER_MAC is the
MAC of p0 unless given.  Ends: on exit (normal, exception, or a setup that
failed half way) every socket is closed and both namespaces are removed; the
veth pair and the vxlan device die with them.  Nothing has a route out of the
namespaces; the softdpu side has no address at all, so it never answers.

Quietness.  IPv6 is disabled in the softdpu namespace and (IPv4 underlay) in
the kernel namespace.  With an IPv6 underlay, u0 has no link-local address
(addr_gen_mode none), no DAD, no router solicitations; the kernel still sends
MLD reports to 33:33:xx:xx:xx:xx for its solicited-node group, so `capture`
drops frames to a 33:33 multicast MAC unless keep_noise=True.  The vxlan
device gets IPv6 only when the overlay address is IPv6 (also nodad, no LL).

Why the veth tx checksum offload is off: veth passes CHECKSUM_PARTIAL skbs to
its peer as they are, so with offload on an AF_PACKET capture on p0 sees the
outer UDP checksum unfinished (only the pseudo-header sum) - what a NIC would
have completed.  With it off the kernel completes checksums in software and
the capture holds what a real wire would carry.

Tooling: pyroute2 (netlink) for namespaces, links, addresses, neighbours and
fdb: no subprocess, no parsing of `ip` output, errors come back as exceptions
with errno, and it is already a required package.  Sysctls, the ethtool ioctl
and the AF_PACKET/raw ICMP sockets are done from a short-lived thread that
setns()es into the namespace (a netns switch is per thread; the thread ends,
the test process's own namespace is never touched); a socket stays in the
namespace it was created in.  No tcpdump, no ping binary, no `ip` needed.

What the Linux kernel puts on the wire (drivers/net/vxlan/vxlan_core.c,
vxlan_xmit_one; checked by tests/test_kernel_vxlan.py on this machine's 6.18
kernel, default options unless said):

- Outer Ethernet: src = u0's MAC, dst = the underlay neighbour of the remote
  (PEER_MAC), ethertype 0x0800 / 0x86dd, no VLAN tag.
- UDP destination port: dstport.  Without one the kernel uses the pre-IANA
  8472 (iproute2 6.1 warns "destination port not specified"); pass 4789.
  pyroute2 sends IFLA_VXLAN_PORT itself, so KernelVtep always sets it.
- UDP source port: udp_flow_src_port(): hash = skb_get_hash() of the INNER
  packet (flow dissector over the inner headers: L3 addresses, and L4 ports
  for TCP/UDP; a jhash of the inner Ethernet header if that gives 0), then
  port = min + (hash * (max - min) >> 32), i.e. in [min, max).  The range is
  `srcport MIN MAX` if given, else the namespace's net.ipv4.ip_local_port_range
  (default 32768-60999).  The flow hash is keyed with a per-boot random
  secret, so the exact port cannot be reproduced, only its properties: one
  inner flow -> one stable port, different flows spread over the range (both
  tested).  The receiver must accept any source port (tested: 1 and 65535).
- UDP checksum: computed for IPv4 AND IPv6 outer headers by default on this
  kernel (when IFLA_VXLAN_UDP_CSUM is absent the kernel turns udpcsum on;
  `ip -d link` shows "udpcsum" for a device made by iproute2 6.1 without
  options too; old kernels/docs said IPv4 defaulted to none).  `noudpcsum`
  (udp_csum=False) sends 0 over IPv4; `udp6zerocsumtx` sends 0 over IPv6.
  On receive: IPv4 accepts 0 and drops a wrong non-zero sum; IPv6 drops a
  zero checksum unless `udp6zerocsumrx`, and drops a wrong one (all tested).
- IPv4: TTL = `ttl` if set, else the route's hop limit = net.ipv4.ip_default_ttl
  (64); `ttl inherit` copies the inner TTL.  DF: not set by default (`df set`
  sets it, `df inherit` copies the inner IPv4 DF), so the IP ID is a non-zero
  value from ip_select_ident (varies per packet).  TOS: DSCP 0 unless `tos`
  (`tos inherit` copies the inner DSCP); the ECN bits are ALWAYS encapsulated
  from the inner packet per RFC 6040 (inner ECT(0)/ECT(1) copied, inner CE ->
  outer ECT(0); tested with inner 0xB9 -> outer 0x01, 0x02 -> 0x02, 0x03 ->
  0x02).  No options, IHL 5.
- IPv6: hop limit = `ttl` if set else 64 (ip6_dst_hoplimit); traffic class as
  TOS above; flow label = `flowlabel` (default 0: observed 0, tested).  No
  extension headers (next header 17, tested).
- VXLAN header: flags byte 0x08 (I bit), the 3 reserved bytes 0, VNI in
  bytes 4-6, last byte 0 (byte-exact, tested).  (GBP/GPE/RCO only if
  configured.)  Inner frame: src MAC = the vxlan device's MAC, dst = the
  overlay neighbour's MAC, as routed by the overlay stack; no FCS.
- Receive side (what softdpu must send): outer dst MAC = u0's MAC, outer dst
  IP = LOCAL_IP, UDP dst port = dstport, flags exactly 0x08 (no I flag, or
  any other flag such as GPE's P, is a malformed header: dropped, vx0
  rx_errors), VNI = the device's VNI; any source port is accepted
  (nolearning: no fdb update).  An unknown VNI is dropped silently; a wrong
  dst port gets the usual ICMP/ICMPv6 port unreachable from the underlay
  stack (rate limited); a wrong outer dst MAC is ignored (PACKET_OTHERHOST).
  The inner dst MAC must be the vxlan device's MAC (or broadcast/multicast):
  another unicast MAC gets no answer.  All of these are tested.

Injected frames are taken as they are: no checksum is fixed, nothing padded.

scapy pitfall: `VXLAN(vni=N) / Ether(...)` is built as VXLAN-GPE - flags 0x0C
(I + P) and next-protocol 3 in the last reserved byte - because of scapy's
bind_top_down(VXLAN, Ether, flags=12, NextProtocol=3).  Linux (no `gpe`)
rejects it as a malformed header (vx0 rx_errors += 1, no answer).  Always
give flags=0x08 explicitly, as `KernelVtep.encap` does.
"""
import ipaddress
import os
import secrets
import socket
import struct
import time

import pytest

from softdpu.live.netns import run_in as _run_in_netns, tx_csum_off

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
IFA_F_NODAD = 0x02
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
NUD_NAMES = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY", 0x10: "PROBE",
             0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}



# ---------------------------------------------------------------- namespaces, threads

def _write_sysctls(ns, settings):
    """settings: [(path under /proc/sys/net, value)], written inside ns."""
    def body():
        for path, value in settings:
            with open(f"/proc/sys/net/{path}", "w") as f:
                f.write(f"{value}\n")
    _run_in_netns(ns, body)


def _netns_exists(ns):
    return os.path.exists(f"/run/netns/{ns}")


def list_netns():
    """Names of the named network namespaces (what `ip netns list` shows)."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


_capability = None


def require_kernel_vxlan():
    """Skip unless root can make namespaces, veth and vxlan devices; under CI=true, fail instead."""
    global _capability
    if _capability is None:
        _capability = _probe()
    if _capability is not True:
        if os.environ.get("CI"):
            pytest.fail(f"kernel VXLAN oracle unavailable under CI: {_capability}")
        pytest.skip(f"kernel VXLAN oracle unavailable: {_capability}")


def _probe():
    if os.geteuid() != 0:
        return "not root (network namespaces need CAP_SYS_ADMIN/CAP_NET_ADMIN)"
    try:
        import pyroute2  # noqa: F401
    except ImportError as e:
        return f"pyroute2 missing: {e}"
    try:
        with KernelVtep("kvprobe"):
            pass
    except Exception as e:
        return f"could not build a namespace with veth + vxlan: {type(e).__name__}: {e}"
    return True


# ---------------------------------------------------------------- pcap files

def write_pcap(path, frames):
    """Frames (bytes) to a libpcap file, Ethernet link type."""
    from scapy.utils import RawPcapWriter
    w = RawPcapWriter(str(path), linktype=1, sync=True)
    try:
        if not frames:
            w._write_header(None)
        for f in frames:
            w.write(bytes(f))
    finally:
        w.close()


def read_pcap(path):
    """The frames (bytes) of a pcap/pcapng file."""
    from scapy.utils import RawPcapReader
    with RawPcapReader(str(path)) as r:
        return [bytes(data) for data, _meta in r]


def _is_noise(frame):
    """IPv6 multicast (MLD reports, ND) from the underlay's own stack: not VXLAN."""
    return len(frame) >= 14 and frame[0] == 0x33 and frame[1] == 0x33


def _icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


# ---------------------------------------------------------------- the VTEP

class KernelVtep:
    """A kernel VXLAN endpoint in a network namespace, its underlay reachable by AF_PACKET.

    family 4: defaults local 192.0.2.2, peer 192.0.2.1 (/24); family 6:
    2001:db8::2, 2001:db8::1 (/64).  The overlay address may be IPv4 or IPv6
    whatever the underlay family.  Options map to `ip link add type vxlan`:
    udp_csum -> [no]udpcsum (IPv4 outer; kernel default on), udp6_zero_csum_tx/rx -> udp6zerocsumtx/rx,
    src_port_range=(min, max) -> srcport, ttl, tos (1 = inherit),
    learning -> learning (default nolearning).  None leaves the kernel default.
    """

    K_UNDERLAY = "u0"
    K_VXLAN = "vx0"
    S_PEER = "p0"

    def __init__(self, name_prefix="kv", local_ip=None, peer_ip=None, vni=5000, dst_port=4789,
                 overlay_ip="10.10.0.2/24", family=4, udp_csum=None, udp6_zero_csum_tx=None,
                 udp6_zero_csum_rx=None, src_port_range=None, ttl=None, tos=None, learning=False,
                 peer_mac=None, underlay_prefix=None, underlay_neigh=True):
        if family not in (4, 6):
            raise ValueError("family must be 4 or 6")
        self.family = family
        self.local_ip = local_ip or ("192.0.2.2" if family == 4 else "2001:db8::2")
        self.peer_ip = peer_ip or ("192.0.2.1" if family == 4 else "2001:db8::1")
        for a in (self.local_ip, self.peer_ip):
            if ipaddress.ip_address(a).version != family:
                raise ValueError(f"{a} is not an IPv{family} address")
        self.underlay_prefix = underlay_prefix or (24 if family == 4 else 64)
        self.vni = vni
        self.dst_port = dst_port
        iface = ipaddress.ip_interface(overlay_ip)
        self.overlay_ip = str(iface.ip)
        self.overlay_prefix = iface.network.prefixlen
        self.overlay_family = iface.version
        self.options = dict(udp_csum=udp_csum, udp6_zero_csum_tx=udp6_zero_csum_tx,
                            udp6_zero_csum_rx=udp6_zero_csum_rx, src_port_range=src_port_range,
                            ttl=ttl, tos=tos, learning=learning)
        self.peer_mac = peer_mac
        self.underlay_neigh = underlay_neigh   # False: no static neighbour for PEER_IP, the kernel ARPs/NDs
        suffix = secrets.token_hex(3)
        self.kns = f"{name_prefix}-{suffix}-k"
        self.sns = f"{name_prefix}-{suffix}-s"
        self.underlay_mac = None
        self.vxlan_mac = None
        self._namespaces = []   # the ones this object created, to remove
        self._sockets = []
        self._ipr = None

    # ------------------------------------------------ lifecycle

    def __enter__(self):
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Close every socket, remove both namespaces (idempotent; errors re-raised after all steps)."""
        errors = []
        for s in self._sockets:
            try:
                s.close()
            except OSError as e:
                errors.append(e)
        self._sockets.clear()
        if self._ipr is not None:
            try:
                self._ipr.close()
            except Exception as e:
                errors.append(e)
            self._ipr = None
        from pyroute2 import netns
        for ns in reversed(self._namespaces):
            if _netns_exists(ns):
                try:
                    netns.remove(ns)
                except Exception as e:
                    errors.append(e)
        self._namespaces.clear()
        if errors:
            raise errors[0]

    def _build(self):
        from pyroute2 import IPRoute, netns
        for ns in (self.kns, self.sns):
            if _netns_exists(ns):
                raise RuntimeError(f"namespace {ns} already exists")
            self._namespaces.append(ns)    # first: a failed create may leave the mount point
            netns.create(ns)

        # Quiet namespaces: no RS, no DAD, no link-local addresses on new devices.
        quiet6 = []
        for scope in ("default", "all"):
            quiet6 += [(f"ipv6/conf/{scope}/accept_ra", 0),
                       (f"ipv6/conf/{scope}/router_solicitations", 0),
                       (f"ipv6/conf/{scope}/dad_transmits", 0),
                       (f"ipv6/conf/{scope}/addr_gen_mode", 1)]
        off6 = [(f"ipv6/conf/{scope}/disable_ipv6", 1) for scope in ("default", "all")]
        _write_sysctls(self.sns, quiet6 + off6)
        ipv6_needed = self.family == 6 or self.overlay_family == 6
        _write_sysctls(self.kns, quiet6 + ([] if ipv6_needed else off6))

        self._ipr = ipr = IPRoute(netns=self.kns)
        ipr.link("add", ifname=self.K_UNDERLAY, kind="veth",
                 peer={"ifname": self.S_PEER, "net_ns_fd": self.sns})
        u_idx = self._index(self.K_UNDERLAY)

        vx = dict(ifname=self.K_VXLAN, kind="vxlan", vxlan_id=self.vni, vxlan_link=u_idx,
                  vxlan_port=self.dst_port, vxlan_learning=1 if self.options["learning"] else 0)
        if self.family == 4:
            vx.update(vxlan_local=self.local_ip, vxlan_group=self.peer_ip)
        else:
            vx.update(vxlan_local6=self.local_ip, vxlan_group6=self.peer_ip)
        o = self.options
        if o["udp_csum"] is not None:
            vx["vxlan_udp_csum"] = int(bool(o["udp_csum"]))
        if o["udp6_zero_csum_tx"] is not None:
            vx["vxlan_udp_zero_csum6_tx"] = int(bool(o["udp6_zero_csum_tx"]))
        if o["udp6_zero_csum_rx"] is not None:
            vx["vxlan_udp_zero_csum6_rx"] = int(bool(o["udp6_zero_csum_rx"]))
        if o["src_port_range"] is not None:
            lo, hi = o["src_port_range"]
            vx["vxlan_port_range"] = {"low": lo, "high": hi}
        if o["ttl"] is not None:
            vx["vxlan_ttl"] = o["ttl"]
        if o["tos"] is not None:
            vx["vxlan_tos"] = o["tos"]
        ipr.link("add", **vx)
        x_idx = self._index(self.K_VXLAN)

        dev6 = []
        if self.family == 6 and self.overlay_family == 4:
            dev6.append((f"ipv6/conf/{self.K_VXLAN}/disable_ipv6", 1))
        if self.family == 4 and self.overlay_family == 6:
            dev6.append((f"ipv6/conf/{self.K_UNDERLAY}/disable_ipv6", 1))
        if dev6:
            _write_sysctls(self.kns, dev6)

        self._tx_csum_off(self.K_UNDERLAY)

        ipr.addr("add", index=u_idx, address=self.local_ip, prefixlen=self.underlay_prefix,
                 **({"flags": IFA_F_NODAD} if self.family == 6 else {}))
        ipr.addr("add", index=x_idx, address=self.overlay_ip, prefixlen=self.overlay_prefix,
                 **({"flags": IFA_F_NODAD} if self.overlay_family == 6 else {}))

        with IPRoute(netns=self.sns) as spr:
            p_idx = spr.link_lookup(ifname=self.S_PEER)[0]
            spr.link("set", index=p_idx, state="up")
            self.peer_side_mac = spr.get_links(p_idx)[0].get_attr("IFLA_ADDRESS")
        if self.peer_mac is None:
            self.peer_mac = self.peer_side_mac

        lo_idx = self._index("lo")
        for idx in (lo_idx, u_idx, x_idx):
            ipr.link("set", index=idx, state="up")
        if self.underlay_neigh:
            ipr.neigh("add", dst=self.peer_ip, lladdr=self.peer_mac, ifindex=u_idx,
                      state=NUD_PERMANENT)

        self.underlay_mac = ipr.get_links(u_idx)[0].get_attr("IFLA_ADDRESS")
        self.vxlan_mac = ipr.get_links(x_idx)[0].get_attr("IFLA_ADDRESS")

        deadline = time.monotonic() + 5.0
        while True:
            states = [ipr.get_links(i)[0].get_attr("IFLA_OPERSTATE") for i in (u_idx, x_idx)]
            if all(s in ("UP", "UNKNOWN") for s in states):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"underlay/vxlan not up after 5 s: {states}")
            time.sleep(0.02)

    def _index(self, ifname):
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            raise RuntimeError(f"{ifname} not found in {self.kns}")
        return found[0]

    def _tx_csum_off(self, ifname):
        tx_csum_off(self.kns, ifname)

    def _socket(self, ns, *args):
        s = _run_in_netns(ns, lambda: socket.socket(*args))
        self._sockets.append(s)
        return s

    def _drop_socket(self, s):
        s.close()
        if s in self._sockets:
            self._sockets.remove(s)

    # ------------------------------------------------ configuration after setup

    def neigh_add(self, ip, mac, dev=None):
        """Static (permanent) neighbour in the kernel namespace; dev defaults to the vxlan device."""
        self._ipr.neigh("add", dst=ip, lladdr=mac, ifindex=self._index(dev or self.K_VXLAN),
                        state=NUD_PERMANENT)

    def neighbour(self, ip, dev=None):
        """The kernel's neighbour entry for ip on dev (default: the underlay u0) as
        (lladdr or None, state names such as ["REACHABLE"]), or None without an entry."""
        idx = self._index(dev or self.K_UNDERLAY)
        want = ipaddress.ip_address(ip)
        for e in self._ipr.get_neighbours(family=socket.AF_INET if want.version == 4 else socket.AF_INET6):
            if e["ifindex"] != idx or ipaddress.ip_address(e.get_attr("NDA_DST")) != want:
                continue
            state = e["state"]
            names = [n for bit, n in NUD_NAMES.items() if state & bit]
            return e.get_attr("NDA_LLADDR"), names
        return None

    def sysctl(self, settings):
        """Write [(path under /proc/sys/net, value)] in the kernel namespace."""
        _write_sysctls(self.kns, settings)

    def addr_add(self, ip, prefixlen, dev=None, nodad=True):
        """Another address on dev (default: the underlay u0); nodad=False lets IPv6 DAD run."""
        flags = {"flags": IFA_F_NODAD} if nodad and ipaddress.ip_address(ip).version == 6 else {}
        self._ipr.addr("add", index=self._index(dev or self.K_UNDERLAY), address=ip, prefixlen=prefixlen,
                       **flags)

    def addr_flags(self, ip, dev=None):
        """The IFA flags of an address on dev (default u0), or None if it is not there."""
        idx = self._index(dev or self.K_UNDERLAY)
        want = ipaddress.ip_address(ip)
        for a in self._ipr.get_addr(index=idx):
            if ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) == want:
                return a.get_attr("IFA_FLAGS") if a.get_attr("IFA_FLAGS") is not None else a["flags"]
        return None

    def fdb_append(self, mac, dst):
        """`bridge fdb append MAC dev vx0 dst DST` (static, self)."""
        self._ipr.fdb("append", ifindex=self._index(self.K_VXLAN), lladdr=mac, dst=dst,
                      state=NUD_PERMANENT, flags=NTF_SELF)

    def fdb(self):
        """The vxlan device's fdb: [(mac, dst, state)]."""
        out = []
        x_idx = self._index(self.K_VXLAN)
        for e in self._ipr.fdb("dump"):
            if e["ifindex"] != x_idx:
                continue
            out.append((e.get_attr("NDA_LLADDR"), e.get_attr("NDA_DST"), e.get("state")))
        return out

    # ------------------------------------------------ traffic

    def ping(self, dst, count=1, interval=0.05, reply_timeout=0.0, ident=0x4b56, payload=None,
             tos=None):
        """ICMP(v6) echo requests from the kernel namespace to dst; returns how many replies came
        back within reply_timeout after the last request (0 when nobody answers).  tos sets the
        inner TOS / traffic class byte (DSCP and ECN)."""
        v6 = ipaddress.ip_address(dst).version == 6
        fam, proto = ((socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6
                      else (socket.AF_INET, socket.IPPROTO_ICMP))
        s = self._socket(self.kns, fam, socket.SOCK_RAW, proto)
        try:
            if tos is not None:
                if v6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
                else:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
            payload = payload if payload is not None else b"softdpu-kernel-vxlan-oracle"
            for seq in range(1, count + 1):
                if v6:   # the kernel fills the ICMPv6 checksum of a raw socket
                    msg = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
                else:
                    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                    csum = _icmp_checksum(hdr + payload)
                    msg = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload
                s.sendto(msg, (dst, 0))
                if seq < count:
                    time.sleep(interval)
            replies = 0
            deadline = time.monotonic() + reply_timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(65535)
                except (socket.timeout, BlockingIOError):
                    break
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) >= 8:
                    t, _c, _sum, rid, _seq = struct.unpack("!BBHHH", icmp[:8])
                    if t == (129 if v6 else 0) and rid == ident:
                        replies += 1
            return replies
        finally:
            self._drop_socket(s)

    def inject(self, frames, gap=0.0):
        """Send each frame (bytes) into the underlay from the softdpu side."""
        s = self._socket(self.sns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.bind((self.S_PEER, 0))
            for f in frames:
                s.send(bytes(f))
                if gap:
                    time.sleep(gap)
        finally:
            self._drop_socket(s)

    def capture(self, action=None, timeout=3.0, count=None, keep=None, keep_noise=False):
        """Frames the kernel sends on the underlay while action() runs and after.

        Capture starts before action() and stops `timeout` s after it started,
        or as soon as `count` frames were kept.  keep(frame) -> bool filters;
        IPv6-multicast noise (33:33:..) is dropped unless keep_noise."""
        s = self._socket(self.sns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            s.bind((self.S_PEER, ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            deadline = time.monotonic() + timeout
            if action is not None:
                action()
            got = []
            while count is None or len(got) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                s.settimeout(left)
                try:
                    data, addr = s.recvfrom(65535)
                except socket.timeout:
                    break
                if addr[2] == PACKET_OUTGOING:   # our own injections
                    continue
                if not keep_noise and _is_noise(data):
                    continue
                if keep is not None and not keep(data):
                    continue
                got.append(data)
            return got
        finally:
            self._drop_socket(s)

    def inject_and_capture(self, frames, timeout=3.0, count=None, keep=None, keep_noise=False,
                           gap=0.0):
        """inject(frames) with a capture running: the kernel's answers."""
        return self.capture(lambda: self.inject(frames, gap=gap), timeout=timeout, count=count,
                            keep=keep, keep_noise=keep_noise)

    def encap(self, inner, vni=None, dst_port=None, src_port=49152, udp_csum=None, src_ip=None,
              dst_ip=None, src_mac=None, dst_mac=None, flags=0x08):
        """bytes: an RFC 7348 VXLAN frame from the softdpu side to this kernel VTEP.

        inner: a scapy packet or bytes (an Ethernet frame).  Defaults address it
        properly (peer -> local, peer_mac -> underlay_mac, this VNI and port);
        udp_csum: None = computed, 0 or an int = that value."""
        from scapy.all import IP, UDP, Ether, IPv6, Raw, raw
        from scapy.layers.vxlan import VXLAN
        outer_ip = IP if self.family == 4 else IPv6
        udp = UDP(sport=src_port, dport=self.dst_port if dst_port is None else dst_port)
        if udp_csum is not None:
            udp.chksum = udp_csum
        pkt = (Ether(src=src_mac or self.peer_mac, dst=dst_mac or self.underlay_mac)
               / outer_ip(src=src_ip or self.peer_ip, dst=dst_ip or self.local_ip) / udp
               / VXLAN(flags=flags, vni=self.vni if vni is None else vni)
               / Raw(bytes(inner)))
        return raw(pkt)

    def is_vxlan(self, frame):
        """A keep= filter: UDP to this device's dst port (either IP version, no VLAN)."""
        if len(frame) < 14:
            return False
        et = frame[12:14]
        if et == b"\x08\x00" and len(frame) >= 14 + 20 + 8:
            ihl = (frame[14] & 0x0F) * 4
            return frame[23] == 17 and struct.unpack("!H", frame[14 + ihl + 2:14 + ihl + 4])[0] == self.dst_port
        if et == b"\x86\xdd" and len(frame) >= 14 + 40 + 8:
            return frame[20] == 17 and struct.unpack("!H", frame[56:58])[0] == self.dst_port
        return False
