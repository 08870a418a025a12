"""Multiply-accumulates (eca_ref.models.flops): hand counts, the paper's figures, and [parity] against
PyTorch twins measured with forward hooks (and torch's own FlopCounterMode) where torch is installed."""
import doctest
import importlib.util
import itertools
import math
import pathlib

import pytest

import eca_ref.models.flops as flops_module
from eca_ref.errors import InputError
from eca_ref.models import ResNetConfig, block_specs, count_parameters
from eca_ref.models.architectures import bn, conv, fc
from eca_ref.models.flops import (CONVENTIONS, G2, cifar_architecture, cifar_flops, convention_total, layer_macs,
                                  module_flops, network_flops)
from eca_ref.tables import PAPER_NETWORK_FLOPS, compare_network

AUTHORS_K = {"resnet50": (3, 5, 5, 7), "resnet101": (3, 3, 5, 7), "resnet152": (3, 3, 5, 7),
             "mobilenetv2": (1, 1, 1, 1, 3, 3, 3)}


# ------------------------------------------------------------------ hand counts
def test_doctests():
    assert doctest.testmod(flops_module).failed == 0


def test_small_layers_by_hand():
    # 3x3 conv 16 -> 32 at scale 2 on 32 x 32: 32 channels x 16 x 16 positions x 16 inputs x 9 taps
    assert layer_macs(conv("c", 16, 32, 3, scale=2), 32, 32) == 32 * 16 * 16 * 16 * 9 == 1_179_648
    # depthwise 3x3 on 8 channels (groups 8): one input channel per output
    assert layer_macs(conv("dw", 8, 8, 3, groups=8), 10, 10) == 8 * 100 * 1 * 9
    # odd sizes: a stride-2 layer gives ceil(H / 2) (7 -> 4, 5 -> 3)
    assert layer_macs(conv("c", 1, 1, 1, scale=2), 7, 5) == 4 * 3
    assert layer_macs(fc("fc", 64, 10), 32, 32) == 640          # the image size does not matter
    assert layer_macs(bn("bn", 64), 32, 32) == 0                   # BN is listed apart


def test_module_by_hand():
    assert module_flops("eca", 256, 56, 56, k=3) == {"f": 768, "gap": 802_816, "sigmoid": 256, "scale": 802_816}
    assert module_flops("se", 256, 7, 7)["f"] == 2 * 256 * 16       # W1 (16, 256) and W2 (256, 16)
    assert module_flops("se-var3", 64, 1, 1)["f"] == 64 * 64
    assert module_flops("se-gc", 64, 1, 1, groups=4)["f"] == 64 * 64 // 4
    assert module_flops("se-var2", 64, 1, 1)["f"] == 64
    assert module_flops("se-var1", 64, 1, 1)["f"] == 0
    assert module_flops("eca-ns", 64, 1, 1, k=5)["f"] == module_flops("ceca", 64, 1, 1, k=5)["f"] == 320
    assert module_flops("none", 64, 8, 8) == {"f": 0, "gap": 0, "sigmoid": 0, "scale": 0}
    with pytest.raises(InputError, match="se: .*r"):
        module_flops("se", 8, 4, 4, r=16)


def test_default_cifar_net_by_hand():
    c = cifar_flops(ResNetConfig())           # depth 8, width 16, ECA with k = 3, 3, 3, one 32 x 32 image
    stem = 16 * 32 * 32 * 3 * 9                                            # 442,368
    stage1 = 2 * 16 * 32 * 32 * 16 * 9                                     # two 3x3 convs, 16 -> 16
    stage2 = 32 * 16 * 16 * 16 * 9 + 32 * 16 * 16 * 32 * 9 + 32 * 16 * 16 * 16   # conv1, conv2, 1x1 shortcut
    stage3 = 64 * 8 * 8 * 32 * 9 + 64 * 8 * 8 * 64 * 9 + 64 * 8 * 8 * 32
    assert c.backbone_macs == stem + stage1 + stage2 + stage3 + 64 * 10 == 12_501_632
    assert c.attention_macs == 3 * (16 + 32 + 64) == 336
    assert c.other["attn_gap"] == c.other["attn_scale"] == 16 * 1024 + 32 * 256 + 64 * 64
    assert c.other["attn_sigmoid"] == 16 + 32 + 64
    assert c.other["gap"] == 64 * 8 * 8 and c.other["fc_bias"] == 10
    assert c.other["bn"] == 16 * 1024 * 3 + 32 * 256 * 3 + 64 * 64 * 3     # stem, bn1, bn2, shortcut BN
    assert c.other["add"] == 16 * 1024 + 32 * 256 + 64 * 64
    assert cifar_flops(ResNetConfig(attention="none")).backbone_macs == c.backbone_macs
    assert cifar_flops(ResNetConfig(attention="none")).attention_macs == 0


@pytest.mark.parametrize("cfg", [ResNetConfig(), ResNetConfig(depth=14, width=24, attention="se"),
                                 ResNetConfig(width=32, k=7)])
def test_cifar_architecture_has_the_nets_parameters(cfg):
    counts = count_parameters(cfg)
    assert cifar_architecture(cfg).params == counts["total"] - counts["attention"]


# ------------------------------------------------------------------ the paper's networks
def test_resnet50_counts():
    plain = network_flops("resnet50")
    assert plain.backbone_macs == 4_089_184_256 and plain.attention_macs == 0     # the textbook 4.09 GMACs
    assert network_flops("resnet50", "se").attention_macs == 2_514_944            # = SE's parameters
    eca = network_flops("resnet50", "eca", stage_k=AUTHORS_K["resnet50"])
    assert eca.attention_macs == 86_272                                           # the 1D convolutions
    assert eca.other["attn_gap"] == 5_519_360 and eca.other["attn_sigmoid"] == 15_104
    assert convention_total(plain, "flops") == 2 * 4_089_184_256
    assert round(convention_total(plain, "ptflops") / 1e9, 2) == 4.12          # what users' tools print
    with pytest.raises(InputError, match="convention must be one of"):
        convention_total(plain, "nvidia")


def test_mobilenetv2_backbone_by_stage():
    """MobileNetV2 at 224 x 224 (grouped convs: depthwise 3x3 is C * 9 per output pixel), summed by hand:
    stem conv 3x3 s2 (112 px), then per inverted residual (t, c, n, s) expand 1x1, depthwise 3x3, project 1x1,
    the last 1x1 conv to 1280 (7 px) and the classifier."""
    def block(cin, cout, t, hw_in, stride):
        hidden, hw = cin * t, hw_in // stride
        expand = 0 if t == 1 else hidden * cin * hw_in ** 2
        return expand + hidden * 9 * hw ** 2 + cout * hidden * hw ** 2, hw

    total, cin, hw = 32 * 27 * 112 ** 2, 32, 112
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            macs, hw = block(cin, c, t, hw, s if i == 0 else 1)
            total, cin = total + macs, c
    total += 1280 * 320 * 7 ** 2 + 1280 * 1000
    assert total == network_flops("mobilenetv2").backbone_macs == 300_774_272


def _paper_rows():
    for net, vals in PAPER_NETWORK_FLOPS.items():
        for variant, printed in vals.items():
            yield net, variant, printed


def test_the_paper_convention_reproduces_resnet50_plain_and_se_but_not_eca():
    """thop as of 2019 in units of 2^30 (the authors' paras_flops.py) gives 3.86 and 3.87; with ECA it
    counts the modules' GAP too (5.5M additions) and gives 3.87, where the paper prints 3.86."""
    def g(variant, **kw):
        return round(convention_total(network_flops("resnet50", variant, **kw), "thop-2019") / G2, 2)
    assert (g("none"), g("se"), g("eca", stage_k=(3, 5, 5, 7))) == (3.86, 3.87, 3.87)
    # no convention reproduces all twelve printed values; thop-2019 in binary units gets the most (6)
    hits = {}
    for name in CONVENTIONS:
        for binary in (True, False):
            n = 0
            for net, variant, printed in _paper_rows():
                kw = {"stage_k": AUTHORS_K[net]} if variant == "eca" else {}
                unit, digits = ((2 ** 20, 1) if net == "mobilenetv2" else (G2, 2)) if binary else \
                    ((1e6, 1) if net == "mobilenetv2" else (1e9, 2))
                n += round(convention_total(network_flops(net, variant, **kw), name) / unit, digits) == printed
            hits[(name, binary)] = n
    assert max(hits.values()) == hits[("thop-2019", True)] == 6 < 12


def test_the_abstracts_eca_gflops_is_no_subset_of_the_module():
    """4.7e-4 GFLOPs: no sum of the modules' operations, as MACs or as 2 x MACs, in 10^9 or 2^30."""
    c = network_flops("resnet50", "eca", stage_k=(3, 5, 5, 7))
    parts = [c.attention_macs, c.other["attn_sigmoid"], c.other["attn_sigmoid"],   # f, sigmoid, GAP's divisions
             c.other["attn_gap"], c.other["attn_scale"]]
    for n in range(1, len(parts) + 1):
        for subset in itertools.combinations(parts, n):
            for factor, unit in itertools.product((1, 2), (1e9, G2)):
                assert round(factor * sum(subset) / unit, 5) != 0.00047


def test_compare_network_rows_carry_the_integers():
    rows = compare_network("resnet50", hw=(224, 224))
    eca = next(r for r in rows if r["variant"] == "eca" and "stage_k" in r["hp"])
    f = eca["flops"]
    assert (f["backbone_macs"], f["attention_macs"], f["paper"], f["paper_value"]) == (4_089_184_256, 86_272, 3.86, 3.87)
    assert f["paper_convention"] == "thop-2019" and set(f["conventions"]) == set(CONVENTIONS)
    assert all(isinstance(v, int) for v in f["conventions"].values())
    small = compare_network("resnet50", hw=(112, 112))
    assert all(r["flops"]["paper"] is None for r in small)      # the paper's figures are for 224 x 224
    assert "flops" not in compare_network("resnet50")[0]


# ------------------------------------------------------------------ [parity] with PyTorch twins
def _twin_resnet(nn, torch, blocks, attention):
    class Module(nn.Module):                 # the authors' eca_layer and SE layer (no FC biases)
        def __init__(self, C, k):
            super().__init__()
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
            if attention == "eca":
                self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)
            else:
                self.fc = nn.Sequential(nn.Linear(C, C // 16, bias=False), nn.ReLU(), nn.Linear(C // 16, C, bias=False))
            self.sigmoid = nn.Sigmoid()

        def forward(self, x):
            y = self.avg_pool(x)
            if attention == "eca":
                y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
            else:
                y = self.fc(y.flatten(1))[:, :, None, None]
            return x * self.sigmoid(y).expand_as(x)

    class Bottleneck(nn.Module):
        def __init__(self, c_in, w, stride, down, k):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c_in, w, 1, bias=False), nn.BatchNorm2d(w)
            self.conv2, self.bn2 = nn.Conv2d(w, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
            self.conv3, self.bn3 = nn.Conv2d(w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w)
            self.relu = nn.ReLU()
            self.attn = Module(4 * w, k) if attention != "none" else None
            self.downsample = (nn.Sequential(nn.Conv2d(c_in, 4 * w, 1, stride, bias=False), nn.BatchNorm2d(4 * w))
                               if down else None)

        def forward(self, x):
            o = self.relu(self.bn1(self.conv1(x)))
            o = self.relu(self.bn2(self.conv2(o)))
            o = self.bn3(self.conv3(o))
            if self.attn is not None:
                o = self.attn(o)
            return self.relu(o + (x if self.downsample is None else self.downsample(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1, self.relu = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            c_in, layers = 64, []
            for s, (n, w) in enumerate(zip(blocks, (64, 128, 256, 512))):
                layers += [Bottleneck(c_in if b == 0 else 4 * w, w, (1 if s == 0 else 2) if b == 0 else 1, b == 0,
                                      (3, 5, 5, 7)[s]) for b in range(n)]
                c_in = 4 * w
            self.layers = nn.Sequential(*layers)
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2048, 1000)

        def forward(self, x):
            x = self.layers(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return Net()


def _hooked(torch, nn, model, x):
    """Run ``model`` on ``x`` with forward hooks: MACs of conv/linear and the element counts of the rest,
    plus thop-2019's rules applied to the shapes PyTorch saw."""
    tally = dict.fromkeys(("macs", "bn", "relu", "maxpool", "pool_in", "pool_out", "thop2019"), 0)

    def hook(m, inp, out):
        x_in = inp[0]
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            n = out.numel() * m.in_channels // m.groups * math.prod(m.kernel_size)
            tally["macs"] += n
            tally["thop2019"] += n
        elif isinstance(m, nn.Linear):
            tally["macs"] += m.in_features * out.numel()
            tally["thop2019"] += (2 * m.in_features - 1) * out.numel()
        elif isinstance(m, nn.BatchNorm2d):
            tally["bn"] += x_in.numel()
            tally["thop2019"] += 4 * x_in.numel()
        elif isinstance(m, nn.ReLU):
            tally["relu"] += x_in.numel()
            tally["thop2019"] += x_in.numel()
        elif isinstance(m, nn.MaxPool2d):
            tally["maxpool"] += out.numel() * m.kernel_size ** 2
            tally["thop2019"] += out.numel() * m.kernel_size ** 2
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            tally["pool_in"] += x_in.numel()
            tally["pool_out"] += out.numel()
            tally["thop2019"] += (x_in[0, 0].numel() + 1) * out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return tally


@pytest.mark.parametrize("variant", ["none", "eca", "se"])
def test_parity_resnet50_forward_hooks(variant):
    """[parity] A PyTorch ResNet-50 twin (on the meta device: shapes only) measured by forward hooks."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with torch.device("meta"):
        model = _twin_resnet(nn, torch, (3, 4, 6, 3), variant).eval()
        x = torch.empty(1, 3, 224, 224)
    t = _hooked(torch, nn, model, x)
    c = network_flops("resnet50", variant, **({"stage_k": (3, 5, 5, 7)} if variant == "eca" else {}))
    o = c.other
    assert t["macs"] == c.macs
    assert (t["bn"], t["relu"], t["maxpool"]) == (o["bn"], o["relu"] + o["attn_relu"], o["maxpool"])
    assert t["pool_in"] == o["gap"] + o["attn_gap"] and t["pool_out"] == 2048 + o["attn_sigmoid"]
    assert t["thop2019"] == convention_total(c, "thop-2019")
    flop_counter = pytest.importorskip("torch.utils.flop_counter")
    with flop_counter.FlopCounterMode(display=False) as fc_mode:
        with torch.no_grad():
            model(x)
    assert fc_mode.get_total_flops() == 2 * c.macs            # torch counts 2 FLOPs per multiply-add


def _twin_cifar(nn, torch, cfg):
    class Eca(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.pool, self.conv = nn.AdaptiveAvgPool2d(1), nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

        def forward(self, x):
            y = self.conv(self.pool(x).squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
            return x * torch.sigmoid(y)

    class Block(nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.conv1 = nn.Conv2d(spec.cin, spec.cout, 3, spec.stride, 1, bias=False)
            self.bn1, self.relu = nn.BatchNorm2d(spec.cout), nn.ReLU()
            self.conv2, self.bn2 = nn.Conv2d(spec.cout, spec.cout, 3, 1, 1, bias=False), nn.BatchNorm2d(spec.cout)
            self.attn = Eca(spec.attn_hp["k"])
            self.sc = (nn.Sequential(nn.Conv2d(spec.cin, spec.cout, 1, spec.stride, bias=False),
                                     nn.BatchNorm2d(spec.cout)) if spec.projection else nn.Identity())

        def forward(self, x):
            o = self.attn(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
            return self.relu(o + self.sc(x))

    w = cfg.width
    return nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                         *[Block(s) for s in block_specs(cfg)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4 * w, cfg.num_classes))


@pytest.mark.parametrize("cfg", [ResNetConfig(), ResNetConfig(depth=14, width=32)])
def test_parity_cifar_net_forward_hooks(cfg):
    """[parity] The CIFAR net's PyTorch twin at 32 x 32, measured by forward hooks."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = _twin_cifar(nn, torch, cfg).eval()
    t = _hooked(torch, nn, model, torch.zeros(1, 3, 32, 32))
    c = cifar_flops(cfg)
    assert t["macs"] == c.macs and t["bn"] == c.other["bn"] and t["relu"] == c.other["relu"]
    assert t["pool_in"] == c.other["gap"] + c.other["attn_gap"]


def test_module_cost_benchmark_smoke():
    """benchmarks/bench_module_cost.py times a tiny block (one image, 7 x 7, 256 channels) and reports ratios."""
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_module_cost.py"
    spec = importlib.util.spec_from_file_location("bench_module_cost", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = mod.bench_stage(1, 7, 256, 3, repeats=1, warmup=0)
    assert set(row["times_ms"]) == {"convs F", "convs FB", "se F", "se FB", "eca F", "eca FB"}
    assert row["block_conv_macs"] == 7 * 7 * (256 * 64 + 64 * 64 * 9 + 64 * 256)
    assert row["eca"]["f_macs_ratio"] == 3 * 256 / row["block_conv_macs"]
    assert all(v > 0 for name in ("se", "eca") for v in row[name].values())
