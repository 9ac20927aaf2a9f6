"""Building blocks of the JSON Schemas the run's documents are checked against (report.json, drift.json)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def closed_record(properties: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    """A closed object schema: every listed property required, no other."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": dict(properties),
    }
    return {**schema, "description": description} if description else schema
