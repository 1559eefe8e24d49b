"""``mmrec train --tune text``: the items' text encoder tuned on behaviour.

The two-tower item tower reads each item's content row; with ``--tune text`` the text
block of those rows is re-encoded at every step by the store's text encoder with its
top ``layers`` transformer layers unfrozen (the lower layers' states cached once, as
``align --tune`` does), so the gradient of the recommendation loss reaches the
encoder: a small learning rate with linear warm-up and cosine decay, in the trainer's
own optimizer, early-stopped with the rest of the model on validation NDCG@20. The
kept epoch's tuned tensors are saved in the model directory
(``tuned-text.safetensors``); every item vector the model holds, the cold items'
included, was computed with them, and :func:`tuned_content` re-encodes new items'
text with them (``mmrec update``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrec.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from mmrec.recsys.data import Content

WEIGHTS = "tuned-text.safetensors"


@dataclass
class ContentTuning:
    """The options of ``train --tune text`` (the text encoder's top layers on behaviour)."""

    layers: int = 1  # transformer layers unfrozen, from the top
    lr: float = 2e-5  # their peak learning rate
    warmup: int = 20  # optimizer steps of linear warm-up, then cosine decay

    def check(self) -> ContentTuning:
        if self.layers < 1:
            raise ConfigError(f"--tune-layers must be at least 1, got {self.layers}")
        if not self.lr > 0:
            raise ConfigError(f"--tune-lr must be positive, got {self.lr}")
        if self.warmup < 0:
            raise ConfigError(f"--tune-warmup must be >= 0, got {self.warmup}")
        return self


class TunedContent:
    """The text block of content rows, re-encoded with gradients by the tuned encoder."""

    def __init__(self, content: Content, tuning: ContentTuning, seed: int,
                 device: torch.device) -> None:
        import torch

        from mmrec.alignment.config import AlignConfig
        from mmrec.alignment.tune import TunedText, item_texts, tunable_encoder

        if "text" not in content.blocks:
            raise ConfigError("--tune text needs the items' text vectors: train from --store "
                              "(an aligner's fused vectors have no text encoder to tune)")
        store = content.store
        _, mask = store.matrix("text")
        rows = np.array([store.row(i) for i in content.ids], dtype=np.int64)
        present = np.asarray(mask, dtype=bool)[rows]
        encoder = tunable_encoder(store.encoder("text"), "text")
        texts = item_texts(store, content.ids, present)
        config = AlignConfig(tune="text", tune_layers=tuning.layers, tune_lr=tuning.lr,
                             tune_warmup=tuning.warmup, seed=seed).validate()
        self.tuned = TunedText(encoder, texts, config, device)
        self.block = content.blocks["text"]
        self.present = torch.from_numpy(present).to(device)

    def splice(self, rows_content: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """``rows_content`` (the content rows of ``rows``) with the tuned text block."""
        import torch

        start, end = self.block
        text = self.tuned.vectors(torch.from_numpy(rows))
        text = text * self.present[torch.from_numpy(rows).to(text.device)][:, None].to(text.dtype)
        return torch.cat([rows_content[:, :start], text.to(rows_content.dtype),
                          rows_content[:, end:]], dim=1)

    def attach(self, trainer: Any, total_steps: int) -> None:
        """Train the tuned layers in ``trainer``'s optimizer, on their own schedule; every
        export carries the encoder's tensors at that moment (the kept epoch's are saved)."""
        trainer.tuned_text = self
        trainer.optimizer.add_param_group(self.tuned.param_group())
        scheduler = trainer.scheduler
        scheduler.lr_lambdas.append(self.tuned.schedule(total_steps))
        scheduler.base_lrs.append(self.tuned.config.tune_lr)
        trainer.optimizer.param_groups[-1]["lr"] = (
            self.tuned.config.tune_lr * scheduler.lr_lambdas[-1](scheduler.last_epoch))
        export = trainer.export

        def export_with_weights() -> Any:
            scorer = export()
            scorer.tuned_text = {k: v.cpu().contiguous() for k, v in self.tuned.export().items()}
            return scorer

        trainer.export = export_with_weights

    def info(self) -> dict[str, Any]:
        config = self.tuned.config
        return {"modality": "text", "encoder": self.tuned.encoder.name, "layers": config.tune_layers,
                "lr": config.tune_lr, "warmup": config.tune_warmup, "file": WEIGHTS,
                "tensors": sorted(self.tuned.export())}


def tuned_content(model_dir: Path, content: Content, device: Any = "cpu") -> Content:
    """``content`` with its text block re-encoded by the model's tuned text encoder, where
    the model has one (new items then get the text vectors its training used)."""
    import torch

    from mmrec.alignment.tune import item_texts, load_query_encoder, tunable_encoder

    if not (Path(model_dir) / WEIGHTS).is_file() or "text" not in content.blocks:
        return content
    store = content.store
    encoder = tunable_encoder(store.encoder("text"), "text")
    load_query_encoder(Path(model_dir), encoder, "text", torch.device(device))
    _, mask = store.matrix("text")
    rows = np.array([store.row(i) for i in content.ids], dtype=np.int64)
    present = np.asarray(mask, dtype=bool)[rows]
    texts = [t[0] for t in item_texts(store, content.ids, present)]
    start, end = content.blocks["text"]
    matrix = np.array(content.matrix, dtype=np.float32)
    have = present.nonzero()[0]
    if len(have):
        matrix[have, start:end] = encoder.encode([texts[i] for i in have])
    from dataclasses import replace

    return replace(content, matrix=matrix)
