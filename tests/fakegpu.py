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
    return None if a is None else np.asarray(a.obj if hasattr(a, "obj") else a).view(np.ndarray)


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

    def div_rows(self, op, kind, p, q, n_lead, inv_temp, beta, out, ws):
        assert _cuda.readable(p, n_lead) and (q is None or _cuda.readable(q, n_lead))
        assert q is None or q.dtype == p.dtype
        _cpu.div_rows(op, kind, _prec(p), host(p), host(q), n_lead, inv_temp, beta, host(out))

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
