"""Deterministic synthetic anomaly benchmark in the MVTec AD folder layout.

Version 2 (the default, `CATEGORIES`, ``Spec()``, 256 px): eight categories (five
textures, three objects) built offline from the images bundled with scikit-image
(``brick``, ``grass``, ``gravel``, ``coins``, plus ``moon`` and
``immunohistochemistry`` as foreign-texture sources) and from procedural renderers.
Every anomalous image has an exact pixel mask.

Version 3 (``Spec.v3()``, ``python -m fuadnb generate --v3``: 64 px, any multiple of
32 such as 96 px; `CATEGORIES_V3`): 30 categories in 10 families (`FAMILIES`,
`family`, `kind`), six of textures (fabric, wood, stone, masonry, foliage, metal) and
four of objects (discs, pills, screws, bottles), three categories each. A family's
categories share one scene generator at other parameters (colours, scales, layouts)
and differ in their defect mix; fabric, wood and metal have a defect type of their
own (``thread``, ``knot``, ``dent``). v2's eight categories are members, file for
file the same at the same size and seed. Each category has v2's split shape: 100
train, 60 good + 4 x 16 anomalous test images (half of them copies of 2 recurring
prototypes per defect type), a pool of 4 x 10 fresh anomalies and 4 x 10 recurring
copies. The manifest records the version and each category's family.

Difficulty rule of version 3, written down before any contaminated run and before its
pilot ran (``benchmarks/grids/pilot_v3.yaml``, table and notes in
``benchmarks/results/pilot_v3_demo.csv`` and ``pilot_v3.md``): a category is in the
benchmark when RD's clean image AUROC lies in [0.65, 0.97] at the benchmark cell's
size and budget (64 px, 400 optimiser steps, the demo profile, seed 111), measured on
generation seed 1 (``data/synthetic_v3_pilot``), never on the benchmark's seed 0
(``data/synthetic_v3``). A category outside the band is tuned on seed 1 only, or left
out of the benchmark's grids. The layout is MVTec AD's
(``train/good``, ``test/<defect>``, ``ground_truth/<defect>/000_mask.png``) plus a
``pool/`` of extra anomalies (masks in ``pool_ground_truth/``) that the contamination
protocols inject into the training set, and a ``manifest.json``.

Design: /work/shared/reference/data_and_metrics.md §5.2. Defects after:

- DRAEM (VitjanZ/DRAEM ``data_loader.py`` L80-142, ``perlin.py``): Perlin masks with a
  lattice of ``2**k`` cells per axis, rotated, thresholded at 0.5, filled from another
  texture with ``out = I(1-M) + (1-b)A M + b I M``, ``b ~ U(0, 0.8)``.
- CutPaste (Li et al., CVPR 2021; Runinho/pytorch-cutpaste ``cutpaste.py``): a
  rectangle of the same image with colour jitter, pasted elsewhere.
- NSA (hmsch/natural-synthetic-anomalies ``self_sup_tasks.py``): masks mark visible
  change only.
- MemSeg (TooTouch/MemSeg ``data/dataset.py`` L152-270): object defects are restricted
  to the foreground.

Deliberate deviations:

- Every output file has its own ``np.random.Generator`` seeded by
  ``SeedSequence([seed, crc32(category), crc32(split), crc32(defect), index,
  crc32(role), attempt])``; no global RNG, no torch. The output is byte-identical for
  any number of worker processes.
- Masks keep only pixels whose change is at least `MIN_CHANGE` grey levels (maximum
  over RGB); smaller changes are reverted, so outside the mask an anomalous image
  equals its clean base image exactly (`render_base`).
- A defect whose mask is smaller than `min_area` (or larger than `max_area`) is
  redrawn with ``attempt + 1``; DRAEM instead labels an empty mask as normal. A
  recurring copy of a prototype barely above `min_area` that loses pixels off the
  object's edge in every draw is admitted once it keeps half of the prototype
  (``short_copy`` in the manifest; none in the default or the tiny dataset).
- DRAEM's mask covers the whole image; ours is confined to a random disc, so that a
  defect is never a large share of the image.
- Image sizes in version 2 are powers of two (32 to 2048): the real textures are
  cropped from a 256 px window and rescaled by a power of two (sizes above 256 are
  upsampled, so softer), and the Perlin lattices (``2**k`` cells) then hold a whole
  number of pixels per cell. Version 3 takes any multiple of 32 (so 96 px): lattices
  of up to 32 cells still hold whole pixels, and the texture crops are resampled
  (Pillow's bicubic) where the factor is not a whole number.
- Version 3 renders at the benchmark's size (64 px) rather than downsampling 256 px
  files, so a mask is exact at the size the methods see.
- Byte-identity holds for one machine and one set of library versions (recorded in
  the manifest); numpy's vectorised sin/exp may round differently on another CPU,
  which `verify` would report.

Layout (``<root>/<category>/...``)::

    train/good/000.png                      test/good/000.png
    test/<defect>/000.png                   ground_truth/<defect>/000_mask.png
    pool/<defect>/000.png                   pool_ground_truth/<defect>/000_mask.png

Modules, each importing only the ones above it in this list (tests/test_layering.py)::

    spec      VERSION(S), CATEGORIES(_V3), FAMILIES, Spec: what the benchmark holds
    noise     Perlin noise and pixel coordinates (numpy)
    sources   the bundled source images, checked and cropped; Base, a clean image
    scenes    normal images, one renderer per category (v3: one per family)
    defects   the eight defect types, and v3's thread, knot and dent
    samples   one file: base image, defect, exact mask (render)
    manifest  manifest.json: header, prototypes, verify
    build     generate (parallel, atomic), ensure, remove_stale

Example::

    manifest = ensure("data/synthetic", Spec.tiny(), categories=["brick", "washer"])
    assert verify(manifest.parent) == []
    v3 = ensure("data/synthetic_v3", Spec.v3())          # every v3 category, 64 px
    assert family("twill") == "fabric" and kind("bolt") == "object"

Explained in: book/chapters/01_contamination
"""

from fuadnb.data.synthetic.build import (
    STALE_SECONDS,
    DatasetExistsError,
    ensure,
    generate,
    remove_stale,
)
from fuadnb.data.synthetic.manifest import MANIFEST, prototypes, verify
from fuadnb.data.synthetic.samples import (
    MAX_ATTEMPTS,
    MIN_CHANGE,
    Sample,
    foreground,
    max_area,
    min_area,
    render,
    render_base,
)
from fuadnb.data.synthetic.sources import SOURCE_SHA256, SourceImageError, source_hashes
from fuadnb.data.synthetic.spec import (
    CATEGORIES,
    CATEGORIES_V3,
    DEFECTS,
    DEFECTS_V3,
    FAMILIES,
    SPLITS,
    VERSION,
    VERSIONS,
    Category,
    Spec,
    catalogue,
    family,
    kind,
)

__all__ = ["CATEGORIES", "CATEGORIES_V3", "DEFECTS", "DEFECTS_V3", "FAMILIES",
           "MANIFEST", "MAX_ATTEMPTS", "MIN_CHANGE", "SOURCE_SHA256", "SPLITS",
           "STALE_SECONDS", "VERSION", "VERSIONS", "Category", "DatasetExistsError",
           "Sample", "SourceImageError", "Spec", "catalogue", "ensure", "family",
           "foreground", "generate", "kind", "max_area", "min_area", "prototypes",
           "remove_stale", "render", "render_base", "source_hashes", "verify"]
