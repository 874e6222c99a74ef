"""One file of the benchmark: its seeded base image, its defect (fresh, or a copy of
a recurring prototype) and the exact mask of the pixels that changed."""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from fuadnb.data.synthetic.defects import DEFECT_FNS
from fuadnb.data.synthetic.scenes import RENDERERS
from fuadnb.data.synthetic.sources import Base
from fuadnb.data.synthetic.spec import SPLITS, Category, Spec

MIN_CHANGE = 2  # grey levels (max over RGB) for a pixel to count as defective
MAX_ATTEMPTS = 64
_FG_MIN = 0.02  # object coverage above which a pixel may carry a defect


class Sample(NamedTuple):
    """One rendered file: ``image`` (H, W, 3) uint8, ``mask`` (H, W) uint8 in
    {0, 255} or None for normal images, ``params`` as written to the manifest."""

    image: np.ndarray
    mask: np.ndarray | None
    params: dict


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


def _rng(seed: int, category: str, split: str, defect: str, index: int, role: str,
         attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(
        [seed, _key(category), _key(split), _key(defect), index, _key(role), attempt]))


def _quantize(img: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


def min_area(size: int) -> int:
    """Smallest mask (pixels) a defect may have: 0.1% of the image, at least 12."""
    return max(12, round(0.001 * size * size))


def max_area(size: int) -> int:
    """Largest mask (pixels) a defect may have: 12% of the image."""
    return round(0.12 * size * size)


def _check_file(category: str, split: str, defect: str, index: int,
                spec: Spec) -> Category:
    cats = spec.categories
    if category not in cats:
        raise ValueError(f"category must be one of {sorted(cats)} (version "
                         f"{spec.version}), got {category!r}")
    cat = cats[category]
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    allowed = ("good",) if split == "train" else (
        ("good", *cat.defects) if split == "test" else cat.defects)
    if defect not in allowed:
        raise ValueError(f"defect for {category}/{split} must be one of {allowed}, "
                         f"got {defect!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    return cat


def _base(spec: Spec, category: str, split: str, defect: str, index: int) -> Base:
    rng = _rng(spec.seed, category, split, defect, index, "base")
    base = RENDERERS[category](rng, spec.size)
    base.info.setdefault("source", spec.categories[category].source)
    return base


def render_base(category: str, split: str, defect: str, index: int,
                spec: Spec = Spec()) -> np.ndarray:
    """The clean image (H, W, 3) uint8 under a file, before its defect is added.

    For a ``good`` file this is the file itself. Outside its mask an anomalous image
    equals its base exactly; inside, every pixel differs by at least `MIN_CHANGE`.
    """
    _check_file(category, split, defect, index, spec)
    b = _base(spec, category, split, defect, index)
    return _quantize(b.img, b.noise)


def foreground(category: str, split: str, defect: str, index: int,
               spec: Spec = Spec()) -> np.ndarray:
    """Where a file's defect may lie (H, W) bool: the object's silhouette (any
    coverage) for objects, the whole image for textures."""
    _check_file(category, split, defect, index, spec)
    return _base(spec, category, split, defect, index).fg > _FG_MIN


def _rounded(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out[k] = _rounded(v)
        elif isinstance(v, (float, np.floating)):
            out[k] = round(float(v), 4)
        elif isinstance(v, (bool, np.bool_)):
            out[k] = bool(v)
        elif isinstance(v, (int, np.integer)):
            out[k] = int(v)
        elif isinstance(v, list):
            out[k] = [round(float(x), 4) if isinstance(x, float) else x for x in v]
        else:
            out[k] = v
    return out


def render(category: str, split: str, defect: str, index: int,
           spec: Spec = Spec()) -> Sample:
    """Render one file of the benchmark exactly as `generate` writes it.

    Args:
        category: a category of the spec's version (`CATEGORIES`,
            `CATEGORIES_V3`).
        split: ``"train"``, ``"test"``, ``"pool"`` or ``"recurring"``.
        defect: ``"good"`` or one of the category's defect types.
        index: file number inside its folder.
        spec: benchmark specification (size and seed matter here).

    Returns:
        The image, its mask (None for ``good``) and the parameters recorded in the
        manifest (``prototype`` for a recurring defect).

    Raises:
        RuntimeError: no draw out of `MAX_ATTEMPTS` gave a mask of admissible area.
    """
    _check_file(category, split, defect, index, spec)
    prototype = spec.prototype(split, defect, index)
    if prototype is not None:
        return _recurring(spec, category, split, defect, index, prototype)
    return _fresh(spec, category, split, defect, index)


def _fresh(spec: Spec, category: str, split: str, defect: str, index: int) -> Sample:
    """A file with its own base image and its own (never repeated) defect."""
    b = _base(spec, category, split, defect, index)
    base = _quantize(b.img, b.noise)
    info = {"base": b.info}
    if defect == "good":
        return Sample(base, None, _rounded(info))
    if b.bg is not None:
        b = b._replace(dist=ndi.distance_transform_edt(b.fg > 0.5))
    allowed = b.fg > _FG_MIN
    severity = spec.categories[category].severity
    for attempt in range(MAX_ATTEMPTS):
        rng = _rng(spec.seed, category, split, defect, index, "defect", attempt)
        img, params = DEFECT_FNS[defect](rng, b)
        if severity != 1.0:   # v3's difficulty knob (1.0: v2's bytes, untouched)
            img = b.img + severity * (img - b.img)
        out = _quantize(img, b.noise)
        sample = _admit(spec, out, base, allowed, info | params,
                        type=defect, attempt=attempt)
        if sample is not None:
            return sample
    raise RuntimeError(f"{category}/{split}/{defect}/{index}: no admissible {defect} "
                       f"in {MAX_ATTEMPTS} attempts (seed {spec.seed})")


def _admit(spec: Spec, out: np.ndarray, base: np.ndarray, allowed: np.ndarray,
           info: dict, smallest: int | None = None, **extra) -> Sample | None:
    """`out` as a sample of `base` with its exact mask (pixels that changed by at
    least `MIN_CHANGE` where a defect is allowed, the rest reverted), or None when
    the mask's area is not admissible (below `smallest`, by default `min_area`, or
    above `max_area`)."""
    change = np.abs(out.astype(np.int16) - base).max(axis=-1)
    mask = (change >= MIN_CHANGE) & allowed
    area = int(mask.sum())
    lowest = min_area(spec.size) if smallest is None else smallest
    if not lowest <= area <= max_area(spec.size):
        return None
    out = np.where(mask[..., None], out, base)
    params = {k: v for k, v in info.items() if k != "base"}
    return Sample(out, mask.astype(np.uint8) * 255,
                  _rounded({"base": info["base"], **extra, "mask_area": area,
                            **params}))


@lru_cache(maxsize=64)
def _prototype(spec: Spec, category: str, defect: str, p: int) -> tuple[Sample,
                                                                        np.ndarray]:
    """Prototype `p` of a defect type: a fresh defect on a base image of its own
    (split ``prototype``, never written), and that base's foreground."""
    sample = _fresh(spec, category, "prototype", defect, p)
    return sample, _base(spec, category, "prototype", defect, p).fg


def _centroid(weights: np.ndarray) -> np.ndarray:
    yy, xx = np.indices(weights.shape)
    total = weights.sum()
    return np.array([(yy * weights).sum() / total, (xx * weights).sum() / total])


def _recurring(spec: Spec, category: str, split: str, defect: str, index: int,
               p: int) -> Sample:
    """Prototype `p`'s defect pixels pasted onto this file's own base image with a
    small random rotation (±3°) and shift (±3 % of the side), as a structural defect
    recurs in production; for objects, moved with the object's centre.

    A prototype barely above `min_area` can lose a few pixels off the object's edge
    in every one of the `MAX_ATTEMPTS` draws; only then is the first draw that keeps
    at least half of the prototype's pixels admitted (recorded as ``short_copy``),
    so that every file that fits as before is unchanged."""
    proto, proto_fg = _prototype(spec, category, defect, p)
    b = _base(spec, category, split, defect, index)
    base = _quantize(b.img, b.noise)
    allowed = b.fg > _FG_MIN
    src = proto.mask > 0
    centre = _centroid(src.astype(float))
    move = (_centroid(b.fg) - _centroid(proto_fg)) if b.bg is not None else 0.0
    half = -(-int(src.sum()) // 2)
    short = None                     # the first short copy, if no draw fits
    for attempt in range(MAX_ATTEMPTS):
        rng = _rng(spec.seed, category, split, defect, index, "jitter", attempt)
        angle = rng.uniform(-3, 3)
        shift = rng.uniform(-0.03, 0.03, size=2) * spec.size
        t = np.deg2rad(angle)
        inverse = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        target = centre + move + shift           # where the defect's centre goes
        offset = centre - inverse @ target
        warped = np.stack([ndi.affine_transform(proto.image[..., c].astype(float),
                                                inverse, offset, order=1,
                                                mode="nearest")
                           for c in range(3)], axis=-1)
        inside = ndi.affine_transform(src.astype(float), inverse, offset, order=1,
                                      cval=0.0) > 0.5
        out = np.where(inside[..., None], np.clip(np.rint(warped), 0, 255),
                       base).astype(np.uint8)
        draw = {"type": defect, "prototype": p, "angle": angle, "dy": shift[0],
                "dx": shift[1], "attempt": attempt}
        sample = _admit(spec, out, base, allowed, {"base": b.info}, **draw)
        if sample is not None:
            return sample
        if short is None and half < min_area(spec.size):
            short = _admit(spec, out, base, allowed, {"base": b.info}, smallest=half,
                           **draw, short_copy=True)
    if short is not None:
        return short
    raise RuntimeError(f"{category}/{split}/{defect}/{index}: prototype {p} does "
                       f"not fit in {MAX_ATTEMPTS} attempts (seed {spec.seed})")
