#!/usr/bin/env python
"""Bit digest of every public function over a fixed corpus of inputs.

    python bench/bits_digest.py [-v] [--threads N]

Runs each public function of klkit on a fixed, seeded corpus (every input
dtype, special values, odd shapes, temperatures, every option, strided and
transposed views, packed / padded / Arrow segment layouts) and prints one
SHA-256 digest per function and one over all of them.  Two builds that print
the same digests return the same bits on every case; ``-v`` prints a digest
per case, so that a difference can be traced to its call.  A call that
raises contributes the exception's type.
"""
import argparse
import hashlib
import warnings

import numpy as np

import klkit as kk

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    BF16 = None

DTYPES = [np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)] + (
    [BF16] if BF16 is not None else [])


def cast(x, dt):
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(np.float32).astype(dt) if dt == BF16 else x.astype(dt)


def logits(shape, fill, seed, dt):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    if fill == "normal":
        x = rng.normal(0.0, 3.0, n)
    elif fill == "special":
        x = rng.normal(0.0, 3.0, n)
        u = rng.random(n)
        x[u < 0.04] = np.nan
        x[(u >= 0.04) & (u < 0.08)] = np.inf
        x[(u >= 0.08) & (u < 0.2)] = -np.inf
    elif fill == "close":           # a policy next to its reference
        x = rng.normal(0.0, 3.0, n) + (seed % 2) * rng.normal(0.0, 1e-3, n)
    elif fill == "big":
        x = rng.uniform(-3e4, 3e4, n)
    elif fill == "ties":
        x = rng.integers(-2, 3, n).astype(np.float64)
    else:
        raise ValueError(fill)
    return cast(x.reshape(shape), dt)


def feed(h, value):
    """Hash a result: arrays / scalars by dtype, shape and bytes; tuples in order."""
    if value is None:
        h.update(b"None")
    elif isinstance(value, tuple):
        h.update(b"(" + type(value).__name__.encode())
        for v in value:
            feed(h, v)
        h.update(b")")
    else:
        if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
            value = value.numpy()
        a = np.asarray(value)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())


def cases():
    """(function name, case label, thunk) for the whole corpus."""
    out = []

    def add(name, label, fn):
        out.append((name, label, fn))

    shapes = [(7,), (5, 1), (4, 33), (3, 41, 127), (2, 3000)]
    for dt in DTYPES:
        for fill in ("normal", "special", "big", "ties"):
            for shape in shapes:
                x = logits(shape, fill, 1, dt)
                tag = f"{dt}-{fill}-{shape}"
                for axis in [None, 0, -1] + ([(0, 2), 1] if len(shape) == 3 else []):
                    add("logsumexp", f"{tag}-ax{axis}", lambda x=x, a=axis: kk.logsumexp(x, axis=a))
                    for f in ("softmax", "log_softmax"):
                        add(f, f"{tag}-ax{axis}", lambda x=x, a=axis, f=f: getattr(kk, f)(x, axis=a))
                add("logsumexp", f"{tag}-keep", lambda x=x: kk.logsumexp(x, axis=-1, keepdims=True))
                if x.ndim >= 2:
                    v = x[..., :-1]           # the shifted slice
                    add("logsumexp", f"{tag}-slice", lambda v=v: kk.logsumexp(v, axis=-1))
                    add("log_softmax", f"{tag}-slice", lambda v=v: kk.log_softmax(v, axis=-1))
                    add("softmax", f"{tag}-T", lambda x=x: kk.softmax(x.T, axis=0))
                    add("logsumexp", f"{tag}-rev", lambda x=x: kk.logsumexp(x[..., ::-1], axis=-1))
        x = logits((4, 9), "normal", 2, dt)
        b = np.linspace(-1, 1, 9)
        add("logsumexp", f"{dt}-b-sign", lambda x=x, b=b: kk.logsumexp(x, axis=1, b=b, return_sign=True))
        out_arr = np.empty((4, 9), np.float64 if dt == np.float64 else np.float32)
        add("softmax", f"{dt}-out", lambda x=x, o=out_arr: kk.softmax(x, axis=1, out=o).copy())
    add("logsumexp", "int", lambda: kk.logsumexp(np.arange(12).reshape(3, 4), axis=1))
    add("logsumexp", "complex", lambda: kk.logsumexp(np.array([1 + 1j, 2 - 3j])))

    div_shapes = [(6, 37), (3, 5000), (1,), (4, 1), (2, 3, 129)]
    for op in ("entropy", "cross_entropy", "kl_div", "js_div"):
        f = getattr(kk, op)
        two = op != "entropy"
        for dt in DTYPES:
            for fill in ("normal", "special", "close", "big", "ties"):
                for shape in div_shapes:
                    p, q = logits(shape, fill, 3, dt), logits(shape, fill, 4, dt)
                    args = (p, q) if two else (p,)
                    tag = f"{dt}-{fill}-{shape}"
                    for kw in (dict(), dict(temperature=0.7), dict(temperature=3.0),
                               dict(temperature=1e-40), dict(kind="logprobs"), dict(base=2)):
                        add(op, f"{tag}-{kw}", lambda f=f, a=args, kw=kw: f(*a, **kw))
                    if len(shape) >= 2:
                        add(op, f"{tag}-ax0", lambda f=f, a=args: f(*a, axis=0))
                        add(op, f"{tag}-slice", lambda f=f, a=args: f(*[v[..., :-1] for v in a]))
                    if fill in ("normal", "ties"):
                        pr = tuple(cast(np.abs(v.astype(np.float64)), dt) for v in args)
                        add(op, f"{tag}-probs", lambda f=f, a=pr: f(*a, kind="probs"))
                    if op == "js_div":
                        add(op, f"{tag}-beta", lambda f=f, a=args: f(*a, beta=0.3))
            if two:
                p, q = logits((5, 40), "normal", 5, dt), logits((40,), "normal", 6, np.float32)
                add(op, f"{dt}-bcast", lambda f=f, p=p, q=q: f(p, q))

    for dt in DTYPES:
        for fill in ("normal", "special", "big"):
            for shape in [(9, 50), (3, 4, 2100), (2, 40000)]:
                x = logits(shape, fill, 7, dt)
                rng = np.random.default_rng(8)
                t = rng.integers(0, shape[-1], shape[:-1])
                t.reshape(-1)[::3] = -100
                tag = f"{dt}-{fill}-{shape}"
                for kw in (dict(), dict(temperature=0.6), dict(temperature=1e-40),
                           dict(return_entropy=True, return_lse=True),
                           dict(temperature=2.0, return_entropy=True)):
                    add("token_logprobs", f"{tag}-{kw}",
                        lambda x=x, t=t, kw=kw: kk.token_logprobs(x, t, **kw))
                add("token_logprobs", f"{tag}-slice",
                    lambda x=x, t=t, s=shape: kk.token_logprobs(x[..., :-1], np.minimum(t, s[-1] - 2)))
                w = np.abs(np.random.default_rng(9).normal(1, 0.5, shape[-1]))
                for kw in (dict(), dict(reduction="none"), dict(reduction="sum"),
                           dict(label_smoothing=0.1), dict(weight=w),
                           dict(weight=w, label_smoothing=0.2, reduction="none")):
                    add("softmax_cross_entropy", f"{tag}-{kw}",
                        lambda x=x, t=t, kw=kw: kk.softmax_cross_entropy(x, t, **kw))
                add("softmax_cross_entropy", f"{tag}-ignore0",
                    lambda x=x, t=np.maximum(t, 0): kk.softmax_cross_entropy(x, t, ignore_index=0))

    rng = np.random.default_rng(10)
    for dt in DTYPES:
        lens = rng.integers(0, 700, 60)
        lens[[3, 7]] = 0
        lens[11] = 9000
        n = int(lens.sum())
        off = np.concatenate([[5], 5 + np.cumsum(lens)])
        v = logits((n + 9,), "special", 11, dt)
        w = logits((n + 9,), "close", 12, dt)
        pad = logits((6, 5000), "normal", 13, dt)
        padr = logits((6, 5000), "close", 14, dt)
        mask = np.random.default_rng(15).random((6, 5000)) < 0.6
        mask[2] = False
        tag = str(dt)
        for op in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp"):
            f = getattr(kk, op)
            add(op, f"{tag}-packed64", lambda f=f, v=v, off=off: f(v, off))
            add(op, f"{tag}-packed32", lambda f=f, v=v, off=off: f(v, off.astype(np.int32)))
            add(op, f"{tag}-padded", lambda f=f, a=pad, m=mask: f(a, mask=m))
            add(op, f"{tag}-padded-int", lambda f=f, a=pad, m=mask: f(a, mask=m.astype(np.int8)))
            add(op, f"{tag}-nomask", lambda f=f, a=pad: f(a, mask=None))
            vs = logits((2 * (n + 9),), "special", 11, dt)[::2]
            add(op, f"{tag}-strided", lambda f=f, vs=vs, off=off: f(vs, off))
        for est in ("k1", "k2", "k3", "abs", "low_var_kl"):
            for clamp in (None, 0.5, 20):
                add("kl_estimate", f"{tag}-{est}-{clamp}",
                    lambda v=v, w=w, est=est, clamp=clamp: kk.kl_estimate(v, w, est, clamp=clamp))
                for red in ("sum", "mean"):
                    add("seq_kl", f"{tag}-{est}-{clamp}-{red}",
                        lambda v=v, w=w, off=off, est=est, clamp=clamp, red=red:
                        kk.seq_kl(v, w, off, estimator=est, reduce=red, clamp=clamp))
                    add("seq_kl", f"{tag}-{est}-{clamp}-{red}-padded",
                        lambda a=pad, b=padr, m=mask, est=est, clamp=clamp, red=red:
                        kk.seq_kl(a, b, mask=m, estimator=est, reduce=red, clamp=clamp))
        add("kl_estimate", f"{tag}-bcast", lambda a=pad, b=padr: kk.kl_estimate(a, b[0], "k3"))
        add("kl_estimate", f"{tag}-scalar", lambda a=pad: kk.kl_estimate(a, 0.5, "k3"))
        for mode in ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                     "seq-mean-token-sum-norm"):
            add("agg_loss", f"{tag}-{mode}", lambda v=v, off=off, mode=mode: kk.agg_loss(v, off, mode=mode))
            add("agg_loss", f"{tag}-{mode}-padded",
                lambda a=pad, m=mask, mode=mode: kk.agg_loss(a, mask=m, mode=mode))
            add("agg_loss", f"{tag}-{mode}-counts",
                lambda a=pad, m=mask, mode=mode: kk.agg_loss(a, mask=m, mode=mode, num_tokens=1000,
                                                             num_seqs=3, norm_length=77))
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover
        pa = None
    if pa is not None:
        seqs = [list(np.random.default_rng(16 + i).normal(0, 1, i * 37 % 300)) for i in range(40)]
        seqs[5] = None
        arr = pa.array(seqs, type=pa.list_(pa.float32()))
        ref = pa.array([None if s is None else [x + 0.01 for x in s] for s in seqs],
                       type=pa.large_list(pa.float64()))
        for op in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp"):
            f = getattr(kk, op)
            add(op, "arrow", lambda f=f: f(arr))
            add(op, "arrow-slice", lambda f=f: f(arr.slice(3, 20)))
            add(op, "arrow-chunked", lambda f=f: f(pa.chunked_array([arr.slice(0, 10), arr.slice(10)])))
        add("seq_kl", "arrow", lambda: kk.seq_kl(arr, ref, estimator="k3"))
        add("agg_loss", "arrow", lambda: kk.agg_loss(arr, mode="seq-mean-token-mean"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", action="store_true", help="print a digest per case")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        kk.set_num_threads(args.threads)
    per_fn = {}
    total = hashlib.sha256()
    n_cases = 0
    warnings.simplefilter("ignore")
    for name, label, fn in cases():
        h = hashlib.sha256()
        try:
            with np.errstate(all="ignore"):
                feed(h, fn())
        except Exception as exc:  # noqa: BLE001 - an error is part of the behaviour
            h.update(f"raised {type(exc).__name__}".encode())
        d = h.hexdigest()
        if args.v:
            print(f"{d[:16]}  {name}  {label}")
        per_fn.setdefault(name, hashlib.sha256()).update(d.encode())
        total.update(d.encode())
        n_cases += 1
    for name in sorted(per_fn):
        print(f"{per_fn[name].hexdigest()[:16]}  {name}")
    print(f"{total.hexdigest()[:16]}  all ({n_cases} cases)")


if __name__ == "__main__":
    main()
