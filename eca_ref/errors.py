"""Exceptions of eca_ref.

Every error a user can cause is an :class:`EcaRefError`; the subclasses also
derive from the built-in ValueError / TypeError / OSError, so ``except
ValueError`` works as usual. The CLI prints an EcaRefError as one line and
exits with its ``exit_code`` (2, bad input; 1 where the system refused), never
a traceback.
"""
from __future__ import annotations


class EcaRefError(Exception):
    """Base class of every error caused by input the user gave.

    ``exit_code`` is the CLI's exit status for it: 2 (bad input). A subclass for what the system
    refused (a full disk, a permission, a read-only folder) sets 1, as does the CLI for any
    EcaRefError raised while handling such an OSError or a MemoryError.
    """

    exit_code = 2


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
