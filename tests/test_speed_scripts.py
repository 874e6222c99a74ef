"""The speed scripts of `benchmarks/speed/` at toy sizes: what they compute (the
exponents, the resumable sweep, the book's include) is checked, never how fast
anything is (speed is printed by the scripts, not asserted in tests)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEED = REPO / "benchmarks" / "speed"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SPEED / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_exponent_is_the_log_log_slope():
    cost = _script("cost_growth")
    x = pd.Series([50, 100, 200, 400])
    assert cost.exponent(x, 3.0 * x ** 1.5) == pytest.approx(1.5)
    y = pd.Series([2.0, 2.9, 4.4, 6.0])
    assert cost.exponent(x, y) == pytest.approx(np.polyfit(np.log(x), np.log(y), 1)[0])
    assert np.isnan(cost.exponent(x[:1], y[:1]))               # one point: none
    assert np.isnan(cost.exponent(pd.Series([64, 64]), pd.Series([1.0, 2.0])))
    table = pd.DataFrame({"method": ["a"] * 4 + ["a"] * 2,
                          "sweep": ["images"] * 4 + ["image_size"] * 2,
                          "n_images": [50, 100, 200, 400, 100, 100],
                          "image_size": [64] * 4 + [64, 128],
                          "fit_seconds": [1, 2, 4, 8, 1, 4.0],
                          "fit_rss_mib": [10, 10, 10, 10, 10, 40.0]})
    out = cost.with_exponents(table)
    assert out.seconds_exponent.tolist()[:4] == pytest.approx([1] * 4)
    assert out.memory_exponent.tolist()[:4] == pytest.approx([0] * 4)
    assert out.seconds_power_law.tolist() == [True] * 4 + [False] * 2
    assert out.seconds_exponent[4:].isna().all()            # two points check none


def test_an_exponent_is_fitted_only_to_a_power_law():
    """PatchCore's committed image-size points (x8.5 from 64 to 128 px, x44.7 from
    128 to 256 px) are not a power law: local exponents 3.1 and 5.5."""
    cost = _script("cost_growth")
    side = pd.Series([64, 128, 256])
    assert cost.power_law(side, 0.1 * side ** 2.0)
    assert cost.power_law(side, pd.Series([1.0, 4.2, 15.0]))        # 2.07, 1.84
    seconds = pd.Series([0.574686, 4.857534, 217.223431])
    assert cost.local_exponents(side, seconds) == pytest.approx(
        [np.log2(4.857534 / 0.574686), np.log2(217.223431 / 4.857534)])
    assert not cost.power_law(side, seconds)
    assert not cost.power_law(side[:2], seconds[:2])


def test_the_cost_sweep_measures_writes_its_page_and_resumes(tmp_path):
    """Two points of PatchCore (smoke profile), each in its own process; a rerun
    measures nothing again while the side file holds its points."""
    out, page = tmp_path / "cost.csv", tmp_path / "cost.md"
    cmd = [sys.executable, str(SPEED / "cost_growth.py"), "--methods", "patchcore",
           "--counts", "8", "16", "--sizes", "64", "--size-count", "8",
           "--repeats", "3",
           "--profile", "smoke", "--out", str(out), "--page", str(page),
           "--figure", str(tmp_path / "cost.svg")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert table[["sweep", "n_images", "image_size"]].values.tolist() == [
        ["images", 8, 64], ["images", 16, 64], ["image_size", 8, 64]]
    assert (table.fit_seconds > 0).all() and (table.peak_rss_mib > 0).all()
    assert (table.repeats == 3).all() and table.commit.notna().all()
    assert table.date.notna().all()
    runs = table.fit_seconds_runs.map(json.loads)
    assert [len(r) for r in runs] == [3] * 3
    assert table.fit_seconds.tolist() == pytest.approx(
        [np.median(r) for r in runs], abs=1e-4)
    assert table.error.isna().all() and not out.with_suffix(".partial.jsonl").exists()
    text = page.read_text()
    assert "cost.svg" in text and "| patchcore |" in text
    assert (tmp_path / "cost.svg").stat().st_size > 0
    # an interrupted sweep: its side file holds the first point, so a rerun
    # measures only the other two (here: a planted, recognisable first point)
    first = {**table.iloc[0].dropna().to_dict(), "fit_seconds": 123.0,
             "profile": "smoke", "device": "cpu", "options": {}, "repeats": 3}
    out.with_suffix(".partial.jsonl").write_text(json.dumps(first) + "\n")
    done = subprocess.run(cmd + ["--page", ""], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    again = pd.read_csv(out)
    assert again.fit_seconds.iloc[0] == 123.0 and again.fit_seconds.iloc[1] != 123.0


def test_the_rde_synthesis_script_runs_at_a_toy_size():
    done = subprocess.run(
        [sys.executable, str(SPEED / "rde_synthesis.py"), "--profile", "smoke",
         "--image-size", "64", "--steps", "1", "--images", "4", "--batch-size", "2"],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "synthesis share" in done.stdout and "prefetching saves" in done.stdout
    assert done.stdout.count("best of") == 2


def test_the_committed_cost_table_holds_what_the_book_says_of_it():
    """book/running.md's reading of benchmarks/results/cost_growth_cpu.csv."""
    table = pd.read_csv(REPO / "benchmarks" / "results" / "cost_growth_cpu.csv")
    assert table.error.isna().all()
    a = table.drop_duplicates(["method", "sweep"]).set_index(["method", "sweep"])
    time, memory = a.seconds_exponent, a.memory_exponent
    for method in ("rd", "rde", "llb-rd"):                      # fixed steps
        assert abs(time[method, "images"]) < 0.2 and abs(memory[method, "images"]) < 0.2
    assert 0.7 < time["cdd", "images"] < 1.2                     # fixed epochs
    assert time["funad", "images"] > 1.3                         # all pairs
    cost = _script("cost_growth")
    for method, (first, last) in (("patchcore", ("0.38", "1.55")),
                                  ("softpatch", ("0.54", "1.70"))):
        count = table[(table.method == method) & (table.sweep == "images")]
        assert not cost.power_law(count.n_images, count.fit_seconds)   # no a
        local = cost.local_exponents(count.n_images, count.fit_seconds)
        assert local == sorted(local)                                  # "rise"
        assert (f"{local[0]:.2f}", f"{local[-1]:.2f}") == (first, last)
        assert memory[method, "images"] < 0.6            # memory: not "linearly"
        side = table[(table.method == method) & (table.sweep == "image_size")]
        assert len(side) == 3                             # three single runs
        assert not cost.power_law(side.image_size, side.fit_seconds)   # no a
    for method in ("rd", "rde", "cdd", "llb-rd"):
        assert time[method, "image_size"] < 2
    assert (memory.xs("image_size", level="sweep") < 2).all()
    pc = table[(table.method == "patchcore") & (table.sweep == "image_size")
               ].set_index("image_size").fit_seconds
    assert round(pc[256] / pc[128]) == 45                  # "45-fold", > 16 x
    assert round(pc[128] / pc[64], 1) == 8.5              # "8.5-fold"
    assert set(table.method) == set(_script("cost_growth").METHODS)
    assert (book := (REPO / "book" / "cost_growth.md").read_text()).count("| ") > 8
    assert "cost_growth_cpu.svg" in book and "cost_growth_cpu.csv" in book


def test_the_gpu_check_runs_on_the_cpu_at_toy_size(tmp_path):
    """``benchmarks/gpu_check.sh --dry-run``: the CUDA tests collected, the fits of
    two methods in fp32 and bf16 with their tables, vs_anomalib skipped without
    anomalib; the CUDA path itself needs a GPU (``make gpu-check``)."""
    import os

    out = tmp_path / "gpu"
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"),
                           "--dry-run"], capture_output=True, text=True,
                          env=os.environ | {"OUT": str(out), "PYTHON": sys.executable,
                                            "PEERS_PYTHON": "/nonexistent"},
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    fits = pd.read_csv(out / "fits.csv")
    assert sorted(zip(fits["method"], fits["precision"], strict=True)) == [
        ("patchcore", "bf16"), ("patchcore", "fp32"), ("rd", "bf16"), ("rd", "fp32")]
    assert (fits["train_images_per_second"] > 0).all() and (fits["peak_mib"] > 0).all()
    wide = pd.read_csv(out / "precision.csv", index_col="method")
    assert {"image_auroc_fp32", "image_auroc_bf16",
            "pixel_aupro_bf16_minus_fp32"} <= set(wide.columns)
    assert "tests collected" in (out / "gpu_tests.txt").read_text()
    assert "skipped" in (out / "vs_anomalib.log").read_text()


def _precision_script():
    spec = importlib.util.spec_from_file_location(
        "precision", REPO / "benchmarks" / "precision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_precision_table_pairs_fp32_and_bf16_runs(tiny_synth, tmp_path):
    """benchmarks/precision.py at the smoke profile: one fp32 and one bf16 run of the
    same scenario (two run keys), and their difference row."""
    table = _precision_script().measure(
        ["patchcore"], ["brick"], root=tiny_synth, profile="smoke", noise=0.2,
        seed=111, device="cpu", runs=tmp_path / "runs")
    assert table.precision.tolist() == ["fp32", "bf16", "diff"]
    fp32, bf16, diff = (table.iloc[i] for i in range(3))
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro"):
        assert diff[key] == pytest.approx(bf16[key] - fp32[key])
    assert len(list((tmp_path / "runs").rglob("metrics.json"))) == 2


def test_the_committed_precision_table_is_what_its_rows_say():
    """benchmarks/results/precision_cpu.csv: per method and category an fp32 and a
    bf16 row of the same setting (the demo profile at 64 px on the CPU), made at a
    clean commit, and their differences (book/running.md quotes their range)."""
    table = pd.read_csv(REPO / "benchmarks" / "results" / "precision_cpu.csv")
    metrics = ["image_auroc", "pixel_auroc", "pixel_aupro"]
    for (method, category), rows in table.groupby(["method", "category"]):
        rows = rows.set_index("precision")
        assert list(rows.index) == ["fp32", "bf16", "diff"], (method, category)
        np.testing.assert_allclose(rows.loc["diff", metrics].astype(float),
                                   (rows.loc["bf16", metrics]
                                    - rows.loc["fp32", metrics]).astype(float))
        runs = rows.drop(index="diff")
        assert runs.profile.nunique() == runs["cfg.image_size"].nunique() == 1
        assert runs.device.str.startswith("cpu").all()
    assert set(table.method) == {"rd", "patchcore"}
    assert set(table.category) == {"grass", "coin"}
    assert not table.commit.dropna().str.endswith("+dirty").any()


def test_render_rewrites_the_page_from_a_table_without_measuring(tmp_path):
    """`--render`: the figure and page from the --out table alone, its exponents
    fitted again by the power-law rule, its header saying what the table records
    (here: no commit, date or repeats)."""
    rows = [{"sweep": "images", "method": "patchcore", "n_images": n,
             "image_size": 64, "fit_seconds": s, "fit_rss_mib": 10.0 * n,
             "peak_rss_mib": 900.0, "threads": 2, "error": np.nan,
             "seconds_exponent": 0.83, "memory_exponent": 1.0}
            for n, s in ((50, 1.0), (100, 1.3), (200, 2.0), (400, 6.0))]
    out, page = tmp_path / "cost.csv", tmp_path / "cost.md"
    pd.DataFrame(rows).to_csv(out, index=False)
    done = subprocess.run(
        [sys.executable, str(SPEED / "cost_growth.py"), "--render", "--out", str(out),
         "--page", str(page), "--figure", str(tmp_path / "cost.svg")],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "| patchcore | not a power law (local: 0.38 0.62 1.58) | 1.00 |" in text
    assert "with no commit or date recorded" in text and "each point one run" in text
    assert "0.83" not in text                        # the table's old exponent
    assert (tmp_path / "cost.svg").stat().st_size > 0
    assert pd.read_csv(out).equals(pd.DataFrame(rows))   # the table is left alone
