"""The Scenario: the data side of a run, one value from any caller's types, a JSON
round trip, and the same split as the data layer's steps."""

import dataclasses
import json
from pathlib import Path

import pytest

from fuadnb import data, experiment
from fuadnb.experiment import Scenario


def test_a_scenario_is_one_value_whatever_the_callers_types(tmp_path):
    a = Scenario("synthetic", str(tmp_path), "brick", 0, "overlap", seed="7")
    b = Scenario("synthetic", tmp_path, "brick", 0.0, "overlap", seed=7)
    assert a == b and hash(a) == hash(b)
    assert isinstance(a.root, Path) and isinstance(a.noise_ratio, float)
    assert Scenario(**json.loads(json.dumps(a.as_dict()))) == a
    assert a.replace(noise_ratio=0.2) == Scenario("synthetic", tmp_path, "brick", 0.2,
                                                  "overlap", seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.noise_ratio = 0.2
    assert Scenario("synthetic", tmp_path, "brick", repeat=1).repeat is True
    with pytest.raises(ValueError, match=r"repeat \(Scenario repeat, --repeat, "
                       r"REPEAT\) must be true or false"):
        Scenario("synthetic", tmp_path, "brick", repeat="false")   # would be True
    with pytest.raises(ValueError, match=r"seed \(Scenario seed, --seed, SEED\) must "
                       "be a whole number"):
        Scenario("synthetic", tmp_path, "brick", seed=7.9)         # would be 7


def test_the_split_is_the_data_layers_steps(tiny_synth):
    s = Scenario("synthetic", tiny_synth, "brick", 0.2, "overlap", seed=3)
    index = data.index("synthetic", tiny_synth, "brick")
    by_hand = data.contaminate(index, 0.2, seed=3, regime="overlap")
    assert s.index().equals(index)
    assert s.split().manifest == s.contaminate(index).manifest == by_hand.manifest
    assert s.split().train.equals(by_hand.train)
    at = {d: s.replace(noise_ratio=0.3, definition=d).split().manifest
          for d in ("softpatch", "fraction")}
    assert (at["softpatch"]["n_injected"], at["fraction"]["n_injected"]) == (3, 4)


def test_a_split_no_run_could_use_is_refused(tiny_copy):
    scenario = Scenario("synthetic", tiny_copy, "brick")
    for png in (tiny_copy / "brick" / "train" / "good").glob("*.png"):
        png.unlink()
    assert not len(scenario.contaminate(scenario.index()).train)   # the bare draw
    with pytest.raises(data.DatasetError, match="no training images"):
        scenario.split()


def test_ensure_generates_the_synthetic_benchmark_on_first_use(tiny_synth,
                                                                monkeypatch):
    calls = []
    monkeypatch.setattr(experiment.synthetic, "ensure",
                        lambda root, **kw: calls.append((root, kw)))
    s = Scenario("synthetic", tiny_synth, "washer")
    assert s.ensure() is s
    assert calls == [(tiny_synth, {"spec": None, "categories": ["washer"],
                                   "progress": False})]
    Scenario("mvtec_ad", tiny_synth, "washer").ensure()
    assert len(calls) == 1                      # other datasets are read as they are


def test_a_relative_option_path_is_checked_from_the_notebooks_folder(tmp_path,
                                                                     monkeypatch):
    """A grid's OPTIONS path (RD-E's textures) is read where the kernel runs, the
    notebook's folder, also by the check before any kernel starts: `make rehearsal`
    passes ``../../runs/rehearsal/data/dtd/images`` from ``benchmarks/grids``."""
    cell, textures = tmp_path / "repo" / "grids", tmp_path / "repo" / "tex"
    cell.mkdir(parents=True)
    textures.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)            # the grid runs from another folder
    # never by moving the process's working folder, which its threads share
    monkeypatch.setattr("os.chdir", lambda *_: pytest.fail("os.chdir called"))
    point = {"METHOD": "rde", "DATASET": "synthetic", "PROFILE": "smoke",
             "OPTIONS": "{textures: ../tex}"}
    experiment.check_parameters(point, cell)
    assert Path.cwd() == elsewhere
    missing = "textures: no folder .*/repo/grids/../nothing"   # where it looked
    with pytest.raises(ValueError, match=missing):
        experiment.check_parameters(point | {"OPTIONS": "{textures: ../nothing}"},
                                    cell)
    assert Path.cwd() == elsewhere
    (tmp_path / "nothing").mkdir()          # there from here, not from the cell
    with pytest.raises(ValueError, match=missing):
        experiment.check_parameters(point | {"OPTIONS": "{textures: ../nothing}"},
                                    cell)
