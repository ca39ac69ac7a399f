"""klkit seq-kl [PATH ...]: per-sequence KL of files of per-token log-probs.

Each row of the input is one sampled sequence with two list columns: the
log-probs of its tokens under the policy (--logp) and under the reference
model (--ref).  For every sequence the command computes the KL estimate of
each --estimator, summed over the sequence's tokens (--reduce sum, the RLHF
sequence KL) or averaged (--reduce mean), and prints the distribution over
sequences; -o writes one row per sequence.

PATH: Parquet files, directories of them, glob patterns, Arrow IPC /
Feather files, JSON Lines files.  Without PATH the command runs on a small
sample file shipped with klkit, and says so.

Estimators (d = logp - ref, r = -d; Schulman, "Approximating KL
divergence"): k1 = d, k2 = d^2 / 2, k3 = exp(r) - 1 - r (>= 0, computed
without cancellation), abs = |d|; --clamp C limits d to [-C, C] first.

Files are read a batch at a time (a slice of a Parquet row group of
about 260,000 tokens, an Arrow record batch, a 16 MiB block of JSON) on
two threads, each decoding a row group (or batch) and computing its slices
while they are in the cache, so memory is bounded by a few batches of the
columns read, not by the file (nor, for Parquet, by its row groups).  --scheduler runs the job on a Dask cluster,
one task per row group, with the same output and summary.

A null list, and a sequence whose --mask is all False, is an empty
sequence (n_tokens 0, estimate 0); empty sequences are counted, and left
out of the distribution.
"""
import json
import math
import sys
import time

import numpy as np

from . import CliError

DEFAULT_LOGP = ("logprobs", "logp", "log_probs", "old_log_probs", "old_logprobs",
                "policy_logprobs")
DEFAULT_REF = ("ref_logprobs", "ref_logp", "ref_log_probs", "ref_log_prob", "reference_logprobs")
ESTIMATORS = ("k1", "k2", "k3", "abs", "kl", "mse", "low_var_kl")
PERCENTILES = (50, 90, 99)


def add_parser(sub, name):
    p = sub.add_parser(name, help="per-sequence KL of files of per-token log-probs",
                       description=__doc__,
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="input files (default: the "
                   "sample file shipped with klkit)")
    p.add_argument("--logp", metavar="COL", help="the policy's log-probs, a list<float> "
                   f"column (default: the first of {', '.join(DEFAULT_LOGP)})")
    p.add_argument("--ref", metavar="COL", help="the reference's log-probs (default: the "
                   f"first of {', '.join(DEFAULT_REF)})")
    p.add_argument("--mask", metavar="COL", help="a list<bool> column: only its True tokens "
                   "count")
    p.add_argument("--estimator", default="k3", metavar="E[,E...]",
                   help="k1, k2, k3, abs (verl's kl, mse, low_var_kl), one output column "
                   "each (default k3)")
    p.add_argument("--reduce", choices=("sum", "mean"), default="sum",
                   help="sum (default) or mean over each sequence's tokens")
    p.add_argument("--clamp", type=float, metavar="C", help="limit each d to [-C, C]")
    p.add_argument("--keep", default="", metavar="COL[,COL...]",
                   help="input columns to copy into the output (ids)")
    p.add_argument("-o", "--output", metavar="OUT", help="write one row per sequence: "
                   ".parquet, .csv or .jsonl")
    p.add_argument("--on-nan", choices=("propagate", "error"), default="propagate",
                   help="a NaN log-prob: propagate to its sequence and count it (default), "
                   "or stop with an error naming it")
    p.add_argument("--threads", type=int, metavar="N", help="kernel threads of each of the "
                   "two threads that read and compute (default: half the cores, at least one; "
                   "with --scheduler: per worker, default the cores over the workers)")
    p.add_argument("--scheduler", metavar="S", help="run on a Dask cluster: local (a "
                   "LocalCluster of one worker per core), local:N (N workers), or the address "
                   "of a running scheduler, tcp://HOST:PORT (its workers must read the input "
                   "files at the same paths); needs the dask extra")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------

def _estimators(text):
    names = [e.strip() for e in text.split(",") if e.strip()]
    bad = [e for e in names if e not in ESTIMATORS]
    if not names or bad:
        raise CliError(f"--estimator: expected names from {', '.join(ESTIMATORS)}, got "
                       f"{text!r}")
    if len(set(names)) != len(names):
        raise CliError(f"--estimator: {text!r} names an estimator twice")
    return names


def _column(schema, given, defaults, flag, path):
    """The column for a --flag: the one given, else the first default present."""
    names = schema.names
    if given is not None:
        if given not in names:
            raise CliError(f"{path}: no column {given!r} ({flag}); columns: {', '.join(names)}")
        return _unique(names, given, flag, path)
    for name in defaults:
        if name in names:
            return _unique(names, name, flag, path)
    raise CliError(f"{path}: none of the default columns {', '.join(defaults)} ({flag}); "
                   f"columns: {', '.join(names)}; name one with {flag} COL")


def _unique(names, name, flag, path):
    if names.count(name) > 1:
        raise CliError(f"{path}: {names.count(name)} columns are named {name!r} ({flag}); "
                       "rename them apart")
    return name


def _check_type(schema, name, flag, path, bool_values=False):
    import pyarrow as pa

    t = schema.field(name).type
    ok = (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
        pa.types.is_boolean(t.value_type) if bool_values else pa.types.is_floating(t.value_type))
    if not ok:
        want = "a list of booleans" if bool_values else "a list of floats"
        raise CliError(f"{path}: column {name!r} ({flag}) is {t}, expected {want}")


class Job:
    """What to compute, resolved against the first file's columns."""

    def __init__(self, args, schema, path):
        self.estimators = _estimators(args.estimator)
        self.reduce = args.reduce
        if args.clamp is not None and not args.clamp >= 0:
            raise CliError(f"--clamp: expected a number >= 0, got {args.clamp}")
        self.clamp = args.clamp
        self.on_nan = args.on_nan
        self.logp = _column(schema, args.logp, DEFAULT_LOGP, "--logp", path)
        self.ref = _column(schema, args.ref, DEFAULT_REF, "--ref", path)
        self.mask = args.mask
        self.keep = [c.strip() for c in args.keep.split(",") if c.strip()]
        reserved = {"file", "row", "n_tokens", *self.estimators}
        for c in self.keep:
            if c in reserved:
                raise CliError(f"--keep: {c!r} is also the name of an output column")
        self.columns = list(dict.fromkeys([self.logp, self.ref] + ([self.mask] if self.mask
                                                                   else []) + self.keep))

    def check(self, schema, path):
        """The columns exist in this file and have list types."""
        for name, flag in ((self.logp, "--logp"), (self.ref, "--ref"), (self.mask, "--mask")):
            if name is not None:
                _column(schema, name, (), flag, path)
                _check_type(schema, name, flag, path, bool_values=flag == "--mask")
        for name in self.keep:
            _column(schema, name, (), "--keep", path)


# --------------------------------------------------------------------------
# one batch
# --------------------------------------------------------------------------

class Counts:
    """What the summary adds up over batches (values: per estimator, of
    the non-empty sequences)."""

    def __init__(self, estimators):
        self.rows = self.empty = self.tokens = self.nan = self.clamped = 0
        self.values = {e: [] for e in estimators}

    def add(self, other):
        self.rows += other.rows
        self.empty += other.empty
        self.tokens += other.tokens
        self.nan += other.nan
        self.clamped += other.clamped
        for e, v in other.values.items():
            self.values[e] += v


def _where(batch, i, column):
    """Where row i of a batch is: file, row group (or batch), file row, column."""
    from .. import io

    unit = "row group" if batch.file.endswith(io.PARQUET) else "batch"
    return f"{batch.file}, {unit} {batch.index}, row {batch.row0 + i}, column {column!r}"


def _tokens(batch, name, what="log-prob"):
    """(values, starts, lengths) of a list column of a batch, read in place
    (a null list: length 0); a null inside a list is an error naming its row."""
    from .. import _arrow

    try:
        return _arrow.part(batch.data.column(name), name)
    except _arrow.NullInList as exc:
        raise CliError(f"{_where(batch, exc.sequence, name)}: a null {what} inside the "
                       "list") from None


def _flat(x, starts, lens):
    """The lists' values back to back: a view of x when they are contiguous
    (a null list backed by values is not)."""
    if not lens.size:
        return x[:0]
    if np.array_equal(starts[1:], starts[:-1] + lens[:-1]):
        return x[starts[0]:starts[0] + lens.sum()]
    shift = starts - np.concatenate([[0], np.cumsum(lens)[:-1]])
    return x[np.repeat(shift, lens) + np.arange(lens.sum())]


def _offsets(lens):
    return np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


# Result columns are built from their buffers: pa.array would import pandas
# (half a second) on its first call wherever pandas is installed.

def _arrow_column(v):
    """A 1-D int64 / float64 NumPy array as an Arrow array (no copy)."""
    import pyarrow as pa

    v = np.ascontiguousarray(v)
    return pa.Array.from_buffers(pa.from_numpy_dtype(v.dtype), len(v), [None, pa.py_buffer(v)])


def _repeated(text, n):
    """An Arrow string array of n copies of text."""
    import pyarrow as pa

    b = text.encode()
    small = n * len(b) < 2**31                # else 64-bit offsets
    off = np.arange(n + 1, dtype=np.int32 if small else np.int64) * len(b)
    return pa.Array.from_buffers(pa.string() if small else pa.large_string(), n,
                                 [None, pa.py_buffer(off), pa.py_buffer(b * n)])


def compute_batch(batch, job):
    """(result record batch, Counts) of one input batch: klkit's seq_kl of
    each estimator, the same bits as kk.seq_kl on the batch's columns."""
    import pyarrow as pa

    from ..segments import seq_kl_parts

    n = batch.data.num_rows
    a, starts, nl = _tokens(batch, job.logp)     # the tokens in place, any list layout
    b, rstarts, nr = _tokens(batch, job.ref)
    bad = np.flatnonzero(nl != nr)
    if bad.size:
        i = int(bad[0])
        raise CliError(f"{_where(batch, i, job.ref)}: {nr[i]} tokens, but {job.logp!r} has "
                       f"{nl[i]}")
    if job.mask is not None or job.on_nan == "error" or job.clamp is not None:
        # the tokens back to back (views where the lists are contiguous)
        a, b = _flat(a, starts, nl), _flat(b, rstarts, nr)
        offsets = _offsets(nl)
        if job.mask is not None:
            m, mstarts, nm = _tokens(batch, job.mask, "mask value")
            bad = np.flatnonzero(nm != nl)
            if bad.size:
                i = int(bad[0])
                raise CliError(f"{_where(batch, i, job.mask)}: {nm[i]} mask values for "
                               f"{nl[i]} tokens")
            on = _flat(m, mstarts, nm) != 0
            a, b = a[on], b[on]
            offsets = _offsets(on)[offsets]   # tokens kept before each sequence's end
            nl = np.diff(offsets)
        starts = rstarts = offsets[:-1]
    counts = Counts(job.estimators)
    counts.rows = n
    counts.tokens = int(nl.sum())
    empty = nl == 0
    counts.empty = int(empty.sum())
    if job.on_nan == "error":
        for v, name in ((a, job.logp), (b, job.ref)):
            nan = np.flatnonzero(np.isnan(v))
            if nan.size:
                i = int(np.searchsorted(offsets, nan[0], side="right") - 1)
                raise CliError(f"{_where(batch, i, name)}: NaN at token {nan[0] - offsets[i]} "
                               "(--on-nan error)")
    if job.clamp is not None:             # the kernels clamp the exact difference
        with np.errstate(invalid="ignore"):
            counts.clamped = int(np.count_nonzero(
                np.abs(a.astype(np.float64) - b.astype(np.float64)) > job.clamp))
    columns = {"file": _repeated(batch.file, n),
               "row": _arrow_column(np.arange(batch.row0, batch.row0 + n, dtype=np.int64)),
               "n_tokens": _arrow_column(nl)}
    for est in job.estimators:
        v = seq_kl_parts((a, starts), (b, rstarts), nl, estimator=est, reduce=job.reduce,
                         clamp=job.clamp).astype(np.float64)   # one output type for any input
        columns[est] = _arrow_column(v)
        keep = v[~empty]
        counts.nan = max(counts.nan, int(np.count_nonzero(np.isnan(keep))))
        counts.values[est].append(keep)
    for c in job.keep:
        columns[c] = batch.data.column(c)
    return pa.RecordBatch.from_pydict(columns), counts


# --------------------------------------------------------------------------
# the summary
# --------------------------------------------------------------------------

def summary(counts, job, files, seconds, spent):
    """The summary of a run; spent: seconds reading (decoding), computing
    (klkit) and writing."""
    out = {"files": files, "sequences": counts.rows, "empty_sequences": counts.empty,
           "tokens": counts.tokens, "nan_sequences": counts.nan, "reduce": job.reduce,
           "clamp": job.clamp, "seconds": round(seconds, 3),
           **{f"{k}_seconds": round(v, 3) for k, v in spent.items()}, "estimators": {}}
    if job.clamp is not None:
        out["clamped_tokens"] = counts.clamped
    for est, parts in counts.values.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        v = v[~np.isnan(v)].astype(np.float64)
        stats = {"count": int(v.size)}
        if v.size:
            stats.update(mean=float(v.mean()), std=float(v.std()), min=float(v.min()))
            stats.update({f"p{q}": float(x) for q, x in zip(PERCENTILES,
                                                            np.percentile(v, PERCENTILES))})
            stats["max"] = float(v.max())
        out["estimators"][est] = stats
    return out


def print_summary(s, stream):
    what = f"KL per sequence ({s['reduce']} over tokens" + (
        f", d clamped to +-{s['clamp']:g}" if s["clamp"] is not None else "") + ")"
    lines = [f"{s['sequences']} sequences ({s['empty_sequences']} empty, "
             f"{s['nan_sequences']} with NaN), {s['tokens']} tokens, {s['seconds']:.2f} s "
             f"(reading {s['read_seconds']:.2f} and computing {s['compute_seconds']:.2f}, "
             f"summed over the threads that read; writing {s['write_seconds']:.2f})"]
    if "workers" in s:
        lines.append(f"on {s['workers']} Dask workers ({s['scheduler']})")
    if s["clamp"] is not None:
        lines.append(f"clamped tokens: {s['clamped_tokens']}")
    heads = ["estimator", "mean", "std", "min", "p50", "p90", "p99", "max"]
    rows = [[e] + [f"{st[k]:.6g}" if k in st else "-" for k in heads[1:]]
            for e, st in s["estimators"].items()]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        width = [max(len(r[i]) for r in [heads] + rows) for i in range(len(heads))]
        print(what, file=stream)
        for r in [heads] + rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, width)), file=stream)
    else:
        table = Table(title=what, title_justify="left")
        for h in heads:
            table.add_column(h, justify="left" if h == "estimator" else "right")
        for r in rows:
            table.add_row(*r)
        Console(file=stream, width=100).print(table)
    for line in lines:
        print(line, file=stream)


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------

class Progress:
    """Rows, tokens, bytes, rate and ETA on stderr when it is a terminal
    (rich), nothing otherwise or with --quiet."""

    def __init__(self, total_bytes, quiet):
        self._bar = None
        if quiet or not sys.stderr.isatty():
            return
        try:
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)
        except ImportError:
            return
        self._bar = Bar(TextColumn("{task.fields[rows]:>10,} rows {task.fields[tokens]:>14,} "
                                   "tokens"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                        console=Console(stderr=True))
        self._task = self._bar.add_task("seq-kl", total=total_bytes, rows=0, tokens=0)
        self._bar.start()

    def update(self, done_bytes, rows, tokens):
        if self._bar is not None:
            self._bar.update(self._task, completed=done_bytes, rows=rows, tokens=tokens)

    def close(self):
        if self._bar is not None:
            self._bar.stop()


# --------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------

def sample_path():
    from importlib.resources import files

    return str(files("klkit") / "data" / "sample.parquet")


def run(args):
    from .. import io

    import klkit as kk

    t0 = time.perf_counter()
    paths = args.paths
    if not paths:
        paths = [sample_path()]
        print(f"klkit seq-kl: no PATH given: running on the sample file shipped with klkit "
              f"({paths[0]})", file=sys.stderr)
    if args.threads is not None and args.threads < 1:
        raise CliError(f"--threads: expected a count >= 1, got {args.threads}")
    if not args.scheduler:
        # UNIT_THREADS threads each decode and compute a unit; by default
        # each call's kernels take a share of the cores (at least one)
        kk.set_num_threads(args.threads or max(1, cores() // UNIT_THREADS))
    try:
        sources = [io.Source(f) for f in io.expand(paths)]
        writer = io.ResultWriter(args.output) if args.output else None
    except io.SourceError as exc:
        raise CliError(str(exc)) from None
    job = Job(args, sources[0].schema, sources[0].path)
    for src in sources:
        job.check(src.schema, src.path)
    if writer is not None and writer.format == "csv":
        import pyarrow as pa

        nested = [c for c in job.keep if pa.types.is_nested(sources[0].schema.field(c).type)]
        if nested:
            raise CliError(f"--keep: {', '.join(nested)} are lists, which CSV cannot hold; "
                           "write .parquet or .jsonl")
    counts = Counts(job.estimators)
    progress = Progress(sum(s.bytes for s in sources), args.quiet)
    done = 0.0
    schema = None
    spent = {"read": 0.0, "compute": 0.0, "write": 0.0}
    workers = None
    try:
        if args.scheduler:
            from . import cluster

            parts = cluster.run_units(sources, job, args)
            workers = next(parts)
        else:
            parts = _run_here(sources, job, UNIT_THREADS)
        for src, rows, results, c, read, compute in parts:
            counts.add(c)
            spent["read"] += read
            spent["compute"] += compute
            for result in results:
                if writer is not None:
                    t = time.perf_counter()
                    writer.write(result)
                    spent["write"] += time.perf_counter() - t
                schema = result.schema
            # bytes done, by rows where the file's row count is known
            done += src.bytes * rows / src.rows if src.rows else 0
            progress.update(done, counts.rows, counts.tokens)
        if writer is not None:
            writer.commit(schema if schema is not None else _empty_schema(job, sources[0]))
    except io.SourceError as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
        if writer is not None:
            writer.discard()                  # nothing left once committed
    s = summary(counts, job, [src.path for src in sources], time.perf_counter() - t0, spent)
    if workers is not None:
        s["scheduler"], s["workers"] = args.scheduler, workers
    if args.json:
        print(json.dumps(_json_safe(s), indent=2, allow_nan=False))
    else:
        print_summary(s, sys.stdout)
        if args.output:
            print(f"wrote {counts.rows} rows to {args.output}")
    return 0


def cores():
    """The cores this process may run on."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


#: threads that each read and compute a unit (row group) at a time in a
#: one-process run
UNIT_THREADS = 2


def _run_here(sources, job, threads):
    """(source, rows, [result], Counts, read s, compute s) of each batch
    of the files, in file order, computed on ``threads`` threads that each
    read and compute one unit (row group) at a time (read s and compute s:
    those threads' own, summed); the first error in file order is raised."""
    from .. import io

    def compute(batch):
        return (batch.data.num_rows,) + compute_batch(batch, job)

    work = [(src, u) for src in sources for u in src.units]
    items = io.map_units(work, job.columns, compute, threads)
    try:
        for k, (rows, result, counts), read, seconds in items:
            yield work[k][0], rows, [result], counts, read, seconds
    finally:
        items.close()


def run_batches(src, job, units=None):
    """(source, rows, [result], Counts, read s, compute s) of each batch
    of the given units of one source (default: all), read in turn."""
    batches = src.batches(job.columns, units)
    while True:
        t = time.perf_counter()
        batch = next(batches, None)
        read = time.perf_counter() - t
        if batch is None:
            return
        t = time.perf_counter()
        result, c = compute_batch(batch, job)
        yield src, batch.data.num_rows, [result], c, read, time.perf_counter() - t


def _empty_schema(job, source):
    import pyarrow as pa

    fields = [pa.field("file", pa.string()), pa.field("row", pa.int64()),
              pa.field("n_tokens", pa.int64())]
    fields += [pa.field(e, pa.float64()) for e in job.estimators]
    fields += [source.schema.field(c) for c in job.keep]
    return pa.schema(fields)


def _json_safe(x):
    """x with the non-finite floats JSON has no number for as strings
    ("inf", "-inf", "nan")."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    return str(x) if isinstance(x, float) and not math.isfinite(x) else x
