"""Arrays in and out of the public functions: conversion of numpy and
torch inputs, the one dtype promotion rule, and the row view (leading
shape and strides, no copy) the kernels take.

Nothing here computes; it decides which array the kernels see and what the
caller gets back.  GPU arrays (torch CUDA tensors, CuPy arrays; any_device)
take the GPU path of _gpu.py, whose array handling is _device.py.
"""
import numpy as np

from . import _kernels
from ._device import any_device  # noqa: F401  (the public modules' test for the GPU path)

#: the floating dtypes the kernels read as they are
KERNEL_DTYPES = ("float16", "bfloat16", "float32", "float64")

_NAMES = {}                               # dtype (or dtype-like) -> its name


def dtype_name(dt):
    """np.dtype(dt).name, remembered: NumPy computes .name in Python (a few
    microseconds, several times per call otherwise)."""
    try:
        name = _NAMES.get(dt)
    except TypeError:                     # an unhashable dtype-like
        return np.dtype(dt).name
    if name is None:
        name = np.dtype(dt).name
        if len(_NAMES) < 256:             # a few dtypes in any real program
            _NAMES[dt] = name
    return name


def _module(x):
    return type(x).__module__.split(".")[0]


def is_arrow(x):
    """Whether x is a pyarrow object (tested without importing pyarrow)."""
    return _module(x) == "pyarrow"


def from_pandas(x, name):
    """A pandas Series or array of an Arrow list type as its pyarrow array
    (zero-copy for one chunk), so that the per-sequence functions read it
    as they read Arrow; a pandas column of Python lists (dtype object) is a
    TypeError saying what to pass; anything else is returned as it is."""
    if _module(x) != "pandas":
        return x
    dt = getattr(x, "dtype", None)
    typ = getattr(dt, "pyarrow_dtype", None)
    if typ is not None:
        import pyarrow as pa

        if pa.types.is_list(typ) or pa.types.is_large_list(typ):
            return pa.array(x)
    elif dt == np.dtype(object):
        raise TypeError(f"{name}: a pandas column of Python lists (dtype object) is not read by "
                        "klkit; pass pyarrow.array(column) (one copy), or load the data with "
                        "dtype_backend=\"pyarrow\" and pass the column as it is")
    return x


def _torch_to_numpy(t, name):
    if t.device.type != "cpu":
        raise _kernels.no_backend(name, f"tensors on {t.device.type}")
    t = t.detach().resolve_conj().resolve_neg()
    if str(t.dtype) == "torch.bfloat16":
        import ml_dtypes
        import torch
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def torch_promoted(*xs):
    """The value arguments of a scipy drop-in (logsumexp's a and b, softmax's
    x) cast to one dtype by torch's rules where any of them is a torch
    tensor, as scipy does for torch input: ``torch.result_type``, with
    integers and bools becoming torch's default float dtype, so
    ``logsumexp(torch.tensor([2., 1.]), b=torch.tensor([1, -1]))`` is
    float32 (NumPy's rules would give float64).  Without a torch tensor
    the arguments are returned as they are (NumPy's rules apply)."""
    if not any(_module(x) == "torch" for x in xs):
        return xs
    import torch

    ts = [x if x is None or _module(x) == "torch" else torch.as_tensor(np.asarray(x))
          for x in xs]
    present = [t for t in ts if t is not None]
    dt = torch.result_type(*present) if len(present) == 2 else present[0].dtype
    if not (dt.is_floating_point or dt.is_complex):
        dt = torch.get_default_dtype()
    return tuple(None if t is None else t.to(dt) for t in ts)


def _torch_out(r):
    import torch

    return torch.from_numpy(np.ascontiguousarray(r)) if isinstance(r, np.ndarray) \
        else torch.tensor(r)


def wants_grad(*xs):
    """Whether an argument is a torch tensor that requires grad, with grad
    mode on: the call then goes through klkit's autograd functions
    (_autograd.py).  Costs an attribute lookup for any other input."""
    for x in xs:
        if getattr(x, "requires_grad", False):
            import torch

            return torch.is_grad_enabled()
    return False


def identity(r):
    """The wrap of NumPy input: results as they are."""
    return r


def wrap_of(*xs):
    """The wrap of a call's results, by the frameworks' rule: torch tensors
    out where any argument is a torch tensor (targets, offsets, masks and
    weights included), NumPy otherwise."""
    for x in xs:
        if _module(x) == "torch" and hasattr(x, "numpy"):
            return _torch_out
    return identity


def as_input(x, name):
    """(numpy array, wrap) where wrap turns a numpy result into the caller's
    type: torch CPU tensors in give torch tensors out (zero-copy views both
    ways), anything else np.asarray accepts gives numpy."""
    mod = _module(x)
    if mod == "torch" and hasattr(x, "numpy"):
        return _torch_to_numpy(x, name), _torch_out
    if mod == "cupy":
        raise _kernels.no_backend(name, "CuPy arrays")
    try:
        return np.asarray(x), identity
    except ValueError as e:
        if "inhomogeneous" not in str(e):
            raise
        raise ValueError(f"{name}: nested sequences of different lengths (ragged) are not an "
                         "array; pass sequences as one flat array with offsets, as a padded "
                         "[B, T] array with a mask, or as a pyarrow list array") from None


def float_input(a, name):
    """a as a float array the kernels take: 16/32/64-bit floats kept (in
    native byte order), integers and bools promoted to float64 (as scipy
    does); anything else a TypeError."""
    dt = a.dtype
    if dtype_name(dt) in KERNEL_DTYPES:
        # the kernels read native byte order: other orders are swapped (a copy)
        return a if dt.isnative else a.astype(dt.newbyteorder("="))
    if dt.kind in "biu":
        return a.astype(np.float64)
    if dt.kind == "c":
        raise TypeError(f"{name}: complex input is not supported here")
    raise TypeError(f"{name}: expected a real floating-point array, got dtype {dt}")


def promotion_dtype(raw, a):
    """The dtype input ``raw`` promotes with, ``a`` being float_input(raw):
    an integer or bool input's own dtype (NumPy's rules then decide: uint8
    with float32 is float32, int64 with float32 float64), a float input's
    as the kernels read it (native byte order)."""
    return raw.dtype if raw.dtype.kind in "biu" else a.dtype


def common_dtype(*operands):
    """The dtype several inputs are computed in, each operand given as an
    (original object or None, dtype) pair, the dtype that of
    promotion_dtype (integers and bools as they are).

    One shared kernel dtype stays as it is (bfloat16 included); otherwise
    NumPy's promotion (np.result_type, as scipy and the reference follow)
    with Python scalars weak (NumPy 2's rule: a float scalar does not
    widen a float32 array) and bfloat16 counted as float32 (NumPy has no
    float16 + bfloat16 rule): a bool / uint8 / int8 array with a float32
    array gives float32, with a float16 array float16, int32 / int64 with
    float32 float64.  A result that is not a float (integers and bools
    alone) gives float64."""
    dts = {np.dtype(dt) for _, dt in operands}
    if len(dts) == 1 and dtype_name(next(iter(dts))) in KERNEL_DTYPES:
        return next(iter(dts))
    ops = []
    for orig, dt in operands:
        if type(orig) in (bool, int, float):
            ops.append(orig)
        else:
            ops.append(np.dtype(np.float32) if dtype_name(dt) == "bfloat16" else np.dtype(dt))
    dt = np.result_type(*ops)
    return dt if dtype_name(dt) in KERNEL_DTYPES else np.dtype(np.float64)


def narrowed(a, dtype):
    """a as the kernels computing in ``dtype`` read it: as it is (they
    convert 16-bit and float32 input themselves), except a float64 operand
    of a computation that is not float64, which only a Python scalar (weak
    in common_dtype's rule, O(1)) or integers / bools (float64 from
    float_input, exact in ``dtype`` by NumPy's promotion) can be: that one
    is cast."""
    if dtype_name(a.dtype) == "float64" and dtype_name(dtype) != "float64":
        with np.errstate(over="ignore"):     # a scalar beyond the dtype's range is inf
            return a.astype(dtype)
    return a


def result_dtype(dt):
    """float64 for float64 input, float32 for float32 and 16-bit input."""
    return np.dtype(np.float64) if dtype_name(dt) == "float64" else np.dtype(np.float32)


#: temperatures the kernels of each working precision take as they are:
#: 1/T must be a normal number of that precision, and T small enough that a
#: logit difference beyond the precision's range (which overflows to -inf)
#: has exp((x - m) / T) = 0 anyway.  Outside, 16/32-bit input runs in the
#: float64 kernels and float64 input in the NumPy twin.
KERNEL_TEMPERATURES = {"float32": (1e-38, 1e36), "float64": (1e-307, 1e305)}


def kernel_precision(dtype, temperature):
    """The dtype whose kernels handle this temperature ("float32" covers the
    16-bit types), or None where only the NumPy twin does."""
    dt = np.dtype(dtype)
    candidates = ("float64",) if dtype_name(dt) == "float64" else ("float32", "float64")
    for name in candidates:
        lo, hi = KERNEL_TEMPERATURES[name]
        if lo <= temperature <= hi:
            return dt if name == candidates[0] else np.dtype(np.float64)
    return None


def kernel_view(a, n_lead=0):
    """a itself wherever the kernels read it in place (any strides, any
    order, broadcasts included), else a C-contiguous copy: for the rare
    view they cannot (unaligned data, strides that are not whole elements,
    more than 8 axes per part that do not merge)."""
    if _kernels.backend(a).readable(a, n_lead):
        return a
    return np.copy(a, order="C")      # (np.ascontiguousarray keeps unaligned data)


def moved(a, axes):
    """a with the reduced ``axes`` last, the others first in order: a
    transpose, never a copy (0-d arrays become one row of one element)."""
    if a.ndim == 0:
        return a.reshape(1)
    return np.transpose(a, [i for i in range(a.ndim) if i not in axes] + list(axes))


def rows(a, axes):
    """(view, n_lead, kept_shape): a as the kernels read it, one row per
    index of the kept axes (the first n_lead axes of the view, of shape
    kept_shape) over the reduced ``axes`` (the rest), in place wherever
    kernel_view allows."""
    v = moved(a, axes)
    n_lead = v.ndim - len(axes) if a.ndim else 0
    return kernel_view(v, n_lead), n_lead, v.shape[:n_lead]


def precision(dtype):
    """The kernels' working precision for a computation in ``dtype``:
    "float64" for float64, "float32" for float32 and the 16-bit floats."""
    return "float64" if dtype_name(dtype) == "float64" else "float32"


def finish(values, kept_shape, dtype, wrap):
    """Per-row float64 results reshaped, cast, 0-d turned into a scalar."""
    r = cast(values.reshape(kept_shape), dtype)
    return wrap(r[()] if r.ndim == 0 else r)


def cast(a, dtype):
    """a in the result dtype: a float64 value beyond float32's range
    becomes +-inf, its correct rounding, without NumPy's overflow warning
    (logits / temperature at T = 1e-40 give log-probs of -1e40)."""
    with np.errstate(over="ignore"):
        return a.astype(dtype, copy=False)
