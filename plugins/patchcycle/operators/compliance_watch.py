"""The watch of one (connection, region): what Patch Manager, AWS Config and Inspector say now, against the
last cycle's report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.config import WatchConfig
from patchcycle.core.drift import detect_drift, drift_summary, watched_instances
from patchcycle.core.inspection import findings_frame
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import TargetOperator
from patchcycle.run_artifacts import (
    CONFIG_COMPLIANCE,
    CONFIG_SUMMARY,
    DRIFT,
    REPORT_JSON,
    WATCH_SUMMARY,
    ArtifactMissing,
    Step,
    read_document_at,
)
from patchcycle.run_records import WatchSummary

ABSENT = ("MISSING", "FAILED")


class DriftWatchOperator(TargetOperator[PatchManagerHook, WatchConfig]):
    """Finds this target's drift since the cycle (core.drift) and writes its DRIFT table and WATCH_SUMMARY.

    cycle: the last_cycle task's `cycle` XCom (the report's URI and how to read it). AWS Config's current
    verdict comes from this run's config task, when it ran.
    """

    aws_hook_class = PatchManagerHook
    config_class = WatchConfig
    template_fields: Sequence[str] = aws_template_fields("config", "cycle")

    def __init__(self, *, cycle: dict[str, Any] | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cycle = cycle

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.cycle:
            raise AirflowSkipException("no patch_cycle report to compare with (see last_cycle)")
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.WATCH):
            report = self._cycle_report()
            account, region = self.account_or_caller(artifacts), str(self.region_name)
            instances = [entry["resource_id"] for entry in watched_instances(report, account, region)]
            absent: dict[str, list[dict[str, Any]]] = {}
            with aws_call("ssm:DescribeInstancePatchStates", account, region):
                states = self.hook.instance_patch_states(instances) if instances else []
            with aws_call("ssm:DescribeInstancePatches", account, region):
                for state in states:
                    if int(state.get("MissingCount", 0)) + int(state.get("FailedCount", 0)):
                        absent[state["InstanceId"]] = self.hook.instance_patches(state["InstanceId"], ABSENT)
            findings = []
            if instances:
                inspector = self.hook_for(InspectorHook)
                with aws_call("inspector2:ListFindings", account, region):
                    raw = inspector.findings(instances, statuses=["ACTIVE"], severities=list(config.finding_severities))
                findings = findings_frame(raw).to_dict("records")
            compliance = artifacts.find(CONFIG_COMPLIANCE, target=self.target)
            summary_of_config = artifacts.find(CONFIG_SUMMARY, target=self.target)
            rule = summary_of_config.rule.name if summary_of_config and summary_of_config.rule else ""
            drift = detect_drift(report, account, region, absent, compliance, findings, config_rule=rule)
            counts = drift_summary(drift, len(instances))
            summary = WatchSummary(
                aws_conn_id=self.target.aws_conn_id,
                region_name=self.target.region_name,
                account_id=account,
                instances_watched=counts["instances_watched"],
                instances_drifted=counts["instances_drifted"],
                drift=counts["drift"],
                by_kind=counts["by_kind"],
                instances=instances,
            )
            artifacts.write(DRIFT, drift, target=self.target)
            artifacts.write(WATCH_SUMMARY, summary, target=self.target)
        self.log.info("Drift in %s: %s", self.target.key, summary)
        return {key: value for key, value in asdict(summary).items() if key != "instances"}

    def _cycle_report(self) -> dict[str, Any]:
        uri = str(self.cycle["report"])
        try:
            return read_document_at(REPORT_JSON, uri, self.cycle.get("artifact_conn_id"))
        except (FileNotFoundError, ArtifactMissing) as error:
            raise AirflowFailException(f"the last cycle's report {uri} is gone: cannot tell drift from it") from error
