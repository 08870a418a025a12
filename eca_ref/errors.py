"""Exceptions of eca_ref.

Every error a user can cause is an :class:`EcaRefError`; the subclasses also
derive from the built-in ValueError / TypeError / OSError, so ``except
ValueError`` works as usual. The CLI prints an EcaRefError as one line and
exits with status 2, never a traceback.
"""
from __future__ import annotations


class EcaRefError(Exception):
    """Base class of every error caused by input the user gave."""


class InputError(EcaRefError, ValueError):
    """A value is wrong: shape, range, NaN, an even kernel, an unknown name."""


class InputTypeError(EcaRefError, TypeError):
    """A value has the wrong type or dtype."""


class BackendError(InputError):
    """The requested array backend cannot be used."""


class DataError(InputError):
    """A data file is missing, truncated, corrupt or of the wrong kind."""


class CheckpointError(InputError):
    """A checkpoint is missing, corrupt, foreign, or contradicts the given options."""
