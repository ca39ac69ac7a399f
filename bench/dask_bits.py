#!/usr/bin/env python
"""klkit.dask against klkit on the computed arrays, over adversarial rows.

    python bench/dask_bits.py [--seeds N] [--random N]

For every input dtype, rows of every special kind (-inf entries, all -inf,
NaN, +inf, tiny, huge, one-hot, wide, a result that cancels its maximum),
q near p or far from it, chunkings of the class axis on the kernels' 2048
grid and off it (uneven, random cuts, a 1-element chunk, chunks shorter
than 2048), temperatures 0.4 / 0.7 / 1 / 2.5 and kinds logits / logprobs /
probs; then random shapes, chunkings and axes (several reduced axes
included).  Prints, per function, dtype and chunking, the largest distance
in ulps of klkit's result, and the number of results whose bytes differ
from klkit's (the contract is 0).  Runs on the threaded scheduler (the
scheduler does not change the bits; tests/test_dask.py runs a cluster).
"""
import argparse

import dask
import dask.array as da
import numpy as np

import klkit as kk
import klkit.dask as kd
from bits_digest import DTYPES          # bench/ is the script's directory
CHUNK = 2048


def ulps(got, expected):
    """Largest |got - expected| in ulps of expected (its dtype); NaN pairs
    and equal values 0, a NaN against a number inf."""
    g, e = np.asarray(got).astype(np.float64), np.asarray(expected).astype(np.float64)
    big = float(np.finfo(np.asarray(expected).dtype).max)
    same = (g == e) | (np.isnan(g) & np.isnan(e))
    with np.errstate(invalid="ignore", over="ignore"):
        sp = np.spacing(np.minimum(np.abs(e), big).astype(np.asarray(expected).dtype))
        d = np.where(same, 0.0, np.abs(g - e) / sp.astype(np.float64))
    d = np.where(np.isnan(d), np.inf, d)
    return float(d.max()) if d.size else 0.0


def adversarial(n, dtype, rng):
    x = rng.normal(0, 3, (11, n))
    x[1, 5] = -np.inf
    x[2] = -np.inf
    x[3, 7] = np.nan
    x[4, 9] = np.inf
    x[5, ::3] = -np.inf
    x[6] *= 1e-30                                   # tiny
    x[7] = -40.0                                    # logsumexp -0.00025 from m = -0.5
    x[7, 0] = -0.5
    x[7, 1:41] = np.linspace(-4.75, -4.5, 40)
    x[8] += 3e4 if dtype == np.float16 else 1e20    # huge
    x[9] = 0.0                                      # one-hot
    x[9, n // 2] = 40.0
    x[10] *= 10                                     # wide
    return x


def chunkings(n, rng):
    cut = sorted(rng.choice(np.arange(1, n), size=4, replace=False).tolist())
    return [("grid", CHUNK), ("grid", (2 * CHUNK, CHUNK, n - 3 * CHUNK)),
            ("off-grid", tuple(np.diff([0] + cut + [n]).tolist())),
            ("off-grid", (1, CHUNK - 1, 1, n - CHUNK - 1)), ("off-grid", 700), ("off-grid", 3001)]


def sweep_adversarial(seed, record):
    rng = np.random.default_rng(seed)
    n = 9000
    for dt in DTYPES:
        x64 = adversarial(n, dt, rng)
        q64 = x64 + rng.normal(0, 1, x64.shape) * rng.choice([1e-6, 0.3, 3.0], size=(11, 1))
        q64[10, 13] = -np.inf
        q64[3, 8] = np.nan
        x, q = x64.astype(dt), q64.astype(dt)
        lp, lq = (kk.log_softmax(a, axis=1).astype(dt) for a in (x, q))
        pr, qr = (np.exp(a.astype(np.float64)).astype(dt) for a in (lp, lq))
        cases = [("logsumexp", (x,), dict(axis=1)), ("softmax", (x,), dict(axis=1)),
                 ("log_softmax", (x,), dict(axis=1))]
        for t in (0.4, 0.7, 1.0, 2.5):
            cases += [(f, (x, q)[:1 if f == "entropy" else 2], dict(temperature=t))
                      for f in ("entropy", "cross_entropy", "kl_div")]
        for f in ("entropy", "cross_entropy", "kl_div"):
            k = 1 if f == "entropy" else 2
            cases += [(f, (lp, lq)[:k], dict(kind="logprobs")), (f, (pr, qr)[:k], dict(kind="probs"))]
        for where, chunks in chunkings(n, rng):
            rows = int(rng.choice([3, 5, 11]))
            lazy = [getattr(kd, f)(*[da.from_array(a, chunks=(rows, chunks)) for a in args], **kw)
                    for f, args, kw in cases]
            for (f, args, kw), got in zip(cases, dask.compute(*lazy)):
                label = f + "".join(f" {k}={v}" for k, v in kw.items() if k != "axis")
                record((label, dt.name, where), got, getattr(kk, f)(*args, **kw))


def sweep_random(count, record):
    """Random lengths (1 to 70000), cuts, row chunks, temperatures; 2-D and
    3-D arrays reduced over one axis, several axes and all."""
    rng = np.random.default_rng(1234)
    for it in range(count):
        dt = DTYPES[it % len(DTYPES)]
        n = int(rng.choice([1, 2, 300, 2047, 2048, 2049, 5000, 70000 if it % 10 == 0 else 9000]))
        r = int(rng.integers(1, 7))
        x64 = rng.normal(0, rng.choice([0.01, 3, 30]), (r, n))
        x64[0, rng.integers(0, n, 3)] = -np.inf
        x, q = x64.astype(dt), (x64 + rng.normal(0, rng.choice([1e-5, 0.3, 3]), x64.shape)).astype(dt)
        cut = sorted(rng.choice(np.arange(1, n), size=min(int(rng.integers(0, 8)), n - 1),
                                replace=False).tolist()) if n > 1 else []
        ch = (int(rng.integers(1, r + 1)), tuple(np.diff([0] + cut + [n]).tolist()))
        X, Q = da.from_array(x, chunks=ch), da.from_array(q, chunks=ch)
        t = float(rng.choice([0.3, 0.7, 1.0, 2.5, 13.0]))
        calls = [("logsumexp", dict(axis=1)), ("softmax", dict(axis=1)), ("logsumexp", dict(axis=None)),
                 ("softmax", dict(axis=None)), ("entropy", dict(temperature=t)),
                 ("cross_entropy", dict(temperature=t)), ("kl_div", dict(temperature=t))]
        lazy = [getattr(kd, f)(*((X,) if f in ("logsumexp", "softmax", "entropy") else (X, Q)), **kw)
                for f, kw in calls]
        for (f, kw), got in zip(calls, dask.compute(*lazy)):
            args = (x,) if f in ("logsumexp", "softmax", "entropy") else (x, q)
            record((f + " random", dt.name, "random"), got, getattr(kk, f)(*args, **kw))
        s = tuple(int(v) for v in rng.integers(1, 40, 3))
        x3 = rng.normal(0, 3, s).astype(np.float32 if it % 2 else np.float64)
        X3 = da.from_array(x3, chunks=tuple(int(rng.integers(1, v + 1)) for v in s))
        for axes in ((0, 1), (1, 2), (0, 2), None):
            record(("logsumexp 3-D", x3.dtype.name, "random"), kd.logsumexp(X3, axis=axes).compute(),
                   kk.logsumexp(x3, axis=axes))
            record(("log_softmax 3-D", x3.dtype.name, "random"),
                   kd.log_softmax(X3, axis=axes).compute(), kk.log_softmax(x3, axis=axes))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="adversarial sweeps (about 30 s each)")
    ap.add_argument("--random", type=int, default=40, help="random cases")
    args = ap.parse_args()
    worst = {}

    def record(key, got, expected):
        got, expected = np.asarray(got), np.asarray(expected)
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        w = worst.setdefault(key, [0.0, 0, 0])
        w[0] = max(w[0], ulps(got, expected))
        w[1] += got.tobytes() != expected.tobytes()
        w[2] += 1

    with dask.config.set(scheduler="threads"):
        for seed in range(args.seeds):
            sweep_adversarial(seed, record)
        sweep_random(args.random, record)
    for key in sorted(worst):
        u, differ, n = worst[key]
        print(f"{' / '.join(key):55s} {n:4d} results  worst {u:g} ulp  {differ} not klkit's bytes")
    total = sum(w[2] for w in worst.values())
    differ = sum(w[1] for w in worst.values())
    print(f"{differ} of {total} results differ from klkit's bytes "
          f"(worst {max(w[0] for w in worst.values()):g} ulp)")


if __name__ == "__main__":
    main()
