"""The reader's apparatus: the licences, the citation file and the changelog are
there and agree with each other and with the package's version."""

import datetime as dt
import re
from pathlib import Path

import yaml

import fuadnb

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
# Keep a Changelog: "## [Unreleased]", then "## [X.Y.Z] - YYYY-MM-DD", newest first
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.M)
SECTIONS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def _releases() -> list[tuple[str, dt.date]]:
    text = (REPO / "CHANGELOG.md").read_text()
    return [(v, dt.date.fromisoformat(d)) for v, d in RELEASE.findall(text)]


def _citation() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text())


def test_license_gives_mit_for_the_code_and_cc_by_for_the_text():
    text = (REPO / "LICENSE").read_text()
    assert "MIT License" in text and "Permission is hereby granted" in text
    assert "Creative Commons Attribution 4.0 International" in text
    assert "https://creativecommons.org/licenses/by/4.0/legalcode" in text
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == {"text": "MIT"}
    readme = (REPO / "README.md").read_text()
    assert "MIT" in readme and "CC BY 4.0" in readme and "LICENSE" in readme


def test_citation_file_is_valid_cff_1_2_0():
    """The keys CFF 1.2.0 requires, with the types its schema gives them."""
    cff = _citation()
    assert {"cff-version", "message", "title", "authors"} <= set(cff)
    assert cff["cff-version"] == "1.2.0"
    assert isinstance(cff["message"], str) and cff["message"].strip()
    assert isinstance(cff["title"], str) and cff["title"].strip()
    assert cff["authors"] and all(
        isinstance(a, dict) and (a.get("name") or a.get("family-names"))
        for a in cff["authors"])
    assert cff["type"] in ("software", "dataset")
    assert isinstance(cff["date-released"], dt.date)   # YYYY-MM-DD, unquoted
    licences = cff["license"] if isinstance(cff["license"], list) else [cff["license"]]
    assert set(licences) == {"MIT", "CC-BY-4.0"}        # SPDX identifiers
    allowed = {"abstract", "authors", "cff-version", "commit", "contact",
               "date-released", "doi", "identifiers", "keywords", "license",
               "license-url", "message", "preferred-citation", "references",
               "repository", "repository-artifact", "repository-code", "title",
               "type", "url", "version"}
    assert set(cff) <= allowed, set(cff) - allowed


def test_versions_agree_package_pyproject_citation_changelog():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    latest, date = _releases()[0]
    assert fuadnb.__version__ == pyproject["project"]["version"] == \
        str(_citation()["version"]) == latest
    assert _citation()["date-released"] == date


def test_changelog_keeps_a_changelog():
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog")
    assert "keepachangelog.com" in text
    headings = re.findall(r"^## (.+)$", text, re.M)
    releases = _releases()
    assert headings[headings.index("[Unreleased]") + 1] == \
        f"[{releases[0][0]}] - {releases[0][1]}"
    versions = [tuple(map(int, v.split("."))) for v, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == \
        len(versions)
    dates = [d for _, d in releases]
    assert dates == sorted(dates, reverse=True)
    assert ("0.1.0", dt.date(2026, 11, 23)) in releases   # the first edition
    # every subsection under a version is one of Keep a Changelog's
    body = text[text.index("## [Unreleased]"):]
    assert set(re.findall(r"^### (.+)$", body, re.M)) <= SECTIONS


def test_the_tag_scheme_is_written_down():
    changelog = (REPO / "CHANGELOG.md").read_text()
    readme = (REPO / "README.md").read_text()
    for text in (changelog, readme):
        assert "vMAJOR.MINOR.PATCH" in text
        assert re.search(r"MINOR[^.]*edition", text)


def _sources() -> list[Path]:
    """The repository's hand-written text: pages, notebooks, code, grids, tables'
    write-ups (not generated folders such as book/_build, runs/ or data/)."""
    found = [p for pattern in ("*.md", "*.toml", "*.yml", "*.cff", "Makefile")
             for p in REPO.glob(pattern)]
    kinds = {"book": ("*.md", "*.yml", "*.bib"),
             "notebooks": ("*.ipynb", "*.py", "*.md"),
             "fuadnb": ("*.py",), "tests": ("*.py",),
             "benchmarks": ("*.py", "*.yaml", "*.md", "*.ipynb")}
    for folder, patterns in kinds.items():
        found += [p for pattern in patterns for p in (REPO / folder).rglob(pattern)
                  if "_build" not in p.parts]
    return found


def test_no_source_holds_a_control_character():
    """A LaTeX command written in a non-raw Python string loses its backslash to an
    escape (``\\frac`` becomes a form feed and "rac"): book/intro.md's equations
    were broken this way for a week and rendered as garbage."""
    sources = _sources()
    assert len(sources) > 100 and REPO / "book" / "intro.md" in sources
    bad = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
    hit = [f"{p.relative_to(REPO)}: {m.group()!r}" for p in sources
           for m in [bad.search(p.read_text(encoding="utf-8"))] if m]
    assert not hit, hit
