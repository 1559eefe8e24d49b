"""Exploration: a linear bandit per user over a trained model's item vectors.

An item's context is its vector ``x`` in the model (unit norm); a user's expected
reward for it is ``theta . x``. The prior on ``theta`` is centred on the user's model
vector ``theta0`` with precision ``lam``; each feedback event (item ``x``, reward
``r`` in {0, 1}) updates the posterior (ridge regression, Li et al. 2010)::

    A = lam * I + sum x x^T        b = lam * theta0 + sum r x        mean = A^-1 b

so with no feedback the mean is the model's own vector and the greedy ranking is the
model's ranking. Policies (one class each, behind :class:`Explorer`):

- ``ucb`` (LinUCB): ``mean . x + alpha * sqrt(x^T A^-1 x)``;
- ``thompson`` (linear Thompson sampling): ``theta . x`` with ``theta`` drawn from
  ``N(mean, alpha^2 A^-1)``;
- ``epsilon``: the greedy order, each slot taken instead by a uniformly random
  remaining candidate with probability ``epsilon``;
- ``greedy``: ``mean . x`` (learns from feedback, never explores).

``A^-1`` is kept directly and updated by Sherman-Morrison, one rank-one step per event.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from mmrec.enums import ExploreKind


@dataclass
class ExploreConfig:
    """How much a policy trusts the model and how far it explores."""

    lam: float = 1.0  # prior precision: the weight of the model's vector, in events
    alpha: float = 0.2  # ucb: width multiplier; thompson: posterior scale
    epsilon: float = 0.1  # epsilon: chance a slot goes to a random candidate
    candidates: int = 100  # recommend re-ranks this many of the model's top items


@dataclass
class Posterior:
    """A user's linear-Gaussian posterior: ``A^-1`` and ``b`` (see the module docstring)."""

    a_inv: np.ndarray  # (d, d)
    b: np.ndarray  # (d,)

    @classmethod
    def prior(cls, theta0: np.ndarray, lam: float) -> Posterior:
        d = len(theta0)
        return cls(np.eye(d) / lam, lam * np.asarray(theta0, dtype=np.float64))

    @property
    def mean(self) -> np.ndarray:
        return self.a_inv @ self.b

    def update(self, x: np.ndarray, reward: float) -> None:
        """One event: ``A += x x^T`` (Sherman-Morrison on ``A^-1``), ``b += r x``."""
        x = np.asarray(x, dtype=np.float64)
        ax = self.a_inv @ x
        self.a_inv -= np.outer(ax, ax) / (1.0 + x @ ax)
        self.b += reward * x

    def width(self, vectors: np.ndarray) -> np.ndarray:
        """``sqrt(x^T A^-1 x)`` per row: how uncertain the posterior is about each item."""
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", vectors, self.a_inv, vectors), 0.0))


class Explorer(Protocol):
    kind: ClassVar[ExploreKind]

    def order(self, post: Posterior, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``vectors`` (the candidates), best first."""


def _by_score(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")


@dataclass
class Greedy:
    kind: ClassVar[ExploreKind] = ExploreKind.GREEDY

    def order(self, post: Posterior, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _by_score(vectors @ post.mean)


@dataclass
class LinUCB:
    alpha: float
    kind: ClassVar[ExploreKind] = ExploreKind.UCB

    def scores(self, post: Posterior, vectors: np.ndarray) -> np.ndarray:
        return vectors @ post.mean + self.alpha * post.width(vectors)

    def order(self, post: Posterior, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _by_score(self.scores(post, vectors))


@dataclass
class Thompson:
    alpha: float
    kind: ClassVar[ExploreKind] = ExploreKind.THOMPSON

    def order(self, post: Posterior, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cov = self.alpha**2 * (post.a_inv + post.a_inv.T) / 2  # symmetric against rounding
        theta = rng.multivariate_normal(post.mean, cov, method="cholesky")
        return _by_score(vectors @ theta)


@dataclass
class EpsilonGreedy:
    epsilon: float
    kind: ClassVar[ExploreKind] = ExploreKind.EPSILON

    def order(self, post: Posterior, vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        left = list(_by_score(vectors @ post.mean))
        out = []
        while left:  # each slot: a random remaining candidate with chance epsilon, else the best
            pick = int(rng.integers(len(left))) if rng.random() < self.epsilon else 0
            out.append(left.pop(pick))
        return np.array(out, dtype=np.int64)


def explorer(kind: ExploreKind, cfg: ExploreConfig) -> Explorer:
    kind = ExploreKind(kind)
    made = {ExploreKind.GREEDY: lambda: Greedy(), ExploreKind.UCB: lambda: LinUCB(cfg.alpha),
            ExploreKind.THOMPSON: lambda: Thompson(cfg.alpha),
            ExploreKind.EPSILON: lambda: EpsilonGreedy(cfg.epsilon)}
    return made[kind]()


def posterior(theta0: np.ndarray, vectors: np.ndarray, rewards: np.ndarray, lam: float) -> Posterior:
    """The posterior after feedback ``rewards`` on items ``vectors``, from prior mean ``theta0``."""
    post = Posterior.prior(theta0, lam)
    for x, r in zip(vectors, rewards, strict=True):
        post.update(x, float(r))
    return post


def read_feedback(path: Path, item_ids: list[str], user: str, threshold: float
                  ) -> tuple[list[str], np.ndarray]:
    """``(items, rewards)`` of ``user``'s events in a feedback file, in time order.

    The file is an interactions file (user,item[,rating][,timestamp]); a row's reward is
    1 if its rating is at least ``threshold`` or it has no rating (a click), else 0.
    Rows on items the model lacks are skipped, as ``train`` skips them.
    """
    from mmrec.catalog import read_interactions

    found = read_interactions(path, item_ids)
    code = found.user_ids.index(user) if user in found.user_ids else -1
    mine = np.flatnonzero(found.user_codes == code)
    mine = mine[np.argsort(np.nan_to_num(found.timestamps[mine], nan=-np.inf), kind="stable")]
    ratings = found.ratings[mine]
    rewards = np.where(np.isnan(ratings) | (ratings >= threshold), 1.0, 0.0)
    return [found.item_ids[c] for c in found.item_codes[mine].tolist()], rewards


def rerank(kind: ExploreKind, cfg: ExploreConfig, theta0: np.ndarray, candidates: np.ndarray,
           feedback: np.ndarray, rewards: np.ndarray, seed: int) -> np.ndarray:
    """``candidates`` (item vectors) ordered by the policy, for a user whose model vector
    is ``theta0`` and who gave ``rewards`` on items ``feedback`` (vectors)."""
    post = posterior(theta0, feedback, rewards, cfg.lam)
    return explorer(kind, cfg).order(post, candidates, np.random.default_rng(seed))
