"""python benchmarks/recompute_budgets.py    # writes the two *_budget_recomputed.csv

RD-E's images seen, recounted for committed rows without rewriting them. The rows
of `benchmark_demo.csv` (commit a0308e2e1e6c) and of the two budget-history tables
recorded RD-E's ``images_seen`` as ``steps x batch_size``; since commit 9250eb0
`fuadnb.models.rde.budget` counts each epoch's short last batch short, as
`rde.training_batches` draws it (`fuadnb.engine.images_seen`). A committed row
stays what its commit produced (DESIGN.md §9), so the recounted values live here:

- ``benchmark_demo_budget_recomputed.csv``: one row per RD-E row of
  `benchmark_demo.csv` (keyed by ``point`` and ``commit``): the recorded
  ``images_seen_recorded`` / ``train_images_per_second_recorded`` and the recounted
  ``images_seen`` / ``train_images_per_second`` (images seen over the row's own
  ``fit_seconds``). Chapter 08's budget table reads these for RD-E.
- ``budget_histories_budget_recomputed.csv``: one row per (table, method) run of
  RD-E in `budget_histories_demo.csv` / `budget_histories_64px_demo.csv`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuadnb import engine  # noqa: E402
from fuadnb.models import rde  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
NOTE = ("images_seen recounted with each epoch's short last batch counted short "
        "(fuadnb.engine.images_seen, rde.budget since 9250eb0); the recorded row "
        "is unchanged")


def recount(rows: pd.DataFrame, batch_size: pd.Series) -> pd.Series:
    """RD-E's images seen for `rows` (``n_train``, ``steps``) at `batch_size`."""
    return pd.Series([engine.images_seen(int(n), int(b), epochs=0, steps=int(s))
                      for n, b, s in zip(rows.n_train, batch_size, rows.steps,
                                         strict=True)], index=rows.index)


def main() -> None:
    grid = pd.read_csv(RESULTS / "benchmark_demo.csv")
    runs = grid[grid.method == "rde"]
    seen = recount(runs, runs["cfg.batch_size"])
    pd.DataFrame({
        "point": runs.point, "commit": runs.commit, "method": runs.method,
        "regime": runs.regime, "noise_ratio": runs.noise_ratio,
        "category": runs.category, "seed": runs.seed, "steps": runs.steps,
        "n_train": runs.n_train, "cfg.batch_size": runs["cfg.batch_size"],
        "fit_seconds": runs.fit_seconds,
        "images_seen_recorded": runs.images_seen,
        "train_images_per_second_recorded": runs.train_images_per_second,
        "images_seen": seen, "train_images_per_second": seen / runs.fit_seconds,
        "note": NOTE}).to_csv(RESULTS / "benchmark_demo_budget_recomputed.csv",
                              index=False)
    out = []
    batch = rde.config("demo").batch_size          # the histories' runs: demo profile
    for name in ("budget_histories_demo.csv", "budget_histories_64px_demo.csv"):
        table = pd.read_csv(RESULTS / name)
        keys = ["method", "category", "noise_ratio", "seed", "cfg.image_size",
                "steps", "n_train", "commit", "date"]
        runs = table[table.method == "rde"].drop_duplicates(keys)
        seen = recount(runs, pd.Series(batch, index=runs.index))
        out.append(runs[keys].assign(
            table=name, **{"cfg.batch_size": batch},
            images_seen_recorded=runs.images_seen, images_seen=seen, note=NOTE))
    pd.concat(out)[["table", *keys, "cfg.batch_size", "images_seen_recorded",
                    "images_seen", "note"]].to_csv(
        RESULTS / "budget_histories_budget_recomputed.csv", index=False)


if __name__ == "__main__":
    main()
