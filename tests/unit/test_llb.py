"""LLB: the subsets partition the training set, image scores and aggregations
against numpy, the kept ids are exactly the lowest aggregated scores and refer to
the images that were scored (the reference's §6.2 bug), a planted contamination is
filtered out, and the strategy runs around two registered methods."""

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from fuadnb import experiment, models
from fuadnb.models import base
from fuadnb.strategies import llb

CPU = torch.device("cpu")


@pytest.mark.parametrize("n, k", [(10, 3), (9, 3), (7, 2), (5, 5)])
def test_partition_covers_every_image_once(n, k):
    subset = llb.partition(n, k, seed=1)
    sizes = np.bincount(subset, minlength=k)
    assert sizes.sum() == n and set(subset) == set(range(k))
    assert (sizes[:-1] == n // k).all() and sizes[-1] == n - (k - 1) * (n // k)
    np.testing.assert_array_equal(subset, llb.partition(n, k, seed=1))
    with pytest.raises(ValueError, match="at least subsets"):
        llb.partition(2, 3, seed=0)


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
        category_options=base.no_category_options,
        inputs=base.inputs,
        build=lambda cfg: Brightness(), fit=fit, predict=predict,
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
    subset = np.array([0] * 10 + [1] * 10 + [2] * 13)
    kept = np.zeros(33, bool)
    kept[:6] = True
    trace = {"subset": subset, "kept": kept, "scores": np.arange(33.0),
             "seconds": np.array(1.0), "stage2_seconds": np.array(2.0)}
    injected = np.zeros(33, bool)
    injected[-3:] = True
    budget, seconds, _ = llb.report(rd, cfg, SimpleNamespace(trace=trace), injected)
    per_fit = [3 * -(-n // 8) for n in (10, 10, 13, 6)]         # 6 + 6 + 6 + 3 steps
    images = [3 * n for n in (10, 10, 13, 6)]
    assert (budget.steps, budget.images_seen) == (sum(per_fit), sum(images))
    assert seconds == 3.0
