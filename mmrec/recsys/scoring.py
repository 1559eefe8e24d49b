"""A trained model at inference time: item vectors plus a user tower, in numpy.

Every model mmrec trains scores by an inner product, ``score(u, i) = user(u) . item(i)``,
so one faiss index over the item vectors serves recommendations and one matrix
product full-ranks all items for evaluation. What differs is the user side:

- ``twotower``: ``normalise(user_id[u] + mean(item[h] for h in history) @ W + b
  + mean(item[h] for h in the last R of the history) @ W_r + b_r)``, the history in
  time order (oldest first); an unseen user has no id vector and is served by the
  history alone;
- ``bpr``: a known user's own vector; an unseen user is folded in as the mean of the
  history's item vectors (the best the model can do without retraining);
- ``itemknn``: the sum of the history's unit-norm content vectors, i.e. each item
  scores its summed cosine to the history;
- ``pop``: a constant, so items rank by their training popularity.

``twotower`` and ``itemknn`` also keep how an item's vector is made from its content,
so ``--explain`` can measure each modality's share of a score by removing it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrec.enums import ModelKind
from mmrec.errors import StoreError
from mmrec.vectors import unit_rows

WEIGHTS = "weights.safetensors"


@dataclass
class History:
    """Item rows per user (CSR): user ``u`` has ``indices[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    indices: np.ndarray

    @classmethod
    def build(cls, users: np.ndarray, items: np.ndarray, n_users: int) -> History:
        order = np.argsort(users, kind="stable")
        counts = np.bincount(users, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, items[order].astype(np.int64))

    @classmethod
    def of(cls, rows: list[np.ndarray]) -> History:
        counts = np.array([len(r) for r in rows], dtype=np.int64)
        indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
        return cls(np.concatenate([[0], np.cumsum(counts)]), indices)

    def __getitem__(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def take(self, users: np.ndarray) -> History:
        return History.of([self[u] for u in users])

    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def last(self, n: int) -> History:
        """Only each user's ``n`` most recent items (the rows are in time order)."""
        return History.of([self[u][-n:] for u in range(len(self))])


def aggregate(vectors: np.ndarray, history: History, mean: bool) -> np.ndarray:
    """Per user, the sum (or mean) of the history's rows of ``vectors``; zeros if empty."""
    sizes = history.sizes()
    out = np.zeros((len(history), vectors.shape[1]), dtype=np.float32)
    filled = sizes > 0
    if filled.any():
        # reduceat at the non-empty users' starts only: each range then runs to the next
        # non-empty user's start, and the last one to the end (empty users own no rows)
        out[filled] = np.add.reduceat(vectors[history.indices], history.indptr[:-1][filled], axis=0)
    if mean:
        out /= np.maximum(sizes, 1)[:, None]
    return out


@dataclass
class Scorer:
    kind: ModelKind
    items: np.ndarray  # (items, d) the index's vectors
    users: np.ndarray | None = None  # (users, d) id vectors of the training users
    history_weight: np.ndarray | None = None  # (d, d), twotower
    history_bias: np.ndarray | None = None
    item_id: np.ndarray | None = None  # twotower: id vectors, zero for items never trained on
    adapter: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    counts: np.ndarray | None = None  # training interactions per item
    recent_weight: np.ndarray | None = None  # (d, d), twotower: the recent-items term
    recent_bias: np.ndarray | None = None
    recent: int = 0  # how many of the latest history items the recent term averages

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        """One query vector per user row (``-1`` for a user the model never saw)."""
        users = np.asarray(users)
        known = users >= 0
        if self.kind is ModelKind.POP:
            return np.ones((len(users), 1), dtype=np.float32)
        if self.kind is ModelKind.ITEMKNN:
            return aggregate(self.items, history, mean=False)
        own = np.zeros((len(users), self.items.shape[1]), dtype=np.float32)
        if self.users is not None:
            own[known] = self.users[users[known]]
        if self.kind is ModelKind.BPR:
            folded = aggregate(self.items, history, mean=True)
            return np.where(known[:, None], own, folded)
        mixed = aggregate(self.items, history, mean=True) @ self.history_weight + self.history_bias
        if self.recent:
            latest = aggregate(self.items, history.last(self.recent), mean=True)
            mixed += latest @ self.recent_weight + self.recent_bias
        return unit_rows(own + mixed)

    def history_parts(self, user: int, history: np.ndarray, item: int) -> tuple[float, np.ndarray]:
        """How ``score(user, item)`` splits into the user's id part and one part per history item."""
        v = self.items[item]
        if self.kind is ModelKind.ITEMKNN:
            return 0.0, self.items[history] @ v
        if self.kind is ModelKind.BPR:  # no history term: say how alike the items are
            return 0.0, unit_rows(self.items[history]) @ unit_rows(v)
        if self.kind is ModelKind.POP:
            return 0.0, np.zeros(len(history))
        own = self.users[user] if user >= 0 and self.users is not None else 0.0 * v
        vecs = self.items[history]
        raw = own + vecs.mean(axis=0) @ self.history_weight + self.history_bias
        per_item = (vecs @ self.history_weight @ v) / len(history)
        if self.recent:
            latest = vecs[-self.recent :]
            raw = raw + latest.mean(axis=0) @ self.recent_weight + self.recent_bias
            per_item[-len(latest) :] += (latest @ self.recent_weight @ v) / len(latest)
        scale = np.linalg.norm(raw) or 1.0
        return float(own @ v / scale), per_item / scale

    def content_vectors(self, content: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """Item vectors recomputed from ``content`` rows (None for models without content)."""
        if self.kind is ModelKind.ITEMKNN:
            return unit_rows(content)
        if self.kind is not ModelKind.TWOTOWER or not self.adapter:
            return None
        x = content
        for i, (weight, bias) in enumerate(self.adapter):
            x = x @ weight.T + bias
            if i < len(self.adapter) - 1:
                x = np.maximum(x, 0.0)
        return unit_rows(x + self.item_id[rows])

    # -- persistence -------------------------------------------------------------------

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"items": self.items}
        optional = {"users": self.users, "history.weight": self.history_weight,
                    "history.bias": self.history_bias, "item_id": self.item_id,
                    "counts": self.counts, "recent.weight": self.recent_weight,
                    "recent.bias": self.recent_bias}
        out.update({k: v for k, v in optional.items() if v is not None})
        for i, (weight, bias) in enumerate(self.adapter):
            out[f"adapter.{i}.weight"], out[f"adapter.{i}.bias"] = weight, bias
        # copies: safetensors refuses tensors that share memory (pop: items is counts)
        return {k: np.array(v, dtype=np.float32) for k, v in out.items()}

    def save(self, directory: Path) -> None:
        import torch

        from mmrec.atomic import save_safetensors

        save_safetensors(directory / WEIGHTS,
                         {k: torch.from_numpy(v) for k, v in self.tensors().items()},
                         metadata={"model": self.kind.value, "recent": str(self.recent)})

    @classmethod
    def load(cls, directory: Path) -> Scorer:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = directory / WEIGHTS
        if not path.is_file():
            raise StoreError(f"{directory}: missing {WEIGHTS}: not a complete mmrec model")
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as fh:
                meta = fh.metadata() or {}
            kind, recent = ModelKind(meta.get("model", "")), int(meta.get("recent", "0"))
            t = load_file(str(path))
        except (SafetensorError, ValueError, OSError) as exc:
            raise StoreError(f"{path}: unreadable weights ({exc})") from exc
        n_layers = sum(1 for k in t if k.startswith("adapter.") and k.endswith(".weight"))
        adapter = [(t[f"adapter.{i}.weight"], t[f"adapter.{i}.bias"]) for i in range(n_layers)]
        return cls(kind, t["items"], t.get("users"), t.get("history.weight"),
                   t.get("history.bias"), t.get("item_id"), adapter, t.get("counts"),
                   t.get("recent.weight"), t.get("recent.bias"), recent)
