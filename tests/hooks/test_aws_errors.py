"""aws_call: errors no retry can fix fail the task at once, naming API, account and region; the rest stay retryable."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError, EndpointConnectionError

from include.sandbox.server import SandboxServer
from patchcycle.hooks.aws_errors import aws_call, is_fatal
from patchcycle.hooks.patch_manager import PatchManagerHook

ACCOUNT, REGION = "123456789012", "eu-west-1"


def client_error(code: str, status: int, message: str = "the message", operation: str = "SendCommand") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


def raised_by(error: BaseException) -> BaseException:
    with pytest.raises(Exception) as caught, aws_call("ssm:SendCommand", ACCOUNT, REGION):
        raise error
    return caught.value


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("AccessDeniedException", 400),
        ("UnauthorizedOperation", 403),
        ("ValidationException", 400),
        ("ValidationError", 400),
        ("InvalidInstanceId", 400),
        ("InvalidDocument", 400),
        ("ExpiredTokenException", 400),
        ("InvalidParameterValue", 400),
        ("SomeOtherClientError", 400),  # any other 4xx but throttling: a retry sends the same bad request
    ],
)
def test_errors_no_retry_can_fix_fail_at_once_naming_api_account_and_region(code: str, status: int) -> None:
    error = client_error(code, status, message="User is not authorized to perform: ssm:SendCommand")
    assert is_fatal(error)
    failure = raised_by(error)
    assert isinstance(failure, AirflowFailException)
    text = str(failure)
    assert text.startswith(f"ssm:SendCommand failed in account {ACCOUNT}, region {REGION}: {code}: "), text
    assert "User is not authorized to perform: ssm:SendCommand" in text
    assert failure.__cause__ is error
    assert "retryable" not in text


@pytest.mark.parametrize(
    ("code", "status"),
    [
        # Throttling: botocore's standard retry mode retries these codes (botocore.retries.standard).
        ("ThrottlingException", 400),
        ("Throttling", 400),
        ("ThrottledException", 400),
        ("RequestLimitExceeded", 503),
        ("SlowDown", 503),
        ("TooManyRequestsException", 429),
        ("RequestThrottledException", 400),
        ("LimitExceededException", 400),
        ("PriorRequestNotComplete", 400),
        ("RequestTimeout", 400),
        ("SomeRateLimit", 429),  # HTTP 429 is throttling whatever the code
        # Server side.
        ("InternalFailure", 500),
        ("InternalServerError", 500),
        ("BadGateway", 502),
        ("ServiceUnavailable", 503),
        ("GatewayTimeout", 504),
    ],
)
def test_throttling_and_server_errors_stay_retryable(code: str, status: int) -> None:
    error = client_error(code, status)
    assert not is_fatal(error)
    failure = raised_by(error)
    assert not isinstance(failure, AirflowFailException)
    assert isinstance(failure, RuntimeError)
    expected = f"ssm:SendCommand failed in account {ACCOUNT}, region {REGION}: {code}: the message (retryable)"
    assert str(failure) == expected
    assert failure.__cause__ is error


def test_connection_errors_pass_through_for_the_task_retries() -> None:
    error = EndpointConnectionError(endpoint_url="https://ssm.eu-west-1.amazonaws.com/")
    assert raised_by(error) is error


def test_no_error_no_change() -> None:
    with aws_call("ssm:ListCommands", ACCOUNT, REGION):
        result = 42
    assert result == 42


# -- the same through the sandbox, over HTTP, with the amazon provider's hook ------------------


SCENARIO: dict[str, Any] = {
    "name": "aws-errors",
    "seed": 1,
    "clock": {"start": "2026-11-20T03:00:00Z"},
    "amis": {"ami-0a1b2c3d4e5f60001": {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {REGION: {"instance_groups": [{"name": "web", "count": 2, "ami": "ami-0a1b2c3d4e5f60001"}]}},
        }
    ],
    "faults": {
        "ssm:DescribeInstanceInformation": {"throttle_rate": 1.0},
        "ssm:DescribeInstancePatchStates": {"server_error_rate": 1.0},
        "ssm:ListCommands": {"access_denied": True},
    },
}
# One retry keeps botocore's backoff sleeps short; max_attempts counts the retries (botocore).
SANDBOX_MAX_ATTEMPTS = 1


@pytest.fixture
def hook(server: SandboxServer) -> PatchManagerHook:
    return PatchManagerHook(aws_conn_id="aws_default", region_name=REGION)


def calls(server: SandboxServer) -> dict[str, int]:
    with urllib.request.urlopen(f"{server.url}/_sandbox/calls", timeout=10) as response:
        counts: dict[str, int] = json.loads(response.read())
    return counts


def call_count(server: SandboxServer, api: str) -> int:
    return calls(server).get(api, 0)


def test_sandbox_throttling_is_retried_by_botocore_then_left_retryable(
    server: SandboxServer, hook: PatchManagerHook
) -> None:
    before = call_count(server, "ssm:DescribeInstanceInformation")
    with (
        pytest.raises(RuntimeError, match=r"ThrottlingException.*retryable") as caught,
        aws_call("ssm:DescribeInstanceInformation", ACCOUNT, REGION),
    ):
        hook.managed_instances()
    assert not isinstance(caught.value, AirflowFailException)
    assert call_count(server, "ssm:DescribeInstanceInformation") - before == 2  # the call and botocore's retry


def test_sandbox_server_errors_are_retried_then_left_retryable(server: SandboxServer, hook: PatchManagerHook) -> None:
    before = call_count(server, "ssm:DescribeInstancePatchStates")
    with (
        pytest.raises(RuntimeError, match=r"InternalFailure.*retryable"),
        aws_call("ssm:DescribeInstancePatchStates", ACCOUNT, REGION),
    ):
        hook.instance_patch_states(["i-0123456789abcdef0"])
    assert call_count(server, "ssm:DescribeInstancePatchStates") - before == 2


def test_sandbox_access_denied_fails_at_once(server: SandboxServer, hook: PatchManagerHook) -> None:
    before = call_count(server, "ssm:ListCommands")
    with (
        pytest.raises(AirflowFailException, match=f"ssm:ListCommands failed in account {ACCOUNT}, region {REGION}"),
        aws_call("ssm:ListCommands", ACCOUNT, REGION),
    ):
        hook.command("0b0f1f4e-0000-4000-8000-000000000000")
    assert call_count(server, "ssm:ListCommands") - before == 1


def test_sandbox_validation_error_fails_at_once(server: SandboxServer, hook: PatchManagerHook) -> None:
    instance_id = next(iter(server.world.instances(ACCOUNT, REGION)))
    with (
        pytest.raises(AirflowFailException, match=r"ssm:SendCommand failed .*: ValidationException"),
        aws_call("ssm:SendCommand", ACCOUNT, REGION),
    ):
        # "05%" breaks SendCommand's MaxErrors pattern (CycleConfig refuses it before any call).
        hook.send_patch_baseline([instance_id], operation="Scan", max_concurrency="50", max_errors="05%")
    assert call_count(server, "ssm:SendCommand") == 1
