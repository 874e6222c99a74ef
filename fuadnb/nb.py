"""Helpers for the chapter notebooks only: setup, glue, the interactive explorer.

Nothing else in fuadnb imports this module (it imports ipywidgets and myst_nb lazily,
so the package works without the book's dependencies).
"""

from __future__ import annotations

import io
import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from fuadnb import plot
from fuadnb.utils import __version__, device_name, pick_device, seed_everything

RESULT_MIME = "application/vnd.fuadnb.result+json"   # what fuadnb.notebooks reads back


@dataclass(frozen=True)
class Env:
    """What `setup` returns: the device and a one-line description of the machine."""

    device: torch.device
    summary: str


def setup(seed: int = 111, device: str = "auto") -> Env:
    """Seed everything, pick the device, set the plot style; never downloads."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_everything(seed)
    dev = pick_device(device)
    plot.use_book_style()
    summary = (f"fuadnb {__version__}, torch {torch.__version__}, python "
               f"{platform.python_version()}, {device_name(dev)}")
    return Env(device=dev, summary=summary)


def glue(name: str, value, display: bool = False):
    """`myst_nb.glue` (lazily imported): the prose cites `value` as {glue:}`name`.

    numpy scalars are glued as Python numbers, so ``{glue:text}`name:.3f``` works.
    """
    from myst_nb import glue as myst_glue

    if isinstance(value, np.generic):
        value = value.item()
    myst_glue(name, value, display=display)
    return value


def _overlay_jpeg(image: np.ndarray, amap: np.ndarray, vmax: float, size: int) -> bytes:
    """One (3, H, W) uint8 image and its map side by side, as JPEG bytes."""
    rgb = image.transpose(1, 2, 0).astype(np.float32) / 255
    heat = colormaps["jet"](np.clip(amap / vmax, 0, 1))[..., :3]
    both = np.concatenate([rgb, 0.5 * rgb + 0.5 * heat], axis=1)
    pil = Image.fromarray((both * 255).astype(np.uint8))
    pil = pil.resize((2 * size, size), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def explorer(images, maps: np.ndarray, captions: Sequence[str], *, size: int = 160,
             vmax: float | None = None):
    """Browse images with their anomaly maps: a slider over a stack of pictures.

    Every picture is rendered up front and the slider is linked to the stack in the
    browser (``jslink``), so the explorer also works in the static book, from the
    widget state saved with the executed notebook, with no kernel behind it.

    Args:
        images: uint8 (N, 3, H, W); maps: (N, H, W); captions: one line each.
        vmax: top of the colour scale (default: the largest map value).
    """
    import ipywidgets as w

    n = len(images)
    if n == 0 or len(maps) != n or len(captions) != n:
        raise ValueError(f"explorer needs as many maps and captions as images; got "
                         f"{n} images, {len(maps)} maps, {len(captions)} captions")
    vmax = float(np.max(maps)) if vmax is None else vmax
    pages = [w.VBox([w.HTML(f"<b>{caption}</b>"),
                     w.Image(value=_overlay_jpeg(np.asarray(images[i]), maps[i],
                                                 vmax, size), format="jpeg")])
             for i, caption in enumerate(captions)]
    stack = w.Stack(pages, selected_index=0)
    slider = w.IntSlider(value=0, min=0, max=n - 1, description="image",
                         continuous_update=True)
    w.jslink((slider, "value"), (stack, "selected_index"))
    return w.VBox([slider, stack])


def record(row: dict[str, Any]) -> None:
    """Output a run's results row under the `RESULT_MIME` type, so that a papermill
    batch run can collect it from the executed notebook (`fuadnb.grid.run_grid`).

    Put it in a cell tagged ``remove-cell``: the book does not show it.
    """
    from IPython.display import publish_display_data

    clean = {k: (None if isinstance(v, float) and v != v else v)
             for k, v in json.loads(json.dumps(row, default=str)).items()}
    publish_display_data({RESULT_MIME: clean, "text/plain": "results row recorded"})
