"""Per-token log-probs and cross-entropy from logits at vocabulary scale:
token_logprobs, softmax_cross_entropy.

For logits [..., V] (classes on the last axis; any view, such as the
shifted slice logits[:, :-1], read in place) and integer targets [...],
the C kernel makes one streaming pass over each row,
in float32 (float64 for float64 logits) with float64 block sums, and never
forms a second [..., V] array: the lse state (or the entropy state) of the
row and, for label smoothing, the weighted sum of the logits are
accumulated chunk by chunk and the target logit is read on its own.
bfloat16 and float16 rows are read as they are (converted chunk by chunk in
L1).  Rows are spread over the OpenMP threads, one row per thread, so the
bits of a row do not depend on the thread count or on the other rows.
"""

# How to add a row op to this family: as the list at the top of dense.py,
# with kernels/cpu/tokens_rows.inc, tokens.c, klkit_entries.h, _cpu.pyx, this
# module and src/klkit/reference/tokens.py (six files), tests in
# tests/test_tokens.py.

import math
from typing import NamedTuple

import numpy as np

from . import _args, _gpu, _kernels
from ._registry import public
from ._arrays import (any_device, as_input, finish, float_input, kernel_precision, precision,
                      result_dtype, rows, wants_grad, wrap_of)

__all__ = ["token_logprobs", "softmax_cross_entropy", "TokenLogprobs"]


class TokenLogprobs(NamedTuple):
    """token_logprobs(..., return_entropy=..., return_lse=...): the fields
    not asked for are None."""
    logprobs: object
    entropy: object
    lse: object


def _prepare(logits, targets, ignore_index):
    """(logits as rows over the class axis (a view), flat int64 targets,
    ignore_index, leading shape, output dtype, wrap) after every check,
    before any kernel."""
    wrap = wrap_of(logits, targets)
    x, _ = as_input(logits, "logits")
    x = float_input(x, "logits")
    if x.ndim == 0:
        raise ValueError("logits: expected at least one dimension (the class axis, last)")
    ignore_index = _args.ignore_index(ignore_index)
    t, _ = as_input(targets, "targets")
    tgt = _args.targets(t, x.shape[:-1], x.shape[-1], ignore_index)
    v, _, lead = rows(x, (x.ndim - 1,))
    return v, tgt, ignore_index, lead, result_dtype(x.dtype), wrap


def _loss(lp, smooth, tgt, keep, weight, eps, n_classes, reduction, loss_at=None):
    """torch's cross-entropy (aten LossNLL.cpp) from each row's log p_t and
    smoothing sum sum_c w_c log p_c, in float64:
        loss_i = (1 - eps) (-w[t_i] log p_i[t_i]) + eps / C (-sum_c w_c log p_i[c]),
    0 where t_i is ignored; "mean" divides the (exactly rounded) sum by the
    sum of w[t_i] over the kept positions, so all ignored gives 0/0 = nan.
    A term whose factor is exactly 0 adds nothing, even where its log p is
    -inf (torch: 0 * inf = nan): the first for w[t_i] = 0 or eps = 1, as
    the smoothing sum skips the classes of weight 0; but a NaN log p_t (a
    row of all -inf, or with NaN or +inf) of nonzero weight makes the loss
    NaN for eps = 1 too, as for every other eps.  Results beyond float64's
    range are +-inf, without a warning.  ``loss_at``: (rows, values) of
    per-row losses computed elsewhere (_redo_overflowed_rows), which replace
    those rows' before the reduction."""
    w_t = _target_weights(tgt, keep, weight)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):   # C = 0: nan, as torch
        nll = np.where(keep & (w_t != 0), -w_t * lp, 0.0)
        smoothed = None if eps == 0.0 else \
            (np.float64(eps) / n_classes) * np.where(keep, -smooth, 0.0)
        loss = nll if smoothed is None else (1.0 - eps) * nll + smoothed if eps != 1.0 else \
            np.where(np.isnan(nll), np.nan, smoothed)
        if loss_at is not None:
            loss[loss_at[0]] = loss_at[1]
        if reduction == "none":
            return loss
        total = _sum(loss)
        if reduction == "mean":
            return np.float64(total) / np.float64(_sum(w_t))
        return np.float64(total)


def _redo_overflowed_rows(v, tgt, keep, smooth, weight, eps, ignore_index):
    """The losses of the kept rows of finite float64 logits whose kernel
    smoothing sum overflowed on the way (+-inf or NaN: logits near float64's
    limits, whose sum over the classes leaves the range though the
    smoothing term, scaled by eps / C first, does not), computed again by
    the NumPy twin, as (rows, losses); None where no row needs it.  The
    check costs O(rows) unless such a row exists."""
    if v.dtype != np.float64 or np.all(np.isfinite(smooth) | ~keep):
        return None
    x = v.reshape(-1, v.shape[-1])
    rows = np.flatnonzero(keep & ~np.isfinite(smooth))
    rows = rows[np.all(np.isfinite(x[rows]), axis=-1)]
    if rows.size == 0 or (weight is not None and not np.all(np.isfinite(weight))):
        return None
    with np.errstate(all="ignore"):
        redo = _kernels.twin("softmax_cross_entropy")(
            x[rows], tgt[rows], weight=weight, ignore_index=ignore_index,
            label_smoothing=eps, reduction="none")
    return rows, redo


def _target_weights(tgt, keep, weight):
    """w[t_i] at the kept positions (1 without weights), 0 elsewhere."""
    if weight is None or weight.shape[0] == 0:      # (no classes: nothing is kept)
        return np.where(keep, 1.0, 0.0)
    return np.where(keep, weight[np.where(keep, tgt, 0)], 0.0)


def _sum(a):
    """The correctly rounded sum of float64 array ``a`` (math.fsum), with
    IEEE's rules where a term is not finite (np.sum: inf - inf is nan) and
    +-inf where the sum overflows (fsum raises OverflowError there: then
    the sum of the terms scaled by 2^-64, exact but for terms below
    2^-958, scaled back)."""
    if not np.all(np.isfinite(a)):
        return float(np.sum(a))
    try:
        return math.fsum(a.tolist())
    except OverflowError:
        return math.fsum((a * 2.0 ** -64).tolist()) * 2.0 ** 64


@public("tokens", ("logits", "targets"))
def token_logprobs(logits, targets, *, temperature=1.0, ignore_index=-100,
                   return_entropy=False, return_lse=False, check=True):
    """log softmax(logits / temperature)[..., target] for every position.

    ``logits``: [..., V], classes on the last axis; float16, bfloat16
    (ml_dtypes or torch), float32, float64 (integers promoted to float64).
    ``targets``: integer array of the leading shape [...].  A position whose
    target equals ``ignore_index`` gives 0.0 in every output and its row is
    not read; any other target outside [0, V) raises ValueError naming the
    first such position.  ``temperature``: finite, > 0, applied inside the
    kernel (the input is never modified); 16/32-bit logits with a temperature
    outside [1e-38, 1e36] run in float64, float64 logits outside
    [1e-307, 1e305] in the NumPy reference (where 1/T or a scaled logit
    difference would leave the working precision's range).

    Returns float32 values of shape [...] (float64 for float64 logits); with
    ``return_entropy`` / ``return_lse`` a :class:`TokenLogprobs` named tuple
    ``(logprobs, entropy, lse)`` whose unrequested fields are None: entropy
    is that of softmax(logits / temperature) in nats, summed as
    sum_i p_i (m - x_i) / T + log Z with every term >= 0 (no cancellation for
    a near one-hot row), and lse = log sum exp(logits / temperature).
    torch CPU tensors in give torch tensors out.

    One streaming pass per row, no [..., V] temporaries: beyond the outputs
    the call allocates O(N) (a copy of the targets as int64, the float64
    results before the cast).

    Accuracy, against the exact value for the same (rounded) logits:
    |error| <= 5e-7 (1 + |value|) for float32, bfloat16 and float16 logits
    (measured <= 9e-8: the rounding of the float32 result) and
    <= 1e-14 (1 + |value|) for float64 (measured 6e-16), for log-probs,
    entropy and lse alike (tested with V up to 131072).  A target at the
    row maximum gives -log1p(s), never a rounded 0.

    Differentiable (torch logits that require grad): logprobs, entropy and
    lse, each with respect to the logits, through a backward kernel that
    reads the logits once more and writes the gradient once, in their dtype
    (16-bit: computed in float32, rounded to nearest even); the forward
    saves one lse (and entropy) per position, no [..., V] array.  Ignored
    positions get a zero gradient row; a row whose lse is not finite (NaN,
    +inf, all -inf), or beyond 1e12 in magnitude (logits / T so large that
    the lse's rounding is not small in nats), gets NaN.

    ``check=False`` skips the validation of the targets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad target
    then gives NaN for its position, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Edge cases, per position (a row's neighbours are never affected):

    =============================  ==========  ========  ========
    row / target                   logprobs    entropy   lse
    =============================  ==========  ========  ========
    target == ignore_index         0.0         0.0       0.0
    -inf target logit, finite row  -inf        finite    finite
    all -inf row                   NaN         NaN       -inf
    +inf in row, target at +inf    NaN         NaN       +inf
    +inf in row, target elsewhere  -inf        NaN       +inf
    NaN in row                     NaN         NaN       NaN
    no positions ([0, V] logits)   empty       empty     empty
    =============================  ==========  ========  ========

    V = 0 (no classes) is only valid when every target is ignored.
    Complexity: O(N V) time for N positions, one streaming pass over each
    kept row; extra memory O(N).

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> print(np.round(klkit.token_logprobs(logits, np.array([2, -100])), 4))
    [-0.4076  0.    ]
    >>> out = klkit.token_logprobs(logits, np.array([0, 1]), return_entropy=True)
    >>> print(np.round(out.logprobs, 4), np.round(out.entropy, 4), out.lse)
    [-2.4076 -1.0986] [0.8324 1.0986] None
    """
    t = _args.temperature(temperature)
    if any_device(logits, targets):
        return _gpu.token_logprobs(logits, targets, t, ignore_index, return_entropy, return_lse,
                                   check)
    if wants_grad(logits):
        from . import _autograd

        return _autograd.token_logprobs(logits, targets, t, ignore_index, return_entropy,
                                        return_lse)
    v, tgt, ignore_index, lead, dtype, wrap = _prepare(logits, targets, ignore_index)
    work = kernel_precision(v.dtype, t)
    if work is None:       # 1/T beyond even float64's range: the NumPy twin
        x, _ = as_input(logits, "logits")
        with np.errstate(over="ignore"):     # logits / T beyond float64: +-inf, as the kernels
            r = _kernels.twin("token_logprobs")(
                float_input(x, "logits").astype(np.float64), tgt.reshape(lead),
                temperature=t, ignore_index=ignore_index, return_entropy=return_entropy,
                return_lse=return_lse)
        r = r if isinstance(r, tuple) else (r, None, None)
        out = [None if v is None else finish(np.asarray(v), lead, dtype, wrap) for v in r]
        return out[0] if not (return_entropy or return_lse) else TokenLogprobs(*out)
    n = tgt.shape[0]
    lp = np.empty(n)
    ent = np.empty(n) if return_entropy else None
    lse = np.empty(n) if return_lse else None
    if n:
        _kernels.backend(v).token_rows(precision(work), v, v.ndim - 1, tgt, ignore_index,
                                       1.0 / t, None, lp, ent, lse, None)
    lp = finish(lp, lead, dtype, wrap)
    if not (return_entropy or return_lse):
        return lp
    return TokenLogprobs(lp, finish(ent, lead, dtype, wrap) if return_entropy else None,
                         finish(lse, lead, dtype, wrap) if return_lse else None)


@public("tokens", ("logits", "targets", "weight"))
def softmax_cross_entropy(logits, targets, *, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction="mean", check=True):
    """Cross-entropy loss of logits [..., V] against class indices [...],
    with the semantics of torch.nn.functional.cross_entropy (classes on the
    LAST axis here, torch's [N, C] rows after a reshape).

    ``weight``: None or V class weights; ``ignore_index``: positions whose
    target equals it contribute nothing; ``label_smoothing`` eps in [0, 1]:
    loss_i = (1 - eps) (-w[t_i] log p_i[t_i]) + eps / V (-sum_c w_c log p_i[c]);
    ``reduction``: "none" (one loss per position, 0 where ignored), "sum",
    or "mean" = sum / sum of w[t_i] over the kept positions (their count
    without weights); every position ignored gives nan for "mean", as torch.
    Targets outside [0, V) other than ignore_index raise ValueError.

    Computed from the same one-pass row kernel as :func:`token_logprobs`
    (the smoothing sum in the same pass), then combined in float64; the
    result is float32 (float64 for float64 logits), a scalar for "mean" and
    "sum", with the accuracy of :func:`token_logprobs` per position.

    Deviation from torch, on purpose: a term whose factor is exactly 0
    adds nothing even where its log-probability is -inf (torch gives
    0 * -inf = nan there): a class of weight 0 in the smoothing term, the
    target term of a target whose class has weight 0 (its loss is 0 where
    torch gives nan), and the target term at ``label_smoothing=1``.  A -inf
    logit of positive weight makes the smoothed loss +inf, as in torch
    (with ``label_smoothing=1`` too, where torch gives nan).  Likewise a
    NaN logit, or a row of all -inf logits (every log p is nan), makes the
    loss nan only through terms of nonzero factor: if the target's class
    and every class of the smoothing term have weight 0, the loss is 0.

    Edge cases: V = 0 classes (every target ignored, ``weight`` of shape
    (0,) or None) gives 0 per position and for "sum", nan for "mean" (0/0)
    and nan everywhere with ``label_smoothing`` > 0 (eps / V), as torch.
    Results beyond the range of float64 (sums of huge losses, a "mean"
    over tiny weights) or of the float32 result are +-inf, without a
    warning.

    Differentiable with respect to torch logits that require grad (not the
    weights), for every option, with the memory of :func:`token_logprobs`:
    d loss_i / dx_c = p_c ((1-eps) w_t + eps W / V) - (1-eps) w_t [c = t]
    - eps w_c / V, times the reduction's factor, written once per row.

    ``check=False`` skips the validation of the targets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad target
    then gives NaN for its position, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Accuracy: per position that of :func:`token_logprobs`,
    |error| <= 5e-7 (1 + |loss|) for 16/32-bit logits and
    <= 1e-14 (1 + |loss|) for float64; "sum" and "mean" add the positions
    in float64 (exactly rounded sum) and round once.

    Edge cases:

    ===============================  ================  =========  ===========
    input                            "none"            "sum"      "mean"
    ===============================  ================  =========  ===========
    target == ignore_index           0.0 there         adds 0     not counted
    every position ignored / none    0.0 each / empty  0.0        NaN
    NaN or +inf in a kept row        NaN there         NaN        NaN
    all -inf kept row                NaN there         NaN        NaN
    -inf target logit (finite row)   +inf there        +inf       +inf
    V = 0 with label_smoothing > 0   NaN               NaN        NaN
    ===============================  ================  =========  ===========

    Complexity: O(N V) time for N positions, one streaming pass over each
    kept row (the smoothing sum in the same pass); extra memory O(N).

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    >>> print(f"{klkit.softmax_cross_entropy(logits, np.array([2, 0])):.6f}")
    0.753109
    >>> print(np.round(klkit.softmax_cross_entropy(logits, np.array([2, -100]), reduction="none"), 4))
    [0.4076 0.    ]
    >>> print(f"{klkit.softmax_cross_entropy(logits, np.array([2, 0]), label_smoothing=0.1):.6f}")
    0.803109
    """
    if any_device(logits, targets, weight):
        return _gpu.softmax_cross_entropy(logits, targets, weight, ignore_index, label_smoothing,
                                          reduction, check)
    if wants_grad(logits, weight):
        from . import _autograd

        return _autograd.softmax_cross_entropy(logits, targets, weight, ignore_index,
                                               label_smoothing, reduction)
    v, tgt, ignore_index, lead, dtype, wrap = _prepare(logits, targets, ignore_index)
    wrap = wrap_of(logits, targets, weight)
    n_classes = v.shape[-1]
    reduction = _args.reduction(reduction)
    eps = _args.label_smoothing(label_smoothing)
    w64 = _args.class_weights(None if weight is None else as_input(weight, "weight")[0],
                              n_classes)
    n = tgt.shape[0]
    lp = np.empty(n)
    smooth = np.empty(n) if eps else None
    if n:
        prec = precision(v.dtype)
        wk = None if not eps or w64 is None else w64.astype(prec)
        _kernels.backend(v).token_rows(prec, v, v.ndim - 1, tgt, ignore_index, 1.0, wk, lp,
                                       None, None, smooth)
    keep = tgt != ignore_index
    redone = None if not eps or not n else \
        _redo_overflowed_rows(v, tgt, keep, smooth, w64, eps, ignore_index)
    loss = _loss(lp, smooth, tgt, keep, w64, eps, n_classes, reduction, redone)
    return finish(loss, lead if reduction == "none" else (), dtype, wrap)
