"""Synthetic anomalies: Perlin noise against DRAEM's formula written out in numpy,
masks, foregrounds and the blend; seeded."""

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


def test_foreground_finds_a_bright_and_a_dark_disc():
    yy, xx = np.mgrid[0:32, 0:32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 64
    for obj, back in ((220, 30), (30, 220)):
        image = torch.from_numpy(np.where(disc, obj, back).astype(np.uint8))
        assert torch.equal(A.foreground(image.expand(3, 32, 32)),
                           torch.from_numpy(disc))


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
                            restrict_to_foreground=True)
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
