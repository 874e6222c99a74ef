"""LLB: the subsets partition the training set, image scores and aggregations
against numpy, the kept ids are exactly the lowest aggregated scores and refer to
the images that were scored (the reference's §6.2 bug), a planted contamination is
filtered out, the sub-models train for LLB's own schedule (steps counted, the run
key names it), a memory bank's own subset is scored with each image held out, and
the strategy runs around two registered methods."""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import fuadnb.models.patchcore as patchcore
from fuadnb import experiment, models, runs
from fuadnb.models import base, rd
from fuadnb.strategies import llb

CPU = torch.device("cpu")


@pytest.mark.parametrize("n, k", [(10, 3), (9, 3), (7, 2), (10, 5)])
def test_partition_covers_every_image_once(n, k):
    subset = llb.partition(n, k, seed=1)
    sizes = np.bincount(subset, minlength=k)
    assert sizes.sum() == n and set(subset) == set(range(k))
    assert (sizes[:-1] == n // k).all() and sizes[-1] == n - (k - 1) * (n // k)
    np.testing.assert_array_equal(subset, llb.partition(n, k, seed=1))
    with pytest.raises(ValueError, match=r"at least 2 x subsets = 6 .* got 5"):
        llb.partition(5, 3, seed=0)     # a subset of one image has no held-out bank


def test_image_scores_top_share_and_max():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 20, 10))                       # 200 pixels: top 1 % = 2
    top = llb.image_scores(maps, llb.config())
    ref = [np.sort(m.ravel())[-2:].mean() for m in maps]
    np.testing.assert_allclose(top, ref)
    np.testing.assert_allclose(llb.image_scores(maps, llb.config(image_score="max")),
                               maps.reshape(3, -1).max(1))


@pytest.mark.parametrize("own", [True, False])
@pytest.mark.parametrize("how", ["mean", "max", "maxvar"])
def test_aggregate_matches_numpy(how, own):
    rng = np.random.default_rng(1)
    sub = rng.random((3, 6))
    subset = np.array([0, 1, 2, 0, 1, 2])
    got = llb.aggregate(sub, subset, llb.config(aggregation=how, own_subset=own))
    for i in range(6):
        s = sub[:, i] if own else np.delete(sub[:, i], subset[i])
        ref = {"mean": s.mean(), "max": s.max(), "maxvar": s.max() * s.var()}[how]
        assert got[i] == pytest.approx(ref)


def test_purify_keeps_exactly_the_lowest_scores_by_id():
    ids = np.array(["e", "a", "d", "b", "c", "f"])
    scores = np.array([0.5, 0.9, 0.1, 0.3, 0.3, 0.7])
    np.testing.assert_array_equal(llb.purify(ids, scores, 0.5), ["d", "b", "c"])
    assert llb.purify(ids, scores, 0.01).tolist() == ["d"]      # at least one
    with pytest.raises(ValueError, match="keep must be"):
        llb.config(keep=0)
    with pytest.raises(ValueError, match="unknown LLB option"):
        llb.config(kept=0.5)


@dataclass(frozen=True)
class BrightCfg(base.Config):
    seed: int = 0
    image_size: int = 64
    epochs: int = 1
    batch_size: int = 4
    weights: str = "none"


class Brightness(base.Model):
    """A stand-in detector whose map is the image brightness: its scores are a known
    function of each file's pixels, so misaligned ids would show."""

    FROZEN = "extractor"

    def __init__(self, cfg=BrightCfg()):
        super().__init__(cfg)
        self.w = nn.Parameter(torch.zeros(()))
        self.extractor = nn.Identity()
        self.extractor.label = "brightness/none"
        self.seen = []


def _bright_module(fits):
    def fit(cfg, images, *, device, progress=False):
        model = Brightness()
        fits.append(images.float().mean((1, 2, 3)).numpy())   # what it trained on
        return model

    def predict(model, images, *, progress=False):
        maps = images.float().mean(1).numpy() / 255
        return maps.reshape(len(maps), -1).max(1), maps

    return SimpleNamespace(
        Config=BrightCfg, PROFILES={"smoke": {}}, EVALUATION=(), MONITOR=False,
        config=lambda profile="demo", **kw: BrightCfg(**{k: v for k, v in kw.items()
                                                         if v is not None}),
        category_options=base.no_category_options, locate=base.no_locate,
        inputs=base.inputs,
        build=lambda cfg: Brightness(), fit=fit, predict=predict,
        predict_train=predict,
        score_train=lambda model, images: predict(model, images)[0],
        budget=lambda cfg, n: base.epoch_budget(n, cfg.batch_size, cfg.epochs))


def test_stage1_scores_and_kept_images_are_the_same_files():
    fits = []
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(12, 3, 8, 8, generator=gen) * 255).to(torch.uint8)
    ids = np.array([f"img{i:02d}" for i in np.random.default_rng(0).permutation(12)])
    record = llb.stage1(_bright_module(fits), BrightCfg(), images, ids,
                        llb.config(image_score="max"), seed=3, device=CPU)
    brightness = images.float().mean(1).amax((1, 2)).numpy() / 255
    np.testing.assert_allclose(record.scores, brightness, rtol=1e-6)  # by position
    assert len(fits) == 3 and sorted(np.concatenate(fits).round(4).tolist()) == \
        sorted(images.float().mean((1, 2, 3)).numpy().round(4).tolist())
    kept = llb.purify(record.ids, record.scores, 0.25)
    darkest = ids[np.argsort(brightness)[:3]]
    np.testing.assert_array_equal(kept, darkest)


def test_a_planted_contamination_is_filtered_out(tiny_synth, tmp_path, monkeypatch):
    fits = []
    monkeypatch.setitem(models.REGISTRY, "bright", _bright_module(fits))
    scenario = experiment.Scenario("synthetic", tiny_synth, "brick", 0.2)
    result = experiment.run("llb-bright", scenario, profile="smoke",
                            runs_root=tmp_path, device="cpu",
                            options={"llb.keep": 0.5, "llb.image_score": "max"})
    train = result.split.train
    brightness = result.train_images.float().mean(1).amax((1, 2)).numpy() / 255
    kept = result.model.trace["kept"]
    # stage 2 trained on exactly the kept images, the darker half of the files
    np.testing.assert_allclose(np.sort(fits[-1]), np.sort(
        result.train_images[torch.from_numpy(kept)].float().mean((1, 2, 3)).numpy()))
    assert brightness[kept].max() <= brightness[~kept].min()
    np.testing.assert_array_equal(result.model.trace["ids"], train.id.to_numpy(str))
    row = result.row
    assert row["n_kept"] == kept.sum() == len(train) // 2
    assert row["method"] == "llb-bright" and row["strategy.keep"] == 0.5
    assert 0 <= row["filter_auroc"] <= 1 and 0 <= row["kept_injected"] <= 1


def test_planted_high_scores_are_removed():
    ids = np.array([f"x{i}" for i in range(10)])
    injected = np.zeros(10, bool)
    injected[[2, 7]] = True
    sub = np.where(injected, 0.9, 0.1) + np.random.default_rng(0).random((3, 10)) * 0.05
    scores = llb.aggregate(sub, llb.partition(10, 3, seed=0), llb.config())
    kept = llb.purify(ids, scores, 0.8)
    assert set(kept) == set(ids[~injected])
    trace = {"scores": scores, "kept": np.isin(ids, kept)}
    m = llb.filter_metrics(trace, injected)
    assert m == {"filter_auroc": 1.0, "n_kept": 8, "kept_injected": 0.0,
                 "filter_recall": 1.0, "filter_precision": 1.0}


@pytest.mark.parametrize("method", ["llb-rd", "llb-funad"])
def test_llb_around_registered_methods_reuses_stage1(method, smoke_kw):
    kw = smoke_kw
    first = experiment.run(method, **kw, options={"llb.keep": 0.5})
    stage1 = next(kw["runs_root"].rglob("stage1.npz"))
    stamp = stage1.stat().st_mtime_ns
    second = experiment.run(method, **kw, options={"llb.keep": 0.8})
    assert stage1.stat().st_mtime_ns == stamp                  # stage 1 reused
    assert first.row["n_kept"] < second.row["n_kept"]
    np.testing.assert_array_equal(first.model.trace["scores"],
                                  second.model.trace["scores"])
    assert np.isfinite(first.row["image_auroc"]) and first.row["fit_seconds"] > 0
    with pytest.raises(ValueError, match="llb-rd"):
        experiment.run("rd", **kw, options={"llb.keep": 0.5})


def test_every_sub_model_has_its_own_seed_and_initialisation():
    seeds = []

    def fit(cfg, images, *, device, progress=False):
        seeds.append(cfg.seed)
        return Brightness()

    module = _bright_module([])
    module.fit = fit
    images = torch.zeros(9, 3, 8, 8, dtype=torch.uint8)
    ids = np.array([f"i{i}" for i in range(9)])
    llb.stage1(module, BrightCfg(seed=7), images, ids, llb.config(), seed=7,
               device=CPU)
    assert seeds == [1007, 2007, 3007]                  # none is the run's seed (7)
    seeds.clear()
    llb.stage1(module, BrightCfg(seed=7), images, ids, llb.config(seed_stride=0),
               seed=7, device=CPU)
    assert seeds == [7, 7, 7]                           # the old, shared seed
    # the registered methods build differently initialised sub-models from them
    for name in ("rd", "funad"):
        method = models.get(name)
        cfg = method.config("smoke")
        nets = [method.build(llb.sub_config(cfg, k, llb.config())) for k in range(3)]
        trained = [[p for n, p in net.named_parameters() if p.requires_grad]
                   for net in nets]
        for a, b in ((0, 1), (0, 2), (1, 2)):
            assert not all(torch.equal(p, q) for p, q in zip(trained[a], trained[b],
                                                             strict=True)), name
        again = method.build(llb.sub_config(cfg, 1, llb.config()))
        assert all(torch.equal(p, q) for p, q in zip(
            [p for p in again.parameters() if p.requires_grad], trained[1],
            strict=True))                                # seeded: reproducible


def test_the_reported_budget_counts_every_sub_model_and_stage_two():
    """Stage 1 trains K sub-models, each on its subset: the row's steps and images
    seen are the sum of those K fits and stage 2's, written out for RD by epochs
    (ceil(n / B) steps per epoch, drop_last False)."""
    from fuadnb.models import rd
    cfg = rd.config("smoke", epochs=3, batch_size=8)
    kept = np.zeros(33, bool)
    kept[:6] = True
    # sub-models of 10, 10 and 13 images for 5 steps of 8 (LLB's sub_steps): two
    # whole epochs (2 x 10, 2 x 13 images) and one batch of 8
    sub = np.array([llb.with_steps(rd, cfg, 5, n) for n in (10, 10, 13)])
    sub_budget = np.array([rd.budget(c, n) for c, n in zip(sub, (10, 10, 13),
                                                           strict=True)])
    np.testing.assert_array_equal(sub_budget, [[5, 28], [5, 28], [5, 34]])
    trace = {"sub_budget": sub_budget, "kept": kept, "scores": np.arange(33.0),
             "seconds": np.array(1.0), "stage2_seconds": np.array(2.0)}
    injected = np.zeros(33, bool)
    injected[-3:] = True
    budget, seconds, _ = llb.report(rd, cfg, SimpleNamespace(trace=trace), injected)
    # stage 2: RD's own 3 epochs of ceil(6 / 8) = 1 step on the 6 kept images
    assert (budget.steps, budget.images_seen) == (5 + 5 + 5 + 3, 28 + 28 + 34 + 18)
    assert seconds == 3.0


def test_sub_models_train_for_llbs_own_schedule_counted_in_steps():
    """Each sub-model takes exactly ``sub_steps`` optimiser steps (counted by RD's
    step monitor), stage 2 keeps the method's schedule, and the record says so."""
    steps = []

    def fit(cfg, images, *, device, progress=False):
        count = []
        model = rd.fit(cfg, images, device=device,
                       monitor=lambda step, model: count.append(step))
        steps.append(len(count))
        return model

    module = SimpleNamespace(**{name: getattr(rd, name) for name in models.REQUIRED})
    module.fit = fit
    cfg = rd.config("smoke", epochs=1, batch_size=2)
    images = (torch.rand(9, 3, 64, 64, generator=torch.Generator().manual_seed(0))
              * 255).to(torch.uint8)
    ids = np.array([f"i{i}" for i in range(9)])
    record = llb.stage1(module, cfg, images, ids, llb.config(sub_steps=3), seed=1,
                        device=CPU)
    assert steps == [3, 3, 3]                    # not RD's 1 epoch = 2 steps each
    np.testing.assert_array_equal(record.sub_budget[:, 0], [3, 3, 3])
    steps.clear()
    record = llb.stage1(module, cfg, images, ids, llb.config(sub_steps=0), seed=1,
                        device=CPU)
    assert steps == [2, 2, 2]                    # 0: the method's own schedule
    # methods scheduled otherwise: iterations exact, epochs rounded up to whole ones
    from fuadnb.models import funad, rde
    assert llb.with_steps(rde, rde.config("smoke"), 7, 20).iterations == 7
    assert rde.budget(llb.with_steps(rde, rde.config("smoke"), 7, 20), 20).steps == 7
    fcfg = llb.with_steps(funad, funad.config("smoke", batch_size=8), 7, 20)
    assert fcfg.epochs == 4 and funad.budget(fcfg, 20).steps == 8   # 2 per epoch
    pcfg = patchcore.config("smoke")
    assert llb.with_steps(patchcore, pcfg, 7, 20) == pcfg          # no training


def test_the_sub_model_schedule_is_a_profile_setting_and_in_the_run_key(
        smoke_kw, tmp_path):
    assert llb.config().sub_steps == 1000          # the released config's comment
    assert llb.config("smoke").sub_steps == 2
    assert llb.config("demo").sub_steps == llb.PROFILES["demo"]["sub_steps"]
    _, _, strategy = experiment.configure("llb-rd", dataset="synthetic",
                                          category="grass", profile="demo")
    assert strategy == llb.config("demo")
    _, _, strategy = experiment.configure(
        "llb-rd", dataset="synthetic", category="grass", profile="demo",
        options={"llb.sub_steps": 40})
    assert strategy.sub_steps == 40
    with pytest.raises(ValueError, match="sub_steps"):
        llb.config(sub_steps=-1)
    manifest = smoke_kw["scenario"].split().manifest
    keys = {runs.RunSpec("llb-rd", "synthetic", "brick", 0.2, "iid", 1, "smoke",
                         rd.config("smoke"), manifest, root=tmp_path,
                         strategy=llb.config(sub_steps=n)).key for n in (0, 2, 3)}
    assert len(keys) == 3
    # the row names it, and the row's steps count the sub-models' 2 steps each
    result = experiment.run("llb-rd", **smoke_kw, options={"llb.keep": 0.5})
    assert result.row["strategy.sub_steps"] == 2
    trace = result.model.trace
    np.testing.assert_array_equal(trace["sub_budget"][:, 0], [2, 2, 2])
    stage2 = rd.budget(rd.config("smoke"), int(trace["kept"].sum())).steps
    assert result.row["steps"] == 6 + stage2


def _recording(module, fitted):
    """`module` whose fit also appends (its training images, the model) to
    `fitted`."""
    spy = SimpleNamespace(**{name: getattr(module, name) for name in models.REQUIRED})

    def fit(cfg, images, *, device, progress=False):
        model = module.fit(cfg, images, device=device, progress=progress)
        fitted.append((images, model))
        return model

    spy.fit = fit
    return spy


def test_a_memory_bank_scores_its_own_subset_held_out():
    """Around PatchCore (full bank, so the reference is exact), a sub-model scores
    each image of its own subset as a bank of the subset's *other* images would:
    an anomalous image duplicated in its own subset scores high, where the bank's
    ordinary prediction (the old rule) gives it about 0."""
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(12, 3, 8, 8, generator=g),
                                             size=64, mode="bilinear")
    subset = llb.partition(12, 3, seed=5)
    a, b = np.flatnonzero(subset == 0)[:2]              # both in subset 0
    smooth[a, :, 16:40, 16:40] = 1.0                    # a bright square...
    images = (smooth * 255).to(torch.uint8)
    images[b] = images[a]                               # ...and its exact copy
    ids = np.array([f"i{i}" for i in range(12)])
    fitted = []
    cfg = patchcore.config("smoke", coreset_ratio=1.0)
    record = llb.stage1(_recording(patchcore, fitted), cfg, images, ids,
                        llb.config(), seed=5, device=CPU)
    own = np.flatnonzero(subset == 0)
    own_images, own_model = fitted[0]
    assert torch.equal(own_images, images[torch.from_numpy(own)])
    old = llb.image_scores(patchcore.predict(own_model, images[[a]])[1], llb.config())
    for i in own:                                       # a bank without i (or copies)
        rest = own[~np.all(images[own].numpy() == images[i].numpy(), axis=(1, 2, 3))]
        held_out = patchcore.fit(cfg, images[torch.from_numpy(rest)], device=CPU)
        ref = llb.image_scores(patchcore.predict(held_out, images[[i]])[1],
                               llb.config())
        assert record.sub_scores[0, i] == pytest.approx(ref[0], rel=1e-4)
    assert record.sub_scores[0, a] > 100 * old[0]       # the old rule: about 0
    assert record.sub_scores[0, a] == pytest.approx(record.sub_scores[0, b])
    # the other sub-models score subset 0 with their whole banks
    others = np.flatnonzero(subset != 1)
    np.testing.assert_allclose(record.sub_scores[1, others], llb.image_scores(
        patchcore.predict(fitted[1][1], images[torch.from_numpy(others)])[1],
        llb.config()), rtol=1e-6)
