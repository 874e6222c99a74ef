"""The ``paper`` profile of every method against its released code, in the terms of
shared/reference/methods.md (§0.1 quick reference, §2.3 RD, §3.4-§3.5 RD-E, §4 CDD,
§5.1-§5.3 FUN-AD, §7 SoftPatch/PatchCore, §9.13 preprocessing): the input size and
crop, the precision, the schedule and RD-E's foreground rule of every category. The
expected values are written out here from those sections, not read from the
package, so a changed default fails a test."""

import math

import pytest
import torch

from fuadnb import data, engine, experiment, models
from fuadnb.data import images

CUDA = torch.device("cuda")   # only resolved, never used: no GPU needed

# method -> (Config values, the methods.md section they come from)
PAPER: dict[str, tuple[dict, str]] = {
    # Resize((256, 256)), no crop; 200 epochs of batch 16
    "rd": ({"image_size": 256, "load_size": 0, "epochs": 200, "steps": None,
            "batch_size": 16, "backbone": "wide_resnet50_2"}, "§2.3"),
    # PIL resize 256, no crop; 5000 iterations of batch 16, whole epochs
    "rde": ({"image_size": 256, "load_size": 0, "iterations": 5000,
             "whole_epochs": True, "batch_size": 16, "textures": "auto",
             "backbone": "wide_resnet50_2"}, "§3.4-§3.5"),
    # no code: RD's settings
    "cdd": ({"image_size": 256, "load_size": 0, "epochs": 200, "batch_size": 16,
             "backbone": "wide_resnet50_2"}, "§4, §0.1"),
    # Resize(256) -> CenterCrop(224); 1500 epochs of batch 32
    "funad": ({"image_size": 224, "load_size": 256, "epochs": 1500,
               "batch_size": 32, "backbone": "dino_vitb8"}, "§5.1, §5.3"),
    # Resize(256) -> CenterCrop(224); one pass, feature-extraction batch 8
    "patchcore": ({"image_size": 224, "load_size": 256, "batch_size": 8,
                   "backbone": "wide_resnet50_2"}, "§7"),
    "softpatch": ({"image_size": 224, "load_size": 256, "batch_size": 8,
                   "backbone": "wide_resnet50_2", "threshold": 0.15, "lof_k": 5},
                  "§7"),
}

# What a 900 x 900 image becomes: (resized width, height), crop box or None
GEOMETRY = {0: ((256, 256), None), 256: ((256, 256), (16, 16, 240, 240))}


def test_every_method_has_its_reference_values():
    assert set(PAPER) == set(models.REGISTRY)


@pytest.mark.parametrize("method", sorted(PAPER))
def test_input_size_and_crop(method):
    cfg = models.get(method).config("paper")
    expected, _ = PAPER[method]
    assert (cfg.image_size, cfg.load_size) == (expected["image_size"],
                                               expected["load_size"])
    got = images.geometry(900, 900, cfg.image_size, cfg.load_size)
    assert got == GEOMETRY[expected["load_size"]]
    if cfg.load_size:                          # a shorter side of 256, then 224
        assert images.geometry(1000, 800, 224, 256) == ((320, 256),
                                                        (48, 16, 272, 240))


@pytest.mark.parametrize("method", sorted(PAPER))
def test_precision_fp32_unless_bf16_is_named(method):
    """Every reference computes in float32: the paper profile resolves to fp32 on a
    GPU too; bf16 only when named; ``auto`` is bf16 on CUDA in the fast profiles."""
    module = models.get(method)
    paper = module.config("paper")
    assert paper.precision == "fp32"
    assert engine.resolve(paper.precision, CUDA) == "fp32"
    assert module.config("paper", precision="auto").precision == "fp32"
    assert engine.resolve(module.config("paper", precision="bf16").precision,
                          CUDA) == "bf16"
    for fast in ("smoke", "demo"):
        assert engine.resolve(module.config(fast).precision, CUDA) == "bf16"
        assert engine.resolve(module.config(fast).precision,
                              torch.device("cpu")) == "fp32"
        assert module.config(fast, precision="fp32").precision == "fp32"


@pytest.mark.parametrize("method", sorted(PAPER))
def test_schedule_and_settings(method):
    module = models.get(method)
    cfg = module.config("paper")
    expected, where = PAPER[method]
    for name, value in expected.items():
        assert getattr(cfg, name) == value, (method, name, where)
    n = 209                                                   # MVTec AD bottle
    steps = module.budget(cfg, n).steps
    if method in ("rd", "cdd"):
        assert steps == 200 * math.ceil(n / 16)
    elif method == "rde":                          # epochs = ceil(5000 / len(loader))
        assert steps == math.ceil(5000 / math.ceil(n / 16)) * math.ceil(n / 16)
    elif method == "funad":                        # drop_last
        assert steps == 1500 * (n // 32)
    else:                                          # a memory bank: no optimiser
        assert steps == 0


# RD-E per MVTec AD category (URD train.py L102-L113, L223-L250; dataset_noise.py
# L53-L64; perlin.py L161-L175): (foreground rule, iterations)
RDE_MVTEC = {
    "bottle": ("grabcut", 5000), "cable": ("grabcut", 10000),
    "capsule": ("otsu_inverse", 5000), "carpet": ("none", 5000),
    "grid": ("none", 5000), "hazelnut": ("grabcut", 5000),
    "leather": ("none", 5000), "metal_nut": ("grabcut", 5000),
    "pill": ("grabcut", 5000), "screw": ("otsu_inverse", 5000),
    "tile": ("none", 5000), "toothbrush": ("grabcut", 5000),
    "transistor": ("none", 10000), "wood": ("none", 5000),
    "zipper": ("grabcut", 5000),
}


@pytest.mark.parametrize("dataset", ["mvtec_ad", "visa"])
def test_rde_foreground_and_iterations_per_category(dataset):
    """What `experiment.run` gives RD-E per category at the paper profile; VisA:
    GrabCut and 10000 iterations for every class (train_visa.py L222-L235)."""
    categories = data.READERS[dataset].CATEGORIES
    expected = RDE_MVTEC if dataset == "mvtec_ad" else {
        c: ("grabcut", 10000) for c in categories}
    assert set(expected) == set(categories)
    for category, (rule, iterations) in expected.items():
        _, cfg, _ = experiment.configure("rde", dataset=dataset, category=category,
                                         profile="paper")
        assert (cfg.foreground, cfg.iterations) == (rule, iterations), category
        assert cfg.precision == "fp32" and cfg.textures == "auto"


def test_an_image_size_override_keeps_the_crop_proportion():
    """An ``image_size`` given without ``load_size`` where the profile crops (256 ->
    224) resizes in the same proportion (a 64 px rehearsal: 73 -> 64), not to 256
    (which would keep only the centre quarter); a ``load_size`` given wins; profiles
    that do not crop stay uncropped."""
    patchcore, funad = models.get("patchcore"), models.get("funad")
    assert patchcore.config("paper", image_size=64).load_size == int(64 * 256 / 224)
    assert funad.config("paper", image_size=448).load_size == 512
    assert patchcore.config("paper", image_size=64, load_size=96).load_size == 96
    assert patchcore.config("paper", image_size=64, load_size=0).load_size == 0
    assert patchcore.config("demo", image_size=96).load_size == 0
    assert models.get("rd").config("paper", image_size=128).load_size == 0
