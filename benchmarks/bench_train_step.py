"""Benchmark script: the same as ``eca-ref bench`` (run from a checkout: python benchmarks/bench_train_step.py).

Times one training step of the default tiny ECA-ResNet (batch 128, float32) in NumPy and in
PyTorch (same architecture, same thread count, same run), and the ECA module alone against B
(mean over H, W + x * s) and PyTorch autograd. Options: see --help.
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from eca_ref.cli_bench import bench  # noqa: E402

if __name__ == "__main__":
    bench(prog_name="bench_train_step.py")
