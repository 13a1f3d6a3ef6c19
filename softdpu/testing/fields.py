"""Two packets compared field by field, as scapy dissects them: what expect() and `softdpu check` print.

    diff = compare(expected, actual, ignore=["IP.chksum", "Ether.src"])
    diff.equal                     # True when every field not ignored is the same
    print("\\n".join(diff.table()))

Both packets are dissected from their bytes (as Ethernet frames), so a
packet built with scapy and one read off a port are seen the same way:
lengths and checksums the builder left to scapy are computed.  Layers are
aligned by position (Ether, Dot1Q, IP, TCP, Raw, ...); a field is named
`Layer.field` by the layer's scapy class name.  The table shows every field
of both packets:

      field          expected               actual
      Ether.dst      02:00:00:00:00:02      02:00:00:00:00:02
    ! IP.ttl         64                     63
    ~ IP.chksum      0x66cc                 0x67cc

`!` marks a difference, `~` a difference in an ignored field.  Frames that
differ only in bytes no field shows (scapy skips a few, e.g. after a TCP
option list's end) get a `(bytes)` row, so equal means the same frame
unless a field was ignored.

An ignore entry is `Layer.field` (every layer of that class, e.g. the inner
and outer IP of a tunnel), `Layer[k].field` (its k-th occurrence, from 0),
or `Layer` (all its fields).  An entry naming a layer or field scapy does
not know is an error (ValueError), so a typo cannot hide a difference.
"""
import difflib
import re
from dataclasses import dataclass, field

from scapy.config import conf
from scapy.layers.l2 import Ether
from scapy.packet import NoPayload, Packet, Raw

IGNORE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?(?:\.([A-Za-z_][A-Za-z0-9_]*))?$")
WIDE = 40          # longest value shown; longer ones are cut with "..."


def dissect(packet):
    """A scapy packet (or bytes) -> the Ethernet frame scapy dissects from its bytes."""
    if isinstance(packet, (bytes, bytearray, memoryview, Packet)):
        data = bytes(packet)
        try:
            return Ether(data)
        except Exception:  # noqa: BLE001 - scapy cannot dissect it (e.g. under 6 bytes): the bytes alone
            return Raw(data)
    raise TypeError(f"expected a scapy packet or bytes, got {type(packet).__name__}")


def _layer_classes():
    known = {}
    for cls in conf.layers:
        known.setdefault(cls.__name__, cls)
    return known


def parse_ignore(entries):
    """["IP.chksum", "IP[1].ttl", "Raw"] -> [(layer, occurrence or None, field or None)]; ValueError if unknown."""
    if isinstance(entries, str):
        entries = [entries]
    known = None
    out = []
    for text in entries or ():
        m = IGNORE_RE.match(str(text).strip())
        if not m:
            raise ValueError(f"ignore: {text!r} is not Layer.field, Layer[k].field or Layer (e.g. 'IP.chksum')")
        layer, k, name = m.group(1), m.group(2), m.group(3)
        known = known or _layer_classes()
        cls = known.get(layer)
        if cls is None:
            raise ValueError(f"ignore: {text!r}: scapy has no layer named {layer!r}")
        names = [f.name for f in cls.fields_desc]
        if name is not None and name not in names:
            raise ValueError(f"ignore: {text!r}: {layer} has no field {name!r}; its fields are: {', '.join(names)}")
        out.append((layer, None if k is None else int(k), name))
    return out


def layers(packet):
    """[(label, class name, occurrence, [(field, value, shown)])] of a dissected packet, outermost first."""
    out = []
    seen = {}
    layer = packet
    while isinstance(layer, Packet) and not isinstance(layer, NoPayload):
        name = type(layer).__name__
        k = seen.get(name, 0)
        seen[name] = k + 1
        fields = []
        for f in layer.fields_desc:
            if f.name not in layer.fields:
                continue                     # a conditional field this packet does not have
            v = layer.fields[f.name]
            fields.append((f.name, v, _shown(f, layer, v)))
        out.append((name if k == 0 else f"{name}[{k}]", name, k, fields))
        layer = layer.payload
    return out


def _shown(f, layer, v):
    try:
        text = str(f.i2repr(layer, v))
    except Exception:  # noqa: BLE001 - a display problem must not hide the comparison
        text = repr(v)
    if isinstance(v, int) and not isinstance(v, bool) and text not in (str(v), hex(v)):
        text = f"{v} ({text})"
    if not text:                             # e.g. IP flags 0 shows as ""
        text = str(int(v)) if hasattr(v, "__int__") else repr(v)
    return text if len(text) <= WIDE else text[: WIDE - 3] + "..."


@dataclass
class Row:
    mark: str          # " " same, "!" differs, "~" differs but ignored
    name: str          # Layer.field
    expected: str      # shown value, or "-" when that side has no such field
    actual: str


@dataclass
class Diff:
    rows: list = field(default_factory=list)

    @property
    def equal(self):
        return not any(r.mark == "!" for r in self.rows)

    @property
    def differing(self):
        return [r.name for r in self.rows if r.mark == "!"]

    def table(self, indent="  "):
        """The comparison as text lines (every field, differences marked)."""
        w = max([len(r.name) for r in self.rows] + [5])
        we = max([len(r.expected) for r in self.rows] + [8])
        lines = [f"{indent}  {'field':<{w}}  {'expected':<{we}}  actual"]
        for r in self.rows:
            lines.append(f"{indent}{r.mark} {r.name:<{w}}  {r.expected:<{we}}  {r.actual}")
        return lines


def _ignored(rules, cls, k, name):
    return any(layer == cls and (occ is None or occ == k) and (f is None or f == name) for layer, occ, f in rules)


def compare(expected, actual, ignore=()):
    """Diff of two packets (scapy packets or bytes), field by field; `ignore` as parse_ignore takes.

    Layers are paired by their order and class (difflib over the class
    names), so a VLAN tag pushed or a header missing shows as that layer
    alone, with the layers after it still compared field by field.
    """
    rules = parse_ignore(ignore)
    exp_pkt, act_pkt = dissect(expected), dissect(actual)
    exp, act = layers(exp_pkt), layers(act_pkt)
    diff = Diff()
    match = difflib.SequenceMatcher(None, [x[1] for x in exp], [x[1] for x in act], autojunk=False)
    for op, i1, i2, j1, j2 in match.get_opcodes():
        if op == "equal":
            for e, a in zip(exp[i1:i2], act[j1:j2]):
                _pair(diff, rules, e, a)
            continue
        for e in exp[i1:i2]:
            _alone(diff, rules, e, expected_side=True)
        for a in act[j1:j2]:
            _alone(diff, rules, a, expected_side=False)
    if all(r.mark == " " for r in diff.rows):
        _bytes_check(diff, bytes(exp_pkt), bytes(act_pkt))
    return diff


def _bytes_check(diff, e, a):
    """Frames that differ where no dissected field shows it (bytes scapy's fields skip) still differ."""
    if e == a:
        return
    k = next((i for i, (x, y) in enumerate(zip(e, a)) if x != y), min(len(e), len(a)))
    diff.rows.append(Row("!", "(bytes)", f"{len(e)} bytes, at {k}: {e[k:k + 8].hex() or '-'}",
                         f"{len(a)} bytes, at {k}: {a[k:k + 8].hex() or '-'}"))


def _pair(diff, rules, e, a):
    mine = {n: (v, s) for n, v, s in e[3]}
    theirs = {n: (v, s) for n, v, s in a[3]}
    names = [n for n, _, _ in e[3]] + [n for n, _, _ in a[3] if n not in mine]
    for n in names:
        ev, es = mine.get(n, (None, "-"))
        av, as_ = theirs.get(n, (None, "-"))
        same = n in mine and n in theirs and ev == av
        mark = " " if same else ("~" if _ignored(rules, e[1], e[2], n) else "!")
        diff.rows.append(Row(mark, f"{e[0]}.{n}", es, as_))


def _alone(diff, rules, side, expected_side):
    """A layer only one packet has (at this place): its fields against "-"."""
    label, cls, k, fields = side
    for n, _, s in fields or [("(layer)", None, cls)]:
        mark = "~" if _ignored(rules, cls, k, n) else "!"
        diff.rows.append(Row(mark, f"{label}.{n}", s if expected_side else "-", "-" if expected_side else s))
