"""From predictions to the metric columns of a results row.

Image metrics use the image score (max of the smoothed map); pixel metrics pool every
pixel of every test image, good images included; AUPRO is the exact MVTec AD
definition integrated to FPR 0.3 (`fuadnb.metrics`). ``detection_auroc`` asks the FUAD
question: do the training-image scores rank the injected anomalies first? Under the
overlap protocol the image AUROC is also given without the injected test images, which
the model has trained on.
"""

from __future__ import annotations

import numpy as np

from fuadnb import metrics


def score(*, labels: np.ndarray, scores: np.ndarray, masks: np.ndarray,
          maps: np.ndarray, test_injected: np.ndarray | None = None,
          train_injected: np.ndarray | None = None,
          train_scores: np.ndarray | None = None) -> dict[str, float]:
    """All metrics of one run, unrounded.

    Args:
        labels, scores: test image labels (N,) and scores (N,).
        masks, maps: test masks (N, H, W) bool and anomaly maps (N, H, W).
        test_injected: (N,) bool, test images that were also injected into train.
        train_injected, train_scores: (M,) for the contamination-detection AUROC.

    Returns:
        ``image_auroc, image_ap, image_f1max, pixel_auroc, pixel_aupro`` and, when
        the training set is contaminated, ``detection_auroc``; under overlap also
        ``image_auroc_clean_test``. Undefined entries are NaN.
    """
    out = {
        "image_auroc": metrics.image_auroc(labels, scores),
        "image_ap": metrics.average_precision(labels, scores),
        "image_f1max": metrics.f1_max(labels, scores),
        "pixel_auroc": metrics.pixel_auroc(masks, maps),
        "pixel_aupro": metrics.pixel_aupro(masks, maps),
        "detection_auroc": float("nan"),
    }
    if train_injected is not None and np.any(train_injected):
        out["detection_auroc"] = metrics.detection_auroc(train_injected, train_scores)
    if test_injected is not None and np.any(test_injected):
        keep = ~np.asarray(test_injected, bool)
        out["image_auroc_clean_test"] = metrics.image_auroc(labels[keep], scores[keep])
    return out
