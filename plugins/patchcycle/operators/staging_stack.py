"""The staging replica's CloudFormation stack: created as a setup task, deleted as a teardown task.

One stack per (connection, region), one instance per staged profile. A stack that fails to create is
deleted by the setup task itself before it fails, because Airflow runs a teardown only after a
successful setup: a rolled-back stack must not be left behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import yaml
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from patchcycle.artifacts import ArtifactStore
from patchcycle.config import InstallSettings
from patchcycle.core.staging import instance_logical_id, stack_name, staging_template
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.staging_stack import StagingStackHook
from patchcycle.operators.base import PatchCycleOperator
from patchcycle.operators.match_tables import read_frame, read_json
from patchcycle.triggers.stack_status import StackStatusTrigger

STAGE = "staging"
INCLUDE = Path(__file__).resolve().parents[3] / "include"
TEMPLATE = INCLUDE / "cloudformation" / "staging.yaml"
# Statuses in which a stack of this run already exists and only needs waiting for (a retried task).
IN_PROGRESS = frozenset({"CREATE_IN_PROGRESS", "CREATE_COMPLETE"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class StackOperator(PatchCycleOperator):
    """What creating and deleting the staging stack share: the hook, and waiting for the stack in the triggerer."""

    template_fields: Sequence[str] = (*PatchCycleOperator.template_fields, "poll_seconds")

    def __init__(self, *, poll_seconds: float | str = 15, timeout_minutes: float = 30, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.poll_seconds = poll_seconds
        self.timeout_minutes = timeout_minutes

    @property
    def poll_delay(self) -> int:
        """Whole seconds between stack status checks (the waiter's delay), at least 1."""
        return max(1, round(float(self.poll_seconds)))

    def hook(self) -> StagingStackHook:
        return StagingStackHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    def wait_for_stack(self, name: str, waiter_name: str) -> NoReturn:
        self.defer(
            trigger=StackStatusTrigger(
                stack_name=name,
                waiter_name=waiter_name,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                waiter_delay=self.poll_delay,
                waiter_max_attempts=max(1, int(self.timeout_minutes * 60 / self.poll_delay)),
            ),
            method_name="execute_complete",
        )


class StagingStackOperator(StackOperator):
    """Creates this target's staging stack and waits for it in the triggerer; records its instances."""

    template_fields: Sequence[str] = (*StackOperator.template_fields, "settings", "mode")

    def __init__(
        self, *, settings: Any, mode: Any = "install", template_path: str | Path = TEMPLATE, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.mode = mode
        self.template_path = Path(template_path)

    def execute(self, context: Context) -> dict[str, Any]:
        if self.mode != "install":
            raise AirflowSkipException(f"{self.mode} mode: no staging")
        store = self.store(context)
        name = stack_name(context["run_id"])
        with self.recording_failure(store, STAGE):
            profiles = self._staged_profiles(store)
            if profiles.empty:
                self.log.info("No staged profile in %s: no stack", self.target.key)
                return self._record(store, {"stack_name": name, "created": False, "status": "NOT_NEEDED"})
            settings = InstallSettings.from_dict(self.settings)
            hook = self.hook()
            with aws_call("cloudformation:DescribeStacks", self.account_id, self.region_name):
                existing = hook.status(name)
            if existing is None or existing["status"] not in IN_PROGRESS:
                if existing is not None:  # a failed earlier attempt of this run: start clean
                    self._delete_and_wait(hook, name)
                base = yaml.safe_load(self.template_path.read_text())
                template = staging_template(base, profiles)
                parameters = {
                    "RunId": context["run_id"][:255],
                    "InstanceProfile": settings.staging_instance_profile,
                    "SubnetId": settings.staging_subnet_id,
                }
                tags = {"patchcycle:run-id": context["run_id"][:255], "patchcycle:role": "staging"}
                with aws_call("cloudformation:CreateStack", self.account_id, self.region_name):
                    hook.create(name, json.dumps(template), parameters, tags)
                self.log.info("Creating stack %s with %d staging instances", name, len(profiles))
            # A re-run after a failed attempt must not keep that attempt's error and deletion in the record.
            self._record(
                store,
                {
                    "stack_name": name,
                    "created": False,
                    "status": "CREATE_IN_PROGRESS",
                    "error": "",
                    "deleted": False,
                    "deleted_at": "",
                },
            )
        self.wait_for_stack(name, "stack_create_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        name = stack_name(context["run_id"])
        with self.recording_failure(store, STAGE):
            hook = self.hook()
            if event.get("status") != "success":
                with aws_call("cloudformation:DescribeStackEvents", self.account_id, self.region_name):
                    reasons = hook.failure_reasons(name)
                status = hook.status(name) or {}
                error = "; ".join(reasons) or str(status.get("reason") or event.get("message", "unknown error"))
                self._record(
                    store, {"stack_name": name, "created": False, "status": status.get("status", ""), "error": error}
                )
                deleted = self._delete_and_wait(hook, name)
                self._record(
                    store,
                    {
                        "stack_name": name,
                        "created": False,
                        "status": status.get("status", ""),
                        "error": error,
                        "deleted": deleted,
                        "deleted_at": now_iso() if deleted else "",
                    },
                )
                raise AirflowFailException(
                    f"staging stack {name} in {self.region_name} failed to create "
                    f"({status.get('status', 'unknown status')}): {error}; "
                    + ("the stack was deleted" if deleted else "DELETING THE STACK FAILED: delete it by hand")
                )
            with aws_call("cloudformation:DescribeStackResources", self.account_id, self.region_name):
                instances = hook.instances(name)
            profiles = self._staged_profiles(store)
            by_profile = {
                profile_id: instances.get(logical_id, "")
                for profile_id, logical_id in zip(profiles["profile_id"], profiles["logical_id"], strict=True)
            }
            return self._record(
                store,
                {
                    "stack_name": name,
                    "created": True,
                    "created_at": now_iso(),
                    "status": "CREATE_COMPLETE",
                    "instances": by_profile,
                },
            )

    def _staged_profiles(self, store: ArtifactStore) -> pd.DataFrame:
        profiles = read_frame(store, "install", "profiles.parquet")
        if profiles is None:
            raise AirflowFailException("no install plan: plan_install did not finish")
        mine = profiles[
            profiles["staged"] & (profiles["region"] == self.region_name) & (profiles["account_id"] == self.account_id)
        ]
        return mine.assign(logical_id=[instance_logical_id(p) for p in mine["profile_id"]]).reset_index(drop=True)

    def _delete_and_wait(self, hook: StagingStackHook, name: str) -> bool:
        """Delete a failed stack in the task itself (a rollback leaves no resources: it is quick)."""
        with aws_call("cloudformation:DeleteStack", self.account_id, self.region_name):
            hook.delete(name)
        deadline = time.monotonic() + self.timeout_minutes * 60
        while time.monotonic() < deadline:
            with aws_call("cloudformation:DescribeStacks", self.account_id, self.region_name):
                status = hook.status(name)
            if status is None or status["status"] == "DELETE_COMPLETE":
                return True
            if status["status"] == "DELETE_FAILED":
                self.log.error("Stack %s was not deleted: %s", name, status["reason"])
                return False
            time.sleep(min(self.poll_delay, 5))
        return False

    def _record(self, store: ArtifactStore, record: dict[str, Any]) -> dict[str, Any]:
        full = {**(read_json(store, STAGE, f"{self.target.key}.stack.json") or {}), **record}
        full.update(account_ids=[self.account_id] if self.account_id else [], region=self.region_name)
        store.write_json(STAGE, f"{self.target.key}.stack.json", full)
        return full


class StagingTeardownOperator(StackOperator):
    """Deletes this target's staging stack, whatever happened upstream, and records when."""

    def execute(self, context: Context) -> dict[str, Any]:
        store = self.store(context)
        name = stack_name(context["run_id"])
        hook = self.hook()
        with aws_call("cloudformation:DescribeStacks", self.account_id, self.region_name):
            existing = hook.status(name)
        if existing is None:
            return self._deleted(store, name, "no stack to delete")
        with aws_call("cloudformation:DeleteStack", self.account_id, self.region_name):
            hook.delete(name)
        self.wait_for_stack(name, "stack_delete_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        store = self.store(context)
        name = stack_name(context["run_id"])
        if event.get("status") != "success":
            raise AirflowFailException(
                f"staging stack {name} in {self.region_name} was not deleted: {event.get('message', event)}; "
                "delete it by hand"
            )
        return self._deleted(store, name, "deleted")

    def _deleted(self, store: ArtifactStore, name: str, what: str) -> dict[str, Any]:
        path = store.path(STAGE, f"{self.target.key}.stack.json")
        record = store.read_json(str(path)) if path.exists() else {"stack_name": name, "created": False}
        if record.get("created") or what == "deleted":
            record.update(deleted=True, deleted_at=record.get("deleted_at") or now_iso())
        store.write_json(STAGE, f"{self.target.key}.stack.json", record)
        self.log.info("Staging stack %s in %s: %s", name, self.region_name, what)
        return record
