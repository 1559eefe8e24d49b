"""Train/validation/test splits of interactions, recorded so `evaluate` reuses them.

- ``temporal`` (default): each user's interactions ordered by time (file order breaks
  ties), the first 80% train, the next 10% validation, the last 10% test. No user's
  training set holds anything later than their validation or test interactions.
- ``random``: the same per-user ratios over a seeded random order: RecBole's default
  protocol (``RS [0.8, 0.1, 0.1]``, ``order RO``, ``group_by user``).
- ``cold-item``: 20% of the items that have interactions, drawn with the seed, lose
  all their interactions from training; half of them (and their interactions) are
  the validation set, half the test set. Each set is ranked among its own items only.

With ``test=False`` (``mmrec train --no-test``, for test data that comes from
elsewhere) no test part is held out: temporal and random keep 90% of each user's
interactions for training and the last 10% for validation (early stopping); cold-item
removes only the validation half of its cold items.

Per-user counts follow RecBole's ``_calcu_split_ids``: validation and test get
``int(0.1 * n)`` each, bumped to one while it would be below one and the training part
keeps at least one interaction; training gets the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrec.enums import SplitKind
from mmrec.errors import ConfigError

TRAIN, VALID, TEST = 0, 1, 2
RATIOS = (0.8, 0.1, 0.1)
NO_TEST_RATIOS = (0.9, 0.1, 0.0)
COLD_SHARE = 0.2


@dataclass
class Split:
    """Which part (TRAIN/VALID/TEST) each interaction is in, and cold items if any."""

    kind: SplitKind
    seed: int
    part: np.ndarray  # (interactions,) int8
    valid_items: np.ndarray | None = None  # cold-item: the item rows ranked in validation
    test_items: np.ndarray | None = None
    ratios: tuple[float, ...] = field(default=RATIOS)

    def candidates(self, part: int, n_items: int) -> np.ndarray:
        """Item rows ranked when evaluating ``part``: every item, or that part's cold items."""
        cold = {VALID: self.valid_items, TEST: self.test_items}.get(part)
        return np.arange(n_items) if cold is None else np.sort(cold)

    def counts(self) -> dict[str, int]:
        return {name: int((self.part == p).sum()) for name, p in
                (("train", TRAIN), ("valid", VALID), ("test", TEST))}


def part_sizes(n: int, ratios: tuple[float, ...] = RATIOS) -> list[int]:
    """How many of a user's ``n`` interactions go to each part (RecBole's rounding)."""
    total = sum(ratios)
    ratios = tuple(r / total for r in ratios)
    counts = [int(r * n) for r in ratios]
    counts[0] = n - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def _by_user(users: np.ndarray, order_key: np.ndarray) -> list[np.ndarray]:
    """Interaction indices of each user, sorted by ``order_key`` (stable)."""
    order = np.lexsort((order_key, users))
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    return np.split(order, bounds)


def _per_user(users: np.ndarray, order_key: np.ndarray,
              ratios: tuple[float, ...] = RATIOS) -> np.ndarray:
    part = np.zeros(len(users), dtype=np.int8)
    for rows in _by_user(users, order_key):
        n_train, n_valid, _ = part_sizes(len(rows), ratios)
        part[rows[n_train : n_train + n_valid]] = VALID
        part[rows[n_train + n_valid :]] = TEST
    return part


def temporal(users: np.ndarray, times: np.ndarray, seed: int = 0, test: bool = True) -> Split:
    if np.isnan(times).any():
        missing = int(np.isnan(times).sum())
        raise ConfigError(f"the temporal split needs a timestamp on every interaction; "
                          f"{missing} have none", hint="use --split random or --split cold-item")
    # lexsort is stable: file order breaks timestamp ties
    ratios = RATIOS if test else NO_TEST_RATIOS
    return Split(SplitKind.TEMPORAL, seed, _per_user(users, times, ratios), ratios=ratios)


def random(users: np.ndarray, seed: int = 0, test: bool = True) -> Split:
    key = np.random.default_rng(seed).permutation(len(users))
    ratios = RATIOS if test else NO_TEST_RATIOS
    return Split(SplitKind.RANDOM, seed, _per_user(users, key, ratios), ratios=ratios)


def cold_item(items: np.ndarray, seed: int = 0, test: bool = True) -> Split:
    present = np.unique(items)
    n_cold = int(round(COLD_SHARE * len(present)))
    if n_cold < 2:
        raise ConfigError(f"the cold-item split needs at least 10 items with interactions, "
                          f"got {len(present)}")
    cold = np.random.default_rng(seed).permutation(present)[:n_cold]
    valid_items, test_items = np.sort(cold[: n_cold // 2]), np.sort(cold[n_cold // 2 :])
    if not test:  # the test half stays in training: the same validation items either way
        test_items = np.zeros(0, dtype=valid_items.dtype)
    part = np.zeros(len(items), dtype=np.int8)
    part[np.isin(items, valid_items)] = VALID
    part[np.isin(items, test_items)] = TEST
    return Split(SplitKind.COLD_ITEM, seed, part, valid_items, test_items)


def make_split(kind: SplitKind | str, users: np.ndarray, items: np.ndarray, times: np.ndarray,
               seed: int = 0, test: bool = True) -> Split:
    """Split interactions (parallel arrays of user rows, item rows, timestamps);
    ``test=False`` holds out no test part."""
    kind = SplitKind(kind)
    if kind is SplitKind.TEMPORAL:
        return temporal(users, times, seed, test)
    if kind is SplitKind.RANDOM:
        return random(users, seed, test)
    return cold_item(items, seed, test)


def save_split(path: Path, split: Split, users: np.ndarray, items: np.ndarray,
               times: np.ndarray) -> None:
    """Interactions and their parts in one ``.npz`` (no pickle)."""
    from mmrec.atomic import save_npz

    empty = np.zeros(0, dtype=np.int64)
    save_npz(path, user=users, item=items, time=times, part=split.part,
             kind=np.array(split.kind.value), seed=np.array(split.seed),
             valid_items=empty if split.valid_items is None else split.valid_items,
             test_items=empty if split.test_items is None else split.test_items)


def load_split(path: Path) -> tuple[Split, np.ndarray, np.ndarray, np.ndarray]:
    """``(split, users, items, times)`` as saved by :func:`save_split`."""
    from mmrec.artifacts import read_part

    def load(p: Path) -> tuple[Split, np.ndarray, np.ndarray, np.ndarray]:
        with np.load(p, allow_pickle=False) as data:
            kind = SplitKind(str(data["kind"]))
            cold = kind is SplitKind.COLD_ITEM
            split = Split(kind, int(data["seed"]), data["part"],
                          data["valid_items"] if cold else None, data["test_items"] if cold else None)
            return split, data["user"], data["item"], data["time"]

    return read_part(path, load)
