"""Detection methods, one module each, with the same surface:
``Config``, ``config(profile, **overrides)``, ``build``, ``loss``, ``anomaly_map``,
``fit(cfg, train_images, *, device, progress)``, ``predict``, ``score_train``."""

from types import ModuleType

from fuadnb.models import cdd, funad, patchcore, rd, rde, softpatch

REGISTRY: dict[str, ModuleType] = {"rd": rd, "rde": rde, "cdd": cdd,
                                  "funad": funad, "patchcore": patchcore,
                                  "softpatch": softpatch}


def get(name: str) -> ModuleType:
    """The method module called `name`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]
