"""Network namespaces and veth pairs for labs and live tests (pyroute2, plus setns for sysctls
and ethtool).

Host-side ends get tx checksum offload off (which also turns TSO off): a frame
that a namespace's stack hands a veth with offload on carries only a partial
checksum (CHECKSUM_PARTIAL) or is a 64 kB TSO super-frame, and softdpu, like a
wire, forwards frames as they are.  IPv6 is off in lab namespaces unless asked
(no router solicitations / MLD noise on the links).
"""
import ctypes
import os
import signal
import socket
import struct
import threading
import time

CLONE_NEWNET = 0x40000000
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x00000017
ETHTOOL_SGRO = 0x0000002c
WAIT_S = 5.0


def run_in(ns, fn, timeout=10.0):
    """fn() on a thread that has entered network namespace `ns` (None: this one); its result."""
    if ns is None:
        return fn()
    box = {}
    libc = ctypes.CDLL(None, use_errno=True)

    def body():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as e:      # handed to the caller
            box["error"] = e

    t = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"work in namespace {ns} did not finish in {timeout} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def exists(ns):
    return os.path.exists(f"/run/netns/{ns}")


def names():
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def sysctl(ns, settings):
    """settings: [(path under /proc/sys/net, value)], written inside ns."""
    def body():
        for path, value in settings:
            with open(f"/proc/sys/net/{path}", "w") as f:
                f.write(f"{value}\n")
    run_in(ns, body)


def create(ns, ipv6=False):
    """A new namespace with lo up (IPv6 off unless asked)."""
    from pyroute2 import IPRoute, netns
    netns.create(ns)
    if not ipv6:
        sysctl(ns, [(f"ipv6/conf/{s}/disable_ipv6", 1) for s in ("default", "all")])
    with IPRoute(netns=ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def remove(ns):
    """Delete namespace ns (its veths go with it); True if it was there."""
    from pyroute2 import netns
    if not exists(ns):
        return False
    netns.remove(ns)
    return True


def destroy(ns):
    """SIGKILL every process in namespace ns, then delete it (for tests and benches cleaning up,
    also after a failure); True if it was there."""
    for pid in pids_in(ns):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return remove(ns)


def pids_in(ns):
    """PIDs of the processes whose network namespace is ns."""
    try:
        target = os.stat(f"/run/netns/{ns}")
    except FileNotFoundError:
        return []
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            out.append(int(pid))
    return out


def veth(ns_a, name_a, ns_b, name_b, mtu=None):
    """A veth pair name_a (in ns_a) <-> name_b (in ns_b), both up."""
    from pyroute2 import IPRoute
    with IPRoute(netns=ns_a) as ipr:
        ipr.link("add", ifname=name_a, kind="veth", peer={"ifname": name_b, "net_ns_fd": ns_b})
    for ns, dev in ((ns_a, name_a), (ns_b, name_b)):
        with IPRoute(netns=ns) as ipr:
            idx = ipr.link_lookup(ifname=dev)[0]
            if mtu:
                ipr.link("set", index=idx, mtu=mtu)
            ipr.link("set", index=idx, state="up")


def set_link(ns, dev, **kw):
    from pyroute2 import IPRoute
    with IPRoute(netns=ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], **kw)


def address(ns, dev, cidr):
    from pyroute2 import IPRoute
    ip, _, plen = cidr.partition("/")
    with IPRoute(netns=ns) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname=dev)[0], address=ip, prefixlen=int(plen or 32))


def route(ns, dst, via):
    from pyroute2 import IPRoute
    with IPRoute(netns=ns) as ipr:
        ipr.route("add", dst=dst, gateway=via)


def mac_of(ns, dev):
    from pyroute2 import IPRoute
    with IPRoute(netns=ns) as ipr:
        return ipr.get_links(ipr.link_lookup(ifname=dev)[0])[0].get_attr("IFLA_ADDRESS")


def wait_up(ns, dev, timeout=WAIT_S):
    from pyroute2 import IPRoute
    deadline = time.monotonic() + timeout
    with IPRoute(netns=ns) as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        while ipr.get_links(idx)[0].get_attr("IFLA_OPERSTATE") not in ("UP", "UNKNOWN"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ns}/{dev} not up after {timeout} s")
            time.sleep(0.02)


def tx_csum_off(ns, dev):
    """ethtool -K dev tx off, inside ns (TSO goes off with it)."""
    _ethtool_set(ns, dev, ETHTOOL_STXCSUM, 0)


def gro_on(ns, dev):
    """ethtool -K dev gro on, inside ns (on a veth this turns on its NAPI receive queue, which
    XDP_TX / redirect from its peer needs)."""
    _ethtool_set(ns, dev, ETHTOOL_SGRO, 1)


def _ethtool_set(ns, dev, cmd, value):
    """One ETHTOOL_S* ioctl with a struct ethtool_value, on dev inside ns."""
    def body():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            ev = ctypes.create_string_buffer(struct.pack("II", cmd, value))
            ifr = struct.pack("16sP", dev.encode(), ctypes.addressof(ev))
            import fcntl
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr + b"\0" * (40 - len(ifr)))
        finally:
            s.close()
    run_in(ns, body)
