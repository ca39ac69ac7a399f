"""NumPy twins of token_logprobs and softmax_cross_entropy (``check``, a
GPU option of the compiled functions, is accepted and ignored: the twins
always validate).

    log p_t = (x_t - m) / T - log1p(s)       (dense.log_softmax, gathered)
    H       = entropy of softmax(x / T)      (divergence.entropy, kind="logits")

softmax_cross_entropy follows torch.nn.functional.cross_entropy with class
indices (aten/src/ATen/native/LossNLL.cpp): with eps = label_smoothing, w
the class weights (ones by default) and C the number of classes, from the
row's log-probabilities log p_c,

    loss_i = -sum_c ((1 - eps) [c = t_i] + eps / C) w_c log p_i[c]
             (0 where t_i is ignored; a class of weight 0 adds nothing),

summed exactly (math.fsum); "mean" divides by sum_i w[t_i] over the kept
positions (their count without weights), so an all-ignored batch gives
0/0 = nan as torch.
"""
import math
import operator
from collections import namedtuple

import numpy as np

from ._common import (_as_numeric, _choice, _finish, _fsum, _number, _result_dtype,
                      _temperature)
from .dense import log_softmax, logsumexp
from .divergence import entropy

__all__ = ["token_logprobs", "softmax_cross_entropy", "TokenLogprobs"]


#: what token_logprobs returns with return_entropy / return_lse (fields not
#: asked for are None)
TokenLogprobs = namedtuple("TokenLogprobs", ["logprobs", "entropy", "lse"])


def _logits_and_targets(logits, targets, ignore_index):
    """(logits array, flat int64 targets, ignore_index) after the checks:
    logits with a class axis, integer targets of the leading shape that are
    ignore_index or a class."""
    x = _as_numeric(logits, "logits", allow_complex=False)
    if x.ndim == 0:
        raise ValueError("logits: needs a class axis (the last), got a 0-d array")
    try:
        ignore = int(operator.index(ignore_index))
    except TypeError:
        raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}") from None
    if not -2**63 <= ignore < 2**63:
        raise ValueError(f"ignore_index: {ignore} does not fit in int64")
    t = np.asarray(targets)
    if t.dtype.kind not in "iu" or t.shape != x.shape[:-1]:
        raise (TypeError if t.dtype.kind not in "iu" else ValueError)(
            f"targets: expected integers of shape {x.shape[:-1]}, got {t.dtype} {t.shape}")
    t = t.reshape(-1)
    n_classes = x.shape[-1]
    bad = [i for i, ti in enumerate(t.tolist()) if ti != ignore and not 0 <= ti < n_classes]
    if bad:
        raise ValueError(f"targets: flat entry {bad[0]} is {t[bad[0]]}, not a class in "
                         f"[0, {n_classes}) nor ignore_index {ignore}")
    return x, t.astype(np.int64), ignore


def token_logprobs(logits, targets, *, temperature=1.0, ignore_index=-100,
                   return_entropy=False, return_lse=False, check=True):
    t = _temperature(temperature)
    x, tgt, ignore_index = _logits_and_targets(logits, targets, ignore_index)
    dtype = _result_dtype((logits, x))
    with np.errstate(over="ignore"):            # x / T beyond float64's range: +-inf
        rows = x.astype(np.float64).reshape(math.prod(x.shape[:-1]), x.shape[-1]) / t
    keep = tgt != ignore_index
    lp = np.zeros(rows.shape[0])
    ent = np.zeros(rows.shape[0])
    lse = np.zeros(rows.shape[0])
    if keep.any():
        kept = rows[keep]
        lp[keep] = np.take_along_axis(log_softmax(kept, axis=-1), tgt[keep][:, None], -1)[:, 0]
        ent[keep] = entropy(kept, axis=-1)
        lse[keep] = logsumexp(kept, axis=-1)
    shape = x.shape[:-1]
    lp = _finish(lp.reshape(shape), dtype)
    if not (return_entropy or return_lse):
        return lp
    return TokenLogprobs(lp, _finish(ent.reshape(shape), dtype) if return_entropy else None,
                         _finish(lse.reshape(shape), dtype) if return_lse else None)


def softmax_cross_entropy(logits, targets, *, weight=None, ignore_index=-100,
                          label_smoothing=0.0, reduction="mean", check=True):
    _choice(reduction, "reduction", ("mean", "sum", "none"))
    eps = _number(label_smoothing, "label_smoothing", lambda e: 0.0 <= e <= 1.0,
                  "a number in [0, 1]")
    x, tgt, ignore_index = _logits_and_targets(logits, targets, ignore_index)
    dtype = _result_dtype((logits, x))
    n_classes = x.shape[-1]
    w = np.ones(n_classes)
    if weight is not None:
        w = _as_numeric(weight, "weight", allow_complex=False).astype(np.float64)
        if w.shape != (n_classes,):
            raise ValueError(f"weight: expected {n_classes} class weights, got shape {w.shape}")
    rows = x.astype(np.float64).reshape(math.prod(x.shape[:-1]), n_classes)
    keep = tgt != ignore_index
    loss = np.zeros(rows.shape[0])
    w_t = np.where(keep, w[np.where(keep, tgt, 0)] if n_classes else 0.0, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if n_classes == 0 and eps > 0:
            loss[:] = np.nan                   # eps / C with C = 0, as torch
        elif keep.any():
            cw = np.full((int(keep.sum()), n_classes), eps / n_classes) * w
            cw[np.arange(cw.shape[0]), tgt[keep]] += (1.0 - eps) * w[tgt[keep]]
            terms = np.where(cw == 0, 0.0, cw * log_softmax(rows[keep], axis=-1))
            loss[keep] = [-_fsum(r) for r in terms]
        if reduction == "none":
            return _finish(loss.reshape(x.shape[:-1]), dtype)
        total = np.float64(_fsum(loss))
        return _finish(total / np.float64(_fsum(w_t)) if reduction == "mean" else total, dtype)
