"""se_forward allocates memory until it runs out; everything else is correct.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
_hoard = []


def se_forward(x, w1, w2):
    while True:
        _hoard.append(np.ones(10_000_000))  # 80 MB at a time
