"""FUN-AD: the pseudo-label rule on a hand-made feature set, nearest neighbours and
mutual pairs against brute-force numpy, the bank never holds images above the
threshold, the perturbation and the loss against numpy, patch-feature shapes, a
falling loss, the run cache keeping the trace."""

import numpy as np
import pytest
import torch

from fuadnb import experiment
from fuadnb.data import images
from fuadnb.models import funad
from fuadnb.nn import backbones, patches

CPU = torch.device("cpu")


def cfg_(**kw):
    return funad.config("smoke", **kw)


def test_pseudo_labels_on_a_hand_made_feature_set():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[[0.0, 0.0],      # exact self-match: 2nd NN, d = 1
                           [0.5, 0.0],      # d = 0.25
                           [3.0, 0.0]],     # d = 4 (the max)
                          [[0.0, 2.0],      # d = 1
                           [1.0, 0.05],     # 0.0025 < 1e-2: a self-match, 2nd: 1.0025
                           [2.0, 2.0]]])    # d = min(8, 5, 5) = 5 -> the max
    d, labels, uncertain = funad.pseudo_labels(feats, bank, cfg_())
    raw = np.array([[1.0, 0.25, 4.0], [1.0, 1.0025, 5.0]])
    ref = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(d.numpy(), ref, rtol=1e-5)
    np.testing.assert_array_equal(labels.numpy(), ref > 0.5)
    np.testing.assert_array_equal(uncertain.numpy(), (ref > 0.5) & (ref < 0.9))
    assert labels.sum() == 2 and uncertain.sum() == 1       # 4/4.75 = 0.84 uncertain


@pytest.mark.parametrize("chunk", [3, 4096])
def test_nearest_and_mutual_pairs_match_brute_force(chunk):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    keys = rng.normal(size=(25, 5)).astype(np.float32)
    d, idx = funad.nearest(torch.from_numpy(x), torch.from_numpy(keys), 2, chunk)
    full = ((x[:, None] - keys[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(full, 1)[:, :2])
    np.testing.assert_allclose(d.numpy(), np.sort(full, 1)[:, :2], rtol=1e-4,
                               atol=1e-4)
    pairs = funad.mutual_pairs(torch.from_numpy(x), chunk).numpy()
    self_d = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.fill_diagonal(self_d, np.inf)
    nn = self_d.argmin(1)
    ref = sorted((i, int(nn[i])) for i in range(40) if nn[nn[i]] == i and i < nn[i])
    assert sorted(map(tuple, pairs.tolist())) == ref and len(ref) > 3


def test_bank_holds_only_confident_images():
    scores = torch.tensor([0.1, 0.9, 0.2, 0.8, 0.15, 0.3, 0.95, 0.12])
    cfg = cfg_()
    gen = torch.Generator().manual_seed(0)
    confident, bank = funad.bank_images(scores, cfg, gen)
    norm = (scores - scores.min()) / (scores.max() - scores.min())
    np.testing.assert_array_equal(confident.numpy(), (norm < 0.5).numpy())
    assert len(bank) == int(0.5 * confident.sum()) == 2
    assert confident[bank].all()
    one = funad.bank_images(torch.tensor([0.0, 1.0, 1.0]), cfg, gen)[1]
    assert one.tolist() == [0]                     # at least one image


def test_perturbation_touches_only_uncertain_patches_with_the_code_scale():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, 3, generator=gen)
    uncertain = torch.zeros(4, 5, dtype=torch.bool)
    uncertain[1, 2] = uncertain[3, 0] = True
    out = funad.perturb(x, uncertain, torch.Generator().manual_seed(7))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    scale = x.numpy().std(0, ddof=1).max(0)                       # (D,)
    expected = x.numpy() + noise.numpy() * scale * uncertain.numpy()[..., None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    assert torch.equal(out[~uncertain], x[~uncertain])


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("smoothness", ["code", "text"])
def test_loss_matches_numpy(smoothness):
    z = torch.tensor([[-1.4, 0.4, 2.2], [-0.4, -2.2, 0.85]])        # clean logits
    z_hat = torch.tensor([[-0.85, 0.0, 1.4], [-0.6, -1.4, 0.4]])    # perturbed
    y = torch.tensor([[False, False, True], [False, False, True]])
    pairs = torch.tensor([[0, 3], [1, 4]])
    cfg = cfg_(smoothness=smoothness)
    got = funad.loss(z, z_hat, y, pairs, cfg).item()
    sh, yy = _sigmoid(z_hat.double().numpy().ravel()), y.numpy().ravel()
    bce = -np.log(sh[yy]).mean() - np.log(1 - sh[~yy]).mean()   # balanced, perturbed
    # the code: the "clean" forward pass sees the perturbed copy (x shares _copy's
    # storage); the text: the clean features
    ss = sh if smoothness == "code" else _sigmoid(z.double().numpy().ravel())
    si, sj = ss[[0, 1]], ss[[3, 4]]
    m = (si + sj) / 2
    smooth = 0.5 * (np.abs(si - m).mean() + np.abs(sj - m).mean())
    assert got == pytest.approx(bce + 2.5 * smooth, rel=1e-5)
    other = funad.loss(z, z_hat, y, pairs, cfg_(
        smoothness="text" if smoothness == "code" else "code")).item()
    assert abs(other - got) > 1e-3                  # the two variants differ here
    if smoothness == "code":                        # needs no clean pass
        assert funad.loss(None, z_hat, y, pairs, cfg).item() == pytest.approx(got)
    else:
        with pytest.raises(ValueError, match="clean logits"):
            funad.loss(None, z_hat, y, pairs, cfg)


def test_default_smoothness_is_the_released_code():
    assert funad.config("paper").smoothness == "code"
    assert funad.config("demo").smoothness == "code"
    with pytest.raises(ValueError, match="smoothness"):
        cfg_(smoothness="paper")


def test_fit_text_smoothness_runs():
    gen = torch.Generator().manual_seed(0)
    imgs = (torch.rand(8, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    text = funad.fit(cfg_(epochs=2, batch_size=4, smoothness="text"), imgs,
                     device=CPU)
    code = funad.fit(cfg_(epochs=2, batch_size=4), imgs, device=CPU)
    assert np.isfinite(text.history).all() and text.history != code.history


@pytest.mark.parametrize("stride, grid", [(8, 8), (16, 4)])
def test_cnn_patch_features(stride, grid):
    ext = patches.PatchFeatures("efficientnet_lite2", "imagenet", stride=stride)
    out = ext(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, grid * grid, 2 * (48 + 120)) and ext.grid(64) == grid
    # the first half is the image mean of the second (FUN-AD's CLS concatenation)
    torch.testing.assert_close(out[:, :, :168], out[:, :, 168:].mean(1, keepdim=True)
                               .expand(-1, grid * grid, -1))
    assert not any(p.requires_grad for p in ext.parameters())


def test_dino_features_and_missing_weights(tmp_path, monkeypatch):
    ext = patches.PatchFeatures("dino_vitb8", "random")
    out = ext(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 16, 1536)
    torch.testing.assert_close(out[0, 0, :768], out[0, 5, :768])      # CLS repeated
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(backbones.WeightsNotFoundError, match="dino_vitbase8"):
        patches.PatchFeatures("dino_vitb8", "dino")
    with pytest.raises(ValueError, match="stride"):
        patches.PatchFeatures("dino_vitb8", "random", stride=16)


def test_fit_trace_bank_and_falling_loss():
    gen = torch.Generator().manual_seed(0)
    imgs = (torch.rand(12, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    imgs[:2, :, 20:40, 20:40] = 255                               # two odd ones
    model = funad.fit(cfg_(epochs=12, batch_size=4), imgs, device=CPU)
    t = model.trace
    iters = 12 * 3
    assert t["bank"].shape == (iters, 12) and t["labels_bits"].shape == (iters, 4, 8)
    assert t["labels_bits"].dtype == np.uint8 and int(t["patches"]) == 64
    labels = funad.trace_labels(t)
    assert labels.shape == (iters, 4, 64) and labels.dtype == bool
    assert labels.any(axis=(1, 2)).all()  # batch-wise min-max: an anomalous patch
    assert not (t["bank"] & ~t["confident"]).any()        # never above the threshold
    np.testing.assert_array_equal(t["bank"].sum(1),
                                  np.maximum(1, t["confident"].sum(1) // 2))
    assert np.mean(model.history[-3:]) < 0.8 * model.history[0]
    scores, maps = funad.predict(model, imgs[:3])
    assert maps.shape == (3, 64, 64) and scores.shape == (3,)
    with torch.no_grad():
        _, z = model.net(model.extractor(imgs[:3].float() / 255))
    assert z.dtype == torch.float32
    np.testing.assert_allclose(scores, funad.probability(z).amax(1).numpy(),
                               rtol=1e-5)                                 # max patch


def test_run_cache_keeps_the_trace(smoke_kw):
    kw = smoke_kw
    first = experiment.run("funad", **kw)
    again = experiment.run("funad", **kw)
    np.testing.assert_array_equal(first.test_scores, again.test_scores)
    assert set(again.model.trace) == {"bank", "confident", "batch", "labels_bits",
                                      "patches", "loss"}
    np.testing.assert_array_equal(first.model.trace["bank"], again.model.trace["bank"])
    assert first.row["teacher"] == "efficientnet_lite2/imagenet"


def test_patch_truth_and_label_quality():
    masks = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    masks[1, 0, :4, :2] = True                  # half of patch 0, quarter of none
    masks[1, 0, 6:, 6:] = True                  # a quarter of patch 3
    truth = funad.patch_truth(masks, 2)
    np.testing.assert_array_equal(truth, [[0, 0, 0, 0], [1, 0, 0, 1]])
    trace = {"batch": np.array([[0, 1], [1, 0]]),
             "labels": np.array([[[1, 0, 0, 0], [1, 0, 0, 0]],
                                 [[0, 0, 0, 0], [0, 0, 0, 0]]], bool)}
    packed = {"batch": trace["batch"], "patches": np.array(4),
              "labels_bits": np.packbits(trace["labels"], axis=-1)}
    for t, chunk in ((trace, 256), (packed, 256), (packed, 1)):   # old and packed
        q = funad.label_quality(t, truth, chunk=chunk)
        np.testing.assert_allclose(q["precision"], [0.5, np.nan])
        np.testing.assert_allclose(q["recall"], [0.5, 0.0])
        np.testing.assert_allclose(q["labelled"], [0.25, 0.0])


def test_bf16_autocast_neither_saturates_nor_ties():
    """Under bf16 autocast (on the CPU here, as on CUDA) a bf16 sigmoid has steps of
    2^-8 in [0.5, 1) and is exactly 1.0 above a logit of ~6.2: image scores would tie
    and the BCE saturate. The logits and the sigmoid must stay float32."""
    gen = torch.Generator().manual_seed(0)
    imgs = (torch.rand(16, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    imgs[:3, :, 16:48, 16:48] = 255                               # odd ones
    test = (torch.rand(48, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    test[:24, :, 8:40, 8:40] = 255
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model = funad.fit(cfg_(epochs=40, batch_size=8, lr=1e-3), imgs, device=CPU)
        scores, maps = funad.predict(model, test)
    assert np.isfinite(model.history).all()
    assert not (scores == 1.0).any() and not (maps == 1.0).any()
    assert len(np.unique(scores)) >= len(scores) - 1              # no ties
    assert scores.max() > 0.5 and maps.dtype == np.float32


def test_paper_profile_crops_and_the_experiment_honours_it(smoke_kw):
    cfg = funad.config("paper")
    assert (cfg.load_size, cfg.image_size) == (256, 224)     # Resize 256, crop 224
    assert funad.config("demo").load_size == 0                # shares RD's test set
    with pytest.raises(ValueError, match="load_size"):
        cfg_(load_size=32)
    res = experiment.run("funad", **smoke_kw, options={"load_size": 96})
    imgs, masks = images.load(res.split.test, 64, load_size=96)
    assert torch.equal(res.test_images, imgs)
    np.testing.assert_array_equal(res.test_masks, masks[:, 0].numpy())
    assert not torch.equal(imgs, images.load(res.split.test, 64)[0])


def test_steps_drop_the_last_batch_and_the_monitor_sees_every_step():
    gen = torch.Generator().manual_seed(1)
    imgs = (torch.rand(10, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    cfg = cfg_(epochs=3, batch_size=4)
    assert funad.budget(cfg, 10) == (3 * 2, 6 * 4)        # 10 // 4 = 2, drop_last
    seen = []
    model = funad.fit(cfg, imgs, device=CPU,
                      monitor=lambda step, m: seen.append((step, m.training)))
    assert [s for s, _ in seen] == list(range(1, 7)) == list(
        range(1, len(model.trace["loss"]) + 1))
    assert all(training for _, training in seen)


def test_knn_baseline_matches_brute_force_numpy():
    gen = torch.Generator().manual_seed(2)
    train = (torch.rand(5, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    test = (torch.rand(3, 3, 64, 64, generator=gen) * 255).to(torch.uint8)
    test[0] = train[1]                                     # a training image: 0
    model = funad.build(cfg_(chunk=7)).eval()
    with torch.no_grad():
        bank = model.extractor(train.float() / 255).flatten(0, 1).double().numpy()
        q = model.extractor(test.float() / 255).double().numpy()     # (3, P, D)
    d = ((q[:, :, None, :] - bank[None, None]) ** 2).sum(-1).min(-1)  # (3, P)
    got = funad.knn_baseline(model, train, test)
    # float32 cdist: |a|^2 + |b|^2 - 2ab leaves ~1e-6 of |a|^2 ~ 1e3 on a self-match
    np.testing.assert_allclose(got, d.max(1), rtol=1e-4, atol=1e-2)
    assert got[0] < 1e-2 < 1 < got[1:].min()


def test_nearest_blocks_are_bounded_however_many_keys(monkeypatch):
    """At most `block` distances at once (not `chunk` x all keys), same result."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(40, 5)).astype(np.float32))
    keys = torch.from_numpy(rng.normal(size=(25, 5)).astype(np.float32))
    whole = funad.nearest(x, keys, 2, 4096)
    sizes, cdist = [], torch.cdist

    def counted(a, b):
        sizes.append(len(a) * len(b))
        return cdist(a, b)

    monkeypatch.setattr(funad.torch, "cdist", counted)
    blocked = funad.nearest(x, keys, 2, 4096, block=100)
    assert max(sizes) <= 100 and len(sizes) == 10            # 4 queries x 25 keys
    assert torch.equal(blocked[1], whole[1])
    torch.testing.assert_close(blocked[0], whole[0])
    sizes.clear()
    funad.nearest(x, keys, 2, 4096, block=1)                  # at least one row
    assert sizes == [25] * 40
