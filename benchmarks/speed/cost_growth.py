"""How each method's cost grows: fit seconds and peak memory against the number of
training images and against the image size, with the log-log exponent of each.

Two sweeps per method, every point in a fresh subprocess (so that its peak memory is
its own): the number of training images (--counts, at --count-size px) and the image
side (--sizes, at --size-count images). Random uint8 images (cost does not depend on
content), the method's --profile settings (schedule, backbone, weights) with the
point's image size; LLB (``llb-rd``, ``llb-patchcore``) is its stage 1 (K sub-models,
each scoring every image) plus stage 2 on the kept images.

    python benchmarks/speed/cost_growth.py             # every method, CPU, demo
    python benchmarks/speed/cost_growth.py --methods rd patchcore --counts 50 100 \\
        --sizes 64 128 --profile smoke --out /tmp/cost.csv --page ''   # a quick look
    python benchmarks/speed/cost_growth.py --device cuda --profile paper \\
        --option weights random --out benchmarks/results/cost_growth_cuda.csv --page ''

Columns: ``method, sweep`` (images | image_size), ``n_images, image_size,
fit_seconds``, ``peak_rss_mib`` (the process's peak resident memory, data and
imports included), ``fit_rss_mib`` (how much the fit raised that peak),
``peak_cuda_mib`` (CUDA only), ``steps, images_seen`` (the schedule), and per
method and sweep the exponents ``seconds_exponent``, ``memory_exponent`` (slope of
log fit_seconds, log fit_rss_mib on log n_images or log image_size: 1 = linear;
the memory the fit adds, not the process's, which imports dominate at small sizes),
given only where the points are a power law: with three or more points every local
exponent (the slope between neighbouring points) lies within --tolerance of the
fitted one (``*_power_law``; ``*_local`` lists the local exponents; NaN exponent and
"not a power law" where they do not, or with fewer than three points). Each point
is measured --repeats times (default 3, each in a fresh process): ``fit_seconds``
and ``fit_rss_mib`` are the medians, ``fit_seconds_runs`` the single runs; every row
records ``commit`` and ``date``.
The book's "time and memory" section (book/running.md) includes --page, which this
script rewrites with the curves (--figure) and the exponents.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
METHODS = ("rd", "rde", "cdd", "funad", "patchcore", "softpatch", "llb-rd",
           "llb-patchcore")


def _rss_mib() -> float:
    """This process's peak resident memory so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(method: str, n_images: int, image_size: int, profile: str, device: str,
            options: dict) -> dict:
    """One fit of `method` on `n_images` random images of `image_size` px, here."""
    import torch

    from fuadnb import experiment, models
    from fuadnb.strategies import llb
    from fuadnb.utils import pick_device

    dev = pick_device(device)
    fields = {f.name for f in dataclasses.fields(
        models.get(experiment.parse_method(method)[1]).Config)}
    module, cfg, strategy = experiment.configure(
        method, dataset="synthetic", category="grass", profile=profile,
        options={k: v for k, v in options.items() if k in fields}
        | {"image_size": image_size})
    # what a run on the synthetic data would resolve (RD-E's textures="auto" in the
    # paper profile: DTD at data/dtd/images when there, else the bundled set)
    cfg, _ = module.locate(cfg, "data/synthetic")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, image_size, image_size),
                           generator=g, dtype=torch.uint8).to(dev)
    before = _rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    if strategy is None:
        module.fit(cfg, images, device=dev)
        budget = module.budget(cfg, n_images)
    else:                                            # LLB: stage 1, then stage 2
        ids = np.arange(n_images).astype(str)
        record = llb.stage1(module, cfg, images, ids, strategy, seed=cfg.seed,
                            device=dev)
        kept = np.isin(ids, llb.purify(record.ids, record.scores, strategy.keep))
        keep = torch.from_numpy(np.flatnonzero(kept)).to(dev)
        module.fit(cfg, images[keep], device=dev)
        budget = llb.budget(module, cfg, record.sub_budget, int(kept.sum()))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    peak = _rss_mib()
    return {"method": method, "n_images": n_images, "image_size": image_size,
            "fit_seconds": seconds, "peak_rss_mib": peak, "fit_rss_mib": peak - before,
            "peak_cuda_mib": torch.cuda.max_memory_allocated(dev) / 2**20
            if dev.type == "cuda" else np.nan,
            "steps": budget.steps, "images_seen": budget.images_seen,
            "threads": torch.get_num_threads()}


def run_point(method: str, n_images: int, image_size: int, args) -> dict:
    """`measure_once` --repeats times, each in a fresh interpreter: the medians of
    fit seconds and memory, the single runs' seconds, the commit and the date; a
    failed run makes the point a row with its error."""
    runs = []
    for _ in range(args.repeats):
        row = measure_once(method, n_images, image_size, args)
        if "error" in row:
            return row
        runs.append(row)
    out = dict(runs[0])
    for column in ("fit_seconds", "peak_rss_mib", "fit_rss_mib", "peak_cuda_mib"):
        out[column] = float(np.median([r[column] for r in runs]))
    out["fit_seconds_runs"] = json.dumps([round(r["fit_seconds"], 4) for r in runs])
    out["repeats"] = len(runs)
    return out


def measure_once(method: str, n_images: int, image_size: int, args) -> dict:
    """`measure` in a fresh interpreter; a failed point is a row with its error."""
    point = {"method": method, "n_images": n_images, "image_size": image_size,
             "profile": args.profile, "device": args.device,
             "options": dict(args.option)}
    cmd = [sys.executable, __file__, "--point", json.dumps(point)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**point, "error": f"timeout after {args.timeout} s"}
    if done.returncode:
        return {**point, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def local_exponents(x: pd.Series, y: pd.Series) -> list[float]:
    """The slopes of log y on log x between neighbouring points (sorted by x)."""
    ok = (x > 0) & (y > 0)
    lx, ly = np.log(x[ok].to_numpy(float)), np.log(y[ok].to_numpy(float))
    order = np.argsort(lx)
    lx, ly = lx[order], ly[order]
    step = np.diff(lx)
    return [float(v) for v in np.diff(ly)[step > 0] / step[step > 0]]


def power_law(x: pd.Series, y: pd.Series, tolerance: float = 0.5) -> bool:
    """Whether the points are a power law y ~ x^a: three or more distinct x, and
    every local exponent within `tolerance` of the least-squares one (two points
    fit any power law and check none)."""
    local = local_exponents(x, y)
    if len(local) < 2:
        return False
    return bool(np.all(np.abs(np.array(local) - exponent(x, y)) <= tolerance))


def exponent(x: pd.Series, y: pd.Series) -> float:
    """Least-squares slope of log y on log x (NaN with fewer than two points)."""
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2 or x[ok].nunique() < 2:
        return np.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def with_exponents(table: pd.DataFrame, tolerance: float = 0.5) -> pd.DataFrame:
    """`table` with ``seconds_exponent`` and ``memory_exponent`` per method and
    sweep where the points are a power law (`power_law`), else NaN; beside each,
    ``*_power_law`` and ``*_local`` (the local exponents, rounded)."""
    table = table.copy()
    for name in ("seconds", "memory"):
        table[f"{name}_power_law"], table[f"{name}_local"] = False, ""
    for (_, sweep), rows in table.groupby(["method", "sweep"]):
        x = rows["n_images" if sweep == "images" else "image_size"]
        for name, y in (("seconds", rows.fit_seconds), ("memory", rows.fit_rss_mib)):
            fits = power_law(x, y, tolerance)
            table.loc[rows.index, f"{name}_exponent"] = exponent(x, y) if fits \
                else np.nan
            table.loc[rows.index, f"{name}_power_law"] = fits
            table.loc[rows.index, f"{name}_local"] = " ".join(
                f"{v:.2f}" for v in local_exponents(x, y))
    return table


def draw(table: pd.DataFrame, path: Path) -> None:
    """Four log-log panels: seconds and peak memory against images and image size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), constrained_layout=True)
    for col, (sweep, x) in enumerate((("images", "n_images"),
                                      ("image_size", "image_size"))):
        for row, (y, label) in enumerate((("fit_seconds", "fit seconds"),
                                          ("fit_rss_mib", "memory the fit adds "
                                           "(MiB)"))):
            ax = axes[row, col]
            for method, rows in table[table.sweep == sweep].groupby("method"):
                rows = rows.sort_values(x)
                ax.plot(rows[x], rows[y], marker="o", label=method)
            ax.set(xscale="log", yscale="log", ylabel=label,
                   xlabel="training images" if sweep == "images" else "image side (px)")
            ax.set_xticks(sorted(table[table.sweep == sweep][x].unique()))
            ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
            for axis in (ax.xaxis, ax.yaxis):     # plain numbers, not 10^k
                axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
                axis.set_minor_formatter(ticker.NullFormatter())
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def page(table: pd.DataFrame, figure: Path, page_path: Path, args) -> None:
    """The book's include: the figure, the exponents and how they were measured."""
    wide = table.drop_duplicates(["method", "sweep"]).pivot(
        index="method", columns="sweep", values=["seconds_exponent",
                                                 "memory_exponent"])
    lines = ["| method | seconds ~ images^a | memory ~ images^a | seconds ~ side^a "
             "| memory ~ side^a |", "|---|---|---|---|---|"]
    for method in dict.fromkeys(table.method):
        cells = [wide.loc[method].get((m, s), np.nan)
                 for s in ("images", "image_size")
                 for m in ("seconds_exponent", "memory_exponent")]
        local = [table[(table.method == method) & (table.sweep == s)][
            f"{m.split('_')[0]}_local"].iloc[0] if len(table[(table.method == method)
                                                          & (table.sweep == s)])
            else "" for s in ("images", "image_size")
            for m in ("seconds_exponent", "memory_exponent")]
        lines.append(f"| {method} | " + " | ".join(
            (f"not a power law (local: {loc})" if loc else "") if pd.isna(v)
            else f"{v:.2f}" for v, loc in zip(cells, local, strict=True)) + " |")
    rel = os.path.relpath(figure, page_path.parent)
    command = " ".join(["python benchmarks/speed/cost_growth.py", *sys.argv[1:]])
    # what the table itself records: a table from before commits, dates and repeats
    # were recorded says so rather than borrowing today's date
    when = (f"at commit {', '.join(sorted(table.commit.dropna().astype(str).unique()))}"
            f", {str(table.date.dropna().max())[:10]}" if "commit" in table
            and table.commit.notna().all() else "with no commit or date recorded")
    repeats = int(table.repeats.max()) if "repeats" in table else 1
    made = (f"Re-read by `{command}` from a table measured" if args.render
            else f"Measured by `{command}`")
    page_path.write_text(
        f"{made} on {platform.processor() or platform.machine()}, "
        f"{int(table.threads.dropna().iloc[0])} threads, {when} "
        f"(profile `{args.profile}`, device `{args.device}`; the table is "
        f"`{args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}`"
        f"):\n\n```{{figure}} {rel}\n:width: 100%\n\nFit seconds and the peak memory "
        f"the fit adds to the process "
        f"(log-log) against the number of training images at {args.count_size} px "
        f"(left) and the image side at {args.size_count} images (right).\n```\n\n"
        "The exponent a of each curve (least squares on log-log; 1 = linear), "
        "given only where the points are a power law (every local exponent within "
        f"{args.tolerance} of it), "
        + (f"each point the median of {repeats} runs" if repeats > 1
           else "each point one run") + ":\n\n"
        + "\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--counts", type=int, nargs="+", default=[50, 100, 200, 400])
    p.add_argument("--count-size", type=int, default=64, help="image side of the "
                   "images sweep (default: %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--size-count", type=int, default=100, help="images of the "
                   "image-size sweep (default: %(default)s)")
    p.add_argument("--profile", default="demo")
    p.add_argument("--device", default="cpu")
    p.add_argument("--option", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="a Config value for every method "
                   "that has the field, e.g. --option weights random, --option "
                   "epochs 1; values read as YAML")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    p.add_argument("--repeats", type=int, default=3, help="runs per point, each in "
                   "a fresh process; the table keeps their median (default: "
                   "%(default)s)")
    p.add_argument("--tolerance", type=float, default=0.5, help="largest distance "
                   "of a local exponent from the fitted one for a power law "
                   "(default: %(default)s)")
    p.add_argument("--out", type=Path,
                   default=REPO / "benchmarks" / "results" / "cost_growth_cpu.csv")
    p.add_argument("--figure", type=Path,
                   default=REPO / "book" / "figures" / "cost_growth_cpu.svg")
    p.add_argument("--page", default=str(REPO / "book" / "cost_growth.md"),
                   help="the book's include to rewrite ('' for none)")
    p.add_argument("--render", action="store_true", help="measure nothing: redraw "
                   "the figure and rewrite the page from the --out table, its "
                   "exponents fitted again by the power-law rule (--tolerance)")
    p.add_argument("--point", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render:
        table = with_exponents(pd.read_csv(args.out), args.tolerance)
        ok = table[table.error.isna()]
        draw(ok, args.figure)
        page(ok, args.figure, Path(args.page), args)
        print(f"figure: {args.figure}\nbook include: {args.page}")
        return
    if args.point:                                   # the child: one measurement
        point = json.loads(args.point)
        print(json.dumps(measure(**point)))
        return
    import yaml

    sys.path.insert(0, str(REPO))                    # this checkout's fuadnb
    from fuadnb.utils import git_commit

    args.option = [(k, yaml.safe_load(v)) for k, v in args.option]
    plan = [("images", n, args.count_size) for n in args.counts] + \
        [("image_size", args.size_count, s) for s in args.sizes]
    # every measured point goes to a side file at once, so that an interrupted sweep
    # resumes where it stopped (a point measured with other settings is measured again)
    partial = args.out.with_suffix(".partial.jsonl")
    settings = {"profile": args.profile, "device": args.device,
                "options": dict(args.option), "repeats": args.repeats}
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            if {k: row.get(k) for k in settings} == settings and "error" not in row:
                done[row["method"], row["sweep"], row["n_images"],
                     row["image_size"]] = row
    rows = []
    for method in args.methods:
        for sweep, n, size in plan:
            row = done.get((method, sweep, n, size))
            if row is None:
                row = {"sweep": sweep, **run_point(method, n, size, args),
                       "commit": git_commit(REPO),
                       "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                partial.parent.mkdir(parents=True, exist_ok=True)
                with partial.open("a") as f:
                    f.write(json.dumps({**row, **settings}) + "\n")
            rows.append(row)
            print(f"{method:14s} {sweep:10s} n={n:4d} {size:4d}px: " + (
                f"{row['fit_seconds']:8.1f} s, peak {row['peak_rss_mib']:7.0f} MiB "
                f"(fit +{row['fit_rss_mib']:.0f})" if "error" not in row
                else f"failed: {row['error']}"), flush=True)
    columns = ["fit_seconds", "peak_rss_mib", "threads", "error"]
    table = pd.DataFrame(rows)
    table = with_exponents(table.reindex(columns=[*table.columns, *(
        c for c in columns if c not in table.columns)]), args.tolerance)
    ok = table[table.error.isna()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["options", "profile", "device"], errors="ignore").to_csv(
        args.out, index=False)
    if not table.error.notna().any():
        partial.unlink(missing_ok=True)
    print(f"table: {args.out}")
    summary = table.drop_duplicates(["method", "sweep"])[
        ["method", "sweep", "seconds_exponent", "memory_exponent"]]
    print(summary.round(2).to_string(index=False))
    if args.page and len(ok):
        draw(ok, args.figure)
        page(ok, args.figure, Path(args.page), args)
        print(f"figure: {args.figure}\nbook include: {args.page}")


if __name__ == "__main__":
    main()
