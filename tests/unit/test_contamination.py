"""The SoftPatch protocol and its variants, on hand-made indices (no files needed)."""

import json

import numpy as np
import pandas as pd
import pytest

from fuadnb.data import contamination as C
from fuadnb.data import mvtec
from fuadnb.data.index import make_index


def make(n_train=100, n_good_test=30, defects=("crack", "hole", "scratch", "stain"),
         per_defect=12, pool_per_defect=0, category="brick", shipped=0,
         recurring_per_defect=0):
    """A hand-made index; with recurring defects the first half of each defect
    type's test images copy a prototype, as the synthetic benchmark's."""
    rows = []

    def add(split, label, defect, i):
        rows.append({"id": f"{category}/{split}/{defect}/{i:03d}",
                     "dataset": "synthetic",
                     "category": category, "split": split, "label": label,
                     "defect": defect, "image_path": f"/x/{split}/{defect}/{i}.png",
                     "mask_path": None if label == 0 else f"/x/m/{defect}/{i}.png"})
    for i in range(n_train):
        add("train", 0, "good", i)
    for i in range(shipped):
        add("train", 1, "crack", 1000 + i)
    for i in range(n_good_test):
        add("test", 0, "good", i)
    for d in defects:
        for i in range(per_defect):
            add("test", 1, d, i)
        for i in range(pool_per_defect):
            add("pool", 1, d, i)
        for i in range(recurring_per_defect):
            add("recurring", 1, d, i)
    index = make_index(rows, source="test")
    recurring = recurring_per_defect and (index.split.isin(["test", "recurring"])
                                          & (index.label == 1))
    number = index.id.str.rsplit("/", n=1).str[1].astype(int)
    copies = recurring & ((index.split == "recurring") | (number < per_defect // 2))
    return index.assign(prototype=np.where(copies, index.defect + "/0", None))


def test_softpatch_count_is_int_of_ratio_times_clean_train():
    assert C.n_injected(100, 0.1) == 10
    assert C.n_injected(391, 0.2) == 78          # hazelnut at 0.2 (reference §1.6)
    assert C.n_injected(213, 0.15) == 31         # transistor
    assert C.n_injected(60, 0.05) == 3           # toothbrush
    assert C.n_injected(100, 0.2, "fraction") == 25    # 25 / 125 = 0.2
    split = C.contaminate(make(), 0.1, seed=0)
    assert split.train["is_injected"].sum() == 10
    assert len(split.train) == 110
    assert split.manifest["injected_fraction"] == pytest.approx(10 / 110)


def test_no_overlap_removes_injected_from_test_and_overlap_keeps_them():
    index = make()
    no = C.contaminate(index, 0.2, seed=3)
    yes = C.contaminate(index, 0.2, seed=3, regime="overlap")
    injected = set(no.manifest["injected_ids"])
    assert injected == set(yes.manifest["injected_ids"])     # same draw
    assert injected.isdisjoint(no.test["id"])
    assert len(no.test) == 78 - 20 and not no.test["is_injected"].any()
    assert set(no.manifest["removed_from_test_ids"]) == injected
    assert len(yes.test) == 78 and set(yes.test.loc[yes.test["is_injected"], "id"]) \
        == injected
    groups = yes.test_groups()          # seen = exactly the trained-on test anomalies
    assert set(yes.test.id[groups["seen"]]) == injected
    assert set(yes.test.id[groups["unseen"]]) == set(
        yes.test.id[yes.test.label == 1]) - injected
    assert no.test_groups() == {} and no.manifest["regime"] == "iid"
    assert yes.manifest["removed_from_test_ids"] == []
    assert no.test_composition()["anomalous"] == 28
    assert set(no.train.loc[no.train["is_injected"], "label"]) == {1}
    assert (no.train["split"] == "train").all()


def test_draw_is_seeded_independent_of_row_order_and_global_rng():
    index = make()
    a = C.contaminate(index, 0.1, seed=1).manifest["injected_ids"]
    np.random.seed(123)
    shuffled = index.sample(frac=1, random_state=5)
    b = C.contaminate(shuffled, 0.1, seed=1).manifest["injected_ids"]
    c = C.contaminate(index, 0.1, seed=2).manifest["injected_ids"]
    assert a == b and a != c
    assert len(set(a)) == 10


def test_draw_is_uniform_over_pooled_defect_types():
    index = make(defects=("a", "b"), per_defect=50)
    counts = {"a": 0, "b": 0}
    for seed in range(200):
        for i in C.contaminate(index, 0.1, seed=seed).manifest["injected_ids"]:
            counts[i.split("/")[2]] += 1
    assert abs(counts["a"] - counts["b"]) < 0.1 * 2000   # 2000 draws, p = 0.5 each


def test_iid_draws_from_the_pool_and_leaves_test_untouched():
    index = make(pool_per_defect=10)
    split = C.contaminate(index, 0.3, seed=0)            # iid takes the pool
    assert len(split.test) == 78 and split.manifest["source"] == "pool"
    assert all("/pool/" in i for i in split.manifest["injected_ids"])
    assert split.manifest["removed_from_test_ids"] == []
    assert C.contaminate(make(), 0.1, seed=0).manifest["source"] == "test"


def test_recurring_draws_copies_and_splits_the_test_anomalies():
    index = make(recurring_per_defect=6)
    split = C.contaminate(index, 0.2, seed=0, regime="recurring")
    assert split.manifest["source"] == "recurring" and len(split.test) == 78
    assert all("/recurring/" in i for i in split.manifest["injected_ids"])
    assert split.test.id.tolist() == C.contaminate(index, 0.0, seed=0,
                                                   regime="recurring").test.id.tolist()
    groups = split.test_groups()
    assert (groups["seen"] == split.test.prototype.notna()).all()
    assert groups["seen"].sum() == 4 * 6 and groups["unseen"].sum() == 4 * 6
    with pytest.raises(C.ContaminationError, match="regime 'recurring' needs"):
        C.contaminate(make(), 0.1, seed=0, regime="recurring")


def test_inert_or_impossible_requests_fail_up_front():
    """iid on test anomalies that would leave none to test on fails before any
    training; so does an unknown regime."""
    index = make(n_train=100, defects=("crack",), per_defect=10)
    with pytest.raises(C.ContaminationError, match="leaves none to test on"):
        C.contaminate(index, 0.1, seed=0)
    assert C.contaminate(index, 0.1, seed=0, regime="overlap").test.label.sum() == 10
    with pytest.raises(C.ContaminationError, match="unknown regime"):
        C.contaminate(index, 0.1, seed=0, regime="bogus")


def test_too_many_anomalies_is_a_clear_error():
    index = make(n_train=391, defects=("crack",), per_defect=70)   # hazelnut-like
    with pytest.raises(C.ContaminationError) as err:
        C.contaminate(index, 0.2, seed=0)
    msg = str(err.value)
    assert "78 anomalies" in msg and "only 70" in msg and "0.179" in msg
    assert C.contaminate(index, 0.179, seed=0).manifest["n_injected"] == 69


@pytest.mark.parametrize("ratio", [-0.1, float("nan"), float("inf")])
def test_bad_ratio(ratio):
    with pytest.raises(C.ContaminationError, match="noise ratio"):
        C.contaminate(make(), ratio, seed=0)


def test_bad_definition_regime_and_mixed_categories():
    with pytest.raises(C.ContaminationError, match="definition"):
        C.contaminate(make(), 0.1, seed=0, definition="real_iad")
    with pytest.raises(C.ContaminationError, match="regime"):
        C.contaminate(make(), 0.1, seed=0, regime="pool")
    with pytest.raises(C.ContaminationError, match="fraction"):
        C.contaminate(make(), 1.0, seed=0, definition="fraction")
    both = pd.concat([make(), make(category="grass")])
    with pytest.raises(C.ContaminationError, match="exactly one"):
        C.contaminate(both, 0.1, seed=0)


def test_shipped_noisy_split_is_used_as_is():
    index = make(shipped=7)
    split = C.contaminate(index, 0.0, seed=0)
    assert split.train["is_injected"].sum() == 7 and len(split.train) == 107
    assert split.manifest["n_injected"] == 7
    with pytest.raises(C.ContaminationError, match="already holds 7"):
        C.contaminate(index, 0.1, seed=0)


def test_clean_split_and_manifest_round_trip(tmp_path):
    split = C.contaminate(make(), 0.0, seed=0)
    assert not split.train["is_injected"].any() and len(split.test) == 78
    noisy = C.contaminate(make(), 0.1, seed=4)
    path = noisy.save(tmp_path / "splits" / "brick.json")
    loaded = C.load_manifest(path)
    assert loaded == json.loads(json.dumps(noisy.manifest))
    assert loaded["definition"] == "softpatch" and loaded["seed"] == 4
    assert list(tmp_path.joinpath("splits").iterdir()) == [path]   # no temp leftovers
    path.write_text("{}")
    with pytest.raises(C.ContaminationError, match="version"):
        C.load_manifest(path)


def test_repeat_reuses_anomalies_with_a_slight_augmentation():
    index = make(n_train=391, defects=("crack",), per_defect=70)
    plain = C.contaminate(index, 0.1, seed=0, regime="overlap")
    same = C.contaminate(index, 0.1, seed=0, regime="overlap", repeat=True)
    assert plain.manifest["injected_ids"] == same.manifest["injected_ids"]
    assert same.manifest["augmented"] == {}
    split = C.contaminate(index, 0.2, seed=0, regime="overlap", repeat=True)
    train = split.train[split.train["is_injected"]]
    assert len(train) == 78 and train["id"].is_unique
    copies = train[train["id"].str.contains("~aug")]
    assert len(copies) == 8 and copies["id"].str.endswith("~aug1").all()
    originals = {i.split("~")[0] for i in train["id"]}
    assert len(originals) == 70                       # every anomaly at least once
    for aug in copies["augment"]:
        assert abs(aug["angle"]) <= 3 and abs(aug["dx"]) <= 0.03
        assert abs(aug["dy"]) <= 0.03
    assert train.loc[~train["id"].str.contains("~"), "augment"].isna().all()
    assert set(split.manifest["augmented"]) == set(copies["id"])
    assert len(split.test) == 100 and split.test["is_injected"].sum() == 70
    again = C.contaminate(index, 0.2, seed=0, regime="overlap", repeat=True)
    assert again.manifest == split.manifest
    with pytest.raises(C.ContaminationError, match="regime 'overlap'"):
        C.contaminate(index, 0.2, seed=0, repeat=True)
    with pytest.raises(C.ContaminationError, match="--repeat"):
        C.contaminate(index, 0.2, seed=0)


# reference/data_and_metrics.md §2, "MVTec AD counts under the SoftPatch formula":
# category -> (n@0.1, n@0.2, n@0.4), with the ratios it cannot supply (✗)
REFERENCE_SUPPLY = {
    "bottle": ((20, 41, 83), {0.4}), "carpet": ((28, 56, 112), {0.4}),
    "hazelnut": ((39, 78, 156), {0.2, 0.4}), "toothbrush": ((6, 12, 24), set()),
    "transistor": ((21, 42, 85), {0.2, 0.4}), "zipper": ((24, 48, 96), set()),
}


def test_supply_matches_the_reference_mvtec_table():
    counts = {c: (n[0], n[2]) for c, n in mvtec.COUNTS.items()}
    assert sum(n[0] for n in mvtec.COUNTS.values()) == 3629     # MVTec AD train
    assert sum(n[1] + n[2] for n in mvtec.COUNTS.values()) == 1725   # and test
    table = C.supply(counts, [0.1, 0.2, 0.4]).set_index(
        ["category", "ratio"])
    for category, (ns, impossible) in REFERENCE_SUPPLY.items():
        for ratio, n in zip((0.1, 0.2, 0.4), ns, strict=True):
            row = table.loc[(category, ratio)]
            assert row.n_softpatch == n
            assert bool(row.fits_softpatch) == (ratio not in impossible)
            assert row.left_softpatch == counts[category][1] - n
            assert row.n_fraction == round(ratio / (1 - ratio) * counts[category][0])


def test_defect_groups_partition_the_test_anomalies():
    split = C.contaminate(make(), 0.1, seed=0)
    groups = split.defect_groups()
    assert sorted(groups) == ["defect.crack", "defect.hole", "defect.scratch",
                              "defect.stain"]
    stacked = np.stack(list(groups.values()))
    assert (stacked.sum(0) == (split.test.label == 1)).all()     # each anomaly once
    assert (split.test.defect[groups["defect.hole"]] == "hole").all()
