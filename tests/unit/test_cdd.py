"""CDD (our reconstruction): partitions cover every image once, the pseudo-normal
target against a numpy re-statement and never from the image's own student, domain
students trained on their domain only, one teacher pass, a falling loss, the run
cache round trip."""

import numpy as np
import pytest
import torch

from fuadnb import engine, experiment
from fuadnb.models import cdd, rd

CPU = torch.device("cpu")


def images(n=12, seed=0, size=64):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=gen) * 255).to(torch.uint8)


def cfg_(**kw):
    return cdd.config("smoke", **{"batch_size": 3, "eval_batch_size": 4} | kw)


@pytest.mark.parametrize("partition", ["fixed", "random", "kmeans"])
@pytest.mark.parametrize("k, n", [(2, 12), (3, 13), (5, 17)])
def test_partitions_cover_every_image_exactly_once(partition, k, n):
    cfg = cfg_(domains=k, partition=partition, epochs=4)
    desc = np.random.default_rng(0).normal(size=(n, 6))
    plan = cdd.schedule(cfg, n, desc)
    assert len(plan) == 4
    for domain in plan:
        assert domain.shape == (n,) and set(domain.tolist()) == set(range(k))
        sizes = np.bincount(domain.numpy(), minlength=k)
        assert sizes.sum() == n and sizes.max() - sizes.min() <= (
            1 if partition != "kmeans" else np.ceil(n / k))
        assert sizes.max() <= np.ceil(n / k)
    same = all(torch.equal(plan[0], d) for d in plan)
    assert same == (partition != "random")
    assert all(torch.equal(a, b) for a, b in zip(plan, cdd.schedule(cfg, n, desc),
                                                 strict=True))   # recomputable


def test_kmeans_puts_planted_groups_in_their_own_domains():
    rng = np.random.default_rng(1)
    centres = np.eye(3) * 10
    desc = np.concatenate([c + rng.normal(scale=0.1, size=(5, 3)) for c in centres])
    domain = cdd.schedule(cfg_(domains=3, partition="kmeans"), 15, desc)[0].numpy()
    groups = domain.reshape(3, 5)
    assert all(len(set(g)) == 1 for g in groups) and len(set(groups[:, 0])) == 3


def test_schedule_errors_are_clear():
    with pytest.raises(ValueError, match="at least domains=3"):
        cdd.schedule(cfg_(domains=3), 2)
    with pytest.raises(ValueError, match="descriptors"):
        cdd.schedule(cfg_(partition="kmeans"), 10)
    with pytest.raises(ValueError, match="domains must be >= 2"):
        cdd.config("smoke", domains=1)
    with pytest.raises(ValueError, match="partition must be"):
        cdd.config("smoke", partition="clusters")
    with pytest.raises(ValueError, match="unknown CDD option"):
        cdd.config("smoke", k=3)


@pytest.mark.parametrize("how", ["mean", "median"])
def test_aggregate_matches_numpy_and_ignores_the_own_student(how):
    gen = torch.Generator().manual_seed(0)
    k, b = 4, 6
    outputs = torch.randn(k, b, 3, 2, 2, generator=gen)
    domain = torch.tensor([0, 1, 2, 3, 1, 0])
    got = cdd.aggregate(outputs, domain, how).numpy()
    o = outputs.numpy()
    for i in range(b):
        others = o[[j for j in range(k) if j != domain[i]], i]        # (3, ...)
        ref = others.mean(0) if how == "mean" else np.sort(others, 0)[1]
        np.testing.assert_allclose(got[i], ref, rtol=1e-6, atol=1e-6)
    changed = outputs.clone()
    changed[domain, torch.arange(b)] += 100.0          # each image's own student
    torch.testing.assert_close(cdd.aggregate(changed, domain, how),
                               cdd.aggregate(outputs, domain, how))


def test_target_never_comes_from_the_student_that_saw_the_image():
    cfg = cfg_(domains=3, partition="fixed", epochs=1)
    imgs = images(n=9)
    model = cdd.fit(cfg, imgs, device=CPU)
    domain = cdd.domains(model, imgs)
    feats = engine.frozen_features(model.teacher, imgs, batch_size=4, device=CPU,
                                   precision="fp32")
    before = cdd.pseudo_normal(model, feats, domain)
    with torch.no_grad():
        for p in model.domain_students[0].parameters():
            p.add_(torch.randn_like(p))
    after = cdd.pseudo_normal(model, feats, domain)
    own = domain == 0
    assert own.any() and (~own).any()
    for b, a in zip(before, after, strict=True):
        torch.testing.assert_close(b[own], a[own])          # student 0 not used
        assert not torch.allclose(b[~own], a[~own])         # but used for the others


def test_domain_students_learn_only_from_their_domain():
    cfg = cfg_(domains=2, partition="fixed", epochs=2)
    imgs = images(n=8)
    domain = cdd.schedule(cfg, 8)[0]
    outside, inside = (int(torch.nonzero(domain == d)[0]) for d in (1, 0))

    def student0_after(changed):
        x = imgs.clone()
        x[changed] = 255 - x[changed]
        return cdd.fit(cfg, x, device=CPU).domain_students[0].state_dict()

    base = cdd.fit(cfg, imgs, device=CPU).domain_students[0].state_dict()
    same = student0_after(outside)
    diff = student0_after(inside)
    assert all(torch.equal(base[k], same[k]) for k in base)
    assert not all(torch.equal(base[k], diff[k]) for k in base)


def test_fit_runs_the_teacher_once_and_the_losses_fall(monkeypatch):
    calls = []
    original = rd.backbones.FeatureExtractor.forward
    monkeypatch.setattr(rd.backbones.FeatureExtractor, "forward",
                        lambda self, x: calls.append(len(x)) or original(self, x))
    cfg = cfg_(domains=2, epochs=8, batch_size=4)
    model = cdd.fit(cfg, images(n=8), device=CPU)
    # one shape probe per build, then ONE pass over the 8 images for all students
    assert calls == [1, 4, 4]
    assert len(model.history) == 8 and len(model.domain_history) == 8
    assert model.history[-1] < model.history[0] * 0.8
    first, last = np.array(model.domain_history[0]), np.array(model.domain_history[-1])
    assert (last < first * 0.8).all()
    assert not model.training and not model.teacher.training


def test_teacher_weight_adds_the_teacher_target():
    cfg = cfg_(domains=2, epochs=1, teacher_weight=1.0)
    a = cdd.fit(cfg, images(n=6), device=CPU)
    b = cdd.fit(cfg_(domains=2, epochs=1), images(n=6), device=CPU)
    assert a.history != b.history and a.domain_history == b.domain_history


def test_maps_shapes_and_the_global_student_is_rds_map():
    model = cdd.build(cfg_(domains=3)).eval()
    x = torch.rand(2, 3, 64, 64)
    feats_t = model.teacher(x)
    out = model.student(feats_t)
    assert [f.shape for f in out] == [f.shape for f in feats_t]
    amap = cdd.anomaly_map(model, x)
    ref = rd.distance_map(model.cfg, feats_t, model.student(feats_t), (64, 64))
    torch.testing.assert_close(amap, ref)
    assert cdd.domain_maps(model, x).shape == (3, 2, 1, 64, 64)


def test_run_cache_round_trip_keeps_the_domain_students(smoke_kw):
    kw = smoke_kw
    first = experiment.run("cdd", **kw)
    again = experiment.run("cdd", **kw)
    np.testing.assert_array_equal(first.test_scores, again.test_scores)
    for a, b in zip(first.model.domain_students.state_dict().values(),
                    again.model.domain_students.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b.cpu())
    assert first.row["method"] == "cdd" and np.isfinite(first.row["image_auroc"])
    assert first.row["cfg.domains"] == 2


def test_importing_fuadnb_leaves_sklearn_unloaded():
    """Every grid point's kernel imports fuadnb.nb (about 1 s more with sklearn):
    sklearn loads only when CDD's balanced k-means runs."""
    import os
    import subprocess
    import sys

    code = "import sys, fuadnb, fuadnb.nb\nprint('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True,
                          env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert done.stdout.strip() == "False"
