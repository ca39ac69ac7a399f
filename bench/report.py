#!/usr/bin/env python
"""Ratio table: klkit vs scipy / torch / numpy, in multiples of a bandwidth floor.

    python bench/report.py [--quick] [--threads N] [--repeats R] [--only KEYS] [--strict]
    python bench/report.py --markdown [--out docs/BENCHMARKS.md] [--png docs/benchmarks.png]
                           [--quick] [--threads N] [--only KEYS]

For every case the script measures, in one run and on the same input arrays,
the median wall time (time.perf_counter, one warm-up call, median of R >= 5
repeats, 3 for calls slower than --slow seconds; R interleaved rounds of
floor, every implementation, floor) of

    floor  np.max(x, axis=-1) over every input array (summed for two-input
           functions): one read-only pass over the input bytes, i.e. the
           memory-bandwidth floor a streaming kernel cannot beat by much;
    klkit  the klkit function;
    scipy  scipy.special / scipy.stats / scipy.spatial (or the plain scipy
           recipe where scipy has no such function);
    torch  the torch CPU function on torch.from_numpy views (no timed copy);
    numpy  the best NumPy recipe found: max-shift, in-place ufuncs on row
           blocks of ~1 MiB so temporaries stay in cache (about 3x faster
           than the textbook `np.log(np.exp(x - m).sum(-1)) + m`).

(the segment cases seg_sum, seq_kl, seg_padded have their own table: floor
np.sum over every input, competitors np.add.reduceat, torch.segment_reduce
and a NumPy recipe; see bench_segments.py)
and prints each as a MULTIPLE of the floor (1.0x = as fast as reading the
input once with np.max), the speed-up of klkit over each competitor, and a
PASS/MISS column of klkit's multiple against the issue's target.  The
multiple is also measured a second way, as the median ratio of 11
interleaved (floor, klkit) pairs of calls ("klkit, paired"), a cross-check
against this shared machine's drift between the medians (both estimates
move with the load of the moment; the verdict keeps the issue's
definition, the ratio of medians).

Threads: klkit (kk.set_num_threads), torch (torch.set_num_threads) and any
BLAS/OpenMP pool (threadpoolctl, if installed) are set to N (default 2).
NumPy ufuncs and np.max are single-threaded whatever N is, so the floor is a
single-thread read and multi-threaded code can go below 1.0x.

With --markdown the script writes a user-facing page instead of printing
the tables (default docs/BENCHMARKS.md, --out) and a bar chart of the same
multiples (default benchmarks.png beside it, --png; matplotlib): the
machine and software detected at run time, the method, and one table per
family with klkit's speed-up over the fastest other implementation, without
the targets or the paired cross-check (render_markdown and plot_chart take
the results of collect_results, so they can be run on made-up results).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

try:
    import klkit as kk
except ImportError as exc:  # the whole point is to time klkit: stop here
    sys.exit(
        f"bench/report.py: cannot import klkit ({exc}).\n"
        "Build and install the package first (from the repository root), then rerun."
    )

import scipy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _recipes as R  # noqa: E402  (shared with the pytest-benchmark suites)
from _recipes import ml_dtypes, torch  # noqa: E402
from klkit._benchmarks import agrees, cpu_model, limit_threads, time_case  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# machine
# --------------------------------------------------------------------------

def cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------
# cases (the targets; shapes for the full run and for --quick).  The
# issue relaxes its targets to <= 2.5x on machines with AVX2 but no AVX-512:
# the targets below that carry the pair (with AVX-512, without).
# --------------------------------------------------------------------------

@dataclass
class Case:
    key: str                        # for --only
    label: str
    func: str                       # key of R.BUILDERS
    shape: tuple
    quick: tuple                    # 4-8x fewer elements
    dtype: str                      # float32 | float64 | bfloat16
    roles: tuple = ("p",)           # input arrays (one or two)
    target: object = None           # None | float | (with AVX-512, without)
    note: str = ""


BIG = (4096, 32768)
PAIR = (2048, 32768)

CASES = [
    Case("lse_f32", "logsumexp rows", "logsumexp", BIG, (1024, 16384), "float32",
         target=(1.5, 2.5)),
    Case("lsm_out", "log_softmax rows, out=", "log_softmax_out", BIG, (1024, 16384), "float32",
         target=3.0, note="scipy has no out= (see the next row); torch uses out= too"),
    Case("lsm", "log_softmax rows", "log_softmax", BIG, (1024, 16384), "float32",
         target=5.5),
    Case("lse_f64", "logsumexp rows", "logsumexp", (1024, 4096), (256, 4096), "float64",
         target=(2.0, 2.5)),
    Case("lse_1d", "logsumexp 1-D", "logsumexp", (10**7,), (2 * 10**6,), "float64",
         target=(2.0, 2.5)),
    Case("kl", "kl_div rows (logits)", "kl_div", PAIR, (512, 16384), "float32",
         roles=("p", "q"), target=(1.6, 2.5)),
    Case("ce", "cross_entropy rows (logits)", "cross_entropy", PAIR, (512, 16384), "float32",
         roles=("p", "q")),
    Case("js", "js_div rows (logits)", "js_div", PAIR, (512, 16384), "float32",
         roles=("p", "q"), note="scipy: jensenshannon(softmax p, softmax q)**2"),
    Case("softmax", "softmax rows", "softmax", PAIR, (512, 16384), "float32"),
    Case("entropy", "entropy rows (logits)", "entropy", PAIR, (512, 16384), "float32",
         note="scipy: scipy.stats.entropy(softmax(x))"),
    Case("tok", "token_logprobs", "token_logprobs", BIG, (1024, 16384), "float32",
         roles=("p", "targets"), target=1.5,
         note="scipy: log_softmax then index; torch: -F.cross_entropy(reduction='none')"),
    Case("tok_shift", "token_logprobs, shifted slice logits[:, :-1]", "token_logprobs_shifted",
         (4, 1025, 32768), (2, 513, 16384), "float32", roles=("p", "targets"),
         note="the [B, T-1, V] view of [B, T, V] logits against targets[:, 1:]; torch and "
              "numpy reshape it to rows (a copy, as pipelines do); floor: np.max over all "
              "T positions (1/T more bytes than the slice)"),
    Case("tok_ent", "token_logprobs + entropy", "token_logprobs_entropy", BIG, (1024, 16384),
         "float32", roles=("p", "targets"), note="torch: log_softmax, gather, -(p log p).sum"),
    Case("sce", "softmax_cross_entropy (mean)", "softmax_cross_entropy", BIG, (1024, 16384),
         "float32", roles=("p", "targets"), note="torch: F.cross_entropy"),
    Case("tok_bf16", "token_logprobs", "token_logprobs", BIG, (1024, 16384), "bfloat16",
         roles=("p", "targets"), note="floor: np.max over the bf16 bytes (int16 view)"),
    Case("lse_bf16", "logsumexp rows", "logsumexp", PAIR, (512, 16384), "bfloat16",
         note="floor: np.max on an int16 view of the same bf16 bytes "
              "(numpy's bf16 max is a slow scalar loop)"),
]


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

def paired_multiple(fn, floor_fns):
    """klkit's multiple of the floor as the median of PAIRS interleaved
    (floor, klkit) pairs of calls, with its range: a cross-check of the
    table's ratio of medians, which the speed of this shared machine can
    drift between."""
    ratios = []
    for _ in range(PAIRS):
        t0 = time.perf_counter()
        for f in floor_fns:
            f()
        t1 = time.perf_counter()
        r = fn()
        t2 = time.perf_counter()
        del r   # freed outside the timed span
        ratios.append((t2 - t1) / (t1 - t0))
    return statistics.median(ratios), min(ratios), max(ratios)


# --------------------------------------------------------------------------
# segment cases (segment_sum, seq_kl, padded): their own table, because the
# floor (np.sum over every input) and the competitors differ from the dense
# cases; inputs and implementations are in bench_segments.py
# --------------------------------------------------------------------------

@dataclass
class SegCase:
    key: str                        # for --only
    label: str
    shape: str
    target: float                   # multiple of the np.sum floor
    note: str = ""


SEG_CASES = [
    SegCase("seg_sum", "segment_sum packed", "1e7 f32, 20000 seqs", 1.2,
            "float64 accumulation; np.add.reduceat accumulates in float32"),
    SegCase("seq_kl", "seq_kl k3 packed", "2 x 1e7 f32, 20000 seqs", 1.5,
            "competitors compute exp(r) - r - 1 first (a 1e7 temporary), then reduce"),
    SegCase("seg_padded", "segment_sum padded + mask", "2048x4096 f32 + bool", 1.5,
            "numpy: np.where(mask, v, 0).sum(-1); torch: (v * mask).sum(-1)"),
]
SEG_IMPLS = ("klkit", "reduceat", "torch", "numpy")


def seg_input_text(key, inputs):
    """(shape text, dtype name) of a segment case's measured inputs."""
    if key == "seg_padded":
        v = inputs[0]
        return f"{'x'.join(map(str, v.shape))} + bool mask", str(v.dtype)
    x, off = inputs[0], inputs[-1]
    text = f"{x.size:,} tokens, {off.size - 1:,} seqs"
    return ("2 x " + text if key == "seq_kl" else text), str(x.dtype)


def measure_segment_cases(seg_cases, args, repeats):
    """Time the segment cases (klkit and torch on args.threads threads).
    Returns one row per case: case, ms {impl: median ms}, floor (ms), bad
    [problems], input and dtype (the measured inputs, as text)."""
    import bench_segments as S

    N = args.threads
    kk.set_num_threads(N)
    if torch is not None:
        torch.set_num_threads(N)
    rows = []
    for c in seg_cases:
        log(f"\n== {c.key}: {c.label} ({c.shape}{', quick' if args.quick else ''})")
        inputs = S.make_inputs(c.key, quick=args.quick)
        fns = S.implementations(c.key, inputs)
        res = time_case(fns, [fns["floor"]], SEG_IMPLS, repeats, args.slow, 1, log)
        row = dict(case=c, ms={k: t * 1e3 for k, t in res["times"].items()},
                   bad=[f"{k} raised {type(e).__name__}" for k, e in res["errors"].items()])
        row["input"], row["dtype"] = seg_input_text(c.key, inputs)
        row["errors"] = {k: f"{type(e).__name__}: {e}" for k, e in res["errors"].items()}
        samples = res["samples"]
        row["floor"] = res["floor"] * 1e3
        log(f"   floor    {row['floor']:9.2f} ms (np.sum over the inputs, interleaved)")
        ref = samples.get("numpy")
        if ref is not None:
            for name, smp in samples.items():
                if name != "numpy" and not agrees(smp, ref, "float32"):
                    row["bad"].append(f"{name} != numpy")
        rows.append(row)
        inputs = fns = samples = None
        gc.collect()
    return rows


def run_segment_cases(seg_cases, args, repeats):
    """Time the segment cases; print their table.  Returns 1 if --strict and
    a target is missed."""
    N = args.threads
    try:
        load1 = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load1 = "?"
    rows = measure_segment_cases(seg_cases, args, repeats)

    print("\n## klkit segments: multiples of an np.sum pass over the inputs (lower is better)\n")
    print(f"- threads N = {N} (klkit, torch); numpy single-threaded; load average at start "
          f"{load1}; median of {repeats} repeats after 1 warm-up\n")
    hdr = ["case", "input", "floor ms", "klkit ms", "klkit", "np.add.reduceat",
           "torch.segment_reduce", "numpy recipe", "target", "result"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join(["---"] * 2 + ["---:"] * 7 + [":---:"]) + "|")
    missed = False
    for row in rows:
        c, ms, fl = row["case"], row["ms"], row["floor"]
        mult = {k: v / fl for k, v in ms.items()}
        kt = mult.get("klkit")
        if kt is None:
            result = "; ".join(row["bad"]) or "no klkit timing"
            missed = True
        else:
            ok = kt <= c.target
            missed = missed or not ok
            result = ("PASS" if ok else "MISS") + (f" ({'; '.join(row['bad'])})" if row["bad"] else "")
        cells = [c.label, c.shape, f"{fl:.2f}", f"{ms['klkit']:.2f}" if "klkit" in ms else "-",
                 fmt_x(kt), fmt_x(mult.get("reduceat")), fmt_x(mult.get("torch")),
                 fmt_x(mult.get("numpy")), f"<= {c.target:g}x", result]
        print("| " + " | ".join(cells) + " |")
    print()
    for c in seg_cases:
        if c.note:
            print(f"- {c.label}: {c.note}.")
    print("- numpy recipe: float64 cumsum differenced at the offsets (padded: np.where + sum); "
          "torch: torch.segment_reduce(x, 'sum', lengths=...) (padded: (v * mask).sum(-1)).")
    return 1 if (args.strict and missed) else 0


def measure_dense_cases(cases, args, repeats, avx512, paired=True):
    """Time the dense cases (the thread pools already set).  Returns one row
    per case: case, shape, target (for this machine), mult {impl: multiple
    of the floor}, ms {impl: median ms}, n {impl: timed calls}, floor
    (seconds), status (why klkit was not timed, or ""), bad [problems] and,
    with `paired`, paired (median, min, max) of klkit's paired multiples."""
    # inputs: which (shape, dtype, role) each case needs, freed after last use
    def key_of(c, role):
        return (c.quick if args.quick else c.shape, c.dtype, role)

    needed = [[key_of(c, r) for r in c.roles] for c in cases]
    store = {}
    rows = []
    for ci, c in enumerate(cases):
        shape = c.quick if args.quick else c.shape
        tgt = c.target
        if isinstance(tgt, tuple):
            tgt = tgt[0] if avx512 else tgt[1]
        row = dict(case=c, shape=shape, target=tgt, mult={}, ms={}, n={}, status="", bad=[])
        log(f"\n== {c.key}: {c.label} {list(shape)} {c.dtype}")
        if not R.klkit_has(c.func):
            row["status"] = f"klkit has no {R.KLKIT_NAME.get(c.func, c.func)}"
            log("   " + row["status"] + "; skipped")
            rows.append(row)
            continue
        for k in needed[ci]:
            if k not in store:
                t0 = time.perf_counter()
                store[k] = R.make_input(*k)
                log(f"   input {k[2]}: {store[k].nbytes / 2**20:.0f} MiB "
                    f"(made in {time.perf_counter() - t0:.1f} s)")
        xs = [store[k] for k in needed[ci]]
        out = None
        if c.func == "log_softmax_out":
            out = np.zeros(shape, R.acc_dtype(xs[0].dtype))  # touched: no page faults in timing
        stride_rows = max(1, shape[0] // 64) if len(shape) > 1 else 1

        # floor: np.max over each input, timed in the implementations' rounds
        # (its median, against drift), summed over the inputs
        impls = R.implementations(c.func, xs, out)
        res = time_case(impls, [R.floor_fn(x) for x in xs], IMPLS, repeats, args.slow,
                        stride_rows, log)
        row["ms"] = {k: t * 1e3 for k, t in res["times"].items()}
        row["n"] = res["counts"]
        row["bad"] += [f"{k} raised {type(e).__name__}" for k, e in res["errors"].items()]
        row["errors"] = {k: f"{type(e).__name__}: {e}" for k, e in res["errors"].items()}
        samples = res["samples"]
        floor = row["floor"] = res["floor"]
        if paired and "klkit" in impls and "klkit" in row["ms"]:
            row["paired"] = paired_multiple(impls["klkit"], [R.floor_fn(x) for x in xs])
            log(f"   klkit  {row['paired'][0]:7.2f}x floor in {PAIRS} interleaved pairs "
                f"({row['paired'][1]:.2f}-{row['paired'][2]:.2f})")
        log(f"   floor  {floor * 1e3:9.2f} ms (interleaved rounds)")
        for name, ms in row["ms"].items():
            row["mult"][name] = ms / 1e3 / floor
            log(f"   {name:6s} {row['mult'][name]:7.2f}x floor")
        ref = samples.get("numpy")
        if ref is not None:
            for name, s in samples.items():
                if name != "numpy" and not agrees(s, ref, c.dtype):
                    row["bad"].append(f"{name} != numpy")
                    log(f"   WARNING: {name} result disagrees with the numpy recipe")
        rows.append(row)

        # free what later cases do not need
        impls = xs = out = samples = None
        later = {k for ks in needed[ci + 1:] for k in ks}
        for k in list(store):
            if k not in later:
                del store[k]
        gc.collect()

    return rows


# --------------------------------------------------------------------------
# --markdown: a user-facing docs/BENCHMARKS.md and its chart, from the
# measured rows (collect_results -> write_markdown; render_markdown and
# plot_chart take the same plain-dict results, so a small run or made-up
# results can exercise them)
# --------------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (family, table title, implementations in column order)
FAMILIES = [
    ("dense", "Row functions: logsumexp, softmax, log_softmax",
     ("klkit", "numpy", "scipy", "torch")),
    ("divergence", "Divergences and entropy of logits",
     ("klkit", "numpy", "scipy", "torch")),
    ("tokens", "Token log-probabilities and losses",
     ("klkit", "numpy", "scipy", "torch")),
    ("segments", "Segmented reductions over packed or padded sequences",
     ("klkit", "numpy", "reduceat", "torch")),
    ("other", "Other functions", ("klkit", "numpy", "scipy", "torch")),
]
IMPL_LABEL = {"klkit": "klkit", "numpy": "numpy", "scipy": "scipy", "torch": "torch",
              "reduceat": "np.add.reduceat"}
IMPL_COLOR = {"klkit": "#d62728", "numpy": "#1f77b4", "scipy": "#2ca02c", "torch": "#ff7f0e",
              "reduceat": "#9467bd"}
FAMILY_INTRO = {
    "segments": "Floor: one `np.sum` pass over every input (values, both log-probability "
                "arrays, or values and mask). SciPy has no segmented reductions; "
                "`np.add.reduceat` stands in as a second NumPy way. numpy: a float64 "
                "cumulative sum differenced at the offsets (padded: "
                "`np.where(mask, v, 0).sum(-1)`); torch: `torch.segment_reduce` (padded: "
                "`(v * mask).sum(-1)`).",
}
#: the doc's note for a case where it differs from Case.note / SegCase.note
#: ("" drops the note)
MD_NOTES = {
    "seg_sum": "klkit and numpy accumulate in float64, np.add.reduceat in float32",
    "seq_kl": "the other implementations first compute exp(r) - r - 1 into a temporary as "
              "large as the input, then reduce",
    "seg_padded": "",
    "lsm_out": "klkit, torch and numpy write into a preallocated out= array; scipy has no "
               "out= argument",
}


def family_of(func):
    """The klkit module (dense, divergence, tokens, segments) that holds
    benchmark `func`'s function."""
    name = R.KLKIT_NAME.get(func, func)
    for fam in ("dense", "divergence", "tokens", "segments"):
        if name in getattr(getattr(kk, fam, None), "__all__", ()):
            return fam
    return "other"


def klkit_code_path():
    """(code path in use, code paths built) as klkit reports them
    (show_config's "in use:"), or ("unknown", "")."""
    try:
        info = kk._kernels.build_info()
        return str(info["isa"]), str(info.get("isas_built", ""))
    except (AttributeError, ImportError, KeyError, TypeError):
        # another klkit version: read the line that show_config prints
        import io
        import re

        buf = io.StringIO()
        try:
            kk.show_config(file=buf)
        except (AttributeError, ImportError, KeyError, TypeError):
            return "unknown", ""
        text = buf.getvalue()
        used = re.search(r"in use:\s*([\w.+-]+)", text)
        built = re.search(r"code paths built:\s*([^;\n]*)", text)
        return (used.group(1) if used else "unknown"), (built.group(1).strip() if built else "")


def loadavg():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info(args, argv, thread_notes):
    """The run's command and the machine, detected now."""
    import datetime
    import shlex

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    isa, built = klkit_code_path()
    cmd_args = list(sys.argv[1:] if argv is None else argv)
    return dict(
        command="python bench/report.py" + ("" if not cmd_args else " " + shlex.join(cmd_args)),
        quick=bool(args.quick), only=args.only, repeats=max(5, args.repeats), slow=args.slow,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=cpu_model(), cores=os.cpu_count(), usable_cores=usable,
        machine=platform.machine(), os=f"{platform.system()} {platform.release()}".strip(),
        code_path=isa, code_paths_built=built, threads=args.threads, thread_notes=thread_notes,
        versions={"klkit": getattr(kk, "__version__", "?"), "numpy": np.__version__,
                  "scipy": scipy.__version__,
                  "torch": torch.__version__ if torch is not None else None,
                  "python": platform.python_version()},
        load_start=loadavg(), load_end=None, seconds=None)


def _split_bad(bad):
    """(implementations whose result differs from the numpy recipe, those
    that raised) from a row's `bad` lines."""
    differs = [b.split(" != ")[0] for b in bad if " != " in b]
    failed = [b.split(" raised ")[0] for b in bad if " raised " in b]
    return differs, failed


def collect_results(dense_rows, seg_rows, meta):
    """Plain-dict results for render_markdown / plot_chart: meta, and one
    entry per measured case (family, key, op, shape, dtype, floor, floor_ms,
    x {implementation: multiple of the floor}, differs and failed
    [implementations], errors {implementation: message}, note)."""
    out = []
    for row in dense_rows:
        c = row["case"]
        if row["status"] or "floor" not in row:
            log(f"   {c.key}: not in the markdown ({row['status'] or 'no floor timing'})")
            continue
        differs, failed = _split_bad(row["bad"])
        out.append(dict(family=family_of(c.func), key=c.key, op=c.label,
                        shape="x".join(map(str, row["shape"])), dtype=c.dtype,
                        floor="np.max", floor_ms=row["floor"] * 1e3, x=dict(row["mult"]),
                        differs=differs, failed=failed, errors=row.get("errors", {}),
                        note=MD_NOTES.get(c.key, c.note)))
    for row in seg_rows:
        c = row["case"]
        differs, failed = _split_bad(row["bad"])
        out.append(dict(family="segments", key=c.key, op=c.label, shape=row["input"],
                        dtype=row["dtype"], floor="np.sum", floor_ms=row["floor"],
                        x={k: v / row["floor"] for k, v in row["ms"].items()},
                        differs=differs, failed=failed, errors=row.get("errors", {}),
                        note=MD_NOTES.get(c.key, c.note)))
    return dict(meta=meta, cases=out)


def families(results):
    """[(family, title, implementations, cases)] for the families measured."""
    return [(fam, title, impls, [c for c in results["cases"] if c["family"] == fam])
            for fam, title, impls in FAMILIES
            if any(c["family"] == fam for c in results["cases"])]


def _mult(v):
    return f"{v:.0f}x" if v >= 100 else f"{v:.1f}x" if v >= 10 else f"{v:.2f}x"


def speedup(case, impls):
    """(klkit's speed-up over the fastest other implementation, its name),
    or None without a klkit timing or another implementation."""
    x = case["x"]
    others = [(x[k], k) for k in impls if k != "klkit" and k in x]
    if "klkit" not in x or not others:
        return None
    best, name = min(others)
    return best / x["klkit"], name


def render_markdown(results, png_link=None):
    """docs/BENCHMARKS.md's text from collect_results' `results`; `png_link`:
    the chart's path relative to the markdown file (None: no chart)."""
    m = results["meta"]
    v = m["versions"]
    intro = ("How long klkit's functions take on a CPU next to NumPy, SciPy and PyTorch, "
             "each time given as a multiple of the time it takes to read the same input "
             "once (lower is better).")
    L = ["# klkit benchmarks", "", intro, ""]
    if m["quick"]:
        L += [("**Quick shapes:** this run used `--quick`, inputs 4-8x smaller than the "
               "full benchmark's, so fixed per-call costs weigh more than on large inputs."),
              ""]
    if m["only"]:
        L += [f"Only a subset of the cases was measured (`--only {m['only']}`).", ""]
    L += ["Produced from the repository root by", "", "```", m["command"], "```", ""]

    cores = f"{m['cores']} logical cores"
    if m["usable_cores"] and m["usable_cores"] != m["cores"]:
        cores += f", {m['usable_cores']} usable by this process"
    built = f" (built into this klkit: {m['code_paths_built']})" if m["code_paths_built"] else ""
    soft = ", ".join(f"{k} {v[k]}" if v.get(k) else f"{k} not installed"
                     for k in ("klkit", "numpy", "scipy", "torch"))
    load = "unknown"
    if m["load_start"] is not None:
        load = f"{m['load_start']:.2f} at the start"
        if m["load_end"] is not None:
            load += f", {m['load_end']:.2f} at the end"
        peak = max(m["load_start"], m["load_end"] or 0)
        if peak >= (m["usable_cores"] or m["cores"] or 1):
            load += (" — **the machine was overloaded (load at or above its core count): "
                     "multi-threaded timings in particular are not representative**")
        elif peak > 0.5:
            load += " (other work was running: expect some noise)"
    took = f"; the measurements took {m['seconds']:.0f} s" if m["seconds"] is not None else ""
    L += ["## Machine", "",
          f"- CPU: {m['cpu']} ({m['machine']}, {m['os']}), {cores}",
          f"- klkit code path: {m['code_path']}{built}",
          (f"- threads: {m['threads']} for klkit, torch and any BLAS / OpenMP pool; NumPy "
           "ufuncs, and so the read floor, run on one thread"),
          f"- software: {soft}, Python {v['python']}",
          f"- load average (1 min): {load}",
          f"- date: {m['date']}{took}",
          ""]

    method = (
        "Each case is measured in one run on the same input arrays: its read floor, the "
        "median time of one single-threaded `np.max(x, axis=-1)` pass over the input bytes "
        "(summed over both inputs of two-input functions; one `np.sum` pass over every "
        "input for the segment functions), is timed with the implementations in "
        f"{m['repeats']} interleaved rounds: each round calls the floor, every "
        "implementation once and the floor again, so that a burst of load on the machine "
        "slows every column of a round alike. "
        f"Each implementation's time is the median of its {m['repeats']} calls after one "
        f"warm-up call (3 for calls slower than {m['slow']:g} s), and each table cell is "
        "that median divided by the floor's median: 1.00x is as fast as reading the input once, "
        "lower is better, and multi-threaded code can go below 1x. "
        "The speed-up column is the fastest other implementation's time divided by "
        "klkit's (above 1x klkit is faster; below 1x the named implementation is), and "
        "bold marks the fastest cell of each row. "
        "Every implementation's result is checked against the NumPy recipe on a sample "
        "of rows.")
    impls_text = (
        "Implementations: **klkit**; **numpy**, the fastest NumPy recipe we know "
        "(max-shift, in-place ufuncs on ~1 MiB row blocks); **scipy**, scipy.special / "
        "scipy.stats / scipy.spatial (a plain SciPy recipe for KL and cross-entropy); "
        "**torch**, PyTorch on the CPU through zero-copy `torch.from_numpy` views; "
        "\"-\" where an implementation has no such function.")
    L += ["## Method", "", method, "", impls_text, ""]
    if png_link:
        alt = ("klkit, numpy, scipy and torch times as multiples of the read floor, "
               "per case (log scale)")
        L += [f"![{alt}]({png_link})", ""]

    for fam, title, impls, cases in families(results):
        L += [f"## {title}", ""]
        if fam in FAMILY_INTRO:
            L += [FAMILY_INTRO[fam], ""]
        hdr = ["op", "shape", "dtype", *(IMPL_LABEL[k] for k in impls),
               "klkit speed-up", "floor ms"]
        L += ["| " + " | ".join(hdr) + " |",
              "|" + "|".join(["---"] * 3 + ["---:"] * (len(impls) + 2)) + "|"]
        marks = failed = False
        for c in cases:
            x = c["x"]
            best = min((x[k] for k in impls if k in x), default=None)
            cells = [c["op"], c["shape"], c["dtype"]]
            for k in impls:
                if k in c["failed"]:
                    cells.append("error ‡")
                    failed = True
                elif k not in x:
                    cells.append("-")
                else:
                    s = _mult(x[k])
                    cells.append(f"**{s}**" if x[k] == best else s)
                    if k in c["differs"]:
                        cells[-1] += " †"
                        marks = True
            sp = speedup(c, impls)
            cells.append("-" if sp is None else f"{_mult(sp[0])} vs {IMPL_LABEL[sp[1]]}")
            cells.append(f"{c['floor_ms']:.2f}")
            L.append("| " + " | ".join(cells) + " |")
        L.append("")
        notes = [f"- *{c['op']}, {c['dtype']}* — {c['note'].replace('*', chr(92) + '*')}."
                 for c in cases if c["note"]]
        if marks:
            notes.append("- †: this result differs from the NumPy recipe's by more than "
                         "the dtype's tolerance.")
        if failed:
            for c in cases:
                for k in c["failed"]:
                    msg = " ".join(c.get("errors", {}).get(k, "an error").split())
                    msg = msg if len(msg) <= 140 else msg[:137] + "..."
                    notes.append(f"- ‡ *{c['op']}, {c['dtype']}* — {IMPL_LABEL.get(k, k)} "
                                 f"raised `{msg}`")
        if notes:
            L += notes + [""]
    return "\n".join(L).rstrip("\n") + "\n"


def plot_chart(results, path):
    """A horizontal grouped bar chart of `results` saved to `path` (PNG):
    one panel per family, one group per case, one bar per implementation,
    x = multiple of the read floor on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fams = families(results)
    vals = [v for c in results["cases"] for v in c["x"].values() if v > 0]
    lo = min(vals + [1.0]) / 1.6
    hi = max(vals + [1.0]) * 2.0
    bar, gap = 1.0, 0.8
    layout, heights = [], []
    for fam, title, impls, cases in fams:
        ys, groups, y = [], [], 0.0
        for c in cases:
            present = [k for k in impls if k in c["x"]]
            yb = [y + i * bar for i in range(len(present))]
            ys.append((c, present, yb))
            groups.append((y + (len(present) - 1) * bar / 2, f"{c['op']}\n{c['shape']} {c['dtype']}"))
            y += max(len(present), 1) * bar + gap
        layout.append((title, ys, groups, y - gap))
        heights.append(max(y - gap, 1.0) + 1.6)
    fig_h = 0.17 * sum(heights) + 1.3
    fig, axes = plt.subplots(len(fams), 1, figsize=(10, fig_h), sharex=True, squeeze=False,
                             gridspec_kw=dict(height_ratios=heights))
    used = []
    for ax, (title, ys, groups, ymax) in zip(axes[:, 0], layout):
        for c, present, yb in ys:
            for k, yy in zip(present, yb):
                v = c["x"][k]
                ax.barh(yy, v, height=bar * 0.85, color=IMPL_COLOR.get(k, "grey"),
                        edgecolor="none")
                ax.text(v * 1.04, yy, f"{v:.2f}" if v < 10 else f"{v:.1f}",
                        va="center", ha="left", fontsize=6.5, color="#333333")
                if k not in used:
                    used.append(k)
        ax.set_yticks([g[0] for g in groups], [g[1] for g in groups], fontsize=7.5)
        ax.set_ylim(ymax + bar * 0.7, -bar * 0.7)
        ax.axvline(1.0, color="black", lw=0.8, ls="--")
        ax.set_title(title, loc="left", fontsize=9.5, fontweight="bold")
        ax.grid(axis="x", which="major", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    ax = axes[-1, 0]
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    for a in axes[:, 0]:
        a.tick_params(axis="x", labelbottom=True, labelsize=7.5)
    ax.set_xlabel("time as a multiple of the read floor (one np.max / np.sum pass over the "
                  "input; dashed line = 1x); log scale, lower is better", fontsize=8)
    m = results["meta"]
    sub = (f"{m['cpu']}, {m['threads']} threads, klkit code path {m['code_path']}"
           + ("; quick shapes" if m["quick"] else ""))
    # title and legend in a fixed band of inches above the panels
    fig.suptitle(f"klkit benchmarks ({sub})", fontsize=10.5, y=1.0 - 0.1 / fig_h, va="top")
    order = [k for k in IMPL_COLOR if k in used]
    fig.legend([Patch(color=IMPL_COLOR[k]) for k in order], [IMPL_LABEL[k] for k in order],
               loc="upper center", ncol=len(order), fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.5, 1.0 - 0.42 / fig_h))
    fig.tight_layout(rect=(0, 0, 1, 1.0 - 0.62 / fig_h))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(results, out, png=None):
    """Write the chart to `png` (if given and matplotlib imports) and the
    markdown to `out`, linking the chart by its path relative to `out`."""
    link = None
    if png:
        os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
        try:
            plot_chart(results, png)
        except ImportError as exc:
            log(f"# no chart: {exc}")
        else:
            link = os.path.relpath(os.path.abspath(png), os.path.dirname(os.path.abspath(out)))
            link = link.replace(os.sep, "/")
            log(f"# wrote {png}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        fh.write(render_markdown(results, link))
    log(f"# wrote {out}")


def run_markdown(cases, seg_cases, args, repeats, argv):
    """--markdown: measure the selected cases (no targets, no paired
    cross-check) and write args.out and args.png."""
    if ml_dtypes is None:
        cases = [c for c in cases if c.dtype != "bfloat16"]
    flags = cpu_flags()
    avx512 = None if flags is None else ("avx512f" in flags)
    thread_notes, restore_threads = limit_threads(args.threads)
    meta = machine_info(args, argv, thread_notes)
    log(f"# {meta['command']}")
    log(f"# CPU: {meta['cpu']}, {meta['cores']} logical cores; klkit code path "
        f"{meta['code_path']}; threads {args.threads}; load average {meta['load_start']}")
    t0 = time.perf_counter()
    try:
        dense_rows = measure_dense_cases(cases, args, repeats, avx512, paired=False)
        seg_rows = measure_segment_cases(seg_cases, args, repeats) if seg_cases else []
    finally:
        restore_threads()
    meta["seconds"] = time.perf_counter() - t0
    meta["load_end"] = loadavg()
    results = collect_results(dense_rows, seg_rows, meta)
    out = args.out or os.path.join(REPO, "docs", "BENCHMARKS.md")
    png = args.png or os.path.join(os.path.dirname(os.path.abspath(out)), "benchmarks.png")
    write_markdown(results, out, png)
    log(f"# measured in {meta['seconds']:.0f} s")
    return 0


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

IMPLS = ("klkit", "scipy", "torch", "numpy")


def fmt_x(v):
    return "-" if v is None else f"{v:.2f}x"


def fmt_speed(v):
    return "-" if v is None else (f"{v:.1f}x" if v >= 10 else f"{v:.2f}x")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shapes 4-8x smaller (smoke run)")
    ap.add_argument("--threads", type=int, default=2, help="threads for klkit/torch/BLAS (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per call (>= 5; default 5)")
    ap.add_argument("--slow", type=float, default=2.0,
                    help="calls whose warm-up takes longer than this many seconds get 3 repeats")
    ap.add_argument("--only", default="", help="comma-separated case keys: "
                    + ",".join(c.key for c in CASES + SEG_CASES))
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--markdown", action="store_true",
                    help="write a user-facing benchmark page (no targets) and its chart "
                         "instead of printing the tables")
    ap.add_argument("--out", help="with --markdown: the markdown file "
                    "(default docs/BENCHMARKS.md in the repository)")
    ap.add_argument("--png", help="with --markdown: the chart (default benchmarks.png "
                    "beside --out)")
    args = ap.parse_args(argv)
    if (args.out or args.png) and not args.markdown:
        ap.error("--out and --png go with --markdown")
    repeats = max(5, args.repeats)
    N = args.threads

    cases = CASES
    if args.only:
        keys = {k.strip() for k in args.only.split(",") if k.strip()}
        bad = keys - {c.key for c in CASES} - {c.key for c in SEG_CASES}
        if bad:
            ap.error(f"unknown case key(s) {sorted(bad)}")
        cases = [c for c in CASES if c.key in keys]
    # ---- segments (their own table; only them when --only names no dense case)
    seg_cases = [c for c in SEG_CASES if not args.only or c.key in keys]
    if args.markdown:
        return run_markdown(cases, seg_cases, args, repeats, argv)
    if args.only and not cases:
        return run_segment_cases(seg_cases, args, repeats)
    if ml_dtypes is None:
        cases = [c for c in cases if c.dtype != "bfloat16"]

    flags = cpu_flags()
    avx512 = None if flags is None else ("avx512f" in flags)

    # ---- threads
    thread_notes, restore_threads = limit_threads(N)

    # ---- environment
    env = [
        f"klkit {getattr(kk, '__version__', '?')} ({os.path.dirname(kk.__file__)})",
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"torch {torch.__version__ if torch is not None else 'not installed'}, "
        f"ml_dtypes {ml_dtypes.__version__ if ml_dtypes is not None else 'not installed'}",
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; AVX-512F: "
        + ({True: "yes", False: "no", None: "unknown (no /proc/cpuinfo; assuming no)"}[avx512]),
        f"threads N = {N}; " + "; ".join(thread_notes),
        "numpy ufuncs and np.max are single-threaded (the floor is a one-thread read)",
    ]
    ob = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    if ob:
        env.append("OpenBLAS env set: " + ", ".join(f"{k}={v}" for k, v in ob.items())
                   + " (affects only BLAS calls, not np.max or the ufunc recipes)")
    else:
        env.append("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set")
    try:
        load1 = os.getloadavg()[0]
        env.append(f"load average (1 min) at start: {load1:.2f}"
                   + (" -- WARNING: the machine is busy, timings will be noisy" if load1 > 0.5 else ""))
    except OSError:
        pass
    if "OMP_NUM_THREADS" in os.environ:
        env.append(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} (overridden by N above)")
    env.append(f"mode: {'--quick' if args.quick else 'full'}; median of {repeats} repeats "
               f"after 1 warm-up (3 repeats for calls > {args.slow:g} s)")
    for line in env:
        log("# " + line)

    t_start = time.perf_counter()
    rows = measure_dense_cases(cases, args, repeats, avx512)
    elapsed = time.perf_counter() - t_start
    restore_threads()

    # ---- table
    print("## klkit benchmark: multiples of the np.max read floor (lower is better)\n")
    for line in env:
        print(f"- {line}")
    print(f"- measured in {elapsed:.0f} s\n")
    hdr = ["case", "shape", "dtype", "floor ms", "klkit ms", "klkit", "klkit, paired",
           "scipy", "torch", "numpy", "klkit vs scipy", "vs torch", "vs numpy", "target",
           "result"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join(["---"] * 3 + ["---:"] * 11 + [":---:"]) + "|")
    missed = False
    for row in rows:
        c = row["case"]
        m = row["mult"]
        kt = m.get("klkit")

        def spd(other):
            if kt is None or other not in m:
                return None
            return m[other] / kt

        if row["status"]:
            result = row["status"]
            missed = missed or row["target"] is not None
        elif kt is None:
            result = "; ".join(row["bad"]) or "no klkit timing"
            missed = missed or row["target"] is not None
        elif row["target"] is None:
            result = "-"
        else:
            ok = kt <= row["target"]
            missed = missed or not ok
            result = "PASS" if ok else "MISS"
        if row["bad"] and kt is not None:
            result += " (" + "; ".join(row["bad"]) + ")"
        target = "-" if row["target"] is None else f"<= {row['target']:g}x"
        if isinstance(c.target, tuple):
            target += " (AVX-512)" if avx512 else " (no AVX-512)"
        cells = [
            c.label, "x".join(map(str, row["shape"])), c.dtype,
            f"{row['floor'] * 1e3:.2f}" if "floor" in row else "-",
            f"{row['ms']['klkit']:.2f}" if "klkit" in row["ms"] else "-",
            fmt_x(kt),
            (f"{fmt_x(row['paired'][0])} ({row['paired'][1]:.2f}-{row['paired'][2]:.2f})"
             if "paired" in row else "-"),
            fmt_x(m.get("scipy")), fmt_x(m.get("torch")), fmt_x(m.get("numpy")),
            fmt_speed(spd("scipy")), fmt_speed(spd("torch")), fmt_speed(spd("numpy")),
            target, result,
        ]
        print("| " + " | ".join(cells) + " |")
    print()
    print("Multiples: median wall time / median time of np.max(x, axis=-1) over the same "
          "input bytes (both inputs for two-input functions). 'klkit, paired': median "
          f"(range) of the ratios of {PAIRS} interleaved (floor, klkit) pairs of calls, "
          "a cross-check against drift (the verdict uses the medians). "
          "'klkit vs X' = X time / klkit "
          "time (> 1: klkit is faster). numpy = row-blocked in-place max-shift recipe "
          "(single-threaded); torch on zero-copy views; '-' = not available.")
    for c in cases:
        if c.note:
            print(f"- {c.label} {c.dtype}: {c.note}.")
    if torch is None:
        print("torch is not installed: torch columns empty.")
    missed = relative_targets(rows) or missed
    seg_rc = run_segment_cases(seg_cases, args, repeats) if seg_cases else 0
    return 1 if (args.strict and missed) else seg_rc


#: targets between two klkit timings: (numerator case, denominator case,
#: what, limit, "<=" or ">=")
RELATIVE = [
    ("tok_ent", "tok", "token_logprobs with entropy / without", 1.2, "<="),
    ("sce", "tok", "softmax_cross_entropy / token_logprobs", 1.1, "<="),
    ("tok", "tok_bf16", "token_logprobs float32 / bfloat16 (same shape)", 1.5, ">="),
    ("tok_shift", "tok", "token_logprobs shifted slice / contiguous (per byte)", 1.1, "<="),
]
PAIRS = 11


def relative_targets(rows):
    """The klkit-vs-klkit ratios whose cases were run, re-measured as PAIRS
    interleaved pairs of calls (numerator, denominator, numerator, ...) on
    the same inputs: on a shared machine the speed drifts between the cases
    of the main table by more than these targets' margins.  Prints the
    median of the per-pair ratios next to the ratio of the table's medians;
    True if a target is missed."""
    ms = {r["case"].key: r["ms"].get("klkit") for r in rows}
    todo = [r for r in RELATIVE if ms.get(r[0]) and ms.get(r[1])]
    if not todo:
        return False
    shape = next(r["shape"] for r in rows if r["case"].key == "tok")
    x = R.make_input(shape, "float32", "p")
    t = R.make_input(shape, "float32", "targets")
    calls = {"tok": lambda: kk.token_logprobs(x, t),
             "tok_ent": lambda: kk.token_logprobs(x, t, return_entropy=True),
             "sce": lambda: kk.softmax_cross_entropy(x, t)}
    if any("tok_bf16" in r[:2] for r in todo):
        xb = R.make_input(shape, "bfloat16", "p")
        calls["tok_bf16"] = lambda: kk.token_logprobs(xb, t)
    if any("tok_shift" in r[:2] for r in todo):
        s3 = next(r["shape"] for r in rows if r["case"].key == "tok_shift")
        x3 = R.make_input(s3, "float32", "p")
        t3 = R.make_input(s3, "float32", "targets")
        calls["tok_shift"] = lambda: kk.token_logprobs(x3[:, :-1], t3[:, 1:])
    lines, missed = [], False
    for num, den, what, limit, op in todo:
        fa, fb = calls[num], calls[den]
        fa(), fb()
        ratios = []
        for _ in range(PAIRS):
            t0 = time.perf_counter()
            fa()
            t1 = time.perf_counter()
            fb()
            t2 = time.perf_counter()
            ratios.append((t1 - t0) / (t2 - t1))
        ratio = statistics.median(ratios)
        ok = ratio <= limit if op == "<=" else ratio >= limit
        missed = missed or not ok
        lines.append(f"| {what} | {ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
                     f"{ms[num] / ms[den]:.2f} | {op} {limit:g} | {'PASS' if ok else 'MISS'} |")
    print(f"\n| klkit time ratio | interleaved pairs: median (range) of {PAIRS} | "
          "table medians | target | result |\n|---|---:|---:|---:|:---:|")
    print("\n".join(lines))
    return missed


if __name__ == "__main__":
    sys.exit(main())
