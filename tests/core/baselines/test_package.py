"""core.baselines does no I/O (patchcycle.baseline_files reads the files), and its __init__ re-exports nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import patchcycle.core.baselines

PACKAGE = Path(patchcycle.core.baselines.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
# Modules and builtins that reach the file system (or parse files, which is baseline_files' job).
IO_MODULES = frozenset({"os", "io", "pathlib", "shutil", "tempfile", "json", "yaml"})
IO_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "glob"})


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_module_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        name.split(".")[0]
        for found in ast.walk(tree)
        for name in (
            [alias.name for alias in found.names]
            if isinstance(found, ast.Import)
            else [found.module or ""]
            if isinstance(found, ast.ImportFrom)
            else []
        )
    }
    called = {
        found.func.id if isinstance(found.func, ast.Name) else getattr(found.func, "attr", "")
        for found in ast.walk(tree)
        if isinstance(found, ast.Call)
    }
    assert imported & IO_MODULES == set() and called & IO_CALLS == set()


def test_the_package_init_holds_only_its_docstring() -> None:
    body = ast.parse((PACKAGE / "__init__.py").read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    assert len(MODULES) > 1
