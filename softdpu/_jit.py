"""The one numba decorator every kernel uses, with its flags in one place.

cache=True so a second process loads compiled kernels from disk instead of
compiling them again; nogil=True so kernels can run beside other threads;
boundscheck off and the numpy error model so the hot loops carry no Python
exception checks.  Kernels must therefore never index past an array: every
read of packet bytes is guarded by an explicit length check.

Two opt-ins for small helpers on the hot path:
  alloc=False   compile without numba's runtime (reference counting): the
                function may not allocate, and callers pay no incref/decref
                per array argument (the parser went from 86 to 14 ns/packet)
  inline=True   inline at numba IR level into every caller

Note: numba's cache is keyed on each function's own source file, so after
editing a helper in another module, clear stale caches
(`find softdpu -name '*.nb?' -delete`).
"""
import numba

_FLAGS = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")


def njit(fn=None, *, alloc=True, inline=False, **overrides):
    """Compile `fn` in nopython mode with softdpu's flags (usable bare or with args)."""
    flags = {**_FLAGS, **overrides}
    if not alloc:
        flags["_nrt"] = False
    if inline:
        flags["inline"] = "always"
    if fn is None:
        return lambda f: numba.njit(**flags)(f)
    return numba.njit(**flags)(fn)
