"""softdpu start / ctl on real interfaces: two host namespaces joined through softdpu.

    h1 (10.66.0.1) eth0 <=> d1 [softdpu in the dpu namespace] d2 <=> eth0 h2 (10.66.0.2)

The Linux kernel is the oracle: its TCP and UDP stacks in h1 and h2 must get
each other's data through softdpu, byte for byte, and the firewall must let
through exactly what it lets through on pcaps.  Namespaces are created per test
and removed on exit (also on failure); every wait is bounded.  Skips without
root/netns, FAILS under CI=true.
"""
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

from pathlib import Path

import pytest
from live_harness import H1_IP, H2_IP, ROOT, TwoHosts, require_netns, tcp_exchange, tcp_refused_or_silent, udp_send

from softdpu.live import netns

L2 = "pipelines/live/l2-switch.toml"
FW = "pipelines/live/firewall.toml"


LIVE_PIPELINES = sorted((ROOT / "pipelines" / "live").glob("*.toml"))


@pytest.mark.parametrize("path", LIVE_PIPELINES, ids=lambda p: p.stem)
def test_shipped_live_pipelines_load(path):
    from softdpu import config
    from softdpu.live.ports import check
    cfg = config.load(path)
    check(cfg, 2)
    assert any(p.type == "afpacket" for p in cfg.ports)


def test_live_config_errors(tmp_path):
    from softdpu import config
    from softdpu.errors import ConfigError
    from softdpu.live.ports import check
    flows = ROOT / "pipelines" / "l2-switch.flows"
    head = f'[pipeline]\nflows = "{flows}"\n[[port]]\nname = "p1"\nofport = 1\n'
    cases = {
        'type = "afpacket"\ninterface = "this-name-is-too-long"\n': "port[0].interface: expected an interface name",
        'type = "afpacket"\nnetns = "x"\n': "port[0].netns: unknown key for a afpacket port",
        'type = "tap"\nmtu = 10\n': "port[0].mtu",
    }
    for body, want in cases.items():
        p = tmp_path / "p.toml"
        p.write_text(head + body)
        with pytest.raises(ConfigError, match=re.escape(want)):
            config.load(p)
    p.write_text(head + 'type = "tap"\n')
    with pytest.raises(ConfigError, match="tap ports have one queue"):
        check(config.load(p), 2)


@pytest.fixture
def lab():
    require_netns()
    with TwoHosts() as lab:
        yield lab


def _stats(sd):
    _, out, _ = sd.ctl("stats")
    return out


def _counter(text, port, column):
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == port:
            return int(words[{"rx_packets": 2, "rx_bytes": 3, "tx_packets": 4, "tx_bytes": 5}[column]])
    raise AssertionError(f"no port {port} in:\n{text}")


def _with_tx(tmp_path, tx):
    """pipelines/live/l2-switch.toml with its afpacket ports in transmit mode `tx`."""
    if tx == "ring":              # the default
        return L2
    text = (ROOT / L2).read_text().replace('flows = "../', f'flows = "{ROOT}/pipelines/')
    p = tmp_path / f"l2-{tx}.toml"
    p.write_text(text.replace('type = "afpacket"', f'type = "afpacket"\ntx = "{tx}"'))
    return p


@pytest.mark.parametrize("tx", ["sendmmsg", "ring"])
def test_l2_switch_carries_tcp_and_udp(lab, tmp_path, tx):
    with lab.softdpu(_with_tx(tmp_path, tx), tmp_path) as sd:
        got, back, sent = tcp_exchange(lab.h1, lab.h2, H2_IP, 5001, 300_000)
        assert got == sent and back == bytes(reversed(sent))
        got, back, sent = tcp_exchange(lab.h2, lab.h1, H1_IP, 5002, 20_000)   # the other way
        assert got == sent and back == bytes(reversed(sent))
        assert udp_send(lab.h1, lab.h2, H2_IP, 6001, 200) == 200
        assert udp_send(lab.h2, lab.h1, H1_IP, 6002, 200, size=1400) == 200
        out = _stats(sd)
        assert "dropped 0" in out, out
        # what p1 received went out of p2 and the other way (a learning switch of two ports)
        assert _counter(out, "p1", "rx_packets") == _counter(out, "p2", "tx_packets") > 400
        assert _counter(out, "p2", "rx_packets") == _counter(out, "p1", "tx_packets") > 400
        _, flows, _ = sd.ctl("dump-flows")
        assert "actions=NORMAL" in flows and "n_packets=0" in flows      # the LLDP rule: none
    assert sd.proc.returncode == 0
    assert "stopped" in sd.output and "received" in sd.output


def test_two_workers_fanout_keeps_connections_whole(lab, tmp_path):
    """Two workers behind the firewall: conntrack per worker is right only if both directions
    of each connection reach the same worker (PACKET_FANOUT hash)."""
    with lab.softdpu(FW, tmp_path, workers=2) as sd:
        for k in range(8):
            got, back, sent = tcp_exchange(lab.h1, lab.h2, H2_IP, 5100 + k, 30_000)
            assert got == sent and back == bytes(reversed(sent)), f"connection {k}"
        out = _stats(sd)
        assert "worker 0:" in out and "worker 1:" in out, out
        _, ct, _ = sd.ctl("dump-conntrack")
        assert sum(f"dport={5100 + k}" in ct for k in range(8)) == 8, ct


def test_firewall_blocks_and_allows_live(lab, tmp_path):
    with lab.softdpu(FW, tmp_path) as sd:
        got, back, sent = tcp_exchange(lab.h1, lab.h2, H2_IP, 5200, 50_000)       # inside -> out
        assert got == sent and back == bytes(reversed(sent))
        srv = netns.run_in(lab.h1, lambda: socket.socket())                        # outside -> in
        srv.bind((H1_IP, 5201))
        srv.listen(1)
        try:
            assert tcp_refused_or_silent(lab.h2, H1_IP, 5201)
        finally:
            srv.close()
        assert udp_send(lab.h2, lab.h1, H1_IP, 6200, 20, wait=0.5) == 0             # unsolicited UDP
        assert udp_send(lab.h1, lab.h2, H2_IP, 6201, 20) == 20
        _, ct, _ = sd.ctl("dump-conntrack")
        assert f"src={H1_IP},dst={H2_IP}" in ct and "dport=5200" in ct and "mark=1" in ct
        assert "dport=5201" not in ct
        out = _stats(sd)
        drops = {l.split()[1]: int(l.split()[2]) for l in out.splitlines() if l.strip().startswith("drop ")}
        assert drops.get("action_drop", 0) >= 21, out          # the SYNs (with retries) and the 20 datagrams


def test_ctl_flow_takes_effect_live_and_keeps_counters(lab, tmp_path):
    with lab.softdpu(L2, tmp_path) as sd:
        assert udp_send(lab.h1, lab.h2, H2_IP, 7000, 30) == 30
        _, out, _ = sd.ctl("add-flow", "priority=40000,udp,tp_dst=7000,actions=drop")
        assert "added 1" in out
        assert udp_send(lab.h1, lab.h2, H2_IP, 7000, 30, wait=0.5) == 0
        assert udp_send(lab.h1, lab.h2, H2_IP, 7001, 30) == 30               # other traffic still flows
        _, flows, _ = sd.ctl("dump-flows")
        line = next(l for l in flows.splitlines() if "tp_dst=7000" in l)
        assert "n_packets=30" in line, flows
        normal = next(l for l in flows.splitlines() if "NORMAL" in l)
        assert int(normal.split("n_packets=")[1].split(",")[0]) >= 60        # kept across the change
        sd.ctl("mod-flows", "udp,tp_dst=7000,actions=normal")
        assert udp_send(lab.h1, lab.h2, H2_IP, 7000, 30) == 30
        _, flows, _ = sd.ctl("dump-flows")
        line = next(l for l in flows.splitlines() if "tp_dst=7000" in l)
        assert "n_packets=60" in line and "actions=NORMAL" in line, flows    # mod-flows keeps counters
        sd.ctl("del-flows", "udp,tp_dst=7000")
        _, flows, _ = sd.ctl("dump-flows")
        assert "tp_dst=7000" not in flows
        # bad input: a clear error, nothing changed
        code, _, err = sd.ctl("add-flow", "priority=5,udp,actions=bogus", check=False)
        assert code == 2 and "bogus" in err
        code, _, err = sd.ctl("add-flow", "priority=5,tp_dst=1,actions=drop", check=False)
        assert code == 2
        _, flows2, _ = sd.ctl("dump-flows")
        assert len(flows2.splitlines()) == len(flows.splitlines())


def test_graceful_shutdown_and_restart(lab, tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        sd = lab.softdpu(L2, tmp_path, name="again")
        with sd:
            sock = tmp_path / "again.sock"
            assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
            got, back, sent = tcp_exchange(lab.h1, lab.h2, H2_IP, 5300 + sig, 10_000)
            assert got == sent
            assert sd.stop(sig) == 0, sd.output
        assert "softdpu: again stopped" in sd.output
        assert "received" in sd.output and "left" in sd.output
        assert not (tmp_path / "again.sock").exists()
    assert netns.pids_in(lab.dpu) == []


def test_mtu_respected(lab, tmp_path):
    netns.set_link(lab.dpu, "d2", mtu=1000)
    with lab.softdpu(L2, tmp_path) as sd:
        assert udp_send(lab.h1, lab.h2, H2_IP, 7100, 10, size=972) == 10           # IP packet = MTU
        assert udp_send(lab.h1, lab.h2, H2_IP, 7101, 10, size=973, wait=0.5) == 0  # one byte over
        out = _stats(sd)
        assert "port_mtu" in out and "mtu 1000" in sd.ctl("show")[1], out
        line = next(l for l in out.splitlines() if "drop port_mtu" in l)
        assert int(line.split()[2]) == 10


def test_control_socket_isolated_from_the_host_side(lab, tmp_path):
    """--isolate: the socket lives in softdpu's own mount namespace; a process in a host
    namespace sees no such path; one entering softdpu's mount namespace can use it."""
    rundir = tmp_path / "run"
    with lab.softdpu(L2, rundir, isolate=True, name="iso") as sd:
        path = rundir / "iso.sock"
        assert not path.exists()                  # not in this (the host's) mount namespace
        probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
                 f"try:\n s.connect({str(path)!r}); print('connected')\nexcept OSError as e: print(type(e).__name__)")
        r = subprocess.run(["ip", "netns", "exec", lab.h1, sys.executable, "-c", probe], capture_output=True,
                           text=True, timeout=30)
        assert r.stdout.strip() == "FileNotFoundError", r
        r = subprocess.run(["nsenter", "-t", str(sd.proc.pid), "-m", sys.executable, "-m", "softdpu.cli", "ctl",
                            "--dpu", "iso", "--rundir", str(rundir), "show"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert r.returncode == 0 and "afpacket d1" in r.stdout, r


def test_socket_refuses_other_users(lab):
    """The socket's own mode (0600) keeps other users out: with the directories open to all, a
    process as nobody is refused; the same socket made 0666 lets it connect (the control)."""
    import shutil
    import tempfile
    top = Path(tempfile.mkdtemp(prefix="softdpu-perm-", dir="/tmp"))
    try:
        run = top / "run"
        with lab.softdpu(L2, run, name="perm"):
            path = run / "perm.sock"
            assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
            os.chmod(top, 0o755)
            os.chmod(run, 0o755)
            probe = ("import os,socket\nos.setgid(65534); os.setuid(65534)\ns=socket.socket(socket.AF_UNIX)\n"
                     f"try:\n s.connect({str(path)!r}); print('connected')\n"
                     "except OSError as e: print(type(e).__name__)")
            r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
            assert r.stdout.strip() == "PermissionError", r
            os.chmod(path, 0o666)
            r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
            assert r.stdout.strip() == "connected", r
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_bad_input(lab, tmp_path):
    def start(*args):
        return subprocess.run(["ip", "netns", "exec", lab.dpu, sys.executable, "-m", "softdpu.cli", "start", *args,
                               "--rundir", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    r = start("pipelines/l2-switch.toml")
    assert r.returncode == 2 and "port[0].type: a pcap port cannot run live" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text((ROOT / L2).read_text().replace('interface = "d2"', 'interface = "nosuch0"')
                   .replace('flows = "', f'flows = "{ROOT}/pipelines/live/'))
    r = start(str(bad))
    assert r.returncode == 2 and "nosuch0" in r.stderr, r.stderr
    r = start(L2, "--workers", "0")
    assert r.returncode == 2 and "--workers" in r.stderr
    r = subprocess.run([sys.executable, "-m", "softdpu.cli", "ctl", "--dpu", "nobody", "--rundir", str(tmp_path),
                        "show"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and "no softdpu named nobody" in r.stderr


TAP_PIPELINE = """
[pipeline]
name = "taps"
flows = "{root}/pipelines/l2-switch.flows"

[[port]]
name = "vf1"
ofport = 1
type = "tap"
mac = "02:00:00:00:0a:01"
mtu = 1400
netns = "{h1}"

[[port]]
name = "vf2"
ofport = 2
type = "tap"
interface = "vf2dev"
netns = "{h2}"
"""


def test_tap_ports_are_nics_of_the_host_namespaces(tmp_path):
    """Two TAP devices made by softdpu, each moved into a host namespace: TCP between them."""
    require_netns()
    from live_harness import Softdpu
    with TwoHosts(prefix="sdt") as lab:
        pipe = tmp_path / "taps.toml"
        pipe.write_text(TAP_PIPELINE.format(root=ROOT, h1=lab.h1, h2=lab.h2))
        with Softdpu(lab.dpu, pipe, tmp_path) as sd:
            assert netns.mac_of(lab.h1, "vf1") == "02:00:00:00:0a:01"
            netns.address(lab.h1, "vf1", "10.67.0.1/24")
            netns.address(lab.h2, "vf2dev", "10.67.0.2/24")
            got, back, sent = tcp_exchange(lab.h1, lab.h2, "10.67.0.2", 5400, 200_000)
            assert got == sent and back == bytes(reversed(sent))
            assert udp_send(lab.h2, lab.h1, "10.67.0.1", 6400, 50, size=1300) == 50
            _, show, _ = sd.ctl("show")
            assert "tap vf1 mtu 1400" in show
            out = _stats(sd)
            assert "dropped 0" in out, out
        assert sd.proc.returncode == 0
        from pyroute2 import IPRoute
        with IPRoute(netns=lab.h1) as ipr:
            assert not ipr.link_lookup(ifname="vf1")           # gone with softdpu


def test_workers_follow_a_killed_supervisor(lab, tmp_path):
    sd = lab.softdpu(L2, tmp_path, workers=2, name="orphan")
    with sd:
        assert len(netns.pids_in(lab.dpu)) == 3
        sd.proc.kill()
        sd.proc.wait(10)
        deadline = time.monotonic() + 10
        while netns.pids_in(lab.dpu) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns.pids_in(lab.dpu) == []


def test_an_interface_that_goes_away(lab, tmp_path):
    """The host behind d2 disappears (its namespace, so the veth pair, is removed): softdpu keeps
    forwarding nothing there without spinning or dying, answers ctl, and stops cleanly."""
    with lab.softdpu(L2, tmp_path) as sd:
        assert udp_send(lab.h1, lab.h2, H2_IP, 7200, 10) == 10
        netns.remove(lab.h2)
        lab.made.remove(lab.h2)
        time.sleep(0.5)
        assert udp_send(lab.h1, lab.h1, H1_IP, 7201, 1) == 1       # h1's own stack still fine
        netns.run_in(lab.h1, lambda: udp_flood(H2_IP))
        time.sleep(0.5)
        pids = netns.pids_in(lab.dpu)
        cpu0 = sum(_cpu(p) for p in pids)
        time.sleep(1.0)
        assert sum(_cpu(p) for p in pids) - cpu0 < 0.5                 # not a busy loop
        code, out, _ = sd.ctl("stats")
        assert code == 0 and "port p2" in out and "tx_failed 50" in out and "socket_errors 1" in out, out
        assert sd.stop() == 0, sd.output


def udp_flood(ip, count=50):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(count):
            s.sendto(b"x" * 64, (ip, 9))
    finally:
        s.close()


def _cpu(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0
