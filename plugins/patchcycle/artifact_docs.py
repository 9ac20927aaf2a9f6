"""docs/artifacts.md, generated from the run-artifact contract (patchcycle.run_artifacts): `make docs` writes it,
and a test fails when the committed page is not what the contract gives."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from patchcycle.run_artifacts import (
    CYCLE_ARTIFACTS,
    WATCH_ARTIFACTS,
    Artifact,
    Document,
    Record,
    Step,
    Table,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "artifacts.md"
HEADER = """# A run's artifacts

<!-- Generated from plugins/patchcycle/run_artifacts.py by `make docs`: edit the contract, not this page. -->

Every task of a run keeps what it found under `{artifact_root}/{dag_id}/{run_id}/{stage}/` (the run id with
`:` and `+` written as `_`): tables as parquet, records and documents as JSON, checked against their schema
when written and when read. `plugins/patchcycle/run_artifacts.py` is the only code that knows these paths;
tasks read and write through it. In a file name, `{target}` is the `(connection, region)` target as
`<aws_conn_id>.<region>`, `{wave}` the wave number (1 is the canary), `{profile}` a staging profile id and
`{step}` the failed step ({steps}).
"""


def _schema_summary(artifact: Artifact[Any]) -> str:
    """The schema in one cell: a table's columns and dtypes, a record's fields and types, a document's schema."""
    if isinstance(artifact, Table):
        return ", ".join(f"`{name}` {dtype}" for name, dtype in artifact.columns.items())
    if isinstance(artifact, Record):
        return _json_type(artifact.adapter.json_schema())
    if isinstance(artifact, Document):
        title = artifact.schema.get("title", "JSON schema")
        return f"{title}: fields " + ", ".join(f"`{name}`" for name in artifact.schema.get("properties", {}))
    return "text"


def _json_type(schema: Mapping[str, Any], definitions: Mapping[str, Any] | None = None) -> str:
    """A JSON schema, as `field` type pairs for an object and a short type otherwise."""
    definitions = definitions if definitions is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return _json_type(definitions[schema["$ref"].rsplit("/", 1)[1]], definitions)
    if "anyOf" in schema:
        return " or ".join(_json_type(option, definitions) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return (
            "{"
            + ", ".join(f"`{name}` {_json_type(field, definitions)}" for name, field in schema["properties"].items())
            + "}"
        )
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"{{text: {_json_type(values, definitions)}}}" if isinstance(values, Mapping) else "object"
    if kind == "array":
        return f"[{_json_type(schema.get('items', {}), definitions)}]"
    if "enum" in schema:
        return "one of " + ", ".join(str(value) for value in schema["enum"])
    return {"string": "text", "integer": "integer", "number": "number", "boolean": "true/false", "null": "null"}.get(
        str(kind), "any"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(title: str, artifacts: Iterable[Artifact[Any]]) -> list[str]:
    lines = [f"## {title}", "", "| File | Kind | Written by | Holds | Schema |", "| --- | --- | --- | --- | --- |"]
    for artifact in artifacts:
        cells = [
            f"`{artifact.stage}/{artifact.name}`",
            artifact.kind,
            _cell(artifact.written_by),
            _cell(artifact.about),
            _cell(_schema_summary(artifact)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _steps() -> str:
    """The failure records' step names, as Step spells them (waves as `wave_N`)."""
    names = [value for name, value in vars(Step).items() if name.isupper() and isinstance(value, str)]
    return ", ".join(f"`{name}`" for name in [*names, "wave_N"])


def render() -> str:
    """The whole page."""
    lines = [HEADER.replace("{steps}", _steps())]
    lines += _section("patch_cycle", CYCLE_ARTIFACTS)
    lines += _section("patch_compliance_watch", WATCH_ARTIFACTS)
    lines += [
        "The report (`report/report.json`) is described field by field in [report.md](report.md), the drift",
        "report in [compliance_watch.md](compliance_watch.md).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    DOC.write_text(render())
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
