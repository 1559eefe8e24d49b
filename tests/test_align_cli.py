"""`mmrec align`, aligner search and retrieval evaluation through the CLI (fake encoders)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FAKE_OPTIONS, make_catalog, one_line_error, write_png, write_wav
from mmrec.cli.main import app

runner = CliRunner()
N_ITEMS = 30


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """30 items: every one has text and an image, every other one also a sound."""
    root = tmp_path_factory.mktemp("catalog")
    (root / "img").mkdir()
    (root / "snd").mkdir()
    rows = []
    for i in range(N_ITEMS):
        write_png(root / "img" / f"{i}.png", (8 * i, 255 - 8 * i, (40 * i) % 256))
        row = {"id": f"item{i}", "title": f"thing number {i}", "image": f"img/{i}.png",
               "colour": f"c{i}"}
        if i % 2 == 0:
            write_wav(root / "snd" / f"{i}.wav", 200.0 + 30 * i)
            row["audio"] = f"snd/{i}.wav"
        rows.append(row)
    out = root / "store"
    result = runner.invoke(app, ["encode", str(make_catalog(root, rows)), "--out", str(out),
                                 *FAKE_OPTIONS])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def aligner(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned") / "aligner"
    result = runner.invoke(app, ["align", str(store), "--out", str(out), "--steps", "60",
                                 "--batch-size", "16", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def run_ok(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def run_fails(*args):
    return one_line_error(runner.invoke(app, [str(a) for a in args]))


def test_align_writes_a_complete_aligner(aligner):
    out, report = aligner
    assert report["modalities"] == ["text", "image", "audio"]
    assert report["pivot"] == "text" and report["dim"] == 8 and report["head"] == "linear"
    assert report["init"] == "scratch"  # the shipped heads are for other encoders
    assert report["items"] == N_ITEMS and report["val_items"] == 6 and report["train_items"] == 24
    assert 0 <= report["best_step"] <= report["steps"] <= 60
    assert report["bridge_weight"] is None  # the bridge needs the offline default encoders
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "mmrec-aligner"
    assert config["config"]["val_split"] == 0.2 and config["config"]["steps"] == 60
    assert config["store"]["encoders"]["image"]["encoder"].endswith("FakeImage")
    assert json.loads((out / "manifest.json").read_text())["format"] == "mmrec-store"
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 6 and not set(split["val"]) & set(split["train"])
    for name in ["heads.safetensors", "index.faiss", "index-text.faiss", "index-audio.faiss",
                 "vectors/fused.npy", "vectors/image.npy", "vectors/audio.mask.npy", "items.jsonl"]:
        assert (out / name).is_file(), name
    assert np.load(out / "vectors" / "audio.mask.npy").sum() == N_ITEMS // 2


def test_fused_vectors_are_unit_rows_of_every_item(aligner):
    import mmrec.alignment

    ids, fused = mmrec.alignment.fused_vectors(aligner[0])
    assert len(ids) == N_ITEMS and fused.shape == (N_ITEMS, 8) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_aligner(store, aligner, tmp_path):
    out = tmp_path / "again"
    run_ok("align", store, "--out", out, "--steps", "60", "--batch-size", "16")
    np.testing.assert_array_equal(np.load(out / "vectors" / "fused.npy"),
                                  np.load(aligner[0] / "vectors" / "fused.npy"))


def test_text_search_finds_the_item_with_that_text(aligner):
    out, _ = aligner
    result = run_ok("recommend", out, "--text", "thing number 7", "--modality", "text", "-k", "3",
                    "--json")
    hits = json.loads(result.stdout)["results"]
    assert [h["id"] for h in hits][0] == "item7" and hits[0]["score"] == pytest.approx(1.0)
    assert hits[0]["title"] == "thing number 7" and hits[0]["matched"] == "text"
    assert hits[0]["metadata"] == {"colour": "c7"}
    table = run_ok("recommend", out, "--text", "thing number 7", "-k", "2").stdout
    assert "item7" in table and "matched" in table


def test_item_query_fuses_several_items_and_leaves_them_out(aligner):
    out, _ = aligner
    one = json.loads(run_ok("recommend", out, "--item", "item3", "-k", "5", "--json").stdout)
    assert len(one["results"]) == 5 and "item3" not in [h["id"] for h in one["results"]]
    both = json.loads(run_ok("recommend", out, "--item", "item3", "--item", "item4", "-k", "28",
                             "--json").stdout)["results"]
    assert {h["id"] for h in both} == {f"item{i}" for i in range(N_ITEMS)} - {"item3", "item4"}
    assert all(h["matched"] in {"text", "image", "audio"} for h in both)
    sounds = json.loads(run_ok("recommend", out, "--item", "item4", "--modality", "audio", "-k", "20",
                               "--json").stdout)["results"]
    # every item with a sound but item4 itself
    assert {h["matched"] for h in sounds} == {"audio"} and len(sounds) == N_ITEMS // 2 - 1


def test_image_and_audio_queries(aligner, store):
    out, _ = aligner
    image = store.parent / "img" / "5.png"
    hits = json.loads(run_ok("recommend", out, "--image", image, "--modality", "image", "-k", "1",
                             "--json").stdout)["results"]
    assert hits[0]["id"] == "item5" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    sound = store.parent / "snd" / "8.wav"
    hits = json.loads(run_ok("recommend", out, "--audio", sound, "--modality", "audio", "-k", "1",
                             "--json").stdout)["results"]
    assert hits[0]["id"] == "item8" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    mixed = json.loads(run_ok("recommend", out, "--audio", sound, "--image", image, "-k", "3",
                              "--explain", "--json").stdout)["results"]
    assert len(mixed) == 3 and set(mixed[0]["explanation"]) <= {"text", "image", "audio"}


def test_retrieval_evaluation_json_and_plot(aligner, tmp_path):
    out, report = aligner
    plot = tmp_path / "r.png"
    result = json.loads(run_ok("evaluate", "retrieval", out, "--json", "--plot", plot).stdout)
    assert set(result) == {f"{a}->{b}" for a in ("text", "image", "audio")
                           for b in ("text", "image", "audio") if a != b}
    pair = result["text->image"]
    assert pair["gallery"] == 6 and pair["queries"] == 6
    assert pair["chance@1"] == pytest.approx(1 / 6) and pair["chance@10"] == 1.0
    assert 1 <= pair["median_rank"] <= 6
    assert 0 <= pair["recall@1"] <= pair["recall@5"] <= pair["recall@10"] == 1.0
    assert result == report["retrieval"]  # what align reported is what evaluate measures
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "text->image" in run_ok("evaluate", "retrieval", out).stdout


def test_shared_pivot_mlp_heads(store, tmp_path):
    out = tmp_path / "shared"
    report = json.loads(run_ok("align", store, "--out", out, "--pivot", "shared", "--dim", "5",
                               "--head", "mlp", "--epochs", "2", "--json").stdout)
    assert report["pivot"] == "shared" and report["dim"] == 5 and report["head"] == "mlp"
    assert report["steps"] <= 4  # 2 epochs of 24 training items in batches of 256
    hits = json.loads(run_ok("recommend", out, "--text", "thing number 2", "--modality", "text",
                             "--json").stdout)["results"]
    assert hits[0]["id"] == "item2"


def test_zero_steps_from_scratch_keeps_only_what_needs_no_training(store, tmp_path):
    out = tmp_path / "zero"
    report = json.loads(run_ok("align", store, "--out", out, "--steps", "0", "--from-scratch",
                               "--json").stdout)
    assert report["modalities"] == ["text"] and report["steps"] == 0
    assert any("image: left out" in n for n in report["notes"])
    assert run_fails("recommend", out, "--image", store.parent / "img" / "1.png").endswith(
        "has no image vectors (it has: text)")


OTHER_IMAGE_ENCODER = """
import numpy as np
import torch

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality


class OtherImage(Encoder):
    modality = Modality.IMAGE
    dim = 6

    def encode_batch(self, inputs):
        rows = [np.asarray(x.resize((2, 1)), dtype=np.float32).reshape(-1) + 1 for x in inputs]
        return torch.from_numpy(np.stack(rows))
"""


def test_init_from_an_aligner_of_other_encoders_is_refused(aligner, tmp_path, media, rows):
    encoder = tmp_path / "other.py"
    encoder.write_text(OTHER_IMAGE_ENCODER)
    other = tmp_path / "other-store"
    run_ok("encode", make_catalog(media, rows), "--out", other, *FAKE_OPTIONS,
           "--image-encoder", f"local:{encoder}:OtherImage")
    line = run_fails("align", other, "--out", tmp_path / "a", "--init", aligner[0])
    assert "encoded with" in line and "OtherImage" in line and "FakeImage" in line
    assert not (tmp_path / "a").exists()


def test_init_from_a_compatible_aligner_starts_where_it_ended(store, aligner, tmp_path):
    out = tmp_path / "continued"
    report = json.loads(run_ok("align", store, "--out", out, "--init", aligner[0], "--steps", "0",
                               "--json").stdout)
    assert report["init"] == str(aligner[0]) and report["modalities"] == ["text", "image", "audio"]
    np.testing.assert_allclose(np.load(out / "vectors" / "fused.npy"),
                               np.load(aligner[0] / "vectors" / "fused.npy"), atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--text", "  "], "empty text query"),
    (["--image", "missing.png"], "image query not found: missing.png"),
    (["--audio", "missing.wav"], "audio query not found: missing.wav"),
    (["--item", "nope"], "unknown item id 'nope'"),
    (["--text", "x", "--modality", "smell"], "--modality must be one of fused, text, image, audio"),
    (["--user", "u1"], "--user and --history need a trained model"),
    ([], "nothing to search for"),
])
def test_bad_queries_fail_in_one_line(aligner, args, message):
    assert message in run_fails("recommend", aligner[0], *args)


def test_modality_absent_from_the_aligner(store, tmp_path):
    out = tmp_path / "no-audio"
    run_ok("align", store, "--out", out, "--modalities", "text,image", "--steps", "5")
    sound = store.parent / "snd" / "0.wav"
    assert "has no audio vectors (it has: text, image)" in run_fails("recommend", out, "--audio", sound)
    assert "has no audio vectors" in run_fails("recommend", out, "--text", "a", "--modality", "audio")


def test_unreadable_image_query(aligner, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    assert "bad.png: not an image" in run_fails("recommend", aligner[0], "--image", bad)


@pytest.mark.parametrize("args, message", [
    (["--pivot", "text", "--dim", "16"], "with --pivot text the space is the text encoder's (8-d)"),
    (["--steps", "5", "--epochs", "1"], "give --steps or --epochs, not both"),
    (["--from-scratch", "--init", "x"], "--from-scratch and --init exclude each other"),
    (["--modalities", "text,smell"], "--modalities must be one of text, image, audio"),
    (["--init", "nowhere"], "--init aligner or heads directory not found: nowhere"),
])
def test_bad_align_options_fail_in_one_line(store, tmp_path, args, message):
    assert message in run_fails("align", store, "--out", tmp_path / "a", *args)


def test_align_refuses_to_overwrite_what_is_not_an_aligner(store, tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "precious.txt").write_text("mine")
    assert "not an mmrec aligner" in run_fails("align", store, "--out", tmp_path / "keep")
    assert (tmp_path / "keep" / "precious.txt").read_text() == "mine"
    assert "store not found" in run_fails("align", tmp_path / "none", "--out", tmp_path / "a")


def test_a_trained_model_is_not_an_aligner(aligner, tmp_path):
    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "config.json").write_text(json.dumps({"format": "mmrec-model", "format_version": 1}))
    assert "is a trained model" in run_fails("evaluate", "retrieval", fake)


def test_package_stays_callable_after_its_submodules_load(store, tmp_path):
    import mmrec
    import mmrec.alignment.search  # noqa: F401  (loading the package must not shadow mmrec.align)

    report = mmrec.align(store, tmp_path / "lib", steps=3, modalities=["text", "image"])
    assert report.as_dict()["modalities"] == ["text", "image"]
    from mmrec.query import Query

    hits = mmrec.recommend(tmp_path / "lib", Query(text="thing number 1", modality="text", k=1))
    assert hits[0].id == "item1"
    assert set(mmrec.evaluate(tmp_path / "lib")) == {"text->image", "image->text"}


class RecordingProgress:
    def __init__(self):
        self.tasks, self.fields = [], []

    def task(self, description, total):
        self.tasks.append((description, total))
        return lambda n=1, **fields: self.fields.append(fields)

    def log(self, message):
        pass


def test_progress_hears_loss_temperature_and_validation_recall(store, tmp_path):
    import mmrec

    progress = RecordingProgress()
    report = mmrec.align(store, tmp_path / "p", progress=progress, steps=12, eval_every=4)
    assert progress.tasks == [("align", 12)]
    assert len(progress.fields) == report.steps
    last = progress.fields[-1]
    assert set(last) == {"loss", "temp", "r10"} and last["loss"] > 0 and 0 <= last["r10"] <= 1
    assert any(f["temp"] != pytest.approx(0.07) for f in progress.fields)  # it is learned


def test_without_a_held_out_split_evaluation_says_so(store, tmp_path):
    import mmrec

    out = tmp_path / "all-train"
    report = json.loads(run_ok("align", store, "--out", out, "--val-split", "0", "--steps", "5",
                               "--json").stdout)
    assert report["val_items"] == 0 and report["best_step"] == 5 and report["retrieval"] == {}
    assert "has no held-out items (--val-split 0)" in run_fails("evaluate", "retrieval", out)
    assert mmrec.evaluate(out, split="all")["text->image"]["gallery"] == N_ITEMS


def test_recommend_device_option(aligner, monkeypatch):
    import torch

    out, _ = aligner
    hits = json.loads(run_ok("recommend", out, "--text", "thing number 7", "--modality", "text",
                             "--device", "cpu", "--json").stdout)["results"]
    assert hits[0]["id"] == "item7"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = run_fails("recommend", out, "--text", "thing number 7", "--device", "cuda")
    assert "no CUDA GPU is visible" in line
