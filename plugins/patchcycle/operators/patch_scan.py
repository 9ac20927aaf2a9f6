"""Match: AWS-RunPatchBaseline Scan on the in-scope managed instances, then the plan of missing patches."""

from __future__ import annotations

from typing import Any

import pandas as pd
from airflow.sdk import Context

from patchcycle.config import CycleConfig
from patchcycle.core.invocations import UNFINISHED
from patchcycle.core.plan import combine_plan, instance_compliance, patch_plan
from patchcycle.core.verdicts import ReasonCode, ScanFailure
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook, batches
from patchcycle.links.ssm import RunCommandLink
from patchcycle.operators.base import TargetOperator
from patchcycle.operators.run_command import invocations, late_commands
from patchcycle.run_artifacts import (
    INVENTORY,
    MATCH_COMPLIANCE,
    MATCH_PLAN,
    RDS_PLAN,
    SCAN_COMMANDS,
    SCAN_FAILURES,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import ScanCommands

# DescribeInstancePatches State filter values for the patches a cycle must act on.
OUTSTANDING = ["Missing", "Failed", "InstalledPendingReboot"]


class PatchScanOperator(TargetOperator[PatchManagerHook, CycleConfig]):
    """Sends the Scan in batches of 50, waits in the triggerer, then reads patch states into the plan.

    Its "Run Command" link opens the first Scan command: the only one up to 50 instances; the others of a larger
    region are beside it in Run Command's history, with the same comment (`patchcycle scan <run id>`)."""

    aws_hook_class = PatchManagerHook
    config_class = CycleConfig
    operator_extra_links = (RunCommandLink(),)

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.MATCH):
            inventory = artifacts.read(INVENTORY, target=self.target)
            ids = _scan_targets(inventory)
            if not ids:
                self.log.info("No in-scope managed instance is online in %s: nothing to scan", self.target.key)
                return self._finish(artifacts, inventory, [], {})
            command_ids = []
            for batch in batches(ids):
                with aws_call("ssm:SendCommand", self._account(inventory), str(self.region_name)):
                    command_ids.append(
                        self.hook.send_patch_baseline(
                            batch,
                            operation="Scan",
                            max_concurrency=str(config.max_concurrency),
                            max_errors=str(config.max_errors),
                            comment=f"patchcycle scan {context['run_id']}",
                        )
                    )
            artifacts.write(SCAN_COMMANDS, ScanCommands(command_ids=command_ids, instances=ids), target=self.target)
            self.persist_link(context, RunCommandLink, command_id=command_ids[0])
            self.log.info("Sent Scan to %d instances in %d commands", len(ids), len(command_ids))
        self.wait_for_commands(config, command_ids)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        with self.recording_failure(artifacts, Step.MATCH):
            inventory = artifacts.read(INVENTORY, target=self.target)
            # Commands still running past the bound are cancelled; their unfinished instances count as failed.
            late = late_commands(event)
            sent = artifacts.read(SCAN_COMMANDS, target=self.target).command_ids
            failures: dict[str, ScanFailure] = {}
            found = invocations(self.hook, sent, late, self._account(inventory), str(self.region_name))
            for instance_id, invocation in found.items():
                if invocation["Status"] == "Success":
                    continue
                if invocation["CommandId"] in late and invocation["Status"] in UNFINISHED:
                    failures[instance_id] = ScanFailure(
                        ReasonCode.SCAN_TIMEOUT,
                        f"scan did not finish within {config.command_timeout_minutes:g} minutes (cancelled)",
                    )
                else:
                    detail = f"{invocation['Status']} ({invocation.get('StatusDetails', '')})"
                    failures[instance_id] = ScanFailure(ReasonCode.SCAN_FAILED, detail)
            return self._finish(artifacts, inventory, _scan_targets(inventory), failures)

    def _finish(
        self, artifacts: RunArtifacts, inventory: pd.DataFrame, ids: list[str], failures: dict[str, ScanFailure]
    ) -> dict[str, Any]:
        account, region = self._account(inventory), str(self.region_name)
        with aws_call("ssm:DescribeInstancePatchStates", account, region):
            states = self.hook.instance_patch_states(ids) if ids else []
        outstanding = [
            s["InstanceId"]
            for s in states
            if s["InstanceId"] not in failures
            and s.get("MissingCount", 0) + s.get("FailedCount", 0) + s.get("InstalledPendingRebootCount", 0) > 0
        ]
        patches: dict[str, list[dict[str, Any]]] = {}
        with aws_call("ssm:DescribeInstancePatches", account, region):
            for instance_id in outstanding:
                patches[instance_id] = self.hook.instance_patches(instance_id, OUTSTANDING)
        # A failed scan leaves the previous report in place: it must not count as this run's state.
        states = [s for s in states if s["InstanceId"] not in failures]
        in_scope_rds = set(inventory.loc[inventory["in_scope"] & (inventory["resource_type"] == "rds"), "resource_id"])
        rds = artifacts.read(RDS_PLAN, target=self.target)
        plan = combine_plan([patch_plan(states, patches, inventory), rds[rds["resource_id"].isin(in_scope_rds)]])
        artifacts.write(MATCH_PLAN, plan, target=self.target)
        artifacts.write(MATCH_COMPLIANCE, instance_compliance(states), target=self.target)
        artifacts.write(SCAN_FAILURES, failures, target=self.target)
        summary = {
            **self.target.as_kwargs(),
            "scanned": len(ids),
            "scan_failures": len(failures),
            "non_compliant": len(outstanding),
            "plan_rows": len(plan),
        }
        self.log.info("Match in %s: %s", self.target.key, summary)
        return summary

    def _account(self, inventory: pd.DataFrame) -> str:
        return str(inventory["account_id"].iloc[0]) if len(inventory) else "(no resources)"


def _scan_targets(inventory: pd.DataFrame) -> list[str]:
    """In-scope EC2 instances that Patch Manager can reach now."""
    chosen = inventory[(inventory["resource_type"] == "ec2") & inventory["in_scope"] & inventory["patchable"]]
    return sorted(chosen["resource_id"].tolist())
