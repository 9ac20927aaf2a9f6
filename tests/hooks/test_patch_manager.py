"""PatchManagerHook against the sandbox (default scenario, no injected faults): paging and 50-id batching."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from include.sandbox.scenario import DEFAULT_SCENARIO
from include.sandbox.server import SandboxServer
from patchcycle.hooks.patch_manager import MAX_IDS_PER_CALL, PatchManagerHook, batches
from tests.conftest import advance_clock, client_factory, sandbox_calls

ACCOUNT = "123456789012"
REGIONS = ("us-east-1", "eu-west-1")
SANDBOX_DROP_FAULTS = True  # the default scenario, exact call counts: no throttling retries
pytestmark = pytest.mark.usefixtures("server")


def hook(region: str) -> PatchManagerHook:
    return PatchManagerHook(aws_conn_id="aws_default", region_name=region)


def registered(server: SandboxServer, region: str) -> list[str]:
    """The instances SSM knows in the region, as the sandbox holds them (launch order)."""
    return [i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.registered]


def expected_registered(region: str) -> int:
    """From the scenario file: every instance group but the unmanaged ones."""
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    groups = document["accounts"][0]["regions"][region]["instance_groups"]
    return sum(group["count"] for group in groups if group.get("agent") != "unmanaged")


def test_batches_cut_at_fifty() -> None:
    ids = [f"i-{n:017x}" for n in range(120)]
    assert [len(batch) for batch in batches(ids)] == [50, 50, 20]
    assert [i for batch in batches(ids) for i in batch] == ids
    assert list(batches([])) == []
    assert MAX_IDS_PER_CALL == 50


@pytest.mark.parametrize("region", REGIONS)
def test_managed_instances_pages_past_fifty(server: SandboxServer, region: str) -> None:
    want = expected_registered(region)
    assert want > 50, "the scenario should need more than one page"
    before = sandbox_calls(server.url, "ssm:DescribeInstanceInformation")
    managed = hook(region).managed_instances()
    assert len(managed) == want
    assert sorted(info["InstanceId"] for info in managed) == sorted(registered(server, region))
    assert sandbox_calls(server.url, "ssm:DescribeInstanceInformation") - before == math.ceil(want / 50)


@pytest.mark.parametrize("count", [1, 50, 51, 100, 101])
def test_instance_patch_states_batches_ids_fifty_per_call(server: SandboxServer, count: int) -> None:
    ids = registered(server, "eu-west-1")
    assert len(ids) == 100
    wanted = [*ids, "i-0ffffffffffffffff"][:count]  # an id SSM does not know is simply absent
    before = sandbox_calls(server.url, "ssm:DescribeInstancePatchStates")
    states = hook("eu-west-1").instance_patch_states(wanted)
    assert sandbox_calls(server.url, "ssm:DescribeInstancePatchStates") - before == math.ceil(count / 50)
    assert sorted(state["InstanceId"] for state in states) == sorted(wanted[:100])
    assert all(state["BaselineId"] and "MissingCount" in state for state in states)


def test_instance_patch_states_of_no_ids_calls_nothing(server: SandboxServer) -> None:
    before = sandbox_calls(server.url, "ssm:DescribeInstancePatchStates")
    assert hook("eu-west-1").instance_patch_states([]) == []
    assert sandbox_calls(server.url, "ssm:DescribeInstancePatchStates") == before


@pytest.mark.parametrize("count", [0, 51])
def test_send_patch_baseline_refuses_0_or_51_ids_before_calling_aws(server: SandboxServer, count: int) -> None:
    ids = registered(server, "eu-west-1")[:count]
    before = sandbox_calls(server.url, "ssm:SendCommand")
    with pytest.raises(ValueError, match=f"takes 1 to 50 instance ids, got {count}"):
        hook("eu-west-1").send_patch_baseline(ids, operation="Scan", max_concurrency="50", max_errors="10%")
    assert sandbox_calls(server.url, "ssm:SendCommand") == before


def test_send_patch_baseline_sends_the_scan_to_exactly_those_instances(server: SandboxServer) -> None:
    ids = registered(server, "us-east-1")[:50]
    ssm = hook("us-east-1")
    command_id = ssm.send_patch_baseline(ids, operation="Scan", max_concurrency="10", max_errors="5", comment="x" * 150)
    command = ssm.command(command_id)
    assert command["DocumentName"] == "AWS-RunPatchBaseline"
    assert command["InstanceIds"] == ids and command["TargetCount"] == 50
    assert command["Parameters"] == {"Operation": ["Scan"], "RebootOption": ["NoReboot"]}
    assert (command["MaxConcurrency"], command["MaxErrors"]) == ("10", "5")
    assert command["Comment"] == "x" * 100  # SendCommand's Comment limit
    advance_clock(server.url, 120)
    done = ssm.command(command_id)
    assert done["CompletedCount"] == 50  # finished everywhere (one of these instances' scans fails)
    invocations = ssm.command_invocations(command_id)
    assert sorted(inv["InstanceId"] for inv in invocations) == sorted(ids)


def test_command_invocations_pages(server: SandboxServer) -> None:
    """A tag-targeted command can reach more than 50 instances: its invocations take several pages."""
    ssm = client_factory(server.url)("ssm", region="eu-west-1")
    command_id = ssm.send_command(
        Targets=[{"Key": "tag:Environment", "Values": ["production"]}],
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Scan"]},
    )["Command"]["CommandId"]
    advance_clock(server.url, 120)
    production = [
        i.instance_id
        for i in server.world.instances(ACCOUNT, "eu-west-1").values()
        if server.world.tags(ACCOUNT, "eu-west-1", i.instance_id).get("Environment") == "production"
    ]
    assert len(production) == 90
    before = sandbox_calls(server.url, "ssm:ListCommandInvocations")
    invocations: list[dict[str, Any]] = hook("eu-west-1").command_invocations(command_id)
    assert sandbox_calls(server.url, "ssm:ListCommandInvocations") - before == 2
    assert sorted(inv["InstanceId"] for inv in invocations) == sorted(production)
    assert {inv["CommandId"] for inv in invocations} == {command_id}


def test_instance_patches_filters_on_state(server: SandboxServer) -> None:
    ssm = hook("us-east-1")
    states = {s["InstanceId"]: s for s in ssm.instance_patch_states(registered(server, "us-east-1"))}
    instance_id, state = next((i, s) for i, s in states.items() if s["MissingCount"] > 0)
    missing = ssm.instance_patches(instance_id, ["Missing"])
    assert len(missing) == state["MissingCount"]
    assert {patch["State"] for patch in missing} == {"MISSING"}  # the response spells the enum in capitals


# -- scripts (AWS-RunShellScript / AWS-RunPowerShellScript) and their output ----------------------


def group_ids(server: SandboxServer, region: str, name: str) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.group == name]


def test_send_script_runs_the_commands_and_details_return_each_plugins_output(server: SandboxServer) -> None:
    ids = group_ids(server, "us-east-1", "web-staging-use1")
    assert len(ids) == 6
    ssm = hook("us-east-1")
    command_id = ssm.send_script(
        ids,
        document="AWS-RunShellScript",
        commands=["uname -r", "dnf check-update || true"],
        execution_timeout_seconds=600,
        max_concurrency="3",
        max_errors="1",
        comment="y" * 120,
    )
    command = ssm.command(command_id)
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["InstanceIds"] == ids
    assert command["Parameters"]["commands"] == ["uname -r", "dnf check-update || true"]
    assert command["Parameters"]["executionTimeout"] == ["600"]
    assert (command["MaxConcurrency"], command["MaxErrors"], command["Comment"]) == ("3", "1", "y" * 100)
    advance_clock(server.url, 120)
    assert ssm.command(command_id)["Status"] == "Success"

    plain = ssm.command_invocations(command_id)
    assert sorted(inv["InstanceId"] for inv in plain) == sorted(ids)
    assert all(inv["CommandPlugins"] == [] for inv in plain)  # without Details, AWS leaves the plugins out

    detailed = ssm.command_invocations(command_id, details=True)
    assert sorted(inv["InstanceId"] for inv in detailed) == sorted(ids)
    for inv in detailed:
        (plugin,) = inv["CommandPlugins"]
        assert plugin["Name"] == "aws:runShellScript"
        assert (plugin["Status"], plugin["ResponseCode"]) == ("Success", 0)
        assert "Output" in plugin


def test_send_script_powershell_on_windows(server: SandboxServer) -> None:
    ids = group_ids(server, "us-east-1", "win-prod-use1")[:2]
    ssm = hook("us-east-1")
    command_id = ssm.send_script(
        ids,
        document="AWS-RunPowerShellScript",
        commands=["Get-HotFix"],
        execution_timeout_seconds=3600,
        max_concurrency="50",
        max_errors="0",
    )
    advance_clock(server.url, 120)
    invocations = ssm.command_invocations(command_id, details=True)
    assert {inv["CommandPlugins"][0]["Name"] for inv in invocations} == {"aws:runPowerShellScript"}
    assert {inv["Status"] for inv in invocations} == {"Success"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ids": 0}, "takes 1 to 50 instance ids, got 0"),
        ({"ids": 51}, "takes 1 to 50 instance ids, got 51"),
        ({"document": "AWS-RunPatchBaseline"}, "document must be one of"),
        ({"document": "AWS-RunRemoteScript"}, "document must be one of"),
        ({"commands": []}, "commands must be a non-empty sequence"),
        ({"commands": "uname -r"}, "commands must be a non-empty sequence"),
        ({"execution_timeout_seconds": 0}, "execution_timeout_seconds must be 1 to 172800, got 0"),
        ({"execution_timeout_seconds": 172801}, "execution_timeout_seconds must be 1 to 172800, got 172801"),
    ],
)
def test_send_script_refuses_bad_arguments_before_calling_aws(
    server: SandboxServer, kwargs: dict[str, Any], message: str
) -> None:
    ids = registered(server, "eu-west-1")[: kwargs.pop("ids", 1)]
    arguments: dict[str, Any] = {
        "document": "AWS-RunShellScript",
        "commands": ["true"],
        "execution_timeout_seconds": 60,
        "max_concurrency": "50",
        "max_errors": "0",
        **kwargs,
    }
    before = sandbox_calls(server.url, "ssm:SendCommand")
    with pytest.raises(ValueError, match=message):
        hook("eu-west-1").send_script(ids, **arguments)
    assert sandbox_calls(server.url, "ssm:SendCommand") == before


# -- DescribeInstanceInformation of given instances ------------------------------------------------


@pytest.mark.parametrize("count", [1, 50, 51, 100])
def test_instance_information_batches_ids_fifty_per_call(server: SandboxServer, count: int) -> None:
    ids = registered(server, "eu-west-1")[:count]
    before = sandbox_calls(server.url, "ssm:DescribeInstanceInformation")
    infos = hook("eu-west-1").instance_information(ids)
    assert sandbox_calls(server.url, "ssm:DescribeInstanceInformation") - before == math.ceil(count / 50)
    assert sorted(info["InstanceId"] for info in infos) == sorted(ids)
    assert all(info["PingStatus"] in ("Online", "ConnectionLost") for info in infos)


def test_instance_information_leaves_out_instances_ssm_does_not_know(server: SandboxServer) -> None:
    instances = server.world.instances(ACCOUNT, "us-east-1").values()
    unmanaged = [i.instance_id for i in instances if not i.registered]
    offline = [i.instance_id for i in instances if i.registered and not i.online]
    online = [i.instance_id for i in instances if i.registered and i.online][:3]
    assert unmanaged and offline
    infos = hook("us-east-1").instance_information([*online, *offline, *unmanaged])
    status = {info["InstanceId"]: info["PingStatus"] for info in infos}
    assert status == {**dict.fromkeys(online, "Online"), **dict.fromkeys(offline, "ConnectionLost")}


def test_instance_information_of_no_ids_calls_nothing(server: SandboxServer) -> None:
    before = sandbox_calls(server.url, "ssm:DescribeInstanceInformation")
    assert hook("eu-west-1").instance_information([]) == []
    assert sandbox_calls(server.url, "ssm:DescribeInstanceInformation") == before
