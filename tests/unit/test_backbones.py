"""Weight resolution: torch hub cache, explicit files, the clear missing-file error."""

import pytest
import torch
import torchvision

from fuadnb.nn import backbones


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("FUADNB_OFFLINE", "1")
    return tmp_path


def test_imagenet_weights_load_from_the_hub_cache(torch_home):
    path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert backbones.imagenet_file("resnet18") == path
    path.parent.mkdir(parents=True)
    torch.manual_seed(5)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), path)
    ext = backbones.build("resnet18", "imagenet")
    assert torch.equal(ext.body.layer3[0].conv1.weight,
                       reference.layer3[0].conv1.weight)
    assert torch.equal(ext.body.stem[1].running_var, reference.bn1.running_var)


def test_missing_imagenet_weights_name_the_file(torch_home):
    with pytest.raises(backbones.WeightsNotFoundError) as err:
        backbones.build("wide_resnet50_2", "imagenet")
    msg = str(err.value)
    assert "wide_resnet50_2-95faca4d.pth" in msg
    assert str(torch_home / "hub" / "checkpoints") in msg
    assert "random-bnstats" in msg


def test_explicit_weights_file(tmp_path):
    path = tmp_path / "w.pth"
    torch.manual_seed(3)
    net = torchvision.models.resnet18()
    torch.save(net.state_dict(), path)
    ext = backbones.build("resnet18", str(path))
    assert torch.equal(ext.body.layer1[0].conv1.weight, net.layer1[0].conv1.weight)
    assert ext.label == "resnet18/w.pth"
    with pytest.raises(backbones.WeightsNotFoundError, match="does not exist"):
        backbones.build("resnet18", str(tmp_path / "nope.pth"))


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        backbones.build("vgg16", "random")


def test_extractor_is_frozen_and_stays_in_eval():
    ext = backbones.build("resnet18", "random")
    ext.train()
    assert not ext.training and not any(m.training for m in ext.modules())
    assert not any(p.requires_grad for p in ext.parameters())
    assert ext.channels == (64, 128, 256) and ext.strides == (4, 8, 16)


def test_random_init_is_seeded():
    a, b = backbones.build("resnet18", "random", seed=1), backbones.build(
        "resnet18", "random", seed=1)
    c = backbones.build("resnet18", "random", seed=2)
    w = lambda e: e.body.layer2[0].conv1.weight  # noqa: E731
    assert torch.equal(w(a), w(b)) and not torch.equal(w(a), w(c))


def test_recalibrate_bn_sets_the_data_statistics():
    ext = backbones.build("resnet18", "random", seed=0)
    x = torch.randn(16, 3, 32, 32) * 3 + 2
    seen = backbones.recalibrate_bn(ext, [x[:8], x[8:]])
    assert seen == 16
    bn = ext.body.stem[1]
    with torch.no_grad():
        pre = ext.body.stem[0]((x - ext.mean) / ext.std)   # conv1 feeds the first BN
    torch.testing.assert_close(bn.running_mean, pre.mean((0, 2, 3)), rtol=1e-4,
                               atol=1e-4)
    assert not bn.training


def test_extractor_normalises_with_its_own_statistics():
    img = torch.rand(2, 3, 64, 64)
    for name, mean, std in [("resnet18", backbones.IMAGENET_MEAN,
                             backbones.IMAGENET_STD),
                            ("efficientnet_lite0", (127 / 255,) * 3, (128 / 255,) * 3)]:
        ext = backbones.build(name, "random")
        x = (img - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
            1, 3, 1, 1)
        with torch.no_grad():
            for a, b in zip(ext(img), ext.body(x), strict=True):
                torch.testing.assert_close(a, b)
