"""SciPy-compatible entropy functions: ``entropy``, ``rel_entr``, ``kl_div``, ``entr``.

``klkit.scipy.entropy`` is a drop-in for ``scipy.stats.entropy``, and
``rel_entr``, ``kl_div`` and ``entr`` for the ``scipy.special`` functions of
the same names: same arguments, broadcasting, result dtypes, shapes and
types, the same handling of zeros, negative values, NaN and infinity, and
the same exception types.  The results are SciPy's bit for bit wherever
SciPy's result is correctly rounded, and never less accurate.  They differ
where SciPy's formula breaks down:

* ``kl_div`` is computed in double-double arithmetic and rounded once, so
  it is correctly rounded.  SciPy evaluates ``x*log(x/y) - x + y`` as
  written: when ``x`` is close to ``y`` it cancels (``kl_div(1, 1 + 1e-8)``
  is 0.0 in SciPy, 5.0e-17 here; within a factor 2 of ``y`` SciPy is
  typically thousands of ulps off), and when ``x/y`` overflows or
  underflows it returns ``inf`` or ``-inf`` for finite results
  (``kl_div(1e300, 1e-300)`` is 1.38e303).
* ``entropy`` scales a slice whose sum overflows by a power of two before
  normalising it; SciPy divides by ``inf`` (``entropy([1e308, 1e308])`` is
  0.0 in SciPy, ``log(2)`` here).
* ``entr`` and ``rel_entr`` use SciPy's own formulas, which are accurate to
  about an ulp (``rel_entr`` already takes ``log1p`` near ``x == y`` and
  separate logarithms when ``x/y`` over- or underflows), so they, and
  ``entropy``, return SciPy's bits.

klkit's main API is a different interface: ``klkit.entropy`` and
``klkit.kl_div`` take logits by default (``kind="logits"``), reduce the last
axis, and are the fast compiled path for rows of distributions; pass
``kind="probs"`` for probabilities.  So ``klkit.entropy(p)`` is not
``scipy.stats.entropy(p)``, and ``klkit.kl_div(p, q)`` is the divergence of
distributions, not SciPy's element-wise ``kl_div``.  This module reproduces
SciPy's semantics exactly, in plain NumPy; SciPy itself is not needed.

Examples
--------
>>> import numpy as np
>>> import klkit.scipy as ks
>>> ks.entropy([1/2, 1/2], base=2)
np.float64(1.0)
>>> ks.entropy([9, 1], [1, 1])                  # pk and qk are normalised
np.float64(0.3680642071684971)
>>> ks.entropy(np.eye(3) + 1, axis=1)           # one entropy per row
array([1.03972077, 1.03972077, 1.03972077])
>>> ks.kl_div(1.0, 1.0 + 1e-8)                  # SciPy: 0.0
np.float64(4.999999905891958e-17)
"""
import decimal
import math
import operator
from functools import cache

import numpy as np

__all__ = ["entr", "entropy", "kl_div", "rel_entr"]

_TINY = np.finfo(np.float64).tiny  # smallest normal double (C's DBL_MIN)
_AxisError = np.exceptions.AxisError if hasattr(np, "exceptions") else np.AxisError


# --------------------------------------------------------------------------
# element-wise functions
# --------------------------------------------------------------------------

def _ufunc_args(name, args):
    """Inputs as float64 arrays, plus the dtype SciPy's ufunc would return.

    scipy.special's ufuncs have a float32 and a float64 loop and take the
    first one that every input casts to safely (NumPy's rules: Python scalars
    are weak, so ``float32 array + 0.5`` stays float32); both loops compute
    in double and the float32 loop rounds the result to float32.
    """
    arrs = [a if isinstance(a, (int, float, complex, np.generic, np.ndarray))
            else np.asarray(a) for a in args]
    try:
        natural = np.result_type(*arrs)
    except TypeError:                 # no common dtype (a string and a number)
        natural = np.dtype(object)
    for loop in (np.float32, np.float64):
        if np.can_cast(natural, loop):
            break
    else:
        raise TypeError(f"{name}: unsupported input dtype {natural}; it needs real "
                        f"numbers that cast safely to float64 (as scipy.special.{name})")
    with np.errstate(all="ignore"):
        # cast to the loop's dtype first: a Python float next to a float32
        # array is rounded to float32 before the computation, as in SciPy
        arrs = [np.asarray(np.asarray(a, dtype=loop), dtype=np.float64) for a in arrs]
    return arrs, np.dtype(loop)


def _ufunc_result(out, dtype):
    out = out.astype(dtype, copy=False)
    return out[()] if out.ndim == 0 else out


def entr(x):
    """Element-wise entropy ``-x*log(x)``, exactly like ``scipy.special.entr``.

    ``-x*log(x)`` for ``x > 0``, ``0`` at ``x == 0``, ``-inf`` for ``x < 0``,
    NaN for NaN.  Broadcasting and dtypes as a NumPy ufunc: float32 (and
    smaller integer and float) input gives float32, anything else float64.
    This is SciPy's formula, accurate to about an ulp, and the results agree
    with SciPy's bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit.scipy as ks
    >>> ks.entr(np.array([0.0, 0.5, 1.0, -1.0, np.nan]))
    array([ 0.        ,  0.34657359, -0.        ,        -inf,         nan])
    >>> ks.entr(np.float32(0.25)).dtype
    dtype('float32')
    """
    (x,), dtype = _ufunc_args("entr", (x,))
    with np.errstate(all="ignore"):
        out = np.asarray(-x * np.log(x))   # also right for NaN and +inf
        out[x == 0] = 0.0             # +0.0, also for x == -0.0
        out[x < 0] = -np.inf
    return _ufunc_result(out, dtype)


def rel_entr(x, y):
    """Element-wise relative entropy ``x*log(x/y)``, exactly like
    ``scipy.special.rel_entr``.

    ``x*log(x/y)`` for ``x > 0, y > 0``; ``0`` for ``x == 0, y >= 0``;
    ``inf`` otherwise; NaN if either argument is NaN.  Broadcasting and
    dtypes as a NumPy ufunc (float32 in, float32 out).  Like SciPy it uses
    ``x*log1p((x-y)/y)`` when ``x/y`` is between 1/2 and 2, and
    ``x*(log(x) - log(y))`` when ``x/y`` overflows or underflows, so it is
    accurate to an ulp or two everywhere, and the results agree with SciPy's
    bit for bit.

    Examples
    --------
    >>> import klkit.scipy as ks
    >>> ks.rel_entr([1.0, 0.0, 1.0], [0.5, 1.0, 0.0])
    array([0.69314718, 0.        ,        inf])
    >>> ks.rel_entr(1e-300, 1e300)
    np.float64(-1.3815510557964273e-297)
    """
    (x, y), dtype = _ufunc_args("rel_entr", (x, y))
    xb, yb = np.broadcast_arrays(x, y)
    with np.errstate(all="ignore"):
        ratio = x / y                 # shape and memory order of a ufunc's output
        out = np.asarray(x * np.log(ratio))
        near = (ratio > 0.5) & (ratio < 2)
        xn, yn = xb[near], yb[near]
        out[near] = xn * np.log1p((xn - yn) / yn)   # x - y is exact here
        # x/y overflowed, underflowed or is subnormal: take the logs apart
        far = ~((ratio > _TINY) & (ratio < np.inf))
        xf, yf = xb[far], yb[far]
        out[far] = xf * (np.log(xf) - np.log(yf))
        out[(xb == 0) & (yb >= 0)] = 0.0
        out[(xb < 0) | (yb < 0) | ((xb > 0) & (yb == 0))] = np.inf
        out[np.isnan(xb) | np.isnan(yb)] = np.nan
    return _ufunc_result(out, dtype)


def kl_div(x, y):
    """Element-wise Kullback-Leibler divergence ``x*log(x/y) - x + y``, like
    ``scipy.special.kl_div`` but correctly rounded.

    ``x*log(x/y) - x + y`` for ``x > 0, y > 0``; ``y`` for ``x == 0,
    y >= 0``; ``inf`` otherwise; NaN if either argument is NaN, and (as in
    SciPy) NaN when a positive argument is infinite.  Broadcasting and dtypes
    as a NumPy ufunc (float32 in, float32 out).

    SciPy evaluates the formula as written, which cancels when ``x`` is
    close to ``y`` (the result is about ``(x-y)**2/(2y)`` while the terms are
    about ``x``) and overflows or underflows with ``x/y``.  Here the value is
    computed in double-double arithmetic, about 70 correct bits, and rounded
    once, so it is the correctly rounded result (bar near-ties too rare to
    meet) and equals SciPy's wherever SciPy's is correctly rounded.

    Examples
    --------
    >>> import klkit.scipy as ks
    >>> ks.kl_div([1.0, 0.0, 1.0], [0.5, 2.0, 0.0])
    array([0.19314718, 2.        ,        inf])
    >>> ks.kl_div(1.0, 1.001)               # SciPy: 4.996669165091561e-07
    np.float64(4.996669164667232e-07)
    >>> ks.kl_div(1e300, 1e-300)            # SciPy: inf
    np.float64(1.3805510557964276e+303)
    """
    (x, y), dtype = _ufunc_args("kl_div", (x, y))
    xb, yb = np.broadcast_arrays(x, y)
    with np.errstate(all="ignore"):
        out = np.asarray(x + y)       # shape and memory order of a ufunc's output
        out[...] = np.inf
        zero = (xb == 0) & (yb >= 0)
        out[zero] = yb[zero]          # y itself, even -0.0
        pos = (xb > 0) & (yb > 0)
        out[pos & (np.isinf(xb) | np.isinf(yb))] = np.nan        # inf - inf in SciPy
        ok = pos & (xb < np.inf) & (yb < np.inf)
        out[ok] = _kl_div_pos(xb[ok], yb[ok])
        out[np.isnan(xb) | np.isnan(yb)] = np.nan
    return _ufunc_result(out, dtype)


# --------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------

def entropy(pk, qk=None, base=None, axis=0, *, keepdims=False):
    """Shannon entropy or relative entropy of distributions, exactly like
    ``scipy.stats.entropy``.

    ``pk`` (and ``qk``) are normalised to sum to 1 along ``axis``; the result
    is ``H = sum(entr(pk))`` or, with ``qk``, the Kullback-Leibler divergence
    ``D = sum(rel_entr(pk, qk))``, divided by ``log(base)`` if ``base`` is
    given.  As in SciPy: ``pk`` and ``qk`` broadcast against each other;
    ``axis`` may be an int, a tuple of ints or None (all axes); ``keepdims``
    keeps the reduced axes with length 1; integer and boolean input gives
    float64, float32 input float32; a slice with a NaN gives NaN; a slice
    with a negative value gives ``-inf`` (entropy) or ``inf`` (divergence);
    ``qk == 0`` where ``pk > 0`` gives ``inf``; a 0-d input counts as a
    length-1 distribution; an empty slice gives 0.  For 1-d input (or
    ``axis=None``) the result is a NumPy scalar.  Errors: ``ValueError`` for
    ``base <= 0`` and for shapes that do not broadcast,
    ``numpy.exceptions.AxisError`` for an axis out of range, ``TypeError``
    for non-numeric input.  SciPy's ``nan_policy`` argument is not offered
    (NaN propagates, SciPy's default), nor are masked arrays.

    The results are SciPy's bit for bit, with one exception where SciPy's
    are wrong: when the sum of a slice overflows (``[1e308, 1e308]``) SciPy
    divides by ``inf`` and returns ``0``; here the slice is first scaled by
    a power of two, giving the true entropy (``log(2)``).

    Examples
    --------
    >>> import numpy as np
    >>> import klkit.scipy as ks
    >>> ks.entropy([1/2, 1/2], base=2)
    np.float64(1.0)
    >>> ks.entropy([9/10, 1/10], base=2)
    np.float64(0.46899559358928117)
    >>> ks.entropy([1/2, 1/2], [9/10, 1/10], base=2)
    np.float64(0.7369655941662061)
    >>> ks.entropy(np.array([[1, 1], [1, 3]]), axis=1, keepdims=True)
    array([[0.69314718],
           [0.56233514]])
    >>> ks.entropy([1e308, 1e308])          # SciPy: 0.0
    np.float64(0.6931471805599453)
    """
    if isinstance(pk, np.ma.MaskedArray) or isinstance(qk, np.ma.MaskedArray):
        raise TypeError("entropy: masked arrays are not supported; pass "
                        "arr.compressed() or arr.filled(0) for pk and qk")
    samples = _promote(pk, qk)
    names = "pk" if qk is None else "pk and qk"
    if axis is None:
        # each input is flattened on its own (so they need the same size)
        reduced = tuple(range(max(a.ndim for a in samples)))
        samples = [a.reshape(-1) for a in samples]
    else:
        shape = _broadcast_shape(samples)
        axes = (axis,) if np.isscalar(axis) else tuple(axis)
        axes = _check_axes(axes, len(shape), names)
        n = len(axes)
        # move the axes to reduce to the end and merge them into one
        samples = [np.moveaxis(np.broadcast_to(a, shape), axes, tuple(range(-n, 0)))
                   for a in samples]
        samples = [a.reshape(a.shape[:len(a.shape) - n] + (math.prod(a.shape[-n:]),))
                   for a in samples]
        reduced = axis
    nan_dtype = np.result_type(*samples, 1.0)

    if all(a.ndim == 1 for a in samples):
        if any(_has_nan(a) for a in samples):
            res = np.full((), np.nan, nan_dtype)[()]
        else:
            res = _entropy_1(*samples, base=base, axis=0)
    else:
        res = _entropy_nd(samples, base, nan_dtype)
    return np.expand_dims(res, reduced) if keepdims else res


def _entropy_nd(samples, base, nan_dtype):
    """entropy along the last axis of arrays of equal shape, ndim >= 2."""
    out_shape = samples[0].shape[:-1]
    if math.prod(out_shape) == 0:
        return np.full(out_shape, np.nan, nan_dtype)
    if not any(_has_nan(a) for a in samples):
        return _entropy_1(*samples, base=base, axis=-1)
    # Slices with a NaN give NaN; SciPy computes the others one slice at a
    # time, so its sums run along contiguous rows: a contiguous copy of the
    # NaN-free rows gives the same bits.
    nan_rows = np.zeros(out_shape, bool)
    for a in samples:
        nan_rows |= np.isnan(a).any(axis=-1)
    if nan_rows.all():
        return np.full(out_shape, np.nan, nan_dtype)
    rows = _entropy_1(*(a[~nan_rows] for a in samples), base=base, axis=-1)
    # the result takes the dtype of SciPy's first slice: NaN's or a computed one
    dtype = nan_dtype if nan_rows.flat[0] else rows.dtype
    res = np.full(out_shape, np.nan, dtype)
    res[~nan_rows] = rows
    return res


def _entropy_1(pk, qk=None, *, base, axis):
    """SciPy's formula along one axis of arrays of equal dtype."""
    if base is not None and base <= 0:
        raise ValueError(f"entropy: `base` must be a positive number or None, got {base!r}")
    if qk is not None and pk.shape != qk.shape:
        shape = _broadcast_shape([pk, qk])
        pk, qk = np.broadcast_to(pk, shape), np.broadcast_to(qk, shape)
    with np.errstate(invalid="ignore"):
        if qk is not None:
            qk = _normalize(qk, axis)
        pk = _normalize(pk, axis)
    vec = entr(pk) if qk is None else rel_entr(pk, qk)
    s = np.sum(vec, axis=axis)
    if base is not None:
        s /= math.log(base)
    return s


def _normalize(p, axis):
    """p / sum(p) along axis, the same operations as SciPy, except that a
    slice whose sum overflows although its entries are finite is first
    scaled by a power of two (exact), instead of being divided by inf."""
    with np.errstate(over="ignore"):  # an overflowing sum is handled below
        s = np.sum(p, axis=axis, keepdims=True)
    out = p / s
    if p.dtype.kind == "f" and p.size and np.isinf(s).any():
        with np.errstate(all="ignore"):
            bad = np.isinf(s) & np.isfinite(p).all(axis=axis, keepdims=True)
            big = np.max(np.abs(p), axis=axis, keepdims=True)
            scaled = np.ldexp(p, -np.frexp(np.where(bad, big, 1))[1])
            np.copyto(out, scaled / np.sum(scaled, axis=axis, keepdims=True),
                      where=bad)
    return out


def _promote(pk, qk):
    """pk (and qk) as arrays of one dtype, at least 1-d (NumPy's promotion,
    with Python scalars weak, as SciPy does)."""
    args = [a if a is None or isinstance(a, (int, float, complex, np.generic, np.ndarray))
            else np.asarray(a) for a in (pk, qk)]
    names = "pk" if qk is None else "pk and qk"
    try:
        dtype = np.result_type(*(a for a in args if a is not None))
    except TypeError:                 # no common dtype (a string and a number)
        dtype = np.dtype(object)
    if dtype.kind not in "biuf":
        raise TypeError(f"entropy: {names} must hold real numbers, got dtype {dtype}")
    return [np.atleast_1d(np.asarray(a, dtype=dtype)) for a in args if a is not None]


def _broadcast_shape(arrays):
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = " and ".join(str(a.shape) for a in arrays)
        raise ValueError(f"entropy: pk and qk have shapes {shapes}, which do not "
                         "broadcast together") from None


def _check_axes(axes, ndim, names):
    out = []
    for a in axes:
        a = operator.index(a)         # TypeError for a non-integer axis, as SciPy
        if not -ndim <= a < ndim:
            raise _AxisError(
                f"entropy: axis {a} is out of bounds for {names} of dimension {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"entropy: repeated axis in axis={axes}")
    return tuple(out)


def _has_nan(a):
    return a.size > 0 and a.dtype.kind in "fc" and bool(np.isnan(np.max(a)))


# --------------------------------------------------------------------------
# double-double arithmetic: a value is an unevaluated sum hi + lo of doubles
# --------------------------------------------------------------------------

def _two_sum(a, b):
    """s + e == a + b exactly, s = fl(a + b)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _fast_two_sum(a, b):
    """Like _two_sum, for |a| >= |b|."""
    s = a + b
    return s, b - (s - a)


def _split(a):
    """a == hi + lo with hi and lo of 26 bits (Veltkamp); |a| < 2**995."""
    t = 134217729.0 * a           # 2**27 + 1
    hi = t - (t - a)
    return hi, a - hi


def _two_prod(a, b):
    """p + e == a * b exactly (barring underflow), p = fl(a * b)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_add(a, b):
    s, e = _two_sum(a[0], b[0])
    t, f = _two_sum(a[1], b[1])
    s, e = _fast_two_sum(s, e + t)
    return _fast_two_sum(s, e + f)


def _dd_mul(a, b):
    p, e = _two_prod(a[0], b[0])
    return _fast_two_sum(p, e + (a[0] * b[1] + a[1] * b[0]))


def _dd_div(a, b):
    q = a[0] / b[0]
    p, e = _two_prod(q, b[0])
    # remainder a - q*b, formed exactly up to terms far below the last bit
    r = (((a[0] - p) - e) + a[1] - q * b[1]) / b[0]
    return _fast_two_sum(q, r)


# log(j/512) for the table points j/512 in [sqrt(1/2), sqrt(2)], and log(2),
# as double-doubles (decimal's logarithm is correctly rounded to 40 digits)
_J0, _J1 = 362, 724


@cache
def _log_table():
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        logs = [(decimal.Decimal(j) / 512).ln() for j in range(_J0, _J1 + 1)]
        logs.append(decimal.Decimal(2).ln())
        hi = [float(v) for v in logs]
        lo = [float(v - decimal.Decimal(h)) for v, h in zip(logs, hi)]
    return np.array(hi), np.array(lo)


def _log_parts(v):
    """v = 2**k * m with m in [sqrt(1/2), sqrt(2)), and log(m) as a
    double-double, absolute error below 2**-80 (v > 0 finite, subnormal ok)."""
    tab_hi, tab_lo = _log_table()
    m, k = np.frexp(v)
    low = m < math.sqrt(0.5)
    m = np.where(low, 2 * m, m)
    k = (k - low).astype(np.float64)
    # log(m) = log(c) + log1p(u), c = j/512 the nearest table point, u = m/c - 1
    j = np.rint(m * 512)
    c = j / 512
    f = m - c                                   # exact: m and c are close
    u = f / c
    p, pe = _two_prod(u, c)
    u_lo = ((f - p) - pe) / c                   # u + u_lo == f/c to ~2**-106
    # log1p(u) = u - u**2/2 + u**3 (1/3 - u/4 + ...), |u| < 2**-9.5: the
    # cubic tail only needs double precision
    q, q_lo = _two_prod(u, u)
    tail = u ** 3 * (1 / 3 - u * (1 / 4 - u * (1 / 5 - u * (1 / 6 - u * (
        1 / 7 - u * (1 / 8 - u * (1 / 9 - u / 10)))))))
    i = (j - _J0).astype(np.intp)
    s, e1 = _two_sum(tab_hi[i], u)
    s, e2 = _two_sum(s, -0.5 * q)
    lo = e1 + e2 + tab_lo[i] + u_lo - 0.5 * q_lo - u * u_lo + tail
    return k, _fast_two_sum(s, lo)


def _kl_div_pos(x, y):
    """kl_div(x, y) for finite x > 0, y > 0 (1-d float64), correctly rounded."""
    # kl_div(x, y) scales with (x, y): bring the larger into [1/2, 1) exactly
    e = np.frexp(np.maximum(x, y))[1]
    xs, ys = np.ldexp(x, -e), np.ldexp(y, -e)
    hi, lo = np.empty_like(xs), np.empty_like(xs)
    near = np.abs(xs - ys) < ys / 32
    hi[near], lo[near] = _kl_near(xs[near], ys[near])
    far = ~near
    hi[far], lo[far] = _kl_far(x[far], y[far], xs[far], ys[far])
    return _ldexp_dd(hi, lo, e)


def _ldexp_dd(hi, lo, e):
    """(hi + lo) * 2**e rounded once, also when the result is subnormal."""
    out = np.ldexp(hi, e)             # hi is hi + lo rounded: fine unless subnormal
    sub = out < _TINY
    if sub.any():
        # round to the subnormal grid, multiples of 2**-1074, in one step:
        # a + b is the value in units of 2**-1074 (exact scalings, |a| < 2**53)
        a = np.ldexp(hi[sub], e[sub] + 1074)
        b = np.ldexp(lo[sub], e[sub] + 1074)
        n = np.rint(a)
        rem = (a - n) + b                     # a - n is exact
        n += np.where(rem > 0.5, 1.0, np.where(rem < -0.5, -1.0, 0.0))
        out[sub] = np.ldexp(n, -1074)
    return out


def _kl_near(x, y):
    """kl_div for |x/y - 1| < 1/32, x and y in [0.48, 1).

    With s = (x-y)/(x+y): log(x/y) = 2 atanh(s), and the divergence becomes
    (x+y) s**2 G(s) with G(s) = 1 + s/3 + s**2/3 + s**3/5 + s**4/5 + ...:
    a product of factors, each free of cancellation (G is close to 1).
    """
    den = _two_sum(x, y)
    s = _dd_div((x - y, np.zeros_like(x)), den)   # x - y is exact
    s2 = _dd_mul(s, s)
    # G - 1 = (s + s**2)/3 + s**3 (1/5 + s/5 + s**2/7 + ...); |s| < 2**-6
    t = _dd_add(s, s2)
    t = _dd_div(t, (np.full_like(x, 3.0), np.zeros_like(x)))
    z = s[0]
    coef = [1 / (2 * (n // 2) + 5) for n in range(11)]   # 1/5, 1/5, 1/7, 1/7, ...
    r = coef[-1]
    for a in coef[-2::-1]:
        r = a + z * r
    g = _dd_add((np.ones_like(x), np.zeros_like(x)), (t[0], t[1] + z ** 3 * r))
    return _dd_mul(_dd_mul(den, s2), g)


def _kl_far(x, y, xs, ys):
    """kl_div for |x/y - 1| >= 1/32: xs*L - xs + ys with L = log(x/y) as a
    double-double; (xs, ys) is (x, y) scaled by a power of two."""
    ln2_hi, ln2_lo = (t[-1] for t in _log_table())
    kx, lx = _log_parts(x)
    ky, ly = _log_parts(y)
    # L = (kx - ky) log 2 + log(mx) - log(my): the exponents cancel exactly
    n = kx - ky
    a_hi, a_lo = _two_prod(n, ln2_hi)
    L = _dd_add((a_hi, a_lo + n * ln2_lo), _dd_add(lx, (-ly[0], -ly[1])))
    p_hi, p_lo = _two_prod(L[0], xs)
    return _dd_add((p_hi, p_lo + L[1] * xs), _two_sum(ys, -xs))
