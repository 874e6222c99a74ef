"""Batch grids: one notebook over a grid of parameters (a YAML or JSON file), one
executed notebook and one results row per grid point; finished points are skipped and
a failed point is recorded without stopping the others.

Every sweep of the project is a grid file (``benchmarks/grids/``): the benchmark, the
chapters' tables, the teacher comparison; the CLI's ``grid`` and ``demo`` commands run
them with `run_grid`. Nothing else in fuadnb imports this module but `fuadnb.cluster`,
which runs the same grid's points on a Dask cluster (its `runner`).

On a machine with several GPUs, ``jobs > 1`` gives each concurrent kernel its own GPU
(`gpu_devices`: worker slot k gets GPU k mod count through its kernel's
``CUDA_VISIBLE_DEVICES``), so ``--jobs 4 --device cuda`` on four GPUs trains four
points at once, one per GPU.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import threading
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import yaml

from fuadnb.config import short_hash
from fuadnb.evaluate import by_category
from fuadnb.experiment import check_parameters, current
from fuadnb.notebooks import (
    CHAPTERS,
    BookError,
    Outcome,
    check_names,
    check_types,
    execute,
    kernel_threads,
    recorded_row,
    repo_root,
    stopping,
    with_defaults,
)
from fuadnb.runs import write_table
from fuadnb.utils import confined

Per = dict[str, dict[Any, dict[str, Any]]]
TEMPLATE = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


def load_grid(path: Path, overrides: dict[str, Any] | None = None,
              per: Per | None = None
              ) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """Read a grid file: ``notebook`` (a chapter name, or a path relative to the grid
    file), optional ``fixed`` parameters, and ``grid``: a mapping of parameter name ->
    list of values (every combination is a point), or a list of such mappings (the
    union of their points, e.g. one per method with its own schedule). `overrides`
    are fixed parameters that win over the file's (the CLI's ``--device`` and
    ``--set``): the same points, under the same names, with other values.

    `per` sets parameters by the value of another, after the points are named (so
    they keep the file's names): ``{"METHOD": {"rd": {"STEPS": 2}}}`` gives the
    points whose METHOD is rd STEPS 2, whatever the file says (the dress
    rehearsal's schedules, `fuadnb.rehearsal`). A grid file may hold an
    ``order`` (`_ordered`): the parameters by which its points run. Last, a text
    value that holds
    ``{NAME}``, NAME another parameter of its point, gets that parameter's value
    there: ``DATA_ROOT: /data/{DATASET}`` follows each point's dataset.

    Returns:
        the notebook, the fixed parameters, and every point's parameters (``fixed``
        included); a point is named by its values of the parameters its grid varies
        (`named_points`).

    Raises:
        BookError: the file is unreadable or malformed, naming what is wrong.
    """
    notebook, fixed, named = _load(Path(path), overrides, per)
    return notebook, fixed, [point for _, point in named]


def _load(path: Path, overrides: dict[str, Any] | None, per: Per | None
          ) -> tuple[Path, dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """`load_grid`, with each point's name."""
    try:
        spec = yaml.safe_load(path.read_text())   # YAML is a superset of JSON
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise BookError(f"{path}: cannot read the grid file ({err})") from err
    shape = (f"{path}: a grid file needs 'notebook' (e.g. 02_reverse_distillation) "
             "and 'grid' (a non-empty mapping of parameter name -> list of values, "
             "or a list of such mappings); optional 'fixed' (a mapping of parameter "
             "name -> value) and 'order' (a list of parameter names, `load_grid`)")
    grids = spec.get("grid") if isinstance(spec, dict) else None
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not grids or "notebook" not in spec or \
            not all(isinstance(g, dict) and g for g in grids):
        raise BookError(shape)
    if not isinstance(spec.get("fixed") or {}, dict):
        raise BookError(f"{shape}; 'fixed' is a {type(spec['fixed']).__name__}")
    overrides, per = overrides or {}, per or {}
    # an override the grids do not vary is fixed, so the points keep their names
    fixed = (spec.get("fixed") or {}) | {k: v for k, v in overrides.items()
                                         if not any(k in g for g in grids)}
    bad = sorted({str(k) for g in grids for k, v in g.items()
                  if not isinstance(v, list) or not v})
    if bad:
        raise BookError(f"{path}: grid values must be non-empty lists; fix {bad}")
    notebook = _grid_notebook(path, str(spec["notebook"]))
    by_value = {k for values in per.values() for sets in values.values()
                for k in sets}
    try:
        check_names([notebook], dict.fromkeys(set(fixed).union(
            overrides, per, by_value, *grids)), f"{path}: {notebook.name}")
    except TypeError as err:   # a parameter name that is not text
        raise BookError(f"{path}: parameter names must be text ({err})") from None
    points = [fixed | dict(zip(g, values, strict=True)) | overrides
              for g in grids for values in itertools.product(*g.values())]
    named = _named(fixed, points)
    names = [name for name, _ in named]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BookError(f"{path}: grid points {twice[:3]} appear more than once; "
                        "make the grids disjoint")
    named = _ordered(path, spec.get("order"), named)
    named = [(name, _filled(_per_value(point, per))) for name, point in named]
    for _, point in named:
        check_types(notebook, point, str(path))
    return notebook, fixed, named


def _ordered(path: Path, order: Any, named: list[tuple[str, dict[str, Any]]]
             ) -> list[tuple[str, dict[str, Any]]]:
    """`named` in the grid file's ``order``: a list of parameter names, the points
    sorted (stably) by their value of the first, then the second, ..., each value
    ranked where it first appears in the file; e.g. ``order: [SEED, CATEGORY]`` runs
    every category at the first seed before the next seed, one category's points
    together, so a grid stopped early leaves whole categories."""
    if order is None:
        return named
    if not isinstance(order, list) or not all(
            isinstance(k, str) and all(k in p for _, p in named) for k in order):
        raise BookError(f"{path}: 'order' must be a list of parameter names every "
                        f"point has, got {order!r}")
    rank = {k: {} for k in order}
    for _, point in named:
        for k in order:
            rank[k].setdefault(repr(point[k]), len(rank[k]))
    return sorted(named, key=lambda item: [rank[k][repr(item[1][k])] for k in order])


def _per_value(point: dict[str, Any], per: Per) -> dict[str, Any]:
    """`point` with the parameters `per` sets for its values (`load_grid`)."""
    for key, values in per.items():
        if key in point and point[key] in values:
            point = point | values[point[key]]
    return point


def _filled(point: dict[str, Any]) -> dict[str, Any]:
    """`point` with every ``{NAME}`` in its text values replaced by its NAME."""
    def fill(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return TEMPLATE.sub(lambda m: str(point[m[1]]) if m[1] in point else m[0],
                            value)
    return {k: fill(v) for k, v in point.items()}


def check_points(grid_file: Path, notebook: Path, points: list[dict[str, Any]]
                 ) -> None:
    """The run parameters of the points about to run, before any kernel starts
    (`fuadnb.experiment.check_parameters`: names, the data folder, methods,
    options, the learning-bias curve's interval); one BookError naming the grid
    file and the parameter."""
    defaults = with_defaults(notebook, {})
    checked: set[str] = set()
    for point in points:
        key = short_hash(point)
        if key in checked:
            continue
        checked.add(key)
        try:
            check_parameters(defaults | point, notebook.parent)
        except ValueError as err:
            raise BookError(f"{grid_file}: {err}") from None


def _named(fixed: dict[str, Any], points: list[dict[str, Any]]
           ) -> list[tuple[str, dict[str, Any]]]:
    """(name, parameters) of every point: named by the values the grid varies."""
    return [(point_name({k: v for k, v in p.items() if k not in fixed}), p)
            for p in points]


def named_points(grid_file: Path, overrides: dict[str, Any] | None = None,
                 per: Per | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The (name, parameters) of every point of a grid file, in grid order."""
    return _load(Path(grid_file), overrides, per)[2]


def _checkout(near: Path) -> Path:
    """The checkout at or above `near`, else the one we run in (`repo_root`)."""
    try:
        return repo_root(near)
    except BookError:
        return repo_root()


def cell_notebook() -> Path:
    """``benchmarks/grids/cell.ipynb``, the notebook of every sweep (one method on one
    category at one noise ratio and seed, one results row), in the checkout this
    package is imported from (an editable install), else the one we run in."""
    return _checkout(Path(__file__).parent) / "benchmarks" / "grids" / "cell.ipynb"


def _grid_notebook(path: Path, name: str) -> Path:
    """The notebook a grid file names: a chapter, or a path relative to the file."""
    notebook = Path(name)
    if notebook.suffix != ".ipynb":   # a chapter name: the grid file's checkout
        notebook = _checkout(path.parent) / "notebooks" / f"{notebook}.ipynb"
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


def _grid_state(grid_file: Path, out: Path, overrides: dict[str, Any] | None,
                resume: Path | None = None, per: Per | None = None,
                only: Collection[str] | None = None) -> tuple[
        Path, list[tuple[str, dict[str, Any]]], dict[str, dict], str]:
    """The grid's notebook, its (name, parameters) points (those named in `only`,
    when given), the rows recorded and the notebook's `code_hash`. The rows are
    those of ``out/grid_results.csv``, and for points without a finished row
    there, the finished rows of `resume` (a committed table: `_done` accepts them
    without their notebooks)."""
    notebook, _, named = _load(Path(grid_file), overrides, per)
    if only is not None:
        missing = sorted(set(only) - {name for name, _ in named})
        if missing:
            raise BookError(f"{grid_file}: no grid point(s) {missing[:3]}")
        named = [(name, point) for name, point in named if name in set(only)]
    rows = {r["point"]: r for r in _read(out / "grid_results.csv")}
    code = code_hash(notebook)
    if resume is not None and Path(resume).is_file():
        wanted = {name: point_key(code, point) for name, point in named}
        for row in _read(Path(resume)):
            name = row.get("point")
            if name in wanted and not _done(out, rows, name, wanted[name]):
                rows[name] = row | {"resumed": True}
    return notebook, named, rows, code


def _read(table: Path) -> list[dict]:
    if not table.is_file():
        return []
    try:
        return read_table(table).to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise BookError(f"{table}: unreadable grid table ({err}); delete it to rerun "
                        "every point") from err


TEXT_COLUMNS = ("point", "params_hash", "run_key", "inputs_key", "recipe", "error")


def read_table(path: Path) -> pd.DataFrame:
    """A grid's results table, its keys and fingerprints read as text (a hex key
    such as ``123e4567`` would otherwise become a number)."""
    header = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, keep_default_na=False, dtype={
        c: str for c in header if c in TEXT_COLUMNS or c.startswith("inputs.")})


def _done(out: Path, rows: dict[str, dict], name: str, key: str) -> bool:
    """The point `name` finished with these parameters, this notebook and the same
    inputs: its row says ok and records `key`; its notebook exists (unless the row
    was resumed from a committed table); and a row that recorded a run
    (``run_key``) holds a recipe that is `fuadnb.experiment.current`: the same
    data, masks, weights and settings as on disk now (a row without one cannot
    tell, so its point runs again)."""
    row = rows.get(name, {})
    if not (row.get("status") == "ok" and str(row.get("params_hash")) == key
            and (row.get("resumed") or (out / f"{name}.ipynb").is_file())):
        return False
    if not row.get("run_key"):   # a notebook that records no run: its parameters
        return True
    return bool(row.get("recipe")) and current(row) == "current"


def pending(grid_file: Path, out: Path, overrides: dict[str, Any] | None = None,
            resume: Path | None = None, per: Per | None = None,
            only: Collection[str] | None = None) -> list[str]:
    """The names of the grid points that a `run_grid` into `out` would still run
    (never run, failed, interrupted, or run with other parameters, code or
    inputs)."""
    _, named, rows, code = _grid_state(grid_file, out, overrides, resume, per, only)
    return [name for name, point in named
            if not _done(out, rows, name, point_key(code, point))]


@contextlib.contextmanager
def _threads_per_kernel(jobs: int):
    """With `jobs` notebooks at once, each kernel gets cores // jobs compute threads
    (``OMP_NUM_THREADS``, which torch reads at start), unless the caller set it."""
    threads = kernel_threads(jobs)
    if not threads:
        yield
        return
    os.environ.update(threads)
    try:
        yield
    finally:
        del os.environ["OMP_NUM_THREADS"]


def gpu_devices() -> list[str]:
    """The CUDA devices this process sees, as ``CUDA_VISIBLE_DEVICES`` values for its
    kernels: the entries of its own ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs),
    else ``0 .. count - 1``; [] without CUDA (``torch.cuda.device_count()``, which
    does not initialise CUDA)."""
    import torch

    count = torch.cuda.device_count()
    if count < 1:
        return []
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if d.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


# One grid point's executor: (notebook, executed notebook to write, parameters) ->
# its Outcome, the executed notebook written at the second path (unless it failed
# before one existed). `run_grid`'s default runs a local kernel; `fuadnb.cluster`'s
# runs it on a Dask worker.
Runner = Callable[[Path, Path, dict[str, Any]], Outcome]


class GridInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a grid: no new point started, the running kernels
    were stopped, and ``table`` holds the rows that hold now: the points done
    before the run and those that finished ok in it (``grid_results.csv`` also
    keeps the others' last rows, failed or stale, so that they run again)."""

    def __init__(self, table: pd.DataFrame):
        super().__init__("grid interrupted")
        self.table = table


def run_grid(grid_file: Path, out: Path, *, jobs: int = 1, progress: bool = True,
             overrides: dict[str, Any] | None = None, per: Per | None = None,
             only: Collection[str] | None = None,
             log: Callable[[str], None] = print,
             runner: Runner | None = None, resume: Path | None = None,
             on_ok: Callable[[dict[str, Any]], None] | None = None
             ) -> pd.DataFrame:
    """Run a grid; ``out/<name>.ipynb`` per point and ``out/grid_results.csv``.

    A point is done, and skipped, when its results row says ``ok`` with the same
    `point_key` (notebook code and every parameter, fixed ones included), its
    notebook exists, and the run it recorded still has the same inputs (`_done`);
    a failure is recorded (status ``failed`` and the error) and the next point
    runs. The table (in grid order) is rewritten atomically after every point, so
    a run killed at any moment resumes with no row lost or repeated (the
    interrupted points rerun).

    Args:
        overrides: parameters set for every point (`load_grid`).
        per: parameters set by another's value, names kept (`load_grid`).
        only: run (and tabulate) only the points of these names, e.g. a subset
            that covers every method, regime and category (`fuadnb.rehearsal`).
        jobs: notebooks executed at once. The first point to run runs alone (it may
            prepare what the others share, e.g. generate the synthetic benchmark);
            each kernel then gets cores // jobs threads (see `_threads_per_kernel`)
            and, with CUDA devices and ``jobs > 1``, worker slot k's kernels get
            GPU k mod count as their only visible device (`gpu_devices`).
        runner: executes one point elsewhere (`Runner`, e.g. on a Dask cluster:
            `fuadnb.cluster.run_grid`); this process still decides what to skip and
            writes every notebook and row. Default: a local kernel.
        resume: a committed table of this grid (``--table``): its finished rows
            whose parameters, code and inputs match count as done, so a grid
            resumes on a fresh clone.
        on_ok: called with the row of each point that finished ok in this run,
            after its row is written (e.g. to remove what the point no longer
            needs: `fuadnb.rehearsal` drops trained weights).

    Raises:
        GridInterrupted: on Ctrl-C or SIGTERM (a KeyboardInterrupt in this
            thread): no point starts after it, running kernels are stopped, the
            finished points' rows are written.
    """
    if jobs < 1:
        raise BookError(f"jobs must be >= 1, got {jobs}")
    notebook, named, rows, code = _grid_state(grid_file, out, overrides, resume,
                                              per, only)
    out.mkdir(parents=True, exist_ok=True)
    table, order = out / "grid_results.csv", [name for name, _ in named]
    todo, lock, stop = [], threading.Lock(), threading.Event()
    gpus = gpu_devices() if jobs > 1 and runner is None else []
    slots: queue.SimpleQueue[int] = queue.SimpleQueue()   # free worker slots
    for slot in range(jobs):
        slots.put(slot)

    def say(line: str) -> None:   # one line at a time from the worker threads
        with lock:
            log(line)

    current_rows: set[str] = set()   # done before this run, or ok in it
    for k, (name, point) in enumerate(named, 1):
        if _done(out, rows, name, point_key(code, point)):
            current_rows.add(name)
            say(f"[{k}/{len(named)}] {name}: done before, skipped")
        else:
            todo.append((f"[{k}/{len(named)}] {name}", name, point))
    check_points(grid_file, notebook, [point for *_, point in todo])

    def local(src: Path, dst: Path, point: dict[str, Any], gpu: str | None) -> Outcome:
        return execute(src, dst, point, progress=progress and jobs == 1,
                       env={"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else None)

    def execute_point(item):
        label, name, point = item
        if stop.is_set():   # interrupted before it started
            return item, None
        slot = slots.get()
        gpu = gpus[slot % len(gpus)] if gpus else None
        try:
            say(f"{label}: running" + (f" on GPU {gpu}" if gpu is not None else ""))
            dst = out / f"{name}.ipynb"
            confined(dst, out, "grid point")
            return item, (runner(notebook, dst, point) if runner is not None
                          else local(notebook, dst, point, gpu))   # never raise
        finally:
            slots.put(slot)

    def finished(every: bool = False, only_current: bool = False) -> pd.DataFrame:
        """The rows of this run's points in grid order (`every`: then the table's
        other points, e.g. those left out by `only`; `only_current`: only the
        points done before this run or finished ok in it)."""
        names = [n for n in order if n in rows] + (
            [n for n in rows if n not in order] if every else [])
        if only_current:
            names = [n for n in names if n in current_rows]
        return pd.DataFrame([{k: v for k, v in rows[n].items() if k != "resumed"}
                             for n in names])

    def record(item, outcome: Outcome | None) -> None:   # only ever in this thread
        if outcome is None or (stop.is_set() and not outcome.ok):
            return   # not run, or stopped mid-way
        label, name, point = item
        row = {"point": name, "status": "ok" if outcome.ok else "failed",
               "error": outcome.error, "seconds": round(outcome.seconds, 1),
               "notebook": f"{name}.ipynb", "params_hash": point_key(code, point),
               **{f"param.{p}": v for p, v in point.items()}}
        rows[name] = row | (recorded_row(outcome.notebook) if outcome.ok else {})
        if outcome.ok:
            current_rows.add(name)
        write_table(finished(every=True), table)
        say(f"{label}: {row['status']} in {outcome.seconds:.0f} s"
            + (f": {outcome.error}" if outcome.error else ""))
        if outcome.ok and on_ok is not None:
            on_ok(rows[name])

    futures, seen = [], set()
    with _threads_per_kernel(jobs if runner is None else 1):
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            if todo:   # alone: it may prepare what the others share
                futures.append(pool.submit(execute_point, todo[0]))
                seen.add(futures[0])
                record(*futures[0].result())
            futures += [pool.submit(execute_point, item) for item in todo[1:]]
            for done in as_completed(futures[1:]):
                seen.add(done)
                record(*done.result())
        except BaseException as err:   # Ctrl-C, SIGTERM, or a failure here
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            with stopping():   # running kernels die now, starting ones at once
                pool.shutdown(wait=True)
            for done in futures:   # points that finished meanwhile are kept
                if done not in seen and done.done() and not done.cancelled() \
                        and done.exception() is None:
                    record(*done.result())
            if rows:
                write_table(finished(every=True), table)
            if not isinstance(err, KeyboardInterrupt):
                raise
            say(f"interrupted: no new point started; {table} holds the finished "
                "points")
            raise GridInterrupted(finished(only_current=True)) from None
        finally:
            pool.shutdown(wait=True)
    return finished()


def summary(table: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame | None:
    """The finished points' `metric` by category (`fuadnb.evaluate.by_category`), one
    row per combination of the other parameters the grid varies (the mean over seeds);
    None when the notebook records no `metric` per category (not the benchmark cell).
    """
    ok = table[table["status"] == "ok"]
    if ok.empty or "category" not in ok or metric not in ok:
        return None
    # rows resumed from a committed table are read as text (`read_table`)
    ok = ok.assign(**{metric: pd.to_numeric(ok[metric], errors="coerce")})
    varied = [c for c in ok.columns if c.startswith("param.") and c not in (
        "param.CATEGORY", "param.SEED") and ok[c].nunique(dropna=False) > 1]
    rows = ok.assign(**{c.removeprefix("param."): ok[c].map(
        lambda v: "" if pd.isna(v) else str(v))   # "": a parameter only some grids vary
        for c in varied})
    return by_category(rows, [c.removeprefix("param.") for c in varied] or ["method"],
                       metric)
