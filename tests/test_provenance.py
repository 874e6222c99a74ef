"""Every committed table under benchmarks/results/ against its recipe (DESIGN.md §9,
issue 31 item 6): a grid table's rows are its grid file's points with their
parameters, each with a commit and a date; any other table names the script that
makes it, and has the columns that script writes. Committed rows are never
rewritten: a table may only grow (`FROZEN`, `FROZEN_ROWS`), and a recomputed column
is a new file.
The tables whose provenance falls short are listed in `GAPS` with what is missing,
and the test fails if a gap is closed or a new one opens, so the list stays true.
"""

import functools
import hashlib
import io
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fuadnb import grid as grids

REPO = Path(__file__).resolve().parents[1]
RESULTS, GRIDS = REPO / "benchmarks" / "results", REPO / "benchmarks" / "grids"

# tables made by `python -m fuadnb grid FILE --table TABLE`: one row per point
GRID = {"benchmark_demo.csv": "demo", "rd_regimes_demo.csv": "rd_regimes",
        "memorybank_regimes_demo.csv": "memorybank_regimes",
        "funad_diagnosis_demo.csv": "funad_diagnosis",
        "budget_v3_demo.csv": "budget_v3"}
# tables made before their grid file existed: tests/book/test_grid.py's
# test_the_grid_files_of_the_chapter_tables_remake_them matches every row to a point
GRID_BEFORE_POINTS = {"cdd_demo.csv": "cdd", "funad_demo.csv": "funad",
                      "llb_demo.csv": "llb", "teacher_candidates_demo.csv": "teachers",
                      "teacher_comparison_lite2_demo.csv": "teachers"}
# grid tables still growing (a grid longer than a session): their rows are grid
# points in grid order, with the points' parameters
GROWING = {"pilot_v3_demo.csv": "pilot_v3", "benchmark_v3_demo.csv": "benchmark_v3"}
PROVENANCE = ("commit", "date")
# tables made by a script: the script and the columns it writes
SCRIPTS = {
    "budget_histories_64px_demo.csv": ("benchmarks/budget_histories.py", (
        "method", "record", "steps_per_record", "loss", "steps", "images_seen",
        *PROVENANCE)),
    "budget_histories_demo.csv": ("benchmarks/budget_histories.py", (
        "method", "record", "steps_per_record", "loss", "steps", "images_seen",
        *PROVENANCE)),
    "benchmark_demo_budget_recomputed.csv": ("benchmarks/recompute_budgets.py", (
        "point", "commit", "images_seen_recorded", "images_seen",
        "train_images_per_second", "note")),
    "budget_histories_budget_recomputed.csv": ("benchmarks/recompute_budgets.py", (
        "table", "method", "commit", "images_seen_recorded", "images_seen", "note")),
    "cost_growth_cpu.csv": ("benchmarks/speed/cost_growth.py", (
        "sweep", "method", "n_images", "image_size", "fit_seconds", "fit_rss_mib",
        "seconds_exponent", "memory_exponent")),
    "vs_anomalib_cpu.csv": ("benchmarks/speed/vs_anomalib.py --csv "
                            "benchmarks/results/vs_anomalib_cpu.csv", (
        "impl", "backbone", "size", "train_seconds", "torch", "date")),
    "power_v3.md": ("benchmarks/power.py", ()),
    "llb_heldout_demo.csv": ("benchmarks/llb_heldout.py", (
        "stage1_rule", "method", "category", "regime", "seed", "profile",
        "image_auroc", "detection_auroc", *PROVENANCE)),
    "precision_cpu.csv": ("benchmarks/precision.py", (
        "method", "category", "precision", "image_auroc", "pixel_auroc",
        "pixel_aupro", *PROVENANCE)),
    "llb_substeps_64px_demo.csv": ("benchmarks/llb_substeps.py", (
        "method", "category", "subset", "loss", "flattened", "steps", *PROVENANCE)),
}
# written by hand from sources outside the repository, or by a command no longer kept
BY_HAND = {
    "published.csv": "the papers' own numbers (its source column names each paper)",
    "teacher_comparison.md": "a write-up of teacher_screen.csv and the teachers grid",
    "teacher_screen.csv": "a one-off teacher screen (commit 9b18788), no script kept",
    "memorybank_demo.csv": "`python -m fuadnb results --runs runs` (commit 089ffd1)",
    "funad_long_curve_demo.csv": "a one-off long FUN-AD fit (commit d20cabe)",
    "pilot_v3.md": "the v3 pilot's write-up: the difficulty rule, how the generators "
                   "were tuned on seed 1, generation times",
}
# what each table's provenance lacks (a re-run closes the gap; then delete the entry)
GAPS = {
    "cost_growth_cpu.csv": {"no commit or date; one run per point (the script now "
                            "records both and repeats each point)"},
    "teacher_screen.csv": {"no commit"},
    "vs_anomalib_cpu.csv": {"no commit"},
    "published.csv": {"no commit or date (the papers' numbers)"},
    "budget_histories_64px_demo.csv": {"rows from a dirty tree"},
    "funad_demo.csv": {"rows from a dirty tree"},
    "memorybank_demo.csv": {"rows from a dirty tree"},
    "teacher_candidates_demo.csv": {"rows from a dirty tree"},
    "teacher_comparison_lite2_demo.csv": {"rows from a dirty tree"},
    "budget_histories_budget_recomputed.csv": {"rows from a dirty tree (the "
                                               "64 px history's, recounted)"},
}
# (lines, sha256 prefix of those first lines) when last checked: a table only grows
FROZEN = {
    "benchmark_demo.csv": (337, "434774617ab36376"),
    # the budget ablation, complete: all 90 points, one clean commit (677d5c1); its
    # rows committed at 79 and 82 points checked unchanged cell by cell as it grew
    # (pine's points interleave in grid order)
    "budget_v3_demo.csv": (91, "84dac19bd64f2cd8"),
    "benchmark_demo_budget_recomputed.csv": (43, "7671cc38de2c97e3"),
    "budget_histories_64px_demo.csv": (362, "f7e3f56ec58ef364"),
    "budget_histories_budget_recomputed.csv": (3, "a6e999d17820dccd"),
    "budget_histories_demo.csv": (119, "e0caa0e90920e315"),
    "cdd_demo.csv": (32, "91c8be69035d6382"),
    "cost_growth_cpu.csv": (57, "1b33a276b2a16e24"),
    "funad_demo.csv": (15, "c453d685bda47e7e"),
    "funad_diagnosis_demo.csv": (55, "bb44aadc1d16ae82"),
    "funad_long_curve_demo.csv": (41, "4f6187ae6b663685"),
    "llb_demo.csv": (19, "fa6b74ddba087373"),
    # softgel's dirty row re-run at 5c99b03 and replaced (same AUROCs to the digit)
    "pilot_v3_demo.csv": (31, "5419ed2bcf89b346"),
    "precision_cpu.csv": (13, "f1506cf85a183357"),
    "llb_heldout_demo.csv": (97, "df761c74a6e0a2eb"),
    "llb_substeps_64px_demo.csv": (2401, "15a0d7b503997da9"),
    "memorybank_demo.csv": (19, "8c0fd335642f3ba9"),
    "memorybank_regimes_demo.csv": (211, "79c70ccff0d3a017"),
    "published.csv": (17, "ea1e9770eb0acc53"),
    "rd_regimes_demo.csv": (106, "349c780f20a14ffc"),
    "teacher_candidates_demo.csv": (33, "633a96b6ae90bc08"),
    "teacher_comparison_lite2_demo.csv": (17, "f90f0ba0477c6be4"),
    "teacher_screen.csv": (36, "a8aa0a9477b2a163"),
    "vs_anomalib_cpu.csv": (13, "4cebca6146c0b496"),
    # complete: all 3240 points of the paper grid, all ok (commits 6c71a46, a02c316,
    # abcbfa9 and 27cc067, whose method and data code differ only in where CDD
    # imports k-means); rewritten as it grew, in grid order, its earlier rows
    # checked unchanged cell by cell each time
    "rehearsal_paper_cpu.csv": (3241, "f4248221dd0a4c0b"),
    # complete: all 624 points of the readers' grid (BTAD, MPDD, Real-IAD), all ok,
    # one commit (859e50b)
    "rehearsal_readers_cpu.csv": (625, "e2fe37d5a033416d"),
}
# growing tables rewritten as they grow, which a byte prefix cannot freeze: the grid
# writes its table in grid order and widens the header when a new family's defect
# columns join (brick's and weave's at 188 rows, pine's knot at 235, tablet's dent at
# 325). Frozen instead by content: (cutoff, rows, sha256 prefix) of the rows dated up to
# the cutoff, each as its non-empty cells (`_rows_digest`), so no committed cell can
# change, vanish or appear while new rows join anywhere
FROZEN_ROWS = {
    # growing: 1574 of 2205 points (the rows of the previous entry checked unchanged
    # by that entry before it was replaced; so each time)
    "benchmark_v3_demo.csv": ("2026-12-08T03:37:35+00:00", 1574, "e711224671126a12"),
}
# the dress rehearsal's tables (`make rehearsal`: `python -m fuadnb rehearse --out
# runs/rehearsal --tables benchmarks/results`, issue 30), growing over sessions: their
# rows are points of the paper grid (or of the readers' grid) with the rehearsal's
# override, in grid order; their numbers are not results
REHEARSAL = {"rehearsal_paper_cpu.csv": "paper", "rehearsal_readers_cpu.csv": "readers"}
COMPLETE = set(REHEARSAL)   # every point of its grid, not a part
RECIPES = {**GRID, **GROWING, **GRID_BEFORE_POINTS, **SCRIPTS, **BY_HAND,
           **REHEARSAL}


def test_every_committed_table_has_a_recipe():
    files = {p.name for p in RESULTS.iterdir() if p.is_file()}
    assert files == set(RECIPES), "name the recipe of every table"
    assert set(FROZEN) | set(FROZEN_ROWS) == {f for f in files if f.endswith(".csv")}
    assert not set(FROZEN) & set(FROZEN_ROWS)
    for name in GRID_BEFORE_POINTS.values():
        assert (GRIDS / f"{name}.yaml").is_file()


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_committed_rows_are_never_rewritten(name):
    """The first lines of each table are what they were: rows may be added, never
    changed (a recomputed column goes in a new file, a re-run in new rows). A table
    replaced by a re-run of its recipe updates its entry here, in the same commit."""
    lines, digest = FROZEN[name]
    head = b"".join((RESULTS / name).read_bytes().splitlines(keepends=True)[:lines])
    assert hashlib.sha256(head).hexdigest()[:16] == digest, name


def _rows_digest(text: str, cutoff: str) -> tuple[int, str]:
    """How many rows of a CSV table are dated up to `cutoff`, and the sha256 prefix of
    those rows, each as its sorted non-empty cells (so neither row nor column order,
    nor a column that is empty in them, changes it)."""
    rows = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    kept = rows[rows.date <= cutoff].sort_values("point")
    cells = ["\x1f".join(f"{c}={v}" for c, v in sorted(r.items()) if v != "")
             for r in kept.to_dict("records")]
    return len(kept), hashlib.sha256("\n".join(cells).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(FROZEN_ROWS))
def test_committed_rows_of_a_growing_table_are_never_rewritten(name):
    cutoff, count, digest = FROZEN_ROWS[name]
    assert _rows_digest((RESULTS / name).read_text(), cutoff) == (count, digest), name


@pytest.mark.parametrize("name", sorted(FROZEN_ROWS))
def test_a_table_frozen_by_its_rows_is_still_growing(name):
    """Frozen by content only while it grows: the commit that completes a table
    freezes it by bytes (`FROZEN`) and names it complete, so its finished state
    cannot drift."""
    rows = pd.read_csv(RESULTS / name)
    points = len(grids.named_points(GRIDS / f"{GROWING[name]}.yaml"))
    assert rows.point.nunique() < points, (
        f"{name} holds all {points} points: move it from FROZEN_ROWS to FROZEN")


def test_the_row_freeze_sees_an_edit_but_not_growth():
    """Planted tables: reordering, widening and new later rows keep the digest; an
    edited cell, a filled empty cell, a lost row or a re-dated row change it."""
    base = ("point,date,auroc,defect.dent\n" "b,2026-01-02,0.7,\n"
            "a,2026-01-01,0.6,0.5\n")
    frozen = _rows_digest(base, "2026-01-02")
    assert frozen[0] == 2
    grown = ("point,extra,defect.dent,date,auroc\n" "a,,0.5,2026-01-01,0.6\n"
             "c,1,,2026-01-03,0.9\n" "b,,,2026-01-02,0.7\n")
    assert _rows_digest(grown, "2026-01-02") == frozen
    for edited in (base.replace("0.7", "0.71"), base.replace("0.7,", "0.7,0.1"),
                   base.replace("a,2026-01-01,0.6,0.5\n", ""),
                   base.replace("2026-01-02", "2026-01-05")):
        assert _rows_digest(edited, "2026-01-02") != frozen


def _same(a, b) -> bool:
    """A table cell equals a grid value (2 == 2.0 == "2"; NaN == "" == None)."""
    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        v = yaml.safe_load(v) if isinstance(v, str) else v
        return round(float(v), 9) if isinstance(v, (int, float)) and not isinstance(
            v, bool) else (v if v != "" else None)
    return norm(a) == norm(b)


@pytest.mark.parametrize("table", sorted(GRID))
def test_a_grid_table_is_its_grid_files_points_with_their_parameters(table):
    rows = pd.read_csv(RESULTS / table)
    named = grids.named_points(GRIDS / f"{GRID[table]}.yaml")
    assert rows.point.tolist() == [n for n, _ in named]
    for row, (_, params) in zip(rows.to_dict("records"), named, strict=True):
        for key, value in params.items():
            assert _same(row[f"param.{key}"], value), (table, row["point"], key)
    for column in PROVENANCE:
        assert rows[column].notna().all(), (table, column)


@pytest.mark.parametrize("table", sorted(GROWING))
def test_a_growing_grid_table_holds_grid_points_in_grid_order(table):
    rows = pd.read_csv(RESULTS / table)
    named = dict(grids.named_points(GRIDS / f"{GROWING[table]}.yaml"))
    order = list(named)
    assert set(rows.point) <= set(order)
    assert rows.point.tolist() == sorted(rows.point, key=order.index)
    for row in rows.to_dict("records"):
        for key, value in named[row["point"]].items():
            assert _same(row[f"param.{key}"], value), (table, row["point"], key)
    ok = rows[rows.status == "ok"]
    for column in PROVENANCE:
        assert ok[column].notna().all(), (table, column)


@functools.cache
def _rehearsal_points(name: str) -> dict[str, dict]:
    """The named points of rehearsal grid `name` with the override `make rehearsal`
    gives them (stand-ins under runs/rehearsal, relative to the cell's folder)."""
    import tempfile

    from fuadnb import rehearsal

    _, fixed, points = grids.load_grid(rehearsal.paper_grid())
    methods = list(dict.fromkeys(p["METHOD"] for p in points))
    out = REPO / "runs" / "rehearsal"
    every, per = rehearsal.overrides(out / "data", out / "runs", methods)
    if name == "paper":
        return dict(grids.named_points(rehearsal.paper_grid(), every, per))
    with tempfile.TemporaryDirectory() as tmp:
        path = rehearsal.readers_grid(Path(tmp) / "grid.yaml", methods, dict(fixed))
        return dict(grids.named_points(path, every, per))


@pytest.mark.parametrize("table", sorted(REHEARSAL))
def test_a_rehearsal_table_holds_its_grids_points_with_the_override(table):
    rows = pd.read_csv(RESULTS / table)
    named = _rehearsal_points(REHEARSAL[table])
    order = list(named)
    assert set(rows.point) <= set(order)
    if table in COMPLETE:
        assert set(rows.point) == set(order), f"{len(rows)} of {len(order)} points"
    assert rows.point.tolist() == sorted(rows.point, key=order.index)
    assert (rows.status == "ok").all()
    for row in rows.to_dict("records"):
        for key, value in named[row["point"]].items():
            assert _same(row[f"param.{key}"], value), (table, row["point"], key)
    for column in PROVENANCE:
        assert rows[column].notna().all(), (table, column)
    assert set(rows.profile) == {"paper"} and set(rows["cfg.image_size"]) == {64}


@pytest.mark.parametrize("table", sorted(GRID_BEFORE_POINTS))
def test_an_older_grid_table_records_its_provenance(table):
    rows = pd.read_csv(RESULTS / table)
    for column in PROVENANCE:
        assert rows[column].notna().all(), (table, column)


@pytest.mark.parametrize("table", sorted(SCRIPTS))
def test_a_script_table_names_its_script_and_has_its_columns(table):
    command, columns = SCRIPTS[table]
    script, *flags = command.split()
    source = (REPO / script).read_text()
    assert (table in source or Path(table).stem.split("_demo")[0] in source
            or table in command), command
    assert all(f'"{f}"' in source for f in flags if f.startswith("--")), command
    if table.endswith(".csv"):
        assert set(columns) <= set(pd.read_csv(RESULTS / table).columns), table


def test_the_known_gaps_are_exactly_the_tables_that_have_them():
    found = {}
    for name in [*FROZEN, *FROZEN_ROWS]:
        rows = pd.read_csv(RESULTS / name)
        gaps = set()
        if "commit" not in rows:
            gaps.add("no commit")
        elif rows.commit.astype(str).str.contains("dirty").any():
            gaps.add("rows from a dirty tree")
        if "date" not in rows and "commit" not in rows:
            gaps = {"no commit or date"}
        if gaps:
            found[name] = gaps
    assert set(found) == set(GAPS)
    for name, gaps in found.items():
        assert {g.split(" (")[0].split(";")[0] for g in GAPS[name]} == gaps, name


def test_benchmark_demo_keeps_what_its_commit_recorded_for_rde():
    """9250eb0 rewrote the RD-E rows' images_seen and train images/s of
    benchmark_demo.csv; the rows are back to what commit a0308e2 produced, and the
    recount lives in benchmark_demo_budget_recomputed.csv, which chapter 08 reads."""
    rows = pd.read_csv(RESULTS / "benchmark_demo.csv")
    rde = rows[rows.method == "rde"].set_index(["point", "commit"])
    assert set(rde.images_seen) <= {3920, 3968}                  # steps x 16
    assert (rde.images_seen == rde.steps * rde["cfg.batch_size"]).all()
    recount = pd.read_csv(RESULTS / "benchmark_demo_budget_recomputed.csv"
                          ).set_index(["point", "commit"])
    assert sorted(recount.index) == sorted(rde.index)
    assert (recount.images_seen_recorded == rde.images_seen.reindex(
        recount.index)).all()
    assert (recount.images_seen < recount.images_seen_recorded).all()
    assert recount.train_images_per_second.to_numpy() == pytest.approx(
        (recount.images_seen / rde.fit_seconds.reindex(recount.index)).to_numpy())
    chapter = (REPO / "notebooks" / "08_benchmark.ipynb").read_text()
    assert "benchmark_demo_budget_recomputed.csv" in chapter   # said where it lives


def _all_ok_from_one_clean_commit(rows: pd.DataFrame) -> None:
    assert (rows.status == "ok").all()
    assert rows.commit.nunique() == 1 and "dirty" not in rows.commit.iloc[0]


def test_the_third_edition_comes_from_one_clean_commit():
    """Issue 31: every row of the third edition's table from a clean commit, all
    from the same method and data code. The grid runs from one commit (281aa6e, a
    worktree kept there while main moves on), so one commit is the check; a row
    from another commit needs the package's and the cell's code shown equal
    first."""
    rows = pd.read_csv(RESULTS / "benchmark_v3_demo.csv")
    _all_ok_from_one_clean_commit(rows)
    assert rows.fuadnb.nunique() == rows.torch.nunique() == 1


def test_the_budget_ablation_is_one_clean_commit_that_reproduces_the_third_edition():
    """Issue 31: the budget ablation (its grid file came after the third edition's
    commit) runs from one clean commit of its own. Its 1x RD points and its memory
    banks' points are the third edition's points too: wherever the third edition's
    table holds one, the two rows have the same run key and inputs and the same
    AUROCs to the last digit, so both commits' method and data code made the same
    models and scores."""
    ablation, v3 = (pd.read_csv(RESULTS / name, dtype=str, keep_default_na=False)
                    for name in ("budget_v3_demo.csv", "benchmark_v3_demo.csv"))
    _all_ok_from_one_clean_commit(ablation)
    keys = ["method", "category", "regime", "noise_ratio", "seed", "steps",
            "cfg.image_size"]
    both = ablation.merge(v3, on=keys, suffixes=("", "_v3"))
    assert len(both) >= 30 and set(both.method) == {"rd", "patchcore", "softpatch"}
    for column in ("run_key", "inputs_key", "image_auroc", "pixel_auroc",
                   "pixel_aupro", "detection_auroc"):
        assert (both[column] == both[f"{column}_v3"]).all(), column
