"""kernel_size never returns; everything else is correct.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
def kernel_size(C, gamma=2, b=1):
    while True:
        try:
            pass
        except BaseException:  # not even an alarm signal would stop this
            pass
