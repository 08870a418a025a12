"""Time the CIFAR-10 data layer: loading each layout, channel statistics, one augmented epoch.

    python benchmarks/bench_data.py [ROOT] [--repeat 3]

ROOT is a folder with cifar-10-batches-bin/ (and optionally cifar-10-batches-py/ and the two archives),
default $ECA_REF_DATA or ~/.cache/eca-ref. Each timing is the best of --repeat runs, wall clock.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy

from eca_ref.data import channel_stats, iterate_batches, load_cifar10, resolve_root


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = resolve_root(args.root)
    print(f"root {root}; numpy {numpy.__version__}; python {platform.python_version()}; {platform.machine()}")
    rows = []
    for name in ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"):
        path = Path(root) / name
        if not path.exists():
            continue

        def load_all(path=path):
            return load_cifar10(path, "train"), load_cifar10(path, "test")

        t, ((x, _), (xt, _)) = best_of(load_all, args.repeat)
        rows.append((f"load train+test ({x.shape[0] + xt.shape[0]} images) from {name}", t))
    x, y = load_cifar10(root, "train")
    t, (mean, std) = best_of(lambda: channel_stats(x), args.repeat)
    rows.append((f"channel_stats over {x.shape[0]} images", t))

    def epoch():
        n = 0
        for xb, _ in iterate_batches(x, y, 128, rng=numpy.random.default_rng(0), augment=True, mean=mean, std=std):
            n += xb.shape[0]
        return n

    t, _ = best_of(epoch, args.repeat)
    rows.append((f"one augmented epoch, batch 128 ({x.shape[0]} images)", t))
    width = max(len(r[0]) for r in rows)
    for label, t in rows:
        print(f"{label:<{width}}  {t:7.3f} s")


if __name__ == "__main__":
    main()
