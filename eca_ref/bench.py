"""Speed benchmarks: one training step of the tiny ResNet, and the ECA module alone.

Both are timed against references measured in the same process on the same machine:

* the training step (forward + backward + a Nesterov-SGD update, float32) against the identical
  architecture in PyTorch (``torch.set_num_threads`` set to the thread count NumPy's BLAS uses);
* the ECA module against B, the memory traffic its forward cannot avoid (a mean over H, W and one
  ``x * s[:, :, None, None]`` of the same array), and against PyTorch autograd on the same module
  (Conv1d over GAP).

Every number is the median of ``repeats`` timed runs after ``warmup`` untimed ones; what is compared
is timed in turns (:func:`time_interleaved`), so the ratios hold even on a machine whose speed drifts.
Results are plain dicts (JSON-ready); ``eca-ref bench`` prints them as tables.
"""
from __future__ import annotations

import math
import os
import platform
import time

import numpy

from eca_ref.attention import VARIANTS
from eca_ref.backend import get_xp, synchronize
from eca_ref.engine import Runner, cores
from eca_ref.engine.blas import available_cores
from eca_ref.engine.blas import one_thread as blas_one_thread
from eca_ref.engine.processes import allocator_tuned, tune_allocator
from eca_ref.errors import InputError, InputTypeError
from eca_ref.models import ResNetConfig, block_specs, decay_keys, init_resnet
from eca_ref.train.optim import SGDConfig, sgd_init
from eca_ref.train.step import train_step
from eca_ref.validation import check_bool, check_int, check_kernel

__all__ = ["ECA_SHAPES", "tune_allocator", "allocator_tuned", "time_median", "time_interleaved", "bench_train_step", "bench_eca",
           "make_torch_resnet", "torch_name", "environment", "has_torch", "check_eca_shapes", "TORCH_MISSING",
           "MAX_ARRAY_BYTES"]

ECA_SHAPES = ((128, 64, 8, 8), (32, 256, 56, 56))
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4
MAX_ARRAY_BYTES = 2 * 2 ** 30   # per float32 array of the ECA benchmark, which holds about six of them
TORCH_MISSING = "PyTorch is not installed (pip install 'eca-ref[parity]')"


def time_median(fn, *, repeats: int, warmup: int, sync=None) -> dict:
    """Median, min and max wall time of fn() in milliseconds.

    The device is synchronised after each call (backend.synchronize: a no-op for NumPy, needed for
    CuPy's asynchronous kernels); ``sync`` adds another wait, e.g. for another library's device.
    """
    return time_interleaved({"fn": fn}, repeats=repeats, warmup=warmup, sync=sync)["fn"]


def time_interleaved(fns: dict, *, repeats: int, warmup: int, sync=None) -> dict:
    """:func:`time_median` of several functions timed in turns: {name: {"median_ms", ...}}.

    Each of the ``repeats`` rounds calls every function once, in reverse order every other round.
    A machine whose speed drifts during the measurement (a shared machine's neighbours, a CPU
    clock that changes) then slows every function alike, so the ratio of two medians compares the
    functions, not the moments at which they ran.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize()
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            synchronize()
            if sync is not None:
                sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    out = {}
    for name, t in times.items():
        t.sort()
        out[name] = {"median_ms": float(numpy.median(t)), "min_ms": t[0], "max_ms": t[-1], "repeats": repeats}
    return out


def _torch():
    try:
        import torch  # noqa: PLC0415 (optional: comparison only)
    except ImportError:
        return None
    return torch


def environment() -> dict:
    torch = _torch()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"numpy": numpy.__version__, "torch": getattr(torch, "__version__", None), "cpus": os.cpu_count(),
            "cores": available_cores(), "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "load_avg": [round(v, 2) for v in load] if load else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# ------------------------------------------------------------------------------------ training step

class _NumpyStep:
    """One training step of the NumPy network, the trainer's own (:func:`eca_ref.train.step.train_step`):
    forward, loss, backward, Nesterov SGD with weight decay (lr LR, momentum MOMENTUM, WEIGHT_DECAY).

    ``runner``: the :class:`eca_ref.engine.Runner` of the caller's ``cores`` block; None: the
    reference code (``eca_ref.models.resnet_forward``; benchmarks/bench_gemm_floor.py records its
    matrix products).
    """

    def __init__(self, cfg, batch, seed=0, runner=None):
        xp = get_xp()
        rng = numpy.random.default_rng(seed)
        self.cfg = cfg
        self.runner = runner if runner is not None else Runner("reference", 1, "none")
        self.params, self.buffers = init_resnet(cfg, rng, dtype=numpy.float32)
        self.decay = frozenset(decay_keys(self.params))
        self.momentum = sgd_init(self.params)
        self.sgd = SGDConfig(MOMENTUM, WEIGHT_DECAY, nesterov=True)
        self.x = xp.asarray(rng.standard_normal((batch, 3, 32, 32), dtype=numpy.float32))
        self.y = xp.asarray(rng.integers(0, cfg.num_classes, batch))

    def __call__(self):
        out = train_step(self.runner, self.x, self.y, self.params, self.buffers, self.momentum, model_cfg=self.cfg,
                         lr=LR, decay=self.decay, sgd=self.sgd)
        self.params, self.buffers, self.momentum = out.params, out.buffers, out.momentum
        return out.loss


def make_torch_resnet(cfg: ResNetConfig, params=None, buffers=None, dtype=None):
    """The same network in PyTorch (attention "eca" or "none"), optionally with our weights copied in.

    Its ``state_dict`` keys are eca_ref's names with the blocks under ``blocks.<stage>_<block>`` and
    ECA's weight as ``attn.conv.weight`` (see :func:`torch_name`).
    """
    torch = _torch()
    if torch is None:
        raise InputError(TORCH_MISSING)
    if cfg.attention not in ("eca", "none"):
        raise InputError(f"the PyTorch twin supports attention 'eca' and 'none', got {cfg.attention!r}")
    nn = torch.nn

    class ECA(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

        def forward(self, x):
            z = self.conv(x.mean((2, 3))[:, None, :])[:, 0]  # (N, C)
            return x * torch.sigmoid(z)[:, :, None, None]

    class Block(nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.conv1 = nn.Conv2d(spec.cin, spec.cout, 3, spec.stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(spec.cout)
            self.conv2 = nn.Conv2d(spec.cout, spec.cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(spec.cout)
            self.attn = ECA(spec.attn_hp["k"]) if cfg.attention == "eca" else nn.Identity()
            self.shortcut = None
            if spec.projection:
                self.shortcut = nn.Sequential()
                self.shortcut.add_module("conv", nn.Conv2d(spec.cin, spec.cout, 1, spec.stride, bias=False))
                self.shortcut.add_module("bn", nn.BatchNorm2d(spec.cout))

        def forward(self, x):
            o = torch.relu(self.bn1(self.conv1(x)))
            o = self.attn(self.bn2(self.conv2(o)))
            return torch.relu(o + (x if self.shortcut is None else self.shortcut(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential()
            self.stem.add_module("conv", nn.Conv2d(3, cfg.width, 3, 1, 1, bias=False))
            self.stem.add_module("bn", nn.BatchNorm2d(cfg.width))
            self.blocks = nn.ModuleDict({s.name.replace(".", "_"): Block(s) for s in block_specs(cfg)})
            self.fc = nn.Linear(4 * cfg.width, cfg.num_classes)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            for block in self.blocks.values():
                h = block(h)
            return self.fc(h.mean((2, 3)))

    model = Net()
    if dtype is not None:
        model = model.to(dtype)
    if params is not None:
        state = model.state_dict()
        with torch.no_grad():
            for name, a in {**params, **(buffers or {})}.items():
                t = state[torch_name(name)]
                t.copy_(torch.as_tensor(numpy.asarray(a)).reshape(t.shape))
    return model


def torch_name(name: str) -> str:
    """eca_ref's parameter name -> the PyTorch twin's state_dict key."""
    name = name.replace(".attn.w", ".attn.conv.weight")
    if name.startswith("stage"):
        stage, block, rest = name.split(".", 2)
        return f"blocks.{stage}_{block}.{rest}"
    return name


def _torch_step(cfg, batch, threads, seed=0):
    torch = _torch()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = make_torch_resnet(cfg).train()
    decay = [p for n, p in model.named_parameters() if n.endswith("weight") and ("conv" in n or n == "fc.weight")
             and "attn" not in n]
    rest = [p for n, p in model.named_parameters() if not any(p is q for q in decay)]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                          lr=LR, momentum=MOMENTUM, nesterov=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32, generator=g)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def bench_train_step(cfg: ResNetConfig | None = None, *, batch: int = 128, repeats: int = 20, warmup: int = 3,
                     with_torch: bool = True, threads: int | None = None, workers: str = "processes",
                     engine: str = "fast") -> dict:
    """Time one training step (forward + backward + update, float32) in NumPy and, if available, PyTorch.

    Both use ``threads`` CPU cores (None: every available core): eca-ref through
    :func:`eca_ref.engine.cores` (one shard of the batch per worker process, or per thread with
    ``workers="threads"``), PyTorch through ``torch.set_num_threads``. ``engine="reference"`` times
    the plain reference code instead (one process; NumPy's BLAS keeps its own threads).
    """
    cfg = cfg or ResNetConfig()
    batch = check_int(batch, "batch", min_value=2)
    repeats = check_int(repeats, "repeats", min_value=1)
    warmup = check_int(warmup, "warmup", min_value=0)
    torch = _torch() if with_torch else None
    with_torch = torch is not None and cfg.attention in ("eca", "none")
    with cores(threads, workers, engine=engine) as runner:
        threads = runner.n if engine == "fast" else (threads or available_cores())
        steps = {"numpy": _NumpyStep(cfg, batch, runner=runner)}
        if with_torch:
            steps["torch"] = _torch_step(cfg, batch, threads)
        times = time_interleaved(steps, repeats=repeats, warmup=warmup)
    result = {"config": {"depth": cfg.depth, "width": cfg.width, "attention": cfg.attention, "batch": batch},
              "threads": threads, "workers": runner.workers, "engine": runner.engine, **times}
    for name in times:
        result[name]["images_per_s"] = batch / result[name]["median_ms"] * 1e3
    if with_torch:
        result["ratio"] = result["numpy"]["median_ms"] / result["torch"]["median_ms"]
    return result


# ------------------------------------------------------------------------------------ ECA module alone

def has_torch() -> bool:
    """Whether PyTorch can be imported (the comparisons need it; everything else does not)."""
    return _torch() is not None


def check_eca_shapes(shapes) -> list:
    """Shapes (N, C, H, W) of integers >= 1 whose float32 array fits in MAX_ARRAY_BYTES, checked before any allocation."""
    if isinstance(shapes, (str, bytes)) or not hasattr(shapes, "__iter__"):
        raise InputTypeError(f"shapes must be a list of (N, C, H, W) tuples, got {shapes!r}")
    out = []
    for shape in shapes:
        if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 4:
            raise InputError(f"each ECA shape must be four integers (N, C, H, W), got {shape!r}")
        dims = tuple(check_int(d, "each entry of an ECA shape", min_value=1) for d in shape)
        nbytes = math.prod(dims) * 4
        if nbytes > MAX_ARRAY_BYTES:
            raise InputError(f"ECA shape {'x'.join(map(str, dims))} needs {nbytes / 1e9:,.1f} GB per float32 array "
                             f"(the benchmark holds about six); the limit is {MAX_ARRAY_BYTES / 2 ** 30:g} GiB "
                             f"({MAX_ARRAY_BYTES / 1e9:.2f} GB) per array")
        out.append(dims)
    if not out:
        raise InputError("shapes must hold at least one (N, C, H, W)")
    return out


def bench_eca(shapes=ECA_SHAPES, *, repeats: int = 20, warmup: int = 3, with_torch: bool = True, k: int | None = None):
    """Time the ECA module (forward; forward + backward) against B and PyTorch autograd, float32.

    The module is the reference's (``VARIANTS["eca"]``: GAP -> C1D_k -> σ -> rescale, plain NumPy).
    B = ``x.mean(axis=(2, 3))`` plus ``x * s[:, :, None, None]`` on the same array: the reads and
    the write that any forward pass must do. Targets: forward <= 1.2 B, forward + backward <= 3 B,
    and no slower than PyTorch. All three run in one thread (PyTorch through ``torch.set_num_threads(1)``):
    the module is a few passes over memory, the same work on every side.
    """
    xp = get_xp()
    repeats = check_int(repeats, "repeats", min_value=1)
    warmup = check_int(warmup, "warmup", min_value=0)
    shapes = check_eca_shapes(shapes)
    with_torch = check_bool(with_torch, "with_torch")
    k = None if k is None else check_kernel(k)
    v = VARIANTS["eca"]
    torch = _torch() if with_torch else None
    rows = []
    for shape in shapes:
        N, C, H, W = shape
        rng = numpy.random.default_rng(0)
        x = xp.asarray(rng.standard_normal(shape, dtype=numpy.float32))
        dout = xp.asarray(rng.standard_normal(shape, dtype=numpy.float32))
        params = v.init_params(C, rng=rng, dtype=numpy.float32, **({"k": k} if k else {}))

        def baseline():  # the reads and the write any forward pass must do
            s = x.mean(axis=(2, 3))                                  # (N, C)
            return x * s[:, :, None, None]

        def fwd():
            return v.forward(x, params, check_finite=False)

        def fwd_bwd():
            out, cache = v.forward(x, params, check_finite=False)
            return v.backward(dout, cache)

        fns = {"B": baseline, "forward": fwd, "forward_backward": fwd_bwd}
        kk = int(params["w"].shape[0])
        if torch is not None:
            torch.set_num_threads(1)
            conv = torch.nn.Conv1d(1, 1, kk, padding=(kk - 1) // 2, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.as_tensor(numpy.asarray(params["w"])).reshape(1, 1, kk))
            tx = torch.as_tensor(numpy.asarray(x))
            tdout = torch.as_tensor(numpy.asarray(dout))

            def tmodule(inp):
                z = conv(inp.mean((2, 3))[:, None, :])[:, 0]
                return inp * torch.sigmoid(z)[:, :, None, None]

            def tfwd():
                with torch.no_grad():
                    return tmodule(tx)

            def tfwd_bwd():
                inp = tx.detach().requires_grad_(True)
                conv.weight.grad = None
                tmodule(inp).backward(tdout)
                return inp.grad

            fns.update(torch_forward=tfwd, torch_forward_backward=tfwd_bwd)
        with blas_one_thread():
            row = {"shape": list(shape), "k": kk, "threads": 1,
                   **time_interleaved(fns, repeats=repeats, warmup=warmup)}
        row["forward_over_B"] = row["forward"]["median_ms"] / row["B"]["median_ms"]
        row["forward_backward_over_B"] = row["forward_backward"]["median_ms"] / row["B"]["median_ms"]
        if torch is not None:
            row["forward_over_torch"] = row["forward"]["median_ms"] / row["torch_forward"]["median_ms"]
            row["forward_backward_over_torch"] = (row["forward_backward"]["median_ms"]
                                                  / row["torch_forward_backward"]["median_ms"])
        rows.append(row)
    return rows
