"""The package's module graph has no cycle: each part of launcher can be read, tested and
replaced on its own (the runtime's seams depend on it: the loop never imports the session,
the checkpoint manager never imports the loop).

The graph is read from the source with `ast`, every import counted: module level, inside
functions, and under `if TYPE_CHECKING:` alike.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from regen_golden import ROOT

PACKAGE = ROOT / "launcher"


def modules(package: Path) -> dict[str, Path]:
    """Every module of the package under `package`, by dotted name."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path) -> set[str]:
    """The dotted names `path` imports (`from a import b` gives both `a` and `a.b`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def graph(package: Path) -> dict[str, set[str]]:
    mods = modules(package)
    return {name: {d for d in imported(name, path) if d in mods and d != name}
            for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_inside_launcher() -> None:
    assert cycles(graph(PACKAGE)) == []


def test_the_graph_holds_every_module_and_each_one_imports() -> None:
    names = modules(PACKAGE)
    assert {"launcher.runtime.train.session", "launcher.runtime.train.loop",
            "launcher.runtime.checkpoint.manager", "launcher.backends.worker", "launcher.cli"} <= set(names)
    for name in names:
        importlib.import_module(name)


def test_the_checker_finds_a_cycle_through_a_type_checking_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import c\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from pkg.a import X\n")
    (package / "d.py").write_text("import pkg.a\n")
    assert cycles(graph(package)) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def test_the_runtime_seams_point_one_way() -> None:
    edges = graph(PACKAGE)
    assert "launcher.runtime.train.session" not in edges["launcher.runtime.train.loop"]
    for part in ("checkpoint.manager", "train.context", "storage.volume", "lifecycle.container"):
        assert {"launcher.runtime.train.loop", "launcher.runtime.train.session"} \
            & edges[f"launcher.runtime.{part}"] == set()


def runtime_packages(edges: dict[str, set[str]], name: str) -> set[str]:
    """The runtime's packages (checkpoint, train, ...) that the modules of package `name` import."""
    inside = [m for m in edges if m.startswith(f"launcher.runtime.{name}.")]
    return {d.split(".")[2] for m in inside for d in edges[m]
            if d.startswith("launcher.runtime.") and d.count(".") >= 3} - {name}


def test_the_runtime_packages_are_layered() -> None:
    edges = graph(PACKAGE)
    # The volume and a process's lifecycle are the bottom layer: they know no checkpoint, no
    # training and no pipeline; the checkpoint manager knows its loop only through the
    # LoopContext it is handed, and no pipeline's driver or stage session.
    assert runtime_packages(edges, "storage") == set()
    assert runtime_packages(edges, "lifecycle") == {"storage"}
    assert runtime_packages(edges, "recipe") == set()
    assert {d for m in edges if m.startswith("launcher.runtime.checkpoint.") for d in edges[m]
            if d.startswith(("launcher.runtime.train.", "launcher.runtime.pipeline."))} == {
        "launcher.runtime.train.context", "launcher.runtime.train.accelerator",
        "launcher.runtime.pipeline.stages"}
