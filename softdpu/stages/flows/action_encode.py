"""Encoding parsed actions into op rows of the flat action program (opcode, a, b, c, d, e).

    rows = encode(rule.actions, push_for_set_vlan, sources=[], ct_sets=[])

action_syntax.py parses the words and lists the opcodes; this module turns each
Action into the rows actions.py interprets: a field write becomes OP_SET rows on
key words ((word, shift) pieces of the field, with the runtime guard of its
protocol), a move OP_MOVE pieces that each lie in one word, ct() an OP_CT row
whose exec values go to the program's ct_sets.
"""
from softdpu.stages.flows.action_syntax import (_F, GUARD, M64, OP_CT, OP_CT_CLEAR, OP_DEC_TTL, OP_DROP,
                                                OP_FLOOD, OP_GOTO, OP_IN_PORT, OP_MOVE, OP_NOP, OP_NORMAL,
                                                OP_OUTPUT, OP_POP_VLAN, OP_PUSH_VLAN, OP_REJECT, OP_RESUBMIT,
                                                OP_SET, OP_SET_VLAN, G_IP_ANY, G_IPV4, G_L4_PORTS, G_NONE, G_VLAN)

def _segments(name, lo, bits):
    """(word, shift in word, bits) pieces of member bits [lo, lo+bits), low bits first,
    with the member bit each starts at."""
    out = []
    for word, shift, first, n in _F[name][0]:
        a, b = max(lo, first), min(lo + bits, first + n)
        if a < b:
            out.append((a, word, shift + a - first, b - a))
    return sorted(out)


def _guard(name):
    rule = _F[name][2]
    return G_VLAN if rule == "vlan" else GUARD[rule]


def _set_ops(name, v, m):
    guard = _guard(name)
    ops = []
    for start, word, shift, n in _segments(name, 0, _F[name][1]):
        part_m = (m >> start) & ((1 << n) - 1)
        if part_m:
            ops.append((OP_SET, word, (part_m << shift) & M64, ((v >> start) & part_m) << shift, guard, 0))
    return ops


def encode(actions, push_for_set_vlan=False, sources=None, ct_sets=None):
    """Actions -> list of op rows (opcode, a, b, c, d, e), values as Python ints (uint64 bits).

    sources: a list that gets, for each op row, the index of the action it came from.
    ct_sets: a list that gets the (mark, label) of each ct(commit, exec(...)); its index is the
    op's e (compile.py turns the list into the program's ct_sets array).

    push_for_set_vlan: mod_vlan_vid/mod_vlan_pcp push a tag first unless a push_vlan came
    before them in the list.  ovs-ofctl
    encodes them so in OpenFlow 1.1+ (which has no "push if needed") when the match
    does not pin a VLAN tag, and it uses OpenFlow 1.1+ for a whole file once one flow
    needs it (push_vlan)."""
    ops = []
    for index, a in enumerate(actions):
        first = len(ops)
        _encode_one(a, ops, push_for_set_vlan, ct_sets)
        if a.name in ("push_vlan", "mod_vlan_vid", "mod_vlan_pcp"):
            push_for_set_vlan = False                  # a tag is there from now on
        if sources is not None:
            sources += [index] * (len(ops) - first)
    return ops


def _encode_one(a, ops, push_for_set_vlan, ct_sets=None):
    """Append the op rows of one action."""
    n, x = a.name, a.arg
    if n == "ct":
        srow = -1
        if x.mark is not None or x.label is not None:
            srow = len(ct_sets)
            ct_sets.append((x.mark or (0, 0), x.label or (0, 0)))
        zone, src = x.zone, -1
        if x.zone_field is not None:
            (_, word, shift, _), = _segments(*x.zone_field)
            zone, src = -1, (word << 16) | shift
        ops.append((OP_CT, int(x.commit) | 2 * int(x.force), zone, src,
                    -1 if x.table is None else x.table, srow))
        return
    if n == "ct_clear":
        ops.append((OP_CT_CLEAR, 0, 0, 0, 0, 0))
        return
    if n == "reject":
        ops.append((OP_REJECT, 0, 0, 0, 0, 0))
        return
    if n == "output":
        ops.append((OP_OUTPUT, x, 0, 0, 0, 0))
    elif n == "drop":
        ops.append((OP_DROP, 0, 0, 0, 0, 0))
    elif n == "in_port":
        ops.append((OP_IN_PORT, 0, 0, 0, 0, 0))
    elif n in ("flood", "all"):
        ops.append((OP_FLOOD, 0, 0, 0, 0, 0))
    elif n == "normal":
        ops.append((OP_NORMAL, 0, 0, 0, 0, 0))
    elif n in ("mod_vlan_vid", "mod_vlan_pcp"):
        if push_for_set_vlan:                      # no tag known to be there yet
            ops.append((OP_PUSH_VLAN, 0, 0, 0, 0, 0))
        if n == "mod_vlan_vid":
            ops.append((OP_SET_VLAN, 0, 0x0FFF, x, 0, 0))
        else:
            ops.append((OP_SET_VLAN, 0, 0xE000, x << 13, 0, 0))
    elif n in ("strip_vlan", "pop_vlan"):
        ops.append((OP_POP_VLAN, 0, 0, 0, 0, 0))
    elif n == "push_vlan":
        ops.append((OP_PUSH_VLAN, 0, 0, 0, 0, 0))
    elif n in ("mod_dl_src", "mod_dl_dst"):
        ops += _set_ops(n[4:], *x)
    elif n in ("mod_nw_src", "mod_nw_dst"):
        ops += [(o, w, m, v, G_IPV4, e) for o, w, m, v, _, e in _set_ops(n[4:], *x)]
    elif n == "mod_nw_tos":
        ops.append((OP_SET, 2, 0xFC, x, G_IP_ANY, 0))
    elif n == "mod_nw_ttl":
        ops.append((OP_SET, 4, 0xFF00, x << 8, G_IP_ANY, 0))
    elif n in ("mod_tp_src", "mod_tp_dst"):
        shift = 48 if n == "mod_tp_src" else 32
        ops.append((OP_SET, 4, 0xFFFF << shift, x << shift, G_L4_PORTS, 0))
    elif n == "dec_ttl":
        ops.append((OP_DEC_TTL, 0, 0, 0, 0, 0))
    elif n in ("set_field", "load"):
        ops += _set_ops(*x)
    elif n == "move":
        (sn, slo, bits), (dn, dlo, _) = x
        ops += _move_ops(sn, slo, dn, dlo, bits)
    elif n in ("set_tunnel", "set_tunnel64"):
        ops.append((OP_SET, 21, M64, x, G_NONE, 0))
    elif n == "write_metadata":
        v, m = x
        ops.append((OP_SET, 12, m, v & m, G_NONE, 0))
    elif n == "resubmit":
        ops.append((OP_RESUBMIT, x[0], x[1], 0, 0, 0))
    elif n == "goto_table":
        ops.append((OP_GOTO, x, 0, 0, 0, 0))
    elif n == "clear_actions":
        ops.append((OP_NOP, 0, 0, 0, 0, 0))   # clears the action set, which softdpu has none of
    else:
        raise AssertionError(f"no opcode for action {n}")


def _move_ops(sn, slo, dn, dlo, bits):
    """Split a move into pieces that each lie in one source and one destination word."""
    cuts = {0, bits}
    for start, *_ in _segments(sn, slo, bits):
        cuts.add(start - slo)
    for start, *_ in _segments(dn, dlo, bits):
        cuts.add(start - dlo)
    cuts = sorted(cuts)
    ops = []
    for a, b in zip(cuts, cuts[1:]):
        (_, sw, ss, _), = _segments(sn, slo + a, b - a)
        (_, dw, ds, _), = _segments(dn, dlo + a, b - a)
        ops.append((OP_MOVE, sw, ss, dw, ds, b - a))
    return ops
