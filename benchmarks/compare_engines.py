"""One training step on each way eca-ref can run it, timed in turns in one process.

    python benchmarks/compare_engines.py [--threads 2] [--repeats 20] [--depth 8] [--width 16] [--batch 128]

Times the same training step (forward, loss, backward, Nesterov SGD; float32; the trainer's own
``eca_ref.train.train_step``) on:

    processes   the fast engine, one shard per core, shards in worker processes (the default)
    threads     the fast engine, one shard per core, shards in threads of this process
    reference   the plain reference code in this process, on one core (BLAS one thread)

in turns (:func:`eca_ref.bench.time_interleaved`), so a machine whose speed drifts slows each
alike, and prints the median of each and the ratios to ``processes``. This is the measurement
behind the engine's choice of worker processes over threads (docs/results.md).
"""
import argparse
import json
import pathlib
import sys
from contextlib import ExitStack

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from eca_ref.bench import _NumpyStep, environment, time_interleaved, tune_allocator  # noqa: E402
from eca_ref.engine import cores  # noqa: E402
from eca_ref.models import ResNetConfig  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-reference", action="store_true", help="leave the (slow) reference out")
    args = ap.parse_args(argv)
    tune_allocator()
    cfg = ResNetConfig(depth=args.depth, width=args.width)
    kinds = [("processes", "fast"), ("threads", "fast")] + ([] if args.no_reference else [(None, "reference")])
    with ExitStack() as stack:
        steps = {}
        for workers, engine in kinds:
            runner = stack.enter_context(cores(args.threads, workers, engine=engine))
            steps[workers or engine] = _NumpyStep(cfg, args.batch, runner=runner)
        times = time_interleaved(steps, repeats=args.repeats, warmup=2)
    base = times["processes"]["median_ms"]
    out = {"config": {"depth": args.depth, "width": args.width, "batch": args.batch, "threads": args.threads},
           "environment": environment(),
           **{name: {"median_ms": round(t["median_ms"], 2), "min_ms": round(t["min_ms"], 2),
                     "over_processes": round(t["median_ms"] / base, 3)} for name, t in times.items()}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
