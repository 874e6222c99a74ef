"""Index readers on tiny fixtures written in each dataset's distributed layout.

Each fixture is built in `tmp_path` with 8x8 images in the format the dataset ships
(PNG for MVTec AD/MPDD, BMP and PNG for BTAD, JPG for VisA and Real-IAD), following
/work/shared/reference/data_and_metrics.md §1.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fuadnb.data import btad, mpdd, mvtec, real_iad, visa
from fuadnb.data.index import COLUMNS, DatasetError


def _image(path: Path, fmt: str = "PNG", value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path, format=fmt)
    return path


def _mask(path: Path, fmt: str = "PNG", values: tuple[int, ...] = (255,)) -> Path:
    """An 8x8 one-channel mask; each of `values` fills its own blob (0 = empty)."""
    arr = np.zeros((8, 8), np.uint8)
    for i, v in enumerate(values):
        arr[2 * i: 2 * i + 2, 1:4] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def _counts(df) -> dict[tuple[str, int, str], int]:
    return dict(Counter(zip(df["split"], df["label"], df["defect"], strict=True)))


def _check_frame(df) -> None:
    """Properties every reader's output must have."""
    assert tuple(df.columns) == COLUMNS
    assert df["id"].is_unique
    for path in df["image_path"]:
        assert Path(path).is_absolute() and Path(path).is_file()
    for label, mask in zip(df["label"], df["mask_path"], strict=True):
        if label == 0:
            assert mask is None
        else:
            assert Path(mask).is_absolute() and Path(mask).is_file()


@pytest.fixture
def no_image_open(monkeypatch):
    """Fail the test if anything opens an image while indexing."""
    def boom(*args, **kwargs):
        raise AssertionError("indexing must not open images")
    monkeypatch.setattr(Image, "open", boom)


# --------------------------------------------------------------------------- MVTec AD


def make_mvtec(root: Path) -> Path:
    """bottle (train 3, test good 1, broken 3, crack 1) + an extra category `cable`.

    The broken images are named 1, 10, 2: sorted images are [1, 10, 2] but sorted masks
    are [10_mask, 1_mask, 2_mask], so pairing by sorted order would give 1 <-> 10_mask.
    """
    cat = root / "bottle"
    for i in range(3):
        _image(cat / "train" / "good" / f"{i:03d}.png")
    _image(cat / "test" / "good" / "000.png")
    for stem in ("1", "10", "2"):
        _image(cat / "test" / "broken" / f"{stem}.png", value=int(stem))
        _mask(cat / "ground_truth" / "broken" / f"{stem}_mask.png")
    _image(cat / "test" / "crack" / "000.png")
    _mask(cat / "ground_truth" / "crack" / "000_mask.png")
    (cat / "train" / "good" / "readme.txt").write_text("not an image")
    (cat / "license.txt").write_text("CC BY-NC-SA 4.0")
    _image(root / "cable" / "train" / "good" / "000.png")
    _image(root / "cable" / "test" / "good" / "000.png")
    (root / "readme.txt").write_text("MVTec AD")
    return root


def test_mvtec_rows(tmp_path, no_image_open):
    df = mvtec.index(make_mvtec(tmp_path / "mvtec"), "bottle")
    _check_frame(df)
    assert _counts(df) == {("train", 0, "good"): 3, ("test", 0, "good"): 1,
                           ("test", 1, "broken"): 3, ("test", 1, "crack"): 1}
    assert set(df["dataset"]) == {"mvtec_ad"} and set(df["category"]) == {"bottle"}


def test_mvtec_masks_pair_by_name_not_sorted_order(tmp_path):
    root = make_mvtec(tmp_path / "mvtec")
    df = mvtec.index(root, "bottle")
    broken = df[df["defect"] == "broken"]
    pairs = {Path(i).name: Path(m).name
             for i, m in zip(broken["image_path"], broken["mask_path"], strict=True)}
    assert pairs == {"1.png": "1_mask.png", "10.png": "10_mask.png",
                     "2.png": "2_mask.png"}
    for m in broken["mask_path"]:
        assert Path(m).parent == root / "bottle" / "ground_truth" / "broken"


def test_mvtec_ids_stable_and_location_independent(tmp_path, monkeypatch):
    root = make_mvtec(tmp_path / "a" / "mvtec")
    first = mvtec.index(root, "bottle")
    assert first["id"].tolist() == mvtec.index(root, "bottle")["id"].tolist()
    assert "bottle/test/broken/10" in set(first["id"])
    assert "bottle/train/good/000" in set(first["id"])
    moved = tmp_path / "b" / "elsewhere"
    shutil.copytree(root, moved)
    again = mvtec.index(moved, "bottle")
    assert again["id"].tolist() == first["id"].tolist()
    assert again["image_path"].tolist() != first["image_path"].tolist()
    monkeypatch.chdir(tmp_path / "b")
    relative = mvtec.index("elsewhere", "bottle")  # relative root -> absolute paths
    assert relative["image_path"].tolist() == again["image_path"].tolist()


def test_mvtec_pool_split(tmp_path):
    root = make_mvtec(tmp_path / "synth")
    cat = root / "bottle"
    _image(cat / "pool" / "scratch" / "000.png")
    _image(cat / "pool" / "scratch" / "001.png")
    _mask(cat / "pool_ground_truth" / "scratch" / "000_mask.png")
    _mask(cat / "pool_ground_truth" / "scratch" / "001_mask.png")
    df = mvtec.index(root, "bottle", dataset="synthetic")
    _check_frame(df)
    pool = df[df["split"] == "pool"]
    assert _counts(pool) == {("pool", 1, "scratch"): 2}
    assert [Path(m).relative_to(cat).as_posix() for m in pool["mask_path"]] == [
        "pool_ground_truth/scratch/000_mask.png",
        "pool_ground_truth/scratch/001_mask.png"]
    assert set(df["dataset"]) == {"synthetic"}
    assert len(df) == 8 + 2  # pool rows come in addition to train and test

    (cat / "pool_ground_truth" / "scratch" / "001_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"pool/scratch/001\.png.*"
                       r"pool_ground_truth/scratch/001_mask\.png"):
        mvtec.index(root, "bottle")


def test_mvtec_custom_normal_folder(tmp_path):
    root = tmp_path / "d"
    _image(root / "c" / "train" / "ok" / "0.png")
    _image(root / "c" / "test" / "ok" / "0.png")
    df = mvtec.index(root, "c", normal="ok")
    assert _counts(df) == {("train", 0, "good"): 1, ("test", 0, "good"): 1}


def test_mvtec_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as err:
        mvtec.index(tmp_path / "nowhere", "bottle")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_mvtec_unknown_category_lists_categories(tmp_path):
    root = make_mvtec(tmp_path / "mvtec")
    with pytest.raises(DatasetError, match=r"\['bottle', 'cable'\]") as err:
        mvtec.index(root, "bottel")
    assert str(root / "bottel") in str(err.value)


def test_mvtec_missing_train_good(tmp_path):
    root = make_mvtec(tmp_path / "mvtec")
    shutil.rmtree(root / "cable" / "train" / "good")
    with pytest.raises(DatasetError, match=r"cable/train/good not found"):
        mvtec.index(root, "cable")


def test_mvtec_missing_mask_names_image_and_expected_mask(tmp_path):
    root = make_mvtec(tmp_path / "mvtec")
    (root / "bottle" / "ground_truth" / "broken" / "10_mask.png").unlink()
    with pytest.raises(DatasetError) as err:
        mvtec.index(root, "bottle")
    msg = str(err.value)
    assert str(root / "bottle" / "test" / "broken" / "10.png") in msg
    assert str(root / "bottle" / "ground_truth" / "broken" / "10_mask.png") in msg


# --------------------------------------------------------------------------- MPDD


def test_mpdd_uses_mvtec_layout(tmp_path, no_image_open):
    root = tmp_path / "MPDD"
    cat = root / "tubes"
    for i in range(2):
        _image(cat / "train" / "good" / f"{i:03d}.png")
    _image(cat / "test" / "good" / "000.png")
    _image(cat / "test" / "anomalous" / "000.png")
    _mask(cat / "ground_truth" / "anomalous" / "000_mask.png")
    df = mpdd.index(root, "tubes")
    _check_frame(df)
    assert _counts(df) == {("train", 0, "good"): 2, ("test", 0, "good"): 1,
                           ("test", 1, "anomalous"): 1}
    assert set(df["dataset"]) == {"mpdd"}
    assert "tubes" in mpdd.CATEGORIES and len(mpdd.CATEGORIES) == 6
    with pytest.raises(DatasetError, match=r"\['tubes'\]"):
        mpdd.index(root, "connector")


# --------------------------------------------------------------------------- BTAD


def make_btad(root: Path) -> Path:
    """01: BMP images, PNG masks; 02: PNG everywhere; 03: BMP images and BMP masks,
    one of them all zeros (BTAD ships 11 empty ko masks)."""
    layout = {"01": ("BMP", "PNG"), "02": ("PNG", "PNG"), "03": ("BMP", "BMP")}
    for cat, (img_fmt, mask_fmt) in layout.items():
        img_ext, mask_ext = f".{img_fmt.lower()}", f".{mask_fmt.lower()}"
        base = root / cat
        for i in range(3):
            _image(base / "train" / "ok" / f"{i:04d}{img_ext}", img_fmt)
        for i in range(2):
            _image(base / "test" / "ok" / f"{i:04d}{img_ext}", img_fmt)
        for i in range(2):
            _image(base / "test" / "ko" / f"{i:04d}{img_ext}", img_fmt)
            values = (0,) if (cat == "03" and i == 1) else (255,)
            _mask(base / "ground_truth" / "ko" / f"{i:04d}{mask_ext}", mask_fmt, values)
    return root


@pytest.mark.parametrize("cat", btad.CATEGORIES)
def test_btad_rows_and_mask_pairing(tmp_path, cat, no_image_open):
    root = make_btad(tmp_path / "BTAD")
    df = btad.index(root, cat)
    _check_frame(df)
    assert _counts(df) == {("train", 0, "good"): 3, ("test", 0, "good"): 2,
                           ("test", 1, "ko"): 2}
    assert set(df["dataset"]) == {"btad"}
    ko = df[df["label"] == 1]
    for image, mask in zip(ko["image_path"], ko["mask_path"], strict=True):
        assert Path(mask).stem == Path(image).stem
        assert Path(mask).parent == root / cat / "ground_truth" / "ko"
    expected_suffix = {"01": ".png", "02": ".png", "03": ".bmp"}[cat]
    assert {Path(m).suffix for m in ko["mask_path"]} == {expected_suffix}
    expected_img = {"01": ".bmp", "02": ".png", "03": ".bmp"}[cat]
    assert {Path(p).suffix for p in df["image_path"]} == {expected_img}
    assert f"{cat}/test/ko/0001" in set(df["id"])


def test_btad_empty_mask_is_indexed_as_anomalous(tmp_path):
    root = make_btad(tmp_path / "BTAD")
    df = btad.index(root, "03")
    row = df[df["id"] == "03/test/ko/0001"].iloc[0]
    assert row["label"] == 1 and row["mask_path"] is not None
    assert not np.asarray(Image.open(row["mask_path"])).any()  # the fixture is empty


def test_btad_prefers_png_mask_when_both_exist(tmp_path):
    root = make_btad(tmp_path / "BTAD")
    _mask(root / "03" / "ground_truth" / "ko" / "0000.png")
    df = btad.index(root, "03")
    masks = dict(zip(df["id"], df["mask_path"], strict=True))
    assert masks["03/test/ko/0000"].endswith("0000.png")
    assert masks["03/test/ko/0001"].endswith("0001.bmp")


def test_btad_errors(tmp_path):
    root = make_btad(tmp_path / "BTAD")
    with pytest.raises(DatasetError, match=r"\['01', '02', '03'\]"):
        btad.index(root, "04")
    with pytest.raises(DatasetError, match="does not exist"):
        btad.index(tmp_path / "missing", "01")
    (root / "01" / "ground_truth" / "ko" / "0001.png").unlink()
    with pytest.raises(DatasetError) as err:
        btad.index(root, "01")
    assert str(root / "01" / "test" / "ko" / "0001.bmp") in str(err.value)
    assert str(root / "01" / "ground_truth" / "ko" / "0001.png") in str(err.value)
    shutil.rmtree(root / "02" / "train" / "ok")
    with pytest.raises(DatasetError, match=r"02/train/ok not found"):
        btad.index(root, "02")


# --------------------------------------------------------------------------- VisA


VISA_HEADER = "object,split,label,image,mask"


def make_visa(root: Path, header: str = VISA_HEADER) -> Path:
    """candle: 3 train normal, 2 test normal, 2 test anomaly; pcb1: 1 train, 1 anomaly.

    Masks are multi-valued (one value per defect instance), as VisA ships them.
    """
    lines = [header]
    plan = {"candle": (3, 2, 2), "pcb1": (1, 0, 1)}
    for obj, (n_train, n_test_normal, n_anom) in plan.items():
        for i in range(n_train + n_test_normal):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            _image(root / rel, "JPEG")
            split = "train" if i < n_train else "test"
            lines.append(f"{obj},{split},normal,{rel},")
        for i in range(n_anom):
            rel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG"
            mask = f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            _image(root / rel, "JPEG")
            _mask(root / mask, "PNG", values=(1, 2, 3))
            lines.append(f"{obj},test,anomaly,{rel},{mask}")
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    (root / "split_csv" / "1cls.csv").write_text("\n".join(lines) + "\n")
    (root / "candle" / "image_anno.csv").write_text("image,label,mask\n")
    return root


def test_visa_rows(tmp_path, no_image_open):
    root = make_visa(tmp_path / "VisA_20220922")
    df = visa.index(root, "candle")
    _check_frame(df)
    assert _counts(df) == {("train", 0, "good"): 3, ("test", 0, "good"): 2,
                           ("test", 1, "anomaly"): 2}
    assert set(df["dataset"]) == {"visa"} and set(df["category"]) == {"candle"}
    anomalous = df[df["label"] == 1]
    assert [Path(m).relative_to(root).as_posix() for m in anomalous["mask_path"]] == [
        "candle/Data/Masks/Anomaly/000.png", "candle/Data/Masks/Anomaly/001.png"]
    assert "candle/Data/Images/Anomaly/001" in set(df["id"])
    assert _counts(visa.index(root, "pcb1")) == {("train", 0, "good"): 1,
                                                 ("test", 1, "anomaly"): 1}


def test_visa_mask_is_multivalued_and_only_pointed_at(tmp_path):
    root = make_visa(tmp_path / "VisA")
    mask = visa.index(root, "candle")["mask_path"].dropna().iloc[0]
    assert set(np.unique(np.asarray(Image.open(mask)))) == {0, 1, 2, 3}


def test_visa_ids_stable_and_location_independent(tmp_path):
    root = make_visa(tmp_path / "x" / "VisA")
    ids = visa.index(root, "candle")["id"].tolist()
    assert ids == visa.index(root, "candle")["id"].tolist()
    moved = tmp_path / "y" / "V"
    shutil.copytree(root, moved)
    assert visa.index(moved, "candle")["id"].tolist() == ids


@pytest.mark.parametrize("header", ["object,split,label,image",
                                    "object,split,label,image,mask_path",
                                    "image,label,mask"])
def test_visa_bad_header(tmp_path, header):
    root = make_visa(tmp_path / "VisA", header=header)
    with pytest.raises(DatasetError, match="header") as err:
        visa.index(root, "candle")
    assert VISA_HEADER in str(err.value)


def test_visa_unknown_object_lists_objects(tmp_path):
    root = make_visa(tmp_path / "VisA")
    with pytest.raises(DatasetError, match=r"\['candle', 'pcb1'\]"):
        visa.index(root, "candel")


def test_visa_missing_files_named_and_counted(tmp_path):
    root = make_visa(tmp_path / "VisA")
    (root / "candle" / "Data" / "Images" / "Normal" / "0001.JPG").unlink()
    (root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png").unlink()
    with pytest.raises(DatasetError, match=r"2 file\(s\)") as err:
        visa.index(root, "candle")
    assert str(root / "candle" / "Data" / "Images" / "Normal" / "0001.JPG") in str(
        err.value)
    assert len(visa.index(root, "pcb1")) == 2  # the other object is still readable


def test_visa_missing_root_and_csv(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        visa.index(tmp_path / "nothing", "candle")
    root = make_visa(tmp_path / "VisA")
    (root / "split_csv" / "1cls.csv").unlink()
    with pytest.raises(DatasetError, match=r"split_csv/1cls\.csv not found"):
        visa.index(root, "candle")


def test_visa_bad_label_and_anomaly_without_mask(tmp_path):
    root = make_visa(tmp_path / "VisA")
    csv_path = root / "split_csv" / "1cls.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("candle,test,anomaly", "candle,test,bad", 1))
    with pytest.raises(DatasetError, match=r"1cls\.csv:\d+: label 'bad'"):
        visa.index(root, "candle")
    lines = text.splitlines()
    lines = [ln.rsplit(",", 1)[0] + "," if ",anomaly," in ln else ln for ln in lines]
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="has no mask"):
        visa.index(root, "candle")


# --------------------------------------------------------------------------- Real-IAD


TS = "20231021120000"


def _riad_rel(kind: str, sample: int, view: int, defect: str = "") -> str:
    """Path of a view under ``<cat>/``: ``NG/AK/S0010/audiojack_0010_NG_C3_<ts>``."""
    name = f"audiojack_{sample:04d}_{kind}_C{view}_{TS}"
    folder = f"OK/S{sample:04d}" if kind == "OK" else f"NG/{defect}/S{sample:04d}"
    return f"{folder}/{name}"


def _rec(kind: str, sample: int, view: int, defect: str = "", cls: str | None = None,
         mask: bool = False) -> dict:
    rel = _riad_rel(kind, sample, view, defect)
    default_cls = "OK" if kind == "OK" else defect
    return {"category": "audiojack", "anomaly_class": cls or default_cls,
            "image_path": rel + ".jpg",
            "mask_path": rel + "_mask.png" if mask else None}


def _riad_records() -> dict[str, dict[str, list[dict]]]:
    """Records of the multi-view split and a contaminated fuiad split."""
    ok_train = [_rec("OK", 1, v) for v in range(1, 6)]  # 5 views of one OK sample
    ok_test = [_rec("OK", 2, v) for v in range(1, 3)]
    ng_test = [
        _rec("NG", 10, 1, "AK", mask=True),              # defect visible
        _rec("NG", 10, 2, "AK", cls="OK"),               # NG path labelled OK
        _rec("NG", 10, 3, "AK", cls="AK"),               # defect class, no mask
    ]
    ng_contam = [
        _rec("NG", 11, 1, "HS", mask=True),              # anomalous train record
        _rec("NG", 11, 2, "HS", cls="OK"),               # NG view labelled OK
    ]
    return {
        "realiad_jsons": {"train": ok_train, "test": ok_test + ng_test + ng_contam},
        "realiad_jsons_sv": {"train": ok_train[:1], "test": ok_test[:1] + ng_test[:1]},
        "realiad_jsons_fuiad_0.1": {"train": ok_train + ng_contam,
                                    "test": ok_test + ng_test},
    }


def make_real_iad(root: Path, *, nested: bool = False, prefix: str = "audiojack/",
                  resolution: str = "realiad_1024") -> Path:
    """Images under ``<resolution>/audiojack``, JSONs flat or in ``realiad_jsons/``."""
    splits = _riad_records()
    for rec in splits["realiad_jsons"]["train"] + splits["realiad_jsons"]["test"]:
        _image(root / resolution / "audiojack" / rec["image_path"], "JPEG")
        if rec["mask_path"]:
            _mask(root / resolution / "audiojack" / rec["mask_path"])
    json_root = root / "realiad_jsons" if nested else root
    for split, parts in splits.items():
        folder = json_root / split
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"prefix": prefix, "normal_class": "OK"}
        (folder / "audiojack.json").write_text(json.dumps({"meta": meta, **parts}))
        (folder / "usb.json").write_text(json.dumps(
            {"meta": {"prefix": "usb/", "normal_class": "OK"}, "train": [],
             "test": []}))
    return root


def test_real_iad_multiview_rows(tmp_path, no_image_open):
    root = make_real_iad(tmp_path / "Real-IAD")
    df = real_iad.index(root, "audiojack")
    _check_frame(df)
    assert _counts(df) == {("train", 0, "good"): 5, ("test", 0, "good"): 5,
                           ("test", 1, "AK"): 1, ("test", 1, "HS"): 1}
    assert set(df["dataset"]) == {"real_iad"}
    assert set(df["category"]) == {"audiojack"}


def test_real_iad_labels_come_from_json_not_path(tmp_path):
    root = make_real_iad(tmp_path / "Real-IAD")
    df = real_iad.index(root, "audiojack").set_index("id")
    visible = "audiojack/" + _riad_rel("NG", 10, 1, "AK")
    ng_labelled_ok = "audiojack/" + _riad_rel("NG", 10, 2, "AK")
    no_mask = "audiojack/" + _riad_rel("NG", 10, 3, "AK")
    assert (df.loc[visible, "label"], df.loc[visible, "defect"]) == (1, "AK")
    assert df.loc[visible, "mask_path"].endswith(
        _riad_rel("NG", 10, 1, "AK") + "_mask.png")
    for sid in (ng_labelled_ok, no_mask):
        assert "/NG/" in df.loc[sid, "image_path"]
        assert (df.loc[sid, "label"], df.loc[sid, "defect"]) == (0, "good")
        assert df.loc[sid, "mask_path"] is None


def test_real_iad_fuiad_train_keeps_true_labels(tmp_path):
    root = make_real_iad(tmp_path / "Real-IAD")
    df = real_iad.index(root, "audiojack", split="realiad_jsons_fuiad_0.1")
    _check_frame(df)
    assert _counts(df) == {("train", 0, "good"): 6, ("train", 1, "HS"): 1,
                           ("test", 0, "good"): 4, ("test", 1, "AK"): 1}
    train = df[df["split"] == "train"].set_index("id")
    contaminated = "audiojack/" + _riad_rel("NG", 11, 1, "HS")
    assert train.loc[contaminated, "label"] == 1
    assert train.loc[contaminated, "mask_path"] is not None
    assert train.loc["audiojack/" + _riad_rel("NG", 11, 2, "HS"), "label"] == 0


def test_real_iad_ids_unique_across_views_and_stable(tmp_path):
    root = make_real_iad(tmp_path / "a" / "Real-IAD")
    full = real_iad.index(root, "audiojack")
    views = full[full["id"].str.contains("_0001_OK_")]
    assert len(views) == 5 and views["id"].is_unique
    assert views["id"].tolist() == ["audiojack/" + _riad_rel("OK", 1, v)
                                    for v in range(1, 6)]
    fuiad = real_iad.index(root, "audiojack", split="realiad_jsons_fuiad_0.1")
    assert set(fuiad["id"]) == set(full["id"])  # same images, same ids in every split
    sv = real_iad.index(root, "audiojack", split="realiad_jsons_sv")
    assert len(sv) == 3 and set(sv["id"]) <= set(full["id"])
    moved = tmp_path / "b" / "RIAD"
    shutil.copytree(root, moved)
    assert real_iad.index(moved, "audiojack")["id"].tolist() == full["id"].tolist()


def test_real_iad_path_joining(tmp_path):
    root = make_real_iad(tmp_path / "Real-IAD", prefix="audiojack")  # no trailing /
    df = real_iad.index(root, "audiojack")
    first = Path(df["image_path"].iloc[0])
    assert first.relative_to(root / "realiad_1024" / "audiojack")
    nested = make_real_iad(tmp_path / "nested", nested=True, resolution="realiad_256")
    a = real_iad.index(nested, "audiojack", split="realiad_jsons_fuiad_0.1",
                       resolution="256")
    b = real_iad.index(root, "audiojack", split="realiad_jsons_fuiad_0.1")
    assert a["id"].tolist() == b["id"].tolist()  # ids do not depend on resolution
    assert all("/realiad_256/audiojack/" in p for p in a["image_path"])
    multi = real_iad.index(nested, "audiojack", split="realiad_jsons", resolution=256)
    assert len(multi) == 12


def test_real_iad_unknown_split_lists_split_folders(tmp_path):
    root = make_real_iad(tmp_path / "Real-IAD")
    with pytest.raises(DatasetError) as err:
        real_iad.index(root, "audiojack", split="realiad_jsons_fuiad_0.3")
    msg = str(err.value)
    assert "realiad_jsons_fuiad_0.3" in msg
    assert ("['realiad_jsons', 'realiad_jsons_fuiad_0.1', 'realiad_jsons_sv']"
            in msg)
    nested = make_real_iad(tmp_path / "nested", nested=True)
    with pytest.raises(DatasetError, match=r"realiad_jsons/realiad_jsons_sv"):
        real_iad.index(nested, "audiojack", split="nope")


def test_real_iad_other_errors(tmp_path):
    root = make_real_iad(tmp_path / "Real-IAD")
    with pytest.raises(DatasetError, match="does not exist"):
        real_iad.index(tmp_path / "none", "audiojack")
    with pytest.raises(DatasetError, match=r"\['audiojack', 'usb'\]"):
        real_iad.index(root, "zipper")
    with pytest.raises(DatasetError,
                       match=r"realiad_512 not found.*\['realiad_1024'\]"):
        real_iad.index(root, "audiojack", resolution="realiad_512")
    mask = root / "realiad_1024" / "audiojack" / (
        _riad_rel("NG", 10, 1, "AK") + "_mask.png")
    mask.unlink()
    with pytest.raises(DatasetError, match=r"1 file\(s\) it lists not found") as err:
        real_iad.index(root, "audiojack")
    assert str(mask) in str(err.value)


def test_real_iad_schema_errors(tmp_path):
    root = make_real_iad(tmp_path / "Real-IAD")
    path = root / "realiad_jsons" / "audiojack.json"
    info = json.loads(path.read_text())
    info["test"][0]["label"] = 1
    path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"test\[0\]: record keys"):
        real_iad.index(root, "audiojack")
    del info["test"][0]["label"]
    info["test"].append(info["train"][0])  # the same image in train and test
    path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="already listed at"):
        real_iad.index(root, "audiojack")
    path.write_text(json.dumps({"train": [], "test": []}))
    with pytest.raises(DatasetError, match="meta"):
        real_iad.index(root, "audiojack")


def test_categories_are_official():
    assert len(mvtec.CATEGORIES) == 15 and "metal_nut" in mvtec.CATEGORIES
    assert len(visa.CATEGORIES) == 12 and "pipe_fryum" in visa.CATEGORIES
    assert len(real_iad.CATEGORIES) == 30 and "transistor1" in real_iad.CATEGORIES
    assert btad.CATEGORIES == ("01", "02", "03")
