"""CycleReportOperator over real stage artifacts: two targets, one whose inventory failed (AccessDenied)."""

from __future__ import annotations

import csv
import io
import json
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.core.report import REPORT_SCHEMA
from patchcycle.operators import cycle_report
from patchcycle.operators.config_compliance import ConfigComplianceOperator
from patchcycle.operators.cycle_outcome import CycleOutcomeOperator
from patchcycle.operators.cycle_report import CycleReportOperator
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from tests.conftest import first_trigger_payload

ACCOUNT = "123456789012"
DAG_ID = "patch_cycle"
RUN_ID = "manual__report"
PARTIAL_RUN_ID = "manual__partial"  # inventory only: the match task never ran
AL2023 = "ami-0a1b2c3d4e5f60001"
TARGETS = [
    {"aws_conn_id": "aws_default", "region_name": "us-east-1"},
    {"aws_conn_id": "aws_default", "region_name": "eu-west-1"},
]
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
                    ]
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

# Every test reads `root`, a scan run of two targets with its Config evaluation (about 4.5 s): not in test-fast.
pytestmark = pytest.mark.slow


def context(run_id: str) -> Any:
    outlets: defaultdict[Any, SimpleNamespace] = defaultdict(SimpleNamespace)
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": run_id, "params": {}, "outlet_events": outlets}


def artifact(root: Path, run_id: str, stage: str, name: str) -> Path:
    return root / DAG_ID / run_id / stage / name


@pytest.fixture(scope="module")
def root(server: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifacts a run leaves when eu-west-1's inventory is refused: its match fails too."""
    path = tmp_path_factory.mktemp("artifacts")
    stage_args = {"artifact_root": f"file://{path}"}
    InventoryOperator(task_id="inventory", region_name="us-east-1", **stage_args).execute(context(RUN_ID))
    with pytest.raises(AirflowFailException, match="ec2:DescribeInstances"):
        InventoryOperator(task_id="inventory", region_name="eu-west-1", **stage_args).execute(context(RUN_ID))
    scan = PatchScanOperator(task_id="match", region_name="us-east-1", poll_seconds=0.2, **stage_args)
    with pytest.raises(TaskDeferred) as deferred:
        scan.execute(context(RUN_ID))
    advance = urllib.request.Request(f"{server.url}/_sandbox/clock/advance", data=b'{"seconds": 60}')
    urllib.request.urlopen(advance, timeout=10).close()
    scan.execute_complete(context(RUN_ID), done_payload(deferred.value.trigger))
    with pytest.raises(AirflowFailException, match="no inventory"):
        PatchScanOperator(task_id="match", region_name="eu-west-1", **stage_args).execute(context(RUN_ID))
    config = ConfigComplianceOperator(task_id="config", region_name="us-east-1", poll_seconds=0.2, **stage_args)
    with pytest.raises(TaskDeferred) as evaluating:
        config.execute(context(RUN_ID))
    config.execute_complete(context(RUN_ID), first_trigger_payload(evaluating.value.trigger))
    InventoryOperator(task_id="inventory", region_name="us-east-1", **stage_args).execute(context(PARTIAL_RUN_ID))
    return path


def done_payload(trigger: Any) -> dict[str, Any]:
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    return payload


def report_operator(root: Path) -> CycleReportOperator:
    return CycleReportOperator(task_id="report", targets=TARGETS, artifact_root=f"file://{root}", mode="scan")


def written(root: Path, run_id: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(artifact(root, run_id, "report", "report.json").read_text())
    return report


def outcome_operator(root: Path) -> CycleOutcomeOperator:
    return CycleOutcomeOperator(task_id="conclude", artifact_root=f"file://{root}")


def test_report_names_the_failed_targets_stage_and_error_and_accounts_for_the_rest(root: Path) -> None:
    # The report is written and published; the run's last task fails: a partial picture must not pass
    # for a successful cycle.
    assert report_operator(root).execute(context(RUN_ID))["ok"] is False
    with pytest.raises(AirflowFailException, match="aws_default/eu-west-1 inventory: AirflowFailException: ec2"):
        outcome_operator(root).execute(context(RUN_ID))

    report = written(root, RUN_ID)
    (problem,) = report["outcome"]["problems"]  # its match never started: the inventory is the missing part
    assert problem.startswith("aws_default/eu-west-1 inventory: AirflowFailException: ec2:DescribeInstances")
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["run_id"] == RUN_ID and report["mode"] == "scan"
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

    rows = list(csv.reader(io.StringIO(artifact(root, RUN_ID, "report", "report.csv").read_text())))
    assert len(rows) == len(report["resources"]) + 1
    html = artifact(root, RUN_ID, "report", "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "eu-west-1" in html


def test_a_match_that_never_ran_is_reported_incomplete_and_its_instances_get_no_data(root: Path) -> None:
    report_operator(root).execute(context(PARTIAL_RUN_ID))
    with pytest.raises(AirflowFailException, match="us-east-1 match: the task did not finish"):
        outcome_operator(root).execute(context(PARTIAL_RUN_ID))
    report = written(root, PARTIAL_RUN_ID)
    incomplete = {(part["region"], part["stage"]): part["error"] for part in report["incomplete"]}
    # Neither task of this run left an error record.
    assert incomplete == {
        ("us-east-1", "match"): "the task did not finish",
        ("us-east-1", "config"): "the task did not finish",  # its inventory was read: Config had to be too
        ("eu-west-1", "inventory"): "the task did not finish",
    }
    assert report["accounting"]["ok"]
    verdicts = Counter(r["verdict"] for r in report["resources"] if r["resource_type"] == "ec2")
    assert verdicts == {"NO_DATA": 3, "SKIPPED_UNMANAGED": 1}


def test_a_complete_run_returns_the_report_uris_and_updates_the_asset(root: Path) -> None:
    only_us = CycleReportOperator(task_id="report", targets=TARGETS[:1], artifact_root=f"file://{root}", mode="scan")
    ctx = context(RUN_ID)
    result = only_us.execute(ctx)
    assert result["incomplete"] == 0 and result["in_scope"] == 6 and result["ok"] is True
    extra = ctx["outlet_events"][PATCH_CYCLE_REPORT].extra
    assert (extra["report"], extra["run_id"], extra["mode"]) == (result["report"]["json"], RUN_ID, "scan")
    assert outcome_operator(root).execute(ctx)["ok"] is True
    report = written(root, RUN_ID)
    assert report["outcome"] == {"ok": True, "problems": []} and report["inspection"] is None
    managed = [r["resource_id"] for r in report["resources"] if r["verdict"] == "NON_COMPLIANT"]
    assert {row["resource_id"]: row["compliance"] for row in report["config"]["resources"]} == dict.fromkeys(
        managed, "NON_COMPLIANT"
    )
    for kind, uri in result["report"].items():
        assert uri.endswith(f"/{DAG_ID}/{RUN_ID}/report/report.{kind}")
        assert Path(uri.removeprefix("file://")).exists()


def test_no_targets_fails_without_a_report(root: Path) -> None:
    with pytest.raises(AirflowFailException, match="validate_params failed"):
        CycleReportOperator(task_id="report", targets=None, artifact_root=f"file://{root}").execute(context(RUN_ID))


def test_an_accounting_mismatch_fails_the_report(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = cycle_report.scan_verdicts

    def losing_one(*args: Any, **kwargs: Any) -> pd.DataFrame:
        verdicts: pd.DataFrame = real(*args, **kwargs)
        return verdicts.iloc[1:]

    monkeypatch.setattr(cycle_report, "scan_verdicts", losing_one)
    with pytest.raises(AirflowFailException, match="report accounting does not add up"):
        report_operator(root).execute(context(RUN_ID))
    report = written(root, RUN_ID)  # still written: the evidence of what went wrong
    assert report["accounting"]["ok"] is False
    assert report["accounting"]["sum_of_verdicts"] == report["accounting"]["in_scope"] - 1
    assert "without a verdict" in report["accounting"]["problems"][0]
