"""Verify: after the waves, read back what Patch Manager reports for every instance a wave sent to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowSkipException

from patchcycle.core.plan import instance_compliance
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import sent_instances
from patchcycle.operators.staging_checks import REPORTED_STATES

STAGE = "verify"


class VerifyInstallOperator(PatchCycleOperator):
    """DescribeInstancePatchStates and DescribeInstancePatches for this target's patched instances."""

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "mode")

    def __init__(self, *, mode: Any = "install", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode != "install":
            raise AirflowSkipException(f"{self.mode} mode: nothing was installed")
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            sent = sent_instances(store, self.target)
            account = self.account_id
            hook = PatchManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            with aws_call("ssm:DescribeInstancePatchStates", account, self.region_name):
                states = hook.instance_patch_states(sent) if sent else []
            patches: dict[str, list[dict[str, str]]] = {}
            with aws_call("ssm:DescribeInstancePatches", account, self.region_name):
                for instance_id in sent:
                    patches[instance_id] = [
                        {"KBId": str(p.get("KBId", "")), "State": str(p.get("State", ""))}
                        for p in hook.instance_patches(instance_id, REPORTED_STATES)
                    ]
            store.write_frame(STAGE, f"{self.target.key}.compliance", instance_compliance(states))
            store.write_json(STAGE, f"{self.target.key}.patches.json", patches)
            self.log.info("Verified %d patched instances in %s", len(sent), self.target.key)
            return {**self.target.as_kwargs(), "verified": len(sent), "reported": len(states)}
