"""Accuracy against mpmath (50 digits): klkit next to scipy and torch.

    python bench/accuracy.py [--kl-rows N] [--seed S]
    python bench/accuracy.py --markdown [--out docs/ACCURACY.md] [--kl-rows N] [--seed S]

Without --markdown it prints the figures quoted in the README's accuracy
table: worst ulp error of logsumexp / log_softmax over random rows, relative
error of KL for nearly identical logits (where the textbook sum
p (log p - log q) loses every digit), of the entropy of a near one-hot row,
and the worst relative error of kl_div over N random rows per dtype of any
spread (default 40; the README's figure is over more seeds).

With --markdown it measures every public numeric function on the fixed input
suite described in the generated document, for float16, bfloat16, float32
and float64 input, against exact values computed by mpmath from the inputs as
given, next to scipy and torch on the same inputs, checks each error against
the bound in BOUNDS below, and writes docs/ACCURACY.md (``--out -``: stdout;
progress goes to stderr).  About 2-3 minutes on 2 cores.  torch is optional
(its columns then read "-").
"""
import argparse
import contextlib
import io
import math
import os
import platform
import sys
import time

import mpmath as mp
import numpy as np
import scipy
import scipy.special as sp
import scipy.stats as st

import klkit as kk

mp.mp.dps = 50

# ---------------------------------------------------------------------------
# Promised error bounds, keyed by function and input dtype.
#
# THESE MUST MATCH THE DOCSTRINGS (help(klkit.<function>)): when a docstring's
# accuracy statement changes, change the entry here.  Each entry is
# (kind, value, source):
#   ("ulp", k)        |error| <= k ulp of the result dtype at the exact value
#   ("ulp_scale", k)  |error| <= k ulp of |m| + log1p(s) (m: the maximum,
#                     s: the sum of exp(x_i - m) over the other elements)
#   ("rel", r)        relative error <= r
#   ("abs1p", a)      |error| <= a (1 + |value|)
#   ("softmax", k)    relative error <= (k + |x_i - m| + (R + n/16384) log1p(s)) eps
#                     of the result dtype (R: max - min of the finite x, n: the length)
#   ("lse", k)        |error| <= eps (k B + (k + k R + n/16384) log1p(s)) + n d, with
#                     B = |m| (logsumexp) or |x_i - m| (log_softmax), eps and d the
#                     machine epsilon and smallest subnormal of the result dtype
#   ("range", k)      |error| <= (k + 2 R) eps |exact| + 8 n (1 + R) d (R: the largest
#                     max - min of the finite scaled logits of p and q)
#   ("sum", None)     |error| <= 1/2 ulp + (n/16 + n/4096 + 4) 2^-53 sum|x_i|
#                     (segment_mean: the second term divided by n)
#   ("seq", None)     per-token bound of kl_estimate summed over the tokens,
#                     plus the ("sum") bound over the estimates
#   ("exact", 0)      no error
# source "doc": stated in the docstring; "measured": the docstring gives no
# figure ("a few ulp", or nothing for that dtype), so the value is this
# suite's measured maximum rounded up to a clean figure, a regression guard
# rather than a promise.  Relative errors divide by max(|exact|, the smallest
# normal number of the result dtype).
# ---------------------------------------------------------------------------
DTYPES = ("float16", "bfloat16", "float32", "float64")


def _all(kind, value, source="doc"):
    return {d: (kind, value, source) for d in DTYPES}


def _lo_hi(lo, hi):
    """lo for the float16 / bfloat16 / float32 inputs, hi for float64."""
    return {"float16": lo, "bfloat16": lo, "float32": lo, "float64": hi}


BOUNDS = {
    # "|error| <= eps (2 |m| + (2 + 2 R + n/16384) log1p(s)) + n d"
    "logsumexp": _all("lse", 2),
    # "|error| <= eps (2 |x_i - m| + (2 + 2 R + n/16384) log1p(s)) + n d"
    "log_softmax": _all("lse", 2),
    # "relative error <= (2 + |x_i - m| + (R + n/16384) log1p(s)) eps"
    "softmax": _all("softmax", 2),
    # "|error| <= (4 + 2 R) eps |H| + 8 n (1 + R) d" (kind="logits"), the same for the
    # other divergences with R the larger range of the two rows
    "entropy": _all("range", 4),
    "cross_entropy": _all("range", 4),
    "kl_div": _all("range", 4),
    "js_div": _all("range", 4),
    # "|error| <= 5e-7 (1 + |value|) for float32, bfloat16 and float16 logits ...
    #  <= 1e-14 (1 + |value|) for float64, for log-probs, entropy and lse alike"
    "token_logprobs": _lo_hi(("abs1p", 5e-7, "doc"), ("abs1p", 1e-14, "doc")),
    "token_logprobs (entropy)": _lo_hi(("abs1p", 5e-7, "doc"), ("abs1p", 1e-14, "doc")),
    "token_logprobs (lse)": _lo_hi(("abs1p", 5e-7, "doc"), ("abs1p", 1e-14, "doc")),
    # "with the accuracy of token_logprobs per position"
    "softmax_cross_entropy": _lo_hi(("abs1p", 5e-7, "doc"), ("abs1p", 1e-14, "doc")),
    "segment_sum": _all("sum", None),
    "segment_mean": _all("sum", None),                 # "error bound as segment_sum"
    "segment_max": _all("exact", 0),                   # "(exact)"
    # as logsumexp: "|error| <= eps (2 |m| + (2 + 2 R + n/16384) log1p(s)) + n d"
    "segment_logsumexp": _all("lse", 2),
    # k1, abs: d rounded once; k2: "<= 2 ulp"; k3: "<= 3 ulp" (16-bit input works in
    # float32, as float32 input)
    "kl_estimate k1": _all("ulp", 0.5),
    "kl_estimate k2": _all("ulp", 2),
    "kl_estimate k3": _all("ulp", 3),
    "kl_estimate abs": _all("ulp", 0.5),
    # "the per-token error of kl_estimate plus the sum's bound"
    "seq_kl k1 sum": _all("seq", None),
    "seq_kl k3 sum": _all("seq", None),
    "seq_kl k3 mean": _all("seq", None),
}

# per-token ulp bounds of kl_estimate (working precision), used by seq_kl's
KL_EST_ULP = {"k1": (0.5, 0.5), "k2": (2.0, 2.0), "k3": (3.0, 3.0), "abs": (0.5, 0.5)}


# ---------------------------------------------------------------------------
# the figures quoted in the README (default mode)
# ---------------------------------------------------------------------------
def mp_lse(x):
    return mp.log(mp.fsum(mp.exp(mp.mpf(float(v))) for v in x))


def mp_kl(x, y, t=1.0):
    x = [mp.mpf(float(v)) / t for v in x]
    y = [mp.mpf(float(v)) / t for v in y]
    # the normalisers of the exact x/t (mp_lse would round them to doubles)
    lx, ly = (mp.log(mp.fsum(mp.exp(v) for v in z)) for z in (x, y))
    return mp.fsum(mp.exp(a - lx) * ((a - lx) - (b - ly)) for a, b in zip(x, y))


def ulps(got, exact, dtype):
    return abs(float(got) - float(exact)) / float(np.spacing(abs(dtype(float(exact)))))


def rel(got, exact):
    return abs(float(got) - float(exact)) / abs(float(exact))


def kl_random_rows(n_rows, seed):
    """Worst relative error of kl_div over random logit rows: 2000-7000
    logits of scale 0.1-10, Q = P + an offset + N(0, sig^2) noise with sig
    in 1e-6..3, temperature 1 or 0.3..3, both dtypes."""
    worst = {}
    for x, y, t in kl_sweep_rows(n_rows, seed):
        for dt in (np.float32, np.float64):
            xd, yd = x.astype(dt), y.astype(dt)
            e = mp_kl(xd, yd, t)
            worst[dt.__name__] = max(worst.get(dt.__name__, 0.0), rel(kk.kl_div(xd, yd, temperature=t), e))
    for k, v in worst.items():
        print(f"KL {n_rows} random rows (any spread, temperatures) {k}: klkit worst {v:.1e} relative")


def kl_sweep_rows(n_rows, seed):
    rng = np.random.default_rng(seed)
    for _ in range(n_rows):
        n = int(rng.integers(2000, 7000))
        scale, sig = 10 ** rng.uniform(-1, 1), 10 ** rng.uniform(-6, 0.5)
        off = rng.choice([0.0, sig * rng.uniform(0, 1), sig * rng.uniform(0, 5), rng.uniform(-3, 3)])
        t = float(rng.choice([1.0, 10 ** rng.uniform(-0.5, 0.5)]))
        x = scale * rng.normal(size=n)
        y = x + off + sig * rng.normal(size=n)
        yield x, y, t


def readme_figures(args):
    rng = np.random.default_rng(7)
    worst = {}
    for _ in range(40):
        x = rng.normal(0, 10 ** rng.uniform(-2, 2), int(rng.integers(1, 3000)))
        for dt in (np.float32, np.float64):
            xd = x.astype(dt)
            e = mp_lse(xd)
            i = int(np.argmax(xd))
            for key, got, exact in (("klkit logsumexp", kk.logsumexp(xd), e),
                                    ("scipy logsumexp", sp.logsumexp(xd), e),
                                    ("klkit log_softmax[max]", kk.log_softmax(xd)[i],
                                     mp.mpf(float(xd[i])) - e)):
                k = f"{key} {dt.__name__}"
                worst[k] = max(worst.get(k, 0.0), ulps(got, exact, dt))
    for k, v in worst.items():
        print(f"{k:36s} worst {v:.2f} ulp")

    try:
        import torch
    except ImportError:
        torch = None
    for eps in (1e-3, 1e-6, 1e-8):
        for dt in (np.float64, np.float32):
            x = rng.normal(0, 3, 4096).astype(dt)
            y = (x.astype(np.float64) + eps * rng.normal(size=4096)).astype(dt)
            e = mp_kl(x, y)
            recipe = np.sum(sp.softmax(x.astype(np.float64)) * (sp.log_softmax(x) - sp.log_softmax(y)))
            line = (f"KL eps={eps:g} {dt.__name__:7s} exact {float(e):.3e}: klkit {rel(kk.kl_div(x, y), e):.1e}"
                    f"  scipy recipe {rel(recipe, e):.1e}")
            if torch is not None:
                tx, ty = torch.from_numpy(x), torch.from_numpy(y)
                tkl = torch.nn.functional.kl_div(torch.log_softmax(ty, -1), torch.log_softmax(tx, -1),
                                                 log_target=True, reduction="sum")
                line += f"  torch {rel(float(tkl), e):.1e}"
            print(line + "  (relative errors)")

    x = np.array([0.0] + [-30.0] * 1000)
    for dt in (np.float32, np.float64):
        xd = x.astype(dt)
        lx = mp_lse(xd)
        e = -mp.fsum(mp.exp(mp.mpf(float(v)) - lx) * (mp.mpf(float(v)) - lx) for v in xd)
        print(f"entropy near one-hot {dt.__name__}: klkit {rel(kk.entropy(xd), e):.1e}"
              f"  scipy.stats {rel(st.entropy(sp.softmax(xd)), e):.1e}  (relative errors)")

    kl_random_rows(args.kl_rows, args.seed)


# ---------------------------------------------------------------------------
# exact values and error measures (--markdown)
# ---------------------------------------------------------------------------
def np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def result_dtype(name):
    return np.dtype(np.float64 if name == "float64" else np.float32)


def dd(v):
    """An mpf as a double-double (hi, lo): hi + lo is v to ~2^-106."""
    h = float(v)
    return h, float(v - h)


def dd_list(vals):
    hs = np.array([float(v) for v in vals], dtype=np.float64)
    ls = np.array([float(v - h) for v, h in zip(vals, hs.tolist())], dtype=np.float64)
    return hs, ls


def two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def dd_add(ah, al, bh, bl):
    """(ah + al) + (bh + bl) in double-double arithmetic (~2^-106 relative)."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    e = e + t
    h = s + e
    e = e - (h - s)
    e = e + f
    s = h + e
    return s, e - (s - h)


def abs_err(got, hi, lo=0.0):
    """|got - (hi + lo)|; NaN results count as infinitely wrong."""
    g = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        e = np.abs((g - hi) - lo)
    return np.where(np.isnan(e), np.inf, e)


def ulp(v, res):
    """Spacing of the result dtype at |v| (gradual underflow included)."""
    fi = np.finfo(res)
    a = np.abs(np.asarray(v, dtype=np.float64))
    _, e = np.frexp(a)
    e = np.where(a == 0, fi.minexp, np.maximum(e.astype(np.int64) - 1, fi.minexp))
    return np.ldexp(1.0, (e - fi.nmant).astype(np.int32))


def rel_den(hi, res):
    return np.maximum(np.abs(hi), np.finfo(res).tiny)


class Row:
    """Exact quantities of the logit row y = x / t, x as given (exact in
    float64), t a float: the maximum m, e_k = exp(y_k - m) per distinct
    value, S = sum exp(y - m) and l1p = log1p(S - 1), with one occurrence
    of the maximum left out of the log1p argument (so a dominant maximum
    with tiny others, [0, -c x n], gets log1p(n exp(-c)) to full precision).
    m and l1p are kept apart: log P_i = (y_i - m) - l1p does not lose l1p
    when it is below 1e-50 |m|."""

    def __init__(self, x, t=1.0):
        x64 = np.asarray(x, dtype=np.float64).ravel()
        u, inv, cnt = np.unique(x64, return_inverse=True, return_counts=True)
        self.x64, self.u, self.inv, self.cnt, self.t = x64, u, inv.ravel(), cnt, t
        y = [mp.mpf(v) for v in u.tolist()]
        if t != 1.0:
            tm = mp.mpf(t)
            y = [v / tm for v in y]
        m = y[-1]
        self.d = [v - m for v in y]                # y_k - m, exact for t == 1
        e = [mp.exp(v) for v in self.d[:-1]] + [mp.mpf(1)]
        rest = mp.fsum(c * ev for c, ev in zip(cnt[:-1].tolist(), e[:-1])) + (int(cnt[-1]) - 1)
        self.y, self.e, self.m = y, e, m
        self.S = 1 + rest
        self.l1p = mp.log1p(rest)
        self.L = m + self.l1p
        self.scale = float(abs(m) + self.l1p)
        self._H = None

    @property
    def H(self):
        """Entropy sum_k p_k (l1p - (y_k - m))."""
        if self._H is None:
            self._H = mp.fsum(c * ev * (self.l1p - dv)
                              for c, ev, dv in zip(self.cnt.tolist(), self.e, self.d)) / self.S
        return self._H

    def logp(self, k):
        """log P of the distinct value k."""
        return self.d[k] - self.l1p

    def log_softmax_dd(self):
        """(u_k - m) - l1p per element (t == 1), double-double."""
        assert self.t == 1.0
        s, e = two_sum(self.u, -float(self.m))
        lh, ll = dd(-self.l1p)
        hi, lo = dd_add(s, e, np.full_like(s, lh), np.full_like(s, ll))
        return hi[self.inv], lo[self.inv]

    def softmax_dd(self):
        hi, lo = dd_list([ev / self.S for ev in self.e])
        return hi[self.inv], lo[self.inv]

    def logprob(self, i):
        return self.logp(self.inv[i])


def row_stats(row):
    """(n, R, log1p(s), |m|) of a Row for the bounds: R = max - min of its finite
    scaled logits (0 where there is none)."""
    y = row.x64[np.isfinite(row.x64)] / row.t
    rng_ = float(y.max() - y.min()) if y.size else 0.0
    return row.x64.size, rng_, float(row.l1p), abs(float(row.m))


def pair_exact(rx, ry, js=True):
    """KL(P||Q), H(P, Q) and JS (beta 1/2) of the rows' softmaxes, summed
    over the distinct (x_i, y_i) pairs."""
    key = rx.inv.astype(np.int64) * len(ry.u) + ry.inv
    uk, cnt = np.unique(key, return_counts=True)
    ia, ib = (uk // len(ry.u)).tolist(), (uk % len(ry.u)).tolist()
    half = mp.mpf(1) / 2
    kl, ce, jsd = [], [], []
    for i, j, c in zip(ia, ib, cnt.tolist()):
        a = rx.e[i] * c
        lq = ry.logp(j)
        kl.append(a * (rx.logp(i) - lq))
        ce.append(-a * lq)
        if js:
            # P log(P/M) + Q log(Q/M), M = (P + Q)/2, P/M = 1 + r, Q/M = 1 - r
            p, q = rx.e[i] / rx.S, ry.e[j] / ry.S
            r = (p - q) / (p + q)
            if abs(r) < half:
                t = p * mp.log1p(r) + q * mp.log1p(-r)
            else:
                t = p * mp.log(2 * p / (p + q)) + q * mp.log(2 * q / (p + q))
            jsd.append(c * t)
    out = {"kl": mp.fsum(kl) / rx.S, "ce": mp.fsum(ce) / rx.S}
    if js:
        out["js"] = mp.fsum(jsd) / 2
    return out


# ---------------------------------------------------------------------------
# the input suite (fixed seeds)
# ---------------------------------------------------------------------------
SCALES = (0.1, 1.0, 10.0, 100.0)
SHORT = (1, 2, 7)
MEDIUM = (1000, 2048, 2049)
LONG = 70000
LONG_SCALES = (1.0, 100.0)
SHORT_REPS = 4
DOM_C = (1, 10, 20, 30, 40, 60, 100)
DOM_N = (1, 100, 256, 1000, 2048, 3000, 70000)
TEMPS = (0.5, 2.0)
EPS = (1e-3, 1e-6, 1e-8)
N_KLEST = 3000


def dense_rows():
    """(name, float64 base row): cast to each dtype; rows that do not fit a dtype are skipped for it."""
    rng = np.random.default_rng(1)
    rows = []
    for s in SCALES:
        for n in SHORT:
            for r in range(SHORT_REPS):
                rows.append((f"N(0, {s:g}²), n={n} #{r + 1}", s * rng.normal(size=n)))
        for n in MEDIUM:
            rows.append((f"N(0, {s:g}²), n={n}", s * rng.normal(size=n)))
    for s in LONG_SCALES:
        rows.append((f"N(0, {s:g}²), n={LONG}", s * rng.normal(size=LONG)))
    for c in DOM_C:
        for n in DOM_N:
            rows.append((f"[0] + [-{c}] * {n}", np.array([0.0] + [-float(c)] * n)))
    for n in (1000, 2049):
        z = rng.normal(size=n)
        rows += [(f"N(0, 1) + 1e4, n={n}", z + 1e4), (f"N(0, 1) - 1e4, n={n}", z - 1e4),
                 (f"N(0, 1e4²), n={n}", 1e4 * rng.normal(size=n)),
                 (f"N(0, 1) + 1e30, n={n}", z + 1e30), (f"N(0, 1) - 1e30, n={n}", z - 1e30)]
    for n in (1000, 2049):
        for spike in (20.0, 40.0):
            z = rng.normal(size=n)
            z[int(rng.integers(n))] += spike
            rows.append((f"one-hot: N(0, 1), one +{spike:g}, n={n}", z))
    return rows


TEMP_ROWS = ("N(0, 1²), n=7 #1", "N(0, 1²), n=1000", "N(0, 10²), n=2049",
             "[0] + [-30] * 3000", "N(0, 1) + 1e4, n=1000", "one-hot: N(0, 1), one +20, n=1000")


def pair_rows(kl_rows, seed):
    """(name, x, y, t, js): logit rows of P and Q."""
    rng = np.random.default_rng(2)
    pairs = []
    for eps in EPS:
        for n in (7, 1000, 2049):
            x = rng.normal(0, 3, n)
            pairs.append((f"close, eps {eps:g}, n={n}", x, x + eps * rng.normal(size=n), 1.0, True))
    x = rng.normal(0, 3, 1000)
    pairs.append(("close, eps 1e-06, Q offset +0.5, n=1000", x, x + 0.5 + 1e-6 * rng.normal(size=1000), 1.0, True))
    x = rng.normal(0, 3, LONG)
    pairs.append((f"close, eps 1e-06, n={LONG}", x, x + 1e-6 * rng.normal(size=LONG), 1.0, False))
    for s in (1.0, 10.0):
        for n in (7, 2049):
            pairs.append((f"independent N(0, {s:g}²), n={n}", s * rng.normal(size=n), s * rng.normal(size=n), 1.0, True))
    x = rng.normal(size=1000)
    x[3] += 30
    pairs.append(("one-hot P, Q = P + 1e-3 N(0, 1), n=1000", x, x + 1e-3 * rng.normal(size=1000), 1.0, True))
    y = rng.normal(size=1000)
    y[500] += 30
    pairs.append(("one-hot P and Q, different maxima, n=1000", x, y, 1.0, True))
    for t in TEMPS:
        x = rng.normal(0, 3, 1000)
        pairs.append((f"close, eps 1e-06, n=1000, T={t:g}", x, x + 1e-6 * rng.normal(size=1000), t, True))
        pairs.append((f"independent N(0, 1), n=2049, T={t:g}", rng.normal(size=2049), rng.normal(size=2049), t, True))
    pairs.append(("flat P, y ~ U(-117, 98), n=4096", np.zeros(4096), rng.uniform(-117, 98, 4096), 1.0, True))
    for k, (x, y, t) in enumerate(kl_sweep_rows(kl_rows, seed)):
        pairs.append((f"random pair {k + 1} (seed {seed}), n={x.size}, T={t:.3g}", x, y, t, False))
    return pairs


def segment_layout(rng, n_rand, hi, long):
    lengths = [1, 2, 7, 0] + rng.integers(0, hi, n_rand).tolist() + [4095, 4096, 4097, 0] + list(long)
    rng.shuffle(lengths)
    lengths = [0] + lengths + [0]
    return np.array(lengths), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def segment_suite():
    rng = np.random.default_rng(3)
    lengths, offsets = segment_layout(rng, 24, 600, (30000,))
    total = int(offsets[-1])
    sets = [("N(0, 1)", rng.normal(size=total)), ("Exp(1)", rng.exponential(size=total)),
            ("N(0, 10²)", 10 * rng.normal(size=total))]
    return lengths, offsets, sets


def klest_points(rng, n):
    logp = -rng.exponential(3.0, n)
    r = rng.choice([-1.0, 1.0], n) * 10 ** rng.uniform(-8, math.log10(30), n)
    return logp, logp + r          # d = logp - ref_logp = -r


def seqkl_suite():
    rng = np.random.default_rng(4)
    lengths, offsets = segment_layout(rng, 24, 400, (9000,))
    logp, ref = klest_points(rng, int(offsets[-1]))
    return lengths, offsets, logp, ref


def r_band(r):
    a = abs(r)
    for lo, hi in ((0, 1e-4), (1e-4, 1e-2), (1e-2, 1), (1, 31)):
        if lo <= a < hi:
            return f"r in ±[{lo:g}, {hi:g})"
    return "r = 0"


# ---------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------
class Results:
    def __init__(self):
        self.recs = {}      # (func, dtype) -> list of (case, klkit err, ratio to bound, scipy err, torch err)
        self.units = {}

    def add(self, func, dtype, unit, case, k, ratio, s=None, t=None, hi=None):
        """hi: the exact values, to find the ratio over results that are
        normal numbers of the result dtype (None: all of them are)."""
        self.units[func] = unit
        f = lambda v: None if v is None else float(np.max(v)) if np.size(v) else 0.0
        ratio = np.asarray(ratio, dtype=np.float64)
        normal = ratio
        if hi is not None:
            sel = np.broadcast_to(np.abs(np.asarray(hi)) >= np.finfo(result_dtype(dtype)).tiny, ratio.shape)
            normal = ratio[sel]
        self.recs.setdefault((func, dtype), []).append((case, f(k), f(ratio), f(s), f(t), f(normal)))


def ratio_of(func, dtype, err, hi, aux=None):
    kind, val, _ = BOUNDS[func][dtype]
    res = result_dtype(dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "ulp":
            r = err / (val * ulp(hi, res))
        elif kind == "ulp_scale":
            r = err / (val * ulp(aux, res))
        elif kind == "rel":
            r = err / rel_den(hi, res) / val
        elif kind == "abs1p":
            r = err / (val * (1 + np.abs(hi)))
        elif kind == "softmax":
            r = err / ((val + aux) * np.finfo(res).eps * rel_den(hi, res))
        elif kind == "lse":
            base, n, rng_, l1p = aux
            fi = np.finfo(res)
            r = err / (float(fi.eps) * (val * base + (val + val * rng_ + n / 16384) * l1p)
                       + n * float(fi.smallest_subnormal))
        elif kind == "range":
            n, rng_ = aux
            fi = np.finfo(res)
            r = err / ((val + 2 * rng_) * float(fi.eps) * np.abs(hi)
                       + 8 * n * (1 + rng_) * float(fi.smallest_subnormal))
        elif kind in ("sum", "seq"):
            r = err / aux
        elif kind == "exact":
            r = np.where(err == 0, 0.0, np.inf)
        else:
            raise ValueError(kind)
    return np.where(err == 0, 0.0, r)


class Ctx:
    """Per-dtype conversions for klkit (inputs as given) and the references
    (16-bit inputs widened to float32, as one would before calling them)."""

    def __init__(self, dtype, torch):
        self.name, self.dt, self.res, self.torch = dtype, np_dtype(dtype), result_dtype(dtype), torch

    def cast(self, a):
        with np.errstate(over="ignore"):
            x = np.asarray(a, dtype=np.float64).astype(self.dt)
        return x if np.all(np.isfinite(x.astype(np.float64))) else None

    def ref(self, x):
        return x.astype(self.res)

    def t(self, x):
        return None if self.torch is None else self.torch.from_numpy(np.ascontiguousarray(self.ref(x)))


def tval(v):
    return None if v is None else np.asarray(v.detach().numpy(), dtype=np.float64)


def measure_dense(R, ctx, rows, log):
    name = ctx.name
    torch = ctx.torch
    res = ctx.res
    by_name = {}
    for case, base in rows:
        x = ctx.cast(base)
        if x is None:
            continue
        row = Row(x)
        by_name[case] = (x, row)
        xr, tx = ctx.ref(x), ctx.t(x)
        # logsumexp
        lh, ll = dd(row.L)
        u = ulp(lh, res)
        k = abs_err(kk.logsumexp(x), lh, ll)
        n_, rg, l1p, am = row_stats(row)
        R.add("logsumexp", name, "ulp", case, k / u, ratio_of("logsumexp", name, k, lh, (am, n_, rg, l1p)),
              abs_err(sp.logsumexp(xr), lh, ll) / u,
              None if torch is None else abs_err(tval(torch.logsumexp(tx, -1)), lh, ll) / u, hi=row.scale)
        # log_softmax
        hi, lo = row.log_softmax_dd()
        u = ulp(hi, res)
        k = abs_err(kk.log_softmax(x), hi, lo)
        dx = np.abs(row.x64 - float(row.m))
        R.add("log_softmax", name, "ulp", case, k / u,
              ratio_of("log_softmax", name, k, hi, (dx, n_, rg, l1p)),
              abs_err(sp.log_softmax(xr), hi, lo) / u,
              None if torch is None else abs_err(tval(torch.log_softmax(tx, -1)), hi, lo) / u, hi=hi)
        # softmax
        hi, lo = row.softmax_dd()
        u = ulp(hi, res)
        k = abs_err(kk.softmax(x), hi, lo)
        dx = np.abs(row.x64 - float(row.m))
        R.add("softmax", name, "ulp", case, k / u,
              ratio_of("softmax", name, k, hi, dx + (rg + n_ / 16384) * l1p),
              abs_err(sp.softmax(xr), hi, lo) / u,
              None if torch is None else abs_err(tval(torch.softmax(tx, -1)), hi, lo) / u, hi=hi)
        # entropy
        measure_entropy(R, ctx, case, x, row)
        measure_tokens(R, ctx, case, x, row, 1.0)
    for t in TEMPS:
        for case in TEMP_ROWS:
            if case not in by_name:
                continue
            x, _ = by_name[case]
            row = Row(x, t)
            measure_entropy(R, ctx, f"{case} T={t:g}", x, row, t)
            measure_tokens(R, ctx, f"{case} T={t:g}", x, row, t)
    log(f"  dense rows {name}")


def measure_entropy(R, ctx, case, x, row, t=1.0):
    name, res, torch = ctx.name, ctx.res, ctx.torch
    hh, hl = dd(row.H)
    den = rel_den(hh, res)
    k = abs_err(kk.entropy(x, temperature=t), hh, hl)
    xr = ctx.ref(x) / res.type(t)
    s = abs_err(st.entropy(sp.softmax(xr)), hh, hl) / den
    tr = None
    if torch is not None:
        tr = abs_err(tval(torch.distributions.Categorical(logits=ctx.t(x) / t).entropy()), hh, hl) / den
    n_, rg, _, _ = row_stats(row)
    R.add("entropy", name, "relative", case, k / den, ratio_of("entropy", name, k, hh, (n_, rg)), s, tr,
          hi=hh)


def measure_tokens(R, ctx, case, x, row, t):
    name, res, torch = ctx.name, ctx.res, ctx.torch
    n = x.size
    rng = np.random.default_rng(n)
    tg = [int(np.argmax(x)), int(np.argmin(x))] + rng.integers(0, n, 4).tolist()
    tg = np.array(sorted(set(tg)), dtype=np.int64)
    batch = np.repeat(x[None, :], tg.size, axis=0)
    out = kk.token_logprobs(batch, tg, temperature=t, return_entropy=True, return_lse=True)
    exact = [dd(row.logprob(i)) for i in tg.tolist()]
    hi = np.array([e[0] for e in exact])
    lo = np.array([e[1] for e in exact])
    u = ulp(hi, res)
    xr = ctx.ref(batch) / res.type(t)
    rows = np.arange(tg.size)
    tb = None if torch is None else ctx.t(batch) / t
    k = abs_err(out.logprobs, hi, lo)
    R.add("token_logprobs", name, "ulp", case, k / u, ratio_of("token_logprobs", name, k, hi),
          abs_err(sp.log_softmax(xr, axis=-1)[rows, tg], hi, lo) / u,
          None if torch is None else
          abs_err(tval(torch.log_softmax(tb, -1).gather(-1, torch.from_numpy(tg)[:, None])[:, 0]), hi, lo) / u,
          hi=hi)
    hh, hl = dd(row.H)
    den = rel_den(hh, res)
    k = abs_err(out.entropy, hh, hl)
    R.add("token_logprobs (entropy)", name, "relative", case, k / den,
          ratio_of("token_logprobs (entropy)", name, k, hh),
          abs_err(st.entropy(sp.softmax(xr, axis=-1), axis=-1), hh, hl) / den,
          None if torch is None else
          abs_err(tval(torch.distributions.Categorical(logits=tb).entropy()), hh, hl) / den, hi=hh)
    lh, ll = dd(row.L)
    ul = ulp(lh, res)
    k = abs_err(out.lse, lh, ll)
    R.add("token_logprobs (lse)", name, "ulp", case, k / ul, ratio_of("token_logprobs (lse)", name, k, lh),
          abs_err(sp.logsumexp(xr, axis=-1), lh, ll) / ul,
          None if torch is None else abs_err(tval(torch.logsumexp(tb, -1)), lh, ll) / ul, hi=lh)
    if t == 1.0:
        k = abs_err(kk.softmax_cross_entropy(batch, tg, reduction="none"), -hi, -lo)
        R.add("softmax_cross_entropy", name, "ulp", case, k / u, ratio_of("softmax_cross_entropy", name, k, -hi),
              abs_err(-sp.log_softmax(xr, axis=-1)[rows, tg], -hi, -lo) / u,
              None if torch is None else
              abs_err(tval(torch.nn.functional.cross_entropy(tb, torch.from_numpy(tg), reduction="none")),
                      -hi, -lo) / u, hi=hi)


def pair_results(ctx, x, y, t, js):
    """{key: (klkit, scipy, torch or None)} for one pair of logit rows."""
    from scipy.spatial.distance import jensenshannon
    res, torch = ctx.res, ctx.torch
    xr, yr = ctx.ref(x) / res.type(t), ctx.ref(y) / res.type(t)
    P, Q = sp.softmax(xr), sp.softmax(yr)
    with np.errstate(all="ignore"):
        out = {"kl": [kk.kl_div(x, y, temperature=t), np.sum(sp.rel_entr(P, Q)), None],
               "ce": [kk.cross_entropy(x, y, temperature=t), -np.sum(P * sp.log_softmax(yr)), None]}
        if js:
            out["js"] = [kk.js_div(x, y, temperature=t), jensenshannon(P, Q) ** 2, None]
    if torch is not None:
        F = torch.nn.functional
        tx, ty = ctx.t(x) / t, ctx.t(y) / t
        out["kl"][2] = tval(F.kl_div(torch.log_softmax(ty, -1), torch.log_softmax(tx, -1),
                                     log_target=True, reduction="sum"))
        out["ce"][2] = tval(F.cross_entropy(ty[None], torch.softmax(tx, -1)[None]))
    return out


def measure_pairs(R, ctx, pairs, log):
    name, res = ctx.name, ctx.res
    for case, bx, by, t, js in pairs:
        x, y = ctx.cast(bx), ctx.cast(by)
        if x is None or y is None:
            continue
        rx, ry = Row(x, t), Row(y, t)
        ex = pair_exact(rx, ry, js)
        aux = (x.size, max(row_stats(rx)[1], row_stats(ry)[1]))
        got = pair_results(ctx, x, y, t, js)
        for func, key in (("kl_div", "kl"), ("cross_entropy", "ce"), ("js_div", "js")):
            if key not in ex:
                continue
            hi, lo = dd(ex[key])
            den = rel_den(hi, res)
            k, s, tr = got[key]
            k = abs_err(k, hi, lo)
            R.add(func, name, "relative", case, k / den, ratio_of(func, name, k, hi, aux),
                  abs_err(s, hi, lo) / den, None if tr is None else abs_err(tr, hi, lo) / den, hi=hi)
    log(f"  pairs {name}")


def sum_bound(hi, n, sabs, res, mean=False):
    return 0.5 * ulp(hi, res) + (n / 16 + n / 4096 + 4) * 2.0 ** -53 * sabs / (n if mean else 1)


def measure_segments(R, ctx, seg, log):
    name, res, torch = ctx.name, ctx.res, ctx.torch
    lengths, offsets, sets = seg
    for sname, base in sets:
        v = ctx.cast(base)
        if v is None:
            continue
        v64 = v.astype(np.float64)
        got = {f: np.asarray(getattr(kk, f)(v, offsets), dtype=np.float64)
               for f in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp")}
        tor = {}
        if torch is not None:
            tl = torch.from_numpy(lengths)
            tv = ctx.t(v)
            tor = {f: tval(torch.segment_reduce(tv, r, lengths=tl))
                   for f, r in (("segment_sum", "sum"), ("segment_mean", "mean"), ("segment_max", "max"))}
        for j, n in enumerate(lengths.tolist()):
            seg_v = v64[offsets[j]:offsets[j + 1]]
            case = f"{sname}, length {n}"
            if n == 0:
                for f, want in (("segment_sum", 0.0), ("segment_mean", np.nan), ("segment_max", -np.inf),
                                ("segment_logsumexp", -np.inf)):
                    g = got[f][j]
                    ok = (np.isnan(g) and np.isnan(want)) or g == want
                    R.add(f, name, "ulp" if f == "segment_logsumexp" else "relative", case + " (empty)",
                          0.0 if ok else np.inf, 0.0 if ok else np.inf)
                continue
            sh = math.fsum(seg_v)
            sl = math.fsum(np.append(seg_v, -sh))
            sabs = math.fsum(np.abs(seg_v))
            for f, hi, lo, mean in (("segment_sum", sh, sl, False),
                                    ("segment_mean", *dd((mp.mpf(sh) + mp.mpf(sl)) / n), True)):
                den = rel_den(hi, res)
                k = abs_err(got[f][j], hi, lo)
                b = sum_bound(hi, n, sabs, res, mean)
                R.add(f, name, "relative", case, k / den, ratio_of(f, name, k, hi, b), None,
                      None if f not in tor else abs_err(tor[f][j], hi, lo) / den, hi=hi)
            mx = float(np.max(seg_v))
            k = abs_err(got["segment_max"][j], mx)
            R.add("segment_max", name, "relative", case, k / rel_den(mx, res), ratio_of("segment_max", name, k, mx),
                  None, None if not tor else abs_err(tor["segment_max"][j], mx) / rel_den(mx, res))
            row = Row(seg_v)
            lh, ll = dd(row.L)
            k = abs_err(got["segment_logsumexp"][j], lh, ll)
            R.add("segment_logsumexp", name, "ulp", case, k / ulp(lh, res),
                  ratio_of("segment_logsumexp", name, k, lh, (row_stats(row)[3],) + row_stats(row)[:3]),
                  hi=row.scale)
    log(f"  segments {name}")


def k_exact(est, d):
    if est == "k1":
        return d
    if est == "k2":
        return d * d / 2
    if est == "k3":
        return mp.expm1(-d) + d
    return abs(d)


def measure_klest(R, ctx, pts, seqs, log):
    name, res = ctx.name, ctx.res
    logp, ref = ctx.cast(pts[0]), ctx.cast(pts[1])
    d = [mp.mpf(a) - mp.mpf(b) for a, b in zip(logp.astype(np.float64).tolist(), ref.astype(np.float64).tolist())]
    for est in ("k1", "k2", "k3", "abs"):
        func = f"kl_estimate {est}"
        hi, lo = dd_list([k_exact(est, v) for v in d])
        k = abs_err(kk.kl_estimate(logp, ref, est), hi, lo)
        ratio = ratio_of(func, name, k, hi)
        relerr = k / rel_den(hi, res)
        bands = np.array([r_band(float(-v)) for v in d])
        for b in np.unique(bands):
            sel = bands == b
            R.add(func, name, "relative", f"{sel.sum()} points, {b}", relerr[sel], ratio[sel], hi=hi[sel])
    lengths, offsets, blogp, bref = seqs
    logp, ref = ctx.cast(blogp), ctx.cast(bref)
    d = [mp.mpf(a) - mp.mpf(b) for a, b in zip(logp.astype(np.float64).tolist(), ref.astype(np.float64).tolist())]
    for est, red in (("k1", "sum"), ("k3", "sum"), ("k3", "mean")):
        func = f"seq_kl {est} {red}"
        kv = [k_exact(est, v) for v in d]
        kh = np.array([float(v) for v in kv])
        tok_ulp = KL_EST_ULP[est][1 if name == "float64" else 0] * ulp(kh, res)
        got = np.asarray(kk.seq_kl(logp, ref, offsets, estimator=est, reduce=red), dtype=np.float64)
        for j, n in enumerate(lengths.tolist()):
            a, b = offsets[j], offsets[j + 1]
            case = f"{n} tokens"
            if n == 0:
                ok = got[j] == 0.0
                R.add(func, name, "relative", case + " (empty)", 0.0 if ok else np.inf, 0.0 if ok else np.inf)
                continue
            e = mp.fsum(kv[a:b])
            if red == "mean":
                e = e / n
            hi, lo = dd(e)
            k = abs_err(got[j], hi, lo)
            sabs = float(np.sum(np.abs(kh[a:b])))
            bound = (float(np.sum(tok_ulp[a:b])) + (n / 16 + n / 4096 + 4) * 2.0 ** -53 * sabs) \
                / (n if red == "mean" else 1) + 0.5 * ulp(hi, res)
            R.add(func, name, "relative", case, k / rel_den(hi, res), ratio_of(func, name, k, hi, bound), hi=hi)
    log(f"  kl_estimate / seq_kl {name}")


# ---------------------------------------------------------------------------
# the document
# ---------------------------------------------------------------------------
FAMILIES = [
    ("Log-sum-exp and normalisation", "ulp of the result dtype at the exact value",
     ["logsumexp", "log_softmax", "softmax"]),
    ("Entropy and divergences from logits", "relative error",
     ["entropy", "cross_entropy", "kl_div", "js_div"]),
    ("Per-token log-probabilities and loss", "ulp (log-probabilities, lse, loss) and relative error (entropy)",
     ["token_logprobs", "token_logprobs (lse)", "token_logprobs (entropy)", "softmax_cross_entropy"]),
    ("Segment reductions (packed values + offsets)", "relative error (sum, mean, max) and ulp (logsumexp)",
     ["segment_sum", "segment_mean", "segment_max", "segment_logsumexp"]),
    ("KL estimators from sampled-token log-probabilities", "relative error",
     ["kl_estimate k1", "kl_estimate k2", "kl_estimate k3", "kl_estimate abs",
      "seq_kl k1 sum", "seq_kl k3 sum", "seq_kl k3 mean"]),
]

COUNTERPARTS = {
    "logsumexp": ("`scipy.special.logsumexp`", "`torch.logsumexp`"),
    "log_softmax": ("`scipy.special.log_softmax`", "`torch.log_softmax`"),
    "softmax": ("`scipy.special.softmax`", "`torch.softmax`"),
    "entropy": ("`scipy.stats.entropy(softmax(x))`", "`Categorical(logits=x).entropy()`"),
    "cross_entropy": ("`-sum(softmax(x) * log_softmax(y))`",
                      "`F.cross_entropy(y, softmax(x))` (probability targets)"),
    "kl_div": ("`sum(rel_entr(softmax(x), softmax(y)))`",
               "`F.kl_div(log_softmax(y), log_softmax(x), log_target=True, reduction=\"sum\")`"),
    "js_div": ("`jensenshannon(softmax(x), softmax(y)) ** 2`", "-"),
    "token_logprobs": ("`log_softmax(x / T)[target]`", "`log_softmax(x / T).gather(...)`"),
    "token_logprobs (lse)": ("`logsumexp(x / T)`", "`torch.logsumexp(x / T)`"),
    "token_logprobs (entropy)": ("`entropy(softmax(x / T))`", "`Categorical(logits=x / T).entropy()`"),
    "softmax_cross_entropy": ("`-log_softmax(x)[target]`", "`F.cross_entropy(x, target, reduction=\"none\")`"),
    "segment_sum": ("-", "`torch.segment_reduce(v, \"sum\", lengths=...)`"),
    "segment_mean": ("-", "`torch.segment_reduce(v, \"mean\", lengths=...)`"),
    "segment_max": ("-", "`torch.segment_reduce(v, \"max\", lengths=...)`"),
}


def bound_text(func, dtype):
    kind, val, source = BOUNDS[func][dtype]
    txt = {"ulp": lambda: f"{val:g} ulp",
           "ulp_scale": lambda: f"{val:g} ulp of \\|m\\| + log1p(s)",
           "rel": lambda: f"{val:.0e}",
           "abs1p": lambda: f"{val:.0e} (1 + \\|v\\|) abs.",
           "softmax": lambda: f"({val:g} + \\|x - m\\| + (R + n/16384) log1p(s)) eps rel.",
           "lse": lambda: f"eps ({val:g} \\|{'x - m' if func == 'log_softmax' else 'm'}\\| + "
                          f"({val:g} + {val:g}R + n/16384) log1p(s)) + n δ abs.",
           "range": lambda: f"({val:g} + 2R) eps rel. + 8n(1 + R) δ",
           "sum": lambda: "½ ulp + (n/16 + n/4096 + 4) 2⁻⁵³ Σ\\|x\\|" + (" / n" if func == "segment_mean" else ""),
           "seq": lambda: "Σ per-token bound + sum bound",
           "exact": lambda: "exact"}[kind]()
    return txt + (" †" if source == "measured" else "")


def fmt(v, unit):
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if not np.isfinite(v):
        return "inf"
    if unit == "ulp":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.1e}"
    return f"{v:.1e}"


def table(R, funcs):
    out = ["| function | input | unit | klkit max | worst klkit case | scipy | torch | promised | klkit / promised |",
           "|---|---|---|---:|---|---:|---:|---|---:|"]
    exceed = []
    for f in funcs:
        unit = R.units.get(f, "")
        for d in DTYPES:
            recs = R.recs.get((f, d))
            if not recs:
                continue
            i = int(np.argmax([r[1] for r in recs]))
            kmax, case = recs[i][1], recs[i][0]
            rmax = max(r[2] for r in recs)
            sv = [r[3] for r in recs if r[3] is not None]
            tv = [r[4] for r in recs if r[4] is not None]
            smax = max(sv) if sv else None
            tmax = max(tv) if tv else None
            if rmax > 1:
                ri = int(np.argmax([r[2] for r in recs]))
                exceed.append((f, d, rmax, recs[ri][0], max(r[5] for r in recs), R.units.get(f)))
                rtxt = f"**{rmax:.3f} (exceeds)**" if rmax < 10 else f"**{rmax:.3g} (exceeds)**"
            else:
                rtxt = f"{rmax:.2f}"
            if kmax == 0:
                case = "(all exact)"
            out.append(f"| `{f}` | {d} | {'ulp' if unit == 'ulp' else 'rel.'} | {fmt(kmax, unit)} | {case} "
                       f"| {fmt(smax, unit)} | {fmt(tmax, unit)} | {bound_text(f, d)} | {rtxt} |")
    return "\n".join(out), exceed


def suite_text(args, pairs, seg, seqs):
    n_dense = len(dense_rows())
    lengths, offsets, sets = seg
    sl, so = seqs[0], seqs[1]
    return f"""\
All inputs are drawn once from NumPy generators with fixed seeds, in float64,
then rounded to each input dtype; the exact values are computed from the
rounded inputs.  A row that does not fit a dtype (a non-finite value after
rounding, e.g. 1e30 in float16) is left out for that dtype.  Names in the
"worst klkit case" column refer to the items below.

- **Logit rows** ({n_dense} rows; `logsumexp`, `log_softmax`, `softmax`, `entropy`,
  `token_logprobs`, `softmax_cross_entropy`):
  - random normal rows N(0, s²) for s in {", ".join(f"{s:g}" for s in SCALES)} and lengths
    {", ".join(map(str, SHORT))} ({SHORT_REPS} rows each, #1 to #{SHORT_REPS}), {", ".join(map(str, MEDIUM))},
    and {LONG} (s = {" and ".join(f"{s:g}" for s in LONG_SCALES)} only);
  - a dominant maximum and many identical small terms, `[0] + [-c] * n` for
    c in {", ".join(map(str, DOM_C))} and n in {", ".join(map(str, DOM_N))}: the exact
    log-sum-exp is log1p(n e^-c), as small as 3.7e-44 (for c = 100 the
    results fall below float32's smallest normal number, 1.2e-38);
  - huge logits: N(0, 1) + 1e4, N(0, 1) - 1e4, N(0, 1e4²), N(0, 1) + 1e30 and
    N(0, 1) - 1e30, lengths 1000 and 2049;
  - nearly one-hot rows ("one-hot"): N(0, 1) with one element raised by 20 or 40,
    lengths 1000 and 2049.
- **Temperatures** T = {" and ".join(f"{t:g}" for t in TEMPS)} (`entropy`, `token_logprobs`, which divide the
  logits by T) on six of these rows: N(0, 1) of lengths 7 and 1000, N(0, 10²) of
  length 2049, `[0] + [-30] * 3000`, N(0, 1) + 1e4 of length 1000 and the +20
  one-hot row of length 1000.
- **Targets** (`token_logprobs`, `softmax_cross_entropy`): for each row, the
  positions of its maximum and of its minimum and four random positions, as a
  batch of copies of the row.
- **Pairs of logit rows** ({len(pairs)} pairs; `cross_entropy`, `kl_div`, `js_div` of
  P = softmax(x / T) and Q = softmax(y / T)):
  - nearly identical P and Q ("close"): x ~ N(0, 3²), y = x + eps N(0, 1) for eps in
    {", ".join(f"{e:g}" for e in EPS)}, lengths 7, 1000 and 2049 (KL down to ~1e-17, where
    only a relative error is meaningful); eps = 1e-6 with y offset by +0.5
    (which does not change Q); eps = 1e-6 with length {LONG} (not for `js_div`);
  - independent x, y ~ N(0, s²), s = 1 and 10, lengths 7 and 2049;
  - a nearly one-hot P (one logit raised by 30, length 1000) against
    Q = P + 1e-3 N(0, 1) and against a Q that is one-hot at another position;
  - T = 0.5 and 2 on a close pair (eps 1e-6) and an independent pair;
  - a flat P (x = 0) against a Q spread over 215 nats (y ~ U(-117, 98)), length 4096;
  - {args.kl_rows} random pairs (seed {args.seed}) of any spread: 2000-7000 logits of scale 0.1-10,
    y = x + an offset + N(0, sig²) with sig in 1e-6..3, temperature 1 or 0.3..3
    (not for `js_div`).
- **Segments** (`segment_sum`, `segment_mean`, `segment_max`, `segment_logsumexp`):
  {len(lengths)} segments over {int(offsets[-1])} values in the packed layout (values + offsets),
  lengths drawn at random below 600 plus 1, 2, 7, 4095, 4096, 4097 and 30000,
  shuffled, with {int(np.sum(lengths == 0))} empty segments, the first and the last included (they
  must give the documented `empty` value, else the error counts as infinite);
  the same offsets with three sets of values: {", ".join(n for n, _ in sets)}.
- **KL estimates**: `kl_estimate` on {N_KLEST} points, logp = -Exp(mean 3),
  ref_logp = logp + r with |r| log-uniform in 1e-8..30 and a random sign
  (grouped by |r|; in float16 and bfloat16 the smallest r vanish in the
  rounding); `seq_kl` on {len(sl)} sequences over {int(so[-1])} such tokens (lengths drawn below
  400 plus 1, 2, 7, 4095, 4096, 4097 and 9000, {int(np.sum(sl == 0))} empty).
"""


def versions():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        kk.show_config()
    path = "?"
    for line in buf.getvalue().splitlines():
        if "in use:" in line:
            path = line.split("in use:")[1].strip().split()[0]
    try:
        import torch
        tv = torch.__version__
    except ImportError:
        tv = "not installed"
    return (f"klkit {kk.__version__} (CPU kernels, `{path}` code path), NumPy {np.__version__}, "
            f"SciPy {scipy.__version__}, torch {tv} (CPU, one thread), mpmath {mp.__version__}, "
            f"Python {platform.python_version()}")


def document(R, args, pairs, seg, seqs):
    parts = [f"""\
# Accuracy

This page gives the largest error of klkit's functions measured against exact
values, for float16, bfloat16, float32 and float64 inputs, next to SciPy and
PyTorch on the same inputs, and the bound that each function's docstring
promises.

**How it is measured.**  For every input, the exact value of the function is
computed by mpmath at 50 significant digits from the inputs as given (the
float16, bfloat16, float32 or float64 numbers themselves, not the numbers they
were rounded from); the error is the distance between the returned (rounded)
result and that exact value.  Results are float32 for float16, bfloat16 and
float32 inputs and float64 for float64 inputs, so the units refer to the
result dtype:

- **ulp**: the error divided by the spacing of the result dtype at the exact
  value (one ulp of float32 is 2⁻²³ ≈ 1.2e-7 relative at most, of float64
  2⁻⁵² ≈ 2.2e-16).  A correctly rounded result is within 0.5 ulp.
- **relative error**: |result - exact| / |exact| (below the smallest normal
  number of the result dtype, divided by that number instead).

Each table cell is the maximum over the whole input suite for that function
and dtype; "worst klkit case" names the input that gave klkit's maximum.
"klkit / promised" is the largest ratio of klkit's error to its promised bound
over all inputs (at most 1 means every result was within the bound).

Measured with {versions()}.

## Regenerating this page

From a source checkout of klkit, with the package, SciPy, mpmath and
(optionally) torch installed:

```
python bench/accuracy.py --markdown
```

writes this file (`docs/ACCURACY.md`; `--out PATH` writes elsewhere) in a
minute or two.  `bench/accuracy.py` is part of klkit's source tree, not of the
installed package.

## Input suite

""", suite_text(args, pairs, seg, seqs)]
    exceed_all = []
    for title, unit, funcs in FAMILIES:
        tab, exceed = table(R, funcs)
        exceed_all += exceed
        cp = [f"`{f}`: {COUNTERPARTS[f][0]} / {COUNTERPARTS[f][1]}" for f in funcs if f in COUNTERPARTS]
        parts.append(f"\n## {title}\n\nUnit: {unit}.\n\n{tab}\n")
        if cp:
            parts.append("\nCompared with (scipy / torch): " + "; ".join(cp) + ".\n")
    parts.append("""
† The docstring gives no figure for this function and dtype (for
`logsumexp` and `segment_logsumexp` it says "a few ulp"); the value shown is
the largest error measured on this suite, rounded up, and serves as a
regression check, not as a promise.
""")
    parts.append("\n## Results outside the promised bound\n\n")
    if not exceed_all:
        parts.append("None: every result of the suite was within its function's promised bound.\n")
    else:
        parts.append("On this suite, klkit's error exceeded the promised bound here (largest ratio, "
                     "the input that gave it, and the largest ratio over the results that are normal "
                     "numbers of the result dtype, i.e. not in its gradual-underflow range):\n\n")
        for f, d, r, case, rn, unit in exceed_all:
            parts.append(f"- `{f}`, {d} input: {r:.4g}x the bound, at {case}; "
                         f"over normal-range results {rn:.4g}x.\n")
    parts.append("""
## Reading the table

- **klkit** is called on the inputs in their own dtype (float16 and bfloat16
  arrays as such, bfloat16 from `ml_dtypes`); it returns float32 for 16-bit
  inputs.
- **scipy** and **torch** get the same values, widened exactly to float32 for
  16-bit inputs (as one would before calling them), so that all three
  results have the same dtype and the same ulp.  torch runs on the CPU with
  one thread.  "-" means no counterpart; "inf" means that some result was
  NaN or infinite where the exact value is finite.
- Where SciPy or PyTorch has no single function, the column shows the usual
  recipe built from their functions: probabilities are `softmax(x)` of the
  logits, KL is `sum(rel_entr(P, Q))` in SciPy and `kl_div` with
  `log_target=True` on `log_softmax` inputs in PyTorch, and a temperature T is
  applied as `x / T` (in float32 or float64) before the call.
- A relative error of 1 or more means no correct digit: the recipes that
  subtract two nearly equal quantities (KL of nearly identical distributions,
  entropy of a nearly one-hot distribution) lose all their digits there
  while the exact value is tiny.  klkit computes entropy and the
  divergences as sums of non-negative terms instead.
- Errors in ulp are at the exact value's scale: a log-probability of -4e-18
  (the largest element of a row with a dominant maximum) is measured in ulps
  of 4e-18, not of 1, so a result of 0 there is many ulp wrong even though it
  is within 1e-17 in absolute terms.  The "promised" bounds of
  `token_logprobs` and `softmax_cross_entropy` are absolute, |error| <=
  a (1 + |value|), and the ratio column checks them in that form.
- For float16 and bfloat16 inputs the exact values are those of the rounded
  16-bit inputs, so these errors say how well the float32 result represents
  the function of the numbers actually passed, not how close it is to the
  function of the unrounded numbers (most differences of 1e-8 between two
  logits vanish in the rounding to float16 or bfloat16).
""")
    return "".join(parts), exceed_all


def markdown(args):
    t0 = time.time()
    log = lambda msg: print(f"[{time.time() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
    R = Results()
    rows = dense_rows()
    pairs = pair_rows(args.kl_rows, args.seed)
    seg = segment_suite()
    pts = klest_points(np.random.default_rng(5), N_KLEST)
    seqs = seqkl_suite()
    for d in DTYPES:
        ctx = Ctx(d, torch)
        measure_dense(R, ctx, rows, log)
        measure_pairs(R, ctx, pairs, log)
        measure_segments(R, ctx, seg, log)
        measure_klest(R, ctx, pts, seqs, log)
    doc, exceed = document(R, args, pairs, seg, seqs)
    if args.out == "-":
        sys.stdout.write(doc)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            fh.write(doc)
        log(f"wrote {args.out}")
    for f, d, r, case, rn, _ in exceed:
        print(f"EXCEEDS: {f} {d}: {r:.4g}x the promised bound ({case}); normal-range results {rn:.4g}x",
              file=sys.stderr)
    measured = sorted({(f, d) for f in BOUNDS for d, b in BOUNDS[f].items() if b[2] == "measured"})
    for f, d in measured:
        recs = R.recs.get((f, d), [])
        kind, val, _ = BOUNDS[f][d]
        worst = max((r[2] for r in recs), default=0.0) * val
        print(f"no documented bound: {f} {d}: measured {worst:.3g} in {kind} units (dict: {val:g})",
              file=sys.stderr)
    log("done")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kl-rows", type=int, default=None,
                    help="random rows per dtype for the KL sweep (default 40; 8 with --markdown)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the KL sweep")
    ap.add_argument("--markdown", action="store_true",
                    help="measure the whole suite and write the accuracy page")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                                                  "docs", "ACCURACY.md"),
                    help="with --markdown: the file to write (default docs/ACCURACY.md; - for stdout)")
    args = ap.parse_args()
    if args.kl_rows is None:
        args.kl_rows = 8 if args.markdown else 40
    if args.markdown:
        args.out = args.out if args.out == "-" else os.path.normpath(args.out)
        markdown(args)
    else:
        readme_figures(args)


if __name__ == "__main__":
    main()
