"""Deterministic synthetic anomaly benchmark in the MVTec AD folder layout.

Eight categories (five textures, three objects) built offline from the images bundled
with scikit-image (``brick``, ``grass``, ``gravel``, ``coins``, plus ``moon`` and
``immunohistochemistry`` as foreign-texture sources) and from procedural renderers.
Every anomalous image has an exact pixel mask. The layout is MVTec AD's
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
- Image sizes are powers of two (32 to 2048): the real textures are cropped from a
  256 px window and rescaled by a power of two (sizes above 256 are upsampled, so
  softer), and the Perlin lattices (``2**k`` cells) then hold a whole number of
  pixels per cell.
- Byte-identity holds for one machine and one set of library versions (recorded in
  the manifest); numpy's vectorised sin/exp may round differently on another CPU,
  which `verify` would report.

Layout (``<root>/<category>/...``)::

    train/good/000.png                      test/good/000.png
    test/<defect>/000.png                   ground_truth/<defect>/000_mask.png
    pool/<defect>/000.png                   pool_ground_truth/<defect>/000_mask.png

Modules, each importing only the ones above it in this list (tests/test_layering.py)::

    spec      VERSION, CATEGORIES, Spec: what the benchmark holds
    noise     Perlin noise and pixel coordinates (numpy)
    sources   the bundled source images, checked and cropped; Base, a clean image
    scenes    normal images, one renderer per category
    defects   the eight defect types
    samples   one file: base image, defect, exact mask (render)
    manifest  manifest.json: header, prototypes, verify
    build     generate (parallel, atomic), ensure, remove_stale

Example::

    manifest = ensure("data/synthetic", Spec.tiny(), categories=["brick", "washer"])
    assert verify(manifest.parent) == []

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
