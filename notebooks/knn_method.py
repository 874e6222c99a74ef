"""kNN: a patch's anomaly score is its distance to the nearest training patch.

The small method of the book's page "Your own method" (notebooks/own_method.ipynb):
the whole surface `fuadnb.models.Method` asks for. A patch is the raw pixels of one
cell of a ``patch`` x ``patch`` grid (no network); the bank holds every training
patch; an image's score is its farthest patch's distance (a memory bank as
PatchCore's, without features or coreset). Register it with
``fuadnb.models.register("knn", knn_method)``, or for every process (a grid's
kernels) with ``FUADNB_METHODS=knn=path/to/knn_method.py``.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fuadnb.models import base


@dataclass(frozen=True)
class Config(base.Config):
    image_size: int = 64        # images are resized to this (pixels)
    patch: int = 8              # patch side (pixels); a bank row is 3 x patch^2
    eval_batch_size: int = 8    # test images per batch
    seed: int = 0               # nothing is random here; every Config has a seed


PROFILES = {"paper": {"image_size": 256, "eval_batch_size": 1}, "demo": {},
            "smoke": {}}
EVALUATION = ("eval_batch_size",)   # fields that leave the fitted model as it is
MONITOR = False                     # `fit` takes no learning-bias monitor


def patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, S, S) in [0, 1] -> (B, (S/p)^2, 3 p p): each cell's pixels, row-major."""
    return F.unfold(x.float(), p, stride=p).transpose(1, 2)


class KNN(base.Model):
    label = "pixels"              # the results rows' ``teacher``: no network
    reproducible_prefixes = ()    # the run cache keeps the whole state (the bank)

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.register_buffer("bank", torch.empty(0, 3 * cfg.patch ** 2))

    @property
    def device(self) -> torch.device:
        return self.bank.device

    def anomaly_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.cdist(patches(x, self.cfg.patch), self.bank[None],   # exact, not
                        compute_mode="donot_use_mm_for_euclid_dist")   # |a|²-2ab+|b|²
        d = d.amin(2)                                                  # (B, P)
        g = x.shape[-1] // self.cfg.patch
        amap = F.interpolate(d.reshape(-1, 1, g, g), size=x.shape[-2:])   # nearest
        return amap, d.amax(1)

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        self.bank = torch.empty_like(state[prefix + "bank"])   # its size: the fit's
        super()._load_from_state_dict(state, prefix, *args, **kwargs)


def build(cfg: Config) -> KNN:
    return KNN(cfg)


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False) -> KNN:
    """The bank: every patch of the uint8 training images (N, 3, S, S)."""
    model = build(cfg).to(device)
    model.bank = patches(train_images.to(device) / 255, cfg.patch).flatten(0, 1)
    return model.eval()


def budget(cfg: Config, n_train: int) -> base.Budget:
    return base.Budget(0, n_train)   # no optimiser step, one pass over the images


config = base.configurator(Config, PROFILES, "kNN")
category_options, locate, inputs = base.no_category_options, base.no_locate, base.inputs
predict, predict_train, score_train = base.predict, base.predict_train, base.score_train
