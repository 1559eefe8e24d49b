"""Trained models at inference time: item vectors plus a user side, in numpy.

Every model mmrec trains scores by an inner product, ``score(u, i) = user(u) . item(i)``,
so one faiss index over the item vectors serves recommendations and one matrix
product full-ranks all items for evaluation. What differs is the user side, one
class per model behind the :class:`Scorer` protocol:

- :class:`TwoTowerScorer`: ``normalise(user_id[u] + mean(item[h] for h in history) @ W
  + b + mean(item[h] for h in the last R of the history) @ W_r + b_r)``, the history in
  time order (oldest first); an unseen user has no id vector and is served by the
  history alone;
- :class:`BPRScorer`: a known user's own vector; an unseen user is folded in as the
  mean of the history's item vectors (the best the model can do without retraining);
- :class:`ItemKNNScorer`: the sum of the history's unit-norm content vectors, i.e.
  each item scores its summed cosine to the history;
- :class:`PopScorer`: a constant, so items rank by their training popularity;
- :class:`EASEScorer` and :class:`ItemCFScorer`: an item-item weight matrix ``W``
  (items x items); the user side is the history's 0/1 indicator, each item's vector is
  its column of ``W``, so an item scores the sum of its weights from the history;
- :class:`IALSScorer`: a known user's own factors; an unseen user's are solved from the
  history (the same least squares a training sweep solves, exactly).

``twotower`` and ``itemknn`` also keep how an item's vector is made from its content,
so ``--explain`` can measure each modality's share of a score by removing it.
On disk (``weights.safetensors``) the tensors of every model share one namespace and
the metadata names the model; :data:`SCORERS` maps that name back to its class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from mmrec.enums import ModelKind
from mmrec.errors import ModelError
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
class Parts:
    """How one score splits, as numbers (see ``Scorer.explain``).

    ``history``: one number per history item, in history order; ``similar`` says they
    are cosine similarities rather than shares of the score. ``user``: the user's own
    vector's share (None for a user the model never saw), only for models that have one.
    """

    history: np.ndarray | None = None
    similar: bool = False
    has_user: bool = False
    user: float | None = None
    popularity: int | None = None


class Scorer(Protocol):
    """What recommend, evaluate and save/load need of a trained model."""

    kind: ClassVar[ModelKind]
    uses_content: ClassVar[bool]  # item vectors are recomputable from store content
    items: np.ndarray  # (items, d): the index's vectors
    counts: np.ndarray  # (items,): training interactions per item

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        """One query vector per user row (``-1`` for a user the model never saw)."""

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        """How ``score(user, item)`` splits between the user's own part and its history."""

    def content_vectors(self, content: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """Item vectors recomputed from ``content`` rows (None for models without content)."""

    def tensors(self) -> dict[str, np.ndarray]:
        """Every array to save, by its key in the weights file."""

    def metadata(self) -> dict[str, str]:
        """Scalars to save beside the tensors."""

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict[str, str]) -> Scorer:
        """The scorer back from what ``tensors`` and ``metadata`` saved."""


@dataclass
class _Base:
    """Item vectors and training counts, saved under their own names."""

    kind: ClassVar[ModelKind]
    uses_content: ClassVar[bool] = False
    items: np.ndarray
    counts: np.ndarray

    def content_vectors(self, content: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        return None

    def tensors(self) -> dict[str, np.ndarray]:
        return {"items": self.items, "counts": self.counts}

    def metadata(self) -> dict[str, str]:
        return {}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict[str, str]) -> Any:
        return cls(t["items"], t["counts"])


@dataclass
class PopScorer(_Base):
    kind: ClassVar[ModelKind] = ModelKind.POP

    @classmethod
    def of_counts(cls, counts: np.ndarray) -> PopScorer:
        counts = np.asarray(counts, dtype=np.float32)
        return cls(counts[:, None].copy(), counts)

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        return np.ones((len(users), 1), dtype=np.float32)

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        return Parts(popularity=int(self.counts[item]))


@dataclass
class ItemKNNScorer(_Base):
    kind: ClassVar[ModelKind] = ModelKind.ITEMKNN
    uses_content: ClassVar[bool] = True

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        return aggregate(self.items, history, mean=False)

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        return Parts(history=self.items[history] @ self.items[item])

    def content_vectors(self, content: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        return unit_rows(content)


@dataclass
class BPRScorer(_Base):
    users: np.ndarray  # (users, d)

    kind: ClassVar[ModelKind] = ModelKind.BPR

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        users = np.asarray(users)
        known = users >= 0
        own = np.zeros((len(users), self.items.shape[1]), dtype=np.float32)
        own[known] = self.users[users[known]]
        folded = aggregate(self.items, history, mean=True)
        return np.where(known[:, None], own, folded)

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        # no history term in the score: say how alike the items are instead
        return Parts(history=unit_rows(self.items[history]) @ unit_rows(self.items[item]),
                     similar=True)

    def tensors(self) -> dict[str, np.ndarray]:
        return {**super().tensors(), "users": self.users}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict[str, str]) -> BPRScorer:
        return cls(t["items"], t["counts"], t["users"])


@dataclass
class _ItemItem(_Base):
    """``items[i]`` is column ``i`` of the item-item weights: ``score(u, i) = sum_h W[h, i]``."""

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        out = np.zeros((len(history), self.items.shape[0]), dtype=np.float32)
        out[np.repeat(np.arange(len(history)), history.sizes()), history.indices] = 1.0
        return out

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        return Parts(history=self.items[item][history])  # the score is exactly their sum


@dataclass
class EASEScorer(_ItemItem):
    kind: ClassVar[ModelKind] = ModelKind.EASE


@dataclass
class ItemCFScorer(_ItemItem):
    kind: ClassVar[ModelKind] = ModelKind.ITEMCF


@dataclass
class IALSScorer(_Base):
    users: np.ndarray  # (users, factors)
    reg: float = 0.1
    alpha: float = 10.0

    kind: ClassVar[ModelKind] = ModelKind.IALS

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        users = np.asarray(users)
        return np.stack([self.users[u] if u >= 0 else self.fold_in(history[n])
                         for n, u in enumerate(users)]) if len(users) else self.users[:0]

    def fold_in(self, history: np.ndarray) -> np.ndarray:
        """The exact least-squares user vector of a history the model never trained on."""
        if not len(history):
            return np.zeros(self.items.shape[1], dtype=np.float32)
        y, mine = self.items, self.items[np.unique(history)]
        a = y.T @ y + self.alpha * mine.T @ mine + self.reg * np.eye(y.shape[1], dtype=np.float32)
        return np.linalg.solve(a, (1 + self.alpha) * mine.sum(0)).astype(np.float32)

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        return Parts(history=unit_rows(self.items[history]) @ unit_rows(self.items[item]),
                     similar=True)

    def tensors(self) -> dict[str, np.ndarray]:
        return {**super().tensors(), "users": self.users}

    def metadata(self) -> dict[str, str]:
        return {"reg": repr(self.reg), "alpha": repr(self.alpha)}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict[str, str]) -> IALSScorer:
        return cls(t["items"], t["counts"], t["users"], float(meta["reg"]), float(meta["alpha"]))


@dataclass
class Linear:
    """``x @ weight + bias``: a user-tower term over averaged history item vectors."""

    weight: np.ndarray  # (d, d), already transposed from torch's layout
    bias: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight + self.bias


@dataclass
class TwoTowerScorer(_Base):
    users: np.ndarray  # (users, d) id vectors of the training users
    history: Linear
    item_id: np.ndarray  # id vectors, zero for items never trained on
    adapter: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    recent: int = 0  # how many of the latest history items the recent term averages
    recent_term: Linear | None = None

    kind: ClassVar[ModelKind] = ModelKind.TWOTOWER
    uses_content: ClassVar[bool] = True

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        users = np.asarray(users)
        known = users >= 0
        own = np.zeros((len(users), self.items.shape[1]), dtype=np.float32)
        own[known] = self.users[users[known]]
        mixed = self.history(aggregate(self.items, history, mean=True))
        if self.recent:
            mixed += self.recent_term(aggregate(self.items, history.last(self.recent), mean=True))
        return unit_rows(own + mixed)

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        v = self.items[item]
        own = self.users[user] if user >= 0 else np.zeros_like(v)
        vecs = self.items[history]
        raw = own + self.history(vecs.mean(axis=0))
        per_item = (vecs @ self.history.weight @ v) / len(history)
        if self.recent:
            latest = vecs[-self.recent :]
            raw = raw + self.recent_term(latest.mean(axis=0))
            per_item[-len(latest) :] += (latest @ self.recent_term.weight @ v) / len(latest)
        scale = float(np.linalg.norm(raw)) or 1.0
        return Parts(history=per_item / scale, has_user=True,
                     user=float(own @ v / scale) if user >= 0 else None)

    def content_vectors(self, content: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        if not self.adapter:
            return None
        x = content
        for i, (weight, bias) in enumerate(self.adapter):
            x = x @ weight.T + bias
            if i < len(self.adapter) - 1:
                x = np.maximum(x, 0.0)
        return unit_rows(x + self.item_id[rows])

    def tensors(self) -> dict[str, np.ndarray]:
        out = {**super().tensors(), "users": self.users, "item_id": self.item_id,
               "history.weight": self.history.weight, "history.bias": self.history.bias}
        if self.recent_term is not None:
            out["recent.weight"], out["recent.bias"] = self.recent_term.weight, self.recent_term.bias
        for i, (weight, bias) in enumerate(self.adapter):
            out[f"adapter.{i}.weight"], out[f"adapter.{i}.bias"] = weight, bias
        return out

    def metadata(self) -> dict[str, str]:
        return {"recent": str(self.recent)}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict[str, str]) -> TwoTowerScorer:
        n_layers = sum(1 for k in t if k.startswith("adapter.") and k.endswith(".weight"))
        adapter = [(t[f"adapter.{i}.weight"], t[f"adapter.{i}.bias"]) for i in range(n_layers)]
        recent = Linear(t["recent.weight"], t["recent.bias"]) if "recent.weight" in t else None
        return cls(t["items"], t["counts"], t["users"], Linear(t["history.weight"], t["history.bias"]),
                   t["item_id"], adapter, int(meta.get("recent", "0")), recent)


SCORERS: dict[ModelKind, type[Scorer]] = {
    cls.kind: cls for cls in (TwoTowerScorer, BPRScorer, ItemKNNScorer, PopScorer, EASEScorer,
                              ItemCFScorer, IALSScorer)
}


def save_scorer(scorer: Scorer, directory: Path) -> None:
    import torch

    from mmrec.atomic import save_safetensors

    # copies: safetensors refuses tensors that share memory (pop: items is counts)
    tensors = {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in scorer.tensors().items()}
    save_safetensors(directory / WEIGHTS, tensors,
                     metadata={"model": scorer.kind.value, **scorer.metadata()})


def load_scorer(directory: Path) -> Scorer:
    """The scorer in ``directory``'s weights file, as the class its metadata names."""
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load_file

    path = directory / WEIGHTS
    if not path.is_file():
        raise ModelError(f"{directory}: missing {WEIGHTS}: not a complete mmrec model")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        cls = SCORERS[ModelKind(meta.get("model", ""))]
        return cls.from_tensors(load_file(str(path)), meta)
    except (SafetensorError, ValueError, OSError, KeyError) as exc:
        raise ModelError(f"{path}: unreadable weights ({exc})") from exc
