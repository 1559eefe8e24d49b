"""Interactions readers: CSV, TSV, JSONL and RecBole .inter files, and every bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmrec.catalog import read_interactions
from mmrec.errors import CatalogError

ROWS = [
    {"user": "u1", "item": "a", "rating": 5, "timestamp": 100},
    {"user": "u1", "item": "b", "rating": 2, "timestamp": 50},
    {"user": "u2", "item": "a", "rating": 4, "timestamp": 70},
    {"user": "u2", "item": "zz", "rating": 5, "timestamp": 80},
]


def write(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if fmt == "tsv" else ","
        keys = list(rows[0])
        path.write_text(sep.join(keys) + "\n" + "".join(
            sep.join(str(r.get(k, "")) for k in keys) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_formats_read_alike_and_unknown_items_are_counted(tmp_path, fmt):
    found = read_interactions(write(tmp_path / f"i.{fmt}", ROWS, fmt), known_items={"a", "b"})
    assert found.users == ["u1", "u1", "u2"]
    assert found.items == ["a", "b", "a"]
    np.testing.assert_array_equal(found.ratings, [5, 2, 4])
    np.testing.assert_array_equal(found.timestamps, [100, 50, 70])
    assert found.unknown_items == 1 and found.unknown_examples == ["zz"]
    assert found.rows == [2, 3, 4] if fmt != "jsonl" else [1, 2, 3]


def test_recbole_atomic_file_is_read_as_it_is(tmp_path):
    path = tmp_path / "ml.inter"
    path.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                    "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    found = read_interactions(path)
    assert found.users == ["196", "186"] and found.items == ["242", "302"]
    np.testing.assert_array_equal(found.timestamps, [881250949, 891717742])


def test_min_rating_keeps_only_high_ratings(tmp_path):
    found = read_interactions(write(tmp_path / "i.csv", ROWS, "csv"), min_rating=4)
    assert found.items == ["a", "a", "zz"] and found.below_min_rating == 1


def test_min_rating_needs_a_rating_column(tmp_path):
    rows = [{"user": "u", "item": "a"}]
    with pytest.raises(CatalogError, match="no rating column"):
        read_interactions(write(tmp_path / "i.csv", rows, "csv"), min_rating=3)


def test_column_names_are_configurable(tmp_path):
    rows = [{"who": "u1", "what": "a", "stars": 3, "when": "2024-01-02T03:04:05Z"}]
    found = read_interactions(write(tmp_path / "i.csv", rows, "csv"), user_field="who",
                              item_field="what", rating_field="stars", timestamp_field="when")
    assert found.users == ["u1"] and found.ratings[0] == 3
    assert found.timestamps[0] == pytest.approx(1704164645.0)
    with pytest.raises(CatalogError, match="no user column 'uid'; columns are: stars, what, when, who"):
        read_interactions(tmp_path / "i.csv", user_field="uid")


def test_missing_user_column_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="no user column"):
        read_interactions(write(tmp_path / "i.csv", [{"who": "u", "item": "a"}], "csv"))


def test_bad_rows_become_problems_and_repeats_are_dropped(tmp_path):
    rows = [{"user": "u1", "item": "a", "rating": "x", "timestamp": 1},
            {"user": "", "item": "a", "rating": 1, "timestamp": 1},
            {"user": "u1", "item": "a", "rating": 1, "timestamp": "not a time"},
            {"user": "u1", "item": "b", "rating": 1, "timestamp": 5},
            {"user": "u1", "item": "b", "rating": 1, "timestamp": 9}]
    found = read_interactions(write(tmp_path / "i.csv", rows, "csv"))
    assert [(p.row, p.reason) for p in found.problems] == [
        (2, "unreadable rating 'x'"), (3, "missing user id"), (4, "unreadable timestamp 'not a time'")]
    assert found.items == ["b"] and found.timestamps[0] == 5 and found.duplicates == 1


def test_no_rating_or_time_columns_give_nan(tmp_path):
    found = read_interactions(write(tmp_path / "i.csv", [{"user": "u", "item": "a"}], "csv"))
    assert np.isnan(found.ratings[0]) and np.isnan(found.timestamps[0])


@pytest.mark.parametrize(("content", "message"), [
    (None, "interactions file not found"),
    ("", "no interactions"),
    ("user,item\n", "no interactions"),
    ("user,item\nu1,zz\nu2,yy\n", r"none of the 2 interactions is on an item of the store \(e.g. 'zz', 'yy'\)"),
    ("user,item\n,a\n", "no usable interaction"),
])
def test_unusable_files_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "i.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CatalogError, match=message):
        read_interactions(path, known_items={"a"})


def test_unknown_format(tmp_path):
    (tmp_path / "i.parquet").write_text("x")
    with pytest.raises(CatalogError, match="unknown interactions format"):
        read_interactions(tmp_path / "i.parquet")
