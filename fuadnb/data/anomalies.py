"""Synthetic anomalies for training (DRAEM-style), as RD-E's teacher uses them.

Reference: hito2448/URD dataset/dataset_noise.py L19-L92 and utils/perlin.py
L109-L175 (methods.md §3.4), after DRAEM: a Perlin-noise mask with lattice scales
``2**tx, 2**ty`` (``tx, ty ~ randint[0, 6)``), rotated by a random angle in
[-90, 90] degrees, thresholded at 0.5, optionally restricted to the object's
foreground; inside the mask the image is replaced by a texture blended with itself:
``x~ = x (1 - m) + (1 - b) tex m + b x m``, ``b ~ U[0, 0.8)``.

The object's foreground (`foreground`), computed once per training image as the
reference does when it builds its dataset (dataset_noise.py L53-L64,
perlin.py L161-L175), by one of the `FOREGROUNDS` rules:

* ``grabcut``: OpenCV's GrabCut from the rectangle of the whole image less its first
  row and column, 11 iterations, definite and probable foreground (the released
  code's rule for every object but MVTec AD capsule and screw);
* ``otsu_inverse``: Otsu's threshold on the grey levels, the darker side (the
  released code's rule for capsule and screw);
* ``otsu_border``: Otsu's threshold, the side that touches the image border less
  (ours, this module's only rule before; kept as an option).

Deviations: DTD is not shipped, so the textures come from photographs bundled with
scikit-image and scikit-learn that the synthetic benchmark does not use, plus
procedural patterns (`texture_bank`), unless a DTD-like folder of images is given
(`textures_from_folder`). The foreground is computed on the training image as
loaded (PIL's bilinear resize), not on a separate OpenCV resize of the file, and
OpenCV's random generator is seeded before each GrabCut (the reference leaves it
in whatever state the thread's earlier calls left it). Everything else is drawn
from a seeded ``torch.Generator``: the same seed gives the same anomalies.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# scikit-image photographs that the synthetic benchmark does not draw normal images
# from (it uses brick, grass, gravel and coins)
BUNDLED = ("astronaut", "camera", "chelsea", "coffee", "hubble_deep_field",
           "immunohistochemistry", "moon", "rocket", "text", "page", "horse")


def perlin(size: int, res: tuple[int, int], generator: torch.Generator
           ) -> torch.Tensor:
    """2D Perlin noise (size, size) on a ``res`` lattice (DRAEM's rand_perlin_2d).

    `size` must be divisible by both lattice resolutions. Not the benchmark's
    `fuadnb.data.synthetic.noise.perlin`: URD's torch version on a pixel-aligned
    lattice, drawn from a ``torch.Generator``, so RD-E's anomalies stay as they are.
    """
    ry, rx = res
    if size % ry or size % rx:
        raise ValueError(f"Perlin size {size} is not divisible by the lattice {res}")
    dy, dx = size // ry, size // rx
    ys = (torch.arange(size, dtype=torch.float64) * ry / size) % 1
    xs = (torch.arange(size, dtype=torch.float64) * rx / size) % 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")                     # (S, S)
    angles = 2 * math.pi * torch.rand(ry + 1, rx + 1, generator=generator,
                                      dtype=torch.float64)
    grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)

    def tile(oy: int, ox: int) -> torch.Tensor:   # the lattice gradients per pixel
        g = grads[oy:oy + ry, ox:ox + rx]
        return g.repeat_interleave(dy, 0).repeat_interleave(dx, 1)     # (S, S, 2)

    def dot(g: torch.Tensor, sy: float, sx: float) -> torch.Tensor:
        return (gy - sy) * g[..., 0] + (gx - sx) * g[..., 1]

    n00, n10 = dot(tile(0, 0), 0, 0), dot(tile(1, 0), 1, 0)
    n01, n11 = dot(tile(0, 1), 0, 1), dot(tile(1, 1), 1, 1)
    ty, tx = (6 * t**5 - 15 * t**4 + 10 * t**3 for t in (gy, gx))       # fade
    top = n00 + ty * (n10 - n00)
    bottom = n01 + ty * (n11 - n01)
    return (math.sqrt(2) * (top + tx * (bottom - top))).float()


def perlin_mask(size: int, generator: torch.Generator, *, threshold: float = 0.5,
                max_scale: int = 6) -> torch.Tensor:
    """A binary anomaly mask (size, size): rotated Perlin noise above `threshold`.

    Scales ``2**randint(0, max_scale)`` per axis, capped so they divide `size`.
    """
    cap = int(math.log2(size & -size))                 # largest power of 2 dividing
    tx, ty = (min(int(v), cap) for v in torch.randint(0, max_scale, (2,),
                                                      generator=generator))
    noise = perlin(size, (2 ** ty, 2 ** tx), generator)
    angle = (torch.rand((), generator=generator).item() * 180 - 90) * math.pi / 180
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]])[None]
    grid = F.affine_grid(theta, (1, 1, size, size), align_corners=False)
    rotated = F.grid_sample(noise[None, None], grid, mode="bilinear",
                            padding_mode="reflection", align_corners=False)[0, 0]
    return rotated > threshold


Foreground = Literal["none", "grabcut", "otsu_inverse", "otsu_border"]
FOREGROUNDS: tuple[str, ...] = ("none", "grabcut", "otsu_inverse", "otsu_border")
GRABCUT_ITERATIONS = 11   # perlin.py L161-L171: cv2.grabCut(..., 11, ...)


def grabcut(image: torch.Tensor, *, iterations: int = GRABCUT_ITERATIONS,
            seed: int = 0) -> torch.Tensor:
    """Object mask (H, W) bool of a uint8 RGB image (3, H, W) by OpenCV's GrabCut, as
    URD's ``get_forehead_mask`` (perlin.py L161-L171): the rectangle (1, 1, W - 1,
    H - 1) marks everything outside it (the first row and column) as background and
    the rest as probably foreground; `iterations` rounds; the definite and probable
    foreground are the object. OpenCV's generator (the k-means++ start of GrabCut's
    colour models) is seeded with `seed` first, so a mask does not depend on the
    calls made before it. A constant image is all object (GrabCut has no colours to
    separate)."""
    import cv2

    rgb = image.permute(1, 2, 0).contiguous().numpy()
    if np.ptp(rgb) == 0:
        return torch.ones(rgb.shape[:2], dtype=torch.bool)
    bgr = np.ascontiguousarray(rgb[..., ::-1])          # as cv2.imread gives it
    h, w = bgr.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.setRNGSeed(seed)
    cv2.grabCut(bgr, mask, (1, 1, w - 1, h - 1), np.zeros((1, 65)),
                np.zeros((1, 65)), iterations, cv2.GC_INIT_WITH_RECT)
    return torch.from_numpy((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))


def otsu_inverse(image: torch.Tensor) -> torch.Tensor:
    """Object mask (H, W) bool of a uint8 RGB image (3, H, W): OpenCV's grey levels
    (0.299 R + 0.587 G + 0.114 B), Otsu's threshold, the pixels at or below it
    (``THRESH_BINARY_INV + THRESH_OTSU``, perlin.py L172-L174: the darker side)."""
    import cv2

    grey = cv2.cvtColor(image.permute(1, 2, 0).contiguous().numpy(),
                        cv2.COLOR_RGB2GRAY)
    _, below = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    return torch.from_numpy(below > 0)


def otsu_border(image: torch.Tensor) -> torch.Tensor:
    """Object mask of a uint8 (3, H, W) image: Otsu's threshold on the grey levels;
    the side that covers less of the border is the object (ours)."""
    from skimage.filters import threshold_otsu

    grey = image.float().mean(0).numpy()
    if np.ptp(grey) == 0:
        return torch.ones(grey.shape, dtype=torch.bool)
    above = grey > threshold_otsu(grey)
    border = np.concatenate([above[0], above[-1], above[:, 0], above[:, -1]])
    mask = above if border.mean() < 0.5 else ~above
    return torch.from_numpy(mask)


RULES = {"grabcut": grabcut, "otsu_inverse": otsu_inverse, "otsu_border": otsu_border}


def foreground(images: torch.Tensor, rule: Foreground, *, workers: int | None = None
               ) -> torch.Tensor | None:
    """The object masks (N, H, W) bool of uint8 images (N, 3, H, W) by `rule` (one
    of `FOREGROUNDS`), or None for ``"none"`` (anomalies go anywhere). Images are
    processed by `workers` threads (OpenCV releases the GIL; default: the CPU
    count); each mask depends on its image alone."""
    if rule not in FOREGROUNDS:
        raise ValueError(f"foreground must be one of {', '.join(FOREGROUNDS)}; got "
                         f"{rule!r}")
    if rule == "none":
        return None
    images = images.cpu()
    if not len(images):
        return torch.empty(0, *images.shape[-2:], dtype=torch.bool)
    with ThreadPoolExecutor(max(1, workers or os.cpu_count() or 1)) as pool:
        return torch.stack(list(pool.map(RULES[rule], images)))


def synthesize(images: torch.Tensor, textures: torch.Tensor, generator: torch.Generator,
               *, foreground: torch.Tensor | None = None, max_beta: float = 0.8
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste textured Perlin-shaped anomalies into uint8 images (N, 3, S, S).

    Args:
        textures: uint8 (K, 3, S, S) anomaly sources, one drawn per image.
        foreground: (N, S, S) bool, each image's object mask (`foreground`), ANDed
            with its anomaly mask (object categories; URD train.py L102-L113); None:
            anywhere.

    Returns:
        the augmented images, uint8 (N, 3, S, S), and their masks, bool (N, 1, S, S).
    """
    n, _, size, _ = images.shape
    if textures.shape[1:] != images.shape[1:]:
        raise ValueError(f"textures {tuple(textures.shape)} must have the images' "
                         f"shape {tuple(images.shape[1:])} per item")
    if foreground is not None and foreground.shape != (n, size, images.shape[-1]):
        raise ValueError(f"foreground {tuple(foreground.shape)} must be one (H, W) "
                         f"mask per image, {(n, size, images.shape[-1])}")
    out = torch.empty_like(images)
    masks = torch.empty(n, 1, size, size, dtype=torch.bool)
    for i in range(n):
        mask = perlin_mask(size, generator)
        if foreground is not None:
            mask &= foreground[i].cpu()
        tex = textures[torch.randint(len(textures), (), generator=generator)].float()
        beta = torch.rand((), generator=generator).item() * max_beta
        x, m = images[i].float(), mask.float()
        blended = x * (1 - m) + (1 - beta) * tex * m + beta * x * m
        out[i] = blended.round().clamp(0, 255).to(torch.uint8)
        masks[i, 0] = mask
    return out, masks


def _resize(rgb: np.ndarray, size: int) -> torch.Tensor:
    img = Image.fromarray(rgb).convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def texture_bank(size: int, seed: int = 0, n_procedural: int = 8) -> torch.Tensor:
    """Anomaly sources available offline: the `BUNDLED` scikit-image photographs,
    scikit-learn's two sample photographs, and `n_procedural` seeded patterns
    (stripes, checks, blobs), all resized to ``size``; uint8 (K, 3, size, size)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = [getattr(skimage.data, name)() for name in BUNDLED]
    photos += list(load_sample_images().images)
    bank = [_resize(np.asarray(p if p.ndim == 3 else np.stack([p] * 3, -1))[..., :3]
                    .astype(np.uint8), size) for p in photos]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for k in range(n_procedural):
        f, phase, colour = rng.uniform(3, 20), rng.uniform(0, 2 * np.pi), rng.random(3)
        if k % 3 == 0:
            pattern = np.sin(2 * np.pi * f * (xx * np.cos(phase) + yy * np.sin(phase)))
        elif k % 3 == 1:
            pattern = np.sign(np.sin(2 * np.pi * f * xx) * np.sin(2 * np.pi * f * yy))
        else:
            pattern = np.tanh(3 * np.sin(f * xx + phase) * np.cos(f * yy - phase))
        rgb = (0.5 + 0.5 * pattern)[..., None] * colour + (1 - colour) * 0.2
        bank.append(torch.from_numpy((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
                    .permute(2, 0, 1))
    return torch.stack(bank)


def texture_files(folder: Path | str) -> list[Path]:
    """Every ``*.jpg``/``*.png`` below `folder` (e.g. DTD's ``images/``), sorted."""
    files = sorted(p for p in Path(folder).rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise FileNotFoundError(f"no .jpg/.png texture images below {folder}; pass "
                                "a folder such as dtd/images, or use texture_bank()")
    return files


def textures_from_folder(folder: Path | str, size: int) -> torch.Tensor:
    """Every image of `texture_files`, resized to ``size``; uint8 (K, 3, size, size)."""
    return torch.stack([_resize(np.asarray(Image.open(p).convert("RGB")), size)
                        for p in texture_files(folder)])
