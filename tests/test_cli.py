"""The klkit command: seq-kl over Parquet / Arrow IPC / JSON Lines files
(every option, empty and null sequences, bad input, no partial output,
progress quiet off a terminal), sample, info."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import klkit as kk
from klkit.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("rich")


def klkit(*args, check=True, **kw):
    """Run the command in a subprocess: (returncode, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-m", "klkit", *map(str, args)], capture_output=True,
                       text=True, timeout=300, **kw)
    if check:
        assert r.returncode == 0, r.stderr
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "rollouts.parquet"
    assert main(["sample", str(path), "--sequences", "700", "--mean-length", "80",
                 "--seed", "3"]) == 0
    return path


def seq_kl_of(path, est="k3", reduce="sum", clamp=None, mask=False, float64=False):
    """What seq-kl should give: klkit on the whole columns (float64: as read
    from JSON, which has no float32)."""
    t = pq.read_table(path)
    lp, rf = t.column("logprobs").combine_chunks(), t.column("ref_logprobs").combine_chunks()
    if float64:
        lp, rf = (c.cast(pa.large_list(pa.float64())) for c in (lp, rf))
    if mask:
        m = np.asarray(t.column("mask").combine_chunks().flatten().to_numpy(zero_copy_only=False))
        off = np.concatenate([[0], np.cumsum(
            np.asarray(pa.compute.list_value_length(lp).fill_null(0)))])
        lp_flat = np.asarray(lp.flatten())[m]
        rf_flat = np.asarray(rf.flatten())[m]
        kept = np.concatenate([[0], np.cumsum(m)])[off]
        return kk.seq_kl(lp_flat, rf_flat, kept, estimator=est, reduce=reduce, clamp=clamp)
    return kk.seq_kl(lp, rf, estimator=est, reduce=reduce, clamp=clamp)


def test_sample_file_looks_like_rollouts(sample):
    t = pq.read_table(sample)
    assert t.num_rows == 700
    assert t.column_names == ["id", "prompt_id", "logprobs", "ref_logprobs", "mask"]
    lens = np.asarray(pa.compute.list_value_length(t.column("logprobs")).fill_null(0))
    assert (lens == 0).sum() > 0 and t.column("logprobs").null_count > 0
    lp = np.asarray(t.column("logprobs").combine_chunks().flatten())
    assert lp.max() <= 0 and np.median(lp) > -2 and lp.min() < -10     # Zipf-like, heavy tail
    again = sample.parent / "again.parquet"
    main(["sample", str(again), "--sequences", "700", "--mean-length", "80", "--seed", "3"])
    assert pq.read_table(again).equals(t)                              # the seed decides


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "arrows", "jsonl"])
def test_every_input_format_gives_klkit_results(sample, fmt, tmp_path):
    src = sample if fmt == "parquet" else tmp_path / f"in.{fmt}"
    if fmt == "arrows":                   # the IPC stream format
        t = pq.read_table(sample)
        with pa.ipc.new_stream(str(src), t.schema) as w:
            for b in t.to_batches(max_chunksize=200):
                w.write_batch(b)
    elif fmt != "parquet":
        main(["sample", str(src), "--sequences", "700", "--mean-length", "80", "--seed", "3"])
    out = tmp_path / "out.parquet"
    assert main(["seq-kl", str(src), "-o", str(out), "--quiet"]) == 0
    got = pq.read_table(out)
    assert got.column_names == ["file", "row", "n_tokens", "k3"]
    assert got.column("row").to_pylist() == list(range(700))
    expected = seq_kl_of(sample, float64=fmt == "jsonl")
    np.testing.assert_array_equal(np.asarray(got.column("k3")), expected)


def test_options(sample, tmp_path):
    out = tmp_path / "out.jsonl"
    assert main(["seq-kl", str(sample), "--estimator", "k1,k2,k3,abs,low_var_kl", "--reduce",
                 "mean", "--clamp", "1.5", "--mask", "mask", "--keep", "id,prompt_id",
                 "--threads", "1", "-o", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 700
    assert list(rows[0]) == ["file", "row", "n_tokens", "k1", "k2", "k3", "abs", "low_var_kl",
                             "id", "prompt_id"]
    for est in ("k1", "k2", "k3", "abs", "low_var_kl"):
        want = seq_kl_of(sample, est, "mean", 1.5, mask=True)
        got = np.array([r[est] for r in rows], want.dtype)
        np.testing.assert_array_equal(got, want)
    assert [r["id"] for r in rows] == list(range(700))


def test_csv_output_and_kept_lists_refused(sample, tmp_path):
    out = tmp_path / "out.csv"
    assert main(["seq-kl", str(sample), "--keep", "id", "-o", str(out), "--quiet"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].replace('"', "") == "file,row,n_tokens,k3,id" and len(lines) == 701
    rc, _, err = klkit("seq-kl", sample, "--keep", "mask", "-o", tmp_path / "x.csv",
                       check=False)
    assert rc == 2 and "CSV" in err and len(err.strip().splitlines()) == 1


def test_summary_and_json(sample, capsys):
    assert main(["seq-kl", str(sample), "--estimator", "k1,k3", "--clamp", "2", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    v = seq_kl_of(sample, "k3", clamp=2.0)
    t = pq.read_table(sample)
    lens = np.asarray(pa.compute.list_value_length(t.column("logprobs")).fill_null(0))
    nonempty = v[lens > 0].astype(np.float64)
    assert s["sequences"] == 700 and s["empty_sequences"] == int((lens == 0).sum())
    assert s["tokens"] == int(lens.sum())
    k3 = s["estimators"]["k3"]
    assert k3["count"] == nonempty.size
    assert k3["p50"] == pytest.approx(np.percentile(nonempty, 50), rel=1e-12)
    assert k3["p99"] == pytest.approx(np.percentile(nonempty, 99), rel=1e-12)
    assert k3["max"] == nonempty.max() and k3["min"] == nonempty.min()
    lp = np.asarray(t.column("logprobs").combine_chunks().flatten(), np.float64)
    rf = np.asarray(t.column("ref_logprobs").combine_chunks().flatten(), np.float64)
    assert s["clamped_tokens"] == int(np.count_nonzero(np.abs(lp - rf) > 2))
    assert main(["seq-kl", str(sample)]) == 0
    out = capsys.readouterr().out
    assert "p99" in out and "700 sequences" in out


def test_directories_globs_and_several_files(sample, tmp_path):
    d = tmp_path / "parts"
    d.mkdir()
    for i in range(3):
        main(["sample", str(d / f"part{i}.parquet"), "--sequences", "50", "--seed", str(i)])
    out = tmp_path / "all.parquet"
    assert main(["seq-kl", str(d), "-o", str(out), "--quiet"]) == 0
    got = pq.read_table(out)
    assert got.num_rows == 150
    assert got.column("file").to_pylist() == [str(d / f"part{i}.parquet")
                                              for i in range(3) for _ in range(50)]
    out2 = tmp_path / "glob.parquet"
    assert main(["seq-kl", str(d / "part*.parquet"), "-o", str(out2), "--quiet"]) == 0
    assert pq.read_table(out2).equals(got)


@pytest.mark.parametrize("tokens_per_batch", [None, 100])
def test_row_groups_stream(tmp_path, monkeypatch, capsys, tokens_per_batch):
    """A file of several row groups is read a row group (or a slice of
    one) at a time, two row groups at once; rows are numbered across them
    in file order, and an error names the row group and the file row (the
    first error in the file, whichever reader meets one first)."""
    from klkit import io

    if tokens_per_batch:
        monkeypatch.setattr(io, "TOKENS_PER_BATCH", tokens_per_batch)
    path = tmp_path / "groups.parquet"
    t = pq.read_table(os.path.join(os.path.dirname(kk.__file__), "data", "sample.parquet"))
    pq.write_table(t, path, row_group_size=64)
    assert pq.ParquetFile(path).num_row_groups > 3
    batches = list(io.Source(str(path)).batches(["logprobs", "ref_logprobs"]))
    assert len(batches) > 6 if tokens_per_batch else len(batches) == 7
    assert [b.row0 for b in batches] == list(np.cumsum([0] + [b.data.num_rows
                                                              for b in batches[:-1]]))
    out = tmp_path / "out.parquet"
    assert main(["seq-kl", str(path), "-o", str(out), "--quiet"]) == 0
    got = pq.read_table(out)
    assert got.column("row").to_pylist() == list(range(t.num_rows))
    np.testing.assert_array_equal(np.asarray(got.column("k3")),
                                  kk.seq_kl(t.column("logprobs"), t.column("ref_logprobs"),
                                            estimator="k3"))
    lp = t.column("logprobs").to_pylist()
    row = next(i for i in range(150, t.num_rows) if lp[i])        # row group 2
    later = next(i for i in range(330, t.num_rows) if lp[i])      # row group 5
    lp[row], lp[later] = lp[row][:-1], lp[later][:-1]
    pq.write_table(t.set_column(2, "logprobs", pa.array(lp, pa.list_(pa.float32()))), path,
                   row_group_size=64)
    assert main(["seq-kl", str(path), "--quiet"]) == 2
    assert f"row group 2, row {row}, column 'ref_logprobs'" in capsys.readouterr().err


@pytest.mark.parametrize("readers", [1, 3])
def test_parallel_readers_keep_file_order(sample, tmp_path, monkeypatch, readers):
    """However many row groups are decoded at once, the output and the
    summary are those of reading them one by one."""
    from klkit import io
    from klkit.cli import seq_kl

    path = tmp_path / "many.parquet"
    pq.write_table(pq.read_table(sample), path, row_group_size=17)
    again = tmp_path / "again.parquet"
    pq.write_table(pq.read_table(sample), again, row_group_size=90)
    other = tmp_path / "other.jsonl"
    main(["sample", str(other), "--sequences", "50", "--seed", "9"])
    monkeypatch.setattr(io, "TOKENS_PER_BATCH", 64)
    outs = []
    for n in (1, readers):
        monkeypatch.setattr(seq_kl, "UNIT_THREADS", n)
        out = tmp_path / f"out{n}.parquet"
        assert main(["seq-kl", str(path), str(other), str(again), "-o", str(out), "--quiet",
                     "--estimator", "k1,k3"]) == 0
        outs.append(pq.read_table(out))
    assert outs[1].equals(outs[0])
    assert outs[0].column("row").to_pylist() == [*range(700), *range(50), *range(700)]


def test_unit_threads_stay_near_the_unit_in_order(sample, tmp_path):
    """While the unit in order is slow, the other threads start units at
    most 2 * threads ahead of it: what is held for file order is bounded,
    however long the file.  The values still come in file order."""
    import threading
    import time

    from klkit import io

    path = tmp_path / "many.parquet"
    pq.write_table(pq.read_table(sample), path, row_group_size=20)
    src = io.Source(str(path))
    n = len(src.units)
    assert n > 10
    started, ahead = set(), []
    lock = threading.Lock()

    def fn(batch):
        with lock:
            started.add(batch.index)
        if batch.index == 0:
            time.sleep(0.5)
            with lock:
                ahead.append(max(started))
        return batch.index

    got = [(k, v) for k, v, _, _ in io.map_units([(src, u) for u in src.units],
                                                 ["logprobs", "ref_logprobs"], fn, threads=2)]
    assert got == [(k, k) for k in range(n)]
    assert ahead == [3]               # units 1-3 ran meanwhile, none beyond


def test_duplicate_column_names_are_one_line(tmp_path, capsys):
    t = pq.read_table(os.path.join(os.path.dirname(kk.__file__), "data", "sample.parquet"))
    path = tmp_path / "dup.parquet"
    pq.write_table(t.append_column("id", t.column("id")), path)
    assert main(["seq-kl", str(path), "--keep", "id", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "2 columns are named 'id' (--keep)" in err and len(err.splitlines()) == 1


def test_null_lists_backed_by_values_and_null_mask_values(tmp_path, capsys):
    """Arrow lets a null list's slot cover values: they are not tokens of
    any sequence.  A null inside a mask list is an error."""
    import pyarrow.ipc as ipc

    values = pa.array([-1.0, -2.0, -9.0, -9.0, -0.5], pa.float32())
    offsets = pa.array([0, 2, 4, 5], pa.int32())
    lp = pa.ListArray.from_arrays(offsets, values, mask=pa.array([False, True, False]))
    rf = pa.array([[-1.5, -2.0], None, [-0.25]], pa.list_(pa.float32()))
    assert lp.offsets.to_pylist() == [0, 2, 4, 5] and lp.null_count == 1
    path = tmp_path / "slots.arrow"
    with ipc.new_file(str(path), pa.schema([("logprobs", lp.type), ("ref_logprobs", rf.type)])) \
            as w:
        w.write_batch(pa.record_batch([lp, rf], names=["logprobs", "ref_logprobs"]))
    out = tmp_path / "out.jsonl"
    assert main(["seq-kl", str(path), "--estimator", "k1", "-o", str(out), "--quiet"]) == 0
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    assert [(r["n_tokens"], r["k1"]) for r in rows] == [(2, 0.5), (0, 0.0), (1, -0.25)]
    mask = pa.array([[True, None], None, [True]], pa.list_(pa.bool_()))
    pq.write_table(pa.table({"logprobs": rf, "ref_logprobs": rf, "mask": mask}),
                   tmp_path / "m.parquet")
    assert main(["seq-kl", str(tmp_path / "m.parquet"), "--mask", "mask", "--quiet"]) == 2
    assert "row 0, column 'mask': a null mask value inside the list" in capsys.readouterr().err


def test_empty_and_null_sequences_and_float_types(tmp_path):
    path = tmp_path / "edge.parquet"
    for vt in (pa.float16(), pa.float32(), pa.float64()):
        lp = pa.array([[-1.0, -2.0], [], None, [-0.5]], pa.list_(vt))
        rf = pa.array([[-1.5, -2.0], [], None, [-0.25]], pa.large_list(vt))
        pq.write_table(pa.table({"logp": lp, "ref_logp": rf}), path)
        out = tmp_path / "edge.jsonl"
        assert main(["seq-kl", str(path), "--estimator", "k1", "-o", str(out), "--quiet"]) == 0
        rows = [json.loads(r) for r in out.read_text().splitlines()]
        assert [r["n_tokens"] for r in rows] == [2, 0, 0, 1]
        assert [r["k1"] for r in rows] == [0.5, 0.0, 0.0, -0.25]


def test_empty_file_writes_header_only(tmp_path):
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"logprobs": pa.array([], pa.list_(pa.float32())),
                             "ref_logprobs": pa.array([], pa.list_(pa.float32()))}), path)
    out = tmp_path / "out.parquet"
    assert main(["seq-kl", str(path), "-o", str(out), "--quiet", "--json"]) == 0
    assert pq.read_table(out).num_rows == 0


# --------------------------------------------------------------------------
# bad input: one line, exit status 2, no traceback; no partial output
# --------------------------------------------------------------------------

def _bad_files(tmp_path):
    d = {}
    d["text.parquet"] = tmp_path / "text.parquet"
    d["text.parquet"].write_text("not parquet\n")
    d["lengths"] = tmp_path / "lengths.parquet"
    pq.write_table(pa.table({"logprobs": pa.array([[-1.0], [-1.0, -2.0]]),
                             "ref_logprobs": pa.array([[-1.0], [-1.0]])}), d["lengths"],
                   row_group_size=1)
    d["nan"] = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"logprobs": pa.array([[-1.0], [-1.0, float("nan")]]),
                             "ref_logprobs": pa.array([[-1.0], [-1.0, -2.0]])}), d["nan"])
    d["strings"] = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"logprobs": pa.array(["a"]), "ref_logprobs": pa.array(["b"])}),
                   d["strings"])
    d["nullval"] = tmp_path / "nullval.parquet"
    pq.write_table(pa.table({"logprobs": pa.array([[-1.0, None]]),
                             "ref_logprobs": pa.array([[-1.0, -1.0]])}), d["nullval"])
    return d


BAD = [
    (lambda d, t: [t / "missing.parquet"], "missing.parquet: no such file"),
    (lambda d, t: [d["text.parquet"]], "text.parquet: not a readable parquet file"),
    (lambda d, t: [t / "x.txt"], "unknown file type .txt"),
    (lambda d, t: [d["lengths"], "--logp", "nope"], "no column 'nope' (--logp); columns: "
                                                    "logprobs, ref_logprobs"),
    (lambda d, t: [d["strings"]], "column 'logprobs' (--logp) is string, expected a list"),
    (lambda d, t: [d["lengths"]], "lengths.parquet, row group 1, row 1, column "
                                  "'ref_logprobs': 1 tokens, but 'logprobs' has 2"),
    (lambda d, t: [d["nan"], "--on-nan", "error"], "nan.parquet, row group 0, row 1, column "
                                                   "'logprobs': NaN at token 1"),
    (lambda d, t: [d["nullval"]], "row 0, column 'logprobs': a null log-prob"),
    (lambda d, t: [d["lengths"], "--estimator", "k4"], "--estimator: expected names"),
    (lambda d, t: [d["lengths"], "--clamp", "-1"], "--clamp: expected a number >= 0"),
    (lambda d, t: [d["lengths"], "--reduce", "max"], "invalid choice: 'max'"),
]


@pytest.mark.parametrize("make,message", BAD)
def test_bad_input_is_one_line_and_status_2(make, message, tmp_path):
    if not (tmp_path / "x.txt").exists():
        (tmp_path / "x.txt").write_text("x")
    args = make(_bad_files(tmp_path), tmp_path)
    out = tmp_path / "result.parquet"
    rc, stdout, err = klkit("seq-kl", *args, "-o", out, check=False)
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_debug_shows_the_traceback(tmp_path):
    rc, _, err = klkit("seq-kl", tmp_path / "missing.parquet", "--debug", check=False)
    assert rc != 0 and "Traceback" in err


def test_nan_propagates_and_is_counted(tmp_path, capsys):
    d = _bad_files(tmp_path)
    assert main(["seq-kl", str(d["nan"]), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["nan_sequences"] == 1 and s["estimators"]["k3"]["count"] == 1


def test_interrupt_leaves_no_output(sample, tmp_path, monkeypatch, capsys):
    from klkit.cli import seq_kl

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(seq_kl, "compute_batch", interrupted)
    out = tmp_path / "out.parquet"
    assert main(["seq-kl", str(sample), "-o", str(out), "--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_no_path_runs_the_shipped_sample_and_says_so():
    rc, out, err = klkit("seq-kl")
    assert "sample file shipped with klkit" in err
    assert "k3" in out and "400 sequences" in out
    # stderr is not a terminal here: no progress bar, only that note
    assert len(err.strip().splitlines()) == 1


def test_progress_bar_on_a_terminal(sample):
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    r = subprocess.run([sys.executable, "-m", "klkit", "seq-kl", str(sample)], stdout=subprocess.PIPE,
                       stderr=slave, timeout=300)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert r.returncode == 0
    assert b"tokens" in shown and b"rows" in shown


def test_version_info_and_help():
    rc, out, _ = klkit("--version")
    assert out.strip() == f"klkit {kk.__version__}"
    rc, out, _ = klkit("info")
    assert "code paths built" in out and "threads" in out
    rc, out, _ = klkit()
    assert "seq-kl" in out and "sample" in out


def test_closed_stdout_stops_quietly(sample):
    """`klkit seq-kl ... | head -1`: the reader goes away; no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "klkit", "seq-kl", str(sample), "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1 and "Traceback" not in err and "Exception" not in err, err
