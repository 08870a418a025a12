"""Four textbook mistakes: GAP backward without 1/(H W), an overflowing sigmoid, SE without ReLU, kernel_size rounding ties down.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
# --- mistakes
def gap_backward(dy, cache):
    N, C, H, W = cache
    return np.broadcast_to(dy[:, :, None, None], (N, C, H, W)).copy()  # forgot / (H * W)


def sigmoid_forward(z):
    e = np.exp(z)  # overflows for z > 709
    s = e / (1.0 + e)
    return s, s


def se_forward(x, w1, w2):
    y, _ = gap_forward(x)
    h = y @ w1.T
    out, s = _attend(x, h @ w2.T)  # no ReLU
    return out, (x, y, h, h, w1, w2, s)


def kernel_size(C, gamma=2, b=1):
    t = int(abs((math.log2(C) + b) / gamma))
    return t if t % 2 else max(1, t - 1)  # "nearest odd", ties rounded down
