"""Implementations shared by bench/report.py and the pytest-benchmark suites.

The numpy recipes, the scipy / torch implementations of every benchmarked
function, the inputs and the bandwidth floor live in the installed package
(klkit._benchmarks, which the `klkit bench` command uses too); this module
re-exports them and adds the pytest-benchmark matrix.  Importing it imports
klkit (callers check that it imports first, so that a missing package gives
a clear message) and the optional competitors (torch, ml_dtypes: None here
when they are not installed).
"""

from __future__ import annotations

try:
    from klkit import _benchmarks as B
except ImportError as exc:
    raise ImportError(
        f"bench/: the installed klkit has no klkit._benchmarks ({exc}); "
        "reinstall klkit from this checkout") from exc

from klkit._benchmarks import (  # noqa: F401  (re-exported for the bench scripts)
    KLKIT_NAME, ROLES, acc_dtype, floor_fn, implementations, klkit_has, make_input, np_dtype)

B.load_optional()
torch, ml_dtypes = B.torch, B.ml_dtypes

# --------------------------------------------------------------------------
# pytest-benchmark matrix (bench_dense.py, bench_divergence.py)
# --------------------------------------------------------------------------

BENCH_IMPLS = ("floor", "klkit", "scipy", "torch", "numpy")
NO_SCIPY = {"log_softmax_out", "token_logprobs_entropy"}


def bench_matrix(cases):
    """(func, shape, dtype, impl) for each case and implementation that exists."""
    for func, shape, dtype in cases:
        for impl in BENCH_IMPLS:
            if impl == "scipy" and func in NO_SCIPY:
                continue
            yield func, shape, dtype, impl


def bench_id(func, shape, dtype, impl):
    return f"{func}-{'x'.join(map(str, shape))}-{dtype}-{impl}"
