"""Wrong shapes and types: keepdims in GAP, a list from the sigmoid, no cache from se_forward.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
def gap_forward(x):
    return x.mean(axis=(2, 3), keepdims=True), x.shape


_sigmoid_ok = sigmoid_forward


def sigmoid_forward(z):
    s, cache = _sigmoid_ok(z)
    return s.tolist(), cache


def se_forward(x, w1, w2):
    y = x.mean(axis=(2, 3))
    z = np.maximum(y @ w1.T, 0) @ w2.T
    return x / (1.0 + np.exp(-z))[:, :, None, None]  # forgot the cache
