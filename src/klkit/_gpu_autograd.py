"""torch.autograd.Functions of the public functions on CUDA tensors.

The forward is the GPU path's own (_gpu.py), saving per row what the
backward needs (lse, value, KL's lse difference, JS's sums: O(rows));
the backward of the row functions is one CUDA kernel that reads the
inputs once and writes the gradient once (kernels/cuda/grad.cu, the CPU
backward kernels' formulas), with per-row coefficients folded from the
incoming gradients in float64 torch arithmetic on the device.  The
segment functions' Functions are _autograd.py's, which work on any
device.  Every Function is first-order (_autograd.first_order_only)
and its arguments' contracts are the CPU path's (_autograd.py).
"""
import math

import torch

from . import _args, _gpu
from ._autograd import LSE_RESOLVED, first_order_only


def _ctx(x, name):
    return _gpu._Ctx(x.detach(), name)


def _flat64(g, n, like):
    """an incoming gradient as a float64 vector of n (zeros where None)"""
    if g is None:
        return torch.zeros(n, dtype=torch.float64, device=like.device)
    return g.detach().reshape(-1).to(torch.float64).contiguous()   # (sum's grad: stride 0)


def _resolvable(lse):
    """NaN where the gradient cannot be resolved (|lse| > LSE_RESOLVED)"""
    return torch.where(lse.abs() > LSE_RESOLVED, torch.nan, lse)


def _unmove(a, axes):
    """undo _Ctx.rows's permutation (axes moved last)"""
    nd = a.ndim
    perm = [i for i in range(nd) if i not in axes] + list(axes)
    inv = [0] * nd
    for i, p in enumerate(perm):
        inv[p] = i
    return a.permute(*inv)


def _as_input(grad, a):
    """a gradient of the broadcast shape summed to input a's shape, dtype"""
    if tuple(grad.shape) != tuple(a.shape):
        grad = grad.to(torch.float64).sum_to_size(a.shape)
    return grad.to(a.dtype)


# --------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------

class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, temperature, ignore_index, want_ent, check):
        c = _ctx(logits, "logits")
        v, tgt, ig, lead, validate = _gpu.tokens(c, logits, targets, ignore_index, check)
        dtype = _gpu._result(c.fw.dtype(v))
        lp, ent, lse, v = _gpu.token_rows(c, v, tgt, ig, temperature, want_ent, True)
        validate()
        ctx.save_for_backward(logits)
        ctx.c, ctx.v, ctx.tgt, ctx.keep, ctx.lse, ctx.ent = c, v, tgt, tgt != ig, lse, ent
        ctx.t = temperature
        n = tgt.shape[0]
        outs = [lp, ent if want_ent else torch.zeros(n, dtype=torch.float64, device=lp.device),
                lse]
        res = [c.finish(o, lead, dtype) for o in outs]
        if not want_ent:
            ctx.mark_non_differentiable(res[1])
        return tuple(res)

    @staticmethod
    @first_order_only
    def backward(ctx, g_lp, g_ent, g_lse):
        c, v, n, t = ctx.c, ctx.v, ctx.tgt.shape[0], ctx.t
        g1, g3 = _flat64(g_lp, n, v), _flat64(g_lse, n, v)
        coef = torch.zeros((n, 4), dtype=torch.float64, device=v.device)
        # d log p_t = (onehot_t - p) / T, dH = -p (log p + H) / T, d lse = p / T
        coef[:, 0] = -g1 + g3
        coef[:, 2] = g1
        if ctx.ent is not None:
            g2 = _flat64(g_ent, n, v)
            coef[:, 0] -= g2 * ctx.ent
            coef[:, 1] = -g2
        coef /= t
        coef[~ctx.keep] = 0.0            # ignored positions: constant outputs
        out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        if out.numel():
            c.cu.token_grad(c.dev(v), v.ndim - 1, c.dev(ctx.tgt), 1.0 / t,
                            c.dev(_resolvable(ctx.lse)), c.dev(coef), None, c.dev(out))
        (logits,) = ctx.saved_tensors
        return out.to(logits.dtype), None, None, None, None, None


def token_logprobs(logits, targets, temperature, ignore_index, return_entropy, return_lse,
                   check):
    from .tokens import TokenLogprobs

    _no_complex(logits, "logits")
    lp, ent, lse = _TokenLogprobs.apply(logits, targets, temperature, ignore_index,
                                        return_entropy, check)
    if not (return_entropy or return_lse):
        return lp
    return TokenLogprobs(lp, ent if return_entropy else None, lse if return_lse else None)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, weight, ignore_index, eps, reduction, check):
        c = _ctx(logits, "logits")
        w = None if weight is None else weight.detach()
        f = _gpu.sce_forward(c, logits, targets, w, ignore_index, eps, reduction, True, check)
        ctx.save_for_backward(logits)
        ctx.c, ctx.f = c, f
        return c.finish(f.loss, f.lead if f.reduction == "none" else (), f.dtype)

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        c, f = ctx.c, ctx.f
        v, n, eps = f.v, f.tgt.shape[0], f.eps
        C = v.shape[-1]
        if f.reduction == "none":
            gi = _flat64(g, n, v)
        else:
            gi = g.detach().to(torch.float64).reshape(1).expand(n)
            if f.reduction == "mean":     # a zero weight sum: inf / nan, as torch
                gi = gi / f.w_t.sum()
        W = float(C) if f.w64 is None else f.w64.sum()
        # loss_i = (1-eps) (-w_t log p_t) + eps/C (-sum_c w_c log p_c):
        # d/dx_c = p_c ((1-eps) w_t + eps W / C) - (1-eps) w_t [c = t] - eps/C w_c
        coef = torch.zeros((n, 4), dtype=torch.float64, device=v.device)
        coef[:, 0] = gi * ((1.0 - eps) * f.w_t + (eps * W / C if C else 0.0))
        coef[:, 2] = -gi * (1.0 - eps) * f.w_t
        coef[:, 3] = -gi * eps / C if C else 0.0
        coef[~f.keep] = 0.0
        out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        if out.numel():
            wk = f.wk if eps and f.w64 is not None else None
            c.cu.token_grad(c.dev(v), v.ndim - 1, c.dev(f.tgt), 1.0, c.dev(f.lse), c.dev(coef),
                            c.dev(wk), c.dev(out))
        (logits,) = ctx.saved_tensors
        return out.to(logits.dtype), None, None, None, None, None, None


def softmax_cross_entropy(logits, targets, weight, ignore_index, label_smoothing, reduction,
                          check):
    if getattr(weight, "requires_grad", False):
        raise TypeError("weight: klkit does not differentiate with respect to the class weights "
                        "(neither does torch's cross_entropy); pass weight.detach()")
    _no_complex(logits, "logits")
    reduction = _args.reduction(reduction)
    eps = _args.label_smoothing(label_smoothing)
    return _SoftmaxCrossEntropy.apply(logits, targets, weight, ignore_index, eps, reduction,
                                      check)


# --------------------------------------------------------------------------
# dense
# --------------------------------------------------------------------------

class _LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, axes, keepdims):
        c = _ctx(a, "a")
        x = c.floats(c.x, "a")
        lse, v, n_lead = _gpu.lse_rows(c, x, axes)
        ctx.save_for_backward(a)
        ctx.c, ctx.v, ctx.n_lead, ctx.lse, ctx.axes = c, v, n_lead, lse, axes
        return c.finish(lse, _gpu.lse_shape(x.shape, axes, keepdims), _gpu._result(c.fw.dtype(x)))

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        c, v, lse = ctx.c, ctx.v, ctx.lse
        n = lse.shape[0]
        coef = torch.zeros((n, 4), dtype=torch.float64, device=v.device)
        coef[:, 0] = _flat64(g, n, v)            # d lse / dx = softmax(x)
        out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        if out.numel():
            c.cu.token_grad(c.dev(v), ctx.n_lead, None, 1.0, c.dev(_resolvable(lse)),
                            c.dev(coef), None, c.dev(out))
        (a,) = ctx.saved_tensors
        full = out.reshape(a.shape) if a.ndim == 0 else _unmove(out, ctx.axes)
        return full.to(a.dtype), None, None


def logsumexp(a, axis, keepdims):
    _no_complex(a, "a")
    return _LogSumExp.apply(a, _args.axes(axis, a.ndim), keepdims)


class _Softmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, axis, log):
        y = _gpu.softmax(x.detach(), axis, None, log)
        ctx.save_for_backward(x, y)
        ctx.axes, ctx.log = _args.axes(axis, x.ndim), log
        return y

    @staticmethod
    @first_order_only
    def backward(ctx, gy):
        x, y = ctx.saved_tensors
        c = _ctx(y, "y")
        axes = ctx.axes if x.ndim else (0,)
        y1, g1 = (y.reshape(1), gy.reshape(1)) if x.ndim == 0 else (y, gy)
        vy, n_lead, kept = c.rows(y1, axes)
        vg, _, _ = c.rows(g1.detach().to(y.dtype), axes)
        out = torch.empty(vy.shape, dtype=x.dtype if x.dtype.is_floating_point
                          else torch.float64, device=y.device)
        if out.numel():
            n_rows = math.prod(kept)
            c.cu.softmax_grad(ctx.log, c.dev(vy), c.dev(vg), n_lead, c.dev(out),
                              c.ws(c.cu.workspace(n_rows, out.numel() // max(n_rows, 1))))
        full = out.reshape(x.shape) if x.ndim == 0 else _unmove(out, axes)
        return full.to(x.dtype), None, None


def softmax(x, axis, log):
    _no_complex(x, "x")
    return _Softmax.apply(x, axis, log)


# --------------------------------------------------------------------------
# divergences
# --------------------------------------------------------------------------

class _Divergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p, q, op, axis, kind, log_base, temperature, beta):
        arrays = (p,) if op == "entropy" else (p, q)
        c = _ctx(p, "p")
        o = _gpu.div_operands(c, [a.detach() for a in arrays], axis, kind, temperature)
        n = math.prod(o.kept)
        saved = c.empty((n, 5), "float64") if o.kind == "logits" else None
        val = _gpu.div_run(c, op, o, temperature, beta, saved)
        ctx.save_for_backward(*arrays)
        ctx.c, ctx.o, ctx.op, ctx.saved, ctx.beta, ctx.t = c, o, op, saved, beta, temperature
        ctx.log_base = log_base
        res = val / log_base if log_base is not None else val
        return c.finish(res, o.kept, o.out_dtype)

    @staticmethod
    @first_order_only
    def backward(ctx, g):
        c, o, op = ctx.c, ctx.o, ctx.op
        n = math.prod(o.kept)
        g64 = _flat64(g, n, o.views[0])
        if ctx.log_base is not None:
            g64 = g64 / ctx.log_base
        want = [ctx.needs_input_grad[0], op != "entropy" and ctx.needs_input_grad[1]]
        outs = [torch.empty(v.shape, dtype=v.dtype, device=v.device) if w else None
                for v, w in zip(o.views, want)] + [None]
        if n and o.views[0].numel():
            saved = ctx.saved
            if saved is not None:
                saved = saved.clone()
                saved[:, 0] = _resolvable(saved[:, 0])
                saved[:, 1] = _resolvable(saved[:, 1])
            c.cu.div_grad(op, o.kind, c.dev(o.views[0]),
                          c.dev(o.views[1]) if len(o.views) > 1 else None, o.n_lead,
                          1.0 / ctx.t, ctx.beta, c.dev(saved), c.dev(g64), c.dev(outs[0]),
                          c.dev(outs[1]))
        grads = []
        for a, gr in zip(ctx.saved_tensors, outs[:2]):
            grads.append(None if gr is None else _as_input(_unmove(gr, (o.axis,)), a))
        grads += [None] * (2 - len(grads))
        return grads[0], grads[1], None, None, None, None, None, None


def divergence(op, arrays, axis, kind, log_base, temperature, beta):
    for a, name in zip(arrays, ("p", "q")):
        _no_complex(a, name)
    if kind == "probs":
        raise ValueError("kind: gradients are computed for kind='logits' and kind='logprobs'; "
                         "for probabilities pass their logarithm with kind='logprobs' "
                         "(normalised) or kind='logits'")
    for a, name in zip(arrays, ("p", "q")):
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{name}: where an argument requires grad, pass every argument as "
                            "a torch tensor on the GPU")
    return _Divergence.apply(arrays[0], arrays[1] if len(arrays) > 1 else None, op, axis, kind,
                             log_base, temperature, beta)


def _no_complex(x, name):
    if getattr(x, "is_complex", lambda: False)():
        raise TypeError(f"{name}: complex input is not supported on the GPU")
