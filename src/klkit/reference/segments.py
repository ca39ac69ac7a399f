"""NumPy twins of the segmented reductions and KL estimators.

Layouts (the same for every function): packed 1-D ``values`` with n+1
non-decreasing ``offsets`` ending at len(values) (sequence i is
values[offsets[i]:offsets[i+1]]) or n ``lengths`` summing to len(values);
padded 2-D [B, T] ``values`` with a bool / 0-1 ``mask`` of the same shape
(sequence b is the masked entries of row b; no mask: every entry); or a
pyarrow ListArray / LargeListArray / ChunkedArray (a null list is an empty
sequence).  The twins cut the input into one float64 array per sequence
(Arrow lists through ``to_pylist``) and reduce each with a plain formula:
math.fsum for sums (the correctly rounded sum), the exclude-the-maximum
log-sum-exp, and

    k3(r) = exp(r) - 1 - r = r^2 sum_{k>=0} r^k / (k+2)!   (|r| <= 2)
          = expm1(r) - r                                   (|r| > 2)

with r = ref_logp - logp (the series has no cancellation; expm1(r) - r
has none beyond |r| = 2).  ``check`` (a GPU option of the compiled
functions) is accepted and ignored: the twins always validate.
"""
import math

import numpy as np

from ._common import _as_numeric, _choice, _finish, _fsum, _number, _result_dtype

__all__ = ["segment_sum", "segment_mean", "segment_max", "segment_logsumexp",
           "kl_estimate", "seq_kl", "agg_loss"]

#: the estimators and verl's names for them
ALIASES = {"kl": "k1", "mse": "k2", "low_var_kl": "k3"}
ESTIMATORS = ("k1", "k2", "k3", "abs") + tuple(ALIASES)


def _estimator(name):
    return ALIASES.get(_choice(name, "estimator", ESTIMATORS), name)


def _clamp(clamp):
    if clamp is None:
        return math.inf
    return _number(clamp, "clamp", lambda c: c >= 0, "a number >= 0 or None", TypeError)


def _empty(empty):
    return _number(empty, "empty", lambda e: True, "a real number", TypeError)


def _count(value, name):
    if value is None:
        return None
    return _number(value, name, lambda v: 0 <= v < math.inf, "a finite number >= 0 or None",
                   TypeError)


def _is_arrow(x):
    return type(x).__module__.split(".")[0] == "pyarrow"


def _from_pandas(x, name):
    """A pandas column of an Arrow list type as its pyarrow array; a pandas
    column of Python lists is refused (as the compiled functions do)."""
    if type(x).__module__.split(".")[0] != "pandas":
        return x
    if getattr(x.dtype, "pyarrow_dtype", None) is not None:
        import pyarrow as pa

        return pa.array(x)
    if x.dtype == object:
        raise TypeError(f"{name}: a pandas column of Python lists is not read; pass "
                        "pyarrow.array(column)")
    return x


def _arrow_sequences(arr, name):
    """(one float64 array per list, the value dtype) of an Arrow list array."""
    import pyarrow as pa

    typ = getattr(arr, "type", None)
    if not (isinstance(arr, (pa.ChunkedArray, pa.ListArray, pa.LargeListArray))
            and (pa.types.is_list(typ) or pa.types.is_large_list(typ))):
        raise TypeError(f"{name}: expected an Arrow list array, got {type(arr).__name__} {typ}")
    vt = typ.value_type
    if pa.types.is_boolean(vt):
        dtype = np.dtype(np.bool_)
    elif pa.types.is_floating(vt) or pa.types.is_integer(vt):
        dtype = np.dtype(vt.to_pandas_dtype())
    else:
        raise TypeError(f"{name}: expected lists of numbers, got {typ}")
    seqs = []
    for i, item in enumerate(arr.to_pylist()):
        if item is not None and any(v is None for v in item):
            raise ValueError(f"{name}: list {i} holds a null (only whole null lists are "
                             "allowed: they are empty sequences)")
        seqs.append(np.array(item or [], dtype=np.float64))
    return seqs, dtype


def _offsets(offsets, n_values):
    """[(start, end)] of each packed sequence, from n+1 integer offsets."""
    off = np.asarray(offsets)
    if off.dtype.kind not in "iu":
        raise TypeError(f"offsets: expected integers, got dtype {off.dtype}")
    if off.ndim != 1 or off.size == 0:
        raise ValueError(f"offsets: expected a 1-D array of n+1 positions, got shape {off.shape}")
    pos = off.tolist()                       # Python ints: no overflow in the checks
    if pos[0] < 0 or pos[-1] > n_values:
        raise ValueError(f"offsets: positions must lie in [0, {n_values}], got {pos[0]} .. "
                         f"{pos[-1]}")
    if pos[-1] != n_values:
        raise ValueError(f"offsets: the last offset ({pos[-1]}) must be the number of values "
                         f"({n_values}); tokens after it would belong to no sequence")
    for i in range(len(pos) - 1):
        if pos[i + 1] < pos[i]:
            raise ValueError(f"offsets: position {i + 1} ({pos[i + 1]}) is before position "
                             f"{i} ({pos[i]}); offsets must be non-decreasing")
    return list(zip(pos[:-1], pos[1:]))


def _lengths(lengths, n_values):
    """[(start, end)] of sequences of the given lengths, back to back from 0."""
    ln = np.asarray(lengths)
    if ln.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {ln.dtype}")
    if ln.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D array, got shape {ln.shape}")
    n = ln.tolist()
    if any(v < 0 for v in n):
        raise ValueError("lengths: a length is negative")
    if sum(n) != n_values:
        raise ValueError(f"lengths: they sum to {sum(n)}, not to the number of values "
                         f"({n_values})")
    ends = np.cumsum([0] + n).tolist()
    return list(zip(ends[:-1], ends[1:]))


def _mask(mask, shape):
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"mask: expected shape {shape}, got {m.shape}")
    if m.dtype.kind not in "biuf":
        raise TypeError(f"mask: expected booleans or 0/1 numbers, got dtype {m.dtype}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError("mask: expected booleans or 0/1 numbers (a weight is not a mask)")
    return m.astype(bool)


def _ref_sequences(values, offsets, mask, name="values", lengths=None):
    """(list of float64 arrays, one per sequence; input dtype; padded T or None)."""
    values = _from_pandas(values, name)
    if offsets is not None and mask is not None:
        raise ValueError("mask: packed values take offsets, padded values a mask; not both")
    if lengths is not None and (offsets is not None or mask is not None):
        raise ValueError("lengths: packed values take lengths or offsets, padded values a mask; "
                         "only one of them")
    if _is_arrow(values):
        if lengths is not None:
            raise ValueError("lengths: an Arrow list array takes no lengths")
        if offsets is not None or mask is not None:
            raise ValueError(f"{'offsets' if offsets is not None else 'mask'}: an Arrow list "
                             "array takes neither offsets nor a mask")
        seqs, dtype = _arrow_sequences(values, name)
        return seqs, dtype, None
    x = _as_numeric(values, name, allow_complex=False)
    x64 = x.astype(np.float64)
    if offsets is not None or lengths is not None:
        if x.ndim != 1:
            raise ValueError(f"{name}: packed values (with offsets) must be 1-D, got shape {x.shape}")
        spans = _offsets(offsets, x.shape[0]) if lengths is None else _lengths(lengths, x.shape[0])
        return [x64[a:b] for a, b in spans], x.dtype, None
    if x.ndim != 2:
        raise ValueError(f"{name}: expected 1-D values with offsets, or 2-D [B, T] values "
                         f"(with an optional mask), got shape {x.shape}")
    m = np.ones(x.shape, bool) if mask is None else _mask(mask, x.shape)
    return [row[keep] for row, keep in zip(x64, m)], x.dtype, x.shape[1]


def _seg_result(vals, dtype):
    return np.asarray(vals, dtype=np.float64).astype(_result_dtype((None, np.empty(0, dtype))))


def _lse(s):
    m = np.max(s)
    if not np.isfinite(m):
        return float(m)                         # NaN, +inf, or all -inf
    is_max = s == m
    return float(m) + math.log1p(_fsum(np.exp(s[~is_max] - m)) + (np.count_nonzero(is_max) - 1))


def segment_sum(values, offsets=None, *, lengths=None, mask=None, empty=0.0, check=True):
    """Sum of each sequence (correctly rounded float64 sum, then the result dtype)."""
    empty = _empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask, lengths=lengths)
    return _seg_result([_fsum(s) if s.size else empty for s in seqs], dtype)


def segment_mean(values, offsets=None, *, lengths=None, mask=None, empty=math.nan, check=True):
    """Mean of each sequence: the fsum divided by the length."""
    empty = _empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask, lengths=lengths)
    return _seg_result([_fsum(s) / s.size if s.size else empty for s in seqs], dtype)


def _max_signed_zero(s):
    """np.max, with max(-0.0, +0.0) = +0.0 whatever the order (np.max's
    sign of a zero result follows the element order)."""
    m = float(np.max(s))
    if m == 0.0 and np.any((s == 0) & ~np.signbit(s)):
        return 0.0
    return m


def segment_max(values, offsets=None, *, lengths=None, mask=None, empty=-math.inf, check=True):
    """Maximum of each sequence; NaN if it holds a NaN; +0.0 over {-0.0, +0.0}."""
    empty = _empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask, lengths=lengths)
    return _seg_result([_max_signed_zero(s) if s.size else empty for s in seqs], dtype)


def segment_logsumexp(values, offsets=None, *, lengths=None, mask=None, empty=-math.inf,
                      check=True):
    """log(sum(exp(x))) of each sequence: m + log1p(sum over the others of
    exp(x - m) + (occurrences of m) - 1), m the maximum."""
    empty = _empty(empty)
    seqs, dtype, _ = _ref_sequences(values, offsets, mask, lengths=lengths)
    with np.errstate(invalid="ignore", over="ignore"):
        return _seg_result([_lse(s) if s.size else empty for s in seqs], dtype)


# 1/(k+2)! for k = 0..24: k3(r) = r^2 * sum_k c_k r^k for |r| <= 2
_K3_SERIES = [1.0 / math.factorial(k + 2) for k in range(25)]


def _k3(r):
    """exp(r) - 1 - r in float64 without cancellation (see the section top)."""
    r = np.asarray(r, dtype=np.float64)
    small = np.abs(r) <= 2
    rs = np.where(small, r, 0.0)
    p = np.zeros_like(rs)
    for c in reversed(_K3_SERIES):
        p = p * rs + c
    with np.errstate(over="ignore", invalid="ignore"):
        big = np.expm1(r) - r
    return np.where(small, rs * rs * p, np.where(r == np.inf, np.inf, big))


def _estimate(d, est, clamp):
    """Per-token estimator of float64 d = logp - ref_logp, clamped to [-c, c]."""
    with np.errstate(invalid="ignore"):
        d = np.where(d < -clamp, -clamp, np.where(d > clamp, clamp, d))
    if est == "k1":
        return d
    if est == "k2":
        return 0.5 * d * d
    if est == "abs":
        return np.abs(d)
    return _k3(-d)


def kl_estimate(logp, ref_logp, estimator="k1", *, clamp=None):
    """Per-token estimate of KL(pi || pi_ref) from sampled-token log-probs,
    d = logp - ref_logp, r = -d: k1 = d, k2 = d^2/2, k3 = exp(r) - 1 - r,
    abs = |d| (aliases kl, mse, low_var_kl); ``clamp`` limits d to
    [-clamp, clamp] first.  logp and ref_logp broadcast."""
    est = _estimator(estimator)
    c = _clamp(clamp)
    logp, ref_logp = _from_pandas(logp, "logp"), _from_pandas(ref_logp, "ref_logp")
    if _is_arrow(logp) or _is_arrow(ref_logp):
        return _arrow_estimates(logp, ref_logp, est, c)
    a = _as_numeric(logp, "logp", allow_complex=False)
    b = _as_numeric(ref_logp, "ref_logp", allow_complex=False)
    dtype = _result_dtype((logp, a), (ref_logp, b))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"ref_logp: shape {b.shape} does not broadcast with logp's {a.shape}") from None
    with np.errstate(invalid="ignore"):
        d = a.astype(np.float64) - b.astype(np.float64)
    return _finish(np.broadcast_to(_estimate(d, est, c), shape), dtype)


def _arrow_estimates(logp, ref_logp, est, c):
    """Per-token estimates of two Arrow list arrays with matching lists, as a
    list array of logp's list type with its null lists (one chunk)."""
    import pyarrow as pa

    if not (_is_arrow(logp) and _is_arrow(ref_logp)):
        raise TypeError("ref_logp: logp and ref_logp must both be Arrow list arrays")
    sp, sq, dtype = _seq_pairs(logp, ref_logp, None, None)
    nulls = [item is None for item in logp.to_pylist()]
    with np.errstate(invalid="ignore"):
        lists = [None if null else _finish(_estimate(p - q, est, c), dtype).tolist()
                 for p, q, null in zip(sp, sq, nulls)]
    kind = pa.large_list if pa.types.is_large_list(logp.type) else pa.list_
    out = pa.array(lists, kind(pa.from_numpy_dtype(dtype)))
    return pa.chunked_array([out]) if isinstance(logp, pa.ChunkedArray) else out


def _seq_pairs(logp, ref_logp, offsets, mask, lengths=None):
    sp, dtp, _ = _ref_sequences(logp, offsets, mask, "logp", lengths)
    sq, dtq, _ = _ref_sequences(ref_logp, offsets, mask, "ref_logp", lengths)
    if not (_is_arrow(logp) or _is_arrow(ref_logp)):
        if np.shape(logp) != np.shape(ref_logp):
            raise ValueError(f"ref_logp: shape {np.shape(ref_logp)} does not match logp's "
                             f"{np.shape(logp)}")
    if len(sp) != len(sq):
        raise ValueError(f"ref_logp: {len(sq)} sequences, logp has {len(sp)}")
    for i, (p, q) in enumerate(zip(sp, sq)):
        if p.size != q.size:
            raise ValueError(f"ref_logp: sequence {i} has {q.size} tokens, logp's has {p.size}")
    dtype = _result_dtype((None, np.empty(0, dtp)), (None, np.empty(0, dtq)))
    return sp, sq, dtype


def seq_kl(logp, ref_logp, offsets=None, *, lengths=None, mask=None, estimator="k1",
           reduce="sum", clamp=None, empty=0.0, check=True):
    """Per-sequence sum (or mean) of the per-token estimator (kl_estimate)."""
    est = _estimator(estimator)
    c = _clamp(clamp)
    _choice(reduce, "reduce", ("sum", "mean"))
    empty = _empty(empty)
    sp, sq, dtype = _seq_pairs(logp, ref_logp, offsets, mask, lengths)
    out = []
    with np.errstate(invalid="ignore"):
        for p, q in zip(sp, sq):
            if p.size == 0:
                out.append(empty)
                continue
            s = _fsum(_estimate(p - q, est, c))
            out.append(s / p.size if reduce == "mean" else s)
    return np.asarray(out, dtype=np.float64).astype(dtype)


def agg_loss(values, offsets=None, *, lengths=None, mask=None, mode="token-mean",
             num_tokens=None, num_seqs=None, norm_length=None, check=True):
    """verl's agg_loss: per-token values to one scalar.

    token-mean               sum of all tokens / num_tokens (default: the token count)
    seq-mean-token-sum       sum over non-empty sequences of their sums / num_seqs
    seq-mean-token-mean      sum over non-empty sequences of their means / num_seqs
    seq-mean-token-sum-norm  sum of all tokens / norm_length (default: T when
                             padded, else the longest sequence)
    num_seqs defaults to the number of non-empty sequences.  A zero divisor
    (all tokens masked) gives 0.0, as verl returns.
    """
    _choice(mode, "mode", ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                           "seq-mean-token-sum-norm"))
    num_tokens = _count(num_tokens, "num_tokens")
    num_seqs = _count(num_seqs, "num_seqs")
    norm_length = _count(norm_length, "norm_length")
    seqs, dtype, T = _ref_sequences(values, offsets, mask, lengths=lengths)
    dtype = _result_dtype((None, np.empty(0, dtype)))
    sums = np.array([_fsum(s) for s in seqs], dtype=np.float64)
    counts = np.array([s.size for s in seqs], dtype=np.float64)
    nonempty = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        if mode == "token-mean":
            num, den = _fsum(sums), (counts.sum() if num_tokens is None else num_tokens)
        elif mode == "seq-mean-token-sum":
            num = _fsum(sums[nonempty])
            den = np.count_nonzero(nonempty) if num_seqs is None else num_seqs
        elif mode == "seq-mean-token-mean":
            num = _fsum(sums[nonempty] / counts[nonempty])
            den = np.count_nonzero(nonempty) if num_seqs is None else num_seqs
        else:
            num = _fsum(sums)
            if norm_length is None:
                norm_length = T if T is not None else (counts.max() if counts.size else 0.0)
            den = norm_length
        res = 0.0 if den == 0 else num / den
    return dtype.type(res)

