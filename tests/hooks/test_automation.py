"""AutomationHook against the sandbox: the runbook document calls (a missing document is None), starting an
execution on 1 to 50 instances (refused before any call otherwise, idempotent by client token), a parent's
children, the step a failed child failed at, stopping, and a change calendar's state."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox.server import SandboxServer
from patchcycle.core.runbooks import SNAPSHOT_RUNBOOK, runbook_parameters
from patchcycle.hooks.automation import AutomationHook
from patchcycle.operators.register_runbooks import AUTOMATION
from tests.conftest import advance_clock, sandbox_calls

ACCOUNT, REGION, DENIED_REGION = "123456789012", "us-east-1", "eu-west-1"
AL2023 = "ami-0a1b2c3d4e5f60001"
RUNBOOK_SECONDS = 120  # simulated: enough for the snapshot runbook to end
SCENARIO: dict[str, Any] = {
    "name": "automation-hook",
    "seed": 7,
    # Nearly frozen: only advance_clock moves simulated time.
    "clock": {"start": "2026-11-20T03:00:00Z", "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {"name": "web", "count": 51, "ami": AL2023},
                        {"name": "nosnap", "count": 1, "ami": AL2023},
                    ]
                },
                DENIED_REGION: {},
            },
        }
    ],
    "failures": [{"group": "nosnap", "snapshot_fails": True}],
    # A role without ssm:DescribeDocument there (the only fault: call counts stay exact).
    "faults": {"ssm:DescribeDocument": {"access_denied": True, "regions": [DENIED_REGION]}},
    "ebs": {"snapshot_seconds": 5},
    "change_calendars": [
        # Closed from 03:00 to 05:00.
        {"name": "freeze", "type": "DEFAULT_OPEN", "events": [{"start_after_seconds": 0, "duration_seconds": 7200}]},
        {"name": "always-open", "type": "DEFAULT_OPEN"},
    ],
}
MANAGED = {"patchcycle:managed": "true"}
SNAPSHOT_CONTENT = (AUTOMATION / f"{SNAPSHOT_RUNBOOK}.yaml").read_text()
pytestmark = pytest.mark.usefixtures("server")


def hook(region: str = REGION) -> AutomationHook:
    return AutomationHook(aws_conn_id="aws_default", region_name=region)


@pytest.fixture(scope="module")
def runbook(server: SandboxServer) -> str:
    """The snapshot runbook, created through the hook (as register_runbooks creates it)."""
    assert hook().create_runbook(SNAPSHOT_RUNBOOK, SNAPSHOT_CONTENT, MANAGED) == "1"
    return SNAPSHOT_RUNBOOK


def group(server: SandboxServer, name: str) -> list[str]:
    return sorted(i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.group == name)


def start(instance_ids: list[str], token: str | None = None, max_errors: str = "100%") -> str:
    parameters = runbook_parameters(SNAPSHOT_RUNBOOK, run_id="manual__hook", wave=1, health_checks={}, assume_role="")
    return hook().start(
        SNAPSHOT_RUNBOOK,
        instance_ids,
        parameters,
        max_concurrency="50",
        max_errors=max_errors,
        client_token=token or str(uuid.uuid4()),
        tags={"patchcycle:run-id": "manual__hook"},
    )


# -- documents -------------------------------------------------------------------------------------------


def test_document_describes_a_runbook_and_is_none_for_a_missing_one(runbook: str) -> None:
    document = hook().document(runbook)
    assert document is not None
    assert (document["Name"], document["DocumentType"], document["DocumentFormat"]) == (runbook, "Automation", "YAML")
    assert (document["DefaultVersion"], document["LatestVersion"]) == ("1", "1")
    assert hook().document_tags(runbook) == MANAGED
    assert hook().document_content(runbook, "$DEFAULT") == SNAPSHOT_CONTENT
    assert hook().document("PatchCycle-NoSuchRunbook") is None


def test_other_document_errors_are_not_read_as_missing(runbook: str) -> None:
    with pytest.raises(ClientError, match="AccessDenied"):
        hook(DENIED_REGION).document(runbook)
    with pytest.raises(ClientError, match="InvalidDocumentVersion"):
        hook().document_content(runbook, "7")


def test_an_update_is_a_new_version_that_becomes_default_only_when_set() -> None:
    name = "PatchCycle-HookUpdate"
    assert hook().create_runbook(name, SNAPSHOT_CONTENT, MANAGED) == "1"
    edited = SNAPSHOT_CONTENT.replace("description: 'Patch cycle:", "description: 'Edited:", 1)
    assert edited != SNAPSHOT_CONTENT

    assert hook().update_runbook(name, edited) == "2"
    assert hook().document_content(name, "$DEFAULT") == SNAPSHOT_CONTENT
    assert hook().document_content(name, "$LATEST") == edited

    hook().set_default_version(name, "2")
    document = hook().document(name)
    assert document is not None and document["DefaultVersion"] == "2"
    assert hook().document_content(name, "$DEFAULT") == edited


# -- executions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 51])
def test_start_refuses_0_or_51_instances_before_calling_aws(server: SandboxServer, runbook: str, count: int) -> None:
    instance_ids = group(server, "web")[:count]
    assert len(instance_ids) == count
    before = sandbox_calls(server.url, "ssm:StartAutomationExecution")
    with pytest.raises(ValueError, match=f"an execution targets 1 to 50 instances, got {count}"):
        start(instance_ids)
    assert sandbox_calls(server.url, "ssm:StartAutomationExecution") == before


def test_start_targets_each_instance_in_a_child_and_a_retry_returns_the_same_execution(
    server: SandboxServer, runbook: str
) -> None:
    web = group(server, "web")[:50]
    token = str(uuid.uuid4())
    parent_id = start(web, token)
    assert start(web, token) == parent_id  # a retried start: the client token

    parent = hook().execution(parent_id)
    assert (parent["DocumentName"], parent["TargetParameterName"]) == (runbook, "InstanceId")
    assert parent["Targets"] == [{"Key": "ParameterValues", "Values": web}]
    advance_clock(server.url, RUNBOOK_SECONDS)
    children = hook().children(parent_id)
    assert sorted(child["Target"] for child in children) == web  # 50: one page
    assert {child["ParentAutomationExecutionId"] for child in children} == {parent_id}
    assert {child["AutomationExecutionStatus"] for child in children} == {"Success"}
    assert hook().execution(parent_id)["AutomationExecutionStatus"] == "Success"
    assert hook().children(children[0]["AutomationExecutionId"]) == []


def test_failed_step_names_the_step_and_why_a_child_failed(server: SandboxServer, runbook: str) -> None:
    nosnap, web = group(server, "nosnap"), group(server, "web")[50:]
    parent_id = start([*web, *nosnap])
    advance_clock(server.url, RUNBOOK_SECONDS)
    children = {child["Target"]: child for child in hook().children(parent_id)}
    assert children[nosnap[0]]["AutomationExecutionStatus"] == "Failed"
    assert children[web[0]]["AutomationExecutionStatus"] == "Success"

    failed = hook().failed_step(children[nosnap[0]]["AutomationExecutionId"])

    assert failed is not None
    assert failed["StepName"] == "assertSnapshotsCompleted"  # the snapshots ended in error, not completed
    assert failed["StepStatus"] == "Failed"
    assert "['error']" in failed["FailureMessage"] and "['completed']" in failed["FailureMessage"]
    # A child that succeeded, and a parent (it runs no steps), failed at no step.
    assert hook().failed_step(children[web[0]]["AutomationExecutionId"]) is None
    assert hook().failed_step(parent_id) is None


def test_stop_cancels_a_running_execution_and_its_children(server: SandboxServer, runbook: str) -> None:
    parent_id = start(group(server, "web")[:2])
    advance_clock(server.url, 3)  # the children are running their steps
    hook().stop(parent_id)
    advance_clock(server.url, 2)
    assert hook().execution(parent_id)["AutomationExecutionStatus"] == "Cancelled"
    assert {c["AutomationExecutionStatus"] for c in hook().children(parent_id)} == {"Cancelled"}
    # Nothing a stopped child failed at: it was cancelled.
    assert hook().failed_step(hook().children(parent_id)[0]["AutomationExecutionId"]) is None


# -- change calendars ------------------------------------------------------------------------------------


def test_calendar_state_is_the_state_now_with_its_next_transition() -> None:
    closed = hook().calendar_state("freeze")
    assert closed["State"] == "CLOSED"
    assert closed["AtTime"].startswith("2026-11-20T03:")  # the simulated clock's now
    assert closed["NextTransitionTime"] == "2026-11-20T05:00:00Z"
    assert "ResponseMetadata" not in closed

    opened = hook().calendar_state("always-open")
    assert opened["State"] == "OPEN" and "NextTransitionTime" not in opened
    with pytest.raises(ClientError, match="InvalidDocument"):
        hook().calendar_state("no-such-calendar")
