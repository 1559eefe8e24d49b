"""Metric-vs-K curves as a PNG, for any result whose keys look like ``metric@K``."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mmrec.atomic import atomic_open
from mmrec.errors import ConfigError

_AT_K = re.compile(r"^(?P<name>[a-z_]+)@(?P<k>\d+)$")


def curves(result: dict[str, Any], prefix: str = "") -> dict[str, list[tuple[int, float]]]:
    """``{label: [(K, value), ...]}`` from flat ``metric@K`` keys, one level of nesting allowed."""
    found: dict[str, list[tuple[int, float]]] = {}
    for key, value in result.items():
        if isinstance(value, dict) and not prefix:
            for label, points in curves(value, prefix=f"{key} ").items():
                found[label] = points
            continue
        match = _AT_K.match(str(key))
        if match and isinstance(value, (int, float)):
            found.setdefault(f"{prefix}{match['name']}", []).append((int(match["k"]), float(value)))
    return {label: sorted(points) for label, points in found.items()}


def plot_metrics(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Draw every ``metric@K`` curve of ``result`` into the PNG ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    lines = curves(result)
    if not lines:
        raise ConfigError("nothing to plot: the result has no metric@K values")
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    chance_labelled = False
    for label, points in lines.items():
        ks, values = zip(*points, strict=True)
        if label == "chance" or label.endswith(" chance"):  # retrieval's K / gallery: a floor
            ax.plot(ks, values, linestyle="--", color="0.6", linewidth=1,
                    label=None if chance_labelled else "chance (K / gallery)")
            chance_labelled = True
            continue
        ax.plot(ks, values, marker="o", label=label)
    ax.set_xlabel("K")
    ax.set_ylabel("value")
    ax.set_title(title or "metrics at K")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)
    return path
