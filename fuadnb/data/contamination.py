"""Contaminated training sets: anomalous images silently added to the training set.

Regimes: where the injected anomalies come from and what the test set is.

* ``iid`` — fresh, never-repeated anomalies: the synthetic benchmark's ``pool`` split
  (the test set is the same at every ratio); on a real dataset SoftPatch's default,
  anomalies drawn from the test set and removed from it ("no overlap").
* ``overlap`` — SoftPatch's ``--overlap``: anomalies drawn from the test set and kept
  there, so the model is tested on the very anomalies it was trained on; metrics are
  also reported on those (*seen*) and on the others (*unseen*).
* ``recurring`` — defects that recur, as structural defects do in production: the
  synthetic benchmark's ``recurring`` split holds copies of a few prototype defects
  per type (small jitter, other base images); half of the test anomalies copy the
  same prototypes. The test set is the same at every ratio; metrics are also reported
  on the recurring (*seen*) and the novel (*unseen*) test anomalies. Real datasets
  have no prototypes: asking for it there is an error.

Protocols (reference/data_and_metrics.md §2; methods.md §1):

* ``definition="softpatch"`` (the de-facto standard; SoftPatch main.py L98-L127):
  ``n = int(ratio * n_clean_train)`` anomalies, drawn uniformly from the pooled
  anomalous images of every defect type (of the regime's source). Without overlap
  (SoftPatch's default) test anomalies drawn are removed from the test set; under
  ``overlap`` the test set is unchanged, so injected images are also evaluated. At
  ratio 0.1 anomalies are 1/11 = 9.1 % of the final training set.
* ``definition="fraction"`` (Real-IAD FUIAD style): ``n = round(ratio / (1 - ratio) *
  n_clean_train)``, so anomalies are ``ratio`` of the final training set.
* Sources by regime: ``iid`` draws from the synthetic ``pool`` split where the index
  has one (the test set is then never touched, so every noise ratio is scored on the
  same test images; data_and_metrics.md §2.6) and from the test set otherwise;
  ``overlap`` from the test set; ``recurring`` from the ``recurring`` split.
* ``repeat=True`` (SoftPatch+, methods.md §1.2): when anomalies run out, each is
  injected again with a slight random rotation (±3°) and shift (±3 %); the copies get
  the id ``<id>~aug<k>`` and their parameters are stored in the manifest.
* A training split that already contains anomalies (Real-IAD ``fuiad_*`` JSONs) is
  used as shipped: its anomalous training images are the injected ones; asking for
  more (ratio > 0) is an error.

Deviation from SoftPatch, on purpose: its draw runs before seeding (pitfall 16). Here
the draw uses its own generator, ``SeedSequence([seed, crc32(dataset),
crc32(category)])``, over the sorted candidate ids, so a seed always gives the same
split, and the chosen ids are written to a manifest that no model reads.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fuadnb.data.index import COLUMNS
from fuadnb.utils import atomic_write_text

Definition = Literal["softpatch", "fraction"]
Regime = Literal["iid", "overlap", "recurring"]
REGIMES = ("iid", "overlap", "recurring")
MANIFEST_VERSION = 2


class ContaminationError(ValueError):
    """A contamination request that the dataset cannot satisfy."""


@dataclass(frozen=True)
class Split:
    """A contaminated train/test split.

    Attributes:
        train: index rows of the training set with a bool column ``is_injected``.
        test: index rows of the test set; ``is_injected`` marks injected images kept
            in the test set (regime ``overlap``).
        manifest: the regime, protocol, seed, counts and the injected / removed ids.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    manifest: dict[str, Any]

    def test_groups(self) -> dict[str, np.ndarray]:
        """The regime's two groups of test anomalies, as bool masks over the test
        rows: ``seen`` (trained on, under ``overlap``; recurring, under
        ``recurring``) and ``unseen`` (the other anomalies). Empty for ``iid``."""
        anomalous = self.test["label"].to_numpy() == 1
        regime = self.manifest["regime"]
        if regime == "overlap":
            seen = self.test["is_injected"].to_numpy(bool)
        elif regime == "recurring":
            seen = self.test["prototype"].notna().to_numpy()
        else:
            return {}
        return {"seen": anomalous & seen, "unseen": anomalous & ~seen}

    def defect_groups(self) -> dict[str, np.ndarray]:
        """``defect.<type>`` -> bool mask over the test rows of that defect type's
        anomalies, for per-defect-type metrics."""
        defects = self.test["defect"].to_numpy()
        anomalous = self.test["label"].to_numpy() == 1
        return {f"defect.{d}": anomalous & (defects == d)
                for d in sorted(set(defects[anomalous]))}

    def test_composition(self) -> dict[str, int]:
        """Counts of the test set: good, anomalous, per defect type."""
        return _composition(self.test)

    def save(self, path: Path | str) -> Path:
        """Write the manifest as JSON (atomically) and return its path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.manifest, indent=1) + "\n")
        return path


def _composition(rows: pd.DataFrame) -> dict[str, int]:
    out = {"total": len(rows), "good": int((rows["label"] == 0).sum()),
           "anomalous": int((rows["label"] == 1).sum())}
    for defect, n in sorted(rows.loc[rows["label"] == 1, "defect"].value_counts()
                            .items()):
        out[f"defect:{defect}"] = int(n)
    return out


def n_injected(n_clean: int, ratio: float, definition: Definition = "softpatch") -> int:
    """How many anomalies a protocol adds to `n_clean` normal training images."""
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 0):
        raise ContaminationError(f"noise ratio must be a finite number >= 0, got "
                                 f"{ratio!r}")
    if definition == "softpatch":
        return int(ratio * n_clean)
    if definition == "fraction":
        if ratio >= 1:
            raise ContaminationError(f"definition='fraction' needs a noise ratio < 1 "
                                     f"(the anomalous share of the training set), got "
                                     f"{ratio}")
        return round(ratio / (1 - ratio) * n_clean)
    raise ContaminationError(f"unknown definition {definition!r}; choose 'softpatch' "
                             "or 'fraction'")


def supply(counts: dict[str, tuple[int, int]], ratios: list[float]) -> pd.DataFrame:
    """How many anomalies each protocol injects per category, and whether they exist.

    Args:
        counts: category -> (clean training images, anomalous test images).
        ratios: noise ratios.

    Returns:
        one row per (category, ratio): ``n_softpatch``, ``n_fraction``, the
        ``available`` anomalous test images, ``left_softpatch`` (anomalies left to
        test on without overlap; negative = the ratio is impossible) and whether each
        definition ``fits``.
    """
    rows = []
    for category, (n_clean, available) in counts.items():
        for ratio in ratios:
            n_sp = n_injected(n_clean, ratio, "softpatch")
            n_fr = n_injected(n_clean, ratio, "fraction")
            rows.append({"category": category, "ratio": ratio, "n_clean": n_clean,
                         "available": available, "n_softpatch": n_sp,
                         "n_fraction": n_fr, "left_softpatch": available - n_sp,
                         "fits_softpatch": n_sp <= available,
                         "fits_fraction": n_fr <= available})
    return pd.DataFrame(rows)


def rng_for(seed: int, dataset: str, category: str) -> np.random.Generator:
    """The split's own generator, independent of every global RNG."""
    return np.random.default_rng(np.random.SeedSequence(
        [seed, zlib.crc32(dataset.encode()), zlib.crc32(category.encode())]))


def contaminate(index: pd.DataFrame, ratio: float, *, seed: int,
                regime: Regime = "iid", definition: Definition = "softpatch",
                repeat: bool = False) -> Split:
    """Add anomalous images to the training set of one category's `index`.

    Args:
        index: rows of one dataset/category as returned by `fuadnb.data.index`.
        ratio: the noise ratio under `definition`.
        seed: seeds the draw (nothing else).
        regime: ``iid``, ``overlap`` or ``recurring`` (see the module docstring).
        definition: ``softpatch`` (anomalies / clean train) or ``fraction``
            (anomalies / final train).
        repeat: when more anomalies are asked for than exist, inject each one more
            than once, the copies slightly rotated (±3°) and shifted (±3 %), as
            SoftPatch+ did at 15-20 % noise (not with test anomalies under ``iid``,
            which would leave none to test on).

    Returns:
        the Split, with its manifest.

    Raises:
        ContaminationError: bad ratio/definition/regime, a regime the dataset cannot
            provide, or more anomalies asked for than exist (the message says how
            many exist).
    """
    _check_arguments(index, seed, repeat, regime)
    source, overlap = _source(index, regime)
    keys = index[["dataset", "category"]].drop_duplicates()
    if len(keys) != 1:
        raise ContaminationError("contaminate() takes the index of exactly one "
                                 f"dataset category; got {len(keys)} "
                                 f"({keys.values.tolist()[:4]})")
    dataset, category = keys.iloc[0]
    train = index[index["split"] == "train"]
    test = index[index["split"] == "test"]
    shipped = train[train["label"] == 1]
    n_clean = int((train["label"] == 0).sum())
    n = n_injected(n_clean, ratio, definition)
    if len(shipped) and n:
        raise ContaminationError(f"{dataset}/{category}: the training split already "
                                 f"holds {len(shipped)} anomalous images (a shipped "
                                 "noisy split); use noise ratio 0 to train on it as is")
    candidates = index[(index["split"] == source) & (index["label"] == 1)]
    candidates = candidates.sort_values("id", kind="stable")
    m = len(candidates)
    if n > m and not (repeat and m):
        limit = _max_ratio(n_clean, m, definition)
        raise ContaminationError(
            f"{dataset}/{category}: noise ratio {ratio} ({definition}) asks for {n} "
            f"anomalies ({n_clean} clean training images) but only {m} anomalous "
            f"{source} images exist; use a noise ratio <= {limit:.4f}"
            + ("" if repeat else " (or --repeat, a grid's REPEAT: true, to inject "
                                 "augmented copies as SoftPatch+)"))
    if n > m and source == "test" and not overlap:
        raise ContaminationError(
            f"{dataset}/{category}: repeat=True injects every anomalous test image, "
            "which would leave no anomaly to test on; use regime 'overlap' (as "
            "SoftPatch+ did)")
    if source == "test" and not overlap and n and not (
            (test["label"] == 1).sum() - n):
        raise ContaminationError(
            f"{dataset}/{category}: noise ratio {ratio} injects all {m} anomalous "
            "test images, which leaves none to test on; use a lower ratio or regime "
            "'overlap'")
    rng = rng_for(seed, dataset, category)
    if n <= m:
        pick, copy = np.sort(rng.choice(m, n, replace=False)), np.zeros(n, int)
    else:   # SoftPatch+: every anomaly once, then again with a small augmentation
        rounds = -(-n // m)
        pick = np.concatenate([rng.permutation(m) for _ in range(rounds)])[:n]
        copy = np.repeat(np.arange(rounds), m)[:n]
    injected = candidates.iloc[pick].assign(augment=[
        _augmentation(rng) if k else None for k in copy])
    injected["id"] = [i if k == 0 else f"{i}~aug{k}"
                      for i, k in zip(injected["id"], copy, strict=True)]
    injected_ids = set(injected["id"]) | set(shipped["id"])
    removed = injected if (source == "test" and not overlap) else injected.iloc[:0]
    augmented = injected.loc[injected["augment"].notna(), ["id", "augment"]]
    train = pd.concat([train.assign(augment=None), injected]).assign(split="train")
    test = test[~test["id"].isin(set(removed["id"]))]
    train = train.assign(is_injected=train["id"].isin(injected_ids)).reset_index(
        drop=True)
    test = test.assign(is_injected=test["id"].isin(injected_ids)).reset_index(drop=True)
    manifest = {
        "manifest_version": MANIFEST_VERSION, "dataset": dataset, "category": category,
        "ratio": ratio, "regime": regime, "definition": definition,
        "overlap": overlap, "source": source,
        "seed": seed, "n_clean_train": n_clean, "n_injected": len(injected_ids),
        "injected_fraction": len(injected_ids) / max(len(train), 1),
        "injected_ids": sorted(injected_ids),
        "removed_from_test_ids": sorted(removed["id"]),
        "augmented": dict(zip(augmented["id"], augmented["augment"], strict=True)),
        "train_composition": _composition(train),
        "test_composition": _composition(test),
    }
    return Split(train=train, test=test, manifest=manifest)


def _check_arguments(index: Any, seed: Any, repeat: Any, regime: str) -> None:
    """`contaminate`'s arguments besides the ratio, regime and definition (checked
    where they are used): one ContaminationError naming the argument."""
    if not isinstance(index, pd.DataFrame):
        raise ContaminationError(f"contaminate: index must be a DataFrame from "
                                 f"fuadnb.data.index, got {type(index).__name__}")
    needed = (*COLUMNS, "prototype") if regime == "recurring" else COLUMNS
    missing = [c for c in needed if c not in index]
    if missing:
        raise ContaminationError(f"contaminate: index has no column(s) {missing}; "
                                 "pass the frame fuadnb.data.index returns")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
            or not 0 <= seed < 2**32:
        raise ContaminationError(f"contaminate: seed must be a whole number from 0 to "
                                 f"2**32 - 1, got {seed!r}")
    if not isinstance(repeat, (bool, np.bool_)):
        raise ContaminationError(f"contaminate: repeat must be True or False, got "
                                 f"{repeat!r}")


def _source(index: pd.DataFrame, regime: str) -> tuple[str, bool]:
    """(split the anomalies are drawn from, whether they stay in the test set)."""
    splits = set(index["split"])
    if regime == "iid":
        return ("pool" if "pool" in splits else "test"), False
    if regime == "overlap":
        return "test", True
    if regime == "recurring":
        if "recurring" not in splits:
            where = "/".join(index[["dataset", "category"]].iloc[0]) if len(index) \
                else "this dataset"
            raise ContaminationError(
                f"{where}: regime 'recurring' needs recurring defects (the synthetic "
                "benchmark's recurring/ folder; regenerate it with `python -m fuadnb "
                "generate`); a real dataset has none: use regime 'overlap' "
                "(SoftPatch's setting) or 'iid'")
        return "recurring", False
    raise ContaminationError(f"unknown regime {regime!r}; choose one of "
                             f"{list(REGIMES)}")


def _augmentation(rng: np.random.Generator) -> dict[str, float]:
    """SoftPatch+'s slight augmentation of a repeated anomaly (SoftPatch#14)."""
    dx, dy = rng.uniform(-0.03, 0.03, size=2)
    return {"angle": float(rng.uniform(-3, 3)), "dx": float(dx), "dy": float(dy)}


def _max_ratio(n_clean: int, available: int, definition: Definition) -> float:
    """A ratio that asks for at most `available` anomalies (rounded down)."""
    if definition == "fraction":
        return math.floor(available / (n_clean + available) * 1e4) / 1e4
    return math.floor(available / n_clean * 1e4) / 1e4 if n_clean else 0.0


def load_manifest(path: Path | str) -> dict[str, Any]:
    """Read a manifest written by `Split.save`."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ContaminationError(f"{path}: not a readable split manifest ({err})") \
            from err
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ContaminationError(f"{path}: manifest version "
                                 f"{manifest.get('manifest_version')}, expected "
                                 f"{MANIFEST_VERSION}; regenerate it")
    return manifest
