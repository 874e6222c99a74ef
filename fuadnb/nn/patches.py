"""Frozen patch features (FUN-AD's input): one feature vector per image patch.

* ``dino_vitb8`` (the paper, methods.md §5.1): DINO ViT-B/8, the last block's tokens
  after the final LayerNorm, the CLS token concatenated to every patch token:
  ``[CLS (768), patch (768)]`` = 1536-d, one patch per 8x8 pixels. Weights: DINO's
  ``dino_vitbase8_pretrain.pth`` in the torch hub cache (where
  ``torch.hub.load("facebookresearch/dino:main", "dino_vitb8")`` puts it), else timm's
  ``vit_base_patch8_224.dino`` from the Hugging Face cache; never downloaded offline.
* any CNN of `fuadnb.nn.backbones` (the offline fallback, labelled in every results
  row): the stride-8 and stride-16 taps (ResNet layer2 + layer3, EfficientNet-Lite
  stages 2 and 4), each averaged over its 3x3 neighbourhood, brought to one grid
  (``stride`` 8: the finer tap's, upsampling the coarser bilinearly; 16: the coarser
  tap's, average-pooling the finer) and concatenated; and, as FUN-AD does with the
  CLS token, the image's mean feature concatenated in front: ``[mean (C), patch
  (C)]``. Stride 16 has 4x fewer patches, so 16x cheaper nearest-neighbour searches.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fuadnb.config import is_offline
from fuadnb.nn import backbones

DINO = "dino_vitb8"
DINO_FILE = "dino_vitbase8_pretrain.pth"
DINO_URL = ("https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/"
            "dino_vitbase8_pretrain.pth")
DINO_WEIGHTS = ("dino", "random")
PATCH_BACKBONES = (DINO, *backbones.BACKBONES)


def dino_file() -> Path:
    """Where the torch hub cache keeps DINO ViT-B/8's weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / DINO_FILE


def _dino(weights: str) -> nn.Module:
    """timm's ViT-B/8 with DINO's weights (`weights` "dino", a .pth, or "random")."""
    import timm

    kwargs = {"num_classes": 0, "dynamic_img_size": True}
    if weights == "random":
        return timm.create_model("vit_base_patch8_224", pretrained=False, **kwargs)
    path = dino_file() if weights == "dino" else Path(weights)
    if path.is_file():
        net = timm.create_model("vit_base_patch8_224", pretrained=False, **kwargs)
        backbones.load_into(net, backbones.read_state(path, DINO), path, DINO)
        return net
    if weights != "dino":
        raise backbones.WeightsNotFoundError(
            f"weights file {path} does not exist; pass DINO ViT-B/8's state dict, "
            f"'dino' or 'random'")
    try:   # the Hugging Face cache (downloads only when not offline)
        return timm.create_model("vit_base_patch8_224.dino", pretrained=True, **kwargs)
    except Exception as err:   # noqa: BLE001 - hub errors have many types
        why = "offline" if is_offline() else f"download failed ({type(err).__name__})"
        raise backbones.WeightsNotFoundError(
            f"DINO ViT-B/8 weights not found ({why}). To fix: put {DINO_FILE} (from "
            f"{DINO_URL}) at {path}, or cache timm's vit_base_patch8_224.dino, or "
            f"use a CNN backbone (e.g. efficientnet_lite2, installed with fuadnb)"
        ) from err


class PatchFeatures(nn.Module):
    """Frozen extractor: float images [0, 1] (B, 3, S, S) -> (B, P, D) patch
    features on a (S/stride, S/stride) grid (``grid(S)``), in row-major order."""

    def __init__(self, name: str, weights: str = "imagenet", *, stride: int = 8,
                 seed: int = 0):
        super().__init__()
        if name not in PATCH_BACKBONES:
            raise ValueError(f"unknown patch backbone {name!r}; choose one of "
                             f"{PATCH_BACKBONES}")
        if stride not in (8, 16) or (name == DINO and stride != 8):
            raise ValueError(f"patch stride must be 8 or 16 (8 for {DINO}), got "
                             f"{stride}")
        self.name, self.weights, self.stride = name, weights, stride
        if name == DINO:
            if weights not in DINO_WEIGHTS and not weights.endswith(".pth"):
                raise ValueError(f"{DINO} takes weights 'dino', 'random' or a .pth; "
                                 f"got {weights!r}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.vit = _dino(weights)
            self.register_buffer("mean", torch.tensor(
                backbones.IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(
                backbones.IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
            self.dim = 2 * self.vit.embed_dim
        else:
            self.cnn = backbones.build(name, weights, seed=seed)
            self.dim = 2 * sum(self.cnn.channels[1:])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PatchFeatures:
        return super().train(False)   # frozen: always eval

    @property
    def label(self) -> str:
        """What produced the features, for results rows."""
        return f"{self.name}/{Path(self.weights).name}"

    def grid(self, size: int) -> int:
        """Patches per side for an input of `size` pixels."""
        return size // self.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == DINO:
            tokens = self.vit.forward_features((x - self.mean) / self.std)  # B,1+P,768
            cls, patch = tokens[:, :1], tokens[:, 1:]
            return torch.cat([cls.expand_as(patch), patch], dim=2)
        _, f2, f3 = self.cnn(x)
        local = [F.avg_pool2d(f, 3, stride=1, padding=1, count_include_pad=False)
                 for f in (f2, f3)]
        if self.stride == 8:
            local[1] = F.interpolate(local[1], size=f2.shape[-2:], mode="bilinear",
                                     align_corners=False)
        else:
            local[0] = F.adaptive_avg_pool2d(local[0], f3.shape[-2:])
        patch = torch.cat(local, 1).flatten(2).transpose(1, 2)             # B, P, C
        return torch.cat([patch.mean(1, keepdim=True).expand_as(patch), patch], 2)
