"""The run cache: keyed by configuration, loaded instead of retrained, atomic files."""

import json

import pandas as pd
import pytest
import torch
from torch import nn

from fuadnb import runs


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)
        self.history = []
        self.trace, self.curve = {}, []
        self.reproducible_prefixes = ("frozen.",)


def spec(root, **kw):
    split = {"definition": "softpatch", "source": "test", "injected_ids": ["a"],
             "removed_from_test_ids": ["a"], "n_clean_train": 10, "n_injected": 1}
    args = {"method": "rd", "dataset": "synthetic", "category": "brick",
            "noise_ratio": 0.1, "regime": "iid", "seed": 1, "profile": "smoke",
            "cfg": {"epochs": 2}, "split": split, "root": root} | kw
    return runs.RunSpec(**args)


def test_second_call_loads_instead_of_training(tmp_path):
    calls = []

    def fit():
        calls.append(1)
        torch.manual_seed(len(calls))
        m = Tiny()
        m.history = [0.5, 0.25]
        return m

    s = spec(tmp_path)
    m1, rec1 = runs.load_or_fit(s, build=Tiny, fit=fit)
    m2, rec2 = runs.load_or_fit(s, build=Tiny, fit=fit)
    assert calls == [1] and not rec1["loaded"] and rec2["loaded"]
    assert torch.equal(m1.head.weight, m2.head.weight)
    assert rec2["history"] == [0.5, 0.25]
    saved = torch.load(s.dir / "weights.pt", weights_only=True)
    assert set(saved) == {"head.weight", "head.bias"}     # frozen part not stored
    assert runs.stored_bytes(s.dir) == (s.dir / "weights.pt").stat().st_size > 0
    assert json.loads((s.dir / "config.json").read_text())["cfg"] == {"epochs": 2}
    assert sorted(p.name for p in s.dir.iterdir()) == [
        "config.json", "fit.json", "split.json", "weights.pt"]



def test_drop_weights_removes_only_that_runs_weights(tmp_path):
    mine, other = spec(tmp_path), spec(tmp_path, seed=2)
    for s in (mine, other):
        runs.load_or_fit(s, build=Tiny, fit=Tiny)
    assert mine.key != other.key
    assert runs.drop_weights(tmp_path, mine.key) == 1   # where RunSpec.dir puts it
    assert sorted(p.name for p in mine.dir.iterdir()) == [
        "config.json", "fit.json", "split.json"]
    assert (other.dir / runs.WEIGHTS_FILE).is_file()
    assert runs.drop_weights(tmp_path, mine.key) == 0
    assert runs.drop_weights(tmp_path, "") == 0
    assert (other.dir / runs.WEIGHTS_FILE).is_file()
    calls = []
    runs.load_or_fit(mine, build=Tiny, fit=lambda: calls.append(1) or Tiny())
    assert calls == [1]                                  # trained again

def test_unfinished_run_is_retrained(tmp_path):
    s = spec(tmp_path)
    runs.load_or_fit(s, build=Tiny, fit=Tiny)
    (s.dir / "fit.json").unlink()       # as if killed before the end
    calls = []
    runs.load_or_fit(s, build=Tiny, fit=lambda: calls.append(1) or Tiny())
    assert calls == [1]


def test_key_depends_on_everything_that_changes_the_model(tmp_path):
    base = spec(tmp_path)
    others = [spec(tmp_path, cfg={"epochs": 3}), spec(tmp_path, seed=2),
              spec(tmp_path, category="grass"), spec(tmp_path, regime="overlap"),
              spec(tmp_path, split={**base.split, "injected_ids": ["b"]})]
    keys = {base.key} | {o.key for o in others}
    assert len(keys) == 6
    assert spec(tmp_path / "elsewhere").key == base.key     # the root is not identity
    assert base.dir.parts[-2:] == ("n0.10-iid", f"s1-{base.key}")


def test_rows_collect_into_a_table(tmp_path):
    for seed in (2, 1):
        s = spec(tmp_path, seed=seed)
        s.dir.mkdir(parents=True)
        runs.save_row(s, runs.flat_row(s) | {"image_auroc": 0.5 + seed / 10})
    df = runs.collect(tmp_path)
    assert list(df["seed"]) == [1, 2] and list(df["image_auroc"]) == [0.6, 0.7]
    assert df.loc[0, "cfg.epochs"] == 2 and df.loc[0, "n_injected"] == 1
    out = runs.write_table(df, tmp_path / "results.csv")
    pd.testing.assert_frame_equal(pd.read_csv(out), df, check_dtype=False)
    assert runs.collect(tmp_path / "none").empty


def test_mismatched_weights_are_a_clear_error(tmp_path):
    s = spec(tmp_path)
    runs.load_or_fit(s, build=Tiny, fit=Tiny)
    other = Tiny()
    other.head = nn.Linear(3, 3)   # another structure than the one saved
    with pytest.raises(runs.RunCacheError, match="delete"):
        runs.load_or_fit(s, build=lambda: other, fit=Tiny)
