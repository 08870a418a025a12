"""The restricted unpickler: CIFAR-10 batches load, a pickle that would run code is refused first."""
from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from eca_ref.data import load_cifar10, make_fake_cifar10
from eca_ref.data.synthetic import py2_style_pickle
from eca_ref.data.unpickle import ALLOWED_GLOBALS, restricted_loads
from eca_ref.errors import DataError


class _Reduce:
    """An object whose pickle calls ``fn(*args)`` when loaded."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _attacks(marker):
    m = str(marker)
    return {
        "os.system": _Reduce(os.system, (f"touch {m}",)),
        "builtins.eval": _Reduce(builtins.eval, (f"open({m!r}, 'w').write('pwned')",)),
        "builtins.exec": _Reduce(builtins.exec, (f"open({m!r}, 'w').write('pwned')",)),
        "subprocess.Popen": _Reduce(subprocess.Popen, ([sys.executable, "-c", f"open({m!r}, 'w')"],)),
        "builtins.open": _Reduce(builtins.open, (m, "w")),
    }


ATTACKS = ["os.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "builtins.open"]


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("protocol", [0, 2, 4, pickle.HIGHEST_PROTOCOL])
def test_code_running_pickle_is_refused_before_it_runs(tmp_path, attack, protocol):
    marker = tmp_path / "marker"
    raw = pickle.dumps(_attacks(marker)[attack], protocol=protocol)
    # test_the_crafted_pickle_would_really_run shows the standard unpickler would run these.
    with pytest.raises(DataError, match="refused to load: the pickle asks for the global"):
        restricted_loads(raw, "data_batch_1")
    assert not marker.exists()


def test_attack_hidden_inside_a_valid_batch_is_refused_by_the_loader(tmp_path):
    marker = tmp_path / "marker"
    fake = make_fake_cifar10(tmp_path / "root", n_train=5, n_test=2, formats=("python",))
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1],
             b"filenames": _attacks(marker)["os.system"]}
    (fake.root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"test_batch: refused to load.*posix\.system|test_batch: refused to load"):
        load_cifar10(fake.root, "test")
    assert not marker.exists()


def test_the_crafted_pickle_would_really_run(tmp_path):
    # Proves the test above tests something: the unrestricted unpickler does create the marker.
    marker = tmp_path / "marker"
    raw = pickle.dumps(_attacks(marker)["builtins.eval"], protocol=2)
    pickle.loads(raw)  # noqa: S301 (deliberate, on our own crafted bytes)
    assert marker.exists()


def test_numpy_globals_beyond_the_four_are_refused():
    # np.load could read a file; numpy.testing could run anything: only the four names pass.
    for module, name in [("numpy", "load"), ("numpy.lib.npyio", "load"), ("numpy.core.multiarray", "scalar"),
                         ("numpy", "frombuffer"), ("numpy.testing._private.utils", "runstring")]:
        raw = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
        with pytest.raises(DataError, match=f"global {module}.{name}"):
            restricted_loads(raw, "x")
    assert set(ALLOWED_GLOBALS) == {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                                    ("numpy", "ndarray"), ("numpy", "dtype")}


def test_both_numpy_module_names_load():
    a = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    raw = py2_style_pickle({b"data": a})
    new = raw.replace(b"numpy.core.multiarray\n", b"numpy._core.multiarray\n")
    assert new != raw
    for r in (raw, new):
        np.testing.assert_array_equal(restricted_loads(r, "x")[b"data"], a)


def test_persistent_ids_are_refused():
    with pytest.raises(DataError, match="persistent"):
        restricted_loads(b"\x80\x02U\x01xQ.", "x")  # BINPERSID
