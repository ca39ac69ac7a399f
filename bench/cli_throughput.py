#!/usr/bin/env python
"""Throughput and memory of `klkit seq-kl` on a large Parquet file.

    python bench/cli_throughput.py FILE [--threads 2] [--repeats 3] [--scheduler local:2]

Make FILE with `klkit sample FILE --sequences 300000` (about 1 GiB of
float32 lists).  Each measurement runs in a fresh subprocess, interleaved:

    floor    pyarrow alone reading the two log-prob columns, row group by
             row group (the I/O and decoding the job cannot avoid)
    seq-kl   `klkit seq-kl FILE --quiet --json` (k3, sum), and with -o out.parquet
    dask     the same with --scheduler (when given; dask and distributed installed)

and reports tokens per second, klkit's throughput as a multiple of the
floor's, the job's own split of its time (reading / computing / writing),
and each process's peak RSS next to the size of the largest row group of
the two columns (uncompressed), the bound the streaming aims at.  The file
is read once first, so every run reads it from the page cache.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

FLOOR = r"""
import sys, time, pyarrow.parquet as pq
path, cols = sys.argv[1], sys.argv[2].split(",")
pf = pq.ParquetFile(path)
t0 = time.perf_counter()
n = 0
for g in range(pf.num_row_groups):
    t = pf.read_row_group(g, columns=cols)
    n += t.num_rows
print(time.perf_counter() - t0)
"""


def peak_rss(cmd):
    """Peak resident memory (MiB) of one run of cmd (its own rusage)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(p.pid, 0)
    if status:
        sys.exit(f"{' '.join(cmd)} failed (status {status})")
    return usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scheduler", help="also run with --scheduler (e.g. local:2)")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    pf = pq.ParquetFile(args.file)
    cols = ["logprobs", "ref_logprobs"]
    md = pf.metadata
    group_bytes = max(sum(md.row_group(g).column(i).total_uncompressed_size
                          for i in _leaf_columns(pf, cols))
                      for g in range(md.num_row_groups))
    with open(args.file, "rb") as fh:               # into the page cache
        while fh.read(64 << 20):
            pass
    py = sys.executable
    floor_cmd = [py, "-c", FLOOR, args.file, ",".join(cols)]
    kk_cmd = [py, "-m", "klkit", "seq-kl", args.file, "--quiet", "--json", "--threads",
              str(args.threads)]
    out_path = os.path.join(tempfile.mkdtemp(), "out.parquet")
    kk_out_cmd = kk_cmd + ["-o", out_path]
    cases = {"floor": floor_cmd, "seq-kl": kk_cmd, "seq-kl -o out.parquet": kk_out_cmd}
    if args.scheduler:
        cases[f"seq-kl --scheduler {args.scheduler}"] = kk_cmd + ["--scheduler", args.scheduler]
    times = {k: [] for k in cases}
    rss = {}
    splits = {}
    tokens = None
    for _ in range(args.repeats):
        for name, cmd in cases.items():
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if r.returncode:
                sys.exit(f"{name} failed:\n{r.stderr}")
            if name == "floor":
                times[name].append(float(r.stdout.strip().splitlines()[-1]))
            else:
                s = json.loads(r.stdout)
                tokens = s["tokens"]
                times[name].append(wall)
                splits[name] = (s["read_seconds"], s["compute_seconds"], s["write_seconds"])
    for name, cmd in cases.items():
        rss[name] = peak_rss(cmd)
    print(f"## klkit seq-kl on {args.file}: {os.path.getsize(args.file) / 2**30:.2f} GiB, "
          f"{md.num_rows} sequences, {tokens} tokens, {md.num_row_groups} row groups "
          f"(largest: {group_bytes / 2**20:.0f} MiB of the two columns, uncompressed); "
          f"{args.threads} threads; median of {args.repeats} interleaved runs\n")
    print("| run | seconds | M tokens/s | x floor throughput | reading / computing / writing s "
          "| peak RSS MiB |")
    print("|---|---:|---:|---:|---|---:|")
    floor = statistics.median(times["floor"])
    for name in cases:
        t = statistics.median(times[name])
        split = " / ".join(f"{x:.2f}" for x in splits[name]) if name in splits else "-"
        print(f"| {name} | {t:.2f} | {tokens / t / 1e6:.1f} | {floor / t:.2f} | {split} | "
              f"{rss[name]:.0f} |")
    print("\nseq-kl's seconds are the whole process (start-up and imports included); the "
          "floor's are its read loop only.")


def _leaf_columns(pf, names):
    """Indices of the Parquet leaf columns of the named (list) columns."""
    md = pf.metadata
    return [i for i in range(md.num_columns)
            if md.row_group(0).column(i).path_in_schema.split(".")[0] in names]


if __name__ == "__main__":
    main()
