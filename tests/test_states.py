"""Reduction states: a row (or sequence) cut into pieces, the pieces' states
combined left to right with the header's combine, gives the result of the
whole row: the same bits where the pieces are the kernels' own (CHUNK-sized
pieces of a row, TILE-sized ones of a long logsumexp row, SEG_BLK-sized
pieces of a sequence), within a few ulp for pieces cut anywhere, and for
KL within the kernels' error bound.  KL's row loop and the log-prob sums,
continued piece by piece from the carry the previous piece left
(div_carry), give the kernels' bits; softmax from a row's lse state
(softmax_rows with states) is the kernels' softmax.  (The private entry
points a Dask reduction builds on: _cpu's lse_rows, div_rows and seg_packed
with an out array of a state type, div_carry, state_combine and
state_values.)
"""
import numpy as np
import pytest

import klkit as kk
from klkit import _cpu

from conftest import ulp_distance

CHUNK, TILE, SEG_BLK = 2048, 1 << 16, 4096
DTYPES = [np.float32, np.float64]


def cuts_at(n, step):
    return list(range(0, n, step)) + [n]


def cuts_random(n, k, seed):
    rng = np.random.default_rng(seed)
    return [0] + sorted(rng.choice(np.arange(1, n), size=k, replace=False).tolist()) + [n]


def fold(states, combine):
    acc = states[0]
    for s in states[1:]:
        out = np.empty_like(acc)
        combine(acc, s, out)
        acc = out
    return acc


def values(kind, states, **kw):
    out = np.empty(states.shape[0])
    _cpu.state_values(kind, states, out, **kw)
    return out


def prec(dtype):
    return "float64" if np.dtype(dtype) == np.float64 else "float32"


def rows_of(shape, dtype, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, shape)
    x[:, 5] = -np.inf
    return x.astype(dtype)


# --------------------------------------------------------------------------
# log-sum-exp
# --------------------------------------------------------------------------

def lse_pieces(x, cuts):
    states = []
    for a, b in zip(cuts, cuts[1:]):
        out = np.empty(x.shape[0], _cpu.LSE_STATE)
        _cpu.lse_rows(x[:, a:b], 1, out)
        states.append(out)
    return fold(states, lambda a, b, o: _cpu.state_combine("lse", a, b, o))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,step", [(TILE - 5, CHUNK), (3 * TILE + 77, TILE), (CHUNK, CHUNK)])
def test_lse_pieces_of_the_kernels_give_its_bits(dtype, n, step):
    x = rows_of((3, n), dtype, seed=n)
    whole = np.empty(3, _cpu.LSE_STATE)
    _cpu.lse_rows(x, 1, whole)
    st = lse_pieces(x, cuts_at(n, step))
    assert st.tobytes() == whole.tobytes()
    got = values("lse", st).astype(kk.logsumexp(x, axis=1).dtype)
    assert got.tobytes() == kk.logsumexp(x, axis=1).tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_lse_pieces_cut_anywhere(dtype, seed):
    n = 3 * CHUNK + 1000 + 997 * seed
    x = rows_of((4, n), dtype, seed)
    expected = kk.logsumexp(x, axis=1)
    got = values("lse", lse_pieces(x, cuts_random(n, 5, seed)))
    for g, e in zip(got, expected):
        assert ulp_distance(np.asarray(g).astype(expected.dtype), float(e), expected.dtype) <= 2


def test_lse_state_of_special_rows():
    x = np.array([[np.nan, 1.0], [np.inf, 0.0], [-np.inf, -np.inf], [0.0, 0.0]])
    for cuts in ([0, 1, 2], [0, 2]):
        np.testing.assert_array_equal(values("lse", lse_pieces(x, cuts)),
                                      kk.logsumexp(x, axis=1))


# --------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------

def entropy_pieces(x, cuts, t):
    states = []
    for a, b in zip(cuts, cuts[1:]):
        out = np.empty(x.shape[0], _cpu.ENTROPY_STATE)
        _cpu.div_rows("entropy", "logits", prec(x.dtype), x[:, a:b], None, 1, 1.0 / t, 0.5, out)
        states.append(out)
    return fold(states, lambda a, b, o: _cpu.state_combine("entropy", a, b, o))


@pytest.mark.parametrize("t", [1.0, 0.6])
@pytest.mark.parametrize("dtype", DTYPES)
def test_entropy_pieces_of_the_kernels_give_its_bits(dtype, t):
    n = 5 * CHUNK + 333
    x = rows_of((3, n), dtype, seed=11)
    expected = kk.entropy(x, temperature=t)
    got = values("entropy", entropy_pieces(x, cuts_at(n, CHUNK), t)).astype(expected.dtype)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(4))
def test_entropy_pieces_cut_anywhere(dtype, seed):
    """Within 2 ulp, or 4 for float64 on the baseline build: without FMA
    its exp rounds more, and pieces cut elsewhere sum different blocks
    (60 seeds measured: <= 1 / 2 ulp float32 / float64 with FMA, <= 4
    float64 without)."""
    n = 4 * CHUNK + 501 * seed
    x = rows_of((4, n), dtype, seed, scale=2.0)
    expected = kk.entropy(x)
    got = values("entropy", entropy_pieces(x, cuts_random(n, 6, seed), 1.0))
    bound = 4 if dtype == np.float64 and kk._kernels.build_info()["isa"] == "base" else 2
    for g, e in zip(got, expected):
        assert ulp_distance(np.asarray(g).astype(expected.dtype), float(e),
                            expected.dtype) <= bound


# --------------------------------------------------------------------------
# KL
# --------------------------------------------------------------------------

def kl_pieces(p, q, cuts, t):
    states = []
    for a, b in zip(cuts, cuts[1:]):
        out = np.empty(p.shape[0], _cpu.KL_STATE)
        _cpu.div_rows("kl_div", "logits", prec(p.dtype), p[:, a:b], q[:, a:b], 1, 1.0 / t, 0.5,
                      out)
        states.append(out)
    return fold(states, lambda a, b, o: _cpu.state_combine("kl", a, b, o, inv_temp=1.0 / t))


@pytest.mark.parametrize("t", [1.0, 2.5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gap", [1e-6, 0.3, 3.0])
def test_kl_pieces_combine_within_the_bound(dtype, gap, t):
    n = 6 * CHUNK + 123
    p = rows_of((3, n), dtype, seed=5)
    q = (p.astype(np.float64) + np.random.default_rng(6).normal(0, gap, p.shape)).astype(dtype)
    q[:, 5] = -np.inf
    expected = kk.kl_div(p, q, temperature=t).astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    rtol = 4e-7 if dtype == np.float32 else 1e-14
    for cuts in (cuts_at(n, CHUNK), cuts_random(n, 5, 7), [0, n]):
        got = values("kl", kl_pieces(p, q, cuts, t), inv_temp=1.0 / t, eps=eps)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


def test_kl_state_of_special_rows():
    p = np.array([[0.0, -np.inf, 1.0], [0.0, 1.0, 2.0], [np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]])
    q = np.array([[0.0, 3.0, 1.0], [0.0, -np.inf, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = kk.kl_div(p, q)
    for cuts in ([0, 1, 2, 3], [0, 3], [0, 2, 3]):
        got = values("kl", kl_pieces(p, q, cuts, 1.0), eps=float(np.finfo(np.float64).eps))
        np.testing.assert_allclose(got, expected, rtol=1e-15)


def test_kl_state_needing_the_row_is_nan():
    """Logits so large that the sums cannot be trusted: the value of the
    state alone is NaN (the kernels sum the direct form over the row)."""
    p = np.array([[1e20, 0.0, 3.0]])
    q = np.array([[3.0, 1.0, 1e20]])
    out = np.empty(1, _cpu.KL_STATE)
    _cpu.div_rows("kl_div", "logits", "float64", p, q, 1, 1.0, 0.5, out)
    assert np.isnan(values("kl", out, eps=float(np.finfo(np.float64).eps))[0])
    assert np.isfinite(kk.kl_div(p, q)[0])


def kl_carry(p, q, cuts, t):
    """The finished KL state of the rows of p, q run piece by piece."""
    carry = np.zeros(p.shape[0], _cpu.KL_CARRY)
    carry["k"] = empty_kl(p.shape[0])
    for a, b in zip(cuts, cuts[1:]):
        _cpu.div_carry("kl_div", "logits", prec(p.dtype), p[:, a:b], q[:, a:b], 1, 1.0 / t, carry)
    out = np.empty(p.shape[0], _cpu.KL_STATE)
    # combining with the empty state finishes the state (kk_kl_finish)
    _cpu.state_combine("kl", np.ascontiguousarray(carry["k"]), empty_kl(p.shape[0]), out,
                       inv_temp=1.0 / t)
    return out


def empty_kl(n):
    e = np.zeros(n, _cpu.KL_STATE)
    e["m"] = e["mq"] = e["off_m"] = -np.inf
    e["off_s"] = -1.0
    return e


def same_fields(a, b):
    for f in a.dtype.names:
        assert np.array_equal(a[f], b[f], equal_nan=True), f
        assert np.array_equal(np.signbit(a[f]), np.signbit(b[f])), f


@pytest.mark.parametrize("t", [1.0, 0.4])
@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
def test_kl_carried_piece_by_piece_gives_the_kernels_bits(dtype, t):
    """Pieces at multiples of CHUNK, one of them several chunks long, rows
    with -inf, NaN, P > 0 = Q and P = 0 over a whole piece."""
    n = 6 * CHUNK + 123
    p = rows_of((6, n), dtype, seed=8)
    q = (p.astype(np.float64) + np.random.default_rng(9).normal(0, 0.7, p.shape)).astype(dtype)
    q[1, 11] = -np.inf
    q[2, 3] = np.nan
    p[3, :CHUNK + 7] = -np.inf
    whole = np.empty(6, _cpu.KL_STATE)
    _cpu.div_rows("kl_div", "logits", prec(p.dtype), p, q, 1, 1.0 / t, 0.5, whole)
    for cuts in ([0, CHUNK, 4 * CHUNK, n], [0, n], cuts_at(n, CHUNK)):
        same_fields(kl_carry(p, q, cuts, t), whole)
    eps = float(np.finfo(np.float64 if dtype == np.float64 else np.float32).eps)
    expected = kk.kl_div(p, q, temperature=t)
    got = values("kl", kl_carry(p, q, [0, 2 * CHUNK, n], t), inv_temp=1.0 / t, eps=eps)
    assert got.astype(expected.dtype).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div"])
def test_logprob_sums_carried_piece_by_piece_give_the_kernels_bits(op, dtype):
    """Pieces at multiples of the kernels' 256-element blocks; the sums are
    not clamped (KL is max(0, sum))."""
    n = 3 * CHUNK + 700
    x = rows_of((4, n), np.float64, seed=10)
    lp = kk.log_softmax(x, axis=1).astype(dtype)
    lq = kk.log_softmax(x + np.random.default_rng(11).normal(0, 0.3, x.shape), axis=1).astype(dtype)
    lq[1, 9] = -np.inf
    args = (lp,) if op == "entropy" else (lp, lq)
    expected = getattr(kk, op)(*args, kind="logprobs")
    for cuts in (cuts_at(n, 256), [0, 512, 3 * CHUNK, n]):
        acc = np.zeros(4)
        for a, b in zip(cuts, cuts[1:]):
            _cpu.div_carry(op, "logprobs", prec(dtype), lp[:, a:b],
                           None if op == "entropy" else lq[:, a:b], 1, 1.0, acc)
        got = np.where(acc < 0, 0.0, acc) if op == "kl_div" else acc
        assert got.astype(expected.dtype).tobytes() == expected.tobytes()


@pytest.mark.parametrize("t", [1.0, 2.5])
@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
def test_cross_entropy_pieces_of_the_kernels_give_its_bits(dtype, t):
    n = 4 * CHUNK + 99
    p = rows_of((3, n), dtype, seed=12)
    q = (p.astype(np.float64) + np.random.default_rng(13).normal(0, 1.0, p.shape)).astype(dtype)
    q[2, 7] = -np.inf
    states = []
    for a, b in zip(cuts_at(n, CHUNK), cuts_at(n, CHUNK)[1:]):
        out = np.empty(3, _cpu.XENT_STATE)
        _cpu.div_rows("cross_entropy", "logits", prec(dtype), p[:, a:b], q[:, a:b], 1, 1.0 / t,
                      0.5, out)
        states.append(out)
    st = fold(states, lambda a, b, o: _cpu.state_combine("xent", a, b, o))
    expected = kk.cross_entropy(p, q, temperature=t)
    assert values("xent", st).astype(expected.dtype).tobytes() == expected.tobytes()


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES + [np.float16])
def test_softmax_from_given_states_is_the_kernels(dtype, log):
    """Each row's lse state from its pieces at multiples of CHUNK, then
    softmax of any part of the row from that state; rows with +inf, NaN,
    all -inf."""
    n = 3 * CHUNK + 5
    x = rows_of((5, n), dtype, seed=14)
    x[1, 9] = np.inf
    x[2, 4] = np.nan
    x[3] = -np.inf
    st = lse_pieces(x, cuts_at(n, CHUNK))
    expected = (kk.log_softmax if log else kk.softmax)(x, axis=1)
    out = np.empty(expected.shape, expected.dtype)
    for a, b in ((0, 100), (100, CHUNK + 1), (CHUNK + 1, n)):
        _cpu.softmax_rows(x[:, a:b], 1, log, out[:, a:b], states=st)
    assert out.tobytes() == expected.tobytes()


# --------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------

OPS = {"sum": kk.segment_sum, "mean": kk.segment_mean, "max": kk.segment_max,
       "logsumexp": kk.segment_logsumexp}


def seg_pieces(op, v, cuts, est=None, y=None):
    """The state of v (one sequence) from the states of its pieces."""
    starts = np.array(cuts[:-1], np.int64)
    lens = np.diff(cuts).astype(np.int64)
    out = np.empty(len(lens), _cpu.SEG_STATE)
    _cpu.seg_packed(op, est, prec(v.dtype), v, y, starts, None if y is None else starts, lens,
                    np.inf, 0.0, out)
    states = [out[i:i + 1].copy() for i in range(len(lens))]
    return fold(states, lambda a, b, o: _cpu.state_combine("seg", a, b, o, op=op))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
def test_segment_pieces_of_the_kernels_give_its_bits(op, dtype):
    n = 5 * SEG_BLK + 17
    v = rows_of((1, n), dtype, seed=21)[0]
    v[5] = -1.0
    expected = OPS[op](v, [0, n])
    got = values("seg", seg_pieces(op, v, cuts_at(n, SEG_BLK)), op=op,
                 counts=np.array([n], np.int64), empty=np.nan)
    assert got.astype(expected.dtype).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_seq_kl_pieces_of_the_kernels_give_its_bits(dtype):
    n = 3 * SEG_BLK + 5
    rng = np.random.default_rng(22)
    lp = rng.normal(-2, 1, n).astype(dtype)
    ref = (lp + rng.normal(0, 0.1, n)).astype(dtype)
    expected = kk.seq_kl(lp, ref, [0, n], estimator="k3")
    st = seg_pieces("sum", lp, cuts_at(n, SEG_BLK), est="k3", y=ref)
    got = values("seg", st, op="sum", counts=np.array([n], np.int64))
    assert got.astype(expected.dtype).tobytes() == expected.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("seed", range(3))
def test_segment_pieces_cut_anywhere(op, dtype, seed):
    n = 4 * SEG_BLK + 999 * seed
    v = np.abs(np.random.default_rng(seed).normal(0, 3, n)).astype(dtype)   # no cancellation
    expected = OPS[op](v, [0, n])
    got = values("seg", seg_pieces(op, v, cuts_random(n, 7, seed)), op=op,
                 counts=np.array([n], np.int64), empty=np.nan)
    if op == "max":                                            # exact in any order
        assert got.astype(expected.dtype).tobytes() == expected.tobytes()
    else:
        assert ulp_distance(got.astype(expected.dtype)[0], float(expected[0]),
                            expected.dtype) <= 2


def test_empty_pieces_are_the_identity():
    v = np.arange(10.0)
    for op in OPS:
        st = seg_pieces(op, v, [0, 0, 4, 4, 10, 10])
        got = values("seg", st, op=op, counts=np.array([10], np.int64), empty=np.nan)
        assert got.tobytes() == OPS[op](v, [0, 10]).tobytes(), op
