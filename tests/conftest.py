"""Shared fixtures. Tests never download: offline mode is forced here too, so a bare
``pytest`` behaves like ``make test``."""

import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ["FUADNB_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

from fuadnb import experiment  # noqa: E402
from fuadnb.data import synthetic  # noqa: E402

TINY_CATEGORIES = ("brick", "washer")


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """The tiny synthetic benchmark (64 px, two categories), generated once."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic.generate(root, synthetic.Spec.tiny(), categories=list(TINY_CATEGORIES),
                       workers=1)
    return root


@pytest.fixture
def tiny_copy(tiny_synth, tmp_path) -> Path:
    """A private copy of the tiny benchmark that a test may damage."""
    return Path(shutil.copytree(tiny_synth, tmp_path / "synthetic"))


@pytest.fixture
def smoke_kw(tiny_synth, tmp_path) -> dict:
    """`experiment.run` keywords for a smoke run on the tiny brick at noise 0.2,
    private runs."""
    return {"scenario": experiment.Scenario("synthetic", tiny_synth, "brick", 0.2),
            "profile": "smoke", "runs_root": tmp_path / "runs", "device": "cpu"}



@pytest.fixture
def write_notebook():
    """``write(path, parameters, *code)``: a Python 3 notebook at `path` whose first
    cell, when `parameters` is not None, is papermill's tagged parameters cell, then
    one code cell per `code`. Returns `path`."""
    import nbformat

    def write(path: Path, parameters: str | None, *code: str) -> Path:
        cells = [nbformat.v4.new_code_cell(c) for c in code]
        if parameters is not None:
            cells.insert(0, nbformat.v4.new_code_cell(
                parameters, metadata={"tags": ["parameters"]}))
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, path)
        return path
    return write


REPO = Path(__file__).resolve().parents[1]
BOOK_FILES = ("notebooks", "book", "benchmarks", "_config.yml", "package.json",
              "package-lock.json")


def copy_book(root: Path) -> Path:
    """A private copy of the repository's book sources at `root` (executed chapters,
    vendored assets and HTML left out; the package and node_modules linked), so a
    test builds the book without writing to the checkout. Returns `root`."""
    for name in BOOK_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns(
                "chapters", "_vendor", "_build", ".ipynb_checkpoints"))
        else:
            shutil.copy(src, root / name)
    (root / "fuadnb").symlink_to(REPO / "fuadnb")   # the book's literalincludes
    if (REPO / "node_modules").is_dir():
        (root / "node_modules").symlink_to(REPO / "node_modules")
    return root


@pytest.fixture(scope="session")
def book_copy(tmp_path_factory):
    """``book_copy(name)``: `copy_book` into a fresh temporary folder."""
    return lambda name: copy_book(tmp_path_factory.mktemp(name))


@pytest.fixture(scope="session")
def smoke_grid(tiny_synth, tmp_path_factory) -> Path:
    """A grid of two cells of ``benchmarks/grids/cell.ipynb`` at the smoke profile
    (RD and LLB(RD) on the tiny brick at noise 0.2), run two at a time. Returns the
    output folder (executed notebooks and ``grid_results.csv``)."""
    from fuadnb import grid as grids
    folder = tmp_path_factory.mktemp("grid")
    grid = folder / "smoke.yaml"
    grid.write_text(yaml.safe_dump({
        "notebook": str(REPO / "benchmarks" / "grids" / "cell.ipynb"),
        "fixed": {"PROFILE": "smoke", "DATA_ROOT": str(tiny_synth),
                  "CATEGORY": TINY_CATEGORIES[0], "NOISE_RATIO": 0.2,
                  "RUNS_ROOT": str(folder / "runs"), "DEVICE": "cpu"},
        "grid": {"METHOD": ["rd", "llb-rd"]}}))
    grids.run_grid(grid, folder / "out", jobs=2, progress=False, log=lambda _: None)
    return folder / "out"


@pytest.fixture(scope="session")
def smoke_book(tiny_synth, smoke_grid, tmp_path_factory) -> Path:
    """The whole book built at the smoke profile on the tiny benchmark, in a private
    copy of the repository's book sources (the checkout is never written to).

    The benchmark chapter reads the two-row table of `smoke_grid`.

    Returns the copy's root: executed chapters in ``book/chapters``, HTML in
    ``_build/html``.
    """
    book = pytest.importorskip("fuadnb.book")
    root = copy_book(tmp_path_factory.mktemp("repo"))
    parameters = {"PROFILE": "smoke", "DATASET": "synthetic",
                  "DATA_ROOT": str(tiny_synth), "CATEGORY": TINY_CATEGORIES[0],
                  "NOISE_RATIO": 0.2, "RUNS_ROOT": str(root / "runs"),
                  "DEVICE": "cpu", "BENCHMARK": str(smoke_grid / "grid_results.csv"),
                  "CURVE_EVERY": 1}
    book.build_book(parameters, root=root, progress=False, log=lambda _: None)
    return root
