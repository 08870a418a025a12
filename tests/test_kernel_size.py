import math

import pytest

from eca_ref import kernel_size, kernel_size_info
from eca_ref.errors import InputError, InputTypeError


@pytest.mark.parametrize("C,k", [(1, 1), (7, 1), (8, 3), (16, 3), (64, 3), (127, 3), (128, 5), (256, 5),
                                 (512, 5), (1024, 5), (2047, 5), (2048, 7), (32767, 7)])
def test_guide_table(C, k):
    assert kernel_size(C) == k


def test_matches_the_authors_formula_everywhere():
    for C in range(1, 5000):
        t = int(abs((math.log(C, 2) + 1) / 2))
        assert kernel_size(C) == (t if t % 2 else t + 1)


def test_ties_and_timm():
    ties = [C for C in range(1, 40000) if kernel_size_info(C).tie]
    assert ties == [8, 128, 2048, 32768]
    i = kernel_size_info(128)
    assert i.k_nearest_odd == (3, 5) and i.k == 5
    assert "tie" in i.explain() and "code takes 5" in i.explain()
    assert kernel_size_info(4).k_timm == 3 and kernel_size_info(4).k == 1
    assert kernel_size_info(100).k_nearest_odd == (3,)


def test_gamma_and_b():
    assert kernel_size(512, gamma=1, b=0) == 9
    assert kernel_size(512, gamma=3, b=1) == 3  # t = 10/3 -> 3


@pytest.mark.parametrize("args,exc", [((0,), InputError), ((2.5,), InputTypeError), ((True,), InputTypeError),
                                      ((64, 0), InputError), ((64, 2, float("nan")), InputTypeError)])
def test_errors(args, exc):
    with pytest.raises(exc):
        kernel_size(*args)
