"""klkit.dask against klkit on the computed arrays, on a real distributed
cluster (two worker processes on loopback, started once for the module).

klkit's bits everywhere: with the reduced axes in one chunk (klkit per
block), and with the class axis split anywhere (on the kernels' 2048 grid or
off it, unevenly, in 1-element chunks), for every input dtype, adversarial
rows (special values, huge, tiny, cancelling), temperatures and kinds.
Where bits differ, the message gives the distance in ulps of klkit's
result.
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


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as c:
        yield c


def compute(*xs):
    return dask.compute(*xs)


def ulps(got, expected):
    """Largest |got - expected| in ulps of expected's dtype at |expected|
    (klkit's result); equal values and NaN pairs count 0, a NaN against a
    number or infinities that differ count inf."""
    got, expected = np.asarray(got), np.asarray(expected)
    g, e = got.astype(np.float64), expected.astype(np.float64)
    big = float(np.finfo(expected.dtype).max)
    same = (g == e) | (np.isnan(g) & np.isnan(e))
    with np.errstate(invalid="ignore", over="ignore"):
        sp = np.spacing(np.minimum(np.abs(e), big).astype(expected.dtype)).astype(np.float64)
        d = np.where(same, 0.0, np.abs(g - e) / sp)
    d = np.where(np.isnan(d), np.inf, d)
    return float(d.max()) if d.size else 0.0


def assert_bits(got, expected, what=""):
    """got is klkit's result: dtype, shape and every byte (NaN, -0.0); the
    ulp distance in the message where it is not."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    assert got.tobytes() == expected.tobytes(), f"{what}: {ulps(got, expected)} ulp from klkit"


bits = assert_bits


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
# a split class axis: the kernels' own pieces, their states folded in order
# --------------------------------------------------------------------------

def adversarial(n, seed):
    """float64 logits, one kind of row each: normal, -inf entries, all -inf,
    NaN, +inf, every third -inf, tiny (1e-30: all but equal), a result
    that cancels its maximum (logsumexp -0.00025 from m = -0.5: its ulps
    are far smaller than the maximum's), huge (1e20; 3e4 for float16),
    one-hot, wide (scale 30)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, (11, n))
    x[1, 5] = -np.inf
    x[2] = -np.inf
    x[3, 7] = np.nan
    x[4, 9] = np.inf
    x[5, ::3] = -np.inf
    x[6] *= 1e-30
    x[7] = -40.0
    x[7, 0] = -0.5
    x[7, 1:41] = np.linspace(-4.75, -4.5, 40)
    x[8] += 1e20
    x[9] = 0.0
    x[9, n // 2] = 40.0
    x[10] *= 10
    return x


def as_dtype(x64, dtype):
    """x64 in dtype (huge rows at float16's scale: 3e4)."""
    x = x64.copy()
    if dtype == np.float16:
        x[8] -= 1e20 - 3e4
    return x.astype(dtype)


#: chunkings of the class axis of length n: on the kernels' 2048 grid and
#: off it, uneven, with a 1-element chunk, chunks shorter than a kernel chunk
def chunkings(n):
    return [("grid", CHUNK), ("grid-uneven", (2 * CHUNK, CHUNK, n - 3 * CHUNK)),
            ("anywhere", cuts(n, 4, seed=n)), ("one-element", (1, 2046, 1, n - 2048)),
            ("short", 700)]


SPLIT_N = 3 * CHUNK + 700


@pytest.mark.parametrize("name", [c for c, _ in chunkings(SPLIT_N)])
@pytest.mark.parametrize("dtype", DTYPES, ids=IDS)
def test_split_class_axis_gives_klkit_bits(client, dtype, name):
    """Every dense function, temperatures 0.4 / 1 / 2.5 / 0.7 (not a float),
    kinds logits / logprobs / probs, over the adversarial rows, q near p or
    far from it (P > 0 = Q, NaN in q), rows chunked too: klkit's bits."""
    n = SPLIT_N
    chunks = dict(chunkings(n))[name]
    x64 = adversarial(n, seed=5)
    gap = np.random.default_rng(6).choice([1e-6, 0.3, 3.0], size=(11, 1))
    q64 = x64 + np.random.default_rng(7).normal(0, 1, x64.shape) * gap
    q64[10, 13] = -np.inf
    q64[3, 8] = np.nan
    x, q = as_dtype(x64, dtype), as_dtype(q64, dtype)
    lp = kk.log_softmax(x, axis=1).astype(dtype)
    lq = kk.log_softmax(q, axis=1).astype(dtype)
    pr = np.exp(lp.astype(np.float64)).astype(dtype)
    qr = np.exp(lq.astype(np.float64)).astype(dtype)

    def D(a):
        return da.from_array(a, chunks=(6, chunks))
    cases = [("logsumexp", (x,), dict(axis=1)), ("softmax", (x,), dict(axis=1)),
             ("log_softmax", (x,), dict(axis=1)), ("logsumexp", (x,), dict(axis=1, keepdims=True))]
    for t in (0.4, 1.0, 2.5, 0.7):
        cases += [("entropy", (x,), dict(temperature=t)),
                  ("cross_entropy", (x, q), dict(temperature=t)),
                  ("kl_div", (x, q), dict(temperature=t, base=2))]
    for f in ("entropy", "cross_entropy", "kl_div"):
        cases += [(f, (lp, lq)[:1 if f == "entropy" else 2], dict(kind="logprobs")),
                  (f, (pr, qr)[:1 if f == "entropy" else 2], dict(kind="probs"))]
    lazy = [getattr(kd, f)(*[D(a) for a in args], **kw) for f, args, kw in cases]
    for (f, args, kw), got in zip(cases, compute(*lazy)):
        assert_bits(got, getattr(kk, f)(*args, **kw), f"{f} {kw}")


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)],
                         ids=["float32", "float64"])
def test_class_axis_in_one_element_chunks(client, dtype):
    """Every kernel chunk a seam across many blocks; the class axis first
    (axis 0), and 1-D input in chunks of 37."""
    x = np.moveaxis(as_dtype(adversarial(300, seed=8)[:8], dtype), 1, 0)      # (300, 8)
    q = near(x.T, 0.5, seed=9).T
    X, Q = da.from_array(x, chunks=(1, 8)), da.from_array(q, chunks=(1, 8))
    v = x[:, 0].copy()
    V = da.from_array(v, chunks=37)
    got = compute(kd.logsumexp(X, axis=0), kd.softmax(X, axis=0), kd.entropy(X, axis=0),
                  kd.kl_div(X, Q, axis=0, temperature=0.7), kd.cross_entropy(X, Q, axis=0),
                  kd.kl_div(V, V[::-1]), kd.log_softmax(V))
    assert_bits(got[0], kk.logsumexp(x, axis=0))
    assert_bits(got[1], kk.softmax(x, axis=0))
    assert_bits(got[2], kk.entropy(x, axis=0))
    assert_bits(got[3], kk.kl_div(x, q, axis=0, temperature=0.7))
    assert_bits(got[4], kk.cross_entropy(x, q, axis=0))
    assert_bits(got[5], np.asarray(kk.kl_div(v, v[::-1])))
    assert_bits(got[6], kk.log_softmax(v))


def test_long_rows_give_klkit_bits(client):
    """Rows longer than the kernels' TILE (65536): logsumexp folds its TILE
    pieces as the kernels do, softmax and entropy the whole row; chunk
    boundaries on the grid and off it."""
    n = (1 << 16) + 5000
    x = logits((6, n), np.float32, seed=6)
    for chunks in (9 * CHUNK, 10000):
        X = da.from_array(x, chunks=(3, chunks))
        got = compute(kd.logsumexp(X, axis=1), kd.softmax(X, axis=1), kd.entropy(X))
        assert_bits(got[0], kk.logsumexp(x, axis=1))
        assert_bits(got[1], kk.softmax(x, axis=1))
        assert_bits(got[2], kk.entropy(x))


@pytest.mark.parametrize("dtype", [np.dtype(np.float32), np.dtype(np.float64)],
                         ids=["float32", "float64"])
def test_several_axes_keepdims_and_axis_none(client, dtype):
    """Over several reduced axes the row is their C-order flattening: the
    first one's chunks are cut at the kernels' pieces of it, the others
    rechunked whole.  klkit's bits, cancelling rows included."""
    x = logits((6, 5000), dtype, seed=9)
    x[2] = -np.inf
    X = da.from_array(x, chunks=(4, 2048))
    x3 = logits((4, 300, 7), dtype, seed=10, special=False)
    x3[1, :, 0] = np.linspace(-40, -0.05, 300)
    X3 = da.from_array(x3, chunks=(2, 100, 3))
    cases = [(X, x, dict(axis=None)), (X, x, dict(axis=None, keepdims=True)),
             (X, x, dict(axis=(0, 1))), (X, x, dict(axis=0)), (X, x, dict(axis=0, keepdims=True)),
             (X3, x3, dict(axis=(0, 2))), (X3, x3, dict(axis=(1, 2), keepdims=True)),
             (X3, x3, dict(axis=(0, 1)))]
    got = compute(*[kd.logsumexp(A, **kw) for A, _, kw in cases],
                  kd.log_softmax(X, axis=None), kd.softmax(X, axis=0),
                  kd.log_softmax(X3, axis=(0, 1)), kd.softmax(X3, axis=(0, 2)))
    for g, (_, a, kw) in zip(got, cases):
        assert_bits(g, kk.logsumexp(a, **kw), kw)
    assert_bits(got[-4], kk.log_softmax(x, axis=None))
    assert_bits(got[-3], kk.softmax(x, axis=0))
    assert_bits(got[-2], kk.log_softmax(x3, axis=(0, 1)))
    assert_bits(got[-1], kk.softmax(x3, axis=(0, 2)))


def test_kl_special_rows_and_rows_computed_whole(client):
    """KL: P > 0 = Q (+inf), NaN, all -inf, P = 0 over whole blocks (Q's
    mass there joins at the end); rows whose logits are too large for the
    sums (1e20 against 3) are summed by klkit over the whole row.  klkit's
    bits."""
    n = 4 * CHUNK + 123
    p = logits((8, n), np.float64, seed=20)
    q = near(p, 0.3, seed=21)
    p[6, :CHUNK + 100] = -np.inf                   # P = 0 over the first block
    q[7, 11] = -np.inf                             # P > 0 = Q: +inf
    p[0, ::7] = 1e20
    q[0, 3::7] = 1e20
    p32, q32 = p.astype(np.float32), q.astype(np.float32)
    lazy = []
    for a, b in ((p, q), (p32, q32)):
        for chunks in ((2 * CHUNK, CHUNK, n - 3 * CHUNK), cuts(n, 3, 2), 1000):
            A, B = da.from_array(a, chunks=(4, chunks)), da.from_array(b, chunks=(3, chunks))
            lazy += [kd.kl_div(A, B), kd.kl_div(A, B, temperature=0.4),
                     kd.cross_entropy(A, B, temperature=2.5)]
    got = compute(*lazy)
    i = 0
    for a, b in ((p, q), (p32, q32)):
        for _ in range(3):
            assert_bits(got[i], kk.kl_div(a, b))
            assert_bits(got[i + 1], kk.kl_div(a, b, temperature=0.4))
            assert_bits(got[i + 2], kk.cross_entropy(a, b, temperature=2.5))
            i += 3


def test_broadcasting_scalars_integers_and_edge_shapes(client):
    """q broadcast from (V,) or a Python scalar (weak, as in klkit: float16
    logits with a float q stay float16), integer input (float64), 0-d input,
    an empty class axis, no rows, a temperature beyond the kernels' range
    (klkit's NumPy twin per block)."""
    x16 = logits((6, 5000), np.float16, seed=60, special=False)
    qv = np.random.default_rng(61).normal(size=5000).astype(np.float32)
    P1, P2 = da.from_array(x16, chunks=(3, -1)), da.from_array(x16, chunks=(3, 2048))
    xi = np.random.default_rng(62).integers(-5, 5, (4, 5000))
    xf = logits((6, 3000), np.float64, seed=63, special=False)
    e0 = np.zeros((3, 0), np.float32)
    r0 = np.zeros((0, 5000), np.float32)
    R0 = da.from_array(r0, chunks=(1, 1500))
    got = compute(kd.kl_div(P1, qv), kd.kl_div(P2, da.from_array(qv, chunks=1000)),
                  kd.cross_entropy(P1, 0.25), kd.kl_div(P2, 0.5, kind="logprobs"),
                  kd.logsumexp(da.from_array(xi, chunks=(2, 2048)), axis=1),
                  kd.logsumexp(da.from_array(np.float32(3.0))),
                  kd.logsumexp(da.from_array(e0), axis=1), kd.entropy(da.from_array(e0)),
                  kd.entropy(da.from_array(xf, chunks=(3, 1000)), temperature=1e-308),
                  kd.cross_entropy(P2, da.from_array(qv, chunks=1000), temperature=0.7),
                  kd.logsumexp(R0, axis=1), kd.kl_div(R0, R0), kd.softmax(R0, axis=1))
    bits(got[0], kk.kl_div(x16, qv))
    bits(got[1], kk.kl_div(x16, qv))
    bits(got[2], kk.cross_entropy(x16, 0.25))
    bits(got[3], kk.kl_div(x16, 0.5, kind="logprobs"))
    assert got[3].dtype == np.float32
    bits(got[4], kk.logsumexp(xi, axis=1))
    bits(got[5], np.asarray(kk.logsumexp(np.float32(3.0))))
    bits(got[6], kk.logsumexp(e0, axis=1))
    bits(got[7], kk.entropy(e0))
    bits(got[8], kk.entropy(xf, temperature=1e-308))
    bits(got[9], kk.cross_entropy(x16, qv, temperature=0.7))
    bits(got[10], kk.logsumexp(r0, axis=1))
    bits(got[11], kk.kl_div(r0, r0))
    bits(got[12], kk.softmax(r0, axis=1))


def test_neither_tree_shape_nor_scheduler_changes_the_bits(client):
    """The tree only concatenates states and the last task folds them in
    row order; KL's carry goes block after block: split_every, the
    scheduler (the cluster's two processes, threads, one thread) change
    nothing."""
    x = logits((6, 12000), np.float64, seed=70)
    q = near(x, 0.3, seed=71)
    X, Q = da.from_array(x, chunks=(3, 1500)), da.from_array(q, chunks=(3, 1500))
    expected = [kk.logsumexp(x, axis=1), kk.entropy(x), kk.kl_div(x, q), kk.softmax(x, axis=1),
                kk.cross_entropy(x, q, kind="logprobs")]
    for every in (2, 32):
        for scheduler in (None, "threads", "synchronous"):
            with dask.config.set(split_every=every):
                got = dask.compute(kd.logsumexp(X, axis=1), kd.entropy(X), kd.kl_div(X, Q),
                                   kd.softmax(X, axis=1),
                                   kd.cross_entropy(X, Q, kind="logprobs"),
                                   scheduler=scheduler)
            for g, e in zip(got, expected):
                bits(g, e)


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
    """The README's Dask example runs as written on a distributed client
    (tests/test_readme.py runs it too, on dask's default scheduler)."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parent.parent / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside the tests")
    pytest.importorskip("pyarrow")
    section = readme.read_text().split("# Dask arrays and DataFrames", 1)[1]
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    blocks = re.findall(r"```(?:python|py)\n(.*?)```", section, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md Dask example", "exec"), {})
