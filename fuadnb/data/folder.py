"""Index reader for a folder of one's own images in anomalib's ``Folder`` convention:
a folder of normal images, a folder of anomalous ones, an optional folder of masks,
and no fixed layout beyond that.

Layout (``<root>/<category>`` is what anomalib's ``Folder`` calls ``root``)::

    <root>/<category>/<normal_dir>/*.png|jpg|bmp|tif...     normal images
    <root>/<category>/<abnormal_dir>/*.png|...              anomalous images (test)
    <root>/<category>/<mask_dir>/<stem>.png|jpg|bmp|tif     optional: their masks
    <root>/<category>/<normal_test_dir>/*.png|...           optional: normal test images
    <root>/<category>/folder.yaml                           optional: the names above

The names and the split are options named as anomalib's ``Folder`` datamodule names
them (open-edge-platform/anomalib ``src/anomalib/data/datamodules/image/folder.py``;
the split: ``datamodules/base/image.py``, ``_create_test_split``): ``normal_dir``
(default ``normal``), ``abnormal_dir`` (``abnormal``), ``mask_dir`` (``mask``; the
folder may be absent: then no masks and no pixel metrics), ``normal_test_dir`` (none),
``test_split_ratio`` (0.2) and ``seed`` (0). They come from `index`'s arguments, else
from ``folder.yaml`` in the category folder (a mapping of those keys), else the
defaults; the YAML file is how the CLI, the chapters and the grid cell, which pass no
reader options, read a folder with other names.

The split: ``<abnormal_dir>`` -> test, label 1; ``<normal_test_dir>`` (if given) ->
test, label 0, and every image of ``<normal_dir>`` -> train. Without a
``normal_test_dir`` (as anomalib, which then samples normal test images from the
training set), ``test_split_ratio x n`` (rounded half up) of the n normal images
(at least one, at most n - 1) go to the test set: the first of the names sorted and
permuted by ``numpy.random.default_rng(seed)``, so the same folder always gives the
same split, whatever the file system's order.

Deliberate deviations from anomalib:

- A mask is paired with its image **by file stem**: ``<stem>.<ext>`` or
  ``<stem>_mask.<ext>`` (MVTec AD's naming), ``ext`` any image suffix, never by
  sorted order; an anomalous image without a mask (when the mask folder exists), a
  mask without an image, and two masks for one image are errors.
- anomalib's ``normal_dir`` etc. may be lists of folders and ``root`` optional; here
  each is one folder name (or path) inside ``<root>/<category>``, so that a category
  is one folder like every other layout's.
- Every category is treated as a texture (`kind`): the reader cannot know whether
  the images show an object on a background.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from fuadnb.data.index import (
    IMAGE_SUFFIXES,
    DatasetError,
    kind_of,
    list_images,
    make_index,
    sample_id,
)

SETTINGS_FILE = "folder.yaml"
DEFAULTS: dict[str, Any] = {"normal_dir": "normal", "abnormal_dir": "abnormal",
                            "mask_dir": "mask", "normal_test_dir": None,
                            "test_split_ratio": 0.2, "seed": 0}
FOLDERS = ("normal_dir", "abnormal_dir", "mask_dir", "normal_test_dir")


def kind(category: str) -> str:
    """``"texture"``: a folder's images are scored over the whole frame."""
    return kind_of(category, frozenset())


def settings(cat_dir: Path, options: Mapping[str, Any]
             ) -> tuple[dict[str, Any], set[str]]:
    """The folder names and split of `cat_dir`: `options` over its ``folder.yaml``
    over `DEFAULTS` (None options are ignored), and the names set explicitly."""
    found: dict[str, Any] = {}
    path = cat_dir / SETTINGS_FILE
    if path.is_file():
        try:
            found = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise DatasetError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(found, dict):
            raise DatasetError(f"{path}: must be a mapping of {list(DEFAULTS)}")
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(found) - set(DEFAULTS)) + sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise DatasetError(f"folder dataset: unknown option(s) {unknown} (in {path} or "
                           f"given); the options are {list(DEFAULTS)}")
    out = DEFAULTS | found | given
    ratio = out["test_split_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (
            0 < ratio < 1):
        raise DatasetError(f"folder dataset: test_split_ratio must be a number in "
                           f"(0, 1), got {ratio!r}")
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or \
            out["seed"] < 0:
        raise DatasetError(f"folder dataset: seed must be a whole number >= 0, got "
                           f"{out['seed']!r}")
    for name in FOLDERS:
        if out[name] is not None and (not isinstance(out[name], str)
                                      or not out[name].strip()):
            raise DatasetError(f"folder dataset: {name} must be a folder name, got "
                               f"{out[name]!r}")
    return out, set(found) | set(given)


def index(root: str | Path, category: str, **options: Any) -> pd.DataFrame:
    """Index one folder of one's own images (the module docstring's layout).

    Args:
        root: the folder that holds the category folders.
        category: the folder under `root` that holds the normal, abnormal and mask
            folders (anomalib ``Folder``'s ``root``).
        options: ``normal_dir``, ``abnormal_dir``, ``mask_dir``, ``normal_test_dir``,
            ``test_split_ratio``, ``seed`` (over ``folder.yaml``, over `DEFAULTS`).

    Returns:
        The index (``dataset == "folder"``): normal images -> train (label 0,
        defect ``good``) or test; anomalous images -> test, label 1, defect the
        abnormal folder's name, mask paired by stem (None without a mask folder).

    Raises:
        DatasetError: a missing folder, a folder without images, a mask without an
            image (or an image without its mask, or two masks for one image), too
            few normal images to split, or a bad option; one line naming the path.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist (or is not a folder)")
    cat_dir = root / category
    if not cat_dir.is_dir():
        found = categories(root)
        raise DatasetError(f"{cat_dir} not found; folder categories under {root}: "
                           f"{found}" if found else f"{cat_dir} not found, and no "
                           f"folder under {root} holds a '{DEFAULTS['normal_dir']}' "
                           f"folder or a {SETTINGS_FILE}")
    s, explicit = settings(cat_dir, options)

    def folder(name: str, required: bool) -> Path | None:
        if s[name] is None:
            return None
        path = cat_dir / s[name]
        if not path.is_dir():
            if not required:
                return None
            raise DatasetError(f"{path} not found: the {name} of category "
                               f"{category!r} (set {name} in {cat_dir / SETTINGS_FILE} "
                               "to the folder's name)")
        found = list_images(path)
        if not found:
            raise DatasetError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in "
                               f"the {name} of category {category!r}")
        return path

    normal_dir = folder("normal_dir", True)
    abnormal_dir = folder("abnormal_dir", True)
    normal_test_dir = folder("normal_test_dir", True)
    for name, path in (("abnormal_dir", abnormal_dir),
                       ("normal_test_dir", normal_test_dir)):
        if path is not None and path.resolve() == normal_dir.resolve():
            raise DatasetError(f"{name} and normal_dir are both {path}: give the "
                               "normal and the other images separate folders")
    mask_dir = cat_dir / s["mask_dir"]
    if "mask_dir" in explicit and not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir} not found: the mask_dir of category "
                           f"{category!r} (remove mask_dir to read no masks)")
    normal = list_images(normal_dir)
    anomalous = list_images(abnormal_dir)
    masks = pair_masks(anomalous, mask_dir) if mask_dir.is_dir() else {}

    def row(path: Path, split: str, label: int, mask: Path | None = None) -> dict:
        return {"id": sample_id(path, root), "dataset": "folder",
                "category": category, "split": split, "label": label,
                "defect": abnormal_dir.name if label else "good",
                "image_path": str(path), "mask_path": None if mask is None
                else str(mask)}

    if normal_test_dir is None:
        test_normal = split_normal(normal, s["test_split_ratio"], s["seed"], normal_dir)
    else:
        test_normal = set(list_images(normal_test_dir))
        normal = normal + sorted(test_normal)
    rows = [row(p, "test" if p in test_normal else "train", 0) for p in normal]
    rows += [row(p, "test", 1, masks.get(p)) for p in anomalous]
    return make_index(rows, source=cat_dir)


def split_normal(images: list[Path], ratio: float, seed: int, where: Path
                 ) -> set[Path]:
    """The normal images that go to the test set: ``ratio x n`` rounded half up (at
    least 1, at most n - 1), the first of `images` sorted by name and permuted by
    ``numpy.random.default_rng(seed)``."""
    n = len(images)
    if n < 2:
        raise DatasetError(f"{where}: {n} normal image(s); at least 2 are needed to "
                           "split them into training and test images (or give a "
                           "normal_test_dir)")
    k = min(n - 1, max(1, math.floor(ratio * n + 0.5)))
    order = np.random.default_rng(seed).permutation(n)
    ordered = sorted(images, key=lambda p: p.name)
    return {ordered[i] for i in order[:k]}


def pair_masks(images: list[Path], mask_dir: Path) -> dict[Path, Path]:
    """Each anomalous image's mask in `mask_dir`, by stem (``<stem>.*`` or
    ``<stem>_mask.*``).

    Raises:
        DatasetError: an image without a mask, a mask without an image, or two
            masks for one image.
    """
    by_stem: dict[str, list[Path]] = {}
    for mask in list_images(mask_dir):
        stem = mask.stem.removesuffix("_mask") if mask.stem.endswith("_mask") and \
            mask.stem != "_mask" else mask.stem
        by_stem.setdefault(stem, []).append(mask)
    stems = {p.stem for p in images}
    orphans = sorted((m, stem) for stem, found in by_stem.items()
                     if stem not in stems for m in found)
    if orphans:
        (mask, stem), n = orphans[0], len(orphans)
        raise DatasetError(f"mask without an image: {mask} (no anomalous image "
                           f"{stem}.* in the abnormal folder; {n} such mask(s))")
    out = {}
    for image in images:
        found = by_stem.get(image.stem, [])
        if not found:
            raise DatasetError(f"no mask for anomalous image {image} in {mask_dir} "
                               f"(expected {image.stem}.png or {image.stem}_mask.png, "
                               "any image suffix)")
        if len(found) > 1:
            raise DatasetError(f"two masks for anomalous image {image}: "
                               f"{', '.join(str(m) for m in found)}")
        out[image] = found[0]
    return out


def categories(root: Path | str) -> list[str]:
    """The folders under `root` that hold a ``folder.yaml`` or a folder named as the
    default ``normal_dir``, sorted."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and (
        (p / SETTINGS_FILE).is_file() or (p / DEFAULTS["normal_dir"]).is_dir()))
