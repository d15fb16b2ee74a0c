"""The house rules, checked on the source: imports point one way, the verdict needs no heavy framework, no module
reaches into another's private names. Every import is walked, including those inside functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dfsweep"
HEAVY = {"ray", "tensorflow", "keras", "torch", "torchvision", "sklearn", "facenet_pytorch"}
CONTRACTS = {"config", "schema", "crops", "storage", "perturbations", "events"}  # the bottom layer every stage may use
STAGES = {"data_pipeline", "trainables", "verdict"}
RUNTIME = {"cluster"}  # connecting to Ray: used by the stages that start Ray work (the verdict's test forbids Ray)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement anywhere in the module."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [a.name for a in node.names]
            found.append((base, names, node.lineno))
            # `from dfsweep import schema` imports the module dfsweep.schema
            found += [(f"{base}.{n}", [], node.lineno) for n in names if f"{base}.{n}" in MODULES]
    return found


def _part(module: str) -> str | None:
    """The part of the house a dfsweep module belongs to: a stage, a contract, orchestrator, cli..."""
    parts = module.split(".")
    return parts[1] if parts[0] == "dfsweep" and len(parts) > 1 else None


def _closure(start: str) -> set[str]:
    """Every dfsweep module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m in seen or m not in MODULES:
            continue
        seen.add(m)
        todo += [imp for imp, _, _ in _imports(m) if imp.startswith("dfsweep")]
        todo += [m.rpartition(".")[0]] if "." in m else []  # importing a.b runs a/__init__ too
    return seen


VERDICT = sorted(m for m in MODULES if _part(m) == "verdict")


def test_the_verdict_package_exists_and_is_walked():
    assert {"dfsweep.verdict.stats", "dfsweep.verdict.summary", "dfsweep.verdict.report"} <= set(VERDICT)


@pytest.mark.parametrize("module", VERDICT)
def test_verdict_imports_no_ray_tensorflow_keras_torch_or_sklearn(module):
    bad = [(m, imp, line) for m in sorted(_closure(module)) for imp, _, line in _imports(m)
           if imp.split(".")[0] in HEAVY]
    assert not bad, f"{module} reaches heavy frameworks: {bad}"


def test_importing_the_report_loads_no_heavy_framework():
    code = ("import sys, dfsweep.verdict.report, dfsweep.verdict.plots, dfsweep.verdict.console, dfsweep.verdict.html; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_one_way(module):
    """Contracts import no stage; a stage imports contracts and itself only; only cli imports the orchestrator."""
    mine = _part(module)
    for imp, _, line in _imports(module):
        theirs = _part(imp)
        if theirs is None or theirs == mine or imp == "dfsweep":
            continue
        where = f"{MODULES[module].name}:{line} imports {imp}"
        if mine in CONTRACTS or mine == "__init__":
            assert theirs in CONTRACTS or theirs == "__init__", f"a contract imports a stage: {where}"
        elif mine in STAGES:
            assert theirs in CONTRACTS | RUNTIME, f"stage {mine} imports {theirs}: {where}"
        elif mine in RUNTIME:
            assert theirs in CONTRACTS, where
        elif mine == "orchestrator":
            assert theirs != "cli", where
        if theirs == "orchestrator":
            assert mine == "cli", f"only the CLI drives the orchestrator: {where}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_uses_another_modules_private_names(module):
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    aliases = {}  # local name -> dfsweep module it stands for
    bad = []
    for imp, names, line in _imports(module):
        if imp.startswith("dfsweep") and imp != module:
            bad += [f"{path.name}:{line} from {imp} import {n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dfsweep"):
            for a in node.names:
                if f"{node.module}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("dfsweep") and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            bad.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad, bad
