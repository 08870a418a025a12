"""The attention module's own cost, measured: SE (r = 16) and ECA at ResNet-50's block shapes.

For each of ResNet-50's four stages (a block after the first: input and output 4w channels,
56x56/256, 28x28/512, 14x14/1024, 7x7/2048) it times, on ONE thread, float32, batch N:

* the block's three convolutions (1x1 4w -> w, 3x3 w -> w, 1x1 w -> 4w, stride 1) with the
  engine's convolution (``eca_ref.engine.conv``, what a training step runs), forward and
  forward + backward (dx and dw of each conv);
* the attention module alone (``VARIANTS[name].forward`` / ``.backward``, the reference's
  module: GAP -> f -> sigmoid -> rescale) for SE (r = 16, no FC bias) and ECA (the authors'
  k = 3, 5, 5, 7 per stage), forward and forward + backward;

all in turns (``eca_ref.bench.time_interleaved``: every round calls each function once, so
a machine whose speed drifts slows them alike), and prints each module's time as a ratio of the
block's convolutions, beside the ratio of multiply-accumulates (``eca_ref.models.flops``): the
module's arithmetic is tiny, its time is memory passes over the (N, C, H, W) map.

Run from a checkout: python benchmarks/bench_module_cost.py [--batch 8] [--repeats 10] [--json]
"""
import argparse
import json
import pathlib
import sys

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from eca_ref.attention import VARIANTS  # noqa: E402
from eca_ref.bench import environment, time_interleaved, tune_allocator  # noqa: E402
from eca_ref.engine import conv as conv_mod  # noqa: E402
from eca_ref.engine.blas import one_thread  # noqa: E402
from eca_ref.models.flops import module_flops  # noqa: E402

# (H = W, block output channels C = 4 w, the authors' ECA k) of ResNet-50's stages
STAGES = ((56, 256, 3), (28, 512, 5), (14, 1024, 5), (7, 2048, 7))


def block_conv_macs(N, H, C):
    w = C // 4
    return N * H * H * (C * w + w * w * 9 + w * C)


def bench_stage(N, H, C, k, repeats, warmup):
    rng = numpy.random.default_rng(0)
    w = C // 4
    x = rng.standard_normal((N, C, H, H), dtype=numpy.float32)
    dout = rng.standard_normal((N, C, H, H), dtype=numpy.float32)
    ws = [(rng.standard_normal((w, C, 1, 1), dtype=numpy.float32) * 0.05, 0),
          (rng.standard_normal((w, w, 3, 3), dtype=numpy.float32) * 0.05, 1),
          (rng.standard_normal((C, w, 1, 1), dtype=numpy.float32) * 0.05, 0)]

    def convs_forward():
        h, caches = x, []
        for weight, pad in ws:
            h, cache = conv_mod.conv2d_forward(h, weight, stride=1, padding=pad, check_finite=False)
            caches.append(cache)
        return h, caches

    def convs_forward_backward():
        _, caches = convs_forward()
        g = dout
        for cache in reversed(caches):
            g, _ = conv_mod.conv2d_backward(g, cache)[:2]
        return g

    fns = {"convs F": lambda: convs_forward()[0], "convs FB": convs_forward_backward}
    hps = {"se": {"r": 16, "bias": False}, "eca": {"k": k}}
    for name, hp in hps.items():
        v = VARIANTS[name]
        params = v.init_params(C, rng=rng, dtype=numpy.float32, **hp)

        def fwd(v=v, params=params):
            return v.forward(x, params, check_finite=False)[0]

        def fwd_bwd(v=v, params=params):
            _, cache = v.forward(x, params, check_finite=False)
            return v.backward(dout, cache)

        fns[f"{name} F"], fns[f"{name} FB"] = fwd, fwd_bwd
    with one_thread():
        t = time_interleaved(fns, repeats=repeats, warmup=warmup)
    conv_macs = block_conv_macs(N, H, C)
    row = {"N": N, "H": H, "W": H, "C": C, "k": k, "times_ms": {n: d["median_ms"] for n, d in t.items()},
           "block_conv_macs": conv_macs}
    for name, hp in hps.items():
        m = module_flops(name, C, H, H, **hp)
        row[name] = {"forward_ratio": t[f"{name} F"]["median_ms"] / t["convs F"]["median_ms"],
                     "forward_backward_ratio": t[f"{name} FB"]["median_ms"] / t["convs FB"]["median_ms"],
                     "f_macs_ratio": N * m["f"] / conv_macs,
                     "module_ops_ratio": N * (m["f"] + m["gap"] + m["sigmoid"] + m["scale"]) / conv_macs}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--stages", default="1,2,3,4", help="which of ResNet-50's stages, e.g. 1,4")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tune_allocator()
    env = environment()
    rows = [bench_stage(args.batch, *STAGES[int(s) - 1], args.repeats, args.warmup)
            for s in args.stages.split(",")]
    env_after = environment()
    if args.json:
        print(json.dumps({"environment": env, "load_avg_after": env_after["load_avg"], "rows": rows}, indent=1))
        return
    print(f"numpy {env['numpy']}, one thread, float32, batch {args.batch}, median of {args.repeats} "
          f"(interleaved); load average {env['load_avg']} before, {env_after['load_avg']} after; {env['date']}")
    print("module time / the block's three convolutions (engine conv), forward (F) and forward + backward (FB);"
          " MACs: f's multiply-accumulates / the convs'; ops: f + GAP + sigmoid + rescale / the convs' MACs")
    head = f"{'H x W / C':>14} {'k':>2} {'convs F ms':>10} {'convs FB ms':>11}"
    for name in ("se", "eca"):
        head += f" | {name.upper() + ' F':>8} {name.upper() + ' FB':>8} {'MACs':>8} {'ops':>7}"
    print(head)
    for r in rows:
        line = (f"{r['H']:>5}x{r['W']:<3}/{r['C']:>4} {r['k']:>2} {r['times_ms']['convs F']:>10.2f} "
                f"{r['times_ms']['convs FB']:>11.2f}")
        for name in ("se", "eca"):
            d = r[name]
            line += (f" | {d['forward_ratio']:>8.2%} {d['forward_backward_ratio']:>8.2%} {d['f_macs_ratio']:>8.4%}"
                     f" {d['module_ops_ratio']:>7.2%}")
        print(line)


if __name__ == "__main__":
    main()
