"""Synthetic anomalies: Perlin noise against DRAEM's formula written out in numpy,
masks, the three foreground rules (GrabCut and inverse Otsu against the released
code's OpenCV calls, each against the true object on synthetic discs) and the blend;
seeded."""

import math

import numpy as np
import pytest
import torch

from fuadnb.data import anomalies as A


def draem_perlin(shape, res, angles):
    """DRAEM's rand_perlin_2d_np (perlin.py), with the lattice angles given."""
    delta = (res[0] / shape[0], res[1] / shape[1])
    d = (shape[0] // res[0], shape[1] // res[1])
    grid = np.mgrid[0:res[0]:delta[0], 0:res[1]:delta[1]].transpose(1, 2, 0) % 1
    gradients = np.stack((np.cos(angles), np.sin(angles)), axis=-1)

    def tile(s1, s2):
        g = gradients[s1[0]:s1[1], s2[0]:s2[1]]
        return np.repeat(np.repeat(g, d[0], axis=0), d[1], axis=1)

    def dot(grad, shift):
        return (np.stack((grid[..., 0] + shift[0], grid[..., 1] + shift[1]), -1)
                * grad).sum(-1)

    n00 = dot(tile([0, -1], [0, -1]), [0, 0])
    n10 = dot(tile([1, None], [0, -1]), [-1, 0])
    n01 = dot(tile([0, -1], [1, None]), [0, -1])
    n11 = dot(tile([1, None], [1, None]), [-1, -1])
    t = 6 * grid**5 - 15 * grid**4 + 10 * grid**3

    def lerp(x, y, w):
        return (y - x) * w + x

    return math.sqrt(2) * lerp(lerp(n00, n10, t[..., 0]), lerp(n01, n11, t[..., 0]),
                               t[..., 1])


@pytest.mark.parametrize("res", [(1, 1), (4, 8), (16, 2), (32, 32)])
def test_perlin_matches_draem(res):
    angles = 2 * math.pi * torch.rand(res[0] + 1, res[1] + 1,
                                      generator=torch.Generator().manual_seed(3),
                                      dtype=torch.float64)
    ours = A.perlin(64, res, torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_allclose(ours, draem_perlin((64, 64), res, angles.numpy()),
                               atol=1e-5)


def test_perlin_rejects_a_lattice_that_does_not_divide():
    with pytest.raises(ValueError, match="not divisible"):
        A.perlin(48, (32, 1), torch.Generator())


def test_masks_are_seeded_and_cover_part_of_the_image():
    masks = [A.perlin_mask(64, torch.Generator().manual_seed(s)) for s in range(20)]
    again = A.perlin_mask(64, torch.Generator().manual_seed(7))
    assert torch.equal(masks[7], again)
    cover = np.array([m.float().mean().item() for m in masks])
    assert 0.01 < cover.mean() < 0.4 and cover.max() < 0.9
    assert len({m.float().sum().item() for m in masks}) > 10


def disc_on_texture(size: int = 96, *, dark: bool = False, seed: int = 0):
    """A uint8 (3, S, S) image: a disc off-centre (radius S/4, its centre at (0.45 S,
    0.58 S)) on a random texture, and the disc (S, S) bool. The texture is blotchy
    blue-grey noise; the disc a noisy warm colour, or (`dark`) dark grey on a light
    texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (yy - 0.45 * size) ** 2 + (xx - 0.58 * size) ** 2 < (size / 4) ** 2
    blotches = np.kron(rng.random((size // 8, size // 8)), np.ones((8, 8)))
    texture = (np.stack([0.35, 0.45, 0.6]) * (0.6 + 0.4 * blotches[..., None])
               + 0.25 * rng.random((size, size, 3)))
    if dark:
        texture = 0.55 + 0.45 * texture
        obj = 0.1 + 0.25 * rng.random((size, size, 3))
    else:
        obj = np.array([0.8, 0.5, 0.1]) + 0.25 * rng.random((size, size, 3))
    rgb = np.where(disc[..., None], obj, texture)
    image = torch.from_numpy((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return image.permute(2, 0, 1).contiguous(), disc


def iou(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("rule, dark", [("grabcut", False), ("grabcut", True),
                                        ("otsu_inverse", True), ("otsu_border", True)])
def test_each_rule_covers_the_object_on_a_textured_background(rule, dark):
    for seed in range(3):
        image, disc = disc_on_texture(dark=dark, seed=seed)
        mask = A.foreground(image[None], rule)[0]
        assert mask.dtype == torch.bool and mask.shape == disc.shape
        assert iou(mask, disc) > 0.9, (rule, dark, seed, iou(mask, disc))


def test_grey_level_rules_miss_an_object_that_differs_in_colour():
    """A warm disc on a blue-grey texture of about its grey level: GrabCut's colour
    models find it, the two Otsu rules do not (inverse Otsu takes the darker side
    whatever it is)."""
    for seed in range(3):
        image, disc = disc_on_texture(dark=False, seed=seed)
        assert iou(A.grabcut(image), disc) > 0.9
        assert iou(A.otsu_border(image), disc) < 0.6
        assert iou(A.otsu_inverse(image), disc) < 0.1


def test_grabcut_is_the_released_call_and_seeded():
    """The released get_forehead_mask (URD utils/perlin.py L161-L171) written out:
    the BGR image, rect (1, 1, W - 1, H - 1), 11 iterations from the rectangle,
    definite and probable foreground; the same mask whatever ran before it or in
    which thread."""
    import cv2

    image, _ = disc_on_texture(64, seed=4)
    bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
    mask = np.zeros((64, 64), np.uint8)
    cv2.setRNGSeed(0)
    cv2.grabCut(bgr, mask, (1, 1, 63, 63), np.zeros((1, 65)), np.zeros((1, 65)), 11,
                mode=cv2.GC_INIT_WITH_RECT)
    expected = np.where((mask == 1) + (mask == 3), 1, 0).astype(bool)
    got = A.grabcut(image)
    np.testing.assert_array_equal(got.numpy(), expected)
    others = torch.stack([disc_on_texture(64, seed=s)[0] for s in range(5)])
    batch = A.foreground(torch.cat([others, image[None]]), "grabcut", workers=3)
    assert torch.equal(batch[-1], got)                     # after 5 others, threaded
    assert torch.equal(A.foreground(image[None], "grabcut", workers=1)[0], got)


def test_inverse_otsu_is_opencv_s_grey_and_threshold():
    """THRESH_BINARY_INV + THRESH_OTSU on OpenCV's grey levels (URD perlin.py
    L172-L174) against scikit-image's Otsu threshold on the same grey levels."""
    import cv2
    from skimage.filters import threshold_otsu

    image, _ = disc_on_texture(dark=True, seed=5)
    grey = cv2.cvtColor(image.permute(1, 2, 0).contiguous().numpy(),
                        cv2.COLOR_RGB2GRAY)
    rgb = image.double()
    weighted = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    assert np.abs(grey - weighted.numpy()).max() <= 1.0       # OpenCV's luma
    np.testing.assert_array_equal(A.otsu_inverse(image).numpy(),
                                  grey <= threshold_otsu(grey))


def test_otsu_border_finds_a_bright_and_a_dark_disc():
    yy, xx = np.mgrid[0:32, 0:32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 64
    for obj, back in ((220, 30), (30, 220)):
        image = torch.from_numpy(np.where(disc, obj, back).astype(np.uint8))
        assert torch.equal(A.otsu_border(image.expand(3, 32, 32)),
                           torch.from_numpy(disc))


def test_foreground_rules_and_bad_input():
    image, _ = disc_on_texture(32)
    assert A.foreground(image[None], "none") is None
    with pytest.raises(ValueError, match="foreground must be one of"):
        A.foreground(image[None], "otsu")
    flat = torch.full((1, 3, 16, 16), 90, dtype=torch.uint8)
    assert A.foreground(flat, "grabcut").all()               # nothing to separate
    with pytest.raises(ValueError, match="one .H, W. mask per image"):
        A.synthesize(image[None], image[None], torch.Generator(),
                     foreground=torch.ones(2, 32, 32, dtype=torch.bool))


def test_synthesize_changes_only_masked_pixels_with_the_blend():
    images = torch.full((6, 3, 32, 32), 100, dtype=torch.uint8)
    textures = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    out, masks = A.synthesize(images, textures, torch.Generator().manual_seed(0))
    m = masks.expand_as(out)
    assert torch.equal(out[~m], images[~m])
    inside = out[m].float()
    assert inside.numel() > 0
    # x (1 - m) + (1 - b) 200 m + b 100 m with b in [0, 0.8): between 120 and 200
    assert inside.min() >= 120 and inside.max() <= 200
    again = A.synthesize(images, textures, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], out) and torch.equal(again[1], masks)


def test_foreground_restriction_keeps_anomalies_on_the_object():
    yy, xx = np.mgrid[0:32, 0:32]
    disc = torch.from_numpy((yy - 16) ** 2 + (xx - 16) ** 2 < 100)
    images = torch.where(disc, 200, 20).to(torch.uint8).expand(8, 3, 32, 32)
    textures = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    _, masks = A.synthesize(images.contiguous(), textures,
                            torch.Generator().manual_seed(1),
                            foreground=A.foreground(images, "otsu_border"))
    assert masks.any() and not masks[:, 0][:, ~disc].any()


def test_texture_bank_is_offline_seeded_and_avoids_the_benchmark_images():
    bank = A.texture_bank(32, seed=0, n_procedural=4)
    assert bank.dtype == torch.uint8 and bank.shape == (len(A.BUNDLED) + 2 + 4, 3,
                                                        32, 32)
    assert torch.equal(bank, A.texture_bank(32, seed=0, n_procedural=4))
    assert not {"brick", "grass", "gravel", "coins"} & set(A.BUNDLED)


def test_textures_from_folder(tmp_path):
    from PIL import Image
    (tmp_path / "banded").mkdir()
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "banded" / "a.jpg")
    assert A.textures_from_folder(tmp_path, 16).shape == (1, 3, 16, 16)
    with pytest.raises(FileNotFoundError, match="no .jpg/.png"):
        A.textures_from_folder(tmp_path / "banded" / "none", 16)
