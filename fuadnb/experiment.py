"""One experiment end to end: index -> contaminate -> load -> fit (or load) ->
predict -> metrics -> one results row in the run folder.

A `Scenario` is the data side of a run (dataset, category, contamination, seed); the
CLI's ``run`` command, the benchmark cell (``benchmarks/grids/cell.ipynb``, which
every sweep runs) and the chapters build one and pass it to `run`. Everything `run`
does is a call into the layers below, so a notebook can also take the steps one by
one (chapter 02 does).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from fuadnb import data, engine, evaluate, metrics, models, runs
from fuadnb.data import synthetic
from fuadnb.data.contamination import ContaminationError
from fuadnb.strategies import STRATEGIES
from fuadnb.utils import Timer, __version__, device_name, git_commit, pick_device


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


@dataclass(frozen=True)
class Scenario:
    """The data a run trains and tests on: one category of a dataset, its training
    set contaminated at `noise_ratio` under `regime` (`fuadnb.data.contaminate`),
    and the seed of that draw and of the model.

    Built once, from a chapter's parameters (`fuadnb.nb.scenario`), the benchmark
    cell's or the command line's, and passed to `run`.
    """

    dataset: str
    root: Path
    category: str
    noise_ratio: float = 0.0
    regime: data.contamination.Regime = "iid"
    definition: Literal["softpatch", "fraction"] = "softpatch"
    repeat: bool = False
    seed: int = 111

    def __post_init__(self):   # one value whatever the caller's types
        repeat, seed = self.repeat, self.seed
        if not isinstance(repeat, (bool, np.bool_)) and repeat not in (0, 1):
            raise ValueError(f"repeat must be true or false, got {repeat!r}")
        if isinstance(seed, (bool, np.bool_)) or not float(seed).is_integer():
            raise ValueError(f"seed must be a whole number, got {seed!r}")
        for name, kind in (("root", Path), ("noise_ratio", float), ("repeat", bool),
                           ("seed", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    def replace(self, **changes: Any) -> Scenario:
        """This scenario with some fields changed (e.g. ``noise_ratio=0.0``)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``Scenario(**s.as_dict()) == s``)."""
        return dataclasses.asdict(self) | {"root": str(self.root)}

    def ensure(self, progress: bool = False) -> Scenario:
        """Generate the synthetic benchmark at `root` on first use (any spec already
        there will do; `fuadnb.data.synthetic.ensure`); other datasets are read as
        they are. Returns the scenario."""
        if self.dataset == "synthetic":
            synthetic.ensure(self.root, spec=None, categories=[self.category],
                             progress=progress)
        return self

    def index(self) -> pd.DataFrame:
        """Every image of the category (`fuadnb.data.index`)."""
        return data.index(self.dataset, self.root, self.category)

    def contaminate(self, index: pd.DataFrame) -> data.Split:
        """The contaminated split of `index` (`fuadnb.data.contaminate`)."""
        return data.contaminate(index, self.noise_ratio, seed=self.seed,
                                regime=self.regime, definition=self.definition,
                                repeat=self.repeat)

    def split(self) -> data.Split:
        """``contaminate(index())``, refused (`check_split`) when a run could not
        use it."""
        split = self.contaminate(self.index())
        check_split(split, self.root)
        return split


def environment(device: torch.device) -> dict[str, str]:
    """Versions and machine, for every results row."""
    return {"device": device_name(device), "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "fuadnb": __version__, "python": platform.python_version(),
            "commit": git_commit(Path(__file__).parent),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


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


def configure(method: str, *, dataset: str, category: str, profile: str = "demo",
              seed: int = 111, options: dict[str, Any] | None = None
              ) -> tuple[Any, Any, Any]:
    """The method's module, its Config and its strategy's Config (None without a
    strategy) that `run` uses with these arguments; reads no data.

    Raises:
        ValueError: an unknown method, profile or option, or a bad option value.
    """
    strategy, base = parse_method(method)
    module = models.get(base)
    options = dict(options or {})
    own = {k.split(".", 1)[1]: options.pop(k) for k in list(options) if "." in k
           and k.split(".", 1)[0] == strategy}
    stray = [k for k in options if "." in k]
    if stray:
        raise ValueError(f"options {stray} belong to a strategy; run it as "
                         f"'<strategy>-{base}' (e.g. llb-{base})")
    given = {k: v for k, v in options.items() if v is not None}
    per_category = module.category_options(profile, dataset, category,
                                           data.kind(dataset, category))
    cfg = module.config(profile, seed=seed, **(per_category | given))
    return module, cfg, STRATEGIES[strategy].config(**own) if strategy else None


def run(method: str, scenario: Scenario, *, profile: str = "demo",
        device: str = "auto", runs_root: Path | str = "runs",
        options: dict[str, Any] | None = None, curve_every: int = 0,
        progress: bool = False) -> Result:
    """Run `method` on `scenario`; cached by configuration.

    Args:
        method: a registered method (``rd``), or a strategy around one (``llb-rd``).
        scenario: the data: dataset, category, contamination and seed (the seed
            also seeds the model).
        options: overrides of the method's Config fields (e.g. ``{"epochs": 5}``);
            a strategy's as ``"<strategy>.<field>"`` (e.g. ``{"llb.keep": 0.5}``).
            They win over the method's per-category values (``category_options``,
            e.g. RD-E's foreground and iterations), which win over the profile.
            ``precision`` "auto" becomes the device's (`fuadnb.engine.resolve`), and
            settings that depend on where the data lies are resolved by the method's
            ``locate`` (RD-E's textures), so the run key names what was computed.
        curve_every: record the learning-bias curve (`Curve`) every that many
            optimiser steps (0: none); methods whose ``fit`` takes a ``monitor``
            (``MONITOR``), without a strategy.

    Returns:
        the Result; its row is also written to ``<run dir>/metrics.json``.
    """
    name, _ = parse_method(method)
    strategy = STRATEGIES[name] if name else None
    dev = pick_device(device)
    module, cfg, strategy_cfg = configure(method, dataset=scenario.dataset,
                                          category=scenario.category, profile=profile,
                                          seed=scenario.seed, options=options)
    cfg = dataclasses.replace(cfg, precision=engine.resolve(cfg.precision, dev))
    cfg, located = module.locate(cfg, scenario.root)
    split = scenario.split()
    runs.check_root(runs_root)
    spec = runs.RunSpec(method, scenario.dataset, scenario.category,
                        scenario.noise_ratio, scenario.regime, scenario.seed, profile,
                        cfg, split.manifest, root=runs_root, strategy=strategy_cfg,
                        inputs=inputs(module, split, cfg), curve_every=curve_every,
                        # a strategy trains on what its stage-1 scores pick, so
                        # the method's scoring settings are training settings there
                        evaluation=() if strategy else module.EVALUATION)
    with Timer() as load_timer:
        train_images, _ = data.images.load(split.train, cfg.image_size, masks=False,
                                           load_size=cfg.load_size, progress=progress)
        test_images, test_masks = data.images.load(split.test, cfg.image_size,
                                                   load_size=cfg.load_size,
                                                   progress=progress)
    train_images = train_images.to(dev)
    train_ids = split.train["id"].to_numpy(str)
    train_injected = split.train["is_injected"].to_numpy()
    monitor = {}
    if curve_every:
        if strategy or not module.MONITOR:
            raise ValueError(f"curve_every: method {method!r} does not report a "
                             "learning-bias curve (rd does)")
        total = module.budget(cfg, len(split.train)).steps
        if not 0 < curve_every <= total:
            raise ValueError(f"curve_every {curve_every} must be between 1 and the "
                             f"run's {total} optimiser steps")
        monitor["monitor"] = Curve(curve_every, module, train_images, train_injected,
                                   test_images.to(dev), split.test["label"].to_numpy(),
                                   split.test_groups())

    def fit() -> runs.Cached:
        if strategy:
            return strategy.fit(module, spec, train_images, train_ids, device=dev,
                                progress=progress)
        model = module.fit(cfg, train_images, device=dev, progress=progress,
                           **monitor)
        if curve_every:
            model.curve = monitor["monitor"].rows
        return model

    model, fit_record = runs.load_or_fit(spec, build=lambda: module.build(cfg), fit=fit)
    model = model.to(dev)
    model.history = list(fit_record["history"])   # also when loaded from the cache
    with Timer(dev) as predict_timer:
        scores, maps = module.predict(model, test_images.to(dev), progress=progress)
    train_scores = module.score_train(model, train_images)
    labels = split.test["label"].to_numpy()
    metrics = evaluate.score(labels=labels, scores=scores,
                             masks=test_masks[:, 0].numpy(), maps=maps,
                             groups=split.test_groups() | split.defect_groups(),
                             train_injected=train_injected, train_scores=train_scores)
    runs.save_predictions(spec, test_ids=split.test["id"].to_numpy(str),
                          test_labels=labels, test_scores=scores,
                          train_ids=train_ids, train_injected=train_injected,
                          train_scores=train_scores)
    n_train = len(split.train)
    steps, seen = module.budget(cfg, n_train)
    fit_seconds, extra = fit_record["fit_seconds"], {}
    if strategy:   # its own stages (stage 1 possibly cached), schedule and columns
        (steps, seen), fit_seconds, extra = strategy.report(module, cfg, model,
                                                            train_injected)
    row = runs.flat_row(spec) | {
        "teacher": model.label, **located, **metrics, **extra,
        "steps": steps, "images_seen": seen, "fit_seconds": fit_seconds,
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


def check_split(split: data.Split, root: Path | str) -> None:
    """Refuse, before any training, a split a run cannot use: no training image, or
    a test set without normal or without anomalous images (no AUROC exists)."""
    m = split.manifest
    where = f"{root} ({m['dataset']}/{m['category']})"
    if not len(split.train):
        raise data.DatasetError(f"{where}: no training images (is its train/good "
                                "folder empty?); restore them or pick another category")
    labels = set(split.test["label"])
    if 0 not in labels:
        raise data.DatasetError(f"{where}: the test set has no normal image, so no "
                                "AUROC can be computed; restore its test/good folder")
    if 1 not in labels:
        fix = "" if m["overlap"] or m["source"] != "test" else (
            "; use a lower noise ratio or --regime overlap (keep injected images in "
            "the test set)")
        raise ContaminationError(
            f"{where}: no anomalous test image is left to evaluate on (noise ratio "
            f"{m['ratio']} injects {m['n_injected']} of them into the training set)"
            + (fix or "; the test set has no anomalies"))


def inputs(module: ModuleType, split: data.Split, cfg: Any) -> dict[str, str]:
    """Content fingerprints of what a model is trained from (`runs.RunSpec.inputs`):
    the training images, in order, and the files the method names (its ``inputs``
    hook: a teacher weights file, RD-E's texture folder); one file by its hash, a
    list of files by `runs.fingerprint`."""
    found = {"train_images": runs.fingerprint(split.train["image_path"])}
    for name, files in module.inputs(cfg).items():
        found[name] = (runs.fingerprint(files) if isinstance(files, (list, tuple))
                       else runs.file_hash(files))
    return found


@dataclass
class Curve:
    """The learning-bias curve of one fit (a `fuadnb.engine.Monitor`): every `every`
    optimiser steps, how the training images' scores rank the injected ones
    (``detection_auroc``) and the test image AUROC, overall and on the regime's
    groups (``image_auroc_seen`` / ``_unseen``). A diagnostic drawn in chapter 02,
    never used to choose anything; it does not change the training."""

    every: int
    module: ModuleType
    train_images: torch.Tensor
    train_injected: np.ndarray
    test_images: torch.Tensor
    test_labels: np.ndarray
    groups: dict[str, np.ndarray]
    rows: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def __call__(self, step: int, model: torch.nn.Module) -> None:
        if step % self.every:
            return
        was_training = model.training
        model.eval()
        row = {"step": step, "detection_auroc": float("nan")}
        if self.train_injected.any():
            row["detection_auroc"] = metrics.detection_auroc(
                self.train_injected, self.module.score_train(model, self.train_images))
        scores = self.module.predict(model, self.test_images)[0]
        row |= evaluate.image_aurocs(self.test_labels, scores, self.groups)
        self.rows.append(row)
        model.train(was_training)


def table(rows: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """The compact view of results rows printed by the CLI."""
    df = pd.DataFrame(rows)
    cols = ["method", "dataset", "category", "noise_ratio", "n_injected", "seed",
            "profile", "teacher", "image_auroc", "pixel_auroc", "pixel_aupro",
            "detection_auroc", "fit_seconds"]
    return df[[c for c in cols if c in df]]
