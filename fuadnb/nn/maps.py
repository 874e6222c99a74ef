"""Anomaly maps from teacher/student feature pairs: cosine distance, scale fusion,
Gaussian smoothing.

Reference: RD4AD@6554076 test.py L25-L45 (``cal_anomaly_map``: per scale
``1 - cos`` over channels, bilinear upsampling with ``align_corners=True``, summed over
scales for ``amap_mode='a'``) and L84 (``scipy.ndimage.gaussian_filter(sigma=4)``:
truncate 4.0 -> a 33-tap kernel at sigma 4, ``reflect`` boundary). `gaussian_smooth`
reproduces scipy's kernel and boundary exactly on the device.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from fuadnb.config import scaled_sigma

Fusion = Literal["add", "mul", "mean"]


def cosine_distance(feats_t: list[torch.Tensor], feats_s: list[torch.Tensor]
                    ) -> list[torch.Tensor]:
    """Per-pixel ``1 - cos`` over channels: 3 x (B, C_i, H_i, W_i) -> (B, 1, H_i, W_i).

    Computed in float32 whatever the input dtype (bf16 features lose the small
    distances that make a map).
    """
    return [1 - F.cosine_similarity(t.float(), s.float(), dim=1).unsqueeze(1)
            for t, s in zip(feats_t, feats_s, strict=True)]


def fuse(dists: list[torch.Tensor], size: tuple[int, int], mode: Fusion = "add"
         ) -> torch.Tensor:
    """Upsample each (B, 1, h, w) map bilinearly (align_corners=True) to `size` and
    combine them: ``add`` (RD4AD 'a'), ``mul`` (RD4AD 'mul') or ``mean``."""
    ups = [F.interpolate(d, size=size, mode="bilinear", align_corners=True)
           for d in dists]
    out = ups[0]
    for u in ups[1:]:
        out = out * u if mode == "mul" else out + u
    if mode == "mean":
        out = out / len(ups)
    elif mode not in ("add", "mul"):
        raise ValueError(f"unknown fusion {mode!r}; choose add, mul or mean")
    return out


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's Gaussian weights: radius ``int(truncate*sigma + 0.5)``,
    normalised to sum 1 (float64)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _reflect_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's 'reflect' (half-sample symmetric, d c b a | a b c d)
    padding, valid for any radius."""
    idx = torch.arange(-radius, n + radius, device=device)
    period = 2 * n
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - 1 - idx, idx)


def gaussian_smooth(amap: torch.Tensor, sigma: float = 4.0, truncate: float = 4.0
                    ) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) maps, equal to
    ``scipy.ndimage.gaussian_filter(m, sigma, truncate=truncate, mode='reflect')``
    per map. ``sigma=0`` returns the input."""
    if sigma <= 0:
        return amap
    kernel = gaussian_kernel1d(sigma, truncate).to(amap.device, amap.dtype)
    radius = (kernel.numel() - 1) // 2
    h, w = amap.shape[-2:]
    out = amap.index_select(-1, _reflect_index(w, radius, amap.device))
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = out.index_select(-2, _reflect_index(h, radius, amap.device))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


sigma_for = scaled_sigma   # RD's 4 output pixels at 256 px, scaled to another size
