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
