"""The book build's own failures: one clear error each (the chapters themselves are
tested in test_notebooks.py)."""

import pytest

from fuadnb import cli

book = pytest.importorskip("fuadnb.book")
notebooks = pytest.importorskip("fuadnb.notebooks")


def test_book_outside_a_checkout_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["book", "--no-execute"]) == 2
    assert "no fuadnb checkout" in capsys.readouterr().err


def test_vendor_assets_without_npm_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(book.shutil, "which", lambda _: None)
    with pytest.raises(notebooks.BookError, match="npm, which is not installed"):
        book.vendor_assets(tmp_path)
