"""klkit.dask's entropy, cross_entropy, kl_div and js_div."""
from functools import partial

import dask.array as da
import numpy as np

from .. import _args, _kernels
from .. import divergence as _divergence
from .._arrays import common_dtype, kernel_precision, narrowed, precision, result_dtype
from ._graph import (BLOCK, chain, empty_carry, float_dtype, kernel_inv_t, map_whole, meta,
                     one_chunk, operand, owned, state_values, tree)

__all__ = ["entropy", "cross_entropy", "kl_div", "js_div"]

#: the unit roundoff the kernels judge KL's sums by (REAL_EPS,
#: kernels/cpu/precisions.inc: float's as its decimal literal)
KERNEL_EPS = {"float32": 1.1920929e-07, "float64": 2.220446049250313e-16}


def _values_finish(acc, kind, log_base, dtype, clamp=False):
    """Results from folded states (entropy, xent) or sums (log-probs; KL
    clamped at 0 as the kernels clamp it, NaN staying), in klkit's order:
    the float64 value, / log(base), then the result dtype."""
    v = acc if kind == "sum" else state_values(kind, acc)
    if clamp:
        v = np.where(v < 0.0, 0.0, v)
    if log_base is not None:
        v = v / log_base
    return v.astype(dtype)


def _kl_values(carry, inv_t, eps):
    """(KL, rows to recompute) of final carries (1-D): the value of the
    finished state, and the rows the kernels sum in the direct form over
    the whole row (a NaN value that is not a special one: logits so large
    that the sums cannot be trusted, or sums that overflowed)."""
    k = owned(np.ascontiguousarray(carry["k"]))
    fin = np.empty_like(k)
    if k.size:
        # combining with the empty state finishes the row's (kk_kl_finish)
        _kernels.backend(k).state_combine("kl", k, empty_carry(k.shape[0])["k"].copy(), fin,
                                          inv_temp=inv_t)
    v = state_values("kl", fin, inv_t, eps)
    special = (fin["nan"] > 0) | ~np.isfinite(fin["m"]) | ~np.isfinite(fin["mq"])
    return v, np.isnan(v) & ~special


def _gather_rows(carry, pb, qb, *, ax, inv_t, eps):
    """The rows of blocks pb, qb (ax their distribution axis) that _kl_values
    picks from their final carries, the distribution axis last; None if
    there are none."""
    flat = np.flatnonzero(_kl_values(carry.reshape(-1), inv_t, eps)[1])
    if not flat.size:
        return None
    idx = np.unravel_index(flat, carry.shape)
    return tuple(np.moveaxis(np.asarray(b), ax, -1)[idx] for b in (pb, qb))


def _finish_kl(carry, gathered, *, inv_t, eps, log_base, dtype, kw):
    """KL per row from the final carries; the rows _kl_values picks are
    computed whole by klkit from the gathered blocks (its direct form)."""
    v, redo = _kl_values(carry.reshape(-1), inv_t, eps)
    out = _values_finish(v, "sum", log_base, dtype)
    if redo.any():
        parts = [g for g in gathered if g is not None]
        p = np.concatenate([g[0] for g in parts], axis=-1)
        q = np.concatenate([g[1] for g in parts], axis=-1)
        out[redo] = _divergence.kl_div(p, q, axis=-1, **kw)
    return out.reshape(carry.shape)


def _probs_as_logs(b, dtype):
    return _divergence._as_logs(np.asarray(b), "probs", dtype)[1]


def _kl_graph(xs, ax, names, prec, temperature, log_base, out_dt, base):
    """KL from logits: the row loop carried from piece to piece (chain),
    the rows the kernels would sum directly gathered and computed whole."""
    inv_t = 1.0 / temperature
    carry, xs = chain(xs, (ax,), names, prec, inv_t)
    nd = xs[0].ndim
    ind = tuple(range(nd))
    lead = tuple(i for i in ind if i != ax)
    kinv, eps = kernel_inv_t(inv_t, prec), KERNEL_EPS[prec]
    gathered = da.blockwise(partial(_gather_rows, ax=ax, inv_t=kinv, eps=eps), ind,
                            carry, lead, xs[0], ind, xs[1], ind, dtype=object,
                            meta=meta(nd, object), token="klkit-kl-gather")
    fkw = dict(kind="logits", base=base, temperature=temperature)
    return da.blockwise(partial(_finish_kl, inv_t=kinv, eps=eps, log_base=log_base,
                                dtype=out_dt, kw=fkw),
                        lead, carry, lead, gathered, ind, concatenate=False,
                        dtype=out_dt, meta=meta(nd - 1, out_dt), token="klkit-kl_div")


def _divergence_graph(op, arrays, axis, kind, base, temperature, beta=0.5):
    """The lazy result of klkit.<op>(*arrays, axis, ...) on dask arrays."""
    kind = _args.kind(kind)
    temperature = _args.temperature(temperature, kind)
    log_base = _args.log_base(base)
    names = ("p", "q")[:len(arrays)]
    ops = [operand(a, n) for a, n in zip(arrays, names)]
    dts = [float_dtype(a.dtype, n) for (a, _), n in zip(ops, names)]
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
    xs = [narrowed(a, work) if work is not None else a for a, _ in ops]
    xs = list(da.broadcast_arrays(*xs)) if len(xs) > 1 else [da.broadcast_to(xs[0], shape)]
    fn = getattr(_divergence, op)
    kw = dict(kind=kind, base=base, temperature=temperature)
    if op == "js_div":
        kw["beta"] = beta
    if work is None or op == "js_div" or one_chunk(xs[0], (ax,)) or shape[ax] == 0:
        return map_whole(fn, xs, (ax,), False, out_dt, axis=ax, **kw)
    prec = precision(work)
    if kind == "probs":        # log p in the working precision, then logits (as klkit)
        ldt = np.float64 if np.dtype(work).name == "float64" else np.float32
        xs = [x.map_blocks(partial(_probs_as_logs, dtype=np.dtype(work)), dtype=ldt,
                           meta=meta(len(shape), ldt)) for x in xs]
        kind = "logits"
    if kind == "logprobs":
        finish = partial(_values_finish, kind="sum", log_base=log_base, dtype=out_dt,
                         clamp=op == "kl_div")
        return tree(xs, (ax,), "sum", names, finish, out_dt, prec=prec, op=op, step=BLOCK)
    if op == "kl_div":
        return _kl_graph(xs, ax, names, prec, temperature, log_base, out_dt, base)
    state = "entropy" if op == "entropy" else "xent"
    finish = partial(_values_finish, kind=state, log_base=log_base, dtype=out_dt)
    return tree(xs, (ax,), state, names, finish, out_dt, prec=prec, inv_t=1.0 / temperature)


def entropy(p, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.entropy` of a dask array (lazy; float32, float64 for
    float64 input; ``axis`` removed); klkit's bits however the array is
    chunked: a split distribution axis by a tree of the kernels' entropy
    states (logits, probs) or log-prob sums.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.entropy(X).compute(), 6)
    array([0.947537, 1.386294])
    """
    return _divergence_graph("entropy", (p,), axis, kind, base, temperature)


def cross_entropy(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.cross_entropy` of dask arrays (lazy; p and q broadcast);
    klkit's bits: a split distribution axis by a tree of the kernels'
    cross-entropy states (logits, probs) or log-prob sums.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.cross_entropy(X, X[::-1]).compute(), 6)
    array([1.386294, 1.94019 ])
    """
    return _divergence_graph("cross_entropy", (p, q), axis, kind, base, temperature)


def kl_div(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.kl_div` of dask arrays (lazy; p and q broadcast); klkit's
    bits.  A split distribution axis: from logits and probs the kernels'
    row loop, continued block after block along the axis (blocks of other
    rows in parallel); rows with logits too large for the sums are
    computed whole by klkit.  From log-probs a tree of the kernels'
    sums.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.kl_div(X, X[::-1]).compute(), 6)
    array([0.438757, 0.553895])
    """
    return _divergence_graph("kl_div", (p, q), axis, kind, base, temperature)


def js_div(p, q, axis=-1, *, beta=0.5, kind="logits", base=None, temperature=1.0):
    """:func:`klkit.js_div` of dask arrays (lazy; p and q broadcast).  JS has
    no reduction state: a split distribution axis is rechunked into one
    chunk, then klkit runs per block (bit for bit).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.js_div(X, X[::-1]).compute(), 6)
    array([0.11334, 0.11334])
    """
    beta = _args.beta(beta)
    return _divergence_graph("js_div", (p, q), axis, kind, base, temperature, beta)
