"""Defects: one function per type, ``(rng, base) -> (image, params)``, which changes
a `Base` image in float (the exact mask is taken afterwards from what changed).

Version 3 adds one defect type of its own to three families: a loose ``thread`` lying
on fabric, a ``knot`` in wood, a ``dent`` in metal sheet."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from fuadnb.data.synthetic.noise import fbm, perlin, rotate
from fuadnb.data.synthetic.sources import FOREIGN, Base, crop, source_image


def _point_in(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    """A uniformly drawn pixel centre (y, x) of a boolean region."""
    flat = np.flatnonzero(region)
    y, x = divmod(int(flat[rng.integers(flat.size)]), region.shape[1])
    return y + 0.5, x + 0.5


def _window(size: int, cy: float, cx: float, half: float) -> tuple[slice, slice]:
    """Rows and columns of the square of half-side ``half`` around (cy, cx)."""
    return (slice(max(0, int(cy - half)), min(size, int(np.ceil(cy + half)) + 1)),
            slice(max(0, int(cx - half)), min(size, int(np.ceil(cx + half)) + 1)))


def _grid_at(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a window: ``yy`` (h, 1) and ``xx`` (1, w)."""
    return (np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] + 0.5,
            np.arange(cols.start, cols.stop, dtype=np.float64)[None, :] + 0.5)


def _region(b: Base, margin: float) -> np.ndarray:
    """Where a defect may be centred: object pixels at least ``margin`` pixels inside
    the silhouette, or the image minus a ``margin`` border for textures."""
    size = b.img.shape[0]
    if b.dist is not None:
        region = b.dist > margin
        if not region.any():   # a thin object (v3's screws): half its thickness
            region = b.dist > min(margin, 0.5 * float(b.dist.max()))
        return region
    m = min(max(1, round(margin)), size // 2 - 1)
    region = np.zeros((size, size), bool)
    region[m:size - m, m:size - m] = True
    return region


def _solid(b: Base) -> np.ndarray:
    """The object's coverage with its anti-aliased rim sharpened, so that a drawn
    defect does not spill past the visible silhouette."""
    return np.clip(2 * b.fg - 0.5, 0, 1)


def _walk(rng: np.random.Generator, start: tuple[float, float], length: float,
          steps: int, turn_sd: float) -> np.ndarray:
    """Smoothed random walk: ``steps + 1`` points (x, y) of total ``length``."""
    angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, turn_sd, steps))
    step = length / steps
    xy = np.cumsum(np.stack([np.cos(angles), np.sin(angles)], 1) * step, axis=0)
    return np.vstack([[start[1], start[0]], xy + [start[1], start[0]]])


def _lines_alpha(paths: list[np.ndarray], width: float, size: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) of polylines, drawn 4x supersampled inside their
    bounding box."""
    ss = 4
    pts = np.vstack(paths)
    lo = np.clip(np.floor(pts.min(axis=0) - width - 2), 0, size).astype(int)  # (x, y)
    hi = np.clip(np.ceil(pts.max(axis=0) + width + 2), 0, size).astype(int)
    alpha = np.zeros((size, size))
    if np.any(hi <= lo):
        return alpha
    canvas = Image.new("L", (int(hi[0] - lo[0]) * ss, int(hi[1] - lo[1]) * ss))
    draw = ImageDraw.Draw(canvas)
    w = max(1, round(width * ss))
    for path in paths:
        xy = [(float(x) * ss, float(y) * ss) for x, y in (path - lo)]
        draw.line(xy, fill=255, width=w, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round caps
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    alpha[lo[1]:hi[1], lo[0]:hi[0]] = np.asarray(canvas.reduce(ss), np.float64) / 255
    return alpha


def _scratch(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    size = b.img.shape[0]
    s = size / 256
    start = _point_in(rng, _region(b, 0.1 * size))
    length = rng.uniform(0.15, 0.35) * size
    path = _walk(rng, start, length, int(rng.integers(3, 7)), 0.25)
    width = max(1.0, rng.uniform(1, 4) * s)
    alpha = _lines_alpha([path], width, size) * _solid(b)
    bright = bool(rng.random() < 0.4)
    strength = rng.uniform(0.35, 0.65)
    a = (alpha * strength)[..., None]
    img = b.img + a * (255 - b.img) if bright else b.img * (1 - a)
    return img, {"length": length, "width": width, "bright": bright,
                 "strength": strength}


def _crack(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    size = b.img.shape[0]
    s = size / 256
    start = _point_in(rng, _region(b, 0.1 * size))
    length = rng.uniform(0.2, 0.4) * size
    main = _walk(rng, start, length, max(6, int(length / (4 * s))), 0.45)
    paths = [main]
    n_branches = int(rng.integers(0, 3))
    for _ in range(n_branches):
        at = main[int(rng.integers(1, len(main) - 1))]
        sub_len = length * rng.uniform(0.25, 0.5)
        paths.append(_walk(rng, (at[1], at[0]), sub_len,
                           max(3, int(sub_len / (4 * s))), 0.45))
    width = max(1.0, rng.uniform(1, 2) * s)
    alpha = _lines_alpha(paths, width, size) * _solid(b)
    darkness = rng.uniform(0.6, 0.85)
    img = b.img * (1 - darkness * alpha)[..., None]
    return img, {"length": length, "branches": n_branches, "width": width,
                 "darkness": darkness}


def _hole(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """A pit with an irregular outline, a lit lip and a shaded cavity (textures), or a
    puncture showing the background (objects)."""
    size = b.img.shape[0]
    s = size / 256
    a, bb = rng.uniform(5, 16, 2) * s + 1
    rmax, rmin = max(a, bb), min(a, bb)
    cy, cx = _point_in(rng, _region(b, rmax + 4 * s))
    angle = rng.uniform(0, np.pi)
    light = rng.uniform(0, 2 * np.pi)
    rows, cols = _window(size, cy, cx, 1.5 * rmax + 4 * s + 2)
    yy, xx = _grid_at(rows, cols)
    v, u = rotate(yy, xx, cy, cx, angle)
    d = np.sqrt((u / a) ** 2 + (v / bb) ** 2)
    d = d + 0.12 * perlin(rng, yy / rmax * 2, xx / rmax * 2)  # irregular outline
    inside = np.clip((1 - d) * rmin + 0.5, 0, 1)[..., None]
    lip_w = max(1.0, 2.5 * s) / rmin
    lip = np.clip(1 - np.abs(d - 1 - lip_w / 2) / lip_w, 0, 1)
    facing = (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / np.maximum(
        np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2), 1)
    patch = b.img[rows, cols] * (1 - 0.35 * (lip * facing)[..., None])
    if b.bg is None:
        local = patch.mean(axis=(0, 1))
        depth = rng.uniform(0.12, 0.25)
        wall = depth + 0.35 * np.clip(d, 0, 1) ** 2 * (1 + facing)  # lit far wall
        cavity = local * wall[..., None] + 0.15 * (patch - local)
    else:
        cavity = b.bg[rows, cols]
    img = b.img.copy()
    img[rows, cols] = patch * (1 - inside) + cavity * inside
    return img, {"a": a, "b": bb, "cy": cy, "cx": cx}


def _blob(rng: np.random.Generator, size: int, cy: float, cx: float, radius: float,
          roughness: float = 0.5, edge: float = 1.5) -> np.ndarray:
    """Soft irregular blob (H, W) in [0, 1] of about ``radius`` pixels."""
    aspect = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, np.pi)
    rows, cols = _window(size, cy, cx, (0.75 + roughness) * radius + edge + 2)
    yy, xx = _grid_at(rows, cols)
    v, u = rotate(yy, xx, cy, cx, angle)
    d = np.sqrt(u**2 + (v / aspect) ** 2) / radius
    value = 1 - d + roughness * fbm(rng, yy / radius * 1.5, xx / radius * 1.5, 3)
    out = np.zeros((size, size))
    out[rows, cols] = np.clip((value - 0.3) * radius / edge, 0, 1)
    return out


_STAIN_COLOURS = ((62.0, 42.0, 24.0), (22.0, 22.0, 26.0), (150.0, 72.0, 32.0),
                  (205.0, 185.0, 96.0), (236.0, 236.0, 226.0))


def _stain(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    size = b.img.shape[0]
    radius = rng.uniform(0.05, 0.12) * size
    cy, cx = _point_in(rng, _region(b, 0.5 * radius))
    colour = int(rng.integers(len(_STAIN_COLOURS)))
    opacity = rng.uniform(0.35, 0.7)
    alpha = _blob(rng, size, cy, cx, radius, edge=max(1.0, 3 * size / 256))
    alpha = (alpha * opacity * _solid(b))[..., None]
    img = b.img * (1 - alpha) + np.asarray(_STAIN_COLOURS[colour]) * alpha
    return img, {"radius": radius, "colour": colour, "opacity": opacity,
                 "cy": cy, "cx": cx}


def _draem_mask(rng: np.random.Generator, size: int, cy: float, cx: float,
                radius: float) -> np.ndarray:
    """DRAEM's rotated Perlin mask (scale 2**[1, 4) per axis, threshold 0.5),
    confined to a disc of ``radius`` pixels (float 0/1, H x W)."""
    ry, rx = 2 ** rng.integers(1, 4, 2)
    angle = np.deg2rad(rng.uniform(-90, 90))
    rows, cols = _window(size, cy, cx, radius)
    yy, xx = _grid_at(rows, cols)
    v, u = rotate(yy, xx, size / 2, size / 2, angle)
    noise = perlin(rng, v * ry / size, u * rx / size)
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius**2
    out = np.zeros((size, size))
    out[rows, cols] = (noise + 0.6 * np.clip(1 - d2, 0, 1) > 0.5) & (d2 < 1)
    return out


def _foreign_texture(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """DRAEM: a Perlin-shaped region filled from another texture, augmented."""
    size = b.img.shape[0]
    names = [n for n in FOREIGN if n != b.info["source"]]
    name = names[int(rng.integers(len(names)))]
    src, _ = crop(rng, source_image(name), size, True)
    if src.ndim == 2:
        src = src[..., None] * rng.uniform(0.6, 1.2, 3)  # random tint
    gamma = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    src = 255 * (np.clip(src, 0, 255) / 255) ** gamma
    src = src * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30)
    radius = rng.uniform(0.12, 0.25) * size
    cy, cx = _point_in(rng, _region(b, 0.3 * radius))
    mask = (_draem_mask(rng, size, cy, cx, radius) * _solid(b))[..., None]
    beta = rng.uniform(0, 0.8)
    img = b.img * (1 - mask) + (1 - beta) * src * mask + beta * b.img * mask
    return img, {"source": name, "beta": beta, "gamma": gamma, "radius": radius}


def _cutpaste(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """CutPaste: a rectangle of the same image, jittered, pasted elsewhere."""
    size = b.img.shape[0]
    area = rng.uniform(0.015, 0.05) * size * size
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3)))
    h = int(np.clip(round(np.sqrt(area * aspect)), 2, size // 2))
    w = int(np.clip(round(area / h), 2, size // 2))
    sy, sx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
    while True:  # the pasted patch must not land on its own source
        dy, dx = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        if abs(dy - sy) >= h / 2 or abs(dx - sx) >= w / 2:
            break
    patch = b.img[sy:sy + h, sx:sx + w]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    brightness = rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)
    contrast = rng.uniform(0.85, 1.15)
    mean = patch.mean(axis=(0, 1))
    patch = ((patch - mean) * contrast + mean) * (1 + brightness)
    img = b.img.copy()
    img[dy:dy + h, dx:dx + w] = patch
    return img, {"h": h, "w": w, "src": [int(sy), int(sx)], "dst": [int(dy), int(dx)],
                 "brightness": brightness, "contrast": contrast}


def _missing(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """A chip bitten out of the silhouette, showing the background."""
    size = b.img.shape[0]
    cy, cx = _point_in(rng, (b.dist > 0) & (b.dist <= 1.5))  # on the rim
    radius = rng.uniform(0.05, 0.1) * size
    bite = _blob(rng, size, cy, cx, radius, roughness=0.3, edge=0.75)
    erase = (bite * b.fg)[..., None]
    img = b.img * (1 - erase) + b.bg * erase
    return img, {"radius": radius, "cy": cy, "cx": cx}


def _color(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """MemSeg-style discolouration: a hue and brightness shift inside a Perlin blob
    on the object."""
    size = b.img.shape[0]
    radius = rng.uniform(0.07, 0.14) * size
    cy, cx = _point_in(rng, _region(b, 0.3 * radius))
    alpha = _blob(rng, size, cy, cx, radius, edge=3 * size / 256) * _solid(b)
    grey = np.ones(3) / np.sqrt(3)
    hue = rng.standard_normal(3)
    hue -= hue @ grey * grey  # chroma direction, orthogonal to the grey axis
    hue /= np.linalg.norm(hue)
    chroma = rng.uniform(0.15, 0.35)
    brightness = rng.choice([-1, 1]) * rng.uniform(0.1, 0.25)
    factor = (1 + brightness) * (1 + chroma * hue)
    img = b.img * (1 + alpha[..., None] * (factor - 1))
    return img, {"radius": radius, "chroma": chroma, "brightness": brightness,
                 "hue": [float(h) for h in hue]}


_YARNS = ((236.0, 232.0, 220.0), (30.0, 30.0, 36.0), (180.0, 40.0, 40.0),
          (60.0, 100.0, 170.0))


def _thread(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """Fabric: a loose thread of another yarn lying across the cloth, gently curved,
    its twist showing as a light and dark stripe along it."""
    size = b.img.shape[0]
    s = size / 256
    start = _point_in(rng, _region(b, 0.15 * size))
    length = rng.uniform(0.25, 0.5) * size
    path = _walk(rng, start, length, int(rng.integers(4, 8)), 0.18)
    width = max(1.0, rng.uniform(2, 4) * s)
    alpha = _lines_alpha([path], width, size)
    yarn = int(rng.integers(len(_YARNS)))
    opacity = rng.uniform(0.6, 0.9)
    yy, xx = np.indices((size, size)) + 0.5
    twist = 1 + 0.15 * np.sin((yy + xx) * 2.2 / max(1.0, s * 4))
    colour = np.asarray(_YARNS[yarn]) * twist[..., None]
    a = (alpha * opacity)[..., None]
    img = b.img * (1 - a) + colour * a
    return img, {"length": length, "width": width, "yarn": yarn,
                 "opacity": opacity}


def _knot(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """Wood: a knot, a dark elliptical core inside rings, stretched along the
    grain (x)."""
    size = b.img.shape[0]
    a = rng.uniform(0.05, 0.1) * size
    bb = a * rng.uniform(0.45, 0.75)
    cy, cx = _point_in(rng, _region(b, a))
    rows, cols = _window(size, cy, cx, 1.4 * a + 2)
    yy, xx = _grid_at(rows, cols)
    d = np.sqrt(((xx - cx) / a) ** 2 + ((yy - cy) / bb) ** 2)
    d = d + 0.08 * perlin(rng, yy / a * 2, xx / a * 2)
    cover = np.clip((1.15 - d) * bb / 1.5, 0, 1)
    rings = 0.5 + 0.5 * np.cos(2 * np.pi * 3 * d)
    darkness = np.clip(0.75 * np.exp(-(d / 0.45) ** 2) + 0.25 * rings * (d < 1.1),
                       0, 1)
    core = np.asarray((74.0, 44.0, 24.0)) * rng.uniform(0.7, 1.2)
    k = (cover * darkness * rng.uniform(0.6, 0.9))[..., None]
    img = b.img.copy()
    img[rows, cols] = b.img[rows, cols] * (1 - k) + core * k
    return img, {"a": a, "b": bb, "cy": cy, "cx": cx}


def _dent(rng: np.random.Generator, b: Base) -> tuple[np.ndarray, dict]:
    """Metal: a shallow round dent, lit from one side: the slope facing the light
    brightens, the other darkens (the shading of a Gaussian hollow)."""
    size = b.img.shape[0]
    sigma = rng.uniform(0.03, 0.06) * size
    cy, cx = _point_in(rng, _region(b, 2 * sigma))
    rows, cols = _window(size, cy, cx, 3 * sigma + 1)
    yy, xx = _grid_at(rows, cols)
    dy, dx = (yy - cy) / sigma, (xx - cx) / sigma
    depth = np.exp(-(dy**2 + dx**2) / 2)
    light = rng.uniform(0, 2 * np.pi)
    slope = (np.cos(light) * dx + np.sin(light) * dy) * depth  # -d(depth)/dn, scaled
    strength = rng.uniform(0.3, 0.55)
    shade = 1 + strength * slope - 0.1 * depth
    img = b.img.copy()
    img[rows, cols] = b.img[rows, cols] * shade[..., None]
    return img, {"sigma": sigma, "cy": cy, "cx": cx, "strength": strength,
                 "light_deg": np.rad2deg(light)}


_DefectFn = Callable[[np.random.Generator, Base], tuple[np.ndarray, dict]]
DEFECT_FNS: dict[str, _DefectFn] = {
    "color": _color, "crack": _crack, "cutpaste": _cutpaste,
    "foreign_texture": _foreign_texture, "hole": _hole, "missing": _missing,
    "scratch": _scratch, "stain": _stain,
    # version 3
    "dent": _dent, "knot": _knot, "thread": _thread}
