"""RD-E: Reverse Distillation with an Expert, and Guided Information Injection (GII).

Paper: Liu, Wang, Leng, Zhang, "Unlocking the Potential of Reverse Distillation for
Anomaly Detection", AAAI 2025 (arXiv 2412.07579). Reference code: hito2448/URD
(methods.md §3): models/teacher.py L12-L93 (expert, teacher and its loss),
models/student.py L13-L247 (student, GII, its loss, the map), train.py L51-L149
(training order and schedule), dataset/dataset_noise.py (synthetic anomalies).
Explained in: book/chapters/04_expert_distillation

Three networks, all from the same backbone and weights:

* the **expert** E: frozen, always ``eval()``;
* the **teacher** T: a trainable copy, fine-tuned (Adam 1e-4) to stay close to E on
  normal images and to move away from E's *normal* features exactly where a synthetic
  anomaly was pasted, so that it separates normal from abnormal;
* the **student** S: RD's OCBE and decoder plus two GII modules (Adam 5e-3), trained
  to reproduce T's and E's features of the *normal* image from both the normal and the
  synthetic-anomaly image (denoising).

The map compares S with the fine-tuned T (not E), as RD does, with the same fusion
and smoothing. Per iteration (train.py L73-L149): E on x and x~ (no grad); T in train
mode, one step on the teacher loss; T in eval mode recomputes its features (no grad);
one student step.

The released code and the paper's text (methods.md §3.2-§3.3, pitfalls 4-5):

* ``gii``: the code runs ``"ungated"`` (train.py passes ``attn=True``, which routes to
  the plain skip fusion); the text describes ``"gated"``, GII's similarity gate.
* ``global_term``: the code's teacher loss has an extra global term (True); the text
  has none (False; URD#2: added "for training stability").

Both share everything else: the current teacher loss (normal-image pixel term, the
synthetic-anomaly L1 term; teacher.py L59-L93) and the student loss (student.py
L196-L219). The ``paper`` profile is the released code, the one that produced the
published numbers as far as anyone can tell; ``rde.config("paper", **rde.TEXT)`` is
the text. The CPU profiles (``demo``, ``smoke``) run the gated GII the chapter
explains, and compare it there with the ungated fusion.

Per dataset and category (`category_options`, applied by `fuadnb.experiment.run`
below the caller's options):

* ``foreground``: synthetic anomalies stay on the object for object categories, as
  train.py L102-L113 (nine MVTec AD objects: every object but transistor) and
  train_visa.py (every VisA class); the kind comes from the dataset module
  (`fuadnb.data.kind`). The rule is the released code's (perlin.py L161-L175,
  dataset_noise.py L53-L64): inverse Otsu for MVTec AD capsule and screw, GrabCut
  for every other object (`fuadnb.data.anomalies`); ``"otsu_border"`` (ours, the
  rule before) and ``"none"`` are options;
* ``iterations`` (``paper`` profile): 5000, but 10000 for MVTec AD cable and
  transistor (train.py L223-L250) and for every VisA class (train_visa.py L222-L235).

Deliberate deviations:
* The model is the last iteration's; the reference keeps the epoch with the best
  pixel AUROC + AUPRO on the test set, which this book never does.
* Textures: ``textures="auto"`` (the ``paper`` profile) draws them from DTD's
  images where they lie beside the dataset, ``<dataset root>/../dtd/images`` (the
  reference's ./data/dtd/images beside ./data/mvtec_anomaly_detection; `locate`),
  and otherwise from the bundled offline set (`fuadnb.data.anomalies.texture_bank`);
  the results row's ``textures`` column says which (``dtd``, ``bundled`` or
  ``folder``). The CPU profiles use the bundled set.
* The foreground is computed on the training image as loaded, and OpenCV's
  generator is seeded before each GrabCut (`fuadnb.data.anomalies`).
* The offline profiles use the EfficientNet-Lite2 teacher with the signed readout of
  `fuadnb.nn.blocks.ResNetDecoder` (as RD); GII's gate then compares the student's
  prediction (after the readout) with the teacher.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fuadnb import engine
from fuadnb.config import check_choice, check_sizes, derive_sigma
from fuadnb.data import anomalies
from fuadnb.models import base, rd
from fuadnb.nn import backbones, blocks, maps

GiiMode = Literal["gated", "ungated"]
Foreground = anomalies.Foreground
# textures: "auto" = DTD beside the dataset if there, else the bundled set (`locate`)
TEXTURE_CHOICES = ("auto", "bundled")
DTD = Path("dtd") / "images"   # beside the dataset root (train.py: ./data/dtd/images)


@dataclass(frozen=True)
class Config(base.Config):
    """RD-E's hyper-parameters; defaults are the reference code's (``paper``)."""

    backbone: str = "wide_resnet50_2"          # teacher.py L12-L20
    weights: str = "imagenet"
    image_size: int = 256                      # dataset_noise.py: resize to 256
    iterations: int = 5000                     # train.py (cable, transistor: 10000)
    whole_epochs: bool = True                  # train.py: whole epochs (see steps)
    batch_size: int = 16                       # train.py
    lr_student: float = 0.005                  # train.py, Adam
    lr_teacher: float = 1e-4                   # train.py, Adam
    betas: tuple[float, float] = (0.5, 0.999)  # train.py, both optimisers
    gii: GiiMode = "ungated"                   # train.py attn=True (the text: gated)
    global_term: bool = True                   # teacher.py (not in the paper, URD#2)
    foreground: Foreground = "none"            # per category: category_options
    textures: str = "auto"                     # train.py: ./data/dtd/images; or
                                               # "bundled", or a folder of images
    fusion: maps.Fusion = "add"                # student.py L221-L247
    sigma: float | None = None                 # train.py: 4 px at 256, scaled
    seed: int = 111                            # train.py
    eval_batch_size: int = 32                  # ours

    def __post_init__(self):
        super().__post_init__()
        derive_sigma(self)
        check_sizes(self, ("iterations", "batch_size", "eval_batch_size"))
        check_choice(self, "gii", ("gated", "ungated"))
        check_choice(self, "foreground", anomalies.FOREGROUNDS)
        if self.textures not in TEXTURE_CHOICES and not Path(self.textures).is_dir():
            raise ValueError(f"textures: no folder {self.textures}; pass a folder of "
                             "texture images (DTD's dtd/images), 'bundled' or 'auto'")


# The paper's text, as overrides of the released code's Config (see the docstring).
TEXT: dict[str, object] = {"gii": "gated", "global_term": False}

# Categories whose synthetic anomalies are kept on the object, by name across the
# MVTec AD and synthetic datasets (chapter 04 reads it); `category_options` is the
# per-dataset rule that `fuadnb.experiment.run` applies.
OBJECT_CATEGORIES = frozenset({"bottle", "cable", "capsule", "hazelnut", "metal_nut",
                               "pill", "screw", "toothbrush", "zipper", "washer",
                               "coin"})

# MVTec AD: no foreground mask for transistor (train.py L102-L113 lists nine objects)
NO_FOREGROUND = frozenset({("mvtec_ad", "transistor")})
# inverse Otsu instead of GrabCut (dataset_noise.py L53-L64, by class name: the two
# MVTec AD classes called so)
OTSU_INVERSE = frozenset({("mvtec_ad", "capsule"), ("mvtec_ad", "screw")})
# the longer schedules: MVTec AD cable, transistor (train.py), all of VisA
LONG = 10000

# Evaluation-only settings: not in the run key (re-scoring never retrains).
EVALUATION = ("fusion", "sigma", "eval_batch_size")

PROFILES: dict[str, dict] = {
    "paper": {},
    # 64 px and 245 iterations (35 epochs of 100 images): on clean grass the
    # student's loss made 90 % of its fall by iteration ~238 (chapter 08's budget
    # table, benchmarks/budget_histories.py); ~0.3-0.5 s per iteration on 2 CPU
    # cores at 64 px (fine-tuning the teacher; ~6 s at 256 px); the gated GII
    "demo": {"backbone": "efficientnet_lite2", "weights": "imagenet",
             "image_size": 64, "iterations": 245,
             "gii": "gated", "textures": "bundled"},
    "smoke": {"backbone": "efficientnet_lite2", "weights": "imagenet",
              "image_size": 64, "iterations": 4, "batch_size": 8, "gii": "gated",
              "textures": "bundled"},
}


config = base.configurator(Config, PROFILES, "RD-E")
MONITOR = False


def paper_iterations(dataset: str, category: str) -> int:
    """The reference's iterations for a category: 10000 for MVTec AD cable and
    transistor and for every VisA class, else 5000."""
    if dataset == "visa" or (dataset == "mvtec_ad"
                             and category in ("cable", "transistor")):
        return LONG
    return Config.iterations


def foreground_rule(dataset: str, category: str, kind: str) -> str:
    """The released code's foreground for a category (`kind`: ``"object"`` or
    ``"texture"``): ``"none"`` for textures and MVTec AD transistor,
    ``"otsu_inverse"`` for MVTec AD capsule and screw, else ``"grabcut"``."""
    if kind != "object" or (dataset, category) in NO_FOREGROUND:
        return "none"
    return "otsu_inverse" if (dataset, category) in OTSU_INVERSE else "grabcut"


def category_options(profile: str, dataset: str, category: str, kind: str
                     ) -> dict[str, object]:
    """Config values that depend on the dataset and category (`kind`: ``"object"`` or
    ``"texture"``, from `fuadnb.data.kind`): the `foreground_rule`, and the ``paper``
    profile's `paper_iterations`."""
    options: dict[str, object] = {"foreground": foreground_rule(dataset, category,
                                                                kind)}
    if profile == "paper":
        options["iterations"] = paper_iterations(dataset, category)
    return options


class Student(blocks.Student):
    """S: RD's student (``bottleneck``, ``decoder``) with GII between the decoder's
    stages (`gated`: GII's similarity gate; else the plain skip fusion)."""

    def __init__(self, channels: tuple[int, int, int], family: blocks.Family,
                 signed: bool, gated: bool):
        super().__init__(channels, family, signed)
        self.gii = blocks.GII(channels)
        self.gated = gated

    def readout(self, k: int, f: torch.Tensor) -> torch.Tensor:
        """The student's prediction of teacher scale k (0, 1, 2) from decoder f."""
        head = self.decoder.readout
        return f if head is None else head[k](f)

    def stages(self, feats_t: list[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder's outputs ``[c, b, a]`` (aligned with [t1, t2, t3]) with GII
        between its stages, before any readout."""
        t1, t2, t3 = feats_t
        a = self.decoder.layer1(self.bottleneck(feats_t))                  # ~ t3
        b = self.decoder.layer2(self.gii(1, a, self.readout(2, a), t2, t3,
                                         self.gated))
        c = self.decoder.layer3(self.gii(0, b, self.readout(1, b), t1, t2,
                                         self.gated))
        return [c, b, a]

    def forward(self, feats_t: list[torch.Tensor]) -> list[torch.Tensor]:
        """Teacher features [t1, t2, t3] -> predictions [s1, s2, s3]."""
        return [self.readout(k, f) for k, f in enumerate(self.stages(feats_t))]


class RDE(base.Model):
    """Expert E (frozen), teacher T (fine-tuned), student S = OCBE + decoder + GII."""

    FROZEN = "expert"

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.expert = backbones.build(cfg.backbone, cfg.weights, seed=cfg.seed)
        self.teacher = backbones.build(cfg.backbone, cfg.weights, seed=cfg.seed,
                                       frozen=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.student = Student(self.teacher.channels, self.teacher.family,
                                   self.teacher.signed, gated=cfg.gii == "gated")
            blocks.init_xavier(self.student)   # student.py L62: every Conv2d of S
        self.teacher_history: list[float] = []   # (history: the student's loss)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """x (B, 3, H, W) -> teacher and student features, 3 x (B, C_i, H_i, W_i)."""
        feats_t = self.teacher(x)
        return feats_t, self.student(feats_t)

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """RD's map (`fuadnb.models.rd.anomaly_map`), against the fine-tuned T."""
        return rd.anomaly_map(self, x)


def build(cfg: Config) -> RDE:
    """An untrained RD-E; weights and random inits are seeded by ``cfg.seed``."""
    return RDE(cfg)


def _flatcos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean over the batch of 1 - cos(vec a, vec b), vectors of C*H*W (teacher.py
    L22-L31, student.py L138-L153): RD's flat loss (`fuadnb.models.rd.loss`) at one
    scale."""
    return rd.loss([a], [b], "flat")


def teacher_loss(t_n: list[torch.Tensor], t_a: list[torch.Tensor],
                 e_n: list[torch.Tensor], e_a: list[torch.Tensor], mask: torch.Tensor,
                 global_term: bool = True) -> torch.Tensor:
    """L_T (teacher.py L59-L93), summed over the three scales k:

    ``mean(1 - cos_c(t_n, e_n))`` (stay with the expert on normal images)
    ``+ L1(1 - cos_c(t_a, e_n), M_k)`` (on the synthetic-anomaly image: the expert's
    normal feature where the image is normal, orthogonal to it where it is not)
    ``+ flatcos(t_a, e_a)`` when `global_term` (the code's extra term).

    `mask` (B, 1, S, S) is resized to each scale in turn (64 -> 32 -> 16, bilinear,
    align_corners=True) and binarised at 0.5 every time, as the reference does.
    """
    total = torch.zeros((), device=t_n[0].device)
    m = mask.float()
    for k in range(len(t_n)):
        m = F.interpolate(m, size=t_a[k].shape[-2:], mode="bilinear",
                          align_corners=True)
        m = (m >= 0.5).float()
        total = total + (1 - blocks.channel_cosine(t_n[k].float(),
                                                   e_n[k].float())).mean()
        dist = 1 - blocks.channel_cosine(t_a[k].float(), e_n[k].float())
        total = total + F.l1_loss(dist, m)
        if global_term:
            total = total + _flatcos(t_a[k], e_a[k])
    return total


def student_loss(s_n: list[torch.Tensor], s_a: list[torch.Tensor],
                 t_n: list[torch.Tensor], e_n: list[torch.Tensor]) -> torch.Tensor:
    """L_S (student.py L196-L219): from the normal and from the synthetic-anomaly
    image, reconstruct the teacher's and the expert's features of the normal image
    (flattened cosine per scale, summed)."""
    return sum(_flatcos(sn, tn) + _flatcos(sa, tn) + _flatcos(sn, en)
               + _flatcos(sa, en)
               for sn, sa, tn, en in zip(s_n, s_a, t_n, e_n, strict=True))


@torch.no_grad()
def gates(model: RDE, x: torch.Tensor) -> list[torch.Tensor]:
    """GII's gates for x (B, 3, H, W): the channel cosine between the student's first
    two decoder stages and the teacher, ``[g3 (B, 1, H/16, W/16), g2 (.., H/8)]``
    (high = the student already matches the teacher: inject teacher detail)."""
    _, t2, t3 = feats_t = model.teacher(x)
    _, b, a = model.student.stages(feats_t)
    return [blocks.channel_cosine(model.student.readout(2, a), t3),
            blocks.channel_cosine(model.student.readout(1, b), t2)]


# The map, scores and training-image scores are RD's: student against the (here
# fine-tuned) teacher, summed upsampled 1 - cos, Gaussian-smoothed, max as the score.
anomaly_map = rd.anomaly_map
predict = base.predict
predict_train = base.predict_train
score_train = base.score_train


def inputs(cfg: Config) -> dict[str, Path | list[Path]]:
    """`base.inputs` and, for a texture folder, its images (their contents key the
    run); the bundled bank is made from the seed, so it adds nothing."""
    found = base.inputs(cfg)
    if cfg.textures not in TEXTURE_CHOICES:
        found["textures"] = anomalies.texture_files(cfg.textures)
    return found


def dtd_folder(data_root: Path | str) -> Path | None:
    """DTD's images beside the dataset root (``<data_root>/../dtd/images``, as the
    reference's ./data/dtd/images beside ./data/<dataset>), if that folder holds
    texture images; else None."""
    folder = Path(data_root).parent / DTD
    if not folder.is_dir():
        return None
    try:
        anomalies.texture_files(folder)
    except FileNotFoundError:
        return None
    return folder


def texture_kind(textures: str) -> str:
    """What a resolved ``textures`` setting draws from, for the results row:
    ``bundled``, ``dtd`` (a folder ``.../dtd/images`` or ``.../dtd``) or ``folder``."""
    if textures in TEXTURE_CHOICES:
        return textures
    parts = Path(textures).parts
    return "dtd" if parts[-2:] == DTD.parts or parts[-1:] == ("dtd",) else "folder"


def locate(cfg: Config, data_root: Path | str) -> tuple[Config, dict[str, str]]:
    """``textures="auto"`` resolved where the data lies: DTD's images beside the
    dataset (`dtd_folder`) when present, else ``"bundled"``; and the results row's
    ``textures`` column (`texture_kind`)."""
    if cfg.textures == "auto":
        found = dtd_folder(data_root)
        cfg = replace(cfg, textures=str(found) if found else "bundled")
    return cfg, {"textures": texture_kind(cfg.textures)}


def texture_source(cfg: Config) -> torch.Tensor:
    """The anomaly sources of ``cfg.textures`` at the model's image size (uint8);
    ``"auto"`` must be resolved first (`locate`)."""
    if cfg.textures == "auto":
        raise ValueError("textures='auto' is resolved where the data lies: call "
                         "rde.locate(cfg, data_root) first, or pass 'bundled' or a "
                         "folder of texture images")
    if cfg.textures == "bundled":
        return anomalies.texture_bank(cfg.image_size, seed=cfg.seed)
    return anomalies.textures_from_folder(cfg.textures, cfg.image_size)


def steps(cfg: Config, n_train: int) -> int:
    """Optimiser steps of a fit on `n_train` images: ``iterations``, rounded up to
    whole epochs of ``ceil(n_train / batch_size)`` batches when ``whole_epochs`` (the
    code: ``epochs = ceil(iterations / len(loader))``, drop_last False, and it stops
    only after a whole epoch)."""
    if not cfg.whole_epochs:
        return cfg.iterations
    per_epoch = math.ceil(n_train / cfg.batch_size)
    return math.ceil(cfg.iterations / per_epoch) * per_epoch


def budget(cfg: Config, n_train: int) -> base.Budget:
    """`steps`, and the images they process (each epoch's short last batch counted
    short, as `training_batches` draws it; the synthetic-anomaly copies not
    counted)."""
    total = steps(cfg, n_train)
    return base.Budget(total, engine.images_seen(n_train, cfg.batch_size, epochs=0,
                                                 steps=total))


def training_batches(cfg: Config, train_images: torch.Tensor, textures: torch.Tensor,
                     total: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The `total` training batches of a fit, in order: (images, their synthetic-
    anomaly copies, the masks), uint8 (B, 3, S, S) twice and bool (B, 1, S, S), on
    the CPU. The objects' foreground masks (``cfg.foreground``) are computed once,
    before the first batch, as the reference computes them when it builds its
    dataset. Batches are drawn epoch by epoch in an order seeded by ``cfg.seed``;
    each batch's anomalies come from one generator seeded by ``cfg.seed + 1``, used
    by nothing else, so the batches are the same wherever they are produced."""
    n = len(train_images)
    order_gen = torch.Generator().manual_seed(cfg.seed)
    synth_gen = torch.Generator().manual_seed(cfg.seed + 1)
    objects = anomalies.foreground(train_images, cfg.foreground)   # (N, S, S) | None
    step = 0
    while step < total:
        for idx in engine.batches(n, cfg.batch_size, generator=order_gen):
            cpu_images = train_images[idx.to(train_images.device)].cpu()
            aug, mask = anomalies.synthesize(
                cpu_images, textures, synth_gen,
                foreground=None if objects is None else objects[idx.cpu()])
            yield cpu_images, aug, mask
            step += 1
            if step == total:
                return


def fit(cfg: Config, train_images: torch.Tensor, *, device: torch.device,
        progress: bool = False, prefetch: bool | None = None) -> RDE:
    """Train RD-E on uint8 images (N, 3, S, S) for `steps` iterations (``iterations``
    rounded up to whole epochs, as train.py); returns the last iteration's model, in
    eval mode.

    The batches and their synthetic anomalies are `training_batches`; with
    `prefetch` a background thread makes the next two while the networks train on
    this one (`fuadnb.engine.prefetch`: the same batches, so the same model, only
    sooner). By default only on a GPU, where the synthesis (on the CPU) then
    overlaps the step: on a CPU both compete for the same cores, and two threads
    running torch's parallel kernels at once slowed a 2-core fit by 69 % where the
    synthesis takes 3.6 % of a step (benchmarks/speed/rde_synthesis.py).
    """
    if prefetch is None:
        prefetch = device.type == "cuda"
    n = len(train_images)
    model = engine.prepare(build(cfg), device, cfg.precision)
    textures = texture_source(cfg)
    opt_t = torch.optim.Adam(model.teacher.parameters(), lr=cfg.lr_teacher,
                             betas=cfg.betas)
    opt_s = torch.optim.Adam(model.student.parameters(), lr=cfg.lr_student,
                             betas=cfg.betas)
    per_epoch = math.ceil(n / cfg.batch_size)
    total = steps(cfg, n)
    batches = training_batches(cfg, train_images, textures, total)
    model.train()
    bar = tqdm(total=total, desc=f"RD-E {cfg.backbone}", disable=not progress)
    step, losses_s, losses_t = 0, [], []
    for cpu_images, aug, mask in engine.prefetch(batches) if prefetch else batches:
        every = torch.arange(len(cpu_images))
        x = engine.inputs(cpu_images, every, device, cfg.precision)
        x_a = engine.inputs(aug, every, device, cfg.precision)
        lt, ls = _step(model, opt_t, opt_s, x, x_a, mask.to(device), cfg)
        losses_t.append(lt)
        losses_s.append(ls)
        step += 1
        bar.update()
        if step % per_epoch == 0 or step == total:
            model.history.append(float(np.mean(losses_s)))
            model.teacher_history.append(float(np.mean(losses_t)))
            losses_s, losses_t = [], []
            bar.set_postfix(student=f"{model.history[-1]:.4f}",
                            teacher=f"{model.teacher_history[-1]:.4f}")
    bar.close()
    return model.eval()


def _step(model: RDE, opt_t, opt_s, x: torch.Tensor, x_a: torch.Tensor,
          mask: torch.Tensor, cfg: Config) -> tuple[float, float]:
    """One iteration in the reference's order; returns (teacher, student) loss."""
    amp = cfg.precision
    with torch.no_grad(), engine.autocast(x.device, amp):
        e_n, e_a = model.expert(x), model.expert(x_a)
    model.teacher.train()
    with engine.autocast(x.device, amp):
        loss_t = teacher_loss(model.teacher(x), model.teacher(x_a), e_n, e_a, mask,
                              cfg.global_term)
    opt_t.zero_grad(set_to_none=True)
    loss_t.backward()
    opt_t.step()
    model.teacher.eval()
    with torch.no_grad(), engine.autocast(x.device, amp):
        t_n, t_a = model.teacher(x), model.teacher(x_a)
    with engine.autocast(x.device, amp):
        loss_s = student_loss(model.student(t_n), model.student(t_a), t_n, e_n)
    opt_s.zero_grad(set_to_none=True)
    loss_s.backward()
    opt_s.step()
    return loss_t.item(), loss_s.item()
