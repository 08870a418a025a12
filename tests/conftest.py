import subprocess
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A tiny CIFAR-10 copy in the official binary layout: 40 training and 20 test images."""
    from eca_ref.data import make_fake_cifar10

    root = tmp_path_factory.mktemp("cifar")
    make_fake_cifar10(root, n_train=40, n_test=20, seed=0, formats=("binary",))
    return root


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro=False) -> a fresh tmpfs folder (full and read-only disks, for real); skipped where
    mounting is not allowed."""
    mounted = []

    def mount(size, ro: bool = False) -> Path:  # size as mount takes it: 65536, "64k"
        d = tmp_path / f"mnt{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True)
        except OSError:
            pytest.skip("no mount command here")
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", str(d)], capture_output=True)
