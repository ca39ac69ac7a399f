#!/usr/bin/env python
"""Forward + backward of per-token log-probs: klkit's autograd against torch's.

    python bench/autograd_bench.py [--rows 4096] [--vocab 32768] [--threads 2]
                                   [--repeats 5] [--no-memory]

On float32 logits [rows, vocab] (512 MiB at the default shape) that require
grad, and int64 targets, it times in one run, on the same tensors:

    floor          np.max(x, axis=-1): one read pass over the logits (one
                   thread, as bench/report.py's floor)
    klkit          kk.token_logprobs(x, t).sum().backward()
    torch          torch.log_softmax(x, -1).gather(-1, t[:, None]).sum().backward()
    klkit+entropy  the same with return_entropy=True, loss lp.sum() + H.sum()
    torch+entropy  log_softmax once, lp and H = -(exp(ls) * ls).sum(-1) from it

each as the median of --repeats interleaved rounds (x.grad reset to None
before each call, so every backward allocates its gradient), and prints
each time as a multiple of the floor and klkit's speed-up over torch.  Then
(unless --no-memory) each of the four runs once in a fresh subprocess that
reports its peak resident memory above what the inputs already used
(VmHWM - VmRSS before the call, Linux): the gradient itself is
rows * vocab * 4 bytes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ("klkit", "torch", "klkit+entropy", "torch+entropy")


def make_inputs(rows, vocab, seed=0):
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((rows, vocab), dtype=np.float32) * 3)
    t = torch.from_numpy(rng.integers(0, vocab, rows))
    return x.requires_grad_(True), t


def step(case, x, t):
    """One forward + backward of the case (x.grad is written)."""
    import torch

    import klkit as kk

    x.grad = None
    if case == "klkit":
        kk.token_logprobs(x, t).sum().backward()
    elif case == "klkit+entropy":
        r = kk.token_logprobs(x, t, return_entropy=True)
        (r.logprobs.sum() + r.entropy.sum()).backward()
    elif case == "torch":
        torch.log_softmax(x, -1).gather(-1, t[:, None]).sum().backward()
    else:
        ls = torch.log_softmax(x, -1)
        (ls.gather(-1, t[:, None]).sum() - (ls.exp() * ls).sum()).backward()


def status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(case, rows, vocab, threads):
    import torch

    import klkit as kk

    kk.set_num_threads(threads)
    torch.set_num_threads(threads)
    x, t = make_inputs(rows, vocab)
    with open("/proc/self/clear_refs", "w") as fh:   # reset VmHWM to VmRSS
        fh.write("5")
    before = status_kib("VmRSS")
    t0 = time.perf_counter()
    step(case, x, t)
    seconds = time.perf_counter() - t0
    print(json.dumps({"extra_mib": (status_kib("VmHWM") - before) / 1024, "seconds": seconds}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.rows, a.vocab, a.threads)
        return

    import numpy as np
    import torch

    import klkit as kk

    kk.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    x, t = make_inputs(a.rows, a.vocab)
    xn = x.detach().numpy()
    fns = {"floor": lambda: np.max(xn, axis=-1), **{c: (lambda c=c: step(c, x, t)) for c in CASES}}
    for f in fns.values():        # warm-up (first-touch of every buffer)
        f()
    times = {k: [] for k in fns}
    for _ in range(a.repeats):     # interleaved rounds
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"token_logprobs forward + backward, float32 [{a.rows}, {a.vocab}] "
          f"({a.rows * a.vocab * 4 / 2**20:.0f} MiB), {a.threads} threads, "
          f"code path {kk._kernels.build_info().get('isa', '?')}, median of {a.repeats}")
    print(f"{'case':15s} {'x floor':>8s} {'range':>13s} {'klkit speed-up':>15s}")
    for k in fns:
        lo, hi = min(times[k]) / med["floor"], max(times[k]) / med["floor"]
        up = ""
        if k.startswith("torch"):
            up = f"{med[k] / med[k.replace('torch', 'klkit')]:.1f}x"
        print(f"{k:15s} {med[k] / med['floor']:7.2f}x {lo:6.2f}-{hi:5.2f}x {up:>15s}")
    if a.no_memory:
        return
    grad_mib = a.rows * a.vocab * 4 / 2**20
    print(f"\npeak memory above the inputs (gradient alone: {grad_mib:.0f} MiB), one fresh "
          "process each")
    for c in CASES:
        r = subprocess.run([sys.executable, __file__, "--child", c, "--rows", str(a.rows),
                            "--vocab", str(a.vocab), "--threads", str(a.threads)],
                           capture_output=True, text=True, env=os.environ)
        if r.returncode:
            print(f"{c:15s} failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        m = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{c:15s} {m['extra_mib']:8.0f} MiB  ({m['extra_mib'] / grad_mib:.2f}x the gradient)")


if __name__ == "__main__":
    main()
