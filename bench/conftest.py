"""pytest-benchmark suites for klkit (not run in CI).

    python -m pytest bench --benchmark-only [--benchmark-group-by=group]

Collects bench/bench_*.py. Threads for klkit, torch and BLAS/OpenMP pools:
KLKIT_BENCH_THREADS (default 2). The ratio table is bench/report.py.
"""

import fnmatch
import os
import sys

import numpy as np
import pytest

try:
    import klkit
except ImportError as exc:
    pytest.exit(
        f"bench/: cannot import klkit ({exc}). Build and install the package first.",
        returncode=4,
    )

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _recipes as R  # noqa: E402

THREADS = int(os.environ.get("KLKIT_BENCH_THREADS", "2"))


def pytest_collect_file(file_path, parent):
    # bench_*.py does not match pytest's default python_files (test_*.py)
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if any(fnmatch.fnmatch(file_path.name, pat) for pat in parent.config.getini("python_files")):
        return None  # already collected by the default collector
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest collects it itself
    return pytest.Module.from_parent(parent, path=file_path)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    if hasattr(klkit, "set_num_threads"):
        klkit.set_num_threads(THREADS)
    if R.torch is not None:
        R.torch.set_num_threads(THREADS)
    try:
        import threadpoolctl
    except ImportError:
        yield
        return
    with threadpoolctl.threadpool_limits(limits=THREADS):
        yield


@pytest.fixture(scope="session")
def bench_input():
    """Inputs made once per (shape, dtype, role) and shared by all implementations."""
    cache = {}

    def get(shape, dtype, role):
        key = (tuple(shape), dtype, role)
        if key not in cache:
            cache[key] = R.make_input(*key)
        return cache[key]

    return get


@pytest.fixture
def run_case(benchmark, bench_input):
    """Benchmark implementation `impl` of `func` on inputs of `shape`, `dtype`."""

    def run(func, shape, dtype, impl):
        if dtype == "bfloat16" and R.ml_dtypes is None:
            pytest.skip("ml_dtypes is not installed")
        if impl == "torch" and R.torch is None:
            pytest.skip("torch is not installed")
        if impl == "klkit" and not R.klkit_has(func):
            pytest.skip(f"klkit has no {R.KLKIT_NAME.get(func, func)} yet")
        xs = [bench_input(shape, dtype, role) for role in R.ROLES.get(func, ("p",))]
        out = None
        if func == "log_softmax_out":
            out = np.zeros(shape, R.acc_dtype(xs[0].dtype))
        if impl == "floor":  # np.max over every input: the read-bandwidth floor
            floors = [R.floor_fn(x) for x in xs]
            fn = floors[0] if len(floors) == 1 else (lambda: [f() for f in floors])
        else:
            impls = R.implementations(func, xs, out)
            if impl not in impls:
                pytest.skip(f"{impl} is not installed")
            fn = impls[impl]
        benchmark.group = f"{func} {'x'.join(map(str, shape))} {dtype}"
        benchmark.extra_info.update(impl=impl, input_bytes=sum(x.nbytes for x in xs),
                                    threads=THREADS)
        benchmark(fn)

    return run
