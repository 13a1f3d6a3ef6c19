"""OpenSSL libcrypto's EVP AEAD API, called from numba kernels: the ESP fast path.

At import the library is loaded with ctypes (which also sets up the
contexts from Python), and the addresses of the four functions the kernel
calls per packet (ctypes function pointers) are registered with LLVM under
softdpu_* names (llvmlite's add_symbol); the @njit kernel calls those names
as numba ExternalFunctions.  Unlike ctypes function objects baked into a
kernel as constant addresses, named symbols let the kernel be cached on disk
like every other softdpu kernel: a later process registers the addresses
again before it loads the kernel.  The names are softdpu's own, so another
libcrypto in the process cannot be picked by mistake: the functions that
run are those of the library that made the contexts.

One EVP_CIPHER_CTX per SA, created with its cipher and key once
(`Contexts`); per packet the kernel only sets the nonce (salt | IV), feeds
the AAD, runs the cipher in place over the packet's bytes in the batch and
gets (encrypt) or checks (decrypt) the 16-byte tag:

    EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, -1)
    EVP_CipherUpdate(ctx, NULL, &outl, aad, aad_len)
    EVP_CipherUpdate(ctx, text, &outl, text, text_len)
    [decrypt: EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag)]
    EVP_CipherFinal_ex(ctx, text + outl, &outl)
    [encrypt: EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag)]

AVAILABLE is False when libcrypto (3.x or 1.1) cannot be loaded; the ESP
stage then uses the `cryptography` package (reference.py) instead.
"""
import ctypes
import ctypes.util
import weakref

import numpy as np

from softdpu._jit import njit
from softdpu.stages.esp.jobs import (J_AAD_LEN, J_OK, J_ROW, J_SA, J_TEXT, J_TEXT_LEN, TAG_LEN)

EVP_CTRL_AEAD_SET_IVLEN = 0x9
EVP_CTRL_AEAD_GET_TAG = 0x10
EVP_CTRL_AEAD_SET_TAG = 0x11
CIPHER_FUNCS = {"aes-gcm-128": "EVP_aes_128_gcm", "aes-gcm-256": "EVP_aes_256_gcm",
                "chacha20-poly1305": "EVP_chacha20_poly1305"}


FUNCS = ("EVP_CipherInit_ex", "EVP_CipherUpdate", "EVP_CipherFinal_ex", "EVP_CIPHER_CTX_ctrl")


def _load():
    """libcrypto through ctypes, its four per-packet functions' addresses registered with LLVM
    under softdpu_* names (the kernel calls those), or None."""
    names = [ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"]
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            addrs = {f: ctypes.cast(getattr(lib, f), ctypes.c_void_p).value for f in FUNCS}
            for f in CIPHER_FUNCS.values():
                getattr(lib, f)      # noqa: B018 (the ciphers are there)
        except (OSError, AttributeError):
            continue
        try:
            import llvmlite.binding as llvm
            for f, addr in addrs.items():
                llvm.add_symbol(f"softdpu_{f}", addr)
        except Exception:       # noqa: BLE001 -- no LLVM symbols: use the fallback
            return None
        return lib
    return None


_LIB = _load()
AVAILABLE = _LIB is not None

if AVAILABLE:
    from numba import types

    _ip, _i32 = types.intp, types.int32
    _init = types.ExternalFunction("softdpu_EVP_CipherInit_ex", _i32(_ip, _ip, _ip, _ip, _ip, _i32))
    _update = types.ExternalFunction("softdpu_EVP_CipherUpdate", _i32(_ip, _ip, _ip, _ip, _i32))
    _final = types.ExternalFunction("softdpu_EVP_CipherFinal_ex", _i32(_ip, _ip, _ip))
    _ctrl = types.ExternalFunction("softdpu_EVP_CIPHER_CTX_ctrl", _i32(_ip, _i32, _i32, _ip))
    _LIB.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    _LIB.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
    _LIB.EVP_CipherInit_ex.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int]
    _LIB.EVP_CIPHER_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    for _f in CIPHER_FUNCS.values():
        getattr(_LIB, _f).restype = ctypes.c_void_p

    @njit
    def crypt_jobs(ctxs, jobs, n_jobs, data, nonce, aad, outl):
        """Run the AEAD of each job in place (jobs.py).  Encrypting contexts write the tag after
        the text; decrypting ones check it and set J_OK (1 good, 0 not).  outl: int32[4] scratch."""
        base = data.ctypes.data
        stride = data.shape[1]
        nbase = nonce.ctypes.data
        abase = aad.ctypes.data
        ol = outl.ctypes.data
        for j in range(n_jobs):
            ctx = ctxs[jobs[j, J_SA]]
            row = jobs[j, J_ROW]
            text = base + row * stride + jobs[j, J_TEXT]
            n = jobs[j, J_TEXT_LEN]
            tag = text + n
            ok = _init(ctx, 0, 0, 0, nbase + j * 16, np.int32(-1)) == 1
            ok = ok and _update(ctx, 0, ol, abase + j * 16, np.int32(jobs[j, J_AAD_LEN])) == 1
            if n > 0:
                ok = ok and _update(ctx, text, ol, text, np.int32(n)) == 1
            if jobs[j, J_OK] < 0:                    # decrypt: -1 marks the job
                ok = ok and _ctrl(ctx, np.int32(EVP_CTRL_AEAD_SET_TAG), np.int32(TAG_LEN), tag) == 1
                ok = ok and _final(ctx, text + n, ol) == 1
            else:
                ok = ok and _final(ctx, text + n, ol) == 1
                ok = ok and _ctrl(ctx, np.int32(EVP_CTRL_AEAD_GET_TAG), np.int32(TAG_LEN), tag) == 1
            jobs[j, J_OK] = 1 if ok else 0


def _free_all(ptrs):
    for p in ptrs:
        if p:
            _LIB.EVP_CIPHER_CTX_free(int(p))


class Contexts:
    """One EVP_CIPHER_CTX per SA, keyed once; `ptrs` (int64[n]) is what crypt_jobs takes.
    Freed with the object."""

    def __init__(self, sas):
        self.ptrs = np.zeros(max(len(sas), 1), np.int64)
        self._finalizer = weakref.finalize(self, _free_all, self.ptrs)
        for k, sa in enumerate(sas):
            ctx = _LIB.EVP_CIPHER_CTX_new()
            if not ctx:
                raise MemoryError("EVP_CIPHER_CTX_new failed")
            self.ptrs[k] = ctx
            cipher = getattr(_LIB, CIPHER_FUNCS[sa.aead])()
            enc = 1 if sa.direction == "out" else 0
            if (_LIB.EVP_CipherInit_ex(ctx, cipher, None, None, None, enc) != 1
                    or _LIB.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, None) != 1
                    or _LIB.EVP_CipherInit_ex(ctx, None, None, sa.key, None, enc) != 1):
                raise RuntimeError(f"libcrypto refused SA {sa.name!r} ({sa.aead})")
        self.outl = np.zeros(4, np.int32)

    def run(self, jobs, n_jobs, data, nonce, aad):
        crypt_jobs(self.ptrs, jobs, n_jobs, data, nonce, aad, self.outl)
