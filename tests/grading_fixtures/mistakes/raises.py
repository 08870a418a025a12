"""eca_forward raises an IndexError from an off-by-one; everything else is correct.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
def eca_forward(x, w):
    y, _ = gap_forward(x)
    C = x.shape[1]
    k = len(w)
    z = np.zeros_like(y)
    for i in range(C):
        for j in range(k):
            z[:, i] += w[j] * y[:, i + j]  # forgot the padding: IndexError at the last channels
    out, s = _attend(x, z)
    return out, (x, w, y, _band(w, C), s)
