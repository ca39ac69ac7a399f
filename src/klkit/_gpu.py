"""The public functions on GPU arrays (torch CUDA tensors, CuPy arrays):
the same arguments, checks (klkit._args) and dtype rules as on the CPU,
computed by the CUDA kernels (klkit._cuda) on the arrays' device and the
producer's current stream, results returned in the caller's framework.

Each public function enters here when any array argument is a GPU array
(_device.is_device); every array argument must then be on that GPU.
Checks that need the data (targets in range, offsets non-decreasing and
inside the values) run as kernels queued after the computation, and their
answer is read once at the end (the call's one synchronisation): the same
ValueError as on the CPU, and never an out-of-bounds read before it.

torch tensors that require grad go through _gpu_autograd.py's Functions
(forward here, backward kernels of kernels/cuda/grad.cu; the segment
functions through _autograd.py's, which work on any device).

What the GPU path does not compute raises a TypeError or ValueError saying
what to pass instead: logsumexp's weights ``b`` and ``return_sign``,
complex input and temperatures beyond the float64 kernels' range.
"""
import math
from typing import NamedTuple

from . import _args, _kernels
from ._device import native, same_device

KERNEL_DTYPES = ("float16", "bfloat16", "float32", "float64")


class _Ctx:
    """One call: the framework, the CUDA module, the reference array (for
    allocations on its device)."""

    def __init__(self, x, name):
        self.cu = _kernels.gpu_backend(name)
        self.x, self.fw = native(x, name)

    def arr(self, a, name):
        """a (a GPU array of this call) in the call's framework."""
        if a is None:
            return None
        b, fw = native(a, name)
        if fw.name != self.fw.name:
            raise TypeError(f"{name}: a {fw.name} array mixed with {self.fw.name} arrays; pass "
                            "arrays of one framework")
        return b

    def dev(self, a):
        return None if a is None else self.fw.describe(a)

    def empty(self, shape, dtype):
        return self.fw.empty(self.x, shape, dtype)

    def ws(self, nbytes):
        return self.dev(self.empty((max(int(nbytes), 1),), "uint8"))

    def floats(self, a, name):
        """a as a float array of a kernel dtype (integers and bools promoted
        to float64, as on the CPU)."""
        dt = self.fw.dtype(a)
        if dt in KERNEL_DTYPES:
            return a
        if dt == "bool" or dt.startswith("int") or dt.startswith("uint"):
            return self.fw.astype(a, "float64")
        if dt.startswith("complex"):
            raise TypeError(f"{name}: complex input is not supported on the GPU")
        raise TypeError(f"{name}: expected a real floating-point array, got dtype {dt}")

    def rows(self, a, axes):
        """(a with the reduced axes last, copied where its rows are not
        contiguous; n_lead; kept shape)"""
        if a.ndim == 0:
            a = a.reshape(1)
            axes = (0,)
            n_lead = 0
        else:
            n_lead = a.ndim - len(axes)
        perm = [i for i in range(a.ndim) if i not in axes] + list(axes)
        v = self.fw.permute(a, perm)
        if not self.cu.readable(self.dev(v), n_lead):
            v = self.fw.contiguous(v)
        return v, n_lead, tuple(v.shape[:n_lead])

    def finish(self, out, shape, dtype):
        """float64 per-row results cast to the result dtype, reshaped (a 0-d
        result stays a 0-d array, as CuPy and torch do)."""
        return self.fw.astype(out, dtype).reshape(shape)

    def first_bad(self, n):
        """a device int64 [1] holding n (the validation kernels lower it)"""
        return self.fw.full(self.x, (1,), n, "int64")


def _result(dt):
    return "float64" if dt == "float64" else "float32"


def _common(*dts):
    """the dtype two GPU operands are computed in (both are cast to it):
    one shared dtype stays, float64 wins, any other mix is float32"""
    if len(set(dts)) == 1:
        return dts[0]
    return "float64" if "float64" in dts else "float32"


def _wants_grad(*xs):
    """whether an argument is a torch tensor that requires grad, with grad
    mode on: the call then goes through _gpu_autograd's Functions"""
    for x in xs:
        if getattr(x, "requires_grad", False):
            import torch

            return torch.is_grad_enabled()
    return False


def _index_check(c, v, lo, hi, skip, message):
    """queue the validation of int64 vector v; returns a function that reads
    the answer and raises message(i, value) for the first bad i"""
    first = c.first_bad(v.shape[0])
    c.cu.check_index(c.dev(v), lo, hi, skip, c.dev(first))

    def raise_if_bad():
        i = int(first[0].item())
        if i < v.shape[0]:
            raise ValueError(message(i, int(v[i].item())))
    return raise_if_bad


# --------------------------------------------------------------------------
# dense
# --------------------------------------------------------------------------

def logsumexp(a, axis, b, keepdims, return_sign):
    if b is not None or return_sign:
        raise TypeError("logsumexp: weights b and return_sign are not computed on the GPU; "
                        "pass host arrays for them (klkit.reference.logsumexp)")
    if _wants_grad(a):
        from . import _gpu_autograd

        return _gpu_autograd.logsumexp(a, axis, keepdims)
    c = _Ctx(a, "a")
    x = c.floats(c.x, "a")
    axes = _args.axes(axis, x.ndim)
    out = lse_rows(c, x, axes)[0]
    return c.finish(out, lse_shape(x.shape, axes, keepdims), _result(c.fw.dtype(x)))


def lse_shape(shape, axes, keepdims):
    if keepdims:       # 0-d input keeps one axis of length 1, as scipy
        return tuple(1 if i in axes else n for i, n in enumerate(shape)) or (1,)
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def lse_rows(c, x, axes):
    """(float64 lse of each row of x over axes, the rows' view, n_lead)"""
    v, n_lead, kept = c.rows(x, axes)
    n_rows = math.prod(kept)
    out = c.empty((n_rows,), "float64")
    dv = c.dev(v)
    c.cu.lse_rows(dv, n_lead, c.dev(out), c.ws(c.cu.workspace(n_rows, dv.size // max(n_rows, 1))))
    return out, v, n_lead


def softmax(x, axis, out, log):
    same_device((x, out), ("x", "out"))
    if _wants_grad(x):
        from . import _gpu_autograd

        if out is not None:
            raise TypeError("out: not supported when x requires grad; pass out=None")
        return _gpu_autograd.softmax(x, axis, log)
    c = _Ctx(x, "x")
    a = c.floats(c.x, "x")
    dtype = _result(c.fw.dtype(a))
    if out is not None:
        out = c.arr(out, "out")
        if tuple(out.shape) != tuple(a.shape) or c.fw.dtype(out) != dtype:
            raise ValueError(f"out: expected a {dtype} array of shape {tuple(a.shape)}")
    axes = _args.axes(axis, a.ndim)
    v, n_lead, kept = c.rows(a, axes)
    target = out if out is not None else c.empty(tuple(a.shape), dtype)
    t = target.reshape(1) if target.ndim == 0 else target
    perm = [i for i in range(t.ndim) if i not in axes] + list(axes) if a.ndim else [0]
    dest = c.fw.permute(t, perm)
    direct = c.cu.readable(c.dev(dest), n_lead)
    if not direct:
        dest = c.empty(tuple(dest.shape), dtype)
    if math.prod(v.shape):
        n_rows = math.prod(kept)
        c.cu.softmax_rows(c.dev(v), n_lead, log, c.dev(dest),
                          c.ws(c.cu.workspace(n_rows, math.prod(v.shape) // max(n_rows, 1))))
    if not direct:
        c.fw.permute(t, perm)[...] = dest
    return target


# --------------------------------------------------------------------------
# divergences
# --------------------------------------------------------------------------

def divergence(op, arrays, axis, kind, log_base, temperature, beta):
    names = ("p", "q")[:len(arrays)]
    same_device(arrays, names)
    if _wants_grad(*arrays):
        from . import _gpu_autograd

        return _gpu_autograd.divergence(op, arrays, axis, kind, log_base, temperature, beta)
    c = _Ctx(arrays[0], names[0])
    o = div_operands(c, arrays, axis, kind, temperature)
    out = div_run(c, op, o, temperature, beta)
    if log_base is not None:
        out /= log_base
    return c.finish(out, o.kept, o.out_dtype)


class DivOperands(NamedTuple):
    views: list          # p (and q) as rows over the distribution axis, broadcast
    n_lead: int
    kept: tuple
    axis: int            # the distribution axis of the broadcast shape
    kind: str            # the kernels' kind ("probs" arrive as "logits")
    out_dtype: str


def div_operands(c, arrays, axis, kind, temperature):
    names = ("p", "q")[:len(arrays)]
    arrs = [c.floats(c.arr(a, n), n) for a, n in zip(arrays, names)]
    dtype = _common(*[c.fw.dtype(a) for a in arrs])
    out_dtype = _result(dtype)
    shape = tuple(arrs[0].shape)
    if len(arrs) > 1:
        import numpy as np

        try:
            shape = np.broadcast_shapes(tuple(arrs[0].shape), tuple(arrs[1].shape))
        except ValueError:
            raise ValueError(f"p, q: shapes {tuple(arrs[0].shape)} and {tuple(arrs[1].shape)} "
                             "do not broadcast") from None
    ax = _args.distribution_axis(axis, len(shape))
    if kind == "logits" and not 1e-38 <= temperature <= 1e36:
        if not 1e-307 <= temperature <= 1e305:
            raise ValueError("temperature: beyond the GPU kernels' range [1e-307, 1e305]; "
                             "use host arrays")
        dtype = "float64"
    views, n_lead, kept = [], 0, shape[:ax] + shape[ax + 1:]
    for a in arrs:
        if c.fw.dtype(a) != dtype:
            a = c.fw.astype(a, dtype)
        a = c.fw.broadcast_to(a, shape)
        if kind == "probs":
            a = c.fw.log(c.fw.astype(a, "float64" if dtype == "float64" else "float32"))
        v, n_lead, kept = c.rows(a, (ax,))
        views.append(v)
    return DivOperands(views, n_lead, kept, ax, "logits" if kind == "probs" else kind, out_dtype)


def div_run(c, op, o, temperature, beta, saved=None):
    """float64 value per row (in nats); saved: None, or a float64 [n_rows,
    5] device array receiving what the backward needs (logits)"""
    n_rows = math.prod(o.kept)
    out = c.empty((n_rows,), "float64")
    if n_rows:
        dp = c.dev(o.views[0])
        c.cu.div_rows(op, o.kind, dp, c.dev(o.views[1]) if len(o.views) > 1 else None,
                      o.n_lead, 1.0 / temperature, float(beta), c.dev(out),
                      c.ws(c.cu.workspace(n_rows, dp.size // n_rows)), c.dev(saved))
    return out


# --------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------

def tokens(c, logits, targets, ignore_index, check=True):
    x = c.floats(c.x, "logits")
    if x.ndim == 0:
        raise ValueError("logits: expected at least one dimension (the class axis, last)")
    ignore_index = _args.ignore_index(ignore_index)
    t = c.arr(targets, "targets")
    dt = c.fw.dtype(t)
    if not (dt.startswith("int") or dt.startswith("uint")):
        raise TypeError(f"targets: expected an integer array of class indices, got dtype {dt}")
    lead = tuple(x.shape[:-1])
    if tuple(t.shape) != lead:
        raise ValueError(f"targets: shape {tuple(t.shape)} does not match the logits' leading "
                         f"shape {lead}")
    tgt = c.fw.contiguous(c.fw.astype(t, "int64").reshape(-1))
    n = x.shape[-1]
    if not check:
        v, _, _ = c.rows(x, (x.ndim - 1,))
        return v, tgt, ignore_index, lead, lambda: None
    validate = _index_check(
        c, tgt, 0, n, ignore_index,
        lambda i, v: f"targets: class index {v} at position "
                     f"{_unravel(i, lead)} is outside [0, {n}) and is not ignore_index "
                     f"({ignore_index})")
    v, _, _ = c.rows(x, (x.ndim - 1,))
    return v, tgt, ignore_index, lead, validate


def _unravel(i, shape):
    pos = []
    for s in reversed(shape):
        pos.append(i % s)
        i //= s
    return tuple(reversed(pos))


def token_logprobs(logits, targets, temperature, ignore_index, return_entropy, return_lse,
                   check=True):
    same_device((logits, targets), ("logits", "targets"))
    if _wants_grad(logits):
        from . import _gpu_autograd

        return _gpu_autograd.token_logprobs(logits, targets, temperature, ignore_index,
                                            return_entropy, return_lse, check)
    c = _Ctx(logits, "logits")
    v, tgt, ignore_index, lead, validate = tokens(c, logits, targets, ignore_index, check)
    dtype = _result(c.fw.dtype(v))
    lp, ent, lse, _ = token_rows(c, v, tgt, ignore_index, temperature, return_entropy,
                                 return_lse)
    validate()
    from .tokens import TokenLogprobs

    res = [None if r is None else c.finish(r, lead, dtype) for r in (lp, ent, lse)]
    return res[0] if not (return_entropy or return_lse) else TokenLogprobs(*res)


def token_rows(c, v, tgt, ignore_index, temperature, want_ent, want_lse, weight=None,
               want_smooth=False):
    """(lp, ent, lse, the logits read) per row, float64 (None where not
    wanted; with want_smooth, smooth in ent's place), of v / temperature:
    v itself, or v in float64 where 1/T leaves float32's range (the
    backward must read that one too)"""
    if not 1e-38 <= temperature <= 1e36:
        if not 1e-307 <= temperature <= 1e305:
            raise ValueError("temperature: beyond the GPU kernels' range [1e-307, 1e305]; "
                             "use host arrays")
        v = c.fw.astype(v, "float64")
    n = tgt.shape[0]
    lp = c.empty((n,), "float64")
    ent = c.empty((n,), "float64") if want_ent or want_smooth else None
    lse = c.empty((n,), "float64") if want_lse else None
    if n:
        c.cu.token_rows(c.dev(v), v.ndim - 1, c.dev(tgt), ignore_index, 1.0 / temperature,
                        c.dev(weight), c.dev(lp), None if want_smooth else c.dev(ent),
                        c.dev(lse), c.dev(ent) if want_smooth else None,
                        c.ws(c.cu.workspace(n, v.shape[-1])))
    return lp, ent, lse, v


def softmax_cross_entropy(logits, targets, weight, ignore_index, label_smoothing, reduction,
                          check=True):
    same_device((logits, targets, weight), ("logits", "targets", "weight"))
    if _wants_grad(logits, weight):
        from . import _gpu_autograd

        return _gpu_autograd.softmax_cross_entropy(logits, targets, weight, ignore_index,
                                                   label_smoothing, reduction, check)
    c = _Ctx(logits, "logits")
    f = sce_forward(c, logits, targets, weight, ignore_index, label_smoothing, reduction, False,
                    check)
    return c.finish(f.loss, f.lead if f.reduction == "none" else (), f.dtype)


class SceForward(NamedTuple):
    v: object
    tgt: object
    keep: object
    w64: object          # float64 class weights or None
    wk: object           # the weights the kernels read (smoothing), or None
    w_t: object          # float64 weight of each position's target (0 where ignored)
    lse: object          # float64 per row, or None
    loss: object         # float64
    eps: float
    reduction: str
    lead: tuple
    dtype: str


def sce_forward(c, logits, targets, weight, ignore_index, label_smoothing, reduction, want_lse,
                check=True):
    v, tgt, ignore_index, lead, validate = tokens(c, logits, targets, ignore_index, check)
    n_classes = v.shape[-1]
    reduction = _args.reduction(reduction)
    eps = _args.label_smoothing(label_smoothing)
    w64 = None
    if weight is not None:
        w = c.floats(c.arr(weight, "weight"), "weight")
        if tuple(w.shape) != (n_classes,):
            raise ValueError(f"weight: expected one value per class, shape ({n_classes},), "
                             f"got {tuple(w.shape)}")
        w64 = c.fw.astype(w, "float64")
    prec = "float64" if c.fw.dtype(v) == "float64" else "float32"
    wk = None if not eps or w64 is None else c.fw.contiguous(c.fw.astype(w64, prec))
    lp, smooth, lse, _ = token_rows(c, v, tgt, ignore_index, 1.0, False, want_lse, wk,
                                    bool(eps))
    loss, keep, w_t = _loss(c, lp, smooth, tgt, ignore_index, w64, eps, n_classes, reduction)
    validate()
    return SceForward(v, tgt, keep, w64, wk, w_t, lse, loss, eps, reduction, lead,
                      _result(c.fw.dtype(v)))


def _loss(c, lp, smooth, tgt, ignore, weight, eps, n_classes, reduction):
    """(loss, kept positions, each position's target weight): the CPU
    path's _loss (tokens.py) in the framework's float64 arithmetic"""
    fw = c.fw
    keep = tgt != ignore
    zero = fw.full(c.x, (), 0.0, "float64")
    if weight is None or n_classes == 0:       # (no classes: nothing is kept)
        w_t = fw.astype(keep, "float64")
    else:
        safe = fw.where(keep, tgt, fw.full(c.x, (), 0, "int64"))
        w_t = fw.where(keep, weight[safe], zero)
    # a term whose factor is exactly 0 adds nothing (w[t] = 0, eps = 1), as on the CPU
    nll = fw.where(keep & (w_t != 0), -w_t * lp, zero)
    smoothed = None if eps == 0.0 else \
        (eps / n_classes if n_classes else math.nan) * fw.where(keep, -smooth, zero)  # C = 0: nan
    loss = nll if smoothed is None else smoothed if eps == 1.0 else \
        (1.0 - eps) * nll + smoothed
    if reduction == "none":
        return loss, keep, w_t
    total = loss.sum()
    return (total / w_t.sum() if reduction == "mean" else total), keep, w_t


# --------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------

def _offsets(c, offsets, n_values, check=True):
    """(starts, lengths) int64 on the device from offsets, and the function
    that raises the CPU path's errors for bad offsets"""
    off = c.arr(offsets, "offsets")
    dt = c.fw.dtype(off)
    if not (dt.startswith("int") or dt.startswith("uint")):
        raise TypeError(f"offsets: expected an integer array, got dtype {dt}")
    if off.ndim != 1 or off.shape[0] < 1:
        raise ValueError(f"offsets: expected a 1-D array of n+1 positions, got shape "
                         f"{tuple(off.shape)}")
    off = c.fw.contiguous(c.fw.astype(off, "int64"))
    starts = c.fw.contiguous(off[:-1])
    lens = c.fw.contiguous(off[1:] - off[:-1])
    if not check:
        return starts, lens, lambda: None
    first = c.first_bad(off.shape[0])
    c.cu.check_sorted(c.dev(off), c.dev(first))
    # (offsets sorted, as checked first: only offsets[0] can be negative and
    # offsets[-1] beyond the values, which the messages name, as on the CPU)
    bounds = _index_check(c, off, 0, n_values + 1, -2**63, lambda i, v: (
        f"offsets: offsets[0] = {int(off[0].item())} is negative" if v < 0 else
        f"offsets: offsets[-1] = {int(off[-1].item())} lies beyond the {n_values} values"))

    def raise_if_bad():
        i = int(first[0].item())
        if i < off.shape[0]:
            a, b = int(off[i].item()), int(off[i + 1].item())
            raise ValueError(f"offsets: must be non-decreasing, but offsets[{i + 1}] = {b} "
                             f"< offsets[{i}] = {a}")
        bounds()
        last = int(off[-1].item())
        if last < n_values:
            raise ValueError(_args.short_offsets(last, n_values))
    return starts, lens, raise_if_bad


def _mask(c, mask, shape):
    m = c.arr(mask, "mask")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"mask: shape {tuple(m.shape)} does not match the values' shape "
                         f"{tuple(shape)}")
    dt = c.fw.dtype(m)
    if dt == "bool":
        return m
    if not (dt.startswith("int") or dt.startswith("uint") or dt.startswith("float")
            or dt == "bfloat16"):
        raise TypeError(f"mask: expected a bool or 0/1 array, got dtype {dt}")
    ok = (m == 0) | (m == 1)            # (checked here: one synchronisation)
    if not bool(ok.all()):
        bad = m[~ok].reshape(-1)[0].item()
        raise ValueError("mask: expected booleans or 0/1 values (weights are not masks), "
                         f"found {bad!r}")
    return m != 0


def _values(c, a, name):
    x = c.floats(c.arr(a, name), name)
    return x


def segment(op, values, offsets, mask, empty, check=True):
    same_device((values, offsets, mask), ("values", "offsets", "mask"))
    if _wants_grad(values):
        from . import _autograd

        return _autograd.segment(op, values, offsets, mask, empty, check)
    _args.layout(False, offsets, mask)
    empty = _args.empty(empty)
    c = _Ctx(values, "values")
    x = _values(c, values, "values")
    out, _, validate = _run(c, op, x, None, offsets, mask, None, math.inf, empty, False, check)
    validate()
    return c.fw.astype(out, _result(c.fw.dtype(x)))


def _run(c, op, x, y, offsets, mask, est, clamp, empty, want_counts, check=True):
    """float64 per-sequence results (and int64 counts where asked), the
    validation to read after"""
    if offsets is not None:
        if x.ndim != 1:
            raise ValueError(f"values: packed values (with offsets) must be 1-D, got shape "
                             f"{tuple(x.shape)}")
        starts, lens, validate = _offsets(c, offsets, x.shape[0], check)
        n_seg = lens.shape[0]
        out = c.empty((n_seg,), "float64")
        if n_seg:
            c.cu.seg_packed(op, est, c.dev(x), c.dev(y), c.dev(starts), c.dev(starts),
                            c.dev(lens), clamp, empty, c.dev(out),
                            c.ws(c.cu.seg_workspace(n_seg, x.shape[0])))
        return out, (lens if want_counts else None), validate
    if x.ndim != 2:
        if x.ndim == 1 and mask is None:
            raise ValueError("offsets: required for 1-D (packed) values; 2-D [B, T] values "
                             "take a mask instead")
        raise ValueError(f"values: expected 1-D values with offsets, or 2-D [B, T] values with "
                         f"a mask, got shape {tuple(x.shape)}")
    m = None if mask is None else _mask(c, mask, x.shape)
    xv = x if c.cu.readable(c.dev(x), 1) else c.fw.contiguous(x)
    yv = None if y is None else (y if c.cu.readable(c.dev(y), 1) else c.fw.contiguous(y))
    mv = None if m is None else (m if c.cu.readable(c.dev(m), 1) else c.fw.contiguous(m))
    B = x.shape[0]
    out = c.empty((B,), "float64")
    counts = c.empty((B,), "int64") if want_counts else None
    if B:
        c.cu.seg_padded(op, est, c.dev(xv), c.dev(yv), c.dev(mv), clamp, empty, c.dev(out),
                        c.dev(counts))
    return out, counts, lambda: None


def seq_kl(logp, ref_logp, offsets, mask, estimator, reduce, clamp, empty, check=True):
    same_device((logp, ref_logp, offsets, mask), ("logp", "ref_logp", "offsets", "mask"))
    if _wants_grad(logp, ref_logp):
        from . import _autograd

        return _autograd.seq_kl(logp, ref_logp, offsets, mask, estimator, reduce, clamp,
                                    empty, check)
    _args.layout(False, offsets, mask)
    est = _args.estimator(estimator)
    cl = _args.clamp(clamp)
    reduce = _args.reduce(reduce)
    empty = _args.empty(empty)
    c = _Ctx(logp, "logp")
    x, y = _values(c, logp, "logp"), _values(c, ref_logp, "ref_logp")
    if tuple(x.shape) != tuple(y.shape):
        raise ValueError(f"ref_logp: shape {tuple(y.shape)} does not match logp's "
                         f"{tuple(x.shape)}")
    dtype = _common(c.fw.dtype(x), c.fw.dtype(y))
    x, y = c.fw.astype(x, dtype), c.fw.astype(y, dtype)
    out, _, validate = _run(c, reduce, x, y, offsets, mask, est, cl, empty, False, check)
    validate()
    return c.fw.astype(out, _result(dtype))


def kl_estimate(logp, ref_logp, estimator, clamp):
    same_device((logp, ref_logp), ("logp", "ref_logp"))
    if _wants_grad(logp, ref_logp):
        from . import _autograd

        return _autograd.kl_estimate(logp, ref_logp, estimator, clamp)
    est = _args.estimator(estimator)
    cl = _args.clamp(clamp)
    c = _Ctx(logp, "logp")
    a, b = _values(c, logp, "logp"), _values(c, ref_logp, "ref_logp")
    dtype = _common(c.fw.dtype(a), c.fw.dtype(b))
    import numpy as np

    try:
        shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
    except ValueError:
        raise ValueError(f"ref_logp: shape {tuple(b.shape)} does not broadcast with logp's "
                         f"{tuple(a.shape)}") from None
    out = c.empty(shape, _result(dtype))
    if math.prod(shape):
        axes = (len(shape) - 1,) if shape else ()
        xa, n_lead, _ = c.rows(c.fw.broadcast_to(c.fw.astype(a, dtype), shape), axes)
        xb, _, _ = c.rows(c.fw.broadcast_to(c.fw.astype(b, dtype), shape), axes)
        c.cu.kl_estimate(est, c.dev(xa), c.dev(xb), n_lead, cl, c.dev(out.reshape(-1)))
    return out


def agg_loss(values, offsets, mask, mode, num_tokens, num_seqs, norm_length, check=True):
    same_device((values, offsets, mask), ("values", "offsets", "mask"))
    if _wants_grad(values):
        from . import _autograd

        return _autograd.agg_loss(values, offsets, mask, mode, num_tokens, num_seqs,
                                      norm_length, check)
    _args.layout(False, offsets, mask)
    mode = _args.mode(mode)
    num_tokens = _args.count(num_tokens, "num_tokens")
    num_seqs = _args.count(num_seqs, "num_seqs")
    norm_length = _args.count(norm_length, "norm_length")
    c = _Ctx(values, "values")
    x = _values(c, values, "values")
    sums, counts, validate = _run(c, "sum", x, None, offsets, mask, None, math.inf, 0.0, True,
                                  check)
    validate()
    fw = c.fw
    zero = fw.full(c.x, (), 0.0, "float64")
    nonempty = counts > 0
    cf = fw.astype(counts, "float64")
    if mode == "token-mean":
        num, den = sums.sum(), (cf.sum() if num_tokens is None else num_tokens)
    elif mode == "seq-mean-token-sum":
        num = fw.where(nonempty, sums, zero).sum()
        den = fw.astype(nonempty, "float64").sum() if num_seqs is None else num_seqs
    elif mode == "seq-mean-token-mean":
        num = fw.where(nonempty, sums / fw.where(nonempty, cf, zero + 1), zero).sum()
        den = fw.astype(nonempty, "float64").sum() if num_seqs is None else num_seqs
    else:
        num = sums.sum()
        if norm_length is None:
            norm_length = float(x.shape[1]) if offsets is None else \
                (float(counts.max().item()) if counts.shape[0] else 0.0)
        den = norm_length
    den = _as(c, den)               # a zero divisor gives 0.0, as on the CPU
    res = fw.where(den == 0, zero, num / fw.where(den == 0, zero + 1, den))
    return fw.astype(res, _result(fw.dtype(x)))


def _as(c, v):
    """a float64 device scalar of v (a number or a device scalar)"""
    if isinstance(v, (int, float)):
        return c.fw.full(c.x, (), float(v), "float64")
    return c.fw.astype(v, "float64")
