"""A grid on a Dask cluster (`fuadnb.cluster`): the same rows, notebooks, skips and
resumes as `fuadnb.grid.run_grid`, with the points executed by the workers and every
file written by the coordinating process. The cluster tests run on Dask's
LocalCluster; ``distributed`` (the ``distributed`` extra, in the dev extra) missing
fails them, never skips them."""

import sys
from pathlib import Path

import distributed  # noqa: F401  (the dev extra: a missing one fails, never skips)
import pandas as pd
import pytest

from fuadnb import cli, cluster
from fuadnb import grid as grids


class _Future:
    def __init__(self, fn, args, error):
        self.fn, self.args, self.error = fn, args, error

    def result(self):
        if self.error:
            raise self.error
        return self.fn(*self.args)


class _Client:
    """A client that runs a task here, or fails as a lost worker does."""

    def __init__(self, error=None):
        self.error, self.keys = error, []

    def submit(self, fn, *args, key, pure, retries):
        self.keys.append(key)
        return _Future(fn, args, self.error)


@pytest.fixture
def toy(write_notebook, tmp_path) -> Path:
    """A grid file over a notebook that fails when X is negative (X = 2, -1, 3)."""
    write_notebook(tmp_path / "toy.ipynb", "X: int = 1  # a number",
                   "import os\nfrom fuadnb import nb\n"
                   "assert X >= 0, 'X must not be negative'\n"
                   "nb.record({'square': X * X, 'pid': os.getpid()})")
    grid = tmp_path / "grid.yaml"
    grid.write_text("notebook: toy.ipynb\ngrid:\n  X: [2, -1, 3]\n")
    return grid


def test_the_runner_writes_the_workers_notebook_here_and_records_a_lost_worker(
        toy, tmp_path):
    grid, out = toy, tmp_path / "out"
    fake = _Client()
    table = grids.run_grid(grid, out, jobs=2, progress=False, log=lambda _: None,
                           runner=cluster.runner(fake))
    assert table.status.tolist() == ["ok", "failed", "ok"]
    assert table.square.iloc[[0, 2]].tolist() == [4, 9]
    assert "X must not be negative" in table.error.iloc[1]
    assert {p.name for p in out.glob("*.ipynb")} == {"X-2.ipynb", "X--1.ipynb",
                                                      "X-3.ipynb"}
    assert not list(out.glob(".*.part")) and len(fake.keys) == 3
    lost = grids.run_grid(grid, out, jobs=2, progress=False, log=lambda _: None,
                          runner=cluster.runner(_Client(OSError("worker lost"))))
    assert lost.status.tolist() == ["ok", "failed", "ok"]          # two skipped
    assert lost.error.iloc[1] == "OSError: worker lost"
    outcome, text = cluster.run_point(str(tmp_path / "absent.ipynb"), {}, "p")
    assert not outcome.ok and "not on worker" in outcome.error and text == ""


def test_a_missing_engine_or_scheduler_is_one_clear_error(toy, tmp_path, capsys,
                                                         monkeypatch):
    grid = toy
    args = ["grid", str(grid), "--out", str(tmp_path / "out"), "--scheduler",
            "tcp://127.0.0.1:9"]
    assert cli.main(args) == 2
    assert "no Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)      # not installed
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fuadnb: error: "), err
    assert "pip install -e '.[distributed]'" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_toy_grid_on_a_local_cluster_records_failures_and_resumes(toy, tmp_path):
    grid, out = toy, tmp_path / "out"
    logged = []
    table = cluster.run_grid(grid, out, "local", jobs=2, log=logged.append)
    assert logged[0].startswith("Dask cluster tcp://") and "2 worker(s)" in logged[0]
    assert table.status.tolist() == ["ok", "failed", "ok"]
    assert table.square.iloc[[0, 2]].tolist() == [4, 9]
    assert pd.read_csv(out / "grid_results.csv").point.tolist() == \
        ["X-2", "X--1", "X-3"]
    logged = []
    again = cluster.run_grid(grid, out, "local", jobs=2, log=logged.append)
    assert sum("skipped" in line for line in logged) == 2
    assert again.point.tolist() == table.point.tolist()
    kept = again.pid.iloc[[0, 2]].astype(float).tolist()     # the rows as they were
    assert kept == table.pid.iloc[[0, 2]].astype(float).tolist()


@pytest.mark.book
def test_the_smoke_grid_on_a_local_cluster_gives_the_local_rows(smoke_grid,
                                                                tmp_path, capsys):
    """The smoke grid (RD and LLB(RD), smoke profile) on a LocalCluster of two
    workers through the command line: one ok row per point in grid order, the
    executed notebooks here, the same results as the local run (the models come
    from the same run cache), each kernel with cores // 2 threads; a rerun skips
    every point."""
    import os

    grid, out = smoke_grid.parent / "smoke.yaml", tmp_path / "dask"
    args = ["grid", str(grid), "--out", str(out), "--cluster", "local", "--jobs", "2",
            "--quiet"]
    assert cli.main(args) == 0, capsys.readouterr().err
    local = pd.read_csv(smoke_grid / "grid_results.csv")
    table = pd.read_csv(out / "grid_results.csv")
    assert table.point.tolist() == local.point.tolist() == ["METHOD-rd",
                                                            "METHOD-llb-rd"]
    assert (table.status == "ok").all()
    assert {f"{p}.ipynb" for p in table.point} <= {p.name for p in out.glob("*.ipynb")}
    for column in ("image_auroc", "pixel_auroc", "detection_auroc", "params_hash"):
        assert table[column].tolist() == local[column].tolist(), column
    assert (table.threads == max(1, (os.cpu_count() or 1) // 2)).all()
    assert grids.pending(grid, out) == []
    assert cli.main(args) == 0
    assert "2 grid points ok, 0 failed" in capsys.readouterr().out
