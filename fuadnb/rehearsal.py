"""The dress rehearsal of the paper grid: ``benchmarks/grids/paper.yaml`` executed
end to end on the CPU, on generated stand-ins of its datasets, with a schedule of a
few optimiser steps at 64 px; then chapter 08 executed once per dataset from the
table. The same for the readers the paper grid does not use (BTAD, MPDD, Real-IAD),
at a smaller scale. It shows that every point would run for a user who has the
datasets and a GPU: data layouts, contamination at every ratio and regime, every
method at its paper profile, the table, the chapter. Its numbers are not results.

``python -m fuadnb rehearse`` (``make rehearsal``) runs it; ``--subset`` picks
``all`` (every point), ``stratified`` (every method, regime, ratio, dataset, category
and seed at least once) or ``ci`` (a few points, the test suite's slice).

What the rehearsal changes, and nothing else (the grid file is read as it is; its
points keep their names):

- the data: generated stand-ins (`fuadnb.data.standin`) under ``<out>/data``:
  every category name of each dataset in its distributed layout, a few tiny images
  each, and a stand-in DTD folder for RD-E's textures (``DATA_ROOT`` and RD-E's
  ``textures``);
- the teacher: the paper's ImageNet WRN-50-2 (and DINO ViT-B/8) cannot be had
  offline, so every method gets the offline teacher of the demo profile
  (`TEACHER`), as DESIGN.md §3 says;
- the schedule (`SCHEDULE`, `SUB_STEPS`): 64 px; RD and LLB(RD) 2 optimiser steps,
  LLB's stage-1 sub-models 2 steps each (``llb.sub_steps``, its own setting: 1000 at
  the paper profile, about four minutes a point on 2 cores), CDD and FUN-AD 1 epoch,
  RD-E 2 iterations; a method whose paper profile resizes and then
  centre-crops keeps the crop's ratio (`crop`);
- the device (CPU) and the run cache (``<out>/runs``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from fuadnb import data, grid, models
from fuadnb.data import standin
from fuadnb.experiment import parse_method
from fuadnb.notebooks import BookError, execute
from fuadnb.runs import drop_weights, write_table

Subset = Literal["all", "stratified", "ci"]
SUBSETS: tuple[str, ...] = ("all", "stratified", "ci")
SIZE = 64
TEACHER = {"BACKBONE": "efficientnet_lite2", "WEIGHTS": "imagenet"}
SCHEDULE: dict[str, dict[str, Any]] = {
    "rd": {"STEPS": 2}, "llb-rd": {"STEPS": 2}, "cdd": {"EPOCHS": 1},
    "funad": {"EPOCHS": 1}, "rde": {"ITERATIONS": 2}}
SUB_STEPS = 2   # LLB's stage-1 sub-models (``llb.sub_steps``), where they train
READERS = ("btad", "mpdd", "real_iad")
BANNER = ("DRESS REHEARSAL on generated stand-in data with a schedule of a few "
          "steps at 64 px: it shows that every point runs, its numbers are NOT "
          "results.")


def paper_grid() -> Path:
    """``benchmarks/grids/paper.yaml`` of the checkout (beside the cell notebook)."""
    return grid.cell_notebook().parent / "paper.yaml"


def chapter() -> Path:
    """``notebooks/08_benchmark.ipynb`` of the checkout."""
    return grid.cell_notebook().parents[2] / "notebooks" / "08_benchmark.ipynb"


def crop(method: str, size: int = SIZE) -> int:
    """The ``load_size`` that keeps a method's paper crop at `size` px: e.g. resize
    256 and crop 224 -> 73 at 64 px; 0 (no crop) where the paper resizes only."""
    cfg = models.get(parse_method(method)[1]).config("paper")
    if not cfg.load_size or cfg.load_size == cfg.image_size:
        return 0
    return round(cfg.load_size * size / cfg.image_size)


def _trains(method: str) -> bool:
    """Whether `method` has a training loop (optimiser steps at its paper profile)."""
    module = models.get(method)
    return module.budget(module.config("paper"), 100).steps > 0


def _from_cell(path: Path) -> str:
    """`path` relative to the benchmark cell's folder (where its kernel runs), so a
    point's parameters, and its `grid.point_key`, are the same in every clone of the
    checkout: a committed rehearsal table resumes anywhere (`rehearse`'s `tables`)."""
    return os.path.relpath(Path(path).resolve(), grid.cell_notebook().parent.resolve())


def overrides(stand: Path, runs: Path, methods: list[str]
              ) -> tuple[dict[str, Any], grid.Per]:
    """What the rehearsal sets in every point (``DATA_ROOT`` follows each point's
    DATASET) and per method (schedule, crop, RD-E's textures): `grid.load_grid`'s
    `overrides` and `per`; `stand` holds the stand-ins (`rehearse`)."""
    every = {"DEVICE": "cpu", "IMAGE_SIZE": SIZE, **TEACHER,
             "DATA_ROOT": f"{_from_cell(stand)}/{{DATASET}}",
             "RUNS_ROOT": _from_cell(runs)}
    per: dict[str, dict[str, Any]] = {}
    for method in methods:
        options: dict[str, Any] = {}
        if crop(method):
            options["load_size"] = crop(method)
        strategy, inner = parse_method(method)
        if inner == "rde":
            options["textures"] = _from_cell(Path(stand) / "dtd" / "images")
        if strategy == "llb" and _trains(inner):   # a bank ignores sub_steps
            options["llb.sub_steps"] = SUB_STEPS
        per[method] = dict(SCHEDULE.get(method, {}))
        if options:
            per[method]["OPTIONS"] = yaml.safe_dump(options, default_flow_style=True
                                                    ).strip()
    return every, {"METHOD": per}


def readers_grid(path: Path, methods: list[str], fixed: dict[str, Any]) -> Path:
    """A grid of the cell for BTAD, MPDD and Real-IAD, written at `path`: every
    method of the paper grid on every category, clean and under ``overlap`` at 0.1
    (with REPEAT), seed 111, the paper grid's `fixed` parameters."""
    blocks = []
    for dataset in READERS:
        cats = list(standin.categories(dataset))
        blocks += [{"DATASET": [dataset], "CATEGORY": cats, "METHOD": methods,
                    "REGIME": ["iid"], "NOISE_RATIO": [0.0], "SEED": [111]},
                   {"DATASET": [dataset], "CATEGORY": cats, "METHOD": methods,
                    "REGIME": ["overlap"], "REPEAT": [True], "NOISE_RATIO": [0.1],
                    "SEED": [111]}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"notebook": str(grid.cell_notebook()),
                                    "fixed": fixed, "grid": blocks}, sort_keys=False))
    return path


def select(named: list[tuple[str, dict[str, Any]]], subset: Subset,
           every_case: bool = True) -> list[str]:
    """The names of the points a `subset` runs.

    ``stratified``, per dataset: on its first category every method x regime x
    noise ratio at its first seed (without `every_case`: every method once,
    cycling through the (regime, ratio) pairs); on each other category one point,
    cycling through the methods, the (regime, ratio) pairs and the seeds, so every
    category and seed runs too. ``ci``: one point per dataset, its first category
    under the last (regime, ratio) pair, the k-th dataset with the k-th method.
    """
    if subset == "all":
        return [name for name, _ in named]
    chosen = []
    for dataset in dict.fromkeys(p["DATASET"] for _, p in named):
        mine = [(n, p) for n, p in named if p["DATASET"] == dataset]
        cats = list(dict.fromkeys(p["CATEGORY"] for _, p in mine))
        methods = list(dict.fromkeys(p["METHOD"] for _, p in mine))
        seeds = list(dict.fromkeys(p["SEED"] for _, p in mine))
        cases = list(dict.fromkeys((p["REGIME"], p["NOISE_RATIO"]) for _, p in mine))

        def pick(cat, method, case, seed, mine=mine):
            return [n for n, p in mine if p["CATEGORY"] == cat and p["METHOD"] == method
                    and (p["REGIME"], p["NOISE_RATIO"]) == case and p["SEED"] == seed]
        if subset == "ci":
            k = len(chosen)   # the k-th dataset of the grid: its k-th method
            chosen += pick(cats[0], methods[k % len(methods)], cases[-1], seeds[0])
            continue
        for j, method in enumerate(methods):
            for case in cases if every_case else [cases[j % len(cases)]]:
                chosen += pick(cats[0], method, case, seeds[0])
        for k, cat in enumerate(cats[1:], 1):
            chosen += pick(cat, methods[k % len(methods)], cases[k % len(cases)],
                           seeds[k % len(seeds)])
    return list(dict.fromkeys(chosen))


@dataclasses.dataclass
class Report:
    """What a rehearsal ran: per grid (``paper``, ``readers``) its table, points run
    of all, ok and seconds; the chapters executed; the indexed categories."""

    tables: dict[str, pd.DataFrame]
    totals: dict[str, int]
    chapters: dict[str, Path]
    indexed: dict[str, int]
    seconds: float

    def lines(self) -> list[str]:
        out = [BANNER]
        for name, table in self.tables.items():
            ok = int((table["status"] == "ok").sum())
            out.append(f"{name}: {len(table)} of {self.totals[name]} grid points run, "
                       f"{ok} ok, {len(table) - ok} failed; "
                       f"{table['seconds'].sum():.0f} s in cells, "
                       f"{table['seconds'].mean():.1f} s per point")
        out.append("indexed (every category, every reader): " + ", ".join(
            f"{d} {n} images" for d, n in self.indexed.items()))
        out += [f"chapter 08 for {d}: {p}" for d, p in self.chapters.items()]
        out.append(f"{self.seconds:.0f} s in all")
        return out


def table_path(tables: Path, name: str) -> Path:
    """The committed table of rehearsal grid `name` (``paper``, ``readers``)."""
    return Path(tables) / f"rehearsal_{name}_cpu.csv"


def _keep(kept: Path, table: pd.DataFrame, named: list[tuple[str, Any]]) -> None:
    """Write `table`'s ok rows into the committed table `kept`, beside the rows it
    holds of other points (another subset's), in grid order."""
    new = table[table["status"] == "ok"]
    old = grid.read_table(kept) if kept.is_file() else new.iloc[:0]
    rank = {name: k for k, (name, _) in enumerate(named)}
    rows = pd.concat([old[~old["point"].isin(new["point"])], new], ignore_index=True)
    write_table(rows.iloc[sorted(range(len(rows)), key=lambda k: rank.get(
        rows["point"].iloc[k], len(rank)))], kept)


def rehearse(out: Path | str = Path("runs/rehearsal"), *, subset: Subset = "all",
             jobs: int = 1, datasets: tuple[str, ...] = standin.DATASETS,
             chapters: tuple[str, ...] | None = None, progress: bool = False,
             tables: Path | None = None, keep_weights: bool = False,
             log: Callable[[str], None] = print) -> Report:
    """Generate the stand-ins under ``<out>/data``, run the paper grid (and the
    readers' grid) with the rehearsal's `overrides` into ``<out>/paper`` (and
    ``<out>/readers``), then execute chapter 08 once per dataset from those tables
    into ``<out>/08_benchmark_<dataset>.ipynb`` (for the `chapters` datasets only,
    when given). Finished points are skipped on a rerun, as in any grid.

    With `tables` (e.g. ``benchmarks/results``), each grid resumes from its committed
    table there (`table_path`: the points whose parameters, code and inputs match
    count as done, on any clone) and writes the points that hold back to it, also
    when interrupted: a rehearsal longer than one sitting goes on from the commit.
    The tables are written once every grid has run (or stopped), never between
    grids, so that no point runs in a checkout whose tables are modified (its row
    would name a dirty commit).

    Returns:
        the `Report` (also written to ``<out>/REHEARSAL.md``).
    """
    start, out = time.perf_counter(), Path(out)
    stand, runs = out / "data", out / "runs"
    unknown = sorted(set(datasets) - set(standin.DATASETS))
    if unknown:
        raise ValueError(f"no stand-in for {unknown}; choose from "
                         f"{list(standin.DATASETS)}")
    indexed = {}
    for dataset in datasets:   # every category of every reader, indexed
        root = standin.write(stand / dataset, dataset)
        indexed[dataset] = sum(len(data.index(dataset, root, c))
                               for c in standin.categories(dataset))
    standin.write_dtd(stand / "dtd")
    _, fixed, points = grid.load_grid(paper_grid())
    methods = list(dict.fromkeys(p["METHOD"] for p in points))
    every, per = overrides(stand, runs, methods)
    grids = {"paper": paper_grid()}
    if set(READERS) & set(datasets):
        grids["readers"] = readers_grid(out / "readers" / "grid.yaml", methods,
                                        dict(fixed))
    ran, totals, keep = {}, {}, {}
    try:
        for name, grid_file in grids.items():
            named = [(n, p) for n, p in grid.named_points(grid_file, every, per)
                     if p["DATASET"] in datasets]
            if not named:
                continue
            only = select(named, subset, every_case=name == "paper")
            totals[name] = len(named)
            log(f"{BANNER}\n{name}: {len(only)} of {len(named)} points ({subset})")
            kept = table_path(tables, name) if tables is not None else None
            if kept is not None:
                keep[name] = (kept, named)
            try:
                ran[name] = grid.run_grid(
                    grid_file, out / name, jobs=jobs, progress=progress,
                    overrides=every, per=per, only=only, log=log,
                    resume=kept if kept and kept.is_file() else None,
                    on_ok=None if keep_weights else lambda row: drop_weights(
                        runs, str(row.get("run_key") or "")))
            except grid.GridInterrupted as stopped:   # its finished points kept
                ran[name] = stopped.table
                raise
    finally:   # only now: a committed table rewritten while the next grid runs
        # would make the checkout dirty, and with it every later point's commit
        for name, (kept, named) in keep.items():
            if name in ran and len(ran[name]):
                _keep(kept, ran[name], named)
    done = {}
    for name, table in ran.items():
        path = out / name / "grid_results.csv"
        for dataset in dict.fromkeys(table.get("param.DATASET", [])):
            if (chapters is not None and dataset not in chapters) or not (
                    table["status"] == "ok").any():
                continue
            dst = out / f"08_benchmark_{dataset}.ipynb"
            outcome = execute(chapter(), dst, {"BENCHMARK": str(path.resolve()),
                                               "DATASET": dataset, "GRID": "",
                                               "ABLATION": ""})
            if not outcome.ok:
                raise BookError(f"chapter 08 on the rehearsal table of {dataset} "
                                f"failed: {outcome.error} (see {dst})")
            done[dataset] = dst
    report = Report(ran, totals, done, indexed, time.perf_counter() - start)
    (out / "REHEARSAL.md").write_text("\n\n".join(report.lines()) + "\n")
    return report

