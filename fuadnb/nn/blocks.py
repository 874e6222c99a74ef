"""Reverse Distillation's trainable parts: the one-class bottleneck and the decoder.

Built from the teacher's channels ``(c1, c2, c3)`` instead of hard-coded ResNet widths,
so any three-scale teacher fits. With wide_resnet50_2 (256, 512, 1024) and
``family="bottleneck"`` they are exactly RD4AD's ``BN_layer(AttnBottleneck, 3)`` and
``de_wide_resnet50_2``; with resnet18 (64, 128, 256) and ``family="basic"`` its
``BN_layer(AttnBasicBlock, 2)`` and ``de_resnet18``.

Reference: RD4AD@6554076 resnet.py L386-L462 (OCBE; the "Attn" blocks have their
attention commented out, so they are plain ResNet blocks), de_resnet.py L39-L263
(decoder). Deviations: none in structure. RD4AD's unused ``conv4/bn4`` are omitted.
Initialisation as RD4AD: kaiming-normal (fan_out) for ``nn.Conv2d`` only, so the
``ConvTranspose2d`` upsampling layers keep PyTorch's default init; BatchNorm 1 / 0.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

Family = Literal["basic", "bottleneck"]


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def deconv2x2(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    """The decoder's x2 upsampling in place of a strided 3x3 conv."""
    return nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2, bias=False)


def _init_like_rd4ad(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):  # not ConvTranspose2d: RD4AD pitfall, kept
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _cbr(conv: nn.Module, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class OCBE(nn.Module):
    """One-class bottleneck embedding: multi-scale feature fusion (MFF) + one-class
    embedding (OCE) blocks.

    ``[f1, f2, f3]`` (B, c_i, H_i, W_i) -> (B, 2*c3, H_3/2, W_3/2), e.g.
    256x64², 512x32², 1024x16² -> 2048x8² for wide_resnet50_2 at 256 px.
    """

    def __init__(self, channels: tuple[int, int, int], family: Family = "bottleneck",
                 n_blocks: int = 3, base_width: int = 128):
        super().__init__()
        c1, c2, c3 = channels
        # MFF: f1 down x4 and f2 down x2 to f3's grid (RD4AD conv1..3, 3x3 stride 2)
        self.down1 = nn.Sequential(_cbr(conv3x3(c1, c2, 2), c2),
                                   _cbr(conv3x3(c2, c3, 2), c3))
        self.down2 = _cbr(conv3x3(c2, c3, 2), c3)
        c_out = 2 * c3
        if family == "bottleneck":
            block, planes, kw = Bottleneck, c_out // Bottleneck.expansion, {
                "base_width": base_width}
        else:
            block, planes, kw = BasicBlock, c_out, {}
        downsample = nn.Sequential(nn.Conv2d(3 * c3, c_out, 1, stride=2, bias=False),
                                   nn.BatchNorm2d(c_out))
        layers = [block(3 * c3, planes, stride=2, downsample=downsample, **kw)]
        layers += [block(c_out, planes, **kw) for _ in range(n_blocks - 1)]
        self.oce = nn.Sequential(*layers)
        self.out_channels = c_out
        _init_like_rd4ad(self)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = feats
        fused = torch.cat([self.down1(f1), self.down2(f2), f3], dim=1)  # (B, 3*c3, ..)
        return self.oce(fused).contiguous()


class DecoderBasicBlock(nn.Module):
    """BasicBlock whose first conv upsamples x2 (deconv) when ``upsample`` is set."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, upsample: nn.Module | None = None,
                 base_width: int = 64):
        super().__init__()
        first = deconv2x2(c_in, planes) if upsample is not None else conv3x3(c_in,
                                                                            planes)
        self.conv1, self.bn1 = first, nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DecoderBottleneck(nn.Module):
    """Bottleneck whose 3x3 conv is a x2 deconv when ``upsample`` is set."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, upsample: nn.Module | None = None,
                 base_width: int = 64):
        super().__init__()
        width = int(planes * base_width / 64)
        self.conv1, self.bn1 = nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(
            width)
        mid = deconv2x2(width, width) if upsample is not None else conv3x3(width, width)
        self.conv2, self.bn2 = mid, nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetDecoder(nn.Module):
    """The student's decoder: a mirrored ResNet that upsamples the embedding back to the
    teacher's three scales.

    (B, 2*c3, h, w) -> ``[(B, c1, 8h, 8w), (B, c2, 4h, 4w), (B, c3, 2h, 2w)]``,
    aligned with the teacher's ``[f1, f2, f3]``.

    Every stage ends in a ReLU, as the ResNet features it mirrors do. A teacher whose
    features are signed (EfficientNet's linear-bottleneck stage outputs) gets
    ``signed=True``: a 1x1 convolution with bias reads each scale out linearly, else
    the student could never match the negative values (ours, not in RD4AD).
    """

    def __init__(self, channels: tuple[int, int, int], family: Family = "bottleneck",
                 n_blocks: tuple[int, int, int] = (3, 4, 6), base_width: int = 128,
                 signed: bool = False):
        super().__init__()
        block = DecoderBottleneck if family == "bottleneck" else DecoderBasicBlock
        c_in = 2 * channels[2]
        stages = []
        for c_out, n in zip(reversed(channels), n_blocks, strict=True):  # c3, c2, c1
            planes = c_out // block.expansion
            upsample = nn.Sequential(deconv2x2(c_in, c_out), nn.BatchNorm2d(c_out))
            blocks = [block(c_in, planes, upsample, base_width)]
            blocks += [block(c_out, planes, None, base_width) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = stages
        self.readout = nn.ModuleList(nn.Conv2d(c, c, 1) for c in channels) \
            if signed else None
        _init_like_rd4ad(self)

    def forward(self, z: torch.Tensor) -> list[torch.Tensor]:
        a = self.layer1(z)   # (B, c3, 2h, 2w)
        b = self.layer2(a)   # (B, c2, 4h, 4w)
        c = self.layer3(b)   # (B, c1, 8h, 8w)
        if self.readout is None:
            return [c, b, a]
        return [head(f) for head, f in zip(self.readout, (c, b, a), strict=True)]


# RD4AD's depth and width per teacher family (resnet.py L546-L559, de_resnet.py
# L366-L379 for wide_resnet50_2; the resnet18 variants for "basic").
FAMILY_LAYOUT: dict[str, dict] = {
    "bottleneck": {"ocbe_blocks": 3, "decoder_blocks": (3, 4, 6), "base_width": 128},
    "basic": {"ocbe_blocks": 2, "decoder_blocks": (2, 2, 2), "base_width": 64},
}


class Student(nn.Module):
    """RD's student: the one-class bottleneck (OCBE), then the decoder, for a teacher
    with `channels` and block `family` (`signed`: the teacher's features can be
    negative, see `ResNetDecoder`). Teacher features ``[f1, f2, f3]`` -> their
    reconstruction, same shapes."""

    def __init__(self, channels: tuple[int, int, int], family: Family,
                 signed: bool = False):
        super().__init__()
        layout = FAMILY_LAYOUT[family]
        self.bottleneck = OCBE(channels, family, layout["ocbe_blocks"],
                               layout["base_width"])
        self.decoder = ResNetDecoder(channels, family, layout["decoder_blocks"],
                                     layout["base_width"], signed=signed)

    def forward(self, feats_t: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.bottleneck(feats_t))


def channel_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine over channels at every position: (B, C, H, W) x2 -> (B, 1, H, W)."""
    return nn.functional.cosine_similarity(a, b, dim=1).unsqueeze(1)


class GII(nn.Module):
    """Guided Information Injection (RD-E, hito2448/URD models/student.py L25-L62):
    teacher features are fused into the decoder's two upper stages, each position
    weighted by how well the student already matches the teacher there.

    For the stage at teacher scale k (k = 3, then 2) with decoder output ``s`` and the
    teacher's ``t_k`` and finer ``t_{k-1}``::

        u   = fuse_encoder(t_k + down(t_{k-1}))           # teacher detail at scale k
        g   = channel_cosine(student_k.detach(), t_k)     # no gradient, not clamped
        out = fuse_skip(cat[s, simattn(u * g + s * (1 - g))])        # "gated"
        out = fuse_skip(cat[s, u])                                   # "ungated"

    where ``student_k`` is the student's prediction of ``t_k``. ``gated`` is the
    paper's GII (``forward_decoder_gii``); ``ungated`` is what the released training
    scripts run, because ``Student.forward`` routes ``attn=True`` to
    ``forward_decoder_wogii`` (methods.md §3.2). Channels follow the teacher's
    ``(c1, c2, c3)``; every convolution is bias-free and followed by BN and ReLU.
    """

    def __init__(self, channels: tuple[int, int, int]):
        super().__init__()
        dims = channels
        self.down = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=0.5, mode="bilinear"),
                          *_cbr(nn.Conv2d(dims[i], dims[i + 1], 1, bias=False),
                                dims[i + 1]))
            for i in range(2))
        self.fuse_encoder = nn.ModuleList(_cbr(conv3x3(dims[i + 1], dims[i + 1]),
                                               dims[i + 1]) for i in range(2))
        self.simattn = nn.ModuleList(_cbr(conv3x3(dims[i + 1], dims[i + 1]),
                                          dims[i + 1]) for i in range(2))
        self.fuse_skip = nn.ModuleList(_cbr(conv3x3(2 * dims[i + 1], dims[i + 1]),
                                            dims[i + 1]) for i in range(2))

    def forward(self, i: int, s: torch.Tensor, predicted: torch.Tensor,
                t_fine: torch.Tensor, t: torch.Tensor, gated: bool = True
                ) -> torch.Tensor:
        """Inject at level `i` (1: teacher scale 3, 0: scale 2).

        Args:
            s: the decoder stage's output (B, c, H, W), c = t's channels.
            predicted: the student's prediction of `t` (s itself, or its readout).
            t_fine: the teacher's next finer scale (B, c', 2H, 2W); t: (B, c, H, W).

        Returns:
            the input of the next decoder stage, (B, c, H, W).
        """
        u = self.fuse_encoder[i](t + self.down[i](t_fine))
        if not gated:
            return self.fuse_skip[i](torch.cat([s, u], dim=1))
        with torch.no_grad():
            g = channel_cosine(predicted.detach(), t)
        return self.fuse_skip[i](torch.cat([s, self.simattn[i](u * g + s * (1 - g))],
                                           dim=1))


def init_xavier(module: nn.Module) -> None:
    """Xavier-normal weights for every ``nn.Conv2d`` (URD Student ``init_weight``,
    student.py L6-L10, L62); ConvTranspose2d and BatchNorm keep their init."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
