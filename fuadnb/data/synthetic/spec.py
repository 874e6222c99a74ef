"""What the synthetic benchmark holds: its versions, categories, families and defect
types, and the `Spec` of sizes, counts, seed and version that the whole output is a
function of.

Version 2 (`CATEGORIES`, the default) has eight categories; version 3
(`CATEGORIES_V3`, ``Spec.v3()``) has 30 in 10 families (`FAMILIES`), v2's eight among
them unchanged (same name, same renderer, same bytes at the same size and seed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

VERSION = 2   # 2: recurring defects (prototypes), 60 good / 16 per defect in test
VERSIONS = (2, 3)  # 3: 30 categories in 10 families, sizes any multiple of 32
# v3's generators are still being tuned (issue 31): bump REVISION_V3 by hand whenever
# a v3 category's output changes, so `ensure` regenerates an older v3 folder
# 2: moss at grass's scale; granite, pebbles, walnut severity. 3: brushed_steel
# (RD pilot 0.993): stronger streaks, severity 0.2
REVISION_V3 = 3
DEFECTS = ("color", "crack", "cutpaste", "foreign_texture", "hole", "missing",
           "scratch", "stain")
# v3's family-specific defect types (a loose thread on fabric, a knot in wood, a dent
# in metal)
DEFECTS_V3 = tuple(sorted((*DEFECTS, "dent", "knot", "thread")))
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
        family: the family (v3): categories of one family share a scene generator
            and differ in its parameters (colours, scales, layouts) and defect mix.
        severity: how strongly a defect changes the image (v3's difficulty knob):
            the defect image is ``base + severity * (defect - base)`` before the
            mask is taken; 1 leaves it as drawn (every v2 category).
    """

    name: str
    kind: str
    source: str
    defects: tuple[str, ...]
    family: str = ""
    severity: float = 1.0


_V2 = (
    Category("brick", "texture", "skimage.data.brick",
             ("crack", "foreign_texture", "hole", "stain"), "masonry"),
    Category("capsule", "object", "procedural",
             ("color", "crack", "missing", "scratch"), "pills"),
    Category("coin", "object", "skimage.data.coins",
             ("color", "missing", "scratch", "stain"), "discs"),
    Category("grass", "texture", "skimage.data.grass",
             ("cutpaste", "foreign_texture", "hole", "stain"), "foliage"),
    Category("gravel", "texture", "skimage.data.gravel",
             ("cutpaste", "foreign_texture", "hole", "stain"), "stone"),
    Category("washer", "object", "procedural",
             ("crack", "missing", "scratch", "stain"), "discs"),
    Category("weave", "texture", "procedural",
             ("cutpaste", "hole", "scratch", "stain"), "fabric"),
    Category("wood", "texture", "procedural",
             ("crack", "hole", "scratch", "stain"), "wood"),
)
CATEGORIES: dict[str, Category] = {c.name: c for c in _V2}

_P = "procedural"
_NEW = (
    # fabric: woven cloth, plain / twill / basket weave
    Category("twill", "texture", _P, ("cutpaste", "hole", "stain", "thread"),
             "fabric"),
    Category("canvas", "texture", _P, ("foreign_texture", "hole", "scratch",
                                       "thread"), "fabric"),
    # wood: growth rings and fibres
    Category("walnut", "texture", _P, ("crack", "knot", "scratch", "stain"), "wood"),
    Category("pine", "texture", _P, ("hole", "knot", "scratch", "stain"), "wood"),
    # stone: gravel photographs and a procedural granite
    Category("pebbles", "texture", "skimage.data.gravel",
             ("crack", "foreign_texture", "hole", "stain"), "stone"),
    Category("granite", "texture", _P, ("crack", "cutpaste", "hole", "stain"),
             "stone"),
    # masonry: courses of bricks, square ceramic tiles
    Category("brick_grey", "texture", "skimage.data.brick",
             ("cutpaste", "foreign_texture", "hole", "stain"), "masonry"),
    Category("tiles", "texture", _P, ("crack", "foreign_texture", "hole", "stain"),
             "masonry"),
    # foliage: the grass photograph, other palettes and scales
    Category("straw", "texture", "skimage.data.grass",
             ("crack", "foreign_texture", "hole", "stain"), "foliage"),
    Category("moss", "texture", "skimage.data.grass",
             ("cutpaste", "foreign_texture", "scratch", "stain"), "foliage"),
    # metal: brushed and blasted sheet
    Category("brushed_steel", "texture", _P, ("dent", "scratch", "stain", "crack"),
             "metal"),
    Category("brushed_brass", "texture", _P, ("dent", "hole", "scratch", "stain"),
             "metal"),
    Category("sandblasted", "texture", _P, ("cutpaste", "dent", "scratch", "stain"),
             "metal"),
    # discs: flat round parts on a backdrop
    Category("button", "object", _P, ("color", "crack", "missing", "stain"),
             "discs"),
    # pills: capsules, softgels and tablets
    Category("softgel", "object", _P, ("color", "missing", "scratch", "stain"),
             "pills"),
    Category("tablet", "object", _P, ("crack", "missing", "scratch", "stain"),
             "pills"),
    # screws: elongated fasteners seen from the side
    Category("screw", "object", _P, ("crack", "missing", "scratch", "stain"),
             "screws"),
    Category("bolt", "object", _P, ("color", "missing", "scratch", "stain"),
             "screws"),
    Category("nail", "object", _P, ("color", "crack", "missing", "scratch"),
             "screws"),
    # bottles: round containers seen from the top
    Category("bottle_green", "object", _P, ("crack", "missing", "scratch", "stain"),
             "bottles"),
    Category("bottle_brown", "object", _P, ("color", "crack", "missing", "stain"),
             "bottles"),
    Category("cap", "object", _P, ("color", "missing", "scratch", "stain"),
             "bottles"),
)
# Defect severity of the new categories, tuned on the pilot's generation seed (1)
# only, from a clean PatchCore screen at 64 px and RD's first pilot point (moss 0.58)
# (benchmarks/results/pilot_v3.md): categories the screen saturated get fainter
# defects, the hardest textures stronger ones.
_SEVERITY = {"bolt": 0.5, "bottle_brown": 0.5, "bottle_green": 0.4, "brick_grey": 0.4,
             "brushed_brass": 0.4, "brushed_steel": 0.2, "button": 0.5, "canvas": 0.6,
             "cap": 0.6, "granite": 1.5, "moss": 1.3, "nail": 0.4, "pebbles": 1.3,
             "pine": 0.7, "sandblasted": 0.5, "screw": 0.7, "softgel": 0.3,
             "tablet": 0.6, "tiles": 0.6, "walnut": 1.4}
CATEGORIES_V3: dict[str, Category] = {
    c.name: c for c in sorted(
        (*_V2, *(replace(c, defects=tuple(sorted(c.defects)),
                         severity=_SEVERITY.get(c.name, 1.0)) for c in _NEW)),
        key=lambda c: c.name)}
FAMILIES: dict[str, tuple[str, ...]] = {
    f: tuple(n for n, c in CATEGORIES_V3.items() if c.family == f)
    for f in sorted({c.family for c in CATEGORIES_V3.values()})}
_ALL = CATEGORIES_V3  # every name of every version (v2's are members of v3)


def catalogue(version: int = VERSION) -> dict[str, Category]:
    """The categories of a benchmark version, by name (sorted)."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    return CATEGORIES if version == 2 else CATEGORIES_V3


def family(category: str) -> str:
    """The family of a category (v3's grouping; v2's categories have one too), for
    a bootstrap that resamples families; unknown names: the name itself."""
    cat = _ALL.get(category)
    return cat.family if cat is not None else category


def kind(category: str) -> str:
    """The category's kind, ``"object"`` or ``"texture"`` (unknown names:
    ``"texture"``)."""
    cat = _ALL.get(category)
    return cat.kind if cat is not None else "texture"


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Spec.{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Spec:
    """Size and counts of the benchmark; the whole output is a function of it.

    Args:
        size: image side in pixels, from 32 to 2048: a power of two in version 2, a
            multiple of 32 in version 3 (64 and 96 px both work).
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
        version: benchmark version, 2 (`CATEGORIES`) or 3 (`CATEGORIES_V3`); the
            manifest records it beside the other fields (``"version"``), so a v2
            manifest is unchanged.

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
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.version not in VERSIONS or isinstance(self.version, bool):
            raise ValueError(f"Spec.version must be one of {VERSIONS}, got "
                             f"{self.version!r}")
        size = self.size
        bad = (isinstance(size, bool) or not isinstance(size, int) or size < 32
               or size > 2048)
        if not bad and self.version == 2 and size & (size - 1):
            bad = True
        if bad or size % 32:
            rule = "a power of two" if self.version == 2 else "a multiple of 32"
            raise ValueError(f"Spec.size must be {rule} from 32 to 2048 in version "
                             f"{self.version} (Perlin lattices and texture "
                             f"rescaling), got {size!r}")
        _check_count("n_train", self.n_train, 1)
        _check_count("n_test_good", self.n_test_good, 0)
        _check_count("n_test_per_defect", self.n_test_per_defect, 0)
        _check_count("n_pool_per_defect", self.n_pool_per_defect, 0)
        _check_count("n_recurring_per_defect", self.n_recurring_per_defect, 0)
        _check_count("n_prototypes", self.n_prototypes, 1)
        _check_count("seed", self.seed, 0)

    @classmethod
    def tiny(cls, seed: int = 0, version: int = VERSION) -> Spec:
        """64 px, 10 train / 4 good / 2 per defect / 2 pool / 2 recurring, one
        prototype per defect type: for tests and CI."""
        return cls(size=64, n_train=10, n_test_good=4, n_test_per_defect=2,
                   n_pool_per_defect=2, n_recurring_per_defect=2, n_prototypes=1,
                   seed=seed, version=version)

    @classmethod
    def v3(cls, size: int = 64, seed: int = 0) -> Spec:
        """The third edition at the benchmark's size (64 px), v2's counts: 100
        train, 60 good + 4 x 16 anomalous test images, 4 x 10 pool, 4 x 10
        recurring copies of 2 prototypes per defect type."""
        return cls(size=size, seed=seed, version=3)

    @property
    def categories(self) -> dict[str, Category]:
        """The categories of this spec's version (`catalogue`)."""
        return catalogue(self.version)

    def fields(self) -> dict:
        """The fields the manifest's ``"spec"`` records: all but ``version`` (the
        manifest's own ``"version"``)."""
        return {k: v for k, v in asdict(self).items() if k != "version"}

    def prototype(self, split: str, defect: str, index: int) -> int | None:
        """The prototype a file copies, or None for a fresh (novel) defect."""
        if defect == "good":
            return None
        if split == "recurring" or (split == "test"
                                    and index < self.n_test_per_defect // 2):
            return index % self.n_prototypes
        return None
