"""Imports inside fuadnb point only to strictly lower layers (STYLE.md B3).

One refinement of B3: ``engine`` sits one layer above ``nn`` because it normalises
inputs with the backbones' ImageNet statistics.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fuadnb"
LAYERS = [{"utils", "config"}, {"data", "metrics", "runs"}, {"nn"}, {"engine"},
          {"models"}, {"evaluate", "strategies"}, {"experiment", "plot"},
          {"nb"}, {"notebooks"}, {"book", "grid"}, {"cli"}, {"__main__"}]
RANK = {name: level for level, names in enumerate(LAYERS) for name in names}


def fuadnb_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports inside fuadnb"
            if node.module == "fuadnb":
                yield from (f"fuadnb.{alias.name}" for alias in node.names)
            elif node.module:
                yield node.module


def test_every_module_has_a_layer():
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py")
            for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert tops <= set(RANK), f"add {sorted(tops - set(RANK))} to LAYERS"


def violations(own: str, source: str) -> tuple[list[str], int]:
    """The imports of module `own` (its top-level name) that do not point to a
    strictly lower layer, and how many fuadnb imports were checked. A bare ``import
    fuadnb`` is one: it runs ``fuadnb/__init__``, which imports every layer."""
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
    return bad, checked


def test_imports_only_point_to_lower_layers():
    checked = 0
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own == "__init__":
            continue
        bad, n = violations(own, path.read_text())
        assert bad == [], f"{path} imports {bad}"
        checked += n
    assert checked > 10


def test_the_check_sees_an_upward_and_a_bare_import():
    assert violations("data", "from fuadnb import cli\n")[0] == ["fuadnb.cli"]
    assert violations("experiment", "import fuadnb\n")[0] == ["fuadnb"]
    assert violations("data", "from fuadnb.models import rd\n")[0] == \
        ["fuadnb.models"]
    assert violations("models", "from fuadnb.data import images\n")[0] == []
