"""Where training and evaluation get their model passes: a :class:`eca_ref.engine.Runner`.

Every entry point (:func:`train`, :func:`resume`, :func:`ablate`, :func:`evaluate_run`) takes
``threads``, ``workers`` and ``engine`` and opens one :func:`eca_ref.engine.cores` block for its
work, or takes an open block's ``runner`` and uses it (``ablate`` opens one block and hands its
runner to every run).
"""
from __future__ import annotations

from contextlib import contextmanager

from eca_ref.engine import ENGINES, WORKERS, Runner, cores
from eca_ref.errors import InputError
from eca_ref.validation import check_int

__all__ = ["check_cores", "use_runner"]


def check_cores(threads=None, workers=None, engine=None, runner=None) -> None:
    """Validate the core options (InputError), and their agreement with ``runner`` if one is given:
    with a runner, each option left None is taken from it and a given one must match it."""
    if threads is not None:
        check_int(threads, "threads", min_value=1)
    if workers is not None and workers not in WORKERS:
        raise InputError(f"workers must be one of {', '.join(WORKERS)}, got {workers!r}")
    if engine is not None and engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if runner is None:
        return
    if not isinstance(runner, Runner):
        raise InputError(f"runner must be an eca_ref.engine.Runner, got {type(runner).__name__}")
    clash = [f"{name}={given!r} (the runner's: {have!r})"
             for name, given, have in (("threads", threads, runner.n), ("workers", workers, runner.workers),
                                       ("engine", engine, runner.engine))
             if given is not None and given != have]
    if clash:
        raise InputError(f"options contradict the runner given: {', '.join(clash)}")


@contextmanager
def use_runner(runner=None, threads=None, workers=None, engine=None):
    """``runner`` itself (checked against the options), or a fresh ``cores(threads, workers,
    engine=engine or "fast")`` block's runner for the duration of the block."""
    check_cores(threads, workers, engine, runner)
    if runner is not None:
        yield runner
        return
    with cores(threads, workers, engine=engine or "fast") as r:
        yield r
