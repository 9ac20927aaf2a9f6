"""Shared fixtures: an isolated Airflow home, and the sandbox AWS served in-process on a free port."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

# Airflow reads its configuration when first imported: set it before any test module imports airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="patchcycle-airflow-home-")
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        # Never let a test reach a real AWS account by accident.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., Any]]:
    """Start a sandbox for a scenario (a path or a decoded document); it is stopped after the test.

    moto's state is process-wide, so only one sandbox runs at a time in a test process.
    """
    from include.sandbox.scenario import DEFAULT_SCENARIO, Scenario, load_scenario, parse_scenario
    from include.sandbox.server import SandboxServer

    started: list[SandboxServer] = []

    def start(
        scenario: str | Path | dict[str, Any] | Scenario = DEFAULT_SCENARIO, strict: bool = True
    ) -> SandboxServer:
        for server in started:
            server.stop()
        started.clear()
        if isinstance(scenario, dict):
            scenario = parse_scenario(scenario, source="<test>")
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        server = SandboxServer(scenario, strict=strict).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., Any]) -> Any:
    """The default scenario, served strictly: a response that breaks botocore's model is a 500."""
    return sandbox_factory()


@pytest.fixture
def aws(sandbox: Any) -> Callable[..., Any]:
    """boto3 clients pointed at the sandbox: aws("ssm", region="eu-west-1")."""
    return client_factory(sandbox.url)


def sandbox_calls(url: str, api: str) -> int:
    """How many calls the sandbox has served for one "service:Operation"."""
    with urllib.request.urlopen(f"{url}/_sandbox/calls", timeout=10) as response:
        return int(json.loads(response.read()).get(api, 0))


def advance_clock(url: str, seconds: float) -> None:
    """Move the sandbox's simulated clock forward."""
    request = urllib.request.Request(
        f"{url}/_sandbox/clock/advance", data=json.dumps({"seconds": seconds}).encode(), method="POST"
    )
    urllib.request.urlopen(request, timeout=10).close()


def uninstall_patches(url: str, region: str, instance_id: str, patch_ids: list[str]) -> dict[str, Any]:
    """Drift in the sandbox: remove installed patches from an instance (it is rescanned at once)."""
    body = {"region": region, "instance_id": instance_id, "patch_ids": patch_ids}
    request = urllib.request.Request(f"{url}/_sandbox/patches/uninstall", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def first_trigger_payload(trigger: Any, timeout: float = 60) -> dict[str, Any]:
    """Run a trigger as the triggerer would, until its first event; returns the event's payload."""

    async def first() -> Any:
        events = trigger.run()
        try:
            return await anext(events)
        finally:
            await events.aclose()

    payload: dict[str, Any] = asyncio.run(asyncio.wait_for(first(), timeout=timeout)).payload
    json.dumps(payload)  # it travels through the database
    return payload


def client_factory(url: str) -> Callable[..., Any]:
    import boto3
    from botocore.config import Config

    def client(service: str, region: str = "us-east-1", **kwargs: Any) -> Any:
        config = Config(retries={"mode": "standard", "max_attempts": kwargs.pop("max_attempts", 1)})
        return boto3.client(service, region_name=region, endpoint_url=url, config=config, **kwargs)

    return client
