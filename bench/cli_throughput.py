#!/usr/bin/env python
"""Throughput and memory of `klkit seq-kl` on a large Parquet file.

    python bench/cli_throughput.py FILE [--threads N] [--repeats 3] [--scheduler local:2]

Make FILE with `klkit sample FILE --sequences 300000` (about 1 GiB of
float32 lists).  Each measurement runs in a fresh subprocess, interleaved:

    floor    pyarrow alone reading the two log-prob columns (the I/O and
             decoding the job cannot avoid), three ways: whole row groups
             (read_row_group), streamed slices of them (iter_batches, its
             columns on pyarrow's threads), and streamed slices of two row
             groups at once on two threads (as klkit reads); the fastest is
             the floor
    seq-kl   `klkit seq-kl FILE --quiet --json` (k3, sum), and with -o out.parquet
    dask     the same with --scheduler (when given; dask and distributed installed)

and reports tokens per second of each whole process (start-up included,
the same for every row), klkit's throughput as a multiple of the floor's,
the job's own split of its time (reading / computing / writing), and each
process's peak RSS next to the size of the largest row group of the two
columns (decoded), the unit the bound is stated in.  The file is read
once first, so every run reads it from the page cache.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

FLOOR_GROUPS = r"""
import sys, pyarrow.parquet as pq
path, cols = sys.argv[1], sys.argv[2].split(",")
pf = pq.ParquetFile(path)
for g in range(pf.num_row_groups):
    pf.read_row_group(g, columns=cols)
"""

FLOOR_TWO_GROUPS = r"""
import sys, threading, pyarrow.parquet as pq
from klkit import io
path, cols = sys.argv[1], sys.argv[2].split(",")
n = pq.ParquetFile(path).num_row_groups
def read(groups):
    pf = pq.ParquetFile(path, buffer_size=io.READ_BUFFER, pre_buffer=False)
    for g in groups:
        rows = io._rows_per_batch(pf.metadata.row_group(g), cols)
        for b in pf.iter_batches(batch_size=rows, row_groups=[g], columns=cols,
                                 use_threads=False):
            pass
threads = [threading.Thread(target=read, args=(range(i, n, 2),)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""

FLOOR_STREAMED = r"""
import sys, pyarrow.parquet as pq
from klkit import io
path, cols = sys.argv[1], sys.argv[2].split(",")
pf = pq.ParquetFile(path, buffer_size=io.READ_BUFFER, pre_buffer=False)
for g in range(pf.num_row_groups):
    rows = io._rows_per_batch(pf.metadata.row_group(g), cols)
    for b in pf.iter_batches(batch_size=rows, row_groups=[g], columns=cols):
        pass
"""


PEAK_RSS = r"""
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(cmd):
    """Peak resident memory (MiB) of one run of cmd, started from a small
    process (Linux carries a parent's high-water mark into a forked child)."""
    r = subprocess.run([sys.executable, "-c", PEAK_RSS, *cmd], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return int(r.stdout) / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--threads", type=int, help="seq-kl --threads (default: its own)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scheduler", help="also run with --scheduler (e.g. local:2)")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    pf = pq.ParquetFile(args.file)
    cols = ["logprobs", "ref_logprobs"]
    md = pf.metadata
    largest = max(range(md.num_row_groups), key=lambda g: md.row_group(g).num_rows)
    group_bytes = pf.read_row_group(largest, columns=cols).nbytes     # decoded
    with open(args.file, "rb") as fh:               # into the page cache
        while fh.read(64 << 20):
            pass
    py = sys.executable
    kk_cmd = [py, "-m", "klkit", "seq-kl", args.file, "--quiet", "--json"]
    if args.threads:
        kk_cmd += ["--threads", str(args.threads)]
    out_path = os.path.join(tempfile.mkdtemp(), "out.parquet")
    cases = {"pyarrow read_row_group": [py, "-c", FLOOR_GROUPS, args.file, ",".join(cols)],
             "pyarrow iter_batches": [py, "-c", FLOOR_STREAMED, args.file, ",".join(cols)],
             "pyarrow iter_batches, 2 row groups at once": [py, "-c", FLOOR_TWO_GROUPS, args.file,
                                                            ",".join(cols)],
             "klkit seq-kl": kk_cmd,
             "klkit seq-kl -o out.parquet": kk_cmd + ["-o", out_path]}
    if args.scheduler:
        cases[f"klkit seq-kl --scheduler {args.scheduler}"] = kk_cmd + ["--scheduler",
                                                                       args.scheduler]
    times = {k: [] for k in cases}
    splits = {}
    tokens = None
    for _ in range(args.repeats):
        for name, cmd in cases.items():
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            times[name].append(time.perf_counter() - t0)
            if r.returncode:
                sys.exit(f"{name} failed:\n{r.stderr}")
            if name.startswith("klkit"):
                s = json.loads(r.stdout)
                tokens = s["tokens"]
                splits.setdefault(name, []).append(
                    (s["read_seconds"], s["compute_seconds"], s["write_seconds"]))
    rss = {name: peak_rss(cmd) for name, cmd in cases.items()}
    print(f"## klkit seq-kl on {os.path.basename(args.file)}: "
          f"{os.path.getsize(args.file) / 2**30:.2f} GiB, {md.num_rows} sequences, "
          f"{tokens / 1e6:.0f} M tokens, {md.num_row_groups} row groups (the largest: "
          f"{group_bytes / 2**20:.0f} MiB of the two columns, decoded); seq-kl --threads "
          f"{args.threads or 'default'}; "
          f"median (range) of {args.repeats} interleaved runs\n")
    print("| run | seconds | M tokens/s | x floor | reading / computing / writing s "
          "| peak RSS MiB |")
    print("|---|---:|---:|---:|---|---:|")
    floor = min(statistics.median(times[k]) for k in cases if k.startswith("pyarrow"))
    for name in cases:
        t = statistics.median(times[name])
        split = "-"
        if name in splits:
            split = " / ".join(f"{statistics.median(x):.2f}" for x in zip(*splits[name]))
        print(f"| {name} | {t:.2f} ({min(times[name]):.2f}-{max(times[name]):.2f}) | "
              f"{tokens / t / 1e6:.0f} | {floor / t:.2f} | {split} | {rss[name]:.0f} |")
    print("\nseconds: the whole process, start-up included; x floor: throughput over the "
          "fastest pyarrow read's.  Peak RSS bound stated by klkit: two row groups + 100 MiB "
          f"= {2 * group_bytes / 2**20 + 100:.0f} MiB.")


if __name__ == "__main__":
    main()
