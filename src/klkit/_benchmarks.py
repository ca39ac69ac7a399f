"""Inputs, competitor recipes and timing helpers for klkit's speed tables.

Private.  ``klkit bench`` times with this module, and so do the repository's
bench/report.py and pytest-benchmark suites (bench/_recipes.py re-exports
it), so that every table measures the same things the same way.  It needs
only NumPy; the competitors scipy, torch and ml_dtypes (bfloat16) are
imported on first use, and an implementation whose library is not installed
is left out.

For every benchmarked function, one place defines what each name means:

- klkit: the klkit function;
- scipy: scipy.special / scipy.stats / scipy.spatial, or the plain scipy
  recipe where scipy has no such function (KL, cross-entropy);
- torch: the torch CPU function on zero-copy torch.from_numpy views;
- numpy: the best plain-NumPy recipe we know: max-shift, in-place ufuncs on
  row blocks of ~1 MiB so the temporaries stay in cache (about 3x faster on
  [4096, 32768] float32 than the textbook `np.log(np.exp(x - m).sum(-1)) + m`,
  and never more than a few MiB of temporaries). Single-threaded.

The time of a call is the median of a few repeats after one warm-up, and
each case is compared with a bandwidth floor: one read-only pass over the
same input bytes (``np.max(x, axis=-1)`` for rows, ``np.sum`` for
segments), timed in the same interleaved rounds as the implementations
(:func:`time_case`).
"""

from __future__ import annotations

import gc
import platform
import statistics
import sys
import time

import numpy as np

import klkit as kk

# optional competitors: None until load_optional() imports them (and where
# they are not installed)
scipy = ss = torch = F = ml_dtypes = None
_loaded = False


def load_optional():
    """Import scipy, torch and ml_dtypes if they are installed (once), as
    this module's ``scipy``, ``ss`` (scipy.special), ``torch``, ``F``
    (torch.nn.functional) and ``ml_dtypes``; those not installed stay None."""
    global _loaded, scipy, ss, torch, F, ml_dtypes
    if _loaded:
        return
    _loaded = True
    try:
        import scipy.spatial.distance
        import scipy.special
        import scipy.stats
    except ImportError:
        pass
    else:
        scipy, ss = sys.modules["scipy"], sys.modules["scipy.special"]
    try:
        import torch as _torch
        import torch.nn.functional as _F
    except ImportError:
        pass
    else:
        torch, F = _torch, _F
    try:
        import ml_dtypes as _ml_dtypes
    except ImportError:
        pass
    else:
        ml_dtypes = _ml_dtypes


BLOCK_BYTES = 1 << 20  # numpy recipes: row blocks of ~1 MiB per temporary

# --------------------------------------------------------------------------
# numpy recipes (the best plain-NumPy way we know; single-threaded)
# --------------------------------------------------------------------------

def acc_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dt == np.float64 else np.dtype(np.float32)


def _row_blocks(x: np.ndarray):
    n, k = x.shape
    rows = max(1, BLOCK_BYTES // (k * acc_dtype(x.dtype).itemsize))
    for i in range(0, n, rows):
        yield slice(i, min(n, i + rows))


def _tmp(x: np.ndarray, count: int):
    n, k = x.shape
    rows = max(1, BLOCK_BYTES // (k * acc_dtype(x.dtype).itemsize))
    return [np.empty((min(rows, n), k), acc_dtype(x.dtype)) for _ in range(count)]


def _shifted(xb, t):
    """t[:] = xb - rowmax(xb) (accumulation dtype); returns (t, max)."""
    if xb.dtype != t.dtype:
        np.copyto(t, xb)
        m = t.max(-1, keepdims=True)
        np.subtract(t, m, out=t)
    else:
        m = xb.max(-1, keepdims=True)
        np.subtract(xb, m, out=t)
    return t, m


def np_logsumexp(x):
    if x.ndim == 1:
        acc = acc_dtype(x.dtype)
        m = x.max()
        step = BLOCK_BYTES // acc.itemsize
        t = np.empty(step, acc)
        s = 0.0
        for i in range(0, x.size, step):
            tb = t[: min(step, x.size - i)]
            np.subtract(x[i : i + step], m, out=tb)
            np.exp(tb, out=tb)
            s += float(tb.sum())
        return np.log(s) + m
    (t,) = _tmp(x, 1)
    out = np.empty(x.shape[0], acc_dtype(x.dtype))
    for sl in _row_blocks(x):
        tb, m = _shifted(x[sl], t[: sl.stop - sl.start])
        np.exp(tb, out=tb)
        out[sl] = np.log(tb.sum(-1)) + m[:, 0]
    return out


def np_log_softmax(x, out=None):
    if out is None:
        out = np.empty(x.shape, acc_dtype(x.dtype))
    (t,) = _tmp(x, 1)
    for sl in _row_blocks(x):
        ob = out[sl]
        m = x[sl].max(-1, keepdims=True)
        np.subtract(x[sl], m, out=ob)
        tb = t[: sl.stop - sl.start]
        np.exp(ob, out=tb)
        ob -= np.log(tb.sum(-1, keepdims=True))
    return out


def np_softmax(x, out=None):
    if out is None:
        out = np.empty(x.shape, acc_dtype(x.dtype))
    for sl in _row_blocks(x):
        ob = out[sl]
        np.subtract(x[sl], x[sl].max(-1, keepdims=True), out=ob)
        np.exp(ob, out=ob)
        ob /= ob.sum(-1, keepdims=True)
    return out


def np_entropy(x):
    # H = log s - sum(e * t) / s  with t = x - max, e = exp(t), s = sum(e)
    t, e = _tmp(x, 2)
    out = np.empty(x.shape[0], acc_dtype(x.dtype))
    for sl in _row_blocks(x):
        r = sl.stop - sl.start
        tb, _ = _shifted(x[sl], t[:r])
        eb = np.exp(tb, out=e[:r])
        s = eb.sum(-1)
        np.multiply(eb, tb, out=eb)
        out[sl] = np.log(s) - eb.sum(-1) / s
    return out


def np_cross_entropy(p, q):
    # H(P,Q) = log sq - sum(ep * tq) / sp
    tp, tq, e = _tmp(p, 3)
    out = np.empty(p.shape[0], acc_dtype(p.dtype))
    for sl in _row_blocks(p):
        r = sl.stop - sl.start
        ep, _ = _shifted(p[sl], tp[:r])
        np.exp(ep, out=ep)
        sp = ep.sum(-1)
        tqb, _ = _shifted(q[sl], tq[:r])
        eb = np.exp(tqb, out=e[:r])
        sq = eb.sum(-1)
        np.multiply(ep, tqb, out=eb)
        out[sl] = np.log(sq) - eb.sum(-1) / sp
    return out


def np_kl_div(p, q):
    # KL = sum(ep * (tp - tq)) / sp + log(sq / sp)
    tp, tq, e = _tmp(p, 3)
    out = np.empty(p.shape[0], acc_dtype(p.dtype))
    for sl in _row_blocks(p):
        r = sl.stop - sl.start
        tpb, _ = _shifted(p[sl], tp[:r])
        eb = np.exp(tpb, out=e[:r])
        sp = eb.sum(-1)
        tqb, _ = _shifted(q[sl], tq[:r])
        np.subtract(tpb, tqb, out=tpb)           # tp - tq
        np.exp(tqb, out=tqb)
        sq = tqb.sum(-1)
        np.multiply(eb, tpb, out=eb)
        out[sl] = eb.sum(-1) / sp + np.log(sq / sp)
    return out


def np_js_div(p, q, beta=0.5):
    # JS = beta*sum P log(P/M) + (1-beta)*sum Q log(Q/M), M = beta P + (1-beta) Q
    P, Q, M, L = _tmp(p, 4)
    out = np.empty(p.shape[0], acc_dtype(p.dtype))
    for sl in _row_blocks(p):
        r = sl.stop - sl.start
        res = 0.0
        Pb, Qb, Mb, Lb = P[:r], Q[:r], M[:r], L[:r]
        for src, dst in ((p[sl], Pb), (q[sl], Qb)):
            _shifted(src, dst)
            np.exp(dst, out=dst)
            dst /= dst.sum(-1, keepdims=True)
        np.multiply(Pb, beta, out=Mb)
        Mb += (1.0 - beta) * Qb
        np.log(Mb, out=Mb)                        # log M
        for w, D in ((beta, Pb), (1.0 - beta, Qb)):
            with np.errstate(divide="ignore", invalid="ignore"):
                np.log(D, out=Lb)
            Lb -= Mb
            np.multiply(D, Lb, out=Lb)
            Lb[D == 0] = 0.0
            res = res + w * Lb.sum(-1)
        out[sl] = res
    return out


def np_entropy_probs(p):
    # H = log s - sum(p log p) / s, s = sum(p) (assumes p > 0, as in the benchmark data)
    (t,) = _tmp(p, 1)
    out = np.empty(p.shape[0], acc_dtype(p.dtype))
    for sl in _row_blocks(p):
        pb = p[sl]
        tb = np.log(pb, out=t[: sl.stop - sl.start])
        np.multiply(tb, pb, out=tb)
        s = pb.sum(-1)
        out[sl] = np.log(s) - tb.sum(-1) / s
    return out


# --------------------------------------------------------------------------
# implementations: {impl name: zero-argument callable} per benchmarked function
# --------------------------------------------------------------------------

def to_torch(a):
    """Zero-copy torch view of a numpy array (bf16 through an int16 view)."""
    if ml_dtypes is not None and a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def build_logsumexp(xs, out):
    (x,) = xs
    impl = {
        "klkit": lambda: kk.logsumexp(x, axis=-1),
        "scipy": lambda: ss.logsumexp(x, axis=-1),
        "numpy": lambda: np_logsumexp(x),
    }
    if torch is not None:
        tx = to_torch(x)
        impl["torch"] = lambda: torch.logsumexp(tx, -1)
    return impl


def build_log_softmax_out(xs, out):
    (x,) = xs
    impl = {
        "klkit": lambda: kk.log_softmax(x, axis=-1, out=out),
        "numpy": lambda: np_log_softmax(x, out=out),
    }
    if torch is not None:
        tx, to = to_torch(x), to_torch(out)
        impl["torch"] = lambda: torch.log_softmax(tx, -1, out=to)
    return impl  # scipy has no out=


def build_log_softmax(xs, out):
    (x,) = xs
    impl = {
        "klkit": lambda: kk.log_softmax(x, axis=-1),
        "scipy": lambda: ss.log_softmax(x, axis=-1),
        "numpy": lambda: np_log_softmax(x),
    }
    if torch is not None:
        tx = to_torch(x)
        impl["torch"] = lambda: torch.log_softmax(tx, -1)
    return impl


def build_softmax(xs, out):
    (x,) = xs
    impl = {
        "klkit": lambda: kk.softmax(x, axis=-1),
        "scipy": lambda: ss.softmax(x, axis=-1),
        "numpy": lambda: np_softmax(x),
    }
    if torch is not None:
        tx = to_torch(x)
        impl["torch"] = lambda: torch.softmax(tx, -1)
    return impl


def build_entropy(xs, out):
    (x,) = xs
    impl = {
        "klkit": lambda: kk.entropy(x, axis=-1),
        "scipy": lambda: scipy.stats.entropy(ss.softmax(x, axis=-1), axis=-1),
        "numpy": lambda: np_entropy(x),
    }
    if torch is not None:
        tx = to_torch(x)

        def th():
            lp = torch.log_softmax(tx, -1)
            return -(lp.exp() * lp).sum(-1)

        impl["torch"] = th
    return impl


def build_cross_entropy(xs, out):
    p, q = xs
    impl = {
        "klkit": lambda: kk.cross_entropy(p, q, axis=-1),
        "scipy": lambda: -(ss.softmax(p, axis=-1) * ss.log_softmax(q, axis=-1)).sum(-1),
        "numpy": lambda: np_cross_entropy(p, q),
    }
    if torch is not None:
        tp, tq = to_torch(p), to_torch(q)
        impl["torch"] = lambda: F.cross_entropy(tq, torch.softmax(tp, -1), reduction="none")
    return impl


def build_kl_div(xs, out):
    p, q = xs

    def sp():
        lp = ss.log_softmax(p, axis=-1)
        lq = ss.log_softmax(q, axis=-1)
        return (np.exp(lp) * (lp - lq)).sum(-1)

    impl = {
        "klkit": lambda: kk.kl_div(p, q, axis=-1, kind="logits"),
        "scipy": sp,
        "numpy": lambda: np_kl_div(p, q),
    }
    if torch is not None:
        tp, tq = to_torch(p), to_torch(q)

        def th():
            lp = torch.log_softmax(tp, -1)
            lq = torch.log_softmax(tq, -1)
            return F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)

        impl["torch"] = th
    return impl


def build_js_div(xs, out):
    p, q = xs
    impl = {
        "klkit": lambda: kk.js_div(p, q, axis=-1),
        "scipy": lambda: scipy.spatial.distance.jensenshannon(
            ss.softmax(p, axis=-1), ss.softmax(q, axis=-1), axis=-1) ** 2,
        "numpy": lambda: np_js_div(p, q),
    }
    if torch is not None:
        tp, tq = to_torch(p), to_torch(q)

        def th():
            lp = torch.log_softmax(tp, -1)
            lq = torch.log_softmax(tq, -1)
            lm = torch.logaddexp(lp, lq) - np.log(2.0)
            kp = F.kl_div(lm, lp, log_target=True, reduction="none").sum(-1)
            kq = F.kl_div(lm, lq, log_target=True, reduction="none").sum(-1)
            return 0.5 * (kp + kq)

        impl["torch"] = th
    return impl


def build_entropy_probs(xs, out):
    (p,) = xs
    impl = {
        "klkit": lambda: kk.entropy(p, axis=-1, kind="probs"),
        "scipy": lambda: scipy.stats.entropy(p, axis=-1),
        "numpy": lambda: np_entropy_probs(p),
    }
    if torch is not None:
        tp = to_torch(p)
        impl["torch"] = lambda: torch.special.entr(tp / tp.sum(-1, keepdim=True)).sum(-1)
    return impl


def np_token_logprobs(x, t):
    """x[r, t_r] - lse(x[r]) with the row-blocked lse recipe."""
    picked = x[np.arange(x.shape[0]), t].astype(acc_dtype(x.dtype))
    return picked - np_logsumexp(x)


def build_token_logprobs(xs, out):
    x, t = xs
    rows = np.arange(x.shape[0])
    impl = {
        "klkit": lambda: kk.token_logprobs(x, t),
        "scipy": lambda: ss.log_softmax(x, axis=-1)[rows, t],
        "numpy": lambda: np_token_logprobs(x, t),
    }
    if torch is not None:
        tx, tt = to_torch(x), torch.from_numpy(t)
        # torch's fastest per-token recipe (log_softmax + gather is slower)
        impl["torch"] = lambda: -F.cross_entropy(tx, tt, reduction="none")
    return impl


def build_token_logprobs_shifted(xs, out):
    """Per-token log-probs of the next token: logits[:, :-1] of a [B, T, V]
    array against targets[:, 1:] (the shifted slice of every RLHF pipeline,
    not collapsible into [rows, V] with one row stride)."""
    x, t = xs
    xv, tv = x[:, :-1], t[:, 1:]
    impl = {
        "klkit": lambda: kk.token_logprobs(xv, tv),
        "scipy": lambda: np.take_along_axis(ss.log_softmax(xv, axis=-1), tv[..., None],
                                            -1)[..., 0],
        "numpy": lambda: np_token_logprobs(xv.reshape(-1, x.shape[-1]),
                                           tv.reshape(-1)).reshape(tv.shape),
    }
    if torch is not None:
        tx, tt = to_torch(x), torch.from_numpy(t)
        impl["torch"] = lambda: -F.cross_entropy(tx[:, :-1].reshape(-1, x.shape[-1]),
                                                 tt[:, 1:].reshape(-1),
                                                 reduction="none").reshape(tv.shape)
    return impl


def build_token_logprobs_entropy(xs, out):
    x, t = xs
    impl = {
        "klkit": lambda: kk.token_logprobs(x, t, return_entropy=True).entropy,
        "numpy": lambda: (np_token_logprobs(x, t), np_entropy(x))[1],
    }
    if torch is not None:
        tx, tt = to_torch(x), torch.from_numpy(t)

        def th():
            lp = torch.log_softmax(tx, -1)
            tok = lp.gather(-1, tt[:, None])[:, 0]
            return (tok, -(lp.exp() * lp).sum(-1))[1]

        impl["torch"] = th
    return impl


def build_softmax_cross_entropy(xs, out):
    x, t = xs
    rows = np.arange(x.shape[0])
    impl = {
        "klkit": lambda: kk.softmax_cross_entropy(x, t),
        "scipy": lambda: -ss.log_softmax(x, axis=-1)[rows, t].mean(),
        "numpy": lambda: -np_token_logprobs(x, t).mean(),
    }
    if torch is not None:
        tx, tt = to_torch(x), torch.from_numpy(t)
        impl["torch"] = lambda: F.cross_entropy(tx, tt)
    return impl


BUILDERS = {
    "logsumexp": build_logsumexp,
    "log_softmax": build_log_softmax,
    "log_softmax_out": build_log_softmax_out,   # out= preallocated (scipy has none)
    "softmax": build_softmax,
    "entropy": build_entropy,
    "entropy_probs": build_entropy_probs,       # kind="probs" vs scipy.stats.entropy
    "cross_entropy": build_cross_entropy,
    "kl_div": build_kl_div,
    "js_div": build_js_div,
    "token_logprobs": build_token_logprobs,
    "token_logprobs_entropy": build_token_logprobs_entropy,
    "token_logprobs_shifted": build_token_logprobs_shifted,
    "softmax_cross_entropy": build_softmax_cross_entropy,
}

KLKIT_NAME = {"log_softmax_out": "log_softmax", "entropy_probs": "entropy",
              "token_logprobs_entropy": "token_logprobs",
              "token_logprobs_shifted": "token_logprobs"}
ROLES = {"cross_entropy": ("p", "q"), "kl_div": ("p", "q"), "js_div": ("p", "q"),
         "entropy_probs": ("probs",), "token_logprobs": ("p", "targets"),
         "token_logprobs_entropy": ("p", "targets"), "token_logprobs_shifted": ("p", "targets"),
         "softmax_cross_entropy": ("p", "targets")}


def klkit_has(func):
    """Whether the installed klkit has the function behind benchmark `func`."""
    return hasattr(kk, KLKIT_NAME.get(func, func))


def implementations(func, xs, out=None):
    """{"klkit"|"scipy"|"torch"|"numpy": callable} for `func` on inputs `xs`.

    `out` is the preallocated output for "log_softmax_out". torch is absent
    when it is not installed, scipy where scipy has no equivalent or is not
    installed.
    """
    load_optional()
    impl = BUILDERS[func](xs, out)
    if scipy is None:
        impl.pop("scipy", None)
    return impl


# --------------------------------------------------------------------------
# inputs and the bandwidth floor
# --------------------------------------------------------------------------

def np_dtype(name):
    load_optional()
    if name == "bfloat16":
        return ml_dtypes.bfloat16
    return np.dtype(name)


def make_input(shape, dtype, role="p"):
    """Logit-like data: p ~ N(0, 2^2); q = p + N(0, 0.5^2) (a nearby distribution);
    role "probs": positive, unnormalised probabilities (uniform on [0.01, 1));
    role "targets": int64 class indices for logits of `shape` (one per row)."""
    load_optional()
    if role == "targets":
        return np.random.default_rng(4).integers(0, shape[-1], shape[:-1])
    gen_dt = np.float64 if dtype == "float64" else np.float32
    if role == "probs":
        x = np.random.default_rng(3).random(shape, dtype=gen_dt)
        x *= 0.99
        x += 0.01
        return x.astype(ml_dtypes.bfloat16) if dtype == "bfloat16" else x
    x = np.random.default_rng(1).standard_normal(shape, dtype=gen_dt)
    x *= 2.0
    if role == "q":
        noise = np.random.default_rng(2).standard_normal(shape, dtype=gen_dt)
        noise *= 0.5
        x += noise
        del noise
    if dtype == "bfloat16":
        x = x.astype(ml_dtypes.bfloat16)
    return x


def floor_fn(x):
    """np.max(x, axis=-1): one read-only pass over the input bytes (for the
    int64 targets of the token functions: a pass over those few bytes)."""
    load_optional()
    if ml_dtypes is not None and x.dtype == ml_dtypes.bfloat16:
        v = x.view(np.int16)  # same bytes; numpy's bf16 max is a slow scalar loop
        return lambda: np.max(v, axis=-1)
    return lambda: np.max(x, axis=-1)



# --------------------------------------------------------------------------
# segment cases (segment_sum packed and padded, seq_kl k3): inputs and
# implementations.  Floor: np.sum over every input array; "reduceat":
# np.add.reduceat over the offsets (float32 accumulation; an empty segment
# would get its neighbour's element, the inputs here have none); "numpy": a
# float64 cumsum differenced at the offsets (padded: np.where(mask, v, 0)
# summed); "torch": torch.segment_reduce(data, "sum", lengths=...) (padded:
# (values * mask).sum(-1), as RL frameworks do).
# --------------------------------------------------------------------------

def make_packed(n_tokens, n_seqs, dtype="float32", seed=1):
    """(logp, ref_logp, offsets): log-prob-like float values (logp ~ -|N(0, 2)|,
    ref_logp = logp + N(0, 0.05)) in n_seqs sequences of random lengths >= 1
    summing to n_tokens; offsets int64."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 2 * n_tokens // n_seqs, n_seqs)
    lens = np.maximum(1, (lens * (n_tokens / lens.sum())).astype(np.int64))
    lens[-1] += n_tokens - lens.sum()
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    gen = np.float64 if dtype == "float64" else np.float32
    x = rng.standard_normal(n_tokens, dtype=gen)
    np.abs(x, out=x)
    x *= -2.0
    y = rng.standard_normal(n_tokens, dtype=gen)
    y *= 0.05
    y += x
    return x, y, offsets


def make_padded(shape, dtype="float32", seed=2):
    """(values [B, T], mask [B, T] bool): response masks are prefixes of random
    length in [1, T]."""
    rng = np.random.default_rng(seed)
    gen = np.float64 if dtype == "float64" else np.float32
    v = rng.standard_normal(shape, dtype=gen)
    mask = np.arange(shape[1])[None, :] < rng.integers(1, shape[1] + 1, shape[0])[:, None]
    return v, mask


def np_cumsum_segment_sum(x, offsets):
    """Per-segment sums from one float64 cumulative sum (empty segments give 0)."""
    c = np.empty(x.size + 1, np.float64)
    c[0] = 0.0
    np.cumsum(x, dtype=np.float64, out=c[1:])
    return c[offsets[1:]] - c[offsets[:-1]]


def floors(arrays):
    """One np.sum pass over every array: the floor of the segment cases."""
    fs = [(lambda a=a: np.sum(a)) for a in arrays]
    return lambda: [f() for f in fs]


def segment_implementations(case, inputs):
    """{"floor"|"klkit"|"reduceat"|"numpy"|"torch": callable} of a segment
    case: "seg_sum" and "seq_kl" on make_packed's (logp, ref_logp, offsets),
    "seg_padded" on make_padded's (values, mask)."""
    load_optional()
    impl = {}
    if case == "seg_sum":
        x, _, off = inputs
        starts = off[:-1]
        impl["floor"] = floors([x])
        impl["klkit"] = lambda: kk.segment_sum(x, off)
        impl["reduceat"] = lambda: np.add.reduceat(x, starts)
        impl["numpy"] = lambda: np_cumsum_segment_sum(x, off)
        if torch is not None:
            tx, tl = torch.from_numpy(x), torch.from_numpy(np.diff(off))
            impl["torch"] = lambda: torch.segment_reduce(tx, "sum", lengths=tl)
    elif case == "seq_kl":
        x, y, off = inputs
        starts = off[:-1]

        def np_k3(a, b):
            r = b - a
            k = np.exp(r)
            k -= r
            k -= 1
            return k

        impl["floor"] = floors([x, y])
        impl["klkit"] = lambda: kk.seq_kl(x, y, off, estimator="k3")
        impl["reduceat"] = lambda: np.add.reduceat(np_k3(x, y), starts)
        impl["numpy"] = lambda: np_cumsum_segment_sum(np_k3(x, y), off)
        if torch is not None:
            tx, ty, tl = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(np.diff(off))

            def th():
                r = ty - tx
                return torch.segment_reduce(torch.exp(r) - r - 1, "sum", lengths=tl)

            impl["torch"] = th
    elif case == "seg_padded":
        v, m = inputs
        impl["floor"] = floors([v, m])
        impl["klkit"] = lambda: kk.segment_sum(v, mask=m)
        impl["numpy"] = lambda: np.where(m, v, 0).sum(-1)
        if torch is not None:
            tv, tm = torch.from_numpy(v), torch.from_numpy(m)
            impl["torch"] = lambda: (tv * tm).sum(-1)
    else:
        raise ValueError(case)
    return impl


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

def sample_rows(r, stride_rows):
    """A small float64 sample of a result, to compare implementations."""
    if torch is not None and isinstance(r, torch.Tensor):
        r = r.float().numpy() if r.dtype == torch.bfloat16 else r.numpy()
    r = np.asarray(r)
    if r.ndim >= 1 and r.shape[0] > 1:
        r = r[::stride_rows]
    return np.array(r, dtype=np.float64)


def _timed(fn):
    """Seconds one call of `fn()` took (freeing its result is not timed)."""
    t0 = time.perf_counter()
    r = fn()
    t = time.perf_counter() - t0
    del r  # after the clock is read
    return t


def time_case(impls, floor_fns, names, repeats=5, slow_s=2.0, stride_rows=1, log=None):
    """Time one case: its floor and the implementations `names` (those in
    `impls`), on the same inputs, in interleaved rounds.

    Every function gets one warm-up call (an implementation that raises is
    recorded and left out; the others go on).  Then `repeats` rounds each
    call every floor function, every implementation once and the floor
    functions again, so that a burst of load on a shared machine slows one
    round of every column alike instead of one implementation's calls;
    an implementation whose warm-up took longer than `slow_s` seconds runs
    in the first 3 rounds only.  The floor is the sum over `floor_fns` (one
    per input) of the median of its calls; an implementation's time the
    median of its calls.  `log(line)` gets progress lines.

    Returns a dict: floor (seconds), times {name: median seconds}, counts
    {name: timed calls}, samples {name: float64 result sample}, errors
    {name: exception}.
    """
    log = log or (lambda line: None)
    res = dict(times={}, counts={}, samples={}, errors={})
    for f in floor_fns:
        f()
    calls, limit = {}, {}
    for name in names:
        fn = impls.get(name)
        if fn is None:
            continue
        t0 = time.perf_counter()
        try:
            r = fn()
        except Exception as exc:  # report and go on: one broken impl must not hide the rest
            log(f"   {name:8s} FAILED: {type(exc).__name__}: {exc}")
            res["errors"][name] = exc
            continue
        warm = time.perf_counter() - t0
        res["samples"][name] = sample_rows(r, stride_rows)
        r = None
        calls[name], limit[name] = [], repeats if warm < slow_s else 3
        gc.collect()
    floor_ts = [[] for _ in floor_fns]
    for _ in range(repeats):
        for f, ts in zip(floor_fns, floor_ts):
            ts.append(_timed(f))
        for name, ts in list(calls.items()):
            if len(ts) >= limit[name]:
                continue
            try:
                ts.append(_timed(impls[name]))
            except Exception as exc:  # as at the warm-up
                log(f"   {name:8s} FAILED: {type(exc).__name__}: {exc}")
                res["errors"][name] = exc
                del calls[name]
                res["samples"].pop(name)
        for f, ts in zip(floor_fns, floor_ts):
            ts.append(_timed(f))
        gc.collect()
    res["floor"] = sum(map(statistics.median, floor_ts))
    log(f"   floor    {res['floor'] * 1e3:9.2f} ms  (median of {2 * repeats})")
    for name, ts in calls.items():
        res["times"][name], res["counts"][name] = statistics.median(ts), len(ts)
        log(f"   {name:8s} {res['times'][name] * 1e3:9.2f} ms  (median of {len(ts)})")
    return res


def agrees(a, b, dtype):
    """Whether result sample `a` matches `b` at the tolerance of `dtype`
    (the same non-finite positions; finite values within rtol, or rtol times
    b's largest magnitude)."""
    if a.shape != b.shape:
        return False
    rtol = {"float64": 1e-9, "float32": 2e-4, "bfloat16": 1e-2}[dtype]
    fin = np.isfinite(b)
    if not np.array_equal(fin, np.isfinite(a)):
        return False
    scale = np.max(np.abs(b[fin])) if fin.any() else 0.0
    return bool(np.allclose(a[fin], b[fin], rtol=rtol, atol=rtol * scale))


# --------------------------------------------------------------------------
# machine and threads
# --------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def limit_threads(n):
    """Run klkit, torch (if installed) and the BLAS / OpenMP pools that
    threadpoolctl finds (if it is installed) on `n` threads.

    Returns (notes, restore): lines describing the pools, and a callable
    that puts every thread count back as it was.
    """
    load_optional()
    before = kk.get_num_threads(), (torch.get_num_threads() if torch is not None else None)
    kk.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        import threadpoolctl
    except ImportError:
        limiter = None
        notes = ["threadpoolctl not installed (BLAS pools not limited)"]
    else:
        limiter = threadpoolctl.threadpool_limits(limits=n)
        notes = ["threadpoolctl: " + (", ".join(
            f"{p['internal_api']}={p['num_threads']}" for p in threadpoolctl.threadpool_info())
            or "no pools found")]

    def restore():
        if limiter is not None:
            limiter.restore_original_limits()
        kk.set_num_threads(before[0])
        if torch is not None:
            torch.set_num_threads(before[1])

    return notes, restore
