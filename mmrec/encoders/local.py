"""``local:PATH.py:ClassName`` — an Encoder subclass from the user's own Python file.

The class is instantiated with no arguments and must set ``name``, ``modality`` and
``dim`` (see :class:`mmrec.encoders.base.Encoder`).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mmrec.encoders.base import Encoder
from mmrec.enums import Modality
from mmrec.errors import ModelNotFoundError, UnknownEncoderError

if TYPE_CHECKING:
    from mmrec.encoders.registry import EncoderInfo


def create(spec: str, modality: Modality) -> Encoder:
    file, sep, class_name = spec.rpartition(":")
    if not sep or not file.endswith(".py") or not class_name:
        raise UnknownEncoderError(f"local:{spec}: expected local:/path/to/file.py:ClassName")
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise ModelNotFoundError(f"local encoder file not found: {path}")
    module_name = f"mmrec_local_{abs(hash(str(path)))}"
    module = sys.modules.get(module_name)
    if module is None:
        spec_obj = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec_obj)
        spec_obj.loader.exec_module(module)
        sys.modules[module_name] = module
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Encoder)):
        raise UnknownEncoderError(f"{path} has no Encoder subclass named {class_name!r}")
    encoder = cls()
    encoder.name = f"local:{path}:{class_name}"  # one name however the path was spelt
    if Modality(encoder.modality) is not modality:
        raise UnknownEncoderError(
            f"local:{spec} encodes {Modality(encoder.modality).value}, not {modality.value}")
    return encoder


def listed() -> list[EncoderInfo]:
    from mmrec.encoders.registry import EncoderInfo

    return [EncoderInfo("local:<file.py>:<Class>", modality, None, True,
                        "your own Encoder subclass") for modality in Modality]
