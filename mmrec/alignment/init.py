"""Where an aligner's heads start: the shipped default heads, another aligner, or scratch.

The shipped heads (``assets/heads``) were fitted on public-domain clip art with the
offline default encoders; they give zero-shot search out of the box and a better
start than random weights. A source applies only to a store from the same encoders
(the pivot is the text encoder's space, so that one must match too), with the same
pivot, head kind and dimension: an explicit ``--init`` that does not fit is refused;
the shipped default that does not fit is skipped with a note.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrec.alignment.config import AlignConfig
from mmrec.artifacts import Artifact, Kind
from mmrec.enums import Pivot
from mmrec.errors import ArtifactError, ConfigError, HeadsError
from mmrec.store import check_store

if TYPE_CHECKING:
    from mmrec.alignment.heads import HeadSet
    from mmrec.store import Store

SHIPPED = "heads"  # under assets/


@dataclass
class InitSource:
    path: Path
    config: dict[str, Any]
    label: str  # "shipped" or the directory given

    @classmethod
    def read(cls, path: str | Path, label: str | None = None) -> InitSource:
        from mmrec.alignment.heads import HEADS_FILE

        try:
            artifact = Artifact.open(path, Kind.ALIGNER, Kind.HEADS)
        except ArtifactError as exc:
            raise HeadsError(f"--init {exc}", hint=exc.hint) from None
        if not (artifact.path / HEADS_FILE).is_file():
            raise HeadsError(f"--init {path}: no {HEADS_FILE}", hint="rebuild it with mmrec align")
        return cls(artifact.path, artifact.config, label or str(path))

    @property
    def bridge_weight(self) -> float | None:
        bridge = self.config.get("aligner", {}).get("bridge") or {}
        return float(bridge["weight"]) if bridge.get("enabled") else None

    def heads_for(self) -> list[str]:
        """The modalities these heads project (the text pivot needs none)."""
        return list(self.config.get("aligner", {}).get("architecture", {}).get("in_dims", {}))

    def check(self, store: Store, config: AlignConfig, dim: int) -> None:
        """Raise if these heads cannot start an aligner on ``store`` with ``config``."""
        want = self.config["store"]["encoders"]
        have = store.encoders()
        common = {m: s for m, s in want.items() if m in have}
        if Pivot(config.pivot) is Pivot.TEXT and "text" not in common:
            raise HeadsError(f"the heads in {self.label} map into a text space the store lacks")
        if not any(m != "text" or config.pivot is Pivot.SHARED for m in common):
            raise HeadsError(f"the heads in {self.label} have no modality this store has")
        check_store({"store": {"encoders": common}}, store, what=f"the heads in {self.label}")
        arch = self.config.get("aligner", {}).get("architecture", {})
        for key, value in (("pivot", Pivot(config.pivot).value), ("kind", config.head.value),
                           ("out_dim", dim)):
            if arch.get(key) != value:
                raise ConfigError(f"the heads in {self.label} have {key} {arch.get(key)}, "
                                  f"this run asks for {value}",
                                  hint="match --pivot/--head/--dim, or use --from-scratch")

    def apply(self, heads: HeadSet) -> list[str]:
        """Copy every head (and the temperature) ``heads`` shares with the source."""
        from mmrec.alignment.heads import load_heads

        source = load_heads(self.path)
        copied = []
        for modality, module in source.net.heads.items():
            if modality in heads.net.heads:
                heads.net.heads[modality].load_state_dict(module.state_dict())
                copied.append(modality)
        heads.net.logit_scale.data.copy_(source.net.logit_scale.data)
        return copied


def shipped_dir() -> Path | None:
    from mmrec.errors import ModelNotFoundError
    from mmrec.resources import asset

    try:
        return asset(f"{SHIPPED}/heads.safetensors").parent
    except ModelNotFoundError:
        return None


def resolve(config: AlignConfig, store: Store, dim: int,
            log: Any = print) -> InitSource | None:
    """The source to start from, or None for scratch; ``log`` hears why a default is skipped."""
    if config.from_scratch:
        return None
    if config.init:
        source = InitSource.read(config.init)
        source.check(store, config, dim)
        return source
    path = shipped_dir()
    if path is None:
        log("no shipped heads in this install: starting from scratch")
        return None
    source = InitSource.read(path, label="shipped")
    try:
        source.check(store, config, dim)
    except (ArtifactError, ConfigError) as exc:
        log(f"shipped heads not used ({exc}): starting from scratch")
        return None
    return source
