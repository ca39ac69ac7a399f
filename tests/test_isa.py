"""Every instruction-set path the running CPU supports (klkit picks the best
one at import; KLKIT_ISA or _cpu.set_isa forces another) gives results that
agree with the reference: the baseline path (no FMA, 128-bit SIMD) and AVX2
differ in rounding and lane order, so each is checked on its own."""
import numpy as np
import pytest

import klkit as kk
from klkit import _cpu, reference as ref

from conftest import FLOAT_DTYPES, assert_close, input_scale, nasty_array, to64

ISAS = [isa for isa in ("base", "avx2", "avx512") if _cpu.set_isa(isa)]
_cpu.set_isa(None)


@pytest.fixture(params=ISAS)
def isa(request):
    assert _cpu.set_isa(request.param)
    assert _cpu.build_info()["isa"] == request.param
    yield request.param
    _cpu.set_isa(None)


def test_unknown_isa_is_refused():
    assert not _cpu.set_isa("no-such-isa")


@pytest.mark.parametrize("fill", ["normal", "special", "neginf"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_dense_on_every_path(isa, name, dtype, fill):
    x = nasty_array((7, 3001), dtype, fill, seed=3)
    got = getattr(kk, name)(x, axis=-1)
    with np.errstate(all="ignore"):
        expected = getattr(ref, name)(to64(x), axis=-1)
    assert_close(got, expected, dtype, scale=input_scale(x))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", ["entropy", "cross_entropy", "kl_div", "js_div"])
def test_divergences_on_every_path(isa, name, dtype, temperature):
    p = nasty_array((5, 2500), dtype, "normal", seed=1)
    q = nasty_array((5, 2500), dtype, "neginf", seed=2)
    args = (p,) if name == "entropy" else (p, q)
    got = getattr(kk, name)(*args, temperature=temperature)
    with np.errstate(all="ignore"):
        expected = getattr(ref, name)(*[to64(a) for a in args], temperature=temperature)
    assert_close(got, expected, dtype, scale=2500 * input_scale(p, q) / temperature)


def test_nearly_identical_kl_on_every_path(isa):
    # the regime the centred KL exists for: every path keeps it
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, (4, 4096))
    y = x + 1e-6 * rng.normal(size=x.shape)
    got = kk.kl_div(x, y)
    expected = ref.kl_div(x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert (kk.kl_div(x, x) == 0).all()


@pytest.mark.parametrize("fill", ["normal", "special"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_token_logprobs_on_every_path(isa, dtype, fill):
    x = nasty_array((9, 5003), dtype, fill, seed=4)
    t = np.random.default_rng(4).integers(0, 5003, 9)
    t[2] = -100
    got = kk.token_logprobs(x, t, temperature=0.8, return_entropy=True, return_lse=True)
    with np.errstate(all="ignore"):
        expected = ref.token_logprobs(to64(x), t, temperature=0.8, return_entropy=True,
                                      return_lse=True)
    for a, e in zip(got, expected):
        assert_close(a, e, dtype, scale=input_scale(x))
    w = np.linspace(0.5, 1.5, 5003)
    got = kk.softmax_cross_entropy(x, t, weight=w, label_smoothing=0.2, reduction="none")
    with np.errstate(all="ignore"):
        expected = ref.softmax_cross_entropy(to64(x), t, weight=w, label_smoothing=0.2,
                                             reduction="none")
    assert_close(got, expected, dtype, scale=5003 * input_scale(x))
