"""Train the PyTorch twin of eca-ref's network with eca-ref's own data, initial weights and recipe.

A cross-check of the trainer, not of the layers (tests/test_model_parity.py does those): the
PyTorch twin of ``eca_ref.bench.make_torch_resnet`` gets the initial weights that ``eca-ref train``
draws for the same seed (``--init eca-ref``, the default) or PyTorch's own layer defaults (``--init
pytorch``: conv weights kaiming_uniform(a=sqrt(5)), i.e. uniform with std 1/sqrt(3 fan_in)), then
trains on the batches of ``eca_ref.data.iterate_batches`` drawn from the same generator (same
shuffle, crops and flips), with ``torch.optim.SGD`` (Nesterov, weight decay on conv and linear
weights only) and eca-ref's learning-rate schedule, evaluated after every epoch with BN in eval mode.

If eca-ref's trainer is right, its test accuracy matches ``eca-ref train`` with the same options to
within the spread that float rounding alone causes (a few tenths of a point after 10 epochs).

Run from a checkout (needs torch):

    python benchmarks/train_torch_twin.py --data-dir DATA [--depth 8] [--epochs 10] [--lr 0.2]
        [--warmup 0.3] [--seed 0] [--init eca-ref|pytorch] [--threads 2] [--limit N]

Prints one JSON line per epoch (train accuracy, test accuracy, seconds so far).
"""
import argparse
import json
import pathlib
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from eca_ref.bench import make_torch_resnet  # noqa: E402
from eca_ref.data import iterate_batches  # noqa: E402
from eca_ref.models import init_resnet  # noqa: E402
from eca_ref.train import TrainConfig  # noqa: E402
from eca_ref.train.loop import _schedule, load_data  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--warmup", type=float, default=TrainConfig.warmup)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=("eca-ref", "pytorch"), default="eca-ref")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="only the first N train and N test images")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)  # only --init pytorch draws from it
    cfg = TrainConfig(depth=a.depth, width=a.width, epochs=a.epochs, lr=a.lr, warmup=a.warmup, seed=a.seed,
                      limit=a.limit)
    data = load_data(cfg, a.data_dir)
    init_ss, data_ss = numpy.random.SeedSequence(cfg.seed).spawn(2)  # as eca_ref.train.train does
    params, buffers = init_resnet(cfg.model_config(), numpy.random.default_rng(init_ss))
    rng = numpy.random.default_rng(data_ss)
    if a.init == "eca-ref":
        model = make_torch_resnet(cfg.model_config(), params, buffers)
    else:
        model = make_torch_resnet(cfg.model_config())
    decay = [p for n, p in model.named_parameters()
             if n.endswith("weight") and ("conv" in n or n == "fc.weight") and "attn" not in n]
    rest = [p for p in model.parameters() if all(p is not q for q in decay)]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    sched = _schedule(cfg, len(data.train_y))
    step, t0 = 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        correct = seen = 0
        for x, y in iterate_batches(data.train_x, data.train_y, cfg.batch_size, rng=rng, shuffle=True,
                                    augment=cfg.augment, mean=data.mean, std=data.std):
            for group in opt.param_groups:
                group["lr"] = sched(step)
            xt, yt = torch.from_numpy(numpy.ascontiguousarray(x)), torch.from_numpy(y)
            logits = model(xt)                                                   # (B, 10)
            loss = torch.nn.functional.cross_entropy(logits, yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            correct += int((logits.argmax(1) == yt).sum())
            seen += len(y)
        model.eval()
        test_correct = 0
        with torch.no_grad():
            for x, y in iterate_batches(data.test_x, data.test_y, 500, rng=None, shuffle=False, augment=False,
                                        mean=data.mean, std=data.std):
                pred = model(torch.from_numpy(numpy.ascontiguousarray(x))).argmax(1)
                test_correct += int((pred == torch.from_numpy(y)).sum())
        print(json.dumps({"epoch": epoch + 1, "train_acc": correct / seen, "test_acc": test_correct / len(data.test_y),
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
