"""transformers backend: ``hf:<model id or local dir>``.

Text models are any ``AutoModel`` with mean pooling over the attention mask (the
sentence-transformers recipe). CLIP and CLAP checkpoints are joint models: each of
their towers goes through the model's own projection (``get_text_features``,
``get_image_features``, ``get_audio_features``) so that text and images (or audio)
land in one space. Weights come from a local directory or the hub cache; nothing is
downloaded.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality
from mmrec.errors import ModelNotFoundError, UnknownEncoderError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image
    from transformers import PretrainedConfig

    from mmrec.encoders.registry import EncoderInfo

# model_type -> the towers mmrec can use; each has get_<modality>_features and a
# projection_dim shared by its towers.
JOINT_MODALITIES: dict[str, tuple[Modality, ...]] = {
    "clip": (Modality.TEXT, Modality.IMAGE),
    "clap": (Modality.TEXT, Modality.AUDIO),
}

# Loaded joint models, shared by the towers of one checkpoint (a CLIP's text and image
# encoders load the weights once per device). `clear_cache()` empties it.
_MODELS: dict[tuple[str, str], Any] = {}


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", "\\")) or Path(model).exists()


def _pretrained_kwargs(model: str) -> dict:
    # A local directory is used as is; a hub id must already be in the cache: we ask
    # for local files explicitly (transformers would otherwise try the network) and say
    # how to get the model when it is absent.
    return {} if Path(model).is_dir() else {"local_files_only": True}


def _missing(model: str, exc: Exception) -> ModelNotFoundError:
    if Path(model).is_dir():
        return ModelNotFoundError(
            f"cannot load transformers model from {model}: {str(exc).splitlines()[0]}",
            hint="the directory should hold what `save_pretrained` writes (config.json, "
            "weights, tokenizer or processor files)",
        )
    return ModelNotFoundError(
        f"transformers model {model!r} is not on this machine and mmrec does not download: "
        f"pass a local directory (hf:/path/to/model) or run `hf download {model}` on a "
        "machine with internet to fill the Hugging Face cache",
        hint="set HF_HOME or HF_HUB_CACHE if your cache lives elsewhere",
    )


def _resolve(model: str) -> str:
    """The reference transformers gets: a user path expanded, or the hub id as given."""
    if not _looks_like_path(model):
        return model
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"model directory {model} does not exist: pass a directory written by "
            "`save_pretrained`, or a hub id already in the Hugging Face cache"
        )
    return str(path)


def load_config(model: str) -> PretrainedConfig:
    """The model's config, from a local directory or the hub cache, never the network."""
    from transformers import AutoConfig

    try:
        with quiet_loading():
            return AutoConfig.from_pretrained(model, **_pretrained_kwargs(model))
    except (OSError, ValueError) as exc:
        raise _missing(model, exc) from exc


def modalities(config: PretrainedConfig) -> tuple[Modality, ...]:
    """What mmrec can encode with a model of this config."""
    joint = JOINT_MODALITIES.get(config.model_type)
    if joint is not None:
        return joint
    # Text models have a vocabulary; vision backbones (ViT, ResNet, ...) do not, and
    # a tokenizer plus mean pooling would fail on them much later with a worse error.
    has_vocab = getattr(config, "vocab_size", None) or hasattr(config, "text_config")
    return (Modality.TEXT,) if has_vocab else ()


def clear_cache() -> None:
    """Forget the loaded joint models (tests; freeing memory)."""
    _MODELS.clear()


class HFTextEncoder(Encoder):
    """Any transformers text model, mean-pooled over non-padding tokens."""

    modality = Modality.TEXT

    def __init__(self, model: str, name: str | None = None, max_length: int = 256,
                 dim: int | None = None) -> None:
        super().__init__()
        self.model_ref = model
        self.name = name or f"hf:{model}"
        self.max_length = max_length
        # A known dim spares importing transformers when nothing needs encoding.
        self.dim = dim or self._read_dim()

    def _read_dim(self) -> int:
        config = load_config(self.model_ref)
        dim = getattr(config, "hidden_size", None) or getattr(
            getattr(config, "text_config", None), "hidden_size", None
        )
        if not dim:
            raise UnknownEncoderError(f"{self.model_ref!r} has no hidden_size: not a text model")
        return int(dim)

    def load(self, device: torch.device) -> None:
        from transformers import AutoModel, AutoTokenizer

        kwargs = _pretrained_kwargs(self.model_ref)
        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_ref, **kwargs)
                self.model = AutoModel.from_pretrained(self.model_ref, **kwargs)
        except (OSError, ValueError) as exc:
            raise _missing(self.model_ref, exc) from exc
        self.model.eval().to(device)
        super().load(device)

    def encode_batch(self, inputs: Sequence[str]) -> torch.Tensor:
        return self.embed(inputs)

    def embed(self, inputs: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """Raw mean-pooled vectors, with gradients where the model has them (tuning)."""
        batch = self.tokenizer(
            list(inputs),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _features(output: Any) -> torch.Tensor:
    """The projected embeddings out of a ``get_*_features`` call.

    transformers 4.x returns the tensor itself; 5.x returns a ModelOutput whose
    ``pooler_output`` holds the projected (for CLAP also normalised) vectors.
    """
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"unexpected output of get_*_features: {type(output).__name__}")
    return pooled


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """No progress bars or info logs from transformers and huggingface_hub while loading.

    Their "Loading weights" bars ignore whether stderr is a terminal, so CI logs fill
    up. Warnings stay (a checkpoint missing weights must still say so), and every
    setting is restored afterwards: the caller's own use of transformers is untouched.
    """
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    bars, hub_bars_off = hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hub.disable_progress_bars()
    hf_logging.set_verbosity(max(verbosity, hf_logging.WARNING))
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if not hub_bars_off:
            hub.enable_progress_bars()


def _load_joint_model(model: str, device: torch.device) -> Any:
    key = (model, str(device))
    if key not in _MODELS:
        import torch
        from transformers import AutoModel

        try:
            # float32 whatever the checkpoint's dtype: inputs from the processors are
            # float32, and mixed precision is the runtime's autocast, not a load option.
            with quiet_loading():
                loaded = AutoModel.from_pretrained(
                    model, dtype=torch.float32, **_pretrained_kwargs(model)
                )
        except (OSError, ValueError) as exc:
            raise _missing(model, exc) from exc
        _MODELS[key] = loaded.eval().to(device)
    return _MODELS[key]


def _load_processor(model: str, modality: Modality) -> Any:
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    loader = {
        Modality.TEXT: AutoTokenizer,
        Modality.IMAGE: AutoImageProcessor,
        Modality.AUDIO: AutoFeatureExtractor,
    }[modality]
    try:
        with quiet_loading():
            return loader.from_pretrained(model, **_pretrained_kwargs(model))
    except (OSError, ValueError) as exc:
        raise _missing(model, exc) from exc


class HFJointEncoder(Encoder):
    """One tower of a transformers CLIP or CLAP model, through the model's projection."""

    def __init__(
        self,
        model: str,
        modality: Modality,
        config: PretrainedConfig,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.model_ref = model
        self.modality = modality
        self.name = name or f"hf:{model}"
        self.dim = int(config.projection_dim)
        self.config = config
        self.processor: Any = None
        if modality is Modality.AUDIO:
            # Callers resample to `sample_rate` before `load()`, so read it now.
            self.processor = _load_processor(model, modality)
            self.sample_rate = int(self.processor.sampling_rate)

    def load(self, device: torch.device) -> None:
        if self.processor is None:
            self.processor = _load_processor(self.model_ref, self.modality)
        self.model = _load_joint_model(self.model_ref, device)
        super().load(device)

    def encode_batch(self, inputs: Sequence[Any]) -> torch.Tensor:
        if self.modality is Modality.TEXT:
            return _features(self._text_features(list(inputs)))
        if self.modality is Modality.IMAGE:
            return _features(self._image_features(list(inputs)))
        return _features(self._audio_features(list(inputs)))

    def _text_max_length(self) -> int:
        positions = int(self.config.text_config.max_position_embeddings)
        if self.config.model_type == "clap":
            positions -= 2  # RoBERTa position ids start after padding_idx (= 1)
        return min(positions, int(self.processor.model_max_length))

    def _text_features(self, texts: list[str]) -> Any:
        batch = self.processor(
            texts,
            padding=True,
            truncation=True,
            max_length=self._text_max_length(),
            return_tensors="pt",
        ).to(self.device)
        return self.model.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )

    def _image_features(self, images: list[Image.Image]) -> Any:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        return self.model.get_image_features(pixel_values=pixels.to(self.device))

    def _audio_features(self, waves: list[np.ndarray]) -> Any:
        batch = _seeded_features(self.processor, waves, self.sample_rate)
        wanted = ("input_features", "is_longer")
        kwargs = {k: v.to(self.device) for k, v in batch.items() if k in wanted}
        return self.model.get_audio_features(**kwargs)


def _seeded_features(extractor: Any, waves: list[np.ndarray], sample_rate: int) -> Any:
    """Run a CLAP feature extractor with numpy's global RNG fixed, then restored.

    Clips longer than its window are cropped at random positions (``rand_trunc``) or
    fused from random chunks (``fusion``) with ``np.random``; a fixed seed keeps the
    same audio giving the same vector, without touching the caller's RNG stream.
    """
    import numpy as np

    state = np.random.get_state()
    np.random.seed(0)
    try:
        return extractor(waves, sampling_rate=sample_rate, return_tensors="pt")
    finally:
        np.random.set_state(state)


def _unsupported(spec: str, config: PretrainedConfig, modality: Modality) -> UnknownEncoderError:
    can = ", ".join(m.value for m in modalities(config))
    if not can:
        return UnknownEncoderError(
            f"hf:{spec} is a {config.model_type} model; the hf backend takes text models, "
            "CLIP (text, image) and CLAP (text, audio)"
        )
    return UnknownEncoderError(
        f"hf:{spec} is a {config.model_type} model with no {modality.value} encoder; "
        f"it can encode: {can}"
    )


def create(spec: str, modality: Modality) -> Encoder:
    model = _resolve(spec)
    config = load_config(model)
    if modality not in modalities(config):
        raise _unsupported(spec, config, modality)
    # a directory is named by its absolute path, so the same model spelt two ways
    # (relative from elsewhere) is one encoder to the store
    name = f"hf:{Path(model).resolve()}" if _looks_like_path(spec) else f"hf:{spec}"
    if config.model_type in JOINT_MODALITIES:
        return HFJointEncoder(model, modality, config, name=name)
    return HFTextEncoder(model, name=name)


def listed() -> list[EncoderInfo]:
    from mmrec.encoders.registry import EncoderInfo

    def info(name: str, modality: Modality, dim: int | None, text: str) -> EncoderInfo:
        return EncoderInfo(name, modality, dim, False, text)

    return [
        info("hf:<model id or dir>", Modality.TEXT, None,
             "any transformers text model (mean pooling); CLIP/CLAP: their text tower"),
        info("hf:<CLIP model id or dir>", Modality.IMAGE, None, "CLIP image tower"),
        info("hf:<CLAP model id or dir>", Modality.AUDIO, None, "CLAP audio tower, 48 kHz"),
        info("hf:openai/clip-vit-base-patch32", Modality.TEXT, 512, "CLIP ViT-B/32 text"),
        info("hf:openai/clip-vit-base-patch32", Modality.IMAGE, 512, "CLIP ViT-B/32 image"),
        info("hf:laion/clap-htsat-unfused", Modality.TEXT, 512, "CLAP text"),
        info("hf:laion/clap-htsat-unfused", Modality.AUDIO, 512, "CLAP audio, 48 kHz"),
    ]
