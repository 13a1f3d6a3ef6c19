"""The infrastructure tax: how many host cores a load costs, from the measured ns/packet.

A load is a bit rate ("25G", "100Gbps", "400M") or a packet rate ("10Mpps",
"10M pps", "500kpps").  A bit rate is a line rate: every frame also takes
L1_OVERHEAD bytes on the wire (preamble 7 + start-of-frame delimiter 1 +
inter-frame gap 12), so a 64-byte frame is 84 bytes, and 10 Gbps of them is
14.88 Mpps (the frame size counted as RFC 2544 counts it, FCS included).

    pps   = bits_per_second / ((mean_frame + 20) * 8)
    cores = pps * ns_per_packet / 1e9

IMIX is the "simple IMIX" 7:4:1 of 64, 576 and 1500-byte frames (mean
354.33 bytes, 374.33 on the wire), the sequence IMIX_PATTERN repeats.
"""
import re

from softdpu.errors import SoftdpuError

L1_OVERHEAD = 20                      # preamble 7, SFD 1, inter-frame gap 12 (bytes per frame)
IMIX = ((64, 7), (576, 4), (1500, 1))  # (frame bytes, share)
# the order frames come in: the 12-frame cycle, big ones spread out
IMIX_PATTERN = (64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 64, 576)
SIZES = ("64", "512", "1400", "imix")

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_LOAD = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgt]?)\s*(bps|b/s|pps|p/s)?\s*$", re.I)


def imix_mean():
    """Mean frame size of IMIX, bytes."""
    return sum(size * n for size, n in IMIX) / sum(n for _, n in IMIX)


def parse_load(text):
    """"25G" -> ("bps", 25e9); "10Mpps" / "10M pps" -> ("pps", 1e7).  A bare number with no
    unit is bits per second.  SoftdpuError naming --tax for anything else."""
    m = _LOAD.match(text or "")
    if not m:
        raise SoftdpuError(f"--tax: expected a load such as 25G, 100Gbps or 10Mpps, got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise SoftdpuError(f"--tax: the load must be more than 0, got {text!r}")
    unit = "pps" if (m.group(3) or "").lower() in ("pps", "p/s") else "bps"
    return unit, value


def load_pps(load, mean_frame):
    """Packets per second of a load (unit, value) of frames of mean_frame bytes (L1: +20 B each)."""
    unit, value = load
    if unit == "pps":
        return value
    if mean_frame <= 0:
        raise ValueError(f"mean frame size must be positive, got {mean_frame}")
    return value / ((mean_frame + L1_OVERHEAD) * 8)


def cores(pps, ns_per_packet):
    """Host cores needed to process pps packets per second at ns_per_packet each."""
    return pps * ns_per_packet / 1e9


def describe_load(load):
    unit, value = load
    for div, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, "")):
        if value >= div:
            v = value / div
            break
    num = f"{v:g}"
    return f"{num} {prefix}pps" if unit == "pps" else f"{num} {prefix}bps"


def tax(load, mean_frame, ns_median, ns_min=None, ns_max=None):
    """{load, pps, cores, cores_min, cores_max, ...} for a load over traffic of mean_frame bytes."""
    pps = load_pps(load, mean_frame)
    out = {"load": describe_load(load), "load_unit": load[0], "load_value": load[1],
           "mean_frame": round(mean_frame, 2), "mean_l1_frame": round(mean_frame + L1_OVERHEAD, 2),
           "mpps": round(pps / 1e6, 4), "ns_per_packet": ns_median,
           "cores": round(cores(pps, ns_median), 3)}
    if ns_min is not None:
        out["cores_min"] = round(cores(pps, ns_min), 3)   # from the fastest run
    if ns_max is not None:
        out["cores_max"] = round(cores(pps, ns_max), 3)
    return out
