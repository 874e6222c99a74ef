"""One experiment end to end: index -> contaminate -> load -> fit (or load) ->
predict -> metrics -> one results row in the run folder.

The CLI's ``run`` and ``demo`` commands and the chapters call `run`; everything it
does is a call into the layers below, so a notebook can also take the steps one by one.
"""

from __future__ import annotations

import datetime as dt
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import fuadnb
from fuadnb import data, evaluate, models, runs
from fuadnb.utils import Timer, device_name, git_commit, pick_device


@dataclass
class Result:
    """What `run` returns: the results row, the run folder, the split, the model and
    its predictions (what the chapters draw).

    Attributes:
        test_images, train_images: uint8 (N, 3, S, S) on the CPU, in split order.
        test_masks: bool (N, S, S); test_maps: (N, S, S) anomaly maps.
        test_scores, train_scores: image scores (max of the map).
    """

    row: dict[str, Any]
    dir: Path
    split: data.Split
    model: torch.nn.Module
    test_images: torch.Tensor
    test_masks: np.ndarray
    test_maps: np.ndarray
    test_scores: np.ndarray
    train_images: torch.Tensor
    train_scores: np.ndarray


def environment(device: torch.device) -> dict[str, str]:
    """Versions and machine, for every results row."""
    return {"device": device_name(device), "torch": torch.__version__,
            "fuadnb": fuadnb.__version__, "python": platform.python_version(),
            "commit": git_commit(Path(__file__).parent),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def run(method: str = "rd", *, dataset: str, root: Path | str, category: str,
        noise_ratio: float = 0.0, seed: int = 111, profile: str = "demo",
        overlap: bool = False, definition: str = "softpatch", source: str = "auto",
        device: str = "auto", runs_root: Path | str = "runs",
        options: dict[str, Any] | None = None, progress: bool = False) -> Result:
    """Run `method` on one category at one noise ratio; cached by configuration.

    Args:
        options: overrides of the method's Config fields (e.g. ``{"epochs": 5}``).

    Returns:
        the Result; its row is also written to ``<run dir>/metrics.json``.
    """
    module = models.get(method)
    dev = pick_device(device)
    cfg = module.config(profile, seed=seed, **(options or {}))
    split = data.contaminate(data.index(dataset, root, category), noise_ratio,
                             seed=seed, definition=definition, overlap=overlap,
                             source=source)
    spec = runs.RunSpec(method, dataset, category, noise_ratio, overlap, seed, profile,
                        cfg, split.manifest, root=runs_root)
    with Timer() as load_timer:
        train_images, _ = data.images.load(split.train, cfg.image_size, masks=False,
                                           progress=progress)
        test_images, test_masks = data.images.load(split.test, cfg.image_size,
                                                   progress=progress)
    train_images = train_images.to(dev)
    model, fit_record = runs.load_or_fit(
        spec, build=lambda: module.build(cfg),
        fit=lambda: module.fit(cfg, train_images, device=dev, progress=progress))
    model = model.to(dev)
    with Timer(dev) as predict_timer:
        scores, maps = module.predict(model, test_images.to(dev), progress=progress)
    train_scores = module.score_train(model, train_images)
    labels = split.test["label"].to_numpy()
    metrics = evaluate.score(labels=labels, scores=scores,
                             masks=test_masks[:, 0].numpy(), maps=maps,
                             test_injected=split.test["is_injected"].to_numpy(),
                             train_injected=split.train["is_injected"].to_numpy(),
                             train_scores=train_scores)
    runs.save_predictions(spec, test_ids=split.test["id"].to_numpy(str),
                          test_labels=labels, test_scores=scores,
                          train_ids=split.train["id"].to_numpy(str),
                          train_injected=split.train["is_injected"].to_numpy(),
                          train_scores=train_scores)
    n_train = len(split.train)
    row = runs.flat_row(spec) | {
        "teacher": model.teacher.label, **metrics,
        "fit_seconds": fit_record["fit_seconds"],
        "train_images_per_second": images_seen(cfg, n_train)
        / fit_record["fit_seconds"],
        "predict_seconds": predict_timer.seconds,
        "test_images_per_second": len(test_images) / predict_timer.seconds,
        "load_seconds": load_timer.seconds, "n_train": n_train,
        **{f"test_{k}": v for k, v in split.test_composition().items()
           if not k.startswith("defect:")},
        "final_loss": fit_record["history"][-1] if fit_record["history"] else np.nan,
        **environment(dev)}
    runs.save_row(spec, row)
    return Result(row=row, dir=spec.dir, split=split, model=model,
                  test_images=test_images, test_masks=test_masks[:, 0].numpy(),
                  test_maps=maps, test_scores=scores,
                  train_images=train_images.cpu(), train_scores=train_scores)


def images_seen(cfg: Any, n_train: int) -> int:
    """Training images a fit processed: epochs x images, or iterations x batch."""
    if hasattr(cfg, "epochs"):
        return cfg.epochs * n_train
    return cfg.iterations * cfg.batch_size


def table(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """The compact view of results rows printed by the CLI."""
    df = pd.DataFrame(rows)
    cols = ["method", "dataset", "category", "noise_ratio", "n_injected", "seed",
            "profile", "teacher", "image_auroc", "pixel_auroc", "pixel_aupro",
            "detection_auroc", "fit_seconds"]
    return df[[c for c in cols if c in df]]
