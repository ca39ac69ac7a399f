"""klkit.dask against klkit on the computed arrays, on a real distributed
cluster (two worker processes on loopback, started once for the module).

Bit for bit where the reduced axes are one chunk, and for logsumexp /
log_softmax / entropy where the chunk boundaries of the one split axis are
multiples of 2048 (the kernels' own pieces); elsewhere within the ulps /
the KL bound the module docstring states (measured; see each test).
"""
import math
import subprocess
import sys

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import klkit as kk  # noqa: E402
import klkit.dask as kd  # noqa: E402

from conftest import BFLOAT16  # noqa: E402

DTYPES = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)] + \
    ([BFLOAT16] if BFLOAT16 is not None else [])
IDS = [d.name for d in DTYPES]
CHUNK = 2048
NO_FMA = kk._kernels.build_info()["isa"] == "base"


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def compute(*xs):
    return dask.compute(*xs)


def bits(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


def ulps(got, expected, scale=None):
    """Largest |got - expected| in ulps of expected's dtype at |expected|
    (or at ``scale``); equal values and NaN pairs count 0."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    g, e = got.astype(np.float64), expected.astype(np.float64)
    ref = np.abs(e) if scale is None else np.asarray(scale, np.float64)
    sp = np.spacing(np.minimum(ref, float(np.finfo(expected.dtype).max) / 2).astype(expected.dtype))
    same = (g == e) | (np.isnan(g) & np.isnan(e))
    with np.errstate(invalid="ignore"):
        d = np.where(same, 0.0, np.abs(g - e) / sp.astype(np.float64))
    return float(d.max()) if d.size else 0.0


def logits(shape, dtype, seed, scale=3.0, special=True):
    """Normal logits with the rows' special cases along the last axis: -inf
    entries, an all -inf row, a NaN row, a +inf row."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, shape)
    if special:
        x[..., 1, 5] = -np.inf
        x[..., 2, :] = -np.inf
        x[..., 3, 7] = np.nan
        x[..., 4, 9] = np.inf
        x[..., 5, ::3] = -np.inf
    return x.astype(dtype)


def near(p, gap, seed):
    rng = np.random.default_rng(seed)
    q = (p.astype(np.float64) + rng.normal(0, gap, p.shape)).astype(p.dtype)
    q[..., 1, 5] = -np.inf
    return q


def cuts(n, k, seed):
    rng = np.random.default_rng(seed)
    c = sorted(rng.choice(np.arange(1, n), size=k, replace=False).tolist())
    return tuple(np.diff([0] + c + [n]).tolist())


# --------------------------------------------------------------------------
# the module: import, laziness
# --------------------------------------------------------------------------

def test_import_error_names_the_extra_and_klkit_does_not_import_it():
    code = ("import sys; import klkit; assert 'klkit.dask' not in sys.modules\n"
            "sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
            "try:\n    import klkit.dask\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    assert 'pip install "klkit[dask]"' in out.stdout


def _boom(b):
    raise AssertionError("computed")


def test_everything_is_lazy():
    x = da.zeros((6, 5000), np.float32, chunks=(3, 2048)).map_blocks(
        _boom, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    one = x.rechunk({1: -1})
    results = [kd.logsumexp(x), kd.logsumexp(x, axis=1, keepdims=True), kd.softmax(x, axis=1),
               kd.log_softmax(one, axis=1), kd.entropy(x), kd.cross_entropy(x, x),
               kd.kl_div(x, one), kd.js_div(x, x), kd.entropy(x, kind="probs"),
               kd.logsumexp(x, axis=1, b=np.ones(5000), return_sign=True)[0]]
    assert all(isinstance(r, da.Array) for r in results)
    assert results[0].shape == () and results[1].shape == (6, 1)
    assert results[2].shape == (6, 5000) and results[4].shape == (6,)
    assert results[0].dtype == np.float32 and results[9].dtype == np.float64


# --------------------------------------------------------------------------
# the reduced axes one chunk: klkit per block, its bits
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_one_chunk_class_axis_gives_klkit_bits(client, dtype):
    p = logits((7, 3000), dtype, seed=1)
    q = near(p, 0.3, seed=2)
    P, Q = da.from_array(p, chunks=(3, -1)), da.from_array(q, chunks=(2, -1))
    cases = [
        ("logsumexp", (p,), dict(axis=-1)), ("logsumexp", (p,), dict(axis=1, keepdims=True)),
        ("softmax", (p,), dict(axis=-1)), ("log_softmax", (p,), dict(axis=1)),
        ("entropy", (p,), dict()), ("entropy", (p,), dict(temperature=0.7, base=2)),
        ("cross_entropy", (p, q), dict()), ("kl_div", (p, q), dict(temperature=2.5)),
        ("kl_div", (p, q), dict(base=10)), ("js_div", (p, q), dict(beta=0.3)),
        ("kl_div", (p, q), dict(kind="logprobs")), ("entropy", (p,), dict(kind="logprobs")),
    ]
    lazy = [getattr(kd, f)(*[P if a is p else Q for a in args], **kw) for f, args, kw in cases]
    for (f, args, kw), got in zip(cases, compute(*lazy)):
        bits(got, getattr(kk, f)(*args, **kw))


def test_logsumexp_weights_sign_complex_and_js_rechunk(client):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, (5, 4000))
    b = rng.uniform(-1, 1, 4000)
    xc = x + 1j * rng.normal(size=x.shape)
    X = da.from_array(x, chunks=(2, 1000))            # split: rechunked
    q = near(x, 0.5, seed=4)
    lazy = [*kd.logsumexp(X, axis=1, b=b, return_sign=True),
            kd.logsumexp(X, axis=None, b=np.abs(b), keepdims=True),
            kd.logsumexp(da.from_array(xc, chunks=(2, 1500)), axis=1),
            kd.softmax(da.from_array(xc, chunks=(2, 1500)), axis=1),
            kd.js_div(X, da.from_array(q, chunks=(3, 700)))]
    got = compute(*lazy)
    expected = [*kk.logsumexp(x, axis=1, b=b, return_sign=True),
                kk.logsumexp(x, axis=None, b=np.abs(b), keepdims=True),
                kk.logsumexp(xc, axis=1), kk.softmax(xc, axis=1), kk.js_div(x, q)]
    for g, e in zip(got, expected):
        bits(g, e)


# --------------------------------------------------------------------------
# a split class axis: trees of the kernels' states
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_split_at_multiples_of_2048_gives_klkit_bits(client, dtype):
    """The pieces are the kernels' own chunks and the fold is theirs:
    logsumexp, log_softmax and entropy bit for bit; softmax within 2 ulp
    (its exp is NumPy's).  The class axis in the middle, the others chunked."""
    n = 3 * CHUNK + 700
    x = np.moveaxis(logits((2, 6, n), dtype, seed=5), 2, 1)          # (2, n, 6), axis 1
    X = da.from_array(x, chunks=(1, (CHUNK, 2 * CHUNK, n - 3 * CHUNK), 4))
    lazy = [kd.logsumexp(X, axis=1), kd.log_softmax(X, axis=1), kd.entropy(X, axis=1),
            kd.entropy(X, axis=1, temperature=0.6, base=2), kd.softmax(X, axis=1)]
    got = compute(*lazy)
    bits(got[0], kk.logsumexp(x, axis=1))
    bits(got[1], kk.log_softmax(x, axis=1))
    bits(got[2], kk.entropy(x, axis=1))
    bits(got[3], kk.entropy(x, axis=1, temperature=0.6, base=2))
    assert ulps(got[4], kk.softmax(x, axis=1)) <= 2


def test_long_rows_split_at_multiples_of_2048_give_klkit_bits(client):
    """Rows longer than the kernels' TILE (65536): their TILE pieces folded
    as the kernels fold them."""
    n = (1 << 16) + 5000
    x = logits((6, n), np.float32, seed=6)
    X = da.from_array(x, chunks=(3, 9 * CHUNK))
    got = compute(kd.logsumexp(X, axis=1), kd.log_softmax(X, axis=1), kd.entropy(X))
    bits(got[0], kk.logsumexp(x, axis=1))
    bits(got[1], kk.log_softmax(x, axis=1))
    bits(got[2], kk.entropy(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_split_anywhere_within_ulps(client, dtype):
    """Chunk boundaries anywhere: a kernel chunk cut in two gives two states.
    Measured over 12 seeds x 4 dtypes: logsumexp <= 1 ulp, log_softmax and
    entropy <= 2 (float64 entropy at temperature 0.6: 4), softmax <= 3 (5
    for float64, the rounding of the folded sum in 1 / (1 + s))."""
    n = 9000
    x = logits((8, n), dtype, seed=7)
    X = da.from_array(x, chunks=(4, cuts(n, 4, seed=8)))
    got = compute(kd.logsumexp(X, axis=1), kd.log_softmax(X, axis=1), kd.entropy(X),
                  kd.entropy(X, temperature=0.6), kd.softmax(X, axis=1))
    f64 = dtype == np.float64
    assert ulps(got[0], kk.logsumexp(x, axis=1)) <= 2
    assert ulps(got[1], kk.log_softmax(x, axis=1)) <= 2
    assert ulps(got[2], kk.entropy(x)) <= (4 if f64 and NO_FMA else 2)
    assert ulps(got[3], kk.entropy(x, temperature=0.6)) <= (4 if f64 else 2)
    assert ulps(got[4], kk.softmax(x, axis=1)) <= (5 if f64 else 3)


def test_several_axes_keepdims_and_axis_none(client):
    """One state per block over several reduced axes.  The error is in ulps
    of |m| + log1p(s) (klkit's own measure: the two cancel where the result
    is much smaller than the maximum m)."""
    x = logits((6, 5000), np.float32, seed=9, special=False)
    X = da.from_array(x, chunks=(4, 2048))
    x3 = logits((4, 300, 7), np.float64, seed=10, special=False)
    X3 = da.from_array(x3, chunks=(2, 100, 3))
    cases = [(X, x, dict(axis=None)), (X, x, dict(axis=None, keepdims=True)),
             (X, x, dict(axis=(0, 1))), (X, x, dict(axis=0)), (X, x, dict(axis=0, keepdims=True)),
             (X3, x3, dict(axis=(0, 2))), (X3, x3, dict(axis=(1, 2), keepdims=True))]
    got = compute(*[kd.logsumexp(A, **kw) for A, _, kw in cases],
                  kd.log_softmax(X, axis=None), kd.softmax(X, axis=0),
                  kd.log_softmax(X3, axis=(0, 1)))
    for g, (_, a, kw) in zip(got, cases):
        e = kk.logsumexp(a, **kw)
        m = np.max(a, axis=kw["axis"], keepdims=kw.get("keepdims", False))
        assert g.shape == e.shape
        assert ulps(g, e, scale=np.abs(m) + np.abs(e - m)) <= 2, kw
    lsm = kk.log_softmax(x, axis=None)
    assert ulps(got[-3], lsm, scale=np.abs(lsm) + 1) <= 2
    assert ulps(got[-2], kk.softmax(x, axis=0)) <= 3
    lsm3 = kk.log_softmax(x3, axis=(0, 1))
    assert ulps(got[-1], lsm3, scale=np.abs(lsm3) + 1) <= 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kl_and_cross_entropy_within_the_kernels_bound(client, dtype):
    """As tests/test_states.py: KL within 4e-7 (float32) / 1e-14 (float64)
    relative of klkit's, for logit differences up to 3 at temperatures 1 and
    2.5; measured <= 2.9e-7 / 1.6e-15.  Special rows (P > 0 = Q: +inf; NaN;
    all -inf; P = 0 over a whole block) as klkit."""
    n = 4 * CHUNK + 123
    rtol = 4e-7 if dtype == np.float32 else 1e-14
    lazy, expected = [], []
    aligned = (2 * CHUNK, CHUNK, n - 3 * CHUNK)
    for seed, (gap, chunks, t, lead_q) in enumerate([(1e-6, cuts(n, 4, 1), 1.0, 4),
                                                     (0.3, aligned, 2.5, 4),
                                                     (3.0, cuts(n, 3, 2), 1.0, 3)]):
        p = logits((8, n), dtype, seed=20 + seed)
        q = near(p, gap, seed=30 + seed)
        p[6, :CHUNK + 100] = -np.inf                   # P = 0 over the first block
        q[7, 11] = -np.inf                             # P > 0 = Q: +inf
        P, Q = da.from_array(p, chunks=(4, chunks)), da.from_array(q, chunks=(lead_q, chunks))
        lazy += [kd.kl_div(P, Q, temperature=t), kd.cross_entropy(P, Q, temperature=t)]
        expected += [kk.kl_div(p, q, temperature=t), kk.cross_entropy(p, q, temperature=t)]
    for g, e in zip(compute(*lazy), expected):
        assert g.dtype == e.dtype
        np.testing.assert_array_equal(np.isnan(g), np.isnan(e))
        np.testing.assert_array_equal(np.isinf(g), np.isinf(e))
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0)


def test_kl_rows_that_need_the_whole_row_are_recomputed(client):
    """Rows whose states cannot give KL to the bound are recomputed whole by
    klkit (its bits): huge logits (the sums are not usable), and rows whose
    log-ratios spread so far (temperature 0.3, differences of 3: ~10 nats)
    that the fold moves sums between distant shifts."""
    p = np.array([[1e20, 0.0, 3.0] * 1500, [0.0, 1.0, 2.0] * 1500])
    q = np.array([[3.0, 1.0, 1e20] * 1500, [0.5, 1.0, 2.0] * 1500])
    P, Q = da.from_array(p, chunks=(1, 1000)), da.from_array(q, chunks=(2, 700))
    w = logits((6, 9000), np.float64, seed=40, special=False)
    v = near(w, 3.0, seed=41)
    W, V = da.from_array(w, chunks=(3, 2000)), da.from_array(v, chunks=(3, 2000))
    got = compute(kd.kl_div(P, Q), kd.cross_entropy(P, Q), kd.kl_div(W, V, temperature=0.3),
                  kd.cross_entropy(W, V, temperature=0.3))
    for g, e in zip(got[:2], (kk.kl_div(p, q), kk.cross_entropy(p, q))):
        bits(g[0], e[0])                               # recomputed: klkit's bits
        np.testing.assert_allclose(g[1], e[1], rtol=1e-14, atol=0)   # an ordinary row
    bits(got[2], kk.kl_div(w, v, temperature=0.3))
    bits(got[3], kk.cross_entropy(w, v, temperature=0.3))


@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_logprobs_and_probs(client, dtype):
    """logprobs: the blocks' sums added (<= 1 ulp for 16/32-bit input,
    <= 5 ulp measured for float64: rel 2e-15 allowed); probs: log p per
    block then the logits path (entropy bits at multiples of 2048)."""
    n = 7000
    x = logits((6, n), np.float64, seed=50, special=False)
    lp = kk.log_softmax(x, axis=1).astype(dtype)
    lq = kk.log_softmax(near(x, 0.5, seed=51), axis=1).astype(dtype)
    pr, qr = np.exp(lp.astype(np.float64)).astype(dtype), np.exp(lq.astype(np.float64)).astype(dtype)
    ch = (4, cuts(n, 3, seed=52))
    LP, LQ = da.from_array(lp, chunks=ch), da.from_array(lq, chunks=ch)
    PR = da.from_array(pr, chunks=(3, (2 * CHUNK, n - 2 * CHUNK)))
    QR = da.from_array(qr, chunks=(3, (2 * CHUNK, n - 2 * CHUNK)))
    got = compute(kd.kl_div(LP, LQ, kind="logprobs"), kd.entropy(LP, kind="logprobs"),
                  kd.cross_entropy(LP, LQ, kind="logprobs", base=2),
                  kd.entropy(PR, kind="probs"), kd.kl_div(PR, QR, kind="probs"),
                  kd.cross_entropy(PR, QR, kind="probs"))
    rtol = 2e-15 if dtype == np.float64 else 2.5e-7
    for g, e in zip(got[:3], [kk.kl_div(lp, lq, kind="logprobs"), kk.entropy(lp, kind="logprobs"),
                              kk.cross_entropy(lp, lq, kind="logprobs", base=2)]):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0)
    bits(got[3], kk.entropy(pr, kind="probs"))
    rtol = 1e-14 if dtype == np.float64 else 4e-7
    np.testing.assert_allclose(got[4], kk.kl_div(pr, qr, kind="probs"), rtol=rtol, atol=0)
    np.testing.assert_allclose(got[5], kk.cross_entropy(pr, qr, kind="probs"), rtol=rtol, atol=0)


def test_broadcasting_scalars_integers_and_edge_shapes(client):
    """q broadcast from (V,) or a Python scalar (weak, as in klkit: float16
    logits with a float q stay float16), integer input (float64), 0-d input,
    an empty class axis, a temperature beyond the kernels' range (klkit's
    NumPy twin per block)."""
    x16 = logits((6, 5000), np.float16, seed=60, special=False)
    qv = np.random.default_rng(61).normal(size=5000).astype(np.float32)
    P1, P2 = da.from_array(x16, chunks=(3, -1)), da.from_array(x16, chunks=(3, 2048))
    xi = np.random.default_rng(62).integers(-5, 5, (4, 5000))
    xf = logits((6, 3000), np.float64, seed=63, special=False)
    e0 = np.zeros((3, 0), np.float32)
    got = compute(kd.kl_div(P1, qv), kd.kl_div(P2, da.from_array(qv, chunks=1000)),
                  kd.cross_entropy(P1, 0.25), kd.kl_div(P2, 0.5, kind="logprobs"),
                  kd.logsumexp(da.from_array(xi, chunks=(2, 2048)), axis=1),
                  kd.logsumexp(da.from_array(np.float32(3.0))),
                  kd.logsumexp(da.from_array(e0), axis=1), kd.entropy(da.from_array(e0)),
                  kd.entropy(da.from_array(xf, chunks=(3, 1000)), temperature=1e-308))
    bits(got[0], kk.kl_div(x16, qv))
    np.testing.assert_allclose(got[1], kk.kl_div(x16, qv), rtol=4e-7)
    bits(got[2], kk.cross_entropy(x16, 0.25))
    np.testing.assert_allclose(got[3], kk.kl_div(x16, 0.5, kind="logprobs"), rtol=2.5e-7)
    assert got[3].dtype == np.float32
    bits(got[4], kk.logsumexp(xi, axis=1))
    bits(got[5], np.asarray(kk.logsumexp(np.float32(3.0))))
    bits(got[6], kk.logsumexp(e0, axis=1))
    bits(got[7], kk.entropy(e0))
    bits(got[8], kk.entropy(xf, temperature=1e-308))


def test_the_tree_shape_does_not_change_the_bits(client):
    """The tree only concatenates states; the last task folds them in chunk
    order, so split_every (the tree's fan-in) changes nothing."""
    x = logits((6, 12000), np.float64, seed=70)
    q = near(x, 0.3, seed=71)
    X, Q = da.from_array(x, chunks=(3, 1500)), da.from_array(q, chunks=(3, 1500))
    runs = []
    for every in (2, 32):
        with dask.config.set(split_every=every):
            runs.append(compute(kd.logsumexp(X, axis=1), kd.entropy(X), kd.kl_div(X, Q),
                                kd.softmax(X, axis=1)))
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert a.tobytes() == b.tobytes()


def test_errors_are_klkits():
    x = np.zeros((3, 4), np.float32)
    X = da.from_array(x, chunks=(2, 2))
    cases = [("entropy", (x,), dict(kind="bits")), ("entropy", (x,), dict(temperature=0)),
             ("kl_div", (x, x), dict(base=1)), ("js_div", (x, x), dict(beta=2)),
             ("kl_div", (x, x), dict(axis=None)), ("kl_div", (x, np.zeros((2, 4))), dict()),
             ("entropy", (x.astype(np.complex64),), dict()), ("logsumexp", (x,), dict(axis=2)),
             ("softmax", (x.astype("U1"),), dict()), ("entropy", (x,), dict(kind="probs",
                                                                          temperature=2))]
    for f, args, kw in cases:
        with pytest.raises(Exception) as want:
            getattr(kk, f)(*args, **kw)
        dargs = [X if a is x else da.from_array(a) for a in args]
        with pytest.raises(want.type) as got:
            getattr(kd, f)(*dargs, **kw)
        assert str(got.value) == str(want.value), f


# --------------------------------------------------------------------------
# segments over Arrow list columns
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("dask.dataframe")
    rng = np.random.default_rng(80)
    n = 40
    lens = rng.integers(0, 6000, n)
    lens[[3, 17]] = 0                                   # empty lists
    lp = [rng.normal(-2, 1, k).astype(np.float32) for k in lens]
    ref = [(v + rng.normal(0, 0.1, v.size)).astype(np.float32) for v in lp]
    null = {5, 30}                                      # null lists: empty sequences
    typ = pa.list_(pa.float32())
    table = pa.table({"id": np.arange(n),
                      "logp": pa.array([None if i in null else v for i, v in enumerate(lp)], typ),
                      "ref_logp": pa.array([None if i in null else v for i, v in enumerate(ref)],
                                           typ),
                      "tag": pa.array([str(i) for i in range(n)])})
    path = tmp_path_factory.mktemp("dask") / "seqs.parquet"
    pq.write_table(table, path, row_group_size=11)      # 4 row groups
    return table, str(path)


def _frame(path):
    import dask.dataframe as dd

    df = dd.read_parquet(path, dtype_backend="pyarrow", split_row_groups=True)
    assert df.npartitions >= 3
    return df


def test_segments_over_parquet_list_columns_give_klkit_bits(client, parquet):
    table, path = parquet
    df = _frame(path)
    lazy = [kd.seq_kl(df, logp="logp", ref="ref_logp", estimator="k3", reduce="sum",
                      clamp=None, empty=0.0),
            kd.seq_kl(df, estimator="k1", reduce="mean", clamp=0.05, empty=-1.0),
            kd.segment_sum(df, "logp"), kd.segment_mean(df, "logp"),
            kd.segment_max(df, "ref_logp"), kd.segment_logsumexp(df, "logp", empty=0.0),
            kd.segment_sum(df["ref_logp"])]
    assert all(len(s.dask) and s.npartitions == df.npartitions for s in lazy)
    got = compute(*lazy)
    lp, ref = table["logp"], table["ref_logp"]
    expected = [kk.seq_kl(lp, ref, estimator="k3", reduce="sum", clamp=None, empty=0.0),
                kk.seq_kl(lp, ref, estimator="k1", reduce="mean", clamp=0.05, empty=-1.0),
                kk.segment_sum(lp), kk.segment_mean(lp), kk.segment_max(ref),
                kk.segment_logsumexp(lp, empty=0.0), kk.segment_sum(ref)]
    index = df.index.compute()
    for g, e in zip(got, expected):
        bits(g.to_numpy(), e)
        assert g.index.equals(index)
    assert got[0].name == "seq_kl" and got[2].name == "logp"


def test_segment_argument_errors(parquet):
    _, path = parquet
    df = _frame(path)
    with pytest.raises(TypeError, match="expected Arrow lists"):
        kd.segment_sum(df, "tag")
    with pytest.raises(ValueError, match="no column 'nope'"):
        kd.segment_sum(df, "nope")
    with pytest.raises(ValueError, match="estimator"):
        kd.seq_kl(df, estimator="k9")
    with pytest.raises(ValueError, match="reduce"):
        kd.seq_kl(df, reduce="max")
    with pytest.raises(TypeError, match="dask DataFrame"):
        kd.segment_sum(np.zeros(3), "logp")
    assert math.isnan(kd.segment_mean(df, "logp").compute().iloc[3])   # empty -> nan


def test_readme_dask_example_runs(client):
    """The README's Dask example (a ```py block: tests/test_readme.py runs
    the ```python ones, which need no dask) runs as written."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    pytest.importorskip("pyarrow")
    section = readme.read_text().split("## Dask arrays and DataFrames", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md Dask example", "exec"), {})
