"""One fit per method at the paper profile on a stand-in category, in fp32 and in
bf16: images/second, peak memory and the metrics side by side.

Part of the GPU check (``benchmarks/gpu_check.sh``, ``make gpu-check``): on a CUDA
machine it answers "does every method's paper profile fit on this GPU, how fast, and
do bf16 and fp32 agree?" in a few minutes. The data is the rehearsal's stand-in of
MVTec AD (`fuadnb.data.standin`: generated, tiny pictures resized to the profile's
size), so the metrics compare the two precisions with each other, never with the
papers. The schedule is the paper profile's cut to --steps optimiser steps
(`schedule`), so images/second is the paper setting's throughput on the paper image
size, batch size and networks. Weights: the paper's ImageNet teachers when they are
on disk (the torch hub cache), else the same networks randomly initialised; each
row says which (``teacher``).

    python benchmarks/speed/gpu_check.py --device cuda --out runs/gpu_check
    python benchmarks/speed/gpu_check.py --device cpu --tiny --methods rd patchcore

--tiny (the test suite's) runs the same code at 64 px (a paper crop kept in ratio,
`fuadnb.rehearsal.crop`) with the offline teacher of the demo profile.

Writes ``<out>/fits.csv`` (one row per method and precision: fit and predict
images/second, peak memory, metrics) and ``<out>/precision.csv`` (fp32 beside bf16
per method, and bf16 - fp32) and prints both.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:   # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from fuadnb import experiment  # noqa: E402
from fuadnb.data import standin  # noqa: E402
from fuadnb.nn.backbones import WeightsNotFoundError  # noqa: E402
from fuadnb.rehearsal import crop  # noqa: E402

METHODS = ("rd", "patchcore", "softpatch", "cdd", "funad", "llb-rd",
           "llb-patchcore", "rde")
PRECISIONS = ("fp32", "bf16")
METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro")
CATEGORY = "bottle"
TINY = {"image_size": 64, "backbone": "efficientnet_lite2", "weights": "imagenet"}


def schedule(method: str, steps: int) -> dict[str, int]:
    """The paper schedule cut to about `steps` optimiser steps (the stand-in's
    training set is one or two batches of the paper's: an epoch is a step or two;
    each row records its steps)."""
    base = method.rpartition("-")[2]
    if base in ("rd",):
        return {"steps": steps}
    if base == "rde":
        return {"iterations": steps}
    if base in ("cdd", "funad"):
        return {"epochs": steps}
    return {}   # memory banks: one pass


def peak_mib(device: torch.device) -> float:
    """Peak memory since the last `reset`: CUDA allocated, else the process's RSS
    (which only grows)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_one(method: str, scenario: experiment.Scenario, precision: str, *,
            steps: int, tiny: bool, device: torch.device, runs: Path) -> dict:
    """One run (never cached: its own run folder); its row's speed and metrics."""
    options = {"precision": precision, **schedule(method, steps),
               **(TINY | {"load_size": crop(method)} if tiny else {})}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        result = experiment.run(method, scenario, profile="paper", device=str(device),
                                runs_root=runs / precision, options=options)
    except WeightsNotFoundError:    # the paper teacher is not on disk: random init
        options["weights"] = "random"
        result = experiment.run(method, scenario, profile="paper", device=str(device),
                                runs_root=runs / precision, options=options)
    row = result.row
    return {"method": method, "precision": precision, "teacher": row["teacher"],
            "image_size": row["cfg.image_size"], "steps": row["steps"],
            "fit_seconds": row["fit_seconds"],
            "train_images_per_second": row["train_images_per_second"],
            "test_images_per_second": row["test_images_per_second"],
            "peak_mib": peak_mib(device), "wall_seconds": time.perf_counter() - start,
            **{m: row[m] for m in METRICS}, "device": row["device"],
            "torch": row["torch"], "commit": row["commit"]}


def side_by_side(fits: pd.DataFrame) -> pd.DataFrame:
    """fp32 beside bf16 per method, with bf16 - fp32 for each metric and the
    speed-up of training."""
    wide = fits.pivot(index="method", columns="precision",
                      values=[*METRICS, "train_images_per_second"])
    wide.columns = [f"{m}_{p}" for m, p in wide.columns]
    for m in METRICS:
        if {f"{m}_fp32", f"{m}_bf16"} <= set(wide):
            wide[f"{m}_bf16_minus_fp32"] = wide[f"{m}_bf16"] - wide[f"{m}_fp32"]
    if {"train_images_per_second_fp32", "train_images_per_second_bf16"} <= set(wide):
        wide["bf16_speedup"] = (wide["train_images_per_second_bf16"]
                                / wide["train_images_per_second_fp32"])
    return wide.reindex([m for m in METHODS if m in wide.index]
                        + [m for m in wide.index if m not in METHODS])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS),
                   choices=PRECISIONS)
    p.add_argument("--steps", type=int, default=100, help="optimiser steps per fit "
                   "(default: %(default)s)")
    p.add_argument("--tiny", action="store_true", help="64 px, the offline teacher "
                   "(a CPU check of the script)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here; use --device cpu --tiny")
    counts = standin.Counts(train=8, test_good=3, anomalies=4) if args.tiny else \
        standin.Counts(train=16, test_good=8, anomalies=8)
    size = 64 if args.tiny else 256
    root = standin.write(args.out / "data" / f"mvtec_ad_{size}", "mvtec_ad",
                         counts=counts, size=size)
    scenario = experiment.Scenario("mvtec_ad", root, CATEGORY, 0.1, "overlap")
    rows = []
    for method in args.methods:
        for precision in args.precisions:
            rows.append(fit_one(method, scenario, precision, steps=args.steps,
                                tiny=args.tiny, device=device,
                                runs=args.out / "runs" / f"{time.time_ns()}"))
            print(f"{method} {precision}: {rows[-1]['train_images_per_second']:.1f} "
                  f"train images/s, peak {rows[-1]['peak_mib']:.0f} MiB, image AUROC "
                  f"{rows[-1]['image_auroc']:.4f}", flush=True)
    fits = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    fits.to_csv(args.out / "fits.csv", index=False)
    wide = side_by_side(fits)
    wide.to_csv(args.out / "precision.csv")
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(fits.round(4).to_string(index=False))
        print(wide.round(4).to_string())
    print(f"tables: {args.out / 'fits.csv'}, {args.out / 'precision.csv'} "
          "(stand-in data: the metrics compare precisions, never papers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
