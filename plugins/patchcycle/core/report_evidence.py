"""The report's evidence sections after the install: Inspector's per-CVE proof, AWS Config's verdict,
and the run's outcome (whether the cycle ran its course, and if not, why).

Each builder takes the stage's table as the operators wrote it and returns plain JSON values; the
schemas here are merged into REPORT_SCHEMA.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pandas as pd

from patchcycle.core.outcomes import APPROVE
from patchcycle.core.rds_rollout import HALT_OUTCOMES, RolloutOutcome

_STRING: Final[dict[str, Any]] = {"type": "string"}
_ROWS: Final[dict[str, Any]] = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": {"type": "string"}},
}
_COUNTS: Final[dict[str, Any]] = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

INSPECTION_SCHEMA: Final[dict[str, Any]] = {
    "type": ["object", "null"],
    "description": "install mode: per (instance, CVE) whether Amazon Inspector shows it closed after the install",
    "additionalProperties": False,
    "required": ["cves", "residual", "by_status", "residual_by_severity"],
    "properties": {
        "cves": {**_ROWS, "description": "one row per patched instance and CVE its pinned patches fix"},
        "residual": {**_ROWS, "description": "active critical/high findings the cycle did not set out to fix"},
        "by_status": _COUNTS,
        "residual_by_severity": _COUNTS,
    },
}

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "AWS Config's EC2_MANAGEDINSTANCE_PATCH_COMPLIANCE_STATUS_CHECK verdict per instance",
    "additionalProperties": False,
    "required": ["resources", "by_compliance", "targets"],
    "properties": {
        "resources": _ROWS,
        "by_compliance": _COUNTS,
        "targets": {"type": "array", "items": {"type": "object"}, "description": "the rule and its evaluation"},
    },
}

OUTCOME_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "whether the cycle ran its course; the run fails (task conclude) when it did not",
    "additionalProperties": False,
    "required": ["ok", "problems"],
    "properties": {"ok": {"type": "boolean"}, "problems": {"type": "array", "items": _STRING}},
}


def _rows(frame: pd.DataFrame | None, order: list[str]) -> list[dict[str, str]]:
    """A table as a sorted list of string-valued rows (empty when the table is absent)."""
    if frame is None or frame.empty:
        return []
    ordered = frame.sort_values([column for column in order if column in frame.columns], kind="stable")
    return [{str(k): "" if pd.isna(v) else str(v) for k, v in row.items()} for row in ordered.to_dict("records")]


def _counts(values: Iterable[str]) -> dict[str, int]:
    return {key: int(count) for key, count in sorted(Counter(values).items())}


def inspection_section(cves: pd.DataFrame | None, residual: pd.DataFrame | None) -> dict[str, Any]:
    """The `inspection` section from the inspect stage's tables (inspection.CVE_COLUMNS, RESIDUAL_COLUMNS)."""
    cve_rows = _rows(cves, ["account_id", "region", "resource_id", "cve_id"])
    residual_rows = _rows(residual, ["account_id", "region", "resource_id", "cve_id"])
    return {
        "cves": cve_rows,
        "residual": residual_rows,
        "by_status": _counts(row["status"] for row in cve_rows),
        "residual_by_severity": _counts(row["severity"] for row in residual_rows),
    }


def config_section(resources: pd.DataFrame | None, targets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The `config` section from the config stage's tables (config_compliance.CONFIG_COLUMNS) and summaries."""
    rows = _rows(resources, ["account_id", "region", "resource_id"])
    return {
        "resources": rows,
        "by_compliance": _counts(row["compliance"] for row in rows),
        "targets": [dict(target) for target in targets],
    }


def unfinished_install(install: Mapping[str, Any]) -> str:
    """Why an install-mode run did not run its course ("" when it did: approved and every wave done, or rejected)."""
    if not install["waves"]:
        return ""  # nothing needed patching: there was nothing to approve or roll out
    halted = install["halted_after_wave"]
    if halted is not None:
        reason = next((str(wave.get("halt_reason") or "") for wave in install["waves"] if wave["wave"] == halted), "")
        return f"the rollout {reason}" if reason else f"the rollout halted after wave {halted}"
    decision = install["approval"]["decision"]
    if not decision:
        return f"the approval gate did not decide ({install['approval']['reason']})"
    not_run = [str(wave["wave"]) for wave in install["waves"] if wave["status"] == "not_run"]
    if decision == APPROVE and not_run:
        return f"wave(s) {', '.join(not_run)} did not run"
    return ""


def unfinished_rds(install: Mapping[str, Any]) -> str:
    """Why an approved run's RDS rollout did not run its course ("" when it did, or there was none): it halted (a
    gate or the threshold), or its task ended before reaching every database."""
    databases = (install.get("rds") or {}).get("databases", [])
    halted = [db for db in databases if str(db["outcome"]) in HALT_OUTCOMES]
    if halted:
        first = min(halted, key=lambda db: int(db["wave"]))
        return f"it halted at RDS wave {first['wave']} ({first['detail']})"
    not_reached = [db for db in databases if str(db["outcome"]) == RolloutOutcome.NOT_RUN]
    if install["approval"]["decision"] == APPROVE and not_reached:
        return f"it did not reach {len(not_reached)} database(s): {', '.join(db['resource_id'] for db in not_reached)}"
    return ""


def outcome_section(install: Mapping[str, Any] | None, incomplete: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the cycle ran its course. A rejection is a valid end; a failed staging, an undecided gate,
    a halted rollout, a wave not run or a part of the fleet (or a stage) that could not be read is not."""
    problems: list[str] = []
    if install is not None and not install["staging"]["passed"]:
        # Nothing reached production because staging failed: an unattended run must not look successful.
        problems.append(f"production was not patched: staging did not pass ({install['approval']['reason']})")
    elif install is not None and (unfinished := unfinished_install(install)):
        problems.append(f"the install did not finish: {unfinished}")
    if install is not None and install["staging"]["passed"] and (unfinished := unfinished_rds(install)):
        problems.append(f"the RDS rollout did not finish: {unfinished}")
    problems.extend(
        f"{part.get('aws_conn_id', '')}/{part.get('region', '')} {part['stage']}: {part['error']}"
        for part in incomplete
    )
    return {"ok": not problems, "problems": problems}
