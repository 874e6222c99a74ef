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
    chapter: str                            # notebooks/<chapter>.ipynb
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


def _costs(table: pd.DataFrame, method: str) -> dict[str, pd.DataFrame]:
    """Chapters 02 and 03's test: a method's contaminated runs against its clean
    ones, paired by category x seed, on all, seen and unseen test anomalies."""
    rows = evaluate.with_clean(table[table.status == "ok"])
    return {m.removeprefix("image_auroc").strip("_") or "all": evaluate.cost(
        rows[rows.method == method], f"image_auroc{m}").set_index(
        ["regime", "noise_ratio"]) for m in ("", "_seen", "_unseen")}


def _rd_regimes_read_as_written(table: pd.DataFrame) -> bool:
    """Chapter 02: iid no loss detected; overlap a loss, larger on the seen
    anomalies, none detected on the unseen; recurring a small loss on the seen at
    0.2, detected, none detected on all anomalies."""
    c = _costs(table, "rd")
    every, seen, unseen = c["all"], c["seen"], c["unseen"]
    return bool((every.loc["iid"].verdict != "lower").all()
                and (every.loc["overlap"].verdict == "lower").all()
                and (seen.loc["overlap"].delta < every.loc["overlap"].delta).all()
                and (unseen.loc["overlap"].verdict != "lower").all()
                and seen.loc[("recurring", 0.2)].verdict == "lower"
                and -0.05 < seen.loc[("recurring", 0.2)].delta < 0
                and (every.loc["recurring"].verdict != "lower").all())


def _banks_read_as_written(table: pd.DataFrame) -> bool:
    """Chapter 03: a loss of PatchCore detected under overlap only."""
    every = _costs(table, "patchcore")["all"]
    return bool((every.loc["overlap"].verdict == "lower").all()
                and (every.loc[["iid", "recurring"]].verdict != "lower").all())


def _lower(regime: str, by: float = 0.1):
    """A planted table: every contaminated run under `regime` `by` lower."""
    def plant(table: pd.DataFrame) -> pd.DataFrame:
        hit = (table.regime == regime) & (table.noise_ratio > 0)
        return table.assign(**{c: table[c].where(~hit, table[c] - by) for c in (
            "image_auroc", "image_auroc_seen", "image_auroc_unseen")})
    return plant


CLAIMS += [
    Claim("02_reverse_distillation", "under fresh anomalies (`iid`) no loss is "
          "detected at this power, which is not evidence of no cost",
          "rd_regimes_demo.csv", _rd_regimes_read_as_written, _lower("iid")),
    Claim("02_reverse_distillation", "on the *unseen* ones no loss is detected",
          "rd_regimes_demo.csv", _rd_regimes_read_as_written,
          lambda t: t.assign(image_auroc_unseen=t.image_auroc_unseen.where(
              ~((t.regime == "overlap") & (t.noise_ratio > 0)),
              t.image_auroc_unseen - 0.1))),
    Claim("02_reverse_distillation", "cost a small loss on the recurring test "
          "anomalies at 0.2, detected, and none detected on all anomalies",
          "rd_regimes_demo.csv", _rd_regimes_read_as_written, _lower("recurring")),
    Claim("03_memory_bank", "Only under `overlap` is a loss of the memory bank "
          "detected.", "memorybank_regimes_demo.csv", _banks_read_as_written,
          _lower("recurring")),
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


def _funad_one_category(column: str, noise: float, by: float):
    """A planted table: FUN-AD's `column` at `noise` moved by `by` on one
    category (brick) only."""
    def plant(table: pd.DataFrame) -> pd.DataFrame:
        hit = ((table.method == "funad") & (table.noise_ratio == noise)
               & (table.category == "brick"))
        return table.assign(**{column: table[column].where(~hit,
                                                           table[column] + by)})
    return plant


CLAIMS += [
    Claim("06_funad_pseudo_labels", "On clean synthetic data FUN-AD is near "
          "chance", "funad_diagnosis_demo.csv", _funad_near_chance,
          _funad_one_category("image_auroc", 0.0, 0.2)),
    Claim("06_funad_pseudo_labels", "their nearest-neighbour score is far higher, "
          "in each of the diagnosis grid's three categories",
          "funad_diagnosis_demo.csv", _funad_features_far_higher,
          _funad_one_category("image_auroc", 0.0, 0.3)),
    Claim("06_funad_pseudo_labels", "ten times the steps closes less than half the "
          "gap to that score", "funad_long_curve_demo.csv",
          _funad_not_mainly_schedule,
          lambda t: t.assign(final_image_auroc=t.knn_image_auroc - 0.01)),
    Claim("06_funad_pseudo_labels", "with defects in the training set it scores "
          "higher than on a clean one in each of the three categories",
          "funad_diagnosis_demo.csv", _funad_earns_its_keep,
          _funad_one_category("image_auroc", 0.2, -0.4)),
    Claim("06_funad_pseudo_labels", "their AUROC above the whole bank's in each "
          "category", "funad_diagnosis_demo.csv", _funad_earns_its_keep,
          _funad_one_category("image_auroc_seen", 0.2, -0.95)),
    Claim("06_funad_pseudo_labels", "the smallest two-sided p of three pairs is "
          "0.25", "funad_diagnosis_demo.csv",
          lambda t: t.category.nunique() == 3
          and evidence.signed_rank(np.ones(3))["p_floor"] == 0.25,
          lambda t: t.assign(category=t.category + t.seed.astype(str))),
]


def _markdown(chapter: str) -> str:
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
