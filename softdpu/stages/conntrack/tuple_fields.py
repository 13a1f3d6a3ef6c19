"""The connection's original tuple as flow fields: ct_nw_src/dst, ct_ipv6_src/dst, ct_nw_proto,
ct_tp_src/dst (key words W_CT_TUPLE.., softdpu.key), from the row ct_execute left in `out`.

As Open vSwitch, they are set when the packet resumes after ct(table=N) (with ct_state) and
are zero for an untracked packet, an invalid one, or after ct_clear.
"""
import numpy as np

from softdpu._jit import njit
from softdpu.key import W_CT_TUPLE
from softdpu.stages.conntrack.execute import O_DST_HI, O_DST_LO, O_PORTS, O_PROTO, O_SRC_HI, O_SRC_LO, OP_PRESENT

M32 = np.uint64(0xFFFFFFFF)


@njit(alloc=False, inline=True)
def clear_tuple(key, i):
    for w in range(W_CT_TUPLE, W_CT_TUPLE + 6):
        key[i, w] = 0


@njit(alloc=False, inline=True)
def put_tuple(key, i, out):
    """key row i's ct tuple words from out row i (execute.O_* columns)."""
    clear_tuple(key, i)
    proto = out[i, O_PROTO]
    if not proto & np.uint64(OP_PRESENT):
        return
    if (proto >> np.uint64(8)) & np.uint64(1):
        key[i, W_CT_TUPLE + 2] = out[i, O_SRC_HI]
        key[i, W_CT_TUPLE + 3] = out[i, O_SRC_LO]
        key[i, W_CT_TUPLE + 4] = out[i, O_DST_HI]
        key[i, W_CT_TUPLE + 5] = out[i, O_DST_LO]
    else:
        key[i, W_CT_TUPLE] = ((out[i, O_SRC_LO] & M32) << np.uint64(32)) | (out[i, O_DST_LO] & M32)
    key[i, W_CT_TUPLE + 1] = ((proto & np.uint64(0xFF)) << np.uint64(32)) | (out[i, O_PORTS] & M32)
