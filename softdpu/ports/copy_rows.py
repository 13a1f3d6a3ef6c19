"""copy_rows: move packets between batches (slot bytes and metadata), one kernel call;
copy_row: one packet to another row of the same batch (a clone), inside a kernel."""
from softdpu._jit import njit
from softdpu.batch import M_LEN, M_START


@njit
def copy_rows(src_data, src_meta, rows, dst_data, dst_meta, dst_rows):
    """Copy packet rows[k] of the source batch into row dst_rows[k] of the destination."""
    cols = src_meta.shape[1]
    for k in range(rows.shape[0]):
        i = rows[k]
        o = dst_rows[k]
        for c in range(cols):
            dst_meta[o, c] = src_meta[i, c]
        s = src_meta[i, M_START]
        src = src_data[i, s: s + src_meta[i, M_LEN]]
        dst = dst_data[o, s: s + src_meta[i, M_LEN]]
        for b in range(src.shape[0]):
            dst[b] = src[b]


@njit(alloc=False)
def copy_row(data, meta, src, dst):
    """Copy packet row src (its metadata and the bytes of its frame) into row dst of the same batch."""
    for m in range(meta.shape[1]):
        meta[dst, m] = meta[src, m]
    s = meta[src, M_START]
    for b in range(s, s + meta[src, M_LEN]):
        data[dst, b] = data[src, b]
