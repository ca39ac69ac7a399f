"""Input handling shared by the public modules: array conversion (numpy,
torch CPU tensors), the dtype rules of SPEC section 0, axis normalisation,
and the [rows, n] layout the C kernels take.

Nothing here computes; it decides which array the kernels see and what the
caller gets back.
"""
import operator

import numpy as np

try:  # numpy >= 1.25
    from numpy.exceptions import AxisError
except ImportError:  # pragma: no cover
    AxisError = np.AxisError

KERNEL_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _torch_to_numpy(t, name):
    if t.device.type != "cpu":
        raise TypeError(f"{name}: tensors on {t.device.type} need klkit's CUDA kernels, "
                        "which this build does not have")
    t = t.detach().resolve_conj().resolve_neg()
    if str(t.dtype) == "torch.bfloat16":
        import ml_dtypes
        import torch
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def as_input(x, name):
    """(numpy array, wrap) where wrap turns a numpy result into the caller's type."""
    mod = type(x).__module__
    if mod.startswith("torch") and hasattr(x, "numpy"):
        import torch

        def wrap(r):
            return torch.from_numpy(np.ascontiguousarray(r)) if isinstance(r, np.ndarray) \
                else torch.tensor(r)
        return _torch_to_numpy(x, name), wrap
    if mod.startswith("cupy"):
        raise TypeError(f"{name}: CuPy arrays need klkit's CUDA kernels, which this build "
                        "does not have")
    return np.asarray(x), _identity


def _identity(r):
    return r


def float_input(a, name):
    """a as a float array the kernels take: 16/32/64-bit floats kept, integers
    and bools promoted to float64 (as scipy does); anything else a TypeError."""
    dt = a.dtype
    if dt.name in KERNEL_DTYPES:
        return a
    if dt.kind in "biu":
        return a.astype(np.float64)
    if dt.kind == "c":
        raise TypeError(f"{name}: complex input is not supported here")
    raise TypeError(f"{name}: expected a real floating-point array, got dtype {dt}")


#: temperatures the kernels of each working precision take as they are:
#: 1/T must be a normal number of that precision, and T small enough that a
#: logit difference beyond the precision's range (which overflows to -inf)
#: has exp((x - m) / T) = 0 anyway.  Outside, 16/32-bit input runs in the
#: float64 kernels and float64 input in the NumPy reference.
KERNEL_TEMPERATURES = {"float32": (1e-38, 1e36), "float64": (1e-307, 1e305)}


def kernel_precision(dtype, temperature):
    """The dtype whose kernels handle this temperature ("float32" covers the
    16-bit types), or None where only the reference does."""
    dt = np.dtype(dtype)
    candidates = ("float64",) if dt.name == "float64" else ("float32", "float64")
    for name in candidates:
        lo, hi = KERNEL_TEMPERATURES[name]
        if lo <= temperature <= hi:
            return dt if name == candidates[0] else np.dtype(np.float64)
    return None


def result_dtype(dt):
    """float64 for float64 input, float32 for float32 and 16-bit input."""
    return np.dtype(np.float64) if np.dtype(dt).name == "float64" else np.dtype(np.float32)


def normalize_axes(axis, ndim, name="axis"):
    """Sorted tuple of non-negative axes; None means all."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for ax in axes:
        try:
            ax = operator.index(ax)
        except TypeError:
            raise TypeError(f"{name}: expected an int or a tuple of ints, got {axis!r}") from None
        if not -ndim <= ax < max(ndim, 1) or (ndim == 0 and ax not in (0, -1)):
            raise AxisError(f"{name}: axis {ax} is out of bounds for array of dimension {ndim}")
        out.append(ax % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def to_rows(a, axes):
    """View (or copy) of a as [rows, n], n the product of the reduced axes,
    each row contiguous.  Returns (rows, kept_shape, moved_shape)."""
    if a.ndim == 0:
        return a.reshape(1, 1), (), (1,)
    kept = [i for i in range(a.ndim) if i not in axes]
    moved = np.transpose(a, kept + list(axes))
    kept_shape = tuple(a.shape[i] for i in kept)
    n = 1
    for i in axes:
        n *= a.shape[i]
    rows = moved.reshape(-1, n) if moved.size else np.empty((int(np.prod(kept_shape)), n), a.dtype)
    if n > 1 and rows.strides[1] != rows.itemsize:
        rows = np.ascontiguousarray(rows)
    if rows.shape[0] > 1 and rows.strides[0] % rows.itemsize:
        rows = np.ascontiguousarray(rows)
    return rows, kept_shape, moved.shape


def finish(values, kept_shape, dtype, wrap):
    """Per-row float64 results reshaped, cast, 0-d turned into a scalar."""
    r = values.reshape(kept_shape).astype(dtype, copy=False)
    return wrap(r[()] if r.ndim == 0 else r)
