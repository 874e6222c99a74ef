"""From predictions to the metric columns of a results row.

Image metrics use the image score (max of the smoothed map); pixel metrics pool every
pixel of every test image, good images included; AUPRO is the exact MVTec AD
definition integrated to FPR 0.3 (`fuadnb.metrics`). ``detection_auroc`` asks the FUAD
question: do the training-image scores rank the injected anomalies first? Under the
``overlap`` and ``recurring`` regimes every metric is also given on two groups of test
anomalies (each against all good test images): ``*_seen`` (the anomalies trained on,
or the recurring defects) and ``*_unseen`` (the others, or the novel defects).

Results tables (one row per run) are summarised over seeds (`seed_summary`,
`pm_table`) or by category (`by_category`); `with_clean` repeats the clean runs under
every regime. Methods and conditions are compared with the category as the unit in
`fuadnb.evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fuadnb import metrics

KEYS = ("method", "regime", "noise_ratio", "category", "seed")   # a row's identity


def require_columns(rows: object, columns: Sequence[str], where: str) -> None:
    """A results table with `columns`, else one ValueError naming the function
    `where` (e.g. ``evidence.cost``) and what is missing, instead of a KeyError deep
    inside pandas."""
    if any(not isinstance(c, str) for c in columns):
        raise ValueError(f"{where}: column names must be text; a list of "
                         f"them where several are taken, got {list(columns)!r}")
    if not isinstance(rows, pd.DataFrame):
        raise ValueError(f"{where}: rows must be a results table (a pandas "
                         f"DataFrame), got {type(rows).__name__}")
    missing = [c for c in dict.fromkeys(columns) if c not in rows]
    if missing:
        raise ValueError(f"{where}: the table has no column(s) {missing}; "
                         "pass results rows (a grid's table, `fuadnb results --csv`)")


def _table(rows: object, columns: Sequence[str], where: str) -> None:
    """`require_columns` for a function of this module."""
    require_columns(rows, columns, f"evaluate.{where}")


def _lists(where: str, **named: object) -> None:
    """Each of `named` a list (or tuple) of column names, not one name (whose
    letters would be taken for columns)."""
    for name, value in named.items():
        if isinstance(value, str) or not isinstance(value, (list, tuple, pd.Index)):
            raise ValueError(f"evaluate.{where}: {name} must be a list of column "
                             f"names, e.g. [{value!r}], got {value!r}")


def _arrays(where: str, n: int | None = None, **named: object) -> None:
    """Each of `named` a 1-D array of length `n` (the first one's, if None), else
    one ValueError naming the argument and the shapes."""
    for name, value in named.items():
        shape = np.shape(value)
        if len(shape) != 1 or (n is not None and shape[0] != n):
            raise ValueError(f"evaluate.{where}: {name} must be a 1-D array"
                             + (f" of length {n}" if n is not None else "")
                             + f", got shape {shape}")
        n = shape[0] if n is None else n


def score(*, labels: np.ndarray, scores: np.ndarray, masks: np.ndarray,
          maps: np.ndarray, groups: dict[str, np.ndarray] | None = None,
          train_injected: np.ndarray | None = None,
          train_scores: np.ndarray | None = None) -> dict[str, float]:
    """All metrics of one run, unrounded.

    Args:
        labels, scores: test image labels (N,) and scores (N,).
        masks, maps: test masks (N, H, W) bool and anomaly maps (N, H, W).
        groups: name -> (N,) bool, groups of anomalous test images (e.g. ``seen``,
            ``unseen``; `fuadnb.data.Split.test_groups`): each metric is also
            computed on every good image plus the group's anomalies, as
            ``<metric>_<name>`` (NaN for an empty group).
        train_injected, train_scores: (M,) for the contamination-detection AUROC.

    Returns:
        ``image_auroc, image_ap, image_f1max, pixel_auroc, pixel_aupro``,
        ``detection_auroc`` (NaN unless the training set is contaminated) and the
        group columns. Undefined entries are NaN (the pixel metrics of a test
        set without any mask, e.g. a folder dataset without a mask folder).
    """
    _arrays("score", labels=labels, scores=scores)
    n = len(labels)
    if np.shape(masks) != np.shape(maps) or np.ndim(masks) != 3 or len(masks) != n:
        raise ValueError(f"evaluate.score: masks and maps must both be (N, H, W) with "
                         f"N = {n} test images, got {np.shape(masks)} and "
                         f"{np.shape(maps)}")
    for name, group in (groups or {}).items():
        _arrays("score", n, **{f"groups[{name!r}]": group})
    if train_injected is not None:
        _arrays("score", train_injected=train_injected, train_scores=train_scores)
    out = _test_metrics(labels, scores, masks, maps, pixels=bool(np.any(masks)))
    out["detection_auroc"] = float("nan")
    if train_injected is not None and np.any(train_injected):
        out["detection_auroc"] = metrics.detection_auroc(train_injected, train_scores)
    for name, group in (groups or {}).items():
        keep = in_group(labels, group)
        part = dict.fromkeys(GROUPED, float("nan")) if keep is None else \
            _test_metrics(labels[keep], scores[keep], masks[keep], maps[keep],
                          pixels=bool(masks[keep].any()))
        out |= {f"{k}_{name}": v for k, v in part.items()}
    return out


def in_group(labels: np.ndarray, group: np.ndarray) -> np.ndarray | None:
    """The test images a group's metrics are computed on: every good image plus the
    group's anomalies (bool mask); None for an empty group (its metrics are NaN)."""
    group = np.asarray(group, bool)
    return (np.asarray(labels) == 0) | group if group.any() else None


def image_aurocs(labels: np.ndarray, scores: np.ndarray,
                 groups: dict[str, np.ndarray]) -> dict[str, float]:
    """Image AUROC overall and per group (``image_auroc_<name>``), as `score`
    computes them, without the pixel metrics (the learning-bias curve's)."""
    out = {"image_auroc": metrics.image_auroc(labels, scores)}
    for name, group in groups.items():
        keep = in_group(labels, group)
        out[f"image_auroc_{name}"] = float("nan") if keep is None else \
            metrics.image_auroc(labels[keep], scores[keep])
    return out


GROUPED = ("image_auroc", "image_ap", "image_f1max", "pixel_auroc", "pixel_aupro")


def _test_metrics(labels: np.ndarray, scores: np.ndarray, masks: np.ndarray,
                  maps: np.ndarray, pixels: bool = True) -> dict[str, float]:
    """The test metrics; without `pixels` the pixel ones are NaN (a group whose
    anomalies all have empty masks, as some of BTAD's ``ko`` images do)."""
    image = {"image_auroc": metrics.image_auroc(labels, scores),
             "image_ap": metrics.average_precision(labels, scores),
             "image_f1max": metrics.f1_max(labels, scores)}
    if not pixels:
        return image | {"pixel_auroc": float("nan"), "pixel_aupro": float("nan")}
    return image | {"pixel_auroc": metrics.pixel_auroc(masks, maps),
                    "pixel_aupro": metrics.pixel_aupro(masks, maps)}


def per_seed(rows: pd.DataFrame, columns: Sequence[str], by: Sequence[str]
             ) -> pd.DataFrame:
    """Results rows averaged within every `by` group and seed (over whatever else
    varies, e.g. the categories): one row per (`by`..., seed)."""
    _lists("per_seed", by=by, columns=columns)
    _table(rows, [*by, "seed", *columns], "per_seed")
    return rows.groupby([*by, "seed"], observed=True)[list(columns)].mean()


def seed_summary(rows: pd.DataFrame, columns: Sequence[str], by: Sequence[str]
                 ) -> pd.DataFrame:
    """Mean and standard deviation over seeds of results rows.

    Each seed's rows are first averaged within every `by` group (`per_seed`), then
    the per-seed values are summarised.

    Returns:
        one row per `by` group: ``<column>`` (mean over seeds), ``<column>_std``
        (sample standard deviation, ddof 1; NaN for one seed) and ``n_seeds``.
    """
    _lists("seed_summary", by=by, columns=columns)
    _table(rows, [*by, "seed", *columns], "seed_summary")
    groups = per_seed(rows, columns, by).groupby(level=list(by), observed=True)
    out = groups.mean().join(groups.std(ddof=1).add_suffix("_std"))
    out["n_seeds"] = groups.size()
    return out.reset_index()


def pm_table(summary: pd.DataFrame, columns: Sequence[str], index: Sequence[str],
             digits: int = 3) -> pd.DataFrame:
    """`seed_summary`'s output as ``mean ± std`` strings, one column per metric."""
    def cell(mean: float, std: float) -> str:
        if np.isnan(mean):
            return "–"
        return f"{mean:.{digits}f}" + ("" if np.isnan(std) else f" ± {std:.{digits}f}")

    table = summary.set_index(list(index))
    return pd.DataFrame({m: [cell(a, b) for a, b in zip(table[m], table[f"{m}_std"],
                                                      strict=True)]
                         for m in columns}, index=table.index)


def by_category(rows: pd.DataFrame, index: Sequence[str],
                metric: str = "image_auroc") -> pd.DataFrame:
    """`metric` with one column per category and their ``mean``, one row per `index`
    group (averaged over what else differs, e.g. seeds): a sweep's table at a glance.
    """
    _lists("by_category", index=index)
    _table(rows, [*index, "category", metric], "by_category")
    wide = rows.pivot_table(index=list(index), columns="category", values=metric)
    wide["mean"] = wide.mean(axis=1)
    return wide


def one_dataset(rows: pd.DataFrame, dataset: str = "", *, source: str = "the table"
                ) -> tuple[pd.DataFrame, str]:
    """The rows of one dataset and its name: `dataset`, or (empty) the table's only
    one. Summaries are per dataset, never pooled across datasets.

    Raises:
        ValueError: `dataset` is empty and `rows` hold several, or is not in them.
    """
    _table(rows, ["dataset"], "one_dataset")
    found = sorted(set(rows["dataset"]))
    if not dataset and len(found) > 1:
        raise ValueError(f"{source} holds the datasets {found}: read it once per "
                         f"dataset, e.g. DATASET = {found[0]!r}")
    dataset = dataset or (found[0] if found else "")
    if dataset not in found:
        raise ValueError(f"{source} holds no rows of dataset {dataset!r} (it holds "
                         f"{found})")
    return rows[rows["dataset"] == dataset], dataset


def with_clean(rows: pd.DataFrame, regimes: Sequence[str] = ("iid", "overlap",
                                                             "recurring")
               ) -> pd.DataFrame:
    """Results rows with the clean runs (noise ratio 0, one per method, category and
    seed, whatever regime they were recorded under) repeated under every regime, so
    that each regime's curve starts at the same clean model. Their seen / unseen
    columns are what that regime means on a clean model: under ``recurring`` the
    recurring / novel test anomalies (recorded); under ``overlap`` the trained-on
    anomalies are a uniform draw of the test anomalies, so both groups take the
    overall value; under ``iid`` there are no groups (NaN)."""
    _table(rows, KEYS, "with_clean")
    clean = rows[rows["noise_ratio"] == 0]
    copies = []
    for regime in regimes:
        c = clean.assign(regime=regime)
        for m in GROUPED:
            for group in ("seen", "unseen"):
                if regime == "overlap" and m in c:
                    c[f"{m}_{group}"] = c[m]
                elif regime == "iid":
                    c[f"{m}_{group}"] = np.nan
        copies.append(c)
    return pd.concat([rows[rows["noise_ratio"] > 0], *copies], ignore_index=True)


def flattened(losses: Sequence[float], *, every: int = 1, fraction: float = 0.9,
              window: int = 1) -> int:
    """How long a training loss takes to flatten (the demo budgets of chapter 08):
    the optimiser steps by which it has made `fraction` of its whole fall.

    Args:
        losses: one value per record, a record every `every` optimiser steps (1: per
            step; an epoch's steps for a per-epoch history), from a run long enough
            to have levelled off.
        window: records in the trailing mean that smooths the curve first.

    Returns:
        ``(i + 1) * every`` for the first record i whose smoothed loss is at or below
        ``L_end + (1 - fraction) (L_start - L_end)``, with L_start / L_end the
        smoothed first and last values.
    """
    smooth = pd.Series(np.asarray(losses, float)).rolling(window, min_periods=1).mean()
    start, end = smooth.iloc[0], smooth.iloc[-1]
    level = end + (1 - fraction) * (start - end)
    return (int(np.flatnonzero(smooth.to_numpy() <= level)[0]) + 1) * every


def patch_labels(masks: np.ndarray, grid: int) -> np.ndarray:
    """Ground-truth masks (N, S, S) on a grid x grid patch grid: (N, grid * grid) bool,
    row-major, True where any pixel of the patch's S/grid-pixel cell is defective."""
    n, h, w = masks.shape
    if h % grid or w % grid:
        raise ValueError(f"masks of {h}x{w} px do not divide into a {grid}x{grid} grid")
    cells = np.asarray(masks, bool).reshape(n, grid, h // grid, grid, w // grid)
    return cells.any(axis=(2, 4)).reshape(n, grid * grid)


def filter_quality(filtered: np.ndarray, defect: np.ndarray) -> dict[str, float]:
    """How well a patch filter (SoftPatch's) finds defective patches: ``precision``
    (share of the filtered patches that are defective), ``recall`` (share of the
    defective patches filtered), ``n_filtered``, ``n_defect``; NaN when undefined."""
    filtered, defect = np.asarray(filtered, bool), np.asarray(defect, bool)
    if filtered.shape != defect.shape:
        raise ValueError(f"filtered {filtered.shape} and defect {defect.shape} differ")
    hit = int((filtered & defect).sum())
    nf, nd = int(filtered.sum()), int(defect.sum())
    return {"precision": hit / nf if nf else float("nan"),
            "recall": hit / nd if nd else float("nan"),
            "n_filtered": nf, "n_defect": nd}
