"""Figures: the right panels, marks and colour scales; mismatched inputs are one
clear error."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from fuadnb import plot  # noqa: E402

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_image_grid_frames_the_marked_images():
    fig = plot.image_grid(IMAGES, titles=list("abcde"),
                          marked=[False, True, False, False, True], ncols=3)
    axes = fig.axes
    assert len(axes) == 6                               # 2 rows x 3, one left blank
    assert [ax.title.get_text() for ax in axes[:5]] == [
        "a", "b\ninjected", "c", "d", "e\ninjected"]
    framed = [ax.spines["left"].get_visible() and ax.axison for ax in axes[:5]]
    assert framed == [False, True, False, False, True]
    np.testing.assert_array_equal(axes[1].images[0].get_array(),
                                  IMAGES[1].transpose(1, 2, 0))


def test_overlays_share_one_colour_scale_and_draw_masks():
    maps = {"clean": RNG.random((5, 16, 16)), "noisy": 3 * RNG.random((5, 16, 16))}
    masks = np.zeros((5, 16, 16), bool)
    masks[2, 4:8, 4:8] = True
    fig = plot.overlays(IMAGES, maps, list("abcde"), masks=masks)
    panels = fig.axes[:-1]                               # the last axes: colour bar
    assert len(panels) == 15
    heat = [im for ax in panels for im in ax.images if im.get_cmap().name == "jet"]
    assert len(heat) == 10
    assert {im.get_clim() for im in heat} == {(0, float(maps["noisy"].max()))}
    contoured = [i for i, ax in enumerate(panels) if ax.collections]
    assert contoured == [7, 12]                         # image 2 in both map rows
    assert panels[5].get_ylabel() == "clean"


def test_overlays_and_grid_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="one title and one map per image"):
        plot.overlays(IMAGES, {"m": RNG.random((4, 16, 16))}, list("abcde"))
    with pytest.raises(ValueError, match="at least one image"):
        plot.image_grid(IMAGES[:0])
    with pytest.raises(ValueError, match="non-empty group"):
        plot.score_hist({"a": np.array([])})


def test_score_hist_uses_shared_bins_and_counts_every_score():
    a, b = RNG.normal(0, 1, 40), RNG.normal(3, 1, 7)
    fig = plot.score_hist({"good": a, "bad": b}, bins=10)
    ax = fig.axes[0]
    heights = [sum(p.get_height() for p in c) for c in ax.containers]
    assert heights == [40, 7]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["good (40)",
                                                                   "bad (7)"]


def test_score_hist_density_skips_empty_groups():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot.score_hist({"a": RNG.normal(0, 1, 30), "none": np.array([]),
                               "b": RNG.normal(2, 1, 300)}, density=True, bins=8)
    ax = fig.axes[0]
    assert len(ax.containers) == 2
    for c in ax.containers:                  # each density integrates to one
        area = sum(p.get_height() * p.get_width() for p in c)
        assert abs(area - 1) < 1e-9


def test_metric_bars_and_loss_curves():
    table = pd.DataFrame({"noise_ratio": [0.0, 0.2], "image_auroc": [0.9, 0.8],
                          "pixel_auroc": [0.95, 0.93]})
    fig = plot.metric_bars(table, ["image_auroc", "pixel_auroc"])
    bars = fig.axes[0].containers
    assert [[round(p.get_height(), 2) for p in c] for c in bars] == [[0.9, 0.95],
                                                                      [0.8, 0.93]]
    fig = plot.loss_curves({"run": [3.0, 2.0, 1.5]})
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xydata(),
                                  [[1, 3.0], [2, 2.0], [3, 1.5]])


def test_patch_cells_draws_one_square_per_cell():
    fig = plot.patch_cells(IMAGES[:2], [[0, 15], [5]], grid=4, titles=["a", "b"])
    squares = [len(ax.patches) for ax in fig.axes[:2]]
    assert squares == [2, 1]
    first = fig.axes[0].patches[1]           # cell 15 = row 3, column 3 of 4 px cells
    assert first.get_xy() == (11.5, 11.5) and first.get_width() == 4
    with pytest.raises(ValueError, match="one list of cells per image"):
        plot.patch_cells(IMAGES[:2], [[0]], grid=4)


def test_budget_curves_rescale_each_loss_and_mark_the_steps():
    hist = pd.DataFrame({"method": ["rd"] * 4 + ["cdd"] * 3,
                         "record": [1, 2, 3, 4, 1, 2, 3],
                         "steps_per_record": [7] * 4 + [10] * 3,
                         "loss": [4.0, 2.0, 1.5, 1.0, 0.5, 0.2, 0.3]})
    fig = plot.budget_curves(hist, {"rd": {"flattened": 14, "budget": 28}})
    rd, cdd = fig.axes[:2]
    x, y = rd.lines[0].get_data()
    assert list(x) == [7, 14, 21, 28] and np.allclose(y, [1, 1 / 3, 1 / 6, 0])
    assert np.allclose(cdd.lines[0].get_data()[1], [1, -0.5, 0])
    assert [t.get_text() for t in rd.get_legend().get_texts()] == [
        "flattened (14)", "budget (28)"]


def test_critical_difference_draws_every_method_at_its_mean_rank():
    from fuadnb import evidence

    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(0, 0.02, (10, 4)) + [0.0, 0.01, 0.1, 0.11],
                         columns=["rd", "cdd", "softpatch", "patchcore"])
    test = evidence.friedman_nemenyi(table)
    fig = plot.critical_difference(test, title="overlap 0.2")
    texts = [t.get_text() for t in fig.axes[0].texts]
    for method, rank in test["mean_ranks"].items():
        assert any(method in t and f"{rank:.2f}" in t for t in texts), texts
    assert "10 categories" in fig.axes[0].get_title()
    plt.close(fig)


def test_recovery_strip_draws_each_category_and_keeps_extremes_on_the_edge():
    idx = pd.MultiIndex.from_product([["softpatch", "cdd"], ["a", "b", "c", "d"]],
                                     names=["method", "category"])
    per = pd.DataFrame({"recovery": [1.02, -0.29, 0.5, np.nan,
                                     1.03, -1.28, 0.2, 0.4],
                        "kind": ["texture", "object"] * 4}, index=idx)
    overall = pd.DataFrame({"recovery": [0.41, 0.1], "ci_low": [-0.2, -2.5],
                            "ci_high": [0.9, 0.8]}, index=["softpatch", "cdd"])
    fig = plot.recovery_strip(per, overall, limits=(-1.0, 1.5))
    ax = fig.axes[0]
    drawn = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
    assert len(drawn) == 7                      # the NaN category is not drawn
    assert drawn.min() == -1.0                  # -1.28 sits on the edge ...
    assert [t.get_text() for t in ax.texts] == ["-1.28"]   # ... with its value
    low, high = ax.get_xlim()
    assert -1.2 < low < -1.0 and 1.5 < high < 1.7   # the axis is not stretched
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["softpatch (3 of 4)", "cdd (4 of 4)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["texture",
                                                                   "object"]
    ticks = [line.get_xdata() for line in ax.lines if len(line.get_xdata()) == 2
             and line.get_linewidth() == 2]
    assert [round(float(t[0]), 2) for t in ticks] == [0.41, 0.1]
    plt.close(fig)


def test_cost_by_budget_draws_each_category_joins_a_methods_budgets_and_the_mean():
    columns = ["400", "1600", "6400", "patchcore"]
    idx = pd.MultiIndex.from_product([["iid 0.2", "recurring 0.2"], columns,
                                      ["a", "b", "c"]])
    cost = np.arange(len(idx), dtype=float) / 100 - 0.1
    per = pd.DataFrame({"cost": cost}, index=idx)
    fig = plot.cost_by_budget(per, joined=["400", "1600", "6400"])
    assert [ax.get_title() for ax in fig.axes] == ["iid 0.2", "recurring 0.2"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == columns
    dots = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(dots) == 12 and set(dots[:, 0]) == {0, 1, 2, 3}
    joined = [line for line in ax.lines if len(line.get_xdata()) == 3]
    assert len(joined) == 3                        # one line per category
    assert list(joined[0].get_xdata()) == [0, 1, 2]   # the bank is not joined
    means = [line.get_ydata()[0] for line in ax.lines if line.get_linewidth() == 2]
    assert np.allclose(means, cost[:12].reshape(4, 3).mean(1))
    plt.close(fig)
