"""klkit bench (a smoke run of the table and its JSON) and the recipes it
shares with the repository's bench/ (klkit._benchmarks)."""
import json
import subprocess
import sys

import numpy as np
import pytest

import klkit as kk
from klkit import _benchmarks as B
from klkit.cli import bench, main


def test_bench_quick_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "klkit", "bench", "--quick", "--threads", "1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(line for line in lines if line.startswith("case "))
    assert header.split()[-4:] == ["klkit", "numpy", "torch", "scipy"]
    for case in bench.CASES:
        row = next(line for line in lines if line.startswith(case.label + " "))
        assert row.split()[-4].endswith("x")             # klkit's multiple of the floor
    assert f"code path in use: {kk._kernels.build_info()['isa']}" in r.stdout
    assert "threads: 1 " in r.stdout
    assert "Every result agrees with the numpy recipe." in r.stdout


def test_bench_quick_json(capsys):
    threads = kk.get_num_threads()
    assert main(["bench", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert kk.get_num_threads() == threads                 # put back as it was
    assert result["mode"] == "quick"
    assert result["machine"]["code_path"] == kk._kernels.build_info()["isa"]
    assert result["machine"]["threads"] == threads
    assert [c["key"] for c in result["cases"]] == [c.key for c in bench.CASES]
    for c in result["cases"]:
        assert c["floor_ms"] > 0 and c["multiple"]["klkit"] > 0
        assert c["multiple"]["klkit"] == pytest.approx(c["ms"]["klkit"] / c["floor_ms"])
        assert c["disagrees_with_numpy"] == [] and c["errors"] == {}


def test_bench_bad_threads(capsys):
    assert main(["bench", "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "klkit bench: error: --threads must be at least 1, got 0\n"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("func", sorted(B.BUILDERS))
def test_recipes_agree(func, dtype):
    """Every implementation the tables time gives the numpy recipe's result."""
    shape = (3, 2, 301) if func == "token_logprobs_shifted" else (7, 301)
    xs = [B.make_input(shape, dtype, role) for role in B.ROLES.get(func, ("p",))]
    out = np.zeros(shape, B.acc_dtype(xs[0].dtype)) if func == "log_softmax_out" else None
    impls = B.implementations(func, xs, out)
    ref = B.sample_rows(impls.pop("numpy")(), 1).copy()
    assert impls.keys() >= {"klkit"}
    for name, fn in impls.items():
        assert B.agrees(B.sample_rows(fn(), 1), ref, dtype), name


@pytest.mark.parametrize("case", ["seg_sum", "seq_kl", "seg_padded"])
def test_segment_recipes_agree(case):
    inputs = B.make_padded((9, 50)) if case == "seg_padded" else B.make_packed(5000, 40)
    impls = B.segment_implementations(case, inputs)
    impls.pop("floor")
    ref = B.sample_rows(impls.pop("numpy")(), 1)
    for name, fn in impls.items():
        assert B.agrees(B.sample_rows(fn(), 1), ref, "float32"), name


def test_competitors_left_out_when_not_installed(monkeypatch):
    B.load_optional()
    monkeypatch.setattr(B, "scipy", None)
    monkeypatch.setattr(B, "torch", None)
    x = B.make_input((4, 64), "float32")
    assert set(B.implementations("logsumexp", [x])) == {"klkit", "numpy"}


def test_plain_table():
    text = bench.plain_table(["case", "x", "y", "z", "a", "klkit"],
                             [["lse", "1", "2", "3", "4", "1.50x"],
                              ["token_logprobs", "1", "2", "3", "4", "12.25x"]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1      # one width: aligned
    assert lines[2].endswith(" 1.50x") and lines[3].endswith("12.25x")
