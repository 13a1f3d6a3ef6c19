"""Live tests' set-up: namespaces with veths (softdpu.live.netns), softdpu as a process, traffic.

    with TwoHosts() as lab:                 # h1 (10.66.0.1) -- d1 [dpu] d2 -- h2 (10.66.0.2)
        with lab.softdpu("pipelines/live-l2-switch.toml") as sd:
            lab.tcp(...), lab.udp(...), sd.ctl("stats")

Everything is removed on exit, failed set-ups included; every wait is bounded.
Needs root and network namespaces: require_netns() skips without them (fails under CI=true).
"""
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from softdpu.live import netns

ROOT = Path(__file__).resolve().parent.parent
H1_IP, H2_IP = "10.66.0.1", "10.66.0.2"
START_S = 300.0        # a cold numba cache compiles every kernel first
WAIT_S = 5.0
SO_RCVBUFFORCE = 33


def require_netns():
    why = None
    if os.geteuid() != 0:
        why = "not root"
    else:
        try:
            import pyroute2  # noqa: F401
        except ImportError:
            why = "pyroute2 is not installed"
    if why is None:
        probe = f"sdprobe-{secrets.token_hex(3)}"
        try:
            netns.create(probe)
        except Exception as e:
            why = f"cannot create a network namespace: {e}"
        finally:
            try:
                netns.remove(probe)
            except Exception:
                pass
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"live tests need root and network namespaces under CI: {why}")
        pytest.skip(f"live tests need root and network namespaces: {why}")


class Softdpu:
    """`softdpu start` in a namespace, as a process; a context manager that stops it."""

    def __init__(self, ns, pipeline, rundir, workers=1, name=None, isolate=False):
        self.ns, self.rundir, self.name = ns, Path(rundir), name or f"sd{secrets.token_hex(3)}"
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "softdpu.cli", "start", str(pipeline),
               "--workers", str(workers), "--name", self.name, "--rundir", str(rundir)]
        if isolate:
            cmd.append("--isolate")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_running(self, timeout=START_S):
        deadline = time.monotonic() + timeout
        while not any(" running: " in line for line in self.lines):
            if self.proc.poll() is not None:
                self._reader.join(WAIT_S)
                raise AssertionError(f"softdpu exited {self.proc.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"softdpu not running after {timeout} s:\n{self.output}")
            time.sleep(0.05)
        return self

    def ctl(self, *args, check=True):
        """softdpu ctl --dpu NAME ARGS, run in this test's process; -> (exit code, stdout, stderr)."""
        r = subprocess.run([sys.executable, "-m", "softdpu.cli", "ctl", "--dpu", self.name, "--rundir",
                            str(self.rundir), *args], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"ctl {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.returncode, r.stdout, r.stderr

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Signal it and wait; -> exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)
        self._reader.join(WAIT_S)
        return self.proc.returncode

    def __enter__(self):
        try:
            return self.wait_running()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()
        return False


class TwoHosts:
    """h1 -- eth0 <=> d1 [dpu] d2 <=> eth0 -- h2; tx checksum offload off on the hosts' ends."""

    def __init__(self, prefix="sdl"):
        tag = secrets.token_hex(3)
        self.h1, self.h2, self.dpu = (f"{prefix}-{tag}-{n}" for n in ("h1", "h2", "dpu"))
        self.made = []

    def __enter__(self):
        try:
            for ns in (self.h1, self.h2, self.dpu):
                netns.create(ns)
                self.made.append(ns)
            for host, dev, ip in ((self.h1, "d1", H1_IP), (self.h2, "d2", H2_IP)):
                netns.veth(self.dpu, dev, host, "eth0")
                netns.tx_csum_off(host, "eth0")
                netns.address(host, "eth0", f"{ip}/24")
            for host in (self.h1, self.h2):
                netns.wait_up(host, "eth0")
        except BaseException:
            self.close()
            raise
        return self

    def softdpu(self, pipeline, rundir, **kw):
        return Softdpu(self.dpu, ROOT / pipeline, rundir, **kw)

    def close(self):
        for ns in reversed(self.made):
            netns.destroy(ns)
        self.made.clear()

    def __exit__(self, *exc):
        self.close()
        return False


# ------------------------------------------------------------------ traffic

def tcp_exchange(client_ns, server_ns, server_ip, port, nbytes, timeout=WAIT_S * 2):
    """A TCP connection client -> server: nbytes each way (the server echoes a digest of what it got).
    -> (bytes the server received, bytes the client received back)."""
    srv = netns.run_in(server_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((server_ip, port))
    srv.listen(1)
    srv.settimeout(timeout)
    got = {}

    def serve():
        try:
            conn, _ = srv.accept()
            conn.settimeout(timeout)
            with conn:
                data = b""
                while len(data) < nbytes:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                got["server"] = data
                conn.sendall(bytes(reversed(data)))
        except OSError as e:
            got["error"] = e
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        cli = netns.run_in(client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        cli.settimeout(timeout)
        with cli:
            cli.connect((server_ip, port))
            payload = bytes((i * 7) & 0xFF for i in range(nbytes))
            cli.sendall(payload)
            back = b""
            while len(back) < nbytes:
                chunk = cli.recv(65536)
                if not chunk:
                    break
                back += chunk
        t.join(timeout)
        return got.get("server", b""), back, payload
    finally:
        srv.close()


def udp_send(client_ns, server_ns, server_ip, port, count, size=100, wait=1.0):
    """count datagrams client -> server (one each WAIT/ms), -> how many arrived intact."""
    rx = netns.run_in(server_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    tx = netns.run_in(client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)   # all of them fit: the test reads after
        rx.bind((server_ip, port))
        for k in range(count):
            tx.sendto(k.to_bytes(4, "big") + bytes(size - 4), (server_ip, port))
            if k % 50 == 49:
                time.sleep(0.002)
        seen = set()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and len(seen) < count:
            r, _, _ = select.select([rx], [], [], 0.05)
            if r:
                data = rx.recv(65536)
                if len(data) == size:
                    seen.add(int.from_bytes(data[:4], "big"))
        return len(seen)
    finally:
        rx.close()
        tx.close()


def tcp_refused_or_silent(client_ns, server_ip, port, timeout=1.5):
    """True when a TCP connect from client_ns to server_ip:port does not complete in timeout."""
    cli = netns.run_in(client_ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    cli.settimeout(timeout)
    try:
        cli.connect((server_ip, port))
        return False
    except OSError:
        return True
    finally:
        cli.close()


def wait_path(client_ns, server_ns, server_ip, timeout=60.0):
    """Until a UDP datagram client -> server gets through (ARP resolved, softdpu's kernels that
    compile on first use -- e.g. the ESP ones, which numba cannot cache -- compiled); bounded."""
    deadline = time.monotonic() + timeout
    port = 9900
    while time.monotonic() < deadline:
        try:
            if udp_send(client_ns, server_ns, server_ip, port, 1, wait=1.0) == 1:
                return
        except OSError:          # EHOSTUNREACH while the neighbour is FAILED: try again
            time.sleep(0.2)
        port += 1
    raise TimeoutError(f"no datagram from {client_ns} reached {server_ip} in {timeout} s")
