"""The page "Your own method": its kNN method (``notebooks/knn_method.py``) has the
whole `Method` surface, its scores are the nearest-neighbour distances computed here
independently in numpy, it runs and re-loads through `experiment.run`; and
``FUADNB_METHODS`` registers a method defined outside fuadnb, or says why not."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fuadnb import experiment, models

KNN_FILE = Path(__file__).resolve().parents[2] / "notebooks" / "knn_method.py"


@pytest.fixture
def registry(monkeypatch) -> dict:
    """A private copy of the method registry (the test's registrations vanish)."""
    monkeypatch.setattr(models, "REGISTRY", dict(models.REGISTRY))
    return models.REGISTRY


@pytest.fixture
def knn(registry):
    (name,) = models.load_plugins(f"knn={KNN_FILE}")
    return registry[name]


def _numpy_knn(train: np.ndarray, test: np.ndarray, p: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (N,) and per-cell distances (N, g, g) of uint8 images: every
    p x p cell of a test image against every cell of every training image."""
    def cells(images):          # (N, 3, S, S) -> (N, g*g, 3*p*p), row-major cells
        n, c, s, _ = images.shape
        g = s // p
        x = images.astype(np.float64) / 255
        return x.reshape(n, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5).reshape(
            n, g * g, c * p * p)
    bank = cells(train).reshape(-1, 3 * p * p)
    q = cells(test)
    d = np.sqrt(((q[:, :, None, :] - bank[None, None]) ** 2).sum(-1)).min(-1)
    g = test.shape[-1] // p
    return d.max(1), d.reshape(len(test), g, g)


def test_the_method_has_the_whole_surface(knn):
    assert isinstance(knn, models.Method)
    assert models.get("knn") is knn
    cfg = knn.config("smoke", seed=7)
    assert (cfg.image_size, cfg.patch, cfg.seed) == (64, 8, 7)
    assert knn.budget(cfg, 10) == (0, 10)


def test_scores_and_maps_are_the_nearest_neighbour_distances(knn):
    gen = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=gen)
    test = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=gen)
    test[0] = train[2]                      # a training image scores 0
    cfg = knn.config("smoke", image_size=32)
    model = knn.fit(cfg, train, device=torch.device("cpu"))
    scores, maps = knn.predict(model, test)
    expected, cells = _numpy_knn(train.numpy(), test.numpy(), cfg.patch)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    assert scores[0] < 1e-3 < scores[1:].min()
    up = cells.repeat(cfg.patch, 1).repeat(cfg.patch, 2)     # each cell's pixels
    np.testing.assert_allclose(maps, up, rtol=1e-5, atol=1e-5)
    again = knn.build(cfg)                   # the run cache: an empty bank, loaded
    again.load_state_dict(model.state_dict())
    np.testing.assert_allclose(knn.predict(again, test)[0], scores)


def test_a_benchmark_cell_runs_it_and_reloads_it(knn, smoke_kw):
    first = experiment.run("knn", **smoke_kw).row
    second = experiment.run("knn", **smoke_kw).row       # the cached bank
    assert first["method"] == "knn" and first["teacher"] == "pixels"
    assert first["steps"] == 0 and first["n_injected"] == 2
    assert 0 <= first["image_auroc"] <= 1
    assert second["image_auroc"] == first["image_auroc"]
    assert second["pixel_aupro"] == first["pixel_aupro"]


def test_fuadnb_methods_names_what_is_wrong(registry, tmp_path):
    assert models.load_plugins("") == []
    with pytest.raises(ValueError, match="is not name=module"):
        models.load_plugins("knn")
    with pytest.raises(ValueError, match="cannot be imported .*no file"):
        models.load_plugins(f"knn={tmp_path / 'missing.py'}")
    with pytest.raises(ValueError, match="cannot be imported .*ModuleNotFound"):
        models.load_plugins("knn=no_such_module_here")
    half = tmp_path / "half.py"
    half.write_text("Config = None\n")
    with pytest.raises(TypeError, match=r"lacks \[.*'PROFILES'"):
        models.load_plugins(f"half={half}")
    assert "half" not in registry and "knn" not in registry
