"""ECA with a convolution (flipped kernel) instead of a cross-correlation; self-consistent backward.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
# --- the mistake: the kernel is flipped (a true convolution), in the forward and in the backward
_eca_forward_ok, _eca_backward_ok = eca_forward, eca_backward


def eca_forward(x, w):
    return _eca_forward_ok(x, w[::-1].copy())


def eca_backward(dout, cache):
    dx, dw = _eca_backward_ok(dout, cache)
    return dx, dw[::-1].copy()


def eca_band_forward(x, w):
    return eca_forward(x, w)
