"""Wall time of the synthetic benchmark generator (`fuadnb.data.synthetic.generate`).

Generates the requested spec into a fresh temporary folder for each worker count and
prints seconds, images per second, the output size on disk and whether the outputs of
all worker counts are byte-identical (same manifest, which holds every file's sha256).

    python benchmarks/bench_synthetic.py                    # default spec, workers 1 2
    python benchmarks/bench_synthetic.py --tiny --workers 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fuadnb.data import synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="Spec.tiny() (64 px)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--categories", nargs="+", default=None,
                        choices=sorted(synthetic.CATEGORIES))
    args = parser.parse_args()
    spec = synthetic.Spec.tiny() if args.tiny else synthetic.Spec()
    manifests = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "synthetic"
            start = time.perf_counter()
            manifest = synthetic.generate(root, spec, categories=args.categories,
                                          workers=workers)
            seconds = time.perf_counter() - start
            pngs = list(root.rglob("*.png"))
            n_images = sum(not p.name.endswith("_mask.png") for p in pngs)
            mib = sum(p.stat().st_size for p in pngs) / 2**20
            manifests.append(manifest.read_bytes())
            print(f"size {spec.size} workers {workers}: {seconds:.2f} s, "
                  f"{n_images} images + {len(pngs) - n_images} masks, "
                  f"{n_images / seconds:.0f} images/s, {mib:.1f} MiB")
    print("byte-identical across worker counts:", len(set(manifests)) == 1)


if __name__ == "__main__":
    main()
