"""Anonymised models: no raw user id in the model directory; recommend with the key."""
from __future__ import annotations

import hashlib
import hmac
import json
import stat
import types

import numpy as np
import pytest
from test_recsys_cli import FAST, invoke, ok

from conftest import FAKE_OPTIONS, make_catalog, one_line_error
from mmrec.privacy import hash_id, load_key

N_ITEMS, N_USERS = 30, 12
# distinctive ids: a grep for "u1" would match any hex hash by chance, these cannot
RAW_USERS = [f"person.{u}@example.org" for u in range(N_USERS)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    catalog = make_catalog(root / "cat", [{"id": f"i{i}", "title": f"Film {i}"} for i in range(N_ITEMS)])
    ok(invoke("encode", catalog, "--out", root / "store", *FAKE_OPTIONS))
    rng = np.random.default_rng(0)
    lines = ["user,item,rating,timestamp"]
    for u, raw in enumerate(RAW_USERS):
        for t, i in enumerate(rng.choice(N_ITEMS, size=6, replace=False)):
            lines.append(f"{raw},i{i},{1 + (u + t) % 5},{1000 + 7 * t + u}")
    inter = root / "inter.csv"
    inter.write_text("\n".join(lines) + "\n")
    key = root / "secret" / "mmrec.key"
    out = root / "anon"
    ok(invoke("train", "--store", root / "store", "--interactions", inter, "--out", out,
              "--anonymize", "--key", key, *FAST, "--json"))
    return types.SimpleNamespace(root=root, store=root / "store", inter=inter, key=key, out=out)


def test_key_file_is_created_private_and_reused(world):
    key = world.key.read_bytes()
    assert len(key) == 32
    assert stat.S_IMODE(world.key.stat().st_mode) == 0o600
    assert load_key(world.key, create=True) == key  # an existing key is never replaced


def test_no_raw_user_id_anywhere_in_the_model(world):
    files = [p for p in world.out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"users.json", "config.json", "interactions.npz"}
    for path in files:
        data = path.read_bytes()
        for raw in RAW_USERS:
            assert raw.encode() not in data, f"{raw} in {path.name}"
            assert raw.encode("utf-32-le") not in data, f"{raw} (numpy unicode) in {path.name}"
    users = json.loads((world.out / "users.json").read_text())
    key = world.key.read_bytes()
    expected = hmac.new(key, RAW_USERS[0].encode(), hashlib.sha256).hexdigest()
    assert expected in users and len(users) == N_USERS
    config = json.loads((world.out / "config.json").read_text())
    assert config["privacy"]["anonymized"] is True
    assert key.hex() not in (world.out / "config.json").read_text()


def test_recommend_with_the_key_answers_as_the_raw_model(world):
    """Same data, same seed: hashing ids changes no row, so the same recommendations."""
    raw_model = world.root / "raw"
    ok(invoke("train", "--store", world.store, "--interactions", world.inter, "--out", raw_model,
              *FAST, "--json"))
    for raw in RAW_USERS[:3]:
        anon = json.loads(ok(invoke("recommend", world.out, "--user", raw, "--key", world.key,
                                    "-k", "5", "--json")).stdout)["results"]
        plain = json.loads(ok(invoke("recommend", raw_model, "--user", raw, "-k", "5",
                                     "--json")).stdout)["results"]
        assert [h["id"] for h in anon] == [h["id"] for h in plain]
    # the stored hash is not a way in: it is hashed again, and unknown
    hashed = hash_id(world.key.read_bytes(), RAW_USERS[0])
    one_line_error(invoke("recommend", world.out, "--user", hashed, "--key", world.key), "unknown user")


def test_recommend_without_or_with_a_wrong_key_is_one_line(world, tmp_path):
    one_line_error(invoke("recommend", world.out, "--user", RAW_USERS[0]), "anonymised")
    other = tmp_path / "other.key"
    load_key(other, create=True)
    one_line_error(invoke("recommend", world.out, "--user", RAW_USERS[0], "--key", other),
                   "not the key")
    one_line_error(invoke("recommend", world.out, "--user", "nobody@example.org", "--key", world.key),
                   "unknown user")


def test_a_history_needs_no_key(world):
    hits = json.loads(ok(invoke("recommend", world.out, "--history", "i1,i2", "-k", "3",
                                "--json")).stdout)["results"]
    assert len(hits) == 3


def test_key_inside_the_model_directory_is_refused(world, tmp_path):
    out = tmp_path / "model"
    result = invoke("train", "--store", world.store, "--interactions", world.inter, "--out", out,
                    "--anonymize", "--key", out / "key", *FAST)
    one_line_error(result, "inside the model directory")
    assert not out.exists()
    one_line_error(invoke("train", "--store", world.store, "--interactions", world.inter,
                          "--out", out, "--anonymize", *FAST), "--anonymize and --key")


def test_update_hashes_new_users_with_the_key(world, tmp_path):
    """`update` on an anonymised model: new raw ids are hashed before anything is written,
    the new user is then served by its raw id and the key, and a missing key is refused."""
    newcomer = "new.person@example.org"
    new = tmp_path / "new.csv"
    new.write_text("user,item,rating,timestamp\n"
                   + "".join(f"{newcomer},i{i},5,{5000 + i}\n" for i in (1, 2, 3)))
    one_line_error(invoke("update", world.out, "-i", new, "--out", tmp_path / "m"), "anonymised")
    ok(invoke("update", world.out, "-i", new, "--key", world.key, "--out", tmp_path / "m"))
    for path in (p for p in (tmp_path / "m").rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert newcomer.encode() not in data and newcomer.encode("utf-32-le") not in data, path
    users = json.loads((tmp_path / "m" / "users.json").read_text())
    assert hash_id(world.key.read_bytes(), newcomer) in users
    found = json.loads(ok(invoke("recommend", tmp_path / "m", "--user", newcomer, "--key",
                                 world.key, "-k", "3", "--json")).stdout)["results"]
    assert len(found) == 3 and not {"i1", "i2", "i3"} & {h["id"] for h in found}
