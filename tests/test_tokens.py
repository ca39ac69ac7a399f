"""token_logprobs and softmax_cross_entropy.

Every result is compared with ``klkit.reference`` evaluated in float64 on
the same rounded logits, at the bound the docstrings state:
|error| <= 5e-7 (1 + |value|) for float32 / bfloat16 / float16 logits and
1e-14 (1 + |value|) for float64, with NaN and +-inf at the same positions.
The reference's loss formula is itself checked against torch where torch is
installed (it is not a test dependency).
"""

import numpy as np
import pytest

import klkit as kk
from klkit import reference as ref

from conftest import FILLS, FLOAT_DTYPES, _seed, as_dtype, nasty_array, out_dtype, to64

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: documented bound: |error| <= TOL (1 + |exact|), per output dtype
TOL = {np.dtype(np.float32): 5e-7, np.dtype(np.float64): 1e-14}

#: (leading shape, V): one-class rows, odd shapes, GPT-2 and Llama-3 sized vocabularies
CASES = [((), 7), ((5,), 1), ((3, 41), 127), ((2, 3, 5), 7), ((4,), 50257), ((2,), 131072)]


def targets_for(lead, n_classes, seed=0, ignore_index=-100, ignored=0.2):
    rng = np.random.default_rng(_seed(lead, n_classes, seed))
    t = rng.integers(0, max(n_classes, 1), lead).astype(np.int64)
    t[rng.random(lead) < ignored] = ignore_index
    return t


def check(actual, expected, dtype, what=""):
    """Same special values, finite values within the documented bound."""
    odt = out_dtype(dtype)
    actual = np.asarray(actual)
    assert actual.dtype == odt, (actual.dtype, odt, what)
    a = actual.astype(np.float64)
    with np.errstate(over="ignore"):
        e = np.asarray(expected).astype(odt).astype(np.float64)
    assert a.shape == e.shape, (a.shape, e.shape, what)
    for pred in (np.isnan, np.isposinf, np.isneginf):
        assert np.array_equal(pred(a), pred(e)), (pred.__name__, a, e, what)
    fin = np.isfinite(e)
    err = np.abs(a[fin] - e[fin])
    bound = TOL[odt] * (1 + np.abs(e[fin]))
    assert np.all(err <= bound), (what, float(np.max(err / bound)) if err.size else 0)


def reference_all(x, t, **kw):
    """The float64 reference on the same rounded logits."""
    return ref.token_logprobs(to64(x), t, return_entropy=True, return_lse=True, **kw)


# --------------------------------------------------------------------------
# token_logprobs against the reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("lead,n_classes", CASES)
@pytest.mark.parametrize("fill", FILLS)
def test_token_logprobs_vs_reference(dtype, lead, n_classes, fill):
    if n_classes > 1000 and fill not in ("normal", "special", "big"):
        pytest.skip("large vocabularies: three fills are enough")
    x = nasty_array(lead + (n_classes,), dtype, fill)
    t = targets_for(lead, n_classes)
    got = kk.token_logprobs(x, t, return_entropy=True, return_lse=True)
    exp = reference_all(x, t)
    for name in ("logprobs", "entropy", "lse"):
        check(getattr(got, name), getattr(exp, name), dtype, f"{name} {fill}")
    # the plain call returns the log-probs alone, the same bits
    alone = kk.token_logprobs(x, t)
    assert np.asarray(alone).tobytes() == np.asarray(got.logprobs).tobytes()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("temperature", [0.3, 0.7, 2.0, 1e3])
def test_temperature(dtype, temperature):
    x = nasty_array((6, 3001), dtype, "normal")
    t = targets_for((6,), 3001)
    got = kk.token_logprobs(x, t, temperature=temperature, return_entropy=True, return_lse=True)
    exp = reference_all(x, t, temperature=temperature)
    for name in ("logprobs", "entropy", "lse"):
        check(getattr(got, name), getattr(exp, name), dtype, name)


def test_named_tuple_fields():
    x = nasty_array((3, 10), np.float32)
    t = np.array([1, -100, 9])
    r = kk.token_logprobs(x, t, return_entropy=True)
    assert isinstance(r, kk.TokenLogprobs) and r.lse is None and r.entropy.shape == (3,)
    r = kk.token_logprobs(x, t, return_lse=True)
    assert r.entropy is None and r.lse.shape == (3,)
    assert r.logprobs[1] == 0 and r.lse[1] == 0


@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 3])
def test_ignore_index(ignore_index):
    x = nasty_array((40, 11), np.float32)
    t = targets_for((40,), 11, ignore_index=ignore_index, ignored=0.3)
    got = kk.token_logprobs(x, t, ignore_index=ignore_index, return_entropy=True, return_lse=True)
    keep = t != ignore_index
    for field in got:
        assert np.all(field[~keep] == 0.0)
    exp = reference_all(x, t, ignore_index=ignore_index)
    for name in ("logprobs", "entropy", "lse"):
        check(getattr(got, name), getattr(exp, name), np.float32, name)


def test_equals_log_softmax_gathered():
    x = nasty_array((7, 13, 257), np.float32, "special")
    t = targets_for((7, 13), 257, ignored=0.0)
    want = np.take_along_axis(kk.log_softmax(x, axis=-1), t[..., None], -1)[..., 0]
    check(kk.token_logprobs(x, t), want, np.float32)


def test_target_dtypes_and_lists():
    x = nasty_array((4, 9), np.float64)
    t = np.array([0, 8, 3, -100])
    want = kk.token_logprobs(x, t)
    for dt in (np.int8, np.int16, np.int32, np.uint16):
        tt = t.astype(dt) if dt != np.uint16 else np.array([0, 8, 3, 3], dt)
        got = kk.token_logprobs(x, tt)
        assert np.array_equal(got[:3], want[:3])
    assert np.array_equal(kk.token_logprobs(x.tolist(), t.tolist()), want)


# --------------------------------------------------------------------------
# hard rows: mpmath values (snippet in each test) and special values
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dominant_target_is_not_rounded_to_zero(dtype):
    # mpmath: -log(1 + exp(-40)) = -4.248354255291589e-18
    x = np.array([[0.0, -40.0]], dtype)
    lp = kk.token_logprobs(x, np.array([0]))
    assert lp[0] != 0 and abs(lp[0] / -4.248354255291589e-18 - 1) < 1e-6


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_huge_logit(dtype):
    # one logit h = 60 above 999 zeros (60 is exact in every dtype):
    #   log p_1 = -h - log1p(999 e^-h)  (= -60.0 in any float)
    #   log p_0 = -log1p(999 e^-h)      = -8.7478e-24, not 0
    #   H = 999 e^-h h / Z + log1p(999 e^-h) = 5.3361e-22
    import mpmath as mp
    mp.mp.dps = 50
    e = 999 * mp.e ** -60
    lp0, h = -mp.log1p(e), e * 60 / (1 + e) + mp.log1p(e)
    x = np.zeros((2, 1000))
    x[:, 0] = 60.0
    x = as_dtype(x, dtype)
    got = kk.token_logprobs(x, np.array([0, 1]), return_entropy=True)
    assert got.logprobs[1] == -60.0
    rtol = 1e-13 if np.dtype(dtype) == np.float64 else 1e-6
    assert abs(float(got.logprobs[0]) / float(lp0) - 1) < rtol
    assert abs(float(got.entropy[0]) / float(h) - 1) < rtol


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n_classes", [1, 7, 50257])
def test_all_equal(dtype, n_classes):
    x = as_dtype(np.full((3, n_classes), 2.5), dtype)
    got = kk.token_logprobs(x, np.array([0, n_classes - 1, -100]), return_entropy=True,
                            return_lse=True)
    logv = np.log(n_classes)
    check(got.logprobs, [-logv, -logv, 0.0], dtype)
    check(got.entropy, [logv, logv, 0.0], dtype)
    check(got.lse, [2.5 + logv, 2.5 + logv, 0.0], dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_special_rows(dtype):
    x = np.zeros((5, 6))
    x[0, 2] = -np.inf             # -inf entry: its log-prob -inf, the others finite
    x[1, 3] = np.nan              # NaN entry: the whole row NaN
    x[2, :] = -np.inf             # all -inf: undefined
    x[3, 4] = np.inf              # +inf: scipy's log_softmax rules
    x = as_dtype(x, dtype)
    t = np.array([2, 0, 0, 4, 1])
    got = kk.token_logprobs(x, t, return_entropy=True, return_lse=True)
    lp, ent, lse = (np.asarray(v, np.float64) for v in got)
    assert lp[0] == -np.inf and np.isclose(ent[0], np.log(5)) and np.isclose(lse[0], np.log(5))
    assert np.isnan(lp[1]) and np.isnan(ent[1]) and np.isnan(lse[1])
    assert np.isnan(lp[2]) and np.isnan(ent[2]) and lse[2] == -np.inf
    assert np.isnan(lp[3]) and np.isnan(ent[3]) and lse[3] == np.inf
    assert lp[4] == np.float32(-np.log(6)) or np.isclose(lp[4], -np.log(6))
    # the NaN row leaves its neighbours as they are alone
    for r in (0, 2, 4):
        alone = kk.token_logprobs(x[r:r + 1], t[r:r + 1], return_entropy=True, return_lse=True)
        for a, b in zip(alone, got):
            assert np.asarray(a)[0].tobytes() == np.asarray(b)[r].tobytes()
    # +inf row: a finite target gives -inf
    assert kk.token_logprobs(x[3:4], np.array([0]))[0] == -np.inf


def test_near_one_hot_entropy():
    # mpmath: x = [0, -30, -30], p_i = e^x_i / Z:
    #   H = -sum p log p = 1.8716e-12 (mp.dps = 50: 1.87160822265...e-12)
    import mpmath as mp
    mp.mp.dps = 50
    xs = [mp.mpf(0), mp.mpf(-30), mp.mpf(-30)]
    z = mp.fsum(mp.e ** v for v in xs)
    h = -mp.fsum((mp.e ** v / z) * (v - mp.log(z)) for v in xs)
    for dtype in (np.float32, np.float64):
        got = kk.token_logprobs(np.array([[0.0, -30.0, -30.0]], dtype), np.array([0]),
                                return_entropy=True).entropy[0]
        assert abs(float(got) / float(h) - 1) < (1e-6 if dtype == np.float32 else 1e-14)


def test_float16_overflow_range():
    # 70000 zeros in float16: lse = log(70000) = 11.156, not inf (the sum
    # runs in float32 blocks / float64)
    x = np.zeros((1, 70000), np.float16)
    got = kk.token_logprobs(x, np.array([5]), return_lse=True)
    assert abs(got.lse[0] - np.log(70000)) < 1e-5
    assert abs(got.logprobs[0] + np.log(70000)) < 1e-5


# --------------------------------------------------------------------------
# softmax_cross_entropy
# --------------------------------------------------------------------------

GRID = [(w, ig, ls, red) for w in (False, True) for ig in (-100, 2) for ls in (0.0, 0.1, 1.0)
        for red in ("mean", "sum", "none")]


def ce_inputs(dtype, lead=(5, 7), n_classes=19, ignore_index=-100):
    x = nasty_array(lead + (n_classes,), dtype, "normal")
    t = targets_for(lead, n_classes, ignore_index=ignore_index, ignored=0.25)
    w = np.random.default_rng(3).uniform(0.1, 2.0, n_classes)
    return x, t, w


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("use_w,ignore_index,smoothing,reduction", GRID)
def test_cross_entropy_vs_reference(dtype, use_w, ignore_index, smoothing, reduction):
    x, t, w = ce_inputs(dtype, ignore_index=ignore_index)
    kw = dict(weight=w if use_w else None, ignore_index=ignore_index,
              label_smoothing=smoothing, reduction=reduction)
    got = kk.softmax_cross_entropy(x, t, **kw)
    exp = ref.softmax_cross_entropy(to64(x), t, **kw)
    check(got, exp, dtype)
    if reduction != "none":
        assert np.ndim(got) == 0


@pytest.mark.parametrize("use_w,ignore_index,smoothing,reduction", GRID)
def test_cross_entropy_matches_torch(use_w, ignore_index, smoothing, reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t, w = ce_inputs(np.float64, ignore_index=ignore_index)
    kw = dict(ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction)
    want = F.cross_entropy(torch.from_numpy(x.reshape(-1, x.shape[-1])),
                           torch.from_numpy(t.reshape(-1)),
                           weight=torch.from_numpy(w) if use_w else None, **kw).numpy()
    got = kk.softmax_cross_entropy(x, t, weight=w if use_w else None, **kw)
    np.testing.assert_allclose(np.asarray(got).reshape(-1), want.reshape(-1), rtol=1e-12, atol=1e-12)
    # torch in, torch out
    tgot = kk.softmax_cross_entropy(torch.from_numpy(x), torch.from_numpy(t),
                                    weight=torch.from_numpy(w) if use_w else None, **kw)
    assert isinstance(tgot, torch.Tensor)
    np.testing.assert_allclose(tgot.numpy().reshape(-1), want.reshape(-1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_w", [False, True])
def test_cross_entropy_all_ignored(use_w):
    x, t, w = ce_inputs(np.float32)
    t[:] = -100
    kw = dict(weight=w if use_w else None)
    assert np.isnan(kk.softmax_cross_entropy(x, t, **kw))
    assert kk.softmax_cross_entropy(x, t, reduction="sum", **kw) == 0
    assert np.all(kk.softmax_cross_entropy(x, t, reduction="none", **kw) == 0)
    torch = pytest.importorskip("torch")
    want = torch.nn.functional.cross_entropy(
        torch.from_numpy(x.reshape(-1, 19)), torch.from_numpy(t.reshape(-1)),
        weight=torch.from_numpy(w).float() if use_w else None)
    assert torch.isnan(want)


def test_cross_entropy_is_mean_of_token_logprobs():
    x, t, _ = ce_inputs(np.float64)
    lp = kk.token_logprobs(x, t)
    keep = t != -100
    np.testing.assert_allclose(kk.softmax_cross_entropy(x, t), -lp[keep].mean(), rtol=1e-14)


def test_cross_entropy_special_logits():
    x = np.zeros((2, 4), np.float32)
    x[0, 1] = -np.inf
    t = np.array([0, 2])
    # a -inf logit: only the smoothing term sees it, +inf as in torch
    assert np.isfinite(kk.softmax_cross_entropy(x, t))
    assert kk.softmax_cross_entropy(x, t, label_smoothing=0.1) == np.inf
    # ... unless its class has weight 0 (documented deviation from torch's nan)
    w = np.array([1.0, 0.0, 1.0, 1.0])
    assert np.isfinite(kk.softmax_cross_entropy(x, t, weight=w, label_smoothing=0.1))
    x[1, 3] = np.nan
    got = kk.softmax_cross_entropy(x, t, reduction="none")
    assert np.isfinite(got[0]) and np.isnan(got[1])
    # a whole kernel chunk (2048 classes) of -inf logits: still +inf, not NaN
    wide = np.zeros((2, 5000), np.float32)
    wide[:, :3000] = -np.inf
    tw = np.array([4000, 4999])
    assert np.all(kk.softmax_cross_entropy(wide, tw, label_smoothing=0.1, reduction="none") == np.inf)
    w = np.ones(5000)
    w[:3000] = 0
    check(kk.softmax_cross_entropy(wide, tw, weight=w, label_smoothing=0.1),
          ref.softmax_cross_entropy(wide.astype(np.float64), tw, weight=w, label_smoothing=0.1),
          np.float32)


def test_torch_bf16_tensor():
    torch = pytest.importorskip("torch")
    pytest.importorskip("ml_dtypes")
    xt = torch.randn(3, 5, 1001, generator=torch.Generator().manual_seed(0)).bfloat16()
    tt = torch.randint(0, 1001, (3, 5), generator=torch.Generator().manual_seed(1))
    got = kk.token_logprobs(xt, tt)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.shape == (3, 5)
    want = -torch.nn.functional.cross_entropy(xt.double().reshape(-1, 1001), tt.reshape(-1),
                                              reduction="none").reshape(3, 5)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-6, atol=2e-6)
    assert xt.dtype == torch.bfloat16        # input untouched


# --------------------------------------------------------------------------
# edge cases (the layout, thread and batch contracts are in test_contracts.py)
# --------------------------------------------------------------------------

def test_empty_inputs():
    x = np.zeros((0, 7), np.float32)
    t = np.zeros((0,), np.int64)
    assert kk.token_logprobs(x, t).shape == (0,)
    assert np.isnan(kk.softmax_cross_entropy(x, t))
    assert kk.softmax_cross_entropy(x, t, reduction="sum") == 0
    # zero classes: only ignored targets are valid
    z = np.zeros((3, 0), np.float64)
    assert np.all(kk.token_logprobs(z, np.full(3, -100)) == 0)
    with pytest.raises(ValueError, match="targets"):
        kk.token_logprobs(z, np.array([0, -100, -100]))
    # 1-D logits, 0-d target: a scalar
    r = kk.token_logprobs(np.array([0.0, 1.0]), 1)
    assert np.ndim(r) == 0 and np.isclose(r, -np.log1p(np.exp(-1.0)))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, 5])), ValueError, r"targets.*position \(1,\)"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, -3])), ValueError, "targets"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0.0, 1.0])), TypeError, "targets"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, 1, 2])), ValueError, "targets"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([[0, 1]])), ValueError, "targets"),
    (lambda: kk.token_logprobs(np.float32(1.0), 0), ValueError, "logits"),
    (lambda: kk.token_logprobs(np.zeros((2, 5), complex), np.array([0, 1])), TypeError, "logits"),
    (lambda: kk.token_logprobs(np.array([["a"]]), np.array([0])), TypeError, "logits"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, 1]), temperature=0), ValueError, "temperature"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, 1]), temperature="x"), ValueError, "temperature"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, 1]), ignore_index=1.5), TypeError, "ignore_index"),
    (lambda: kk.token_logprobs(np.zeros((2, 5)), np.array([0, 1]), ignore_index=2**70), ValueError, "ignore_index"),
    (lambda: kk.softmax_cross_entropy(np.zeros((2, 5)), np.array([0, 1]), reduction="avg"), ValueError, "reduction"),
    (lambda: kk.softmax_cross_entropy(np.zeros((2, 5)), np.array([0, 1]), label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: kk.softmax_cross_entropy(np.zeros((2, 5)), np.array([0, 1]), weight=np.ones(4)), ValueError, "weight"),
    (lambda: kk.softmax_cross_entropy(np.zeros((2, 5)), np.array([0, 9])), ValueError, "targets"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_kernel_entry_validates():
    # the Cython layer rechecks what reaches C: a bad target is an error, not a read
    from klkit import _cpu
    x = np.zeros((2, 5), np.float32)
    out = np.empty(2)
    with pytest.raises(ValueError, match="targets"):
        _cpu.token_rows("float32", x, 1, np.array([0, 7]), -100, 1.0, None, out, None, None, None)
    with pytest.raises(ValueError, match="targets"):
        _cpu.token_rows("float32", x, 1, np.array([0, 1], np.int32), -100, 1.0, None, out, None,
                        None, None)
    with pytest.raises(ValueError, match="weight"):
        _cpu.token_rows("float32", x, 1, np.array([0, 1]), -100, 1.0, np.ones(5), out, None, None,
                        np.empty(2))
    with pytest.raises(ValueError, match="prec"):
        _cpu.token_rows("float32", x.astype(np.float64), 1, np.array([0, 1]), -100, 1.0, None,
                        out, None, None, None)


@pytest.mark.parametrize("dtype,temperature", [(np.float32, 1e30), (np.float32, 1e37),
                                               (np.float32, 3e38), (np.float64, 1e300)])
def test_extreme_temperature_with_neginf(dtype, temperature):
    # 1/T so small that the clamp of x - m used by the entropy loops is not
    # finite: the -inf logit must still have probability 0 (no NaN)
    x = nasty_array((3, 5000), dtype, "neginf")
    x[:, 0] = 1.0
    t = np.array([0, 1, -100])
    got = kk.token_logprobs(x, t, temperature=temperature, return_entropy=True,
                            return_lse=True)
    exp = reference_all(x, t, temperature=temperature)
    for name in ("logprobs", "entropy", "lse"):
        check(getattr(got, name), getattr(exp, name), dtype, name)
    check(kk.entropy(x, temperature=temperature), ref.entropy(to64(x), temperature=temperature),
          dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_logits_further_apart_than_the_dtype_range(dtype):
    # max - x overflows the working precision: the entropy terms must not
    # become 0 * inf = NaN (mpmath: H = 0 up to e^-6e38)
    big = 1e308 if np.dtype(dtype) == np.float64 else (6e4 if np.dtype(dtype) == np.float16 else 3e38)
    x = as_dtype([big, -big], dtype)
    got = kk.token_logprobs(x, np.array(0), return_entropy=True, return_lse=True)
    assert got.logprobs == 0 and got.entropy == 0 and float(got.lse) == float(to64(x)[0])


@pytest.mark.parametrize("dtype,x,temperature", [
    (np.float32, [3e38, -3e38], 1e38),       # (x - m) overflows float32, (x - m)/T does not
    (np.float64, [1.7e308, -1.7e308], 1e308),
    (np.float32, [1.0, 2.0, 0.5], 2.9e-39),   # 1/T overflows float32
    (np.float32, [0.0, -np.inf, 1.0], 1e46),  # 1/T underflows float32
    (np.float64, [0.0, -np.inf, 1.0], 1e307),
])
def test_temperatures_beyond_the_working_range(dtype, x, temperature):
    x = np.array(x, dtype)
    t = np.array([1, 0])
    xx = np.stack([x, x])
    got = kk.token_logprobs(xx, t, temperature=temperature, return_entropy=True, return_lse=True)
    exp = reference_all(xx, t, temperature=temperature)
    for name in ("logprobs", "entropy", "lse"):
        check(getattr(got, name), getattr(exp, name), dtype, name)


def test_cross_entropy_without_classes_and_smoothing():
    # C = 0 (every target ignored): nan for every reduction, as torch
    x = np.zeros((2, 0), np.float32)
    t = np.full(2, -100)
    for red in ("mean", "sum"):
        assert np.isnan(kk.softmax_cross_entropy(x, t, label_smoothing=0.1, reduction=red))
    assert np.all(np.isnan(kk.softmax_cross_entropy(x, t, label_smoothing=0.1, reduction="none")))
    assert ref.token_logprobs(x, t).shape == (2,)
    for m in (kk, ref):        # without smoothing every loss is 0
        assert m.softmax_cross_entropy(x, t, reduction="none").tolist() == [0.0, 0.0]
        assert np.all(np.isnan(m.softmax_cross_entropy(x, t, label_smoothing=0.1,
                                                       reduction="none")))


def test_huge_scaled_logits_round_to_inf_without_a_warning():
    """logits / T beyond float32 (T = 1e-40): -inf log-probs, float32's
    rounding of the float64 result, and no NumPy overflow warning"""
    import warnings

    x = np.array([[0.0, 1.0, 2.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lp = kk.token_logprobs(x, np.array([0]), temperature=1e-40)
    assert lp.dtype == np.float32 and lp[0] == -np.inf
