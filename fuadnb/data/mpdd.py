"""Index reader for MPDD (Metal Parts Defect Detection), which uses the MVTec AD layout.

Layout (reference: /work/shared/reference/data_and_metrics.md §1.4; anomalib
``src/anomalib/data/datasets/image/mpdd.py`` reads it with the MVTec parser)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png, test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Everything, including pairing masks by name and the errors, is `fuadnb.data.mvtec.index`
with ``dataset="mpdd"``.

Explained in: book/chapters/01_contamination
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fuadnb.data import mvtec
from fuadnb.data.index import kind_of

CATEGORIES = (
    "bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate",
    "tubes",
)

# metal parts on a background; metal_plate fills the frame like a texture [INFER]
OBJECTS = frozenset(CATEGORIES) - {"metal_plate"}


def kind(category: str) -> str:
    """``"object"`` or ``"texture"``."""
    return kind_of(category, OBJECTS)


def index(root: str | Path, category: str) -> pd.DataFrame:
    """Index one MPDD category (see `fuadnb.data.mvtec.index` for rows and errors).

    Args:
        root: folder that holds the six category folders.
        category: category folder name, e.g. ``bracket_black``.

    Returns:
        The index with ``dataset == "mpdd"``.

    Raises:
        DatasetError: as `fuadnb.data.mvtec.index`.

    Explained in: book/chapters/01_contamination
    """
    return mvtec.index(root, category, dataset="mpdd")
