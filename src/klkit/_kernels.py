"""The backend seam: which compiled kernels compute a call.

The public modules never import a kernel module themselves; they ask this
one for the backend of their (already converted) arrays and call its entry
points, all of the same names and arguments:

* ``_cpu`` (Cython over kernels/cpu, OpenMP) for NumPy arrays: every input
  reaches it as a NumPy array, torch CPU tensors included (_arrays.py).
* ``_cuda`` (Cython over kernels/cuda) for GPU arrays (torch CUDA tensors,
  CuPy arrays), reached through _gpu.py: imported on the first GPU array
  (gpu_backend()), never at ``import klkit`` (it links the CUDA runtime
  statically, so a machine without a driver or a GPU imports klkit and
  gets a clear error only when it passes a GPU array).
* inputs no kernel takes (logsumexp's weights ``b`` and ``return_sign``,
  complex numbers, temperatures beyond the float64 kernels' range) are
  computed by the function's NumPy twin in klkit.reference (twin()).

It also holds the kernels' thread controls and build facts.
"""
from . import _cpu


def backend(*arrays):
    """The kernel module that computes on these arrays (NumPy: _cpu)."""
    return _cpu


def no_backend(name, what):
    """The error for GPU input to a function that computes on the host only."""
    return TypeError(f"{name}: {what} are not taken by this function; pass host arrays")


_GPU = None
_GPU_ERROR = None


def gpu_backend(name):
    """klkit._cuda, imported and checked once; a TypeError naming the
    argument and what is missing where this build has no CUDA kernels or
    the driver or the GPU is missing or too old."""
    global _GPU, _GPU_ERROR
    if _GPU is not None:
        return _GPU
    if _GPU_ERROR is None:
        try:
            from . import _cuda
        except ImportError:
            _GPU_ERROR = ("this build of klkit has no CUDA kernels (it was built without a CUDA "
                          "compiler: reinstall it where nvcc is on PATH, or pass host arrays)")
        else:
            driver, runtime, devices, err = _cuda.versions()
            if driver == 0:
                _GPU_ERROR = "no NVIDIA driver was found on this machine"
            elif driver // 1000 < runtime // 1000:      # (minor versions are compatible)
                _GPU_ERROR = (f"the NVIDIA driver supports CUDA {_version(driver)}, older than "
                              f"the CUDA {_version(runtime)} klkit was built with: install a "
                              f"driver for CUDA {runtime // 1000}.0 or newer")
            elif devices == 0:
                _GPU_ERROR = f"no GPU is visible ({_cuda.error_string(err)})"
            else:
                _GPU = _cuda
                return _GPU
    raise TypeError(f"{name}: GPU arrays need klkit's CUDA kernels, but {_GPU_ERROR}")


def _version(v):
    return f"{v // 1000}.{v % 1000 // 10}"


def twin(name):
    """The NumPy twin of public function ``name`` (klkit.reference)."""
    from . import reference

    return getattr(reference, name)


def set_num_threads(n):
    _cpu.set_num_threads(n)


def get_num_threads():
    return _cpu.get_num_threads()


def build_info():
    """The kernel build: compiler, code paths built and in use, OpenMP, and
    the CUDA kernels: built or not, their architectures, the driver and the
    GPUs visible."""
    info = _cpu.build_info()
    try:
        from . import _cuda
    except ImportError:
        return info
    cu = _cuda.build_info()
    if cu["driver"] == 0:
        state = "no NVIDIA driver"
    else:
        state = f"driver for CUDA {_version(cu['driver'])}, {cu['devices']} GPU(s) visible"
    info["cuda"] = (f"built for {cu['archs']} (CUDA runtime {_version(cu['runtime'])}, "
                    f"linked statically); {state}")
    return info
