"""Student copies of the chapters: the exercises kept, their solutions removed.

A chapter's exercises are sphinx-exercise directives in its Markdown cells. A
solution is removed in one of three forms:

* a ``{solution}`` block inside a Markdown cell (written with a colon fence,
  ``:::{solution} label``, closed by a line of the same colons);
* a gated solution: the cells from one whose source starts with
  ``:::{solution-start}`` to the next one that is only ``:::{solution-end}`` and its
  closing fence, both included (code cells between them are the solution's code);
* a cell tagged ``solution`` (e.g. the hidden cell that glues a solution's numbers).

Every exercise is followed by an empty code cell for the answer. `strip` works on
one notebook in memory; `write_student_copies` writes every chapter of
`fuadnb.notebooks.CHAPTERS` into a new folder, all or nothing.

Explained in: book/course.md ("Handing out the exercises").
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from fuadnb.notebooks import CHAPTERS, BookError, repo_root

SOLUTION_TAG = "solution"
ANSWER_CELL = "# Your answer to {label} here\n"
_OPEN = re.compile(r"^(\s*)(:{3,}|`{3,})\{(?P<name>[a-z-]+)\}\s*(?P<arg>.*)$")
_LABEL = re.compile(r"^\s*:label:\s*(\S+)\s*$")
_OPTION = re.compile(r"^\s*:[a-z-]+:")


class StudentError(BookError):
    """A chapter's exercises or solutions are not written in a form `strip` reads
    (an unclosed block, a solution in backticks, a gated solution never closed)."""


def _directive(line: str) -> tuple[str, str, str] | None:
    """(fence, directive name, argument) of a directive's opening line, else None."""
    m = _OPEN.match(line)
    return (m.group(2), m.group("name"), m.group("arg").strip()) if m else None


def _closes(line: str, fence: str) -> bool:
    return line.strip() == fence


def strip_markdown(source: str, where: str = "a cell") -> tuple[str, list[str]]:
    """`source` without its ``{solution}`` blocks; returns the text and the blocks
    removed. A colon fence nested in a solution (a note) is skipped whole."""
    lines, out, removed, i = source.splitlines(keepends=True), [], [], 0
    while i < len(lines):
        opened = _directive(lines[i])
        if opened is None or opened[1] != "solution":
            out.append(lines[i])
            i += 1
            continue
        fence, first = opened[0], i
        if not fence.startswith(":"):
            raise StudentError(f"{where}: write a solution with a colon fence "
                               f"(:::{{solution}}), not {fence}")
        depth, i = 1, i + 1
        while i < len(lines) and depth:
            inner = _directive(lines[i])
            if inner is not None and inner[0].startswith(":"):
                depth += 1
            elif lines[i].strip() and set(lines[i].strip()) == {":"} and \
                    len(lines[i].strip()) >= 3:
                depth -= 1
            i += 1
        if depth:
            raise StudentError(f"{where}: a {{solution}} block is never closed")
        removed.append("".join(lines[first:i]))
    text = re.sub(r"\n{3,}", "\n\n", "".join(out)).strip("\n")
    return text, removed


def _starts_gate(cell) -> bool:
    first = cell.source.lstrip().splitlines()[:1]
    return cell.cell_type == "markdown" and bool(first) and \
        (_directive(first[0]) or ("", "", ""))[1] == "solution-start"


def _ends_gate(cell) -> bool:
    if cell.cell_type != "markdown":
        return False
    lines = [ln for ln in cell.source.strip().splitlines() if ln.strip()]
    return bool(lines) and (_directive(lines[0]) or ("", "", ""))[1] == \
        "solution-end" and all(set(ln.strip()) == {":"} for ln in lines[1:])


def exercise_labels(source: str) -> list[str]:
    """The labels of the ``{exercise}`` blocks opened in a Markdown source."""
    labels, lines = [], source.splitlines()
    for k, line in enumerate(lines):
        opened = _directive(line)
        if opened and opened[1] == "exercise":
            label = ""
            for option in lines[k + 1:]:
                if not _OPTION.match(option):
                    break
                found = _LABEL.match(option)
                label = found.group(1) if found else label
            labels.append(label)
    return labels


def strip(nb: nbformat.NotebookNode, where: str = "the notebook"
          ) -> tuple[nbformat.NotebookNode, dict[str, int]]:
    """A student copy of `nb` (a new notebook) and what was done: ``exercises``
    kept, ``solutions`` removed (blocks and gated solutions), ``cells`` removed."""
    cells, count = [], {"exercises": 0, "solutions": 0, "cells": 0}
    gate = None                                    # index of an open gate's start
    for k, cell in enumerate(nb.cells):
        here = f"{where}, cell {k}"
        if gate is not None:
            count["cells"] += 1
            if _ends_gate(cell):
                gate = None
            elif _starts_gate(cell):
                raise StudentError(f"{here}: a solution-start inside the gated "
                                   f"solution opened in cell {gate}")
            continue
        if _starts_gate(cell):
            gate, count["solutions"], count["cells"] = k, count["solutions"] + 1, \
                count["cells"] + 1
            continue
        if _ends_gate(cell):
            raise StudentError(f"{here}: a solution-end without a solution-start")
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            count["cells"] += 1
            continue
        cell = nbformat.from_dict(dict(cell))      # a copy: the source is untouched
        if cell.cell_type == "markdown":
            cell.source, blocks = strip_markdown(cell.source, here)
            count["solutions"] += len(blocks)
            if not cell.source.strip():
                count["cells"] += 1
                continue
        cells.append(cell)
        if cell.cell_type == "markdown":
            for label in exercise_labels(cell.source):
                count["exercises"] += 1
                cells.append(nbformat.v4.new_code_cell(
                    ANSWER_CELL.format(label=label or "this exercise")))
    if gate is not None:
        raise StudentError(f"{where}: the gated solution opened in cell {gate} is "
                           "never closed (:::{solution-end})")
    out = nbformat.v4.new_notebook(cells=cells, metadata=dict(nb.metadata))
    out.metadata["fuadnb"] = {"student_copy": True}
    return out, count


def write_student_copies(out: Path, *, root: Path | None = None
                         ) -> dict[str, dict[str, int]]:
    """Write a student copy of every chapter into the new folder `out` (it must not
    exist, or be empty). Returns what `strip` did per chapter.

    All or nothing: the copies are written into a temporary folder beside `out`,
    validated, then renamed to `out`; on any error nothing is left behind.

    Raises:
        ValueError: `out` is a file, or a folder that is not empty.
        StudentError: a chapter's solutions cannot be told from its exercises.
    """
    root = root or repo_root()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a new folder for the student "
                         "copies")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is a folder that is not empty; give a new "
                         "folder (nothing is overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        report = {}
        for name in CHAPTERS:
            src = root / "notebooks" / f"{name}.ipynb"
            copy, report[name] = strip(nbformat.read(src, as_version=4), src.name)
            nbformat.validate(copy)
            nbformat.write(copy, tmp / src.name)
        if out.is_dir():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
