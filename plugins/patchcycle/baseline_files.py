"""The baseline files on disk: reading include/baselines/*.yaml and the schema, then core's validation.

core.baselines does no I/O; this module reads the YAML files (invalid YAML fails naming the file and the
line) and include/baselines/baseline.schema.json, and hands the documents and the schema's validator to
core.baselines.validation. docs/baselines.md documents the format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema.protocols import Validator

from patchcycle.core.baselines import validation
from patchcycle.core.baselines.model import BaselineConfigError, BaselineSpec

BASELINE_SCHEMA = Path(__file__).resolve().parents[2] / "include" / "baselines" / "baseline.schema.json"
BASELINE_SUFFIXES = (".yaml", ".yml")


def load_baseline_files(directory: Path) -> list[BaselineSpec]:
    """Every *.yaml / *.yml file of the directory (sorted by name), validated one by one and together."""
    if not directory.is_dir():
        raise BaselineConfigError(str(directory), "", "is not a directory of baseline files")
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in BASELINE_SUFFIXES)
    if not paths:
        raise BaselineConfigError(str(directory), "", "holds no baseline files (*.yaml)")
    return parse_baselines({str(path): read_baseline_document(path) for path in paths})


def read_baseline_document(path: Path) -> Any:
    """A file's YAML document; invalid YAML fails naming the file and the line."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise BaselineConfigError(str(path), where, f"invalid YAML: {problem}") from error


def parse_baselines(documents: Mapping[str, Any]) -> list[BaselineSpec]:
    """{source: YAML document} validated against the schema file (core's parse_baselines with its validator)."""
    return validation.parse_baselines(documents, baseline_validator())


@cache
def baseline_validator() -> Validator:
    """The validator of include/baselines/baseline.schema.json, read once per process."""
    return validation.baseline_validator(json.loads(BASELINE_SCHEMA.read_text()))
