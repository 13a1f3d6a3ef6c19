"""softdpu lab up / status / down with the shipped topologies (labs/), in namespaces named after
a random lab name (so a lab a developer has up is left alone).

The overlay lab must carry a real TCP connection between its two hosts through two softdpus
and a VXLAN underlay; `lab down` after a softdpu was killed (SIGKILL) must leave no
namespace, process or device behind; a lab that fails half way is removed by `lab up`
itself, and one half built by hand is removed by `lab down`.  Skips without root/netns,
FAILS under CI=true.
"""
import os
import re
import secrets
import signal
import subprocess
import sys
import time

import pytest
from live_harness import ROOT, require_netns, tcp_exchange, wait_path

from softdpu.live import netns


def _topology(tmp_path, name):
    """labs/NAME.toml with a random lab name and absolute pipeline paths -> (path, lab name)."""
    lab = f"t{secrets.token_hex(3)}"
    text = (ROOT / "labs" / f"{name}.toml").read_text()
    text = re.sub(r'(?m)^name = "(l2|ovl|ovle)"$', f'name = "{lab}"', text)
    text = text.replace('"../pipelines/', f'"{ROOT}/pipelines/')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path, lab


def _lab(*args):
    return subprocess.run([sys.executable, "-m", "softdpu.cli", "lab", *map(str, args)], capture_output=True,
                          text=True, timeout=400, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _mine(lab):
    return [n for n in netns.names() if n.startswith(f"{lab}-")]


@pytest.fixture
def need():
    require_netns()


def test_overlay_carries_tcp_and_down_after_a_kill_leaves_nothing(need, tmp_path):
    topo, lab = _topology(tmp_path, "overlay")
    run = tmp_path / "run"
    try:
        r = _lab("up", topo, "--rundir", run)
        assert r.returncode == 0, r.stderr
        assert sorted(_mine(lab)) == sorted(f"{lab}-{n}" for n in ("dpu1", "dpu2", "h1", "h2", "underlay"))
        wait_path(f"{lab}-h1", f"{lab}-h2", "10.0.0.2")
        got, back, sent = tcp_exchange(f"{lab}-h1", f"{lab}-h2", "10.0.0.2", 5500, 200_000, timeout=15)
        assert got == sent and back == bytes(reversed(sent))
        r = _lab("status", topo, "--rundir", run)
        assert r.stdout.count("softdpu running") == 2, r.stdout
        victims = netns.pids_in(f"{lab}-dpu1")
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.3)
        r = _lab("status", topo, "--rundir", run)
        assert "softdpu NOT running" in r.stdout
    finally:
        r = _lab("down", topo, "--rundir", run)
    assert r.returncode == 0 and "5 namespaces removed" in r.stdout, r
    assert _mine(lab) == []
    assert not list(run.glob("*.sock"))
    for pid in victims:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not re.search(r"\b(d1|d2|u1|u2|p1|p2)@", links)


def test_l2_switch_lab_and_half_built_labs(need, tmp_path):
    topo, lab = _topology(tmp_path, "l2-switch")
    run = tmp_path / "run"
    try:
        assert _lab("up", topo, "--rundir", run).returncode == 0
        wait_path(f"{lab}-h1", f"{lab}-h2", "10.0.0.2")
        got, _, sent = tcp_exchange(f"{lab}-h1", f"{lab}-h2", "10.0.0.2", 5600, 50_000)
        assert got == sent
        r = _lab("up", topo, "--rundir", run)                    # already up: refused, nothing touched
        assert r.returncode == 2 and "already" in r.stderr
        assert len(_mine(lab)) == 3
    finally:
        assert _lab("down", topo, "--rundir", run).returncode == 0
    assert _mine(lab) == []
    # half built by hand: down removes what is there
    netns.create(f"{lab}-h1")
    r = _lab("down", topo, "--rundir", run)
    assert r.returncode == 0 and "1 namespaces removed" in r.stdout and _mine(lab) == []
    # fails half way (the pipeline names an interface the lab lacks): up cleans up after itself
    bad = tmp_path / "bad.toml"
    bad.write_text(topo.read_text().replace('b = "dpu:d2"', 'b = "dpu:x2"'))
    r = _lab("up", bad, "--rundir", run)
    assert r.returncode == 2 and "d2" in r.stderr, r.stderr
    assert _mine(lab) == []


def test_bad_topologies(tmp_path):
    cases = {
        '[lab]\nname = "x"\n[[lnk]]\n': "lnk: unknown key",
        '[lab]\nname = "x"\n[[link]]\na = "h1"\nb = "h2:eth0"\n': "link[0].a: expected NODE:INTERFACE",
        '[lab]\nname = "x"\n[[node]]\nname = "n"\nsoftdpu = "nope.toml"\n': "node[0].softdpu: no such pipeline",
        '[lab]\nname = "x"\n[[link]]\na = "h1:e0"\nb = "h2:e0"\nspeed = 1\n': "link[0].speed: unknown key",
        '[lab]\n': "lab.name",
    }
    for text, want in cases.items():
        p = tmp_path / "t.toml"
        p.write_text(text)
        r = _lab("status", p)
        assert r.returncode == 2 and want in r.stderr, (text, r.stderr)


def test_overlay_with_esp_on_the_wire(need, tmp_path):
    """labs/overlay-esp.toml: TCP end to end, and on the underlay only ESP (IP protocol 50)
    between the VTEPs -- no plaintext VXLAN, and none of the payload's bytes in clear."""
    import socket
    import threading

    topo, lab = _topology(tmp_path, "overlay-esp")
    run = tmp_path / "run"
    frames, stop = [], threading.Event()
    try:
        assert _lab("up", topo, "--rundir", run).returncode == 0
        cap = netns.run_in(f"{lab}-underlay", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                                                     socket.htons(0x0003)))
        cap.bind(("p1", 0x0003))
        cap.settimeout(0.2)

        def record():
            while not stop.is_set():
                try:
                    frames.append(cap.recv(65536))
                except socket.timeout:
                    pass
        t = threading.Thread(target=record, daemon=True)
        t.start()
        wait_path(f"{lab}-h1", f"{lab}-h2", "10.0.0.2")
        got, back, sent = tcp_exchange(f"{lab}-h1", f"{lab}-h2", "10.0.0.2", 5700, 100_000, timeout=15)
        assert got == sent and back == bytes(reversed(sent))
        stop.set()
        t.join(5)
        cap.close()
    finally:
        stop.set()
        _lab("down", topo, "--rundir", run)
    assert _mine(lab) == []
    ip = [f for f in frames if f[12:14] == b"\x08\x00"]
    esp = [f for f in ip if f[23] == 50]
    udp_vxlan = [f for f in ip if f[23] == 17 and f[14 + (f[14] & 15) * 4 + 2:][:2] == (4789).to_bytes(2, "big")]
    assert len(esp) > 50 and not udp_vxlan, (len(esp), len(udp_vxlan))
    assert not any(sent[1000:1032] in f or back[1000:1032] in f for f in frames)
