"""Figures for the book: arrays and DataFrames in, a matplotlib Figure out.

Nothing here trains or loads a model. Images are uint8 ``(N, 3, H, W)`` tensors or
arrays (as `fuadnb.data.images.load` returns them), maps are ``(N, H, W)`` floats.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

MARK = "#d62728"      # injected / anomalous
CLEAN = "#1f77b4"     # clean / good
STYLE = {"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9,
         "axes.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False}


def use_book_style() -> None:
    """The book's matplotlib settings (small fonts, 100 dpi PNGs)."""
    mpl.rcParams.update(STYLE)


def _hwc(image) -> np.ndarray:
    """One uint8 (3, H, W) image as (H, W, 3) for imshow."""
    return np.asarray(image).transpose(1, 2, 0)


def _axes(n: int, ncols: int, size: float) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def image_grid(images, titles: Sequence[str] | None = None,
               marked: Sequence[bool] | None = None, *, ncols: int = 8,
               size: float = 1.5, mark_label: str = "injected") -> Figure:
    """A grid of images; `marked` ones get a red frame and a red title.

    Args:
        images: uint8 (N, 3, H, W).
        titles: one short caption per image.
        marked: (N,) bool, e.g. the injected anomalies of a training set.
    """
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    marked = np.zeros(n, bool) if marked is None else np.asarray(marked, bool)
    fig, axes = _axes(n, ncols, size)
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(_hwc(images[i]))
        title = titles[i] if titles is not None else ""
        if marked[i]:
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set(visible=True, color=MARK, linewidth=3)
            title = f"{title}\n{mark_label}" if title else mark_label
        ax.set_title(title, color=MARK if marked[i] else "black", fontsize=7)
    fig.tight_layout()
    return fig


def patch_cells(images, cells: Sequence[Sequence[int]], *, grid: int,
                titles: Sequence[str] | None = None, ncols: int = 8,
                size: float = 1.6, color: str = MARK) -> Figure:
    """Images with a square around given cells of their grid x grid patch grid
    (row-major indices): e.g. the patches of an image that entered a memory bank,
    or a test patch and the training patch it matched.

    Args:
        images: uint8 (N, 3, S, S); cells: N sequences of cell indices.
    """
    if len(cells) != len(images):
        raise ValueError(f"patch_cells needs one list of cells per image; got "
                         f"{len(images)} images and {len(cells)} lists")
    fig = image_grid(images, titles, ncols=ncols, size=size)
    step = np.asarray(images[0]).shape[-1] / grid
    for ax, found in zip(fig.axes, cells, strict=False):
        for c in np.asarray(found, int).ravel():
            r, k = divmod(int(c), grid)
            ax.add_patch(Rectangle((k * step - 0.5, r * step - 0.5), step, step,
                                   fill=False, color=color, linewidth=1.2))
    return fig


def overlays(images, maps: dict[str, np.ndarray], titles: Sequence[str], *,
             masks: np.ndarray | None = None, vmax: float | None = None,
             size: float = 1.6) -> Figure:
    """Images (top row) and, below, one row of anomaly maps over them per model.

    Args:
        images: uint8 (N, 3, H, W).
        maps: row label -> (N, H, W) maps; one colour scale for every row (0 to
            `vmax`, default the largest value shown).
        masks: (N, H, W) bool ground truth, drawn as a white contour on the maps.
    """
    n = len(images)
    if n == 0 or len(titles) != n or any(len(m) != n for m in maps.values()):
        raise ValueError(f"overlays needs one title and one map per image in every "
                         f"row; got {n} images, {len(titles)} titles, map rows of "
                         f"{[len(m) for m in maps.values()]}")
    vmax = max(float(np.max(m)) for m in maps.values()) if vmax is None else vmax
    rows = len(maps) + 1
    fig, axes = plt.subplots(rows, n, figsize=(size * n + 0.8, size * rows + 0.3),
                             squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_hwc(images[i]))
        axes[0, i].set_title(titles[i], fontsize=7)
        for r, amap in enumerate(maps.values(), 1):
            axes[r, i].imshow(_hwc(images[i]))
            shown = axes[r, i].imshow(amap[i], cmap="jet", alpha=0.5, vmin=0,
                                      vmax=vmax)
            if masks is not None and masks[i].any():
                axes[r, i].contour(masks[i], levels=[0.5], colors="white",
                                   linewidths=0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    for r, label in enumerate(maps, 1):
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.colorbar(shown, ax=axes[1:, :].ravel().tolist(), fraction=0.02, pad=0.01,
                 label="anomaly map")
    return fig


def loss_curves(histories: dict[str, Sequence[float]], *,
                ylabel: str = "training loss") -> Figure:
    """One line per run: the mean training loss of every epoch."""
    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    for name, values in histories.items():
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=name)
    ax.set(xlabel="epoch", ylabel=ylabel)
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def budget_curves(histories, marks: dict[str, dict[str, float]]) -> Figure:
    """The measurement behind the demo budgets: each method's training loss against
    optimiser steps, rescaled to run from 1 (its first record) to 0 (its last), with
    vertical marks per method (e.g. ``{"rd": {"flattened": 350, "budget": 400}}``).

    Args:
        histories: one row per (method, record) with ``loss`` and
            ``steps_per_record`` (`benchmarks/budget_histories.py`).
    """
    methods = list(dict.fromkeys(histories["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(2.3 * len(methods) + 0.4, 2.4),
                             sharey=True, squeeze=False)
    styles = {"flattened": ("grey", ":"), "budget": (MARK, "--")}
    for ax, method in zip(axes[0], methods, strict=True):
        h = histories[histories["method"] == method]
        loss = h["loss"].to_numpy(float)
        scaled = (loss - loss[-1]) / (loss[0] - loss[-1])
        ax.plot(h["record"].to_numpy() * h["steps_per_record"].to_numpy(), scaled,
                color=CLEAN, linewidth=1)
        for name, step in marks.get(method, {}).items():
            colour, style = styles.get(name, ("black", "-"))
            ax.axvline(step, color=colour, linestyle=style, linewidth=1,
                       label=f"{name} ({step:.0f})")
        ax.set(title=method, xlabel="optimiser step")
        if marks.get(method):
            ax.legend(frameon=False, fontsize=6, loc="upper right")
    axes[0, 0].set(ylabel="loss, first = 1, last = 0")
    fig.tight_layout()
    return fig


def score_hist(groups: dict[str, np.ndarray], *, title: str = "",
               xlabel: str = "image score (max of the map)", bins: int = 20,
               colors: Sequence[str] | None = None, ylabel: str = "images",
               density: bool = False, ax=None) -> Figure:
    """Overlaid histograms of scores, one per named group (same bins; `density`:
    each group's histogram integrates to 1, for groups of very different sizes)."""
    values = [np.asarray(v, float) for v in groups.values()]
    if not values or not any(len(v) for v in values):
        raise ValueError("score_hist needs at least one non-empty group")
    edges = np.histogram_bin_edges(np.concatenate(values), bins=bins)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 2.6))
    colors = list(colors or [CLEAN, MARK, "#2ca02c", "#9467bd"])
    for (name, v), color in zip(groups.items(), colors, strict=False):
        if not len(v):          # an empty group (e.g. no injected image here)
            continue
        ax.hist(v, bins=edges, alpha=0.6, color=color, label=f"{name} ({len(v)})",
                density=density)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(frameon=False, fontsize=7)
    ax.figure.tight_layout()
    return ax.figure


def metric_bars(table, metrics: Sequence[str], *, by: str = "noise_ratio",
                ylim: tuple[float, float] = (0.5, 1.0)) -> Figure:
    """Grouped bars: one group per metric, one bar per value of `by`.

    Args:
        table: a DataFrame with one row per value of `by` and the `metrics` columns.
    """
    fig, ax = plt.subplots(figsize=(1.3 * len(metrics) + 1.5, 2.6))
    width = 0.8 / max(len(table), 1)
    x = np.arange(len(metrics))
    for k, (_, row) in enumerate(table.iterrows()):
        heights = [row[m] for m in metrics]
        label = row[by] if isinstance(row[by], str) else f"{by} {row[by]:g}"
        bars = ax.bar(x + (k - (len(table) - 1) / 2) * width, heights, width,
                      label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=1)
    ax.set_xticks(x, [m.replace("_", " ") for m in metrics])
    ax.set(ylim=ylim, ylabel="score")
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def noise_curves(rows, metrics: Sequence[str], *, hue: str = "method",
                 size: float = 2.8) -> Figure:
    """Each metric against the noise ratio, one line per `hue` value (seaborn).

    Args:
        rows: one row per (hue, noise_ratio, seed) after any averaging over
            categories (`fuadnb.evaluate.per_seed`); the line is the mean over
            seeds and the band their standard deviation.
    """
    import seaborn as sns

    fig, axes = plt.subplots(1, len(metrics), figsize=(size * len(metrics) + 1.2,
                                                       size), squeeze=False)
    for k, (ax, metric) in enumerate(zip(axes[0], metrics, strict=True)):
        sns.lineplot(data=rows, x="noise_ratio", y=metric, hue=hue, style=hue,
                     markers=True, dashes=False, errorbar="sd", ax=ax,
                     legend=k == len(metrics) - 1)
        ax.set(xlabel="noise ratio", ylabel="", title=metric.replace("_", " "),
               xticks=sorted(rows["noise_ratio"].unique()))
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1),
                        frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def recovery_strip(per_category, overall=None, *, kind: str = "kind",
                   limits: tuple[float, float] = (-1.0, 1.5), title: str = ""
                   ) -> Figure:
    """Each method's recovery of the baseline's damage on every category: one row
    per method, one dot per category coloured by its `kind` column (e.g. texture /
    object), and, from `overall` (indexed by method: ``recovery``, ``ci_low``,
    ``ci_high``, e.g. `fuadnb.evidence.recovery_overall` rows), the ratio of means
    as a black tick with its interval. `per_category` is indexed by (method,
    category) with ``recovery`` (NaN where the damage is under the floor: counted in
    the row's label, not drawn). A dot beyond `limits` is drawn on the edge as a
    triangle with its value, so one extreme category cannot stretch the axis for
    all the others; 0 (solid): no better than the contaminated baseline, 1
    (dashed): as good as the clean one."""
    methods = list(dict.fromkeys(per_category.index.get_level_values(0)))
    kinds = list(dict.fromkeys(per_category[kind])) if kind in per_category else []
    colours = dict(zip(kinds, plt.get_cmap("tab10").colors, strict=False))
    low, high = limits
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.42 * len(methods)))
    rng = np.random.default_rng(0)   # the same jitter on every build
    labels = []
    for i, method in enumerate(methods):
        part = per_category.xs(method, level=0)
        shown = part.dropna(subset=["recovery"])
        labels.append(f"{method} ({len(shown)} of {len(part)})")
        y = i + rng.uniform(-0.18, 0.18, len(shown))
        x = shown["recovery"].to_numpy(float)
        names = shown[kind].to_numpy() if kinds else np.full(len(shown), None)
        for name in kinds or [None]:
            for marker, pick in (("o", (x >= low) & (x <= high)), ("<", x < low),
                                 (">", x > high)):
                pick = pick & (names == name)
                if pick.any():
                    ax.scatter(np.clip(x[pick], low, high), y[pick], s=16,
                               marker=marker, color=colours.get(name, CLEAN),
                               alpha=0.75, linewidths=0)
        for value, y_at in zip(x, y, strict=True):
            if value < low or value > high:
                ax.annotate(f"{value:.2f}", (np.clip(value, low, high), y_at),
                            xytext=(4 if value < low else -4, 0),
                            textcoords="offset points", fontsize=6, va="center",
                            ha="left" if value < low else "right", color="grey")
        if overall is not None and method in overall.index:
            r = overall.loc[method]
            if np.isfinite(r["recovery"]):
                ax.plot([np.clip(r["recovery"], low, high)] * 2, [i - 0.3, i + 0.3],
                        color="black", linewidth=2)
            if np.isfinite(r["ci_low"]) and np.isfinite(r["ci_high"]):
                ax.plot(np.clip([r["ci_low"], r["ci_high"]], low, high), [i, i],
                        color="black", linewidth=1)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axvline(1, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_yticks(range(len(methods)), labels, fontsize=7)
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.set(xlabel="share of the baseline's damage recovered, per category",
           title=title)
    if kinds:
        ax.legend(handles=[Line2D([], [], marker="o", linestyle="", color=colours[k],
                                  label=str(k)) for k in kinds],
                  frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def cost_by_budget(per_category, *, joined: Sequence[str] = (), title: str = ""
                   ) -> Figure:
    """What contamination costs (contaminated - clean, per category) at each budget:
    one panel per condition (`per_category`'s index level 0, e.g. "iid 0.2"), one
    column per budget or method (level 1, in the order given), one dot per category
    (level 2) from the ``cost`` column, and the mean over categories as a black
    tick. A category's dots at the positions named in `joined` (the budgets of one
    method) are joined by a thin line, so a cost that grows with the budget shows as
    lines that fall; 0 (solid): contamination cost nothing on that category."""
    panels = list(dict.fromkeys(per_category.index.get_level_values(0)))
    columns = list(dict.fromkeys(per_category.index.get_level_values(1)))
    fig, axes = plt.subplots(1, len(panels), sharey=True, squeeze=False,
                             figsize=(min(6.4, 0.6 + 3.0 * len(panels)), 2.8))
    for ax, panel in zip(axes[0], panels, strict=True):
        part = per_category.xs(panel, level=0)["cost"]
        wide = part.unstack(level=0).reindex(columns=columns)   # category x column
        at = [columns.index(c) for c in joined if c in wide]
        if len(at) > 1:
            for _, row in wide.iterrows():
                ax.plot(at, row.iloc[at].to_numpy(float), color="grey",
                        linewidth=0.6, alpha=0.6)
        for x, column in enumerate(columns):
            values = wide[column].dropna().to_numpy(float)
            ax.scatter(np.full(len(values), x), values, s=14, color=CLEAN,
                       alpha=0.75, linewidths=0, zorder=3)
            if len(values):
                ax.plot([x - 0.25, x + 0.25], [values.mean()] * 2, color="black",
                        linewidth=2, zorder=4)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(columns)), columns, fontsize=7, rotation=30,
                      ha="right")
        ax.set_xlim(-0.5, len(columns) - 0.5)
        ax.set_title(str(panel))
    axes[0][0].set_ylabel("contaminated - clean\n(image AUROC, per category)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

def critical_difference(test: dict, *, title: str = "", alpha: float = 0.05
                        ) -> Figure:
    """The critical-difference diagram (Demšar 2006) of one Friedman + Nemenyi
    result (`fuadnb.evidence.friedman_nemenyi`), drawn by scikit-posthocs: the mean
    rank of each method over the categories (1 = best) on one axis, methods joined
    by a bar where Nemenyi's test at `alpha` does not separate them; the title
    gives the categories, Friedman's p and the critical difference."""
    import scikit_posthocs

    ranks = test["mean_ranks"]
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.22 * len(ranks)))
    scikit_posthocs.critical_difference_diagram(
        ranks, test["nemenyi"].loc[ranks.index, ranks.index], alpha=alpha, ax=ax,
        label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": 8})
    ax.set_title((f"{title}: " if title else "")
                 + f"{test['n_categories']} categories, Friedman p "
                 f"{test['p']:.2g}, CD {test['cd']:.2f}", fontsize=9)
    fig.tight_layout()
    return fig


def learning_bias(curve, *, title: str = "") -> Figure:
    """The learning-bias curve of one fit (`fuadnb.experiment.Curve` records): the
    contamination-detection AUROC of the training scores and the test image AUROC
    (overall, and on the seen / unseen test anomalies where the regime has them)
    against optimiser steps. Chance (0.5) is dotted."""
    df = pd.DataFrame(curve)
    lines = {"detection_auroc": ("injected training images ranked first", MARK, "-"),
             "image_auroc": ("test: all anomalies", CLEAN, "-"),
             "image_auroc_seen": ("test: seen anomalies", "#2ca02c", "--"),
             "image_auroc_unseen": ("test: unseen anomalies", "#9467bd", ":")}
    fig, ax = plt.subplots(figsize=(5.2, 2.7))
    for column, (label, color, style) in lines.items():
        if column in df and df[column].notna().any():
            ax.plot(df["step"], df[column], style, marker=".", color=color,
                    label=label)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set(xlabel="optimiser step", ylabel="AUROC", ylim=(0, 1.02), title=title)
    ax.legend(frameon=False, fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
