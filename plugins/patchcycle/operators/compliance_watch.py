"""The watch of one (connection, region): what Patch Manager, AWS Config and Inspector say now, against the
last cycle's report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.artifacts import read_uri
from patchcycle.core.drift import detect_drift, drift_summary, watched_instances
from patchcycle.core.inspection import findings_frame
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.evidence_tables import CONFIG_STAGE
from patchcycle.operators.match_tables import read_frame, read_json

STAGE = "watch"
ABSENT = ("MISSING", "FAILED")


class DriftWatchOperator(PatchCycleOperator):
    """Finds this target's drift since the cycle (core.drift) and writes watch/{target}.drift and .json.

    cycle: the last_cycle task's `cycle` XCom (the report's URI and how to read it). AWS Config's current
    verdict comes from this run's config task (config/{target}.compliance), when it ran.
    """

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "cycle", "finding_severities")

    def __init__(
        self, *, cycle: dict[str, Any] | Any, finding_severities: list[str] | Any = ("CRITICAL",), **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.cycle = cycle
        self.finding_severities = finding_severities

    def _cycle_report(self) -> dict[str, Any]:
        uri = str(self.cycle["report"])
        try:
            report: dict[str, Any] = json.loads(read_uri(uri, self.cycle.get("artifact_conn_id")))
        except FileNotFoundError as error:
            raise AirflowFailException(f"the last cycle's report {uri} is gone: cannot tell drift from it") from error
        return report

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.cycle:
            raise AirflowSkipException("no patch_cycle report to compare with (see last_cycle)")
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            report = self._cycle_report()
            ssm = PatchManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            with aws_call("sts:GetCallerIdentity", "", self.region_name):
                self.account_id = account = ssm.account_id
            instances = [entry["resource_id"] for entry in watched_instances(report, account, self.region_name)]
            absent: dict[str, list[dict[str, Any]]] = {}
            with aws_call("ssm:DescribeInstancePatchStates", account, self.region_name):
                states = ssm.instance_patch_states(instances) if instances else []
            with aws_call("ssm:DescribeInstancePatches", account, self.region_name):
                for state in states:
                    if int(state.get("MissingCount", 0)) + int(state.get("FailedCount", 0)):
                        absent[state["InstanceId"]] = ssm.instance_patches(state["InstanceId"], ABSENT)
            findings = []
            if instances:
                inspector = InspectorHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
                with aws_call("inspector2:ListFindings", account, self.region_name):
                    raw = inspector.findings(instances, statuses=["ACTIVE"], severities=list(self.finding_severities))
                findings = findings_frame(raw).to_dict("records")
            config = read_frame(store, CONFIG_STAGE, f"{self.target.key}.compliance.parquet")
            rule = ((read_json(store, CONFIG_STAGE, f"{self.target.key}.json") or {}).get("rule") or {}).get("name", "")
            drift = detect_drift(report, account, self.region_name, absent, config, findings, config_rule=str(rule))
            summary = {**self.target.as_kwargs(), "account_id": account, **drift_summary(drift, len(instances))}
            store.write_frame(STAGE, f"{self.target.key}.drift", drift)
            store.write_json(STAGE, f"{self.target.key}.json", {**summary, "instances": instances})
        self.log.info("Drift in %s: %s", self.target.key, summary)
        return summary
