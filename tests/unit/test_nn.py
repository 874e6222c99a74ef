"""Maps against scipy / numpy formulas written out independently."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from fuadnb.nn import maps


@pytest.mark.parametrize("shape,sigma", [((64, 64), 4.0), ((37, 53), 2.5),
                                         ((20, 12), 4.0), ((256, 256), 4.0)])
def test_gaussian_smooth_equals_scipy(shape, sigma):
    # (20, 12) is smaller than the 33-tap kernel: reflection wraps more than once.
    rng = np.random.default_rng(0)
    m = rng.random((2, *shape))
    ours = maps.gaussian_smooth(torch.from_numpy(m)[:, None], sigma=sigma)[:, 0].numpy()
    ref = np.stack([scipy.ndimage.gaussian_filter(x, sigma=sigma) for x in m])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_gaussian_kernel_has_scipy_length():
    assert maps.gaussian_kernel1d(4.0).numel() == 33   # radius int(4*4+0.5) = 16


def test_cosine_distance_matches_numpy():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(2, 2, 5, 3, 4))
    ours = maps.cosine_distance([torch.from_numpy(t)], [torch.from_numpy(s)])[0]
    dot = (t * s).sum(1)
    ref = 1 - dot / (np.linalg.norm(t, axis=1) * np.linalg.norm(s, axis=1))
    np.testing.assert_allclose(ours[:, 0].numpy(), ref, atol=1e-6)
    assert ours.shape == (2, 1, 3, 4)


def test_fuse_add_is_sum_of_align_corners_upsampling():
    # a 2x2 map upsampled with align_corners=True keeps its corner values exactly
    a = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    b = torch.ones(1, 1, 4, 4)
    out = maps.fuse([a, b], size=(5, 5), mode="add")
    assert out.shape == (1, 1, 5, 5)
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 0, -1] == 2 and out[0, 0, -1, -1] == 4
    assert out[0, 0, 0, 2] == pytest.approx(1.5)            # midpoint, bilinear
    assert torch.allclose(maps.fuse([a, b], (5, 5), "mean"), out / 2)
    with pytest.raises(ValueError, match="unknown fusion"):
        maps.fuse([a], (5, 5), "max")
