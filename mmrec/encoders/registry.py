"""One registry of encoders, chosen by name: ``backend:model``.

Backends are modules imported only when one of their encoders is asked for, so
listing names costs no torch import. Each backend module defines::

    def create(spec: str, modality: Modality) -> Encoder
    def listed() -> list[EncoderInfo]   # the entries `mmrec encoders` shows
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality
from mmrec.errors import UnknownEncoderError

BACKENDS: dict[str, str] = {
    "builtin": "mmrec.encoders.builtin",
    "hf": "mmrec.encoders.hf",
    "open_clip": "mmrec.encoders.openclip",
    "local": "mmrec.encoders.local",
}


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    modality: Modality
    dim: int | None
    offline: bool
    description: str = ""


def split_name(name: str) -> tuple[str, str]:
    backend, sep, spec = name.partition(":")
    if not sep or not spec or backend not in BACKENDS:
        raise UnknownEncoderError(
            f"unknown encoder {name!r}: expected BACKEND:MODEL with BACKEND one of "
            + ", ".join(sorted(BACKENDS))
        )
    return backend, spec


def create(name: str, modality: Modality | str) -> Encoder:
    """Build (not load) the encoder ``name`` for ``modality``."""
    backend, spec = split_name(name)
    module = importlib.import_module(BACKENDS[backend])
    return module.create(spec, Modality(modality))


def list_encoders() -> list[EncoderInfo]:
    infos: list[EncoderInfo] = []
    for module_name in BACKENDS.values():
        infos.extend(importlib.import_module(module_name).listed())
    return infos
