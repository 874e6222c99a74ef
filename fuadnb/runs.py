"""Run folders, the train-once cache, and the tidy results table.

A run is keyed by a hash of everything that determines its model: method, dataset,
category, contamination protocol and the exact injected ids, seed, profile, the
method's full Config and `CACHE_VERSION`. Its folder holds::

    runs/<method>/<dataset>/<category>/n0.10-pool/s111-<key>/
        config.json      the full identity (what was hashed)
        split.json       the contamination manifest (injected / removed ids)
        weights.pt       trained state (minus parts `build` restores exactly)
        trace.npz        the method's per-iteration record, if it keeps one
        fit.json         fit seconds and loss history; written last = "trained"
        predictions.npz  ids, labels and scores of test and training images
        metrics.json     the flat results row

Every file is written to a temporary name and renamed, so an interrupted run leaves
no half-written file; a folder without ``fit.json`` is retrained.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from fuadnb.config import short_hash, to_jsonable
from fuadnb.utils import atomic_path, atomic_write_text

CACHE_VERSION = 3   # bump by hand when a code change should invalidate cached runs
RESULTS_FILE = "results.csv"
TRACE_FILE = "trace.npz"   # a method's per-iteration record (``model.trace``), if any
CURVE_FILE = "curve.json"   # the learning-bias curve (``model.curve``), if recorded


@dataclass(frozen=True)
class RunSpec:
    """What identifies one run (the model and its evaluation data)."""

    method: str
    dataset: str
    category: str
    noise_ratio: float
    regime: str
    seed: int
    profile: str
    cfg: Any                                   # the method's frozen Config
    split: dict = field(repr=False)            # the contamination manifest
    root: Path | str = "runs"
    strategy: Any = None                       # a strategy's frozen Config (LLB)
    curve_every: int = 0                       # steps between learning-bias records

    def identity(self) -> dict:
        """Everything hashed into the run key (JSON-ready)."""
        split_keys = ("definition", "source", "injected_ids", "removed_from_test_ids",
                      "n_clean_train")
        return {"method": self.method, "dataset": self.dataset,
                "category": self.category, "noise_ratio": self.noise_ratio,
                "regime": self.regime, "seed": self.seed, "profile": self.profile,
                "cfg": to_jsonable(self.cfg),
                "split": {k: self.split[k] for k in split_keys},
                "cache_version": CACHE_VERSION} | (
            {} if self.strategy is None else {"strategy": to_jsonable(self.strategy)}
        ) | ({"curve_every": self.curve_every} if self.curve_every else {})

    @property
    def key(self) -> str:
        return short_hash(self.identity())

    @property
    def dir(self) -> Path:
        tag = f"n{self.noise_ratio:.2f}-{self.regime}"
        return (Path(self.root) / self.method / self.dataset / self.category / tag
                / f"s{self.seed}-{self.key}")


def _save_torch(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=1) + "\n")


def load_or_fit(spec: RunSpec, *, build: Callable[[], nn.Module],
                fit: Callable[[], nn.Module]) -> tuple[nn.Module, dict]:
    """The trained model of `spec`: loaded if its folder is complete, else trained.

    Args:
        build: an untrained model with the right structure (to load weights into).
        fit: trains and returns a model.

    Returns:
        the model in eval mode, and the fit record (``fit_seconds``, ``history``,
        ``loaded``).
    """
    folder = spec.dir
    fit_file, weights = folder / "fit.json", folder / "weights.pt"
    if fit_file.is_file() and weights.is_file():
        model = build()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = model.load_state_dict(state, strict=False)
        restored = tuple(getattr(model, "reproducible_prefixes", ()))
        bad = [k for k in missing if not k.startswith(restored)] + list(unexpected)
        if bad:
            raise RuntimeError(f"{weights}: does not match the model ({bad[:3]}...); "
                               f"delete {folder} to retrain")
        if (folder / TRACE_FILE).is_file():
            model.trace = _load_npz(folder / TRACE_FILE)
        if (folder / CURVE_FILE).is_file():
            model.curve = json.loads((folder / CURVE_FILE).read_text())
        record = json.loads(fit_file.read_text())
        return model.eval(), record | {"loaded": True}
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", spec.identity())
    _write_json(folder / "split.json", spec.split)
    start = time.perf_counter()
    model = fit()
    seconds = time.perf_counter() - start
    skip = tuple(getattr(model, "reproducible_prefixes", ()))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()
             if not (skip and k.startswith(skip))}
    _save_torch(state, weights)
    if getattr(model, "trace", None):
        _save_npz(folder / TRACE_FILE, model.trace)
    if getattr(model, "curve", None):
        _write_json(folder / CURVE_FILE, model.curve)
    record = {"fit_seconds": seconds, "history": list(getattr(model, "history", []))}
    _write_json(fit_file, record)
    return model.eval(), record | {"loaded": False}


def load_or_compute(path: Path, compute: Callable[[], dict[str, np.ndarray]]
                    ) -> dict[str, np.ndarray]:
    """Named arrays cached in the ``.npz`` file `path`: loaded if it exists, else
    computed and written atomically."""
    if path.is_file():
        return _load_npz(path)
    arrays = compute()
    _save_npz(path, arrays)
    return arrays


def save_predictions(spec: RunSpec, **arrays: np.ndarray) -> Path:
    """Store named arrays (ids, labels, scores, ...) as ``predictions.npz``."""
    return _save_npz(spec.dir / "predictions.npz", arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return dict(arrays)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def save_row(spec: RunSpec, row: dict) -> Path:
    """Write the run's flat results row as ``metrics.json``."""
    path = spec.dir / "metrics.json"
    _write_json(path, row)
    return path


def flat_row(spec: RunSpec) -> dict:
    """The identifying columns of a results row (``cfg.*`` flattened)."""
    ident = spec.identity()
    row = {k: ident[k] for k in ("method", "dataset", "category", "noise_ratio",
                                 "regime", "seed", "profile")}
    row |= {"definition": spec.split["definition"], "source": spec.split["source"],
            "n_injected": spec.split["n_injected"], "run_key": spec.key}
    row |= {f"cfg.{k}": v for k, v in ident["cfg"].items()}
    row |= {f"strategy.{k}": v for k, v in ident.get("strategy", {}).items()}
    return row


def collect(root: Path | str = "runs") -> pd.DataFrame:
    """One row per finished run under `root` (every ``metrics.json``)."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(root).rglob("metrics.json"))]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    order = [c for c in ("method", "dataset", "category", "noise_ratio", "seed")
             if c in df]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def write_table(df: pd.DataFrame, path: Path | str) -> Path:
    """Write `df` as CSV atomically."""
    path = Path(path)
    atomic_write_text(path, df.to_csv(index=False))
    return path
