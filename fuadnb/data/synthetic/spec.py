"""What the synthetic benchmark holds: its `VERSION`, categories and defect types,
and the `Spec` of sizes, counts and seed that the whole output is a function of."""

from __future__ import annotations

from dataclasses import dataclass

VERSION = 2   # 2: recurring defects (prototypes), 60 good / 16 per defect in test
DEFECTS = ("color", "crack", "cutpaste", "foreign_texture", "hole", "missing",
           "scratch", "stain")
SPLITS = ("train", "test", "pool", "recurring")


@dataclass(frozen=True)
class Category:
    """One synthetic category.

    Args:
        name: folder name.
        kind: ``"texture"`` or ``"object"`` (object defects stay on the foreground).
        source: where normal images come from (a ``skimage.data`` image or
            ``"procedural"``).
        defects: defect types, sorted.
    """

    name: str
    kind: str
    source: str
    defects: tuple[str, ...]


CATEGORIES: dict[str, Category] = {c.name: c for c in (
    Category("brick", "texture", "skimage.data.brick",
             ("crack", "foreign_texture", "hole", "stain")),
    Category("capsule", "object", "procedural",
             ("color", "crack", "missing", "scratch")),
    Category("coin", "object", "skimage.data.coins",
             ("color", "missing", "scratch", "stain")),
    Category("grass", "texture", "skimage.data.grass",
             ("cutpaste", "foreign_texture", "hole", "stain")),
    Category("gravel", "texture", "skimage.data.gravel",
             ("cutpaste", "foreign_texture", "hole", "stain")),
    Category("washer", "object", "procedural",
             ("crack", "missing", "scratch", "stain")),
    Category("weave", "texture", "procedural",
             ("cutpaste", "hole", "scratch", "stain")),
    Category("wood", "texture", "procedural",
             ("crack", "hole", "scratch", "stain")),
)}


def kind(category: str) -> str:
    """The category's kind, ``"object"`` or ``"texture"`` (unknown names:
    ``"texture"``)."""
    cat = CATEGORIES.get(category)
    return cat.kind if cat is not None else "texture"


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Spec.{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Spec:
    """Size and counts of the benchmark; the whole output is a function of it.

    Args:
        size: image side in pixels; a power of two from 32 to 2048.
        n_train: normal training images per category.
        n_test_good: normal test images per category.
        n_test_per_defect: anomalous test images per defect type.
        n_pool_per_defect: extra anomalies per defect type in ``pool/``, each one
            fresh (the ``iid`` regime injects these).
        n_recurring_per_defect: anomalies per defect type in ``recurring/``, each a
            copy of one of the defect type's prototypes on another base image (the
            ``recurring`` regime injects these).
        n_prototypes: recurring defects per defect type.
        seed: non-negative base seed.

    The first half of each defect type's test images (``n_test_per_defect // 2``)
    are recurring (copies of the prototypes), the rest are novel.
    """

    size: int = 256
    n_train: int = 100
    n_test_good: int = 60
    n_test_per_defect: int = 16
    n_pool_per_defect: int = 10
    n_recurring_per_defect: int = 10
    n_prototypes: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        size = self.size
        if (isinstance(size, bool) or not isinstance(size, int) or size < 32
                or size > 2048 or size & (size - 1)):
            raise ValueError(f"Spec.size must be a power of two from 32 to 2048 "
                             f"(Perlin lattices and texture rescaling), got {size!r}")
        _check_count("n_train", self.n_train, 1)
        _check_count("n_test_good", self.n_test_good, 0)
        _check_count("n_test_per_defect", self.n_test_per_defect, 0)
        _check_count("n_pool_per_defect", self.n_pool_per_defect, 0)
        _check_count("n_recurring_per_defect", self.n_recurring_per_defect, 0)
        _check_count("n_prototypes", self.n_prototypes, 1)
        _check_count("seed", self.seed, 0)

    @classmethod
    def tiny(cls, seed: int = 0) -> Spec:
        """64 px, 10 train / 4 good / 2 per defect / 2 pool / 2 recurring, one
        prototype per defect type: for tests and CI."""
        return cls(size=64, n_train=10, n_test_good=4, n_test_per_defect=2,
                   n_pool_per_defect=2, n_recurring_per_defect=2, n_prototypes=1,
                   seed=seed)

    def prototype(self, split: str, defect: str, index: int) -> int | None:
        """The prototype a file copies, or None for a fresh (novel) defect."""
        if defect == "good":
            return None
        if split == "recurring" or (split == "test"
                                    and index < self.n_test_per_defect // 2):
            return index % self.n_prototypes
        return None
