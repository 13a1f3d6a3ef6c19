"""The ct() action's argument, as ovs-ofctl reads it (ovs-actions(7) "The ct action").

    ct                                   track in zone 0, no commit
    ct(commit, zone=5, table=1)          commit to zone 5, then continue in table 1
    ct(zone=NXM_NX_REG0[0..15], table=2) the zone from a 16-bit field
    ct(commit, exec(set_field:0x1->ct_mark, set_field:0x2/0xff->ct_label))
    ct(commit, force)                    a connection seen in the reply direction is
                                         torn down and committed afresh

parse("(...)") -> CtArgs.  Not supported yet (errors say so): nat, alg, and
exec actions other than set_field/load to ct_mark and ct_label.
"""
from dataclasses import dataclass

from softdpu.stages.flows import values


@dataclass
class CtArgs:
    commit: bool = False
    force: bool = False
    zone: int = 0
    zone_field: tuple = None      # (field, first bit, 16): the zone read from the flow
    table: int = None             # recirculate to this table, or None
    mark: tuple = None            # (value, mask), 32 bits
    label: tuple = None           # (value, mask), 128 bits

    def __eq__(self, other):
        return isinstance(other, CtArgs) and self.__dict__ == other.__dict__


def _split(text):
    """Top-level comma-separated words of text (parentheses nest)."""
    depth, word, out = 0, "", []
    for c in text:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            out.append(word.strip())
            word = ""
        else:
            word += c
    if word.strip():
        out.append(word.strip())
    return out


def _exec(text, args):
    """exec(set_field:V[/M]->ct_mark, load:V->NXM_NX_CT_LABEL[a..b], ...) -> args.mark / args.label."""
    from softdpu.stages.flows.action_syntax import field_ref

    for word in _split(text):
        kind, colon, rest = word.partition(":")
        if kind not in ("set_field", "load") or not colon or "->" not in rest:
            raise ValueError(f"ct exec: only set_field/load to ct_mark or ct_label are supported, got '{word}'")
        value, dst = (t.strip() for t in rest.rsplit("->", 1))
        name, lo, bits = field_ref(dst)
        if name not in ("ct_mark", "ct_label"):
            raise ValueError(f"ct exec: only ct_mark and ct_label can be set, got '{dst}'")
        width = 32 if name == "ct_mark" else 128
        if kind == "set_field":
            v, m = values.integer(value, width)
        else:
            v, m = values.integer(value, width)
            if v >> bits or m != (1 << width) - 1:
                raise ValueError(f"ct exec: value '{value}' does not fit {bits} bits")
            v, m = v << lo, ((1 << bits) - 1) << lo
        if name == "ct_mark":
            args.mark = (v & m, m)
        else:
            args.label = (v & m, m)


def parse(text):
    """'(...)' or '' -> CtArgs (ValueError naming what is wrong)."""
    from softdpu.stages.flows.action_syntax import field_ref

    args = CtArgs()
    if not text:
        return args
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError("expected ct or ct(ARGUMENTS)")
    for word in _split(text[1:-1]):
        key, eq, value = word.partition("=")
        key = key.strip()
        if word == "commit":
            args.commit = True
        elif word == "force":
            args.force = True
        elif key == "zone" and eq:
            if value[:1].isdigit():
                args.zone = values.integer(value, 16)[0]
            else:
                name, lo, bits = field_ref(value)
                if bits != 16:
                    raise ValueError(f"ct zone: expected a 16-bit field like NXM_NX_REG0[0..15], got '{value}'")
                args.zone_field = (name, lo, bits)
        elif key == "table" and eq:
            t = values.integer(value, 8)[0]
            if t > 254:
                raise ValueError(f"ct table: expected 0..254, got {t}")
            args.table = t
        elif word.startswith("exec(") and word.endswith(")"):
            _exec(word[5:-1], args)
        elif key in ("nat", "alg") or word.startswith("nat("):
            raise ValueError(f"ct {key.partition('(')[0]}: not supported by softdpu yet")
        else:
            raise ValueError(f"ct: unknown argument '{word}'; expected commit, force, zone=, table=, exec(...)")
    if args.force and not args.commit:
        raise ValueError("ct: 'force' needs 'commit'")
    if (args.mark or args.label) and not args.commit:
        raise ValueError("ct: exec(set_field:...->ct_mark/ct_label) needs 'commit'")
    return args
