"""StackStatusTrigger: serializes for the triggerer, and runs botocore's CloudFormation waiters (aiobotocore,
against the sandbox) to a success or an error event."""

from __future__ import annotations

import importlib
import json

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.hooks.staging_stack import StagingStackHook
from patchcycle.triggers.stack_status import StackStatusTrigger
from tests.conftest import default_scenario, first_trigger_payload, sandbox_calls

REGION = "eu-west-1"
BROKEN = "staging-broken"  # stacks named so fail and roll back
TEMPLATE = json.dumps(
    {
        "Resources": {
            "Web": {
                "Type": "AWS::EC2::Instance",
                "Properties": {"ImageId": "ami-0a1b2c3d4e5f60001", "InstanceType": "t3.micro"},
            }
        }
    }
)

SCENARIO = default_scenario(
    cloudformation={"fail_stacks": [{"name_prefix": BROKEN, "reason": "Insufficient capacity."}]}
)
SANDBOX_DROP_FAULTS = True
pytestmark = pytest.mark.usefixtures("server")


def staging() -> StagingStackHook:
    return StagingStackHook(aws_conn_id="aws_default", region_name=REGION)


def trigger(stack_name: str, waiter_name: str, attempts: int = 3) -> StackStatusTrigger:
    return StackStatusTrigger(
        stack_name=stack_name,
        waiter_name=waiter_name,
        waiter_delay=0,
        waiter_max_attempts=attempts,
        aws_conn_id="aws_default",
        region_name=REGION,
    )


def test_serialize_round_trips_through_an_importable_class_path() -> None:
    original = StackStatusTrigger(
        stack_name="staging-1",
        waiter_name="stack_delete_complete",
        waiter_delay=15,
        waiter_max_attempts=40,
        aws_conn_id="aws_prod",
        region_name=REGION,
    )
    path, kwargs = original.serialize()
    assert path == "patchcycle.triggers.stack_status.StackStatusTrigger"
    assert kwargs == {
        "stack_name": "staging-1",
        "waiter_name": "stack_delete_complete",
        "waiter_delay": 15,
        "waiter_max_attempts": 40,
        "aws_conn_id": "aws_prod",
        "region_name": REGION,
    }
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert again.serialize() == (path, kwargs)
    assert again.waiter_args == {"StackName": "staging-1"}


def test_only_the_create_and_delete_waiters_are_accepted() -> None:
    with pytest.raises(ValueError, match="waiter_name must be one of"):
        trigger("staging-1", "stack_update_complete")


def test_hook_is_the_staging_stack_hook_of_the_triggers_connection_and_region() -> None:
    hook = trigger("staging-1", "stack_create_complete").hook()
    assert isinstance(hook, StagingStackHook)
    assert (hook.aws_conn_id, hook.region_name) == ("aws_default", REGION)


def test_create_complete_then_delete_complete_yield_success(server: SandboxServer) -> None:
    staging().create("staging-waited", TEMPLATE, {}, {"Purpose": "patchcycle-staging"})
    before = sandbox_calls(server.url, "cloudformation:DescribeStacks")
    assert first_trigger_payload(trigger("staging-waited", "stack_create_complete")) == {
        "status": "success",
        "stack_name": "staging-waited",
    }
    assert sandbox_calls(server.url, "cloudformation:DescribeStacks") - before == 1
    staging().delete("staging-waited")
    assert first_trigger_payload(trigger("staging-waited", "stack_delete_complete")) == {
        "status": "success",
        "stack_name": "staging-waited",
    }


def test_a_stack_that_never_existed_counts_as_deleted(server: SandboxServer) -> None:
    payload = first_trigger_payload(trigger("never-created", "stack_delete_complete"))
    assert payload == {"status": "success", "stack_name": "never-created"}


def test_create_complete_on_a_missing_stack_yields_an_error_event(server: SandboxServer) -> None:
    """The waiter's ValidationError acceptor is a failure state: the base trigger yields an error event
    (it does not raise), so the deferred task's execute_complete decides how to fail."""
    before = sandbox_calls(server.url, "cloudformation:DescribeStacks")
    payload = first_trigger_payload(trigger("no-such-stack", "stack_create_complete", attempts=5))
    assert set(payload) == {"status", "message", "stack_name"}
    assert (payload["status"], payload["stack_name"]) == ("error", "no-such-stack")
    assert payload["message"].startswith("CloudFormation stack no-such-stack was not created")
    assert "Stack with id no-such-stack does not exist" in payload["message"]
    assert "ValidationError" in payload["message"]
    assert sandbox_calls(server.url, "cloudformation:DescribeStacks") - before == 1  # terminal: no more attempts


def test_delete_complete_on_a_live_stack_runs_out_of_attempts(server: SandboxServer) -> None:
    staging().create("staging-kept", TEMPLATE, {}, {})
    before = sandbox_calls(server.url, "cloudformation:DescribeStacks")
    payload = first_trigger_payload(trigger("staging-kept", "stack_delete_complete", attempts=3))
    assert (payload["status"], payload["stack_name"]) == ("error", "staging-kept")
    assert "max attempts reached" in payload["message"]
    assert sandbox_calls(server.url, "cloudformation:DescribeStacks") - before == 3
    staging().delete("staging-kept")


def test_create_complete_on_a_rolled_back_stack_yields_an_error_event_with_its_status(server: SandboxServer) -> None:
    staging().create(BROKEN, TEMPLATE, {}, {})
    payload = first_trigger_payload(trigger(BROKEN, "stack_create_complete"))
    assert (payload["status"], payload["stack_name"]) == ("error", BROKEN)
    assert payload["message"].startswith(f"CloudFormation stack {BROKEN} was not created: ROLLBACK_COMPLETE - ")
    assert "The following resource(s) failed to create: [Web]" in payload["message"]
    assert staging().failure_reasons(BROKEN) == ["Web: Insufficient capacity."]  # what the operator reports
    staging().delete(BROKEN)
