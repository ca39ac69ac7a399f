"""NumPy twins of the divergences: entropy, cross_entropy, kl_div, js_div.

Divergences (rows along ``axis``; p_i, q_i probabilities)
----------------------------------------------------------
``phi(d) = exp(-d) - 1 + d >= 0`` is the Bregman term of exp.  It is
evaluated by its Taylor series d^2 (1/2 - d/6 + d^2/24 - ...) for
|d| <= 1/2 (the direct form cancels there) and directly otherwise; a
weighted term w phi(d) with |d| > 1/2 is formed as (m - w) + w d where
m = w exp(-d) is known (or computed in log space), so nothing overflows.

* Entropy  H(P) = -sum p_i log p_i.  From logits every term is >= 0:
  -log p_i = (m - x_i) + log1p(s).  0 log 0 = 0.
* Cross-entropy  H(P, Q) = -sum p_i log q_i = H(P) + KL(P||Q), summed
  directly as the non-negative terms p_i (-log q_i); P > 0 where Q = 0
  gives +inf.
* KL from logits.  With Dx_i = (xp_i - xq_i) / T, c the P-mean of Dx,
  D_i = Dx_i - c, A = sum p_i phi(D_i) and delta = sum p_i D_i (zero in
  exact arithmetic, it only carries the rounding of c), the exact identity

      KL(P||Q) = E_p[Dx] + log E_p[exp(-Dx)] = delta + log1p(A - delta)

  is a sum of non-negative terms: no cancellation even for KL ~ 1e-16, and
  the rounding of c and of the weights p_i cancels to first order.  (When
  Q puts mass outside the support of P a term -log Q(supp P) is added; when
  P > 0 where Q = 0 the KL is +inf; when the sum is large, log E_p[exp(-D)]
  is taken in log space.)  The same quantities give the precise log-ratio
  log q_i - log p_i = -(D_i + KL - delta) used by ``js_div``.
  Rows with huge logits (max|x / T| eps > 1e-3 nats, e.g. 1e20) use the
  direct sums instead (see "Huge logits" in the code).
* KL from log-probs (not renormalised): the generalised (Bregman) form
      sum_i p_i log(p_i/q_i) - p_i + q_i = sum_i p_i phi(log p_i - log q_i),
  equal to KL for normalised inputs, >= 0 always, 0 for identical inputs.
  p_i = 0 terms are q_i.
* JS with mixture M = beta P + (1 - beta) Q, per element with
  r = log(q/p):
      dp = log(p/m) = -log1p((1 - beta) expm1(r)),
      dq = log(q/m) = -log1p(beta expm1(-r)),
      JS = sum beta p phi(dp) + (1 - beta) q phi(dq),
  (for |r| > 1 the logs are taken as logaddexp to avoid overflow);
  p = 0 elements give (1 - beta) q (-log(1 - beta)), q = 0 elements
  beta p (-log beta).
"""
import math
import operator
from typing import NamedTuple

import numpy as np

try:  # NumPy >= 2
    from numpy.lib.array_utils import normalize_axis_index
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import normalize_axis_index

from ._common import _as_numeric, _choice, _finish, _number, _result_dtype, _temperature
from .dense import _lse_parts

__all__ = ["entropy", "cross_entropy", "kl_div", "js_div"]


def _options(kind, base, temperature):
    """(temperature, log of base) after the checks every divergence makes."""
    _choice(kind, "kind", ("logits", "logprobs", "probs"))
    t = _temperature(temperature, kind)
    if base is None:
        return t, 1.0
    b = _number(base, "base", lambda b: math.isfinite(b) and b > 0 and b != 1,
                "None or a finite positive number other than 1")
    return t, math.log(b)


# (-1)^k / (k + 2)!  for k = 0..16: phi(d) = d^2 * sum_k c_k d^k, |d| <= 1/2
_PHI_COEFFS = tuple((-1) ** k / math.factorial(k + 2) for k in range(17))


def _phi(d):
    """phi(d) = exp(-d) - 1 + d >= 0, without cancellation for small |d|."""
    d = np.asarray(d, dtype=np.float64)
    poly = np.zeros_like(d)
    for c in reversed(_PHI_COEFFS):  # Horner
        poly = poly * d + c
    series = d * d * poly
    direct = np.expm1(-d) + d
    return np.where(np.abs(d) <= 0.5, series, direct)


def _wphi(w, d, m):
    """w * phi(d) where m = w * exp(-d) is known; (m - w) + w d for |d| > 1/2."""
    return np.where(np.abs(d) <= 0.5, w * _phi(np.where(np.abs(d) <= 0.5, d, 0.0)),
                    (m - w) + w * d)


def _nxlogx(t):
    """-t log t for a scalar in [0, 1], 0 at t = 0."""
    return 0.0 if t == 0.0 else -t * math.log(t)


def _masked_lse(lx, mask):
    """log sum exp(lx) over ``mask`` along the last axis (-inf if empty)."""
    y = np.where(mask, lx, -np.inf)
    if y.shape[-1] == 0:
        return np.full(y.shape[:-1] + (1,), -np.inf)
    m, _, _, _, s = _lse_parts(y)
    return np.where(np.isfinite(m), m + np.log1p(s), m)


def _log_mass(dist, mask):
    """log of the probability that ``dist`` gives to ``mask`` (keepdims).

    The complement is summed and log1p used while it is small, so the
    result is exactly 0 when the mask covers the support.
    """
    outside = np.sum(np.where(mask, 0.0, dist.p), axis=-1, keepdims=True)
    return np.where(outside <= 0.5, np.log1p(-outside), _masked_lse(dist.logp, mask))


class _Dist(NamedTuple):
    """A row-normalised distribution along the last axis."""

    logp: np.ndarray  # (..., n) log-probabilities (-inf where p = 0)
    p: np.ndarray  # (..., n) probabilities
    bad: np.ndarray  # (...,) rows where the softmax is undefined (NaN result)


def _dist_from_logits(x):
    """Precise log_softmax / softmax of logits x (..., n), n >= 1."""
    m, _, z, e, s = _lse_parts(x)
    return _Dist(z - np.log1p(s), e / (1.0 + s), ~np.isfinite(m[..., 0]))


def _neg_p_log_q(p, logp, logq):
    """Elementwise -p log q with 0 log 0 = 0, and +inf where p > 0 = q."""
    term = -p * logq
    term = np.where((logp == -np.inf) & ~np.isnan(logq), 0.0, term)
    return np.where((logp > -np.inf) & (logq == -np.inf), np.inf, term)


def _prepare(arrays, axis):
    """Check, convert and broadcast the inputs of a divergence.

    ``arrays`` is a list of (name, value).  Returns (rows, dtype): float64
    copies broadcast together with ``axis`` moved last, and the output dtype.
    """
    converted = [(x, _as_numeric(x, name, allow_complex=False)) for name, x in arrays]
    dtype = _result_dtype(*converted)
    values = [arr.astype(np.float64) for _, arr in converted]
    try:
        values = np.broadcast_arrays(*values)
    except ValueError:
        shapes = ", ".join(f"{name} {arr.shape}" for (name, _), (_, arr) in zip(arrays, converted))
        raise ValueError(f"shapes do not broadcast: {shapes}") from None
    try:
        ax = operator.index(axis)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    ax = normalize_axis_index(ax, values[0].ndim)
    return [np.moveaxis(v, ax, -1) for v in values], dtype


def _to_logits(x, kind, temperature):
    """Logits of rows x: x / T for "logits", log(x) for "probs".

    For "probs", log turns negative entries into NaN and an all-zero row into
    all -inf, so both end as NaN rows through the softmax.
    """
    if kind == "probs":
        return np.log(x)
    return x if temperature == 1.0 else x / temperature


def _empty_result(rows, kind):
    """Result for a reduction over an empty axis: NaN, or 0.0 for log-probs."""
    return np.full(rows.shape[:-1], 0.0 if kind == "logprobs" else np.nan)


def _log_ratio(P, Q, dx):
    """Centred log-ratio of two logit rows (see "KL from logits" above).

    ``dx`` = (xp - xq) / T.  Returns (U, D, delta, G) with
      U      elements where p > 0 and q > 0,
      D      dx - c on U (0 elsewhere), c the mean of dx under P restricted to U,
      delta  sum_U p~ D, the rounding left in c (p~ = P renormalised on U),
      G      log(Zq / Zp) + c, so that  log q_i - log p_i = -(D_i + G)  on U
             and, when U is the support of P, KL(P||Q) = delta + G.
    delta and G have keepdims shape.
    """
    U = (P.logp > -np.inf) & (Q.logp > -np.inf)
    log_pu = _log_mass(P, U)  # 0 when U is the support of P
    log_qu = _log_mass(Q, U)
    log_pt = np.where(U, P.logp - log_pu, -np.inf)
    pt = np.exp(log_pt)
    dxu = np.where(U, dx, 0.0)
    c = np.sum(pt * dxu, axis=-1, keepdims=True)
    D = np.where(U, dxu - c, 0.0)
    delta = np.sum(pt * D, axis=-1, keepdims=True)
    # log E_p~[exp(-D)] = log1p(A - delta) while it is small; in log space above.
    A = np.sum(_wphi(pt, D, np.exp(log_pt - D)), axis=-1, keepdims=True)
    big = _masked_lse(log_pt - D, U)
    log_mean = np.where(big <= 1.0, np.log1p(A - delta), big)
    G = log_pu + log_mean - log_qu
    return U, D, delta, G


# Huge logits.  The centred form above needs x / T, (xp - xq) / T and the
# sums over D to be exact to well below a nat; at |x / T| ~ 1e20 their
# absolute resolution is ~1e4 (and near 1e308 they overflow), so everything
# is lost to rounding.  Such rows instead use log-softmax values computed
# from (x - max x) / T, each row relative to its own maximum (no overflow,
# full resolution near the maximum), and the direct sums
# KL = sum p (lp - lq) and r = lq - lp.  The threshold |x / T| eps > 1e-3
# nats also catches every row where the centred sums could overflow.
_HUGE_LOGIT_NATS = 1e-3


def _huge_rows(xp, xq, temperature):
    """Rows (...,) whose rounding of x / T, about max|x / T| eps, exceeds 1e-3 nats."""
    def absmax(x):
        return np.max(np.where(np.isfinite(x), np.abs(x), 0.0), axis=-1)

    scale = np.maximum(absmax(xp), absmax(xq)) / temperature  # inf on overflow
    return scale * np.finfo(np.float64).eps > _HUGE_LOGIT_NATS


def _dist_from_shifted_logits(x, temperature):
    """_dist_from_logits of x / T, computed from (x - max x) / T (no overflow)."""
    m = np.max(x, axis=-1, keepdims=True)
    return _dist_from_logits((x - np.where(np.isfinite(m), m, 0.0)) / temperature)


def _log_mix(r, beta):
    """log(beta + (1 - beta) exp(r)), i.e. log(m/p) for r = log(q/p)."""
    small = np.log1p((1.0 - beta) * np.expm1(np.where(np.abs(r) <= 1.0, r, 0.0)))
    with np.errstate(divide="ignore"):
        large = np.logaddexp(np.log(beta), np.log1p(-beta) + r)
    return np.where(np.abs(r) <= 1.0, small, large)


def _js_terms(p, q, r, p_zero, q_zero, beta):
    """beta p phi(dp) + (1 - beta) q phi(dq) per element (module docstring)."""
    m = beta * p + (1.0 - beta) * q
    dp = -_log_mix(r, beta)  # log(p/m)
    dq = -_log_mix(-r, 1.0 - beta)  # log(q/m)
    t = beta * _wphi(p, dp, m) + (1.0 - beta) * _wphi(q, dq, m)
    t = np.where(p_zero, q * _nxlogx(1.0 - beta), t)
    t = np.where(q_zero, p * _nxlogx(beta), t)
    return np.where(p_zero & q_zero, 0.0, t)


def _clip_sum(terms):
    """Row sums of non-negative terms, a tiny negative rounding clipped to 0."""
    total = np.sum(terms, axis=-1)
    return np.where(total < 0, 0.0, total)


# --------------------------------------------------------------------------
# divergences: public functions
# --------------------------------------------------------------------------

_DIV_DOC = """
    Common arguments
    ----------------
    axis : int
        The axis holding the distribution (default -1), counted on the
        broadcast shape of the inputs; negative values allowed, out of range
        raises ``numpy.exceptions.AxisError``.  The result drops that axis;
        a 0-d result is a NumPy scalar.
    kind : {"logits", "logprobs", "probs"}
        How the distributions are given.  "logits": unnormalised
        log-probabilities, normalised with log_softmax(x / temperature)
        along ``axis``; a row with +inf or NaN, or only -inf, gives NaN.
        "logprobs": used as given (not renormalised).  "probs": non-negative
        weights normalised by their sum (as scipy.stats.entropy); a negative
        entry, an all-zero row, NaN or +inf gives NaN for that row.  Any
        other value raises ValueError naming ``kind``.
    base : None or float
        None for nats, else a finite positive number != 1 (2 for bits); the
        result is divided by log(base).  Anything else raises ValueError.
    temperature : float
        Finite and > 0 (ValueError otherwise); divides the logits (the input
        is not modified).  A value != 1.0 needs kind="logits" (ValueError
        naming ``temperature``).

    Zero probabilities follow 0 log 0 = 0.  An empty ``axis`` gives NaN for
    kind "logits" / "probs" and 0.0 for "logprobs".  Inputs are broadcast
    (NumPy rules), computed in float64 and never modified; the result is
    float64 for float64, integer and bool inputs and float32 for float32,
    float16 and bfloat16 (np.result_type of the input dtypes, then that
    rule).  Complex input raises TypeError.
"""


def entropy(p, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Shannon entropy H(P) = -sum P log P along ``axis``.

    For logits every term is computed as p_i * ((m - x_i) + log1p(s)) >= 0
    (m the row maximum, s the sum of exp(x_j - m) over all but one maximum),
    so a near one-hot row keeps its relative accuracy.  For log-probs it is
    -sum exp(lp) lp (not renormalised).
    """
    temperature, log_base = _options(kind, base, temperature)
    (x,), dtype = _prepare([("p", p)], axis)
    with np.errstate(all="ignore"):
        if x.shape[-1] == 0:
            res = _empty_result(x, kind)
        elif kind == "logprobs":
            res = np.sum(_neg_p_log_q(np.exp(x), x, x), axis=-1)
        else:
            P = _dist_from_logits(_to_logits(x, kind, temperature))
            res = np.sum(_neg_p_log_q(P.p, P.logp, P.logp), axis=-1)
            res = np.where(P.bad, np.nan, res)
        res = res / log_base
    return _finish(res, dtype)


def cross_entropy(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Cross-entropy H(P, Q) = -sum P log Q = H(P) + KL(P||Q) along ``axis``.

    Summed directly as the non-negative terms p_i * (-log q_i), with log q
    from the precise log_softmax; P > 0 where Q = 0 gives +inf, P = 0 terms
    are 0.  For kind="logprobs" it is -sum exp(lp) lq (not renormalised).
    """
    temperature, log_base = _options(kind, base, temperature)
    (xp, xq), dtype = _prepare([("p", p), ("q", q)], axis)
    with np.errstate(all="ignore"):
        if xp.shape[-1] == 0:
            res = _empty_result(xp, kind)
        elif kind == "logprobs":
            res = np.sum(_neg_p_log_q(np.exp(xp), xp, xq), axis=-1)
        else:
            P = _dist_from_logits(_to_logits(xp, kind, temperature))
            Q = _dist_from_logits(_to_logits(xq, kind, temperature))
            res = np.sum(_neg_p_log_q(P.p, P.logp, Q.logp), axis=-1)
            res = np.where(P.bad | Q.bad, np.nan, res)
        res = res / log_base
    return _finish(res, dtype)


def kl_div(p, q, axis=-1, *, kind="logits", base=None, temperature=1.0):
    """Kullback-Leibler divergence KL(P||Q) = sum P log(P/Q) along ``axis``.

    Argument order is the mathematical one: ``kl_div(p, q)`` is KL(P||Q)
    (forward KL when P is the data); the reverse KL is ``kl_div(q, p)``.

    Accuracy: for logits (and probs, taken as logits log p) it keeps its
    relative accuracy when P and Q are nearly identical (KL ~ 1e-12 and
    below).  With Dx_i = (xp_i - xq_i) / T, c the P-mean of Dx, D_i = Dx_i - c
    and phi(d) = exp(-d) - 1 + d >= 0 (series for |d| <= 1/2),

        KL = delta + log1p(sum_i p_i phi(D_i) - delta),  delta = sum_i p_i D_i,

    an exact identity (delta is 0 up to the rounding of c, which it
    cancels).  Elements with p_i = 0 contribute 0; p_i > 0 where q_i = 0
    gives +inf; Q mass outside the support of P adds -log Q(supp P).
    kind="logprobs" uses the generalised (Bregman) form
    sum_i p_i log(p_i/q_i) - p_i + q_i = sum_i p_i phi(lp_i - lq_i)
    (p_i = 0 terms are q_i), equal to KL for normalised inputs.
    KL >= 0 always (a tiny negative rounding is clipped to 0) and
    KL(P||P) == 0 exactly.
    """
    temperature, log_base = _options(kind, base, temperature)
    (xp, xq), dtype = _prepare([("p", p), ("q", q)], axis)
    with np.errstate(all="ignore"):
        if xp.shape[-1] == 0:
            res = _empty_result(xp, kind)
        elif kind == "logprobs":
            res = _clip_sum(_kl_bregman_terms(xp, xq))
        else:
            res = _kl_logits(_to_logits(xp, kind, 1.0), _to_logits(xq, kind, 1.0), temperature)
        res = res / log_base
    return _finish(res, dtype)


def _kl_bregman_terms(lp, lq):
    """p phi(lp - lq) per element (= q where p = 0, +inf where p > 0 = q)."""
    p, q = np.exp(lp), np.exp(lq)
    d = lp - lq
    t = _wphi(p, d, q)
    t = np.where(lp == -np.inf, q, t)
    t = np.where((lp > -np.inf) & (lq == -np.inf), np.inf, t)
    return np.maximum(t, 0.0)  # NaN passes through np.maximum


def _kl_logits(xp, xq, temperature):
    """KL(P||Q) for rows of logits (temperature not yet applied)."""
    P = _dist_from_logits(_to_logits(xp, "logits", temperature))
    Q = _dist_from_logits(_to_logits(xq, "logits", temperature))
    dx = xp - xq if temperature == 1.0 else (xp - xq) / temperature
    _, _, delta, G = _log_ratio(P, Q, dx)
    kl = _kl_special_values((delta + G)[..., 0], P, Q)
    huge = _huge_rows(xp, xq, temperature)
    if np.any(huge):  # direct sum p (lp - lq), see "Huge logits" above
        P, Q = _dist_from_shifted_logits(xp, temperature), _dist_from_shifted_logits(xq, temperature)
        terms = np.where(P.logp > -np.inf, P.p * (P.logp - Q.logp), 0.0)
        kl = np.where(huge, _kl_special_values(np.sum(terms, axis=-1), P, Q), kl)
    return kl


def _kl_special_values(kl, P, Q):
    """Clip a tiny negative KL to 0; +inf where p > 0 = q; NaN for bad rows."""
    kl = np.where(kl < 0, 0.0, kl)
    q_zero = (P.logp > -np.inf) & (Q.logp == -np.inf)
    kl = np.where(np.any(q_zero, axis=-1), np.inf, kl)
    return np.where(P.bad | Q.bad, np.nan, kl)


def js_div(p, q, axis=-1, *, beta=0.5, kind="logits", base=None, temperature=1.0):
    """Generalised Jensen-Shannon divergence along ``axis``.

    With the mixture M = beta P + (1 - beta) Q it is
    beta KL(P||M) + (1 - beta) KL(Q||M); beta in [0, 1] (ValueError
    otherwise).  It is continuous in beta and 0 at beta = 0 and 1 (NaN input
    still gives NaN); beta = 1/2 is the usual JS divergence (<= log 2).

    Computed without cancellation for nearly identical P, Q: per element,
    with r = log(q/p), dp = log(p/m) = -log1p((1 - beta) expm1(r)) and
    dq = log(q/m) = -log1p(beta expm1(-r)),

        JS = sum_i beta p_i phi(dp_i) + (1 - beta) q_i phi(dq_i),

    every term >= 0 (w phi(d) is taken as (m - w) + w d for |d| > 1/2).
    p = 0 elements contribute (1 - beta) q (-log(1 - beta)), q = 0 elements
    beta p (-log beta).  For logits, r = lq - lp comes from the centred
    log-ratio of the KL computation (accurate to the size of r itself).
    For kind="logprobs" the same sum is the generalised (Bregman) JS of the
    unnormalised inputs.
    """
    temperature, log_base = _options(kind, base, temperature)
    beta = _number(beta, "beta", lambda b: 0.0 <= b <= 1.0, "a number in [0, 1]")
    (xp, xq), dtype = _prepare([("p", p), ("q", q)], axis)
    with np.errstate(all="ignore"):
        if xp.shape[-1] == 0:
            res = _empty_result(xp, kind)
        elif kind == "logprobs":
            pr, qr = np.exp(xp), np.exp(xq)
            terms = _js_terms(pr, qr, xq - xp, xp == -np.inf, xq == -np.inf, beta)
            res = _clip_sum(terms)
        else:
            res = _js_logits(_to_logits(xp, kind, 1.0), _to_logits(xq, kind, 1.0),
                             temperature, beta)
        res = res / log_base
    return _finish(res, dtype)


def _js_logits(xp, xq, temperature, beta):
    """JS for rows of logits (temperature not yet applied)."""
    P = _dist_from_logits(_to_logits(xp, "logits", temperature))
    Q = _dist_from_logits(_to_logits(xq, "logits", temperature))
    dx = xp - xq if temperature == 1.0 else (xp - xq) / temperature
    U, D, _, G = _log_ratio(P, Q, dx)
    js = _js_from_log_ratio(P, Q, np.where(U, -(D + G), 0.0), beta)  # r = log q - log p on U
    huge = _huge_rows(xp, xq, temperature)
    if np.any(huge):  # direct r = lq - lp, see "Huge logits" above
        P, Q = _dist_from_shifted_logits(xp, temperature), _dist_from_shifted_logits(xq, temperature)
        U = (P.logp > -np.inf) & (Q.logp > -np.inf)
        js = np.where(huge, _js_from_log_ratio(P, Q, np.where(U, Q.logp - P.logp, 0.0), beta), js)
    return js


def _js_from_log_ratio(P, Q, r, beta):
    """JS row sums from the distributions and r = log q - log p (where both > 0)."""
    p_zero, q_zero = P.logp == -np.inf, Q.logp == -np.inf
    js = _clip_sum(_js_terms(P.p, Q.p, r, p_zero, q_zero, beta))
    return np.where(P.bad | Q.bad, np.nan, js)


for _f in (entropy, cross_entropy, kl_div, js_div):
    if _f.__doc__:  # None under python -OO
        _f.__doc__ += _DIV_DOC
del _f


