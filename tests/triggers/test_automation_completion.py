"""AutomationCompletionTrigger: serializes for the triggerer, refuses malformed targets, and waits (aiobotocore,
against the sandbox's Automation engine running the project's PatchCycle-PrePatchSnapshot runbook) until every
parent execution is final, or until its time bound passes, across (connection, region) targets."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any, cast

import pytest
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.core.runbooks import SNAPSHOT_RUNBOOK, runbook_parameters
from patchcycle.hooks.automation import AutomationHook
from patchcycle.triggers.automation_completion import FINAL_STATUSES, AutomationCompletionTrigger
from tests.conftest import advance_clock, first_trigger_payload, sandbox_calls
from tests.operators.install_helpers import ACCOUNT, AL2023, BUCKET, cycle_config, register_runbooks, s3_root

REGION, OTHER_REGION = "us-east-1", "eu-west-1"
RUN_ID = "scheduled__automation_completion"
SNAPSHOT_SECONDS = 5
RUNBOOK_SECONDS = 120  # simulated: enough for any snapshot runbook here to end
SCENARIO: dict[str, Any] = {
    "name": "automation-completion",
    "seed": 7,
    # Nearly frozen: nothing runs unless a test moves the clock.
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {"name": "web", "count": 8, "ami": AL2023},
                        {"name": "nosnap", "count": 1, "ami": AL2023},
                    ],
                    "s3_buckets": [{"name": BUCKET}],
                },
                OTHER_REGION: {"instance_groups": [{"name": "web-eu", "count": 3, "ami": AL2023}]},
            },
        }
    ],
    "failures": [{"group": "nosnap", "snapshot_fails": True}],
    "ebs": {"snapshot_seconds": SNAPSHOT_SECONDS},
}
SANDBOX_DROP_FAULTS = True
# A second connection (another account's, in production) to the same sandbox.
SANDBOX_CONNECTIONS: dict[str, dict[str, Any]] = {"aws_eu": {}}
POLLS = "ssm:GetAutomationExecution"


@pytest.fixture(scope="module")
def runbooks(server: SandboxServer) -> None:
    """The project's runbooks registered in both regions, as register_runbooks leaves them."""
    config = cycle_config(s3_root("automation-completion"), regions=(REGION, OTHER_REGION))
    for region in (REGION, OTHER_REGION):
        register_runbooks(config, RUN_ID, region)


def group(server: SandboxServer, name: str, region: str = REGION) -> list[str]:
    return sorted(i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.group == name)


def snapshot(
    instance_ids: list[str], region: str = REGION, aws_conn_id: str = "aws_default", max_errors: str = "0"
) -> str:
    """Start the pre-patch snapshot runbook on the instances (a parent, a child each); returns the parent's id."""
    hook = AutomationHook(aws_conn_id=aws_conn_id, region_name=region)
    parameters = runbook_parameters(SNAPSHOT_RUNBOOK, run_id=RUN_ID, wave=1, health_checks={}, assume_role="")
    return hook.start(
        SNAPSHOT_RUNBOOK,
        instance_ids,
        parameters,
        max_concurrency="50",
        max_errors=max_errors,
        client_token=str(uuid.uuid4()),
        tags={"patchcycle:run-id": RUN_ID},
    )


def target(execution_ids: list[str], region: str = REGION, aws_conn_id: str = "aws_default") -> dict[str, Any]:
    return {"aws_conn_id": aws_conn_id, "region_name": region, "execution_ids": execution_ids}


async def first_event(trigger: AutomationCompletionTrigger) -> TriggerEvent:
    events = cast(AsyncGenerator[TriggerEvent, None], trigger.run())  # run() is an async generator
    try:
        return await anext(events)
    finally:
        await events.aclose()


def wait_while_running(server: SandboxServer, trigger: AutomationCompletionTrigger, polls: int) -> dict[str, Any]:
    """Run the trigger; once it has made `polls` calls with nothing final it must still wait; then move the clock
    on and return its event's payload."""
    before = sandbox_calls(server.url, POLLS)

    async def scenario() -> TriggerEvent:
        waiting = asyncio.ensure_future(first_event(trigger))
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(sandbox_calls, server.url, POLLS) - before < polls:
            assert not waiting.done(), f"yielded before the executions ended: {waiting.result().payload}"
            assert time.monotonic() < deadline, "the trigger does not poll"
            await asyncio.sleep(0.05)
        assert not waiting.done(), f"yielded before the executions ended: {waiting.result().payload}"
        await asyncio.to_thread(advance_clock, server.url, RUNBOOK_SECONDS)
        return await asyncio.wait_for(waiting, timeout=30)

    payload: dict[str, Any] = asyncio.run(scenario()).payload
    json.dumps(payload)  # it travels through the database
    return payload


def round_trip(trigger: AutomationCompletionTrigger) -> tuple[str, dict[str, Any], Any]:
    path, kwargs = trigger.serialize()
    # The triggerer imports it from sys.path: plugins/ is there, the DAG bundle is not.
    assert path == "patchcycle.triggers.automation_completion.AutomationCompletionTrigger"
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    again = cls(**json.loads(json.dumps(kwargs)))  # stored as JSON in the trigger table
    assert again.serialize() == (path, kwargs)
    return path, kwargs, again


# -- serialization and checks -----------------------------------------------------------------------------


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    targets = [
        target(["e-1", "e-2"], "us-east-1", "aws_prod"),
        target(["e-3"], "eu-west-1", "aws_prod"),
        {"aws_conn_id": None, "region_name": None, "execution_ids": []},  # boto3's default chain; nothing to wait on
    ]
    config = {"retries": {"mode": "adaptive", "max_attempts": 8}}
    trigger = AutomationCompletionTrigger(
        targets, poll_interval=5, timeout=90, started_at=1000.0, verify=False, botocore_config=config
    )
    _, kwargs, again = round_trip(trigger)
    assert kwargs == {
        "targets": targets,
        "poll_interval": 5,
        "timeout": 90,
        "started_at": 1000.0,
        "verify": False,
        "botocore_config": config,
    }
    assert again.execution_ids == ["e-1", "e-2", "e-3"]


def test_the_deadline_counts_from_the_first_deferral_not_a_triggerer_restart() -> None:
    trigger = AutomationCompletionTrigger([target(["e-1"])], timeout=60)
    _, kwargs, again = round_trip(trigger)
    assert abs(kwargs["started_at"] - time.time()) < 5
    assert again.started_at == trigger.started_at


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([target(["e-1"]), target(["e-2", "e-1"], OTHER_REGION)], r"unique across targets; repeated: \['e-1'\]"),
        ([target(["e-1", "e-1"])], r"repeated: \['e-1'\]"),
        ([{"aws_conn_id": "a", "execution_ids": ["e-1"]}], "exactly the keys"),
        ([{**target(["e-1"]), "command_ids": ["c-1"]}], "exactly the keys"),
        ([target("e-1")], "must be a list of execution id strings"),  # type: ignore[arg-type]
        ([target([1, 2])], "must be a list of execution id strings"),  # type: ignore[list-item]
    ],
)
def test_targets_are_checked_when_the_trigger_is_built(targets: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutomationCompletionTrigger(targets)


# -- against the sandbox ----------------------------------------------------------------------------------

with_runbooks = pytest.mark.usefixtures("runbooks")


@with_runbooks
def test_run_waits_until_every_execution_is_final_then_yields_each_status(server: SandboxServer) -> None:
    web = group(server, "web")
    good = snapshot(web[:3])
    failing = snapshot([web[3], *group(server, "nosnap")])  # MaxErrors 0: one failed child fails the parent
    trigger = AutomationCompletionTrigger([target([good, failing])], poll_interval=0.2)

    # Two rounds of polls (one call per parent each) while the runbooks run: it must keep waiting.
    payload = wait_while_running(server, trigger, polls=2 * 2)

    assert payload == {"status": "done", "executions": {good: "Success", failing: "Failed"}, "pending": []}
    hook = AutomationHook(aws_conn_id="aws_default", region_name=REGION)
    assert hook.execution(good)["AutomationExecutionStatus"] == "Success"
    assert hook.execution(failing)["AutomationExecutionStatus"] == "Failed"


@with_runbooks
def test_run_yields_timeout_with_the_pending_executions_when_the_bound_passes(server: SandboxServer) -> None:
    web = group(server, "web")
    finished = snapshot(web[4:5])
    advance_clock(server.url, RUNBOOK_SECONDS)  # that one is done; the next ones wait for a clock that stands still
    stuck = [snapshot(web[5:6]), snapshot(web[6:7])]
    trigger = AutomationCompletionTrigger([target([finished, *stuck])], poll_interval=0.2, timeout=0.5)
    started = time.monotonic()

    payload = first_trigger_payload(trigger, timeout=30)

    assert time.monotonic() - started >= 0.5
    assert payload["status"] == "timeout"
    assert payload["pending"] == sorted(stuck)
    assert payload["executions"][finished] == "Success"
    assert {payload["executions"][i] for i in stuck} <= {"Pending", "InProgress"}
    assert not {payload["executions"][i] for i in stuck} & FINAL_STATUSES


@with_runbooks
def test_run_waits_on_executions_of_two_targets_through_two_connections(server: SandboxServer) -> None:
    use1 = snapshot(group(server, "web")[7:8])
    eu = group(server, "web-eu", OTHER_REGION)
    euw1 = [snapshot(eu[:2], OTHER_REGION, "aws_eu"), snapshot(eu[2:], OTHER_REGION, "aws_eu")]
    trigger = AutomationCompletionTrigger(
        [target([use1]), target(euw1, OTHER_REGION, "aws_eu")],
        poll_interval=0.2,
    )

    payload = wait_while_running(server, trigger, polls=2 * 3)

    assert payload == {"status": "done", "executions": dict.fromkeys([use1, *euw1], "Success"), "pending": []}
    # Each parent was asked for in its own region: the eu-west-1 ones are unknown in us-east-1.
    for execution_id in euw1:
        children = AutomationHook(aws_conn_id="aws_eu", region_name=OTHER_REGION).children(execution_id)
        assert {c["AutomationExecutionStatus"] for c in children} == {"Success"}


@with_runbooks
def test_an_execution_id_of_another_region_fails_the_trigger(server: SandboxServer) -> None:
    """An execution asked for in the wrong target's region is not found there: the trigger errors (the task
    fails) rather than waiting out its bound."""
    execution_id = snapshot(group(server, "web")[:1])
    misfiled = AutomationCompletionTrigger([target([execution_id], OTHER_REGION)], poll_interval=0.1, timeout=5)
    with pytest.raises(ClientError, match="AutomationExecutionNotFoundException"):
        first_trigger_payload(misfiled, timeout=30)
