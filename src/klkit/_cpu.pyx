# cython: language_level=3, boundscheck=False, wraparound=False
"""Validated, GIL-free entry into the C kernels (kernels/cpu).

Python (dense.py, divergence.py) brings every input to the layout the
kernels take: a 2-D array of rows whose last axis has unit stride (any row
stride, including 0 for a broadcast row) and a dtype code.  This module
checks exactly that, so a caller mistake is a ValueError here and never an
out-of-bounds read in C, then releases the GIL and calls C.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()

# The kernel prototypes are written once, in kernels/cpu/klkit_entries.h;
# Cython cannot read that X-macro list, so the declarations below are
# written by hand.  A mismatch cannot go unnoticed: the generated _cpu.c
# includes klkit_cpu.h, and the C compiler checks every call against the
# real prototypes.
cdef extern from "klkit_cpu.h":
    int KK_F16, KK_BF16, KK_F32, KK_F64
    int KK_LOGITS, KK_LOGPROBS
    int KK_ENTROPY, KK_XENT, KK_KL, KK_JS
    void kk_lse_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                     int64_t row_stride, double *out) nogil
    void kk_softmax_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                         int64_t row_stride, int log_, void *out,
                         int64_t out_row_stride) nogil
    void kk_div_rows(int op, int kind, int dtype, const void *p, int64_t p_stride,
                     const void *q, int64_t q_stride, int64_t n_rows, int64_t n,
                     double inv_temp, double beta, double *out) nogil
    void kk_token_rows(int dtype, const void *x, int64_t n_rows, int64_t n,
                       int64_t row_stride, const int64_t *targets, int64_t ignore_index,
                       double inv_temp, const void *weight, double *lp, double *ent,
                       double *lse, double *smooth) nogil
    void kk_set_num_threads(int n) nogil
    int kk_get_num_threads() nogil
    int kk_have_openmp()
    void kk_init()
    const char *kk_isa()
    const char *kk_isas_built()
    int kk_set_isa(const char *name)

# The code path (instruction set) is chosen here, once, while the module is
# imported: never lazily inside a kernel call made with the GIL released.
kk_init()

cdef extern from *:
    """
    #ifndef KLKIT_BUILD_CUDA
    #define KLKIT_BUILD_CUDA "unknown"
    #define KLKIT_BUILD_COMPILER "unknown"
    #endif
    """
    const char *KLKIT_BUILD_CUDA
    const char *KLKIT_BUILD_COMPILER

DTYPE_CODES = {"float16": KK_F16, "bfloat16": KK_BF16, "float32": KK_F32, "float64": KK_F64}
OPS = {"entropy": KK_ENTROPY, "cross_entropy": KK_XENT, "kl_div": KK_KL, "js_div": KK_JS}
KINDS = {"logits": KK_LOGITS, "logprobs": KK_LOGPROBS}


cdef int _code(cnp.ndarray a, str name) except -1:
    code = DTYPE_CODES.get(a.dtype.name)
    if code is None:
        raise TypeError(f"{name}: kernels take float16, bfloat16, float32 or float64, got {a.dtype}")
    return code


cdef int64_t _row_stride(cnp.ndarray a, str name) except -1:
    """Row stride in elements of a 2-D array with unit-stride rows."""
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of rows, got {a.ndim}-D")
    cdef int64_t item = a.itemsize
    if a.shape[0] == 0 or a.shape[1] == 0:
        return 0                       # nothing is read
    if a.shape[1] > 1 and a.strides[1] != item:
        raise ValueError(f"{name}: rows must be contiguous")
    if a.strides[0] % item != 0:
        raise ValueError(f"{name}: row stride is not a multiple of the item size")
    return a.strides[0] // item if a.shape[0] > 1 else 0


cdef double *_out_vector(cnp.ndarray out, int64_t n_rows) except NULL:
    if out.ndim != 1 or out.shape[0] != n_rows or out.dtype.name != "float64" \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out: expected a writeable contiguous float64 vector, one value per row")
    return <double *>cnp.PyArray_DATA(out)


def lse_rows(cnp.ndarray x, cnp.ndarray out):
    """out[r] = log(sum(exp(x[r, :]))) in float64."""
    cdef int code = _code(x, "x")
    cdef int64_t rs = _row_stride(x, "x"), n_rows = x.shape[0], n = x.shape[1]
    cdef double *o = _out_vector(out, n_rows)
    cdef const void *px = cnp.PyArray_DATA(x)
    with nogil:
        kk_lse_rows(code, px, n_rows, n, rs, o)


def softmax_rows(cnp.ndarray x, bint log, cnp.ndarray out):
    """out = softmax or log_softmax of each row (out: float32, or float64 for float64 x)."""
    cdef int code = _code(x, "x")
    cdef int64_t rs = _row_stride(x, "x"), n_rows = x.shape[0], n = x.shape[1]
    want = "float64" if code == KK_F64 else "float32"
    if out.dtype.name != want or out.shape[0] != n_rows or out.shape[1] != n \
            or not out.flags.writeable:
        raise ValueError(f"out: expected a writeable {want} array of shape {(n_rows, n)}")
    cdef int64_t ors = _row_stride(out, "out")
    if n_rows > 1 and ors == 0:
        raise ValueError("out: rows may not overlap")
    cdef const void *px = cnp.PyArray_DATA(x)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef int lg = log
    with nogil:
        kk_softmax_rows(code, px, n_rows, n, rs, lg, po, ors)


def div_rows(str op, str kind, cnp.ndarray p, q, double inv_temp, double beta, cnp.ndarray out):
    """out[r] = entropy / cross-entropy / KL / JS of row r of p (and q), in nats."""
    cdef int code = _code(p, "p")
    cdef int64_t ps = _row_stride(p, "p"), n_rows = p.shape[0], n = p.shape[1]
    cdef int iop = OPS[op], ikind = KINDS[kind]
    cdef cnp.ndarray qa
    cdef int64_t qs = 0
    cdef const void *pq = NULL
    if iop != KK_ENTROPY:
        qa = q
        if _code(qa, "q") != code or qa.shape[0] != n_rows or qa.shape[1] != n:
            raise ValueError("q: must have the dtype and shape of p")
        qs = _row_stride(qa, "q")
        pq = cnp.PyArray_DATA(qa)
    cdef double *o = _out_vector(out, n_rows)
    cdef const void *pp = cnp.PyArray_DATA(p)
    with nogil:
        kk_div_rows(iop, ikind, code, pp, ps, pq, qs, n_rows, n, inv_temp, beta, o)


cdef double *_opt_vector(out, int64_t n_rows) except? NULL:
    if out is None:
        return NULL
    return _out_vector(out, n_rows)


def token_rows(cnp.ndarray x, cnp.ndarray targets, long long ignore_index, double inv_temp,
               weight, cnp.ndarray lp, ent, lse, smooth):
    """lp[r] = log softmax(x[r] * inv_temp)[targets[r]] (0 where targets[r] ==
    ignore_index); ent / lse / smooth (float64 vectors or None) as in
    kk_token_rows.  Every target must be ignore_index or in [0, n)."""
    cdef int code = _code(x, "logits")
    cdef int64_t rs = _row_stride(x, "logits"), n_rows = x.shape[0], n = x.shape[1]
    if targets.dtype.name != "int64" or targets.ndim != 1 or targets.shape[0] != n_rows \
            or not targets.flags.c_contiguous:
        raise ValueError("targets: expected a contiguous int64 vector, one per row")
    cdef const int64_t *pt = <const int64_t *>cnp.PyArray_DATA(targets)
    cdef int64_t i, t
    for i in range(n_rows):            # the kernel must never see an index it would misread
        t = pt[i]
        if t != ignore_index and (t < 0 or t >= n):
            raise ValueError(f"targets: index {t} at row {i} is outside [0, {n})")
    cdef const void *pw = NULL
    cdef cnp.ndarray wa
    if weight is not None:
        wa = weight
        want = "float64" if code == KK_F64 else "float32"
        if wa.dtype.name != want or wa.ndim != 1 or wa.shape[0] != n or not wa.flags.c_contiguous:
            raise ValueError(f"weight: expected a contiguous {want} vector of {n} values")
        pw = cnp.PyArray_DATA(wa)
    cdef double *o_lp = _out_vector(lp, n_rows)
    cdef double *o_ent = _opt_vector(ent, n_rows)
    cdef double *o_lse = _opt_vector(lse, n_rows)
    cdef double *o_sm = _opt_vector(smooth, n_rows)
    cdef const void *px = cnp.PyArray_DATA(x)
    cdef int64_t ig = ignore_index
    with nogil:
        kk_token_rows(code, px, n_rows, n, rs, pt, ig, inv_temp, pw, o_lp, o_ent, o_lse, o_sm)


def set_num_threads(int n):
    kk_set_num_threads(n)


def get_num_threads():
    return kk_get_num_threads()


def set_isa(name=None):
    """Force a code path ('base', 'avx2', 'avx512'; None: the best); False if unsupported."""
    if name is None:
        return bool(kk_set_isa(NULL))
    b = name.encode()
    return bool(kk_set_isa(b))


def build_info():
    return {
        "isa": kk_isa().decode(),
        "isas_built": kk_isas_built().decode(),
        "openmp": kk_have_openmp() == 1,
        "cuda": KLKIT_BUILD_CUDA.decode(),
        "compiler": KLKIT_BUILD_COMPILER.decode(),
    }


# ---- segments ---------------------------------------------------------------
# Entry points of kernels/cpu/segment.c (segments.py is the public API).  They
# check every pointer range the kernel will read, so no caller mistake can
# become an out-of-bounds read; the user-facing checks with their messages
# (offsets non-decreasing, mask shape, ...) are done before, in segments.py.

cdef extern from "klkit_cpu.h":
    int KK_SEG_SUM, KK_SEG_MEAN, KK_SEG_MAX, KK_SEG_LSE
    int KK_EST_NONE, KK_EST_K1, KK_EST_K2, KK_EST_K3, KK_EST_ABS
    void kk_seg_packed(int op, int est, int dtype, const void *x, int64_t x_stride,
                       const int64_t *x_start, const void *y, int64_t y_stride,
                       const int64_t *y_start, const int64_t *len, int64_t n_seg,
                       double clamp, double empty, double *out) nogil
    void kk_seg_padded(int op, int est, int dtype, const void *x, int64_t x_rs,
                       const void *y, int64_t y_rs, const unsigned char *mask,
                       int64_t m_rs, int64_t n_rows, int64_t n, double clamp,
                       double empty, double *out, int64_t *count) nogil
    void kk_kl_estimate(int est, int dtype, const void *x, const void *y, int64_t n,
                        double clamp, void *out) nogil

SEG_OPS = {"sum": KK_SEG_SUM, "mean": KK_SEG_MEAN, "max": KK_SEG_MAX, "logsumexp": KK_SEG_LSE}
ESTIMATORS = {None: KK_EST_NONE, "k1": KK_EST_K1, "k2": KK_EST_K2, "k3": KK_EST_K3,
              "abs": KK_EST_ABS}


cdef int64_t _elem_stride(cnp.ndarray a, str name) except? -1:
    """Element stride of a 1-D array (any sign, 0 for a broadcast)."""
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of values, got {a.ndim}-D")
    cdef int64_t item = a.itemsize
    if a.shape[0] <= 1:
        return 1
    if a.strides[0] % item != 0:
        raise ValueError(f"{name}: stride is not a multiple of the item size")
    return a.strides[0] // item


cdef const int64_t *_i64_vector(cnp.ndarray a, int64_t n, str name) except NULL:
    if a.ndim != 1 or a.shape[0] != n or a.dtype.name != "int64" or not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a contiguous int64 vector of length {n}")
    return <const int64_t *>cnp.PyArray_DATA(a)


cdef int _check_ranges(const int64_t *start, const int64_t *ln, int64_t n, int64_t size,
                       str name) except -1:
    cdef int64_t i, s, l
    for i in range(n):
        s = start[i]
        l = ln[i]
        if l < 0 or s < 0 or s > size - l:
            raise ValueError(f"{name}: sequence {i} ({s}, length {l}) lies outside the "
                             f"{size} values")
    return 0


def seg_packed(str op, estimator, cnp.ndarray x, y, cnp.ndarray x_start, y_start,
               cnp.ndarray lens, double clamp, double empty, cnp.ndarray out):
    """out[s] = reduction of x[x_start[s] : x_start[s] + lens[s]] (seq_kl: of the
    estimator over the pairs with y[y_start[s] : ...]), float64."""
    cdef int iop = SEG_OPS[op], est = ESTIMATORS[estimator]
    cdef int code = _code(x, "values")
    cdef int64_t xs = _elem_stride(x, "values"), n = lens.shape[0]
    cdef const int64_t *ln = _i64_vector(lens, n, "lengths")
    cdef const int64_t *xst = _i64_vector(x_start, n, "offsets")
    _check_ranges(xst, ln, n, x.shape[0], "values")
    cdef cnp.ndarray ya, yst_a
    cdef int64_t ys = 1
    cdef const void *py = NULL
    cdef const int64_t *yst = NULL
    if est != KK_EST_NONE:
        ya = y
        yst_a = y_start
        if _code(ya, "ref_logp") != code:
            raise ValueError("ref_logp: must have the dtype of logp")
        ys = _elem_stride(ya, "ref_logp")
        yst = _i64_vector(yst_a, n, "offsets")
        _check_ranges(yst, ln, n, ya.shape[0], "ref_logp")
        py = cnp.PyArray_DATA(ya)
    if iop == KK_SEG_MAX or iop == KK_SEG_LSE:
        if est != KK_EST_NONE:
            raise ValueError("estimator: only sum and mean reduce estimates")
    cdef double *o = _out_vector(out, n)
    cdef const void *px = cnp.PyArray_DATA(x)
    with nogil:
        kk_seg_packed(iop, est, code, px, xs, xst, py, ys, yst, ln, n, clamp, empty, o)


def seg_padded(str op, estimator, cnp.ndarray x, y, mask, double clamp, double empty,
               cnp.ndarray out, count=None):
    """out[r] = reduction of the entries of row r of x [B, T] whose mask byte is
    nonzero (mask None: all); count[r] (int64, optional) = their number."""
    cdef int iop = SEG_OPS[op], est = ESTIMATORS[estimator]
    cdef int code = _code(x, "values")
    cdef int64_t xrs = _row_stride(x, "values"), n_rows = x.shape[0], n = x.shape[1]
    cdef cnp.ndarray ya, ma, ca
    cdef int64_t yrs = 0, mrs = 0
    cdef const void *py = NULL
    cdef const unsigned char *pm = NULL
    cdef int64_t *pc = NULL
    if est != KK_EST_NONE:
        ya = y
        if _code(ya, "ref_logp") != code or ya.ndim != 2 or ya.shape[0] != n_rows \
                or ya.shape[1] != n:
            raise ValueError("ref_logp: must have the dtype and shape of logp")
        yrs = _row_stride(ya, "ref_logp")
        py = cnp.PyArray_DATA(ya)
    if iop == KK_SEG_MAX or iop == KK_SEG_LSE:
        if est != KK_EST_NONE:
            raise ValueError("estimator: only sum and mean reduce estimates")
    if mask is not None:
        ma = mask
        if ma.itemsize != 1 or ma.dtype.kind not in "bu" or ma.ndim != 2 \
                or ma.shape[0] != n_rows or ma.shape[1] != n:
            raise ValueError(f"mask: expected a bool array of shape {(n_rows, n)}")
        mrs = _row_stride(ma, "mask")
        pm = <const unsigned char *>cnp.PyArray_DATA(ma)
    if count is not None:
        ca = count
        if ca.ndim != 1 or ca.shape[0] != n_rows or ca.dtype.name != "int64" \
                or not ca.flags.c_contiguous or not ca.flags.writeable:
            raise ValueError("count: expected a writeable contiguous int64 vector, one per row")
        pc = <int64_t *>cnp.PyArray_DATA(ca)
    cdef double *o = _out_vector(out, n_rows)
    cdef const void *px = cnp.PyArray_DATA(x)
    with nogil:
        kk_seg_padded(iop, est, code, px, xrs, py, yrs, pm, mrs, n_rows, n, clamp, empty,
                      o, pc)


def kl_estimate(estimator, cnp.ndarray x, cnp.ndarray y, double clamp, cnp.ndarray out):
    """out = estimator(x - y) elementwise; x, y, out contiguous of one size
    (out float32, or float64 for float64 input)."""
    cdef int est = ESTIMATORS[estimator]
    if est == KK_EST_NONE:
        raise ValueError("estimator: required")
    cdef int code = _code(x, "logp")
    if _code(y, "ref_logp") != code:
        raise ValueError("ref_logp: must have the dtype of logp")
    cdef int64_t n = x.size
    want = "float64" if code == KK_F64 else "float32"
    if y.size != n or out.size != n or out.dtype.name != want \
            or not (x.flags.c_contiguous and y.flags.c_contiguous and out.flags.c_contiguous) \
            or not out.flags.writeable:
        raise ValueError(f"out: expected contiguous arrays of {n} values ({want} out)")
    cdef const void *px = cnp.PyArray_DATA(x)
    cdef const void *py = cnp.PyArray_DATA(y)
    cdef void *po = cnp.PyArray_DATA(out)
    with nogil:
        kk_kl_estimate(est, code, px, py, n, clamp, po)
