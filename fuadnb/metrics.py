"""Evaluation metrics: image/pixel AUROC, AP, F1-max and the exact MVTec AD AUPRO.

Arrays in, unrounded Python floats out; one implementation for every method. Only
numpy and scipy are used, so scikit-learn can serve as an independent test oracle.

Definitions and where they come from (details: reference/data_and_metrics.md §3):

- **AUROC** (image and pixel level, contamination detection): the area under the ROC
  curve with ties counted ½, i.e. ``sklearn.metrics.roc_auc_score`` (scikit-learn
  1.9.1 ``_binary_clf_curve`` + trapezoid over the tie-merged curve).
- **Pixel AUROC** pools every pixel of every test image, good images included
  (SoftPatch ``metrics.py`` L47-55; RD4AD ``test.py`` L89-105).
- **AP**: ``sklearn.metrics.average_precision_score``, the step sum
  ``Σ_n (R_n - R_{n-1}) P_n`` over tie-merged thresholds, *not* the trapezoid
  ``auc(recall, precision)`` used by spot-diff.
- **F1-max**: ``max 2PR / (P + R)`` over the thresholds of
  ``sklearn.metrics.precision_recall_curve`` (ADer-style code, LLBNAD).
- **AUPRO**: the MVTec AD definition (Bergmann et al., IJCV 2021; official evaluation
  code ``pro_curve_util.compute_pro`` + ``generic_util.trapezoid``, numerically equal
  to anomalib >= 2.3 ``metrics/aupro.py`` L191-317 @ b7233686). FPR is taken over all
  normal pixels of all images (good images included); PRO is the mean, over every
  8-connected ground-truth component of every image, of the component's detected
  fraction; every distinct score is a threshold (ties merged into one step); the
  curve starts at (0, 0) and ends at (1, 1); trapezoid integration up to
  ``fpr_limit`` with linear interpolation there, divided by ``fpr_limit``.

Deliberate deviations from the reference code:

- FPR and PRO accumulate in float64 (the MVTec code casts FPR to float32); results
  agree to about 1e-7.
- AUPRO sorts only the pixels that can influence the curve up to ``fpr_limit`` (see
  ``_pro_curve``); the value is identical to a full sort.
- Torch tensors are refused rather than converted silently; callers convert with
  ``.detach().cpu().numpy()``.

Explained in: book/chapters/02_reverse_distillation
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "auroc",
    "average_precision",
    "detection_auroc",
    "f1_max",
    "image_auroc",
    "pixel_ap",
    "pixel_aupro",
    "pixel_auroc",
    "pixel_f1max",
]

# 8-connectivity inside each image, none across images of the (N, H, W) stack: the
# same components as scipy.ndimage.label(mask, np.ones((3, 3))) run image by image.
_STACKED_8_CONNECTIVITY = np.zeros((3, 3, 3), dtype=bool)
_STACKED_8_CONNECTIVITY[1] = True


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def _as_array(x: Any, name: str) -> np.ndarray:
    """``np.asarray(x)``, refusing torch tensors (device and grad stay explicit)."""
    if type(x).__module__.split(".")[0] == "torch":
        raise TypeError(f"{name} is a torch tensor; metrics take numpy arrays: pass "
                        f"{name}.detach().cpu().numpy()")
    return np.asarray(x)


def _binary(y: np.ndarray, name: str) -> np.ndarray:
    """Check that `y` holds only 0/1 (or bool) and return it as bool."""
    if y.dtype == bool:
        return y
    if y.dtype.kind not in "iuf" or not np.all((y == 0) | (y == 1)):
        found = np.unique(y)[:5] if y.dtype.kind in "iuf" else y.dtype
        raise ValueError(f"{name} must be binary (bool or 0/1); found {found}")
    return y != 0


def _real_finite(s: np.ndarray, name: str) -> np.ndarray:
    """Check that `s` is real-valued and finite; bool is viewed as uint8."""
    if s.dtype == bool:
        return s.view(np.uint8)
    if s.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got dtype {s.dtype}")
    if s.dtype.kind == "f":
        n_bad = s.size - np.count_nonzero(np.isfinite(s))
        if n_bad:
            n_nan = np.count_nonzero(np.isnan(s))
            raise ValueError(f"{name} contain {n_bad} non-finite value(s) "
                             f"({n_nan} NaN, {n_bad - n_nan} ±inf) out of {s.size}")
    return s


def _check(labels: Any, scores: Any, names: tuple[str, str], metric: str,
           pixel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (labels, scores) pair; return (bool labels, real scores), same shape.

    Raises:
        ValueError: shapes differ, input is empty, labels are not binary, scores
            contain NaN/inf, or only one class is present.
    """
    y, s = _as_array(labels, names[0]), _as_array(scores, names[1])
    if y.shape != s.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape; got "
                         f"{names[0]} {y.shape} and {names[1]} {s.shape}")
    if pixel and y.ndim != 3:
        raise ValueError(f"{names[0]} and {names[1]} must be (N, H, W) stacks; got "
                         f"shape {y.shape} (pass a single image as m[None])")
    if y.size == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty; {metric} needs data")
    y = _binary(y, names[0])
    s = _real_finite(s, names[1])
    n_pos = np.count_nonzero(y)
    if n_pos == 0 or n_pos == y.size:
        which = "positives (1)" if n_pos else "negatives (0)"
        raise ValueError(f"{names[0]} contain only {which}: {metric} is undefined "
                         "unless both classes are present")
    return y, s


# --------------------------------------------------------------------------------------
# The one tie-merged curve
# --------------------------------------------------------------------------------------


def _merge_descending(neg: np.ndarray,
                      pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge two ascending score arrays into one descending order with tie groups.

    Sorting each class with ``np.sort`` and merging the two runs is several times faster
    than one ``argsort`` of everything: the stable sort (timsort) finds the two runs and
    merges them in O(n).

    Args:
        neg: (n0,) scores of the negatives, sorted ascending.
        pos: (n1,) scores of the positives, sorted ascending, same dtype.

    Returns:
        order: (n0 + n1,) indices into ``concatenate([neg, pos])`` by descending score;
            ``order >= n0`` marks the positives.
        ends: (g,) position in `order` of the last element of each tie group, so that a
            cumulative sum read at `ends` counts every element scoring >= that group's
            score: one curve point per distinct score, ties merged.
    """
    merged = np.concatenate([neg, pos])
    order = np.argsort(merged, kind="stable")[::-1]
    s = merged[order]
    del merged
    ends = np.flatnonzero(s[1:] != s[:-1])
    return order, np.append(ends, s.size - 1)


def _clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True- and false-positive counts at every distinct threshold, highest first.

    The point for threshold t counts the samples with score >= t, as scikit-learn's
    ``_binary_clf_curve`` does.

    Args:
        y: (n,) bool labels.
        s: (n,) real scores.

    Returns:
        tps, fps: (g,) int64 cumulative counts, one entry per distinct score.
    """
    neg = s[~y]
    neg.sort()
    pos = s[y]
    pos.sort()
    order, ends = _merge_descending(neg, pos)
    is_pos = order >= neg.size
    del order, neg, pos
    tps = np.cumsum(is_pos, dtype=np.int64)[ends]
    fps = ends + 1 - tps  # reuses the count of samples above: (ends + 1) = tps + fps
    return tps, fps


def _auroc_from_curve(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoid area under the tie-merged ROC curve (a tie group is a diagonal step).

    In integers the area is exact: Σ Δfps·(tps_i + tps_{i-1}) ≤ 2·P·N, which fits in
    int64 for any n < 2**32 samples (P·N ≤ n²/4).
    """
    n_pos, n_neg = int(tps[-1]), int(fps[-1])
    dfps = np.diff(fps, prepend=0)
    heights = tps + np.concatenate([[0], tps[:-1]])
    if n_pos * n_neg < 2**62:
        twice_area = int(np.dot(dfps, heights))
    else:
        twice_area = float(np.dot(dfps.astype(np.float64), heights.astype(np.float64)))
    return twice_area / (2 * n_pos * n_neg)


def _ap_from_curve(tps: np.ndarray, fps: np.ndarray) -> float:
    """scikit-learn's step AP: Σ (R_n - R_{n-1}) P_n, thresholds high to low."""
    precision = tps / (tps + fps)
    drecall = np.diff(tps, prepend=0) / tps[-1]
    return float(np.dot(drecall, precision))


def _f1max_from_curve(tps: np.ndarray, fps: np.ndarray) -> float:
    """Max of 2PR / (P + R) over the thresholds of ``precision_recall_curve``.

    With P = tp/(tp+fp) and R = tp/n_pos, 2PR/(P+R) = 2tp/(tp + fp + n_pos) when
    tp > 0, and the 0/0 case (tp = 0, F1 taken as 0) also gives 0 here; the
    denominator is never 0 because n_pos > 0. sklearn's extra point (P=1, R=0) has
    F1 = 0 and cannot be the maximum.
    """
    return float(np.max(2 * tps / (tps + fps + tps[-1])))


# --------------------------------------------------------------------------------------
# Image-level (or any flat) metrics
# --------------------------------------------------------------------------------------


def auroc(labels: Any, scores: Any) -> float:
    """Exact, tie-aware area under the ROC curve (= ``sklearn.roc_auc_score``).

    Args:
        labels: (n,) bool or 0/1; 1 = anomalous (positive). Any shape equal to `scores`.
        scores: (n,) real scores, higher = more anomalous.

    Returns:
        AUROC in [0, 1]; a tie between a positive and a negative counts ½.

    Raises:
        ValueError: see the module's input checks (shape, empty, binary, NaN/inf,
            one class only).

    Example:
        >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75

    Explained in: book/chapters/02_reverse_distillation
    """
    y, s = _check(labels, scores, ("labels", "scores"), "AUROC")
    return _auroc_from_curve(*_clf_curve(y.ravel(), s.ravel()))


def image_auroc(labels: Any, scores: Any) -> float:
    """Image-level AUROC from image labels (N,) and image scores (N,).

    Explained in: book/chapters/02_reverse_distillation
    """
    y, s = _check(labels, scores, ("image labels", "image scores"), "image AUROC")
    return _auroc_from_curve(*_clf_curve(y.ravel(), s.ravel()))


def detection_auroc(is_injected: Any, train_scores: Any) -> float:
    """Contamination-detection AUROC: do training scores rank injected images first?

    Args:
        is_injected: (M,) bool, the training images that are injected anomalies.
        train_scores: (M,) the model's anomaly scores of the training images.

    Returns:
        AUROC of `train_scores` against `is_injected`.

    Raises:
        ValueError: no training image is injected (a clean training set, where the
            metric is undefined), every image is injected, or the usual input errors.

    Explained in: book/chapters/01_contamination
    """
    y = _binary(_as_array(is_injected, "is_injected"), "is_injected")
    if y.size and not y.any():
        raise ValueError("is_injected has no injected image: the training set is "
                         "clean, so the contamination-detection AUROC is undefined")
    y, s = _check(y, train_scores, ("is_injected", "train_scores"), "detection AUROC")
    return _auroc_from_curve(*_clf_curve(y.ravel(), s.ravel()))


def average_precision(labels: Any, scores: Any) -> float:
    """Average precision, the step sum ``Σ (R_n - R_{n-1}) P_n`` of scikit-learn.

    Args:
        labels: (n,) bool or 0/1, 1 = anomalous.
        scores: (n,) real scores, higher = more anomalous.

    Returns:
        AP in [0, 1] (step rule over tie-merged thresholds, no interpolation).

    Explained in: book/chapters/02_reverse_distillation
    """
    y, s = _check(labels, scores, ("labels", "scores"), "AP")
    return _ap_from_curve(*_clf_curve(y.ravel(), s.ravel()))


def f1_max(labels: Any, scores: Any) -> float:
    """Best F1 over all thresholds of ``sklearn.precision_recall_curve``.

    Args:
        labels: (n,) bool or 0/1, 1 = anomalous.
        scores: (n,) real scores, higher = more anomalous.

    Returns:
        ``max 2PR / (P + R)`` with 0/0 taken as 0.

    Explained in: book/chapters/02_reverse_distillation
    """
    y, s = _check(labels, scores, ("labels", "scores"), "F1-max")
    return _f1max_from_curve(*_clf_curve(y.ravel(), s.ravel()))


# --------------------------------------------------------------------------------------
# Pixel-level metrics
# --------------------------------------------------------------------------------------


def _pixel_curve(masks: Any, maps: Any, metric: str) -> tuple[np.ndarray, np.ndarray]:
    y, s = _check(masks, maps, ("masks", "maps"), metric, pixel=True)
    return _clf_curve(y.reshape(-1), s.reshape(-1))


def pixel_auroc(masks: Any, maps: Any) -> float:
    """AUROC over all pixels of all images pooled, good images included.

    Args:
        masks: (N, H, W) bool or 0/1 ground truth, 1 = anomalous pixel.
        maps: (N, H, W) real anomaly maps (float32 is fine; not copied to float64).

    Returns:
        ``roc_auc_score(masks.ravel(), maps.ravel())``.

    Explained in: book/chapters/02_reverse_distillation
    """
    return _auroc_from_curve(*_pixel_curve(masks, maps, "pixel AUROC"))


def pixel_ap(masks: Any, maps: Any) -> float:
    """Average precision over all pixels pooled (see `average_precision`).

    Explained in: book/chapters/02_reverse_distillation
    """
    return _ap_from_curve(*_pixel_curve(masks, maps, "pixel AP"))


def pixel_f1max(masks: Any, maps: Any) -> float:
    """F1-max over all pixels pooled (see `f1_max`).

    Explained in: book/chapters/02_reverse_distillation
    """
    return _f1max_from_curve(*_pixel_curve(masks, maps, "pixel F1-max"))


def _pro_curve(masks: np.ndarray, maps: np.ndarray, fpr_limit: float,
               prefilter: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The exact MVTec AD PRO curve, or the part of it that matters up to `fpr_limit`.

    Every pixel gets a weight: a normal pixel adds 1 to the false-positive count
    (FPR = count / n_normal), a pixel of a ground-truth component of size s adds
    1 / (R·s) to PRO, with R the number of components in all images. Sorting all
    pixels by descending score and summing the weights, read at the last pixel of each
    tie group, gives one (FPR, PRO) point per distinct score.

    Why the prefilter is exact. Let n = n_normal, k = floor(fpr_limit·n) + 1 (<= n
    when fpr_limit < 1) and t the k-th largest normal score. Keep exactly the pixels
    with score >= t, normal or anomalous. (1) Every tie group with score v >= t is
    kept whole, and the point of group v sums the weights of all pixels scoring >= v,
    all of which are kept: the kept points are exactly the full curve's points for
    scores >= t, in the same order, with the same values (region sizes, R and n are
    counted on all pixels, never on the kept ones). (2) At least k normal pixels score
    >= t, so the point of group t has FPR >= k/n > fpr_limit, whether t is tied or
    not. (3) Points of scores < t come later on the curve. The integral up to
    fpr_limit uses the points with FPR <= fpr_limit plus the first point beyond it
    (for the interpolation); by (2) that first point is at or before group t, so by
    (1) every point used is kept. A floating-point rounding in (2) would only show up
    as a kept curve that never passes fpr_limit; that is checked, and the full sort is
    used in that case.

    Args:
        masks: (N, H, W) bool.
        maps: (N, H, W) real, finite.
        fpr_limit: in (0, 1].
        prefilter: False forces the full sort (used by the tests).

    Returns:
        fpr, pro: float64 curve from (0, 0) to (1, 1), nondecreasing in both.
    """
    regions, n_regions = ndimage.label(masks, structure=_STACKED_8_CONNECTIVITY)
    regions = regions.reshape(-1)  # (N·H·W,) int32, 0 = normal pixel
    scores = maps.reshape(-1)
    is_anom = masks.reshape(-1)
    anom_region = regions[is_anom]
    anom_scores = scores[is_anom]
    del regions
    sizes = np.bincount(anom_region, minlength=n_regions + 1)
    pro_weight = np.zeros(n_regions + 1)  # weight 0 for label 0 is never read
    pro_weight[1:] = 1.0 / (n_regions * sizes[1:].astype(np.float64))

    normal_scores = scores[~is_anom]  # a copy in the maps' own dtype
    n_normal = normal_scores.size
    k = math.floor(fpr_limit * n_normal) + 1
    filtered = prefilter and k <= n_normal
    if filtered:
        kth = n_normal - k  # ascending position of the k-th largest
        normal_scores.partition(kth)  # O(n), in place on our copy
        t = normal_scores[kth]
        normal_scores = normal_scores[normal_scores >= t]  # ties of t may sit below kth
        keep = anom_scores >= t
        anom_scores, anom_region = anom_scores[keep], anom_region[keep]
    normal_scores.sort()
    a_order = np.argsort(anom_scores)
    order, ends = _merge_descending(normal_scores, anom_scores[a_order])
    n_kept_normal = normal_scores.size
    weights = np.concatenate([np.zeros(n_kept_normal),
                              pro_weight[anom_region[a_order]]])
    del normal_scores, anom_scores, anom_region, a_order
    false_pos = np.cumsum(order < n_kept_normal, dtype=np.int64)[ends]
    pro = np.cumsum(weights[order])[ends]
    del order, weights
    fpr = false_pos / n_normal
    np.minimum(pro, 1.0, out=pro)  # cumulative-sum rounding may exceed 1 by an ulp
    if filtered and fpr[-1] <= fpr_limit:
        return _pro_curve(masks, maps, fpr_limit, prefilter=False)
    return np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], pro, [1.0]])


def _area_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under (x, y) on [x[0], x_max], interpolating linearly at x_max.

    Same result as the MVTec AD ``generic_util.trapezoid(x, y, x_max)``; `x` must be
    nondecreasing, start at or before `x_max` and end at or after it.
    """
    ins = int(np.searchsorted(x, x_max, side="right"))  # first x > x_max
    area = float(np.sum(0.5 * (y[1:ins] + y[:ins - 1]) * np.diff(x[:ins])))
    if ins < x.size and x[ins - 1] < x_max:
        x0, x1, y0, y1 = x[ins - 1], x[ins], y[ins - 1], y[ins]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += float(0.5 * (y0 + y_at) * (x_max - x0))
    return area


def pixel_aupro(masks: Any, maps: Any, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to `fpr_limit` (MVTec AD).

    Args:
        masks: (N, H, W) bool or 0/1 ground truth of all test images, good ones
            included (their normal pixels count towards the FPR).
        maps: (N, H, W) real anomaly maps (any real dtype; float32 is not copied to
            float64).
        fpr_limit: upper FPR bound of the integration, in (0, 1]; 0.3 in MVTec AD.

    Returns:
        ``∫_0^fpr_limit PRO(FPR) dFPR / fpr_limit``: 1.0 for perfect maps, about
        ``fpr_limit / 2`` for random ones (0.15 at 0.3).

    Raises:
        ValueError: bad `fpr_limit`, or the usual input errors (shape, not (N, H, W),
            empty, non-binary masks, NaN/inf maps, no anomalous or no normal pixel).

    Example:
        >>> m = np.array([[[1, 1, 1, 1, 0, 0, 0, 0]]])
        >>> round(pixel_aupro(m, [[[.9, .7, .5, .3, .8, .6, .4, .2]]]), 6)
        0.291667

    Explained in: book/chapters/02_reverse_distillation
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")
    y, s = _check(masks, maps, ("masks", "maps"), "AUPRO", pixel=True)
    fpr, pro = _pro_curve(y, s, fpr_limit)
    return float(_area_to(fpr, pro, fpr_limit) / fpr_limit)


def defect_contrast(masks: Any, maps: Any) -> np.ndarray:
    """Per image, the mean of the map inside the defect mask divided by its mean
    outside: above 1 the defect stands out, near 1 the model rebuilds it as normal.

    Args:
        masks: bool (N, H, W), each with defect and normal pixels.
        maps: (N, H, W) non-negative anomaly maps.

    Returns:
        (N,) float64 ratios.
    """
    m = _binary(_as_array(masks, "masks"), "masks")
    a = _real_finite(_as_array(maps, "maps"), "maps").astype(np.float64)
    if m.shape != a.shape or m.ndim != 3:
        raise ValueError(f"masks {m.shape} and maps {a.shape} must both be (N, H, W)")
    inside, area = (a * m).sum((1, 2)), m.sum((1, 2))
    if (area == 0).any() or (area == m[0].size).any():
        raise ValueError("every mask needs both defect and normal pixels")
    outside = (a * ~m).sum((1, 2)) / (m[0].size - area)
    return inside / area / outside
