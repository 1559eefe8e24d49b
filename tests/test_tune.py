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
                                 "text", "--steps", "3", "--batch-size", "8", "--from-scratch",
                                 "--val-split", "0"])
    assert result.exit_code == 0, result.output
    assert "tuned: top 2 layers (layers), lr 2e-05, 20 warm-up steps" in result.output


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


# -- what trains: BitFit, LoRA, L2-SP; caption variants; smoothed stopping -----------------

def _source(bert, **options):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.tune import TunedText

    encoder = _encoder(bert)
    config = AlignConfig(tune="text", tune_lr=1e-2, **options).validate()
    return encoder, TunedText(encoder, ["cat dog", "sun moon", "red fish"], config, torch.device("cpu"))


def _one_step(source) -> None:
    optimizer = torch.optim.AdamW([source.param_group()])
    vectors = source.vectors(torch.arange(3))
    (vectors[0] @ vectors[1] - vectors[0] @ vectors[2] + source.penalty()).backward()
    optimizer.step()


def test_bitfit_trains_only_the_top_layers_biases_and_layernorms(bert):
    encoder, source = _source(bert, tune_layers=2, tune_params="bitfit")
    top = ("encoder.layer.1.", "encoder.layer.2.")
    assert source.params and all(n.startswith(top) and (n.endswith("bias") or "LayerNorm" in n)
                                 for n in source.params)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    _one_step(source)
    after = encoder.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= set(source.params)
    assert set(source.export()) == set(source.params)


def test_lora_saves_merged_query_and_value_weights_under_their_own_names(bert):
    encoder, source = _source(bert, tune_layers=1, tune_params="lora", tune_rank=2)
    assert all(".parametrizations.weight.0." in n for n in source.params)  # only the factors
    _one_step(source)
    exported = source.export()
    top = f"encoder.layer.{LAYERS - 1}.attention.self."
    assert set(exported) == {top + "query.weight", top + "value.weight"}
    original = _original(bert)
    assert all(not torch.equal(exported[n], original[n]) for n in exported)
    # a plain model with the exported tensors loaded encodes as the tuned one does
    plain = _encoder(bert)
    plain.model.load_state_dict(exported, strict=False)
    texts = ["cat dog", "moon fish"]
    np.testing.assert_allclose(plain.encode(texts), source.encoder.encode(texts), atol=1e-5)


def test_l2sp_is_zero_at_the_start_and_pulls_toward_the_pretrained_weights(bert):
    _, source = _source(bert, tune_layers=1, tune_l2sp=10.0)
    assert float(source.penalty().detach()) == 0.0 and source.param_group()["weight_decay"] == 0.0
    with torch.no_grad():
        next(iter(source.params.values())).add_(0.1)
    assert float(source.penalty().detach()) > 0
    _, plain = _source(bert, tune_layers=1)
    assert plain.penalty() == 0.0 and plain.param_group()["weight_decay"] > 0


def test_caption_variants_come_from_the_items_own_fields():
    from mmrec.alignment.tune import captions

    record = {"title": "grinning face", "tags": "happy, smile, teeth", "category": "smileys/face-smiling"}
    words = {"grinning", "face", "happy", "smile", "teeth", "smileys", "smiling"}
    found = captions(record, ["title", "tags"], 20, np.random.default_rng(0))
    assert len(found) == 20 and len(set(found)) > 3
    assert all(f and set(f.replace(",", " ").replace(".", " ").split()) <= words for f in found)
    assert found == captions(record, ["title", "tags"], 20, np.random.default_rng(0))
    assert captions({}, ["title"], 3, np.random.default_rng(0)) == []


def test_training_draws_captions_and_validation_uses_the_encoded_text(bert):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.tune import TunedText

    encoder = _encoder(bert)
    texts = [["cat dog", "cat", "dog"], ["sun moon"]]
    source = TunedText(encoder, texts, AlignConfig(tune_layers=1), torch.device("cpu"))
    full = encoder.encode(["cat dog", "cat", "dog", "sun moon"])
    plain = source.vectors(torch.tensor([0, 1])).detach().numpy()
    np.testing.assert_allclose(plain, full[[0, 3]], atol=1e-5)
    drawn = {int(np.argmax(full[:3] @ source.vectors(torch.tensor([0]), sample=True)[0].detach().numpy()))
             for _ in range(30)}
    assert drawn == {0, 1, 2}


def test_smoothed_stopping_does_not_keep_a_lone_spike():
    from mmrec.alignment.heads import HeadSet
    from mmrec.alignment.train import _Best

    curve = [0.50, 0.58, 0.52, 0.56, 0.57, 0.57]  # a spike at 1, a level stretch later

    def kept(smoothing: float) -> int:
        best = _Best(HeadSet({"image": 4}, 4, "linear", 8, "text"), {"a->b": (0.5, 0.0, 100)},
                     None, smoothing)
        for step, r10 in enumerate(curve[1:], start=1):
            best.update({"a->b": (r10, 0.0, 100)}, step)
        return best.step

    assert kept(0.0) == 1 and kept(0.6) > 1


@pytest.mark.parametrize("option, value", [("tune_params", "adapters"), ("val_smoothing", 1.5),
                                           ("tune_rank", 0), ("tune_captions", -1), ("tune_l2sp", -1.0)])
def test_bad_tuning_options_are_one_line_errors(store, tmp_path, option, value):
    import mmrec
    from mmrec.errors import ConfigError

    with pytest.raises(ConfigError) as found:
        mmrec.align(store, tmp_path / "al", tune="text", steps=2, **{option: value})
    message = str(found.value)
    assert "\n" not in message and f"--{option.replace('_', '-')}" in message
    assert not (tmp_path / "al").exists()


def test_more_layers_than_the_encoder_has_is_a_one_line_error(store, tmp_path):
    line = _fails("align", store, "--out", tmp_path / "al", "--tune", "text", "--steps", "2",
                  "--tune-layers", "9")
    assert "--tune-layers 9" in line and not (tmp_path / "al").exists()


def test_image_tuning_refuses_an_encoder_it_cannot_tune_and_lora(store, tmp_path):
    base = ["align", store, "--out", tmp_path / "al", "--steps", "2"]
    assert "cannot be tuned" in _fails(*base, "--tune", "image")
    assert not (tmp_path / "al").exists()


def test_an_interrupted_tuning_run_leaves_nothing(store, tmp_path, monkeypatch):
    from mmrec.alignment.tune import TunedText

    calls = {"n": 0}
    vectors = TunedText.vectors

    def interrupted(self, rows, sample=False):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return vectors(self, rows, sample)

    monkeypatch.setattr(TunedText, "vectors", interrupted)
    out = tmp_path / "al"
    with pytest.raises(KeyboardInterrupt):
        import mmrec

        mmrec.align(store, out, tune="text", steps=10, batch_size=8, from_scratch=True)
    assert calls["n"] > 3 and not out.exists() and list(tmp_path.iterdir()) == []


def test_align_with_lora_and_captions_round_trips_to_queries(store, bert, tmp_path):
    import mmrec
    from mmrec.query import Query

    out = tmp_path / "al"
    report = mmrec.align(store, out, tune="text", tune_params="lora", tune_rank=2, tune_captions=2,
                         tune_layers=1, tune_lr=5e-2, steps=6, batch_size=8, val_split=0,
                         from_scratch=True)
    saved = load_file(out / "tuned-text.safetensors")
    top = f"encoder.layer.{LAYERS - 1}.attention.self."
    assert set(saved) == {top + "query.weight", top + "value.weight"} == set(report.tuning["tensors"])
    assert report.tuning["params"] == "lora" and report.tuning["captions"] == 2
    vector = mmrec.open(out)._vector(Query(text="moon fish"))
    np.testing.assert_allclose(vector, _encoder(bert, out / "tuned-text.safetensors").encode(["moon fish"])[0],
                               atol=1e-5)


@pytest.mark.slow
def test_image_tuning_cache_gives_the_full_forward_features(tmp_path):
    from mmrec.alignment.config import AlignConfig
    from mmrec.alignment.tune import TunedImage, tunable_encoder
    from mmrec.catalog import load_image

    paths = [write_png(tmp_path / f"{i}.png", (40 * i, 200 - 30 * i, 90)) for i in range(3)]
    encoder = tunable_encoder("builtin:efficientnet-lite0", "image")
    source = TunedImage(encoder, [paths[0], None, *paths[1:]], AlignConfig(tune="image", tune_layers=2),
                        torch.device("cpu"))
    assert all(n.startswith(("_blocks.15.", "_conv_head.", "_bn1.")) for n in source.params)
    matrix, norms = np.zeros((4, 1280), np.float32), np.zeros(4, np.float32)
    source.refresh(matrix, norms, np.arange(4))
    ref, ref_norms = encoder.encode([load_image(p) for p in paths], return_norms=True)
    np.testing.assert_allclose(matrix[[0, 2, 3]], ref, atol=1e-5)
    np.testing.assert_allclose(norms[[0, 2, 3]], ref_norms, rtol=1e-5)
    assert source.vectors(torch.tensor([0, 2])).requires_grad


# -- train --tune text: the items' text encoder tuned on behaviour --------------------------

TRAIN_FAST = ["--epochs", "3", "--batch-size", "16", "--warmup", "2", "--dim", "8"]


def _interactions(path: Path, n_items: int = 24, n_users: int = 12) -> Path:
    rng = np.random.default_rng(0)
    rows = ["user,item,rating,timestamp"]
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=6, replace=False)):
            rows.append(f"u{u},item{i},4,{1000 + 10 * t + u}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def tuned_model(store, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("trained")
    inter = _interactions(root / "inter.csv")
    result = runner.invoke(app, ["train", "--store", str(store), "--interactions", str(inter),
                                 "--out", str(root / "model"), "--tune", "text", "--tune-layers", "1",
                                 "--tune-lr", "5e-2", "--tune-warmup", "1", *TRAIN_FAST, "--json"])
    assert result.exit_code == 0, result.output
    return root / "model", json.loads(result.stdout)


def test_train_tune_text_saves_the_top_layer_and_reports_it(tuned_model, bert):
    model, report = tuned_model
    saved = load_file(model / "tuned-text.safetensors")
    top = f"encoder.layer.{LAYERS - 1}."
    original = _original(bert)
    assert set(saved) == {n for n in original if n.startswith(top)}
    assert any(not torch.equal(saved[n], original[n]) for n in saved)
    assert report["text_tuning"]["layers"] == 1 and report["text_tuning"]["file"] == "tuned-text.safetensors"


def test_train_tune_text_item_vectors_use_the_tuned_encoder(tuned_model, store, bert):
    from mmrec.recsys.content_tune import tuned_content
    from mmrec.recsys.data import store_content
    from mmrec.recsys.model import load_model
    from mmrec.store import Store

    model_dir, _ = tuned_model
    model = load_model(model_dir)
    content = store_content(Store.open(store), model.data.item_ids)
    tuned = tuned_content(model_dir, content)
    start, end = tuned.blocks["text"]
    items = {json.loads(line)["id"]: json.loads(line)["title"]
             for line in (Path(Store.open(store).manifest["catalog"])).open()}
    fresh = _encoder(bert, model_dir / "tuned-text.safetensors").encode([items[i] for i in model.data.item_ids])
    np.testing.assert_allclose(tuned.matrix[:, start:end], fresh, atol=1e-5)
    assert np.abs(tuned.matrix[:, start:end] - content.matrix[:, start:end]).max() > 1e-3
    # every item vector the model holds (cold items' too) is the item tower on the tuned content
    rows = np.arange(len(model.data.item_ids))
    np.testing.assert_allclose(model.scorer.items, model.scorer.content_vectors(tuned.matrix, rows),
                               atol=1e-4)
    untuned = model.scorer.content_vectors(content.matrix, rows)
    assert np.abs(model.scorer.items - untuned).max() > 1e-4


@pytest.mark.parametrize("extra, needle", [(["--model", "ease"], "not --model ease"),
                                           (["--tune-layers", "7"], "--tune-layers 7"),
                                           (["--tune-rows", "0"], "--tune-rows must be"),
                                           (["--tune-rows", "-3"], "--tune-rows must be")])
def test_train_tune_text_bad_options_are_one_line_errors(store, tmp_path, extra, needle):
    inter = _interactions(tmp_path / "inter.csv")
    line = _fails("train", "--store", store, "--interactions", inter, "--out", tmp_path / "m",
                  "--tune", "text", *TRAIN_FAST, *extra)
    assert needle in line and not (tmp_path / "m").exists()


def test_train_tune_text_needs_the_stores_text(tmp_path):
    store = _encode(_catalog(tmp_path / "cat", 6), tmp_path / "store", FAKE_ENCODERS["text"])
    inter = _interactions(tmp_path / "inter.csv", n_items=6, n_users=4)
    line = _fails("train", "--store", store, "--interactions", inter, "--out", tmp_path / "m",
                  "--tune", "text", *TRAIN_FAST)
    assert "cannot be tuned" in line and not (tmp_path / "m").exists()


def _tuned_trainer(store: Path, root: Path, rows: int, **config):
    """A twotower trainer on the tiny store with ``--tune text`` attached (lr high enough
    that one step visibly moves the tuned layer)."""
    from mmrec.catalog import read_interactions
    from mmrec.recsys.config import TrainConfig
    from mmrec.recsys.content_tune import ContentTuning, TunedContent
    from mmrec.recsys.data import store_content
    from mmrec.recsys.train import _data
    from mmrec.recsys.twotower import TwoTowerTrainer
    from mmrec.store import Store

    content = store_content(Store.open(store))
    asked = TrainConfig(model="twotower", batch_size=16, dim=8, warmup=0, epochs=2, **config)
    found = read_interactions(_interactions(root / "inter.csv"), content.ids)
    data = _data(content.ids, found, asked.resolved())
    cfg = asked.resolved(len(data.items))
    trainer = TwoTowerTrainer(data, content.matrix, cfg, torch.device("cpu"))
    tuning = TunedContent(content, ContentTuning(lr=5e-2, warmup=0, rows=rows).check(), 0,
                          torch.device("cpu"))
    tuning.attach(trainer, 10)
    return trainer, tuning, content


def _count_encoded(tuning, monkeypatch) -> list[tuple[list[int], bool]]:
    """Every call of the tuned encoder: the rows it encoded, and whether with gradients."""
    calls, vectors = [], tuning.tuned.vectors

    def counted(rows, *args, **kwargs):
        out = vectors(rows, *args, **kwargs)
        calls.append(([int(r) for r in rows], out.requires_grad))
        return out

    monkeypatch.setattr(tuning.tuned, "vectors", counted)
    return calls


def _step(trainer, picked) -> torch.Tensor:
    loss = trainer.batch_loss(picked)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return loss


def test_a_tuned_step_encodes_at_most_tune_rows_of_its_positives_with_gradients(store, tmp_path,
                                                                              monkeypatch):
    trainer, tuning, _ = _tuned_trainer(store, tmp_path, rows=3)
    calls = _count_encoded(tuning, monkeypatch)
    picked = np.arange(12)
    positives = set(trainer.pairs[picked, 1].tolist())
    assert len(positives) > 3  # so the bound bites
    _step(trainer, picked)
    with_grad = [rows for rows, grad in calls if grad]
    assert len(with_grad) == 1 and len(with_grad[0]) == 3 == tuning.encoded
    assert set(with_grad[0]) <= positives
    # histories and negatives touched the step too, from the cache (no encoder call)
    assert len(trainer._step_rows(picked, np.zeros(0, np.int64),
                                  trainer._histories(trainer.pairs[picked, 0])[1], None)) > 3
    # a bound above the positives encodes each unique positive once
    trainer, tuning, _ = _tuned_trainer(store, tmp_path, rows=1000)
    calls = _count_encoded(tuning, monkeypatch)
    _step(trainer, picked)
    assert sorted(r for rows, grad in calls if grad for r in rows) == sorted(positives)


def test_the_sample_beyond_tune_rows_is_seeded(store, tmp_path):
    drawn = []
    for _ in range(2):
        trainer, tuning, _ = _tuned_trainer(store, tmp_path, rows=2)
        rows = np.arange(len(trainer.data.item_ids))
        drawn.append([tuning.fresh(rows, trainer.pairs[np.arange(k, k + 12), 1]).tolist()
                      for k in range(3)])
    assert drawn[0] == drawn[1] and len({tuple(d) for d in drawn[0]}) > 1


def test_gradients_reach_the_tuned_layers(store, tmp_path):
    trainer, tuning, _ = _tuned_trainer(store, tmp_path, rows=4)
    _step(trainer, np.arange(12))
    grads = [p.grad for p in tuning.tuned.params.values()]
    assert grads and all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_export_refreshes_the_cache_so_item_vectors_are_a_fresh_encode(store, tmp_path):
    trainer, tuning, content = _tuned_trainer(store, tmp_path, rows=2)
    for start in (0, 12, 24):
        _step(trainer, np.arange(start, start + 12))
        trainer.optimizer.step()
    start, end = content.blocks["text"]
    encoded = tuning.tuned.encode(np.arange(len(content.ids)))[0]  # the full encoder, now
    # the steps moved the encoder: the cache of the rows no step re-encoded is stale
    assert np.abs(tuning.cache.numpy() - encoded).max() > 1e-3
    scorer = trainer.export()
    np.testing.assert_allclose(tuning.cache.numpy(), encoded, atol=1e-5)
    matrix = np.array(content.matrix, dtype=np.float32)
    matrix[:, start:end] = encoded
    rows = np.arange(len(content.ids))
    np.testing.assert_allclose(scorer.items, scorer.content_vectors(matrix, rows), atol=1e-5)
    assert not hasattr(scorer, "tuned_text")


def test_early_stopping_keeps_the_kept_epochs_encoder_tensors(monkeypatch):
    from mmrec.progress import NullProgress
    from mmrec.recsys import train as train_module
    from mmrec.recsys.config import TrainConfig

    class Trainer:
        epochs = 0

        def epoch(self, rng):
            self.epochs += 1
            return 1.0

        def export(self):
            return self.epochs

    scripted = {1: 0.1, 2: 0.3, 3: 0.2, 4: 0.25}
    monkeypatch.setattr(train_module, "_valid_metric", lambda scorer, data, seed: scripted[scorer])
    data = type("D", (), {"split": type("S", (), {"part": np.array([1])})()})()
    trainer, kept = Trainer(), []
    best, info = train_module._fit(trainer, data, TrainConfig(epochs=4, patience=5), NullProgress(),
                                   keep=lambda: kept.append(trainer.epochs))
    assert best == 2 and info["best_epoch"] == 2 and kept == [1, 2]


@pytest.mark.slow
def test_align_tune_image_round_trips_to_image_queries(tmp_path):
    import mmrec
    from mmrec.query import Query

    root = tmp_path / "cat"
    catalog = _catalog(root, 10)
    result = runner.invoke(app, ["encode", str(catalog), "--out", str(tmp_path / "store"),
                                 "--text-encoder", FAKE_ENCODERS["text"],
                                 "--image-encoder", "builtin:efficientnet-lite0"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "al"
    report = mmrec.align(tmp_path / "store", out, tune="image", tune_layers=1, tune_lr=1e-2,
                         steps=4, batch_size=8, val_split=0, from_scratch=True)
    saved = load_file(out / "tuned-image.safetensors")
    assert saved and all(n.startswith(("_conv_head.", "_bn1.")) for n in saved)
    from mmrec.alignment.tune import tunable_encoder

    pretrained = tunable_encoder("builtin:efficientnet-lite0", "image")
    pretrained.load(torch.device("cpu"))
    original = pretrained.model.state_dict()
    assert any(not torch.equal(saved[n], original[n]) for n in saved)  # so the query test can fail
    assert report.tuning["modality"] == "image"
    ids = json.loads((out / "ids.json").read_text())
    stored = np.load(out / "vectors" / "image.npy")[ids.index("item3")]
    vector = mmrec.open(out)._vector(Query(image=root / "img" / "3.png"))
    np.testing.assert_allclose(vector, stored, atol=1e-4)


def test_update_places_new_items_with_the_tuned_text_encoder(bert, tmp_path):
    from mmrec.recsys.content_tune import tuned_content
    from mmrec.recsys.data import store_content
    from mmrec.recsys.model import load_model
    from mmrec.store import Store

    store = _encode(_catalog(tmp_path / "cat", 20), tmp_path / "store", f"hf:{bert}")
    inter = _interactions(tmp_path / "inter.csv", n_items=20)
    ok = runner.invoke(app, ["train", "--store", str(store), "--interactions", str(inter), "--out",
                             str(tmp_path / "m"), "--tune", "text", "--tune-lr", "5e-2",
                             "--tune-warmup", "1", *TRAIN_FAST])
    assert ok.exit_code == 0, ok.output
    _encode(_catalog(tmp_path / "cat2", 24), store, f"hf:{bert}")  # 4 new items in the store
    new_inter = tmp_path / "new.csv"
    new_inter.write_text("user,item,rating,timestamp\nu0,item1,4,9999\n")
    result = runner.invoke(app, ["update", str(tmp_path / "m"), "--interactions", str(new_inter),
                                 "--out", str(tmp_path / "m2")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m2" / "tuned-text.safetensors").read_bytes() == \
        (tmp_path / "m" / "tuned-text.safetensors").read_bytes()
    updated = load_model(tmp_path / "m2")
    new = [f"item{i}" for i in range(20, 24)]
    rows = np.array([updated.item_row(i) for i in new])
    content = store_content(Store.open(store), new)
    expected = updated.scorer.content_vectors(tuned_content(tmp_path / "m", content).matrix, rows)
    untuned = updated.scorer.content_vectors(content.matrix, rows)
    np.testing.assert_allclose(updated.scorer.items[rows], expected, atol=1e-4)
    assert np.abs(updated.scorer.items[rows] - untuned).max() > 1e-4


def test_the_floor_scales_with_each_pairs_validation_size():
    from mmrec.alignment.train import pair_floor

    floor = pair_floor({"text->image": (0.6, 0.3, 500), "text->audio": (0.6, 0.3, 20)}, 1.0)
    assert floor["text->image"] == pytest.approx(0.6 - np.sqrt(0.24 / 500))
    assert floor["text->audio"] == pytest.approx(0.6 - np.sqrt(0.24 / 20))
    assert pair_floor({"a->b": (0.6, 0.3, 20)}, 0.0) == {"a->b": 0.6}  # 0: no pair may lose


def test_the_constrained_stop_keeps_step_0_when_a_pair_gets_worse():
    """A check with a better mean but one pair below its floor is never kept; the first
    check that keeps every floor is, even if its mean is lower than step 0's."""
    from mmrec.alignment.heads import HeadSet
    from mmrec.alignment.train import _Best

    start = {"text->image": (0.60, 0.3, 100), "audio->image": (0.50, 0.2, 20)}
    floor = {"text->image": 0.60, "audio->image": 0.45}
    best = _Best(HeadSet({"image": 4}, 4, "linear", 8, "text"), start, None, 0.0, floor)
    assert best.within
    best.update({"text->image": (0.80, 0.4, 100), "audio->image": (0.40, 0.2, 20)}, 10)
    assert best.step == 0  # +0.2 on text->image does not buy audio's loss ...
    assert best.bad == 0  # ... but the run improves: patience counts from its own best
    best.update({"text->image": (0.70, 0.4, 100), "audio->image": (0.45, 0.2, 20)}, 20)
    assert best.step == 20 and best.pairs["audio->image"][0] == 0.45
    below = _Best(HeadSet({"image": 4}, 4, "linear", 8, "text"),
                  {"text->image": (0.9, 0.5, 100), "audio->image": (0.1, 0.0, 20)}, None, 0.0, floor)
    assert not below.within  # step 0 below a floor is not "within" ...
    below.update({"text->image": (0.6, 0.3, 100), "audio->image": (0.5, 0.2, 20)}, 10)
    assert below.within and below.step == 10  # ... and the first check within is kept


@pytest.mark.parametrize("tuned_wins", [False, True])
def test_tuning_keeps_the_untuned_heads_unless_a_step_keeps_every_pair(store, tmp_path, monkeypatch,
                                                                      tuned_wins):
    """No admissible tuned step: the aligner is the untuned one exactly (no tuned weights,
    the validation texts' vectors restored), with a note; an admissible better one is kept."""
    import mmrec
    from mmrec.alignment import pipeline, train
    from mmrec.alignment.aligner import Aligner

    options = dict(steps=6, batch_size=8, val_split=0.25, eval_every=2, from_scratch=True,
                   memory_weight=0, hub_weight=0)
    mmrec.align(store, tmp_path / "plain", **options)
    if tuned_wins:  # a reference every check beats, with no floor
        monkeypatch.setattr(pipeline, "_untuned_reference", lambda plan, data, heads, *_: pipeline.Trained(
            heads, train.FitResult(best_r10=-1.0, best_mrr=-1.0), ()))
    else:  # floors no check reaches
        monkeypatch.setattr(train, "pair_floor", lambda ref, tol: {p: 1.1 for p in ref})
    report = mmrec.align(store, tmp_path / "tuned", tune="text", tune_lr=1e-2, tune_warmup=1, **options)
    plain, tuned = Aligner.open(tmp_path / "plain"), Aligner.open(tmp_path / "tuned")
    saved = (tmp_path / "tuned" / "tuned-text.safetensors").is_file()
    assert saved == tuned_wins == tuned.info["tune_check"]["kept_tuned"]
    assert (report.tuning is not None) == tuned_wins
    assert np.array_equal(plain.projected("text")[0], tuned.projected("text")[0]) != tuned_wins
    if not tuned_wins:
        assert any("kept the untuned heads" in n for n in report.notes)
        np.testing.assert_array_equal(plain.projected("image")[0], tuned.projected("image")[0])
