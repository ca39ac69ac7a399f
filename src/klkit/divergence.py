"""Divergences between distributions along an axis: entropy, cross_entropy,
kl_div, js_div.

Each distribution is given by ``kind``: "logits" (normalised here with
log-softmax of logits / temperature), "logprobs" (used as given) or "probs"
(non-negative, normalised by their sum like scipy.stats.entropy).  The C
kernels read logits and log-probs where they lie, in any layout and
dtype, one row at a time, without [..., V] temporaries; "probs" are turned
into log-probs first (one temporary of the input's size).  Nothing cancels
when KL ~ 1e-15 or a row is nearly one-hot: each function's Notes give its
accuracy bound.
"""

# How to add a row op to this family: as the list at the top of dense.py,
# with the row kernel in kernels/cpu/dense_rows.inc and a case of
# kk_div_rows (dense.c) with its op code in kernels/include/klkit/codes.h
# instead of a new entry point (then _cpu.pyx's OPS, this module, the twin in
# src/klkit/reference/divergence.py: six files), tests in
# tests/test_divergence.py.


import math
from typing import NamedTuple

import numpy as np

from . import _args, _gpu, _kernels
from ._arrays import (any_device, as_input, cast, common_dtype, finish, float_input,
                      kernel_precision, narrowed, precision, promotion_dtype, result_dtype, rows,
                      wants_grad, wrap_of)
from ._registry import public

__all__ = ["entropy", "cross_entropy", "kl_div", "js_div"]


def _as_logs(a, kind, work):
    """Kernel kind and array: probs become normalisable log-probs (log p,
    taken in the working precision: a temporary array of a's size)."""
    if kind != "probs":
        return kind, a
    a = a.astype(np.float64 if work.name == "float64" else np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return "logits", np.log(a)     # p < 0 gives NaN: that row is NaN


class _Operands(NamedTuple):
    """The inputs of a divergence as the kernels read them."""
    views: list          # p (and q) as rows over the distribution axis, broadcast
    n_lead: int
    kept_shape: tuple
    axis: int            # the distribution axis of the broadcast shape
    kind: str            # the kernels' kind ("probs" arrive as "logits")
    prec: str            # the working precision, None where only the twin computes
    out_dtype: object
    arrays: list         # the float inputs before broadcasting
    wrap: object


def _operands(op, arrays, axis, kind, temperature):
    names = ("p", "q")
    inputs = [as_input(a, n) for a, n in zip(arrays, names)]
    arrs = [float_input(a, n) for (a, _), n in zip(inputs, names)]
    dtype = common_dtype(*[(orig, promotion_dtype(raw, a))
                           for orig, (raw, _), a in zip(arrays, inputs, arrs)])
    try:
        shape = np.broadcast_shapes(*[a.shape for a in arrs])
    except ValueError:
        raise ValueError(f"p, q: shapes {arrs[0].shape} and {arrs[1].shape} "
                         "do not broadcast") from None
    ax = _args.distribution_axis(axis, len(shape))
    work = kernel_precision(dtype, temperature) if kind == "logits" else dtype
    views, n_lead, kept_shape, k = [], 0, shape[:ax] + shape[ax + 1:], kind
    if work is not None:
        for a in arrs:       # each in its own dtype: the kernels convert chunk by chunk
            k, a = _as_logs(np.broadcast_to(narrowed(a, work), shape), kind, work)
            v, n_lead, kept_shape = rows(a, (ax,))
            views.append(v)
    return _Operands(views, n_lead, kept_shape, ax, k, None if work is None else precision(work),
                     result_dtype(dtype), arrs, wrap_of(*arrays))


def _redo_overflowed_rows(op, o, out, temperature, beta):
    """Rows of float64 logits (finite, or -inf) whose value came out NaN or +inf: the
    kernels' shifted sums work in float64 on x / T, which overflows for
    logits (or spreads max - min) near float64's range (kl_div([1.8e308,
    -1.8e308], [0, 0]) is log 2).  Those rows, and only those, are computed
    again by the NumPy twin, from (x - max x) / T: O(rows) to find them, and
    a row's value still depends only on that row."""
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size == 0:
        return
    shape = np.broadcast_shapes(*[a.shape for a in o.arrays])
    idx = np.unravel_index(bad, o.kept_shape) if o.kept_shape else None
    moved = [np.moveaxis(np.broadcast_to(a, shape), o.axis, -1) for a in o.arrays]
    rows_ = [(m[idx] if idx is not None else m[None]).astype(np.float64) for m in moved]
    # no NaN, no +inf (-inf, a masked logit, is fine: the twin handles it)
    finite = np.all([~(np.isnan(r) | (r == np.inf)).any(axis=-1) for r in rows_], axis=0)
    if not finite.any():
        return
    extra = {"beta": beta} if op == "js_div" else {}
    with np.errstate(all="ignore"):
        redo = _kernels.twin(op)(*[r[finite] for r in rows_], axis=-1, kind="logits",
                                 temperature=temperature, **extra)
    out[bad[finite]] = redo


def _reduce(op, arrays, axis, kind, base, temperature, beta=0.5):
    kind = _args.kind(kind)
    temperature = _args.temperature(temperature, kind)
    log_base = _args.log_base(base)
    if any_device(*arrays):
        return _gpu.divergence(op, arrays, axis, kind, log_base, temperature, beta)
    if wants_grad(*arrays):
        from . import _autograd

        return _autograd.divergence(op, arrays, axis, kind, log_base, temperature, beta)
    o = _operands(op, arrays, axis, kind, temperature)
    if o.prec is None:       # 1/T beyond even float64's range: the NumPy twin
        extra = {"beta": beta} if op == "js_div" else {}
        r = _kernels.twin(op)(*[a.astype(np.float64) for a in o.arrays], axis=o.axis,
                              kind=kind, base=base, temperature=temperature, **extra)
        r = cast(np.asarray(r), o.out_dtype)
        return o.wrap(r[()] if r.ndim == 0 else r)
    out = np.empty(math.prod(o.kept_shape), np.float64)
    if out.size:
        _kernels.backend(*o.views).div_rows(op, o.kind, o.prec, o.views[0],
                                            o.views[1] if len(o.views) > 1 else None,
                                            o.n_lead, 1.0 / temperature, float(beta), out)
        if kind == "logits" and o.prec == "float64" and op != "entropy":
            _redo_overflowed_rows(op, o, out, temperature, beta)
    if log_base is not None:
        with np.errstate(over="ignore"):     # base < e: nats beyond max * log(base) are inf
            out /= log_base
    return finish(out, o.kept_shape, o.out_dtype, o.wrap)


@public("divergence", ("p",))
def entropy(p, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Shannon entropy H(P) = -sum P log P along ``axis``.

    ``kind``: "logits" (P = softmax(p / temperature)), "logprobs" (P = exp(p),
    not renormalised) or "probs" (P = p / sum(p), as scipy.stats.entropy).
    ``base``: None for nats, 2 for bits, any positive number other than 1.
    ``temperature``: 16/32-bit logits with a temperature outside
    [1e-38, 1e36] are computed in float64, float64 logits outside
    [1e-307, 1e305] by the NumPy reference (1/T or the scaled logit
    differences would leave the working range), and so are the rows of
    finite float64 logits near float64's limits (|x| / T or a spread
    max - min beyond ~1e308) whose value the kernels' sums cannot hold.
    Result: float32 (float64 for float64 input) with ``axis`` removed.

    From logits it is computed as sum_i p_i (m - x_i) + log Z with every term
    >= 0 in a single pass, so a nearly one-hot row keeps full relative
    accuracy.  Zero probabilities contribute 0.

    Differentiable (torch tensors that require grad), for kind "logits"
    (temperature included) and "logprobs" (kind "probs" raises ValueError:
    pass log p with kind="logprobs"): the backward kernel reads each input
    row once and writes its gradient once; the forward saves the value and
    each input's lse per row.  A row whose incoming gradient is 0 gets a
    zero gradient (it is not read: an infinite divergence there gives 0,
    not NaN).  Broadcast inputs get their gradients summed over the
    broadcast axes.  The same holds for :func:`cross_entropy`,
    :func:`kl_div` and :func:`js_div`, with gradients to both arguments.

    Notes
    -----
    Accuracy (kind="logits"; "probs" are the logits log p as rounded in the
    working precision), against the exact value for the input as given:
    with n the row's length, R = max - min of its finite logits / T, eps
    and d the machine epsilon and smallest subnormal of the result dtype,

        |error| <= (4 + 2 R) eps H + 8 n (1 + R) d.

    Typically within a few eps; R enters where a tiny probability's
    exp(x_i - m) amplifies the rounding of x_i - m (float64 [153.2, -45.8]:
    1.4e-14 relative), and the d term where the probabilities fall in
    float32's subnormal range (results below about 1e-36 lose relative
    accuracy).  kind="logprobs" has no stated bound.

    Edge cases, per row:

    ========================  ===============  ===============  ==========
    row                       "logits"         "probs"          "logprobs"
    ========================  ===============  ===============  ==========
    empty axis                NaN              NaN              0.0
    some -inf (probs: 0)      terms give 0     terms give 0     terms 0
    all -inf (probs: all 0)   NaN              NaN              0.0
    any +inf                  NaN              NaN              -inf
    any NaN                   NaN              NaN              NaN
    a negative entry          -                NaN              -
    ========================  ===============  ===============  ==========

    Complexity: O(n) time per row, one streaming pass over p; extra memory
    O(number of rows), plus one array of p's size for kind="probs".

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> print(f"{klkit.entropy(np.zeros(4)):.6f}")            # log 4
    1.386294
    >>> print(f"{klkit.entropy(np.array([0.5, 0.25, 0.25]), kind='probs', base=2):.6f}")
    1.500000
    >>> print(np.round(klkit.entropy(np.array([[0.0, 0.0], [0.0, -np.inf]])), 6))
    [0.693147 0.      ]
    """
    return _reduce("entropy", (p,), axis, kind, base, temperature)


@public("divergence", ("p", "q"))
def cross_entropy(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Cross-entropy H(P, Q) = -sum P log Q = H(P) + KL(P||Q) along ``axis``.

    p and q broadcast against each other; ``kind``, ``base``,
    ``temperature`` (applied to both) and the result as :func:`entropy`.
    Mixed dtypes promote by NumPy's rules (np.result_type, as scipy): a
    bool / uint8 / int8 / int16 array with a float32 (or 16-bit) array is
    computed and returned in float32, int32 / int64 with float32 in
    float64 (the same for :func:`kl_div`, :func:`js_div`, kl_estimate and
    seq_kl).
    P > 0 where Q = 0 gives +inf.  From logits it is
    sum_i p_i (max(xq) - xq_i) + log Zq, every term >= 0, one pass.

    Notes
    -----
    Accuracy (kind="logits"; "probs" as logits log p): the bound of
    :func:`entropy`, (4 + 2 R) eps |H(P, Q)| + 8 n (1 + R) d, with R the
    larger of the two rows' ranges max - min of their finite logits / T.
    Typically a few eps (measured on random rows: 1.3e-7 relative for
    float32 input, 2.6e-16 for float64).

    Edge cases, per row:

    ==========================  ==================  =====================
    row                         "logits", "probs"   "logprobs"
    ==========================  ==================  =====================
    empty axis                  NaN                 0.0
    P > 0 where Q = 0           +inf                +inf
    p all -inf (probs: all 0)   NaN                 0.0
    q all -inf (probs: all 0)   NaN                 +inf
    +inf in p / in q            NaN                 NaN / -inf
    NaN in p or q               NaN                 NaN
    ==========================  ==================  =====================

    A negative "probs" entry gives NaN.  Complexity: O(n) time per row, one
    streaming pass over p and q; extra memory O(number of rows), plus one
    array per input of its size for kind="probs".

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> p, q = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5])
    >>> print(f"{klkit.cross_entropy(p, q):.6f}")
    0.858537
    >>> print(klkit.cross_entropy(np.array([0.0, 0.0]), np.array([0.0, -np.inf])))
    inf
    """
    return _reduce("cross_entropy", (p, q), axis, kind, base, temperature)


@public("divergence", ("p", "q"))
def kl_div(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Kullback-Leibler divergence KL(P||Q) = sum P log(P/Q) along ``axis``.

    Forward KL when P is the data; reverse KL is ``kl_div(q, p)``.  p and q
    broadcast; ``kind``, ``base``, ``temperature`` as :func:`entropy`.

    Relative accuracy is kept when P and Q are nearly identical (KL of
    1e-15 from float64 logits, 1e-12 from float32 logits): from logits,
    KL = B + log1p(A - B) with A, B the P-means of phi(D) = exp(-D) - 1 + D
    and D, D the logit difference shifted by its approximate P-mean; no
    term cancels.  Accuracy bound and edge cases: see Notes.
    KL >= 0 always and KL(P||P) == 0 exactly.  P > 0 where Q = 0 gives +inf, P = 0 terms give 0.

    kind="logprobs" (not renormalised) sums the Bregman form
    p log(p/q) - p + q (scipy.special.kl_div), which equals KL for normalised
    inputs and stays >= 0 for slightly unnormalised ones (and its gradient
    is that form's: P (log P - log Q) and Q - P).

    Differentiable in p and q as :func:`entropy` says.  From logits
    dKL/dxp = P (log P - log Q - KL) / T and dKL/dxq = (Q - P) / T, with
    log P - log Q = (xp - xq) / T - (lse_p - lse_q) where the lse difference
    comes from the same shifted sums as KL (not from two separately rounded
    lse) and Q - P = P (e^-d - 1) through phi where |d| is small: the
    gradients keep their relative accuracy when P and Q are close.
    Measured in float32 against float64 on the same logits (2-norm relative
    error, logits differing by 1e-2 to 1e-6, T = 1 and 0.7): <= 3e-7, where
    torch's float32 log_softmax recipe gives 4e-5 to 0.5.

    Notes
    -----
    Accuracy (kind="logits"; "probs" as logits log p): the bound of
    :func:`entropy`, (4 + 2 R) eps KL + 8 n (1 + R) d, with R the larger
    of the two rows' ranges max - min of their finite logits / T.  Measured
    against mpmath for logits differing by 1e-6..1e-8: relative error
    ~1e-7 (float32 input) and ~2e-16 (float64); on random rows of any
    spread (differences 1e-6..3, offsets, temperatures 0.3..3) <= 4e-7
    (float32) and <= 2e-15 (float64).  kind="logprobs": no stated bound.

    Edge cases, per row:

    ==========================  ==================  =====================
    row                         "logits", "probs"   "logprobs" (Bregman)
    ==========================  ==================  =====================
    empty axis                  NaN                 0.0
    P > 0 where Q = 0           +inf                +inf
    P = 0 terms                 0                   q (their Q mass)
    p all -inf (probs: all 0)   NaN                 sum exp(q)
    q all -inf (probs: all 0)   NaN                 +inf
    any +inf                    NaN                 NaN
    any NaN                     NaN                 NaN
    ==========================  ==================  =====================

    A negative "probs" entry gives NaN.  Complexity: O(n) time per row, one
    streaming pass over p and q; extra memory O(number of rows), plus one
    array per input of its size for kind="probs".

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> p, q = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5])
    >>> print(f"{klkit.kl_div(p, q):.6e}")
    2.614146e-02
    >>> print(f"{klkit.kl_div(np.array([0.5, 0.5]), np.array([0.9, 0.1]), kind='probs'):.6f}")
    0.510826
    >>> print(f"{klkit.kl_div(p, p + np.array([1e-8, -1e-8, 0.0])):.4e}")   # no cancellation
    1.5541e-17
    """
    return _reduce("kl_div", (p, q), axis, kind, base, temperature)


@public("divergence", ("p", "q"))
def js_div(p, q, axis=-1, *, beta=0.5, kind="logits", base=None, temperature=1.0):
    """Generalised Jensen-Shannon divergence along ``axis``:
    beta KL(P||M) + (1 - beta) KL(Q||M) with M = beta P + (1 - beta) Q.

    ``beta`` in [0, 1]; the result is continuous in beta and 0 at 0 and 1.
    At beta = 0.5 it is symmetric and at most log 2.  Computed per element in
    Bregman form (all terms >= 0), in float64 whatever the input, so nearly
    identical P and Q keep relative accuracy (float32 input is limited by
    the rounding of its own log-ratios).  ``kind``, ``base``,
    ``temperature`` as :func:`entropy`.

    Notes
    -----
    Accuracy (kind="logits"; "probs" as logits log p): the bound of
    :func:`entropy`, (4 + 2 R) eps JS + 8 n (1 + R) d, with R the larger
    of the two rows' ranges max - min of their finite logits / T.  On
    random and nearly identical rows the measured relative error is
    <= 1.2e-6 (float32 input) and <= 3.3e-15 (float64); rows of widely
    spread logits come nearer the bound.  kind="logprobs": no stated bound.

    Edge cases, per row:

    ==========================  ==================  =====================
    row                         "logits", "probs"   "logprobs" (Bregman)
    ==========================  ==================  =====================
    empty axis                  NaN                 0.0
    disjoint supports           H(beta) (log 2)     H(beta) (log 2)
    p or q all -inf (all 0)     NaN                 finite
    any +inf                    NaN                 NaN
    any NaN                     NaN                 NaN
    ==========================  ==================  =====================

    A negative "probs" entry gives NaN.  Complexity: O(n) time per row, one
    streaming pass over p and q; extra memory O(number of rows), plus one
    array per input of its size for kind="probs".

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> p, q = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5])
    >>> print(f"{klkit.js_div(p, q):.6e}")
    6.281671e-03
    >>> print(f"{klkit.js_div(np.array([1.0, 0.0]), np.array([0.0, 1.0]), kind='probs', base=2):.6f}")
    1.000000
    """
    beta = _args.beta(beta)
    return _reduce("js_div", (p, q), axis, kind, base, temperature, beta)
