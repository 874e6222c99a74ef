"""FUN-AD: pseudo-labels from an iteratively reconstructed memory bank (IRMB) and a
mutual-nearest-neighbour smoothness loss.

Paper: Im, Son, Hong, "FUN-AD: Fully Unsupervised Learning for Anomaly Detection with
Noisy Training Data", WACV 2025 (arXiv 2411.16110). Reference code:
HY-Vision-Lab/FUNAD (methods.md §5): feature_extract.py L21-L40 (features),
model.py L367-L394 (network), self_train_ad.py L344-L636 (training), L643-L672 and
inference.py L127-L160 (map and score).
Explained in: book/chapters/06_funad_pseudo_labels

Per iteration (self_train_ad.py), with the frozen patch features x of a batch:

a. **IRMB**: score every training image with the current network (max patch score,
   min-max over the training set); a random half of the images below 0.5 gives the
   memory bank (all their adapted patch features);
b. **pseudo-labels**: squared L2 distance of each adapted batch patch to its nearest
   bank patch (the second nearest when the nearest is an exact self-match), min-max
   over the batch, > ``threshold`` = anomalous;
c. **perturbation**: patches with ``threshold < d < noise_threshold`` get Gaussian
   noise with the per-channel scale max over patches of std over the batch;
d. **losses**: class-balanced BCE on the perturbed copy, plus ``smooth_weight`` x the
   L1 smoothness between the scores of mutual nearest neighbours in the batch.

Which scores the smoothness term sees (``smoothness``):

* ``"code"`` (the default, every profile): the released code's behaviour. In
  self_train_ad.py ``_copy = x.detach()`` shares storage with ``x`` and its
  ``reshape`` is a view, so ``_copy[_idx] += noise`` perturbs ``x`` in place:
  ``local_pred = localnet(x)`` is the prediction on the *perturbed* features, the same
  as ``gaussian_pred``, and both losses see the perturbed copy. The published numbers
  were produced by this code as far as anyone can know, so the ``paper`` profile runs
  it.
* ``"text"``: the paper's description (methods.md §5.3): the BCE on the perturbed copy,
  the smoothness on the predictions for the *clean* features.

Numerics: the network returns logits; the last layer and the sigmoid run in float32
with autocast off (under bf16 autocast a bf16 sigmoid has steps of 2^-8 in [0.5, 1)
and is exactly 1.0 above a logit of about 6.2, so image scores would tie and the BCE
saturate); the BCE is ``binary_cross_entropy_with_logits``.

Preprocessing: ``load_size`` > ``image_size`` resizes the shorter side to
``load_size`` and centre-crops ``image_size`` (images and masks alike), as the
reference's Resize(256) + CenterCrop(224); the ``paper`` profile does, the CPU
profiles do not (they share the test set with RD in the chapter).

Deliberate deviations:
* The model is the last epoch's; the reference evaluates on the test set every epoch
  and keeps the best (image + pixel AUROC), which this book never does.
* Nearest neighbours use chunked ``torch.cdist`` + ``topk`` (exact, as faiss's
  IndexFlatL2), not faiss.
* Masks are resized bilinearly and thresholded at 0.5 (the book's one rule,
  `fuadnb.data.images`), not nearest-neighbour + ceil.
* A bank of at least one image (the reference's ``int(0.5 |C|)`` is 0 when one image
  is confident).
* Offline: the CNN patch features of `fuadnb.nn.patches` instead of DINO ViT-B/8,
  labelled in every results row; DINO is used when its weights are present.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from fuadnb import engine
from fuadnb.config import check_choice, check_sizes, derive_sigma
from fuadnb.models import base
from fuadnb.nn import maps, patches

Smoothness = Literal["code", "text"]


@dataclass(frozen=True)
class Config(base.Config):
    """FUN-AD's hyper-parameters; defaults are the README command's and the code's."""

    backbone: str = "dino_vitb8"               # feature_extract.py L21-L40
    weights: str = "dino"
    image_size: int = 224                      # CenterCrop 224
    load_size: int = 256                       # Resize 256 (0: resize to image_size)
    patch_stride: int = 8                      # ViT-B/8 (16: CNN features only)
    epochs: int = 1500                         # README: --epoch 1500
    batch_size: int = 32                       # README: -b 32 (drop_last)
    lr: float = 2e-5                           # RMSprop, self_train_ad.py L214
    momentum: float = 0.2                      # L214
    bank_fraction: float = 0.5                 # --random 0.5
    confident: float = 0.5                     # hard-coded image threshold (L367-L417)
    threshold: float = 0.5                     # --threshold
    noise_threshold: float = 0.9               # --noise_threshold
    smooth_weight: float = 2.5                 # --weight 2.5
    balanced: bool = True                      # --balancing
    smoothness: Smoothness = "code"            # perturbed scores (the code, see above)
    perturb: bool = True                       # --gaussian
    sigma: float | None = None                 # 4 px at 224, scaled
    seed: int = 0                              # the code's default seed
    eval_batch_size: int = 32                  # ours
    chunk: int = 4096                          # query rows per cdist block (ours)

    def __post_init__(self):
        super().__post_init__()
        derive_sigma(self, native=224)
        check_sizes(self, ("epochs", "batch_size", "eval_batch_size", "chunk"))
        check_choice(self, "smoothness", ("code", "text"))
        for name in ("bank_fraction", "confident", "threshold", "noise_threshold"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.smooth_weight < 0:
            raise ValueError(f"smooth_weight must be >= 0, got {self.smooth_weight}")


# Evaluation-only or result-invariant settings (exact blocking): not in the run key.
EVALUATION = ("sigma", "eval_batch_size", "chunk")

PROFILES: dict[str, dict] = {
    "paper": {},
    # the offline CNN patch features at 128 px on the stride-16 grid (8 x 8 patches:
    # the stride-8 grid costs ~3 s per iteration on 2 CPU cores, this ~0.3 s);
    # 40 epochs of a ~110-image training set are ~120 iterations
    "demo": {"backbone": "efficientnet_lite2", "weights": "imagenet",
             "image_size": 128, "load_size": 0, "patch_stride": 16, "epochs": 40},
    "smoke": {"backbone": "efficientnet_lite2", "weights": "imagenet",
              "image_size": 64, "load_size": 0, "epochs": 2, "batch_size": 8},
}


config = base.configurator(Config, PROFILES, "FUN-AD")
category_options = base.no_category_options   # nothing depends on the category
locate = base.no_locate                       # nor on where the data is
inputs = base.inputs                           # a weights file, if named
MONITOR = True


class LocalNet(nn.Module):
    """``localnet`` (model.py L367-L394), applied to every patch independently:
    adaptor Linear(D, D) + LeakyReLU(0.2) -> adapted feature f; discriminator
    Linear(D, 1024) -> 128 -> 1 with LeakyReLU(0.2) -> logit z; the reference's final
    sigmoid is `probability` (score s = sigmoid(z)).

    The last Linear runs in float32 with autocast off, so the logits keep their
    precision under bf16 autocast (see the module docstring)."""

    def __init__(self, dim: int):
        super().__init__()
        self.adaptor = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.2))
        self.discriminator = nn.Sequential(
            nn.Linear(dim, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 128),
            nn.LeakyReLU(0.2), nn.Linear(128, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (..., D) -> adapted features (..., D) and patch logits (...,) float32."""
        f = self.adaptor(x)
        hidden = self.discriminator[:-1](f)
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.discriminator[-1](hidden.float())
        return f, logits[..., 0]


def probability(logits: torch.Tensor) -> torch.Tensor:
    """Patch scores in (0, 1): the sigmoid of the logits, in float32 (float64 logits
    stay float64)."""
    return torch.sigmoid(logits if logits.dtype == torch.float64 else logits.float())


class FUNAD(base.Model):
    """The frozen patch-feature ``extractor`` and the trained LocalNet; ``trace``:
    per iteration, see `fit`."""

    FROZEN = "extractor"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.extractor = patches.PatchFeatures(cfg.backbone, cfg.weights,
                                               stride=cfg.patch_stride, seed=cfg.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net = LocalNet(self.extractor.dim)

    def anomaly_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return anomaly_map(self, x)


def build(cfg: Config) -> FUNAD:
    """An untrained FUN-AD; random inits are seeded by ``cfg.seed``."""
    return FUNAD(cfg)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """(x - min) / (max - min) over all of `x` (0 where x is constant)."""
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)


def bank_images(image_scores: torch.Tensor, cfg: Config, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """IRMB's choice of images: the confident ones (min-max image score below
    ``cfg.confident``) and a random ``bank_fraction`` of them (at least one).

    Returns:
        (confident (N,) bool, bank: sorted indices of the bank images).
    """
    confident = minmax(image_scores.float()) < cfg.confident
    pool = torch.nonzero(confident.cpu()).squeeze(1)
    take = max(1, int(cfg.bank_fraction * len(pool)))
    bank = pool[torch.randperm(len(pool), generator=generator)[:take]]
    return confident, bank.sort().values


def nearest(queries: torch.Tensor, keys: torch.Tensor, k: int, chunk: int, *,
            block: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` smallest squared L2 distances of each query row to the key rows, and
    their indices, ascending; exact, in blocks of at most `chunk` queries and at most
    `block` distances (64 MiB of float32), so memory stays bounded however many keys
    the bank holds (with a fixed `chunk` alone it grew with the bank: 4096 queries x
    a paper-size bank of 200k patches is 3 GiB per block)."""
    dists, idx = [], []
    keys = keys.float()
    rows = max(1, min(chunk, block // max(1, len(keys))))
    for q in queries.float().split(rows):
        d = torch.cdist(q, keys).square_()
        top = d.topk(min(k, len(keys)), dim=1, largest=False)
        dists.append(top.values)
        idx.append(top.indices)
    return torch.cat(dists), torch.cat(idx)


def pseudo_labels(feats: torch.Tensor, bank: torch.Tensor, cfg: Config
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patch pseudo-labels of a batch (self_train_ad.py L452-L499).

    Args:
        feats: adapted features of the batch, (B, P, D).
        bank: adapted features of the bank, (M, D).

    Returns:
        d (B, P): nearest-bank distance, min-max over the batch; labels ``d >
        threshold``; uncertain ``threshold < d < noise_threshold``.
    """
    b, p, dim = feats.shape
    two, _ = nearest(feats.reshape(-1, dim), bank, 2, cfg.chunk)
    two = torch.where(two < 1e-2, torch.zeros_like(two), two)
    d = two[:, 0] if two.shape[1] == 1 else torch.where(two[:, 0] > 0, two[:, 0],
                                                         two[:, 1])
    d = minmax(d).reshape(b, p)
    return d, d > cfg.threshold, (d > cfg.threshold) & (d < cfg.noise_threshold)


def perturb(x: torch.Tensor, uncertain: torch.Tensor, generator: torch.Generator
            ) -> torch.Tensor:
    """x (B, P, D) with Gaussian noise on the `uncertain` (B, P) patches; channel c's
    scale is the max over patches of the (unbiased) std over the batch."""
    scale = x.float().std(0).amax(0)                                   # (D,)
    noise = torch.randn(x.shape, generator=generator, device=generator.device)
    noise = noise.to(x.device) * scale
    return x + noise * uncertain[..., None]


def mutual_pairs(feats: torch.Tensor, chunk: int) -> torch.Tensor:
    """Mutual nearest neighbours among the rows of `feats` (Q, D), self excluded:
    pairs (i, j), i < j, with nn(i) = j and nn(j) = i, as (M, 2) int64."""
    _, two = nearest(feats, feats, 2, chunk)
    rows = torch.arange(len(feats), device=feats.device)
    nn_ = torch.where(two[:, 0] == rows, two[:, 1], two[:, 0])   # skip the self-match
    mutual = (nn_[nn_] == rows) & (rows < nn_)
    return torch.stack([rows[mutual], nn_[mutual]], 1)


def loss(logits: torch.Tensor | None, perturbed_logits: torch.Tensor,
         labels: torch.Tensor, pairs: torch.Tensor, cfg: Config) -> torch.Tensor:
    """Class-balanced BCE (with logits) of the perturbed copy against the
    pseudo-labels (a mean per class, summed) plus ``smooth_weight`` x the mutual-NN
    smoothness ``1/2 [L1(s_i, m) + L1(s_j, m)]``, m = (s_i + s_j) / 2, s = sigmoid.

    The smoothness sees the perturbed copy's scores (``cfg.smoothness == "code"``;
    `logits` may then be None) or the clean `logits`' scores (``"text"``).
    """
    z_hat, y = perturbed_logits.float().flatten(), labels.flatten()
    if cfg.balanced:
        bce = sum(F.binary_cross_entropy_with_logits(z_hat[y == c], torch.full_like(
            z_hat[y == c], float(c))) for c in (0, 1) if (y == c).any())
    else:
        bce = F.binary_cross_entropy_with_logits(z_hat, y.float())
    if len(pairs) == 0:
        return bce
    if cfg.smoothness == "text" and logits is None:
        raise ValueError("smoothness='text' needs the clean logits")
    s = probability(perturbed_logits if cfg.smoothness == "code" else logits).flatten()
    si, sj = s[pairs[:, 0]], s[pairs[:, 1]]
    m = (si + sj) / 2
    smooth = 0.5 * ((si - m).abs().mean() + (sj - m).abs().mean())
    return bce + cfg.smooth_weight * smooth


def patch_features(model: FUNAD, images: torch.Tensor, *, device: torch.device,
                   progress: bool = False) -> torch.Tensor:
    """The frozen features of every image once: (N, P, D) on `device` (bf16 for
    bf16 precision), through the same batched pass as the distillation methods'
    teachers."""
    return engine.frozen_features(lambda x: [model.extractor(x)], images,
                                  batch_size=model.cfg.eval_batch_size, device=device,
                                  precision=model.cfg.precision,
                                  progress=progress)[0]


@torch.no_grad()
def _score_all(model: FUNAD, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adapted features (N, P, D) and image scores (N,) = max patch score."""
    fs, ss = [], []
    for chunk in feats.split(model.cfg.eval_batch_size):
        with engine.autocast(feats.device, model.cfg.precision):
            f, z = model.net(chunk)
        fs.append(f.float())
        ss.append(probability(z.amax(1)))
    return torch.cat(fs), torch.cat(ss)


def budget(cfg: Config, n_train: int) -> base.Budget:
    """Optimiser steps and images processed by `fit` on `n_train` images: every
    epoch drops its last, incomplete batch (the reference's ``drop_last=True``), so
    ``epochs x floor(N / B)`` steps of B images (B = min(batch_size, N))."""
    batch = min(cfg.batch_size, n_train)
    steps = cfg.epochs * (n_train // batch)
    return base.Budget(steps, steps * batch)


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False, monitor: engine.Monitor | None = None) -> FUNAD:
    """Train FUN-AD on uint8 images (N, 3, S, S); returns the last epoch's model, in
    eval mode, with ``model.trace``: per iteration the bank (bool (T, N)), the
    confident images (bool (T, N)), the batch (int (T, B)), its patch pseudo-labels
    packed along the patches (``labels_bits``, uint8 (T, B, ceil(P / 8)), see
    `trace_labels`; ``patches`` = P) and the loss (T,). `monitor` (a diagnostic,
    e.g. the learning-bias curve) is called after every step with the step number
    and the model; it must not change the model."""
    n = len(train_images)
    model = engine.prepare(build(cfg), device, cfg.precision)
    feats = patch_features(model, train_images, device=device, progress=progress)
    bs = min(cfg.batch_size, n)                 # drop_last, as the reference
    opt = torch.optim.RMSprop(model.net.parameters(), lr=cfg.lr,
                              momentum=cfg.momentum)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    draw_gen = torch.Generator().manual_seed(cfg.seed + 1)                # the bank
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 2)  # on device
    trace: dict[str, list] = {"bank": [], "confident": [], "batch": [],
                              "labels_bits": [], "loss": []}
    bar = tqdm(range(cfg.epochs), desc=f"FUN-AD {cfg.backbone}", disable=not progress)
    for _ in bar:
        losses = []
        for idx in engine.batches(n, bs, generator=order_gen):
            if len(idx) < bs:
                continue
            idx = idx.to(device)
            with torch.no_grad():
                adapted, image_scores = _score_all(model, feats)      # (a) IRMB
                confident, bank = bank_images(image_scores, cfg, draw_gen)
                bank_feats = adapted[bank.to(device)].flatten(0, 1)
                batch_adapted = adapted[idx]
                _, labels, uncertain = pseudo_labels(batch_adapted, bank_feats, cfg)
                x = feats[idx].float()
                x_hat = perturb(x, uncertain, noise_gen) if cfg.perturb else x
                pairs = mutual_pairs(batch_adapted.flatten(0, 1), cfg.chunk)
            with engine.autocast(device, cfg.precision):
                _, z_hat = model.net(x_hat)
                z = model.net(x)[1] if cfg.smoothness == "text" else None
            batch_loss = loss(z, z_hat, labels, pairs, cfg)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            losses.append(batch_loss.item())
            for key, value in (("bank", _mask(bank, n)), ("confident", confident),
                               ("batch", idx)):
                trace[key].append(value.cpu().numpy())
            trace["labels_bits"].append(np.packbits(labels.cpu().numpy(), axis=-1))
            trace["loss"].append(losses[-1])
            if monitor is not None:
                monitor(len(trace["loss"]), model)
        model.history.append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{model.history[-1]:.4f}")
    model.trace = {k: np.stack(v) for k, v in trace.items()} | {
        "patches": np.array(feats.shape[1])}
    return model.eval()


def trace_labels(trace: dict[str, np.ndarray], start: int = 0,
                 stop: int | None = None) -> np.ndarray:
    """The patch pseudo-labels of iterations ``start:stop`` of a fit's trace, bool
    (T', B, P), unpacked from ``labels_bits`` (a trace of an older run may hold them
    unpacked as ``labels``)."""
    if "labels" in trace:
        return trace["labels"][start:stop]
    return np.unpackbits(trace["labels_bits"][start:stop], axis=-1,
                         count=int(trace["patches"])).astype(bool)


def _mask(idx: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros(n, dtype=torch.bool)
    out[idx.cpu()] = True
    return out


def patch_truth(masks: torch.Tensor, grid: int, cover: float = 0.25) -> np.ndarray:
    """Which patches are defective: bool (N, grid * grid) from pixel masks (N, 1, S,
    S), a patch counting as defective when at least `cover` of its pixels are."""
    share = F.adaptive_avg_pool2d(masks.float(), grid)
    return (share >= cover).flatten(1).numpy()


def label_quality(trace: dict[str, np.ndarray], truth: np.ndarray, chunk: int = 256
                  ) -> dict[str, np.ndarray]:
    """Per iteration of a fit, the pseudo-labels against the truth (N, P) of the
    training patches (`patch_truth`; clean images all False): precision, recall
    and the share of patches labelled anomalous (precision is NaN without any).
    Unpacks `chunk` iterations at a time, so memory stays small for long fits."""
    tp, n_pred, n_true = [], [], []
    for start in range(0, len(trace["batch"]), chunk):
        labels = trace_labels(trace, start, start + chunk)            # (T', B, P)
        true = truth[trace["batch"][start:start + chunk]]
        tp.append((labels & true).sum((1, 2)))
        n_pred.append(labels.sum((1, 2)))
        n_true.append(true.sum((1, 2)))
    tp, n_pred, n_true = (np.concatenate(a) for a in (tp, n_pred, n_true))
    size = trace["batch"].shape[1] * truth.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"precision": np.where(n_pred > 0, tp / n_pred, np.nan),
                "recall": np.where(n_true > 0, tp / n_true, np.nan),
                "labelled": n_pred / size}


@torch.no_grad()
def anomaly_map(model: FUNAD, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, 3, S, S) -> map (B, 1, S, S) and image scores (B,): the patch scores on
    their grid, bilinear to the image size, Gaussian-smoothed (inference.py
    L127-L160); the image score is the max *patch* score."""
    with engine.autocast(x.device, model.cfg.precision):
        _, z = model.net(model.extractor(x))
    g = model.extractor.grid(x.shape[-1])
    s = probability(z).reshape(len(x), 1, g, g)
    amap = F.interpolate(s, size=x.shape[-2:], mode="bilinear", align_corners=False)
    # the image score: sigmoid of the max logit in float64 (= the max patch score,
    # without float32's saturation at 1.0 above a logit of ~17)
    return maps.gaussian_smooth(amap, sigma=model.cfg.sigma), \
        probability(z.double().amax(1))


@torch.no_grad()
def knn_baseline(model: FUNAD, train_images: torch.Tensor, images: torch.Tensor
                 ) -> np.ndarray:
    """The plain nearest-neighbour image score on FUN-AD's own frozen patch features
    (a diagnostic, chapter 06): each patch of `images` scored by its squared L2
    distance to the nearest patch of any training image, the image score the max
    over its patches. What FUN-AD's pseudo-labelling rule would give with the
    identity adaptor and the whole training set as its bank, with no batch min-max
    and no training; exact (`nearest`)."""
    device = next(model.parameters()).device
    bank = patch_features(model, train_images, device=device).flatten(0, 1)
    feats = patch_features(model, images, device=device)                 # (N, P, D)
    d, _ = nearest(feats.flatten(0, 1), bank, 1, model.cfg.chunk)
    return d[:, 0].reshape(feats.shape[:2]).amax(1).double().cpu().numpy()


# Image scores (N,) = max patch score, and maps (N, S, S), for uint8 images; the
# training images' scores (to rank the contaminating ones).
predict = base.predict
predict_train = base.predict_train
score_train = base.score_train
