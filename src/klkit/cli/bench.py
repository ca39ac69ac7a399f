"""klkit bench: a quick speed table of the installed package on this machine.

For a handful of cases, the median time of klkit, of the best NumPy recipe,
and of torch and scipy when they are installed, each as a multiple of a
bandwidth floor: one read-only pass over the same input bytes
(np.max(x, axis=-1) over every input; np.sum for the segment cases).  1.0x
is as fast as reading the input once; lower is better, and threaded code
can go below 1.0x (NumPy reads with one thread).

Each time is the median of 5 calls after one warm-up (3 for calls slower
than 2 s), in 5 interleaved rounds of floor, every implementation, floor,
so that a burst of load slows all of a round alike.  klkit, torch and
the BLAS / OpenMP pools (through threadpoolctl, when installed) run on
--threads threads.  A sample of every result is checked against the NumPy
recipe.  The full run takes well under a minute on two cores; run it on an
idle machine.  Exit status 1 if klkit fails or disagrees with the recipe.
"""
import argparse
import json
import os
import platform
import sys
import textwrap
import time
from dataclasses import dataclass

from . import CliError

#: columns, in order (a competitor that is not installed shows "-")
IMPLS = ("klkit", "numpy", "torch", "scipy")
SEGMENT_CASES = ("seg_sum", "seq_kl")


@dataclass
class Case:
    key: str
    label: str
    func: str        # klkit._benchmarks: a BUILDERS key, or a segment case
    shape: tuple     # rows x classes; segment cases: (tokens, sequences)
    quick: tuple     # --quick: a smoke test, not a measurement
    dtype: str = "float32"


CASES = [
    Case("lse_f32", "logsumexp rows", "logsumexp", (1024, 16384), (64, 4096)),
    Case("lsm", "log_softmax rows", "log_softmax", (1024, 16384), (64, 4096)),
    Case("kl", "kl_div rows (logits)", "kl_div", (512, 16384), (32, 4096)),
    Case("tok", "token_logprobs", "token_logprobs", (1024, 16384), (64, 4096)),
    Case("seg_sum", "segment_sum packed", "seg_sum", (10**7, 20_000), (10**5, 200)),
    Case("seq_kl", "seq_kl k3 packed", "seq_kl", (10**7, 20_000), (10**5, 200)),
]


def add_parser(sub, name):
    p = sub.add_parser(name, help="a quick speed table of the installed package",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads for klkit, torch and BLAS (default: klkit's current count)")
    p.add_argument("--quick", action="store_true",
                   help="tiny inputs: checks that everything runs, the times mean little")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------

def _shape_text(case, shape):
    if case.func in SEGMENT_CASES:
        inputs = "2 x " if case.func == "seq_kl" else ""
        return f"{inputs}{shape[0]:,} tokens, {shape[1]:,} seqs"
    return "x".join(map(str, shape))


def measure_case(case, quick):
    """Time `case`; a dict of its results (times in ms, multiples of the floor)."""
    from .. import _benchmarks as B

    shape = case.quick if quick else case.shape
    if case.func in SEGMENT_CASES:
        inputs = B.make_packed(*shape, dtype=case.dtype)
        impls = B.segment_implementations(case.func, inputs)
        floors, floor_name, stride = [impls.pop("floor")], "np.sum", 1
    else:
        inputs = [B.make_input(shape, case.dtype, role)
                  for role in B.ROLES.get(case.func, ("p",))]
        impls = B.implementations(case.func, inputs)
        floors, floor_name = [B.floor_fn(x) for x in inputs], "np.max"
        stride = max(1, shape[0] // 64)
    res = B.time_case(impls, floors, IMPLS, stride_rows=stride)
    ref = res["samples"].get("numpy")
    disagree = [] if ref is None else [
        name for name, s in res["samples"].items()
        if name != "numpy" and not B.agrees(s, ref, case.dtype)]
    floor = res["floor"]
    return dict(key=case.key, label=case.label, shape=list(shape),
                input=_shape_text(case, shape), dtype=case.dtype, floor=floor_name,
                floor_ms=floor * 1e3,
                ms={k: t * 1e3 for k, t in res["times"].items()},
                multiple={k: t / floor for k, t in res["times"].items()},
                disagrees_with_numpy=disagree,
                errors={k: f"{type(e).__name__}: {e}" for k, e in res["errors"].items()})


def machine(threads, pools):
    """The machine and software the table was measured on."""
    import numpy as np

    import klkit as kk
    from .. import _benchmarks as B

    info = kk._kernels.build_info()
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return dict(
        cpu=B.cpu_model(), logical_cores=os.cpu_count(),
        code_path=info["isa"], code_paths_built=info["isas_built"],
        openmp=bool(info["openmp"]), compiler=info["compiler"],
        threads=threads, thread_pools=pools, load_average=load,
        klkit=kk.__version__, python=platform.python_version(), numpy=np.__version__,
        scipy=B.scipy.__version__ if B.scipy is not None else None,
        torch=B.torch.__version__ if B.torch is not None else None)


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------

HEADERS = ["case", "input", "dtype", "floor", "floor ms", "klkit ms", *IMPLS]


def _x(v):
    return "-" if v is None else f"{v:.2f}x"


def table_rows(rows):
    out = []
    for r in rows:
        m = r["multiple"]
        out.append([r["label"], r["input"], r["dtype"], r["floor"], f"{r['floor_ms']:.2f}",
                    f"{r['ms']['klkit']:.2f}" if "klkit" in r["ms"] else "-",
                    *[_x(m.get(k)) for k in IMPLS]])
    return out


def header_lines(mach, mode, elapsed):
    cores = mach["logical_cores"]
    lines = [
        f"klkit {mach['klkit']} speed, as multiples of a read of the input (lower is better)",
        f"CPU: {mach['cpu']}, {cores} logical core{'s' if cores != 1 else ''}; "
        f"klkit code path in use: {mach['code_path']} (built: {mach['code_paths_built']}; "
        f"{mach['compiler']}, OpenMP {'yes' if mach['openmp'] else 'no'})",
        f"threads: {mach['threads']} (klkit, torch; {'; '.join(mach['thread_pools'])}); "
        "numpy reads with one thread",
        f"python {mach['python']}, numpy {mach['numpy']}, "
        f"scipy {mach['scipy'] or 'not installed'}, torch {mach['torch'] or 'not installed'}",
        ("--quick: tiny inputs, a smoke test (the times mean little)" if mode == "quick"
         else "full size") + f"; measured in {elapsed:.0f} s",
    ]
    if mach["load_average"] is not None and mach["load_average"] > 0.5:
        lines.append(f"warning: load average {mach['load_average']:.2f} at the start; "
                     "the machine is busy and the times are noisy")
    return lines


def note_lines(rows, width=100):
    notes = [
        "klkit, numpy, torch, scipy: median time / the floor's median time.  floor: one pass "
        "over the same input bytes (np.max(x, axis=-1), summed over both inputs of kl_div; "
        "np.sum for the segment cases).",
        "numpy: the best NumPy recipe (max-shift, in-place on ~1 MiB row blocks; segments: a "
        "float64 cumsum differenced at the offsets); torch: CPU functions on zero-copy views; "
        "scipy: scipy.special or a scipy recipe; '-': not installed or no such function.",
    ]
    bad = [f"{r['label']}: {name} differs from the numpy recipe"
           for r in rows for name in r["disagrees_with_numpy"]]
    bad += [f"{r['label']}: {name} failed ({err})" for r in rows
            for name, err in r["errors"].items()]
    notes += [f"WARNING: {b}" for b in bad] or ["Every result agrees with the numpy recipe."]
    return [textwrap.fill(n, width, initial_indent="- ", subsequent_indent="  ") for n in notes]


def plain_table(headers, rows):
    """Columns padded to their widest cell; text left-aligned, numbers right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    right = [i >= 4 for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.rjust(w) if rt else c.ljust(w)
                         for c, w, rt in zip(cells, widths, right)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])]
                     + [line(r) for r in rows])


def _rich_console():
    """A rich Console when stdout is a terminal and rich is installed."""
    if not sys.stdout.isatty():
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console()


def print_table(result):
    rows = table_rows(result["cases"])
    head = header_lines(result["machine"], result["mode"], result["elapsed_s"])
    notes = note_lines(result["cases"])
    console = _rich_console()
    if console is None:
        print("\n".join(head))
        print()
        print(plain_table(HEADERS, rows))
        print()
        print("\n".join(notes))
        return
    from rich.table import Table

    table = Table()
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="right" if i >= 4 else "left",
                         style="bold" if h == "klkit" else None)
    for r in rows:
        table.add_row(*r)
    console.print(head[0], style="bold", highlight=False, markup=False)
    console.print("\n".join(head[1:]), highlight=False, markup=False)
    console.print(table)
    console.print("\n".join(notes), highlight=False, markup=False)


# --------------------------------------------------------------------------

def run(args):
    import klkit as kk
    from .. import _benchmarks as B

    threads = kk.get_num_threads() if args.threads is None else args.threads
    if threads < 1:
        raise CliError(f"--threads must be at least 1, got {threads}")
    progress = sys.stderr.isatty()
    B.load_optional()
    pools, restore = B.limit_threads(threads)
    t0 = time.perf_counter()
    rows = []
    try:
        for i, case in enumerate(CASES, 1):
            if progress:
                shape = case.quick if args.quick else case.shape
                print(f"[{i}/{len(CASES)}] {case.label}, {_shape_text(case, shape)}",
                      file=sys.stderr, flush=True)
            rows.append(measure_case(case, args.quick))
    finally:
        restore()
    result = dict(mode="quick" if args.quick else "full",
                  elapsed_s=time.perf_counter() - t0, machine=machine(threads, pools),
                  cases=rows)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print_table(result)
    failed = any("klkit" in r["disagrees_with_numpy"] or "klkit" in r["errors"] for r in rows)
    return 1 if failed else 0
