"""One training step, the same for the trainer and the benchmark::

    out = train_step(runner, x, y, params, buffers, momentum, model_cfg=cfg, lr=0.1,
                     decay=decay_keys(params), sgd=SGDConfig())
    out.loss, out.correct, out.params, out.buffers, out.momentum

forward in train mode (``runner.forward``), softmax cross-entropy, backward (``runner.backward``)
and one SGD update (:func:`eca_ref.train.optim.sgd_step`). The step is pure: it returns the new
weights, BN buffers and momentum buffers and leaves the ones it was given alone, so a caller that
finds the loss not finite simply keeps the old state (the loop does; see eca_ref.train.loop).
"""
from __future__ import annotations

from typing import NamedTuple

from eca_ref.backend import asnumpy
from eca_ref.functional import loss as loss_fns   # called through the module: tests may replace it
from eca_ref.train.optim import SGDConfig, sgd_step

__all__ = ["StepOutput", "train_step"]


class StepOutput(NamedTuple):
    loss: float          # mean loss of the batch (before the update); may be NaN/inf: the caller checks
    correct: int         # images of the batch whose largest logit is the label's
    params: dict         # after the update
    buffers: dict        # BN running statistics after this forward
    momentum: dict       # momentum buffers after the update


def train_step(runner, x, y, params: dict, buffers: dict, momentum: dict, *, model_cfg, lr: float,
               decay, sgd: SGDConfig, label_smoothing: float = 0.0) -> StepOutput:
    """Forward, loss, backward and SGD update of one batch.

    Args:
        runner: an :class:`eca_ref.engine.Runner` (from an open ``eca_ref.engine.cores`` block).
        x: (B, 3, H, W) float32 images, normalised; y: (B,) integer labels (arrays of the backend).
        params, buffers, momentum: the model's weights, BN buffers and momentum buffers.
        model_cfg: the model's ResNetConfig.
        lr: this step's learning rate.
        decay: the parameter names that get weight decay (``eca_ref.models.decay_keys``).
        sgd: momentum, weight decay and Nesterov.
        label_smoothing: of the cross-entropy.
    """
    logits, cache, new_buffers = runner.forward(x, params, buffers, model_cfg, train=True)   # (B, classes)
    loss, dlogits = loss_fns.softmax_cross_entropy(logits, y, label_smoothing=label_smoothing, check_finite=False)
    grads = runner.backward(dlogits, cache)
    new_params, new_momentum = sgd_step(params, grads, momentum, lr=lr, decay=decay, momentum=sgd.momentum,
                                        weight_decay=sgd.weight_decay, nesterov=sgd.nesterov)
    correct = int(asnumpy((logits.argmax(axis=1) == y).sum()))
    return StepOutput(float(loss), correct, new_params, new_buffers, new_momentum)
