#!/usr/bin/env python
"""Peak extra memory of per-token log-probs on big bfloat16 logits.

    python bench/peak_memory.py [--rows 8192] [--vocab 131072] [--threads 2]

Each implementation runs in a fresh subprocess that builds the logits
([rows, vocab] bfloat16, 2 GiB at the default shape) and int64 targets
chunk by chunk, resets the kernel's peak-RSS mark (/proc/self/clear_refs),
calls the function once and reports the peak resident memory above what the
inputs already used (VmHWM - VmRSS before the call), with the wall time:

    klkit        kk.token_logprobs(logits, targets)     (float32 [rows] out)
    torch_ce     -F.cross_entropy(logits, targets, reduction="none")
    torch_gather torch.log_softmax(logits, -1).gather(-1, targets[:, None])

torch works on the bfloat16 tensor as it is (its CPU kernels take bf16);
klkit gets the same tensor (zero-copy through ml_dtypes).  Linux only.
"""
import argparse
import json
import os
import subprocess
import sys
import time

IMPLS = ("klkit", "torch_ce", "torch_gather")


def status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(impl, rows, vocab, threads):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    logits = torch.empty((rows, vocab), dtype=torch.bfloat16)
    gen = torch.Generator().manual_seed(0)
    step = max(1, (64 << 20) // (vocab * 4))          # ~64 MiB of float32 at a time
    for i in range(0, rows, step):
        logits[i:i + step] = torch.randn((min(step, rows - i), vocab), generator=gen) * 2
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    if impl == "klkit":
        import klkit as kk

        kk.set_num_threads(threads)
        fn = lambda: kk.token_logprobs(logits, targets)  # noqa: E731
    elif impl == "torch_ce":
        F = torch.nn.functional
        fn = lambda: -F.cross_entropy(logits, targets, reduction="none")  # noqa: E731
    else:
        fn = lambda: torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]  # noqa: E731
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")                                  # reset VmHWM to the current RSS
    before = status_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = status_kib("VmHWM")
    result = np.asarray(out.float() if hasattr(out, "float") else out)
    print(json.dumps(dict(impl=impl, extra_mib=(peak - before) / 1024, wall_s=wall,
                          input_mib=logits.numel() * 2 / 2**20,
                          output_mib=result.nbytes / 2**20)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=131072)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=IMPLS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rows, args.vocab, args.threads)
        return
    print(f"## peak extra memory, logits [{args.rows}, {args.vocab}] bfloat16, "
          f"{args.threads} threads\n")
    print("| implementation | input MiB | output MiB | peak extra RSS MiB | wall s |")
    print("|---|---:|---:|---:|---:|")
    for impl in IMPLS:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, "--rows",
               str(args.rows), "--vocab", str(args.vocab), "--threads", str(args.threads)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"| {impl} | failed: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode} |")
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"| {impl} | {d['input_mib']:.0f} | {d['output_mib']:.3f} | "
              f"{d['extra_mib']:.1f} | {d['wall_s']:.2f} |")


if __name__ == "__main__":
    main()
