"""``mmrec evaluate replay MODEL --log FILE``: policies measured offline by replay.

The replay estimator (Li, Chu, Langford, Wang, WSDM 2011): walk a time-ordered log;
at each event the policy picks one arm among the event's candidates; only events
where the pick equals the logged item count, with the logged reward; the policy
learns from those matched events alone. When the logged item was chosen uniformly at
random among the candidates, the mean reward over matched events is an unbiased
estimate of the policy's reward per pick.

A ratings log (MovieLens) has no candidate sets, so each event's are built: the
logged item plus ``candidates - 1`` other items drawn uniformly (seeded), the logged
one at a random place. The estimate then answers "which of these would the policy
show, and was the shown one liked?" (reward: rating >= ``threshold``): it ranks
policies against each other; it is not the reward the logging system earned. Each
policy sees the same events and candidate sets. The interval is the normal one for
a proportion, ``p +- 1.96 sqrt(p (1 - p) / matched)``.

Policies: the bandits of mmrec.recsys.explore, each user's prior centred on the model's
vector for them (their history in the model, or none for a user the model never
saw), and popularity (training counts plus the matched rewards so far).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmrec.enums import ExploreKind
from mmrec.errors import CatalogError, ConfigError
from mmrec.recsys.explore import ExploreConfig, Explorer, Posterior, explorer

Z95 = 1.959964


@dataclass
class Log:
    """Events in time order: user ``users[t]`` saw item row ``items[t]``, reward ``rewards[t]``."""

    users: list[str]  # the user's id in the model (hashed for an anonymised model)
    items: np.ndarray  # item rows
    rewards: np.ndarray  # 0 or 1


class Chooser(Protocol):
    def choose(self, user: str, candidates: np.ndarray, rng: np.random.Generator) -> int:
        """The candidate row shown to ``user``."""

    def update(self, user: str, item: int, reward: float) -> None:
        """Learn from one matched event."""


@dataclass
class BanditChooser:
    """A per-user linear bandit over item vectors, priors from the model's user vectors."""

    items: np.ndarray  # (items, d)
    prior: Any  # user id -> theta0
    policy: Explorer
    lam: float
    posts: dict[str, Posterior] = field(default_factory=dict)
    context: Any = None  # (user id, item rows) -> their contexts; None: the rows of ``items``

    def _context(self, user: str, rows: np.ndarray) -> np.ndarray:
        return self.items[rows] if self.context is None else self.context(user, rows)

    def _post(self, user: str) -> Posterior:
        if user not in self.posts:
            self.posts[user] = Posterior.prior(self.prior(user), self.lam)
        return self.posts[user]

    def choose(self, user: str, candidates: np.ndarray, rng: np.random.Generator) -> int:
        return int(candidates[self.policy.order(self._post(user), self._context(user, candidates), rng)[0]])

    def update(self, user: str, item: int, reward: float) -> None:
        self._post(user).update(self._context(user, np.array([item]))[0], reward)


@dataclass
class PopularityChooser:
    counts: np.ndarray  # per item: training interactions, plus matched rewards as they come

    def choose(self, user: str, candidates: np.ndarray, rng: np.random.Generator) -> int:
        return int(candidates[np.argmax(self.counts[candidates])])

    def update(self, user: str, item: int, reward: float) -> None:
        self.counts[item] += reward


def replay(log: Log, candidates: list[np.ndarray], chooser: Chooser, seed: int = 0) -> dict[str, Any]:
    """The replay estimate of ``chooser`` over ``log`` with each event's ``candidates``."""
    rng = np.random.default_rng(seed)
    rewards = []
    for user, item, reward, cands in zip(log.users, log.items, log.rewards, candidates, strict=True):
        if chooser.choose(user, cands, rng) != item:
            continue
        rewards.append(float(reward))
        chooser.update(user, int(item), float(reward))
    return estimate(np.array(rewards), len(log.users))


def estimate(rewards: np.ndarray, events: int) -> dict[str, Any]:
    """Mean reward over the matched events and its normal 95% interval."""
    n = len(rewards)
    p = float(rewards.mean()) if n else math.nan
    half = Z95 * math.sqrt(p * (1 - p) / n) if n else math.nan
    return {"matched": n, "events": events, "reward": p,
            "ci_low": max(0.0, p - half) if n else math.nan, "ci_high": min(1.0, p + half) if n else math.nan}


def candidate_sets(items: np.ndarray, n_items: int, size: int, seed: int) -> list[np.ndarray]:
    """Per event: its logged item and ``size - 1`` distinct others, uniformly, shuffled."""
    if not 2 <= size <= n_items:
        raise ConfigError(f"--candidates must be in [2, {n_items}] (the model's items), got {size}")
    rng = np.random.default_rng(seed)
    out = []
    for item in items:
        others = rng.choice(n_items - 1, size=size - 1, replace=False)
        others = others + (others >= item)  # skip the logged item
        out.append(rng.permutation(np.append(others, item)))
    return out


@dataclass
class RandomChooser:
    """Uniform picks: its estimate is the log's own mean reward, a floor for the others."""

    def choose(self, user: str, candidates: np.ndarray, rng: np.random.Generator) -> int:
        return int(candidates[rng.integers(len(candidates))])

    def update(self, user: str, item: int, reward: float) -> None:
        pass


POLICIES = ("greedy", "ucb", "thompson", "epsilon", "popularity", "random")


def read_log(path: Path, model: Any, threshold: float, key: Path | None) -> Log:
    """The log's events on the model's items, in time order (file order breaks ties)."""
    from mmrec.catalog import read_interactions
    from mmrec.privacy import user_key

    found = read_interactions(path, model.data.item_ids)
    if np.isnan(found.ratings).all():
        raise CatalogError(f"{path}: no ratings: replay's reward is rating >= --threshold",
                           hint="name the rating column with a 'rating' header")
    secret = user_key(model.config, key, model.path)
    if secret is not None:
        from mmrec.privacy import anonymize

        found = anonymize(found, secret)
    order = np.argsort(np.nan_to_num(found.timestamps, nan=-np.inf), kind="stable")
    rewards = np.where(np.isnan(found.ratings) | (found.ratings >= threshold), 1.0, 0.0)
    users = found.user_ids
    return Log([users[c] for c in found.user_codes[order].tolist()],
               found.item_rows(model.item_row)[order], rewards[order])


def _prior(model: Any) -> Any:
    """user id -> the model's vector for the user (from their history in the model)."""
    from mmrec.recsys.scoring import History

    def theta0(user: str) -> np.ndarray:
        row = model.user_row(user)
        history = model.data.items[model.data.users == row] if row is not None else np.zeros(0, np.int64)
        vector = model.scorer.user_vectors(np.array([-1 if row is None else row]), History.of([history]))
        return vector[0].astype(np.float64)

    return theta0


def _chooser(name: str, model: Any, cfg: ExploreConfig) -> Chooser:
    if name == "popularity":
        return PopularityChooser(model.data.train_counts().astype(np.float64))
    if name == "random":
        return RandomChooser()
    from mmrec.recsys.scoring import bandit_context

    query = functools.lru_cache(maxsize=None)(_prior(model))  # one user vector per user

    def prior(user: str) -> np.ndarray:
        return bandit_context(model.scorer, query(user), np.zeros(0, np.int64))[0]

    def context(user: str, rows: np.ndarray) -> np.ndarray:
        return bandit_context(model.scorer, query(user), rows)[1].astype(np.float64)

    return BanditChooser(model.scorer.items, prior, explorer(ExploreKind(name), cfg), cfg.lam,
                         context=context)


def evaluate_replay(path: str | Path, log: str | Path, threshold: float = 4.0, candidates: int = 20,
                    seed: int = 0, key: str | Path | None = None,
                    config: ExploreConfig | None = None) -> dict[str, Any]:
    """The replay estimate (see the module docstring) of every policy of :data:`POLICIES`."""
    from mmrec.recsys.model import load_model

    model = load_model(path)
    events = read_log(Path(log), model, threshold, key)
    sets = candidate_sets(events.items, model.data.n_items, candidates, seed)
    cfg = config or ExploreConfig()
    out: dict[str, Any] = {"events": len(events.users), "candidates": candidates, "threshold": threshold,
                           "log_reward": round(float(events.rewards.mean()), 5)}
    for name in POLICIES:
        out[name] = replay(events, sets, _chooser(name, model, cfg), seed)
    return out
