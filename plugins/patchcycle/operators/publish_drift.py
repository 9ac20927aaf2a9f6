"""Publish one target's drift: Security Hub findings (new, updated, resolved) and CloudWatch metrics."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context

from patchcycle.config import WatchConfig
from patchcycle.core.asff import created_at_of, reconcile
from patchcycle.core.cloudwatch_metrics import NAMESPACE
from patchcycle.core.drift_findings import DRIFT_GENERATOR, drift_finding_set, drift_metric_data
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.cloudwatch_metrics import CloudWatchMetricsHook
from patchcycle.hooks.security_hub import SecurityHubHook
from patchcycle.operators.base import TargetOperator
from patchcycle.operators.publish_findings import refused_findings, set_workflow
from patchcycle.run_artifacts import DRIFT, DRIFT_JSON, PUBLISHED_DRIFT, WATCH_SUMMARY, Step
from patchcycle.run_records import PublishedDrift


class PublishDriftOperator(TargetOperator[SecurityHubHook, WatchConfig]):
    """Imports this target's drift findings, resolves the drift that is gone, and puts the drift metrics."""

    aws_hook_class = SecurityHubHook
    config_class = WatchConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.PUBLISH_DRIFT):
            watch = artifacts.read(WATCH_SUMMARY, target=self.target)
            drift = artifacts.read(DRIFT, target=self.target)
            document = artifacts.read(DRIFT_JSON)
            account, region = watch.account_id, str(self.region_name)
            now = datetime.now(UTC)
            drift_filter = {
                "GeneratorId": [{"Value": DRIFT_GENERATOR, "Comparison": "EQUALS"}],
                "AwsAccountId": [{"Value": account, "Comparison": "EQUALS"}],
                "Region": [{"Value": region, "Comparison": "EQUALS"}],
                "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
            }
            with aws_call("securityhub:GetFindings", account, region):
                existing = self.hook.findings(drift_filter)
            findings = drift_finding_set(
                drift,
                existing,
                account,
                region,
                str(document["cycle"]["run_id"]),
                iso_utc(now),
                created_at_of(existing),
            )
            plan = reconcile(existing, findings)
            with aws_call("securityhub:BatchImportFindings", account, region):
                imported = self.hook.import_findings(findings.findings)
            failed_ids = {f.get("Id", "") for f in imported.failed}
            reopen = [i for i in plan.reopen if i["Id"] not in failed_ids]
            run_id = context["run_id"]
            with aws_call("securityhub:BatchUpdateFindings", account, region):
                resolved = set_workflow(
                    self.hook, plan.resolve, "RESOLVED", f"No longer seen by the compliance watch, run {run_id}"
                )
                # A RESOLVED drift finding that is back: importing it again does not reopen it on AWS.
                reopened = set_workflow(self.hook, reopen, "NEW", f"Drifting again in compliance watch run {run_id}")
            with aws_call("cloudwatch:PutMetricData", account, region):
                calls = self.hook_for(CloudWatchMetricsHook).put_metrics(
                    NAMESPACE, drift_metric_data(asdict(watch), account, region, now)
                )
            unprocessed = resolved.unprocessed + reopened.unprocessed
            record = PublishedDrift(
                **self.target.as_kwargs(),
                account_id=account,
                imported=imported.success_count,
                new=len(plan.new_ids),
                resolved=len(resolved.processed),
                reopened=len(reopened.processed),
                failed=len(imported.failed) + len(unprocessed),
                metric_calls=calls,
                failed_imports=imported.failed,
                failed_updates=unprocessed,
            )
            artifacts.write(PUBLISHED_DRIFT, record, target=self.target)
            refused_findings(imported.failed, unprocessed, f"account {account}, region {region}")
        counts = {key: value for key, value in asdict(record).items() if not key.startswith("failed_")}
        self.log.info("Drift published for %s: %s", self.target.key, counts)
        return counts
