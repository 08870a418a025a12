"""The engine: everything in eca-ref that exists only for speed.

The reference (``eca_ref.functional``, ``eca_ref.attention``, ``eca_ref.models``) is what students
read; the engine runs the same model faster and is tested to give the same numbers. The trainer
and the benchmarks reach it through one context manager::

    from eca_ref.engine import cores
    with cores(threads=2, workers="processes") as runner:     # or engine="reference"
        logits, cache, new_buffers = runner.forward(x, params, buffers, cfg, train=True)
        grads = runner.backward(dlogits, cache)
"""
from eca_ref.engine.runner import ENGINES, WORKERS, Runner, cores

__all__ = ["ENGINES", "WORKERS", "Runner", "cores"]
