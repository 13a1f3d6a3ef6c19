"""The one numba decorator every kernel uses, with its flags in one place.

cache=True so a second process loads compiled kernels from disk instead of
compiling them again; nogil=True so kernels can run beside other threads;
boundscheck off and the numpy error model so the hot loops carry no Python
exception checks.  Kernels must therefore never index past an array: every
read of packet bytes is guarded by an explicit length check.
"""
import numba

_FLAGS = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


def njit(fn=None, **overrides):
    """Compile `fn` in nopython mode with softdpu's flags (usable bare or with args)."""
    flags = {**_FLAGS, **overrides}
    if fn is None:
        return lambda f: numba.njit(**flags)(f)
    return numba.njit(**flags)(fn)
