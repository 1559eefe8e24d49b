"""`mmrec align --tune text` (LiT): a tiny random BERT, saved and loaded through hf:."""
from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizer
from typer.testing import CliRunner

from conftest import FAKE_ENCODERS, make_catalog, one_line_error, write_png
from mmrec.cli.main import app

runner = CliRunner()
WORDS = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "fish", "star", "rock"]
LAYERS = 3


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    letters = list(string.ascii_lowercase)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters,
             *("##" + c for c in letters), *WORDS]
    path = tmp_path_factory.mktemp("bert")
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=32).save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=24,
                        num_hidden_layers=LAYERS, num_attention_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(path)
    return path


def _catalog(root: Path, n: int = 24) -> Path:
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        write_png(root / "img" / f"{i}.png", (10 * i, 255 - 10 * i, (50 * i) % 256))
        rows.append({"id": f"item{i}", "title": f"{WORDS[i % 10]} {WORDS[(3 * i + 1) % 10]}",
                     "image": f"img/{i}.png"})
    return make_catalog(root, rows)


def _encode(catalog: Path, out: Path, text_encoder: str) -> Path:
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(out), "--text-encoder",
                                 text_encoder, "--image-encoder", FAKE_ENCODERS["image"]])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def store(bert, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    return _encode(_catalog(root), root / "store", f"hf:{bert}")


@pytest.fixture(scope="module")
def tuned(store, tmp_path_factory) -> tuple[Path, dict]:
    # no held-out split: the last weights are kept, so the tuned layers surely moved
    out = tmp_path_factory.mktemp("aligned") / "aligner"
    result = runner.invoke(app, ["align", str(store), "--out", str(out), "--tune", "text",
                                 "--tune-layers", "1", "--tune-lr", "1e-2", "--tune-warmup", "2",
                                 "--steps", "8", "--batch-size", "8", "--val-split", "0",
                                 "--from-scratch", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def _original(bert: Path) -> dict[str, torch.Tensor]:
    return BertModel.from_pretrained(bert).state_dict()


def _encoder(bert: Path, weights: Path | None = None):
    from mmrec.encoders.hf import HFTextEncoder

    encoder = HFTextEncoder(str(bert))
    encoder.load(torch.device("cpu"))
    if weights is not None:
        encoder.model.load_state_dict(load_file(weights), strict=False)
    return encoder


def test_only_the_top_layers_are_saved_and_they_changed(tuned, bert):
    out, _ = tuned
    saved = load_file(out / "tuned-text.safetensors")
    original = _original(bert)
    top = f"encoder.layer.{LAYERS - 1}."
    assert saved and all(name.startswith(top) for name in saved)
    assert {n for n in original if n.startswith(top)} == set(saved)
    assert any(not torch.equal(saved[n], original[n]) for n in saved)


def test_the_config_records_the_tuning(tuned):
    out, report = tuned
    tuning = json.loads((out / "config.json").read_text())["aligner"]["tuning"]
    assert tuning["layers"] == 1 and tuning["lr"] == 1e-2 and tuning["steps"] == 8
    assert tuning["file"] == "tuned-text.safetensors" and report["steps"] == 8
    assert report["tuning"] == tuning


def test_the_cli_says_what_was_tuned(store, tmp_path):
    result = runner.invoke(app, ["align", str(store), "--out", str(tmp_path / "al"), "--tune",
                                 "text", "--steps", "3", "--batch-size", "8", "--from-scratch"])
    assert result.exit_code == 0, result.output
    assert "tuned: top 2 layers, lr 2e-05, 20 warm-up steps" in result.output


def test_item_text_vectors_come_from_the_tuned_encoder(tuned, bert):
    out, _ = tuned
    ids = json.loads((out / "ids.json").read_text())
    items = {json.loads(line)["id"]: json.loads(line) for line in (out / "items.jsonl").open()}
    texts = [items[i]["title"] for i in ids]
    stored = np.load(out / "vectors" / "text.npy")  # text pivot: identity head
    fresh = _encoder(bert, out / "tuned-text.safetensors").encode(texts)
    untuned = _encoder(bert).encode(texts)
    np.testing.assert_allclose(stored, fresh, atol=1e-5)
    assert np.abs(stored - untuned).max() > 1e-3


def test_queries_use_the_tuned_weights(tuned, bert):
    import mmrec
    from mmrec.query import Query

    out, _ = tuned
    query = Query(text="moon fish")
    vector = mmrec.open(out)._vector(query)  # the one query path: CLI, library and serve
    fresh = _encoder(bert, out / "tuned-text.safetensors").encode(["moon fish"])[0]
    untuned = _encoder(bert).encode(["moon fish"])[0]
    np.testing.assert_allclose(vector, fresh, atol=1e-5)  # text pivot: the head is identity
    assert np.abs(vector - untuned).max() > 1e-3
    warm = mmrec.open(out, warm=True)  # serve's handles load every encoder up front
    np.testing.assert_allclose(warm._vector(query), vector, atol=1e-6)


def test_recommend_by_an_items_text_finds_it_with_cosine_one(tuned):
    out, _ = tuned
    result = runner.invoke(app, ["recommend", str(out), "--text", "cat dog", "--modality", "text",
                                 "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    hit = json.loads(result.stdout)["results"][0]
    assert hit["title"] == "cat dog" and hit["score"] == pytest.approx(1.0, abs=1e-4)


def test_unfreeze_top_trains_the_top_layers_and_nothing_else(bert):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.tune import TunedText

    encoder = _encoder(bert)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    source = TunedText(encoder, ["cat dog", "sun moon", "red"], AlignConfig(tune_layers=2, tune_lr=1e-2),
                       torch.device("cpu"))
    optimizer = torch.optim.AdamW([source.param_group()])
    vectors = source.vectors(torch.arange(3))
    (vectors[0] @ vectors[1]).backward()
    optimizer.step()
    after = encoder.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("encoder.layer.1.", "encoder.layer.2.")) for k in changed)
    assert not any(k.startswith(("embeddings.", "encoder.layer.0.")) for k in changed)


def test_warmup_then_cosine():
    from mmrec.alignment.tune import warmup_cosine

    factors = [warmup_cosine(s, 4, 20) for s in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in zip(factors[3:], factors[4:], strict=False)) and factors[-1] < 0.05


def _fails(*args) -> str:
    return one_line_error(runner.invoke(app, [str(a) for a in args]))


def test_an_encoder_that_cannot_be_tuned_is_refused_in_one_line(tmp_path):
    store = _encode(_catalog(tmp_path / "cat", 6), tmp_path / "store", FAKE_ENCODERS["text"])
    line = _fails("align", store, "--out", tmp_path / "al", "--tune", "text", "--steps", "2")
    assert "cannot be tuned" in line and not (tmp_path / "al").exists()


def test_a_changed_catalog_text_is_refused(bert, tmp_path):
    catalog = _catalog(tmp_path / "cat", 6)
    store = _encode(catalog, tmp_path / "store", f"hf:{bert}")
    catalog.write_text(catalog.read_text().replace("cat dog", "dog cat"))
    line = _fails("align", store, "--out", tmp_path / "al", "--tune", "text", "--steps", "2")
    assert "item0" in line and "changed since the store was encoded" in line


def test_tuning_needs_training_steps(store, tmp_path):
    line = _fails("align", store, "--out", tmp_path / "al", "--tune", "text", "--steps", "0")
    assert "--tune text needs training steps" in line


def test_cached_lower_layers_give_the_full_forward_vectors(bert):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.tune import TunedText

    texts = ["cat dog", "sun moon star tree", "red", "blue fish rock cat"]
    encoder = _encoder(bert)
    full = encoder.encode(texts)
    source = TunedText(encoder, texts, AlignConfig(tune_layers=1), torch.device("cpu"))
    assert source.lower is not None and len(source.lower.states) == len(texts)
    cached = source.vectors(torch.arange(len(texts)))
    assert cached.requires_grad
    np.testing.assert_allclose(cached.detach().numpy(), full, atol=1e-5)
    assert len(encoder.model.encoder.layer) == LAYERS  # the stack is whole again


def test_a_quick_validation_refresh_matches_the_full_encoder(bert):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.tune import TunedText

    texts = ["cat dog", "sun moon star tree", "red", "blue fish rock cat"]
    source = TunedText(_encoder(bert), texts, AlignConfig(tune_layers=2), torch.device("cpu"))
    quick, full = np.zeros((4, 16), np.float32), np.zeros((4, 16), np.float32)
    source.refresh_quick(quick, np.array([0, 2, 3]), batch_size=2)
    source.refresh(full, None, np.array([0, 2, 3]))
    np.testing.assert_allclose(quick, full, atol=1e-5)
    assert not quick[1].any()


def test_init_from_a_tuned_aligner_says_its_tuned_layers_stay_behind(store, tuned, tmp_path):
    result = runner.invoke(app, ["align", str(store), "--out", str(tmp_path / "al"), "--init",
                                 str(tuned[0]), "--steps", "2", "--batch-size", "8", "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    assert any("tuned layers are not carried over" in n for n in notes)
    assert not (tmp_path / "al" / "tuned-text.safetensors").exists()
