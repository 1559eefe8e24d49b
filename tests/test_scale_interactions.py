"""The pyarrow interactions reader gives what the row-by-row reader gives, problems
included, and hands back to it the files it cannot number exactly."""
from __future__ import annotations

import random

import numpy as np
import pytest

import mmrec.catalog as catalog
from mmrec.catalog import read_interactions


def _same(a, b):
    assert (a.users, a.items, a.rows) == (b.users, b.items, b.rows)
    np.testing.assert_array_equal(a.ratings, b.ratings)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.summary() == b.summary()


def _messy(path, sep=",", iso=False):
    rng = random.Random(3)
    lines = [sep.join(["user", "item", "rating", "timestamp"])]
    for n in range(3000):
        user, item = f"u{rng.randrange(200)}", f"i{rng.randrange(300)}"
        rating = rng.choice(["1", "4", "5", " 3 ", "", "x", "nan", "4.5"])
        stamp = f"2024-01-{1 + n % 28:02d}T00:00:00Z" if iso else str(1000 + n)
        if n % 97 == 0:
            user = ""
        lines.append(sep.join([user, item, rating, stamp]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("name", "sep", "iso"), [("i.csv", ",", False), ("i.tsv", "\t", True)])
def test_the_fast_reader_matches_the_row_reader(tmp_path, monkeypatch, name, sep, iso):
    path = _messy(tmp_path / name, sep, iso)
    known = {f"i{n}" for n in range(250)}
    fast = read_interactions(path, known_items=known, min_rating=2)
    assert fast.problems and fast.unknown_items and fast.duplicates and fast.below_min_rating
    monkeypatch.setattr(catalog, "_arrow_table", lambda path: None)
    _same(fast, read_interactions(path, known_items=known, min_rating=2))


def test_a_clean_file_never_reaches_the_row_reader(tmp_path, monkeypatch):
    path = _messy(tmp_path / "i.csv")

    def refuse(*args):
        raise AssertionError("row-by-row reader used")

    monkeypatch.setattr(catalog, "_row_interactions", refuse)
    assert len(read_interactions(path)) > 1000


def test_rows_after_a_blank_line_keep_their_own_line_number(tmp_path):
    """The csv module numbers the row after a blank line by the blank line; the fast
    reader counts physical lines, so a problem points at the line that has it."""
    path = tmp_path / "i.csv"
    path.write_text("user,item,rating\nu1,a,1\n\nu2,b,x\n")
    found = read_interactions(path)
    assert found.rows == [2]
    assert [(p.row, p.reason) for p in found.problems] == [(4, "unreadable rating 'x'")]


def test_a_malformed_row_is_reported_by_its_line_as_before(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text("user,item\nu1,a\nu2,b,extra\nu3,c\n")
    found = read_interactions(path)
    assert found.items == ["a", "c"] and found.rows == [2, 4]
    assert [(p.row, p.reason) for p in found.problems] == [
        (3, "1 value(s) beyond the header's columns")]
