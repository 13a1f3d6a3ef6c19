"""DPDK testpmd forwarding with no processing: the I/O floor softdpu is compared against.

    python bench/testpmd.py --pcap IN.pcap [--seconds 5] [--mode file|memory|null]

dpdk-testpmd (Debian package dpdk-dev) with EAL `--no-huge --no-pci --legacy-mem
-m 1024 --file-prefix=bench-testpmd-PID`, lcores 0 (main) and 1 (the forwarding
core), io forwarding (no processing: each burst received is sent as is), one
net_pcap vdev:

  file    rx_pcap=IN, tx_pcap=OUT (a temp file): libpcap reads the capture and
          writes one, as the issue measured (the capture is read once; IN should
          hold a few million packets)
  memory  rx_pcap=IN, infinite_rx=1, tx_pcap=/dev/null: IN replayed from memory,
          written through libpcap's dump routine to /dev/null
  null    rx_pcap=IN, infinite_rx=1 into a second vdev net_null (no-rx=1): the
          forwarding loop alone

Mpps: testpmd's own per-period throughput lines (--stats-period 1, "Rx-pps") while
it ran, the median of the readings after the first (for `file`, whose 4M packets
last a second or two so that its readings are mostly partial periods, the highest).  mpps_cpu (null, memory): all
packets forwarded / the time the forwarding thread was on a CPU (schedstat), the
figure for a shared machine.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path

TESTPMD = "dpdk-testpmd"


def available():
    return None if shutil.which(TESTPMD) else "dpdk-testpmd missing (apt-get install dpdk-dev)"


def run_testpmd(pcap, seconds=5.0, mode="memory"):
    """{mode, mpps, readings}"""
    why = available()
    if why:
        raise RuntimeError(why)
    prefix = f"bench-testpmd-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-testpmd-") as d:
        pcap = Path(pcap).resolve()
        if mode == "file":
            vdevs = [f"net_pcap0,rx_pcap={pcap},tx_pcap={Path(d) / 'out.pcap'}"]
        elif mode == "memory":
            vdevs = [f"net_pcap0,rx_pcap={pcap},infinite_rx=1,tx_pcap=/dev/null"]
        elif mode == "null":
            vdevs = [f"net_pcap0,rx_pcap={pcap},infinite_rx=1", "net_null0,no-rx=1"]
        else:
            raise ValueError(f"mode: file, memory or null, not {mode!r}")
        argv = [TESTPMD, "--no-huge", "--no-pci", "--legacy-mem", "-m", "1024", f"--file-prefix={prefix}",
                "-l", "0,1"]
        for v in vdevs:
            argv += ["--vdev", v]
        argv += ["--", "--stats-period", "1", "--total-num-mbufs=200000", "--forward-mode=io"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        cpu_ns = None
        try:
            out, _ = proc.communicate(timeout=seconds + 1.5)
        except subprocess.TimeoutExpired:
            cpu_ns = _worker_cpu_ns(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)         # testpmd prints its totals and exits on SIGINT
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate(timeout=20)
        finally:
            shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    # one "Rx-pps" per port per period; port 0 is the one that receives
    readings = [int(x) for x in re.findall(r"Rx-pps:\s+(\d+)", out)]
    if mode == "null":
        readings = readings[0::2]
    readings = [r for r in readings[1:] if r > 0]
    if not readings:
        raise RuntimeError(f"testpmd gave no throughput readings:\n{out[-2000:]}")
    # file: the capture lasts a second or two, its first and last readings are partial: the best one
    rate = max(readings) if mode == "file" else statistics.median(readings)
    res = {"mode": mode, "mpps": round(rate / 1e6, 3),
           "readings_mpps": [round(r / 1e6, 2) for r in readings]}
    total = re.findall(r"Accumulated forward statistics.*?RX-packets:\s*(\d+)", out, re.S)
    if cpu_ns and total and mode != "file":      # `file` polls on, idle, after the capture ends
        res["worker_cpu_seconds"] = round(cpu_ns / 1e9, 3)
        res["mpps_cpu"] = round(int(total[-1]) / cpu_ns * 1e3, 3)
    return res


def _worker_cpu_ns(pid):
    """Nanoseconds testpmd's forwarding lcore thread has been on a CPU (schedstat), or None."""
    total = None
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            if "worker" in (task / "comm").read_text():
                total = (total or 0) + int((task / "schedstat").read_text().split()[0])
    except OSError:
        return total
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcap", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--mode", choices=("file", "memory", "null"), default="memory")
    args = ap.parse_args(argv)
    print(json.dumps(run_testpmd(args.pcap, args.seconds, args.mode), indent=2))


if __name__ == "__main__":
    main()
