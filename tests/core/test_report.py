"""report.json: valid against REPORT_SCHEMA (scan and install mode), totals that add up, and its CSV form."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any, cast

import jsonschema
import numpy as np
import pandas as pd
import pytest

from patchcycle.core.report import CSV_COLUMNS, REPORT_SCHEMA, build_report, report_csv
from patchcycle.core.verdicts import ReasonCode, Verdict, scan_verdicts
from tests.core.test_verdicts import Fleet, scan_fleet

RUN_ID = "scheduled__2026-11-20T03:00:00+00:00"
GENERATED_AT = dt.datetime(2026, 11, 20, 3, 30, tzinfo=dt.UTC)
MISSING_PARTS = [
    {
        "aws_conn_id": "aws_prod",
        "region": "ap-south-1",
        "stage": "inventory",
        "error": "AccessDenied: ec2:DescribeInstances",
    }
]


def sample_report(name_of_ok: str = "web-1", drop: str = "") -> dict[str, Any]:
    """The scan report of the test fleet; `drop` removes one resource's verdict."""
    fleet: Fleet = scan_fleet(name_of_ok)
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    verdicts = verdicts[verdicts["resource_id"] != drop]
    return build_report(
        RUN_ID,
        "scan",
        fleet.inventory,
        verdicts,
        fleet.plan,
        fleet.compliance,
        MISSING_PARTS,
        GENERATED_AT,
    )


WAVES_BY_RESOURCE = {"i-missing": 1, "i-reboot": 2, "i-ok": 0}  # 0: the outcome table's "no wave"
# What the install run did to the instances the scan found missing patches on (the rest keep their scan verdict).
INSTALL_VERDICTS = {
    "i-missing": (Verdict.PATCHED, ReasonCode.INSTALLED, "4 planned patches installed and verified"),
    "i-reboot": (
        Verdict.PATCHED_PENDING_REBOOT,
        ReasonCode.INSTALLED_PENDING_REBOOT,
        "2 patches installed, 2 pending reboot",
    ),
}
HALTED_VERDICTS = {
    "i-missing": (
        Verdict.FAILED,
        ReasonCode.INSTALL_FAILED,
        "Install Failed: 1 planned patch not installed: kernel-6.1.1",
    ),
    "i-reboot": (Verdict.SKIPPED_HALTED, ReasonCode.HALTED, "halted after wave 1: 1 of 1 failed, threshold 0"),
}


def rollback_section(halted: bool = False) -> dict[str, Any]:
    """The install's way back: both instances snapshotted; halted, the canary's failed install rolled back."""
    where = {"account_id": "111111111111", "region": "us-east-1", "wave": 1}
    restores = [
        {**where, "resource_id": "i-missing", "status": "rolled_back", "detail": "root volume restored from snap-1"}
    ]
    return {
        "settings": {
            "snapshot": True,
            "rollback": "failed",
            "snapshot_retention_days": 7,
            "change_calendar": "",
            "health_alarms": [],
        },
        "snapshots": [
            {**where, "resource_id": "i-missing", "status": "completed", "snapshot_ids": ["snap-1"], "detail": ""},
            {
                **where,
                "resource_id": "i-reboot",
                "wave": 2,
                "status": "completed",
                "snapshot_ids": ["snap-2"],
                "detail": "",
            },
        ],
        "validations": [],
        "restores": restores if halted else [],
        "retention": [
            {
                "account_id": "111111111111",
                "region": "us-east-1",
                "cutoff": "2026-11-13T03:00:00Z",
                "deleted": [],
                "error": "",
            }
        ],
        "summary": {
            "snapshotted": 2,
            "snapshot_failures": 0,
            "validated": 0 if halted else 2,
            "validation_failures": 0,
            "rolled_back": 1 if halted else 0,
            "rollback_failures": 0,
            "snapshots_deleted": 0,
        },
    }


def install_section(halted: bool = False, reason: str = "health check Failed (exit 1): nginx down") -> dict[str, Any]:
    """The install section of a run: one staging stack, one passing and one failing staging instance, two waves."""
    stamp = "2026-11-20T03:{:02d}:00Z".format
    wave_2 = (
        {
            "sent": 0,
            "succeeded": 0,
            "failed": 0,
            "halted": False,
            "halt_reason": "",
            "status": "skipped",
            "started_at": "",
            "finished_at": "",
        }
        if halted
        else {"sent": 1, "succeeded": 1, "failed": 0, "halted": False, "halt_reason": "", "status": "done"}
        | {"started_at": stamp(40), "finished_at": stamp(45)}
    )
    return {
        "staging": {
            "stacks": [
                {
                    "account_id": "111111111111",
                    "region": "us-east-1",
                    "stack_name": "patchcycle-staging-scheduled--2026-11-20T03-00-00-00-00",
                    "created": True,
                    "created_at": pd.Timestamp(stamp(5)),  # made ISO 8601 text
                    "deleted": True,
                    "deleted_at": stamp(20),
                    "status": "DELETE_COMPLETE",
                    "error": "",
                }
            ],
            "instances": [
                {
                    "account_id": "111111111111",
                    "region": "us-east-1",
                    "profile_id": "p01",
                    "instance_id": "i-stage01",
                    "patch_group": "web",
                    "platform_name": "Amazon Linux",
                    "patch_ids": ["curl-8.1", "kernel-6.1.1"],
                    "install_status": "Success",
                    "installed": np.int64(2),  # operators build these rows from frames
                    "not_installed": [],
                    "health_status": "Success",
                    "health_output": "ok",
                    "passed": np.bool_(True),
                    "reason": "",
                },
                {
                    "account_id": "111111111111",
                    "region": "us-east-1",
                    "profile_id": "p02",
                    "instance_id": "i-stage02",
                    "patch_group": "db",
                    "platform_name": "Amazon Linux",
                    "patch_ids": ["tzdata"],
                    "install_status": "Success",
                    "installed": 1,
                    "not_installed": [],
                    "health_status": "Failed",
                    "health_output": reason,
                    "passed": False,
                    "reason": reason,
                },
            ],
            "passed": False,
            "summary": {"instances": 2, "passed": 1, "failed": 1, "patches": 3},
        },
        "approval": {
            "mode": "manual",
            "decision": "Approve",
            "by": "alice",
            "at": stamp(30),
            "timed_out": False,
            "reason": reason,
        },
        "waves": [
            {
                "wave": 1,
                "instances": 1,
                "sent": 1,
                "succeeded": 0 if halted else 1,
                "failed": 1 if halted else 0,
                "threshold": "0",
                "allowed_failures": 0,
                "halted": halted,
                "halt_reason": "halted after wave 1: 1 of 1 failed, more than the 0 allowed by halt_threshold 0"
                if halted
                else "",
                "status": "halted" if halted else "done",
                "started_at": stamp(31),
                "finished_at": stamp(35),
            },
            {"wave": 2, "instances": 1, "threshold": "0", "allowed_failures": 0, **wave_2},
        ],
        "halted_after_wave": 1 if halted else None,
        "rollback": rollback_section(halted),
        "pinned_patches": np.int64(5),
        "settings": {
            "reboot_option": "RebootIfNeeded",
            "canary": "1",
            "wave_percentages": [50, 50],
            "halt_threshold": "0",
            "staging_max_instances": 5,
        },
    }


def install_report(halted: bool = False, reason: str = "health check Failed (exit 1): nginx down") -> dict[str, Any]:
    """The install-mode report of the test fleet: scan verdicts, and the install's outcome where it patched."""
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    for resource_id, (verdict, code, why) in (HALTED_VERDICTS if halted else INSTALL_VERDICTS).items():
        row = verdicts["resource_id"] == resource_id
        verdicts.loc[row, "verdict"] = verdict.value
        verdicts.loc[row, "reason_code"] = code.value
        verdicts.loc[row, "reason"] = why
    return build_report(
        RUN_ID,
        "install",
        fleet.inventory,
        verdicts,
        fleet.plan,
        fleet.compliance,
        [],
        GENERATED_AT,
        install=install_section(halted, reason),
        # as an operator reads them from a frame: numpy ints
        waves_by_resource=cast(dict[str, int], {key: np.int64(wave) for key, wave in WAVES_BY_RESOURCE.items()}),
    )


def test_report_is_valid_json_against_the_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    report = json.loads(json.dumps(sample_report()))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    assert report["generated_at"] == "2026-11-20T03:30:00Z"
    assert report["incomplete"] == MISSING_PARTS


def test_schema_rejects_a_report_without_accounting() -> None:
    report = sample_report()
    del report["accounting"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, REPORT_SCHEMA)


def test_totals_add_up() -> None:
    report = sample_report()
    totals = report["totals"]
    in_scope = totals["resources_in_scope"]
    assert in_scope == len(report["resources"]) == 11
    assert totals["out_of_scope"] == 1
    for name in ("by_verdict", "by_responsibility", "by_compliance_state"):
        assert sum(totals[name].values()) == in_scope, name
    assert sum(sum(states.values()) for states in totals["by_region"].values()) == in_scope
    assert totals["by_responsibility"] == {"aws": 1, "customer": 8, "shared": 2}
    assert totals["by_verdict"]["NON_COMPLIANT"] == 2
    assert totals["by_compliance_state"] == {"COMPLIANT": 2, "NON_COMPLIANT": 3, "NOT_APPLICABLE": 1, "UNKNOWN": 5}
    ec2_count = sum(1 for r in report["resources"] if r["resource_type"] == "ec2")
    assert sum(sum(states.values()) for states in totals["by_os"].values()) == ec2_count
    ec2_patches = [p for r in report["resources"] if r["resource_type"] == "ec2" for p in r["missing_patches"]]
    assert sum(totals["by_severity"].values()) == len(ec2_patches) == 5
    assert totals["by_severity"] == {"Critical": 1, "Important": 2, "Medium": 1, "Unspecified": 1}
    all_cves = sorted({cve for r in report["resources"] for cve in r["cve_ids"]})
    assert totals["cves"] == {"count": 3, "ids": all_cves}
    assert report["accounting"] == {"in_scope": 11, "sum_of_verdicts": 11, "ok": True, "problems": []}


def test_resource_entries_carry_patches_and_patch_state() -> None:
    resources = {r["resource_id"]: r for r in sample_report()["resources"]}
    missing = resources["i-missing"]
    assert [p["patch_id"] for p in missing["missing_patches"]] == [
        "curl-8.1",
        "kernel-6.1.1",
        "openssl-3.0.9",
        "tzdata",
    ]
    assert missing["cve_ids"] == ["CVE-2026-0001", "CVE-2026-0002", "CVE-2026-0003"]
    assert missing["patch_state"]["missing"] == 3 and missing["patch_state"]["baseline_id"] == "pb-web"
    assert resources["i-nodata"]["patch_state"] is None
    assert resources["orders-db"]["missing_patches"][0]["state"] == "PENDING_MAINTENANCE"
    assert resources["i-ok"]["name"] == "web-1" and resources["i-ok"]["environment"] == "production"


def test_report_states_broken_accounting() -> None:
    report = sample_report(drop="i-nodata")
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["accounting"]["ok"] is False
    assert report["accounting"]["sum_of_verdicts"] == 10
    assert "i-nodata" in report["accounting"]["problems"][0]


def test_unknown_mode_is_rejected() -> None:
    fleet = scan_fleet()
    with pytest.raises(ValueError, match="mode"):
        build_report("r", "yolo", fleet.inventory, fleet.inventory, fleet.plan, fleet.compliance, [], GENERATED_AT)


def test_csv_has_one_line_per_resource() -> None:
    report = sample_report(name_of_ok='=HYPERLINK("http://evil")\nsecond line')
    text = report_csv(report)
    lines = text.splitlines()
    assert len(lines) == 1 + len(report["resources"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["resource_id"] for row in rows] == [r["resource_id"] for r in report["resources"]]
    by_id = {row["resource_id"]: row for row in rows}
    assert by_id["i-missing"]["cve_ids"] == "CVE-2026-0001;CVE-2026-0002;CVE-2026-0003"
    assert by_id["i-missing"]["missing_patches"] == "4"
    assert by_id["i-ok"]["name"].startswith("'=HYPERLINK")  # no spreadsheet formula from a tag value


def test_scan_report_has_no_install_section_and_no_waves() -> None:
    report = sample_report()
    assert report["install"] is None
    assert {r["wave"] for r in report["resources"]} == {None}
    fleet = scan_fleet()
    args: tuple[Any, ...] = (
        "r",
        "scan",
        fleet.inventory,
        fleet.inventory,
        fleet.plan,
        fleet.compliance,
        [],
        GENERATED_AT,
    )
    with pytest.raises(ValueError, match="install"):
        build_report(*args, install=install_section())
    with pytest.raises(ValueError, match="waves_by_resource"):
        build_report(*args, waves_by_resource={"i-missing": 1})


@pytest.mark.parametrize("halted", [False, True])
def test_install_report_is_valid_json_against_the_schema(halted: bool) -> None:
    report = install_report(halted)
    # No default=: numpy scalars from the operators' frames must come out as plain JSON numbers and booleans.
    document = json.loads(json.dumps(report))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(document)
    assert document["mode"] == "install"
    expected = json.loads(json.dumps(install_section(halted), default=str))
    expected["staging"]["stacks"][0]["created_at"] = "2026-11-20T03:05:00Z"  # the Timestamp, as ISO 8601 UTC
    expected["staging"]["instances"][0].update(installed=2, passed=True)  # numpy scalars, as JSON numbers
    expected["pinned_patches"] = 5
    assert document["install"] == expected
    assert document["install"]["staging"]["instances"][0]["installed"] == 2
    assert document["install"]["halted_after_wave"] == (1 if halted else None)
    by_id = {r["resource_id"]: r for r in document["resources"]}
    assert by_id["i-missing"]["verdict"] == ("FAILED" if halted else "PATCHED")
    assert document["accounting"]["ok"] is True


def test_install_section_is_a_copy() -> None:
    section = install_section()
    fleet = scan_fleet()
    verdicts = scan_verdicts(fleet.inventory, fleet.compliance, fleet.plan, fleet.scan_failures)
    args: tuple[Any, ...] = (
        RUN_ID,
        "install",
        fleet.inventory,
        verdicts,
        fleet.plan,
        fleet.compliance,
        [],
        GENERATED_AT,
    )
    report = build_report(*args, install=section)
    report["install"]["waves"].clear()
    assert len(section["waves"]) == 2


def test_resources_carry_their_wave() -> None:
    report = install_report()
    waves = {r["resource_id"]: r["wave"] for r in report["resources"]}
    planned = {key: wave for key, wave in WAVES_BY_RESOURCE.items() if wave >= 1}
    assert {key: wave for key, wave in waves.items() if wave is not None} == planned
    assert all(type(wave) is int for wave in waves.values() if wave is not None)  # not numpy: plain JSON
    assert waves["i-ok"] is None  # wave 0: not planned in a wave
    assert waves["orders-db"] is None


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("install", "waves", 0, "status"), "exploded"),
        (("install", "approval", "decision"), "Maybe"),
        (("install", "approval", "mode"), "yolo"),
        (("install", "staging", "stacks", 0, "created"), "yes"),
        (("install", "staging", "instances", 0, "not_installed"), "kernel;curl"),
        (("install", "settings", "wave_percentages"), ["50%"]),
        (("install", "halted_after_wave"), 0),
        (("resources", 0, "wave"), "1"),
    ],
)
def test_schema_rejects_a_malformed_install_section(path: tuple[str | int, ...], bad: Any) -> None:
    report = json.loads(json.dumps(install_report()))
    parent = report
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, REPORT_SCHEMA)


@pytest.mark.parametrize("path", [("install",), ("install", "staging", "summary", "patches"), ("resources", 0, "wave")])
def test_schema_requires_the_install_fields(path: tuple[str | int, ...]) -> None:
    report = json.loads(json.dumps(install_report()))
    parent = report
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, REPORT_SCHEMA)


def test_schema_rejects_unknown_install_fields() -> None:
    report = json.loads(json.dumps(install_report()))
    report["install"]["staging"]["summary"]["failures"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, REPORT_SCHEMA)


def test_csv_has_the_wave_column() -> None:
    report = install_report()
    text = report_csv(report)
    header = text.splitlines()[0].split(",")
    assert header == list(CSV_COLUMNS) and header.index("wave") == header.index("reason") + 1
    rows = {row["resource_id"]: row for row in csv.DictReader(io.StringIO(text))}
    for entry in report["resources"]:
        expected = "" if entry["wave"] is None else str(entry["wave"])
        assert rows[entry["resource_id"]]["wave"] == expected, entry["resource_id"]
    assert rows["i-reboot"]["wave"] == "2" and rows["i-reboot"]["verdict"] == "PATCHED_PENDING_REBOOT"
    assert {row["wave"] for row in csv.DictReader(io.StringIO(report_csv(sample_report())))} == {""}
