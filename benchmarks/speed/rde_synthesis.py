"""RD-E: the share of a training step spent synthesising anomalies, and what the
prefetching thread of `fuadnb.models.rde.fit` saves.

For the first --steps batches of a fit (random uint8 images of the training set's
size, the bundled textures) it times, batch by batch, `fuadnb.data.anomalies.synthesize`
(as `rde.training_batches` calls it) and the training step itself (expert, teacher
and student, `rde._step`), inline, one after the other; then it times whole fits of
the same schedule, twice each with the synthesis inline and prefetched, alternated
(inline, prefetched, prefetched, inline), and compares the best of each.

    python benchmarks/speed/rde_synthesis.py                              # demo, CPU
    python benchmarks/speed/rde_synthesis.py --profile paper --device cuda
    python benchmarks/speed/rde_synthesis.py --image-size 32 --steps 2 --images 4

"synthesis share" is synthesis / (synthesis + step) per batch, the part of a step a
prefetching worker can take off the critical path (on a GPU all of it; on a CPU the
thread competes with the step for the same cores).
"""

from __future__ import annotations

import argparse
import time

import torch

from fuadnb import engine
from fuadnb.data import anomalies
from fuadnb.models import rde
from fuadnb.utils import Timer, device_name, pick_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="demo", choices=list(rde.PROFILES))
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=32, help="training images")
    p.add_argument("--image-size", type=int, help="default: the profile's")
    p.add_argument("--batch-size", type=int, help="default: the profile's")
    p.add_argument("--steps", type=int, default=8, help="timed batches")
    p.add_argument("--weights", default="random", help="random: no download")
    p.add_argument("--foreground", default="none", choices=anomalies.FOREGROUNDS,
                   help="object categories: keep the anomalies on the object found "
                   "by this rule (URD's restriction: grabcut, or otsu_inverse for "
                   "capsule and screw); its masks are made once per training image, "
                   "before the timed batches, as rde.training_batches does")
    args = p.parse_args()
    device = pick_device(args.device)
    cfg = rde.config(args.profile, weights=args.weights, image_size=args.image_size,
                     batch_size=args.batch_size, iterations=args.steps,
                     whole_epochs=False, foreground=args.foreground,
                     textures="bundled")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, cfg.image_size, cfg.image_size),
                           generator=g, dtype=torch.uint8)
    textures = rde.texture_source(cfg)
    objects = anomalies.foreground(images, cfg.foreground)    # (N, S, S) or None
    model = engine.prepare(rde.build(cfg), device, cfg.precision)
    opt_t = torch.optim.Adam(model.teacher.parameters(), lr=cfg.lr_teacher,
                             betas=cfg.betas)
    opt_s = torch.optim.Adam(model.student.parameters(), lr=cfg.lr_student,
                             betas=cfg.betas)
    synth_gen = torch.Generator().manual_seed(cfg.seed + 1)
    synth, step = [], []
    model.train()
    for k in range(args.steps + 1):                  # the first one warms up
        idx = torch.randperm(args.images, generator=g)[:cfg.batch_size]
        batch = images[idx]
        start = time.perf_counter()
        aug, mask = anomalies.synthesize(
            batch, textures, synth_gen,
            foreground=None if objects is None else objects[idx])
        made = time.perf_counter() - start
        every = torch.arange(len(batch))
        with Timer(device) as t:
            x = engine.inputs(batch, every, device, cfg.precision)
            x_a = engine.inputs(aug, every, device, cfg.precision)
            rde._step(model, opt_t, opt_s, x, x_a, mask.to(device), cfg)
        if k:
            synth.append(made)
            step.append(t.seconds)
    s, t = sum(synth) / len(synth), sum(step) / len(step)
    print(f"RD-E {args.profile}: {cfg.backbone} ({cfg.weights}) {cfg.image_size}px "
          f"batch {cfg.batch_size} on {device_name(device)}, "
          f"{torch.get_num_threads()} threads")
    print(f"  synthesis {1000 * s:8.1f} ms/batch   step {1000 * t:8.1f} ms/batch   "
          f"synthesis share {s / (s + t):.1%}")
    fits = {False: [], True: []}
    for prefetch in (False, True, True, False):      # alternated: neither goes first
        with Timer(device) as fit_timer:             # only, nor last only
            rde.fit(cfg, images, device=device, prefetch=prefetch)
        fits[prefetch].append(fit_timer.seconds)
    for prefetch, seconds in fits.items():
        print(f"  fit, synthesis {'prefetched' if prefetch else 'inline    '}: "
              f"{min(seconds):7.2f} s for {args.steps} steps (best of "
              f"{', '.join(f'{x:.2f}' for x in seconds)} s)")
    print(f"  prefetching saves {1 - min(fits[True]) / min(fits[False]):.1%} of the "
          "fit (best against best)")


if __name__ == "__main__":
    main()
