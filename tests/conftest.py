"""Shared fixtures. Tests never download: offline mode is forced here too, so a bare
``pytest`` behaves like ``make test``."""

import os
import shutil
from pathlib import Path

import pytest

os.environ["FUADNB_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

from fuadnb.data import synthetic  # noqa: E402

TINY_CATEGORIES = ("brick", "washer")


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """The tiny synthetic benchmark (64 px, two categories), generated once."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic.generate(root, synthetic.Spec.tiny(), categories=list(TINY_CATEGORIES),
                       workers=1)
    return root


@pytest.fixture
def tiny_copy(tiny_synth, tmp_path) -> Path:
    """A private copy of the tiny benchmark that a test may damage."""
    return Path(shutil.copytree(tiny_synth, tmp_path / "synthetic"))
