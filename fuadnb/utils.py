"""Small helpers with no fuadnb dependencies: seeding, devices, timing, atomic files."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

__version__ = "0.2.0"   # the package version (pyproject.toml, CITATION.cff and
                        # CHANGELOG.md's latest release say the same)


class DeviceError(RuntimeError):
    """A device was asked for that this machine does not have."""


class ToolError(RuntimeError):
    """An external step failed or its tool is missing (papermill, npm, Jupyter Book)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parse_device(name: str) -> torch.device | None:
    """The device `name` names (None for ``auto``), whether or not this machine has
    it (a cluster's workers may have GPUs that its coordinator lacks).

    Raises:
        DeviceError: not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise DeviceError(f"--device {name!r} is not a device name; use auto, cpu, "
                          "cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {name}: fuadnb runs on cpu or cuda only; use "
                          "auto, cpu, cuda or cuda:N")
    return device


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` to a torch device.

    Raises:
        DeviceError: CUDA was asked for on a machine without it.
    """
    device = parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name} asked for CUDA, but torch sees no CUDA "
                              "GPU on this machine; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA "
                              "device(s) present")
    return device


def device_name(device: torch.device) -> str:
    """A human name: the GPU model, or the CPU architecture and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Context manager measuring wall seconds (synchronising CUDA on exit)."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.seconds = float("nan")

    def __enter__(self) -> Timer:
        if self.device is not None:
            synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device is not None:
            synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def git_commit(path: Path | str = ".") -> str:
    """The git commit of the checkout containing `path` (``+dirty`` if modified),
    or ``unknown`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=path,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=path, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def check_name(value: object, what: str) -> str:
    """`value` as a name that stays one folder inside whatever folder it is joined
    to (a category, a grid point): non-empty text, no path separator, not ``.`` or
    ``..``, no leading dot (hidden), no control character; else one ValueError
    naming `what`."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty name (text), got {value!r}")
    bad = ("/" in value or "\\" in value or value in (".", "..")
           or value.startswith(".") or any(ord(c) < 32 for c in value))
    if bad:
        raise ValueError(f"{what} {value!r} is not a plain name: it may not contain "
                         "/ or \\, start with a dot or be . or ..; give the name of "
                         "one folder, e.g. brick")
    return value


def confined(path: Path | str, root: Path | str, what: str) -> Path:
    """`path` resolved, refused (one ValueError naming `what`) unless it lies inside
    `root` (also resolved: symbolic links followed), so nothing built from user
    input is written outside the folder it belongs to."""
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"{what} {path} leads outside {root}; use a plain name")
    return resolved


def pid_alive(pid: int) -> bool:
    """Whether a process with id `pid` runs on this machine (to tell a temporary
    folder still being written from one left by a killed process)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:   # alive, owned by another user
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only on success.

    Works for files and folders: nothing half-written is ever left at `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        os.replace(target, path)
    finally:
        _remove_tree(tmp)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` to `path` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() and not child.is_symlink() else child.unlink()
    path.rmdir()
