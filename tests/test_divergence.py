"""kk.entropy / kk.cross_entropy / kk.kl_div / kk.js_div.

Swept against ``klkit.reference`` over dtypes x shapes x axes x kind x base x
temperature, plus broadcasting, identities (hypothesis), worked examples and
scipy.stats.entropy / scipy.special.kl_div agreement.
"""
import math

import numpy as np
import pytest
import scipy.special as sps
import scipy.stats as sst
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import klkit as kk
from klkit import reference as ref

from conftest import (
    FLOAT_DTYPES, as_dtype, assert_close, distribution_array, input_scale,
    out_dtype, to64,
)

DIV_FUNCS = ["entropy", "cross_entropy", "kl_div", "js_div"]
# the divergence sweep uses fewer (shape, axis) cases than the dense one: the
# reference is slower here, and the kernels treat every axis the same way
DIV_SHAPE_AXES = [((7,), 0), ((1,), 0), ((5, 1), 1), ((5, 1), 0), ((4, 9), 0), ((4, 9), -1),
                  ((2, 1, 3, 5), 1), ((3, 41, 127), 1), ((3, 41, 127), -1)]
KINDS = ["logits", "logprobs", "probs"]
LN2 = math.log(2.0)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def call(mod, name, p, q=None, **kw):
    f = getattr(mod, name)
    return f(p, **kw) if name == "entropy" else f(p, q, **kw)


def call_ref(name, p, q=None, **kw):
    with np.errstate(all="ignore"):
        return call(ref, name, p, q, **kw)


def options(kind, name):
    """base / temperature (/ beta) combinations tried for one sweep case."""
    if kind == "logits":
        opts = [dict(), dict(base=2, temperature=0.7), dict(base=10, temperature=2.5)]
    else:
        opts = [dict(), dict(base=2)]
    if name == "js_div":
        for o, beta in zip(opts[1:], (0.2, 0.9)):
            o["beta"] = beta
        opts.append(dict(beta=0.97))
    return opts


# --------------------------------------------------------------------------
# sweep against the reference
# --------------------------------------------------------------------------

# (kind, fill): "large" values only make sense as logits.  Divergences of
# logits near the dtype's overflow threshold ("big") are themselves beyond
# the dtype's range, so they are checked for NaN-free finite output only
# (test_big_logits_stay_finite).
KIND_FILLS = [(k, f) for k in KINDS for f in ("normal", "ties", "neginf", "special", "large")
              if f != "large" or k == "logits"]


@pytest.mark.parametrize("kind,fill", KIND_FILLS, ids=[f"{k}-{f}" for k, f in KIND_FILLS])
@pytest.mark.parametrize("shape,axis", DIV_SHAPE_AXES,
                         ids=[f"{s}-ax{a}" for s, a in DIV_SHAPE_AXES])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", DIV_FUNCS)
def test_vs_reference(name, dtype, shape, axis, kind, fill):
    p = distribution_array(kind, shape, dtype, fill, axis=axis, seed=0)
    q = distribution_array(kind, shape, dtype, fill, axis=axis, seed=1)
    scale = input_scale(p, q)
    expected_shape = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    for kw in options(kind, name):
        got = call(kk, name, p, q, axis=axis, kind=kind, **kw)
        expected = call_ref(name, to64(p), to64(q), axis=axis, kind=kind, **kw)
        assert np.shape(got) == expected_shape
        if expected_shape == ():
            assert isinstance(got, np.generic) and not isinstance(got, np.ndarray)
        t = kw.get("temperature", 1.0)
        # a row sum of n terms each rounded at the logits' scale
        n = max(1, shape[axis])
        # logits of +-2000 give KL of thousands of nats from differences of
        # rounded x/T: float64 then agrees to ~1e-12 relative, not 1e-13
        rtol = 1e-12 if fill == "large" and np.dtype(dtype) == np.float64 else None
        assert_close(got, expected, dtype, scale=n * scale / min(t, 1.0), rtol=rtol,
                     err_msg=f"{kw}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", DIV_FUNCS)
def test_big_logits_stay_finite(name, dtype):
    p = distribution_array("logits", (6, 40), dtype, "big", seed=0)
    q = distribution_array("logits", (6, 40), dtype, "big", seed=1)
    got = call(kk, name, p, q)
    assert not np.isnan(got).any()
    assert (got >= 0).all()


@pytest.mark.parametrize("name", DIV_FUNCS)
@pytest.mark.parametrize("kind", KINDS)
def test_integer_input_promotes_to_float64(name, kind):
    rng = np.random.default_rng(11)
    p = rng.integers(0 if kind == "probs" else -5, 6, (4, 9))
    q = rng.integers(1 if kind == "probs" else -5, 6, (4, 9))
    got = call(kk, name, p, q, kind=kind)
    assert got.dtype == np.float64
    assert_close(got, call_ref(name, p.astype(float), q.astype(float), kind=kind), np.float64,
                 scale=6.0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["cross_entropy", "kl_div", "js_div"])
def test_mixed_input_dtypes(name, dtype):
    p = distribution_array("logits", (3, 20), dtype)
    q = distribution_array("logits", (3, 20), np.float64, seed=1)
    got = call(kk, name, p, q)
    assert got.dtype == np.float64    # float64 participates: float64 result
    assert_close(got, call_ref(name, to64(p), q), np.float64, scale=input_scale(p, q))


# --------------------------------------------------------------------------
# broadcasting
# --------------------------------------------------------------------------

BROADCAST_CASES = [
    ((4, 7, 50), (50,), -1),
    ((50,), (4, 7, 50), -1),
    ((4, 1, 50), (1, 7, 50), -1),
    ((4, 7, 50), (7, 1), 1),        # axis of length 7, q broadcast along it
    ((50, 3), (50, 1), 0),
    ((1, 50), (6, 50), 1),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["cross_entropy", "kl_div", "js_div"])
@pytest.mark.parametrize("ps,qs,axis", BROADCAST_CASES)
def test_broadcasting(name, kind, ps, qs, axis):
    p = distribution_array(kind, ps, np.float32, "normal", axis=axis)
    q = distribution_array(kind, qs, np.float32, "neginf" if kind != "logprobs" else "normal",
                           axis=axis, seed=1)
    got = call(kk, name, p, q, axis=axis, kind=kind)
    shape = np.broadcast_shapes(ps, qs)
    expected_shape = tuple(n for i, n in enumerate(shape) if i != axis % len(shape))
    assert got.shape == expected_shape
    pb = np.broadcast_to(p, shape).copy()
    qb = np.broadcast_to(q, shape).copy()
    np.testing.assert_array_equal(got, call(kk, name, pb, qb, axis=axis, kind=kind))
    assert_close(got, call_ref(name, to64(pb), to64(qb), axis=axis, kind=kind), np.float32,
                 scale=input_scale(p, q))


# --------------------------------------------------------------------------
# options: temperature, base, kind
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", DIV_FUNCS)
@pytest.mark.parametrize("t", [0.25, 0.7, 1.0, 3.0])
def test_temperature_divides_logits(name, dtype, t):
    p = distribution_array("logits", (5, 31), dtype)
    q = distribution_array("logits", (5, 31), dtype, seed=1)
    got = call(kk, name, p, q, temperature=t)
    expected = call_ref(name, to64(p) / t, to64(q) / t)
    assert_close(got, expected, dtype, scale=input_scale(p, q) / min(t, 1.0))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", DIV_FUNCS)
@pytest.mark.parametrize("base", [2, 10, math.e, 0.5, 3.7])
def test_base_divides_by_log_base(name, kind, base):
    p = distribution_array(kind, (4, 25), np.float64, "neginf" if kind != "logprobs" else "normal")
    q = distribution_array(kind, (4, 25), np.float64, "normal", seed=1)
    nats = call(kk, name, p, q, kind=kind)
    got = call(kk, name, p, q, kind=kind, base=base)
    np.testing.assert_allclose(got, nats / math.log(base), rtol=1e-14)
    if base == 0.5:
        assert np.all(got[np.isfinite(got) & (nats > 0)] < 0)


@pytest.mark.parametrize("name", DIV_FUNCS)
def test_kinds_agree_on_the_same_distribution(name):
    """logits, their log-softmax and their softmax describe the same P."""
    x = distribution_array("logits", (6, 40), np.float64, "neginf")
    y = distribution_array("logits", (6, 40), np.float64, "normal", seed=1)
    x[:, 0] = 0.0                                   # no all -inf row
    lx, ly = sps.log_softmax(x, axis=-1), sps.log_softmax(y, axis=-1)
    px, py = np.exp(lx), np.exp(ly)
    a = call(kk, name, x, y, kind="logits")
    b = call(kk, name, lx, ly, kind="logprobs")
    c = call(kk, name, px * 3.0, py * 0.25, kind="probs")   # unnormalised probs
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-14)


def test_logprobs_kl_is_bregman_form():
    """kind="logprobs" is not renormalised: sum p log(p/q) - p + q,
    i.e. scipy.special.kl_div summed."""
    rng = np.random.default_rng(2)
    lp = rng.normal(-3, 1, (5, 30))
    lq = rng.normal(-3, 1, (5, 30))
    got = kk.kl_div(lp, lq, kind="logprobs")
    expected = sps.kl_div(np.exp(lp), np.exp(lq)).sum(axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.all(got > 0)
    # differs from the plain sum p log(p/q) for unnormalised input
    plain = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    assert np.all(np.abs(got - plain) > 1e-6)
    # one-element logprobs rows: p log(p/q) - p + q
    got1 = kk.kl_div(np.array([math.log(0.3)]), np.array([math.log(0.6)]), kind="logprobs")
    np.testing.assert_allclose(got1, 0.3 * math.log(0.5) - 0.3 + 0.6, rtol=1e-14)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", DIV_FUNCS)
def test_empty_axis(name, dtype):
    """An empty distribution axis: NaN for logits / probs, 0.0 for logprobs."""
    p = as_dtype(np.zeros((3, 0)), dtype)
    for kind, expected in (("logits", np.nan), ("probs", np.nan), ("logprobs", 0.0)):
        got = call(kk, name, p, p, kind=kind)
        assert got.shape == (3,) and got.dtype == out_dtype(dtype)
        np.testing.assert_array_equal(got, np.full(3, expected))
    # empty batch, non-empty axis: empty result
    e = as_dtype(np.zeros((0, 5)), dtype)
    got = call(kk, name, e, e)
    assert got.shape == (0,) and got.dtype == out_dtype(dtype)


# --------------------------------------------------------------------------
# special values
# --------------------------------------------------------------------------

NINF = -np.inf


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_zero_probabilities(dtype):
    """0 log 0 = 0; P > 0 where Q = 0 gives +inf; P = 0 where Q > 0 is fine."""
    p = as_dtype(np.array([[0.0, 1.0, NINF], [0.0, NINF, NINF]]), dtype)
    q = as_dtype(np.array([[0.0, NINF, 1.0], [1.0, 2.0, NINF]]), dtype)
    rtol = 1e-14 if dtype == np.float64 else 2e-6
    kl = kk.kl_div(p, q)
    assert kl[0] == np.inf                            # P > 0 where Q = 0
    # row 1: P one-hot on element 0, Q = softmax(1, 2, -inf): KL = -log q_0
    np.testing.assert_allclose(kl[1], math.log1p(math.e), rtol=rtol)
    assert np.all(kk.kl_div(q, p) == np.inf)          # Q > 0 where P = 0, both rows
    assert kk.cross_entropy(p, q)[0] == np.inf
    np.testing.assert_allclose(kk.cross_entropy(p, q)[1], math.log1p(math.e), rtol=rtol)
    h = kk.entropy(p)
    e = math.e
    np.testing.assert_allclose(h[0], math.log1p(e) - e / (1 + e), rtol=rtol)
    assert h[1] == 0.0                                 # one-hot: exactly 0
    js = kk.js_div(p, q)
    assert np.all(np.isfinite(js)) and np.all(js <= LN2 * (1 + 1e-6))
    # probs with zeros
    pp = as_dtype(np.array([0.5, 0.5, 0.0]), dtype)
    qq = as_dtype(np.array([0.5, 0.0, 0.5]), dtype)
    assert kk.kl_div(pp, qq, kind="probs") == np.inf
    assert kk.kl_div(pp, pp, kind="probs") == 0.0
    np.testing.assert_allclose(kk.entropy(pp, kind="probs"), LN2, rtol=1e-6)
    np.testing.assert_allclose(kk.js_div(pp, qq, kind="probs"), 0.5 * LN2, rtol=1e-6)
    lp = as_dtype(np.array([math.log(0.5), math.log(0.5), NINF]), dtype)
    lq = as_dtype(np.array([math.log(0.5), NINF, math.log(0.5)]), dtype)
    assert kk.kl_div(lp, lq, kind="logprobs") == np.inf
    assert kk.cross_entropy(lp, lq, kind="logprobs") == np.inf


@pytest.mark.parametrize("name", DIV_FUNCS)
@pytest.mark.parametrize("bad", [[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [NINF, NINF, NINF]])
def test_invalid_logit_rows_are_nan_and_do_not_leak(name, bad):
    x = distribution_array("logits", (5, 3), np.float32)
    y = distribution_array("logits", (5, 3), np.float32, seed=1)
    clean = call(kk, name, x, y)
    x2 = x.copy()
    x2[2] = bad
    got = call(kk, name, x2, y)
    assert np.isnan(got[2])
    np.testing.assert_array_equal(got[[0, 1, 3, 4]], clean[[0, 1, 3, 4]])
    if name != "entropy":   # the same in q
        got = call(kk, name, y, x2)
        assert np.isnan(got[2])
        np.testing.assert_array_equal(got[[0, 1, 3, 4]], call(kk, name, y, x)[[0, 1, 3, 4]])


# --------------------------------------------------------------------------
# worked examples
# --------------------------------------------------------------------------

P_W = np.array([0.7, 0.3])
Q_W = np.array([0.5, 0.5])
KL_PQ = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)   # 0.08228287850505178
KL_QP = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)   # 0.08717797887081347
H_P = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))              # 0.6108643020548935


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_weather_example(kind, dtype):
    """P = (0.7, 0.3) sunny/rainy forecast against a coin Q = (0.5, 0.5)."""
    conv = {"probs": lambda v: v, "logprobs": np.log, "logits": lambda v: np.log(v) + 1.25}[kind]
    p, q = as_dtype(conv(P_W), dtype), as_dtype(conv(Q_W), dtype)
    # rounding the inputs to 16 bits moves the distributions a little
    rtol = {2: 3e-3 if dtype == np.float16 else 2e-2, 4: 2e-6, 8: 1e-14}[dtype.itemsize]
    kl_pq = kk.kl_div(p, q, kind=kind)
    kl_qp = kk.kl_div(q, p, kind=kind)
    assert kl_pq.dtype == out_dtype(dtype) and np.ndim(kl_pq) == 0
    np.testing.assert_allclose(kl_pq, KL_PQ, rtol=rtol)
    np.testing.assert_allclose(kl_qp, KL_QP, rtol=rtol)
    if dtype.itemsize >= 4:
        assert round(float(kl_pq), 4) == 0.0823 and round(float(kl_qp), 4) == 0.0872
    assert kl_pq != kl_qp                                      # KL is not symmetric
    np.testing.assert_allclose(kk.kl_div(p, q, kind=kind, base=2), KL_PQ / LN2, rtol=rtol)
    np.testing.assert_allclose(kk.kl_div(q, p, kind=kind, base=2), KL_QP / LN2, rtol=rtol)
    h_bits = kk.entropy(p, kind=kind, base=2)
    np.testing.assert_allclose(h_bits, H_P / LN2, rtol=rtol)
    if dtype.itemsize >= 4:
        assert round(float(h_bits), 4) == 0.8813
    np.testing.assert_allclose(kk.entropy(q, kind=kind, base=2), 1.0, rtol=rtol)
    np.testing.assert_allclose(kk.cross_entropy(p, q, kind=kind), H_P + KL_PQ, rtol=rtol)
    np.testing.assert_allclose(kk.cross_entropy(p, q, kind=kind, base=2), 1.0, rtol=rtol)
    m = 0.5 * (P_W + Q_W)
    js = 0.5 * np.sum(P_W * np.log(P_W / m)) + 0.5 * np.sum(Q_W * np.log(Q_W / m))
    np.testing.assert_allclose(kk.js_div(p, q, kind=kind), js, rtol=max(rtol, 1e-13))


# --------------------------------------------------------------------------
# scipy.stats.entropy agreement (kind="probs")
# --------------------------------------------------------------------------

@pytest.mark.parametrize("base", [None, 2, 10])
@pytest.mark.parametrize("shape,axis", [((9,), 0), ((4, 9), 1), ((4, 9), 0), ((3, 5, 7), 1),
                                        ((3, 5, 7), -1), ((6, 1), 1)])
def test_scipy_stats_entropy_probs(shape, axis, base):
    p = distribution_array("probs", shape, np.float64, "zeros", axis=axis)
    q = distribution_array("probs", shape, np.float64, "normal", axis=axis, seed=1)
    p[(slice(None),) * (axis % len(shape)) + (0,)] = 1.0         # no all-zero row
    np.testing.assert_allclose(kk.entropy(p, axis=axis, kind="probs", base=base),
                               sst.entropy(p, axis=axis, base=base), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(kk.kl_div(p, q, axis=axis, kind="probs", base=base),
                               sst.entropy(p, q, axis=axis, base=base), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(kk.cross_entropy(p, q, axis=axis, kind="probs", base=base),
                               sst.entropy(p, axis=axis, base=base)
                               + sst.entropy(p, q, axis=axis, base=base), rtol=1e-13, atol=1e-15)
    # Q = 0 where P > 0
    q2 = q.copy()
    q2[(slice(None),) * (axis % len(shape)) + (0,)] = 0.0
    np.testing.assert_array_equal(kk.kl_div(p, q2, axis=axis, kind="probs"),
                                  sst.entropy(p, q2, axis=axis))


def test_scipy_stats_entropy_from_logits():
    x = distribution_array("logits", (7, 33), np.float64, "neginf")
    x[:, 3] = 1.0
    np.testing.assert_allclose(kk.entropy(x), sst.entropy(sps.softmax(x, axis=1), axis=1),
                               rtol=1e-13)


# --------------------------------------------------------------------------
# identities (hypothesis)
# --------------------------------------------------------------------------

def _rows(dtype, elements, min_side=1):
    return hnp.arrays(dtype=dtype,
                      shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=min_side, max_side=16),
                      elements=elements)


LOGIT64 = st.floats(-60, 60, allow_nan=False, allow_infinity=False)
LOGIT32 = st.floats(-60, 60, allow_nan=False, allow_infinity=False, width=32)
LOGIT_NINF = LOGIT64 | st.just(-np.inf)
PROB = st.floats(0, 100, allow_nan=False, allow_infinity=False) | st.just(0.0)


@settings(max_examples=80, deadline=None)
@given(x=_rows(np.float64, LOGIT_NINF) | _rows(np.float32, LOGIT32),
       t=st.sampled_from([1.0, 0.3, 7.0]))
def test_kl_self_is_exactly_zero_logits(x, t):
    kl = np.asarray(kk.kl_div(x, x, temperature=t))
    valid = np.any(np.isfinite(x), axis=-1)        # rows that are not all -inf
    assert np.all(kl[valid] == 0.0)
    assert np.all(np.isnan(kl[~valid]))
    js = np.asarray(kk.js_div(x, x, temperature=t))
    assert np.all(js[valid] == 0.0)
    assert np.all(np.isnan(js[~valid]))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("t", [1.0, 0.7, 2.5])
def test_one_element_distributions(dtype, t):
    """A length-1 axis holds the distribution (1): entropy, KL, JS and the
    cross-entropy are exactly 0 whatever the (finite) logits are."""
    big = 6e37 if dtype != np.float16 else 6e4
    p = as_dtype(np.array([[0.0], [3.5], [-7.25], [big], [-big], [1e-3]]), dtype)
    q = as_dtype(np.array([[1.0], [-2.0], [7.25], [-big], [big], [-1e-3]]), dtype)
    for name in DIV_FUNCS:
        got = call(kk, name, p, q, temperature=t)
        np.testing.assert_array_equal(got, np.zeros(6, out_dtype(dtype)), err_msg=name)
    got = kk.js_div(p, q, temperature=t, beta=0.9)
    np.testing.assert_array_equal(got, np.zeros(6, out_dtype(dtype)))


@settings(max_examples=60, deadline=None)
@given(p=_rows(np.float64, PROB))
def test_kl_self_is_exactly_zero_probs_and_logprobs(p):
    kl = np.asarray(kk.kl_div(p, p, kind="probs"))
    ok = np.sum(p, axis=-1) > 0
    assert np.all(kl[ok] == 0.0)
    assert np.all(np.isnan(kl[~ok]))
    with np.errstate(divide="ignore"):
        lp = np.log(p)
    assert np.all(np.asarray(kk.kl_div(lp, lp, kind="logprobs")) == 0.0)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), kind=st.sampled_from(KINDS),
       beta=st.sampled_from([0.5, 0.1, 0.75]))
def test_kl_and_js_nonnegative(data, kind, beta):
    n = data.draw(st.integers(1, 24))
    elems = {"logits": LOGIT_NINF, "probs": PROB,
             "logprobs": st.floats(-60, 2, allow_nan=False) | st.just(-np.inf)}[kind]
    p = data.draw(hnp.arrays(np.float64, (3, n), elements=elems))
    q = data.draw(hnp.arrays(np.float64, (3, n), elements=elems))
    kl = kk.kl_div(p, q, kind=kind)
    assert not np.any(kl < 0)
    js = kk.js_div(p, q, kind=kind, beta=beta)
    assert not np.any(js < 0)
    if kind != "logprobs":
        hb = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
        assert not np.any(js > hb * (1 + 1e-12))       # generalised JS <= H(beta)
    # NaN only where the reference has it
    assert_close(kl, call_ref("kl_div", p, q, kind=kind), np.float64, scale=100.0)


@settings(max_examples=80, deadline=None)
@given(data=st.data(), t=st.sampled_from([1.0, 0.5]))
def test_cross_entropy_is_entropy_plus_kl(data, t):
    n = data.draw(st.integers(1, 24))
    p = data.draw(hnp.arrays(np.float64, (4, n), elements=LOGIT64))
    q = data.draw(hnp.arrays(np.float64, (4, n), elements=LOGIT64))
    h_pq = kk.cross_entropy(p, q, temperature=t)
    h_p = kk.entropy(p, temperature=t)
    kl = kk.kl_div(p, q, temperature=t)
    assert np.all(h_p >= 0) and np.all(h_p <= math.log(n) * (1 + 1e-14))
    np.testing.assert_allclose(h_pq, h_p + kl, rtol=1e-12, atol=1e-13 * (1 + 120 / t))
    assert np.all(h_pq >= h_p * (1 - 1e-13))           # Gibbs' inequality


@settings(max_examples=80, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["logits", "probs"]))
def test_js_symmetry_and_bound(data, kind):
    n = data.draw(st.integers(1, 24))
    elems = LOGIT_NINF if kind == "logits" else PROB
    p = data.draw(hnp.arrays(np.float64, (3, n), elements=elems))
    q = data.draw(hnp.arrays(np.float64, (3, n), elements=elems))
    js = kk.js_div(p, q, kind=kind)
    js_rev = kk.js_div(q, p, kind=kind)
    fin = np.isfinite(js)
    assert np.array_equal(fin, np.isfinite(js_rev))
    np.testing.assert_allclose(js[fin], js_rev[fin], rtol=1e-12, atol=1e-300)
    assert np.all(js[fin] <= LN2 * (1 + 1e-12))
    assert np.all(js[fin] >= 0)
    # the general beta: JS_beta(P, Q) == JS_{1-beta}(Q, P)
    a = kk.js_div(p, q, kind=kind, beta=0.2)
    b = kk.js_div(q, p, kind=kind, beta=0.8)
    np.testing.assert_allclose(a[fin], b[fin], rtol=1e-12, atol=1e-300)
    # beta in {0, 1}: zero (also where one distribution has zeros), no NaN
    for beta in (0.0, 1.0):
        z = kk.js_div(p, q, kind=kind, beta=beta)
        np.testing.assert_array_equal(z[fin], 0.0)


def test_js_beta_limits_with_disjoint_support():
    p = np.array([0.0, -np.inf, 1.0])
    q = np.array([-np.inf, 0.0, -np.inf])
    assert kk.js_div(p, q, beta=0.0) == 0.0
    assert kk.js_div(p, q, beta=1.0) == 0.0
    np.testing.assert_allclose(kk.js_div(p, q), LN2, rtol=1e-15)   # disjoint: exactly log 2
    for beta in (1e-3, 0.3, 0.999):
        hb = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta))
        np.testing.assert_allclose(kk.js_div(p, q, beta=beta), hb, rtol=1e-13)
    # continuous in beta near the ends
    assert 0 < kk.js_div(p, q, beta=1e-12) < 1e-10


@settings(max_examples=40, deadline=None)
@given(data=st.data(), kind=st.sampled_from(KINDS), name=st.sampled_from(DIV_FUNCS))
def test_divergence_vs_reference_hypothesis(data, kind, name):
    n = data.draw(st.integers(1, 20))
    elems = {"logits": LOGIT_NINF, "probs": PROB,
             "logprobs": st.floats(-60, 0, allow_nan=False) | st.just(-np.inf)}[kind]
    p = data.draw(hnp.arrays(np.float64, (2, n), elements=elems))
    q = data.draw(hnp.arrays(np.float64, (2, n), elements=elems))
    assert_close(call(kk, name, p, q, kind=kind), call_ref(name, p, q, kind=kind), np.float64,
                 scale=100.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", DIV_FUNCS)
def test_masked_vocabulary_spans(name, dtype):
    # top-k / top-p masking: long runs of -inf (whole kernel chunks of P),
    # Q finite there; and a NaN of Q inside P's masked span still poisons
    rng = np.random.default_rng(21)
    p = rng.normal(0, 2, (3, 20000))
    p[:, :4096] = -np.inf
    p[1, 9000:17000] = -np.inf
    q = rng.normal(0, 2, (3, 20000))
    p, q = p.astype(dtype), q.astype(dtype)
    got = call(kk, name, p, q)
    assert_close(got, call_ref(name, to64(p), to64(q)), dtype, scale=20000 * input_scale(p, q))
    if name != "entropy":
        q[0, 100] = np.nan
        got = call(kk, name, p, q)
        assert np.isnan(got[0]) and not np.isnan(got[1:]).any()


# --------------------------------------------------------------------------
# edge cases found in review
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_further_apart_than_the_dtype_range(dtype):
    big = 1e308 if dtype == np.float64 else 3e38
    x = np.array([big, -big], dtype)
    assert kk.entropy(x) == 0 and kk.cross_entropy(x, x) == 0
    # P = (1/2, 1/2), Q one-hot at +big: H(P, Q) = big/2 + log 2 ... finite in float32
    got = kk.cross_entropy(np.zeros(2, dtype), x)
    np.testing.assert_allclose(got, ref.cross_entropy(np.zeros(2), x.astype(np.float64)),
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["entropy", "cross_entropy", "kl_div", "js_div"])
@pytest.mark.parametrize("dtype,temperature", [(np.float32, 2.9e-39), (np.float32, 1e46),
                                               (np.float32, 1e38), (np.float64, 1e307)])
def test_temperatures_beyond_the_working_range(name, dtype, temperature):
    p = np.array([[0.0, -np.inf, 1.0], [3.0, 2.0, 0.5]], dtype)
    q = np.array([[0.5, 0.0, 1.0], [3.0, -np.inf, 0.5]], dtype)
    args = (p,) if name == "entropy" else (p, q)
    got = getattr(kk, name)(*args, temperature=temperature)
    want = getattr(ref, name)(*[a.astype(np.float64) for a in args], temperature=temperature)
    assert got.dtype == out_dtype(dtype)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-6, atol=1e-7)


def test_kl_nan_in_a_chunk_where_p_is_otherwise_zero():
    p = np.zeros(2049)
    p[:2048] = -np.inf
    p[0] = np.nan
    assert np.isnan(kk.kl_div(p, np.zeros(2049)))
    assert np.isnan(kk.kl_div(p.astype(np.float32), np.zeros(2049, np.float32)))


@pytest.mark.parametrize("spikes", [(), (800,), (800, 5200, 20000, 20100, 32767), tuple(range(0, 32768, 97))])
def test_kl_close_rows_with_far_tokens(spikes):
    # float32 KL sums close tokens (|d| <= 2) with a polynomial phi and
    # falls back to the exp form for blocks holding a far token; rows that
    # mix both must agree with the reference and keep their bits
    rng = np.random.default_rng(11)
    p = rng.normal(0, 2, (3, 32768)).astype(np.float32)
    q = (p + rng.normal(0, 0.3, p.shape)).astype(np.float32)
    for j in spikes:
        q[:, j] += 6.0
        q[1, j] -= 12.0
    got = kk.kl_div(p, q)
    want = ref.kl_div(p.astype(np.float64), q.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-6)
    assert kk.kl_div(p[1:2], q[1:2])[0].tobytes() == got[1].tobytes()


@pytest.mark.parametrize("name", ["cross_entropy", "kl_div", "js_div"])
def test_python_number_as_a_distribution_is_weak(name):
    """A Python number (a uniform row, broadcast) does not widen float32
    logits: the result is float32, as the reference's (NumPy 2's rule)."""
    p = np.array([[0.3, -1.2, 2.0], [1.0, 1.0, 1.0]], np.float32)
    got = getattr(kk, name)(p, 0.5)
    expected = getattr(ref, name)(p, 0.5)
    assert got.dtype == expected.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)


def test_a_second_distribution_given_as_the_axis_points_to_kl_div():
    """entropy(p, q) in scipy.stats.entropy's order: q lands on the axis"""
    p, q = np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([[0.9, 0.1], [0.3, 0.7]])
    for qq in (q, q.tolist(), [0.9, 0.1]):
        with pytest.raises(TypeError, match=r"^axis: expected an int .* got an array of shape "
                                            r".*kl_div\(pk, qk, kind='probs'\)"):
            kk.entropy(p, qq, kind="probs")
    with pytest.raises(TypeError, match=r"got \(0, 1\)$"):
        kk.entropy(p, (0, 1))
