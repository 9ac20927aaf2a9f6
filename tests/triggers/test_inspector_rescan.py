"""InspectorRescanTrigger: serializes for the triggerer, and polls ListCoverage (aiobotocore, against the sandbox)
until every instance was rescanned after its install, or until its deadline."""

from __future__ import annotations

import importlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.sandbox import patching
from include.sandbox.server import SandboxServer
from patchcycle.core.timestamps import iso_utc
from patchcycle.triggers.inspector_rescan import InspectorRescanTrigger
from tests.conftest import advance_clock, first_trigger_payload, sandbox_calls

ACCOUNT, REGION = "123456789012", "us-east-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
DELAY = 600.0  # simulated seconds: nothing is rescanned unless a test moves the clock
SCENARIO: dict[str, Any] = {
    "name": "inspector-rescan",
    "seed": 11,
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1.0},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {"name": "web", "count": 3, "ami": AL2023, "patched_through": "2026-09-30"},
                        {"name": "offline", "count": 1, "ami": AL2023, "agent": "offline"},
                    ]
                }
            },
        }
    ],
    "inspector": {"rescan_delay_seconds": DELAY},
}


def group(server: SandboxServer, name: str) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.group == name]


def install(server: SandboxServer, instance_id: str) -> datetime:
    """Every catalog patch installed on the instance (a patch-state change), as Patch Manager would: its end time."""
    world = server.world
    with world.request():
        instance = world.instance(ACCOUNT, REGION, instance_id)
        assert instance is not None
        end = world.now()
        every = {p.id for p in world.catalog.for_os(instance.os)}
        patching.install(world, instance, end - timedelta(seconds=10), end, override_ids=every)
    return end


def trigger(installed_at: dict[str, str], seconds: float = 60, poll: float = 0.1) -> InspectorRescanTrigger:
    deadline = iso_utc(datetime.now(UTC) + timedelta(seconds=seconds))
    return InspectorRescanTrigger(
        aws_conn_id="aws_default",
        region_name=REGION,
        installed_at=installed_at,
        deadline=deadline,
        poll_seconds=poll,
    )


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    original = InspectorRescanTrigger(
        aws_conn_id="aws_prod",
        region_name="eu-west-1",
        installed_at={"i-0123456789abcdef0": "2026-11-20T04:00:00Z"},
        deadline="2026-11-20T06:00:00+00:00",
        poll_seconds=30,
        verify=False,
        botocore_config={"retries": {"mode": "standard", "max_attempts": 5}},
    )
    path, kwargs = original.serialize()
    assert path == "patchcycle.triggers.inspector_rescan.InspectorRescanTrigger"
    assert kwargs == {
        "aws_conn_id": "aws_prod",
        "region_name": "eu-west-1",
        "installed_at": {"i-0123456789abcdef0": "2026-11-20T04:00:00Z"},
        "deadline": "2026-11-20T06:00:00Z",
        "poll_seconds": 30.0,
        "verify": False,
        "botocore_config": {"retries": {"mode": "standard", "max_attempts": 5}},
    }
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)
    with pytest.raises(ValueError):
        InspectorRescanTrigger(
            aws_conn_id=None, region_name=None, installed_at={"i-1": "yesterday"}, deadline="2026-11-20T06:00:00Z"
        )


def test_waits_until_every_instance_is_rescanned_after_its_install(fresh_server: SandboxServer) -> None:
    first, second, _ = group(fresh_server, "web")
    installed = {first: install(fresh_server, first), second: install(fresh_server, second)}
    calls_before = sandbox_calls(fresh_server.url, "inspector2:ListCoverage")

    def rescan_once_polled() -> None:
        """The rescans come DELAY simulated seconds after the installs: move the clock once the trigger polled."""
        deadline = time.monotonic() + 30
        while (
            sandbox_calls(fresh_server.url, "inspector2:ListCoverage") == calls_before and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        advance_clock(fresh_server.url, DELAY + 1)

    mover = threading.Thread(target=rescan_once_polled)
    mover.start()
    try:
        payload = first_trigger_payload(trigger({iid: iso_utc(when) for iid, when in installed.items()}))
    finally:
        mover.join()
    assert payload["status"] == "rescanned"
    assert payload["rescanned"] == {iid: iso_utc(when + timedelta(seconds=DELAY)) for iid, when in installed.items()}
    assert payload["not_rescanned"] == {} and payload["not_covered"] == {}
    assert sandbox_calls(fresh_server.url, "inspector2:ListCoverage") - calls_before > 1  # it polled before the rescans


def test_an_instance_already_scanned_after_the_given_time_needs_no_wait(fresh_server: SandboxServer) -> None:
    unchanged = group(fresh_server, "web")[2]
    instance = fresh_server.world.instance(ACCOUNT, REGION, unchanged)
    assert instance is not None
    scanned = iso_utc(instance.registration_date)  # the scenario's instances were scanned at registration
    payload = first_trigger_payload(trigger({unchanged: scanned}))
    assert payload == {"status": "rescanned", "rescanned": {unchanged: scanned}, "not_rescanned": {}, "not_covered": {}}


def test_the_deadline_reports_which_instances_were_not_rescanned(fresh_server: SandboxServer) -> None:
    early, late, _ = group(fresh_server, "web")
    offline = group(fresh_server, "offline")[0]
    early_at = install(fresh_server, early)
    advance_clock(fresh_server.url, DELAY + 1)  # early's rescan is done
    late_at = install(fresh_server, late)  # late's is DELAY away: after the deadline
    registered = fresh_server.world.instance(ACCOUNT, REGION, late)
    assert registered is not None
    installed_at = {early: iso_utc(early_at), late: iso_utc(late_at), offline: iso_utc(late_at)}

    started = datetime.now(UTC)
    payload = first_trigger_payload(trigger(installed_at, seconds=1.0))

    assert datetime.now(UTC) - started >= timedelta(seconds=1)
    assert payload["status"] == "deadline"
    assert payload["rescanned"] == {early: iso_utc(early_at + timedelta(seconds=DELAY))}
    assert payload["not_rescanned"] == {
        late: iso_utc(registered.registration_date)
    }  # its last scan, before the install
    assert payload["not_covered"] == {offline: "UNMANAGED_EC2_INSTANCE"}  # never rescanned: not waited for
