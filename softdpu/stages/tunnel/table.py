"""The tunnel ports and static neighbours of a pipeline, as int64 arrays for the kernels.

    tunnels int64[T, COLS]   one row per tunnel port (columns T_*; addresses as
                             (hi, lo) 64-bit halves, IPv4 in lo)
    port_tunnel int64[65536] OpenFlow port -> tunnel row, -1 for other ports
    underlay int64[65536]    OpenFlow port -> 1 when a tunnel uses it
    neighbours int64[N, 6]   (family, address hi, address lo, MAC, last ARP/NS ns, known since): the static
                             next hops, then learned ones (neighbours.py); nstate (used, static)
    resolve int64[65536]     OpenFlow port -> 1 when it answers and asks ARP/ND (`resolve`)
    geneve_options int64[G, 4]  (class, type, data length, n): Geneve options <-> tun_metadataN

A VTEP has few peers, so neighbours are searched linearly.
"""
import ipaddress

import numpy as np

from softdpu.config_tunnels import TUNNEL_TYPES

DYNAMIC = 256      # learned neighbours an underlay with `resolve` may keep

KIND_VXLAN, KIND_GENEVE = 1, 2
(T_OFPORT, T_KIND, T_UNDERLAY, T_FAMILY, T_LOCAL_HI, T_LOCAL_LO, T_REMOTE_HI, T_REMOTE_LO,
 T_REMOTE_FLOW, T_KEY, T_KEY_FLOW, T_DST_PORT, T_TTL, T_TOS, T_DF, T_CSUM, T_SRC_MAC, T_MTU) = range(18)
COLS = 18
TOS_INHERIT = -1


def _i64(v):
    return int(np.uint64(v).view(np.int64))


class TunnelTable:
    def __init__(self, ports, neighbors, geneve_options=()):
        by_name = {p.name: p for p in ports}
        rows = [p for p in ports if p.type in TUNNEL_TYPES]
        self.ports = rows
        self.tunnels = np.zeros((max(len(rows), 1), COLS), np.int64)
        self.port_tunnel = np.full(65536, -1, np.int64)
        self.underlay = np.zeros(65536, np.int64)
        for t, p in enumerate(rows):
            o = p.options
            under = by_name[o["underlay"]]
            row = self.tunnels[t]
            row[T_OFPORT] = p.ofport
            row[T_KIND] = KIND_VXLAN if p.type == "vxlan" else KIND_GENEVE
            row[T_UNDERLAY] = under.ofport
            local = o["local_ip"]
            row[T_FAMILY] = local.version
            row[T_LOCAL_HI], row[T_LOCAL_LO] = _i64(int(local) >> 64), _i64(int(local) & (2**64 - 1))
            if o["remote_ip"] == "flow":
                row[T_REMOTE_FLOW] = 1
            else:
                r = int(o["remote_ip"])
                row[T_REMOTE_HI], row[T_REMOTE_LO] = _i64(r >> 64), _i64(r & (2**64 - 1))
            if o["key"] == "flow":
                row[T_KEY_FLOW] = 1
            else:
                row[T_KEY] = o["key"]
            row[T_DST_PORT] = o["dst_port"]
            row[T_TTL] = o["ttl"]
            row[T_TOS] = TOS_INHERIT if o["tos"] == "inherit" else o["tos"]
            row[T_DF] = int(o["df_default"])
            row[T_CSUM] = int(o["csum"])
            row[T_SRC_MAC] = under.options["mac"]
            row[T_MTU] = under.options["mtu"]
            self.port_tunnel[p.ofport] = t
            self.underlay[under.ofport] = 1
        self.count = len(rows)
        self.resolve = np.zeros(65536, np.int64)
        for p in ports:
            if p.type not in TUNNEL_TYPES and p.options.get("resolve"):
                self.resolve[p.ofport] = 1
        dynamic = DYNAMIC if self.resolve.any() else 0
        self.neighbours = np.zeros((max(len(neighbors) + dynamic, 1), 6), np.int64)
        for k, (ip, mac) in enumerate(neighbors.items()):
            v = int(ip)
            self.neighbours[k] = (ip.version, _i64(v >> 64), _i64(v & (2**64 - 1)), mac, 0, -(1 << 62))
        self.nstate = np.array([len(neighbors), len(neighbors)], np.int64)
        # Geneve options <-> tun_metadataN, in field order (the order options are sent in, as OVS)
        opts = sorted(geneve_options, key=lambda o: o[3])
        self.geneve_options = np.zeros((max(len(opts), 1), 4), np.int64)
        for k, o in enumerate(opts):
            self.geneve_options[k] = o          # (class, type, len, tun_metadata index)
        self.n_geneve_options = len(opts)

    def __bool__(self):
        return self.count > 0


def address(family, hi, lo):
    """Back to an ipaddress address (for tests and messages)."""
    v = (int(np.int64(hi).view(np.uint64)) << 64) | int(np.int64(lo).view(np.uint64))
    return ipaddress.IPv4Address(v) if family == 4 else ipaddress.IPv6Address(v)
