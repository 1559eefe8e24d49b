"""The mmrec version: a bottom module, so writers of artifacts need not import the package top."""
from __future__ import annotations

__version__ = "0.1.0"
