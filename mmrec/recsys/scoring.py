"""Trained models at inference time: item vectors plus a user side, in numpy.

Every model mmrec trains scores by an inner product, ``score(u, i) = user(u) . item(i)``,
so one faiss index over the item vectors serves recommendations and one matrix
product full-ranks all items for evaluation. What differs is the user side, one
class per model behind the :class:`Scorer` protocol:

- :class:`TwoTowerScorer`: ``normalise(user_id[u] + mean(item[h] for h in history) @ W
  + b + mean(item[h] for h in the last R of the history) @ W_r + b_r)``, the history in
  time order (oldest first); an unseen user has no id vector and is served by the
  history alone; with an item-item term, ``+ w * sum_h W[h, i]`` (EASE's ``W``, as
  extra item columns and a weighted history indicator on the user side);
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

from dataclasses import dataclass, field, replace
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
    # queries' columns from this one on are a history's sparse indicator (None: all dense),
    # which evaluation multiplies as a sparse matrix (mmrec.recsys.evaluate.chunked_top_k)
    sparse_from: ClassVar[int | None] = None
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

    sparse_from: ClassVar[int | None] = 0  # the query is the history's indicator

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
    """``items`` is ``[tower vector | item-item column]``: the first ``d`` columns are the
    item tower's unit vectors; when the model carries an item-item term (see
    mmrec.recsys.twotower), the other ``n0`` (the items at training) hold item ``i``'s
    EASE column ``W[:, i]``, zero for items added later, and the user side appends
    ``item_item_weight`` times the history's 0/1 indicator over those ``n0`` items. So
    ``score = cos(user tower, item tower) + item_item_weight * sum_h W[h, i]``, still one
    inner product: one faiss index and one matrix product rank it, as for every model."""

    users: np.ndarray  # (users, d) id vectors of the training users
    history: Linear
    item_id: np.ndarray  # id vectors, zero for items never trained on
    adapter: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    recent: int = 0  # how many of the latest history items the recent term averages
    recent_term: Linear | None = None
    item_item_weight: float = 0.0  # the item-item term's weight in the score

    kind: ClassVar[ModelKind] = ModelKind.TWOTOWER
    uses_content: ClassVar[bool] = True

    @property
    def dim(self) -> int:
        """The towers' width ``d``."""
        return self.users.shape[1]

    @property
    def item_item_items(self) -> int:
        """``n0``: the items the item-item columns span (0: no item-item term)."""
        return self.items.shape[1] - self.dim

    @property
    def tower_items(self) -> np.ndarray:
        return self.items[:, : self.dim]

    @property
    def sparse_from(self) -> int | None:  # type: ignore[override]
        """The item-item part of a query (after the tower's ``d``) is the history's indicator."""
        return self.dim if self.item_item_items else None

    def user_vectors(self, users: np.ndarray, history: History) -> np.ndarray:
        users = np.asarray(users)
        known = users >= 0
        tower = self.tower_items
        own = np.zeros((len(users), self.dim), dtype=np.float32)
        own[known] = self.users[users[known]]
        mixed = self.history(aggregate(tower, history, mean=True))
        if self.recent:
            mixed += self.recent_term(aggregate(tower, history.last(self.recent), mean=True))
        out = unit_rows(own + mixed)
        n0 = self.item_item_items
        if not n0:
            return out
        indicator = np.zeros((len(history), n0), dtype=np.float32)
        owner = np.repeat(np.arange(len(history)), history.sizes())
        inside = history.indices < n0  # items added after training have no item-item column
        indicator[owner[inside], history.indices[inside]] = self.item_item_weight
        return np.hstack([out, indicator])

    def item_query(self, rows: np.ndarray) -> np.ndarray:
        """``(1, dim)`` query for items like ``rows``: their mean tower vector, and with an
        item-item term the rows as a history (each item then adds its W weights)."""
        tower = self.tower_items[rows].mean(axis=0, keepdims=True)
        if not self.item_item_items:
            return tower
        indicator = np.zeros((1, self.item_item_items), dtype=np.float32)
        indicator[0, rows[rows < self.item_item_items]] = self.item_item_weight
        return np.hstack([tower, indicator])

    def explain(self, user: int, history: np.ndarray, item: int) -> Parts:
        v = self.tower_items[item]
        own = self.users[user] if user >= 0 else np.zeros_like(v)
        vecs = self.tower_items[history]
        raw = own + self.history(vecs.mean(axis=0))
        per_item = (vecs @ self.history.weight @ v) / len(history)
        if self.recent:
            latest = vecs[-self.recent :]
            raw = raw + self.recent_term(latest.mean(axis=0))
            per_item[-len(latest) :] += (latest @ self.recent_term.weight @ v) / len(latest)
        scale = float(np.linalg.norm(raw)) or 1.0
        per_item = per_item / scale
        n0 = self.item_item_items
        if n0:  # the item-item term splits exactly over the history: weight * W[h, item]
            inside = history < n0
            per_item[inside] += self.item_item_weight * self.items[item, self.dim + history[inside]]
        return Parts(history=per_item, has_user=True,
                     user=float(own @ v / scale) if user >= 0 else None)

    def content_vectors(self, content: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """Item vectors from content with the rows' id vectors; the item-item columns are
        the rows' own (zero for rows past the scorer's items: new items have none)."""
        if not self.adapter:
            return None
        x = content
        for i, (weight, bias) in enumerate(self.adapter):
            x = x @ weight.T + bias
            if i < len(self.adapter) - 1:
                x = np.maximum(x, 0.0)
        out = unit_rows(x + self.item_id[rows])
        if not self.item_item_items:
            return out
        columns = np.zeros((len(rows), self.item_item_items), dtype=np.float32)
        inside = np.asarray(rows) < len(self.items)
        columns[inside] = self.items[np.asarray(rows)[inside], self.dim :]
        return np.hstack([out, columns])

    def bandit_context(self, query: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """See :func:`bandit_context`: the item-item term as one more dimension, the
        user's item-item score of each row, with prior weight 1."""
        if not self.item_item_items:
            return query, self.items[rows]
        d = self.dim
        scores = self.items[rows, d:] @ query[d:]
        return np.append(query[:d], 1.0), np.hstack([self.items[rows, :d], scores[:, None]])

    def cold_vectors(self, content: np.ndarray) -> np.ndarray | None:
        """Vectors of items the model never trained on, from their content: zero id
        vectors and no item-item column (exactly how it scores a cold item)."""
        cold = replace(self, item_id=np.zeros((len(content), self.dim), np.float32), items=self.items[:0])
        return cold.content_vectors(content, np.arange(len(content)))

    def with_item_item(self, weights: np.ndarray | None, weight: float) -> TwoTowerScorer:
        """This tower with the item-item term ``weight * W`` (``weights``: ``(n0, n0)``,
        ``W[h, i]`` the weight from history item ``h`` to item ``i``, ``n0`` <= items),
        replacing any it had; None: the tower alone."""
        tower = self.tower_items
        if weights is None:
            return replace(self, items=np.ascontiguousarray(tower), item_item_weight=0.0)
        # written in place: at 10k items every items x items temporary is 400 MB
        items = np.zeros((len(tower), self.dim + weights.shape[0]), dtype=np.float32)
        items[:, : self.dim] = tower
        items[: weights.shape[1], self.dim :] = weights.T
        return replace(self, items=items, item_item_weight=float(weight))

    def item_item_weights(self) -> np.ndarray | None:
        """``W`` (``(n0, n0)``), as :meth:`with_item_item` took it; None without the term."""
        n0 = self.item_item_items
        return np.ascontiguousarray(self.items[:n0, self.dim :].T) if n0 else None

    def tensors(self) -> dict[str, np.ndarray]:
        # the tower vectors and W apart: the rows added after training hold no W column
        out = {"items": self.tower_items, "counts": self.counts, "users": self.users,
               "item_id": self.item_id, "history.weight": self.history.weight,
               "history.bias": self.history.bias}
        if self.item_item_items:
            out["item_item"] = self.item_item_weights()
        if self.recent_term is not None:
            out["recent.weight"], out["recent.bias"] = self.recent_term.weight, self.recent_term.bias
        for i, (weight, bias) in enumerate(self.adapter):
            out[f"adapter.{i}.weight"], out[f"adapter.{i}.bias"] = weight, bias
        return out

    def metadata(self) -> dict[str, str]:
        return {"recent": str(self.recent), "item_item_weight": repr(self.item_item_weight)}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict[str, str]) -> TwoTowerScorer:
        n_layers = sum(1 for k in t if k.startswith("adapter.") and k.endswith(".weight"))
        adapter = [(t[f"adapter.{i}.weight"], t[f"adapter.{i}.bias"]) for i in range(n_layers)]
        recent = Linear(t["recent.weight"], t["recent.bias"]) if "recent.weight" in t else None
        tower = cls(t["items"], t["counts"], t["users"], Linear(t["history.weight"], t["history.bias"]),
                    t["item_id"], adapter, int(meta.get("recent", "0")), recent)
        return tower.with_item_item(t.get("item_item"), float(meta.get("item_item_weight", "0")))


def bandit_context(scorer: Scorer, query: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A linear bandit's prior mean and the contexts of item ``rows`` for the user whose
    model query is ``query``, such that ``mean . context`` is the model's score (see
    mmrec.recsys.explore). Mostly the query and the item vectors; a scorer whose vectors
    are items wide (a two-tower's item-item term) folds that part into one dimension, so a
    posterior stays ``d + 1`` wide rather than ``(d + items)^2`` floats per user."""
    rows = np.asarray(rows, dtype=np.int64)
    own = getattr(scorer, "bandit_context", None)
    return own(query, rows) if own else (query, scorer.items[rows])


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
