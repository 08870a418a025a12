"""The backend switch: selection, errors, and no array math behind its back."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eca_ref import backend
from eca_ref.errors import BackendError

PKG = Path(__file__).resolve().parents[1] / "eca_ref"


def test_default_is_numpy():
    assert backend.get_xp() is np
    assert backend.backend_name() == "numpy"
    assert backend.asnumpy(np.ones(2)) is not None


def test_unknown_backend():
    with pytest.raises(BackendError, match="backend must be one of numpy, cupy"):
        backend.set_backend("jax")
    assert backend.get_xp() is np  # unchanged after a refused switch


def test_cupy_missing_or_no_gpu_is_one_clear_error():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="CuPy is not installed"):
            backend.set_backend("cupy")
    else:  # pragma: no cover - only on machines with cupy
        pytest.skip("cupy installed here; the GPU tests cover it")


def test_env_variable_selects_backend():
    env = {**os.environ, "ECA_REF_BACKEND": "nonsense"}
    r = subprocess.run([sys.executable, "-c", "from eca_ref.backend import get_xp; get_xp()"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "backend must be one of" in r.stderr


# Modules allowed to import numpy directly: the backend itself, host-side file/data code,
# pure-integer counting, CLI formatting, test-data generation, benchmarks against torch.
HOST_ONLY = {"backend.py", "validation.py", "cli.py", "verify.py"}


def _imports_numpy(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "numpy" or a.name.startswith("numpy.") for a in node.names):
            if node.col_offset == 0:
                return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "numpy" and node.col_offset == 0:
            return True
    return False


def test_array_modules_take_their_array_library_from_the_backend():
    """Layer/attention/gradcheck code must not import numpy at module level for array math."""
    checked = [PKG / "attention" / "kernel.py", PKG / "attention" / "module.py", PKG / "attention" / "variants.py",
               PKG / "functional" / "pooling.py", PKG / "functional" / "activations.py", PKG / "gradcheck.py"]
    for extra in ("conv.py", "batchnorm.py", "linear.py", "loss.py"):
        if (PKG / "functional" / extra).exists():
            checked.append(PKG / "functional" / extra)
    offenders = [str(p.relative_to(PKG)) for p in checked if _imports_numpy(p)]
    assert offenders == []
