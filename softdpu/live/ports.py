"""Opening a pipeline's live ports for N workers.

afpacket ports get an RX and a TX socket per worker, all opened here, in the
supervisor, worker by worker, before the workers fork: so every port's fanout
group lists its members in the same (worker) order, and the kernel's symmetric
flow hash sends both directions of a connection to the same worker.
tap ports are created here (one queue: they need --workers 1).
Tunnel ports (vxlan, geneve) are logical: their packets use their underlay port.
"""
import os

from softdpu.config_tunnels import TUNNEL_TYPES
from softdpu.errors import ConfigError
from softdpu.ports.afpacket import TX_MODES, AfPacketPort, open_rx_socket, open_tx_socket

LIVE_TYPES = ("afpacket", "tap")


def check(cfg, workers):
    """A ConfigError unless every port of cfg can run live with `workers` workers."""
    for i, p in enumerate(cfg.ports):
        if p.type not in LIVE_TYPES and p.type not in TUNNEL_TYPES:
            raise ConfigError(cfg.path, f"port[{i}].type", f"a {p.type} port cannot run live (softdpu start): "
                              f"use afpacket or tap ports (pcap ports are for softdpu run)")
        if p.type == "afpacket" and p.options.get("tx", TX_MODES[0]) not in TX_MODES:
            raise ConfigError(cfg.path, f"port[{i}].tx", f'expected "ring" or "sendmmsg", got {p.options["tx"]!r}')
        if p.type == "tap" and workers > 1:
            raise ConfigError(cfg.path, f"port[{i}].type", "tap ports have one queue: run with --workers 1")
    if not any(p.type in LIVE_TYPES for p in cfg.ports):
        raise ConfigError(cfg.path, "port", "no afpacket or tap port to run live")


def open_ports(cfg, workers):
    """-> [[live port of worker w, in config order] for w in range(workers)]; closes what it
    opened on failure."""
    per_worker = [[] for _ in range(workers)]
    opened = []
    try:
        for w in range(workers):
            for k, p in enumerate(cfg.ports):
                if p.type == "afpacket":
                    ifname = p.options.get("interface", p.name)
                    group = (os.getpid() * 31 + k) & 0xFFFF if workers > 1 else None
                    rx = open_rx_socket(ifname, cfg.max_frame, group)
                    opened.append(rx)
                    tx = open_tx_socket(ifname, cfg.max_frame, p.options.get("tx", TX_MODES[0]))
                    opened.append(tx)
                    per_worker[w].append(AfPacketPort(p, (rx, tx), cfg.max_frame))
                elif p.type == "tap":
                    from softdpu.ports.tap import TapPort
                    tap = TapPort(p, cfg.max_frame)
                    opened.append(tap)
                    per_worker[w].append(tap)
    except BaseException:
        for s in opened:
            s.close()
        raise
    return per_worker
