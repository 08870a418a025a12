"""`eca-ref compare-params`: tables, JSON, the paper's numbers, error paths."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from eca_ref import VARIANTS
from eca_ref.cli import main
from eca_ref.cli_params import COMMANDS

for _cmd in COMMANDS:
    if _cmd.name not in main.commands:
        main.add_command(_cmd)

WIDE = {"COLUMNS": "200"}


def run(*args):
    return CliRunner().invoke(main, ["compare-params", *args], env=WIDE)


def run_json(*args):
    res = run(*args, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    return rows


def test_registered_name():
    assert [c.name for c in COMMANDS] == ["compare-params"]


def test_variants_table_default():
    res = run()
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "C = 256" in out
    for text in ("SE (r=16)", "8,192", "65,536", "SE-GC3 (G=C/8)", "ECA (k=5)", "2C²/r", "σ(C1D_k(y))",
                 "77.43", "93.65", "75.20"):
        assert text in out, text


def test_variants_json():
    rows = run_json("--channels", "512", "-k", "3", "--reduction", "8", "--groups", "C/16")
    assert {r["variant"] for r in rows} == set(VARIANTS)
    by = {r["label"]: r for r in rows}
    assert by["SE (r=8)"]["params"] == 2 * 512 * 64
    assert by["ECA-NS (k=3)"]["params"] == 1536 and by["ECA (k=3)"]["params"] == 3
    assert by["SE-GC2 (G=C/16)"]["params"] == 512 * 512 // 32
    for r in rows:
        assert {"variant", "label", "formula", "param_formula", "params", "top1", "top5"} <= set(r)
        assert isinstance(r["params"], int)


@pytest.mark.parametrize("net, plain, se, eca", [
    ("resnet50", 24.37, 26.77, 24.37),
    ("resnet101", 42.49, 47.01, 42.49),
    ("resnet152", 57.40, 63.68, 57.40),
    ("mobilenetv2", 3.34, 3.40, 3.34),
])
def test_network_json_matches_paper(net, plain, se, eca):
    rows = run_json("--network", net)
    for r in rows:
        assert {"variant", "params", "params_added", "M", "label"} <= set(r)
        if r["params"] is not None:
            assert isinstance(r["params"], int) and isinstance(r["params_added"], int)
            assert r["M"] == round(r["params"] / 2 ** 20, 2)
    assert rows[0]["variant"] == "none" and rows[0]["M"] == plain
    se_row = next(r for r in rows if r["variant"] == "se" and r["hp"]["bias"] is False)
    assert se_row["M"] == se
    assert all(r["M"] == eca for r in rows if r["variant"] == "eca")


def test_resnet50_json_digits():
    rows = run_json("--network", "resnet50")
    by = {r["label"]: r for r in rows}
    assert by["ResNet-50 (plain)"]["params"] == 25_557_032
    assert by["SE (r=16)"]["params_added"] == 2_514_944
    assert by["SE (r=16, FC bias)"]["params_added"] == 2_530_992
    assert by["SE-Var2"]["params_added"] == 15_104
    assert by["SE-Var3"]["params_added"] == 20_119_552
    assert by["SE-GC1 (G=16)"]["params_added"] == 1_257_472
    assert by["SE-GC2 (G=C/16)"]["params_added"] == 241_664
    assert by["SE-GC3 (G=C/8)"]["params_added"] == 120_832
    assert by["ECA-NS (k=3)"]["params_added"] == 45_312
    assert [r["params_added"] for r in rows if r["variant"] == "eca"] == [86, 48, 80]


def test_network_table():
    res = run("--network", "resnet50")
    assert res.exit_code == 0, res.output
    for text in ("25,557,032", "2,514,944", "2,530,992", "26.77 match", "24.37 match", "ECA (authors' k: 3,5,5,7)"):
        assert text in res.stdout, text
    assert "differs" not in res.stdout
    res = run("-n", "mobilenetv2")
    assert res.exit_code == 0 and "3.40 match" in res.stdout and "[1] n/a" in res.stdout


def test_stage_k_and_k_options():
    rows = run_json("--network", "resnet50", "--stage-k", "3,3,3,3", "-k", "7")
    assert [r["params_added"] for r in rows if r["variant"] == "eca"] == [86, 7 * 16, 48]
    rows = run_json("--network", "mobilenetv2", "--placement", "expanded")
    assert next(r for r in rows if r["variant"] == "se")["params_added"] == 1_128_064


@pytest.mark.parametrize("args, msg", [
    (["--channels", "0"], "C (channels) must be >= 1, got 0"),
    (["--channels", "-4"], "C (channels) must be >= 1"),
    (["--network", "vgg16"], "unknown network 'vgg16'; known: resnet50, resnet101, resnet152, mobilenetv2"),
    (["-k", "4"], "k must be odd"),
    (["-k", "0"], "k must be >= 1"),
    (["--reduction", "0"], "reduction must be >= 1"),
    (["--reduction", "512"], "r (the reduction ratio) must be <= C = 256"),
    (["--groups", "3"], "groups = 3 does not fit the module (C = 256)"),
    (["--groups", "C/x"], "groups must be a positive integer or 'C/d'"),
    (["--network", "resnet50", "--groups", "3"], "block layer1.0 of resnet50 (C = 256)"),
    (["--network", "mobilenetv2", "--reduction", "32"], "block features.1 of mobilenetv2 (C = 16)"),
    (["--network", "resnet50", "--stage-k", "3,5,5"], "resnet50 has 4 stages, got 3"),
    (["--network", "resnet50", "--stage-k", "3,5,x,7"], "comma-separated"),
    (["--network", "resnet50", "--placement", "expanded"], "placement must be one of output for resnet50"),
    (["--network", "resnet50", "--channels", "64"], "cannot be combined with --network"),
    (["--stage-k", "3,5,5,7"], "need --network"),
])
def test_errors_one_line_exit_2(args, msg):
    res = run(*args)
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("Error: "), err
    assert msg in err, err
    assert "Traceback" not in res.output


def test_help():
    res = run("--help")
    assert res.exit_code == 0 and "--stage-k" in res.stdout and "--network" in res.stdout


def test_network_flops_table_and_json():
    res = run("--network", "resnet50", "--flops")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "backbone MACs" in out and "4,089,184,256" in out and "86,272" in out
    assert "3.86 match" in out and "3.87 match" in out and "3.86 differs" in out   # plain, SE; ECA (docs/parameters.md)
    assert "thop-2019" in out and "2^30" in out
    rows = run_json("--network", "resnet50", "--flops")
    plain = rows[0]["flops"]
    assert plain["backbone_macs"] == 4_089_184_256 and plain["attention_macs"] == 0
    assert plain["conventions"]["macs"] == 4_089_184_256 and plain["conventions"]["flops"] == 2 * 4_089_184_256
    assert isinstance(plain["other"]["bn"], int) and plain["paper"] == 3.86 and (plain["H"], plain["W"]) == (224, 224)
    rows = run_json("--network", "mobilenetv2", "--flops", "--size", "112")
    assert rows[0]["flops"]["H"] == rows[0]["flops"]["W"] == 112 and rows[0]["flops"]["paper"] is None
    res = run("--network", "mobilenetv2", "--flops")
    assert res.exit_code == 0 and "MFLOPs" in res.stdout and "319.4 match" in res.stdout


def test_module_flops_table_and_json():
    rows = run_json("-C", "256", "--flops", "--size", "28x14")
    eca = next(r for r in rows if r["variant"] == "eca")
    assert eca["flops"] == {"H": 28, "W": 14, "f": 5 * 256, "gap": 256 * 28 * 14, "sigmoid": 256, "scale": 256 * 28 * 14}
    res = run("-C", "256", "--flops")
    assert res.exit_code == 0 and "256 x 56 x 56 map" in res.stdout and "f MACs" in res.stdout
    assert "flops" not in run_json("-C", "256")[0]


@pytest.mark.parametrize("args, msg", [(["--size", "56"], "--size needs --flops"),
                                       (["--flops", "--size", "0x5"], "--size must be H x W"),
                                       (["--flops", "--size", "a"], "--size must be H x W")])
def test_flops_option_errors(args, msg):
    res = run(*args)
    assert res.exit_code == 2 and msg in res.stderr, res.output


def test_table_into_a_file_keeps_every_digit():
    """Without a terminal and without COLUMNS (``eca-ref ... > table.txt``), rich would assume 80
    columns and cut cells to "…"; the table keeps its natural width and every number."""
    narrow = CliRunner().invoke(main, ["compare-params", "--network", "resnet50", "--flops"],
                                env={"COLUMNS": None})
    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.stdout
    assert "4,089,184,256" in narrow.stdout and "ECA (authors' k: 3,5,5,7)" in narrow.stdout
    assert max(map(len, narrow.stdout.splitlines())) > 80
    forced = CliRunner().invoke(main, ["compare-params", "--network", "resnet50", "--flops"],
                                env={"COLUMNS": "80"})                      # COLUMNS still rules
    assert forced.exit_code == 0 and max(map(len, forced.stdout.splitlines())) <= 80


def test_cifar_net_counts_by_hand():
    """--network cifar: the net of eca-ref train, every variant. Hand counts for depth 8, width 16
    (stages of C = 16, 32, 64 at 32, 16, 8 pixels): the convs' MACs are
    stem 16*32*32*27 + stage 1 2*16*32*32*144 + stage 2 32*16*16*(144 + 288 + 16)
    + stage 3 64*8*8*(288 + 576 + 32) + fc 64*10; ECA adds k = 3 weights per block and
    k C MACs per block; SE (r = 16) 2 C^2 / r of each."""
    rows = {r["variant"]: r for r in run_json("--network", "cifar", "--flops")}
    backbone = (16 * 32 * 32 * 27 + 2 * 16 * 32 * 32 * 144 + 32 * 16 * 16 * (144 + 288 + 16)
                + 64 * 8 * 8 * (288 + 576 + 32) + 64 * 10)
    assert backbone == 12_501_632
    assert all(r["flops"]["backbone_macs"] == backbone and r["flops"]["H"] == 32 for r in rows.values())
    assert rows["none"]["params_added"] == 0 and rows["none"]["flops"]["attention_macs"] == 0
    assert rows["eca"]["params"] - rows["none"]["params"] == rows["eca"]["params_added"] == 3 * 3
    assert rows["eca"]["flops"]["attention_macs"] == 3 * (16 + 32 + 64)
    assert rows["eca"]["hp"] == [{"k": 3}] * 3 and rows["eca"]["label"] == "ECA (k per stage: 3,3,3)"
    se = sum(2 * C * C // 16 for C in (16, 32, 64))
    assert rows["se"]["params_added"] == rows["se"]["flops"]["attention_macs"] == se == 672
    assert rows["se-var3"]["params_added"] == 16 ** 2 + 32 ** 2 + 64 ** 2
    assert rows["eca"]["flops"]["conventions"]["flops"] == 2 * (backbone + 336)
    # a wider, deeper net with one k: 9 blocks, k = 5; ECA-NS has k weights per channel
    rows = {r["variant"]: r for r in run_json("--network", "cifar", "--depth", "20", "--width", "32", "-k", "5")}
    assert rows["eca"]["params_added"] == 9 * 5 and rows["eca"]["label"] == "ECA (k=5)"
    assert rows["eca-ns"]["params_added"] == 5 * 3 * (32 + 64 + 128)
    assert "flops" not in rows["eca"]


def test_cifar_net_table_and_refusals():
    assert run("-n", "CIFAR").stdout == run("--network", "cifar").stdout   # names as for the paper's networks
    res = run("--network", "cifar", "--flops", "--size", "64")
    assert res.exit_code == 0, res.output
    assert "cifar-resnet8-w16" in res.stdout and "for one 64 x 64 image" in res.stdout
    assert f"{4 * 12_501_632 - 4 * 640 + 640:,}" in res.stdout    # convs scale with the pixels, not the fc
    for args, msg in [(("--depth", "8"), "--depth and --width need --network cifar"),
                      (("-n", "cifar", "-r", "8"), "--reduction cannot be combined with --network cifar"),
                      (("-n", "cifar", "--stage-k", "3,5,7"), "--stage-k cannot be combined"),
                      (("-n", "cifar", "--depth", "9"), "depth must be of the form 6n + 2"),
                      (("-n", "cifar", "-k", "4"), "k must be odd"),
                      (("-n", "cifar", "--depth", str(6 * 10 ** 20 + 2)), "depth must be <= 1202"),
                      (("-n", "nonsense"), "unknown network 'nonsense'; known: resnet50, resnet101, resnet152, "
                                           "mobilenetv2, cifar")]:
        bad = run(*args)
        assert bad.exit_code == 2 and msg in bad.stderr and "Traceback" not in bad.output, (args, bad.output)
