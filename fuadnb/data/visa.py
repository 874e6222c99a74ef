"""Index reader for VisA (Visual Anomaly), from its official ``split_csv/1cls.csv``.

Layout as distributed (reference: /work/shared/reference/data_and_metrics.md §1.2; the
CSV format is the one anomalib's ``apply_cls1_split`` reads,
open-edge-platform/anomalib ``src/anomalib/data/datamodules/image/visa.py``)::

    <root>/<object>/Data/Images/Normal/0000.JPG
    <root>/<object>/Data/Images/Anomaly/000.JPG
    <root>/<object>/Data/Masks/Anomaly/000.png     # multi-valued, one value per defect
    <root>/split_csv/1cls.csv                      # object,split,label,image,mask

Rows of ``1cls.csv`` (paths relative to the root; empty mask field for normals)::

    object,split,label,image,mask
    candle,train,normal,candle/Data/Images/Normal/0836.JPG,
    candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png

Deliberate choices:

- We read the original tree through the CSV and do not build anomalib's reorganised
  MVTec-like copy (``train/good``, ``test/bad``, ``ground_truth/bad``).
- VisA masks are multi-valued. The index only points at the file; whoever loads a mask
  must binarise it with ``mask != 0`` (anomalib and the spot-diff README do the same).
- ``defect`` is ``good`` for normal images and ``anomaly`` for anomalous ones: the 1cls
  split has no defect types.
- The header, the labels and the existence of every referenced file are checked, so a
  wrong root fails here and not in the middle of training.

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from fuadnb.data.index import DatasetError, kind_of, make_index, sample_id

CATEGORIES = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)
OBJECTS = frozenset(CATEGORIES)   # every VisA category is an object
HEADER = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
CSV_SPLITS = ("train", "test")


def kind(category: str) -> str:
    """``"object"`` (every VisA category) or ``"texture"`` (an unknown name)."""
    return kind_of(category, OBJECTS)


def index(root: str | Path, category: str, *,
          split_csv: str | Path = "split_csv/1cls.csv") -> pd.DataFrame:
    """Index one VisA object from a split CSV.

    Args:
        root: the VisA root (``VisA_20220922``), which holds the object folders and
            ``split_csv/``.
        category: object name as written in the CSV's ``object`` column, e.g.
            ``candle``.
        split_csv: the split file, relative to `root` (or absolute).

    Returns:
        The index (``dataset == "visa"``): split and label from the CSV; ``defect`` is
        ``good`` (label 0, mask None) or ``anomaly`` (label 1, mask path).

    Raises:
        DatasetError: missing root or CSV, a header other than
            ``object,split,label,image,mask``, an unknown object (the message lists
            the objects in the CSV), an unknown split or label, an anomaly without a
            mask, or referenced files that do not exist (first one named, count given).

    Explained in: book/chapters/01_contamination
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist (or is not a folder)")
    csv_path = root / split_csv
    if not csv_path.is_file():
        raise DatasetError(f"split file {csv_path} not found; VisA ships "
                           "split_csv/1cls.csv next to the object folders")
    records = _read_csv(csv_path)  # [(line number, row dict)]
    mine = [(line, rec) for line, rec in records if rec["object"] == category]
    if not mine:
        objects = sorted({rec["object"] for _, rec in records})
        raise DatasetError(f"{csv_path}: no rows for object {category!r}; objects in "
                           f"the file: {objects}")
    rows = [_row(rec, f"{csv_path}:{line}", root) for line, rec in mine]
    return make_index(rows, source=csv_path, listed=True)


def _read_csv(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of a VisA split CSV with their line numbers, after checking the header."""
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header != HEADER:
            raise DatasetError(f"{csv_path}: header is {','.join(header)!r}, expected "
                               f"{','.join(HEADER)!r}")
        records = []
        for fields in reader:
            if not fields:
                continue  # blank line
            if len(fields) != len(HEADER):
                raise DatasetError(f"{csv_path}:{reader.line_num}: expected "
                                   f"{len(HEADER)} fields, got {fields}")
            records.append((reader.line_num, dict(zip(HEADER, fields, strict=True))))
    return records


def _row(rec: dict[str, str], where: str, root: Path) -> dict:
    """One index row from one CSV record; `where` (``file:line``) is used in errors."""
    if rec["split"] not in CSV_SPLITS:
        raise DatasetError(f"{where}: split {rec['split']!r} not in {CSV_SPLITS}")
    if rec["label"] not in LABELS:
        raise DatasetError(f"{where}: label {rec['label']!r} not in {sorted(LABELS)}")
    label = LABELS[rec["label"]]
    if label == 1 and not rec["mask"]:
        raise DatasetError(f"{where}: anomalous image {rec['image']} has no mask")
    if label == 0 and rec["mask"]:
        raise DatasetError(f"{where}: normal image {rec['image']} has a mask "
                           f"({rec['mask']}); VisA leaves the field empty for normals")
    image = root / rec["image"]
    return {"id": sample_id(image, root), "dataset": "visa", "category": rec["object"],
            "split": rec["split"], "label": label,
            "defect": "anomaly" if label else "good", "image_path": str(image),
            "mask_path": str(root / rec["mask"]) if label else None}
