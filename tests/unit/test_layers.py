"""The layering, enforced: the contract depends on no front end, runtime or transport, and
neither side imports the other. An AST walk over the source tree (no imports are run), so a
forbidden import fails here even where it sits inside a function."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# package directory -> (its dotted name, top-level modules it must never import)
LAYERS = {
    "proto/contract": ("bpfstore.contract", (
        "grpc", "grpc_health", "pyspark", "dask", "distributed", "bcc", "bpfstore.connector",
        "bpfstore.node_agent", "bpfstore.v1.agent_pb2_grpc")),
    "node_agent": ("bpfstore.node_agent", ("bpfstore.connector", "pyspark", "dask")),
    "connector": ("bpfstore.connector", ("bpfstore.node_agent", "bcc")),
}


def imported_modules(path: pathlib.Path, package: str) -> list[tuple[int, str]]:
    """Every module a file imports, relative imports resolved against its package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(directory: pathlib.Path, dotted: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted(directory.rglob("*.py")):
        relative = path.relative_to(directory).with_suffix("")
        package = ".".join([dotted, *relative.parts[:-1]])
        for line, module in imported_modules(path, package):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(directory.parent)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("directory", sorted(LAYERS))
def test_layer_imports_nothing_forbidden(directory: str) -> None:
    dotted, forbidden = LAYERS[directory]
    assert violations(ROOT / directory, dotted, forbidden) == []


def test_a_forbidden_import_is_caught(tmp_path: pathlib.Path) -> None:
    """The check itself can fail: a copy of the contract with one planted import is flagged,
    absolute or relative, at module level or inside a function."""
    contract = tmp_path / "contract"
    contract.mkdir()
    for source in (ROOT / "proto/contract").glob("*.py"):
        (contract / source.name).write_text(source.read_text())
    dotted, forbidden = LAYERS["proto/contract"]
    assert violations(contract, dotted, forbidden) == []
    plan = contract / "plan.py"
    plan.write_text(plan.read_text() + "\n\ndef f():\n    import grpc\n")
    (contract / "wire.py").write_text("from ..connector import client\n")
    found = violations(contract, dotted, forbidden)
    assert any("plan.py" in v and "imports grpc" in v for v in found), found
    assert any("wire.py:1 imports bpfstore.connector" in v for v in found), found
