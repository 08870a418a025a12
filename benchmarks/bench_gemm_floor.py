"""How much of a training step is matrix products: the floor under the convolutions.

Records every matrix product that one training step of the default net makes through
``xp.matmul`` in the engine's convolution (eca_ref/engine/conv.py: the chunk products, forward and
backward; the classifier's three tiny products are left out), then replays the same products, with
the same shapes and memory orders, on cache-resident arrays split over as many threads as the step
has shards, and prints:

    step          the whole training step (as eca-ref bench times it)
    products      the recorded products alone, replayed
    rest          step - products: im2col copies, batch-norm, ReLU, ECA, the update, Python

Run from a checkout: python benchmarks/bench_gemm_floor.py [--threads N] [--depth D] [--width W] [--batch B]
[--repeats R]
"""
import argparse
import pathlib
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from eca_ref.bench import _NumpyStep, time_median, tune_allocator  # noqa: E402
from eca_ref.engine import cores  # noqa: E402
from eca_ref.engine.shards import split  # noqa: E402
from eca_ref.models import ResNetConfig  # noqa: E402


class _Recorder:
    """numpy with matmul wrapped: records (shape of a, shape of b, a transposed?, b transposed?)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return getattr(numpy, name)

    def matmul(self, a, b, *args, **kwargs):
        self.calls.append((a.shape, b.shape, not a.flags.c_contiguous, not b.flags.c_contiguous))
        return numpy.matmul(a, b, *args, **kwargs)


def record(step) -> list:
    import eca_ref.engine.conv as conv

    rec = _Recorder()
    saved = conv.get_xp
    conv.get_xp = lambda: rec
    try:
        step()
    finally:
        conv.get_xp = saved
    return rec.calls


def replay(calls, repeats: int, threads: int) -> float:
    """Wall time of the recorded products, split over the threads as evenly as their count allows.

    Every thread keeps one set of operands per distinct shape and reuses it, so the operands stay
    in the CPU caches as a chunk's freshly copied columns do in the convolution: a floor, not an
    estimate of what the products cost inside the step.
    """
    rng = numpy.random.default_rng(0)

    def operand(shape, transposed):
        a = rng.standard_normal(shape[::-1] if transposed else shape, dtype=numpy.float32)
        return a.T if transposed else a

    ranges = split(len(calls), threads)
    sets = []
    for i0, i1 in ranges:  # per thread: {call: (a, b, out)}
        own = {}
        for call in set(calls[i0:i1]):
            sa, sb, ta, tb = call
            own[call] = (operand(sa, ta), operand(sb, tb), numpy.empty((sa[0], sb[1]), dtype=numpy.float32))
        sets.append(own)

    def part(i0, i1, own):
        for call in calls[i0:i1]:
            a, b, o = own[call]
            numpy.matmul(a, b, out=o)

    items = [(i0, i1, own) for (i0, i1), own in zip(ranges, sets)]
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        def run():
            for f in [pool.submit(part, *item) for item in items]:
                f.result()
        return time_median(run, repeats=repeats, warmup=2)["median_ms"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    tune_allocator()
    with cores(args.threads, "threads") as runner:   # shards in threads of this process: their products are seen here
        n = runner.n
        step = _NumpyStep(ResNetConfig(depth=args.depth, width=args.width), args.batch, runner=runner)
        calls = record(step)
        full = time_median(step, repeats=args.repeats, warmup=2)["median_ms"]
        products = replay(calls, args.repeats, n)
    flops = sum(2 * sa[0] * sa[1] * sb[1] for sa, sb, _, _ in calls)
    print(f"depth {args.depth}, width {args.width}, batch {args.batch}, float32, {n} thread(s); {len(calls)} matrix products, "
          f"{flops / 1e9:.2f} GFLOP per step")
    print(f"step      {full:8.1f} ms")
    print(f"products  {products:8.1f} ms  ({flops / products / 1e6:.0f} GFLOP/s)")
    print(f"rest      {full - products:8.1f} ms")


if __name__ == "__main__":
    main()
