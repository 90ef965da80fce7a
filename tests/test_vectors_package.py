"""The kit's boundary: ``vectors`` depends on ``gateway`` and ``pki``, never the other way round, through public names.

Read from the source (imports as the AST has them, including those inside
functions), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
import contextlib
import io
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gateway.cli import COMMAND_ENTRY_POINTS, main
from tests.shared_data import PROJECT_ROOT


def imports(folder: str) -> Iterator[tuple[Path, str, str | None]]:
    """(file, module, imported name or None) for every import under ``folder``."""
    for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name, None
            elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
                for alias in node.names:
                    yield path, node.module, alias.name


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _private(module: str, name: str | None) -> bool:
    return any(part.startswith("_") for part in module.split(".")) or (name is not None and name.startswith("_"))


@pytest.mark.parametrize("folder", ["gateway", "pki"])
def test_the_runtime_never_imports_the_kit(folder: str) -> None:
    found = [f"{path.relative_to(PROJECT_ROOT)}: {module}" for path, module, _ in imports(folder)
             if _in_package(module, "vectors")]
    assert found == []


def test_the_gateway_package_holds_no_vector_code() -> None:
    assert not (PROJECT_ROOT / "gateway" / "vectors").exists()
    assert (PROJECT_ROOT / "vectors" / "__init__.py").is_file()


def test_the_kit_uses_only_public_names_of_the_gateway_and_pki() -> None:
    found = [f"{path.relative_to(PROJECT_ROOT)}: {module} {name}" for path, module, name in imports("vectors")
             if (_in_package(module, "gateway") or _in_package(module, "pki")) and _private(module, name)]
    assert found == []


@pytest.mark.parametrize("folder", ["tests", "bench"])
def test_tests_and_benchmarks_use_only_public_names_of_the_kit(folder: str) -> None:
    found = [f"{path.relative_to(PROJECT_ROOT)}: {module} {name}" for path, module, name in imports(folder)
             if _in_package(module, "vectors") and _private(module, name)]
    assert found == []


def test_the_vectors_command_comes_from_the_kits_entry_point() -> None:
    registered = {found.name: found.value for found in entry_points(group=COMMAND_ENTRY_POINTS)}
    assert registered == {"vectors": "vectors.cli:add_commands"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as done:
        main(["vectors", "run", "--help"])
    assert done.value.code == 0
    assert "--expect {ours,strict-duis}" in printed.getvalue()
