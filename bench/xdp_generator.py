"""An in-kernel traffic generator for veths: BPF_PROG_TEST_RUN in XDP live-frames mode.

    python bench/xdp_generator.py IFNAME [--size 64] [--flows 64] [--seconds 2]

The kernel (5.18 and later, BPF_F_TEST_XDP_LIVE_FRAMES) runs a tiny XDP program
over copies of one frame, `repeat` times per call, and transmits every frame the
program returns XDP_TX for out of IFNAME -- no system call, socket buffer or copy
from user space per packet, so the generator is not the bottleneck of the path
it feeds (the approach of xdp-trafgen from xdp-tools).  The program is ten
hand-assembled BPF instructions:

    data = xdp->data; if data + 42 > xdp->data_end: goto tx   (Eth + IPv4 + UDP there)
    data[35] = bpf_get_prandom_u32() & (flows - 1)   (the low byte of the UDP source
                                                     port: one of `flows` 5-tuples)
    tx: return XDP_TX

The frame's UDP checksum is 0 (none, valid for IPv4), so the rewrite keeps it
valid.  On a veth, XDP_TX hands the frame to the peer's NAPI receive queue, so
the PEER must have NAPI on: GRO enabled (`ethtool -K PEER gro on`) or an XDP
program of its own.  Its receive work (building the skb, AF_PACKET taps, the
bridge) then runs in NAPI on the generator's CPU, 64 frames per poll.

The frames it sends show in IFNAME's tx_packets; what the peer could not take
(its ring full) in IFNAME's tx_dropped.
"""
import argparse
import ctypes
import os
import platform
import signal
import socket
import struct
import sys
import time

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())     # the bpf(2) system call
BPF_PROG_LOAD, BPF_PROG_TEST_RUN = 5, 10
BPF_PROG_TYPE_XDP = 6
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
XDP_TX = 3
BPF_FUNC_GET_PRANDOM_U32 = 7
UDP_SPORT_LOW = 14 + 20 + 1           # offset of the UDP source port's low byte
REPEAT = 1 << 16                      # frames per call (a signal ends a call early)


def _insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(flows):
    """The XDP program's instructions (bytes): a random one of `flows` UDP source ports, XDP_TX."""
    if flows < 1 or flows > 256 or flows & (flows - 1):
        raise ValueError(f"flows must be a power of two from 1 to 256, not {flows}")
    return b"".join([
        _insn(0x61, 6, 1, 0),                    # r6 = *(u32 *)(r1 + 0)    data
        _insn(0x61, 3, 1, 4),                    # r3 = *(u32 *)(r1 + 4)    data_end
        _insn(0xbf, 4, 6),                       # r4 = r6
        _insn(0x07, 4, imm=42),                  # r4 += 42
        _insn(0x2d, 4, 3, off=3),                # if r4 > r3 goto tx (+3)
        _insn(0x85, imm=BPF_FUNC_GET_PRANDOM_U32),   # r0 = bpf_get_prandom_u32()
        _insn(0x57, 0, imm=flows - 1),           # r0 &= flows - 1
        _insn(0x73, 6, 0, UDP_SPORT_LOW),        # *(u8 *)(r6 + 35) = r0
        _insn(0xb7, 0, imm=XDP_TX),              # tx: r0 = XDP_TX
        _insn(0x95),                             # exit
    ])


class Generator:
    """One loaded program and one frame, sent out of `ifname` (in this process's namespace)."""

    def __init__(self, ifname, frame, flows=64):
        if SYS_BPF is None:
            raise OSError(f"bpf(2): system call number unknown on {platform.machine()}")
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.ifindex = socket.if_nametoindex(ifname)
        self.frame = ctypes.create_string_buffer(bytes(frame), len(frame))
        self._insns = ctypes.create_string_buffer(program(flows))
        self._license = ctypes.create_string_buffer(b"GPL")
        self._log = ctypes.create_string_buffer(65536)
        attr = ctypes.create_string_buffer(128)
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_XDP, len(self._insns.raw) // 8,
                         ctypes.addressof(self._insns), ctypes.addressof(self._license),
                         1, len(self._log), ctypes.addressof(self._log))
        self.prog_fd = self._bpf(BPF_PROG_LOAD, attr, "load the XDP program")
        self._ctx = ctypes.create_string_buffer(struct.pack("<6I", 0, len(frame), 0, self.ifindex, 0, 0))
        self._run = ctypes.create_string_buffer(80)
        struct.pack_into("<IIIIQQIIIIQQIII", self._run, 0, self.prog_fd, 0, len(frame), 0,
                         ctypes.addressof(self.frame), 0, REPEAT, 0, len(self._ctx.raw), 0,
                         ctypes.addressof(self._ctx), 0, BPF_F_TEST_XDP_LIVE_FRAMES, 0, 64)

    def _bpf(self, cmd, attr, what):
        r = self.libc.syscall(SYS_BPF, cmd, attr, len(attr))
        if r < 0:
            err = ctypes.get_errno()
            log = self._log.value.decode(errors="replace").strip() if cmd == BPF_PROG_LOAD else ""
            raise OSError(err, f"bpf: cannot {what}: {os.strerror(err)}" + (f"\n{log}" if log else ""))
        return r

    def send(self):
        """One call: REPEAT frames (fewer if a signal arrives: EINTR is not an error)."""
        r = self.libc.syscall(SYS_BPF, BPF_PROG_TEST_RUN, self._run, len(self._run))
        if r < 0 and ctypes.get_errno() != 4:
            err = ctypes.get_errno()
            raise OSError(err, f"bpf: XDP live-frames test run on ifindex {self.ifindex}: {os.strerror(err)}")

    def close(self):
        os.close(self.prog_fd)


def udp_frame(size, dst_mac, src_mac, sport=1024):
    """A `size`-byte Ethernet/IPv4/UDP frame with no UDP checksum (0), padded with zeros."""
    from scapy.all import IP, UDP, Ether
    f = bytes(Ether(dst=dst_mac, src=src_mac) / IP(src="10.1.0.1", dst="10.2.0.1") /
              UDP(sport=sport, dport=9, chksum=0))
    if size < len(f):
        raise ValueError(f"size {size} is smaller than the {len(f)}-byte headers")
    return f + bytes(size - len(f))


def run(ifname, frame, flows, seconds, ready=lambda: None):
    """Send until `seconds` pass or SIGTERM arrives."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    gen = Generator(ifname, frame, flows)
    ready()
    end = time.monotonic() + seconds
    try:
        while not stop and time.monotonic() < end:
            gen.send()
    finally:
        gen.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ifname")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--flows", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--dst", default="02:00:00:00:00:99")
    ap.add_argument("--src", default="02:00:00:00:00:01")
    args = ap.parse_args(argv)
    run(args.ifname, udp_frame(args.size, args.dst, args.src), args.flows, args.seconds,
        ready=lambda: print("ready", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
