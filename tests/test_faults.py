"""Issue #19: trust contents, not names. The run cache and the grid never serve a
stale result, and every bad input is one ``fuadnb: error:`` line (exit 2) that names
the file or option and the fix, given before training, with no run folder left
half-made."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from fuadnb import cli, models, runs
from fuadnb.data import images, synthetic
from fuadnb.nn import backbones


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def smoke(root, runs_root, *extra):
    """A smoke run on the tiny brick; noise 0 unless `extra` says otherwise."""
    noise = () if "--noise" in extra else ("--noise", "0")
    return ("run", "--root", root, "--category", "brick", "--profile", "smoke",
            "--runs", runs_root, "--quiet", "--device", "cpu", *noise, *extra)


def ok(capsys, *args) -> Path:
    """Run the CLI, expect success, return the run folder it printed."""
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    return Path(out.rsplit("run folder: ", 1)[1].strip())


def error_line(capsys, *args, code=2) -> str:
    got, out, err = run_cli(capsys, *args)
    assert got == code, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def expect_error(capsys, args, *fragments) -> str:
    line = error_line(capsys, *args)
    assert line.startswith("fuadnb: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def nothing_written(runs_root: Path) -> bool:
    """No file under `runs_root` (empty parent folders aside)."""
    return not runs_root.exists() or not any(p.is_file() for p in runs_root.rglob("*"))


def fit_calls(monkeypatch) -> list:
    """Count RD trainings."""
    calls, fit = [], models.get("rd").fit
    monkeypatch.setattr(models.get("rd"), "fit",
                        lambda *a, **k: calls.append(1) or fit(*a, **k))
    return calls


# 1. the run cache keys contents -------------------------------------------------

def test_regenerated_data_at_the_same_root_retrains(tiny_copy, tmp_path, capsys,
                                                    monkeypatch):
    calls, runs_root = fit_calls(monkeypatch), tmp_path / "runs"
    first = ok(capsys, *smoke(tiny_copy, runs_root))
    metrics = (first / "metrics.json").read_bytes()
    code, _, err = run_cli(capsys, "generate", "--root", tiny_copy, "--tiny", "--seed",
                           1, "--categories", "brick", "--overwrite", "--quiet")
    assert code == 0, err
    second = ok(capsys, *smoke(tiny_copy, runs_root))
    assert calls == [1, 1] and second != first
    assert (first / "metrics.json").read_bytes() == metrics   # never overwritten


def test_another_copy_retrains_an_identical_one_does_not(tiny_synth, tiny_copy,
                                                         tmp_path, capsys, monkeypatch):
    calls, runs_root = fit_calls(monkeypatch), tmp_path / "runs"
    first = ok(capsys, *smoke(tiny_synth, runs_root))
    assert ok(capsys, *smoke(tiny_copy, runs_root)) == first and calls == [1]
    victim = sorted((tiny_copy / "brick" / "train" / "good").glob("*.png"))[0]
    Image.open(victim).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(victim)
    assert ok(capsys, *smoke(tiny_copy, runs_root)) != first and calls == [1, 1]


def lite2_weights(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(backbones.SPECS["efficientnet_lite2"].build().state_dict(), path)
    return path


def test_weights_file_replaced_in_place_retrains(tiny_synth, tmp_path, capsys,
                                                 monkeypatch):
    calls, runs_root = fit_calls(monkeypatch), tmp_path / "runs"
    weights = lite2_weights(tmp_path / "teacher.pth", seed=0)
    first = ok(capsys, *smoke(tiny_synth, runs_root, "--weights", weights))
    assert ok(capsys, *smoke(tiny_synth, runs_root, "--weights", weights)) == first
    lite2_weights(weights, seed=1)
    second = ok(capsys, *smoke(tiny_synth, runs_root, "--weights", weights))
    assert calls == [1, 1] and second != first


def test_fingerprints_are_cached_per_file_and_follow_contents(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(b"one")
    before = runs.fingerprint([a])
    assert runs.fingerprint([a]) == before
    a.write_bytes(b"two")                  # same size, new mtime
    assert runs.fingerprint([a]) != before
    b = tmp_path / "b.bin"
    b.write_bytes(b"two")
    assert runs.fingerprint([b]) == runs.fingerprint([a])   # names do not count


# 2. the grid keys every parameter --------------------------------------------------

@pytest.fixture
def toy_grid(write_notebook, tmp_path):
    """A one-cell notebook that fails when X is negative, and a grid file over it."""
    pytest.importorskip("fuadnb.grid")
    write_notebook(tmp_path / "toy.ipynb",
                   "X: int = 1  # a number\nEPOCHS: int = 30  # fixed",
                   "assert X >= 0, 'X must not be negative'")

    def write(fixed, values):
        path = tmp_path / "grid.yaml"
        path.write_text(yaml.safe_dump({"notebook": "toy.ipynb", "fixed": fixed,
                                        "grid": {"X": values}}))
        return path
    return write


def test_changed_fixed_parameters_and_notebook_rerun(toy_grid, tmp_path, capsys):
    from fuadnb import grid as grids
    out = tmp_path / "out"
    grid = toy_grid({"EPOCHS": 30}, [1])
    code, text, err = run_cli(capsys, "grid", grid, "--out", out, "--quiet")
    assert code == 0, err
    assert grids.pending(grid, out) == []
    assert (out / "X-1.ipynb").is_file()                # names stay readable
    grid = toy_grid({"EPOCHS": 5}, [1])
    assert grids.pending(grid, out) == ["X-1"]
    code, text, _ = run_cli(capsys, "grid", grid, "--out", out, "--dry-run")
    assert code == 0 and "X-1" in text and "1 grid point(s)" in text
    grid = toy_grid({"EPOCHS": 30}, [1])
    assert grids.pending(grid, out) == []
    notebook = tmp_path / "toy.ipynb"
    notebook.write_text(notebook.read_text().replace("must not", "may not"))
    assert grids.pending(grid, out) == ["X-1"]


def test_a_grid_with_failed_points_exits_2_naming_them(toy_grid, tmp_path, capsys):
    grid = toy_grid({"EPOCHS": 30}, [-1])
    line = error_line(capsys, "grid", grid, "--out", tmp_path / "out", "--quiet")
    assert line.startswith("fuadnb: error: 1 of 1 grid point(s) failed: X--1"), line
    assert "grid_results.csv" in line and "X must not be negative" in line


# 3. one line, exit 2, before training, nothing half-made ----------------------------

def test_empty_training_folder(tiny_copy, tmp_path, capsys):
    for png in (tiny_copy / "brick" / "train" / "good").glob("*.png"):
        png.unlink()
    expect_error(capsys, smoke(tiny_copy, tmp_path / "runs"), "no training images",
                 "train/good")
    assert nothing_written(tmp_path / "runs")


@pytest.mark.parametrize("option, fragments", [
    ("lr=abc", ("lr must be a number", "'abc'")),
    ("batch_size=2.5", ("batch_size must be an integer", "2.5")),
    ("epochs=true", ("epochs must be an integer",)),
])
def test_option_of_the_wrong_type(tiny_synth, tmp_path, capsys, option, fragments):
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--option", option),
                 *fragments)
    assert nothing_written(tmp_path / "runs")


def test_an_option_given_twice(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--option",
                               "batch_size=4", "--batch-size", "8"),
                 "--option batch_size=4", "--batch-size 8", "give it once")
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--option", "lr=0.1",
                               "--option", "lr=0.2"), "lr=0.1", "lr=0.2")


def test_weights_file_that_is_not_a_checkpoint(tiny_synth, tmp_path, capsys):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--weights", junk),
                 "junk.pth", "not a readable PyTorch state dict")
    other = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--weights", other),
                 "linear.pth", "does not fit efficientnet_lite2", "missing")
    assert nothing_written(tmp_path / "runs")


def test_unsupported_device(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--device", "mps"),
                 "--device mps", "cpu")


def test_runs_folder_that_is_a_file_or_read_only(tiny_synth, tmp_path, capsys):
    afile = tmp_path / "runs.txt"
    afile.write_text("")
    expect_error(capsys, smoke(tiny_synth, afile), "runs.txt", "is a file", "--runs")
    locked = Path("/sys/fuadnb-runs")        # unwritable even for root
    try:
        locked.mkdir()
    except OSError:
        expect_error(capsys, smoke(tiny_synth, locked), str(locked), "--runs")
    else:
        locked.rmdir()
        pytest.skip("no read-only folder to try")


def test_image_size_too_large(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke(tiny_synth, tmp_path / "runs", "--image-size",
                               "100000"), "image_size must be at most")


def test_truncated_or_corrupt_cached_files(tiny_synth, tmp_path, capsys):
    runs_root = tmp_path / "runs"
    folder = ok(capsys, *smoke(tiny_synth, runs_root))
    weights = folder / "weights.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[:len(good) // 2])
    expect_error(capsys, smoke(tiny_synth, runs_root), "weights.pt",
                 "unreadable cached weights", f"delete {folder}")
    weights.write_bytes(good)
    (folder / "fit.json").write_text("{not json")
    expect_error(capsys, smoke(tiny_synth, runs_root), "fit.json", f"delete {folder}")


def test_ctrl_c_mid_fit_exits_130_and_leaves_no_folder(tiny_synth, tmp_path, capsys,
                                                       monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(models.get("rd"), "fit", interrupted)
    line = error_line(capsys, *smoke(tiny_synth, tmp_path / "runs"), code=130)
    assert "interrupted" in line
    assert nothing_written(tmp_path / "runs")
    assert runs.incomplete(tmp_path / "runs") == []


# 4. silent wrong behaviour ----------------------------------------------------------

def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    grey = np.full((64, 64), 32768, np.uint16)
    grey[:, :32] = 8192
    Image.fromarray(grey).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    loaded, _ = images.load([{"image_path": str(tmp_path / "deep.png"),
                              "mask_path": None}], 64, masks=False)
    assert loaded.shape == (1, 3, 64, 64)
    assert loaded[0, :, :, 40].unique().tolist() == [round(32768 / 257)]
    assert loaded[0, :, :, 10].unique().tolist() == [round(8192 / 257)]
    as_float = Image.fromarray(np.full((8, 8), 0.5, np.float32))
    assert np.asarray(images._to_rgb(as_float)).max() == 128


def test_generate_size_zero_is_refused(tmp_path, capsys):
    expect_error(capsys, ("generate", "--root", tmp_path / "s", "--tiny", "--size",
                          "0", "--quiet"), "power of two", "0")
    assert not (tmp_path / "s").exists()


# 5. early and helpful -------------------------------------------------------------

def test_no_test_anomaly_left_is_refused_before_training(tiny_copy, tmp_path, capsys,
                                                         monkeypatch):
    for pool in tiny_copy.glob("*/pool"):     # as a real dataset: iid draws from test
        shutil.rmtree(pool)
    calls = fit_calls(monkeypatch)
    expect_error(capsys, smoke(tiny_copy, tmp_path / "runs", "--noise", "0.8"),
                 "leaves none to test on", "regime 'overlap'")
    assert calls == [] and nothing_written(tmp_path / "runs")


def test_too_high_ratio_offers_what_the_cli_can_do(tiny_synth, tmp_path, capsys):
    """The error names the CLI's way out (--repeat, SoftPatch+), and taking it runs:
    the row counts the augmented copies."""
    runs_root = tmp_path / "runs"
    line = expect_error(capsys, smoke(tiny_synth, runs_root, "--noise", "3",
                                      "--method", "patchcore"),
                        "noise ratio <=", "--repeat")
    assert "from Python" not in line and nothing_written(runs_root)
    folder = ok(capsys, *smoke(tiny_synth, runs_root, "--noise", "3", "--method",
                               "patchcore", "--repeat"))
    row = json.loads((folder / "metrics.json").read_text())
    n_pool = len(list((tiny_synth / "brick" / "pool").rglob("*.png")))
    assert row["n_repeated"] == row["n_injected"] - n_pool > 0


def test_results_lists_incomplete_and_unreadable_runs(tiny_synth, tmp_path, capsys,
                                                      monkeypatch):
    runs_root = tmp_path / "runs"
    done = ok(capsys, *smoke(tiny_synth, runs_root))
    broken = ok(capsys, *smoke(tiny_synth, runs_root, "--noise", "0.1"))
    (broken / "metrics.json").write_text("{half")
    killed = done.parent / f".{done.name}.tmp-999999999-abcd"
    killed.mkdir()
    (killed / "config.json").write_text("{}")

    def no_memory(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(models.get("rd"), "predict", no_memory)
    expect_error(capsys, smoke(tiny_synth, runs_root, "--noise", "0.2"),
                 "out of memory", "--image-size")
    code, out, err = run_cli(capsys, "results", "--runs", runs_root)
    assert code == 2, err        # a malformed run is an error, the others still listed
    assert err.startswith("fuadnb: error: 1 run folder(s) with a malformed")
    assert "3 incomplete run folder(s)" in out
    assert f"{broken}: malformed metrics.json: unreadable" in out
    assert f"{killed}: interrupted training" in out
    assert "trained but not evaluated" in out
    assert len(runs.collect(runs_root)) == 1          # the finished one still listed
    monkeypatch.undo()
    ok(capsys, *smoke(tiny_synth, runs_root, "--noise", "0.1"))   # repairs it
    assert json.loads((broken / "metrics.json").read_text())["noise_ratio"] == 0.1


def test_generate_leaves_no_temporary_folder(tmp_path, capsys, monkeypatch):
    root = tmp_path / "s"
    stale = tmp_path / f".s.tmp-999999999-{'a' * 12}"
    stale.mkdir()
    (stale / "half.png").write_bytes(b"")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(synthetic.build, "_render_all", interrupted)
    error_line(capsys, "generate", "--root", root, "--tiny", "--categories", "brick",
               "--quiet", code=130)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _cached_linear() -> torch.nn.Module:
    """A one-weight model with what `runs.load_or_fit` keeps (`runs.Cached`)."""
    model = torch.nn.Linear(1, 1)
    model.reproducible_prefixes, model.history = (), []
    model.trace, model.curve = {}, []
    return model


def test_a_training_removes_stale_temporary_folders(tmp_path):
    split = {"definition": "softpatch", "source": "test", "injected_ids": [],
             "removed_from_test_ids": [], "n_clean_train": 1}
    spec = runs.RunSpec("rd", "synthetic", "brick", 0.0, "iid", 1, "smoke",
                        {"epochs": 1}, split, root=tmp_path)
    spec.dir.parent.mkdir(parents=True)
    dead = spec.dir.parent / ".s1-other.tmp-999999999-ab"      # a killed training
    alive = spec.dir.parent / f".s1-other.tmp-{os.getpid()}-ab"  # one still running
    dead.mkdir()
    alive.mkdir()
    runs.load_or_fit(spec, build=_cached_linear, fit=_cached_linear)
    assert not dead.exists() and alive.exists() and (spec.dir / "fit.json").is_file()
    assert [p for p, _ in runs.incomplete(tmp_path)] == [alive, spec.dir]
