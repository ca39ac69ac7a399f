"""klkit on Dask: the dense functions on dask arrays, the segment functions
on dask DataFrames of Arrow list columns.

    import klkit.dask as kd
    lse = kd.logsumexp(x, axis=-1)           # a dask array; nothing computed yet
    lse.compute()

Everything here is lazy: each function checks its arguments at once (klkit's
checks and messages) and returns a dask array (0-d for a full reduction) or
a dask Series; the kernels run when it is computed, one task per block or
partition, on any scheduler (threads, processes, ``distributed``).  Results
have klkit's dtypes.

Dense functions (logsumexp, softmax, log_softmax, entropy, cross_entropy,
kl_div, js_div), by how the reduced axes are chunked:

* Every reduced axis one chunk (other axes chunked any way): klkit's own
  function on each block (``map_blocks``).  A row's result does not depend
  on the other rows, so these are klkit's results on the whole array, bit
  for bit.
* A reduced axis split into several chunks: a tree reduction of the
  kernels' reduction states (the log-sum-exp pair (max, scaled sum); the
  entropy and KL sums of kernels/include/klkit).  Each block gives its
  rows' states, the tree concatenates them (no arithmetic), and the last
  task folds them left to right, in chunk order, with the kernels' own
  combine.  The results therefore do not depend on the tree's fan-in
  (``split_every``), the scheduler or the number of workers.  Along one
  split axis each block's rows are cut where the kernels cut a row (every
  2048 elements from the row's start); over several reduced axes each
  block gives one state per row.  Compared with klkit on the computed array
  (measured over random rows of every input dtype, special values included):

  - logsumexp, log_softmax, entropy (from logits or probs), where every
    chunk boundary of the one split axis is a multiple of 2048: the states
    are the kernels' own and so is the fold, so the results are klkit's,
    bit for bit, for rows of any length.  softmax there: within 2 ulp (its
    exp is NumPy's, rounded once from float64).
  - Boundaries elsewhere, or several reduced axes: logsumexp and
    log_softmax within 2 ulp (measured 1 and 2), entropy within 2 ulp
    (float64 with a temperature: 4), softmax within 3 ulp (float64: 5,
    the rounding of the folded sum in 1 / (1 + s)).  Where the log-sum-exp
    cancels (a result much smaller than the maximum m), the ulps are those
    of |m| + log1p(s), as for klkit itself.  Chunks of multiples of 2048
    along the reduced axis are the ones to choose.
  - kl_div from logits or probs: within the kernels' own error bound, 4e-7
    relative for 16/32-bit input and 1e-14 for float64, where the logit
    differences are moderate (up to 3 at temperatures >= 1, the range of
    tests/test_states.py; measured <= 2.9e-7 and 1.6e-15).  A block's
    state cannot know the shift the kernel would take from the row so far,
    so some rows are recomputed whole: the blocks of those rows are
    gathered and klkit's kl_div runs on them (klkit's bits).  These are rows
    with huge logits (whose rounding exceeds 1e-3 nats, e.g. 1e20: the sums
    are not usable), rows whose fold moved sums between shifts more than 4
    nats apart (KL_MOVE_MAX), and rows whose value amplifies the sums'
    rounding more than 16 times (KL_COND_MAX).  Measured over random rows:
    with logit differences up to 1 at temperature 1, none were; with
    differences of 0.3 to 3 at temperatures 0.7 to 2.5, about a fifth; with
    log-ratio spreads of ~10 nats, nearly all.  To allow this, the input blocks of a row block stay in memory
    until its states are folded.
  - cross_entropy from logits or probs: H(P) + KL(P||Q) from the entropy
    and KL states, within the KL bound (measured <= 2.5e-7 and 7.5e-16);
    rows are recomputed whole as for kl_div.
  - kind="logprobs" (entropy, cross_entropy, kl_div): the kernels' sum per
    block, the blocks' sums added in float64 left to right: within 1 ulp
    for 16/32-bit input, 5 ulp (measured) for float64.
  - kind="probs": log p per block in the working precision (as klkit),
    then the logits path above.
  - Rechunked into one chunk along the reduced axes, then klkit per block
    (bit for bit): js_div (it has no state), logsumexp with ``b`` or
    ``return_sign``, complex input, temperatures beyond the kernels' range
    (klkit's NumPy twin), and reduced axes of total length 0.

Segment functions (seq_kl, segment_sum, segment_mean, segment_max,
segment_logsumexp) take a dask DataFrame whose columns are Arrow lists
(pandas ArrowDtype, as ``dask.dataframe.read_parquet(...,
dtype_backend="pyarrow")`` gives) and return a float dask Series aligned
with its index: one task per partition, each handing the partition's
Arrow arrays (the ChunkedArray pandas holds) to klkit, which reads them in
place.  A sequence's result depends only on its own tokens, so the results
are klkit's on the whole column, bit for bit.
"""
import math
from functools import partial

try:
    import dask.array as da
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('klkit.dask needs dask: pip install "klkit[dask]"') from e

import numpy as np

from . import _args, _kernels
from . import dense as _dense
from . import divergence as _divergence
from . import segments as _segments
from ._arrays import (common_dtype, float_input, kernel_precision, kernel_view, moved,
                      precision, result_dtype, rows)

__all__ = ["logsumexp", "softmax", "log_softmax", "entropy", "cross_entropy", "kl_div",
           "js_div", "seq_kl", "segment_sum", "segment_mean", "segment_max",
           "segment_logsumexp"]

#: where the kernels cut a row (kernels/cpu/row_chunks.h), and the pieces a
#: logsumexp row longer than TILE is computed in (kernels/cpu/dense.c)
CHUNK = 2048
TILE = 1 << 16
#: a KL row whose fold moved sums between shifts further apart than this
#: (nats), or whose value amplifies the sums' rounding more than KL_COND_MAX
#: times, is recomputed whole (_kl_check)
KL_MOVE_MAX = 4.0
KL_COND_MAX = 16.0

_STATES = {"lse": "LSE_STATE", "entropy": "ENTROPY_STATE", "kl": "KL_STATE"}
#: a folded KL state and the largest shift its fold moved sums by
_KL_CHECKED = np.dtype([("st", _kernels.backend().KL_STATE), ("move", "f8")])


def _state_dtype(kind):
    return getattr(_kernels.backend(), _STATES[kind]) if kind in _STATES else np.dtype(np.float64)


# --------------------------------------------------------------------------
# operands
# --------------------------------------------------------------------------

def _operand(x, name):
    """(dask array, the object common_dtype weighs: x for a Python scalar)."""
    weak = x if type(x) in (bool, int, float) else None
    if not isinstance(x, da.Array):
        x = da.asarray(np.asarray(x))
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError(f"{name}: chunk sizes must be known (compute_chunk_sizes())")
    return x, weak


def _float_dtype(dt, name):
    """The dtype klkit computes a ``dt`` array in (its checks and messages)."""
    return float_input(np.empty(0, dt), name).dtype


def _meta(ndim, dtype):
    return np.empty((0,) * ndim, dtype)


def _one_chunk(x, axes):
    return all(len(x.chunks[a]) == 1 for a in axes)


def _call_blocks(fn, *blocks, **kw):
    """klkit's function on numpy blocks, its scalar results as 0-d arrays."""
    return np.asarray(fn(*blocks, **kw))


def _map_reduce(fn, arrays, axes, keep, dtype, **kw):
    """klkit's reduction ``fn`` on each block (the reduced axes one chunk),
    keep: whether it keeps them (as length 1)."""
    nd = arrays[0].ndim
    f = partial(_call_blocks, fn, **kw)
    if keep:
        chunks = tuple((1,) if i in axes else c for i, c in enumerate(arrays[0].chunks))
        return da.map_blocks(f, *arrays, chunks=chunks, dtype=dtype, meta=_meta(nd, dtype))
    return da.map_blocks(f, *arrays, drop_axis=list(axes), dtype=dtype,
                         meta=_meta(nd - len(axes), dtype))


# --------------------------------------------------------------------------
# reduction states of blocks, and their fold
# --------------------------------------------------------------------------

def _pieces(offset, length):
    """(head, full, tail): a block of ``length`` elements starting at element
    ``offset`` of its rows, cut at the rows' multiples of CHUNK."""
    head = min(length, -offset % CHUNK)
    full = (length - head) // CHUNK
    return head, full, length - head - full * CHUNK


def _piece_layout(chunks):
    """Block offsets along the axis, pieces per block and the row chunk
    (index of its CHUNK) of every piece, in order."""
    offsets, counts, where = [], [], []
    o = 0
    for n in chunks:
        head, full, tail = _pieces(o, n)
        offsets.append(o)
        counts.append((head > 0) + full + (tail > 0))
        i = o // CHUNK
        if head:
            where.append(i)
            i += 1
        where.extend(range(i, i + full))
        if tail:
            where.append(i + full)
        o += n
    return offsets, counts, where


def _owned(a):
    """a as the state entry points take it: contiguous and aligned (arrays
    received from other workers may be neither; np.ascontiguousarray keeps
    unaligned data), else a copy."""
    if a.flags.c_contiguous and a.flags.aligned:
        return a
    out = np.empty(a.shape, a.dtype)
    out[...] = a
    return out


def _kernel_states(kind, views, n_lead, prec, inv_t, op=None):
    """The states of the rows of the views (their first n_lead axes the batch):
    one record (kinds lse, entropy, kl) or float64 sum (kind "sum": op of
    logprobs) per row."""
    n_rows = math.prod(views[0].shape[:n_lead])
    out = np.empty(n_rows, _state_dtype(kind))
    if n_rows == 0:
        return out
    be = _kernels.backend(*views)
    if kind == "lse":
        be.lse_rows(views[0], n_lead, out)
    elif kind == "entropy":
        be.div_rows("entropy", "logits", prec, views[0], None, n_lead, inv_t, 0.5, out)
    elif kind == "kl":
        be.div_rows("kl_div", "logits", prec, views[0], views[1], n_lead, inv_t, 0.5, out)
    else:
        be.div_rows(op, "logprobs", prec, views[0], views[1] if len(views) > 1 else None,
                    n_lead, 1.0, 0.5, out)
    return out


def _block_states(*blocks, block_id=None, kind, axes, names, prec, inv_t, op, offsets):
    """The states of one block's rows, the reduced axes in place: one state
    per row (offsets None; those axes of length 1), or along the one reduced
    axis one per piece of the rows cut at their multiples of CHUNK."""
    arrs = [float_input(np.asarray(b), n) for b, n in zip(blocks, names)]
    shape = arrs[0].shape
    views = [rows(a, axes) for a in arrs]
    n_lead, kept = views[0][1], views[0][2]
    views = [v for v, _, _ in views]
    if offsets is None:
        st = _kernel_states(kind, views, n_lead, prec, inv_t, op)
        return st.reshape([1 if i in axes else n for i, n in enumerate(shape)])
    ax = axes[0]
    head, full, tail = _pieces(offsets[block_id[ax]], shape[ax])
    n_rows = math.prod(kept)
    parts = []
    if head:
        parts.append(_kernel_states(kind, [v[..., :head] for v in views], n_lead, prec, inv_t,
                                    op).reshape(n_rows, 1))
    if full:
        mid = [kernel_view(v[..., head:head + full * CHUNK].reshape(v.shape[:-1] + (full, CHUNK)),
                           n_lead + 1) for v in views]
        parts.append(_kernel_states(kind, mid, n_lead + 1, prec, inv_t, op).reshape(n_rows, full))
    if tail:
        parts.append(_kernel_states(kind, [v[..., shape[ax] - tail:] for v in views], n_lead,
                                    prec, inv_t, op).reshape(n_rows, 1))
    st = np.concatenate(parts, axis=1) if parts else np.empty((n_rows, 0), _state_dtype(kind))
    return np.moveaxis(st.reshape(kept + (st.shape[1],)), -1, ax)


def _fold(kind, st, groups=None, inv_t=1.0):
    """The left fold of the states st[0], st[1], ... (st: n_states x n_rows,
    contiguous) with the kernels' combine; with ``groups`` (a group id per
    state, non-decreasing) each group is folded first, then the groups, as
    the kernels do the TILE pieces of a long logsumexp row.  KL: a record
    of the state ("st") and the largest shift a combine moved sums by
    ("move", nats)."""
    if kind == "kl":
        return _fold_kl(st, inv_t)
    if groups is not None:
        ids = np.asarray(groups)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        if len(starts) > 1:
            parts = np.stack([_fold(kind, st[a:b], None, inv_t)
                              for a, b in zip(starts, list(starts[1:]) + [len(st)])])
            return _fold(kind, parts, None, inv_t)
    acc = st[0].copy()
    if kind == "sum":
        for s in st[1:]:
            acc += s
        return acc
    be = _kernels.backend(st)
    for s in st[1:]:
        be.state_combine(kind, acc, s, acc, inv_temp=inv_t)
    return acc


def _fold_kl(st, inv_t):
    acc = st[0].copy()
    move = np.zeros(acc.shape[0])
    be = _kernels.backend(st)
    for s in st[1:]:
        # kk_kl_combine moves one state's sums to the other's shift
        both = (acc["has_sums"] != 0) & (s["has_sums"] != 0)
        with np.errstate(invalid="ignore"):
            d = np.abs(((s["ch"] - acc["ch"]) + (s["cl"] - acc["cl"])) * inv_t)
        move = np.where(both & (d > move), d, move)
        be.state_combine("kl", acc, s, acc, inv_temp=inv_t)
    out = np.empty(acc.shape[0], _KL_CHECKED)
    out["st"], out["move"] = acc, move
    return out


def _state_values(kind, acc, inv_t=1.0, eps=0.0):
    out = np.empty(acc.shape[0], np.float64)
    if kind == "sum":
        out[...] = acc
    elif out.size:
        _kernels.backend(acc).state_values(kind, acc, out, inv_temp=inv_t, eps=eps)
    return out


def _aggregate(S, axis=None, keepdims=False, *, kind, groups, inv_t, finish):
    """Fold the concatenated states S (the reduced axes in place) of each
    row, and ``finish`` the folded states (n_rows,) into the result."""
    st = moved(S, axis)
    kept = st.shape[:S.ndim - len(axis)]
    flat = _owned(st.reshape(math.prod(kept), math.prod(st.shape[len(kept):])).T)
    res = finish(_fold(kind, flat, groups, inv_t))
    if keepdims:
        return res.reshape([1 if i in axis else n for i, n in enumerate(S.shape)])
    return res.reshape(kept)


def _identity(x, axis=None, keepdims=None):
    return x


def _reduce_states(arrays, axes, kind, names, finish, out_dtype, *, keepdims=False, prec="float64",
                   inv_t=1.0, op=None, cut=False, tiles=False):
    """The tree reduction of the states of ``kind`` over ``axes``, each row's
    folded state turned into its result by ``finish`` (numpy, per row).
    cut: along a single reduced axis, states of the pieces of the rows cut
    at their multiples of CHUNK (the kernels' own pieces where the chunk
    boundaries fall there); tiles: the fold in TILE groups of a logsumexp
    row longer than TILE."""
    x = arrays[0]
    nd = x.ndim
    sdt = _state_dtype(kind)
    offsets = groups = None
    chunks = [(1,) * len(c) if i in axes else c for i, c in enumerate(x.chunks)]
    if cut and len(axes) == 1:
        ax = axes[0]
        offsets, counts, where = _piece_layout(x.chunks[ax])
        chunks[ax] = tuple(counts)
        if tiles and x.shape[ax] > TILE:
            groups = [i // (TILE // CHUNK) for i in where]
    st = da.map_blocks(partial(_block_states, kind=kind, axes=axes, names=names, prec=prec,
                               inv_t=inv_t, op=op, offsets=offsets),
                       *arrays, chunks=tuple(chunks), dtype=sdt, meta=_meta(nd, sdt),
                       token=f"klkit-{kind}-states")
    n_out = nd if keepdims else nd - len(axes)
    return da.reduction(st, _identity, partial(_aggregate, kind=kind, groups=groups, inv_t=inv_t,
                                               finish=finish),
                        axis=axes, keepdims=keepdims, combine=_identity, concatenate=True,
                        dtype=sdt, meta=_meta(n_out, out_dtype), name=f"klkit-{kind}")


def _lse_finish(acc, dtype):
    return _state_values("lse", acc).astype(dtype)


def _no_finish(acc):
    return acc


# --------------------------------------------------------------------------
# dense
# --------------------------------------------------------------------------

def _twin_needed(a, b, return_sign):
    return b is not None or return_sign or a.dtype.kind == "c"


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """:func:`klkit.logsumexp` of a dask array: a lazy dask array (0-d for
    axis None), float64 for float64, integer and bool input, float32
    otherwise.  A split reduced axis is reduced by a tree of log-sum-exp
    states (bit for bit where its chunk boundaries are multiples of 2048,
    else within 2 ulp; the module docstring).  ``b``, ``return_sign`` and
    complex input: the reduced axes are rechunked into one chunk and
    klkit (its NumPy twin) runs per block; ``return_sign`` gives the pair of
    dask arrays (value, sign)."""
    a, _ = _operand(a, "a")
    if _twin_needed(a, b, return_sign):
        arrays = [a]
        if b is not None:
            b, _ = _operand(b, "b")
            try:
                arrays = list(da.broadcast_arrays(a, b))
            except ValueError:
                raise ValueError(f"b: shape {b.shape} does not broadcast with a's "
                                 f"{a.shape}") from None
        x = arrays[0]
        axes = _args.axes(axis, x.ndim)
        probe = [np.zeros((1,) * x.ndim, arr.dtype) for arr in arrays]
        r = _dense.logsumexp(probe[0], axis=axes, b=probe[1] if b is not None else None,
                             keepdims=keepdims, return_sign=return_sign)
        arrays = [arr.rechunk({ax: -1 for ax in axes}) for arr in arrays]

        def run(*blocks, part=None):
            res = _dense.logsumexp(blocks[0], axis=axes, b=blocks[1] if len(blocks) > 1 else None,
                                   keepdims=keepdims, return_sign=return_sign)
            return np.asarray(res if part is None else res[part])
        if not return_sign:
            return _map_reduce(run, arrays, axes, keepdims, np.asarray(r).dtype)
        return tuple(_map_reduce(partial(run, part=i), arrays, axes, keepdims,
                                 np.asarray(r[i]).dtype) for i in range(2))
    dt = _float_dtype(a.dtype, "a")
    axes = _args.axes(axis, a.ndim)
    out_dt = result_dtype(dt)
    if _one_chunk(a, axes) or math.prod(a.shape[i] for i in axes) == 0:
        a = a.rechunk({ax: -1 for ax in axes})
        return _map_reduce(_dense.logsumexp, [a], axes, keepdims, out_dt, axis=axes,
                           keepdims=keepdims)
    return _reduce_states([a], axes, "lse", ("a",), partial(_lse_finish, dtype=out_dt), out_dt,
                          keepdims=keepdims, cut=True, tiles=True)


def _softmax_block(xb, st, *, log, dtype):
    """softmax / log_softmax of block xb from its rows' folded lse states st
    (broadcast against xb), as the kernels' row loop computes them."""
    work = np.float64 if dtype == np.float64 else np.float32
    x = float_input(np.asarray(xb), "x").astype(work, copy=False)
    m = st["m"].astype(work)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if log:
            return (x - m) - np.log1p(st["s"]).astype(work)
        inv = np.where(st["m"] == np.inf, np.nan, 1.0 / (1.0 + st["s"])).astype(work)
        # exp of the rounded x - m, rounded once (NumPy's float32 exp is off
        # by up to 2.5 ulp, the kernels' by under 1)
        return np.exp((x - m).astype(np.float64)).astype(work) * inv


def _softmax_family(x, axis, log):
    fn = _dense.log_softmax if log else _dense.softmax
    x, _ = _operand(x, "x")
    axes = _args.axes(axis, x.ndim)
    if x.dtype.kind == "c":
        out_dt = np.asarray(fn(np.zeros((1,) * x.ndim, x.dtype), axis=axes)).dtype
    else:
        out_dt = result_dtype(_float_dtype(x.dtype, "x"))
    if x.dtype.kind == "c" or x.ndim == 0 or _one_chunk(x, axes) or \
            math.prod(x.shape[i] for i in axes) == 0:
        x = x.rechunk({ax: -1 for ax in axes})
        return da.map_blocks(partial(_call_blocks, fn, axis=axes), x, dtype=out_dt,
                             meta=_meta(x.ndim, out_dt))
    lse = _kernels.backend().LSE_STATE
    st = _reduce_states([x], axes, "lse", ("x",), _no_finish, lse, keepdims=True, cut=True)
    return da.map_blocks(partial(_softmax_block, log=log, dtype=out_dt), x, st, dtype=out_dt,
                         meta=_meta(x.ndim, out_dt))


def softmax(x, axis=None):
    """:func:`klkit.softmax` of a dask array (lazy, same shape, float32 or
    float64).  A split reduced axis: the rows' lse states by a tree
    reduction, then exp(x - m) / (1 + s) per block: within 2 ulp of klkit
    where the chunk boundaries are multiples of 2048, 3 ulp elsewhere (5
    for float64; the module docstring)."""
    return _softmax_family(x, axis, log=False)


def log_softmax(x, axis=None):
    """:func:`klkit.log_softmax` of a dask array (lazy, same shape, float32
    or float64).  A split reduced axis: the rows' lse states by a tree
    reduction, then (x - m) - log1p(s) per block (bit for bit where the
    chunk boundaries are multiples of 2048 along one reduced axis, else
    within 2 ulp)."""
    return _softmax_family(x, axis, log=True)


# --------------------------------------------------------------------------
# divergences
# --------------------------------------------------------------------------

def _kl_check(rec, inv_t, eps):
    """(KL values, rows to recompute whole) of folded KL records (1-D): the
    rows whose sums the kernels would not use (NaN values without a NaN
    input or a maximum that is not finite: huge logits, divergence.h), and
    the rows whose fold lost accuracy: sums moved between shifts more than
    KL_MOVE_MAX nats apart, or a value whose condition (a/(1+u) +
    |b| u/(1+u)) / KL, a = A/W, b = B/W, u = a - b, exceeds KL_COND_MAX (the
    kernels' own row loop keeps the shift near the P-mean, b ~ 0, where it
    is ~1)."""
    acc = _owned(rec["st"])
    v = _state_values("kl", acc, inv_t, eps)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a, b = acc["A"] / acc["W"], acc["B"] / acc["W"]
        u = a - b
        cond = (np.abs(a) / (1 + u) + np.abs(b) * np.abs(u) / (1 + u)) / v
        unusable = np.isnan(v) & (acc["nan"] == 0) & np.isfinite(acc["m"]) & \
            np.isfinite(acc["mq"])
        lossy = np.isfinite(v) & (v > 0) & ((rec["move"] > KL_MOVE_MAX) | (cond > KL_COND_MAX))
        lossy |= (v == 0) & (acc["A"] != 0)         # a cancellation to zero
    return v, unusable | lossy


def _gather_rows(rec, pb, qb, *, ax, inv_t, eps):
    """The rows of blocks pb, qb (ax their distribution axis) to recompute
    whole (_kl_check on their folded KL records rec), the distribution axis
    last; None if there are none."""
    flat = np.flatnonzero(_kl_check(rec.reshape(-1), inv_t, eps)[1])
    if not flat.size:
        return None
    idx = np.unravel_index(flat, rec.shape)
    return tuple(np.moveaxis(np.asarray(b), ax, -1)[idx] for b in (pb, qb))


def _finish_kl(rec, gathered, *extra, op, inv_t, eps, log_base, dtype, kw):
    """KL (op "kl_div") or H + KL (op "cross_entropy", the entropy values
    in extra) per row from the folded KL records; the rows _kl_check picks
    are recomputed whole by klkit from the gathered blocks."""
    v, redo = _kl_check(rec.reshape(-1), inv_t, eps)
    if op == "cross_entropy":
        v = v + extra[0].reshape(-1)
    if log_base is not None:
        v = v / log_base
    out = v.astype(dtype)
    if redo.any():
        parts = [g for g in gathered if g is not None]
        p = np.concatenate([g[0] for g in parts], axis=-1)
        q = np.concatenate([g[1] for g in parts], axis=-1)
        fn = _divergence.kl_div if op == "kl_div" else _divergence.cross_entropy
        out[redo] = fn(p, q, axis=-1, **kw)
    return out.reshape(rec.shape)


def _values_finish(acc, kind, inv_t, log_base, dtype):
    v = _state_values(kind, acc, inv_t)
    if kind == "sum" and dtype is None:
        return v
    if log_base is not None:
        v = v / log_base
    return v if dtype is None else v.astype(dtype)


def _kl_sum_finish(acc, finish):
    """KL from log-probs: the sum of the blocks' sums, >= 0 as the kernels
    leave it (each block's sum already is; NaN stays)."""
    return finish(np.where(acc < 0.0, 0.0, acc))


def _probs_as_logs(b, dtype):
    return _divergence._as_logs(np.asarray(b), "probs", dtype)[1]


def _divergence_graph(op, arrays, axis, kind, base, temperature, beta=0.5):
    """The lazy result of klkit.<op>(*arrays, axis, ...) on dask arrays."""
    kind = _args.kind(kind)
    temperature = _args.temperature(temperature, kind)
    log_base = _args.log_base(base)
    names = ("p", "q")[:len(arrays)]
    ops = [_operand(a, n) for a, n in zip(arrays, names)]
    dts = [_float_dtype(a.dtype, n) for (a, _), n in zip(ops, names)]
    dtype = common_dtype(*[(weak, dt) for (_, weak), dt in zip(ops, dts)])
    try:
        shape = np.broadcast_shapes(*[a.shape for a, _ in ops])
    except ValueError:
        raise ValueError(f"p, q: shapes {ops[0][0].shape} and {ops[-1][0].shape} "
                         "do not broadcast") from None
    out_dt = result_dtype(dtype)
    ax = _args.distribution_axis(axis, len(shape))
    work = kernel_precision(dtype, temperature) if kind == "logits" else dtype
    # a float64 operand of a narrower computation is a Python scalar: cast as klkit does
    xs = [a.astype(work) if work is not None and a.dtype.name == "float64" and
          np.dtype(work).name != "float64" else a for a, _ in ops]
    xs = list(da.broadcast_arrays(*xs)) if len(xs) > 1 else [da.broadcast_to(xs[0], shape)]
    fn = getattr(_divergence, op)
    kw = dict(kind=kind, base=base, temperature=temperature)
    if op == "js_div":
        kw["beta"] = beta
    nd = len(shape)
    if work is None or op == "js_div" or _one_chunk(xs[0], (ax,)) or shape[ax] == 0:
        xs = [x.rechunk({ax: -1}) for x in xs]
        return _map_reduce(fn, xs, (ax,), False, out_dt, axis=ax, **kw)
    prec = precision(work)
    inv_t = 1.0 / temperature
    if kind == "probs":        # log p in the working precision, then logits (as klkit)
        ldt = np.float64 if np.dtype(work).name == "float64" else np.float32
        xs = [x.map_blocks(partial(_probs_as_logs, dtype=np.dtype(work)), dtype=ldt,
                           meta=_meta(nd, ldt)) for x in xs]
        kind = "logits"
    if kind == "logprobs":
        finish = partial(_values_finish, kind="sum", inv_t=1.0, log_base=log_base, dtype=out_dt)
        if op == "kl_div":
            finish = partial(_kl_sum_finish, finish=finish)
        return _reduce_states(xs, (ax,), "sum", names, finish, out_dt, prec=prec, op=op)
    if op == "entropy":
        finish = partial(_values_finish, kind="entropy", inv_t=inv_t, log_base=log_base,
                         dtype=out_dt)
        return _reduce_states(xs, (ax,), "entropy", names, finish, out_dt, prec=prec,
                              inv_t=inv_t, cut=True)
    # kl_div, cross_entropy from logits: KL states (and H for the cross-entropy)
    eps = float(np.finfo(np.float64 if prec == "float64" else np.float32).eps)
    acc = _reduce_states(xs, (ax,), "kl", names, _no_finish, _KL_CHECKED, prec=prec,
                         inv_t=inv_t)
    ind = tuple(range(nd))
    lead = tuple(i for i in ind if i != ax)
    gathered = da.blockwise(partial(_gather_rows, ax=ax, inv_t=inv_t, eps=eps), ind,
                            acc, lead, xs[0], ind, xs[1], ind, dtype=object,
                            meta=_meta(nd, object), token="klkit-kl-gather")
    extra = []
    if op == "cross_entropy":
        h = _reduce_states(xs[:1], (ax,), "entropy", names[:1],
                           partial(_values_finish, kind="entropy", inv_t=inv_t, log_base=None,
                                   dtype=None), np.float64, prec=prec, inv_t=inv_t, cut=True)
        extra = [h, lead]
    fkw = dict(kind="logits", base=base, temperature=temperature)
    return da.blockwise(partial(_finish_kl, op=op, inv_t=inv_t, eps=eps, log_base=log_base,
                                dtype=out_dt, kw=fkw),
                        lead, acc, lead, gathered, ind, *extra, concatenate=False,
                        dtype=out_dt, meta=_meta(nd - 1, out_dt), token=f"klkit-{op}")


def entropy(p, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.entropy` of a dask array (lazy; float32, float64 for
    float64 input; ``axis`` removed).  A split distribution axis: a tree
    of entropy states (from logits and probs; bit for bit where the chunk
    boundaries are multiples of 2048, else within 2 ulp) or of the
    blocks' sums (logprobs)."""
    return _divergence_graph("entropy", (p,), axis, kind, base, temperature)


def cross_entropy(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.cross_entropy` of dask arrays (lazy; p and q broadcast).
    A split distribution axis: H(P) + KL(P||Q) from trees of entropy and KL
    states (logits, probs; within KL's bound), or the blocks' sums
    (logprobs)."""
    return _divergence_graph("cross_entropy", (p, q), axis, kind, base, temperature)


def kl_div(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.kl_div` of dask arrays (lazy; p and q broadcast).  A
    split distribution axis: a tree of KL states (logits, probs; within the
    kernels' error bound, rows with huge logits recomputed whole by klkit)
    or of the blocks' sums (logprobs)."""
    return _divergence_graph("kl_div", (p, q), axis, kind, base, temperature)


def js_div(p, q, axis=-1, *, beta=0.5, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.js_div` of dask arrays (lazy; p and q broadcast).  JS has
    no reduction state: a split distribution axis is rechunked into one
    chunk, then klkit runs per block (bit for bit)."""
    beta = _args.beta(beta)
    return _divergence_graph("js_div", (p, q), axis, kind, base, temperature, beta)


# --------------------------------------------------------------------------
# segments over Arrow list columns of a dask DataFrame
# --------------------------------------------------------------------------

def _frame_modules():
    try:
        import dask.dataframe as dd
        import pandas as pd
        import pyarrow as pa
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError('klkit.dask\'s DataFrame functions need dask[dataframe] and '
                          'pyarrow: pip install "klkit[dask]"') from e
    return dd, pd, pa


def _list_column(df, column, name):
    """(dask Series of Arrow lists, its value dtype as klkit computes it)."""
    dd, pd, pa = _frame_modules()
    if isinstance(df, dd.Series) and column is None:
        s = df
    elif isinstance(df, dd.DataFrame):
        if column is None:
            raise TypeError(f"{name}: give the column name of a DataFrame")
        if column not in df.columns:
            raise ValueError(f"{name}: no column {column!r} (columns: {list(df.columns)})")
        s = df[column]
    else:
        raise TypeError(f"{name}: expected a dask DataFrame (with a column name) or Series, "
                        f"got {type(df).__name__}")
    dt = s.dtype
    typ = getattr(dt, "pyarrow_dtype", None)
    if typ is None or not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise TypeError(f"{name}: column {s.name!r} has dtype {dt}; expected Arrow lists "
                        "(pandas ArrowDtype, e.g. read_parquet(..., dtype_backend='pyarrow'))")
    from . import _arrow

    _arrow.chunks(pa.chunked_array([], type=typ), name)      # klkit's value type checks
    return s, _arrow.value_dtype(typ.value_type)


def _arrow_of(series):
    """The Arrow data of a pandas ArrowDtype Series: the ChunkedArray pandas
    holds (no copy)."""
    return series.array.__arrow_array__()


def _segment_part(part, *, fn, columns, kw, name, dtype):
    import pandas as pd

    out = np.asarray(fn(*[_arrow_of(part[c]) for c in columns], **kw), dtype=dtype)
    return pd.Series(out, index=part.index, name=name)


def _segment_graph(fn, frame, columns, kw, name, dtype):
    """fn(*the Arrow columns, **kw) per partition of the dask DataFrame
    ``frame``: a dask Series with its index."""
    _, pd, _ = _frame_modules()
    meta = pd.Series(np.empty(0, dtype), name=name, index=frame._meta.index)
    return frame.map_partitions(partial(_segment_part, fn=fn, columns=columns, kw=kw,
                                        name=name, dtype=dtype),
                                meta=meta, token=f"klkit-{fn.__name__}")


def _frame(df, columns):
    """The columns of df (a dask DataFrame, or a Series: column None) as a
    dask DataFrame and their names in it."""
    dd, _, _ = _frame_modules()
    if isinstance(df, dd.Series):
        return df.to_frame(name="values"), ["values"]
    uniq = list(dict.fromkeys(columns))
    return df[uniq], list(columns)


def _segment_reduce(fn, df, column, empty):
    empty = _args.empty(empty)
    s, vdt = _list_column(df, column, "values")
    dtype = result_dtype(_float_dtype(vdt, "values"))
    frame, cols = _frame(df, [column])
    return _segment_graph(fn, frame, cols, {"empty": empty}, s.name, dtype)


def segment_sum(df, column=None, *, empty=0.0):
    """:func:`klkit.segment_sum` of each list of ``df[column]`` (an Arrow
    list column of a dask DataFrame; or a dask Series of them, column None):
    a lazy float32 / float64 dask Series with df's index and the column's
    name, one task per partition, klkit's bits."""
    return _segment_reduce(_segments.segment_sum, df, column, empty)


def segment_mean(df, column=None, *, empty=math.nan):
    """:func:`klkit.segment_mean` of each list of ``df[column]`` (as
    :func:`segment_sum`)."""
    return _segment_reduce(_segments.segment_mean, df, column, empty)


def segment_max(df, column=None, *, empty=-math.inf):
    """:func:`klkit.segment_max` of each list of ``df[column]`` (as
    :func:`segment_sum`)."""
    return _segment_reduce(_segments.segment_max, df, column, empty)


def segment_logsumexp(df, column=None, *, empty=-math.inf):
    """:func:`klkit.segment_logsumexp` of each list of ``df[column]`` (as
    :func:`segment_sum`)."""
    return _segment_reduce(_segments.segment_logsumexp, df, column, empty)


def seq_kl(df, logp="logp", ref="ref_logp", *, estimator="k1", reduce="sum", clamp=None,
           empty=0.0):
    """:func:`klkit.seq_kl` of the row-aligned Arrow list columns ``logp``
    and ``ref`` of a dask DataFrame: a lazy float32 / float64 dask Series
    named "seq_kl" with df's index, one task per partition, klkit's bits.
    A sequence whose two lists differ in length is a ValueError when
    computed (klkit's, numbered within its partition)."""
    _args.estimator(estimator)
    _args.clamp(clamp)
    kw = dict(estimator=estimator, reduce=_args.reduce(reduce), clamp=clamp,
              empty=_args.empty(empty))
    dd, _, _ = _frame_modules()
    if not isinstance(df, dd.DataFrame):
        raise TypeError(f"df: expected a dask DataFrame, got {type(df).__name__}")
    _, dp = _list_column(df, logp, "logp")
    _, dq = _list_column(df, ref, "ref_logp")
    dtype = result_dtype(common_dtype((None, _float_dtype(dp, "logp")),
                                      (None, _float_dtype(dq, "ref_logp"))))
    frame, cols = _frame(df, [logp, ref])
    return _segment_graph(_segments.seq_kl, frame, cols, kw, "seq_kl", dtype)
