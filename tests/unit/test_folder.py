"""The ``folder`` dataset (anomalib's ``Folder`` convention) on hand-made tiny
folders: the index it builds, checked against what was written (counts, labels,
masks paired by stem, a deterministic seeded split), and its one-line errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuadnb import data, experiment
from fuadnb.data import folder
from fuadnb.data.index import DatasetError


def _png(path: Path, value: int = 128, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)
    return path


def _mask(path: Path, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size, size), np.uint8)
    m[4:8, 4:8] = 255
    Image.fromarray(m).save(path)
    return path


def _cubes(root: Path, n_normal: int = 10, stems=("a", "b", "c"),
           masks: dict | None = None) -> Path:
    """<root>/cubes/{normal,abnormal,mask}: n_normal normal images (written in
    reverse order, so no listing order can pass for sorting), anomalies `stems`,
    and their masks (`masks`: stem -> mask file name; default ``<stem>.png``)."""
    cat = root / "cubes"
    for i in reversed(range(n_normal)):
        _png(cat / "normal" / f"{i:03d}.png")
    for s in stems:
        _png(cat / "abnormal" / f"{s}.jpg", 200)
    for name in (masks if masks is not None else
                 {s: f"{s}.png" for s in stems}).values():
        _mask(cat / "mask" / name)
    return root


def test_index_counts_labels_and_masks(tmp_path):
    root = _cubes(tmp_path, masks={"a": "a.png", "b": "b_mask.bmp", "c": "c.tif"})
    df = data.index("folder", root, "cubes")
    assert list(df.columns) == [*data.COLUMNS, "prototype"]
    assert (df["dataset"] == "folder").all() and (df["category"] == "cubes").all()
    counts = df.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", 0): 8, ("test", 0): 2, ("test", 1): 3}  # 0.2 x 10
    bad = df[df.label == 1].set_index("id")
    assert {k: Path(v).name for k, v in bad["mask_path"].items()} == {
        "cubes/abnormal/a": "a.png", "cubes/abnormal/b": "b_mask.bmp",
        "cubes/abnormal/c": "c.tif"}
    assert (bad["defect"] == "abnormal").all()
    good = df[df.label == 0]
    assert good["mask_path"].isna().all() and (good["defect"] == "good").all()
    assert set(df["image_path"].map(lambda p: Path(p).parent.name)) == {
        "normal", "abnormal"}


def test_the_split_is_seeded_and_deterministic(tmp_path):
    """0.2 x n normal images to test: the first of the sorted names permuted
    by numpy's generator of `seed`; the same on every call, another seed another."""
    root = _cubes(tmp_path, n_normal=25)
    names = [f"{i:03d}" for i in range(25)]

    def test_stems(**options) -> set[str]:
        df = data.index("folder", root, "cubes", **options)
        return {Path(p).stem for p in df[(df.split == "test") & (df.label == 0)]
                ["image_path"]}

    expected = {names[i] for i in np.random.default_rng(0).permutation(25)[:5]}
    assert test_stems() == test_stems() == expected
    assert len(test_stems(test_split_ratio=0.5)) == 13   # 12.5, rounded half up
    other = test_stems(seed=3)
    assert len(other) == 5 and other != expected
    assert test_stems(seed=3) == other


def test_folder_yaml_names_the_folders_and_normal_test_dir(tmp_path):
    cat = tmp_path / "parts"
    for i in range(4):
        _png(cat / "good" / f"{i}.png")
    for i in range(3):
        _png(cat / "good_test" / f"t{i}.png")
    _png(cat / "defect" / "x.png", 250)
    (cat / "folder.yaml").write_text("normal_dir: good\nabnormal_dir: defect\n"
                                     "normal_test_dir: good_test\n")
    df = data.index("folder", tmp_path, "parts")
    counts = df.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", 0): 4, ("test", 0): 3, ("test", 1): 1}
    assert df["mask_path"].isna().all()   # no mask folder: no masks
    assert df.loc[df.label == 1, "defect"].item() == "defect"
    assert data.categories("folder", tmp_path) == ["parts"]
    _png(cat / "defect2" / "y.png", 250)
    _png(cat / "defect2" / "z.png", 250)   # an argument wins over the file
    assert (data.index("folder", tmp_path, "parts", abnormal_dir="defect2")["label"]
            .sum() == 2)
    with pytest.raises(DatasetError, match="normal_test_dir and normal_dir are both"):
        data.index("folder", tmp_path, "parts", normal_dir="good_test")


@pytest.mark.parametrize("damage,message", [
    (lambda c: c.rename(c.parent / "elsewhere"), "cubes not found"),
    (lambda c: (c / "abnormal").rename(c / "bad"), "abnormal not found: the "
     "abnormal_dir"),
    (lambda c: [p.unlink() for p in (c / "normal").iterdir()], "no images"),
    (lambda c: _mask(c / "mask" / "zz.png"), "mask without an image: .*zz.png"),
    (lambda c: (c / "mask" / "b.png").unlink(), "no mask for anomalous image "
     ".*b.jpg"),
    (lambda c: _mask(c / "mask" / "a_mask.png"), "two masks for anomalous image"),
    (lambda c: (c / "folder.yaml").write_text("normal: good\n"),
     r"unknown option\(s\) \['normal'\]"),
    (lambda c: (c / "folder.yaml").write_text("mask_dir: masks\n"),
     "masks not found: the mask_dir"),
    (lambda c: (c / "folder.yaml").write_text("test_split_ratio: 1.5\n"),
     "test_split_ratio must be"),
])
def test_one_line_errors(tmp_path, damage, message):
    root = _cubes(tmp_path)
    damage(root / "cubes")
    with pytest.raises(DatasetError, match=message) as err:
        data.index("folder", root, "cubes")
    assert "\n" not in str(err.value)


def test_one_normal_image_cannot_be_split(tmp_path):
    root = _cubes(tmp_path, n_normal=1)
    with pytest.raises(DatasetError, match="at least 2 are needed"):
        data.index("folder", root, "cubes")


def test_a_run_on_a_folder_without_masks(tmp_path):
    """End to end: a folder without masks runs (PatchCore, smoke profile); its
    pixel metrics are NaN, its image metrics are numbers."""
    root = _cubes(tmp_path, n_normal=12, masks={})
    scenario = experiment.Scenario("folder", root, "cubes", 0.1, "overlap")
    row = experiment.run("patchcore", scenario, profile="smoke", device="cpu",
                         runs_root=tmp_path / "runs").row
    assert row["dataset"] == "folder" and row["n_injected"] == 1
    assert 0 <= row["image_auroc"] <= 1
    assert np.isnan(row["pixel_auroc"]) and np.isnan(row["pixel_aupro"])
    assert folder.kind("cubes") == data.kind("folder", "cubes") == "texture"


def test_the_cli_reads_a_folder_and_says_what_is_missing(tmp_path, capsys):
    from fuadnb import cli

    root = _cubes(tmp_path, n_normal=12)
    args = ["run", "--dataset", "folder", "--root", str(root), "--category", "cubes",
            "--method", "patchcore", "--profile", "smoke", "--noise", "0.1",
            "--regime", "overlap", "--runs", str(tmp_path / "runs"), "--quiet"]
    assert cli.main(args) == 0
    assert "folder" in capsys.readouterr().out
    (root / "cubes" / "mask" / "a.png").rename(root / "cubes" / "mask" / "q.png")
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mask without an image" in err[0] and "q.png" in err[0]
