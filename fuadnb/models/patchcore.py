"""PatchCore: a memory bank of locally aggregated patch features of a frozen CNN,
subsampled by greedy k-centre; a patch's anomaly score is its distance to the nearest
bank patch. No training loop: `fit` builds the bank.

Paper: Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR
2022. Reference code: PatchCore as vendored in SoftPatch
(TencentYoutuResearch/AnomalyDetection-SoftPatch@f8dc3e0, methods.md §7):
src/softpatch.py L26-L93 (settings), L102-L156 (``_embed``: patchify, upsample,
project), L487-L496 (image score = max patch score); src/common.py L149-L187
(``MeanMapper``/``Aggregator``: adaptive average pooling to 1024 dims), L190-L212
(map: bilinear, align_corners=False, Gaussian sigma 4), L14-L90 and L338-L357 (faiss
``IndexFlatL2``: *squared* L2 distance to the nearest bank patch); src/sampler.py
L40-L98 and L118-L175 (approximate greedy coreset: random projection to 128 dims,
10 random starting points).
Explained in: book/chapters/03_memory_bank

Steps, for an image x (B, 3, S, S):

1. the backbone's two middle taps (WRN-50-2 layer2 + layer3, strides 8 and 16;
   offline: EfficientNet-Lite2 stages 2 and 4);
2. each tap's 3x3 neighbourhood of every position, unfolded (zero padding), the
   deeper tap's bilinearly upsampled to the stride-8 grid;
3. per tap, the flattened (C, 3, 3) neighbourhood adaptive-average-pooled to
   ``pretrain_dim``; the taps stacked and pooled again to ``target_dim`` (when
   ``pretrain_dim`` = C this is exactly a 3x3 average pool with zero padding);
4. fit: the greedy k-centre coreset (``coreset_ratio`` of all training patches)
   on a random projection to ``projection_dim``;
5. predict: each patch's squared L2 distance to its nearest bank patch (exact, in
   blocks of bounded memory), times the bank patch's weight (1 here; SoftPatch's
   noise weights in `fuadnb.models.softpatch`); map bilinear to S, Gaussian-smoothed;
   image score = max patch score (before smoothing).

Preprocessing: the ``paper`` profile resizes the shorter side to ``load_size`` 256
and centre-crops ``image_size`` 224, images and masks alike (Resize(256) +
CenterCrop(224) in src/datasets/mvtec.py L76-L89; patchcore-inspection@fcaa92f
datasets/mvtec.py L75-L84), so the map and the pixel metrics cover the crop, not the
border. The CPU profiles (``demo``, ``smoke``) resize the whole image (``load_size``
0) and share the test set with RD in the chapter.

Deliberate deviations:
* Masks are binarised, resized bilinearly and thresholded at 0.5 (the book's one
  rule, `fuadnb.data.images`); the reference resizes the 0/255 mask bilinearly
  and keeps the interpolated values.
* Exact nearest neighbours in torch (chunked matmul), not faiss; same squared L2.
* The coreset's random projection and starting points come from generators seeded
  by ``cfg.seed`` (the reference uses the global torch/numpy RNGs).
* A patch excluded from the coreset (SoftPatch's filter) is never picked, the first
  pick included (the reference weights only the distances to chosen centres, so
  its first pick, the patch farthest on average from the starting points, is not
  filtered).
* ``predict_train`` and ``score_train`` exclude an image's own patches from the bank
  (leave-one-image-out: a training image whose patches are in the bank would
  otherwise score about 0 on them; LLB's stage 1 scores each sub-model's own subset
  this way); the bank remembers each patch's source image and each training image's
  fingerprint (a hash of its pixels), so an image is scored against the patches of
  the training images that differ from it (identical copies are left out together).
* Offline profiles: the EfficientNet-Lite2 ImageNet backbone of
  `fuadnb.nn.backbones`, with ``pretrain_dim`` = ``target_dim`` = its deeper tap's
  120 channels (the reference's 1024 = WRN-50-2 layer3's channels).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fuadnb import engine
from fuadnb.config import check_sizes, derive_sigma
from fuadnb.models import base
from fuadnb.nn import backbones, maps

# SoftPatch's discriminator: (model, feats (N, P, D)) -> (weight, keep, trace)
Weigher = Callable[[nn.Module, torch.Tensor],
                   tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Config(base.Config):
    """PatchCore's hyper-parameters; defaults are SoftPatch's released PatchCore."""

    backbone: str = "wide_resnet50_2"   # main.py L39 (wideresnet50), layer2 + layer3
    weights: str = "imagenet"
    image_size: int = 224               # mvtec.py L76-L89: CenterCrop 224
    load_size: int = 256                # mvtec.py L76-L89: Resize 256 (0: none)
    patch_size: int = 3                 # softpatch.py L35: PatchMaker(3, stride 1)
    pretrain_dim: int = 1024            # L33 pretrain_embed_dimension
    target_dim: int = 1024              # L34 target_embed_dimension
    coreset_ratio: float = 0.1          # main.py L43 --sampling_ratio
    projection_dim: int = 128           # sampler.py L44 dimension_to_project_..
    starting_points: int = 10           # sampler.py L123 number_of_starting_points
    sigma: float | None = None          # common.py L194: 4 px at 224, scaled
    seed: int = 0                       # main.py L33 --seed 0
    batch_size: int = 8                 # main.py L56: feature extraction batch
    block: int = 1 << 24                # distance-matrix entries per block (ours)

    def __post_init__(self):
        super().__post_init__()
        derive_sigma(self, native=224)
        check_sizes(self, ("batch_size", "patch_size", "pretrain_dim", "target_dim",
                           "projection_dim", "starting_points", "block"))
        if self.patch_size % 2 == 0:
            raise ValueError(f"patch_size must be odd, got {self.patch_size}")
        if not 0 < self.coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got "
                             f"{self.coreset_ratio}")


# Evaluation-only or result-invariant settings (exact blocking): not in the run key.
EVALUATION = ("sigma", "block")

# A profile is only a set of values; the code path is the same. Offline: the
# EfficientNet-Lite2 backbone, its deeper tap's 120 channels as both dimensions.
PROFILES: dict[str, dict] = {
    "paper": {},
    "demo": {"backbone": "efficientnet_lite2", "weights": "imagenet",
             "image_size": 128, "load_size": 0, "pretrain_dim": 120,
             "target_dim": 120},
    "smoke": {"backbone": "efficientnet_lite2", "weights": "imagenet",
              "image_size": 64, "load_size": 0, "pretrain_dim": 120,
              "target_dim": 120},
}


config = base.configurator(Config, PROFILES, "PatchCore")
category_options = base.no_category_options   # nothing depends on the category
locate = base.no_locate                       # nor on where the data is
inputs = base.inputs                           # a weights file, if named
MONITOR = False


class PatchCore(base.Model):
    """The frozen backbone (``extractor``) and the memory bank; no training loss
    (``history`` stays empty), ``trace``: see `fit`.

    Buffers (saved with a run): ``bank`` (M, D) features, ``bank_weight`` (M,) the
    factor on a distance to each bank patch (1 for PatchCore), ``bank_image`` (M,)
    the training image each came from, ``fingerprints`` (N,) the training images'
    pixel hashes (`fingerprint`).
    """

    FROZEN = "extractor"
    RECALIBRATES = True   # ``*-bnstats`` weights: see `fit`

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.extractor = backbones.build(cfg.backbone, cfg.weights, seed=cfg.seed)
        self.register_buffer("bank", torch.empty(0, cfg.target_dim))
        self.register_buffer("bank_weight", torch.empty(0))
        self.register_buffer("bank_image", torch.empty(0, dtype=torch.long))
        self.register_buffer("fingerprints", torch.empty(0, dtype=torch.long))

    @property
    def device(self) -> torch.device:
        return self.bank.device

    @property
    def eval_batch_size(self) -> int:
        return self.cfg.batch_size   # the reference's feature-extraction batch

    def anomaly_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return anomaly_map(self, x)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the bank's size is known only from the saved state
        for name in ("bank", "bank_weight", "bank_image", "fingerprints"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def build(cfg: Config) -> PatchCore:
    """A PatchCore with an empty bank."""
    return PatchCore(cfg)


def aggregate(feats: list[torch.Tensor], cfg: Config) -> torch.Tensor:
    """The reference's ``_embed`` after the backbone (softpatch.py L118-L153).

    Args:
        feats: the taps, finest first, [(B, C_i, H_i, W_i)].

    Returns:
        (B, P, target_dim) patch features, P = H_0 * W_0 in row-major order.
    """
    k = cfg.patch_size
    b, _, h, w = feats[0].shape
    layers = []
    for f in feats:
        c = f.shape[1]
        u = F.unfold(f.float(), k, padding=k // 2)             # B, C*k*k, H_i*W_i
        u = u.reshape(b, c * k * k, *f.shape[-2:])
        if f.shape[-2:] != (h, w):                             # deeper tap: upsample
            u = F.interpolate(u, size=(h, w), mode="bilinear", align_corners=False)
        u = u.flatten(2).transpose(1, 2).reshape(-1, 1, c * k * k)   # B*P, 1, C*k*k
        layers.append(F.adaptive_avg_pool1d(u, cfg.pretrain_dim))    # MeanMapper
    stacked = torch.cat(layers, 2)                             # B*P, 1, L*pretrain
    return F.adaptive_avg_pool1d(stacked, cfg.target_dim).reshape(b, h * w, -1)


def embed(model: PatchCore, x: torch.Tensor) -> torch.Tensor:
    """x (B, 3, S, S) in [0, 1] -> (B, P, D) float32 patch features, P = (S/8)^2."""
    with torch.no_grad(), engine.autocast(x.device, model.cfg.precision):
        _, f2, f3 = model.extractor(x)
    return aggregate([f2, f3], model.cfg)


@torch.no_grad()
def embed_all(model: PatchCore, images: torch.Tensor, *, device: torch.device,
              progress: bool = False) -> torch.Tensor:
    """The patch features of every uint8 image, (N, P, D) float32 on `device`."""
    order = tqdm(list(engine.batches(len(images), model.cfg.batch_size)),
                 desc="patch features", disable=not progress, leave=False)
    return torch.cat([embed(model, engine.inputs(images, idx, device,
                                                 model.cfg.precision))
                      for idx in order])


def project(x: torch.Tensor, dim: int, generator: torch.Generator) -> torch.Tensor:
    """The reference's ``_reduce_features``: a random bias-free linear map to `dim`
    (``nn.Linear``'s init, U(-1/sqrt(D), 1/sqrt(D))); `x` itself if D == `dim`."""
    d = x.shape[-1]
    if d == dim:
        return x
    bound = 1 / d ** 0.5
    w = (torch.rand(dim, d, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    return x @ w.to(x.device, x.dtype).T


def greedy_coreset(x: torch.Tensor, n: int, starts: torch.Tensor,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy k-centre (sampler.py L131-L175): every point's distance to the set
    starts as its mean Euclidean distance to the `starts` points; then `n` times,
    pick the farthest point and lower every distance to its distance to the pick.

    Args:
        x: (M, d) points (the projected features).
        n: picks (at most the number of kept points).
        starts: indices of the starting points (not picked themselves).
        keep: (M,) bool; points that may be picked (None: all).

    Returns:
        (n,) int64 indices in pick order.
    """
    sq = (x * x).sum(1)

    def dist(idx: torch.Tensor) -> torch.Tensor:               # (M, len(idx))
        return (sq[:, None] - 2 * x @ x[idx].T + sq[idx][None]).clamp_min(0).sqrt()

    d = dist(starts).mean(1)
    if keep is not None:
        d = d.masked_fill(~keep, -torch.inf)
        n = min(n, int(keep.sum()))
    picks = torch.empty(n, dtype=torch.long, device=x.device)
    for i in range(n):
        j = d.argmax()                                           # no host sync
        picks[i] = j
        d = torch.minimum(d, dist(j[None])[:, 0])
    return picks


def coreset(feats: torch.Tensor, cfg: Config, keep: torch.Tensor | None = None
            ) -> torch.Tensor:
    """The approximate greedy coreset of `feats` (M, D): ``int(coreset_ratio x M)``
    indices (the reference counts all patches, filtered ones included), chosen on a
    random projection to ``projection_dim`` from ``starting_points`` random starts,
    both drawn from a generator seeded by ``cfg.seed``."""
    m = len(feats)
    if cfg.coreset_ratio == 1:
        return torch.arange(m, device=feats.device) if keep is None \
            else torch.nonzero(keep).squeeze(1)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = project(feats, cfg.projection_dim, gen)
    starts = torch.randperm(m, generator=gen)[:min(cfg.starting_points, m)]
    return greedy_coreset(x, int(m * cfg.coreset_ratio), starts.to(feats.device), keep)


def nearest(queries: torch.Tensor, bank: torch.Tensor, *, block: int = 1 << 24,
            query_group: torch.Tensor | None = None,
            bank_group: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's squared L2 distance to its nearest bank row and that row's index
    (exact, as faiss's IndexFlatL2), in blocks of at most `block` distances.

    With `query_group` (Q,) and `bank_group` (M,), a query never matches a bank row
    of its own group (its image); a query with no admissible row gets distance inf
    and index -1.
    """
    bank = bank.float()
    bsq = (bank * bank).sum(1)
    rows = max(1, block // max(1, len(bank)))
    dists, idx = [], []
    for start in range(0, len(queries), rows):
        q = queries[start:start + rows].float()
        d = ((q * q).sum(1, keepdim=True) - 2 * q @ bank.T + bsq).clamp_min(0)
        if query_group is not None:
            own = query_group[start:start + rows, None] == bank_group[None]
            d = d.masked_fill(own, torch.inf)
        v, i = d.min(1)
        dists.append(v)
        idx.append(torch.where(torch.isinf(v), -1, i))
    return torch.cat(dists), torch.cat(idx)


def patch_scores(model: PatchCore, feats: torch.Tensor,
                 prints: torch.Tensor | None = None) -> torch.Tensor:
    """feats (B, P, D) -> (B, P): nearest-bank squared distance x that bank patch's
    weight (softpatch.py L367-L380). With the images' `prints` (B,) (`fingerprint`),
    an image never matches a bank patch of a training image identical to it."""
    b, p, _ = feats.shape
    query_group = bank_group = None
    if prints is not None:
        query_group = prints.repeat_interleave(p)                  # (B*P,)
        bank_group = model.fingerprints[model.bank_image]          # (M,)
    d, i = nearest(feats.flatten(0, 1), model.bank, block=model.cfg.block,
                   query_group=query_group, bank_group=bank_group)
    weight = torch.where(i >= 0, model.bank_weight[i.clamp_min(0)], 1.0)
    return (d * weight).reshape(b, p)


@torch.no_grad()
def anomaly_map(model: PatchCore, x: torch.Tensor, prints: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, 3, S, S) -> map (B, 1, S, S) and image scores (B,): the patch scores on
    their grid, bilinear (align_corners=False) to S and Gaussian-smoothed
    (common.py L190-L212); the image score is the max patch score (L487-L496)."""
    s = patch_scores(model, embed(model, x), prints)
    g = int(round(s.shape[1] ** 0.5))
    s = s.reshape(len(x), 1, g, g)
    amap = F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return maps.gaussian_smooth(amap, sigma=model.cfg.sigma), s.flatten(1).amax(1)


def fingerprint(images: torch.Tensor) -> torch.Tensor:
    """(N,) int64: a hash of each uint8 image's pixels (identical images, equal)."""
    return torch.tensor([int.from_bytes(hashlib.blake2b(
        img.cpu().contiguous().numpy().tobytes(), digest_size=8).digest(), "little",
        signed=True) for img in images], dtype=torch.long)


def no_weights(model: PatchCore, feats: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """PatchCore's patch weights: every patch weight 1, every patch kept."""
    n, p, _ = feats.shape
    ones = torch.ones(n * p, device=feats.device)
    return ones, ones.bool(), {}


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False, weigh: Weigher = no_weights) -> PatchCore:
    """Build the memory bank from uint8 images (N, 3, S, S); returns the model in
    eval mode, with ``model.trace``: ``coreset`` (M,) the picked patch indices
    (image-major: image i's patch j is i * P + j) and whatever `weigh` records.

    Args:
        weigh: per-patch bank weights and which patches may enter the coreset
            (SoftPatch's noise discriminator); default all 1 and all kept.
    """
    model = engine.prepare(build(cfg), device, cfg.precision)
    if backbones.wants_bn_stats(cfg.weights):
        backbones.recalibrate_bn(model.extractor, (
            engine.inputs(train_images, idx, device, cfg.precision)
            for idx in engine.batches(len(train_images), cfg.batch_size)))
    feats = embed_all(model, train_images, device=device, progress=progress)
    n, p, _ = feats.shape
    weight, keep, trace = weigh(model, feats)
    picks = coreset(feats.flatten(0, 1), cfg, keep)
    model.bank = feats.flatten(0, 1)[picks]
    model.bank_weight = weight[picks].float()
    model.bank_image = picks // p
    model.fingerprints = fingerprint(train_images).to(device)
    model.trace = trace | {"coreset": picks.cpu().numpy()}
    return model.eval()


@torch.no_grad()
def bank_matches(model: PatchCore, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Where every patch of uint8 images (B, 3, S, S) finds its nearest bank patch.

    Returns:
        ``distance`` (B, P) the squared L2 distance (not weighted), ``row`` (B, P)
        the bank row, ``image`` (B, P) the training image that row came from (its
        position in the training set) and ``cell`` (B, P) its position on that
        image's patch grid (row-major, P = (S/8)^2). Needs ``model.trace["coreset"]``
        (kept with every run) and test images of the training images' size.
    """
    device, amp = model.device, model.cfg.precision
    feats = torch.cat([embed(model, engine.inputs(images, idx, device, amp))
                       for idx in engine.batches(len(images), model.cfg.batch_size)])
    b, p, _ = feats.shape
    d, row = nearest(feats.flatten(0, 1), model.bank, block=model.cfg.block)
    picks = torch.as_tensor(model.trace["coreset"], device=row.device)
    origin = picks[row]                                     # image-major patch index
    return {k: v.reshape(b, p).cpu().numpy() for k, v in (
        ("distance", d), ("row", row), ("image", origin // p), ("cell", origin % p))}


def budget(cfg: Config, n_train: int) -> base.Budget:
    """No optimiser step; one pass over the training images."""
    return base.Budget(0, n_train)


# Image scores (N,) = max patch score, and maps (N, S, S), for uint8 images.
predict = base.predict


@torch.no_grad()
def predict_train(model: PatchCore, train_images: torch.Tensor, *,
                  progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (N,) and maps (N, S, S) of uint8 training images against the bank
    patches of the *other* training images (leave-one-image-out, matched by content:
    identical copies are left out together; an image the fit never saw is scored
    against the whole bank)."""
    device, amp = model.device, model.cfg.precision
    prints = fingerprint(train_images).to(device)
    scores, amaps = [], []
    for idx in tqdm(list(engine.batches(len(train_images), model.cfg.batch_size)),
                    desc="predict (held out)", disable=not progress, leave=False):
        amap, score = anomaly_map(model, engine.inputs(train_images, idx, device, amp),
                                  prints[idx.to(device)])
        amaps.append(amap[:, 0].float().cpu())                       # (B, S, S)
        scores.append(score.double().cpu())
    return torch.cat(scores).numpy(), torch.cat(amaps).numpy()


def score_train(model: PatchCore, train_images: torch.Tensor) -> np.ndarray:
    """Anomaly score of every training image, each left out of the bank
    (`predict_train`)."""
    return predict_train(model, train_images)[0]
