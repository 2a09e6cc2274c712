"""The package's import graph: no module imports itself back, directly or through others.

The import-linter contracts in pyproject.toml (`lint-imports`) check the layers, the light
in-kernel modules and cycles between sibling modules or packages. This test checks the module
graph as a whole, function-level (lazy) imports included, so that a cycle through a package's
own `__init__` (nb2pipe/__init__.py imports the engine lazily) is caught as well.
"""

from __future__ import annotations

import grimp

import nb2pipe
from nb2pipe._version import __version__


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One shortest cycle per strongly connected group of modules, each as [m1, ..., mk, m1]."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    groups = _strongly_connected(modules, edges)
    cycles = []
    for group in groups:
        start = min(group)
        cycles.append(_shortest_cycle(start, edges, set(group)))
    return sorted(cycles)


def _strongly_connected(modules: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; groups of one module without a self-import are left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:  # done with node: report its low link to the caller
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1 or node in edges.get(node, []):
                    groups.append(sorted(group))
    return groups


def _shortest_cycle(start: str, edges: dict[str, list[str]], group: set[str]) -> list[str]:
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in edges.get(node, []):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target in group and target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")


def _describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    lines = [" -> ".join(cycle)]
    for importer, imported in zip(cycle, cycle[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"l.{d['line_number']}" for d in details)
        lines.append(f"    {importer} imports {imported} ({where})")
    return "\n".join(lines)


def test_the_package_has_no_import_cycles():
    graph = grimp.build_graph("nb2pipe", cache_dir=None)
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_cycles_are_found_through_lazy_imports_and_package_inits():
    graph = grimp.ImportGraph()
    for importer, imported in [("p", "p.api"), ("p.api", "p.run"), ("p.run", "p.env"), ("p.env", "p"),
                               ("p.a", "p.b"), ("p.b", "p.a"), ("p.b", "p.c"), ("p.c", "p.low")]:
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == [["p", "p.api", "p.run", "p.env", "p"], ["p.a", "p.b", "p.a"]]
    graph.remove_import(importer="p.env", imported="p")
    graph.remove_import(importer="p.b", imported="p.a")
    assert import_cycles(graph) == []


def test_the_version_has_one_source():
    # Lower layers read nb2pipe._version (importing the package would pull in its public API).
    assert nb2pipe.__version__ == __version__
