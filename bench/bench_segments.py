"""Segmented reductions and KL estimators (spec section 4): segment_sum over
packed offsets, seq_kl with k3, segment_sum over padded values + mask.

This module also gives the inputs and implementations that bench/report.py
times for its segment cases (SEG_CASES there), so both measure the same
things (they are defined in klkit._benchmarks, which `klkit bench` uses):

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

from klkit._benchmarks import make_packed, make_padded
from klkit._benchmarks import segment_implementations as implementations

N_TOKENS = 10**7
N_SEQS = 20_000
PADDED = (2048, 4096)


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
