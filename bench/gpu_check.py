"""Time klkit's CUDA kernels against the GPU's read floor and torch eager,
check them against the CPU path, and check their determinism.

    python bench/gpu_check.py [--quick] [--out DIR]

Needs a CUDA GPU, torch with CUDA and CuPy (the read floor is a plain
16-byte-load kernel compiled with CuPy).  Prints one table:

    op, shape, dtype: klkit's time (median of CUDA-event-timed runs), its
    multiple of the floor (the bytes it must move / the read bandwidth the
    same script measured; softmax outputs: read + write), torch eager's
    time for the same result and klkit's speed-up over it, and the largest
    error against klkit's CPU path on a sample of rows (relative to
    1 + |value|; for the backward row, against torch's gradient).

then the determinism checks (the same bits over 3 runs; a row alone and in
its batch).  With --out the table is also written to DIR/gpu_check.txt.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import klkit as kk

READ_KERNEL = r"""
extern "C" __global__ void read_all(const uint4 *x, long long n, unsigned *sink) {
    unsigned acc = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        uint4 v = x[i];
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) sink[0] = acc;   /* never true: keeps the loads */
}
"""


def timed(fn, reps):
    """median milliseconds of fn() over reps CUDA-event-timed runs"""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times))


def read_bandwidth(nbytes, reps):
    """bytes / second of a plain read of nbytes of device memory"""
    import cupy

    k = cupy.RawKernel(READ_KERNEL, "read_all")
    buf = cupy.random.random(nbytes // 8).view(cupy.uint8)
    sink = cupy.zeros(1, cupy.uint32)
    n = nbytes // 16
    sms = cupy.cuda.Device().attributes["MultiProcessorCount"]

    def run():
        k((sms * 8,), (512,), (buf, cupy.int64(n), sink))
    ms = timed(run, reps)
    return n * 16 / (ms * 1e-3)


def host_rows(a, rows=32):
    """the first rows of a GPU tensor as a NumPy array (bf16 via ml_dtypes)"""
    a = a[:rows]
    if a.dtype == torch.bfloat16:
        import ml_dtypes

        return a.view(torch.int16).cpu().numpy().view(ml_dtypes.bfloat16)
    return a.cpu().numpy()


def max_err(gpu, cpu):
    g = gpu.double().cpu().numpy() if torch.is_tensor(gpu) else np.asarray(gpu, np.float64)
    c = np.asarray(cpu, np.float64)
    if np.any(np.isnan(g) != np.isnan(c)):
        return math.inf
    f = np.isfinite(c)
    return float(np.max(np.abs(g[f] - c[f]) / (1 + np.abs(c[f])))) if f.any() else 0.0


def row_cases(shape, dtype, bw, reps, rows):
    n_rows, V = shape
    x = torch.randn(shape, device="cuda", dtype=torch.float32).mul_(3).to(dtype)
    y = (x.float() + 0.1 * torch.randn_like(x, dtype=torch.float32)).to(dtype)
    t = torch.randint(0, V, (n_rows,), device="cuda")
    nb = x.numel() * x.element_size()
    out_b = x.numel() * 4                       # float32 outputs of softmax
    hx, hy, ht = host_rows(x), host_rows(y), t[:32].cpu().numpy()
    cases = [
        ("logsumexp", nb, lambda: kk.logsumexp(x, axis=-1),
         lambda: torch.logsumexp(x, dim=-1),
         lambda r: max_err(r[:32], kk.logsumexp(hx, axis=-1))),
        ("log_softmax", nb + out_b, lambda: kk.log_softmax(x, axis=-1),
         lambda: torch.log_softmax(x.float(), dim=-1),
         lambda r: max_err(r[:32], kk.log_softmax(hx, axis=-1))),
        ("softmax", nb + out_b, lambda: kk.softmax(x, axis=-1),
         lambda: torch.softmax(x.float(), dim=-1),
         lambda r: max_err(r[:32], kk.softmax(hx, axis=-1))),
        ("token_logprobs", nb, lambda: kk.token_logprobs(x, t),
         lambda: torch.log_softmax(x.float(), dim=-1).gather(-1, t[:, None])[:, 0],
         lambda r: max_err(r[:32], kk.token_logprobs(hx, ht))),
        ("softmax_cross_entropy", nb,
         lambda: kk.softmax_cross_entropy(x, t, reduction="none"),
         lambda: F.cross_entropy(x.float(), t, reduction="none"),
         lambda r: max_err(r[:32], kk.softmax_cross_entropy(hx, ht, reduction="none"))),
        ("entropy", nb, lambda: kk.entropy(x),
         lambda: -(torch.softmax(x.float(), -1) * torch.log_softmax(x.float(), -1)).sum(-1),
         lambda r: max_err(r[:32], kk.entropy(hx))),
        ("kl_div", 2 * nb, lambda: kk.kl_div(x, y),
         lambda: F.kl_div(torch.log_softmax(y.float(), -1), torch.log_softmax(x.float(), -1),
                          log_target=True, reduction="none").sum(-1),
         lambda r: max_err(r[:32], kk.kl_div(hx, hy))),
    ]
    out = []
    for name, nbytes, ours, theirs, check in cases:
        try:
            ms = timed(ours, reps)
            err = check(ours())
        except Exception as e:                   # report and go on: one table in any case
            out.append((name, shape, dtype, f"FAILED: {type(e).__name__}: {e}"))
            continue
        try:
            ms_t = timed(theirs, reps)
        except torch.cuda.OutOfMemoryError:
            ms_t = math.nan
        torch.cuda.empty_cache()
        floor = nbytes / bw * 1e3
        out.append((name, shape, dtype, ms, ms / floor, ms_t, ms_t / ms, err))
    out.append(backward_case(x, t, bw, reps, shape, dtype))
    return out


def backward_case(x, t, bw, reps, shape, dtype):
    """token_logprobs forward + backward: floor = read the logits twice
    (forward, backward) and write the gradient"""
    xg = x.detach().requires_grad_(True)

    def ours():
        xg.grad = None
        kk.token_logprobs(xg, t).sum().backward()

    def theirs():
        xg.grad = None
        torch.log_softmax(xg.float(), -1).gather(-1, t[:, None]).sum().backward()
    try:
        ms = timed(ours, reps)
        ours()
        g = xg.grad.float()
        theirs()
        err = float(((g - xg.grad.float()).abs() / (1 + xg.grad.float().abs())).max())
        ms_t = timed(theirs, reps)
    except Exception as e:
        return ("token_logprobs fwd+bwd", shape, dtype, f"FAILED: {type(e).__name__}: {e}")
    finally:
        xg.grad = None
        torch.cuda.empty_cache()
    nb = x.numel() * x.element_size()
    return ("token_logprobs fwd+bwd", shape, dtype, ms, ms / (3 * nb / bw * 1e3), ms_t,
            ms_t / ms, err)


def segment_cases(n_tokens, bw, reps):
    # skewed lengths: many 1-token sequences, a few of 10^6, the rest ~1000
    lens = np.concatenate([np.ones(100000, np.int64), np.full(20, 10**6),
                           np.full(max((n_tokens - 100000 - 20 * 10**6) // 1000, 0), 1000)])
    rng = np.random.default_rng(0)
    rng.shuffle(lens)
    off = np.concatenate([[0], np.cumsum(lens)])
    v = torch.randn(int(off[-1]), device="cuda")
    w = torch.randn_like(v)
    go = torch.from_numpy(off).cuda()
    gl = torch.from_numpy(lens).cuda()
    nb = v.numel() * 4
    out = []
    for name, nbytes, ours, theirs in [
        ("segment_sum", nb, lambda: kk.segment_sum(v, go),
         lambda: torch.segment_reduce(v, "sum", lengths=gl)),
        ("seq_kl k3", 2 * nb, lambda: kk.seq_kl(v, w, go, estimator="k3"),
         lambda: torch.segment_reduce(torch.expm1(w - v) - (w - v), "sum", lengths=gl)),
    ]:
        try:
            ms = timed(ours, reps)
            r = ours()
            c = (kk.segment_sum(v.cpu().numpy(), off) if name == "segment_sum"
                 else kk.seq_kl(v.cpu().numpy(), w.cpu().numpy(), off, estimator="k3"))
            err = max_err(r, c)
        except Exception as e:
            out.append((name, (v.numel(),), "float32", f"FAILED: {type(e).__name__}: {e}"))
            continue
        ms_t = timed(theirs, reps)
        out.append((name, (v.numel(),), "float32", ms, ms / (nbytes / bw * 1e3), ms_t,
                    ms_t / ms, err))
    return out


def determinism():
    x = torch.randn(64, 262144, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(64, 262144, device="cuda", dtype=torch.bfloat16)
    lines = []
    for name, fn in [("logsumexp", lambda a, b: kk.logsumexp(a, axis=-1)),
                     ("entropy", lambda a, b: kk.entropy(a)),
                     ("kl_div", lambda a, b: kk.kl_div(a, b)),
                     ("token_logprobs", lambda a, b: kk.token_logprobs(
                         a, torch.zeros(a.shape[0], dtype=torch.long, device="cuda")))]:
        runs = [fn(x, y) for _ in range(3)]
        same = all(torch.equal(runs[0], r) for r in runs[1:])
        alone = fn(x[17:18], y[17:18])
        lines.append(f"{name}: 3 runs identical: {same}; row 17 alone == in batch: "
                     f"{torch.equal(alone, runs[0][17:18])}")
    return lines


def fmt(rows):
    head = (f"{'op':<22} {'shape':<16} {'dtype':<9} {'ms':>8} {'x floor':>8} "
            f"{'torch ms':>9} {'speed-up':>9} {'max err':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if isinstance(r[3], str):
            dt = str(r[2]).replace("torch.", "")
            lines.append(f"{r[0]:<22} {str(tuple(r[1])):<16} {dt:<9} {r[3]}")
            continue
        name, shape, dtype, ms, xf, ms_t, su, err = r
        dt = str(dtype).replace("torch.", "")
        lines.append(f"{name:<22} {str(tuple(shape)):<16} {dt:<9} {ms:8.3f} {xf:8.2f} "
                     f"{ms_t:9.3f} {su:9.2f} {err:9.1e}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    a = ap.parse_args(argv)
    reps = 5 if a.quick else 20
    dev = torch.cuda.get_device_properties(0)
    bw = read_bandwidth(4 << 30 if not a.quick else 1 << 30, reps)
    lines = [f"GPU: {dev.name}, {dev.multi_processor_count} SMs; klkit {kk.__version__}",
             f"read floor: {bw / 1e12:.2f} TB/s (a plain 16-byte-load kernel over "
             f"{4 if not a.quick else 1} GiB)"]
    rows = []
    big = (8192, 131072) if not a.quick else (1024, 131072)
    for shape, dtype in [(big, torch.bfloat16), (big, torch.float32),
                         ((64, 262144), torch.bfloat16), ((8192, 32768), torch.bfloat16)]:
        rows += row_cases(shape, dtype, bw, reps, 32)
    rows += segment_cases(10**8 if not a.quick else 10**7 * 3, bw, reps)
    lines += fmt(rows)
    lines += ["", "determinism:"] + determinism()
    text = "\n".join(lines)
    print(text)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "gpu_check.txt"), "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
