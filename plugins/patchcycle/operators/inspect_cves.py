"""Inspect: after verify, prove with Amazon Inspector that the CVEs the installed patches fix are closed.

Per target: the instances a wave sent the install to, the CVEs of each one's pinned patches, Inspector's
rescan after the install (waited for in the triggerer), then its findings. Writes inspect/{target}.cves
(CVE_COLUMNS) and inspect/{target}.residual (RESIDUAL_COLUMNS).

An instance's install time is Patch Manager's OperationEndTime in verify's compliance table: it is on
AWS's clock (the one Inspector's lastScannedAt is on), per instance, and marks the report the agent sent
after the install and its reboot, which is the package state Inspector must rescan. The waves record no
per-instance time, and their finished_at is the Airflow worker's clock for a whole wave. An instance whose
last operation is still a Scan never ran the install: nothing changed for Inspector to rescan, so it is
not waited for and Inspector's last scan of it stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.artifacts import ArtifactStore
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
from patchcycle.core.inventory import iso_utc, typed_frame
from patchcycle.core.plan import empty_plan
from patchcycle.core.staging import PRODUCTION_COLUMNS
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import read_frame, read_json, sent_instances
from patchcycle.triggers.inspector_rescan import InspectorRescanTrigger

STAGE = "inspect"
# The trigger's deadline bounds the wait; the task's own timeout leaves it room to report.
DEFER_MARGIN = timedelta(minutes=10)


class InspectCvesOperator(PatchCycleOperator):
    """Classifies each (patched instance, CVE of its pinned patches) as REMEDIATED, STILL_ACTIVE, NOT_FOUND or
    UNVERIFIED from Inspector's rescan, and lists the residual critical and high findings."""

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "mode", "wait_minutes", "poll_seconds")

    def __init__(
        self,
        *,
        mode: Any = "install",
        wait_minutes: float | str = 120,
        poll_seconds: float | str = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.wait_minutes = wait_minutes
        self.poll_seconds = poll_seconds

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode != "install":
            raise AirflowSkipException(f"{self.mode} mode: nothing was installed")
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            sent = sent_instances(store, self.target)
            if not sent:
                return self._write(store, [], typed_frame([], CVE_COLUMNS), typed_frame([], RESIDUAL_COLUMNS), {})
            installed_at, _ = self._install_times(store, sent)
            if not installed_at:  # no install to hold a rescan against: classify what Inspector has now
                return self._inspect(store, sent, {})
            wait = timedelta(minutes=float(self.wait_minutes))
            self.log.info("Waiting up to %s for Inspector to rescan %d instances", wait, len(installed_at))
            self.defer(
                trigger=InspectorRescanTrigger(
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    installed_at=installed_at,
                    deadline=iso_utc(datetime.now(UTC) + wait),
                    poll_seconds=float(self.poll_seconds),
                ),
                method_name="execute_complete",
                timeout=wait + DEFER_MARGIN,
            )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            self.log.info(
                "Inspector rescan wait ended (%s): %d rescanned, %d not rescanned, %d not covered",
                event.get("status"),
                len(event.get("rescanned", {})),
                len(event.get("not_rescanned", {})),
                len(event.get("not_covered", {})),
            )
            return self._inspect(store, sent_instances(store, self.target), event)

    def _inspect(self, store: ArtifactStore, sent: list[str], event: dict[str, Any]) -> dict[str, Any]:
        production = read_frame(store, "install", "production.parquet")
        expected = expected_cves(
            production if production is not None else typed_frame([], PRODUCTION_COLUMNS),
            self._plans(store),
            sent,
        )
        hook = InspectorHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        with aws_call("inspector2:ListCoverage", self.account_id, self.region_name):
            coverage = coverage_frame(hook.coverage(sent).values())
        with aws_call("inspector2:ListFindings", self.account_id, self.region_name):
            findings = findings_frame(hook.findings(sent))
        patches: dict[str, list[dict[str, str]]] = read_json(store, "verify", f"{self.target.key}.patches.json") or {}
        patch_states = {iid: {str(p["KBId"]): str(p["State"]) for p in items} for iid, items in patches.items()}
        installed_at, unchanged = self._install_times(store, sent)
        cves = classify_cves(
            expected, findings, coverage, installed_at, patch_states, float(self.wait_minutes), unchanged
        )
        residual = residual_findings(findings, expected, sent)
        return self._write(store, sent, cves, residual, event)

    def _write(
        self,
        store: ArtifactStore,
        sent: list[str],
        cves: pd.DataFrame,
        residual: pd.DataFrame,
        event: dict[str, Any],
    ) -> dict[str, Any]:
        store.write_frame(STAGE, f"{self.target.key}.cves", cves)
        store.write_frame(STAGE, f"{self.target.key}.residual", residual)
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

    def _install_times(self, store: ArtifactStore, sent: list[str]) -> tuple[dict[str, str], set[str]]:
        """From verify's compliance: instance id -> ISO end of its Install, and the instances whose last
        operation is still a Scan (the install never ran on them). An instance with no report is in neither."""
        compliance = read_frame(store, "verify", f"{self.target.key}.compliance.parquet")
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

    def _plans(self, store: ArtifactStore) -> pd.DataFrame:
        """Every target's match plan: a patch's CVE ids may be listed only where it was missing."""
        folder = store.path("match", "plan").parent
        frames = (
            [store.read_frame(str(path)) for path in sorted(folder.glob("*.plan.parquet"), key=str)]
            if folder.exists()
            else []
        )
        return pd.concat(frames, ignore_index=True) if frames else empty_plan()
