"""Detection methods, one module each, with the surface written down in `Method`.

`register` refuses a module that lacks part of it, so a new method fails at import,
not in the middle of a run. What every method does the same way (prediction, the
``config`` function, the model's record of its fit, the Config fields with one
meaning across methods: ``precision``, ``load_size``) is in `fuadnb.models.base`.
"""

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from fuadnb.models import base, cdd, funad, patchcore, rd, rde, softpatch


@runtime_checkable
class Method(Protocol):
    """What `fuadnb.experiment.run`, the strategies, the chapters and the tests call
    on a method module.

    Attributes:
        Config: a frozen dataclass deriving from `base.Config` (paper defaults,
            tagged with their source).
        PROFILES: profile name -> Config values (``paper``, ``demo``, ``smoke``).
        EVALUATION: Config fields that only change how a trained model is scored,
            left out of the run key.
        MONITOR: whether ``fit`` takes ``monitor`` (an `fuadnb.engine.Monitor`
            called after every optimiser step: the learning-bias curve).
    """

    Config: type
    PROFILES: dict[str, dict]
    EVALUATION: tuple[str, ...]
    MONITOR: bool

    def config(self, profile: str = "paper", **overrides: Any) -> Any:
        """The profile's Config with `overrides` (`base.configurator`)."""

    def category_options(self, profile: str, dataset: str, category: str,
                         kind: str) -> dict[str, Any]:
        """Config values that depend on the dataset and category (below the
        caller's options, above the profile's)."""

    def locate(self, cfg: Any, data_root: Path | str
               ) -> tuple[Any, dict[str, Any]]:
        """`cfg` with the settings that depend on where the data lies resolved
        (RD-E's ``textures="auto"``: DTD beside the dataset root, if there), and
        results-row columns saying what was found."""

    def build(self, cfg: Any) -> base.Model:
        """An untrained model (loads a cached run's weights)."""

    def fit(self, cfg: Any, train_images: torch.Tensor, *, device: torch.device,
            progress: bool = False) -> base.Model:
        """Train on uint8 images (N, 3, S, S); the model, in eval mode."""

    def predict(self, model: base.Model, images: torch.Tensor, *,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (N,) and maps (N, S, S); higher = more anomalous."""

    def predict_train(self, model: base.Model, train_images: torch.Tensor, *,
                      progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (N,) and maps (N, S, S) of images the model was fitted on,
        each held out where the method can (a memory bank leaves the image's own
        patches out; a trained network predicts as usual: `base.predict_train`)."""

    def score_train(self, model: base.Model, train_images: torch.Tensor
                    ) -> np.ndarray:
        """Every training image's score (to rank the contaminating ones): the
        scores of ``predict_train``."""

    def budget(self, cfg: Any, n_train: int) -> base.Budget:
        """Optimiser steps and images processed by one fit on `n_train` images."""

    def inputs(self, cfg: Any) -> dict[str, Path | list[Path]]:
        """The files a fit reads besides the training images, by name: one file or
        a list (their contents key the run; `base.inputs` names a weights file)."""


REQUIRED = ("Config", "PROFILES", "EVALUATION", "MONITOR", "config",
            "category_options", "locate", "build", "fit", "predict",
            "predict_train", "score_train", "budget", "inputs")
CALLABLE = ("config", "category_options", "locate", "build", "fit", "predict",
            "predict_train", "score_train", "budget", "inputs")
REGISTRY: dict[str, ModuleType] = {}


def register(name: str, module: ModuleType) -> ModuleType:
    """Add `module` to `REGISTRY` as `name`, after checking it has the whole method
    surface (a TypeError naming what is missing otherwise)."""
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    missing += [a for a in CALLABLE
                if a not in missing and not callable(getattr(module, a))]
    if missing:
        raise TypeError(f"method {name!r} ({module.__name__}) lacks {missing} of the "
                        f"method interface (fuadnb.models.Method)")
    REGISTRY[name] = module
    return module


for _name, _module in (("rd", rd), ("rde", rde), ("cdd", cdd), ("funad", funad),
                       ("patchcore", patchcore), ("softpatch", softpatch)):
    register(_name, _module)

# methods defined outside fuadnb, registered in every process that imports it (a
# grid's kernels, the CLI): ``name=module`` entries separated by commas, ``module`` a
# dotted module name on the Python path or a ``.py`` file
PLUGINS = "FUADNB_METHODS"


def load_plugins(spec: str | None = None) -> list[str]:
    """Import and `register` the methods `spec` names (default: the ``FUADNB_METHODS``
    environment variable), e.g. ``knn=notebooks/knn_method.py`` or
    ``knn=my_package.knn``. Returns the names registered.

    Raises:
        ValueError: an entry that is not ``name=module``, a file or module that
            cannot be imported; TypeError: a module that lacks part of `Method`.
    """
    spec = os.environ.get(PLUGINS, "") if spec is None else spec
    names = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, sep, target = (part.strip() for part in entry.partition("="))
        if not sep or not name.isidentifier() or not target:
            raise ValueError(f"{PLUGINS}: {entry!r} is not name=module (e.g. "
                             "knn=my_methods/knn.py or knn=my_package.knn)")
        try:
            if target.endswith(".py"):
                path = Path(target).expanduser().resolve()
                found = importlib.util.spec_from_file_location(
                    f"fuadnb_method_{name}", path)
                if found is None or not path.is_file():
                    raise FileNotFoundError(f"no file {path}")
                module = importlib.util.module_from_spec(found)
                sys.modules[found.name] = module   # dataclasses look it up
                found.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
        except Exception as err:   # whatever the module's own import raises
            raise ValueError(f"{PLUGINS}: method {name!r} from {target!r} cannot be "
                             f"imported ({type(err).__name__}: {err})") from err
        register(name, module)
        names.append(name)
    return names


load_plugins()


def get(name: str) -> ModuleType:
    """The method module called `name`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]
