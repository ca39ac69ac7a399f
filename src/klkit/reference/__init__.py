"""Pure-NumPy reference ("twin") of klkit's public functions.

Every function here has the name and signature of the public klkit function
it mirrors.  The package is the test oracle and the runtime fallback for
what the C kernels leave out (``logsumexp`` with weights ``b`` or
``return_sign``, complex input, temperatures beyond the float64 kernels'
range), so it favours clear, numerically careful formulas over speed.  It
imports only NumPy (``ml_dtypes`` is never imported: bfloat16 arrays are
recognised by their dtype name; pyarrow only when an Arrow array is passed)
and nothing of klkit outside this package: its math, argument checks and
loss formulas are its own.

Conventions shared by all functions
-----------------------------------
* Work is done in float64 (complex128 for complex input); the result is cast
  at the end.  Result dtype: float64 for float64, integer and bool input;
  float32 for float32, float16 and bfloat16 input; complex64/complex128 as
  scipy gives for complex input (``logsumexp``, ``softmax`` and
  ``log_softmax`` only).  With two inputs the dtype follows
  ``np.result_type`` of both (bfloat16 counted as float32; Python scalars
  are "weak" as in NumPy 2), then the rule above.  long double inputs give
  float64 (complex128): the computation is float64 anyway.
* Inputs are anything ``np.asarray`` accepts and are never modified.
  Object, string and other non-numeric dtypes raise TypeError.
* 0-d results come back as NumPy scalars (``np.float64``, ``np.float32``...).

Layout
------
One module per family, each holding the math of its functions and nothing
else: ``dense`` (logsumexp, softmax, log_softmax), ``divergence``
(entropy, cross_entropy, kl_div, js_div), ``tokens`` (token_logprobs,
softmax_cross_entropy), ``segments`` (segment_sum, segment_mean,
segment_max, segment_logsumexp, kl_estimate, seq_kl, agg_loss); ``_common``
has the dtype rules and argument checks they share.  Their formulas, with
the numerical reasoning, are at the top of each module.
"""
from . import dense, divergence, segments, tokens
from .dense import *          # noqa: F403  (each module names its functions in __all__)
from .divergence import *     # noqa: F403
from .tokens import *         # noqa: F403
from .segments import *       # noqa: F403

__all__ = [*dense.__all__, *divergence.__all__, *tokens.__all__, *segments.__all__]
