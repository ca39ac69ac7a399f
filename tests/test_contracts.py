"""Contracts every public function keeps.

Inputs are not modified; read-only, memory-mapped, non-contiguous,
transposed and Fortran-ordered inputs give the same bits as a contiguous
copy; empty and 0-d inputs have defined results; results are bitwise
identical for 1 and 2 threads and do not depend on the other rows of the
batch; bad arguments raise ValueError / TypeError naming the argument.
"""
import ast
import inspect
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import klkit as kk

from conftest import BFLOAT16, FLOAT_DTYPES, as_dtype, logprobs_array, nasty_array, out_dtype

ROW_FUNCTIONS = ["logsumexp", "softmax", "log_softmax", "entropy", "cross_entropy", "kl_div",
                 "js_div"]
TWO_ARGS = {"cross_entropy", "kl_div", "js_div"}
DIVERGENCES = ["entropy", "cross_entropy", "kl_div", "js_div"]

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def run(name, x, y=None, axis=-1, **kw):
    f = getattr(kk, name)
    if name in TWO_ARGS:
        return f(x, y, axis=axis, **kw)
    return f(x, axis=axis, **kw)


def inputs(shape=(6, 37), dtype=np.float32, fill="special"):
    return nasty_array(shape, dtype, fill, seed=0), nasty_array(shape, dtype, fill, seed=1)


def assert_same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes(), "results differ bitwise"


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).copy()


# --------------------------------------------------------------------------
# every public function (the registry), the same contracts
# --------------------------------------------------------------------------

FUNCTIONS = kk._registry.FUNCTIONS
NAMES = list(FUNCTIONS)
COMPLEX_OK = {"logsumexp", "softmax", "log_softmax"}     # scipy's complex rules


def _lengths(n_seq, hi, seed):
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, hi, n_seq)
    lens[rng.random(n_seq) < 0.2] = 0
    return lens


def calls(name, dtype=np.float32, rows=6, n=37, fill="special"):
    """The typical calls of public function ``name``: (label, kwargs) pairs
    whose array arguments are fresh NumPy arrays (floats of ``dtype``, about
    rows x n of them); the first call takes rows along the first axis of
    every array argument (the batch-invariance test cuts it)."""
    fam = FUNCTIONS[name].family
    x = nasty_array((rows, n), dtype, fill, seed=0)
    y = nasty_array((rows, n), dtype, fill, seed=1)
    arrays = FUNCTIONS[name].arrays
    if fam == "dense":
        arg = arrays[0]
        return [("rows", {arg: x, "axis": -1}), ("columns", {arg: x, "axis": 0}),
                ("all", {arg: x, "axis": None})]
    if fam == "divergence":
        ps = dict(zip(arrays, (x, y)))
        lps = {k: logprobs_array((rows, n), dtype, "neginf", seed=i) for i, k in enumerate(ps)}
        return [("logits", dict(ps)), ("columns-T", dict(ps, axis=0, temperature=0.5)),
                ("logprobs", dict(lps, kind="logprobs"))]
    if fam == "tokens":
        rng = np.random.default_rng(rows * n)
        t = rng.integers(0, n, rows)
        t[::3] = -100
        if name == "token_logprobs":
            return [("all", {"logits": x, "targets": t, "return_entropy": True,
                             "return_lse": True}),
                    ("T", {"logits": x, "targets": t, "temperature": 0.7})]
        w = rng.uniform(0.0, 2.0, n)
        return [("none", {"logits": x, "targets": t, "weight": w, "label_smoothing": 0.1,
                          "reduction": "none"}),
                ("mean", {"logits": x, "targets": t})]
    if name == "kl_estimate":
        return [("k3", {"logp": x, "ref_logp": y, "estimator": "k3"}),
                ("k2-bcast", {"logp": x, "ref_logp": y[-1:], "estimator": "k2", "clamp": 2.0})]
    lens = _lengths(rows, 2 * n, seed=rows + n)
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    v = nasty_array((int(offs[-1]),), dtype, fill, seed=2)
    u = nasty_array((int(offs[-1]),), dtype, "normal", seed=3)
    m = np.random.default_rng(n).random((rows, n)) < 0.7
    if name == "seq_kl":
        return [("packed", {"logp": v, "ref_logp": u, "offsets": offs, "estimator": "k3"}),
                ("padded", {"logp": x, "ref_logp": y, "mask": m, "reduce": "mean"})]
    if name == "agg_loss":
        return [("packed", {"values": v, "offsets": offs, "mode": "seq-mean-token-mean"}),
                ("padded", {"values": x, "mask": m})]
    return [("packed", {"values": v, "offsets": offs}), ("padded", {"values": x, "mask": m})]


def call(name, kw):
    return getattr(kk, name)(**kw)


def result_bits(r):
    """The bytes of a result (tuples field by field, None as a marker)."""
    if isinstance(r, tuple):
        return b"|".join(result_bits(v) for v in r)
    if r is None:
        return b"None"
    if hasattr(r, "numpy") and not isinstance(r, np.ndarray):
        r = r.numpy()
    a = np.asarray(r)
    return f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()


def with_arrays(kw, transform):
    """kw with ``transform`` applied to every array argument."""
    return {k: transform(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _strided(a):
    """The same values in a view with stride 2 along the last axis."""
    if a.ndim == 0:
        return a
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def _reversed(a):
    """The same values in a view with negative strides."""
    return a[(slice(None, None, -1),) * a.ndim].copy()[(slice(None, None, -1),) * a.ndim]


def _column_major(a):
    """The same values with the axes' memory order reversed (a transposed copy)."""
    return np.ascontiguousarray(a.T).T


def _byteswapped(a):
    """The same values in the other byte order (bfloat16 and bool have one)."""
    if a.dtype.name == "bfloat16" or a.dtype.itemsize == 1:
        return a
    return a.astype(a.dtype.newbyteorder())


LAYOUTS = {"read_only": _read_only, "strided": _strided, "reversed": _reversed,
           "fortran": np.asfortranarray, "column_major": _column_major,
           "byteswapped": _byteswapped}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_inputs_never_modified(name, dtype):
    for label, kw in calls(name, dtype):
        before = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
        call(name, kw)
        for k, v in before.items():
            assert kw[k].tobytes() == v.tobytes(), (label, k)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMES)
def test_any_memory_layout_gives_the_same_bits(name, layout):
    for dtype in (np.float32, np.float64, np.float16) + ((BFLOAT16,) if BFLOAT16 else ()):
        for label, kw in calls(name, dtype):
            expected = result_bits(call(name, kw))
            got = result_bits(call(name, with_arrays(kw, LAYOUTS[layout])))
            assert got == expected, (label, dtype)


@pytest.mark.parametrize("name", NAMES)
def test_memory_mapped_input(name, tmp_path):
    for label, kw in calls(name, np.float32):
        maps = {}
        for k, v in kw.items():
            if isinstance(v, np.ndarray):
                path = tmp_path / f"{label}-{k}.bin"
                v.tofile(path)
                maps[k] = np.memmap(path, v.dtype, "r", shape=v.shape)
        got = call(name, dict(kw, **maps))
        assert not isinstance(got, np.memmap) or np.ndim(got) == 0
        assert result_bits(got) == result_bits(call(name, kw)), label


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name", NAMES)
def test_threads_give_identical_bits(name, dtype, restore_threads):
    # big enough for the parallel paths: 48 rows of 20011, and one long row
    for rows, n in ((48, 20011), (2, 300_007)):
        for label, kw in calls(name, dtype, rows=rows, n=n, fill="normal"):
            kk.set_num_threads(1)
            one = result_bits(call(name, kw))
            kk.set_num_threads(2)
            assert result_bits(call(name, kw)) == one, (label, rows, n)


def _item(name, label, kw, i):
    """(the call of item i of the batch alone, its part of the batch result)."""
    fam = FUNCTIONS[name].family
    if fam == "segments" and "offsets" in kw:
        off = kw["offsets"]
        lo, hi = int(off[i]), int(off[i + 1])
        alone = {k: (v[lo:hi] if k in ("values", "logp", "ref_logp") else
                     np.array([0, hi - lo]) if k == "offsets" else v) for k, v in kw.items()}
    else:
        alone = {k: v[i:i + 1] if isinstance(v, np.ndarray) and (v.ndim == 2 or k == "targets")
                 else v for k, v in kw.items()}
    return alone, (lambda r: r[i] if not isinstance(r, tuple)
                   else tuple(None if v is None else v[i] for v in r))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name", [n for n in NAMES if n != "agg_loss"])   # agg_loss: one value
def test_item_result_independent_of_batch(name, dtype):
    """Row / sequence i gives the same bits alone and inside the batch."""
    label, kw = calls(name, dtype, rows=40, n=1031, fill="neginf")[0]
    full = call(name, kw)
    for i in (0, 1, 17, 39):
        alone, part = _item(name, label, kw, i)
        got = call(name, alone)
        got = got[0] if not isinstance(got, tuple) else tuple(
            None if v is None else v[0] for v in got)
        assert result_bits(got) == result_bits(part(full)), (label, i)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_has_a_defined_result(name, dtype):
    for label, kw in calls(name, dtype, rows=0, n=5):
        got = call(name, kw)
        for g in (got if isinstance(got, tuple) else (got,)):
            assert g is None or np.asarray(g).dtype == out_dtype(dtype), (label, g)


@pytest.mark.parametrize("name", NAMES)
def test_array_arguments_of_the_wrong_kind_name_themselves(name):
    for label, kw in calls(name, np.float64):
        for k, v in kw.items():
            if not isinstance(v, np.ndarray):
                continue
            bad = []
            if v.dtype.kind == "f" and name not in COMPLEX_OK:
                bad.append((v + 1j, TypeError))
            if v.dtype.kind == "f":
                bad.append((v.astype(str), (TypeError, ValueError)))
            if v.dtype.kind == "i":                       # targets, offsets
                bad.append((v.astype(np.float64), TypeError))
            for arr, exc in bad:
                with pytest.raises(exc) as info:
                    call(name, dict(kw, **{k: arr}))
                assert re.search(rf"\b{k}\b", str(info.value)), (label, k, str(info.value))


@pytest.mark.parametrize("name", NAMES)
def test_torch_cpu_tensors_give_torch_back(name):
    torch = pytest.importorskip("torch")
    for label, kw in calls(name, np.float32):
        tkw = with_arrays(kw, lambda a: torch.from_numpy(a.copy()))
        got = call(name, tkw)
        for g in (got if isinstance(got, tuple) else (got,)):
            assert g is None or isinstance(g, torch.Tensor), (label, type(g))
        assert result_bits(got) == result_bits(call(name, kw)), label
        for k, v in kw.items():                             # not modified
            if isinstance(v, np.ndarray):
                assert tkw[k].numpy().tobytes() == v.tobytes(), (label, k)


def test_registry_lists_every_public_function():
    assert len(FUNCTIONS) == 16
    for name, fn in FUNCTIONS.items():
        assert name in kk.__all__ and callable(getattr(kk, name)), name
        assert callable(getattr(kk.reference, name)), name
        assert getattr(kk, name).__module__ == f"klkit.{fn.family}", name
        params = inspect.signature(getattr(kk, name)).parameters
        assert set(fn.arrays) <= set(params), (name, fn.arrays)
        twin = inspect.signature(getattr(kk.reference, name)).parameters
        assert list(twin) == list(params), name


def _imports(path):
    """(level, module) of every import statement in a source file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((0, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


def test_reference_imports_nothing_of_the_compiled_path():
    """The oracle is independent: its modules import NumPy (and pyarrow for
    Arrow input), the standard library and each other only."""
    pkg = pathlib.Path(kk.reference.__file__).parent
    for path in pkg.glob("*.py"):
        for level, mod in _imports(path):
            if level == 0:
                assert mod.split(".")[0] not in ("klkit",), (path.name, mod)
            else:
                assert level == 1, (path.name, level, mod)        # within the package


def test_public_modules_reach_kernels_only_through_the_seam():
    src = pathlib.Path(kk.__file__).parent
    for fam in _registry_families():
        mods = {m for level, m in _imports(src / f"{fam}.py") if level == 1}
        assert mods <= {"", "_args", "_arrays", "_arrow", "_kernels", "_registry"}, (fam, mods)


def _registry_families():
    return sorted({f.family for f in FUNCTIONS.values()})


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_does_not_touch_input(name):
    x = nasty_array((4, 9), np.float64, "normal")
    x0 = x.copy()
    out = np.empty_like(x)
    getattr(kk, name)(x, axis=1, out=out)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ROW_FUNCTIONS)
def test_an_axis_and_its_transpose_give_the_same_rows(name, dtype):
    x, y = inputs((9, 40), dtype)
    expected = run(name, x, y, axis=1)
    got_t = run(name, x.T, y.T, axis=0)
    if name in ("softmax", "log_softmax"):
        got_t = got_t.T
    assert_same_bits(got_t, expected)
    # 3-D with a middle axis
    x3, y3 = inputs((3, 11, 5), dtype)
    got = run(name, np.transpose(x3, (2, 0, 1)), np.transpose(y3, (2, 0, 1)), axis=2)
    exp = run(name, x3, y3, axis=1)
    if name in ("softmax", "log_softmax"):
        got = np.transpose(got, (1, 2, 0))
    else:
        got = np.transpose(got, (1, 0))
    assert_same_bits(got, exp)

# --------------------------------------------------------------------------
# empty and 0-d inputs
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_empty_and_0d_dense(dtype):
    odt = out_dtype(dtype)
    # logsumexp: 0-d -> that value (a NumPy scalar); empty reduction -> -inf;
    # empty batch -> empty result
    r = kk.logsumexp(as_dtype(np.array(3.0), dtype))
    assert isinstance(r, np.generic) and r.dtype == odt and r == 3.0
    r = kk.logsumexp(as_dtype(np.array([]), dtype))
    assert isinstance(r, np.generic) and r.dtype == odt and r == -np.inf
    e = as_dtype(np.zeros((0, 3)), dtype)
    r = kk.logsumexp(e, axis=0)
    assert r.dtype == odt
    np.testing.assert_array_equal(r, np.full(3, -np.inf, odt))
    for axis in (1, -1):
        r = kk.logsumexp(e, axis=axis)
        assert r.shape == (0,) and r.dtype == odt
    r = kk.logsumexp(e, axis=1, keepdims=True)
    assert r.shape == (0, 1) and r.dtype == odt
    r = kk.logsumexp(e)
    assert r == -np.inf and r.dtype == odt
    # softmax / log_softmax: 0-d -> 1.0 / 0.0 (NumPy scalars); empty -> empty
    for name, val in (("softmax", 1.0), ("log_softmax", 0.0)):
        f = getattr(kk, name)
        r = f(as_dtype(np.array(-2.5), dtype))
        assert np.ndim(r) == 0 and np.asarray(r).dtype == odt and r == val
        for shape in ((0,), (0, 3), (3, 0)):
            for axis in (None, 0, -1):
                r = f(as_dtype(np.zeros(shape), dtype), axis=axis)
                assert isinstance(r, np.ndarray) and r.shape == shape and r.dtype == odt


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", DIVERGENCES)
def test_empty_and_0d_divergences(name, dtype):
    odt = out_dtype(dtype)
    # 0-d: there is no distribution axis -> ValueError
    z = as_dtype(np.array(1.0), dtype)
    with pytest.raises(ValueError):
        run(name, z, z)
    # empty batch: empty result
    e = as_dtype(np.zeros((0, 5)), dtype)
    r = run(name, e, e)
    assert isinstance(r, np.ndarray) and r.shape == (0,) and r.dtype == odt
    # empty distribution axis: NaN (logits, probs) / 0.0 (logprobs)
    e = as_dtype(np.zeros((2, 0)), dtype)
    for kind, val in (("logits", np.nan), ("probs", np.nan), ("logprobs", 0.0)):
        r = run(name, e, e, kind=kind)
        assert r.shape == (2,) and r.dtype == odt
        np.testing.assert_array_equal(r, [val, val])
    # a 1-D empty distribution reduces to a NumPy scalar
    r = run(name, as_dtype(np.zeros(0), dtype), as_dtype(np.zeros(0), dtype))
    assert isinstance(r, np.generic) and np.isnan(r)


# --------------------------------------------------------------------------
# threads and batch invariance
# --------------------------------------------------------------------------

@pytest.mark.openmp
def test_thread_controls(restore_threads):
    n0 = kk.get_num_threads()
    assert isinstance(n0, int) and n0 >= 1
    kk.set_num_threads(1)
    assert kk.get_num_threads() == 1
    kk.set_num_threads(2)
    assert kk.get_num_threads() == 2
    for bad in (0, -1):
        with pytest.raises(ValueError):
            kk.set_num_threads(bad)
    assert kk.get_num_threads() == 2


@pytest.mark.openmp
def test_thread_count_holds_in_every_thread(restore_threads):
    """set_num_threads is process-wide: a kernel called from another Python
    thread (a pool, a Dask worker thread) runs on the count set."""
    import threading

    seen = []

    def worker():
        kk.logsumexp(np.ones((4, 10), np.float32), axis=1)
        seen.append(kk.get_num_threads())

    for n in (1, 2, 1):
        kk.set_num_threads(n)
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen[-1] == n == kk.get_num_threads()


@pytest.mark.openmp
def test_omp_num_threads_is_honoured():
    code = "import klkit; print(klkit.get_num_threads())"
    for n in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=n)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == n


@pytest.mark.openmp
def test_threadpoolctl_sees_and_limits_the_pool(restore_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    kk.logsumexp(np.ones((4, 1000), np.float32), axis=1)     # make sure the runtime is loaded
    info = threadpoolctl.threadpool_info()
    omp = [d for d in info if d.get("user_api") == "openmp"]
    assert omp, info
    assert any("klkit" in d.get("filepath", "") or d.get("prefix", "").startswith(("libgomp", "libomp"))
               for d in omp)
    kk.set_num_threads(2)
    with threadpoolctl.threadpool_limits(1, "openmp"):
        assert kk.get_num_threads() == 1
        kk.logsumexp(np.ones((4, 10), np.float32), axis=1)
    assert kk.get_num_threads() == 2


THREAD_LIMIT_CODE = """
import threading
import numpy as np
import threadpoolctl
import klkit as kk

x = np.ones((4, 10), np.float32)
seen = []

def limited(setter=None):
    with threadpoolctl.threadpool_limits(1, "openmp"):
        kk.logsumexp(x, axis=1)
        seen.append(kk.get_num_threads())
        if setter is not None:
            t = threading.Thread(target=kk.set_num_threads, args=(setter,))
            t.start()
            t.join()
            kk.logsumexp(x, axis=1)
            seen.append(kk.get_num_threads())
    kk.logsumexp(x, axis=1)
    seen.append(kk.get_num_threads())

kk.set_num_threads(3)
t = threading.Thread(target=limited)
t.start()
t.join()
limited(setter=2)
print(seen)
"""


@pytest.mark.openmp
def test_threadpoolctl_limit_holds_in_any_thread():
    """A thread's own limit (threadpoolctl's) holds against set_num_threads,
    in a thread klkit never ran in and while another thread sets a count;
    after it, the count set applies again.  (In a fresh process whose
    OpenMP default is the core count, so that a limit of 1 is the thread's
    own.)"""
    pytest.importorskip("threadpoolctl")
    if (os.cpu_count() or 1) == 1:
        pytest.skip("one core: a limit of 1 is OpenMP's default")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", THREAD_LIMIT_CODE], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # a new thread: 1 inside the limit, 3 after; this thread: 1, still 1
    # after another thread set 2, then 2
    assert out.stdout.strip() == "[1, 3, 1, 1, 2]"


# --------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------

X = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
Y = X[::-1].copy()


def _div(name, **kw):
    return lambda: run(name, X, Y, **kw)


BAD = []
for _n in DIVERGENCES:
    BAD += [
        (f"{_n}-kind", _div(_n, kind="prob"), ValueError, r"\bkind\b"),
        (f"{_n}-kind-None", _div(_n, kind=None), (ValueError, TypeError), r"\bkind\b"),
        (f"{_n}-base1", _div(_n, base=1), ValueError, r"\bbase\b"),
        (f"{_n}-base0", _div(_n, base=0), ValueError, r"\bbase\b"),
        (f"{_n}-base-neg", _div(_n, base=-2.0), ValueError, r"\bbase\b"),
        (f"{_n}-base-inf", _div(_n, base=np.inf), ValueError, r"\bbase\b"),
        (f"{_n}-base-nan", _div(_n, base=np.nan), ValueError, r"\bbase\b"),
        (f"{_n}-base-str", _div(_n, base="two"), (ValueError, TypeError), r"\bbase\b"),
        (f"{_n}-temp0", _div(_n, temperature=0.0), ValueError, r"\btemperature\b"),
        (f"{_n}-temp-neg", _div(_n, temperature=-1.0), ValueError, r"\btemperature\b"),
        (f"{_n}-temp-inf", _div(_n, temperature=np.inf), ValueError, r"\btemperature\b"),
        (f"{_n}-temp-nan", _div(_n, temperature=np.nan), ValueError, r"\btemperature\b"),
        (f"{_n}-temp-str", _div(_n, temperature="hot"), (ValueError, TypeError), r"\btemperature\b"),
        (f"{_n}-temp-probs", _div(_n, temperature=0.5, kind="probs"), ValueError, r"\btemperature\b"),
        (f"{_n}-temp-logprobs", _div(_n, temperature=2.0, kind="logprobs"), ValueError,
         r"\btemperature\b"),
        (f"{_n}-axis", _div(_n, axis=2), ValueError, r"\baxis\b"),
        (f"{_n}-axis-neg", _div(_n, axis=-3), ValueError, r"\baxis\b"),
        (f"{_n}-axis-float", _div(_n, axis=1.0), TypeError, r"\baxis\b"),
        (f"{_n}-complex-p", lambda n=_n: run(n, X + 1j, Y), TypeError, r"\bp\b"),
        (f"{_n}-string-p", lambda n=_n: run(n, np.array(["a", "b"]), np.array(["c", "d"])),
         (TypeError, ValueError), r"\bp\b"),
        (f"{_n}-object-p", lambda n=_n: run(n, np.array([1.0, None]), np.array([1.0, 2.0])),
         (TypeError, ValueError), r"\bp\b"),
    ]
for _n in TWO_ARGS:
    BAD += [
        (f"{_n}-complex-q", lambda n=_n: run(n, X, Y + 1j), TypeError, r"\bq\b"),
        (f"{_n}-string-q", lambda n=_n: run(n, X, np.full(X.shape, "x")), (TypeError, ValueError),
         r"\bq\b"),
        (f"{_n}-shapes", lambda n=_n: run(n, np.ones((3, 4)), np.ones((3, 5))), ValueError,
         r"\bp\b.*\bq\b|\bq\b.*\bp\b"),
        (f"{_n}-shapes2", lambda n=_n: run(n, np.ones((2, 3, 4)), np.ones((3, 3, 4))), ValueError,
         r"\bp\b.*\bq\b|\bq\b.*\bp\b"),
    ]
for _beta in (-0.1, 1.5, np.nan, np.inf):
    BAD.append((f"js-beta-{_beta}", lambda b=_beta: kk.js_div(X, Y, beta=b), ValueError, r"\bbeta\b"))
BAD.append(("js-beta-str", lambda: kk.js_div(X, Y, beta="half"), (ValueError, TypeError), r"\bbeta\b"))
for _n in ("logsumexp", "softmax", "log_softmax"):
    _arg = "a" if _n == "logsumexp" else "x"
    BAD += [
        (f"{_n}-axis", lambda n=_n: getattr(kk, n)(X, axis=2), ValueError, r"\baxis\b"),
        (f"{_n}-axis-neg", lambda n=_n: getattr(kk, n)(X, axis=-3), ValueError, r"\baxis\b"),
        (f"{_n}-axis-tuple", lambda n=_n: getattr(kk, n)(X, axis=(0, 2)), ValueError, r"\baxis\b"),
        (f"{_n}-axis-repeat", lambda n=_n: getattr(kk, n)(X, axis=(1, 1)), ValueError, r"\baxis\b"),
        (f"{_n}-axis-float", lambda n=_n: getattr(kk, n)(X, axis=0.5), TypeError, r"\baxis\b"),
        (f"{_n}-string", lambda n=_n: getattr(kk, n)(np.array(["1.0", "2.0"])), (TypeError, ValueError),
         rf"\b{_arg}\b"),
        (f"{_n}-object", lambda n=_n: getattr(kk, n)(np.array([1.0, None])), (TypeError, ValueError),
         rf"\b{_arg}\b"),
    ]
for _n in ("softmax", "log_softmax"):
    BAD += [
        (f"{_n}-out-shape", lambda n=_n: getattr(kk, n)(X, axis=1, out=np.empty((4, 3))), ValueError,
         r"\bout\b"),
        (f"{_n}-out-dtype", lambda n=_n: getattr(kk, n)(X, axis=1, out=np.empty((3, 4), np.float32)),
         ValueError, r"\bout\b"),
        (f"{_n}-out-list", lambda n=_n: getattr(kk, n)(X, axis=1, out=[[0.0] * 4] * 3), (ValueError, TypeError),
         r"\bout\b"),
        (f"{_n}-out-readonly", lambda n=_n: getattr(kk, n)(X, axis=1, out=np.broadcast_to(np.zeros(4), (3, 4))),
         ValueError, r"\bout\b"),
    ]
BAD += [
    ("logsumexp-b-shape", lambda: kk.logsumexp(X, b=np.ones(5)), ValueError, r"\bb\b"),
    ("set_num_threads-0", lambda: kk.set_num_threads(0), ValueError, r"."),
]


@pytest.mark.parametrize("call,exc,pattern", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_arguments_raise_clear_errors(call, exc, pattern):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert re.search(pattern, msg), f"message {msg!r} does not name the argument ({pattern})"


def test_good_edge_arguments_accepted():
    """Values at the edge of the valid ranges are accepted."""
    assert kk.js_div(X, Y, beta=0.0).shape == (3,)
    assert kk.js_div(X, Y, beta=1).shape == (3,)
    assert np.all(np.isfinite(kk.entropy(X, base=0.5)))
    assert np.all(np.isfinite(kk.entropy(X, base=1e-3)))
    assert np.all(np.isfinite(kk.kl_div(X, Y, temperature=1e-3)))
    assert np.all(np.isfinite(kk.kl_div(np.exp(X), np.exp(Y), kind="probs", temperature=1.0)))
    assert kk.entropy(X, base=np.float32(2)).dtype == np.float64
    assert kk.entropy(X, axis=np.int64(0)).shape == (4,)


# --------------------------------------------------------------------------
# package surface
# --------------------------------------------------------------------------

def test_version_is_a_string():
    assert isinstance(kk.__version__, str) and kk.__version__
    assert re.match(r"^\d+(\.\d+)*", kk.__version__), kk.__version__


@pytest.mark.openmp
def test_show_config_prints_version_and_threads(capsys, restore_threads):
    kk.set_num_threads(1)
    kk.show_config()
    out = capsys.readouterr().out
    assert kk.__version__ in out
    assert "thread" in out.lower()
    assert re.search(r"threads?\D{0,3}1\b", out.lower()), out
    kk.set_num_threads(2)
    kk.show_config()
    out2 = capsys.readouterr().out
    assert re.search(r"threads?\D{0,3}2\b", out2.lower()), out2
    assert "openmp" in out.lower() and "cuda" in out.lower()


@pytest.mark.skipif(BFLOAT16 is None, reason="ml_dtypes not installed")
def test_torch_bfloat16_tensor():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-3, 3, 20).reshape(2, 10).to(torch.bfloat16)
    got = kk.log_softmax(t, axis=-1)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    ref = kk.log_softmax(t.float().numpy(), axis=-1)
    np.testing.assert_array_equal(got.numpy(), ref)


# --------------------------------------------------------------------------
# views the kernels read in place, and the few they cannot
# --------------------------------------------------------------------------

def _views_of(x):
    """Views of the values of x (3-D) in other layouts, each with the
    permutation that brings it back to x's axes."""
    wide = np.zeros(x.shape[:-1] + (3 * x.shape[-1],), x.dtype)
    wide[..., 1::3] = x
    yield wide[..., 1::3], None                                  # strided last axis
    t = np.ascontiguousarray(np.transpose(x, (2, 0, 1)))
    yield np.transpose(t, (1, 2, 0)), None                       # axes permuted in memory
    yield x[::-1, :, ::-1].copy()[::-1, :, ::-1], None           # negative strides


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("axis", [(0, 2), (1, 2), (0, 1), None, (2,), 1])
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_rows_over_several_axes_of_a_view(name, axis, dtype):
    """A row spanning several axes of a strided view is gathered in the
    order of its contiguous copy: the same bits."""
    x = nasty_array((5, 7, 301), dtype, "special", seed=3)
    f = getattr(kk, name)
    expected = result_bits(f(x, axis=axis))
    for v, _ in _views_of(x):
        assert result_bits(f(v, axis=axis)) == expected


@pytest.mark.parametrize("name", ["logsumexp", "kl_div", "token_logprobs", "segment_sum"])
def test_views_the_kernels_cannot_read_are_copied(name):
    """Unaligned data and views with more axes than the kernels take give
    the same bits through a copy."""
    x = nasty_array((2,) * 10 + (33,), np.float32, "normal", seed=4)   # 11 axes, 10 leading
    raw = np.zeros(x.size * 4 + 1, np.uint8)
    unaligned = raw[1:].view(np.float32).reshape(x.shape)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    spread = np.zeros((2, 3) * 10 + (33,), np.float32)[(slice(None), 1) * 10]
    spread[...] = x                                                    # 10 unmergeable axes
    f = {"logsumexp": lambda a: kk.logsumexp(a, axis=-1),
         "kl_div": lambda a: kk.kl_div(a, a[::-1]),
         "token_logprobs": lambda a: kk.token_logprobs(a, np.zeros(a.shape[:-1], np.int64)),
         "segment_sum": lambda a: kk.segment_sum(a.reshape(-1)[::3],
                                                 np.array([0, 7, 7, a.size // 3]))}[name]
    expected = result_bits(f(x))
    assert result_bits(f(unaligned)) == expected
    if name != "segment_sum":
        assert result_bits(f(spread)) == expected


def test_empty_views_of_any_stride():
    """Nothing is read from an empty view, whatever its strides."""
    r = np.zeros(10, [("a", "f4"), ("b", "u1")])["a"]          # stride 5 bytes
    assert kk.logsumexp(r[3:3]) == -np.inf
    assert kk.segment_sum(r[3:3], [0, 0]).tolist() == [0.0]
    assert kk.softmax(r[3:3]).shape == (0,)


def test_out_whose_elements_overlap_is_refused():
    base = np.zeros(64, np.float32)
    x = np.zeros((2, 3, 4), np.float32)
    for strides in ((16, 0, 4), (0, 16, 4), (16, 4, 0)):
        out = np.lib.stride_tricks.as_strided(base, (2, 3, 4), strides)
        with pytest.raises(ValueError, match="out"):
            kk.softmax(x, axis=-1, out=out)


def test_objects_of_gpu_modules_without_the_interface_are_refused():
    """An object of CuPy's module that is not a GPU array (no
    __cuda_array_interface__; here a stand-in) is refused with a TypeError
    naming the argument, not read as host memory (real GPU arrays take the
    GPU path: tests/test_gpu.py)."""
    fake = type("ndarray", (), {"__module__": "cupy._core.core"})()
    for call_, name in ((lambda: kk.logsumexp(fake), "a"),
                        (lambda: kk.kl_div(np.zeros(3), fake), "q"),
                        (lambda: kk.segment_sum(fake, [0, 1]), "values")):
        with pytest.raises(TypeError, match=rf"^{name}: CuPy arrays"):
            call_()


def test_ragged_nested_lists_say_what_to_pass():
    with pytest.raises(ValueError, match=r"^values: nested sequences of different lengths .* "
                                         r"offsets.*mask.*pyarrow list array$"):
        kk.segment_sum([[1.0, 2.0], [3.0]], mask=[[True, True], [True]])
    with pytest.raises(ValueError, match=r"^x: nested sequences of different lengths"):
        kk.softmax([[1.0, 2.0], [3.0]])


def test_any_torch_argument_gives_torch_results():
    """The frameworks' rule: a torch tensor anywhere among the array
    arguments (targets, offsets, masks, weights included) gives torch out."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    t, v, off = np.array([0, 1, 2]), np.zeros(4, np.float32), np.array([0, 2, 4])
    T = torch.from_numpy
    calls = [lambda: kk.kl_div(x, T(x)), lambda: kk.js_div(x, T(x)),
             lambda: kk.cross_entropy(x, T(x)), lambda: kk.logsumexp(x, b=T(np.ones(5))),
             lambda: kk.token_logprobs(x, T(t)), lambda: kk.softmax_cross_entropy(x, T(t)),
             lambda: kk.softmax_cross_entropy(x, t, weight=T(np.ones(5, np.float32))),
             lambda: kk.kl_estimate(x, T(x)), lambda: kk.seq_kl(v, T(v), off),
             lambda: kk.segment_sum(v, T(off)), lambda: kk.agg_loss(v, T(off)),
             lambda: kk.segment_max(x, mask=T(x > 0))]
    for call in calls:
        assert isinstance(call(), torch.Tensor)
    assert isinstance(kk.kl_div(x, x), np.ndarray)
