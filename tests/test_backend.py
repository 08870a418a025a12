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
    # a module-level numpy import is allowed for host-side uses only (dtypes, the host RNG: see
    # HOST_NUMPY_ATTRS below), e.g. attention/module.py's init_params
    offenders = {str(p.relative_to(PKG)): sorted(_numpy_attrs_used(p) - HOST_NUMPY_ATTRS)
                 for p in checked if _imports_numpy(p)}
    assert {k: v for k, v in offenders.items() if v} == {}


def _fake_cupy(device_count):
    """A stand-in 'cupy' module: only what backend selection looks at."""
    import types

    def get_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    mod = types.ModuleType("cupy")
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    mod.ndarray = type("ndarray", (), {})
    return mod


@pytest.mark.parametrize("count,match", [
    (RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), "no usable GPU was found .*no CUDA-capable"),
    (0, r"no usable GPU was found \(0 CUDA devices\)"),
])
def test_cupy_without_a_gpu_is_refused(monkeypatch, count, match):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count))
    with pytest.raises(BackendError, match=match):
        backend.set_backend("cupy")
    assert backend.get_xp() is np  # nothing fell back or switched silently


def test_cupy_with_a_gpu_is_selected_then_numpy_again(monkeypatch):
    fake = _fake_cupy(1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    try:
        assert backend.set_backend("cupy") is fake
        assert backend.get_xp() is fake and backend.backend_name() == "cupy"
    finally:
        backend.set_backend("numpy")
    assert backend.get_xp() is np


def test_cores_runs_the_reference_on_cupy(monkeypatch):
    """The engine's CPU tricks (shards, worker processes, BLAS threads) do not apply on the GPU:
    cores() yields the reference runner there, starts no workers and leaves NumPy's BLAS alone."""
    from eca_ref.engine import blas, cores

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(1))
    control = blas.blas_control()
    before = control.get() if control else None
    try:
        backend.set_backend("cupy")
        for workers in ("processes", "threads"):
            with cores(4, workers) as runner:
                assert (runner.engine, runner.n, runner.workers, runner.pool) == ("reference", 1, "none", None)
                assert not blas.single_threaded()
                if control is not None:
                    assert control.get() == before  # NumPy's BLAS is left alone
    finally:
        backend.set_backend("numpy")
    with cores(2, "threads") as runner:  # back on NumPy: the engine
        assert runner.engine == "fast"


def test_cli_backend_error_is_one_line(monkeypatch):
    from click.testing import CliRunner

    from eca_ref.cli import main
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0))
    r = CliRunner().invoke(main, ["--backend", "cupy", "kernel-size", "-C", "64"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == ["Error: backend 'cupy' requested but no usable GPU was found (0 CUDA devices)"]
    backend.set_backend("numpy")


# numpy attributes that are not array math: types, dtypes and the host random generator.
HOST_NUMPY_ATTRS = {"random", "dtype", "float32", "float64", "int64", "uint8", "ndarray", "integer", "floating",
                    "isscalar", "iinfo", "finfo", "generic", "bool_", "__version__",
                    "ones", "zeros"}  # initial values built on the host, then moved with xp.asarray


def _numpy_attrs_used(path: Path) -> set:
    tree = ast.parse(path.read_text())
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "numpy"}
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            used.add(node.attr)
    return used


@pytest.mark.parametrize("sub", ["attention", "functional", "models"])
def test_no_numpy_array_math_behind_the_backend(sub):
    """Model/layer code may use numpy only for dtypes and the host RNG; array math goes through get_xp()."""
    bad = {}
    for path in sorted((PKG / sub).glob("*.py")):
        extra = _numpy_attrs_used(path) - HOST_NUMPY_ATTRS
        if extra:
            bad[path.name] = sorted(extra)
    assert bad == {}
