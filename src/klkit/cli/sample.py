"""klkit sample OUT: write a realistic file of per-token log-probs.

One row per sampled sequence, as RL rollouts store them: ``id``,
``prompt_id``, and the list columns ``logprobs`` (the policy's log-prob of
each sampled token), ``ref_logprobs`` (the reference model's) and ``mask``
(False on trailing padding).  The sampled tokens follow a Zipf-like
distribution over a 32k vocabulary, so most log-probs are near 0 with a
heavy tail; the policy is the reference plus a drift per sequence, noise
per token and rare outliers.  Lengths vary (log-normal), about 2% of the
sequences are empty and 2% are null rows (empty sequences too).  The same
seed gives the same file.  Parquet (row groups of about 64 MiB), Arrow IPC,
or JSON Lines by the extension of OUT.
"""
import numpy as np

from . import CliError

VOCAB = 32000
GROUP_BYTES = 64 << 20     # Parquet row groups of about this many bytes


def add_parser(sub, name):
    p = sub.add_parser(name, help="write a realistic sample file of per-token log-probs",
                       description=__doc__)
    p.add_argument("out", metavar="OUT", help="the file to write (.parquet, .arrow, .jsonl)")
    p.add_argument("--sequences", type=int, default=10000, metavar="N",
                   help="number of sequences (rows; default 10000)")
    p.add_argument("--mean-length", type=float, default=400.0, metavar="L",
                   help="mean length of a sequence in tokens (default 400)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    return p


#: sharpness levels of the next-token distributions (p_k ~ k^-s over VOCAB)
SHARPNESS = np.linspace(1.05, 5.0, 48)


def _zipf_logprobs(rng, n):
    """Reference log-probs of n sampled tokens.  The next-token distribution
    at each position is Zipf-like, p_k = k^-s / H(s) over the VOCAB ranks,
    its sharpness s drawn per token (1 + Gamma(2, 0.5): mostly confident
    positions, some uncertain ones); the sampled token's rank k comes from
    that distribution, and its log-prob is -s log k - log H(s)."""
    log_k = np.log(np.arange(1, VOCAB + 1, dtype=np.float64))
    level = np.searchsorted(SHARPNESS, np.clip(1.0 + rng.gamma(2.0, 0.5, n), SHARPNESS[0],
                                               SHARPNESS[-1]))
    lp = np.empty(n)
    u = rng.random(n)
    for j, s in enumerate(SHARPNESS):
        at = np.flatnonzero(level == j)
        if at.size:
            w = np.exp(-s * log_k)
            h = w.sum()
            k = np.minimum(np.searchsorted(np.cumsum(w) / h, u[at]), VOCAB - 1)
            lp[at] = -s * log_k[k] - np.log(h)
    return lp


def table_of(rng, first_id, n, mean_length):
    """n rows of the sample, ids from first_id."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = np.rint(rng.lognormal(np.log(mean_length) - 0.32, 0.8, n)).astype(np.int64)
    lengths[rng.random(n) < 0.02] = 0
    null = rng.random(n) < 0.02
    lengths[null] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    total = int(offsets[-1])
    ref = _zipf_logprobs(rng, total)
    drift = np.repeat(rng.normal(0.0, 0.05, n), lengths)
    noise = rng.normal(0.0, 0.1, total)
    outlier = rng.random(total) < 0.01
    noise[outlier] += rng.normal(0.0, 2.0, int(outlier.sum()))
    logp = np.minimum(ref + drift + noise, 0.0)
    # trailing padding on one sequence in ten: mask False on its last tokens
    pad = np.zeros(total, bool)
    for i in np.flatnonzero((rng.random(n) < 0.1) & (lengths > 4)):
        pad[offsets[i + 1] - rng.integers(1, 4):offsets[i + 1]] = True
    valid = pa.array(~null)

    def lists(values):
        return pa.LargeListArray.from_arrays(pa.array(offsets), values,
                                             mask=pc.invert(valid))

    return pa.table({
        "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "prompt_id": pa.array((np.arange(first_id, first_id + n) // 4).astype(np.int64)),
        "logprobs": lists(pa.array(logp.astype(np.float32))),
        "ref_logprobs": lists(pa.array(ref.astype(np.float32))),
        "mask": lists(pa.array(~pad)),
    })


def write_sample(path, sequences, seed=0, mean_length=400.0):
    """Write the sample file (see the module docstring); returns its row count."""
    from .. import io

    if sequences < 0:
        raise CliError(f"--sequences: expected a count >= 0, got {sequences}")
    if not mean_length > 0:
        raise CliError(f"--mean-length: expected a length > 0, got {mean_length}")
    rng = np.random.default_rng(seed)
    per_group = max(1, int(GROUP_BYTES / (9 * mean_length + 32)))
    with io.ResultWriter(path) as out:
        schema = None
        for first in range(0, sequences, per_group):
            table = table_of(rng, first, min(per_group, sequences - first), mean_length)
            schema = table.schema
            for batch in table.to_batches(max_chunksize=per_group):
                out.write(batch)
        if schema is None:
            schema = table_of(rng, 0, 0, mean_length).schema
        out.commit(schema)
    return sequences


def run(args):
    from .. import io

    try:
        n = write_sample(args.out, args.sequences, args.seed, args.mean_length)
    except io.SourceError as exc:
        raise CliError(str(exc)) from None
    print(f"wrote {n} sequences to {args.out}")
    return 0
