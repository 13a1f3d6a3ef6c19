"""softdpu lab: network-namespace labs from a topology file.

    softdpu lab up TOPOLOGY.toml      namespaces, veths, bridges, addresses, routes; softdpu started
    softdpu lab status TOPOLOGY.toml  what exists and what runs
    softdpu lab down TOPOLOGY.toml    everything removed; works after a crash or a half-built lab

A topology file:

    [lab]
    name = "l2"                       # namespaces are named <lab>-<node>

    [[node]]
    name = "dpu"
    softdpu = "../pipelines/live-l2-switch.toml"   # run in this namespace (relative to this file)
    workers = 1                                    # optional

    [[link]]                          # a veth pair; both ends up, tx checksum offload off
    a = "h1:eth0"
    b = "dpu:d1"
    a_address = "10.0.0.1/24"         # optional, also b_address
    mtu = 1500                        # optional

    [[bridge]]                        # a Linux bridge in a node joining some of its interfaces
    node = "underlay"
    name = "br0"
    ports = ["p1", "p2"]

    [[route]]
    node = "h1"
    dst = "10.1.0.0/24"
    via = "10.0.0.254"

Nodes named only in links are created too.  softdpu instances are started with
`--name <lab>-<node> --rundir RUNDIR` (control socket RUNDIR/<lab>-<node>.sock,
log RUNDIR/<lab>-<node>.log; RUNDIR is $SOFTDPU_RUNDIR or /run/softdpu).  `lab down`
needs only the file: it stops every process inside the lab's namespaces and
removes the namespaces (their veths, bridges and TAPs go with them).
"""
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from softdpu.config import NAME_RE, _Locator
from softdpu.errors import ConfigError, SoftdpuError
from softdpu.live import control, netns

START_S = 300.0


def add_parser(sub):
    lab = sub.add_parser("lab", help="network-namespace labs: up, down, status")
    lab.add_argument("action", choices=("up", "down", "status"))
    lab.add_argument("topology", help="the topology file (.toml)")
    lab.add_argument("--rundir", default=None, help="softdpu's runtime dir (default $SOFTDPU_RUNDIR or /run/softdpu)")


def run(args, out):
    topo = load(args.topology)
    rundir = Path(args.rundir) if args.rundir else control.default_rundir()
    return {"up": up, "down": down, "status": status}[args.action](topo, rundir, out)


class Topology:
    def __init__(self, path, name, nodes, links, bridges, routes):
        self.path, self.name, self.nodes, self.links, self.bridges, self.routes = (
            path, name, nodes, links, bridges, routes)

    def ns(self, node):
        return f"{self.name}-{node}"


def load(path):
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(path, "file", f"cannot read: {e.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "toml", f"not valid TOML: {e}") from None
    loc = _Locator(text)
    for key in doc:
        if key not in ("lab", "node", "link", "bridge", "route"):
            raise ConfigError(path, key, "unknown key; expected one of: bridge, lab, link, node, route")
    lab = doc.get("lab")
    if not isinstance(lab, dict) or not isinstance(lab.get("name"), str) or not NAME_RE.match(lab["name"]):
        raise ConfigError(path, "lab.name", "expected [lab] name = a short name (letters, digits, _ . -)",
                          loc.line("lab", key="name"))
    name = lab["name"]
    nodes = {}

    def node(n, key, line):
        if not isinstance(n, str) or not NAME_RE.match(n) or len(f"{name}-{n}") > 64:
            raise ConfigError(path, key, f"expected a node name, got {n!r}", line)
        return nodes.setdefault(n, {})

    def table(kind, keys, required):
        items = doc.get(kind, [])
        if not isinstance(items, list):
            raise ConfigError(path, kind, f"expected [[{kind}]] tables")
        for i, t in enumerate(items):
            line = lambda k=None, i=i: loc.line(kind, i, k)  # noqa: E731
            for k in t:
                if k not in keys:
                    raise ConfigError(path, f"{kind}[{i}].{k}", f"unknown key; expected one of: "
                                      f"{', '.join(sorted(keys))}", line(k))
            for k in required:
                if k not in t:
                    raise ConfigError(path, f"{kind}[{i}].{k}", "missing", line())
            yield i, t, line

    for i, t, line in table("node", {"name", "softdpu", "workers"}, ("name",)):
        n = node(t["name"], f"node[{i}].name", line("name"))
        if "softdpu" in t:
            p = (path.parent / str(t["softdpu"])).resolve()
            if not p.is_file():
                raise ConfigError(path, f"node[{i}].softdpu", f"no such pipeline file: {p}", line("softdpu"))
            n["softdpu"] = p
            w = t.get("workers", 1)
            if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 64:
                raise ConfigError(path, f"node[{i}].workers", f"expected 1..64, got {w!r}", line("workers"))
            n["workers"] = w
    links = []
    for i, t, line in table("link", {"a", "b", "a_address", "b_address", "mtu"}, ("a", "b")):
        ends = []
        for side in ("a", "b"):
            v = t[side]
            n, sep, dev = v.partition(":") if isinstance(v, str) else ("", "", "")
            if not sep or not NAME_RE.match(dev):
                raise ConfigError(path, f"link[{i}].{side}", f"expected NODE:INTERFACE, got {v!r}", line(side))
            node(n, f"link[{i}].{side}", line(side))
            ends.append((n, dev, t.get(f"{side}_address")))
        links.append((ends, t.get("mtu")))
    bridges = [(t["node"], t["name"], list(t.get("ports", []))) for i, t, line in
               table("bridge", {"node", "name", "ports", "address"}, ("node", "name"))]
    for n, _, _ in bridges:
        node(n, "bridge.node", None)
    routes = []
    for i, t, line in table("route", {"node", "dst", "via"}, ("node", "dst", "via")):
        node(t["node"], f"route[{i}].node", line("node"))
        routes.append((t["node"], t["dst"], t["via"]))
    bridge_addr = {(t["node"], t["name"]): t.get("address") for t in doc.get("bridge", [])}
    topo = Topology(path, name, nodes, links, bridges, routes)
    topo.bridge_addr = bridge_addr
    return topo


def up(topo, rundir, out):
    if any(netns.exists(topo.ns(n)) for n in topo.nodes):
        raise SoftdpuError(f"lab {topo.name} is (partly) up already: run softdpu lab down {topo.path} first")
    try:
        _build(topo)
        started = _start(topo, rundir)
    except BaseException:
        down(topo, rundir, open(os.devnull, "w"))
        raise
    print(f"lab {topo.name} up: {len(topo.nodes)} namespaces ({', '.join(topo.ns(n) for n in topo.nodes)}), "
          f"{len(topo.links)} links, softdpu in {', '.join(started) or 'none'}", file=out)
    return 0


def _build(topo):
    from pyroute2 import IPRoute

    for n in topo.nodes:
        netns.create(topo.ns(n))
    for ends, mtu in topo.links:
        (na, da, _), (nb, db, _) = ends
        netns.veth(topo.ns(na), da, topo.ns(nb), db, mtu=mtu)
        for n, dev, cidr in ends:
            netns.tx_csum_off(topo.ns(n), dev)
            if cidr:
                netns.address(topo.ns(n), dev, cidr)
    for n, br, ports in topo.bridges:
        with IPRoute(netns=topo.ns(n)) as ipr:
            ipr.link("add", ifname=br, kind="bridge")
            idx = ipr.link_lookup(ifname=br)[0]
            for p in ports:
                ipr.link("set", index=ipr.link_lookup(ifname=p)[0], master=idx)
            ipr.link("set", index=idx, state="up")
        if topo.bridge_addr.get((n, br)):
            netns.address(topo.ns(n), br, topo.bridge_addr[(n, br)])
    for n, dst, via in topo.routes:
        netns.route(topo.ns(n), dst, via)


def _start(topo, rundir):
    rundir.mkdir(mode=0o700, parents=True, exist_ok=True)
    procs = []
    for n, spec in topo.nodes.items():
        if "softdpu" not in spec:
            continue
        name = topo.ns(n)
        log = open(rundir / f"{name}.log", "w")
        cmd = ["ip", "netns", "exec", name, sys.executable, "-m", "softdpu.cli", "start", str(spec["softdpu"]),
               "--workers", str(spec["workers"]), "--name", name, "--rundir", str(rundir)]
        procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True), rundir / f"{name}.log"))
        log.close()
    deadline = time.monotonic() + START_S
    for name, proc, log in procs:
        while " running: " not in log.read_text():
            if proc.poll() is not None:
                raise SoftdpuError(f"softdpu in {name} exited {proc.returncode}: {log.read_text().strip()}")
            if time.monotonic() > deadline:
                raise SoftdpuError(f"softdpu in {name} not running after {START_S} s (log: {log})")
            time.sleep(0.1)
    return [name for name, _, _ in procs]


def down(topo, rundir, out):
    stopped = removed = 0
    for n in topo.nodes:
        ns = topo.ns(n)
        pids = netns.pids_in(ns)
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        stopped += len(pids)
        removed += netns.remove(ns)
        (rundir / f"{ns}.sock").unlink(missing_ok=True)
    print(f"lab {topo.name} down: {stopped} processes stopped, {removed} namespaces removed", file=out)
    return 0


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def status(topo, rundir, out):
    from pyroute2 import IPRoute

    up_count = 0
    for n, spec in topo.nodes.items():
        ns = topo.ns(n)
        if not netns.exists(ns):
            print(f"{ns}: absent", file=out)
            continue
        up_count += 1
        with IPRoute(netns=ns) as ipr:
            addrs = {}
            for a in ipr.get_addr():
                addrs.setdefault(a["index"], []).append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
            links = [f"{l.get_attr('IFLA_IFNAME')}({l.get_attr('IFLA_OPERSTATE').lower()}"
                     f"{' ' + ' '.join(addrs[l['index']]) if l['index'] in addrs else ''})"
                     for l in ipr.get_links() if l.get_attr("IFLA_IFNAME") != "lo"]
        line = f"{ns}: {' '.join(links) or 'no interfaces'}"
        if "softdpu" in spec:
            try:
                show = control.request({"cmd": "show"}, ns, rundir)
                line += f"; softdpu running ({show[0].split(': ', 1)[-1]})"
            except SoftdpuError:
                line += "; softdpu NOT running"
        print(line, file=out)
    print(f"lab {topo.name}: {up_count} of {len(topo.nodes)} namespaces up", file=out)
    return 0
