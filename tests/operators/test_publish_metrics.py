"""PublishMetricsOperator end to end on the sandbox: a written report.json, three targets in two accounts."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.core.cloudwatch_metrics import NAMESPACE
from patchcycle.hooks.cloudwatch_metrics import CloudWatchMetricsHook
from patchcycle.operators.publish_metrics import PublishMetricsOperator
from tests.conftest import sandbox_calls
from tests.core.test_kpis import install_report

DAG_ID, RUN_ID = "patch_cycle", "manual__metrics"
ACCOUNT, OTHER_ACCOUNT = "123456789012", "210987654321"
EAST, WEST, OREGON = "us-east-1", "eu-west-1", "us-west-2"  # the report's resources are in EAST and WEST
TARGETS = [
    {"aws_conn_id": "aws_default", "region_name": EAST},
    {"aws_conn_id": "aws_default", "region_name": WEST},
    {"aws_conn_id": "aws_other", "region_name": OREGON},
]
ACCOUNT_OF = {"aws_default": ACCOUNT, "aws_other": OTHER_ACCOUNT}
SCENARIO = {
    "name": "metrics",
    "accounts": [
        {"id": ACCOUNT, "regions": {EAST: {}, WEST: {}}},
        {"id": OTHER_ACCOUNT, "regions": {OREGON: {}}},
    ],
}
DASHBOARD = "patchcycle-kpis"
SANDBOX_MAX_ATTEMPTS = 2
# The other account's connection assumes a role there (its STS client is pointed at the sandbox: tests/conftest.py).
SANDBOX_CONNECTIONS = {"aws_other": {"role_arn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/patchcycle"}}


def write_run(root: Path, report: dict[str, Any]) -> None:
    """The artifacts the publish task reads: report.json and each target's inventory summary."""
    run = root / DAG_ID / RUN_ID
    (run / "report").mkdir(parents=True)
    (run / "report" / "report.json").write_text(json.dumps(report))
    (run / "inventory").mkdir()
    for target in TARGETS:
        key = f"{target['aws_conn_id']}.{target['region_name']}"
        summary = {**target, "account_id": ACCOUNT_OF[target["aws_conn_id"]]}
        (run / "inventory" / f"{key}.summary.json").write_text(json.dumps(summary))


def fresh_report(**changes: Any) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return install_report() | {"generated_at": stamp} | changes


def publish(root: Path, target: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    operator = PublishMetricsOperator(
        task_id="publish_metrics",
        targets=TARGETS,
        dashboard_name=kwargs.pop("dashboard_name", DASHBOARD),
        artifact_root=f"file://{root}",
        **target,
        **kwargs,
    )
    result: dict[str, Any] = operator.execute(context())
    return result


def context() -> Any:
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": RUN_ID}


def cloudwatch(target: dict[str, str]) -> Any:
    return CloudWatchMetricsHook(aws_conn_id=target["aws_conn_id"], region_name=target["region_name"]).conn


def metrics(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every metric of the namespace in the client's region -> its latest Maximum."""
    found = {}
    now = dt.datetime.now(dt.UTC)
    for page in client.get_paginator("list_metrics").paginate(Namespace=NAMESPACE):
        for metric in page["Metrics"]:
            points = client.get_metric_statistics(
                Namespace=NAMESPACE,
                MetricName=metric["MetricName"],
                Dimensions=metric["Dimensions"],
                StartTime=now - dt.timedelta(hours=1),
                EndTime=now + dt.timedelta(hours=1),
                Period=60,
                Statistics=["Maximum"],
            )["Datapoints"]
            dimensions = tuple(sorted((d["Name"], d["Value"]) for d in metric["Dimensions"]))
            found[(metric["MetricName"], dimensions)] = max(p["Maximum"] for p in points)
    return found


def record(root: Path, target: dict[str, str]) -> dict[str, Any]:
    path = root / DAG_ID / RUN_ID / "metrics" / f"{target['aws_conn_id']}.{target['region_name']}.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def dashboard_lines(client: Any) -> list[list[Any]]:
    body = json.loads(client.get_dashboard(DashboardName=DASHBOARD)["DashboardBody"])
    return [line for widget in body["widgets"] for line in widget["properties"].get("metrics", [])]


@pytest.mark.slow  # three targets in two accounts (an AssumeRole), every KPI read back: about 4 s
def test_each_target_publishes_its_kpis_and_the_first_the_fleets(fresh_server: Any, tmp_path: Path) -> None:
    report = fresh_report()
    write_run(tmp_path, report)
    results = [publish(tmp_path, target) for target in TARGETS]
    assert [r["fleet"] for r in results] == [True, False, False]
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == sum(r["calls"] for r in results)
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutDashboard") == len(TARGETS)

    in_region = {region: sum(1 for r in report["resources"] if r["region"] == region) for region in (EAST, WEST)}
    for target, result in zip(TARGETS, results, strict=True):
        account, region = ACCOUNT_OF[target["aws_conn_id"]], target["region_name"]
        found = metrics(cloudwatch(target))
        own = (("AccountId", account), ("Region", region))
        # Only this target's dimension sets (with FailureReason for Failures), and the fleet's from the first.
        places = {tuple(pair for pair in dims if pair[0] != "FailureReason") for _, dims in found}
        assert places == ({(), own} if result["fleet"] else {own})
        assert found[("InScope", own)] == in_region.get(region, 0)
        written = record(tmp_path, target)
        assert written["metric_count"] == result["metrics"] == len(found)  # one datum per metric here
        assert written["account_id"] == account and written["target_metrics"] is True
    fleet = {name: value for (name, dims), value in metrics(cloudwatch(TARGETS[0])).items() if not dims}
    assert fleet["InScope"] == report["totals"]["resources_in_scope"]
    patched = sum(1 for r in report["resources"] if r["verdict"].startswith("PATCHED"))
    failed = sum(1 for r in report["resources"] if r["verdict"] == "FAILED")
    assert fleet["Patched"] == patched and fleet["Failed"] == failed
    assert fleet["SuccessRate"] == pytest.approx(100 * patched / (patched + failed))
    assert fleet["IncompleteParts"] == 0

    # The dashboards: one per account, its own targets' lines, and the fleet's where the fleet is published.
    first_account = dashboard_lines(cloudwatch(TARGETS[0]))
    regions = {line[line.index("Region") + 1] for line in first_account if "Region" in line}
    assert regions == {EAST, WEST}
    assert any(len(line) == 3 and line[-1]["region"] == EAST for line in first_account)  # fleet: no dimensions
    other_account = dashboard_lines(cloudwatch(TARGETS[2]))
    assert {line[line.index("AccountId") + 1] for line in other_account if "AccountId" in line} == {OTHER_ACCOUNT}
    assert all("AccountId" in line for line in other_account)  # no fleet line: those metrics live elsewhere
    assert record(tmp_path, TARGETS[2])["dashboard_targets"] == [{"account_id": OTHER_ACCOUNT, "region": OREGON}]


def test_an_incomplete_target_publishes_no_numbers_of_its_own(fresh_server: Any, tmp_path: Path) -> None:
    missing = {"aws_conn_id": "aws_default", "region": WEST, "stage": "match", "error": "AccessDenied"}
    write_run(tmp_path, fresh_report(incomplete=[missing]))
    result = publish(tmp_path, TARGETS[1], dashboard_name="")
    assert result["metrics"] == result["calls"] == 0
    assert record(tmp_path, TARGETS[1])["incomplete_stages"] == ["match"]
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutDashboard") == 0  # dashboard_name "": metrics only
    publish(tmp_path, TARGETS[0])
    fleet = {name: value for (name, dims), value in metrics(cloudwatch(TARGETS[0])).items() if not dims}
    assert fleet["IncompleteParts"] == 1


@pytest.mark.parametrize(
    ("report_changes", "kwargs", "message"),
    [
        (None, {}, "no report"),
        ({"generated_at": "2026-01-01T00:00:00Z"}, {}, "no longer be published"),
        ({}, {"dashboard_name": "ops dashboard"}, "dashboard name"),
        ({}, {"dashboard_name": "ops"}, "IAM policy"),
    ],
)
def test_refusals_are_recorded(
    fresh_server: Any, tmp_path: Path, report_changes: dict[str, Any] | None, kwargs: dict[str, Any], message: str
) -> None:
    if report_changes is not None:
        write_run(tmp_path, fresh_report(**report_changes))
    with pytest.raises(AirflowFailException, match=message):
        publish(tmp_path, TARGETS[0], **kwargs)
    error = json.loads((tmp_path / DAG_ID / RUN_ID / "errors" / "metrics.aws_default.us-east-1.json").read_text())
    assert message in error["error"]
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == 0


def test_a_target_outside_the_run_is_refused(fresh_server: Any, tmp_path: Path) -> None:
    write_run(tmp_path, fresh_report())
    with pytest.raises(AirflowFailException, match="not one of the run's targets"):
        publish(tmp_path, {"aws_conn_id": "aws_default", "region_name": "ap-south-1"})
