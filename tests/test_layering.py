"""The package's layers stack one way: functional -> attention -> models -> engine -> train -> cli.

The reference (functional, attention, models) is what students read: it imports nothing above it
and holds no threads, processes or memory-layout machinery. The engine (speed only) sits on the
reference; the trainer, the benchmarks, the grader and the tables sit on the engine; the command
line sits on everything. No import cycles, and no imports hidden inside functions (the CLI's lazy
imports of its subcommands' modules excepted: they keep ``eca-ref --help`` fast).
"""
import ast
import pathlib
import re

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "eca_ref"
BASE = {"eca_ref.backend", "eca_ref.errors", "eca_ref.validation", "eca_ref.fileio", "eca_ref.gradcheck"}
# rank of each group: a module may import a group of lower rank, or its own group; the groups of
# the top application rank (train, bench, grading, ...) may also use each other ("beside train")
RANKS = [
    (0, ("eca_ref.backend", "eca_ref.errors", "eca_ref.validation", "eca_ref.fileio", "eca_ref.gradcheck")),
    (1, ("eca_ref.functional", "eca_ref.data")),
    (2, ("eca_ref.attention",)),
    (3, ("eca_ref.models",)),
    (4, ("eca_ref.engine",)),
    (5, ("eca_ref.train", "eca_ref.bench", "eca_ref.grading", "eca_ref.verify", "eca_ref.tables")),
    (6, ("eca_ref.cli",)),
]
REFERENCE = ("eca_ref.functional", "eca_ref.attention", "eca_ref.models")
SPEED_WORDS = re.compile(r"\b(threading|concurrent\.futures|multiprocessing|as_strided\(buf|shared_memory|"
                         r"procshards|over_channels|ThreadPoolExecutor|mallopt|openblas)\b")
MAX_LINES = 400


def modname(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group_of(mod: str):
    for rank, prefixes in RANKS:
        for p in prefixes:
            if mod == p or mod.startswith(p + ".") or (p == "eca_ref.cli" and mod.startswith("eca_ref.cli")):
                return rank, ("base" if rank == 0 else p)
    return None, None


MODULES = {modname(p): p for p in sorted(PKG.rglob("*.py"))}


def eca_imports(path: pathlib.Path, mod: str):
    """[(imported module, line, inside a function?)] of eca_ref modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    local = {id(s) for f in funcs for s in ast.walk(f) if isinstance(s, (ast.Import, ast.ImportFrom))}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rsplit(".", 1)[0] if "." in name else ""
            if name.startswith("eca_ref") and name != mod:
                out.append((name, node.lineno, id(node) in local))
    return out


GRAPH = {m: eca_imports(p, m) for m, p in MODULES.items()}


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if m != "eca_ref" and group_of(m)[0] is None] == []


@pytest.mark.parametrize("mod", [m for m in MODULES if m != "eca_ref"])
def test_imports_go_down_the_layers(mod):
    rank, group = group_of(mod)
    bad = []
    for target, line, _ in GRAPH[mod]:
        if target == "eca_ref":
            continue
        t_rank, t_group = group_of(target)
        same = t_group == group
        ok = t_rank < rank or same or (rank == t_rank == 5)
        if mod.startswith(REFERENCE):   # the reference: only itself and the small shared base
            ok = target in BASE or target.startswith(REFERENCE) and t_rank <= rank
        if not ok:
            bad.append(f"{mod}:{line} imports {target}")
    assert bad == []


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in deps if t in MODULES} for m, deps in GRAPH.items()}
    graph["eca_ref"] = set()   # the package's __init__ re-exports; it is imported by name only
    seen, stack, on, cycles = {}, [], set(), []

    def visit(v, path):
        if v in on:
            cycles.append(path[path.index(v):] + [v])
            return
        if v in seen:
            return
        seen[v] = True
        on.add(v)
        for w in sorted(graph[v]):
            visit(w, path + [w])
        on.discard(v)

    for m in sorted(graph):
        visit(m, [m])
    assert cycles == []


def test_no_imports_hidden_in_functions():
    hidden = [f"{m}:{line} imports {t}" for m, deps in GRAPH.items() for t, line, local in deps
              if local and not m.startswith("eca_ref.cli")]
    assert hidden == []


@pytest.mark.parametrize("mod", [m for m in MODULES if m.startswith(REFERENCE)])
def test_reference_holds_no_speed_machinery(mod):
    text = MODULES[mod].read_text(encoding="utf-8")
    assert sorted({m.group(0) for m in SPEED_WORDS.finditer(text)}) == []


@pytest.mark.parametrize("mod", list(MODULES))
def test_no_file_over_about_400_lines(mod):
    assert len(MODULES[mod].read_text(encoding="utf-8").splitlines()) <= MAX_LINES + 50
