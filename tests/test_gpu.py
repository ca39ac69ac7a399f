"""The GPU path.

* Without a GPU (fake_gpu): the Python side of the GPU path (klkit/_gpu.py,
  _device.py, the backend seam) on stand-in GPU arrays whose kernels are
  the CPU kernels (tests/fakegpu.py): every public function reaches it, and
  gives the CPU path's results (bitwise, as the same kernels compute them;
  the loss arithmetic within 1e-12), types and errors.
* On a GPU (marked `cuda`, skipped where none is visible): the CUDA kernels
  against the CPU path within each function's bound, determinism (the same
  bits run to run, and for a row alone and in a batch), torch and CuPy in
  and out, streams, bf16, and the errors of bad data.
"""
import math

import numpy as np
import pytest

import klkit as kk
from klkit import _device, _kernels
from klkit._registry import FUNCTIONS

import fakegpu
from fakegpu import device, host


@pytest.fixture
def fake_gpu(monkeypatch):
    if fakegpu._cuda is None:
        pytest.skip("this build has no CUDA kernels")
    monkeypatch.setitem(_device.ADAPTERS, "fakegpu", fakegpu.Framework)
    monkeypatch.setattr(_kernels, "_GPU", fakegpu.FakeCuda())
    yield
    _device._FRAMEWORKS.pop("fakegpu", None)


def _same(gpu, cpu, rtol=0.0):
    assert isinstance(gpu, fakegpu.Array), type(gpu)
    g, c = host(gpu), np.asarray(cpu)
    assert g.dtype == c.dtype, (g.dtype, c.dtype)
    assert g.shape == c.shape, (g.shape, c.shape)
    if rtol:
        np.testing.assert_allclose(g, c, rtol=rtol, atol=0, equal_nan=True)
    else:
        np.testing.assert_array_equal(g, c)


def _rng(seed=0):
    return np.random.default_rng(seed)


DTYPES = ["float32", "float64", "float16"]


def _arr(shape, dtype="float32", seed=0, scale=3.0):
    return (_rng(seed).standard_normal(shape) * scale).astype(dtype)


# --------------------------------------------------------------------------
# the Python side, on stand-in GPU arrays
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", [((7, 33), -1), ((7, 33), 0), ((4, 5, 6), (0, 2)),
                                         ((3, 2100), None), ((), None), ((0, 4), -1)])
def test_dense(fake_gpu, dtype, shape, axis):
    x = _arr(shape, dtype)
    x.reshape(-1)[:1] = -np.inf
    for keepdims in (False, True):
        _same(kk.logsumexp(device(x), axis=axis, keepdims=keepdims),
              kk.logsumexp(x, axis=axis, keepdims=keepdims))
    _same(kk.softmax(device(x), axis=axis), kk.softmax(x, axis=axis))
    _same(kk.log_softmax(device(x), axis=axis), kk.log_softmax(x, axis=axis))


def test_softmax_out_and_strided_input(fake_gpu):
    x = _arr((6, 40))
    xs = device(x)[:, ::2]                      # rows not contiguous: copied on the device
    out = device(np.zeros((6, 20), np.float32))
    r = kk.log_softmax(xs, axis=-1, out=out)
    assert r is out
    _same(out, kk.log_softmax(x[:, ::2], axis=-1))
    out0 = device(np.zeros((6, 20), np.float32))
    kk.softmax(xs, axis=0, out=out0)            # an out= whose rows are strided
    _same(out0, kk.softmax(x[:, ::2], axis=0))


@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div", "js_div"])
@pytest.mark.parametrize("kind", ["logits", "logprobs", "probs"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_divergences(fake_gpu, op, kind, dtype):
    p, q = _arr((5, 3, 70), dtype, 1), _arr((3, 70), dtype, 2)
    if kind == "logprobs":
        p, q = kk.log_softmax(p, axis=-1).astype(dtype), kk.log_softmax(q, axis=-1).astype(dtype)
    if kind == "probs":
        p, q = kk.softmax(p, axis=-1).astype(dtype), kk.softmax(q, axis=-1).astype(dtype)
    fn = getattr(kk, op)
    args = (p,) if op == "entropy" else (p, q)
    for kw in ({}, {"base": 2, "temperature": 0.7}, {"axis": 1}):
        if kind != "logits" and "temperature" in kw:
            continue
        if kw.get("axis") == 1 and op != "entropy":
            continue
        _same(fn(*[device(a) for a in args], kind=kind, **kw), fn(*args, kind=kind, **kw))


def test_divergence_mixed_dtypes_and_huge_temperature(fake_gpu):
    p, q = _arr((4, 50), "float32", 1), _arr((4, 50), "float64", 2)
    _same(kk.kl_div(device(p), device(q)), kk.kl_div(p, q))
    p16 = p.astype(np.float16)
    _same(kk.js_div(device(p16), device(p)), kk.js_div(p16, p))
    _same(kk.entropy(device(p), temperature=1e-40), kk.entropy(p, temperature=1e-40))


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_logprobs(fake_gpu, dtype):
    x = _arr((3, 4, 300), dtype)
    t = _rng(1).integers(0, 300, (3, 4))
    t[0, 1] = -100
    for kw in ({}, {"temperature": 0.6, "return_entropy": True, "return_lse": True},
               {"return_lse": True}):
        g = kk.token_logprobs(device(x), device(t), **kw)
        c = kk.token_logprobs(x, t, **kw)
        if isinstance(c, tuple):
            for a, b in zip(g, c):
                assert (a is None) == (b is None)
                if a is not None:
                    _same(a, b)
        else:
            _same(g, c)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy(fake_gpu, reduction, eps, weighted):
    x = _arr((10, 37), "float32")
    t = _rng(2).integers(0, 37, 10)
    t[3] = 5
    t[4] = -100
    w = _rng(3).random(37).astype(np.float32) if weighted else None
    kw = dict(weight=None if w is None else device(w), label_smoothing=eps, reduction=reduction)
    g = kk.softmax_cross_entropy(device(x), device(t), **kw)
    c = kk.softmax_cross_entropy(x, t, weight=w, label_smoothing=eps, reduction=reduction)
    _same(g, c, rtol=1e-6)


def test_cross_entropy_all_ignored_is_nan_as_on_the_cpu(fake_gpu):
    x, t = _arr((3, 5)), np.full(3, -100)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = kk.softmax_cross_entropy(device(x), device(t))
    assert np.isnan(host(g))
    assert np.isnan(kk.softmax_cross_entropy(x, t))


@pytest.mark.parametrize("op", ["segment_sum", "segment_mean", "segment_max",
                                "segment_logsumexp"])
def test_segments(fake_gpu, op):
    v = _arr(50, "float32")
    off = np.array([0, 0, 7, 7, 30, 50])
    fn = getattr(kk, op)
    _same(fn(device(v), device(off)), fn(v, off))
    _same(fn(device(v[:33]), device(off[:-1] + 3)), fn(v[:33], off[:-1] + 3))  # offsets[0] > 0
    with pytest.raises(ValueError, match=r"offsets\[-1\] = 33 leaves the last 17 of the 50"):
        fn(device(v), device(off[:-1] + 3))                 # a tail outside every sequence
    vp = _arr((4, 9), "float64")
    m = _rng(4).random((4, 9)) > 0.4
    m[2] = False
    _same(fn(device(vp), mask=device(m)), fn(vp, mask=m))


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3", "abs"])
def test_seq_kl_and_kl_estimate(fake_gpu, estimator):
    a, b = _arr(40, "float32", 1, 0.3), _arr(40, "float32", 2, 0.3)
    off = np.array([0, 10, 10, 40])
    for kw in ({"reduce": "sum"}, {"reduce": "mean", "clamp": 0.2}):
        _same(kk.seq_kl(device(a), device(b), device(off), estimator=estimator, **kw),
              kk.seq_kl(a, b, off, estimator=estimator, **kw))
    A, B = a.reshape(4, 10), b.reshape(4, 10)
    m = np.arange(40).reshape(4, 10) % 3 > 0
    _same(kk.seq_kl(device(A), device(B), mask=device(m), estimator=estimator),
          kk.seq_kl(A, B, mask=m, estimator=estimator))
    _same(kk.kl_estimate(device(A), device(B[:1]), estimator, clamp=0.25),
          kk.kl_estimate(A, B[:1], estimator, clamp=0.25))


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                                  "seq-mean-token-sum-norm"])
def test_agg_loss(fake_gpu, mode):
    v = _arr(30, "float32")
    off = np.array([0, 4, 4, 30])
    _same(kk.agg_loss(device(v), device(off), mode=mode), kk.agg_loss(v, off, mode=mode),
          rtol=1e-6)
    V, m = v.reshape(3, 10), np.arange(30).reshape(3, 10) % 4 > 0
    _same(kk.agg_loss(device(V), mask=device(m), mode=mode),
          kk.agg_loss(V, mask=m, mode=mode), rtol=1e-6)
    _same(kk.agg_loss(device(V), mask=device(np.zeros_like(m)), mode=mode),
          kk.agg_loss(V, mask=np.zeros_like(m), mode=mode))


def test_every_public_function_takes_the_gpu_path(fake_gpu):
    """Each registered function given GPU arrays computes there (its result
    is a GPU array), none falls back to host conversion."""
    x, t, off = device(_arr((2, 6))), device(np.array([1, 2])), device(np.array([0, 5, 12]))
    v = device(_arr(12))
    calls = {
        "logsumexp": lambda: kk.logsumexp(x), "softmax": lambda: kk.softmax(x),
        "log_softmax": lambda: kk.log_softmax(x), "entropy": lambda: kk.entropy(x),
        "cross_entropy": lambda: kk.cross_entropy(x, x), "kl_div": lambda: kk.kl_div(x, x),
        "js_div": lambda: kk.js_div(x, x), "token_logprobs": lambda: kk.token_logprobs(x, t),
        "softmax_cross_entropy": lambda: kk.softmax_cross_entropy(x, t),
        "segment_sum": lambda: kk.segment_sum(v, off),
        "segment_mean": lambda: kk.segment_mean(v, off),
        "segment_max": lambda: kk.segment_max(v, off),
        "segment_logsumexp": lambda: kk.segment_logsumexp(v, off),
        "kl_estimate": lambda: kk.kl_estimate(v, v), "seq_kl": lambda: kk.seq_kl(v, v, off),
        "agg_loss": lambda: kk.agg_loss(v, off),
    }
    assert set(calls) == set(FUNCTIONS), set(FUNCTIONS) ^ set(calls)
    for name, call in calls.items():
        assert isinstance(call(), fakegpu.Array), name


def test_bad_data_raises_the_cpu_message_after_the_kernels(fake_gpu):
    x = _arr((2, 3, 5))
    t = np.array([[0, 1, 7], [2, -100, 4]])
    with pytest.raises(ValueError) as cpu:
        kk.token_logprobs(x, t)
    with pytest.raises(ValueError) as gpu:
        kk.token_logprobs(device(x), device(t))
    assert str(gpu.value) == str(cpu.value)
    v = _arr(10)
    for off in ([0, 5, 3, 10], [0, 4, 11], [-1, 4, 10]):
        with pytest.raises(ValueError) as cpu:
            kk.segment_sum(v, np.array(off))
        with pytest.raises(ValueError) as gpu:
            kk.segment_sum(device(v), device(np.array(off)))
        assert str(gpu.value) == str(cpu.value)


def test_check_false_skips_the_validation_bad_rows_are_nan(fake_gpu):
    x = _arr((3, 5))
    t = np.array([0, 7, 1])
    lp = host(kk.token_logprobs(device(x), device(t), check=False))
    assert np.isnan(lp[1]) and np.array_equal(lp[[0, 2]], kk.token_logprobs(x, t[[0, 0, 2]])[[0, 2]])
    v = _arr(10)
    s = host(kk.segment_sum(device(v), device(np.array([0, 4, 12])), check=False))
    assert s[0] == kk.segment_sum(v[:4], np.array([0, 4]))[0] and np.isnan(s[1])
    with pytest.raises(ValueError, match="offsets"):
        kk.segment_sum(v, np.array([0, 4, 12]), check=False)       # the CPU always checks


def test_masks_of_0_and_1_as_on_the_cpu(fake_gpu):
    v = _arr((2, 4))
    m = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], np.int8)
    _same(kk.segment_sum(device(v), mask=device(m)), kk.segment_sum(v, mask=m))
    m2 = m.astype(np.float32)
    m2[1, 2] = 0.5
    with pytest.raises(ValueError, match=r"expected booleans or 0/1 values .* found 0\.5$"):
        kk.segment_sum(device(v), mask=device(m2))


def test_mixed_host_and_gpu_arrays_are_refused(fake_gpu):
    x = _arr((2, 5))
    with pytest.raises(TypeError, match=r"^q: a host array mixed with GPU arrays"):
        kk.kl_div(device(x), x)
    with pytest.raises(TypeError, match=r"^targets: a host array"):
        kk.token_logprobs(device(x), np.array([0, 1]))
    with pytest.raises(TypeError, match="complex"):
        kk.logsumexp(device(x.astype(np.complex64)))
    with pytest.raises(TypeError, match="weights b"):
        kk.logsumexp(device(x), b=device(x))


def test_gpu_arrays_are_recognised_by_their_protocols():
    """CUDA DLPack devices and the CUDA array interface mark GPU arrays;
    host arrays (NumPy, lists, DLPack on the CPU) do not."""
    class DL:
        def __init__(self, dev):
            self.dev = dev

        def __dlpack_device__(self):
            return (self.dev, 0)

    class CAI:
        __cuda_array_interface__ = {}

    assert _device.is_device(DL(2)) and _device.is_device(DL(13)) and _device.is_device(CAI())
    assert not any(_device.is_device(a) for a in (DL(1), np.zeros(3), [1.0], 3.0))
    if torch is not None:
        assert not _device.is_device(torch.zeros(3))


def test_without_a_driver_a_gpu_array_gets_a_clear_error(monkeypatch):
    """On this build without a GPU: the argument named, what is missing said."""
    if fakegpu._cuda is None:
        pytest.skip("this build has no CUDA kernels")
    if fakegpu._cuda.versions()[2] > 0:
        pytest.skip("a GPU is visible")
    monkeypatch.setitem(_device.ADAPTERS, "fakegpu", fakegpu.Framework)
    monkeypatch.setattr(_kernels, "_GPU", None)
    monkeypatch.setattr(_kernels, "_GPU_ERROR", None)
    with pytest.raises(TypeError, match=r"^a: GPU arrays need klkit's CUDA kernels, but "
                                        r"(no NVIDIA driver|no GPU)"):
        kk.logsumexp(device(_arr(3)))


@pytest.mark.parametrize("versions, message", [
    ((0, 13000, 0, 100), "no NVIDIA driver was found"),
    ((12080, 13000, 1, 0), r"the NVIDIA driver supports CUDA 12\.8, older than the CUDA 13\.0 "
                           r"klkit was built with: install a driver for CUDA 13\.0 or newer"),
    ((13000, 13000, 0, 100), r"no GPU is visible"),
])
def test_the_gpu_backend_says_what_is_missing(monkeypatch, versions, message):
    if fakegpu._cuda is None:
        pytest.skip("this build has no CUDA kernels")
    monkeypatch.setattr(fakegpu._cuda, "versions", lambda: versions)
    monkeypatch.setattr(_kernels, "_GPU", None)
    monkeypatch.setattr(_kernels, "_GPU_ERROR", None)
    with pytest.raises(TypeError, match=r"^x: GPU arrays need klkit's CUDA kernels, but " + message):
        _kernels.gpu_backend("x")
    monkeypatch.setattr(_kernels, "_GPU_ERROR", None)


def test_show_config_reports_the_cuda_build(capsys):
    kk.show_config()
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("cuda:")][0]
    if fakegpu._cuda is None:
        assert "not built" in line or "off" in line
    else:
        assert "built for" in line and "linked statically" in line


# --------------------------------------------------------------------------
# on a GPU
# --------------------------------------------------------------------------

def _frameworks():
    out = []
    try:
        import torch

        if torch.cuda.is_available():
            out.append("torch")
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            out.append("cupy")
    except Exception:
        pass
    return out or ["none"]


FRAMEWORKS = _frameworks()


def _to_gpu(fw, a):
    if fw == "torch":
        import torch

        if a.dtype.name == "bfloat16":
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).cuda()
        return torch.from_numpy(np.ascontiguousarray(a)).cuda()
    if fw == "cupy":
        import cupy

        return cupy.asarray(a)
    pytest.skip("no GPU framework")


def _to_host(a):
    if type(a).__module__.split(".")[0] == "torch":
        return a.cpu().numpy()
    return a.get()


# bounds on |gpu - cpu| per result, relative to 1 + |cpu| (the functions'
# documented float32 and float64 bounds, both paths within them)
TOL = {"float32": 2e-6, "float16": 2e-6, "bfloat16": 2e-6, "float64": 1e-13}


def _close(g, c, dtype, name):
    g, c = _to_host(g), np.asarray(c)
    assert g.dtype == c.dtype and g.shape == c.shape, name
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c), err_msg=name)
    np.testing.assert_array_equal(np.isinf(g) * np.sign(g), np.isinf(c) * np.sign(c),
                                  err_msg=name)
    f = np.isfinite(c)
    err = np.abs(g[f].astype(np.float64) - c[f]) / (1 + np.abs(c[f].astype(np.float64)))
    assert err.size == 0 or err.max() <= TOL[dtype], (name, float(err.max()))


def _gpu_dtypes(fw):
    return ["float32", "float64", "float16"] + (["bfloat16"] if fw == "torch" else [])


def _np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


@pytest.mark.cuda
@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("shape", [(5, 1), (9, 300), (3, 4097), (2, 70001), (1, 0)])
def test_cuda_rows_agree_with_the_cpu(fw, shape):
    for dtype in _gpu_dtypes(fw):
        x = _arr(shape, "float32", 1, 4.0).astype(_np_dtype(dtype))
        y = _arr(shape, "float32", 2, 4.0).astype(_np_dtype(dtype))
        if x.size:
            x.reshape(-1)[::97] = -np.inf
        t = _rng(3).integers(0, max(shape[-1], 1), shape[:-1])
        gx, gy, gt = _to_gpu(fw, x), _to_gpu(fw, y), _to_gpu(fw, t)
        _close(kk.logsumexp(gx, axis=-1), kk.logsumexp(x, axis=-1), dtype, "lse")
        _close(kk.log_softmax(gx, axis=-1), kk.log_softmax(x, axis=-1), dtype, "log_softmax")
        _close(kk.softmax(gx, axis=-1), kk.softmax(x, axis=-1), dtype, "softmax")
        for op in ("entropy", "cross_entropy", "kl_div", "js_div"):
            fn = getattr(kk, op)
            args = (x,) if op == "entropy" else (x, y)
            gargs = (gx,) if op == "entropy" else (gx, gy)
            _close(fn(*gargs, temperature=0.8), fn(*args, temperature=0.8), dtype, op)
            lx = kk.log_softmax(args[0], axis=-1).astype(_np_dtype(dtype))
            if x.size:
                _close(fn(_to_gpu(fw, lx), kind="logprobs") if op == "entropy" else
                       fn(_to_gpu(fw, lx), _to_gpu(fw, lx[::-1].copy()), kind="logprobs"),
                       fn(lx, kind="logprobs") if op == "entropy" else
                       fn(lx, lx[::-1].copy(), kind="logprobs"), dtype, op + " logprobs")
        if shape[-1]:
            r = kk.token_logprobs(gx, gt, return_entropy=True, return_lse=True)
            c = kk.token_logprobs(x, t, return_entropy=True, return_lse=True)
            for a, b, n in zip(r, c, ("lp", "entropy", "lse")):
                _close(a, b, dtype, n)


@pytest.mark.cuda
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cuda_kl_of_close_logits_keeps_relative_accuracy(fw):
    x = _arr((8, 32768), "float64", 1)
    y = x + 1e-6 * _arr((8, 32768), "float64", 2)
    g = _to_host(kk.kl_div(_to_gpu(fw, x), _to_gpu(fw, y)))
    c = kk.kl_div(x, y)
    assert np.all(np.abs(g - c) <= 1e-10 * c)


@pytest.mark.cuda
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cuda_results_are_deterministic_and_batch_invariant(fw):
    x = _arr((64, 262144 // 8), "float32", 5)
    g = _to_gpu(fw, x)
    runs = [_to_host(kk.logsumexp(g, axis=-1)) for _ in range(3)]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    alone = _to_host(kk.logsumexp(g[17:18], axis=-1))
    assert np.array_equal(alone, runs[0][17:18])
    for fn in (kk.entropy, lambda a: kk.kl_div(a, a[::-1])):
        a = [_to_host(fn(g)) for _ in range(3)]
        assert all(np.array_equal(a[0], b) for b in a[1:])
    v = _arr(10**6, "float32", 6)
    lens = np.r_[np.ones(1000, np.int64), 900000, np.full(99, 1000)]
    off = np.r_[0, np.cumsum(lens)]
    gv, go = _to_gpu(fw, v), _to_gpu(fw, off)
    s = [_to_host(kk.segment_sum(gv, go)) for _ in range(3)]
    assert all(np.array_equal(s[0], b) for b in s[1:])
    np.testing.assert_allclose(s[0], kk.segment_sum(v, off), rtol=1e-12)


@pytest.mark.cuda
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cuda_segments_agree_with_the_cpu(fw):
    v = _arr(100000, "float32", 7, 0.5)
    w = _arr(100000, "float32", 8, 0.5)
    lens = _rng(9).integers(0, 5000, 60)
    off = np.r_[0, np.cumsum(lens)]
    off = off[off <= v.size]
    gv, gw, go = _to_gpu(fw, v), _to_gpu(fw, w), _to_gpu(fw, off)
    for op in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp"):
        _close(getattr(kk, op)(gv, go), getattr(kk, op)(v, off), "float32", op)
    for est in ("k1", "k2", "k3", "abs"):
        _close(kk.seq_kl(gv, gw, go, estimator=est), kk.seq_kl(v, w, off, estimator=est),
               "float32", est)
        _close(kk.kl_estimate(gv, gw, est), kk.kl_estimate(v, w, est), "float32", est)
    V, W = v[:99000].reshape(99, 1000), w[:99000].reshape(99, 1000)
    m = _rng(10).random((99, 1000)) > 0.3
    _close(kk.seq_kl(_to_gpu(fw, V), _to_gpu(fw, W), mask=_to_gpu(fw, m), reduce="mean"),
           kk.seq_kl(V, W, mask=m, reduce="mean"), "float32", "padded")


@pytest.mark.cuda
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cuda_outputs_are_the_callers_type_on_its_device(fw):
    x = _to_gpu(fw, _arr((4, 10)))
    r = kk.log_softmax(x, axis=-1)
    assert type(r) is type(x)
    if fw == "torch":
        assert r.device == x.device
        import torch

        s = torch.cuda.Stream()
        with torch.cuda.stream(s):          # runs on the caller's current stream
            z = kk.logsumexp(x, axis=-1)
        s.synchronize()
        np.testing.assert_array_equal(_to_host(z), _to_host(kk.logsumexp(x, axis=-1)))


@pytest.mark.cuda
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_cuda_bad_data_raises_as_on_the_cpu(fw):
    x = _arr((3, 5))
    t = np.array([0, 9, 1])
    with pytest.raises(ValueError, match=r"targets: class index 9 at position \(1,\)"):
        kk.token_logprobs(_to_gpu(fw, x), _to_gpu(fw, t))
    with pytest.raises(ValueError, match=r"offsets: must be non-decreasing"):
        kk.segment_sum(_to_gpu(fw, _arr(10)), _to_gpu(fw, np.array([0, 6, 2, 10])))
    with pytest.raises(ValueError, match=r"lies beyond the 10 values"):
        kk.segment_sum(_to_gpu(fw, _arr(10)), _to_gpu(fw, np.array([0, 6, 20])))
    assert math.isfinite(float(_to_host(kk.logsumexp(_to_gpu(fw, x)))))


# --------------------------------------------------------------------------
# autograd of the GPU path, on torch CPU tensors taken as GPU tensors
# --------------------------------------------------------------------------

try:
    import torch
except ImportError:          # pragma: no cover - the test extra installs it
    torch = None


@pytest.fixture
def torch_as_gpu(monkeypatch):
    """a function that makes torch CPU tensors take the GPU path (kernels:
    FakeCuda), from then on in the test"""
    if torch is None or fakegpu._cuda is None:
        pytest.skip("needs torch and a build with the CUDA kernels")

    yield fakegpu.torch_as_gpu(monkeypatch, fakegpu.FakeCuda())
    _device._FRAMEWORKS.pop("torch", None)


_grads = fakegpu.weighted_grads


def _compare(torch_as_gpu, fn, *xs, rtol=1e-6):
    ref_vals, ref_grads = _grads(fn, *xs)
    torch_as_gpu()
    vals, grads = _grads(fn, *xs)
    for a, b in zip(vals + grads, ref_vals + ref_grads):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a.to(torch.float64).numpy(), b.to(torch.float64).numpy(),
                                   rtol=rtol, atol=1e-12, equal_nan=True)


def _t(shape, dtype=torch.float32 if torch else None, seed=0):
    return torch.from_numpy(_arr(shape, "float64", seed)).to(dtype)


@pytest.mark.parametrize("kw", [{}, {"return_entropy": True, "return_lse": True},
                                {"temperature": 0.7, "return_entropy": True}])
def test_autograd_token_logprobs(torch_as_gpu, kw):
    t = torch.tensor([[3, -100, 0], [7, 8, 1]])
    _compare(torch_as_gpu, lambda x: kk.token_logprobs(x, t, **kw), _t((2, 3, 9)))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("eps, weighted", [(0.0, False), (0.2, True), (0.1, False)])
def test_autograd_softmax_cross_entropy(torch_as_gpu, reduction, eps, weighted):
    t = torch.tensor([3, -100, 0, 5])
    w = torch.linspace(0.1, 2.0, 6) if weighted else None
    _compare(torch_as_gpu, lambda x: kk.softmax_cross_entropy(
        x, t, weight=w, label_smoothing=eps, reduction=reduction), _t((4, 6)))


@pytest.mark.parametrize("axis, keepdims", [(-1, False), (0, True), ((0, 2), False), (None, False)])
def test_autograd_dense(torch_as_gpu, axis, keepdims):
    x = _t((3, 4, 5))
    _compare(torch_as_gpu, lambda a: kk.logsumexp(a, axis=axis, keepdims=keepdims), x)
    _compare(torch_as_gpu, lambda a: kk.log_softmax(a, axis=axis), x)
    _compare(torch_as_gpu, lambda a: kk.softmax(a, axis=axis), x)


@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div", "js_div"])
@pytest.mark.parametrize("kind", ["logits", "logprobs"])
def test_autograd_divergences(torch_as_gpu, op, kind):
    p, q = _t((2, 3, 8), seed=1), _t((3, 8), seed=2)
    if kind == "logprobs":
        p, q = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
    fn = getattr(kk, op)
    if op == "entropy":
        _compare(torch_as_gpu, lambda a: fn(a, kind=kind, base=2), p)
    else:
        _compare(torch_as_gpu, lambda a, b: fn(a, b, kind=kind, temperature=0.9
                                               if kind == "logits" else 1.0), p, q, rtol=1e-5)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "logsumexp"])
def test_autograd_segments(torch_as_gpu, op):
    v = _t(20)
    v[5] = v[6]                  # a tie for max
    off = torch.tensor([0, 4, 4, 12, 20])
    m = torch.from_numpy(np.arange(20).reshape(4, 5) % 3 > 0)
    fn = getattr(kk, "segment_" + op)
    _compare(torch_as_gpu, lambda a: fn(a, off), v)
    _compare(torch_as_gpu, lambda a: fn(a.reshape(4, 5), mask=m), v)


@pytest.mark.parametrize("est", ["k1", "k2", "k3", "abs"])
def test_autograd_estimators(torch_as_gpu, est):
    a, b = _t(20, seed=3) * 0.2, _t(20, seed=4) * 0.2
    off = torch.tensor([0, 7, 7, 20])
    _compare(torch_as_gpu, lambda x, y: kk.seq_kl(x, y, off, estimator=est, reduce="mean",
                                                  clamp=0.3), a, b)
    _compare(torch_as_gpu, lambda x, y: kk.kl_estimate(x, y[:4], est), a.reshape(5, 4), b)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        _compare(torch_as_gpu, lambda x: kk.agg_loss(x, off, mode=mode), a)
