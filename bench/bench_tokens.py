"""Per-token log-probs: token_logprobs (with and without entropy) and
softmax_cross_entropy (spec section 3), on LLM-vocabulary rows.

One benchmark per (function, shape, dtype, implementation); implementations
are defined in _recipes.py ("floor" is np.max over the same input plus the
targets). Run: python -m pytest bench --benchmark-only
"""

import pytest

import _recipes as R

pytestmark = pytest.mark.benchmark(max_time=0.5, min_rounds=5, warmup=False)

ROWS32 = (256, 32768)   # 32 MiB of float32 logits
CASES = [
    ("token_logprobs", ROWS32, "float32"),
    ("token_logprobs", ROWS32, "bfloat16"),
    ("token_logprobs_entropy", ROWS32, "float32"),
    ("softmax_cross_entropy", ROWS32, "float32"),
]


@pytest.mark.parametrize(
    "func,shape,dtype,impl",
    [pytest.param(*p, id=R.bench_id(*p)) for p in R.bench_matrix(CASES)],
)
def test_tokens(run_case, func, shape, dtype, impl):
    run_case(func, shape, dtype, impl)
