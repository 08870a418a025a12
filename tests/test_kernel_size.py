import math
import re
from pathlib import Path

import pytest

from eca_ref import kernel_size, kernel_size_info
from eca_ref.errors import InputError, InputTypeError

PAPER = Path(__file__).resolve().parents[1] / "docs" / "paper.md"


def paper_k_table():
    """The rows of the "k per C" table of docs/paper.md: (C, t, int, k, nearest odd, timm) as strings."""
    section = PAPER.read_text(encoding="utf-8").split("### k per C", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ") and not line.startswith("| C ")]
    assert len(rows) >= 15, "docs/paper.md lost its table of k per C"
    return rows


@pytest.mark.parametrize("row", paper_k_table(), ids=lambda row: f"C={row[0]}")
def test_paper_k_table(row):
    C, t, t_int, k, nearest, timm = row
    C = int(C.replace(",", ""))
    info = kernel_size_info(C)
    assert kernel_size(C) == info.k == int(k)
    assert info.t == int(t_int) and info.k_timm == int(timm)
    assert round(info.t_exact, 2) == pytest.approx(float(t), abs=0.01)
    assert info.tie == ("tie" in nearest)
    assert info.k_nearest_odd == tuple(int(v) for v in re.findall(r"\d+", nearest))


def test_paper_k_table_has_the_ties():
    C_of_ties = [int(row[0].replace(",", "")) for row in paper_k_table() if "tie" in row[4]]
    assert C_of_ties == [8, 128, 2048, 32768]


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


def test_boolean_flags_take_booleans_only():
    import numpy as np

    from eca_ref import band_matrix
    from eca_ref.attention.kernel import band_grad_to_kernel
    from eca_ref.validation import check_bool, check_float_array
    w = np.array([1.0, 2.0, 3.0])
    for bad in ("no", 1, None):
        with pytest.raises(InputTypeError, match="circular must be True or False"):
            band_matrix(w, 4, circular=bad)
    assert np.array_equal(band_matrix(w, 4, circular=np.bool_(True)), band_matrix(w, 4, circular=True))
    with pytest.raises(InputTypeError, match="shared must be True or False"):
        band_grad_to_kernel(np.eye(4), 3, shared="yes")
    with pytest.raises(InputTypeError, match="check_finite must be True or False"):
        check_float_array(w, "w", check_finite="no")
    assert check_bool(np.bool_(False), "f") is False


def test_big_endian_arrays_are_refused_with_byte_order():
    import numpy as np

    from eca_ref import band_matrix
    with pytest.raises(InputTypeError, match=r"w has non-native byte order \(>f8, big-endian\).*astype"):
        band_matrix(np.ones(3, dtype=">f8"), 4)
    with pytest.raises(InputTypeError, match="float32 or float64"):
        band_matrix(np.ones(3, dtype=">i4"), 4)
