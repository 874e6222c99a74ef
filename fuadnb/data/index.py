"""The sample index: one row per image, the same columns for every dataset layout.

Every reader (`mvtec`, `mpdd`, `visa`, `btad`, `real_iad`) returns a DataFrame built by
`make_index`, so contamination, loading and evaluation never look at a layout again.

Columns:
    id          stable, unique string: the image path relative to the dataset root
                (Real-IAD: to its resolution folder, so ids do not depend on the
                resolution), POSIX separators, suffix removed
                (e.g. ``bottle/test/broken_large/000``)
    dataset     dataset id (``mvtec_ad``, ``visa``, ``mpdd``, ``btad``, ``real_iad``,
                ``synthetic``)
    category    category / object name
    split       ``train``, ``test``, ``pool`` (extra fresh anomalies) or ``recurring``
                (extra copies of recurring defects); the last two: synthetic only
    label       0 = normal, 1 = anomalous (from the layout's labels, never guessed)
    defect      defect type; ``good`` for normal images
    image_path  absolute path of the image
    mask_path   absolute path of the mask, or None (normal images, or no mask shipped)

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

COLUMNS = ("id", "dataset", "category", "split", "label", "defect",
           "image_path", "mask_path")
SPLITS = ("train", "test", "pool", "recurring")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DatasetError(ValueError):
    """A dataset on disk does not match the layout it was read as."""


def kind_of(category: str, objects: frozenset[str]) -> str:
    """``"object"`` if `category` is in `objects`, else ``"texture"`` (a surface that
    fills the frame, or a category name the dataset module does not know)."""
    return "object" if category in objects else "texture"


def sample_id(path: str | Path, root: str | Path) -> str:
    """Stable id of an image: its path relative to `root`, POSIX, without suffix."""
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    return rel.with_suffix("").as_posix()


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (not `os.listdir` order)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def make_index(rows: Iterable[dict], *, source: str | Path,
               listed: bool = False) -> pd.DataFrame:
    """Build and check an index from row dicts with the keys in `COLUMNS`.

    Args:
        rows: one dict per image.
        source: the folder or file the rows came from, named in errors.
        listed: the rows come from a list file (CSV, JSON), so check that every
            image and mask it names exists.

    Returns:
        DataFrame with exactly `COLUMNS`, sorted by (split, id), a fresh RangeIndex.
    """
    rows = list(rows)
    if listed:
        missing = [path for r in rows for path in (r["image_path"], r["mask_path"])
                   if path is not None and not Path(path).is_file()]
        if missing:
            raise DatasetError(f"{source}: {len(missing)} file(s) it lists not found; "
                               f"first: {missing[0]}")
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        raise DatasetError(f"{source}: no images found; check the dataset root and "
                           "that the folder has the expected layout")
    bad_split = sorted(set(df["split"]) - set(SPLITS))
    if bad_split:
        raise DatasetError(f"{source}: unknown split(s) {bad_split}")
    dup = df["id"][df["id"].duplicated()].tolist()
    if dup:
        raise DatasetError(f"{source}: duplicate sample ids, e.g. {dup[:3]}")
    df["label"] = df["label"].astype(int)
    masks = df["mask_path"].astype(object)
    df["mask_path"] = masks.where(masks.notna(), None)
    return df.sort_values(["split", "id"], kind="stable").reset_index(drop=True)
