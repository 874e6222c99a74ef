"""One experiment end to end: index -> contaminate -> load -> fit (or load) ->
predict -> metrics -> one results row in the run folder.

The CLI's ``run`` and ``demo`` commands and the chapters call `run`; everything it
does is a call into the layers below, so a notebook can also take the steps one by one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import fuadnb
from fuadnb import data, evaluate, models, runs
from fuadnb.strategies import llb
from fuadnb.utils import Timer, device_name, git_commit, pick_device


@dataclass
class Result:
    """What `run` returns: the results row, the run folder, the split, the model and
    its predictions (what the chapters draw).

    Attributes:
        test_images, train_images: uint8 (N, 3, S, S) on the CPU, in split order.
        test_masks: bool (N, S, S); test_maps: (N, S, S) anomaly maps.
        test_scores, train_scores: image scores (max of the map).
    """

    row: dict[str, Any]
    dir: Path
    split: data.Split
    model: torch.nn.Module
    test_images: torch.Tensor
    test_masks: np.ndarray
    test_maps: np.ndarray
    test_scores: np.ndarray
    train_images: torch.Tensor
    train_scores: np.ndarray


def environment(device: torch.device) -> dict[str, str]:
    """Versions and machine, for every results row."""
    return {"device": device_name(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "fuadnb": fuadnb.__version__, "python": platform.python_version(),
            "commit": git_commit(Path(__file__).parent),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


STRATEGIES = {"llb": llb}


def parse_method(method: str) -> tuple[str | None, str]:
    """``"rd"`` -> (None, "rd"); ``"llb-rd"`` -> ("llb", "rd"): a strategy wrapped
    around a registered method."""
    strategy, sep, base = method.partition("-")
    if not sep:
        return None, method
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown method {method!r}: write a method of "
                         f"{sorted(models.REGISTRY)} or <strategy>-<method> with a "
                         f"strategy of {sorted(STRATEGIES)} (e.g. llb-rd)")
    models.get(base)
    return strategy, base


def run(method: str = "rd", *, dataset: str, root: Path | str, category: str,
        noise_ratio: float = 0.0, seed: int = 111, profile: str = "demo",
        overlap: bool = False, definition: str = "softpatch", source: str = "auto",
        device: str = "auto", runs_root: Path | str = "runs",
        options: dict[str, Any] | None = None, progress: bool = False) -> Result:
    """Run `method` on one category at one noise ratio; cached by configuration.

    Args:
        method: a registered method (``rd``), or a strategy around one (``llb-rd``).
        options: overrides of the method's Config fields (e.g. ``{"epochs": 5}``);
            a strategy's as ``"<strategy>.<field>"`` (e.g. ``{"llb.keep": 0.5}``).

    Returns:
        the Result; its row is also written to ``<run dir>/metrics.json``.
    """
    strategy, base = parse_method(method)
    module = models.get(base)
    dev = pick_device(device)
    options = dict(options or {})
    own = {k.split(".", 1)[1]: options.pop(k) for k in list(options) if "." in k
           and k.split(".", 1)[0] == strategy}
    stray = [k for k in options if "." in k]
    if stray:
        raise ValueError(f"options {stray} belong to a strategy; run it as "
                         f"'<strategy>-{base}' (e.g. llb-{base})")
    cfg = module.config(profile, seed=seed, **options)
    strategy_cfg = STRATEGIES[strategy].config(**own) if strategy else None
    split = data.contaminate(data.index(dataset, root, category), noise_ratio,
                             seed=seed, definition=definition, overlap=overlap,
                             source=source)
    spec = runs.RunSpec(method, dataset, category, noise_ratio, overlap, seed, profile,
                        cfg, split.manifest, root=runs_root, strategy=strategy_cfg)
    with Timer() as load_timer:
        train_images, _ = data.images.load(split.train, cfg.image_size, masks=False,
                                           progress=progress)
        test_images, test_masks = data.images.load(split.test, cfg.image_size,
                                                   progress=progress)
    train_images = train_images.to(dev)
    train_ids = split.train["id"].to_numpy(str)
    if strategy == "llb":
        def fit():
            return _fit_llb(spec, module, train_images, train_ids, device=dev,
                            progress=progress)
    else:
        def fit():
            return module.fit(cfg, train_images, device=dev, progress=progress)
    model, fit_record = runs.load_or_fit(spec, build=lambda: module.build(cfg), fit=fit)
    model = model.to(dev)
    with Timer(dev) as predict_timer:
        scores, maps = module.predict(model, test_images.to(dev), progress=progress)
    train_scores = module.score_train(model, train_images)
    labels = split.test["label"].to_numpy()
    metrics = evaluate.score(labels=labels, scores=scores,
                             masks=test_masks[:, 0].numpy(), maps=maps,
                             test_injected=split.test["is_injected"].to_numpy(),
                             train_injected=split.train["is_injected"].to_numpy(),
                             train_scores=train_scores)
    runs.save_predictions(spec, test_ids=split.test["id"].to_numpy(str),
                          test_labels=labels, test_scores=scores,
                          train_ids=split.train["id"].to_numpy(str),
                          train_injected=split.train["is_injected"].to_numpy(),
                          train_scores=train_scores)
    n_train = len(split.train)
    fit_seconds, seen, extra = fit_record["fit_seconds"], images_seen(cfg, n_train), {}
    if strategy == "llb":   # stage 1 (possibly cached) + stage 2
        fit_seconds = float(model.trace["seconds"] + model.trace["stage2_seconds"])
        extra = llb.filter_metrics(model.trace, split.train["is_injected"].to_numpy())
        seen += images_seen(cfg, extra["n_kept"])
    row = runs.flat_row(spec) | {
        "teacher": model.teacher.label, **metrics, **extra,
        "fit_seconds": fit_seconds,
        "train_images_per_second": seen / fit_seconds,
        "predict_seconds": predict_timer.seconds,
        "test_images_per_second": len(test_images) / predict_timer.seconds,
        "load_seconds": load_timer.seconds, "n_train": n_train,
        **{f"test_{k}": v for k, v in split.test_composition().items()
           if not k.startswith("defect:")},
        "final_loss": fit_record["history"][-1] if fit_record["history"] else np.nan,
        **environment(dev)}
    runs.save_row(spec, row)
    return Result(row=row, dir=spec.dir, split=split, model=model,
                  test_images=test_images, test_masks=test_masks[:, 0].numpy(),
                  test_maps=maps, test_scores=scores,
                  train_images=train_images.cpu(), train_scores=train_scores)


def _fit_llb(spec: runs.RunSpec, module: Any, train_images: torch.Tensor,
             train_ids: np.ndarray, *, device: torch.device, progress: bool
             ) -> torch.nn.Module:
    """LLB around `module`: stage 1 (cached apart from ``keep``, so that other keep
    fractions reuse it), purification by id, stage 2 on the kept images. The final
    model carries the stage-1 record and the kept mask as ``trace``."""
    lcfg = spec.strategy
    stage_spec = dataclasses.replace(spec, method=f"{spec.method}-stage1",
                                     strategy=dataclasses.replace(lcfg, keep=1.0))
    record = llb.Stage1.from_arrays(runs.load_or_compute(
        stage_spec.dir / "stage1.npz",
        lambda: llb.stage1(module, spec.cfg, train_images, train_ids, lcfg,
                           seed=spec.seed, device=device, progress=progress).arrays()))
    if not np.array_equal(record.ids, train_ids):
        raise RuntimeError(f"{stage_spec.dir}: stage-1 ids do not match the split; "
                           "delete the folder to recompute")
    kept = np.isin(train_ids, llb.purify(record.ids, record.scores, lcfg.keep))
    start = time.perf_counter()
    positions = torch.from_numpy(np.flatnonzero(kept)).to(train_images.device)
    model = module.fit(spec.cfg, train_images[positions], device=device,
                       progress=progress)
    model.trace = record.arrays() | {
        "kept": kept, "stage2_seconds": np.array(time.perf_counter() - start)}
    return model


def images_seen(cfg: Any, n_train: int) -> int:
    """Training images a fit processed: epochs x images, iterations x batch, or one
    pass over the images (a memory bank: PatchCore, SoftPatch)."""
    if hasattr(cfg, "epochs"):
        return cfg.epochs * n_train
    if hasattr(cfg, "iterations"):
        return cfg.iterations * cfg.batch_size
    return n_train


def table(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """The compact view of results rows printed by the CLI."""
    df = pd.DataFrame(rows)
    cols = ["method", "dataset", "category", "noise_ratio", "n_injected", "seed",
            "profile", "teacher", "image_auroc", "pixel_auroc", "pixel_aupro",
            "detection_auroc", "fit_seconds"]
    return df[[c for c in cols if c in df]]
