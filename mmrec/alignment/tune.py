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
    from mmrec.store import Store

# Tuning re-encodes every batch with gradients: on a CPU short inputs keep a step cheap,
# and titles, names and keywords rarely need more.
TUNE_MAX_TOKENS = 64


def weights_file(modality: str) -> str:
    return f"tuned-{modality}.safetensors"


def tunable_encoder(name: str) -> Encoder:
    """The store's text encoder, if it is a transformers text model that can be tuned."""
    from mmrec.encoders.hf import HFTextEncoder
    from mmrec.encoders.registry import create

    encoder = create(name, "text")
    if not isinstance(encoder, HFTextEncoder):
        raise ConfigError(f"--tune text: the store's text encoder {name} cannot be tuned",
                          hint="tuning needs a transformers text model "
                               "(builtin:minilm-l6-v2 or hf:<text model>)")
    return encoder


def item_texts(store: Store, ids: list[str], mask: np.ndarray) -> list[str]:
    """The texts the store's text vectors were encoded from, read again from its catalog.

    Items without text get ``""`` (their mask keeps them out of every loss); a text
    that no longer matches the store's content hash is refused: tuning on other texts
    than the vectors' would mix two datasets.
    """
    from mmrec.catalog import read_catalog
    from mmrec.enums import Modality

    catalog = store.manifest.get("catalog")
    if not catalog or not Path(catalog).is_file():
        raise ConfigError(f"--tune text re-encodes the items' texts, but the store's catalog "
                          f"{catalog or '(none recorded)'} is not readable",
                          hint="re-run `mmrec encode` from the catalog, or align without --tune")
    items = {it.id: it for it in read_catalog(catalog, store.manifest.get("text_fields") or None).items}
    hashes = store.hashes()
    texts = []
    for item_id, present in zip(ids, mask, strict=True):
        item = items.get(item_id)
        if present and (item is None or item.content_hash(Modality.TEXT)
                        != hashes.get(item_id, {}).get("text")):
            raise ConfigError(f"--tune text: the text of item {item_id!r} in {catalog} changed "
                              "since the store was encoded", hint="re-run `mmrec encode` first")
        texts.append(item.text if present else "")
    return texts


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


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class TunedText:
    """The text side of training when the encoder tunes: batch vectors with gradients."""

    modality = "text"

    def __init__(self, encoder: Any, texts: list[str], config: AlignConfig,
                 device: torch.device) -> None:
        encoder.load(device)
        self.encoder, self.texts, self.config = encoder, texts, config
        # eval mode: no dropout, so a query later encodes exactly as the items did
        self.params = unfreeze_top(encoder.model.eval(), config.tune_layers)
        self.lower = None
        if LowerCache.usable(encoder.model):
            first = len(transformer_layers(encoder.model)) - config.tune_layers
            self.lower = LowerCache(encoder.model, encoder.tokenizer, texts, first, device)

    def vectors(self, rows: torch.Tensor) -> torch.Tensor:
        """Unit text vectors of ``rows`` (store row numbers), differentiable."""
        import torch

        rows = [int(r) for r in rows]
        if self.lower is None:
            raw = self.encoder.embed([self.texts[r] for r in rows], TUNE_MAX_TOKENS)
        else:
            hidden, mask = self.lower.hidden(rows)
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

    def state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.params.items()}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        import torch

        with torch.no_grad():
            for name, value in state.items():
                self.params[name].copy_(value)

    def param_group(self) -> dict[str, Any]:
        return {"params": list(self.params.values()), "lr": self.config.tune_lr,
                "weight_decay": self.config.weight_decay}

    def schedule(self, total: int) -> Any:
        return lambda step: warmup_cosine(step, self.config.tune_warmup, total)


def prepare(store: Store, config: AlignConfig, arrays: Any, head_modalities: list[str],
            steps: int, device: torch.device) -> TunedText | None:
    """The tuned text source of one align run, or None without ``--tune``; every
    reason it cannot run is a one-line error before any training."""
    from mmrec import distributed as dist
    from mmrec.enums import TuneTarget

    if config.tune is TuneTarget.NONE:
        return None
    if "text" not in head_modalities:
        raise ConfigError("--tune text needs text among the aligned modalities")
    if steps == 0:
        raise ConfigError("--tune text needs training steps, not --steps 0")
    if dist.world().size > 1:
        raise ConfigError("--tune runs in one process, not under torchrun",
                          hint="align with --tune on one machine, or without --tune")
    encoder = tunable_encoder(store.encoder("text"))
    texts = item_texts(store, arrays.ids, arrays.masks["text"])
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
