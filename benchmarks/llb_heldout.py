"""LLB around a memory bank, before and after stage 1 stopped scoring an image with
its own sub-model's ordinary prediction (issue 30): PatchCore and LLB(PatchCore) on
four synthetic categories, clean and overlap 0.2, three seeds, demo profile at 64 px.

    # the "before" rows, at the commit before the change (e030844, this script's):
    git checkout e030844 -- fuadnb && nice python benchmarks/llb_heldout.py \
        --rule own-predict --out benchmarks/results/llb_heldout_demo.csv
    git checkout HEAD -- fuadnb
    # the "after" rows (LLB's default only), at the change's commit or later:
    nice python benchmarks/llb_heldout.py --rule own-held-out --only-llb \
        --out benchmarks/results/llb_heldout_demo.csv

Each call appends its rows (one per run: method, profile, regime, seed, commit and
every metric of `fuadnb.experiment.run`'s row) with ``stage1_rule`` = ``--rule``;
``variant`` names LLB's options (``own_subset=False``: the image's own sub-model left
out of the mean). ``filter_auroc`` is stage 1's contamination-detection AUROC on the
training set; the clean cost is LLB's clean image AUROC minus PatchCore's. One
compute thread; about 5 minutes on one CPU core per call.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from fuadnb import experiment  # noqa: E402

CATEGORIES = ("coin", "grass", "brick", "gravel")
SETTINGS = (("recurring", 0.0), ("overlap", 0.2))   # clean (as chapter 08) and overlap
SEEDS = (111, 222, 333)
# method, variant name, options: PatchCore itself is unchanged by the rule
RUNS = (("patchcore", "", {}), ("llb-patchcore", "", {}),
        ("llb-patchcore", "own_subset=False", {"llb.own_subset": False}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rule", required=True, help="stage1_rule column of these rows")
    p.add_argument("--out", type=Path, required=True, help="CSV table to append to")
    p.add_argument("--data", type=Path, default=Path("data/synthetic"))
    p.add_argument("--runs", type=Path, default=Path("runs/llb_heldout"))
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--only-llb", action="store_true",
                   help="only LLB's default rule (PatchCore and own_subset=False "
                   "leave the image's own sub-model out: unchanged by the rule)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for category in CATEGORIES:
        for regime, ratio in SETTINGS:
            for seed in SEEDS:
                scenario = experiment.Scenario("synthetic", args.data, category,
                                               ratio, regime, seed=seed)
                for method, variant, options in RUNS[1:2] if args.only_llb else RUNS:
                    result = experiment.run(
                        method, scenario, profile="demo", device="cpu",
                        runs_root=args.runs / args.rule,
                        options={"image_size": args.image_size, **options})
                    rows.append({"stage1_rule": args.rule, "variant": variant}
                                | result.row)
                    print(category, regime, ratio, seed, method, variant,
                          f"image {result.row['image_auroc']:.3f}",
                          f"filter {result.row.get('filter_auroc', float('nan')):.3f}",
                          flush=True)
    table = pd.DataFrame(rows)
    if args.out.exists():
        table = pd.concat([pd.read_csv(args.out), table], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(table)} rows)")


if __name__ == "__main__":
    main()
