"""The layers keep to their part: core computes (no Airflow, no AWS, no I/O); only hooks reach AWS; DAG files wire."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "patchcycle"
DAGS = Path(__file__).resolve().parents[1] / "dags"
# What core may not import: Airflow, AWS clients, and anything that touches files, processes or the network.
CORE_FORBIDDEN = (
    "airflow",
    "boto3",
    "botocore",
    "aiobotocore",
    "os",
    "pathlib",
    "shutil",
    "socket",
    "subprocess",
    "urllib",
)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def _forbidden(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in prefixes))


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").rglob("*.py")), ids=lambda p: p.name)
def test_core_imports_no_airflow_aws_or_io(path: Path) -> None:
    assert _forbidden(imported_modules(path), CORE_FORBIDDEN) == []


@pytest.mark.parametrize("path", sorted((PACKAGE / "operators").glob("*.py")), ids=lambda p: p.name)
def test_operators_reach_aws_through_hooks_only(path: Path) -> None:
    assert _forbidden(imported_modules(path), ("boto3", "botocore.client", "aiobotocore")) == []


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_import_the_task_sdk_and_the_package_only(path: Path) -> None:
    allowed = ("__future__", "datetime", "airflow.sdk", "patchcycle", "airflow.timetables.trigger")
    assert [m for m in imported_modules(path) if not any(m == a or m.startswith(f"{a}.") for a in allowed)] == []
