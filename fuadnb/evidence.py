"""What a comparison of methods may conclude, with the category as the unit
(DESIGN.md §9; Demšar 2006, García & Herrera 2008).

Every function here takes results rows (one per run) or the numbers derived from
them and never trains anything. The seeds of a category are averaged first
(`category_means`): one value per category and condition, so that n is the number
of categories, not of runs. Then:

- two methods or conditions: the per-category paired differences (`differences`)
  and the exact two-sided Wilcoxon signed-rank test (`signed_rank`: ``method=
  "exact"`` pinned, zero differences dropped, i.e. ``zero_method="wilcox"``, and the
  n the test used reported beside the categories it had); `compare` adds the mean
  with a bootstrap interval over categories and a verdict;
- many methods: every pair with Holm's correction (`pairwise`), Friedman's test with
  Nemenyi's post-hoc (`friedman_nemenyi`, scikit-posthocs) for the
  critical-difference diagram (`fuadnb.plot.critical_difference`);
- a ratio such as the share of the baseline's damage a method recovers
  (`recovery_by_category`, `recovery_overall`): per category where the baseline's
  damage exceeds a stated floor, overall as a ratio of means with a percentile
  bootstrap interval that resamples categories, by family where a family column is
  given (`bootstrap_ci`);
- power before a run (`detectable_gain`, `categories_needed`): the normal
  approximation of statistics.md, n = ((z_{1-α/2} + z_{1-β}) σ / δ)².

Deliberate choices: ties among the absolute differences get mid-ranks and the exact
null distribution ignores them (scipy's ``method="exact"``); a verdict is
``higher`` / ``lower`` only where p < alpha; with too few non-zero differences for
the smallest attainable p (2 / 2^n) to reach alpha it is ``too few categories``,
never ``no ranking``.

Explained in: book/chapters/08_benchmark
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from fuadnb.evaluate import require_columns, with_clean

ZERO_METHOD = "wilcox"       # zero differences are dropped; n shrinks and is reported
TEST_METHOD = "exact"        # the exact null distribution, never scipy's "auto"
FLOOR = 0.02                 # recovery is defined where the baseline loses more
MIN_CI = 5                   # fewer categories get no bootstrap interval: their
# resamples are a handful of values (2 categories: 3 distinct means), no interval


def category_means(rows: pd.DataFrame, column: str,
                   by: Sequence[str] = ("method", "regime", "noise_ratio")
                   ) -> pd.DataFrame:
    """`column` averaged over the seeds of each (`by`..., category): the unit of
    every test here.

    Returns:
        one row per (`by`..., category): ``mean``, ``seed_sd`` (sd over seeds,
        ddof 1; NaN for one seed) and ``n_seeds``.
    """
    missing = [c for c in (*by, "category", "seed", column) if c not in rows]
    if missing:
        raise ValueError(f"evidence.category_means: the table has no column(s) "
                         f"{missing}")
    groups = rows.dropna(subset=[column]).groupby([*by, "category"],
                                                   observed=True)[column]
    return pd.DataFrame({"mean": groups.mean(), "seed_sd": groups.std(ddof=1),
                         "n_seeds": groups.size()})


REGIMES = ("overlap", "iid", "recurring")   # the book's order of the regimes


def conditions(rows: pd.DataFrame) -> list[tuple[str, float]]:
    """The contaminated conditions of `rows`: each (regime, noise ratio) with a
    noise ratio above 0, in the book's order of the regimes (`REGIMES`, then any
    other by name), each by ratio."""
    rank = {regime: k for k, regime in enumerate(REGIMES)}
    pairs = {(str(r), float(n)) for r, n in zip(rows["regime"], rows["noise_ratio"],
                                                 strict=True) if n > 0}
    return sorted(pairs, key=lambda c: (rank.get(c[0], len(rank)), c[0], c[1]))


def select(rows: pd.DataFrame, where: Mapping[str, object]) -> pd.DataFrame:
    """The rows whose columns equal every value of `where`."""
    keep = np.ones(len(rows), bool)
    for column, value in where.items():
        keep &= (rows[column] == value).to_numpy()
    return rows[keep]


def differences(rows: pd.DataFrame, metric: str, a: Mapping[str, object],
                b: Mapping[str, object], *, reference: str | None = None
                ) -> pd.Series:
    """Per-category paired differences a - b, seeds averaged within a category
    first: `metric` of the rows matching `a` minus `reference` (default `metric`)
    of the rows matching `b`, over the categories both have.

    Example: ``differences(rows, "image_auroc", {"method": "softpatch", "regime":
    "overlap", "noise_ratio": 0.2}, {"method": "rd", "regime": "overlap",
    "noise_ratio": 0.2})`` is SoftPatch's gain over contaminated RD per category.
    """
    def means(where: Mapping[str, object], column: str) -> pd.Series:
        part = select(rows, where)
        return category_means(part, column, by=[])["mean"] if len(part) else \
            pd.Series(dtype=float)

    d = (means(a, metric) - means(b, reference or metric)).dropna()
    d.index.name = "category"
    return d.sort_index()


def signed_rank(d: Sequence[float]) -> dict[str, float]:
    """The exact two-sided Wilcoxon signed-rank test of paired differences `d`
    (one per category), zero differences dropped.

    Returns:
        ``n_categories`` (len(d)), ``n_zero`` (dropped), ``n`` (the pairs the test
        used), ``statistic`` (scipy's: the smaller rank sum), ``p`` (NaN when
        every difference is zero) and ``p_floor`` = 2 / 2^n, the smallest p these
        n can give.
    """
    d = np.asarray(d, float)
    d = d[~np.isnan(d)]
    nonzero = d[d != 0]
    n = len(nonzero)
    out = {"n_categories": len(d), "n_zero": len(d) - n, "n": n,
           "statistic": np.nan, "p": np.nan,
           "p_floor": min(1.0, 2.0 / 2**n) if n else np.nan}
    if n:
        test = stats.wilcoxon(nonzero, zero_method=ZERO_METHOD, method=TEST_METHOD)
        out |= {"statistic": float(test.statistic), "p": float(test.pvalue)}
    return out


def verdict(delta: float, test: Mapping[str, float], alpha: float = 0.05) -> str:
    """``higher`` / ``lower`` where p < `alpha`; ``too few categories`` where even
    all n non-zero differences agreeing could not reach it; else ``not detected``
    (at this power: not an absence of an effect)."""
    if not test["n"] or test["p_floor"] >= alpha:
        return "too few categories"
    if test["p"] < alpha:
        return "higher" if delta > 0 else "lower"
    return "not detected"


def statement(what: str, row: Mapping[str, object], *,
              detectable: float | None = None, unit: str = "AUROC") -> str:
    """One verdict written out with its evidence, e.g. ``SoftPatch - RD, overlap
    0.2: +0.052 AUROC [+0.021, +0.083], n 29 of 29 categories, p 0.003: higher``.

    `row` holds `compare`'s columns (``delta``, ``ci_low``, ``ci_high``, ``n``,
    ``n_categories``, ``p``, ``verdict``; `versus` and `pairwise` rows do, the
    interval optional). ``not detected`` is written ``not detected at this
    power``, with the mean difference the categories would detect with power 0.8
    where `detectable` (default: the row's own, `compare`) gives it; never as an
    absence."""
    delta = float(row["delta"])
    low, high = row.get("ci_low", np.nan), row.get("ci_high", np.nan)
    ci = f" [{low:+.3f}, {high:+.3f}]" if np.isfinite(low) and np.isfinite(high) \
        else ""
    p = row.get("p_holm", row["p"])
    tested = f", p {p:.2g}" + (" (Holm)" if "p_holm" in row else "") \
        if np.isfinite(p) else ""
    text = (f"{what}: {delta:+.3f} {unit}{ci}, n {int(row['n'])} of "
            f"{int(row['n_categories'])} categories{tested}: ")
    said = str(row["verdict"])
    if detectable is None:
        detectable = row.get("detectable")
    if said == "not detected":
        return text + "not detected at this power" + (
            f" (a mean difference of {detectable:.3f} would be detected with "
            "power 0.8)" if detectable is not None and np.isfinite(detectable)
            else "")
    if said == "too few categories":
        return text + "too few categories for any verdict"
    return text + said


COMPARE = ("delta", "ci_low", "ci_high", "median", "sd", "detectable",
           "n_categories", "n_lower", "n_zero", "n", "p", "p_floor", "verdict")


def compare(d: pd.Series, *, alpha: float = 0.05, clusters: Sequence | None = None,
            n_resamples: int = 9999, seed: int = 0) -> dict[str, object]:
    """Per-category differences `d` summarised: the `COMPARE` columns (mean and its
    percentile bootstrap interval over categories, clustered by `clusters` where
    given, from `MIN_CI` categories on; median; ``sd`` between categories and
    ``detectable``, the mean difference these categories detect with power 0.8 at
    `alpha` for that sd (`detectable_gain`, the power statement read from the
    table itself); ``n_lower``, the categories whose difference is below zero (a
    description beside the test, e.g. "lower in 4 of 5 categories");
    `signed_rank`'s n and p; `verdict`)."""
    values = np.asarray(d, float)
    test = signed_rank(values)
    delta = float(values.mean()) if len(values) else np.nan
    low, high = bootstrap_ci(values, np.mean, clusters=clusters,
                             n_resamples=n_resamples, confidence=1 - alpha,
                             seed=seed)[:2] if len(values) >= MIN_CI else (np.nan,
                                                                           np.nan)
    sd = float(values.std(ddof=1)) if len(values) > 1 else np.nan
    return {"delta": delta, "ci_low": low, "ci_high": high,
            "median": float(np.median(values)) if len(values) else np.nan,
            "sd": sd, "detectable": detectable_gain(sd, len(values), alpha=alpha)
            if len(values) > 1 else np.nan,
            "n_lower": int((values < 0).sum()),
            **{k: test[k] for k in ("n_categories", "n_zero", "n", "p", "p_floor")},
            "verdict": verdict(delta, test, alpha)}


def versus(rows: pd.DataFrame, metric: str, baseline: str, *,
           by: Sequence[str] = ("regime", "noise_ratio"), alpha: float = 0.05,
           family: str | None = None, n_resamples: int = 9999) -> pd.DataFrame:
    """Each method against `baseline` in every `by` group, paired by category
    (seeds averaged first): one row per (method, `by`...) with the `COMPARE`
    columns, ``delta`` = method - baseline."""
    require_columns(rows, ["method", *by, "category", "seed", metric],
                    "evidence.versus")
    return _paired(rows, rows["method"] != baseline, {"method": baseline}, metric,
                   by, alpha, family, n_resamples)


def cost(rows: pd.DataFrame, metric: str, *, by: Sequence[str] = ("regime",
                                                                  "noise_ratio"),
         alpha: float = 0.05, family: str | None = None, n_resamples: int = 9999
         ) -> pd.DataFrame:
    """What contamination costs each method by its own clean run, paired by
    category (seeds averaged first): one row per (method, `by`...) with noise ratio
    > 0 and the `COMPARE` columns, ``delta`` = contaminated - clean (negative: a
    loss). `rows` hold every method's clean runs under every regime
    (`fuadnb.evaluate.with_clean`)."""
    require_columns(rows, ["method", "noise_ratio", *by, "category", "seed", metric],
                    "evidence.cost")
    return _paired(rows, rows["noise_ratio"] > 0, {"noise_ratio": 0.0}, metric, by,
                   alpha, family, n_resamples)


def _paired(rows: pd.DataFrame, chosen: pd.Series, other: Mapping[str, object],
            metric: str, by: Sequence[str], alpha: float, family: str | None,
            n_resamples: int) -> pd.DataFrame:
    """`versus` and `cost`: each (method, `by`...) group of the `chosen` rows
    against the same group with `other`'s values, paired by category, `compare`d."""
    out = []
    for key, _ in rows[chosen].groupby(["method", *by], observed=True):
        where = dict(zip(["method", *by], key, strict=True))
        d = differences(rows, metric, where, where | dict(other))
        out.append(where | compare(d, alpha=alpha, n_resamples=n_resamples,
                                   clusters=_families(rows, d.index, family)))
    return pd.DataFrame(out, columns=["method", *by, *COMPARE])


def _families(rows: pd.DataFrame, categories: pd.Index, family: str | None
              ) -> np.ndarray | None:
    """Each category's family (the `family` column), or None."""
    if family is None:
        return None
    lookup = rows.drop_duplicates("category").set_index("category")[family]
    return lookup.reindex(categories).to_numpy()


def bootstrap_ci(data: np.ndarray, statistic: Callable[..., float], *,
                 clusters: Sequence | None = None, n_resamples: int = 9999,
                 confidence: float = 0.95, seed: int = 0
                 ) -> tuple[float, float, float]:
    """A percentile bootstrap interval of `statistic` over the rows of `data` (one
    row per category), resampled i.i.d., or in two stages where `clusters` gives
    each row's family: the families with replacement, then the rows inside each
    drawn family with replacement (Davison & Hinkley 1997, §3.8).

    Args:
        data: (n,) or (n, m); `statistic` gets the resampled columns as m
            positional 1-D arrays (one for (n,)), e.g. ``lambda g, d: g.mean() /
            d.mean()``, and may return NaN (an undefined replicate).

    Returns:
        ``(low, high, undefined)``: the percentiles over the defined replicates and
        the share of undefined ones; the interval is NaN where that share exceeds
        half of 1 - `confidence` (a tail the replicates cannot bound).
    """
    data = np.asarray(data, float)
    columns = data[:, None] if data.ndim == 1 else data
    n = len(columns)
    rng = np.random.default_rng(seed)
    if clusters is None:
        picks = (columns[row] for row in rng.integers(0, n, size=(n_resamples, n)))
    else:
        labels = pd.factorize(np.asarray(clusters))[0]
        order = np.argsort(labels, kind="stable")         # rows grouped by family
        sizes = np.bincount(labels)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])

        def two_stage() -> np.ndarray:
            drawn = rng.integers(0, len(sizes), len(sizes))      # families
            size = np.repeat(sizes[drawn], sizes[drawn])
            within = (rng.random(len(size)) * size).astype(int)  # rows inside
            return columns[order[np.repeat(starts[drawn], sizes[drawn]) + within]]

        picks = (two_stage() for _ in range(n_resamples))
    values = np.array([statistic(*sample.T) for sample in picks], float)
    defined = values[np.isfinite(values)]
    undefined = 1 - len(defined) / n_resamples
    tail = (1 - confidence) / 2
    if undefined > tail or not len(defined):
        return np.nan, np.nan, undefined
    low, high = np.percentile(defined, [100 * tail, 100 * (1 - tail)])
    return float(low), float(high), undefined


def recovery_by_category(rows: pd.DataFrame, metric: str, method: str,
                         baseline: str, regime: str, noise_ratio: float, *,
                         reference: str | None = None, floor: float = FLOOR,
                         family: str | None = None) -> pd.DataFrame:
    """The baseline's damage and the method's repair on each category, seeds
    averaged first: with B the baseline, m the method, 0 clean and r the
    contaminated condition, ``damage`` = B_0 - B_r, ``gain`` = m_r - B_r,
    ``recovery`` = gain / damage where ``qualifies`` (damage > `floor`), else NaN,
    ``clean_gap`` = m_0 - B_0. The clean runs are looked up under the same regime
    (`fuadnb.evaluate.with_clean` repeats them); `reference` is their column
    (default `metric`). With `family`, a ``family`` column."""
    clean = reference or metric
    at = {"regime": regime, "noise_ratio": noise_ratio}
    zero = {"regime": regime, "noise_ratio": 0.0}

    def means(who: str, where: dict, column: str) -> pd.Series:
        part = select(rows, where | {"method": who})
        return category_means(part, column, by=[])["mean"]

    table = pd.DataFrame({"b_0": means(baseline, zero, clean),
                          "b_r": means(baseline, at, metric),
                          "m_0": means(method, zero, clean),
                          "m_r": means(method, at, metric)}).dropna()
    table.index.name = "category"
    table["damage"] = table.b_0 - table.b_r
    table["gain"] = table.m_r - table.b_r
    table["qualifies"] = table.damage > floor
    table["recovery"] = (table.gain / table.damage).where(table.qualifies)
    table["clean_gap"] = table.m_0 - table.b_0
    if family is not None:
        table["family"] = _families(rows, table.index, family)
    return table


RECOVERY = ("damage", "gain", "recovery", "ci_low", "ci_high", "n_categories",
            "n_qualifying", "clean_gap", "n", "p", "verdict")


def recovery_overall(per_category: pd.DataFrame, *, floor: float = FLOOR,
                     alpha: float = 0.05, n_resamples: int = 9999, seed: int = 0
                     ) -> dict[str, object]:
    """`recovery_by_category`'s rows summarised over categories: ``recovery`` =
    mean gain / mean damage (a ratio of means, defined where the mean damage
    exceeds `floor`) with its percentile bootstrap interval resampling categories
    from `MIN_CI` on (by ``family`` where the table has one; a replicate whose mean
    damage is at or under the floor is undefined), ``n_qualifying`` (categories
    whose own damage exceeds the floor), ``clean_gap`` (mean), and the exact
    signed-rank test of the
    gain (``n`` as used, ``p``, ``verdict``)."""
    gain, damage = per_category.gain.to_numpy(), per_category.damage.to_numpy()
    defined = len(damage) and damage.mean() > floor

    def ratio(g: np.ndarray, d: np.ndarray) -> float:
        return g.mean() / d.mean() if d.mean() > floor else np.nan

    low = high = np.nan
    if defined and len(damage) >= MIN_CI:
        low, high, _ = bootstrap_ci(np.column_stack([gain, damage]), ratio,
                                    clusters=per_category.get("family"),
                                    n_resamples=n_resamples, confidence=1 - alpha,
                                    seed=seed)
    test = signed_rank(gain)
    return {"damage": float(damage.mean()) if len(damage) else np.nan,
            "gain": float(gain.mean()) if len(gain) else np.nan,
            "recovery": float(gain.mean() / damage.mean()) if defined else np.nan,
            "ci_low": low, "ci_high": high, "n_categories": len(per_category),
            "n_qualifying": int(per_category.qualifies.sum()),
            "clean_gap": float(per_category.clean_gap.mean())
            if len(per_category) else np.nan,
            "n": test["n"], "p": test["p"],
            "verdict": verdict(float(gain.mean()) if len(gain) else np.nan, test,
                               alpha)}


def recovery(rows: pd.DataFrame, metric: str, *, baseline: str = "rd",
             reference: str | None = None, floor: float = FLOOR,
             alpha: float = 0.05, family: str | None = None,
             n_resamples: int = 9999) -> pd.DataFrame:
    """`recovery_overall` for every method (but the baseline), regime and noise
    ratio > 0 of `rows` (with every method's clean runs under every regime,
    `fuadnb.evaluate.with_clean`): one row each with the `RECOVERY` columns."""
    require_columns(rows, ["method", "regime", "noise_ratio", "category", "seed",
                           metric, *([reference] if reference else [])],
                    "evidence.recovery")
    out = []
    noisy = rows[(rows["noise_ratio"] > 0) & (rows["method"] != baseline)]
    for (method, regime, noise), _ in noisy.groupby(
            ["method", "regime", "noise_ratio"], observed=True):
        per = recovery_by_category(rows, metric, method, baseline, regime, noise,
                                   reference=reference, floor=floor, family=family)
        out.append({"method": method, "regime": regime, "noise_ratio": noise,
                    **recovery_overall(per, floor=floor, alpha=alpha,
                                       n_resamples=n_resamples)})
    return pd.DataFrame(out, columns=["method", "regime", "noise_ratio", *RECOVERY])


def matrix(rows: pd.DataFrame, metric: str, where: Mapping[str, object]
           ) -> pd.DataFrame:
    """Categories x methods: `metric` averaged over seeds, for the rows matching
    `where` (e.g. one regime and noise ratio); only categories every method has."""
    part = category_means(select(rows, where), metric, by=["method"])["mean"]
    return part.unstack("method").dropna()


PAIRWISE = ("a", "b", "delta", "n_categories", "n_zero", "n", "p", "p_holm",
            "verdict")


def pairwise(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Every method against every other on a categories x methods `table`
    (`matrix`): the mean difference a - b, the exact signed-rank test (n as used)
    and its p adjusted for all the pairs by Holm's step-down method
    (statsmodels); ``verdict`` from the adjusted p."""
    out = []
    for a, b in itertools.combinations(table.columns, 2):
        d = table[a] - table[b]
        out.append({"a": a, "b": b, "delta": float(d.mean()), **signed_rank(d)})
    frame = pd.DataFrame(out)
    if frame.empty:
        return pd.DataFrame(columns=PAIRWISE)
    frame["p_holm"] = np.nan
    tested = frame.p.notna()
    if tested.any():
        frame.loc[tested, "p_holm"] = multipletests(frame.p[tested], method="holm")[1]
    frame["verdict"] = [verdict(r.delta, {"n": r.n, "p": r.p_holm,
                                          "p_floor": r.p_floor}, alpha)
                        for r in frame.itertuples()]
    return frame[list(PAIRWISE)]


def friedman_nemenyi(table: pd.DataFrame) -> dict[str, object]:
    """Friedman's test over a categories x methods `table` and Nemenyi's post-hoc
    (Demšar 2006): ``statistic``, ``p`` (scipy), ``n_categories``, ``k``,
    ``mean_ranks`` (rank 1 = best = highest metric, ties get mid-ranks),
    ``nemenyi`` (the methods x methods p-values, scikit-posthocs) and ``cd`` (the
    critical difference of mean ranks at 0.05)."""
    # imported here: scikit-posthocs brings matplotlib and seaborn (about 1 s), which
    # every kernel that imports fuadnb (each grid point) would otherwise pay
    import scikit_posthocs

    n, k = table.shape
    ranks = table.rank(axis=1, ascending=False).mean()
    test = stats.friedmanchisquare(*(table[c].to_numpy() for c in table.columns))
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(table.to_numpy())
    nemenyi.index = nemenyi.columns = table.columns
    q = stats.studentized_range.ppf(0.95, k, np.inf) / np.sqrt(2)
    return {"statistic": float(test.statistic), "p": float(test.pvalue),
            "n_categories": n, "k": k, "mean_ranks": ranks.sort_values(),
            "nemenyi": nemenyi, "cd": float(q * np.sqrt(k * (k + 1) / (6 * n)))}


def spread(rows: pd.DataFrame, metric: str, a: Mapping[str, object],
           b: Mapping[str, object], *, reference: str | None = None
           ) -> dict[str, float]:
    """Where the variance of paired differences a - b lives (the input of a power
    statement): per-seed differences d_{c,s} paired by (category, seed).

    Returns:
        ``n_categories``, ``n_seeds`` (per category, the smallest), ``mean``,
        ``sd`` (between categories, of the seed-averaged differences, ddof 1) and
        ``seed_sd`` (within categories, pooled over them: sqrt of the mean of the
        categories' seed variances, ddof 1; NaN with one seed). A design with s
        seeds per category has a between-category sd of about
        sqrt(sd² + seed_sd² (1/s - 1/n_seeds)).
    """
    def runs(where: Mapping[str, object], column: str) -> pd.Series:
        part = select(rows, where)
        return part.groupby(["category", "seed"])[column].mean()

    d = (runs(a, metric) - runs(b, reference or metric)).dropna()
    by_category = d.groupby(level="category")
    means = by_category.mean()
    return {"n_categories": len(means),
            "n_seeds": int(by_category.size().min()) if len(means) else 0,
            "mean": float(means.mean()) if len(means) else np.nan,
            "sd": float(means.std(ddof=1)) if len(means) > 1 else np.nan,
            "seed_sd": float(np.sqrt(by_category.var(ddof=1).mean()))}


def detectable_gain(sd: float, n: float, *, alpha: float = 0.05,
                    power: float = 0.8) -> float:
    """The smallest mean paired difference that `n` categories detect with a
    two-sided test at `alpha` with `power`, for a between-category sd `sd` of the
    differences: (z_{1-α/2} + z_{power}) sd / sqrt(n) (statistics.md; a t-test's
    normal approximation, Wilcoxon's efficiency is >= 0.864 of it)."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd
                 / np.sqrt(n))


def categories_needed(sd: float, delta: float, *, alpha: float = 0.05,
                      power: float = 0.8) -> float:
    """The categories needed to detect a mean difference `delta` (the inverse of
    `detectable_gain`): ((z_{1-α/2} + z_{power}) sd / delta)², not rounded."""
    return float(((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd
                  / delta) ** 2)


def budgets(rows: pd.DataFrame, metric: str, *, regimes: Sequence[str] = ("iid",
                                                                         "recurring"),
            alpha: float = 0.05, n_resamples: int = 9999) -> dict[str, object]:
    """A budget ablation read with the category as the unit: what contamination
    costs each method at each budget, and whether a longer fit changes that cost.

    `rows` are ok results rows of trained methods at several ``steps`` and of
    methods that train nothing (``steps`` 0), clean and contaminated under
    `regimes`. Each trained method at each budget becomes its own method, named
    ``"<method> <steps> steps"``.

    Returns:
        A dict with ``trained`` (those names, shortest budget first), ``methods``
        (every name, the trained ones first), ``cost`` (`cost`'s rows:
        contaminated - clean by regime and noise ratio, in that order of methods),
        ``per_category`` (the per-category costs indexed by condition
        ``"<regime> <ratio>"``, method and category, column ``cost``) and
        ``longer`` (for each condition and each longer budget, the per-category
        change of the cost from the shortest budget, cost at k x minus cost at
        1 x, summarised by `compare`; negative: the longer fit costs more).
    """
    require_columns(rows, ["method", "steps", "regime", "noise_ratio", "category",
                          "seed", metric], "evidence.budgets")
    rows = rows.sort_values("steps", kind="stable")
    rows = rows.assign(method=rows["method"].where(
        rows["steps"] == 0, rows["method"] + " " + rows["steps"].astype(int).astype(str)
        + " steps"))
    named = list(dict.fromkeys(rows["method"]))
    trained = [m for m in named if m.endswith(" steps")]
    methods = trained + [m for m in named if m not in trained]
    rows = with_clean(rows, regimes).astype(
        {"method": pd.CategoricalDtype(methods, ordered=True)})
    per = {(f"{r} {n:g}", m): differences(rows, metric, {"method": m, "regime": r,
                                                         "noise_ratio": n},
                                          {"method": m, "regime": r,
                                           "noise_ratio": 0.0})
           for r, n in conditions(rows) for m in methods}
    per_category = pd.concat(per, names=["condition", "method"]).rename(
        "cost").to_frame()
    wide = per_category["cost"].unstack(level="method")   # (condition, category)
    longer = pd.DataFrame([
        {"condition": c, "budget": b, **compare(
            (wide.loc[c, b] - wide.loc[c, trained[0]]).dropna(), alpha=alpha,
            n_resamples=n_resamples)}
        for c in wide.index.unique(0) for b in trained[1:]
        if b in wide and trained[0] in wide]).reindex(
            columns=["condition", "budget", *COMPARE])
    return {"trained": trained, "methods": methods,
            "cost": cost(rows, metric, alpha=alpha, n_resamples=n_resamples),
            "per_category": per_category, "longer": longer}
