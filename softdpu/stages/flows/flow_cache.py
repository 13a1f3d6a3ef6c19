"""The exact-match flow cache in front of the classifier (as OVS's EMC).

One per pipeline, owned by the FlowTables stage (no module-level state).  It
remembers, for a full key row and a table id, which rule the classifier
returned (or that none matched), so a packet of a known flow costs one
hash of the key and one compare instead of a tuple-space search.  Tables of
fewer than MIN_SUBTABLES subtables skip it: searching them costs less.

  entries  uint64[2 * buckets, CACHE_COLS], two ways per bucket (rows 2b, 2b+1):
           C_GEN    generation the entry was filled in (0: never filled)
           C_HASH   hash of (key, table): rejects most non-matching entries
                    with one compare
           C_TABLE  table id
           C_RULE   rule index + 1; 0 = cached miss (no rule matched)
           C_KEY..  the table's flow cache words of the key row (masked), all
                    compared on a hit: only the words some rule of the table
                    matches on (tuple_space.py, T_EMC_LO/HI), so an entry is
                    usually one 64-byte line; the array is as wide as the
                    widest table needs (`fit`), KEY_WORDS words at most

Invalidation: an entry counts only while its C_GEN equals the cache's
`generation`.  Any change of the rules (FlowTables.replace_rules /
add_rules) calls `invalidate()`, which bumps the generation: every entry is
stale at once, nothing is cleared.  Replacement: a new entry goes in way 0
and a live entry there moves to way 1 (so two flows that share a bucket both
stay; a third evicts the older).
"""
import numpy as np

from softdpu.key import KEY_WORDS
from softdpu.stages.flows.tuple_space import aligned_zeros

C_GEN = 0
C_HASH = 1
C_TABLE = 2
C_RULE = 3
C_KEY = 4
CACHE_COLS = C_KEY + KEY_WORDS

DEFAULT_ENTRIES = 8192  # as OVS's EMC (EM_FLOW_HASH_ENTRIES)
MIN_SUBTABLES = 4       # tables with fewer subtables are searched directly, not cached


class FlowCache:
    """Exact-match cache entries and the current generation."""

    def __init__(self, entries=DEFAULT_ENTRIES, key_words=KEY_WORDS):
        if entries < 2 or entries & (entries - 1):
            raise ValueError(f"flow cache entries must be a power of two >= 2, got {entries}")
        self.entries = self._alloc(entries, key_words)
        self.generation = 1

    @staticmethod
    def _alloc(entries, key_words):
        cols = -(-(C_KEY + key_words) // 8) * 8        # whole 64-byte lines per entry
        return aligned_zeros(entries * cols).reshape(entries, cols)

    def fit(self, key_words):
        """Make entries hold key_words words (a new program's widest table): reallocate if the
        width changes (the entries are then all empty), else keep them (call invalidate())."""
        cols = -(-(C_KEY + key_words) // 8) * 8
        if cols != self.entries.shape[1]:
            self.entries = self._alloc(self.entries.shape[0], key_words)

    def invalidate(self):
        """Make every entry stale (call whenever the rules change)."""
        self.generation += 1

    def live(self):
        """How many entries belong to the current generation (for tests and stats)."""
        return int((self.entries[:, C_GEN] == np.uint64(self.generation)).sum())
