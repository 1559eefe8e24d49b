"""``mmrec train --tune text``: the items' text encoder tuned on behaviour.

The two-tower item tower reads each item's content row; with ``--tune text`` the text
block of those rows comes from the store's text encoder with its top ``layers``
transformer layers unfrozen (the lower layers' states cached once, as ``align --tune``
does), so the gradient of the recommendation loss reaches the encoder: a small learning
rate with linear warm-up and cosine decay, in the trainer's own optimizer, early-stopped
with the rest of the model on validation NDCG@20.

A bounded step. A two-tower step at batch 1024 touches nearly every item of a small
catalog (its positives, negatives and the users' histories): re-encoding them all with
gradients cost 18 s a step on ml-100k (one CPU thread). So only the step's positives,
the candidates the loss ranks (unique, at most ``rows`` of them, a seeded sample
beyond), go through the tuned layers with gradients; every other touched row (histories, recent windows, extra and hard negatives, positives beyond ``rows``)
takes its text vector from a cache of the tuned encoder's vectors, detached. The cache
is filled once at the start, overwritten by each step's freshly encoded rows and
refreshed for every item at every export (each epoch's validation, hard-negative
mining), so an exported model's item vectors are exactly the tuned encoder's. This is
the stale-embedding (memory-bank) trade of MoCo's queue (He et al. 2020) and of cached
item embeddings in two-tower training: the context the user tower averages lags the
encoder by at most an epoch, at a small learning rate. On ml-100k a step costs 0.23 CPU s
at the default 64 rows, 0.08 untuned (bench/README).

The tuning object keeps the tensors of the epoch early stopping keeps
(:meth:`TunedContent.keep`), saved in the model directory (``tuned-text.safetensors``);
every item vector the model holds, the cold items' included, was computed with them,
and :func:`tuned_content` re-encodes new items' text with them (``mmrec update``).
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
REFRESH_BATCH = 256  # texts per inference pass when the cache is refreshed


@dataclass
class ContentTuning:
    """The options of ``train --tune text`` (the text encoder's top layers on behaviour)."""

    layers: int = 1  # transformer layers unfrozen, from the top
    lr: float = 2e-5  # their peak learning rate
    warmup: int = 20  # optimizer steps of linear warm-up, then cosine decay
    # a step's positives encoded with gradients, at most (the rest: cache); 64: on ml-100k
    # cold-item the best validation NDCG@20 of 64/128/256/1024 (32 ties), ~3x an untuned
    # step's CPU time (bench/README)
    rows: int = 64

    def check(self) -> ContentTuning:
        if self.layers < 1:
            raise ConfigError(f"--tune-layers must be at least 1, got {self.layers}")
        if not self.lr > 0:
            raise ConfigError(f"--tune-lr must be positive, got {self.lr}")
        if self.warmup < 0:
            raise ConfigError(f"--tune-warmup must be >= 0, got {self.warmup}")
        if isinstance(self.rows, bool) or not isinstance(self.rows, int) or self.rows < 1:
            raise ConfigError(f"--tune-rows must be a whole number of at least 1, got {self.rows}")
        return self


class TunedContent:
    """The text block of content rows: the step's positives (at most ``rows``) re-encoded
    with gradients by the tuned encoder, every other row from the cache of its vectors."""

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
        self.rows = tuning.rows
        self.block = content.blocks["text"]
        self.present = torch.from_numpy(present).to(device)
        self.rng = np.random.default_rng(seed)
        self.encoded = 0  # rows encoded with gradients so far (what a step's bound bounds)
        self.kept: dict[str, torch.Tensor] | None = None
        start, end = self.block
        self.cache = torch.empty(len(content.ids), end - start, device=device)
        self.refresh()

    def refresh(self) -> None:
        """Every item's cached text vector from the tuned encoder as it is now (export)."""
        import torch

        with torch.inference_mode():
            for at in range(0, len(self.cache), REFRESH_BATCH):
                part = torch.arange(at, min(at + REFRESH_BATCH, len(self.cache)))
                self.cache[part] = self.tuned.vectors(part).to(self.cache.dtype)

    def fresh(self, rows: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """Places in ``rows`` of the rows a step encodes with gradients: the unique
        ``positives``, a seeded sample of ``self.rows`` of them where there are more."""
        chosen = np.unique(positives)
        if len(chosen) > self.rows:
            chosen = np.sort(self.rng.choice(chosen, self.rows, replace=False))
        return np.flatnonzero(np.isin(rows, chosen))

    def splice(self, rows_content: torch.Tensor, rows: np.ndarray,
               positives: np.ndarray | None = None) -> torch.Tensor:
        """``rows_content`` (the content rows of ``rows``) with the tuned text block: the
        cached vectors, but for the rows of ``positives`` (a training step; see
        :meth:`fresh`), encoded now with gradients and written to the cache."""
        import torch

        index = torch.from_numpy(rows).to(self.cache.device)
        text = self.cache[index]
        if positives is not None and torch.is_grad_enabled():
            places = self.fresh(rows, positives)
            if len(places):
                vectors = self.tuned.vectors(torch.from_numpy(rows[places])).to(text.dtype)
                self.encoded += len(places)
                where = torch.from_numpy(places).to(text.device)
                self.cache[index[where]] = vectors.detach()
                text = text.index_copy(0, where, vectors)
        text = text * self.present[index][:, None].to(text.dtype)
        start, end = self.block
        return torch.cat([rows_content[:, :start], text.to(rows_content.dtype),
                          rows_content[:, end:]], dim=1)

    def attach(self, trainer: Any, total_steps: int) -> None:
        """Train the tuned layers in ``trainer``'s optimizer, on their own schedule (the
        trainer splices its rows and refreshes the cache on export through ``self``)."""
        trainer.tuned_text = self
        trainer.optimizer.add_param_group(self.tuned.param_group())
        scheduler = trainer.scheduler
        scheduler.lr_lambdas.append(self.tuned.schedule(total_steps))
        scheduler.base_lrs.append(self.tuned.config.tune_lr)
        trainer.optimizer.param_groups[-1]["lr"] = (
            self.tuned.config.tune_lr * scheduler.lr_lambdas[-1](scheduler.last_epoch))

    def keep(self) -> None:
        """Keep the encoder's tensors as they are now: early stopping keeps this epoch."""
        self.kept = {k: v.cpu().contiguous() for k, v in self.tuned.export().items()}

    def info(self) -> dict[str, Any]:
        config = self.tuned.config
        return {"modality": "text", "encoder": self.tuned.encoder.name, "layers": config.tune_layers,
                "lr": config.tune_lr, "warmup": config.tune_warmup, "rows": self.rows,
                "encoded": self.encoded, "file": WEIGHTS, "tensors": sorted(self.tuned.export())}


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
