"""Correct, but prints megabytes at import and in every call of gap_forward.

The grading tests build the submission from correct.py plus the code below (see build_fixture in tests/test_grading.py).
"""
print("x" * 3_000_000)

_gap_forward_ok = gap_forward


def gap_forward(x):
    print("debug " * 10_000)
    return _gap_forward_ok(x)
