"""Interactions as columns: integer codes into vocabularies, the same from the block-wise
pyarrow reader as from the row-by-row reader, with no Python string per row."""
from __future__ import annotations

import random

import numpy as np
import pytest

import mmrec.arrow_csv as arrow_csv
import mmrec.catalog as catalog
from mmrec.catalog import read_interactions
from mmrec.privacy import anonymize, hash_id
from mmrec.recsys.data import index_interactions

TRICKY = (
    "user,item,rating,timestamp\n"
    'u2,zz,5,2024-01-02T00:00:00Z\n'        # unknown item: u2's first row is not kept
    'u3,b,4,2024-01-03T10:00:00+02:00\n'
    '"u,2",a,5,2024-01-01\n'                # a quoted id holding the delimiter
    'u2,a, 4 ,2024-01-04T00:00:00\n'        # spaces around a rating
    'u3,b,5,2024-01-05T00:00:00Z\n'         # repeat of (u3, b)
    '\n'
    'u2,c,1,2024-01-06T00:00:00Z\n'         # below --min-rating
    ',a,5,2024-01-07T00:00:00Z\n'           # missing user
    'u4," b ",x,2024-01-08T00:00:00Z\n'     # unreadable rating
    'u4,c,3,yesterday\n'                    # unreadable timestamp
    'u5,"a",3,1704067200\n'
)
KNOWN = ["c", "b", "a", "d"]  # store order: codes are rows of this list


def _columns(found):
    return (found.user_ids, found.user_codes.tolist(), found.item_ids, found.item_codes.tolist(),
            found.line_numbers.tolist(), found.ratings.tolist(), found.timestamps.tolist(),
            found.summary())


def _row_reader(monkeypatch):
    monkeypatch.setattr(catalog, "_arrow_table", lambda path: None)


@pytest.mark.parametrize("known", [KNOWN, None])
def test_both_readers_give_the_same_columns_on_a_tricky_file(tmp_path, monkeypatch, known):
    path = tmp_path / "i.csv"
    path.write_text(TRICKY)
    fast = read_interactions(path, known_items=known, min_rating=2)
    assert fast.users == ["u3", "u,2", "u2", "u5"] or known is None
    assert [(p.row, p.reason) for p in fast.problems] == [
        (9, "missing user id"), (10, "unreadable rating 'x'"), (11, "unreadable timestamp 'yesterday'")]
    assert (fast.duplicates, fast.below_min_rating) == (1, 1)
    assert fast.unknown_items == (1 if known else 0)
    _row_reader(monkeypatch)
    assert _columns(fast) == _columns(read_interactions(path, known_items=known, min_rating=2))


def test_codes_are_store_rows_and_users_number_by_first_kept_appearance(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text(TRICKY)
    found = read_interactions(path, known_items=KNOWN, min_rating=2)
    assert found.item_ids == KNOWN
    assert found.items == ["b", "a", "a", "a"]
    assert found.item_codes.tolist() == [KNOWN.index(i) for i in found.items]
    assert found.user_ids == list(dict.fromkeys(found.users)) == ["u3", "u,2", "u2", "u5"]
    assert found.rows == [3, 4, 5, 12]
    assert found.timestamps[0] == pytest.approx(1704268800.0)  # +02:00 taken into account


def _many(path, n=4000, seed=5):
    rng = random.Random(seed)
    lines = ["user,item,rating,timestamp"]
    for k in range(n):
        rating = rng.choice(["1", "3", "5", "", "bad"])
        lines.append(f"u{rng.randrange(150)},i{rng.randrange(120)},{rating},{k}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_blocks_share_one_vocabulary(tmp_path, monkeypatch):
    """Small blocks: ids, repeats and problem lines that span blocks come out as in one block."""
    path = _many(tmp_path / "i.csv")
    known = [f"i{n}" for n in range(100)]
    whole = read_interactions(path, known_items=known, min_rating=2)
    monkeypatch.setattr(arrow_csv, "BLOCK", 2048)
    blocks = list(arrow_csv.read_batches(path, ","))
    assert len(blocks) > 20
    split = read_interactions(path, known_items=known, min_rating=2)
    assert _columns(split) == _columns(whole)
    assert split.duplicates and split.unknown_items and split.problems[-1].row > 3000
    _row_reader(monkeypatch)
    assert _columns(read_interactions(path, known_items=known, min_rating=2)) == _columns(whole)


def test_a_malformed_row_in_a_late_block_goes_to_the_row_reader(tmp_path, monkeypatch):
    path = _many(tmp_path / "i.csv")
    lines = path.read_text().splitlines()
    lines[3500] += ",extra"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(arrow_csv, "BLOCK", 2048)
    found = read_interactions(path)
    assert (3501, "1 value(s) beyond the header's columns") in [(p.row, p.reason) for p in found.problems]
    assert 3501 not in found.rows and found.rows[-1] == 4001


def test_the_train_path_makes_no_python_string_per_row(tmp_path):
    path = _many(tmp_path / "i.csv")
    found = read_interactions(path, known_items=[f"i{n}" for n in range(120)])
    user_ids, users, items, _ = index_interactions(found, found.item_ids)
    assert "users" not in vars(found) and "items" not in vars(found)  # never materialised
    assert user_ids == list(dict.fromkeys(found.users))
    assert [user_ids[u] for u in users] == sorted(found.users, key=user_ids.index)
    assert np.array_equal(np.sort(items), np.sort([int(i[1:]) for i in found.items]))


def test_index_interactions_maps_another_item_order(tmp_path):
    path = _many(tmp_path / "i.csv", n=300)
    found = read_interactions(path)
    other = sorted(found.item_ids, reverse=True)
    _, users, items, _ = index_interactions(found, other)
    pairs = {(found.user_ids[u], other[i]) for u, i in zip(users, items, strict=True)}
    assert pairs == set(zip(found.users, found.items, strict=True))


def test_anonymize_hashes_the_vocabulary_and_keeps_the_rows(tmp_path):
    path = tmp_path / "i.csv"
    path.write_text(TRICKY)
    found = read_interactions(path, known_items=KNOWN, min_rating=2)
    hidden = anonymize(found, b"k" * 32)
    assert hidden.users == [hash_id(b"k" * 32, u) for u in found.users]
    assert hidden.items == found.items and hidden.user_codes is found.user_codes
