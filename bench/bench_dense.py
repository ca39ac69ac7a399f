"""Dense log-space functions: logsumexp, softmax, log_softmax (spec section 1).

One benchmark per (function, shape, dtype, implementation); implementations
are defined in _recipes.py ("floor" is np.max over the same input, the memory
bandwidth floor). Run: python -m pytest bench --benchmark-only
"""

import pytest

import _recipes as R

pytestmark = pytest.mark.benchmark(max_time=0.5, min_rounds=5, warmup=False)

ROWS32 = (128, 32768)   # LLM-vocab-like rows, 16 MiB of float32
ROWS64 = (512, 4096)    # 16 MiB of float64

CASES = [
    ("logsumexp", ROWS32, "float32"),
    ("logsumexp", ROWS64, "float64"),
    ("logsumexp", (10**6,), "float64"),
    ("logsumexp", ROWS32, "bfloat16"),
    ("softmax", ROWS32, "float32"),
    ("softmax", ROWS64, "float64"),
    ("log_softmax", ROWS32, "float32"),
    ("log_softmax", ROWS64, "float64"),
    ("log_softmax_out", ROWS32, "float32"),   # out= preallocated
]


@pytest.mark.parametrize(
    "func,shape,dtype,impl",
    [pytest.param(*p, id=R.bench_id(*p)) for p in R.bench_matrix(CASES)],
)
def test_dense(run_case, func, shape, dtype, impl):
    run_case(func, shape, dtype, impl)
