"""The chapter sources: one literal `parameters` cell, stripped, thin; each chapter
runs through papermill at the smoke profile, and injected parameters change the run."""

import ast
import functools
import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import papermill as pm  # the dev extra: a missing papermill fails, never skips
import pytest

from fuadnb import cli, notebooks
from fuadnb.data import contamination, synthetic
from fuadnb.experiment import Scenario

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL = NOTEBOOKS.parent / "benchmarks" / "grids" / "cell.ipynb"
CHAPTERS = [NOTEBOOKS / f"{name}.ipynb" for name in notebooks.CHAPTERS]
PAGES = [NOTEBOOKS / f"{name}.ipynb" for name in notebooks.PAGES]   # run like them
REQUIRED = {"DATASET", "DATA_ROOT", "CATEGORY", "NOISE_RATIO", "REGIME", "SEED"}
TRAINING = {"PROFILE", "BACKBONE", "WEIGHTS", "IMAGE_SIZE", "DEVICE", "RUNS_ROOT"}


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def _glued(notebook: Path, name: str):
    """The value a chapter glued as `name` (its text/plain repr, evaluated)."""
    for cell in _cells(notebook):
        for out in cell.get("outputs", []):
            if out.get("metadata", {}).get("scrapbook", {}).get("name") == name:
                return ast.literal_eval(
                    out["data"]["application/papermill.record/text/plain"])
    raise KeyError(f"{notebook.name} glued no {name!r}")


def test_every_chapter_is_in_the_book_and_the_toc():
    toc = (NOTEBOOKS.parent / "book" / "_toc.yml").read_text()
    assert sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) == \
        list(notebooks.CHAPTERS)
    for name in (*notebooks.CHAPTERS, *notebooks.PAGES):
        assert f"chapters/{name}" in toc


@pytest.mark.parametrize("path", CHAPTERS + PAGES, ids=lambda p: p.stem)
def test_exactly_one_parameters_cell_of_literals(path):
    tagged = [c for c in _cells(path) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "without it papermill silently injects at the top"
    names = set()
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.AnnAssign), ast.unparse(stmt)
        assert isinstance(stmt.value, ast.Constant), ast.unparse(stmt)
        names.add(stmt.target.id)
    if path.stem == "08_benchmark":             # reads a results table, trains nothing
        assert {"BENCHMARK", "NOISE_RATIO"} <= names
    else:
        assert REQUIRED <= names
    if path in PAGES:   # a page runs its own method: no chapter's training options
        assert {"PROFILE", "DEVICE", "RUNS_ROOT"} <= names
    elif path.stem not in ("01_contamination", "08_benchmark"):
        assert TRAINING <= names
    if path.stem not in ("01_contamination", "03_memory_bank", "08_benchmark",
                         *notebooks.PAGES):
        assert names & {"EPOCHS", "ITERATIONS", "STEPS"}   # a memory bank has none
    assert set(pm.inspect_notebook(str(path))) == names   # papermill parses every line


@pytest.mark.parametrize("path", CHAPTERS + PAGES, ids=lambda p: p.stem)
def test_chapter_sources_are_stripped_and_thin(path):
    for cell in _cells(path):
        if cell.cell_type != "code":
            continue
        assert not cell.outputs and cell.execution_count is None, "strip outputs"
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
        assert not defs, f"functions belong in fuadnb: {cell.source[:80]}"
        assert "sys.path" not in cell.source and "/work/" not in cell.source
        assert len(cell.source.splitlines()) <= 20, cell.source[:80]


@pytest.mark.book
@pytest.mark.parametrize("name", (*notebooks.CHAPTERS, *notebooks.PAGES))
def test_chapter_runs_at_the_smoke_profile(smoke_book, name):
    executed = smoke_book / "book" / "chapters" / f"{name}.ipynb"
    nb = nbformat.read(executed, as_version=4)
    injected = [c for c in nb.cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "NOISE_RATIO = 0.2" in injected[0].source
    errors = [o for c in nb.cells for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "every chapter draws figures"


@pytest.mark.book
def test_rd_chapter_records_its_results_row(smoke_book):
    row = notebooks.recorded_row(smoke_book / "book" / "chapters" /
                             "02_reverse_distillation.ipynb")
    assert row["method"] == "rd" and row["profile"] == "smoke"
    assert row["noise_ratio"] == 0.2 and row["n_injected"] == 2
    assert row["teacher"] == "efficientnet_lite2/imagenet"
    assert 0 <= row["image_auroc"] <= 1 and 0 <= row["detection_auroc"] <= 1
    assert (smoke_book / "runs" / "rd").is_dir()


@pytest.mark.book
def test_the_benchmark_chapter_reads_one_dataset_never_pooled(smoke_book, smoke_grid,
                                                              tmp_path):
    """A table of two datasets (the paper grid's MVTec AD and VisA) is read one
    dataset at a time: without DATASET the chapter stops with the fix, with it every
    summary holds that dataset's rows alone."""
    src = smoke_book / "notebooks" / "08_benchmark.ipynb"
    table = pd.read_csv(smoke_grid / "grid_results.csv")
    other = table.assign(dataset="visa", image_auroc=0.0)
    pooled = tmp_path / "pooled.csv"
    pd.concat([table, other]).to_csv(pooled, index=False)
    run = functools.partial(pm.execute_notebook, str(src), cwd=str(src.parent),
                            kernel_name="python3", progress_bar=False)
    with pytest.raises(pm.PapermillExecutionError, match="once per dataset"):
        run(str(tmp_path / "both.ipynb"), parameters={"BENCHMARK": str(pooled)})
    for dataset in ("synthetic", "visa"):
        out = tmp_path / f"{dataset}.ipynb"
        run(str(out), parameters={"BENCHMARK": str(pooled), "DATASET": dataset})
        assert _glued(out, "bm_points_ok") == len(table)


@pytest.mark.book
def test_injected_noise_ratio_changes_the_manifest(smoke_book, tiny_synth, tmp_path):
    src = smoke_book / "notebooks" / "01_contamination.ipynb"
    counts = {}
    for ratio in (0.2, 0.5):
        out = tmp_path / f"ch01_{ratio}.ipynb"
        pm.execute_notebook(str(src), str(out), cwd=str(src.parent),
                            kernel_name="python3", progress_bar=False,
                            parameters={"DATA_ROOT": str(tiny_synth),
                                        "CATEGORY": "washer", "NOISE_RATIO": ratio})
        counts[ratio] = _glued(out, "n_injected")
        assert _glued(out, "category") == "washer"
    n_clean = synthetic.Spec.tiny().n_train
    assert counts == {r: contamination.n_injected(n_clean, r) for r in counts}
    assert counts[0.2] != counts[0.5]


def test_record_is_read_back_by_the_batch_runner(write_notebook, tmp_path):
    src, out = tmp_path / "t.ipynb", tmp_path / "out.ipynb"
    write_notebook(src, "X: int = 1", "from fuadnb import nb\nnb.record({'x': X, "
                   "'nan': float('nan')})")
    assert notebooks.execute(src, out, {"X": 7}).ok
    assert notebooks.recorded_row(out) == {"x": 7, "nan": None}
    json.dumps(notebooks.recorded_row(out))


def test_the_benchmark_chapter_writes_no_number_by_hand():
    """Chapter 08's prose never names a number its tables do not hold: every measured
    value in its Markdown is glued from the table (or written by the generated
    takeaways, `evidence.statement`), so the only decimals written by hand are the
    grid's noise ratios, the test's alpha, AUPRO's FPR limit and the power."""
    allowed = {"0.1", "0.2", "0.05", "0.3", "0.8"}   # ratios, alpha, FPR, power
    for cell in _cells(NOTEBOOKS / "08_benchmark.ipynb"):
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$]*\$|`[^`]*`", "", cell.source,
                      flags=re.S)
        assert set(re.findall(r"\d+\.\d+", text)) <= allowed, cell.source[:120]
        assert "TAKEAWAYS" not in cell.source


def _scenario_built_by(notebook: Path, parameters: dict) -> Scenario:
    """The ``scenario`` a notebook builds from `parameters`: its cells run in this
    process, parameters first (then the overrides, as papermill injects them), up
    to the one that builds it."""
    namespace: dict = {}
    for cell in _cells(notebook):
        if cell.cell_type != "code":
            continue
        exec(cell.source, namespace)   # the notebook's own code
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(parameters)
        if "scenario" in namespace:
            return namespace["scenario"]
    raise AssertionError(f"{notebook.name} builds no scenario")


@pytest.mark.parametrize("path", CHAPTERS[:-1], ids=lambda p: p.stem)
def test_a_chapter_the_cell_and_the_cli_build_the_same_scenario(path, tiny_synth):
    given = {"DATASET": "synthetic", "DATA_ROOT": str(tiny_synth),
             "CATEGORY": "washer", "NOISE_RATIO": 0.1, "REGIME": "overlap",
             "SEED": 7}
    expected = Scenario("synthetic", tiny_synth, "washer", 0.1, "overlap", seed=7)
    args = cli.parser().parse_args([
        "run", "--root", str(tiny_synth), "--category", "washer", "--noise", "0.1",
        "--regime", "overlap", "--seed", "7"])
    assert cli.scenario(args, args.category, args.noise) == expected
    assert _scenario_built_by(CELL, given) == expected
    assert _scenario_built_by(path, given) == expected
    more = {"DEFINITION": "fraction", "REPEAT": True}   # the cell's and the CLI's
    args = cli.parser().parse_args(["run", "--definition", "fraction", "--repeat",
                                    "--category", "washer", "--root", str(tiny_synth),
                                    "--noise", "0.1", "--regime", "overlap",
                                    "--seed", "7"])
    assert _scenario_built_by(CELL, given | more) == cli.scenario(
        args, "washer", 0.1) == expected.replace(definition="fraction", repeat=True)


FIGURE = re.compile(r"\bfig\b\s*=|plot\.\w+\(|plt\.|sns\.|\.show\(")


def test_every_figure_is_numbered_captioned_and_has_alt_text():
    """Every code cell of a chapter or page that draws a figure carries myst-nb's
    figure metadata: a caption (numbered in the book, "Fig. N") and alt text; the
    names figures are cross-referenced by are unique across the book."""
    names = []
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in _cells(path):
            if cell.cell_type != "code" or not FIGURE.search(cell.source) \
                    or "nb.explorer" in cell.source:   # a widget, not an image
                continue
            meta = cell.metadata.get("mystnb", {})
            caption = meta.get("figure", {}).get("caption", "")
            assert len(caption) > 20, (path.name, cell.source[:60])
            assert len(meta.get("image", {}).get("alt", "")) > 10, path.name
            names += [meta["figure"]["name"]] if "name" in meta["figure"] else []
    assert len(names) == len(set(names)) and len(names) > 30


@pytest.mark.book
def test_the_book_shows_each_figure_with_its_number_caption_and_alt(smoke_book):
    for name in [*notebooks.CHAPTERS, *notebooks.PAGES]:
        html = (smoke_book / "_build" / "html" / "chapters" / f"{name}.html"
                ).read_text()
        images = re.findall(r"<img [^>]*>", html)
        assert images, name
        for tag in images:
            assert re.search(r'alt="[^"]{10,}"', tag), (name, tag[:120])
        assert '<span class="caption-number">Fig. ' in html, name
        # one rendered output per figure cell: myst-nb wraps each in the figure, so
        # a table or a second plot in the same cell defines its label twice (a
        # Sphinx "Duplicate explicit target name" and a reference that may miss)
        executed = nbformat.read(smoke_book / "book" / "chapters" / f"{name}.ipynb",
                                 as_version=4)
        for cell in executed.cells:
            if "name" not in cell.metadata.get("mystnb", {}).get("figure", {}):
                continue
            shown = [o for o in cell.get("outputs", [])
                     if o.output_type in ("display_data", "execute_result")
                     and not all(k.startswith("application/papermill.record")
                                 for k in o.get("data", {}))]
            assert len(shown) <= 1, (name, cell.metadata.mystnb.figure.name,
                                     [sorted(o.data) for o in shown])
