"""The two crypto backends give the same bytes, and the replay window against a naive model.

libcrypto (from numba) and `cryptography` (the reference) run the same random
job lists, every AEAD, both directions; outputs and verdicts must be equal.
The RFC 6479 bitmap window (replay.py) is checked against a plain set of
received numbers under RFC 4303's rule, for windows 64..1024, with random
arrivals in and far outside the window; ESN reconstruction against the
brute-force "the candidate closest to the window" rule.
"""
import os
import random

import numpy as np
import pytest

from softdpu import drops
from softdpu.stages.esp import libcrypto, replay
from softdpu.stages.esp.jobs import J_AAD_LEN, J_OK, J_ROW, J_SA, J_TEXT, J_TEXT_LEN, Jobs
from softdpu.stages.esp.reference import Reference


class _Sa:
    def __init__(self, aead, key, direction, name):
        self.aead, self.key, self.direction, self.name = aead, key, direction, name


AEADS = {"aes-gcm-128": 16, "aes-gcm-256": 32, "chacha20-poly1305": 32}


def _random_jobs(rng, n, n_sa, slot=2048):
    data = np.frombuffer(rng.randbytes(n * slot), np.uint8).reshape(n, slot).copy()
    jobs = Jobs(n)
    for j in range(n):
        length = rng.choice([0, 1, 2, 3, 15, 16, 17, 64, 511, 1400, 1900])
        jobs.jobs[j, [J_ROW, J_SA, J_TEXT, J_TEXT_LEN, J_AAD_LEN]] = (
            j, rng.randrange(n_sa), rng.randrange(0, slot - length - 16), length, rng.choice([8, 12]))
        jobs.nonce[j] = np.frombuffer(rng.randbytes(16), np.uint8)
        jobs.aad[j] = np.frombuffer(rng.randbytes(16), np.uint8)
    return data, jobs


def _need_libcrypto():
    """Skip without libcrypto (the fallback is then what runs), except under CI where it must load."""
    if not libcrypto.AVAILABLE:
        if os.environ.get("CI"):
            pytest.fail("libcrypto could not be loaded: the ESP fast path is missing")
        pytest.skip("libcrypto could not be loaded")


def test_libcrypto_loads():
    _need_libcrypto()
    assert libcrypto.crypt_jobs is not None


@pytest.mark.parametrize("aead", AEADS)
def test_backends_give_identical_bytes(aead):
    _need_libcrypto()
    rng = random.Random(aead)
    sas_out = [_Sa(aead, rng.randbytes(AEADS[aead]), "out", f"s{k}") for k in range(3)]
    sas_in = [_Sa(aead, s.key, "in", s.name) for s in sas_out]
    data, jobs = _random_jobs(rng, 200, 3)
    a, b = data.copy(), data.copy()
    ja, jb = jobs.jobs.copy(), jobs.jobs.copy()
    libcrypto.Contexts(sas_out).run(ja, 200, a, jobs.nonce, jobs.aad)
    Reference(sas_out).run(jb, 200, b, jobs.nonce, jobs.aad)
    assert (ja[:, J_OK] == 1).all() and (jb[:, J_OK] == 1).all()
    assert np.array_equal(a, b)
    assert not np.array_equal(a, data)
    # decrypt (one job per row): back to the plaintext, except where a tag bit was flipped
    for j in range(0, 200, 7):
        r, off, n = ja[j, J_ROW], ja[j, J_TEXT], ja[j, J_TEXT_LEN]
        a[r, off + n + 5] ^= 0x10
        b[r, off + n + 5] ^= 0x10
    ja[:, J_OK] = -1
    jb[:, J_OK] = -1
    libcrypto.Contexts(sas_in).run(ja, 200, a, jobs.nonce, jobs.aad)
    Reference(sas_in).run(jb, 200, b, jobs.nonce, jobs.aad)
    assert np.array_equal(ja[:, J_OK], jb[:, J_OK])
    assert (ja[::7, J_OK] == 0).all() and ja[:, J_OK].sum() == 200 - len(range(0, 200, 7))
    good = ja[:, J_OK] == 1
    for j in np.flatnonzero(good):
        r, off, n = ja[j, J_ROW], ja[j, J_TEXT], ja[j, J_TEXT_LEN]
        assert bytes(a[r, off: off + n]) == bytes(b[r, off: off + n]) == bytes(data[r, off: off + n])


class Naive:
    """RFC 4303 3.4.3 with a set: accept q when q > top, or top - W < q <= top and not seen."""

    def __init__(self, window):
        self.w, self.top, self.seen = window, 0, set()

    def check(self, q):
        if q <= 0 or q + self.w <= self.top:
            return drops.ESP_TOO_OLD
        if q > self.top:
            return 0
        return drops.ESP_REPLAY if q in self.seen else 0

    def update(self, q):
        self.top = max(self.top, q)
        self.seen.add(q)


@pytest.mark.parametrize("window", [64, 128, 1024])
def test_replay_window_matches_naive_model(window):
    rng = random.Random(window)
    nblocks = window // 64 + 1
    bitmap = np.zeros((2, nblocks), np.uint64)
    seqs = np.zeros(2, np.int64)
    model = Naive(window)
    q = 0
    for step in range(20000):
        r = rng.random()
        if r < 0.5:
            q = model.top + rng.randint(1, 3)                  # in order, small gaps
        elif r < 0.8:
            q = model.top - rng.randint(0, window + 5)          # reordered / replayed / just too old
        elif r < 0.95:
            q = model.top + rng.randint(1, 5 * window)          # a jump
        else:
            q = rng.randint(0, model.top + 2)
        want = model.check(q)
        got = replay.check(bitmap, 1, seqs[1], window, nblocks, q)
        assert got == want, (step, q, model.top)
        if want == 0:
            replay.update(bitmap, 1, seqs, nblocks, q)
            model.update(q)
            assert seqs[1] == model.top


def _esn_brute(top, window, low):
    """The high half that puts q = high:low nearest to the window [top - W + 1, ...] (RFC 4303 A2.2)."""
    th = top >> 32
    bottom = top - window + 1
    for hi in (th - 1, th, th + 1):
        q = (hi << 32) | low
        if hi >= 0 and q >= bottom and q < bottom + (1 << 32):
            return hi
    return -1


def test_esn_reconstruction():
    rng = random.Random(7)
    for _ in range(20000):
        window = rng.choice([64, 1024])
        top = rng.choice([rng.randrange(window, 1 << 40), (rng.randrange(1, 300) << 32) + rng.randrange(0, 2 * window),
                          (rng.randrange(1, 300) << 32) - rng.randrange(0, 2 * window)])
        low = rng.choice([rng.randrange(0, 1 << 32), (top + rng.randrange(-2 * window, 2 * window)) & 0xFFFFFFFF])
        assert replay.esn_high(top, window, low) == _esn_brute(top, window, low), (top, window, low)
