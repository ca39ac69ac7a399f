"""torch autograd through klkit's public functions.

A public function called with a torch tensor that requires grad (grad mode
on) runs here: a ``torch.autograd.Function`` whose forward is the same
kernels as the no-grad path (KL and JS of logits add one pass over each
input for its lse; KL's from its own sums, _kl_lse), saving O(1)
numbers per row (the row's lse, its value, its entropy) besides the inputs
autograd already holds, and whose backward is a kernel (kernels/cpu/grad.c)
that reads each input row once and writes its gradient once, in the input's dtype (16-bit inputs: computed in float32,
rounded to nearest even).  No [N, V] array is
saved or formed but the gradient itself.  Gradients of broadcast inputs
are summed with NumPy (a fixed order, whatever torch's thread count).

Only tensors are differentiated: class weights, temperatures and the other
scalar options given as tensors that require grad are refused
(TypeError), as is complex input.

The segment family (segment_*, kl_estimate, seq_kl, agg_loss) is linear in
its per-token terms: its backward is per-token torch arithmetic in float64
on arrays of the token count, the gradient's own size.

Double backward is not supported: a gradient computed with
create_graph=True carries a node that raises a RuntimeError saying so when
it is differentiated (torch's once_differentiable does the same, but only
where the incoming gradient itself requires grad; this uses the same
private torch node, DelayedError).
"""
import functools
import math

import numpy as np
import torch

from . import _args, _kernels
from ._arrays import (as_input, cast, float_input, kernel_precision, kernel_view, precision,
                      rows)


def first_order_only(backward):
    """Run a backward without recording it; under create_graph=True give its
    gradients a node that raises on a second differentiation."""
    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            outs = backward(ctx, *grads)
        if not torch.is_grad_enabled():
            return outs
        err = torch._C._functions.DelayedError(
            b"klkit computes first derivatives only: double backward (differentiating a "
            b"gradient taken with create_graph=True) is not supported", len(outs))

        def tracked(g):
            if g is None:
                return None
            g = g.detach()
            g.requires_grad_(True)
            return g
        res = err(*[tracked(g) for g in outs])
        res = res if isinstance(res, tuple) else (res,)
        return tuple(None if g is None else r for g, r in zip(outs, res))
    return wrapper


def _np(t, name):
    """The numpy view of a (detached) torch tensor, as the no-grad path sees it."""
    return as_input(t.detach() if isinstance(t, torch.Tensor) else t, name)[0]


def _torch(a, like):
    """A numpy gradient as a torch tensor of its shape and like's dtype
    (ml_dtypes bfloat16 arrays carried over bit for bit, float64 ones
    rounded)."""
    a = np.asarray(a)
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = a.copy()
    if a.dtype.name == "bfloat16":       # (ml_dtypes): torch cannot take it from NumPy
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a).to(like.dtype)


def _tensor(a):
    """A numpy result as a torch tensor of its shape (0-d stays 0-d)."""
    a = np.asarray(a)
    return torch.from_numpy(a if a.flags.c_contiguous and a.flags.writeable else a.copy())


def _flat64(g, n):
    """An upstream gradient as n float64 values (a copy: O(rows))."""
    return np.ascontiguousarray(g.detach().to(torch.float64).reshape(-1).numpy()).reshape(n)


def _sum_to(a, shape):
    """The float64 gradient a of a broadcast result summed back to an
    input's shape, by NumPy (its order is fixed)."""
    a = np.asarray(a, np.float64)
    lead = a.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and a.shape[lead + i] != 1)
    return (a.sum(axis=axes, keepdims=True) if axes else a).reshape(shape)


def _no_complex(x, name):
    if getattr(x, "is_complex", lambda: False)():
        raise TypeError(f"{name}: gradients of complex input are not supported; compute the "
                        "real and imaginary parts with torch")


def _unmove(a, axes):
    """Undo _arrays.moved: a has the kept axes first, the reduced ``axes`` last."""
    nd = a.ndim
    order = [i for i in range(nd) if i not in axes] + list(axes)
    return np.transpose(a, np.argsort(order))


def _lse_rows(v, n_lead, prec, inv_temp):
    """float64 lse of each row of v * inv_temp (the token kernel, any target)."""
    n = math.prod(v.shape[:n_lead]) if n_lead else 1
    lp, lse = np.empty(n), np.empty(n)
    if n and v.size:
        _kernels.backend(v).token_rows(prec, v, n_lead, np.zeros(n, np.int64), -1, inv_temp,
                                       None, lp, None, lse, None)
    elif n:
        lse[:] = -np.inf
    return lse


#: beyond this |lse| (of logits / T) its float64 rounding is no longer small
#: in nats: p = exp(x / T - lse) cannot be resolved, the row's gradient is NaN
LSE_RESOLVED = 1e12


def _resolvable(lse):
    """lse with NaN where the gradient cannot be resolved (the backward
    kernels write NaN for a row whose lse is not finite)."""
    return np.where(np.abs(lse) > LSE_RESOLVED, np.nan, lse)


def _check_temperature(prec, name):
    """prec None: no kernel precision takes this temperature."""
    if prec is None:
        raise ValueError(f"{name}: gradients need a temperature in [1e-307, 1e305] "
                         "(beyond it only the NumPy reference computes the value)")


# --------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------

class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, temperature, ignore_index, want_ent):
        from .tokens import _prepare

        v, tgt, ig, lead, dtype, wrap = _prepare(logits.detach(), targets, ignore_index)
        work = kernel_precision(v.dtype, temperature)
        _check_temperature(work, "temperature")
        n = tgt.shape[0]
        lp, lse = np.empty(n), np.empty(n)
        ent = np.empty(n) if want_ent else None
        if n:
            _kernels.backend(v).token_rows(precision(work), v, v.ndim - 1, tgt, ig,
                                           1.0 / temperature, None, lp, ent, lse, None)
        ctx.save_for_backward(logits)
        ctx.tgt, ctx.keep, ctx.lse, ctx.ent = tgt, tgt != ig, lse, ent
        ctx.t, ctx.prec = temperature, precision(work)
        outs = [lp, ent if want_ent else np.zeros(n), lse]
        res = [_tensor(cast(o.reshape(lead), dtype)) for o in outs]
        if not want_ent:
            ctx.mark_non_differentiable(res[1])
        return tuple(res)

    @staticmethod
    @first_order_only
    def backward(ctx, g_lp, g_ent, g_lse):
        (logits,) = ctx.saved_tensors
        n = ctx.tgt.shape[0]
        x = float_input(_np(logits, "logits"), "logits")
        t = ctx.t
        g1 = _flat64(g_lp, n)
        g3 = _flat64(g_lse, n)
        coef = np.zeros((n, 4))
        # d log p_t = (onehot_t - p) / T, dH = -p (log p + H) / T, d lse = p / T
        coef[:, 0] = -g1 + g3
        coef[:, 2] = g1
        if ctx.ent is not None:
            g2 = _flat64(g_ent, n)
            coef[:, 0] -= g2 * ctx.ent
            coef[:, 1] = -g2
        coef /= t
        coef[~ctx.keep] = 0.0          # ignored positions: constant outputs
        v = kernel_view(x, x.ndim - 1)
        out = np.empty(v.shape, v.dtype)
        if out.size:
            _kernels.backend(v).token_grad(ctx.prec, v, v.ndim - 1, ctx.tgt, 1.0 / t,
                                           _resolvable(ctx.lse), coef, None, out)
        return _torch(out, logits), None, None, None, None


def token_logprobs(logits, targets, temperature, ignore_index, return_entropy, return_lse):
    from .tokens import TokenLogprobs

    lp, ent, lse = _TokenLogprobs.apply(logits, targets, temperature, ignore_index,
                                        return_entropy)
    if not (return_entropy or return_lse):
        return lp
    return TokenLogprobs(lp, ent if return_entropy else None, lse if return_lse else None)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, weight, ignore_index, eps, reduction):
        # (the weights are constants: softmax_cross_entropy() refuses ones that require grad)
        from .tokens import _loss, _prepare, _target_weights

        v, tgt, ig, lead, dtype, wrap = _prepare(logits.detach(), targets, ignore_index)
        C = v.shape[-1]
        w64 = _args.class_weights(None if weight is None else _np(weight, "weight"), C)
        n = tgt.shape[0]
        lp, lse = np.empty(n), np.empty(n)
        smooth = np.empty(n) if eps else None
        prec = precision(v.dtype)
        wk = None if w64 is None else w64.astype(prec)
        if n:
            _kernels.backend(v).token_rows(prec, v, v.ndim - 1, tgt, ig, 1.0,
                                           wk if eps else None, lp, None, lse, smooth)
        keep = tgt != ig
        loss = _loss(lp, smooth, tgt, keep, w64, eps, C, reduction)
        ctx.save_for_backward(logits)
        ctx.tgt, ctx.keep, ctx.lse, ctx.w, ctx.wk = tgt, keep, lse, w64, wk
        ctx.eps, ctx.reduction, ctx.prec, ctx.C = eps, reduction, prec, C
        ctx.w_t = _target_weights(tgt, keep, w64)
        return _tensor(cast(np.asarray(loss).reshape(lead if reduction == "none" else ()), dtype))

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        from .tokens import _sum

        (logits,) = ctx.saved_tensors
        n, eps, C, tgt, keep = ctx.tgt.shape[0], ctx.eps, ctx.C, ctx.tgt, ctx.keep
        if ctx.reduction == "none":
            gi = _flat64(g, n)
        else:
            gi = np.full(n, float(g))
            if ctx.reduction == "mean":     # a zero weight sum: inf / nan, as torch
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    gi = gi / _sum(ctx.w_t)
        w_t = ctx.w_t
        W = float(C) if ctx.w is None else _sum(ctx.w)
        # loss_i = (1-eps) (-w_t log p_t) + eps/C (-sum_c w_c log p_c):
        # d/dx_c = p_c ((1-eps) w_t + eps W / C) - (1-eps) w_t [c = t] - eps/C w_c
        coef = np.zeros((n, 4))
        with np.errstate(invalid="ignore"):
            coef[:, 0] = gi * ((1.0 - eps) * w_t + (eps * W / C if C else 0.0))
            coef[:, 2] = -gi * (1.0 - eps) * w_t
            coef[:, 3] = -gi * eps / C if C else 0.0
        coef[~keep] = 0.0
        x = float_input(_np(logits, "logits"), "logits")
        v = kernel_view(x, x.ndim - 1)
        out = np.empty(v.shape, v.dtype)
        if out.size:
            wk = ctx.wk if eps and ctx.w is not None else None
            _kernels.backend(v).token_grad(ctx.prec, v, v.ndim - 1, tgt, 1.0, ctx.lse, coef, wk,
                                           out)
        return _torch(out, logits), None, None, None, None, None


def softmax_cross_entropy(logits, targets, weight, ignore_index, label_smoothing, reduction):
    if getattr(weight, "requires_grad", False):
        raise TypeError("weight: klkit does not differentiate with respect to the class weights "
                        "(neither does torch's cross_entropy); pass weight.detach()")
    reduction = _args.reduction(reduction)
    eps = _args.label_smoothing(label_smoothing)
    return _SoftmaxCrossEntropy.apply(logits, targets, weight, ignore_index, eps, reduction)


# --------------------------------------------------------------------------
# dense
# --------------------------------------------------------------------------

class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        from .dense import _lse

        ctx.lse, res = _lse(float_input(_np(a, "a"), "a"), axes, keepdims)
        ctx.save_for_backward(a)
        ctx.axes = axes
        return _tensor(res)

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        x = float_input(_np(a, "a"), "a")
        v, n_lead, _ = rows(x, ctx.axes)
        n = ctx.lse.shape[0]
        coef = np.zeros((n, 4))
        coef[:, 0] = _flat64(g, n)          # d lse / dx = softmax(x)
        out = np.empty(v.shape, v.dtype)
        if out.size:
            _kernels.backend(v).token_grad(precision(v.dtype), v, n_lead, None, 1.0, ctx.lse,
                                           coef, None, out)
        return _torch(_unmove(out, ctx.axes) if x.ndim else out.reshape(()), a), None, None


class _LogSumExpWeighted(torch.autograd.Function):
    """logsumexp with weights b and/or return_sign: the NumPy twin forward,
    the backward in torch (float64): d/da_i = s b_i exp(a_i - lse),
    d/db_i = s exp(a_i - lse) with s the sign."""

    @staticmethod
    def forward(ctx, a, b, axis, keepdims, return_sign):
        an, bn = _np(a, "a"), None if b is None else _np(b, "b")
        twin = _kernels.twin("logsumexp")
        # the result as without grad; the float64 value and sign with the
        # reduced axes kept, for the backward
        res = twin(an, axis=axis, b=bn, keepdims=keepdims, return_sign=return_sign)
        val, sign = twin(an.astype(np.float64), axis=axis,
                         b=None if bn is None else bn.astype(np.float64), keepdims=True,
                         return_sign=True)
        ctx.save_for_backward(*[t if isinstance(t, torch.Tensor) else None for t in (a, b)])
        ctx.a_np, ctx.b_np, ctx.val, ctx.sign = an, bn, val, sign
        out, sg = res if return_sign else (res, np.zeros(()))
        sg = _tensor(sg)
        ctx.mark_non_differentiable(sg)
        return _tensor(out), sg

    @staticmethod
    @first_order_only
    def backward(ctx, g, _gs):
        a, b = ctx.saved_tensors
        g64 = _flat64(g, ctx.val.size).reshape(ctx.val.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            e = np.exp(ctx.a_np.astype(np.float64) - ctx.val) * ctx.sign * g64
            bb = 1.0 if ctx.b_np is None else ctx.b_np.astype(np.float64)
            ga = gb = None
            if ctx.needs_input_grad[0]:
                ga = _torch(_sum_to(np.where(bb == 0, 0.0, e * bb), a.shape), a)
            if ctx.needs_input_grad[1]:
                gb = _torch(_sum_to(np.broadcast_to(e, np.broadcast_shapes(e.shape, np.shape(bb))),
                                    b.shape), b)
        return ga, gb, None, None, None


def logsumexp(a, axis, b, keepdims, return_sign):
    _no_complex(a, "a")
    _no_complex(b, "b")
    if b is not None or return_sign:
        val, sign = _LogSumExpWeighted.apply(a, b, axis, keepdims, return_sign)
        return (val, sign) if return_sign else val
    return _LogSumExp.apply(a, _args.axes(axis, a.dim()), keepdims)


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, axis, log):
        from .dense import _softmax_family

        y = _softmax_family(x.detach(), axis, None, log)
        ctx.save_for_backward(y)
        ctx.axes = _args.axes(axis, x.dim())
        # an empty tensor of x's dtype: the gradient's (not a view of x,
        # whose memory autograd need not keep)
        ctx.log, ctx.x = log, torch.empty(0, dtype=x.dtype)
        return y

    @staticmethod
    @first_order_only
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        yn = _np(y, "y")
        gn = _np(gy.to(y.dtype), "gy")
        if yn.ndim == 0:
            yn, gn = yn.reshape(1), gn.reshape(1)
        axes = ctx.axes if y.dim() else (0,)
        vy, n_lead, _ = rows(yn, axes)
        vg, _, _ = rows(gn, axes)
        out = np.empty(vy.shape, float_input(_np(ctx.x, "x"), "x").dtype)
        if out.size:
            _kernels.backend(vy).softmax_grad(ctx.log, vy, vg, n_lead, out)
        return _torch(_unmove(out, axes).reshape(y.shape), ctx.x), None, None


def softmax(x, axis, out, log):
    _no_complex(x, "x")
    if out is not None:
        raise TypeError("out: not supported for a tensor that requires grad (torch's "
                        "out= functions are not differentiable either); leave out=None")
    return _Softmax.apply(x, axis, log)


# --------------------------------------------------------------------------
# divergences
# --------------------------------------------------------------------------

class _Divergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, q, op, axis, kind, log_base, temperature, beta):
        from .divergence import _operands

        arrays = (p,) if op == "entropy" else (p, q)
        dets = [a.detach() if isinstance(a, torch.Tensor) else a for a in arrays]
        o = _operands(op, dets, axis, kind, temperature)
        _check_temperature(o.prec, "temperature")
        n, it = math.prod(o.kept_shape), 1.0 / temperature
        be = _kernels.backend(*o.views)
        qv = o.views[1] if len(o.views) > 1 else None
        val = np.empty(n, np.float64)
        saved = None
        if o.kind == "logits" and op in _ROW_STATES and n:
            # entropy, cross-entropy: the value and the lse in one pass, from
            # the row's state (its value is the kernel's own, bit for bit)
            kind_, dtype = _ROW_STATES[op]
            st = np.empty(n, getattr(be, dtype))
            be.div_rows(op, o.kind, o.prec, o.views[0], qv, o.n_lead, it, beta, st)
            be.state_values(kind_, st, val, inv_temp=it)
            saved = np.zeros((n, 5))
            with np.errstate(divide="ignore", invalid="ignore"):    # empty rows: -inf
                saved[:, 0] = st["m"] + np.log1p(st["s"])
                if qv is not None:
                    saved[:, 1] = st["mq"] + np.log1p(st["sq"])
        elif n:
            be.div_rows(op, o.kind, o.prec, o.views[0], qv, o.n_lead, it, beta, val)
        if o.kind == "logits" and saved is None:
            saved = np.zeros((n, 5))
            if op == "kl_div" and n:
                saved[:, 0], saved[:, 1], saved[:, 3] = _kl_lse(o, it)
            else:               # JS, or no rows
                saved[:, 0] = _lse_rows(o.views[0], o.n_lead, o.prec, it)
                if qv is not None:
                    saved[:, 1] = _lse_rows(qv, o.n_lead, o.prec, it)
        if saved is not None:
            saved[:, 2] = val
            if op == "js_div" and n and o.views[0].size:
                be.js_sums(o.prec, o.views[0], qv, o.n_lead, it, beta, saved)
        ctx.save_for_backward(*[a if isinstance(a, torch.Tensor) else None for a in (p, q)])
        ctx.o, ctx.op, ctx.saved, ctx.beta, ctx.t = o, op, saved, beta, temperature
        ctx.log_base = log_base
        res = val / log_base if log_base is not None else val
        return _tensor(cast(res.reshape(o.kept_shape), o.out_dtype))

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        o, op = ctx.o, ctx.op
        n = math.prod(o.kept_shape)
        g64 = _flat64(g, n)
        if ctx.log_base is not None:
            g64 = g64 / ctx.log_base
        want = [ctx.needs_input_grad[0], op != "entropy" and ctx.needs_input_grad[1]]
        outs = [np.empty(v.shape, v.dtype) if w else None for v, w in zip(o.views, want)] \
            + [None]
        if n and o.views[0].size:
            saved = ctx.saved
            if saved is not None:
                saved = saved.copy()
                saved[:, 0] = _resolvable(saved[:, 0])
                saved[:, 1] = _resolvable(saved[:, 1])
            _kernels.backend(*o.views).div_grad(op, o.kind, o.prec, o.views[0],
                                                o.views[1] if len(o.views) > 1 else None,
                                                o.n_lead, 1.0 / ctx.t, ctx.beta, saved,
                                                g64, outs[0], outs[1])
        elif n:
            outs = [np.zeros(v.shape, v.dtype) if w else None for v, w in zip(o.views, want)] \
                + [None]
        grads = []
        for i, (a, gr) in enumerate(zip(ctx.saved_tensors, outs[:2])):
            if gr is None or a is None:
                grads.append(None)
                continue
            full = _unmove(gr, (o.axis,))
            grads.append(_torch(full if full.shape == tuple(a.shape) else _sum_to(full, a.shape),
                                a))
        return grads[0], grads[1], None, None, None, None, None, None


#: the divergences whose row state holds their lse: (state kind, record type)
_ROW_STATES = {"entropy": ("entropy", "ENTROPY_STATE"), "cross_entropy": ("xent", "XENT_STATE")}

#: the unit roundoff KL's sums are judged by (REAL_EPS of kernels/cpu/precisions.inc)
_KERNEL_EPS = {"float32": 1.1920929e-07, "float64": 2.220446049250313e-16}


def _kl_lse(o, inv_t):
    """(lse_p, lse_q, lse_p - lse_q) of each row pair of logits for KL's
    backward, the difference taken from the KL kernel's own sums (divergence.h: W, A, B
    of the log-ratio D at shift c):  lse_p - lse_q = c - log1p(A/W - B/W),
    as accurate as KL itself.  Two lse computed apart would each carry the
    rounding of their sums (~1e-7 in float32), which swamps log P - log Q
    when P and Q are close.  lse_p = m + log W.  Rows whose sums are not
    usable (huge logits, NaN, P > 0 = Q: the kernels' own test) take the
    two lse."""
    be = _kernels.backend(*o.views)
    p, q = o.views
    n = math.prod(o.kept_shape)
    fin = np.empty(n, be.KL_STATE)          # a row's whole state: finished
    be.div_rows("kl_div", "logits", o.prec, p, q, o.n_lead, inv_t, 0.5, fin)
    m, W, A, B = fin["m"], fin["W"], fin["A"], fin["B"]
    c = (fin["ch"] + fin["cl"]) * inv_t
    with np.errstate(all="ignore"):
        ok = ((fin["has_sums"] != 0) & (fin["nan"] == 0) & (fin["zq"] == 0) & np.isfinite(m)
              & np.isfinite(fin["mq"]) & ((abs(m) + abs(c)) * _KERNEL_EPS[o.prec] <= 1e-3)
              & np.isfinite(A) & np.isfinite(B) & (A >= 0) & (abs(B) <= 64.0 * W) & (W > 0))
        lse_p = m + np.log(W)
        diff = c - np.log1p(A / W - B / W)
        lse_q = lse_p - diff
    if not ok.all():
        lse_p = np.where(ok, lse_p, _lse_rows(p, o.n_lead, o.prec, inv_t))
        lse_q = np.where(ok, lse_q, _lse_rows(q, o.n_lead, o.prec, inv_t))
        diff = np.where(ok, diff, lse_p - lse_q)
    return lse_p, lse_q, diff


def divergence(op, arrays, axis, kind, log_base, temperature, beta):
    """(kind, log_base, temperature and beta already checked by the caller)"""
    for a, name in zip(arrays, ("p", "q")):
        _no_complex(a, name)
    if kind == "probs":
        raise ValueError("kind: gradients are computed for kind='logits' and kind='logprobs'; "
                         "for probabilities pass their logarithm with kind='logprobs' "
                         "(normalised) or kind='logits'")
    p, q = (arrays[0], None) if len(arrays) == 1 else arrays
    return _Divergence.apply(p, q, op, axis, kind, log_base, temperature, beta)


# --------------------------------------------------------------------------
# segments: per-token arithmetic in torch (float64), on the values' device
# (the CPU and the GPU path alike: the forward is the public function on
# the detached inputs, which computes where they lie)
# --------------------------------------------------------------------------

def _on(a, like):
    """offsets or a mask as a tensor on like's device"""
    return a.to(like.device) if isinstance(a, torch.Tensor) else \
        torch.as_tensor(np.asarray(a), device=like.device)


def _expand(per_seq, like, offsets, mask):
    """(per-sequence float64 values spread over the tokens of like's layout,
    0 outside every sequence (before offsets[0], after offsets[-1], masked
    entries); the bool tensor of the tokens inside a sequence)"""
    if offsets is None:
        inside = torch.ones(like.shape, dtype=torch.bool, device=like.device) if mask is None \
            else _on(mask, like) != 0
        return torch.where(inside, per_seq[:, None].expand(like.shape), 0.0), inside
    off = _on(offsets, like).to(torch.int64)
    n_seq = off.shape[0] - 1
    pos = torch.arange(like.shape[0], device=like.device)
    seq = torch.searchsorted(off, pos, right=True) - 1      # empty sequences skipped
    inside = (seq >= 0) & (seq < n_seq) & (pos < off[-1])
    if n_seq == 0:
        return torch.zeros(like.shape, dtype=torch.float64, device=like.device), inside
    return torch.where(inside, per_seq[seq.clamp(0, n_seq - 1)], 0.0), inside


def _counts(like, offsets, mask):
    """the float64 token count of each sequence"""
    if offsets is not None:
        off = _on(offsets, like).to(torch.int64)
        return (off[1:] - off[:-1]).to(torch.float64)
    if mask is None:
        return torch.full((like.shape[0],), float(like.shape[1]), dtype=torch.float64,
                          device=like.device)
    return (_on(mask, like) != 0).to(torch.float64).sum(dim=1)


def _estimator_slope(d, est, clamp):
    """d estimator(d) / dd at d = logp - ref_logp (float64 tensor); 0
    outside the clamp band |d| <= clamp, where the estimator is constant."""
    if est == "k1":
        s = torch.ones_like(d)
    elif est == "k2":
        s = d.clone()
    elif est == "k3":                 # exp(r) - 1 - r with r = -d
        s = -torch.expm1(-d)
    else:
        s = torch.sign(d)
    if math.isfinite(clamp):
        s = torch.where(d.abs() > clamp, 0.0, s)
    return torch.where(torch.isnan(d), d, s)


class _Segment(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, offsets, mask, op, empty, check):
        from . import segments

        out = getattr(segments, "segment_" + op)(values.detach(), offsets, mask=mask,
                                                 empty=empty, check=check)
        ctx.save_for_backward(values, out)
        ctx.offsets, ctx.mask, ctx.op = offsets, mask, op
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        from .segments import segment_sum

        values, out = ctx.saved_tensors
        offsets, mask = ctx.offsets, ctx.mask
        v = values.detach().to(torch.float64)
        g = g.detach().to(torch.float64)
        if ctx.op == "sum":
            r, _ = _expand(g, v, offsets, mask)
        elif ctx.op == "mean":
            lens = _counts(v, offsets, mask)
            r, _ = _expand(torch.where(lens > 0, g / lens.clamp(min=1), 0.0), v, offsets, mask)
        elif ctx.op == "logsumexp":
            ge, inside = _expand(g, v, offsets, mask)
            oe, _ = _expand(out.detach().to(torch.float64), v, offsets, mask)
            r = torch.where(inside, ge * torch.exp(v - oe), 0.0)
        else:                         # max: shared evenly among the tied maxima, as torch
            oe, inside = _expand(out.detach().to(torch.float64), v, offsets, mask)
            hit = inside & (v == oe)
            ties = segment_sum(hit.to(torch.float64), offsets, mask=mask)
            ge, _ = _expand(torch.where(ties > 0, g / ties.clamp(min=1), 0.0), v, offsets, mask)
            r = torch.where(hit, ge, 0.0)
        return r.to(values.dtype), None, None, None, None, None


def segment(op, values, offsets, mask, empty, check=True):
    return _Segment.apply(values, offsets, mask, op, _args.empty(empty), check)


def _grad_to(s, t):
    """float64 gradient s of a broadcast result as the gradient of input t:
    summed back to t's shape (on the CPU by NumPy, whose order is fixed,
    so the bits do not depend on torch's thread count), in t's dtype"""
    if s.device.type == "cpu":
        return _torch(_sum_to(s.numpy(), t.shape), t)
    return (s if tuple(s.shape) == tuple(t.shape) else s.sum_to_size(t.shape)).to(t.dtype)


class _KlEstimate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, ref, est, clamp):
        from .segments import kl_estimate

        out = kl_estimate(logp.detach() if isinstance(logp, torch.Tensor) else logp,
                          ref.detach() if isinstance(ref, torch.Tensor) else ref, est,
                          clamp=None if math.isinf(clamp) else clamp)
        ctx.save_for_backward(*[a if isinstance(a, torch.Tensor) else None for a in (logp, ref)])
        ctx.np = [None if isinstance(a, torch.Tensor) else np.asarray(a, np.float64)
                  for a in (logp, ref)]
        ctx.est, ctx.clamp = est, clamp
        return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        a, b = [t.detach().to(torch.float64) if t is not None
                else torch.from_numpy(n).to(g.device) for t, n in zip(ctx.saved_tensors, ctx.np)]
        s = _estimator_slope(a - b, ctx.est, ctx.clamp) * g.detach().to(torch.float64)
        ta, tb = ctx.saved_tensors
        ga = _grad_to(s, ta) if ctx.needs_input_grad[0] else None
        gb = _grad_to(-s, tb) if ctx.needs_input_grad[1] else None
        return ga, gb, None, None


def kl_estimate(logp, ref_logp, estimator, clamp):
    est = _args.estimator(estimator)
    c = _args.clamp(clamp)
    return _KlEstimate.apply(logp, ref_logp, est, c)


class _SeqKl(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logp, ref, offsets, mask, est, reduce, clamp, empty, check):
        from .segments import seq_kl

        out = seq_kl(logp.detach(), ref.detach(), offsets, mask=mask, estimator=est,
                     reduce=reduce, clamp=None if math.isinf(clamp) else clamp, empty=empty,
                     check=check)
        ctx.save_for_backward(logp, ref)
        ctx.args = (offsets, mask, est, reduce, clamp)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        logp, ref = ctx.saved_tensors
        offsets, mask, est, reduce, clamp = ctx.args
        a, b = logp.detach().to(torch.float64), ref.detach().to(torch.float64)
        g = g.detach().to(torch.float64)
        if reduce == "mean":
            lens = _counts(a, offsets, mask)
            g = torch.where(lens > 0, g / lens.clamp(min=1), 0.0)
        ge, inside = _expand(g, a, offsets, mask)
        s = torch.where(inside, ge * _estimator_slope(a - b, est, clamp), 0.0)
        return (s.to(logp.dtype) if ctx.needs_input_grad[0] else None,
                (-s).to(ref.dtype) if ctx.needs_input_grad[1] else None,
                None, None, None, None, None, None, None)


def seq_kl(logp, ref_logp, offsets, mask, estimator, reduce, clamp, empty, check=True):
    if not (isinstance(logp, torch.Tensor) and isinstance(ref_logp, torch.Tensor)):
        raise TypeError("logp, ref_logp: where one requires grad, pass both as torch tensors "
                        "(the same layout)")
    return _SeqKl.apply(logp, ref_logp, offsets, mask, _args.estimator(estimator),
                        _args.reduce(reduce), _args.clamp(clamp), _args.empty(empty), check)


class _AggLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, offsets, mask, mode, num_tokens, num_seqs, norm_length, check):
        from .segments import agg_loss

        out = agg_loss(values.detach(), offsets, mask=mask, mode=mode, num_tokens=num_tokens,
                       num_seqs=num_seqs, norm_length=norm_length, check=check)
        ctx.save_for_backward(values)
        ctx.args = (offsets, mask, mode, num_tokens, num_seqs, norm_length)
        return out

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        (values,) = ctx.saved_tensors
        offsets, mask, mode, num_tokens, num_seqs, norm_length = ctx.args
        v = values.detach().to(torch.float64)
        w = agg_weights(_counts(v, offsets, mask), mode, num_tokens, num_seqs, norm_length,
                        v.shape[1] if offsets is None else None)
        r, _ = _expand(w * g.detach().to(torch.float64), v, offsets, mask)
        return r.to(values.dtype), None, None, None, None, None, None, None


def agg_weights(counts, mode, num_tokens, num_seqs, norm_length, T):
    """agg_loss's weight of each token of sequence i in the result (float64
    tensor per sequence, on counts' device): 1 / den, or 1 / (c_i den) for
    seq-mean-token-mean; 0 where the divisor is 0 (as the forward's 0.0).
    counts: the float64 token counts; T: the padded length, or None."""
    nonempty = counts > 0
    if mode == "token-mean":
        den = counts.sum() if num_tokens is None else num_tokens
        w = torch.ones_like(counts)
    elif mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        den = nonempty.to(torch.float64).sum() if num_seqs is None else num_seqs
        w = nonempty.to(torch.float64)
        if mode == "seq-mean-token-mean":
            w = torch.where(nonempty, w / counts.clamp(min=1), 0.0)
    else:
        den = norm_length if norm_length is not None else float(
            T if T is not None else (counts.max() if counts.numel() else 0))
        w = torch.ones_like(counts)
    den = torch.as_tensor(den, dtype=torch.float64, device=counts.device)
    return torch.where(den == 0, 0.0, w / torch.where(den == 0, 1.0, den))


def agg_loss(values, offsets, mask, mode, num_tokens, num_seqs, norm_length, check=True):
    return _AggLoss.apply(values, offsets, mask, _args.mode(mode),
                          _args.count(num_tokens, "num_tokens"),
                          _args.count(num_seqs, "num_seqs"),
                          _args.count(norm_length, "norm_length"), check)
