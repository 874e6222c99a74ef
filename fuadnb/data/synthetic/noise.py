"""Perlin gradient noise evaluated at arbitrary points, and the pixel coordinates the
scenes and defects evaluate it on; numpy only, drawn from the caller's generator.

The training-time anomalies (`fuadnb.data.anomalies`) keep their own torch Perlin: it
follows URD's lattice-aligned ``rand_perlin_2d`` with a ``torch.Generator``, this one
DRAEM's numpy version at rotated and stretched points, and each module's output is
pinned (the benchmark's bytes, RD-E's anomalies), so neither can take the other's.
"""

from __future__ import annotations

import numpy as np


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6 - 15) + 10)


def perlin(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient noise at lattice coordinates ``y``, ``x`` (broadcastable arrays).

    DRAEM ``perlin.py`` ``rand_perlin_2d_np``, evaluated at arbitrary points so that
    the lattice can be rotated and stretched. Values lie in about [-1, 1].
    """
    y = y - np.floor(y.min())
    x = x - np.floor(x.min())
    nx = int(x.max()) + 2
    angles = rng.random((int(y.max()) + 2, nx)) * (2 * np.pi)
    gy, gx = np.sin(angles).ravel(), np.cos(angles).ravel()
    y0, x0 = np.floor(y), np.floor(x)
    fy, fx = y - y0, x - x0
    idx = y0.astype(np.intp) * nx + x0.astype(np.intp)  # flat index of the corner

    def corner(offset: int, dy: int, dx: int) -> np.ndarray:
        i = idx + offset
        return gy.take(i) * (fy - dy) + gx.take(i) * (fx - dx)

    n00, n01 = corner(0, 0, 0), corner(1, 0, 1)
    n10, n11 = corner(nx, 1, 0), corner(nx + 1, 1, 1)
    u, v = _fade(fx), _fade(fy)
    top = n00 + u * (n01 - n00)
    bottom = n10 + u * (n11 - n10)
    return np.sqrt(2) * (top + v * (bottom - top))


def fbm(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, octaves: int,
        gain: float = 0.5) -> np.ndarray:
    """Fractal sum of `perlin` octaves (frequency x2, amplitude x`gain`), ~[-1, 1]."""
    total, norm = 0.0, 0.0
    for octave in range(octaves):
        amp = gain**octave
        total = total + amp * perlin(rng, y * 2**octave, x * 2**octave)
        norm += amp
    return total / norm


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: ``yy`` (H, 1) and ``xx`` (1, W)."""
    c = np.arange(size, dtype=np.float64) + 0.5
    return c[:, None], c[None, :]


def rotate(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float,
           angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cy, cx) in a frame rotated by ``angle`` radians."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    return -s * dx + c * dy, c * dx + s * dy
