"""The backend seam: which compiled kernels compute a call.

The public modules never import a kernel module themselves; they ask this
one for the backend of their (already converted) arrays and call its entry
points, all of the same names and arguments:

* ``_cpu`` (Cython over kernels/cpu, OpenMP) for NumPy arrays: every input
  reaches it as a NumPy array, torch CPU tensors included (_arrays.py).
* device arrays (torch CUDA tensors, CuPy arrays) need CUDA kernels, which
  this build does not have: a TypeError naming the argument.
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
    """The error for an input no backend of this build computes on."""
    return TypeError(f"{name}: {what} need klkit's CUDA kernels, which this build does not have")


def twin(name):
    """The NumPy twin of public function ``name`` (klkit.reference)."""
    from . import reference

    return getattr(reference, name)


def set_num_threads(n):
    _cpu.set_num_threads(n)


def get_num_threads():
    return _cpu.get_num_threads()


def build_info():
    """The kernel build: compiler, code paths built and in use, OpenMP, CUDA."""
    return _cpu.build_info()
