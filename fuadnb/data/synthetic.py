"""Deterministic synthetic anomaly benchmark in the MVTec AD folder layout.

Eight categories (five textures, three objects) built offline from the images bundled
with scikit-image (``brick``, ``grass``, ``gravel``, ``coins``, plus ``moon`` and
``immunohistochemistry`` as foreign-texture sources) and from procedural renderers.
Every anomalous image has an exact pixel mask. The layout is MVTec AD's
(``train/good``, ``test/<defect>``, ``ground_truth/<defect>/000_mask.png``) plus a
``pool/`` of extra anomalies (masks in ``pool_ground_truth/``) that the contamination
protocols inject into the training set, and a ``manifest.json``.

Design: /work/shared/reference/data_and_metrics.md §5.2. Defects after:

- DRAEM (VitjanZ/DRAEM ``data_loader.py`` L80-142, ``perlin.py``): Perlin masks with a
  lattice of ``2**k`` cells per axis, rotated, thresholded at 0.5, filled from another
  texture with ``out = I(1-M) + (1-b)A M + b I M``, ``b ~ U(0, 0.8)``.
- CutPaste (Li et al., CVPR 2021; Runinho/pytorch-cutpaste ``cutpaste.py``): a
  rectangle of the same image with colour jitter, pasted elsewhere.
- NSA (hmsch/natural-synthetic-anomalies ``self_sup_tasks.py``): masks mark visible
  change only.
- MemSeg (TooTouch/MemSeg ``data/dataset.py`` L152-270): object defects are restricted
  to the foreground.

Deliberate deviations:

- Every output file has its own ``np.random.Generator`` seeded by
  ``SeedSequence([seed, crc32(category), crc32(split), crc32(defect), index,
  crc32(role), attempt])``; no global RNG, no torch. The output is byte-identical for
  any number of worker processes.
- Masks keep only pixels whose change is at least `MIN_CHANGE` grey levels (maximum
  over RGB); smaller changes are reverted, so outside the mask an anomalous image
  equals its clean base image exactly (`render_base`).
- A defect whose mask is smaller than `min_area` (or larger than `max_area`) is
  redrawn with ``attempt + 1``; DRAEM instead labels an empty mask as normal.
- DRAEM's mask covers the whole image; ours is confined to a random disc, so that a
  defect is never a large share of the image.
- Image sizes are powers of two (32 to 2048): the real textures are cropped from a
  256 px window and rescaled by a power of two (sizes above 256 are upsampled, so
  softer), and the Perlin lattices (``2**k`` cells) then hold a whole number of
  pixels per cell.
- Byte-identity holds for one machine and one set of library versions (recorded in
  the manifest); numpy's vectorised sin/exp may round differently on another CPU,
  which `verify` would report.

Layout (``<root>/<category>/...``)::

    train/good/000.png                      test/good/000.png
    test/<defect>/000.png                   ground_truth/<defect>/000_mask.png
    pool/<defect>/000.png                   pool_ground_truth/<defect>/000_mask.png

Example::

    manifest = ensure("data/synthetic", Spec.tiny(), categories=["brick", "washer"])
    assert verify(manifest.parent) == []

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from fuadnb.utils import pid_alive

VERSION = 2   # 2: recurring defects (prototypes), 60 good / 16 per defect in test
MANIFEST = "manifest.json"
MIN_CHANGE = 2  # grey levels (max over RGB) for a pixel to count as defective
MAX_ATTEMPTS = 64
_FG_MIN = 0.02  # object coverage above which a pixel may carry a defect
DEFECTS = ("color", "crack", "cutpaste", "foreign_texture", "hole", "missing",
           "scratch", "stain")

# sha256 of the decoded source arrays (`_array_sha256`), scikit-image 0.26.0. A
# release that changes one of these images must not silently change the benchmark.
SOURCE_SHA256 = {
    "skimage.data.brick":
        "acbd813e9e56ba69907629695ce4fb5b2cddf19eec9e4d0a0be47c6f854424f9",
    "skimage.data.coins":
        "889f4a4e0786c6d28fae4f6dbad23c2e6204d8c8d8e0e2d7959ee8ad51595e4d",
    "skimage.data.grass":
        "c7ffa9314281e4c79a6d6fc933b647896330789ef8e8af59ad3b510e5a8abdfb",
    "skimage.data.gravel":
        "6f5b2c34fdd7c4f69a751acb744e982317b8dea748f4e6e8da892c05f0998e6e",
    "skimage.data.immunohistochemistry":
        "a7dc44bb62a2c30de43286e74af07aef0f8b4faa61e1d1f02042357da28f2468",
    "skimage.data.moon":
        "cf212d7de3842de54bb8d7ea9e798791b5753aac2c8b4d12053406cba9d2bf2f",
}


SPLITS = ("train", "test", "pool", "recurring")


class SourceImageError(RuntimeError):
    """A bundled source image differs from the one the benchmark was built from."""


class DatasetExistsError(FileExistsError):
    """The target folder holds something other than the requested benchmark."""


@dataclass(frozen=True)
class Category:
    """One synthetic category.

    Args:
        name: folder name.
        kind: ``"texture"`` or ``"object"`` (object defects stay on the foreground).
        source: where normal images come from (a ``skimage.data`` image or
            ``"procedural"``).
        defects: defect types, sorted.
    """

    name: str
    kind: str
    source: str
    defects: tuple[str, ...]


CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("brick", "texture", "skimage.data.brick",
             ("crack", "foreign_texture", "hole", "stain")),
    Category("capsule", "object", "procedural",
             ("color", "crack", "missing", "scratch")),
    Category("coin", "object", "skimage.data.coins",
             ("color", "missing", "scratch", "stain")),
    Category("grass", "texture", "skimage.data.grass",
             ("cutpaste", "foreign_texture", "hole", "stain")),
    Category("gravel", "texture", "skimage.data.gravel",
             ("cutpaste", "foreign_texture", "hole", "stain")),
    Category("washer", "object", "procedural",
             ("crack", "missing", "scratch", "stain")),
    Category("weave", "texture", "procedural",
             ("cutpaste", "hole", "scratch", "stain")),
    Category("wood", "texture", "procedural",
             ("crack", "hole", "scratch", "stain")),
)}


def kind(category: str) -> str:
    """The category's kind, ``"object"`` or ``"texture"`` (unknown names:
    ``"texture"``)."""
    cat = CATEGORIES.get(category)
    return cat.kind if cat is not None else "texture"


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Spec.{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Spec:
    """Size and counts of the benchmark; the whole output is a function of it.

    Args:
        size: image side in pixels; a power of two from 32 to 2048.
        n_train: normal training images per category.
        n_test_good: normal test images per category.
        n_test_per_defect: anomalous test images per defect type.
        n_pool_per_defect: extra anomalies per defect type in ``pool/``, each one
            fresh (the ``iid`` regime injects these).
        n_recurring_per_defect: anomalies per defect type in ``recurring/``, each a
            copy of one of the defect type's prototypes on another base image (the
            ``recurring`` regime injects these).
        n_prototypes: recurring defects per defect type.
        seed: non-negative base seed.

    The first half of each defect type's test images (``n_test_per_defect // 2``)
    are recurring (copies of the prototypes), the rest are novel.
    """

    size: int = 256
    n_train: int = 100
    n_test_good: int = 60
    n_test_per_defect: int = 16
    n_pool_per_defect: int = 10
    n_recurring_per_defect: int = 10
    n_prototypes: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        size = self.size
        if (isinstance(size, bool) or not isinstance(size, int) or size < 32
                or size > 2048 or size & (size - 1)):
            raise ValueError(f"Spec.size must be a power of two from 32 to 2048 "
                             f"(Perlin lattices and texture rescaling), got {size!r}")
        _check_count("n_train", self.n_train, 1)
        _check_count("n_test_good", self.n_test_good, 0)
        _check_count("n_test_per_defect", self.n_test_per_defect, 0)
        _check_count("n_pool_per_defect", self.n_pool_per_defect, 0)
        _check_count("n_recurring_per_defect", self.n_recurring_per_defect, 0)
        _check_count("n_prototypes", self.n_prototypes, 1)
        _check_count("seed", self.seed, 0)

    @classmethod
    def tiny(cls, seed: int = 0) -> Spec:
        """64 px, 10 train / 4 good / 2 per defect / 2 pool / 2 recurring, one
        prototype per defect type: for tests and CI."""
        return cls(size=64, n_train=10, n_test_good=4, n_test_per_defect=2,
                   n_pool_per_defect=2, n_recurring_per_defect=2, n_prototypes=1,
                   seed=seed)

    def prototype(self, split: str, defect: str, index: int) -> int | None:
        """The prototype a file copies, or None for a fresh (novel) defect."""
        if defect == "good":
            return None
        if split == "recurring" or (split == "test"
                                    and index < self.n_test_per_defect // 2):
            return index % self.n_prototypes
        return None


class Sample(NamedTuple):
    """One rendered file: ``image`` (H, W, 3) uint8, ``mask`` (H, W) uint8 in
    {0, 255} or None for normal images, ``params`` as written to the manifest."""

    image: np.ndarray
    mask: np.ndarray | None
    params: dict


class _Base(NamedTuple):
    img: np.ndarray  # (H, W, 3) float64, 0..255, before sensor noise
    noise: np.ndarray  # (H, W, 1) sensor noise, added to the base and the defect image
    fg: np.ndarray  # (H, W) float64 in [0, 1]; all ones for textures
    bg: np.ndarray | None  # (H, W, 3) background behind an object, None for textures
    dist: np.ndarray | None  # (H, W) distance to the object's outside; set by render
    info: dict


# ---------------------------------------------------------------------------- sources

def _array_sha256(arr: np.ndarray) -> str:
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


@cache
def _raw_source(name: str) -> np.ndarray:
    import skimage.data

    arr = getattr(skimage.data, name.removeprefix("skimage.data."))()
    arr.setflags(write=False)
    return arr


@cache
def _source_digest(name: str) -> str:
    return _array_sha256(_raw_source(name))


def _source(name: str) -> np.ndarray:
    """A bundled source image, checked against `SOURCE_SHA256`."""
    digest = _source_digest(name)
    if digest != SOURCE_SHA256[name]:
        import skimage

        raise SourceImageError(
            f"{name}() has sha256 {digest}, but the synthetic benchmark (VERSION "
            f"{VERSION}) was built from {SOURCE_SHA256[name]}: scikit-image "
            f"{skimage.__version__} ships a different image, so the data would change "
            "silently. Install the scikit-image release named in SOURCE_SHA256's "
            "comment, or bump VERSION and record the new hash.")
    return _raw_source(name)


def _sources_for(categories: Iterable[str]) -> list[str]:
    names = set()
    for name in categories:
        cat = CATEGORIES[name]
        if cat.source != "procedural":
            names.add(cat.source)
        if "foreign_texture" in cat.defects:
            names.update(_FOREIGN)
    return sorted(names)


def source_hashes(categories: Iterable[str] | None = None) -> dict[str, str]:
    """sha256 of every bundled source image the categories use, checked.

    Raises:
        SourceImageError: an image differs from the one recorded in `SOURCE_SHA256`.
    """
    names = sorted(CATEGORIES) if categories is None else categories
    digests = {}
    for name in _sources_for(names):
        _source(name)  # raises on a mismatch
        digests[name] = _source_digest(name)
    return digests


# ---------------------------------------------------------------------- randomness

def _key(text: str) -> int:
    return zlib.crc32(text.encode())


def _rng(seed: int, category: str, split: str, defect: str, index: int, role: str,
         attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(
        [seed, _key(category), _key(split), _key(defect), index, _key(role), attempt]))


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def _perlin(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient noise at lattice coordinates ``y``, ``x`` (broadcastable arrays).

    DRAEM ``perlin.py`` ``rand_perlin_2d_np``, evaluated at arbitrary points so that
    the lattice can be rotated and stretched. Values lie in about [-1, 1].
    """
    y = y - np.floor(y.min())
    x = x - np.floor(x.min())
    nx = int(x.max()) + 2
    angles = rng.random((int(y.max()) + 2, nx)) * (2 * np.pi)
    gy, gx = np.sin(angles).ravel(), np.cos(angles).ravel()
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    idx = y0.astype(np.intp) * nx + x0.astype(np.intp)  # flat index of the corner

    def corner(offset: int, dy: int, dx: int) -> np.ndarray:
        i = idx + offset
        return gy.take(i) * (fy - dy) + gx.take(i) * (fx - dx)

    n00, n01 = corner(0, 0, 0), corner(1, 0, 1)
    n10, n11 = corner(nx, 1, 0), corner(nx + 1, 1, 1)
    u, v = _fade(fx), _fade(fy)
    top = n00 + u * (n01 - n00)
    bottom = n10 + u * (n11 - n10)
    return np.sqrt(2) * (top + v * (bottom - top))


def _fbm(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, octaves: int,
         gain: float = 0.5) -> np.ndarray:
    """Fractal sum of `_perlin` octaves (frequency x2, amplitude x`gain`), ~[-1, 1]."""
    total, norm = 0.0, 0.0
    for octave in range(octaves):
        amp = gain**octave
        total = total + amp * _perlin(rng, y * 2**octave, x * 2**octave)
        norm += amp
    return total / norm


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``yy`` (H, 1) and ``xx`` (1, W)."""
    c = np.arange(size, dtype=np.float64) + 0.5
    return c[:, None], c[None, :]


def _rotate(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
            angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cy, cx) in a frame rotated by ``angle`` radians."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    return -s * dx + c * dy, c * dx + s * dy


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    """Square float array (H, W) to (size, size): box mean down, bicubic up."""
    n = arr.shape[0]
    if n == size:
        return arr
    if n > size and n % size == 0:
        f = n // size
        return arr.reshape(size, f, size, f).mean(axis=(1, 3))
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), np.float64)


def _quantize(img: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img + noise), 0, 255).astype(np.uint8)


def _point_in(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    """A uniformly drawn pixel centre (y, x) of a boolean region."""
    flat = np.flatnonzero(region)
    y, x = divmod(int(flat[rng.integers(flat.size)]), region.shape[1])
    return y + 0.5, x + 0.5


# ------------------------------------------------------------------ normal images

_WINDOW = 256  # source pixels per real-texture crop, whatever the output size
# name: (source, palette stops (grey level, RGB), random 90-degree rotations). The
# palette maps the grey source to colour; brick keeps its course direction.
_REAL_TEXTURES = {
    "brick": ("skimage.data.brick",
              ((0, (24, 12, 8)), (105, (152, 74, 52)), (200, (224, 216, 202)),
               (255, (244, 238, 228))), False),
    "grass": ("skimage.data.grass",
              ((0, (4, 10, 2)), (118, (74, 118, 40)), (255, (204, 232, 150))), True),
    "gravel": ("skimage.data.gravel",
               ((0, (8, 8, 8)), (126, (130, 124, 113)), (255, (246, 242, 232))), True),
}
_FOREIGN = ("skimage.data.brick", "skimage.data.grass", "skimage.data.gravel",
            "skimage.data.immunohistochemistry", "skimage.data.moon")


def _palette(grey: np.ndarray, stops: tuple) -> np.ndarray:
    """Grey levels (H, W) to RGB (H, W, 3) by piecewise-linear colour stops."""
    levels = [level for level, _ in stops]
    return np.stack([np.interp(grey, levels, [rgb[c] for _, rgb in stops])
                     for c in range(3)], axis=-1)


def _crop(rng: np.random.Generator, src: np.ndarray, size: int,
          rotate: bool) -> tuple[np.ndarray, dict]:
    """A random `_WINDOW` crop of a source (H, W[, C]) rescaled to size, float."""
    y = int(rng.integers(src.shape[0] - _WINDOW + 1))
    x = int(rng.integers(src.shape[1] - _WINDOW + 1))
    k = int(rng.integers(4)) if rotate else 0
    crop = np.rot90(src[y:y + _WINDOW, x:x + _WINDOW].astype(np.float64), k)
    if crop.ndim == 2:
        return _resize(crop, size), {"y": y, "x": x, "rot90": k}
    out = np.stack([_resize(crop[..., c], size) for c in range(3)], axis=-1)
    return out, {"y": y, "x": x, "rot90": k}


def _real_texture(name: str) -> Callable[[np.random.Generator, int], _Base]:
    source, stops, rotate = _REAL_TEXTURES[name]

    def render(rng: np.random.Generator, size: int) -> _Base:
        grey, info = _crop(rng, _source(source), size, rotate)
        gain = rng.uniform(0.95, 1.05)  # mild exposure change
        img = _palette(grey, stops) * gain
        noise = rng.normal(0.0, 2.0, (size, size, 1))  # luminance noise
        info["gain"] = gain
        return _Base(img, noise, np.ones((size, size)), None, None, info)

    return render


def _weave(rng: np.random.Generator, size: int) -> _Base:
    """Plain weave: warp (vertical) and weft (horizontal) threads alternate on top."""
    yy, xx = _grid(size)
    period = size / 16 * rng.uniform(0.97, 1.03)
    py, px = rng.uniform(0, 2, 2)
    u, v = xx / period + px, yy / period + py  # thread coordinates, (1, W) and (H, 1)
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    warp_on_top = (iu + iv) % 2 == 0  # (H, W)
    n = int(size / period) + 4
    warp_gain = (1 + 0.07 * rng.standard_normal(n))[iu.astype(int) % n]  # dye jitter
    weft_gain = (1 + 0.07 * rng.standard_normal(n))[iv.astype(int) % n]
    warp = np.sin(np.pi * fu) ** 0.7 * (0.6 + 0.4 * np.sin(np.pi * fv)) * warp_gain
    weft = np.sin(np.pi * fv) ** 0.7 * (0.6 + 0.4 * np.sin(np.pi * fu)) * weft_gain
    shade = np.where(warp_on_top, warp, weft)
    fibre = _perlin(rng, np.where(warp_on_top, 1.5, 6.0) * yy / period,
                    np.where(warp_on_top, 6.0, 1.5) * xx / period)  # along the thread
    mottle = _perlin(rng, yy / size * 3, xx / size * 3)
    warp_rgb = np.array([118.0, 104.0, 92.0])
    weft_rgb = np.array([168.0, 150.0, 124.0])
    colour = np.where(warp_on_top[..., None], warp_rgb, weft_rgb)
    light = (0.35 + 0.75 * shade + 0.08 * fibre + 0.06 * mottle)[..., None]
    img = colour * light * rng.uniform(0.96, 1.04)
    noise = rng.normal(0.0, 2.0, (size, size, 1))  # luminance noise
    info = {"period": period, "phase_y": py, "phase_x": px}
    return _Base(img, noise, np.ones((size, size)), None, None, info)


def _wood(rng: np.random.Generator, size: int) -> _Base:
    """Plank: growth rings around a pith far to the left, distorted by Perlin noise;
    each ring darkens gradually (latewood) and ends abruptly."""
    s = size / 256
    yy, xx = _grid(size)
    cy = rng.uniform(-0.5, 1.5) * size
    cx = -rng.uniform(2.0, 4.0) * size
    r = np.sqrt(((xx - cx) * 0.12) ** 2 + (yy - cy) ** 2) / size
    warp = _perlin(rng, yy / size * 3, xx / size * 0.8)
    freq = 20 * rng.uniform(0.9, 1.1)
    t = (freq * (r + 0.025 * warp) + rng.uniform()) % 1.0  # position in the ring
    late = np.clip((t - 0.45) / 0.5, 0, 1) ** 2 * np.clip((1 - t) / 0.06, 0, 1)
    grain = _perlin(rng, yy / max(2.0, 3 * s), xx / size * 5)  # fibres along x
    light = np.array([208.0, 163.0, 114.0])
    dark = np.array([138.0, 90.0, 52.0])
    mix = np.clip(0.9 * late + 0.1 * grain + 0.05, 0, 1)[..., None]
    img = (light * (1 - mix) + dark * mix) * rng.uniform(0.95, 1.05)
    noise = rng.normal(0.0, 2.0, (size, size, 1))  # luminance noise
    info = {"pith_y": cy / size, "pith_x": cx / size, "freq": freq}
    return _Base(img, noise, np.ones((size, size)), None, None, info)


def _backdrop(rng: np.random.Generator, size: int, rgb: tuple[float, float, float],
              fg: np.ndarray, light: float) -> np.ndarray:
    """Uniform background (H, W, 3) with a soft gradient and the object's shadow."""
    yy, xx = _grid(size)
    along = np.cos(light) * (xx - size / 2) + np.sin(light) * (yy - size / 2)
    grad = 1 + 0.06 * along / size
    off = max(1, round(0.025 * size))
    dy, dx = round(-off * np.sin(light)), round(-off * np.cos(light))
    shadow = np.zeros_like(fg)  # fg shifted away from the light
    shadow[max(dy, 0):size + min(dy, 0), max(dx, 0):size + min(dx, 0)] = fg[
        max(-dy, 0):size + min(-dy, 0), max(-dx, 0):size + min(-dx, 0)]
    k = max(3, round(0.04 * size))
    shadow = ndi.uniform_filter(ndi.uniform_filter(shadow, k), k)  # ~Gaussian blur
    return (np.asarray(rgb) * (grad * (1 - 0.45 * shadow))[..., None]
            * rng.uniform(0.95, 1.05))


def _washer(rng: np.random.Generator, size: int) -> _Base:
    """Flat steel washer: bevelled rims, concentric machining marks."""
    s = size / 256
    yy, xx = _grid(size)
    cy, cx = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * s
    r_out = 0.36 * size * rng.uniform(0.99, 1.01)
    r_in = 0.15 * size * rng.uniform(0.99, 1.01)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    fg = np.clip(r_out - r + 0.5, 0, 1) * np.clip(r - r_in + 0.5, 0, 1)
    light = np.deg2rad(225 + rng.uniform(-15, 15))  # from the upper left
    facing = (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / np.maximum(r, 1)
    bevel = 0.035 * size
    outer = np.clip(1 - (r_out - r) / bevel, 0, 1)
    inner = np.clip(1 - (r - r_in) / bevel, 0, 1)
    marks = _perlin(rng, r / size * 120, np.full((1, 1), 0.5))  # machining rings
    brightness = (0.62 + 0.05 * facing + 0.45 * (outer - inner) * facing
                  + 0.05 * marks)
    metal = np.array([168.0, 172.0, 178.0]) * brightness[..., None]
    bg = _backdrop(rng, size, (44.0, 44.0, 48.0), fg, light)
    img = bg * (1 - fg[..., None]) + metal * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))  # luminance noise
    info = {"cy": cy, "cx": cx, "light_deg": np.rad2deg(light)}
    return _Base(img, noise, fg, bg, None, info)


@lru_cache(maxsize=8)
def _imprint(size: int) -> np.ndarray:
    """The capsule print "500", drawn once at the centre of a (size, size) canvas."""
    canvas = Image.new("L", (size, size))
    font = ImageFont.load_default(size=max(6, round(0.1 * size)))
    ImageDraw.Draw(canvas).text((size / 2, size / 2), "500", fill=255, font=font,
                                anchor="mm")
    return np.asarray(canvas, np.float64) / 255


def _capsule(rng: np.random.Generator, size: int) -> _Base:
    """Two-tone gelatin capsule with a printed code, small shift and rotation."""
    s = size / 256
    yy, xx = _grid(size)
    cy, cx = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * s
    angle = np.deg2rad(rng.uniform(-3, 3))
    v, u = _rotate(yy, xx, cy, cx, angle)  # u along the axis, v across
    half, radius = 0.28 * size, 0.125 * size
    axis_dist = np.sqrt(np.maximum(np.abs(u) - half, 0) ** 2 + v**2)
    fg = np.clip(radius - axis_dist + 0.5, 0, 1)
    q = np.clip(axis_dist / radius, 0, 1)
    light_y = rng.uniform(-0.45, -0.3)
    shade = 0.55 + 0.45 * np.sqrt(1 - q**2)
    highlight = 0.2 * np.exp(-(((v / radius) - light_y) / 0.16) ** 2) * (q < 0.98)
    seam = np.clip(u + 0.5, 0, 1)[..., None]  # anti-aliased colour boundary
    red = np.array([182.0, 58.0, 46.0])
    cream = np.array([226.0, 214.0, 186.0])
    body = (red * (1 - seam) + cream * seam) * shade[..., None] + 255 * highlight[
        ..., None]
    ink = ndi.map_coordinates(_imprint(size), [v + size / 2, u - half / 2 + size / 2],
                              order=1)
    body = body * (1 - 0.8 * ink[..., None])
    bg = _backdrop(rng, size, (196.0, 198.0, 202.0), fg, np.deg2rad(250.0))
    gain = rng.uniform(0.96, 1.04)
    img = bg * (1 - fg[..., None]) + body * gain * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))  # luminance noise
    info = {"cy": cy, "cx": cx, "angle_deg": np.rad2deg(angle)}
    return _Base(img, noise, fg, bg, None, info)


# Coins in skimage.data.coins(): (row, column, radius) of the 24 coins, found with a
# circular Hough transform on Canny edges (sigma 2.5) of the image with
# SOURCE_SHA256["skimage.data.coins"].
_COINS = ((54, 47, 19), (56, 98, 17), (50, 155, 23), (52, 215, 23), (52, 277, 20),
          (44, 335, 29), (125, 45, 21), (125, 103, 18), (127, 156, 17), (124, 204, 19),
          (119, 272, 24), (124, 336, 19), (197, 44, 19), (195, 102, 22), (198, 154, 19),
          (193, 212, 23), (193, 272, 21), (186, 347, 31), (260, 46, 28), (266, 114, 21),
          (261, 176, 25), (264, 243, 23), (264, 300, 25), (268, 361, 20))


@cache
def _coin_patch(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey patch and soft silhouette of coin ``i``, centred, side 2 (r + 8)."""
    from skimage.morphology import convex_hull_image

    row, col, r = _COINS[i]
    half = r + 8
    src = _source("skimage.data.coins").astype(np.float64)
    pad = np.pad(src, half, mode="edge")
    patch = pad[row:row + 2 * half, col:col + 2 * half]
    yy, xx = _grid(2 * half)
    disk = (yy - half) ** 2 + (xx - half) ** 2 <= (r + 4) ** 2
    smooth = ndi.gaussian_filter(patch, 1.0)
    thr = 0.5 * (np.median(smooth[~disk]) + np.median(smooth[disk]))
    mask = ndi.binary_opening((smooth > thr) & disk, iterations=2)
    labels, n = ndi.label(mask)
    if n > 1:
        sizes = ndi.sum(mask, labels, range(1, n + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    mask = convex_hull_image(mask)  # dark relief must not bite into the silhouette
    alpha = ndi.gaussian_filter(mask.astype(np.float64), 0.6)
    return patch, alpha


def _affine(arr: np.ndarray, matrix: np.ndarray, offset: np.ndarray, size: int,
            resample: Image.Resampling) -> np.ndarray:
    """Sample ``arr`` at ``matrix @ (y, x) + offset`` for every output pixel centre
    (continuous coordinates, pixel centres at +0.5), Pillow's affine transform."""
    (m00, m01), (m10, m11) = matrix
    data = (m11, m10, offset[1], m01, m00, offset[0])  # Pillow works in (x, y)
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    out = img.transform((size, size), Image.Transform.AFFINE, data, resample=resample)
    return np.asarray(out, np.float64)


def _coin(rng: np.random.Generator, size: int) -> _Base:
    """One of the 24 real coins, rotated freely and scaled to a common radius, on a
    uniform cloth."""
    s = size / 256
    i = int(rng.integers(len(_COINS)))
    patch, alpha = _coin_patch(i)
    radius = 0.3 * size * rng.uniform(0.98, 1.02)
    scale = _COINS[i][2] / radius  # source pixels per output pixel
    angle = rng.uniform(0, 2 * np.pi)
    centre = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * s
    c, sn = np.cos(angle), np.sin(angle)
    matrix = scale * np.array([[c, -sn], [sn, c]])
    offset = patch.shape[0] / 2 - matrix @ centre
    grey = _affine(patch, matrix, offset, size, Image.Resampling.BICUBIC)
    fg = np.clip(_affine(alpha, matrix, offset, size, Image.Resampling.BILINEAR), 0, 1)
    light = np.deg2rad(rng.uniform(200, 250))
    gain = rng.uniform(0.92, 1.08)
    metal = grey[..., None] * np.array([1.06, 1.0, 0.9]) * gain
    bg = _backdrop(rng, size, (52.0, 60.0, 72.0), fg, light)
    img = bg * (1 - fg[..., None]) + metal * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))  # luminance noise
    info = {"coin": i, "angle_deg": np.rad2deg(angle), "cy": centre[0],
            "cx": centre[1]}
    return _Base(img, noise, fg, bg, None, info)


_RENDERERS: dict[str, Callable[[np.random.Generator, int], _Base]] = {
    "brick": _real_texture("brick"), "capsule": _capsule, "coin": _coin,
    "grass": _real_texture("grass"), "gravel": _real_texture("gravel"),
    "washer": _washer, "weave": _weave, "wood": _wood,
}


# ------------------------------------------------------------------------ defects

def _window(size: int, cy: float, cx: float, half: float) -> tuple[slice, slice]:
    """Rows and columns of the square of half-side ``half`` around (cy, cx)."""
    return (slice(max(0, int(cy - half)), min(size, int(np.ceil(cy + half)) + 1)),
            slice(max(0, int(cx - half)), min(size, int(np.ceil(cx + half)) + 1)))


def _grid_at(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a window: ``yy`` (h, 1) and ``xx`` (1, w)."""
    return (np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] + 0.5,
            np.arange(cols.start, cols.stop, dtype=np.float64)[None, :] + 0.5)


def _region(b: _Base, margin: float) -> np.ndarray:
    """Where a defect may be centred: object pixels at least ``margin`` pixels inside
    the silhouette, or the image minus a ``margin`` border for textures."""
    size = b.img.shape[0]
    if b.dist is not None:
        return b.dist > margin
    m = min(max(1, round(margin)), size // 2 - 1)
    region = np.zeros((size, size), bool)
    region[m:size - m, m:size - m] = True
    return region


def _solid(b: _Base) -> np.ndarray:
    """The object's coverage with its anti-aliased rim sharpened, so that a drawn
    defect does not spill past the visible silhouette."""
    return np.clip(2 * b.fg - 0.5, 0, 1)


def _walk(rng: np.random.Generator, start: tuple[float, float], length: float,
          steps: int, turn_sd: float) -> np.ndarray:
    """Smoothed random walk: ``steps + 1`` points (x, y) of total ``length``."""
    angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, turn_sd, steps))
    step = length / steps
    xy = np.cumsum(np.stack([np.cos(angles), np.sin(angles)], 1) * step, axis=0)
    return np.vstack([[start[1], start[0]], xy + [start[1], start[0]]])


def _lines_alpha(paths: list[np.ndarray], width: float, size: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) of polylines, drawn 4x supersampled inside their
    bounding box."""
    ss = 4
    pts = np.vstack(paths)
    lo = np.clip(np.floor(pts.min(axis=0) - width - 2), 0, size).astype(int)  # (x, y)
    hi = np.clip(np.ceil(pts.max(axis=0) + width + 2), 0, size).astype(int)
    alpha = np.zeros((size, size))
    if np.any(hi <= lo):
        return alpha
    canvas = Image.new("L", (int(hi[0] - lo[0]) * ss, int(hi[1] - lo[1]) * ss))
    draw = ImageDraw.Draw(canvas)
    w = max(1, round(width * ss))
    for path in paths:
        xy = [(float(x) * ss, float(y) * ss) for x, y in (path - lo)]
        draw.line(xy, fill=255, width=w, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    alpha[lo[1]:hi[1], lo[0]:hi[0]] = np.asarray(canvas.reduce(ss), np.float64) / 255
    return alpha


def _scratch(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    size = b.img.shape[0]
    s = size / 256
    start = _point_in(rng, _region(b, 0.1 * size))
    length = rng.uniform(0.15, 0.35) * size
    path = _walk(rng, start, length, int(rng.integers(3, 7)), 0.25)
    width = max(1.0, rng.uniform(1, 4) * s)
    alpha = _lines_alpha([path], width, size) * _solid(b)
    bright = bool(rng.random() < 0.4)
    strength = rng.uniform(0.35, 0.65)
    a = (alpha * strength)[..., None]
    img = b.img + a * (255 - b.img) if bright else b.img * (1 - a)
    return img, {"length": length, "width": width, "bright": bright,
                 "strength": strength}


def _crack(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    size = b.img.shape[0]
    s = size / 256
    start = _point_in(rng, _region(b, 0.1 * size))
    length = rng.uniform(0.2, 0.4) * size
    main = _walk(rng, start, length, max(6, int(length / (4 * s))), 0.45)
    paths = [main]
    n_branches = int(rng.integers(0, 3))
    for _ in range(n_branches):
        at = main[int(rng.integers(1, len(main) - 1))]
        sub_len = length * rng.uniform(0.25, 0.5)
        paths.append(_walk(rng, (at[1], at[0]), sub_len,
                           max(3, int(sub_len / (4 * s))), 0.45))
    width = max(1.0, rng.uniform(1, 2) * s)
    alpha = _lines_alpha(paths, width, size) * _solid(b)
    darkness = rng.uniform(0.6, 0.85)
    img = b.img * (1 - darkness * alpha)[..., None]
    return img, {"length": length, "branches": n_branches, "width": width,
                 "darkness": darkness}


def _hole(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    """A pit with an irregular outline, a lit lip and a shaded cavity (textures), or a
    puncture showing the background (objects)."""
    size = b.img.shape[0]
    s = size / 256
    a, bb = rng.uniform(5, 16, 2) * s + 1
    rmax, rmin = max(a, bb), min(a, bb)
    cy, cx = _point_in(rng, _region(b, rmax + 4 * s))
    angle = rng.uniform(0, np.pi)
    light = rng.uniform(0, 2 * np.pi)
    rows, cols = _window(size, cy, cx, 1.5 * rmax + 4 * s + 2)
    yy, xx = _grid_at(rows, cols)
    v, u = _rotate(yy, xx, cy, cx, angle)
    d = np.sqrt((u / a) ** 2 + (v / bb) ** 2)
    d = d + 0.12 * _perlin(rng, yy / rmax * 2, xx / rmax * 2)  # irregular outline
    inside = np.clip((1 - d) * rmin + 0.5, 0, 1)[..., None]
    lip_w = max(1.0, 2.5 * s) / rmin
    lip = np.clip(1 - np.abs(d - 1 - lip_w / 2) / lip_w, 0, 1)
    facing = (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / np.maximum(
        np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2), 1)
    patch = b.img[rows, cols] * (1 - 0.35 * (lip * facing)[..., None])
    if b.bg is None:
        local = patch.mean(axis=(0, 1))
        depth = rng.uniform(0.12, 0.25)
        wall = depth + 0.35 * np.clip(d, 0, 1) ** 2 * (1 + facing)  # lit far wall
        cavity = local * wall[..., None] + 0.15 * (patch - local)
    else:
        cavity = b.bg[rows, cols]
    img = b.img.copy()
    img[rows, cols] = patch * (1 - inside) + cavity * inside
    return img, {"a": a, "b": bb, "cy": cy, "cx": cx}


def _blob(rng: np.random.Generator, size: int, cy: float, cx: float, radius: float,
          roughness: float = 0.5, edge: float = 1.5) -> np.ndarray:
    """Soft irregular blob (H, W) in [0, 1] of about ``radius`` pixels."""
    aspect = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, np.pi)
    rows, cols = _window(size, cy, cx, (0.75 + roughness) * radius + edge + 2)
    yy, xx = _grid_at(rows, cols)
    v, u = _rotate(yy, xx, cy, cx, angle)
    d = np.sqrt(u**2 + (v / aspect) ** 2) / radius
    value = 1 - d + roughness * _fbm(rng, yy / radius * 1.5, xx / radius * 1.5, 3)
    out = np.zeros((size, size))
    out[rows, cols] = np.clip((value - 0.3) * radius / edge, 0, 1)
    return out


_STAIN_COLOURS = ((62.0, 42.0, 24.0), (22.0, 22.0, 26.0), (150.0, 72.0, 32.0),
                  (205.0, 185.0, 96.0), (236.0, 236.0, 226.0))


def _stain(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    size = b.img.shape[0]
    radius = rng.uniform(0.05, 0.12) * size
    cy, cx = _point_in(rng, _region(b, 0.5 * radius))
    colour = int(rng.integers(len(_STAIN_COLOURS)))
    opacity = rng.uniform(0.35, 0.7)
    alpha = _blob(rng, size, cy, cx, radius, edge=max(1.0, 3 * size / 256))
    alpha = (alpha * opacity * _solid(b))[..., None]
    img = b.img * (1 - alpha) + np.asarray(_STAIN_COLOURS[colour]) * alpha
    return img, {"radius": radius, "colour": colour, "opacity": opacity,
                 "cy": cy, "cx": cx}


def _draem_mask(rng: np.random.Generator, size: int, cy: float, cx: float,
                radius: float) -> np.ndarray:
    """DRAEM's rotated Perlin mask (scale 2**[1, 4) per axis, threshold 0.5),
    confined to a disc of ``radius`` pixels (float 0/1, H x W)."""
    ry, rx = 2 ** rng.integers(1, 4, 2)
    angle = np.deg2rad(rng.uniform(-90, 90))
    rows, cols = _window(size, cy, cx, radius)
    yy, xx = _grid_at(rows, cols)
    v, u = _rotate(yy, xx, size / 2, size / 2, angle)
    noise = _perlin(rng, v * ry / size, u * rx / size)
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
    out = np.zeros((size, size))
    out[rows, cols] = (noise + 0.6 * np.clip(1 - d2, 0, 1) > 0.5) & (d2 < 1)
    return out


def _foreign_texture(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    """DRAEM: a Perlin-shaped region filled from another texture, augmented."""
    size = b.img.shape[0]
    names = [n for n in _FOREIGN if n != b.info["source"]]
    name = names[int(rng.integers(len(names)))]
    src, _ = _crop(rng, _source(name), size, True)
    if src.ndim == 2:
        src = src[..., None] * rng.uniform(0.6, 1.2, 3)  # random tint
    gamma = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    src = 255 * (np.clip(src, 0, 255) / 255) ** gamma
    src = src * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30)
    radius = rng.uniform(0.12, 0.25) * size
    cy, cx = _point_in(rng, _region(b, 0.3 * radius))
    mask = (_draem_mask(rng, size, cy, cx, radius) * _solid(b))[..., None]
    beta = rng.uniform(0, 0.8)
    img = b.img * (1 - mask) + (1 - beta) * src * mask + beta * b.img * mask
    return img, {"source": name, "beta": beta, "gamma": gamma, "radius": radius}


def _cutpaste(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    """CutPaste: a rectangle of the same image, jittered, pasted elsewhere."""
    size = b.img.shape[0]
    area = rng.uniform(0.015, 0.05) * size * size
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
    h = int(np.clip(round(np.sqrt(area * aspect)), 2, size // 2))
    w = int(np.clip(round(area / h), 2, size // 2))
    sy, sx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    while True:  # the pasted patch must not land on its own source
        dy, dx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        if abs(dy - sy) >= h / 2 or abs(dx - sx) >= w / 2:
            break
    patch = b.img[sy:sy + h, sx:sx + w]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    brightness = rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)
    contrast = rng.uniform(0.85, 1.15)
    mean = patch.mean(axis=(0, 1))
    patch = ((patch - mean) * contrast + mean) * (1 + brightness)
    img = b.img.copy()
    img[dy:dy + h, dx:dx + w] = patch
    return img, {"h": h, "w": w, "src": [int(sy), int(sx)], "dst": [int(dy), int(dx)],
                 "brightness": brightness, "contrast": contrast}


def _missing(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    """A chip bitten out of the silhouette, showing the background."""
    size = b.img.shape[0]
    cy, cx = _point_in(rng, (b.dist > 0) & (b.dist <= 1.5))  # on the rim
    radius = rng.uniform(0.05, 0.1) * size
    bite = _blob(rng, size, cy, cx, radius, roughness=0.3, edge=0.75)
    erase = (bite * b.fg)[..., None]
    img = b.img * (1 - erase) + b.bg * erase
    return img, {"radius": radius, "cy": cy, "cx": cx}


def _color(rng: np.random.Generator, b: _Base) -> tuple[np.ndarray, dict]:
    """MemSeg-style discolouration: a hue and brightness shift inside a Perlin blob
    on the object."""
    size = b.img.shape[0]
    radius = rng.uniform(0.07, 0.14) * size
    cy, cx = _point_in(rng, _region(b, 0.3 * radius))
    alpha = _blob(rng, size, cy, cx, radius, edge=3 * size / 256) * _solid(b)
    grey = np.ones(3) / np.sqrt(3)
    hue = rng.standard_normal(3)
    hue -= hue @ grey * grey  # chroma direction, orthogonal to the grey axis
    hue /= np.linalg.norm(hue)
    chroma = rng.uniform(0.15, 0.35)
    brightness = rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)
    factor = (1 + brightness) * (1 + chroma * hue)
    img = b.img * (1 + alpha[..., None] * (factor - 1))
    return img, {"radius": radius, "chroma": chroma, "brightness": brightness,
                 "hue": [float(h) for h in hue]}


_DefectFn = Callable[[np.random.Generator, _Base], tuple[np.ndarray, dict]]
_DEFECT_FNS: dict[str, _DefectFn] = {
    "color": _color, "crack": _crack, "cutpaste": _cutpaste,
    "foreign_texture": _foreign_texture, "hole": _hole, "missing": _missing,
    "scratch": _scratch, "stain": _stain}


def min_area(size: int) -> int:
    """Smallest mask (pixels) a defect may have: 0.1% of the image, at least 12."""
    return max(12, round(0.001 * size * size))


def max_area(size: int) -> int:
    """Largest mask (pixels) a defect may have: 12% of the image."""
    return round(0.12 * size * size)


# ---------------------------------------------------------------------- rendering

def _check_file(category: str, split: str, defect: str, index: int) -> Category:
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {sorted(CATEGORIES)}, "
                         f"got {category!r}")
    cat = CATEGORIES[category]
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


def _base(spec: Spec, category: str, split: str, defect: str, index: int) -> _Base:
    rng = _rng(spec.seed, category, split, defect, index, "base")
    base = _RENDERERS[category](rng, spec.size)
    base.info.setdefault("source", CATEGORIES[category].source)
    return base


def render_base(category: str, split: str, defect: str, index: int,
                spec: Spec = Spec()) -> np.ndarray:
    """The clean image (H, W, 3) uint8 under a file, before its defect is added.

    For a ``good`` file this is the file itself. Outside its mask an anomalous image
    equals its base exactly; inside, every pixel differs by at least `MIN_CHANGE`.
    """
    _check_file(category, split, defect, index)
    b = _base(spec, category, split, defect, index)
    return _quantize(b.img, b.noise)


def foreground(category: str, split: str, defect: str, index: int,
               spec: Spec = Spec()) -> np.ndarray:
    """Where a file's defect may lie (H, W) bool: the object's silhouette (any
    coverage) for objects, the whole image for textures."""
    _check_file(category, split, defect, index)
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
        category: a key of `CATEGORIES`.
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
    _check_file(category, split, defect, index)
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
    for attempt in range(MAX_ATTEMPTS):
        rng = _rng(spec.seed, category, split, defect, index, "defect", attempt)
        img, params = _DEFECT_FNS[defect](rng, b)
        out = _quantize(img, b.noise)
        sample = _admit(spec, out, base, allowed, info | params,
                        type=defect, attempt=attempt)
        if sample is not None:
            return sample
    raise RuntimeError(f"{category}/{split}/{defect}/{index}: no admissible {defect} "
                       f"in {MAX_ATTEMPTS} attempts (seed {spec.seed})")


def _admit(spec: Spec, out: np.ndarray, base: np.ndarray, allowed: np.ndarray,
           info: dict, **extra) -> Sample | None:
    """`out` as a sample of `base` with its exact mask (pixels that changed by at
    least `MIN_CHANGE` where a defect is allowed, the rest reverted), or None when
    the mask's area is not admissible."""
    change = np.abs(out.astype(np.int16) - base).max(axis=-1)
    mask = (change >= MIN_CHANGE) & allowed
    area = int(mask.sum())
    if not min_area(spec.size) <= area <= max_area(spec.size):
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
    recurs in production; for objects, moved with the object's centre."""
    proto, proto_fg = _prototype(spec, category, defect, p)
    b = _base(spec, category, split, defect, index)
    base = _quantize(b.img, b.noise)
    allowed = b.fg > _FG_MIN
    src = proto.mask > 0
    centre = _centroid(src.astype(float))
    move = (_centroid(b.fg) - _centroid(proto_fg)) if b.bg is not None else 0.0
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
        sample = _admit(spec, out, base, allowed, {"base": b.info}, type=defect,
                        prototype=p, angle=angle, dy=shift[0], dx=shift[1],
                        attempt=attempt)
        if sample is not None:
            return sample
    raise RuntimeError(f"{category}/{split}/{defect}/{index}: prototype {p} does "
                       f"not fit in {MAX_ATTEMPTS} attempts (seed {spec.seed})")


# ----------------------------------------------------------------------- writing

class _Job(NamedTuple):
    category: str
    split: str
    defect: str
    index: int
    width: int  # digits in the file name


def _jobs(spec: Spec, categories: list[str]) -> list[_Job]:
    jobs = []
    for name in categories:
        groups = [("train", "good", spec.n_train), ("test", "good", spec.n_test_good)]
        for defect in CATEGORIES[name].defects:
            groups += [("test", defect, spec.n_test_per_defect),
                       ("pool", defect, spec.n_pool_per_defect),
                       ("recurring", defect, spec.n_recurring_per_defect)]
        for split, defect, n in sorted(groups):
            width = max(3, len(str(n - 1)))
            jobs += [_Job(name, split, defect, i, width) for i in range(n)]
    return jobs


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _write_job(tmp: str, spec: Spec, job: _Job) -> dict[str, dict]:
    """Render one job into ``tmp``; manifest entries keyed by relative path."""
    sample = render(job.category, job.split, job.defect, job.index, spec)
    stem = f"{job.index:0{job.width}d}"
    rel = f"{job.category}/{job.split}/{job.defect}/{stem}.png"
    entry = {"category": job.category, "split": job.split, "defect": job.defect,
             "index": job.index, "params": sample.params,
             "sha256": _write(Path(tmp, rel), _png(sample.image))}
    entries = {rel: entry}
    if sample.mask is not None:
        gt = "ground_truth" if job.split == "test" else f"{job.split}_ground_truth"
        mask_rel = f"{job.category}/{gt}/{job.defect}/{stem}_mask.png"
        entry["mask"] = mask_rel
        entries[mask_rel] = {"image": rel,
                             "sha256": _write(Path(tmp, mask_rel), _png(sample.mask))}
    return entries


def _write_chunk(tmp: str, spec: Spec, jobs: list[_Job]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for job in jobs:
        out.update(_write_job(tmp, spec, job))
    return out


def _header(spec: Spec, categories: list[str]) -> dict:
    return {"version": VERSION, "spec": asdict(spec), "categories": categories}


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _same(manifest: dict | None, header: dict, *, subset: bool = False) -> bool:
    if not manifest or manifest.get("version") != header["version"]:
        return False
    if manifest.get("spec") != header["spec"]:
        return False
    have = list(manifest.get("categories", {}))
    if subset:
        return set(header["categories"]) <= set(have)
    return have == header["categories"]


def _category_names(categories: Iterable[str] | None) -> list[str]:
    if categories is None:
        return sorted(CATEGORIES)
    if isinstance(categories, str):
        categories = [categories]
    names = sorted(set(categories))
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown or not names:
        raise ValueError(f"categories must be a non-empty list of names from "
                         f"{sorted(CATEGORIES)}; got {names} (unknown: {unknown})")
    return names


def _describe(manifest: dict | None) -> str:
    if manifest is None:
        return "files but no readable manifest.json"
    return (f"a synthetic benchmark with version {manifest.get('version')}, spec "
            f"{manifest.get('spec')} and categories "
            f"{list(manifest.get('categories', {}))}")


def generate(root: str | Path, spec: Spec = Spec(), *,
             categories: Iterable[str] | None = None, workers: int | None = None,
             progress: bool = False, overwrite: bool = False) -> Path:
    """Write the synthetic benchmark under ``root`` and return its manifest path.

    The files are rendered into a temporary sibling folder that is renamed to
    ``root`` at the end, so an interrupted run leaves nothing at ``root``. The output
    is byte-identical for every value of ``workers``.

    Args:
        root: target folder; it must not exist, be empty, or hold this very benchmark
            (same `VERSION`, spec and categories: returned at once).
        spec: sizes, counts and seed.
        categories: names from `CATEGORIES`; all of them by default.
        workers: processes; 1 renders in-process. Default ``min(os.cpu_count(),
            4)``, fewer for small runs (one per 150 images: ``Spec.tiny()`` renders
            in-process).
        progress: show a tqdm progress bar.
        overwrite: replace whatever ``root`` holds.

    Returns:
        ``root / "manifest.json"``.

    Raises:
        ValueError: unknown category or bad ``workers``.
        DatasetExistsError: ``root`` holds something else and ``overwrite`` is False.
        SourceImageError: a bundled source image changed (see `SOURCE_SHA256`).

    Example:
        ``generate("data/synthetic", Spec.tiny(), categories=["brick"])`` writes
        ``data/synthetic/brick/...`` and returns its ``manifest.json`` path.

    Explained in: book/chapters/01_contamination
    """
    root = Path(root)
    names = _category_names(categories)
    jobs = _jobs(spec, names)
    if workers is None:  # a process costs ~0.5 s to start: ~150 images' worth
        workers = max(1, min(os.cpu_count() or 1, 4, len(jobs) // 150))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    header = _header(spec, names)
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        existing = _read_manifest(root) if root.is_dir() else None
        if _same(existing, header):
            return root / MANIFEST
        if not overwrite:
            raise DatasetExistsError(
                f"{root} already holds {_describe(existing)}, not the requested "
                f"version {VERSION}, spec {header['spec']} and categories {names}. "
                f"Delete {root} or pass overwrite=True (--overwrite on the command "
                "line).")
    sources = source_hashes(names)
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        files = _render_all(tmp, spec, jobs, workers, progress)
        manifest = {
            **header,
            "categories": {n: {"kind": CATEGORIES[n].kind,
                               "source": CATEGORIES[n].source,
                               "defects": list(CATEGORIES[n].defects)} for n in names},
            "libraries": _libraries(),
            "sources": sources,
            "files": {k: files[k] for k in sorted(files)},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True)
                                    + "\n")
        _move_into_place(tmp, root, header, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root / MANIFEST


STALE_SECONDS = 6 * 3600   # age after which an unowned temporary folder is stale


def remove_stale(root: str | Path) -> list[Path]:
    """Remove the hidden temporary folders that killed `generate` calls left next to
    `root` (``.<name>.tmp-<pid>-<hex>`` whose process is gone; those of older
    versions, without a pid, once older than `STALE_SECONDS`). Returns them."""
    root = Path(root)
    gone = []
    for path in sorted(root.parent.glob(f".{root.name}.tmp-*")) + sorted(
            root.parent.glob(f".{root.name}.old-*")):
        tag = path.name.rsplit(".", 1)[-1].split("-")[1:]
        if len(tag) == 2 and tag[0].isdigit():
            stale = not pid_alive(int(tag[0]))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > STALE_SECONDS
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else \
                path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def _render_all(tmp: Path, spec: Spec, jobs: list[_Job], workers: int,
                progress: bool) -> dict[str, dict]:
    files: dict[str, dict] = {}
    bar = tqdm(total=len(jobs), disable=not progress, desc="synthetic", unit="img")
    chunk = 8
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    with bar:
        if workers == 1 or len(chunks) == 1:
            for part in chunks:
                files.update(_write_chunk(str(tmp), spec, part))
                bar.update(len(part))
        else:
            # forkserver: never fork a parent that may run torch/OpenMP threads.
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context(
                "forkserver" if "forkserver" in methods else None)
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)),
                                     mp_context=context) as pool:
                futures = [pool.submit(_write_chunk, str(tmp), spec, part)
                           for part in chunks]
                try:
                    for part, future in zip(chunks, futures, strict=True):
                        files.update(future.result())
                        bar.update(len(part))
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # before tmp goes
                    raise
    return files


def _libraries() -> dict[str, str]:
    import PIL
    import scipy
    import skimage

    return {"numpy": np.__version__, "Pillow": PIL.__version__,
            "scikit-image": skimage.__version__, "scipy": scipy.__version__}


def _move_into_place(tmp: Path, root: Path, header: dict, overwrite: bool) -> None:
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if not root.exists():
        try:
            tmp.rename(root)
            return
        except OSError:
            if not root.exists():
                raise
    # Another process finished first, or overwrite=True replaces an old dataset.
    if _same(_read_manifest(root), header):
        return
    if not overwrite:
        raise DatasetExistsError(f"{root} appeared while generating; delete it or pass "
                                 "overwrite=True")
    old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    root.rename(old)
    tmp.rename(root)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


def ensure(root: str | Path, spec: Spec | None = Spec(), *,
           categories: Iterable[str] | None = None, progress: bool = False) -> Path:
    """Return the manifest of the benchmark at ``root``, generating it on first use.

    An existing benchmark with the same `VERSION` and spec that holds (at least) the
    requested categories is used as it is. ``spec=None`` accepts a benchmark of any
    spec already at ``root`` (e.g. the tiny one) and otherwise generates the default
    benchmark with every category.

    Raises:
        DatasetExistsError: ``root`` holds something else (see `generate`).

    Explained in: book/chapters/01_contamination
    """
    root = Path(root)
    found = _read_manifest(root)
    if spec is None and found and "spec" in found:
        spec = Spec(**found["spec"])
    elif spec is None:   # nothing there yet: the default benchmark, every category
        spec, categories = Spec(), None
    header = _header(spec, _category_names(categories))
    if _same(found, header, subset=True):
        return root / MANIFEST
    return generate(root, spec, categories=header["categories"], progress=progress)


def prototypes(root: str | Path) -> dict[str, str]:
    """Sample id -> ``"<defect>/<prototype>"`` for every file of the benchmark at
    `root` that copies a recurring defect (from its manifest)."""
    files = (_read_manifest(Path(root)) or {}).get("files", {})
    return {rel.removesuffix(".png"): f"{e['defect']}/{e['params']['prototype']}"
            for rel, e in files.items() if "prototype" in e.get("params", {})}


def verify(root: str | Path) -> list[str]:
    """Re-hash every file the manifest lists; an empty list means intact.

    Returns:
        One line per problem: ``missing: <path>``, ``changed: <path>`` or
        ``unexpected: <path>`` (a PNG under a category folder that the manifest does
        not list, which an index would pick up).

    Explained in: book/chapters/01_contamination
    """
    root = Path(root)
    manifest = _read_manifest(root)
    if manifest is None:
        return [f"missing: {MANIFEST} (or not valid JSON) in {root}"]
    problems = []
    files = manifest.get("files", {})
    for rel in sorted(files):
        path = root / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != files[rel]["sha256"]:
            problems.append(f"changed: {rel}")
    for name in manifest.get("categories", {}):
        for path in sorted((root / name).rglob("*.png")):
            rel = path.relative_to(root).as_posix()
            if rel not in files:
                problems.append(f"unexpected: {rel}")
    return problems
