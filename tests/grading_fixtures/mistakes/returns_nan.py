"""gap_forward returns NaN; eca_backward returns an inf in dw.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
def gap_forward(x):
    return np.full(x.shape[:2], np.nan), x.shape


_eca_backward_ok = eca_backward


def eca_backward(dout, cache):
    dx, dw = _eca_backward_ok(dout, cache)
    dw[0] = np.inf
    return dx, dw
