"""Segmented reductions and KL estimators: segment_sum,
segment_mean, segment_max, segment_logsumexp, kl_estimate, seq_kl, agg_loss.

Results are checked against per-sequence loops written here from the
formulas, against ``klkit.reference`` (float64 NumPy) and, for k3, against
mpmath; packed, padded and Arrow layouts must give the same bits, a sequence
the same bits alone and in any batch and for any thread count.  Then the
contracts of every public function (input untouched, read-only, memory-mapped
and strided input, empty input, torch in / torch out, clear errors).
"""
import math

import numpy as np
import pytest

import klkit as kk
from klkit import _cpu, reference as ref

from conftest import BFLOAT16, FLOAT_DTYPES, as_dtype, assert_close, nasty_array, out_dtype, to64

pa = pytest.importorskip("pyarrow")

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

REDUCTIONS = ["segment_sum", "segment_mean", "segment_max", "segment_logsumexp"]
EMPTY_DEFAULT = {"segment_sum": 0.0, "segment_mean": math.nan, "segment_max": -math.inf,
                 "segment_logsumexp": -math.inf}
ESTIMATORS = ["k1", "k2", "k3", "abs"]
AGG_MODES = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
ISAS = [isa for isa in ("base", "avx2", "avx512") if _cpu.set_isa(isa)]
_cpu.set_isa(None)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes(), f"results differ bitwise:\n{a}\n{b}"


def offsets_from(lens, start=0):
    return np.concatenate([[start], start + np.cumsum(lens)]).astype(np.int64)


def random_lengths(n, seed, hi=300, empty_frac=0.15):
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, hi, n)
    lens[rng.random(n) < empty_frac] = 0
    return lens


# --------------------------------------------------------------------------
# per-sequence loops written from the formulas (independent of reference.py)
# --------------------------------------------------------------------------

def loop_reduce(name, x64, offs, empty):
    out = []
    for a, b in zip(offs[:-1], offs[1:]):
        s = x64[a:b]
        if s.size == 0:
            out.append(empty)
        elif name == "segment_sum":
            out.append(math.fsum(s) if np.all(np.isfinite(s)) else np.sum(s))
        elif name == "segment_mean":
            out.append((math.fsum(s) if np.all(np.isfinite(s)) else np.sum(s)) / s.size)
        elif name == "segment_max":
            out.append(np.nan if np.isnan(s).any() else s.max())
        else:
            m = s.max()
            if np.isnan(s).any():
                out.append(np.nan)
            elif not np.isfinite(m):
                out.append(m)
            else:
                out.append(m + math.log(math.fsum(np.exp(s - m))))
    return np.array(out, dtype=np.float64)


def k3_exact(ref_logp, logp=0.0):
    """exp(r) - 1 - r for the exact r = ref_logp - logp, with mpmath (enough
    digits to survive the cancellation at tiny |r|)."""
    import mpmath

    with mpmath.workdps(40 + 2 * max(0, int(-math.log10(abs(float(ref_logp) - float(logp))
                                                        or 1.0)))):
        r = mpmath.mpf(float(ref_logp)) - mpmath.mpf(float(logp))
        return float(mpmath.exp(r) - 1 - r)


# --------------------------------------------------------------------------
# values against the loops and the reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("fill", ["normal", "special", "neginf", "ties"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_packed_against_loops_and_reference(name, dtype, fill):
    lens = random_lengths(60, seed=1, hi=9000)            # some > one 4096 block
    lens[[0, 17, -1]] = 0                                   # empty first, middle, last
    offs = offsets_from(lens, start=5)                      # offsets[0] > 0
    x = nasty_array((int(offs[-1]),), dtype, fill, seed=2)
    got = getattr(kk, name)(x, offs)
    expected = loop_reduce(name, to64(x), offs, EMPTY_DEFAULT[name])
    assert_close(got, expected, dtype, scale=1.0, rtol=2e-6 if out_dtype(dtype) != np.float64
                 else 1e-12)
    assert_close(got, getattr(ref, name)(x, offs), dtype, scale=1.0,
                 rtol=2e-6 if out_dtype(dtype) != np.float64 else 1e-12)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_empty_segments_first_middle_last_all(name):
    x = np.arange(1.0, 11.0)
    offs = np.array([0, 0, 4, 4, 10, 10])
    got = getattr(kk, name)(x, offs)
    e = EMPTY_DEFAULT[name]
    np.testing.assert_array_equal(np.isnan(got), [np.isnan(e), 0, np.isnan(e), 0, np.isnan(e)])
    for i in (0, 2, 4):
        assert np.isnan(got[i]) if np.isnan(e) else got[i] == e
    assert np.all(np.isfinite(got[[1, 3]]))
    # every sequence empty, with a custom empty value
    got = getattr(kk, name)(x[:3], [3, 3, 3, 3], empty=7.5)
    np.testing.assert_array_equal(got, [7.5, 7.5, 7.5])
    # np.add.reduceat would return a neighbour's element here
    assert kk.segment_sum(x, [0, 2, 2, 10])[1] == 0.0


def test_known_values():
    x = np.array([1.0, 2.0, 3.0, -1.0, 5.0])
    offs = [0, 3, 5]
    np.testing.assert_array_equal(kk.segment_sum(x, offs), [6.0, 4.0])
    np.testing.assert_array_equal(kk.segment_mean(x, offs), [2.0, 2.0])
    np.testing.assert_array_equal(kk.segment_max(x, offs), [3.0, 5.0])
    np.testing.assert_allclose(kk.segment_logsumexp(x, offs),
                               [np.log(np.exp([1, 2, 3]).sum()), np.log(np.exp([-1, 5]).sum())],
                               rtol=1e-15)
    # one dominant term: exact
    assert kk.segment_logsumexp(np.array([0.0, -800.0]), [0, 2])[0] == 0.0
    assert kk.segment_max(np.array([-0.0, 0.0, -0.0]), [0, 3])[0] == 0.0
    assert not np.signbit(kk.segment_max(np.array([-0.0, 0.0]), [0, 2])[0])
    assert not np.signbit(kk.segment_max(np.array([0.0, -0.0]), [0, 2])[0])


def test_nan_and_inf_stay_in_their_segment():
    x = np.array([1.0, np.nan, 2.0, 3.0, np.inf, -np.inf, 4.0, np.inf, 1.0], np.float32)
    offs = [0, 2, 4, 6, 8, 9]
    s = kk.segment_sum(x, offs)
    assert np.isnan(s[0]) and s[1] == 5 and np.isnan(s[2]) and s[3] == np.inf and s[4] == 1
    m = kk.segment_max(x, offs)
    assert np.isnan(m[0]) and m[1] == 3 and m[2] == np.inf and m[3] == np.inf
    lse = kk.segment_logsumexp(x, offs)
    assert np.isnan(lse[0]) and lse[2] == np.inf and lse[3] == np.inf
    assert np.isfinite(lse[1]) and lse[4] == 1.0
    assert kk.segment_logsumexp(np.full(5, -np.inf), [0, 5])[0] == -np.inf


def test_float32_sum_accumulates_in_float64():
    # 1 + 1e-8 * many: float32 accumulation would lose every small term
    x = np.full(1_000_001, 1e-8, np.float32)
    x[0] = 1.0
    got = kk.segment_sum(x, [0, x.size])[0]
    assert got == np.float32(math.fsum(to64(x)))
    assert got.dtype == np.float32


# --------------------------------------------------------------------------
# layouts give the same bits
# --------------------------------------------------------------------------

def padded_from(x, lens, T, dtype, seed=0, scatter=False):
    """[B, T] values + mask holding the packed sequences; scatter=True puts
    the kept entries at random positions of the row (not a prefix)."""
    rng = np.random.default_rng(seed)
    vals = as_dtype(rng.normal(0, 1e3, (len(lens), T)), dtype)  # padding garbage
    vals[rng.random(vals.shape) < 0.05] = np.nan
    mask = np.zeros((len(lens), T), bool)
    offs = offsets_from(lens)
    for b, n in enumerate(lens):
        pos = np.sort(rng.choice(T, n, replace=False)) if scatter else np.arange(n)
        vals[b, pos] = x[offs[b]:offs[b + 1]]
        mask[b, pos] = True
    return vals, mask


@pytest.mark.parametrize("scatter", [False, True])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_packed_padded_arrow_identical_bits(name, dtype, scatter):
    lens = random_lengths(24, seed=3, hi=9000)
    lens[[0, 5]] = 0
    T = 9100
    offs = offsets_from(lens)
    x = nasty_array((int(offs[-1]),), dtype, "normal", seed=4)
    packed = getattr(kk, name)(x, offs)
    vals, mask = padded_from(x, lens, T, dtype, seed=5, scatter=scatter)
    same_bits(getattr(kk, name)(vals, mask=mask), packed)
    same_bits(getattr(kk, name)(vals, mask=mask.astype(np.int8)), packed)
    same_bits(getattr(kk, name)(vals, mask=mask.astype(np.float32)), packed)
    if dtype in (np.float32, np.float64, np.float16):
        arr = pa.ListArray.from_arrays(pa.array(offs.astype(np.int32)), pa.array(x))
        same_bits(getattr(kk, name)(arr), packed)
        large = pa.LargeListArray.from_arrays(pa.array(offs), pa.array(x))
        same_bits(getattr(kk, name)(large), packed)
        chunked = pa.chunked_array([arr[:7], arr[7:20], arr[20:]])
        same_bits(getattr(kk, name)(chunked), packed)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_seq_kl_layouts_identical_bits(estimator, dtype):
    lens = random_lengths(20, seed=6, hi=9000)
    lens[3] = 0
    offs = offsets_from(lens)
    n = int(offs[-1])
    p = as_dtype(-np.abs(nasty_array((n,), np.float64, "normal", seed=7)), dtype)
    q = to64(p) + nasty_array((n,), np.float64, "tiny", seed=8) * 300
    rng = np.random.default_rng(24)
    out = rng.random(n) < 0.004                   # rare |d| > 2: the general k3 form
    q[out] += rng.choice([-6.0, 3.0, 40.0], out.sum())
    q[:9000][rng.random(9000) < 0.2] -= 3.0       # many in the first sequences
    q = as_dtype(q, dtype)
    packed = kk.seq_kl(p, q, offs, estimator=estimator)
    same_bits(kk.seq_kl(p, q, offs, estimator=estimator, clamp=2.5),
              kk.seq_kl(vp_ := padded_from(p, lens, 9100, dtype, seed=9)[0],
                        padded_from(q, lens, 9100, dtype, seed=9)[0],
                        mask=padded_from(p, lens, 9100, dtype, seed=9)[1],
                        estimator=estimator, clamp=2.5))
    assert vp_.shape == (len(lens), 9100)
    vp, mask = padded_from(p, lens, 9100, dtype, seed=9, scatter=True)
    vq, _ = padded_from(q, lens, 9100, dtype, seed=9, scatter=True)
    same_bits(kk.seq_kl(vp, vq, mask=mask, estimator=estimator), packed)
    # fused == estimate then sum, bit for bit
    same_bits(kk.segment_sum(kk.kl_estimate(p, q, estimator), offs), packed)
    if dtype in (np.float32, np.float64):
        ap = pa.ListArray.from_arrays(pa.array(offs.astype(np.int32)), pa.array(p))
        # ref_logp with a different child layout (sliced, shifted offsets)
        qq = np.concatenate([np.zeros(3, dtype), q])
        aq = pa.LargeListArray.from_arrays(pa.array(np.concatenate([[0], offs + 3])),
                                           pa.array(qq))[1:]
        same_bits(kk.seq_kl(ap, aq, estimator=estimator), packed)
        same_bits(kk.seq_kl(pa.chunked_array([ap[:4], ap[4:]]), aq, estimator=estimator), packed)
    ref_out = ref.seq_kl(p, q, offs, estimator=estimator)
    scale = float(np.max(np.abs(to64(p) - to64(q)))) * 9000
    assert_close(packed, ref_out, dtype, rtol=4e-6 if out_dtype(dtype) != np.float64 else 1e-12,
                 atol=1e-6 * scale if out_dtype(dtype) != np.float64 else 1e-14 * scale)


def test_seq_kl_mean_and_empty():
    p = np.log(np.array([0.5, 0.25, 0.1, 0.9]))
    q = np.log(np.array([0.4, 0.25, 0.2, 0.8]))
    offs = [0, 2, 2, 4]
    s = kk.seq_kl(p, q, offs, estimator="k1")
    np.testing.assert_allclose(s, [p[0] - q[0], 0.0, (p[2] - q[2]) + (p[3] - q[3])], rtol=1e-15)
    m = kk.seq_kl(p, q, offs, estimator="k1", reduce="mean")
    np.testing.assert_allclose(m[[0, 2]], [s[0] / 2, s[2] / 2], rtol=1e-15)
    assert m[1] == 0.0
    assert np.isnan(kk.seq_kl(p, q, offs, reduce="mean", empty=np.nan)[1])


def test_arrow_slices_nulls_and_types():
    arr = pa.array([[1.0, 2.0], None, [3.0], [], [4.0, 5.0, 6.0]], pa.list_(pa.float32()))
    np.testing.assert_array_equal(kk.segment_sum(arr), [3, 0, 3, 0, 15])
    sl = arr[2:]                                          # offsets[0] > 0
    assert sl.offsets[0].as_py() > 0
    np.testing.assert_array_equal(kk.segment_sum(sl), [3, 0, 15])
    np.testing.assert_array_equal(ref.segment_sum(sl), [3, 0, 15])
    assert kk.segment_sum(sl).dtype == np.float32
    # a null list whose slot is NOT empty in the child (allowed by Arrow)
    child = pa.array([1.0, 2.0, 3.0, 4.0])
    weird = pa.ListArray.from_arrays(pa.array([0, 2, 4], pa.int32()), child,
                                     mask=pa.array([False, True]))
    assert weird.null_count == 1
    np.testing.assert_array_equal(kk.segment_sum(weird), [3.0, 0.0])
    np.testing.assert_array_equal(ref.segment_sum(weird), [3.0, 0.0])
    # integers become float64
    ints = pa.array([[1, 2], [3]], pa.list_(pa.int64()))
    got = kk.segment_mean(ints)
    assert got.dtype == np.float64 and list(got) == [1.5, 3.0]
    # float16 children, zero-copy
    h = pa.array([np.array([1, 2, 3], np.float16), np.array([4], np.float16)],
                 pa.list_(pa.float16()))
    assert list(kk.segment_sum(h)) == [6.0, 4.0]
    # empty chunked array
    empty = pa.chunked_array([], pa.list_(pa.float64()))
    assert kk.segment_sum(empty).shape == (0,)
    # a null INSIDE a list is an error naming the argument
    bad = pa.array([[1.0, None], [2.0]], pa.list_(pa.float64()))
    with pytest.raises(ValueError, match="values: sequence 0 holds a null"):
        kk.segment_sum(bad)
    with pytest.raises(ValueError, match="values"):
        ref.segment_sum(bad)
    # ... but a null in the child outside the referenced ranges is fine
    ok = pa.ListArray.from_arrays(pa.array([1, 2], pa.int32()), pa.array([None, 5.0]))
    assert list(kk.segment_sum(ok)) == [5.0]


def test_arrow_zero_copy():
    x = np.arange(1000, dtype=np.float32)
    arr = pa.ListArray.from_arrays(pa.array(np.array([0, 10, 1000], np.int32)), pa.array(x))
    from klkit.segments import _layout
    lay = _layout(arr, None, None)
    vals = lay.parts[0][0]
    assert vals.ctypes.data == arr.values.buffers()[1].address


def test_seq_kl_arrow_length_mismatch_names_sequence():
    a = pa.array([[0.0, -1.0], [-2.0], [-1.0]], pa.list_(pa.float64()))
    b = pa.array([[0.0, -1.0], [-2.0, -1.0], []], pa.list_(pa.float64()))
    with pytest.raises(ValueError, match="ref_logp: sequence 1"):
        kk.seq_kl(a, b)
    with pytest.raises(ValueError, match="ref_logp: sequence 1"):
        ref.seq_kl(a, b)


# --------------------------------------------------------------------------
# determinism: alone vs batch, threads, skew, ISA paths
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", REDUCTIONS + ["seq_kl"])
def test_sequence_alone_and_in_batch_same_bits(name):
    lens = random_lengths(40, seed=10, hi=20000)
    offs = offsets_from(lens)
    x = nasty_array((int(offs[-1]),), np.float32, "normal", seed=11)
    y = nasty_array((int(offs[-1]),), np.float32, "normal", seed=12)

    def f(xx, oo, yy=None):
        if name == "seq_kl":
            return kk.seq_kl(xx, yy, oo, estimator="k3")
        return getattr(kk, name)(xx, oo)

    full = f(x, offs, y)
    for i in (0, 1, 13, 39):
        a, b = offs[i], offs[i + 1]
        same_bits(f(x[a:b], [0, b - a], y[a:b]), full[i:i + 1])
        # the same tokens at another offset of a bigger buffer
        pad = np.concatenate([np.ones(7, np.float32), x[a:b]])
        pady = np.concatenate([np.ones(7, np.float32), y[a:b]])
        same_bits(f(pad, [7, 7 + b - a], pady), full[i:i + 1])
    for k in (1, 5, 20):
        same_bits(f(x, offs[k:], y), full[k:])
        same_bits(f(x[:offs[k]], offs[:k + 1], y[:offs[k]]), full[:k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name", REDUCTIONS + ["seq_kl", "padded"])
def test_threads_identical_bits_skewed(name, dtype, restore_threads):
    """One 10^6-token sequence among 10^4 short ones; 1 vs 2 threads."""
    rng = np.random.default_rng(13)
    lens = rng.integers(0, 60, 10_000)
    lens[4321] = 1_000_000
    offs = offsets_from(lens)
    x = as_dtype(rng.normal(0, 1, int(offs[-1])), dtype)
    y = as_dtype(rng.normal(0, 1, int(offs[-1])), dtype)

    def f():
        if name == "seq_kl":
            return kk.seq_kl(x, y, offs, estimator="k3")
        if name == "padded":
            v = x[:64 * 8192].reshape(64, 8192)
            return kk.segment_sum(v, mask=v > 0)
        return getattr(kk, name)(x, offs)

    kk.set_num_threads(1)
    one = f()
    kk.set_num_threads(2)
    same_bits(f(), one)
    if name == "segment_sum" and dtype == np.float32:
        big = kk.segment_sum(x[offs[4321]:offs[4322]], [0, 1_000_000])
        same_bits(big, one[4321:4322])


def test_many_segments_over_ten_million_tokens():
    rng = np.random.default_rng(14)
    n_seg = 100_000
    lens = rng.integers(0, 200, n_seg)
    lens = (lens * (10**7 / lens.sum())).astype(np.int64)
    lens[-1] += 10**7 - lens.sum()
    offs = offsets_from(lens)
    x = rng.standard_normal(10**7, dtype=np.float32)
    got = kk.segment_sum(x, offs)
    nz = lens > 0
    expected = np.zeros(n_seg)
    expected[nz] = np.add.reduceat(x.astype(np.float64), offs[:-1][nz])
    assert_close(got, expected, np.float32, rtol=1e-6, atol=1e-5)
    got_int32 = kk.segment_sum(x, offs.astype(np.int32))
    same_bits(got_int32, got)
    mean = kk.segment_mean(x, offs)
    assert np.all(np.isnan(mean[~nz]))
    np.testing.assert_allclose(mean[nz], expected[nz] / lens[nz], rtol=1e-6, atol=1e-6)


def test_more_than_2_31_tokens():
    """Totals beyond 2^31 tokens: a zero-memory broadcast view (stride 0)."""
    n = 2**31 + 10
    x = np.broadcast_to(np.float32(1.0), (n,))
    offs = np.array([0, 5, n - 3, n], np.int64)
    got = kk.segment_sum(x, offs)
    np.testing.assert_array_equal(got, np.array([5, n - 8, 3], np.float64).astype(np.float32))
    np.testing.assert_array_equal(kk.segment_mean(x, offs), [1, 1, 1])
    with pytest.raises(ValueError, match="offsets"):
        kk.segment_sum(x, offs.astype(np.int32))   # wraps negative: not non-decreasing


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("name", REDUCTIONS + ["seq_kl"])
def test_every_isa_path(name, isa):
    lens = random_lengths(30, seed=15, hi=6000)
    offs = offsets_from(lens)
    x = nasty_array((int(offs[-1]),), np.float32, "special", seed=16)
    y = nasty_array((int(offs[-1]),), np.float32, "normal", seed=17)
    try:
        assert _cpu.set_isa(isa)
        if name == "seq_kl":
            got = kk.seq_kl(x, y, offs, estimator="k3")
            expected = ref.seq_kl(x, y, offs, estimator="k3")
        else:
            got = getattr(kk, name)(x, offs)
            expected = getattr(ref, name)(x, offs)
    finally:
        _cpu.set_isa(None)
    assert_close(got, expected, np.float32, rtol=4e-6, atol=1e-4)


# --------------------------------------------------------------------------
# estimators
# --------------------------------------------------------------------------

def test_reference_k3_against_mpmath():
    r = np.concatenate([-np.logspace(-8, np.log10(30), 40), np.logspace(-8, np.log10(30), 40),
                        [-2.0, 2.0, -2.0000001, 2.0000001, 0.0]])
    got = ref.segments._k3(r)
    for ri, gi in zip(r, got):
        e = k3_exact(ri)
        assert abs(gi - e) <= 4e-16 * abs(e) + 1e-300, (ri, gi, e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_k3_accuracy_tiny_to_large(dtype):
    """k3 from |r| = 1e-8 to 30, both signs: the exact value of exp(r)-1-r at
    the input's own r (float64 series / expm1 reference, itself checked
    against mpmath above), within a few ulp; the naive formula fails."""
    mags = np.logspace(-8, np.log10(30), 400)
    r = np.concatenate([-mags, mags])
    rng = np.random.default_rng(18)
    logp = as_dtype(-rng.uniform(0.1, 5, r.size), dtype)
    ref_lp = as_dtype(to64(logp) + r, dtype)
    got = kk.kl_estimate(logp, ref_lp, "k3")
    assert got.dtype == dtype
    exact = np.array([k3_exact(b, a) for a, b in zip(to64(logp), to64(ref_lp))])
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    err = np.abs(to64(got) - exact) / ulp
    # measured 2.4 (float32) and 3.0 (float64) ulp at 3000 points
    assert err.max() <= (3.0 if dtype == np.float32 else 4.0), (r[np.argmax(err)], err.max())
    assert np.all(got >= 0)
    if dtype == np.float32:
        naive = (np.exp(-(logp - ref_lp)) - np.float32(1)) - (-(logp - ref_lp))
        tiny = (np.abs(r) <= 1.01e-4) & (exact > 0)
        assert np.any(naive[tiny] < 0)                      # what klkit avoids
        assert np.max(np.abs(naive[tiny] - exact[tiny]) / exact[tiny]) > 0.5


def test_k3_exact_cases_mpmath():
    # float64 inputs with logp = 0 so that r = ref_logp exactly
    for r in (1e-300, 1e-20, 1e-8, 1e-4, -1e-4, 0.5, -0.5, 1.9999, 2.0001, -2.0001, 10.0, -30.0,
              700.0):
        got = kk.kl_estimate(0.0, r, "k3")
        e = k3_exact(r)
        assert abs(got - e) <= 3 * np.spacing(e), (r, got, e)
    assert kk.kl_estimate(0.0, 0.0, "k3") == 0.0


def test_estimator_special_values():
    inf, nan = np.inf, np.nan
    lp = np.array([0.0, -inf, 0.0, nan, -inf, 0.0, 0.0], np.float32)
    rl = np.array([-inf, 0.0, nan, 0.0, -inf, 800.0, -800.0], np.float32)
    k3 = kk.kl_estimate(lp, rl, "k3")
    # r = -inf, r = +inf, NaN, NaN, inf - inf, overflow, large negative r
    np.testing.assert_array_equal(k3, [inf, inf, nan, nan, nan, inf, 799.0])
    assert list(kk.kl_estimate(lp[:2], rl[:2], "k1")) == [inf, -inf]
    assert list(kk.kl_estimate(lp[:2], rl[:2], "k2")) == [inf, inf]
    assert list(kk.kl_estimate(lp[:2], rl[:2], "abs")) == [inf, inf]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("estimator", ESTIMATORS + ["kl", "mse", "low_var_kl"])
def test_kl_estimate_against_formulas(estimator, dtype):
    rng = np.random.default_rng(19)
    p = as_dtype(-rng.exponential(2, (7, 301)), dtype)
    q = as_dtype(to64(p) + rng.normal(0, 0.5, (7, 301)), dtype)
    got = kk.kl_estimate(p, q, estimator)
    d = to64(p) - to64(q)
    formula = {"k1": d, "kl": d, "k2": d * d / 2, "mse": d * d / 2, "abs": np.abs(d),
               "k3": np.expm1(-d) + d, "low_var_kl": np.expm1(-d) + d}[estimator]
    tol = 1e-12 if out_dtype(dtype) == np.float64 else 4e-6
    assert_close(got, formula, dtype, rtol=tol, atol=1e-15 if tol < 1e-9 else 1e-7)
    assert_close(got, ref.kl_estimate(p, q, estimator), dtype, rtol=tol,
                 atol=1e-15 if tol < 1e-9 else 1e-7)
    assert got.shape == (7, 301)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_clamp(estimator):
    p = np.array([0.0, 0.0, 0.0, 0.0, np.nan], np.float32)
    q = np.array([-30.0, 30.0, 0.5, -np.inf, 0.0], np.float32)
    got = kk.kl_estimate(p, q, estimator, clamp=20)
    dc = np.clip(to64(p) - to64(q), -20, 20)
    expected = ref.segments._estimate(dc, ref.segments._estimator(estimator), np.inf)
    assert_close(got, expected, np.float32, rtol=4e-7)
    assert_close(got, ref.kl_estimate(p, q, estimator, clamp=20), np.float32, rtol=4e-7)
    assert np.all(np.isfinite(got[:4])) and np.isnan(got[4])
    assert np.all(kk.kl_estimate(p[:4], q[:4], estimator, clamp=0) == 0)
    offs = [0, 2, 5]
    same_bits(kk.seq_kl(p, q, offs, estimator=estimator, clamp=20),
              kk.segment_sum(got, offs))


def test_kl_estimate_broadcasts_and_scalars():
    p = np.zeros((3, 1), np.float32)
    q = np.array([0.1, 0.2], np.float32)
    assert kk.kl_estimate(p, q, "k2").shape == (3, 2)
    s = kk.kl_estimate(0.0, 0.5, "k1")
    assert isinstance(s, np.float64) and s == -0.5
    assert kk.kl_estimate(np.float32(0), np.float32(0.5)).dtype == np.float32


# --------------------------------------------------------------------------
# agg_loss against verl's formulas (verl/trainer/ppo/core_algos.py)
# --------------------------------------------------------------------------

def verl_agg_loss(loss_mat, loss_mask, mode, num_tokens=None, num_seqs=None, norm=None):
    """verl's agg_loss written with NumPy (float64), dp_size = 1."""
    m = loss_mask.astype(np.float64)
    x = np.where(m > 0, loss_mat, 0.0)
    if mode == "token-mean":
        n = m.sum() if num_tokens is None else num_tokens
        return 0.0 if n == 0 else (x * m).sum() / n
    seq_mask = (m.sum(-1) > 0).astype(np.float64)
    g = seq_mask.sum() if num_seqs is None else num_seqs
    if mode == "seq-mean-token-mean":
        seq = (x * m).sum(-1) / (m.sum(-1) + 1e-8)
        return 0.0 if g == 0 else (seq * seq_mask).sum() / g
    seq = (x * m).sum(-1)
    if mode == "seq-mean-token-sum":
        return 0.0 if g == 0 else (seq * seq_mask).sum() / g
    return seq.sum() / (loss_mask.shape[-1] if norm is None else norm)   # -norm (Dr. GRPO)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", AGG_MODES)
def test_agg_loss_against_verl(mode, dtype):
    rng = np.random.default_rng(20)
    B, T = 16, 300
    vals = as_dtype(rng.normal(0, 1, (B, T)), dtype)
    mask = np.arange(T)[None, :] < rng.integers(0, T, B)[:, None]
    mask[3] = False                                         # one fully masked row
    vals[~mask] = np.nan                                    # padding never read
    expected = verl_agg_loss(to64(vals), mask, mode)
    got = kk.agg_loss(vals, mask=mask, mode=mode)
    assert isinstance(got, np.generic) and got.dtype == out_dtype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-8            # verl's 1e-8 in seq-mean-token-mean
    np.testing.assert_allclose(float(got), expected, rtol=tol)
    np.testing.assert_allclose(float(ref.agg_loss(vals, mask=mask, mode=mode)), expected, rtol=tol)
    # the same through packed offsets and Arrow
    lens = mask.sum(1)
    packed = np.concatenate([to64(vals)[b, mask[b]] for b in range(B)]).astype(dtype)
    offs = offsets_from(lens)
    kw = {}
    if mode == "seq-mean-token-sum-norm":
        kw["norm_length"] = T
    np.testing.assert_allclose(float(kk.agg_loss(packed, offs, mode=mode, **kw)), expected,
                               rtol=tol)
    arr = pa.ListArray.from_arrays(pa.array(offs.astype(np.int32)), pa.array(packed))
    assert kk.agg_loss(arr, mode=mode, **kw) == kk.agg_loss(packed, offs, mode=mode, **kw)
    # global normalisers
    expected_g = verl_agg_loss(to64(vals), mask, mode, num_tokens=5000, num_seqs=40, norm=1000)
    got_g = kk.agg_loss(vals, mask=mask, mode=mode, num_tokens=5000, num_seqs=40,
                        norm_length=1000)
    np.testing.assert_allclose(float(got_g), expected_g, rtol=tol)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_agg_loss_all_masked_batch_is_zero(mode):
    vals = np.full((4, 5), np.nan, np.float32)
    mask = np.zeros((4, 5), bool)
    assert kk.agg_loss(vals, mask=mask, mode=mode) == 0.0
    assert ref.agg_loss(vals, mask=mask, mode=mode) == 0.0
    assert verl_agg_loss(np.zeros((4, 5)), mask, mode) == 0.0
    assert kk.agg_loss(np.zeros(0), [0], mode=mode) == 0.0
    assert kk.agg_loss(np.ones(3), [0, 3], mode=mode, num_tokens=0, num_seqs=0,
                       norm_length=0) == 0.0


def test_agg_loss_packed_norm_default_is_longest():
    x = np.ones(10)
    assert kk.agg_loss(x, [0, 3, 10], mode="seq-mean-token-sum-norm") == 10 / 7


# --------------------------------------------------------------------------
# empty inputs, torch (the layout, thread and batch contracts: test_contracts.py)
# --------------------------------------------------------------------------

ALL = REDUCTIONS + ["seq_kl", "agg_loss"]


def call(name, x, offs=None, y=None, mask=None):
    f = getattr(kk, name)
    if name == "seq_kl":
        return f(x, y, offs, mask=mask, estimator="k3")
    return f(x, offs, mask=mask)


def contract_inputs(dtype=np.float32):
    lens = random_lengths(12, seed=21, hi=5000)
    offs = offsets_from(lens)
    x = nasty_array((int(offs[-1]),), dtype, "special", seed=22)
    y = nasty_array((int(offs[-1]),), dtype, "normal", seed=23)
    return x, y, offs


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ALL)
def test_empty_inputs(name, dtype):
    x = np.zeros(0, dtype)
    r = call(name, x, np.zeros(1, np.int64), x)
    if name == "agg_loss":
        assert r == 0.0
    else:
        assert r.shape == (0,) and r.dtype == out_dtype(dtype)
        r = call(name, np.zeros((0, 5), dtype), y=np.zeros((0, 5), dtype),
                 mask=np.zeros((0, 5), bool))
        assert r.shape == (0,)
        r = call(name, np.zeros((3, 0), dtype), y=np.zeros((3, 0), dtype),
                 mask=np.zeros((3, 0), bool))
        assert r.shape == (3,)
    assert kk.kl_estimate(x, x).shape == (0,)


@pytest.mark.parametrize("name", ALL + ["kl_estimate"])
def test_torch_in_torch_out(name):
    torch = pytest.importorskip("torch")
    x, y, offs = contract_inputs()
    if name == "kl_estimate":
        got = kk.kl_estimate(torch.from_numpy(x), torch.from_numpy(y), "k3")
        assert isinstance(got, torch.Tensor)
        same_bits(got.numpy(), kk.kl_estimate(x, y, "k3"))
        return
    got = call(name, torch.from_numpy(x), torch.from_numpy(offs), torch.from_numpy(y))
    assert isinstance(got, torch.Tensor)
    same_bits(np.asarray(got.numpy()), np.asarray(call(name, x, offs, y)))
    v = torch.from_numpy(x[:200]).reshape(10, 20)
    got = call(name, v, y=torch.from_numpy(y[:200]).reshape(10, 20), mask=v > 0)
    assert isinstance(got, torch.Tensor)
    bf = torch.from_numpy(x[:200]).reshape(10, 20).to(torch.bfloat16)
    got = call(name, bf, y=bf, mask=torch.ones(10, 20, dtype=torch.bool))
    assert got.dtype == torch.float32


@pytest.mark.parametrize("name", REDUCTIONS)
def test_integer_and_bool_values_promote_to_float64(name):
    got = getattr(kk, name)(np.arange(6), [0, 2, 6])
    assert got.dtype == np.float64
    assert getattr(kk, name)(np.ones(4, bool), [0, 4]).dtype == np.float64


BAD = [
    (lambda: kk.segment_sum(np.ones(5), [0, 3.0, 5]), TypeError, "offsets"),
    (lambda: kk.segment_sum(np.ones(5), [0, 3, 2, 5]), ValueError, r"offsets.*non-decreasing"),
    (lambda: kk.segment_sum(np.ones(5), [0, 3, 6]), ValueError, "offsets.*beyond"),
    (lambda: kk.segment_sum(np.ones(5), [-1, 3]), ValueError, "offsets.*negative"),
    (lambda: kk.segment_sum(np.ones(5), [[0, 5]]), ValueError, "offsets"),
    (lambda: kk.segment_sum(np.ones(5), np.zeros(0, int)), ValueError, "offsets"),
    (lambda: kk.segment_sum(np.ones(5), [True, False]), TypeError, "offsets"),
    (lambda: kk.segment_sum(np.ones(5)), ValueError, "offsets"),
    (lambda: kk.segment_sum(np.ones((2, 3)), [0, 3]), ValueError, "values"),
    (lambda: kk.segment_sum(np.ones((2, 3, 4))), ValueError, "values"),
    (lambda: kk.segment_sum(np.ones((2, 3)), mask=np.ones((3, 2), bool)), ValueError, "mask"),
    (lambda: kk.segment_sum(np.ones((2, 3)), mask=np.full((2, 3), 0.5)), ValueError, "mask"),
    (lambda: kk.segment_sum(np.ones((2, 3)), mask=np.full((2, 3), "a")), TypeError, "mask"),
    (lambda: kk.segment_sum(np.ones(3), [0, 3], mask=np.ones(3, bool)), ValueError, "mask"),
    (lambda: kk.segment_sum(np.ones(3, complex), [0, 3]), TypeError, "values"),
    (lambda: kk.segment_sum(np.array(["a"]), [0, 1]), TypeError, "values"),
    (lambda: kk.segment_sum(np.ones(3), [0, 3], empty="x"), TypeError, "empty"),
    (lambda: kk.kl_estimate(np.ones(3), np.ones(3), "k4"), ValueError, "estimator"),
    (lambda: kk.kl_estimate(np.ones(3), np.ones(3), "full"), ValueError, "estimator"),
    (lambda: kk.kl_estimate(np.ones(3), np.ones(2)), ValueError, "ref_logp"),
    (lambda: kk.kl_estimate(np.ones(3), np.ones(3), clamp=-1), ValueError, "clamp"),
    (lambda: kk.kl_estimate(np.ones(3), np.ones(3), clamp=np.nan), ValueError, "clamp"),
    (lambda: kk.kl_estimate(np.ones(3), np.ones(3), clamp="a"), TypeError, "clamp"),
    (lambda: kk.seq_kl(np.ones(3), np.ones(4), [0, 3]), ValueError, "ref_logp"),
    (lambda: kk.seq_kl(np.ones(3), np.ones(3), [0, 3], reduce="max"), ValueError, "reduce"),
    (lambda: kk.seq_kl(np.ones((2, 3)), np.ones((2, 4)), mask=np.ones((2, 3), bool)),
     ValueError, "ref_logp|mask"),
    (lambda: kk.agg_loss(np.ones(3), [0, 3], mode="seq-sum"), ValueError, "mode"),
    (lambda: kk.agg_loss(np.ones(3), [0, 3], num_tokens=-1), ValueError, "num_tokens"),
    (lambda: kk.agg_loss(np.ones(3), [0, 3], num_seqs="x"), TypeError, "num_seqs"),
    (lambda: kk.agg_loss(np.ones(3), [0, 3], norm_length=np.nan), ValueError, "norm_length"),
    (lambda: kk.segment_sum(pa.array([[1.0]]), [0, 1]), ValueError, "offsets"),
    (lambda: kk.segment_sum(pa.array([[1.0]]), mask=np.ones(1)), ValueError, "mask"),
    (lambda: kk.segment_sum(pa.array([1.0])), TypeError, "values"),
    (lambda: kk.segment_sum(pa.array([["a"]])), TypeError, "values"),
    (lambda: kk.seq_kl(pa.array([[1.0]]), np.ones(1), [0, 1]), TypeError, "ref_logp"),
    (lambda: kk.segment_sum(np.ones(5), [0, 3]), ValueError, r"offsets.*outside every sequence"),
    (lambda: kk.seq_kl(np.ones(5), np.ones(5), [2, 3, 5 - 1]), ValueError, r"offsets.*lengths="),
    (lambda: kk.segment_sum(np.ones(5), lengths=[3, -1, 3]), ValueError, "lengths.*negative"),
    (lambda: kk.segment_sum(np.ones(5), lengths=[3, 1]), ValueError, "lengths.*sum to 4"),
    (lambda: kk.segment_sum(np.ones(5), lengths=[3.0, 2.0]), TypeError, "lengths"),
    (lambda: kk.segment_sum(np.ones(5), lengths=[[3, 2]]), ValueError, "lengths"),
    (lambda: kk.segment_sum(np.ones(5), [0, 5], lengths=[5]), ValueError, "lengths"),
    (lambda: kk.segment_sum(np.ones((1, 5)), lengths=[5], mask=np.ones((1, 5), bool)),
     ValueError, "lengths"),
    (lambda: kk.segment_sum(pa.array([[1.0]]), lengths=[1]), ValueError, "lengths"),
    (lambda: kk.agg_loss(np.ones(5), lengths=[2, 2]), ValueError, "lengths"),
    (lambda: kk.kl_estimate(pa.array([[1.0]]), np.ones(1)), TypeError, "ref_logp"),
    (lambda: kk.kl_estimate(pa.array([[1.0, 2.0]]), pa.array([[1.0]])), ValueError,
     "ref_logp: sequence 0"),
]


@pytest.mark.parametrize("call_, exc, pattern", BAD)
def test_bad_arguments_raise_clear_errors(call_, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call_()


def test_reference_raises_the_same_errors():
    """The twins check their arguments themselves (they share no code with
    the compiled path): the same exception, naming the same argument."""
    for f, name in ((lambda m: m.segment_sum(np.ones(5), [0, 3, 2, 5]), "offsets"),
                    (lambda m: m.segment_max(np.ones((2, 3)), mask=np.full((2, 3), 0.5)), "mask"),
                    (lambda m: m.kl_estimate(np.ones(3), np.ones(3), "k4"), "estimator"),
                    (lambda m: m.agg_loss(np.ones(3), [0, 3], mode="x"), "mode"),
                    (lambda m: m.seq_kl(np.ones(3), np.ones(3), [0, 3], clamp="x"), "clamp"),
                    (lambda m: m.segment_sum(np.ones(5), [0, 3]), "offsets"),
                    (lambda m: m.segment_sum(np.ones(5), lengths=[3, 1]), "lengths"),
                    (lambda m: m.segment_sum(np.ones(5), lengths=[3.0, 2.0]), "lengths"),
                    (lambda m: m.seq_kl(np.ones(5), np.ones(5), [0, 5], lengths=[5]), "lengths")):
        types = []
        for m in (kk, ref):
            with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b") as info:
                f(m)
            types.append(info.type)
        assert types[0] is types[1], (name, types)


def test_kernel_entry_checks_ranges():
    """The Cython layer refuses ranges outside the values (no OOB read even
    when called directly)."""
    out = np.empty(1)
    with pytest.raises(ValueError, match="outside"):
        _cpu.seg_packed("sum", None, "float64", np.ones(4), None, np.array([2], np.int64), None,
                        np.array([3], np.int64), np.inf, 0.0, out)
    with pytest.raises(ValueError, match="outside"):
        _cpu.seg_packed("sum", None, "float64", np.ones(4), None, np.array([-1], np.int64), None,
                        np.array([1], np.int64), np.inf, 0.0, out)
    with pytest.raises(ValueError, match="outside"):
        _cpu.seg_packed("sum", None, "float64", np.ones(4), None, np.array([2**62], np.int64), None,
                        np.array([2**62], np.int64), np.inf, 0.0, out)


def test_public_names():
    for name in ALL + ["kl_estimate"]:
        assert name in kk.__all__ and callable(getattr(kk, name))
        assert name in ref.__all__ and callable(getattr(ref, name))


# --------------------------------------------------------------------------
# edge cases found in review
# --------------------------------------------------------------------------

def test_python_scalars_stay_weak_in_kl_estimate():
    assert kk.kl_estimate(np.float32([0.1]), 0.5).dtype == np.float32
    assert kk.kl_estimate(np.float16([0.1]), 1).dtype == np.float32
    assert kk.kl_estimate(np.float64([0.1]), np.float32(0.5)).dtype == np.float64


@pytest.mark.skipif(BFLOAT16 is None, reason="ml_dtypes not installed")
def test_float16_with_bfloat16():
    h = np.float16([0.5, 0.1])
    bf = np.array([0.25, 0.3], BFLOAT16)
    got = kk.kl_estimate(h, bf, "k2")
    np.testing.assert_array_equal(got, ref.kl_estimate(h, bf, "k2"))
    np.testing.assert_array_equal(kk.seq_kl(h, bf, [0, 2]), ref.seq_kl(h, bf, [0, 2]))


@pytest.mark.parametrize("dtype,tiny", [(np.float64, 1e-15), (np.float32, 1e-7)])
def test_k3_clamp_bound_reached_by_rounding(dtype, tiny):
    # logp - ref_logp rounds onto -20 while the exact difference is beyond:
    # the clamped k3 is k3(20), no rounding correction on top
    lp = np.array([-tiny, 0.0], dtype)
    rp = np.array([20.0, 20.0], dtype)
    k = kk.kl_estimate(lp, rp, "k3", clamp=20)
    assert k[0] == k[1]


def test_reference_max_of_signed_zeros():
    for x in (np.float32([0.0, -0.0]), np.float32([-0.0, 0.0])):
        r = ref.segment_max(x, [0, 2])
        assert r[0] == 0 and not np.signbit(r[0])
        assert kk.segment_max(x, [0, 2]).tobytes() == r.tobytes()
    assert np.signbit(ref.segment_max(np.float32([-0.0, -0.0]), [0, 2])[0])


def test_arrow_values_in_an_unaligned_buffer():
    """An Arrow child buffer need not be aligned to its elements: it is
    read through a copy then, with the same results."""
    vals = np.arange(10, dtype=np.float64)
    raw = bytearray(vals.nbytes + 1)
    raw[1:] = vals.tobytes()
    child = pa.Array.from_buffers(pa.float64(), 10, [None, pa.py_buffer(raw).slice(1)])
    la = pa.ListArray.from_arrays(pa.array([0, 3, 10], pa.int32()), child)
    np.testing.assert_array_equal(kk.segment_sum(la), [3.0, 42.0])
    np.testing.assert_array_equal(kk.seq_kl(la, la, estimator="k3"), [0.0, 0.0])


@pytest.mark.parametrize("name", ALL)
def test_lengths_give_the_bits_of_offsets(name):
    """lengths=[3, 0, 7, 1] is offsets [0, 3, 3, 10, 11]: the same bits, for
    NumPy and torch lengths, in klkit and its twin."""
    rng = np.random.default_rng(3)
    v = rng.normal(size=11).astype(np.float32)
    lens, off = np.array([3, 0, 7, 1]), np.array([0, 3, 3, 10, 11])
    for m in (ref, kk):                     # (want: klkit's, for the torch check below)
        f = getattr(m, name)
        call = (lambda **kw: f(v, v[::-1] - 1, **kw)) if name == "seq_kl" else \
            (lambda **kw: f(v, **kw))
        want = call(offsets=off)
        assert np.array_equal(call(lengths=lens), want, equal_nan=True)
        assert np.array_equal(call(lengths=lens.astype(np.int32).tolist()), want, equal_nan=True)
    torch = pytest.importorskip("torch")
    got = getattr(kk, name)(*((v, v[::-1] - 1) if name == "seq_kl" else (v,)),
                            lengths=torch.tensor(lens))
    assert isinstance(got, torch.Tensor)           # a torch argument gives torch out
    assert np.array_equal(got.numpy(), want, equal_nan=True)


def test_short_offsets_are_refused_leading_offset_is_not():
    """A tail after offsets[-1] is an error (lengths passed as offsets look
    like that); tokens before offsets[0] are simply not read."""
    v = np.arange(6.0)
    assert np.array_equal(kk.segment_sum(v, [2, 4, 6]), [5.0, 9.0])
    with pytest.raises(ValueError, match=r"offsets\[-1\] = 4 leaves the last 2 of the 6"):
        kk.segment_sum(v, [0, 2, 4])
    assert np.array_equal(kk.segment_sum(v[:4], [0, 2, 4]), [1.0, 5.0])   # what it suggests


def _estimates(x):
    return [None if s is None else np.asarray(s, np.float64) for s in x.to_pylist()]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_kl_estimate_of_arrow_lists(estimator):
    """Arrow list arrays in, a list array of per-token estimates out, shaped
    like logp: its list type, null lists, slices and chunks; against the
    twin within the bound test_k3_accuracy_tiny_to_large asserts (4 ulp)."""
    rng = np.random.default_rng(5)
    lens = rng.integers(0, 9, 40)
    vals = [(-rng.exponential(1.0, n)).tolist() for n in lens]
    vals[3] = vals[17] = None
    ref_vals = [None if s is None else (np.asarray(s) + rng.normal(0, 0.3, len(s))).tolist()
                for s in vals]
    for typ in (pa.list_(pa.float32()), pa.large_list(pa.float64())):
        a, b = pa.array(vals, typ), pa.array(ref_vals, typ)
        for x, y in ((a, b), (a[5:30], b[5:30]),
                     (pa.chunked_array([a[:13], a[13:]]), pa.chunked_array([b[:20], b[20:]]))):
            got = kk.kl_estimate(x, y, estimator, clamp=2.0)
            want = ref.kl_estimate(x, y, estimator, clamp=2.0)
            assert type(got) is type(want) and got.type == want.type
            assert got.null_count == want.null_count
            for g, w in zip(_estimates(got), _estimates(want)):
                assert (g is None) == (w is None)
                if g is not None:
                    tol = 4 * np.spacing(np.abs(w).astype(np.float32 if typ.value_type ==
                                                        pa.float32() else np.float64))
                    assert np.all(np.abs(g - w) <= tol), (g, w)


def test_pandas_arrow_columns_are_read_python_lists_are_refused():
    pd = pytest.importorskip("pandas")
    a = pa.array([[-0.1, -2.3], [], None, [-0.5]], pa.list_(pa.float32()))
    b = pa.array([[-0.2, -2.0], [], None, [-0.4]], pa.list_(pa.float32()))
    sa, sb = (pd.Series(x, dtype=pd.ArrowDtype(x.type)) for x in (a, b))
    for m in (kk, ref):
        assert np.array_equal(m.segment_sum(sa), m.segment_sum(a))
        assert np.array_equal(m.seq_kl(sa, sb, estimator="k3"), m.seq_kl(a, b, estimator="k3"))
        assert m.kl_estimate(sa, sb, "k2").equals(m.kl_estimate(a, b, "k2"))
        with pytest.raises(TypeError, match=r"logp: a pandas column of Python lists"):
            m.kl_estimate(pd.Series(a.to_pylist()), pd.Series(b.to_pylist()))
        with pytest.raises(TypeError, match=r"values: a pandas column of Python lists"):
            m.segment_sum(pd.Series(a.to_pylist()))

