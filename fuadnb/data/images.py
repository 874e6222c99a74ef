"""Decode images and masks once into tensors (uint8 images, bool masks).

Resizing follows RD4AD (dataset.py L9-L23): PIL bilinear resize to a square
``size x size`` with no crop, which is what torchvision's ``Resize((s, s))`` does to a
PIL image. Masks are binarised at full size with ``!= 0`` (VisA masks are multi-valued
per defect instance), resized bilinearly and thresholded at 0.5 (RD4AD test.py L85),
never truncated with ``astype(int)`` (the SoftPatch quirk).

With ``load_size`` > ``size`` the images are instead resized as torchvision's
``Resize(load_size)`` (the shorter side to ``load_size``, the aspect ratio kept) and
centre-cropped as ``CenterCrop(size)``: FUN-AD's and SoftPatch's 256 -> 224
(methods.md §9.13). Masks get the same resize (bilinear, after binarising) and the same
crop window, so a mask stays aligned with its image.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from fuadnb.data.index import DatasetError


def _open(path: str) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: file not found; the index is stale, rebuild it "
                           "from the dataset root") from err
    except Image.DecompressionBombError as err:   # PIL's guard, not an OSError
        raise DatasetError(f"{path}: the image is too large to decode safely "
                           f"(PIL: {' '.join(str(err).split()[:6])}); resize it, "
                           "e.g. to the 256-1024 px of the benchmark datasets") \
            from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DatasetError(f"{path}: cannot be decoded as an image ({err}); re-extract "
                           "the dataset or delete the file") from err
    return img


def geometry(width: int, height: int, size: int, load_size: int = 0
             ) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """Where an image of ``width x height`` goes: the (width, height) to resize to and
    the crop box (left, top, right, bottom) or None.

    ``load_size`` 0 or ``size``: a square ``size x size`` resize, no crop. Larger:
    torchvision's ``Resize(load_size)`` (shorter side ``load_size``, the longer one
    ``int(load_size * long / short)``) then ``CenterCrop(size)`` (offsets
    ``round((side - size) / 2)``).
    """
    if not load_size or load_size == size:
        return (size, size), None
    if load_size < size:
        raise ValueError(f"load_size {load_size} must be 0 or at least the crop size "
                         f"{size}")
    if width <= height:
        resized = (load_size, int(load_size * height / width))
    else:
        resized = (int(load_size * width / height), load_size)
    left = int(round((resized[0] - size) / 2.0))
    top = int(round((resized[1] - size) / 2.0))
    return resized, (left, top, left + size, top + size)


def _place(img: Image.Image, resized: tuple[int, int],
           box: tuple[int, int, int, int] | None) -> Image.Image:
    img = img.resize(resized, Image.BILINEAR)
    return img if box is None else img.crop(box)


HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit, 32-bit and float single-channel images are scaled to 0-255
    (PIL's ``convert`` would clip them: a 16-bit PNG turns all white): ``I;16`` by
    65535, ``I`` by 65535 unless larger values occur (then by its maximum), ``F`` by
    1, 255 or 65535, whichever range holds its values."""
    if img.mode not in HIGH_BIT_MODES:
        return img.convert("RGB")
    arr = np.asarray(img, dtype=np.float64)
    top = float(arr.max()) if arr.size else 0.0
    if img.mode.startswith("I;16"):
        full = 65535.0
    elif img.mode == "F" and top <= 1.0:
        full = 1.0
    elif img.mode == "F" and top <= 255.0:
        full = 255.0
    else:
        full = max(65535.0, top)
    grey = np.clip(np.rint(arr / full * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def _load_pair(image_path: str, mask_path: str | None, size: int, with_mask: bool,
               augment: dict | None = None, load_size: int = 0
               ) -> tuple[np.ndarray, np.ndarray | None]:
    img = _open(image_path)
    full_size = img.size
    img = _augmented(_to_rgb(img), augment, Image.BILINEAR)
    resized, box = geometry(*full_size, size, load_size)
    rgb = np.asarray(_place(img, resized, box))
    if not with_mask:
        return rgb, None
    if mask_path is None:
        return rgb, np.zeros((size, size), bool)
    mask = _open(mask_path)
    if mask.size != full_size:
        raise DatasetError(f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} but "
                           f"its image {image_path} is {full_size[0]}x{full_size[1]}; "
                           "the mask belongs to another image or was resized")
    binary = np.asarray(mask if mask.mode in HIGH_BIT_MODES else mask.convert("L")) != 0
    binary = _augmented(Image.fromarray(binary.astype(np.uint8) * 255), augment,
                        Image.NEAREST)
    return rgb, np.asarray(_place(binary, resized, box)) > 127.5


def _augmented(img: Image.Image, augment: dict | None, resample: int) -> Image.Image:
    """A repeated anomaly's rotation and shift (contamination ``repeat=True``),
    applied alike to the image and its mask; `img` as is without one."""
    if augment is None:
        return img
    return img.rotate(augment["angle"], resample=resample, translate=(
        augment["dx"] * img.size[0], augment["dy"] * img.size[1]))


def load(rows: pd.DataFrame | Sequence[dict], size: int, *, masks: bool = True,
         load_size: int = 0, workers: int = 4, progress: bool = False
         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Decode the images (and masks) of index `rows`, resized to ``size x size``.

    Args:
        rows: index rows with ``image_path`` and ``mask_path`` (and optionally
            ``augment``, the rotation/shift of a repeated anomaly, applied to its
            image and mask alike).
        size: output side length in pixels.
        masks: also load masks (all-false for rows without a mask).
        load_size: 0 (or `size`): resize to ``size x size``; larger: resize the
            shorter side to it and centre-crop ``size x size`` (`geometry`), images
            and masks alike.
        workers: decoding threads (PIL releases the GIL while decoding).

    Returns:
        images uint8 (N, 3, size, size) and masks bool (N, 1, size, size) or None,
        in the order of `rows`.

    Raises:
        DatasetError: a file is missing or corrupt, or a mask's size differs from its
            image's, naming the file.
    """
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    if size < 8:
        raise ValueError(f"image size {size} is too small; use at least 8 pixels")
    with ThreadPoolExecutor(max(1, workers)) as pool:
        jobs = pool.map(lambda r: _load_pair(r["image_path"], r["mask_path"], size,
                                             masks, r.get("augment"), load_size),
                        records)
        pairs = list(tqdm(jobs, total=len(records), desc="load images",
                          disable=not progress, leave=False))
    if not pairs:
        return (torch.empty(0, 3, size, size, dtype=torch.uint8),
                torch.empty(0, 1, size, size, dtype=torch.bool) if masks else None)
    images = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2)
    if not masks:
        return images.contiguous(), None
    mask_t = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
    return images.contiguous(), mask_t
