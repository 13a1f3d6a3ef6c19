"""Connection tracking (the stateful firewall's core), with Open vSwitch userspace semantics.

  table.py     the connection table: arrays, hashing, insert/delete, expiry sweep
  timeouts.py  OVS's default timeout policy, configurable
  extract.py   a packet's connection key from its bytes (ICMP errors: the embedded key)
  tcp.py       the TCP state machine and sequence-window tracking (OVS conntrack-tcp / pf)
  execute.py   ct_execute: one packet through ct() — the action interpreter's entry point
  dump.py      the table as `ovs-appctl dpctl/dump-conntrack` prints it

Integration (the ct() action, recirculation) is the action interpreter's: it
owns one `Conntrack` per pipeline and calls execute.ct_execute per packet with
`*conntrack.table.arrays`, the batch, `conntrack.out`, and the action's zone /
commit / force / exec(set_field) row; once per batch it calls
`table.ct_sweep(*arrays, now, budget)`.
"""
from softdpu.stages.conntrack.stage import Conntrack  # noqa: F401
from softdpu.stages.conntrack.table import CtTable  # noqa: F401
from softdpu.stages.conntrack.timeouts import CtTimeouts  # noqa: F401
