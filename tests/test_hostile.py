"""Issue #29: the second round of hostile inputs, one test (or more) per class.

1. a result computed from other inputs is never served (the grid's "done", the
   in-process hash memo, ``results``);
2. a path built from user input never leads outside its folder;
3. one bad run file hides nothing;
4. an interrupted grid stops at once and keeps what finished;
5. mistakes are one ``fuadnb: error:`` line before any kernel or training.

Each test failed on the code before the fix (dccbc96).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from fuadnb import cli, data, evaluate, evidence, experiment, runs
from fuadnb.experiment import Scenario

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys, args, *fragments) -> str:
    """One ``fuadnb: error:`` line on stderr, exit 2, each fragment in it."""
    try:
        code, out, err = run_cli(capsys, *args)
    except SystemExit as stop:   # argparse
        code, (out, err) = stop.code, capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fuadnb: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def smoke(root, runs_root, *extra):
    return ("run", "--root", root, "--category", "brick", "--profile", "smoke",
            "--runs", runs_root, "--quiet", "--device", "cpu", "--noise", "0", *extra)


def flip_first_training_image(root: Path) -> Path:
    victim = sorted((root / "brick" / "train" / "good").glob("*.png"))[0]
    Image.open(victim).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(victim)
    return victim


# 1. a result computed from other inputs is never served ------------------------

def test_a_rewritten_file_with_its_mtime_restored_gets_a_new_hash(tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr(runs, "RECENT", 0)   # remember even a file just written
    f = tmp_path / "image.png"
    f.write_bytes(b"aaaa")
    before = runs.file_hash(f)
    assert any(k[0] == str(f) for k in runs._FILE_HASHES)    # remembered
    st = f.stat()
    time.sleep(0.01)
    f.write_bytes(b"bbbb")                                  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))        # same mtime
    assert f.stat().st_mtime_ns == st.st_mtime_ns
    assert runs.file_hash(f) != before


def test_results_hides_rows_of_changed_data_and_says_why(tiny_copy, tmp_path, capsys):
    runs_root = tmp_path / "runs"
    code, _, err = run_cli(capsys, *smoke(tiny_copy, runs_root))
    assert code == 0, err
    row = runs.collect(runs_root).iloc[0].to_dict()
    assert experiment.current(row) == "current"
    code, out, _ = run_cli(capsys, "results", "--runs", runs_root)
    assert code == 0 and "brick" in out and "current" in out
    flip_first_training_image(tiny_copy)
    assert experiment.current(row) == "changed: train_images"
    code, out, _ = run_cli(capsys, "results", "--runs", runs_root)
    assert code == 0 and "1 run(s) hidden" in out and "brick" not in out
    code, out, _ = run_cli(capsys, "results", "--runs", runs_root, "--all")
    assert code == 0 and "changed: train_images" in out
    mask = next((tiny_copy / "brick" / "ground_truth").rglob("*.png"))
    Image.open(mask).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(mask)
    assert "test_masks" in experiment.current(row)          # a mask-only change
    shutil.rmtree(tiny_copy)
    assert experiment.current(row).startswith("missing: ")


def test_a_grid_point_reruns_when_its_training_images_change(
        tiny_copy, tmp_path, capsys):
    from fuadnb import grid
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({
        "notebook": str(REPO / "benchmarks" / "grids" / "cell.ipynb"),
        "fixed": {"PROFILE": "smoke", "DATA_ROOT": str(tiny_copy), "NOISE_RATIO": 0.0,
                  "RUNS_ROOT": str(tmp_path / "runs"), "DEVICE": "cpu"},
        "grid": {"CATEGORY": ["brick"]}}))
    out, table = tmp_path / "out", tmp_path / "committed.csv"
    code, _, err = run_cli(capsys, "grid", grid_file, "--out", out, "--quiet",
                           "--table", table)
    assert code == 0, err
    assert grid.pending(grid_file, out) == []
    # a fresh clone: no executed notebooks, only the committed table
    assert grid.pending(grid_file, tmp_path / "fresh", resume=table) == []
    assert grid.pending(grid_file, tmp_path / "fresh") == ["CATEGORY-brick"]
    first = pd.read_csv(table)["image_auroc"].iloc[0]
    flip_first_training_image(tiny_copy)
    assert grid.pending(grid_file, out) == ["CATEGORY-brick"]
    assert grid.pending(grid_file, tmp_path / "fresh", resume=table) == [
        "CATEGORY-brick"]
    code, text, err = run_cli(capsys, "grid", grid_file, "--out", out, "--quiet",
                              "--table", table)
    assert code == 0 and "done before" not in text, err
    rows = pd.read_csv(table, dtype=str)
    assert len(rows) == 1 and experiment.current(rows.iloc[0].to_dict()) == "current"
    assert grid.pending(grid_file, out) == []
    assert np.isfinite(first)


def test_a_recipe_holds_from_another_folder_and_through_a_link(
        tiny_synth, tmp_path, monkeypatch):
    """Relative option paths are read from the run's folder, a linked data root is
    kept as the link: a row is current wherever `current` is asked from."""
    import torch

    from fuadnb.nn import backbones
    work = tmp_path / "work"
    work.mkdir()
    torch.manual_seed(0)
    torch.save(backbones.SPECS["efficientnet_lite2"].build().state_dict(),
               work / "teacher.pth")
    (tmp_path / "link").symlink_to(tiny_synth)
    monkeypatch.chdir(work)
    result = experiment.run("rd", Scenario("synthetic", "../link", "brick"),
                            profile="smoke", device="cpu", runs_root="runs",
                            options={"weights": "./teacher.pth"})
    recipe = json.loads(result.row["recipe"])
    assert recipe["scenario"]["root"].endswith("link")          # not the target
    monkeypatch.chdir(tmp_path)
    assert experiment.current(result.row) == "current"
    torch.manual_seed(1)
    torch.save(backbones.SPECS["efficientnet_lite2"].build().state_dict(),
               work / "teacher.pth")
    assert experiment.current(result.row) == "changed: teacher_weights"


# 2. paths stay inside their folder ------------------------------------------------

@pytest.mark.parametrize("category", ["esc/../../../../outside/esc", "../ds/base",
                                      "..", ".hidden", "a\\b"])
def test_a_category_that_leads_out_of_its_folder_is_refused(
        tiny_synth, tmp_path, capsys, category):
    runs_root = tmp_path / "runs"
    args = list(smoke(tiny_synth, runs_root))
    args[args.index("brick")] = category
    expect_error(capsys, args, "category", "plain name")
    assert not runs_root.exists() or not any(runs_root.rglob("*.json"))
    assert not (tmp_path / "outside").exists()


def test_a_run_folder_outside_its_root_is_refused(tmp_path):
    split = dict.fromkeys(["definition", "source", "injected_ids",
                           "removed_from_test_ids", "n_clean_train"])
    for category in ("../../../../escape", "a/../../b"):
        spec = runs.RunSpec("rd", "synthetic", category, 0.0, "iid", 1, "smoke",
                            cfg={}, split=split, root=tmp_path / "runs")
        with pytest.raises(ValueError, match="run folder: category"):
            spec.dir   # noqa: B018
    root = tmp_path / "runs"
    (tmp_path / "elsewhere").mkdir()
    root.mkdir()
    (root / "rd").symlink_to(tmp_path / "elsewhere")       # a link out of --runs
    spec = runs.RunSpec("rd", "synthetic", "brick", 0.0, "iid", 1, "smoke", cfg={},
                        split=split, root=root)
    with pytest.raises(ValueError, match="leads outside"):
        spec.dir   # noqa: B018


def test_grid_outputs_are_refused_inside_the_dataset(tiny_synth, tmp_path, capsys):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({
        "notebook": str(REPO / "benchmarks" / "grids" / "cell.ipynb"),
        "fixed": {"PROFILE": "smoke", "DATA_ROOT": str(tiny_synth)},
        "grid": {"CATEGORY": ["brick"]}}))
    expect_error(capsys, ("grid", grid_file, "--table", tiny_synth / "t.csv"),
                 "--table", "inside the dataset folder")
    expect_error(capsys, ("grid", grid_file, "--out", tiny_synth / "brick" / "o"),
                 "--out", "inside the dataset folder")
    expect_error(capsys, ("grid", grid_file, "--table", tmp_path), "--table",
                 "is a folder")
    expect_error(capsys, ("results", "--runs", tmp_path, "--csv", tmp_path), "--csv",
                 "is a folder")


# 3. one bad run file hides nothing ---------------------------------------------------

ROW = {"method": "rd", "dataset": "synthetic", "category": "brick",
       "noise_ratio": 0.0, "regime": "iid", "seed": 1, "profile": "smoke",
       "run_key": "abc", "image_auroc": 0.5}


@pytest.mark.parametrize("text, why", [
    ("[]", "found list"), ('"a text"', "found str"), ("{}", "no method"),
    ("{half", "unreadable"), (json.dumps(ROW | {"seed": {"a": 1}}), "seed of the"),
    (json.dumps(ROW | {"method": ["rd"]}), "method of the wrong kind")])
def test_a_malformed_metrics_file_is_listed_and_hides_nothing(
        tiny_synth, tmp_path, capsys, text, why):
    runs_root = tmp_path / "runs"
    code, _, err = run_cli(capsys, *smoke(tiny_synth, runs_root))
    assert code == 0, err
    bad = runs_root / "rd" / "synthetic" / "brick" / "n0.00-iid" / "s1-broken"
    bad.mkdir(parents=True)
    (bad / "fit.json").write_text("{}")
    (bad / "metrics.json").write_text(text)
    csv = tmp_path / "r.csv"
    code, out, err = run_cli(capsys, "results", "--runs", runs_root, "--csv", csv)
    assert code == 2
    assert err.startswith("fuadnb: error: 1 run folder(s) with a malformed") and \
        str(bad) in err
    assert "brick" in out and f"{bad}: malformed metrics.json" in out and why in out
    assert len(pd.read_csv(csv)) == 1                       # the good run, no NaN row


# 4. an interrupted grid stops -------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_grid_starts_nothing_more_and_keeps_finished_rows(
        write_notebook, tmp_path, signum):
    write_notebook(tmp_path / "toy.ipynb", "X: int = 1  # a point",
                   "import pathlib, time\n"
                   "pathlib.Path(f'started-{X}').touch()\n"
                   "time.sleep(60 if X == 2 else 0)\n"
                   "pathlib.Path(f'finished-{X}').touch()")
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({"notebook": "toy.ipynb",
                                         "grid": {"X": [1, 2, 3]}}))
    out, table = tmp_path / "out", tmp_path / "table.csv"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "fuadnb", "grid", grid_file,
                             "--out", out, "--table", table, "--quiet"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started-2").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert time.monotonic() - started < 30          # point 2's kernel was stopped
    assert "fuadnb: interrupted" in stderr
    assert not (tmp_path / "finished-2").exists()
    assert not (tmp_path / "started-3").exists()     # nothing started after it
    for written in (out / "grid_results.csv", table):
        rows = pd.read_csv(written)
        assert rows["point"].tolist() == ["X-1"] and rows["status"].tolist() == ["ok"]


# 5. mistakes: one line, before any kernel -------------------------------------------

@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if a notebook kernel would start."""
    from fuadnb import book, grid

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was started")
    monkeypatch.setattr(book, "execute", refuse)
    monkeypatch.setattr(grid, "execute", refuse)


def test_book_refuses_a_parameter_no_chapter_declares(no_kernel, capsys):
    line = expect_error(capsys, ("book", "-p", "CATEGROY=gravel", "-p",
                                 "NOISE_RATO=0.3"), "CATEGROY", "NOISE_RATO")
    assert "did you mean CATEGORY?" in line and "did you mean NOISE_RATIO?" in line


def test_book_checks_the_curve_interval_against_the_schedule(no_kernel, tiny_synth,
                                                             capsys):
    expect_error(capsys, ("book", "--profile", "smoke", "--root", tiny_synth, "-p",
                          "CATEGORY=brick"),
                 "02_reverse_distillation", "CURVE_EVERY", "optimiser steps")


def test_book_names_a_missing_root_as_given(no_kernel, capsys):
    expect_error(capsys, ("book", "--dataset", "mvtec_ad", "--root", "no/such/dir"),
                 "--root no/such/dir", "does not exist")


def test_book_refuses_bad_yaml_in_a_parameter(no_kernel, capsys):
    expect_error(capsys, ("book", "-p", "CATEGORY=[unclosed"), "CATEGORY",
                 "not valid YAML")


@pytest.mark.parametrize("spec, fragment", [
    ({"notebook": "toy.ipynb", "fixed": ["X", 1], "grid": {"X": [1]}}, "'fixed'"),
    ({"notebook": "toy.ipynb", "grid": {}}, "non-empty mapping"),
    ({"notebook": "toy.ipynb", "grid": [{}]}, "non-empty mapping"),
    ({"notebook": "toy.ipynb", "grid": {"X": [1.5]}}, "X=1.5 must be int"),
    ({"notebook": "toy.ipynb", "grid": {"XX": [1]}}, "did you mean X?"),
])
def test_a_malformed_grid_file_is_one_error(no_kernel, write_notebook, tmp_path,
                                            capsys, spec, fragment):
    write_notebook(tmp_path / "toy.ipynb", "X: int = 1  # a point", "X")
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump(spec))
    expect_error(capsys, ("grid", grid_file, "--out", tmp_path / "o"), fragment)


def test_grid_checks_run_parameters_without_a_data_root(no_kernel, tmp_path,
                                                         capsys):
    for fixed, fragment in [({"CATEGORY": "../x"}, "plain name"),
                            ({"NOISE_RATIO": -1.0}, "NOISE_RATIO"),
                            ({"OPTIONS": "{no_such_field: 1}"}, "no_such_field")]:
        grid_file = tmp_path / "g.yaml"
        grid_file.write_text(yaml.safe_dump({
            "notebook": str(REPO / "benchmarks" / "grids" / "cell.ipynb"),
            "fixed": {"PROFILE": "smoke"} | fixed, "grid": {"SEED": [1]}}))
        expect_error(capsys, ("grid", grid_file, "--out", tmp_path / "o"), fragment)


def test_book_checks_parameter_types(no_kernel, capsys):
    expect_error(capsys, ("book", "-p", "CURVE_EVERY=abc"), "CURVE_EVERY='abc'",
                 "must be int")


def test_grid_checks_run_parameters_before_any_kernel(no_kernel, tiny_synth,
                                                      tmp_path, capsys):
    grid_file = tmp_path / "g.yaml"
    grid_file.write_text(yaml.safe_dump({
        "notebook": str(REPO / "benchmarks" / "grids" / "cell.ipynb"),
        "fixed": {"PROFILE": "smoke", "DATA_ROOT": str(tiny_synth)},
        "grid": {"CATEGORY": ["brick", "../x"]}}))
    expect_error(capsys, ("grid", grid_file), "CATEGORY", "plain name")
    grid_file.write_text(yaml.safe_dump({
        "notebook": str(REPO / "benchmarks" / "grids" / "cell.ipynb"),
        "fixed": {"PROFILE": "smoke", "DATA_ROOT": str(tiny_synth),
                  "OPTIONS": "{unclosed"},
        "grid": {"CATEGORY": ["brick"]}}))
    expect_error(capsys, ("grid", grid_file), "OPTIONS", "not valid YAML")


def test_an_image_too_large_to_decode_is_one_named_error(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)    # 10000 > 2 x 1000
    rows = pd.DataFrame([{"image_path": str(path), "mask_path": None}])
    with pytest.raises(data.DatasetError, match="huge.png: the image is too large"):
        data.images.load(rows, 64, masks=False)


def test_a_negative_seed_names_the_option(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--seed", "-1"),
                 "--seed", "-1")


@pytest.mark.parametrize("field, value", [
    ("noise_ratio", None), ("root", None), ("category", 5), ("seed", None),
    ("seed", -1), ("regime", "sometimes"), ("definition", "share"),
    ("dataset", "kolektor")])
def test_scenario_names_the_bad_field(tmp_path, field, value):
    kw = {"dataset": "synthetic", "root": tmp_path, "category": "brick"} | {
        field: value}
    with pytest.raises(ValueError, match=rf"\(Scenario {field}, --"):
        Scenario(**kw)


def test_contaminate_names_the_bad_argument(tiny_synth):
    index = data.index("synthetic", tiny_synth, "brick")
    with pytest.raises(data.contamination.ContaminationError, match="seed"):
        data.contaminate(index, 0.1, seed=None)
    with pytest.raises(data.contamination.ContaminationError, match="'split'"):
        data.contaminate(index.drop(columns="split"), 0.1, seed=1)
    with pytest.raises(data.contamination.ContaminationError, match="DataFrame"):
        data.contaminate(index.to_dict("records"), 0.1, seed=1)
    with pytest.raises(data.DatasetError, match="dataset root"):
        data.index("synthetic", None, "brick")


def test_experiment_run_and_evaluate_name_the_bad_argument(tiny_synth, tmp_path):
    scenario = Scenario("synthetic", tiny_synth, "brick")
    with pytest.raises(ValueError, match="profile"):
        experiment.run("rd", scenario, profile="fast", runs_root=tmp_path)
    with pytest.raises(ValueError, match="scenario must be"):
        experiment.run("rd", {"category": "brick"}, runs_root=tmp_path)
    with pytest.raises(ValueError, match="curve_every"):
        experiment.run("rd", scenario, curve_every=-1, runs_root=tmp_path)
    with pytest.raises(ValueError, match=r"evidence.recovery: .*\['regime'"):
        evidence.recovery(pd.DataFrame({"method": ["rd"], "noise_ratio": [0.1],
                                        "category": ["a"], "seed": [1],
                                        "image_auroc": [0.5]}), "image_auroc")
    with pytest.raises(ValueError, match="evaluate.score: scores must be a 1-D array "
                       "of length 3"):
        evaluate.score(labels=np.array([0, 1, 1]), scores=np.zeros(2),
                       masks=np.zeros((3, 4, 4)), maps=np.zeros((3, 4, 4)))
    assert json.loads(json.dumps(scenario.as_dict()))["category"] == "brick"


def test_the_summary_of_rows_resumed_as_text_is_numeric():
    """Rows resumed from a committed table are read as text (`grid.read_table`):
    the printed summary still averages them (it raised before)."""
    from fuadnb import grid
    rows = pd.DataFrame({"status": ["ok", "ok", "ok"], "category": ["a", "a", "b"],
                         "image_auroc": ["0.5", 0.7, ""],
                         "method": ["rd", "rd", "rd"]})
    wide = grid.summary(rows)
    assert wide.loc["rd", "a"] == pytest.approx(0.6)   # "b" has no number: left out
