"""Method-agnostic training and inference plumbing.

Images arrive as one uint8 tensor (N, 3, H, W) already on the device; this module
normalises them batch by batch there, caches a frozen teacher's features once per
image, shuffles batches with a seeded generator, makes batches ahead in a background
thread when they cost something to make (`prefetch`), and turns a method's map
function into image scores and full-size maps.

Numerics follow one setting, the Config field ``precision`` of every method, on any
device: ``fp32`` computes in float32 with the standard memory layout; ``bf16`` runs
the networks under bf16 autocast, stores cached features in bf16 and uses the
channels_last layout (the GPU's fast path), on the CPU as on CUDA, so a CPU test sees
the GPU's numerics; ``auto`` is bf16 on CUDA and fp32 elsewhere (`resolve`). A
method's ``paper`` profile never leaves ``auto`` to this module: its Config is made
with ``fp32`` unless bf16 is named (`fuadnb.config.from_profile`), because every
reference computes in float32.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


class Monitor(Protocol):
    """Called by a method's training loop after every optimiser step (a diagnostic
    that reads the model and restores its train/eval mode; never changes it)."""

    def __call__(self, step: int, model: nn.Module) -> None: ...


Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def resolve(precision: Precision, device: torch.device) -> Precision:
    """``fp32`` or ``bf16``: `precision` itself, or for ``auto`` bf16 on CUDA and
    fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got "
                         f"{precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: Precision
             ) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` (CPU or CUDA alike) for bf16, a no-op for fp32."""
    if resolve(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def storage_dtype(device: torch.device, precision: Precision) -> torch.dtype:
    """The dtype of cached features: bf16 (half the memory) or float32."""
    return torch.bfloat16 if resolve(precision, device) == "bf16" else torch.float32


def memory_format(device: torch.device, precision: Precision) -> torch.memory_format:
    """channels_last for bf16 (faster convolutions on a GPU), else the standard."""
    return torch.channels_last if resolve(precision, device) == "bf16" \
        else torch.contiguous_format


def prepare(module: nn.Module, device: torch.device, precision: Precision
            ) -> nn.Module:
    """Move to `device`, in `memory_format` (channels_last for bf16)."""
    module = module.to(device)
    layout = memory_format(device, precision)
    return module if layout == torch.contiguous_format \
        else module.to(memory_format=layout)


def batches(n: int, batch_size: int, *, generator: torch.Generator | None = None
            ) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``: shuffled with `generator`, else in order; the
    last batch may be short (as a DataLoader with drop_last=False)."""
    order = torch.randperm(n, generator=generator) if generator is not None \
        else torch.arange(n)
    yield from order.split(batch_size)


T = TypeVar("T")


class _Raised:
    """The producer's exception, passed to the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced up to `depth` ahead by a background thread: a data pipeline
    (e.g. RD-E's synthetic anomalies) off the training step's critical path.

    The same items in the same order as iterating `items` directly, so seeded
    generators used only by `items` draw the same values. The producer's exception
    is raised here, at the item it failed on; closing the iterator early (a
    ``break``, an error in the loop) stops the producer.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(item) -> bool:             # False once the consumer has gone
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:   # handed to the consumer, raised there
            put(_Raised(err))
            return
        put(end)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not end:
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def schedule(n: int, batch_size: int, *, epochs: int, steps: int | None = None,
             generator: torch.Generator | None = None) -> list[list[torch.Tensor]]:
    """A training schedule as one list of index batches per epoch.

    `epochs` shuffled passes over ``range(n)``; or, when `steps` is given, exactly
    `steps` batches (whole passes, the last one cut short), so that the number of
    optimiser steps does not grow with the training set: a noise ratio that adds
    images then adds no steps. With ``steps = epochs * ceil(n / batch_size)`` both
    give the same batches.
    """
    per_epoch = -(-n // batch_size)
    left = epochs * per_epoch if steps is None else steps
    plan = []
    while left > 0:
        plan.append(list(batches(n, batch_size, generator=generator))[:left])
        left -= len(plan[-1])
    return plan


def images_seen(n: int, batch_size: int, *, epochs: int, steps: int | None = None
                ) -> int:
    """Training images a `schedule` processes (a short last batch counts short)."""
    if steps is None:
        return epochs * n
    per_epoch = -(-n // batch_size)
    whole, rest = divmod(steps, per_epoch)
    return whole * n + min(rest * batch_size, n)


def inputs(images: torch.Tensor, idx: torch.Tensor, device: torch.device,
           precision: Precision) -> torch.Tensor:
    """Float batch ``images[idx]`` in [0, 1] on `device`, in `memory_format`
    (channels_last for bf16); the network normalises it with its own statistics."""
    x = images[idx.to(images.device)].to(device, non_blocking=True).float() / 255
    layout = memory_format(device, precision)
    return x if layout == torch.contiguous_format else x.contiguous(
        memory_format=layout)


@torch.no_grad()
def frozen_features(network: Callable[[torch.Tensor], list[torch.Tensor]],
                    images: torch.Tensor, *, batch_size: int,
                    device: torch.device, precision: Precision,
                    progress: bool = False) -> list[torch.Tensor]:
    """Run a frozen `network` (RD's and CDD's teacher, FUN-AD's extractor) once over
    all images.

    Returns:
        per scale, one tensor (N, C_i, H_i, W_i) on `device`, in `storage_dtype`
        (bf16 for bf16: the student trains under bf16 autocast anyway).
    """
    store_dtype = storage_dtype(device, precision)
    chunks: list[list[torch.Tensor]] = []
    for idx in tqdm(list(batches(len(images), batch_size)), desc="frozen features",
                    disable=not progress, leave=False):
        with autocast(device, precision):
            chunks.append([f.to(store_dtype) for f in network(
                inputs(images, idx, device, precision))])
    return [torch.cat(scale) for scale in zip(*chunks, strict=True)]


@torch.no_grad()
def predict(map_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *,
            batch_size: int, device: torch.device, precision: Precision,
            progress: bool = False, desc: str = "predict"
            ) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps and image scores (by default the max of the map) for every image.

    Args:
        map_fn: [0, 1] float (B, 3, H, W) -> (B, 1, H, W) float map, higher =
            anomalous; or a pair (map, image scores (B,)) for a method whose image
            score is not the map's maximum.
        images: uint8 (N, 3, H, W).
        precision: the inputs' layout (`inputs`); `map_fn` applies its own autocast.

    Returns:
        scores (N,) float64 and maps (N, H, W) float32, as numpy arrays.
    """
    scores, maps = [], []
    for idx in tqdm(list(batches(len(images), batch_size)), desc=desc,
                    disable=not progress, leave=False):
        out = map_fn(inputs(images, idx, device, precision))
        amap, score = out if isinstance(out, tuple) else (out, out.flatten(1).amax(1))
        maps.append(amap[:, 0].float().cpu())                         # (B, H, W)
        scores.append(score.double().cpu())
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()
