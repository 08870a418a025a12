"""The benchmark: plain functions and `eca-ref bench` (tiny sizes: this checks plumbing, not speed)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from eca_ref.bench import bench_eca, bench_train_step, environment, time_interleaved, time_median
from eca_ref.cli import main
from eca_ref.cli_bench import COMMANDS
from eca_ref.models import ResNetConfig

for _cmd in COMMANDS:
    if _cmd.name not in main.commands:
        main.add_command(_cmd)

TINY = ["--repeats", "1", "--warmup", "0", "--batch", "4", "--width", "2", "--eca-shape", "2x8x4x4"]


def test_time_median():
    r = time_median(lambda: None, repeats=3, warmup=1)
    assert r["repeats"] == 3 and 0 <= r["min_ms"] <= r["median_ms"] <= r["max_ms"]


def test_time_interleaved_takes_turns():
    import time
    calls = []

    def slow():
        calls.append("slow")
        time.sleep(0.004)

    r = time_interleaved({"slow": slow, "fast": lambda: calls.append("fast")}, repeats=3, warmup=1)
    # warmup, then every round calls both, in reverse order every other round
    assert calls == ["slow", "fast", "slow", "fast", "fast", "slow", "slow", "fast"]
    assert r["slow"]["min_ms"] >= 4.0 > r["fast"]["max_ms"] and r["fast"]["repeats"] == 3


def test_bench_train_step_numpy_only():
    r = bench_train_step(ResNetConfig(width=2), batch=4, repeats=2, warmup=0, with_torch=False)
    assert r["numpy"]["median_ms"] > 0 and "torch" not in r and r["threads"] in (1, environment()["cores"])


def test_bench_eca_numpy_only():
    rows = bench_eca([(2, 8, 4, 4)], repeats=1, warmup=0, with_torch=False)
    assert rows[0]["k"] == 3 and rows[0]["forward_over_B"] > 0 and "torch_forward" not in rows[0]


def test_cli_bench_json_no_torch():
    res = CliRunner().invoke(main, ["bench", *TINY, "--no-torch", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["train_step"]["config"]["width"] == 2 and "ratio" not in out["train_step"]
    assert out["eca"][0]["shape"] == [2, 8, 4, 4]
    assert out["environment"]["numpy"] == np.__version__


def test_cli_bench_table():
    res = CliRunner().invoke(main, ["bench", *TINY, "--no-torch"])
    assert res.exit_code == 0, res.output
    assert "training step" in res.output and "ECA module alone" in res.output


@pytest.mark.parametrize("args, match", [
    (["--depth", "9"], "depth must be of the form 6n \\+ 2"),
    (["--eca-shape", "2x8x4"], "--eca-shape must be four positive integers"),
])
def test_cli_bench_bad_input(args, match):
    res = CliRunner().invoke(main, ["bench", *TINY, "--no-torch", *args])
    assert res.exit_code == 2
    assert "Traceback" not in res.output


def test_parity_bench_with_torch():
    """[parity] The PyTorch twin is the same network: same logits with copied weights; the ratio is reported."""
    torch = pytest.importorskip("torch")
    from eca_ref.bench import make_torch_resnet
    from eca_ref.models import init_resnet, resnet_forward
    cfg = ResNetConfig(width=4)
    params, buffers = init_resnet(cfg, np.random.default_rng(0), dtype=np.float64)
    model = make_torch_resnet(cfg, params, buffers, dtype=torch.float64).train()
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16))
    np.testing.assert_allclose(resnet_forward(x, params, buffers, cfg, train=True)[0],
                               model(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-10)
    assert sum(p.numel() for p in model.parameters()) == sum(a.size for a in params.values())
    r = bench_train_step(cfg, batch=4, repeats=1, warmup=0)
    assert r["ratio"] > 0


def test_gemm_floor_script(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gemm_floor.py"
    spec = importlib.util.spec_from_file_location("bench_gemm_floor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--width", "2", "--batch", "4", "--repeats", "1", "--threads", "2"])
    out = capsys.readouterr().out
    # depth 8: 7 convs + 2 projections, forward, weight gradient and (but the stem's) input gradient,
    # at least one chunk product each
    n = int(out.split(" matrix products")[0].split()[-1])
    assert n >= 9 + 9 + 8 and "products" in out and "rest" in out


def test_layers_script(capsys):
    pytest.importorskip("torch")
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_layers.py"
    spec = importlib.util.spec_from_file_location("bench_layers", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from eca_ref.models import ResNetConfig
    counts = mod.layer_counts(ResNetConfig(depth=14, width=4))
    # depth 14: stem + 6 blocks x 2 convs + 2 projections; BN after each of them
    assert sum(n for key, n in counts.items() if key[0] == "conv") == 1 + 12 + 2
    assert sum(n for key, n in counts.items() if key[0] == "bn") == 1 + 12 + 2
    assert counts[("conv", 4, 4, 32, 3, 1)] == 4 and counts[("conv", 8, 16, 16, 1, 2)] == 1
    mod.main(["--width", "2", "--batch", "2", "--repeats", "1"])
    out = capsys.readouterr().out
    assert out.count("conv ") >= 7 and "all conv layers of one step" in out and "all bn layers" in out


def test_bench_eca_checks_its_inputs_first():
    from eca_ref.errors import InputError, InputTypeError
    with pytest.raises(InputError, match="four integers"):
        bench_eca([(2, 8, 4)], repeats=1, warmup=0, with_torch=False)
    with pytest.raises(InputError, match="4,000.0 GB per float32 array.*2 GiB"):
        bench_eca([(100000, 1000, 100, 100)], repeats=1, warmup=0, with_torch=False)
    with pytest.raises(InputTypeError, match="with_torch must be True or False"):
        bench_eca([(2, 8, 4, 4)], repeats=1, warmup=0, with_torch="no")


def test_cli_bench_explicit_torch_without_pytorch_is_an_error(monkeypatch):
    import eca_ref.cli_bench as cli_bench
    monkeypatch.setattr(cli_bench, "has_torch", lambda: False)
    res = CliRunner().invoke(main, ["bench", *TINY, "--no-step", "--torch"])
    lines = [s for s in res.stderr.splitlines() if s.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "PyTorch is not installed" in lines[0], res.output


def test_cli_bench_without_pytorch_says_skipped(monkeypatch):
    import eca_ref.bench as bench_mod
    import eca_ref.cli_bench as cli_bench
    monkeypatch.setattr(cli_bench, "has_torch", lambda: False)
    monkeypatch.setattr(bench_mod, "_torch", lambda: None)
    res = CliRunner().invoke(main, ["bench", *TINY, "--no-step"])
    assert res.exit_code == 0 and "PyTorch not installed: skipped" in res.stdout, res.output
    res = CliRunner().invoke(main, ["bench", *TINY, "--no-step", "--json"])
    assert json.loads(res.stdout)["notes"] == ["PyTorch not installed: skipped"]
