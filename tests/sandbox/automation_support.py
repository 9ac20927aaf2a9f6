"""Shared by the SSM Automation tests: a small fleet, runbooks as YAML, and driving executions over the clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import yaml

from tests.conftest import advance_clock

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "us-east-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}
DELIVERY_SECONDS, SCRIPT_SECONDS = 1, 2


def scenario(**extra: Any) -> dict[str, Any]:
    """web (4), flaky (2, their scripts fail), fleet (60) in us-east-1; two instances in another account."""
    return {
        "name": "automation",
        "seed": 17,
        # Nearly frozen: only advance_clock moves simulated time, so every test is exact.
        "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1e-9},
        "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {
                "id": ACCOUNT,
                "regions": {
                    REGION: {
                        "instance_groups": [
                            {"name": "web", "count": 4, "ami": AL2023, "tags": {"Role": "web"}},
                            {"name": "flaky", "count": 2, "ami": AL2023, "tags": {"Role": "flaky"}},
                            {"name": "fleet", "count": 60, "ami": AL2023, "tags": {"Role": "fleet"}},
                        ]
                    }
                },
            },
            {
                "id": OTHER_ACCOUNT,
                "regions": {REGION: {"instance_groups": [{"name": "other", "count": 2, "ami": AL2023}]}},
            },
        ],
        "failures": [{"group": "flaky", "script_fails": True}],
        "commands": {"delivery_seconds": DELIVERY_SECONDS, "script_seconds": SCRIPT_SECONDS},
        **extra,
    }


_names = itertools.count(1)


def runbook(steps: list[dict[str, Any]], **top: Any) -> str:
    """An Automation document (YAML) with these mainSteps and top-level properties."""
    return yaml.safe_dump({"schemaVersion": "0.3", **top, "mainSteps": steps}, sort_keys=False)


def register(ssm: Any, content: str, prefix: str = "Test-Runbook") -> str:
    """CreateDocument of an Automation runbook under a fresh name; returns the name."""
    name = f"{prefix}-{next(_names)}"
    ssm.create_document(Name=name, Content=content, DocumentType="Automation", DocumentFormat="YAML")
    return name


def instances(ec2: Any, role: str) -> list[str]:
    """The ids of the instances with tag Role=role, in launch order."""
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Role", "Values": [role]}])["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def execution(ssm: Any, execution_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ssm.get_automation_execution(AutomationExecutionId=execution_id)["AutomationExecution"]
    return found


def steps(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The step executions of an execution by step name (the last run of each)."""
    return {step["StepName"]: step for step in found["StepExecutions"]}


def run_to_end(url: str, ssm: Any, execution_id: str, *, step: float = 1, limit: float = 600) -> dict[str, Any]:
    """Move the clock `step` seconds at a time until the execution has ended; returns it."""
    waited = 0.0
    while True:
        found = execution(ssm, execution_id)
        if found["AutomationExecutionStatus"] in TERMINAL:
            return found
        if waited >= limit:
            raise AssertionError(f"execution {execution_id} still {found['AutomationExecutionStatus']} after {limit}s")
        advance_clock(url, step)
        waited += step


def seconds(found: dict[str, Any], start_key: str = "ExecutionStartTime", end_key: str = "ExecutionEndTime") -> float:
    return float((found[end_key] - found[start_key]).total_seconds())


def children(ssm: Any, parent_id: str, page_size: int = 50) -> list[dict[str, Any]]:
    pages = ssm.get_paginator("describe_automation_executions").paginate(
        Filters=[{"Key": "ParentExecutionId", "Values": [parent_id]}], PaginationConfig={"PageSize": page_size}
    )
    return [metadata for page in pages for metadata in page["AutomationExecutionMetadataList"]]


Clients = Callable[..., Any]
