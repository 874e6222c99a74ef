"""Every sentence a chapter writes by hand about what its committed table shows is
a claim here, checked against that table (issue 31: no claim stronger than its
table). A claim is the words the chapter uses and a check of the table; the test
fails, never skips, when the words are gone (delete the claim) or the table stops
supporting them (fix the prose or the grid), and each check is shown failing on a
planted table, so none can pass without looking. Numbers and verdicts the chapters
compute (glued values, `fuadnb.evidence.statement`) need no claim: they are
recomputed from the table on every build.
"""

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from fuadnb import evaluate, evidence
from fuadnb import grid as grids

REPO = Path(__file__).resolve().parents[1]
RESULTS, GRIDS = REPO / "benchmarks" / "results", REPO / "benchmarks" / "grids"


@dataclasses.dataclass(frozen=True)
class Claim:
    chapter: str                            # notebooks/<chapter>.ipynb, or a page
    words: str                              # what its Markdown says, verbatim
    table: str                              # the grid (points) or table it is about
    check: Callable[[pd.DataFrame], bool]   # holds on it
    planted: Callable[[pd.DataFrame], pd.DataFrame]   # a version it must fail on


@functools.cache
def _points(name: str) -> pd.DataFrame:
    """A grid file's points as a table (what its committed table grows towards)."""
    return pd.DataFrame([p for _, p in grids.named_points(GRIDS / f"{name}.yaml")])


def _multi_seed(points: pd.DataFrame) -> pd.Series:
    """Per image size, the categories run with more than one seed."""
    seeds = points.groupby(["IMAGE_SIZE", "CATEGORY"]).SEED.nunique()
    return seeds[seeds > 1].groupby(level="IMAGE_SIZE").size()


def _five_cannot_reach(points: pd.DataFrame) -> bool:
    multi = _multi_seed(points)
    return (len(multi) == 2 and set(multi) == {5}
            and evidence.signed_rank(np.ones(5))["p_floor"] >= 0.05)


def _six_give(points: pd.DataFrame) -> bool:
    n = points.CATEGORY.nunique()
    return n == 6 and evidence.signed_rank(np.ones(n))["p_floor"] == 2 / 2**6


def _one_seed_each_three_on_five(points: pd.DataFrame) -> bool:
    seeds = points.groupby("CATEGORY").SEED.nunique()
    sizes = points.groupby("CATEGORY").IMAGE_SIZE.nunique()
    return (set(seeds) == {1, 3} and (seeds == 3).sum() == 5
            and set(sizes[seeds == 3]) == {2} and set(sizes[seeds == 1]) == {1})


def _a_sixth_multi_seed_category(points: pd.DataFrame) -> pd.DataFrame:
    multi = set(points[points.SEED == 222].CATEGORY)
    one = next(c for c in points.CATEGORY if c not in multi)
    extra = points[points.CATEGORY == one]
    return pd.concat([points, *(extra.assign(SEED=s, IMAGE_SIZE=size)
                                for s in (222, 333) for size in (64, 96))])


CLAIMS = [
    Claim("08_benchmark", "With five categories the exact test cannot reach "
          "$p < 0.05$", "benchmark_v3", _five_cannot_reach,
          _a_sixth_multi_seed_category),
    Claim("08_benchmark", "six categories give a smallest p of 2/2⁶", "budget_v3",
          _six_give, lambda p: p[p.CATEGORY != p.CATEGORY.iloc[-1]]),
    Claim("08_benchmark", "one seed each, and three seeds on five of them at two "
          "image sizes", "benchmark_v3", _one_seed_each_three_on_five,
          _a_sixth_multi_seed_category),
]


@functools.cache
def _table(name: str) -> pd.DataFrame:
    """A committed results table (``benchmarks/results/<name>.csv``)."""
    return pd.read_csv(RESULTS / f"{name}.csv")


def _data(source: str) -> pd.DataFrame:
    return _table(source[:-4]) if source.endswith(".csv") else _points(source)


def _costs(table: pd.DataFrame, method: str, metric: str = "image_auroc"
           ) -> dict[tuple[str, float], pd.Series]:
    """Chapters 02 and 03's reading: a method's contaminated runs against its clean
    ones per category (seeds averaged first), one Series per (regime, ratio)."""
    rows = evaluate.with_clean(table[(table.status == "ok") & (table.method == method)])
    return {(r, n): evidence.differences(rows, metric, {"regime": r, "noise_ratio": n},
                                         {"regime": r, "noise_ratio": 0.0})
            for r, n in evidence.conditions(rows)}


def _both_sides_within(d: pd.Series, bound: float) -> bool:
    """A mean change within ±`bound` with categories on both sides of zero."""
    return bool(abs(d.mean()) < bound and (d < 0).any() and (d > 0).any())


def _every_category_lower(table: pd.DataFrame, method: str, regime: str) -> bool:
    """Lower in each of the five categories at both ratios of `regime`."""
    at = [d for (r, _), d in _costs(table, method).items() if r == regime]
    return bool(table.category.nunique() == 5 and len(at) == 2
                and all(len(d) == 5 and (d < 0).all() for d in at))


def _rd_most_on_seen(table: pd.DataFrame) -> bool:
    every, seen = _costs(table, "rd"), _costs(table, "rd", "image_auroc_seen")
    return all(seen[k].mean() < every[k].mean() for k in every if k[0] == "overlap")


def _rd_unseen_within(table: pd.DataFrame) -> bool:
    unseen = _costs(table, "rd", "image_auroc_unseen")
    return all(_both_sides_within(d, 0.01) for k, d in unseen.items()
               if k[0] == "overlap")


def _within_elsewhere(method: str, bound: float):
    def check(table: pd.DataFrame) -> bool:
        c = _costs(table, method)
        return all(_both_sides_within(d, bound) for (r, _), d in c.items()
                   if r in ("iid", "recurring"))
    return check


def _rd_recurring_seen_four(table: pd.DataFrame) -> bool:
    d = _costs(table, "rd", "image_auroc_seen")[("recurring", 0.2)]
    return bool(len(d) == 5 and (d < 0).sum() == 4 and (d == 0).sum() == 1
                and d.mean() > -0.05)


def _five_categories(table: pd.DataFrame) -> bool:
    return bool(table.category.nunique() == 5
                and evidence.signed_rank(np.ones(5))["p_floor"] == 0.0625)


def _lower(regime: str, by: float = 0.1, columns=("image_auroc", "image_auroc_seen",
                                                  "image_auroc_unseen")):
    """A planted table: every contaminated run under `regime` `by` lower."""
    def plant(table: pd.DataFrame) -> pd.DataFrame:
        hit = (table.regime == regime) & (table.noise_ratio > 0)
        return table.assign(**{c: table[c].where(~hit, table[c] - by)
                               for c in columns})
    return plant


def _moved(column: str, by: float, **where: object):
    """A planted table: `column` moved by `by` on the rows matching `where`."""
    def plant(table: pd.DataFrame) -> pd.DataFrame:
        hit = np.ones(len(table), bool)
        for key, value in where.items():
            hit &= (table[key] == value).to_numpy()
        return table.assign(**{column: table[column].where(~hit,
                                                           table[column] + by)})
    return plant


def _with_rd(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 03 reads the memory banks beside the RD regimes table."""
    return evaluate.with_clean(pd.concat([_table("rd_regimes_demo"), table],
                                         ignore_index=True))


def _softpatch_repairs_each(table: pd.DataFrame) -> bool:
    banks = _with_rd(table)
    banks = banks[banks.method.isin(["patchcore", "softpatch"])]
    return all(len(per) == 5 and (per.recovery > 0.5).all() for per in (
        evidence.recovery_by_category(banks, m, "softpatch", "patchcore", "overlap",
                                      0.2)
        for m in ("image_auroc_seen", "image_auroc")))


def _softpatch_seen_below_clean(table: pd.DataFrame) -> bool:
    d = _costs(table, "softpatch", "image_auroc_seen")[("overlap", 0.2)]
    return bool(d.mean() < 0)


def _rd_between_not_every(table: pd.DataFrame) -> bool:
    wide = evidence.matrix(_with_rd(table), "image_auroc",
                           {"regime": "overlap", "noise_ratio": 0.2})
    mean = wide.mean()
    above = int((wide.rd > wide.patchcore).sum())
    return bool(mean.patchcore < mean.rd < mean.softpatch and 0 < above < len(wide))


RD, BANKS = "rd_regimes_demo.csv", "memorybank_regimes_demo.csv"
CLAIMS += [
    Claim("02_reverse_distillation", "under `overlap` every one of the five "
          "categories lost image AUROC at both ratios", RD,
          lambda t: _every_category_lower(t, "rd", "overlap"),
          _moved("image_auroc", 0.3, regime="overlap", category="brick",
                 noise_ratio=0.1)),
    Claim("02_reverse_distillation", "most of it on the very anomalies trained on "
          "(*seen*)", RD, _rd_most_on_seen,
          _moved("image_auroc_seen", 0.6, regime="overlap", noise_ratio=0.2)),
    Claim("02_reverse_distillation", "while on the *unseen* ones the mean change is "
          "within ±0.01 with categories on both sides", RD, _rd_unseen_within,
          _lower("overlap", 0.1, ("image_auroc_unseen",))),
    Claim("02_reverse_distillation", "the mean change on all anomalies is within "
          "±0.02 with categories on both sides", RD, _within_elsewhere("rd", 0.02),
          _lower("iid")),
    Claim("02_reverse_distillation", "the seen anomalies lost a little in four of "
          "the five categories at 0.2 (the fifth unchanged)", RD,
          _rd_recurring_seen_four, _lower("recurring", 0.01)),
    Claim("02_reverse_distillation", "the smallest two-sided p of five is 0.0625",
          RD, _five_categories,
          lambda t: t.assign(category=t.category + t.seed.astype(str))),
    Claim("03_memory_bank", "lower in each of the five categories at both ratios",
          BANKS, lambda t: _every_category_lower(t, "patchcore", "overlap"),
          _moved("image_auroc", 0.3, method="patchcore", regime="overlap",
                 category="weave", noise_ratio=0.2)),
    Claim("03_memory_bank", "the mean change of image AUROC is within ±0.01 with "
          "categories on both sides", BANKS, _within_elsewhere("patchcore", 0.01),
          _lower("recurring", 0.02)),
    Claim("03_memory_bank", "more than half in each of the five categories", BANKS,
          _softpatch_repairs_each,
          _moved("image_auroc", -0.1, method="softpatch", regime="overlap",
                 category="grass", noise_ratio=0.2)),
    Claim("03_memory_bank", "The seen anomalies stay below their clean level",
          BANKS, _softpatch_seen_below_clean,
          _moved("image_auroc_seen", 0.3, method="softpatch", regime="overlap",
                 noise_ratio=0.2)),
    Claim("03_memory_bank", "is on average between PatchCore and SoftPatch, but not "
          "in every category", BANKS, _rd_between_not_every,
          _moved("image_auroc", -0.4, method="patchcore", regime="overlap",
                 noise_ratio=0.2)),
]


def _funad_diagnosis(table: pd.DataFrame) -> pd.DataFrame:
    """Chapter 06's diagnosis grid as category means over seeds: FUN-AD (the
    released code's smoothness) and the whole-bank nearest neighbour, by noise."""
    table = table[(table.method != "funad") | (table["cfg.smoothness"] == "code")]
    return table.groupby(["method", "noise_ratio", "category"])[
        ["image_auroc", "image_auroc_seen"]].mean()


def _funad_near_chance(table: pd.DataFrame) -> bool:
    clean = _funad_diagnosis(table).loc[("funad", 0.0), "image_auroc"]
    return bool(clean.between(0.4, 0.6).all())


def _funad_features_far_higher(table: pd.DataFrame) -> bool:
    at = _funad_diagnosis(table).image_auroc
    return bool((at.loc[("patchcore", 0.0)] - at.loc[("funad", 0.0)] > 0.2).all())


def _funad_not_mainly_schedule(long: pd.DataFrame) -> bool:
    from fuadnb.models import funad
    steps = funad.budget(funad.config(long.profile.iloc[0]),
                         int(long.n_train.iloc[0])).steps
    at_demo = long.test_image_auroc[long.step <= steps].iloc[-1]
    gap = long.knn_image_auroc.iloc[0] - at_demo
    return bool(gap > 0 and long.final_image_auroc.iloc[0] - at_demo < gap / 2)


def _funad_earns_its_keep(table: pd.DataFrame) -> bool:
    at = _funad_diagnosis(table)
    return bool((at.image_auroc.loc[("funad", 0.2)]
                 > at.image_auroc.loc[("funad", 0.0)]).all()
                and (at.image_auroc_seen.loc[("funad", 0.2)]
                     > at.image_auroc_seen.loc[("patchcore", 0.2)]).all())


CLAIMS += [
    Claim("06_funad_pseudo_labels", "On clean synthetic data FUN-AD is near "
          "chance", "funad_diagnosis_demo.csv", _funad_near_chance,
          _moved("image_auroc", 0.2, method="funad",
                 noise_ratio=0.0, category="brick")),
    Claim("06_funad_pseudo_labels", "their nearest-neighbour score is far higher, "
          "in each of the diagnosis grid's three categories",
          "funad_diagnosis_demo.csv", _funad_features_far_higher,
          _moved("image_auroc", 0.3, method="funad",
                 noise_ratio=0.0, category="brick")),
    Claim("06_funad_pseudo_labels", "ten times the steps closes less than half the "
          "gap to that score", "funad_long_curve_demo.csv",
          _funad_not_mainly_schedule,
          lambda t: t.assign(final_image_auroc=t.knn_image_auroc - 0.01)),
    Claim("06_funad_pseudo_labels", "with defects in the training set it scores "
          "higher than on a clean one in each of the three categories",
          "funad_diagnosis_demo.csv", _funad_earns_its_keep,
          _moved("image_auroc", -0.4, method="funad",
                 noise_ratio=0.2, category="brick")),
    Claim("06_funad_pseudo_labels", "their AUROC above the whole bank's in each "
          "category", "funad_diagnosis_demo.csv", _funad_earns_its_keep,
          _moved("image_auroc_seen", -0.95, method="funad",
                 noise_ratio=0.2, category="brick")),
    Claim("06_funad_pseudo_labels", "the smallest two-sided p of three pairs is "
          "0.25", "funad_diagnosis_demo.csv",
          lambda t: t.category.nunique() == 3
          and evidence.signed_rank(np.ones(3))["p_floor"] == 0.25,
          lambda t: t.assign(category=t.category + t.seed.astype(str))),
]


def _only_overlap_every_and_grows(table: pd.DataFrame) -> bool:
    """RD loses image AUROC in every category only under `overlap`, where the loss
    is larger at the higher ratio."""
    costs = _costs(table, "rd")
    overlap = [costs[k] for k in sorted(costs) if k[0] == "overlap"]
    return bool(_every_category_lower(table, "rd", "overlap")
                and overlap[1].mean() < overlap[0].mean()
                and not any((d < 0).all() for (r, _), d in costs.items()
                            if r != "overlap"))


CLAIMS += [
    Claim("01_contamination", "only under `overlap`, where the very images trained on "
          "stay in the test set, does RD lose image AUROC in every category, and more "
          "at the higher ratio", RD, _only_overlap_every_and_grows,
          _lower("recurring", 0.1)),
    Claim("01_contamination", "move its mean image AUROC by less than 0.02, with "
          "categories on both sides", RD, _within_elsewhere("rd", 0.02),
          _lower("iid")),
    Claim("01_contamination", "only `overlap`, where the very images trained on are "
          "tested, costs RD much", RD, _only_overlap_every_and_grows, _lower("iid")),
]


SECOND = "benchmark_demo.csv"


def _rde_beside_rd(table: pd.DataFrame) -> bool:
    """Chapter 04's across-categories table: gated RD-E and RD on coin and grass,
    clean and under every regime, three seeds each."""
    both = table[table.method.isin(["rd", "rde"])]
    rde = both[both.method == "rde"]
    return bool(set(rde["cfg.gii"]) == {"gated"}
                and set(both.category) == {"coin", "grass"}
                and set(both.groupby(["method", "category"]).seed.nunique()) == {3}
                and set(both.regime) == {"iid", "overlap", "recurring"}
                and (both.noise_ratio == 0).any())


def _rde_gated(table: pd.DataFrame) -> bool:
    rde = table[(table.method == "rde") & (table.profile == "demo")]
    return bool(len(rde) and set(rde["cfg.gii"]) == {"gated"})


def _rde_dearer(table: pd.DataFrame) -> bool:
    """RD-E's fits take more than twice RD's in every category."""
    fit = table.groupby(["category", "method"]).fit_seconds.mean().unstack()
    return bool((fit.rde > 2 * fit.rd).all())


def _ungated(table: pd.DataFrame) -> pd.DataFrame:
    return table.assign(**{"cfg.gii": table["cfg.gii"].where(table.method != "rde",
                                                             "ungated")})


CLAIMS += [
    Claim("04_expert_distillation", "RD and RD-E (gated) on coin and grass, clean and "
          "under every contamination regime, three seeds each", SECOND,
          _rde_beside_rd, _ungated),
    Claim("04_expert_distillation", "the `demo` profile of this page and of chapter "
          "08's benchmark runs the gated module", "benchmark_v3_demo.csv",
          _rde_gated, _ungated),
    Claim("04_expert_distillation", "The cost is training time", SECOND, _rde_dearer,
          lambda t: t.assign(fit_seconds=t.fit_seconds.where(t.method != "rde",
                                                             t.fit_seconds / 6))),
]


CDD = "cdd_demo.csv"


def _cdd_gaps(table: pd.DataFrame) -> pd.DataFrame:
    """Each CDD run's image AUROC minus RD's on its category and ratio."""
    rd = table[table.method == "rd"].set_index(["category", "noise_ratio"]).image_auroc
    cdd = table[table.method == "cdd"]
    return cdd.assign(gap=cdd.image_auroc.to_numpy() - rd.reindex(
        pd.MultiIndex.from_frame(cdd[["category", "noise_ratio"]])).to_numpy())


def _cdd_below_everywhere(table: pd.DataFrame) -> bool:
    gaps = _cdd_gaps(table)
    return bool(len(gaps) and gaps.gap.notna().all() and (gaps.gap < 0).all())


def _fewer_domains_closer(table: pd.DataFrame) -> bool:
    """Fixed partition, mean aggregation, no teacher term, noise 0.2: the gap to RD
    narrows from K = 5 to 3 to 2 in each category, on grass by under 0.01."""
    g = _cdd_gaps(table)
    g = g[(g["cfg.partition"] == "fixed") & (g["cfg.aggregation"] == "mean")
          & (g["cfg.teacher_weight"] == 0) & (g.noise_ratio == 0.2)]
    by_k = g.groupby(["category", "cfg.domains"]).gap.mean().unstack()
    return bool(len(by_k) == 3 and ((by_k[2] > by_k[3]) & (by_k[3] > by_k[5])).all()
                and by_k.loc["grass", 2] - by_k.loc["grass", 5] < 0.01)


def _teacher_term_closer(table: pd.DataFrame) -> bool:
    """λ = 1 ran on grass alone and scores above λ = 0 for both aggregations."""
    g = _cdd_gaps(table)
    g = g[(g["cfg.partition"] == "fixed") & (g["cfg.domains"] == 3)
          & (g.noise_ratio == 0.2)]
    with_term = g[g["cfg.teacher_weight"] == 1]
    at = g[g.category == "grass"].groupby(["cfg.aggregation", "cfg.teacher_weight"]
                                          ).image_auroc.mean().unstack()
    return bool(set(with_term.category) == {"grass"} and len(at) == 2
                and (at[1.0] > at[0.0]).all())


def _cdd_fit_ratio(table: pd.DataFrame) -> float:
    """CDD's (K = 3, fixed, mean, no teacher term) fit seconds over RD's, paired by
    category and ratio, averaged."""
    gaps = _cdd_gaps(table.assign(image_auroc=table.fit_seconds))
    k3 = gaps[(gaps["cfg.domains"] == 3) & (gaps["cfg.partition"] == "fixed")
              & (gaps["cfg.aggregation"] == "mean") & (gaps["cfg.teacher_weight"] == 0)]
    return float((k3.fit_seconds / (k3.fit_seconds - k3.gap)).mean())


CLAIMS += [
    Claim("05_cross_domain_distillation", "CDD scores below RD in every one of its "
          "runs (three categories, one seed", CDD,
          lambda t: _cdd_below_everywhere(t) and t.category.nunique() == 3
          and t.seed.nunique() == 1,
          _moved("image_auroc", 0.2, method="cdd", category="wood")),
    Claim("05_cross_domain_distillation", "fewer domains (more images per domain "
          "student) narrowed the gap in each of the three categories (on grass by "
          "under 0.01)", CDD, _fewer_domains_closer,
          _moved("image_auroc", -0.05, **{"cfg.domains": 2.0})),
    Claim("05_cross_domain_distillation", "on grass, the one category it ran on, so "
          "did a teacher term", CDD, _teacher_term_closer,
          _moved("image_auroc", -0.1, **{"cfg.teacher_weight": 1.0})),
    Claim("README.md", "about 1.8x RD's fit time in `benchmarks/results/cdd_demo.csv`",
          CDD, lambda t: round(_cdd_fit_ratio(t), 1) == 1.8,
          _moved("fit_seconds", 40.0, method="cdd")),
]


LLB, HELD_OUT = "llb_demo.csv", "llb_heldout_demo.csv"


def _llb_keep(table: pd.DataFrame, keep: float) -> pd.DataFrame:
    """LLB(RD)'s rows at `keep` beside RD's on the same category and ratio."""
    rd = table[table.method == "rd"].set_index(["category", "noise_ratio"]).image_auroc
    llb = table[(table.method == "llb-rd") & (table["strategy.keep"] == keep)]
    return llb.assign(rd=rd.reindex(pd.MultiIndex.from_frame(
        llb[["category", "noise_ratio"]])).to_numpy())


def _held_out_means(table: pd.DataFrame) -> bool:
    """Chapter 07's numbers, rounded as it writes them (categories, seeds, size)."""
    t = table[table.variant.isna()]
    mean = t.groupby(["stage1_rule", "method", "noise_ratio"])[
        ["image_auroc", "filter_auroc"]].mean().round(3)
    llb_before, llb_after = (mean.loc[(r, "llb-patchcore")]
                             for r in ("own-predict", "own-held-out"))
    return bool(
        (llb_before.loc[0.2, "filter_auroc"], llb_after.loc[0.2, "filter_auroc"])
        == (0.778, 0.782)
        and (llb_before.loc[0.2, "image_auroc"], llb_after.loc[0.2, "image_auroc"])
        == (0.735, 0.748)
        and (llb_before.loc[0.0, "image_auroc"], llb_after.loc[0.0, "image_auroc"])
        == (0.744, 0.751)
        and mean.loc[("own-predict", "patchcore", 0.0), "image_auroc"] == 0.836
        and (t.category.nunique(), t.seed.nunique(), set(t["cfg.image_size"]))
        == (4, 3, {64}))


CLAIMS += [
    Claim("07_llb_filtering", "Keeping 20 % removes most anomalies", LLB,
          lambda t: bool((_llb_keep(t, 0.2).filter_recall > 0.5).all()),
          lambda t: t.assign(filter_recall=0.3)),
    Claim("07_llb_filtering", "LLB(RD) at keep 0.2 scores below RD in every category "
          "and ratio", LLB,
          lambda t: bool(len(k := _llb_keep(t, 0.2)) == 6
                         and (k.image_auroc < k.rd).all()),
          _moved("image_auroc", 0.3, method="llb-rd", category="grass")),
    Claim("07_llb_filtering", "went from 0.778 to 0.782, its image AUROC there from "
          "0.735 to 0.748 and its clean image AUROC from 0.744 to 0.751, against "
          "PatchCore's 0.836 (four categories, three seeds, 64 px", HELD_OUT,
          _held_out_means,
          _moved("filter_auroc", 0.05, stage1_rule="own-held-out")),
]


def _bf16_moves(table: pd.DataFrame) -> bool:
    """book/running.md's ranges: bf16 - fp32 per method and category, rounded."""
    wide = table[table.precision.isin(["fp32", "bf16"])].pivot_table(
        index=["method", "category"], columns="precision",
        values=["image_auroc", "pixel_auroc", "pixel_aupro"])
    def span(metric):
        d = (wide[metric].bf16 - wide[metric].fp32).round(3)
        return d.min(), d.max()
    coin = wide.image_auroc.loc[("rd", "coin")].round(3)
    return bool(span("image_auroc") == (-0.054, 0.012)
                and span("pixel_auroc") == (-0.013, 0.004)
                and span("pixel_aupro") == (-0.036, 0.015)
                and (coin.fp32, coin.bf16) == (0.766, 0.712))


def _rde_seconds_per_iteration(table: pd.DataFrame) -> bool:
    rde = table[table.method == "rde"]
    per = rde.fit_seconds / rde.steps
    return bool(per[rde.image_size == 64].between(0.25, 0.35).all()
                and round(per[rde.image_size == 256].median(), 1) == 3.3)


CLAIMS += [
    Claim("book/running.md", "moved image AUROC by -0.054 to +0.012 (RD on coin "
          "0.766 -> 0.712), pixel AUROC by -0.013 to +0.004 and AUPRO by -0.036 to "
          "+0.015", "precision_cpu.csv", _bf16_moves,
          _moved("image_auroc", 0.05, method="rd", category="coin", precision="bf16")),
    Claim("README.md", "about 0.3 s per iteration on 2 CPU cores, 3.3 s at 256 px",
          "cost_growth_cpu.csv", _rde_seconds_per_iteration,
          _moved("fit_seconds", 400.0, method="rde", image_size=256)),
]

def _subsets_flatten_by(steps: int):
    def check(table: pd.DataFrame) -> bool:
        return bool(len(table) and table.flattened.max() <= steps)
    return check


def _rde_flattens_by(iterations: int):
    def check(table: pd.DataFrame) -> bool:
        h = table[table.method == "rde"]
        return bool(len(h) and evaluate.flattened(
            h["loss"], every=h["steps_per_record"].iloc[0]) <= iterations)
    return check


def _rde_still_falling(table: pd.DataFrame) -> pd.DataFrame:
    """A planted history: RD-E's loss falling steadily to its last record."""
    planted = table.copy()
    rde = planted.method == "rde"
    planted.loc[rde, "loss"] = np.linspace(1, 0, rde.sum())
    return planted


LLB_STEPS, HISTORIES = "llb_substeps_64px_demo.csv", "budget_histories_64px_demo.csv"
CLAIMS += [
    Claim("README.md", "`demo` 400, past the step by which RD's loss on a subset has "
          "flattened", LLB_STEPS, _subsets_flatten_by(400),
          lambda t: t.assign(flattened=t.flattened + 100)),
    Claim("07_llb_filtering", "`demo` 400, measured as every demo budget: past the "
          "step by which RD's loss on each subset has flattened", LLB_STEPS,
          _subsets_flatten_by(400), lambda t: t.assign(flattened=t.flattened + 100)),
    Claim("README.md", "245 iterations, past the step by which its loss has "
          "flattened", HISTORIES, _rde_flattens_by(245), _rde_still_falling),
]

def _category_minutes(category: str):
    """Wall minutes of one category's 45 points at 64 px and seed 111, from its first
    point's start (recorded time minus its seconds) to its last point's end."""
    def check(table: pd.DataFrame) -> float:
        rows = table[(table.category == category) & (table["cfg.image_size"] == 64)
                     & (table.seed == 111)]
        end = pd.to_datetime(rows.date)
        start = end - pd.to_timedelta(rows.seconds, unit="s")
        return (end.max() - start.min()).total_seconds() / 60 if len(rows) == 45 \
            else float("nan")
    return check


def _hours_two_at_a_time(table: pd.DataFrame) -> float:
    return table.seconds.sum() / 2 / 3600


CLAIMS += [
    Claim("README.md", "one category's 45 points at 64 px took 16 minutes two at a "
          "time (brushed_steel)", "benchmark_v3_demo.csv",
          lambda t: round(_category_minutes("brushed_steel")(t)) == 16,
          _moved("seconds", 120.0, category="brushed_steel")),
    Claim("README.md", "(90 runs, about 2.1 hours two at a time)", "budget_v3_demo.csv",
          lambda t: len(t) == 90 and round(_hours_two_at_a_time(t), 1) == 2.1,
          _moved("seconds", 60.0, method="rd")),
]


def _markdown(chapter: str) -> str:
    """The Markdown of a chapter (``notebooks/<chapter>.ipynb``) or of a page named
    by its path (``README.md``, ``book/intro.md``), whitespace folded."""
    if chapter.endswith(".md"):
        return " ".join((REPO / chapter).read_text().split())
    nb = nbformat.read(REPO / "notebooks" / f"{chapter}.ipynb", as_version=4)
    return " ".join(" ".join(c.source for c in nb.cells
                             if c.cell_type == "markdown").split())


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.words[:40])
def test_a_claim_is_in_its_chapter_and_its_table_supports_it(claim):
    assert claim.words in _markdown(claim.chapter), "the words are gone: drop it"
    assert claim.check(_data(claim.table)), claim.words


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.words[:40])
def test_a_claims_check_fails_on_a_planted_table(claim):
    assert not claim.check(claim.planted(_data(claim.table))), claim.words
