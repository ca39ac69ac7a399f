"""klkit._cuda's entry points over the host-emulated CUDA kernels
(build.py): the same functions and arguments, the kernels called through
ctypes on host memory.  With tests/fakegpu.py's stand-in GPU arrays (NumPy
memory) the whole GPU path, kernels included, runs without a GPU."""
import ctypes

import numpy as np

try:
    from klkit import _cuda
except ImportError:          # a build without the CUDA kernels: the tests skip
    _cuda = None

MAX_DIMS = 8
DTYPES = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}
OPS = {"entropy": 0, "cross_entropy": 1, "kl_div": 2, "js_div": 3}
KINDS = {"logits": 0, "logprobs": 1}
SEG_OPS = {"sum": 0, "mean": 1, "max": 2, "logsumexp": 3}
ESTIMATORS = {None: 0, "k1": 1, "k2": 2, "k3": 3, "abs": 4}


class Rows(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int), ("lead_ndim", ctypes.c_int),
                ("lead_shape", ctypes.c_int64 * MAX_DIMS),
                ("lead_step", ctypes.c_int64 * MAX_DIMS),
                ("n_rows", ctypes.c_int64), ("n", ctypes.c_int64)]


def _rows(a, n_lead, code=None):
    assert _cuda.readable(a, n_lead), (a.shape, a.strides)
    r = Rows()
    r.data = a.ptr
    r.dtype = DTYPES[a.dtype] if code is None else code
    r.n_rows = int(np.prod(a.shape[:n_lead], dtype=np.int64))
    r.n = int(np.prod(a.shape[n_lead:], dtype=np.int64))
    k = 0
    for s, st in zip(a.shape[:n_lead], a.strides[:n_lead]):
        if s == 1:
            continue
        if k and r.lead_step[k - 1] == s * st:
            r.lead_shape[k - 1] *= s
            r.lead_step[k - 1] = st
            continue
        r.lead_shape[k], r.lead_step[k] = s, st
        k += 1
    r.lead_ndim = k
    return r


def _p(a):
    return None if a is None else ctypes.c_void_p(a.ptr)


def _ref(r):
    return None if r is None else ctypes.byref(r)


class EmuCuda:
    def __init__(self, lib_path):
        self.lib = lib = ctypes.CDLL(str(lib_path))
        for name in ("kk_cu_workspace", "kk_cu_seg_workspace"):
            getattr(lib, name).restype = ctypes.c_int64
            getattr(lib, name).argtypes = [ctypes.c_int64, ctypes.c_int64]

    def _ok(self, err, what):
        assert err == 0, (what, err)

    @staticmethod
    def readable(a, n_lead):
        return _cuda.readable(a, n_lead)

    def workspace(self, n_rows, n):
        return self.lib.kk_cu_workspace(n_rows, n)

    def seg_workspace(self, n_seg, n_tokens):
        return self.lib.kk_cu_seg_workspace(n_seg, n_tokens)

    def lse_rows(self, x, n_lead, out, ws):
        self._ok(self.lib.kk_cu_lse_rows(ctypes.byref(_rows(x, n_lead)), _p(out), _p(ws), None),
                 "lse_rows")

    def softmax_rows(self, x, n_lead, log, out, ws):
        self._ok(self.lib.kk_cu_softmax_rows(ctypes.byref(_rows(x, n_lead)), int(log),
                                             ctypes.byref(_rows(out, n_lead)), _p(ws), None),
                 "softmax_rows")

    def div_rows(self, op, kind, p, q, n_lead, inv_temp, beta, out, ws, saved=None):
        rq = None if q is None else _rows(q, n_lead)
        self._ok(self.lib.kk_cu_div_rows(OPS[op], KINDS[kind], ctypes.byref(_rows(p, n_lead)),
                                         _ref(rq), ctypes.c_double(inv_temp),
                                         ctypes.c_double(beta), _p(out), _p(saved), _p(ws), None),
                 "div_rows")

    def token_rows(self, x, n_lead, targets, ignore_index, inv_temp, weight, lp, ent, lse, smooth,
                   ws):
        self._ok(self.lib.kk_cu_token_rows(
            ctypes.byref(_rows(x, n_lead)), _p(targets), ctypes.c_int64(ignore_index),
            ctypes.c_double(inv_temp), _p(weight), _p(lp), _p(ent), _p(lse), _p(smooth), _p(ws),
            None), "token_rows")

    def token_grad(self, x, n_lead, targets, inv_temp, lse, coef, weight, out):
        self._ok(self.lib.kk_cu_token_grad(
            ctypes.byref(_rows(x, n_lead)), _p(targets), ctypes.c_double(inv_temp), _p(lse),
            _p(coef), _p(weight), ctypes.byref(_rows(out, n_lead)), None), "token_grad")

    def div_grad(self, op, kind, p, q, n_lead, inv_temp, beta, saved, g, dp, dq):
        rq = None if q is None else _rows(q, n_lead)
        rdp = None if dp is None else _rows(dp, n_lead)
        rdq = None if dq is None else _rows(dq, n_lead)
        self._ok(self.lib.kk_cu_div_grad(
            OPS[op], KINDS[kind], ctypes.byref(_rows(p, n_lead)), _ref(rq),
            ctypes.c_double(inv_temp), ctypes.c_double(beta), _p(saved), _p(g), _ref(rdp),
            _ref(rdq), None), "div_grad")

    def softmax_grad(self, log, y, gy, n_lead, out, ws):
        self._ok(self.lib.kk_cu_softmax_grad(int(log), ctypes.byref(_rows(y, n_lead)),
                                             ctypes.byref(_rows(gy, n_lead)),
                                             ctypes.byref(_rows(out, n_lead)), _p(ws), None),
                 "softmax_grad")

    def seg_packed(self, op, est, x, y, x_start, y_start, lens, clamp, empty, out, ws):
        self._ok(self.lib.kk_cu_seg_packed(
            SEG_OPS[op], ESTIMATORS[est], _p(x), DTYPES[x.dtype], ctypes.c_int64(x.strides[0]),
            _p(x_start), _p(y), ctypes.c_int64(y.strides[0] if y is not None else 0),
            _p(y_start), _p(lens), ctypes.c_int64(lens.shape[0]), ctypes.c_int64(x.shape[0]),
            ctypes.c_double(clamp), ctypes.c_double(empty), _p(out), _p(ws), None), "seg_packed")

    def seg_padded(self, op, est, x, y, mask, clamp, empty, out, count=None):
        ry = None if y is None else _rows(y, 1)
        rm = None if mask is None else _rows(mask, 1, 4)
        self._ok(self.lib.kk_cu_seg_padded(
            SEG_OPS[op], ESTIMATORS[est], ctypes.byref(_rows(x, 1)), _ref(ry), _ref(rm),
            ctypes.c_double(clamp), ctypes.c_double(empty), _p(out), _p(count), None),
            "seg_padded")

    def kl_estimate(self, est, x, y, n_lead, clamp, out):
        self._ok(self.lib.kk_cu_kl_estimate(ESTIMATORS[est], ctypes.byref(_rows(x, n_lead)),
                                            ctypes.byref(_rows(y, n_lead)),
                                            ctypes.c_double(clamp), _p(out), None),
                 "kl_estimate")

    def check_index(self, v, lo, hi, skip, first):
        self._ok(self.lib.kk_cu_check_index(_p(v), ctypes.c_int64(v.shape[0]),
                                            ctypes.c_int64(lo), ctypes.c_int64(hi),
                                            ctypes.c_int64(skip), _p(first), None),
                 "check_index")

    def check_sorted(self, v, first):
        self._ok(self.lib.kk_cu_check_sorted(_p(v), ctypes.c_int64(v.shape[0]), _p(first), None),
                 "check_sorted")
