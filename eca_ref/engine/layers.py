"""The engine's layers: a :class:`eca_ref.models.Layers` bundle for the model's passes, tuned for the CPU.

The model (``eca_ref.models.resnet``) takes its layer functions as one argument; the reference
bundle is plain NumPy, this one computes the same functions faster:

- the convolution and batch norm of :mod:`eca_ref.engine.conv` and :mod:`eca_ref.engine.batchnorm`,
  which keep activations *channel-major* in memory (each channel of the batch one contiguous block);
- ReLU, its backward and the residual addition write into memory the pass owns instead of
  allocating: the model hands each of these an array that nothing reads afterwards (a layer's
  fresh output, or a gradient on its way down), so overwriting it is safe there, and only there;
- batch norm can take the statistics of a whole batch whose shards run on other cores
  (``allreduce``, see :mod:`eca_ref.engine.shards`).

tests/test_engine.py checks, layer by layer and for the whole model, that these give the
reference's numbers (float64 to about 1e-12 relative).
"""
from __future__ import annotations

from functools import partial

from eca_ref.backend import get_xp
from eca_ref.engine.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from eca_ref.engine.conv import conv2d_backward, conv2d_forward
from eca_ref.models import Layers

__all__ = ["fast_layers", "FAST_LAYERS"]


def _is_channel_major(a) -> bool:
    """(N, C, H, W) with channel-major contiguous memory (each channel one block)?"""
    return a.transpose(1, 0, 2, 3).flags.c_contiguous


def _own_channel_major(a):
    """Where a result of an elementwise operation on ``a`` goes: a itself when it is channel-major
    contiguous (an array the pass owns), else a new channel-major array. A convolution's input
    gradient is a cropped view (rows of W among W + p stored values), over which NumPy runs several
    times slower than over whole blocks: the first operation on it writes into a fresh block."""
    if _is_channel_major(a):
        return a
    N, C, H, W = a.shape
    return get_xp().empty((C, N, H, W), dtype=a.dtype).transpose(1, 0, 2, 3)


def relu_forward(a):
    """ReLU written into a (an array the pass owns); the output itself is the backward's mask."""
    get_xp().maximum(a, 0, out=a)
    return a, a


def relu_backward(da, out):
    """da * (out > 0), in da's memory where it is a channel-major block."""
    dest = _own_channel_major(da)
    get_xp().multiply(da, out > 0, out=dest)
    return dest


def add(a, b):
    """a + b, in a's memory where it is a channel-major block (a is an array the pass owns)."""
    dest = _own_channel_major(a)
    get_xp().add(a, b, out=dest)
    return dest


def fast_layers(allreduce=None) -> Layers:
    """The engine's bundle; ``allreduce``: this shard's reduce function for synchronised batch norm
    (None: the batch is whole)."""
    return Layers(
        conv_forward=partial(conv2d_forward, check_finite=False),
        conv_backward=conv2d_backward,
        bn_forward=partial(batchnorm2d_forward, check_finite=False, allreduce=allreduce),
        bn_backward=batchnorm2d_backward,
        relu_forward=relu_forward,
        relu_backward=relu_backward,
        add=add,
    )


FAST_LAYERS = fast_layers()
