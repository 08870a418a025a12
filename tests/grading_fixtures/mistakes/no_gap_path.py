"""The classic mistake: eca_backward and se_backward return only the rescale path, dx = dout * gate.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
# --- the mistake: dx misses the path through GAP -> f -> sigmoid
def _two_paths(dout, x, s, dz_to_dy):
    ds = (dout * x).sum(axis=(2, 3))
    dz = ds * s * (1 - s)
    _, extra = dz_to_dy(dz)
    return dout * s[:, :, None, None], extra
