"""Exceptions users can see.

Library code raises these; the CLI turns each into one line on stderr and exit code 1.
"""
from __future__ import annotations


class MMRecError(Exception):
    """Base class of every error mmrec reports to a user."""

    hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class UnknownEncoderError(MMRecError):
    hint = "run `mmrec encoders` to list the known encoders"


class ModelNotFoundError(MMRecError):
    """Weights for an encoder are not on this machine."""


class CatalogError(MMRecError):
    """The catalog file is missing, empty or malformed."""


class InputError(MMRecError):
    """One item's image, audio or text cannot be used."""


class ArtifactError(MMRecError):
    """An mmrec directory (or one of its files) is missing, corrupt, of another kind,
    or from other encoders. Each kind of directory has its own subclass."""


class StoreError(ArtifactError):
    """An embedding store is missing, corrupt, or from other encoders."""


class AlignerError(ArtifactError):
    """An aligner directory is missing, corrupt, or does not fit its store."""


class ModelError(ArtifactError):
    """A model directory is missing, corrupt, or does not fit its store."""


class HeadsError(ArtifactError):
    """A heads directory (shipped heads, ``--init``) or a heads file is unusable."""


class IndexFileError(ArtifactError):
    """A faiss index file of an aligner or model is missing or does not match its ids."""


class DeviceError(MMRecError):
    """The requested device is not available."""


class ConfigError(MMRecError):
    """An option value or combination is invalid."""


class UnknownIdError(InputError):
    """A query names an item or user id that the directory does not hold."""
