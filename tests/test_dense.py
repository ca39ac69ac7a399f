"""kk.logsumexp / kk.softmax / kk.log_softmax: drop-ins for scipy.special.

Swept against ``klkit.reference`` (float64 on the same rounded input) and
``scipy.special`` over dtypes x shapes x axes x fills, plus identities
(hypothesis), special values, ``out=``, and the scipy extras (``b``,
``return_sign``, complex, keepdims, axis tuples, scalar returns).
"""
import math
import warnings

import numpy as np
import pytest
import scipy.special as sps
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import klkit as kk
from klkit import reference as ref

from conftest import (
    FILLS, FLOAT_DTYPES, MULTI_AXES, SHAPE_AXES, as_dtype, assert_close, input_scale,
    nasty_array, out_dtype, to64,
)

FUNCS = ["logsumexp", "softmax", "log_softmax"]

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _ref(name, x, **kw):
    with np.errstate(all="ignore"):
        return getattr(ref, name)(x, **kw)


def _scipy(name, x, **kw):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(sps, name)(x, **kw)


def _scale(name, x):
    # softmax values are probabilities (absolute error ~ eps); log-domain
    # results carry an absolute error of a few ulp of the input magnitude.
    return 1.0 if name == "softmax" else input_scale(x)


def _result_shape(shape, axis, name, keepdims=False):
    if name != "logsumexp":
        return tuple(shape)
    if axis is None:
        return (1,) * len(shape) if keepdims else ()
    axes = {a % len(shape) for a in ((axis,) if np.isscalar(axis) else axis)}
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


# --------------------------------------------------------------------------
# sweeps against the reference and scipy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("shape,axis", SHAPE_AXES + MULTI_AXES,
                         ids=[f"{s}-ax{a}" for s, a in SHAPE_AXES + MULTI_AXES])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_vs_reference(name, dtype, shape, axis, fill):
    x = nasty_array(shape, dtype, fill)
    got = getattr(kk, name)(x, axis=axis)
    expected = _ref(name, to64(x), axis=axis)
    assert np.shape(got) == _result_shape(shape, axis, name)
    assert_close(got, expected, dtype, scale=_scale(name, x))


@pytest.mark.parametrize("fill", ["normal", "ties", "neginf", "special", "big"])
@pytest.mark.parametrize("shape,axis", SHAPE_AXES[::2] + MULTI_AXES[::2],
                         ids=[f"{s}-ax{a}" for s, a in SHAPE_AXES[::2] + MULTI_AXES[::2]])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_vs_scipy(name, dtype, shape, axis, fill):
    """scipy.special on the float64 copy of the same rounded values is a
    second, independent oracle (also for special values)."""
    x = nasty_array(shape, dtype, fill)
    got = getattr(kk, name)(x, axis=axis)
    expected = _scipy(name, to64(x), axis=axis)
    assert_close(got, expected, dtype, scale=_scale(name, x))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("kind", ["int64", "int32", "uint8", "bool"])
def test_integer_and_bool_input_promote_to_float64(name, kind):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 2 if kind == "bool" else 50, (3, 11)).astype(kind)
    for axis in (None, 0, 1):
        got = getattr(kk, name)(x, axis=axis)
        # (scipy on the float64 copy: scipy's own uint8 softmax wraps around)
        expected = _scipy(name, x.astype(np.float64), axis=axis)
        assert np.asarray(got).dtype == np.float64
        assert_close(got, expected, np.float64, scale=50.0)


@pytest.mark.parametrize("name", FUNCS)
def test_python_list_input(name):
    x = [[1.0, 2.0, 3.0], [-1.0, 0.5, 7.0]]
    got = getattr(kk, name)(x, axis=1)
    assert_close(got, _scipy(name, np.array(x), axis=1), np.float64, scale=7.0)


# --------------------------------------------------------------------------
# output types and shapes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_logsumexp_reduction_to_0d_is_numpy_scalar(dtype):
    x = nasty_array((3, 5), dtype, "normal")
    r = kk.logsumexp(x)
    assert isinstance(r, np.generic) and not isinstance(r, np.ndarray)
    assert r.dtype == out_dtype(dtype)
    r1 = kk.logsumexp(x[0], axis=0)
    assert isinstance(r1, np.generic) and r1.dtype == out_dtype(dtype)
    r2 = kk.logsumexp(x, axis=(0, 1))
    assert isinstance(r2, np.generic)
    # but keepdims keeps an array
    r3 = kk.logsumexp(x, keepdims=True)
    assert isinstance(r3, np.ndarray) and r3.shape == (1, 1)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, 2, (0, 2), (2, 1, 0), (-3,)])
def test_logsumexp_keepdims_and_axis_tuples_match_scipy(axis, keepdims):
    x = nasty_array((3, 4, 5), np.float64, "normal")
    got = kk.logsumexp(x, axis=axis, keepdims=keepdims)
    expected = sps.logsumexp(x, axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(expected)
    assert_close(got, expected, np.float64, scale=input_scale(x))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [None, (0, 1), (1, 2), (0, 2), (-1, 0)])
def test_softmax_axis_tuples_match_scipy(name, axis):
    x = nasty_array((3, 4, 5), np.float64, "normal")
    got = getattr(kk, name)(x, axis=axis)
    assert_close(got, _scipy(name, x, axis=axis), np.float64, scale=_scale(name, x))
    if name == "softmax":
        total = np.sum(got, axis=axis)
        np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------
# special values (scipy's rules)
# --------------------------------------------------------------------------

INF, NAN = np.inf, np.nan

LOGSUMEXP_SPECIAL = [
    ([INF, 1.0], INF),
    ([INF, -INF], INF),
    ([INF, INF], INF),
    ([-INF, -INF], -INF),
    ([-INF], -INF),
    ([NAN, 1.0], NAN),
    ([NAN, INF], NAN),
    ([NAN, -INF], NAN),
    ([-INF, 3.0], 3.0),
    ([5.0], 5.0),
    ([-INF, -INF, 2.5, -INF], 2.5),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("row,expected", LOGSUMEXP_SPECIAL)
def test_logsumexp_special_values(row, expected, dtype):
    x = as_dtype(np.array(row), dtype)
    got = kk.logsumexp(x)
    assert np.asarray(got).dtype == out_dtype(dtype)
    np.testing.assert_equal(float(got), expected)
    # the same row inside a batch, on either axis, with normal rows around it
    batch = np.stack([to64(nasty_array((len(row),), np.float64, "normal")), to64(x),
                      to64(nasty_array((len(row),), np.float64, "normal", seed=1))]).astype(x.dtype)
    got_rows = kk.logsumexp(batch, axis=1)
    np.testing.assert_equal(float(got_rows[1]), expected)
    assert np.all(np.isfinite(got_rows[[0, 2]]))
    got_cols = kk.logsumexp(np.ascontiguousarray(batch.T), axis=0)
    np.testing.assert_equal(float(got_cols[1]), expected)


SOFTMAX_SPECIAL = [
    # row,              softmax,           log_softmax
    ([INF, 1.0], [NAN, NAN], [NAN, -INF]),
    ([1.0, INF], [NAN, NAN], [-INF, NAN]),
    ([INF, INF], [NAN, NAN], [NAN, NAN]),
    ([-INF, -INF], [NAN, NAN], [NAN, NAN]),
    ([NAN, 1.0], [NAN, NAN], [NAN, NAN]),
    ([-INF, 0.0], [0.0, 1.0], [-INF, 0.0]),
    ([-INF, 2.0, -INF], [0.0, 1.0, 0.0], [-INF, 0.0, -INF]),
    ([3.0], [1.0], [0.0]),
    ([-7.0, -7.0], [0.5, 0.5], [-math.log(2), -math.log(2)]),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("row,sm,lsm", SOFTMAX_SPECIAL)
def test_softmax_special_values(row, sm, lsm, dtype):
    x = as_dtype(np.array(row), dtype)
    odt = out_dtype(dtype)
    got_sm = kk.softmax(x)
    got_lsm = kk.log_softmax(x)
    assert got_sm.dtype == odt and got_lsm.dtype == odt
    np.testing.assert_array_equal(got_sm, np.array(sm, odt))
    np.testing.assert_allclose(got_lsm, np.array(lsm, odt), rtol=4 * np.finfo(odt).eps)
    # matches scipy too (scipy on float64)
    np.testing.assert_array_equal(np.isnan(got_sm), np.isnan(_scipy("softmax", to64(x))))
    np.testing.assert_array_equal(np.isnan(got_lsm), np.isnan(_scipy("log_softmax", to64(x))))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_nan_row_does_not_leak(name, dtype):
    x = nasty_array((6, 33), dtype, "normal")
    clean = getattr(kk, name)(x, axis=1)
    x2 = x.copy()
    x2[2, 17] = np.nan
    got = getattr(kk, name)(x2, axis=1)
    assert np.all(np.isnan(got[2]))
    others = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(got[others], clean[others])


def test_log_softmax_excludes_the_max():
    """log_softmax([0, -40])[0] == -log1p(exp(-40)), not a rounded 0."""
    got = kk.log_softmax(np.array([0.0, -40.0]))
    assert got[0] < 0.0
    np.testing.assert_allclose(got[0], -math.log1p(math.exp(-40.0)), rtol=1e-15)
    assert got[1] == -40.0 - math.log1p(math.exp(-40.0))
    got32 = kk.log_softmax(np.array([0.0, -40.0], np.float32))
    assert got32.dtype == np.float32 and got32[0] < 0
    np.testing.assert_allclose(got32[0], np.float32(-4.248354e-18), rtol=1e-6)


def test_empty_reduction_is_neg_inf():
    assert kk.logsumexp(np.array([])) == -np.inf
    assert isinstance(kk.logsumexp(np.array([])), np.float64)
    r = kk.logsumexp(np.zeros((0, 3)), axis=0)
    np.testing.assert_array_equal(r, np.full(3, -np.inf))
    r = kk.logsumexp(np.zeros((0, 3), np.float32), axis=1)
    assert r.shape == (0,) and r.dtype == np.float32
    r = kk.logsumexp(np.zeros((2, 0, 3)), axis=(1, 2))
    np.testing.assert_array_equal(r, [-np.inf, -np.inf])


# --------------------------------------------------------------------------
# b, return_sign, complex: scipy semantics
# --------------------------------------------------------------------------

@pytest.mark.parametrize("b_shape", [(), (9,), (4, 1), (1, 9), (4, 9), (2, 4, 9)])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
def test_logsumexp_b_broadcasting_matches_scipy(b_shape, axis):
    rng = np.random.default_rng(3)
    a = rng.normal(0, 3, (4, 9))
    b = rng.uniform(0.1, 2.0, b_shape)
    if b_shape == (2, 4, 9) and axis == (0, 1):
        axis = (1, 2)
    expected = sps.logsumexp(a, axis=axis, b=b)
    got = kk.logsumexp(a, axis=axis, b=b)
    assert np.shape(got) == np.shape(expected)
    assert_close(got, expected, np.float64, scale=10.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_b_float32(dtype):
    rng = np.random.default_rng(4)
    a = rng.normal(0, 3, (5, 20)).astype(dtype)
    b = rng.uniform(0.0, 2.0, (5, 20)).astype(dtype)
    got = kk.logsumexp(a, axis=1, b=b)
    expected = sps.logsumexp(a.astype(np.float64), axis=1, b=b.astype(np.float64))
    assert_close(got, expected, np.dtype(dtype), scale=10.0)


def test_logsumexp_b_zero_at_infinite_element_contributes_nothing():
    assert kk.logsumexp([np.inf, 1.0], b=[0.0, 1.0]) == 1.0
    assert kk.logsumexp([-np.inf, 1.0], b=[1.0, 0.0]) == -np.inf
    np.testing.assert_allclose(kk.logsumexp([1.0, np.inf, 2.0], b=[1.0, 0.0, 1.0]),
                               sps.logsumexp([1.0, 2.0]), rtol=1e-15)
    r, s = kk.logsumexp([np.inf, 1.0], b=[0.0, -1.0], return_sign=True)
    assert r == 1.0 and s == -1.0
    # all weights zero: empty sum
    assert kk.logsumexp([1.0, 2.0], b=[0.0, 0.0]) == -np.inf


RETURN_SIGN_CASES = [
    ([1.0, 2.0], [1.0, -1.0]),
    ([1.0, 2.0], [-1.0, -1.0]),
    ([1.0, 1.0], [1.0, -1.0]),        # exact cancellation: (-inf, 0)
    ([1.0, 2.0], [0.0, 0.0]),
    ([np.inf, 1.0], [1.0, -1.0]),
    ([np.inf, 1.0], [-1.0, 1.0]),
    ([3.0, 2.0, 1.0], [1.0, -2.0, 0.5]),
    ([-np.inf, -np.inf], [1.0, -1.0]),
    ([np.nan, 1.0], [1.0, 1.0]),
]


@pytest.mark.parametrize("a,b", RETURN_SIGN_CASES)
def test_logsumexp_return_sign_matches_scipy(a, b):
    er, es = _scipy("logsumexp", np.array(a), b=np.array(b), return_sign=True)
    gr, gs = kk.logsumexp(a, b=b, return_sign=True)
    assert isinstance(gr, np.float64) and isinstance(gs, np.float64)
    np.testing.assert_allclose(gr, er, rtol=1e-14)
    np.testing.assert_equal(gs, es)
    # without return_sign a negative total is NaN (scipy)
    np.testing.assert_allclose(kk.logsumexp(a, b=b), _scipy("logsumexp", np.array(a), b=np.array(b)),
                               rtol=1e-14)


def test_logsumexp_return_sign_batched():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 2, (6, 8))
    b = rng.normal(0, 1, (6, 8))
    er, es = sps.logsumexp(a, axis=1, b=b, return_sign=True)
    gr, gs = kk.logsumexp(a, axis=1, b=b, return_sign=True)
    np.testing.assert_array_equal(gs, es)
    np.testing.assert_allclose(gr, er, rtol=1e-12)
    er, es = sps.logsumexp(a, axis=0, b=b, return_sign=True, keepdims=True)
    gr, gs = kk.logsumexp(a, axis=0, b=b, return_sign=True, keepdims=True)
    assert gr.shape == er.shape == gs.shape == (1, 8)
    np.testing.assert_array_equal(gs, es)
    np.testing.assert_allclose(gr, er, rtol=1e-12)



@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_logsumexp_return_sign_dtype_as_scipy(dtype):
    """The value keeps the dtype it has without return_sign (scipy's for
    float32 / float64; float32 for 16-bit input, klkit's rule)."""
    a = np.arange(5, dtype=dtype)
    gr, gs = kk.logsumexp(a, return_sign=True)
    assert gr.dtype == gs.dtype == kk.logsumexp(a).dtype
    if dtype != np.float16:
        assert gr.dtype == sps.logsumexp(a, return_sign=True)[0].dtype


COMPLEX_CASES = [
    np.array([1 + 1j, 2 + 10j, 0.5 - 3j]),
    np.array([1.0, 1.0 + 2 * np.pi * 1j]),
    np.array([1 + 0j, np.inf + 0j]),
    np.array([-np.inf + 1j, 0j]),
    np.array([[1 + 1j, 2 - 1j], [3 + 4j, -5j]]),
    np.array([1 + 7j, 1 - 7j], np.complex64),
]


@pytest.mark.parametrize("i", range(len(COMPLEX_CASES)))
def test_logsumexp_complex_matches_scipy(i):
    a = COMPLEX_CASES[i]
    for axis in [None] + list(range(a.ndim)):
        expected = _scipy("logsumexp", a, axis=axis)
        got = kk.logsumexp(a, axis=axis)
        assert np.iscomplexobj(got)
        assert np.asarray(got).dtype == np.asarray(expected).dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6 if a.dtype == np.complex64 else 1e-13)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_complex_matches_scipy(name):
    a = np.array([[1 + 1j, 2 + 10j, 0.5 - 3j], [0.1j, -1 + 0j, 2 - 2j]])
    for axis in (None, 0, 1):
        expected = _scipy(name, a, axis=axis)
        got = getattr(kk, name)(a, axis=axis)
        assert np.iscomplexobj(got)
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_out_is_filled_and_returned(name, dtype, axis):
    x = nasty_array((5, 13), dtype, "neginf")
    expected = getattr(kk, name)(x, axis=axis)
    buf = np.full((5, 13), 12345.0, dtype=out_dtype(dtype))
    got = getattr(kk, name)(x, axis=axis, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, expected)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_non_contiguous_and_fortran(name):
    x = nasty_array((6, 10), np.float64, "normal")
    expected = getattr(kk, name)(x, axis=1)
    big = np.zeros((6, 20))
    view = big[:, ::2]
    got = getattr(kk, name)(x, axis=1, out=view)
    assert got is view
    np.testing.assert_array_equal(big[:, ::2], expected)
    assert np.all(big[:, 1::2] == 0.0)
    fbuf = np.zeros((6, 10), order="F")
    got = getattr(kk, name)(x, axis=1, out=fbuf)
    assert got is fbuf
    np.testing.assert_array_equal(fbuf, expected)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_wrong_shape_or_dtype_raises(name):
    f = getattr(kk, name)
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="out"):
        f(x, axis=1, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match="out"):
        f(x, axis=1, out=np.empty((3, 4, 1)))
    with pytest.raises(ValueError, match="out"):
        f(x, axis=1, out=np.empty((3, 4), np.float32))
    with pytest.raises(ValueError, match="out"):
        f(x.astype(np.float32), axis=1, out=np.empty((3, 4), np.float64))
    with pytest.raises(ValueError, match="out"):
        f(x.astype(np.float16), axis=1, out=np.empty((3, 4), np.float16))


# --------------------------------------------------------------------------
# identities (hypothesis)
# --------------------------------------------------------------------------

def _arrays(dtype, elements):
    return hnp.arrays(dtype=dtype,
                      shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12),
                      elements=elements)


F64 = st.floats(-200, 200, allow_nan=False, allow_infinity=False)
F32 = st.floats(-80, 80, allow_nan=False, allow_infinity=False, width=32)
DYADIC = st.integers(-4000, 4000).map(lambda k: k / 64.0)   # exact under integer shifts


@settings(max_examples=60, deadline=None)
@given(x=_arrays(np.float64, F64), data=st.data())
def test_softmax_sums_to_one_f64(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    p = kk.softmax(x, axis=axis)
    assert np.all(p >= 0) and np.all(p <= 1)
    n = x.shape[axis]
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=0, atol=(n + 2) * 2.3e-16)


@settings(max_examples=60, deadline=None)
@given(x=_arrays(np.float32, F32), data=st.data())
def test_softmax_sums_to_one_f32(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    p = kk.softmax(x, axis=axis)
    assert p.dtype == np.float32
    n = x.shape[axis]
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=axis), 1.0, rtol=0,
                               atol=(n + 2) * 1.2e-7)


@settings(max_examples=60, deadline=None)
@given(x=_arrays(np.float64, DYADIC), c=st.integers(-300, 300), data=st.data())
def test_log_softmax_translation_invariance(x, c, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    a = kk.log_softmax(x, axis=axis)
    b = kk.log_softmax(x + c, axis=axis)          # x + c is exact (dyadic values)
    scale = float(np.max(np.abs(x))) + abs(c) + 1.0
    np.testing.assert_allclose(b, a, rtol=1e-14, atol=4 * 2.3e-16 * scale)
    s1 = kk.softmax(x, axis=axis)
    s2 = kk.softmax(x + c, axis=axis)
    np.testing.assert_allclose(s2, s1, rtol=1e-13, atol=1e-300)
    l1 = kk.logsumexp(x, axis=axis)
    l2 = kk.logsumexp(x + c, axis=axis)
    np.testing.assert_allclose(l2, l1 + c, rtol=1e-15, atol=4 * 2.3e-16 * scale)


@settings(max_examples=60, deadline=None)
@given(x=_arrays(np.float64, F64), data=st.data())
def test_exp_log_softmax_is_softmax(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    lp = kk.log_softmax(x, axis=axis)
    p = kk.softmax(x, axis=axis)
    assert np.all(lp <= 0)
    # exp turns an absolute error of the log into a relative one
    spread = float(np.max(x) - np.min(x)) + 1.0
    np.testing.assert_allclose(np.exp(lp), p, rtol=8 * 2.3e-16 * spread, atol=1e-300)
    # and log_softmax == x - logsumexp (to the same absolute accuracy)
    lse = kk.logsumexp(x, axis=axis, keepdims=True)
    np.testing.assert_allclose(lp, x - lse, rtol=0, atol=8 * 2.3e-16 * (np.max(np.abs(x)) + 1))


@settings(max_examples=60, deadline=None)
@given(x=_arrays(np.float64, st.floats(-700, 700) | st.just(-np.inf)), data=st.data())
def test_logsumexp_bounds(x, data):
    """max(x) <= logsumexp(x) <= max(x) + log(n), exactly (no rounding slack)."""
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    lse = np.asarray(kk.logsumexp(x, axis=axis))
    m = np.asarray(np.max(x, axis=axis))
    n = x.shape[axis]
    assert np.all(lse >= m)
    fin = np.isfinite(m)
    assert np.all(lse[fin] <= m[fin] + math.log(n) * (1 + 1e-15))
    assert np.all(lse[~fin] == -np.inf)


@settings(max_examples=40, deadline=None)
@given(x=_arrays(np.float64, F64), data=st.data())
def test_dense_vs_reference_hypothesis(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1) | st.none())
    for name in FUNCS:
        assert_close(getattr(kk, name)(x, axis=axis), _ref(name, x, axis=axis), np.float64,
                     scale=_scale(name, x))


def test_large_odd_shape_float32():
    """The 41 x 401 x 1271 float32 array along every axis.  klkit runs on the
    whole array; the (slow) reference checks a subsample of the rows, which
    is enough because a row's result does not depend on the other rows
    (test_contracts.py::test_row_result_independent_of_batch)."""
    x = nasty_array((41, 401, 1271), np.float32, "normal")
    scale = input_scale(x)
    for name in ("log_softmax", "softmax"):
        for axis, sub in ((-1, np.s_[::5, ::17, :]), (0, np.s_[:, ::17, ::23]),
                          (1, np.s_[::7, :, ::29])):
            got = getattr(kk, name)(x, axis=axis)
            assert got.dtype == np.float32 and got.shape == x.shape
            assert_close(got[sub], _ref(name, x[sub].astype(np.float64), axis=axis), np.float32,
                         scale=_scale(name, x))
            if name == "softmax":
                np.testing.assert_allclose(got.sum(axis=axis, dtype=np.float64), 1.0,
                                           atol=x.shape[axis] * 1.2e-7)
            del got
    for axis, sub, rsub in ((1, np.s_[::3, :, ::11], np.s_[::3, ::11]),
                            ((0, 2), np.s_[:, ::13, :], np.s_[::13])):
        lse = kk.logsumexp(x, axis=axis)
        expected = _ref("logsumexp", x[sub].astype(np.float64), axis=axis)
        assert_close(lse[rsub], expected, np.float32, scale=scale)
    # all 21M elements at once: against a float64 NumPy sum (pairwise, ~1e-15)
    x64 = x.astype(np.float64)
    m = float(x64.max())
    exact = m + math.log(float(np.sum(np.exp(x64 - m))))
    got = kk.logsumexp(x)
    assert isinstance(got, np.float32)
    assert abs(float(got) - exact) <= 2e-6 * abs(exact)


def test_torch_input_promotes_by_torchs_rules():
    """Torch tensors promote as torch (and scipy for torch input) does: a
    float32 ``a`` with an integer ``b`` stays float32, an integer tensor
    becomes torch's default float dtype; NumPy keeps NumPy's rules."""
    torch = pytest.importorskip("torch")
    a32 = torch.tensor([2.0, 1.0])
    got = kk.logsumexp(a32, b=torch.tensor([1, -1]))
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(math.log(math.exp(2) - math.exp(1)), rel=1e-6)
    v, s = kk.logsumexp(a32, b=torch.tensor([-1, 0]), return_sign=True)
    assert v.dtype == s.dtype == torch.float32 and float(s) == -1.0
    assert kk.logsumexp(a32.double(), b=torch.tensor([1, 1])).dtype == torch.float64
    assert kk.logsumexp(a32, b=torch.tensor([1.0, 1.0], dtype=torch.float64)).dtype == torch.float64
    for fn in (kk.logsumexp, kk.softmax, kk.log_softmax):
        assert fn(torch.tensor([2, 1])).dtype == torch.get_default_dtype()
        assert fn(torch.tensor([True, False])).dtype == torch.get_default_dtype()
    assert kk.logsumexp(np.array([2.0, 1.0], np.float32), b=np.array([1, -1])).dtype == np.float64
    assert kk.softmax(np.array([2, 1])).dtype == np.float64
