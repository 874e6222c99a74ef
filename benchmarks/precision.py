"""fp32 against bf16 (`fuadnb.engine`: bf16 autocast, bf16 cached features,
channels_last), the same runs otherwise: image AUROC, pixel AUROC and AUPRO of RD and
PatchCore on synthetic categories. The ``paper`` profile computes in fp32 as every
reference does; bf16 is an option whose cost in accuracy this table measures (on the
CPU at the demo profile's small setting; the same script with ``--device cuda
--profile paper`` on a GPU with the real datasets).

    nice python benchmarks/precision.py --image-size 64 \
        --out benchmarks/results/precision_cpu.csv

Rows: one per (method, category, precision) with the run's metrics, fit and predict
seconds and provenance; then one ``bf16 - fp32`` row per (method, category) with the
differences of the metrics (``precision`` = ``diff``). Runs are cached under ``--runs``
like every other run (the resolved precision is in the run key), so a re-run only
re-reads them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from fuadnb import experiment  # noqa: E402

METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
PROVENANCE = ("noise_ratio", "regime", "seed", "profile", "teacher", "cfg.image_size",
              "cfg.load_size", "steps", "n_train", "fit_seconds", "predict_seconds",
              "threads", "device", "torch", "commit", "date")


def measure(methods: list[str], categories: list[str], *, root: Path, profile: str,
            noise: float, seed: int, device: str, runs: Path,
            image_size: int | None = None) -> pd.DataFrame:
    """The runs, fp32 and bf16 for each method and category, and their differences
    (`image_size`: every method's, None: the profile's)."""
    rows = []
    for method in methods:
        for category in categories:
            scenario = experiment.Scenario("synthetic", root, category, noise,
                                           seed=seed).ensure()
            pair = {}
            for precision in ("fp32", "bf16"):
                row = experiment.run(method, scenario, profile=profile, device=device,
                                     runs_root=runs,
                                     options={"precision": precision,
                                              "image_size": image_size}).row
                pair[precision] = row
                rows.append({"method": method, "category": category,
                             "precision": row["cfg.precision"],
                             **{k: row[k] for k in METRICS},
                             **{k: row.get(k) for k in PROVENANCE}})
            rows.append({"method": method, "category": category, "precision": "diff",
                         **{k: pair["bf16"][k] - pair["fp32"][k] for k in METRICS}})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["rd", "patchcore"])
    p.add_argument("--categories", nargs="+", default=["grass", "coin"],
                   help="synthetic categories (generated at --root on first use)")
    p.add_argument("--root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--profile", default="demo")
    p.add_argument("--noise", type=float, default=0.1, help="noise ratio (iid)")
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--image-size", type=int, help="every method's input size "
                   "(default: each method's profile value)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = p.parse_args(argv)
    table = measure(args.methods, args.categories, root=args.root,
                    profile=args.profile, noise=args.noise, seed=args.seed,
                    device=args.device, runs=args.runs, image_size=args.image_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table[["method", "category", "precision", *METRICS]].to_string(index=False))


if __name__ == "__main__":
    main()
