"""Summaries of results tables: means and spreads over seeds, the clean runs under
every regime, the metric columns of a row; checked against numpy, scipy and sklearn
written out by hand (comparisons of methods: test_evidence.py)."""

import numpy as np
import pandas as pd
import pytest

from fuadnb import evaluate


@pytest.fixture
def rows():
    """Two methods x two noise ratios x three categories x three seeds."""
    rng = np.random.default_rng(0)
    out = []
    for method, shift in (("rd", 0.0), ("cdd", -0.05)):
        for noise in (0.0, 0.2):
            for category in ("a", "b", "c"):
                for seed in (1, 2, 3):
                    out.append({"method": method, "noise_ratio": noise,
                                "category": category, "seed": seed,
                                "image_auroc": 0.9 + shift - noise / 4
                                + rng.normal(0, 0.01),
                                "pixel_auroc": rng.uniform(0.8, 1.0)})
    return pd.DataFrame(out)


def test_seed_summary_averages_categories_first_then_seeds(rows):
    out = evaluate.seed_summary(rows, ["image_auroc", "pixel_auroc"],
                                ["method", "noise_ratio"])
    assert len(out) == 4 and (out["n_seeds"] == 3).all()
    got = out.set_index(["method", "noise_ratio"]).loc[("cdd", 0.2)]
    sel = rows[(rows["method"] == "cdd") & (rows["noise_ratio"] == 0.2)]
    per_seed = [sel[sel["seed"] == s]["image_auroc"].mean() for s in (1, 2, 3)]
    assert got["image_auroc"] == pytest.approx(np.mean(per_seed))
    assert got["image_auroc_std"] == pytest.approx(np.std(per_seed, ddof=1))
    means = evaluate.per_seed(rows, ["image_auroc"], ["method", "noise_ratio"])
    assert means.loc[("cdd", 0.2), "image_auroc"].tolist() == pytest.approx(per_seed)
    per_cat = evaluate.seed_summary(rows, ["image_auroc"],
                                    ["method", "noise_ratio", "category"])
    assert len(per_cat) == 12
    one = rows[(rows["method"] == "rd") & (rows["noise_ratio"] == 0.0)
               & (rows["category"] == "b")]["image_auroc"]
    got = per_cat.set_index(["method", "noise_ratio", "category"]).loc[
        ("rd", 0.0, "b")]
    assert got["image_auroc_std"] == pytest.approx(one.std(ddof=1))


def test_by_category_is_one_column_per_category_and_their_mean(rows):
    wide = evaluate.by_category(rows, ["method", "noise_ratio"])
    assert list(wide.columns) == ["a", "b", "c", "mean"] and len(wide) == 4
    sel = rows[(rows["method"] == "rd") & (rows["noise_ratio"] == 0.2)]
    per_cat = sel.groupby("category")["image_auroc"].mean()   # over the seeds
    assert wide.loc[("rd", 0.2), ["a", "b", "c"]].tolist() == \
        pytest.approx(per_cat.tolist())
    assert wide.loc[("rd", 0.2), "mean"] == pytest.approx(per_cat.mean())
    assert evaluate.by_category(rows, ["method"], "pixel_auroc").shape == (2, 4)


def test_pm_table_formats_mean_and_spread():
    summary = pd.DataFrame({"method": ["rd", "cdd"], "image_auroc": [0.91234, np.nan],
                            "image_auroc_std": [0.0123, np.nan]})
    table = evaluate.pm_table(summary, ["image_auroc"], ["method"])
    assert table.loc["rd", "image_auroc"] == "0.912 ± 0.012"
    assert table.loc["cdd", "image_auroc"] == "–"
    one_seed = summary.assign(image_auroc_std=np.nan)
    assert evaluate.pm_table(one_seed, ["image_auroc"], ["method"]).loc[
        "rd", "image_auroc"] == "0.912"


def _regime_rows():
    rng = np.random.default_rng(0)
    rows = []
    for cat in "abcd":
        for seed in (1, 2, 3):
            base = rng.uniform(0.7, 0.9)
            rows.append({"method": "rd", "regime": "recurring", "noise_ratio": 0.0,
                         "category": cat, "seed": seed, "image_auroc": base,
                         "image_auroc_seen": base + 0.01,
                         "image_auroc_unseen": base - 0.01})
            for regime, loss in (("overlap", 0.2), ("recurring", 0.1), ("iid", 0.0)):
                rows.append({"method": "rd", "regime": regime, "noise_ratio": 0.2,
                             "category": cat, "seed": seed,
                             "image_auroc": base - loss / 2 + rng.normal(0, 0.01),
                             "image_auroc_seen": base - loss,
                             "image_auroc_unseen": base})
    return pd.DataFrame(rows)


def test_with_clean_repeats_the_clean_runs_under_every_regime():
    rows = evaluate.with_clean(_regime_rows())
    clean = rows[rows.noise_ratio == 0].set_index(["regime", "category", "seed"])
    assert len(clean) == 3 * 12
    ov, rec = clean.loc["overlap"], clean.loc["recurring"]
    assert (ov.image_auroc_seen == ov.image_auroc).all()      # a uniform draw
    assert (rec.image_auroc_seen == rec.image_auroc + 0.01).all()   # as recorded
    assert clean.loc["iid"].image_auroc_seen.isna().all()
    assert len(rows[rows.noise_ratio > 0]) == 36


def test_a_cost_on_seen_anomalies_reads_the_clean_runs_of_its_regime():
    """`with_clean`'s copies are what `evidence.cost` pairs with: under overlap the
    clean reference of the seen group is the clean overall value, under iid there
    is no group."""
    from fuadnb import evidence

    raw = _regime_rows()
    out = evidence.cost(evaluate.with_clean(raw), "image_auroc_seen",
                        n_resamples=99).set_index("regime")
    clean = raw[raw.noise_ratio == 0].groupby("category")
    noisy = raw[(raw.noise_ratio == 0.2) & (raw.regime == "recurring")].groupby(
        "category")
    d = noisy.image_auroc_seen.mean() - clean.image_auroc_seen.mean()
    assert out.loc["recurring", "delta"] == pytest.approx(d.mean())     # -0.11
    assert out.loc["recurring", "n_categories"] == 4
    assert out.loc["recurring", "n_lower"] == 4
    assert out.loc["overlap", "delta"] == pytest.approx(-0.2)   # seen vs overall
    assert np.isnan(out.loc["iid", "delta"])                     # no groups there


def test_group_metrics_score_every_good_image_against_the_group():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(20, int), np.ones(12, int)]
    scores = rng.normal(size=32) + labels
    masks = np.zeros((32, 8, 8), bool)
    masks[20:, 2:5, 2:5] = True
    maps = rng.random((32, 8, 8)) + masks
    seen = np.r_[np.zeros(20, bool), np.ones(5, bool), np.zeros(7, bool)]
    out = evaluate.score(labels=labels, scores=scores, masks=masks, maps=maps,
                         groups={"seen": seen, "unseen": (labels == 1) & ~seen,
                                 "empty": np.zeros(32, bool)})
    keep = (labels == 0) | seen
    assert out["image_auroc_seen"] == pytest.approx(
        roc_auc_score(labels[keep], scores[keep]))
    keep = (labels == 0) | ((labels == 1) & ~seen)
    assert out["image_auroc_unseen"] == pytest.approx(
        roc_auc_score(labels[keep], scores[keep]))
    assert out["pixel_auroc_seen"] == pytest.approx(roc_auc_score(
        masks[(labels == 0) | seen].ravel(), maps[(labels == 0) | seen].ravel()))
    assert np.isnan(out["image_auroc_empty"]) and np.isnan(out["pixel_aupro_empty"])


def test_patch_labels_mark_every_cell_a_defect_touches():
    masks = np.zeros((2, 8, 8), bool)
    masks[0, 3, 4] = True                     # one pixel: cell (1, 2) of a 4x4 grid
    got = evaluate.patch_labels(masks, 4)
    assert got.shape == (2, 16) and got[0].sum() == 1 and got[0, 1 * 4 + 2]
    assert not got[1].any()
    with pytest.raises(ValueError, match="grid"):
        evaluate.patch_labels(masks, 3)


def test_filter_quality_is_precision_and_recall_of_the_filtered_patches():
    filtered = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    defect = np.array([[1, 0, 1, 0], [1, 0, 0, 1]], bool)
    q = evaluate.filter_quality(filtered, defect)
    assert q == {"precision": 2 / 3, "recall": 2 / 4, "n_filtered": 3, "n_defect": 4}
    assert np.isnan(evaluate.filter_quality(~defect & defect, defect)["precision"])


def test_flattened_is_where_the_loss_has_made_the_share_of_its_fall():
    steps = np.arange(1, 601)
    loss = 0.2 + np.exp(-steps / 50)                     # falls by 1 - e^-12 in all
    start, end = loss[0], loss[-1]
    level = end + 0.1 * (start - end)
    # by hand: 0.2 + e^(-s/50) <= level  <=>  s >= -50 ln(level - 0.2)
    expected = int(np.ceil(-50 * np.log(level - 0.2)))
    assert evaluate.flattened(loss) == expected           # 116
    per_epoch = loss[4::5]                  # a record every 5 steps, from step 5
    level5 = per_epoch[-1] + 0.1 * (per_epoch[0] - per_epoch[-1])
    assert evaluate.flattened(per_epoch, every=5) == 5 * int(
        np.ceil(-50 * np.log(level5 - 0.2) / 5))
    noisy = loss + np.where(steps % 2, 0.05, -0.05)         # smoothing removes it
    assert abs(evaluate.flattened(noisy, window=2) - expected) <= 2
    assert evaluate.flattened(loss, fraction=0.5) < expected


def test_one_dataset_is_read_at_a_time_never_pooled():
    rows = pd.DataFrame({"dataset": ["mvtec_ad", "visa", "visa"], "x": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"holds the datasets \['mvtec_ad', 'visa'\]"):
        evaluate.one_dataset(rows, source="paper.csv")
    visa, name = evaluate.one_dataset(rows, "visa")
    assert name == "visa" and visa.x.tolist() == [2, 3]
    only, name = evaluate.one_dataset(rows[rows.dataset == "visa"])
    assert name == "visa" and len(only) == 2
    with pytest.raises(ValueError, match="no rows of dataset 'mpdd'"):
        evaluate.one_dataset(rows, "mpdd")
