"""What chapter 08 shows of a results table, kept apart from its summaries
(`fuadnb.evidence`).

* `pick`: the ``ok`` rows of one dataset, and a note, written for the reader, when
  the book ran on a dataset the table does not hold (the book on a user's MVTec AD
  folder reads the committed table of the synthetic benchmark): the table's own
  dataset is then shown, and named;
* `limits`: one sentence for each part of the chapter the rows cannot fill (one
  method, one category, one seed, no clean or no contaminated run).

Explained in: book/chapters/08_benchmark
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from fuadnb import evaluate


class Shown(NamedTuple):
    """The rows chapter 08 summarises, their dataset, and the note (Markdown, empty
    when the table holds the dataset the book ran on)."""

    rows: pd.DataFrame
    dataset: str
    note: str


def pick(grid: pd.DataFrame, dataset: str = "", *, source: str = "the table"
         ) -> Shown:
    """The ``ok`` rows of `dataset` in `grid` (`fuadnb.evaluate.one_dataset`), or,
    when `grid` holds one dataset and it is not `dataset`, that one's rows with a
    note saying whose data they are and how to show one's own grid instead.

    Raises:
        ValueError: `grid` holds no ``ok`` row, or several datasets and `dataset`
            is empty or not among them (a table is never pooled across datasets).
    """
    ok = grid[grid["status"] == "ok"] if "status" in grid else grid
    found = sorted(set(ok["dataset"])) if "dataset" in ok else []
    if not found:
        raise ValueError(f"{source} holds no finished ('ok') grid point; run the grid "
                         "(python -m fuadnb grid) or pass another table as BENCHMARK")
    if not dataset or dataset in found or len(found) > 1:
        rows, dataset = evaluate.one_dataset(ok, dataset, source=source)
        return Shown(rows, dataset, "")
    (held,) = found
    whose = ("the synthetic benchmark's (the book's generated data, the grid of "
             "`benchmarks/grids/benchmark_v3.yaml`)" if held == "synthetic"
             else f"`{held}`'s")
    note = (f"**This chapter shows {whose} results, not `{dataset}`'s.** The other "
            f"chapters ran on `{dataset}`; this one trains nothing: it reads a "
            f"results table, and `{source}` holds rows of `{held}` only. Its tables, "
            f"figures and takeaways are about `{held}`. To read your own grid here, "
            f"run one on `{dataset}` (a grid file whose `fixed` part sets `DATASET: "
            f"{dataset}` and `DATA_ROOT`, then `python -m fuadnb grid FILE --table "
            f"mine.csv`) and build the book with `-p BENCHMARK=mine.csv`.")
    return Shown(ok, held, note)


def limits(rows: pd.DataFrame, baseline: str) -> list[str]:
    """One sentence per part of chapter 08 that `rows` (one dataset's ``ok`` rows)
    cannot fill, for the reader: the chapter still renders the rest."""
    methods = sorted(set(rows["method"]))
    noise = set(rows["noise_ratio"])
    out = []
    if baseline not in methods:
        out.append(f"The table has no run of the baseline `{baseline}`: recovery and "
                   "gain, defined against it, are empty (set BASELINE to one of "
                   f"{methods}).")
    elif methods == [baseline]:
        out.append(f"The table holds one method, `{baseline}`: there is no other "
                   "method to compare, so the recovery, the comparisons and the "
                   "critical-difference diagrams are empty.")
    if 0.0 not in noise:
        out.append("The table has no clean run (noise ratio 0): the damage, the "
                   "recovery and each method's cost of contamination need one, so "
                   "they are empty.")
    if not noise - {0.0}:
        out.append("The table has no contaminated run (every noise ratio is 0): "
                   "damage, recovery and contamination detection are undefined; "
                   "only the clean accuracy is shown.")
    n_categories = rows["category"].nunique()
    if n_categories < 2:
        out.append("The table holds one category: no test over categories is "
                   "possible (n categories can give no p below 2/2^n) and no "
                   "interval over them.")
    if rows["seed"].nunique() < 2:
        out.append("The table holds one seed: the spread over seeds cannot be "
                   "set beside the spread over categories.")
    return out
