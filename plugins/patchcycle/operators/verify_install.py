"""Verify: after the waves, read back what Patch Manager reports for every instance a wave sent to."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.plan import instance_compliance
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import TargetOperator
from patchcycle.operators.staging_checks import REPORTED_STATES
from patchcycle.readback.match import sent_instances
from patchcycle.run_artifacts import VERIFIED_PATCHES, VERIFY_COMPLIANCE, Step


class VerifyInstallOperator(TargetOperator[PatchManagerHook, CycleConfig]):
    """DescribeInstancePatchStates and DescribeInstancePatches for this target's patched instances."""

    aws_hook_class = PatchManagerHook
    config_class = CycleConfig

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        with self.recording_failure(artifacts, Step.VERIFY):
            sent = sent_instances(artifacts, self.target)
            account, region = self.account_id(artifacts), str(self.region_name)
            with aws_call("ssm:DescribeInstancePatchStates", account, region):
                states = self.hook.instance_patch_states(sent) if sent else []
            patches: dict[str, dict[str, str]] = {}
            with aws_call("ssm:DescribeInstancePatches", account, region):
                for instance_id in sent:
                    patches[instance_id] = {
                        str(p.get("KBId", "")): str(p.get("State", ""))
                        for p in self.hook.instance_patches(instance_id, REPORTED_STATES)
                    }
            artifacts.write(VERIFY_COMPLIANCE, instance_compliance(states), target=self.target)
            artifacts.write(VERIFIED_PATCHES, patches, target=self.target)
            self.log.info("Verified %d patched instances in %s", len(sent), self.target.key)
            return {**self.target.as_kwargs(), "verified": len(sent), "reported": len(states)}
