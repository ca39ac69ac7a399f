"""NumPy twins of the dense log-space functions: logsumexp, softmax,
log_softmax.

Log-sum-exp (the "exclude one maximum" form)
--------------------------------------------
For a row x with maximum m reached at index k (one occurrence),

    s = sum_{i != k} exp(x_i - m),        lse(x) = m + log1p(s),

so a dominant term is exact (s = 0) and tiny others are not lost in 1 + s
(exp(x_i - m) is corrected for the rounding of x_i - m).  With weights b,
terms with b = 0 are dropped first, all occurrences of the maximum are
grouped with w0 = their summed weights (a group whose weights cancel exactly
is removed and the next maximum taken), and

    sum_i b_i exp(x_i) = exp(m) w0 (1 + s),    s = sum_{x_i < m} b_i exp(x_i - m) / w0,
    log|.| = log|1 + s| + log|w0| + m,         sign = sign(w0) sign(1 + s),

where log|1 + s| = log1p(s) for s >= -1 and log1p(-s - 2) for s < -1.  Where
this is not finite (an infinite or NaN maximum, overflow) the direct
log(sum b exp(x)) is used, whose special values follow IEEE / C99.

    log_softmax(x)_i = (x_i - m) - log1p(s),   softmax(x)_i = exp(x_i - m) / (1 + s).
"""
import math

import numpy as np

from ._common import _as_numeric, _axes, _finish, _from_rows, _result_dtype, _to_rows

__all__ = ["logsumexp", "softmax", "log_softmax"]

_NUMPY2 = int(np.__version__.split(".")[0]) >= 2


def _sign(z):
    """np.sign with NumPy 2's complex convention z / |z| (0 for 0)."""
    if _NUMPY2 or z.dtype.kind != "c":
        return np.sign(z)
    mag = np.abs(z)  # pragma: no cover - NumPy 1.x
    return np.where(mag == 0, 0, z / np.where(mag == 0, 1, mag))


def _wrap_radians(x):
    """Map angles to (-pi, pi]; values already inside keep all their bits."""
    wrapped = math.pi - np.mod(math.pi - x, 2 * math.pi)
    return np.where(np.abs(x) < math.pi, x, wrapped)


def _two_sum(a, b):
    """a + b rounded, and its exact rounding error (Knuth's TwoSum)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _exp_shifted(x, m):
    """(z, exp(z)) for z = x - m (z = x where m is not finite).

    exp is corrected for the rounding of z, exp(z + dz) = exp(z) (1 + dz),
    so it is accurate to about an ulp even where |z| is large.
    """
    z, dz = _two_sum(x, -np.where(np.isfinite(m), m, 0.0))
    e = np.exp(z)
    return z, e + e * np.where(np.isfinite(z), dz, 0.0)


def _lse_parts(x):
    """Row state of x (..., n), n >= 1, along the last axis.

    Returns (m, k, z, e, s) with m the row maximum (keepdims), k the index of
    its first occurrence, z = x - m (z = x where m is not finite), e = exp(z)
    and s = sum of e over every element except index k (keepdims).
    """
    m = np.max(x, axis=-1, keepdims=True)
    k = np.argmax(x, axis=-1)[..., None]
    z, e = _exp_shifted(x, m)
    rest = e.copy()
    np.put_along_axis(rest, k, 0.0, axis=-1)
    s = np.sum(rest, axis=-1, keepdims=True)
    return m, k, z, e, s


def _lse_rows_real(x, w):
    """(log|sum w exp(x)|, sign of the sum) along the last axis, float64.

    ``w`` is None for unit weights.  Terms with w = 0 are dropped, so they
    contribute nothing even where x is +-inf or NaN.  An empty row gives
    (-inf, 0).
    """
    out_shape = x.shape[:-1]
    if x.shape[-1] == 0:
        return np.full(out_shape, -np.inf), np.zeros(out_shape)
    if w is None:
        # exclude ONE occurrence of the maximum: lse = m + log1p(s)
        m, _, _, _, s = _lse_parts(x)
        out = np.log1p(s) + m
        sign = np.ones_like(out)
    else:
        # Weights: all occurrences of the maximum are grouped, w0 = sum of
        # their weights.  A group whose weights cancel exactly (w0 = 0,
        # e.g. b = [1, -1] on equal terms) is removed and the next one taken,
        # so what is left over (however small) is not lost.
        x = np.where(w == 0, -np.inf, x)
        while True:
            m = np.max(x, axis=-1, keepdims=True)
            at_max = x == m
            w0 = np.sum(np.where(at_max, w, 0.0), axis=-1, keepdims=True)
            cancelled = (w0 == 0) & np.isfinite(m)
            if not np.any(cancelled):
                break
            x = np.where(cancelled & at_max, -np.inf, x)
        rest = np.sum(np.where(at_max, 0.0, w * _exp_shifted(x, m)[1]), axis=-1, keepdims=True)
        s = rest / w0
        log_abs_1ps = np.log1p(np.where(s < -1.0, -s - 2.0, s))  # log|1 + s|
        out = log_abs_1ps + np.log(np.abs(w0)) + m
        sign = np.sign(w0) * np.sign(1.0 + s)
    # Infinite or NaN maximum, or overflow: the direct sum has the right
    # IEEE special values.  (-inf from an exact cancellation is kept.)
    fallback = ~np.isfinite(m) | np.isnan(out) | (out == np.inf)
    if np.any(fallback):
        terms = np.exp(x) if w is None else w * np.exp(x)
        direct = np.sum(terms, axis=-1, keepdims=True)
        out = np.where(fallback, np.log(np.abs(direct)), out)
        sign = np.where(fallback, np.sign(direct), sign)
    return out[..., 0], sign[..., 0] + 0.0  # + 0.0 turns a -0.0 sign into 0.0


def _lse_rows_complex(x, w, return_sign):
    """scipy's complex logsumexp along the last axis, in complex128.

    The shift is the element with the largest real part (first occurrence);
    log(w_k) of a negative or complex weight adds its phase.  Results that are
    not finite come from the direct log(sum w exp(x)), which follows C99 for
    complex infinities.  With return_sign the magnitude is real and the sign
    a complex phase; without, the imaginary part is wrapped to (-pi, pi].
    """
    out_shape = x.shape[:-1]
    if x.shape[-1] == 0:
        out = np.full(out_shape, -np.inf, dtype=np.complex128)
        return out, np.zeros(out_shape, dtype=np.complex128)
    # (a unit weight is never multiplied in: (1+0j) * (inf+infj) is NaN)
    if w is not None:
        x = np.where(w == 0, complex(-np.inf, 0.0), x)
    k = np.argmax(x.real, axis=-1)[..., None]
    m = np.take_along_axis(x, k, axis=-1)
    w0 = np.ones_like(m) if w is None else np.take_along_axis(w, k, axis=-1)
    t = np.exp(x - m) if w is None else w * np.exp(x - m)
    np.put_along_axis(t, k, 0.0, axis=-1)
    s = np.sum(t, axis=-1, keepdims=True)
    s = np.where(s == 0, s, s / w0)
    sign = _sign(s + 1.0) * _sign(w0) * np.exp(m.imag * 1.0j)
    out = np.log1p(s) + np.log(w0) + m
    terms = np.exp(x) if w is None else w * np.exp(x)
    direct = np.sum(terms, axis=-1, keepdims=True)
    if return_sign:
        out = out.real
        bad = ~np.isfinite(out)
        out = np.where(bad, np.log(np.abs(direct)), out)
        sign = np.where(bad, _sign(direct), sign)
    else:
        bad = ~np.isfinite(out)
        out = np.where(bad, np.log(direct), out)
        fixed = np.empty_like(out)
        fixed.real = out.real
        fixed.imag = _wrap_radians(out.imag)
        out = fixed
    return out[..., 0], sign[..., 0]


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) along ``axis``, a drop-in for scipy.special.logsumexp.

    Parameters
    ----------
    a : array_like
        Input (bool, integer, real or complex).
    axis : None, int or tuple of ints
        Axes to reduce; None (default) reduces all of them.  Out of range
        raises ``numpy.exceptions.AxisError``.
    b : array_like, optional
        Weights broadcast against ``a``; may be negative (see return_sign)
        or complex.  A term with ``b == 0`` contributes nothing, even where
        ``a`` is +-inf or NaN (scipy gives NaN for some such rows).
    keepdims : bool
        Keep the reduced axes as length-1 dimensions.
    return_sign : bool
        If True return ``(log|sum|, sign)``: sign is +1, -1 or 0, or for
        complex input a complex phase (then log|sum| is real: float64, or
        float32 for complex64, as scipy).  If False a negative real sum
        gives NaN.

    Returns
    -------
    res (and sgn) : ndarray or NumPy scalar
        0-d results are NumPy scalars, as in scipy.  dtype: float64 for
        float64/int/bool input, float32 for float32/float16/bfloat16 (scipy
        keeps float16), complex as scipy; with ``b`` it follows
        ``np.result_type(a, b)`` the same way.

    Notes
    -----
    ``a`` (and ``b``) are broadcast together and made at least 1-d, as scipy
    does (so ``logsumexp(3.0, keepdims=True)`` has shape (1,)).
    Without ``b``: m the row maximum, s = sum of exp(a_i - m) over every
    element except ONE occurrence of m, res = log1p(s) + m (scipy's form;
    exact for a single dominant term).  With ``b``: terms with b = 0 are
    removed, w0 = sum of the weights of all occurrences of m (if they cancel
    exactly, w0 = 0, that group is removed and the next maximum used, so
    ``logsumexp([1000, 1000, 0], b=[1, -1, 1])`` is 0.0 where scipy gives
    NaN), s = sum_{a_i < m} b_i exp(a_i - m) / w0 and
    res = log|1 + s| + log|w0| + m.  Where that is not finite (+-inf or NaN
    maximum, overflow) the direct log(sum b exp(a)) is returned, with IEEE
    special values:
    +inf anywhere gives +inf, all -inf gives -inf with sign 0, NaN gives NaN,
    +inf terms of opposite weights give NaN.

    Reducing over an empty axis gives -inf (log of an empty sum) for any
    shape, never an error; its sign is 0 (scipy returns -1 there).

    Complex input follows scipy: the shift is the element with the largest
    real part, the imaginary part of the result is wrapped to (-pi, pi],
    and complex infinities give what log(sum(exp(a))) gives.  Internally
    float64/complex128, cast at the end.
    """
    a_arr = _as_numeric(a, "a", allow_complex=True)
    operands = [(a, a_arr)]
    b_arr = None
    if b is not None:
        b_arr = _as_numeric(b, "b", allow_complex=True)
        operands.append((b, b_arr))
    dtype = _result_dtype(*operands)
    work = np.complex128 if dtype.kind == "c" else np.float64

    x = a_arr.astype(work)
    w = None
    if b_arr is not None:
        w = b_arr.astype(work)
        try:
            x, w = np.broadcast_arrays(x, w)
        except ValueError:
            raise ValueError(
                f"b with shape {b_arr.shape} cannot be broadcast to a with shape {a_arr.shape}"
            ) from None
        w = np.atleast_1d(w)
    x = np.atleast_1d(x)
    axes = _axes(axis, x.ndim)

    rows, kept_shape, _ = _to_rows(x, axes)
    w_rows = None if w is None else _to_rows(w, axes)[0]
    with np.errstate(all="ignore"):
        if work is np.complex128:
            out, sign = _lse_rows_complex(rows, w_rows, return_sign)
        else:
            out, sign = _lse_rows_real(rows, w_rows)
            if not return_sign:
                out = np.where(sign < 0, np.nan, out)

    out = out.reshape(kept_shape)
    sign = sign.reshape(kept_shape)
    if keepdims:
        out = np.expand_dims(out, axes)
        sign = np.expand_dims(sign, axes)
    if return_sign:
        # the magnitude is real: the dtype of the value without return_sign,
        # or its real counterpart for complex input (float32 for complex64)
        out_dtype = np.empty(0, dtype).real.dtype
        return _finish(out, out_dtype), _finish(sign, dtype)
    return _finish(out, dtype)


def _check_out(out, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have shape {shape} and dtype {dtype}, "
            f"got shape {out.shape} and dtype {out.dtype}"
        )


def _softmax_common(x, axis, out, log):
    x_arr = _as_numeric(x, "x", allow_complex=True)
    dtype = _result_dtype((x, x_arr))
    shape = x_arr.shape
    if out is not None:
        _check_out(out, shape, dtype)
    # 0-d x is one element of one axis: axis 0 / -1 / (0,) / (-1,) / None
    # (as scipy's softmax for the ints and its logsumexp for all of them)
    axes = _axes(axis, max(x_arr.ndim, 1))

    with np.errstate(all="ignore"):
        if dtype.kind == "c":
            res = _softmax_complex(x_arr.astype(np.complex128).reshape(shape or (1,)), axes,
                                   log).reshape(shape)
        else:
            xf = x_arr.astype(np.float64).reshape(shape or (1,))
            rows, _, perm = _to_rows(xf, axes if shape else (0,))
            if rows.size == 0:
                res_rows = rows.copy()
            else:
                m, _, z, e, s = _lse_parts(rows)
                bad = ~np.isfinite(m)  # +inf, NaN or all -inf in the row
                if log:
                    res_rows = np.where(bad, rows - m, z - np.log1p(s))
                else:
                    res_rows = np.where(bad, np.nan, e / (1.0 + s))
            res = _from_rows(res_rows, xf.shape, perm).reshape(shape)

    if out is not None:
        np.copyto(out, res, casting="unsafe")
        return out
    return _finish(res, dtype)


def _softmax_complex(x, axes, log):
    """scipy's complex softmax / log_softmax (shift by NumPy's complex max)."""
    if x.size == 0:
        return x.copy()
    x_max = np.max(x, axis=axes, keepdims=True)
    if log:
        x_max = np.where(np.isfinite(x_max), x_max, 0)
        tmp = x - x_max
        return tmp - np.log(np.sum(np.exp(tmp), axis=axes, keepdims=True))
    e = np.exp(x - x_max)
    return e / np.sum(e, axis=axes, keepdims=True)


def softmax(x, axis=None, *, out=None):
    """exp(x) / sum(exp(x)) along ``axis``, a drop-in for scipy.special.softmax.

    Parameters
    ----------
    x : array_like
        Input (bool, integer, real or complex).
    axis : None, int or tuple of ints
        Axes forming one distribution; None (default) uses the whole array.
    out : ndarray, optional
        Preallocated array of the result's shape and dtype (an extension
        beyond scipy); it is filled and returned.  A wrong shape or dtype
        raises ValueError naming ``out``.

    Returns
    -------
    ndarray or NumPy scalar
        Same shape as x (0-d input gives a NumPy scalar unless ``out``).
        dtype: float64 for float64/int/bool, float32 for float32, float16 and
        bfloat16 (scipy keeps float16 and rejects bool), complex as scipy.

    Notes
    -----
    softmax_i = exp(x_i - m) / (1 + s) with m the row maximum and s the sum
    of exp(x_j - m) over all elements but one occurrence of the maximum.
    As scipy 1.17: a row containing +inf, or NaN, or only -inf gives NaN for
    the whole row (``softmax([inf, 1]) = [nan, nan]``).  Empty input gives an
    empty result.  Complex input follows scipy's formula (shift by NumPy's
    complex maximum).  Computed in float64 and cast at the end.
    """
    return _softmax_common(x, axis, out, log=False)


def log_softmax(x, axis=None, *, out=None):
    """log(softmax(x)) along ``axis``, a drop-in for scipy.special.log_softmax.

    Parameters
    ----------
    x : array_like
        Input (bool, integer, real or complex).
    axis : None, int or tuple of ints
        Axes forming one distribution; None (default) uses the whole array.
    out : ndarray, optional
        Preallocated array of the result's shape and dtype (an extension
        beyond scipy); it is filled and returned.  A wrong shape or dtype
        raises ValueError naming ``out``.

    Returns
    -------
    ndarray or NumPy scalar
        Same shape and dtype rules as :func:`softmax`.

    Notes
    -----
    log_softmax_i = (x_i - m) - log1p(s), with m the row maximum and s the
    sum of exp(x_j - m) over all elements but ONE occurrence of the maximum,
    so the dominant element keeps its tiny correction:
    ``log_softmax([0, -40])[0] = -4.25e-18`` (scipy gives 0).
    Special rows as scipy 1.17: with +inf in the row the result is
    x_i - inf (``log_softmax([inf, 1]) = [nan, -inf]``); a row of only -inf,
    or with a NaN, is all NaN.  Empty input gives an empty result.  Complex
    input follows scipy's formula.  Computed in float64, cast at the end.
    """
    return _softmax_common(x, axis, out, log=True)


