"""PatchScanOperator against the sandbox (default scenario, no injected faults): execute defers with the Scan
commands, the real trigger waits on them, execute_complete writes the plan, compliance and scan failures."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from include.sandbox.server import SandboxServer
from patchcycle.core.scope import Scope, apply_scope
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.triggers.command_completion import CommandCompletionTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls

ACCOUNT = "123456789012"
DAG_ID = "patch_cycle"
RUN_ID = "manual__scan"
SANDBOX_DROP_FAULTS = True  # the default scenario, exact call counts: no throttling retries


@pytest.fixture(scope="module")
def root(server: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifact root holding RUN_ID's inventory of both regions (no scope)."""
    path = tmp_path_factory.mktemp("artifacts")
    for region in ("us-east-1", "eu-west-1"):
        InventoryOperator(task_id="inventory", region_name=region, artifact_root=f"file://{path}").execute(
            context(RUN_ID)
        )
    return path


def context(run_id: str) -> Any:
    return {"dag": SimpleNamespace(dag_id=DAG_ID), "run_id": run_id, "params": {}}


def artifact(root: Path, run_id: str, stage: str, name: str) -> Path:
    return root / DAG_ID / run_id / stage / name


def scan_operator(root: Path, region: str, **kwargs: Any) -> PatchScanOperator:
    return PatchScanOperator(task_id="match", region_name=region, artifact_root=f"file://{root}", **kwargs)


def deferral(operator: PatchScanOperator, run_id: str = RUN_ID) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as caught:
        operator.execute(context(run_id))
    return caught.value


def online(server: SandboxServer, region: str) -> list[str]:
    """Managed instances with an Online agent: what the Scan must reach."""
    return sorted(i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.registered and i.online)


def with_fault(server: SandboxServer, region: str, fault: str) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, region).values() if getattr(i.faults, fault)]


def test_scan_defers_with_batches_of_fifty_then_writes_plan_compliance_and_failures(
    server: SandboxServer, root: Path
) -> None:
    region, key = "us-east-1", "aws_default.us-east-1"
    targets = online(server, region)
    assert len(targets) == 86
    (failing,) = with_fault(server, region, "scan_fails")
    operator = scan_operator(root, region, poll_seconds=0.2, command_timeout_minutes=5)
    sent_before = sandbox_calls(server.url, "ssm:SendCommand")

    deferred = deferral(operator)
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(minutes=15)  # the trigger's own bound plus a margin
    trigger = deferred.trigger
    assert isinstance(trigger, CommandCompletionTrigger)
    assert len(trigger.command_ids) == math.ceil(len(targets) / 50) == 2
    assert sandbox_calls(server.url, "ssm:SendCommand") - sent_before == 2
    assert (trigger.aws_conn_id, trigger.region_name) == ("aws_default", region)
    assert (trigger.poll_interval, trigger.timeout) == (0.2, 300.0)
    commands = json.loads(artifact(root, RUN_ID, "match", f"{key}.commands.json").read_text())
    assert commands == {"scan": trigger.command_ids, "instances": targets}

    advance_clock(server.url, 120)
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    summary = operator.execute_complete(context(RUN_ID), payload)

    failures = json.loads(artifact(root, RUN_ID, "match", f"{key}.scan_failures.json").read_text())
    assert list(failures) == [failing]
    assert failures[failing].startswith("Failed")
    compliance = pd.read_parquet(artifact(root, RUN_ID, "match", f"{key}.compliance.parquet"))
    scanned = sorted(set(targets) - {failing})
    assert sorted(compliance["resource_id"]) == scanned  # a failed scan's old report is not this run's state

    ssm = client_factory(server.url)("ssm", region=region)
    states = [
        state
        for start in range(0, len(scanned), 50)
        for state in ssm.describe_instance_patch_states(InstanceIds=scanned[start : start + 50])["InstancePatchStates"]
    ]
    non_compliant = {
        s["InstanceId"]
        for s in states
        if s["MissingCount"] + s["FailedCount"] + s.get("InstalledPendingRebootCount", 0) > 0
    }
    assert non_compliant, "the default scenario leaves instances missing patches"
    plan = pd.read_parquet(artifact(root, RUN_ID, "match", f"{key}.plan.parquet"))
    assert set(plan.loc[plan["resource_type"] == "ec2", "resource_id"]) == non_compliant
    assert sorted(plan.loc[plan["resource_type"] == "rds", "resource_id"]) == ["orders-db", "storefront-db"]
    assert summary == {
        "aws_conn_id": "aws_default",
        "region_name": region,
        "scanned": len(targets),
        "scan_failures": 1,
        "non_compliant": len(non_compliant),
        "plan_rows": len(plan),
    }


def test_a_hung_scan_is_cancelled_and_its_instance_reported_as_not_finished(server: SandboxServer, root: Path) -> None:
    region, key = "eu-west-1", "aws_default.eu-west-1"
    targets = online(server, region)
    (hung,) = with_fault(server, region, "command_hangs")
    # Templated fields arrive as strings when not rendered as native objects.
    operator = scan_operator(root, region, poll_seconds="0.2", command_timeout_minutes="0.01")
    deferred = deferral(operator)
    trigger = deferred.trigger
    assert len(trigger.command_ids) == math.ceil(len(targets) / 50) == 2

    advance_clock(server.url, 120)  # every scan is done but the hung one, which would run for the document's 2 h
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "timeout"
    (late,) = payload["pending"]
    cancels_before = sandbox_calls(server.url, "ssm:CancelCommand")
    summary = operator.execute_complete(context(RUN_ID), payload)

    assert sandbox_calls(server.url, "ssm:CancelCommand") - cancels_before == 1
    ssm = client_factory(server.url)("ssm", region=region)
    (invocation,) = ssm.list_command_invocations(CommandId=late, InstanceId=hung)["CommandInvocations"]
    assert invocation["Status"] in ("Cancelling", "Cancelled")
    failures = json.loads(artifact(root, RUN_ID, "match", f"{key}.scan_failures.json").read_text())
    assert list(failures) == [hung]
    assert "did not finish" in failures[hung] and "cancelled" in failures[hung]
    compliance = pd.read_parquet(artifact(root, RUN_ID, "match", f"{key}.compliance.parquet"))
    assert hung not in set(compliance["resource_id"])
    assert (summary["scanned"], summary["scan_failures"]) == (len(targets), 1)


def test_a_region_with_nothing_to_scan_returns_without_deferring(server: SandboxServer, root: Path) -> None:
    run_id, key = "manual__empty", "aws_default.us-east-1"
    # RUN_ID's inventory of us-east-1 under a scope that excludes everything.
    for name in (f"{key}.parquet", f"{key}.rds_plan.parquet"):
        frame = pd.read_parquet(artifact(root, RUN_ID, "inventory", name))
        if "in_scope" in frame.columns:
            scope = Scope.from_params({"include_tags": {"App": ["no-such-app"]}})
            frame = apply_scope(frame.drop(columns=["in_scope", "scope_reason"]), scope)
            assert len(frame) and not frame["in_scope"].any()
        target = artifact(root, run_id, "inventory", name)
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target, index=False)
    before = {api: sandbox_calls(server.url, api) for api in ("ssm:SendCommand", "ssm:DescribeInstancePatchStates")}

    summary = scan_operator(root, "us-east-1").execute(context(run_id))  # no TaskDeferred

    assert summary == {
        "aws_conn_id": "aws_default",
        "region_name": "us-east-1",
        "scanned": 0,
        "scan_failures": 0,
        "non_compliant": 0,
        "plan_rows": 0,
    }
    assert {api: sandbox_calls(server.url, api) for api in before} == before
    assert len(pd.read_parquet(artifact(root, run_id, "match", f"{key}.plan.parquet"))) == 0
    assert len(pd.read_parquet(artifact(root, run_id, "match", f"{key}.compliance.parquet"))) == 0
    assert json.loads(artifact(root, run_id, "match", f"{key}.scan_failures.json").read_text()) == {}


def test_missing_inventory_fails_without_calling_aws_and_records_the_error(
    server: SandboxServer, tmp_path: Path
) -> None:
    before = sandbox_calls(server.url, "ssm:SendCommand")
    with pytest.raises(AirflowFailException, match=r"no inventory for aws_default\.us-east-1"):
        scan_operator(tmp_path, "us-east-1").execute(context("manual__no_inventory"))
    assert sandbox_calls(server.url, "ssm:SendCommand") == before
    recorded = json.loads(
        artifact(tmp_path, "manual__no_inventory", "errors", "match.aws_default.us-east-1.json").read_text()
    )
    assert recorded["stage"] == "match" and "no inventory" in recorded["error"]
