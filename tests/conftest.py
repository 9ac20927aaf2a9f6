"""Shared fixtures: an isolated Airflow home, and the sandbox AWS served in-process on a free port."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

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


# The slowest files (each 2 to 7 minutes of a `make test` run). `make pytest` hands whole files to its two workers
# in collection order (--dist loadfile --no-loadscope-reorder), each worker holding the next file before it needs
# it: these start first, and the short files fill in at the end, instead of a long file starting last while the
# other worker sits idle. The demo and the Celery topology (the most processes) go to the same worker, one after
# the other, each beside a headless cycle rather than beside each other.
SLOWEST_FILES = (
    "tests/test_demo.py",
    "tests/e2e/test_install_cycle.py",
    "tests/e2e/test_celery_topology.py",
    "tests/e2e/test_scan_cycle.py",
    "tests/e2e/test_evidence_and_watch.py",
    "tests/e2e/test_patch_baselines_dag.py",
)


@pytest.hookimpl(trylast=True)  # after tests/e2e/conftest.py has marked its tests e2e
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files: SLOWEST_FILES, other e2e files, files with slow tests, then the rest by their number of
    tests (xdist's own order); within a file, the tests keep their order."""
    files = [item.nodeid.split("::", 1)[0] for item in items]
    counts = Counter(files)
    rank: dict[str, tuple[int, int]] = {}
    for path, item in zip(files, items, strict=True):
        if path in SLOWEST_FILES:
            key = (0, SLOWEST_FILES.index(path))
        elif item.get_closest_marker("e2e"):
            key = (1, -counts[path])
        elif item.get_closest_marker("slow"):
            key = (2, -counts[path])
        else:
            key = (3, -counts[path])
        rank[path] = min(rank.get(path, key), key)
    order = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (rank[item.nodeid.split("::", 1)[0]], order[id(item)]))


# moto's state is process-wide: the sandboxes these fixtures started and have not stopped yet (at most one).
_RUNNING: list[Any] = []


def _start_sandbox(scenario: Any, strict: bool = True) -> Any:
    from include.sandbox.server import SandboxServer

    if _RUNNING:
        raise RuntimeError(
            f"a sandbox is already running in this process ({_RUNNING[0].url}); moto's state is process-wide, so a "
            "module that uses `server` cannot also start another sandbox (sandbox_factory, fresh_server, sandbox)"
        )
    server = SandboxServer(scenario, strict=strict).start()
    _RUNNING.append(server)
    forget_object_stores()
    return server


def forget_object_stores() -> None:
    """Airflow caches object stores by connection id ("s3-aws_default"): a new sandbox is on a new port, so the
    stores of the last one must go (an artifact root on the sandbox's S3 would reach the stopped one)."""
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()


def _stop_sandbox(server: Any) -> None:
    try:
        server.stop()
    finally:
        _RUNNING.remove(server)


def _as_scenario(scenario: Any, source: str = "<test>", drop_faults: bool = False) -> Any:
    """A parsed Scenario from a path, a decoded document or a Scenario; drop_faults removes its `faults`."""
    from include.sandbox.scenario import Scenario, load_scenario, parse_scenario

    if isinstance(scenario, Scenario):
        return dataclasses.replace(scenario, faults={}) if drop_faults else scenario
    if not isinstance(scenario, dict):
        if not drop_faults:
            return load_scenario(scenario)
        source = f"<{Path(scenario).name} without faults>"
        scenario = yaml.safe_load(Path(scenario).read_text())
    document = copy.deepcopy(scenario)
    if drop_faults:
        document.pop("faults", None)
    return parse_scenario(document, source=source)


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., Any]]:
    """Start a sandbox for a scenario (a path, a decoded document or a Scenario); it is stopped after the test.

    moto's state is process-wide, so only one sandbox runs at a time in a test process.
    """
    from include.sandbox.scenario import DEFAULT_SCENARIO, Scenario
    from include.sandbox.server import SandboxServer

    started: list[SandboxServer] = []

    def start(
        scenario: str | Path | dict[str, Any] | Scenario = DEFAULT_SCENARIO, strict: bool = True
    ) -> SandboxServer:
        for server in started:
            _stop_sandbox(server)
        started.clear()
        server = _start_sandbox(_as_scenario(scenario), strict=strict)
        started.append(server)
        return server

    yield start
    for server in started:
        _stop_sandbox(server)


# -- `server` and `fresh_server`: the sandbox of a test module, with Airflow's connections pointed at it ----------
#
# Both read these optional module-level settings of the requesting test module:
#
#   SCENARIO              what the sandbox serves: a decoded document (dict), a path, or a parsed Scenario
#                         (default: include/sandbox/scenarios/default.yaml; default_scenario() below changes it)
#   SANDBOX_DROP_FAULTS   True: drop the scenario's `faults` (no throttling retries: exact call counts)
#   SANDBOX_MAX_ATTEMPTS  botocore's retries max_attempts in every connection below (default 3)
#   SANDBOX_CONNECTIONS   connections besides aws_default to the same sandbox: {conn_id: extra fields}, e.g.
#                         {"aws_eu": {}}; a connection with a role_arn has its STS client pointed at the sandbox
#
# `server` is module-scoped: started before the module's first test that needs it, stopped after its last
# (before the next module's starts: with --dist loadfile a worker runs whole files). A module whose tests all need
# the connection though not the object says so with `pytestmark = pytest.mark.usefixtures("server")`.
# `fresh_server` starts a new sandbox for each test (through sandbox_factory), for tests that count calls from zero
# or change state the next test must not see. A module uses one of the two.


def default_scenario(**sections: Any) -> dict[str, Any]:
    """The default scenario's document (a fresh copy), with top-level sections replaced or added."""
    from include.sandbox.scenario import DEFAULT_SCENARIO

    document: dict[str, Any] = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    return {**document, **sections}


def sandbox_scenario(module: ModuleType) -> Any:
    """The parsed scenario a test module asks for (SCENARIO, SANDBOX_DROP_FAULTS)."""
    from include.sandbox.scenario import DEFAULT_SCENARIO

    source = f"<{module.__name__}>"
    return _as_scenario(
        getattr(module, "SCENARIO", DEFAULT_SCENARIO), source, getattr(module, "SANDBOX_DROP_FAULTS", False)
    )


def sandbox_connections(module: ModuleType, url: str) -> dict[str, str]:
    """The AIRFLOW_CONN_* variables that point a test module's connections at the sandbox at `url`
    (aws_default, SANDBOX_CONNECTIONS, SANDBOX_MAX_ATTEMPTS)."""
    from include.demo import aws_connection_json

    max_attempts: int = getattr(module, "SANDBOX_MAX_ATTEMPTS", 3)
    wanted: dict[str, dict[str, Any]] = {"aws_default": {}, **getattr(module, "SANDBOX_CONNECTIONS", {})}
    variables = {}
    for conn_id, extra in wanted.items():
        connection = json.loads(aws_connection_json(url, max_attempts=max_attempts))
        connection["extra"].update(copy.deepcopy(extra))
        if "role_arn" in extra:
            # The provider's AssumeRole client ignores the global endpoint_url: point it at the sandbox explicitly.
            connection["extra"].setdefault("service_config", {}).setdefault("sts", {"endpoint_url": url})
        variables[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(connection)
    return variables


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's sandbox, served strictly, its connections pointed at it until the module's last test is done."""
    started = _start_sandbox(sandbox_scenario(request.module))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in sandbox_connections(request.module, started.url).items():
                patch.setenv(name, value)
            yield started
    finally:
        _stop_sandbox(started)


@pytest.fixture
def fresh_server(
    request: pytest.FixtureRequest, sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A new sandbox for this test, set up from the module's settings as `server` is; stopped after the test."""
    started = sandbox_factory(sandbox_scenario(request.module))
    for name, value in sandbox_connections(request.module, started.url).items():
        monkeypatch.setenv(name, value)
    return started


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


def sandbox_requests(url: str, operation: str = "") -> list[dict[str, Any]]:
    """The sandbox's request log: every call that commanded instances (optionally of one "service:Operation")."""
    query = f"?operation={operation}" if operation else ""
    with urllib.request.urlopen(f"{url}/_sandbox/requests{query}", timeout=10) as response:
        return list(json.loads(response.read())["requests"])


def hold_answer(url: str, operation: str, comment_prefix: str = "", seconds: float = 120) -> dict[str, Any]:
    """Arm the sandbox's hold: the next matching call does its work, and its answer waits for release_hold."""
    body = {"operation": operation, "comment_prefix": comment_prefix, "seconds": seconds}
    request = urllib.request.Request(f"{url}/_sandbox/hold", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def release_hold(url: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/_sandbox/release", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


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


def subscribed_topic(url: str, name: str, region: str = "us-east-1") -> tuple[str, Callable[[], list[dict[str, Any]]]]:
    """An SNS topic in the sandbox and a reader of what was published to it since the last read (through a
    subscribed SQS queue; read messages are deleted)."""
    clients = client_factory(url)
    sns, sqs = clients("sns", region=region), clients("sqs", region=region)
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def inbox() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(message["Body"]) for message in messages]

    return topic, inbox
