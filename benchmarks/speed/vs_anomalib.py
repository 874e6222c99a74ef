"""Reverse Distillation side by side: anomalib's and ours, on the same images.

Trains anomalib's RD (``anomalib.models.image.reverse_distillation``: its torch model,
loss and optimiser settings, in a plain loop) and ours (`fuadnb.models.rd.fit`) with
the same randomly initialised backbone (WRN-50-2, ResNet-18: no download), image
size, batch size, epochs and thread count, on the same random uint8 images held in
memory, each model in a fresh subprocess, and prints training images/second (epochs
x images / training seconds, after a one-batch warm-up; building the networks is
not training: ours are built before `rd.fit`, which then uses them), the peak
resident memory of the subprocess and ours / anomalib's throughput. Each
implementation trains --repeats fresh models in its process and the fastest counts
(times on a shared 2-core machine vary by a third from run to run).

anomalib is the optional extra ``peers`` (not needed by CI); run this with a Python
that has both (e.g. a separate venv: ``pip install -e '.[peers]'``):

    python benchmarks/speed/vs_anomalib.py                   # CPU, both backbones
    python benchmarks/speed/vs_anomalib.py --device cuda --images 200 --epochs 3
    python benchmarks/speed/vs_anomalib.py --explain         # where the gap comes from
    python benchmarks/speed/vs_anomalib.py --backbones resnet18 --sizes 64 \\
        --images 4 --batch-size 2 --epochs 1                 # a check in seconds

--explain adds ``fuadnb-nocache``: our networks trained the way anomalib trains (the
frozen teacher run on every batch of every epoch instead of once per image), and
splits each run's time into data (indexing, conversion to float, normalisation),
teacher (ours: the one caching pass) and step (forward, backward, optimiser).
Every run also prints the parameters it trains: anomalib's one-class bottleneck
(OCBE) for WRN-50-2 is built with ResNet-50's width (64 per group, 39 M
parameters), RD4AD's and ours with the wide one (128, 59 M), so a step of ours
costs more at the same input, most visibly at small images where the bottleneck
dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
IMPLS = ("fuadnb", "anomalib")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(n: int, size: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _loop(images, batch_size, epochs, device, make) -> dict:
    """Shuffled epochs of a model from `make()` -> (prepare, step, trained
    parameters): `prepare(idx)` -> batch (timed as data), `step(batch)` (timed as
    step). A throwaway model from `make()` first takes one step (the process's
    one-time costs: kernels, allocator); the timed model's first step, which also
    creates its optimiser state, counts, as it does in `rd.fit`."""
    from fuadnb import engine

    warm = make()
    warm[1](warm[0](torch.arange(min(batch_size, len(images)))))   # warm-up
    del warm                               # freed before the timed model is built
    prepare, step, params = make()
    gen = torch.Generator().manual_seed(111)
    data = compute = 0.0
    for _ in range(epochs):
        for idx in engine.batches(len(images), batch_size, generator=gen):
            _sync(device)
            t0 = time.perf_counter()
            batch = prepare(idx)
            _sync(device)
            t1 = time.perf_counter()
            step(batch)
            _sync(device)
            data, compute = data + t1 - t0, compute + time.perf_counter() - t1
    return {"data_seconds": data, "step_seconds": compute,
            "train_seconds": data + compute, "trained_params": params}


def run_anomalib(images, backbone, device, batch_size, epochs) -> dict:
    from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
    from anomalib.models.image.reverse_distillation.torch_model import (
        ReverseDistillationModel,
    )

    size = images.shape[-1]
    mean = torch.tensor([0.485, 0.456, 0.406], device=device)[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], device=device)[:, None, None]

    def make():
        model = ReverseDistillationModel(backbone, (size, size),
                                         ["layer1", "layer2", "layer3"], "add",
                                         pre_trained=False).to(device)
        loss_fn = ReverseDistillationLoss()
        trained = [*model.decoder.parameters(), *model.bottleneck.parameters()]
        # lightning_model.py configure_optimizers
        opt = torch.optim.Adam(trained, lr=0.005, betas=(0.5, 0.99))
        model.train()

        def prepare(idx):   # the pre-processor's normalisation (images already sized)
            return (images[idx].to(device).float() / 255 - mean) / std

        def step(x):        # lightning_model.py training_step + Lightning's optimiser
            loss = loss_fn(*model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()

        return prepare, step, sum(p.numel() for p in trained)

    return _loop(images, batch_size, epochs, device, make)


def _ours_config(backbone, size, batch_size, epochs):
    from fuadnb.models import rd

    return rd.config("paper", backbone=backbone, weights="random", image_size=size,
                     batch_size=batch_size, epochs=epochs, precision="fp32")


def run_fuadnb(images, backbone, device, batch_size, epochs, explain) -> dict:
    from fuadnb.models import rd

    images = images.to(device)
    rd.fit(_ours_config(backbone, images.shape[-1], batch_size, 1),
           images[:batch_size], device=device)                        # warm-up
    cfg = _ours_config(backbone, images.shape[-1], batch_size, epochs)
    model = rd.build(cfg)              # built before: rd.fit's own build is not
    build, rd.build = rd.build, lambda _: model      # training (anomalib's neither)
    try:
        _sync(device)
        start = time.perf_counter()
        rd.fit(cfg, images, device=device)
        _sync(device)
        out = {"train_seconds": time.perf_counter() - start,
               "trained_params": sum(p.numel() for p in model.student.parameters())}
    finally:
        rd.build = build
    if explain:                        # the caching pass alone, on a fresh model
        model = rd.build(cfg).to(device)
        _sync(device)
        start = time.perf_counter()
        rd.teacher_features(model, images, device=device)
        _sync(device)
        out["teacher_seconds"] = time.perf_counter() - start
        out["step_seconds"] = out["train_seconds"] - out["teacher_seconds"]
    return out


def run_fuadnb_nocache(images, backbone, device, batch_size, epochs) -> dict:
    """Our RD's networks and loss, the teacher run on every batch (anomalib's way)."""
    from fuadnb import engine
    from fuadnb.models import rd

    cfg = _ours_config(backbone, images.shape[-1], batch_size, epochs)
    images = images.to(device)

    def make():
        model = rd.build(cfg).to(device)
        opt = torch.optim.Adam(model.student.parameters(), lr=cfg.lr,
                               betas=cfg.betas)
        model.train()

        def prepare(idx):
            return engine.inputs(images, idx, device, cfg.precision)

        def step(x):
            with torch.no_grad():
                feats = model.teacher(x)
            loss = rd.loss(feats, model.student(feats), cfg.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return prepare, step, sum(p.numel() for p in model.student.parameters())

    return _loop(images, batch_size, epochs, device, make)


def child(point: dict) -> dict:
    """One training run, here (a fresh process per point)."""
    torch.set_num_threads(point["threads"])
    from fuadnb.utils import pick_device

    device = pick_device(point["device"])
    images = _images(point["images"], point["size"])
    before = _peak_mib()
    args = (images, point["backbone"], device, point["batch_size"], point["epochs"])
    runs = []
    for _ in range(point["repeats"]):         # best of: a 2-core VM's times vary
        if point["impl"] == "anomalib":
            runs.append(run_anomalib(*args))
        elif point["impl"] == "fuadnb":
            runs.append(run_fuadnb(*args, point["explain"]))
        else:
            runs.append(run_fuadnb_nocache(*args))
    out = min(runs, key=lambda r: r["train_seconds"]) | {
        "train_seconds_all": [round(r["train_seconds"], 3) for r in runs]}
    from importlib.metadata import PackageNotFoundError, version

    try:
        peer = version("anomalib")
    except PackageNotFoundError:
        peer = None
    return point | out | {
        "torch": torch.__version__, "anomalib": peer,
        "date": time.strftime("%Y-%m-%d"),
        "images_per_second": point["epochs"] * point["images"] / out["train_seconds"],
        "peak_rss_mib": _peak_mib(), "rss_before_mib": before,
        "peak_cuda_mib": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda" else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["wide_resnet50_2", "resnet18"])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--images", type=int, default=32, help="training images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs")
    p.add_argument("--repeats", type=int, default=3, help="timed trainings per "
                   "implementation, each of a fresh model; the fastest is reported "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads in every run (default: all cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--explain", action="store_true", help="also our networks "
                   "without teacher caching, and each run's time split")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    p.add_argument("--csv", type=Path, help="also write the rows here")
    p.add_argument("--point", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.point:
        print(json.dumps(child(json.loads(args.point))))
        return
    impls = (*IMPLS, "fuadnb-nocache") if args.explain else IMPLS
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for backbone in args.backbones:
        for size in args.sizes:
            for impl in impls:
                point = {"impl": impl, "backbone": backbone, "size": size,
                         "images": args.images, "batch_size": args.batch_size,
                         "epochs": args.epochs, "repeats": args.repeats,
                         "threads": args.threads,
                         "device": args.device, "explain": args.explain}
                try:
                    done = subprocess.run([sys.executable, __file__, "--point",
                                           json.dumps(point)], capture_output=True,
                                          text=True, env=env, timeout=args.timeout)
                    if done.returncode:
                        raise RuntimeError((done.stderr.strip().splitlines()
                                            or ["?"])[-1])
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                except (RuntimeError, subprocess.TimeoutExpired) as err:
                    print(f"{impl:15s} {backbone:16s} {size:4d}px: failed: {err}")
                    continue
                rows.append(row)
                split = "  ".join(f"{k.removesuffix('_seconds')} {row[k]:.1f} s"
                                  for k in ("data_seconds", "teacher_seconds",
                                            "step_seconds") if k in row)
                print(f"{impl:15s} {backbone:16s} {size:4d}px: "
                      f"{row['images_per_second']:8.2f} img/s, "
                      f"(best of {'/'.join(map(str, row['train_seconds_all']))} s), "
                      f"{row['trained_params'] / 1e6:5.1f} M trained, peak "
                      f"{row['peak_rss_mib']:7.0f} MiB" + (f"  ({split})" if split
                                                         else ""), flush=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    if table.empty:
        return
    wide = table.pivot_table(index=["backbone", "size"], columns="impl",
                             values=["images_per_second", "peak_rss_mib"])
    if {"fuadnb", "anomalib"} <= set(table.impl):
        wide[("ratio", "img/s ours / anomalib")] = (
            wide[("images_per_second", "fuadnb")]
            / wide[("images_per_second", "anomalib")])
        wide[("ratio", "peak MiB ours / anomalib")] = (
            wide[("peak_rss_mib", "fuadnb")] / wide[("peak_rss_mib", "anomalib")])
    print(f"\n{args.images} images, batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.threads} threads, {args.device}:")
    print(wide.round(2).to_string())
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"rows: {args.csv}")


if __name__ == "__main__":
    main()
