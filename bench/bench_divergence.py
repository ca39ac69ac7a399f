"""Divergences along the last axis: entropy, cross_entropy, kl_div, js_div (spec section 2).

Inputs are logits (kind="logits", q a nearby distribution of p) except
"entropy_probs" (kind="probs" against scipy.stats.entropy). One benchmark per
(function, shape, dtype, implementation); "floor" is np.max over every input.
Run: python -m pytest bench --benchmark-only
"""

import pytest

import _recipes as R

pytestmark = pytest.mark.benchmark(max_time=0.5, min_rounds=5, warmup=False)

ROWS32 = (128, 32768)
ROWS64 = (512, 4096)

CASES = [
    ("entropy", ROWS32, "float32"),
    ("entropy", ROWS64, "float64"),
    ("entropy_probs", ROWS32, "float32"),
    ("cross_entropy", ROWS32, "float32"),
    ("cross_entropy", ROWS64, "float64"),
    ("kl_div", ROWS32, "float32"),
    ("kl_div", ROWS64, "float64"),
    ("kl_div", ROWS32, "bfloat16"),
    ("js_div", ROWS32, "float32"),
    ("js_div", ROWS64, "float64"),
]


@pytest.mark.parametrize(
    "func,shape,dtype,impl",
    [pytest.param(*p, id=R.bench_id(*p)) for p in R.bench_matrix(CASES)],
)
def test_divergence(run_case, func, shape, dtype, impl):
    run_case(func, shape, dtype, impl)
