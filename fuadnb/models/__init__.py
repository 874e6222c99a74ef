"""Detection methods, one module each, with the surface written down in `Method`.

Every method module provides ``Config`` (a frozen dataclass: paper defaults, tagged
with their source), ``PROFILES``, ``config(profile, **overrides)``, ``build(cfg)``,
``fit(cfg, train_images, *, device, progress)``, ``predict(model, images, *,
progress)`` and ``score_train(model, train_images)``; `register` refuses a module
that lacks one of them, so a new method fails at import, not in the middle of a run.
Optional: ``EVALUATION`` (Config fields that only change how a trained model is
scored: left out of the run key), ``steps(cfg, n_train)`` (its own count of
optimiser steps), a ``monitor``
keyword of ``fit`` (the learning-bias curve), ``category_options`` (per-category
settings).
"""

from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from fuadnb.models import cdd, funad, patchcore, rd, rde, softpatch


@runtime_checkable
class Method(Protocol):
    """What `fuadnb.experiment.run`, the chapters and the tests call on a method."""

    Config: type
    PROFILES: dict[str, dict]
    config: Callable[..., Any]

    def build(self, cfg: Any) -> torch.nn.Module: ...

    def fit(self, cfg: Any, train_images: torch.Tensor, *, device: torch.device,
            progress: bool = False) -> torch.nn.Module: ...

    def predict(self, model: torch.nn.Module, images: torch.Tensor, *,
                progress: bool = False) -> tuple[np.ndarray, np.ndarray]: ...

    def score_train(self, model: torch.nn.Module, train_images: torch.Tensor
                    ) -> np.ndarray: ...


REQUIRED = ("Config", "PROFILES", "config", "build", "fit", "predict", "score_train")
REGISTRY: dict[str, ModuleType] = {}


def register(name: str, module: ModuleType) -> ModuleType:
    """Add `module` to `REGISTRY` as `name`, after checking it has the whole method
    surface (a TypeError naming what is missing otherwise)."""
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    missing += [a for a in ("build", "fit", "predict", "score_train", "config")
                if a not in missing and not callable(getattr(module, a))]
    if missing:
        raise TypeError(f"method {name!r} ({module.__name__}) lacks {missing} of the "
                        f"method interface (fuadnb.models.Method)")
    REGISTRY[name] = module
    return module


for _name, _module in (("rd", rd), ("rde", rde), ("cdd", cdd), ("funad", funad),
                       ("patchcore", patchcore), ("softpatch", softpatch)):
    register(_name, _module)


def get(name: str) -> ModuleType:
    """The method module called `name`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]
