"""klkit demo: the worked examples' numbers, the report, the --plot PNG and
its errors, and `python -m klkit demo`."""
import math
import os
import subprocess
import sys

import pytest

from klkit.cli import demo, main


def test_weather_both_directions():
    # KL(P||Q) = 0.7 ln(0.7/0.5) + 0.3 ln(0.3/0.5) = 0.08228...,
    # KL(Q||P) = 0.5 ln(0.5/0.7) + 0.5 ln(0.5/0.3) = 0.08718...
    w = demo.weather()
    assert abs(w["kl_pq"] - 0.0823) < 1e-4
    assert abs(w["kl_qp"] - 0.0872) < 1e-4
    assert w["kl_pq_bits"] == pytest.approx(w["kl_pq"] / math.log(2), rel=1e-12)
    assert w["kl_qp_bits"] == pytest.approx(w["kl_qp"] / math.log(2), rel=1e-12)


def test_coins_smallest_at_the_empirical_frequency():
    c = demo.coins(heads=70, flips=100, models=(0.5, 0.6, 0.7, 0.8))
    assert c["best"] == 0.7
    assert abs(c["kl"][2]) < 1e-15 and min(c["kl"][[0, 1, 3]]) > 0.02


def test_mle_is_the_forward_kl_argmin():
    m = demo.mle(heads=70, flips=100)
    assert m["argmin_kl"] == m["argmin_nll"] == m["mle"] == 0.7
    assert m["identity_gap"] < 1e-12          # mean NLL = H(data) + KL at every p
    m = demo.mle(heads=23, flips=50)
    assert m["argmin_kl"] == m["argmin_nll"] == 0.46


def test_mode_covering_and_mode_seeking():
    g = demo.modes()
    f, r = g["forward_fit"], g["reverse_fit"]
    assert abs(f["mu"]) < 0.5 and f["sigma"] > 2.5           # wide, over both peaks
    assert abs(abs(r["mu"]) - 3) < 0.25 and abs(r["sigma"] - 1) < 0.2   # one peak
    # each fit is the better one under its own criterion
    assert f["forward"] < r["forward"] and r["reverse"] < f["reverse"]
    assert g["mirror_reverse"] == pytest.approx(r["reverse"], rel=1e-9)


def test_report(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "KL(P||Q) = 0.0823 nats" in out and "KL(Q||P) = 0.0872 nats" in out
    assert "not symmetric" in out and "mode covering" in out and "mode seeking" in out


def test_plot_png(tmp_path, capsys):
    path = tmp_path / "kl.png"
    assert main(["demo", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["kl.png"]                  # no temporary left
    assert str(path) in capsys.readouterr().out


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)           # import raises ImportError
    assert main(["demo", "--plot", str(tmp_path / "kl.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert 'pip install "klkit[plot]"' in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["kl.pdf", "missing/kl.png"])
def test_plot_bad_path(tmp_path, capsys, name):
    assert main(["demo", "--plot", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("klkit demo: error: --plot") and err.count("\n") == 1


def test_python_m_klkit_demo(tmp_path):
    r = subprocess.run([sys.executable, "-m", "klkit", "demo"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "KL(P||Q) = 0.0823 nats" in r.stdout
