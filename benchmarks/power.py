"""python benchmarks/power.py                 # writes benchmarks/results/power_v3.md

The power statement of the third-edition grid (issue 31), computed before it runs
from the committed tables: the between-category sd of the paired gains each
comparison shows there, and from it the smallest mean gain a grid of --categories
categories detects with a two-sided test at --alpha with --power
(`fuadnb.evidence.detectable_gain`, the normal approximation of
shared/reference/statistics.md) and the categories a given gain needs.

Each comparison is one paired difference per category (seeds averaged first,
`fuadnb.evidence.spread`): every method against contaminated RD (its gain, chapter
08; SoftPatch against contaminated PatchCore, chapter 03) and every method's
contaminated run against its own clean run (its cost), per regime and noise ratio
> 0, on all, seen and unseen test anomalies. The sds are pooled per kind of test
anomalies (variance weighted by degrees of freedom), with a one-sided 80 % upper
confidence bound from the chi-square distribution (a handful of categories
estimate an sd poorly). The committed tables average three seeds per category; the
third edition runs one, which adds the within-category seed variance: sd_1 =
sqrt(sd_3² + seed_sd² (1 - 1/3)).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fuadnb import evaluate, evidence  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TABLES = ("benchmark_demo.csv", "rd_regimes_demo.csv", "memorybank_regimes_demo.csv")
GROUPS = {"all": "image_auroc", "seen": "image_auroc_seen",
          "unseen": "image_auroc_unseen"}
# the committed tables whose rows are compared, and each one's baselines
SOURCES = {"benchmark_demo": (["benchmark_demo.csv"], ["rd"]),
           "regimes_demo": (["rd_regimes_demo.csv", "memorybank_regimes_demo.csv"],
                            ["rd", "patchcore"])}


def comparisons(name: str, rows: pd.DataFrame, baselines: list[str]) -> list[dict]:
    """One record per paired comparison in `rows` (with `with_clean`'s clean runs)."""
    out = []
    noisy = rows[rows.noise_ratio > 0]
    for (method, regime, noise), _ in noisy.groupby(["method", "regime",
                                                     "noise_ratio"]):
        at = {"method": method, "regime": regime, "noise_ratio": noise}
        for group, metric in GROUPS.items():
            if rows.loc[(rows.regime == regime) & (rows.noise_ratio == noise),
                        metric].isna().all():
                continue
            pairs = [("cost", at | {"noise_ratio": 0.0})] + [
                (f"gain over {b}", at | {"method": b}) for b in baselines
                if b != method and not (method in baselines and baselines.index(
                    method) < baselines.index(b))]          # each pair once
            for kind, other in pairs:
                s = evidence.spread(rows, metric, at, other)
                if s["n_categories"] > 1:
                    out.append({"table": name, "comparison": kind, "method": method,
                                "regime": regime, "noise_ratio": noise,
                                "anomalies": group, **s})
    return out


def pooled(frame: pd.DataFrame, seeds: int, bound: float) -> pd.Series:
    """Pooled between-category sd (df-weighted variances) of `frame`'s comparisons,
    its upper confidence bound at `bound`, and both for one seed per category."""
    df = frame.n_categories - 1
    total = df.sum()
    sd = np.sqrt((df * frame.sd ** 2).sum() / total)
    seed_var = (df * frame.seed_sd ** 2).sum() / total
    grow = np.sqrt(total / stats.chi2.ppf(1 - bound, total))
    one = np.sqrt(sd ** 2 + seed_var * (1 / seeds - 1 / frame.n_seeds.min()))
    return pd.Series({"comparisons": len(frame), "df": int(total), "sd": sd,
                      "sd_upper": sd * grow, "sd_one_seed": one,
                      "sd_one_seed_upper": one * grow})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--categories", type=int, default=24)
    p.add_argument("--seeds", type=int, default=1, help="seeds per category of the "
                   "planned grid (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--bound", type=float, default=0.8, help="one-sided confidence "
                   "of the sd's upper bound (default: %(default)s)")
    p.add_argument("--gains", type=float, nargs="+", default=[0.05, 0.08, 0.1])
    p.add_argument("--out", type=Path, default=RESULTS / "power_v3.md")
    args = p.parse_args()

    records, commits = [], {}
    for name, (files, baselines) in SOURCES.items():
        tables = [pd.read_csv(RESULTS / f) for f in files]
        for f, t in zip(files, tables, strict=True):
            commits[f] = ", ".join(sorted(t.commit.astype(str).unique()))
        rows = evaluate.with_clean(pd.concat(tables, ignore_index=True))
        records += comparisons(name, rows, baselines)
    each = pd.DataFrame(records)
    each["kind"] = np.where(each.comparison == "cost", "cost", "gain")
    summary = pd.concat([
        each.groupby(["kind", "anomalies", "regime"]).apply(
            pooled, args.seeds, args.bound, include_groups=False),
        each.assign(regime="every regime").groupby(
            ["kind", "anomalies", "regime"]).apply(
            pooled, args.seeds, args.bound, include_groups=False)]).sort_index()
    n, a, pw = args.categories, args.alpha, args.power
    at = summary.assign(**{
        f"delta_{n}": [evidence.detectable_gain(v, n, alpha=a, power=pw)
                       for v in summary.sd_one_seed],
        f"delta_{n}_upper": [evidence.detectable_gain(v, n, alpha=a, power=pw)
                             for v in summary.sd_one_seed_upper],
        f"delta_{n}_wilcoxon": [evidence.detectable_gain(v, 0.864 * n, alpha=a,
                                                         power=pw)
                                for v in summary.sd_one_seed]},
        **{f"n_for_{g:g}": [int(np.ceil(evidence.categories_needed(
            v, g, alpha=a, power=pw))) for v in summary.sd_one_seed]
           for g in args.gains})
    headline = at.loc[("gain", slice(None), "overlap"), :].droplevel([0, 2])
    lines = [
        "# Power statement for the third-edition grid (issue 31)",
        "",
        "Generated by `" + " ".join(["python benchmarks/power.py", *sys.argv[1:]])
        + f"` at commit {_commit()}, before the grid runs; do not edit by hand.",
        "",
        "Inputs (committed tables and the commit that made their rows): "
        + "; ".join(f"`{f}` ({c})" for f, c in commits.items()) + ".",
        "",
        f"Design: {n} categories, {args.seeds} seed(s) each; two-sided test at "
        f"α = {a:g} with power {pw:g}; the smallest detectable mean difference is "
        "δ = (z_{1-α/2} + z_{power}) σ / √n (`fuadnb.evidence.detectable_gain`, "
        "statistics.md), σ the between-category sd of the paired differences. The "
        "exact Wilcoxon signed-rank test's efficiency is at least 0.864 of the "
        "t-test's: δ for Wilcoxon is computed with 0.864 n categories.",
        "",
        "## The statement",
        "",
        f"With {n} categories and {args.seeds} seed(s) each, the grid detects with "
        f"power {pw:g} at α = {a:g} a mean gain over contaminated RD under "
        "`overlap` (the regime that damages it) of about "
        + "; ".join(f"**{r[f'delta_{n}']:.3f}** AUROC on {g} test anomalies "
                    f"({r[f'delta_{n}_upper']:.3f} at the 80 % upper bound of σ, "
                    f"{r[f'delta_{n}_wilcoxon']:.3f} for Wilcoxon at its lowest "
                    "efficiency)" for g, r in headline.iterrows())
        + ". A smaller true difference may exist and go undetected: a verdict "
        "under these δ is written \"not detected at this power\", never \"no "
        "effect\". The σ come from 2 categories (`benchmark_demo`, 64 px) and 5 "
        "(`rd_regimes_demo` + `memorybank_regimes_demo`, 96 px) of v2's synthetic "
        "benchmark; v3's categories are new, so its own σ may differ, and the "
        "chapter restates the power from the v3 table once it exists.",
        "",
        "## Per kind of comparison, test anomalies and regime",
        "",
        "`gain`: a method against the contaminated baseline (RD; for SoftPatch "
        "also PatchCore); `cost`: a method's contaminated run against its own clean "
        "run. `sd`: pooled (df-weighted variances) between-category sd of the "
        "seed-averaged (3 seeds) paired differences; `sd_upper`: its one-sided "
        f"{args.bound:.0%} chi-square upper bound; `sd_one_seed`: with the "
        "within-category seed variance added for one seed per category, "
        "sqrt(sd² + seed_sd² (1 − 1/3)); `delta_*` from `sd_one_seed` (and its "
        "bound); `n_for_*`: categories needed for that gain.",
        "",
        at.round(3).to_markdown(),
        "",
        "## Every comparison",
        "",
        "One paired difference per category; `sd` between categories (1 df with 2 "
        "categories: each alone is a poor estimate, hence the pooling), "
        "`seed_sd` within them.",
        "",
        each.drop(columns="kind").round(4).to_markdown(index=False),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12",
                               "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
