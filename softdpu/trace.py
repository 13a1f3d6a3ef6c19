"""`softdpu trace`: why did this packet go there — as `ovs-appctl ofproto/trace` tells it.

    tracer = Tracer(dpu, packets={3, 7})   # 1-based numbers in capture order; None: all
    dpu.tracer = tracer
    dpu.run_pcaps(...)                     # every packet runs; the chosen ones are traced
    for t in tracer.traces: print("\\n".join(format_text(t)))

The Tracer sets M_TRACED on the chosen packets after the parser; the flow
kernels then write trace records for them (stages/flows/trace_records.py)
while forwarding them, so the story told is the one that happened, with the
MAC table (and later conntrack) as the packets before left it.  A PacketTrace
holds the parsed key, the records and the outcome; format_text prints it in
ofproto/trace's shape:

    Flow: tcp,in_port=1,vlan_tci=0x0000,dl_src=...,tp_dst=80,tcp_flags=syn

    bridge("acl")
    -------------
     0. ip,nw_dst=10.0.0.2, priority 100  # pipelines/acl.flows:7
        mod_nw_src:192.0.2.1
         -> nw_src is now 192.0.2.1
        resubmit(,1)
         1. tcp, priority 5  # pipelines/acl.flows:12
                output:2
                 -> output to p2 (port 2)

    Final flow: tcp,in_port=1,...,nw_src=192.0.2.1,...
    Datapath actions: set(ipv4(src=192.0.2.1)),2
    Result: sent to p2

A packet number counts packets in the order the pipeline takes them (with
several inputs, merged by timestamp): with one input it is Wireshark's frame
number.
"""
import datetime
import ipaddress
from dataclasses import dataclass, field

import numpy as np

from softdpu import drops
from softdpu.batch import (M_DROP, M_IN_PORT, M_LEN, M_ORIGIN, M_PARSE_ERR, M_TRACED, M_TS,
                           M_WIRE_LEN)
from softdpu.dump_flows import _shown, format_match
from softdpu.trace_flow import (_ct_state_text, _field_value, _first_fragment_ports, _get, _nd_text,
                                _outer_text, _put_ports, _set_pieces, changes, flow_text)
from softdpu.stages.esp.jobs import J_ROW, J_SA, J_SEQ
from softdpu.stages.flows import trace_records as tr
from softdpu.stages.flows.action_syntax import GUARD

GUARD_NAMES = {code: name for name, code in GUARD.items()}
GUARD_TEXT = {"ipv4_or_arp": "an IPv4 or ARP header", "arp": "an ARP header", "ipv6": "an IPv6 header",
              "ip_any": "an IP header", "ip_any_or_arp": "an IP or ARP header", "tcp": "a TCP header",
              "udp": "a UDP header", "sctp": "an SCTP header", "l4": "a TCP/UDP/SCTP/ICMP header",
              "icmp_any": "an ICMP header", "icmpv6": "an ICMPv6 header", "l4_ports": "L4 ports (or is a later fragment)"}
M64 = (1 << 64) - 1


@dataclass
class PacketTrace:
    number: int                  # 1-based, in the order the pipeline took the packets
    in_port: int
    port_name: str
    ts_ns: int
    length: int
    key: np.ndarray              # the parsed key (uint64[key.KEY_WORDS]) the flow tables saw
    parse_error: int             # drops code of a malformed packet, 0 if well formed
    records: list = field(default_factory=list)   # (kind, a, b, c, d, e) in order
    final_key: np.ndarray = None
    drop: int = 0                # drops code when nothing left, else 0
    records_lost: int = 0
    dropped_before_flows: int = 0  # drops code when the packet never reached the flow tables
    first_fragment_ports: tuple = None  # shown in the flow (the key holds 0s, as OVS looks them up)
    nd: str = ""                 # ",nd_target=...,nd_sll=...,nd_tll=..." of a neighbour solicitation/advert
    sent: list = field(default_factory=list)    # ofports its copies really went to, in tx order
    decap: str = ""              # how a tunnel port took it off its underlay, if it did
    wire: list = None            # after encapsulation: [(ofport, bytes, outer header text or "")]
    esp: str = ""                # how ESP decrypted it before the flow tables, if it did
    esp_out: list = None         # after esp-out: [(ofport, bytes, "Encrypted ..." text or "")] sent


class Tracer:
    """Marks chosen packets for tracing and collects their PacketTraces (Dpu.tracer)."""

    def __init__(self, dpu, packets=None):
        self.dpu = dpu
        self.wanted = None if packets is None else np.array(sorted(packets), np.int64)
        self.seen = 0
        self.traces = []
        self._pending = []
        self._names = {p.ofport: p.name for p in dpu.ports}
        self._vteps = {}          # underlay ofport -> {(local_ip, dst_port)} its tunnels send from
        by_name = {p.name: p for p in dpu.ports}
        for p in dpu.tunnels.table.ports:
            under = by_name[p.options["underlay"]].ofport
            self._vteps.setdefault(under, set()).add((p.options["local_ip"], p.options["dst_port"]))

    @property
    def done(self):
        """Every chosen packet has been traced (there is no need to read further)."""
        return self.wanted is not None and (len(self.wanted) == 0 or self.seen >= self.wanted[-1])

    def after_parse(self, batch):
        """Before the tunnel stage may rewrite them: which rows are traced, and what they were."""
        n = batch.n
        self._numbers = np.arange(self.seen + 1, self.seen + n + 1)
        self.seen += n
        self._rows = (np.arange(n) if self.wanted is None
                      else np.flatnonzero(np.isin(self._numbers, self.wanted)))
        self._nd = {int(i): _nd_text(batch, i) for i in self._rows}

    def before_flows(self, batch):
        numbers, rows = self._numbers, self._rows
        self.dpu.flows.take_trace()                       # start from an empty buffer
        batch.meta[rows, M_TRACED] = 1
        m = batch.meta
        self._pending = [PacketTrace(int(numbers[i]), int(m[i, M_IN_PORT]),
                                     self._names.get(int(m[i, M_IN_PORT]), "?"), int(m[i, M_TS]),
                                     int(m[i, M_WIRE_LEN]), batch.key[i].copy(), int(m[i, M_PARSE_ERR]))
                         for i in rows]
        esp = getattr(self, "_esp_in", {})
        for i, t in zip(rows, self._pending):
            t.esp = esp.get(int(i), "")
            t.decap = self._decap_text(batch, i)
            t.first_fragment_ports = _first_fragment_ports(batch, i)
            t.nd = self._nd[int(i)]
        self._dropped_before = {int(i): int(m[i, M_DROP]) for i in rows}

    def after_esp_in(self, batch):
        """After esp-in: which traced rows ESP decrypted, with which SA (from the stage's job list)."""
        esp = self.dpu.esp
        jobs = esp.jobs
        self._esp_in = {}
        wanted = set(int(i) for i in self._rows)
        for j in range(jobs.n):
            row = int(jobs.jobs[j, J_ROW])
            if row in wanted and batch.meta[row, M_DROP] == 0:
                sa = esp.table.sas[int(jobs.jobs[j, J_SA])]
                self._esp_in[row] = (f"Decrypted by ESP SA {sa.name} (spi {sa.spi:#x}, {sa.mode} mode, {sa.aead}, "
                                     f"seq {int(jobs.jobs[j, J_SEQ])}): a {int(batch.meta[row, M_LEN])}-byte frame")

    def after_esp_out(self, batch):
        """After esp-out: the copies of each traced packet that leave, and which ESP SA encrypted them."""
        esp = self.dpu.esp
        jobs = esp.jobs
        how = {}
        for j in range(jobs.n):
            sa = esp.table.sas[int(jobs.jobs[j, J_SA])]
            how[int(jobs.jobs[j, J_ROW])] = (f"Encrypted by ESP SA {sa.name} (spi {sa.spi:#x}, {sa.mode} mode, "
                                             f"{sa.aead}, seq {int(jobs.jobs[j, J_SEQ])})")
        out = {}
        for row, port in batch.tx[: batch.n_tx, :2]:
            origin = int(batch.meta[row, M_ORIGIN]) if row >= batch.size else int(row)
            out.setdefault(origin, []).append((int(port), int(batch.meta[row, M_LEN]), how.get(int(row), "")))
        for i, t in getattr(self, "_esp_rows", []):
            t.esp_out = out.get(int(i), [])
            if not t.esp_out and not t.drop:
                t.drop = int(batch.meta[i, M_DROP])
        self._esp_rows = []

    def _decap_text(self, batch, i):
        key = batch.key[i]
        port = _get(key, "in_port")
        if port == int(batch.meta[i, M_IN_PORT]) or batch.meta[i, M_DROP]:
            return ""
        tun = {p.ofport: p for p in self.dpu.tunnels.table.ports}.get(port)
        if tun is None:
            return ""
        src, dst = (_field_value(n, _get(key, n)) for n in ("tun_src", "tun_dst"))
        peer = f" from {src} to {dst}" if _get(key, "tun_dst") else ""
        v6 = [int(key[w]) << 64 | int(key[w + 1]) for w in (30, 32)]
        if any(v6):
            peer = f" from {ipaddress.IPv6Address(v6[0])} to {ipaddress.IPv6Address(v6[1])}"
        return (f"Decapsulated by {tun.name} ({tun.type}, in_port={port}): VNI {_get(key, 'tun_id')}{peer}, "
                f"a {int(batch.meta[i, M_LEN])}-byte inner frame")

    def after_encap(self, batch):
        """After the tunnel stage: where each traced packet's copies really left, and how wrapped."""
        wire = {}
        for row, port in batch.tx[: batch.n_tx, :2]:
            origin = int(batch.meta[row, M_ORIGIN]) if row >= batch.size else int(row)
            wire.setdefault(origin, []).append((int(port), int(batch.meta[row, M_LEN]),
                                                _outer_text(batch, row, self._vteps.get(int(port), ()))))
        for i, t in zip(self._rows_done, self._done):
            t.wire = wire.get(int(i), [])
            if not t.drop:
                t.drop = int(batch.meta[i, M_DROP])
        self._done = []

    def after_flows(self, batch):
        records, lost = self.dpu.flows.take_trace()
        by_row = {}
        for rec in records:
            by_row.setdefault(int(rec[0]), []).append(tuple(int(v) for v in rec[1:]))
        sent = {}
        for row, port in batch.tx[: batch.n_tx, :2]:
            origin = int(batch.meta[row, M_ORIGIN]) if row >= batch.size else int(row)
            sent.setdefault(origin, []).append(int(port))
        for i, t in zip(self._rows, self._pending):
            t.records = by_row.get(int(i), [])
            t.final_key = batch.key[i].copy()
            t.drop = int(batch.meta[i, M_DROP])
            t.records_lost = lost
            t.dropped_before_flows = self._dropped_before[int(i)]
            t.sent = sent.get(int(i), [])
            ports = t.first_fragment_ports
            if ports is not None and _get(t.final_key, "tp_src") == 0 and _get(t.final_key, "tp_dst") == 0:
                _put_ports(t.final_key, ports)
            self.traces.append(t)
        batch.meta[self._rows, M_TRACED] = 0
        self._rows_done, self._done = self._rows, self._pending
        self._esp_rows = list(zip(self._rows, self._pending))
        self._pending = []


# -- reading the records ---------------------------------------------------------

class _Reader:
    """Walks a PacketTrace's records into lines, keeping the running key."""

    def __init__(self, trace, program, names):
        self.t, self.p, self.names = trace, program, names
        self.key = trace.key.copy()
        self.sent_key = trace.key.copy()     # the packet as the last output sent it
        self.datapath = []
        self.outputs = []
        self.steps = []                      # for JSON: one dict per table visited
        self.ct_after = 0                    # ct_state the last ct() gave

    def port(self, p):
        name = self.names.get(p)
        return f"{name} (port {p})" if name else f"port {p}"

    def rule_of_op(self, k):
        act = self.p.act
        return int(np.searchsorted(act[: len(self.p.rules), 0], k, side="right") - 1)

    def lines(self):
        out = []
        depth = 0
        levels = {0: 0}          # stack frame (sp) -> display nesting
        last_action = None
        action_key = None
        action_step = None
        for kind, a, b, c, d, e in self.t.records:
            if kind != tr.T_KEY and action_key is not None:
                out += self._effects(action_key, depth, action_step)
                action_key = None
            if kind == tr.T_LOOKUP:
                if e == 4:                          # a recirculation after ct(table=N)
                    levels = {0: 0}
                    c = 0
                    state = _ct_state_text(self.ct_after)
                    out += ["", f"    recirculation: the packet resumes at table {a} with ct_state={state}"]
                # ofproto/trace nests a table only under a resubmit to a later table that is
                # not the last action; the others print at the caller's level
                if e == 2:
                    levels[c] = levels.get(c - 1, 0) + 1
                elif e == 3:
                    levels[c] = levels.get(c - 1, 0)
                depth = levels.get(c, 0)
                pad = " " * (8 * depth - (4 if e == 2 else 0))
                step = {"table": a, "depth": c, "rule": None, "actions": []}
                self.steps.append(step)
                if b < 0:
                    out.append(f"{pad}{a:2d}. No match.")
                    out.append(" " * (4 + 8 * depth) + "drop")
                else:
                    rule = self.p.rules[b]
                    match = format_match(getattr(rule, "members", {}) or {})
                    head = f"{match}, priority {rule.priority}" if match else f"priority {rule.priority}"
                    if rule.cookie:
                        head += f", cookie {rule.cookie:#x}"
                    out.append(f"{pad}{a:2d}. {head}  # {_shown(rule.path)}:{rule.line}")
                    step["rule"] = {"index": b, "text": rule.text.strip(), "file": str(rule.path),
                                    "line": rule.line, "priority": rule.priority, "cookie": rule.cookie}
                last_action = None
            elif kind == tr.T_ACTION:
                r = self.rule_of_op(a)
                ai = self.p.op_action[a]
                if (r, ai) != last_action:
                    last_action = (r, ai)
                    act = self.p.rules[r].actions[ai]
                    text = getattr(act, "text", act.name)
                    depth = levels.get(b, 0)
                    out.append(" " * (4 + 8 * depth) + text)
                    action_step = {"action": text, "effects": []}
                    if self.steps:
                        self.steps[-1]["actions"].append(action_step)
                    action_key = self.key.copy()
            elif kind == tr.T_KEY:
                self.key[a] = np.uint64(b & M64)
            else:
                line = self._event(kind, a, b, c, d, e)
                if line:
                    out.append(" " * (5 + 8 * depth) + "-> " + line)
                    if action_step is not None:
                        action_step["effects"].append(line)
        if action_key is not None:
            out += self._effects(action_key, depth, action_step)
        return out

    def _effects(self, before, depth, step):
        lines = []
        for name, old, new in changes(before, self.key):
            text = f"{name} is now {new}"
            lines.append(" " * (5 + 8 * depth) + "-> " + text)
            if step is not None:
                step["effects"].append(text)
        return lines

    def _event(self, kind, a, b, c, d, e=0):
        if kind == tr.T_OUTPUT:
            if b == 1:
                now = self.key.copy()
                if d:                               # normal: this copy's own outer tag
                    tci = d - 1
                    now[0] = np.uint64((int(now[0]) & ~0xFFFF) | tci)
                    if not tci & 0x1000:
                        now[1] = np.uint64(int(now[1]) & ~0xFFFF)   # no outer tag: none inside either
                self.datapath += _set_pieces(self.sent_key, now) + [str(a)]
                self.sent_key = now
                self.outputs.append(a)
                return f"output to {self.port(a)}"
            if b == 0:
                return f"not sent to {self.port(a)}: it is the input port (use the in_port action)"
            name, why = drops.describe(b)
            return f"not sent to {self.port(a)}: {name} ({why})"
        if kind == tr.T_NORMAL:
            mac = ":".join(f"{x:02x}" for x in int(d).to_bytes(6, "big"))
            if a == tr.N_LEARNED:
                return f"learned that {mac} is on port {self.names.get(c, c)} in VLAN {b}"
            if a == tr.N_KNOWN:
                if c == self.t.in_port:
                    return "learned port is input port, dropping"
                return f"forwarding to learned port {self.names.get(c, c)}"
            if a == tr.N_FLOOD:
                what = "broadcast/multicast" if (d >> 40) & 1 else "no learned MAC for destination"
                return f"{what}, flooding VLAN {b}"
            if a == tr.N_RESERVED:
                return f"reserved multicast destination {mac}, dropping (as OVS)"
            if a == tr.N_VLAN_REFUSED:
                return f"port {self.names.get(c, c)} does not carry VLAN {b}, dropping"
        if kind == tr.T_CT:
            zone = f"zone={c}: " if c else ""
            what = "committed, " if d & 1 else ""
            text = (f"{zone}{what}ct_state {_ct_state_text(a)} -> {_ct_state_text(b)}")
            # the flow now untracked until a recirculation; keep the running key as OVS shows it
            self.ct_after = b
            if e >= 0:
                text += f"; a clone of the packet is forked to recirculate to table {e}"
            return text
        if kind == tr.T_NOTE:
            if a == tr.NOTE_GUARD:
                name = GUARD_NAMES.get(b, "l4_ports")
                return f"skipped: it needs {GUARD_TEXT.get(name, name)}, which this packet does not have"
            if a == tr.NOTE_TTL_EXPIRED:
                return f"TTL {b} expires: the rest of this action list is skipped"
            if a == tr.NOTE_RESUBMIT_LIMIT:
                return f"resubmit limit reached (depth {b}, {c} resubmits): the packet is dropped"
        return f"record {kind} {a} {b} {c} {d}"


def _when(ts_ns):
    t = datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{ts_ns % 1_000_000_000:09d} UTC"


def explain(trace, program, names, bridge="softdpu"):
    """(text lines, JSON-ready dict) for one PacketTrace."""
    head = (f"Packet {trace.number}: {trace.length} bytes on {names.get(trace.in_port, '?')} "
            f"(in_port={trace.in_port}) at {_when(trace.ts_ns)}")
    shown = trace.key.copy()
    if trace.first_fragment_ports is not None:
        _put_ports(shown, trace.first_fragment_ports)
    flow = flow_text(shown) + trace.nd
    lines = ([head] + ([trace.esp] if trace.esp else []) + ([trace.decap] if trace.decap else [])
             + [f"Flow: {flow}"])
    doc = {"packet": trace.number, "in_port": trace.in_port, "port": names.get(trace.in_port),
           "ts_ns": trace.ts_ns, "length": trace.length, "flow": flow}
    if trace.parse_error:
        name, why = drops.describe(trace.parse_error)
        lines.append(f"Malformed: {name} ({why}); the fields after it are left out, as Open vSwitch does")
        doc["malformed"] = name
    before = trace.dropped_before_flows
    if before == drops.PUNTED:                      # the tunnel stage answered it (ARP / ND)
        back = [names.get(p, f"port {p}") for p, _, _ in (trace.wire or [])]
        lines += ["", f"Answered by softdpu for its VTEP address (ARP/ND): the reply leaves by "
                      f"{', '.join(back) or trace.port_name}; the packet does not reach the flow tables",
                  f"Result: sent to {', '.join(back) or '(nothing)'}"]
        doc.update(steps=[], outputs=[], drop=None, answered=True,
                   wire=[{"ofport": p, "port": names.get(p), "bytes": n} for p, n, _ in (trace.wire or [])])
        return lines, doc
    if before:
        name, why = drops.describe(before)
        lines += ["", f"Result: dropped before the flow tables: {name} ({why})"]
        doc.update(steps=[], outputs=[], drop={"reason": name, "description": why})
        return lines, doc
    r = _Reader(trace, program, names)
    body = r.lines()
    lines += ["", f'bridge("{bridge}")', "-" * (len(bridge) + 10)] + body + [""]
    final = flow_text(trace.final_key) + trace.nd
    same = bool(np.array_equal(trace.final_key, shown))
    lines.append("Final flow: " + ("unchanged" if same else final))
    lines.append("Datapath actions: " + (",".join(r.datapath) if r.datapath else "drop"))
    doc.update(steps=r.steps, final_flow=final, datapath_actions=",".join(r.datapath) or "drop",
               outputs=[{"ofport": p, "port": names.get(p)} for p in r.outputs])
    if r.outputs != trace.sent:     # cannot happen: the records come from the forwarding kernels
        lines.append(f"(internal error: the trace shows outputs {r.outputs} but the packet went to {trace.sent})")
    if trace.wire is not None:                      # the tunnel stage ran after the flow tables
        wrapped = [w for w in trace.wire if w[2]]
        for port, size, outer in wrapped:
            lines.append(f"Encapsulated: {outer}; out of {names.get(port, port)} (port {port}), {size} bytes")
        doc["wire"] = [{"ofport": p, "port": names.get(p), "bytes": n, "outer": o or None}
                       for p, n, o in trace.wire]
        if r.outputs and not trace.wire:
            name, why = drops.describe(trace.drop or drops.TUNNEL_NO_ROOM)
            lines.append(f"Result: dropped: {name} ({why})")
            doc["drop"] = {"reason": name, "description": why}
        elif r.outputs:
            lines.append("Result: sent to " + ", ".join(names.get(p, f"port {p}") for p, _, _ in trace.wire)
                         + (f" ({len(r.outputs) - len(trace.wire)} copies not sent: see the tunnel counters)"
                            if len(trace.wire) < len(r.outputs) else ""))
            doc["drop"] = None
    if trace.esp_out is not None and r.outputs:     # the ESP stage ran after the flow tables
        doc.pop("drop", None)
        if lines[-1].startswith("Result: "):
            lines.pop()
        for port, size, how in trace.esp_out:
            if how:
                lines.append(f"{how}; out of {names.get(port, port)} (port {port}), {size} bytes")
        doc["esp"] = [{"ofport": p, "port": names.get(p), "bytes": n, "encrypted": h or None}
                      for p, n, h in trace.esp_out]
        if not trace.esp_out:
            name, why = drops.describe(trace.drop or drops.ESP_NO_ROOM)
            lines.append(f"Result: dropped: {name} ({why})")
            doc["drop"] = {"reason": name, "description": why}
        else:
            lines.append("Result: sent to " + ", ".join(names.get(p, f"port {p}") for p, _, _ in trace.esp_out))
            doc["drop"] = None
    if trace.esp:
        doc["decrypted"] = trace.esp
    if "drop" in doc:
        pass
    elif r.outputs:
        lines.append("Result: sent to " + ", ".join(names.get(p, f"port {p}") for p in r.outputs))
        doc["drop"] = None
    else:
        name, why = drops.describe(trace.drop or drops.ACTION_DROP)
        lines.append(f"Result: dropped: {name} ({why})")
        doc["drop"] = {"reason": name, "description": why}
    if trace.records_lost:
        lines.append(f"(warning: {trace.records_lost} trace records were lost for want of room; "
                     f"trace fewer packets at once)")
    return lines, doc
