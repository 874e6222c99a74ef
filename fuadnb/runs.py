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

The key covers contents, not names: `RunSpec.inputs` holds fingerprints of the
training images actually used and of a teacher weights file (`fingerprint`), so
regenerated data, another copy of a dataset or a weights file replaced in place give
another key and a fresh training, never a stale model. A results row depends on more
than its model: `RunSpec.inputs_key` adds the evaluation settings and the contents of
the test images and masks (`RunSpec.test_inputs`). That one key is what the run
cache, the grid's "done" and ``results``' "current" all compare
(`fuadnb.experiment.current`).

A trained model's folder is written as a hidden temporary sibling
(``.s111-<key>.tmp-<pid>-<random>``) and renamed into place once ``fit.json`` is
written, so a run folder either holds a complete model or does not exist; an
interrupted training leaves at most that temporary folder, which `incomplete` lists
and the next training of the same run removes. ``predictions.npz`` and
``metrics.json`` are added after evaluation (each written atomically); a folder
without ``metrics.json`` is listed by `incomplete` as trained but not evaluated.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from fuadnb.config import short_hash, to_jsonable
from fuadnb.utils import (
    atomic_path,
    atomic_write_text,
    check_name,
    confined,
    pid_alive,
)

CACHE_VERSION = 5   # bump by hand when a code change should invalidate cached runs
TMP_MARK = ".tmp-"  # in the names of the hidden folders a training writes into


class RunCacheError(ValueError):
    """A cached run folder or file cannot be read, or the runs root is unusable."""
RESULTS_FILE = "results.csv"
WEIGHTS_FILE = "weights.pt"   # a trained model's state (`load_or_fit`)
TRACE_FILE = "trace.npz"   # a method's per-iteration record (``model.trace``), if any
CURVE_FILE = "curve.json"   # the learning-bias curve (``model.curve``), if recorded


class Cached(Protocol):
    """What `load_or_fit` keeps of a trained model besides its state dict (every
    method's model is one: `fuadnb.models.base.Model`)."""

    reproducible_prefixes: tuple[str, ...]   # state-dict parts `build` restores
    history: list[float]                     # loss per epoch -> fit.json
    trace: dict[str, np.ndarray]             # per-iteration record -> trace.npz
    curve: list[dict[str, float]]            # learning-bias curve -> curve.json

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True
                        ) -> Any: ...

    def eval(self) -> Cached: ...


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
    inputs: dict = field(default_factory=dict)  # content fingerprints (`fingerprint`)
    curve_every: int = 0                       # steps between learning-bias records
    evaluation: tuple[str, ...] = ()           # cfg fields left out of the key
    test_inputs: dict = field(default_factory=dict)  # test images' and masks'
    paths: tuple[str, ...] = ()   # cfg fields naming files fingerprinted in inputs

    def identity(self) -> dict:
        """Everything hashed into the run key (JSON-ready): what the trained model
        depends on; the cfg fields named in `evaluation` (the method's
        ``EVALUATION``: smoothing, fusion, batch sizes) are left out, so changing
        them re-scores the cached model instead of retraining it."""
        split_keys = ("definition", "source", "injected_ids", "removed_from_test_ids",
                      "n_clean_train")
        return {"method": self.method, "dataset": self.dataset,
                "category": self.category, "noise_ratio": self.noise_ratio,
                "regime": self.regime, "seed": self.seed, "profile": self.profile,
                "cfg": {k: v for k, v in to_jsonable(self.cfg).items()
                        if k not in self.evaluation},
                "split": {k: self.split[k] for k in split_keys},
                "inputs": dict(self.inputs), "cache_version": CACHE_VERSION} | (
            {} if self.strategy is None else {"strategy": to_jsonable(self.strategy)}
        ) | ({"curve_every": self.curve_every} if self.curve_every else {})

    @property
    def key(self) -> str:
        """The run key: what the trained model depends on (`identity`)."""
        return short_hash(self.identity())

    @property
    def inputs_key(self) -> str:
        """What a results row depends on: the run key's inputs, the evaluation
        settings it leaves out, and the contents of the test images and masks.
        The cfg fields in `paths` (a weights file, a texture folder) count by their
        contents (in `inputs`), not by how their path was written, so the key is
        the same from any folder or clone."""
        ident, cfg = self.identity(), to_jsonable(self.cfg)
        for name in self.paths:
            ident["cfg"][name] = cfg[name] = "<file>"
        return short_hash({"run": ident, "cfg": cfg, "test": dict(self.test_inputs)})

    @property
    def dir(self) -> Path:
        """The run folder, always inside `root` (a category or method name that
        would lead out of it is one ValueError)."""
        for what in ("method", "dataset", "category", "regime"):
            check_name(getattr(self, what), f"run folder: {what}")
        tag = f"n{self.noise_ratio:.2f}-{self.regime}"
        folder = (Path(self.root) / self.method / self.dataset / self.category / tag
                  / f"s{self.seed}-{self.key}")
        confined(folder, self.root, "run folder")
        return folder


RECENT = 1.0   # seconds: a file changed this recently is hashed again next time
_FILE_HASHES: dict[tuple, str] = {}   # (path, dev, inode, size, mtime, ctime) -> sha1


def file_hash(path: Path | str) -> str:
    """The sha1 of a file's bytes, remembered per (path, device, inode, size,
    mtime_ns, ctime_ns), so a file is read once per process unless it changes.

    The modification time alone is not enough: a program can write a file and set
    its mtime back (``touch -r``, ``os.utime``, an archive tool). The change time
    (ctime) is set by the kernel on every write, rename or utime, and no user call
    can set it, so a later rewrite gets a new key; a file replaced by another (a
    rename) also has another inode. Where the file system's ctime is coarse (one
    clock tick on older kernels), a rewrite within the same tick could keep its
    ctime: a file changed less than `RECENT` seconds before it is hashed is not
    remembered (git's "racy clean" rule)."""
    path = Path(path)
    st = path.stat()
    key = (os.path.abspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
           st.st_ctime_ns)
    if key in _FILE_HASHES:
        return _FILE_HASHES[key]
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha1").hexdigest()
    if time.time_ns() - max(st.st_ctime_ns, st.st_mtime_ns) > RECENT * 1e9:
        _FILE_HASHES[key] = digest
    return digest


def fingerprint(paths: Any) -> str:
    """One short hash of the contents of `paths`, in order (names do not count)."""
    digest = hashlib.sha1()
    for path in paths:
        digest.update(file_hash(path).encode())
    return digest.hexdigest()[:16]


def check_root(root: Path | str) -> Path:
    """`root` as a folder run folders can be written to (created if missing).

    Raises:
        RunCacheError: `root` is a file, or cannot be created or written to.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise RunCacheError(f"runs folder {root} is a file, not a folder; pass a "
                            "folder with --runs (it is created if missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f"{TMP_MARK}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise RunCacheError(f"cannot write run folders under {root} "
                            f"({err.strerror or err}); pass a writable folder with "
                            "--runs") from err
    return root


TEXT = ("method", "dataset", "category", "regime", "profile", "run_key")
NUMBERS = ("noise_ratio", "seed", "image_auroc")
ROW_COLUMNS = (*TEXT, *NUMBERS)   # every results row has them, of these kinds


def read_row(path: Path) -> dict:
    """A run's ``metrics.json`` as a results row, or one RunCacheError naming the
    file: unreadable, not a JSON object, or without the columns every row has."""
    row = read_json(path)
    if not isinstance(row, dict):
        raise RunCacheError(f"{path}: not a results row (a JSON object expected, "
                            f"found {type(row).__name__}); delete {path.parent} and "
                            "rerun the same command")
    missing = [c for c in ROW_COLUMNS if c not in row]
    if missing:
        raise RunCacheError(f"{path}: not a results row (no {', '.join(missing)}); "
                            f"delete {path.parent} and rerun the same command")
    wrong = [c for c in TEXT if not isinstance(row[c], str)] + [
        c for c in NUMBERS if row[c] is not None and (
            isinstance(row[c], bool) or not isinstance(row[c], (int, float)))]
    if wrong:
        raise RunCacheError(f"{path}: not a results row ({', '.join(wrong)} of the "
                            f"wrong kind); delete {path.parent} and rerun the same "
                            "command")
    return row


def read_json(path: Path) -> Any:
    """A cached JSON file, or one RunCacheError naming it and the fix."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunCacheError(f"{path}: unreadable cached file ({err}); delete "
                            f"{path.parent} to redo the run") from err


def _save_torch(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=1) + "\n")


def _temp_folder(folder: Path) -> Path:
    """A fresh hidden sibling of `folder` to train into, named with this process's
    id (stale siblings, whose process is gone, are removed first)."""
    for old in folder.parent.glob(f".*{TMP_MARK}*") if folder.parent.is_dir() else ():
        pid = old.name.split(TMP_MARK, 1)[1].split("-")[0]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(old, ignore_errors=True)
    name = f".{folder.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return folder.parent / name


def _load_cached(spec: RunSpec, build: Callable[[], Cached]
                 ) -> tuple[Cached, dict]:
    folder = spec.dir
    weights = folder / WEIGHTS_FILE
    record = read_json(folder / "fit.json")
    model = build()
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:   # truncated or not a checkpoint: many exception types
        raise RunCacheError(f"{weights}: unreadable cached weights "
                            f"({type(err).__name__}); delete {folder} to retrain") \
            from err
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError) as err:   # shapes, not a dict
        raise RunCacheError(f"{weights}: does not match the model "
                            f"({str(err)[:200]}); delete {folder} to retrain") from err
    restored = tuple(model.reproducible_prefixes)
    bad = [k for k in missing if not k.startswith(restored)] + list(unexpected)
    if bad:
        raise RunCacheError(f"{weights}: does not match the model ({bad[:3]}...); "
                            f"delete {folder} to retrain")
    if (folder / TRACE_FILE).is_file():
        try:
            model.trace = _load_npz(folder / TRACE_FILE)
        except Exception as err:
            raise RunCacheError(f"{folder / TRACE_FILE}: unreadable ({err}); delete "
                                f"{folder} to retrain") from err
    if (folder / CURVE_FILE).is_file():
        model.curve = read_json(folder / CURVE_FILE)
    return model.eval(), record | {"loaded": True}


def load_or_fit(spec: RunSpec, *, build: Callable[[], Cached],
                fit: Callable[[], Cached]) -> tuple[Cached, dict]:
    """The trained model of `spec`: loaded if its folder is complete, else trained.

    A training writes into a hidden temporary folder that is renamed into place only
    when complete, and removed if the fit fails or is interrupted.

    Args:
        build: an untrained model with the right structure (to load weights into).
        fit: trains and returns a model.

    Returns:
        the model in eval mode, and the fit record (``fit_seconds``, ``history``,
        ``loaded``).

    Raises:
        RunCacheError: a complete-looking cached folder cannot be read (naming the
            file and the folder to delete).
    """
    folder = spec.dir
    if (folder / "fit.json").is_file() and (folder / WEIGHTS_FILE).is_file():
        return _load_cached(spec, build)
    tmp = _temp_folder(folder)
    try:
        tmp.mkdir(parents=True)
        start = time.perf_counter()
        model = fit()
        seconds = time.perf_counter() - start
        _write_json(tmp / "config.json", spec.identity())
        _write_json(tmp / "split.json", spec.split)
        skip = tuple(model.reproducible_prefixes)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()
                 if not (skip and k.startswith(skip))}
        _save_torch(state, tmp / WEIGHTS_FILE)
        if model.trace:
            _save_npz(tmp / TRACE_FILE, model.trace)
        if model.curve:
            _write_json(tmp / CURVE_FILE, model.curve)
        record = {"fit_seconds": seconds, "history": list(model.history)}
        _write_json(tmp / "fit.json", record)
        if folder.exists():   # a folder left by an older version, never complete
            shutil.rmtree(folder)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "fit.json").is_file():   # not another job's finished run
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return model.eval(), record | {"loaded": False}


def stored_bytes(folder: Path | str) -> int:
    """What a trained run keeps on disk for its model: the bytes of its weights
    (without the parts `build` restores exactly, e.g. a pretrained teacher)."""
    return (Path(folder) / WEIGHTS_FILE).stat().st_size


def drop_weights(root: Path | str, key: str) -> int:
    """Remove the trained weights of run `key` under `root` (its folder as
    `RunSpec.dir` lays it out, any seed), keeping its metrics, predictions and fit
    record; returns the files removed. A later `load_or_fit` of that run trains it
    again. An empty `key` (a point that recorded no run) removes nothing."""
    if not key:
        return 0
    found = list(Path(root).glob(f"*/*/*/*/s*-{key}/{WEIGHTS_FILE}"))
    for path in found:
        path.unlink()
    return len(found)


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
            "n_injected": spec.split["n_injected"],
            "n_repeated": len(spec.split.get("augmented", {})), "run_key": spec.key,
            "inputs_key": spec.inputs_key}
    row |= {f"inputs.{k}": v for k, v in {**spec.inputs, **spec.test_inputs}.items()}
    row |= {f"cfg.{k}": v for k, v in to_jsonable(spec.cfg).items()}
    row |= {f"strategy.{k}": v for k, v in ident.get("strategy", {}).items()}
    return row


def collect(root: Path | str = "runs") -> pd.DataFrame:
    """One row per finished run under `root` (every ``metrics.json`` that is a
    results row, `read_row`; `incomplete` lists the others, each on its own)."""
    rows = []
    for path in sorted(Path(root).rglob("metrics.json")):
        try:
            rows.append(read_row(path))
        except RunCacheError:
            continue
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    order = [c for c in ("method", "dataset", "category", "noise_ratio", "seed")
             if c in df]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


MALFORMED = "malformed metrics.json"   # how `incomplete` begins such a reason


def incomplete(root: Path | str = "runs") -> list[tuple[Path, str]]:
    """Run folders under `root` that `collect` leaves out, each with the reason:
    an interrupted training's temporary folder, a model trained but not evaluated,
    or a `MALFORMED` ``metrics.json`` (unreadable, or not a results row)."""
    found = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_dir():
            continue
        if TMP_MARK in path.name and path.name.startswith("."):
            found.append((path, "interrupted training (temporary folder); delete it"))
        elif (path / "config.json").is_file() and not (path / "fit.json").is_file():
            found.append((path, "no fit.json (left by an older version); delete it"))
        elif (path / "fit.json").is_file() and not (path / "metrics.json").is_file():
            found.append((path, "trained but not evaluated (no metrics.json); rerun "
                          "the same command"))
        elif (path / "metrics.json").is_file():
            try:
                read_row(path / "metrics.json")
            except RunCacheError as err:
                why = str(err).removeprefix(f"{path / 'metrics.json'}: ")
                found.append((path, f"{MALFORMED}: {why}"))
    return found


def write_table(df: pd.DataFrame, path: Path | str) -> Path:
    """Write `df` as CSV atomically."""
    path = Path(path)
    atomic_write_text(path, df.to_csv(index=False))
    return path
