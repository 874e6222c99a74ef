"""The dress rehearsal of the paper grid: stand-ins every reader indexes, the
rehearsal's override (same points, same names, other values), its subsets, and its
fast slice end to end (one point a dataset through the benchmark cell, the table,
chapter 08)."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fuadnb import cli, data, models, rehearsal  # papermill: missing fails, never skips
from fuadnb import grid as grids
from fuadnb.data import standin
from fuadnb.experiment import parse_method


@pytest.fixture(scope="module")
def stand(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("standin")
    for dataset in standin.DATASETS:
        standin.write(root / dataset, dataset)
    return root


@pytest.mark.parametrize("dataset", standin.DATASETS)
def test_every_category_of_every_stand_in_is_indexed(stand, dataset):
    """Every real category name, in the layout its reader reads, with train, good
    and anomalous test images (enough for the paper grid's ratios)."""
    for category in standin.categories(dataset):
        df = data.index(dataset, stand / dataset, category)
        counts = df.groupby(["split", "label"]).size().to_dict()
        assert counts[("train", 0)] >= 10 and counts[("test", 0)] >= 3
        assert counts[("test", 1)] >= (6 if dataset == "real_iad" else 4)
        for mask in df["mask_path"].dropna():
            assert Path(mask).is_file()


def test_stand_ins_copy_the_layout_quirks(stand):
    """VisA's split CSV and multi-valued masks, BTAD's formats and empty mask,
    MVTec AD's grey categories, Real-IAD's NG views labelled OK."""
    import numpy as np
    from PIL import Image

    assert (stand / "visa" / "split_csv" / "1cls.csv").read_text().startswith(
        "object,split,label,image,mask\ncandle,train,normal,"
        "candle/Data/Images/Normal/0000.JPG,\n")
    visa = data.index("visa", stand / "visa", "pcb4")
    values = {int(v) for m in visa["mask_path"].dropna()
              for v in np.unique(np.asarray(Image.open(m)))}
    assert values >= {0, 1, 2, 3}
    btad = data.index("btad", stand / "btad", "03")
    assert {Path(p).suffix for p in btad["image_path"]} == {".bmp"}
    assert not all(np.asarray(Image.open(m)).any() for m in btad["mask_path"].dropna())
    grey = data.index("mvtec_ad", stand / "mvtec_ad", "screw")["image_path"].iloc[0]
    assert Image.open(grey).mode == "L"
    riad = data.index("real_iad", stand / "real_iad", "audiojack")
    assert ((riad["label"] == 0) & riad["image_path"].str.contains("/NG/")).any()
    with pytest.raises(ValueError, match="not empty"):
        standin.write(stand / "visa", "mvtec_ad")   # never into another dataset


def _override(tmp_path):
    _, _, points = grids.load_grid(rehearsal.paper_grid())
    methods = list(dict.fromkeys(p["METHOD"] for p in points))
    return methods, rehearsal.overrides(tmp_path / "data", tmp_path / "runs", methods)


def test_the_override_keeps_every_point_and_name_of_the_paper_grid(tmp_path):
    methods, (every, per) = _override(tmp_path)
    plain = grids.named_points(rehearsal.paper_grid())
    over = grids.named_points(rehearsal.paper_grid(), every, per)
    assert len(over) == len(plain) == 3240
    assert [n for n, _ in over] == [n for n, _ in plain]
    for (_, p), (_, q) in zip(plain, over, strict=True):
        cell = grids.cell_notebook().parent   # relative: the same on every clone
        assert not Path(q["DATA_ROOT"]).is_absolute()
        assert (cell / q["DATA_ROOT"]).resolve() == (tmp_path / "data").resolve() / \
            p["DATASET"]
        assert q["PROFILE"] == p["PROFILE"] == "paper" and q["DEVICE"] == "cpu"
        assert q["IMAGE_SIZE"] == 64 and q["BACKBONE"] == "efficientnet_lite2"
        assert {k: q[k] for k in ("METHOD", "CATEGORY", "REGIME", "NOISE_RATIO",
                                  "SEED")} == {k: p[k] for k in ("METHOD", "CATEGORY",
                                                                  "REGIME",
                                                                  "NOISE_RATIO",
                                                                  "SEED")}
    rde = next(q for _, q in over if q["METHOD"] == "rde")
    assert "dtd/images" in rde["OPTIONS"] and rde["ITERATIONS"] == 2
    # LLB's stage-1 sub-models have their own schedule (1000 steps at the paper
    # profile): a few steps too, where the method trains; a bank trains nothing
    llb = {q["METHOD"]: yaml.safe_load(q.get("OPTIONS", "{}")) for _, q in over
           if q["METHOD"].startswith("llb-")}
    assert llb["llb-rd"]["llb.sub_steps"] == 2 and llb["llb-rd"].get(
        "load_size", 0) == rehearsal.crop("rd")
    assert "llb.sub_steps" not in llb["llb-patchcore"]
    for method in methods:   # every method that trains gets a few steps
        strategy, inner = parse_method(method)
        q = next(q for _, q in over if q["METHOD"] == method)
        shortened = {k: q[k] for k in ("STEPS", "EPOCHS", "ITERATIONS") if k in q}
        assert (list(shortened.values()) in ([1], [2])) == rehearsal._trains(inner)
    assert not rehearsal._trains("patchcore") and rehearsal._trains("funad")
    assert set(methods) == {"rd", "patchcore", "softpatch", "cdd", "funad", "llb-rd",
                            "llb-patchcore", "rde"}


def test_a_paper_crop_keeps_its_ratio_at_64_px():
    for method in ("rd", "patchcore", "funad"):
        cfg = models.get(method).config("paper")
        expected = 0 if not cfg.load_size or cfg.load_size == cfg.image_size else \
            round(cfg.load_size * 64 / cfg.image_size)
        assert rehearsal.crop(method) == expected
    assert rehearsal.crop("funad") == 73          # resize 256, crop 224


def test_the_stratified_subset_covers_every_method_regime_ratio_category_seed(
        tmp_path):
    _, (every, per) = _override(tmp_path)
    named = grids.named_points(rehearsal.paper_grid(), every, per)
    chosen = set(rehearsal.select(named, "stratified"))
    picked = [p for n, p in named if n in chosen]
    assert len(picked) == len(chosen) < len(named) / 20
    for dataset in ("mvtec_ad", "visa"):
        mine = [p for p in picked if p["DATASET"] == dataset]
        everything = [p for _, p in named if p["DATASET"] == dataset]
        for key in ("METHOD", "CATEGORY", "SEED", "REGIME", "NOISE_RATIO"):
            assert {p[key] for p in mine} == {p[key] for p in everything}, key
        combos = {(p["METHOD"], p["REGIME"], p["NOISE_RATIO"]) for p in mine}
        assert combos == {(p["METHOD"], p["REGIME"], p["NOISE_RATIO"])
                          for p in everything}
    assert len(rehearsal.select(named, "all")) == len(named)
    assert len(rehearsal.select(named, "ci")) == 2


@pytest.mark.parametrize("stop", [False, True])
def test_the_tables_are_written_after_every_grid_ran_never_between(tmp_path,
                                                                   monkeypatch, stop):
    """A table written into the checkout while the next grid runs would make every
    later point's commit dirty: both tables are written at the end, also when the
    second grid is stopped (with the points it finished)."""
    tables, seen = tmp_path / "t", []

    def run_grid(grid_file, out, *, only, **_):
        seen.append(sorted(p.name for p in tables.glob("*.csv")))
        rows = pd.DataFrame({"point": sorted(only), "status": "ok", "seconds": 1.0,
                             "param.DATASET": "x"})
        if stop and len(seen) == 2:
            raise grids.GridInterrupted(rows.iloc[:1])
        return rows

    monkeypatch.setattr(grids, "run_grid", run_grid)
    monkeypatch.setattr(rehearsal, "_keep", lambda kept, table, named: (
        kept.parent.mkdir(exist_ok=True), table.to_csv(kept, index=False)))
    call = dict(subset="ci", datasets=("mvtec_ad", "btad", "mpdd"), chapters=(),
                tables=tables, log=lambda _: None)
    if stop:
        with pytest.raises(grids.GridInterrupted):
            rehearsal.rehearse(tmp_path / "r", **call)
    else:
        rehearsal.rehearse(tmp_path / "r", **call)
    assert seen == [[], []]   # nothing written before either grid ran
    written = {n: pd.read_csv(rehearsal.table_path(tables, n)) for n in
               ("paper", "readers")}
    assert {n: len(t) for n, t in written.items()} == {"paper": 1,
                                                       "readers": 1 if stop else 2}


def test_grid_set_fills_templates_from_each_point(write_notebook, tmp_path):
    write_notebook(tmp_path / "toy.ipynb", "A: str = 'x'  # a\nB: str = ''  # b",
                   "pass")
    grid = tmp_path / "g.yaml"
    grid.write_text("notebook: toy.ipynb\ngrid:\n  A: [p, q]\n")
    named = grids.named_points(grid, {"B": "/data/{A}/{textures: x}"})
    assert [(n, p["B"]) for n, p in named] == [("A-p", "/data/p/{textures: x}"),
                                               ("A-q", "/data/q/{textures: x}")]
    per = grids.named_points(grid, None, {"A": {"q": {"B": "only q"}}})
    assert [(n, p.get("B")) for n, p in per] == [("A-p", None), ("A-q", "only q")]
    assert cli.main(["grid", str(grid), "--dry-run", "--out", str(tmp_path / "o"),
                     "--set", "B=/d/{A}"]) == 0


def test_the_ci_slice_runs_end_to_end(tmp_path):
    """One point of each dataset through the benchmark cell at the paper profile
    with the rehearsal's override, the tables, and chapter 08 from one of them."""
    report = rehearsal.rehearse(tmp_path / "r", subset="ci", jobs=2,
                                chapters=("visa",), tables=tmp_path / "t",
                                log=lambda _: None)
    assert {k: len(t) for k, t in report.tables.items()} == {"paper": 2, "readers": 3}
    for name, table in report.tables.items():
        assert (table["status"] == "ok").all(), table["error"].tolist()
        saved = pd.read_csv(tmp_path / "r" / name / "grid_results.csv")
        assert set(saved["profile"]) == {"paper"}
        assert set(saved["teacher"]) == {"efficientnet_lite2/imagenet"}
        assert set(saved["cfg.image_size"]) == {64}
    assert set(report.tables["readers"]["dataset"]) == {"btad", "mpdd", "real_iad"}
    assert report.chapters == {"visa": tmp_path / "r" / "08_benchmark_visa.ipynb"}
    assert report.totals == {"paper": 3240, "readers": 624}
    runs = tmp_path / "r" / "runs"   # each run's weights dropped, its record kept
    assert len(list(runs.rglob("fit.json"))) == 5
    assert not list(runs.rglob("weights.pt"))
    text = (tmp_path / "r" / "REHEARSAL.md").read_text()
    assert "NOT results" in text and "2 of 3240 grid points run, 2 ok" in text
    # the committed tables: on a fresh clone (no run folders, notebooks or cache)
    # the rehearsal resumes from them and runs nothing again
    kept = {n: grids.read_table(rehearsal.table_path(tmp_path / "t", n))
            for n in ("paper", "readers")}
    assert {n: len(t) for n, t in kept.items()} == {"paper": 2, "readers": 3}
    for name in ("paper", "readers", "runs"):
        shutil.rmtree(tmp_path / "r" / name)
    said = []
    again = rehearsal.rehearse(tmp_path / "r", subset="ci", datasets=("mvtec_ad",),
                               chapters=(), tables=tmp_path / "t", log=said.append)
    assert [line.endswith("done before, skipped") for line in said[1:]] == [True]
    assert again.tables["paper"]["point"].tolist() == kept["paper"]["point"][
        kept["paper"]["param.DATASET"] == "mvtec_ad"].tolist()
    after = grids.read_table(rehearsal.table_path(tmp_path / "t", "paper"))
    assert after.equals(kept["paper"])   # the other dataset's row kept, unchanged
