"""No hidden copies: beyond its outputs, a public function allocates O(rows)
plus a few chunks for any view of its inputs (the shifted slice of every
RLHF pipeline, transposes, strided class axes, broadcasts, slices of a
memory-mapped file).

Measured with tracemalloc, which sees every NumPy allocation: the peak of
the traced memory during one call, less the bytes of the result, must stay
below 1% of the input's bytes for inputs of 64 MiB and more.
"""
import tracemalloc

import numpy as np
import pytest

import klkit as kk

MiB = 1 << 20
B, T, V = 4, 129, 65536            # 129 MiB of float32 logits


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, V), dtype=np.float32)
    y = rng.standard_normal((B, T, V), dtype=np.float32)
    t = rng.integers(0, V, (B, T))
    return x, y, t


def result_bytes(r):
    if isinstance(r, tuple):
        return sum(result_bytes(v) for v in r)
    return 0 if r is None else np.asarray(r).nbytes


def extra_bytes(fn):
    """Peak traced bytes of one call of fn beyond the bytes of its result."""
    fn()                                          # imports, caches, thread pool
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        r = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - result_bytes(r)


def check(fn, input_bytes):
    assert input_bytes >= 64 * MiB, input_bytes
    extra = extra_bytes(fn)
    assert extra < 0.01 * input_bytes, f"{extra / MiB:.2f} MiB beyond the result"


VIEWS = {
    "shifted": lambda a: a[:, :-1],                        # [B, T-1, V], not collapsible
    "shifted_left": lambda a: a[:, 1:],
    "strided_classes": lambda a: a[..., ::2],              # class axis of stride 2
    "reversed_classes": lambda a: a[..., ::-1],
    "transposed": lambda a: a.reshape(B * T, V).T,         # classes along axis 0
}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("name", ["logsumexp", "log_softmax", "softmax"])
def test_dense(logits, name, view):
    x = VIEWS[view](logits[0])
    axis = 0 if view == "transposed" else -1
    check(lambda: getattr(kk, name)(x, axis=axis), x.nbytes)


def test_logsumexp_over_all_axes_of_a_view(logits):
    x = logits[0][:, :-1]
    check(lambda: kk.logsumexp(x), x.nbytes)
    check(lambda: kk.logsumexp(x, axis=(0, 2)), x.nbytes)


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("name", ["entropy", "cross_entropy", "kl_div", "js_div"])
def test_divergences(logits, name, view):
    p, q = (VIEWS[view](a) for a in logits[:2])
    axis = 0 if view == "transposed" else -1
    args = (p,) if name == "entropy" else (p, q)
    check(lambda: getattr(kk, name)(*args, axis=axis), sum(a.nbytes for a in args))


def test_divergence_broadcast_and_mixed_dtypes(logits):
    p = logits[0][:, :-1]
    q = logits[1][0, 0].astype(np.float16)                 # one row for every position
    check(lambda: kk.kl_div(p, q), p.nbytes)
    check(lambda: kk.cross_entropy(p, q, temperature=1e37), p.nbytes)    # float64 kernels


@pytest.mark.parametrize("view", ["shifted", "shifted_left", "strided_classes",
                                  "reversed_classes"])
def test_tokens(logits, view):
    x = VIEWS[view](logits[0])
    t = np.minimum(logits[2][:, :x.shape[1]], x.shape[-1] - 1)
    check(lambda: kk.token_logprobs(x, t, return_entropy=True, return_lse=True), x.nbytes)
    w = np.ones(x.shape[-1])
    check(lambda: kk.softmax_cross_entropy(x, t, weight=w, label_smoothing=0.1), x.nbytes)


def test_tokens_memory_mapped_slice(logits, tmp_path):
    path = tmp_path / "logits.bin"
    logits[0].tofile(path)
    mm = np.memmap(path, np.float32, "r", shape=logits[0].shape)
    x, t = mm[:, :-1], logits[2][:, 1:]
    check(lambda: kk.token_logprobs(x, t), x.nbytes)


def test_segments(logits):
    x, y = logits[0], logits[1]
    flat, ref = x.reshape(-1)[::2], y.reshape(-1)[::2]     # strided packed values
    offs = np.arange(0, flat.size + 1, 4096)
    check(lambda: kk.segment_sum(flat, offs), flat.nbytes)
    check(lambda: kk.seq_kl(flat, ref, offs, estimator="k3"), 2 * flat.nbytes)
    pad, padr = x.reshape(B * T, V)[:, ::2], y.reshape(B * T, V)[:, ::2]   # [B, T] strided
    mask = np.ones(pad.shape, bool)[:, ::-1]
    check(lambda: kk.segment_logsumexp(pad, mask=mask), pad.nbytes)
    check(lambda: kk.seq_kl(pad.T, padr.T, mask=mask.T, estimator="k2"), 2 * pad.nbytes)
    check(lambda: kk.agg_loss(pad, mask=mask, mode="seq-mean-token-mean"), pad.nbytes)


def test_kl_estimate_broadcast_and_views(logits):
    p, q = logits[0][:, :-1], logits[1][0, 0]
    check(lambda: kk.kl_estimate(p, q, "k3"), p.nbytes)
    check(lambda: kk.kl_estimate(p, logits[1][:, 1:], "k1", clamp=3.0), 2 * p.nbytes)


def test_many_axes_that_merge_are_not_copied():
    x = np.ones((2,) * 9 + (40000,), np.float32)       # 78 MiB, C-contiguous: one batch axis
    check(lambda: kk.logsumexp(x, axis=-1), x.nbytes)
    check(lambda: kk.token_logprobs(x, np.zeros(x.shape[:-1], np.int64)), x.nbytes)
