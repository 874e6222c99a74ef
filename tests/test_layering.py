"""Imports inside fuadnb point only to strictly lower layers (STYLE.md B3).

One refinement of B3: ``engine`` sits one layer above ``nn`` because it normalises
inputs with the backbones' ImageNet statistics; ``evidence`` (the statistics over
categories) sits one layer above ``evaluate``, whose column check it uses. A
sub-package in `SUBLAYERS` has its own order on top: each of its modules imports
only strictly lower ones of it (never the sub-package itself); its ``__init__`` may
import them all.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fuadnb"
LAYERS = [{"utils", "config"}, {"data", "metrics", "runs"}, {"nn"}, {"engine"},
          {"models"}, {"evaluate", "strategies"}, {"evidence"},
          {"experiment", "plot", "chapter_table"},
          {"nb"}, {"notebooks"}, {"book", "grid", "student"}, {"cluster", "rehearsal"},
          {"cli"}, {"__main__"}]
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}
SUBLAYERS = {"data.synthetic": [{"spec", "noise"}, {"sources"}, {"scenes", "defects"},
                                {"samples", "manifest"}, {"build"}]}
SUBRANK = {package: {name: level for level, names in enumerate(layers)
                     for name in names} for package, layers in SUBLAYERS.items()}


def fuadnb_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports inside fuadnb"
            if node.module:
                yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py")
            for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert tops <= set(RANK), f"add {sorted(tops - set(RANK))} to LAYERS"
    for package, rank in SUBRANK.items():
        inner = {p.stem for p in PACKAGE.joinpath(*package.split(".")).glob("*.py")}
        assert inner - {"__init__"} == set(rank), f"SUBLAYERS[{package!r}]: {inner}"


def module_name(path: Path) -> str:
    """``fuadnb/data/synthetic/scenes.py`` -> ``"data.synthetic.scenes"``; a
    package's ``__init__.py`` -> the package's name."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(
        ".__init__")


def violations(module: str, source: str) -> tuple[list[str], int]:
    """The imports of `module` (dotted, below fuadnb: ``"cli"``,
    ``"data.synthetic.scenes"``) that do not point to a strictly lower layer, and
    how many fuadnb imports were checked. A bare ``import fuadnb`` is one: it runs
    ``fuadnb/__init__``, which imports every layer."""
    own = module.split(".")[0]
    package, _, inner = module.rpartition(".")
    rank = SUBRANK.get(package)
    bad, checked = [], 0
    for name in fuadnb_imports(ast.parse(source)):
        parts = name.split(".")
        if parts[0] != "fuadnb":
            continue
        checked += 1
        if len(parts) < 2:
            bad.append(name)
        elif parts[1] != own and RANK.get(parts[1], 99) >= RANK[own]:
            bad.append(name)
        elif rank is not None and f"{name}.".startswith(f"fuadnb.{package}."):
            target = name.removeprefix(f"fuadnb.{package}").lstrip(".").split(".")[0]
            if rank.get(target, 99) >= rank.get(inner, -1):
                bad.append(name)
    return bad, checked


def test_imports_only_point_to_lower_layers():
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue
        bad, n = violations(module_name(path), path.read_text())
        assert bad == [], f"{path} imports {bad}"
        checked += n
    assert checked > 10


def test_the_check_sees_an_upward_and_a_bare_import():
    assert violations("data", "from fuadnb import cli\n")[0] == ["fuadnb.cli"]
    assert violations("experiment", "import fuadnb\n")[0] == ["fuadnb"]
    assert violations("data", "from fuadnb.models import rd\n")[0] == \
        ["fuadnb.models.rd"]
    assert violations("models", "from fuadnb.data import images\n")[0] == []


def test_the_check_sees_an_upward_import_inside_a_sub_package():
    inside = "data.synthetic.scenes"
    assert violations(inside, "from fuadnb.data.synthetic.noise import perlin\n")[0] \
        == []
    assert violations(inside, "from fuadnb.data.synthetic import build\n")[0] == \
        ["fuadnb.data.synthetic.build"]
    assert violations(inside, "import fuadnb.data.synthetic.defects\n")[0] == \
        ["fuadnb.data.synthetic.defects"]                 # same level: not lower
    assert violations(inside, "from fuadnb.data import synthetic\n")[0] == \
        ["fuadnb.data.synthetic"]                         # the package: all of it
    assert violations("data.synthetic", "from fuadnb.data.synthetic import build\n"
                      )[0] == []                          # its __init__
