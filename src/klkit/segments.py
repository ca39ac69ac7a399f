"""Segmented per-sequence reductions and RLHF KL estimators: segment_sum,
segment_mean, segment_max, segment_logsumexp, kl_estimate, seq_kl, agg_loss.

Per-token values (log-ratios, KL estimates, losses) are reduced per sequence.
Three layouts, accepted by every function here:

* packed: 1-D ``values`` of all tokens back to back and ``offsets``, n+1
  non-decreasing integer positions (flash-attn's ``cu_seqlens``); sequence i
  is ``values[offsets[i]:offsets[i+1]]``.  ``offsets[0]`` may be > 0 (the
  tokens before it are not read), but ``offsets[-1]`` must be
  ``len(values)``: a tail outside every sequence is a ValueError, not
  silently dropped (pass ``values[:offsets[-1]]`` to reduce a prefix).
  Or ``lengths=``: n non-negative token counts (torch.segment_reduce's
  ``lengths``), the sequences back to back from ``values[0]``, summing to
  ``len(values)``.  int32 or int64, totals beyond 2^31 tokens work,
  ``values`` may have any stride (including 0: a broadcast value).
* padded: 2-D [B, T] ``values`` and a ``mask`` of the same shape; sequence b
  is the entries of row b where the mask is True.  Both may be any view
  (transposed, strided), read in place.  The mask is bool, or integers /
  floats that are all 0 or 1 (a ValueError otherwise: a weight is not a
  mask; bool is the zero-copy fast path, other masks become one bool byte
  per entry).  Entries outside the mask
  are never used, so NaN in the padding does not leak into a result.
  Without a mask every entry of the row is kept.
* Arrow: a pyarrow ListArray / LargeListArray (sliced arrays included), or a
  ChunkedArray of them (its chunks are reduced one after the other and the
  results concatenated), of floats or integers.  The child values and the
  offsets are read in place (zero-copy; a copy only for integer or boolean
  values, which become float64).  A null list is an empty sequence; a null
  value inside a list is a ValueError naming the argument.  Results are
  NumPy arrays.  pyarrow is imported only when an Arrow object is passed.

Results: one value per sequence, float64 for float64 input and float32 for
float32, float16 and bfloat16 input (integers and bools by NumPy's
promotion: float64 alone, float32 beside a float32 array);
torch CPU tensors in give torch tensors out.  An empty sequence gives
``empty``, never a neighbour's element (np.add.reduceat's behaviour).
Sums accumulate in float64 whatever the input precision.

Gradients: with torch values (logp, ref_logp) that require grad, every
function here is differentiable with respect to them (the offsets and the
mask are not): segment_sum spreads each sequence's gradient over its
tokens, segment_mean divides it by the length, segment_logsumexp weighs it
by exp(x - result), segment_max gives it to the maximum (shared evenly by
ties, as torch's amax), kl_estimate and seq_kl multiply by the
estimator's slope, agg_loss by each token's weight in its mode; tokens
outside every sequence (masked, or outside the offsets) get 0.  The
backward is torch arithmetic in float64 on arrays of the token count.
Arrow input is never differentiable.

Reproducibility: a sequence's result depends only on its own tokens (their
order and number), not on its position, the other sequences, the layout
(packed, padded and Arrow give the same bits) or the thread count.  Work is
balanced when lengths are skewed (long sequences are split into blocks
whose partial sums are added in a fixed order).  Validation (offsets, mask, shapes, option strings) happens before
any kernel runs; errors are ValueError / TypeError naming the argument.
"""

# How to add a reduction to this family (six files; the segment drivers,
# their work split and the instruction-set dispatch take it as they are, and
# the contract tests run on it from the registry):
# 1. kernels/include/klkit/segment.h: its state in kk_seg_t with its empty /
#    combine / value (KLKIT_HD, no loops), and any new scalar math with its
#    formula and error analysis in the header comment.
# 2. kernels/include/klkit/codes.h: its op code (kk_segop; an estimator:
#    kk_est).
# 3. kernels/cpu/segment_real.inc: its block reducer (or term producer),
#    written once for both working precisions.
# 4. src/klkit/_cpu.pyx: the name in SEG_OPS (or ESTIMATORS).
# 5. Here: the public function, registered with @public and named in
#    __all__ (layouts are parsed once, _layout).
# 6. src/klkit/reference/segments.py: its twin, named in that module's
#    __all__.
# Then tests/test_segments.py (against the twin and a per-sequence loop
# written from the formula, layouts, empty segments) and, to time it, its
# recipes in src/klkit/_benchmarks.py and a case in bench/report.py and
# bench/bench_segments.py.

import math

import numpy as np

from . import _args, _gpu, _kernels
from ._registry import public
from ._arrays import (any_device, as_input, cast, common_dtype, float_input, from_pandas, identity,
                      is_arrow, kernel_view, narrowed, precision, promotion_dtype, result_dtype,
                      rows, wants_grad, wrap_of)

__all__ = ["segment_sum", "segment_mean", "segment_max", "segment_logsumexp",
           "kl_estimate", "seq_kl", "agg_loss"]


# --------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------

class _Layout:
    """One input brought to what the kernels take.

    kind "packed": ``parts`` is a list of (x 1-D, starts int64, lens int64),
    one per Arrow chunk (one for NumPy input); kind "padded": ``x`` [B, T]
    and ``mask`` (bool [B, T]) or None, views of any strides.  ``dtype`` is
    the floating input dtype, ``T`` the padded length or None.
    """

    def __init__(self, kind, dtype, wrap, parts=None, x=None, mask=None, T=None, src=None):
        self.kind, self.dtype, self.wrap = kind, dtype, wrap
        self.parts, self.x, self.mask, self.T = parts, x, mask, T
        #: the dtype the input promotes with (_arrays.promotion_dtype: an
        #: integer or bool input's own, not the float64 it is read as)
        self.src = dtype if src is None else src

    def narrowed(self, dtype):
        """This layout as the kernels computing in ``dtype`` read it: float64
        values (integers or bools promoted) of a computation that is not
        float64 cast to ``dtype`` (exact, by NumPy's promotion rules)."""
        if self.kind == "padded":
            x = narrowed(self.x, dtype)
            return self if x is self.x else \
                _Layout("padded", x.dtype, self.wrap, x=kernel_view(x, 1), mask=self.mask,
                        T=self.T, src=self.src)
        parts = [(narrowed(x, dtype), s, n) for x, s, n in self.parts]
        if all(p[0] is q[0] for p, q in zip(parts, self.parts)):
            return self
        return _Layout("packed", parts[0][0].dtype, self.wrap, src=self.src,
                       parts=[(kernel_view(x), s, n) for x, s, n in parts])

    def scaled(self, factor):
        """This layout with its values times ``factor`` (a new array)."""
        if self.kind == "padded":
            return _Layout("padded", self.dtype, self.wrap, x=kernel_view(self.x * factor, 1),
                           mask=self.mask, T=self.T, src=self.src)
        return _Layout("packed", self.dtype, self.wrap, src=self.src,
                       parts=[(kernel_view(x * factor), s, n) for x, s, n in self.parts])

    @property
    def lens(self):
        """Lengths of the packed sequences (all chunks)."""
        if not self.parts:
            return np.zeros(0, np.int64)
        return np.concatenate([p[2] for p in self.parts])


def _layout(values, offsets, mask, name="values"):
    values = from_pandas(values, name)
    arrow = is_arrow(values)
    _args.layout(arrow, offsets, mask)
    if arrow:
        from . import _arrow

        parts, dtype = _arrow.packed(values, name)
        src = promotion_dtype(np.empty(0, _arrow.value_dtype(_arrow.chunks(values, name)[1])),
                              np.empty(0, dtype))
        return _Layout("packed", dtype, identity, parts=parts, src=src)
    wrap = wrap_of(values, offsets, mask)
    raw, _ = as_input(values, name)
    x = float_input(raw, name)
    src = promotion_dtype(raw, x)
    if offsets is not None:
        if x.ndim != 1:
            raise ValueError(f"{name}: packed values (with offsets) must be 1-D, got shape {x.shape}")
        off, _ = as_input(offsets, "offsets")
        starts, lens = _args.offsets(off, x.shape[0])
        return _Layout("packed", x.dtype, wrap, parts=[(kernel_view(x), starts, lens)], src=src)
    if x.ndim != 2:
        if x.ndim == 1 and mask is None:
            raise ValueError("offsets: required for 1-D (packed) values; 2-D [B, T] values "
                             "take a mask instead")
        raise ValueError(f"{name}: expected 1-D values with offsets, or 2-D [B, T] values with "
                         f"a mask, got shape {x.shape}")
    m = None
    if mask is not None:
        mk, _ = as_input(mask, "mask")
        m = kernel_view(_args.mask(mk, x.shape), 1)
    return _Layout("padded", x.dtype, wrap, x=kernel_view(x, 1), mask=m, T=x.shape[1], src=src)


def _lengths_as_offsets(values, offsets, lengths, mask, check):
    """offsets (0 then the running sums) for ``lengths=``, validated: 1-D
    non-negative integers summing to the number of values; ``offsets`` as
    given without it.  torch / CuPy lengths give offsets of their framework
    on their device (checked through a host copy unless check=False)."""
    if lengths is None:
        return offsets
    _args.layout(is_arrow(values), offsets, mask, lengths)
    shape = getattr(values, "shape", None)
    if shape is None:
        shape = np.shape(values)
    n = int(shape[0]) if len(shape) else 0
    mod = type(lengths).__module__.split(".")[0]
    if mod in ("torch", "cupy"):
        if check or mod == "torch" and lengths.device.type == "cpu":
            host = lengths.cpu() if mod == "torch" else lengths.get()
            _args.lengths(np.asarray(host), n)
        if mod == "torch":
            import torch

            ln = lengths.to(torch.int64)
            return torch.cat([ln.new_zeros(1), torch.cumsum(ln, 0)])
        import cupy

        ln = lengths.astype(cupy.int64)
        return cupy.concatenate([cupy.zeros(1, cupy.int64), cupy.cumsum(ln)])
    ln = _args.lengths(lengths, n)
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(ln)])


# --------------------------------------------------------------------------
# running the kernels
# --------------------------------------------------------------------------

def _run(op, lay, empty, dtype, est=None, other=None, clamp=math.inf, want_counts=False):
    """float64 result per sequence (and int64 counts when asked), computed
    in the precision of ``dtype`` (each input read in its own dtype)."""
    prec = precision(dtype)
    if lay.kind == "padded":
        B = lay.x.shape[0]
        out = np.empty(B, np.float64)
        counts = np.empty(B, np.int64) if want_counts else None
        if B:
            y = None if other is None else other.x
            _kernels.backend(lay.x).seg_padded(op, est, prec, lay.x, y, lay.mask, clamp, empty,
                                               out, counts)
        return out, counts
    outs = []
    for i, (x, starts, lens) in enumerate(lay.parts):
        out = np.empty(lens.shape[0], np.float64)
        if lens.shape[0]:
            y, ystarts = (None, None) if other is None else other.parts[i][:2]
            _kernels.backend(x).seg_packed(op, est, prec, x, y, starts, ystarts, lens, clamp,
                                           empty, out)
        outs.append(out)
    out = np.concatenate(outs) if outs else np.zeros(0, np.float64)
    return out, (lay.lens if want_counts else None)


#: a power of two that keeps sums of finite float64 values in range (exact)
_SUM_SCALE = 2.0 ** -64


def _redo_overflowed_sums(op, lay, empty, out):
    """Sums (op "sum") or means ("mean") of float64 sequences whose sum the
    kernel's lane order overflowed on the way (+-inf, or NaN from
    inf - inf) while the values are finite: the sum again from the values
    times 2^-64, scaled back (+-inf only where the sum itself is beyond
    float64's range), a mean that sum over the count.  Costs one check of
    the results unless such a sequence exists."""
    if op not in ("sum", "mean") or lay.dtype != np.float64 or np.all(np.isfinite(out)):
        return out
    redo, counts = _run("sum", lay.scaled(_SUM_SCALE), empty, lay.dtype, want_counts=True)
    fix = ~np.isfinite(out) & np.isfinite(redo) & (counts > 0)
    with np.errstate(over="ignore"):
        out[fix] = redo[fix] / _SUM_SCALE
        if op == "mean":
            out[fix] /= counts[fix]
    return out


def _total(v):
    """np.sum of float64 terms, again from the terms times 2^-64 where the
    pairwise sum of finite terms overflowed on the way."""
    t = np.sum(v)
    if not np.isfinite(t) and np.all(np.isfinite(v)):
        t = np.sum(v * _SUM_SCALE) / _SUM_SCALE
    return t


def _reduce(op, values, offsets, lengths, mask, empty, check):
    offsets = _lengths_as_offsets(values, offsets, lengths, mask, check)
    if any_device(values, offsets, mask):
        return _gpu.segment(op, values, offsets, mask, empty, check)
    if wants_grad(values):
        from . import _autograd

        return _autograd.segment(op, values, offsets, mask, empty, check)
    empty = _args.empty(empty)
    lay = _layout(values, offsets, mask)
    out, _ = _run(op, lay, empty, lay.dtype)
    out = _redo_overflowed_sums(op, lay, empty, out)
    return lay.wrap(cast(out, result_dtype(lay.dtype)))


@public("segments", ("values", "offsets", "lengths", "mask"))
def segment_sum(values, offsets=None, *, lengths=None, mask=None, empty=0.0, check=True):
    """Sum of each sequence.

    ``values`` / ``offsets`` / ``lengths`` / ``mask``: one of the layouts
    of this module (packed + offsets or lengths, padded [B, T] + mask,
    pyarrow list array).
    ``empty``: the result for an empty sequence (default 0.0).  Returns one
    value per sequence, float32 (float64 for float64 input).

    Accumulation is in float64 for every input dtype, in a fixed order (16
    lanes over 4096-token blocks, blocks in sequence order): the error before
    the final rounding is at most (n/16 + n/4096 + 4) 2^-53 sum|x_i| for n
    tokens, so float32 / 16-bit results are correctly rounded but for ties
    and cancellation below that bound, and float64 results are as accurate
    as numpy's pairwise np.sum.  NaN in a sequence gives NaN for it;
    +inf and -inf together give NaN (IEEE).

    ``check=False`` skips the validation of the offsets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad offset
    then gives NaN for its sequence, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Edge cases, per sequence:

    =================================  ===============
    sequence                           result
    =================================  ===============
    empty, or every token masked       ``empty`` (0.0)
    any NaN (masked-out NaN: ignored)  NaN
    +inf (no NaN, no -inf)             +inf
    -inf (no NaN, no +inf)             -inf
    +inf and -inf                      NaN
    =================================  ===============

    Complexity: O(T) time for T tokens, one pass over the values (read in
    place); extra memory O(number of sequences), plus one byte per entry
    for a mask that is not bool and O(n) offsets for ``lengths=``.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> v, off = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 2, 2, 4])
    >>> print(klkit.segment_sum(v, off))
    [3. 0. 7.]
    >>> x = np.array([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]])
    >>> print(klkit.segment_sum(x, mask=np.array([[1, 1, 0], [1, 0, 0]], dtype=bool)))
    [3. 4.]
    """
    return _reduce("sum", values, offsets, lengths, mask, empty, check)


@public("segments", ("values", "offsets", "lengths", "mask"))
def segment_mean(values, offsets=None, *, lengths=None, mask=None, empty=math.nan, check=True):
    """Mean of each sequence: the float64 sum of :func:`segment_sum` divided by
    the number of tokens, then rounded once to the result dtype.  An empty
    sequence gives ``empty`` (default NaN, as np.mean of nothing; seq_kl's
    token mean defaults to 0.0, no tokens being no KL penalty).  Layouts,
    dtypes and error bound as :func:`segment_sum`.

    ``check=False`` skips the validation of the offsets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad offset
    then gives NaN for its sequence, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Edge cases, per sequence:

    =================================  ===============
    sequence                           result
    =================================  ===============
    empty, or every token masked       ``empty`` (NaN)
    any NaN (masked-out NaN: ignored)  NaN
    +inf (no NaN, no -inf)             +inf
    -inf (no NaN, no +inf)             -inf
    +inf and -inf                      NaN
    =================================  ===============

    Complexity: O(T) time for T tokens, one pass over the values (read in
    place); extra memory O(number of sequences), plus one byte per entry
    for a mask that is not bool and O(n) offsets for ``lengths=``.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> v = np.array([1.0, 2.0, 3.0, 4.0])
    >>> print(klkit.segment_mean(v, np.array([0, 2, 2, 4])))
    [1.5 nan 3.5]
    >>> print(klkit.segment_mean(v, lengths=[3, 1]))
    [2. 4.]
    """
    return _reduce("mean", values, offsets, lengths, mask, empty, check)


@public("segments", ("values", "offsets", "lengths", "mask"))
def segment_max(values, offsets=None, *, lengths=None, mask=None, empty=-math.inf, check=True):
    """Maximum of each sequence (exact).  NaN anywhere in a sequence gives
    NaN for it (np.max's rule); max(-0.0, +0.0) is +0.0 in any order.  An
    empty sequence gives ``empty`` (default -inf, the identity of max).
    Layouts and dtypes as :func:`segment_sum`.

    ``check=False`` skips the validation of the offsets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad offset
    then gives NaN for its sequence, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Edge cases, per sequence:

    =================================  =================
    sequence                           result
    =================================  =================
    empty, or every token masked       ``empty`` (-inf)
    any NaN (masked-out NaN: ignored)  NaN
    +inf (no NaN, no -inf)             +inf
    -inf (no NaN, no +inf)             max of the others
    +inf and -inf                      +inf
    =================================  =================

    Complexity: O(T) time for T tokens, one pass over the values (read in
    place); extra memory O(number of sequences), plus one byte per entry
    for a mask that is not bool and O(n) offsets for ``lengths=``.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> v, off = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 2, 2, 4])
    >>> print(klkit.segment_max(v, off))
    [  2. -inf   4.]
    """
    return _reduce("max", values, offsets, lengths, mask, empty, check)


@public("segments", ("values", "offsets", "lengths", "mask"))
def segment_logsumexp(values, offsets=None, *, lengths=None, mask=None, empty=-math.inf, check=True):
    """log(sum(exp(x))) of each sequence.

    Computed as ``m + log1p(s)`` with m the maximum and s the sum of
    exp(x - m) over every other token (the exclude-the-maximum form of
    :func:`klkit.logsumexp`; exp in the input precision, float32 for
    16/32-bit input, the sum in float64).  Accuracy: the bound of
    :func:`klkit.logsumexp`, |error| <= eps (2 |m| + (2 + 2 R + n/16384)
    log1p(s)) + n d over the sequence's n tokens (R = max - min of its
    finite tokens; eps, d: machine epsilon and smallest subnormal of the
    result dtype): exact for one dominant token, a few ulp relative except
    where the result is much smaller than |m| and the two terms cancel
    (float32 [-0.3, -1.3956] gives -0.0116, 26 ulp off; compute in float64
    if such results matter).  An empty sequence gives ``empty`` (default
    -inf, the log of an empty sum).  Layouts and dtypes as
    :func:`segment_sum`.

    ``check=False`` skips the validation of the offsets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad offset
    then gives NaN for its sequence, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Edge cases, per sequence:

    =================================  =============================
    sequence                           result
    =================================  =============================
    empty, or every token masked       ``empty`` (-inf)
    any NaN (masked-out NaN: ignored)  NaN
    +inf (no NaN, no -inf)             +inf
    -inf (no NaN, no +inf)             term adds nothing (all: -inf)
    +inf and -inf                      +inf
    =================================  =============================

    Complexity: O(T) time for T tokens, one pass over the values (read in
    place); extra memory O(number of sequences), plus one byte per entry
    for a mask that is not bool and O(n) offsets for ``lengths=``.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> v, off = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 2, 2, 4])
    >>> print(np.round(klkit.segment_logsumexp(v, off), 4))
    [2.3133   -inf 4.3133]
    """
    return _reduce("logsumexp", values, offsets, lengths, mask, empty, check)


# --------------------------------------------------------------------------
# KL estimators
# --------------------------------------------------------------------------

@public("segments", ("logp", "ref_logp"))
def kl_estimate(logp, ref_logp, estimator="k1", *, clamp=None):
    """Per-token estimate of KL(pi || pi_ref) from the log-probs of the sampled
    tokens under the policy (``logp``) and the reference (``ref_logp``).

    With d = logp - ref_logp and r = -d (Schulman, "Approximating KL
    divergence", 2020):

    ==========================  ==================  ===========================
    estimator (verl alias)      value               notes
    ==========================  ==================  ===========================
    "k1" ("kl")                 d                   unbiased, high variance
    "k2" ("mse")                d^2 / 2             biased, >= 0
    "k3" ("low_var_kl")         exp(r) - 1 - r      unbiased, >= 0, low variance
    "abs"                       |d|
    ==========================  ==================  ===========================

    ``clamp=c`` (c >= 0) limits d, equivalently r, to [-c, c] before the
    estimator (verl clamps at 20); None: no clamp.  Unlike verl's
    low_var_kl, the k3 value itself is not clipped.

    k3 is computed without cancellation: a series r^2 (1/2 + r/6 + ...) for
    |r| <= 2 and (exp(r) - 1) - r beyond, so it is >= 0 and accurate for tiny |r| where the usual exp(r) - r - 1
    is 100% wrong in float32 at |r| = 1e-4 and goes negative.  It is the
    k3 of the EXACT difference of the two inputs: the rounding error of
    logp - ref_logp is recovered exactly (TwoSum) and applied as a
    first-order correction, which matters where k3 is ill-conditioned
    (k3 ~ e^r for large r).

    Accuracy, in ulp of the result dtype at the exact value of the
    estimator of the inputs as given (16-bit input is computed in float32):
    k1 and abs <= 0.5 ulp (d rounded once, then exact); k2 <= 2 ulp (the
    rounding of d and of d^2/2); k3 <= 3 ulp, measured against mpmath at
    3000 points over |r| = 1e-8 .. 30, both signs (largest in the series
    range 1e-3 < |r| < 0.5; 99% of points within 2 ulp).

    Edge cases, per element (NaN never comes from non-NaN input with one
    finite side):

    ===============================  =======  =====  =====  =====
    logp, ref_logp                   k1       k2     k3     abs
    ===============================  =======  =====  =====  =====
    NaN in either                    NaN      NaN    NaN    NaN
    both +inf or both -inf           NaN      NaN    NaN    NaN
    d = +inf (e.g. ref_logp -inf)    +inf     +inf   +inf   +inf
    d = -inf (e.g. logp -inf)        -inf     +inf   +inf   +inf
    empty arrays                     empty    empty  empty  empty
    ===============================  =======  =====  =====  =====

    Complexity: O(n) time, one pass over both inputs (broadcast views read
    in place); no memory beyond the output.

    logp and ref_logp broadcast; the result has the broadcast shape and is
    float32 (float64 when the inputs promote to float64).

    Differentiable with respect to torch logp and ref_logp that require
    grad: d/d logp = 1 (k1), d (k2), 1 - exp(-d) (k3), sign(d) (abs), and
    the negative for ref_logp; 0 outside the clamp band |d| <= c, where the
    estimator is constant (verl's clamp).  The backward is torch arithmetic
    in float64 on arrays of the inputs' size.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> logp, ref = np.array([-1.0, -2.0]), np.array([-1.5, -1.0])
    >>> print(np.round(klkit.kl_estimate(logp, ref, "k3"), 6))
    [0.106531 0.718282]
    >>> print(np.round(klkit.kl_estimate(logp, ref, "k2"), 6))
    [0.125 0.5  ]
    >>> print(f"{klkit.kl_estimate(np.array([-1.0]), np.array([-1.0 - 1e-5]), 'k3')[0]:.6e}")
    4.999983e-11
    """
    logp, ref_logp = from_pandas(logp, "logp"), from_pandas(ref_logp, "ref_logp")
    if is_arrow(logp) or is_arrow(ref_logp):
        return _arrow_estimates(logp, ref_logp, estimator, clamp)
    if any_device(logp, ref_logp):
        return _gpu.kl_estimate(logp, ref_logp, estimator, clamp)
    if wants_grad(logp, ref_logp):
        from . import _autograd

        return _autograd.kl_estimate(logp, ref_logp, estimator, clamp)
    est = _args.estimator(estimator)
    c = _args.clamp(clamp)
    wrap = wrap_of(logp, ref_logp)
    a, _ = as_input(logp, "logp")
    b, _ = as_input(ref_logp, "ref_logp")
    a, b, raw_a, raw_b = float_input(a, "logp"), float_input(b, "ref_logp"), a, b
    dtype = common_dtype((logp, promotion_dtype(raw_a, a)), (ref_logp, promotion_dtype(raw_b, b)))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"ref_logp: shape {b.shape} does not broadcast with logp's "
                         f"{a.shape}") from None
    out = np.empty(shape, result_dtype(dtype))
    if out.size:
        # rows over the last axis of the broadcast views, read in place
        axes = (len(shape) - 1,) if shape else ()
        xa, n_lead, _ = rows(np.broadcast_to(narrowed(a, dtype), shape), axes)
        xb, _, _ = rows(np.broadcast_to(narrowed(b, dtype), shape), axes)
        _kernels.backend(xa, xb).kl_estimate(est, precision(dtype), xa, xb, n_lead, c,
                                             out.reshape(-1))
    return wrap(out[()] if out.ndim == 0 else out)


def _arrow_estimates(logp, ref_logp, estimator, clamp):
    """kl_estimate of two Arrow list arrays whose lists have matching
    lengths: a list array shaped like logp (its list type, null lists and,
    for a ChunkedArray, its chunks) of the per-token estimates."""
    import pyarrow as pa

    from . import _arrow

    chunked = isinstance(logp, pa.ChunkedArray)
    if is_arrow(logp) and is_arrow(ref_logp):
        logp, ref_logp = _arrow.same_chunking(logp, ref_logp)
    lp, lq, dtype = _pair_layouts(logp, ref_logp, None, None)
    templates = logp.chunks if isinstance(logp, pa.ChunkedArray) else [logp]
    out = [_arrow.lists_like(t, kl_estimate(_arrow.flat(x, xs, n), _arrow.flat(y, ys, n),
                                            estimator, clamp=clamp), n)
           for t, (x, xs, n), (y, ys, _) in zip(templates, lp.parts, lq.parts)]
    if not chunked:
        return out[0]
    item = pa.from_numpy_dtype(result_dtype(dtype))
    kind = pa.large_list if pa.types.is_large_list(logp.type) else pa.list_
    return pa.chunked_array(out, type=kind(item))


def _pair_layouts(logp, ref_logp, offsets, mask):
    """Layouts of logp and ref_logp with matching sequences, and the dtype
    both are computed in."""
    logp, ref_logp = from_pandas(logp, "logp"), from_pandas(ref_logp, "ref_logp")
    arrow = is_arrow(logp)
    if arrow != is_arrow(ref_logp):
        raise TypeError("ref_logp: logp and ref_logp must both be Arrow list arrays or both "
                        "be arrays")
    if arrow:
        from . import _arrow

        logp, ref_logp = _arrow.same_chunking(logp, ref_logp)
    elif getattr(logp, "shape", None) is not None and getattr(ref_logp, "shape", None) \
            is not None and tuple(logp.shape) != tuple(ref_logp.shape):
        raise ValueError(f"ref_logp: shape {tuple(ref_logp.shape)} does not match logp's "
                         f"{tuple(logp.shape)}")
    lp = _layout(logp, offsets, mask, "logp")
    lq = _layout(ref_logp, offsets, mask, "ref_logp")
    if not arrow:
        sp = lp.x.shape if lp.kind == "padded" else lp.parts[0][0].shape
        sq = lq.x.shape if lq.kind == "padded" else lq.parts[0][0].shape
        if lp.kind != lq.kind or sp != sq:
            raise ValueError(f"ref_logp: shape {np.shape(ref_logp)} does not match logp's "
                             f"{np.shape(logp)}")
    else:
        a, b = lp.lens, lq.lens
        if a.shape != b.shape:
            raise ValueError(f"ref_logp: {b.shape[0]} sequences, logp has {a.shape[0]}")
        bad = np.flatnonzero(a != b)
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"ref_logp: sequence {i} has {b[i]} tokens, logp's has {a[i]}")
    dtype = common_dtype((None, lp.src), (None, lq.src))
    return lp.narrowed(dtype), lq.narrowed(dtype), dtype


@public("segments", ("logp", "ref_logp", "offsets", "lengths", "mask"))
def seq_kl(logp, ref_logp, offsets=None, *, lengths=None, mask=None, estimator="k1",
           reduce="sum", clamp=None, empty=0.0, check=True):
    """Per-sequence KL estimate: the sum (``reduce="sum"``, the RLHF sequence
    KL) or token mean (``reduce="mean"``) of :func:`kl_estimate` over each
    sequence's tokens.

    logp and ref_logp share one layout: two packed 1-D arrays of the same
    shape with one ``offsets`` (or ``lengths``), two [B, T] arrays with one
    ``mask``, or two
    Arrow list arrays whose list lengths match (else a ValueError naming the
    first differing sequence; their offsets and chunkings may differ).

    Fused: one pass over logp and ref_logp; the per-token estimates live only
    in an L1-sized buffer (no per-token temporary).  Each estimate is
    computed in the working precision exactly as :func:`kl_estimate` (same
    bits) and summed in float64 in the order of :func:`segment_sum`, so
    ``seq_kl(p, q, off, estimator=e) == segment_sum(kl_estimate(p, q, e), off)``
    bitwise for float32 input.  Error: the per-token error of kl_estimate
    (0.5 ulp for k1 and abs, 2 ulp for k2, 3 ulp for k3, of the working
    precision) summed over the tokens, plus the bound of
    :func:`segment_sum` over the estimates, plus 1/2 ulp; for k1 with
    cancellation between tokens, relative to sum|d| rather than to the
    result.  An empty sequence gives ``empty`` (default 0.0 for both
    reductions: no tokens, no KL penalty, as the RLHF frameworks' masked
    means give; :func:`segment_mean` defaults to NaN instead, as np.mean of
    nothing; pass ``empty=math.nan`` here for that).  Result float32
    (float64 for float64 input).

    ``check=False`` skips the validation of the offsets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad offset
    then gives NaN for its sequence, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Edge cases, per sequence:

    =================================  ================================
    sequence                           result
    =================================  ================================
    empty, or every token masked       ``empty`` (0.0)
    a NaN token (masked out: ignored)  NaN
    a token with infinite d            as :func:`kl_estimate`, summed
    =================================  ================================

    Complexity: O(T) time for T tokens, one pass over logp and ref_logp;
    extra memory O(number of sequences) (the estimates live in an L1-sized
    buffer), plus O(n) offsets for ``lengths=``.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> logp, ref = np.array([-1.0, -2.0, -0.5]), np.array([-1.5, -1.0, -0.5])
    >>> print(np.round(klkit.seq_kl(logp, ref, np.array([0, 2, 2, 3]), estimator="k3"), 6))
    [0.824812 0.       0.      ]
    >>> print(np.round(klkit.seq_kl(logp, ref, lengths=[2, 1], reduce="mean"), 6))
    [-0.25  0.  ]
    """
    offsets = _lengths_as_offsets(logp, offsets, lengths, mask, check)
    if any_device(logp, ref_logp, offsets, mask):
        return _gpu.seq_kl(logp, ref_logp, offsets, mask, estimator, reduce, clamp, empty,
                           check)
    if wants_grad(logp, ref_logp):
        from . import _autograd

        return _autograd.seq_kl(logp, ref_logp, offsets, mask, estimator, reduce, clamp, empty,
                                check)
    est = _args.estimator(estimator)
    c = _args.clamp(clamp)
    reduce = _args.reduce(reduce)
    empty = _args.empty(empty)
    lp, lq, dtype = _pair_layouts(logp, ref_logp, offsets, mask)
    out, _ = _run(reduce, lp, empty, dtype, est=est, other=lq, clamp=c)
    return wrap_of(logp, ref_logp, offsets, mask)(cast(out, result_dtype(dtype)))


def seq_kl_parts(logp, ref_logp, lens, *, estimator="k1", reduce="sum", clamp=None):
    """:func:`seq_kl` (the same bits, empty = 0) of two packed inputs given
    as (values, starts): 1-D kernel-ready float arrays and int64 starts,
    the sequences' lengths shared.  For callers that took them from Arrow
    buffers themselves and checked them (klkit.cli): no layout checks, so
    a per-batch call costs the kernel's time alone."""
    (x, xs), (y, ys) = logp, ref_logp
    dtype = common_dtype((None, x.dtype), (None, y.dtype))
    lp = _Layout("packed", x.dtype, identity, parts=[(x, xs, lens)])
    lq = _Layout("packed", y.dtype, identity, parts=[(y, ys, lens)])
    out, _ = _run(_args.reduce(reduce), lp, 0.0, dtype, est=_args.estimator(estimator),
                  other=lq, clamp=_args.clamp(clamp))
    return cast(out, result_dtype(dtype))


@public("segments", ("values", "offsets", "lengths", "mask"))
def agg_loss(values, offsets=None, *, lengths=None, mask=None, mode="token-mean",
             num_tokens=None, num_seqs=None, norm_length=None, check=True):
    """Reduce per-token values (losses) to one scalar, as verl's ``agg_loss``
    (verl/trainer/ppo/core_algos.py).  With S_i the sum and c_i the token
    count of sequence i (over the layout's kept tokens):

    ==========================  ==============================================
    mode                        result
    ==========================  ==============================================
    "token-mean"                sum_i S_i / num_tokens  (default sum_i c_i)
    "seq-mean-token-sum"        sum_{c_i > 0} S_i / num_seqs
    "seq-mean-token-mean"       sum_{c_i > 0} (S_i / c_i) / num_seqs
    "seq-mean-token-sum-norm"   sum_i S_i / norm_length  (default: T for
                                padded input, else the longest sequence)
    ==========================  ==============================================

    ``num_seqs`` defaults to the number of non-empty sequences (verl
    excludes fully masked ones).  ``num_tokens`` / ``num_seqs`` let a
    data-parallel rank divide by the global counts (verl's batch_num_tokens /
    global_batch_size); the result is then this rank's share (verl also
    multiplies by dp_size because DDP averages gradients over ranks; do that
    yourself if you need it).  For "seq-mean-token-sum-norm" this follows
    Dr. GRPO (divide the token sum by a constant); recent verl
    additionally divides by the number of sequences: pass
    ``norm_length=T * num_seqs`` for that.

    A zero divisor (an all-masked batch, or a count given as 0) gives 0.0,
    as verl returns a zero loss there.  Masked-out entries are never read,
    so NaN in the padding does not reach the result (verl's masked sums
    multiply by the mask, and 0 * NaN is NaN).

    Per-sequence sums as :func:`segment_sum` (float64), combined in float64
    and rounded once; returns a NumPy scalar, float32 (float64 for float64
    input), or a 0-d torch tensor for torch input.

    ``check=False`` skips the validation of the offsets on the GPU (one
    synchronisation per call) for callers who guarantee them: a bad offset
    then gives NaN for its sequence, never an out-of-bounds read.  On the
    CPU they are always validated.

    Notes
    -----
    Accuracy: with T kept tokens in B sequences,
    |error| <= 1/2 ulp + (T/16 + T/4096 + B + 6) 2^-53 sum|x_i| / divisor
    (for "seq-mean-token-mean", sum|x_i| / divisor becomes
    sum_i (sum of |x| over sequence i) / c_i / num_seqs).

    Edge cases:

    =========================================  =========================
    input                                      result
    =========================================  =========================
    every token masked, no sequences, or a     0.0
    divisor (num_tokens, ...) of 0
    empty sequences                            add 0, not in num_seqs
    a kept NaN (masked-out NaN: ignored)       NaN
    a kept +inf (no -inf) / +inf and -inf      +inf / NaN
    =========================================  =========================

    Complexity: O(T) time, one pass over the values (read in place); extra
    memory O(number of sequences).

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> x = np.array([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]])
    >>> m = np.array([[True, True, False], [True, False, False]])
    >>> print(f"{klkit.agg_loss(x, mask=m):.6f}")                       # (1 + 2 + 4) / 3
    2.333333
    >>> print(f"{klkit.agg_loss(x, mask=m, mode='seq-mean-token-mean'):.6f}")   # (1.5 + 4) / 2
    2.750000
    >>> print(klkit.agg_loss(x, mask=np.zeros_like(m)))
    0.0
    """
    offsets = _lengths_as_offsets(values, offsets, lengths, mask, check)
    if any_device(values, offsets, mask):
        return _gpu.agg_loss(values, offsets, mask, mode, num_tokens, num_seqs, norm_length,
                             check)
    if wants_grad(values):
        from . import _autograd

        return _autograd.agg_loss(values, offsets, mask, mode, num_tokens, num_seqs,
                                  norm_length, check)
    mode = _args.mode(mode)
    num_tokens = _args.count(num_tokens, "num_tokens")
    num_seqs = _args.count(num_seqs, "num_seqs")
    norm_length = _args.count(norm_length, "norm_length")
    lay = _layout(values, offsets, mask)
    sums, counts = _run("sum", lay, 0.0, lay.dtype, want_counts=True)
    sums = _redo_overflowed_sums("sum", lay, 0.0, sums)
    nonempty = counts > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if mode == "token-mean":
            num = _total(sums)
            den = float(np.sum(counts)) if num_tokens is None else num_tokens
        elif mode == "seq-mean-token-sum":
            num = _total(sums[nonempty])
            den = float(np.count_nonzero(nonempty)) if num_seqs is None else num_seqs
        elif mode == "seq-mean-token-mean":
            num = _total(sums[nonempty] / counts[nonempty])
            den = float(np.count_nonzero(nonempty)) if num_seqs is None else num_seqs
        else:
            num = _total(sums)
            if norm_length is None:
                norm_length = float(lay.T if lay.T is not None
                                    else (counts.max() if counts.size else 0))
            den = norm_length
        res = 0.0 if den == 0 else float(num) / den
    return lay.wrap(cast(np.float64(res), result_dtype(lay.dtype)))
