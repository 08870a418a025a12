"""Where the gap to PyTorch is: each convolution and batch-norm of the default net, one at a time.

For every distinct convolution of the net (channels, size, kernel, stride) and for batch-norm at
each stage width, times forward and forward + backward of one layer on one shard-sized batch, in
eca-ref's engine (``eca_ref.engine.conv``, ``eca_ref.engine.batchnorm``: what a training step runs)
and in PyTorch (``torch.nn.functional``, autograd), both on ONE thread (a training step on n cores
runs n such shards side by side, see eca_ref/engine/runner.py),
and prints the ratio per layer and the totals weighted by how often the net uses each layer.

Also prints, for the convolutions, the time of the matrix products alone (the im2col products
replayed on cache-resident operands, as benchmarks/bench_gemm_floor.py does for the whole step),
which is the floor of this convolution algorithm.

Run from a checkout: python benchmarks/bench_layers.py [--batch 64] [--depth 8] [--width 16] [--repeats 20]
"""
import argparse
import collections
import pathlib
import sys

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from eca_ref.bench import environment, time_median, tune_allocator  # noqa: E402
from eca_ref.engine import conv as conv_mod  # noqa: E402
from eca_ref.engine.batchnorm import batchnorm2d_backward, batchnorm2d_forward  # noqa: E402
from eca_ref.engine.blas import one_thread  # noqa: E402
from eca_ref.models import ResNetConfig, block_specs  # noqa: E402


def layer_counts(cfg):
    """{("conv", cin, cout, size, k, stride): uses, ("bn", channels, size): uses} of one forward pass."""
    counts = collections.Counter()
    size = 32
    counts[("conv", 3, cfg.width, size, 3, 1)] += 1
    counts[("bn", cfg.width, size)] += 1
    for spec in block_specs(cfg):
        out = size // spec.stride
        counts[("conv", spec.cin, spec.cout, size, 3, spec.stride)] += 1
        counts[("conv", spec.cout, spec.cout, out, 3, 1)] += 1
        counts[("bn", spec.cout, out)] += 2
        if spec.projection:
            counts[("conv", spec.cin, spec.cout, size, 1, spec.stride)] += 1
            counts[("bn", spec.cout, out)] += 1
        size = out
    return counts


def channel_major(a):
    return numpy.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)


def gemm_floor(x, w, stride, padding, repeats):
    """The chunk products of one forward + backward of this convolution, replayed on cached operands."""
    calls = []
    real = numpy.matmul

    class Rec:
        def __getattr__(self, name):
            return getattr(numpy, name)

        def matmul(self, a, b, *args, **kwargs):
            calls.append((a.shape, b.shape))
            return real(a, b, *args, **kwargs)

    saved = conv_mod.get_xp
    conv_mod.get_xp = lambda: Rec()
    try:
        out, cache = conv_mod.conv2d_forward(x, w, stride=stride, padding=padding, check_finite=False)
        conv_mod.conv2d_backward(channel_major(out), cache)
    finally:
        conv_mod.get_xp = saved
    operands = {}
    for sa, sb in calls:
        if (sa, sb) not in operands:
            operands[(sa, sb)] = (numpy.ones(sa, x.dtype), numpy.ones(sb, x.dtype),
                                  numpy.empty((sa[0], sb[1]), x.dtype))

    def run():
        for sa, sb in calls:
            a, b, o = operands[(sa, sb)]
            numpy.matmul(a, b, out=o)

    return time_median(run, repeats=repeats, warmup=2)["median_ms"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64, help="images per layer call (a shard of 128 on 2 threads)")
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    import torch
    import torch.nn.functional as tf

    tune_allocator()
    torch.set_num_threads(1)
    cfg = ResNetConfig(depth=args.depth, width=args.width)
    rng = numpy.random.default_rng(0)
    N, R = args.batch, args.repeats
    rows, totals = [], collections.Counter()
    with one_thread():
        for key, uses in layer_counts(cfg).items():
            if key[0] == "conv":
                _, cin, cout, size, k, stride = key
                pad = k // 2
                x = channel_major(rng.standard_normal((N, cin, size, size), dtype=numpy.float32))
                w = (rng.standard_normal((cout, cin, k, k)) * 0.1).astype(numpy.float32)
                out, cache = conv_mod.conv2d_forward(x, w, stride=stride, padding=pad, check_finite=False)
                d = channel_major(numpy.ones(out.shape, numpy.float32))

                def np_fwd():
                    conv_mod.conv2d_forward(x, w, stride=stride, padding=pad, check_finite=False)

                def np_fb():
                    _, c = conv_mod.conv2d_forward(x, w, stride=stride, padding=pad, check_finite=False)
                    conv_mod.conv2d_backward(d, c)

                tx = torch.from_numpy(numpy.ascontiguousarray(x)).requires_grad_(True)
                tw = torch.from_numpy(w.copy()).requires_grad_(True)
                td = torch.from_numpy(numpy.ascontiguousarray(d))

                def t_fwd():
                    with torch.no_grad():
                        tf.conv2d(tx, tw, stride=stride, padding=pad)

                def t_fb():
                    tf.conv2d(tx, tw, stride=stride, padding=pad).backward(td)

                floor = gemm_floor(x, w, stride, pad, R)
                name = f"conv {cin}->{cout} {k}x{k}/{stride} on {size}x{size}"
            else:
                _, C, size = key
                x = channel_major(rng.standard_normal((N, C, size, size), dtype=numpy.float32))
                g, b = numpy.ones(C, numpy.float32), numpy.zeros(C, numpy.float32)
                d = channel_major(rng.standard_normal(x.shape, dtype=numpy.float32))

                def np_fwd():
                    batchnorm2d_forward(x, g, b, b, g, train=True, check_finite=False)

                def np_fb():
                    _, c, _ = batchnorm2d_forward(x, g, b, b, g, train=True, check_finite=False)
                    batchnorm2d_backward(d, c)

                tx = torch.from_numpy(numpy.ascontiguousarray(x)).requires_grad_(True)
                tg, tb = torch.ones(C, requires_grad=True), torch.zeros(C, requires_grad=True)
                rm, rv = torch.zeros(C), torch.ones(C)
                td = torch.from_numpy(numpy.ascontiguousarray(d))

                def t_fwd():
                    with torch.no_grad():
                        tf.batch_norm(tx, rm, rv, tg, tb, training=True)

                def t_fb():
                    tf.batch_norm(tx, rm, rv, tg, tb, training=True).backward(td)

                floor = None
                name = f"batch-norm {C} on {size}x{size}"
            r = {"layer": name, "uses": uses,
                 "np_fwd": time_median(np_fwd, repeats=R, warmup=2)["median_ms"],
                 "np_fb": time_median(np_fb, repeats=R, warmup=2)["median_ms"],
                 "t_fwd": time_median(t_fwd, repeats=R, warmup=2)["median_ms"],
                 "t_fb": time_median(t_fb, repeats=R, warmup=2)["median_ms"], "floor": floor}
            rows.append(r)
            kind = key[0]
            for col in ("np_fb", "t_fb"):
                totals[(kind, col)] += uses * r[col]
            if floor is not None:
                totals[(kind, "floor")] += uses * floor
    env = environment()
    print(f"one thread, batch {N}, depth {args.depth}, width {args.width}, float32; numpy {env['numpy']}, "
          f"torch {env['torch']}, {env['cores']} cores, {env['date']}")
    print(f"{'layer':34s} {'uses':>4s} {'np fwd':>8s} {'torch fwd':>9s} {'np f+b':>8s} {'torch f+b':>9s} "
          f"{'ratio f+b':>9s} {'products':>9s}")
    for r in rows:
        floor = f"{r['floor']:9.2f}" if r["floor"] is not None else f"{'':9s}"
        print(f"{r['layer']:34s} {r['uses']:4d} {r['np_fwd']:8.2f} {r['t_fwd']:9.2f} {r['np_fb']:8.2f} "
              f"{r['t_fb']:9.2f} {r['np_fb'] / r['t_fb']:9.2f} {floor}")
    for kind in ("conv", "bn"):
        np_total, t_total = totals[(kind, "np_fb")], totals[(kind, "t_fb")]
        extra = f", products alone {totals[(kind, 'floor')]:.1f} ms" if kind == "conv" else ""
        print(f"all {kind} layers of one step (fwd + bwd, weighted by uses): eca-ref {np_total:.1f} ms, "
              f"PyTorch {t_total:.1f} ms, ratio {np_total / t_total:.2f}{extra}")


if __name__ == "__main__":
    main()
