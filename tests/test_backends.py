"""The hf and open_clip backends' real loading code, on tiny random models.

Each model is built from the real transformers / open_clip classes with a tiny config,
saved the way users get such models (``save_pretrained``; an open_clip config JSON plus
weights; a Hugging Face cache layout), and loaded back through
``mmrec.encoders.registry.create``. Vectors are compared with the in-memory model that
was saved, so a loader that re-initialised weights at random would fail.
"""
from __future__ import annotations

import json
import shutil
import string
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizer,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTokenizer,
    RobertaTokenizer,
)

from mmrec.encoders import hf, openclip
from mmrec.encoders.registry import create
from mmrec.errors import ModelNotFoundError, UnknownEncoderError

TEXTS = ["a photo of a cat", "dog", "a cat and a dog in a photo of a cat", "cat"]
LETTERS = list(string.ascii_lowercase)
SAMPLE_RATE = 16_000
TINY_ARCH = "mmrec-tiny-clip"
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    # open_clip's SimpleTokenizer always emits ids of its full 49408-token BPE vocabulary.
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network, an empty hub cache, and no model kept loaded between tests."""
    monkeypatch.setenv("MMREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The hub library read its env at import: point the cache it consults now elsewhere,
    # so a real cache on a developer's machine cannot change the outcome.
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))  # open_clip's ~/.cache/clip
    yield cache
    hf.clear_cache()
    openclip.clear_cache()


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 50), (32, 32), (64, 48)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _waves(seconds: tuple[float, ...] = (0.25, 1.0, 0.6)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(int(s * SAMPLE_RATE)).astype(np.float32) for s in seconds]


def _normalised(rows: list[torch.Tensor]) -> np.ndarray:
    stacked = torch.cat(rows).float()
    return torch.nn.functional.normalize(stacked, dim=-1).numpy()


def _pooled(output: object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _tokens(tokenizer: object, text: str) -> dict[str, torch.Tensor]:
    # The tiny tokenizers allow 16 tokens; the longest text needs truncating.
    return tokenizer([text], truncation=True, max_length=16, return_tensors="pt")


def _loaded(name: str, modality: str):
    encoder = create(name, modality)
    encoder.load(torch.device("cpu"))
    return encoder


def _check_vectors(vectors: np.ndarray, reference: np.ndarray, dim: int) -> None:
    assert vectors.shape == (len(reference), dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, reference, atol=2e-5)


# ---------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CLIPModel]:
    vocab = ["<|startoftext|>", "<|endoftext|>", *LETTERS, *(c + "</w>" for c in LETTERS)]
    vocab += ["ca", "cat</w>"]
    tokenizer = CLIPTokenizer(
        vocab={w: i for i, w in enumerate(vocab)},
        merges=[("c", "a"), ("ca", "t</w>")],
        model_max_length=16,
    )
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
              "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**layers, "vocab_size": len(vocab), "max_position_embeddings": 16,
                     "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    path = tmp_path_factory.mktemp("clip")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ClapModel]:
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *LETTERS, *("Ġ" + c for c in LETTERS)]
    tokenizer = RobertaTokenizer(vocab={w: i for i, w in enumerate(vocab)}, merges=[],
                                 model_max_length=16)
    config = ClapConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 37,
                     "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 20, "projection_dim": 24},
        audio_config={"num_mel_bins": 16, "spec_size": 64, "window_size": 4, "patch_size": 2,
                      "patch_stride": 2, "hidden_size": 32, "patch_embeds_hidden_size": 16,
                      "depths": [1, 1], "num_attention_heads": [2, 2], "projection_dim": 24,
                      "enable_fusion": False},
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = ClapModel(config).eval()
    path = tmp_path_factory.mktemp("clap")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    # 1 s windows at 16 kHz: longer clips are cropped at random (`rand_trunc`).
    ClapFeatureExtractor(feature_size=16, sampling_rate=SAMPLE_RATE, hop_length=160,
                         fft_window_size=400, max_length_s=1, frequency_max=8000,
                         truncation="rand_trunc").save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BertModel]:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *LETTERS, *("##" + c for c in LETTERS)]
    vocab += ["cat", "dog", "photo"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, model_max_length=32)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32)
    torch.manual_seed(0)
    model = BertModel(config).eval()
    path = tmp_path_factory.mktemp("bert")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def open_clip_model() -> open_clip.CLIP:
    torch.manual_seed(0)
    return open_clip.CLIP(**TINY_OPEN_CLIP).eval()


def _write_open_clip_dir(path: Path, model: open_clip.CLIP) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (path / "open_clip_config.json").write_text(json.dumps(config))
    save_file(model.state_dict(), str(path / "open_clip_model.safetensors"))
    return path


def _hub_snapshot(cache: Path, repo: str) -> Path:
    """An empty snapshot folder laid out as huggingface_hub's cache keeps one."""
    revision = "0" * 40
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    return snapshot


def _open_clip_text_reference(model: open_clip.CLIP) -> np.ndarray:
    with torch.inference_mode():
        return _normalised([model.encode_text(open_clip.tokenize([t], 16)) for t in TEXTS])


# ---------------------------------------------------------------- transformers


def test_clip_dir_text_and_image_in_one_space(clip_dir: tuple[Path, CLIPModel]) -> None:
    path, model = clip_dir
    text, image = _loaded(f"hf:{path}", "text"), _loaded(f"hf:{path}", "image")
    assert text.name == f"hf:{path}"
    assert text.dim == image.dim == model.config.projection_dim == 24
    assert text.model is image.model  # one checkpoint, loaded once

    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = AutoImageProcessor.from_pretrained(path)
    with torch.inference_mode():
        text_ref = _normalised(
            [_pooled(model.get_text_features(**_tokens(tokenizer, t)))
             for t in TEXTS])
        pixels = processor(images=_images(), return_tensors="pt")["pixel_values"]
        image_ref = _normalised([_pooled(model.get_image_features(pixel_values=pixels))])
    _check_vectors(text.encode(TEXTS, batch_size=3), text_ref, 24)
    _check_vectors(image.encode(_images(), batch_size=2), image_ref, 24)
    np.testing.assert_array_equal(text.encode(TEXTS), text.encode(TEXTS))


def test_clip_hub_id_loads_from_the_cache(offline: Path, clip_dir: tuple[Path, CLIPModel]) -> None:
    path, _ = clip_dir
    shutil.copytree(path, _hub_snapshot(offline, "mmrec-test/tiny-clip"), dirs_exist_ok=True)
    from_hub = _loaded("hf:mmrec-test/tiny-clip", "image")
    from_dir = _loaded(f"hf:{path}", "image")
    np.testing.assert_allclose(from_hub.encode(_images()), from_dir.encode(_images()), atol=1e-6)


def test_clip_has_no_audio_encoder(clip_dir: tuple[Path, CLIPModel]) -> None:
    with pytest.raises(UnknownEncoderError, match="no audio encoder; it can encode: text, image"):
        create(f"hf:{clip_dir[0]}", "audio")


def test_clap_dir_text_and_audio(clap_dir: tuple[Path, ClapModel]) -> None:
    path, model = clap_dir
    text, audio = _loaded(f"hf:{path}", "text"), _loaded(f"hf:{path}", "audio")
    assert audio.sample_rate == SAMPLE_RATE  # from the saved feature extractor
    assert text.dim == audio.dim == 24

    tokenizer = AutoTokenizer.from_pretrained(path)
    extractor = ClapFeatureExtractor.from_pretrained(path)
    waves = _waves()  # none longer than the 1 s window: no random crop in the reference
    with torch.inference_mode():
        text_ref = _normalised(
            [_pooled(model.get_text_features(**_tokens(tokenizer, t)))
             for t in TEXTS])
        features = extractor(waves, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        audio_ref = _normalised([_pooled(model.get_audio_features(**features))])
    _check_vectors(text.encode(TEXTS), text_ref, 24)
    _check_vectors(audio.encode(waves, batch_size=2), audio_ref, 24)
    with pytest.raises(UnknownEncoderError, match="it can encode: text, audio"):
        create(f"hf:{path}", "image")


def test_clap_long_audio_is_deterministic(clap_dir: tuple[Path, ClapModel]) -> None:
    audio = _loaded(f"hf:{clap_dir[0]}", "audio")
    waves = _waves((3.0, 2.5))  # longer than the window: cropped at a random offset
    np.random.seed(1)
    first = audio.encode(waves)
    after_first = np.random.random()
    np.random.seed(2)
    np.testing.assert_array_equal(audio.encode(waves), first)
    np.random.seed(1)
    assert np.random.random() == after_first  # the caller's RNG stream was left alone


def test_bert_dir_mean_pooled_text(bert_dir: tuple[Path, BertModel]) -> None:
    path, model = bert_dir
    text = _loaded(f"hf:{path}", "text")
    assert isinstance(text, hf.HFTextEncoder) and text.dim == 32

    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.inference_mode():
        text_ref = _normalised(
            [model(**tokenizer([t], return_tensors="pt")).last_hidden_state.mean(1)
             for t in TEXTS])
    _check_vectors(text.encode(TEXTS, batch_size=2), text_ref, 32)
    with pytest.raises(UnknownEncoderError, match="it can encode: text"):
        create(f"hf:{path}", "image")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("/nonexistent/mmrec-model-dir", "does not exist"),
        ("mmrec-test/no-such-model", "pass a local directory .* `hf download mmrec-test/no-such-model`"),
        ("EMPTY_DIR", "cannot load transformers model from"),
    ],
)
def test_missing_hf_model_fails_fast(model: str, expected: str, tmp_path: Path) -> None:
    if model == "EMPTY_DIR":
        model = str(tmp_path)
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=expected) as caught:
        create(f"hf:{model}", "text")
    assert time.monotonic() - start < 5
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- open_clip


def test_open_clip_dir_text_and_image_share_one_model(
    tmp_path: Path, open_clip_model: open_clip.CLIP
) -> None:
    path = _write_open_clip_dir(tmp_path / "tiny", open_clip_model)
    text, image = _loaded(f"open_clip:{path}", "text"), _loaded(f"open_clip:{path}", "image")
    assert text.dim == image.dim == TINY_OPEN_CLIP["embed_dim"]
    assert text.loaded is image.loaded and len(openclip._LOADED) == 1

    _, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{path}")
    with torch.inference_mode():
        image_ref = _normalised([open_clip_model.encode_image(preprocess(i)[None])
                                 for i in _images()])
    _check_vectors(text.encode(TEXTS, batch_size=3), _open_clip_text_reference(open_clip_model),
                   16)
    _check_vectors(image.encode(_images()), image_ref, 16)
    np.testing.assert_array_equal(image.encode(_images()), image.encode(_images()))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_open_clip_arch_with_checkpoint_file(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_clip_model: open_clip.CLIP
) -> None:
    # Registered for this test only (open_clip.add_model_config would outlive it).
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_ARCH, TINY_OPEN_CLIP)
    weights = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(open_clip_model.state_dict(), weights)
    else:
        save_file(open_clip_model.state_dict(), str(weights))
    text = _loaded(f"open_clip:{TINY_ARCH}/{weights}", "text")
    _check_vectors(text.encode(TEXTS), _open_clip_text_reference(open_clip_model), 16)


def test_open_clip_checkpoint_of_another_arch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_clip_model: open_clip.CLIP
) -> None:
    other = {**TINY_OPEN_CLIP, "embed_dim": 8}
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_ARCH, other)
    weights = tmp_path / "weights.safetensors"
    save_file(open_clip_model.state_dict(), str(weights))
    encoder = create(f"open_clip:{TINY_ARCH}/{weights}", "text")
    with pytest.raises(ModelNotFoundError, match="cannot load") as caught:
        encoder.load(torch.device("cpu"))
    assert "\n" not in str(caught.value)


def test_open_clip_pretrained_tag_from_hub_cache(
    offline: Path, monkeypatch: pytest.MonkeyPatch, open_clip_model: open_clip.CLIP
) -> None:
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, TINY_ARCH, TINY_OPEN_CLIP)
    tag = {"hf_hub": "mmrec-test/tiny-clip/", "mean": (0.5,) * 3, "std": (0.25,) * 3}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_ARCH, {"tiny": tag})
    snapshot = _hub_snapshot(offline, "mmrec-test/tiny-clip")
    save_file(open_clip_model.state_dict(), str(snapshot / "open_clip_model.safetensors"))

    text, image = (_loaded(f"open_clip:{TINY_ARCH}/tiny", m) for m in ("text", "image"))
    _check_vectors(text.encode(TEXTS), _open_clip_text_reference(open_clip_model), 16)
    normalize = image.loaded.preprocess.transforms[-1]
    assert tuple(normalize.std) == (0.25,) * 3  # the tag's preprocessing was kept


def test_open_clip_hf_hub_dir_from_cache(offline: Path, open_clip_model: open_clip.CLIP) -> None:
    _write_open_clip_dir(_hub_snapshot(offline, "mmrec-test/tiny-dir"), open_clip_model)
    text = _loaded("open_clip:hf-hub:mmrec-test/tiny-dir", "text")
    _check_vectors(text.encode(TEXTS), _open_clip_text_reference(open_clip_model), 16)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ViT-B-32/laion2b_s34b_b79k", "hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        ("ViT-B-32/no-such-weights.safetensors", "neither a pretrained tag of ViT-B-32"),
        ("ViT-B-32", "names no weights"),
        ("/nonexistent/open-clip-dir", "does not exist"),
        ("hf-hub:mmrec-test/not-cached", "hf download mmrec-test/not-cached"),
        ("EMPTY_DIR", "has no open_clip_config.json"),
    ],
)
def test_missing_open_clip_model_fails_fast(spec: str, expected: str, tmp_path: Path) -> None:
    if spec == "EMPTY_DIR":
        spec = str(tmp_path)
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=expected) as caught:
        create(f"open_clip:{spec}", "image")
    assert time.monotonic() - start < 5
    assert "\n" not in str(caught.value)


def test_open_clip_unknown_arch_or_modality() -> None:
    with pytest.raises(UnknownEncoderError, match="not an open_clip architecture"):
        create("open_clip:NoSuchArch/some-tag", "text")
    with pytest.raises(UnknownEncoderError, match="no audio encoder"):
        create("open_clip:ViT-B-32/laion2b_s34b_b79k", "audio")


def test_listing_imports_no_model_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from mmrec.encoders import hf, openclip\n"
        "names = [i.name for i in hf.listed() + openclip.listed()]\n"
        "assert 'open_clip:ViT-B-32/laion2b_s34b_b79k' in names, names\n"
        "heavy = {'torch', 'transformers', 'open_clip'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
