"""Inspect: after verify, prove with Amazon Inspector that the CVEs the installed patches fix are closed.

Per target: the instances a wave sent the install to, the CVEs of each one's pinned patches, Inspector's
rescan after the install (waited for in the triggerer), then its findings. Writes the CVES and RESIDUAL
tables (patchcycle.run_artifacts).

An instance's install time is Patch Manager's OperationEndTime in verify's compliance table: it is on
AWS's clock (the one Inspector's lastScannedAt is on), per instance, and marks the report the agent sent
after the install and its reboot, which is the package state Inspector must rescan. The waves record no
per-instance time, and their finished_at is the Airflow worker's clock for a whole wave. An instance whose
last operation is still a Scan never ran the install: nothing changed for Inspector to rescan, so it is
not waited for and Inspector's last scan of it stands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from airflow.providers.amazon.aws.links.ec2 import EC2InstanceDashboardLink
from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames, typed_frame
from patchcycle.core.inspection import (
    CVE_COLUMNS,
    RESIDUAL_COLUMNS,
    classify_cves,
    coverage_frame,
    expected_cves,
    findings_frame,
    residual_findings,
    status_counts,
)
from patchcycle.core.plan import PLAN_COLUMNS
from patchcycle.core.staging import PLANNED_PRODUCTION_COLUMNS
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.links.inspector import InspectorFindingsLink
from patchcycle.operators.base import DEFER_MARGIN, TargetOperator
from patchcycle.readback.match import sent_instances
from patchcycle.run_artifacts import (
    CVES,
    MATCH_PLAN,
    PRODUCTION,
    RESIDUAL,
    VERIFIED_PATCHES,
    VERIFY_COMPLIANCE,
    RunArtifacts,
    Step,
)
from patchcycle.triggers.inspector_rescan import InspectorRescanTrigger


class InspectCvesOperator(TargetOperator[InspectorHook, CycleConfig]):
    """Classifies each (patched instance, CVE of its pinned patches) as REMEDIATED, STILL_ACTIVE, NOT_FOUND or
    UNVERIFIED from Inspector's rescan, and lists the residual critical and high findings.

    Links: Inspector's findings in this region (its console takes no instance filter in the URL), and the EC2
    console filtered to the instances inspected (the provider's EC2 Instances link), whose Inspector findings
    are a click away."""

    aws_hook_class = InspectorHook
    config_class = CycleConfig
    operator_extra_links = (InspectorFindingsLink(), EC2InstanceDashboardLink())

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.INSPECT):
            sent = sent_instances(artifacts, self.target)
            self.persist_link(context, InspectorFindingsLink)
            if not sent:
                return self._write(artifacts, [], typed_frame([], CVE_COLUMNS), typed_frame([], RESIDUAL_COLUMNS), {})
            instance_ids = EC2InstanceDashboardLink.format_instance_id_filter(sent)
            self.persist_link(context, EC2InstanceDashboardLink, instance_ids=instance_ids)
            installed_at, _ = self._install_times(artifacts, sent)
            if not installed_at:  # no install to hold a rescan against: classify what Inspector has now
                return self._inspect(artifacts, config, sent, {})
            wait = config.inspector_wait
            self.log.info("Waiting up to %s for Inspector to rescan %d instances", wait, len(installed_at))
        self.defer(
            trigger=InspectorRescanTrigger(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                installed_at=installed_at,
                deadline=iso_utc(datetime.now(UTC) + wait),
                poll_seconds=config.poll_seconds,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=wait + DEFER_MARGIN,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.INSPECT):
            self.log.info(
                "Inspector rescan wait ended (%s): %d rescanned, %d not rescanned, %d not covered",
                event.get("status"),
                len(event.get("rescanned", {})),
                len(event.get("not_rescanned", {})),
                len(event.get("not_covered", {})),
            )
            return self._inspect(artifacts, self.settings(), sent_instances(artifacts, self.target), event)

    def _inspect(
        self, artifacts: RunArtifacts, config: CycleConfig, sent: list[str], event: dict[str, Any]
    ) -> dict[str, Any]:
        production = artifacts.find(PRODUCTION)
        # A patch's CVE ids may be listed only where it was missing: every target's match plan counts.
        plans = concat_frames([artifacts.find(MATCH_PLAN, target=t) for t in config.targets], PLAN_COLUMNS)
        expected = expected_cves(
            production if production is not None else typed_frame([], PLANNED_PRODUCTION_COLUMNS), plans, sent
        )
        account, region = self.account_id(artifacts), str(self.region_name)
        with aws_call("inspector2:ListCoverage", account, region):
            coverage = coverage_frame(self.hook.coverage(sent).values())
        with aws_call("inspector2:ListFindings", account, region):
            findings = findings_frame(self.hook.findings(sent))
        patch_states = artifacts.find(VERIFIED_PATCHES, target=self.target) or {}
        installed_at, unchanged = self._install_times(artifacts, sent)
        cves = classify_cves(
            expected, findings, coverage, installed_at, patch_states, config.inspector_wait_minutes, unchanged
        )
        residual = residual_findings(findings, expected, sent)
        return self._write(artifacts, sent, cves, residual, event)

    def _write(
        self,
        artifacts: RunArtifacts,
        sent: list[str],
        cves: pd.DataFrame,
        residual: pd.DataFrame,
        event: dict[str, Any],
    ) -> dict[str, Any]:
        artifacts.write(CVES, cves, target=self.target)
        artifacts.write(RESIDUAL, residual, target=self.target)
        summary = {
            **self.target.as_kwargs(),
            "instances": len(sent),
            "cves": len(cves),
            "statuses": status_counts(cves),
            "residual": len(residual),
            "rescanned": len(event.get("rescanned", {})),
            "not_rescanned": len(event.get("not_rescanned", {})),
        }
        self.log.info("Inspect %s: %s", self.target.key, summary)
        return summary

    def _install_times(self, artifacts: RunArtifacts, sent: list[str]) -> tuple[dict[str, str], set[str]]:
        """From verify's compliance: instance id -> ISO end of its Install, and the instances whose last
        operation is still a Scan (the install never ran on them). An instance with no report is in neither."""
        compliance = artifacts.find(VERIFY_COMPLIANCE, target=self.target)
        installed: dict[str, str] = {}
        unchanged: set[str] = set()
        if compliance is None:
            return installed, unchanged
        wanted = set(sent)
        for row in compliance[["resource_id", "operation", "operation_end_time"]].itertuples(index=False):
            instance_id, ended = str(row.resource_id), iso_utc(row.operation_end_time)
            if instance_id not in wanted or not ended:
                continue
            if row.operation == "Install":
                installed[instance_id] = ended
            else:
                unchanged.add(instance_id)
        return installed, unchanged
