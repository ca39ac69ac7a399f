# cython: language_level=3, boundscheck=False, wraparound=False
"""Validated entry into the CUDA kernels (kernels/cuda).

The Python layer (_device.py) hands every GPU array over as a _device.Dev:
its device pointer, shape, strides in elements, dtype name, device and the
producer's current stream.  This module describes each array to C as a
kk_cu_rows (its leading axes the batch, any strides; its row axes, which
must be one contiguous run: readable() says whether they are, and the
Python layer copies them otherwise), checks what C relies on (dtypes, shapes,
lengths of vectors), makes the arrays' device current, launches on the
stream and returns without synchronising.  Launch errors are RuntimeErrors.

Checks that need the data (targets in range, offsets sorted) are kernels
of their own (check_index, check_sorted) whose result the Python layer reads
once, after the computation has been queued.
"""
from libc.stdint cimport int64_t, uintptr_t

cdef extern from "klkit_cuda.h":
    int KK_F16, KK_BF16, KK_F32, KK_F64, KK_BOOL
    int KK_LOGITS, KK_LOGPROBS
    int KK_ENTROPY, KK_XENT, KK_KL, KK_JS
    int KK_SEG_SUM, KK_SEG_MEAN, KK_SEG_MAX, KK_SEG_LSE
    int KK_EST_NONE, KK_EST_K1, KK_EST_K2, KK_EST_K3, KK_EST_ABS
    enum: KK_CU_MAX_DIMS
    ctypedef struct kk_cu_rows:
        const void *data
        int dtype
        int lead_ndim
        int64_t lead_shape[KK_CU_MAX_DIMS]
        int64_t lead_step[KK_CU_MAX_DIMS]
        int64_t n_rows, n
    int64_t kk_cu_workspace(int64_t n_rows, int64_t n)
    int kk_cu_lse_rows(const kk_cu_rows *x, double *out, void *ws, void *stream) nogil
    int kk_cu_softmax_rows(const kk_cu_rows *x, int log_, const kk_cu_rows *out, void *ws,
                           void *stream) nogil
    int kk_cu_div_rows(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q,
                       double inv_temp, double beta, double *out, double *saved, void *ws,
                       void *stream) nogil
    int kk_cu_token_rows(const kk_cu_rows *x, const int64_t *targets, int64_t ignore_index,
                         double inv_temp, const void *weight, double *lp, double *ent,
                         double *lse, double *smooth, void *ws, void *stream) nogil
    int kk_cu_token_grad(const kk_cu_rows *x, const int64_t *targets, double inv_temp,
                         const double *lse, const double *coef, const void *weight,
                         const kk_cu_rows *out, void *stream) nogil
    int kk_cu_div_grad(int op, int kind, const kk_cu_rows *p, const kk_cu_rows *q,
                       double inv_temp, double beta, const double *saved, const double *g,
                       const kk_cu_rows *dp, const kk_cu_rows *dq, void *stream) nogil
    int kk_cu_softmax_grad(int log_, const kk_cu_rows *y, const kk_cu_rows *gy,
                           const kk_cu_rows *out, void *ws, void *stream) nogil
    int64_t kk_cu_seg_workspace(int64_t n_seg, int64_t n_tokens)
    int kk_cu_seg_packed(int op, int est, const void *x, int dtype, int64_t x_step,
                         const int64_t *x_start, const void *y, int64_t y_step,
                         const int64_t *y_start, const int64_t *len, int64_t n_seg,
                         int64_t n_tokens, double clamp, double empty, double *out, void *ws,
                         void *stream) nogil
    int kk_cu_seg_padded(int op, int est, const kk_cu_rows *x, const kk_cu_rows *y,
                         const kk_cu_rows *mask, double clamp, double empty, double *out,
                         int64_t *count, void *stream) nogil
    int kk_cu_kl_estimate(int est, const kk_cu_rows *x, const kk_cu_rows *y, double clamp,
                          void *out, void *stream) nogil
    int kk_cu_check_index(const int64_t *v, int64_t n, int64_t lo, int64_t hi, int64_t skip,
                          int64_t *first, void *stream) nogil
    int kk_cu_check_sorted(const int64_t *v, int64_t n, int64_t *first, void *stream) nogil
    int kk_cu_use_device(int device, int *previous) nogil
    void kk_cu_versions(int *driver, int *runtime, int *devices, int *err)
    const char *kk_cu_error_string(int err)
    const char *kk_cu_archs()

DTYPES = {"float16": KK_F16, "bfloat16": KK_BF16, "float32": KK_F32, "float64": KK_F64}
OPS = {"entropy": KK_ENTROPY, "cross_entropy": KK_XENT, "kl_div": KK_KL, "js_div": KK_JS}
KINDS = {"logits": KK_LOGITS, "logprobs": KK_LOGPROBS}
SEG_OPS = {"sum": KK_SEG_SUM, "mean": KK_SEG_MEAN, "max": KK_SEG_MAX, "logsumexp": KK_SEG_LSE}
ESTIMATORS = {None: KK_EST_NONE, "k1": KK_EST_K1, "k2": KK_EST_K2, "k3": KK_EST_K3,
              "abs": KK_EST_ABS}


def versions():
    """(driver version, runtime version, visible devices, error code): the
    driver version is 0 where no NVIDIA driver is installed."""
    cdef int d, r, n, e
    kk_cu_versions(&d, &r, &n, &e)
    return d, r, n, e


def error_string(int err):
    return kk_cu_error_string(err).decode()


def build_info():
    d, r, n, _ = versions()
    return {"archs": kk_cu_archs().decode(), "runtime": r, "driver": d, "devices": n}


cdef int _check(int err, str what) except -1:
    if err:
        raise RuntimeError(f"{what}: CUDA error {err}: {kk_cu_error_string(err).decode()}")
    return 0


# --------------------------------------------------------------------------
# describing arrays
# --------------------------------------------------------------------------

cdef int _dtype(a, str name) except -1:
    code = DTYPES.get(a.dtype)
    if code is None:
        raise TypeError(f"{name}: the CUDA kernels take float16, bfloat16, float32 or "
                        f"float64, got {a.dtype}")
    return code


cdef int _rows(a, int n_lead, kk_cu_rows *d, str name, int code=-1) except -1:
    """d = a as a batch of contiguous rows: leading axes merged where they
    are one run, axes of length 1 dropped."""
    shape, strides = a.shape, a.strides
    if not 0 <= n_lead <= len(shape):
        raise ValueError(f"{name}: {n_lead} leading axes of a {len(shape)}-D array")
    if not readable(a, n_lead):
        raise ValueError(f"{name}: rows must be contiguous and the batch at most "
                         f"{KK_CU_MAX_DIMS} axes; copy it first")
    d.dtype = _dtype(a, name) if code < 0 else code
    d.data = <const void *><uintptr_t>a.ptr
    d.n_rows = 1
    for s in shape[:n_lead]:
        d.n_rows *= s
    d.n = 1
    for s in shape[n_lead:]:
        d.n *= s
    cdef int k = 0
    if d.n_rows * d.n == 0:             # nothing is read: no batch axes
        d.lead_ndim = 0
        return 0
    for s, st in zip(shape[:n_lead], strides[:n_lead]):
        if s == 1:
            continue
        if k > 0 and d.lead_step[k - 1] == s * st:
            d.lead_shape[k - 1] *= s
            d.lead_step[k - 1] = st
            continue
        if k == KK_CU_MAX_DIMS:         # (readable() said so: never reached)
            raise ValueError(f"{name}: more than {KK_CU_MAX_DIMS} batch axes; copy it first")
        d.lead_shape[k] = s
        d.lead_step[k] = st
        k += 1
    d.lead_ndim = k
    return 0


def readable(a, int n_lead):
    """Whether the kernels read a in place: its row axes (after the first
    n_lead) one contiguous run in C order, at most KK_CU_MAX_DIMS batch axes
    that do not merge."""
    shape, strides = a.shape, a.strides
    if any(s == 0 for s in shape):
        return True                      # nothing is read
    expect = 1
    for s, st in zip(reversed(shape[n_lead:]), reversed(strides[n_lead:])):
        if s != 1 and st != expect:
            return False
        expect *= s
    k, last = 0, None
    for s, st in zip(shape[:n_lead], strides[:n_lead]):
        if s == 1:
            continue
        if last is not None and last == s * st:
            last = st
            continue
        k += 1
        last = st
    return k <= KK_CU_MAX_DIMS


cdef void *_ptr(a):
    return <void *><uintptr_t>(0 if a is None else a.ptr)


cdef int _vector(a, int64_t n, str dtype, str name) except -1:
    if a.dtype != dtype or a.shape != (n,) or (n > 1 and a.strides != (1,)):
        raise ValueError(f"{name}: expected a contiguous {dtype} vector of length {n}")
    return 0


cdef int _opt_out(a, int64_t n, str name) except -1:
    if a is not None:
        _vector(a, n, "float64", name)
    return 0


cdef int _workspace(ws, int64_t nbytes) except -1:
    if ws is None or ws.nbytes < nbytes:
        raise ValueError(f"ws: expected a device buffer of at least {nbytes} bytes")
    return 0


cdef class _OnDevice:
    """with _OnDevice(a): a's device is the current one inside"""
    cdef int device, previous

    def __cinit__(self, a):
        self.device = a.device

    def __enter__(self):
        _check(kk_cu_use_device(self.device, &self.previous), "cudaSetDevice")
        return self

    def __exit__(self, *exc):
        cdef int ignored
        if self.previous != self.device:
            kk_cu_use_device(self.previous, &ignored)
        return False


def workspace(int64_t n_rows, int64_t n):
    return kk_cu_workspace(n_rows, n)


def seg_workspace(int64_t n_seg, int64_t n_tokens):
    return kk_cu_seg_workspace(n_seg, n_tokens)


# --------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------

def lse_rows(x, int n_lead, out, ws):
    cdef kk_cu_rows dx
    _rows(x, n_lead, &dx, "x")
    _vector(out, dx.n_rows, "float64", "out")
    _workspace(ws, kk_cu_workspace(dx.n_rows, dx.n))
    cdef double *o = <double *>_ptr(out)
    cdef void *w = _ptr(ws)
    cdef void *s = <void *><uintptr_t>x.stream
    with _OnDevice(x):
        with nogil:
            err = kk_cu_lse_rows(&dx, o, w, s)
        _check(err, "lse_rows")


def softmax_rows(x, int n_lead, bint log, out, ws):
    cdef kk_cu_rows dx, do
    _rows(x, n_lead, &dx, "x")
    want = "float64" if dx.dtype == KK_F64 else "float32"
    if out.dtype != want or out.shape != x.shape:
        raise ValueError(f"out: expected a {want} array of shape {x.shape}")
    _rows(out, n_lead, &do, "out")
    _workspace(ws, kk_cu_workspace(dx.n_rows, dx.n))
    cdef void *w = _ptr(ws)
    cdef void *s = <void *><uintptr_t>x.stream
    cdef int lg = log
    with _OnDevice(x):
        with nogil:
            err = kk_cu_softmax_rows(&dx, lg, &do, w, s)
        _check(err, "softmax_rows")


def div_rows(str op, str kind, p, q, int n_lead, double inv_temp, double beta, out, ws,
             saved=None):
    """out[r] = op of rows r of p (and q); saved (logits; None: not wanted):
    a contiguous float64 [n_rows, 5] array receiving what div_grad takes."""
    cdef kk_cu_rows dp, dq
    cdef const kk_cu_rows *pq = NULL
    cdef int iop = OPS[op], ik = KINDS[kind]
    _rows(p, n_lead, &dp, "p")
    if iop != KK_ENTROPY:
        _rows(q, n_lead, &dq, "q")
        if dq.dtype != dp.dtype or dq.n_rows != dp.n_rows or dq.n != dp.n:
            raise ValueError("q: expected the dtype and rows of p")
        pq = &dq
    _vector(out, dp.n_rows, "float64", "out")
    _workspace(ws, kk_cu_workspace(dp.n_rows, dp.n))
    if saved is not None:
        if ik != KK_LOGITS:
            raise ValueError("saved: only logits save numbers for the backward")
        _saved(saved, dp.n_rows)
    cdef double *o = <double *>_ptr(out)
    cdef double *sv = <double *>_ptr(saved)
    cdef void *w = _ptr(ws)
    cdef void *s = <void *><uintptr_t>p.stream
    with _OnDevice(p):
        with nogil:
            err = kk_cu_div_rows(iop, ik, &dp, pq, inv_temp, beta, o, sv, w, s)
        _check(err, "div_rows")


cdef int _saved(a, int64_t n_rows) except -1:
    if a.dtype != "float64" or a.shape != (n_rows, 5) or (n_rows > 0 and a.strides != (5, 1)):
        raise ValueError(f"saved: expected a C-contiguous float64 array of shape ({n_rows}, 5)")
    return 0


def token_rows(x, int n_lead, targets, long long ignore_index, double inv_temp, weight, lp, ent,
               lse, smooth, ws):
    """As _cpu.token_rows; targets (int64, validated on the device first:
    check_index) and the outputs are device vectors."""
    cdef kk_cu_rows dx
    _rows(x, n_lead, &dx, "logits")
    _vector(targets, dx.n_rows, "int64", "targets")
    _vector(lp, dx.n_rows, "float64", "lp")
    _opt_out(ent, dx.n_rows, "ent")
    _opt_out(lse, dx.n_rows, "lse")
    _opt_out(smooth, dx.n_rows, "smooth")
    if weight is not None:
        _vector(weight, dx.n, "float64" if dx.dtype == KK_F64 else "float32", "weight")
    _workspace(ws, kk_cu_workspace(dx.n_rows, dx.n))
    cdef const int64_t *t = <const int64_t *>_ptr(targets)
    cdef const void *wt = _ptr(weight)
    cdef double *o_lp = <double *>_ptr(lp)
    cdef double *o_ent = <double *>_ptr(ent)
    cdef double *o_lse = <double *>_ptr(lse)
    cdef double *o_sm = <double *>_ptr(smooth)
    cdef void *w = _ptr(ws)
    cdef void *s = <void *><uintptr_t>x.stream
    cdef int64_t ig = ignore_index
    with _OnDevice(x):
        with nogil:
            err = kk_cu_token_rows(&dx, t, ig, inv_temp, wt, o_lp, o_ent, o_lse, o_sm, w, s)
        _check(err, "token_rows")


# --------------------------------------------------------------------------
# backward (torch autograd on the GPU): gradients with respect to rows
# --------------------------------------------------------------------------

cdef int _grad_out(out, like, int n_lead, kk_cu_rows *d, str name) except -1:
    if out.shape != like.shape or out.dtype != like.dtype:
        raise ValueError(f"{name}: expected a {like.dtype} array of shape {like.shape}")
    _rows(out, n_lead, d, name)
    return 0


def token_grad(x, int n_lead, targets, double inv_temp, lse, coef, weight, out):
    """Row r of out = coef[r, 0] p + coef[r, 1] p log p + coef[r, 3] w
    (+ coef[r, 2] at targets[r]), p = softmax(row r of x * inv_temp) from
    lse[r] (kk_cu_token_grad); coef: contiguous float64 [n_rows, 4]."""
    cdef kk_cu_rows dx, do
    _rows(x, n_lead, &dx, "logits")
    _grad_out(out, x, n_lead, &do, "out")
    _vector(lse, dx.n_rows, "float64", "lse")
    if coef.dtype != "float64" or coef.shape != (dx.n_rows, 4) or \
            (dx.n_rows > 0 and coef.strides != (4, 1)):
        raise ValueError(f"coef: expected a C-contiguous float64 array of shape ({dx.n_rows}, 4)")
    if targets is not None:
        _vector(targets, dx.n_rows, "int64", "targets")
    if weight is not None:
        _vector(weight, dx.n, "float64" if dx.dtype == KK_F64 else "float32", "weight")
    cdef const int64_t *t = <const int64_t *>_ptr(targets)
    cdef const double *pl = <const double *>_ptr(lse)
    cdef const double *pc = <const double *>_ptr(coef)
    cdef const void *pw = _ptr(weight)
    cdef void *s = <void *><uintptr_t>x.stream
    with _OnDevice(x):
        with nogil:
            err = kk_cu_token_grad(&dx, t, inv_temp, pl, pc, pw, &do, s)
        _check(err, "token_grad")


def div_grad(str op, str kind, p, q, int n_lead, double inv_temp, double beta, saved, g, dp,
             dq):
    """g[r] times the gradient of op of row r of p (and q) into dp and dq
    (arrays like p and q, or None), from div_rows' saved (logits)."""
    cdef kk_cu_rows rp, rq, op_, oq_
    cdef const kk_cu_rows *pq = NULL
    cdef const kk_cu_rows *pdp = NULL
    cdef const kk_cu_rows *pdq = NULL
    cdef int iop = OPS[op], ik = KINDS[kind]
    _rows(p, n_lead, &rp, "p")
    if iop != KK_ENTROPY:
        _rows(q, n_lead, &rq, "q")
        if rq.dtype != rp.dtype or rq.n_rows != rp.n_rows or rq.n != rp.n:
            raise ValueError("q: expected the dtype and rows of p")
        pq = &rq
    if dp is not None:
        _grad_out(dp, p, n_lead, &op_, "dp")
        pdp = &op_
    if dq is not None:
        if iop == KK_ENTROPY:
            raise ValueError("dq: the entropy has one argument")
        _grad_out(dq, q, n_lead, &oq_, "dq")
        pdq = &oq_
    if ik == KK_LOGITS:
        if saved is None:
            raise ValueError("saved: logits need the forward's numbers per row")
        _saved(saved, rp.n_rows)
    _vector(g, rp.n_rows, "float64", "g")
    cdef const double *ps = <const double *>_ptr(saved)
    cdef const double *pg = <const double *>_ptr(g)
    cdef void *s = <void *><uintptr_t>p.stream
    with _OnDevice(p):
        with nogil:
            err = kk_cu_div_grad(iop, ik, &rp, pq, inv_temp, beta, ps, pg, pdp, pdq, s)
        _check(err, "div_grad")


def softmax_grad(bint log, y, gy, int n_lead, out, ws):
    """Row r of out = the softmax (log_softmax) backward of row r of the
    output y and the upstream gradient gy (both float32, or both float64)."""
    cdef kk_cu_rows dy, dg, do
    _rows(y, n_lead, &dy, "y")
    _rows(gy, n_lead, &dg, "gy")
    if dg.dtype != dy.dtype or dy.dtype not in (KK_F32, KK_F64) or gy.shape != y.shape:
        raise ValueError("gy: expected float32 or float64, the dtype and shape of y")
    if out.shape != y.shape:
        raise ValueError(f"out: expected an array of shape {y.shape}")
    _rows(out, n_lead, &do, "out")
    _workspace(ws, kk_cu_workspace(dy.n_rows, dy.n))
    cdef void *w = _ptr(ws)
    cdef void *s = <void *><uintptr_t>y.stream
    cdef int lg = log
    with _OnDevice(y):
        with nogil:
            err = kk_cu_softmax_grad(lg, &dy, &dg, &do, w, s)
        _check(err, "softmax_grad")


# --------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------

def seg_packed(str op, estimator, x, y, x_start, y_start, lens, double clamp, double empty, out,
               ws):
    """out[s] = the reduction of the lens[s] values of 1-D x from x_start[s]
    (seq_kl: of the estimator against y from y_start[s]).  The spans must
    lie inside x (and y) and not overlap: offsets validated on the device
    (check_sorted, check_index) give such spans."""
    cdef int iop = SEG_OPS[op], est = ESTIMATORS[estimator]
    if len(x.shape) != 1:
        raise ValueError("values: expected a 1-D array")
    cdef int code = _dtype(x, "values")
    cdef int64_t n_seg = lens.shape[0], n_tok = x.shape[0]
    _vector(lens, n_seg, "int64", "lengths")
    _vector(x_start, n_seg, "int64", "offsets")
    _vector(out, n_seg, "float64", "out")
    cdef int64_t ys = 0
    if est != KK_EST_NONE:
        if y.dtype != x.dtype or len(y.shape) != 1:
            raise ValueError("ref_logp: expected a 1-D array of the dtype of logp")
        _vector(y_start, n_seg, "int64", "offsets")
        ys = y.strides[0]
    _workspace(ws, kk_cu_seg_workspace(n_seg, n_tok))
    cdef const void *px = _ptr(x)
    cdef const void *py = _ptr(y) if est != KK_EST_NONE else NULL
    cdef int64_t xs = x.strides[0]
    cdef const int64_t *pxs = <const int64_t *>_ptr(x_start)
    cdef const int64_t *pys = <const int64_t *>_ptr(y_start) if est != KK_EST_NONE else NULL
    cdef const int64_t *pl = <const int64_t *>_ptr(lens)
    cdef double *o = <double *>_ptr(out)
    cdef void *w = _ptr(ws)
    cdef void *s = <void *><uintptr_t>x.stream
    with _OnDevice(x):
        with nogil:
            err = kk_cu_seg_packed(iop, est, px, code, xs, pxs, py, ys, pys, pl, n_seg, n_tok,
                                   clamp, empty, o, w, s)
        _check(err, "seg_packed")


def seg_padded(str op, estimator, x, y, mask, double clamp, double empty, out, count=None):
    cdef int iop = SEG_OPS[op], est = ESTIMATORS[estimator]
    cdef kk_cu_rows dx, dy, dm
    cdef const kk_cu_rows *py = NULL
    cdef const kk_cu_rows *pm = NULL
    if len(x.shape) != 2:
        raise ValueError("values: expected a 2-D array [B, T]")
    _rows(x, 1, &dx, "values")
    if est != KK_EST_NONE:
        if y.shape != x.shape:
            raise ValueError("ref_logp: must have the shape of logp")
        _rows(y, 1, &dy, "ref_logp")
        if dy.dtype != dx.dtype:
            raise ValueError("ref_logp: expected the dtype of logp")
        py = &dy
    if mask is not None:
        if mask.dtype != "bool" or mask.shape != x.shape:
            raise ValueError(f"mask: expected a bool array of shape {x.shape}")
        _rows(mask, 1, &dm, "mask", KK_BOOL)
        pm = &dm
    _vector(out, dx.n_rows, "float64", "out")
    if count is not None:
        _vector(count, dx.n_rows, "int64", "count")
    cdef double *o = <double *>_ptr(out)
    cdef int64_t *c = <int64_t *>_ptr(count)
    cdef void *s = <void *><uintptr_t>x.stream
    with _OnDevice(x):
        with nogil:
            err = kk_cu_seg_padded(iop, est, &dx, py, pm, clamp, empty, o, c, s)
        _check(err, "seg_padded")


def kl_estimate(estimator, x, y, int n_lead, double clamp, out):
    cdef int est = ESTIMATORS[estimator]
    if est == KK_EST_NONE:
        raise ValueError("estimator: required")
    cdef kk_cu_rows dx, dy
    _rows(x, n_lead, &dx, "logp")
    _rows(y, n_lead, &dy, "ref_logp")
    if dy.dtype != dx.dtype or dy.n_rows != dx.n_rows or dy.n != dx.n:
        raise ValueError("ref_logp: expected the dtype and shape of logp")
    want = "float64" if dx.dtype == KK_F64 else "float32"
    if out.dtype != want or out.size != dx.n_rows * dx.n or not readable(out, 0):
        raise ValueError(f"out: expected a contiguous {want} array of {dx.n_rows * dx.n} values")
    cdef void *o = _ptr(out)
    cdef void *s = <void *><uintptr_t>x.stream
    with _OnDevice(x):
        with nogil:
            err = kk_cu_kl_estimate(est, &dx, &dy, clamp, o, s)
        _check(err, "kl_estimate")


# --------------------------------------------------------------------------
# validation on the device
# --------------------------------------------------------------------------

def check_index(v, long long lo, long long hi, long long skip, first):
    """first[0] (int64, preset to len(v)) = the first i with v[i] outside
    [lo, hi) and v[i] != skip, where there is one."""
    cdef int64_t n = v.shape[0]
    _vector(v, n, "int64", "index")
    _vector(first, 1, "int64", "first")
    cdef const int64_t *pv = <const int64_t *>_ptr(v)
    cdef int64_t *pf = <int64_t *>_ptr(first)
    cdef void *s = <void *><uintptr_t>v.stream
    cdef int64_t a = lo, b = hi, k = skip
    with _OnDevice(v):
        with nogil:
            err = kk_cu_check_index(pv, n, a, b, k, pf, s)
        _check(err, "check_index")


def check_sorted(v, first):
    """first[0] (preset to len(v)) = the first i with v[i + 1] < v[i]."""
    cdef int64_t n = v.shape[0]
    _vector(v, n, "int64", "offsets")
    _vector(first, 1, "int64", "first")
    cdef const int64_t *pv = <const int64_t *>_ptr(v)
    cdef int64_t *pf = <int64_t *>_ptr(first)
    cdef void *s = <void *><uintptr_t>v.stream
    with _OnDevice(v):
        with nogil:
            err = kk_cu_check_sorted(pv, n, pf, s)
        _check(err, "check_sorted")
