"""torch autograd through klkit's public functions (src/klkit/_autograd.py).

1. torch.autograd.gradcheck in float64 for every differentiable function and
   option (the numerical Jacobian of the klkit forward against the analytic
   backward).
2. Agreement with torch's own autograd through the reference recipes
   (log_softmax(x / T).gather, F.cross_entropy, the verl KL estimators and
   agg_loss written as masked means), float32 and bfloat16 logits.
3. Edge cases: -inf logits, ignored positions, empty segments, an all-masked
   batch, non-contiguous views, 16-bit inputs.
4. Determinism of the gradient bits over the thread count.
5. Modes: no_grad / inference_mode, NumPy input, double backward, out=,
   kind="probs".
6. Memory: what the forward saves for backward.
7. torch.compile (aot_eager) of a small loss.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import klkit as kk  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: gradcheck tolerances (float64)
GC = dict(eps=1e-6, atol=1e-6, rtol=1e-5)

ESTIMATORS = ["k1", "k2", "k3", "abs"]
MODES = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _gen(seed):
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, scale=1.0, dtype=torch.float64, grad=True):
    """A leaf of N(0, scale^2) values drawn in float64, then cast."""
    x = (torch.randn(tuple(shape), generator=_gen(seed), dtype=torch.float64) * scale).to(dtype)
    return x.requires_grad_(grad)


def uniform(*shape, lo=0.0, hi=1.0, seed=0, dtype=torch.float64, grad=False):
    x = torch.rand(tuple(shape), generator=_gen(seed), dtype=torch.float64) * (hi - lo) + lo
    return x.to(dtype).requires_grad_(grad)


def leaf(x, dtype=None):
    """A fresh leaf copy of x (optionally cast) that requires grad."""
    x = x.detach()
    if dtype is not None:
        x = x.to(dtype)
    return x.clone().requires_grad_(True)


def away_d(shape, clamp=0.5, seed=0):
    """Log-ratios d with |d| in [0.05, 0.4] or [0.6, 1.5], random signs: at
    least 0.05 from 0 (abs's kink) and 0.1 from the clamp c = 0.5."""
    g = _gen(seed)
    n = math.prod(shape)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    small = 0.05 + 0.35 * torch.rand(n, generator=g, dtype=torch.float64)
    large = 0.6 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    mag = torch.where(u < 0.5, small, large)
    sign = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    d = (mag * sign).reshape(shape)
    assert (d.abs() - clamp).abs().min() > 1e-3 and d.abs().min() > 1e-3
    return d


def logp_pair(shape, seed=0, dtype=torch.float64):
    """(logp, ref_logp) leaves whose difference stays away from 0 and +-0.5
    (after rounding to dtype)."""
    ref = uniform(*shape, lo=-2.0, hi=-0.1, seed=seed + 1).to(dtype)
    logp = (ref.to(torch.float64) + away_d(shape, seed=seed)).to(dtype)
    d = logp.to(torch.float64) - ref.to(torch.float64)
    assert (d.abs() - 0.5).abs().min() > 1e-2 and d.abs().min() > 1e-2
    return leaf(logp), leaf(ref)


def targets(n, V, seed=0, ignored=()):
    t = torch.randint(0, V, (n,), generator=_gen(seed), dtype=torch.int64)
    for i in ignored:
        t[i] = -100
    return t


def assert_grad_close(got, want, rtol, atol_rel, what=""):
    """got ~ want at rtol and an atol relative to max |want|."""
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    assert got.shape == want.shape, (got.shape, want.shape, what)
    assert torch.isfinite(got).all(), what
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol_rel * max(scale, 1e-30),
                               msg=lambda m: f"{what}: {m}")


#: per dtype of the klkit input: (rtol, atol relative to max |grad|)
AGREE_TOL = {torch.float32: (1e-4, 1e-6), torch.bfloat16: (1e-2, 1e-2)}


def grads(out, inputs, upstream=None):
    """d(sum(upstream * out)) / d inputs."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    ups = upstream if upstream is not None else [None] * len(outs)
    loss = sum((o.to(torch.float64) * (1.0 if u is None else u)).sum()
               for o, u in zip(outs, ups))
    return torch.autograd.grad(loss, inputs, allow_unused=True)


# packed layout: 11 tokens, offsets[0] = 2 > 0 (tokens 0 and 1 unread), an empty sequence
PACKED_OFFSETS = np.array([2, 5, 5, 9, 11], np.int64)
PACKED_N = 11
# padded layout: [4, 5] with an all-masked row (1) and a full row (3)
PADDED_MASK = torch.tensor([[1, 1, 0, 1, 0],
                            [0, 0, 0, 0, 0],
                            [1, 0, 0, 0, 0],
                            [1, 1, 1, 1, 1]], dtype=torch.bool)


def packed_as_padded(values, offsets):
    """[n_seq, max_len] values and mask of a packed layout (for the torch
    reference formulas); max_len >= 1."""
    lens = np.diff(offsets)
    T = max(int(lens.max()) if lens.size else 0, 1)
    rows, masks = [], []
    for s, n in zip(offsets[:-1], lens):
        seg = values[int(s):int(s + n)]
        pad = torch.zeros(T - int(n), dtype=values.dtype)
        rows.append(torch.cat([seg, pad]))
        masks.append(torch.arange(T) < int(n))
    return torch.stack(rows), torch.stack(masks)


# --------------------------------------------------------------------------
# 1. gradcheck (float64)
# --------------------------------------------------------------------------

def _token_cases():
    t = targets(4, 7, seed=1)
    t_ig = targets(6, 7, seed=2, ignored=(1, 4))
    t3 = targets(6, 7, seed=3, ignored=(2,)).reshape(2, 3)
    return {
        "tl-plain": lambda: (lambda x: kk.token_logprobs(x, t), (randn(4, 7, scale=2),)),
        "tl-temp0.7": lambda: (lambda x: kk.token_logprobs(x, t, temperature=0.7),
                               (randn(4, 7, scale=2),)),
        "tl-tuple": lambda: (lambda x: tuple(kk.token_logprobs(
            x, t, temperature=1.3, return_entropy=True, return_lse=True)),
            (randn(4, 7, scale=2),)),
        "tl-lse-only": lambda: (lambda x: tuple(kk.token_logprobs(x, t, return_lse=True))[::2],
                                (randn(4, 7, scale=2),)),
        "tl-ignored": lambda: (lambda x: tuple(kk.token_logprobs(
            x, t_ig, return_entropy=True, return_lse=True)), (randn(6, 7, scale=2),)),
        "tl-3d-ignored": lambda: (lambda x: tuple(kk.token_logprobs(
            x, t3, temperature=0.7, return_entropy=True)[:2]), (randn(2, 3, 7, scale=2),)),
    }


def _sce_cases():
    cases = {}
    t = targets(6, 5, seed=4, ignored=(2,))
    w = uniform(5, lo=0.3, hi=2.0, seed=5)
    for red in ("none", "sum", "mean"):
        for eps in (0.0, 0.2):
            for use_w in (False, True):
                def make(red=red, eps=eps, use_w=use_w):
                    return (lambda x: kk.softmax_cross_entropy(
                        x, t, weight=w if use_w else None, label_smoothing=eps,
                        reduction=red), (randn(6, 5, scale=2, seed=6),))
                cases[f"sce-{red}-eps{eps}-{'w' if use_w else 'now'}"] = make
    return cases


def _dense_cases():
    cases = {}
    for axis in (None, 0, -1, (0, 2)):
        for kd in (False, True):
            cases[f"lse-axis{axis}-keepdims{kd}"] = \
                lambda axis=axis, kd=kd: (lambda a: kk.logsumexp(a, axis=axis, keepdims=kd),
                                          (randn(3, 4, 5, scale=2, seed=7),))
    cases["lse-b-same-shape"] = lambda: (
        lambda a, b: kk.logsumexp(a, axis=-1, b=b),
        (randn(3, 4, seed=8), uniform(3, 4, lo=0.2, hi=2.0, seed=9, grad=True)))
    cases["lse-b-broadcast-keepdims"] = lambda: (
        lambda a, b: kk.logsumexp(a, axis=0, b=b, keepdims=True),
        (randn(3, 4, seed=10), uniform(4, lo=0.2, hi=2.0, seed=11, grad=True)))
    cases["lse-b-axisNone"] = lambda: (
        lambda a, b: kk.logsumexp(a, b=b),
        (randn(3, 4, seed=12), uniform(3, 4, lo=0.2, hi=2.0, seed=13, grad=True)))

    def signed():
        a = randn(3, 4, seed=14)
        # mixed-sign weights whose weighted sums are far from 0, both signs
        b = torch.tensor([[1.0, -0.3, 0.5, -0.2],
                          [-1.5, 0.2, -0.4, 0.1],
                          [0.8, 0.9, -0.1, 0.3]], dtype=torch.float64)
        s = (b * a.detach().exp()).sum(-1)
        assert s.abs().min() > 0.05 and (s < 0).any() and (s > 0).any()
        return (lambda a, b: kk.logsumexp(a, axis=-1, b=b, return_sign=True)[0],
                (a, b.requires_grad_(True)))
    cases["lse-return-sign"] = signed
    for fn in ("softmax", "log_softmax"):
        for axis in (None, 0, -1):
            cases[f"{fn}-axis{axis}"] = \
                lambda fn=fn, axis=axis: (lambda x: getattr(kk, fn)(x, axis=axis),
                                          (randn(3, 4, scale=2, seed=15),))
    return cases


def _div_call(op, p, q, **kw):
    f = getattr(kk, op)
    return f(p, **kw) if op == "entropy" else f(p, q, **kw)


def _div_cases():
    cases = {}
    for op in ("entropy", "cross_entropy", "kl_div", "js_div"):
        two = op != "entropy"
        opts = {"plain": {}, "temp1.3": {"temperature": 1.3}, "base2": {"base": 2},
                "axis0": {"axis": 0}}
        if op == "js_div":
            opts["beta0.3"] = {"beta": 0.3}
        for name, kw in opts.items():
            def make(op=op, kw=kw, two=two):
                p, q = randn(3, 5, scale=2, seed=16), randn(3, 5, scale=2, seed=17)
                ins = (p, q) if two else (p,)
                return (lambda *a: _div_call(op, a[0], a[1] if two else None, **kw), ins)
            cases[f"{op}-logits-{name}"] = make
        if two:
            cases[f"{op}-logits-broadcast"] = lambda op=op: (
                lambda p, q: _div_call(op, p, q, temperature=1.3),
                (randn(5, scale=2, seed=18), randn(3, 5, scale=2, seed=19)))
            cases[f"{op}-logits-q-constant"] = lambda op=op: (
                lambda p: _div_call(op, p, randn(3, 5, scale=2, seed=19, grad=False)),
                (randn(3, 5, scale=2, seed=18),))
            cases[f"{op}-logits-p-constant"] = lambda op=op: (
                lambda q: _div_call(op, randn(3, 5, scale=2, seed=18, grad=False), q),
                (randn(3, 5, scale=2, seed=19),))
        lp_opts = {"plain": ({}, -1), "base2": ({"base": 2}, -1), "axis0": ({"axis": 0}, 0)}
        if op == "js_div":
            lp_opts["beta0.3"] = ({"beta": 0.3}, -1)
        for name, (kw, ax) in lp_opts.items():
            def make(op=op, kw=kw, ax=ax, two=two):
                p, q = randn(3, 5, scale=2, seed=20), randn(3, 5, scale=2, seed=21)

                def fn(*a):
                    lp = torch.log_softmax(a[0], dim=ax)
                    lq = torch.log_softmax(a[1], dim=ax) if two else None
                    return _div_call(op, lp, lq, kind="logprobs", **kw)
                return fn, ((p, q) if two else (p,))
            cases[f"{op}-logprobs-{name}"] = make
    return cases


def _segment_cases():
    cases = {}
    for est in ESTIMATORS:
        for clamp in (None, 0.5):
            cases[f"kl_estimate-{est}-clamp{clamp}"] = lambda est=est, clamp=clamp: (
                lambda a, b: kk.kl_estimate(a, b, est, clamp=clamp), logp_pair((3, 8), seed=22))
        def bcast(est=est):
            ref = leaf(uniform(4, lo=-2.0, hi=-0.1, seed=24))
            logp = leaf(ref.detach() + away_d((3, 4), seed=23))   # ref broadcast over rows
            return (lambda a, b: kk.kl_estimate(a, b, est, clamp=0.5), (logp, ref))
        cases[f"kl_estimate-{est}-broadcast"] = bcast
        for reduce in ("sum", "mean"):
            cases[f"seq_kl-packed-{est}-{reduce}"] = lambda est=est, reduce=reduce: (
                lambda a, b: kk.seq_kl(a, b, PACKED_OFFSETS, estimator=est, reduce=reduce,
                                       empty=0.0), logp_pair((PACKED_N,), seed=25))
            cases[f"seq_kl-padded-{est}-{reduce}"] = lambda est=est, reduce=reduce: (
                lambda a, b: kk.seq_kl(a, b, mask=PADDED_MASK, estimator=est, reduce=reduce,
                                       empty=0.0), logp_pair(tuple(PADDED_MASK.shape), seed=26))
        cases[f"seq_kl-packed-{est}-clamp0.5"] = lambda est=est: (
            lambda a, b: kk.seq_kl(a, b, PACKED_OFFSETS, estimator=est, clamp=0.5),
            logp_pair((PACKED_N,), seed=27))
    for op in ("sum", "mean", "logsumexp", "max"):
        f = getattr(kk, "segment_" + op)

        def distinct(shape, seed):
            n = math.prod(shape)
            perm = torch.randperm(n, generator=_gen(seed)).to(torch.float64)
            return leaf((perm * 0.37 - 2.0).reshape(shape))
        cases[f"segment_{op}-packed"] = lambda f=f: (
            lambda v: f(v, PACKED_OFFSETS, empty=0.0), (distinct((PACKED_N,), 28),))
        cases[f"segment_{op}-padded"] = lambda f=f: (
            lambda v: f(v, mask=PADDED_MASK, empty=0.0),
            (distinct(tuple(PADDED_MASK.shape), 29),))
        cases[f"segment_{op}-padded-fullmask"] = lambda f=f: (
            lambda v: f(v, mask=torch.ones(3, 4, dtype=torch.bool), empty=0.0),
            (distinct((3, 4), 30),))
    for mode in MODES:
        for counts in (False, True):
            kw = dict(num_tokens=20, num_seqs=5, norm_length=9) if counts else {}
            cases[f"agg_loss-packed-{mode}-counts{counts}"] = lambda mode=mode, kw=kw: (
                lambda v: kk.agg_loss(v, PACKED_OFFSETS, mode=mode, **kw),
                (randn(PACKED_N, seed=31),))
            cases[f"agg_loss-padded-{mode}-counts{counts}"] = lambda mode=mode, kw=kw: (
                lambda v: kk.agg_loss(v, mask=PADDED_MASK, mode=mode, **kw),
                (randn(*PADDED_MASK.shape, seed=32),))
    return cases


GRADCHECK_CASES = {**_token_cases(), **_sce_cases(), **_dense_cases(), **_div_cases(),
                   **_segment_cases()}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck(case):
    fn, inputs = GRADCHECK_CASES[case]()
    # the klkit path is the one under test: the output comes from klkit's Function
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    assert all(o.dtype == torch.float64 and o.grad_fn is not None for o in outs), case
    assert torch.autograd.gradcheck(fn, inputs, **GC)


# --------------------------------------------------------------------------
# 2. agreement with torch's autograd (float32, bfloat16)
# --------------------------------------------------------------------------

AGREE_DTYPES = [pytest.param(torch.float32, id="float32"),
                pytest.param(torch.bfloat16, id="bfloat16")]


def _ref_leaf(x):
    """torch float32 leaf on the same (rounded) values as klkit's input."""
    return leaf(x, torch.float32)


@pytest.mark.parametrize("dtype", AGREE_DTYPES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("which", ["lp", "ent", "lse", "all"])
def test_token_logprobs_matches_torch(dtype, temperature, which):
    N, V = 16, 300
    x = randn(N, V, scale=3, seed=40, dtype=dtype)
    t = targets(N, V, seed=41, ignored=(3, 11))
    keep = t != -100
    ups = [randn(N, seed=42 + i, grad=False) for i in range(3)]
    sel = {"lp": [1, 0, 0], "ent": [0, 1, 0], "lse": [0, 0, 1], "all": [1, 1, 1]}[which]
    ups = [u * s for u, s in zip(ups, sel)]

    r = kk.token_logprobs(x, t, temperature=temperature, return_entropy=True,
                          return_lse=True)
    assert r.logprobs.dtype == torch.float32
    (gx,) = grads(tuple(r), (x,), ups)
    assert gx.dtype == dtype

    xr = _ref_leaf(x)
    lsm = torch.log_softmax(xr / temperature, dim=-1)
    lp = torch.where(keep, lsm.gather(-1, t.clamp(min=0)[:, None])[:, 0], 0.0)
    ent = torch.where(keep, -(lsm.exp() * lsm).sum(-1), 0.0)
    lse = torch.where(keep, torch.logsumexp(xr / temperature, dim=-1), 0.0)
    (gr,) = grads((lp, ent, lse), (xr,), ups)
    # values first (float32 accuracy), then gradients
    for a, b in zip(r, (lp, ent, lse)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5)
    rtol, atol = AGREE_TOL[dtype]
    assert_grad_close(gx, gr, rtol, atol, f"token_logprobs {which}")
    assert torch.all(gx[~keep] == 0)


@pytest.mark.parametrize("dtype", AGREE_DTYPES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("use_w", [False, True])
def test_softmax_cross_entropy_matches_torch(dtype, reduction, eps, use_w):
    N, V = 24, 50
    x = randn(N, V, scale=3, seed=50, dtype=dtype)
    t = targets(N, V, seed=51, ignored=(0, 5, 6))
    w = uniform(V, lo=0.2, hi=2.0, seed=52, dtype=torch.float32) if use_w else None
    up = randn(N, seed=53, grad=False) if reduction == "none" else None
    got = kk.softmax_cross_entropy(x, t, weight=w, label_smoothing=eps, reduction=reduction)
    (gx,) = grads(got, (x,), None if up is None else [up])
    assert gx.dtype == dtype and gx.shape == x.shape

    xr = _ref_leaf(x)
    want = F.cross_entropy(xr, t, weight=w, ignore_index=-100, label_smoothing=eps,
                           reduction=reduction)
    (gr,) = grads(want, (xr,), None if up is None else [up])
    # (the shape of a reduced loss: test_scalar_results_are_0d)
    torch.testing.assert_close(got.reshape(want.shape), want.detach(), rtol=1e-5, atol=1e-5)
    rtol, atol = AGREE_TOL[dtype]
    assert_grad_close(gx, gr, rtol, atol, "softmax_cross_entropy")
    assert torch.all(gx[t == -100] == 0)


def verl_kl(logp, ref, est, clamp):
    """verl's estimators in torch, the clamp on d = logp - ref."""
    d = logp - ref
    if clamp is not None:
        d = torch.clamp(d, -clamp, clamp)
    if est == "k1":
        return d
    if est == "k2":
        return 0.5 * d ** 2
    if est == "k3":
        r = -d
        return torch.exp(r) - r - 1
    return d.abs()


@pytest.mark.parametrize("dtype", AGREE_DTYPES)
@pytest.mark.parametrize("clamp", [None, 0.5])
@pytest.mark.parametrize("est", ESTIMATORS)
def test_kl_estimate_matches_verl(dtype, clamp, est):
    a, b = logp_pair((6, 20), seed=60, dtype=dtype)
    up = randn(6, 20, seed=61, grad=False)
    got = kk.kl_estimate(a, b, est, clamp=clamp)
    ga, gb = grads(got, (a, b), [up])
    assert ga.dtype == dtype and gb.dtype == dtype
    ar, br = _ref_leaf(a), _ref_leaf(b)
    want = verl_kl(ar, br, est, clamp)
    gar, gbr = grads(want, (ar, br), [up])
    rtol, atol = AGREE_TOL[dtype]
    assert_grad_close(ga, gar, rtol, atol, "d/dlogp")
    assert_grad_close(gb, gbr, rtol, atol, "d/dref")


@pytest.mark.parametrize("dtype", AGREE_DTYPES)
@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("est", ESTIMATORS)
def test_seq_kl_matches_verl(dtype, layout, reduce, est):
    if layout == "padded":
        mask = PADDED_MASK
        a, b = logp_pair(tuple(mask.shape), seed=62, dtype=dtype)
        got = kk.seq_kl(a, b, mask=mask, estimator=est, reduce=reduce)
    else:
        a, b = logp_pair((PACKED_N,), seed=63, dtype=dtype)
        got = kk.seq_kl(a, b, PACKED_OFFSETS, estimator=est, reduce=reduce)
    up = randn(got.shape[0], seed=64, grad=False)
    ga, gb = grads(got, (a, b), [up])
    ar, br = _ref_leaf(a), _ref_leaf(b)
    k = verl_kl(ar, br, est, None)
    if layout == "padded":
        kv, m = k, mask
    else:
        kv, m = packed_as_padded(k, PACKED_OFFSETS)
    s = torch.where(m, kv, 0.0).sum(1)
    c = m.sum(1)
    want = s if reduce == "sum" else torch.where(c > 0, s / c.clamp(min=1), 0.0)
    torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-5)
    gar, gbr = grads(want, (ar, br), [up])
    rtol, atol = AGREE_TOL[dtype]
    assert_grad_close(ga, gar, rtol, atol, "d/dlogp")
    assert_grad_close(gb, gbr, rtol, atol, "d/dref")


def agg_reference(v, m, mode, T):
    """verl's agg_loss as masked means (v, m: [B, T])."""
    vm = torch.where(m, v, 0.0)
    c = m.sum(1)
    ne = c > 0
    s = vm.sum(1)
    if mode == "token-mean":
        return vm.sum() / m.sum()
    if mode == "seq-mean-token-sum":
        return s[ne].sum() / ne.sum()
    if mode == "seq-mean-token-mean":
        return (s[ne] / c[ne]).sum() / ne.sum()
    return vm.sum() / T


@pytest.mark.parametrize("dtype", AGREE_DTYPES)
@pytest.mark.parametrize("layout", ["packed", "padded"])
@pytest.mark.parametrize("mode", MODES)
def test_agg_loss_matches_verl(dtype, layout, mode):
    if layout == "padded":
        v = randn(*PADDED_MASK.shape, seed=70, dtype=dtype)
        got = kk.agg_loss(v, mask=PADDED_MASK, mode=mode)
        vr = _ref_leaf(v)
        want = agg_reference(vr, PADDED_MASK, mode, PADDED_MASK.shape[1])
    else:
        v = randn(PACKED_N, seed=71, dtype=dtype)
        got = kk.agg_loss(v, PACKED_OFFSETS, mode=mode)
        vr = _ref_leaf(v)
        pv, pm = packed_as_padded(vr, PACKED_OFFSETS)
        want = agg_reference(pv, pm, mode, int(np.diff(PACKED_OFFSETS).max()))
    (gv,) = grads(got, (v,))
    (gr,) = grads(want, (vr,))
    assert gv.dtype == dtype and gv.shape == v.shape
    torch.testing.assert_close(got.to(torch.float32), want.detach(), rtol=1e-5, atol=1e-6)
    rtol, atol = AGREE_TOL[dtype]
    assert_grad_close(gv, gr, rtol, atol, mode)


@pytest.mark.parametrize("dtype", AGREE_DTYPES)
@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div", "js_div"])
def test_divergences_match_torch(dtype, op):
    """Divergences of logits against their torch formulas (an extra check
    beside gradcheck, at the 32/16-bit tolerances)."""
    p, q = randn(8, 40, scale=2, seed=80, dtype=dtype), randn(8, 40, scale=2, seed=81,
                                                                 dtype=dtype)
    up = randn(8, seed=82, grad=False)
    T = 1.3
    got = _div_call(op, p, q, temperature=T)
    gs = grads(got, (p,) if op == "entropy" else (p, q), [up])
    pr, qr = _ref_leaf(p), _ref_leaf(q)
    lp, lq = torch.log_softmax(pr / T, -1), torch.log_softmax(qr / T, -1)
    P, Q = lp.exp(), lq.exp()
    if op == "entropy":
        want = -(P * lp).sum(-1)
    elif op == "cross_entropy":
        want = -(P * lq).sum(-1)
    elif op == "kl_div":
        want = (P * (lp - lq)).sum(-1)
    else:
        M = 0.5 * P + 0.5 * Q
        lm = M.log()
        want = 0.5 * (P * (lp - lm)).sum(-1) + 0.5 * (Q * (lq - lm)).sum(-1)
    torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-5)
    gr = grads(want, (pr,) if op == "entropy" else (pr, qr), [up])
    rtol, atol = AGREE_TOL[dtype]
    for g, r, name in zip(gs, gr, "pq"):
        assert g.dtype == dtype
        assert_grad_close(g, r, rtol, atol, f"{op} d/d{name}")


# --------------------------------------------------------------------------
# 3. edge cases
# --------------------------------------------------------------------------

def _neginf_logits(dtype=torch.float32):
    x = randn(5, 9, scale=2, seed=90, dtype=dtype, grad=False)
    x[0, 1] = -math.inf
    x[2, [0, 4, 8]] = -math.inf
    x[4, :8] = -math.inf           # only one finite logit: a one-hot row
    return leaf(x)


NEGINF_T = torch.tensor([0, 3, 2, 7, 8])


@pytest.mark.parametrize("fn", [
    "token_logprobs", "token_logprobs-entropy-lse", "token_logprobs-T0.7",
    "softmax_cross_entropy", "logsumexp", "softmax", "entropy", "kl_div-self-q"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neginf_logits(fn, dtype):
    x = _neginf_logits(dtype)
    ninf = torch.isneginf(x.detach())
    up = randn(5, 9, seed=91, grad=False)
    if fn == "token_logprobs":
        out = kk.token_logprobs(x, NEGINF_T)
    elif fn == "token_logprobs-entropy-lse":
        out = tuple(kk.token_logprobs(x, NEGINF_T, return_entropy=True, return_lse=True))
    elif fn == "token_logprobs-T0.7":
        out = tuple(kk.token_logprobs(x, NEGINF_T, temperature=0.7, return_entropy=True)[:2])
    elif fn == "softmax_cross_entropy":
        out = kk.softmax_cross_entropy(x, NEGINF_T)
    elif fn == "logsumexp":
        out = kk.logsumexp(x, axis=-1)
    elif fn == "softmax":
        out = kk.softmax(x, axis=-1) * up
    elif fn == "entropy":
        out = kk.entropy(x, temperature=1.3)
    else:   # KL(P || Q) with Q finite everywhere
        out = kk.kl_div(x, randn(5, 9, seed=92, dtype=dtype, grad=False))
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert torch.isfinite(o).all(), (fn, o)
    (g,) = grads(outs, (x,))
    assert not torch.isnan(g).any(), (fn, g)
    assert torch.all(g[ninf] == 0), (fn, g[ninf])
    assert torch.isfinite(g).all()
    # the finite entries agree with torch on the same values
    xr = leaf(x, torch.float64)
    if fn.startswith("token_logprobs"):
        T = 0.7 if fn.endswith("T0.7") else 1.0
        lsm = torch.log_softmax(xr / T, -1)
        ref = [lsm.gather(-1, NEGINF_T[:, None])[:, 0]]
        if len(outs) > 1:
            # 0 log 0 = 0 without a NaN gradient: mask lsm before the product
            P = lsm.exp()
            ref.append(-(P * torch.where(ninf, 0.0, lsm)).sum(-1))
        if len(outs) > 2:
            ref.append(torch.logsumexp(xr / T, -1))
        (gr,) = grads(ref, (xr,))
        assert_grad_close(g, gr, 1e-4, 1e-6, fn)


def test_ignored_rows_zero_gradient():
    x = randn(3, 4, 11, scale=2, seed=100, dtype=torch.float32)
    t = targets(12, 11, seed=101, ignored=(0, 5, 6, 11)).reshape(3, 4)
    r = kk.token_logprobs(x, t, return_entropy=True, return_lse=True)
    ig = t == -100
    for o in r:
        assert torch.all(o[ig] == 0)
    (g,) = grads(tuple(r), (x,), [randn(3, 4, seed=102 + i, grad=False) for i in range(3)])
    assert torch.all(g[ig] == 0)
    assert (g[~ig] != 0).any(dim=-1).all()
    for red in ("none", "sum", "mean"):
        for eps in (0.0, 0.3):
            loss = kk.softmax_cross_entropy(x, t, label_smoothing=eps, reduction=red)
            (g,) = grads(loss, (x,))
            assert torch.all(g[ig] == 0), (red, eps)
            assert torch.isfinite(g).all()


def test_ignored_rows_may_hold_nan():
    """An ignored row is not read: NaN there reaches neither value nor gradient."""
    x = randn(4, 6, seed=103, dtype=torch.float32, grad=False)
    x[1] = math.nan
    x = leaf(x)
    t = torch.tensor([0, -100, 2, 5])
    r = kk.token_logprobs(x, t, return_entropy=True)
    assert torch.all(r.logprobs[1] == 0) and torch.all(r.entropy[1] == 0)
    (g,) = grads((r.logprobs, r.entropy), (x,))
    assert torch.isfinite(g).all() and torch.all(g[1] == 0)


def test_empty_segments_and_all_masked():
    v = randn(*PADDED_MASK.shape, seed=110, dtype=torch.float32)
    none = torch.zeros_like(PADDED_MASK)
    for mode in MODES:
        loss = kk.agg_loss(v, mask=none, mode=mode)
        assert loss.item() == 0.0
        (g,) = grads(loss, (v,))
        assert torch.all(g == 0) and not torch.isnan(g).any(), mode
        # and a count given as 0
        loss = kk.agg_loss(v, mask=PADDED_MASK, mode=mode, num_tokens=0, num_seqs=0,
                           norm_length=0)
        (g,) = grads(loss, (v,))
        assert torch.all(g == 0), mode
    # packed: every sequence empty
    w = randn(6, seed=111, dtype=torch.float32)
    off = np.array([6, 6, 6])                   # (no token is in a sequence)
    for mode in MODES:
        loss = kk.agg_loss(w, off, mode=mode)
        (g,) = grads(loss, (w,))
        assert torch.all(g == 0), mode
    # segment reductions with default empty values (NaN / -inf) and an all-masked batch:
    # the gradient of the empty sequences' results is zero, no NaN reaches anything
    for op in ("sum", "mean", "max", "logsumexp"):
        f = getattr(kk, "segment_" + op)
        for kw in (dict(mask=PADDED_MASK), dict(mask=none)):
            out = f(v, **kw)
            empty = kw["mask"].sum(1) == 0
            up = torch.where(empty, 0.0, 1.0)
            (g,) = grads(out, (v,), [up])
            assert not torch.isnan(g).any(), (op, kw)
            assert torch.all(g[~kw["mask"]] == 0), (op, kw)
        out = f(w, np.array([1, 1, 4, 4, 6]))
        (g,) = grads(out, (w,), [torch.tensor([0.0, 1.0, 0.0, 0.0])])
        assert not torch.isnan(g).any() and torch.all(g[[0, 4, 5]] == 0), op
    for est in ESTIMATORS:
        a, b = logp_pair(tuple(PADDED_MASK.shape), seed=112, dtype=torch.float32)
        out = kk.seq_kl(a, b, mask=none, estimator=est, reduce="mean")
        assert torch.all(out == 0)
        ga, gb = grads(out, (a, b))
        assert torch.all(ga == 0) and torch.all(gb == 0)


def test_masked_padding_nan_does_not_leak():
    v = randn(*PADDED_MASK.shape, seed=113, dtype=torch.float32, grad=False)
    v[~PADDED_MASK] = math.nan
    v = leaf(v)
    for mode in MODES:
        (g,) = grads(kk.agg_loss(v, mask=PADDED_MASK, mode=mode), (v,))
        assert not torch.isnan(g).any(), mode
        assert torch.all(g[~PADDED_MASK] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shifted_slice_matches_contiguous(dtype):
    B, T, V = 3, 6, 37
    base = randn(B, T, V, scale=3, seed=120, dtype=dtype)
    t = targets(B * (T - 1), V, seed=121, ignored=(2,)).reshape(B, T - 1)
    sl = base[:, :-1]
    assert not sl.is_contiguous()
    ups = [randn(B, T - 1, seed=122 + i, grad=False) for i in range(3)]
    r1 = kk.token_logprobs(sl, t, temperature=0.9, return_entropy=True, return_lse=True)
    (g1,) = grads(tuple(r1), (base,), ups)
    cont = leaf(sl.detach().contiguous())
    r2 = kk.token_logprobs(cont, t, temperature=0.9, return_entropy=True, return_lse=True)
    (g2,) = grads(tuple(r2), (cont,), ups)
    for a, b in zip(r1, r2):
        assert torch.equal(a, b)
    assert g1.dtype == dtype and g1.shape == base.shape
    assert torch.equal(g1[:, :-1], g2)
    assert torch.all(g1[:, -1] == 0)
    # softmax_cross_entropy and entropy on the same slice
    for f in (lambda z: kk.softmax_cross_entropy(z, t, label_smoothing=0.1),
              lambda z: kk.entropy(z).sum(),
              lambda z: kk.logsumexp(z, axis=-1).sum()):
        (g1,) = grads(f(base[:, :-1]), (base,))
        (g2,) = grads(f(cont), (cont,))
        assert torch.equal(g1[:, :-1], g2)
        assert torch.all(g1[:, -1] == 0)


def _sixteen_bit_cases():
    t = targets(6, 20, seed=130, ignored=(1,))
    return {
        "token_logprobs": lambda x: tuple(kk.token_logprobs(x, t, return_entropy=True,
                                                            return_lse=True)),
        "softmax_cross_entropy": lambda x: kk.softmax_cross_entropy(x, t, label_smoothing=0.1),
        "logsumexp": lambda x: kk.logsumexp(x, axis=-1),
        # (the value dtype of logsumexp with b: test_grad_path_matches_no_grad_path)
        "logsumexp-b": lambda x: kk.logsumexp(x, axis=-1, b=torch.full((20,), 0.5)).float(),
        "softmax": lambda x: kk.softmax(x, axis=-1) * torch.linspace(-1, 1, 20),
        "log_softmax": lambda x: kk.log_softmax(x, axis=0) * torch.linspace(-1, 1, 20),
        "entropy": lambda x: kk.entropy(x, temperature=1.3),
        "kl_div": lambda x: kk.kl_div(x, x.flip(0)),
        "js_div": lambda x: kk.js_div(x.flip(1), x),
        "kl_estimate": lambda x: kk.kl_estimate(x, torch.zeros((), dtype=x.dtype), "k3"),
        "seq_kl": lambda x: kk.seq_kl(x, (x * 0.5).detach(),
                                      mask=torch.ones(6, 20, dtype=torch.bool), estimator="k3"),
        "segment_sum": lambda x: kk.segment_sum(x.reshape(-1), np.array([0, 7, 7, 120])),
        "segment_logsumexp": lambda x: kk.segment_logsumexp(x, mask=x.detach() > 0),
        "agg_loss": lambda x: kk.agg_loss(x, mask=x.detach() > 0, mode="seq-mean-token-mean"),
    }


SIXTEEN = _sixteen_bit_cases()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", sorted(SIXTEEN))
def test_sixteen_bit_gradients(dtype, name):
    fn = SIXTEEN[name]
    x = randn(6, 20, seed=131, dtype=dtype)
    out = fn(x)
    outs = out if isinstance(out, tuple) else (out,)
    assert all(o.dtype == torch.float32 for o in outs), (name, [o.dtype for o in outs])
    (g,) = grads(outs, (x,))
    assert g.dtype == dtype and g.shape == x.shape
    assert torch.isfinite(g).all()
    # the same function on the float32 copy of the same values
    x32 = leaf(x, torch.float32)
    (g32,) = grads(fn(x32), (x32,))
    assert_grad_close(g, g32, 1e-2, 1e-2, name)


# --------------------------------------------------------------------------
# 4. determinism over the thread count
# --------------------------------------------------------------------------

def test_gradient_bits_do_not_depend_on_threads():
    x = randn(64, 4096, scale=3, seed=140, dtype=torch.float32)
    t = targets(64, 4096, seed=141, ignored=(7,))
    ups = [randn(64, seed=142, grad=False), randn(64, seed=143, grad=False)]
    p, q = randn(64, 4096, scale=2, seed=144, dtype=torch.float32), \
        randn(64, 4096, scale=2, seed=145, dtype=torch.float32)

    def tok():
        r = kk.token_logprobs(x, t, return_entropy=True)
        return grads((r.logprobs, r.entropy), (x,), ups)

    def kl():
        return grads(kk.kl_div(p, q), (p, q), [ups[0]])

    prev = kk.get_num_threads()
    try:
        kk.set_num_threads(1)
        one = tok() + kl()
        kk.set_num_threads(2)
        two = tok() + kl()
    finally:
        kk.set_num_threads(prev)
    assert kk.get_num_threads() == prev
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------
# 5. modes and errors
# --------------------------------------------------------------------------

def _mode_calls():
    t = targets(4, 10, seed=150)

    def tt(x):        # the targets in x's framework (a torch one gives torch out)
        return t if isinstance(x, torch.Tensor) else t.numpy()
    return {
        "token_logprobs": lambda x: kk.token_logprobs(x, tt(x)),
        "softmax_cross_entropy": lambda x: kk.softmax_cross_entropy(x, tt(x)),
        "logsumexp": lambda x: kk.logsumexp(x, axis=-1),
        "logsumexp-b": lambda x: kk.logsumexp(x, axis=-1, b=np.full(10, 0.5)),
        "softmax": lambda x: kk.softmax(x, axis=-1),
        "log_softmax": lambda x: kk.log_softmax(x),
        "entropy": lambda x: kk.entropy(x),
        "kl_div": lambda x: kk.kl_div(x, x[::-1].copy() if isinstance(x, np.ndarray)
                                      else x.flip(0)),
        "js_div": lambda x: kk.js_div(x, x * 0.5),
        "kl_estimate": lambda x: kk.kl_estimate(x, x * 0.5, "k3"),
        "seq_kl": lambda x: kk.seq_kl(x.reshape(-1), x.reshape(-1) * 0.5,
                                      np.array([0, 13, 40]), estimator="k2"),
        "segment_mean": lambda x: kk.segment_mean(x, mask=x > 0),
        "segment_max": lambda x: kk.segment_max(x, mask=x > 0),
        "agg_loss": lambda x: kk.agg_loss(x, mask=x > 0),
    }


MODE_CALLS = _mode_calls()


@pytest.mark.parametrize("name", sorted(MODE_CALLS))
def test_no_grad_and_inference_mode(name):
    fn = MODE_CALLS[name]
    x = randn(4, 10, seed=151, dtype=torch.float32)
    with_grad = fn(x)
    assert with_grad.grad_fn is not None and with_grad.requires_grad
    with torch.no_grad():
        a = fn(x)
    assert a.grad_fn is None and not a.requires_grad
    with torch.inference_mode():
        b = fn(x)
    assert b.grad_fn is None and not b.requires_grad
    # the autograd forward computes the same bits as the no-grad path (the
    # shape of 0-d results: test_scalar_results_are_0d)
    assert torch.equal(with_grad.detach().reshape(a.shape), a) and torch.equal(a, b)
    # numpy in: numpy out, same values
    c = fn(x.detach().numpy())
    assert isinstance(c, (np.ndarray, np.generic))
    np.testing.assert_array_equal(np.asarray(c), a.numpy())


#: calls whose result is a 0-d (or small) tensor; (the grad path, the no-grad
#: path) must give the same type, shape, dtype and bits
PARITY_CALLS = {
    "token_logprobs-1d": lambda x: kk.token_logprobs(x[0], torch.tensor(3)),
    "token_logprobs-1d-all": lambda x: kk.token_logprobs(x[0], torch.tensor(3),
                                                         return_entropy=True, return_lse=True),
    "token_logprobs-2d-all": lambda x: kk.token_logprobs(x, torch.arange(4),
                                                         return_entropy=True, return_lse=True),
    "softmax_cross_entropy-mean": lambda x: kk.softmax_cross_entropy(x, torch.arange(4)),
    "softmax_cross_entropy-sum": lambda x: kk.softmax_cross_entropy(x, torch.arange(4),
                                                                    reduction="sum"),
    "softmax_cross_entropy-none": lambda x: kk.softmax_cross_entropy(x, torch.arange(4),
                                                                     reduction="none"),
    "logsumexp-axisNone": lambda x: kk.logsumexp(x),
    "logsumexp-axisNone-keepdims": lambda x: kk.logsumexp(x, keepdims=True),
    "logsumexp-axis-1": lambda x: kk.logsumexp(x, axis=-1),
    "logsumexp-b": lambda x: kk.logsumexp(x, axis=-1, b=torch.full((10,), 0.5)),
    "logsumexp-b-axisNone": lambda x: kk.logsumexp(x, b=torch.full((10,), 0.5)),
    "logsumexp-return_sign": lambda x: kk.logsumexp(x, axis=-1, return_sign=True),
    "softmax-0d": lambda x: kk.softmax(x[0, 0]),
    "log_softmax-axisNone": lambda x: kk.log_softmax(x),
    "entropy-1d": lambda x: kk.entropy(x[0]),
    "entropy-2d": lambda x: kk.entropy(x, temperature=1.3),
    "entropy-logprobs-1d": lambda x: kk.entropy(torch.log_softmax(x[0], -1), kind="logprobs"),
    "cross_entropy-1d": lambda x: kk.cross_entropy(x[0], x[1]),
    "kl_div-1d": lambda x: kk.kl_div(x[0], x[1]),
    "kl_div-broadcast": lambda x: kk.kl_div(x[0], x),
    "js_div-1d": lambda x: kk.js_div(x[0], x[1], beta=0.3),
    "kl_estimate-0d": lambda x: kk.kl_estimate(x[0, 0], x[0, 1], "k3"),
    "kl_estimate-python-scalar": lambda x: kk.kl_estimate(x, 0.5, "k2", clamp=1.0),
    "seq_kl": lambda x: kk.seq_kl(x, x.detach() * 0.5, mask=x.detach() > 0, reduce="mean"),
    "segment_sum": lambda x: kk.segment_sum(x, mask=x.detach() > 0),
    "segment_mean-empty": lambda x: kk.segment_mean(x, mask=x.detach() > 1.5),
    "segment_max-empty": lambda x: kk.segment_max(x, mask=x.detach() > 1.5),
    "segment_logsumexp-empty": lambda x: kk.segment_logsumexp(x, mask=x.detach() > 1.5),
    "agg_loss-padded": lambda x: kk.agg_loss(x, mask=x.detach() > 0),
    "agg_loss-packed": lambda x: kk.agg_loss(x.reshape(-1), np.array([0, 4, 40]),
                                             mode="seq-mean-token-mean"),
}

def _parity_params():
    return [pytest.param(name, dtype, id=f"{name}-{dname}")
            for dtype, dname in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16"),
                                 (torch.float64, "float64"))
            for name in sorted(PARITY_CALLS)]


@pytest.mark.parametrize("name,dtype", _parity_params())
def test_grad_path_matches_no_grad_path(name, dtype):
    fn = PARITY_CALLS[name]
    x0 = randn(4, 10, seed=156, dtype=dtype, grad=False)
    a = fn(leaf(x0))
    b = fn(x0.clone())
    A = tuple(a) if isinstance(a, tuple) else (a,)
    B = tuple(b) if isinstance(b, tuple) else (b,)
    assert type(a) is type(b) and len(A) == len(B)
    for i, (u, v) in enumerate(zip(A, B)):
        if v is None:
            assert u is None
            continue
        assert isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor)
        assert (tuple(u.shape), u.dtype) == (tuple(v.shape), v.dtype), (i, u.shape, v.shape)
        torch.testing.assert_close(u.detach(), v, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("name", ["token_logprobs", "softmax_cross_entropy", "logsumexp",
                                  "logsumexp-b", "softmax", "log_softmax", "entropy",
                                  "kl_div", "js_div", "kl_estimate", "seq_kl",
                                  "segment_mean", "agg_loss"])
def test_double_backward_raises(name):
    fn = MODE_CALLS[name]
    x = randn(4, 10, seed=152, dtype=torch.float64)
    y = fn(x)
    w = randn(*y.shape, seed=153, grad=False)
    (g,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="double backward"):
        (g * g).sum().backward()


def test_first_backward_with_create_graph_still_correct():
    x = randn(4, 10, seed=154, dtype=torch.float64)
    t = targets(4, 10, seed=155)
    (g1,) = torch.autograd.grad(kk.token_logprobs(x, t).sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(kk.token_logprobs(x, t).sum(), x)
    assert torch.equal(g1.detach(), g2)


def test_softmax_out_with_grad_raises():
    x = randn(3, 4, dtype=torch.float32)
    out = torch.empty(3, 4, dtype=torch.float32)
    for f in (kk.softmax, kk.log_softmax):
        with pytest.raises(TypeError):
            f(x, axis=-1, out=out)
    # without grad, out= works
    with torch.no_grad():
        r = kk.softmax(x, axis=-1, out=out.numpy())
    assert np.allclose(np.asarray(r).sum(-1), 1.0)


@pytest.mark.parametrize("op", ["entropy", "cross_entropy", "kl_div", "js_div"])
def test_kind_probs_with_grad_raises(op):
    p = uniform(3, 5, lo=0.1, hi=1.0, seed=160, grad=True)
    q = uniform(3, 5, lo=0.1, hi=1.0, seed=161)
    with pytest.raises(ValueError, match="logprobs"):
        _div_call(op, p, q, kind="probs")
    with torch.no_grad():      # fine without grad
        _div_call(op, p, q, kind="probs")


def test_grad_only_where_required():
    """Inputs that do not require grad get none; a constant q is not touched."""
    p = randn(3, 5, seed=170)
    q = randn(3, 5, seed=171, grad=False)
    kk.kl_div(p, q).sum().backward()
    assert p.grad is not None and q.grad is None
    a, b = logp_pair((8,), seed=172)
    b.requires_grad_(False)
    kk.seq_kl(a, b, np.array([0, 3, 8]), estimator="k3").sum().backward()
    assert a.grad is not None and b.grad is None


# --------------------------------------------------------------------------
# 6. memory: what the forward saves
# --------------------------------------------------------------------------

def test_token_logprobs_saves_only_the_logits():
    N, V = 32, 1000
    x = randn(N, V, scale=2, seed=180, dtype=torch.float32)
    t = targets(N, V, seed=181, ignored=(4,))
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        r = kk.token_logprobs(x, t, return_entropy=True)
    assert saved, "nothing saved: the hooks did not see the forward"
    for s in saved:
        assert s.data_ptr() == x.data_ptr() and s.shape == x.shape, (s.shape, s.dtype)
    big = [s for s in saved if s.numel() >= N * V]
    assert len(big) == len(saved)
    # nothing of size N * V is held on the backward node besides the saved input
    node = r.logprobs.grad_fn
    for k, v in vars(node).items() if hasattr(node, "__dict__") else ():
        size = getattr(v, "size", None)
        n = v.numel() if isinstance(v, torch.Tensor) else (size if isinstance(size, int) else 0)
        assert n < N * V, (k, n)
    (g,) = grads((r.logprobs, r.entropy), (x,))
    assert g.shape == x.shape


# --------------------------------------------------------------------------
# 7. torch.compile
# --------------------------------------------------------------------------

def test_torch_compile_aot_eager():
    x = randn(6, 50, scale=2, seed=190, dtype=torch.float32)
    t = targets(6, 50, seed=191, ignored=(3,))

    def loss_fn(z):
        r = kk.token_logprobs(z, t, return_entropy=True)
        return r.entropy.mean() + r.logprobs.mean()

    eager = loss_fn(x)
    (ge,) = torch.autograd.grad(eager, x)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(loss_fn, backend="aot_eager")
        x2 = leaf(x)
        got = compiled(x2)
        (gc,) = torch.autograd.grad(got, x2)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(got, eager, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gc, ge, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------
# 8. what is not differentiated is refused, not silently dropped
# --------------------------------------------------------------------------

def test_constants_that_require_grad_are_refused():
    x = randn(3, 5, seed=201, dtype=torch.float64)
    t = torch.tensor([0, 1, 2])
    w = torch.rand(5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(TypeError, match="weight"):
        kk.softmax_cross_entropy(x, t, weight=w)           # only the weight requires grad
    with pytest.raises(TypeError, match="weight"):
        kk.softmax_cross_entropy(leaf(x), t, weight=w)
    T = torch.tensor(0.7, requires_grad=True)
    with pytest.raises(TypeError, match="temperature"):
        kk.token_logprobs(leaf(x), t, temperature=T)
    with pytest.raises(TypeError, match="beta"):
        kk.js_div(leaf(x), x, beta=torch.tensor(0.3, requires_grad=True))
    with pytest.raises(TypeError, match="clamp"):
        kk.kl_estimate(leaf(x), x, "k3", clamp=torch.tensor(1.0, requires_grad=True))


def test_complex_input_with_grad_is_refused():
    a = torch.randn(3, 4, dtype=torch.complex128, requires_grad=True)
    for f in (lambda: kk.logsumexp(a, axis=1), lambda: kk.logsumexp(a, return_sign=True),
              lambda: kk.softmax(a, axis=1), lambda: kk.log_softmax(a, axis=1)):
        with pytest.raises(TypeError, match="complex"):
            f()


@pytest.mark.parametrize("kind", ["logits", "logprobs"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_js_div_gradient_is_zero_at_beta_0_and_1(kind, beta):
    """JS is 0 for every P, Q at beta 0 and 1, zero probabilities included."""
    p = torch.tensor([[0.0, -np.inf, 1.0], [0.0, -200.0, 3.0]], requires_grad=True)
    q = torch.tensor([[1.0, 2.0, -np.inf], [-200.0, 0.0, 1.0]], requires_grad=True)
    if kind == "logprobs":
        p, q = [torch.log_softmax(v.detach(), -1).requires_grad_() for v in (p, q)]
    kk.js_div(p, q, beta=beta, kind=kind).sum().backward()
    assert torch.equal(p.grad, torch.zeros_like(p)) and torch.equal(q.grad, torch.zeros_like(q))


def test_broadcast_gradient_bits_do_not_depend_on_torch_threads():
    lp = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    ref = randn(400_000, seed=202, dtype=torch.float64)
    p = randn(64, seed=203, dtype=torch.float64, grad=True)
    q = randn(500, 64, seed=204, dtype=torch.float64)
    old = torch.get_num_threads()
    got = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            lp.grad = p.grad = None
            kk.kl_estimate(lp, ref, "k3").sum().backward()
            kk.kl_div(p, q).sum().backward()
            got.append((lp.grad.clone(), p.grad.clone()))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(a, b) for a, b in zip(*got))


def test_backward_entries_check_their_buffers():
    """The Cython entries refuse layouts they would misread (never a read of
    freed or foreign memory)."""
    from klkit import _cpu

    x = np.random.default_rng(0).standard_normal((4, 50)).astype(np.float32)
    t = np.arange(4, dtype=np.int64)
    lse = np.zeros(4)
    out = np.empty_like(x)
    with pytest.raises(ValueError, match="coef"):
        _cpu.token_grad("float32", x, 1, t, 1.0, lse, np.ones((4, 8))[:, ::2], None, out)
    with pytest.raises(ValueError, match="coef"):
        _cpu.token_grad("float32", x, 1, t, 1.0, lse, np.asfortranarray(np.ones((4, 4))), None,
                        out)
    with pytest.raises(ValueError, match="overlap"):
        _cpu.token_grad("float32", x, 1, t, 1.0, lse, np.ones((4, 4)), None, x)
    with pytest.raises(ValueError, match="saved"):
        _cpu.div_grad("kl_div", "logits", "float32", x, x.copy(), 1, 1.0, 0.5,
                      np.asfortranarray(np.zeros((4, 3))), np.ones(4), out, None)


@pytest.mark.parametrize("T", [1.0, 0.7])
@pytest.mark.parametrize("spread", [1e-2, 1e-4, 1e-6])
def test_kl_div_gradient_keeps_relative_accuracy_for_close_logits(spread, T):
    """float32 KL gradients against float64 on the same float32 logits: the
    lse difference comes from KL's own sums, so the error stays at float32
    rounding however close P and Q are (torch's float32 recipe: 4e-5..0.5)."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((8, 4096)) * 3).astype(np.float32)
    y = (x + rng.standard_normal(x.shape) * spread).astype(np.float32)
    P = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    Q = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    lp, lq = torch.log_softmax(P / T, -1), torch.log_softmax(Q / T, -1)
    (lp.exp() * (lp - lq)).sum().backward()
    a, b = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    kk.kl_div(a, b, temperature=T).sum().backward()
    for got, want in ((a.grad, P.grad), (b.grad, Q.grad)):
        assert float((got.double() - want).norm() / want.norm()) < 1e-6


def test_kl_div_gradient_rows_beyond_the_sums():
    """Rows whose KL sums the kernels do not trust (huge logits) take their
    lse separately; a row with P > 0 = Q (KL = inf) does not disturb them."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 300)) * 3
    y = x + rng.standard_normal(x.shape) * 0.1
    x[1] += 2e4                                  # |m| eps > 1e-3 in float32
    y[1] += 2e4
    y[2, 5] = -np.inf                            # P > 0 = Q: KL = +inf
    x, y = x.astype(np.float32), y.astype(np.float32)
    P = torch.tensor(x[:2], dtype=torch.float64, requires_grad=True)
    Q = torch.tensor(y[:2], dtype=torch.float64, requires_grad=True)
    lp, lq = torch.log_softmax(P, -1), torch.log_softmax(Q, -1)
    (lp.exp() * (lp - lq)).sum().backward()
    a, b = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    v = kk.kl_div(a, b)
    assert math.isinf(v[2].item())
    v[:2].sum().backward()
    for got, want in ((a.grad[:2], P.grad), (b.grad[:2], Q.grad)):
        assert float((got.double() - want).norm() / want.norm()) < 1e-3
    assert torch.equal(a.grad[2], torch.zeros(300)) and torch.equal(b.grad[2], torch.zeros(300))


def test_gradient_of_unresolvable_rows_is_nan():
    """logits / T so large (a tiny temperature) that the lse's rounding is
    not small in nats: p cannot be resolved, the row's gradient is NaN
    (not a finite wrong value); the other rows are untouched."""
    x = torch.tensor([[1e10, 0.0, 3e9], [0.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([[1e10, 1.0, 3e9], [0.0, 0.0, 0.0]], requires_grad=True)
    with np.errstate(over="ignore"):
        kk.token_logprobs(x, torch.tensor([2, 1]), temperature=1e-30).sum().backward()
    assert torch.isnan(x.grad[0]).all() and torch.isfinite(x.grad[1]).all()
    x.grad = None
    kk.kl_div(x, y, temperature=1e-30).sum().backward()
    assert torch.isnan(x.grad[0]).all() and torch.isnan(y.grad[0]).all()
    assert torch.isfinite(x.grad[1]).all() and torch.isfinite(y.grad[1]).all()
