"""The run report (report.json, REPORT_SCHEMA) and its CSV form (one line per in-scope resource).

Totals are computed over in-scope resources; `accounting` states the identity
`in scope = sum of verdicts` and whether it holds, and `incomplete` lists the parts of the fleet
(connection, region, stage) that could not be read, so a partial report never looks complete.
In install mode `install` records the staging rehearsal, the approval and the production waves, and
each resource entry names the wave it was planned in.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from patchcycle.core.immutable_rollout import AUTO_SCALING_GROUP_SCHEMA
from patchcycle.core.inventory import KEY_COLUMNS
from patchcycle.core.json_schemas import closed_record
from patchcycle.core.kpis import KPIS_SCHEMA, compute_kpis
from patchcycle.core.outcomes import APPROVE, REJECT
from patchcycle.core.plan import split_cve_ids
from patchcycle.core.rds_report import RDS_SECTION_SCHEMA, rds_waves
from patchcycle.core.report_evidence import (
    CONFIG_SCHEMA,
    INSPECTION_SCHEMA,
    OUTCOME_SCHEMA,
    config_section,
    outcome_section,
)
from patchcycle.core.timestamps import iso_utc
from patchcycle.core.verdicts import MODES, SCAN, VERDICTS, ComplianceState, ReasonCode, Verdict, accounting_problems

UNSPECIFIED_SEVERITY: Final = "Unspecified"

PATCH_STATE_COUNTS: Final = (
    "missing",
    "failed",
    "installed_pending_reboot",
    "installed",
    "critical_non_compliant",
    "security_non_compliant",
    "other_non_compliant",
)

_COUNTS: Final[dict[str, Any]] = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
_COUNTS_BY_STATE: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "propertyNames": {"enum": [state.value for state in ComplianceState]},
        "additionalProperties": {"type": "integer", "minimum": 0},
    },
}
_STRINGS: Final[dict[str, Any]] = {"type": "array", "items": {"type": "string"}}
_STRING: Final[dict[str, Any]] = {"type": "string"}
_BOOL: Final[dict[str, Any]] = {"type": "boolean"}
_COUNT: Final[dict[str, Any]] = {"type": "integer", "minimum": 0}

WAVE_STATUSES: Final = ("done", "halted", "skipped", "not_run")
APPROVAL_MODES: Final = ("manual", "auto")
APPROVAL_DECISIONS: Final = (APPROVE, REJECT, "")


_STAGING_STACK: Final = closed_record(
    {
        "account_id": _STRING,
        "region": _STRING,
        "stack_name": _STRING,
        "created": _BOOL,
        "created_at": {**_STRING, "description": "ISO 8601 UTC; empty when not created"},
        "deleted": _BOOL,
        "deleted_at": {**_STRING, "description": "ISO 8601 UTC; empty when not deleted"},
        "status": {**_STRING, "description": "the stack's last CloudFormation status"},
        "error": {**_STRING, "description": "why creation or deletion failed; empty when neither did"},
    }
)
_STAGING_INSTANCE: Final = closed_record(
    {
        "account_id": _STRING,
        "region": _STRING,
        "profile_id": _STRING,
        "instance_id": _STRING,
        "patch_group": _STRING,
        "platform_name": _STRING,
        "patch_ids": {**_STRINGS, "description": "the pinned patches planned for its profile"},
        "install_status": {**_STRING, "description": "SSM invocation status of the install; empty if not sent"},
        "installed": {**_COUNT, "description": "planned patches reported installed (incl. pending reboot)"},
        "not_installed": {**_STRINGS, "description": "planned patches missing, failed or not reported"},
        "health_status": {**_STRING, "description": "SSM invocation status of the health check; empty if not run"},
        "health_output": _STRING,
        "passed": _BOOL,
        "reason": {**_STRING, "description": "why it failed; empty when passed"},
    }
)
_WAVE: Final = closed_record(
    {
        "wave": {"type": "integer", "minimum": 1, "description": "1 = canary"},
        "instances": _COUNT,
        "sent": _COUNT,
        "succeeded": _COUNT,
        "failed": _COUNT,
        "threshold": {**_STRING, "description": "the halt threshold: a count or a percentage"},
        "allowed_failures": _COUNT,
        "halted": _BOOL,
        "halt_reason": {**_STRING, "description": "why the rollout halted at this wave; empty when it did not"},
        "status": {"enum": list(WAVE_STATUSES)},
        "started_at": _STRING,
        "finished_at": _STRING,
    }
)
_WHERE: Final = {"account_id": _STRING, "region": _STRING, "resource_id": _STRING, "wave": _COUNT}
ROLLBACK_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "settings": closed_record(
            {
                "snapshot": _BOOL,
                "rollback": {"enum": ["failed", "none"]},
                "snapshot_retention_days": _COUNT,
                "change_calendar": _STRING,
                "health_alarms": _STRINGS,
            }
        ),
        "snapshots": {
            "type": "array",
            "description": "each pre-patch snapshot run: completed with its snapshot ids, or failed and why",
            "items": closed_record(
                {**_WHERE, "status": {"enum": ["completed", "failed"]}, "snapshot_ids": _STRINGS, "detail": _STRING}
            ),
        },
        "validations": {
            "type": "array",
            "description": "each validation that failed (PatchCycle-ValidateInstance): the step and why",
            "items": closed_record({**_WHERE, "detail": _STRING}),
        },
        "restores": {
            "type": "array",
            "description": "each root-volume restore (PatchCycle-RestoreRootVolume): rolled back, or failed and why",
            "items": closed_record({**_WHERE, "status": {"enum": ["rolled_back", "failed"]}, "detail": _STRING}),
        },
        "retention": {
            "type": "array",
            "description": "per target, the project's snapshots of earlier runs deleted past snapshot_retention_days",
            "items": closed_record(
                {"account_id": _STRING, "region": _STRING, "cutoff": _STRING, "deleted": _STRINGS, "error": _STRING}
            ),
        },
        "summary": closed_record(
            {
                name: _COUNT
                for name in (
                    "snapshotted",
                    "snapshot_failures",
                    "validated",
                    "validation_failures",
                    "rolled_back",
                    "rollback_failures",
                    "snapshots_deleted",
                )
            }
        ),
    },
    "the way back: pre-patch snapshots, validations, root-volume restores and snapshot retention",
)
INSTALL_SCHEMA: Final[dict[str, Any]] = closed_record(
    {
        "staging": closed_record(
            {
                "stacks": {"type": "array", "items": _STAGING_STACK},
                "instances": {"type": "array", "items": _STAGING_INSTANCE},
                "passed": _BOOL,
                "summary": closed_record({name: _COUNT for name in ("instances", "passed", "failed", "patches")}),
            }
        ),
        "approval": closed_record(
            {
                "mode": {"enum": list(APPROVAL_MODES)},
                "decision": {"enum": list(APPROVAL_DECISIONS), "description": "empty when no decision was made"},
                "by": _STRING,
                "at": {**_STRING, "description": "ISO 8601 UTC; empty when no decision was made"},
                "timed_out": _BOOL,
                "reason": _STRING,
            }
        ),
        "waves": {"type": "array", "items": _WAVE},
        "halted_after_wave": {"type": ["integer", "null"], "minimum": 1},
        "rollback": ROLLBACK_SCHEMA,
        "pinned_patches": _COUNT,
        "settings": closed_record(
            {
                "reboot_option": _STRING,
                "canary": _STRING,
                "wave_percentages": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "halt_threshold": _STRING,
                "staging_max_instances": _COUNT,
            }
        ),
    },
    "install mode: the staging rehearsal, the approval gate and the production waves",
)
# Optional: present when the run took Auto Scaling instances on the immutable path (core/immutable_rollout).
INSTALL_SCHEMA["properties"]["auto_scaling_groups"] = {"type": "array", "items": AUTO_SCALING_GROUP_SCHEMA}
# Optional: present when plan_install planned RDS maintenance (core/rds_report); reports before it have none.
INSTALL_SCHEMA["properties"]["rds"] = RDS_SECTION_SCHEMA

REPORT_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "patchcycle run report",
    "type": "object",
    "required": [
        "run_id",
        "mode",
        "generated_at",
        "totals",
        "resources",
        "incomplete",
        "accounting",
        "install",
        "inspection",
        "config",
        "outcome",
        "started_at",
        "kpis",
    ],
    "additionalProperties": False,
    "properties": {
        "run_id": {"type": "string"},
        "mode": {"enum": list(MODES)},
        "generated_at": {"type": "string", "description": "ISO 8601 UTC, Z suffix"},
        "totals": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "resources_in_scope",
                "out_of_scope",
                "by_verdict",
                "by_responsibility",
                "by_compliance_state",
                "by_severity",
                "by_os",
                "by_region",
                "cves",
            ],
            "properties": {
                "resources_in_scope": {"type": "integer", "minimum": 0},
                "out_of_scope": {"type": "integer", "minimum": 0},
                "by_verdict": {**_COUNTS, "propertyNames": {"enum": [verdict.value for verdict in Verdict]}},
                "by_responsibility": _COUNTS,
                "by_compliance_state": {
                    **_COUNTS,
                    "propertyNames": {"enum": [state.value for state in ComplianceState]},
                },
                "by_severity": {**_COUNTS, "description": "outstanding EC2 patches of in-scope instances"},
                "by_os": {**_COUNTS_BY_STATE, "description": "in-scope EC2 instances: OS -> compliance state -> n"},
                "by_region": {**_COUNTS_BY_STATE, "description": "in-scope resources: region -> compliance state -> n"},
                "cves": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["count", "ids"],
                    "properties": {"count": {"type": "integer", "minimum": 0}, "ids": _STRINGS},
                },
            },
        },
        "verdict_meanings": {"type": "object", "additionalProperties": {"type": "string"}},
        "resources": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "resource_id",
                    "resource_type",
                    "account_id",
                    "region",
                    "responsibility",
                    "verdict",
                    "compliance_state",
                    "reason_code",
                    "reason",
                    "name",
                    "environment",
                    "missing_patches",
                    "cve_ids",
                    "patch_state",
                    "wave",
                    "snapshot_ids",
                ],
                "properties": {
                    "resource_id": {"type": "string"},
                    "resource_arn": {"type": "string", "description": "its ARN ('' when unknown)"},
                    "resource_type": {"enum": ["ec2", "rds", "s3"]},
                    "account_id": {"type": "string"},
                    "region": {"type": "string"},
                    "responsibility": {"enum": ["customer", "shared", "aws"]},
                    "verdict": {"enum": [verdict.value for verdict in Verdict]},
                    "compliance_state": {"enum": [state.value for state in ComplianceState]},
                    "reason_code": {
                        "enum": [code.value for code in ReasonCode],
                        "description": "why, for programs (docs/report.md lists the codes)",
                    },
                    "reason": {"type": "string", "description": "why, for people"},
                    "name": {"type": "string"},
                    "environment": {"type": "string"},
                    "missing_patches": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["patch_id", "title", "classification", "severity", "state", "cve_ids"],
                            "properties": {
                                "patch_id": {"type": "string"},
                                "title": {"type": "string"},
                                "classification": {"type": "string"},
                                "severity": {"type": "string"},
                                "state": {"type": "string"},
                                "cve_ids": _STRINGS,
                            },
                        },
                    },
                    "cve_ids": _STRINGS,
                    "patch_state": {
                        "description": "EC2: the last Patch Manager operation and its counts; null otherwise",
                        "oneOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": [
                                    "operation",
                                    "operation_end_time",
                                    "baseline_id",
                                    "patch_group",
                                    *PATCH_STATE_COUNTS,
                                ],
                                "properties": {
                                    "operation": {"type": "string"},
                                    "operation_end_time": {"type": "string"},
                                    "baseline_id": {"type": "string"},
                                    "patch_group": {"type": "string"},
                                    **{name: {"type": "integer", "minimum": 0} for name in PATCH_STATE_COUNTS},
                                },
                            },
                        ],
                    },
                    "wave": {
                        "type": ["integer", "null"],
                        "minimum": 1,
                        "description": "install mode: the production wave it was planned in (EC2: 1 = canary; RDS: "
                        "its RDS wave, install.rds); else null",
                    },
                    "snapshot_ids": {**_STRINGS, "description": "install mode: its pre-patch snapshots; else empty"},
                    "auto_scaling_group": {
                        "type": "string",
                        "description": "EC2: the Auto Scaling group it was in at inventory time; empty when none",
                    },
                },
            },
        },
        "incomplete": {
            "type": "array",
            "description": "parts of the fleet that could not be read, e.g. {aws_conn_id, region, stage, error}",
            "items": {
                "type": "object",
                "required": ["stage", "error"],
                "additionalProperties": {"type": "string"},
            },
        },
        "accounting": {
            "type": "object",
            "additionalProperties": False,
            "required": ["in_scope", "sum_of_verdicts", "ok", "problems"],
            "properties": {
                "in_scope": {"type": "integer", "minimum": 0},
                "sum_of_verdicts": {"type": "integer", "minimum": 0},
                "ok": {"type": "boolean"},
                "problems": _STRINGS,
            },
        },
        "install": {"oneOf": [{"type": "null"}, INSTALL_SCHEMA], "description": "null in scan mode"},
        "inspection": {**INSPECTION_SCHEMA, "description": "null in scan mode; " + INSPECTION_SCHEMA["description"]},
        "config": CONFIG_SCHEMA,
        "outcome": OUTCOME_SCHEMA,
        "started_at": {"type": "string", "description": "ISO 8601 UTC: when the run started; empty if unknown"},
        "kpis": KPIS_SCHEMA,
    },
}

CSV_COLUMNS: Final = (
    "account_id",
    "region",
    "resource_type",
    "resource_id",
    "name",
    "environment",
    "auto_scaling_group",
    "responsibility",
    "verdict",
    "compliance_state",
    "reason_code",
    "reason",
    "wave",
    "missing_patches",
    "cve_ids",
)


def _key(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(row[column]) for column in KEY_COLUMNS)


def _counts(values: Any) -> dict[str, int]:
    """{value: count} sorted by value, with plain ints (JSON-safe)."""
    return {str(key): int(count) for key, count in sorted(Counter(values).items())}


def _nested_counts(pairs: list[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """{outer: {inner: count}} from (outer, inner) pairs, both levels sorted."""
    nested: dict[str, Counter[str]] = {}
    for outer, inner in pairs:
        nested.setdefault(outer, Counter())[inner] += 1
    return {outer: dict(sorted(counter.items())) for outer, counter in sorted(nested.items())}


def _os_label(resource: Mapping[str, Any]) -> str:
    label = f"{resource.get('platform_name', '')} {resource.get('platform_version', '')}".strip()
    return label or "unknown"


def _patch_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "patch_id": str(row["patch_id"]),
        "title": str(row["title"]),
        "classification": str(row["classification"]),
        "severity": str(row["severity"]),
        "state": str(row["state"]),
        "cve_ids": split_cve_ids(str(row["cve_ids"])),
    }


def build_report(
    run_id: str,
    mode: str,
    inventory: pd.DataFrame,
    verdicts: pd.DataFrame,
    plan: pd.DataFrame,
    compliance: pd.DataFrame,
    missing_parts: list[dict[str, Any]],
    generated_at: dt.datetime | str,
    *,
    install: Mapping[str, Any] | None = None,
    waves_by_resource: Mapping[str, int] | None = None,
    snapshots_by_resource: Mapping[str, list[str]] | None = None,
    inspection: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    started_at: dt.datetime | str | None = None,
) -> dict[str, Any]:
    """The report.json document (REPORT_SCHEMA) of a run.

    inventory: with in_scope (scope.apply_scope); verdicts: VERDICT_COLUMNS; plan: PLAN_COLUMNS;
    compliance: COMPLIANCE_COLUMNS (each EC2 entry's `patch_state`, null when Patch Manager reported none);
    missing_parts: one dict per part of the fleet that could not be read (values made strings).
    Out-of-scope resources are only counted (totals.out_of_scope).
    install: install mode only, the `install` section (INSTALL_SCHEMA) as the install operators recorded it;
    copied with numpy scalars made plain Python values and datetimes ISO 8601 UTC text, not otherwise checked.
    waves_by_resource: {EC2 instance id: wave number (1 = canary)}; an instance absent (or with wave < 1,
    the outcome table's "no wave") gets wave null; an RDS database gets its RDS wave from install.rds.
    snapshots_by_resource: {EC2 instance id: its pre-patch snapshot ids} (install mode).
    inspection: install mode only, report_evidence.inspection_section; config: report_evidence.config_section
    (an empty one when absent). `outcome` is derived from install and missing_parts, `kpis` from the rest
    (core.kpis); started_at: the run's start, time to patch's origin.
    """
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {list(MODES)}, got {mode!r}")
    if mode == SCAN and (install is not None or waves_by_resource or inspection is not None):
        raise ValueError(
            "install, waves_by_resource, inspection: a scan-mode report has no install section, waves or inspection"
        )
    waves = {str(resource_id): int(wave) for resource_id, wave in (waves_by_resource or {}).items() if int(wave) >= 1}
    database_waves = rds_waves((install or {}).get("rds"))
    in_scope_mask = inventory["in_scope"] if "in_scope" in inventory.columns else pd.Series(True, index=inventory.index)
    resources_by_key = {_key(row): row for row in inventory[in_scope_mask].to_dict("records")}
    patches_by_key: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in plan.to_dict("records"):
        patches_by_key.setdefault(_key(row), []).append(row)

    states_by_id = {str(row["resource_id"]): row for row in compliance.to_dict("records")}
    entries: list[dict[str, Any]] = []
    for verdict_row in verdicts.sort_values(list(KEY_COLUMNS)).to_dict("records"):
        key = _key(verdict_row)
        resource = resources_by_key.get(key, {})
        patches = patches_by_key.get(key, [])
        missing = [_patch_entry(row) for row in patches]
        entries.append(
            {
                "resource_id": str(verdict_row["resource_id"]),
                "resource_arn": str(resource.get("resource_arn", "")),
                "resource_type": str(verdict_row["resource_type"]),
                "account_id": str(verdict_row["account_id"]),
                "region": str(verdict_row["region"]),
                "responsibility": str(verdict_row["responsibility"]),
                "verdict": str(verdict_row["verdict"]),
                "compliance_state": _compliance_state(str(verdict_row["verdict"])),
                "reason_code": str(verdict_row["reason_code"]),
                "reason": str(verdict_row["reason"]),
                "name": str(resource.get("name", "")),
                "environment": str(resource.get("environment", "")),
                "missing_patches": missing,
                "cve_ids": sorted({cve for patch in missing for cve in patch["cve_ids"]}),
                "patch_state": _patch_state(states_by_id.get(key[3])) if key[2] == "ec2" else None,
                "wave": waves.get(key[3]) if key[2] == "ec2" else database_waves.get((key[0], key[1], key[3])),
                "snapshot_ids": list((snapshots_by_resource or {}).get(key[3], [])) if key[2] == "ec2" else [],
                "auto_scaling_group": _text(resource.get("auto_scaling_group")) if key[2] == "ec2" else "",
            }
        )

    ec2_patches = [
        row
        for key, rows in patches_by_key.items()
        if key in resources_by_key
        for row in rows
        if row["resource_type"] == "ec2"
    ]
    cves = sorted({cve for row in ec2_patches for cve in split_cve_ids(str(row["cve_ids"]))})
    ec2_entries = [entry for entry in entries if entry["resource_type"] == "ec2"]
    problems = accounting_problems(inventory, verdicts)
    report: dict[str, Any] = {
        "run_id": run_id,
        "mode": mode,
        "started_at": iso_utc(started_at) if started_at else "",
        "generated_at": iso_utc(generated_at),
        "totals": {
            "resources_in_scope": len(resources_by_key),
            "out_of_scope": int((~in_scope_mask).sum()),
            "by_verdict": _counts(entry["verdict"] for entry in entries),
            "by_responsibility": _counts(entry["responsibility"] for entry in entries),
            "by_compliance_state": _counts(entry["compliance_state"] for entry in entries),
            "by_severity": _counts(str(row["severity"]) or UNSPECIFIED_SEVERITY for row in ec2_patches),
            "by_os": _nested_counts(
                [(_os_label(resources_by_key.get(_key(e), {})), e["compliance_state"]) for e in ec2_entries]
            ),
            "by_region": _nested_counts([(entry["region"], entry["compliance_state"]) for entry in entries]),
            "cves": {"count": len(cves), "ids": cves},
        },
        "verdict_meanings": {
            verdict.value: info.meaning
            for verdict, info in VERDICTS.items()
            if verdict.value in {entry["verdict"] for entry in entries}
        },
        "resources": entries,
        "incomplete": [
            {str(key): "" if value is None else str(value) for key, value in part.items()} for part in missing_parts
        ],
        "accounting": {
            "in_scope": len(resources_by_key),
            "sum_of_verdicts": len(verdicts),
            "ok": not problems,
            "problems": problems,
        },
        "install": None if install is None else _plain(install),
        "inspection": None if inspection is None else _plain(inspection),
        "config": _plain(config) if config is not None else config_section(None, []),
        "outcome": outcome_section(install, missing_parts),
    }
    report["kpis"] = compute_kpis(report)
    return report


def _plain(value: Any) -> Any:
    """A deep copy made of plain JSON types: the operators build `install` from pandas rows, whose numpy
    scalars json.dumps would otherwise write as strings (ArtifactStore uses default=str)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime | np.datetime64):  # pd.Timestamp and NaT included: times are text here
        return iso_utc(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text(value: Any) -> str:
    """A cell as text: "" for a missing one (None or NaN: a frame read without the column's value)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _patch_state(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An instance's last Patch Manager state (instance_compliance row) for the report, or None."""
    if state is None:
        return None
    return {
        "operation": str(state["operation"]),
        "operation_end_time": iso_utc(state["operation_end_time"]),
        "baseline_id": str(state["baseline_id"]),
        "patch_group": str(state["patch_group"]),
        **{column: int(state[column]) for column in PATCH_STATE_COUNTS},
    }


def _compliance_state(verdict: str) -> str:
    """The compliance state a verdict implies (UNKNOWN for a verdict outside the taxonomy)."""
    try:
        return VERDICTS[Verdict(verdict)].compliance.value
    except ValueError:
        return ComplianceState.UNKNOWN.value


def _csv_text(value: str) -> str:
    """One-line text, with spreadsheet formula prefixes neutralised (tag values are user input)."""
    text = " ".join(value.splitlines())
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def report_csv(report: Mapping[str, Any]) -> str:
    """The report's resources as CSV (header + one line per resource; cve_ids ";"-joined; wave empty when null)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in report["resources"]:
        values = {
            **entry,
            "wave": "" if entry["wave"] is None else entry["wave"],
            "missing_patches": len(entry["missing_patches"]),
            "cve_ids": ";".join(entry["cve_ids"]),
        }
        writer.writerow([_csv_text(str(values.get(column, ""))) for column in CSV_COLUMNS])
    return buffer.getvalue()


NEW_INSTANCE_CSV_COLUMNS: Final = (
    "account_id",
    "region",
    "auto_scaling_group",
    "instance_id",
    "refresh_id",
    "launch_template",
    "launch_template_version",
    "image_id",
    "replaced_images",
    "checked",
    "compliant",
    "not_installed",
    "cves_closed",
    "still_active_cves",
    "inspector_scanned_at",
)


def new_instances_csv(report: Mapping[str, Any]) -> str:
    """The instances the Auto Scaling groups' refreshes launched, as CSV: header plus one line per new instance,
    under its group (none when the run refreshed no group). They are not resources of the report: the inventory
    did not know them, so they have no verdict; their checks are Patch Manager's and Amazon Inspector's."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(NEW_INSTANCE_CSV_COLUMNS)
    for group in (report.get("install") or {}).get("auto_scaling_groups") or []:
        for new in group["new_instances"]:
            checked = bool(new.get("checked", True))
            values = {
                "account_id": group["account_id"],
                "region": group["region"],
                "auto_scaling_group": group["group"],
                "instance_id": new["instance_id"],
                "refresh_id": group["refresh_id"],
                "launch_template": group["launch_template"],
                "launch_template_version": group["version"],
                "image_id": group["image_id"],
                "replaced_images": ";".join(group["source_images"]),
                "checked": "yes" if checked else "no",
                "compliant": ("yes" if new["compliant"] else "no") if checked else "",
                "not_installed": ";".join(new.get("not_installed", [])),
                "cves_closed": ("yes" if new["cves_closed"] else "no") if checked else "",
                "still_active_cves": ";".join(new.get("still_active", [])),
                "inspector_scanned_at": new.get("scanned_at", ""),
            }
            writer.writerow([_csv_text(str(values[column])) for column in NEW_INSTANCE_CSV_COLUMNS])
    return buffer.getvalue()
