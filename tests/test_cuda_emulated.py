"""The CUDA kernels (kernels/cuda) run on the host: built by g++ against the
emulation of tests/cuda_emu (each block's threads as host threads, real
barriers and warp shuffles), reached through the whole GPU path (_gpu.py,
_gpu_autograd.py) on stand-in GPU arrays, and compared with the CPU path.

This checks the kernels' logic where no GPU is visible: indexing, the
pieces of long rows and sequences, the reduction trees and their fixed
order, the special values, the saved numbers and the gradients, the
validation kernels.  The GPU's own arithmetic, speed and memory behaviour
are checked by the `cuda` tests and bench/gpu_check.sh on a GPU.
"""
import sys
import pathlib

import numpy as np
import pytest

import klkit as kk
from klkit import _device, _kernels

import fakegpu
from fakegpu import device, host

sys.path.insert(0, str(pathlib.Path(__file__).parent / "cuda_emu"))
import build as emu_build            # noqa: E402
import emucuda                       # noqa: E402

try:
    import torch
except ImportError:                  # pragma: no cover - the test extra installs it
    torch = None


@pytest.fixture(scope="module")
def emu_lib(tmp_path_factory):
    if fakegpu._cuda is None:
        pytest.skip("this build has no CUDA kernels")
    lib = emu_build.build(tmp_path_factory.mktemp("cuda_emu"))
    if lib is None:
        pytest.skip("no g++ to build the emulation")
    return emucuda.EmuCuda(lib)


@pytest.fixture
def emu(monkeypatch, emu_lib):
    monkeypatch.setitem(_device.ADAPTERS, "fakegpu", fakegpu.Framework)
    monkeypatch.setattr(_kernels, "_GPU", emu_lib)
    yield emu_lib
    _device._FRAMEWORKS.pop("fakegpu", None)


TOL = {"float32": 2e-6, "float16": 2e-6, "bfloat16": 2e-6, "float64": 1e-13}


def _close(gpu, cpu, dtype, what=""):
    assert isinstance(gpu, fakegpu.Array)
    g, c = host(gpu), np.asarray(cpu)
    assert g.dtype == c.dtype and g.shape == c.shape, what
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c), err_msg=what)
    gi = np.where(np.isinf(g), np.sign(g), 0)
    ci = np.where(np.isinf(c), np.sign(c), 0)
    np.testing.assert_array_equal(gi, ci, err_msg=what)
    f = np.isfinite(c)
    if f.any():
        err = np.abs(g[f].astype(np.float64) - c[f]) / (1 + np.abs(c[f].astype(np.float64)))
        assert err.max() <= TOL[dtype], (what, float(err.max()))


def _np_dtype(name):
    return fakegpu._np_dtype(name)


def _logits(shape, dtype, seed=0, scale=4.0):
    x = np.random.default_rng(seed).standard_normal(shape) * scale
    return x.astype(np.float32).astype(_np_dtype(dtype))


DTYPES = ["float32", "float64", "float16",
          pytest.param("bfloat16", marks=pytest.mark.skipif(fakegpu.ml_dtypes is None,
                                                            reason="needs ml_dtypes"))]
# a warp per row and a block per row, in every dtype; rows of three pieces
# (each block is 256 host threads here: the long rows in two dtypes)
SHAPES = [(6, 7), (3, 2500), (3, 70001)]


def _skip_long(shape, dtype):
    if shape[-1] > 65536 and dtype not in ("float32", "float64"):
        pytest.skip("long rows: float32 and float64 only")


def _special_rows(x):
    x = x.copy()
    if x.shape[0] >= 3:
        x[0, ::5] = -np.inf
        x[1, :] = -np.inf
        x[2, x.shape[1] // 2] = np.nan
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_dense_rows(emu, dtype, shape):
    _skip_long(shape, dtype)
    x = _special_rows(_logits(shape, dtype))
    _close(kk.logsumexp(device(x), axis=-1), kk.logsumexp(x, axis=-1), dtype, "lse")
    _close(kk.log_softmax(device(x), axis=-1), kk.log_softmax(x, axis=-1), dtype, "log_softmax")
    _close(kk.softmax(device(x), axis=-1), kk.softmax(x, axis=-1), dtype, "softmax")
    xi = x.astype(np.float64)
    xi[0, 1] = np.inf
    xi = xi.astype(x.dtype)
    _close(kk.softmax(device(xi), axis=-1), kk.softmax(xi, axis=-1), dtype, "softmax +inf")
    _close(kk.log_softmax(device(xi), axis=-1), kk.log_softmax(xi, axis=-1), dtype,
           "log_softmax +inf")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div", "js_div"])
def test_divergence_rows(emu, dtype, shape, op):
    _skip_long(shape, dtype)
    p = _special_rows(_logits(shape, dtype, 1))
    q = _logits(shape, dtype, 2)
    fn = getattr(kk, op)
    args = (p,) if op == "entropy" else (p, q)
    for kw in ({"temperature": 0.8}, {"kind": "logprobs"}):
        a = args if "temperature" in kw else tuple(
            kk.log_softmax(z, axis=-1).astype(z.dtype) for z in args)
        _close(fn(*[device(z) for z in a], **kw), fn(*a, **kw), dtype, f"{op} {kw}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("offset, temperature", [(0.0, 1.0), (0.0, 0.7), (1000.0, 1.0),
                                                 (1000.0, 0.7)])
def test_kl_of_close_logits_keeps_relative_accuracy(emu, dtype, offset, temperature):
    """KL ~ 1e-9 of close logits, also large ones and at T != 1: relative
    accuracy, against the CPU kernels' (themselves checked with mpmath)"""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 5000)) * 3).astype(dtype)
    y = (x + rng.standard_normal(x.shape) * 1e-4).astype(dtype)
    x, y = x + np.asarray(offset, dtype), y + np.asarray(offset, dtype)
    g = host(kk.kl_div(device(x), device(y), temperature=temperature))
    c = kk.kl_div(x, y, temperature=temperature)
    assert np.all(np.abs(g - c) <= (1e-4 if dtype == "float32" else 1e-9) * c), (g, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5, 9), (2, 2, 3000), (1, 2, 40000)])
def test_token_rows(emu, dtype, shape):
    x = _logits(shape, dtype)
    t = np.random.default_rng(1).integers(0, shape[-1], shape[:-1])
    t[0, 1] = -100
    g = kk.token_logprobs(device(x), device(t), temperature=0.7, return_entropy=True,
                         return_lse=True)
    c = kk.token_logprobs(x, t, temperature=0.7, return_entropy=True, return_lse=True)
    for a, b, n in zip(g, c, ("lp", "entropy", "lse")):
        _close(a, b, dtype, n)
    w = np.linspace(0.1, 2, shape[-1]).astype(np.float32)
    for kw in ({}, {"label_smoothing": 0.1}, {"label_smoothing": 0.2, "reduction": "none"}):
        _close(kk.softmax_cross_entropy(device(x), device(t), weight=device(w), **kw),
               kk.softmax_cross_entropy(x, t, weight=w, **kw), dtype, str(kw))


def test_rows_alone_and_in_a_batch_give_the_same_bits(emu):
    x = _logits((4, 40000), "float32")
    y = _logits((4, 40000), "float32", 1)
    for fn in (lambda a, b: kk.logsumexp(a, axis=-1), lambda a, b: kk.entropy(a),
               lambda a, b: kk.kl_div(a, b), lambda a, b: kk.js_div(a, b)):
        batch = host(fn(device(x), device(y)))
        alone = host(fn(device(x[3:4]), device(y[3:4])))
        assert np.array_equal(alone, batch[3:4])


@pytest.mark.parametrize("dtype", ["float32", "float64", DTYPES[3]])
def test_segments(emu, dtype):
    rng = np.random.default_rng(5)
    lens = np.r_[1, 0, 9000, 3, 0, 4096, 4097, rng.integers(0, 50, 10)]
    off = np.r_[2, 2 + np.cumsum(lens)]
    v = _logits(int(off[-1]), dtype, 6, 1.0)
    w = _logits(int(off[-1]), dtype, 7, 1.0)
    for op in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp"):
        fn = getattr(kk, op)
        _close(fn(device(v), device(off)), fn(v, off), dtype, op)
    for est in ("k1", "k2", "k3", "abs"):
        for kw in ({"reduce": "sum"}, {"reduce": "mean", "clamp": 0.5}):
            _close(kk.seq_kl(device(v), device(w), device(off), estimator=est, **kw),
                   kk.seq_kl(v, w, off, estimator=est, **kw), dtype, est)
        _close(kk.kl_estimate(device(v), device(w), est, clamp=0.3),
               kk.kl_estimate(v, w, est, clamp=0.3), dtype, est)
    V, W = v[:3000].reshape(3, 1000), w[:3000].reshape(3, 1000)
    m = rng.random((3, 1000)) > 0.4
    m[1] = False
    for op in ("segment_sum", "segment_max", "segment_logsumexp"):
        _close(getattr(kk, op)(device(V), mask=device(m)), getattr(kk, op)(V, mask=m), dtype, op)
    _close(kk.seq_kl(device(V), device(W), mask=device(m), estimator="k3", reduce="mean"),
           kk.seq_kl(V, W, mask=m, estimator="k3", reduce="mean"), dtype, "padded")
    for mode in ("token-mean", "seq-mean-token-mean"):
        _close(kk.agg_loss(device(v), device(off), mode=mode), kk.agg_loss(v, off, mode=mode),
               dtype, mode)


def test_validation_kernels(emu):
    x, t = _logits((2, 3, 5), "float32"), np.array([[0, 1, 7], [2, -100, 4]])
    with pytest.raises(ValueError, match=r"class index 7 at position \(0, 2\)"):
        kk.token_logprobs(device(x), device(t))
    lp = host(kk.token_logprobs(device(x), device(t), check=False))
    assert np.isnan(lp[0, 2]) and np.isfinite(lp[1, 0])
    v = _logits(10, "float32")
    with pytest.raises(ValueError, match=r"offsets\[2\] = 3 < offsets\[1\] = 5"):
        kk.segment_sum(device(v), device(np.array([0, 5, 3, 10])))
    with pytest.raises(ValueError, match=r"offsets\[-1\] = 12 lies beyond the 10 values"):
        kk.segment_sum(device(v), device(np.array([0, 4, 12])))
    s = host(kk.segment_sum(device(v), device(np.array([0, 5, 3, 10])), check=False))
    assert np.isfinite(s[0]) and np.isnan(s[1])


# --------------------------------------------------------------------------
# the backward kernels, through the GPU path's autograd on torch tensors
# --------------------------------------------------------------------------

@pytest.fixture
def emu_torch(monkeypatch, emu_lib):
    if torch is None:
        pytest.skip("needs torch")

    yield fakegpu.torch_as_gpu(monkeypatch, emu_lib)
    _device._FRAMEWORKS.pop("torch", None)


def _grads(fn, *xs):
    outs, grads = fakegpu.weighted_grads(fn, *xs)
    return outs + grads


def _compare(emu_torch, fn, *xs, tol=2e-6):
    ref = _grads(fn, *xs)
    emu_torch()
    got = _grads(fn, *xs)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        a, b = a.to(torch.float64).numpy(), b.to(torch.float64).numpy()
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        f = np.isfinite(b)
        assert np.all(np.abs(a[f] - b[f]) <= tol * (1 + np.abs(b[f]))), \
            float(np.max(np.abs(a[f] - b[f])))


def _tt(shape, dtype=None, seed=0):
    return torch.from_numpy(_logits(shape, "float32", seed)).to(dtype or torch.float32)


@pytest.mark.parametrize("shape", [(3, 9), (2, 40000)])
def test_backward_token_rows(emu_torch, shape):
    t = torch.tensor([1, -100, 0][:shape[0]])
    _compare(emu_torch, lambda x: kk.token_logprobs(x, t, temperature=0.8, return_entropy=True,
                                                    return_lse=True), _tt(shape))
    _compare(emu_torch, lambda x: kk.softmax_cross_entropy(x, t, label_smoothing=0.1),
             _tt(shape))
    # (over axis 0 of the small shape only: 40000 rows of 2 are 5000 blocks here)
    _compare(emu_torch, lambda x: kk.logsumexp(x, axis=0 if shape[1] < 100 else 1), _tt(shape))
    _compare(emu_torch, lambda x: kk.log_softmax(x, axis=-1), _tt(shape))
    _compare(emu_torch, lambda x: kk.softmax(x, axis=-1), _tt(shape, torch.bfloat16),
             tol=1e-2)


@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div", "js_div"])
@pytest.mark.parametrize("kind", ["logits", "logprobs"])
def test_backward_divergences(emu_torch, op, kind):
    p, q = _tt((2, 2500), seed=1), _tt((2, 2500), seed=2)
    if kind == "logprobs":
        p, q = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
    fn = getattr(kk, op)
    if op == "entropy":
        _compare(emu_torch, lambda a: fn(a, kind=kind), p)
    else:
        _compare(emu_torch, lambda a, b: fn(a, b, kind=kind), p, q, tol=1e-5)


def test_edge_cases(emu):
    """P > 0 where Q = 0 after a larger logit, -inf logits before any finite
    one under label smoothing, empty arrays of many batch axes"""
    p = np.array([[0.0, 120.0], [120.0, 0.0]], np.float32)
    q = np.array([[-np.inf, 0.0], [0.0, -np.inf]], np.float32)
    for fn in (kk.cross_entropy, kk.kl_div):
        _close(fn(device(p), device(q)), fn(p, q), "float32", fn.__name__)
    x = np.array([[-np.inf, 0.0], [0.0, -np.inf]], np.float32)
    t = np.array([1, 0])
    for kw in ({"label_smoothing": 0.1, "reduction": "none"},
               {"label_smoothing": 0.1, "weight": np.array([0.0, 1.0], np.float32),
                "reduction": "none"}):
        w = kw.pop("weight", None)
        _close(kk.softmax_cross_entropy(device(x), device(t), weight=None if w is None
                                        else device(w), **kw),
               kk.softmax_cross_entropy(x, t, weight=w, **kw), "float32", str(kw))
    e = np.zeros((2,) * 9 + (0,), np.float32)[(slice(None, None, 1),) * 9]
    _close(kk.logsumexp(device(e), axis=-1), kk.logsumexp(e, axis=-1), "float32", "empty")


def test_backward_float64_sum_and_tiny_temperature(emu_torch):
    p, q = _tt((2, 300), torch.float64, 1), _tt((2, 300), torch.float64, 2)
    t = torch.tensor([3, 7])

    def run():
        a, b = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
        kk.kl_div(a, b).sum().backward()            # sum's gradient has stride 0
        # 1/T beyond float32's range, logits / T ~ 1e9: computed in float64
        x = (_tt((2, 300), seed=3) * 1e-30).requires_grad_(True)
        kk.token_logprobs(x, t, temperature=1e-39).sum().backward()
        return a.grad, b.grad, x.grad
    ref = run()
    emu_torch()
    got = run()
    for a, b in zip(got, ref):       # (the last: float32 gradients ~1/T, some beyond float32)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-12)
