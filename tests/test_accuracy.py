"""Accuracy against exact values computed with mpmath at 50 digits.

The truth is always computed on the values the function actually sees (for
float32 / float16 cases: the inputs rounded to that dtype FIRST, then
converted exactly to mpmath), e.g.

    import mpmath
    mpmath.mp.dps = 50
    x = [mpmath.mpf(float(v)) for v in row]             # exact binary values
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in x))
    kl = mpmath.fsum(mpmath.exp(a - lx) * ((a - lx) - (b - ly)) for a, b in zip(x, y))

Rows of 2**20 elements use math.fsum of float64 exp values instead (relative
error ~1e-16, far below the float32 tolerance checked there).
"""
import functools
import math

import mpmath
import numpy as np
import pytest

import klkit as kk
from klkit import reference as ref

from conftest import SIMD_ORDER_SLACK, as_dtype, to64, ulp_distance

DPS = 50
NINF, INF, NAN = -np.inf, np.inf, np.nan


# --------------------------------------------------------------------------
# mpmath helpers (inputs: float64-exact values; -inf allowed)
# --------------------------------------------------------------------------

def _mp(values):
    return [mpmath.mpf(float(v)) for v in values]


def _mp_lse_parts(values):
    """(m, log1p(s)): the maximum and log1p of the sum of exp(v - m) over all
    but one maximum, so that nothing below 10**-DPS of m is lost."""
    vals = sorted((v for v in _mp(values) if v != mpmath.mpf("-inf")), reverse=True)
    if not vals:
        return mpmath.mpf("-inf"), mpmath.mpf(0)
    m = vals[0]
    return m, mpmath.log1p(mpmath.fsum(mpmath.exp(v - m) for v in vals[1:]))


def mp_lse(values):
    with mpmath.workdps(DPS):
        m, l1p = _mp_lse_parts(values)
        return m + l1p


def mp_log_softmax(values):
    with mpmath.workdps(DPS):
        m, l1p = _mp_lse_parts(values)
        return [(mpmath.mpf(float(v)) - m) - l1p for v in values]


def mp_softmax(values):
    with mpmath.workdps(DPS):
        return [mpmath.exp(v) for v in mp_log_softmax(values)]


def mp_kl(x, y, t=1.0):
    """KL(softmax(x/t) || softmax(y/t))."""
    with mpmath.workdps(DPS):
        xs = [v / t for v in _mp(x)]
        ys = [v / t for v in _mp(y)]
        lx = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in xs))
        ly = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in ys))
        ninf = mpmath.mpf("-inf")
        return mpmath.fsum(mpmath.exp(a - lx) * ((a - lx) - (b - ly))
                           for a, b in zip(xs, ys) if a != ninf)     # 0 log 0 = 0


def mp_entropy(x):
    with mpmath.workdps(DPS):
        lp = mp_log_softmax(x)
        return -mpmath.fsum(mpmath.exp(v) * v for v in lp if v != mpmath.mpf("-inf"))


def rel_err(got, exact):
    exact = float(exact)
    return abs(float(got) - exact) / abs(exact)


# --------------------------------------------------------------------------
# logsumexp / log_softmax exact cases
# --------------------------------------------------------------------------

# (row, dtype): the result must be the correctly rounded mpmath value (0 ulp)
EXACT_LSE = [
    ([5.0], np.float64),
    ([0.0, -800.0], np.float64),              # dominant term: exactly 0
    ([50.0, 0.0], np.float64),                # 50 + 1.9e-22 rounds to 50
    ([1e300, 0.0, -1e300], np.float64),
    ([37.5, NINF, NINF, 2.0], np.float64),
    ([-700.0, -1400.0], np.float64),
    ([20.0, -100.0], np.float32),
    ([3.0e38, 1.0], np.float32),
    ([100.0, NINF], np.float16),
    ([0.0, -100.0], np.float32),              # 3.7e-44: a subnormal float32 result
    ([0.0, -720.0], np.float64),              # 1.7e-313: a subnormal float64 result
    ([-1e-30, -1e-30], np.float64),           # log 2 - 1e-30
    ([2.0, 2.0, 2.0, 2.0], np.float64),       # 2 + log 4
]


@pytest.mark.parametrize("row,dtype", EXACT_LSE, ids=[f"{r}-{np.dtype(d).name}" for r, d in EXACT_LSE])
def test_logsumexp_exact_cases(row, dtype):
    x = as_dtype(np.array(row), dtype)
    got = kk.logsumexp(x)
    odt = np.float64 if dtype == np.float64 else np.float32
    assert got.dtype == odt
    exact = mp_lse(to64(x))
    assert got == odt(float(exact)), (got, exact)


def test_logsumexp_subnormal_float32():
    """logsumexp(float32([0, -100])) == float32(log1p(exp(-100))) ~ 3.7e-44."""
    got = kk.logsumexp(np.float32([0.0, -100.0]))
    assert got.dtype == np.float32 and got > 0
    assert got == np.float32(float(mp_lse([0.0, -100.0])))
    assert 3.5e-44 < got < 4.0e-44


@pytest.mark.parametrize("dtype,t", [(np.float32, -100.0), (np.float32, -95.0), (np.float32, -88.5),
                                     (np.float64, -720.0), (np.float64, -740.0), (np.float64, -708.5)])
def test_subnormal_log_softmax_and_softmax(dtype, t):
    """The max's log-prob and the small prob are subnormal: rounded, not flushed."""
    x = np.array([0.0, t], dtype)
    lsm = kk.log_softmax(x)
    sm = kk.softmax(x)
    exact_l = mp_log_softmax([0.0, t])
    exact_s = mp_softmax([0.0, t])
    assert lsm[0] < 0 and sm[1] > 0
    for got, ex in ((lsm[0], exact_l[0]), (lsm[1], exact_l[1]), (sm[0], exact_s[0]), (sm[1], exact_s[1])):
        assert ulp_distance(got, ex, dtype) <= 1.0, (got, ex)


def test_log_softmax_minus_40():
    lsm = kk.log_softmax(np.array([0.0, -40.0]))
    exact = mp_log_softmax([0.0, -40.0])      # [-4.2483542552915889e-18, -40 - 4.2e-18]
    assert ulp_distance(lsm[0], exact[0], np.float64) <= 1
    assert ulp_distance(lsm[1], exact[1], np.float64) <= 1
    assert lsm[0] != 0.0


def test_float16_many_zeros_does_not_overflow():
    """scipy gives inf for float16 (it sums in float16); klkit: log(70000)."""
    x = np.zeros(70000, np.float16)
    got = kk.logsumexp(x)
    assert got.dtype == np.float32
    assert ulp_distance(got, math.log(70000), np.float32) <= 1
    assert round(float(got), 3) == 11.156
    ones = np.ones((2, 70000), np.float16)
    np.testing.assert_allclose(kk.logsumexp(ones, axis=1), 1 + math.log(70000), rtol=2e-7)
    sm = kk.softmax(x)
    assert sm.dtype == np.float32
    np.testing.assert_allclose(sm, np.float32(1 / 70000), rtol=2e-7)


@pytest.mark.parametrize("v", [65000.0, 65504.0, -65504.0, 60000.0])
def test_float16_overflow_range(v):
    x = np.array([v, v], np.float16)
    got = kk.logsumexp(x)
    assert got.dtype == np.float32
    assert got == np.float32(float(mp_lse([float(x[0])] * 2)))      # v + log 2 in float32
    np.testing.assert_array_equal(kk.softmax(x), np.float32([0.5, 0.5]))
    np.testing.assert_array_equal(kk.log_softmax(x), np.float32([-math.log(2)] * 2))
    s = math.copysign(1.0, v)
    y = np.array([v, v - 32.0 * s, v - 64.0 * s], np.float16)     # float16 spacing here: 32
    exact = mp_log_softmax(to64(y))
    got = kk.log_softmax(y)
    for g, e in zip(got, exact):
        assert ulp_distance(g, e, np.float32) <= 2


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype,max_ulp", [(np.float64, 4), (np.float32, 8)])
def test_logsumexp_random_rows_vs_mpmath(dtype, max_ulp, seed):
    rng = np.random.default_rng(seed)
    n = [3, 17, 100, 1000, 4099, 64][seed]
    x = (rng.normal(0, 3, n) + rng.uniform(-50, 50)).astype(dtype)
    got = kk.logsumexp(x)
    assert ulp_distance(got, mp_lse(to64(x)), dtype) <= max_ulp
    lsm = kk.log_softmax(x[:64])
    exact = mp_log_softmax(to64(x[:64]))
    # x - lse: the error is a few ulp of the larger of |x|, |lse|
    scale = max(abs(float(v)) for v in x[:64]) + abs(float(mp_lse(to64(x[:64]))))
    abs_err = max(abs(float(g) - float(e)) for g, e in zip(lsm, exact))
    assert abs_err <= max_ulp * np.finfo(dtype).eps * scale, abs_err


# --------------------------------------------------------------------------
# exp accuracy sweep
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,lo,hi", [(np.float64, -745.0, 745.0), (np.float32, -104.0, 104.0)])
def test_softmax_log_softmax_sweep_vs_mpmath(dtype, lo, hi):
    """softmax([0, t]) and log_softmax([0, t]) over the whole exp range."""
    ts = np.unique(np.concatenate([np.linspace(lo, hi, 101), [-1e-3, 1e-3, -0.5, 0.5, -1.0, 1.0,
                                                              lo / 2 + 0.3, hi / 2 - 0.7]]))
    ts = ts.astype(dtype)
    x = np.stack([np.zeros_like(ts), ts], axis=1)                   # rows [0, t]
    sm = kk.softmax(x, axis=1)
    lsm = kk.log_softmax(x, axis=1)
    worst_s = worst_l = 0.0
    for i, t in enumerate(ts):
        es = mp_softmax([0.0, float(t)])
        el = mp_log_softmax([0.0, float(t)])
        for j in range(2):
            if float(es[j]) >= np.finfo(dtype).smallest_subnormal:
                worst_s = max(worst_s, ulp_distance(sm[i, j], es[j], dtype))
            worst_l = max(worst_l, ulp_distance(lsm[i, j], el[j], dtype))
    assert worst_s <= 4, worst_s
    assert worst_l <= 4, worst_l


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_three_element_rows_vs_mpmath(dtype):
    rng = np.random.default_rng(9)
    x = rng.normal(0, 6, (60, 3)).astype(dtype)
    sm = kk.softmax(x, axis=1)
    lsm = kk.log_softmax(x, axis=1)
    for i in range(x.shape[0]):
        row = to64(x[i])
        for j, (es, el) in enumerate(zip(mp_softmax(row), mp_log_softmax(row))):
            # the rounding of x_j - max (half an ulp of it) is amplified by exp:
            # allow 4 ulp plus |x_j - max| ulp
            assert ulp_distance(sm[i, j], es, dtype) <= 4 + abs(row[j] - row.max())
            assert abs(float(lsm[i, j]) - float(el)) <= 4 * np.finfo(dtype).eps * max(1.0, abs(float(el)))


# --------------------------------------------------------------------------
# huge rows
# --------------------------------------------------------------------------

def _fsum_lse(x64):
    m = float(np.max(x64))
    return m + math.log(math.fsum(np.exp(x64 - m).tolist()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_huge_row_2_pow_20(dtype):
    n = 2**20
    rng = np.random.default_rng(20)
    x = as_dtype(rng.normal(0, 3, n), dtype)
    x64 = to64(x)
    exact = _fsum_lse(x64)
    got = kk.logsumexp(x)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    assert rel_err(got, exact) < rtol
    lsm = kk.log_softmax(x)
    np.testing.assert_allclose(lsm.astype(np.float64), x64 - exact, rtol=rtol,
                               atol=4 * np.finfo(lsm.dtype).eps * (abs(exact) + 15))
    sm = kk.softmax(x)
    assert abs(math.fsum(sm.astype(np.float64).tolist()) - 1.0) < (1e-12 if dtype == np.float64 else 1e-5)
    # all zeros: log(2**20) = 20 log 2 (and no float16 overflow)
    z = np.zeros(n, dtype)
    assert ulp_distance(kk.logsumexp(z), 20 * math.log(2), lsm.dtype) <= 1


@pytest.mark.parametrize("pos", [0, 1, 7, 8, 15, 16, 31, 4095, 4096, 99_999])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_special_value_anywhere_in_a_long_row(pos, dtype):
    """+inf / NaN / -inf at every SIMD lane and block boundary of a long row."""
    n = 100_000
    base = as_dtype(np.random.default_rng(pos).normal(0, 3, n), dtype)
    for val, lse, sm_all_nan in ((INF, INF, True), (NAN, NAN, True)):
        x = base.copy()
        x[pos] = val
        np.testing.assert_equal(float(kk.logsumexp(x)), lse)
        assert np.all(np.isnan(kk.softmax(x))) == sm_all_nan
        lsm = kk.log_softmax(x)
        if val == INF:
            assert np.isnan(lsm[pos]) and np.all(np.delete(lsm, pos) == -np.inf)
        else:
            assert np.all(np.isnan(lsm))
    # all -inf except one element: that element has probability exactly 1
    x = np.full(n, -np.inf, dtype)
    x[pos] = 3.0
    assert kk.logsumexp(x) == 3.0
    sm = kk.softmax(x)
    assert sm[pos] == 1.0 and np.count_nonzero(sm) == 1
    lsm = kk.log_softmax(x)
    assert lsm[pos] == 0.0 and np.all(np.delete(lsm, pos) == -np.inf)
    # all -inf
    x[pos] = -np.inf
    assert kk.logsumexp(x) == -np.inf
    assert np.all(np.isnan(kk.softmax(x))) and np.all(np.isnan(kk.log_softmax(x)))


# --------------------------------------------------------------------------
# KL of nearly identical logits
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _near_case(n, eps, shift, dtype_name, seed=0):
    """(x, y, exact KL) with x ~ N(0, 3), y = x + shift + eps N(0, 1), rounded
    to the dtype first; the exact KL is mpmath's on the rounded values."""
    rng = np.random.default_rng(seed + n)
    x = rng.normal(0, 3, n)
    y = x + shift + eps * rng.normal(0, 1, n)
    dtype = np.dtype(dtype_name)
    x, y = x.astype(dtype), y.astype(dtype)
    rev = mp_kl(to64(y), to64(x)) if n <= 1000 else None    # (time: skip for long rows)
    return x, y, mp_kl(to64(x), to64(y)), rev


NEAR_CASES = [(1000, eps, shift, dt) for dt in ("float64", "float32")
              for eps in (1e-3, 1e-6, 1e-8) for shift in (0.0, 5.0)]
# long rows (mpmath takes ~4 s each here: two cases)
NEAR_CASES += [(32768, 1e-8, 5.0, "float64"), (32768, 1e-6, 5.0, "float32")]


@pytest.mark.parametrize("n,eps,shift,dtype", NEAR_CASES)
def test_kl_nearly_identical_logits(n, eps, shift, dtype):
    x, y, exact, exact_rev = _near_case(n, eps, shift, dtype)
    got = kk.kl_div(x, y)
    got_rev = kk.kl_div(y, x)
    assert got.dtype == np.dtype(dtype)
    if dtype == "float32" and eps < 1e-6:
        # mostly identical after rounding: only sign and rough size are asked
        assert got >= 0 and got_rev >= 0
        if exact > 0:
            assert rel_err(got, exact) < 1e-2
        else:
            assert got == 0.0
        return
    assert exact > 0
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert rel_err(got, exact) < tol, (float(got), float(exact))
    # in a batch
    both = kk.kl_div(np.stack([x, y]), np.stack([y, x]))
    assert rel_err(both[0], exact) < tol
    assert both[1] == got_rev
    if exact_rev is not None:
        assert rel_err(got_rev, exact_rev) < tol, (float(got_rev), float(exact_rev))


@pytest.mark.parametrize("eps", [1e-4, 1e-7])
def test_kl_nearly_identical_with_temperature(eps):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, 500)
    y = x + eps * rng.normal(0, 1, 500)
    for t in (0.5, 2.0):
        exact = mp_kl(x, y, t)
        assert rel_err(kk.kl_div(x, y, temperature=t), exact) < 1e-9


def _uneven_rows(n=5000, seed=11):
    """Rows whose parts differ in weight and in their log-ratio, for the
    kernel's per-chunk shifts (chunks of 2048 logits): every part of the
    row must stay exact however light, far or first it is."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, n)
    noise = 1e-6 * rng.normal(0, 1, n)
    rows = {}
    x = base.copy(); x[:2048] -= 30.0; y = x + noise; y[:2048] += 1.0
    rows["light first part, offset 1"] = (x, y)
    x = base.copy(); x[4000:] += 20.0; y = x + noise; y[4000:] += 0.5
    rows["heavy last part, offset 0.5"] = (x, y)
    x = 0.1 * base; x[7] = 1.0; y = x + 10 * noise; y[7] -= 1.0
    rows["P's mode an outlier of the log-ratio"] = (x, y)
    x = base.copy(); y = x + noise
    for c in range(0, n, 2048):
        y[c:c + 2048] += 3.0 * (c // 2048) + (0.01 if (c // 2048) % 2 else -0.01)
    rows["parts with alternating offsets"] = (x, y)
    x = base.copy(); x[:2048] = -np.inf; y = x + 1e-4 * rng.normal(0, 1, n)
    y[:2048] = rng.normal(0, 1, 2048)
    rows["P = 0 on the first part, Q's mass there"] = (x, y)
    return rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(_uneven_rows()))
def test_kl_uneven_rows_vs_mpmath(name, dtype):
    x, y = (v.astype(dtype) for v in _uneven_rows()[name])
    exact = mp_kl(to64(x), to64(y))
    got = kk.kl_div(x, y)
    # float32: the rounding of the float32 result (the float64 kernels had
    # 1e-12 and the float32 ones 4e-4 here while the row's first part fixed
    # the exactness of every difference)
    tol = 1e-14 if dtype == np.float64 else 1e-7 * SIMD_ORDER_SLACK
    assert rel_err(got, exact) < tol, (float(got), float(exact))
    # js_div shares the sums: against the reference
    np.testing.assert_allclose(kk.js_div(x, y), ref.js_div(x, y),
                               rtol=1e-12 if dtype == np.float64 else 1e-6)


@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-8])
def test_js_nearly_identical_logits(eps):
    """JS ~ KL / 4 for nearly identical distributions, with full relative accuracy."""
    x, y, _, _ = _near_case(1000, eps, 0.0, "float64")
    with mpmath.workdps(DPS):
        lp = mp_log_softmax(x)
        lq = mp_log_softmax(y)
        js = mpmath.mpf(0)
        for a, b in zip(lp, lq):
            p, q = mpmath.exp(a), mpmath.exp(b)
            m = (p + q) / 2
            js += (p * mpmath.log(p / m) + q * mpmath.log(q / m)) / 2
    assert rel_err(kk.js_div(x, y), js) < 1e-9


# --------------------------------------------------------------------------
# entropy of a near one-hot row
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6), (np.float16, 1e-6)])
@pytest.mark.parametrize("gap,n", [(30.0, 100), (20.0, 5000), (60.0, 7), (12.0, 2)])
def test_entropy_near_one_hot(dtype, tol, gap, n):
    tol *= SIMD_ORDER_SLACK
    x = np.full(n, -gap)
    x[0] = 0.0
    x = x.astype(dtype)
    exact = mp_entropy(to64(x))
    got = kk.entropy(x)
    assert got > 0
    assert rel_err(got, exact) < tol, (float(got), float(exact))
    # the same row elsewhere in a batch, and shifted
    batch = np.stack([x, np.roll(x, 3)]).astype(dtype)
    assert rel_err(kk.entropy(batch)[1], exact) < tol
    # cross-entropy with itself is the entropy; KL with itself is 0
    assert rel_err(kk.cross_entropy(x, x), exact) < tol
    assert kk.kl_div(x, x) == 0.0


# --------------------------------------------------------------------------
# large logit gaps and disjoint supports (exact values)
# --------------------------------------------------------------------------

GAP_CASES = [
    ([0.0, 0.0], [0.0, -100.0]),
    ([0.0, 0.0], [0.0, -600.0]),        # exp(-600) underflows float32 but the KL is 299.3
    ([0.0, 0.0], [0.0, -1e4]),          # q_1 underflows float64: log q_1 is still finite
    ([1000.0, 0.0], [0.0, 1000.0]),     # KL ~ 1000
    ([0.0, -np.inf], [0.0, 0.0]),       # P one-hot, Q uniform: log 2
    ([0.0, 1.0, -np.inf], [0.0, 1.0, 0.5]),       # Q has mass outside supp P
    ([1e20, 0.0], [3.0, 1.0]),          # P one-hot by a huge margin: -log q_0
    ([1e6, 1e6], [2e6, 0.0]),           # tied P maximum, large gap in Q: 1e6 - log 2
    ([1e16, 1e16], [2e16, 0.0]),        # the same at 1e16: 1e16 - log 2 (not 2e16)
]


# the reference is the oracle of every sweep: it is held to the same exact values
MODULES = [pytest.param(kk, id="klkit"), pytest.param(ref, id="reference")]


@pytest.mark.parametrize("mod", MODULES)
@pytest.mark.parametrize("t", [1.0, 0.7, 2.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x,y", GAP_CASES)
def test_kl_large_gaps_and_support_mismatch_vs_mpmath(x, y, dtype, t, mod):
    x, y = np.array(x, dtype), np.array(y, dtype)
    exact = mp_kl(to64(x), to64(y), t)
    got = mod.kl_div(x, y, temperature=t)
    assert got.dtype == dtype
    assert rel_err(got, exact) < (1e-12 if dtype == np.float64 else 1e-6), (float(got), float(exact))
    # and in probs form where it can be represented
    with np.errstate(over="ignore", under="ignore"):
        px, py = np.exp(to64(x) - np.max(to64(x))), np.exp(to64(y) - np.max(to64(y)))
    if t == 1.0 and np.all((px > 0) == np.isfinite(to64(x))) and np.all((py > 0) == np.isfinite(to64(y))):
        assert rel_err(mod.kl_div(px, py, kind="probs"), exact) < 1e-12


def mp_js(x, y, beta=0.5):
    with mpmath.workdps(DPS):
        lp, lq = mp_log_softmax(x), mp_log_softmax(y)
        b = mpmath.mpf(beta)
        total = mpmath.mpf(0)
        for a, c in zip(lp, lq):
            p, q = mpmath.exp(a), mpmath.exp(c)
            m = b * p + (1 - b) * q
            if p > 0:
                total += b * p * mpmath.log(p / m)
            if q > 0:
                total += (1 - b) * q * mpmath.log(q / m)
        return total


JS_CASES = [
    ([0.0, -np.inf], [-np.inf, 0.0]),             # disjoint: log 2 (H(beta) in general)
    ([0.0, 1.0, -np.inf], [0.0, -np.inf, 1.0]),
    ([0.0, 0.0, 0.0], [-np.inf, 0.0, 0.0]),
    ([0.0, 0.0], [0.0, -1e4]),                    # q_1 underflows
    ([1000.0, 0.0], [0.0, 1000.0]),
    ([0.3, -1.2, 2.0], [0.1, 0.4, -3.0]),         # plain case
    ([1e20, 0.0], [3.0, 1.0]),                    # P one-hot by a huge margin
    ([800.0, 0.0], [3.0, 1.0]),                   # p_1 = exp(-800) underflows
    ([0.0, -1128.0], [-1808.0, 0.0]),             # nearly disjoint, asymmetric gaps
]


@pytest.mark.parametrize("mod", MODULES)
@pytest.mark.parametrize("beta", [0.5, 0.2, 0.9])
@pytest.mark.parametrize("x,y", JS_CASES)
def test_js_support_mismatch_vs_mpmath(x, y, beta, mod):
    exact = mp_js(x, y, beta)
    got = mod.js_div(np.array(x), np.array(y), beta=beta)
    assert rel_err(got, exact) < 1e-12, (float(got), float(exact))
    got_rev = mod.js_div(np.array(y), np.array(x), beta=1 - beta)
    assert rel_err(got_rev, exact) < 1e-12, (float(got_rev), float(exact))


@pytest.mark.parametrize("t", [0.7, 2.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("gap", [30.0, 1e3, 1e6])
def test_js_with_temperature_and_large_gaps_vs_mpmath(gap, dtype, t):
    """JS of [gap, 0] vs [0, gap] (and a random row of that scale) at temperature t."""
    rng = np.random.default_rng(int(gap))
    rows = [(np.array([gap, 0.0]), np.array([0.0, gap])),
            (rng.normal(0, gap / 10, 40), rng.normal(0, gap / 10, 40))]
    for x, y in rows:
        x, y = x.astype(dtype), y.astype(dtype)
        exact = mp_js([float(v) / t for v in x], [float(v) / t for v in y])
        got = kk.js_div(x, y, temperature=t)
        assert rel_err(got, exact) < (1e-12 if dtype == np.float64 else 2e-6), (float(got), float(exact))


# --------------------------------------------------------------------------
# softmax_cross_entropy with class weights and label smoothing (torch's
# formula, aten LossNLL.cpp), exact without torch
# --------------------------------------------------------------------------

def mp_cross_entropy(rows, targets, weight, eps, ignore_index, reduction):
    """loss_i = -(1 - eps) w[t] log p[t] - eps / C sum_c w_c log p_c (a class
    of weight 0 adds nothing), 0 where ignored; "mean" divides the sum by
    sum_i w[t_i] over the kept rows."""
    with mpmath.workdps(DPS):
        losses, wsum = [], mpmath.mpf(0)
        for row, t in zip(rows, targets):
            if t == ignore_index:
                losses.append(mpmath.mpf(0))
                continue
            lp = mp_log_softmax(row)
            c = len(row)
            w = [mpmath.mpf(float(v)) for v in weight]
            smooth = mpmath.fsum(w[k] * lp[k] for k in range(c) if w[k] != 0)
            losses.append(-(1 - mpmath.mpf(eps)) * w[t] * lp[t] - mpmath.mpf(eps) / c * smooth)
            wsum += w[t]
        if reduction == "none":
            return losses
        total = mpmath.fsum(losses)
        return total / wsum if reduction == "mean" else total


CE_CASES = [   # (logits rows, targets, class weights, label smoothing)
    ([[0.3, -1.2, 2.0, 0.5, -0.7], [4.0, 4.0, -3.0, 0.0, 1e-3]], [2, 0],
     [1.0, 0.5, 2.0, 0.0, 3.0], 0.1),
    ([[0.3, -1.2, 2.0, 0.5, -0.7], [4.0, 4.0, -3.0, 0.0, 1e-3]], [3, -100],
     [0.25, 0.5, 1.0, 2.0, 4.0], 0.9),
    ([[30.0, 0.0, -30.0, 1.0], [0.0, 0.0, 0.0, 0.0], [-5.0, 80.0, 79.5, 2.0]], [1, 3, 2],
     [1.0, 1e-3, 1e3, 7.0], 1.0),
    ([[2.0, -np.inf, 1.0, 0.5]], [0], [1.0, 0.0, 1.0, 2.0], 0.2),   # -inf where w = 0
]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows,targets,weight,eps", CE_CASES)
def test_weighted_label_smoothed_cross_entropy_vs_mpmath(rows, targets, weight, eps, dtype,
                                                         reduction):
    x = np.array(rows, dtype)
    t, w = np.array(targets), np.array(weight)
    exact = mp_cross_entropy(x, t, w, eps, -100, reduction)
    tol = 1e-14 if dtype == np.float64 else 4e-7
    for mod in (kk, ref):
        got = mod.softmax_cross_entropy(x, t, weight=w, label_smoothing=eps, reduction=reduction)
        for g, e in zip(np.atleast_1d(got), exact if reduction == "none" else [exact]):
            assert abs(float(g) - float(e)) <= tol * abs(e) + 1e-300, (mod.__name__, g, e)


def test_cross_entropy_on_a_wide_random_row_vs_mpmath():
    rng = np.random.default_rng(5)
    x = rng.normal(0, 4, (3, 2000)).astype(np.float32)
    t = np.array([7, 1999, 0])
    w = rng.uniform(0, 3, 2000)
    for eps in (0.0, 0.05):
        exact = mp_cross_entropy(x, t, w, eps, -100, "mean")
        got = kk.softmax_cross_entropy(x, t, weight=w, label_smoothing=eps)
        assert rel_err(got, exact) < 4e-7, (float(got), float(exact))


@pytest.mark.parametrize("beta", [0.5, 0.2, 0.9, 1e-3])
@pytest.mark.parametrize("t", [1.0, 0.7])
@pytest.mark.parametrize("eps", [0.5, 1e-2, 1e-5])
def test_js_float32_rows_vs_mpmath(eps, t, beta):
    """float32 rows long enough for the float kernel (a polynomial in
    r = log(q/p) where |r| <= 3, kk_js_term elsewhere): nearby rows, a few
    elements far apart (|r| > 3: those blocks in double), and a masked
    element; relative accuracy down to tiny JS, the row's value the same
    alone, in a batch and reversed with 1 - beta."""
    rng = np.random.default_rng(int(eps * 1e5) + 7)
    n = 1500
    x = (rng.normal(0, 3, n)).astype(np.float32)
    y = (x + eps * rng.normal(0, 1, n)).astype(np.float32)
    y[7] += 9.0                     # |r| > 3 in one block
    x[1200] = -np.inf               # P = 0 there
    exact = mp_js([float(v) / t for v in x], [float(v) / t for v in y], beta)
    got = kk.js_div(x, y, beta=beta, temperature=t)
    assert rel_err(got, exact) < 2e-6, (float(got), float(exact))
    rev = kk.js_div(y, x, beta=1 - beta, temperature=t)
    assert rel_err(rev, exact) < 2e-6, (float(rev), float(exact))
    batch = kk.js_div(np.stack([x, y, x]), np.stack([y, x, y]), beta=1 - beta, temperature=t)
    assert batch[1] == rev
