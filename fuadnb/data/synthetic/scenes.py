"""Normal images: one renderer per category, ``(rng, size) -> Base``: three real
textures cropped from scikit-image photographs, two procedural textures (weave,
wood), and three objects on a backdrop (washer, capsule, a real coin)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from fuadnb.data.synthetic.noise import grid, perlin, rotate
from fuadnb.data.synthetic.sources import Base, crop, source_image

# name: (source, palette stops (grey level, RGB), random 90-degree rotations). The
# palette maps the grey source to colour; brick keeps its course direction.
_REAL_TEXTURES = {
    "brick": ("skimage.data.brick",
              ((0, (24, 12, 8)), (105, (152, 74, 52)), (200, (224, 216, 202)),
               (255, (244, 238, 228))), False),
    "grass": ("skimage.data.grass",
              ((0, (4, 10, 2)), (118, (74, 118, 40)), (255, (204, 232, 150))), True),
    "gravel": ("skimage.data.gravel",
               ((0, (8, 8, 8)), (126, (130, 124, 113)), (255, (246, 242, 232))), True),
}


def _palette(grey: np.ndarray, stops: tuple) -> np.ndarray:
    """Grey levels (H, W) to RGB (H, W, 3) by piecewise-linear colour stops."""
    levels = [level for level, _ in stops]
    return np.stack([np.interp(grey, levels, [rgb[c] for _, rgb in stops])
                     for c in range(3)], axis=-1)


def _real_texture(name: str) -> Callable[[np.random.Generator, int], Base]:
    source, stops, turn = _REAL_TEXTURES[name]

    def render(rng: np.random.Generator, size: int) -> Base:
        grey, info = crop(rng, source_image(source), size, turn)
        gain = rng.uniform(0.95, 1.05)  # mild exposure change
        img = _palette(grey, stops) * gain
        noise = rng.normal(0.0, 2.0, (size, size, 1))  # luminance noise
        info["gain"] = gain
        return Base(img, noise, np.ones((size, size)), None, None, info)

    return render


def _weave(rng: np.random.Generator, size: int) -> Base:
    """Plain weave: warp (vertical) and weft (horizontal) threads alternate on top."""
    yy, xx = grid(size)
    period = size / 16 * rng.uniform(0.97, 1.03)
    py, px = rng.uniform(0, 2, 2)
    u, v = xx / period + px, yy / period + py  # thread coordinates, (1, W) and (H, 1)
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    warp_on_top = (iu + iv) % 2 == 0  # (H, W)
    n = int(size / period) + 4
    warp_gain = (1 + 0.07 * rng.standard_normal(n))[iu.astype(int) % n]  # dye jitter
    weft_gain = (1 + 0.07 * rng.standard_normal(n))[iv.astype(int) % n]
    warp = np.sin(np.pi * fu) ** 0.7 * (0.6 + 0.4 * np.sin(np.pi * fv)) * warp_gain
    weft = np.sin(np.pi * fv) ** 0.7 * (0.6 + 0.4 * np.sin(np.pi * fu)) * weft_gain
    shade = np.where(warp_on_top, warp, weft)
    fibre = perlin(rng, np.where(warp_on_top, 1.5, 6.0) * yy / period,
                    np.where(warp_on_top, 6.0, 1.5) * xx / period)  # along the thread
    mottle = perlin(rng, yy / size * 3, xx / size * 3)
    warp_rgb = np.array([118.0, 104.0, 92.0])
    weft_rgb = np.array([168.0, 150.0, 124.0])
    colour = np.where(warp_on_top[..., None], warp_rgb, weft_rgb)
    light = (0.35 + 0.75 * shade + 0.08 * fibre + 0.06 * mottle)[..., None]
    img = colour * light * rng.uniform(0.96, 1.04)
    noise = rng.normal(0.0, 2.0, (size, size, 1))  # luminance noise
    info = {"period": period, "phase_y": py, "phase_x": px}
    return Base(img, noise, np.ones((size, size)), None, None, info)


def _wood(rng: np.random.Generator, size: int) -> Base:
    """Plank: growth rings around a pith far to the left, distorted by Perlin noise;
    each ring darkens gradually (latewood) and ends abruptly."""
    s = size / 256
    yy, xx = grid(size)
    cy = rng.uniform(-0.5, 1.5) * size
    cx = -rng.uniform(2.0, 4.0) * size
    r = np.sqrt(((xx - cx) * 0.12) ** 2 + (yy - cy) ** 2) / size
    warp = perlin(rng, yy / size * 3, xx / size * 0.8)
    freq = 20 * rng.uniform(0.9, 1.1)
    t = (freq * (r + 0.025 * warp) + rng.uniform()) % 1.0  # position in the ring
    late = np.clip((t - 0.45) / 0.5, 0, 1) ** 2 * np.clip((1 - t) / 0.06, 0, 1)
    grain = perlin(rng, yy / max(2.0, 3 * s), xx / size * 5)  # fibres along x
    light = np.array([208.0, 163.0, 114.0])
    dark = np.array([138.0, 90.0, 52.0])
    mix = np.clip(0.9 * late + 0.1 * grain + 0.05, 0, 1)[..., None]
    img = (light * (1 - mix) + dark * mix) * rng.uniform(0.95, 1.05)
    noise = rng.normal(0.0, 2.0, (size, size, 1))  # luminance noise
    info = {"pith_y": cy / size, "pith_x": cx / size, "freq": freq}
    return Base(img, noise, np.ones((size, size)), None, None, info)


def _backdrop(rng: np.random.Generator, size: int, rgb: tuple[float, float, float],
              fg: np.ndarray, light: float) -> np.ndarray:
    """Uniform background (H, W, 3) with a soft gradient and the object's shadow."""
    yy, xx = grid(size)
    along = np.cos(light) * (xx - size / 2) + np.sin(light) * (yy - size / 2)
    grad = 1 + 0.06 * along / size
    off = max(1, round(0.025 * size))
    dy, dx = round(-off * np.sin(light)), round(-off * np.cos(light))
    shadow = np.zeros_like(fg)  # fg shifted away from the light
    shadow[max(dy, 0):size + min(dy, 0), max(dx, 0):size + min(dx, 0)] = fg[
        max(-dy, 0):size + min(-dy, 0), max(-dx, 0):size + min(-dx, 0)]
    k = max(3, round(0.04 * size))
    shadow = ndi.uniform_filter(ndi.uniform_filter(shadow, k), k)  # ~Gaussian blur
    return (np.asarray(rgb) * (grad * (1 - 0.45 * shadow))[..., None]
            * rng.uniform(0.95, 1.05))


def _washer(rng: np.random.Generator, size: int) -> Base:
    """Flat steel washer: bevelled rims, concentric machining marks."""
    s = size / 256
    yy, xx = grid(size)
    cy, cx = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * s
    r_out = 0.36 * size * rng.uniform(0.99, 1.01)
    r_in = 0.15 * size * rng.uniform(0.99, 1.01)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    fg = np.clip(r_out - r + 0.5, 0, 1) * np.clip(r - r_in + 0.5, 0, 1)
    light = np.deg2rad(225 + rng.uniform(-15, 15))  # from the upper left
    facing = (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / np.maximum(r, 1)
    bevel = 0.035 * size
    outer = np.clip(1 - (r_out - r) / bevel, 0, 1)
    inner = np.clip(1 - (r - r_in) / bevel, 0, 1)
    marks = perlin(rng, r / size * 120, np.full((1, 1), 0.5))  # machining rings
    brightness = (0.62 + 0.05 * facing + 0.45 * (outer - inner) * facing
                  + 0.05 * marks)
    metal = np.array([168.0, 172.0, 178.0]) * brightness[..., None]
    bg = _backdrop(rng, size, (44.0, 44.0, 48.0), fg, light)
    img = bg * (1 - fg[..., None]) + metal * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))  # luminance noise
    info = {"cy": cy, "cx": cx, "light_deg": np.rad2deg(light)}
    return Base(img, noise, fg, bg, None, info)


@lru_cache(maxsize=8)
def _imprint(size: int) -> np.ndarray:
    """The capsule print "500", drawn once at the centre of a (size, size) canvas."""
    canvas = Image.new("L", (size, size))
    font = ImageFont.load_default(size=max(6, round(0.1 * size)))
    ImageDraw.Draw(canvas).text((size / 2, size / 2), "500", fill=255, font=font,
                                anchor="mm")
    return np.asarray(canvas, np.float64) / 255


def _capsule(rng: np.random.Generator, size: int) -> Base:
    """Two-tone gelatin capsule with a printed code, small shift and rotation."""
    s = size / 256
    yy, xx = grid(size)
    cy, cx = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * s
    angle = np.deg2rad(rng.uniform(-3, 3))
    v, u = rotate(yy, xx, cy, cx, angle)  # u along the axis, v across
    half, radius = 0.28 * size, 0.125 * size
    axis_dist = np.sqrt(np.maximum(np.abs(u) - half, 0) ** 2 + v**2)
    fg = np.clip(radius - axis_dist + 0.5, 0, 1)
    q = np.clip(axis_dist / radius, 0, 1)
    light_y = rng.uniform(-0.45, -0.3)
    shade = 0.55 + 0.45 * np.sqrt(1 - q**2)
    highlight = 0.2 * np.exp(-(((v / radius) - light_y) / 0.16) ** 2) * (q < 0.98)
    seam = np.clip(u + 0.5, 0, 1)[..., None]  # anti-aliased colour boundary
    red = np.array([182.0, 58.0, 46.0])
    cream = np.array([226.0, 214.0, 186.0])
    body = (red * (1 - seam) + cream * seam) * shade[..., None] + 255 * highlight[
        ..., None]
    ink = ndi.map_coordinates(_imprint(size), [v + size / 2, u - half / 2 + size / 2],
                              order=1)
    body = body * (1 - 0.8 * ink[..., None])
    bg = _backdrop(rng, size, (196.0, 198.0, 202.0), fg, np.deg2rad(250.0))
    gain = rng.uniform(0.96, 1.04)
    img = bg * (1 - fg[..., None]) + body * gain * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))  # luminance noise
    info = {"cy": cy, "cx": cx, "angle_deg": np.rad2deg(angle)}
    return Base(img, noise, fg, bg, None, info)


# Coins in skimage.data.coins(): (row, column, radius) of the 24 coins, found with a
# circular Hough transform on Canny edges (sigma 2.5) of the image with
# SOURCE_SHA256["skimage.data.coins"].
_COINS = ((54, 47, 19), (56, 98, 17), (50, 155, 23), (52, 215, 23), (52, 277, 20),
          (44, 335, 29), (125, 45, 21), (125, 103, 18), (127, 156, 17), (124, 204, 19),
          (119, 272, 24), (124, 336, 19), (197, 44, 19), (195, 102, 22), (198, 154, 19),
          (193, 212, 23), (193, 272, 21), (186, 347, 31), (260, 46, 28), (266, 114, 21),
          (261, 176, 25), (264, 243, 23), (264, 300, 25), (268, 361, 20))


@cache
def _coin_patch(i: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey patch and soft silhouette of coin ``i``, centred, side 2 (r + 8)."""
    from skimage.morphology import convex_hull_image

    row, col, r = _COINS[i]
    half = r + 8
    src = source_image("skimage.data.coins").astype(np.float64)
    pad = np.pad(src, half, mode="edge")
    patch = pad[row:row + 2 * half, col:col + 2 * half]
    yy, xx = grid(2 * half)
    disk = (yy - half) ** 2 + (xx - half) ** 2 <= (r + 4) ** 2
    smooth = ndi.gaussian_filter(patch, 1.0)
    thr = 0.5 * (np.median(smooth[~disk]) + np.median(smooth[disk]))
    mask = ndi.binary_opening((smooth > thr) & disk, iterations=2)
    labels, n = ndi.label(mask)
    if n > 1:
        sizes = ndi.sum(mask, labels, range(1, n + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    mask = convex_hull_image(mask)  # dark relief must not bite into the silhouette
    alpha = ndi.gaussian_filter(mask.astype(np.float64), 0.6)
    return patch, alpha


def _affine(arr: np.ndarray, matrix: np.ndarray, offset: np.ndarray, size: int,
            resample: Image.Resampling) -> np.ndarray:
    """Sample ``arr`` at ``matrix @ (y, x) + offset`` for every output pixel centre
    (continuous coordinates, pixel centres at +0.5), Pillow's affine transform."""
    (m00, m01), (m10, m11) = matrix
    data = (m11, m10, offset[1], m01, m00, offset[0])  # Pillow works in (x, y)
    img = Image.fromarray(arr.astype(np.float32), mode="F")
    out = img.transform((size, size), Image.Transform.AFFINE, data, resample=resample)
    return np.asarray(out, np.float64)


def _coin(rng: np.random.Generator, size: int) -> Base:
    """One of the 24 real coins, rotated freely and scaled to a common radius, on a
    uniform cloth."""
    s = size / 256
    i = int(rng.integers(len(_COINS)))
    patch, alpha = _coin_patch(i)
    radius = 0.3 * size * rng.uniform(0.98, 1.02)
    scale = _COINS[i][2] / radius  # source pixels per output pixel
    angle = rng.uniform(0, 2 * np.pi)
    centre = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * s
    c, sn = np.cos(angle), np.sin(angle)
    matrix = scale * np.array([[c, -sn], [sn, c]])
    offset = patch.shape[0] / 2 - matrix @ centre
    grey = _affine(patch, matrix, offset, size, Image.Resampling.BICUBIC)
    fg = np.clip(_affine(alpha, matrix, offset, size, Image.Resampling.BILINEAR), 0, 1)
    light = np.deg2rad(rng.uniform(200, 250))
    gain = rng.uniform(0.92, 1.08)
    metal = grey[..., None] * np.array([1.06, 1.0, 0.9]) * gain
    bg = _backdrop(rng, size, (52.0, 60.0, 72.0), fg, light)
    img = bg * (1 - fg[..., None]) + metal * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))  # luminance noise
    info = {"coin": i, "angle_deg": np.rad2deg(angle), "cy": centre[0],
            "cx": centre[1]}
    return Base(img, noise, fg, bg, None, info)


RENDERERS: dict[str, Callable[[np.random.Generator, int], Base]] = {
    "brick": _real_texture("brick"), "capsule": _capsule, "coin": _coin,
    "grass": _real_texture("grass"), "gravel": _real_texture("gravel"),
    "washer": _washer, "weave": _weave, "wood": _wood,
}
