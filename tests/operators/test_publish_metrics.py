"""PublishMetricsOperator end to end on the sandbox: a written report, three targets in two accounts."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import Target, dump_targets
from patchcycle.core.cloudwatch_metrics import NAMESPACE
from patchcycle.hooks.cloudwatch_metrics import CloudWatchMetricsHook
from patchcycle.links.cloudwatch import CloudWatchDashboardLink
from patchcycle.operators.publish_metrics import PublishMetricsOperator
from patchcycle.run_artifacts import INVENTORY_SUMMARY, PUBLISHED_METRICS, REPORT_JSON, TARGET_ERROR, Step
from patchcycle.run_records import InventorySummary, PublishedMetrics
from tests.conftest import sandbox_calls
from tests.core.test_kpis import install_report
from tests.operators.install_helpers import (
    BUCKET,
    LinkTi,
    context,
    cycle_config,
    linked_context,
    run_artifacts,
    s3_root,
)

RUN_ID = "manual__metrics"
ACCOUNT, OTHER_ACCOUNT = "123456789012", "210987654321"
EAST, WEST, OREGON = "us-east-1", "eu-west-1", "us-west-2"  # the report's resources are in EAST and WEST
TARGETS = [Target("aws_default", EAST), Target("aws_default", WEST), Target("aws_other", OREGON)]
ACCOUNT_OF = {"aws_default": ACCOUNT, "aws_other": OTHER_ACCOUNT}
SCENARIO = {
    "name": "metrics",
    "accounts": [
        # The run's artifacts are kept in the first account's bucket (install mode: an s3:// root).
        {"id": ACCOUNT, "regions": {EAST: {"s3_buckets": [{"name": BUCKET}]}, WEST: {}}},
        {"id": OTHER_ACCOUNT, "regions": {OREGON: {}}},
    ],
}
DASHBOARD = "patchcycle-kpis"
SANDBOX_MAX_ATTEMPTS = 2
# The other account's connection assumes a role there (its STS client is pointed at the sandbox: tests/conftest.py).
SANDBOX_CONNECTIONS = {"aws_other": {"role_arn": f"arn:aws:iam::{OTHER_ACCOUNT}:role/patchcycle"}}


def config(**overrides: Any) -> dict[str, Any]:
    """The run's validated config: install mode over TARGETS, the DASHBOARD dashboard."""
    settings = {"targets": dump_targets(tuple(TARGETS)), "dashboard_name": DASHBOARD, **overrides}
    return cycle_config(s3_root("publish-metrics"), **settings)


def write_run(report: dict[str, Any]) -> None:
    """The artifacts the publish task reads: the report and each target's inventory summary."""
    artifacts = run_artifacts(config(), RUN_ID)
    artifacts.write(REPORT_JSON, report)
    for target in TARGETS:
        summary = InventorySummary(
            **target.as_kwargs(),
            account_id=ACCOUNT_OF[target.aws_conn_id],
            resources=0,
            in_scope=0,
            by_type={},
            patchable_in_scope=0,
        )
        artifacts.write(INVENTORY_SUMMARY, summary, target=target)


def fresh_report(**changes: Any) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return install_report() | {"generated_at": stamp} | changes


def publish(target: Target, run_config: dict[str, Any] | None = None, ti: LinkTi | None = None) -> dict[str, Any]:
    operator = PublishMetricsOperator(task_id="publish_metrics", config=run_config or config(), **target.as_kwargs())
    result: dict[str, Any] = operator.execute(linked_context(RUN_ID, ti) if ti else context(RUN_ID))
    return result


def cloudwatch(target: Target) -> Any:
    return CloudWatchMetricsHook(**target.as_kwargs()).conn


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


def record(target: Target) -> PublishedMetrics:
    return run_artifacts(config(), RUN_ID).read(PUBLISHED_METRICS, target=target)


def dashboard_lines(client: Any) -> list[list[Any]]:
    body = json.loads(client.get_dashboard(DashboardName=DASHBOARD)["DashboardBody"])
    return [line for widget in body["widgets"] for line in widget["properties"].get("metrics", [])]


@pytest.mark.slow  # three targets in two accounts (an AssumeRole), every KPI read back: about 4 s
def test_each_target_publishes_its_kpis_and_the_first_the_fleets(fresh_server: Any) -> None:
    report = fresh_report()
    write_run(report)
    tis = [LinkTi() for _ in TARGETS]
    results = [publish(target, ti=ti) for target, ti in zip(TARGETS, tis, strict=True)]
    assert [r["fleet"] for r in results] == [True, False, False]
    # Each mapped task instance links to the dashboard it put, in its own region.
    assert [ti.url(CloudWatchDashboardLink()) for ti in tis] == [
        f"https://console.aws.amazon.com/cloudwatch/home?region={target.region_name}#dashboards:name={DASHBOARD}"
        for target in TARGETS
    ]
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == sum(r["calls"] for r in results)
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutDashboard") == len(TARGETS)

    in_region = {region: sum(1 for r in report["resources"] if r["region"] == region) for region in (EAST, WEST)}
    for target, result in zip(TARGETS, results, strict=True):
        account, region = ACCOUNT_OF[target.aws_conn_id], target.region_name
        found = metrics(cloudwatch(target))
        own = (("AccountId", account), ("Region", region))
        # Only this target's dimension sets (with FailureReason for Failures), and the fleet's from the first.
        places = {tuple(pair for pair in dims if pair[0] != "FailureReason") for _, dims in found}
        assert places == ({(), own} if result["fleet"] else {own})
        assert found[("InScope", own)] == in_region.get(region, 0)
        written = record(target)
        assert written.metric_count == result["metrics"] == len(found)  # one datum per metric here
        assert written.account_id == account and written.target_metrics is True
        assert result["record"] == run_artifacts(config(), RUN_ID).uri(PUBLISHED_METRICS, target=target)
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
    assert record(TARGETS[2]).dashboard_targets == [{"account_id": OTHER_ACCOUNT, "region": OREGON}]


def test_an_incomplete_target_publishes_no_numbers_of_its_own(fresh_server: Any) -> None:
    missing = {"aws_conn_id": "aws_default", "region": WEST, "stage": "match", "error": "AccessDenied"}
    write_run(fresh_report(incomplete=[missing]))
    ti = LinkTi()
    result = publish(TARGETS[1], config(dashboard_name=""), ti=ti)
    assert result["metrics"] == result["calls"] == 0
    assert record(TARGETS[1]).incomplete_stages == ["match"]
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutDashboard") == 0  # dashboard_name "": metrics only
    assert ti.xcom == {}  # no dashboard, no link
    publish(TARGETS[0])
    fleet = {name: value for (name, dims), value in metrics(cloudwatch(TARGETS[0])).items() if not dims}
    assert fleet["IncompleteParts"] == 1


@pytest.mark.parametrize(
    ("report_changes", "message"),
    [
        (None, "is missing: the task that writes it (report) did not finish"),
        ({"generated_at": "2026-01-01T00:00:00Z"}, "no longer be published"),
    ],
)
def test_refusals_are_recorded(fresh_server: Any, report_changes: dict[str, Any] | None, message: str) -> None:
    artifacts = run_artifacts(config(), RUN_ID)
    if report_changes is not None:
        write_run(fresh_report(**report_changes))
    with pytest.raises(AirflowFailException, match=re.escape(message)) as raised:
        publish(TARGETS[0])
    if report_changes is None:
        assert str(raised.value).startswith(f"{artifacts.uri(REPORT_JSON)} is missing")
    error = artifacts.read(TARGET_ERROR, step=Step.METRICS, target=TARGETS[0])
    assert message in error.error and error.stage == Step.METRICS
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == 0


@pytest.mark.parametrize(
    ("dashboard_name", "message"),
    [("ops dashboard", "dashboard name 'ops dashboard': use 1 to 255 letters"), ("ops", "IAM policy")],
)
def test_a_dashboard_the_policy_does_not_allow_is_refused_before_any_call(
    fresh_server: Any, dashboard_name: str, message: str
) -> None:
    # validate_params refuses such a name (tests/test_config.py); a config that skipped it is refused here too.
    with pytest.raises(ValueError, match=r"^dashboard_name: "):
        config(dashboard_name=dashboard_name)
    write_run(fresh_report())
    unchecked = {**config(), "dashboard_name": dashboard_name}
    with pytest.raises(AirflowFailException, match=re.escape(message)) as raised:
        publish(TARGETS[0], unchecked)
    assert str(raised.value).startswith("publish_metrics: invalid run settings: dashboard_name: ")
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutMetricData") == 0
    assert sandbox_calls(fresh_server.url, "cloudwatch:PutDashboard") == 0


def test_a_target_outside_the_run_is_refused(fresh_server: Any) -> None:
    write_run(fresh_report())
    with pytest.raises(AirflowFailException, match="not one of the run's targets"):
        publish(Target("aws_default", "ap-south-1"))
