"""What chapter 08 shows of a table (`fuadnb.chapter_table`): the rows of the
book's dataset, or the table's only dataset named as such; what a small table
cannot show."""

from pathlib import Path

import pandas as pd
import pytest

from fuadnb import chapter_table

COMMITTED = (Path(__file__).resolve().parents[2] / "benchmarks" / "results"
             / "benchmark_demo.csv")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return pd.read_csv(COMMITTED)


def test_the_books_dataset_is_shown_without_a_note(table):
    shown = chapter_table.pick(table, "synthetic", source="t.csv")
    assert shown.dataset == "synthetic" and shown.note == ""
    assert len(shown.rows) == (table.status == "ok").sum()
    assert chapter_table.pick(table, "").dataset == "synthetic"


def test_another_dataset_shows_the_table_and_says_whose(table):
    shown = chapter_table.pick(table, "mvtec_ad", source="t.csv")
    assert shown.dataset == "synthetic" and len(shown.rows) == len(table)
    assert "synthetic benchmark's" in shown.note and "not `mvtec_ad`'s" in shown.note
    assert "-p BENCHMARK=" in shown.note and "`t.csv`" in shown.note
    visa = chapter_table.pick(table.assign(dataset="visa"), "mvtec_ad")
    assert visa.dataset == "visa" and "`visa`'s results" in visa.note


def test_a_table_of_two_datasets_is_never_pooled_nor_guessed(table):
    both = pd.concat([table, table.assign(dataset="visa")])
    for asked in ("", "mvtec_ad"):
        with pytest.raises(ValueError, match="datasets|holds no rows"):
            chapter_table.pick(both, asked)
    assert len(chapter_table.pick(both, "visa").rows) == len(table)
    with pytest.raises(ValueError, match="no finished"):
        chapter_table.pick(table.assign(status="failed"), "synthetic")


def test_limits_name_what_a_small_table_cannot_show(table):
    assert chapter_table.limits(table, "rd") == []
    one = table[(table.method == "rd") & (table.seed == 111) & (table.category
                == "grass") & (table.noise_ratio == 0.1) & (table.regime == "iid")]
    said = " ".join(chapter_table.limits(one, "rd"))
    for limit in ("one method", "no clean run", "one category", "one seed"):
        assert limit in said
    clean = " ".join(chapter_table.limits(table[table.noise_ratio == 0], "rd"))
    assert "no contaminated run" in clean and "no clean run" not in clean
    assert "no run of the baseline" in " ".join(
        chapter_table.limits(table[table.method == "cdd"], "rd"))
