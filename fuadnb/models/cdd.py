"""CDD: Cross-Domain Distillation for fully unsupervised anomaly detection.

Paper: Liu, Wang, Leng, Zhang, "Fence off Anomaly Interference: Cross-Domain
Distillation for Fully Unsupervised Anomaly Detection", arXiv 2508.18007 (2025).
There is no public code and the available text gives no hyper-parameters
(methods.md §4.1-§4.2); **this module is our reconstruction** (§4.3) of what the
abstract states, with every unknown a named option.
Explained in: book/chapters/05_cross_domain_distillation

What the paper states, and how it is built here:

* RD's frozen teacher E and RD students (OCBE + decoder, `fuadnb.models.rd`).
* **Domain-Specific Training (DST)**: the training set is split into K domains; a
  student S_k per domain is trained with RD's loss on its domain only.
* **Cross-Domain Knowledge Aggregation (CDKA)**: a global student G learns from all
  images; the target for an image of domain k is the *pseudo-normal* feature
  aggregated from the students that never saw it (j != k): a student that learned an
  anomaly does not generalise it to other domains (the paper's assumption 2), so
  they reconstruct the normal feature where the image is anomalous.
* Both stages run in every epoch (DST first). Inference is RD's map between E and G.

Our choices where the paper is silent (options, defaults in `Config`): K = 3;
``partition`` "fixed" (random, drawn once: no target ever comes from a student that
trained on the image), "random" (re-drawn every epoch: after the first epoch every
student has seen most images, so it only fences off the current epoch) or "kmeans"
(balanced k-means on pooled teacher features: similar images, and so similar anomaly
types, share a domain and are absent from the others); ``aggregation`` mean or
median of the other students' features; ``teacher_weight`` lambda adds
``lambda * loss(G, E)`` to G's loss (0: the pseudo-normal target only); the same
epochs, optimiser and learning rate as RD for every student. Domain students give
their targets in eval mode (BatchNorm running statistics, so that the batch of other
domains' images does not leak into them). The frozen teacher's features are computed
once and shared by the K + 1 students; the K domain students run one after another
(batching them with ``torch.func`` is possible on a GPU; not measured, none was lent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from fuadnb import engine
from fuadnb.config import check_choice, check_sizes, derive_sigma
from fuadnb.models import base, rd
from fuadnb.nn import blocks, maps

Partition = Literal["fixed", "random", "kmeans"]
Aggregation = Literal["mean", "median"]


@dataclass(frozen=True)
class Config(base.Config):
    """CDD's hyper-parameters: RD's (the baseline the paper builds on) and ours."""

    backbone: str = "wide_resnet50_2"          # paper: frozen WRN-50 (RD's teacher)
    weights: str = "imagenet"
    image_size: int = 256                      # RD's
    epochs: int = 200                          # not published: RD's
    batch_size: int = 16                       # RD's
    lr: float = 0.005                          # RD's, every student
    betas: tuple[float, float] = (0.5, 0.999)  # RD's
    loss: rd.LossKind = "flat"                 # RD's loss for DST and CDKA
    fusion: maps.Fusion = "add"                # RD's map
    sigma: float | None = None                 # RD's: 4 px at 256, scaled
    seed: int = 111
    eval_batch_size: int = 32
    domains: int = 3                           # K, not published (ours)
    partition: Partition = "fixed"             # not published (ours)
    aggregation: Aggregation = "mean"          # not published (ours)
    teacher_weight: float = 0.0                # lambda, not published (ours)

    def __post_init__(self):
        super().__post_init__()
        derive_sigma(self)
        check_sizes(self, ("epochs", "batch_size", "eval_batch_size"))
        if self.domains < 2:
            raise ValueError(f"domains must be >= 2 (a target needs a student that "
                             f"did not see the image), got {self.domains}")
        check_choice(self, "partition", ("fixed", "random", "kmeans"))
        check_choice(self, "aggregation", ("mean", "median"))
        check_choice(self, "loss", ("flat", "pixel"))
        if self.teacher_weight < 0:
            raise ValueError(f"teacher_weight must be >= 0, got {self.teacher_weight}")


# Evaluation-only settings: not in the run key (re-scoring never retrains).
EVALUATION = ("fusion", "sigma", "eval_batch_size")

PROFILES: dict[str, dict] = {
    "paper": {},
    # 128 px: K + 1 students cost ~3x RD per epoch on 2 CPU cores
    "demo": {"backbone": "efficientnet_lite2", "weights": "imagenet",
             "image_size": 128, "epochs": 20},
    "smoke": {"backbone": "efficientnet_lite2", "weights": "imagenet",
              "image_size": 64, "epochs": 2, "batch_size": 8, "domains": 2},
}


config = base.configurator(Config, PROFILES, "CDD")
category_options = base.no_category_options   # nothing depends on the category
locate = base.no_locate                       # nor on where the data is
inputs = base.inputs                           # a weights file, if named
MONITOR = False


class CDD(rd.RD):
    """RD's teacher and, as RD's ``student``, the global student G (the map uses
    these), plus K domain students (``domain_students``, RD students too)."""

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        t = self.teacher
        with torch.random.fork_rng(devices=[]):
            students = []
            for k in range(cfg.domains):
                torch.manual_seed(cfg.seed + 1 + k)
                students.append(blocks.Student(t.channels, t.family, t.signed))
        self.domain_students = nn.ModuleList(students)
        self.domain_history: list[list[float]] = []   # per epoch, per domain


def build(cfg: Config) -> CDD:
    """An untrained CDD; weights and random inits are seeded by ``cfg.seed``."""
    return CDD(cfg)


def pooled(feats: list[torch.Tensor]) -> np.ndarray:
    """Image descriptors for clustering: each scale's features averaged over
    positions and L2-normalised, concatenated -> (N, sum C_i) float64."""
    parts = [torch.nn.functional.normalize(f.float().mean((2, 3)), dim=1)
             for f in feats]
    return torch.cat(parts, 1).cpu().double().numpy()


def balanced_kmeans(x: np.ndarray, k: int, seed: int) -> torch.Tensor:
    """k-means on the rows of `x`, then each row to its nearest centre that still
    has room (at most ceil(N / k) per domain, nearest pairs first), so that no
    domain student is left with a handful of images. Returns (N,) int64 domains."""
    # imported here: sklearn takes about 1 s to import, which every kernel that
    # imports fuadnb (every grid point, any method) would pay
    from sklearn.cluster import KMeans
    n = len(x)
    dist = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x).transform(x)
    capacity = math.ceil(n / k)
    domain = np.full(n, -1)
    sizes = np.zeros(k, int)
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), k)
        if domain[i] < 0 and sizes[j] < capacity:
            domain[i], sizes[j] = j, sizes[j] + 1
    return torch.from_numpy(domain)


def random_split(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """A random partition of ``range(n)`` into `k` domains whose sizes differ by at
    most one: (n,) int64 domains."""
    domain = torch.empty(n, dtype=torch.long)
    domain[torch.randperm(n, generator=generator)] = torch.arange(n) % k
    return domain


def schedule(cfg: Config, n: int, descriptors: np.ndarray | None = None
             ) -> list[torch.Tensor]:
    """The domain of every training image in every epoch (``cfg.epochs`` tensors of
    shape (n,)), drawn from ``cfg.seed`` alone, so that it can be recomputed.

    Args:
        descriptors: (n, D) image descriptors (`pooled`); needed for "kmeans".
    """
    if n < cfg.domains:
        raise ValueError(f"CDD needs at least domains={cfg.domains} training images, "
                         f"got {n}")
    if cfg.partition == "kmeans":
        if descriptors is None:
            raise ValueError("partition='kmeans' needs the image descriptors")
        return [balanced_kmeans(descriptors, cfg.domains, cfg.seed)] * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if cfg.partition == "fixed":
        return [random_split(n, cfg.domains, gen)] * cfg.epochs
    return [random_split(n, cfg.domains, gen) for _ in range(cfg.epochs)]


def aggregate(outputs: torch.Tensor, domain: torch.Tensor, how: Aggregation = "mean"
              ) -> torch.Tensor:
    """The pseudo-normal target of each image from the students of the *other*
    domains.

    Args:
        outputs: (K, B, ...) every domain student's prediction for every image.
        domain: (B,) the domain of each image (its own student is left out).
        how: "mean", or "median" (the lower middle value when K - 1 is even).

    Returns:
        (B, ...) the aggregated features.
    """
    k = outputs.shape[0]
    others = torch.arange(k, device=domain.device)[:, None] != domain[None, :]  # K, B
    others = others.reshape(*others.shape, *[1] * (outputs.dim() - 2))
    if how == "mean":
        return (outputs * others).sum(0) / others.sum(0)
    if how == "median":
        return outputs.masked_fill(~others, float("nan")).nanmedian(0).values
    raise ValueError(f"aggregation must be mean or median, got {how!r}")


@torch.no_grad()
def pseudo_normal(model: CDD, feats_t: list[torch.Tensor], domain: torch.Tensor
                  ) -> list[torch.Tensor]:
    """G's targets for a batch: per scale, `aggregate` of the domain students'
    predictions (students in eval mode) over the domains each image is not in."""
    students = model.domain_students
    modes = [s.training for s in students]
    students.eval()
    with engine.autocast(feats_t[0].device, model.cfg.precision):
        outs = [s(feats_t) for s in students]                  # K x 3 scales
    for s, mode in zip(students, modes, strict=True):
        s.train(mode)
    return [aggregate(torch.stack([o[i].float() for o in outs]), domain,
                      model.cfg.aggregation) for i in range(len(feats_t))]


@torch.no_grad()
def domain_maps(model: CDD, x: torch.Tensor) -> torch.Tensor:
    """RD's map of every domain student for x (B, 3, H, W) -> (K, B, 1, H, W)."""
    with engine.autocast(x.device, model.cfg.precision):
        feats_t = model.teacher(x)
        outs = [s(feats_t) for s in model.domain_students]
    return torch.stack([rd.distance_map(model.cfg, feats_t, o, x.shape[-2:])
                        for o in outs])


def domains(model: CDD, train_images: torch.Tensor) -> torch.Tensor:
    """The domain of each training image in the last epoch, as `fit` drew it
    (recomputed from the seed, and for "kmeans" from the teacher's features)."""
    descriptors = None
    if model.cfg.partition == "kmeans":
        device = next(model.parameters()).device
        descriptors = pooled(engine.frozen_features(
            model.teacher, train_images, batch_size=model.cfg.eval_batch_size,
            device=device, precision=model.cfg.precision))
    return schedule(model.cfg, len(train_images), descriptors)[-1]


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False) -> CDD:
    """Train CDD on uint8 images (N, 3, S, S); returns the last epoch's model, in
    eval mode. Each epoch: DST (every domain student one pass over its domain), then
    CDKA (the global student one pass over all images against `pseudo_normal`
    targets). The teacher's features are computed once for all K + 1 students."""
    n = len(train_images)
    model = engine.prepare(build(cfg), device, cfg.precision)
    feats = rd.teacher_features(model, train_images, device=device, progress=progress)
    plan = schedule(cfg, n, pooled(feats) if cfg.partition == "kmeans" else None)
    adam = {"lr": cfg.lr, "betas": cfg.betas}
    opts = [torch.optim.Adam(s.parameters(), **adam) for s in model.domain_students]
    opt_g = torch.optim.Adam(model.student.parameters(), **adam)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    bar = tqdm(plan, desc=f"CDD {cfg.backbone} K={cfg.domains}", disable=not progress)
    for domain_of in bar:
        domain_of = domain_of.to(device)
        losses = []
        for k, (student, opt) in enumerate(zip(model.domain_students, opts,
                                               strict=True)):        # DST
            members = torch.nonzero(domain_of == k).squeeze(1)
            total = torch.zeros((), device=device)
            for b in engine.batches(len(members), cfg.batch_size, generator=gen):
                ft = [f[members[b.to(device)]] for f in feats]
                total += _step(opt, student, ft, ft, cfg) * len(b)
            losses.append(total.item() / len(members))
        model.domain_history.append(losses)
        total = torch.zeros((), device=device)
        for idx in engine.batches(n, cfg.batch_size, generator=gen):   # CDKA
            idx = idx.to(device)
            ft = [f[idx] for f in feats]
            target = pseudo_normal(model, ft, domain_of[idx])
            total += _step(opt_g, model.student, ft, target, cfg,
                           cfg.teacher_weight) * len(idx)
        model.history.append(total.item() / n)
        bar.set_postfix(loss=f"{model.history[-1]:.4f}")
    return model.eval()


def _step(opt: torch.optim.Optimizer, student, feats_t: list[torch.Tensor],
          target: list[torch.Tensor], cfg: Config, teacher_weight: float = 0.0
          ) -> torch.Tensor:
    """One Adam step of `student` on RD's loss against `target` (plus
    ``teacher_weight`` x RD's loss against the teacher); returns the detached loss."""
    with engine.autocast(feats_t[0].device, cfg.precision):
        out = student(feats_t)
        batch_loss = rd.loss(target, out, cfg.loss)
        if teacher_weight:
            batch_loss = batch_loss + teacher_weight * rd.loss(feats_t, out, cfg.loss)
    opt.zero_grad(set_to_none=True)
    batch_loss.backward()
    opt.step()
    return batch_loss.detach()


def budget(cfg: Config, n_train: int) -> base.Budget:
    """Optimiser steps and images processed by one student (the global one: one
    pass over all images per epoch)."""
    return base.epoch_budget(n_train, cfg.batch_size, cfg.epochs)


# The map, scores and training-image scores are RD's, with the global student.
anomaly_map = rd.anomaly_map
predict = base.predict
predict_train = base.predict_train
score_train = base.score_train
