"""klkit seq-kl --scheduler: on a LocalCluster of 2 workers on loopback
(started by the command, or by the test and reached by its tcp:// address)
the output file and the summary equal the one-process run's."""
import json

import pytest

from klkit.cli import main

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
distributed = pytest.importorskip("distributed")

TIMING = ("seconds", "read_seconds", "compute_seconds", "write_seconds", "scheduler", "workers")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two Parquet files of several row groups and a JSON Lines file."""
    d = tmp_path_factory.mktemp("cluster")
    for i, n in enumerate((900, 300)):
        assert main(["sample", str(d / f"part{i}.parquet"), "--sequences", str(n),
                     "--mean-length", "60", "--seed", str(i)]) == 0
        t = pq.read_table(d / f"part{i}.parquet")
        pq.write_table(t, d / f"part{i}.parquet", row_group_size=128)
    assert main(["sample", str(d / "extra.jsonl"), "--sequences", "100", "--mean-length", "30",
                 "--seed", "5"]) == 0
    return d


def run_json(capsys, args):
    assert main(args + ["--json", "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)
    return {k: v for k, v in s.items() if k not in TIMING}, s


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as c:
        yield c


@pytest.mark.parametrize("where", ["local:2", "tcp"])
def test_cluster_run_equals_the_one_process_run(files, tmp_path, capsys, where, request):
    scheduler = request.getfixturevalue("cluster").scheduler_address if where == "tcp" \
        else where
    args = [str(files / "part*.parquet"), str(files / "extra.jsonl"), "--estimator",
            "k1,k3,abs", "--mask", "mask", "--clamp", "3", "--keep", "id"]
    want, _ = run_json(capsys, ["seq-kl"] + args + ["-o", str(tmp_path / "one.parquet")])
    got, s = run_json(capsys, ["seq-kl"] + args + ["-o", str(tmp_path / "many.parquet"),
                                      "--scheduler", scheduler])
    assert s["workers"] == 2 and s["scheduler"] == scheduler
    assert got == want                               # exact percentiles, counts
    assert want["sequences"] == 1300 and len(want["files"]) == 3
    one, many = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "many.parquet")
    assert many.equals(one)


def test_cluster_errors_are_one_line_and_leave_no_output(files, tmp_path, capsys, cluster):
    t = pq.read_table(files / "part0.parquet")
    lp = t.column("logprobs").to_pylist()
    row = next(i for i in range(300, 900) if lp[i])
    lp[row] = lp[row] + [-1.0]
    bad = tmp_path / "bad.parquet"
    pq.write_table(t.set_column(2, "logprobs", pa.array(lp, pa.list_(pa.float32()))), bad,
                   row_group_size=128)
    out = tmp_path / "out.parquet"
    rc = main(["seq-kl", str(bad), "--scheduler", cluster.scheduler_address, "-o", str(out),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"bad.parquet, row group {row // 128}, row {row}, column 'ref_logprobs'" in err
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("spec,message", [("local:0", "local:N with N >= 1"),
                                          ("nowhere", "expected local, local:N or tcp://"),
                                          ("tcp://127.0.0.1:9", "cannot reach")])
def test_bad_scheduler(files, capsys, spec, message, monkeypatch):
    from klkit.cli import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 2)
    assert main(["seq-kl", str(files / "part1.parquet"), "--scheduler", spec, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
