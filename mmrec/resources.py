"""Where shipped data lives: the ``assets/`` tree installed as ``mmrec.assets``."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from mmrec.errors import ModelNotFoundError


def asset(relative: str) -> Path:
    """Path of a shipped file, e.g. ``asset("aisfx/aisfx.safetensors")``."""
    path = Path(str(resources.files("mmrec.assets"))) / relative
    if not path.exists():
        raise ModelNotFoundError(
            f"shipped asset {relative!r} is missing from this install ({path})",
            hint="reinstall mmrec: pip install -e .",
        )
    return path


def preset_names() -> list[str]:
    """The shipped encoder bundles, ``assets/presets/*.json``, by name."""
    return sorted(p.stem for p in asset("presets").glob("*.json"))


def preset(name: str) -> dict[str, Any]:
    """An encoder bundle from ``assets/presets/NAME.json``: modality -> encoder name."""
    from mmrec.errors import ConfigError

    path = asset("presets") / f"{name}.json"
    if not name.replace("-", "").replace("_", "").isalnum() or not path.exists():
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return json.loads(path.read_text())
