"""The book on a reader's own data (#32): the whole book on an MVTec AD folder, and
chapter 08 on a table that lacks the book's dataset or holds one method, one point
or no contaminated run (`fuadnb.chapter_table`)."""

import ast
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm
import pytest

from fuadnb import cli, notebooks
from fuadnb.data import standin

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHAPTER = NOTEBOOKS / "08_benchmark.ipynb"
COMMITTED = NOTEBOOKS.parent / "benchmarks" / "results" / "benchmark_v3_demo.csv"


def _glued(notebook: Path, name: str):
    """The value `notebook` glued as `name` (its text/plain repr, evaluated)."""
    for cell in nbformat.read(notebook, as_version=4).cells:
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                return ast.literal_eval(
                    out["data"]["application/papermill.record/text/plain"])
    raise KeyError(f"{notebook.name} glued no {name!r}")


def _errors_and_text(notebook: Path) -> tuple[list, str]:
    """The error outputs of an executed notebook, and all its Markdown outputs."""
    outs = [o for c in nbformat.read(notebook, as_version=4).cells
            for o in c.get("outputs", [])]
    return ([o for o in outs if o.get("output_type") == "error"],
            "\n".join(o.get("data", {}).get("text/markdown", "") for o in outs))


def _chapter_08(out: Path, **parameters) -> Path:
    pm.execute_notebook(str(CHAPTER), str(out), cwd=str(NOTEBOOKS),
                        kernel_name="python3", progress_bar=False,
                        parameters=parameters)
    return out


@pytest.fixture(scope="module")
def mvtec_folder(tmp_path_factory) -> Path:
    """A user's folder in MVTec AD's layout: the generated stand-in (15 categories,
    a few 64 px images each)."""
    return standin.write(tmp_path_factory.mktemp("user") / "mvtec_ad", "mvtec_ad")


@pytest.mark.book
@pytest.mark.slow
def test_the_whole_book_builds_on_a_users_mvtec_ad_folder(book_copy, mvtec_folder,
                                                          monkeypatch):
    """The documented command on one's own MVTec AD folder (`--dataset mvtec_ad
    --root`) builds the book: chapters 01-07 and the page "Your own method" run on
    it, chapter 08 shows the committed synthetic table and says so."""
    root = book_copy("own_data")
    monkeypatch.chdir(root)
    assert cli.main(["book", "--dataset", "mvtec_ad", "--root", str(mvtec_folder),
                     "--profile", "smoke", "--device", "cpu", "--runs",
                     str(root / "runs"), "--quiet", "-p", "CATEGORY=bottle",
                     "-p", "CURVE_EVERY=1"]) == 0
    chapters = root / "book" / "chapters"
    for name in (*notebooks.CHAPTERS, *notebooks.PAGES):
        errors, _ = _errors_and_text(chapters / f"{name}.ipynb")
        assert not errors, name
    assert 0 <= _glued(chapters / "own_method.ipynb", "own_knn_image_auroc") <= 1
    row = notebooks.recorded_row(chapters / "02_reverse_distillation.ipynb")
    assert (row["dataset"], row["category"]) == ("mvtec_ad", "bottle")
    assert _glued(chapters / "08_benchmark.ipynb", "bm_dataset") == "synthetic"
    html = (root / "_build" / "html" / "chapters" / "08_benchmark.html").read_text()
    assert "This chapter shows the synthetic benchmark" in html
    assert "BENCHMARK=mine.csv" in html


def test_chapter_08_names_whose_data_it_shows(tmp_path):
    """On a dataset the committed table does not hold, chapter 08 shows that table
    and says plainly it is the synthetic benchmark's."""
    out = _chapter_08(tmp_path / "fallback.ipynb", DATASET="mvtec_ad")
    errors, text = _errors_and_text(out)
    assert not errors
    assert _glued(out, "bm_dataset") == "synthetic"
    committed = pd.read_csv(COMMITTED)
    assert _glued(out, "bm_points_ok") == (committed.status == "ok").sum()
    assert "This chapter shows the synthetic benchmark's" in text
    assert "not `mvtec_ad`'s" in text


def test_chapter_08_renders_a_one_method_one_point_table(tmp_path):
    """A user's own smallest grid (one method, one category, one seed, one noise
    ratio and no clean run, as `rehearse --subset ci` makes) renders, and says what
    it cannot show."""
    table = pd.read_csv(COMMITTED.with_name("benchmark_demo.csv"))   # 2nd edition
    point = table[(table.method == "rd") & (table.seed == 111) & (table.noise_ratio
                  == 0.1) & (table.regime == "iid") & (table.category == "grass")]
    assert len(point) == 1
    mine = tmp_path / "mine.csv"
    point.assign(dataset="mvtec_ad", category="bottle").to_csv(mine, index=False)
    out = _chapter_08(tmp_path / "mine.ipynb", BENCHMARK=str(mine),
                      DATASET="mvtec_ad")
    errors, text = _errors_and_text(out)
    assert not errors
    assert _glued(out, "bm_dataset") == "mvtec_ad" and _glued(out, "bm_points_ok") == 1
    assert _glued(out, "bm_n_categories") == 1
    assert "This chapter shows" not in text
    for limit in ("holds one method", "no clean run", "one category", "one seed"):
        assert limit in text
