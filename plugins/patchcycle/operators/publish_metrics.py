"""Publish: the run's KPIs as CloudWatch metrics, and the CloudWatch dashboard that shows them, per target.

Each target publishes its own KPIs (dimensions AccountId, Region) in its own region. The fleet-wide KPIs (no
dimensions) are published once per run, by the first target of the list, in its account and region: targets may
be in different accounts, and a second publisher would count the fleet twice. Every target puts its account's
dashboard; the body depends only on the run's targets and their accounts, so the targets of one account write
the same body.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import Target
from patchcycle.core.cloudwatch_metrics import NAMESPACE, check_dashboard_name, dashboard_body, metric_data
from patchcycle.core.kpis import compute_kpis
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_metrics import CloudWatchMetricsHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import read_json, targets_of

STAGE = "metrics"
DEFAULT_DASHBOARD = "patchcycle"
# PutMetricData takes timestamps from two weeks before now to two hours after.
MAX_AGE = dt.timedelta(days=14)
MAX_AHEAD = dt.timedelta(hours=2)


class PublishMetricsOperator(PatchCycleOperator):
    """Reads report.json, publishes this target's KPIs (and the fleet's, from the first target), puts the
    dashboard, and writes metrics/{target.key}.json; returns counts only.

    targets: the run's targets ([{aws_conn_id, region_name}], validate_params' XCom), in their order.
    dashboard_name: the account's dashboard; "" publishes metrics only.
    """

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "targets", "dashboard_name")

    def __init__(
        self, *, targets: list[dict[str, str]] | Any, dashboard_name: str | Any = DEFAULT_DASHBOARD, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.dashboard_name = dashboard_name

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            targets = targets_of(self.targets)
            if self.target not in targets:
                raise AirflowFailException(f"{self.target.key} is not one of the run's targets")
            dashboard_name = str(self.dashboard_name or "")
            if dashboard_name:
                try:
                    check_dashboard_name(dashboard_name)
                except ValueError as error:
                    raise AirflowFailException(str(error)) from error
            report = read_json(store, "report", "report.json")
            if report is None:
                raise AirflowFailException("no report/report.json: the report task did not write one")
            timestamp = _timestamp(report, dt.datetime.now(dt.UTC))
            kpis = compute_kpis(report)
            hook = CloudWatchMetricsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            accounts = _accounts(store, targets)
            account = accounts.get(self.target, "")
            if not account:
                with aws_call("sts:GetCallerIdentity", "(this connection)", self.region_name):
                    account = hook.account_id

            fleet = targets[0] == self.target
            incomplete = sorted(
                str(part.get("stage", ""))
                for part in report.get("incomplete") or []
                if (part.get("aws_conn_id"), part.get("region")) == (self.aws_conn_id, self.region_name)
            )
            # A target the report could not fully read has partial numbers, not zeros: none are published for it.
            mine = [] if incomplete else [(account, self.region_name)]
            data = metric_data(kpis, timestamp, targets=mine, fleet=fleet)
            with aws_call("cloudwatch:PutMetricData", account, self.region_name):
                calls = hook.put_metrics(NAMESPACE, data)

            messages: list[dict[str, Any]] = []
            same_account = [(account, t.region_name) for t in targets if accounts.get(t) == account]
            if dashboard_name:
                body = dashboard_body(
                    NAMESPACE,
                    same_account,
                    fleet_region=targets[0].region_name if accounts.get(targets[0]) == account else None,
                )
                with aws_call("cloudwatch:PutDashboard", account, self.region_name):
                    messages = hook.put_dashboard(dashboard_name, body)
                for message in messages:
                    self.log.warning("Dashboard %s: %s", dashboard_name, message)

            record = {
                **self.target.as_kwargs(),
                "account_id": account,
                "namespace": NAMESPACE,
                "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
                "metric_count": len(data),
                "calls": calls,
                "fleet": fleet,
                "target_metrics": not incomplete,
                "incomplete_stages": incomplete,
                "dashboard_name": dashboard_name,
                "dashboard_targets": [{"account_id": a, "region": r} for a, r in sorted(set(same_account))],
                "dashboard_messages": messages,
            }
            uri = store.write_json(STAGE, f"{self.target.key}.json", record)
            self.log.info("Published %d metrics in %d call(s) from %s: %s", len(data), calls, self.target.key, uri)
            return {**self.target.as_kwargs(), "metrics": len(data), "calls": calls, "fleet": fleet, "record": uri}


def _timestamp(report: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """The report's generated_at: every datum of the run carries it, whichever task sends it, whenever."""
    try:
        stamp = dt.datetime.fromisoformat(str(report["generated_at"]))
    except (KeyError, ValueError) as error:
        raise AirflowFailException(f"report.json has no valid generated_at: {error}") from error
    stamp = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)
    if not now - MAX_AGE < stamp < now + MAX_AHEAD:
        raise AirflowFailException(
            f"the report was generated at {stamp.isoformat()}: CloudWatch takes data points from at most "
            f"{MAX_AGE.days} days ago and {MAX_AHEAD} ahead, so this run's metrics can no longer be published"
        )
    return stamp


def _accounts(store: ArtifactStore, targets: list[Target]) -> dict[Target, str]:
    """Each target's account, from its inventory summary; a target without one shares its connection's account
    (one connection, one set of credentials) when another target of that connection has one."""
    found: dict[Target, str] = {}
    for target in targets:
        summary = read_json(store, "inventory", f"{target.key}.summary.json") or {}
        if summary.get("account_id"):
            found[target] = str(summary["account_id"])
    by_connection = {target.aws_conn_id: account for target, account in found.items()}
    for target in targets:
        if target not in found and target.aws_conn_id in by_connection:
            found[target] = by_connection[target.aws_conn_id]
    return found
