"""The chapters' teaching apparatus: learning objectives (repeated on the course
page), three or more exercises each with a solution, solutions whose numbers are all
glued from the chapter's run (never typed), and every glue a solution cites glued by
the executed chapter."""

import ast
import re
from pathlib import Path

import nbformat
import pytest

from fuadnb import notebooks, student

REPO = Path(__file__).resolve().parents[2]
CHAPTERS = [REPO / "notebooks" / f"{name}.ipynb" for name in notebooks.CHAPTERS]
GLUE = re.compile(r"\{glue(?::[a-z]*)?\}`([^`]+)`")
SOLUTION = re.compile(r"^:{3,}\{solution(?:-start)?\}\s+(\S+)", re.M)


def _cells(path: Path):
    return nbformat.read(path, as_version=4).cells


def solution_parts(cells) -> tuple[list[str], list[str], list[str]]:
    """The solutions of a chapter: their Markdown text (``{solution}`` blocks and
    the Markdown cells of gated solutions), the labels they answer, and the source
    of every code cell a student copy removes (gated and tagged ``solution``)."""
    texts, labels, code = [], [], []
    gated = False
    for cell in cells:
        src = cell.source
        if student._starts_gate(cell):
            gated = True
        if gated or student.SOLUTION_TAG in cell.metadata.get("tags", []):
            (code if cell.cell_type == "code" else texts).append(src)
        elif cell.cell_type == "markdown":
            texts += student.strip_markdown(src)[1]
        labels += SOLUTION.findall(src)
        if student._ends_gate(cell):
            gated = False
    return texts, labels, code


def hand_typed_numbers(text: str) -> list[str]:
    """Numbers in solution prose that no glue role, code or math supplies: any
    digit outside code, roles and math, and any decimal inside math."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"\{[a-z:-]+\}`[^`]*`|`[^`]*`", "", text)     # roles, inline code
    text = re.sub(r"^:{3,}.*$|^:[a-z-]+:.*$", "", text, flags=re.M)   # fences
    maths = re.findall(r"\$\$.*?\$\$|\$[^$]*\$", text, flags=re.S)
    found = [d for m in maths for d in re.findall(r"\d+\.\d+", m)]
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", "", text, flags=re.S)
    return found + re.findall(r"\d[\d.,]*", prose)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_three_to_five_exercises_each_with_a_solution(path):
    cells = _cells(path)
    labels = [label for c in cells if c.cell_type == "markdown"
              for label in student.exercise_labels(c.source)]
    assert 3 <= len(labels) <= 5, labels
    assert all(label.startswith(f"ex{path.stem[:2]}-") for label in labels), labels
    assert len(set(labels)) == len(labels)
    _, answered, _ = solution_parts(cells)
    assert sorted(answered) == sorted(labels), "one solution per exercise"


def test_exercise_labels_are_unique_across_the_book():
    labels = [label for path in CHAPTERS for c in _cells(path)
              if c.cell_type == "markdown"
              for label in student.exercise_labels(c.source)]
    assert len(labels) == len(set(labels)) >= 3 * len(CHAPTERS)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_write_no_number_by_hand(path):
    texts, _, _ = solution_parts(_cells(path))
    assert texts
    for text in texts:
        assert hand_typed_numbers(text) == [], text[:200]
    assert any(GLUE.search(text) for text in texts)


def test_the_number_check_sees_a_typed_number():
    assert hand_typed_numbers("RD reaches 0.873 here") == ["0.873"]
    assert hand_typed_numbers("in 12 of the runs") == ["12"]
    assert hand_typed_numbers("a share $r = 0.25$ of it") == ["0.25"]
    assert hand_typed_numbers("{glue:text}`ex02_auroc:.4f`, $2 / 2^n$, `k = 3`") == []


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solution_code_leaves_nothing_the_chapter_needs(path):
    """A student copy drops the solutions' code cells: no cell that stays may read a
    name that only a dropped cell assigns."""
    cells = _cells(path)
    _, _, dropped = solution_parts(cells)
    assigned = {n.id for src in dropped for n in ast.walk(ast.parse(src))
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    kept = [c.source for c in cells
            if c.cell_type == "code" and c.source not in dropped]
    defined = {n.id for src in kept for n in ast.walk(ast.parse(src))
               if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for src in kept:
        read = {n.id for n in ast.walk(ast.parse(src))
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert not (read & assigned) - defined, src[:120]


def objectives(path: Path) -> list[str]:
    first = _cells(path)[0].source
    block = re.search(r":::\{admonition\} Learning objectives\n(.*?)\n:::", first, re.S)
    assert block, f"{path.stem}: no learning objectives in the first cell"
    return re.findall(r"^- (.+)$", block.group(1), re.M)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_learning_objectives_open_the_chapter_and_the_course_lists_them(path):
    bullets = objectives(path)
    assert 3 <= len(bullets) <= 4, bullets
    course = (REPO / "book" / "course.md").read_text()
    assert f"{{doc}}`chapters/{path.stem}`" in course
    for bullet in bullets:
        assert f"- {bullet}\n" in course, bullet


@pytest.mark.book
@pytest.mark.parametrize("name", notebooks.CHAPTERS)
def test_every_glue_a_solution_cites_is_glued_by_the_chapter(smoke_book, name):
    texts, _, _ = solution_parts(_cells(REPO / "notebooks" / f"{name}.ipynb"))
    cited = {g.split(":")[0] for text in texts for g in GLUE.findall(text)}
    executed = nbformat.read(smoke_book / "book" / "chapters" / f"{name}.ipynb",
                             as_version=4)
    glued = {o["metadata"]["scrapbook"]["name"] for c in executed.cells
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    assert cited and cited <= glued, sorted(cited - glued)
