"""softdpu start: the supervisor of a live Dpu -- its workers, control socket and shutdown.

    softdpu start PIPELINE [--workers N] [--name NAME] [--rundir DIR] [--isolate]

The supervisor loads the pipeline and builds its Dpu once (kernels loaded), opens
the ports for every worker (live/ports.py), then forks one worker process per
worker (live/worker.py), each with its own copy of the Dpu.  It serves the control
socket RUNDIR/NAME.sock (mode 0600; control.py) and relays each command to every
worker, which applies it between two batches.  On SIGINT or SIGTERM it stops the
workers, prints their summed counters and exits 0; if a worker dies it stops the
others and exits 1.

--isolate: the supervisor first enters a mount namespace of its own with a private
tmpfs on RUNDIR, so the control socket exists only there (reach it with
`nsenter -t PID -m softdpu ctl ...`): processes on the host side cannot reach it.
"""
import multiprocessing
import os
import select
import signal
import sys
import time

from softdpu.errors import SoftdpuError
from softdpu.live import control
from softdpu.live.ports import check, open_ports
from softdpu.live.worker import Worker

READY_S = 60.0
STOP_S = 5.0


def _worker_main(index, dpu, ports, conn):
    Worker(index, dpu, ports, conn).run()


class Supervisor:
    def __init__(self, cfg, workers=1, name=None, rundir=None, out=sys.stdout):
        if not 1 <= workers <= 64:
            raise SoftdpuError(f"--workers: expected 1..64, got {workers}")
        check(cfg, workers)
        self.cfg, self.n_workers, self.out = cfg, workers, out
        self.name = name or cfg.name
        self.rundir = rundir or control.default_rundir()
        self.stopping = False
        self.procs, self.conns = [], []
        self.started = time.monotonic_ns()

    def _signal(self, *_):
        self.stopping = True

    def run(self):
        from softdpu.pipeline import Dpu

        signal.signal(signal.SIGINT, self._signal)
        signal.signal(signal.SIGTERM, self._signal)
        dpu = Dpu(self.cfg)
        ports = open_ports(self.cfg, self.n_workers)
        self.port_info = [(p.name, p.ofport, p.port.type, p.ifname, p.mtu) for p in ports[0]]
        dpu.set_port_mtu({p.ofport: p.frame_limit for p in ports[0]})
        dpu.process(dpu.batch)                 # an empty batch: the MTU kernel loaded
        for p in ports[0]:
            p.warm(dpu.batch)
        server = None
        try:
            server = control.listen(self.rundir, self.name)
            ctx = multiprocessing.get_context("fork")
            for w in range(self.n_workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(w, dpu, ports[w], child), daemon=True,
                                   name=f"softdpu-{self.name}-{w}")
                proc.start()
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)
            for w in range(self.n_workers):
                for p in ports[w]:
                    p.close()                          # the worker has its own copies
            self._wait_ready()
            print(f"softdpu: {self.name} running: {len(self.port_info)} ports "
                  f"({', '.join(f'{n}={i}' for n, _, _, i, _ in self.port_info)}), {self.n_workers} "
                  f"worker(s) (pids {' '.join(str(p.pid) for p in self.procs)}), control socket "
                  f"{control.socket_path(self.rundir, self.name)}", file=self.out, flush=True)
            code = self._serve(server)
            finals = self._stop_workers()
            for line in control.format_stats(self.cfg, finals):
                print(line, file=self.out)
            print(f"softdpu: {self.name} stopped", file=self.out, flush=True)
            return code
        finally:
            for proc in self.procs:
                if proc.is_alive():
                    proc.kill()
                proc.join(1.0)
            for w in range(self.n_workers):
                for p in ports[w]:
                    p.close()
            if server is not None:
                control.unlisten(server, self.rundir, self.name)

    def _wait_ready(self):
        deadline = time.monotonic() + READY_S
        for w, conn in enumerate(self.conns):
            while not conn.poll(0.2):
                if not self.procs[w].is_alive() or time.monotonic() > deadline:
                    raise SoftdpuError(f"worker {w} did not start (exit code {self.procs[w].exitcode})")
                if self.stopping:
                    raise SoftdpuError("stopped while starting")
            msg = conn.recv()
            if msg[0] != "ready":
                raise SoftdpuError(f"worker {w}: {msg}")

    def _serve(self, server):
        """Serve control requests until a signal or a worker's death; -> exit code."""
        while not self.stopping:
            dead = [w for w, p in enumerate(self.procs) if not p.is_alive()]
            if dead:
                print(f"softdpu: error: worker {dead[0]} died (exit code {self.procs[dead[0]].exitcode}); "
                      "stopping", file=sys.stderr, flush=True)
                return 1
            try:
                ready, _, _ = select.select([server], [], [], 0.2)
            except InterruptedError:
                continue
            if ready:
                try:
                    client, _ = server.accept()
                except OSError:
                    continue
                with client:
                    control.handle(client, self)
        return 0

    def ask(self, op, arg=None, workers=None):
        """Send a command to the workers (all, or the listed ones); -> their replies in order."""
        chosen = range(self.n_workers) if workers is None else workers
        for w in chosen:
            self.conns[w].send((op, arg or {}))
        replies = []
        for w in chosen:
            if not self.conns[w].poll(30.0):
                raise SoftdpuError(f"worker {w} did not answer {op!r}")
            status, value = self.conns[w].recv()
            if status != "ok":
                raise SoftdpuError(f"worker {w}: {value}")
            replies.append(value)
        return replies

    def _stop_workers(self):
        """Stop every worker; -> their final counters."""
        finals = []
        for conn in self.conns:
            try:
                conn.send(("stop", None))
            except OSError:
                pass
        deadline = time.monotonic() + STOP_S
        for w, conn in enumerate(self.conns):
            while time.monotonic() < deadline:
                try:
                    if conn.poll(0.1):
                        kind, value = conn.recv()
                        if kind == "final":
                            finals.append(value)
                            break
                        continue
                except (EOFError, OSError):
                    break
                if not self.procs[w].is_alive():
                    break
            self.procs[w].join(max(deadline - time.monotonic(), 0.1))
        return finals


def isolate(rundir):
    """Enter a mount namespace of our own with a private tmpfs on rundir (see the docstring)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
    if libc.unshare(CLONE_NEWNS) != 0:
        raise SoftdpuError(f"--isolate: unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise SoftdpuError(f"--isolate: making mounts private: {os.strerror(ctypes.get_errno())}")
    os.makedirs(rundir, mode=0o700, exist_ok=True)
    if libc.mount(b"softdpu", str(rundir).encode(), b"tmpfs", 0, b"mode=0700") != 0:
        raise SoftdpuError(f"--isolate: mounting a tmpfs on {rundir}: {os.strerror(ctypes.get_errno())}")


def start(cfg, workers=1, name=None, rundir=None, isolated=False, out=sys.stdout):
    rundir = rundir or control.default_rundir()
    if isolated:
        isolate(rundir)
    return Supervisor(cfg, workers, name, rundir, out).run()

