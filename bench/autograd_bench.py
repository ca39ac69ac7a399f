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

each case as --repeats interleaved (floor, case) pairs, the cases one
after the other (x.grad reset to None before each call, so every backward
allocates its gradient), and prints the median of each case's per-pair
ratios to the floor (and their range) and klkit's speed-up over torch (the
ratio of median times).  Then
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

from peak_memory import status_kib   # (bench/, beside this script)

CASES = ("klkit", "klkit+entropy", "torch", "torch+entropy")


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
    floor = lambda: np.max(xn, axis=-1)  # noqa: E731
    ratios, secs = {}, {}
    # each case as interleaved (floor, case) pairs, the klkit cases first:
    # torch's gigabytes of temporaries, freed, leave the next huge-page
    # allocations to compaction, which would be charged to whatever follows
    for c in CASES:
        step(c, x, t)              # warm-up
        ratios[c], secs[c] = [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            floor()
            t1 = time.perf_counter()
            step(c, x, t)
            t2 = time.perf_counter()
            ratios[c].append((t2 - t1) / (t1 - t0))
            secs[c].append(t2 - t1)
    print(f"token_logprobs forward + backward, float32 [{a.rows}, {a.vocab}] "
          f"({a.rows * a.vocab * 4 / 2**20:.0f} MiB), {a.threads} threads, "
          f"code path {kk._kernels.build_info().get('isa', '?')}, {a.repeats} pairs each")
    print(f"{'case':15s} {'x floor':>8s} {'range':>13s} {'klkit speed-up':>15s}")
    for c in CASES:
        med = statistics.median(ratios[c])
        up = ""
        if c.startswith("torch"):
            mine = secs[c.replace("torch", "klkit")]
            up = f"{statistics.median(secs[c]) / statistics.median(mine):.1f}x"
        print(f"{c:15s} {med:7.2f}x {min(ratios[c]):6.2f}-{max(ratios[c]):5.2f}x {up:>15s}")
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
