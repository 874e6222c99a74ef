"""The benchmark's ``manifest.json``: its header (version, spec, categories), reading
it, the recurring prototypes it records, and re-hashing the files it lists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fuadnb.data.synthetic.spec import REVISION_V3, Spec

MANIFEST = "manifest.json"


def header(spec: Spec, categories: list[str]) -> dict:
    """What identifies a benchmark: its version, the spec's other fields and the
    categories."""
    head = {"version": spec.version, "spec": spec.fields(), "categories": categories}
    return head | ({"revision": REVISION_V3} if spec.version >= 3 else {})


def read(root: Path) -> dict | None:
    """The manifest under `root`, or None when it is missing or not valid JSON."""
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def same(found: dict | None, wanted: dict, *, subset: bool = False) -> bool:
    """Whether manifest `found` matches `header` `wanted` (with ``subset``: holds at
    least its categories)."""
    if not found or found.get("version") != wanted["version"]:
        return False
    if found.get("spec") != wanted["spec"]:
        return False
    if found.get("revision") != wanted.get("revision"):   # v3's generator revision
        return False
    have = list(found.get("categories", {}))
    if subset:
        return set(wanted["categories"]) <= set(have)
    return have == wanted["categories"]


def describe(found: dict | None) -> str:
    """A manifest in words, for the error that a folder holds something else."""
    if found is None:
        return "files but no readable manifest.json"
    return (f"a synthetic benchmark with version {found.get('version')}, spec "
            f"{found.get('spec')} and categories "
            f"{list(found.get('categories', {}))}")


def prototypes(root: str | Path) -> dict[str, str]:
    """Sample id -> ``"<defect>/<prototype>"`` for every file of the benchmark at
    `root` that copies a recurring defect (from its manifest)."""
    files = (read(Path(root)) or {}).get("files", {})
    return {rel.removesuffix(".png"): f"{e['defect']}/{e['params']['prototype']}"
            for rel, e in files.items() if "prototype" in e.get("params", {})}


def verify(root: str | Path) -> list[str]:
    """Re-hash every file the manifest lists; an empty list means intact.

    Returns:
        One line per problem: ``missing: <path>``, ``changed: <path>`` or
        ``unexpected: <path>`` (a PNG under a category folder that the manifest does
        not list, which an index would pick up).

    Explained in: book/chapters/01_contamination
    """
    root = Path(root)
    manifest = read(root)
    if manifest is None:
        return [f"missing: {MANIFEST} (or not valid JSON) in {root}"]
    problems = []
    files = manifest.get("files", {})
    for rel in sorted(files):
        path = root / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != files[rel]["sha256"]:
            problems.append(f"changed: {rel}")
    for name in manifest.get("categories", {}):
        for path in sorted((root / name).rglob("*.png")):
            rel = path.relative_to(root).as_posix()
            if rel not in files:
                problems.append(f"unexpected: {rel}")
    return problems
