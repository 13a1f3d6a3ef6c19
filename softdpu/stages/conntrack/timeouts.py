"""Conntrack timeouts: Open vSwitch userspace's default timeout policy, configurable.

The attribute names and defaults are OVS's (lib/conntrack-tp.c,
ct_dpif_netdev_tp_def, seconds), the same names `ovs-vsctl add-zone-tp`
takes.  A connection's expiry is refreshed to now + the timeout of its
current class whenever a packet updates it.  OVS maps its internal timeout
classes (CT_TM_*) onto these attributes; we keep that mapping:

  TM_TCP_FIRST_PACKET  tcp_syn_sent   30      the connection was just created
  TM_TCP_OPENING       tcp_syn_recv   30      either side not yet established
  TM_TCP_ESTABLISHED   tcp_established 86400
  TM_TCP_CLOSING       tcp_fin_wait   900     one side sent FIN
  TM_TCP_FIN_WAIT      tcp_time_wait  45      both sides sent FIN
  TM_TCP_CLOSED        tcp_close      30      both sides FIN-acked, or a RST
  TM_OTHER_FIRST       udp_first      60      UDP and other protocols: one packet
  TM_OTHER_MULTIPLE    udp_single     60      more packets, one direction only
  TM_OTHER_BIDIR       udp_multiple   30      both directions seen
  TM_ICMP_FIRST        icmp_first     60
  TM_ICMP_REPLY        icmp_reply     30

(OVS uses the "udp_*" attributes for every protocol it tracks as "other".)
"""
from dataclasses import dataclass, fields

import numpy as np

(TM_TCP_FIRST_PACKET, TM_TCP_OPENING, TM_TCP_ESTABLISHED, TM_TCP_CLOSING, TM_TCP_FIN_WAIT,
 TM_TCP_CLOSED, TM_OTHER_FIRST, TM_OTHER_MULTIPLE, TM_OTHER_BIDIR, TM_ICMP_FIRST,
 TM_ICMP_REPLY) = range(11)
N_TM = 11
TM_NAMES = ("TCP_FIRST_PACKET", "TCP_OPENING", "TCP_ESTABLISHED", "TCP_CLOSING", "TCP_FIN_WAIT",
            "TCP_CLOSED", "OTHER_FIRST", "OTHER_MULTIPLE", "OTHER_BIDIR", "ICMP_FIRST", "ICMP_REPLY")


@dataclass
class CtTimeouts:
    """Timeouts in seconds, by OVS timeout-policy attribute name."""
    tcp_syn_sent: float = 30
    tcp_syn_recv: float = 30
    tcp_established: float = 24 * 60 * 60
    tcp_fin_wait: float = 15 * 60
    tcp_time_wait: float = 45
    tcp_close: float = 30
    udp_first: float = 60
    udp_single: float = 60
    udp_multiple: float = 30
    icmp_first: float = 60
    icmp_reply: float = 30

    @classmethod
    def from_dict(cls, d):
        """From a {name: seconds} mapping (e.g. a pipeline file's table); unknown names are errors."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown conntrack timeout {bad[0]!r} (known: {', '.join(sorted(known))})")
        for k, v in d.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"conntrack timeout {k} must be a number >= 0, got {v!r}")
        return cls(**d)

    def as_ns(self):
        """int64[N_TM]: the timeout of each TM_* class in ns."""
        by_tm = (self.tcp_syn_sent, self.tcp_syn_recv, self.tcp_established, self.tcp_fin_wait,
                 self.tcp_time_wait, self.tcp_close, self.udp_first, self.udp_single,
                 self.udp_multiple, self.icmp_first, self.icmp_reply)
        return np.array([int(round(s * 1e9)) for s in by_tm], np.int64)
