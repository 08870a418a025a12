"""A restricted unpickler: reads CIFAR-10's pickled batches and refuses everything else.

``pickle.load`` runs code: a pickle names any importable callable (``os.system``, ``builtins.eval``,
``subprocess.Popen``, ...) and the arguments to call it with, and the unpickler calls it while loading.
A file that merely claims to be ``data_batch_1`` could therefore run a command on the user's machine.

CIFAR-10's python batches need only four globals, all in NumPy, to rebuild their arrays:

====================================  =====================================================
``numpy.core.multiarray._reconstruct``  makes an empty ndarray (the name the official files use)
``numpy._core.multiarray._reconstruct`` the same function under NumPy 2's module name
``numpy.ndarray``                       the array type passed to ``_reconstruct``
``numpy.dtype``                         the element type (uint8), rebuilt from ``("u1", 0, 1)``
====================================  =====================================================

:class:`RestrictedUnpickler` overrides :meth:`pickle.Unpickler.find_class`, the one place where the
unpickler turns a ``module name`` pair from the file into a Python object. Any other pair is refused
with a :class:`~eca_ref.errors.DataError` *before* the object is looked up, so nothing it names is ever
imported or called. Everything else in a pickle (dicts, lists, ints, bytes) is plain data.
"""
from __future__ import annotations

import io
import pickle

import numpy

from eca_ref.errors import DataError


def _reconstruct():
    try:  # NumPy >= 2: the real module; importing numpy.core would only warn and forward to it
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


#: (module, name) pairs a CIFAR-10 pickle may name, and how each is resolved.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: numpy.ndarray,
    ("numpy", "dtype"): lambda: numpy.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; ``where`` names the file in errors."""

    def __init__(self, file, where: str):
        # encoding="bytes": the official files come from Python 2; their str objects stay bytes.
        super().__init__(file, encoding="bytes")
        self.where = where

    def find_class(self, module, name):  # noqa: D102 (documented in the module docstring)
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise DataError(
                f"{self.where}: refused to load: the pickle asks for the global {module}.{name}, which a "
                "CIFAR-10 batch never needs (only numpy's array reconstruction is allowed); "
                "the file is not an official CIFAR-10 batch and was not loaded"
            )
        return resolve()

    def persistent_load(self, pid):  # noqa: D102
        raise DataError(f"{self.where}: refused to load: the pickle uses persistent ids")


def restricted_loads(raw: bytes, where: str):
    """Unpickle ``raw`` with :class:`RestrictedUnpickler`; any failure is one DataError naming ``where``."""
    try:
        return RestrictedUnpickler(io.BytesIO(raw), where).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, UnicodeDecodeError) as exc:
        kind = "truncated" if isinstance(exc, EOFError) else "not a valid pickle"
        raise DataError(f"{where}: {kind} ({type(exc).__name__}: {exc})") from None
