"""Every argument check of the public API and its error message.

Each check takes the user's value, raises ValueError / TypeError naming
the argument and saying what to pass instead, and returns the value in the
form the kernels take.  Checks of arrays' contents that need a scan
(targets in range, offsets non-decreasing, 0/1 masks) are here too; the
array conversions themselves are in _arrays.py.
"""
import math
import operator

import numpy as np

try:  # numpy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = np.AxisError

KINDS = ("logits", "logprobs", "probs")
REDUCTIONS = ("mean", "sum", "none")
#: estimator names and verl's aliases -> the kernel's estimator
ESTIMATORS = {"k1": "k1", "kl": "k1", "k2": "k2", "mse": "k2", "k3": "k3",
              "low_var_kl": "k3", "abs": "abs"}
AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
             "seq-mean-token-sum-norm")


# --------------------------------------------------------------------------
# axes and option values
# --------------------------------------------------------------------------

def axes(axis, ndim, name="axis"):
    """Sorted tuple of non-negative axes; None means all."""
    if axis is None:
        return tuple(range(ndim))
    given = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for ax in given:
        try:
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(f"{name}: expected an int or a tuple of ints, got {axis!r}") from None
        # a 0-d array counts as one element of one axis (0 or -1), as
        # scipy.special.logsumexp / softmax / log_softmax take it
        if not -max(ndim, 1) <= ax < max(ndim, 1):
            raise AxisError(f"{name}: axis {ax} is out of bounds for array of dimension {ndim}")
        out.append(ax % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def distribution_axis(axis, ndim):
    """The one axis holding the distributions of a divergence."""
    if ndim == 0:
        raise ValueError("p: expected at least one dimension (the distribution axis)")
    ints = isinstance(axis, (tuple, list)) and all(isinstance(a, int) for a in axis)
    if getattr(axis, "ndim", 0) >= 1 or isinstance(axis, (tuple, list)) and not ints:
        # entropy(p, q) in scipy.stats.entropy's order: q arrives as the axis
        raise TypeError("axis: expected an int (the distribution axis), got an array of shape "
                        f"{tuple(getattr(axis, 'shape', (len(axis),)))}: a second distribution "
                        "goes to kl_div(p, q) or cross_entropy(p, q) (scipy.stats.entropy(pk, "
                        "qk) is kl_div(pk, qk, kind='probs'))")
    if axis is None or ints:
        raise TypeError(f"axis: expected an int (the distribution axis), got {axis!r}")
    return axes(axis, ndim)[0]


def kind(kind):
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def _constant(value, name):
    """A scalar option is a constant: a torch tensor that requires grad
    would silently get no gradient, so it is refused."""
    if getattr(value, "requires_grad", False):
        raise TypeError(f"{name}: klkit does not differentiate with respect to {name}; pass a "
                        f"number or a tensor that does not require grad ({name}.item())")


def temperature(temperature, kind="logits"):
    """A finite number > 0; other than 1 only for kind="logits"."""
    _constant(temperature, "temperature")
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}") from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if t != 1.0 and kind != "logits":
        raise ValueError(f"temperature={temperature!r} is only allowed with kind='logits' "
                         f"(got kind={kind!r})")
    return t


def log_base(base):
    """log(base) for a finite positive base other than 1; None for None (nats)."""
    _constant(base, "base")
    if base is None:
        return None
    try:
        b = float(base)
    except (TypeError, ValueError):
        raise ValueError(f"base must be None or a positive number != 1, got {base!r}") from None
    if not (math.isfinite(b) and b > 0 and b != 1):
        raise ValueError(f"base must be None or a finite positive number != 1, got {base!r}")
    return math.log(b)


def beta(beta):
    _constant(beta, "beta")
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"beta must be a number in [0, 1], got {beta!r}") from None
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return b


def out(out, x, dtype):
    """An ``out=`` array for an elementwise result of x: a writeable NumPy
    array of x's shape and the result dtype, not overlapping x."""
    if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != dtype:
        raise ValueError(f"out: expected a numpy array of shape {x.shape} and dtype "
                         f"{dtype}, got {getattr(out, 'shape', type(out))} "
                         f"{getattr(out, 'dtype', '')}".rstrip())
    if not out.flags.writeable:
        raise ValueError("out: array is read-only")
    if np.may_share_memory(out, x):
        raise ValueError("out: must not overlap the input")


def threads(n):
    n = int(n)
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    return n


# --------------------------------------------------------------------------
# token log-probs and cross-entropy
# --------------------------------------------------------------------------

def ignore_index(value):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"ignore_index: expected an int, got {value!r}") from None
    if not -2**63 <= value < 2**63:
        raise ValueError(f"ignore_index: {value} is outside the int64 range")
    return value


def targets(targets, lead_shape, n_classes, ignore):
    """Flat int64 class indices: an integer array of the logits' leading
    shape whose entries are ``ignore`` or in [0, n_classes)."""
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets: expected an integer array of class indices, got dtype {t.dtype}")
    if t.shape != tuple(lead_shape):
        raise ValueError(f"targets: shape {t.shape} does not match the logits' leading "
                         f"shape {tuple(lead_shape)}")
    bad = (t != ignore) & ((t < 0) | (t >= n_classes))
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad)[0]), t.shape) if t.ndim else ()
        raise ValueError(f"targets: class index {t[pos]} at position {tuple(int(i) for i in pos)} "
                         f"is outside [0, {n_classes}) and is not ignore_index ({ignore})")
    return np.array(t, dtype=np.int64, order="C").reshape(-1)   # a copy, aligned


def reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def label_smoothing(eps):
    _constant(eps, "label_smoothing")
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {eps!r}") from None
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {eps!r}")
    return e


def class_weights(weight, n_classes):
    """None, or the V class weights as float64 (``weight`` already an array)."""
    if weight is None:
        return None
    if weight.dtype.kind == "c":
        raise TypeError(f"weight must be real, got complex dtype {weight.dtype}")
    if not (weight.dtype.kind in "biuf" or weight.dtype.name == "bfloat16"):
        raise TypeError(f"weight must be a numeric array, got dtype {weight.dtype}")
    if weight.shape != (n_classes,):
        raise ValueError(f"weight: expected one value per class, shape ({n_classes},), "
                         f"got {weight.shape}")
    return weight.astype(np.float64)


# --------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------

def estimator(estimator):
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"estimator: expected one of {tuple(ESTIMATORS)}, got {estimator!r}")
    return ESTIMATORS[estimator]


def clamp(clamp):
    """inf for None, else a number >= 0."""
    _constant(clamp, "clamp")
    if clamp is None:
        return math.inf
    try:
        c = float(clamp)
    except (TypeError, ValueError):
        raise TypeError(f"clamp: expected a number >= 0 or None, got {clamp!r}") from None
    if not c >= 0:
        raise ValueError(f"clamp: expected a number >= 0 or None, got {clamp!r}")
    return c


def reduce(reduce):
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce: expected 'sum' or 'mean', got {reduce!r}")
    return reduce


def mode(mode):
    if not isinstance(mode, str) or mode not in AGG_MODES:
        raise ValueError(f"mode: expected one of {AGG_MODES}, got {mode!r}")
    return mode


def empty(empty):
    _constant(empty, "empty")
    try:
        return float(empty)
    except (TypeError, ValueError):
        raise TypeError(f"empty: expected a real number, got {empty!r}") from None


def count(value, name):
    """None, or a finite number >= 0 (global token / sequence counts, lengths)."""
    _constant(value, name)
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number >= 0 or None, got {value!r}") from None
    if not v >= 0 or v == math.inf:
        raise ValueError(f"{name}: expected a finite number >= 0 or None, got {value!r}")
    return v


def offsets(offsets, n_values):
    """(starts, lengths) as int64 from n+1 offsets: integer, 1-D,
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
    if off[-1] < n_values:
        raise ValueError(short_offsets(int(off[-1]), n_values))
    return np.array(off[:-1]), lens                             # a copy, aligned


def short_offsets(last, n_values):
    """The message for offsets that end before the values do: a tail that
    no sequence covers is taken for a mistake (lengths passed as offsets,
    a stale offsets array), not silently dropped."""
    return (f"offsets: offsets[-1] = {last} leaves the last {n_values - last} of the "
            f"{n_values} values outside every sequence; offsets must end at the number of "
            f"values (to reduce only the first {last}, pass values[:{last}]; per-sequence "
            "token counts go in lengths=)")


def lengths(lengths, n_values):
    """lengths= as int64: 1-D non-negative integers that sum to n_values
    (the sequences are back to back from the first value)."""
    ln = np.asarray(lengths)
    if ln.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array of per-sequence token counts, "
                        f"got dtype {ln.dtype}")
    if ln.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D array of per-sequence token counts, got "
                         f"shape {ln.shape}")
    if ln.dtype.kind == "u" and ln.dtype.itemsize == 8 and ln.size and \
            ln.max() > np.iinfo(np.int64).max:
        raise ValueError("lengths: values beyond the int64 range")
    ln = ln.astype(np.int64, copy=False)
    neg = np.flatnonzero(ln < 0)
    if neg.size:
        raise ValueError(f"lengths: lengths[{int(neg[0])}] = {ln[neg[0]]} is negative")
    total = int(np.sum(ln, dtype=np.int64))
    if total != n_values:
        raise ValueError(f"lengths: the lengths sum to {total} but there are {n_values} values; "
                         "they must cover the values exactly")
    return ln


def mask(mask, shape):
    """The mask as a bool array of ``shape``: bool as is, integers / floats
    must be all 0 or 1 (a weight is not a mask)."""
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


def layout(arrow, offsets, mask, lengths=None):
    """offsets or lengths (packed) and mask (padded) exclude each other;
    Arrow takes none of them."""
    if lengths is not None and (offsets is not None or mask is not None):
        other = "offsets" if offsets is not None else "mask"
        raise ValueError(f"lengths: give lengths or {other}, not both (lengths describe packed "
                         "values as offsets do)")
    if arrow and lengths is not None:
        raise ValueError("lengths: an Arrow list array carries its own offsets")
    if offsets is not None and mask is not None:
        raise ValueError("mask: give offsets (packed values) or mask (padded values), not both")
    if arrow:
        if offsets is not None:
            raise ValueError("offsets: an Arrow list array carries its own offsets")
        if mask is not None:
            raise ValueError("mask: an Arrow list array takes no mask")
