"""The inbound anti-replay window (RFC 4303 3.4.3) as RFC 6479's bitmap, and ESN reconstruction.

Per SA: `top`, the highest sequence number accepted so far (0 before any),
and a ring of `nblocks` = window/64 + 1 64-bit words.  Sequence number q
owns bit q % 64 of word (q / 64) % nblocks.  The spare word lets the window
slide a word at a time: moving `top` forward clears only the words it
passes over, never shifts bits (RFC 6479 section 2):

      word (q>>6) % nblocks:  | w0 | w1 | w2 | ... | w_nblocks-1 |
                                 ^ top's word; words after it up to the new top are cleared

check (before decryption, changes nothing):
    q == 0 or q + window <= top      -> too old
    q > top                          -> new
    bit set                          -> replay
update (after a good ICV): slide if q > top, then set q's bit.

ESN (RFC 4303 appendix A2.2): only the low 32 bits travel; the high half is
guessed from the window: the one that puts q inside or right of it.
Sequence numbers are kept in int64 (ESN counters up to 2^63 - 1).
"""
import numpy as np

from softdpu import drops
from softdpu._jit import njit

LOW = 0xFFFFFFFF


@njit(alloc=False)
def esn_high(top, window, low):
    """The high 32 bits of a received ESN sequence number (RFC 4303 A2.2), -1 if below 0."""
    tl = top & LOW
    th = top >> 32
    if tl >= window - 1:                 # case A: the window does not span a 2^32 boundary
        if low >= tl - window + 1:
            return th
        return th + 1
    if low >= ((tl - window + 1) & LOW):  # case B: it does; low is in its upper part
        return th - 1
    return th


@njit(alloc=False)
def check(bitmap, s, top, window, nblocks, q):
    """0 when q may be accepted, else drops.ESP_TOO_OLD / drops.ESP_REPLAY."""
    if q <= 0 or q + window <= top:
        return drops.ESP_TOO_OLD
    if q > top:
        return 0
    word = bitmap[s, (q >> 6) % nblocks]
    if (word >> np.uint64(q & 63)) & np.uint64(1):
        return drops.ESP_REPLAY
    return 0


@njit(alloc=False)
def update(bitmap, s, seqs, nblocks, q):
    """Record q as received (after its ICV checked); slides the window when q is new."""
    top = seqs[s]
    if q > top:
        cur = top >> 6
        diff = (q >> 6) - cur
        if diff > nblocks:
            diff = nblocks
        for k in range(1, diff + 1):
            bitmap[s, (cur + k) % nblocks] = np.uint64(0)
        seqs[s] = q
    b = (q >> 6) % nblocks
    bitmap[s, b] |= np.uint64(1) << np.uint64(q & 63)
