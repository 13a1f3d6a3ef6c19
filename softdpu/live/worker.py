"""One live worker: a poll loop over its ports' rings feeding Dpu.process.

    rings ──fill──► batch ──dpu.process──► tx list ──send (one per port)──► rings

Each round fills one batch from every port in turn (the first port rotates so that
no port starves another), runs it through the Dpu's steps and writes its tx entries
out port by port.  With nothing received it sleeps in poll() on the ports' and the
control connection's file descriptors (at most POLL_MS).  Control commands from the
supervisor (control.py) are handled between batches only, so a flow change is
atomic: no packet sees half a table.  The live clock is CLOCK_MONOTONIC, read once
per batch into its timestamp column.

A worker stops on SIGINT/SIGTERM or a "stop" command, sends its final counters to
the supervisor and closes its rings.
"""
import select
import signal
import time

from softdpu.live import flow_mods

POLL_MS = 100
PR_SET_PDEATHSIG = 1


def _stop_with_parent():
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    import ctypes
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Worker:
    def __init__(self, index, dpu, ports, conn):
        """dpu: this worker's own Dpu; ports: live port objects (afpacket / tap) in config
        order; conn: a multiprocessing Connection to the supervisor."""
        self.index, self.dpu, self.ports, self.conn = index, dpu, ports, conn
        self.stopping = False
        self.port_errors = {}         # port name -> errors its socket reported (interface down/gone)

    def _stop(self, *_):
        self.stopping = True

    def run(self):
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        _stop_with_parent()
        dpu, ports, conn = self.dpu, self.ports, self.conn
        try:
            for p in ports:
                p.map()
            poller = select.poll()
            for p in ports:
                poller.register(p.fileno(), select.POLLIN)
            poller.register(conn.fileno(), select.POLLIN)
            conn.send(("ready", self.index))
            self._loop(dpu, ports, conn, poller)
            if not conn.closed:
                conn.send(("final", self.snapshot()))
        finally:
            for p in ports:
                p.close()

    def _loop(self, dpu, ports, conn, poller):
        batch = dpu.batch
        n_ports = len(ports)
        first = 0
        idle = 0
        while not self.stopping:
            batch.clear()
            now = time.monotonic_ns()
            row = 0
            for k in range(n_ports):
                row = ports[(first + k) % n_ports].fill(batch, row, now)
            first = (first + 1) % n_ports if n_ports else 0
            batch.n = row
            if row:
                dpu.process(batch)
                for p in ports:
                    p.send(batch)
                idle = 0
                if conn.poll():
                    self._command(conn)
                continue
            idle += 1
            if idle < 2:             # one more look before sleeping
                continue
            for fd, ev in poller.poll(POLL_MS):
                if fd == conn.fileno():
                    self._command(conn)
                elif ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    self._port_error(fd, poller)

    def _port_error(self, fd, poller):
        """A port's socket reports an error (its interface went down or away): clear it, count it,
        and after many in a row stop polling that port (no busy loop); the others go on."""
        import socket as _socket
        port = next((p for p in self.ports if p.fileno() == fd), None)
        if port is None:
            return
        self.port_errors[port.name] = self.port_errors.get(port.name, 0) + 1
        try:
            sock = getattr(port, "rx_sock", None)
            if sock is not None:
                sock.sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)   # reading clears it
        except OSError:
            pass
        if self.port_errors[port.name] == 1000:
            poller.unregister(fd)
            print(f"softdpu: warning: port {port.name} ({port.ifname}): its socket keeps failing; "
                  "no longer polled (its ring is still read between batches)", flush=True)

    def _command(self, conn):
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            self.stopping = True         # the supervisor is gone
            conn.close()
            return
        op, arg = msg
        if op == "stop":
            self.stopping = True
            return
        try:
            reply = ("ok", self._do(op, arg))
        except Exception as e:        # an error of one command must not stop the data plane
            reply = ("error", f"{type(e).__name__}: {e}" if not str(e).startswith(("<", "/")) else str(e))
        conn.send(reply)

    def _do(self, op, arg):
        dpu = self.dpu
        if op == "snapshot":
            return self.snapshot()
        if op in flow_mods.OPS:
            result = flow_mods.OPS[op](dpu.flows, **arg)
            dpu.steps = dpu._steps()        # conntrack may be new
            return result
        if op == "dump-flows":
            return flow_mods.dump(dpu.flows, **arg)
        if op == "dump-conntrack":
            ct = dpu.flows.conntrack
            return list(ct.dump(time.monotonic_ns())) if dpu.flows.uses_ct else []
        raise ValueError(f"unknown command {op!r}")

    def snapshot(self):
        """This worker's counters, as plain data the supervisor adds up."""
        st = self.dpu.stats
        flows = self.dpu.flows
        return {
            "worker": self.index,
            "counters": st.counters.copy(), "drops": st.drops.copy(), "malformed": st.malformed.copy(),
            "left": st.left, "lost_copies": st.lost_copies(), "extra_lines": st.extra_lines(),
            "rules": [flow_mods.rule_key(r) for r in flows.program.rules],
            "n_packets": flows.program.n_packets.copy(), "n_bytes": flows.program.n_bytes.copy(),
            "mtu_cut": self.dpu.port_mtu.cut if self.dpu.port_mtu is not None else 0,
            "ports": {p.name: {**p.counters_dict(), "socket_errors": self.port_errors.get(p.name, 0)}
                      for p in self.ports},
            "connections": flows.conntrack.table.counters()["entries"] if flows.uses_ct else None,
        }
