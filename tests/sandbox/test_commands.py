"""Run Command in the sandbox (commands.py) and its SSM handlers (ssm_commands.py), without HTTP.

Each test seeds a small fleet into a fresh moto (mock_aws) through the real seeder and drives the
handlers directly, moving the simulated clock by hand (the scenario's clock barely runs on its
own). Every handler call checks the request and the response against botocore's model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.ssm.responses import SimpleSystemManagerResponse

from include.sandbox import commands, fleet, patching, protocol, ssm_commands
from include.sandbox.api import RequestContext
from include.sandbox.protocol import AwsApiError
from include.sandbox.scenario import parse_scenario
from include.sandbox.world import World

ACCOUNT = "123456789012"
REGION = "us-east-1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
AL2023, WINDOWS = "ami-0a2023000000000a1", "ami-0c2022000000000c1"
# Timings of the scenario below (seconds of simulated time).
DELIVERY, SCAN, INSTALL, SCRIPT, REBOOT = 1, 5, 20, 2, 10
WEB_TAGS = {"Role": "web"}
WEB_PATCHED = "2026-07-31"  # leaves the web group missing approved patches, a kernel update among them

SCENARIO: dict[str, Any] = {
    "name": "commands-unit",
    "seed": 11,
    # Nearly frozen: only clock.advance moves simulated time, so every test is exact.
    "clock": {"start": START.isoformat(), "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}, WINDOWS: {"os": "WINDOWS"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        {"name": "web", "count": 6, "ami": AL2023, "tags": WEB_TAGS, "patched_through": WEB_PATCHED},
                        {"name": "win", "count": 2, "ami": WINDOWS, "tags": {"Role": "win"}},
                        {"name": "flaky", "count": 4, "ami": AL2023, "tags": {"Role": "flaky"}},
                        {"name": "stuck", "count": 1, "ami": AL2023, "tags": {"Role": "stuck"}},
                        {"name": "broken-scan", "count": 1, "ami": AL2023, "tags": {"Role": "broken-scan"}},
                        {"name": "offline", "count": 1, "ami": AL2023, "tags": {"Role": "web"}, "agent": "offline"},
                        {"name": "unmanaged", "count": 1, "ami": AL2023, "agent": "unmanaged"},
                    ]
                }
            },
        }
    ],
    "failures": [
        {"group": "flaky", "script_fails": True},
        {"group": "stuck", "command_hangs": True},
        {"group": "broken-scan", "scan_fails": True},
    ],
    "commands": {
        "delivery_seconds": DELIVERY,
        "scan_seconds": SCAN,
        "install_seconds": INSTALL,
        "script_seconds": SCRIPT,
        "reboot_seconds": REBOOT,
    },
}


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        sandbox = World(parse_scenario(copy.deepcopy(SCENARIO), source="<test>"))
        fleet.seed(sandbox)
        yield sandbox


def call(world: World, operation: str, **params: Any) -> dict[str, Any]:
    """Call a handler as the server does: request checked first, response checked against botocore's model."""
    protocol.validate_request("ssm", operation, params)
    handler = ssm_commands.HANDLERS[("ssm", operation)]
    result = handler(world, RequestContext(ACCOUNT, REGION, "ssm", operation), params)
    problems = protocol.validate_response("ssm", operation, protocol.to_wire(result))
    assert problems == [], problems
    return result


def group(world: World, name: str) -> list[str]:
    return [i.instance_id for i in world.instances(ACCOUNT, REGION).values() if i.group == name]


def send(world: World, **params: Any) -> str:
    command_id: str = call(world, "SendCommand", **params)["Command"]["CommandId"]
    return command_id


def shell(world: World, instance_ids: list[str], **params: Any) -> str:
    return send(
        world, DocumentName="AWS-RunShellScript", InstanceIds=instance_ids, Parameters={"commands": ["true"]}, **params
    )


def patch(world: World, instance_ids: list[str], operation: str, **params: Any) -> str:
    extra = params.pop("Parameters", {})
    return send(
        world,
        DocumentName="AWS-RunPatchBaseline",
        InstanceIds=instance_ids,
        Parameters={"Operation": [operation], **extra},
        **params,
    )


def invocations(world: World, command_id: str, **params: Any) -> dict[str, dict[str, Any]]:
    listed = call(world, "ListCommandInvocations", CommandId=command_id, **params)["CommandInvocations"]
    return {inv["InstanceId"]: inv for inv in listed}


def statuses(world: World, command_id: str) -> list[str]:
    return [inv["Status"] for inv in invocations(world, command_id).values()]


def command(world: World, command_id: str) -> dict[str, Any]:
    found: dict[str, Any] = call(world, "ListCommands", CommandId=command_id)["Commands"][0]
    return found


def get(world: World, command_id: str, instance_id: str, **params: Any) -> dict[str, Any]:
    return call(world, "GetCommandInvocation", CommandId=command_id, InstanceId=instance_id, **params)


def advance(world: World, seconds: float) -> None:
    """Move simulated time on, then let the store catch up, as the server does before every request."""
    world.clock.advance(seconds)
    world.commands(ACCOUNT, REGION).advance()


def error_code(action: Callable[[], Any]) -> str:
    with pytest.raises(AwsApiError) as raised:
        action()
    return raised.value.code


# -- lifecycle ---------------------------------------------------------------------------------


def test_status_progresses_pending_in_progress_success(world: World) -> None:
    target = group(world, "web")[0]
    command_id = shell(world, [target])
    sent = command(world, command_id)
    assert (sent["Status"], sent["StatusDetails"], sent["TargetCount"]) == ("Pending", "Pending", 1)
    # Right after SendCommand AWS lists no invocation yet and GetCommandInvocation does not find it.
    assert invocations(world, command_id) == {}
    assert error_code(lambda: get(world, command_id, target)) == "InvocationDoesNotExist"

    advance(world, DELIVERY + 0.5)
    running = get(world, command_id, target)
    assert (running["Status"], running["StatusDetails"], running["ResponseCode"]) == ("InProgress", "In Progress", -1)
    assert running["ExecutionStartDateTime"] != "" and running["ExecutionEndDateTime"] == ""
    assert command(world, command_id)["Status"] == "InProgress"

    advance(world, SCRIPT)
    done = get(world, command_id, target)
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("Success", "Success", 0)
    assert done["PluginName"] == "aws:runShellScript"
    assert done["ExecutionElapsedTime"] == f"PT{SCRIPT:.3f}S"
    final = command(world, command_id)
    assert (final["Status"], final["CompletedCount"], final["ErrorCount"]) == ("Success", 1, 0)


def test_only_the_given_instance_ids_receive_the_command(world: World) -> None:
    web = group(world, "web")
    command_id = shell(world, web[:2])
    advance(world, DELIVERY + SCRIPT + 1)
    assert set(invocations(world, command_id)) == set(web[:2])  # moto would fan out to all 16 instances
    assert command(world, command_id)["TargetCount"] == 2
    assert call(world, "ListCommands", InstanceId=web[2])["Commands"] == []
    assert [c["CommandId"] for c in call(world, "ListCommands", InstanceId=web[1])["Commands"]] == [command_id]


def test_tag_targets_resolve_against_ec2_tags(world: World) -> None:
    sent = call(
        world,
        "SendCommand",
        DocumentName="AWS-RunShellScript",
        Targets=[{"Key": "tag:Role", "Values": ["web"]}],
        Parameters={"commands": ["uptime"]},
    )["Command"]
    # AWS resolves tag targets after answering: SendCommand reports TargetCount 0 and no InstanceIds.
    assert (sent["TargetCount"], sent["InstanceIds"]) == (0, [])
    advance(world, DELIVERY)
    assert set(invocations(world, sent["CommandId"])) == set(group(world, "web") + group(world, "offline"))
    assert command(world, sent["CommandId"])["TargetCount"] == 7


def test_tag_targets_on_the_wrong_platform_are_invalid_platform(world: World) -> None:
    command_id = send(
        world,
        DocumentName="AWS-RunShellScript",
        Targets=[{"Key": "tag:Role", "Values": ["web", "win"]}],
        Parameters={"commands": ["uptime"]},
    )
    advance(world, DELIVERY + SCRIPT)
    listed = invocations(world, command_id)
    windows = {(listed[i]["Status"], listed[i]["StatusDetails"]) for i in group(world, "win")}
    assert windows == {("Failed", "Invalid Platform")}
    # Invalid Platform counts neither as an error nor against Success (the user guide's example).
    call(world, "CancelCommand", CommandId=command_id, InstanceIds=group(world, "offline"))
    final = command(world, command_id)
    assert (final["ErrorCount"], final["CompletedCount"], final["TargetCount"]) == (0, 9, 9)


def test_instance_ids_target_star_means_every_managed_node(world: World) -> None:
    command_id = send(
        world,
        DocumentName="AWS-RunPowerShellScript",
        Targets=[{"Key": "InstanceIds", "Values": ["*"]}],
        Parameters={"commands": ["Get-Date"]},
    )
    advance(world, DELIVERY)
    registered = {i.instance_id for i in world.instances(ACCOUNT, REGION).values() if i.registered}
    assert set(invocations(world, command_id)) == registered


def test_stopped_instance_gets_nothing_delivered_and_is_not_described(world: World) -> None:
    target = group(world, "web")[0]
    boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[target])
    command_id = shell(world, [target], TimeoutSeconds=30)  # a stopped instance is still a valid target
    advance(world, 30 + 3600 + 1)
    assert get(world, command_id, target)["StatusDetails"] == "Delivery Timed Out"
    described = call(world, "DescribeInstanceInformation", Filters=[{"Key": "tag:Role", "Values": ["web"]}])
    assert target not in {i["InstanceId"] for i in described["InstanceInformationList"]}


def test_ec2_state_changes_are_seen_at_the_next_call_whoever_made_them(world: World) -> None:
    # World reads moto's EC2 states again only when an instance state changed: prime that, then change them.
    target, other = group(world, "web")[:2]
    ec2 = boto3.client("ec2", region_name=REGION)

    def described() -> set[str]:
        found = call(world, "DescribeInstanceInformation", Filters=[{"Key": "tag:Role", "Values": ["web"]}])
        return {i["InstanceId"] for i in found["InstanceInformationList"]}

    assert {target, other} <= described()
    ec2.stop_instances(InstanceIds=[target])
    assert target not in described() and other in described()
    ec2.start_instances(InstanceIds=[target])
    assert target in described()
    ec2.terminate_instances(InstanceIds=[other])
    assert other not in world.instances(ACCOUNT, REGION)
    assert other not in described()
    assert target in world.instances(ACCOUNT, REGION)


def test_unknown_or_unregistered_instances_are_refused(world: World) -> None:
    unmanaged = group(world, "unmanaged")[0]
    assert error_code(lambda: shell(world, [unmanaged])) == "InvalidInstanceId"
    assert error_code(lambda: shell(world, ["i-0123456789abcdef0"])) == "InvalidInstanceId"
    assert error_code(lambda: shell(world, [group(world, "win")[0]])) == "UnsupportedPlatformType"
    assert call(world, "ListCommands")["Commands"] == []


def test_unknown_document_is_invalid(world: World) -> None:
    target = group(world, "web")[:1]
    with pytest.raises(AwsApiError) as raised:
        send(world, DocumentName="AWS-RunShellScriptz", InstanceIds=target, Parameters={"commands": ["true"]})
    assert raised.value.code == "InvalidDocument"
    assert "AWS-RunShellScriptz" in raised.value.message


@pytest.mark.parametrize(
    ("document", "parameters"),
    [
        pytest.param("AWS-RunPatchBaseline", {"Operation": ["Patch"]}, id="operation not Scan|Install"),
        pytest.param("AWS-RunPatchBaseline", {"RebootOption": ["Always"]}, id="reboot option"),
        pytest.param("AWS-RunPatchBaseline", {"Operation": ["Scan", "Install"]}, id="two values"),
        pytest.param("AWS-RunPatchBaseline", {"Operations": ["Scan"]}, id="unknown name"),
        pytest.param("AWS-RunPatchBaseline", {"InstallOverrideList": ["ftp://x/y.yaml"]}, id="override not a URL"),
        pytest.param("AWS-RunPatchBaseline", {"SnapshotId": ["not-a-uuid"]}, id="snapshot id"),
        pytest.param("AWS-RunPatchBaselineWithHooks", {"InstallOverrideList": ["s3://b/k"]}, id="hooks: no override"),
        pytest.param("AWS-RunShellScript", {}, id="commands required"),
        pytest.param("AWS-RunShellScript", {"commands": ["x"], "executionTimeout": ["0"]}, id="execution timeout"),
    ],
)
def test_bad_parameters_are_invalid(world: World, document: str, parameters: dict[str, list[str]]) -> None:
    target = group(world, "web")[:1]
    code = error_code(lambda: send(world, DocumentName=document, InstanceIds=target, Parameters=parameters))
    assert code == "InvalidParameters"


def test_bad_rate_controls_fail_validation(world: World) -> None:
    target = group(world, "web")[:1]
    assert error_code(lambda: shell(world, target, MaxConcurrency="0")) == "ValidationException"
    assert error_code(lambda: shell(world, target, MaxErrors="101%")) == "ValidationException"


# -- rate controls -----------------------------------------------------------------------------


def test_max_concurrency_limits_what_runs_at_once(world: World) -> None:
    web = group(world, "web")
    command_id = shell(world, web, MaxConcurrency="2")
    seen: list[list[str]] = []
    for _ in range(12):
        advance(world, 1)
        seen.append(statuses(world, command_id))
    assert max(s.count("InProgress") for s in seen) == 2
    assert seen[0] == ["InProgress", "InProgress", "Pending", "Pending", "Pending", "Pending"]
    assert seen[-1] == ["Success"] * 6
    # A percentage is of the targets, rounded up: 34% of 6 is 3 at once.
    command_id = shell(world, web, MaxConcurrency="34%")
    advance(world, DELIVERY)
    assert statuses(world, command_id).count("InProgress") == 3


def test_max_errors_stops_sending_to_further_targets(world: World) -> None:
    flaky = group(world, "flaky")
    command_id = shell(world, flaky, MaxConcurrency="1", MaxErrors="1")
    advance(world, 4 * (DELIVERY + SCRIPT) + 1)
    listed = invocations(world, command_id)
    got = [(listed[i]["Status"], listed[i]["StatusDetails"]) for i in flaky]
    # Two failures exceed MaxErrors=1: the two never sent are cancelled by the system ("Terminated").
    assert got == [("Failed", "Failed")] * 2 + [("Cancelled", "Terminated")] * 2
    assert get(world, command_id, flaky[3])["ExecutionStartDateTime"] == ""
    final = command(world, command_id)
    assert (final["Status"], final["StatusDetails"]) == ("Failed", "Failed")
    assert (final["TargetCount"], final["CompletedCount"], final["ErrorCount"]) == (4, 4, 2)


def test_errors_within_max_errors_let_every_target_run(world: World) -> None:
    targets = group(world, "flaky")[:1] + group(world, "web")[:3]
    command_id = shell(world, targets, MaxConcurrency="1", MaxErrors="2")
    advance(world, 4 * (DELIVERY + SCRIPT) + 1)
    assert statuses(world, command_id) == ["Failed", "Success", "Success", "Success"]
    final = command(world, command_id)
    assert (final["Status"], final["StatusDetails"], final["ErrorCount"]) == ("Failed", "Incomplete", 1)


def test_script_failure_exits_1(world: World) -> None:
    target = group(world, "flaky")[0]
    command_id = shell(world, [target])
    advance(world, DELIVERY + SCRIPT)
    failed = get(world, command_id, target)
    assert (failed["Status"], failed["ResponseCode"]) == ("Failed", 1)
    assert "exit status 1" in failed["StandardErrorContent"]


# -- time-outs ---------------------------------------------------------------------------------


def test_hanging_command_times_out_at_the_execution_timeout(world: World) -> None:
    target = group(world, "stuck")[0]
    command_id = send(
        world,
        DocumentName="AWS-RunShellScript",
        InstanceIds=[target],
        Parameters={"commands": ["sleep 1d"], "executionTimeout": ["60"]},
    )
    advance(world, DELIVERY + 59)
    assert get(world, command_id, target)["Status"] == "InProgress"
    advance(world, 2)
    timed_out = get(world, command_id, target)
    assert (timed_out["Status"], timed_out["StatusDetails"]) == ("TimedOut", "Execution Timed Out")
    final = command(world, command_id)
    assert (final["Status"], final["StatusDetails"], final["ErrorCount"]) == ("TimedOut", "Execution Timed Out", 1)


def test_offline_instance_is_never_delivered(world: World) -> None:
    target = group(world, "offline")[0]
    command_id = send(
        world,
        DocumentName="AWS-RunShellScript",
        InstanceIds=[target],  # accepted: SSM knows the instance, its agent is just not connected
        Parameters={"commands": ["true"], "executionTimeout": ["60"]},
        TimeoutSeconds=30,
    )
    sent = command(world, command_id)
    # The total timeout: TimeoutSeconds plus the document's execution timeout.
    assert sent["ExpiresAfter"] - sent["RequestedDateTime"] == timedelta(seconds=90)
    advance(world, 89)
    assert get(world, command_id, target)["Status"] == "Pending"
    advance(world, 2)
    undelivered = get(world, command_id, target)
    assert (undelivered["Status"], undelivered["StatusDetails"]) == ("TimedOut", "Delivery Timed Out")
    assert undelivered["ResponseCode"] == -1
    final = command(world, command_id)
    assert (final["DeliveryTimedOutCount"], final["ErrorCount"], final["CompletedCount"]) == (1, 0, 1)
    assert (final["Status"], final["StatusDetails"]) == ("TimedOut", "Delivery Timed Out")


def test_default_timeouts_are_awss(world: World) -> None:
    sent = call(world, "SendCommand", DocumentName="AWS-RunPatchBaseline", InstanceIds=group(world, "web")[:1])[
        "Command"
    ]
    # TimeoutSeconds defaults to 3600; AWS-RunPatchBaseline's steps time out after 7200 s.
    assert sent["TimeoutSeconds"] == 3600
    assert sent["ExpiresAfter"] - sent["RequestedDateTime"] == timedelta(seconds=3600 + 7200)
    assert (sent["MaxConcurrency"], sent["MaxErrors"], sent["DocumentVersion"]) == ("50", "0", "$DEFAULT")


def test_cancel_command_cancels_what_has_not_finished(world: World) -> None:
    web = group(world, "web")
    command_id = shell(world, web, MaxConcurrency="1")
    advance(world, DELIVERY + SCRIPT + 0.5)
    call(world, "CancelCommand", CommandId=command_id)
    assert statuses(world, command_id) == ["Success"] + ["Cancelled"] * 5
    assert command(world, command_id)["Status"] == "Cancelled"
    assert error_code(lambda: call(world, "CancelCommand", CommandId="0" * 36)) == "InvalidCommandId"


# -- patching ----------------------------------------------------------------------------------


def test_scan_then_install_changes_the_patch_report(world: World) -> None:
    target = group(world, "web")[0]
    instance = world.instance(ACCOUNT, REGION, target)
    assert instance is not None and instance.report is not None
    seeded = instance.report

    scan_id = patch(world, [target], "Scan")
    advance(world, DELIVERY + SCAN - 1)
    assert instance.report is seeded  # effects wait for the invocation to complete
    advance(world, 1)
    scanned = instance.report
    assert scanned is not seeded and scanned.operation == "Scan"
    missing = patching.report_counts(scanned)["MissingCount"]
    assert missing > 0
    assert get(world, scan_id, target)["Status"] == "Success"

    install_id = patch(world, [target], "Install")
    advance(world, DELIVERY + INSTALL - 1)
    assert instance.report is scanned
    advance(world, 1 + REBOOT)  # the kernel update among the patches makes RebootIfNeeded reboot
    installed = instance.report
    assert installed.operation == "Install" and installed.reboot_option == "RebootIfNeeded"
    counts = patching.report_counts(installed)
    assert counts["MissingCount"] == 0
    assert counts["InstalledCount"] >= patching.report_counts(scanned)["InstalledCount"] + missing
    done = get(world, install_id, target)
    assert (done["Status"], done["ResponseCode"]) == ("Success", 0)
    assert done["ExecutionElapsedTime"] == f"PT{INSTALL + REBOOT:.3f}S"
    assert "Operation: Install" in done["StandardOutputContent"]


def test_install_with_no_reboot_leaves_patches_pending_reboot(world: World) -> None:
    target = group(world, "web")[1]
    command_id = patch(world, [target], "Install", Parameters={"RebootOption": ["NoReboot"]})
    advance(world, DELIVERY + INSTALL)
    assert get(world, command_id, target)["Status"] == "Success"  # no reboot time added
    instance = world.instance(ACCOUNT, REGION, target)
    assert instance is not None and instance.report is not None
    assert patching.report_counts(instance.report)["InstalledPendingRebootCount"] > 0


def test_scan_failure_fails_the_invocation(world: World) -> None:
    target = group(world, "broken-scan")[0]
    command_id = patch(world, [target], "Scan")
    advance(world, DELIVERY + SCAN)
    failed = get(world, command_id, target)
    assert (failed["Status"], failed["ResponseCode"]) == ("Failed", 1)
    assert "scan failed" in failed["StandardErrorContent"]


def test_install_failure_fails_the_invocation(world: World) -> None:
    target = group(world, "web")[2]
    instance = world.instance(ACCOUNT, REGION, target)
    assert instance is not None and instance.report is not None
    bad = next(pid for pid, state in instance.report.states.items() if state == patching.MISSING)
    instance.faults.install_fails.add(bad)
    command_id = patch(world, [target], "Install")
    advance(world, DELIVERY + INSTALL + REBOOT)
    failed = get(world, command_id, target)
    assert (failed["Status"], failed["ResponseCode"]) == ("Failed", 1)
    assert bad in failed["StandardErrorContent"]
    assert instance.report is not None and instance.report.states[bad] == patching.FAILED


@pytest.mark.parametrize(
    "url",
    [
        "s3://patch-lists/override.yaml",
        "https://patch-lists.s3.amazonaws.com/override.yaml",
        "https://patch-lists.s3.us-east-1.amazonaws.com/override.yaml",
    ],
)
def test_install_override_list_installs_exactly_its_patches(world: World, url: str) -> None:
    target = group(world, "web")[3]
    instance = world.instance(ACCOUNT, REGION, target)
    assert instance is not None and instance.report is not None
    missing = sorted(pid for pid, state in instance.report.states.items() if state == patching.MISSING)
    assert len(missing) >= 2
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="patch-lists")
    s3.put_object(Bucket="patch-lists", Key="override.yaml", Body=f"patches:\n  - id: '{missing[0]}'\n".encode())
    command_id = patch(world, [target], "Install", Parameters={"InstallOverrideList": [url]})
    advance(world, DELIVERY + INSTALL + REBOOT)
    assert get(world, command_id, target)["Status"] == "Success"
    assert missing[0] in instance.installed
    assert not set(missing[1:]) & set(instance.installed)
    assert instance.report is not None and instance.report.install_override_list == url


def test_unreadable_install_override_list_fails_with_a_clear_error(world: World) -> None:
    target = group(world, "web")[4]
    command_id = patch(world, [target], "Install", Parameters={"InstallOverrideList": ["s3://no-such-bucket/x.yaml"]})
    advance(world, DELIVERY)
    failed = get(world, command_id, target)
    assert (failed["Status"], failed["ResponseCode"]) == ("Failed", 1)
    assert "s3://no-such-bucket/x.yaml" in failed["StandardErrorContent"]


# -- API shapes --------------------------------------------------------------------------------


def test_patch_document_reports_every_step(world: World) -> None:
    linux, windows = group(world, "web")[5], group(world, "win")[0]
    command_id = send(
        world,
        DocumentName="AWS-RunPatchBaseline",
        Targets=[{"Key": "InstanceIds", "Values": [linux, windows]}],
        Parameters={"Operation": ["Scan"]},
    )
    advance(world, DELIVERY + SCAN)
    detailed = invocations(world, command_id, Details=True)
    plugins = {p["Name"]: p for p in detailed[linux]["CommandPlugins"]}
    assert list(plugins) == ["PatchWindows", "PatchLinux", "PatchMacOS"]
    assert plugins["PatchLinux"]["Output"].startswith("Operation: Scan")
    assert "skipped" in plugins["PatchWindows"]["Output"]
    assert get(world, command_id, windows)["PluginName"] == "PatchWindows"
    assert get(world, command_id, linux, PluginName="PatchMacOS")["Status"] == "Success"
    assert error_code(lambda: get(world, command_id, linux, PluginName="PatchBSD")) == "InvalidPluginName"
    assert invocations(world, command_id)[linux]["CommandPlugins"] == []  # no Details, no plugins


def test_list_filters_and_paging(world: World) -> None:
    web = group(world, "web")
    first = shell(world, web)
    advance(world, DELIVERY + SCRIPT)
    second = shell(world, group(world, "flaky")[:2])
    advance(world, DELIVERY + SCRIPT)
    listed = call(world, "ListCommands")["Commands"]
    assert [c["CommandId"] for c in listed] == [second, first]  # newest first
    failed = call(world, "ListCommands", Filters=[{"key": "Status", "value": "Failed"}])["Commands"]
    assert [c["CommandId"] for c in failed] == [second]
    page = call(world, "ListCommandInvocations", CommandId=first, MaxResults=4)
    assert len(page["CommandInvocations"]) == 4
    rest = call(world, "ListCommandInvocations", CommandId=first, MaxResults=4, NextToken=page["NextToken"])
    assert len(rest["CommandInvocations"]) == 2 and "NextToken" not in rest
    failures = call(world, "ListCommandInvocations", Filters=[{"key": "Status", "value": "Failed"}])
    assert {i["InstanceId"] for i in failures["CommandInvocations"]} == set(group(world, "flaky")[:2])
    bad_key = [{"key": "ExecutionStage", "value": "Complete"}]
    assert error_code(lambda: call(world, "ListCommandInvocations", Filters=bad_key)) == "InvalidFilterKey"
    assert call(world, "ListCommandInvocations", CommandId="0" * 36)["CommandInvocations"] == []


def test_describe_instance_information(world: World) -> None:
    listed = [
        info
        for page in _pages(world, "DescribeInstanceInformation", "InstanceInformationList", MaxResults=5)
        for info in page
    ]
    ids = {info["InstanceId"] for info in listed}
    assert len(ids) == len(listed) == 15  # every registered instance once; never the unmanaged one
    assert not set(group(world, "unmanaged")) & ids
    offline = group(world, "offline")[0]
    by_id = {info["InstanceId"]: info for info in listed}
    assert by_id[offline]["PingStatus"] == "ConnectionLost"
    win = by_id[group(world, "win")[0]]
    assert (win["PlatformType"], win["ResourceType"], win["IsLatestVersion"]) == ("Windows", "EC2Instance", True)
    lost = call(world, "DescribeInstanceInformation", Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}])
    assert [i["InstanceId"] for i in lost["InstanceInformationList"]] == [offline]
    tagged = call(world, "DescribeInstanceInformation", Filters=[{"Key": "tag:Role", "Values": ["win"]}])
    assert {i["InstanceId"] for i in tagged["InstanceInformationList"]} == set(group(world, "win"))
    legacy = [{"key": "PlatformTypes", "valueSet": ["Windows"]}]
    by_legacy = call(world, "DescribeInstanceInformation", InstanceInformationFilterList=legacy)
    assert {i["InstanceId"] for i in by_legacy["InstanceInformationList"]} == set(group(world, "win"))
    bad_value = [{"Key": "PingStatus", "Values": ["Asleep"]}]
    code = error_code(lambda: call(world, "DescribeInstanceInformation", Filters=bad_value))
    assert code == "InvalidInstanceInformationFilterValue"
    unknown = [{"Key": "InstanceIds", "Values": ["i-0123456789abcdef0"]}]
    assert error_code(lambda: call(world, "DescribeInstanceInformation", Filters=unknown)) == "InvalidInstanceId"
    assert len(call(world, "DescribeInstanceInformation")["InstanceInformationList"]) == 10  # AWS's default page


def _pages(world: World, operation: str, member: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
    token: str | None = None
    while True:
        page = call(world, operation, **params, **({"NextToken": token} if token else {}))
        yield page[member]
        token = page.get("NextToken")
        if not token:
            return


def test_advance_is_idempotent(world: World) -> None:
    target = group(world, "web")[0]
    command_id = patch(world, [target], "Scan")
    advance(world, DELIVERY + SCAN)
    store = world.commands(ACCOUNT, REGION)
    store.advance()
    instance = world.instance(ACCOUNT, REGION, target)
    assert instance is not None
    report = instance.report
    store.advance()
    store.advance()
    assert instance.report is report
    assert store.counts(store.get(command_id) or pytest.fail("command lost")).completed == 1


def test_moto_lists_match_moto() -> None:
    def implemented(operation: str) -> bool:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
        return hasattr(SimpleSystemManagerResponse, snake)

    assert [op for op in ssm_commands.MOTO_MISSING if implemented(op)] == []
    assert [op for op in ssm_commands.MOTO_WRONG if not implemented(op)] == []
    assert set(ssm_commands.MOTO_MISSING) | set(ssm_commands.MOTO_WRONG) <= {op for _, op in ssm_commands.HANDLERS}


def test_final_status_rules() -> None:
    rules = commands._final_state
    success, failed, dto = commands.SUCCESS, commands.FAILED, commands.DELIVERY_TIMED_OUT
    assert rules([success, success], 1) == success
    assert rules([success, failed], 1) == failed
    assert rules([success, failed], 2) == commands.INCOMPLETE
    assert rules([success, dto], 1) == dto
    assert rules([commands.UNDELIVERABLE, success], 1) == success
    assert rules([commands.UNDELIVERABLE], 1) == failed
