"""Profile names, Config construction and checks, and hashing helpers shared by
every layer."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

PROFILES: tuple[str, ...] = ("smoke", "demo", "paper")
# The profiles where speed comes first: their ``precision="auto"`` is bf16 on CUDA
# (`fuadnb.engine.resolve`). Every other profile (``paper``) computes in float32, as
# every reference does, unless bf16 is asked for by name.
FAST_PROFILES: tuple[str, ...] = ("smoke", "demo")
MAX_IMAGE_SIZE = 4096   # pixels a side; larger sizes only exhaust memory


def is_offline() -> bool:
    """True when downloads must not even be tried (``FUADNB_OFFLINE`` or
    ``HF_HUB_OFFLINE`` set to 1)."""
    return any(os.environ.get(k, "") in ("1", "true", "True")
               for k in ("FUADNB_OFFLINE", "HF_HUB_OFFLINE"))


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, paths and numpy scalars as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name))
                for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return obj.as_posix()
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def short_hash(obj: Any, n: int = 10) -> str:
    """First `n` hex digits of the sha1 of `obj` as canonical JSON."""
    blob = json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:n]


def from_profile(cls: type, profiles: dict[str, dict], profile: str, method: str,
                 **overrides: Any) -> Any:
    """The dataclass `cls` with `profiles[profile]`'s values and `overrides` (None
    values are ignored); an unknown profile or field is one clear ValueError.

    A schedule given as ``epochs`` (without ``steps``) trains by epochs even where the
    profile sets exact ``steps``. An ``image_size`` given without ``load_size``,
    where the profile resizes and crops (``load_size`` > 0: Resize 256, CenterCrop
    224), keeps the profile's proportion (64 px: resize 73, crop 64), not its 256.
    A ``precision`` left unset or ``"auto"`` is
    ``"auto"`` in the `FAST_PROFILES` (bf16 on CUDA, float32 elsewhere) and
    ``"fp32"`` in the others; ``"bf16"`` or ``"fp32"`` given by name stays."""
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(profiles)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    values = profiles[profile] | given
    if "epochs" in given and "steps" not in given and "steps" in values:
        values["steps"] = None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {method} option(s) {unknown}; known: "
                         f"{sorted(names)}")
    for name, value in values.items():
        if value is not None:      # None: an optional field left unset
            values[name] = _checked(method, name, fields[name].type, value)
    if ("load_size" in names and "image_size" in given and "load_size" not in given
            and values.get("load_size", fields["load_size"].default)):
        values["load_size"] = _scaled_load_size(cls, profiles[profile], values)
    if "precision" in names and values.get("precision", "auto") == "auto":
        values["precision"] = "auto" if profile in FAST_PROFILES else "fp32"
    return cls(**values)


def _scaled_load_size(cls: type, profile: dict, values: dict) -> int:
    """The resize before the centre crop for ``values["image_size"]``, in the
    proportion of the profile's ``load_size`` to its ``image_size``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    load, size = (profile.get(k, fields[k].default) for k in ("load_size",
                                                              "image_size"))
    return int(values["image_size"] * load / size)


def _checked(method: str, name: str, kind: Any, value: Any) -> Any:
    """`value` for a field annotated `kind` (int, float, bool, str; others pass): 2
    and 2.0 become one float (one config, one run key), a number written as text
    (YAML reads ``1e-3`` as text) a float; a wrong type is one clear ValueError."""
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", "")
    kind = kind.removesuffix(" | None")     # an optional field given a value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "float":
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif number:
            return float(value)
        raise ValueError(f"{method} option {name} must be a number, got {value!r}")
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "bool": isinstance(value, bool),
          "str": isinstance(value, (str, os.PathLike))}.get(kind, True)
    if not ok:
        what = {"int": "an integer", "bool": "true or false", "str": "text"}[kind]
        raise ValueError(f"{method} option {name} must be {what}, got {value!r}")
    return value


def scaled_sigma(image_size: int, sigma_at_256: float = 4.0, native: int = 256
                 ) -> float:
    """A map smoothing of `sigma_at_256` output pixels at the reference's `native`
    size (RD4AD test.py L84: 4 px at 256 px; PatchCore and FUN-AD: 4 px at 224 px)
    scaled to another size, so smaller images smooth the same fraction."""
    return sigma_at_256 * image_size / native if image_size != native \
        else sigma_at_256


def derive_sigma(cfg: Any, native: int = 256) -> None:
    """In a Config's ``__post_init__``: a ``sigma`` left None follows the image size
    (`scaled_sigma` from 4 px at `native` px); one given explicitly is kept."""
    if cfg.sigma is None:
        object.__setattr__(cfg, "sigma", scaled_sigma(cfg.image_size, native=native))


def check_sizes(cfg: Any, counts: tuple[str, ...]) -> None:
    """The checks every method's Config shares: ``image_size`` a multiple of 32 and
    at least 64 (the students mirror the teacher's 32x downsampling) and at most
    `MAX_IMAGE_SIZE`, and each of `counts` (epochs, iterations, batch sizes) at
    least 1; one clear ValueError."""
    if cfg.image_size < 64 or cfg.image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 and at least 64 "
                         f"(the decoder mirrors the teacher's 32x downsampling); "
                         f"got {cfg.image_size}")
    if cfg.image_size > MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be at most {MAX_IMAGE_SIZE} (every image "
                         f"is decoded at that size into memory); got {cfg.image_size}")
    for name in counts:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")


def check_choice(cfg: Any, name: str, choices: tuple[str, ...]) -> None:
    """``getattr(cfg, name)`` is one of `choices`, else one clear ValueError."""
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
