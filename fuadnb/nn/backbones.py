"""Frozen feature extractors (the "teachers") and how their weights are found.

The papers use torchvision's ImageNet ``wide_resnet50_2`` (RD, RD-E, CDD); ``resnet18``
is the small CPU variant. Weights are resolved the standard way:

* ``weights="imagenet"``: the torchvision weights enum's file in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/<file>``); when it is absent a download is tried
  unless ``FUADNB_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``; if that fails, one error names
  the file and where to put it.
* ``weights="<path>.pth"``: an explicit state-dict file.
* ``weights="random-bnstats"``: the offline default until an offline ImageNet teacher
  exists: seeded random init, BatchNorm running statistics re-estimated on the training
  images (``recalibrate_bn``). Labelled as such in every results row.
* ``weights="random"``: seeded random init with PyTorch's default BatchNorm statistics
  (tests only; not a meaningful teacher).

Reference: RD4AD@6554076 resnet.py L233-L246 (taps after layer1-3, layer4 unused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from fuadnb.config import is_offline

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NAMED_WEIGHTS = ("imagenet", "random-bnstats", "random")

# name -> (constructor, ImageNet weights enum member, block family)
_TORCHVISION: dict[str, tuple[Callable[..., nn.Module], object, str]] = {
    "resnet18": (torchvision.models.resnet18,
                 torchvision.models.ResNet18_Weights.IMAGENET1K_V1, "basic"),
    "wide_resnet50_2": (torchvision.models.wide_resnet50_2,
                        torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1,
                        "bottleneck"),
}
BACKBONES = tuple(_TORCHVISION)


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on disk and could not be downloaded."""


def imagenet_file(name: str) -> Path:
    """Where torchvision keeps (and looks for) the ImageNet weights of `name`."""
    url = _spec(name)[1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _spec(name: str):
    if name not in _TORCHVISION:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    return _TORCHVISION[name]


def _missing_message(name: str, path: Path, why: str) -> str:
    url = _spec(name)[1].url
    return (f"ImageNet weights for {name} not found: {why}. Put {path.name} (from "
            f"{url}) at {path} (or set TORCH_HOME to a folder holding "
            f"hub/checkpoints/{path.name}), pass weights=<path to .pth>, or use the "
            "offline teacher weights='random-bnstats'")


def load_state(name: str, weights: str) -> dict[str, torch.Tensor] | None:
    """The state dict for `weights`, or None for random init.

    Raises:
        WeightsNotFoundError: ImageNet weights absent and not downloadable, or an
            explicit file that does not exist.
    """
    constructor, enum, _ = _spec(name)
    if weights in ("random", "random-bnstats"):
        return None
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} does not exist; pass an "
                                       f"existing {name} state-dict .pth, 'imagenet' "
                                       f"or one of {NAMED_WEIGHTS}")
        return torch.load(path, map_location="cpu", weights_only=True)
    path = imagenet_file(name)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    if is_offline():
        raise WeightsNotFoundError(_missing_message(
            name, path, "not in the torch hub cache and FUADNB_OFFLINE/HF_HUB_OFFLINE "
            "forbids downloading"))
    try:
        return torch.hub.load_state_dict_from_url(enum.url, progress=True,
                                                  map_location="cpu")
    except (URLError, OSError, RuntimeError) as err:
        raise WeightsNotFoundError(_missing_message(
            name, path, f"download failed ({err})")) from err


class FeatureExtractor(nn.Module):
    """A frozen ResNet cut after ``layer3``: returns ``[f1, f2, f3]``.

    Shapes for a 256 px input to wide_resnet50_2: 256x64x64, 512x32x32, 1024x16x16.
    The module stays in ``eval()`` (ImageNet BatchNorm statistics) whatever
    ``train()`` is called with, and takes no gradients.
    """

    def __init__(self, name: str, weights: str = "imagenet"):
        super().__init__()
        constructor, _, family = _spec(name)
        net = constructor(weights=None)
        state = load_state(name, weights)
        if state is not None:
            net.load_state_dict(state)
        self.name, self.weights, self.family = name, weights, family
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.requires_grad_(False)
        self.eval()
        with torch.no_grad():
            shapes = [f.shape for f in self(torch.zeros(1, 3, 64, 64))]
        self.channels = tuple(s[1] for s in shapes)          # e.g. (256, 512, 1024)
        self.strides = tuple(64 // s[-1] for s in shapes)    # (4, 8, 16)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) ImageNet-normalised -> 3 x (B, C_i, H/s_i, W/s_i)."""
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        return [f1, f2, self.layer3(f2)]

    @property
    def label(self) -> str:
        """What produced the features, for results rows and figure captions."""
        return f"{self.name}/{Path(self.weights).name}"


def build(name: str, weights: str = "imagenet", *, seed: int = 0) -> FeatureExtractor:
    """A frozen extractor; random inits are drawn from a generator seeded by `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureExtractor(name, weights)


@torch.no_grad()
def recalibrate_bn(extractor: FeatureExtractor, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running mean/var from `batches`.

    Each BatchNorm keeps the cumulative average of its per-batch statistics
    (momentum=None, as SWA's ``update_bn``); the affine weights are unchanged.

    Returns:
        the number of images seen.
    """
    bns = [m for m in extractor.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.training = True
    seen = 0
    try:
        for x in batches:
            extractor.layer3(extractor.layer2(extractor.layer1(extractor.stem(x))))
            seen += x.shape[0]
    finally:
        for bn in bns:
            bn.training = False
    if seen == 0:
        raise ValueError("recalibrate_bn got no images")
    return seen


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (B, 3, H, W) in [0, 255] -> ImageNet-normalised `dtype` on the same
    device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return ((images.float() / 255 - mean) / std).to(dtype)
