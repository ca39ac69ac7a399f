"""Shared fixtures for the klkit test suite.

One generator of nasty arrays (``nasty_array``) feeds every test that sweeps
dtypes x shapes x axes, in the bottleneck style: the same shapes, fills and
special values go through every public function, and the result is compared
with ``klkit.reference`` (pure NumPy, float64 internally) evaluated on the SAME
rounded inputs converted to float64, at the tolerance of the output dtype
(``TOLERANCE``), with NaN / +inf / -inf positions required to match exactly.
"""
import os
import zlib
from collections import namedtuple

import numpy as np
import pytest
from hypothesis import settings

# Hypothesis: no deadline (timings vary on a loaded machine) and a fixed
# example sequence so that every run checks the same cases (set
# KLKIT_HYPOTHESIS=explore for fresh random examples).
settings.register_profile("klkit", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("explore", deadline=None)
settings.load_profile("explore" if os.environ.get("KLKIT_HYPOTHESIS") == "explore" else "klkit")

try:  # bfloat16 arrays come from ml_dtypes; skip those cases without it
    import ml_dtypes

    BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    ml_dtypes = None
    BFLOAT16 = None


def _build_info():
    import klkit

    return klkit._kernels.build_info()


#: the sanitizers this klkit was built with ('' for a normal build).  The
#: sanitized builds are not vectorised (gcc keeps instrumented loops scalar),
#: so their float32 sums run in another order: the accuracy tests whose
#: tolerances were measured on the vectorised sums, tighter than the
#: documented bounds, allow SIMD_ORDER_SLACK times as much there.
SANITIZED = _build_info()["sanitize"]
SIMD_ORDER_SLACK = 4 if SANITIZED else 1


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "openmp: needs klkit built with OpenMP (a thread count "
                                       "other than 1; skipped in a build without it)")


def _gpu_visible():
    try:
        import cupy  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if any("cuda" in item.keywords for item in items) and not _gpu_visible():
        skip = pytest.mark.skip(reason="no CUDA GPU visible")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)
    if not _build_info()["openmp"]:
        skip = pytest.mark.skip(reason="klkit built without OpenMP (e.g. the thread-sanitizer build)")
        for item in items:
            if "openmp" in item.keywords:
                item.add_marker(skip)


# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------

def _bf16_param():
    return pytest.param(
        BFLOAT16 if BFLOAT16 is not None else "bfloat16",
        id="bfloat16",
        marks=pytest.mark.skipif(BFLOAT16 is None, reason="ml_dtypes not installed"),
    )


#: every floating input dtype klkit accepts (bfloat16 skipped without ml_dtypes)
FLOAT_DTYPES = [
    pytest.param(np.dtype(np.float16), id="float16"),
    pytest.param(np.dtype(np.float32), id="float32"),
    pytest.param(np.dtype(np.float64), id="float64"),
    _bf16_param(),
]


def out_dtype(dtype):
    """Result dtype of every klkit function for a floating input dtype."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def as_dtype(x, dtype):
    """``np.asarray(x, dtype)`` that also works for bfloat16 (via float32)."""
    x = np.asarray(x)
    dtype = np.dtype(dtype)
    if BFLOAT16 is not None and dtype == BFLOAT16:
        return x.astype(np.float32).astype(dtype)
    return x.astype(dtype)


def to64(x):
    """Exact float64 copy of a (possibly bfloat16 / float16) array."""
    x = np.asarray(x)
    if BFLOAT16 is not None and x.dtype == BFLOAT16:
        return x.astype(np.float32).astype(np.float64)
    return x.astype(np.float64)


# --------------------------------------------------------------------------
# tolerances
# --------------------------------------------------------------------------

Tol = namedtuple("Tol", "rtol atol")

#: tolerance of a klkit result against the float64 reference on the same
#: rounded input, keyed by the *output* dtype.  ``atol`` is per unit of input
#: magnitude (log-domain results such as x - lse carry an absolute error of a
#: few ulp of the input scale); callers multiply it by ``scale``.
TOLERANCE = {
    np.dtype(np.float64): Tol(rtol=1e-13, atol=4 * np.finfo(np.float64).eps),
    np.dtype(np.float32): Tol(rtol=2e-6, atol=4 * np.finfo(np.float32).eps),
}


def input_scale(*arrays):
    """max(1, largest finite |value|) over the inputs: the atol multiplier."""
    s = 1.0
    for a in arrays:
        a = to64(a)
        fin = a[np.isfinite(a)]
        if fin.size:
            s = max(s, float(np.max(np.abs(fin))))
    return s


def assert_close(actual, expected, dtype, *, scale=1.0, rtol=None, atol=None,
                 check_dtype=True, err_msg=""):
    """Compare a klkit result with the float64 reference.

    ``dtype`` is the INPUT dtype: the result must have ``out_dtype(dtype)``
    (unless ``check_dtype`` is False), the expected value is rounded to that
    dtype first (so overflow/underflow of the output type is not an error),
    NaN, +inf and -inf must be at exactly the same positions, and the finite
    values must agree to ``rtol`` / ``atol * scale`` of the tolerance table.
    """
    odt = out_dtype(dtype)
    tol = TOLERANCE[odt]
    rtol = tol.rtol if rtol is None else rtol
    atol = tol.atol * scale if atol is None else atol
    actual_arr = np.asarray(actual)
    if check_dtype:
        assert actual_arr.dtype == odt, f"dtype {actual_arr.dtype} != {odt} {err_msg}"
    exp = np.asarray(expected)
    with np.errstate(over="ignore", invalid="ignore"):
        exp = exp.astype(odt) if np.isrealobj(exp) else exp
    assert actual_arr.shape == exp.shape, f"shape {actual_arr.shape} != {exp.shape} {err_msg}"
    a64 = actual_arr.astype(np.float64)
    e64 = exp.astype(np.float64)
    assert_same_specials(a64, e64, err_msg)
    fin = np.isfinite(e64)
    np.testing.assert_allclose(a64[fin], e64[fin], rtol=rtol, atol=atol, err_msg=err_msg)


def assert_same_specials(a64, e64, context=""):
    """NaN, +inf and -inf at the same positions of two float64 arrays of one
    shape (the first few that differ in the message)."""
    for name, pred in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        pa, pe = pred(a64), pred(e64)
        if not np.array_equal(pa, pe):
            bad = np.argwhere(pa != pe)[:5]
            raise AssertionError(
                f"{name} positions differ at {bad.tolist()}: actual "
                f"{[a64[tuple(i)] for i in bad]}, expected {[e64[tuple(i)] for i in bad]} {context}")


def ulp_distance(actual, exact, dtype):
    """|actual - exact| in units of the spacing of ``dtype`` at ``exact``.

    ``exact`` is a Python float / mpmath value (higher precision); subnormal
    spacing is used below the normal range.
    """
    dtype = np.dtype(dtype)
    exact_f = float(exact)
    top = float(np.finfo(dtype).max)
    sp = float(np.spacing(dtype.type(min(abs(exact_f), top))))
    sp = max(sp, float(np.finfo(dtype).smallest_subnormal))
    return abs(float(actual) - exact_f) / sp


# --------------------------------------------------------------------------
# the nasty-array generator
# --------------------------------------------------------------------------

#: shapes swept by the dtype x shape x axis tests, with their (single) axes
SHAPE_AXES = [
    ((7,), 0),
    ((7,), -1),
    ((1,), 0),                 # one element
    ((5, 1), 1),               # length-1 rows
    ((5, 1), 0),
    ((1, 6), 0),               # length-1 columns
    ((4, 9), 0),
    ((4, 9), -1),
    ((4, 9), -2),
    ((2, 1, 3, 5), 1),
    ((2, 1, 3, 5), -1),
    ((3, 41, 127), 0),         # the odd 3-D shape, every axis
    ((3, 41, 127), 1),
    ((3, 41, 127), 2),
    ((3, 41, 127), -1),
    ((3, 41, 127), -3),
]

#: extra axis arguments accepted by logsumexp / softmax / log_softmax
MULTI_AXES = [
    ((7,), None),
    ((4, 9), None),
    ((4, 9), (0, 1)),
    ((4, 9), (-1,)),
    ((3, 41, 127), (0, 2)),
    ((3, 41, 127), (2, 0)),
    ((3, 41, 127), (-1, -2)),
    ((3, 41, 127), None),
    ((2, 1, 3, 5), (1, 3)),
]

#: fills of the generator (logit-like values; see nasty_array)
FILLS = ["normal", "ties", "neginf", "special", "big", "tiny"]


def _seed(*parts):
    """A stable seed from the case description (independent of PYTHONHASHSEED)."""
    return zlib.crc32(repr(parts).encode())


def nasty_array(shape, dtype, fill="normal", seed=0):
    """A deterministic array of ``shape`` / ``dtype`` filled by ``fill``.

    Logit-like fills:
      normal   N(0, 3)
      ties     small integers in [-2, 2]: many exact ties of the maximum
      neginf   N(0, 3) with ~35% -inf (so some short rows are all -inf)
      special  N(0, 3) sprinkled with NaN, +inf and -inf (~4% each)
      big      uniform in +-(max/4) of the dtype (float16: +-16000; overflow
               of exp(x) and of naive sums)
      large    uniform in +-2000: exp overflows in every dtype, differences
               stay far from the dtype's overflow (divergence tests)
      tiny     N(0, 1e-3): nearly uniform distributions
    Probability fills (non-negative):
      zeros    exp(N(0,1)) with ~35% exact zeros
      nan      exp(N(0,1)) with ~5% NaN
    The values are drawn in float64 and rounded to ``dtype`` (bfloat16 via
    float32); the caller computes the reference on ``to64(result)``.
    """
    rng = np.random.default_rng(_seed(shape, str(dtype), fill, seed))
    n = int(np.prod(shape)) if len(shape) else 1
    if fill == "normal":
        x = rng.normal(0.0, 3.0, n)
    elif fill == "ties":
        x = rng.integers(-2, 3, n).astype(np.float64)
    elif fill == "neginf":
        x = rng.normal(0.0, 3.0, n)
        x[rng.random(n) < 0.35] = -np.inf
    elif fill == "special":
        x = rng.normal(0.0, 3.0, n)
        u = rng.random(n)
        x[u < 0.04] = np.nan
        x[(u >= 0.04) & (u < 0.08)] = np.inf
        x[(u >= 0.08) & (u < 0.12)] = -np.inf
    elif fill == "big":
        dt = np.dtype(dtype)
        if dt == np.float16:
            top = 16000.0
        elif dt == np.float64:
            top = float(np.finfo(np.float64).max) / 4
        else:                                   # float32 and bfloat16 share the range
            top = float(np.finfo(np.float32).max) / 4
        x = rng.uniform(-top, top, n)
    elif fill == "large":
        x = rng.uniform(-2000.0, 2000.0, n)
    elif fill == "tiny":
        x = rng.normal(0.0, 1e-3, n)
    elif fill == "zeros":
        x = np.exp(rng.normal(0.0, 1.0, n))
        x[rng.random(n) < 0.35] = 0.0
    elif fill == "nan":
        x = np.exp(rng.normal(0.0, 1.0, n))
        x[rng.random(n) < 0.05] = np.nan
    else:
        raise ValueError(f"unknown fill {fill!r}")
    with np.errstate(over="ignore"):
        return as_dtype(x.reshape(shape), dtype)


def logprobs_array(shape, dtype, fill="normal", axis=-1, seed=0):
    """Normalised log-probabilities along ``axis`` (computed in float64 by
    plain NumPy, then rounded to ``dtype``) for kind="logprobs" tests."""
    x = to64(nasty_array(shape, np.float64, fill, seed))
    if x.size and x.shape[axis]:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            m = np.max(np.where(np.isnan(x), -np.inf, x), axis=axis, keepdims=True)
            m = np.where(np.isfinite(m), m, 0.0)
            lse = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
            x = x - lse
    x[np.isposinf(x)] = np.nan
    return as_dtype(x, dtype)


def distribution_array(kind, shape, dtype, fill="normal", axis=-1, seed=0):
    """Input of the given ``kind`` ("logits", "logprobs", "probs")."""
    if kind == "logits":
        return nasty_array(shape, dtype, fill, seed)
    if kind == "logprobs":
        return logprobs_array(shape, dtype, fill, axis, seed)
    if kind == "probs":
        pfill = {"normal": "normal", "ties": "ties", "neginf": "zeros", "special": "nan",
                 "zeros": "zeros", "nan": "nan"}[fill]
        if pfill == "ties":
            rng = np.random.default_rng(_seed(shape, fill, seed))
            return as_dtype(rng.integers(0, 3, shape).astype(np.float64), dtype)
        x = nasty_array(shape, np.float64, pfill, seed)
        if pfill == "normal":
            x = np.exp(x / 3.0)
        return as_dtype(x, dtype)
    raise ValueError(kind)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture
def restore_threads():
    """Restore klkit's thread count after a test that changes it."""
    import klkit as kk

    n = kk.get_num_threads()
    yield n
    kk.set_num_threads(n)
