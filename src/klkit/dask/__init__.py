"""klkit on Dask: the dense functions on dask arrays, the segment functions
on dask DataFrames of Arrow list columns.

    import klkit.dask as kd
    lse = kd.logsumexp(x, axis=-1)           # a dask array; nothing computed yet
    lse.compute()

Everything here is lazy: each function checks its arguments at once (klkit's
checks and messages) and returns a dask array (0-d for a full reduction) or
a dask Series; the kernels run when it is computed, on any scheduler
(threads, processes, ``distributed``).  Results have klkit's dtypes.

Dense functions (logsumexp, softmax, log_softmax, entropy, cross_entropy,
kl_div, js_div) give klkit's results on the computed array, bit for bit,
however the array is chunked, for every input dtype klkit takes (float16,
bfloat16, float32, float64, integers), special values, temperatures and
kinds:

* Every reduced axis one chunk (other axes chunked any way): klkit's own
  function on each block.  A row's result does not depend on the other
  rows.
* A reduced axis split into several chunks, anywhere: the kernels read a
  row in pieces of 2048 elements from its start
  and their floating-point sums cannot be rebuilt from the halves of a
  piece, so the row is cut where the kernels cut it, not at the chunk
  boundaries.  Each block's task computes the pieces that lie inside it;
  a piece across a chunk boundary gets a task of its own, which receives
  only that piece's elements of the blocks it spans (at most 2048 per row
  and boundary).  Chunk boundaries at multiples of 2048 need no such task.
  Then:

  - logsumexp, entropy and cross_entropy (kinds logits and probs): a tree
    reduction of the pieces' reduction states (log-sum-exp, entropy,
    cross-entropy; 16 to 40 bytes per piece and row).  The tree only
    concatenates them; its last task folds them left to right, in row
    order, with the kernels' own combine (as the kernels fold the tiles
    of a logsumexp row longer than 65536).
  - softmax and log_softmax: the rows' log-sum-exp states as above, then
    the kernels write each block from its rows' states (the output has
    the input's chunks).
  - kind="logprobs" (entropy, cross_entropy, kl_div): the same tree over
    the kernels' sums of 256-element pieces (8 bytes each), added in row
    order from 0 as the kernels add them.
  - kl_div from logits and probs: the kernels' KL loop takes each piece's
    shift from the row before it, so no state of a piece alone gives its
    bits; the loop's carry is handed from piece to piece instead.  The
    blocks of one row run one after another (blocks of other rows in
    parallel), and the input blocks stay in memory until their rows'
    carries are final: rows whose logits are so large that the kernels
    sum the direct form over the whole row (e.g. 1e20 against 3) are
    gathered and computed by klkit.
  - Over several reduced axes (logsumexp, softmax, log_softmax) the row is
    their C-order flattening, as the kernels see it: every reduced axis
    but the first is rechunked into one chunk, and the first is cut as
    above.
  - kind="probs": log p per block in the working precision, as klkit.

  The fold's order is the row's, so the results do not depend on the
  tree's fan-in (``split_every``), the scheduler or the number of workers.
  Tested on a distributed cluster and over adversarial rows (-inf, NaN,
  +inf, all -inf, tiny, huge, one-hot, cancelling; every dtype;
  temperatures 0.4, 0.7, 1, 2.5; kinds logits, logprobs, probs; chunks on
  and off the 2048 grid, uneven, of one element, shorter than 2048; random
  shapes, cuts and axes): every result byte equal to klkit's.
* Rechunked into one chunk along the reduced axes, then klkit per block
  (bit for bit): js_div (it has no state), logsumexp with ``b`` or
  ``return_sign``, complex input, temperatures beyond the kernels' range
  (klkit's NumPy twin), and reduced axes of total length 0.

Segment functions (seq_kl, segment_sum, segment_mean, segment_max,
segment_logsumexp) take a dask DataFrame whose columns are Arrow lists
(pandas ArrowDtype, as ``dask.dataframe.read_parquet(...,
dtype_backend="pyarrow")`` gives) and return a float dask Series aligned
with its index: one task per partition, each handing the partition's
Arrow arrays (the ChunkedArray pandas holds) to klkit, which reads them in
place.  A sequence's result depends only on its own tokens, so the results
are klkit's on the whole column, bit for bit.
"""
try:
    import dask.array  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError('klkit.dask needs dask: pip install "klkit[dask]"') from e

from ._dense import log_softmax, logsumexp, softmax
from ._divergence import cross_entropy, entropy, js_div, kl_div
from ._segments import segment_logsumexp, segment_max, segment_mean, segment_sum, seq_kl

__all__ = ["logsumexp", "softmax", "log_softmax", "entropy", "cross_entropy", "kl_div",
           "js_div", "seq_kl", "segment_sum", "segment_mean", "segment_max",
           "segment_logsumexp"]
