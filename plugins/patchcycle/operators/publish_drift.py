"""Publish one target's drift: Security Hub findings (new, updated, resolved) and CloudWatch metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.core.asff import created_at_of, reconcile
from patchcycle.core.cloudwatch_metrics import NAMESPACE
from patchcycle.core.drift_findings import DRIFT_GENERATOR, drift_finding_set, drift_metric_data
from patchcycle.core.inventory import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_metrics import CloudWatchMetricsHook
from patchcycle.hooks.security_hub import SecurityHubHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.compliance_watch import STAGE as WATCH_STAGE
from patchcycle.operators.drift_report import STAGE as DRIFT_REPORT_STAGE
from patchcycle.operators.match_tables import read_frame, read_json
from patchcycle.operators.publish_findings import MAX_NOTE

STAGE = "publish_drift"
UPDATED_BY = "patchcycle"


class PublishDriftOperator(PatchCycleOperator):
    """Imports this target's drift findings, resolves the drift that is gone, and puts the drift metrics."""

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            watch = read_json(store, WATCH_STAGE, f"{self.target.key}.json")
            drift = read_frame(store, WATCH_STAGE, f"{self.target.key}.drift.parquet")
            document = read_json(store, DRIFT_REPORT_STAGE, "drift.json")
            if watch is None or drift is None or document is None:
                raise AirflowFailException(f"no watch result for {self.target.key}: see the watch task's log")
            account, region = str(watch["account_id"]), self.region_name
            cycle_run_id = str(document["cycle"]["run_id"])
            now = datetime.now(UTC)
            securityhub = SecurityHubHook(aws_conn_id=self.aws_conn_id, region_name=region)
            drift_filter = {
                "GeneratorId": [{"Value": DRIFT_GENERATOR, "Comparison": "EQUALS"}],
                "AwsAccountId": [{"Value": account, "Comparison": "EQUALS"}],
                "Region": [{"Value": region, "Comparison": "EQUALS"}],
                "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
            }
            with aws_call("securityhub:GetFindings", account, region):
                existing = securityhub.findings(drift_filter)
            findings = drift_finding_set(
                drift,
                existing,
                account,
                region,
                cycle_run_id,
                iso_utc(now),
                created_at_of(existing),
            )
            plan = reconcile(existing, findings)
            with aws_call("securityhub:BatchImportFindings", account, region):
                imported = securityhub.import_findings(findings.findings)
            failed_ids = {f.get("Id", "") for f in imported.failed}
            reopen = [i for i in plan.reopen if i["Id"] not in failed_ids]
            run_id = context["run_id"]
            with aws_call("securityhub:BatchUpdateFindings", account, region):
                resolved = (
                    securityhub.update_workflow(
                        plan.resolve,
                        "RESOLVED",
                        f"No longer seen by the compliance watch, run {run_id}"[:MAX_NOTE],
                        UPDATED_BY,
                    )
                    if plan.resolve
                    else None
                )
                # A RESOLVED drift finding that is back: importing it again does not reopen it on AWS.
                reopened = (
                    securityhub.update_workflow(
                        reopen, "NEW", f"Drifting again in compliance watch run {run_id}"[:MAX_NOTE], UPDATED_BY
                    )
                    if reopen
                    else None
                )
            metrics = CloudWatchMetricsHook(aws_conn_id=self.aws_conn_id, region_name=region)
            with aws_call("cloudwatch:PutMetricData", account, region):
                calls = metrics.put_metrics(NAMESPACE, drift_metric_data(watch, account, region, now))
            counts = {
                "imported": imported.success_count,
                "new": len(plan.new_ids),
                "resolved": len(resolved.processed) if resolved else 0,
                "reopened": len(reopened.processed) if reopened else 0,
                "failed": len(imported.failed) + sum(len(r.unprocessed) for r in (resolved, reopened) if r),
                "metric_calls": calls,
            }
            unprocessed = [u for r in (resolved, reopened) if r for u in r.unprocessed]
            store.write_json(
                STAGE,
                f"{self.target.key}.json",
                {
                    **self.target.as_kwargs(),
                    "account_id": account,
                    **counts,
                    "failed_imports": imported.failed,
                    "failed_updates": unprocessed,
                },
            )
            if counts["failed"]:
                problems = [f"{f.get('Id')}: {f.get('ErrorCode')} {f.get('ErrorMessage', '')}" for f in imported.failed]
                problems += [
                    f"{u['FindingIdentifier']['Id']}: {u.get('ErrorCode')} {u.get('ErrorMessage', '')}"
                    for u in unprocessed
                ]
                raise AirflowFailException(
                    f"Security Hub refused {len(problems)} drift finding(s) in account {account}, region {region} "
                    "(securityhub:BatchImportFindings / BatchUpdateFindings): " + "; ".join(problems[:10])
                )
        self.log.info("Drift published for %s: %s", self.target.key, counts)
        return {**self.target.as_kwargs(), **counts}
