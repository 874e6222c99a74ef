"""Datasets: layout readers, the synthetic benchmark, contamination, image loading,
and the synthetic anomalies that methods such as RD-E train on (`anomalies`).

``fb.data.index(dataset, root, category)`` is the one entry point to every layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from fuadnb.data import (
    anomalies,
    btad,
    contamination,
    folder,
    images,
    mpdd,
    mvtec,
    real_iad,
    synthetic,
    visa,
)
from fuadnb.data.contamination import Split, contaminate
from fuadnb.data.index import COLUMNS, DatasetError
from fuadnb.utils import check_name

READERS = {"mvtec_ad": mvtec, "visa": visa, "mpdd": mpdd, "btad": btad,
           "real_iad": real_iad, "synthetic": synthetic, "folder": folder}
DATASETS = tuple(READERS)

__all__ = ["COLUMNS", "DATASETS", "DatasetError", "Split", "anomalies", "categories",
           "contaminate", "contamination", "family", "images", "index", "kind",
           "synthetic"]


def _check(dataset: str, root: Path | str) -> Path:
    if not isinstance(dataset, str) or dataset not in READERS:
        raise DatasetError(f"unknown dataset layout {dataset!r}; choose one of "
                           f"{list(DATASETS)}")
    if not isinstance(root, (str, os.PathLike)) or not str(root).strip():
        raise DatasetError(f"dataset root must be a folder path, got {root!r}")
    root = Path(root)
    if not root.is_dir():
        hint = (" (generate it with `python -m fuadnb generate`)"
                if dataset == "synthetic" else "")
        raise DatasetError(f"dataset root {root} does not exist or is not a folder; "
                           f"pass the folder that holds the {dataset} categories{hint}")
    return root


def index(dataset: str, root: Path | str, category: str, **options) -> pd.DataFrame:
    """One row per image of `category` (see `fuadnb.data.index` for the columns),
    plus ``prototype``: which recurring defect an image copies (synthetic data's
    ``recurring`` split and recurring test anomalies, e.g. ``"hole/0"``), else None."""
    root = _check(dataset, root)
    try:
        check_name(category, "category")
    except ValueError as err:
        raise DatasetError(f"{err} (a category folder of {root})") from None
    if dataset == "synthetic":
        df = mvtec.index(root, category, dataset="synthetic", **options)
        return df.assign(prototype=df["id"].map(synthetic.prototypes(root)))
    return READERS[dataset].index(root, category, **options).assign(prototype=None)


def kind(dataset: str, category: str) -> str:
    """``"object"`` or ``"texture"``: whether `category` of `dataset` is an object
    on a background (methods keep synthetic anomalies on it) or a surface."""
    if dataset not in READERS:
        raise DatasetError(f"unknown dataset layout {dataset!r}; choose one of "
                           f"{list(DATASETS)}")
    return READERS[dataset].kind(category)


def family(dataset: str, category: str) -> str:
    """The family `category` belongs to, the cluster a bootstrap over categories
    resamples: the synthetic benchmark's (`fuadnb.data.synthetic.family`, e.g.
    ``"fabric"`` for ``"twill"``); a real dataset's category is its own family."""
    if dataset not in READERS:
        raise DatasetError(f"unknown dataset layout {dataset!r}; choose one of "
                           f"{list(DATASETS)}")
    return synthetic.family(category) if dataset == "synthetic" else category


def categories(dataset: str, root: Path | str) -> list[str]:
    """The categories of `dataset` present under `root`, sorted."""
    root = _check(dataset, root)
    if dataset in ("visa", "real_iad"):
        return list(READERS[dataset].CATEGORIES)
    if dataset == "folder":
        return folder.categories(root)
    return sorted(p.name for p in root.iterdir() if (p / "train").is_dir())
