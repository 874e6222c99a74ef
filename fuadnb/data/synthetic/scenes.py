"""Normal images: one renderer per category, ``(rng, size) -> Base``.

Version 2: three real textures cropped from scikit-image photographs, two procedural
textures (weave, wood), and three objects on a backdrop (washer, capsule, a real
coin). Version 3 adds, family by family, parameterised members of one scene generator
each: real textures at other palettes and scales (`_REAL_TEXTURES_V3`: stone,
masonry, foliage), `_woven` (fabric), `_grain` (wood), `_granite` (stone), `_tiles`
(masonry), `_brushed` (metal), `_button` (discs), `_pill` (pills), `_fastener`
(screws), `_bottle` and `_cap` (bottles)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage as ndi

from fuadnb.data.synthetic.noise import fbm, grid, perlin, rotate
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


# v3: name -> (source, palette stops, rotations, source pixels per crop)
_REAL_TEXTURES_V3 = {
    "pebbles": ("skimage.data.gravel",
                ((0, (30, 20, 12)), (120, (168, 140, 104)), (255, (250, 236, 210))),
                True, 128),
    "brick_grey": ("skimage.data.brick",
                   ((0, (20, 20, 22)), (105, (118, 118, 116)), (200, (196, 196, 192)),
                    (255, (232, 232, 228))), False, 384),
    "straw": ("skimage.data.grass",
              ((0, (30, 22, 6)), (118, (170, 140, 70)), (255, (245, 230, 170))),
              True, 256),
    "moss": ("skimage.data.grass",
             ((0, (2, 12, 4)), (118, (40, 90, 30)), (255, (150, 200, 90))), True,
             256),
}


def _real_texture(name: str) -> Callable[[np.random.Generator, int], Base]:
    if name in _REAL_TEXTURES:
        source, stops, turn = _REAL_TEXTURES[name]
        window = None
    else:
        source, stops, turn, window = _REAL_TEXTURES_V3[name]

    def render(rng: np.random.Generator, size: int) -> Base:
        if window is None:   # v2's files, byte for byte
            grey, info = crop(rng, source_image(source), size, turn)
        else:
            grey, info = crop(rng, source_image(source), size, turn, window)
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


# ---------------------------------------------------------------- version 3 families


def _woven(pattern: str, threads: int, warp_rgb: tuple, weft_rgb: tuple
           ) -> Callable[[np.random.Generator, int], Base]:
    """Fabric: woven cloth, ``threads`` per side, ``pattern`` ``"plain"``,
    ``"twill"`` (2/1, diagonal ribs) or ``"basket"`` (pairs of threads)."""

    def render(rng: np.random.Generator, size: int) -> Base:
        yy, xx = grid(size)
        period = size / threads * rng.uniform(0.97, 1.03)
        py, px = rng.uniform(0, 6, 2)
        u, v = xx / period + px, yy / period + py
        iu, iv = np.floor(u), np.floor(v)
        fu, fv = u - iu, v - iv
        if pattern == "plain":
            on_top = (iu + iv) % 2 == 0
        elif pattern == "twill":
            on_top = (iu - iv) % 3 != 0
        else:
            on_top = (iu // 2 + iv // 2) % 2 == 0
        n = int(size / period) + 8
        warp_gain = (1 + 0.06 * rng.standard_normal(n))[iu.astype(int) % n]
        weft_gain = (1 + 0.06 * rng.standard_normal(n))[iv.astype(int) % n]
        warp = (np.sin(np.pi * fu) ** 0.7 * (0.65 + 0.35 * np.sin(np.pi * fv))
                * warp_gain)
        weft = (np.sin(np.pi * fv) ** 0.7 * (0.65 + 0.35 * np.sin(np.pi * fu))
                * weft_gain)
        shade = np.where(on_top, warp, weft)
        mottle = perlin(rng, yy / size * 3, xx / size * 3)
        colour = np.where(on_top[..., None], np.asarray(warp_rgb, float),
                          np.asarray(weft_rgb, float))
        light = (0.4 + 0.7 * shade + 0.06 * mottle)[..., None]
        img = colour * light * rng.uniform(0.96, 1.04)
        noise = rng.normal(0.0, 2.0, (size, size, 1))
        info = {"period": period, "phase_y": py, "phase_x": px}
        return Base(img, noise, np.ones((size, size)), None, None, info)

    return render


def _grain(light_rgb: tuple, dark_rgb: tuple, freq: float, warp: float,
           fibre: float) -> Callable[[np.random.Generator, int], Base]:
    """Wood: `_wood`'s growth rings at another colour, ring frequency, ring
    distortion and fibre strength."""

    def render(rng: np.random.Generator, size: int) -> Base:
        yy, xx = grid(size)
        cy = rng.uniform(-0.5, 1.5) * size
        cx = -rng.uniform(2.0, 4.0) * size
        r = np.sqrt(((xx - cx) * 0.12) ** 2 + (yy - cy) ** 2) / size
        bend = perlin(rng, yy / size * 3, xx / size * 0.8)
        f = freq * rng.uniform(0.9, 1.1)
        t = (f * (r + warp * bend) + rng.uniform()) % 1.0
        late = np.clip((t - 0.45) / 0.5, 0, 1) ** 2 * np.clip((1 - t) / 0.06, 0, 1)
        fibres = perlin(rng, yy / size * 48, xx / size * 4)
        mix = np.clip(0.85 * late + fibre * fibres + 0.05, 0, 1)[..., None]
        img = (np.asarray(light_rgb, float) * (1 - mix)
               + np.asarray(dark_rgb, float) * mix) * rng.uniform(0.95, 1.05)
        noise = rng.normal(0.0, 2.0, (size, size, 1))
        info = {"pith_y": cy / size, "pith_x": cx / size, "freq": f}
        return Base(img, noise, np.ones((size, size)), None, None, info)

    return render


def _granite(rng: np.random.Generator, size: int) -> Base:
    """Stone: polished granite, grey quartz with pink feldspar and black mica
    grains (thresholded Perlin noise at a fixed share of the image)."""
    yy, xx = grid(size)
    y, x = yy / size, xx / size
    mica = fbm(rng, y * 20, x * 20, 2)
    feldspar = fbm(rng, y * 10, x * 10, 2)
    cloud = perlin(rng, y * 3, x * 3)
    quartz = np.array([176.0, 172.0, 168.0]) * (1 + 0.08 * cloud)[..., None]
    pink = np.clip((feldspar - 0.15) * 6, 0, 1)[..., None]
    black = np.clip((mica - 0.3) * 6, 0, 1)[..., None]
    img = quartz * (1 - pink) + np.array([198.0, 136.0, 120.0]) * pink
    img = img * (1 - black) + np.array([38.0, 36.0, 40.0]) * black
    img = img * rng.uniform(0.95, 1.05)
    noise = rng.normal(0.0, 2.0, (size, size, 1))
    return Base(img, noise, np.ones((size, size)), None, None, {})


def _tiles(rng: np.random.Generator, size: int) -> Base:
    """Masonry: square glazed tiles (4 per side) with grout lines; each tile's glaze
    a little different."""
    yy, xx = grid(size)
    period = size / 4 * rng.uniform(0.98, 1.02)
    oy, ox = rng.uniform(0, period, 2)
    u, v = (xx + ox) / period, (yy + oy) / period
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) * period  # px
    grout_w = max(0.75, 0.035 * period)
    grout = np.clip(grout_w - edge + 0.5, 0, 1)[..., None]
    gains = 1 + 0.035 * rng.standard_normal((8, 8))
    gain = gains[iv.astype(int) % 8, iu.astype(int) % 8]
    bevel = np.clip(1 - (edge - grout_w) / (0.1 * period), 0, 1)
    lit = np.where(np.minimum(fu, fv) < np.minimum(1 - fu, 1 - fv), 1.0, -1.0)
    glaze = (gain * (1 + 0.03 * perlin(rng, yy / size * 4, xx / size * 4))
             + 0.12 * bevel * lit)[..., None]
    tile = np.array([206.0, 214.0, 222.0]) * glaze
    mortar = np.array([124.0, 118.0, 110.0]) * (
        1 + 0.08 * perlin(rng, yy / size * 24, xx / size * 24))[..., None]
    img = (tile * (1 - grout) + mortar * grout) * rng.uniform(0.97, 1.03)
    noise = rng.normal(0.0, 2.0, (size, size, 1))
    return Base(img, noise, np.ones((size, size)), None, None,
                {"period": period, "offset_y": oy, "offset_x": ox})


def _brushed(rgb: tuple, angle_deg: float, streaks: float
             ) -> Callable[[np.random.Generator, int], Base]:
    """Metal: sheet brushed along ``angle_deg`` (fine streaks across it, of
    strength ``streaks``; 0: blasted, isotropic grain) with a soft sheen."""

    def render(rng: np.random.Generator, size: int) -> Base:
        yy, xx = grid(size)
        angle = np.deg2rad(angle_deg + rng.uniform(-2, 2))
        v, u = rotate(yy, xx, size / 2, size / 2, angle)
        if streaks > 0:
            grain = streaks * fbm(rng, v / size * 40, u / size * 1.5, 2)
        else:
            grain = 0.1 * fbm(rng, yy / size * 24, xx / size * 24, 2)
        sheen = rng.uniform(0.05, 0.2) * np.cos(2 * np.pi * (u / size * 0.6
                                                            + rng.uniform()))
        blotch = 0.08 * perlin(rng, yy / size * 2, xx / size * 2)
        img = np.asarray(rgb, float) * (0.85 + grain + sheen + blotch)[..., None]
        img = img * rng.uniform(0.96, 1.04)
        noise = rng.normal(0.0, 1.5, (size, size, 1))
        info = {"angle_deg": np.rad2deg(angle)}
        return Base(img, noise, np.ones((size, size)), None, None, info)

    return render


def _centre(rng: np.random.Generator, size: int) -> tuple[float, float]:
    """An object's centre: the image centre moved by at most 2 px at 256 px."""
    cy, cx = size / 2 + np.clip(rng.normal(0, 1.0, 2), -2, 2) * size / 256
    return float(cy), float(cx)


def _button(rng: np.random.Generator, size: int) -> Base:
    """Discs: a plastic sewing button with a raised rim and four holes (the hole
    pattern turned at random)."""
    yy, xx = grid(size)
    cy, cx = _centre(rng, size)
    big = 0.36 * size * rng.uniform(0.99, 1.01)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    turn = rng.uniform(0, np.pi / 2)
    fg = np.clip(big - r + 0.5, 0, 1)
    hole_r, ring = 0.05 * size, 0.11 * size
    for k in range(4):
        hy = cy + ring * np.sin(turn + k * np.pi / 2)
        hx = cx + ring * np.cos(turn + k * np.pi / 2)
        fg = fg * np.clip(np.sqrt((yy - hy) ** 2 + (xx - hx) ** 2) - hole_r + 0.5,
                          0, 1)
    light = np.deg2rad(225 + rng.uniform(-15, 15))
    facing = (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / np.maximum(r, 1)
    rim_w = 0.07 * size
    rim = np.clip(1 - np.abs(r - (big - rim_w / 2)) / (rim_w / 2), 0, 1)
    dish = np.clip(r / (big - rim_w), 0, 1) ** 2
    brightness = 0.78 - 0.1 * dish * facing + 0.3 * rim * facing + 0.1 * rim
    plastic = np.array([46.0, 96.0, 168.0]) * brightness[..., None]
    bg = _backdrop(rng, size, (212.0, 206.0, 194.0), fg, light)
    img = bg * (1 - fg[..., None]) + plastic * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))
    info = {"cy": cy, "cx": cx, "turn_deg": np.rad2deg(turn)}
    return Base(img, noise, fg, bg, None, info)


def _pill(colour_a: tuple, colour_b: tuple, half: float, radius: float,
          gloss: float, groove: bool, backdrop: tuple
          ) -> Callable[[np.random.Generator, int], Base]:
    """Pills: `_capsule`'s rounded body at another length (``half``), radius,
    colours (``colour_a`` left, ``colour_b`` right), gloss, with a score line
    (``groove``) instead of a print."""

    def render(rng: np.random.Generator, size: int) -> Base:
        yy, xx = grid(size)
        cy, cx = _centre(rng, size)
        angle = np.deg2rad(rng.uniform(-3, 3))
        v, u = rotate(yy, xx, cy, cx, angle)
        h, rad = half * size, radius * size
        axis_dist = np.sqrt(np.maximum(np.abs(u) - h, 0) ** 2 + v**2)
        fg = np.clip(rad - axis_dist + 0.5, 0, 1)
        q = np.clip(axis_dist / rad, 0, 1)
        shade = 0.6 + 0.4 * np.sqrt(1 - q**2)
        light_y = rng.uniform(-0.45, -0.3)
        high = gloss * np.exp(-(((v / rad) - light_y) / 0.16) ** 2) * (q < 0.98)
        seam = np.clip(u + 0.5, 0, 1)[..., None]
        body = (np.asarray(colour_a, float) * (1 - seam)
                + np.asarray(colour_b, float) * seam) * shade[..., None]
        body = body + 255 * high[..., None]
        if groove:
            body = body * (1 - 0.3 * np.exp(-(u / max(0.6, 0.008 * size)) ** 2)
                           )[..., None]
        bg = _backdrop(rng, size, backdrop, fg, np.deg2rad(250.0))
        img = bg * (1 - fg[..., None]) + body * rng.uniform(0.96, 1.04) * fg[..., None]
        noise = rng.normal(0.0, 1.5, (size, size, 1))
        info = {"cy": cy, "cx": cx, "angle_deg": np.rad2deg(angle)}
        return Base(img, noise, fg, bg, None, info)

    return render


def _fastener(head: str, length: float, radius: float, pitch: float, rgb: tuple,
              backdrop: tuple) -> Callable[[np.random.Generator, int], Base]:
    """Screws: a fastener seen from the side, lying along x: a ``head``
    (``"dome"``, ``"hex"`` or ``"flat"``), a shank of ``length`` and ``radius``
    (shares of the side), threaded at ``pitch`` (0: smooth), with a pointed tip
    unless hex."""

    def render(rng: np.random.Generator, size: int) -> Base:
        yy, xx = grid(size)
        cy, cx = _centre(rng, size)
        angle = np.deg2rad(rng.uniform(-3, 3))
        v, u = rotate(yy, xx, cy, cx, angle)
        L, rad = length * size, radius * size
        start = -L / 2  # the head's side of the shank
        along = u - start
        if head == "hex":
            tip = np.ones_like(along)
        else:
            tip = np.clip((L - along) / (0.25 * L), 0, 1)
        p = pitch * size
        ridge = 0.0 if pitch == 0 else np.cos(2 * np.pi * (along + 0.35 * v) / p)
        r_shank = rad * tip * (1 + (0.0 if pitch == 0 else 0.1 * ridge))
        shank = (np.clip(r_shank - np.abs(v) + 0.5, 0, 1)
                 * np.clip(along + 0.5, 0, 1) * np.clip(L - along + 0.5, 0, 1))
        if head == "dome":
            hl, hr = 0.09 * size, 2.1 * rad
            d = np.sqrt(((u - start) / hl) ** 2 + (v / hr) ** 2)
            head_fg = np.clip((1 - d) * hl + 0.5, 0, 1) * np.clip(start - u + 0.5, 0, 1)
        elif head == "hex":
            hl, hr = 0.1 * size, 1.9 * rad
            head_fg = (np.clip(hr - np.abs(v) + 0.5, 0, 1)
                       * np.clip(u - (start - hl) + 0.5, 0, 1)
                       * np.clip(start - u + 0.5, 0, 1))
        else:
            hl, hr = 0.025 * size, 2.4 * rad
            head_fg = (np.clip(hr - np.abs(v) + 0.5, 0, 1)
                       * np.clip(u - (start - hl) + 0.5, 0, 1)
                       * np.clip(start - u + 0.5, 0, 1))
        fg = np.maximum(shank, head_fg)
        across = np.clip(np.abs(v) / np.where(u < start, hr, np.maximum(r_shank, 1)),
                         0, 1)
        shade = 0.5 + 0.45 * np.sqrt(1 - across**2)
        high = 0.25 * np.exp(-((v / np.where(u < start, hr, rad) + 0.35) / 0.18) ** 2)
        if head == "hex":   # two facet edges across the hex head
            facet = np.where(u < start, 0.15 * (np.abs(np.abs(v) - hr / 2)
                                                < max(0.6, 0.01 * size)), 0)
            shade = shade - facet
        thread = 0.0 if pitch == 0 else 0.12 * ridge * (u >= start)
        metal = np.asarray(rgb, float) * (shade + high + thread)[..., None]
        light = np.deg2rad(250.0)
        bg = _backdrop(rng, size, backdrop, fg, light)
        img = bg * (1 - fg[..., None]) + metal * rng.uniform(0.96, 1.04) * fg[..., None]
        noise = rng.normal(0.0, 1.5, (size, size, 1))
        info = {"cy": cy, "cx": cx, "angle_deg": np.rad2deg(angle)}
        return Base(img, noise, fg, bg, None, info)

    return render


def _bottle(glass: tuple, scale: float) -> Callable[[np.random.Generator, int], Base]:
    """Bottles: a glass bottle seen from the top on a dark backdrop: bright outer
    wall, darker shoulder with caustics, the lip of the mouth and its dark inside."""

    def render(rng: np.random.Generator, size: int) -> Base:
        yy, xx = grid(size)
        cy, cx = _centre(rng, size)
        big = scale * size * rng.uniform(0.99, 1.01)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        fg = np.clip(big - r + 0.5, 0, 1)
        t = np.clip(r / big, 0, 1)
        level = np.interp(t, [0, 0.26, 0.3, 0.36, 0.42, 0.75, 0.9, 0.97, 1.0],
                          [0.12, 0.16, 0.9, 1.0, 0.45, 0.55, 1.05, 0.8, 0.5])
        theta = np.arctan2(yy - cy, xx - cx)
        light = rng.uniform(-np.pi, np.pi)
        spec = 0.35 * np.exp(-(np.angle(np.exp(1j * (theta - light))) / 0.35) ** 2)
        caustic = 0.1 * perlin(rng, t * 4, (theta + np.pi) / (2 * np.pi) * 8)
        ring = (t > 0.78) | ((t > 0.28) & (t < 0.38))
        level = level + spec * ring + caustic * (t > 0.4)
        img_obj = np.asarray(glass, float) * level[..., None]
        bg = _backdrop(rng, size, (34.0, 34.0, 38.0), fg, np.deg2rad(225.0))
        img = bg * (1 - fg[..., None]) + img_obj * fg[..., None]
        noise = rng.normal(0.0, 1.5, (size, size, 1))
        info = {"cy": cy, "cx": cx, "light_deg": np.rad2deg(light)}
        return Base(img, noise, fg, bg, None, info)

    return render


def _cap(rng: np.random.Generator, size: int) -> Base:
    """Bottles: a crown cap seen from the top: 21 crimps around a lacquered top
    with a printed ring."""
    yy, xx = grid(size)
    cy, cx = _centre(rng, size)
    big = 0.38 * size * rng.uniform(0.99, 1.01)
    r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    theta = np.arctan2(yy - cy, xx - cx)
    turn = rng.uniform(0, 2 * np.pi)
    crimp = np.cos(21 * (theta - turn))
    edge = big * (1 + 0.045 * crimp)
    fg = np.clip(edge - r + 0.5, 0, 1)
    t = r / big
    light = np.deg2rad(225 + rng.uniform(-15, 15))
    facing = (np.cos(light) * (xx - cx) + np.sin(light) * (yy - cy)) / np.maximum(r, 1)
    skirt = np.clip((t - 0.78) / 0.2, 0, 1)
    printed = np.exp(-((t - 0.55) / 0.04) ** 2)
    level = 0.85 + 0.1 * (1 - t) + skirt * (0.25 * facing * crimp - 0.15)
    top = np.array([188.0, 38.0, 34.0]) * level[..., None]
    top = top * (1 - printed[..., None]) + np.array([232.0, 206.0, 120.0]) * printed[
        ..., None]
    bg = _backdrop(rng, size, (196.0, 198.0, 200.0), fg, light)
    img = bg * (1 - fg[..., None]) + top * fg[..., None]
    noise = rng.normal(0.0, 1.5, (size, size, 1))
    info = {"cy": cy, "cx": cx, "turn_deg": np.rad2deg(turn)}
    return Base(img, noise, fg, bg, None, info)


RENDERERS: dict[str, Callable[[np.random.Generator, int], Base]] = {
    "brick": _real_texture("brick"), "capsule": _capsule, "coin": _coin,
    "grass": _real_texture("grass"), "gravel": _real_texture("gravel"),
    "washer": _washer, "weave": _weave, "wood": _wood,
    # version 3
    **{name: _real_texture(name) for name in _REAL_TEXTURES_V3},
    "twill": _woven("twill", 16, (52.0, 72.0, 124.0), (204.0, 200.0, 190.0)),
    "canvas": _woven("basket", 12, (150.0, 132.0, 92.0), (172.0, 152.0, 106.0)),
    "walnut": _grain((150.0, 100.0, 66.0), (72.0, 44.0, 28.0), 28.0, 0.04, 0.12),
    "pine": _grain((236.0, 206.0, 150.0), (180.0, 122.0, 62.0), 9.0, 0.02, 0.06),
    "granite": _granite,
    "tiles": _tiles,
    "brushed_steel": _brushed((168.0, 174.0, 182.0), 0.0, 0.18),
    "brushed_brass": _brushed((204.0, 170.0, 96.0), 90.0, 0.16),
    "sandblasted": _brushed((186.0, 188.0, 190.0), 0.0, 0.0),
    "button": _button,
    "softgel": _pill((200.0, 132.0, 28.0), (200.0, 132.0, 28.0), 0.14, 0.17, 0.3,
                     False, (60.0, 62.0, 70.0)),
    "tablet": _pill((230.0, 228.0, 222.0), (230.0, 228.0, 222.0), 0.2, 0.14, 0.05,
                    True, (52.0, 56.0, 64.0)),
    "screw": _fastener("dome", 0.6, 0.06, 0.045, (180.0, 184.0, 190.0),
                       (60.0, 62.0, 66.0)),
    "bolt": _fastener("hex", 0.5, 0.08, 0.06, (96.0, 98.0, 104.0),
                      (214.0, 210.0, 200.0)),
    "nail": _fastener("flat", 0.68, 0.035, 0.0, (196.0, 160.0, 96.0),
                      (40.0, 44.0, 52.0)),
    "bottle_green": _bottle((70.0, 140.0, 80.0), 0.44),
    "bottle_brown": _bottle((150.0, 88.0, 36.0), 0.4),
    "cap": _cap,
}
