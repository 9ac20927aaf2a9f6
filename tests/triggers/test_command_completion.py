"""CommandCompletionTrigger: serializes for the triggerer, and waits (aiobotocore, against the sandbox) until
every command is final, or until its time bound passes."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent

from include.demo import aws_connection_json
from include.sandbox.scenario import parse_scenario
from include.sandbox.server import SandboxServer
from patchcycle.hooks.patch_manager import PatchManagerHook
from patchcycle.triggers.command_completion import CommandCompletionTrigger

ACCOUNT, REGION = "123456789012", "us-east-1"
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
                }
            },
        }
    ],
    "failures": [{"group": "hung", "command_hangs": True}],
    "commands": {"delivery_seconds": 1, "scan_seconds": SCAN_SECONDS},
}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    started = SandboxServer(parse_scenario(SCENARIO, source="<test_command_completion>"), strict=True).start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def aws_default(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_json(server.url, max_attempts=3))


def advance(server: SandboxServer, seconds: float) -> None:
    request = urllib.request.Request(
        f"{server.url}/_sandbox/clock/advance", data=json.dumps({"seconds": seconds}).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def calls(server: SandboxServer, api: str) -> int:
    with urllib.request.urlopen(f"{server.url}/_sandbox/calls", timeout=10) as response:
        return int(json.loads(response.read()).get(api, 0))


def group(server: SandboxServer, name: str) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.group == name]


def scan(instance_ids: list[str]) -> str:
    hook = PatchManagerHook(aws_conn_id="aws_default", region_name=REGION)
    return hook.send_patch_baseline(instance_ids, operation="Scan", max_concurrency="50", max_errors="10%")


async def first_event(trigger: CommandCompletionTrigger) -> TriggerEvent:
    events = trigger.run()
    try:
        return await anext(events)
    finally:
        await events.aclose()


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    trigger = CommandCompletionTrigger(
        ["c-1", "c-2"], aws_conn_id="aws_prod", region_name="eu-west-1", poll_interval=5, timeout=90
    )
    path, kwargs = trigger.serialize()
    # The triggerer imports it from sys.path: plugins/ is there, the DAG bundle is not.
    assert path == "patchcycle.triggers.command_completion.CommandCompletionTrigger"
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    json.dumps(kwargs)  # stored as JSON in the trigger table
    again = cls(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)
    assert kwargs["command_ids"] == ["c-1", "c-2"]
    assert (kwargs["aws_conn_id"], kwargs["region_name"]) == ("aws_prod", "eu-west-1")
    assert (kwargs["poll_interval"], kwargs["timeout"]) == (5, 90)
    # The deadline counts from the first deferral, not from a triggerer restart.
    assert abs(kwargs["started_at"] - time.time()) < 5
    assert again.started_at == trigger.started_at


def test_run_waits_until_every_command_is_final_then_yields_their_summaries(server: SandboxServer) -> None:
    web = group(server, "web")
    command_ids = [scan(web[:2]), scan(web[2:])]
    before = calls(server, "ssm:ListCommands")
    trigger = CommandCompletionTrigger(command_ids, aws_conn_id="aws_default", region_name=REGION, poll_interval=0.2)

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
    trigger = CommandCompletionTrigger(
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
