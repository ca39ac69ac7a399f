"""A stand-in GPU for testing klkit's GPU path (klkit/_gpu.py) where no GPU
is visible: "device" arrays are NumPy arrays of the subclass Array, the
framework adapter does their array operations in NumPy, and the CUDA module
is replaced by FakeCuda, whose entry points run the CPU kernels on the same
memory with the CUDA entry points' contract (bad targets and spans give NaN
rows, validation kernels lower a "first bad index").

What this checks: everything the GPU path does in Python (arguments,
dtypes, shapes, layouts, copies of rows that are not contiguous, workspace
sizes, validation and its messages, the loss arithmetic, result types).
The CUDA kernels themselves are checked by the tests marked `cuda`.
"""
import numpy as np

from klkit import _cpu

try:
    from klkit import _cuda
except ImportError:          # a build without the CUDA kernels
    _cuda = None

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None


class Array(np.ndarray):
    """a "GPU array": its type's module is fakegpu and it has the interface"""

    @property
    def __cuda_array_interface__(self):
        raise AssertionError("klkit must describe fake GPU arrays through their adapter")


def _np_dtype(name):
    return ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)


def device(a):
    """a host array as a fake GPU array (a copy)"""
    return np.array(a, copy=True).view(Array)


def host(a):
    """the NumPy view of a fake GPU array (or of its description, a Dev), a
    torch CPU tensor included (bfloat16 through ml_dtypes)"""
    if a is None:
        return None
    a = a.obj if hasattr(a, "obj") else a
    if type(a).__module__.split(".")[0] == "torch":
        a = a.detach()
        if str(a.dtype) == "torch.bfloat16":
            import torch

            return a.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return a.numpy()
    return np.asarray(a).view(np.ndarray)


class Framework:
    """the adapter of fake GPU arrays (klkit._device.ADAPTERS["fakegpu"])"""
    name = "fakegpu"

    def dtype(self, a):
        return a.dtype.name

    def empty(self, like, shape, dtype):
        a = np.empty(shape, _np_dtype(dtype))
        a.fill(np.nan if a.dtype.kind == "f" else 7)       # poisoned: every output is written
        return a.view(Array)

    def full(self, like, shape, value, dtype):
        return np.full(shape, value, _np_dtype(dtype)).view(Array)

    def astype(self, a, dtype):
        return a.view(np.ndarray).astype(_np_dtype(dtype)).view(Array)

    def permute(self, a, perm):
        return a.transpose(perm)

    def contiguous(self, a):
        return np.array(a.view(np.ndarray), order="C", copy=True).view(Array)

    def broadcast_to(self, a, shape):
        return np.broadcast_to(a.view(np.ndarray), shape).view(Array)

    def log(self, a):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(a.view(np.ndarray)).view(Array)

    def where(self, c, a, b):
        return np.where(c, a, b).view(Array)

    def describe(self, a):
        from klkit._device import Dev

        item = a.dtype.itemsize
        return Dev(a, a.ctypes.data, tuple(a.shape), tuple(s // item for s in a.strides),
                   a.dtype.name, 0, 0, item)


def torch_framework():
    """torch CPU tensors taken as GPU tensors: klkit's torch adapter with
    device 0 and the null stream (for the autograd Functions of the GPU
    path, which need torch tensors)"""
    from klkit._device import Dev, _Torch

    class TorchAsGpu(_Torch):
        def describe(self, a):
            a = a.detach()
            return Dev(a, a.data_ptr(), tuple(a.shape), tuple(a.stride()), self.dtype(a), 0, 0,
                       a.element_size())
    return TorchAsGpu


def _prec(d):
    return "float64" if d.dtype == "float64" else "float32"


class FakeCuda:
    """klkit._cuda's entry points, computed by the CPU kernels"""

    def readable(self, a, n_lead):
        return _cuda.readable(a, n_lead)

    def workspace(self, n_rows, n):
        return _cuda.workspace(n_rows, n)

    def seg_workspace(self, n_seg, n_tokens):
        return _cuda.seg_workspace(n_seg, n_tokens)

    @staticmethod
    def _ws(ws, nbytes):
        assert ws.nbytes >= nbytes

    def lse_rows(self, x, n_lead, out, ws):
        self._ws(ws, _cuda.workspace(out.shape[0], x.size // max(out.shape[0], 1)))
        _cpu.lse_rows(host(x), n_lead, host(out))

    def softmax_rows(self, x, n_lead, log, out, ws):
        assert _cuda.readable(x, n_lead) and _cuda.readable(out, n_lead)
        _cpu.softmax_rows(host(x), n_lead, log, host(out))

    def div_rows(self, op, kind, p, q, n_lead, inv_temp, beta, out, ws, saved=None):
        assert _cuda.readable(p, n_lead) and (q is None or _cuda.readable(q, n_lead))
        assert q is None or q.dtype == p.dtype
        _cpu.div_rows(op, kind, _prec(p), host(p), host(q), n_lead, inv_temp, beta, host(out))
        if saved is None:
            return
        from klkit._autograd import _lse_rows

        sv = host(saved)
        sv[:, 0] = _lse_rows(host(p), n_lead, _prec(p), inv_temp)
        sv[:, 1] = 0.0 if q is None else _lse_rows(host(q), n_lead, _prec(p), inv_temp)
        sv[:, 2] = host(out)
        if op == "kl_div":
            sv[:, 3] = sv[:, 0] - sv[:, 1]
        if op == "js_div":
            _cpu.js_sums(_prec(p), host(p), host(q), n_lead, inv_temp, beta, sv)

    def token_grad(self, x, n_lead, targets, inv_temp, lse, coef, weight, out):
        _cpu.token_grad(_prec(x), host(x), n_lead, host(targets), inv_temp, host(lse),
                        host(coef), host(weight), host(out))

    def div_grad(self, op, kind, p, q, n_lead, inv_temp, beta, saved, g, dp, dq):
        _cpu.div_grad(op, kind, _prec(p), host(p), host(q), n_lead, inv_temp, beta, host(saved),
                      host(g), host(dp), host(dq))

    def softmax_grad(self, log, y, gy, n_lead, out, ws):
        _cpu.softmax_grad(log, host(y), host(gy), n_lead, host(out))

    def token_rows(self, x, n_lead, targets, ignore_index, inv_temp, weight, lp, ent, lse,
                   smooth, ws):
        assert _cuda.readable(x, n_lead)
        t = host(targets).copy()
        n = x.shape[-1]
        bad = (t != ignore_index) & ((t < 0) | (t >= n))
        t[bad] = ignore_index
        _cpu.token_rows(_prec(x), host(x), n_lead, t, ignore_index, inv_temp, host(weight),
                        host(lp), host(ent), host(lse), host(smooth))
        for o in (lp, ent, lse, smooth):
            if o is not None:
                host(o)[bad] = np.nan

    def seg_packed(self, op, est, x, y, x_start, y_start, lens, clamp, empty, out, ws):
        self._ws(ws, _cuda.seg_workspace(lens.shape[0], x.shape[0]))
        s, ln = host(x_start).copy(), host(lens).copy()
        n = x.shape[0]
        bad = (ln < 0) | (s < 0) | (s > n - ln)
        s[bad], ln[bad] = 0, 0
        _cpu.seg_packed(op, est, _prec(x), host(x), host(y), s,
                        None if y is None else s, ln, clamp, empty, host(out))
        host(out)[bad] = np.nan

    def seg_padded(self, op, est, x, y, mask, clamp, empty, out, count=None):
        _cpu.seg_padded(op, est, _prec(x), host(x), host(y), host(mask), clamp, empty,
                        host(out), host(count))

    def kl_estimate(self, est, x, y, n_lead, clamp, out):
        _cpu.kl_estimate(est, _prec(x), host(x), host(y), n_lead, clamp, host(out))

    def check_index(self, v, lo, hi, skip, first):
        vv, f = host(v), host(first)
        bad = np.flatnonzero((vv != skip) & ((vv < lo) | (vv >= hi)))
        if bad.size:
            f[0] = min(f[0], bad[0])

    def check_sorted(self, v, first):
        vv, f = host(v), host(first)
        bad = np.flatnonzero(vv[1:] < vv[:-1])
        if bad.size:
            f[0] = min(f[0], bad[0])


def torch_as_gpu(monkeypatch, kernels):
    """A function that, called, makes torch CPU tensors take the GPU path
    with `kernels` as klkit._cuda (FakeCuda, or the emulated kernels) for the
    rest of the test: torch autograd then runs the GPU path's Functions."""
    import torch
    from klkit import _device, _kernels

    def enable():
        real = _device.is_device
        monkeypatch.setattr(_device, "is_device",
                            lambda x: isinstance(x, torch.Tensor) or real(x))
        monkeypatch.setitem(_device.ADAPTERS, "torch", torch_framework())
        monkeypatch.setattr(_kernels, "_GPU", kernels)
        _device._FRAMEWORKS.pop("torch", None)
    return enable


def weighted_grads(fn, *xs):
    """(outputs, gradients) of sum_k (output_k * fixed weights) with respect
    to copies of the tensors xs"""
    import torch

    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    out = fn(*xs)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]
    total = sum(((o.to(torch.float64) * (torch.linspace(0.5, 1.5, o.numel(), dtype=torch.float64)
                                         .reshape(o.shape) + k)).sum())
                for k, o in enumerate(outs))
    total.backward()
    return [o.detach() for o in outs], [x.grad for x in xs]
