"""The package's import structure: no circles, and data flows one way through the stages.

Every ``import`` of a ``fastdat`` module in the source (at the top of a module or inside a
function: both are dependencies) is an edge, including a package ``__init__`` importing its own
submodules; ``from pkg import sub`` depends on ``pkg`` (its ``__init__`` runs first) and on
``pkg.sub``. Only the root package ``fastdat`` (the version and a lazy ``fastdat.denoise``) is
left out.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import fastdat

ROOT = Path(fastdat.__file__).parent

LEAVES = ("config", "io", "anatomy", "metrics", "stats", "plotting", "tomo")
"""Modules every stage may import; they import no stage (only each other)."""
STAGES = (
    "simulate",
    "data",
    "models",
    "methods",
    "training",
    "quantification",
    "inference",
    "evaluation",
    "sweep",
    "readerstudy",
    "study",
    "cli",
)
"""The stages in the order the data flows: a stage imports only leaves and earlier stages."""


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the ``fastdat`` modules it imports (resolved to modules where they are)."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if not node.module.startswith("fastdat"):
                    continue
                # ``from pkg import sub`` runs ``pkg/__init__`` first: it depends on both
                targets = [node.module] + [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if f"{node.module}.{a.name}" in mods
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "fastdat"]
            else:
                continue
            for t in targets:
                if t != mod and t != "fastdat":  # the root package: version and lazy API only
                    edges[mod].add(t)
    return edges


def _top(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "fastdat"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    assert _cycles(import_graph()) == []


def test_every_module_belongs_to_a_leaf_or_a_stage():
    unknown = {_top(m) for m in import_graph()} - set(LEAVES) - set(STAGES) - {"fastdat"}
    assert not unknown, f"add {sorted(unknown)} to LEAVES or STAGES"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_imports_only_leaves_and_earlier_stages(stage):
    rank = {s: i for i, s in enumerate(STAGES)}
    bad = sorted(
        f"{mod} -> {t}"
        for mod, targets in import_graph().items()
        if _top(mod) == stage
        for t in targets
        if _top(t) in rank and rank[_top(t)] > rank[stage]
    )
    assert not bad, "imports from a later stage:\n" + "\n".join(bad)


def test_leaves_import_no_stage():
    bad = sorted(
        f"{mod} -> {t}"
        for mod, targets in import_graph().items()
        if _top(mod) in LEAVES
        for t in targets
        if _top(t) in STAGES
    )
    assert not bad, "a leaf imports a stage:\n" + "\n".join(bad)
