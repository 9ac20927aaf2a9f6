"""verify_replacements: the instances the Auto Scaling groups' refreshes launched, checked in this (connection,
region) as the patched instances are: a Patch Manager Scan (a new instance has no patch state until its first
operation) shows every pinned patch of its baked AMI installed, and Amazon Inspector, once it has scanned the
instance (waited for in the triggerer), shows none of their CVEs active."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.frames import concat_frames
from patchcycle.core.immutable_rollout import GroupRefresh, ReplacementCheck, replacement_check
from patchcycle.core.inspection import patch_cves
from patchcycle.core.plan import PLAN_COLUMNS, split_cve_ids
from patchcycle.core.timestamps import iso_utc
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.inspector import InspectorHook
from patchcycle.hooks.patch_manager import MAX_IDS_PER_CALL, PatchManagerHook
from patchcycle.operators.base import DEFER_MARGIN, TargetOperator
from patchcycle.operators.staging_checks import REPORTED_STATES
from patchcycle.readback.immutable import read_immutable_record
from patchcycle.run_artifacts import MATCH_PLAN, REPLACEMENT_CHECKS, REPLACEMENT_SCANS, RunArtifacts, Step
from patchcycle.triggers.inspector_rescan import InspectorRescanTrigger

# Any Inspector scan of a new instance will do (see scanned).
LAUNCHED_AFTER = "1970-01-01T00:00:00Z"


class VerifyReplacementsOperator(TargetOperator[PatchManagerHook, CycleConfig]):
    """Scan, then Inspector, for this target's instances launched by a successful refresh; writes their checks."""

    aws_hook_class = PatchManagerHook
    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.VERIFY_REPLACEMENTS):
            new = self._new_instances(artifacts, config)
            if not new:
                artifacts.write(REPLACEMENT_CHECKS, {}, target=self.target)
                return {**self.target.as_kwargs(), "new_instances": 0}
            sent = artifacts.find(REPLACEMENT_SCANS, target=self.target) or []
            if not sent:
                ids = sorted(new)
                for start in range(0, len(ids), MAX_IDS_PER_CALL):
                    with aws_call("ssm:SendCommand", self.account_id(artifacts), str(self.region_name)):
                        sent.append(
                            self.hook.send_patch_baseline(
                                ids[start : start + MAX_IDS_PER_CALL],
                                operation="Scan",
                                max_concurrency=str(config.max_concurrency),
                                max_errors=str(config.max_errors),
                                comment=f"patchcycle replacements {context['run_id']}",
                            )
                        )
                artifacts.write(REPLACEMENT_SCANS, sent, target=self.target)
        self.wait_for_commands(config, sent, method_name="scanned")

    def scanned(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """The scans ended: wait until Amazon Inspector has scanned every new instance. Any scan since its launch will
        do: the refresh launched it from the baked AMI, and a Patch Manager Scan changes no package, so Inspector does
        not rescan after it (waiting for a scan after the Scan's report would wait out inspector_wait)."""
        config = self.settings()
        new = self._new_instances(self.artifacts(context), config)
        wait = config.inspector_wait
        self.defer(
            trigger=InspectorRescanTrigger(
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                installed_at=dict.fromkeys(sorted(new), LAUNCHED_AFTER),
                deadline=iso_utc(datetime.now(UTC) + wait),
                poll_seconds=config.poll_seconds,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="inspected",
            timeout=wait + DEFER_MARGIN,
        )

    def inspected(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.VERIFY_REPLACEMENTS):
            new = self._new_instances(artifacts, config)
            record = read_immutable_record(artifacts, config.targets)
            pinned = {str(b["bake_id"]): split_cve_ids(str(b["patch_ids"])) for b in record.bakes.to_dict("records")}
            bake_of = {str(r.image_id): str(r.bake_id) for r in record.results.itertuples(index=False) if r.baked}
            plans = concat_frames([artifacts.find(MATCH_PLAN, target=t) for t in config.targets], PLAN_COLUMNS)
            cves_of = patch_cves(plans)
            inspector = self.hook_for(InspectorHook)
            with aws_call("inspector2:ListCoverage", account, region):
                coverage = inspector.coverage(sorted(new))
            with aws_call("inspector2:ListFindings", account, region):
                findings = inspector.findings(sorted(new), statuses=["ACTIVE"])
            active: dict[str, list[str]] = {}
            for finding in findings:
                resource = ((finding.get("resources") or [{}])[0]).get("id", "")
                cve = (finding.get("packageVulnerabilityDetails") or {}).get("vulnerabilityId", "")
                active.setdefault(str(resource), []).append(str(cve))
            checks: dict[str, ReplacementCheck] = {}
            with aws_call("ssm:DescribeInstancePatches", account, region):
                for instance_id, refresh in sorted(new.items()):
                    patches = pinned.get(bake_of.get(refresh.image_id, ""), [])
                    states = {
                        str(p.get("KBId", "")): str(p.get("State", ""))
                        for p in self.hook.instance_patches(instance_id, REPORTED_STATES)
                    }
                    cves = sorted({c for p in patches for c in cves_of.get(p, ([], ""))[0]})
                    scanned = iso_utc((coverage.get(instance_id) or {}).get("lastScannedAt"))
                    checks[instance_id] = replacement_check(
                        refresh.group,
                        refresh.image_id,
                        patches,
                        states or None,
                        cves,
                        scanned,
                        active.get(instance_id, []),
                    )
            artifacts.write(REPLACEMENT_CHECKS, checks, target=self.target)
            compliant = sum(1 for c in checks.values() if c.compliant)
            closed = sum(1 for c in checks.values() if c.cves_closed)
            self.log.info(
                "Replacements in %s: %d, %d compliant, %d with CVEs closed",
                self.target.key,
                len(checks),
                compliant,
                closed,
            )
            return {
                **self.target.as_kwargs(),
                "new_instances": len(checks),
                "compliant": compliant,
                "cves_closed": closed,
            }

    def _new_instances(self, artifacts: RunArtifacts, config: CycleConfig) -> dict[str, GroupRefresh]:
        """Instance id -> the successful refresh of this target that launched it."""
        record = read_immutable_record(artifacts, config.targets)
        account = self.account_id(artifacts)
        return {
            instance_id: refresh
            for refresh in record.refreshes.values()
            if refresh.status == "Successful" and refresh.account_id == account and refresh.region == self.region_name
            for instance_id in refresh.new_instances
        }
