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
import json
import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import yaml

from fuadnb import config, data, engine, evaluate, metrics, models, runs
from fuadnb.data import synthetic
from fuadnb.data.contamination import REGIMES, ContaminationError
from fuadnb.strategies import STRATEGIES
from fuadnb.utils import (
    Timer,
    __version__,
    check_name,
    device_name,
    git_commit,
    parse_device,
    pick_device,
)

DEFINITIONS = ("softpatch", "fraction")


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

    def __post_init__(self):   # every field checked, one value whatever the types
        if self.dataset not in data.DATASETS:
            raise _field("dataset", f"must be one of {list(data.DATASETS)}, got "
                         f"{self.dataset!r}")
        if not isinstance(self.root, (str, Path)) or not str(self.root).strip():
            raise _field("root", f"must be a dataset folder (a path), got "
                         f"{self.root!r}")
        try:
            check_name(self.category, "it")
        except ValueError as err:
            raise _field("category", str(err).removeprefix("it ")) from None
        ratio = _number(self.noise_ratio)
        if ratio is None or not math.isfinite(ratio) or ratio < 0:
            raise _field("noise_ratio", f"must be a finite number >= 0, got "
                         f"{self.noise_ratio!r}")
        if self.regime not in REGIMES:
            raise _field("regime", f"must be one of {list(REGIMES)}, got "
                         f"{self.regime!r}")
        if self.definition not in DEFINITIONS:
            raise _field("definition", f"must be one of {list(DEFINITIONS)}, got "
                         f"{self.definition!r}")
        repeat, seed = self.repeat, _number(self.seed)
        if not isinstance(repeat, (bool, np.bool_)) and repeat not in (0, 1):
            raise _field("repeat", f"must be true or false, got {repeat!r}")
        if seed is None or not seed.is_integer() or not 0 <= seed < 2**32:
            raise _field("seed", f"must be a whole number from 0 to 2**32 - 1, got "
                         f"{self.seed!r}")
        for name, value in (("root", Path(self.root)), ("noise_ratio", ratio),
                            ("repeat", bool(repeat)), ("seed", int(seed))):
            object.__setattr__(self, name, value)

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


# a Scenario field -> the CLI option and the notebook parameter that set it
FIELDS = {"dataset": ("--dataset", "DATASET"), "root": ("--root", "DATA_ROOT"),
          "category": ("--category", "CATEGORY"),
          "noise_ratio": ("--noise", "NOISE_RATIO"), "regime": ("--regime", "REGIME"),
          "definition": ("--definition", "DEFINITION"),
          "repeat": ("--repeat", "REPEAT"), "seed": ("--seed", "SEED")}


def _field(name: str, what: str) -> ValueError:
    """A bad Scenario field, named as the API, the CLI and the notebooks name it."""
    option, parameter = FIELDS[name]
    return ValueError(f"{name.replace('_', ' ')} (Scenario {name}, {option}, "
                      f"{parameter}) {what}")


def _number(value: Any) -> float | None:
    """`value` as a float: a number (not a bool) or a text that reads as one (a
    grid file's ``"7"``); None for anything else."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` is no noise ratio or seed)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not \
        isinstance(value, (bool, np.bool_))


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
    return module, cfg, (STRATEGIES[strategy].config(profile, **own) if strategy
                         else None)


@dataclass(frozen=True)
class Plan:
    """What `run` will compute, decided before any image is loaded (`plan`).

    Attributes:
        module: the method's module; strategy: its strategy's module, or None.
        cfg: the method's Config, ``precision`` resolved for the device.
        spec: the run's `runs.RunSpec`: its ``key`` names the trained model, its
            ``inputs_key`` everything the results row depends on.
        recipe: JSON-ready arguments that `plan` turns into the same spec again
            on any machine (`current`), stored in every row.
        located: the row's columns of what the method found beside the data
            (``locate``: RD-E's ``textures``).
    """

    module: ModuleType
    strategy: ModuleType | None
    cfg: Any
    split: data.Split
    spec: runs.RunSpec
    recipe: dict[str, Any]
    located: dict[str, Any]


def plan(method: str, scenario: Scenario, *, profile: str = "demo",
         device: str | torch.device = "auto", runs_root: Path | str = "runs",
         options: dict[str, Any] | None = None, curve_every: int = 0) -> Plan:
    """The one definition of a run's inputs: method, settings, the contaminated
    split and the contents of every file the row depends on (training and test
    images, masks, weights, textures), as `run` uses them; reads the dataset's
    index and hashes its files, trains nothing.

    Raises:
        ValueError: a bad argument, naming it (DatasetError / ContaminationError
            for the data).
    """
    if not isinstance(method, str):
        raise ValueError(f"method must be a method name such as 'rd', got {method!r}")
    if not isinstance(scenario, Scenario):
        raise ValueError("scenario must be a fuadnb.experiment.Scenario, got "
                         f"{type(scenario).__name__}")
    if profile not in config.PROFILES:
        raise ValueError(f"profile must be one of {list(config.PROFILES)}, got "
                         f"{profile!r}")
    if options is not None and (not isinstance(options, Mapping) or not all(
            isinstance(k, str) for k in options)):
        raise ValueError(f"options must be a mapping of Config field name -> value, "
                         f"got {options!r}")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not isinstance(runs_root, (str, os.PathLike)) or not str(runs_root).strip():
        raise ValueError(f"runs_root must be a folder path, got {runs_root!r}")
    if not _is_number(curve_every) or curve_every < 0 or curve_every != int(
            curve_every):
        raise ValueError(f"curve_every must be a whole number >= 0, got "
                         f"{curve_every!r}")
    name, _ = parse_method(method)
    dev = pick_device(device) if isinstance(device, str) else device
    module, cfg, strategy_cfg = configure(method, dataset=scenario.dataset,
                                          category=scenario.category, profile=profile,
                                          seed=scenario.seed, options=options)
    cfg = dataclasses.replace(cfg, precision=engine.resolve(cfg.precision, dev))
    cfg, located = module.locate(cfg, scenario.root)
    split = scenario.split()
    if curve_every:
        _check_curve(method, module, name, cfg, len(split.train), curve_every)
    spec = runs.RunSpec(method, scenario.dataset, scenario.category,
                        scenario.noise_ratio, scenario.regime, scenario.seed, profile,
                        cfg, split.manifest, root=runs_root, strategy=strategy_cfg,
                        inputs=inputs(module, split, cfg), curve_every=curve_every,
                        # a strategy trains on what its stage-1 scores pick, so
                        # the method's scoring settings are training settings there
                        evaluation=() if name else module.EVALUATION,
                        test_inputs=test_inputs(split),
                        paths=tuple(k for k, v in config.to_jsonable(cfg).items()
                                    if _is_path(v)))
    given = {k: v for k, v in (options or {}).items() if v is not None}
    recipe = {"method": method, "profile": profile, "curve_every": int(curve_every),
              "cwd": _portable(Path.cwd()),   # relative paths in options start here
              "scenario": scenario.as_dict() | {"root": _portable(scenario.root)},
              "options": config.to_jsonable(given | {"precision": cfg.precision})}
    return Plan(module, STRATEGIES[name] if name else None, cfg, split, spec, recipe,
                located)


def _check_curve(method: str, module: ModuleType, strategy: str | None, cfg: Any,
                 n_train: int, curve_every: int) -> None:
    """A learning-bias curve interval the run can record, else one ValueError that
    names the setting (``--curve-every``, a chapter's ``CURVE_EVERY``) and the
    largest value that works."""
    if strategy or not module.MONITOR:
        raise ValueError(f"curve_every (--curve-every, CURVE_EVERY): method "
                         f"{method!r} does not report a learning-bias curve (rd "
                         "does); set it to 0")
    total = module.budget(cfg, n_train).steps
    if not 0 < curve_every <= total:
        raise ValueError(f"curve_every (--curve-every, CURVE_EVERY) {curve_every} "
                         f"must be between 1 and the run's {total} optimiser steps "
                         f"({n_train} training images); pass e.g. "
                         f"-p CURVE_EVERY={max(1, total // 10)}")


CHECKOUT = Path(os.path.abspath(__file__)).parents[1]   # an editable install's checkout


def _portable(root: Path) -> str:
    """A folder as a recipe keeps it: relative to the checkout when inside it
    (``data/synthetic``, so a committed row holds in any clone), else absolute.
    Symbolic links are kept, not followed (``data/mvtec_ad`` may link to the
    dataset elsewhere)."""
    absolute = Path(os.path.abspath(root))
    try:
        return absolute.relative_to(CHECKOUT).as_posix()
    except ValueError:
        return str(absolute)


def _names_a_path(value: Any) -> bool:
    """A Config value written as a file or folder (a weights file, a texture
    folder), as opposed to a choice such as ``imagenet``."""
    return isinstance(value, str) and ("/" in value or value.endswith((".pth", ".pt")))


def _is_path(value: Any) -> bool:
    """A Config value that names a file or folder on disk."""
    return _names_a_path(value) and Path(value).exists()


def _anchored(options: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """`options` with each relative file or folder read from `base` (where the
    notebook's kernel runs), without moving this process's working folder."""
    return {k: str(base / v) if _names_a_path(v) and not Path(v).is_absolute()
            else v for k, v in options.items()}


def current(row: Mapping[str, Any]) -> str:
    """Whether a results row still describes what is on disk: ``"current"`` when
    its recipe gives the same `runs.RunSpec.inputs_key` today (same data, masks,
    weights, textures, settings and cache version), else why not: ``"changed:
    test_images, ..."`` (the inputs whose contents differ), ``"missing: ..."``
    (the data cannot be read any more) or ``"unknown: ..."`` (a row without a
    recipe, written before rows kept one)."""
    recipe = row.get("recipe")
    if not isinstance(recipe, (str, Mapping)) or not recipe:
        return "unknown: the row has no recipe (written by an older fuadnb)"
    try:
        recipe = json.loads(recipe) if isinstance(recipe, str) else recipe
        where = recipe["scenario"] | {"root": CHECKOUT / recipe["scenario"]["root"]}
        cwd = CHECKOUT / recipe.get("cwd", ".")   # where relative option paths start
        again = plan(recipe["method"], Scenario(**where),
                     profile=recipe["profile"], device="cpu",
                     options=_anchored(recipe["options"], cwd),
                     curve_every=recipe["curve_every"])
    except (ValueError, KeyError, TypeError, OSError) as err:
        return f"missing: {' '.join(str(err).split())}"
    if again.spec.inputs_key == row.get("inputs_key"):
        return "current"
    found = {**again.spec.inputs, **again.spec.test_inputs}
    changed = [k for k, v in found.items() if row.get(f"inputs.{k}") != v]
    return "changed: " + (", ".join(changed) or "settings or code (cache version)")


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
        the Result; its row (with the `plan`'s recipe and inputs key, so that
        `current` can tell later whether it still holds) is also written to
        ``<run dir>/metrics.json``.
    """
    dev = pick_device(device)
    planned = plan(method, scenario, profile=profile, device=dev,
                   runs_root=runs_root, options=options, curve_every=curve_every)
    module, strategy, cfg = planned.module, planned.strategy, planned.cfg
    split, spec, located = planned.split, planned.spec, planned.located
    runs.check_root(runs_root)
    spec.dir   # noqa: B018 -- refuses a run folder outside runs_root before training
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
    if curve_every:   # its value was checked by `plan`
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
        **environment(dev), "recipe": json.dumps(planned.recipe, sort_keys=True)}
    runs.save_row(spec, row)
    return Result(row=row, dir=spec.dir, split=split, model=model,
                  test_images=test_images, test_masks=test_masks[:, 0].numpy(),
                  test_maps=maps, test_scores=scores,
                  train_images=train_images.cpu(), train_scores=train_scores)


# the Config fields the chapters and the benchmark cell pass as parameters
# (`fuadnb.nb.options`), by parameter name
OPTION_PARAMETERS = {"BACKBONE": "backbone", "WEIGHTS": "weights", "STEPS": "steps",
                     "EPOCHS": "epochs", "ITERATIONS": "iterations",
                     "IMAGE_SIZE": "image_size", "PRECISION": "precision"}


def check_parameters(parameters: Mapping[str, Any], folder: Path | str) -> None:
    """Check a notebook's parameters before its kernel starts (`fuadnb.book`,
    `fuadnb.grid`): the run parameters the chapters and the benchmark cell share
    (``DATASET, DATA_ROOT, CATEGORY, METHOD, PROFILE, NOISE_RATIO, REGIME, SEED,
    DEVICE, OPTIONS``, the Config fields, ``CURVE_EVERY``), each where present.
    ``DATA_ROOT`` is read relative to `folder` (the notebook's, papermill's cwd).

    What needs the data (the categories there, the learning-bias curve's interval
    against the run's optimiser steps) is checked when the data is there: the
    synthetic benchmark is generated by the first kernel.

    Raises:
        ValueError: one message naming the parameter and what it must be.
    """
    p = dict(parameters)

    def bad(name: str, what: str) -> ValueError:
        return ValueError(f"parameter {name}={p[name]!r}: {what}")

    dataset = p.get("DATASET", "synthetic")
    if dataset not in data.DATASETS:
        raise bad("DATASET", f"must be one of {list(data.DATASETS)}")
    if "METHOD" in p:
        try:
            parse_method(str(p["METHOD"]))
        except ValueError as err:
            raise bad("METHOD", str(err)) from None
    if p.get("PROFILE", "demo") not in config.PROFILES:
        raise bad("PROFILE", f"must be one of {list(config.PROFILES)}")
    if "DEVICE" in p:
        try:
            parse_device(str(p["DEVICE"]))
        except RuntimeError as err:
            raise bad("DEVICE", str(err)) from None
    extra = {}
    if "OPTIONS" in p and p["OPTIONS"] not in ("", None):
        try:
            extra = yaml.safe_load(p["OPTIONS"]) if isinstance(p["OPTIONS"], str) \
                else p["OPTIONS"]
        except yaml.YAMLError as err:
            raise bad("OPTIONS", f"not valid YAML ({err.problem})") from None
        if not isinstance(extra, dict):
            raise bad("OPTIONS", "must be a YAML mapping of Config field -> value, "
                      "e.g. {llb.keep: 0.5}")
    root = p.get("DATA_ROOT") or ""
    if not isinstance(root, str):
        raise bad("DATA_ROOT", "must be a folder path (text)")
    where = (Path(folder) / root).resolve() if root else None   # "": the default
    if where is not None and not where.is_dir() and dataset != "synthetic":
        raise bad("DATA_ROOT", f"{where} does not exist or is not a folder; pass the "
                  f"folder that holds the {dataset} categories")
    try:   # every field, whether or not the data is there to read
        scenario = Scenario(dataset, where or Path(folder), p.get("CATEGORY", "grass"),
                            p.get("NOISE_RATIO", 0.0), p.get("REGIME", "iid"),
                            p.get("DEFINITION", "softpatch"), p.get("REPEAT", False),
                            p.get("SEED", 111))
    except ValueError as err:   # names the field, its option and its parameter
        raise ValueError(f"parameters: {err}") from None
    curve_every = p.get("CURVE_EVERY", 0)
    if not _is_number(curve_every) or curve_every < 0:
        raise bad("CURVE_EVERY", "must be a whole number >= 0")
    options = {field: p[name] for name, field in OPTION_PARAMETERS.items()
               if name in p and (isinstance(p[name], bool) or p[name])}
    method = str(p.get("METHOD", "rd"))   # the chapters that record a curve run RD
    curve = where is not None and where.is_dir() and curve_every
    if "METHOD" not in p and not curve:   # a chapter's options: not one method's
        return
    # the benchmark cell: its options (OPTIONS too) are this method's, and a path
    # among them (RD-E's textures) is read from `folder`, where the kernel runs
    module, cfg, _ = configure(method, dataset=dataset, category=scenario.category,
                               profile=p.get("PROFILE", "demo"), seed=scenario.seed,
                               options=_anchored(options | (
                                   extra if "METHOD" in p else {}), Path(folder)))
    if not curve:
        return
    split = scenario.split()
    _check_curve(method, module, parse_method(method)[0], cfg, len(split.train),
                 curve_every)


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


def test_inputs(split: data.Split) -> dict[str, str]:
    """Content fingerprints of what a run is evaluated on
    (`runs.RunSpec.test_inputs`): the test images and their masks, in order."""
    masks = [p for p in split.test["mask_path"] if p is not None]
    return {"test_images": runs.fingerprint(split.test["image_path"]),
            "test_masks": runs.fingerprint(masks)}


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
            "detection_auroc", "fit_seconds", "inputs"]
    return df[[c for c in cols if c in df]]
