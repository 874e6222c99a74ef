"""The measurement behind LLB's demo sub-model schedule (``llb.sub_steps``): RD
trained for a long schedule on each of LLB's three stage-1 subsets of a clean
synthetic category (demo profile, 64 px), its training loss per epoch, and the
optimiser steps by which it made 90 % of its fall (`fuadnb.evaluate.flattened`, the
rule behind every demo budget: benchmarks/budget_histories.py). Nothing here looks
at a test set.

    nice python benchmarks/llb_substeps.py \
        --out benchmarks/results/llb_substeps_64px_demo.csv

Rows: one per (category, subset, record): ``loss``, ``steps_per_record``, the
subset's size, the flattening step of the fit (``flattened``, and ``flattened_w3``
with a 3-record trailing mean) and provenance. One compute thread; about 6 minutes
on one CPU core.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from fuadnb import data, engine, evaluate, experiment  # noqa: E402
from fuadnb.strategies import llb  # noqa: E402
from fuadnb.utils import Timer  # noqa: E402

LONG_STEPS = 1200   # RD's long fit in budget_histories.py


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--categories", nargs="+", default=["grass", "coin"])
    p.add_argument("--seed", type=int, default=111)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=LONG_STEPS)
    p.add_argument("--data", type=Path, default=Path("data/synthetic"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    env = experiment.environment(device)
    tables = []
    for category in args.categories:
        scenario = experiment.Scenario("synthetic", args.data, category,
                                       seed=args.seed).ensure()
        split = scenario.split()
        module, cfg, strategy = experiment.configure(
            "llb-rd", dataset="synthetic", category=category, profile="demo",
            seed=args.seed, options={"image_size": args.image_size})
        cfg = dataclasses.replace(cfg, precision=engine.resolve(cfg.precision, device))
        images, _ = data.images.load(split.train, cfg.image_size, masks=False)
        subset = llb.partition(len(images), strategy.subsets, args.seed)
        for j in range(strategy.subsets):
            members = torch.from_numpy(np.flatnonzero(subset == j))
            sub = dataclasses.replace(llb.sub_config(cfg, j, strategy),
                                      steps=args.steps)
            with Timer() as timer:
                model = module.fit(sub, images[members], device=device)
            loss = np.asarray(model.history, float)
            every = args.steps / len(loss)
            flat = evaluate.flattened(loss, every=every)
            flat3 = evaluate.flattened(loss, every=every, window=3)
            print(f"{category} subset {j} ({len(members)} images): 90 % of the loss "
                  f"fall by step {flat:.0f} (3-record mean {flat3:.0f}); "
                  f"{timer.seconds:.0f} s", flush=True)
            tables.append(pd.DataFrame({
                "method": "rd", "category": category, "subset": j,
                "n_subset": len(members), "n_train": len(images),
                "record": np.arange(1, len(loss) + 1), "steps_per_record": every,
                "loss": loss, "flattened": flat, "flattened_w3": flat3,
                "steps": args.steps, "profile": "demo", "regime": "clean",
                "seed": args.seed, "sub_seed": sub.seed,
                "cfg.image_size": cfg.image_size, "cfg.batch_size": cfg.batch_size,
                "fit_seconds": timer.seconds, "threads": env["threads"],
                "device": env["device"], "torch": env["torch"],
                "commit": env["commit"], "date": env["date"]}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(tables, ignore_index=True).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
