"""Accuracy against mpmath (50 digits): klkit next to scipy and torch.

    python bench/accuracy.py [--kl-rows N] [--seed S]

Prints the figures quoted in the README's accuracy table: worst ulp error of
logsumexp / log_softmax over random rows, relative error of KL for nearly
identical logits (where the textbook sum p (log p - log q) loses every
digit), of the entropy of a near one-hot row, and the worst relative error
of kl_div over N random rows per dtype of any spread (default 40; the
README's figure is over more seeds).  torch is optional.
"""
import argparse

import mpmath as mp
import numpy as np
import scipy.special as sp
import scipy.stats as st

import klkit as kk

mp.mp.dps = 50


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
    rng = np.random.default_rng(seed)
    worst = {}
    for _ in range(n_rows):
        n = int(rng.integers(2000, 7000))
        scale, sig = 10 ** rng.uniform(-1, 1), 10 ** rng.uniform(-6, 0.5)
        off = rng.choice([0.0, sig * rng.uniform(0, 1), sig * rng.uniform(0, 5), rng.uniform(-3, 3)])
        t = float(rng.choice([1.0, 10 ** rng.uniform(-0.5, 0.5)]))
        x = scale * rng.normal(size=n)
        y = x + off + sig * rng.normal(size=n)
        for dt in (np.float32, np.float64):
            xd, yd = x.astype(dt), y.astype(dt)
            e = mp_kl(xd, yd, t)
            worst[dt.__name__] = max(worst.get(dt.__name__, 0.0), rel(kk.kl_div(xd, yd, temperature=t), e))
    for k, v in worst.items():
        print(f"KL {n_rows} random rows (any spread, temperatures) {k}: klkit worst {v:.1e} relative")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kl-rows", type=int, default=40, help="random rows per dtype for the KL sweep")
    ap.add_argument("--seed", type=int, default=0, help="seed of the KL sweep")
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
