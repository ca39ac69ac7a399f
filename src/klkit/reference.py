"""Pure-NumPy reference ("twin") of klkit's public functions.

Every function here has the name and signature of the public klkit function
it mirrors.  The module is the test oracle and the runtime fallback for what
the C kernels leave out (``logsumexp`` with weights ``b``, complex input), so
it favours clear, numerically careful formulas over speed.  It imports only
NumPy (``ml_dtypes`` is never imported: bfloat16 arrays are recognised by
their dtype name) and no other klkit module.

Conventions shared by all functions
-----------------------------------
* Work is done in float64 (complex128 for complex input); the result is cast
  at the end.  Result dtype: float64 for float64, integer and bool input;
  float32 for float32, float16 and bfloat16 input; complex64/complex128 as
  scipy gives for complex input (``logsumexp``, ``softmax`` and
  ``log_softmax`` only).  With two inputs the dtype follows
  ``np.result_type`` of both (bfloat16 counted as float32; Python scalars
  are "weak" as in NumPy 2), then the rule above.  long double inputs give
  float64 (complex128): the computation is float64 anyway.
* Inputs are anything ``np.asarray`` accepts and are never modified.
  Object, string and other non-numeric dtypes raise TypeError.
* 0-d results come back as NumPy scalars (``np.float64``, ``np.float32``...).

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

Divergences (rows along ``axis``; p_i, q_i probabilities)
----------------------------------------------------------
``phi(d) = exp(-d) - 1 + d >= 0`` is the Bregman term of exp.  It is
evaluated by its Taylor series d^2 (1/2 - d/6 + d^2/24 - ...) for
|d| <= 1/2 (the direct form cancels there) and directly otherwise; a
weighted term w phi(d) with |d| > 1/2 is formed as (m - w) + w d where
m = w exp(-d) is known (or computed in log space), so nothing overflows.

* Entropy  H(P) = -sum p_i log p_i.  From logits every term is >= 0:
  -log p_i = (m - x_i) + log1p(s).  0 log 0 = 0.
* Cross-entropy  H(P, Q) = -sum p_i log q_i = H(P) + KL(P||Q), summed
  directly as the non-negative terms p_i (-log q_i); P > 0 where Q = 0
  gives +inf.
* KL from logits.  With Dx_i = (xp_i - xq_i) / T, c the P-mean of Dx,
  D_i = Dx_i - c, A = sum p_i phi(D_i) and delta = sum p_i D_i (zero in
  exact arithmetic, it only carries the rounding of c), the exact identity

      KL(P||Q) = E_p[Dx] + log E_p[exp(-Dx)] = delta + log1p(A - delta)

  is a sum of non-negative terms: no cancellation even for KL ~ 1e-16, and
  the rounding of c and of the weights p_i cancels to first order.  (When
  Q puts mass outside the support of P a term -log Q(supp P) is added; when
  P > 0 where Q = 0 the KL is +inf; when the sum is large, log E_p[exp(-D)]
  is taken in log space.)  The same quantities give the precise log-ratio
  log q_i - log p_i = -(D_i + KL - delta) used by ``js_div``.
  Rows with huge logits (max|x / T| eps > 1e-3 nats, e.g. 1e20) use the
  direct sums instead (see "Huge logits" in the code).
* KL from log-probs (not renormalised): the generalised (Bregman) form
      sum_i p_i log(p_i/q_i) - p_i + q_i = sum_i p_i phi(log p_i - log q_i),
  equal to KL for normalised inputs, >= 0 always, 0 for identical inputs.
  p_i = 0 terms are q_i.
* JS with mixture M = beta P + (1 - beta) Q, per element with
  r = log(q/p):
      dp = log(p/m) = -log1p((1 - beta) expm1(r)),
      dq = log(q/m) = -log1p(beta expm1(-r)),
      JS = sum beta p phi(dp) + (1 - beta) q phi(dq),
  (for |r| > 1 the logs are taken as logaddexp to avoid overflow);
  p = 0 elements give (1 - beta) q (-log(1 - beta)), q = 0 elements
  beta p (-log beta).
"""

import math
import operator
from typing import NamedTuple

import numpy as np

try:  # NumPy >= 2
    from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import normalize_axis_index
    from numpy.core.numeric import normalize_axis_tuple

__all__ = [
    "logsumexp",
    "softmax",
    "log_softmax",
    "entropy",
    "cross_entropy",
    "kl_div",
    "js_div",
    "token_logprobs",
    "softmax_cross_entropy",
]

_KINDS = ("logits", "logprobs", "probs")
_PY_SCALARS = (bool, int, float, complex)
_NUMPY2 = int(np.__version__.split(".")[0]) >= 2


# --------------------------------------------------------------------------
# dtypes and argument checking
# --------------------------------------------------------------------------

def _is_bf16(dtype):
    return dtype.name == "bfloat16"


def _as_numeric(x, name, *, allow_complex):
    """np.asarray(x), checked to hold bool, integer, real (or complex) numbers."""
    arr = np.asarray(x)
    kind = arr.dtype.kind
    if _is_bf16(arr.dtype) or kind in "biuf":
        return arr
    if kind == "c":
        if allow_complex:
            return arr
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")


def _promotion_operand(x, arr):
    """What np.result_type should see for one input: Python scalars stay weak."""
    if type(x) in _PY_SCALARS:
        return x
    return np.dtype(np.float32) if _is_bf16(arr.dtype) else arr.dtype


def _result_dtype(*operands):
    """The output dtype for inputs given as (original object, array) pairs."""
    rt = np.result_type(*[_promotion_operand(x, arr) for x, arr in operands])
    if rt.kind == "c":
        return np.dtype(np.complex64 if rt.itemsize <= 8 else np.complex128)
    if rt.kind == "f" and rt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)  # float64, long double, bool and integers


def _finish(res, dtype):
    """Cast to the output dtype; a 0-d result becomes a NumPy scalar."""
    res = np.asarray(res).astype(dtype, copy=False)
    return res[()] if res.ndim == 0 else res


def _axes(axis, ndim):
    """Normalised tuple of axes (all axes for None); AxisError when out of range."""
    if axis is None:
        return tuple(range(ndim))
    return normalize_axis_tuple(axis, ndim, "axis")


def _to_rows(x, axes):
    """Move ``axes`` to the end and flatten them into one last axis.

    Returns (rows, kept_shape, perm) so that the row results can be put back
    with ``_from_rows``.
    """
    keep = [i for i in range(x.ndim) if i not in axes]
    perm = keep + list(axes)
    xt = np.transpose(x, perm)
    kept_shape = xt.shape[: len(keep)]
    n = math.prod(x.shape[i] for i in axes)
    return xt.reshape(kept_shape + (n,)), kept_shape, perm


def _from_rows(rows, shape, perm):
    """Inverse of ``_to_rows`` for an elementwise (same-shape) result."""
    t_shape = tuple(shape[i] for i in perm)
    return np.transpose(rows.reshape(t_shape), np.argsort(perm))


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


def _check_kind(kind):
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")


def _check_temperature(temperature, kind):
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(
            f"temperature must be a finite number > 0, got {temperature!r}"
        ) from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if t != 1.0 and kind != "logits":
        raise ValueError(
            f"temperature={temperature!r} is only allowed with kind='logits' "
            f"(got kind={kind!r})"
        )
    return t


def _check_base(base):
    """log(base), or 1.0 for base=None (nats)."""
    if base is None:
        return 1.0
    try:
        b = float(base)
    except (TypeError, ValueError):
        raise ValueError(f"base must be None or a positive number != 1, got {base!r}") from None
    if not (math.isfinite(b) and b > 0 and b != 1):
        raise ValueError(f"base must be None or a finite positive number != 1, got {base!r}")
    return math.log(b)


def _check_beta(beta):
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta must be a number in [0, 1], got {beta!r}") from None
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return b


# --------------------------------------------------------------------------
# log-sum-exp, softmax and log-softmax
# --------------------------------------------------------------------------

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
        # the magnitude is real also for complex input (float32 for complex64)
        out_dtype = np.dtype(np.float32 if dtype == np.complex64 else np.float64)
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
    axes = _axes(axis, x_arr.ndim)

    with np.errstate(all="ignore"):
        if dtype.kind == "c":
            res = _softmax_complex(x_arr.astype(np.complex128), axes, log)
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


# --------------------------------------------------------------------------
# divergences: helpers
# --------------------------------------------------------------------------

# (-1)^k / (k + 2)!  for k = 0..16: phi(d) = d^2 * sum_k c_k d^k, |d| <= 1/2
_PHI_COEFFS = tuple((-1) ** k / math.factorial(k + 2) for k in range(17))


def _phi(d):
    """phi(d) = exp(-d) - 1 + d >= 0, without cancellation for small |d|."""
    d = np.asarray(d, dtype=np.float64)
    poly = np.zeros_like(d)
    for c in reversed(_PHI_COEFFS):  # Horner
        poly = poly * d + c
    series = d * d * poly
    direct = np.expm1(-d) + d
    return np.where(np.abs(d) <= 0.5, series, direct)


def _wphi(w, d, m):
    """w * phi(d) where m = w * exp(-d) is known; (m - w) + w d for |d| > 1/2."""
    return np.where(np.abs(d) <= 0.5, w * _phi(np.where(np.abs(d) <= 0.5, d, 0.0)),
                    (m - w) + w * d)


def _nxlogx(t):
    """-t log t for a scalar in [0, 1], 0 at t = 0."""
    return 0.0 if t == 0.0 else -t * math.log(t)


def _masked_lse(lx, mask):
    """log sum exp(lx) over ``mask`` along the last axis (-inf if empty)."""
    y = np.where(mask, lx, -np.inf)
    if y.shape[-1] == 0:
        return np.full(y.shape[:-1] + (1,), -np.inf)
    m, _, _, _, s = _lse_parts(y)
    return np.where(np.isfinite(m), m + np.log1p(s), m)


def _log_mass(dist, mask):
    """log of the probability that ``dist`` gives to ``mask`` (keepdims).

    The complement is summed and log1p used while it is small, so the
    result is exactly 0 when the mask covers the support.
    """
    outside = np.sum(np.where(mask, 0.0, dist.p), axis=-1, keepdims=True)
    return np.where(outside <= 0.5, np.log1p(-outside), _masked_lse(dist.logp, mask))


class _Dist(NamedTuple):
    """A row-normalised distribution along the last axis."""

    logp: np.ndarray  # (..., n) log-probabilities (-inf where p = 0)
    p: np.ndarray  # (..., n) probabilities
    bad: np.ndarray  # (...,) rows where the softmax is undefined (NaN result)


def _dist_from_logits(x):
    """Precise log_softmax / softmax of logits x (..., n), n >= 1."""
    m, _, z, e, s = _lse_parts(x)
    return _Dist(z - np.log1p(s), e / (1.0 + s), ~np.isfinite(m[..., 0]))


def _neg_p_log_q(p, logp, logq):
    """Elementwise -p log q with 0 log 0 = 0, and +inf where p > 0 = q."""
    term = -p * logq
    term = np.where((logp == -np.inf) & ~np.isnan(logq), 0.0, term)
    return np.where((logp > -np.inf) & (logq == -np.inf), np.inf, term)


def _prepare(arrays, axis):
    """Check, convert and broadcast the inputs of a divergence.

    ``arrays`` is a list of (name, value).  Returns (rows, dtype): float64
    copies broadcast together with ``axis`` moved last, and the output dtype.
    """
    converted = [(x, _as_numeric(x, name, allow_complex=False)) for name, x in arrays]
    dtype = _result_dtype(*converted)
    values = [arr.astype(np.float64) for _, arr in converted]
    try:
        values = np.broadcast_arrays(*values)
    except ValueError:
        shapes = ", ".join(f"{name} {arr.shape}" for (name, _), (_, arr) in zip(arrays, converted))
        raise ValueError(f"shapes do not broadcast: {shapes}") from None
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    ax = normalize_axis_index(ax, values[0].ndim)
    return [np.moveaxis(v, ax, -1) for v in values], dtype


def _to_logits(x, kind, temperature):
    """Logits of rows x: x / T for "logits", log(x) for "probs".

    For "probs", log turns negative entries into NaN and an all-zero row into
    all -inf, so both end as NaN rows through the softmax.
    """
    if kind == "probs":
        return np.log(x)
    return x if temperature == 1.0 else x / temperature


def _empty_result(rows, kind):
    """Result for a reduction over an empty axis: NaN, or 0.0 for log-probs."""
    return np.full(rows.shape[:-1], 0.0 if kind == "logprobs" else np.nan)


def _log_ratio(P, Q, dx):
    """Centred log-ratio of two logit rows (see "KL from logits" above).

    ``dx`` = (xp - xq) / T.  Returns (U, D, delta, G) with
      U      elements where p > 0 and q > 0,
      D      dx - c on U (0 elsewhere), c the mean of dx under P restricted to U,
      delta  sum_U p~ D, the rounding left in c (p~ = P renormalised on U),
      G      log(Zq / Zp) + c, so that  log q_i - log p_i = -(D_i + G)  on U
             and, when U is the support of P, KL(P||Q) = delta + G.
    delta and G have keepdims shape.
    """
    U = (P.logp > -np.inf) & (Q.logp > -np.inf)
    log_pu = _log_mass(P, U)  # 0 when U is the support of P
    log_qu = _log_mass(Q, U)
    log_pt = np.where(U, P.logp - log_pu, -np.inf)
    pt = np.exp(log_pt)
    dxu = np.where(U, dx, 0.0)
    c = np.sum(pt * dxu, axis=-1, keepdims=True)
    D = np.where(U, dxu - c, 0.0)
    delta = np.sum(pt * D, axis=-1, keepdims=True)
    # log E_p~[exp(-D)] = log1p(A - delta) while it is small; in log space above.
    A = np.sum(_wphi(pt, D, np.exp(log_pt - D)), axis=-1, keepdims=True)
    big = _masked_lse(log_pt - D, U)
    log_mean = np.where(big <= 1.0, np.log1p(A - delta), big)
    G = log_pu + log_mean - log_qu
    return U, D, delta, G


# Huge logits.  The centred form above needs x / T, (xp - xq) / T and the
# sums over D to be exact to well below a nat; at |x / T| ~ 1e20 their
# absolute resolution is ~1e4 (and near 1e308 they overflow), so everything
# is lost to rounding.  Such rows instead use log-softmax values computed
# from (x - max x) / T, each row relative to its own maximum (no overflow,
# full resolution near the maximum), and the direct sums
# KL = sum p (lp - lq) and r = lq - lp.  The threshold |x / T| eps > 1e-3
# nats also catches every row where the centred sums could overflow.
_HUGE_LOGIT_NATS = 1e-3


def _huge_rows(xp, xq, temperature):
    """Rows (...,) whose rounding of x / T, about max|x / T| eps, exceeds 1e-3 nats."""
    def absmax(x):
        return np.max(np.where(np.isfinite(x), np.abs(x), 0.0), axis=-1)

    scale = np.maximum(absmax(xp), absmax(xq)) / temperature  # inf on overflow
    return scale * np.finfo(np.float64).eps > _HUGE_LOGIT_NATS


def _dist_from_shifted_logits(x, temperature):
    """_dist_from_logits of x / T, computed from (x - max x) / T (no overflow)."""
    m = np.max(x, axis=-1, keepdims=True)
    return _dist_from_logits((x - np.where(np.isfinite(m), m, 0.0)) / temperature)


def _log_mix(r, beta):
    """log(beta + (1 - beta) exp(r)), i.e. log(m/p) for r = log(q/p)."""
    small = np.log1p((1.0 - beta) * np.expm1(np.where(np.abs(r) <= 1.0, r, 0.0)))
    with np.errstate(divide="ignore"):
        large = np.logaddexp(np.log(beta), np.log1p(-beta) + r)
    return np.where(np.abs(r) <= 1.0, small, large)


def _js_terms(p, q, r, p_zero, q_zero, beta):
    """beta p phi(dp) + (1 - beta) q phi(dq) per element (module docstring)."""
    m = beta * p + (1.0 - beta) * q
    dp = -_log_mix(r, beta)  # log(p/m)
    dq = -_log_mix(-r, 1.0 - beta)  # log(q/m)
    t = beta * _wphi(p, dp, m) + (1.0 - beta) * _wphi(q, dq, m)
    t = np.where(p_zero, q * _nxlogx(1.0 - beta), t)
    t = np.where(q_zero, p * _nxlogx(beta), t)
    return np.where(p_zero & q_zero, 0.0, t)


def _clip_sum(terms):
    """Row sums of non-negative terms, a tiny negative rounding clipped to 0."""
    total = np.sum(terms, axis=-1)
    return np.where(total < 0, 0.0, total)


# --------------------------------------------------------------------------
# divergences: public functions
# --------------------------------------------------------------------------

_DIV_DOC = """
    Common arguments
    ----------------
    axis : int
        The axis holding the distribution (default -1), counted on the
        broadcast shape of the inputs; negative values allowed, out of range
        raises ``numpy.exceptions.AxisError``.  The result drops that axis;
        a 0-d result is a NumPy scalar.
    kind : {"logits", "logprobs", "probs"}
        How the distributions are given.  "logits": unnormalised
        log-probabilities, normalised with log_softmax(x / temperature)
        along ``axis``; a row with +inf or NaN, or only -inf, gives NaN.
        "logprobs": used as given (not renormalised).  "probs": non-negative
        weights normalised by their sum (as scipy.stats.entropy); a negative
        entry, an all-zero row, NaN or +inf gives NaN for that row.  Any
        other value raises ValueError naming ``kind``.
    base : None or float
        None for nats, else a finite positive number != 1 (2 for bits); the
        result is divided by log(base).  Anything else raises ValueError.
    temperature : float
        Finite and > 0 (ValueError otherwise); divides the logits (the input
        is not modified).  A value != 1.0 needs kind="logits" (ValueError
        naming ``temperature``).

    Zero probabilities follow 0 log 0 = 0.  An empty ``axis`` gives NaN for
    kind "logits" / "probs" and 0.0 for "logprobs".  Inputs are broadcast
    (NumPy rules), computed in float64 and never modified; the result is
    float64 for float64, integer and bool inputs and float32 for float32,
    float16 and bfloat16 (np.result_type of the input dtypes, then that
    rule).  Complex input raises TypeError.
"""


def entropy(p, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Shannon entropy H(P) = -sum P log P along ``axis``.

    For logits every term is computed as p_i * ((m - x_i) + log1p(s)) >= 0
    (m the row maximum, s the sum of exp(x_j - m) over all but one maximum),
    so a near one-hot row keeps its relative accuracy.  For log-probs it is
    -sum exp(lp) lp (not renormalised).
    """
    _check_kind(kind)
    temperature = _check_temperature(temperature, kind)
    log_base = _check_base(base)
    (x,), dtype = _prepare([("p", p)], axis)
    with np.errstate(all="ignore"):
        if x.shape[-1] == 0:
            res = _empty_result(x, kind)
        elif kind == "logprobs":
            res = np.sum(_neg_p_log_q(np.exp(x), x, x), axis=-1)
        else:
            P = _dist_from_logits(_to_logits(x, kind, temperature))
            res = np.sum(_neg_p_log_q(P.p, P.logp, P.logp), axis=-1)
            res = np.where(P.bad, np.nan, res)
        res = res / log_base
    return _finish(res, dtype)


def cross_entropy(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Cross-entropy H(P, Q) = -sum P log Q = H(P) + KL(P||Q) along ``axis``.

    Summed directly as the non-negative terms p_i * (-log q_i), with log q
    from the precise log_softmax; P > 0 where Q = 0 gives +inf, P = 0 terms
    are 0.  For kind="logprobs" it is -sum exp(lp) lq (not renormalised).
    """
    _check_kind(kind)
    temperature = _check_temperature(temperature, kind)
    log_base = _check_base(base)
    (xp, xq), dtype = _prepare([("p", p), ("q", q)], axis)
    with np.errstate(all="ignore"):
        if xp.shape[-1] == 0:
            res = _empty_result(xp, kind)
        elif kind == "logprobs":
            res = np.sum(_neg_p_log_q(np.exp(xp), xp, xq), axis=-1)
        else:
            P = _dist_from_logits(_to_logits(xp, kind, temperature))
            Q = _dist_from_logits(_to_logits(xq, kind, temperature))
            res = np.sum(_neg_p_log_q(P.p, P.logp, Q.logp), axis=-1)
            res = np.where(P.bad | Q.bad, np.nan, res)
        res = res / log_base
    return _finish(res, dtype)


def kl_div(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Kullback-Leibler divergence KL(P||Q) = sum P log(P/Q) along ``axis``.

    Argument order is the mathematical one: ``kl_div(p, q)`` is KL(P||Q)
    (forward KL when P is the data); the reverse KL is ``kl_div(q, p)``.

    Accuracy: for logits (and probs, taken as logits log p) it keeps its
    relative accuracy when P and Q are nearly identical (KL ~ 1e-12 and
    below).  With Dx_i = (xp_i - xq_i) / T, c the P-mean of Dx, D_i = Dx_i - c
    and phi(d) = exp(-d) - 1 + d >= 0 (series for |d| <= 1/2),

        KL = delta + log1p(sum_i p_i phi(D_i) - delta),  delta = sum_i p_i D_i,

    an exact identity (delta is 0 up to the rounding of c, which it
    cancels).  Elements with p_i = 0 contribute 0; p_i > 0 where q_i = 0
    gives +inf; Q mass outside the support of P adds -log Q(supp P).
    kind="logprobs" uses the generalised (Bregman) form
    sum_i p_i log(p_i/q_i) - p_i + q_i = sum_i p_i phi(lp_i - lq_i)
    (p_i = 0 terms are q_i), equal to KL for normalised inputs.
    KL >= 0 always (a tiny negative rounding is clipped to 0) and
    KL(P||P) == 0 exactly.
    """
    _check_kind(kind)
    temperature = _check_temperature(temperature, kind)
    log_base = _check_base(base)
    (xp, xq), dtype = _prepare([("p", p), ("q", q)], axis)
    with np.errstate(all="ignore"):
        if xp.shape[-1] == 0:
            res = _empty_result(xp, kind)
        elif kind == "logprobs":
            res = _clip_sum(_kl_bregman_terms(xp, xq))
        else:
            res = _kl_logits(_to_logits(xp, kind, 1.0), _to_logits(xq, kind, 1.0), temperature)
        res = res / log_base
    return _finish(res, dtype)


def _kl_bregman_terms(lp, lq):
    """p phi(lp - lq) per element (= q where p = 0, +inf where p > 0 = q)."""
    p, q = np.exp(lp), np.exp(lq)
    d = lp - lq
    t = _wphi(p, d, q)
    t = np.where(lp == -np.inf, q, t)
    t = np.where((lp > -np.inf) & (lq == -np.inf), np.inf, t)
    return np.maximum(t, 0.0)  # NaN passes through np.maximum


def _kl_logits(xp, xq, temperature):
    """KL(P||Q) for rows of logits (temperature not yet applied)."""
    P = _dist_from_logits(_to_logits(xp, "logits", temperature))
    Q = _dist_from_logits(_to_logits(xq, "logits", temperature))
    dx = xp - xq if temperature == 1.0 else (xp - xq) / temperature
    _, _, delta, G = _log_ratio(P, Q, dx)
    kl = _kl_special_values((delta + G)[..., 0], P, Q)
    huge = _huge_rows(xp, xq, temperature)
    if np.any(huge):  # direct sum p (lp - lq), see "Huge logits" above
        P, Q = _dist_from_shifted_logits(xp, temperature), _dist_from_shifted_logits(xq, temperature)
        terms = np.where(P.logp > -np.inf, P.p * (P.logp - Q.logp), 0.0)
        kl = np.where(huge, _kl_special_values(np.sum(terms, axis=-1), P, Q), kl)
    return kl


def _kl_special_values(kl, P, Q):
    """Clip a tiny negative KL to 0; +inf where p > 0 = q; NaN for bad rows."""
    kl = np.where(kl < 0, 0.0, kl)
    q_zero = (P.logp > -np.inf) & (Q.logp == -np.inf)
    kl = np.where(np.any(q_zero, axis=-1), np.inf, kl)
    return np.where(P.bad | Q.bad, np.nan, kl)


def js_div(p, q, axis=-1, *, beta=0.5, kind="logits", base=None, temperature=1.0):
    """Generalised Jensen-Shannon divergence along ``axis``.

    With the mixture M = beta P + (1 - beta) Q it is
    beta KL(P||M) + (1 - beta) KL(Q||M); beta in [0, 1] (ValueError
    otherwise).  It is continuous in beta and 0 at beta = 0 and 1 (NaN input
    still gives NaN); beta = 1/2 is the usual JS divergence (<= log 2).

    Computed without cancellation for nearly identical P, Q: per element,
    with r = log(q/p), dp = log(p/m) = -log1p((1 - beta) expm1(r)) and
    dq = log(q/m) = -log1p(beta expm1(-r)),

        JS = sum_i beta p_i phi(dp_i) + (1 - beta) q_i phi(dq_i),

    every term >= 0 (w phi(d) is taken as (m - w) + w d for |d| > 1/2).
    p = 0 elements contribute (1 - beta) q (-log(1 - beta)), q = 0 elements
    beta p (-log beta).  For logits, r = lq - lp comes from the centred
    log-ratio of the KL computation (accurate to the size of r itself).
    For kind="logprobs" the same sum is the generalised (Bregman) JS of the
    unnormalised inputs.
    """
    _check_kind(kind)
    temperature = _check_temperature(temperature, kind)
    log_base = _check_base(base)
    beta = _check_beta(beta)
    (xp, xq), dtype = _prepare([("p", p), ("q", q)], axis)
    with np.errstate(all="ignore"):
        if xp.shape[-1] == 0:
            res = _empty_result(xp, kind)
        elif kind == "logprobs":
            pr, qr = np.exp(xp), np.exp(xq)
            terms = _js_terms(pr, qr, xq - xp, xp == -np.inf, xq == -np.inf, beta)
            res = _clip_sum(terms)
        else:
            res = _js_logits(_to_logits(xp, kind, 1.0), _to_logits(xq, kind, 1.0),
                             temperature, beta)
        res = res / log_base
    return _finish(res, dtype)


def _js_logits(xp, xq, temperature, beta):
    """JS for rows of logits (temperature not yet applied)."""
    P = _dist_from_logits(_to_logits(xp, "logits", temperature))
    Q = _dist_from_logits(_to_logits(xq, "logits", temperature))
    dx = xp - xq if temperature == 1.0 else (xp - xq) / temperature
    U, D, _, G = _log_ratio(P, Q, dx)
    js = _js_from_log_ratio(P, Q, np.where(U, -(D + G), 0.0), beta)  # r = log q - log p on U
    huge = _huge_rows(xp, xq, temperature)
    if np.any(huge):  # direct r = lq - lp, see "Huge logits" above
        P, Q = _dist_from_shifted_logits(xp, temperature), _dist_from_shifted_logits(xq, temperature)
        U = (P.logp > -np.inf) & (Q.logp > -np.inf)
        js = np.where(huge, _js_from_log_ratio(P, Q, np.where(U, Q.logp - P.logp, 0.0), beta), js)
    return js


def _js_from_log_ratio(P, Q, r, beta):
    """JS row sums from the distributions and r = log q - log p (where both > 0)."""
    p_zero, q_zero = P.logp == -np.inf, Q.logp == -np.inf
    js = _clip_sum(_js_terms(P.p, Q.p, r, p_zero, q_zero, beta))
    return np.where(P.bad | Q.bad, np.nan, js)


for _f in (entropy, cross_entropy, kl_div, js_div):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ += _DIV_DOC
del _f


# --------------------------------------------------------------------------
# Token log-probs and cross-entropy with class-index targets (SPEC section 3)
# --------------------------------------------------------------------------
#
#   log p_t = (x_t - m) / T - log1p(s)       (the log_softmax above, gathered)
#   H       = entropy of softmax(x / T)      (entropy(kind="logits") above)
#
# softmax_cross_entropy follows torch.nn.functional.cross_entropy with class
# indices (aten/src/ATen/native/LossNLL.cpp): with eps = label_smoothing,
# w the class weights (ones by default) and C the number of classes,
#     nll_i    = -w[t_i] log p_i[t_i]
#     smooth_i = -sum_c w_c log p_i[c]
#     loss_i   = (1 - eps) nll_i + eps / C smooth_i       (0 where t_i ignored)
# "mean" divides both sums by sum_i w[t_i] over the kept positions (the
# count when w is None), so an all-ignored batch gives 0/0 = nan as torch.

class TokenLogprobs(NamedTuple):
    """token_logprobs(..., return_entropy=..., return_lse=...): the fields
    not asked for are None."""
    logprobs: object
    entropy: object
    lse: object


_REDUCTIONS = ("mean", "sum", "none")


def _check_targets(targets, lead_shape, n_classes, ignore_index):
    """targets as a flat int64 array, after the checks of SPEC section 3:
    an integer array of the leading shape of the logits whose entries are
    ignore_index or in [0, n_classes)."""
    try:
        ignore_index = operator.index(ignore_index)
    except TypeError:
        raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}") from None
    if not -2**63 <= ignore_index < 2**63:
        raise ValueError(f"ignore_index: {ignore_index} is outside the int64 range")
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets: expected an integer array of class indices, got dtype {t.dtype}")
    if t.shape != tuple(lead_shape):
        raise ValueError(f"targets: shape {t.shape} does not match the logits' leading "
                         f"shape {tuple(lead_shape)}")
    bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad)[0]), t.shape) if t.ndim else ()
        raise ValueError(f"targets: class index {t[pos]} at position {tuple(int(i) for i in pos)} "
                         f"is outside [0, {n_classes}) and is not ignore_index ({ignore_index})")
    return np.ascontiguousarray(t, dtype=np.int64).reshape(-1), ignore_index


def _check_logits(logits):
    x = _as_numeric(logits, "logits", allow_complex=False)
    if x.ndim == 0:
        raise ValueError("logits: expected at least one dimension (the class axis, last)")
    return x


def token_logprobs(logits, targets, *, temperature=1.0, ignore_index=-100,
                   return_entropy=False, return_lse=False):
    x = _check_logits(logits)
    dtype = _result_dtype((logits, x))
    t = _check_temperature(temperature, "logits")
    tgt, ignore_index = _check_targets(targets, x.shape[:-1], x.shape[-1], ignore_index)
    rows = x.astype(np.float64).reshape(math.prod(x.shape[:-1]), x.shape[-1]) / t
    keep = tgt != ignore_index
    lp = np.zeros(rows.shape[0])
    ent = np.zeros(rows.shape[0])
    lse = np.zeros(rows.shape[0])
    if keep.any():
        kept = rows[keep]
        lp[keep] = np.take_along_axis(log_softmax(kept, axis=-1), tgt[keep][:, None], -1)[:, 0]
        ent[keep] = entropy(kept, axis=-1)
        lse[keep] = logsumexp(kept, axis=-1)
    shape = x.shape[:-1]
    lp = _finish(lp.reshape(shape), dtype)
    if not (return_entropy or return_lse):
        return lp
    return TokenLogprobs(lp, _finish(ent.reshape(shape), dtype) if return_entropy else None,
                         _finish(lse.reshape(shape), dtype) if return_lse else None)


def _check_ce_options(weight, n_classes, label_smoothing, reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    try:
        eps = float(label_smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}") from None
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")
    if weight is not None:
        weight = _as_numeric(weight, "weight", allow_complex=False).astype(np.float64)
        if weight.shape != (n_classes,):
            raise ValueError(f"weight: expected one value per class, shape ({n_classes},), "
                             f"got {weight.shape}")
    return weight, eps


def _ce_combine(lp, smooth, tgt, keep, weight, eps, n_classes, reduction, shape, dtype):
    """torch's loss from per-row log p_t and sum_c w_c log p_c (float64)."""
    w_t = np.where(keep, 1.0 if weight is None else weight[np.where(keep, tgt, 0)], 0.0)
    nll = np.where(keep, -w_t * lp, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):   # C = 0: nan, as torch
        loss = nll if eps == 0.0 else \
            (1.0 - eps) * nll + (np.float64(eps) / n_classes) * np.where(keep, -smooth, 0.0)
    if reduction == "none":
        return _finish(loss.reshape(shape), dtype)
    total = math.fsum(loss)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.float64(total) / np.float64(math.fsum(w_t))
    return _finish(np.float64(total), dtype)


def softmax_cross_entropy(logits, targets, *, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction="mean"):
    x = _check_logits(logits)
    dtype = _result_dtype((logits, x))
    n_classes = x.shape[-1]
    weight, eps = _check_ce_options(weight, n_classes, label_smoothing, reduction)
    tgt, ignore_index = _check_targets(targets, x.shape[:-1], n_classes, ignore_index)
    rows = x.astype(np.float64).reshape(math.prod(x.shape[:-1]), n_classes)
    keep = tgt != ignore_index
    lp = np.zeros(rows.shape[0])
    smooth = np.zeros(rows.shape[0])
    if keep.any():
        logp = log_softmax(rows[keep], axis=-1)
        lp[keep] = np.take_along_axis(logp, tgt[keep][:, None], -1)[:, 0]
        if eps:
            # a class of weight 0 contributes nothing, even where log p = -inf
            with np.errstate(invalid="ignore"):
                terms = logp if weight is None else np.where(weight == 0, 0.0, weight * logp)
            smooth[keep] = terms.sum(axis=-1)
    return _ce_combine(lp, smooth, tgt, keep, weight, eps, n_classes, reduction,
                       x.shape[:-1], dtype)


# ==========================================================================
# segments: per-sequence reductions and KL estimators (SPEC section 4)
# ==========================================================================
#
# Layouts (the same for every function): packed 1-D ``values`` with n+1
# non-decreasing ``offsets`` (sequence i is values[offsets[i]:offsets[i+1]]);
# padded 2-D [B, T] ``values`` with a bool / 0-1 ``mask`` of the same shape
# (sequence b is the masked entries of row b; no mask: every entry); or a
# pyarrow ListArray / LargeListArray / ChunkedArray (a null list is an empty
# sequence).  The twins below cut the input into one float64 array per
# sequence and reduce each with a plain formula: math.fsum for sums (the
# correctly rounded sum), the exclude-the-maximum log-sum-exp, and
#
#     k3(r) = exp(r) - 1 - r = r^2 sum_{k>=0} r^k / (k+2)!   (|r| <= 2)
#           = expm1(r) - r                                   (|r| > 2)
#
# with r = ref_logp - logp (the series has no cancellation; expm1(r) - r
# has none beyond |r| = 2).  The argument checks live here and are shared
# by klkit.segments, so both raise the same errors.

ESTIMATORS = {"k1": "k1", "kl": "k1", "k2": "k2", "mse": "k2", "k3": "k3",
              "low_var_kl": "k3", "abs": "abs"}
AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
             "seq-mean-token-sum-norm")

__all__ += ["segment_sum", "segment_mean", "segment_max", "segment_logsumexp",
            "kl_estimate", "seq_kl", "agg_loss"]


def _is_arrow(x):
    return type(x).__module__.split(".")[0] == "pyarrow"


def _check_estimator(estimator):
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {tuple(ESTIMATORS)}, got {estimator!r}")
    return ESTIMATORS[estimator]


def _check_clamp(clamp):
    """inf for None, else a number >= 0."""
    if clamp is None:
        return math.inf
    try:
        c = float(clamp)
    except (TypeError, ValueError):
        raise TypeError(f"clamp: expected a number >= 0 or None, got {clamp!r}") from None
    if not c >= 0:
        raise ValueError(f"clamp: expected a number >= 0 or None, got {clamp!r}")
    return c


def _check_reduce(reduce):
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce: expected 'sum' or 'mean', got {reduce!r}")
    return reduce


def _check_mode(mode):
    if not isinstance(mode, str) or mode not in AGG_MODES:
        raise ValueError(f"mode: expected one of {AGG_MODES}, got {mode!r}")
    return mode


def _check_empty(empty):
    try:
        return float(empty)
    except (TypeError, ValueError):
        raise TypeError(f"empty: expected a real number, got {empty!r}") from None


def _check_count(value, name):
    """None, or a number >= 0 (global token / sequence counts, lengths)."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number >= 0 or None, got {value!r}") from None
    if not v >= 0 or v == math.inf:
        raise ValueError(f"{name}: expected a finite number >= 0 or None, got {value!r}")
    return v


def _check_offsets(offsets, n_values):
    """(starts, lengths) as int64 from n+1 offsets, checked: integer, 1-D,
    offsets[0] >= 0, non-decreasing, offsets[-1] <= n_values."""
    off = np.asarray(offsets)
    if off.dtype.kind not in "iu":
        raise TypeError(f"offsets: expected an integer array, got dtype {off.dtype}")
    if off.ndim != 1 or off.shape[0] < 1:
        raise ValueError(f"offsets: expected a 1-D array of n+1 positions, got shape {off.shape}")
    if off.dtype.kind == "u" and off.dtype.itemsize == 8 and off.max() > np.iinfo(np.int64).max:
        raise ValueError("offsets: values beyond the int64 range")
    off = off.astype(np.int64, copy=False)
    if off[0] < 0:
        raise ValueError(f"offsets: offsets[0] = {off[0]} is negative")
    lens = np.diff(off)
    bad = np.flatnonzero(lens < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"offsets: must be non-decreasing, but offsets[{i + 1}] = {off[i + 1]} "
                         f"< offsets[{i}] = {off[i]}")
    if off[-1] > n_values:
        raise ValueError(f"offsets: offsets[-1] = {off[-1]} lies beyond the {n_values} values")
    return np.ascontiguousarray(off[:-1]), lens


def _check_mask(mask, shape):
    """mask as a bool array of ``shape``: bool as is, integers / floats must
    be all 0 or 1 (a weight is not a mask)."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask: shape {m.shape} does not match the values' shape {tuple(shape)}")
    if m.dtype == np.bool_:
        return m
    if m.dtype.kind not in "iuf":
        raise TypeError(f"mask: expected a bool or 0/1 array, got dtype {m.dtype}")
    with np.errstate(invalid="ignore"):
        ok = (m == 0) | (m == 1)
    if not np.all(ok):
        raise ValueError("mask: expected booleans or 0/1 values (weights are not masks), "
                         f"found {m[~ok].flat[0]!r}")
    return m != 0


def _check_layout_args(values, offsets, mask):
    if offsets is not None and mask is not None:
        raise ValueError("mask: give offsets (packed values) or mask (padded values), not both")
    if _is_arrow(values):
        if offsets is not None:
            raise ValueError("offsets: an Arrow list array carries its own offsets")
        if mask is not None:
            raise ValueError("mask: an Arrow list array takes no mask")


def _arrow_chunks(arr, name):
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        chunks, typ = arr.chunks, arr.type
    elif isinstance(arr, (pa.ListArray, pa.LargeListArray)):
        chunks, typ = [arr], arr.type
    else:
        raise TypeError(f"{name}: expected a pyarrow ListArray, LargeListArray or ChunkedArray "
                        f"of lists, got {type(arr).__name__}")
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise TypeError(f"{name}: expected a list type, got {typ}")
    vt = typ.value_type
    if not (pa.types.is_floating(vt) or pa.types.is_integer(vt) or pa.types.is_boolean(vt)):
        raise TypeError(f"{name}: expected lists of numbers, got {typ}")
    return chunks, vt


def _arrow_value_dtype(vt):
    import pyarrow as pa

    if pa.types.is_boolean(vt):
        return np.dtype(np.bool_)
    return np.dtype(vt.to_pandas_dtype())


def _ref_sequences(values, offsets, mask, name="values"):
    """(list of float64 arrays, one per sequence; input dtype; padded T or None)."""
    _check_layout_args(values, offsets, mask)
    if _is_arrow(values):
        chunks, vt = _arrow_chunks(values, name)
        seqs = []
        for c in chunks:
            flat = c.flatten()          # slicing and null lists accounted for
            if flat.null_count:
                raise ValueError(f"{name}: a list holds a null value (only whole null lists "
                                 "are allowed: they are empty sequences)")
            x = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
            lens = np.asarray(c.value_lengths().fill_null(0).to_numpy(zero_copy_only=False),
                              dtype=np.int64)
            seqs += np.split(x, np.cumsum(lens)[:-1]) if lens.size else []
        return seqs, _arrow_value_dtype(vt), None
    x = _as_numeric(values, name, allow_complex=False)
    dtype = x.dtype
    x64 = x.astype(np.float64)
    if offsets is not None:
        if x.ndim != 1:
            raise ValueError(f"{name}: packed values (with offsets) must be 1-D, got shape {x.shape}")
        starts, lens = _check_offsets(offsets, x.shape[0])
        return [x64[s:s + n] for s, n in zip(starts.tolist(), lens.tolist())], dtype, None
    if x.ndim != 2:
        raise ValueError(f"{name}: expected 1-D values with offsets, or 2-D [B, T] values "
                         f"(with an optional mask), got shape {x.shape}")
    m = np.ones(x.shape, bool) if mask is None else _check_mask(mask, x.shape)
    return [row[keep] for row, keep in zip(x64, m)], dtype, x.shape[1]


def _fsum(s):
    if s.size == 0:
        return 0.0
    if not np.all(np.isfinite(s)):
        return float(np.sum(s))                 # inf / NaN rules of IEEE
    try:
        return math.fsum(s.tolist())
    except OverflowError:                       # the exact sum overflows
        return float(np.sum(s))


def _seg_result(vals, dtype):
    return np.asarray(vals, dtype=np.float64).astype(_result_dtype((None, np.empty(0, dtype))))


def _lse(s):
    m = np.max(s)
    if not np.isfinite(m):
        return float(m)                         # NaN, +inf, or all -inf
    is_max = s == m
    return float(m) + math.log1p(_fsum(np.exp(s[~is_max] - m)) + (np.count_nonzero(is_max) - 1))


def segment_sum(values, offsets=None, *, mask=None, empty=0.0):
    """Sum of each sequence (correctly rounded float64 sum, then the result dtype)."""
    empty = _check_empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask)
    return _seg_result([_fsum(s) if s.size else empty for s in seqs], dtype)


def segment_mean(values, offsets=None, *, mask=None, empty=math.nan):
    """Mean of each sequence: the fsum divided by the length."""
    empty = _check_empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask)
    return _seg_result([_fsum(s) / s.size if s.size else empty for s in seqs], dtype)


def _max_signed_zero(s):
    """np.max, with max(-0.0, +0.0) = +0.0 whatever the order (np.max's
    sign of a zero result follows the element order)."""
    m = float(np.max(s))
    if m == 0.0 and np.any((s == 0) & ~np.signbit(s)):
        return 0.0
    return m


def segment_max(values, offsets=None, *, mask=None, empty=-math.inf):
    """Maximum of each sequence; NaN if it holds a NaN; +0.0 over {-0.0, +0.0}."""
    empty = _check_empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask)
    return _seg_result([_max_signed_zero(s) if s.size else empty for s in seqs], dtype)


def segment_logsumexp(values, offsets=None, *, mask=None, empty=-math.inf):
    """log(sum(exp(x))) of each sequence: m + log1p(sum over the others of
    exp(x - m) + (occurrences of m) - 1), m the maximum."""
    empty = _check_empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        return _seg_result([_lse(s) if s.size else empty for s in seqs], dtype)


# 1/(k+2)! for k = 0..24: k3(r) = r^2 * sum_k c_k r^k for |r| <= 2
_K3_SERIES = [1.0 / math.factorial(k + 2) for k in range(25)]


def _k3(r):
    """exp(r) - 1 - r in float64 without cancellation (see the section top)."""
    r = np.asarray(r, dtype=np.float64)
    small = np.abs(r) <= 2
    rs = np.where(small, r, 0.0)
    p = np.zeros_like(rs)
    for c in reversed(_K3_SERIES):
        p = p * rs + c
    with np.errstate(over="ignore", invalid="ignore"):
        big = np.expm1(r) - r
    return np.where(small, rs * rs * p, np.where(r == np.inf, np.inf, big))


def _estimate(d, est, clamp):
    """Per-token estimator of float64 d = logp - ref_logp, clamped to [-c, c]."""
    with np.errstate(invalid="ignore"):
        d = np.where(d < -clamp, -clamp, np.where(d > clamp, clamp, d))
    if est == "k1":
        return d
    if est == "k2":
        return 0.5 * d * d
    if est == "abs":
        return np.abs(d)
    return _k3(-d)


def kl_estimate(logp, ref_logp, estimator="k1", *, clamp=None):
    """Per-token estimate of KL(pi || pi_ref) from sampled-token log-probs,
    d = logp - ref_logp, r = -d: k1 = d, k2 = d^2/2, k3 = exp(r) - 1 - r,
    abs = |d| (aliases kl, mse, low_var_kl); ``clamp`` limits d to
    [-clamp, clamp] first.  logp and ref_logp broadcast."""
    est = _check_estimator(estimator)
    c = _check_clamp(clamp)
    a = _as_numeric(logp, "logp", allow_complex=False)
    b = _as_numeric(ref_logp, "ref_logp", allow_complex=False)
    dtype = _result_dtype((logp, a), (ref_logp, b))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"ref_logp: shape {b.shape} does not broadcast with logp's {a.shape}") from None
    with np.errstate(invalid="ignore"):
        d = a.astype(np.float64) - b.astype(np.float64)
    return _finish(np.broadcast_to(_estimate(d, est, c), shape), dtype)


def _seq_pairs(logp, ref_logp, offsets, mask):
    sp, dtp, _ = _ref_sequences(logp, offsets, mask, "logp")
    sq, dtq, _ = _ref_sequences(ref_logp, offsets, mask, "ref_logp")
    if not (_is_arrow(logp) or _is_arrow(ref_logp)):
        if np.shape(logp) != np.shape(ref_logp):
            raise ValueError(f"ref_logp: shape {np.shape(ref_logp)} does not match logp's "
                             f"{np.shape(logp)}")
    if len(sp) != len(sq):
        raise ValueError(f"ref_logp: {len(sq)} sequences, logp has {len(sp)}")
    for i, (p, q) in enumerate(zip(sp, sq)):
        if p.size != q.size:
            raise ValueError(f"ref_logp: sequence {i} has {q.size} tokens, logp's has {p.size}")
    dtype = _result_dtype((None, np.empty(0, dtp)), (None, np.empty(0, dtq)))
    return sp, sq, dtype


def seq_kl(logp, ref_logp, offsets=None, *, mask=None, estimator="k1", reduce="sum",
           clamp=None, empty=0.0):
    """Per-sequence sum (or mean) of the per-token estimator (kl_estimate)."""
    est = _check_estimator(estimator)
    c = _check_clamp(clamp)
    reduce = _check_reduce(reduce)
    empty = _check_empty(empty)
    sp, sq, dtype = _seq_pairs(logp, ref_logp, offsets, mask)
    out = []
    with np.errstate(invalid="ignore"):
        for p, q in zip(sp, sq):
            if p.size == 0:
                out.append(empty)
                continue
            s = _fsum(_estimate(p - q, est, c))
            out.append(s / p.size if reduce == "mean" else s)
    return np.asarray(out, dtype=np.float64).astype(dtype)


def agg_loss(values, offsets=None, *, mask=None, mode="token-mean", num_tokens=None,
             num_seqs=None, norm_length=None):
    """verl's agg_loss: per-token values to one scalar.

    token-mean               sum of all tokens / num_tokens (default: the token count)
    seq-mean-token-sum       sum over non-empty sequences of their sums / num_seqs
    seq-mean-token-mean      sum over non-empty sequences of their means / num_seqs
    seq-mean-token-sum-norm  sum of all tokens / norm_length (default: T when
                             padded, else the longest sequence)
    num_seqs defaults to the number of non-empty sequences.  A zero divisor
    (all tokens masked) gives 0.0, as verl returns.
    """
    mode = _check_mode(mode)
    num_tokens = _check_count(num_tokens, "num_tokens")
    num_seqs = _check_count(num_seqs, "num_seqs")
    norm_length = _check_count(norm_length, "norm_length")
    seqs, dtype, T = _ref_sequences(values, offsets, mask)
    dtype = _result_dtype((None, np.empty(0, dtype)))
    sums = np.array([_fsum(s) for s in seqs], dtype=np.float64)
    counts = np.array([s.size for s in seqs], dtype=np.float64)
    nonempty = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        if mode == "token-mean":
            num, den = _fsum(sums), (counts.sum() if num_tokens is None else num_tokens)
        elif mode == "seq-mean-token-sum":
            num = _fsum(sums[nonempty])
            den = np.count_nonzero(nonempty) if num_seqs is None else num_seqs
        elif mode == "seq-mean-token-mean":
            num = _fsum(sums[nonempty] / counts[nonempty])
            den = np.count_nonzero(nonempty) if num_seqs is None else num_seqs
        else:
            num = _fsum(sums)
            if norm_length is None:
                norm_length = T if T is not None else (counts.max() if counts.size else 0.0)
            den = norm_length
        res = 0.0 if den == 0 else num / den
    return dtype.type(res)
