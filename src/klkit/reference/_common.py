"""What the NumPy twins share: the dtype rules, axes, and the argument
checks.  The checks are the twins' own (written for them, not shared with
klkit's compiled path): they raise ValueError / TypeError naming the
argument, without promising the compiled path's exact wording."""
import math

import numpy as np

try:  # NumPy >= 2
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.numeric import normalize_axis_tuple

_PY_SCALARS = (bool, int, float, complex)


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------

def _number(value, name, valid, expected, not_a_number=ValueError):
    """float(value) if ``valid`` accepts it; otherwise an error naming
    ``name`` and what is ``expected`` (``not_a_number`` for a value that is
    not a number at all, ValueError for a number out of range)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise not_a_number(f"{name}: expected {expected}, got {value!r}") from None
    if not valid(v):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return v


def _choice(value, name, options):
    """value if it is one of the strings ``options``, else a ValueError."""
    if not (isinstance(value, str) and value in options):
        raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}")
    return value


def _temperature(temperature, kind="logits"):
    t = _number(temperature, "temperature", lambda t: math.isfinite(t) and t > 0,
                "a finite number > 0")
    if t != 1.0 and kind != "logits":
        raise ValueError(f"temperature: only kind='logits' takes one, got {temperature!r} "
                         f"with kind={kind!r}")
    return t


# --------------------------------------------------------------------------
# dtypes, axes, rows
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


def _fsum(s):
    """The correctly rounded sum of a float64 array (math.fsum), with IEEE's
    rules where a term is infinite or NaN or the exact sum overflows."""
    if s.size == 0:
        return 0.0
    if not np.all(np.isfinite(s)):
        return float(np.sum(s))
    try:
        return math.fsum(s.tolist())
    except OverflowError:
        # fsum's partial sums left float64's range (in the input's order):
        # the sum of the terms times 2^-64 (exact but for the bits of terms
        # below 2^-1010, far below the sum's rounding unless it cancels to
        # that size), scaled back: +-inf where the sum itself is beyond
        # the range
        return math.fsum((s * 2.0 ** -64).tolist()) * 2.0 ** 64
