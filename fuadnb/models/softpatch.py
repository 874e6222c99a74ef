"""SoftPatch: PatchCore with a patch-level noise discriminator. Outlying training
patches are kept out of the memory bank (hard filtering) and the bank patches'
outlier scores re-weight the test distances (soft weighting).

Paper: Jiang et al., "SoftPatch: Unsupervised Anomaly Detection with Noisy Data",
NeurIPS 2022. Reference code: TencentYoutuResearch/AnomalyDetection-SoftPatch@f8dc3e0
(methods.md §7): src/softpatch.py L174-L205 (``_fill_memory_bank``: threshold,
sampling weight, clamp), L207-L249 (``_compute_patch_weight``: random projection to
128 dims, one discriminator per spatial position), L274-L335 (``lof``, ``nearest``),
L251-L272 and src/multi_variate_gaussian.py (``gaussian``), L363-L380 (soft
weighting), src/sampler.py L160-L170 (the filtered patches get sampling weight 0).
Explained in: book/chapters/03_memory_bank

For every spatial position j of the training images' patch grid, the features of
position j in all N training images (projected to ``projection_dim``) go to a
discriminator that scores each of the N patches:

* ``lof`` (the default): the Local Outlier Factor with k neighbours (sklearn's
  ``LocalOutlierFactor(n_neighbors=k).negative_outlier_factor_``, negated).
  The command line's ``--lof_k 6`` never reaches the model (``LOF_k=`` vs
  ``lof_k``, methods.md pitfall 17), so the code runs k = 5;
* ``nearest``: the distance to the nearest other image's patch at j, plus 1;
* ``gaussian``: the Mahalanobis distance to the Gaussian of position j (covariance
  with ddof 1, + 0.01 I), plus 1.

Patches scoring above the ``1 - threshold`` quantile of all scores (tau = 0.15) never
enter the coreset; the scores, clamped at 0, are the bank weights: a test patch's
score is its squared distance to the nearest bank patch times that patch's weight.

Deliberate deviations: those of `fuadnb.models.patchcore`; LOF is computed in torch
(exact, on the device) instead of sklearn; the discriminator's random projection
comes from a generator seeded by ``cfg.seed + 1``, so it differs from the coreset's
as in the reference (which draws a fresh ``nn.Linear`` from the global RNG each
time). With nothing filtered and no soft weights SoftPatch builds PatchCore's bank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from fuadnb.config import check_choice
from fuadnb.models import base, patchcore
from fuadnb.models.patchcore import (
    MONITOR,
    PatchCore,
    anomaly_map,
    budget,
    build,
    category_options,
    inputs,
    locate,
    predict,
    predict_train,
    score_train,
)

__all__ = ["Config", "PROFILES", "EVALUATION", "MONITOR", "config", "build", "fit",
           "predict", "predict_train", "score_train", "budget", "category_options",
           "locate", "inputs", "anomaly_map", "lof", "nearest_other", "gaussian",
           "bank_weights"]

Discriminator = Literal["lof", "nearest", "gaussian"]


@dataclass(frozen=True)
class Config(patchcore.Config):
    """SoftPatch's hyper-parameters: PatchCore's plus the noise discriminator's."""

    discriminator: Discriminator = "lof"   # main.py L47 --weight_method lof
    lof_k: int = 5                         # softpatch.py L39 (the CLI's 6 is lost)
    threshold: float = 0.15                # main.py L48 --threshold (tau)
    soft_weight: bool = True               # main.py L50 (not --without_soft_weight)

    def __post_init__(self):
        super().__post_init__()
        check_choice(self, "discriminator", ("lof", "nearest", "gaussian"))
        if self.lof_k < 1:
            raise ValueError(f"lof_k must be >= 1, got {self.lof_k}")
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")


PROFILES = patchcore.PROFILES
EVALUATION = patchcore.EVALUATION   # not in the run key


config = base.configurator(Config, PROFILES, "SoftPatch")


def _pairwise(x: torch.Tensor) -> torch.Tensor:
    """(P, N, d) -> (P, N, N) Euclidean distances, the diagonal (self) inf."""
    sq = (x * x).sum(-1)
    d = (sq[..., :, None] - 2 * x @ x.transpose(1, 2) + sq[..., None, :])
    eye = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
    return d.clamp_min(0).sqrt().masked_fill(eye, torch.inf)


def lof(x: torch.Tensor, k: int) -> torch.Tensor:
    """Local Outlier Factor of every row of each group: x (P, N, d) -> (P, N), as
    sklearn's ``-LocalOutlierFactor(n_neighbors=k).fit(x[p]).negative_outlier_factor_``
    (k clipped to N - 1 as sklearn does; lrd = 1 / (mean reach distance + 1e-10))."""
    k = min(k, x.shape[1] - 1)
    dist, nbr = _pairwise(x).topk(k, dim=-1, largest=False)      # (P, N, k) sorted
    k_dist = dist[..., -1]                                         # (P, N)
    reach = torch.maximum(dist, k_dist.gather(1, nbr.flatten(1)).view_as(dist))
    lrd = 1 / (reach.mean(-1) + 1e-10)
    return lrd.gather(1, nbr.flatten(1)).view_as(dist).mean(-1) / lrd


def nearest_other(x: torch.Tensor) -> torch.Tensor:
    """(P, N, d) -> (P, N): 1 + the distance to the nearest other row of the group
    (softpatch.py L274-L281: the two smallest distances, self included, summed)."""
    return 1 + _pairwise(x).amin(-1)


def gaussian(x: torch.Tensor) -> torch.Tensor:
    """(P, N, d) -> (P, N): 1 + the Mahalanobis distance of each row to its group's
    Gaussian (mean; covariance with ddof 1 plus 0.01 I; multi_variate_gaussian.py)."""
    x = x.double()
    delta = x - x.mean(1, keepdim=True)
    cov = delta.transpose(1, 2) @ delta / (x.shape[1] - 1)
    cov = cov + 0.01 * torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    maha = ((delta @ torch.linalg.inv(cov)) * delta).sum(-1)
    return (1 + maha.clamp_min(0).sqrt()).float()


DISCRIMINATORS = {"lof": None, "nearest": nearest_other, "gaussian": gaussian}


def outlier_scores(feats: torch.Tensor, cfg: Config) -> torch.Tensor:
    """feats (N, P, D) -> (N, P): each patch's score among the N patches at its
    position, on a random projection to ``projection_dim``; positions are processed
    in blocks of at most ``cfg.block`` pairwise distances."""
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = patchcore.project(feats, cfg.projection_dim, gen).transpose(0, 1)  # P, N, d
    n = x.shape[1]
    step = max(1, cfg.block // (n * n))
    score = DISCRIMINATORS[cfg.discriminator] or (lambda g: lof(g, cfg.lof_k))
    return torch.cat([score(g) for g in x.split(step)]).T


def bank_weights(scores: torch.Tensor, threshold: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Outlier scores (any shape) -> flat weights clamped at 0 and the kept mask:
    a patch is filtered when its score exceeds the ``1 - threshold`` quantile
    (torch.quantile, linear; softpatch.py L192-L198)."""
    flat = scores.flatten().float()
    cut = torch.quantile(flat, 1 - threshold)
    return flat.clamp_min(0), flat <= cut


def discriminate(model: PatchCore, feats: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """SoftPatch's `patchcore.Weigher`: bank weights (1 without soft weighting),
    the kept mask, and the trace ``patch_score`` (N, P) and ``kept`` (N, P)."""
    cfg = model.cfg
    scores = outlier_scores(feats, cfg)
    weight, keep = bank_weights(scores, cfg.threshold)
    if not cfg.soft_weight:
        weight = torch.ones_like(weight)
    return weight, keep, {"patch_score": scores.cpu().numpy(),
                          "kept": keep.reshape(scores.shape).cpu().numpy()}


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False) -> PatchCore:
    """Build SoftPatch's weighted, filtered bank from uint8 images (N, 3, S, S);
    ``model.trace`` holds ``coreset``, ``patch_score`` and ``kept``."""
    return patchcore.fit(cfg, train_images, device=device, progress=progress,
                         weigh=discriminate)
