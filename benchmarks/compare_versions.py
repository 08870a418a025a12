"""One training step of two checkouts of eca-ref, timed in turns on the same machine.

    git worktree add /tmp/eca-main main          # the version to compare against
    python benchmarks/compare_versions.py /tmp/eca-main . --repeats 30

Each checkout runs in its own Python process (``PYTHONPATH`` set to it) that builds the default
network (or --depth/--width/--attention), with batch 128 in float32, on --threads cores with its
default way of sharding a batch (worker processes); the parent asks the two processes for one step
each in turns (A B B A A B ...), so a machine whose speed drifts slows both alike, and prints the
median step time of each and their ratio. ``--engine reference`` runs the second checkout's plain
reference code instead (a checkout that has ``eca_ref.engine``). Nothing here is imported by the
package; it is a measuring tool.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent('''
    import json, sys, time
    import numpy as np
    from eca_ref.models import ResNetConfig
    depth, width, attention, threads, engine = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    cfg = ResNetConfig(depth=depth, width=width, attention=attention)
    try:
        from eca_ref.engine import cores                       # the split reference/engine layout
        from eca_ref.engine.processes import tune_allocator
        from eca_ref.bench import _NumpyStep
        tune_allocator()
        block = cores(threads, "processes", engine=engine)
        runner = block.__enter__()
        step = _NumpyStep(cfg, 128, runner=runner)
        label = f"engine {runner.engine}, {runner.workers}, {runner.n} cores"
    except ImportError:                                        # the layout before it
        from eca_ref import procshards
        from eca_ref.bench import _NumpyStep, tune_allocator
        tune_allocator()
        block = procshards.use_cores(threads, "processes")
        block.__enter__()
        step = _NumpyStep(cfg, 128)
        label = f"procshards, {threads} cores"
    step(); step()                                             # warm-up
    print(json.dumps({"ready": label}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        t0 = time.perf_counter()
        step()
        print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3}), flush=True)
''')


def start(folder: str, args, engine: str):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(folder))
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(args.depth), str(args.width), args.attention,
                          str(args.threads), engine], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                         cwd=os.path.abspath(folder))
    label = json.loads(p.stdout.readline())["ready"]
    return p, label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="the checkout to compare against (e.g. a worktree of main)")
    ap.add_argument("b", help="the checkout under test")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--attention", default="eca")
    ap.add_argument("--engine", default="fast", choices=("fast", "reference"), help="the engine of checkout b")
    args = ap.parse_args()
    procs = {"a": start(args.a, args, "fast"), "b": start(args.b, args, args.engine)}
    times = {"a": [], "b": []}
    for r in range(args.repeats):
        for name in (("a", "b") if r % 2 == 0 else ("b", "a")):
            p = procs[name][0]
            p.stdin.write("step\n")
            p.stdin.flush()
            times[name].append(json.loads(p.stdout.readline())["ms"])
    for p, _ in procs.values():
        p.stdin.write("stop\n")
        p.stdin.flush()
        p.wait(timeout=60)
    out = {name: {"folder": getattr(args, name), "label": procs[name][1], "median_ms": statistics.median(t),
                  "min_ms": min(t), "max_ms": max(t)} for name, t in times.items()}
    out["ratio_b_over_a"] = out["b"]["median_ms"] / out["a"]["median_ms"]
    out["repeats"], out["load_avg"] = args.repeats, list(os.getloadavg())
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
