"""GPU arrays: recognising them, describing them to the CUDA kernels
(_cuda.pyx), and the few array operations the GPU path needs, done by the
arrays' own framework so that results come back as the caller's type on the
caller's device and stream.

Accepted: torch CUDA tensors (described from their attributes: pointer,
strides, dtype bfloat16 included, device, torch's current stream of that
device), CuPy arrays (CuPy's current stream), and any other object with a
``__cuda_array_interface__`` (version 3) or a CUDA ``__dlpack_device__``,
viewed zero-copy as a CuPy array (or, with DLPack and no CuPy, a torch
tensor), in which framework its results come back.  Nothing here
synchronises with the host.

The kernels themselves are reached through the backend seam
(_kernels.gpu_backend), which imports klkit._cuda on the first GPU array.
"""
import math


def _module(x):
    return type(x).__module__.split(".")[0]


#: DLPack device types of CUDA memory (kDLCUDA, kDLCUDAManaged)
_DLPACK_CUDA = (2, 13)


def is_device(x):
    """Whether x is a GPU array: a torch CUDA tensor, a CuPy array, an
    object exposing ``__cuda_array_interface__``, or one whose
    ``__dlpack_device__`` is a CUDA device (JAX arrays, ...)."""
    mod = _module(x)
    if mod in ("numpy", "builtins"):
        return False
    if mod == "torch":
        return bool(getattr(x, "is_cuda", False))
    if hasattr(type(x), "__cuda_array_interface__"):
        return True
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None:
        return False
    try:
        return int(dev()[0]) in _DLPACK_CUDA
    except Exception:
        return False


def any_device(*xs):
    return any(x is not None and is_device(x) for x in xs)


# --------------------------------------------------------------------------
# the frameworks
# --------------------------------------------------------------------------

class _Torch:
    name = "torch"

    def __init__(self):
        import torch

        self.t = torch

    def dtype(self, a):
        return str(a.dtype)[6:]                 # "torch.float32" -> "float32"

    def empty(self, like, shape, dtype):
        return self.t.empty(shape, dtype=getattr(self.t, dtype), device=like.device)

    def full(self, like, shape, value, dtype):
        return self.t.full(shape, value, dtype=getattr(self.t, dtype), device=like.device)

    def astype(self, a, dtype):
        return a.to(getattr(self.t, dtype))

    def permute(self, a, perm):
        return a.permute(*perm)

    def contiguous(self, a):
        return a.contiguous()

    def broadcast_to(self, a, shape):
        return a.broadcast_to(shape)

    def log(self, a):
        return self.t.log(a)

    def where(self, c, a, b):
        return self.t.where(c, a, b)

    def describe(self, a):
        a = a.detach()
        if a.is_conj() or a.is_neg():
            a = a.resolve_conj().resolve_neg()
        stream = self.t.cuda.current_stream(a.device).cuda_stream
        return Dev(a, a.data_ptr(), tuple(a.shape), tuple(a.stride()), self.dtype(a),
                   a.device.index, stream, a.element_size())


class _CuPy:
    name = "cupy"

    def __init__(self):
        import cupy

        self.cp = cupy

    def dtype(self, a):
        return a.dtype.name

    def empty(self, like, shape, dtype):
        with self.cp.cuda.Device(like.device.id):
            return self.cp.empty(shape, dtype)

    def full(self, like, shape, value, dtype):
        with self.cp.cuda.Device(like.device.id):
            return self.cp.full(shape, value, dtype)

    def astype(self, a, dtype):
        return a.astype(dtype)

    def permute(self, a, perm):
        return a.transpose(perm)

    def contiguous(self, a):
        return self.cp.ascontiguousarray(a)

    def broadcast_to(self, a, shape):
        return self.cp.broadcast_to(a, shape)

    def log(self, a):
        return self.cp.log(a)

    def where(self, c, a, b):
        return self.cp.where(c, a, b)

    def describe(self, a):
        item = a.dtype.itemsize
        if any(s % item for s in a.strides):
            raise ValueError("GPU arrays: strides must be whole elements")
        with self.cp.cuda.Device(a.device.id):       # the current stream of a's device
            stream = self.cp.cuda.get_current_stream().ptr
        return Dev(a, a.data.ptr, tuple(a.shape), tuple(s // item for s in a.strides),
                   a.dtype.name, a.device.id, stream, item)


#: GPU array frameworks by module name; each array of one is taken as it is
ADAPTERS = {"torch": _Torch, "cupy": _CuPy}
_FRAMEWORKS = {}


def framework(x):
    """The framework adapter of GPU array x (torch, CuPy)."""
    name = _module(x)
    fw = _FRAMEWORKS.get(name)
    if fw is None:
        fw = _FRAMEWORKS[name] = ADAPTERS[name]()
    return fw


def native(x, name):
    """(x as an array of a framework of ADAPTERS, its framework): another
    object is viewed, zero-copy, as a CuPy array (through its
    ``__cuda_array_interface__``, on the stream that names) or, with only
    DLPack, as a CuPy array or a torch tensor (``from_dlpack``, which makes
    the producer's stream wait for the consumer's current one)."""
    if _module(x) in ADAPTERS:
        return x, framework(x)
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        a = cupy.asarray(x) if hasattr(type(x), "__cuda_array_interface__") \
            else cupy.from_dlpack(x)
        return a, framework(a)
    if not hasattr(type(x), "__cuda_array_interface__"):
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            t = torch.from_dlpack(x)
            return t, framework(t)
    raise TypeError(f"{name}: GPU arrays other than torch tensors and CuPy arrays are read "
                    "through CuPy (or, with DLPack, torch), which is not installed")


class Dev:
    """A GPU array as the CUDA kernels see it: ``obj`` (the framework's
    array, kept alive), its device pointer, shape, strides in elements,
    dtype name, device index, stream handle and item size."""
    __slots__ = ("obj", "ptr", "shape", "strides", "dtype", "device", "stream", "itemsize")

    def __init__(self, obj, ptr, shape, strides, dtype, device, stream, itemsize):
        self.obj, self.ptr, self.shape, self.strides = obj, ptr, shape, strides
        self.dtype, self.device, self.stream, self.itemsize = dtype, device, stream, itemsize

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        return self.size * self.itemsize


def same_device(arrays, names):
    """A TypeError where GPU arguments are on different devices or some
    argument is a host array."""
    devs = []
    for a, n in zip(arrays, names):
        if a is None or isinstance(a, (bool, int, float)):
            continue
        if not is_device(a):
            raise TypeError(f"{n}: a host array mixed with GPU arrays; pass every array on the "
                            "same GPU (or every array on the host)")
        devs.append((n, _device_index(a)))
    for n, d in devs[1:]:
        if d != devs[0][1]:
            raise TypeError(f"{n}: on GPU {d}, but {devs[0][0]} is on GPU {devs[0][1]}; pass "
                            "every array on the same GPU")


def _device_index(a):
    b, fw = native(a, "array")
    return fw.describe(b).device
