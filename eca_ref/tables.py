"""The rows of `eca-ref compare-params`: every variant beside the paper's tables.

Two tables, planned here and printed by :mod:`eca_ref.cli_params`:

* :func:`compare_variants`: one attention module on C channels, every variant
  with its f(y), its #Param formula, the exact count and the paper's Top-1/Top-5
  (the SE-variants table, docs/paper.md, Table 2);
* :func:`compare_network`: a whole network (:mod:`eca_ref.models.networks`) with
  plain and every variant, exact and in units of 2^20, beside the paper's
  backbone table (docs/paper.md, Table 3);
* :func:`compare_cifar`: the CIFAR net that ``eca-ref train`` trains, with plain
  and every variant as training gives it.

The counts themselves come from the registry and the network descriptions; this
module only chooses the settings of each row and labels it.
"""
from __future__ import annotations

from eca_ref.attention import VARIANTS, kernel_size
from eca_ref.errors import InputError, InputTypeError
from eca_ref.models.flops import G2, CONVENTIONS, cifar_architecture, cifar_flops, convention_total, module_flops, \
    network_flops
from eca_ref.models.networks import check_stage_k, get_network, groups_at, network_params, parse_groups
from eca_ref.models.resnet_spec import ResNetConfig, count_parameters
from eca_ref.validation import check_int, check_kernel

__all__ = ["compare_variants", "compare_network", "compare_cifar", "PAPER_VARIANTS_TABLE", "PAPER_NETWORK_M", "PAPER_NETWORK_FLOPS",
           "PAPER_CONVENTION", "paper_flops_unit"]

# ------------------------------------------------------------------------- the paper's numbers
# The paper's SE-variants table (Table 2 of the CVPR 2020 version, Table 1 in some copies):
# ResNet-50 on ImageNet, Top-1 / Top-5 accuracy (%), as listed in docs/paper.md. Keyed by
# (variant, groups spec); SE-GC1/2/3 are the grouped variant with G = 16, C/16, C/8 groups.
# The setting string says under which hyper-parameters the paper measured the row.
PAPER_VARIANTS_TABLE: dict[tuple[str, str | None], dict] = {
    ("none", None): {"name": "vanilla", "top1": 75.20, "top5": 92.25, "setting": ""},
    ("se", None): {"name": "SE", "top1": 76.71, "top5": 93.38, "setting": "r=16"},
    ("se-var1", None): {"name": "SE-Var1", "top1": 76.00, "top5": 92.90, "setting": ""},
    ("se-var2", None): {"name": "SE-Var2", "top1": 77.07, "top5": 93.31, "setting": ""},
    ("se-var3", None): {"name": "SE-Var3", "top1": 77.42, "top5": 93.64, "setting": ""},
    ("se-gc", "16"): {"name": "SE-GC1", "top1": 76.95, "top5": 93.47, "setting": "G=16"},
    ("se-gc", "C/16"): {"name": "SE-GC2", "top1": 76.98, "top5": 93.31, "setting": "G=C/16"},
    ("se-gc", "C/8"): {"name": "SE-GC3", "top1": 76.96, "top5": 93.38, "setting": "G=C/8"},
    ("eca-ns", None): {"name": "ECA-NS", "top1": 77.35, "top5": 93.61, "setting": "k=3"},
    ("eca", None): {"name": "ECA", "top1": 77.43, "top5": 93.65, "setting": "k=3"},
}

# The paper's backbone table (Table 3 of the CVPR version), parameters in units of 2^20:
# plain, + SE (r = 16 for ResNets, r = 8 for MobileNetV2, no FC bias), + ECA.
PAPER_NETWORK_M: dict[str, dict[str, float]] = {
    "resnet50": {"none": 24.37, "se": 26.77, "eca": 24.37},
    "resnet101": {"none": 42.49, "se": 47.01, "eca": 42.49},
    "resnet152": {"none": 57.40, "se": 63.68, "eca": 57.40},
    "mobilenetv2": {"none": 3.34, "se": 3.40, "eca": 3.34},
}

# The paper's Table 3 "GFLOPs" (MobileNetV2: "MFLOPs") for plain, + SE, + ECA (docs/paper.md, Table 3).
PAPER_NETWORK_FLOPS: dict[str, dict[str, float]] = {
    "resnet50": {"none": 3.86, "se": 3.87, "eca": 3.86},
    "resnet101": {"none": 7.34, "se": 7.35, "eca": 7.35},
    "resnet152": {"none": 10.82, "se": 10.85, "eca": 10.83},
    "mobilenetv2": {"none": 319.4, "se": 320.1, "eca": 320.2},
}
# The convention that reproduces most of them (docs/parameters.md, "FLOPs"): thop as of 2019, the
# authors' paras_flops.py, in binary units (G = 2^30, M = 2^20).
PAPER_CONVENTION = "thop-2019"


def paper_flops_unit(network: str) -> tuple[str, int, int]:
    """(unit name, unit, decimals) of the paper's FLOP column for a network: G = 2^30, or M = 2^20."""
    return ("M", 2 ** 20, 1) if network == "mobilenetv2" else ("G", G2, 2)


# Short names for labels (a variant missing here is shown by its registry name).
_DISPLAY = {"none": "plain", "se": "SE", "se-var1": "SE-Var1", "se-var2": "SE-Var2", "se-var3": "SE-Var3",
            "se-gc": "SE-GC", "eca-ns": "ECA-NS", "eca": "ECA", "eca-band": "ECA-band", "ceca": "CECA"}

# The paper's three grouped settings, in the order of its table.
_PAPER_GROUPS = ("16", "C/16", "C/8")


# ------------------------------------------------------------------------- tables
def _paper(variant, gkey=None):
    return PAPER_VARIANTS_TABLE.get((variant, gkey))


def _gkey(groups):
    """The paper's key of a groups setting: "16", "C/16", "C/8" or None."""
    g = parse_groups(groups)
    key = f"C/{g[1]}" if isinstance(g, tuple) else str(g)
    return key if key in _PAPER_GROUPS else None


def _row_settings(*, reduction, groups, bias_rows):
    """(variant, hp overrides, groups key, label suffix, strict) per row, in registry order.

    strict rows (settings the caller asked for explicitly) raise when they do not fit;
    the others (the paper's fixed settings) are reported as not applicable.
    """
    rows = []
    for name, v in VARIANTS.items():
        takes = set(v.hp_defaults)
        if "r" in takes:
            r, strict = reduction
            for b in bias_rows:
                rows.append((name, {"reduction": r, "bias": b}, None,
                             f"r={r}" + (", FC bias" if b else ""), strict))
        elif "groups" in takes:
            if groups is not None:
                key = _gkey(groups)
                rows.append((name, {"groups": groups}, key, f"G={groups}", True))
            for g in _PAPER_GROUPS:
                if groups is not None and _gkey(groups) == g:
                    continue
                rows.append((name, {"groups": g if g.startswith("C/") else int(g)}, g, f"G={g}", False))
        else:
            rows.append((name, {}, None, "", True))
    return rows


def _label(name, gkey, suffix):
    paper = _paper(name, gkey) if name == "se-gc" else None
    base = paper["name"] if paper else _DISPLAY.get(name, name)
    return f"{base} ({suffix})" if suffix else base


def compare_variants(C, *, reduction: int | None = None, groups=None, k: int | None = None,
                     bias: bool = False, hw: tuple[int, int] | None = None) -> list[dict]:
    """Every variant's parameters for one module with C channels, beside the paper's table.

    Args:
        C: channels (>= 1).
        reduction: SE's r; None -> 16 (the paper's), shown as not applicable if it does not fit C.
            An explicit value must fit (else InputError).
        groups: SE-GC's G (int or "C/d"), an extra row beside the paper's G = 16, C/16, C/8
            (those are shown as not applicable where they do not divide C).
        k: kernel size of the k-variants; None -> Eq. 12, ``kernel_size(C)``.
        bias: SE's FC layers with biases.
        hw: (H, W) of the module's map: adds "flops" to each row (f's MACs and the element counts
            of its GAP, sigmoid and rescale, :func:`eca_ref.models.flops.module_flops`).

    Returns:
        One dict per row: variant, label, formula (f(y)), param_formula (#Param), hp, params (int, or
        None when the setting does not fit C), top1 / top5 (the paper's ResNet-50 ImageNet accuracy
        for that variant, or None), paper_setting, note; with hw, flops (dict of ints, or None).

    Example:
        >>> [(r["label"], r["params"]) for r in compare_variants(256) if r["variant"] in ("se", "eca")]
        [('SE (r=16)', 8192), ('ECA (k=5)', 5)]
    """
    C = check_int(C, "C (channels)", min_value=1)
    if reduction is not None:
        reduction = (check_int(reduction, "reduction", min_value=1), True)
    else:
        reduction = (16, False)
    if groups is not None:
        parse_groups(groups)
    if k is not None:
        k = check_kernel(k, "k")
    if not isinstance(bias, bool):
        raise InputTypeError(f"bias must be True or False, got {bias!r}")

    out = []
    for name, over, gkey, suffix, strict in _row_settings(reduction=reduction, groups=groups,
                                                           bias_rows=(bias,)):
        v = VARIANTS[name]
        takes = set(v.hp_defaults)
        hp, note = {}, None
        if "r" in takes:
            hp["r"] = over["reduction"]
        if "bias" in takes:
            hp["bias"] = over["bias"]
        if "k" in takes:
            hp["k"] = k if k is not None else kernel_size(C)
            suffix = f"k={hp['k']}"
        params = None
        try:
            if "groups" in takes:
                hp["groups"] = groups_at(parse_groups(over["groups"]), C, "the module")
            params = v.count_params(C, **hp)
        except InputError as exc:
            if strict:
                raise InputError(f"{name}: {exc}") from None
            note = f"n/a: {exc}"
        paper = _paper(name, gkey) if name == "se-gc" else _paper(name)
        extra = {}
        if hw is not None:
            extra["flops"] = None if params is None else {"H": hw[0], "W": hw[1],
                                                          **module_flops(name, C, hw[0], hw[1], **hp)}
        out.append({
            "C": C, "variant": name, "label": _label(name, gkey, suffix),
            "formula": v.formula, "param_formula": v.param_formula, "hp": hp, "params": params,
            "top1": paper["top1"] if paper else None, "top5": paper["top5"] if paper else None,
            "paper_setting": paper["setting"] if paper else None, "note": note, **extra,
        })
    return out


def compare_network(network, *, reduction: int | None = None, groups=None, k: int | None = None,
                    stage_k=None, placement: str = "output", hw: tuple[int, int] | None = None) -> list[dict]:
    """A network's total for plain and every variant, in exact integers and in units of 2^20.

    Rows, in registry order: plain; SE with and without FC biases; SE-Var1/2/3; SE-GC with
    G = 16, C/16, C/8 (and ``groups`` if given); and each k-variant (eca-ns, eca, eca-band, ceca)
    three times: k by Eq. 12 per block, k fixed (``k``, default 3, the paper's variants table),
    and one k per stage (``stage_k``, default the authors' released kernels, 3,5,5,7 for ResNet-50).

    Args:
        network: "resnet50", "resnet101", "resnet152" or "mobilenetv2".
        reduction: SE's r; None -> the paper's (16 for ResNets, 8 for MobileNetV2).
        groups: an extra SE-GC row with this G (int or "C/d"); must fit every block.
        k: the fixed kernel size row (default 3); must fit every block.
        stage_k: kernel sizes per stage (default: the authors' released ones).
        placement: see :func:`network_params`.
        hw: (H, W) of the input image: adds "flops" to each row (see :func:`_flops_of`).

    Returns:
        One dict per row: network, variant, label, hp, params, params_added, M (params / 2^20,
        2 decimals), paper_M (the paper's Table 3 value for this row, or None; rows of the paper's
        configuration only: plain, SE with the paper's r and no FC bias, ECA with the authors'
        kernels, modules on the block outputs) and note. Rows
        whose fixed paper setting does not fit some block (e.g. G = 16 on MobileNetV2's 24
        channels) have params, params_added and M None and say why in note.

    Example:
        >>> rows = compare_network("resnet50")
        >>> [(r["label"], r["params_added"], r["M"]) for r in rows if r["variant"] == "eca"]
        [('ECA (k by Eq. 12: 5,5,5,7)', 86, 24.37), ('ECA (k=3)', 48, 24.37), ("ECA (authors' k: 3,5,5,7)", 80, 24.37)]
    """
    spec = get_network(network)
    arch = spec.describe(placement)
    explicit_r = reduction is not None
    r = check_int(reduction, "reduction", min_value=1) if explicit_r else spec.paper_reduction
    if groups is not None:
        parse_groups(groups)
    k_fixed = check_kernel(k, "k") if k is not None else 3
    authors = stage_k is None
    stage_k = spec.authors_stage_k if authors else check_stage_k(stage_k, arch.n_stages, spec.name)
    # the paper's Table 3 values belong to its configuration: modules on the block outputs
    paper_M = PAPER_NETWORK_M.get(spec.name, {}) if placement == "output" else {}

    plans = []  # (variant, kwargs, label, strict, paper key)
    for name, over, gkey, suffix, strict in _row_settings(reduction=(r, explicit_r), groups=groups,
                                                           bias_rows=(False, True)):
        takes = set(VARIANTS[name].hp_defaults)
        if "k" in takes:
            disp = _DISPLAY.get(name, name)
            plans.append((name, {}, f"{disp} (k by Eq. 12: {{k}})", True, None))
            plans.append((name, {"k": k_fixed}, f"{disp} (k={k_fixed})", k is not None, None))
            who = "authors' k" if authors else "k per stage"
            plans.append((name, {"stage_k": stage_k}, f"{disp} ({who}: {','.join(map(str, stage_k))})", True,
                          "eca" if (name == "eca" and authors) else None))
        else:
            kw = dict(over)
            pkey = None
            if name == "none":
                pkey = "none"
            elif name == "se" and not over["bias"] and r == spec.paper_reduction:
                pkey = "se"
            plans.append((name, kw, _label(name, gkey, suffix) if name != "none" else f"{spec.title} (plain)",
                          strict, pkey))

    rows = []
    for name, kw, label, strict, pkey in plans:
        note = None
        try:
            c = network_params(spec.name, name, placement=placement, **kw)
            extra = {} if hw is None else {"flops": _flops_of(spec.name, name, placement, kw, hw, pkey)}
        except InputError as exc:
            if strict:
                raise
            c = None
            note = f"n/a: {exc}"
            extra = {} if hw is None else {"flops": None}
        if c is not None and "{k}" in label:
            label = label.replace("{k}", ",".join("/".join(map(str, x)) if isinstance(x, list) else str(x)
                                                  for x in c.stage_hp("k")))
        hp = {("r" if key == "reduction" else key): val for key, val in kw.items()}
        if "stage_k" in hp:
            hp["stage_k"] = list(hp["stage_k"])
        if "k" in set(VARIANTS[name].hp_defaults) and not hp:
            hp["k"] = "eq12"
        rows.append({
            "network": spec.name, "variant": name, "label": label.replace("{k}", "Eq. 12"), "hp": hp,
            "params": c.total if c else None, "params_added": c.added if c else None,
            "M": c.M if c else None, "paper_M": paper_M.get(pkey) if pkey else None, "note": note, **extra,
        })
    return rows


def _flops_of(network: str, variant: str, placement: str, kw: dict, hw: tuple, pkey) -> dict:
    """A row's FLOP columns: the integers (backbone and attention MACs, the element counts of
    everything else, each tool's total) and the paper's figure beside the paper's convention."""
    c = network_flops(network, variant, placement=placement, H=hw[0], W=hw[1], **kw)
    name, unit, digits = paper_flops_unit(network)
    paper = PAPER_NETWORK_FLOPS.get(network, {}).get(pkey) if pkey and placement == "output" else None
    conv = {n: convention_total(c, n) for n in CONVENTIONS}
    return {"H": c.H, "W": c.W, "backbone_macs": c.backbone_macs, "attention_macs": c.attention_macs,
            "other": dict(c.other), "conventions": conv, "paper_convention": PAPER_CONVENTION,
            "paper_unit": name, "paper_value": round(conv[PAPER_CONVENTION] / unit, digits),
            "paper": paper if hw == (224, 224) else None}


def compare_cifar(depth: int = 8, width: int = 16, *, k: int | None = None,
                  hw: tuple[int, int] | None = None) -> list[dict]:
    """The CIFAR net of ``eca-ref train`` (:mod:`eca_ref.models.resnet`), plain and every variant.

    Each variant has the hyper-parameters training gives it (:func:`eca_ref.models.resnet_spec.block_specs`):
    SE r = min(16, C), SE-GC G = gcd(16, C), the kernels k by Eq. 12 per block, or ``k`` for every block.

    Args:
        depth, width: the net's (:class:`eca_ref.models.ResNetConfig`; 8 and 16 by default).
        k: one kernel size (odd) for every block of the variants with a kernel; None: Eq. 12.
        hw: (H, W) of the input image: adds "flops" to each row (32 x 32 for CIFAR-10).

    Returns:
        One dict per variant, in registry order: network (e.g. "cifar-resnet8-w16"), variant, label,
        hp (the hyper-parameters of each block, in order), params, params_added and, with ``hw``,
        flops (H, W, backbone_macs, attention_macs, other: the element counts, conventions: each
        tool's total; :mod:`eca_ref.models.flops`).

    Example:
        >>> rows = compare_cifar()
        >>> [(r["label"], r["params"], r["params_added"]) for r in rows if r["variant"] in ("none", "eca")]
        [('plain', 78042, 0), ('ECA (k per stage: 3,3,3)', 78051, 9)]
    """
    if k is not None:
        k = check_kernel(k, "k")
    plain_cfg = ResNetConfig(depth=depth, width=width, attention="none")
    plain, name_of_net = count_parameters(plain_cfg)["total"], cifar_architecture(plain_cfg).name
    rows = []
    for name, v in VARIANTS.items():
        cfg = ResNetConfig(depth=depth, width=width, attention=name, k=k if "k" in v.hp_defaults else None)
        count = count_parameters(cfg)
        blocks = list(count["per_block"].values())
        label = _DISPLAY.get(name, name)
        if "k" in v.hp_defaults and k is not None:
            label += f" (k={k})"
        elif blocks[0]["hp"]:
            # one value per stage (the blocks of a stage share C, hence their hyper-parameters)
            per_stage = {}
            for b in blocks:
                per_stage.setdefault(b["channels"], b["hp"])
            label += " (" + "; ".join(f"{key} per stage: {','.join(str(hp[key]) for hp in per_stage.values())}"
                                      for key in blocks[0]["hp"]) + ")"
        row = {"network": name_of_net, "variant": name, "label": label, "hp": [b["hp"] for b in blocks],
               "params": count["total"], "params_added": count["total"] - plain, "note": None}
        if hw is not None:
            c = cifar_flops(cfg, H=hw[0], W=hw[1])
            row["flops"] = {"H": c.H, "W": c.W, "backbone_macs": c.backbone_macs, "attention_macs": c.attention_macs,
                            "other": dict(c.other), "conventions": {n: convention_total(c, n) for n in CONVENTIONS}}
        rows.append(row)
    return rows
