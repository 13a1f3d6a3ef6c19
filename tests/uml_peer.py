"""A Linux kernel as an IPsec peer: Debian's user-mode-linux (/usr/bin/linux.uml) booted on a veth.

The host's own kernel may have no ESP or no AES-GCM; a UML kernel (6.1, its esp4, xfrm_user
and AEAD modules under /usr/lib/uml/modules/VERSION) is an ordinary process that runs a full
network stack with xfrm:

    [namespace ns] linux.uml ... vec0:transport=raw,ifname=DEV   (a raw socket on DEV)
        guest: vec0 = DEV's wire, `ip xfrm state/policy` from the softdpu pipeline's SAs

The root file system is the host's, read-only (hostfs, `ro`): the guest runs this test's
init script and python, writes only to tmpfs, prints its results on its console (our pipe,
lines starting "GUEST-") and powers off.  Everything is bounded: the process group is killed
on exit, its umid directory is in the test's temporary directory.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

UML = "/usr/bin/linux.uml"
MODULES = Path("/usr/lib/uml/modules")
XFRM_AEAD = {                    # softdpu aead -> ip xfrm's algorithm name (ICV: 128 bits)
    "aes-gcm-128": "rfc4106(gcm(aes))",
    "aes-gcm-256": "rfc4106(gcm(aes))",
    "chacha20-poly1305": "rfc7539esp(chacha20,poly1305)",
}
GUEST_MODULES = ["xfrm_user", "esp4"]      # the rest the kernel loads itself


def require_uml():
    """(linux.uml, its modules directory); skip without them, except under CI=true (fail)."""
    why, modules = None, None
    if not os.access(UML, os.X_OK):
        why = f"{UML} is not installed (apt-get install user-mode-linux)"
    else:
        out = subprocess.run([UML, "--version"], capture_output=True, text=True, timeout=30).stdout
        version = out.split()[-1].lstrip("v") if out.split() else "?"
        modules = MODULES / version                    # the guest's `uname -r`
        if not (modules / "modules.dep").is_file():
            why = f"{UML} (version {version!r}) has no modules under {modules}"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/run must install user-mode-linux")
        pytest.skip(why)
    return UML, modules


def xfrm_state(sa, src, dst, key=None, oseq=None, sel=None, iseq=None):
    """`ip xfrm state add` for a softdpu SA (config_esp.SA) as the kernel sees it: src -> dst;
    oseq: the last sequence number sent (the next is oseq + 1), for an outbound state; sel:
    (source prefix, destination prefix) of the packets it carries (the kernel's default is any
    address of the outer family: an IPv4-in-IPv6 tunnel needs it); iseq: for an inbound state,
    the top of its replay window to start from (the last sequence number "received")."""
    key = sa.key + sa.salt if key is None else key
    cmd = (f"ip xfrm state add src {src} dst {dst} proto esp spi {sa.spi:#x} mode {sa.mode} "
           f"aead '{XFRM_AEAD[sa.aead]}' 0x{key.hex()} 128")
    if sa.esn:
        cmd += " flag esn replay-window 1024"
    else:
        cmd += " replay-window 64"
    if sa.natt:
        cmd += f" encap espinudp {sa.natt_sport} {sa.natt_dport} 0.0.0.0"   # (an "in" SA's: 4500, 4500)
    if sel is not None:
        cmd += f" sel src {sel[0]} dst {sel[1]}"
    if oseq is not None:
        cmd += f" replay-oseq {oseq & 0xFFFFFFFF:#x} replay-oseq-hi {oseq >> 32:#x}"
    if iseq is not None:
        cmd += f" replay-seq {iseq & 0xFFFFFFFF:#x} replay-seq-hi {iseq >> 32:#x}"
    return cmd


def xfrm_policy(direction, src_net, dst_net, sa, outer_src, outer_dst, selector=""):
    """`ip xfrm policy add` with a template of sa (selector: e.g. "proto udp dport 4789")."""
    return (f"ip xfrm policy add src {src_net} dst {dst_net} {selector} dir {direction} "
            f"tmpl src {outer_src} dst {outer_dst} proto esp spi {sa.spi:#x} mode {sa.mode}")


GUEST_PY = r'''
"""In the UML guest: UDP echoes and ICMP echoes to the site-A host through the tunnel, and a
UDP echo server the test talks to; prints GUEST-* lines.  The UDP part ends when every datagram
is answered or refused by the kernel's ESP integrity check, on "bye", after IDLE_S without a
datagram sent or answered, or at the deadline; with
serve (argv[5] == "1") the echo server then waits for "bye" (bounded by the deadline)."""
import os, select, socket, struct, sys, threading, time

peer, local, count, deadline_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
wait_bye = sys.argv[5] == "1"
deadline = time.monotonic() + deadline_s
IDLE_S = 60.0
bye = threading.Event()
served = [0]


def icv_failures():
    for line in open("/proc/net/xfrm_stat"):
        name, value = line.split()
        if name == "XfrmInStateProtoError":
            return int(value)
    return 0


def echo_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((local, 7001))
    while not bye.is_set() and time.monotonic() < deadline:
        if select.select([s], [], [], 0.1)[0]:
            data, addr = s.recvfrom(2048)
            if data == b"bye":
                bye.set()
            else:
                served[0] += 1
                s.sendto(data, addr)


def datagram(k):
    """Datagram k: 20 to 1220 bytes (every ESP padding length), its bytes depending on k."""
    return b"softdpu-kernel %04d " % k + bytes((k + 7 * j) & 255 for j in range((k * 37) % 1201))


threading.Thread(target=echo_server, daemon=True).start()
natt = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # what an IKE daemon holds: ESP in UDP 4500
natt.bind(("0.0.0.0", 4500))                               # to the kernel's xfrm (RFC 3948)
natt.setsockopt(socket.IPPROTO_UDP, 100, 2)                # UDP_ENCAP, UDP_ENCAP_ESPINUDP
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((local, 0))
got, sent = set(), 0
next_send = last = time.monotonic()
while time.monotonic() < min(deadline, last + IDLE_S) and not bye.is_set():
    if sent < count and time.monotonic() >= next_send:
        u.sendto(datagram(sent), (peer, 7000))
        sent += 1
        next_send = last = time.monotonic() + 0.05
    if select.select([u], [], [], 0.02)[0]:
        data = u.recv(4096)
        if data.startswith(b"softdpu-kernel ") and data[15:19].isdigit() and data == datagram(int(data[15:19])):
            got.add(int(data[15:19]))
            last = time.monotonic()
    if sent == count and len(got) + icv_failures() >= count:
        break
print(f"GUEST-UDP got {len(got)} of {sent} icv_failures {icv_failures()}", flush=True)

ping = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident, replies = os.getpid() & 0xFFFF, set()
if got:                                   # the path works: ICMP echoes too
    for seq in range(count):
        payload = b"softdpu %04d" % seq
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
        csum = sum(struct.unpack(f"!{len(body) // 2}H", body))
        csum = (csum >> 16) + (csum & 0xFFFF)
        csum = ~(csum + (csum >> 16)) & 0xFFFF
        ping.sendto(body[:2] + struct.pack("!H", csum) + body[4:], (peer, 0))
        end = time.monotonic() + 1.0
        while time.monotonic() < end and seq not in replies:
            if select.select([ping], [], [], 0.05)[0]:
                pkt = ping.recv(2048)
                icmp = pkt[(pkt[0] & 15) * 4:]
                t, _, _, i, s = struct.unpack("!BBHHH", icmp[:8])
                if t == 0 and i == ident and icmp[8:] == b"softdpu %04d" % s:
                    replies.add(s)
print(f"GUEST-ICMP got {len(replies)} of {count if got else 0}", flush=True)
print("GUEST-SERVING", flush=True)
if wait_bye:
    bye.wait(max(0.0, deadline - time.monotonic()))
print(f"GUEST-SERVED {served[0]} bye {bye.is_set()}", flush=True)
'''


class UmlPeer:
    """linux.uml in namespace ns on interface dev; `commands` (shell) set the guest up, then the
    guest program runs (GUEST_PY).  A context manager: on exit the UML is killed if still running."""

    def __init__(self, ns, dev, mac, workdir, commands, peer, local, count, deadline_s, serve=True, mem="256M"):
        self.uml, modules = require_uml()
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "umid").mkdir(exist_ok=True)
        (self.dir / "guest.py").write_text(GUEST_PY)
        init = self.dir / "init.sh"
        init.write_text("\n".join([
            "#!/bin/bash",
            "export PATH=/usr/sbin:/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1",
            "mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t tmpfs tmpfs /run",
            # modprobe looks in DIR/lib/modules/$(uname -r): point it at the UML modules, for the
            # kernel's own requests too (crypto templates, drbg for seqiv's IVs, ...)
            f"mkdir -p /run/m/lib && ln -s {modules.parent} /run/m/lib/modules",
            "printf '#!/bin/sh\\nexec /usr/sbin/modprobe -d /run/m \"$@\"\\n' > /run/modprobe",
            "chmod 755 /run/modprobe && echo /run/modprobe > /proc/sys/kernel/modprobe",
            f"for m in {' '.join(GUEST_MODULES)}; do",
            "  modprobe -d /run/m $m || echo \"GUEST-ERROR modprobe $m\"",
            "done",
            "ip link set lo up",
            *(f"{c} || {{ echo 'GUEST-ERROR failed: {c.replace(chr(39), '')}'; poweroff -f; }}" for c in commands),
            "echo GUEST-READY",
            f"{sys.executable} -S {self.dir / 'guest.py'} {peer} {local} {count} {deadline_s} {int(serve)}",
            "echo GUEST-STATE",
            "ip -s xfrm state",
            "cat /proc/net/xfrm_stat",
            "echo GUEST-END",
            "poweroff -f",
            "",
        ]))
        init.chmod(0o755)
        cmd = ["ip", "netns", "exec", ns, self.uml, f"mem={mem}", "rootfstype=hostfs", "rootflags=/", "ro",
               f"init={init}", f"uml_dir={self.dir / 'umid'}", "umid=softdpu-peer", "con=null",
               "con0=fd:0,fd:1", "quiet", f"vec0:transport=raw,ifname={dev},mac={mac}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\r\n"))

    @property
    def output(self):
        return "\n".join(self.lines)

    def wait_line(self, prefix, timeout):
        """The first console line starting with prefix; AssertionError if UML ends or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
                if line.startswith("GUEST-ERROR"):
                    raise AssertionError(f"UML guest: {line}\n{self.output}")
            if self.proc.poll() is not None:
                self._reader.join(5)
                if not any(line.startswith(prefix) for line in self.lines):
                    raise AssertionError(f"UML exited ({self.proc.returncode}) before {prefix!r}:\n{self.output}")
            elif time.monotonic() > deadline:
                raise TimeoutError(f"no {prefix!r} from UML in {timeout} s:\n{self.output}")
            else:
                time.sleep(0.05)

    def wait_exit(self, timeout):
        self.proc.wait(timeout)
        self._reader.join(5)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)     # UML's own helper processes too
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._reader.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False
