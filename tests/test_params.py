"""Parameter counts per module and per network: the paper's numbers to the digit."""
from __future__ import annotations

import doctest
import math

import pytest

import eca_ref.models.networks as networks_module
import eca_ref.tables as tables_module
from eca_ref import VARIANTS, kernel_size
from eca_ref.errors import InputError, InputTypeError
from eca_ref.models.networks import NETWORKS, UNIT, get_network, network_params, to_M
from eca_ref.tables import PAPER_NETWORK_M, compare_network, compare_variants

# The closed forms of the paper's table, written out here independently of the registry.
CLOSED = {
    "none": lambda C, hp: 0,
    "se": lambda C, hp: 2 * C * (C // hp["r"]) + ((C // hp["r"] + C) if hp["bias"] else 0),
    "se-var1": lambda C, hp: 0,
    "se-var2": lambda C, hp: C,
    "se-var3": lambda C, hp: C * C,
    "se-gc": lambda C, hp: C * C // hp["groups"],
    "eca-ns": lambda C, hp: hp["k"] * C,
    "eca": lambda C, hp: hp["k"],
    "eca-band": lambda C, hp: hp["k"],
    "ceca": lambda C, hp: hp["k"],
}


def test_doctests():
    for module in (networks_module, tables_module):
        res = doctest.testmod(module, verbose=False)
        assert res.attempted >= 3 and res.failed == 0, module.__name__


# ----------------------------------------------------------------------- the plain networks
@pytest.mark.parametrize("net, total, M", [
    ("resnet50", 25_557_032, 24.37),
    ("resnet101", 44_549_160, 42.49),
    ("resnet152", 60_192_808, 57.40),
    ("mobilenetv2", 3_504_872, 3.34),
])
def test_plain_totals(net, total, M):
    c = network_params(net)
    assert c.total == c.base == total and c.added == 0
    assert c.M == M == PAPER_NETWORK_M[net]["none"]
    assert get_network(net).describe().params == total  # the sum over the generated layer list


def test_layer_list_structure_resnet50():
    arch = get_network("resnet50").describe()
    kinds = [layer.kind for layer in arch.layers]
    # 1 stem + 16 blocks * 3 + 4 downsample convs = 53 convs, as many BNs, one fc
    assert kinds.count("conv") == 53 and kinds.count("bn") == 53 and kinds.count("fc") == 1
    names = {layer.name: layer for layer in arch.layers}
    assert names["conv1"].shapes == ((64, 3, 7, 7),)
    assert names["layer1.0.downsample.0"].shapes == ((256, 64, 1, 1),)
    assert names["layer2.0.conv2"].shapes == ((128, 128, 3, 3),)
    assert names["layer4.2.bn3"].shapes == ((2048,), (2048,))
    assert names["fc"].shapes == ((1000, 2048), (1000,))
    assert "layer1.1.downsample.0" not in names
    assert [s.channels for s in arch.sites] == [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    assert all(s.after == f"{s.block}.bn3" for s in arch.sites)
    # docs/paper.md ("Counting ResNet-50"): sum C = 15,104 and sum C^2 = 20,119,552 over its 16 blocks
    assert sum(s.channels for s in arch.sites) == 15_104
    assert sum(s.channels ** 2 for s in arch.sites) == 20_119_552


def test_layer_list_structure_mobilenetv2():
    arch = get_network("mobilenetv2").describe()
    kinds = [layer.kind for layer in arch.layers]
    assert kinds.count("conv") == 52 and kinds.count("bn") == 52 and kinds.count("fc") == 1
    names = {layer.name: layer for layer in arch.layers}
    assert names["features.0.0"].shapes == ((32, 3, 3, 3),)
    assert names["features.1.conv.0.0"].shapes == ((32, 1, 3, 3),)   # t = 1: no expansion, depthwise first
    assert names["features.2.conv.1.0"].shapes == ((96, 1, 3, 3),)   # depthwise on 6 * 16 channels
    assert names["features.17.conv.2"].shapes == ((320, 960, 1, 1),)
    assert names["features.18.0"].shapes == ((1280, 320, 1, 1),)
    assert names["classifier.1"].shapes == ((1000, 1280), (1000,))
    assert [s.channels for s in arch.sites] == [16] + [24] * 2 + [32] * 3 + [64] * 4 + [96] * 3 + [160] * 3 + [320]
    exp = get_network("mobilenetv2").describe("expanded")
    assert [s.channels for s in exp.sites][:4] == [32, 96, 144, 144]


# ----------------------------------------------------------------------- the paper's Table 3
@pytest.mark.parametrize("net, se_added, se_M", [
    ("resnet50", 2_514_944, 26.77),
    ("resnet101", 4_743_168, 47.01),
    ("resnet152", 6_578_176, 63.68),
    ("mobilenetv2", 56_928, 3.40),   # r = 8, on each block's output channels
])
def test_se_backbones(net, se_added, se_M):
    c = network_params(net, "se")
    assert c.added == se_added and c.M == se_M == PAPER_NETWORK_M[net]["se"]


def test_se_resnet50_with_bias():
    c = network_params("resnet50", "se", bias=True)
    assert c.added == 2_530_992 and c.total == 28_088_024
    assert round(c.total / 1e6, 2) == 28.09  # the decimal-millions figure timm lists


def test_se_mobilenetv2_bias_and_placement():
    # With or without FC biases, SE (r = 8) on the block outputs rounds to the paper's 3.40M.
    assert network_params("mobilenetv2", "se", bias=True).M == 3.40
    # On the expanded channels after the depthwise conv it would not.
    exp = network_params("mobilenetv2", "se", placement="expanded")
    assert exp.added == 1_128_064 and exp.M == 4.42


@pytest.mark.parametrize("net", list(NETWORKS))
def test_eca_backbones_match_paper(net):
    for kw in ({}, {"k": 3}, {"stage_k": NETWORKS[net].authors_stage_k}):
        assert network_params(net, "eca", **kw).M == PAPER_NETWORK_M[net]["eca"]


def test_eca_resnet50_kernels():
    eq12 = network_params("resnet50", "eca")
    assert eq12.added == 86 and eq12.stage_hp("k") == [5, 5, 5, 7]
    assert network_params("resnet50", "eca", k=3).added == 48
    authors = network_params("resnet50", "eca", stage_k=(3, 5, 5, 7))
    assert authors.added == 80 and authors.stage_hp("k") == [3, 5, 5, 7]
    assert network_params("resnet50", "eca", stage_k="3,5,5,7").added == 80
    assert [b.hp["k"] for b in eq12.per_block] == [kernel_size(b.channels) for b in eq12.per_block]


@pytest.mark.parametrize("variant, kw, added", [
    ("se-var1", {}, 0),
    ("se-var2", {}, 15_104),
    ("se-var3", {}, 20_119_552),
    ("se-gc", {"groups": 16}, 1_257_472),       # SE-GC1
    ("se-gc", {"groups": "C/16"}, 241_664),     # SE-GC2
    ("se-gc", {"groups": "C/8"}, 120_832),      # SE-GC3
    ("eca-ns", {"k": 3}, 45_312),
    ("eca-band", {"stage_k": (3, 5, 5, 7)}, 80),
    ("ceca", {"k": 3}, 48),
])
def test_resnet50_variants(variant, kw, added):
    c = network_params("resnet50", variant, **kw)
    assert c.added == added and c.total == 25_557_032 + added


@pytest.mark.parametrize("net", list(NETWORKS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_per_block_counts_equal_closed_forms(net, variant):
    kw = {"groups": "C/8"} if variant == "se-gc" else {}
    c = network_params(net, variant, **kw)
    assert len(c.per_block) == len(get_network(net).describe().sites)
    for b in c.per_block:
        full = {"r": get_network(net).paper_reduction, "bias": False, **b.hp}
        assert b.params == CLOSED[variant](b.channels, full), b
    assert c.added == sum(b.params for b in c.per_block)


def test_network_name_forms():
    assert network_params("ResNet-50").total == network_params("resnet_50").total == 25_557_032
    assert network_params("MobileNetV2").total == 3_504_872


def test_to_M():
    assert UNIT == 1_048_576 and to_M(25_557_032) == 24.37 and to_M(3_561_800) == 3.40


# ----------------------------------------------------------------------- errors
def test_unknown_network_lists_known():
    with pytest.raises(InputError, match="unknown network 'vgg16'; known: resnet50, resnet101, resnet152, mobilenetv2"):
        network_params("vgg16")
    with pytest.raises(InputTypeError, match="network must be a string"):
        network_params(50)


def test_unknown_variant_lists_known():
    with pytest.raises(InputError, match="known: none, se"):
        network_params("resnet50", "cbam")


def test_groups_not_fitting_names_block():
    with pytest.raises(InputError, match=r"groups = 16 does not fit block features\.2 of mobilenetv2 \(C = 24\)"):
        network_params("mobilenetv2", "se-gc", groups=16)
    with pytest.raises(InputError, match=r"block layer1\.0 of resnet50 \(C = 256\)"):
        network_params("resnet50", "se-gc", groups=3)
    with pytest.raises(InputError, match=r"groups = C/16 does not fit block features\.2"):
        network_params("mobilenetv2", "se-gc", groups="C/16")
    for bad in ("C/0", "C/x", "G"):
        with pytest.raises(InputError, match="groups"):
            network_params("resnet50", "se-gc", groups=bad)
    with pytest.raises(InputError, match="groups must be >= 1"):
        network_params("resnet50", "se-gc", groups=0)


def test_reduction_not_fitting_names_block():
    with pytest.raises(InputError, match=r"se does not fit block features\.1 of mobilenetv2 \(C = 16\).*r"):
        network_params("mobilenetv2", "se", reduction=32)
    with pytest.raises(InputError, match="reduction must be >= 1"):
        network_params("resnet50", "se", reduction=0)
    with pytest.raises(InputTypeError, match="reduction must be an integer"):
        network_params("resnet50", "se", reduction=2.5)
    with pytest.raises(InputTypeError, match="bias must be True or False"):
        network_params("resnet50", "se", bias=1)


def test_bad_kernels():
    with pytest.raises(InputError, match="k must be odd"):
        network_params("resnet50", "eca", k=4)
    with pytest.raises(InputError, match="k must be >= 1"):
        network_params("resnet50", "eca", k=-1)
    with pytest.raises(InputError, match="not both"):
        network_params("resnet50", "eca", k=3, stage_k=(3, 5, 5, 7))
    with pytest.raises(InputError, match="resnet50 has 4 stages, got 3"):
        network_params("resnet50", "eca", stage_k=(3, 5, 5))
    with pytest.raises(InputError, match="mobilenetv2 has 7 stages"):
        network_params("mobilenetv2", "eca", stage_k=(3, 5, 5, 7))
    with pytest.raises(InputError, match="stage_k entry must be odd"):
        network_params("resnet50", "eca", stage_k="3,5,6,7")
    with pytest.raises(InputError, match="comma-separated"):
        network_params("resnet50", "eca", stage_k="3;5")
    with pytest.raises(InputError, match=r"k must be <= 2C - 1 = 31 for C = 16.*block features\.1|block features\.1.*k must be <= 2C - 1"):
        network_params("mobilenetv2", "eca", k=33)


def test_bad_placement():
    with pytest.raises(InputError, match="placement must be one of output for resnet50"):
        network_params("resnet50", "se", placement="expanded")
    with pytest.raises(InputError, match="placement must be one of output, expanded"):
        network_params("mobilenetv2", placement="middle")


# ----------------------------------------------------------------------- compare_network
ROW_KEYS = {"network", "variant", "label", "hp", "params", "params_added", "M", "paper_M", "note"}


@pytest.mark.parametrize("net", list(NETWORKS))
def test_compare_network_rows(net):
    rows = compare_network(net)
    assert {r["variant"] for r in rows} == set(VARIANTS)
    for r in rows:
        assert set(r) == ROW_KEYS
        if r["params"] is None:
            assert r["note"].startswith("n/a") and r["M"] is None and r["params_added"] is None
            continue
        assert isinstance(r["params"], int) and isinstance(r["params_added"], int)
        assert r["M"] == round(r["params"] / 2 ** 20, 2)
        assert r["params"] - r["params_added"] == rows[0]["params"]
        if r["paper_M"] is not None:
            assert r["M"] == r["paper_M"]
    with_paper = {r["variant"] for r in rows if r["paper_M"] is not None}
    assert with_paper == {"none", "se", "eca"}


def test_compare_network_resnet50_values():
    rows = compare_network("resnet50")
    by_label = {r["label"]: r for r in rows}
    assert by_label["ResNet-50 (plain)"]["params"] == 25_557_032
    assert by_label["SE (r=16)"]["params_added"] == 2_514_944 and by_label["SE (r=16)"]["M"] == 26.77
    assert by_label["SE (r=16, FC bias)"]["params_added"] == 2_530_992
    assert by_label["SE-GC1 (G=16)"]["params_added"] == 1_257_472
    assert by_label["SE-GC2 (G=C/16)"]["params_added"] == 241_664
    assert by_label["SE-GC3 (G=C/8)"]["params_added"] == 120_832
    assert by_label["ECA-NS (k=3)"]["params_added"] == 45_312
    eca = [(r["label"], r["params_added"], r["M"], r["hp"]) for r in rows if r["variant"] == "eca"]
    assert eca == [("ECA (k by Eq. 12: 5,5,5,7)", 86, 24.37, {"k": "eq12"}),
                   ("ECA (k=3)", 48, 24.37, {"k": 3}),
                   ("ECA (authors' k: 3,5,5,7)", 80, 24.37, {"stage_k": [3, 5, 5, 7]})]


def test_compare_network_options():
    rows = compare_network("resnet50", k=5, stage_k="3,3,3,3", groups=8, reduction=8)
    labels = [r["label"] for r in rows]
    assert "ECA (k=5)" in labels and "ECA (k per stage: 3,3,3,3)" in labels and "SE (r=8)" in labels
    assert "SE-GC (G=8)" in labels
    # not the paper's settings any more: no paper value for SE and ECA
    assert {r["variant"] for r in rows if r["paper_M"] is not None} == {"none"}
    gc8 = next(r for r in rows if r["label"] == "SE-GC (G=8)")
    assert gc8["params_added"] == 20_119_552 // 8
    # explicit settings must fit; the paper's fixed ones are shown as n/a
    with pytest.raises(InputError, match="features.2"):
        compare_network("mobilenetv2", groups=16)
    with pytest.raises(InputError, match="features.1"):
        compare_network("mobilenetv2", reduction=32)
    exp = compare_network("mobilenetv2", placement="expanded")
    assert all(r["paper_M"] is None for r in exp)  # not the paper's configuration
    assert "ECA (k by Eq. 12: 3,3/5,5,5,5,5,5)" in [r["label"] for r in exp]  # k differs inside a stage
    mb = {r["label"]: r for r in compare_network("mobilenetv2")}
    assert mb["SE-GC1 (G=16)"]["params"] is None and "features.2" in mb["SE-GC1 (G=16)"]["note"]
    assert mb["SE (r=8)"]["M"] == 3.40 and mb["MobileNetV2 (plain)"]["M"] == 3.34


# ----------------------------------------------------------------------- compare_variants
def test_compare_variants_256():
    rows = compare_variants(256)
    by = {r["label"]: r for r in rows}
    assert by["plain"]["params"] == 0 and by["plain"]["top1"] == 75.20
    assert by["SE (r=16)"]["params"] == 8192 and (by["SE (r=16)"]["top1"], by["SE (r=16)"]["top5"]) == (76.71, 93.38)
    assert by["SE-Var1"]["params"] == 0 and by["SE-Var1"]["top1"] == 76.00
    assert by["SE-Var2"]["params"] == 256 and by["SE-Var2"]["top5"] == 93.31
    assert by["SE-Var3"]["params"] == 65_536 and by["SE-Var3"]["top1"] == 77.42
    assert by["SE-GC1 (G=16)"]["params"] == 4096 and by["SE-GC1 (G=16)"]["top1"] == 76.95
    assert by["SE-GC2 (G=C/16)"]["params"] == 4096 and by["SE-GC2 (G=C/16)"]["top1"] == 76.98
    assert by["SE-GC3 (G=C/8)"]["params"] == 2048 and by["SE-GC3 (G=C/8)"]["top1"] == 76.96
    assert by["ECA-NS (k=5)"]["params"] == 1280 and by["ECA-NS (k=5)"]["top1"] == 77.35
    assert by["ECA (k=5)"]["params"] == 5 and (by["ECA (k=5)"]["top1"], by["ECA (k=5)"]["top5"]) == (77.43, 93.65)
    assert by["ECA (k=5)"]["paper_setting"] == "k=3"
    assert by["ECA-band (k=5)"]["top1"] is None and by["CECA (k=5)"]["params"] == 5
    for r in rows:
        v = VARIANTS[r["variant"]]
        assert r["formula"] == v.formula and r["param_formula"] == v.param_formula
        assert r["params"] == v.count_params(256, **r["hp"])


def test_compare_variants_options_and_errors():
    rows = compare_variants(512, reduction=8, groups=4, k=3)
    by = {r["label"]: r for r in rows}
    assert by["SE (r=8)"]["params"] == 2 * 512 * 64
    assert by["SE-GC (G=4)"]["params"] == 512 * 512 // 4 and by["SE-GC (G=4)"]["top1"] is None
    assert by["ECA-NS (k=3)"]["params"] == 1536
    # the default (paper) settings become n/a when they do not fit a small C ...
    small = {r["label"]: r for r in compare_variants(8)}
    assert small["SE (r=16)"]["params"] is None and "n/a" in small["SE (r=16)"]["note"]
    assert small["ECA (k=3)"]["params"] == 3
    # ... explicit ones must fit
    with pytest.raises(InputError, match="r"):
        compare_variants(8, reduction=16)
    with pytest.raises(InputError, match="groups = 3 does not fit"):
        compare_variants(256, groups=3)
    with pytest.raises(InputError, match="C \\(channels\\) must be >= 1, got 0"):
        compare_variants(0)
    with pytest.raises(InputError, match="k must be odd"):
        compare_variants(64, k=2)


# ----------------------------------------------------------------------- PyTorch cross-check
def _torch_resnet(nn, blocks):
    """torchvision's Bottleneck ResNet, written out (no torchvision needed)."""
    class Bottleneck(nn.Module):
        def __init__(self, c_in, w, stride, down):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c_in, w, 1, bias=False), nn.BatchNorm2d(w)
            self.conv2, self.bn2 = nn.Conv2d(w, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w)
            self.conv3, self.bn3 = nn.Conv2d(w, 4 * w, 1, bias=False), nn.BatchNorm2d(4 * w)
            if down:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, 4 * w, 1, stride, bias=False), nn.BatchNorm2d(4 * w))

    m = nn.Module()
    m.conv1, m.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
    c_in = 64
    for s, (n, w) in enumerate(zip(blocks, (64, 128, 256, 512))):
        layer = nn.Sequential(*[Bottleneck(c_in if b == 0 else 4 * w, w, (1 if s == 0 else 2) if b == 0 else 1, b == 0)
                                for b in range(n)])
        setattr(m, f"layer{s + 1}", layer)
        c_in = 4 * w
    m.fc = nn.Linear(2048, 1000)
    return m


def _torch_mobilenetv2(nn):
    def cbr(i, o, k, s=1, g=1):
        return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(o), nn.ReLU6())

    class IR(nn.Module):
        def __init__(self, i, o, s, t):
            super().__init__()
            h = i * t
            layers = [cbr(i, h, 1)] if t != 1 else []
            layers += [cbr(h, h, 3, s, h), nn.Conv2d(h, o, 1, bias=False), nn.BatchNorm2d(o)]
            self.conv = nn.Sequential(*layers)

    feats, c_in = [cbr(3, 32, 3, 2)], 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for i in range(n):
            feats.append(IR(c_in, c, s if i == 0 else 1, t))
            c_in = c
    feats.append(cbr(c_in, 1280, 1))
    m = nn.Module()
    m.features = nn.Sequential(*feats)
    m.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))
    return m


@pytest.mark.parametrize("net", list(NETWORKS))
def test_layer_shapes_match_pytorch(net):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with torch.device("meta"):  # shapes only, no memory
        m = _torch_mobilenetv2(nn) if net == "mobilenetv2" else _torch_resnet(nn, NETWORKS[net].blocks)
    theirs = {name: tuple(p.shape) for name, p in m.named_parameters()}
    ours = {}
    for layer in get_network(net).describe().layers:
        for suffix, shape in zip(("weight", "bias"), layer.shapes):
            ours[f"{layer.name}.{suffix}"] = shape
    assert ours == theirs
    assert sum(math.prod(s) for s in theirs.values()) == network_params(net).total
