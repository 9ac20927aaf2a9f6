"""CommandCompletionTrigger: serializes for the triggerer, and waits (aiobotocore, against the sandbox) until
every command is final, or until its time bound passes."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import urllib.request
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from include.sandbox.server import SandboxServer
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.triggers.command_completion import CommandCompletionTrigger
from tests.conftest import first_trigger_payload

ACCOUNT, REGION, OTHER_REGION = "123456789012", "us-east-1", "eu-west-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
SCAN_SECONDS = 600  # simulated: nothing finishes unless a test moves the clock
SCENARIO: dict[str, Any] = {
    "name": "command-completion",
    "seed": 7,
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1.0},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {"name": "web", "count": 4, "ami": AL2023, "tags": {"PatchGroup": "web"}},
                        {"name": "hung", "count": 1, "ami": AL2023, "tags": {"PatchGroup": "web"}},
                    ]
                },
                OTHER_REGION: {
                    "instance_groups": [
                        {"name": "web-eu", "count": 3, "ami": AL2023, "tags": {"PatchGroup": "web"}},
                        {"name": "hung-eu", "count": 1, "ami": AL2023, "tags": {"PatchGroup": "web"}},
                    ]
                },
            },
        }
    ],
    "failures": [{"group": "hung", "command_hangs": True}, {"group": "hung-eu", "command_hangs": True}],
    "commands": {"delivery_seconds": 1, "scan_seconds": SCAN_SECONDS},
}
# A second connection (another account's, in production) to the same sandbox.
SANDBOX_CONNECTIONS: dict[str, dict[str, Any]] = {"aws_eu": {}}
pytestmark = pytest.mark.usefixtures("server")


def advance(server: SandboxServer, seconds: float) -> None:
    request = urllib.request.Request(
        f"{server.url}/_sandbox/clock/advance", data=json.dumps({"seconds": seconds}).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def calls(server: SandboxServer, api: str) -> int:
    with urllib.request.urlopen(f"{server.url}/_sandbox/calls", timeout=10) as response:
        return int(json.loads(response.read()).get(api, 0))


def group(server: SandboxServer, name: str, region: str = REGION) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.group == name]


def scan(instance_ids: list[str], region: str = REGION, aws_conn_id: str = "aws_default") -> str:
    hook = PatchManagerHook(aws_conn_id=aws_conn_id, region_name=region)
    return hook.send_patch_baseline(instance_ids, operation="Scan", max_concurrency="50", max_errors="10%")


async def first_event(trigger: CommandCompletionTrigger) -> TriggerEvent:
    events = trigger.run()
    try:
        return await anext(events)
    finally:
        await events.aclose()


def round_trip(trigger: CommandCompletionTrigger) -> tuple[str, dict[str, Any], Any]:
    path, kwargs = trigger.serialize()
    # The triggerer imports it from sys.path: plugins/ is there, the DAG bundle is not.
    assert path == "patchcycle.triggers.command_completion.CommandCompletionTrigger"
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    json.dumps(kwargs)  # stored as JSON in the trigger table
    again = cls(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)
    return path, kwargs, again


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    trigger = CommandCompletionTrigger.for_commands(
        ["c-1", "c-2"], aws_conn_id="aws_prod", region_name="eu-west-1", poll_interval=5, timeout=90
    )
    _, kwargs, again = round_trip(trigger)
    assert kwargs["targets"] == [{"aws_conn_id": "aws_prod", "region_name": "eu-west-1", "command_ids": ["c-1", "c-2"]}]
    assert (kwargs["poll_interval"], kwargs["timeout"]) == (5, 90)
    # The deadline counts from the first deferral, not from a triggerer restart.
    assert abs(kwargs["started_at"] - time.time()) < 5
    assert again.started_at == trigger.started_at
    # A single (connection, region) pair reads as before.
    assert again.command_ids == ["c-1", "c-2"]
    assert (again.aws_conn_id, again.region_name) == ("aws_prod", "eu-west-1")


def test_serialize_round_trips_several_targets_in_order() -> None:
    targets = [
        {"aws_conn_id": "aws_prod", "region_name": "us-east-1", "command_ids": ["c-1", "c-2"]},
        {"aws_conn_id": "aws_prod", "region_name": "eu-west-1", "command_ids": ["c-3"]},
        {"aws_conn_id": None, "region_name": None, "command_ids": ["c-4"]},  # boto3's default chain
    ]
    config = {"retries": {"mode": "adaptive", "max_attempts": 8}}
    trigger = CommandCompletionTrigger(
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
    assert again.command_ids == ["c-1", "c-2", "c-3", "c-4"]
    with pytest.raises(AttributeError, match=r"spans 3 \(connection, region\) pairs"):
        _ = again.region_name


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (
            [
                {"aws_conn_id": "a", "region_name": "us-east-1", "command_ids": ["c-1"]},
                {"aws_conn_id": "a", "region_name": "eu-west-1", "command_ids": ["c-1"]},
            ],
            r"unique across targets; repeated: \['c-1'\]",
        ),
        ([{"aws_conn_id": "a", "region": "us-east-1", "command_ids": ["c-1"]}], "exactly the keys"),
        ([{"aws_conn_id": "a", "command_ids": ["c-1"]}], "exactly the keys"),
        ([{"aws_conn_id": "a", "region_name": "us-east-1", "command_ids": "c-1"}], "must be a list"),
    ],
)
def test_targets_are_checked_when_the_trigger_is_built(targets: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CommandCompletionTrigger(targets)


def test_run_waits_until_every_command_is_final_then_yields_their_summaries(server: SandboxServer) -> None:
    web = group(server, "web")
    command_ids = [scan(web[:2]), scan(web[2:])]
    before = calls(server, "ssm:ListCommands")
    trigger = CommandCompletionTrigger.for_commands(
        command_ids, aws_conn_id="aws_default", region_name=REGION, poll_interval=0.2
    )

    async def scenario() -> TriggerEvent:
        waiting = asyncio.ensure_future(first_event(trigger))
        deadline = time.monotonic() + 30
        # Two rounds of polls while the scans run: it must keep waiting.
        while await asyncio.to_thread(calls, server, "ssm:ListCommands") - before < 2 * len(command_ids):
            assert not waiting.done(), f"yielded before the commands finished: {waiting.result().payload}"
            assert time.monotonic() < deadline, "the trigger does not poll"
            await asyncio.sleep(0.05)
        assert not waiting.done(), f"yielded before the commands finished: {waiting.result().payload}"
        await asyncio.to_thread(advance, server, SCAN_SECONDS + 60)
        return await asyncio.wait_for(waiting, timeout=30)

    event = asyncio.run(scenario())
    payload = event.payload
    json.dumps(payload)
    assert payload["status"] == "done"
    assert payload["pending"] == []
    assert set(payload["commands"]) == set(command_ids)
    for summary in payload["commands"].values():
        assert summary == {
            "status": "Success",
            "target_count": 2,
            "completed_count": 2,
            "error_count": 0,
            "delivery_timed_out_count": 0,
        }
    assert calls(server, "ssm:ListCommands") - before >= 3 * len(command_ids)


def test_run_yields_timeout_with_the_pending_commands_when_the_bound_passes(server: SandboxServer) -> None:
    hung_command = scan(group(server, "hung"))
    finished_command = scan(group(server, "web")[:2])
    advance(server, SCAN_SECONDS + 60)  # the web scan is done; the hung one runs until its 7200 s timeout
    trigger = CommandCompletionTrigger.for_commands(
        [hung_command, finished_command], aws_conn_id="aws_default", region_name=REGION, poll_interval=0.2, timeout=0.5
    )
    started = time.monotonic()
    event = asyncio.run(asyncio.wait_for(first_event(trigger), timeout=30))
    assert time.monotonic() - started >= 0.5
    payload = event.payload
    json.dumps(payload)
    assert payload["status"] == "timeout"
    assert payload["pending"] == [hung_command]
    assert payload["commands"][hung_command]["status"] == "InProgress"
    assert payload["commands"][hung_command]["completed_count"] == 0
    assert payload["commands"][finished_command]["status"] == "Success"


def test_run_waits_on_commands_in_two_regions_through_two_connections(server: SandboxServer) -> None:
    use1 = scan(group(server, "web"))
    euw1 = [scan(group(server, "web-eu", OTHER_REGION)[:2], OTHER_REGION, "aws_eu")]
    euw1.append(scan(group(server, "web-eu", OTHER_REGION)[2:], OTHER_REGION, "aws_eu"))
    trigger = CommandCompletionTrigger(
        [
            {"aws_conn_id": "aws_default", "region_name": REGION, "command_ids": [use1]},
            {"aws_conn_id": "aws_eu", "region_name": OTHER_REGION, "command_ids": euw1},
        ],
        poll_interval=0.2,
    )
    before = calls(server, "ssm:ListCommands")

    async def scenario() -> TriggerEvent:
        waiting = asyncio.ensure_future(first_event(trigger))
        deadline = time.monotonic() + 30
        while await asyncio.to_thread(calls, server, "ssm:ListCommands") - before < 2 * 3:
            assert not waiting.done(), f"yielded before the commands finished: {waiting.result().payload}"
            assert time.monotonic() < deadline, "the trigger does not poll"
            await asyncio.sleep(0.05)
        assert not waiting.done(), f"yielded before the commands finished: {waiting.result().payload}"
        await asyncio.to_thread(advance, server, SCAN_SECONDS + 60)
        return await asyncio.wait_for(waiting, timeout=30)

    payload = asyncio.run(scenario()).payload
    json.dumps(payload)
    assert payload["status"] == "done"
    assert payload["pending"] == []
    assert set(payload["commands"]) == {use1, *euw1}
    assert {c: s["target_count"] for c, s in payload["commands"].items()} == {use1: 4, euw1[0]: 2, euw1[1]: 1}
    assert {s["status"] for s in payload["commands"].values()} == {"Success"}


def test_run_times_out_with_only_the_pending_commands_of_each_region(server: SandboxServer) -> None:
    hung_use1 = scan(group(server, "hung"))
    hung_euw1 = scan(group(server, "hung-eu", OTHER_REGION), OTHER_REGION)
    done_euw1 = scan(group(server, "web-eu", OTHER_REGION), OTHER_REGION)
    advance(server, SCAN_SECONDS + 60)
    trigger = CommandCompletionTrigger(
        [
            {"aws_conn_id": "aws_default", "region_name": REGION, "command_ids": [hung_use1]},
            {"aws_conn_id": "aws_default", "region_name": OTHER_REGION, "command_ids": [done_euw1, hung_euw1]},
        ],
        poll_interval=0.2,
        timeout=0.5,
    )
    payload = first_trigger_payload(trigger, timeout=30)
    assert payload["status"] == "timeout"
    assert payload["pending"] == sorted([hung_use1, hung_euw1])
    assert payload["commands"][done_euw1]["status"] == "Success"
    assert payload["commands"][hung_use1]["status"] == payload["commands"][hung_euw1]["status"] == "InProgress"


def test_a_command_id_of_another_region_is_not_found_there(server: SandboxServer) -> None:
    """Each command is asked for in its own target's region: misfiled, it stays pending until the bound."""
    command_id = scan(group(server, "web")[:1])
    advance(server, SCAN_SECONDS + 60)
    misfiled = CommandCompletionTrigger.for_commands(
        [command_id], aws_conn_id="aws_default", region_name=OTHER_REGION, poll_interval=0.1, timeout=0.3
    )
    payload = first_trigger_payload(misfiled, timeout=30)
    assert (payload["status"], payload["pending"], payload["commands"]) == ("timeout", [command_id], {})


def test_cancelling_the_wait_closes_every_pairs_client_cleanly(server: SandboxServer) -> None:
    """The triggerer cancels run() when the task is cleared or times out: no error but the cancellation."""
    hung_use1 = scan(group(server, "hung"))
    hung_euw1 = scan(group(server, "hung-eu", OTHER_REGION), OTHER_REGION)
    trigger = CommandCompletionTrigger(
        [
            {"aws_conn_id": "aws_default", "region_name": REGION, "command_ids": [hung_use1]},
            {"aws_conn_id": "aws_eu", "region_name": OTHER_REGION, "command_ids": [hung_euw1]},
        ],
        poll_interval=0,
    )
    before = calls(server, "ssm:ListCommands")

    async def scenario() -> None:
        waiting = asyncio.ensure_future(first_event(trigger))
        while await asyncio.to_thread(calls, server, "ssm:ListCommands") - before < 6:
            await asyncio.sleep(0.01)
        waiting.cancel()  # most likely in the middle of a round of ListCommands
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
