"""Running the book yourself: the chapter sources run top to bottom as JupyterLab
opens them (no papermill, their default parameters), every chapter page links its
source and says how to run it with other parameters, `make lab` installs JupyterLab
with the book's extra, and the reference pages (glossary, API) build without
warnings and without touching CUDA or the network."""

import html as html_module
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbclient  # the book extra (papermill): missing fails, never skips
import nbformat
import pytest
import yaml

from fuadnb import notebooks

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: pytest's own dependency
    import tomli as tomllib


REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"


def _errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.fixture(scope="module")
def reader_copy(tmp_path_factory):
    """One private copy of what a reader opens: ``notebooks/`` as committed (no
    injected parameters) and, beside it, the committed ``benchmarks/``; ``data/``
    and ``runs/`` start empty and are shared by the chapters run from it, as they
    are in a reader's clone (chapter 03 reuses chapter 02's RD runs)."""
    copy = tmp_path_factory.mktemp("reader") / "repo"
    shutil.copytree(NOTEBOOKS, copy / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (copy / "benchmarks").symlink_to(REPO / "benchmarks")
    return copy


# every source in the book's order. 01 trains nothing but generates the synthetic
# grass category on first use; 02 to 07 train at the demo profile (each minutes);
# 08 reads committed tables only (75 s on them), so it runs in CI as well
SOURCES = [pytest.param(n, marks=pytest.mark.slow) if n != "08_benchmark" else n
           for n in (*notebooks.CHAPTERS, *notebooks.PAGES)]


@pytest.mark.book
@pytest.mark.parametrize("name", SOURCES)
def test_a_source_notebook_runs_top_to_bottom_without_papermill(name, reader_copy,
                                                               monkeypatch):
    """What a reader gets from Run All in JupyterLab: the source as it is in
    ``notebooks/`` (no injected parameters), its kernel in the notebook's folder, at
    its default parameters, the synthetic data generated on first use."""
    monkeypatch.setenv("PYTHONPATH", notebooks.kernel_pythonpath())
    path = reader_copy / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert nb == nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert not any("injected-parameters" in c.metadata.get("tags", [])
                   for c in nb.cells)
    assert not any(o for c in nb.cells for o in c.get("outputs", []))   # unexecuted
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=1800,
        resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    assert _errors(nb) == []
    images = [o for c in nb.cells for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images
    if name != "08_benchmark":     # generated where the default DATA_ROOT points
        assert (reader_copy / "data" / "synthetic" / "grass").is_dir()


def _make_n(*args: str) -> str:
    env = {k: v for k, v in os.environ.items()   # as from a shell, not from `make
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}   # test` (CI)
    done = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO,
                          capture_output=True, text=True, check=True, env=env)
    return done.stdout


def test_make_lab_installs_the_lab_extra_then_opens_the_notebooks(tmp_path):
    """``make lab`` (dry run: no install, no server): a fresh venv gets the ``lab``
    extra, which is the book's plus JupyterLab; an installed one only opens
    ``notebooks/``."""
    venv = tmp_path / "venv"
    steps = _make_n("lab", f"VENV={venv}").splitlines()
    assert steps[1] == f"{venv}/bin/python -m pip install -q -e '.[lab]'"
    assert steps[-1].split() == [f"{venv}/bin/python", "-m", "jupyterlab",
                                 "--ServerApp.root_dir=notebooks"]
    venv.mkdir()
    (venv / ".installed-lab").touch()     # newer than pyproject.toml: installed
    assert _make_n("lab", f"VENV={venv}", "LAB_OPTIONS=--no-browser").splitlines() \
        == [f"{venv}/bin/python -m jupyterlab --ServerApp.root_dir=notebooks "
            "--no-browser"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert "fuadnb[book]" in extras["lab"]
    assert any(r.startswith("jupyterlab") for r in extras["lab"])
    assert not any(r.startswith("jupyterlab") for r in extras["dev"] + extras["book"])
    assert "ipywidgets" in " ".join(extras["book"])      # the widgets' kernel side


def test_the_run_it_yourself_note_names_the_source_and_a_declared_parameter(
        tmp_path):
    from fuadnb import book

    for name in notebooks.CHAPTERS:
        source = NOTEBOOKS / f"{name}.ipynb"
        text = book.run_it_yourself(source)
        assert f"<../../notebooks/{name}.ipynb>" in text      # the source, not the copy
        lines = text.splitlines()
        at = next(i for i, x in enumerate(lines) if x.startswith("papermill "
                                                                  "notebooks"))
        assert lines[at] == f"papermill notebooks/{name}.ipynb out.ipynb \\"
        option, parameter, value = lines[at + 1].split()[-3:]
        assert lines[at + 1].split()[:2] == ["--cwd", "notebooks"] and option == "-p"
        assert parameter in notebooks.declared_parameters(source)
        assert f"python -m fuadnb book -p {parameter}={value}" in text
    executed = Path(shutil.copy(NOTEBOOKS / "02_reverse_distillation.ipynb",
                                tmp_path / "02_reverse_distillation.ipynb"))
    before = nbformat.read(executed, as_version=4).cells
    for _ in range(2):                                     # a rebuild adds no second
        book.add_run_it_yourself(executed, NOTEBOOKS / executed.name)
    after = nbformat.read(executed, as_version=4).cells
    title, rest = before[0].source.split("\n", 1)
    assert title.startswith("# ") and after[0].source == title   # right under it
    assert after[1].metadata["tags"] == [book.RUN_IT_TAG]
    assert after[2].source == rest.strip("\n")
    assert [c.source for c in after[3:]] == [c.source for c in before[1:]]


@pytest.mark.book
@pytest.mark.parametrize("name", notebooks.CHAPTERS)
def test_every_chapter_page_links_its_source_and_the_command(smoke_book, name):
    html = (smoke_book / "_build" / "html" / "chapters" / f"{name}.html").read_text()
    links = [h for h in re.findall(r'href="([^"]+)"', html)
             if h.endswith(f"/{name}.ipynb") and "_downloads" in h]
    assert len(links) == 1, links
    served = (smoke_book / "_build" / "html" / "chapters" / links[0]).resolve()
    assert served.read_bytes() == (smoke_book / "notebooks" / f"{name}.ipynb"
                                   ).read_bytes()
    text = html_module.unescape(re.sub(r"<[^>]+>", "", html))   # code is highlighted
    assert f"papermill notebooks/{name}.ipynb out.ipynb \\\n    --cwd notebooks -p " \
        in text
    assert "Run it yourself" in text
    note = html.index("Run it yourself")
    under_title = html[html.rindex("<h1", 0, note):note]
    assert "<h2" not in under_title and "cell_input" not in under_title


API = REPO / "book" / "api"


def _documented_modules() -> set[str]:
    """The modules the API pages' autodoc directives import."""
    names = set()
    for page in API.glob("*.md"):
        for kind, target in re.findall(r"^\.\. auto(\w+):: ([\w.]+)",
                                       page.read_text(), re.M):
            parts = target.split(".")
            names.add(target if kind == "module" else ".".join(parts[:-1]))
    return names


def test_the_api_pages_import_fuadnb_without_cuda_or_network():
    """Autodoc imports every documented module: that must neither initialise CUDA
    nor open a connection (each would fail the offline build on a GPU machine)."""
    modules = sorted(_documented_modules())
    assert {"fuadnb.models", "fuadnb.experiment", "fuadnb.data", "fuadnb.evaluate",
            "fuadnb.metrics", "fuadnb.grid", "fuadnb.data.contamination",
            "fuadnb.data.mvtec", "fuadnb.data.visa", "fuadnb.data.real_iad"} <= \
        set(modules)
    code = f"""
import importlib, socket
def refuse(*a, **k):
    raise AssertionError("network at import: " + repr(a))
socket.socket.connect = refuse
socket.create_connection = refuse
for name in {modules!r}:
    importlib.import_module(name)
import torch
assert not torch.cuda.is_initialized(), "CUDA initialised at import"
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k not in ("FUADNB_OFFLINE",
                                                           "HF_HUB_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, env=env | {"PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.book
def test_the_pages_besides_the_chapters_build_without_warnings(tmp_path):
    """Introduction, running page, glossary and API reference with the book's own
    ``_config.yml`` and table of contents (the chapters left out): no Sphinx
    warning, so every docstring parses under napoleon, every ``{term}`` is in the
    glossary and every equation and figure label resolves."""
    import jupyter_book  # noqa: F401  (the book extra: missing fails, never skips)
    root = tmp_path / "repo"
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns(
        "chapters", "_vendor", "_build", ".ipynb_checkpoints"))
    (root / "book" / "_vendor").mkdir()
    shutil.copy(REPO / "_config.yml", root)
    toc = yaml.safe_load((root / "book" / "_toc.yml").read_text())
    for part in toc["parts"]:   # the executed pages left out, their parts kept
        part["chapters"] = [c for c in part["chapters"]
                            if not c["file"].startswith("chapters/")]
    toc["parts"] = [p for p in toc["parts"] if p["chapters"]]
    assert any(p["caption"] == "Reference" for p in toc["parts"])
    (root / "book" / "_toc.yml").write_text(yaml.safe_dump(toc))
    done = subprocess.run(
        [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
         "build", "book/"], cwd=root, capture_output=True, text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert [x for x in out.splitlines() if ("WARNING" in x or "ERROR" in x)
            # links to the chapters this build leaves out (the course page's)
            and "unknown document: 'chapters/" not in x
            and "target not found: 'chapters/" not in x] == []
    html = root / "_build" / "html"
    for page in ("glossary", "api/index", "api/methods", "api/experiment",
                 "api/data", "api/evaluate", "api/metrics", "api/grid"):
        assert (html / f"{page}.html").is_file()
    intro = (html / "intro.html").read_text()
    assert 'href="glossary.html#term-noise-ratio"' in intro
    assert "Fig. 1" in intro and 'alt="A diagram.' in intro
    assert 'id="fuadnb.experiment.Scenario"' in (html / "api" / "experiment.html"
                                                 ).read_text()
