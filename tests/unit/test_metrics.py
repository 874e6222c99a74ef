"""Metrics against scikit-learn, the hand cases of data_and_metrics.md §3.6, and a slow
AUPRO reference written out below (threshold by threshold, image by image)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from fuadnb import metrics

# --------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------


def sk_f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return f1.max()


def slow_aupro(masks, maps, limit):
    """MVTec AD AUPRO by brute force: FPR and every region's overlap at every threshold.

    Regions are labelled image by image with 2-D 8-connectivity; the curve is
    integrated segment by segment up to `limit`.
    """
    regions = []
    for m, s in zip(masks, maps, strict=True):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [s[lab == r] for r in range(1, n + 1)]
    normal = maps[~masks]
    thr = np.unique(maps)[::-1]  # every distinct score, highest first
    fpr = (normal[None, :] >= thr[:, None]).mean(1)
    pro = np.mean([(reg[None, :] >= thr[:, None]).mean(1) for reg in regions], axis=0)
    x = np.concatenate([[0.0], fpr, [1.0]])
    y = np.concatenate([[0.0], pro, [1.0]])
    area = 0.0
    for x0, x1, y0, y1 in zip(x[:-1], x[1:], y[:-1], y[1:], strict=True):
        if x0 >= limit:
            break
        if x1 <= limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            y_lim = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += (limit - x0) * (y0 + y_lim) / 2
            break
    return area / limit


def smooth_case(seed, n=6, h=20, w=24, n_good=2, levels=None):
    """Smooth random maps with blob masks (several regions, good images included).

    With `levels`, maps are rounded to that many integer levels (many ties).
    """
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n, h, w)), sigma=(0, 2, 2))
    masks = field > np.quantile(field, 0.85)
    masks[:n_good] = False
    noise = ndimage.gaussian_filter(rng.standard_normal((n, h, w)), sigma=(0, 1.5, 1.5))
    maps = noise / noise.std() + 1.5 * masks + 0.3 * rng.standard_normal((n, h, w))
    if levels is not None:
        maps = np.round((maps - maps.min()) / np.ptp(maps) * (levels - 1))
    assert masks.any() and (~masks).any()
    return masks, maps


# --------------------------------------------------------------------------------------
# AUROC, AP, F1-max against scikit-learn
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_flat_metrics_equal_sklearn_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[:2] = [True, False]  # both classes
    s = rng.integers(0, int(rng.integers(2, 12)), n)  # integer scores: many ties
    assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.image_auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.average_precision(y, s) == pytest.approx(
        average_precision_score(y, s), abs=1e-12)
    assert metrics.f1_max(y, s) == pytest.approx(sk_f1_max(y, s), abs=1e-12)
    assert metrics.detection_auroc(y, s) == pytest.approx(roc_auc_score(y, s),
                                                          abs=1e-12)


@pytest.mark.parametrize("y,s", [([0, 1], [0.2, 0.7]), ([0, 1], [0.7, 0.2]),
                                 ([1, 0], [3, 3]), ([True, False], [-1.0, 5.0]),
                                 ([0, 1, 1], [1, 1, 0])])
def test_tiny_cases_equal_sklearn(y, s):
    assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-15)
    assert metrics.average_precision(y, s) == pytest.approx(
        average_precision_score(y, s), abs=1e-15)
    assert metrics.f1_max(y, s) == pytest.approx(sk_f1_max(y, s), abs=1e-15)


def test_every_metric_returns_a_python_float():
    y, s = [0, 1, 1, 0], [0.1, 0.9, 0.4, 0.4]
    for fn in (metrics.auroc, metrics.image_auroc, metrics.detection_auroc,
               metrics.average_precision, metrics.f1_max):
        assert type(fn(y, s)) is float, fn.__name__
    m, a = np.array(y)[None, None], np.array(s)[None, None]
    for fn in (metrics.pixel_auroc, metrics.pixel_ap, metrics.pixel_f1max,
               metrics.pixel_aupro):
        assert type(fn(m, a)) is float, fn.__name__


def test_tie_counts_half():
    assert metrics.auroc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_float32_scores_and_float_labels_equal_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(1000) < 0.2).astype(np.float64)
    s = rng.random(1000).astype(np.float32).round(2)
    assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.f1_max(y, s) == pytest.approx(sk_f1_max(y, s), abs=1e-12)


@pytest.mark.parametrize("quantised", [False, True])
def test_pixel_metrics_equal_sklearn_on_half_a_million_pixels(quantised):
    rng = np.random.default_rng(7)
    masks = np.zeros((8, 250, 250), bool)  # 0.5 M pixels, images 0-1 good
    for i in range(2, 8):
        r, c = rng.integers(20, 200, 2)
        masks[i, r:r + int(rng.integers(5, 50)), c:c + int(rng.integers(5, 50))] = True
    maps = (rng.random(masks.shape) + 0.4 * masks).astype(np.float32)
    if quantised:
        maps = np.round(maps * 50) / 50  # ~70 levels: ties between the classes
    y, s = masks.ravel(), maps.ravel()
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s),
                                                             abs=1e-12)
    assert metrics.pixel_ap(masks, maps) == pytest.approx(
        average_precision_score(y, s), abs=1e-12)
    assert metrics.pixel_f1max(masks, maps) == pytest.approx(sk_f1_max(y, s),
                                                             abs=1e-12)


# --------------------------------------------------------------------------------------
# The hand cases C1-C8 of data_and_metrics.md §3.6 (limit 0.3)
# --------------------------------------------------------------------------------------


def _case(name):
    if name == "C1":
        m = np.zeros((4, 4))
        m[1:3, 1:3] = 1
        return m[None], (m + 0.1 * np.arange(16).reshape(4, 4) / 16)[None]
    if name == "C2":
        m = np.zeros((4, 4))
        m[1:3, 1:3] = 1
        return m[None], (1 - m + 0.1 * np.arange(16).reshape(4, 4) / 16)[None]
    if name == "C3":
        m = np.zeros((1, 9))
        m[0, 0] = m[0, 8] = 1
        s = np.array([[1.0, *(0.5 + 0.01 * k for k in range(1, 8)), 0.0]])
        return m[None], s[None]
    if name == "C4":
        m = np.zeros((5, 10))
        m[0, 0] = 1  # region A, hit
        m[2:4] = 1  # region B, 20 px, missed
        s = 0.5 + 0.001 * np.arange(50).reshape(5, 10)
        s[0, 0], s[2:4] = 1.0, 0.0
        return m[None], s[None]
    if name == "C5":
        m = np.array([[1, 1, 1, 1, 0, 0, 0, 0]])
        return m[None], np.array([[0.9, 0.7, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2]])[None]
    if name == "C6":
        m = np.zeros((400, 7))
        m[:, 3] = 1
        return m[None], (np.arange(2800).reshape(400, 7) / 2800)[None]
    if name == "C7":
        m = np.zeros((2, 2, 5))
        m[0, 0, :2] = 1
        s = m.copy()
        s[1] = 2.0  # image B is good and hot everywhere
        return m, s
    if name == "C8":
        m = np.zeros((4, 4))
        m[0, 0] = 1
        return m[None], np.zeros((1, 4, 4))
    raise KeyError(name)


# id: (exact AUPRO, pixel AUROC, AP, F1-max, decimals of the table's last three)
HAND_CASES = {
    "C1": (1.0, 1.0, 1.0, 1.0, 6),
    "C2": (0.0, 0.0, 0.1674, 0.4, 4),
    "C3": (0.5, 0.5, 0.6111, 0.6667, 4),
    "C4": (0.5, 1 / 21, 0.4476, 0.5915, 4),
    "C5": (0.291667, 0.625, 0.709524, 8 / 11, 6),
    "C6": (0.15, 0.5, 0.1440, 0.2502, 4),
    "C7": (0.0, 0.4444, 0.1667, 0.2857, 4),
    "C8": (0.15, 0.5, None, None, 6),
}


@pytest.mark.parametrize("name", sorted(HAND_CASES))
def test_hand_cases(name):
    masks, maps = _case(name)
    aupro, auroc, ap, f1, decimals = HAND_CASES[name]
    tol = 0.6 * 10.0**-decimals
    assert metrics.pixel_aupro(masks, maps) == pytest.approx(aupro, abs=1e-6)
    assert metrics.pixel_aupro(masks, maps) == pytest.approx(
        slow_aupro(masks.astype(bool), maps, 0.3), abs=1e-12)
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(auroc, abs=tol)
    if ap is not None:
        assert metrics.pixel_ap(masks, maps) == pytest.approx(ap, abs=tol)
        assert metrics.pixel_f1max(masks, maps) == pytest.approx(f1, abs=tol)


def test_hand_case_full_range_and_other_limits():
    # C5 to FPR 1 is MemSeg's full-range number; C6 at 1/3 is the staircase: 133 full
    # rows of (3 normals at PRO i/400, 3 at (i+1)/400), then 2 of the 134th row.
    assert metrics.pixel_aupro(*_case("C5"), fpr_limit=1.0) == pytest.approx(0.625)
    c6 = (3 * 133**2 / (2400 * 400) + 2 / 2400 * 133 / 400) * 3
    assert metrics.pixel_aupro(*_case("C6"), fpr_limit=1 / 3) == pytest.approx(c6,
                                                                               abs=1e-12)
    assert metrics.pixel_aupro(*_case("C8"), fpr_limit=1.0) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------
# AUPRO against the slow reference; the partition prefilter is exact
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("limit", [0.05, 0.3, 0.77, 1.0])
def test_aupro_equals_slow_reference_on_smooth_maps(seed, limit):
    masks, maps = smooth_case(seed)
    assert np.unique(maps).size == maps.size  # no ties here
    assert metrics.pixel_aupro(masks, maps, limit) == pytest.approx(
        slow_aupro(masks, maps, limit), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_aupro_prefilter_exact_when_limit_splits_a_tie_group(seed):
    masks, maps = smooth_case(seed, levels=12)
    normal = np.sort(maps[~masks])[::-1]
    k = int(np.floor(0.3 * normal.size)) + 1
    t = normal[k - 1]  # the k-th largest normal score: the prefilter's threshold
    # the case must exercise ties across the partition boundary
    assert (normal > t).sum() < k - 1 and (normal >= t).sum() > k
    full = metrics._pro_curve(masks, maps, 0.3, prefilter=False)
    kept = metrics._pro_curve(masks, maps, 0.3)
    n = kept[0].size - 1  # the kept prefix, without its appended (1, 1)
    assert n < full[0].size - 1  # the prefilter did drop thresholds
    np.testing.assert_allclose(kept[0][:n], full[0][:n], rtol=0, atol=1e-15)
    np.testing.assert_allclose(kept[1][:n], full[1][:n], rtol=0, atol=1e-12)
    assert kept[0][n - 1] > 0.3  # ...and kept the first point beyond the limit
    expected = slow_aupro(masks, maps, 0.3)
    assert metrics.pixel_aupro(masks, maps) == pytest.approx(expected, abs=1e-9)
    assert metrics._area_to(*full, 0.3) / 0.3 == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("limit", [0.05, 0.3, 0.77])
def test_aupro_prefilter_keeps_exactly_up_to_the_first_point_beyond_the_limit(limit):
    masks, maps = smooth_case(1)  # no ties: one pixel per curve point
    full_fpr, full_pro = metrics._pro_curve(masks, maps, limit, prefilter=False)
    kept_fpr, kept_pro = metrics._pro_curve(masks, maps, limit)
    first_beyond = int(np.argmax(full_fpr > limit))
    assert kept_fpr.size == first_beyond + 2  # points 0..first_beyond, then (1, 1)
    np.testing.assert_allclose(kept_fpr[:-1], full_fpr[:first_beyond + 1], atol=1e-15)
    np.testing.assert_allclose(kept_pro[:-1], full_pro[:first_beyond + 1], atol=1e-12)


def test_aupro_falls_back_to_full_sort_when_the_prefilter_is_too_tight(monkeypatch):
    # Simulate a rounding error in k: k = floor(limit * n) keeps too few pixels (the
    # kept curve never passes the limit); the check must notice and sort everything.
    masks, maps = smooth_case(0)
    expected = slow_aupro(masks, maps, 0.3)
    monkeypatch.setattr(metrics, "math", SimpleNamespace(
        floor=lambda x: math.floor(x) - 1))
    fpr, _ = metrics._pro_curve(masks, maps, 0.3)
    assert fpr.size == np.unique(maps).size + 2  # the full curve
    assert metrics.pixel_aupro(masks, maps) == pytest.approx(expected, abs=1e-9)


def test_aupro_prefilter_matches_full_sort_on_half_a_million_pixels():
    masks, maps = smooth_case(11, n=8, h=250, w=250, n_good=2)
    maps = maps.astype(np.float32)
    for limit in (0.01, 0.3):
        kept = metrics._area_to(*metrics._pro_curve(masks, maps, limit), limit)
        full = metrics._area_to(
            *metrics._pro_curve(masks, maps, limit, prefilter=False), limit)
        assert kept == pytest.approx(full, abs=1e-12)


def test_aupro_full_range_is_the_whole_curve_area():
    masks, maps = smooth_case(5, levels=30)
    fpr, pro = metrics._pro_curve(masks, maps, 1.0, prefilter=False)
    assert metrics.pixel_aupro(masks, maps, fpr_limit=1.0) == pytest.approx(
        np.trapezoid(pro, fpr), abs=1e-12)


def test_aupro_invariant_to_monotone_transforms():
    masks, maps = smooth_case(2, levels=15)  # integer levels: transforms stay exact
    ref = metrics.pixel_aupro(masks, maps)
    assert metrics.pixel_aupro(masks, 3 * maps**3 - 7) == pytest.approx(ref, abs=1e-12)
    assert metrics.pixel_aupro(masks, maps.astype(np.int16)) == pytest.approx(ref,
                                                                             abs=1e-12)
    masks, maps = smooth_case(3)
    warped = np.exp(maps / 2)
    assert np.unique(warped).size == np.unique(maps).size  # no ties created
    assert metrics.pixel_aupro(masks, warped) == pytest.approx(
        metrics.pixel_aupro(masks, maps), abs=1e-12)


def test_aupro_uses_8_connectivity_within_images_only():
    # Image 0: a diagonal pair (one region with 8-connectivity), half detected, and a
    # lone detected pixel: PRO = (1/2 + 1)/2 (4-connectivity would give 2/3).
    m0 = np.zeros((4, 6), bool)
    m0[0, 0] = m0[1, 1] = m0[0, 5] = True
    s0 = np.full((4, 6), 0.5)
    s0[0, 0] = s0[0, 5] = 1.0
    s0[1, 1] = 0.0
    assert metrics.pixel_aupro(m0[None], s0[None]) == pytest.approx(0.75)
    # Two images with regions at the same place are two regions: PRO = (1 + 0)/2,
    # not 1/4 as one 4-pixel region would give.
    m = np.zeros((2, 4, 6), bool)
    m[0, 0, 0] = True
    m[1, 0, 0] = m[1, 0, 1] = m[1, 1, 0] = True
    s = np.full(m.shape, 0.5)
    s[0, 0, 0], s[1][m[1]] = 1.0, 0.0
    assert metrics.pixel_aupro(m, s) == pytest.approx(0.5)


def test_aupro_input_dtypes_agree():
    masks, maps = smooth_case(4)
    ref = metrics.pixel_aupro(masks, maps.astype(np.float32).astype(np.float64))
    assert metrics.pixel_aupro(masks.astype(np.uint8), maps.astype(np.float32)) == ref
    assert metrics.pixel_aupro(masks.tolist(), maps.astype(np.float32).tolist()) == ref


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_error_shapes_differ_names_both():
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        metrics.pixel_aupro(np.ones((2, 4, 4)), np.ones((2, 4, 5)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(4,\)"):
        metrics.auroc([0, 1, 1], [0.1, 0.2, 0.3, 0.4])


def test_error_masks_not_binary():
    m = np.zeros((1, 3, 3))
    m[0, 0, 0] = 2
    with pytest.raises(ValueError, match="binary"):
        metrics.pixel_auroc(m, np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="binary"):
        metrics.auroc([0, 0.5, 1], [1, 2, 3])


def test_error_non_finite_scores_counted():
    s = np.array([0.1, np.nan, np.inf, 0.3, np.nan])
    with pytest.raises(ValueError, match=r"3 non-finite.*2 NaN, 1 ±inf"):
        metrics.auroc([0, 1, 0, 1, 0], s)
    with pytest.raises(ValueError, match="1 non-finite"):
        metrics.pixel_aupro([[[0, 1]]], [[[0.0, -np.inf]]])


@pytest.mark.parametrize("y,which", [([0, 0, 0], "only negatives"),
                                     ([1, 1, 1], "only positives")])
def test_error_one_class_says_which(y, which):
    with pytest.raises(ValueError, match=which):
        metrics.auroc(y, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=which):
        metrics.pixel_aupro(np.array(y)[None, None], np.ones((1, 1, 3)))


def test_error_empty():
    with pytest.raises(ValueError, match="empty"):
        metrics.auroc([], [])
    with pytest.raises(ValueError, match="empty"):
        metrics.pixel_aupro(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))


def test_error_detection_auroc_on_clean_training_set():
    with pytest.raises(ValueError, match="clean.*undefined"):
        metrics.detection_auroc([False, False, False], [0.1, 0.5, 0.2])


def test_error_pixel_inputs_must_be_stacks_and_limit_in_range():
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metrics.pixel_aupro(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="fpr_limit"):
        metrics.pixel_aupro(np.eye(3)[None], np.eye(3)[None], fpr_limit=0.0)
    with pytest.raises(ValueError, match="fpr_limit"):
        metrics.pixel_aupro(np.eye(3)[None], np.eye(3)[None], fpr_limit=1.5)


def test_error_non_numeric_scores_and_torch_tensors():
    with pytest.raises(TypeError, match="real numbers"):
        metrics.auroc([0, 1], ["a", "b"])
    import torch
    with pytest.raises(TypeError, match=r"\.numpy\(\)"):
        metrics.auroc(torch.tensor([0, 1]), np.array([0.1, 0.2]))


def test_defect_contrast_by_hand():
    masks = np.zeros((2, 2, 2), bool)
    masks[0, 0, 0] = True                        # one defect pixel of four
    masks[1, :, 0] = True                        # half of the image
    maps = np.array([[[6.0, 1.0], [2.0, 3.0]],   # inside 6, outside mean 2 -> 3
                     [[1.0, 2.0], [1.0, 2.0]]])  # inside 1, outside 2 -> 0.5
    np.testing.assert_allclose(metrics.defect_contrast(masks, maps), [3.0, 0.5])
    np.testing.assert_allclose(metrics.defect_contrast(masks.astype(int), maps),
                               [3.0, 0.5])
    with pytest.raises(ValueError, match="both defect and normal"):
        metrics.defect_contrast(np.zeros((1, 2, 2), bool), maps[:1])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        metrics.defect_contrast(masks[0], maps[0])
