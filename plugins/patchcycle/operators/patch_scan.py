"""Match: AWS-RunPatchBaseline Scan on the in-scope managed instances, then the plan of missing patches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pandas as pd
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.artifacts import ArtifactStore
from patchcycle.core.plan import combine_plan, instance_compliance, patch_plan
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.patch_manager import PatchManagerHook, batches
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.run_command import invocations, late_commands
from patchcycle.triggers.command_completion import CommandCompletionTrigger

STAGE = "match"
# DescribeInstancePatches State filter values for the patches a cycle must act on.
OUTSTANDING = ["Missing", "Failed", "InstalledPendingReboot"]
UNFINISHED = frozenset({"Pending", "InProgress", "Delayed", "Cancelling", "Cancelled"})


class PatchScanOperator(PatchCycleOperator):
    """Sends the Scan in batches of 50, waits in the triggerer, then reads patch states into the plan."""

    template_fields: Sequence[str] = (
        *PatchCycleOperator.template_fields,
        "max_concurrency",
        "max_errors",
        "poll_seconds",
        "command_timeout_minutes",
    )

    def __init__(
        self,
        *,
        max_concurrency: str = "50",
        max_errors: str = "10%",
        poll_seconds: float | str = 30,
        command_timeout_minutes: float | str = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_concurrency = max_concurrency
        self.max_errors = max_errors
        self.poll_seconds = poll_seconds
        self.command_timeout_minutes = command_timeout_minutes

    def hook(self) -> PatchManagerHook:
        return PatchManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            inventory = self._inventory(store)
            account = self._account(inventory)
            ids = _scan_targets(inventory)
            if not ids:
                self.log.info("No in-scope managed instance is online in %s: nothing to scan", self.target.key)
                return self._finish(store, inventory, [], {})
            hook = self.hook()
            command_ids = []
            for batch in batches(ids):
                with aws_call("ssm:SendCommand", account, self.region_name):
                    command_ids.append(
                        hook.send_patch_baseline(
                            batch,
                            operation="Scan",
                            max_concurrency=str(self.max_concurrency),
                            max_errors=str(self.max_errors),
                            comment=f"patchcycle scan {context['run_id']}",
                        )
                    )
            store.write_json(STAGE, f"{self.target.key}.commands.json", {"scan": command_ids, "instances": ids})
            self.log.info("Sent Scan to %d instances in %d commands", len(ids), len(command_ids))
        wait = timedelta(minutes=float(self.command_timeout_minutes))
        self.defer(
            trigger=CommandCompletionTrigger.for_commands(
                command_ids,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                poll_interval=float(self.poll_seconds),
                timeout=wait.total_seconds(),
            ),
            method_name="execute_complete",
            timeout=wait + timedelta(minutes=10),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        with self.recording_failure(store, STAGE):
            inventory = self._inventory(store)
            account = self._account(inventory)
            hook = self.hook()
            # Commands still running past the bound are cancelled; their unfinished instances count as failed.
            late = late_commands(event)
            sent = store.read_json(str(store.path(STAGE, f"{self.target.key}.commands.json")))["scan"]
            failures: dict[str, str] = {}
            for instance_id, invocation in invocations(hook, sent, late, account, self.region_name).items():
                if invocation["Status"] == "Success":
                    continue
                if invocation["CommandId"] in late and invocation["Status"] in UNFINISHED:
                    failures[instance_id] = (
                        f"scan did not finish within {self.command_timeout_minutes} minutes (cancelled)"
                    )
                else:
                    failures[instance_id] = f"{invocation['Status']} ({invocation.get('StatusDetails', '')})"
            return self._finish(store, inventory, _scan_targets(inventory), failures)

    def _finish(
        self, store: ArtifactStore, inventory: pd.DataFrame, ids: list[str], failures: dict[str, str]
    ) -> dict[str, Any]:
        hook = self.hook()
        account = self._account(inventory)
        with aws_call("ssm:DescribeInstancePatchStates", account, self.region_name):
            states = hook.instance_patch_states(ids) if ids else []
        outstanding = [
            s["InstanceId"]
            for s in states
            if s["InstanceId"] not in failures
            and s.get("MissingCount", 0) + s.get("FailedCount", 0) + s.get("InstalledPendingRebootCount", 0) > 0
        ]
        patches: dict[str, list[dict[str, Any]]] = {}
        with aws_call("ssm:DescribeInstancePatches", account, self.region_name):
            for instance_id in outstanding:
                patches[instance_id] = hook.instance_patches(instance_id, OUTSTANDING)
        # A failed scan leaves the previous report in place: it must not count as this run's state.
        states = [s for s in states if s["InstanceId"] not in failures]
        in_scope_rds = set(inventory.loc[inventory["in_scope"] & (inventory["resource_type"] == "rds"), "resource_id"])
        rds = store.read_frame(str(store.path("inventory", f"{self.target.key}.rds_plan.parquet")))
        plan = combine_plan([patch_plan(states, patches, inventory), rds[rds["resource_id"].isin(in_scope_rds)]])
        key = self.target.key
        store.write_frame(STAGE, f"{key}.plan", plan)
        store.write_frame(STAGE, f"{key}.compliance", instance_compliance(states))
        store.write_json(STAGE, f"{key}.scan_failures.json", failures)
        summary = {
            **self.target.as_kwargs(),
            "scanned": len(ids),
            "scan_failures": len(failures),
            "non_compliant": len(outstanding),
            "plan_rows": len(plan),
        }
        self.log.info("Match in %s: %s", key, summary)
        return summary

    def _inventory(self, store: ArtifactStore) -> pd.DataFrame:
        path = store.path("inventory", f"{self.target.key}.parquet")
        if not path.exists():
            raise AirflowFailException(f"no inventory for {self.target.key}: its inventory task failed")
        return store.read_frame(str(path))

    def _account(self, inventory: pd.DataFrame) -> str:
        return str(inventory["account_id"].iloc[0]) if len(inventory) else "(no resources)"


def _scan_targets(inventory: pd.DataFrame) -> list[str]:
    """In-scope EC2 instances that Patch Manager can reach now."""
    chosen = inventory[(inventory["resource_type"] == "ec2") & inventory["in_scope"] & inventory["patchable"]]
    return sorted(chosen["resource_id"].tolist())
