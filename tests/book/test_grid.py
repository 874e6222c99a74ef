"""The papermill batch runner: grid files, one notebook and one row per point,
finished points skipped, failures recorded without stopping the others, a run killed
mid-cell resumed without lost or repeated rows, --dry-run; the project's grid files
and the tables they made; the demo command as a grid."""

import ast
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fuadnb import cli, experiment, models, notebooks
from fuadnb import grid as grids  # papermill (dev extra): missing fails, never skips
from fuadnb.data import mvtec, visa

REPO = Path(__file__).resolve().parents[2]
GRIDS, RESULTS = REPO / "benchmarks" / "grids", REPO / "benchmarks" / "results"


@pytest.fixture
def toy_notebook(write_notebook, tmp_path):
    """A two-cell chapter: fails when X is negative, else records a row."""
    return write_notebook(tmp_path / "toy.ipynb",
                          "X: int = 1  # a number\nNAME: str = 'a'  # a name",
                          "import os\nfrom fuadnb import nb\n"
                          "assert X >= 0, 'X must not be negative'\n"
                          "nb.record({'square': X * X, 'name': NAME, "
                          "'cwd': os.getcwd()})")


def test_kernels_import_the_fuadnb_of_the_process_that_runs_them(write_notebook,
                                                                 tmp_path, monkeypatch):
    """A grid run from another checkout must run that checkout's code: a kernel
    starts in the notebook's folder, where a decoy (here: on PYTHONPATH; in practice
    an editable install of another checkout) would otherwise win."""
    import fuadnb

    decoy = tmp_path / "decoy" / "fuadnb"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("DECOY = True\n")
    monkeypatch.setenv("PYTHONPATH", str(decoy.parent))
    write_notebook(tmp_path / "where.ipynb", None, "import fuadnb\nfrom fuadnb "
                   "import nb\nnb.record({'file': fuadnb.__file__})")
    out = notebooks.execute(tmp_path / "where.ipynb", tmp_path / "out.ipynb", {})
    assert out.ok, out.error
    assert notebooks.recorded_row(tmp_path / "out.ipynb")["file"] == fuadnb.__file__
    assert notebooks.kernel_pythonpath().split(os.pathsep) == [
        str(notebooks.PACKAGE_ROOT), str(decoy.parent)]
    assert os.environ["PYTHONPATH"] == str(decoy.parent)   # the kernel's alone


def _grid(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_grid_runs_every_point_records_failures_and_resumes(toy_notebook, tmp_path):
    grid = _grid(tmp_path, "notebook: toy.ipynb\nfixed: {NAME: b}\n"
                 "grid:\n  X: [2, -1, 3]\n")
    out, finished = tmp_path / "out", []
    table = grids.run_grid(grid, out, progress=False, log=lambda _: None,
                           on_ok=finished.append)
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert [(r["point"], r["square"]) for r in finished] == [("X-2", 4), ("X-3", 9)]
    assert list(table["square"].iloc[[0, 2]]) == [4, 9]
    assert (table["name"].iloc[[0, 2]] == "b").all()
    assert "X must not be negative" in table["error"].iloc[1]
    assert {p.name for p in out.glob("*.ipynb")} == {"X-2.ipynb", "X--1.ipynb",
                                                      "X-3.ipynb"}
    saved = pd.read_csv(out / "grid_results.csv")
    assert len(saved) == 3
    logged = []
    grids.run_grid(grid, out, progress=False, log=logged.append,
                   on_ok=finished.append)
    assert sum("skipped" in line for line in logged) == 2       # the failed one reruns
    assert sum("running" in line for line in logged) == 1
    assert len(finished) == 2   # it failed again: on_ok sees only points ok now


@pytest.mark.parametrize("text, message", [
    ("grid: {X: [1]}\n", "needs 'notebook'"),
    ("notebook: toy.ipynb\ngrid: {X: 1}\n", "non-empty lists"),
    ("notebook: toy.ipynb\ngrid: {Y: [1]}\n", "no parameter(s) Y; the declared"),
    ("notebook: missing.ipynb\ngrid: {X: [1]}\n", "does not exist"),
    ("notebook: [unclosed\n", "cannot read the grid file"),
])
def test_bad_grid_files_get_one_clear_error(toy_notebook, tmp_path, text, message):
    with pytest.raises(notebooks.BookError, match=message.replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        grids.load_grid(_grid(tmp_path, text))


def test_overrides_set_every_point_under_the_same_names(toy_notebook, tmp_path):
    """``--device cuda``: the same points and names with the override's value, and
    none of them counts as done by a run with the file's values."""
    grid = _grid(tmp_path,
                 "notebook: toy.ipynb\nfixed: {NAME: b}\ngrid:\n  X: [2, 3]\n")
    plain = grids.named_points(grid)
    over = grids.named_points(grid, {"NAME": "z"})
    assert [n for n, _ in over] == [n for n, _ in plain] == ["X-2", "X-3"]
    assert {p["NAME"] for _, p in over} == {"z"}
    out = tmp_path / "out"
    table = grids.run_grid(grid, out, progress=False, log=lambda _: None,
                           overrides={"NAME": "z"})
    assert list(table["name"]) == ["z", "z"]
    assert grids.pending(grid, out, {"NAME": "z"}) == []
    assert grids.pending(grid, out) == ["X-2", "X-3"]
    with pytest.raises(notebooks.BookError,
                       match=r"no parameter\(s\) DEVICE; the declared"):
        grids.load_grid(grid, {"DEVICE": "cuda"})


def test_grid_command_reports_a_bad_file(tmp_path, capsys):
    assert cli.main(["grid", str(_grid(tmp_path, "grid: {}\n"))]) == 2
    assert "fuadnb: error:" in capsys.readouterr().err


def test_a_bad_grid_device_is_one_error_before_any_kernel(write_notebook, tmp_path,
                                                          capsys):
    """``grid --device gpu`` (not a device) and, on a machine without CUDA,
    ``--device cuda`` fail at once, nothing written; with a cluster only the name is
    checked (its workers may have the GPU): the error is then the scheduler's."""
    write_notebook(tmp_path / "dev.ipynb", "DEVICE: str = 'cpu'  # a device",
                   "pass")
    grid, out = _grid(tmp_path, "notebook: dev.ipynb\ngrid:\n  DEVICE: [cpu]\n"), \
        tmp_path / "out"
    bad = [("gpu", "not a device name")]
    if not torch.cuda.is_available():
        bad.append(("cuda", "no CUDA"))
    for device, message in bad:
        assert cli.main(["grid", str(grid), "--out", str(out), "--device",
                         device]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fuadnb: error: --device"), err
        assert message in err[0]
        assert not out.exists()
    import distributed  # noqa: F401  (the dev extra: missing fails, never skips)
    assert cli.main(["grid", str(grid), "--out", str(out), "--device", "cuda",
                     "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "no Dask scheduler" in capsys.readouterr().err


def test_point_names_are_file_safe():
    assert grids.point_name({"CATEGORY": "a b/c", "NOISE_RATIO": 0.1}) == \
        "CATEGORY-a_b_c__NOISE_RATIO-0.1"


@pytest.mark.parametrize("jobs, before", [(1, ["X-1"]), (2, ["X-1", "X-3"])])
def test_grid_killed_mid_cell_resumes_without_lost_or_repeated_rows(write_notebook,
                                                                    tmp_path, capsys,
                                                                    jobs, before):
    code = ("import time\nfrom fuadnb import nb\ntime.sleep(30 if X == 2 else 0)\n"
            "nb.record({'square': X * X})")
    write_notebook(tmp_path / "slow.ipynb", "X: int = 1  # a number", code)
    grid = _grid(tmp_path, "notebook: slow.ipynb\ngrid:\n  X: [1, 2, 3]\n")
    out, table = tmp_path / "out", tmp_path / "out" / "grid_results.csv"
    proc = subprocess.Popen([sys.executable, "-m", "fuadnb", "grid", str(grid),
                             "--out", str(out), "--quiet", "--jobs", str(jobs)],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120     # until X=2 runs and the rows before it are in
    while time.time() < deadline and not ((out / "X-2.ipynb").is_file() and
                                          table.is_file() and
                                          len(pd.read_csv(table)) == len(before)):
        time.sleep(0.2)
    time.sleep(1.0)                         # inside X=2's 30-second cell
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert pd.read_csv(table).point.tolist() == before
    assert cli.main(["grid", str(grid), "--out", str(out), "--dry-run"]) == 0
    todo = sorted({"X-1", "X-2", "X-3"} - set(before))
    assert capsys.readouterr().out.splitlines()[:len(todo)] == todo
    assert grids.pending(grid, out) == todo
    write_notebook(tmp_path / "slow.ipynb", "X: int = 1  # a number",
                   code.replace("30 if", "0 if"))                    # now quick
    result = grids.run_grid(grid, out, jobs=jobs, progress=False, log=lambda _: None)
    assert result.point.tolist() == ["X-1", "X-2", "X-3"]
    assert (result.status == "ok").all() and result.square.tolist() == [1, 4, 9]
    assert pd.read_csv(table).point.tolist() == ["X-1", "X-2", "X-3"]
    assert grids.pending(grid, out) == []


def test_a_list_of_grids_runs_in_parallel_in_grid_order(toy_notebook, tmp_path,
                                                        monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    _grid(tmp_path, "notebook: toy.ipynb\ngrid:\n  - {X: [3, 1]}\n"
          "  - {X: [2], NAME: [c, d]}\n")
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)   # relative paths, and threads must not move the cwd
    grid, out = Path("../grid.yaml"), Path("out")
    logged = []
    table = grids.run_grid(grid, out, jobs=2, progress=False, log=logged.append)
    assert Path.cwd() == here and (here / "out" / "X-1.ipynb").is_file()
    assert set(table.cwd) == {str(tmp_path)}        # kernels run beside the notebook
    assert table.point.tolist() == ["X-3", "X-1", "X-2__NAME-c", "X-2__NAME-d"]
    assert table.square.tolist() == [9, 1, 4, 4]
    assert table.name.tolist() == ["a", "a", "c", "d"]
    assert pd.read_csv(out / "grid_results.csv").point.tolist() == table.point.tolist()
    assert logged[0] == "[1/4] X-3: running"          # the first point runs alone
    assert logged[1].startswith("[1/4] X-3: ok")
    assert "OMP_NUM_THREADS" not in os.environ
    with pytest.raises(notebooks.BookError, match="more than once"):
        grids.load_grid(_grid(tmp_path, "notebook: toy.ipynb\ngrid:\n"
                              "  - {X: [1, 2]}\n  - {X: [2]}\n"))
    with pytest.raises(notebooks.BookError, match="jobs must be >= 1"):
        grids.run_grid(grid, out, jobs=0)


@pytest.mark.book
def test_benchmark_grid_of_two_smoke_cells_gives_two_rows(smoke_grid):
    table = pd.read_csv(smoke_grid / "grid_results.csv")
    assert table.point.tolist() == ["METHOD-rd", "METHOD-llb-rd"]
    assert (table.status == "ok").all()
    assert table.method.tolist() == ["rd", "llb-rd"]
    assert (table.profile == "smoke").all() and (table.noise_ratio == 0.2).all()
    for column in ("image_auroc", "pixel_auroc", "pixel_aupro", "detection_auroc"):
        assert table[column].between(0, 1).all(), column
    for column in ("fit_seconds", "predict_seconds", "train_images_per_second"):
        assert (table[column] > 0).all(), column
    assert (table.threads == 1).all()                # two jobs on two cores
    assert table.commit.notna().all() and table.torch.notna().all()
    assert table.date.notna().all() and table.device.str.startswith("cpu").all()
    assert table["filter_auroc"].notna().tolist() == [False, True]   # LLB's own
    assert {f"{p}.ipynb" for p in table.point} <= {p.name for p in
                                                   smoke_grid.glob("*.ipynb")}


def test_the_memory_bank_regimes_grid_is_the_rd_regimes_grid_per_method():
    keys = ["REGIME", "NOISE_RATIO", "CATEGORY", "SEED"]
    _, rd_fixed, rd_points = grids.load_grid(GRIDS / "rd_regimes.yaml")
    _, fixed, points = grids.load_grid(GRIDS / "memorybank_regimes.yaml")
    assert fixed == {"PROFILE": "demo", "DATASET": "synthetic", "IMAGE_SIZE": 96}
    assert rd_fixed["PROFILE"] == "demo" and rd_fixed["METHOD"] == "rd"
    cells, rd_cells = pd.DataFrame(points), pd.DataFrame(rd_points)
    assert len(cells) == 2 * len(rd_cells) == 210
    for method in ("patchcore", "softpatch"):
        mine = cells[cells.METHOD == method][keys]
        assert sorted(map(tuple, mine.to_numpy())) == \
            sorted(map(tuple, rd_cells[keys].to_numpy()))


def test_the_book_grids_cover_what_the_benchmark_promises():
    """The second edition: every method and LLB around RD and PatchCore, the clean
    set (under recurring) and every regime at 0.1 and 0.2, two categories, three
    seeds, every point once, one image size, each method at one budget."""
    _, fixed, points = grids.load_grid(GRIDS / "demo.yaml")
    cells = pd.DataFrame(points)
    assert fixed == {"PROFILE": "demo", "DATASET": "synthetic", "IMAGE_SIZE": 64}
    methods = {*models.REGISTRY, "llb-rd", "llb-patchcore"}
    assert set(cells.METHOD) == methods
    conditions = {("recurring", 0.0)} | {(r, n) for r in ("iid", "overlap", "recurring")
                                         for n in (0.1, 0.2)}
    assert set(zip(cells.REGIME, cells.NOISE_RATIO, strict=True)) == conditions
    assert set(cells.CATEGORY) == {"coin", "grass"} and cells.SEED.nunique() == 3
    assert len(cells) == len(methods) * len(conditions) * 2 * 3
    keys = ["METHOD", "REGIME", "CATEGORY", "NOISE_RATIO", "SEED"]
    assert not cells.duplicated(keys).any()
    budget = cells.reindex(columns=["STEPS", "ITERATIONS", "EPOCHS"])
    assert (budget.groupby(cells.METHOD).nunique(dropna=False) <= 1).all().all()
    _, fixed, points = grids.load_grid(GRIDS / "paper.yaml")
    cells = pd.DataFrame(points)
    assert fixed == {"PROFILE": "paper", "DEVICE": "cuda"}
    for dataset, module in (("mvtec_ad", mvtec), ("visa", visa)):
        assert set(cells[cells.DATASET == dataset].CATEGORY) == set(module.CATEGORIES)
    assert set(cells.METHOD) == methods
    real = {("iid", 0.0), ("iid", 0.1), ("iid", 0.2), ("overlap", 0.1),
            ("overlap", 0.2)}
    assert set(zip(cells.REGIME, cells.NOISE_RATIO, strict=True)) == real
    assert len(cells) == (15 + 12) * len(methods) * len(real) * 3
    assert not cells.duplicated(["DATASET", *keys]).any()
    repeat = cells.REPEAT.fillna(False)                       # SoftPatch+ rule
    assert (repeat == (cells.REGIME == "overlap")).all()
    rde_options = cells[cells.METHOD == "rde"].OPTIONS             # DTD, as the paper
    assert len(rde_options) == (15 + 12) * len(real) * 3
    dtd = {"textures": "../../data/dtd/images"}       # data/dtd, from the grid's folder
    assert (rde_options.map(yaml.safe_load) == dtd).all()
    assert cells[cells.METHOD != "rde"].OPTIONS.isna().all()


def test_the_committed_demo_table_is_the_whole_demo_grid():
    """What chapter 04 renders (and chapter 08's second edition): every point of
    benchmarks/grids/demo.yaml, run once, ok, from one clean commit, at one image
    size, each trained method at one budget (RD-E's rounded to whole epochs, CDD's
    and FUN-AD's epochs over the training set's size), with the provenance columns
    the chapter reads."""
    table = pd.read_csv(RESULTS / "benchmark_demo.csv")
    named = grids.named_points(GRIDS / "demo.yaml")
    assert table.point.tolist() == [n for n, _ in named]
    assert (table.status == "ok").all()
    assert not table.duplicated(["method", "regime", "category", "noise_ratio",
                                 "seed"]).any()
    assert table.commit.nunique() == 1 and "+dirty" not in table.commit.iloc[0]
    assert table.commit.iloc[0].isalnum() and len(table.commit.iloc[0]) == 12
    assert (table["cfg.image_size"] == named[0][1]["IMAGE_SIZE"]).all()
    assert (table.profile == "demo").all() and (table.threads == 1).all()
    steps = table.groupby("method").steps
    assert steps.min().loc[["rd", "llb-rd"]].tolist() == [400, 4 * 400]
    assert steps.nunique().loc[["rd", "llb-rd"]].tolist() == [1, 1]
    assert set(table[table.method == "rde"].steps) <= {245, 248}
    assert (table[table.method.isin(["patchcore", "softpatch"])].steps == 0).all()
    for column in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert table[column].between(0, 1).all(), column
    assert table.detection_auroc.isna().tolist() == (table.noise_ratio == 0).tolist()
    for column in ("torch", "fuadnb", "device", "date", "teacher", "fit_seconds",
                   "images_seen"):
        assert table[column].notna().all(), column


def test_the_committed_regimes_table_is_the_whole_rd_regimes_grid():
    """What chapter 02 renders: every point of benchmarks/grids/rd_regimes.yaml once,
    ok, from one clean commit, RD at the demo profile with the same optimiser steps
    everywhere; the clean runs carry the recurring / novel groups, overlap runs the
    seen / unseen."""
    table = pd.read_csv(RESULTS / "rd_regimes_demo.csv")
    named = grids.named_points(GRIDS / "rd_regimes.yaml")
    assert table.point.tolist() == [n for n, _ in named]
    assert (table.status == "ok").all() and (table.method == "rd").all()
    assert not table.duplicated(["regime", "category", "noise_ratio", "seed"]).any()
    assert table.commit.nunique() == 1 and "+dirty" not in table.commit.iloc[0]
    assert (table.profile == "demo").all() and table.steps.nunique() == 1
    assert set(table.regime) == {"iid", "overlap", "recurring"}
    groups = table[table.regime != "iid"]
    assert groups.image_auroc_seen.notna().all()
    assert groups.image_auroc_unseen.notna().all()
    assert table[table.regime == "iid"].image_auroc_seen.isna().all()


def test_the_committed_memory_bank_table_is_the_whole_grid_and_chapter_03_reads_it():
    """What chapter 03 renders: every point of memorybank_regimes.yaml once, ok, from
    one clean commit, on the categories and image size of the RD regimes table it is
    read beside (the chapter's claims about it: tests/test_claims.py)."""
    table = pd.read_csv(RESULTS / "memorybank_regimes_demo.csv")
    named = grids.named_points(GRIDS / "memorybank_regimes.yaml")
    assert table.point.tolist() == [n for n, _ in named]
    assert (table.status == "ok").all()
    assert set(table.method) == {"patchcore", "softpatch"}
    assert table.commit.nunique() == 1 and "+dirty" not in table.commit.iloc[0]
    rd = pd.read_csv(RESULTS / "rd_regimes_demo.csv")
    assert set(table.category) == set(rd.category)
    assert set(table["cfg.image_size"]) == set(rd["cfg.image_size"])


def test_the_committed_funad_diagnosis_is_the_whole_grid_and_chapter_06_reads_it():
    """Chapter 06's diagnosis: every point of funad_diagnosis.yaml once, ok, one
    clean commit; the claims of its reading hold for the committed tables."""
    from fuadnb import evaluate

    table = pd.read_csv(RESULTS / "funad_diagnosis_demo.csv")
    named = grids.named_points(GRIDS / "funad_diagnosis.yaml")
    assert table.point.tolist() == [n for n, _ in named]
    assert (table.status == "ok").all()
    assert table.commit.nunique() == 1 and "+dirty" not in table.commit.iloc[0]
    table["method"] = np.where(table.method == "funad",
                               "funad-" + table["cfg.smoothness"].astype(str), "knn")
    at = evaluate.seed_summary(table, ["image_auroc", "image_auroc_seen",
                                       "detection_auroc"],
                               ["method", "noise_ratio"]).set_index(
        ["method", "noise_ratio"])
    assert at.loc[("funad-code", 0.2), "image_auroc"] > \
        at.loc[("funad-code", 0.0), "image_auroc"] + 0.1                # the rule
    assert at.loc[("funad-code", 0.2), "detection_auroc"] > 0.7
    assert at.loc[("knn", 0.2), "image_auroc_seen"] < 0.05               # hidden
    assert at.loc[("funad-code", 0.2), "image_auroc_seen"] > 0.7
    assert at.loc[("knn", 0.2), "image_auroc"] < at.loc[("funad-code", 0.2),
                                                        "image_auroc"]
    for noise in (0.0, 0.2):                                     # smoothness: same
        assert abs(at.loc[("funad-code", noise), "image_auroc"]
                   - at.loc[("funad-text", noise), "image_auroc"]) < 0.01
    curve = pd.read_csv(RESULTS / "funad_long_curve_demo.csv")
    assert curve.steps.iloc[0] == 10 * 120 and curve.step.max() <= 1200
    at_demo = curve.test_image_auroc[curve.step <= 120].iloc[-1]
    final = curve.final_image_auroc.iloc[0]
    assert at_demo < final < curve.knn_image_auroc.iloc[0] - 0.1   # slow, short of it
    assert 0 < curve.labelled_share.iloc[0] < 0.05


@pytest.mark.parametrize("path", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sweep_is_a_grid_of_the_benchmark_cell(path):
    notebook, _, points = grids.load_grid(path)
    assert notebook == GRIDS / "cell.ipynb" == grids.cell_notebook()
    assert points and "bench/" not in path.read_text()


# grid file -> the committed tables it describes (made before it was a grid file)
TABLES = {"teachers": ["teacher_candidates_demo", "teacher_comparison_lite2_demo"],
          "cdd": ["cdd_demo"],
          "funad": ["funad_demo"], "llb": ["llb_demo"]}
IDENTITY = ("method", "category", "noise_ratio", "seed")


def _value(v):
    """One comparable form of a table cell or a Config value: 2 == 2.0 == "2",
    [0.5, 0.999] == (0.5, 0.999) == "[0.5, 0.999]"."""
    v = yaml.safe_load(v) if isinstance(v, str) else v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        return round(float(v), 9)
    if isinstance(v, (list, tuple)):
        return tuple(_value(x) for x in v)
    return str(v)


def _runs(points) -> list[dict]:
    """What the benchmark cell runs for each grid point: its results row's identity
    (method, category, noise ratio, seed, every Config and strategy field)."""
    defaults = {k: ast.literal_eval(v["default"]) for k, v in
                notebooks.declared_parameters(GRIDS / "cell.ipynb").items()}
    out = []
    for point in points:
        p = defaults | point
        options = {k.lower(): p[k] or None for k in (
            "BACKBONE", "WEIGHTS", "IMAGE_SIZE", "EPOCHS", "STEPS", "ITERATIONS")}
        _, cfg, strategy = experiment.configure(
            p["METHOD"], dataset=p["DATASET"], category=p["CATEGORY"],
            profile=p["PROFILE"], seed=p["SEED"],
            options=options | (yaml.safe_load(p["OPTIONS"]) or {}))
        run = {k: p[k.upper()] for k in IDENTITY}
        run |= {f"cfg.{k}": v for k, v in dataclasses.asdict(cfg).items()}
        if strategy is not None:
            run |= {f"strategy.{k}": v for k, v in dataclasses.asdict(strategy).items()}
        out.append({k: _value(v) for k, v in run.items()})
    return out


@pytest.mark.parametrize("name", TABLES)
def test_the_grid_files_of_the_chapter_tables_remake_them(name):
    """Each committed row is one grid point's run, with its very configuration, and
    each point is a row: the grid file is the recipe of the table."""
    _, _, points = grids.load_grid(GRIDS / f"{name}.yaml")
    planned = _runs(points)
    table = pd.concat([pd.read_csv(RESULTS / f"{t}.csv") for t in TABLES[name]])
    made = [0] * len(planned)
    for row in table.to_dict("records"):
        have = {k: _value(v) for k, v in row.items() if k in IDENTITY or (
            k.startswith(("cfg.", "strategy.")) and not pd.isna(v))}
        hits = [i for i, run in enumerate(planned)
                if all(run.get(k, "absent") == v for k, v in have.items())]
        assert len(hits) == 1, (name, have)
        made[hits[0]] += 1
    assert made == [1] * len(planned)


def test_grid_summary_is_the_metric_by_category_per_varied_parameter():
    table = pd.DataFrame({
        "point": list("abcdef"), "status": ["ok"] * 5 + ["failed"],
        "param.METHOD": ["rd"] * 6, "param.CATEGORY": ["x", "y"] * 3,
        "param.OPTIONS": [np.nan, np.nan, "{k: 1}", "{k: 1}", np.nan, np.nan],
        "param.SEED": [1, 1, 1, 1, 2, 2], "category": ["x", "y"] * 3,
        "method": ["rd"] * 6, "image_auroc": [0.8, 0.9, 0.6, 0.7, 1.0, np.nan]})
    wide = grids.summary(table)
    assert wide.index.names == ["OPTIONS"] and list(wide.index) == ["", "{k: 1}"]
    assert wide.loc["", "x"] == pytest.approx(0.9)        # seeds 1 and 2
    assert wide.loc["", "y"] == pytest.approx(0.9)        # the failed point left out
    assert wide.loc["{k: 1}", "mean"] == pytest.approx(0.65)
    assert grids.summary(table.drop(columns="category")) is None   # not the cell


def test_demo_is_a_grid_of_the_benchmark_cell(tiny_synth, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["demo", "--profile", "smoke", "--root", tiny_synth, "--categories",
            "brick", "--noise", "0", "0.2", "--runs", runs, "--device", "cpu",
            "--option", "epochs=1", "--quiet"]
    assert cli.main([str(a) for a in args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    table = pd.read_csv(runs / "demo" / "grid_results.csv")
    assert table.point.tolist() == ["CATEGORY-brick__NOISE_RATIO-0.0",
                                    "CATEGORY-brick__NOISE_RATIO-0.2"]
    assert (table.status == "ok").all() and (table.profile == "smoke").all()
    assert (table["cfg.epochs"] == 1).all() and table.n_injected.tolist() == [0, 2]
    assert "image_auroc" in out and (runs / "results.csv").is_file()
    assert grids.pending(runs / "demo" / "grid.yaml", runs / "demo") == []
    assert cli.main([str(a) for a in args[:-3]] + ["--option", "epochs=0"]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err   # before any notebook


def test_gpu_devices_are_the_visible_ones(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert grids.gpu_devices() == []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert grids.gpu_devices() == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a, GPU-b,GPU-c")
    assert grids.gpu_devices() == ["GPU-a", "GPU-b"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert grids.gpu_devices() == ["0", "1"]


@pytest.fixture
def gpu_notebook(write_notebook, tmp_path):
    """Records the CUDA_VISIBLE_DEVICES its kernel saw ("unset" if none)."""
    write_notebook(tmp_path / "gpu.ipynb", "X: int = 1  # a number",
                   "import os\nfrom fuadnb import nb\nnb.record({'gpu': "
                   "os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return _grid(tmp_path, "notebook: gpu.ipynb\ngrid:\n  X: [1, 2, 3]\n")


def test_each_job_gets_its_own_gpu_in_its_kernel_only(gpu_notebook, tmp_path,
                                                      monkeypatch):
    """--jobs 2 on (a faked) two GPUs 5 and 7: the first point alone on slot 0's GPU,
    then two kernels at once, one per GPU; this process's environment untouched."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    logged = []
    table = grids.run_grid(gpu_notebook, tmp_path / "two", jobs=2, progress=False,
                           log=logged.append)
    assert (table.status == "ok").all(), table.error.tolist()
    assert table.gpu.astype(str).iloc[0] == "5"
    assert sorted(table.gpu.astype(str).iloc[1:]) == ["5", "7"]   # both at once
    assert logged[0] == "[1/3] X-1: running on GPU 5"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"
    one = grids.run_grid(gpu_notebook, tmp_path / "one", jobs=1, progress=False,
                         log=lambda _: None)
    assert (one.gpu.astype(str) == "5,7").all()      # one job: the process's own
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    cpu = grids.run_grid(gpu_notebook, tmp_path / "cpu", jobs=2, progress=False,
                         log=lambda _: None)
    assert (cpu.gpu == "unset").all()                # no GPU: nothing set


def test_a_grid_file_orders_its_points(write_notebook, tmp_path):
    write_notebook(tmp_path / "toy.ipynb", "A: str = 'x'  # a\nB: int = 0  # b\n"
                   "D: str = ''  # d", "pass")
    grid = tmp_path / "g.yaml"
    grid.write_text("notebook: toy.ipynb\norder: [B, A]\n"
                    "grid:\n  - {A: [p, q], B: [1]}\n  - {A: [p], B: [2, 1], D: [e]}\n")
    # B first (1 before 2, as first seen), then A; the file's order within a tie
    assert [n for n, _ in grids.named_points(grid)] == [
        "A-p__B-1", "A-p__B-1__D-e", "A-q__B-1", "A-p__B-2__D-e"]
    grid.write_text(grid.read_text().replace("order: [B, A]", "order: [A]"))
    assert [n for n, _ in grids.named_points(grid)] == [
        "A-p__B-1", "A-p__B-2__D-e", "A-p__B-1__D-e", "A-q__B-1"]
    for bad in ("order: [Z]", "order: B", "order: [D]"):   # D: not every point's
        grid.write_text(f"notebook: toy.ipynb\n{bad}\ngrid:\n  - {{A: [p], B: [1]}}\n"
                        "  - {A: [q], B: [1], D: [e]}\n")
        with pytest.raises(notebooks.BookError, match="'order'"):
            grids.named_points(grid)
