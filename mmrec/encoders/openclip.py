"""open_clip backend: text and image towers of an open_clip model.

Names (after ``open_clip:``):

- ``ARCH/TAG``: a built-in architecture and one of its pretrained tags, e.g.
  ``ViT-B-32/laion2b_s34b_b79k``; the weights must already be in the Hugging Face
  cache (or open_clip's URL cache, ``~/.cache/clip``);
- ``ARCH/path/to/weights.safetensors`` (or ``.bin``/``.pt``/``.pth``): a built-in
  architecture and a local checkpoint;
- ``/path/to/dir``: a directory holding ``open_clip_config.json`` and weights, the
  layout open_clip models have on the hub;
- ``hf-hub:org/repo``: such a directory taken from the Hugging Face cache.

Nothing is downloaded: names are resolved to files when the encoder is created, and a
missing file fails at once with :class:`ModelNotFoundError` saying how to get it. The
text and image encoders of one name share one loaded model per device.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality
from mmrec.errors import ModelNotFoundError, UnknownEncoderError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from mmrec.encoders.registry import EncoderInfo

CONFIG_NAME = "open_clip_config.json"
# What open_clip's local-dir loader picks a checkpoint from.
DIR_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.pth")
URL_CACHE = "~/.cache/clip"  # open_clip's download_pretrained_from_url default
MODALITIES = (Modality.TEXT, Modality.IMAGE)


@dataclass(frozen=True)
class Source:
    """One open_clip model resolved offline: what ``create_model_and_transforms`` gets."""

    model_name: str  # a built-in architecture, or "local-dir:/path"
    pretrained: str | None  # checkpoint file for a built-in architecture
    model_cfg: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)  # a tag's quick_gelu, preprocessing


@dataclass
class Loaded:
    model: Any
    preprocess: Any
    tokenizer: Any


# (encoder name, device) -> the loaded model its text and image encoders share.
_LOADED: dict[tuple[str, str], Loaded] = {}


def clear_cache() -> None:
    """Forget the loaded models (tests; freeing memory)."""
    _LOADED.clear()


def resolve(spec: str) -> Source:
    """Turn a name into config and checkpoint files on this machine, or fail now."""
    if spec.startswith("hf-hub:"):
        return _hub_dir(spec[len("hf-hub:") :])
    path = Path(spec).expanduser()
    if path.is_dir():
        return _local_dir(path)
    if spec.startswith(("/", "./", "../", "~")):
        raise ModelNotFoundError(f"open_clip model directory {spec} does not exist")
    arch, _, pretrained = spec.partition("/")
    model_cfg = _arch_config(arch, spec)
    if not pretrained:
        raise ModelNotFoundError(
            f"open_clip:{spec} names no weights: use open_clip:{arch}/TAG (a pretrained tag "
            f"in your cache) or open_clip:{arch}/path/to/weights.safetensors"
        )
    return _with_weights(arch, pretrained, model_cfg)


def _with_weights(arch: str, pretrained: str, model_cfg: dict[str, Any]) -> Source:
    import open_clip

    _check_hf_text_tower(model_cfg)
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if tag_cfg:
        checkpoint = _cached_tag_file(arch, pretrained, tag_cfg)
        return Source(arch, checkpoint, model_cfg, _tag_options(tag_cfg))
    path = Path(pretrained).expanduser()
    if not path.is_file():
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)[:8]) or "none"
        raise ModelNotFoundError(
            f"open_clip:{arch}/{pretrained}: {pretrained!r} is neither a pretrained tag of "
            f"{arch} (known: {tags}) nor an existing checkpoint file"
        )
    return Source(arch, str(path), model_cfg)


def _arch_config(arch: str, spec: str) -> dict[str, Any]:
    import open_clip

    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise UnknownEncoderError(
            f"open_clip:{spec}: no such directory, and {arch!r} is not an open_clip "
            "architecture (e.g. ViT-B-32, ViT-L-14; see open_clip.list_models())"
        )
    return model_cfg


def _tag_options(tag_cfg: dict[str, Any]) -> dict[str, Any]:
    # open_clip applies these itself when given a tag; handing it the checkpoint file
    # instead (so that it never downloads) we pass them on explicitly.
    return {
        "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
        "image_mean": tag_cfg.get("mean"),
        "image_std": tag_cfg.get("std"),
        "image_interpolation": tag_cfg.get("interpolation"),
        "image_resize_mode": tag_cfg.get("resize_mode"),
    }


def _hub_weight_names(filename: str) -> list[str]:
    """Candidate files in a hub repo, safetensors first as open_clip prefers them."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    filename = filename or HF_WEIGHTS_NAME
    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _cached_tag_file(arch: str, tag: str, tag_cfg: dict[str, Any]) -> str:
    from huggingface_hub import try_to_load_from_cache

    # open_clip writes hub sources as "org/repo/" (default file) or "org/repo/file".
    repo, filename = os.path.split(tag_cfg.get("hf_hub", ""))
    if repo:
        for name in _hub_weight_names(filename):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):  # not None, not the "known absent" marker
                return found
    url = tag_cfg.get("url", "")
    if url:
        found_path = Path(URL_CACHE).expanduser() / os.path.basename(url)
        if found_path.is_file():
            return str(found_path)
    how = f"run `hf download {repo}`" if repo else f"download {url} into {URL_CACHE}"
    raise ModelNotFoundError(
        f"open_clip weights {arch}/{tag} are not on this machine and mmrec does not "
        f"download: {how} on a machine with internet, or pass "
        f"open_clip:{arch}/path/to/weights.safetensors"
    )


def _local_dir(path: Path) -> Source:
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        other = " (a transformers model? use hf:DIR)" if (path / "config.json").is_file() else ""
        raise ModelNotFoundError(
            f"{path} has no {CONFIG_NAME}, so it is not an open_clip model directory{other}; "
            f"for a bare checkpoint use open_clip:ARCH/{path}/FILE"
        )
    if not any(any(path.glob(pattern)) for pattern in DIR_WEIGHT_GLOBS):
        raise ModelNotFoundError(f"open_clip model directory {path} holds no weights "
                                 "(*.safetensors, *.bin or *.pth)")
    model_cfg = json.loads(config_file.read_text()).get("model_cfg")
    if not model_cfg:
        raise ModelNotFoundError(f"{config_file} has no model_cfg: not an open_clip config")
    _check_hf_text_tower(model_cfg)
    return Source(f"local-dir:{path.resolve()}", None, model_cfg)


def _hub_dir(repo: str) -> Source:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, CONFIG_NAME)
    if not isinstance(found, str):
        raise ModelNotFoundError(
            f"open_clip model hf-hub:{repo} is not on this machine and mmrec does not "
            f"download: run `hf download {repo}` on a machine with internet, or pass "
            "open_clip:/path/to/dir"
        )
    return _local_dir(Path(found).parent)


def _check_hf_text_tower(model_cfg: dict[str, Any]) -> None:
    """A transformers text tower is built from its config by name: it must be local.

    open_clip fetches that config without ``local_files_only``; checking first turns a
    network wait into an immediate, explicit error.
    """
    name = model_cfg.get("text_cfg", {}).get("hf_model_name")
    if not name or Path(name).is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        raise ModelNotFoundError(
            f"the open_clip text tower {name!r} is not in the Hugging Face cache: run "
            f"`hf download {name}` on a machine with internet"
        )


def _tokenizer_kwargs(model_cfg: dict[str, Any]) -> dict[str, Any]:
    # Only transformers tokenizers take (and need) this; open_clip's own would reject it.
    if model_cfg.get("text_cfg", {}).get("hf_tokenizer_name"):
        return {"local_files_only": True}
    return {}


def load_model(name: str, source: Source, device: torch.device) -> Loaded:
    """The model for ``name`` on ``device``, loaded once and shared by both towers."""
    key = (name, str(device))
    if key not in _LOADED:
        _LOADED[key] = _build(name, source, device)
    return _LOADED[key]


def _build(name: str, source: Source, device: torch.device) -> Loaded:
    import open_clip
    import torch

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            source.model_name, pretrained=source.pretrained, device=device, **source.options
        )
        tokenizer = open_clip.get_tokenizer(source.model_name, **_tokenizer_kwargs(source.model_cfg))
    except torch.cuda.OutOfMemoryError:  # not a checkpoint problem: keep it as is
        raise
    except (RuntimeError, ValueError, OSError) as exc:
        # Typically a checkpoint that does not fit the architecture (strict loading).
        raise ModelNotFoundError(
            f"cannot load {name}: {str(exc).strip().splitlines()[0]}",
            hint="check that the checkpoint was trained with this architecture",
        ) from exc
    return Loaded(model.eval(), preprocess, tokenizer)


class OpenCLIPEncoder(Encoder):
    """The text or image tower of an open_clip model (unnormalised ``encode_*``)."""

    def __init__(self, spec: str, modality: Modality) -> None:
        super().__init__()
        self.name = f"open_clip:{spec}"
        self.modality = modality
        self.source = resolve(spec)
        self.dim = int(self.source.model_cfg["embed_dim"])
        self.loaded: Loaded | None = None

    def load(self, device: torch.device) -> None:
        self.loaded = load_model(self.name, self.source, device)
        super().load(device)

    def encode_batch(self, inputs: Sequence[Any]) -> torch.Tensor:
        assert self.loaded is not None  # Encoder.encode refuses to run before load()
        if self.modality is Modality.TEXT:
            tokens = self.loaded.tokenizer(list(inputs)).to(self.device)
            return self.loaded.model.encode_text(tokens)
        return self.loaded.model.encode_image(self._pixels(inputs))

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        import torch

        return torch.stack([self.loaded.preprocess(image) for image in images]).to(self.device)


def create(spec: str, modality: Modality) -> Encoder:
    if modality not in MODALITIES:
        raise UnknownEncoderError(
            f"open_clip:{spec} has no {modality.value} encoder; open_clip models encode: "
            + ", ".join(m.value for m in MODALITIES)
        )
    return OpenCLIPEncoder(spec, modality)


# A few well-known checkpoints (embed_dim from open_clip's configs), listed without
# importing open_clip.
_KNOWN = (
    ("ViT-B-32/laion2b_s34b_b79k", 512, "LAION-2B ViT-B/32"),
    ("ViT-B-32/openai", 512, "OpenAI CLIP ViT-B/32"),
    ("ViT-B-16/laion2b_s34b_b88k", 512, "LAION-2B ViT-B/16"),
    ("ViT-L-14/laion2b_s32b_b82k", 768, "LAION-2B ViT-L/14"),
)


def listed() -> list[EncoderInfo]:
    from mmrec.encoders.registry import EncoderInfo

    infos = [
        EncoderInfo(f"open_clip:{spec}", modality, dim, False, f"{text} {modality.value}")
        for spec, dim, text in _KNOWN
        for modality in MODALITIES
    ]
    generic = "any open_clip ARCH/TAG, ARCH/path/to/weights, a model dir or hf-hub:org/repo"
    infos += [
        EncoderInfo("open_clip:<ARCH/PRETRAINED or dir>", modality, None, False, generic)
        for modality in MODALITIES
    ]
    return infos
