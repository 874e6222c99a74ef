"""Reverse Distillation throughput: training and inference images/second.

    python benchmarks/bench_rd.py --profile demo --device cpu
    python benchmarks/bench_rd.py --profile paper --device cuda

Uses random uint8 images (speed does not depend on content) and a random teacher, so
it runs offline. Training is timed after one warm-up epoch; "train img/s" counts
student updates (epochs x images), the quantity that scales with the schedule.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from fuadnb.models import rd
from fuadnb.utils import Timer, device_name, pick_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="demo", choices=list(rd.PROFILES))
    p.add_argument("--device", default="auto")
    p.add_argument("--images", type=int, default=100, help="training images")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs")
    args = p.parse_args()
    device = pick_device(args.device)
    cfg = rd.config(args.profile, weights="random", epochs=1)
    size = cfg.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, size, size), generator=g,
                           dtype=torch.uint8).to(device)
    rd.fit(cfg, images, device=device)                          # warm-up
    timed = dataclasses.replace(cfg, epochs=args.epochs)
    with Timer(device) as fit_timer:
        model = rd.fit(timed, images, device=device)
    rd.predict(model, images[:8])                                # warm-up
    with Timer(device) as predict_timer:
        rd.predict(model, images)
    print(f"RD {args.profile}: {cfg.backbone} {size}px batch {cfg.batch_size} on "
          f"{device_name(device)}")
    print(f"  fit     {args.images * args.epochs / fit_timer.seconds:8.1f} train img/s "
          f"({fit_timer.seconds:.1f} s for {args.epochs} epochs of {args.images}, "
          "teacher features included)")
    print(f"  predict {args.images / predict_timer.seconds:8.1f} img/s")


if __name__ == "__main__":
    main()
