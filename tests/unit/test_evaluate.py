"""Summaries of results tables: means and spreads over seeds, paired comparisons
with a baseline; checked against numpy and scipy written out by hand."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

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


def test_versus_pairs_runs_by_category_and_seed(rows):
    out = evaluate.versus(rows, "image_auroc", "rd").set_index(
        ["method", "noise_ratio"])
    assert list(out.index) == [("cdd", 0.0), ("cdd", 0.2)]
    key = ["category", "seed"]
    cdd = rows[(rows["method"] == "cdd") & (rows["noise_ratio"] == 0.2)]
    rd = rows[(rows["method"] == "rd") & (rows["noise_ratio"] == 0.2)]
    diff = cdd.set_index(key)["image_auroc"] - rd.set_index(key)["image_auroc"]
    got = out.loc[("cdd", 0.2)]
    assert got["delta"] == pytest.approx(diff.mean())
    assert got["n_pairs"] == 9
    assert got["p"] == pytest.approx(stats.wilcoxon(diff.to_numpy()).pvalue)
    assert got["delta_std_seeds"] == pytest.approx(
        diff.groupby(level="seed").mean().std(ddof=1))
    assert got["verdict"] == "lower" and got["seeds_agree"]   # 0.05 below, noise 0.01


def test_versus_gives_no_ranking_within_the_spread(rows):
    same = rows.copy()
    same.loc[same["method"] == "cdd", "image_auroc"] = same.loc[
        same["method"] == "rd", "image_auroc"].to_numpy() + np.tile(
        [0.01, -0.01, 0.0], 6)
    out = evaluate.versus(same, "image_auroc", "rd")
    assert (out["verdict"] == "no ranking").all()
    few = evaluate.versus(rows[rows["seed"] == 1], "image_auroc", "rd")
    assert few["p"].isna().all() and (few["verdict"] == "too few pairs").all()


def test_versus_with_only_the_baseline_is_an_empty_table(rows):
    out = evaluate.versus(rows[rows["method"] == "rd"], "image_auroc", "rd")
    assert out.empty and "verdict" in out.columns


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


def test_cost_pairs_each_contaminated_run_with_its_clean_run():
    raw = _regime_rows()
    rows = evaluate.with_clean(raw)
    out = evaluate.cost(rows, "image_auroc_seen").set_index("regime")
    clean = raw[raw.noise_ratio == 0].set_index(["category", "seed"])
    noisy = raw[(raw.noise_ratio == 0.2) & (raw.regime == "recurring")].set_index(
        ["category", "seed"])
    diff = (noisy.image_auroc_seen - clean.image_auroc_seen).to_numpy()
    assert out.loc["recurring", "delta"] == pytest.approx(diff.mean())     # -0.11
    assert out.loc["recurring", "n_pairs"] == 12
    assert out.loc["recurring", "p"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert out.loc["recurring", "verdict"] == "lower"
    assert out.loc["recurring", "seeds_agree"]
    # overlap's clean reference is the clean overall value: -0.2 exactly
    assert out.loc["overlap", "delta"] == pytest.approx(-0.2)
    assert "iid" not in out.dropna(subset=["delta"]).index      # no groups there


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


def test_recovery_is_the_share_of_the_baselines_damage_repaired():
    rng = np.random.default_rng(5)
    rows = []
    for cat in "abcd":
        for seed in (1, 2, 3):
            base = rng.uniform(0.7, 0.9)
            for method, clean_gap, keeps in (("rd", 0.0, 0.0), ("sp", -0.05, 0.5)):
                m0 = base + clean_gap
                rows.append({"method": method, "regime": "recurring",
                             "noise_ratio": 0.0, "category": cat, "seed": seed,
                             "image_auroc": m0})
                for regime, damage in (("overlap", 0.2), ("iid", 0.0)):
                    # rd loses `damage`; sp ends `keeps` of the way back to rd's clean
                    rd_r = base - damage
                    value = rd_r if method == "rd" else rd_r + keeps * damage
                    jitter = 0.005 * (-1) ** ord(cat)       # as many + as -
                    rows.append({"method": method, "regime": regime,
                                 "noise_ratio": 0.2, "category": cat, "seed": seed,
                                 "image_auroc": value + jitter * rng.uniform(0.5, 1)})
    table = evaluate.with_clean(pd.DataFrame(rows), regimes=("iid", "overlap"))
    out = evaluate.recovery(table, "image_auroc").set_index("regime")
    assert list(out.method.unique()) == ["sp"]
    ov = out.loc["overlap"]
    # independently: the means of the paired quantities, written out
    df = pd.DataFrame(rows)
    key = ["category", "seed"]

    def col(method, noise, regime=None):
        sel = (df.method == method) & (df.noise_ratio == noise)
        if regime:
            sel &= df.regime == regime
        return df[sel].set_index(key).image_auroc

    b0, m0 = col("rd", 0.0), col("sp", 0.0)
    br, mr = col("rd", 0.2, "overlap"), col("sp", 0.2, "overlap")
    assert ov.baseline_drop == pytest.approx((b0 - br).mean())          # ~0.2
    assert ov.own_drop == pytest.approx((m0 - mr).mean())                   # ~0.05
    assert ov.gain == pytest.approx((mr - br).mean())                   # ~0.1
    assert ov.recovery == pytest.approx((mr - br).mean() / (b0 - br).mean())
    assert ov.recovery == pytest.approx(0.5, abs=0.03)
    assert ov.clean_gap == pytest.approx(-0.05)
    per_seed = ((mr - br).groupby(level="seed").mean()
                / (b0 - br).groupby(level="seed").mean())
    assert ov.recovery_std_seeds == pytest.approx(per_seed.std(ddof=1))
    assert ov.p == pytest.approx(stats.wilcoxon((mr - br).to_numpy()).pvalue)
    assert ov.verdict == "higher" and ov.n_pairs == 12
    assert ov.baseline_verdict == "lower"
    iid = out.loc["iid"]          # rd's drop is noise: nothing to repair, no ratio
    assert iid.baseline_verdict == "no ranking" and abs(iid.baseline_drop) < 0.01
    assert np.isnan(iid.recovery) and np.isnan(iid.recovery_std_seeds)
    assert iid.gain == pytest.approx(0.0, abs=0.01)


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
