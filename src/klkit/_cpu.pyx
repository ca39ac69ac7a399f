# cython: language_level=3, boundscheck=False, wraparound=False
"""Validated, GIL-free entry into the CPU kernels (kernels/cpu).

The Python layer (_arrays.py) hands every array over as it is, a view of
any layout: its leading axes are the batch and the rest one row, after a
transpose that moves the reduced axes last (no copy; the rare view the
kernels cannot read in place, see readable(), is copied there first).  This module
describes each array to C as a kk_rows (kernels/cpu/rows.h): shapes and
strides in elements, axes of length 1 dropped, contiguous axes merged.  It
checks what C relies on, so that a caller mistake is a ValueError here and
never an out-of-bounds read: element types, whole-element strides, aligned
data, matching shapes, spans inside their arrays, targets in range.  Then
it releases the GIL and calls C.

prec, where an entry takes one, is the working precision: "float32"
(which also serves 16-bit input) or "float64".
"""
cimport numpy as cnp
from libc.stdint cimport int64_t, uintptr_t

import numpy as np

cnp.import_array()

# The kernel prototypes are written once, in kernels/cpu/klkit_entries.h;
# Cython cannot read that X-macro list, so the declarations below are
# written by hand.  A mismatch cannot go unnoticed: the generated _cpu.c
# includes klkit_cpu.h, and the C compiler checks every call against the
# real prototypes.
cdef extern from "klkit_cpu.h":
    int KK_F16, KK_BF16, KK_F32, KK_F64, KK_BOOL
    int KK_LOGITS, KK_LOGPROBS
    int KK_ENTROPY, KK_XENT, KK_KL, KK_JS
    int KK_SEG_SUM, KK_SEG_MEAN, KK_SEG_MAX, KK_SEG_LSE
    int KK_EST_NONE, KK_EST_K1, KK_EST_K2, KK_EST_K3, KK_EST_ABS
    enum: KK_MAX_DIMS
    ctypedef struct kk_rows:
        const char *data
        int dtype
        int lead_ndim, row_ndim
        int64_t lead_shape[KK_MAX_DIMS]
        int64_t lead_step[KK_MAX_DIMS]
        int64_t row_shape[KK_MAX_DIMS]
        int64_t row_step[KK_MAX_DIMS]
        int64_t n_rows, n
    void kk_lse_rows(const kk_rows *x, double *out) nogil
    void kk_softmax_rows(const kk_rows *x, int log_, const kk_rows *out) nogil
    void kk_div_rows(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                     double inv_temp, double beta, double *out) nogil
    void kk_token_rows(int prec, const kk_rows *x, const int64_t *targets,
                       int64_t ignore_index, double inv_temp, const void *weight,
                       double *lp, double *ent, double *lse, double *smooth) nogil
    void kk_seg_packed(int op, int est, int prec, const kk_rows *x, const int64_t *x_start,
                       const kk_rows *y, const int64_t *y_start, const int64_t *len,
                       int64_t n_seg, double clamp, double empty, double *out) nogil
    void kk_seg_padded(int op, int est, int prec, const kk_rows *x, const kk_rows *y,
                       const kk_rows *mask, double clamp, double empty, double *out,
                       int64_t *count) nogil
    void kk_kl_estimate(int est, int prec, const kk_rows *x, const kk_rows *y, double clamp,
                        void *out) nogil
    void kk_token_grad(int prec, const kk_rows *x, const int64_t *targets, double inv_temp,
                       const double *lse, const double *coef, const void *weight,
                       const kk_rows *out) nogil
    void kk_div_grad(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                     double inv_temp, double beta, const double *saved, const double *g,
                     const kk_rows *dp, const kk_rows *dq) nogil
    void kk_js_sums(int prec, const kk_rows *p, const kk_rows *q, double inv_temp,
                    double beta, double *saved) nogil
    void kk_softmax_grad(int log_, int prec, const kk_rows *y, const kk_rows *gy,
                         const kk_rows *out) nogil
    # reduction states and their combines (the math headers)
    ctypedef struct kk_lse_t:
        double m, s
    ctypedef struct kk_ent_t:
        kk_lse_t l
        double u
    ctypedef struct kk_kl_t:
        double m, mq, ch, cl, W, A, B, zq, nan
        kk_lse_t off
        int has_sums
    ctypedef struct kk_xent_t:
        kk_lse_t p, q
        double u
    ctypedef struct kk_kl_carry_t:
        kk_kl_t k
        int special, lean_skip
    ctypedef struct kk_seg_t:
        double a, b
    void kk_lse_states(const kk_rows *x, kk_lse_t *states) nogil
    void kk_div_states(int op, int prec, const kk_rows *p, const kk_rows *q, double inv_temp,
                       void *states) nogil
    void kk_seg_states(int op, int est, int prec, const kk_rows *x, const int64_t *x_start,
                       const kk_rows *y, const int64_t *y_start, const int64_t *len,
                       int64_t n_seg, double clamp, kk_seg_t *states) nogil
    void kk_softmax_given(const kk_rows *x, int log_, const kk_lse_t *states,
                          const kk_rows *out) nogil
    void kk_div_carry(int op, int kind, int prec, const kk_rows *p, const kk_rows *q,
                      double inv_temp, double beta, void *carry) nogil
    int KK_STATE_LSE, KK_STATE_ENTROPY, KK_STATE_KL, KK_STATE_SEG, KK_STATE_XENT
    void kk_state_combine(int kind, int op, double inv_temp, int64_t n, const void *a,
                          const void *b, void *out) nogil
    void kk_state_values(int kind, int op, double inv_temp, double eps, int64_t n,
                         const void *states, const int64_t *counts, double empty,
                         double *out) nogil
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
    #ifndef KLKIT_BUILD_SANITIZE
    #define KLKIT_BUILD_SANITIZE ""
    #endif
    """
    const char *KLKIT_BUILD_CUDA
    const char *KLKIT_BUILD_COMPILER
    const char *KLKIT_BUILD_SANITIZE

PRECISIONS = {"float32": KK_F32, "float64": KK_F64}
OPS = {"entropy": KK_ENTROPY, "cross_entropy": KK_XENT, "kl_div": KK_KL, "js_div": KK_JS}
KINDS = {"logits": KK_LOGITS, "logprobs": KK_LOGPROBS}
SEG_OPS = {"sum": KK_SEG_SUM, "mean": KK_SEG_MEAN, "max": KK_SEG_MAX, "logsumexp": KK_SEG_LSE}
ESTIMATORS = {None: KK_EST_NONE, "k1": KK_EST_K1, "k2": KK_EST_K2, "k3": KK_EST_K3,
              "abs": KK_EST_ABS}


# --------------------------------------------------------------------------
# describing arrays
# --------------------------------------------------------------------------

# dtypes are told apart by type number, kind and size: NumPy computes
# dtype.name in Python (microseconds, several times per call otherwise)
cdef extern from "numpy/arrayobject.h":
    enum: NPY_USERDEF                   # the first type number of user types

cdef int _bf16_num = -1                 # bfloat16's type number, once seen

cdef inline bint _is(cnp.ndarray a, char kind, int size):
    """a's dtype is of this kind ('i', 'f') and item size"""
    return (<cnp.dtype>a.descr).kind == kind and cnp.PyArray_ITEMSIZE(a) == size


cdef int _code(cnp.ndarray a, str name) except -1:
    global _bf16_num
    cdef int t = cnp.PyArray_TYPE(a), code = -1
    if t == cnp.NPY_FLOAT16:
        code = KK_F16
    elif t == cnp.NPY_FLOAT:
        code = KK_F32
    elif t == cnp.NPY_DOUBLE or (t == cnp.NPY_LONGDOUBLE and cnp.PyArray_ITEMSIZE(a) == 8):
        code = KK_F64                   # (long double is a double on some platforms)
    elif t == _bf16_num or (t >= NPY_USERDEF and a.dtype.name == "bfloat16"):
        _bf16_num = t                   # a user type: ml_dtypes' bfloat16
        code = KK_BF16
    if code < 0 or not a.dtype.isnative:
        raise TypeError(f"{name}: kernels take float16, bfloat16, float32 or float64 in native "
                        f"byte order, got {a.dtype}")
    return code


cdef int _prec(str prec) except -1:
    code = PRECISIONS.get(prec)
    if code is None:
        raise ValueError(f"prec: expected 'float32' or 'float64', got {prec!r}")
    return code


cdef int _axes(cnp.ndarray a, int first, int last, int64_t *shape, int64_t *step):
    """Axes first .. last-1 of a into shape / step (in elements), axes of
    length 1 dropped and each axis merged into the one before it where the
    two are one run; returns their number (at least 1: a part without axes
    is one axis of length 1, an empty part one axis of length 0), or -1
    where a stride is not a whole number of elements or more than
    KK_MAX_DIMS axes remain."""
    cdef int64_t item = a.itemsize, n, s
    cdef int k = 0, d
    for d in range(first, last):
        if a.shape[d] == 0:             # nothing is read: any strides
            shape[0] = 0
            step[0] = 0
            return 1
    for d in range(first, last):
        n = a.shape[d]
        if n == 1:
            continue
        if a.strides[d] % item != 0:
            return -1
        s = a.strides[d] // item
        if k > 0 and step[k - 1] == n * s:
            shape[k - 1] *= n
            step[k - 1] = s
            continue
        if k == KK_MAX_DIMS:
            return -1
        shape[k] = n
        step[k] = s
        k += 1
    if k == 0:
        shape[0] = 1
        step[0] = 1
        k = 1
    return k


cdef bint _readable(cnp.ndarray a, int n_lead, kk_rows *d):
    """Whether the kernels read a in place (d's axes filled): aligned data,
    strides of whole elements, at most KK_MAX_DIMS merged axes per part."""
    if <uintptr_t>cnp.PyArray_DATA(a) % a.itemsize:
        return False
    d.lead_ndim = _axes(a, 0, n_lead, d.lead_shape, d.lead_step)
    d.row_ndim = _axes(a, n_lead, a.ndim, d.row_shape, d.row_step)
    return d.lead_ndim > 0 and d.row_ndim > 0


def readable(cnp.ndarray a, int n_lead):
    """Whether a, its first n_lead axes the batch, is read in place (else
    the Python layer copies it first: _arrays.kernel_view)."""
    cdef kk_rows d
    return 0 <= n_lead <= a.ndim and _readable(a, n_lead, &d)


cdef int _describe(cnp.ndarray a, int n_lead, kk_rows *d, str name, int code=-1) except -1:
    """d = a as a batch of rows: its first n_lead axes the batch, the rest
    the row (code: the element type, by default from a's dtype)."""
    if not 0 <= n_lead <= a.ndim:
        raise ValueError(f"{name}: {n_lead} leading axes of a {a.ndim}-D array")
    d.dtype = _code(a, name) if code < 0 else code
    if not _readable(a, n_lead, d):
        raise ValueError(f"{name}: not readable in place (unaligned data, strides that are not "
                         f"whole elements, or more than {KK_MAX_DIMS} axes); copy it first")
    d.data = <const char *>cnp.PyArray_DATA(a)
    d.n_rows = 1
    for i in range(n_lead):
        d.n_rows *= a.shape[i]
    d.n = 1
    for i in range(n_lead, a.ndim):
        d.n *= a.shape[i]
    if d.lead_ndim == 1 and d.lead_shape[0] == 1:
        d.lead_ndim = 0                 # one row: no batch axis
    return 0


cdef int _distinct(const kk_rows *d, str name) except -1:
    """An output's elements must be distinct: a step 0 along an axis of
    length > 1 repeats one."""
    for i in range(d.lead_ndim):
        if d.lead_step[i] == 0 and d.lead_shape[i] > 1:
            raise ValueError(f"{name}: elements may not overlap")
    for i in range(d.row_ndim):
        if d.row_step[i] == 0 and d.row_shape[i] > 1:
            raise ValueError(f"{name}: elements may not overlap")
    return 0


cdef int _same_rows(const kk_rows *a, const kk_rows *b, str name) except -1:
    if a.n_rows != b.n_rows or a.n != b.n:
        raise ValueError(f"{name}: {b.n_rows} rows of {b.n}, expected {a.n_rows} of {a.n}")
    return 0


cdef int _check_prec(int pc, const kk_rows *x, const kk_rows *y) except -1:
    """The float kernels read float32 and 16-bit input only (y may be NULL)."""
    if pc == KK_F32 and (x.dtype == KK_F64 or y != NULL and y.dtype == KK_F64):
        raise ValueError("prec: float64 input needs prec='float64'")
    return 0


cdef const void *_vector(cnp.ndarray a, int64_t n, char kind, str name) except NULL:
    """The data of a, an aligned contiguous vector of n int64 (kind 'i') or
    float64 (kind 'f') values."""
    if a.ndim != 1 or a.shape[0] != n or not _is(a, kind, 8) or not a.flags.c_contiguous \
            or not a.flags.aligned:
        raise ValueError(f"{name}: expected an aligned contiguous "
                         f"{'int64' if kind == c'i' else 'float64'} vector of length {n}")
    return cnp.PyArray_DATA(a)


cdef inline const int64_t *_i64_vector(cnp.ndarray a, int64_t n, str name) except NULL:
    return <const int64_t *>_vector(a, n, c'i', name)


cdef double *_out_vector(cnp.ndarray out, int64_t n_rows) except NULL:
    if out.ndim != 1 or out.shape[0] != n_rows or not _is(out, c'f', 8) \
            or not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned:
        raise ValueError("out: expected a writeable contiguous float64 vector, one value per row")
    return <double *>cnp.PyArray_DATA(out)


cdef double *_opt_vector(out, int64_t n_rows) except? NULL:
    if out is None:
        return NULL
    return _out_vector(out, n_rows)


# --------------------------------------------------------------------------
# reduction states (private): per row or per sequence, the state a result
# is the value of, and the headers' combines over arrays of them.  The
# state of a row (sequence) cut into consecutive pieces is the left-to-right
# combine of the pieces' states: see kernels/cpu/klkit_entries.h for when
# that gives the kernels' own bits.
# --------------------------------------------------------------------------

#: NumPy record types of the states, field for field the C structs
LSE_STATE = np.dtype([("m", "f8"), ("s", "f8")], align=True)
ENTROPY_STATE = np.dtype([("m", "f8"), ("s", "f8"), ("u", "f8")], align=True)
KL_STATE = np.dtype([("m", "f8"), ("mq", "f8"), ("ch", "f8"), ("cl", "f8"), ("W", "f8"),
                     ("A", "f8"), ("B", "f8"), ("zq", "f8"), ("nan", "f8"), ("off_m", "f8"),
                     ("off_s", "f8"), ("has_sums", "i4")], align=True)
SEG_STATE = np.dtype([("a", "f8"), ("b", "f8")], align=True)
XENT_STATE = np.dtype([("m", "f8"), ("s", "f8"), ("mq", "f8"), ("sq", "f8"), ("u", "f8")],
                      align=True)
#: what the KL row loop carries between pieces of a row (div_carry)
KL_CARRY = np.dtype([("k", KL_STATE), ("special", "i4"), ("lean_skip", "i4")], align=True)
assert (LSE_STATE.itemsize, ENTROPY_STATE.itemsize, KL_STATE.itemsize, SEG_STATE.itemsize,
        XENT_STATE.itemsize, KL_CARRY.itemsize) == \
    (sizeof(kk_lse_t), sizeof(kk_ent_t), sizeof(kk_kl_t), sizeof(kk_seg_t), sizeof(kk_xent_t),
     sizeof(kk_kl_carry_t))


cdef void *_states(cnp.ndarray a, object dtype, int64_t n, str name, bint write=True) except NULL:
    if a.dtype != dtype or a.ndim != 1 or a.shape[0] != n or not a.flags.c_contiguous \
            or not a.flags.aligned or write and not a.flags.writeable:
        raise ValueError(f"{name}: expected a contiguous array of {n} {dtype}")
    return cnp.PyArray_DATA(a)


# --------------------------------------------------------------------------
# rows: dense, divergences, tokens
# --------------------------------------------------------------------------

def lse_rows(cnp.ndarray x, int n_lead, cnp.ndarray out):
    """out[r] = log(sum(exp(row r of x))) in float64, or (out of LSE_STATE)
    the row's lse state."""
    cdef kk_rows dx
    _describe(x, n_lead, &dx, "x")
    cdef double *o
    cdef kk_lse_t *st
    if out.dtype == LSE_STATE:
        st = <kk_lse_t *>_states(out, LSE_STATE, dx.n_rows, "out")
        with nogil:
            kk_lse_states(&dx, st)
        return
    o = _out_vector(out, dx.n_rows)
    with nogil:
        kk_lse_rows(&dx, o)


def softmax_rows(cnp.ndarray x, int n_lead, bint log, cnp.ndarray out, states=None):
    """Row r of out = softmax or log_softmax of row r of x (out: float32, or
    float64 for float64 x; its own layout, writeable, not overlapping x),
    from the row's lse state states[r] where given (LSE_STATE)."""
    cdef kk_rows dx, do
    cdef const kk_lse_t *st = NULL
    _describe(x, n_lead, &dx, "x")
    want = "float64" if dx.dtype == KK_F64 else "float32"
    shape = (<object>x).shape
    if not _is(out, c'f', 8 if dx.dtype == KK_F64 else 4) or (<object>out).shape != shape \
            or not out.flags.writeable:
        raise ValueError(f"out: expected a writeable {want} array of shape {shape}")
    _describe(out, n_lead, &do, "out")
    _distinct(&do, "out")
    cdef int lg = log
    if states is not None:
        st = <const kk_lse_t *>_states(states, LSE_STATE, dx.n_rows, "states", False)
        with nogil:
            kk_softmax_given(&dx, lg, st, &do)
        return
    with nogil:
        kk_softmax_rows(&dx, lg, &do)


cdef const kk_rows *_div_operands(int iop, int pc, cnp.ndarray p, q, int n_lead, kk_rows *dp,
                                  kk_rows *dq) except? NULL:
    """dp (and dq, but for the entropy) = the rows of p (and q), checked
    alike and readable at precision pc; returns dq, or NULL for the entropy."""
    _describe(p, n_lead, dp, "p")
    if iop == KK_ENTROPY:
        _check_prec(pc, dp, NULL)
        return NULL
    _describe(q, n_lead, dq, "q")
    _same_rows(dp, dq, "q")
    _check_prec(pc, dp, dq)
    return dq


def div_rows(str op, str kind, str prec, cnp.ndarray p, q, int n_lead, double inv_temp,
             double beta, cnp.ndarray out):
    """out[r] = entropy / cross-entropy / KL / JS of row r of p (and q), in
    nats, or (out of ENTROPY_STATE, XENT_STATE or KL_STATE; logits) the
    entropy, cross-entropy or KL state of the row."""
    cdef kk_rows dp, dq
    cdef int iop = OPS[op], ikind = KINDS[kind], pc = _prec(prec)
    cdef const kk_rows *pq = _div_operands(iop, pc, p, q, n_lead, &dp, &dq)
    cdef double *o
    cdef void *st
    if out.dtype == ENTROPY_STATE and iop == KK_ENTROPY or out.dtype == KL_STATE and iop == KK_KL \
            or out.dtype == XENT_STATE and iop == KK_XENT:
        if ikind != KK_LOGITS:
            raise ValueError("kind: states are those of logits")
        st = _states(out, out.dtype, dp.n_rows, "out")
        with nogil:
            kk_div_states(iop, pc, &dp, pq, inv_temp, st)
        return
    o = _out_vector(out, dp.n_rows)
    with nogil:
        kk_div_rows(iop, ikind, pc, &dp, pq, inv_temp, beta, o)


def div_carry(str op, str kind, str prec, cnp.ndarray p, q, int n_lead, double inv_temp,
              cnp.ndarray carry, double beta=0.5):
    """Continue the row loop of each row of p (and q) from carry[r], the new
    carry into carry[r]: KL of logits (KL_CARRY) or the sum of the
    log-probs' terms (float64, not clamped), as kernels/cpu/klkit_entries.h
    describes."""
    cdef kk_rows dp, dq
    cdef int iop = OPS[op], ikind = KINDS[kind], pc = _prec(prec)
    cdef const kk_rows *pq = _div_operands(iop, pc, p, q, n_lead, &dp, &dq)
    if ikind == KK_LOGITS and iop != KK_KL:
        raise ValueError("op: from logits only KL carries its row loop")
    dtype = KL_CARRY if ikind == KK_LOGITS else np.dtype(np.float64)
    cdef void *c = _states(carry, dtype, dp.n_rows, "carry")
    with nogil:
        kk_div_carry(iop, ikind, pc, &dp, pq, inv_temp, beta, c)


def token_rows(str prec, cnp.ndarray x, int n_lead, cnp.ndarray targets, long long ignore_index,
               double inv_temp, weight, cnp.ndarray lp, ent, lse, smooth):
    """lp[r] = log softmax(row r of x * inv_temp)[targets[r]] (0 where
    targets[r] == ignore_index); ent / lse / smooth (float64 vectors or None)
    as in kk_token_rows.  Every target must be ignore_index or in [0, n)."""
    cdef kk_rows dx
    cdef int pc = _prec(prec)
    _describe(x, n_lead, &dx, "logits")
    _check_prec(pc, &dx, NULL)
    cdef int64_t n_rows = dx.n_rows, n = dx.n
    cdef const int64_t *pt = _i64_vector(targets, n_rows, "targets")
    cdef int64_t i, t
    for i in range(n_rows):            # the kernel must never see an index it would misread
        t = pt[i]
        if t != ignore_index and (t < 0 or t >= n):
            raise ValueError(f"targets: index {t} at row {i} is outside [0, {n})")
    cdef const void *pw = NULL
    cdef cnp.ndarray wa
    if weight is not None:
        wa = weight
        if not _is(wa, c'f', 8 if pc == KK_F64 else 4) or wa.ndim != 1 or wa.shape[0] != n \
                or not wa.flags.c_contiguous:
            raise ValueError(f"weight: expected a contiguous {prec} vector of {n} values")
        pw = cnp.PyArray_DATA(wa)
    cdef double *o_lp = _out_vector(lp, n_rows)
    cdef double *o_ent = _opt_vector(ent, n_rows)
    cdef double *o_lse = _opt_vector(lse, n_rows)
    cdef double *o_sm = _opt_vector(smooth, n_rows)
    cdef int64_t ig = ignore_index
    with nogil:
        kk_token_rows(pc, &dx, pt, ig, inv_temp, pw, o_lp, o_ent, o_lse, o_sm)


# --------------------------------------------------------------------------
# backward (torch autograd, _autograd.py): gradients with respect to rows
# --------------------------------------------------------------------------

cdef int _grad_out(cnp.ndarray out, cnp.ndarray like, int n_lead, kk_rows *d,
                   str name) except -1:
    """d = out: a writeable array of like's shape and dtype, distinct
    elements, apart from like's memory, described as rows like like's."""
    if (<object>out).shape != (<object>like).shape or out.dtype != like.dtype \
            or not out.flags.writeable:
        raise ValueError(f"{name}: expected a writeable {like.dtype} array of shape "
                         f"{(<object>like).shape}")
    if np.may_share_memory(out, like):
        raise ValueError(f"{name}: may not overlap the input")
    _describe(out, n_lead, d, name)
    _distinct(d, name)
    return 0


cdef inline const double *_f64_vector(cnp.ndarray a, int64_t n, str name) except NULL:
    return <const double *>_vector(a, n, c'f', name)


cdef const double *_f64_rows(cnp.ndarray a, int64_t n, int k, str name) except NULL:
    """a: a C-contiguous float64 [n, k] array (checked as it is: a reshaped
    temporary would be freed before the kernel reads it)."""
    if a.ndim != 2 or a.shape[0] != n or a.shape[1] != k or not _is(a, c'f', 8) \
            or not a.flags.c_contiguous or not a.flags.aligned:
        raise ValueError(f"{name}: expected a C-contiguous float64 array of shape ({n}, {k})")
    return <const double *>cnp.PyArray_DATA(a)


def token_grad(str prec, cnp.ndarray x, int n_lead, targets, double inv_temp, cnp.ndarray lse,
               cnp.ndarray coef, weight, cnp.ndarray out):
    """Row r of out = coef[r, 0] p + coef[r, 1] p log p + coef[r, 3] w
    (+ coef[r, 2] at targets[r]), p = softmax(row r of x * inv_temp) from
    lse[r] (kk_token_grad); targets None: no target term.  coef: float64
    [n_rows, 4]; rows whose coefficients are all 0 are zeros."""
    cdef kk_rows dx, do
    cdef int pc = _prec(prec)
    _describe(x, n_lead, &dx, "logits")
    _check_prec(pc, &dx, NULL)
    _grad_out(out, x, n_lead, &do, "out")
    cdef int64_t n_rows = dx.n_rows, n = dx.n, i, t
    cdef const double *pl = _f64_vector(lse, n_rows, "lse")
    cdef const double *pc4 = _f64_rows(coef, n_rows, 4, "coef")
    cdef const int64_t *pt = NULL
    if targets is not None:
        pt = _i64_vector(targets, n_rows, "targets")
        for i in range(n_rows):         # a target is read unless the row is all zero
            t = pt[i]
            if (t < 0 or t >= n) and (pc4[4 * i] != 0 or pc4[4 * i + 1] != 0
                                      or pc4[4 * i + 2] != 0 or pc4[4 * i + 3] != 0):
                raise ValueError(f"targets: index {t} at row {i} is outside [0, {n})")
    cdef const void *pw = NULL
    cdef cnp.ndarray wa
    if weight is not None:
        wa = weight
        if not _is(wa, c'f', 8 if pc == KK_F64 else 4) or wa.ndim != 1 or wa.shape[0] != n \
                or not wa.flags.c_contiguous or not wa.flags.aligned:
            raise ValueError(f"weight: expected a contiguous {prec} vector of {n} values")
        pw = cnp.PyArray_DATA(wa)
    with nogil:
        kk_token_grad(pc, &dx, pt, inv_temp, pl, pc4, pw, &do)


def div_grad(str op, str kind, str prec, cnp.ndarray p, q, int n_lead, double inv_temp,
             double beta, saved, cnp.ndarray g, dp, dq):
    """g[r] times the gradient of op of row r of p (and q) into dp and dq
    (arrays like p and q, or None where not wanted); saved: float64
    [n_rows, 5] (lse of p, lse of q, value in nats, JS's two sums from
    js_sums) for logits, else None."""
    cdef kk_rows rp, rq, op_, oq_
    cdef int iop = OPS[op], ikind = KINDS[kind], pc = _prec(prec)
    cdef const kk_rows *pq = _div_operands(iop, pc, p, q, n_lead, &rp, &rq)
    cdef const kk_rows *pdp = NULL
    cdef const kk_rows *pdq = NULL
    if dp is not None:
        _grad_out(dp, p, n_lead, &op_, "dp")
        pdp = &op_
    if dq is not None:
        if iop == KK_ENTROPY:
            raise ValueError("dq: the entropy has one argument")
        _grad_out(dq, q, n_lead, &oq_, "dq")
        pdq = &oq_
    for a, b in ((dp, q), (dq, p), (dp, dq)):
        if a is not None and b is not None and np.may_share_memory(a, b):
            raise ValueError("dp, dq: may not overlap each other or the inputs")
    cdef const double *ps = NULL
    if ikind == KK_LOGITS:
        if saved is None:
            raise ValueError("saved: logits need the forward's lse and value per row")
        ps = _f64_rows(saved, rp.n_rows, 5, "saved")
    cdef const double *pg = _f64_vector(g, rp.n_rows, "g")
    with nogil:
        kk_div_grad(iop, ikind, pc, &rp, pq, inv_temp, beta, ps, pg, pdp, pdq)


def js_sums(str prec, cnp.ndarray p, cnp.ndarray q, int n_lead, double inv_temp, double beta,
            cnp.ndarray saved):
    """saved[r, 3:5] = sum P log(P/M), sum Q log(Q/M) of row r of logits p,
    q, from saved[r, 0:2] (their lse): what JS's backward needs."""
    cdef kk_rows rp, rq
    cdef int pc = _prec(prec)
    _div_operands(KK_JS, pc, p, q, n_lead, &rp, &rq)
    if saved.ndim != 2 or saved.shape[0] != rp.n_rows or saved.shape[1] != 5 \
            or not _is(saved, c'f', 8) or not saved.flags.c_contiguous \
            or not saved.flags.writeable or not saved.flags.aligned:
        raise ValueError(f"saved: expected a writeable C-contiguous float64 array of shape "
                         f"({rp.n_rows}, 5)")
    cdef double *ps = <double *>cnp.PyArray_DATA(saved)
    with nogil:
        kk_js_sums(pc, &rp, &rq, inv_temp, beta, ps)


def softmax_grad(bint log, cnp.ndarray y, cnp.ndarray gy, int n_lead, cnp.ndarray out):
    """Row r of out = the softmax (log_softmax) backward of row r of the
    output y and the upstream gradient gy (both float32, or both float64),
    out like the forward's input."""
    cdef kk_rows dy, dg, do
    _describe(y, n_lead, &dy, "y")
    _describe(gy, n_lead, &dg, "gy")
    _same_rows(&dy, &dg, "gy")
    if dy.dtype != dg.dtype or dy.dtype not in (KK_F32, KK_F64):
        raise ValueError("gy: expected float32 or float64, the dtype of y")
    if (<object>out).shape != (<object>y).shape or not out.flags.writeable:
        raise ValueError(f"out: expected a writeable array of shape {(<object>y).shape}")
    _describe(out, n_lead, &do, "out")
    _distinct(&do, "out")
    if np.may_share_memory(out, y) or np.may_share_memory(out, gy):
        raise ValueError("out: may not overlap y or gy")
    cdef int lg = log, pc = dy.dtype
    with nogil:
        kk_softmax_grad(lg, pc, &dy, &dg, &do)


# --------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------
# Entry points of kernels/cpu/segment.c (segments.py is the public API).  They
# check every span the kernel will read, so no caller mistake can become an
# out-of-bounds read; the user-facing checks with their messages (offsets
# non-decreasing, mask shape, ...) are done before, in segments.py.

cdef int _check_spans(const int64_t *start, const int64_t *ln, int64_t n, int64_t size,
                      str name) except -1:
    cdef int64_t i, s, l
    for i in range(n):
        s = start[i]
        l = ln[i]
        if l < 0 or s < 0 or s > size - l:
            raise ValueError(f"{name}: sequence {i} ({s}, length {l}) lies outside the "
                             f"{size} values")
    return 0


cdef const int64_t *_packed(cnp.ndarray x, kk_rows *d, str name, cnp.ndarray starts,
                            cnp.ndarray lens, int64_t n) except NULL:
    """d = 1-D x of packed values, whose n spans (starts, lens) are checked
    to lie inside it; returns the starts."""
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got {x.ndim}-D")
    _describe(x, 0, d, name)
    cdef const int64_t *st = _i64_vector(starts, n, "offsets")
    _check_spans(st, _i64_vector(lens, n, "lengths"), n, x.shape[0], name)
    return st


cdef int _reduces(int iop, int est) except -1:
    if est != KK_EST_NONE and (iop == KK_SEG_MAX or iop == KK_SEG_LSE):
        raise ValueError("estimator: only sum and mean reduce estimates")
    return 0


def seg_packed(str op, estimator, str prec, cnp.ndarray x, y, cnp.ndarray x_start, y_start,
               cnp.ndarray lens, double clamp, double empty, cnp.ndarray out):
    """out[s] = reduction of the lens[s] values of 1-D x from x_start[s] (seq_kl:
    of the estimator over the pairs with y from y_start[s]), float64, or (out
    of SEG_STATE) the sequence's state."""
    cdef int iop = SEG_OPS[op], est = ESTIMATORS[estimator], pc = _prec(prec)
    _reduces(iop, est)
    cdef kk_rows dx, dy
    cdef const kk_rows *py = NULL
    cdef const int64_t *yst = NULL
    cdef int64_t n = lens.shape[0]
    cdef const int64_t *ln = _i64_vector(lens, n, "lengths")
    cdef const int64_t *xst = _packed(x, &dx, "values", x_start, lens, n)
    if est != KK_EST_NONE:
        yst = _packed(y, &dy, "ref_logp", y_start, lens, n)
        py = &dy
    _check_prec(pc, &dx, py)
    cdef double *o
    cdef kk_seg_t *st
    if out.dtype == SEG_STATE:
        st = <kk_seg_t *>_states(out, SEG_STATE, n, "out")
        with nogil:
            kk_seg_states(iop, est, pc, &dx, xst, py, yst, ln, n, clamp, st)
        return
    o = _out_vector(out, n)
    with nogil:
        kk_seg_packed(iop, est, pc, &dx, xst, py, yst, ln, n, clamp, empty, o)


def seg_padded(str op, estimator, str prec, cnp.ndarray x, y, mask, double clamp, double empty,
               cnp.ndarray out, count=None):
    """out[r] = reduction of the entries of row r of x [B, T] whose mask entry
    is True (mask None: all); count[r] (int64, optional) = their number."""
    cdef int iop = SEG_OPS[op], est = ESTIMATORS[estimator], pc = _prec(prec)
    _reduces(iop, est)
    cdef kk_rows dx, dy, dm
    if x.ndim != 2:
        raise ValueError(f"values: expected a 2-D array [B, T], got {x.ndim}-D")
    _describe(x, 1, &dx, "values")
    cdef const kk_rows *py = NULL
    cdef const kk_rows *pm = NULL
    cdef int64_t *pc_ = NULL
    cdef cnp.ndarray ya, ma, ca
    if est != KK_EST_NONE:
        ya = y
        if ya.ndim != 2 or ya.shape[0] != x.shape[0] or ya.shape[1] != x.shape[1]:
            raise ValueError("ref_logp: must have the shape of logp")
        _describe(ya, 1, &dy, "ref_logp")
        py = &dy
    if mask is not None:
        ma = mask
        if cnp.PyArray_TYPE(ma) != cnp.NPY_BOOL or ma.ndim != 2 or ma.shape[0] != x.shape[0] \
                or ma.shape[1] != x.shape[1]:
            raise ValueError(f"mask: expected a bool array of shape {(<object>x).shape}")
        _describe(ma, 1, &dm, "mask", KK_BOOL)
        pm = &dm
    if count is not None:
        ca = count
        if ca.ndim != 1 or ca.shape[0] != dx.n_rows or not _is(ca, c'i', 8) \
                or not ca.flags.c_contiguous or not ca.flags.writeable:
            raise ValueError("count: expected a writeable contiguous int64 vector, one per row")
        pc_ = <int64_t *>cnp.PyArray_DATA(ca)
    _check_prec(pc, &dx, py)
    cdef double *o = _out_vector(out, dx.n_rows)
    with nogil:
        kk_seg_padded(iop, est, pc, &dx, py, pm, clamp, empty, o, pc_)


def kl_estimate(estimator, str prec, cnp.ndarray x, cnp.ndarray y, int n_lead, double clamp,
                cnp.ndarray out):
    """out = estimator(x - y) elementwise for x, y of one shape (any layout,
    broadcast views included); out contiguous of that shape, of type prec."""
    cdef int est = ESTIMATORS[estimator], pc = _prec(prec)
    if est == KK_EST_NONE:
        raise ValueError("estimator: required")
    cdef kk_rows dx, dy
    _describe(x, n_lead, &dx, "logp")
    _describe(y, n_lead, &dy, "ref_logp")
    _same_rows(&dx, &dy, "ref_logp")
    _check_prec(pc, &dx, &dy)
    if not _is(out, c'f', 8 if pc == KK_F64 else 4) or out.size != dx.n_rows * dx.n \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out: expected a writeable contiguous {prec} array of "
                         f"{dx.n_rows * dx.n} values")
    cdef void *po = cnp.PyArray_DATA(out)
    with nogil:
        kk_kl_estimate(est, pc, &dx, &dy, clamp, po)


# --------------------------------------------------------------------------
# combining reduction states (private)
# --------------------------------------------------------------------------

#: the state types by name: (C code, NumPy record type)
STATE_KINDS = {"lse": (KK_STATE_LSE, LSE_STATE), "entropy": (KK_STATE_ENTROPY, ENTROPY_STATE),
               "xent": (KK_STATE_XENT, XENT_STATE), "kl": (KK_STATE_KL, KL_STATE),
               "seg": (KK_STATE_SEG, SEG_STATE)}


def state_combine(str kind, cnp.ndarray a, cnp.ndarray b, cnp.ndarray out, op="sum",
                  double inv_temp=1.0):
    """out[i] = the combine of states a[i] then b[i] (arrays of the kind's
    record type; op: the segment reduction, inv_temp: KL's), through the
    kernels' own instructions."""
    code, dtype = STATE_KINDS[kind]
    cdef int64_t n = a.shape[0]
    cdef const void *pa = _states(a, dtype, n, "a", False)
    cdef const void *pb = _states(b, dtype, n, "b", False)
    cdef void *po = _states(out, dtype, n, "out")
    cdef int k = code, iop = SEG_OPS[op]
    with nogil:
        kk_state_combine(k, iop, inv_temp, n, pa, pb, po)


def state_values(str kind, cnp.ndarray a, cnp.ndarray out, op="sum", counts=None,
                 double empty=0.0, double inv_temp=1.0, double eps=0.0):
    """out[i] (float64) = the value of state a[i]: kind "lse", "entropy",
    "xent", "kl" (with its inputs' unit roundoff eps; NaN where the sums
    cannot be trusted and the row's direct form is needed) or "seg" (with
    the op, the sequences' token counts and the empty value)."""
    code, dtype = STATE_KINDS[kind]
    cdef int64_t n = a.shape[0]
    cdef const void *pa = _states(a, dtype, n, "a", False)
    cdef double *o = _out_vector(out, n)
    cdef const int64_t *pc = _i64_vector(counts, n, "counts") if kind == "seg" else NULL
    cdef int k = code, iop = SEG_OPS[op]
    with nogil:
        kk_state_values(k, iop, inv_temp, eps, n, pa, pc, empty, o)


# --------------------------------------------------------------------------
# threads and build
# --------------------------------------------------------------------------

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
        "sanitize": KLKIT_BUILD_SANITIZE.decode(),
    }
