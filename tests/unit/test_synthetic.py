"""The synthetic benchmark generator: layout, exact masks, determinism, atomic and
idempotent writing, source-image checks, spec validation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuadnb.data import synthetic

SPEC = synthetic.Spec.tiny()


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _anomalous(manifest: dict):
    """(path, entry) of every anomalous image in the manifest."""
    for rel, entry in manifest["files"].items():
        if entry.get("defect", "good") != "good":
            yield rel, entry


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """All categories at the tiny spec, generated once in-process."""
    root = tmp_path_factory.mktemp("synth") / "tiny"
    synthetic.generate(root, SPEC, workers=1)
    return root


@pytest.fixture(scope="module")
def manifest(tiny) -> dict:
    return json.loads((tiny / synthetic.MANIFEST).read_text())


def test_spec_defaults_and_tiny():
    spec = synthetic.Spec()
    assert (spec.size, spec.n_train, spec.n_test_good, spec.n_test_per_defect,
            spec.n_pool_per_defect, spec.n_recurring_per_defect, spec.n_prototypes,
            spec.seed) == (256, 100, 60, 16, 10, 10, 2, 0)
    assert asdict(SPEC) == {"size": 64, "n_train": 10, "n_test_good": 4,
                            "n_test_per_defect": 2, "n_pool_per_defect": 2,
                            "n_recurring_per_defect": 2, "n_prototypes": 1, "seed": 0,
                            "version": 2}
    # the manifest's "spec" leaves the version to its own field: v2's is unchanged
    assert SPEC.fields() == {k: v for k, v in asdict(SPEC).items() if k != "version"}
    # half of each defect type's test images copy a prototype, all recurring files do
    assert [spec.prototype("test", "hole", i) for i in range(16)] == \
        [0, 1] * 4 + [None] * 8
    assert [spec.prototype("recurring", "hole", i) for i in range(3)] == [0, 1, 0]
    assert spec.prototype("pool", "hole", 0) is None
    assert spec.prototype("test", "good", 0) is None


def test_categories_are_described():
    assert len(synthetic.CATEGORIES) >= 6
    for name, cat in synthetic.CATEGORIES.items():
        assert cat.name == name
        assert cat.kind in ("texture", "object")
        assert 3 <= len(cat.defects) <= 4
        assert set(cat.defects) <= set(synthetic.DEFECTS)
        if cat.kind == "texture":
            assert not {"missing", "color"} & set(cat.defects), name
    kinds = [c.kind for c in synthetic.CATEGORIES.values()]
    assert kinds.count("texture") >= 3 and kinds.count("object") >= 3


def test_layout_and_counts(tiny, manifest):
    assert sorted(manifest["categories"]) == sorted(synthetic.CATEGORIES)
    for name, cat in synthetic.CATEGORIES.items():
        c = tiny / name
        assert sorted(p.name for p in c.iterdir()) == [
            "ground_truth", "pool", "pool_ground_truth", "recurring",
            "recurring_ground_truth", "test", "train"]
        assert sorted(p.name for p in (c / "train").iterdir()) == ["good"]
        assert sorted(p.name for p in (c / "train/good").iterdir()) == [
            f"{i:03d}.png" for i in range(SPEC.n_train)]
        assert sorted(p.name for p in (c / "test").iterdir()) == sorted(
            ["good", *cat.defects])
        assert sorted(p.name for p in (c / "pool").iterdir()) == sorted(cat.defects)
        assert len(list((c / "test/good").iterdir())) == SPEC.n_test_good
        for gt, split, n in (("ground_truth", "test", SPEC.n_test_per_defect),
                             ("pool_ground_truth", "pool", SPEC.n_pool_per_defect),
                             ("recurring_ground_truth", "recurring",
                              SPEC.n_recurring_per_defect)):
            assert sorted(p.name for p in (c / gt).iterdir()) == sorted(cat.defects)
            for defect in cat.defects:
                assert sorted(p.name for p in (c / split / defect).iterdir()) == [
                    f"{i:03d}.png" for i in range(n)]
                assert sorted(p.name for p in (c / gt / defect).iterdir()) == [
                    f"{i:03d}_mask.png" for i in range(n)]


def test_images_and_masks_format(tiny, manifest):
    for rel, entry in manifest["files"].items():
        if "image" in entry:
            continue  # masks are checked with their image
        with Image.open(tiny / rel) as img:
            assert (img.mode, img.size) == ("RGB", (SPEC.size, SPEC.size)), rel
        if entry["defect"] == "good":
            assert "mask" not in entry
            continue
        with Image.open(tiny / entry["mask"]) as m:
            assert (m.mode, m.size) == ("L", (SPEC.size, SPEC.size)), rel
            mask = np.asarray(m)
        assert set(np.unique(mask)) == {0, 255}, rel
        area = int((mask > 0).sum())
        assert area == entry["params"]["mask_area"]
        assert synthetic.min_area(SPEC.size) <= area <= synthetic.max_area(SPEC.size)
        assert entry["params"]["type"] == entry["defect"]
        assert entry["params"]["attempt"] >= 0


def test_masks_mark_exactly_the_visible_change(tiny, manifest):
    for rel, e in _anomalous(manifest):
        key = (e["category"], e["split"], e["defect"], e["index"], SPEC)
        image = np.asarray(Image.open(tiny / rel)).astype(int)
        mask = np.asarray(Image.open(tiny / e["mask"])) > 0
        base = synthetic.render_base(*key).astype(int)
        change = np.abs(image - base).max(axis=-1)
        assert np.array_equal(image[~mask], base[~mask]), rel
        assert change[mask].min() >= synthetic.MIN_CHANGE, rel
        assert not mask[~synthetic.foreground(*key)].any(), rel


def test_object_defects_stay_on_the_object():
    spec = synthetic.Spec(size=64)
    for name, cat in synthetic.CATEGORIES.items():
        if cat.kind != "object":
            continue
        for defect in cat.defects:
            sample = synthetic.render(name, "test", defect, 5, spec)
            fg = synthetic.foreground(name, "test", defect, 5, spec)
            assert fg.mean() < 0.6, name  # an object, not the whole frame
            assert not (sample.mask[~fg] > 0).any(), (name, defect)


def test_normal_images_vary(tiny):
    for name in synthetic.CATEGORIES:
        files = sorted((tiny / name / "train/good").glob("*.png"))
        files += sorted((tiny / name / "test/good").glob("*.png"))
        digests = {hashlib.sha256(p.read_bytes()).digest() for p in files}
        assert len(digests) == len(files), name
        first = np.asarray(Image.open(files[0])).astype(int)
        second = np.asarray(Image.open(files[1])).astype(int)
        assert np.abs(first - second).mean() > 1, name


def test_render_matches_the_written_file(tiny, manifest):
    rel, e = next(_anomalous(manifest))
    sample = synthetic.render(e["category"], e["split"], e["defect"], e["index"], SPEC)
    assert np.array_equal(sample.image, np.asarray(Image.open(tiny / rel)))
    assert np.array_equal(sample.mask, np.asarray(Image.open(tiny / e["mask"])))
    assert sample.params == e["params"]


def test_byte_identical_across_runs_and_workers(tiny, tmp_path):
    again = synthetic.generate(tmp_path / "again", SPEC, workers=1).parent
    parallel = synthetic.generate(tmp_path / "parallel", SPEC, workers=2).parent
    reference = _hashes(tiny)
    assert len(reference) > 200
    assert _hashes(again) == reference
    assert _hashes(parallel) == reference


def test_different_seed_gives_different_files(tiny, tmp_path):
    other = synthetic.generate(tmp_path / "s1", synthetic.Spec.tiny(seed=1),
                               categories=["brick", "washer"], workers=1).parent
    ours, theirs = _hashes(tiny), _hashes(other)
    common = [rel for rel in theirs if rel.endswith(".png")]
    assert len(common) == 2 * 62
    assert all(ours[rel] != theirs[rel] for rel in common)


def test_manifest_content(tiny, manifest):
    assert manifest["version"] == synthetic.VERSION
    assert manifest["spec"] == SPEC.fields()
    assert all(set(c) == {"kind", "source", "defects"}       # v2: no family field
               for c in manifest["categories"].values())
    assert {"numpy", "Pillow", "scikit-image"} <= set(manifest["libraries"])
    assert manifest["sources"] == {k: synthetic.SOURCE_SHA256[k]
                                   for k in manifest["sources"]}
    assert "skimage.data.brick" in manifest["sources"]
    pngs = {p.relative_to(tiny).as_posix() for p in tiny.rglob("*.png")}
    assert set(manifest["files"]) == pngs
    hashes = _hashes(tiny)
    assert all(hashes[rel] == e["sha256"] for rel, e in manifest["files"].items())


def test_verify_catches_changed_missing_and_extra_files(tiny, tmp_path):
    import shutil

    assert synthetic.verify(tiny) == []
    root = Path(shutil.copytree(tiny, tmp_path / "copy"))
    changed = root / "brick/train/good/003.png"
    img = np.asarray(Image.open(changed)).copy()
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(changed)
    (root / "washer/ground_truth/crack/001_mask.png").unlink()
    shutil.copy(root / "brick/test/good/000.png", root / "brick/test/good/999.png")
    assert synthetic.verify(root) == [
        "changed: brick/train/good/003.png",
        "missing: washer/ground_truth/crack/001_mask.png",
        "unexpected: brick/test/good/999.png",
    ]
    (root / synthetic.MANIFEST).unlink()
    assert synthetic.verify(root)[0].startswith("missing: manifest.json")


def test_existing_identical_dataset_is_not_rewritten(tiny):
    before = {p: p.stat().st_mtime_ns for p in tiny.rglob("*")}
    assert synthetic.generate(tiny, SPEC) == tiny / synthetic.MANIFEST
    assert synthetic.ensure(tiny, SPEC) == tiny / synthetic.MANIFEST
    assert synthetic.ensure(tiny, SPEC, categories=["coin"]) == tiny / "manifest.json"
    assert {p: p.stat().st_mtime_ns for p in tiny.rglob("*")} == before


def test_ensure_generates_on_first_use(tmp_path):
    root = tmp_path / "new"
    manifest = synthetic.ensure(root, SPEC, categories=["grass"])
    assert manifest == root / synthetic.MANIFEST and synthetic.verify(root) == []
    assert json.loads(manifest.read_text())["categories"] == {
        "grass": {"kind": "texture", "source": "skimage.data.grass",
                  "defects": list(synthetic.CATEGORIES["grass"].defects)}}


def test_existing_different_dataset_raises_clear_error(tiny, tmp_path):
    for spec, categories in ((synthetic.Spec.tiny(seed=1), None), (SPEC, ["brick"])):
        with pytest.raises(synthetic.DatasetExistsError) as info:
            synthetic.generate(tiny, spec, categories=categories)
        message = str(info.value)
        assert str(tiny) in message and "overwrite=True" in message
        assert "Delete" in message
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a dataset")
    with pytest.raises(FileExistsError, match="no readable manifest"):
        synthetic.ensure(other, SPEC)
    assert (other / "notes.txt").exists()


def test_overwrite_replaces_atomically(tmp_path):
    root = tmp_path / "data"
    synthetic.generate(root, SPEC, categories=["brick"], workers=1)
    spec = synthetic.Spec.tiny(seed=3)
    synthetic.generate(root, spec, categories=["wood"], workers=1, overwrite=True)
    manifest = json.loads((root / synthetic.MANIFEST).read_text())
    assert manifest["spec"]["seed"] == 3 and list(manifest["categories"]) == ["wood"]
    assert not (root / "brick").exists() and synthetic.verify(root) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = synthetic.render

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic.build, "render", failing)
    root = tmp_path / "data"
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(root, SPEC, categories=["gravel"], workers=1)
    assert list(tmp_path.iterdir()) == []


def test_changed_source_image_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setitem(synthetic.SOURCE_SHA256, "skimage.data.brick", "0" * 64)
    with pytest.raises(synthetic.SourceImageError, match="skimage.data.brick"):
        synthetic.generate(tmp_path / "data", SPEC, categories=["brick"], workers=1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(synthetic.SourceImageError, match="skimage.data.brick"):
        synthetic.render("brick", "train", "good", 0, SPEC)
    with pytest.raises(synthetic.SourceImageError, match="0000"):
        synthetic.source_hashes(["grass"])  # foreign textures include brick
    assert "skimage.data.brick" not in synthetic.source_hashes(["washer"])


@pytest.mark.parametrize("kwargs, name", [
    ({"size": 100}, "size"), ({"size": 16}, "size"), ({"size": 64.0}, "size"),
    ({"n_train": 0}, "n_train"), ({"n_test_good": -1}, "n_test_good"),
    ({"n_test_per_defect": -2}, "n_test_per_defect"),
    ({"n_pool_per_defect": -1}, "n_pool_per_defect"), ({"seed": -1}, "seed"),
])
def test_bad_spec_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"Spec\.{name} "):
        synthetic.Spec(**kwargs)


def test_bad_arguments_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="categories.*'carpet'"):
        synthetic.generate(tmp_path / "x", SPEC, categories=["brick", "carpet"])
    with pytest.raises(ValueError, match="workers"):
        synthetic.generate(tmp_path / "x", SPEC, workers=0)
    with pytest.raises(ValueError, match="defect"):
        synthetic.render("brick", "test", "missing", 0, SPEC)
    with pytest.raises(ValueError, match="split"):
        synthetic.render_base("brick", "val", "good", 0, SPEC)
    assert not (tmp_path / "x").exists()


def test_recurring_copies_share_prototypes_within_a_category_only(tiny, manifest):
    """Every recurring file and the first half of the test anomalies copy their
    category's prototype of the defect type (the copy's mask is the prototype's,
    moved by a few pixels, and with the object for objects); two categories never
    share a prototype."""
    spec = SPEC
    protos = synthetic.prototypes(tiny)
    for name, cat in synthetic.CATEGORIES.items():
        for defect in cat.defects:
            recurring = {f"{name}/recurring/{defect}/{i:03d}" for i in range(
                spec.n_recurring_per_defect)}
            test = {f"{name}/test/{defect}/{i:03d}" for i in range(
                spec.n_test_per_defect // 2)}
            novel = {f"{name}/test/{defect}/{i:03d}" for i in range(
                spec.n_test_per_defect // 2, spec.n_test_per_defect)}
            assert {protos[i] for i in recurring | test} == {f"{defect}/0"}
            assert novel.isdisjoint(protos)
            proto = synthetic.samples._prototype(spec, name, defect, 0)[0].mask > 0
            for i in sorted(recurring | test):
                with Image.open(tiny / f"{manifest['files'][i + '.png']['mask']}") as m:
                    copy = np.asarray(m) > 0
                shifts = [np.logical_and(np.roll(proto, (dy, dx), (0, 1)), copy).sum()
                          / max(copy.sum(), proto.sum())
                          for dy in range(-8, 9) for dx in range(-8, 9)]
                assert max(shifts) > 0.5, i      # the prototype, moved a little
    masks = {}
    for name, cat in synthetic.CATEGORIES.items():
        for defect in cat.defects:
            masks.setdefault(defect, []).append(
                synthetic.samples._prototype(spec, name, defect, 0)[0].mask.tobytes())
    for defect, found in masks.items():
        assert len(set(found)) == len(found), defect     # never across categories


def test_a_prototype_near_the_smallest_area_still_recurs():
    """Seed 3's tiny coin prototype of ``missing`` has 14 pixels (the minimum is 12):
    in each of the 64 jittered draws its copy on recurring file 1 loses pixels off
    the coin's edge. The copy is then the first draw that keeps at least half the
    prototype (recorded as ``short_copy``), still the prototype moved a little;
    files that fit in the normal draws are untouched (seed 0's dataset, above)."""
    spec = synthetic.Spec.tiny(seed=3)
    proto = synthetic.samples._prototype(spec, "coin", "missing", 0)[0].mask > 0
    copy = synthetic.render("coin", "recurring", "missing", 1, spec)
    area = int((copy.mask > 0).sum())
    assert copy.params["short_copy"] is True and copy.params["prototype"] == 0
    assert proto.sum() / 2 <= area < synthetic.min_area(spec.size)
    assert area == copy.params["mask_area"]
    overlap = max(np.logical_and(np.roll(proto, (dy, dx), (0, 1)), copy.mask > 0).sum()
                  for dy in range(-4, 5) for dx in range(-4, 5))
    assert overlap >= area / 2
    fits = synthetic.render("coin", "recurring", "missing", 0, spec)
    assert "short_copy" not in fits.params
    assert synthetic.min_area(spec.size) <= fits.params["mask_area"]


def test_the_test_set_is_identical_at_every_ratio_in_iid_and_recurring(tiny):
    from fuadnb import data
    for regime in ("iid", "recurring"):
        tests = [data.contaminate(data.index("synthetic", tiny, "brick"), r, seed=1,
                                  regime=regime).test for r in (0.0, 0.1, 0.2)]
        for t in tests[1:]:
            assert t.id.tolist() == tests[0].id.tolist()
            assert t.image_path.tolist() == tests[0].image_path.tolist()
        noisy = data.contaminate(data.index("synthetic", tiny, "brick"), 0.2, seed=1,
                                 regime=regime)
        source = "pool" if regime == "iid" else "recurring"
        assert all(f"/{source}/" in i for i in noisy.manifest["injected_ids"])
