"""The staging replica's CloudFormation stack: created as a setup task, deleted as a teardown task.

One stack per (connection, region), one instance per staged profile. A stack that fails to create is
deleted by the setup task itself before it fails, because Airflow runs a teardown only after a
successful setup: a rolled-back stack must not be left behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import yaml
from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.config import REPO_ROOT, CycleConfig
from patchcycle.core.staging import instance_logical_id, stack_name, staging_template
from patchcycle.core.timestamps import now_iso
from patchcycle.hooks.aws_errors import aws_call
from patchcycle.hooks.staging_stack import StagingStackHook
from patchcycle.links.cloudformation import CloudFormationStackLink
from patchcycle.operators.base import TargetOperator
from patchcycle.readback.immutable import with_image_profiles
from patchcycle.run_artifacts import PROFILES, STACK, RunArtifacts, Step
from patchcycle.run_records import StackRecord
from patchcycle.triggers.stack_status import StackStatusTrigger

TEMPLATE = REPO_ROOT / "include" / "cloudformation" / "staging.yaml"
# Statuses in which a stack of this run already exists and only needs waiting for (a retried task).
IN_PROGRESS = frozenset({"CREATE_IN_PROGRESS", "CREATE_COMPLETE"})
# How long creating or deleting a stack may take.
STACK_TIMEOUT = timedelta(minutes=30)


class StackOperator(TargetOperator[StagingStackHook, CycleConfig]):
    """What creating and deleting the staging stack share: the stack's record, and waiting for the stack in the
    triggerer. Both link to the stack by its id (its ARN), which the console also opens once the stack is deleted."""

    aws_hook_class = StagingStackHook
    config_class = CycleConfig
    operator_extra_links = (CloudFormationStackLink(),)

    def poll_delay(self) -> int:
        """Whole seconds between stack status checks (the waiter's delay), at least 1."""
        return max(1, round(self.settings().poll_seconds))

    def wait_for_stack(self, name: str, waiter_name: str) -> NoReturn:
        delay = self.poll_delay()
        self.defer(
            trigger=StackStatusTrigger(
                stack_name=name,
                waiter_name=waiter_name,
                waiter_delay=delay,
                waiter_max_attempts=max(1, int(STACK_TIMEOUT.total_seconds() / delay)),
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
        )

    def stack_record(self, artifacts: RunArtifacts, name: str) -> StackRecord:
        """This target's stack record so far (a new one before the first write)."""
        found = artifacts.find(STACK, target=self.target)
        return found or StackRecord(
            stack_name=name, account_id=self.account_id(artifacts), region=self.target.region_name
        )

    def save(self, artifacts: RunArtifacts, record: StackRecord) -> dict[str, Any]:
        artifacts.write(STACK, record, target=self.target)
        return asdict(record)

    # What the stack is called in logs and errors, and its name in this run.
    label = "staging stack"

    def stack_name(self, context: Context) -> str:
        return stack_name(context["run_id"])

    def delete_stack(self, context: Context, artifacts: RunArtifacts) -> dict[str, Any]:
        """Delete this run's stack and wait in the triggerer; the record at once when there is none."""
        name = self.stack_name(context)
        account, region = self.account_id(artifacts), str(self.region_name)
        with aws_call("cloudformation:DescribeStacks", account, region):
            existing = self.hook.status(name)
        if existing is None:
            return self._deleted(artifacts, name, "no stack to delete")
        self.persist_link(context, CloudFormationStackLink, stack_id=existing["stack_id"])
        with aws_call("cloudformation:DeleteStack", account, region):
            self.hook.delete(name)
        self.wait_for_stack(name, "stack_delete_complete")

    def delete_and_wait(self, name: str) -> bool:
        """Delete a failed stack in the task itself (a rollback leaves no resources: it is quick); whether it went."""
        account, region = self._account_id, str(self.region_name)
        with aws_call("cloudformation:DeleteStack", account, region):
            self.hook.delete(name)
        deadline = time.monotonic() + STACK_TIMEOUT.total_seconds()
        while time.monotonic() < deadline:
            with aws_call("cloudformation:DescribeStacks", account, region):
                status = self.hook.status(name)
            if status is None or status["status"] == "DELETE_COMPLETE":
                return True
            if status["status"] == "DELETE_FAILED":
                self.log.error("Stack %s was not deleted: %s", name, status["reason"])
                return False
            time.sleep(min(self.poll_delay(), 5))
        return False

    def deletion_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """The deletion's end, as the trigger reports it: recorded, or the task fails naming the stack."""
        name = self.stack_name(context)
        if event.get("status") != "success":
            raise AirflowFailException(
                f"{self.label} {name} in {self.region_name} was not deleted: {event.get('message', event)}; "
                "delete it by hand"
            )
        return self._deleted(self.artifacts(context), name, "deleted")

    def _deleted(self, artifacts: RunArtifacts, name: str, what: str) -> dict[str, Any]:
        record = self.stack_record(artifacts, name)
        if record.created or what == "deleted":
            record = replace(record, deleted=True, deleted_at=record.deleted_at or now_iso())
        self.log.info("%s %s in %s: %s", self.label, name, self.region_name, what)
        return self.save(artifacts, record)


class StagingStackOperator(StackOperator):
    """Creates this target's staging stack and waits for it in the triggerer; records its instances."""

    def __init__(self, *, template_path: str | Path = TEMPLATE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.template_path = Path(template_path)

    def execute(self, context: Context) -> dict[str, Any]:
        artifacts, config = self.artifacts(context), self.settings()
        name = stack_name(context["run_id"])
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.STAGING):
            record = self.stack_record(artifacts, name)
            profiles = self._staged_profiles(artifacts)
            if profiles.empty:
                self.log.info("No staged profile in %s: no stack", self.target.key)
                return self.save(artifacts, replace(record, status="NOT_NEEDED"))
            with aws_call("cloudformation:DescribeStacks", account, region):
                existing = self.hook.status(name)
            if existing is None or existing["status"] not in IN_PROGRESS:
                if existing is not None:  # a failed earlier attempt of this run: start clean
                    self.delete_and_wait(name)
                template = staging_template(yaml.safe_load(self.template_path.read_text()), profiles)
                parameters = {
                    "RunId": context["run_id"][:255],
                    "InstanceProfile": config.install.staging_instance_profile,
                    "SubnetId": config.install.staging_subnet_id,
                }
                tags = {"patchcycle:run-id": context["run_id"][:255], "patchcycle:role": "staging"}
                with aws_call("cloudformation:CreateStack", account, region):
                    stack_id = self.hook.create(name, json.dumps(template), parameters, tags)
                self.log.info("Creating stack %s with %d staging instances", name, len(profiles))
            else:
                stack_id = existing["stack_id"]  # this run's stack, from an earlier try: waited for again
            self.persist_link(context, CloudFormationStackLink, stack_id=stack_id)
            # A re-run after a failed attempt must not keep that attempt's error and deletion in the record.
            self.save(
                artifacts,
                replace(record, created=False, status="CREATE_IN_PROGRESS", error="", deleted=False, deleted_at=""),
            )
        self.wait_for_stack(name, "stack_create_complete")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        artifacts = self.artifacts(context)
        name = stack_name(context["run_id"])
        account, region = self.account_id(artifacts), str(self.region_name)
        with self.recording_failure(artifacts, Step.STAGING):
            record = self.stack_record(artifacts, name)
            if event.get("status") != "success":
                with aws_call("cloudformation:DescribeStackEvents", account, region):
                    reasons = self.hook.failure_reasons(name)
                status = self.hook.status(name) or {}
                error = "; ".join(reasons) or str(status.get("reason") or event.get("message", "unknown error"))
                record = replace(record, created=False, status=str(status.get("status", "")), error=error)
                self.save(artifacts, record)
                deleted = self.delete_and_wait(name)
                self.save(artifacts, replace(record, deleted=deleted, deleted_at=now_iso() if deleted else ""))
                raise AirflowFailException(
                    f"staging stack {name} in {region} failed to create "
                    f"({status.get('status', 'unknown status')}): {error}; "
                    + ("the stack was deleted" if deleted else "DELETING THE STACK FAILED: delete it by hand")
                )
            with aws_call("cloudformation:DescribeStackResources", account, region):
                instances = self.hook.instances(name)
            profiles = self._staged_profiles(artifacts)
            by_profile = {
                str(profile_id): instances.get(logical_id, "")
                for profile_id, logical_id in zip(profiles["profile_id"], profiles["logical_id"], strict=True)
            }
            return self.save(
                artifacts,
                replace(record, created=True, created_at=now_iso(), status="CREATE_COMPLETE", instances=by_profile),
            )

    def _staged_profiles(self, artifacts: RunArtifacts) -> pd.DataFrame:
        profiles = with_image_profiles(artifacts, artifacts.read(PROFILES), self.target)
        mine = profiles[
            profiles["staged"]
            & (profiles["region"] == self.region_name)
            & (profiles["account_id"] == self.account_id(artifacts))
        ]
        return mine.assign(logical_id=[instance_logical_id(p) for p in mine["profile_id"]]).reset_index(drop=True)


class StagingTeardownOperator(StackOperator):
    """Deletes this target's staging stack, whatever happened upstream, and records when."""

    def execute(self, context: Context) -> dict[str, Any]:
        return self.delete_stack(context, self.artifacts(context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        return self.deletion_complete(context, event)
