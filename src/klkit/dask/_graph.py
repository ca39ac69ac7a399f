"""The graphs of klkit.dask's dense functions: a reduction over a split axis
cut into the kernels' own pieces.

The kernels read a row in chunks of CHUNK elements from its start (blocks
of BLOCK inside a chunk, TILE-sized tiles of a long logsumexp row), and a
chunk's floating-point sums cannot be rebuilt from two halves.  So a row
whose reduced axis is split into dask chunks is cut at the kernels' own
cuts, never at the chunk boundaries:

* every whole piece inside one block is computed by that block's task;
* a piece across a chunk boundary (a "seam") by a task of its own, which
  reads only that piece's elements from the blocks it spans (less than
  one piece per row and boundary).

The pieces' reduction states are then folded left to right in row order
(``tree``: the tree only concatenates them, the last task folds), or, for
KL, whose row loop carries more than a state from chunk to chunk, each
piece continues the loop from the carry the previous piece left
(``chain``).  Either way the kernels compute every number they compute
on the whole row, in the same order: their bits.

Over several reduced axes the row is their C-order flattening (as the
kernels see it): every reduced axis but the first is made one chunk, so
that each block holds a run of the flat row, and the first is cut as one
axis of that run.
"""
import math
from functools import partial

import dask.array as da
import numpy as np

from .. import _kernels
from .._arrays import float_input, kernel_view, moved, rows

#: the kernels' cuts of a row (kernels/cpu/row_chunks.h, dense.c): chunks,
#: the blocks of the log-prob sums, the tiles of a long logsumexp row
CHUNK = 2048
BLOCK = 256
TILE = 1 << 16


# --------------------------------------------------------------------------
# operands and plain per-block maps
# --------------------------------------------------------------------------

def operand(x, name):
    """(dask array, the object common_dtype weighs: x for a Python scalar)."""
    weak = x if type(x) in (bool, int, float) else None
    if not isinstance(x, da.Array):
        x = da.asarray(np.asarray(x))
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(f"{name}: chunk sizes must be known (compute_chunk_sizes())")
    return x, weak


def float_dtype(dt, name):
    """The dtype klkit computes a ``dt`` array in (its checks and messages)."""
    return float_input(np.empty(0, dt), name).dtype


def meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype)


def one_chunk(x, axes):
    return all(len(x.chunks[a]) == 1 for a in axes)


def call_blocks(fn, *blocks, **kw):
    """klkit's function on numpy blocks, its scalar results as 0-d arrays."""
    return np.asarray(fn(*blocks, **kw))


def map_reduce(fn, arrays, axes, keep, dtype, **kw):
    """klkit's reduction ``fn`` on each block (the reduced axes one chunk),
    keep: whether it keeps them (as length 1)."""
    nd = arrays[0].ndim
    f = partial(call_blocks, fn, **kw)
    if keep:
        chunks = tuple((1,) if i in axes else c for i, c in enumerate(arrays[0].chunks))
        return da.map_blocks(f, *arrays, chunks=chunks, dtype=dtype, meta=meta(nd, dtype))
    return da.map_blocks(f, *arrays, drop_axis=list(axes), dtype=dtype,
                         meta=meta(nd - len(axes), dtype))


def map_whole(fn, arrays, axes, keep, dtype, **kw):
    """klkit's reduction per block after rechunking the reduced axes into
    one chunk."""
    arrays = [a.rechunk({ax: -1 for ax in axes}) for a in arrays]
    return map_reduce(fn, arrays, axes, keep, dtype, **kw)


# --------------------------------------------------------------------------
# the flat row and its pieces
# --------------------------------------------------------------------------

class Row:
    """The reduced axes of arrays chunked alike, as one flat row: ``axes``
    (sorted), the first of them ``a0`` the only one that may be split,
    ``inner`` flat elements per index of a0, ``n`` flat elements, and the
    flat [start, stop) of each block along a0."""

    def __init__(self, x, axes):
        self.axes, self.a0 = axes, axes[0]
        self.inner = math.prod(x.shape[a] for a in axes[1:])
        self.n = x.shape[self.a0] * self.inner
        starts = np.cumsum((0,) + x.chunks[self.a0])
        self.spans = [(int(a) * self.inner, int(b) * self.inner)
                      for a, b in zip(starts[:-1], starts[1:])]

    def parts(self, step):
        """The row cut at multiples of ``step`` (and its end), as parts in
        row order: ("block", j, lo, hi), the whole pieces in [lo, hi) inside
        block j, or ("seam", lo, hi), one piece across blocks (flat
        offsets)."""
        out, pos, n = [], 0, self.n
        for j, (s, e) in enumerate(self.spans):
            lo = min(-(-s // step) * step, n)
            hi = n if e == n else e // step * step
            if lo < hi:
                for a in range(pos, lo, step):
                    out.append(("seam", a, min(a + step, n)))
                out.append(("block", j, lo, hi))
                pos = hi
        for a in range(pos, n, step):
            out.append(("seam", a, min(a + step, n)))
        return out

    def block(self, x, j):
        """Block j along a0 of x (every block of the other axes)."""
        return x.blocks[tuple(j if i == self.a0 else slice(None) for i in range(x.ndim))]

    def seam(self, x, lo, hi):
        """x over the a0 indices holding flat [lo, hi) (in the chunks of the
        blocks it comes from: the task of the seam joins them), and the
        flat offset of lo in it."""
        i0, i1 = lo // self.inner, -(-hi // self.inner)
        part = x[tuple(slice(i0, i1) if i == self.a0 else slice(None) for i in range(x.ndim))]
        return part, lo - i0 * self.inner


def layout(xs, axes):
    """The arrays as the pieces read them: the reduced axes other than the
    first one chunk, every array chunked as the first; and their Row."""
    x0 = xs[0].rechunk({a: -1 for a in axes[1:]}) if len(axes) > 1 else xs[0]
    xs = [x0] + [x.rechunk(x0.chunks) for x in xs[1:]]
    return xs, Row(x0, axes)


def flat_views(blocks, names, axes):
    """(views, n_lead, kept shape): the numpy blocks as the kernels read
    them, the reduced axes merged into one flat last axis."""
    views = []
    for b, name in zip(blocks, names):
        v, n_lead, kept = rows(float_input(np.asarray(b), name), axes)
        if v.ndim != n_lead + 1:
            v = v.reshape(kept + (math.prod(v.shape[n_lead:]),))
        views.append(v)
    return views, n_lead, kept


def _in_place(st, kept, axes, ndim):
    """States (rows, k) as an array with the kept axes in place, k along
    the first reduced axis and length 1 along the others."""
    st = st.reshape(kept + (st.shape[-1],) + (1,) * (len(axes) - 1))
    return np.moveaxis(st, list(range(len(kept), ndim)), list(axes))


# --------------------------------------------------------------------------
# reduction states
# --------------------------------------------------------------------------

def state_dtype(kind):
    """The record type of a state kind ("sum": a float64 sum)."""
    be = _kernels.backend()
    return {"lse": be.LSE_STATE, "entropy": be.ENTROPY_STATE, "xent": be.XENT_STATE,
            "kl": be.KL_STATE, "carry": be.KL_CARRY}.get(kind, np.dtype(np.float64))


def kernel_inv_t(inv_t, prec):
    """1/T as the kernels of a precision hold it (float: rounded to float)."""
    return float(np.float32(inv_t)) if prec == "float32" else inv_t


def owned(a):
    """a as the state entry points take it: contiguous and aligned (arrays
    received from other workers may be neither; np.ascontiguousarray keeps
    unaligned data), else a copy."""
    if a.flags.c_contiguous and a.flags.aligned:
        return a
    out = np.empty(a.shape, a.dtype)
    out[...] = a
    return out


def _kernel_states(kind, views, n_lead, prec, inv_t, op):
    """The state of each row of the views (their first n_lead axes the
    batch): lse, entropy or cross-entropy of logits, or the sum of the
    log-probs' terms of ``op`` (kind "sum")."""
    n_rows = math.prod(views[0].shape[:n_lead])
    out = np.zeros(n_rows, state_dtype(kind))
    if n_rows == 0:
        return out
    be = _kernels.backend(*views)
    q = views[1] if len(views) > 1 else None
    if kind == "lse":
        be.lse_rows(views[0], n_lead, out)
    elif kind == "entropy":
        be.div_rows("entropy", "logits", prec, views[0], None, n_lead, inv_t, 0.5, out)
    elif kind == "xent":
        be.div_rows("cross_entropy", "logits", prec, views[0], q, n_lead, inv_t, 0.5, out)
    else:
        be.div_carry(op, "logprobs", prec, views[0], q, n_lead, 1.0, out)
    return out


def _part_states(*blocks, block_id=None, spans, step, kind, axes, names, prec, inv_t, op):
    """The states of the pieces of one part: flat [lo, hi) of the blocks
    (spans[index along a0], relative to the blocks' start; None: no
    piece), cut every ``step`` elements."""
    views, n_lead, kept = flat_views(blocks, names, axes)
    span = spans[block_id[axes[0]] if block_id is not None else 0]
    n_rows = math.prod(kept)
    parts = []
    if span is not None:
        lo, hi = span
        full = (hi - lo) // step
        if full:
            mid = [kernel_view(v[..., lo:lo + full * step].reshape(kept + (full, step)),
                               n_lead + 1) for v in views]
            parts.append(_kernel_states(kind, mid, n_lead + 1, prec, inv_t, op)
                         .reshape(n_rows, full))
        if lo + full * step < hi:
            tail = [v[..., lo + full * step:hi] for v in views]
            parts.append(_kernel_states(kind, tail, n_lead, prec, inv_t, op).reshape(n_rows, 1))
    st = np.concatenate(parts, axis=1) if parts else np.empty((n_rows, 0), state_dtype(kind))
    return _in_place(st, kept, axes, len(blocks[0].shape))


def _fold(kind, st, groups=None):
    """The left fold of the states st[0], st[1], ... (pieces x rows) with the
    kernels' combine; with ``groups`` (a group id per piece, non-decreasing)
    each group first, then the groups, as the kernels fold the TILE pieces
    of a long logsumexp row.  "sum": from 0, as the kernels add block
    sums."""
    if groups is not None:
        ids = np.asarray(groups)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        if len(starts) > 1:
            parts = np.stack([_fold(kind, st[a:b])
                              for a, b in zip(starts, list(starts[1:]) + [len(st)])])
            return _fold(kind, parts)
    if kind == "sum":
        acc = np.zeros(st.shape[1])
        for s in st:
            acc += s
        return acc
    acc = st[0].copy()
    be = _kernels.backend(st)
    for s in st[1:]:
        be.state_combine(kind, acc, s, acc)
    return acc


def state_values(kind, acc, inv_t=1.0, eps=0.0):
    out = np.empty(acc.shape[0], np.float64)
    if out.size:
        _kernels.backend(acc).state_values(kind, owned(acc), out, inv_temp=inv_t, eps=eps)
    return out


def _aggregate(S, axis=None, keepdims=False, *, kind, groups, finish):
    """Fold the concatenated piece states S (the reduced axes in place) of
    each row, and ``finish`` the folded states (rows,) into the result."""
    st = moved(S, axis)
    kept = st.shape[:S.ndim - len(axis)]
    flat = owned(st.reshape(math.prod(kept), math.prod(st.shape[len(kept):])).T)
    res = finish(_fold(kind, flat, groups))
    if keepdims:
        return res.reshape([1 if i in axis else n for i, n in enumerate(S.shape)])
    return res.reshape(kept)


def _identity(x, axis=None, keepdims=None):
    return x


def tree(arrays, axes, kind, names, finish, out_dtype, *, keepdims=False, prec="float64",
         inv_t=1.0, op=None, step=CHUNK, tiles=False):
    """The reduction over ``axes`` of the arrays' rows by the states of their
    pieces (cut every ``step`` elements of the flat row), folded left to
    right by the last task and turned into results by ``finish`` (numpy,
    per row: folded states (rows,) -> values (rows,)).  tiles: the fold in
    TILE groups of a logsumexp row longer than TILE."""
    xs, row = layout(arrays, axes)
    a0, nd, sdt = row.a0, xs[0].ndim, state_dtype(kind)
    parts = row.parts(step)
    kw = dict(step=step, kind=kind, axes=axes, names=names, prec=prec, inv_t=inv_t, op=op)
    spans = [None] * len(row.spans)
    for p in parts:
        if p[0] == "block":
            spans[p[1]] = (p[2] - row.spans[p[1]][0], p[3] - row.spans[p[1]][0])
    counts = [0 if s is None else -(-(s[1] - s[0]) // step) for s in spans]
    chunks = [(1,) if i in axes[1:] else c for i, c in enumerate(xs[0].chunks)]
    chunks[a0] = tuple(counts)
    inside = da.map_blocks(partial(_part_states, spans=spans, **kw), *xs, chunks=tuple(chunks),
                           dtype=sdt, meta=meta(nd, sdt), token=f"klkit-{kind}-pieces")
    # a seam's task takes the reduced axes of its slices joined (contracted
    # under labels of their own), and gives them length 1
    ind = tuple(range(nd))
    joined = tuple(nd + i if i in axes else i for i in ind)
    seq = []
    for p in parts:
        if p[0] == "block":
            seq.append(row.block(inside, p[1]))
            continue
        cut = [row.seam(x, p[1], p[2]) for x in xs]
        off = cut[0][1]
        args = [a for c, _ in cut for a in (c, joined)]
        seq.append(da.blockwise(partial(_part_states, spans=[(off, off + p[2] - p[1])], **kw),
                                ind, *args, new_axes={a: 1 for a in axes}, concatenate=True,
                                dtype=sdt, meta=meta(nd, sdt), token=f"klkit-{kind}-seam"))
    S = seq[0] if len(seq) == 1 else da.concatenate(seq, axis=a0)
    groups = None
    if tiles and row.n > TILE:
        groups = [i * step // TILE for i in range(S.shape[a0])]
    n_out = nd if keepdims else nd - len(axes)
    return da.reduction(S, _identity, partial(_aggregate, kind=kind, groups=groups,
                                              finish=finish),
                        axis=axes, keepdims=keepdims, combine=_identity, concatenate=True,
                        dtype=sdt, meta=meta(n_out, out_dtype), name=f"klkit-{kind}")


# --------------------------------------------------------------------------
# the KL row loop, carried from piece to piece
# --------------------------------------------------------------------------

def empty_carry(n_rows):
    """The carry of rows before their first element (kk_kl_empty, flags 0)."""
    c = np.zeros(n_rows, state_dtype("carry"))
    c["k"]["m"] = c["k"]["mq"] = c["k"]["off_m"] = -np.inf
    c["k"]["off_s"] = -1.0
    return c


def _carry_step(*args, first, span, axes, names, prec, inv_t):
    """The carry after flat [lo, hi) (span) of the blocks, from the carry
    before them (args[0] unless first; kept shape)."""
    carry, blocks = (None, args) if first else (args[0], args[1:])
    views, n_lead, kept = flat_views(blocks, names, axes)
    out = empty_carry(math.prod(kept)) if first else owned(carry.reshape(-1)).copy()
    lo, hi = span
    if out.size:
        _kernels.backend(*views).div_carry("kl_div", "logits", prec, views[0][..., lo:hi],
                                           views[1][..., lo:hi], n_lead, inv_t, out)
    return out.reshape(kept)


def chain(arrays, axes, names, prec, inv_t):
    """The KL carries of the arrays' rows after their last element: the row
    loop run part by part (Row.parts at CHUNK), each part's task continuing
    from the carry of the one before.  Its blocks along the kept axes run
    in parallel; along the row one after another."""
    xs, row = layout(arrays, axes)
    nd, cdt = xs[0].ndim, state_dtype("carry")
    full = tuple(range(nd))
    kept = tuple(i for i in full if i not in axes)
    kw = dict(axes=axes, names=names, prec=prec, inv_t=inv_t)
    carry = None
    for p in row.parts(CHUNK):
        if p[0] == "block":
            start = row.spans[p[1]][0]
            data, span = [row.block(x, p[1]) for x in xs], (p[2] - start, p[3] - start)
        else:
            cut = [row.seam(x, p[1], p[2]) for x in xs]
            data, span = [c for c, _ in cut], (cut[0][1], cut[0][1] + p[2] - p[1])
        args = [] if carry is None else [carry, kept]
        for d in data:
            args += [d, full]
        carry = da.blockwise(partial(_carry_step, first=carry is None, span=span, **kw), kept,
                             *args, concatenate=True, dtype=cdt, meta=meta(len(kept), cdt),
                             token="klkit-kl-carry")
    return carry, xs
