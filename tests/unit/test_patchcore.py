"""PatchCore and SoftPatch: the coreset against a brute-force greedy k-centre in
numpy, nearest-bank distances against scipy's cdist, the patch embedding against a
transcription of the reference's ``_embed``, LOF against scikit-learn, the hard filter
and the clamped weights, image score = max patch score, leave-one-image-out training
scores, and smoke runs through `experiment.run` (cache included)."""

import json

import numpy as np
import pytest
import scipy.spatial.distance
import torch
import torch.nn.functional as F
from sklearn.neighbors import LocalOutlierFactor

from fuadnb import cli, experiment, models
from fuadnb.data import images as data_images
from fuadnb.models import patchcore, softpatch

CPU = torch.device("cpu")


def images(n=8, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def np_greedy(x, n, starts, keep=None):
    """Greedy k-centre written out: distances to the set start as the mean distance
    to the starting points; pick the farthest admissible point, n times."""
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    d = full[:, starts].mean(1)
    if keep is not None:
        d = np.where(keep, d, -np.inf)
    picks = []
    for _ in range(n):
        j = int(np.argmax(d))
        picks.append(j)
        d = np.minimum(d, full[:, j])
    return picks


@pytest.mark.parametrize("filtered", [False, True])
def test_greedy_coreset_equals_brute_force(filtered):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 5))
    starts = np.array([3, 17, 42, 99])
    keep = rng.random(150) > 0.3 if filtered else None
    ours = patchcore.greedy_coreset(
        torch.from_numpy(x), 20, torch.from_numpy(starts),
        None if keep is None else torch.from_numpy(keep))
    assert ours.tolist() == np_greedy(x, 20, starts, keep)
    if filtered:
        assert keep[ours.numpy()].all()
        # never more picks than admissible points
        few = np.zeros(150, bool)
        few[[5, 6, 7]] = True
        got = patchcore.greedy_coreset(torch.from_numpy(x), 20,
                                       torch.from_numpy(starts), torch.from_numpy(few))
        assert sorted(got.tolist()) == [5, 6, 7]


def test_projection_and_coreset_size():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 40, dtype=torch.float64)
    y = patchcore.project(x, 16, gen)
    assert y.shape == (300, 16)
    w = torch.linalg.lstsq(x, y).solution.T                    # y = x @ w.T exactly
    torch.testing.assert_close(x @ w.T, y)
    assert w.abs().max() <= 1 / 40 ** 0.5 and w.abs().max() > 0.5 / 40 ** 0.5
    assert patchcore.project(x, 40, gen) is x                   # already that size
    cfg = patchcore.config("smoke", coreset_ratio=0.1, projection_dim=8)
    picks = patchcore.coreset(x, cfg)
    assert len(picks) == 30 and len(set(picks.tolist())) == 30
    assert torch.equal(picks, patchcore.coreset(x, cfg))        # seeded
    assert not torch.equal(picks, patchcore.coreset(x, patchcore.config(
        "smoke", coreset_ratio=0.1, projection_dim=8, seed=5)))


@pytest.mark.parametrize("block", [7, 1 << 24])
def test_nearest_matches_scipy_cdist(block):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(60, 6)).astype(np.float32)
    bank = rng.normal(size=(25, 6)).astype(np.float32)
    d, idx = patchcore.nearest(torch.from_numpy(q), torch.from_numpy(bank), block=block)
    full = scipy.spatial.distance.cdist(q, bank, "sqeuclidean")
    np.testing.assert_array_equal(idx.numpy(), full.argmin(1))
    np.testing.assert_allclose(d.numpy(), full.min(1), rtol=1e-5, atol=1e-5)
    # excluding each query's own image
    q_img = rng.integers(0, 4, 60)
    b_img = rng.integers(0, 4, 25)
    d, idx = patchcore.nearest(torch.from_numpy(q), torch.from_numpy(bank),
                               block=block, query_group=torch.from_numpy(q_img),
                               bank_group=torch.from_numpy(b_img))
    masked = np.where(q_img[:, None] == b_img[None], np.inf, full)
    np.testing.assert_array_equal(idx.numpy(), masked.argmin(1))
    np.testing.assert_allclose(d.numpy(), masked.min(1), rtol=1e-5, atol=1e-5)
    assert (b_img[idx.numpy()] != q_img).all()


def reference_embed(feats, pretrain_dim, target_dim):
    """softpatch.py L118-L153 and common.py L149-L187, transcribed."""
    patched = []
    for x in feats:
        unfolded = torch.nn.Unfold(kernel_size=3, stride=1, padding=1)(x)
        unfolded = unfolded.reshape(*x.shape[:2], 3, 3, -1).permute(0, 4, 1, 2, 3)
        patched.append((unfolded, list(x.shape[-2:])))
    ref = patched[0][1]
    out = [patched[0][0]]
    for f, dims in patched[1:]:
        f = f.reshape(f.shape[0], dims[0], dims[1], *f.shape[2:])
        f = f.permute(0, -3, -2, -1, 1, 2)
        base = f.shape
        f = f.reshape(-1, *f.shape[-2:])
        f = F.interpolate(f.unsqueeze(1), size=ref, mode="bilinear",
                          align_corners=False).squeeze(1)
        f = f.reshape(*base[:-2], *ref).permute(0, -2, -1, 1, 2, 3)
        out.append(f.reshape(len(f), -1, *f.shape[-3:]))
    out = [x.reshape(-1, *x.shape[-3:]) for x in out]
    mapped = [F.adaptive_avg_pool1d(x.reshape(len(x), 1, -1), pretrain_dim).squeeze(1)
              for x in out]
    stacked = torch.stack(mapped, 1).reshape(len(mapped[0]), 1, -1)
    return F.adaptive_avg_pool1d(stacked, target_dim).reshape(len(stacked), -1)


def test_embedding_equals_the_reference_and_is_a_3x3_mean():
    gen = torch.Generator().manual_seed(0)
    f2, f3 = torch.randn(2, 12, 8, 8, generator=gen), torch.randn(2, 20, 4, 4,
                                                                  generator=gen)
    cfg = patchcore.config("smoke", pretrain_dim=20, target_dim=16)
    ours = patchcore.aggregate([f2, f3], cfg)
    assert ours.shape == (2, 64, 16)
    torch.testing.assert_close(ours.reshape(-1, 16), reference_embed([f2, f3], 20, 16))
    # pretrain_dim = C and target = pretrain: per tap, a 3x3 mean (zero padding)
    single = patchcore.aggregate([f3], patchcore.config("smoke", pretrain_dim=20,
                                                        target_dim=20))
    pooled = F.avg_pool2d(f3, 3, stride=1, padding=1).flatten(2).transpose(1, 2)
    torch.testing.assert_close(single, pooled)


def sk_lof(x, k):
    return -LocalOutlierFactor(n_neighbors=k).fit(x).negative_outlier_factor_


def test_lof_equals_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 30, 7))
    ours = softpatch.lof(torch.from_numpy(x), 5).numpy()
    np.testing.assert_allclose(ours, np.stack([sk_lof(g, 5) for g in x]), rtol=1e-9)
    planted = rng.normal(size=(40, 7))
    planted[[3, 21]] += 6.0                                         # two outliers
    ours = softpatch.lof(torch.from_numpy(planted[None]), 5)[0].numpy()
    np.testing.assert_allclose(ours, sk_lof(planted, 5), rtol=1e-9)
    assert set(np.argsort(ours)[-2:]) == {3, 21} and ours[[3, 21]].min() > 2
    small = rng.normal(size=(1, 4, 3))                          # k clipped to N - 1
    with pytest.warns(UserWarning):
        ref = sk_lof(small[0], 5)
    np.testing.assert_allclose(softpatch.lof(torch.from_numpy(small), 5)[0].numpy(),
                               ref, rtol=1e-9)


def test_nearest_and_gaussian_discriminators_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 12, 4))
    full = np.sqrt(((x[:, :, None] - x[:, None]) ** 2).sum(-1))
    for p in range(3):
        np.fill_diagonal(full[p], np.inf)
    np.testing.assert_allclose(softpatch.nearest_other(torch.from_numpy(x)).numpy(),
                               1 + full.min(-1), rtol=1e-9)
    ref = []
    for g in x:
        cov = np.cov(g, rowvar=False) + 0.01 * np.eye(4)
        delta = g - g.mean(0)
        ref.append(1 + np.sqrt(np.einsum("nd,de,ne->n", delta, np.linalg.inv(cov),
                                         delta)))
    np.testing.assert_allclose(softpatch.gaussian(torch.from_numpy(x)).numpy(),
                               np.stack(ref), rtol=1e-5)


def test_bank_weights_are_clamped_and_the_top_tau_filtered():
    scores = torch.tensor([[-0.5, 1.0, 1.2, 3.0], [0.9, 7.0, 1.1, 2.0]])
    weight, keep = softpatch.bank_weights(scores, 0.15)
    flat = scores.flatten().numpy()
    np.testing.assert_allclose(weight.numpy(), np.maximum(flat, 0))
    np.testing.assert_array_equal(keep.numpy(), flat <= np.quantile(flat, 0.85))
    assert keep.sum() == 6 and not keep[5] and not keep[3]
    assert weight.min() == 0.0                                  # clamped, as L198


def planted_images(n=10, seed=0):
    """Smooth random images; the first two carry a bright square."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=64,
                         mode="bilinear", align_corners=False)
    base[:2, :, 16:40, 16:40] = 1.0
    return (base * 255).to(torch.uint8)


def test_softpatch_never_puts_filtered_patches_in_the_coreset():
    imgs = planted_images()
    model = softpatch.fit(softpatch.config("smoke", coreset_ratio=0.25), imgs,
                          device=CPU)
    t = model.trace
    kept, picks = t["kept"].flatten(), t["coreset"]
    n, p = t["patch_score"].shape
    assert (n, p) == (10, 64) and len(picks) == int(0.25 * n * p) == len(model.bank)
    assert kept[picks].all()
    assert abs((~kept).mean() - 0.15) < 0.01
    # the bank weights are the picked patches' (clamped) scores
    np.testing.assert_allclose(model.bank_weight.numpy(),
                               np.maximum(t["patch_score"].flatten()[picks], 0))
    np.testing.assert_array_equal(model.bank_image.numpy(), picks // p)
    # the planted squares are what the discriminator filters most
    filtered_share = (~t["kept"]).mean(1)
    assert filtered_share[:2].min() > filtered_share[2:].max()


def test_softpatch_without_filter_or_weights_is_patchcore():
    imgs = planted_images()
    pc = patchcore.fit(patchcore.config("smoke"), imgs, device=CPU)
    sp = softpatch.fit(softpatch.config("smoke", threshold=0.0, soft_weight=False),
                       imgs, device=CPU)
    assert torch.equal(pc.bank, sp.bank) and (sp.bank_weight == 1).all()
    np.testing.assert_array_equal(pc.trace["coreset"], sp.trace["coreset"])
    weighted = softpatch.fit(softpatch.config("smoke", threshold=0.0), imgs,
                             device=CPU)
    assert not torch.equal(weighted.bank_weight, sp.bank_weight)
    s_pc, _ = patchcore.predict(pc, imgs[:3])
    s_w, _ = softpatch.predict(weighted, imgs[:3])
    assert not np.allclose(s_pc, s_w)           # the soft weights change the scores


def test_image_score_is_the_max_patch_score():
    model = softpatch.fit(softpatch.config("smoke"), planted_images(), device=CPU)
    test = images(n=3, seed=4)
    scores, maps = softpatch.predict(model, test)
    x = test.float() / 255
    feats = patchcore.embed(model, x)
    patch = patchcore.patch_scores(model, feats)
    np.testing.assert_allclose(scores, patch.amax(1).numpy(), rtol=1e-6)
    assert maps.shape == (3, 64, 64)
    assert (maps.reshape(3, -1).max(1) < scores).all()    # smoothing lowers the peak
    # the patch score is the squared distance to the nearest bank patch x its weight
    full = scipy.spatial.distance.cdist(feats.flatten(0, 1).numpy(),
                                        model.bank.numpy(), "sqeuclidean")
    ref = full.min(1) * model.bank_weight.numpy()[full.argmin(1)]
    np.testing.assert_allclose(patch.flatten().numpy(), ref, rtol=1e-4)


def test_score_train_leaves_each_image_out():
    imgs = planted_images()
    model = patchcore.fit(patchcore.config("smoke", coreset_ratio=0.5), imgs,
                          device=CPU)
    got = patchcore.score_train(model, imgs)
    feats = patchcore.embed(model, imgs.float() / 255).numpy()
    bank, owner = model.bank.numpy(), model.bank_image.numpy()
    ref = []
    for i, f in enumerate(feats):
        d = scipy.spatial.distance.cdist(f, bank[owner != i], "sqeuclidean")
        ref.append(d.min(1).max())
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    plain, _ = patchcore.predict(model, imgs)
    assert (plain < got).all()                  # self-matches would lower the score
    # images the bank has not seen are scored against the whole bank
    others = images(n=2, seed=9)
    np.testing.assert_allclose(patchcore.score_train(model, others),
                               patchcore.predict(model, others)[0], rtol=1e-6)
    # any order, any subset: the match is by content
    np.testing.assert_allclose(patchcore.score_train(model, imgs[[4, 1]]),
                               got[[4, 1]], rtol=1e-6)


def test_score_train_leaves_identical_copies_out_together():
    imgs = planted_images()
    imgs[7] = imgs[0]                                 # a duplicated training image
    model = patchcore.fit(patchcore.config("smoke", coreset_ratio=0.5), imgs,
                          device=CPU)
    got = patchcore.score_train(model, imgs)
    feats = patchcore.embed(model, imgs.float() / 255).numpy()
    bank, owner = model.bank.numpy(), model.bank_image.numpy()
    for i in (0, 7):
        d = scipy.spatial.distance.cdist(feats[i], bank[~np.isin(owner, [0, 7])],
                                         "sqeuclidean")
        assert got[i] == pytest.approx(d.min(1).max(), rel=1e-4)
    assert got[0] > 1.0                               # not a self-match (~0)


def test_configs():
    assert patchcore.config("paper") == patchcore.Config()
    cfg = softpatch.config("paper")
    assert (cfg.backbone, cfg.pretrain_dim, cfg.target_dim, cfg.coreset_ratio,
            cfg.projection_dim, cfg.lof_k, cfg.threshold) == (
        "wide_resnet50_2", 1024, 1024, 0.1, 128, 5, 0.15)
    assert softpatch.config("demo").backbone == "efficientnet_lite2"
    with pytest.raises(ValueError, match="unknown SoftPatch option"):
        softpatch.config("demo", tau=0.1)
    with pytest.raises(ValueError, match="discriminator"):
        softpatch.config("demo", discriminator="knn")
    with pytest.raises(ValueError, match="coreset_ratio"):
        patchcore.config("demo", coreset_ratio=0)
    assert models.get("patchcore") is patchcore and models.get("softpatch") is softpatch


@pytest.mark.parametrize("method", ["patchcore", "softpatch"])
def test_smoke_run_and_cache(method, smoke_kw):
    first = experiment.run(method, **smoke_kw)
    row = first.row
    assert row["method"] == method and row["teacher"] == "efficientnet_lite2/imagenet"
    for key in ("image_auroc", "pixel_auroc", "pixel_aupro", "detection_auroc"):
        assert 0 <= row[key] <= 1, key
    assert np.isnan(row["final_loss"]) and row["fit_seconds"] > 0
    assert row["train_images_per_second"] == pytest.approx(row["n_train"] /
                                                           row["fit_seconds"])
    assert len(first.model.bank) > 0
    again = experiment.run(method, **smoke_kw)                   # loaded from disk
    assert torch.equal(again.model.bank.cpu(), first.model.bank.cpu())
    np.testing.assert_array_equal(again.test_scores, first.test_scores)
    np.testing.assert_array_equal(again.train_scores, first.train_scores)
    if method == "softpatch":
        assert set(again.model.trace) == {"coreset", "patch_score", "kept"}


def test_llb_around_patchcore(smoke_kw):
    result = experiment.run("llb-patchcore", **smoke_kw, options={"llb.keep": 0.5})
    assert result.row["method"] == "llb-patchcore"
    assert result.row["n_kept"] == int(0.5 * result.row["n_train"])
    assert 0 <= result.row["image_auroc"] <= 1
    assert result.model.bank_image.max() < result.row["n_kept"]


def test_command_line(tiny_synth, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["run", "--root", str(tiny_synth), "--category", "brick",
                     "--profile", "smoke", "--runs", str(runs), "--quiet", "--noise",
                     "0.2", "--method", "softpatch", "--option",
                     "discriminator=nearest", "--option", "threshold=0.1"])
    assert code == 0, capsys.readouterr().err
    row = json.loads(next((runs / "softpatch").rglob("metrics.json")).read_text())
    assert row["cfg.discriminator"] == "nearest" and row["cfg.threshold"] == 0.1
    assert row["cfg.lof_k"] == 5 and row["method"] == "softpatch"
    assert {"patchcore", "softpatch", "llb-patchcore"} <= set(cli.METHODS)


def test_bank_matches_point_at_the_training_patch_found():
    imgs = planted_images()
    model = patchcore.fit(patchcore.config("smoke", coreset_ratio=0.25), imgs,
                          device=CPU)
    test = images(n=2, seed=5)
    m = patchcore.bank_matches(model, test)
    feats = patchcore.embed(model, test.float() / 255)
    full = scipy.spatial.distance.cdist(feats.flatten(0, 1).numpy(),
                                        model.bank.numpy(), "sqeuclidean")
    np.testing.assert_array_equal(m["row"].ravel(), full.argmin(1))
    np.testing.assert_allclose(m["distance"].ravel(), full.min(1), rtol=1e-4)
    # the matched bank row is the training patch (image, cell) it was copied from
    train = patchcore.embed(model, imgs.float() / 255)
    np.testing.assert_array_equal(model.bank[m["row"]].numpy(),
                                  train[m["image"], m["cell"]].numpy())
    # a training image matches itself where its own patch is in the bank (distance 0
    # up to float32 cancellation in |q|^2 - 2 q.b + |b|^2)
    own = patchcore.bank_matches(model, imgs[:1])
    picked = model.trace["coreset"][model.trace["coreset"] < 64]
    np.testing.assert_allclose(own["distance"][0, picked], 0, atol=1e-2)
    assert (own["image"][0, picked] == 0).all()


def framed_square_category(root, side: int = 320, n_train: int = 3):
    """An MVTec AD ``bottle`` at `root`: grey `side` px images in a red frame 15 px
    wide; two test images carry a white square off-centre (rows 60-140, columns
    180-260), with its mask. Resize(256) + CenterCrop(224) drops 20 px of a 320 px
    side, so the frame lies wholly in the border the crop removes and the square maps
    to rows 32-96, columns 128-192 exactly (x 0.8, - 16)."""
    from PIL import Image

    base = np.full((side, side, 3), 128, np.uint8)
    for edge in (np.s_[:15], np.s_[-15:], np.s_[:, :15], np.s_[:, -15:]):
        base[edge] = (220, 30, 30)
    defect = base.copy()
    defect[60:140, 180:260] = 255
    mask = np.zeros((side, side), np.uint8)
    mask[60:140, 180:260] = 255
    cat = root / "bottle"
    files = {"train/good": [base] * n_train, "test/good": [base],
             "test/broken_large": [defect, defect],
             "ground_truth/broken_large": [mask, mask]}
    for folder, arrays in files.items():
        (cat / folder).mkdir(parents=True)
        for i, arr in enumerate(arrays):
            name = f"{i:03d}_mask.png" if "ground_truth" in folder else f"{i:03d}.png"
            Image.fromarray(arr).save(cat / folder / name)
    return root


@pytest.mark.parametrize("method", ["patchcore", "softpatch"])
def test_paper_profile_crops_images_and_masks_alike(method, tmp_path):
    """The paper profile's Resize(256) + CenterCrop(224) (SoftPatch
    src/datasets/mvtec.py L76-L89) reaches the test images, their masks and the maps
    through `experiment.run`: the frame in the border is gone, the mask square sits
    exactly on the image's white square, and the images equal torchvision's."""
    from PIL import Image
    from torchvision import transforms

    root = framed_square_category(tmp_path / "mvtec")
    offline = {"backbone": "efficientnet_lite2", "pretrain_dim": 120,
               "target_dim": 120}                      # the paper's crop, offline
    result = experiment.run(method, experiment.Scenario("mvtec_ad", root, "bottle"),
                            profile="paper", options=offline, device="cpu",
                            runs_root=tmp_path / "runs")
    assert (result.row["cfg.load_size"], result.row["cfg.image_size"]) == (256, 224)
    imgs, masks = result.test_images, result.test_masks    # (3, 3, 224, 224), (3, ..)
    assert imgs.shape[-2:] == masks.shape[-2:] == result.test_maps.shape[-2:] == \
        (224, 224)
    red = (imgs[:, 0] > 180) & (imgs[:, 1] < 80)
    assert not red.any()                                   # the border is gone
    square = np.zeros((224, 224), bool)
    square[32:96, 128:192] = True
    defective = result.split.test["label"].to_numpy() == 1
    assert defective.sum() == 2
    for img, mask in zip(imgs[defective], masks[defective], strict=True):
        assert np.array_equal(mask, square)                # the analytic position
        white = (img.min(0).values > 191).numpy()          # above mid grey-white
        assert np.array_equal(white, mask)                 # the mask on the square
    assert not masks[~defective].any()
    crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    paths = result.split.test["image_path"]
    expected = np.stack([np.asarray(crop(Image.open(p).convert("RGB"))) for p in paths])
    np.testing.assert_array_equal(imgs.permute(0, 2, 3, 1).numpy(), expected)
    # the whole image resized (load_size 0, the CPU profiles): the frame stays
    whole, _ = data_images.load(result.split.test, 224)
    assert ((whole[:, 0] > 180) & (whole[:, 1] < 80)).any()
