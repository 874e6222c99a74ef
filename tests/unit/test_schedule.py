"""Step-matched schedules (the same optimiser steps at every noise ratio) and the
learning-bias curve recorded during a fit."""

import json

import numpy as np
import pytest
import torch

from fuadnb import engine, experiment
from fuadnb.models import rd


@pytest.mark.parametrize("n", [100, 110, 120, 7])
def test_steps_are_the_same_whatever_the_training_set_size(n):
    plan = engine.schedule(n, 16, epochs=10, steps=75,
                           generator=torch.Generator().manual_seed(0))
    batches = [b for epoch in plan for b in epoch]
    assert len(batches) == 75
    for epoch in plan[:-1]:                       # whole passes, then a cut one
        assert sorted(torch.cat(epoch).tolist()) == list(range(n))
    seen = sum(len(b) for b in batches)
    assert engine.images_seen(n, 16, epochs=10, steps=75) == seen
    by_epochs = engine.schedule(n, 16, epochs=10,
                                generator=torch.Generator().manual_seed(0))
    assert sum(map(len, by_epochs)) == 10 * -(-n // 16)    # grows with n
    assert engine.images_seen(n, 16, epochs=10) == 10 * n


def test_steps_equal_to_whole_epochs_give_the_same_batches():
    a = engine.schedule(50, 16, epochs=3, generator=torch.Generator().manual_seed(4))
    b = engine.schedule(50, 16, epochs=99, steps=12,
                        generator=torch.Generator().manual_seed(4))
    assert [[t.tolist() for t in e] for e in a] == [[t.tolist() for t in e] for e in b]


def test_rd_trains_exactly_its_steps():
    cfg = rd.config("smoke", steps=5, batch_size=4)
    calls = []
    images = torch.randint(0, 255, (10, 3, 64, 64), dtype=torch.uint8)
    model = rd.fit(cfg, images, device=torch.device("cpu"),
                   monitor=lambda step, m: calls.append((step, m.training)))
    assert calls == [(s, True) for s in range(1, 6)]
    assert len(model.history) == 2                     # 3 steps, then 2
    with pytest.raises(ValueError, match="steps"):
        rd.config("smoke", steps=0)


def test_the_learning_bias_curve_has_its_length_and_changes_nothing(smoke_kw):
    kw = smoke_kw | {"options": {"steps": 6, "batch_size": 4}}
    plain = experiment.run("rd", **kw)
    curved = experiment.run("rd", **kw, curve_every=2)
    curve = curved.model.curve
    assert [r["step"] for r in curve] == [2, 4, 6]
    assert set(curve[0]) == {"step", "detection_auroc", "image_auroc"}   # iid
    assert all(0 <= r["detection_auroc"] <= 1 for r in curve)
    last = curve[-1]   # the last record is the final model's
    assert last["image_auroc"] == pytest.approx(curved.row["image_auroc"])
    assert last["detection_auroc"] == pytest.approx(curved.row["detection_auroc"])
    for a, b in zip(plain.model.state_dict().values(),
                    curved.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)                     # the diagnostic trains nothing
    assert plain.row["steps"] == curved.row["steps"] == 6
    assert json.loads((curved.dir / "curve.json").read_text()) == curve
    again = experiment.run("rd", **kw, curve_every=2)     # from the cache
    assert again.model.curve == curve and again.dir == curved.dir != plain.dir
    overlap = experiment.run("rd", **kw | {"scenario": kw["scenario"].replace(
        regime="overlap")}, curve_every=3)
    assert {"image_auroc_seen", "image_auroc_unseen"} <= set(overlap.model.curve[0])
    assert not np.isnan(overlap.row["image_auroc_seen"])
    with pytest.raises(ValueError, match="learning-bias curve"):
        experiment.run("llb-rd", **kw, curve_every=2)
    with pytest.raises(ValueError, match="the run's 6 optimiser steps"):
        experiment.run("rd", **kw, curve_every=7)


def test_epochs_given_explicitly_train_by_epochs(monkeypatch):
    monkeypatch.setitem(rd.PROFILES, "stepped", {"steps": 40, "epochs": 3})
    assert rd.config("stepped").steps == 40
    assert rd.config("stepped", epochs=5).steps is None
    assert rd.config("stepped", epochs=5, steps=7).steps == 7


def test_changing_an_evaluation_setting_rescores_without_retraining(smoke_kw,
                                                                    monkeypatch):
    first = experiment.run("rd", **smoke_kw | {"options": {"sigma": 0.5}})
    fits = []
    real_fit = rd.fit
    monkeypatch.setattr(rd, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    second = experiment.run("rd", **smoke_kw | {"options": {"sigma": 3.0}})
    assert fits == [] and second.dir == first.dir          # the same trained model
    assert second.row["fit_seconds"] == first.row["fit_seconds"]
    assert (first.row["cfg.sigma"], second.row["cfg.sigma"]) == (0.5, 3.0)
    assert not np.allclose(first.test_maps, second.test_maps)   # re-scored
    for a, b in zip(first.model.state_dict().values(),
                    second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    experiment.run("rd", **smoke_kw | {"options": {"sigma": 3.0, "lr": 0.001}})
    assert fits == [1]                                      # training settings retrain


def test_under_llb_a_scoring_setting_is_a_training_setting(smoke_kw):
    """LLB's stage 1 keeps the images its smoothed, fused scores rank lowest, so
    sigma changes what stage 2 trains on: another sigma is another run (stage 1
    too), never the cached model of the first."""
    first = experiment.run("llb-rd", **smoke_kw | {"options": {"sigma": 0.5}})
    second = experiment.run("llb-rd", **smoke_kw | {"options": {"sigma": 3.0}})
    assert second.dir != first.dir
    assert len(list(smoke_kw["runs_root"].rglob("stage1.npz"))) == 2
    assert not np.array_equal(first.model.trace["scores"],
                              second.model.trace["scores"])


def test_sigma_follows_the_image_size_unless_given():
    from fuadnb.models import funad, patchcore
    assert rd.config("paper").sigma == 4.0                       # RD4AD at 256 px
    assert rd.config("demo").sigma == 1.5                        # 96 px
    assert rd.config("demo", image_size=128).sigma == 2.0        # was the profile's
    assert rd.config("demo", image_size=128, sigma=3.0).sigma == 3.0
    assert patchcore.config("paper").sigma == funad.config("paper").sigma == 4.0
    assert patchcore.config("demo").sigma == pytest.approx(4 * 128 / 224) == \
        funad.config("demo").sigma


def test_prefetch_gives_the_same_items_in_order_and_raises_where_it_failed():
    import threading

    items = [torch.randn(3, generator=torch.Generator().manual_seed(k))
             for k in range(7)]
    assert [x.tolist() for x in engine.prefetch(iter(items), depth=2)] == \
        [x.tolist() for x in items]

    def failing():
        yield 1
        yield 2
        raise ValueError("bad item")

    got = []
    with pytest.raises(ValueError, match="bad item"):
        for x in engine.prefetch(failing()):
            got.append(x)
    assert got == [1, 2]
    before = threading.active_count()
    endless = engine.prefetch(iter(range(10**9)), depth=1)
    assert next(endless) == 0
    endless.close()                                   # the producer stops
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="depth"):
        next(engine.prefetch([], depth=0))
