"""Segmented reductions and KL estimators (spec section 4): segment_sum over
packed offsets, seq_kl with k3, segment_sum over padded values + mask.

This module also defines the inputs and implementations that bench/report.py
times for its segment cases (SEG_CASES there), so both measure the same
things:

    floor     np.sum over every input array (values; logp and ref_logp;
              values and mask): one single-threaded read pass;
    klkit     the klkit function (2 threads by default);
    reduceat  np.add.reduceat over the offsets: float32 accumulation, and
              an empty segment would get its neighbour's element (the
              inputs here have none, so the results are comparable);
              seq_kl: the framework formula exp(r) - r - 1 first;
    torch     torch.segment_reduce(data, "sum", lengths=...) on zero-copy
              views (padded: (values * mask).sum(-1), as RL frameworks do);
    numpy     a cumsum recipe in float64 (the cheapest correct NumPy way:
              one float64 cumsum, differences at the offsets) for packed
              input; np.where(mask, values, 0).sum(-1) for padded.

Run: python -m pytest bench/bench_segments.py --benchmark-only
"""

import numpy as np
import pytest

import _recipes as R
import klkit as kk

torch = R.torch

N_TOKENS = 10**7
N_SEQS = 20_000
PADDED = (2048, 4096)


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def make_packed(n_tokens=N_TOKENS, n_seqs=N_SEQS, dtype="float32", seed=1):
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


def make_padded(shape=PADDED, dtype="float32", seed=2):
    """(values [B, T], mask [B, T] bool): response masks are prefixes of random
    length in [1, T]."""
    rng = np.random.default_rng(seed)
    gen = np.float64 if dtype == "float64" else np.float32
    v = rng.standard_normal(shape, dtype=gen)
    mask = np.arange(shape[1])[None, :] < rng.integers(1, shape[1] + 1, shape[0])[:, None]
    return v, mask


# --------------------------------------------------------------------------
# implementations: {name: zero-argument callable}
# --------------------------------------------------------------------------

def np_cumsum_segment_sum(x, offsets):
    """Per-segment sums from one float64 cumulative sum (empty segments give 0)."""
    c = np.empty(x.size + 1, np.float64)
    c[0] = 0.0
    np.cumsum(x, dtype=np.float64, out=c[1:])
    return c[offsets[1:]] - c[offsets[:-1]]


def floors(arrays):
    fs = [(lambda a=a: np.sum(a)) for a in arrays]
    return lambda: [f() for f in fs]


def implementations(case, inputs):
    """Implementations of a segment case: "seg_sum", "seq_kl" or "seg_padded"."""
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


def make_inputs(case, quick=False):
    if case == "seg_padded":
        return make_padded((512, 4096) if quick else PADDED)
    n = N_TOKENS // 5 if quick else N_TOKENS
    return make_packed(n, N_SEQS // 5 if quick else N_SEQS)


def input_bytes(inputs):
    return sum(a.nbytes for a in inputs if a.ndim and a.size > 1 and a.dtype != np.int64)


# --------------------------------------------------------------------------
# pytest-benchmark
# --------------------------------------------------------------------------

pytestmark = pytest.mark.benchmark(max_time=0.5, min_rounds=5, warmup=False)

CASES = ["seg_sum", "seq_kl", "seg_padded"]
IMPLS = ["floor", "klkit", "reduceat", "torch", "numpy"]
_INPUTS = {}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES)
def test_segments(benchmark, case, impl):
    if case not in _INPUTS:
        _INPUTS[case] = make_inputs(case)
    fns = implementations(case, _INPUTS[case])
    if impl not in fns:
        pytest.skip(f"{impl} has no {case} implementation here")
    benchmark.group = f"segments {case}"
    benchmark.extra_info.update(impl=impl, input_bytes=input_bytes(_INPUTS[case]))
    benchmark(fns[impl])
