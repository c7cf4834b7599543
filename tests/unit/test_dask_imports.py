"""The Dask front end's modules import each other without a cycle (at module level or inside
a function), so no `Any` has to stand in for a type to dodge one."""

from __future__ import annotations

import pathlib

from tests.unit.test_layers import ROOT, imported_modules

PACKAGE = "bpfstore.connector.dask"


def import_graph(directory: pathlib.Path) -> dict[str, set[str]]:
    """module -> the sibling modules it imports (any import, wherever it sits)."""
    names = {p.stem for p in directory.glob("*.py")}
    graph = {}
    for path in directory.glob("*.py"):
        found = {m.removeprefix(PACKAGE + ".").split(".")[0]
                 for _, m in imported_modules(path, PACKAGE) if m.startswith(PACKAGE + ".")}
        graph[path.stem] = (found & names) - {path.stem}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    done: set[str] = set()

    def search(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if found := search(nxt, [*path, node]):
                return found
        done.add(node)
        return None

    return next((c for n in sorted(graph) if (c := search(n, []))), None)


def test_dask_modules_have_no_import_cycle() -> None:
    assert cycle(import_graph(ROOT / "connector" / "dask")) is None


def test_a_cycle_is_found() -> None:
    assert cycle({"expr": {"translate"}, "translate": {"scan", "expr"}, "scan": set()}) == [
        "expr", "translate", "expr"]
