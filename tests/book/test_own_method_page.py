"""The page "Your own method" (notebooks/own_method.ipynb) at the smoke profile: it
registers its kNN method, runs one benchmark cell, a two-point grid whose kernels
find the method through FUADNB_METHODS, and RD beside it."""

import ast
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

PAGE = Path(__file__).resolve().parents[2] / "notebooks" / "own_method.ipynb"


def _glued(notebook: Path) -> dict:
    """Every value `notebook` glued, by name."""
    found = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                found[name] = ast.literal_eval(
                    out["data"]["application/papermill.record/text/plain"])
    return found


@pytest.mark.book
def test_the_page_runs_at_the_smoke_profile(tiny_synth, tmp_path):
    out = tmp_path / "own_method.ipynb"
    pm.execute_notebook(str(PAGE), str(out), cwd=str(PAGE.parent),
                        kernel_name="python3", progress_bar=False, parameters={
                            "DATA_ROOT": str(tiny_synth), "CATEGORY": "brick",
                            "PROFILE": "smoke", "DEVICE": "cpu", "CURVE_EVERY": 1,
                            "RUNS_ROOT": str(tmp_path / "runs"),
                            "GRID_OUT": str(tmp_path / "grid")})
    glued = _glued(out)
    assert glued["own_grid_ok"] == 2                       # both points ran
    # the grid's contaminated point is the cell's run (loaded from the cache)
    assert glued["own_knn_20_image_auroc"] == glued["own_knn_image_auroc"]
    # every training image finds its own patches in the bank: all score 0 and tie,
    # so the page's "chance is 0.5" is what the run measured
    assert glued["own_knn_detection_auroc"] == 0.5
    for key in ("own_knn_0_image_auroc", "own_rd_0_image_auroc",
                "own_rd_20_image_auroc"):
        assert 0 <= glued[key] <= 1
    table = pd.read_csv(tmp_path / "grid" / "grid_results.csv")
    assert sorted(table["noise_ratio"]) == [0.0, 0.2]
    assert set(table["method"]) == {"knn"} and set(table["status"]) == {"ok"}
    cells = nbformat.read(out, as_version=4).cells
    assert not [o for c in cells for o in c.get("outputs", [])
                if o.get("output_type") == "error"]
    assert [o for c in cells for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]
