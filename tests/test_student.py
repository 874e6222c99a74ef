"""`python -m fuadnb student --out DIR`: student copies of every chapter, the
exercises kept and every solution removed, valid notebooks, all or nothing."""

from pathlib import Path

import nbformat
import pytest

from fuadnb import cli, notebooks, student

REPO = Path(__file__).resolve().parents[1]


def run_cli(args, capsys):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_student_copies_keep_the_exercises_and_drop_every_solution(tmp_path, capsys):
    out = tmp_path / "exercises"
    code, printed, err = run_cli(["student", "--out", out], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == \
        sorted(f"{name}.ipynb" for name in notebooks.CHAPTERS)
    assert "solutions removed" in printed
    for name in notebooks.CHAPTERS:
        source = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        copy = nbformat.read(out / f"{name}.ipynb", as_version=4)
        nbformat.validate(copy)
        text = "\n".join(c.source for c in copy.cells)
        assert "{solution" not in text and "solution-end" not in text
        assert not any(student.SOLUTION_TAG in c.metadata.get("tags", [])
                       for c in copy.cells)
        labels = [lb for c in source.cells if c.cell_type == "markdown"
                  for lb in student.exercise_labels(c.source)]
        kept = [lb for c in copy.cells if c.cell_type == "markdown"
                for lb in student.exercise_labels(c.source)]
        assert kept == labels and len(labels) >= 3
        answers = [c for c in copy.cells if c.source.startswith("# Your answer")]
        assert len(answers) == len(labels)
        # the solutions' code and glue cells are gone, everything else is kept
        _, report = student.strip(source)
        assert len(copy.cells) == len(source.cells) - report["cells"] + len(labels)
        assert report["solutions"] == len(labels)
        solution_code = {c.source for c in source.cells if c.cell_type == "code"} - \
            {c.source for c in copy.cells}
        assert solution_code, "every chapter has a solution cell to remove"
        assert any("parameters" in c.metadata.get("tags", []) for c in copy.cells)
        assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")
        assert copy.metadata["fuadnb"] == {"student_copy": True}


def test_a_bad_out_fails_with_one_line_and_writes_nothing(tmp_path, capsys):
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.ipynb").write_text("{}")
    for out in (afile, full):
        code, _, err = run_cli(["student", "--out", out], capsys)
        assert code == 2 and err.startswith("fuadnb: error: --out")
        assert len(err.strip().splitlines()) == 1
    assert afile.read_text() == "x"
    assert [p.name for p in full.iterdir()] == ["keep.ipynb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "full"]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["student"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("fuadnb: error:") and "--out" in err


def test_an_empty_folder_is_filled(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["student", "--out", empty], capsys)
    assert code == 0, err
    assert len(list(empty.glob("*.ipynb"))) == len(notebooks.CHAPTERS)


def test_a_failure_half_way_leaves_no_folder(tmp_path, monkeypatch):
    written = []

    def write_one_then_fail(nb, path):
        if written:
            raise OSError(28, "No space left on device", str(path))
        written.append(path)
        nbformat.write(nb, path)

    monkeypatch.setattr(student.nbformat, "write", write_one_then_fail)
    with pytest.raises(OSError):
        student.write_student_copies(tmp_path / "exercises", root=REPO)
    assert list(tmp_path.iterdir()) == [] and written


def test_strip_removes_each_form_of_solution_and_refuses_what_it_cannot_read():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        md(":::{exercise} One\n:label: ex-a\n:class: note\n\nDo it.\n:::\n\n"
           ":::{solution} ex-a\n:class: dropdown\n\n:::{note}\nnested\n:::\n"
           "SECRET one\n:::\n\nafter"),
        code("secret = 2", metadata={"tags": ["remove-cell", "solution"]}),
        md(":::{exercise}\n:label: ex-b\n\nCode it.\n:::"),
        md(":::{solution-start} ex-b\n:class: dropdown\n:::\n\nSECRET two"),
        code("print('SECRET three')"),
        md(":::{solution-end}\n:::"),
        md("the end")])
    copy, report = student.strip(nb)
    text = "\n".join(c.source for c in copy.cells)
    assert "SECRET" not in text and "secret" not in text and "nested" not in text
    assert "Do it." in text and "Code it." in text and "after" in text
    assert report == {"exercises": 2, "solutions": 2, "cells": 4}
    assert [c.source for c in copy.cells if c.cell_type == "code"] == \
        ["# Your answer to ex-a here\n", "# Your answer to ex-b here\n"]
    nbformat.validate(copy)
    assert nb.cells[0].source.endswith("after"), "the source is left untouched"
    for bad, why in (
            ([md(":::{solution-start} ex-b\n:::"), code("x = 1")], "never closed"),
            ([md(":::{solution-end}\n:::")], "without a solution-start"),
            ([md("```{solution} ex-a\nx\n```")], "colon fence"),
            ([md(":::{solution} ex-a\nx\n")], "never closed")):
        with pytest.raises(student.StudentError, match=why):
            student.strip(nbformat.v4.new_notebook(cells=bad))
