"""What `recommend` asks and answers, whatever directory (aligner or model) serves it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Query:
    """One recommendation or search request.

    Exactly one *kind* of anchor is given: content (``text``/``image``/``audio``, any
    mix, fused), ``items`` (one or several item ids, fused), ``user`` (a user the model
    was trained on) or ``history`` (item ids of a user the model never saw).
    """

    text: str | None = None
    image: Path | None = None
    audio: Path | None = None
    items: list[str] = field(default_factory=list)
    user: str | None = None
    history: list[str] = field(default_factory=list)
    modality: str = "fused"  # which item vectors to search: fused|text|image|audio
    k: int = 10
    exclude_seen: bool = True
    explain: bool = False
    device: str = "auto"  # where query content is encoded (auto: cuda > mps > cpu)
    # a model's user: re-rank its top candidates with a bandit (see mmrec.recsys.explore)
    explore: str | None = None  # ucb | thompson | epsilon | greedy
    feedback: Path | None = None  # the user's feedback events (an interactions file)
    threshold: float = 4.0  # a feedback rating at least this is a reward of 1
    seed: int = 0  # thompson's draw and epsilon's coin


def pop_title(meta: dict[str, Any]) -> str | None:
    """Take an item's display title out of its metadata: ``title``, else ``name``."""
    for key in ("title", "name"):
        if meta.get(key):
            return str(meta.pop(key))
    return None


@dataclass
class Hit:
    id: str
    score: float
    title: str | None = None
    matched: str | None = None  # the modality whose vectors matched
    explanation: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["score"] = round(self.score, 6)
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
