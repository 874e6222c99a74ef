"""LLB: filter the training set by learning bias, then train the detector on what is
left. A strategy around any registered method, not a detector.

Paper: Zhang, Cao, Cheng, Sun, Shen, "Leveraging Learning Bias for Noisy Anomaly
Detection", arXiv 2508.07441. Reference code: LLBNAD (methods.md §6):
trainer/dinomaly_trainer.py L327-L463 (the two stages), data/__init__.py L79-L161
(the split), util/compute_am.py L54-L64 (image score).
Explained in: book/chapters/07_llb_filtering

* **Stage 1**: split the training images into K subsets (a random permutation cut
  into K chunks of floor(N/K), the last one taking the rest); train a fresh
  sub-model of the method on each; score every training image with every sub-model
  (image score: the mean of the top 1 % of the map, as the code; "max" as an
  option; the images a sub-model was fitted on held out where the method can, see
  below); aggregate per image (mean; max and max x variance as options), with or
  without the sub-model fitted on the image's own subset (the code: with).
* **Purify**: keep the floor(keep x N) lowest aggregated scores (the released config:
  keep 0.2).
* **Stage 2**: train the method on the kept images; evaluate as usual.

`fit` runs the three steps for `fuadnb.experiment.run`, stage 1 cached in its own run
folder apart from ``keep`` (so other keep fractions reuse it); `report` gives the
results row its columns (`filter_metrics`, both stages' time and schedule).

Image *ids* travel from scoring to selection. The reference indexes the permuted set
twice (``Subset(Subset(base, pi), pi[chunk])`` for scoring, ``Subset(train_set,
top)`` for selection), so its scores and kept images refer to different files unless
``pi o pi = pi`` (methods.md §6.2); here every score is stored next to the id it
belongs to and selection returns ids.

Every sub-model uses the method's own Config with two changes, `sub_config`:

* **its own seed**: the reference builds a freshly initialised model for every
  subset, so sub-model k gets ``seed + seed_stride x (k + 1)`` (its initialisation
  and its batch order; the stage-2 model keeps the run's seed). ``seed_stride=0``
  shares one seed, this module's earlier behaviour;
* **its own schedule**, ``sub_steps`` optimiser steps (`with_steps`), not the
  method's whole schedule: the reference trains each sub-model for ``iteration``
  steps of batch 16 whatever the subset's size (trainer/dinomaly_trainer.py L343,
  ``while self.iter < self.iteration``; configs/benchmark/dinomaly/dinomaly_100e.py
  L27, ``iteration = 10  # 1000``: 10 in the released smoke config, 1000 in its
  comment), then stage 2 for its own epochs. Profiles: ``paper`` 1000 (the
  comment's value); ``demo`` 400, measured as every demo budget is (RD on each of
  the three subsets of clean grass at 64 px, 33-34 images, trained 1200 steps: its
  loss made 90 % of its fall by step 231-357, as RD's on all of grass by ~350; on
  clean coin's subsets by 48-66;
  benchmarks/llb_substeps.py, benchmarks/results/llb_substeps_64px_demo.csv); the
  same 400 steps as RD's demo budget; ``smoke`` 2. ``sub_steps=0`` gives
  every sub-model the method's whole schedule, this module's earlier behaviour. A
  method without a training loop (PatchCore, SoftPatch) ignores it.

Each sub-model computes the frozen teacher's features of its own subset once, so
stage-1 training runs the teacher once per training image; scoring runs it K times
per image.

**Held-out scoring of the images a sub-model was fitted on.** Sub-model k scores the
other subsets with ``method.predict`` and its own subset with ``method.predict_train``
(the method's scoring of its own training images, the one ``score_train`` uses).
For a trained network the two are the same prediction, as in the reference, whose
learning bias is the signal (the sub-model has fitted the normal images of its
subset better than the anomalous ones). For a memory bank (PatchCore, SoftPatch)
the bank holds the image's own patches, so ``predict`` lowers the score of every
image of the subset (to zero with a full bank, whatever the image shows; a
contaminating image's defect patches are among the first the greedy coreset
picks); ``predict_train`` leaves the
image (and identical copies of it) out of the bank, so each image is scored by
patches of images other than itself. ``own_subset=False`` leaves the image's own
sub-model out of the aggregate altogether.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch

from fuadnb import metrics, runs
from fuadnb.config import check_choice, from_profile
from fuadnb.models import base

Aggregation = Literal["mean", "max", "maxvar"]
ImageScore = Literal["top", "max"]


@dataclass(frozen=True)
class Config:
    """LLB's options; defaults are the released code's."""

    subsets: int = 3                  # subset_num
    keep: float = 0.2                 # threshold: the kept share of the training set
    aggregation: Aggregation = "mean"  # max and max*var are commented out in the code
    own_subset: bool = True           # a sub-model also scores the subset it saw
    image_score: ImageScore = "top"   # mean of the top `top_ratio` of the map
    top_ratio: float = 0.01           # max_ratio
    seed_stride: int = 1000           # sub-model k: seed + stride (k + 1) (ours)
    sub_steps: int = 1000             # iteration = 10 (# 1000); 0: the method's

    def __post_init__(self):
        if self.subsets < 2:
            raise ValueError(f"subsets must be >= 2, got {self.subsets}")
        if not 0 < self.keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")
        check_choice(self, "aggregation", ("mean", "max", "maxvar"))
        check_choice(self, "image_score", ("top", "max"))
        if not 0 < self.top_ratio <= 1:
            raise ValueError(f"top_ratio must be in (0, 1], got {self.top_ratio}")
        if self.seed_stride < 0:
            raise ValueError(f"seed_stride must be >= 0, got {self.seed_stride}")
        if self.sub_steps < 0:
            raise ValueError(f"sub_steps must be >= 0 (0: the method's schedule), "
                             f"got {self.sub_steps}")


# The sub-models' schedule per profile (the run's profile; see the module docstring).
PROFILES: dict[str, dict] = {"paper": {}, "demo": {"sub_steps": 400},
                             "smoke": {"sub_steps": 2}}


def config(profile: str = "paper", **overrides: Any) -> Config:
    """LLB's Config in the run's `profile` with `overrides` (None values are
    ignored); an unknown name or a wrong type is one clear ValueError."""
    return from_profile(Config, PROFILES, profile, "LLB", **overrides)


def partition(n: int, k: int, seed: int) -> np.ndarray:
    """The subset of each of `n` images (n,): a seeded random permutation cut into
    `k` chunks of ``n // k`` positions, the last chunk taking the remainder.
    Every subset holds at least two images, so that a sub-model can score each of
    its own images held out (a memory bank without the image)."""
    if n < 2 * k:
        raise ValueError(f"LLB needs at least 2 x subsets = {2 * k} training images "
                         f"(two per subset, so each can be scored held out), got {n}; "
                         "lower llb.subsets")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    subset = np.empty(n, dtype=np.int64)
    size = n // k
    for j in range(k):
        stop = (j + 1) * size if j < k - 1 else n
        subset[order[j * size:stop]] = j
    return subset


def sub_config(method_cfg: Any, k: int, cfg: Config) -> Any:
    """The method's Config for sub-model `k` (0-based): its seed moved to
    ``seed + seed_stride x (k + 1)``, so every sub-model starts from its own random
    initialisation and batch order."""
    return dataclasses.replace(method_cfg, seed=method_cfg.seed
                               + cfg.seed_stride * (k + 1))


def with_steps(method: ModuleType, method_cfg: Any, steps: int, n_train: int
               ) -> Any:
    """`method_cfg` training for `steps` optimiser steps on `n_train` images, set
    through the Config's schedule field: ``steps`` (exact), ``iterations`` (exact:
    ``whole_epochs`` off), or ``epochs`` (the fewest whole epochs that reach
    `steps`, by ``method.budget``). `method_cfg` itself when `steps` is 0 or the
    method has no training loop (no such field)."""
    fields = {f.name for f in dataclasses.fields(method_cfg)}
    if not steps:
        return method_cfg
    if "steps" in fields:
        return dataclasses.replace(method_cfg, steps=steps)
    if "iterations" in fields:
        exact = {"whole_epochs": False} if "whole_epochs" in fields else {}
        return dataclasses.replace(method_cfg, iterations=steps, **exact)
    if "epochs" in fields:
        per_epoch = method.budget(dataclasses.replace(method_cfg, epochs=1),
                                  n_train).steps
        return dataclasses.replace(method_cfg, epochs=max(1, -(-steps // per_epoch)))
    return method_cfg


def image_scores(maps: np.ndarray, cfg: Config) -> np.ndarray:
    """(N, H, W) maps -> (N,) scores: the mean of the top ``top_ratio`` of each map
    (at least one pixel), or its max."""
    flat = maps.reshape(len(maps), -1)
    if cfg.image_score == "max":
        return flat.max(1).astype(np.float64)
    top = max(1, int(flat.shape[1] * cfg.top_ratio))
    return np.sort(flat, axis=1)[:, -top:].mean(1, dtype=np.float64)


def aggregate(sub_scores: np.ndarray, subset: np.ndarray, cfg: Config) -> np.ndarray:
    """(K, N) scores of every sub-model -> (N,): mean, max, or max x variance over
    the sub-models (without the image's own one unless ``own_subset``)."""
    k, n = sub_scores.shape
    use = np.ones((k, n), bool) if cfg.own_subset else \
        np.arange(k)[:, None] != subset[None, :]
    s = np.where(use, sub_scores, np.nan)
    if cfg.aggregation == "mean":
        return np.nanmean(s, 0)
    if cfg.aggregation == "max":
        return np.nanmax(s, 0)
    return np.nanmax(s, 0) * np.nanvar(s, 0)


def purify(ids: np.ndarray, scores: np.ndarray, keep: float) -> np.ndarray:
    """The ids of the ``floor(keep x N)`` (at least one) lowest-scoring images, in
    ascending score (ties: the earlier position first)."""
    ids, scores = np.asarray(ids), np.asarray(scores)
    if ids.shape != scores.shape:
        raise ValueError(f"ids {ids.shape} and scores {scores.shape} differ")
    n_keep = max(1, int(keep * len(ids)))
    return ids[np.argsort(scores, kind="stable")[:n_keep]]


@dataclass
class Stage1:
    """Stage 1's record, aligned with `ids` (the training images in split order)."""

    ids: np.ndarray          # (N,) str
    subset: np.ndarray       # (N,) int
    sub_scores: np.ndarray   # (K, N) every sub-model's score of every image
    scores: np.ndarray       # (N,) aggregated
    seconds: float
    sub_budget: np.ndarray   # (K, 2) every sub-model's optimiser steps, images seen

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ids": self.ids.astype(str), "subset": self.subset,
                "sub_scores": self.sub_scores, "scores": self.scores,
                "seconds": np.array(self.seconds), "sub_budget": self.sub_budget}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Stage1:
        return cls(a["ids"], a["subset"], a["sub_scores"], a["scores"],
                   float(a["seconds"]), a["sub_budget"])


def stage1(method: ModuleType, method_cfg: Any, images: torch.Tensor,
           ids: np.ndarray, cfg: Config, *, seed: int, device: torch.device,
           progress: bool = False) -> Stage1:
    """Train one sub-model of `method` per subset, for ``cfg.sub_steps`` steps
    (`with_steps`), and score every image with each: the other subsets with
    ``method.predict``, its own with ``method.predict_train`` (held out where the
    method can: a memory bank leaves the image's own patches out).

    Args:
        method: a registered method module (``fit``, ``predict``,
            ``predict_train``, ``budget``).
        images: uint8 (N, 3, S, S), aligned with `ids`.
    """
    start = time.perf_counter()
    subset = partition(len(ids), cfg.subsets, seed)
    sub_scores = np.empty((cfg.subsets, len(ids)))
    sub_budget = np.empty((cfg.subsets, 2), np.int64)
    for j in range(cfg.subsets):
        own, others = np.flatnonzero(subset == j), np.flatnonzero(subset != j)
        sub_cfg = with_steps(method, sub_config(method_cfg, j, cfg), cfg.sub_steps,
                             len(own))
        sub_budget[j] = method.budget(sub_cfg, len(own))
        own_images = images[torch.from_numpy(own).to(images.device)]
        sub_model = method.fit(sub_cfg, own_images, device=device,
                               progress=progress)
        _, maps = method.predict(sub_model, images[torch.from_numpy(others).to(
            images.device)], progress=progress)
        sub_scores[j, others] = image_scores(maps, cfg)
        _, maps = method.predict_train(sub_model, own_images, progress=progress)
        sub_scores[j, own] = image_scores(maps, cfg)
    return Stage1(np.asarray(ids).astype(str), subset, sub_scores,
                  aggregate(sub_scores, subset, cfg), time.perf_counter() - start,
                  sub_budget)


def fit(method: ModuleType, spec: runs.RunSpec, train_images: torch.Tensor,
        train_ids: np.ndarray, *, device: torch.device, progress: bool = False
        ) -> base.Model:
    """LLB around `method` for the run `spec` (``spec.strategy``: this Config): stage
    1 (cached in a run folder of its own, keyed without ``keep``, so other keep
    fractions reuse it), purification by id, stage 2 on the kept images. The model
    carries the stage-1 record and the kept mask as ``trace`` (`Stage1.arrays`, plus
    ``kept`` (N,) bool and ``stage2_seconds``)."""
    cfg = spec.strategy
    stage_spec = dataclasses.replace(spec, method=f"{spec.method}-stage1",
                                     strategy=dataclasses.replace(cfg, keep=1.0))
    record = Stage1.from_arrays(runs.load_or_compute(
        stage_spec.dir / "stage1.npz",
        lambda: stage1(method, spec.cfg, train_images, train_ids, cfg,
                       seed=spec.seed, device=device, progress=progress).arrays()))
    if not np.array_equal(record.ids, train_ids):
        raise RuntimeError(f"{stage_spec.dir}: stage-1 ids do not match the split; "
                           "delete the folder to recompute")
    kept = np.isin(train_ids, purify(record.ids, record.scores, cfg.keep))
    start = time.perf_counter()
    positions = torch.from_numpy(np.flatnonzero(kept)).to(train_images.device)
    model = method.fit(spec.cfg, train_images[positions], device=device,
                       progress=progress)
    model.trace = record.arrays() | {
        "kept": kept, "stage2_seconds": np.array(time.perf_counter() - start)}
    return model


def report(method: ModuleType, cfg: Any, model: base.Model,
           train_injected: np.ndarray) -> tuple[base.Budget, float, dict[str, float]]:
    """What a results row records of a `fit` (`model.trace`) on the training images
    flagged by `train_injected`: the schedule (every stage-1 sub-model's fit on its
    subset, plus stage 2 on the kept images), the seconds of both stages (stage 1's
    as computed, also when its cache was reused) and `filter_metrics`."""
    found = filter_metrics(model.trace, train_injected)
    seconds = float(model.trace["seconds"] + model.trace["stage2_seconds"])
    return (budget(method, cfg, model.trace["sub_budget"], found["n_kept"]),
            seconds, found)


def budget(method: ModuleType, cfg: Any, sub_budget: np.ndarray, n_kept: int
           ) -> base.Budget:
    """The whole schedule of LLB around `method`: the stage-1 sub-models' fits
    (`sub_budget` (K, 2): each one's steps and images seen, `Stage1.sub_budget`)
    plus stage 2 (`cfg`, the method's own schedule) on `n_kept` images."""
    stage2 = method.budget(cfg, int(n_kept))
    total = np.asarray(sub_budget, np.int64).sum(0)
    return base.Budget(int(total[0]) + stage2.steps,
                       int(total[1]) + stage2.images_seen)


def filter_metrics(trace: dict[str, np.ndarray], is_injected: np.ndarray
                   ) -> dict[str, float]:
    """How well stage 1 found the injected images (`trace`: `Stage1.arrays` plus
    ``kept`` (N,) bool, aligned with `is_injected`): the contamination-detection
    AUROC of the aggregated scores, the share of injected images among the kept
    ones, and recall / precision of the removed set as a detector of them."""
    inj, kept = np.asarray(is_injected, bool), np.asarray(trace["kept"], bool)
    removed = ~kept
    return {"filter_auroc": metrics.detection_auroc(inj, trace["scores"])
            if inj.any() else np.nan,
            "n_kept": int(kept.sum()),
            "kept_injected": float(inj[kept].mean()),
            "filter_recall": float(removed[inj].mean()) if inj.any() else np.nan,
            "filter_precision": float(inj[removed].mean()) if removed.any()
            else np.nan}
