"""CycleReportOperator over real stage artifacts: two targets, one whose inventory failed (AccessDenied)."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import jsonschema
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.sandbox.server import SandboxServer
from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import Target
from patchcycle.core.report import REPORT_SCHEMA
from patchcycle.core.verdicts import REASON_CODES, ReasonCode
from patchcycle.operators import cycle_report
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.cycle_outcome import CycleOutcomeOperator
from patchcycle.operators.cycle_report import CycleReportOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.run_artifacts import (
    CONFIG_COMPLIANCE,
    CONFIG_SUMMARY,
    INVENTORY,
    INVENTORY_SUMMARY,
    MATCH_COMPLIANCE,
    MATCH_PLAN,
    NEW_INSTANCES_CSV,
    RDS_PLAN,
    REPORT_CSV,
    REPORT_HTML,
    REPORT_JSON,
    SCAN_COMMANDS,
    SCAN_FAILURES,
    TARGET_ERROR,
    RunArtifacts,
    Step,
)
from tests.conftest import advance_clock, first_trigger_payload
from tests.operators.install_helpers import BUCKET, cycle_config, deferral, run_artifacts, s3_root
from tests.operators.install_helpers import context as task_context

ACCOUNT = "123456789012"
BASE_RUN = "manual__report"  # both targets' tasks, as the module's fixture leaves them
AL2023 = "ami-0a1b2c3d4e5f60001"
EAST, WEST = Target("aws_default", "us-east-1"), Target("aws_default", "eu-west-1")
ROOT = s3_root("cycle-report")
INVENTORIED = (INVENTORY, RDS_PLAN, INVENTORY_SUMMARY)
SCANNED = (*INVENTORIED, SCAN_COMMANDS, MATCH_PLAN, MATCH_COMPLIANCE, SCAN_FAILURES, CONFIG_COMPLIANCE, CONFIG_SUMMARY)
SCENARIO: dict[str, Any] = {
    "name": "report",
    "seed": 11,
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1.0},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                "us-east-1": {
                    "instance_groups": [
                        {
                            "name": "web",
                            "count": 3,
                            "ami": AL2023,
                            "tags": {"PatchGroup": "web", "Environment": "production"},
                            "patched_through": "2026-09-30",
                        },
                        {"name": "legacy", "count": 1, "ami": AL2023, "agent": "unmanaged"},
                    ],
                    "rds_instances": [
                        {
                            "id": "orders-db",
                            "engine": "postgres",
                            "engine_version": "16.3",
                            "pending_maintenance": [{"action": "system-update", "description": "OS update"}],
                        }
                    ],
                    "s3_buckets": [{"name": "reports-123456789012"}],
                },
                "eu-west-1": {
                    "instance_groups": [
                        {"name": "app", "count": 2, "ami": AL2023, "tags": {"PatchGroup": "web"}},
                    ],
                    # The artifact store; its region's inventory is refused, so it is in no report.
                    "s3_buckets": [{"name": BUCKET}],
                },
            },
        }
    ],
    "baselines": [
        {
            "name": "web-al2023",
            "os": "AMAZON_LINUX_2023",
            "patch_groups": ["web"],
            "approval_rules": [{"classification": ["Security"], "approve_after_days": 0}],
        }
    ],
    "faults": {"ec2:DescribeInstances": {"access_denied": True, "regions": ["eu-west-1"]}},
    "config": {"evaluation_seconds": 0.2},
    "commands": {"delivery_seconds": 1, "scan_seconds": 5},
}

# Every test reads `base`, a scan run of two targets with its Config evaluation (about 4.5 s): not in test-fast.
pytestmark = pytest.mark.slow


def config(targets: tuple[Target, ...] = (EAST, WEST)) -> dict[str, Any]:
    """A scan run's validated config over these targets (quick polls)."""
    return cycle_config(ROOT, regions=[t.region_name for t in targets], mode="scan", poll_seconds=0.2)


def context(run_id: str) -> Any:
    return task_context(run_id, outlet_events=defaultdict(SimpleNamespace))


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> RunArtifacts:
    """The artifacts a run leaves when eu-west-1's inventory is refused: its match fails too."""
    run = config()
    InventoryOperator(task_id="inventory", config=run, **EAST.as_kwargs()).execute(context(BASE_RUN))
    with pytest.raises(AirflowFailException, match="ec2:DescribeInstances"):
        InventoryOperator(task_id="inventory", config=run, **WEST.as_kwargs()).execute(context(BASE_RUN))
    scan = PatchScanOperator(task_id="match", config=run, **EAST.as_kwargs())
    trigger = deferral(scan, context(BASE_RUN)).trigger
    advance_clock(server.url, 60)
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    scan.execute_complete(context(BASE_RUN), payload)
    with pytest.raises(AirflowFailException, match=r"is missing: the task that writes it \(inventory\)"):
        PatchScanOperator(task_id="match", config=run, **WEST.as_kwargs()).execute(context(BASE_RUN))
    evaluate = ConfigComplianceOperator(task_id="config", config=run, **EAST.as_kwargs())
    evaluate.execute_complete(context(BASE_RUN), first_trigger_payload(deferral(evaluate, context(BASE_RUN)).trigger))
    return run_artifacts(run, BASE_RUN)


def scan_run(base: RunArtifacts, run_id: str) -> RunArtifacts:
    """A run whose tasks left what BASE_RUN's did, error records included; its artifacts."""
    artifacts = run_artifacts(config(), run_id)
    for target in (EAST, WEST):
        for artifact in SCANNED:
            found = base.find(artifact, target=target)
            if found is not None:
                artifacts.write(artifact, found, target=target)
        for step in (Step.INVENTORY, Step.MATCH, Step.CONFIG):
            error = base.find(TARGET_ERROR, step=step, target=target)
            if error is not None:
                artifacts.write(TARGET_ERROR, error, step=step, target=target)
    return artifacts


def report_operator(targets: tuple[Target, ...] = (EAST, WEST)) -> CycleReportOperator:
    return CycleReportOperator(task_id="report", config=config(targets))


def outcome_operator() -> CycleOutcomeOperator:
    return CycleOutcomeOperator(task_id="conclude", config=config())


def test_report_names_the_failed_targets_stage_and_error_and_accounts_for_the_rest(base: RunArtifacts) -> None:
    run_id = "manual__failed_target"
    artifacts = scan_run(base, run_id)
    # The report is written and published; the run's last task fails: a partial picture must not pass
    # for a successful cycle.
    assert report_operator().execute(context(run_id))["ok"] is False
    with pytest.raises(AirflowFailException, match="aws_default/eu-west-1 inventory: AirflowFailException: ec2"):
        outcome_operator().execute(context(run_id))

    report = artifacts.read(REPORT_JSON)
    (problem,) = report["outcome"]["problems"]  # its match never started: the inventory is the missing part
    assert problem.startswith("aws_default/eu-west-1 inventory: AirflowFailException: ec2:DescribeInstances")
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["run_id"] == run_id and report["mode"] == "scan"
    (missing,) = report["incomplete"]
    assert (missing["aws_conn_id"], missing["region"], missing["stage"]) == ("aws_default", "eu-west-1", "inventory")
    assert missing["error"].startswith(
        f"AirflowFailException: ec2:DescribeInstances failed in account {ACCOUNT}, region eu-west-1: "
        "UnauthorizedOperation"
    )
    assert report["accounting"] == {"in_scope": 6, "sum_of_verdicts": 6, "ok": True, "problems": []}
    assert {r["region"] for r in report["resources"]} == {"us-east-1"}
    verdicts = Counter((r["resource_type"], r["verdict"]) for r in report["resources"])
    assert verdicts == {
        ("ec2", "NON_COMPLIANT"): 3,
        ("ec2", "SKIPPED_UNMANAGED"): 1,
        ("rds", "MAINTENANCE_PENDING"): 1,
        ("s3", "AWS_MANAGED"): 1,
    }
    assert all(r["missing_patches"] for r in report["resources"] if r["verdict"] == "NON_COMPLIANT")

    rows = list(csv.reader(io.StringIO(artifacts.read(REPORT_CSV))))
    assert len(rows) == len(report["resources"]) + 1
    html = artifacts.read(REPORT_HTML)
    assert html.startswith("<!DOCTYPE html>") and "eu-west-1" in html


def test_each_resource_carries_the_reason_code_of_its_verdict(base: RunArtifacts) -> None:
    run_id = "manual__reason_codes"
    artifacts = scan_run(base, run_id)
    report_operator().execute(context(run_id))

    report = artifacts.read(REPORT_JSON)
    codes = Counter((r["resource_type"], r["verdict"], r["reason_code"]) for r in report["resources"])
    assert codes == {
        ("ec2", "NON_COMPLIANT", ReasonCode.PATCHES_OUTSTANDING): 3,
        ("ec2", "SKIPPED_UNMANAGED", ReasonCode.UNMANAGED): 1,
        ("rds", "MAINTENANCE_PENDING", ReasonCode.MAINTENANCE_PENDING): 1,
        ("s3", "AWS_MANAGED", ReasonCode.AWS_MANAGED): 1,
    }
    for resource in report["resources"]:  # each code is one core.verdicts gives that verdict
        assert REASON_CODES[ReasonCode(resource["reason_code"])][0] == resource["verdict"], resource
    rows = csv.DictReader(io.StringIO(artifacts.read(REPORT_CSV)))
    assert {(row["resource_id"], row["reason_code"]) for row in rows} == {
        (r["resource_id"], r["reason_code"]) for r in report["resources"]
    }


def test_a_match_that_never_ran_is_reported_incomplete_and_its_instances_get_no_data(base: RunArtifacts) -> None:
    run_id = "manual__partial"  # us-east-1's inventory only: the match task never ran
    artifacts = run_artifacts(config(), run_id)
    for artifact in INVENTORIED:
        artifacts.write(artifact, base.read(artifact, target=EAST), target=EAST)

    report_operator().execute(context(run_id))
    with pytest.raises(AirflowFailException, match="us-east-1 match: the task did not finish"):
        outcome_operator().execute(context(run_id))
    report = artifacts.read(REPORT_JSON)
    incomplete = {(part["region"], part["stage"]): part["error"] for part in report["incomplete"]}
    # Neither task of this run left an error record.
    assert incomplete == {
        ("us-east-1", "match"): "the task did not finish",
        ("us-east-1", "config"): "the task did not finish",  # its inventory was read: Config had to be too
        ("eu-west-1", "inventory"): "the task did not finish",
    }
    assert report["accounting"]["ok"]
    verdicts = Counter((r["verdict"], r["reason_code"]) for r in report["resources"] if r["resource_type"] == "ec2")
    assert verdicts == {("NO_DATA", ReasonCode.NO_PATCH_STATE): 3, ("SKIPPED_UNMANAGED", ReasonCode.UNMANAGED): 1}


def test_a_complete_run_returns_the_report_uris_and_updates_the_asset(base: RunArtifacts) -> None:
    run_id = "manual__complete"
    artifacts = scan_run(base, run_id)
    ctx = context(run_id)
    result = report_operator(targets=(EAST,)).execute(ctx)
    assert result["incomplete"] == 0 and result["in_scope"] == 6 and result["ok"] is True
    extra = ctx["outlet_events"][PATCH_CYCLE_REPORT].extra
    assert (extra["report"], extra["run_id"], extra["mode"]) == (result["report"]["json"], run_id, "scan")
    assert (extra["artifact_root"], extra["artifact_conn_id"]) == (ROOT, "aws_default")
    assert outcome_operator().execute(ctx)["ok"] is True
    report = artifacts.read(REPORT_JSON)
    assert report["outcome"] == {"ok": True, "problems": []} and report["inspection"] is None
    managed = [r["resource_id"] for r in report["resources"] if r["verdict"] == "NON_COMPLIANT"]
    assert {row["resource_id"]: row["compliance"] for row in report["config"]["resources"]} == dict.fromkeys(
        managed, "NON_COMPLIANT"
    )
    written = {"json": REPORT_JSON, "csv": REPORT_CSV, "new_instances_csv": NEW_INSTANCES_CSV, "html": REPORT_HTML}
    assert result["report"] == {kind: artifacts.uri(artifact) for kind, artifact in written.items()}
    assert all(artifacts.exists(artifact) for artifact in written.values())


def test_no_run_settings_fails_without_a_report(base: RunArtifacts) -> None:
    run_id = "manual__no_settings"
    scan_run(base, run_id)
    with pytest.raises(
        AirflowFailException, match=r"^report: no run settings \(validate_params did not run or failed\)"
    ):
        CycleReportOperator(task_id="report", config=None).execute(context(run_id))
    assert not run_artifacts(config(), run_id).exists(REPORT_JSON)


def test_an_accounting_mismatch_fails_the_report(base: RunArtifacts, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = "manual__accounting"
    artifacts = scan_run(base, run_id)
    real = cycle_report.scan_verdicts

    def losing_one(*args: Any, **kwargs: Any) -> pd.DataFrame:
        verdicts: pd.DataFrame = real(*args, **kwargs)
        return verdicts.iloc[1:]

    monkeypatch.setattr(cycle_report, "scan_verdicts", losing_one)
    with pytest.raises(AirflowFailException, match="report accounting does not add up"):
        report_operator().execute(context(run_id))
    report = artifacts.read(REPORT_JSON)  # still written: the evidence of what went wrong
    assert report["accounting"]["ok"] is False
    assert report["accounting"]["sum_of_verdicts"] == report["accounting"]["in_scope"] - 1
    assert "without a verdict" in report["accounting"]["problems"][0]
