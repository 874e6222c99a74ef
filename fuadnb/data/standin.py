"""Stand-ins for the real datasets: every real category name in the layout each
dataset is distributed in, with a few tiny generated images each, for the dress
rehearsal of the paper grid (`fuadnb.rehearsal`) and for tests. Never results.

What is copied from the real datasets (reference/data_and_metrics.md §1):

- **MVTec AD**: the 15 categories and their defect types; ``train/good``,
  ``test/good``, ``test/<defect>``, ``ground_truth/<defect>/<stem>_mask.png`` (0/255);
  PNG, grid, screw and zipper single-channel.
- **VisA**: the 12 objects; ``<object>/Data/Images/{Normal,Anomaly}/*.JPG``,
  multi-valued masks (one value per defect instance) in
  ``<object>/Data/Masks/Anomaly/*.png``, each object's ``image_anno.csv``, and
  ``split_csv/1cls.csv`` with header ``object,split,label,image,mask`` (empty mask
  field for normals); images wider than tall, as VisA's.
- **BTAD**: products 01, 02, 03; ``train/ok``, ``test/ok``, ``test/ko``,
  ``ground_truth/ko/<stem>``; 01 BMP images with PNG masks, 02 PNG, 03 BMP images and
  masks, one of 03's ``ko`` masks all zeros (BTAD ships 11 such).
- **MPDD**: the 6 categories and their defect types, MVTec AD's layout.
- **Real-IAD**: the 30 categories; ``realiad_1024/<cat>/OK/S0001/<cat>_0001_OK_C1_
  <ts>.jpg`` (five views C1..C5 per sample), ``NG/<code>/S....`` with ``_mask.png``
  masks, views of a defective sample where the defect is not visible labelled OK in
  the JSON, and the JSON splits ``realiad_jsons``, ``realiad_jsons_sv`` and
  ``realiad_jsons_fuiad_{0.0,0.1,0.2,0.4}``.

What is not: the counts (`Counts`: a few images per category, the same for every
category, enough for every noise ratio of the paper grid under both regimes), the
sizes (``size`` pixels, not 700-1600) and the pictures (a smooth coloured pattern
per category with a little per-image noise; an anomaly is a dark or bright blob,
its mask exactly the blob).

Every file gets its own random generator keyed by its path (CRC32), so the output
is byte-identical on every run and does not depend on the order of writing.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fuadnb.data import btad, mpdd, mvtec, real_iad, visa

DATASETS = ("mvtec_ad", "visa", "btad", "mpdd", "real_iad")
MARK = "STANDIN.txt"   # in every stand-in root: what it is

# MVTec AD's defect types (reference/data_and_metrics.md §1.1)
MVTEC_DEFECTS: dict[str, tuple[str, ...]] = {
    "bottle": ("broken_large", "broken_small", "contamination"),
    "cable": ("bent_wire", "cable_swap", "combined", "cut_inner_insulation",
              "cut_outer_insulation", "missing_cable", "missing_wire",
              "poke_insulation"),
    "capsule": ("crack", "faulty_imprint", "poke", "scratch", "squeeze"),
    "carpet": ("color", "cut", "hole", "metal_contamination", "thread"),
    "grid": ("bent", "broken", "glue", "metal_contamination", "thread"),
    "hazelnut": ("crack", "cut", "hole", "print"),
    "leather": ("color", "cut", "fold", "glue", "poke"),
    "metal_nut": ("bent", "color", "flip", "scratch"),
    "pill": ("color", "combined", "contamination", "crack", "faulty_imprint",
             "pill_type", "scratch"),
    "screw": ("manipulated_front", "scratch_head", "scratch_neck", "thread_side",
              "thread_top"),
    "tile": ("crack", "glue_strip", "gray_stroke", "oil", "rough"),
    "toothbrush": ("defective",),
    "transistor": ("bent_lead", "cut_lead", "damaged_case", "misplaced"),
    "wood": ("color", "combined", "hole", "liquid", "scratch"),
    "zipper": ("broken_teeth", "combined", "fabric_border", "fabric_interior",
               "rough", "split_teeth", "squeezed_teeth"),
}
MVTEC_GRAY = frozenset({"grid", "screw", "zipper"})   # single-channel PNGs
# MPDD's defect types (§1.4)
MPDD_DEFECTS: dict[str, tuple[str, ...]] = {
    "bracket_black": ("hole", "scratches"),
    "bracket_brown": ("bend_and_parts_mismatch", "parts_mismatch"),
    "bracket_white": ("defective_painting", "scratches"),
    "connector": ("parts_mismatch",),
    "metal_plate": ("major_rust", "scratches", "total_rust"),
    "tubes": ("anomalous",),
}
BTAD_FORMATS = {"01": ("bmp", "png"), "02": ("png", "png"), "03": ("bmp", "bmp")}
REAL_IAD_CODES = ("AK", "BX", "CH", "HS", "PS", "QS", "YW", "ZW")
REAL_IAD_STAMP = "20231021120000"
FUIAD = ("0.0", "0.1", "0.2", "0.4")
DTD_CLASSES = ("banded", "blotchy", "cracked", "dotted")   # 4 of DTD's 47


@dataclass(frozen=True)
class Counts:
    """Images per category. The defaults let every point of the paper grid run:
    SoftPatch's ratio takes int(0.2 x 10) = 2 test anomalies into training, and
    under ``iid`` (moved out of the test set) at least one is left.

    Attributes:
        train: normal training images (Real-IAD: samples of five views).
        test_good: normal test images (Real-IAD: samples).
        anomalies: anomalous test images at least (MVTec AD, MPDD: spread over the
            defect types, at least one each; Real-IAD: samples, three of whose five
            views show the defect).
    """

    train: int = 10
    test_good: int = 3
    anomalies: int = 4

    @classmethod
    def tiny(cls) -> Counts:
        """Smaller, for Real-IAD (five views a sample) and tests."""
        return cls(train=2, test_good=1, anomalies=2)


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in key])


def _normal(category: str, name: str, shape: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: the category's smooth pattern plus this image's noise."""
    g = _rng("pattern", category)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    freq, phase = g.uniform(2, 6, size=(2, 3)), g.uniform(0, 2 * np.pi, size=3)
    colour = g.uniform(60, 190, size=3)
    img = colour + 40 * np.sin(2 * np.pi * (freq[0] * xx[..., None]
                                            + freq[1] * yy[..., None]) + phase)
    img += _rng("noise", category, name).normal(0, 6, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _blobs(name: str, shape: tuple[int, int], count: int = 1) -> np.ndarray:
    """(H, W) uint8 instance map: `count` elliptic blobs numbered 1..count."""
    g = _rng("blob", name)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(shape, np.uint8)
    for k in range(1, count + 1):
        cy, cx = g.uniform(0.2, 0.8) * h, g.uniform(0.2, 0.8) * w
        ry, rx = g.uniform(0.06, 0.15, size=2) * np.array([h, w])
        out[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = k
    return out


def _anomalous(category: str, name: str, shape: tuple[int, int], count: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
    """An image with `count` blobs painted dark or bright, and its instance map."""
    img, blobs = _normal(category, name, shape).astype(np.int16), _blobs(name, shape,
                                                                         count)
    shift = 110 if _rng("sign", name).random() < 0.5 else -110
    img[blobs > 0] += shift
    return np.clip(img, 0, 255).astype(np.uint8), blobs


def _save(arr: np.ndarray, path: Path, mode: str | None = None) -> None:
    """Write `arr` with fixed settings (no metadata), atomically enough for a
    generated folder: PNG compress level 1, JPEG quality 90."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode:
        img = img.convert(mode)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP"}[path.suffix.lower()]
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"compress_level": 1} if fmt == "PNG" else
                                 {"quality": 90} if fmt == "JPEG" else {}))
    path.write_bytes(buf.getvalue())


def _per_defect(defects: tuple[str, ...], anomalies: int) -> int:
    return max(1, -(-anomalies // len(defects)))


def write_mvtec_tree(root: Path, defects: dict[str, tuple[str, ...]],
                     counts: Counts, size: int, gray: frozenset[str] = frozenset()
                     ) -> None:
    """MVTec AD's layout (also MPDD's): one folder per category of `defects`."""
    for cat, kinds in defects.items():
        mode = "L" if cat in gray else None
        base = root / cat
        for split, n in (("train", counts.train), ("test", counts.test_good)):
            for i in range(n):
                name = f"{cat}/{split}/good/{i:03d}"
                _save(_normal(cat, name, (size, size)), base / split / "good" /
                      f"{i:03d}.png", mode)
        for defect in kinds:
            for i in range(_per_defect(kinds, counts.anomalies)):
                name = f"{cat}/test/{defect}/{i:03d}"
                img, blobs = _anomalous(cat, name, (size, size))
                _save(img, base / "test" / defect / f"{i:03d}.png", mode)
                _save(np.where(blobs > 0, 255, 0).astype(np.uint8),
                      base / "ground_truth" / defect / f"{i:03d}_mask.png")


def write_visa(root: Path, counts: Counts, size: int) -> None:
    """VisA's layout: object folders, multi-valued masks, ``split_csv/1cls.csv``."""
    shape = (size, size * 6 // 5)   # (H, W): wider than tall, as VisA's images
    lines = [",".join(visa.HEADER)]
    for obj in visa.CATEGORIES:
        anno = ["image,label,mask"]
        for i in range(counts.train + counts.test_good):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            _save(_normal(obj, rel, shape), root / rel)
            split = "train" if i < counts.train else "test"
            lines.append(f"{obj},{split},normal,{rel},")
            anno.append(f"{rel},normal,")
        for i in range(counts.anomalies):
            rel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG"
            mask = f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            img, blobs = _anomalous(obj, rel, shape, count=1 + i % 3)
            _save(img, root / rel)
            _save(blobs, root / mask)          # values 1..k: one per defect instance
            lines.append(f"{obj},test,anomaly,{rel},{mask}")
            anno.append(f"{rel},anomaly,{mask}")
        (root / obj / "image_anno.csv").write_text("\n".join(anno) + "\n")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(lines) + "\n")


def write_btad(root: Path, counts: Counts, size: int) -> None:
    """BTAD's layout: ``ok``/``ko`` folders, BMP and PNG as each product ships."""
    for cat in btad.CATEGORIES:
        img_ext, mask_ext = BTAD_FORMATS[cat]
        base = root / cat
        for split, n in (("train", counts.train), ("test", counts.test_good)):
            for i in range(n):
                name = f"{cat}/{split}/ok/{i:04d}"
                _save(_normal(cat, name, (size, size)),
                      base / split / "ok" / f"{i:04d}.{img_ext}")
        for i in range(counts.anomalies):
            name = f"{cat}/test/ko/{i:04d}"
            img, blobs = _anomalous(cat, name, (size, size))
            if cat == "03" and i == counts.anomalies - 1:
                blobs[:] = 0    # BTAD ships some all-zero ko masks
            _save(img, base / "test" / "ko" / f"{i:04d}.{img_ext}")
            _save(np.where(blobs > 0, 255, 0).astype(np.uint8),
                  base / "ground_truth" / "ko" / f"{i:04d}.{mask_ext}")


def _riad_view(cat: str, kind: str, sample: int, view: int, code: str = "") -> str:
    """A view's path relative to ``<cat>/``, without suffix."""
    folder = f"OK/S{sample:04d}" if kind == "OK" else f"NG/{code}/S{sample:04d}"
    return f"{folder}/{cat}_{sample:04d}_{kind}_C{view}_{REAL_IAD_STAMP}"


def write_real_iad(root: Path, counts: Counts, size: int) -> None:
    """Real-IAD's layout: ``realiad_1024/<cat>/{OK,NG}`` with five views a sample,
    and its JSON split folders."""
    images = root / "realiad_1024"
    for cat in real_iad.CATEGORIES:
        records: dict[str, list[dict]] = {"train": [], "test": [], "ng": []}
        sample = 0
        for part, n in (("train", counts.train), ("test", counts.test_good)):
            for _ in range(n):
                sample += 1
                for view in range(1, 6):
                    rel = _riad_view(cat, "OK", sample, view)
                    _save(_normal(cat, rel, (size, size)), images / cat / f"{rel}.jpg")
                    records[part].append({"category": cat, "anomaly_class": "OK",
                                          "image_path": f"{rel}.jpg",
                                          "mask_path": None})
        for k in range(counts.anomalies):
            sample += 1
            code = REAL_IAD_CODES[k % len(REAL_IAD_CODES)]
            for view in range(1, 6):
                rel = _riad_view(cat, "NG", sample, view, code)
                visible = view <= 3     # the defect is not seen in views C4, C5
                if visible:
                    img, blobs = _anomalous(cat, rel, (size, size))
                    _save(np.where(blobs > 0, 255, 0).astype(np.uint8),
                          images / cat / f"{rel}_mask.png")
                else:
                    img = _normal(cat, rel, (size, size))
                _save(img, images / cat / f"{rel}.jpg")
                records["ng"].append({
                    "category": cat, "anomaly_class": code if visible else "OK",
                    "image_path": f"{rel}.jpg",
                    "mask_path": f"{rel}_mask.png" if visible else None})
        meta = {"prefix": f"{cat}/", "normal_class": "OK"}
        n_contam = len(records["ng"]) // 5 // 2 * 5   # half the NG samples' views
        splits = {"realiad_jsons": (records["train"], records["test"] + records["ng"]),
                  "realiad_jsons_sv": ([r for r in records["train"]
                                        if "_C1_" in r["image_path"]],
                                       [r for r in records["test"] + records["ng"]
                                        if "_C1_" in r["image_path"]])}
        for ratio in FUIAD:   # contaminated training sets; one test set for all
            take = n_contam if float(ratio) > 0 else 0
            splits[f"realiad_jsons_fuiad_{ratio}"] = (
                records["train"] + records["ng"][:take],
                records["test"] + records["ng"][n_contam:])
        for folder, (train, test) in splits.items():
            path = root / folder / f"{cat}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"meta": meta, "train": train, "test": test},
                                       indent=1))


def write_dtd(root: Path | str, size: int = 64, per_class: int = 2) -> Path:
    """A stand-in for DTD's ``dtd/images/<class>/<class>_NNNN.jpg`` (the texture
    folder RD-E's synthetic anomalies draw from) at `root`; returns its images
    folder."""
    images = Path(root) / "images"
    for cls in DTD_CLASSES:
        for i in range(per_class):
            name = f"{cls}/{cls}_{i + 1:04d}"
            _save(_normal(cls, name, (size, size)), images / f"{name}.jpg")
    return images


def write(root: Path | str, dataset: str, *, counts: Counts | None = None,
          size: int = 64) -> Path:
    """Write the stand-in of `dataset` (one of `DATASETS`) at `root`; returns it.

    An existing stand-in with the same settings is kept as it is (its `MARK` file
    records them); a folder holding anything else is refused, so a real dataset is
    never written into.

    Raises:
        ValueError: an unknown dataset, or `root` holds something other than this
            stand-in.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; stand-ins exist for "
                         f"{list(DATASETS)}")
    counts = counts or (Counts.tiny() if dataset == "real_iad" else Counts())
    root = Path(root)
    mark = (f"A generated stand-in for {dataset}: every category name in its "
            f"layout, a few {size} px images each, {counts}. For the dress rehearsal "
            "of the paper grid (python -m fuadnb rehearse); never results.\n")
    if (root / MARK).is_file() and (root / MARK).read_text() == mark:
        return root
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty and holds no stand-in of these "
                         f"settings ({MARK}); remove it or write elsewhere")
    if dataset == "mvtec_ad":
        write_mvtec_tree(root, {c: MVTEC_DEFECTS[c] for c in mvtec.CATEGORIES},
                         counts, size, MVTEC_GRAY)
    elif dataset == "mpdd":
        write_mvtec_tree(root, {c: MPDD_DEFECTS[c] for c in mpdd.CATEGORIES},
                         counts, size)
    elif dataset == "visa":
        write_visa(root, counts, size)
    elif dataset == "btad":
        write_btad(root, counts, size)
    else:
        write_real_iad(root, counts, size)
    (root / MARK).write_text(mark)
    return root


def categories(dataset: str) -> tuple[str, ...]:
    """Every category of `dataset`, as its reader names them."""
    return {"mvtec_ad": mvtec.CATEGORIES, "visa": visa.CATEGORIES,
            "btad": btad.CATEGORIES, "mpdd": mpdd.CATEGORIES,
            "real_iad": real_iad.CATEGORIES}[dataset]
