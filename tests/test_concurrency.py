"""klkit under concurrency, beside other thread pools, over many calls and
across fork.

1. Eight Python threads call every public function at once on shared
   read-only inputs while another thread keeps changing set_num_threads:
   every result has the bits of the single-threaded result computed first,
   the inputs keep theirs, nothing deadlocks.
2. In a process whose torch intra-op pool and NumPy BLAS pool already run,
   interleaved and concurrent calls (NumPy and torch inputs) give the same
   bits and leave the other pools' settings alone;
   threadpoolctl.threadpool_limits(1) limits klkit's OpenMP runtime (which
   threadpool_info lists), torch's and BLAS' pools to 1 and restores them
   after, and klkit's bits do not change under the limit.
3. 10^4 calls of every public function on small inputs (NumPy, torch
   tensors, calls that raise ValueError) grow neither the resident set nor
   the C heap in use, and keep no references to their inputs.
4. After fork, in the child of a parent that ran multi-threaded kernels,
   klkit asked for 1 or 2 threads gives the parent's bits without hanging
   (a forked child runs on one thread: GNU libgomp cannot restart its pool).

Every scenario runs in a fresh Python process (its thread pools, its RSS
and its fork are its own) under a watchdog: faulthandler dumps every
thread's stack and exits when its deadline passes, and subprocess.run's
timeout backs it up, so a deadlock fails the test instead of hanging the
run.  The inputs are those of test_contracts.calls (every registered
function's typical calls), built here and pickled for the children; each
child computes its expected bits itself before its scenario (so that all
the bits compared come from the same build of the kernels).
"""
import hashlib
import importlib.util
import inspect
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import SANITIZED, nasty_array
from test_contracts import FUNCTIONS, NAMES, calls

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

#: inputs of calls(): (dtype, rows, n, fill).  SMALL stays on the serial
#: paths; WIDE (many rows) and LONG (a few long, tiled rows) hold >= 65536
#: values, past kernels/cpu's PAR_MIN (32768) and SEG_PAR_MIN (65536): the
#: OpenMP paths of every family, packed segments included.
SMALL = ("float32", 6, 37, "special")
WIDE = ("float32", 32, 4099, "normal")
LONG = ("float64", 3, 30011, "neginf")

MiB = 1 << 20


def digest(r):
    """sha256 of a result's dtype, shape and bytes, field by field for
    tuples (None marked), torch tensors through .numpy(): equal digests,
    equal bits."""
    h = hashlib.sha256()
    for v in (r if isinstance(r, tuple) else (r,)):
        if v is None:
            h.update(b"None|")
            continue
        if hasattr(v, "numpy") and not isinstance(v, np.ndarray):
            v = v.detach().numpy()
        a = np.asarray(v)
        h.update(f"{a.dtype.str}{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def tag(config):
    dtype, rows, n, _ = config
    return f"{dtype}x{rows}x{n}"


def build_cases(*configs):
    """[(key, name, kwargs)]: the calls() of every public function for each
    input set; the key ends with the set's tag."""
    return [(f"{name}/{label}/{tag(c)}", name, kw)
            for c in configs for name in NAMES
            for label, kw in calls(name, np.dtype(c[0]), rows=c[1], n=c[2], fill=c[3])]


def error_calls(name, rows=8, n=64):
    """Keyword arguments of calls of public function ``name`` that raise
    ValueError, each at another check (argument values, shapes, the
    contents of targets and offsets: before and after the arrays are
    converted)."""
    x = nasty_array((rows, n), np.float32, "normal", seed=0)
    y = nasty_array((rows, n), np.float32, "normal", seed=1)
    v = x.reshape(-1)
    t = np.arange(rows) % n
    bad_t = t.copy()
    bad_t[rows // 2] = n                               # a class index out of range
    bad_off = np.array([0, 2 * n, n, rows * n])        # decreasing
    long_off = np.array([0, n, 2 * n, rows * n + 1])   # beyond the values
    mask = np.ones((rows, n), bool)
    table = {
        "logsumexp": [{"a": x, "axis": 5}, {"a": x, "axis": 1, "b": np.ones(n + 1)}],
        "softmax": [{"x": x, "axis": 5}, {"x": x, "axis": 1, "out": np.empty((n, rows), np.float32)}],
        "log_softmax": [{"x": x, "axis": 5},
                        {"x": x, "axis": 1, "out": np.empty((rows, n), np.float64)}],
        "entropy": [{"p": x, "base": 1}, {"p": x, "temperature": 0.0}],
        "kl_estimate": [{"logp": x, "ref_logp": y, "estimator": "k9"},
                        {"logp": x, "ref_logp": y[:, :5]}],
        "seq_kl": [{"logp": v, "ref_logp": v, "offsets": bad_off},
                   {"logp": x, "ref_logp": y, "mask": mask, "reduce": "median"}],
        "agg_loss": [{"values": v, "offsets": bad_off}, {"values": x, "mask": mask, "mode": "nope"}],
        "token_logprobs": [{"logits": x, "targets": bad_t},
                           {"logits": x, "targets": t, "temperature": 0.0}],
        "softmax_cross_entropy": [{"logits": x, "targets": bad_t},
                                  {"logits": x, "targets": t, "label_smoothing": 2.0}],
    }
    for div in ("cross_entropy", "kl_div", "js_div"):
        table[div] = [{"p": x, "q": y[:, :5]}, {"p": x, "q": y, "kind": "prob"}]
    for seg in ("segment_sum", "segment_mean", "segment_max", "segment_logsumexp"):
        table[seg] = [{"values": v, "offsets": bad_off}, {"values": v, "offsets": long_off},
                      {"values": x, "mask": mask[:, :5]}]
    return table[name]


def _have_torch():
    return importlib.util.find_spec("torch") is not None


@pytest.fixture(scope="module")
def cases_file(tmp_path_factory):
    """The pickle of the inputs for the child processes: [(key, name, kwargs)]."""
    path = tmp_path_factory.mktemp("concurrency") / "cases.pkl"
    with open(path, "wb") as f:
        pickle.dump(build_cases(SMALL, WIDE, LONG), f, pickle.HIGHEST_PROTOCOL)
    return path


# --------------------------------------------------------------------------
# the child processes
# --------------------------------------------------------------------------

PRELUDE = """
import faulthandler, hashlib, json, os, pickle, sys, threading, time, warnings
import numpy as np

# the watchdog: every thread's stack on stderr and exit status 1 at the deadline
faulthandler.dump_traceback_later(float(os.environ["KK_WATCHDOG_S"]), exit=True)
warnings.simplefilter("ignore", RuntimeWarning)


def report(**result):
    print("RESULT " + json.dumps(result), flush=True)


def load():
    with open(sys.argv[1], "rb") as f:
        return pickle.load(f)


def compute(cases):
    \"\"\"{key: digest of the result} of the calls.\"\"\"
    return {key: digest(getattr(kk, name)(**kw)) for key, name, kw in cases}


def join_all(threads, seconds):
    \"\"\"Join the threads by a common deadline: the names of those alive after it.\"\"\"
    deadline = time.monotonic() + seconds
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


""" + inspect.getsource(digest)


def _tail(text, n=6000):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-n:]


def _kill_group(pid):
    """SIGKILL what is left of the child's process group (its forks)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_child(code, *args, timeout):
    """Run PRELUDE + code in a fresh interpreter (argv[1:] = args), in a
    process group of its own, and return the dict it reported.  The
    watchdog fires at 80% of timeout; at timeout the group is killed."""
    env = dict(os.environ, KK_WATCHDOG_S=str(0.8 * timeout))
    p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(p.pid)
        out, err = p.communicate()
        pytest.fail(f"no result in {timeout} s: deadlock?\n{_tail(err)}")
    finally:
        _kill_group(p.pid)                  # a hung fork the child left behind
    assert p.returncode == 0, (f"child exited with status {p.returncode} (the watchdog's timeout "
                               f"dumps every thread's stack: a deadlock?)\n{_tail(err)}")
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result reported\n{_tail(out)}\n{_tail(err)}"
    return json.loads(lines[-1][len("RESULT "):])


# --------------------------------------------------------------------------
# 1. many Python threads, one thread count changing under them
# --------------------------------------------------------------------------

THREADS_CODE = """
import klkit as kk

cases = load()
WORKERS, JOIN_S = 8, float(sys.argv[2])
inputs = [v for _, _, kw in cases for v in kw.values() if isinstance(v, np.ndarray)]
for a in inputs:
    a.flags.writeable = False                      # shared and read-only
before = [hashlib.sha256(a.tobytes()).hexdigest() for a in inputs]
kk.set_num_threads(1)
expected = compute(cases)                          # single-threaded, first

problems, counts, settings = [], set(), [0]
stop, first_set = threading.Event(), threading.Event()


def setter():
    i = 0
    while not stop.is_set():
        kk.set_num_threads(1 + i % 4)
        i += 1
        settings[0] = i
        first_set.set()
        time.sleep(0.0005)


def worker(w):
    key = None
    try:
        for j in np.random.default_rng(w).permutation(len(cases)):     # each its own order
            key, name, kw = cases[j]
            if digest(getattr(kk, name)(**kw)) != expected[key]:
                problems.append(f"worker {w}: {key}: bits differ from the single-threaded result")
            counts.add(kk.get_num_threads())
    except BaseException as e:
        problems.append(f"worker {w}: {key}: {e!r}")


s = threading.Thread(target=setter, name="setter", daemon=True)
s.start()
first_set.wait(10)
workers = [threading.Thread(target=worker, args=(w,), name=f"worker {w}", daemon=True)
           for w in range(WORKERS)]
for t in workers:
    t.start()
hung = join_all(workers, JOIN_S)
stop.set()
hung += join_all([s], 10)
modified = [i for i, a in enumerate(inputs) if hashlib.sha256(a.tobytes()).hexdigest() != before[i]]
report(problems=problems[:20], n_problems=len(problems), hung=hung, modified=modified,
       counts=sorted(counts), settings=settings[0], calls=WORKERS * len(cases))
if hung:
    os._exit(0)                 # threads stuck in the kernels would block the exit
"""


def test_threads_share_read_only_inputs_while_the_count_changes(cases_file):
    r = run_child(THREADS_CODE, cases_file, 60, timeout=100)
    assert not r["hung"], f"threads still running after 60 s (deadlock?): {r['hung']}"
    assert r["n_problems"] == 0, r["problems"]
    assert r["modified"] == [], "inputs modified"
    assert set(r["counts"]) <= {1, 2, 3, 4}, r["counts"]
    assert r["settings"] >= 1


# --------------------------------------------------------------------------
# 2. beside torch's intra-op pool and NumPy's BLAS pool; threadpoolctl
# --------------------------------------------------------------------------

POOLS_CODE = """
import ctypes

import torch                        # first: its intra-op pool (OpenMP) and MKL
A = torch.randn(384, 384, generator=torch.Generator().manual_seed(0))
B = np.random.default_rng(0).standard_normal((384, 384))
A @ A                               # torch's pool runs
B @ B                               # NumPy's BLAS pool runs

import threadpoolctl
import klkit as kk

cases = [c for c in load() if c[0].endswith(tuple(sys.argv[3].split(",")))]
expected = compute(cases)           # the bits, at the default count (they do not depend on it)
problems = []


def klkit_calls(label, as_torch=False):
    for key, name, kw in cases:
        if as_torch:
            kw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        try:
            if digest(getattr(kk, name)(**kw)) != expected[key]:
                problems.append(f"{label}: {key}: bits differ")
        except BaseException as e:
            problems.append(f"{label}: {key}: {e!r}")


def settings():
    \"\"\"The thread counts of every pool (this thread's view).\"\"\"
    s = {"klkit.get_num_threads": kk.get_num_threads(),
         "torch.get_num_threads": torch.get_num_threads()}
    for d in threadpoolctl.threadpool_info():
        s[f"{d['user_api']}:{os.path.realpath(d['filepath'])}"] = d["num_threads"]
    return s


class DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def klkit_openmp_runtime():
    \"\"\"The file of the OpenMP runtime klkit's kernels call (dlsym from
    klkit._cpu, then dladdr).\"\"\"
    fn = ctypes.CDLL(kk._cpu.__file__).omp_get_max_threads
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except AttributeError:          # glibc < 2.34
        dladdr = ctypes.CDLL("libdl.so.2").dladdr
    info = DlInfo()
    assert dladdr(ctypes.cast(fn, ctypes.c_void_p), ctypes.byref(info))
    return os.path.realpath(info.dli_fname.decode())


start = settings()
changed = []

# interleaved with torch's and NumPy's matmuls
A @ A
klkit_calls("after a torch matmul, numpy")
B @ B
klkit_calls("after a numpy matmul, torch", as_torch=True)
A @ A
if settings() != start:
    changed.append(settings())

# at the same time as torch's and NumPy's matmuls, in other threads
stop = threading.Event()


def loop(f):
    while not stop.is_set():
        f()
        time.sleep(0.002)           # (leave the cores to klkit now and then)


others = [threading.Thread(target=loop, args=(f,), name=n, daemon=True)
          for n, f in (("torch matmuls", lambda: A @ A), ("numpy matmuls", lambda: B @ B))]
ours = [threading.Thread(target=klkit_calls, args=(f"thread {i}", i == 1), name=f"klkit {i}",
                         daemon=True) for i in range(2)]
for t in others + ours:
    t.start()
hung = join_all(ours, float(sys.argv[2]))
stop.set()
hung += join_all(others, 10)
if settings() != start:
    changed.append(settings())

# threadpoolctl's limit
with threadpoolctl.threadpool_limits(1):
    inside = settings()
    klkit_calls("threadpool_limits(1)")
    A @ A
    B @ B
after = settings()
report(problems=problems[:20], n_problems=len(problems), hung=hung, start=start, changed=changed,
       inside=inside, after=after, klkit_runtime=klkit_openmp_runtime())
if hung:
    os._exit(0)
"""


@pytest.mark.openmp
def test_beside_torch_and_blas_pools_and_threadpoolctl(cases_file):
    pytest.importorskip("torch")
    pytest.importorskip("threadpoolctl")
    r = run_child(POOLS_CODE, cases_file, 60, f"{tag(SMALL)},{tag(WIDE)}", timeout=100)
    assert not r["hung"], f"threads still running after 60 s (deadlock?): {r['hung']}"
    assert r["n_problems"] == 0, r["problems"]
    start, inside, after = r["start"], r["inside"], r["after"]
    # klkit's calls leave the other pools' counts alone
    assert r["changed"] == [], (start, r["changed"])
    # threadpool_info lists the OpenMP runtime klkit calls (torch's libgomp
    # when torch was imported first: klkit's kernels bind to the libgomp.so.1
    # already loaded) and NumPy's BLAS
    assert f"openmp:{r['klkit_runtime']}" in start, (r["klkit_runtime"], start)
    assert any(k.startswith("blas:") for k in start), start
    # threadpool_limits(1): every pool, klkit's and torch's counts at 1 ...
    assert set(inside) == set(start), (start, inside)
    assert all(v == 1 for v in inside.values()), inside
    # ... and restored after
    assert after == start, (start, after)


# --------------------------------------------------------------------------
# 3. no growth of the resident set over 10^4 calls of every function
# --------------------------------------------------------------------------

LEAK_CODE = """
import ctypes
import gc

import klkit as kk

data = load()
N, WARM = data["calls"], data["warm"]
if data["torch"]:
    import torch

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss():
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]


try:                                # glibc >= 2.33
    _mallinfo2 = ctypes.CDLL(None).mallinfo2
    _mallinfo2.restype = Mallinfo2
except AttributeError:
    _mallinfo2 = None


def heap():
    \"\"\"Bytes of the C heap in use (malloc's, mmapped blocks included), or None.\"\"\"
    if _mallinfo2 is None:
        return None
    gc.collect()
    m = _mallinfo2()
    return m.uordblks + m.hblkhd


# every function's variants: (arguments, raises ValueError), NumPy and torch
variants = {}
for name, kw, raises in data["variants"]:
    variants.setdefault(name, []).append((kw, raises))
    if data["torch"]:
        tkw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        variants[name].append((tkw, raises))
table = [(name, getattr(kk, name), vs) for name, vs in variants.items()]
arrays = [v for vs in variants.values() for kw, _ in vs for v in kw.values()
          if not isinstance(v, (str, int, float, bool, type(None)))]
problems = []


def refcounts():
    gc.collect()
    return [sys.getrefcount(a) for a in arrays]


def run(lo, hi):
    for i in range(lo, hi):
        for name, f, vs in table:
            kw, raises = vs[i % len(vs)]
            if not raises:
                f(**kw)
            else:
                try:
                    f(**kw)
                except ValueError:
                    pass
                else:
                    problems.append(f"{name}: no ValueError for {sorted(kw)}")


run(0, WARM)
refs = refcounts()
marks, heaps = [rss()], [heap()]
run(WARM, (WARM + N) // 2)
marks.append(rss())
heaps.append(heap())
run((WARM + N) // 2, N)
marks.append(rss())
heaps.append(heap())
refs_changed = sum(a != b for a, b in zip(refcounts(), refs))
report(rss=marks, heap=heaps, problems=sorted(set(problems)), refs_changed=refs_changed,
       functions=len(table), variants={n: len(vs) for n, _, vs in table})
"""

#: the bounds on the growth of the resident set and of the C heap in use
#: (glibc's mallinfo2: the kernels' and NumPy's buffers) after the warm-up
#: calls.  Measured here: at most +0.14 MiB and +0.5 KiB; keeping every
#: result of the measured calls grows them by ~80 MiB and ~53 MiB, keeping
#: only segment_sum's (~110 bytes a call) by ~1.4 MiB and ~1 MiB, a C
#: malloc(64) per failing kl_div call by 0 and ~280 KiB.
RSS_BOUND = 2 * MiB
HEAP_BOUND = MiB // 4


def leak_scenario(tmp_path, use_torch, calls_per_function=10_000, warm=1_000):
    """The pickle for LEAK_CODE: every public function's small calls and
    calls that raise ValueError."""
    rows = []
    for name in NAMES:
        rows += [(name, kw, False) for _, kw in calls(name, np.float32, rows=8, n=64)]
        rows += [(name, kw, True) for kw in error_calls(name)]
    path = tmp_path / "leak.pkl"
    with open(path, "wb") as f:
        pickle.dump({"variants": rows, "torch": use_torch, "calls": calls_per_function,
                     "warm": warm}, f, pickle.HIGHEST_PROTOCOL)
    return path


def test_error_calls_raise_value_error():
    """The error paths of the leak test: one or more for every function."""
    import klkit as kk

    for name in FUNCTIONS:
        assert error_calls(name), name
        for kw in error_calls(name):
            with pytest.raises(ValueError):
                getattr(kk, name)(**kw)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.skipif("address" in SANITIZED, reason="AddressSanitizer keeps freed memory in "
                    "quarantine (RSS grows by design); it checks for leaks itself")
def test_repeated_calls_do_not_grow_rss(tmp_path):
    """10^4 calls of every public function (1000 of them warm-up), cycling
    through its typical calls on 8 x 64 inputs and calls that raise
    ValueError, with NumPy arrays and, where torch is installed, torch
    tensors: after the warm-up, the resident set grows less than RSS_BOUND,
    the C heap in use less than HEAP_BOUND, and no input gains a
    reference."""
    use_torch = _have_torch()
    r = run_child(LEAK_CODE, leak_scenario(tmp_path, use_torch), timeout=150)
    assert r["functions"] == len(FUNCTIONS)
    assert r["problems"] == [], r["problems"]
    assert r["refs_changed"] == 0, "inputs gained references: a reference leak"
    r0, r1, r2 = r["rss"]
    assert r2 - r0 < RSS_BOUND, (f"RSS grew {(r2 - r0) / MiB:.2f} MiB over the calls after the "
                                 f"warm-up (halfway: {(r1 - r0) / MiB:.2f} MiB)")
    h0, h1, h2 = r["heap"]
    if h0 is not None:                                  # glibc
        assert h2 - h0 < HEAP_BOUND, (f"the C heap in use grew {(h2 - h0) / 1024:.0f} KiB over the "
                                      f"calls after the warm-up (halfway: {(h1 - h0) / 1024:.0f} KiB)")


# --------------------------------------------------------------------------
# 4. fork after multi-threaded kernels
# --------------------------------------------------------------------------

FORK_CODE = """
import multiprocessing as mp

import klkit as kk

cases = [c for c in load() if c[0].endswith(sys.argv[2])]


def differ(expected):
    got = compute(cases)
    return sorted(k for k in expected if got[k] != expected[k])


kk.set_num_threads(1)
expected = compute(cases)
kk.set_num_threads(2)
parent_before = differ(expected)         # the parent's OpenMP pool runs (2 threads) last


def child(conn, plan):
    for n in plan:
        kk.set_num_threads(n)
        conn.send({"threads": n, "count": kk.get_num_threads(), "differ": differ(expected)})
    conn.close()


ctx = mp.get_context("fork")
plans = {"1": [1], "2": [2], "1,2": [1, 2]}
procs = {}
for label, plan in plans.items():        # all at once: one deadline for all
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child, args=(w, plan), daemon=True)
    p.start()
    w.close()
    procs[label] = (p, r)
t0 = time.monotonic()
children = {}
for label, (p, r) in procs.items():
    # the children that run 2 threads get FORK_WAIT_S, the other one longer
    deadline = t0 + (float(sys.argv[3]) if "2" in label else 60.0)
    got = []
    while len(got) < len(plans[label]) and r.poll(max(0.0, deadline - time.monotonic())):
        try:
            got.append(r.recv())
        except EOFError:
            break
    p.join(max(0.0, deadline - time.monotonic()))
    hung = p.is_alive()
    if hung:
        p.kill()
        p.join()
    children[label] = {"got": got, "hung": hung, "exitcode": p.exitcode}
report(parent_before=parent_before, parent_after=differ(expected), children=children,
       n_cases=len(cases))
"""

#: seconds a forked child asked for 2 threads may take for its calls before
#: it counts as hung (it needs well under 1 s)
FORK_WAIT_S = 4


@pytest.fixture(scope="module")
def fork_outcome(cases_file):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    r = run_child(FORK_CODE, cases_file, tag(WIDE), FORK_WAIT_S, timeout=90)
    assert r["n_cases"] >= len(FUNCTIONS)
    assert r["parent_before"] == [] and r["parent_after"] == [], r
    return r["children"]


def _check_child(child, plan):
    """The results the child sent for each thread count of the plan: the
    parent's bits, computed on one thread (klkit's count in a forked child)."""
    assert [g["threads"] for g in child["got"]] == plan[:len(child["got"])]
    for g in child["got"]:
        assert g["count"] == 1, g
        assert g["differ"] == [], f"{g['threads']} thread(s) in the forked child: bits differ"


@pytest.mark.parametrize("label", ["1", "2", "1,2"])
def test_fork_child_runs_and_gives_the_parents_bits(fork_outcome, label):
    """After the parent ran kernels on 2 threads, a forked child asked for 1
    or 2 threads neither hangs (GNU libgomp cannot start its pool again
    after fork: klkit's pthread_atfork handler keeps a forked child on one
    thread) nor changes a bit."""
    child = fork_outcome[label]
    plan = [int(n) for n in label.split(",")]
    assert not child["hung"], f"the forked child hung (plan {label})"
    assert child["exitcode"] == 0 and len(child["got"]) == len(plan), child
    _check_child(child, plan)
