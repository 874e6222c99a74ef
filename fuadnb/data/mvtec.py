"""Index reader for the MVTec AD folder layout (also used by MPDD, BTAD, synthetic).

Layout as distributed (reference: /work/shared/reference/data_and_metrics.md §1.1)::

    <root>/<category>/train/good/000.png
    <root>/<category>/test/good/000.png                  # normal, no mask
    <root>/<category>/test/<defect>/000.png              # anomalous
    <root>/<category>/ground_truth/<defect>/000_mask.png # same stem + "_mask"

Synthetic extension (our generator, ``fuadnb.data.synthetic``): extra anomalies in
``<category>/pool/<defect>/`` with masks in ``pool_ground_truth/<defect>/``. They get
split ``pool``, label 1.

After anomalib's ``make_mvtec_ad_dataset`` (open-edge-platform/anomalib
``src/anomalib/data/datasets/image/mvtecad.py``): labels come from the folder names,
masks from ``ground_truth/``. Deliberate deviations:

- Masks are paired with images **by name** (``000.png`` -> ``000_mask.png``), never by
  sorted order as SoftPatch ``src/datasets/mvtec.py`` L137-159 and FUN-AD
  ``dataload.py`` L121-127 do; a missing mask is an error, not a silent shift.
- Layout problems raise `DatasetError` naming the offending path, instead of returning
  an empty or mis-labelled frame.
- Indexing lists files only; no image or mask is opened.

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from fuadnb.data.index import DatasetError, kind_of, list_images, make_index, sample_id

CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather",
    "metal_nut", "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
# the dataset's ten object categories (the other five are textures)
OBJECTS = frozenset({"bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill",
                     "screw", "toothbrush", "transistor", "zipper"})

# (train good, test good, test anomalous) per category, as distributed
# (reference/data_and_metrics.md §1.1); the contamination chapter's supply table.
COUNTS: dict[str, tuple[int, int, int]] = {
    "bottle": (209, 20, 63), "cable": (224, 58, 92), "capsule": (219, 23, 109),
    "carpet": (280, 28, 89), "grid": (264, 21, 57), "hazelnut": (391, 40, 70),
    "leather": (245, 32, 92), "metal_nut": (220, 22, 93), "pill": (267, 26, 141),
    "screw": (320, 41, 119), "tile": (230, 33, 84), "toothbrush": (60, 12, 30),
    "transistor": (213, 60, 40), "wood": (247, 19, 60), "zipper": (240, 32, 119),
}

MaskNames = Callable[[str], tuple[str, ...]]


def kind(category: str) -> str:
    """``"object"`` or ``"texture"``."""
    return kind_of(category, OBJECTS)


def mvtec_mask_names(stem: str) -> tuple[str, ...]:
    """MVTec AD mask file name for an image stem: ``000`` -> ``("000_mask.png",)``."""
    return (f"{stem}_mask.png",)


def index(root: str | Path, category: str, *, dataset: str = "mvtec_ad",
          normal: str = "good") -> pd.DataFrame:
    """Index one category of an MVTec-AD-shaped dataset.

    Args:
        root: folder that holds the category folders (e.g. ``mvtec_anomaly_detection``).
        category: category folder name; any folder under `root` works (`CATEGORIES` is
            informational, synthetic categories are not in it).
        dataset: value of the ``dataset`` column (``mvtec_ad``, ``mpdd``,
            ``synthetic``).
        normal: name of the defect-free folder under ``train/`` and ``test/``.

    Returns:
        The index (`fuadnb.data.index.COLUMNS`): ``train/<normal>`` -> train, label 0;
        ``test/<normal>`` -> test, label 0, no mask; ``test/<defect>`` -> test, label 1,
        mask ``ground_truth/<defect>/<stem>_mask.png``; ``pool/<defect>`` -> pool,
        label 1, mask ``pool_ground_truth/<defect>/<stem>_mask.png``; the same for
        ``recurring/<defect>`` (split ``recurring``).

    Raises:
        DatasetError: missing root, unknown category (the message lists the categories
            found), missing ``train/<normal>``, or a defect image without its mask.

    Example:
        >>> from fuadnb.data import mvtec
        >>> df = mvtec.index("data/mvtec_ad", "bottle")  # doctest: +SKIP
        >>> df.groupby(["split", "label"]).size()  # doctest: +SKIP

    Explained in: book/chapters/01_contamination
    """
    return index_tree(root, category, dataset=dataset, normal=normal,
                      mask_names=mvtec_mask_names)


def index_tree(root: str | Path, category: str, *, dataset: str, normal: str,
               mask_names: MaskNames, normal_defect: str = "good") -> pd.DataFrame:
    """Index an MVTec-shaped category whose mask naming is given by `mask_names`.

    Shared by `index` (MVTec AD, MPDD, synthetic) and `fuadnb.data.btad`.

    Args:
        root: folder that holds the category folders.
        category: category folder name.
        dataset: value of the ``dataset`` column.
        normal: name of the defect-free folder (``good`` for MVTec, ``ok`` for BTAD).
        mask_names: image stem -> candidate mask file names, in order of preference;
            the first one that exists in ``ground_truth/<defect>/`` is used.
        normal_defect: value of the ``defect`` column for normal images.

    Returns:
        The index, as described in `index`.

    Raises:
        DatasetError: as described in `index`.
    """
    root = Path(root).expanduser().resolve()
    cat_dir = _category_dir(root, category, normal)
    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"{test_dir}: test folder not found")

    def row(path: Path, split: str, label: int, defect: str,
            mask: Path | None) -> dict:
        return {"id": sample_id(path, root), "dataset": dataset, "category": category,
                "split": split, "label": label, "defect": defect,
                "image_path": str(path),
                "mask_path": None if mask is None else str(mask)}

    rows = [row(p, "train", 0, normal_defect, None)
            for p in list_images(cat_dir / "train" / normal)]
    splits = [("test", test_dir, cat_dir / "ground_truth")]
    for extra in ("pool", "recurring"):   # the synthetic benchmark's extra anomalies
        if (cat_dir / extra).is_dir():
            splits.append((extra, cat_dir / extra, cat_dir / f"{extra}_ground_truth"))
    for split, split_dir, gt_dir in splits:
        for defect_dir in _subdirs(split_dir):
            defect = defect_dir.name
            if defect == normal:
                if split != "test":
                    raise DatasetError(f"{defect_dir}: the {split} folder holds "
                                       f"anomalies only; a '{normal}' folder is not "
                                       "allowed there")
                rows += [row(p, split, 0, normal_defect, None)
                         for p in list_images(defect_dir)]
                continue
            for image in list_images(defect_dir):
                mask = _find_mask(image, gt_dir / defect, mask_names)
                rows.append(row(image, split, 1, defect, mask))
    return make_index(rows, source=cat_dir)


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _category_dir(root: Path, category: str, normal: str) -> Path:
    """Check root, category and ``train/<normal>``; return the category folder."""
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist (or is not a folder)")
    cat_dir = root / category
    train_dir = cat_dir / "train" / normal
    if cat_dir.is_dir() and train_dir.is_dir():
        return cat_dir
    found = [p.name for p in _subdirs(root) if (p / "train").is_dir()]
    hint = (f"categories found under {root}: {found}" if found else
            f"no category folders (with a train/ folder) under {root}; is root the "
            "folder that holds the category folders?")
    missing = cat_dir if not cat_dir.is_dir() else train_dir
    raise DatasetError(f"{missing} not found; {hint}")


def _find_mask(image: Path, gt_dir: Path, mask_names: MaskNames) -> Path:
    """The mask of `image` in `gt_dir`, paired by name; error if none exists."""
    candidates = [gt_dir / name for name in mask_names(image.stem)]
    for mask in candidates:
        if mask.is_file():
            return mask
    expected = " or ".join(str(c) for c in candidates)
    raise DatasetError(f"no mask for anomalous image {image}: expected {expected}")
