"""GPU numerics on the CPU: the ``precision`` setting of every method.

``bf16`` runs the same functions on the CPU as on CUDA (bf16 autocast, bf16 cached
features, channels_last inputs and weights), so every method's smoke fit and predict
in bf16 here shows what a GPU run would: its metrics must stay within `TOLERANCE` of
fp32's, with no saturated or tied image scores (`numerics_problems`); the check
itself fails on a planted bf16 sigmoid. ``auto`` is fp32 on the CPU (numbers
unchanged) and the resolved precision is part of the run key.
"""

import functools
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from fuadnb import cli, engine, experiment, metrics, models
from fuadnb.models import funad

CPU = torch.device("cpu")

# How far bf16 may move a metric from fp32 on `planted_squares` (smoke fits). Both
# precisions train from the same seed but drift apart step by step; measured (AMD
# EPYC with avx512_bf16): |image AUROC difference| <= 0.004, |pixel AUROC
# difference| <= 0.009 over the six methods.
TOLERANCE = {"image_auroc": 0.1, "pixel_auroc": 0.05}
# Per method, smoke-profile overrides and contaminated training images under which
# fp32 finds the squares: CDD's smoke domain students give its global student no
# usable target yet (here it also distils the teacher); FUN-AD learns from its own
# pseudo-labels, so it needs anomalies in its training set, and a few more epochs.
SETTINGS: dict[str, tuple[dict, int]] = {"cdd": ({"teacher_weight": 1.0}, 0),
                                         "funad": ({"epochs": 10}, 3)}


def planted_squares(n_train: int = 16, n_test: int = 32, size: int = 64, seed: int = 0,
                    contaminated: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """One noisy texture: uint8 training images (N, 3, S, S), the first
    `contaminated` with a white 16 px square too; test images of which the first half
    carry such a square, their masks (M, S, S) and labels (M,)."""
    gen = torch.Generator().manual_seed(seed)
    texture = torch.rand(1, 3, size, size, generator=gen) * 255

    def images(n):
        noisy = texture + 20 * torch.randn(n, 3, size, size, generator=gen)
        return noisy.clamp(0, 255).to(torch.uint8)

    train, test = images(n_train), images(n_test)
    train[:contaminated, :, 10:26, 30:46] = 255
    masks = torch.zeros(n_test, size, size, dtype=torch.bool)
    for i in range(n_test // 2):
        r, c = torch.randint(0, size - 16, (2,), generator=gen).tolist()
        test[i, :, r:r + 16, c:c + 16] = 255
        masks[i, r:r + 16, c:c + 16] = True
    labels = (torch.arange(n_test) < n_test // 2).long().numpy()
    return train, test, masks.numpy(), labels


@dataclass
class Outcome:
    """A smoke fit's predictions on `planted_squares` and their metrics."""

    scores: np.ndarray         # test image scores (M,)
    maps: np.ndarray           # (M, S, S)
    train_scores: np.ndarray   # (N,)
    metrics: dict[str, float]


def fit_predict(name: str, precision: str, device: torch.device = CPU) -> Outcome:
    method = models.get(name)
    options, contaminated = SETTINGS.get(name, ({}, 0))
    train, test, masks, labels = planted_squares(contaminated=contaminated)
    cfg = method.config("smoke", precision=precision, **options)
    model = method.fit(cfg, train, device=device)
    scores, maps = method.predict(model, test)
    return Outcome(scores, maps, method.score_train(model, train),
                   {"image_auroc": metrics.image_auroc(labels, scores),
                    "pixel_auroc": metrics.pixel_auroc(masks, maps)})


@functools.cache
def outcome(name: str, precision: str) -> Outcome:
    """`fit_predict`, once per method and precision in this session."""
    return fit_predict(name, precision)


def numerics_problems(ref: Outcome, run: Outcome) -> list[str]:
    """What is wrong with `run` (bf16) against `ref` (fp32), in words (empty: none).

    * anything not finite;
    * tied test image scores (more than one pair) or a maximum shared by several
      images: a quantised or saturated score (a bf16 sigmoid has steps of 2^-8 in
      [0.5, 1) and is exactly 1.0 above a logit of ~6.2);
    * a metric further than `TOLERANCE` from fp32's.

    Training scores are only checked to be finite: PatchCore scores two training
    images that are each other's nearest patches by one and the same distance.
    """
    found = [f"{what} not finite" for what, a in (
        ("image scores", run.scores), ("maps", run.maps),
        ("training scores", run.train_scores)) if not np.isfinite(a).all()]
    ties = len(run.scores) - len(np.unique(run.scores))
    if ties > 1:
        found.append(f"{ties} tied image scores")
    if (run.scores == run.scores.max()).sum() > 1:
        found.append(f"saturated: {(run.scores == run.scores.max()).sum()} images "
                     f"share the top score {run.scores.max()}")
    for key, tol in TOLERANCE.items():
        if abs(run.metrics[key] - ref.metrics[key]) > tol:
            found.append(f"{key} {run.metrics[key]:.4f} vs fp32 "
                         f"{ref.metrics[key]:.4f} (tolerance {tol})")
    return found


@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_bf16_on_the_cpu_stays_close_to_fp32(name):
    ref, run = outcome(name, "fp32"), outcome(name, "bf16")
    assert ref.metrics["image_auroc"] >= 0.9          # a task the smoke fit learns
    assert not np.array_equal(ref.scores, run.scores), "bf16 did not take effect"
    assert numerics_problems(ref, run) == []
    assert run.maps.dtype == np.float32 and run.scores.dtype == np.float64


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_bf16_on_cuda_stays_close_to_fp32_on_the_cpu(name):
    """The CUDA path itself (device-side noise and masks, pinned transfers, bf16
    autocast on the GPU), held to the same check as the CPU's bf16 (``make speed
    DEVICE=cuda`` runs it first)."""
    run = fit_predict(name, "bf16", device=torch.device("cuda"))
    assert numerics_problems(outcome(name, "fp32"), run) == []


def test_the_check_fails_on_a_planted_bf16_sigmoid(monkeypatch):
    """FUN-AD's scores are a sigmoid kept in float32 (`funad.probability`); computed in
    bf16 instead, the check must fail."""
    ref = outcome("funad", "fp32")
    assert numerics_problems(ref, outcome("funad", "bf16")) == []
    monkeypatch.setattr(funad, "probability",
                        lambda logits: torch.sigmoid(logits.bfloat16()).float())
    problems = numerics_problems(ref, fit_predict("funad", "bf16"))
    assert any("tied" in p or "saturated" in p for p in problems), problems


def test_bf16_takes_the_gpu_path_on_the_cpu():
    assert engine.resolve("auto", CPU) == "fp32"
    assert engine.resolve("auto", torch.device("cuda")) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        engine.resolve("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        models.get("rd").config("smoke", precision="fp16")
    conv = engine.prepare(nn.Conv2d(3, 4, 3), CPU, "bf16")
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    images = planted_squares(n_train=4)[0]
    x = engine.inputs(images, torch.arange(2), CPU, "bf16")
    assert x.dtype == torch.float32 and x.is_contiguous(
        memory_format=torch.channels_last)
    with engine.autocast(CPU, "bf16"):
        assert conv(x).dtype == torch.bfloat16
    with engine.autocast(CPU, "fp32"):
        assert conv(x).dtype == torch.float32
    feats = engine.frozen_features(lambda x: [conv(x)], images, batch_size=3,
                                   device=CPU, precision="bf16")
    assert feats[0].dtype == torch.bfloat16 and feats[0].shape == (4, 4, 62, 62)
    assert engine.frozen_features(lambda x: [conv(x)], images, batch_size=3,
                                  device=CPU, precision="auto")[0].dtype == \
        torch.float32


def test_precision_is_in_the_run_key_and_on_the_command_line(smoke_kw, capsys):
    runs = smoke_kw["runs_root"]
    auto = experiment.run("patchcore", **smoke_kw)
    assert auto.row["cfg.precision"] == "fp32"          # auto, resolved on the CPU
    assert experiment.run("patchcore", **smoke_kw, options={"precision": "fp32"}
                          ).dir == auto.dir              # the same run, loaded
    code = cli.main(["run", "--method", "patchcore", "--root",
                     str(smoke_kw["scenario"].root), "--category", "brick",
                     "--noise", "0.2", "--profile", "smoke",
                     "--runs", str(runs), "--device", "cpu", "--quiet",
                     "--precision", "bf16"])
    assert code in (0, None), capsys.readouterr().err
    rows = [json.loads(p.read_text()) for p in runs.rglob("metrics.json")]
    assert sorted(r["cfg.precision"] for r in rows) == ["bf16", "fp32"]
    assert len({r["run_key"] for r in rows}) == 2
