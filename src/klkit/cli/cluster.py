"""klkit seq-kl --scheduler: the same job on a Dask distributed cluster.

The client splits the files into units (a Parquet row group, an Arrow IPC
record batch, a whole JSON Lines file or IPC stream), submits one task per
unit, at most two per worker thread at a time, and takes the results back
in file order: each task reads its unit and computes it exactly as the
one-process run does (seq_kl.run_batches), so the output file and the
summary (its percentiles computed from every sequence's value, not
sketched) are the same, bit for bit.  Memory on the client is bounded by
the results in flight, on each worker by the unit it reads.

``local`` / ``local:N`` starts a LocalCluster on loopback (N worker
processes, one task thread each, the cores shared among their kernels);
``tcp://HOST:PORT`` connects to a running scheduler, whose workers must
have klkit installed and read the input files at the paths given.
"""
import collections
import logging

from . import CliError
from .seq_kl import Counts, cores, run_batches

#: seconds to wait for a scheduler, and for its first worker
CONNECT_TIMEOUT = 30


def unit_task(path, unit, job, threads):
    """On a worker: (rows, result batches, Counts, read s, compute s) of one
    unit of a file."""
    from .. import io

    import klkit as kk

    if threads:
        kk.set_num_threads(threads)
    rows, results, counts, read, compute = 0, [], Counts(job.estimators), 0.0, 0.0
    try:
        for _, n, res, c, r, t in run_batches(io.Source(path), job, [unit]):
            rows += n
            results += res
            counts.add(c)
            read += r
            compute += t
    except io.SourceError as exc:
        raise CliError(str(exc)) from None
    return rows, results, counts, read, compute


def _connect(spec, threads):
    """(client, cluster or None, kernel threads per task) for --scheduler."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CliError('--scheduler needs dask and distributed: pip install "klkit[dask]"') \
            from None
    if spec == "local" or spec.startswith("local:"):
        count = spec[len("local:"):] if ":" in spec else str(cores())
        if not count.isdigit() or int(count) < 1:
            raise CliError(f"--scheduler: expected local:N with N >= 1 workers, got {spec!r}")
        n = int(count)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=":0",
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        return client, cluster, threads or max(1, cores() // n)
    if "://" not in spec:
        raise CliError(f"--scheduler: expected local, local:N or tcp://HOST:PORT, got {spec!r}")
    try:
        client = Client(spec, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise CliError(f"--scheduler: cannot reach {spec} ({exc})") from None
    return client, None, threads


def run_units(sources, job, args):
    """Yield the worker count, then (source, rows, results, Counts,
    read s, compute s) of every unit of the files, in file order."""
    client, cluster, threads = _connect(args.scheduler, args.threads)
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            raise CliError(f"--scheduler: {args.scheduler} has no workers") from None
        nthreads = client.nthreads()
        slots = sum(nthreads.values())
        yield len(nthreads)
        units = iter([(src, u) for src in sources for u in src.units])
        pending = collections.deque()

        def submit():
            src, unit = next(units, (None, None))
            if src is not None:
                pending.append((src, client.submit(unit_task, src.path, unit, job, threads,
                                                   pure=False)))

        for _ in range(2 * slots):
            submit()
        while pending:
            src, future = pending.popleft()
            rows, results, counts, read, compute = future.result()
            submit()
            yield src, rows, results, counts, read, compute
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
