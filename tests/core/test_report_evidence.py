"""The report's evidence sections: inspection, Config, and whether the cycle ran its course."""

from __future__ import annotations

from typing import Any

import jsonschema
import pandas as pd

from patchcycle.core.report_evidence import (
    CONFIG_SCHEMA,
    INSPECTION_SCHEMA,
    OUTCOME_SCHEMA,
    config_section,
    inspection_section,
    outcome_section,
)


def cve(resource_id: str, cve_id: str, status: str) -> dict[str, str]:
    return {"account_id": "1", "region": "r", "resource_id": resource_id, "cve_id": cve_id, "status": status}


def install(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "staging": {"passed": True},
        "approval": {"decision": "Approve", "reason": "auto: staging passed"},
        "waves": [{"wave": 1, "status": "done"}, {"wave": 2, "status": "done"}],
        "halted_after_wave": None,
    }
    return {**section, **overrides}


def test_inspection_rows_are_sorted_strings_and_counted_by_status() -> None:
    cves = pd.DataFrame(
        [cve("i-2", "CVE-B", "STILL_ACTIVE"), cve("i-1", "CVE-B", "REMEDIATED"), cve("i-1", "CVE-A", "REMEDIATED")]
    )
    residual = pd.DataFrame([{**cve("i-1", "CVE-Z", "ACTIVE"), "severity": "CRITICAL", "first_observed_at": None}])
    section = inspection_section(cves, residual)
    jsonschema.validate(section, INSPECTION_SCHEMA)
    assert [(row["resource_id"], row["cve_id"]) for row in section["cves"]] == [
        ("i-1", "CVE-A"),
        ("i-1", "CVE-B"),
        ("i-2", "CVE-B"),
    ]
    assert section["by_status"] == {"REMEDIATED": 2, "STILL_ACTIVE": 1}
    assert section["residual_by_severity"] == {"CRITICAL": 1}
    assert section["residual"][0]["first_observed_at"] == ""  # a null is empty text, not "None"


def test_no_inspect_tables_give_an_empty_section() -> None:
    assert inspection_section(None, None) == {"cves": [], "residual": [], "by_status": {}, "residual_by_severity": {}}


def test_config_section_counts_compliance_and_keeps_the_rule_summaries() -> None:
    rows = pd.DataFrame(
        [
            {"account_id": "1", "region": "r", "resource_id": "i-2", "compliance": "NON_COMPLIANT"},
            {"account_id": "1", "region": "r", "resource_id": "i-1", "compliance": "COMPLIANT"},
        ]
    )
    section = config_section(rows, [{"region": "r", "rule_name": "patchcycle-rule"}])
    jsonschema.validate(section, CONFIG_SCHEMA)
    assert [row["resource_id"] for row in section["resources"]] == ["i-1", "i-2"]
    assert section["by_compliance"] == {"COMPLIANT": 1, "NON_COMPLIANT": 1}
    assert section["targets"] == [{"region": "r", "rule_name": "patchcycle-rule"}]


def test_outcome_lists_every_reason_the_cycle_did_not_run_its_course() -> None:
    assert outcome_section(install(), []) == {"ok": True, "problems": []}
    assert outcome_section(None, []) == {"ok": True, "problems": []}  # scan mode
    rejected = install(approval={"decision": "Reject", "reason": "rejected by ops"})
    rejected["waves"] = [{"wave": 1, "status": "not_run"}]
    assert outcome_section(rejected, [])["ok"]  # a rejection is a valid end
    halted = outcome_section(
        install(halted_after_wave=1), [{"aws_conn_id": "a", "region": "r", "stage": "inspect", "error": "boom"}]
    )
    jsonschema.validate(halted, OUTCOME_SCHEMA)
    assert halted["problems"] == ["the install did not finish: the rollout halted after wave 1", "a/r inspect: boom"]
    alarm = install(halted_after_wave=2)
    alarm["waves"] = [
        {"wave": 1, "status": "done", "halt_reason": ""},
        {"wave": 2, "status": "halted", "halt_reason": "halted before wave 2: health alarm(s) in ALARM: web-5xx"},
    ]
    assert outcome_section(alarm, [])["problems"] == [
        "the install did not finish: the rollout halted before wave 2: health alarm(s) in ALARM: web-5xx"
    ]
    staging = outcome_section(
        install(staging={"passed": False}, approval={"decision": "", "reason": "staging failed on i-9"}), []
    )
    assert staging["problems"] == ["production was not patched: staging did not pass (staging failed on i-9)"]
    undecided = outcome_section(install(approval={"decision": "", "reason": "timed out"}), [])
    assert undecided["problems"] == ["the install did not finish: the approval gate did not decide (timed out)"]
    partial = install(waves=[{"wave": 1, "status": "done"}, {"wave": 2, "status": "not_run"}])
    assert outcome_section(partial, [])["problems"] == ["the install did not finish: wave(s) 2 did not run"]
    assert outcome_section(install(waves=[]), [])["ok"]  # nothing needed patching


def rds_db(name: str, wave: int, outcome: str, detail: str = "") -> dict[str, Any]:
    return {"resource_id": name, "wave": wave, "outcome": outcome, "detail": detail}


def test_a_halted_or_unfinished_rds_rollout_is_a_problem_and_its_failures_within_the_threshold_are_not() -> None:
    halted = install(
        rds={
            "databases": [
                rds_db("replica", 1, "failed", "Storage full."),
                rds_db("main", 2, "halted", "RDS wave 1 had 1 failure(s), more than the 0 allowed"),
                rds_db("other", 3, "halted", "RDS wave 1 had 1 failure(s), more than the 0 allowed"),
            ]
        }
    )
    assert outcome_section(halted, [])["problems"] == [
        "the RDS rollout did not finish: it halted at RDS wave 2 (RDS wave 1 had 1 failure(s), more than the 0 allowed)"
    ]
    cut = install(rds={"databases": [rds_db("a", 1, "applied"), rds_db("b", 2, "not_run"), rds_db("c", 2, "not_run")]})
    assert outcome_section(cut, [])["problems"] == [
        "the RDS rollout did not finish: it did not reach 2 database(s): b, c"
    ]
    failed = install(rds={"databases": [rds_db("a", 1, "failed", "Storage full."), rds_db("b", 2, "applied")]})
    assert outcome_section(failed, [])["ok"]  # within the threshold: the verdicts tell it
    rejected = install(
        approval={"decision": "Reject", "reason": "rejected by ops"}, rds={"databases": [rds_db("a", 1, "rejected")]}
    )
    rejected["waves"] = [{"wave": 1, "status": "not_run"}]
    assert outcome_section(rejected, [])["ok"]
