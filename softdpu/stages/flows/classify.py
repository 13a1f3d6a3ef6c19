"""Rule lookup: the first rule of a table whose masked key matches.

A linear scan over the compiled (mask, value) rows, in priority order; the
flow-table issue puts the tuple-space classifier and exact-match cache here.
"""
from softdpu._jit import njit


@njit
def lookup(key, i, mask, value, lo, hi):
    """Index of the first rule in rows [lo, hi) matching key[i], or -1."""
    words = key.shape[1]
    for r in range(lo, hi):
        ok = True
        for w in range(words):
            if key[i, w] & mask[r, w] != value[r, w]:
                ok = False
                break
        if ok:
            return r
    return -1
