"""Encoder tuning in the manner of LiT (Zhai et al. 2022): ``mmrec align --tune text``.

LiT locks the image tower and tunes the text tower. Here the store's image (and audio)
vectors stay frozen while the top ``tune_layers`` transformer layers of the text
encoder train at a small learning rate (linear warm-up, then cosine decay) together
with the heads: each batch's texts are re-encoded with gradients by :class:`TunedText`.
Only the unfrozen layers' tensors are saved (``tuned-text.safetensors`` in the aligner),
and :func:`load_query_encoder` applies them wherever an aligner encodes a query.
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.errors import AlignerError, ConfigError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mmrec.alignment.config import AlignConfig
    from mmrec.encoders.base import Encoder
    from mmrec.enums import TuneParams
    from mmrec.store import Store

# Tuning re-encodes every batch with gradients: on a CPU short inputs keep a step cheap,
# and titles, names and keywords rarely need more.
TUNE_MAX_TOKENS = 64


def weights_file(modality: str) -> str:
    return f"tuned-{modality}.safetensors"


def tunable_encoder(name: str, modality: str = "text") -> Encoder:
    """The store's encoder of ``modality``, if it is one that can be tuned: a transformers
    text model, or the default EfficientNet-Lite0 image model."""
    from mmrec.encoders.builtin import EfficientNetLite0Encoder
    from mmrec.encoders.hf import HFTextEncoder
    from mmrec.encoders.registry import create

    encoder = create(name, modality)
    kind, needs = {"text": (HFTextEncoder, "a transformers text model (builtin:minilm-l6-v2 "
                                           "or hf:<text model>)"),
                   "image": (EfficientNetLite0Encoder, "builtin:efficientnet-lite0")}[modality]
    if not isinstance(encoder, kind):
        raise ConfigError(f"--tune {modality}: the store's {modality} encoder {name} cannot be tuned",
                          hint=f"tuning needs {needs}")
    return encoder


def catalog_items(store: Store, ids: list[str], mask: np.ndarray, modality: str) -> tuple[list, Any]:
    """The catalog items behind the store's ``modality`` vectors, in row order (None where
    absent), and the catalog. An item whose content no longer matches the store's hash is
    refused: tuning on other inputs than the vectors' would mix two datasets."""
    from mmrec.catalog import read_catalog
    from mmrec.enums import Modality

    catalog = store.manifest.get("catalog")
    if not catalog or not Path(catalog).is_file():
        raise ConfigError(f"--tune {modality} re-encodes the items, but the store's catalog "
                          f"{catalog or '(none recorded)'} is not readable",
                          hint="re-run `mmrec encode` from the catalog, or align without --tune")
    read = read_catalog(catalog, store.manifest.get("text_fields") or None)
    items = {it.id: it for it in read.items}
    hashes = store.hashes()
    out = []
    for item_id, present in zip(ids, mask, strict=True):
        item = items.get(item_id)
        if present and (item is None or item.content_hash(Modality(modality))
                        != hashes.get(item_id, {}).get(modality)):
            raise ConfigError(f"--tune {modality}: the {modality} of item {item_id!r} in {catalog} "
                              "changed since the store was encoded", hint="re-run `mmrec encode` first")
        out.append(item if present else None)
    return out, read


def item_texts(store: Store, ids: list[str], mask: np.ndarray,
               variants: int = 0, seed: int = 0) -> list[list[str]]:
    """The texts the store's text vectors were encoded from, read again from its catalog,
    each followed by ``variants`` captions sampled from the item's fields (:func:`captions`);
    ``[""]`` for items without text (their mask keeps them out of every loss)."""
    import numpy as np

    items, read = catalog_items(store, ids, mask, "text")
    rng = np.random.default_rng(seed)
    return [[item.text, *captions(item.metadata, read.text_fields, variants, rng)]
            if item is not None else [""] for item in items]


# a field that names the item's group: not in the encoded text, but a caption of it
GROUP_FIELDS = ("category",)


def captions(record: dict[str, Any], fields: list[str], n: int, rng: Any) -> list[str]:
    """``n`` captions of one item made from its own text fields, as CLIP-style training
    samples one caption of several per step: a random non-empty choice of the fields
    (and of the category), each list-like field (``a, b, c``) cut to a random non-empty
    subset of its parts in random order. Variety keeps the tuned tower from memorising
    the one exact string of each training item."""
    parts = []
    for name in [*fields, *(f for f in GROUP_FIELDS if f not in fields)]:
        value = record.get(name)
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        if value not in (None, "") and str(value).strip():
            text = str(value).strip()
            if name in GROUP_FIELDS:
                text = text.replace("/", ", ").replace("-", " ")
            parts.append([p.strip() for p in text.split(",") if p.strip()])
    out = []
    for _ in range(n if parts else 0):
        keep = [p for p in parts if rng.random() < 0.5] or [parts[rng.integers(len(parts))]]
        chosen = []
        for field_parts in keep:
            some = [q for q in field_parts if rng.random() < 0.5] or [field_parts[0]]
            chosen.append(", ".join(some if len(field_parts) == 1 else rng.permutation(some)))
        out.append(". ".join(chosen))
    return out


def _stacks(model: torch.nn.Module) -> list[tuple[str, torch.nn.ModuleList]]:
    import torch

    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, torch.nn.ModuleList) and name.split(".")[-1] in ("layer", "layers")]


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of transformer blocks (BERT's ``encoder.layer``, ``layers``, ...)."""
    stacks = _stacks(model)
    if not stacks:
        raise ConfigError(f"--tune: no transformer layer stack found in {type(model).__name__}")
    return max(stacks, key=lambda s: len(s[1]))[1]


class LowerCache:
    """The frozen lower layers' output per text, computed once, so a training step runs
    only the unfrozen top layers (on a CPU that is what makes tuning affordable: with 2
    of MiniLM's 6 layers unfrozen, a step costs about a third of a full forward+backward).

    A step swaps the model's layer stack for its top slice and has the embeddings module
    return the cached states; padded positions are zeros under the attention mask, so
    the top layers see exactly what a full forward would give them.
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, texts: list[str],
                 first: int, device: torch.device, batch_size: int = 64) -> None:
        import torch

        self.model, self.first, self.device = model, first, device
        self.states: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                  max_length=TUNE_MAX_TOKENS, return_tensors="pt").to(device)
                hidden = model(**batch, output_hidden_states=True).hidden_states[first]
                for row, length in zip(hidden, batch["attention_mask"].sum(1).tolist(), strict=True):
                    self.states.append(row[:length].clone())

    @staticmethod
    def usable(model: torch.nn.Module) -> bool:
        """BERT-like: an ``embeddings`` module feeding one layer stack held by ``model``."""
        stacks = _stacks(model)
        return hasattr(model, "embeddings") and len(stacks) == 1 and "." in stacks[0][0]

    @contextlib.contextmanager
    def _top_only(self, states: torch.Tensor) -> Iterator[None]:
        import torch

        name, stack = _stacks(self.model)[0]
        parent = self.model.get_submodule(name.rsplit(".", 1)[0])
        attr = name.rsplit(".", 1)[1]
        setattr(parent, attr, torch.nn.ModuleList(list(stack)[self.first:]))
        hook = self.model.embeddings.register_forward_hook(lambda *_: states)
        try:
            yield
        finally:
            hook.remove()
            setattr(parent, attr, stack)

    def hidden(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states of ``rows`` through the top layers, and their attention mask."""
        import torch

        lengths = [len(self.states[r]) for r in rows]
        states = torch.nn.utils.rnn.pad_sequence([self.states[r] for r in rows], batch_first=True)
        mask = (torch.arange(states.shape[1])[None, :] < torch.tensor(lengths)[:, None]).long()
        ids = torch.zeros_like(mask)  # shapes only: the embeddings' output is replaced
        with self._top_only(states):
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
        return out.last_hidden_state, mask.to(self.device)


def unfreeze_top(model: torch.nn.Module, layers: int) -> dict[str, torch.nn.Parameter]:
    """Freeze ``model`` but its top ``layers`` blocks; their parameters, by state-dict name."""
    stack = transformer_layers(model)
    if layers > len(stack):
        raise ConfigError(f"--tune-layers {layers}: the text encoder has {len(stack)} layers")
    model.requires_grad_(False)
    for block in stack[len(stack) - layers:]:
        block.requires_grad_(True)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def trainable_top(model: torch.nn.Module, layers: int, kind: TuneParams,
                  rank: int = 8) -> dict[str, torch.nn.Parameter]:
    """Freeze ``model`` but the chosen parameters of its top ``layers`` blocks (``kind``:
    every weight, BitFit's biases and LayerNorms, or new LoRA factors); the trainable
    tensors, by name."""
    import torch

    from mmrec.enums import TuneParams

    params = unfreeze_top(model, layers)
    if kind is TuneParams.LAYERS:
        return params
    model.requires_grad_(False)
    if kind is TuneParams.BITFIT:
        for name, p in params.items():
            if name.endswith("bias") or "layernorm" in name.lower():
                p.requires_grad_(True)
        return {n: p for n, p in params.items() if p.requires_grad}
    from torch.nn.utils import parametrize

    top = {n.rsplit(".", 1)[0] for n in params}
    targets = [m for name, m in model.named_modules() if name in top and isinstance(m, torch.nn.Linear)
               and name.rsplit(".", 1)[-1] in LORA_TARGETS]
    if not targets:
        raise ConfigError(f"--tune-params lora: no attention query/value projection in the top "
                          f"{layers} layers of {type(model).__name__}", hint="use layers or bitfit")
    for module in targets:
        parametrize.register_parametrization(
            module, "weight", low_rank(module.out_features, module.in_features, rank))
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


# LoRA's choice: the attention's query and value projections (BERT and GPT-style names)
LORA_TARGETS = ("query", "value", "q_proj", "v_proj", "q", "v")


@functools.cache
def _low_rank_module() -> type:
    import torch

    class LowRank(torch.nn.Module):
        """``weight + up @ down``: a rank-``rank`` update that starts at zero (LoRA)."""

        def __init__(self, out_features: int, in_features: int, rank: int) -> None:
            super().__init__()
            self.down = torch.nn.Parameter(torch.randn(rank, in_features) / math.sqrt(in_features))
            self.up = torch.nn.Parameter(torch.zeros(out_features, rank))

        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return weight + self.up @ self.down

    return LowRank


def low_rank(out_features: int, in_features: int, rank: int) -> torch.nn.Module:
    return _low_rank_module()(out_features, in_features, rank)


def tuned_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors that tuning changes, by their plain state-dict names, with
    gradients: a LoRA-wrapped weight as the merged ``weight + up @ down``."""
    from torch.nn.utils import parametrize

    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            out[f"{name}.weight"] = module.weight
    for name, p in model.named_parameters():
        if p.requires_grad and ".parametrizations." not in name:
            out[name] = p
    return out


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class TunedEncoder:
    """What the training loop needs of a tuned encoder, either modality: differentiable
    batch vectors (``vectors``), refreshed matrices, and its weights kept, restored,
    exported, penalised and optimised. Subclasses set ``encoder``, ``config``,
    ``params`` (the trainable tensors) and ``pretrained`` (their starting values)."""

    modality = ""
    encoder: Any
    config: AlignConfig
    params: dict[str, Any]
    pretrained: dict[str, Any]

    def state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (a copy): what early stopping keeps and restores."""
        return {name: p.detach().clone() for name, p in self.params.items()}

    def export(self) -> dict[str, torch.Tensor]:
        """The changed tensors by the encoder's own names (LoRA merged): what is saved."""
        return {name: t.detach().clone() for name, t in tuned_tensors(self.encoder.model).items()}

    def penalty(self) -> torch.Tensor | float:
        """L2-SP (Li et al. 2018): ``tune_l2sp * ||theta - theta_pretrained||^2``, a pull
        toward the pretrained weights rather than toward zero."""
        if not self.config.tune_l2sp:
            return 0.0
        current = tuned_tensors(self.encoder.model)
        return self.config.tune_l2sp * sum(((current[n] - p0) ** 2).sum()
                                           for n, p0 in self.pretrained.items())

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        import torch

        with torch.no_grad():
            for name, value in state.items():
                self.params[name].copy_(value)

    def param_group(self) -> dict[str, Any]:
        # with L2-SP the pull is toward the pretrained weights, not decay toward zero
        decay = 0.0 if self.config.tune_l2sp else self.config.weight_decay
        return {"params": list(self.params.values()), "lr": self.config.tune_lr,
                "weight_decay": decay}

    def schedule(self, total: int) -> Any:
        return lambda step: warmup_cosine(step, self.config.tune_warmup, total)



class TunedText(TunedEncoder):
    """The text side of training when the encoder tunes: batch vectors with gradients."""

    modality = "text"

    def __init__(self, encoder: Any, texts: list[str] | list[list[str]], config: AlignConfig,
                 device: torch.device) -> None:
        import numpy as np

        encoder.load(device)
        # each row's captions: [0] the text its vector was encoded from, then variants
        variants = [t if isinstance(t, list) else [t] for t in texts]
        self.encoder, self.config = encoder, config
        self.texts = [v[0] for v in variants]
        self.flat = [c for v in variants for c in v]
        self.start = np.cumsum([0] + [len(v) for v in variants])[:-1]
        self.count = np.array([len(v) for v in variants])
        self.rng = np.random.default_rng(config.seed)
        # eval mode: no dropout, so a query later encodes exactly as the items did
        self.params = trainable_top(encoder.model.eval(), config.tune_layers,
                                    config.tune_params, config.tune_rank)
        self.pretrained = {n: t.detach().clone() for n, t in tuned_tensors(encoder.model).items()}
        self.lower = None
        if LowerCache.usable(encoder.model):
            first = len(transformer_layers(encoder.model)) - config.tune_layers
            self.lower = LowerCache(encoder.model, encoder.tokenizer, self.flat, first, device)

    def vectors(self, rows: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Unit text vectors of ``rows`` (store row numbers), differentiable; with
        ``sample`` (training) of one caption drawn per row, else of the row's text."""
        import torch

        rows = [int(r) for r in rows]
        picks = [int(self.start[r]) + (int(self.rng.integers(self.count[r])) if sample else 0)
                 for r in rows]
        if self.lower is None:
            raw = self.encoder.embed([self.flat[p] for p in picks], TUNE_MAX_TOKENS)
        else:
            hidden, mask = self.lower.hidden(picks)
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            raw = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(raw.float(), dim=-1)

    def encode(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and raw norms of ``rows`` as the tuned encoder makes them now."""
        return self.encoder.encode([self.texts[int(r)] for r in rows], return_norms=True)

    def refresh(self, matrix: np.ndarray, norms: np.ndarray | None, rows: np.ndarray) -> None:
        """Overwrite ``rows`` of the text matrix (and norms) with the tuned encoder's."""
        if len(rows):
            matrix[rows], fresh = self.encode(rows)
            if norms is not None:
                norms[rows] = fresh

    def refresh_quick(self, matrix: np.ndarray, rows: np.ndarray, batch_size: int = 256) -> None:
        """As :meth:`refresh` for a validation check: through the cached lower layers
        where there are any (the same vectors for texts within ``TUNE_MAX_TOKENS``)."""
        import torch

        if self.lower is None:
            return self.refresh(matrix, None, rows)
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                part = rows[start:start + batch_size]
                matrix[part] = self.vectors(torch.as_tensor(part)).cpu().numpy()


def image_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """EfficientNet's tunable units from the bottom: its MBConv blocks, then the head
    (``_conv_head`` + ``_bn1``)."""
    import torch

    if not all(hasattr(model, a) for a in ("_blocks", "_conv_head", "_bn1")):
        raise ConfigError(f"--tune image: no EfficientNet block stack in {type(model).__name__}")
    return [*model._blocks, torch.nn.ModuleList([model._conv_head, model._bn1])]


class TunedImage(TunedEncoder):
    """The image side when the image encoder tunes (the text tower locked): the top
    ``tune_layers`` units of EfficientNet (1: the 1x1 head conv; 2: the last MBConv block
    too, ...) train; the feature maps entering them are computed once per image, so a
    step runs only those units, and every image vector (and raw norm, which the ImageNet
    bridge reads) is refreshed from the same cache, exactly as a full forward gives it:
    images are resized to one size and the model runs in eval mode (no drop-connect,
    batch-norm statistics frozen)."""

    modality = "image"

    def __init__(self, encoder: Any, images: list[Path | None], config: AlignConfig,
                 device: torch.device, batch_size: int = 16) -> None:
        import torch

        from mmrec.catalog import load_image
        from mmrec.enums import TuneParams

        if config.tune_params is TuneParams.LORA:
            raise ConfigError("--tune image trains --tune-params layers or bitfit, not lora")
        encoder.load(device)
        self.encoder, self.config, self.device = encoder, config, device
        model = encoder.model.eval()
        units = image_units(model)
        if config.tune_layers > len(units):
            raise ConfigError(f"--tune-layers {config.tune_layers}: the image encoder has "
                              f"{len(units)} blocks (with its head)")
        model.requires_grad_(False)
        for unit in units[len(units) - config.tune_layers:]:
            unit.requires_grad_(True)
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if config.tune_params is TuneParams.BITFIT:
            for name, p in self.params.items():
                p.requires_grad_(name.endswith("bias") or "_bn" in name)
            self.params = {n: p for n, p in self.params.items() if p.requires_grad}
        self.pretrained = {n: p.detach().clone() for n, p in self.params.items()}
        self.first = len(model._blocks) - (config.tune_layers - 1)
        shape, self.states = None, []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                part = images[start:start + batch_size]
                present = [load_image(p) for p in part if p is not None]
                maps = self._lower(encoder._pixels(present)) if present else None
                shape = shape or (maps.shape[1:] if maps is not None else None)
                it = iter(maps.cpu() if maps is not None else [])
                self.states.extend(next(it) if p is not None else None for p in part)
        zero = torch.zeros(shape) if shape is not None else None
        self.states = [s if s is not None else zero for s in self.states]

    def _lower(self, pixels: torch.Tensor) -> torch.Tensor:
        model = self.encoder.model
        x = model._swish(model._bn0(model._conv_stem(pixels)))
        for block in model._blocks[:self.first]:
            x = block(x)
        return x

    def _top(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled raw features from the cached maps (as ``extract_features`` + mean)."""
        model = self.encoder.model
        for block in model._blocks[self.first:]:
            x = block(x)
        return model._swish(model._bn1(model._conv_head(x))).mean(dim=(2, 3))

    def _raw(self, rows: Any) -> torch.Tensor:
        import torch

        return self._top(torch.stack([self.states[int(r)] for r in rows]).to(self.device))

    def vectors(self, rows: torch.Tensor, sample: bool = False) -> torch.Tensor:
        import torch

        return torch.nn.functional.normalize(self._raw(rows).float(), dim=-1)

    def refresh(self, matrix: np.ndarray, norms: np.ndarray | None, rows: np.ndarray,
                batch_size: int = 64) -> None:
        import torch

        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                part = rows[start:start + batch_size]
                raw = self._raw(part).float()
                length = raw.norm(dim=-1, keepdim=True)
                matrix[part] = (raw / length.clamp(min=1e-12)).cpu().numpy()
                if norms is not None:
                    norms[part] = length[:, 0].cpu().numpy()

    def refresh_quick(self, matrix: np.ndarray, rows: np.ndarray) -> None:
        self.refresh(matrix, None, rows)


def prepare(store: Store, config: AlignConfig, arrays: Any, head_modalities: list[str],
            steps: int, device: torch.device) -> TunedEncoder | None:
    """The tuned encoder of one align run, or None without ``--tune``; every reason it
    cannot run is a one-line error before any training."""
    from mmrec import distributed as dist
    from mmrec.enums import TuneTarget

    if config.tune is TuneTarget.NONE:
        return None
    modality = config.tune.value
    if modality not in head_modalities:
        raise ConfigError(f"--tune {modality} needs {modality} among the aligned modalities")
    if steps == 0:
        raise ConfigError(f"--tune {modality} needs training steps, not --steps 0")
    if dist.world().size > 1:
        raise ConfigError("--tune runs in one process, not under torchrun",
                          hint="align with --tune on one machine, or without --tune")
    encoder = tunable_encoder(store.encoder(modality), modality)
    if modality == "image":
        items, _ = catalog_items(store, arrays.ids, arrays.masks["image"], "image")
        return TunedImage(encoder, [it.image if it else None for it in items], config, device)
    texts = item_texts(store, arrays.ids, arrays.masks["text"], config.tune_captions, config.seed)
    return TunedText(encoder, texts, config, device)


def load_query_encoder(aligner_path: Path, encoder: Encoder, modality: str,
                       device: torch.device) -> Encoder:
    """Load ``encoder`` and apply the aligner's tuned weights for ``modality``, if any."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    encoder.load(device)
    path = Path(aligner_path) / weights_file(modality)
    if not path.is_file():
        return encoder
    try:
        tensors = load_file(str(path), device=str(device))
        unexpected = encoder.model.load_state_dict(tensors, strict=False).unexpected_keys
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise AlignerError(f"{path}: cannot apply the tuned {modality} weights "
                           f"({str(exc).splitlines()[0]})") from None
    if unexpected:
        raise AlignerError(f"{path}: tuned weights {unexpected[0]!r} are not in {encoder.name}")
    return encoder
