"""Notebook helpers: the explorer is a slider linked in the browser to a stack of
pre-rendered pictures (so it works in the static book)."""

import io

import ipywidgets as widgets  # the book extra: missing fails, never skips
import numpy as np
import pytest
from PIL import Image

from fuadnb import nb


def test_explorer_renders_every_picture_and_links_the_slider(monkeypatch):
    links = []
    real = widgets.jslink
    monkeypatch.setattr(widgets, "jslink", lambda a, b: links.append((a, b)) or
                        real(a, b))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    maps = rng.random((3, 32, 32))
    box = nb.explorer(images, maps, ["a", "b", "c"], size=48)
    slider, stack = box.children
    assert (slider.min, slider.max, slider.value) == (0, 2, 0)
    assert len(stack.children) == 3 and stack.selected_index == 0
    caption, picture = stack.children[1].children
    assert caption.value == "<b>b</b>"
    assert Image.open(io.BytesIO(picture.value)).size == (96, 48)   # image | map
    assert links == [((slider, "value"), (stack, "selected_index"))]


def test_overlay_picture_is_the_image_then_its_heat_map():
    image = np.zeros((3, 8, 8), np.uint8)
    amap = np.zeros((8, 8))
    amap[:, 4:] = 1.0
    both = np.asarray(Image.open(io.BytesIO(nb._overlay_jpeg(image, amap, 1.0, 8))))
    left, right = both[:, :8].astype(int), both[:, 8:].astype(int)
    assert left.max() < 20                                    # the black image
    assert right[:, 6:, 0].mean() > right[:, :2, 0].mean() + 40   # hot = red side


def test_explorer_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="as many maps and captions"):
        nb.explorer(np.zeros((2, 3, 8, 8), np.uint8), np.zeros((1, 8, 8)), ["a", "b"])


def test_options_leave_out_the_parameters_left_at_the_profiles():
    assert nb.options(backbone="", weights="random", epochs=0, steps=40,
                      image_size=None, precision="auto", sigma=0.0) == {
        "weights": "random", "steps": 40, "precision": "auto"}
    assert nb.options(foreground=False, perturb=True, epochs=0) == {
        "foreground": False, "perturb": True}                 # a bool is a choice


def test_examples_are_the_first_good_images_then_one_anomaly_per_defect():
    import pandas as pd

    rows = pd.DataFrame({"label": [1, 0, 1, 1, 0, 1, 1, 0],
                         "defect": ["hole", "good", "hole", "crack", "good", "cut",
                                    "crack", "good"]})
    picked, titles = nb.examples(rows, good=2, anomalous=2)
    assert picked.tolist() == [1, 4, 0, 3] and titles == ["good", "good", "hole",
                                                          "crack"]
    by_pandas = rows[rows.label == 1].groupby("defect").head(1).index[:3]
    assert nb.examples(rows)[0].tolist() == list(by_pandas) == [0, 3, 5]
    picked, titles = nb.examples(rows, anomalous=3, per_defect=False)
    assert picked.tolist() == [0, 2, 3] and titles == ["hole", "hole", "crack"]


def test_env_runs_at_the_chapters_profile_device_and_cache(monkeypatch):
    from fuadnb import experiment

    calls = []
    monkeypatch.setattr(experiment, "run", lambda *a, **kw: calls.append((a, kw)))
    env = nb.setup(seed=1, device="cpu", profile="smoke", runs_root="elsewhere")
    scenario = experiment.Scenario("synthetic", "data", "brick", 0.1)
    env.run("rd", scenario, options={"steps": 3})
    assert calls == [(("rd", scenario), {
        "profile": "smoke", "device": "cpu", "runs_root": "elsewhere",
        "options": {"steps": 3}, "curve_every": 0, "progress": True})]
