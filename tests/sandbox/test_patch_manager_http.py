"""Patch Manager through boto3, as the DAGs see it: Scan, Install, injected failures, time limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.sandbox.catalog import build_catalog
from include.sandbox.scenario import parse_scenario
from tests.conftest import advance_clock, client_factory

AL2023 = "ami-0a1b2c3d4e5f60001"
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SCENARIO: dict[str, Any] = {
    "name": "semantics",
    "seed": 3,
    "clock": {"start": NOW.isoformat(), "speed": 1.0},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": "123456789012",
            "regions": {
                "us-east-1": {
                    "instance_groups": [
                        {
                            "name": "web",
                            "count": 4,
                            "ami": AL2023,
                            "tags": {"PatchGroup": "web"},
                            "patched_through": "2026-09-30",
                            "availability_zones": ["us-east-1a"],
                        },
                        {"name": "offline", "count": 1, "ami": AL2023, "agent": "offline"},
                    ]
                }
            },
        }
    ],
    "baselines": [
        {
            "name": "web-al2023",
            "os": "AMAZON_LINUX_2023",
            "patch_groups": ["web"],
            "approval_rules": [
                {"classification": ["Security"], "severity": ["Critical", "Important"], "approve_after_days": 3},
                {"classification": ["Security", "Bugfix"], "severity": ["Medium", "Low"], "approve_after_days": 7},
            ],
        }
    ],
    "failures": [
        {"group": "web", "count": 1, "install_fails": ["ALAS2023-2026-1134"]},
    ],
    "commands": {"delivery_seconds": 1, "scan_seconds": 5, "install_seconds": 20, "reboot_seconds": 5},
}


def expected_missing() -> set[str]:
    """The baseline's rules applied by hand to the catalog: what a web instance should be missing."""
    catalog = build_catalog(parse_scenario(SCENARIO))
    missing = set()
    for patch in catalog.for_os("AMAZON_LINUX_2023"):
        if patch.released <= datetime(2026, 9, 30).date():
            continue
        released = datetime.combine(patch.released, datetime.min.time(), UTC)
        if patch.classification == "Security" and patch.severity in ("Critical", "Important"):
            approved = released + timedelta(days=3) <= NOW
        elif patch.classification in ("Security", "Bugfix") and patch.severity in ("Medium", "Low"):
            approved = released + timedelta(days=7) <= NOW
        else:
            approved = False
        if approved:
            missing.add(patch.id)
    return missing


@pytest.fixture
def fleet(sandbox_factory: Any) -> tuple[Any, Any, list[str], str]:
    server = sandbox_factory(SCENARIO)
    instances = server.world.instances("123456789012", "us-east-1").values()
    web = [i.instance_id for i in instances if i.group == "web"]  # launch order: web[0] carries the failure
    offline = next(i.instance_id for i in instances if i.group == "offline")
    return server, client_factory(server.url)("ssm"), web, offline


def test_scan_then_install_follows_the_baseline(fleet: tuple[Any, Any, list[str], str]) -> None:
    server, ssm, web, _ = fleet
    missing = expected_missing()
    assert missing, "the scenario should leave web instances missing approved patches"
    states = {s["InstanceId"]: s for s in ssm.describe_instance_patch_states(InstanceIds=web)["InstancePatchStates"]}
    assert {s["MissingCount"] for s in states.values()} == {len(missing)}
    listed = ssm.describe_instance_patches(InstanceId=web[1], Filters=[{"Key": "State", "Values": ["Missing"]}])
    assert {p["KBId"] for p in listed["Patches"]} == missing

    scan = ssm.send_command(InstanceIds=web, DocumentName="AWS-RunPatchBaseline", Parameters={"Operation": ["Scan"]})[
        "Command"
    ]
    assert scan["TargetCount"] == len(web)
    assert ssm.list_commands(CommandId=scan["CommandId"])["Commands"][0]["Status"] in ("Pending", "InProgress")
    advance_clock(server.url, 30)
    done = ssm.list_commands(CommandId=scan["CommandId"])["Commands"][0]
    assert (done["Status"], done["CompletedCount"], done["ErrorCount"]) == ("Success", len(web), 0)
    after_scan = ssm.describe_instance_patch_states(InstanceIds=web)["InstancePatchStates"]
    assert {s["Operation"] for s in after_scan} == {"Scan"}
    assert {s["MissingCount"] for s in after_scan} == {len(missing)}

    install = ssm.send_command(
        InstanceIds=web,
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Install"], "RebootOption": ["RebootIfNeeded"]},
        MaxErrors="1",
    )["Command"]
    advance_clock(server.url, 120)
    final = ssm.list_commands(CommandId=install["CommandId"])["Commands"][0]
    assert (final["Status"], final["CompletedCount"], final["ErrorCount"]) == ("Failed", len(web), 1)
    invocations = ssm.list_command_invocations(CommandId=install["CommandId"])["CommandInvocations"]
    assert {i["InstanceId"]: i["Status"] for i in invocations} == {
        web[0]: "Failed",
        **{iid: "Success" for iid in web[1:]},
    }
    after = {s["InstanceId"]: s for s in ssm.describe_instance_patch_states(InstanceIds=web)["InstancePatchStates"]}
    for iid in web[1:]:
        assert (after[iid]["Operation"], after[iid]["MissingCount"], after[iid]["FailedCount"]) == ("Install", 0, 0)
        assert after[iid]["InstalledCount"] == states[iid]["InstalledCount"] + len(missing)
    assert (after[web[0]]["FailedCount"], after[web[0]]["MissingCount"]) == (1, 0)
    failed = ssm.describe_instance_patches(InstanceId=web[0], Filters=[{"Key": "State", "Values": ["Failed"]}])
    assert [p["KBId"] for p in failed["Patches"]] == ["ALAS2023-2026-1134"]
    assert "CVE-2026-21040" in failed["Patches"][0]["CVEIds"]


def test_no_reboot_leaves_reboot_patches_pending(fleet: tuple[Any, Any, list[str], str]) -> None:
    server, ssm, web, _ = fleet
    catalog = build_catalog(parse_scenario(SCENARIO))
    needs_reboot = {pid for pid in expected_missing() if (patch := catalog.get(pid)) and patch.reboot}
    assert needs_reboot
    ssm.send_command(
        InstanceIds=web[1:2],
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Install"], "RebootOption": ["NoReboot"]},
    )
    advance_clock(server.url, 60)
    state = ssm.describe_instance_patch_states(InstanceIds=web[1:2])["InstancePatchStates"][0]
    assert state["InstalledPendingRebootCount"] == len(needs_reboot)
    assert state["MissingCount"] == 0


def test_offline_agent_times_out_delivery_and_the_rest_is_untouched(fleet: tuple[Any, Any, list[str], str]) -> None:
    server, ssm, web, offline = fleet
    info = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [offline]}])
    assert info["InstanceInformationList"][0]["PingStatus"] == "ConnectionLost"
    command = ssm.send_command(
        InstanceIds=[offline],
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Scan"]},
        TimeoutSeconds=30,
    )["Command"]
    advance_clock(server.url, 300)
    assert ssm.list_commands(CommandId=command["CommandId"])["Commands"][0]["Status"] == "Pending"  # never delivered
    advance_clock(server.url, 3 * 3600)  # past TimeoutSeconds plus the document's execution timeout
    final = ssm.list_commands(CommandId=command["CommandId"])["Commands"][0]
    assert (final["Status"], final["DeliveryTimedOutCount"]) == ("TimedOut", 1)
    invocation = ssm.get_command_invocation(CommandId=command["CommandId"], InstanceId=offline)
    assert (invocation["Status"], invocation["StatusDetails"]) == ("TimedOut", "Delivery Timed Out")
    # Only the targeted instance received anything.
    assert ssm.list_commands(InstanceId=web[0])["Commands"] == []


def test_unknown_documents_and_bad_parameters_are_refused(fleet: tuple[Any, Any, list[str], str]) -> None:
    _, ssm, web, _ = fleet
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.send_command(InstanceIds=web[:1], DocumentName="AWS-NoSuchDocument")
    with pytest.raises(ssm.exceptions.InvalidParameters):
        ssm.send_command(
            InstanceIds=web[:1], DocumentName="AWS-RunPatchBaseline", Parameters={"Operation": ["Upgrade"]}
        )
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.send_command(
            InstanceIds=["i-0000000000000dead"], DocumentName="AWS-RunPatchBaseline", Parameters={"Operation": ["Scan"]}
        )
