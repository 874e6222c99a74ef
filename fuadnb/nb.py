"""Helpers for the chapter notebooks only: setup (and the runs of a chapter), the
scenario and the Config options from a chapter's parameters, examples to show,
glue, the interactive explorer.

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
import pandas as pd
import torch
from matplotlib import colormaps
from PIL import Image

from fuadnb import experiment, plot
from fuadnb.utils import __version__, device_name, pick_device, seed_everything

RESULT_MIME = "application/vnd.fuadnb.result+json"   # what fuadnb.notebooks reads back


@dataclass(frozen=True)
class Env:
    """What `setup` returns: the device, a one-line description of the machine, and
    the settings every run of the chapter shares (`run`)."""

    device: torch.device
    summary: str
    profile: str = "demo"
    runs_root: str = "runs"

    def run(self, method: str, scenario: experiment.Scenario, *,
            options: dict[str, Any] | None = None, curve_every: int = 0,
            progress: bool = True) -> experiment.Result:
        """`fuadnb.experiment.run` at the chapter's profile, device and run cache."""
        return experiment.run(method, scenario, profile=self.profile,
                              device=str(self.device), runs_root=self.runs_root,
                              options=options, curve_every=curve_every,
                              progress=progress)


def setup(seed: int = 111, device: str = "auto", *, profile: str = "demo",
          runs_root: str = "runs") -> Env:
    """Seed everything, pick the device, set the plot style; never downloads.
    `profile` and `runs_root` are those of the chapter's runs (`Env.run`)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seed_everything(seed)
    dev = pick_device(device)
    plot.use_book_style()
    summary = (f"fuadnb {__version__}, torch {torch.__version__}, python "
               f"{platform.python_version()}, {device_name(dev)}")
    return Env(device=dev, summary=summary, profile=profile, runs_root=runs_root)


def scenario(dataset: str, root: str, category: str, noise_ratio: float = 0.0,
             regime: str = "iid", definition: str = "softpatch", repeat: bool = False,
             seed: int = 111, *, progress: bool = True) -> experiment.Scenario:
    """The `fuadnb.experiment.Scenario` of a chapter's parameters (``DATASET,
    DATA_ROOT, CATEGORY, NOISE_RATIO, REGIME``, ...), its synthetic benchmark
    generated on first use (`Scenario.ensure`)."""
    return experiment.Scenario(dataset, root, category, noise_ratio, regime,
                               definition, repeat, seed).ensure(progress=progress)


def options(**parameters: Any) -> dict[str, Any]:
    """Config overrides from a chapter's parameters, by Config field: those left at
    "the profile's" (``""``, ``0`` or None) are left out, so the profile's value
    holds; a boolean (``False`` too) is always a choice. E.g. ``options(
    backbone=BACKBONE, epochs=EPOCHS)``."""
    return {k: v for k, v in parameters.items()
            if isinstance(v, bool) or not (v is None or (
                isinstance(v, (str, int, float)) and not v))}


def examples(rows: pd.DataFrame, *, good: int = 0, anomalous: int = 3,
             per_defect: bool = True) -> tuple[np.ndarray, list[str]]:
    """Test images to show: the positions in `rows` (a split's test rows) of the
    first `good` normal images, then of `anomalous` anomalous ones (with
    `per_defect`, the first of each defect type), and their titles ("good" or the
    defect)."""
    label = rows["label"].to_numpy()
    bad = label == 1
    if per_defect:
        bad &= ~rows["defect"].where(bad).duplicated().to_numpy()
    picked = np.concatenate([np.flatnonzero(label == 0)[:good],
                             np.flatnonzero(bad)[:anomalous]])
    titles = ["good" if label[i] == 0 else str(rows["defect"].iloc[i])
              for i in picked]
    return picked, titles


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
