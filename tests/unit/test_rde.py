"""RD-E: shapes for the papers' and the offline backbone, GII against a numpy
re-statement, the teacher loss's mask regression on a hand-made case, training order
and a loss that falls; the released foreground rule per category and the textures
found beside the dataset."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fuadnb import data, experiment, models, runs
from fuadnb.data import anomalies
from fuadnb.models import rde
from fuadnb.nn import blocks


@pytest.mark.parametrize("backbone, weights, channels", [
    ("wide_resnet50_2", "random", (256, 512, 1024)),
    ("efficientnet_lite2", "imagenet", (24, 48, 120)),
])
@pytest.mark.parametrize("gii", ["gated", "ungated"])
def test_shapes_follow_the_teacher(backbone, weights, channels, gii):
    cfg = rde.config("smoke", backbone=backbone, weights=weights, gii=gii)
    model = rde.build(cfg).eval()
    feats_t, feats_s = model(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in feats_t] == list(channels)
    assert [f.shape for f in feats_s] == [f.shape for f in feats_t]
    amap = rde.anomaly_map(model, torch.rand(2, 3, 64, 64))
    assert amap.shape == (2, 1, 64, 64)
    assert not any(p.requires_grad for p in model.expert.parameters())
    assert all(p.requires_grad for p in model.teacher.parameters())


def test_expert_stays_in_eval_and_teacher_follows_train():
    model = rde.build(rde.config("smoke"))
    model.train()
    assert not model.expert.training and model.teacher.training
    model.eval()
    assert not model.teacher.training


def _identity_gii(c):
    gii = blocks.GII((c, c, c))
    for name in ("fuse_encoder", "simattn", "fuse_skip"):
        setattr(gii, name, nn.ModuleList([nn.Identity(), nn.Identity()]))
    gii.down = nn.ModuleList([nn.Identity(), nn.Identity()])
    return gii


def test_gii_gate_matches_a_numpy_restatement():
    gen = torch.Generator().manual_seed(0)
    s, p, t, t_fine = (torch.randn(2, 3, 4, 4, generator=gen) for _ in range(4))
    s.requires_grad_(True)
    p.requires_grad_(True)
    gii = _identity_gii(3)
    out = gii(1, s, p, t_fine, t, gated=True).detach().numpy()
    S, P, T, TF = (a.detach().numpy() for a in (s, p, t, t_fine))
    g = (P * T).sum(1, keepdims=True) / (np.linalg.norm(P, axis=1, keepdims=True)
                                         * np.linalg.norm(T, axis=1, keepdims=True))
    u = T + TF                                       # identity down / fuse_encoder
    expected = np.concatenate([S, u * g + S * (1 - g)], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert g.min() < 0                               # raw cosine, not clamped
    ungated = gii(1, s, p, t_fine, t, gated=False).detach().numpy()
    np.testing.assert_allclose(ungated, np.concatenate([S, u], axis=1), atol=1e-6)
    gii(1, s, p, t_fine, t, gated=True).sum().backward()
    assert p.grad is None                            # the gate takes no gradient


def test_gii_downsamples_the_finer_teacher_scale():
    gii = blocks.GII((8, 16, 32))
    out = gii(0, torch.rand(1, 16, 8, 8), torch.rand(1, 16, 8, 8),
              torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8))
    assert out.shape == (1, 16, 8, 8)


def _feats(c=4, sizes=(8, 4, 2), gen=None):
    return [torch.randn(2, c, s, s, generator=gen) for s in sizes]


def test_teacher_loss_regresses_the_distance_onto_the_mask():
    gen = torch.Generator().manual_seed(1)
    e_n = _feats(gen=gen)
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., :16] = 1                                # left half anomalous
    # on the synthetic image the teacher keeps the expert's normal feature on the
    # right and turns orthogonal to it (a rotated copy: cos 0) on the left
    t_a = []
    for e in e_n:
        half = e.shape[-1] // 2
        orth = torch.stack([-e[:, 1], e[:, 0], -e[:, 3], e[:, 2]], dim=1)
        t = e.clone()
        t[..., :half] = orth[..., :half]
        t_a.append(t)
    perfect = rde.teacher_loss(e_n, t_a, e_n, e_n, mask, global_term=False)
    assert perfect.item() == pytest.approx(0, abs=1e-6)
    # a teacher that ignores the anomaly (t_a = e_n): the L1 term is the anomalous
    # share of every scale, 1/2, so 3 x 0.5
    lazy = rde.teacher_loss(e_n, e_n, e_n, e_n, mask, global_term=False)
    assert lazy.item() == pytest.approx(1.5, abs=1e-6)
    # the code's global term adds flatcos(t_a, e_a), zero when they are equal
    assert rde.teacher_loss(e_n, t_a, e_n, t_a, mask).item() == pytest.approx(
        0, abs=1e-6)


def test_student_loss_is_the_four_flattened_cosines():
    gen = torch.Generator().manual_seed(2)
    s_n, s_a, t_n, e_n = (_feats(gen=gen) for _ in range(4))

    def flatcos(a, b):
        a, b = a.flatten(1).numpy(), b.flatten(1).numpy()
        return np.mean(1 - (a * b).sum(1) / np.linalg.norm(a, axis=1)
                       / np.linalg.norm(b, axis=1))

    expected = sum(flatcos(sn, tn) + flatcos(sa, tn) + flatcos(sn, en)
                   + flatcos(sa, en)
                   for sn, sa, tn, en in zip(s_n, s_a, t_n, e_n, strict=True))
    assert rde.student_loss(s_n, s_a, t_n, e_n).item() == pytest.approx(expected,
                                                                          rel=1e-5)


def test_losses_fall_on_a_tiny_run_and_the_fit_is_seeded():
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(8, 3, 64, 64, generator=gen) * 60 + 100).to(torch.uint8)
    cpu = torch.device("cpu")
    model = rde.fit(rde.config("smoke", iterations=8, batch_size=4), images,
                    device=cpu)
    assert len(model.history) == 4 and model.history[-1] < model.history[0]
    scores, maps = rde.predict(model, images[:3])
    assert scores.shape == (3,) and maps.shape == (3, 64, 64)
    short = rde.config("smoke", iterations=2, batch_size=4)
    first, second = (rde.fit(short, images, device=cpu) for _ in range(2))
    assert first.history == second.history
    assert first.teacher_history == second.teacher_history


def test_paper_profile_is_the_released_code_and_text_an_option():
    cfg = rde.config("paper")
    assert (cfg.gii, cfg.global_term) == ("ungated", True)         # attn=True routing
    text = rde.config("paper", **rde.TEXT)
    assert (text.gii, text.global_term) == ("gated", False)
    assert rde.config("demo").gii == rde.config("smoke").gii == "gated"


@pytest.mark.parametrize("dataset, objects, textures", [
    ("mvtec_ad", ["bottle", "cable", "capsule", "hazelnut", "metal_nut", "pill",
                  "screw", "toothbrush", "transistor", "zipper"],
     ["carpet", "grid", "leather", "tile", "wood"]),
    ("visa", list(data.visa.CATEGORIES), []),
    ("synthetic", ["capsule", "coin", "washer"],
     ["brick", "grass", "gravel", "weave", "wood"]),
    ("real_iad", list(data.real_iad.CATEGORIES), []),
    ("mpdd", ["bracket_black", "bracket_brown", "bracket_white", "connector",
              "tubes"], ["metal_plate"]),
    ("btad", [], ["01", "02", "03"]),
])
def test_category_kinds_per_dataset(dataset, objects, textures):
    assert sorted(objects + textures) == sorted(data.READERS[dataset].CATEGORIES)
    assert all(data.kind(dataset, c) == "object" for c in objects)
    assert all(data.kind(dataset, c) == "texture" for c in textures)
    with pytest.raises(data.DatasetError, match="unknown dataset"):
        data.kind("mvtec", "bottle")


def _options(profile, dataset, category):
    return rde.category_options(profile, dataset, category,
                                data.kind(dataset, category))


def test_foreground_follows_the_reference_per_dataset():
    """URD train.py L102-L113 (nine MVTec AD objects), dataset_noise.py L53-L64
    (inverse Otsu for capsule and screw, GrabCut otherwise), train_visa.py (every
    VisA class, GrabCut); other datasets' objects: GrabCut, textures: none."""
    mvtec = {c: _options("demo", "mvtec_ad", c)["foreground"]
             for c in data.mvtec.CATEGORIES}
    assert {c for c, rule in mvtec.items() if rule == "grabcut"} == {
        "bottle", "cable", "hazelnut", "metal_nut", "pill", "toothbrush", "zipper"}
    assert {c for c, rule in mvtec.items() if rule == "otsu_inverse"} == {
        "capsule", "screw"}
    assert {c for c, rule in mvtec.items() if rule == "none"} == {
        "carpet", "grid", "leather", "tile", "wood", "transistor"}
    assert {_options("paper", "visa", c)["foreground"]
            for c in data.visa.CATEGORIES} == {"grabcut"}
    synth = {c: _options("smoke", "synthetic", c)["foreground"]
             for c in data.synthetic.CATEGORIES}
    assert {c for c, rule in synth.items() if rule != "none"} == {
        "capsule", "coin", "washer"}
    assert synth["capsule"] == "grabcut"          # inverse Otsu is MVTec AD's only
    with pytest.raises(ValueError, match="foreground must be one of"):
        rde.config("smoke", foreground=True)      # the former switch: one clear error
    assert rde.config("smoke", foreground="otsu_border").foreground == "otsu_border"


def test_paper_iterations_per_dataset_and_category():
    long = {c for c in data.mvtec.CATEGORIES
            if _options("paper", "mvtec_ad", c)["iterations"] == 10000}
    assert long == {"cable", "transistor"}
    assert {_options("paper", "mvtec_ad", c)["iterations"]
            for c in set(data.mvtec.CATEGORIES) - long} == {5000}
    assert {_options("paper", "visa", c)["iterations"]
            for c in data.visa.CATEGORIES} == {10000}
    assert _options("paper", "mpdd", "tubes")["iterations"] == 5000
    assert "iterations" not in _options("demo", "visa", "candle")   # profile's own


def test_experiment_applies_category_options_below_the_callers(smoke_kw, monkeypatch):
    seen = []

    def fake_fit(cfg, train_images, *, device, progress=False):
        seen.append(cfg)
        raise RuntimeError("stop")

    monkeypatch.setattr(rde, "fit", fake_fit)
    kw = smoke_kw | {"scenario": smoke_kw["scenario"].replace(category="washer")}
    for options in (None, {"foreground": "none"}, {"foreground": "otsu_border"}):
        with pytest.raises(RuntimeError, match="stop"):
            experiment.run("rde", **kw, options=options)
    assert [c.foreground for c in seen] == ["grabcut", "none", "otsu_border"]
    with pytest.raises(RuntimeError, match="stop"):
        experiment.run("rde", **smoke_kw)                           # brick: texture
    assert seen[-1].foreground == "none"


def test_the_foreground_masks_are_made_once_and_keep_anomalies_on_the_object(
        monkeypatch):
    """`training_batches` computes each training image's object mask once (as the
    reference builds its dataset) and every batch's anomalies stay inside it."""
    yy, xx = np.mgrid[0:64, 0:64]
    disc = torch.from_numpy((yy - 30) ** 2 + (xx - 36) ** 2 < 18 ** 2)
    gen = torch.Generator().manual_seed(3)
    noise = (torch.rand(6, 3, 64, 64, generator=gen) * 60).to(torch.uint8)
    images = torch.where(disc, torch.tensor([200, 120, 30])[:, None, None] + noise,
                         torch.tensor([40, 70, 110])[:, None, None] + noise)
    images = images.to(torch.uint8)
    calls = []
    real = anomalies.foreground
    monkeypatch.setattr(anomalies, "foreground",
                        lambda imgs, rule: calls.append(len(imgs)) or real(imgs, rule))
    cfg = rde.config("smoke", batch_size=4, foreground="grabcut")
    batches = list(rde.training_batches(cfg, images, rde.texture_source(cfg), 6))
    assert calls == [6]                                      # once, every image
    masks = torch.cat([m for _, _, m in batches])[:, 0]
    assert masks.any() and not masks[:, ~disc].any()
    free = rde.config("smoke", batch_size=4)                  # "none": anywhere
    loose = torch.cat([m for _, _, m in rde.training_batches(
        free, images, rde.texture_source(free), 6)])[:, 0]
    assert loose[:, ~disc].any()


def test_textures_auto_is_dtd_beside_the_dataset_else_bundled(tiny_synth, tmp_path):
    """``textures="auto"`` (the paper profile's): DTD's images at
    ``<dataset root>/../dtd/images`` when there (the reference's ./data/dtd/images),
    the bundled set otherwise; the row's ``textures`` column says which and a DTD
    folder's contents key the run."""
    assert rde.config("paper").textures == "auto"
    assert rde.config("demo").textures == rde.config("smoke").textures == "bundled"
    with pytest.raises(ValueError, match="locate"):
        rde.texture_source(rde.config("smoke", textures="auto"))
    data_dir = tmp_path / "data"
    root = Path(shutil.copytree(tiny_synth, data_dir / "synthetic"))
    kw = {"profile": "smoke", "runs_root": tmp_path / "runs", "device": "cpu",
          "options": {"textures": "auto"}}
    scenario = experiment.Scenario("synthetic", root, "brick", 0.0)
    bundled = experiment.run("rde", scenario, **kw)
    assert (bundled.row["textures"], bundled.row["cfg.textures"]) == ("bundled",
                                                                      "bundled")
    folder = data_dir / "dtd" / "images" / "banded"
    folder.mkdir(parents=True)
    for k in range(2):
        rgb = np.full((16, 16, 3), 60 + 90 * k, np.uint8)
        rgb[::4] = 255
        Image.fromarray(rgb).save(folder / f"banded_000{k}.jpg")
    dtd = experiment.run("rde", scenario, **kw)
    assert dtd.row["textures"] == "dtd"
    assert Path(dtd.row["cfg.textures"]) == data_dir / "dtd" / "images"
    assert dtd.dir != bundled.dir
    found = json.loads((dtd.dir / "config.json").read_text())["inputs"]
    assert found["textures"] == runs.fingerprint(sorted(folder.glob("*.jpg")))
    assert rde.locate(rde.config("smoke", textures="auto"), root)[0].textures == \
        str(data_dir / "dtd" / "images")
    explicit = rde.config("smoke", textures=str(folder))
    assert rde.locate(explicit, root) == (explicit, {"textures": "folder"})
    assert rde.texture_kind(str(data_dir / "dtd")) == "dtd"
    assert experiment.run("rd", scenario, **kw | {"options": {}}).row.get(
        "textures") is None                                  # RD-E's column only




def test_whole_epochs_as_the_reference():
    cfg = rde.config("paper")
    assert rde.steps(cfg, 209) == 358 * 14        # bottle: 14 batches, 358 epochs
    assert rde.steps(rde.config("paper", whole_epochs=False), 209) == 5000
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    small = rde.config("smoke", iterations=3, batch_size=4)      # 2 batches/epoch
    assert rde.steps(small, 6) == 4
    model = rde.fit(small, images, device=torch.device("cpu"))
    assert len(model.history) == 2                                # two whole epochs


def test_a_texture_folder_is_checked_and_its_contents_key_the_run(tmp_path, smoke_kw):
    with pytest.raises(ValueError, match="textures: no folder"):
        rde.config("smoke", textures=str(tmp_path / "dtd"))
    folder = tmp_path / "dtd" / "banded"
    folder.mkdir(parents=True)
    rgb = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(rgb).save(folder / "banded_0001.jpg")
    cfg = rde.config("smoke", textures=str(tmp_path / "dtd"))
    assert rde.texture_source(cfg).shape == (1, 3, cfg.image_size, cfg.image_size)
    split = smoke_kw["scenario"].replace(noise_ratio=0.0, seed=1).split()
    before = experiment.inputs(rde, split, cfg)
    Image.fromarray(rgb + 200).save(folder / "banded_0001.jpg")    # same name
    after = experiment.inputs(rde, split, cfg)
    assert before["train_images"] == after["train_images"]
    assert before["textures"] != after["textures"]
    assert after["textures"] == runs.fingerprint([folder / "banded_0001.jpg"])
    assert rde.inputs(cfg) == {"textures": [folder / "banded_0001.jpg"]}
    assert rde.inputs(rde.config("smoke")) == {}                  # the bundled bank
    assert set(experiment.inputs(rde, split, rde.config("smoke"))) == {"train_images"}


def test_a_weights_file_keys_the_run_of_every_method_as_before(tmp_path, smoke_kw):
    """The run key's inputs are what the methods name (`inputs`), with the keys that
    experiment.inputs gave before the hook: a weights file by its sha1."""
    weights = tmp_path / "teacher.pth"
    weights.write_bytes(b"weights")
    split = smoke_kw["scenario"].split()
    for module in models.REGISTRY.values():
        cfg = module.config("smoke", weights=str(weights))
        found = experiment.inputs(module, split, cfg)
        assert found["teacher_weights"] == runs.file_hash(weights), module
        assert "teacher_weights" not in experiment.inputs(
            module, split, module.config("smoke"))


@pytest.mark.parametrize("iterations, whole", [(3, True), (5, False)])
def test_the_budget_counts_the_images_the_batches_carry(iterations, whole):
    """6 images in batches of 4: each epoch is 4 + 2 images, so 4 steps see 12
    images, not 4 x 4; 5 steps without whole epochs see 4 + 2 + 4 + 2 + 4."""
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    cfg = rde.config("smoke", image_size=64, iterations=iterations, batch_size=4,
                     whole_epochs=whole)
    budget = rde.budget(cfg, 6)
    batches = list(rde.training_batches(cfg, images, rde.texture_source(cfg),
                                        budget.steps))
    assert budget.images_seen == sum(len(b[0]) for b in batches) == (12 if whole
                                                                      else 16)


def test_prefetched_synthesis_gives_the_same_anomalies_and_the_same_model(
        monkeypatch):
    """RD-E's batches and synthetic anomalies made ahead in a background thread
    (the default) or inline: the same seed gives the same batches, the same
    anomalies and so the same trained model."""
    from fuadnb import engine

    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(6, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    cfg = rde.config("smoke", iterations=3, batch_size=4, foreground="grabcut")
    textures = rde.texture_source(cfg)
    inline = list(rde.training_batches(cfg, images, textures, 5))
    ahead = list(engine.prefetch(rde.training_batches(cfg, images, textures, 5)))
    assert len(inline) == len(ahead) == 5
    for a, b in zip(inline, ahead, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(inline[0][1], inline[2][1])       # fresh every batch
    cpu = torch.device("cpu")
    threads = []
    real = engine.prefetch
    monkeypatch.setattr(engine, "prefetch", lambda items: threads.append(1) or
                        real(items))
    fast, slow, auto = (rde.fit(cfg, images, device=cpu, prefetch=p)
                        for p in (True, False, None))
    assert threads == [1]          # by default no thread on a CPU: it slows the step
    assert fast.history == slow.history == auto.history
    assert fast.teacher_history == slow.teacher_history
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
