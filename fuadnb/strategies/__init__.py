"""Strategies around a detection method (they call its module surface, `Method`,
and nothing method-specific): `llb`, filtering the training set by learning bias.
A run of ``<strategy>-<method>`` (``llb-rd``) is the strategy around the method;
`Strategy` is what `fuadnb.experiment.run` calls."""

from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from fuadnb import runs
from fuadnb.models import base
from fuadnb.strategies import llb


@runtime_checkable
class Strategy(Protocol):
    """A strategy module's surface.

    Attributes:
        Config: its frozen dataclass of options (``<strategy>.<field>`` in a run's
            options); part of the run key.
    """

    Config: type

    def config(self, profile: str = "paper", **overrides: Any) -> Any:
        """Its Config in the run's `profile` with `overrides` (None values
        ignored)."""

    def fit(self, method: ModuleType, spec: runs.RunSpec, train_images: torch.Tensor,
            train_ids: np.ndarray, *, device: torch.device, progress: bool = False
            ) -> base.Model:
        """The trained model of `method` for the run `spec` (``spec.strategy``: the
        strategy's Config); its own caches live beside the run's folder."""

    def report(self, method: ModuleType, cfg: Any, model: base.Model,
               train_injected: np.ndarray
               ) -> tuple[base.Budget, float, dict[str, float]]:
        """The run's schedule, fit seconds and the strategy's own columns."""


STRATEGIES: dict[str, ModuleType] = {"llb": llb}
