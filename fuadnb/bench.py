"""Execute chapters with papermill: the book build and batch grids.

The only module that imports papermill; nothing else in fuadnb imports this one.

* `build_book`: every chapter in `CHAPTERS` from ``notebooks/`` executed into
  ``book/chapters/`` (one parameter set, e.g. the ``demo`` profile), the offline
  browser assets copied into ``book/_vendor``, then ``jupyter-book build book/``
  (Jupyter Book 1.x, ``execute_notebooks: off``: the book renders what papermill ran).
* `run_grid`: one chapter over a grid of parameters (a YAML or JSON file), one
  executed notebook and one results row per grid point; finished points are skipped
  and a failed point is recorded without stopping the others.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill as pm
import yaml

from fuadnb.config import short_hash
from fuadnb.nb import RESULT_MIME
from fuadnb.runs import write_table
from fuadnb.utils import ToolError

CHAPTERS = ("01_contamination", "02_reverse_distillation", "03_memory_bank",
            "04_expert_distillation", "05_cross_domain_distillation",
            "06_funad_pseudo_labels", "07_llb_filtering", "08_benchmark")
# (npm package, files in it, the part of their path dropped, folder in book/_vendor):
# what the offline book serves itself instead of loading from CDNs
ASSETS = (
    ("requirejs", "require.js", "", ""),
    ("@jupyter-widgets/html-manager", "dist/*.*", "dist", "widgets"),
    ("mathjax", "es5/tex-mml-chtml.js", "es5", "mathjax"),
    ("mathjax", "es5/output/chtml/fonts/woff-v2/*.woff", "es5", "mathjax"),
)
# Loaded between require.js and the widget manager (_config.yml). The manager loads
# its icon fonts from the folder of its AMD module, which RequireJS would otherwise
# place at "@jupyter-widgets/html-manager/dist/" beside each page: point that module
# folder at the vendored copy, found from this script's own URL.
REQUIRE_PATHS = """\
require.config({paths: {"@jupyter-widgets/html-manager/dist":
  document.currentScript.src.replace(/\\/[^\\/]*$/, "")}});
"""


class BookError(ToolError):
    """The book or a grid cannot be run (a chapter failed, a tool is missing, a bad
    grid file)."""


@dataclass(frozen=True)
class Outcome:
    """One executed notebook: where it is, whether it ran, how long, what failed."""

    notebook: Path
    ok: bool
    seconds: float
    error: str = ""


def repo_root(start: Path | str = ".") -> Path:
    """The checkout holding ``notebooks/`` and ``book/`` (`start` or a parent)."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / "notebooks").is_dir() and (folder / "book" / "_toc.yml").is_file():
            return folder
    raise BookError(f"no fuadnb checkout at or above {start} (a folder with "
                    "notebooks/ and book/_toc.yml); run this from the repository")


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The names (and papermill's inferred types/defaults) of a notebook's
    ``parameters`` cell."""
    return pm.inspect_notebook(str(notebook))


def execute(src: Path, dst: Path, parameters: dict[str, Any], *,
            progress: bool = False, timeout: int | None = None) -> Outcome:
    """Run `src` with `parameters` into `dst`, in `src`'s folder (so the chapters'
    relative paths hold). A failed notebook is still written, with its error.

    The kernel is started in that folder (nbclient's ``resources``) instead of
    papermill's ``cwd``, which changes this process's working directory and so
    cannot run in several threads at once.
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(dst), parameters=parameters,
                            resources={"metadata": {"path": str(src.parent)}},
                            kernel_name="python3", progress_bar=progress,
                            log_output=False, execution_timeout=timeout)
    except pm.PapermillExecutionError as err:
        return Outcome(dst, False, time.perf_counter() - start,
                       f"{err.ename}: {err.evalue}")
    except Exception as err:   # a kernel that died, a bad notebook: recorded
        return Outcome(dst, False, time.perf_counter() - start,
                       f"{type(err).__name__}: {err}")
    return Outcome(dst, True, time.perf_counter() - start)


def only_declared(notebook: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` restricted to those `notebook` declares (papermill would inject
    the others as stray variables)."""
    names = declared_parameters(notebook)
    return {k: v for k, v in parameters.items() if k in names}


def recorded_row(notebook: Path) -> dict[str, Any]:
    """The results row a chapter output with `fuadnb.nb.record`, or {} if none."""
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if RESULT_MIME in out.get("data", {}):
                return dict(out["data"][RESULT_MIME])
    return {}


def vendor_assets(root: Path, npm: str | None = None) -> Path:
    """Copy MathJax, RequireJS and the widget manager from ``node_modules`` (``npm
    ci`` first if they are missing) into ``book/_vendor``, so the HTML needs no CDN."""
    modules = root / "node_modules"
    if not all((modules / package).is_dir() for package, *_ in ASSETS):
        npm = npm or shutil.which("npm")
        if npm is None:
            raise BookError("the book's browser assets (MathJax, RequireJS, the widget "
                            "manager) come from npm, which is not installed; install "
                            "Node.js and npm (Debian: apt-get install npm), then retry")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=root,
                              capture_output=True, text=True)
        if done.returncode:
            raise BookError(f"npm ci failed in {root}:\n{done.stderr[-2000:]}")
    out = root / "book" / "_vendor"
    for package, pattern, strip, dest in ASSETS:
        files = [f for f in sorted((modules / package).glob(pattern))
                 if f.suffix != ".map"]
        if not files:
            raise BookError(f"{modules / package}: no {pattern}; delete node_modules "
                            "and retry (npm ci)")
        for f in files:
            target = out / dest / f.relative_to(modules / package / strip)
            if not target.is_file() or target.stat().st_size != f.stat().st_size:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, target)
    paths = out / "widgets" / "require-paths.js"
    if not paths.is_file() or paths.read_text() != REQUIRE_PATHS:
        paths.write_text(REQUIRE_PATHS)
    return out


def jupyter_book(root: Path) -> Path:
    """``jupyter-book build book/`` (config at the root); returns the HTML index."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
           "build", "book/"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    if done.returncode:
        raise BookError(f"jupyter-book build failed:\n{done.stdout[-3000:]}"
                        f"\n{done.stderr[-3000:]}")
    warnings = [line for line in done.stdout.splitlines() + done.stderr.splitlines()
                if "WARNING" in line]
    for line in warnings:
        print(line, file=sys.stderr)
    return root / "_build" / "html" / "index.html"


def build_book(parameters: dict[str, Any], *, root: Path | None = None,
               execute_chapters: bool = True, progress: bool = True,
               log: Callable[[str], None] = print) -> Path:
    """Execute every chapter with `parameters` (each gets those it declares) into
    ``book/chapters/``, then build the HTML. Returns the path of ``index.html``.

    Raises:
        BookError: a chapter failed (its executed notebook, with the error, is kept
            for inspection and the HTML is not built), or a tool is missing.
    """
    root = root or repo_root()
    if execute_chapters:
        for name in CHAPTERS:
            src = root / "notebooks" / f"{name}.ipynb"
            params = only_declared(src, parameters)
            log(f"executing {src.relative_to(root)} with {params}")
            outcome = execute(src, root / "book" / "chapters" / f"{name}.ipynb",
                              params, progress=progress)
            if not outcome.ok:
                raise BookError(f"chapter {name} failed after {outcome.seconds:.0f} s: "
                                f"{outcome.error} (executed notebook with the error: "
                                f"{outcome.notebook})")
            log(f"  done in {outcome.seconds:.0f} s")
    missing = [n for n in CHAPTERS
               if not (root / "book" / "chapters" / f"{n}.ipynb").is_file()]
    if missing:
        raise BookError(f"no executed chapters {missing} in book/chapters; build "
                        "without --no-execute first")
    vendor_assets(root)
    return jupyter_book(root)


def load_grid(path: Path) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Read a grid file: ``notebook`` (a chapter name, or a path relative to the grid
    file), optional ``fixed`` parameters, and ``grid``: a mapping of parameter name ->
    list of values (every combination is a point), or a list of such mappings (the
    union of their points, e.g. one per method with its own schedule).

    Returns:
        the notebook, the fixed parameters, and every point's parameters (``fixed``
        included); a point is named by its values of the parameters its grid varies.

    Raises:
        BookError: the file is unreadable or malformed, naming what is wrong.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())   # YAML is a superset of JSON
    except (OSError, yaml.YAMLError) as err:
        raise BookError(f"{path}: cannot read the grid file ({err})") from err
    grids = spec.get("grid") if isinstance(spec, dict) else None
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not grids or "notebook" not in spec or \
            not all(isinstance(g, dict) for g in grids):
        raise BookError(f"{path}: a grid file needs 'notebook' (e.g. "
                        "02_reverse_distillation) and 'grid' (a mapping of parameter "
                        "name -> list of values, or a list of such mappings); "
                        "optional 'fixed' (a mapping)")
    fixed = spec.get("fixed") or {}
    bad = sorted({k for g in grids for k, v in g.items()
                  if not isinstance(v, list) or not v})
    if bad:
        raise BookError(f"{path}: grid values must be non-empty lists; fix {bad}")
    notebook = _grid_notebook(path, str(spec["notebook"]))
    declared = declared_parameters(notebook)
    unknown = sorted((set(fixed).union(*grids)) - set(declared))
    if unknown:
        raise BookError(f"{path}: {notebook.name} has no parameter(s) {unknown}; it "
                        f"declares {sorted(declared)}")
    points = [fixed | dict(zip(g, values, strict=True))
              for g in grids for values in itertools.product(*g.values())]
    names = [name for name, _ in _named(fixed, points)]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BookError(f"{path}: grid points {twice[:3]} appear more than once; "
                        "make the grids disjoint")
    return notebook, fixed, points


def _named(fixed: dict[str, Any], points: list[dict[str, Any]]
           ) -> list[tuple[str, dict[str, Any]]]:
    """(name, parameters) of every point: named by the values the grid varies."""
    return [(point_name({k: v for k, v in p.items() if k not in fixed}), p)
            for p in points]


def named_points(grid_file: Path) -> list[tuple[str, dict[str, Any]]]:
    """The (name, parameters) of every point of a grid file, in grid order."""
    _, fixed, points = load_grid(grid_file)
    return _named(fixed, points)


def _grid_notebook(path: Path, name: str) -> Path:
    """The notebook a grid file names: a chapter, or a path relative to the file."""
    notebook = Path(name)
    if notebook.suffix != ".ipynb":   # a chapter name: the checkout of the grid
        try:                           # file, else the one we run in
            root = repo_root(path.parent)
        except BookError:
            root = repo_root()
        notebook = root / "notebooks" / f"{notebook}.ipynb"
    elif not notebook.is_absolute():
        notebook = (path.parent / notebook).resolve()
    if not notebook.is_file():
        raise BookError(f"{path}: notebook {notebook} does not exist; name a "
                        f"chapter of {list(CHAPTERS)} or a .ipynb path relative to "
                        "the grid file")
    return notebook


def point_name(point: dict[str, Any]) -> str:
    """A file-name-safe name for one grid point: ``CATEGORY-brick__NOISE_RATIO-0.1``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in
                   "__".join(f"{k}-{v}" for k, v in point.items()))
    return safe[:180]


def code_hash(notebook: Path) -> str:
    """A hash of a notebook's code cells (what it computes; outputs, markdown and
    metadata do not count)."""
    nb = nbformat.read(str(notebook), as_version=4)
    return short_hash([c.source for c in nb.cells if c.cell_type == "code"])


def point_key(code: str, point: dict[str, Any]) -> str:
    """The identity of one grid point: its notebook's code and every parameter,
    fixed or varied (its readable name holds only the varied ones)."""
    return short_hash({"notebook": code, "parameters": point})


def _grid_state(grid_file: Path, out: Path) -> tuple[
        Path, list[tuple[str, dict[str, Any]]], dict[str, dict], str]:
    """The grid's notebook, its (name, parameters) points, the rows recorded and the
    notebook's `code_hash`."""
    notebook, fixed, points = load_grid(grid_file)
    table = out / "grid_results.csv"
    try:
        recorded = pd.read_csv(table, keep_default_na=False, dtype={
            "point": str, "params_hash": str}).to_dict("records") \
            if table.is_file() else []
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise BookError(f"{table}: unreadable grid table ({err}); delete it to rerun "
                        "every point") from err
    rows = {r["point"]: r for r in recorded}
    return notebook, _named(fixed, points), rows, code_hash(notebook)


def _done(out: Path, rows: dict[str, dict], name: str, key: str) -> bool:
    """The point `name` finished with these parameters and this notebook: its row
    says ok, records `key`, and its notebook exists."""
    row = rows.get(name, {})
    return (row.get("status") == "ok" and str(row.get("params_hash")) == key
            and (out / f"{name}.ipynb").is_file())


def pending(grid_file: Path, out: Path) -> list[str]:
    """The names of the grid points that a `run_grid` into `out` would still run
    (never run, failed, interrupted, or run with other parameters or code)."""
    _, named, rows, code = _grid_state(grid_file, out)
    return [name for name, point in named
            if not _done(out, rows, name, point_key(code, point))]


@contextlib.contextmanager
def _threads_per_kernel(jobs: int):
    """With `jobs` notebooks at once, each kernel gets cores // jobs compute threads
    (``OMP_NUM_THREADS``, which torch reads at start), unless the caller set it."""
    if jobs == 1 or "OMP_NUM_THREADS" in os.environ:
        yield
        return
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    try:
        yield
    finally:
        del os.environ["OMP_NUM_THREADS"]


def run_grid(grid_file: Path, out: Path, *, jobs: int = 1, progress: bool = True,
             log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run a grid; ``out/<name>.ipynb`` per point and ``out/grid_results.csv``.

    A point whose results row says ``ok`` with the same `point_key` (notebook code
    and every parameter, fixed ones included) and whose notebook exists is skipped; a
    failure is recorded (status ``failed`` and the error) and the next point runs.
    The table (in grid order) is rewritten atomically after every point, so a run
    killed at any moment resumes with no row lost or repeated (the interrupted
    points rerun).

    Args:
        jobs: notebooks executed at once. The first point to run runs alone (it may
            prepare what the others share, e.g. generate the synthetic benchmark);
            each kernel then gets cores // jobs threads (see `_threads_per_kernel`).
    """
    if jobs < 1:
        raise BookError(f"jobs must be >= 1, got {jobs}")
    notebook, named, rows, code = _grid_state(grid_file, out)
    out.mkdir(parents=True, exist_ok=True)
    table, order = out / "grid_results.csv", [name for name, _ in named]
    todo, lock = [], threading.Lock()

    def say(line: str) -> None:   # one line at a time from the worker threads
        with lock:
            log(line)

    for k, (name, point) in enumerate(named, 1):
        if _done(out, rows, name, point_key(code, point)):
            say(f"[{k}/{len(named)}] {name}: done before, skipped")
        else:
            todo.append((f"[{k}/{len(named)}] {name}", name, point))

    def execute_point(item):
        label, name, point = item
        say(f"{label}: running")
        return item, execute(notebook, out / f"{name}.ipynb", point,
                             progress=progress and jobs == 1)   # never raises

    def record(item, outcome: Outcome) -> None:   # only ever in this thread
        label, name, point = item
        row = {"point": name, "status": "ok" if outcome.ok else "failed",
               "error": outcome.error, "seconds": round(outcome.seconds, 1),
               "notebook": f"{name}.ipynb", "params_hash": point_key(code, point),
               **{f"param.{p}": v for p, v in point.items()}}
        rows[name] = row | (recorded_row(outcome.notebook) if outcome.ok else {})
        ordered = [rows[n] for n in order if n in rows] + [
            r for n, r in rows.items() if n not in order]
        write_table(pd.DataFrame(ordered), table)
        say(f"{label}: {row['status']} in {outcome.seconds:.0f} s"
            + (f": {outcome.error}" if outcome.error else ""))

    with _threads_per_kernel(jobs):
        if todo:
            record(*execute_point(todo[0]))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for done in as_completed([pool.submit(execute_point, item)
                                      for item in todo[1:]]):
                record(*done.result())
    return pd.DataFrame([rows[n] for n in order if n in rows])
