"""Flow rules compiled into arrays the kernels read.

Rules are sorted by (table, priority descending, file order), so within a
table the first rule that matches is the one Open vSwitch would pick among
non-overlapping priorities, and equal priorities resolve deterministically
(first in the file wins).  Each rule becomes:

  mask[r], value[r]   uint64[KEY_WORDS]: matches when key & mask == value
  act[r]              (first, count, simple) into ops, the flat action program;
                      simple = 1 when every op is a plain output, 2 for just `normal`
                      (the fast paths)
  ops[k]              (opcode, a, b, c, d, e) rows (action_syntax.py), interpreted by
                      actions.py; values are uint64 bit patterns stored as int64

  tss_sub, tss_words, tss_slots
                      the tuple-space classifier built from mask/value
                      (one hash subtable per distinct mask and table;
                      layout in tuple_space.py, lookup in classify.py)
"""
from dataclasses import dataclass

import numpy as np

from softdpu.key import FIELDS, KEY_WORDS
from softdpu.stages.flows import tuple_space
from softdpu.stages.flows.action_encode import encode
from softdpu.stages.flows.action_syntax import (OP_COLS, OP_DROP, OP_NORMAL, OP_OUTPUT,  # noqa: F401
                                                needs_openflow11, vlan_in_match)

N_TABLES = 255


@dataclass
class FlowProgram:
    rules: list                 # Rules in compiled order
    mask: np.ndarray            # uint64[R, KEY_WORDS]
    value: np.ndarray           # uint64[R, KEY_WORDS]
    table_bounds: np.ndarray    # int64[N_TABLES, 2]: rows [lo, hi) of each table
    act: np.ndarray             # int64[R, 3]: (first op, number of ops, simple)
    ops: np.ndarray             # int64[K, OP_COLS]: (opcode, a, b, c, d, e)
    n_packets: np.ndarray       # int64[R]
    n_bytes: np.ndarray         # int64[R]
    tss_sub: np.ndarray         # uint64[N_TABLES + S, SUB_COLS]: table directory, subtables
    tss_words: np.ndarray       # uint64[NW, 4]: (word, mask, hash keys) per subtable word
    tss_slots: np.ndarray       # uint64[P]: every subtable's tags and entries
    op_action: list = None      # op row k -> index into its rule's actions (for trace)
    ct_sets: np.ndarray = None  # uint64[K, 6]: (mark, mask, label hi, lo, mask hi, lo) per ct exec


def _place(mask, value, r, name, v, m):
    """Put one key field's (value, mask) (Rule.match, softdpu.key names) into row r."""
    f = FIELDS[name]
    if m >> f.bits or v & ~m:   # a bug in flows/fields.py, never a user error
        raise AssertionError(f"{name}={v:#x}/{m:#x} does not fit the {f.bits}-bit key field")
    mask[r, f.word] |= np.uint64(m << f.shift)
    value[r, f.word] |= np.uint64((v & m) << f.shift)


def _ct_sets(sets):
    """[((mark, mask), (label, mask))] -> the uint64[K, 6] rows execute.ct_execute reads."""
    rows = np.zeros((max(len(sets), 1), 6), np.uint64)
    m64 = (1 << 64) - 1
    for k, ((mv, mm), (lv, lm)) in enumerate(sets):
        rows[k] = (mv, mm, lv >> 64, lv & m64, lm >> 64, lm & m64)
    return rows


def identity(rule):
    """What makes two flows the same flow for OpenFlow's add: table, priority and match."""
    return rule.table, rule.priority, frozenset(rule.match.items())


def compile_rules(rules):
    """Rules (from syntax.parse_*) -> FlowProgram.

    As `ovs-ofctl add-flows`, a flow with the same table, priority and match
    as an earlier one replaces it: only the last of such flows is kept.
    """
    last = {identity(r): i for i, r in enumerate(rules)}
    rules = [r for i, r in enumerate(rules) if last[identity(r)] == i]
    order = sorted(range(len(rules)), key=lambda i: (rules[i].table, -rules[i].priority, i))
    ordered = [rules[i] for i in order]
    n = len(ordered)
    mask = np.zeros((max(n, 1), KEY_WORDS), np.uint64)
    value = np.zeros((max(n, 1), KEY_WORDS), np.uint64)
    act = np.zeros((max(n, 1), 3), np.int64)
    ops = []
    op_action = []
    ct_sets = []
    bounds = np.zeros((N_TABLES, 2), np.int64)
    of11 = needs_openflow11(ordered)
    for r, rule in enumerate(ordered):
        for name, (v, m) in rule.match.items():
            _place(mask, value, r, name, v, m)
        rows = encode(rule.actions, of11 and not vlan_in_match(rule.members), sources=op_action, ct_sets=ct_sets)
        simple = 2 if [row[0] for row in rows] == [OP_NORMAL] else all(row[0] == OP_OUTPUT for row in rows)
        act[r] = (len(ops), len(rows), simple)
        ops += rows
    for t in range(N_TABLES):
        rows = [r for r, rule in enumerate(ordered) if rule.table == t]
        bounds[t] = (rows[0], rows[-1] + 1) if rows else (0, 0)
    ops_arr = (np.array([[v & 0xFFFFFFFFFFFFFFFF for v in row] for row in ops], np.uint64).view(np.int64)
               if ops else np.zeros((1, OP_COLS), np.int64))
    tss = tuple_space.build(mask[:n], value[:n], bounds)
    return FlowProgram(ordered, mask, value, bounds, act, ops_arr,
                       np.zeros(max(n, 1), np.int64), np.zeros(max(n, 1), np.int64), *tss, op_action,
                       _ct_sets(ct_sets))
