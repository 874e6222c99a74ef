"""The measurement behind every trained method's demo budget (chapter 08's budget
table): one long clean fit per method on one synthetic category, its training loss
per epoch, and the optimiser steps by which the loss made 90 % of its fall
(`fuadnb.evaluate.flattened`). The benchmark grid gives each method a budget at or
past that point; nothing here looks at a test set to choose anything (the rows carry
the run's image AUROC only as provenance).

    python benchmarks/budget_histories.py --image-size 64 \
        --out benchmarks/results/budget_histories_64px_demo.csv

Rows: one per (method, record): ``loss`` (the student's for RD-E, the global
student's for CDD), ``teacher_loss`` (RD-E), ``domain_loss_mean`` (CDD), the record's
``steps_per_record``, and the run's provenance columns. Runs are cached under
``--runs`` like every other run, so a re-run only re-reads them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fuadnb import evaluate, experiment  # noqa: E402

# Schedules long enough for the loss to level off on ~100 training images.
LONG: dict[str, dict] = {"rd": {"steps": 1200}, "rde": {"iterations": 480},
                         "cdd": {"epochs": 40}, "funad": {"epochs": 80}}
PROVENANCE = ("category", "noise_ratio", "seed", "profile", "teacher",
              "cfg.image_size", "steps", "images_seen", "n_train", "image_auroc",
              "fit_seconds", "threads", "device", "torch", "commit", "date")


def histories(method: str, result: experiment.Result) -> pd.DataFrame:
    """One row per record of `result`'s fit."""
    model = result.model
    loss = np.asarray(model.history, float)
    row = result.row
    table = pd.DataFrame({"method": method, "record": np.arange(1, len(loss) + 1),
                          "steps_per_record": row["steps"] / len(loss), "loss": loss})
    if hasattr(model, "teacher_history"):
        table["teacher_loss"] = np.asarray(model.teacher_history, float)
    if getattr(model, "domain_history", None):
        table["domain_loss_mean"] = np.asarray(model.domain_history, float).mean(1)
    for name in PROVENANCE:
        table[name] = row[name]
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=list(LONG), choices=list(LONG),
                   help="methods to measure (default: every trained one)")
    p.add_argument("--category", default="grass", help="synthetic category")
    p.add_argument("--seed", type=int, default=111, help="model seed")
    p.add_argument("--image-size", type=int, default=96, help="input size in pixels")
    p.add_argument("--data", type=Path, default=Path("data/synthetic"),
                   help="the synthetic benchmark's folder")
    p.add_argument("--runs", type=Path, default=Path("runs/budgets"),
                   help="run cache folder")
    p.add_argument("--out", type=Path, required=True, help="CSV table to write")
    args = p.parse_args(argv)
    tables = []
    for method in args.methods:
        scenario = experiment.Scenario("synthetic", args.data, args.category,
                                       seed=args.seed)
        result = experiment.run(method, scenario, runs_root=args.runs, progress=True,
                                options={"image_size": args.image_size, **LONG[method]})
        table = histories(method, result)
        every = float(table["steps_per_record"].iloc[0])
        print(f"{method}: {result.row['steps']} steps in "
              f"{result.row['fit_seconds']:.0f} s, 90 % of the loss fall by step "
              f"{evaluate.flattened(table['loss'], every=every):.0f} "
              "(3-record mean: "
              f"{evaluate.flattened(table['loss'], every=every, window=3):.0f})")
        tables.append(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(tables, ignore_index=True).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
