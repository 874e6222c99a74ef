"""Index reader for Real-IAD (CVPR 2024), from its JSON split files.

Layout as distributed (reference: /work/shared/reference/data_and_metrics.md §1.3 and
§2.4; official README, Tencent/AnomalyDetection_Real-IAD@98c28ff ``README.md`` §1.1)::

    <root>/realiad_1024/<category>/OK/S0001/<cat>_0001_OK_C1_<ts>.jpg
    <root>/realiad_1024/<category>/NG/<CODE>/S0xxx/<cat>_xxxx_NG_C3_<ts>.jpg
    <root>/realiad_1024/<category>/NG/<CODE>/S0xxx/<cat>_xxxx_NG_C3_<ts>_mask.png
    <root>/realiad_jsons/<category>.json                 # multi-view split
    <root>/realiad_jsons_sv/<category>.json              # single view (C1)
    <root>/realiad_jsons_fuiad_{0.0,0.1,0.2,0.4}/<category>.json   # contaminated train

JSON schema (official ``datasets/explicit_dataset.py``, ``load_explicit``):
``{"meta": {"prefix": "<cat>/", "normal_class": "OK", ...}, "train": [...],
"test": [...]}``; every record has exactly the keys ``category, anomaly_class,
image_path, mask_path``, with paths relative to ``prefix`` and ``mask_path`` null for
normals.

Path joining: the official loader builds ``osp.join(prefix, image_path)`` and its
image reader (inherited from UniAD ``datasets/image_reader.py``) joins that to
``image_dir = data/Real-IAD/realiad_1024`` (``experiments/*/config.yaml``). We do the
same: ``<root>/<resolution>/<prefix>/<image_path>`` (a path join, so a prefix with or
without a trailing ``/`` works). anomalib (``src/anomalib/data/datasets/image/
realiad.py``) ignores the prefix and uses ``realiad_<res>/<category>/<image_path>``,
which is the same file whenever ``prefix == "<category>/"``.

JSON folder: the official README extracts the split folders directly under the root.
anomalib's default ``json_path`` is ``realiad_jsons/realiad_jsons/{category}.json``,
i.e. the zip unpacked into its own ``realiad_jsons/`` folder; we accept both
(``<root>/<split>/`` first, then ``<root>/realiad_jsons/<split>/``).

Deliberate deviations from the official loader:

- Labels come from ``anomaly_class`` and ``mask_path`` only, never from the path: a
  record is normal iff ``mask_path is None or anomaly_class == normal_class`` (the
  official test-time rule). About 26.9k ``NG/`` views are labelled ``OK`` because the
  defect is not visible in that view; they are normal here.
- The same rule is applied to **train** records. The official loader sets every train
  label to 0 (the model must not see contamination); our index records the true label
  so that contamination detection can be scored. Models never read labels.
- ``id`` is the image path relative to ``<root>/<resolution>`` without suffix (e.g.
  ``audiojack/NG/AK/S0012/audiojack_0012_NG_C3_...``): unique across the five views
  (the view is in the file name) and the same at every resolution, so committed split
  files do not depend on the resolution.
- Every referenced image and mask must exist (checked with a ``stat``, nothing opened).

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fuadnb.data.index import DatasetError, kind_of, make_index, sample_id

CATEGORIES = (
    "audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood",
    "mint", "mounts", "pcb", "phone_battery", "plastic_nut", "plastic_plug",
    "porcelain_doll", "regulator", "rolled_strip_base", "sim_card_set", "switch",
    "tape", "terminalblock", "toothbrush", "toy", "toy_brick", "transistor1",
    "u_block", "usb", "usb_adaptor", "vcpill", "wooden_beads", "woodstick", "zipper",
)
OBJECTS = frozenset(CATEGORIES)   # every Real-IAD category is an object
SPLITS = (
    "realiad_jsons", "realiad_jsons_sv", "realiad_jsons_fuiad_0.0",
    "realiad_jsons_fuiad_0.1", "realiad_jsons_fuiad_0.2", "realiad_jsons_fuiad_0.4",
)
RESOLUTIONS = ("realiad_256", "realiad_512", "realiad_1024", "realiad_raw")
RECORD_KEYS = frozenset({"category", "anomaly_class", "image_path", "mask_path"})


def kind(category: str) -> str:
    """``"object"`` (every Real-IAD category) or ``"texture"`` (an unknown name)."""
    return kind_of(category, OBJECTS)


def index(root: str | Path, category: str, *, split: str = "realiad_jsons",
          resolution: str | int = "realiad_1024") -> pd.DataFrame:
    """Index one Real-IAD category from one JSON split.

    Args:
        root: the Real-IAD root, which holds ``realiad_<res>/`` and the JSON folders.
        category: one of `CATEGORIES` (the JSON file is ``<category>.json``).
        split: JSON folder, one of `SPLITS` (any other folder that exists also works).
        resolution: image folder, one of `RESOLUTIONS`; ``"1024"`` or ``1024`` is
            read as ``realiad_1024``.

    Returns:
        The index (``dataset == "real_iad"``): the JSON's ``train``/``test`` records;
        label 0 if ``mask_path is None or anomaly_class == meta.normal_class`` else 1
        (train records included); ``defect`` is ``good`` for label 0, else the
        ``anomaly_class`` code (e.g. ``AK``); ``mask_path`` is None for label 0.

    Raises:
        DatasetError: missing root, an unknown split (the message lists the split
            folders found), an unknown category (lists the JSON files of the split),
            a missing resolution folder, a JSON that breaks the schema, an image
            listed in both train and test, or referenced files that do not exist.

    Explained in: book/chapters/01_contamination
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist (or is not a folder)")
    json_path = _json_file(root, split, category)
    image_root = root / _resolution_name(resolution)
    if not image_root.is_dir():
        found = [p.name for p in _subdirs(root) if p.name in RESOLUTIONS]
        raise DatasetError(f"image folder {image_root} not found; resolutions found "
                           f"under {root}: {found}")
    info = _load_json(json_path)
    prefix, normal_class = info["meta"]["prefix"], info["meta"]["normal_class"]

    rows, seen = [], {}
    for part in ("train", "test"):
        for i, rec in enumerate(info[part]):
            where = f"{json_path} {part}[{i}]"
            normal = rec["mask_path"] is None or rec["anomaly_class"] == normal_class
            image = image_root / prefix / rec["image_path"]
            sid = sample_id(image, image_root)
            if sid in seen:
                raise DatasetError(f"{where}: image {rec['image_path']} is already "
                                   f"listed at {seen[sid]}; the index needs one row "
                                   "per image")
            seen[sid] = where
            rows.append({
                "id": sid, "dataset": "real_iad", "category": category,
                "split": part, "label": 0 if normal else 1,
                "defect": "good" if normal else rec["anomaly_class"],
                "image_path": str(image),
                "mask_path": None if normal else str(image_root / prefix
                                                     / rec["mask_path"]),
            })
    return make_index(rows, source=json_path, listed=True)


def split_folders(root: str | Path) -> list[str]:
    """JSON split folders under `root`, relative to it (e.g. ``realiad_jsons_sv``).

    Both layouts count: folders directly under the root and folders under
    ``<root>/realiad_jsons/`` (the zip unpacked into its own folder).
    """
    root = Path(root)
    found = []
    for base in (root, root / "realiad_jsons"):
        if base.is_dir():
            found += [p.relative_to(root).as_posix() for p in _subdirs(base)
                      if p.name.startswith("realiad_jsons") and any(p.glob("*.json"))]
    return found


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders of `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir())


def _resolution_name(resolution: str | int) -> str:
    """``1024`` / ``"1024"`` -> ``"realiad_1024"``; other names are returned as is."""
    name = str(resolution)
    return f"realiad_{name}" if name.isdigit() or name == "raw" else name


def _json_file(root: Path, split: str, category: str) -> Path:
    """``<split>/<category>.json`` in either JSON layout; clear errors otherwise."""
    folders = [d for d in (root / split, root / "realiad_jsons" / split)
               if d.is_dir() and any(d.glob("*.json"))]
    if not folders:
        raise DatasetError(f"split folder {split!r} not found under {root} (nor under "
                           f"{root / 'realiad_jsons'}); split folders found: "
                           f"{split_folders(root)}")
    for folder in folders:
        if (folder / f"{category}.json").is_file():
            return folder / f"{category}.json"
    found = sorted(p.stem for p in folders[0].glob("*.json"))
    raise DatasetError(f"{folders[0] / (category + '.json')} not found; categories in "
                       f"{folders[0]}: {found}")


def _load_json(path: Path) -> dict:
    """Load a Real-IAD split file and check its schema (``load_explicit``'s asserts)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(info, dict) or not {"meta", "train", "test"} <= info.keys():
        keys = sorted(info) if isinstance(info, dict) else type(info).__name__
        raise DatasetError(f"{path}: expected an object with keys meta, train, test; "
                           f"got {keys}")
    meta = info["meta"]
    if not isinstance(meta, dict) or not {"prefix", "normal_class"} <= meta.keys():
        raise DatasetError(f"{path}: meta must hold 'prefix' and 'normal_class'")
    for part in ("train", "test"):
        if not isinstance(info[part], list):
            raise DatasetError(f"{path}: '{part}' must be a list of records")
        for i, rec in enumerate(info[part]):
            if not isinstance(rec, dict) or set(rec) != RECORD_KEYS:
                keys = sorted(rec) if isinstance(rec, dict) else rec
                raise DatasetError(f"{path} {part}[{i}]: record keys {keys}, expected "
                                   f"exactly {sorted(RECORD_KEYS)}")
    return info
