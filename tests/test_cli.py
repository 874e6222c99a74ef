"""The command line end to end on the tiny benchmark, and one clear error per bad input
(DESIGN.md §7)."""

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fuadnb import cli


def run_cli(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def smoke_run(root, runs, *extra):
    return [str(a) for a in ("run", "--root", root, "--category", "brick", "--profile",
                             "smoke", "--runs", runs, "--quiet", *extra)]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("generate", "run", "demo", "book", "grid", "results"):
        assert command in out
    for command, options in {"run": ["--noise", "--regime", "--definition", "--steps",
                                     "--curve-every", "--profile", "--weights",
                                     "--device", "--runs"],
                             "generate": ["--size", "--tiny", "--workers", "--seed",
                                          "--v3"],
                             "demo": ["--categories", "--noise", "--profile"],
                             "book": ["--parameter", "--no-execute", "--profile",
                                      "--dataset", "--root", "--device", "--runs"],
                             "grid": ["--out", "--jobs", "--table", "--dry-run",
                                      "--quiet", "--scheduler", "--cluster", "--set"],
                             "rehearse": ["--out", "--subset", "--jobs",
                                          "--datasets", "--no-chapter", "--tables"],
                             "results": ["--csv", "--runs"],
                             "student": ["--out"]}.items():
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        for opt in options:
            assert opt in text, (command, opt)


def test_options_of_several_commands_are_declared_once():
    commands = next(a for a in cli.parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    declared = {}
    for name, sub in commands.items():
        for action in sub._actions:
            for flag in action.option_strings:
                declared.setdefault(flag, {})[name] = action
    for flag, users in declared.items():
        if flag in ("-h", "--help", "--seed", "--noise", "--categories", "--out",
                    "--jobs"):
            continue   # --seed, --noise, --categories: other meanings per command;
            # --out, --jobs: grid's and rehearse's, each with its own default
        if flag == "--device":   # grid's overrides the grid file's DEVICE (no default)
            assert users["grid"].default is None
            users = {n: a for n, a in users.items() if n != "grid"}
        assert len({id(a) for a in users.values()}) == 1, (flag, sorted(users))
    assert set(declared["--runs"]) == {"run", "demo", "book", "results"}
    assert set(declared["--quiet"]) == {"generate", "run", "demo", "book", "grid",
                                        "rehearse"}


def test_run_prints_metrics_and_caches(tiny_synth, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, out, err = run_cli(smoke_run(tiny_synth, runs, "--noise", "0.1"), capsys)
    assert code == 0, err
    assert "image_auroc" in out and "run folder:" in out
    folder = next(runs.rglob("metrics.json")).parent
    row = json.loads((folder / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "image_ap", "image_f1max",
                "detection_auroc"):
        assert 0.0 <= row[key] <= 1.0, key
    assert row["n_injected"] == 1 and row["teacher"] == "efficientnet_lite2/imagenet"
    for key in ("method", "dataset", "category", "noise_ratio", "regime", "seed",
                "profile", "run_key", "fit_seconds", "predict_seconds", "device",
                "torch", "commit", "date", "cfg.backbone", "cfg.weights",
                "train_images_per_second", "test_total"):
        assert key in row, key
    split = json.loads((folder / "split.json").read_text())
    assert len(split["injected_ids"]) == 1
    preds = np.load(folder / "predictions.npz")
    assert preds["train_injected"].sum() == 1
    assert len(preds["test_scores"]) == row["test_total"]
    fit_time = (folder / "fit.json").stat().st_mtime_ns
    code, out, _ = run_cli(smoke_run(tiny_synth, runs, "--noise", "0.1"), capsys)
    assert code == 0 and (folder / "fit.json").stat().st_mtime_ns == fit_time
    code, out, _ = run_cli(["results", "--runs", runs, "--csv", tmp_path / "r.csv"],
                           capsys)
    assert code == 0 and "brick" in out and (tmp_path / "r.csv").is_file()


def expect_error(capsys, args, *fragments):
    code, out, err = run_cli(args, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fuadnb: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_missing_dataset_root(tmp_path, capsys):
    expect_error(capsys, smoke_run(tmp_path / "nowhere", tmp_path / "runs"),
                 "nowhere", "does not exist", "generate")


def test_unknown_layout_and_category(tiny_synth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:        # argparse rejects it
        cli.main(smoke_run(tiny_synth, tmp_path) + ["--dataset", "kolektor"])
    assert exit_.value.code == 2
    assert "invalid choice: 'kolektor'" in capsys.readouterr().err
    args = smoke_run(tiny_synth, tmp_path)
    args[args.index("brick")] = "marble"
    expect_error(capsys, args, "marble", "brick", "washer")


def test_corrupt_image(tiny_copy, tmp_path, capsys):
    victim = sorted((tiny_copy / "brick" / "train" / "good").iterdir())[3]
    victim.write_bytes(b"garbage")
    expect_error(capsys, smoke_run(tiny_copy, tmp_path / "runs", "--noise", "0"),
                 victim.name, "cannot be decoded")


def test_mask_size_mismatch(tiny_copy, tmp_path, capsys):
    gt = tiny_copy / "brick" / "ground_truth"
    mask = sorted(gt.rglob("*.png"))[0]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(mask)
    expect_error(capsys, smoke_run(tiny_copy, tmp_path / "runs", "--noise", "0"),
                 mask.name, "12x10")


def test_noise_ratio_asking_for_too_many_anomalies(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--noise", "5"),
                 "asks for 50 anomalies", "only 8")
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--noise", "-1"),
                 "noise ratio")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--device", "cuda"),
                 "CUDA", "--device cpu")


def test_absent_weights(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--backbone", "resnet18",
                                   "--weights", "imagenet"),
                 "resnet18-f37072fd.pth", "TORCH_HOME", "efficientnet_lite2")
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--weights",
                                   tmp_path / "w.pth"), "w.pth", "does not exist")


def test_bad_numbers(tiny_synth, tmp_path, capsys):
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--image-size", "100"),
                 "image_size must be a multiple of 32")
    expect_error(capsys, smoke_run(tiny_synth, tmp_path, "--epochs", "0"),
                 "epochs must be >= 1")


def test_methods_and_options_from_the_command_line(tiny_synth, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, out, err = run_cli(smoke_run(tiny_synth, runs, "--method", "cdd", "--option",
                                       "domains=3", "--option", "partition=kmeans"),
                             capsys)
    assert code == 0, err
    row = json.loads(next((runs / "cdd").rglob("metrics.json")).read_text())
    assert row["cfg.domains"] == 3 and row["cfg.partition"] == "kmeans"
    code, out, err = run_cli(smoke_run(tiny_synth, runs, "--method", "funad",
                                       "--option", "patch_stride=16"), capsys)
    assert code == 0, err
    row = json.loads(next((runs / "funad").rglob("metrics.json")).read_text())
    assert row["cfg.patch_stride"] == 16 and row["method"] == "funad"
    expect_error(capsys, smoke_run(tiny_synth, runs, "--method", "cdd", "--option",
                                   "domains"), "--option", "NAME=VALUE")
    expect_error(capsys, smoke_run(tiny_synth, runs, "--method", "cdd", "--option",
                                   "k=3"), "unknown CDD option", "domains")
    expect_error(capsys, smoke_run(tiny_synth, runs, "--method", "rd", "--backbone",
                                   "dino_vitb8"), "unknown backbone", "dino_vitb8")
