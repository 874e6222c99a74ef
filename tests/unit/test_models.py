"""Reverse Distillation: shapes, loss and map against numpy/scipy, training."""

import dataclasses

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from fuadnb.config import short_hash
from fuadnb.models import rd

CPU = torch.device("cpu")


def tiny_cfg(**kw):
    return rd.config("smoke", **kw)


def images(n=6, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("backbone,channels", [
    ("resnet18", (64, 128, 256)), ("wide_resnet50_2", (256, 512, 1024)),
    ("efficientnet_lite0", (24, 40, 112)), ("efficientnet_lite2", (24, 48, 120))])
def test_shapes_for_every_backbone(backbone, channels):
    model = rd.build(tiny_cfg(backbone=backbone, weights="random")).eval()
    x = torch.randn(2, 3, 64, 64)
    feats_t, feats_s = model(x)
    assert [f.shape[1] for f in feats_t] == list(channels)
    assert [f.shape for f in feats_s] == [f.shape for f in feats_t]
    assert [f.shape[-1] for f in feats_t] == [16, 8, 4]
    assert model.student.bottleneck(feats_t).shape == (2, 2 * channels[2], 2, 2)
    assert rd.anomaly_map(model, x).shape == (2, 1, 64, 64)
    # a student for signed teacher features can output negative values, else not
    assert (min(f.min() for f in feats_s) < 0) == model.teacher.signed


def np_cos(a, b, axis):
    return (a * b).sum(axis) / (np.linalg.norm(a, axis=axis) * np.linalg.norm(b,
                                                                             axis=axis))


def test_loss_matches_numpy_formulas():
    rng = np.random.default_rng(0)
    shapes = [(3, 4, 8, 8), (3, 6, 4, 4), (3, 8, 2, 2)]
    t = [rng.normal(size=s) for s in shapes]
    s = [a + rng.normal(scale=0.7, size=a.shape) for a in t]
    flat = sum((1 - np_cos(a.reshape(3, -1), b.reshape(3, -1), 1)).mean()
               for a, b in zip(t, s, strict=True))
    pixel = sum((1 - np_cos(a, b, 1)).mean() for a, b in zip(t, s, strict=True))
    tt, ss = [torch.from_numpy(a) for a in t], [torch.from_numpy(b) for b in s]
    assert rd.loss(tt, ss, "flat").item() == pytest.approx(flat, rel=1e-6)
    assert rd.loss(tt, ss, "pixel").item() == pytest.approx(pixel, rel=1e-6)
    assert flat != pytest.approx(pixel, rel=1e-3)   # the two options really differ


def test_anomaly_map_matches_numpy_and_scipy():
    model = rd.build(tiny_cfg(weights="random", sigma=2.0)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats_t, feats_s = model(x)
    total = 0
    for t, s in zip(feats_t, feats_s, strict=True):
        d = 1 - np_cos(t.double().numpy(), s.double().numpy(), 1)[:, None]
        total = total + F.interpolate(torch.from_numpy(d), size=(64, 64),
                                      mode="bilinear", align_corners=True).numpy()
    ref = np.stack([scipy.ndimage.gaussian_filter(m[0], sigma=2.0) for m in total])
    ours = rd.anomaly_map(model, x)[:, 0].double().numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_loss_falls_over_a_few_steps():
    model = rd.build(tiny_cfg(weights="random")).train()
    x = torch.randn(4, 3, 64, 64)
    opt = torch.optim.Adam(model.student.parameters(), lr=5e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(5):
        loss = rd.loss(*model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_fit_computes_teacher_features_once_and_keeps_teacher_frozen(monkeypatch):
    cfg = tiny_cfg(epochs=3, batch_size=2, eval_batch_size=4, backbone="resnet18",
                   weights="random-bnstats")
    calls = []
    original = rd.backbones.FeatureExtractor.forward
    monkeypatch.setattr(rd.backbones.FeatureExtractor, "forward",
                        lambda self, x: calls.append(len(x)) or original(self, x))
    imgs = images(n=6)
    model = rd.fit(cfg, imgs, device=CPU)
    # shape probe in build, one pass in training batches to re-estimate the BatchNorm
    # statistics, then ONE pass for the features over the 6 images in evaluation
    # batches, whatever the number of epochs
    assert calls == [1, 2, 2, 2, 4, 2]
    assert len(model.history) == 3 and all(np.isfinite(model.history))
    fresh = rd.build(cfg)
    assert torch.equal(model.teacher.body.layer1[0].conv1.weight,
                       fresh.teacher.body.layer1[0].conv1.weight)
    assert not model.teacher.training and not model.training
    # BatchNorm statistics were re-estimated on the training images, the same whatever
    # eval_batch_size (an evaluation-only setting, not in the run key)
    assert not torch.equal(model.teacher.body.stem[1].running_mean,
                           fresh.teacher.body.stem[1].running_mean)
    other = rd.fit(dataclasses.replace(cfg, eval_batch_size=5, epochs=1), imgs,
                   device=CPU)
    for name, buffer in model.teacher.named_buffers():
        assert torch.equal(buffer, other.teacher.get_buffer(name)), name


def test_fit_is_deterministic_and_seeded():
    cfg = tiny_cfg(epochs=2, batch_size=3)
    a = rd.fit(cfg, images(), device=CPU)
    b = rd.fit(cfg, images(), device=CPU)
    c = rd.fit(rd.config("smoke", epochs=2, batch_size=3, seed=7), images(),
               device=CPU)
    assert a.history == b.history and a.history != c.history
    sa, ma = rd.predict(a, images(n=3, seed=1))
    sb, _ = rd.predict(b, images(n=3, seed=1))
    np.testing.assert_array_equal(sa, sb)
    assert ma.shape == (3, 64, 64) and ma.dtype == np.float32
    np.testing.assert_allclose(sa, ma.reshape(3, -1).max(1), rtol=1e-6)
    assert rd.score_train(a, images()).shape == (6,)


def test_config_profiles_and_overrides():
    assert rd.config("paper") == rd.Config()
    assert rd.Config().backbone == "wide_resnet50_2" and rd.Config().lr == 0.005
    cfg = rd.config("demo", epochs=3, image_size=None)
    assert cfg.epochs == 3 and cfg.image_size == rd.PROFILES["demo"]["image_size"]
    with pytest.raises(ValueError, match="unknown RD option"):
        rd.config("demo", epoch=3)
    with pytest.raises(ValueError, match="unknown profile"):
        rd.config("huge")
    # an int for a float field is the same config, so the same run key
    assert type(rd.config("demo", sigma=2).sigma) is float
    assert rd.config("demo", sigma=2) == rd.config("demo", sigma=2.0)
    assert short_hash(rd.config("demo", sigma=2)) == short_hash(rd.config("demo",
                                                                         sigma=2.0))
    assert type(rd.config("demo", epochs=3).epochs) is int


def test_imagenet_teacher_is_not_saved_with_a_run():
    assert rd.build(tiny_cfg(weights="random")).reproducible_prefixes == ()


def test_a_method_missing_part_of_the_interface_fails_at_registration():
    import types

    from fuadnb import models
    half = types.ModuleType("half")
    for name in ("Config", "PROFILES", "EVALUATION", "MONITOR", "config",
                 "category_options", "locate", "build", "fit", "predict_train",
                 "score_train",
                 "budget", "inputs"):
        setattr(half, name, getattr(rd, name))
    with pytest.raises(TypeError, match=r"lacks \['predict'\]"):
        models.register("half", half)
    half.predict = "not callable"
    with pytest.raises(TypeError, match=r"lacks \['predict'\]"):
        models.register("half", half)
    assert "half" not in models.REGISTRY
    for module in models.REGISTRY.values():
        assert isinstance(module, models.Method)
