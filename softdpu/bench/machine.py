"""The machine a benchmark ran on: CPU model, cores, frequency (for cycles per packet).

The frequency is the first "cpu MHz" of /proc/cpuinfo, else cpufreq's
scaling_cur_freq (kHz) of cpu0; None when neither can be read (then no
cycles per packet are printed).  A VM reports its host's nominal clock:
cycles per packet are ns/packet x that clock, not a counter reading.
"""
import os
import platform
from pathlib import Path


def cpu_mhz(cpuinfo="/proc/cpuinfo", cpufreq="/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"):
    """(MHz, source) or (None, None)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":", 1)[1]), str(cpuinfo)
    except (OSError, ValueError):
        pass
    try:
        return int(Path(cpufreq).read_text().strip()) / 1000.0, str(cpufreq)
    except (OSError, ValueError):
        return None, None


def cpu_model(cpuinfo="/proc/cpuinfo"):
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe():
    """{cpu, cores, mhz, mhz_source, python, numba, load_average}"""
    import numba

    mhz, src = cpu_mhz()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "mhz": mhz, "mhz_source": src,
            "python": platform.python_version(), "numba": numba.__version__, "load_average": load}
