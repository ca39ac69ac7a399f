"""Contracts every public function keeps (SPEC section 0 and 5).

Inputs are not modified; read-only, memory-mapped, non-contiguous,
transposed and Fortran-ordered inputs give the same bits as a contiguous
copy; empty and 0-d inputs have defined results; results are bitwise
identical for 1 and 2 threads and do not depend on the other rows of the
batch; bad arguments raise ValueError / TypeError naming the argument.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import klkit as kk

from conftest import BFLOAT16, FLOAT_DTYPES, as_dtype, nasty_array, out_dtype

PUBLIC = ["logsumexp", "softmax", "log_softmax", "entropy", "cross_entropy", "kl_div", "js_div"]
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
# inputs are never modified
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", PUBLIC)
def test_input_not_modified(name, dtype):
    x, y = inputs((5, 33), dtype)
    x0, y0 = bits(x), bits(y)
    variants = [dict(axis=-1), dict(axis=0)]
    if name in DIVERGENCES:
        variants += [dict(temperature=0.5), dict(kind="probs"), dict(kind="logprobs"), dict(base=2)]
    if name == "js_div":
        variants.append(dict(beta=0.3))
    if name == "logsumexp":
        variants += [dict(axis=None), dict(b=np.full(33, 0.5), return_sign=True)]
    for kw in variants:
        kw = dict(kw)
        axis = kw.pop("axis", -1)
        run(name, x, y, axis=axis, **kw)
        assert np.array_equal(bits(x), x0) and np.array_equal(bits(y), y0), kw


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_out_does_not_touch_input(name):
    x = nasty_array((4, 9), np.float64, "normal")
    x0 = x.copy()
    out = np.empty_like(x)
    getattr(kk, name)(x, axis=1, out=out)
    np.testing.assert_array_equal(x, x0)


# --------------------------------------------------------------------------
# memory layouts
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", PUBLIC)
def test_read_only_input(name, dtype):
    x, y = inputs((4, 21), dtype)
    expected = run(name, x, y)
    xr, yr = x.copy(), y.copy()
    xr.flags.writeable = False
    yr.flags.writeable = False
    assert_same_bits(run(name, xr, yr), expected)
    # a read-only broadcast view as well
    row = np.broadcast_to(x[0], (3, 21))
    assert_same_bits(run(name, row, np.broadcast_to(y[0], (3, 21))),
                     run(name, np.ascontiguousarray(row), np.ascontiguousarray(np.broadcast_to(y[0], (3, 21)))))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("name", PUBLIC)
def test_memory_mapped_input(name, dtype, tmp_path):
    x, y = inputs((7, 50), dtype)
    paths = []
    for arr, fname in ((x, "x.bin"), (y, "y.bin")):
        path = tmp_path / fname
        mm = np.memmap(path, dtype=dtype, mode="w+", shape=arr.shape)
        mm[...] = arr
        mm.flush()
        del mm
        paths.append(path)
    xm = np.memmap(paths[0], dtype=dtype, mode="r", shape=x.shape)
    ym = np.memmap(paths[1], dtype=dtype, mode="r", shape=y.shape)
    for axis in (-1, 0):
        got = run(name, xm, ym, axis=axis)
        assert not isinstance(got, np.memmap) or got.shape == ()  # a plain result
        assert_same_bits(np.asarray(got), np.asarray(run(name, x, y, axis=axis)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", PUBLIC)
def test_non_contiguous_input(name, dtype):
    x, y = inputs((8, 61), dtype)
    for sl in (np.s_[:, ::2], np.s_[::2, :], np.s_[1::3, 5:-3:3], np.s_[:, ::-1]):
        xs, ys = x[sl], y[sl]
        for axis in (-1, 0):
            assert_same_bits(run(name, xs, ys, axis=axis),
                             run(name, np.ascontiguousarray(xs), np.ascontiguousarray(ys), axis=axis))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", PUBLIC)
def test_transposed_and_fortran_input(name, dtype):
    x, y = inputs((9, 40), dtype)
    expected = run(name, x, y, axis=1)
    # x.T reduced along axis 0 sees the same rows
    got_t = run(name, x.T, y.T, axis=0)
    if name in ("softmax", "log_softmax"):
        got_t = got_t.T
    assert_same_bits(got_t, expected)
    # Fortran order: same values, same result
    xf, yf = np.asfortranarray(x), np.asfortranarray(y)
    for axis in (0, 1):
        assert_same_bits(run(name, xf, yf, axis=axis), run(name, x, y, axis=axis))
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


@pytest.mark.parametrize("shape", [(64, 5000), (3, 300_000)])
@pytest.mark.parametrize("name", PUBLIC)
def test_threads_give_identical_bits(name, shape, restore_threads):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, shape).astype(np.float32)
    y = rng.normal(0, 3, shape).astype(np.float32)
    x[0, 17] = -np.inf
    kk.set_num_threads(1)
    one = run(name, x, y)
    kk.set_num_threads(2)
    two = run(name, x, y)
    assert_same_bits(one, two)
    if shape == (64, 5000):
        kk.set_num_threads(1)
        one = run(name, x, y, axis=0)
        kk.set_num_threads(2)
        assert_same_bits(one, run(name, x, y, axis=0))
    else:
        # one long row over all elements (logsumexp / softmax: axis None)
        if name in ("logsumexp", "softmax", "log_softmax"):
            kk.set_num_threads(1)
            one = getattr(kk, name)(x)
            kk.set_num_threads(2)
            assert_same_bits(one, getattr(kk, name)(x))


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
@pytest.mark.parametrize("name", PUBLIC)
def test_threads_identical_bits_other_dtypes(name, dtype, restore_threads):
    x, y = inputs((16, 20_000), dtype, "normal")
    kk.set_num_threads(1)
    one = run(name, x, y)
    kk.set_num_threads(2)
    assert_same_bits(one, run(name, x, y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name", PUBLIC)
def test_row_result_independent_of_batch(name, dtype):
    """A row gives the same bits alone and inside batches of any size."""
    x, y = inputs((64, 1031), dtype, "neginf")
    full = run(name, x, y)
    for i in (0, 1, 31, 63):
        alone = run(name, x[i], y[i])
        assert_same_bits(np.asarray(full[i]), np.asarray(alone))
    for b in (1, 3, 17, 40):
        part = run(name, x[:b], y[:b])
        assert_same_bits(part, full[:b])
        shifted = run(name, x[b - 1:], y[b - 1:])
        assert_same_bits(shifted[0], full[b - 1])


def test_omp_num_threads_is_honoured():
    code = "import klkit; print(klkit.get_num_threads())"
    for n in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=n)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == n


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


def test_public_names():
    for name in PUBLIC + ["set_num_threads", "get_num_threads", "show_config", "reference"]:
        assert hasattr(kk, name), name
    for name in PUBLIC:
        assert callable(getattr(kk.reference, name)), name


@pytest.mark.parametrize("name", PUBLIC)
def test_torch_cpu_tensors_give_torch_back(name):
    torch = pytest.importorskip("torch")
    x, y = inputs((3, 10), np.float32, "normal")
    tx, ty = torch.from_numpy(x.copy()), torch.from_numpy(y.copy())
    got = run(name, tx, ty)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), run(name, x, y))
    np.testing.assert_array_equal(tx.numpy(), x)             # not modified


@pytest.mark.skipif(BFLOAT16 is None, reason="ml_dtypes not installed")
def test_torch_bfloat16_tensor():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-3, 3, 20).reshape(2, 10).to(torch.bfloat16)
    got = kk.log_softmax(t, axis=-1)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    ref = kk.log_softmax(t.float().numpy(), axis=-1)
    np.testing.assert_array_equal(got.numpy(), ref)
