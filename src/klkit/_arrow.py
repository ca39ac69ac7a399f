"""Arrow list arrays as packed sequences (values, starts, lengths).

Imported only when an Arrow object is passed (segments.py), so pyarrow is
never needed otherwise.  A ListArray / LargeListArray, sliced or not, is
read in place: its child values buffer and its offsets become the packed
layout the segment kernels take (a copy only for integer or boolean values,
which become float64).  A ChunkedArray is one such part per chunk.  A null
list is an empty sequence; a null value inside a list is a ValueError.
"""
import numpy as np
import pyarrow as pa

from ._arrays import float_input, kernel_view


def chunks(arr, name):
    """(list arrays, value type) of a ListArray / LargeListArray / ChunkedArray."""
    if isinstance(arr, pa.ChunkedArray):
        parts, typ = arr.chunks, arr.type
    elif isinstance(arr, (pa.ListArray, pa.LargeListArray)):
        parts, typ = [arr], arr.type
    else:
        raise TypeError(f"{name}: expected a pyarrow ListArray, LargeListArray or ChunkedArray "
                        f"of lists, got {type(arr).__name__}")
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise TypeError(f"{name}: expected a list type, got {typ}")
    vt = typ.value_type
    if not (pa.types.is_floating(vt) or pa.types.is_integer(vt) or pa.types.is_boolean(vt)):
        raise TypeError(f"{name}: expected lists of numbers, got {typ}")
    return parts, vt


def value_dtype(vt):
    """The NumPy dtype of an Arrow value type."""
    if pa.types.is_boolean(vt):
        return np.dtype(np.bool_)
    return np.dtype(vt.to_pandas_dtype())


def _values(child, name):
    """The child values of a list array as a NumPy array, in place if possible."""
    n, off = len(child), child.offset
    dt = value_dtype(child.type)
    if dt.kind == "b":
        x = _bits(child.buffers()[1], off, n)
    elif n == 0:
        x = np.empty(0, dt)
    else:
        x = np.frombuffer(child.buffers()[1], dtype=dt, count=off + n)[off:]
    return kernel_view(float_input(x, name))     # (a buffer may be unaligned: then a copy)


# Arrow's buffers are read directly: Array.to_numpy would import pandas
# (a second of start-up) the first time it is called.

def _bits(buf, offset, n):
    """Bits offset .. offset + n of an Arrow bitmap (LSB first) as bools."""
    if n == 0:
        return np.zeros(0, bool)
    first, end = offset // 8, (offset + n + 7) // 8
    bits = np.unpackbits(np.frombuffer(buf, np.uint8, end - first, first), bitorder="little")
    return bits[offset % 8:offset % 8 + n].view(bool)


def valid(a):
    """The validity of an array's slots as a bool array."""
    bitmap = a.buffers()[0]
    return np.ones(len(a), bool) if bitmap is None else _bits(bitmap, a.offset, len(a))


def offsets(a):
    """The len(a) + 1 offsets of a (sliced) list array, int32 or int64."""
    dt = np.dtype(np.int64 if pa.types.is_large_list(a.type) else np.int32)
    buf = a.buffers()[1]
    if buf is None or buf.size < (a.offset + len(a) + 1) * dt.itemsize:
        return np.zeros(len(a) + 1, dt)   # an empty array may come without offsets
    return np.frombuffer(buf, dt, len(a) + 1, a.offset * dt.itemsize)


def part(a, name):
    """(values, starts, lens) of one ListArray / LargeListArray."""
    child = a.values                      # the whole child; a slice moves the offsets
    off = offsets(a)
    starts = off[:-1].astype(np.int64)
    lens = np.diff(off).astype(np.int64)
    if a.null_count:                      # a null list is empty (its slot may not be)
        lens[~valid(a)] = 0
    x = _values(child, name)
    if child.null_count and lens.size:
        null = ~valid(child)
        cum = np.concatenate([[0], np.cumsum(null, dtype=np.int64)])
        bad = np.flatnonzero(cum[starts + lens] - cum[starts])
        if bad.size:
            raise NullInList(name, int(bad[0]))
    return x, starts, lens


class NullInList(ValueError):
    """A null value inside a list (``sequence``: the list's index)."""

    def __init__(self, name, sequence):
        super().__init__(f"{name}: sequence {sequence} holds a null value (only whole null "
                         "lists are allowed: they are empty sequences)")
        self.sequence = sequence


def packed(arr, name):
    """(parts, dtype): one (values, starts, lens) per chunk of an Arrow list
    array, and the floating dtype its values are computed in."""
    lists, vt = chunks(arr, name)
    parts = [part(c, name) for c in lists]
    dtype = parts[0][0].dtype if parts else float_input(np.empty(0, value_dtype(vt)), name).dtype
    return parts, dtype


def same_chunking(logp, ref_logp):
    """logp and ref_logp with matching chunks: two ChunkedArrays chunked
    differently are each combined into one array (a copy)."""
    if isinstance(logp, pa.ChunkedArray) or isinstance(ref_logp, pa.ChunkedArray):
        cp = logp.chunks if isinstance(logp, pa.ChunkedArray) else [logp]
        cq = ref_logp.chunks if isinstance(ref_logp, pa.ChunkedArray) else [ref_logp]
        if [len(c) for c in cp] != [len(c) for c in cq]:
            if isinstance(logp, pa.ChunkedArray):
                logp = logp.combine_chunks()
            if isinstance(ref_logp, pa.ChunkedArray):
                ref_logp = ref_logp.combine_chunks()
    return logp, ref_logp


def flat(x, starts, lens):
    """The values of the packed sequences (x, starts, lens) back to back: a
    view where they already lie so (an unsliced array without null lists
    that hold values), else one gather."""
    if lens.size == 0:
        return x[:0]
    ends = starts + lens
    if np.array_equal(starts[1:], ends[:-1]):
        return x[starts[0]:ends[-1]]
    first = np.cumsum(lens) - lens
    return x[np.arange(int(lens.sum())) + np.repeat(starts - first, lens)]


def lists_like(template, values, lens):
    """A list array of template's kind (list or large list) and null lists,
    whose lists hold ``values`` back to back, lens[i] in list i."""
    large = pa.types.is_large_list(template.type)
    off = np.zeros(lens.size + 1, np.int64 if large else np.int32)
    np.cumsum(lens, out=off[1:])
    cls = pa.LargeListArray if large else pa.ListArray
    mask = pa.array(~valid(template)) if template.null_count else None
    return cls.from_arrays(pa.array(off), pa.array(values), mask=mask)

