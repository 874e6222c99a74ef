"""The synthetic benchmark's third edition (issue 31): enough categories in enough
families, v2's split shape in every category, exact masks, byte-identical output for
any worker count, the family recorded and exposed, v2 kept as it was."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuadnb import data
from fuadnb.data import synthetic

SPEC3 = synthetic.Spec.tiny(version=3)
# one category per family: the subset regenerated with two workers
ONE_PER_FAMILY = sorted(members[-1] for members in synthetic.FAMILIES.values())
OWN_DEFECTS = {"thread": "fabric", "knot": "wood", "dent": "metal"}


@pytest.fixture(scope="module")
def tiny3(tmp_path_factory) -> Path:
    """Every v3 category at the tiny spec, generated once in-process."""
    root = tmp_path_factory.mktemp("synth3") / "tiny3"
    synthetic.generate(root, SPEC3, workers=1)
    return root


@pytest.fixture(scope="module")
def manifest3(tiny3) -> dict:
    return json.loads((tiny3 / synthetic.MANIFEST).read_text())


def _png_hashes(root: Path, categories: list[str]) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for name in categories for p in sorted((root / name).rglob("*.png"))}


def test_enough_families_and_categories():
    cats, families = synthetic.CATEGORIES_V3, synthetic.FAMILIES
    assert len(cats) >= 24 and len(families) >= 8
    assert sorted(itertools.chain(*families.values())) == sorted(cats)  # a partition
    kinds = {f: {cats[n].kind for n in members} for f, members in families.items()}
    assert all(len(k) == 1 for k in kinds.values()), kinds  # a family is one kind
    assert sum(k == {"texture"} for k in kinds.values()) >= 4
    assert sum(k == {"object"} for k in kinds.values()) >= 4
    for f, members in families.items():
        assert len(members) >= 2, f
        for name in members:
            cat = cats[name]
            assert (cat.name, cat.family, synthetic.family(name)) == (name, f, f)
            assert synthetic.kind(name) == data.kind("synthetic", name) == cat.kind
            assert data.family("synthetic", name) == f
            # 4 defect types x 16 = v2's 64 anomalous test images
            assert len(cat.defects) == 4 and list(cat.defects) == sorted(cat.defects)
            assert set(cat.defects) <= set(synthetic.DEFECTS_V3), name
            if cat.kind == "texture":
                assert not {"missing", "color"} & set(cat.defects), name
            for defect, family in OWN_DEFECTS.items():
                assert defect not in cat.defects or f == family, (name, defect)
    for defect, family in OWN_DEFECTS.items():   # each used by its family
        assert any(defect in cats[n].defects for n in families[family])
    assert data.family("mvtec_ad", "bottle") == "bottle"   # real data: its own
    # v2's categories are members, unchanged; v2 stays the default
    assert all(cats[n] is c for n, c in synthetic.CATEGORIES.items())
    assert synthetic.catalogue(2) is synthetic.CATEGORIES
    assert synthetic.catalogue(3) is cats
    assert synthetic.Spec().version == synthetic.VERSION == 2
    assert synthetic.Spec.v3() == synthetic.Spec(size=64, version=3)


def test_every_category_has_v2s_split_shape(tiny3, manifest3):
    assert manifest3["version"] == 3
    assert manifest3["spec"] == SPEC3.fields()
    assert sorted(manifest3["categories"]) == sorted(synthetic.CATEGORIES_V3)
    counts = {"train": SPEC3.n_train, "test": SPEC3.n_test_per_defect,
              "pool": SPEC3.n_pool_per_defect,
              "recurring": SPEC3.n_recurring_per_defect}
    for name, cat in synthetic.CATEGORIES_V3.items():
        entry = manifest3["categories"][name]
        assert entry == {"kind": cat.kind, "source": cat.source,
                         "defects": list(cat.defects), "family": cat.family,
                         "severity": cat.severity}
        c = tiny3 / name
        assert len(list((c / "train/good").glob("*.png"))) == SPEC3.n_train
        assert len(list((c / "test/good").glob("*.png"))) == SPEC3.n_test_good
        for split, gt in (("test", "ground_truth"), ("pool", "pool_ground_truth"),
                          ("recurring", "recurring_ground_truth")):
            for defect in cat.defects:
                n = counts[split]
                assert sorted(p.name for p in (c / split / defect).iterdir()) == [
                    f"{i:03d}.png" for i in range(n)], (name, split, defect)
                assert len(list((c / gt / defect).glob("*_mask.png"))) == n
    proto = synthetic.prototypes(tiny3)   # recurring copies, per category
    assert len(proto) == len(synthetic.CATEGORIES_V3) * 4 * (
        SPEC3.n_recurring_per_defect + SPEC3.n_test_per_defect // 2)


def test_v3_masks_mark_exactly_the_visible_change(tiny3, manifest3):
    seen = set()
    for rel, e in manifest3["files"].items():
        if e.get("defect", "good") == "good":
            continue
        key = (e["category"], e["split"], e["defect"], e["index"], SPEC3)
        image = np.asarray(Image.open(tiny3 / rel)).astype(int)
        mask = np.asarray(Image.open(tiny3 / e["mask"])) > 0
        base = synthetic.render_base(*key).astype(int)
        change = np.abs(image - base).max(axis=-1)
        assert np.array_equal(image[~mask], base[~mask]), rel
        assert change[mask].min() >= synthetic.MIN_CHANGE, rel
        assert mask.sum() == e["params"]["mask_area"], rel
        assert synthetic.min_area(SPEC3.size) <= mask.sum() <= synthetic.max_area(
            SPEC3.size) or e["params"].get("short_copy"), rel
        if synthetic.kind(e["category"]) == "object":
            assert not mask[~synthetic.foreground(*key)].any(), rel
        seen.add((e["category"], e["defect"]))
    assert seen == {(n, d) for n, c in synthetic.CATEGORIES_V3.items()
                    for d in c.defects}


def test_v3_byte_identical_across_runs_and_workers(tiny3, tmp_path):
    parallel = synthetic.generate(tmp_path / "parallel", SPEC3,
                                  categories=ONE_PER_FAMILY, workers=2).parent
    again = _png_hashes(parallel, ONE_PER_FAMILY)
    assert len(again) > 500
    assert again == _png_hashes(tiny3, ONE_PER_FAMILY)
    rel, e = next((r, e) for r, e in json.loads(
        (parallel / synthetic.MANIFEST).read_text())["files"].items()
        if e.get("defect", "good") != "good")
    sample = synthetic.render(e["category"], e["split"], e["defect"], e["index"],
                              SPEC3)
    assert np.array_equal(sample.image, np.asarray(Image.open(parallel / rel)))


def _mean_image(root: Path, name: str) -> np.ndarray:
    files = sorted((root / name / "train/good").glob("*.png"))
    return np.mean([np.asarray(Image.open(p), float) for p in files], axis=0)


def test_each_familys_categories_differ(tiny3):
    """Members of a family are related but not identical: their normal images differ
    in colour or layout, or their defect mixes differ."""
    for family, members in synthetic.FAMILIES.items():
        for a, b in itertools.combinations(members, 2):
            ia, ib = _mean_image(tiny3, a), _mean_image(tiny3, b)
            colour = np.abs(ia.mean(axis=(0, 1)) - ib.mean(axis=(0, 1))).max()
            layout = np.abs(ia - ib).mean()
            same_mix = (synthetic.CATEGORIES_V3[a].defects
                        == synthetic.CATEGORIES_V3[b].defects)
            assert colour > 10 or layout > 15, (family, a, b, colour, layout)
            assert not (same_mix and colour < 10), (family, a, b)
    for name in synthetic.CATEGORIES_V3:   # normal images vary inside a category
        files = sorted((tiny3 / name / "train/good").glob("*.png"))
        first, second = (np.asarray(Image.open(p)).astype(int) for p in files[:2])
        assert np.abs(first - second).mean() > 1, name


def test_v2_categories_are_the_same_files_in_v3():
    v2, v3 = synthetic.Spec.tiny(), SPEC3
    for name, cat in synthetic.CATEGORIES.items():
        for split, defect, i in (("train", "good", 1), ("test", cat.defects[0], 0),
                                 ("pool", cat.defects[-1], 1)):
            a = synthetic.render(name, split, defect, i, v2)
            b = synthetic.render(name, split, defect, i, v3)
            assert np.array_equal(a.image, b.image), (name, split, defect)
            assert a.params == b.params


def test_versions_keep_their_categories_and_sizes(tmp_path):
    with pytest.raises(ValueError, match=r"categories.*version 2.*'twill'"):
        synthetic.generate(tmp_path / "x", synthetic.Spec.tiny(), categories=["twill"])
    with pytest.raises(ValueError, match="category must be one of"):
        synthetic.render("twill", "train", "good", 0, synthetic.Spec.tiny())
    with pytest.raises(ValueError, match=r"Spec\.version "):
        synthetic.Spec(version=4)
    with pytest.raises(ValueError, match=r"Spec\.size .*power of two"):
        synthetic.Spec(size=96)
    with pytest.raises(ValueError, match=r"Spec\.size .*multiple of 32"):
        synthetic.Spec(size=80, version=3)
    spec96 = synthetic.Spec(size=96, version=3)
    for name in ONE_PER_FAMILY:   # 96 px works: every family, a defect of each
        cat = synthetic.CATEGORIES_V3[name]
        sample = synthetic.render(name, "test", cat.defects[1], 9, spec96)
        assert sample.image.shape == (96, 96, 3) and sample.mask.shape == (96, 96)


def test_ensure_keeps_a_v3_benchmark(tiny3, tmp_path):
    root = tmp_path / "v3"
    first = synthetic.generate(root, SPEC3, categories=["twill", "bolt"], workers=1)
    stamp = first.stat().st_mtime_ns
    # as the benchmark cell does: any spec already there will do, v3 included
    assert synthetic.ensure(root, spec=None, categories=["bolt"]) == first
    assert first.stat().st_mtime_ns == stamp
    assert synthetic.ensure(root, SPEC3, categories=["twill"]) == first
    with pytest.raises(synthetic.DatasetExistsError, match="version 3"):
        synthetic.generate(root, synthetic.Spec.tiny(), categories=["brick"])
    # a v3 folder from an older generator revision is not taken for the current one
    head = json.loads(first.read_text())
    assert head["revision"] == synthetic.spec.REVISION_V3
    first.write_text(json.dumps(head | {"revision": 0}))
    with pytest.raises(synthetic.DatasetExistsError):
        synthetic.ensure(root, SPEC3, categories=["twill"])
    index = data.index("synthetic", root, "bolt")
    assert len(index) == len(list((tiny3 / "bolt").rglob("[0-9][0-9][0-9].png")))


def test_cli_generates_v3(tmp_path, capsys):
    from fuadnb import cli

    root = tmp_path / "cli3"
    assert cli.main(["generate", "--v3", "--tiny", "--categories", "twill", "bolt",
                     "--root", str(root), "--quiet"]) == 0
    assert "v3 (64 px, seed 0)" in capsys.readouterr().out
    head = json.loads((root / synthetic.MANIFEST).read_text())
    assert head["version"] == 3 and head["spec"] == SPEC3.fields()
    assert {n: c["family"] for n, c in head["categories"].items()} == {
        "bolt": "screws", "twill": "fabric"}


def test_the_pilot_grid_is_the_benchmark_cell_on_the_pilot_seed():
    """benchmarks/grids/pilot_v3.yaml: clean RD at the benchmark's size and budget on
    every v3 category of generation seed 1, its first lines the commands that remake
    its table."""
    import yaml

    grids = Path(__file__).parents[2] / "benchmarks" / "grids"
    text = (grids / "pilot_v3.yaml").read_text()
    head = text.splitlines()[:4]
    assert "generate --v3 --seed 1 --root data/synthetic_v3_pilot" in head[1]
    assert "grid benchmarks/grids/pilot_v3.yaml --jobs 1" in head[2]
    assert "--table benchmarks/results/pilot_v3_demo.csv" in head[3]
    spec = yaml.safe_load(text)
    fixed = spec["fixed"]
    assert fixed == {"PROFILE": "demo", "DATASET": "synthetic",
                     "DATA_ROOT": "../../data/synthetic_v3_pilot", "METHOD": "rd",
                     "IMAGE_SIZE": 64, "STEPS": 400, "REGIME": "recurring",
                     "NOISE_RATIO": 0.0, "SEED": 111}
    (points,) = spec["grid"]
    assert sorted(points["CATEGORY"]) == sorted(synthetic.CATEGORIES_V3)
    # the benchmark's budget and size: RD's points in demo.yaml
    demo = yaml.safe_load((grids / "demo.yaml").read_text())
    rd = [p for p in demo["grid"] if "rd" in p["METHOD"]]
    assert {s for p in rd for s in p["STEPS"]} == {fixed["STEPS"]}
    assert demo["fixed"]["IMAGE_SIZE"] == fixed["IMAGE_SIZE"] \
        == synthetic.Spec.v3().size


def test_the_benchmark_grid_runs_exactly_the_categories_the_pilot_admits():
    """benchmarks/grids/benchmark_v3.yaml: its categories are the pilot's in-band ones
    (clean RD image AUROC in [0.65, 0.97], pilot_v3_demo.csv), every method at the
    budget of the pilot and demo.yaml, the five conditions, on generation seed 0;
    the multi-seed five are a subset of them."""
    import pandas as pd

    from fuadnb import grid

    root = Path(__file__).parents[2] / "benchmarks"
    pilot = pd.read_csv(root / "results" / "pilot_v3_demo.csv")
    admitted = set(pilot.category[pilot.image_auroc.between(0.65, 0.97)])
    assert len(admitted) >= 24 and "washer" not in admitted
    points = [p for _, p in grid.named_points(root / "grids" / "benchmark_v3.yaml")]
    small = [p for p in points if p["IMAGE_SIZE"] == 64]
    assert {p["CATEGORY"] for p in small} == admitted
    assert {p["DATA_ROOT"] for p in small} == {"../../data/synthetic_v3"}
    assert {(p["METHOD"], p.get("STEPS"), p.get("ITERATIONS"), p.get("EPOCHS"))
            for p in small} == {("rd", 400, None, None), ("llb-rd", 400, None, None),
                                ("rde", None, 245, None), ("cdd", None, None, 10),
                                *((m, None, None, None) for m in (
                                    "funad", "patchcore", "softpatch",
                                    "llb-patchcore", "llb-softpatch"))}
    conditions = {("recurring", 0.0), ("overlap", 0.1), ("overlap", 0.2),
                  ("iid", 0.2), ("recurring", 0.2)}
    by_cell = {}
    for p in points:
        key = (p["IMAGE_SIZE"], p["SEED"], p["CATEGORY"], p["METHOD"])
        by_cell.setdefault(key, set()).add((p["REGIME"], p["NOISE_RATIO"]))
    assert all(c == conditions for c in by_cell.values())   # every method x all 5
    seeds = {p["SEED"]: set() for p in small}
    for p in small:
        seeds[p["SEED"]].add(p["CATEGORY"])
    five = seeds[222]
    assert seeds[111] == admitted and seeds[333] == five and len(five) >= 5
    assert {p["CATEGORY"] for p in points if p["IMAGE_SIZE"] == 96} == five


def test_the_budget_ablation_scales_rds_benchmark_budget_on_six_families():
    """benchmarks/grids/budget_v3.yaml: RD at 1x, 4x and 16x the benchmark's budget,
    clean / iid 0.2 / recurring 0.2, six categories of six families, each of them a
    benchmark category; the memory banks once per condition."""
    from fuadnb import grid

    grids = Path(__file__).parents[2] / "benchmarks" / "grids"
    points = [p for _, p in grid.named_points(grids / "budget_v3.yaml")]
    main = {(p["METHOD"], p["CATEGORY"], p["REGIME"], p["NOISE_RATIO"], p.get("STEPS"))
            for _, p in grid.named_points(grids / "benchmark_v3.yaml")
            if p["IMAGE_SIZE"] == 64 and p["SEED"] == 111}
    cats = {p["CATEGORY"] for p in points}
    assert len(cats) >= 6 and len({synthetic.family(c) for c in cats}) == len(cats)
    rd = [p for p in points if p["METHOD"] == "rd"]
    assert sorted({p["STEPS"] for p in rd}) == [400, 4 * 400, 16 * 400]
    conditions = {(p["REGIME"], p["NOISE_RATIO"]) for p in points}
    assert conditions == {("recurring", 0.0), ("iid", 0.2), ("recurring", 0.2)}
    assert len(rd) == 3 * len(conditions) * len(cats)
    assert {(p["METHOD"], p["CATEGORY"], p["REGIME"], p["NOISE_RATIO"], p.get("STEPS"))
            for p in points if p.get("STEPS", 400) == 400} <= main
