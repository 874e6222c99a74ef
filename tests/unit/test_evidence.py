"""Statistics with the category as the unit (fuadnb.evidence), each checked against
an independent computation: a hand count, a brute-force enumeration, scipy,
statsmodels, or the numbers of statistics.md and Demšar (2006)."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fuadnb import evidence


def _rows(gains: dict[str, float], *, seeds=(1, 2, 3), noise=0.01, seed=0):
    """RD and a method on categories a..: clean 0.9, RD loses 0.1 under overlap at
    0.2, the method recovers `gains[category]` of it, plus seed noise."""
    rng = np.random.default_rng(seed)
    out = []
    for cat, g in gains.items():
        for s in seeds:
            for method, clean, dirty in (("rd", 0.9, 0.8), ("sp", 0.88, 0.8 + g)):
                for ratio, value in ((0.0, clean), (0.2, dirty)):
                    out.append({"method": method, "regime": "overlap",
                                "noise_ratio": ratio, "category": cat, "seed": s,
                                "family": "tex" if cat < "d" else "obj",
                                "image_auroc": value + rng.normal(0, noise)})
    return pd.DataFrame(out)


def test_seeds_are_averaged_within_a_category_first():
    rows = _rows({"a": 0.05, "b": 0.02}, seeds=(1, 2))
    means = evidence.category_means(rows, "image_auroc")
    one = rows[(rows.method == "sp") & (rows.noise_ratio == 0.2) & (rows.category
                                                                    == "b")]
    got = means.loc[("sp", "overlap", 0.2, "b")]
    assert got["mean"] == pytest.approx(one.image_auroc.mean())
    assert got.seed_sd == pytest.approx(one.image_auroc.std(ddof=1))
    assert got.n_seeds == 2
    d = evidence.differences(rows, "image_auroc",
                             {"method": "sp", "noise_ratio": 0.2},
                             {"method": "rd", "noise_ratio": 0.2})
    assert list(d.index) == ["a", "b"]
    rd = rows[(rows.method == "rd") & (rows.noise_ratio == 0.2) & (rows.category
                                                                   == "b")]
    assert d["b"] == pytest.approx(one.image_auroc.mean() - rd.image_auroc.mean())


def _brute_force_p(d):
    """Two-sided exact signed-rank p by enumerating all 2^n sign patterns of the
    ranks of |d| (the definition, no scipy; for |d| without ties, where scipy's
    exact null, which ignores ties, is the conditional one)."""
    d = np.asarray([x for x in d if x != 0], float)
    ranks = stats.rankdata(np.abs(d))
    observed = min(ranks[d > 0].sum(), ranks[d < 0].sum())
    count = 0
    for signs in itertools.product((0, 1), repeat=len(d)):
        plus = ranks[np.array(signs, bool)].sum()
        count += min(plus, ranks.sum() - plus) <= observed + 1e-12
    return min(1.0, count / 2 ** len(d))


@pytest.mark.parametrize("d", [[0.1, 0.2, -0.3, 0.4, 0.5],
                               [0.03, -0.01, 0.02, 0.05, 0.04, 0.06, -0.025, 0.07],
                               [0.2, 0.0, 0.1, 0.3, -0.05, 0.4, 0.25]])
def test_signed_rank_is_the_exact_test_with_zeros_dropped(d):
    got = evidence.signed_rank(d)
    assert got["p"] == pytest.approx(_brute_force_p(d))
    assert got["n_zero"] == d.count(0.0) and got["n"] == len(d) - d.count(0.0)
    assert got["n_categories"] == len(d)
    assert got["p_floor"] == pytest.approx(2 / 2 ** got["n"])


def test_the_smallest_p_is_two_over_two_to_the_n():
    """statistics.md: all of one sign, n = 5 -> 0.0625 (no verdict at 0.05),
    6 -> 0.031; a zero difference is dropped, so six categories with one tie are
    five pairs (the issue's SoftPatch case)."""
    assert evidence.signed_rank([0.1] * 5)["p"] == pytest.approx(0.0625)
    assert evidence.signed_rank(np.arange(1, 7) / 10)["p"] == pytest.approx(0.03125)
    tie = evidence.compare(pd.Series([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]))
    assert (tie["n_categories"], tie["n"], tie["n_zero"]) == (6, 5, 1)
    assert tie["verdict"] == "too few categories"
    six = evidence.compare(pd.Series([0.05, 0.1, 0.2, 0.3, 0.4, 0.5]))
    assert six["verdict"] == "higher" and six["p"] == pytest.approx(0.03125)
    mixed = evidence.compare(pd.Series([0.05, -0.1, 0.2, -0.3, 0.4, 0.5, -0.02]))
    assert mixed["verdict"] == "not detected"
    assert evidence.signed_rank([0.0, 0.0])["n"] == 0
    assert evidence.compare(pd.Series([0.0, 0.0]))["verdict"] == "too few categories"


def test_an_unclustered_bootstrap_agrees_with_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(0.05, 0.1, 24)
    ours = evidence.bootstrap_ci(x, np.mean, n_resamples=20000, seed=2)
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=20000,
                          rng=np.random.default_rng(3)).confidence_interval
    assert ours[2] == 0
    assert ours[0] == pytest.approx(ref.low, abs=0.004)
    assert ours[1] == pytest.approx(ref.high, abs=0.004)
    gain, damage = rng.normal(0.06, 0.05, 24), rng.normal(0.1, 0.03, 24)

    def ratio(g, d, axis=-1):
        return g.mean(axis=axis) / d.mean(axis=axis)

    ours = evidence.bootstrap_ci(np.column_stack([gain, damage]), ratio,
                                 n_resamples=20000, seed=2)
    ref = stats.bootstrap((gain, damage), ratio, paired=True, method="percentile",
                          n_resamples=20000,
                          rng=np.random.default_rng(3)).confidence_interval
    assert ours[0] == pytest.approx(ref.low, abs=0.02)
    assert ours[1] == pytest.approx(ref.high, abs=0.02)
    # one category per family: the two-stage draw is the one-stage draw
    single = evidence.bootstrap_ci(gain, np.mean, clusters=np.arange(24),
                                   n_resamples=20000, seed=4)
    ref = stats.bootstrap((gain,), np.mean, method="percentile", n_resamples=20000,
                          rng=np.random.default_rng(5)).confidence_interval
    assert single[0] == pytest.approx(ref.low, abs=0.003)
    assert single[1] == pytest.approx(ref.high, abs=0.003)


def test_a_clustered_bootstrap_is_wider_where_a_family_moves_together():
    rng = np.random.default_rng(0)
    families = np.repeat(np.arange(6), 4)
    x = rng.normal(0, 0.1, 6)[families] + rng.normal(0, 0.01, 24)
    flat = evidence.bootstrap_ci(x, np.mean, n_resamples=4000)
    clustered = evidence.bootstrap_ci(x, np.mean, clusters=families,
                                      n_resamples=4000)
    assert clustered[1] - clustered[0] > 1.5 * (flat[1] - flat[0])
    # and the clustered interval is about the family means' own one
    fam = evidence.bootstrap_ci(x.reshape(6, 4).mean(1), np.mean, n_resamples=4000)
    assert clustered[1] - clustered[0] == pytest.approx(fam[1] - fam[0], rel=0.15)


def test_undefined_replicates_leave_no_interval():
    x = np.array([1.0, -1.0, 0.5, -0.4])
    low, high, undefined = evidence.bootstrap_ci(
        x, lambda v: 1 / v.mean() if v.mean() > 0.2 else np.nan, n_resamples=2000)
    assert np.isnan(low) and np.isnan(high) and undefined > 0.025


def test_recovery_per_category_and_overall_by_hand():
    rows = _rows({"a": 0.09, "b": 0.05, "c": -0.02, "d": 0.1, "e": 0.03}, noise=0)
    # make e's baseline barely damaged: under the floor, so no per-category ratio
    rows.loc[(rows.category == "e") & (rows.method == "rd")
             & (rows.noise_ratio == 0.2), "image_auroc"] = 0.89
    per = evidence.recovery_by_category(rows, "image_auroc", "sp", "rd", "overlap",
                                        0.2, floor=0.02, family="family")
    assert per.loc["a", "damage"] == pytest.approx(0.1)
    assert per.loc["a", "gain"] == pytest.approx(0.09)
    assert per.loc["a", "recovery"] == pytest.approx(0.9)
    assert per.loc["c", "recovery"] == pytest.approx(-0.2)
    assert not per.loc["e", "qualifies"] and np.isnan(per.loc["e", "recovery"])
    assert per.loc["a", "clean_gap"] == pytest.approx(-0.02)
    assert list(per.family) == ["tex", "tex", "tex", "obj", "obj"]
    out = evidence.recovery_overall(per, n_resamples=2000)
    gains = [0.09, 0.05, -0.02, 0.1, 0.83 - 0.89]
    damages = [0.1, 0.1, 0.1, 0.1, 0.01]
    assert out["recovery"] == pytest.approx(np.mean(gains) / np.mean(damages))
    assert out["n_qualifying"] == 4 and out["n_categories"] == 5
    assert out["n"] == 5 and out["p"] == pytest.approx(_brute_force_p(gains))
    assert out["ci_low"] <= out["recovery"] <= out["ci_high"]
    table = evidence.recovery(evidence_rows := rows, "image_auroc", baseline="rd",
                              family="family", n_resamples=500)
    assert len(table) == 1 and table.recovery.iloc[0] == pytest.approx(
        out["recovery"])
    assert set(evidence_rows.method) == {"rd", "sp"}


def _holm(p):
    """Holm's step-down adjustment written out (García & Herrera 2008)."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(p) - i) * p[j]))
        adj[j] = running
    return adj


def test_pairwise_is_every_exact_test_with_holm():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(0, 0.05, (10, 4)) + [0.0, 0.02, 0.1, 0.11],
                         columns=list("wxyz"))
    out = evidence.pairwise(table)
    assert len(out) == 6
    for r in out.itertuples():
        d = table[r.a] - table[r.b]
        assert r.p == pytest.approx(_brute_force_p(d))
        assert r.delta == pytest.approx(d.mean())
    assert out.p_holm.to_numpy() == pytest.approx(_holm(out.p))
    assert _holm([0.01, 0.04, 0.02]) == pytest.approx([0.03, 0.04, 0.04])
    assert set(out.verdict) <= {"higher", "lower", "not detected"}
    assert (out.verdict != "not detected").sum() == (out.p_holm < 0.05).sum()


def test_friedman_and_nemenyi_by_their_formulas():
    rng = np.random.default_rng(0)
    n, k = 12, 4
    table = pd.DataFrame(rng.normal(0, 0.05, (n, k)) + [0.0, 0.03, 0.06, 0.12],
                         columns=list("abcd"))
    out = evidence.friedman_nemenyi(table)
    ranks = table.rank(axis=1, ascending=False)
    r = ranks.mean()
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r ** 2) - k * (k + 1) ** 2 / 4)
    assert out["statistic"] == pytest.approx(chi2)
    assert out["p"] == pytest.approx(stats.chi2.sf(chi2, k - 1))
    assert out["mean_ranks"]["d"] == pytest.approx(r["d"]) and \
        out["mean_ranks"].index[0] == "d"
    se = np.sqrt(k * (k + 1) / (6 * n))
    q = abs(r["a"] - r["d"]) / se
    assert out["nemenyi"].loc["a", "d"] == pytest.approx(
        stats.studentized_range.sf(q * np.sqrt(2), k, np.inf), abs=1e-3)
    assert out["cd"] == pytest.approx(2.569 * se, rel=1e-3)   # Demšar's q for k = 4


def test_power_by_the_formula_of_statistics_md():
    """σ = 0.12: δ = 0.08 needs about 18 categories, δ = 0.05 about 45; the two
    functions are inverses; the normal approximation is at most a couple of
    categories short of the t-test's (statsmodels, noncentral t)."""
    from statsmodels.stats.power import TTestPower

    assert evidence.categories_needed(0.12, 0.08) == pytest.approx(
        (2.8016 * 1.5) ** 2, rel=1e-3)
    assert np.ceil(evidence.categories_needed(0.12, 0.08)) == 18
    assert evidence.categories_needed(0.12, 0.05) == pytest.approx(45.2, abs=0.1)
    delta = evidence.detectable_gain(0.12, 24)
    assert delta == pytest.approx(2.8016 * 0.12 / np.sqrt(24), rel=1e-3)
    assert evidence.categories_needed(0.12, delta) == pytest.approx(24)
    t = TTestPower().solve_power(effect_size=0.08 / 0.12, alpha=0.05, power=0.8)
    assert 0 < t - evidence.categories_needed(0.12, 0.08) < 2.5


def test_spread_splits_categories_from_seeds_by_hand():
    rows = _rows({"a": 0.0, "b": 0.04, "c": 0.08}, noise=0.01, seed=3)
    got = evidence.spread(rows, "image_auroc", {"method": "sp", "noise_ratio": 0.2},
                          {"method": "rd", "noise_ratio": 0.2})
    at = rows[rows.noise_ratio == 0.2].pivot_table(
        index=["category", "seed"], columns="method", values="image_auroc")
    d = (at.sp - at.rd).unstack("seed")                  # categories x seeds
    assert got["n_categories"] == 3 and got["n_seeds"] == 3
    assert got["mean"] == pytest.approx(d.to_numpy().mean())
    assert got["sd"] == pytest.approx(np.std(d.mean(axis=1), ddof=1))
    assert got["seed_sd"] == pytest.approx(np.sqrt(np.mean(d.var(axis=1, ddof=1))))
    assert got["sd"] == pytest.approx(0.04, abs=0.01)


def test_a_statement_writes_the_verdict_with_its_n_test_and_power():
    rng = np.random.default_rng(3)
    up = pd.Series(rng.normal(0.05, 0.02, 12))          # a clear gain
    row = evidence.compare(up, n_resamples=999)
    text = evidence.statement("SoftPatch - RD, overlap 0.2", row)
    p = stats.wilcoxon(up, method="exact").pvalue
    assert text == (f"SoftPatch - RD, overlap 0.2: {up.mean():+.3f} AUROC "
                    f"[{row['ci_low']:+.3f}, {row['ci_high']:+.3f}], n 12 of 12 "
                    f"categories, p {p:.2g}: higher")
    flat = pd.Series([0.01, -0.02, 0.015, -0.01, 0.0, 0.005, -0.004])
    said = evidence.statement("x", evidence.compare(flat, n_resamples=99),
                              detectable=0.031)
    assert said.endswith(": not detected at this power (a mean difference of "
                         "0.031 would be detected with power 0.8)")
    assert "n 6 of 7 categories" in said            # the zero dropped, n as used
    few = evidence.statement("y", evidence.compare(pd.Series([0.1, 0.2]),
                                                   n_resamples=99))
    assert few.endswith("too few categories for any verdict")
    table = pd.DataFrame({"a": up + 0.5, "b": 0.5, "c": up + 0.49})
    holm = evidence.pairwise(table).iloc[0]
    assert evidence.statement("a - b", holm).endswith(
        f"p {holm.p_holm:.2g} (Holm): {holm.verdict}")


def test_cost_is_each_methods_own_loss_by_category_with_its_power():
    from fuadnb import evaluate

    rng = np.random.default_rng(5)
    rows = []
    for c in range(8):
        for seed in (1, 2):
            for method, loss in (("rd", 0.05), ("softpatch", 0.0)):
                clean = 0.8 + rng.normal(0, 0.02)
                rows += [{"method": method, "category": f"c{c}", "seed": seed,
                          "regime": "recurring", "noise_ratio": 0.0,
                          "image_auroc": clean},
                         {"method": method, "category": f"c{c}", "seed": seed,
                          "regime": "overlap", "noise_ratio": 0.2,
                          "image_auroc": clean - loss + rng.normal(0, 0.01)}]
    rows = pd.DataFrame(rows)
    out = evidence.cost(evaluate.with_clean(rows, ("overlap",)), "image_auroc",
                        n_resamples=99).set_index("method")
    frame = rows.assign(key=rows.noise_ratio.map({0.0: "clean", 0.2: "dirty"}))
    wide = frame.pivot_table(index=["method", "category"], columns="key",
                             values="image_auroc")     # seeds averaged first
    for method in ("rd", "softpatch"):
        d = (wide.loc[method, "dirty"] - wide.loc[method, "clean"]).to_numpy()
        assert out.loc[method, "delta"] == pytest.approx(d.mean())
        assert out.loc[method, "sd"] == pytest.approx(d.std(ddof=1))
        assert out.loc[method, "p"] == pytest.approx(
            stats.wilcoxon(d, method="exact").pvalue)
        z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
        assert out.loc[method, "detectable"] == pytest.approx(
            z * d.std(ddof=1) / np.sqrt(8))
        assert out.loc[method, "n_lower"] == (d < 0).sum()
    assert out.loc["rd", "verdict"] == "lower" and out.loc["rd", "n_lower"] == 8
    assert out.loc["rd", "regime"] == "overlap" and len(out) == 2


def test_no_interval_from_fewer_categories_than_min_ci():
    four = evidence.compare(pd.Series([0.1, 0.2, 0.15, 0.3]), n_resamples=99)
    five = evidence.compare(pd.Series([0.1, 0.2, 0.15, 0.3, 0.05]), n_resamples=99)
    assert evidence.MIN_CI == 5
    assert np.isnan(four["ci_low"]) and np.isnan(four["ci_high"])
    assert five["ci_low"] < five["delta"] < five["ci_high"]
    assert "[" not in evidence.statement("x", four)


def test_conditions_are_the_contaminated_pairs_in_the_books_order():
    rows = pd.DataFrame({"regime": ["recurring", "iid", "overlap", "overlap",
                                    "recurring", "fuiad", "iid"],
                         "noise_ratio": [0.2, 0.2, 0.2, 0.1, 0.0, 0.1, 0.2]})
    assert evidence.conditions(rows) == [("overlap", 0.1), ("overlap", 0.2),
                                         ("iid", 0.2), ("recurring", 0.2),
                                         ("fuiad", 0.1)]


def test_importing_fuadnb_leaves_scikit_posthocs_and_seaborn_unloaded():
    """Every grid point's kernel imports fuadnb: the post-hoc library (and the
    seaborn it brings) loads only when a Friedman test runs."""
    import subprocess
    import sys

    code = ("import sys, fuadnb, fuadnb.evidence, fuadnb.evaluate, fuadnb.nb\n"
            "print(sorted(m for m in ('scikit_posthocs', 'seaborn') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_versus_pairs_each_method_with_the_baseline_by_category():
    rows = _rows({c: 0.05 for c in "abcdefg"}, seed=4)
    out = evidence.versus(rows, "image_auroc", "rd", n_resamples=99).set_index(
        ["method", "noise_ratio"])
    assert list(out.index) == [("sp", 0.0), ("sp", 0.2)]
    wide = rows.pivot_table(index=["noise_ratio", "category"], columns="method",
                            values="image_auroc")          # seeds averaged first
    for ratio in (0.0, 0.2):
        d = (wide.loc[ratio, "sp"] - wide.loc[ratio, "rd"]).to_numpy()
        got = out.loc[("sp", ratio)]
        assert got.delta == pytest.approx(d.mean())
        assert got.n_categories == 7 and got.n_lower == (d < 0).sum()
        assert got.p == pytest.approx(stats.wilcoxon(d, method="exact").pvalue)
    assert out.loc[("sp", 0.2), "verdict"] == "higher"       # +0.05 on all seven
    assert out.loc[("sp", 0.0), "verdict"] == "lower"        # the clean gap -0.02
    only = evidence.versus(rows[rows.method == "rd"], "image_auroc", "rd")
    assert only.empty and "verdict" in only.columns


def test_budgets_reads_an_ablation_per_category_by_hand():
    """RD at 10 and 40 steps and a bank (steps 0) on six categories, clean and under
    recurring 0.2: RD's cost is -0.01 at 10 steps and -0.01 - 0.01 k at 40 (k the
    category's index), so the longer fit costs more in every category; the bank's
    clean run has two seeds (averaged first). A clean row recorded under recurring
    serves iid's clean too (`with_clean`); no iid rows, so no iid condition."""
    out = []
    for k, cat in enumerate("abcdef"):
        for method, steps, dirty in (("rd", 10, 0.79), ("rd", 40, 0.79 - 0.01 * k),
                                     ("pc", 0, 0.75)):
            out.append({"method": method, "steps": steps, "regime": "recurring",
                        "noise_ratio": 0.2, "category": cat, "seed": 1,
                        "image_auroc": dirty})
            seeds = (1, 2) if method == "pc" else (1,)
            for s, clean in zip(seeds, (0.78, 0.80), strict=False):
                out.append({"method": method, "steps": steps, "regime": "recurring",
                            "noise_ratio": 0.0, "category": cat, "seed": s,
                            "image_auroc": 0.80 if method == "rd" else clean})
    read = evidence.budgets(pd.DataFrame(out).sample(frac=1, random_state=0),
                            "image_auroc", n_resamples=99)
    assert read["trained"] == ["rd 10 steps", "rd 40 steps"]
    assert read["methods"] == ["rd 10 steps", "rd 40 steps", "pc"]
    per = read["per_category"]["cost"]
    assert per.index.unique(0).tolist() == ["recurring 0.2"]
    assert per["recurring 0.2", "rd 10 steps"].round(6).tolist() == [-0.01] * 6
    assert per["recurring 0.2", "rd 40 steps"].round(6).tolist() == [
        round(-0.01 - 0.01 * k, 6) for k in range(6)]
    assert per["recurring 0.2", "pc"].round(6).tolist() == [-0.04] * 6  # 0.75 - 0.79
    cost = read["cost"].set_index("method")
    assert cost.loc["rd 40 steps", "delta"] == pytest.approx(-0.035)
    longer = read["longer"].iloc[0]
    assert (longer.condition, longer.budget) == ("recurring 0.2", "rd 40 steps")
    # changes -0.00, -0.01 .. -0.05: the zero dropped, five left, all lower
    assert longer.delta == pytest.approx(-0.025) and longer.n == 5
    assert longer.n_zero == 1 and longer.p == pytest.approx(2 / 2**5)
    assert longer.verdict == "too few categories"                # 2/2^5 >= 0.05
