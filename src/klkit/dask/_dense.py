"""klkit.dask's logsumexp, softmax and log_softmax."""
import math
from functools import partial

import dask.array as da
import numpy as np

from .. import _args, _kernels
from .. import dense as _dense
from .._arrays import float_input, kernel_view, moved, result_dtype, rows
from ._graph import (call_blocks, float_dtype, map_reduce, map_whole, meta, one_chunk, operand,
                     owned, state_values, tree)

__all__ = ["logsumexp", "softmax", "log_softmax"]


def _twin_needed(a, b, return_sign):
    return b is not None or return_sign or a.dtype.kind == "c"


def _lse_twin(a, axis, b, keepdims, return_sign):
    """Weights, the sign, complex input: the reduced axes in one chunk and
    klkit (its NumPy twin) per block."""
    arrays = [a]
    if b is not None:
        b, _ = operand(b, "b")
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
        return map_reduce(run, arrays, axes, keepdims, np.asarray(r).dtype)
    return tuple(map_reduce(partial(run, part=i), arrays, axes, keepdims,
                            np.asarray(r[i]).dtype) for i in range(2))


def _lse_finish(acc, dtype):
    return state_values("lse", acc).astype(dtype)


def _no_finish(acc):
    return acc


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """:func:`klkit.logsumexp` of a dask array: a lazy dask array (0-d for
    axis None), float64 for float64, integer and bool input, float32
    otherwise; klkit's bits however the array is chunked (the module
    docstring).  ``b``, ``return_sign`` and complex input: the reduced axes
    are rechunked into one chunk and klkit (its NumPy twin) runs per block;
    ``return_sign`` gives the pair of dask arrays (value, sign).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.logsumexp(X, axis=-1).compute(), 6)   # computed here
    array([4.44019 , 1.386294])
    """
    a, _ = operand(a, "a")
    if _twin_needed(a, b, return_sign):
        return _lse_twin(a, axis, b, keepdims, return_sign)
    dt = float_dtype(a.dtype, "a")
    axes = _args.axes(axis, a.ndim)
    out_dt = result_dtype(dt)
    if _one_chunk(a, axes) or math.prod(a.shape[i] for i in axes) == 0:
        return map_whole(_dense.logsumexp, [a], axes, keepdims, out_dt, axis=axes,
                         keepdims=keepdims)
    return tree([a], axes, "lse", ("a",), partial(_lse_finish, dtype=out_dt), out_dt,
                keepdims=keepdims, tiles=True)


def _one_chunk(x, axes):
    return x.ndim == 0 or one_chunk(x, axes)


def _softmax_block(xb, st, *, axes, log, dtype):
    """softmax / log_softmax of block xb by the kernels, from its rows'
    lse states st (the reduced axes of length 1)."""
    x = float_input(np.asarray(xb), "x")
    v, n_lead, _ = rows(x, axes)
    out = np.empty(x.shape, dtype)
    dest = moved(out, axes)
    direct = kernel_view(dest, n_lead) is dest
    if not direct:
        dest = np.empty(dest.shape, dtype)
    if v.size:
        states = owned(moved(np.asarray(st), axes).reshape(-1))
        _kernels.backend(v, dest).softmax_rows(v, n_lead, log, dest, states=states)
    if not direct:
        moved(out, axes)[...] = dest
    return out


def _softmax_family(x, axis, log):
    fn = _dense.log_softmax if log else _dense.softmax
    x, _ = operand(x, "x")
    axes = _args.axes(axis, x.ndim)
    if x.dtype.kind == "c":
        out_dt = np.asarray(fn(np.zeros((1,) * x.ndim, x.dtype), axis=axes)).dtype
    else:
        out_dt = result_dtype(float_dtype(x.dtype, "x"))
    if x.dtype.kind == "c" or _one_chunk(x, axes) or math.prod(x.shape[i] for i in axes) == 0:
        x = x.rechunk({ax: -1 for ax in axes})
        return da.map_blocks(partial(call_blocks, fn, axis=axes), x, dtype=out_dt,
                             meta=meta(x.ndim, out_dt))
    lse = _kernels.backend().LSE_STATE
    st = tree([x], axes, "lse", ("x",), _no_finish, lse, keepdims=True)
    return da.map_blocks(partial(_softmax_block, axes=axes, log=log, dtype=out_dt), x, st,
                         dtype=out_dt, meta=meta(x.ndim, out_dt))


def softmax(x, axis=None):
    """:func:`klkit.softmax` of a dask array (lazy, same shape and chunks,
    float32 or float64).  A split reduced axis: the rows' lse states by a
    tree reduction, then the kernels' softmax of each block from them:
    klkit's bits.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.softmax(X, axis=-1).compute(), 4)
    array([[0.0321, 0.0871, 0.2369, 0.6439],
           [0.25  , 0.25  , 0.25  , 0.25  ]])
    """
    return _softmax_family(x, axis, log=False)


def log_softmax(x, axis=None):
    """:func:`klkit.log_softmax` of a dask array (as :func:`softmax`).

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> import klkit.dask as kd
    >>> X = da.from_array(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]), chunks=(1, 2))
    >>> np.round(kd.log_softmax(X, axis=-1).compute(), 4)
    array([[-3.4402, -2.4402, -1.4402, -0.4402],
           [-1.3863, -1.3863, -1.3863, -1.3863]])
    """
    return _softmax_family(x, axis, log=True)
