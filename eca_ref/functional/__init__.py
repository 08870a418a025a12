"""Stateless layers: ``forward(x, ...) -> (out, cache)`` and ``backward(dout, cache) -> (dx, ...)``.

NCHW layout and PyTorch weight shapes throughout.
"""
