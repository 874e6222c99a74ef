"""What every method does the same way: the Config fields they share, the model's
record of its fit (what the run cache saves), prediction, the schedule's cost, and
the ``config(profile, **overrides)`` function. The method interface itself is
`fuadnb.models.Method`.

Role names have one meaning in every method:

* **teacher**: the network whose features a student learns to reproduce (RD, CDD:
  frozen; RD-E: fine-tuned, beside its frozen **expert**);
* **student**: the trained network from teacher features to their reconstruction,
  a module with a ``bottleneck`` and a ``decoder`` (`fuadnb.nn.blocks.Student`;
  RD-E's adds GII);
* **extractor**: a frozen network whose features are used as they are (PatchCore's
  memory bank, FUN-AD's patch features).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from fuadnb import engine
from fuadnb.config import check_choice, from_profile
from fuadnb.nn import backbones


@dataclasses.dataclass(frozen=True)
class Config:
    """The fields every method's Config has, with one meaning across methods (each
    method's Config adds its own after them and calls ``super().__post_init__()``)."""

    precision: engine.Precision = "fp32"   # every reference; bf16: an option, and
                                           # auto's choice on CUDA in smoke/demo
    load_size: int = 0                     # > image_size: resize, centre-crop

    def __post_init__(self):
        check_choice(self, "precision", engine.PRECISIONS)
        if self.load_size and self.load_size < self.image_size:
            raise ValueError(f"load_size must be 0 or >= image_size "
                             f"({self.image_size}), got {self.load_size}")


def configurator(cls: type, profiles: dict[str, dict], method: str
                 ) -> Callable[..., Any]:
    """A method's ``config(profile="paper", **overrides)``: the `profile`'s `cls`
    with `overrides` (None values are ignored; `fuadnb.config.from_profile`)."""
    def config(profile: str = "paper", **overrides: Any) -> Any:
        return from_profile(cls, profiles, profile, method, **overrides)
    config.__doc__ = (f"The `profile`'s {method} Config with `overrides` (None values "
                      "are ignored).")
    return config


class Budget(NamedTuple):
    """The cost of one fit: optimiser steps and training images processed."""

    steps: int
    images_seen: int


def epoch_budget(n_train: int, batch_size: int, epochs: int,
                 steps: int | None = None) -> Budget:
    """The `Budget` of `engine.schedule`: ``epochs`` passes, or exactly ``steps``."""
    per_epoch = -(-n_train // batch_size)
    return Budget(epochs * per_epoch if steps is None else steps,
                  engine.images_seen(n_train, batch_size, epochs=epochs, steps=steps))


def no_category_options(profile: str, dataset: str, category: str, kind: str
                        ) -> dict[str, Any]:
    """``category_options`` of a method whose settings do not depend on the
    category: none."""
    return {}


def no_locate(cfg: Any, data_root: Path | str) -> tuple[Any, dict[str, Any]]:
    """``locate`` of a method with no setting that depends on where the data lies:
    `cfg` as it is, and no results column."""
    return cfg, {}


def inputs(cfg: Any) -> dict[str, Path | list[Path]]:
    """The files a model is trained from besides its training images, by name: a
    teacher weights file when ``cfg.weights`` names one (not ``imagenet``,
    ``random``...). Their contents key the run (`fuadnb.experiment.inputs`), so a
    changed file retrains. A method that reads more files (RD-E's texture folder)
    adds its own to these."""
    weights = str(getattr(cfg, "weights", "")).removesuffix(backbones.BN_SUFFIX)
    if weights and weights not in backbones.NAMED_WEIGHTS and Path(weights).is_file():
        return {"teacher_weights": Path(weights)}
    return {}


class Model(nn.Module):
    """Base of every method's model: its Config, and the record of its fit that the
    run cache saves with it (`fuadnb.runs.Cached`).

    A subclass names in ``FROZEN`` the pretrained network that `build(cfg)` restores
    exactly from ``cfg.backbone`` and ``cfg.weights`` (``teacher``, ``expert`` or
    ``extractor``), sets ``RECALIBRATES`` when `fit` re-estimates that network's
    BatchNorm statistics for ``*-bnstats`` weights, and defines `anomaly_map`.
    """

    FROZEN: ClassVar[str] = "teacher"
    RECALIBRATES: ClassVar[bool] = False

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.history: list[float] = []            # mean training loss per epoch
        self.trace: dict[str, np.ndarray] = {}    # per-iteration record, if any
        self.curve: list[dict[str, float]] = []   # the learning-bias curve, if any

    def anomaly_map(self, x: torch.Tensor
                    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S) in [0, 1] -> map (B, 1, S, S), higher = more anomalous; or
        (map, image scores (B,)) when the image score is not the map's maximum."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The pretrained network and its weights (the results rows' ``teacher``)."""
        return self.get_submodule(self.FROZEN).label

    @property
    def reproducible_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes that `build(cfg)` restores exactly, so a run does not
        save them: the ``FROZEN`` network, unless its weights are random or `fit`
        re-estimated its BatchNorm statistics."""
        weights = self.cfg.weights
        if weights == "random" or (self.RECALIBRATES
                                   and backbones.wants_bn_stats(weights)):
            return ()
        return (f"{self.FROZEN}.",)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def eval_batch_size(self) -> int:
        """Images per batch at prediction."""
        return self.cfg.eval_batch_size


def predict(model: Model, images: torch.Tensor, *, progress: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (N,) (the map's max unless ``anomaly_map`` gives its own) and
    maps (N, S, S) of uint8 images (N, 3, S, S)."""
    return engine.predict(model.anomaly_map, images, device=model.device,
                          batch_size=model.eval_batch_size,
                          precision=model.cfg.precision, progress=progress)


def predict_train(model: Model, train_images: torch.Tensor, *,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`predict` of the images `model` was trained on: a trained network scores
    them as any other image (its having fitted them is what a learning-bias filter
    reads). A memory bank leaves each image's own patches out instead
    (`fuadnb.models.patchcore.predict_train`)."""
    return predict(model, train_images, progress=progress)


def score_train(model: Model, train_images: torch.Tensor) -> np.ndarray:
    """Anomaly score of every training image (to rank the contaminating ones): the
    scores of `predict_train`."""
    return predict_train(model, train_images)[0]
