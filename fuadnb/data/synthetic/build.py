"""Writing the benchmark: every file rendered into a temporary folder (in worker
processes, byte-identical for any number), the manifest written, the folder renamed
into place; `ensure` generates on first use, `remove_stale` cleans up after kills."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from fuadnb.data.synthetic import manifest
from fuadnb.data.synthetic.manifest import MANIFEST
from fuadnb.data.synthetic.samples import render
from fuadnb.data.synthetic.sources import source_hashes
from fuadnb.data.synthetic.spec import VERSION, VERSIONS, Spec
from fuadnb.utils import pid_alive


class DatasetExistsError(FileExistsError):
    """The target folder holds something other than the requested benchmark."""


class _Job(NamedTuple):
    category: str
    split: str
    defect: str
    index: int
    width: int  # digits in the file name


def _jobs(spec: Spec, categories: list[str]) -> list[_Job]:
    jobs = []
    for name in categories:
        groups = [("train", "good", spec.n_train), ("test", "good", spec.n_test_good)]
        for defect in spec.categories[name].defects:
            groups += [("test", defect, spec.n_test_per_defect),
                       ("pool", defect, spec.n_pool_per_defect),
                       ("recurring", defect, spec.n_recurring_per_defect)]
        for split, defect, n in sorted(groups):
            width = max(3, len(str(n - 1)))
            jobs += [_Job(name, split, defect, i, width) for i in range(n)]
    return jobs


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _write_job(tmp: str, spec: Spec, job: _Job) -> dict[str, dict]:
    """Render one job into ``tmp``; manifest entries keyed by relative path."""
    sample = render(job.category, job.split, job.defect, job.index, spec)
    stem = f"{job.index:0{job.width}d}"
    rel = f"{job.category}/{job.split}/{job.defect}/{stem}.png"
    entry = {"category": job.category, "split": job.split, "defect": job.defect,
             "index": job.index, "params": sample.params,
             "sha256": _write(Path(tmp, rel), _png(sample.image))}
    entries = {rel: entry}
    if sample.mask is not None:
        gt = "ground_truth" if job.split == "test" else f"{job.split}_ground_truth"
        mask_rel = f"{job.category}/{gt}/{job.defect}/{stem}_mask.png"
        entry["mask"] = mask_rel
        entries[mask_rel] = {"image": rel,
                             "sha256": _write(Path(tmp, mask_rel), _png(sample.mask))}
    return entries


def _write_chunk(tmp: str, spec: Spec, jobs: list[_Job]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for job in jobs:
        out.update(_write_job(tmp, spec, job))
    return out


def _category_names(categories: Iterable[str] | None, spec: Spec) -> list[str]:
    cats = spec.categories
    if categories is None:
        return sorted(cats)
    if isinstance(categories, str):
        categories = [categories]
    names = sorted(set(categories))
    unknown = [n for n in names if n not in cats]
    if unknown or not names:
        raise ValueError(f"categories must be a non-empty list of names from "
                         f"{sorted(cats)} (version {spec.version}); got {names} "
                         f"(unknown: {unknown})")
    return names


def _describe(spec: Spec, name: str) -> dict:
    """A category's entry in the manifest (v3 adds its family)."""
    cat = spec.categories[name]
    entry = {"kind": cat.kind, "source": cat.source, "defects": list(cat.defects)}
    v3 = {"family": cat.family, "severity": cat.severity} if spec.version >= 3 else {}
    return entry | v3


def generate(root: str | Path, spec: Spec = Spec(), *,
             categories: Iterable[str] | None = None, workers: int | None = None,
             progress: bool = False, overwrite: bool = False) -> Path:
    """Write the synthetic benchmark under ``root`` and return its manifest path.

    The files are rendered into a temporary sibling folder that is renamed to
    ``root`` at the end, so an interrupted run leaves nothing at ``root``. The output
    is byte-identical for every value of ``workers``.

    Args:
        root: target folder; it must not exist, be empty, or hold this very benchmark
            (same `VERSION`, spec and categories: returned at once).
        spec: sizes, counts and seed.
        categories: names from the spec's version's categories (`CATEGORIES`,
            `CATEGORIES_V3`); all of them by default.
        workers: processes; 1 renders in-process. Default ``min(os.cpu_count(),
            4)``, fewer for small runs (one per 150 images: ``Spec.tiny()`` renders
            in-process).
        progress: show a tqdm progress bar.
        overwrite: replace whatever ``root`` holds.

    Returns:
        ``root / "manifest.json"``.

    Raises:
        ValueError: unknown category or bad ``workers``.
        DatasetExistsError: ``root`` holds something else and ``overwrite`` is False.
        SourceImageError: a bundled source image changed (see `SOURCE_SHA256`).

    Example:
        ``generate("data/synthetic", Spec.tiny(), categories=["brick"])`` writes
        ``data/synthetic/brick/...`` and returns its ``manifest.json`` path.

    Explained in: book/chapters/01_contamination
    """
    root = Path(root)
    names = _category_names(categories, spec)
    jobs = _jobs(spec, names)
    if workers is None:  # a process costs ~0.5 s to start: ~150 images' worth
        workers = max(1, min(os.cpu_count() or 1, 4, len(jobs) // 150))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    wanted = manifest.header(spec, names)
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        existing = manifest.read(root) if root.is_dir() else None
        if manifest.same(existing, wanted):
            return root / MANIFEST
        if not overwrite:
            raise DatasetExistsError(
                f"{root} already holds {manifest.describe(existing)}, not the "
                f"requested version {spec.version}, spec {wanted['spec']} and "
                f"categories "
                f"{names}. "
                f"Delete {root} or pass overwrite=True (--overwrite on the command "
                "line).")
    sources = source_hashes(names)
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        files = _render_all(tmp, spec, jobs, workers, progress)
        content = {
            **wanted,
            "categories": {n: _describe(spec, n) for n in names},
            "libraries": _libraries(),
            "sources": sources,
            "files": {k: files[k] for k in sorted(files)},
        }
        (tmp / MANIFEST).write_text(json.dumps(content, indent=1, sort_keys=True)
                                    + "\n")
        _move_into_place(tmp, root, wanted, overwrite)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root / MANIFEST


STALE_SECONDS = 6 * 3600   # age after which an unowned temporary folder is stale


def remove_stale(root: str | Path) -> list[Path]:
    """Remove the hidden temporary folders that killed `generate` calls left next to
    `root` (``.<name>.tmp-<pid>-<hex>`` whose process is gone; those of older
    versions, without a pid, once older than `STALE_SECONDS`). Returns them."""
    root = Path(root)
    gone = []
    for path in sorted(root.parent.glob(f".{root.name}.tmp-*")) + sorted(
            root.parent.glob(f".{root.name}.old-*")):
        tag = path.name.rsplit(".", 1)[-1].split("-")[1:]
        if len(tag) == 2 and tag[0].isdigit():
            stale = not pid_alive(int(tag[0]))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > STALE_SECONDS
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else \
                path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def _render_all(tmp: Path, spec: Spec, jobs: list[_Job], workers: int,
                progress: bool) -> dict[str, dict]:
    files: dict[str, dict] = {}
    bar = tqdm(total=len(jobs), disable=not progress, desc="synthetic", unit="img")
    chunk = 8
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    with bar:
        if workers == 1 or len(chunks) == 1:
            for part in chunks:
                files.update(_write_chunk(str(tmp), spec, part))
                bar.update(len(part))
        else:
            # forkserver: never fork a parent that may run torch/OpenMP threads.
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context(
                "forkserver" if "forkserver" in methods else None)
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)),
                                     mp_context=context) as pool:
                futures = [pool.submit(_write_chunk, str(tmp), spec, part)
                           for part in chunks]
                try:
                    for part, future in zip(chunks, futures, strict=True):
                        files.update(future.result())
                        bar.update(len(part))
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)  # before tmp goes
                    raise
    return files


def _libraries() -> dict[str, str]:
    import PIL
    import scipy
    import skimage

    return {"numpy": np.__version__, "Pillow": PIL.__version__,
            "scikit-image": skimage.__version__, "scipy": scipy.__version__}


def _move_into_place(tmp: Path, root: Path, wanted: dict, overwrite: bool) -> None:
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if not root.exists():
        try:
            tmp.rename(root)
            return
        except OSError:
            if not root.exists():
                raise
    # Another process finished first, or overwrite=True replaces an old dataset.
    if manifest.same(manifest.read(root), wanted):
        return
    if not overwrite:
        raise DatasetExistsError(f"{root} appeared while generating; delete it or pass "
                                 "overwrite=True")
    old = root.parent / f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    root.rename(old)
    tmp.rename(root)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


def ensure(root: str | Path, spec: Spec | None = Spec(), *,
           categories: Iterable[str] | None = None, progress: bool = False) -> Path:
    """Return the manifest of the benchmark at ``root``, generating it on first use.

    An existing benchmark with the same version and spec that holds (at least) the
    requested categories is used as it is. ``spec=None`` accepts a benchmark of any
    spec already at ``root`` (e.g. the tiny one) and otherwise generates the default
    benchmark with every category.

    Raises:
        DatasetExistsError: ``root`` holds something else (see `generate`).

    Explained in: book/chapters/01_contamination
    """
    root = Path(root)
    found = manifest.read(root)
    if spec is None and found and "spec" in found:
        version = found.get("version")
        spec = Spec(**found["spec"], version=version if version in VERSIONS
                    else VERSION)
    elif spec is None:   # nothing there yet: the default benchmark, every category
        spec, categories = Spec(), None
    wanted = manifest.header(spec, _category_names(categories, spec))
    if manifest.same(found, wanted, subset=True):
        return root / MANIFEST
    return generate(root, spec, categories=wanted["categories"], progress=progress)
