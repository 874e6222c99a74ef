"""Index reader for BTAD (beanTech Anomaly Detection), an MVTec-like layout.

Layout as distributed (reference: /work/shared/reference/data_and_metrics.md §1.5)::

    <root>/01|02|03/train/ok/0000.bmp|png
    <root>/01|02|03/test/ok/0000.bmp|png        # normal, no mask
    <root>/01|02|03/test/ko/0000.bmp|png        # anomalous
    <root>/01|02|03/ground_truth/ko/0000.png|bmp

Mask pairing: the mask is the file in ``ground_truth/ko/`` with the **same stem** as the
image and no ``_mask`` suffix. Its extension need not match the image's: anomalib
(open-edge-platform/anomalib ``src/anomalib/data/datasets/image/btech.py``,
``make_btech_dataset``) builds ``ground_truth/<label>/<stem>.png`` for ``.bmp`` and
``.png`` images alike, after its datamodule has converted every ``.bmp`` (images and
masks) to ``.png``; third-party BTAD loaders that read the unconverted archive use
``<stem>.png`` for products 01/02 and ``<stem>.bmp`` for 03. So we take ``<stem>.png``
and fall back to ``<stem>.bmp``, which reads both the original and the converted tree.

Deliberate choices:

- Normal images get ``defect == "good"`` (the folder is ``ok``), so downstream code sees
  the same normal name for every dataset; anomalous images get ``defect == "ko"``, the
  only (unnamed) defect class BTAD ships.
- Some ``ko`` masks are all zeros (1 in 02, 10 in 03, third-party count in the reference
  note). Indexing never opens masks, so these rows are indexed like any other (label 1,
  mask path set); code that needs "anomalous implies non-empty mask" must check.
- Everything else (errors, ids, sorting) is `fuadnb.data.mvtec.index_tree`.

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fuadnb.data import mvtec
from fuadnb.data.index import kind_of

CATEGORIES = ("01", "02", "03")
NORMAL_FOLDER = "ok"
MASK_SUFFIXES = (".png", ".bmp")  # preference order, see the module docstring

# the products' surfaces fill the frame; none is treated as an object [INFER]
OBJECTS: frozenset[str] = frozenset()


def kind(category: str) -> str:
    """``"texture"`` for every BTAD product (see `OBJECTS`)."""
    return kind_of(category, OBJECTS)


def btad_mask_names(stem: str) -> tuple[str, ...]:
    """BTAD mask file names for a stem: ``0000`` -> ``0000.png``, ``0000.bmp``."""
    return tuple(stem + suffix for suffix in MASK_SUFFIXES)


def index(root: str | Path, category: str) -> pd.DataFrame:
    """Index one BTAD product.

    Args:
        root: folder that holds ``01``, ``02`` and ``03``.
        category: product folder name, ``01``, ``02`` or ``03``.

    Returns:
        The index (``dataset == "btad"``): ``train/ok`` -> train, label 0, defect
        ``good``; ``test/ok`` -> test, label 0, no mask; ``test/ko`` -> test, label 1,
        defect ``ko``, mask ``ground_truth/ko/<stem>.png`` (or ``.bmp``).

    Raises:
        DatasetError: missing root, unknown product (lists those found), missing
            ``train/ok``, or a ``ko`` image without a mask.

    Explained in: book/chapters/01_contamination
    """
    return mvtec.index_tree(root, category, dataset="btad", normal=NORMAL_FOLDER,
                            mask_names=btad_mask_names)
