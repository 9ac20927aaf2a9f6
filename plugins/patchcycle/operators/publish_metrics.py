"""Publish: the run's KPIs as CloudWatch metrics, and the CloudWatch dashboard that shows them, per target.

Each target publishes its own KPIs (dimensions AccountId, Region) in its own region. The fleet-wide KPIs (no
dimensions) are published once per run, by the first target of the list, in its account and region: targets may
be in different accounts, and a second publisher would count the fleet twice. Every target puts its account's
dashboard; the body depends only on the run's targets and their accounts, so the targets of one account write
the same body.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import CycleConfig, Target
from patchcycle.core.cloudwatch_metrics import NAMESPACE, dashboard_body, metric_data
from patchcycle.core.kpis import compute_kpis
from patchcycle.core.timestamps import iso_utc, parse_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_metrics import CloudWatchMetricsHook
from patchcycle.links.cloudwatch import CloudWatchDashboardLink
from patchcycle.operators.base import TargetOperator
from patchcycle.run_artifacts import INVENTORY_SUMMARY, PUBLISHED_METRICS, REPORT_JSON, RunArtifacts, Step
from patchcycle.run_records import PublishedMetrics

# PutMetricData takes timestamps from two weeks before now to two hours after.
MAX_AGE = dt.timedelta(days=14)
MAX_AHEAD = dt.timedelta(hours=2)


class PublishMetricsOperator(TargetOperator[CloudWatchMetricsHook, CycleConfig]):
    """Reads the report, publishes this target's KPIs (and the fleet's, from the first target), puts the
    run's dashboard_name dashboard ("" publishes metrics only), and records what it sent; returns counts only.

    Its link opens the dashboard it put, in this target's account (no link when dashboard_name is "")."""

    aws_hook_class = CloudWatchMetricsHook
    config_class = CycleConfig
    operator_extra_links = (CloudWatchDashboardLink(),)

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.METRICS):
            targets = list(config.targets)
            if self.target not in targets:
                raise AirflowFailException(f"{self.target.key} is not one of the run's targets")
            report = artifacts.read(REPORT_JSON)
            timestamp = _timestamp(report, dt.datetime.now(dt.UTC))
            kpis = compute_kpis(report)
            accounts = _accounts(artifacts, targets)
            account = accounts.get(self.target) or self.account_or_caller(artifacts)
            region = str(self.region_name)

            fleet = targets[0] == self.target
            incomplete = sorted(
                str(part.get("stage", ""))
                for part in report.get("incomplete") or []
                if (part.get("aws_conn_id"), part.get("region")) == (self.aws_conn_id, self.region_name)
            )
            # A target the report could not fully read has partial numbers, not zeros: none are published for it.
            mine = [] if incomplete else [(account, region)]
            data = metric_data(kpis, timestamp, targets=mine, fleet=fleet)
            with aws_call("cloudwatch:PutMetricData", account, region):
                calls = self.hook.put_metrics(NAMESPACE, data)

            messages: list[dict[str, Any]] = []
            same_account = [(account, t.region_name) for t in targets if accounts.get(t) == account]
            if config.dashboard_name:
                body = dashboard_body(
                    NAMESPACE,
                    same_account,
                    fleet_region=targets[0].region_name if accounts.get(targets[0]) == account else None,
                )
                with aws_call("cloudwatch:PutDashboard", account, region):
                    messages = self.hook.put_dashboard(config.dashboard_name, body)
                self.persist_link(context, CloudWatchDashboardLink, dashboard_name=config.dashboard_name)
                for message in messages:
                    self.log.warning("Dashboard %s: %s", config.dashboard_name, message)

            record = PublishedMetrics(
                **self.target.as_kwargs(),
                account_id=account,
                namespace=NAMESPACE,
                timestamp=iso_utc(timestamp),
                metric_count=len(data),
                calls=calls,
                fleet=fleet,
                target_metrics=not incomplete,
                incomplete_stages=incomplete,
                dashboard_name=config.dashboard_name,
                dashboard_targets=[{"account_id": a, "region": r} for a, r in sorted(set(same_account))],
                dashboard_messages=messages,
            )
            uri = artifacts.write(PUBLISHED_METRICS, record, target=self.target)
            self.log.info("Published %d metrics in %d call(s) from %s: %s", len(data), calls, self.target.key, uri)
            return {**self.target.as_kwargs(), "metrics": len(data), "calls": calls, "fleet": fleet, "record": uri}


def _timestamp(report: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """The report's generated_at: every datum of the run carries it, whichever task sends it, whenever."""
    stamp = parse_utc(report.get("generated_at"))
    if stamp is None:
        raise AirflowFailException(f"the report has no valid generated_at: {report.get('generated_at')!r}")
    if not now - MAX_AGE < stamp < now + MAX_AHEAD:
        raise AirflowFailException(
            f"the report was generated at {stamp.isoformat()}: CloudWatch takes data points from at most "
            f"{MAX_AGE.days} days ago and {MAX_AHEAD} ahead, so this run's metrics can no longer be published"
        )
    return stamp


def _accounts(artifacts: RunArtifacts, targets: list[Target]) -> dict[Target, str]:
    """Each target's account, from its inventory summary; a target without one shares its connection's account
    (one connection, one set of credentials) when another target of that connection has one."""
    found: dict[Target, str] = {}
    for target in targets:
        summary = artifacts.find(INVENTORY_SUMMARY, target=target)
        if summary is not None and summary.account_id:
            found[target] = summary.account_id
    by_connection = {target.aws_conn_id: account for target, account in found.items()}
    for target in targets:
        if target not in found and target.aws_conn_id in by_connection:
            found[target] = by_connection[target.aws_conn_id]
    return found
