"""The import graph: imports only go down, and nothing imports in a loop.

Built with grimp over ``posecore``, ``stages`` and ``flows``. Imports inside functions count (a
lazy import that closes a loop is still a loop); imports under ``if TYPE_CHECKING:`` do not
(they never run). The layers below are the architecture read
from the top: a package may import packages of its own layer's list position or lower, never higher.
"""

from __future__ import annotations

import itertools
from functools import cache

import grimp
import pytest

# Top first. Packages in one tuple are independent of each other (no imports between them).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("posecore.cli",),
    ("posecore.stack",),
    ("posecore.config",),
    ("posecore.registry",),
    ("posecore.experiment",),
    ("posecore.inference",),
    ("posecore.export",),
    ("posecore.evaluation",),
    ("posecore.engine",),
    ("posecore.models",),
    ("posecore.data",),
    ("posecore.visualization",),
    ("posecore.transforms",),
    ("posecore.codecs",),
    ("posecore.datasets",),
    ("posecore.metainfo",),
    ("posecore.storage",),
    ("posecore.validation",),
    (
        "posecore.io",
        "posecore.progress",
        "posecore.errors",
        "posecore._registry",
        "posecore._flatten",
        "posecore._lazy",
    ),
)


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("posecore", "stages", "flows", cache_dir=None, exclude_type_checking_imports=True)


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "posecore" and len(parts) > 1 else parts[0]


def _sccs(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = itertools.count()
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = next(counter)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = next(counter)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _module_edges() -> dict[str, set[str]]:
    g = _graph()
    return {m: set(g.find_modules_directly_imported_by(m)) & g.modules for m in g.modules}


def _chain(importer: str, imported: str) -> str:
    details = _graph().get_import_details(importer=importer, imported=imported)
    where = ", ".join(f"line {d['line_number']}" for d in details[:3])
    return f"{importer} -> {imported} ({where})"


def test_no_module_imports_itself_through_a_loop() -> None:
    edges = _module_edges()
    loops = _sccs(set(edges), edges)
    assert not loops, "import loops between modules:\n" + "\n".join(" <-> ".join(c) for c in loops)


def test_no_loops_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for importer, imported in _module_edges().items():
        for target in imported:
            a, b = _package(importer), _package(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
    loops = _sccs(set(edges) | {b for bs in edges.values() for b in bs}, edges)
    assert not loops, "import loops between packages:\n" + "\n".join(" <-> ".join(c) for c in loops)


def test_every_package_has_a_layer() -> None:
    layered = {p for layer in LAYERS for p in layer}
    packages = {_package(m) for m in _graph().modules if m.startswith("posecore.")}
    assert packages <= layered, f"give these a place in LAYERS: {sorted(packages - layered)}"


@pytest.mark.parametrize("level", range(len(LAYERS)), ids=lambda i: "/".join(LAYERS[i]))
def test_imports_only_go_down(level: int) -> None:
    higher = {p for layer in LAYERS[:level] for p in layer}
    siblings = set(LAYERS[level])
    bad = []
    for importer, imported in _module_edges().items():
        src = _package(importer)
        if src not in siblings:
            continue
        for target in imported:
            dst = _package(target)
            if dst in higher or dst in {"stages", "flows"} or (dst in siblings and dst != src):
                bad.append(_chain(importer, target))
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_stages_and_flows_do_not_import_each_other() -> None:
    bad = [
        _chain(importer, target)
        for importer, imported in _module_edges().items()
        for target in imported
        if {_package(importer), _package(target)} == {"stages", "flows"}
    ]
    assert not bad, "stages and flows only call the library:\n" + "\n".join(sorted(bad))
