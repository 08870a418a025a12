"""Stochastic gradient descent with (Nesterov) momentum and decoupled-key weight decay.

The update is PyTorch's ``torch.optim.SGD`` formulation (dampening 0), applied
to every parameter ``p`` with gradient ``g`` and momentum buffer ``b``::

    g = g + weight_decay * p        (only for the keys in ``decay``: conv / linear weights)
    b = momentum * b + g            (b starts at zero, so the first step gives b = g, as in PyTorch)
    g = g + momentum * b            (Nesterov)    or    g = b    (classical momentum)
    p = p - lr * g

The functions are pure: they return new dictionaries and never modify the
arrays they are given. The network of this package has under a million
parameters, so the copies cost nothing next to one forward pass, and a pure
step makes exact resuming easy to reason about: the state of the optimizer is
exactly the dictionary of momentum buffers it returns.

Example::

    >>> import numpy as np
    >>> p = {"w": np.ones(3, np.float32)}
    >>> b = sgd_init(p)
    >>> p, b = sgd_step(p, {"w": np.ones(3, np.float32)}, b, lr=0.1, decay=set())
    >>> p["w"]                                  # 1 - 0.1 * (1 + 0.9 * 1)
    array([0.81, 0.81, 0.81], dtype=float32)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from eca_ref.backend import get_xp
from eca_ref.errors import InputError
from eca_ref.validation import check_positive_float


@dataclass(frozen=True)
class SGDConfig:
    """Hyper-parameters of :func:`sgd_step` (the learning rate comes from the schedule)."""

    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True

    def __post_init__(self):
        for name, upper in (("momentum", 1.0), ("weight_decay", float("inf"))):
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and 0.0 <= float(v) < upper
            if not ok:
                raise InputError(f"{name} must be a number in [0, {upper:g}), got {v!r}")
        if self.nesterov and self.momentum == 0:
            raise InputError("nesterov momentum needs momentum > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def sgd_init(params: dict) -> dict:
    """Zero momentum buffers, one per parameter, same shape and dtype."""
    xp = get_xp()
    return {k: xp.zeros_like(v) for k, v in params.items()}


def sgd_step(params: dict, grads: dict, buffers: dict, *, lr: float, decay: set | frozenset,
             momentum: float = 0.9, weight_decay: float = 5e-4, nesterov: bool = True) -> tuple[dict, dict]:
    """One SGD update; returns ``(new_params, new_buffers)``.

    Args:
        params: name -> array, the weights (float32 for training).
        grads: name -> array, same keys and shapes as ``params``.
        buffers: name -> array, the momentum buffers from :func:`sgd_init` or the last step.
        lr: learning rate of this step (a Python float: it keeps float32 arrays float32).
        decay: the names that get weight decay (``eca_ref.models.decay_keys(params)``:
            conv and linear weights; biases, BN and attention weights are not decayed).
        momentum, weight_decay, nesterov: as in ``torch.optim.SGD`` (dampening 0).

    Shape:
        every ``grads[k]`` and ``buffers[k]`` has the shape of ``params[k]``.
    """
    lr = check_positive_float(lr, "lr")
    if set(grads) != set(params) or set(buffers) != set(params):
        missing = sorted(set(params) ^ set(grads)) or sorted(set(params) ^ set(buffers))
        raise InputError(f"grads and momentum buffers must have the keys of params; mismatched: {missing[:5]}")
    new_params, new_buffers = {}, {}
    for k, p in params.items():
        g = grads[k]
        if g.shape != p.shape:
            raise InputError(f"grads[{k!r}] must have shape {tuple(p.shape)}, got {tuple(g.shape)}")
        if weight_decay and k in decay:
            g = g + weight_decay * p                   # same shape as p
        b = momentum * buffers[k] + g                  # PyTorch: buf.mul_(momentum).add_(g)
        step = g + momentum * b if nesterov else b
        new_params[k] = p - lr * step
        new_buffers[k] = b
    return new_params, new_buffers


def sgd_step_loop(params: dict, grads: dict, buffers: dict, *, lr: float, decay, momentum: float = 0.9,
                  weight_decay: float = 5e-4, nesterov: bool = True) -> tuple[dict, dict]:
    """The same update written one scalar at a time (the version to read first; slow).

    Used by the tests to check :func:`sgd_step`. Works on NumPy arrays only.
    """
    import numpy as np  # host-only reference

    new_params, new_buffers = {}, {}
    for k, p in params.items():
        p = np.asarray(p)
        out_p, out_b = np.empty_like(p), np.empty_like(p)
        g_all, b_all = np.asarray(grads[k]), np.asarray(buffers[k])
        for i in np.ndindex(p.shape):
            g = g_all[i]
            if weight_decay and k in decay:
                g = g + p.dtype.type(weight_decay) * p[i]
            b = p.dtype.type(momentum) * b_all[i] + g
            d = g + p.dtype.type(momentum) * b if nesterov else b
            out_p[i] = p[i] - p.dtype.type(lr) * d
            out_b[i] = b
        new_params[k], new_buffers[k] = out_p, out_b
    return new_params, new_buffers
