"""Speed of the pixel metrics on an MVTec-sized test set.

Builds N random smooth 256×256 float32 anomaly maps with random blob masks (a share
of the images is good: no mask at all), then times `fuadnb.metrics.pixel_aupro` and
`fuadnb.metrics.pixel_auroc` once each and prints pixels/second and wall seconds.

    python benchmarks/bench_metrics.py                 # 1,000 maps (65.5 M pixels)
    python benchmarks/bench_metrics.py --n-images 100 --sklearn

"peak extra memory" is the most that numpy/Python held at once inside the call beyond
the inputs (tracemalloc, which numpy reports its arrays to); for the whole process run
it under ``/usr/bin/time -v``.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
from scipy import ndimage

from fuadnb import metrics


def make_data(n_images: int, size: int = 256, good_share: float = 0.3,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth maps (N, size, size) float32 and blob masks (N, size, size) bool.

    Smooth fields are drawn on a 16×16 grid and upsampled bilinearly; masks are the top
    ~3% of a second field (several blobs per defective image); maps are noise plus a
    blurred copy of the mask, so the metrics are neither 0.5 nor 1.
    """
    rng = np.random.default_rng(seed)
    zoom = size / 16
    maps = np.empty((n_images, size, size), np.float32)
    masks = np.zeros((n_images, size, size), bool)
    for i in range(n_images):
        noise = ndimage.zoom(rng.standard_normal((16, 16)), zoom, order=1)
        if rng.random() >= good_share:
            blob = ndimage.zoom(rng.standard_normal((16, 16)), zoom, order=1)
            masks[i] = blob > np.quantile(blob, 0.97)
        signal = ndimage.uniform_filter(masks[i].astype(np.float32), size=9)
        maps[i] = noise + 2.0 * signal + 0.05 * rng.standard_normal((size, size))
    return masks, maps


def timed(fn, *args) -> tuple[float, float]:
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sklearn", action="store_true",
                        help="also time sklearn.metrics.roc_auc_score for comparison")
    args = parser.parse_args()

    t0 = time.perf_counter()
    masks, maps = make_data(args.n_images, args.size)
    n_pix = maps.size
    n_defective = int(masks.any(axis=(1, 2)).sum())
    print(f"data: {args.n_images} maps of {args.size}x{args.size} = "
          f"{n_pix / 1e6:.1f} M pixels, {n_defective} defective images, "
          f"{masks.mean():.4f} anomalous pixels ({time.perf_counter() - t0:.1f} s)")

    runs = [("pixel_aupro", metrics.pixel_aupro), ("pixel_auroc", metrics.pixel_auroc)]
    if args.sklearn:
        from sklearn.metrics import roc_auc_score

        runs.append(("sklearn roc_auc_score",
                     lambda m, s: roc_auc_score(m.ravel(), s.ravel())))
    for name, fn in runs:
        tracemalloc.start()
        value, wall = timed(fn, masks, maps)
        extra = tracemalloc.get_traced_memory()[1] / 2**30
        tracemalloc.stop()
        print(f"{name:>22}: {value:.6f}  {wall:6.2f} s  "
              f"{n_pix / wall / 1e6:6.2f} M px/s  peak extra memory {extra:.2f} GiB")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of the process (data included): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
