"""klkit: fast, exact log-space probability math.

Public functions: logsumexp, softmax, log_softmax (dense.py);
entropy, cross_entropy, kl_div, js_div (divergence.py); token_logprobs,
softmax_cross_entropy (tokens.py); segment_sum, segment_mean, segment_max,
segment_logsumexp, kl_estimate, seq_kl, agg_loss (segments.py); the
pure-NumPy twin of each in ``klkit.reference``; thread controls and
``show_config``.  Every public function takes NumPy arrays, torch tensors
(CPU and CUDA, differentiable) and CuPy arrays; GPU arrays are computed on
their GPU by the CUDA kernels (klkit._cuda, loaded on the first one).
"""
from importlib.metadata import PackageNotFoundError, version as _version

from . import _args, _kernels, dense, divergence, reference, segments, tokens
from .dense import *          # noqa: F403  (each family module names its own
from .divergence import *     # noqa: F403   public functions in __all__)
from .tokens import *         # noqa: F403
from .segments import *       # noqa: F403

try:
    __version__ = _version("klkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [*dense.__all__, *divergence.__all__, *tokens.__all__, *segments.__all__,
           "set_num_threads", "get_num_threads", "show_config", "reference", "__version__"]


def set_num_threads(n):
    """Number of OpenMP threads the kernels use, in every thread of the
    process (the default follows OMP_NUM_THREADS, else the core count).
    threadpoolctl limits the same pool: its limit holds in the thread that
    sets it, for as long as it is set.  Results do not depend on it.

    In a child process made by ``fork`` (multiprocessing's "fork" start
    method) klkit runs on one thread whatever is set: GNU OpenMP cannot
    start its threads again after a fork, and a parallel call would hang.
    The "spawn" and "forkserver" start methods give children their own
    threads.

    Examples
    --------
    >>> import klkit
    >>> before = klkit.get_num_threads()
    >>> klkit.set_num_threads(1)
    >>> klkit.get_num_threads()
    1
    >>> klkit.set_num_threads(before)
    """
    _kernels.set_num_threads(_args.threads(n))


def get_num_threads():
    """Number of OpenMP threads the next kernel call may use.

    Examples
    --------
    >>> import klkit
    >>> klkit.get_num_threads() >= 1
    True
    """
    return _kernels.get_num_threads()


def show_config(file=None):
    """Print the version, the kernel build and code path, threads and CUDA state.

    ``file``: where to print (default sys.stdout).

    Examples
    --------
    >>> import io
    >>> import klkit
    >>> buf = io.StringIO()
    >>> klkit.show_config(file=buf)
    >>> buf.getvalue().splitlines()[0] == "klkit " + klkit.__version__
    True
    """
    import platform
    import sys

    info = _kernels.build_info()
    lines = [
        f"klkit {__version__}",
        f"python {platform.python_version()} on {platform.machine()}; numpy "
        + __import__("numpy").__version__,
        f"kernels: {info['compiler']}, code paths built: {info['isas_built']}; "
        f"in use: {info['isa']}",
        f"openmp: {'yes' if info['openmp'] else 'no'}, threads: {get_num_threads()}",
        f"cuda: {info['cuda']}",
    ]
    if info.get("sanitize"):
        lines.append(f"sanitizers: {info['sanitize']} (a test build, not for speed)")
    print("\n".join(lines), file=file or sys.stdout)
