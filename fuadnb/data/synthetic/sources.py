"""The scikit-image photographs the scenes and defects draw from, checked against the
hashes the benchmark was built from, cropped to a size; and `Base`, the clean image
(with its foreground and background) that a scene renders and a defect changes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from typing import NamedTuple

import numpy as np
from PIL import Image

from fuadnb.data.synthetic.spec import CATEGORIES, CATEGORIES_V3, VERSION

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
# the images a foreign_texture defect is filled from
FOREIGN = ("skimage.data.brick", "skimage.data.grass", "skimage.data.gravel",
           "skimage.data.immunohistochemistry", "skimage.data.moon")
_WINDOW = 256  # source pixels per real-texture crop, whatever the output size


class SourceImageError(RuntimeError):
    """A bundled source image differs from the one the benchmark was built from."""


class Base(NamedTuple):
    """A clean image as a scene renders it, before sensor noise and defects."""

    img: np.ndarray  # (H, W, 3) float64, 0..255, before sensor noise
    noise: np.ndarray  # (H, W, 1) sensor noise, added to the base and the defect image
    fg: np.ndarray  # (H, W) float64 in [0, 1]; all ones for textures
    bg: np.ndarray | None  # (H, W, 3) background behind an object, None for textures
    dist: np.ndarray | None  # (H, W) distance to the object's outside; set by render
    info: dict


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


def source_image(name: str) -> np.ndarray:
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
        cat = CATEGORIES_V3[name]  # every version's categories (v2's are members)
        if cat.source != "procedural":
            names.add(cat.source)
        if "foreign_texture" in cat.defects:
            names.update(FOREIGN)
    return sorted(names)


def source_hashes(categories: Iterable[str] | None = None) -> dict[str, str]:
    """sha256 of every bundled source image the categories use, checked.

    Raises:
        SourceImageError: an image differs from the one recorded in `SOURCE_SHA256`.
    """
    names = sorted(CATEGORIES) if categories is None else categories
    digests = {}
    for name in _sources_for(names):
        source_image(name)  # raises on a mismatch
        digests[name] = _source_digest(name)
    return digests


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


def crop(rng: np.random.Generator, src: np.ndarray, size: int,
         rotate: bool, window: int = _WINDOW) -> tuple[np.ndarray, dict]:
    """A random ``window`` crop (default `_WINDOW` source pixels) of a source
    (H, W[, C]) rescaled to size, float."""
    y = int(rng.integers(src.shape[0] - window + 1))
    x = int(rng.integers(src.shape[1] - window + 1))
    k = int(rng.integers(4)) if rotate else 0
    window = np.rot90(src[y:y + window, x:x + window].astype(np.float64), k)
    if window.ndim == 2:
        return _resize(window, size), {"y": y, "x": x, "rot90": k}
    out = np.stack([_resize(window[..., c], size) for c in range(3)], axis=-1)
    return out, {"y": y, "x": x, "rot90": k}
