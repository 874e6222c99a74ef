"""Decoding images and masks into tensors, and the clear errors on bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

from fuadnb.data import images
from fuadnb.data.index import DatasetError


def write(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return str(path)


def test_images_resize_like_pil_bilinear_and_keep_order(tmp_path):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    rows = [{"image_path": write(tmp_path / f"{i}.png", a), "mask_path": None}
            for i, a in enumerate(arrays)]
    gray = rng.integers(0, 256, (40, 40), dtype=np.uint8)
    rows.append({"image_path": write(tmp_path / "g.png", gray), "mask_path": None})
    imgs, masks = images.load(rows, 16, workers=2)
    assert imgs.dtype == torch.uint8 and imgs.shape == (4, 3, 16, 16)
    expected = np.asarray(Image.fromarray(arrays[1]).resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(imgs[1].permute(1, 2, 0).numpy(), expected)
    assert torch.equal(imgs[3][0], imgs[3][1])            # grey converted to RGB
    assert masks.shape == (4, 1, 16, 16) and not masks.any()
    assert images.load(rows, 16, masks=False)[1] is None


def test_masks_are_binarised_then_resized_and_thresholded(tmp_path):
    img = write(tmp_path / "i.png", np.zeros((32, 32, 3), np.uint8))
    m = np.zeros((32, 32), np.uint8)
    m[0:16, 0:16] = 1          # VisA-style instance values, not 255
    m[16:, 16:] = 3
    mask = write(tmp_path / "m.png", m)
    _, masks = images.load([{"image_path": img, "mask_path": mask}], 8)
    expected = np.zeros((8, 8), bool)
    expected[:4, :4] = expected[4:, 4:] = True
    np.testing.assert_array_equal(masks[0, 0].numpy(), expected)


def test_mask_size_mismatch_names_both_files(tmp_path):
    img = write(tmp_path / "i.png", np.zeros((32, 32, 3), np.uint8))
    mask = write(tmp_path / "m.png", np.zeros((30, 32), np.uint8))
    with pytest.raises(DatasetError) as err:
        images.load([{"image_path": img, "mask_path": mask}], 8)
    assert "m.png" in str(err.value) and "i.png" in str(err.value)
    assert "32x30" in str(err.value)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="bad.png: cannot be decoded"):
        images.load([{"image_path": str(bad), "mask_path": None}], 8)
    with pytest.raises(DatasetError, match="gone.png: file not found"):
        images.load([{"image_path": str(tmp_path / "gone.png"), "mask_path": None}], 8)


def test_repeated_anomalies_are_rotated_and_shifted(tmp_path):
    rng = np.random.default_rng(2)
    base = np.kron(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
                   np.ones((8, 8, 1), np.uint8))                     # 64x64 blocks
    path = write(tmp_path / "a.png", base)
    row = {"image_path": path, "mask_path": None}
    aug = {"angle": 3.0, "dx": 0.03, "dy": -0.03}
    (plain, shifted), _ = images.load([row, row | {"augment": aug}], 64, masks=False)
    assert not torch.equal(plain, shifted)
    expected = np.asarray(Image.fromarray(base).rotate(
        3.0, resample=Image.BILINEAR, translate=(1.92, -1.92)))
    np.testing.assert_array_equal(shifted.permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("shape", [(40, 40), (30, 50), (50, 34)])   # (H, W)
def test_resize_then_centre_crop_images_and_masks_alike(tmp_path, shape):
    """load_size > size: torchvision's Resize(load_size) + CenterCrop(size) (FUN-AD's
    256 -> 224), with the mask cropped by the same window as its image."""
    from torchvision import transforms

    h, w = shape
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 100, (h, w, 3), dtype=np.uint8)
    m = np.zeros((h, w), np.uint8)
    m[1:12, 2:w // 2] = 7                      # touches the border: partly cropped
    m[h // 2:, w - 9:] = 1
    art = np.where(m[..., None] > 0, 255, noise).astype(np.uint8)
    row = {"image_path": write(tmp_path / "i.png", art),
           "mask_path": write(tmp_path / "m.png", m)}
    imgs, masks = images.load([row], 16, load_size=20)
    ref = transforms.Compose([transforms.Resize(20), transforms.CenterCrop(16)])
    np.testing.assert_array_equal(imgs[0].permute(1, 2, 0).numpy(),
                                  np.asarray(ref(Image.fromarray(art))))
    expected = np.asarray(ref(Image.fromarray((m > 0).astype(np.uint8) * 255))) > 127.5
    np.testing.assert_array_equal(masks[0, 0].numpy(), expected)
    # aligned: the mask is where the white defect landed after the same resize/crop
    assert masks.any() and (masks[0, 0] == (imgs[0].min(0).values > 177)).float() \
        .mean() > 0.95
    plain, _ = images.load([row], 16, load_size=16)        # = no crop
    assert torch.equal(plain, images.load([row], 16)[0])
    with pytest.raises(ValueError, match="load_size"):
        images.load([row], 16, load_size=12)


def test_a_repeated_anomaly_s_mask_moves_with_its_image(tmp_path):
    """contaminate(repeat=True) rotates and shifts a copy: its mask must follow."""
    arr = np.zeros((64, 64, 3), np.uint8)
    arr[10:20, 10:20] = 255
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray((arr[..., 0] > 0).astype(np.uint8) * 255).save(tmp_path / "m.png")
    row = {"image_path": str(tmp_path / "a.png"), "mask_path": str(tmp_path / "m.png"),
           "augment": {"angle": 0.0, "dx": 0.25, "dy": 0.125}}
    img, mask = images.load([row], 64)
    bright = img[0, 0] > 127
    assert bright.nonzero().float().mean(0).tolist() == pytest.approx([22.5, 30.5])
    assert torch.equal(mask[0, 0], bright)
