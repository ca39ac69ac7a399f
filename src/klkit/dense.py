"""Dense log-space functions: logsumexp, softmax, log_softmax.

Drop-in replacements for the scipy.special functions of the same names
(same signatures, defaults, dtypes and special values), computed by the C
kernels in one streaming pass per row on all cores.  Inputs the kernels do
not take (weights ``b``, ``return_sign``, complex numbers) go to the NumPy
twin in ``klkit.reference``, which follows the same rules.
"""

# How to add a row op to this family (six files; the contract tests of
# tests/test_contracts.py then run on it from the registry):
# 1. kernels/cpu/dense_rows.inc: its per-row kernel, written once for both
#    working precisions over the loader (rows in place, any layout) and the
#    chunk primitives of row_chunks.inc; new scalar math goes in
#    kernels/include/klkit/*.h (KLKIT_HD, no loops, the formula and its source
#    in the header comment).
# 2. kernels/cpu/dense.c: its OpenMP loop over rows, KK_FN(kk_<op>_rows).
# 3. kernels/cpu/klkit_entries.h: one X(...) line; the declarations, the
#    per-instruction-set table and the wrappers follow from it.
# 4. src/klkit/_cpu.pyx: its extern line and a wrapper that describes the
#    arrays (_describe), checks what C relies on and releases the GIL.
# 5. Here: the public function, registered with @public and named in
#    __all__: checks from _args, arrays from _arrays (rows(): a view, never a
#    copy), the kernel through _kernels.backend().
# 6. src/klkit/reference/dense.py: its NumPy twin (float64, plain formulas),
#    named in that module's __all__.
# Then tests/test_dense.py (against the twin and scipy, mpmath cases in
# tests/test_accuracy.py) and, to time it, its recipes in src/klkit/_benchmarks.py
# and a case in bench/report.py.

import math

import numpy as np

from . import _args, _gpu, _kernels
from ._arrays import (any_device, as_input, float_input, kernel_view, moved, result_dtype, rows,
                      torch_promoted, wants_grad, wrap_of)
from ._registry import public

__all__ = ["logsumexp", "softmax", "log_softmax"]


@public("dense", ("a", "b"))
def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) along ``axis``, as ``scipy.special.logsumexp``.

    Parameters and results are scipy's: ``axis`` None (all), an int or a
    tuple; ``b`` weights broadcast against ``a`` (negative weights need
    ``return_sign=True``, which returns ``(value, sign)``); ``keepdims``.
    A 0-d ``a`` is one element of one axis, as scipy makes it 1-d: it takes
    ``axis`` 0 or -1 (an int or a 1-tuple) and with ``keepdims=True`` gives
    an array of shape (1,).
    Result dtype: float64 for float64, integer and bool input, float32 for
    float32, float16 and bfloat16 input; a 0-d result is a NumPy scalar.
    Torch tensors promote by torch's rules, as scipy does for them (an
    integer or bool tensor, or a float32 ``a`` with an integer ``b``, gives
    float32: torch's default float dtype).

    Computed as ``m + log1p(s)`` where m is the maximum and s sums
    ``exp(a_i - m)`` over every element but one occurrence of the maximum,
    accumulated in float32 blocks and float64 across blocks (float64
    throughout for float64 input).  A float16 input never overflows (70000
    zeros give log(70000) = 11.156).

    Weights, ``return_sign`` and complex input are computed by
    ``klkit.reference.logsumexp`` (float64 NumPy, same rules).

    Differentiable (torch tensors that require grad): the value with
    respect to ``a`` (softmax(a) along the axes, written by a kernel from
    the saved per-row lse) and to ``b``; the sign is not differentiable.
    With ``b`` or ``return_sign`` the backward is torch arithmetic in
    float64 on arrays of a's size.

    Notes
    -----
    Accuracy (no weights, real input), against the exact value for the
    input as given: with n the slice's length, m its maximum, R = max - min
    of its finite elements, eps and d the machine epsilon and smallest
    subnormal number of the result dtype,

        |error| <= eps (2 |m| + (2 + 2 R + n/16384) log1p(s)) + n d.

    Exact for a single dominant term; a few ulp relative unless the result
    is much smaller than |m| and the two cancel (float32 [-0.3, -1.3956]
    gives -0.0116, 26 ulp off).  The n d term covers terms exp(a_i - m)
    that fall in the subnormal range (float32 results below 1e-38).

    Edge cases, per reduced slice:

    ======================  ==========================================
    slice                   result
    ======================  ==========================================
    empty                   -inf
    all -inf                -inf
    some -inf               those terms add nothing
    +inf (no NaN)           +inf
    any NaN                 NaN
    ======================  ==========================================

    Complexity: O(n) time per slice, one streaming pass over the input
    (read in place, any layout); extra memory O(number of results).

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> print(f"{klkit.logsumexp(np.array([1.0, 2.0, 3.0])):.6f}")
    3.407606
    >>> print(np.round(klkit.logsumexp(np.array([[0.0, 0.0], [1.0, -np.inf]]), axis=1), 6))
    [0.693147 1.      ]
    >>> print(klkit.logsumexp(np.array([], dtype=np.float32)))
    -inf
    """
    a, b = torch_promoted(a, b)
    if any_device(a, b):
        return _gpu.logsumexp(a, axis, b, keepdims, return_sign)
    if wants_grad(a, b):
        from . import _autograd

        return _autograd.logsumexp(a, axis, b, keepdims, return_sign)
    wrap = wrap_of(a, b)
    a, _ = as_input(a, "a")
    if b is not None or return_sign or a.dtype.kind == "c":
        b = None if b is None else as_input(b, "b")[0]     # (a torch bfloat16 b included)
        res = _kernels.twin("logsumexp")(a, axis=axis, b=b, keepdims=keepdims,
                                         return_sign=return_sign)
        return tuple(wrap(r) for r in res) if return_sign else wrap(res)
    a = float_input(a, "a")
    _, res = _lse(a, _args.axes(axis, a.ndim), keepdims)
    return wrap(res[()] if res.ndim == 0 else res)


def _lse(a, axes, keepdims):
    """(float64 lse of each row of float array a over ``axes``, the result:
    in the result dtype, shaped as keepdims says)."""
    v, n_lead, kept_shape = rows(a, axes)
    out = np.empty(math.prod(kept_shape), np.float64)
    _kernels.backend(v).lse_rows(v, n_lead, out)
    res = out.astype(result_dtype(a.dtype), copy=False)
    if keepdims:       # 0-d input keeps one axis of length 1, as scipy (its a is made 1-d)
        return out, res.reshape(tuple(1 if i in axes else n for i, n in enumerate(a.shape))
                                or (1,))
    return out, res.reshape(kept_shape)


def _softmax_family(x, axis, out, log):
    x, = torch_promoted(x)
    if any_device(x, out):
        return _gpu.softmax(x, axis, out, log)
    if wants_grad(x):
        from . import _autograd

        return _autograd.softmax(x, axis, out, log)
    name = "log_softmax" if log else "softmax"
    x, wrap = as_input(x, "x")
    if x.dtype.kind == "c":
        return wrap(_kernels.twin(name)(x, axis=axis, out=out))
    x = float_input(x, "x")
    dtype = result_dtype(x.dtype)
    if out is not None:
        _args.out(out, x, dtype)
    axes = _args.axes(axis, x.ndim)
    v, n_lead, _ = rows(x, axes)
    target = out if out is not None else np.empty(x.shape, dtype)
    # the output rows are read the same way as the input's, in place (an
    # out= the kernels cannot write in place is filled from a copy)
    dest = moved(target, axes)
    direct = kernel_view(dest, n_lead) is dest
    if not direct:
        dest = np.empty(dest.shape, dtype)
    if v.size:
        _kernels.backend(v, dest).softmax_rows(v, n_lead, log, dest)
    if not direct:
        moved(target, axes)[...] = dest
    return wrap(target[()] if target.ndim == 0 and out is None else target)


@public("dense", ("x",))
def softmax(x, axis=None, *, out=None):
    """exp(x) / sum(exp(x)) along ``axis`` (None: over all elements), as
    ``scipy.special.softmax``.

    Computed as ``exp(x - m) / (1 + s)`` with the log-sum-exp state of
    :func:`logsumexp`, in one read pass for the sum and one read-write pass
    for the output.  Output dtype float32 (float64 for float64 input), same
    shape as x.  ``out`` (klkit
    extension) receives the result when given: an array of that shape and
    dtype, not overlapping x; it is returned.  A 0-d x takes ``axis`` 0 or
    -1, as scipy, and also (0,) or (-1,) (which scipy 1.17 refuses, unlike
    its logsumexp: klkit treats all three alike).

    Differentiable with respect to a torch ``x`` that requires grad
    (``out`` must then be None): the backward reads the output, which is
    saved as torch saves it, and the incoming gradient twice per row
    (their dot product first) and writes the gradient once.

    Notes
    -----
    Accuracy, against the exact value for the input as given, with n, m,
    R and s as in :func:`logsumexp` and eps the machine epsilon of the
    result dtype:

        relative error <= (2 + |x_i - m| + (R + n/16384) log1p(s)) eps

    (|x_i - m| is the conditioning of exp at the rounded x_i - m; below the
    smallest normal number of the result dtype the error is relative to
    that number).

    Edge cases, per slice (as scipy):

    ======================  ==========================================
    slice                   result
    ======================  ==========================================
    empty                   empty output of the same shape
    some -inf               0.0 at those entries
    all -inf                all NaN
    any +inf                all NaN
    any NaN                 all NaN
    ======================  ==========================================

    Complexity: O(n) time, one read pass for the sum and one read-write
    pass for the output; no memory beyond the output.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> print(np.round(klkit.softmax(np.array([1.0, 2.0, 3.0])), 4))
    [0.09   0.2447 0.6652]
    >>> print(klkit.softmax(np.array([0.0, -np.inf])))
    [1. 0.]
    >>> print(np.round(klkit.softmax(np.array([[1.0, 1.0], [0.0, np.log(3.0)]]), axis=1), 4))
    [[0.5  0.5 ]
     [0.25 0.75]]
    """
    return _softmax_family(x, axis, out, log=False)


@public("dense", ("x",))
def log_softmax(x, axis=None, *, out=None):
    """x - logsumexp(x) along ``axis``, as ``scipy.special.log_softmax``.

    Computed as ``(x - m) - log1p(s)``: unlike scipy, the largest element
    keeps its small correction (log_softmax([0, -40])[0] is -4.25e-18, not
    0).  Output dtype and ``out`` as :func:`softmax`.  Differentiable as
    :func:`softmax` (gradient g - exp(y) sum(g)).

    Notes
    -----
    Accuracy, against the exact value for the input as given, with n, m,
    R, s, eps and d as in :func:`logsumexp`:

        |error| <= eps (2 |x_i - m| + (2 + 2 R + n/16384) log1p(s)) + n d.

    An absolute bound: where the result is tiny (the maximum of a row
    whose other terms are far below it) its relative error can be large,
    e.g. the rounding of x_j - m amplified by exp (float64
    [153.2, -45.8] gives element 0 about 100 ulp off), or terms in
    float32's subnormal range (results below 1e-38).

    Edge cases, per slice (as scipy):

    ======================  ==========================================
    slice                   result
    ======================  ==========================================
    empty                   empty output of the same shape
    some -inf               -inf at those entries
    all -inf                all NaN
    any +inf (no NaN)       NaN at the +inf entries, -inf elsewhere
    any NaN                 all NaN
    ======================  ==========================================

    Complexity: as :func:`softmax`, O(n) time, no memory beyond the output.

    Examples
    --------
    >>> import numpy as np
    >>> import klkit
    >>> print(np.round(klkit.log_softmax(np.array([1.0, 2.0, 3.0])), 4))
    [-2.4076 -1.4076 -0.4076]
    >>> print(f"{klkit.log_softmax(np.array([0.0, -40.0]))[0]:.3e}")
    -4.248e-18
    >>> print(klkit.log_softmax(np.array([0.0, np.inf])))
    [-inf  nan]
    """
    return _softmax_family(x, axis, out, log=True)
