"""PatchScanOperator against the sandbox (default scenario, no injected faults): execute defers with the Scan
commands, the real trigger waits on them, execute_complete writes the plan, compliance and scan failures."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.core.scope import SCOPE_COLUMNS, Scope, apply_scope
from patchcycle.core.verdicts import ReasonCode, ScanFailure
from patchcycle.links.ssm import RunCommandLink
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.operators.patch_scan import PatchScanOperator
from patchcycle.run_artifacts import (
    INVENTORY,
    INVENTORY_SUMMARY,
    MATCH_COMPLIANCE,
    MATCH_PLAN,
    RDS_PLAN,
    SCAN_COMMANDS,
    SCAN_FAILURES,
    TARGET_ERROR,
    RunArtifacts,
    Step,
)
from patchcycle.run_records import ScanCommands
from patchcycle.triggers.command_completion import CommandCompletionTrigger
from tests.conftest import advance_clock, client_factory, first_trigger_payload, sandbox_calls
from tests.operators.install_helpers import (
    ACCOUNT,
    LinkTi,
    context,
    copy_run,
    cycle_config,
    deferral,
    linked_context,
    run_artifacts,
    s3_root,
)

BASE_RUN = "manual__inventory"
EAST, WEST = Target("aws_default", "us-east-1"), Target("aws_default", "eu-west-1")
ROOT = s3_root("patch-scan")  # the default scenario's patchcycle-artifacts bucket
INVENTORIED = (INVENTORY, RDS_PLAN, INVENTORY_SUMMARY)
SANDBOX_DROP_FAULTS = True  # the default scenario, exact call counts: no throttling retries


def config(**params: Any) -> dict[str, Any]:
    """A scan run's validated config over both regions."""
    return cycle_config(ROOT, regions=[EAST.region_name, WEST.region_name], mode="scan", **params)


@pytest.fixture(scope="module")
def base(server: SandboxServer) -> RunArtifacts:
    """BASE_RUN's inventory of both regions (no scope); each test copies it into a run of its own."""
    for target in (EAST, WEST):
        InventoryOperator(task_id="inventory", config=config(), **target.as_kwargs()).execute(context(BASE_RUN))
    return run_artifacts(config(), BASE_RUN)


def new_run(run_id: str) -> RunArtifacts:
    """A run holding BASE_RUN's inventories; its artifacts."""
    return copy_run(config(), BASE_RUN, run_id, INVENTORIED, [EAST, WEST])


def scan_operator(target: Target, **params: Any) -> PatchScanOperator:
    return PatchScanOperator(task_id="match", config=config(**params), **target.as_kwargs())


def online(server: SandboxServer, region: str) -> list[str]:
    """Managed instances with an Online agent: what the Scan must reach."""
    return sorted(i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.registered and i.online)


def with_fault(server: SandboxServer, region: str, fault: str) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, region).values() if getattr(i.faults, fault)]


def test_scan_defers_with_batches_of_fifty_then_writes_plan_compliance_and_failures(
    server: SandboxServer, base: RunArtifacts
) -> None:
    run_id, region = "manual__scan", EAST.region_name
    artifacts = new_run(run_id)
    targets = online(server, region)
    assert len(targets) == 86
    (failing,) = with_fault(server, region, "scan_fails")
    operator = scan_operator(EAST, poll_seconds=0.2, command_timeout_minutes=5)
    sent_before = sandbox_calls(server.url, "ssm:SendCommand")
    ti = LinkTi()

    deferred = deferral(operator, linked_context(run_id, ti))
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(minutes=15)  # the trigger's own bound plus a margin
    trigger = deferred.trigger
    assert isinstance(trigger, CommandCompletionTrigger)
    assert len(trigger.command_ids) == math.ceil(len(targets) / 50) == 2
    assert sandbox_calls(server.url, "ssm:SendCommand") - sent_before == 2
    assert (trigger.aws_conn_id, trigger.region_name) == ("aws_default", region)
    assert (trigger.poll_interval, trigger.timeout) == (0.2, 300.0)
    commands = artifacts.read(SCAN_COMMANDS, target=EAST)
    assert commands == ScanCommands(command_ids=trigger.command_ids, instances=targets)
    # The task links to its first command, in its region, while it waits.
    assert ti.url(RunCommandLink()) == (
        f"https://console.aws.amazon.com/systems-manager/run-command/{trigger.command_ids[0]}?region={region}"
    )

    advance_clock(server.url, 120)
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "done"
    summary = operator.execute_complete(context(run_id), payload)

    failures = artifacts.read(SCAN_FAILURES, target=EAST)
    assert list(failures) == [failing]
    assert failures[failing].reason_code == ReasonCode.SCAN_FAILED
    assert failures[failing].detail.startswith("Failed")
    compliance = artifacts.read(MATCH_COMPLIANCE, target=EAST)
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
    plan = artifacts.read(MATCH_PLAN, target=EAST)
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


def test_a_hung_scan_is_cancelled_at_the_time_limit_and_its_instance_reported_as_a_scan_timeout(
    server: SandboxServer, base: RunArtifacts
) -> None:
    run_id, region = "manual__hung", WEST.region_name
    artifacts = new_run(run_id)
    targets = online(server, region)
    (hung,) = with_fault(server, region, "command_hangs")
    operator = scan_operator(WEST, poll_seconds=0.2, command_timeout_minutes=0.01)
    deferred = deferral(operator, context(run_id))
    trigger = deferred.trigger
    assert len(trigger.command_ids) == math.ceil(len(targets) / 50) == 2

    advance_clock(server.url, 120)  # every scan is done but the hung one, which would run for the document's 2 h
    payload = first_trigger_payload(trigger)
    assert payload["status"] == "timeout"
    (late,) = payload["pending"]
    cancels_before = sandbox_calls(server.url, "ssm:CancelCommand")
    summary = operator.execute_complete(context(run_id), payload)

    assert sandbox_calls(server.url, "ssm:CancelCommand") - cancels_before == 1
    ssm = client_factory(server.url)("ssm", region=region)
    (invocation,) = ssm.list_command_invocations(CommandId=late, InstanceId=hung)["CommandInvocations"]
    assert invocation["Status"] in ("Cancelling", "Cancelled")
    failures = artifacts.read(SCAN_FAILURES, target=WEST)
    assert failures == {
        hung: ScanFailure(ReasonCode.SCAN_TIMEOUT, "scan did not finish within 0.01 minutes (cancelled)")
    }
    compliance = artifacts.read(MATCH_COMPLIANCE, target=WEST)
    assert hung not in set(compliance["resource_id"])
    assert (summary["scanned"], summary["scan_failures"]) == (len(targets), 1)


def test_a_region_with_nothing_to_scan_returns_without_deferring(server: SandboxServer, base: RunArtifacts) -> None:
    run_id = "manual__empty"
    artifacts = new_run(run_id)
    # BASE_RUN's inventory of us-east-1 under a scope that excludes everything.
    scope = Scope.from_params({"include_tags": {"App": ["no-such-app"]}})
    inventory = apply_scope(base.read(INVENTORY, target=EAST).drop(columns=list(SCOPE_COLUMNS)), scope)
    assert len(inventory) and not inventory["in_scope"].any()
    artifacts.write(INVENTORY, inventory, target=EAST)
    before = {api: sandbox_calls(server.url, api) for api in ("ssm:SendCommand", "ssm:DescribeInstancePatchStates")}

    summary = scan_operator(EAST).execute(context(run_id))  # no TaskDeferred

    assert summary == {
        "aws_conn_id": "aws_default",
        "region_name": "us-east-1",
        "scanned": 0,
        "scan_failures": 0,
        "non_compliant": 0,
        "plan_rows": 0,
    }
    assert {api: sandbox_calls(server.url, api) for api in before} == before
    assert len(artifacts.read(MATCH_PLAN, target=EAST)) == 0
    assert len(artifacts.read(MATCH_COMPLIANCE, target=EAST)) == 0
    assert artifacts.read(SCAN_FAILURES, target=EAST) == {}
    assert not artifacts.exists(SCAN_COMMANDS, target=EAST)


def test_missing_inventory_fails_without_calling_aws_and_records_the_error(server: SandboxServer) -> None:
    run_id = "manual__no_inventory"
    artifacts = run_artifacts(config(), run_id)  # nothing: its inventory task did not finish
    before = sandbox_calls(server.url, "ssm:SendCommand")
    missing = f"{artifacts.uri(INVENTORY, target=EAST)} is missing: the task that writes it (inventory) did not finish"
    with pytest.raises(AirflowFailException) as caught:
        scan_operator(EAST).execute(context(run_id))
    assert str(caught.value) == missing
    assert sandbox_calls(server.url, "ssm:SendCommand") == before
    recorded = artifacts.read(TARGET_ERROR, step=Step.MATCH, target=EAST)
    assert recorded.stage == "match" and recorded.error == f"ArtifactMissing: {missing}"
    assert not artifacts.exists(MATCH_PLAN, target=EAST)
