"""Baked AMIs in the sandbox (images.py): CreateImage over simulated time, the state it records, what an instance
launched from it runs, the bake_breaks_health_checks knob, DeregisterImage, errors; and the project's
PatchCycle-BakeAmi runbook run step by step through the Automation engine."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

from include.sandbox import images
from include.sandbox.scenario import ScenarioError, parse_scenario
from tests.conftest import advance_clock, client_factory
from tests.sandbox.automation_support import AL2023, REGION, run_to_end, scenario, steps

BROKEN_AMI = "ami-0b1b2c3d4e5f60002"
CREATE_SECONDS = 40
PINNED = ["ALAS2023-2026-1018", "ALAS2023-2026-1035"]  # no reboot; CVE-2026-23001, CVE-2026-21001/21002
NOT_PINNED = "ALAS2023-2026-1041"
BUCKET = "patchcycle-artifacts"
PROFILE = "patchcycle-ami-builder"
RUNBOOK = "PatchCycle-BakeAmi"
RUNBOOK_FILE = Path(__file__).resolve().parents[2] / "include" / "automation" / f"{RUNBOOK}.yaml"
HEALTH = {"LinuxHealthCheck": ["true"], "WindowsHealthCheck": ["$true"]}

_base = scenario(images={"create_seconds": CREATE_SECONDS}, inspector={"rescan_delay_seconds": 60})
SCENARIO = {
    **_base,
    "amis": {**_base["amis"], BROKEN_AMI: {"os": "AMAZON_LINUX_2023", "bake_breaks_health_checks": True}},
    "failures": [
        *_base["failures"],
        {"tags": {"patchcycle:run-id": "run-install-fails"}, "install_fails": [PINNED[1]]},
    ],
}
_names = itertools.count(1)


@pytest.fixture(scope="module")
def aws(server: Any) -> Any:
    return client_factory(server.url)


@pytest.fixture(scope="module")
def ec2(aws: Any) -> Any:
    return aws("ec2")


@pytest.fixture(scope="module")
def ssm(aws: Any) -> Any:
    return aws("ssm")


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def _launch(ec2: Any, ami: str = AL2023, **tags: str) -> str:
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    found = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=spec)
    return str(found["Instances"][0]["InstanceId"])


def _wait_command(url: str, ssm: Any, command_id: str) -> str:
    for _ in range(200):
        status = str(ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"])
        if status not in ("Pending", "InProgress"):
            return status
        advance_clock(url, 5)
    raise AssertionError(f"command {command_id} still running")


def _put_override_list(aws: Any, patch_ids: list[str]) -> str:
    from patchcycle.core.staging import override_list_yaml  # the project's own writer of the pinned list

    s3 = aws("s3")
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    key = f"bake/{next(_names)}/install-override-list.yaml"
    s3.put_object(Bucket=BUCKET, Key=key, Body=override_list_yaml(patch_ids).encode())
    return f"s3://{BUCKET}/{key}"


def _install(server: Any, aws: Any, instance_id: str, patch_ids: list[str]) -> None:
    ssm = aws("ssm")
    command_id = ssm.send_command(
        DocumentName="AWS-RunPatchBaseline",
        InstanceIds=[instance_id],
        Parameters={
            "Operation": ["Install"],
            "RebootOption": ["NoReboot"],
            "InstallOverrideList": [_put_override_list(aws, patch_ids)],
        },
    )["Command"]["CommandId"]
    assert _wait_command(server.url, ssm, command_id) == "Success"


def _scan(server: Any, ssm: Any, instance_id: str) -> None:
    command_id = ssm.send_command(
        DocumentName="AWS-RunPatchBaseline", InstanceIds=[instance_id], Parameters={"Operation": ["Scan"]}
    )["Command"]["CommandId"]
    assert _wait_command(server.url, ssm, command_id) == "Success"


def _image(ec2: Any, image_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return found


def _script(server: Any, ssm: Any, instance_id: str) -> str:
    command_id = ssm.send_command(
        DocumentName="AWS-RunShellScript", InstanceIds=[instance_id], Parameters={"commands": ["true"]}
    )["Command"]["CommandId"]
    return _wait_command(server.url, ssm, command_id)


def _installed(ssm: Any, instance_id: str) -> set[str]:
    patches = ssm.describe_instance_patches(InstanceId=instance_id, MaxResults=100)["Patches"]
    return {p["KBId"] for p in patches if p["State"] in ("INSTALLED", "INSTALLED_OTHER")}


# -- CreateImage -------------------------------------------------------------------------------


def test_an_image_is_pending_then_available_with_its_tags(server: Any, ec2: Any) -> None:
    instance_id = _launch(ec2)
    image_id = ec2.create_image(
        InstanceId=instance_id,
        Name="bake-timing",
        TagSpecifications=[
            {"ResourceType": "image", "Tags": [{"Key": "patchcycle:run-id", "Value": "run-1"}]},
            {"ResourceType": "snapshot", "Tags": [{"Key": "made-by", "Value": "bake"}]},
        ],
    )["ImageId"]
    image = _image(ec2, image_id)
    assert image["State"] == "pending"
    assert image["Tags"] == [{"Key": "patchcycle:run-id", "Value": "run-1"}]
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    snapshot = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]
    assert snapshot["State"] == "pending"
    assert {"Key": "made-by", "Value": "bake"} in snapshot["Tags"]
    found = ec2.describe_images(Filters=[{"Name": "tag:patchcycle:run-id", "Values": ["run-1"]}])["Images"]
    assert [i["ImageId"] for i in found] == [image_id]
    advance_clock(server.url, CREATE_SECONDS - 1)
    assert _image(ec2, image_id)["State"] == "pending"
    advance_clock(server.url, 1)
    assert _image(ec2, image_id)["State"] == "available"
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed"


def test_block_device_mappings_are_recorded_on_the_image(server: Any, ec2: Any) -> None:
    instance_id = _launch(ec2)
    root = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["RootDeviceName"]
    plain = _image(ec2, ec2.create_image(InstanceId=instance_id, Name="bake-plain")["ImageId"])
    [mapping] = plain["BlockDeviceMappings"]
    source_size = mapping["Ebs"]["VolumeSize"]
    assert mapping["DeviceName"] == root and mapping["Ebs"]["DeleteOnTermination"] is True
    image_id = ec2.create_image(
        InstanceId=instance_id,
        Name="bake-mapped",
        BlockDeviceMappings=[
            {
                "DeviceName": root,
                "Ebs": {"VolumeSize": source_size + 22, "VolumeType": "gp3", "DeleteOnTermination": False},
            },
            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeSize": 100, "VolumeType": "st1"}},
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
        ],
    )["ImageId"]
    found = {m["DeviceName"]: m for m in _image(ec2, image_id)["BlockDeviceMappings"]}
    assert set(found) == {root, "/dev/sdf", "/dev/sdb"}
    root_ebs = found[root]["Ebs"]
    assert (root_ebs["VolumeSize"], root_ebs["VolumeType"], root_ebs["DeleteOnTermination"]) == (
        source_size + 22,
        "gp3",
        False,
    )
    snapshot = ec2.describe_snapshots(SnapshotIds=[root_ebs["SnapshotId"]])["Snapshots"][0]
    assert snapshot["VolumeSize"] == source_size  # a snapshot of the source's root volume
    assert (found["/dev/sdf"]["Ebs"]["VolumeSize"], found["/dev/sdf"]["Ebs"]["VolumeType"]) == (100, "st1")
    assert found["/dev/sdb"]["VirtualName"] == "ephemeral0"
    # A root smaller than the source's is refused, and no image is made.
    code, _ = _error(
        lambda: ec2.create_image(
            InstanceId=instance_id,
            Name="bake-small",
            BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"VolumeSize": source_size - 1}}],
        )
    )
    assert code == "InvalidBlockDeviceMapping"
    assert not ec2.describe_images(Filters=[{"Name": "name", "Values": ["bake-small"]}])["Images"]
    code, _ = _error(
        lambda: ec2.create_image(
            InstanceId=instance_id,
            Name="bake-bad-type",
            BlockDeviceMappings=[{"DeviceName": root, "Ebs": {"VolumeType": "fast"}}],
        )
    )
    assert code == "InvalidParameterValue"


def test_create_image_errors_are_aws_errors(server: Any, ec2: Any) -> None:
    assert _error(lambda: ec2.create_image(InstanceId="i-0123456789abcdef0", Name="bake-x"))[0] == (
        "InvalidInstanceID.NotFound"
    )
    assert _error(lambda: ec2.create_image(InstanceId="instance-1", Name="bake-x"))[0] == "InvalidInstanceID.Malformed"
    gone = _launch(ec2)
    ec2.terminate_instances(InstanceIds=[gone])
    code, message = _error(lambda: ec2.create_image(InstanceId=gone, Name="bake-x"))
    assert code == "InvalidParameterValue"
    assert message == (
        f"Invalid value '{gone}' for instanceId. Instance is not in state 'running' or 'stopping' or 'stopped'"
    )
    instance_id = _launch(ec2)
    assert _error(lambda: ec2.create_image(InstanceId=instance_id, Name="bake #1!"))[0] == "InvalidAMIName.Malformed"
    bad_tags = [{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}]
    code, _ = _error(lambda: ec2.create_image(InstanceId=instance_id, Name="bake-x", TagSpecifications=bad_tags))
    assert code == "InvalidParameterValue"
    ec2.create_image(InstanceId=instance_id, Name="bake-dup")
    code, message = _error(lambda: ec2.create_image(InstanceId=instance_id, Name="bake-dup"))
    assert code == "InvalidAMIName.Duplicate" and "bake-dup" in message


def test_an_image_keeps_the_patch_state_at_creation(server: Any, aws: Any, ec2: Any, ssm: Any) -> None:
    builder = _launch(ec2)
    advance_clock(server.url, 1)
    _install(server, aws, builder, PINNED)
    image_id = ec2.create_image(InstanceId=builder, Name="bake-state")["ImageId"]
    _install(server, aws, builder, [NOT_PINNED])  # after the image: not in it
    advance_clock(server.url, CREATE_SECONDS)
    assert _installed(ssm, builder) >= {*PINNED, NOT_PINNED}

    launched = _launch(ec2, image_id)
    info = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [launched]}])
    [registered] = info["InstanceInformationList"]
    assert (registered["PingStatus"], registered["PlatformName"]) == ("Online", "Amazon Linux")
    assert ssm.describe_instance_patch_states(InstanceIds=[launched])["InstancePatchStates"] == []  # no report yet
    _scan(server, ssm, launched)
    assert _installed(ssm, launched) == set(PINNED)
    [state] = ssm.describe_instance_patch_states(InstanceIds=[launched])["InstancePatchStates"]
    assert state["InstalledCount"] + state["InstalledOtherCount"] == len(PINNED) and state["MissingCount"] > 0

    # Inspector, after its first delay, sees the baked patches' CVEs closed and the others open.
    advance_clock(server.url, 61)
    findings = aws("inspector2").list_findings(
        filterCriteria={"resourceId": [{"comparison": "EQUALS", "value": launched}]}, maxResults=100
    )["findings"]
    by_cve = {f["packageVulnerabilityDetails"]["vulnerabilityId"]: f["status"] for f in findings}
    assert "CVE-2026-23001" not in by_cve or by_cve["CVE-2026-23001"] == "CLOSED"
    assert by_cve.get("CVE-2026-27011") == "ACTIVE"  # NOT_PINNED's CVE


def test_inspectors_first_scan_of_an_instance_of_a_baked_image_sees_its_patches_however_late_it_looks(
    server: Any, aws: Any, ec2: Any, ssm: Any
) -> None:
    builder = _launch(ec2)
    advance_clock(server.url, 1)
    _install(server, aws, builder, PINNED)
    image_id = ec2.create_image(InstanceId=builder, Name="bake-late-look")["ImageId"]
    advance_clock(server.url, CREATE_SECONDS)
    launched = _launch(ec2, image_id)
    assert ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [launched]}])[
        "InstanceInformationList"
    ]  # registered with Systems Manager: Inspector's first scan of it is due a delay after this
    advance_clock(server.url, 600)  # long before anyone asks Inspector about it
    resource = {"resourceId": [{"comparison": "EQUALS", "value": launched}]}
    [covered] = aws("inspector2").list_coverage(filterCriteria=resource)["coveredResources"]
    assert covered["scanStatus"]["statusCode"] == "ACTIVE" and covered["lastScannedAt"]
    findings = aws("inspector2").list_findings(filterCriteria=resource, maxResults=100)["findings"]
    active = {f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in findings if f["status"] == "ACTIVE"}
    assert "CVE-2026-23001" not in active  # a baked patch's CVE: closed from the first scan on
    assert "CVE-2026-27011" in active  # NOT_PINNED's: not in the image


def test_an_instance_of_a_scenario_ami_still_starts_empty(server: Any, ec2: Any, ssm: Any) -> None:
    launched = _launch(ec2)
    _scan(server, ssm, launched)
    assert _installed(ssm, launched) == set()


def test_a_broken_source_ami_breaks_the_instances_of_its_baked_images(server: Any, ec2: Any, ssm: Any) -> None:
    builder = _launch(ec2, BROKEN_AMI)
    advance_clock(server.url, 1)
    assert _script(server, ssm, builder) == "Success"  # the builder itself is fine
    broken = ec2.create_image(InstanceId=builder, Name="bake-broken")["ImageId"]
    good = ec2.create_image(InstanceId=_launch(ec2), Name="bake-good")["ImageId"]
    advance_clock(server.url, CREATE_SECONDS)
    from_broken, from_good = _launch(ec2, broken), _launch(ec2, good)
    assert _script(server, ssm, from_broken) == "Failed"
    assert _script(server, ssm, from_good) == "Success"
    rebaked = ec2.create_image(InstanceId=from_broken, Name="bake-rebaked")["ImageId"]  # inherited
    advance_clock(server.url, CREATE_SECONDS)
    assert _script(server, ssm, _launch(ec2, rebaked)) == "Failed"


def test_deregister_image_forgets_it(server: Any, ec2: Any, ssm: Any) -> None:
    image_id = ec2.create_image(InstanceId=_launch(ec2), Name="bake-gone")["ImageId"]
    advance_clock(server.url, CREATE_SECONDS)
    kept = _launch(ec2, image_id)  # launched before the deregistration: keeps what it got
    ec2.deregister_image(ImageId=image_id)
    assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"] == []
    info = ssm.describe_instance_information(Filters=[{"Key": "InstanceIds", "Values": [kept]}])
    assert len(info["InstanceInformationList"]) == 1
    assert images.launch_state(server.world, "123456789012", REGION, image_id) is None
    assert _error(lambda: ec2.deregister_image(ImageId=image_id))[0] in (
        "InvalidAMIID.Unavailable",
        "InvalidAMIID.NotFound",
    )


@pytest.mark.parametrize(
    ("images", "amis", "problem"),
    [
        ({"create_seconds": -1}, None, "images.create_seconds"),
        ({"bake_seconds": 1}, None, "images"),
        (None, {AL2023: {"os": "AMAZON_LINUX_2023", "bake_breaks_health_checks": "yes"}}, "bake_breaks_health_checks"),
    ],
)
def test_the_scenario_knobs_are_validated(images: Any, amis: Any, problem: str) -> None:
    document = scenario()
    if images is not None:
        document["images"] = images
    if amis is not None:
        document["amis"] = amis
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(document)
    assert parse_scenario(scenario()).images.create_seconds == 30
    assert not parse_scenario(scenario()).amis[AL2023].bake_breaks_health_checks


# -- PatchCycle-BakeAmi ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bake(server: Any, aws: Any, ssm: Any) -> Any:
    aws("iam").create_instance_profile(InstanceProfileName=PROFILE)
    ssm.create_document(
        Name=RUNBOOK, Content=RUNBOOK_FILE.read_text(), DocumentType="Automation", DocumentFormat="YAML"
    )

    def start(
        source: str = AL2023, patch_ids: list[str] = PINNED, *, override: list[str] | None = None, run_id: str = "run-7"
    ) -> str:
        name = f"patchcycle-bake-{next(_names)}"
        parameters = {
            "SourceAmiId": [source],
            "IamInstanceProfileName": [PROFILE],
            "PatchIds": patch_ids,
            "InstallOverrideList": [_put_override_list(aws, override or patch_ids)],
            "RunId": [run_id],
            "TargetImageName": [name],
            **HEALTH,
        }
        return str(ssm.start_automation_execution(DocumentName=RUNBOOK, Parameters=parameters)["AutomationExecutionId"])

    return start


def _builder(ec2: Any, found: dict[str, Any]) -> dict[str, Any]:
    builder_id = found["Outputs"]["findBuilder.InstanceId"][0]
    described: dict[str, Any] = ec2.describe_instances(InstanceIds=[builder_id])["Reservations"][0]["Instances"][0]
    return described


def test_the_runbook_bakes_an_image_with_exactly_the_pinned_patches(server: Any, ec2: Any, ssm: Any, bake: Any) -> None:
    found = run_to_end(server.url, ssm, bake(), step=5, limit=1200)
    assert found["AutomationExecutionStatus"] == "Success", found.get("FailureMessage")
    ran = {name: step["StepStatus"] for name, step in steps(found).items()}
    assert ran["launchBuilder"] == "Success" and ran["launchBuilderInSubnet"] == "Pending"
    assert ran["windowsHealthCheck"] == "Pending" and ran["terminateBuilder"] == "Success"
    builder = _builder(ec2, found)
    assert builder["State"]["Name"] == "terminated"
    tags = {t["Key"]: t["Value"] for t in builder["Tags"]}
    assert tags["patchcycle:role"] == "ami-builder" and tags["patchcycle:run-id"] == "run-7"
    image_id = found["Outputs"]["createImage.ImageId"][0]
    image = _image(ec2, image_id)
    assert image["State"] == "available"
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == {
        "patchcycle:managed": "true",
        "patchcycle:run-id": "run-7",
        "patchcycle:source-ami": AL2023,
    }
    launched = _launch(ec2, image_id)
    _scan(server, ssm, launched)
    assert _installed(ssm, launched) == set(PINNED)
    assert _script(server, ssm, launched) == "Success"


def test_a_failed_install_fails_the_bake_and_terminates_the_builder(server: Any, ec2: Any, ssm: Any, bake: Any) -> None:
    found = run_to_end(server.url, ssm, bake(run_id="run-install-fails"), step=5, limit=1200)
    assert found["AutomationExecutionStatus"] == "Failed"
    ran = {name: step["StepStatus"] for name, step in steps(found).items()}
    assert ran["installPatches"] == "Failed" and ran["checkPinnedPatches"] == "Pending"
    assert ran["createImage"] == "Pending" and ran["terminateBuilder"] == "Success"
    assert "Status=[Failed]" in found["FailureMessage"]
    assert _builder(ec2, found)["State"]["Name"] == "terminated"


def test_an_install_of_other_than_the_pinned_patches_fails_the_bake(server: Any, ec2: Any, ssm: Any, bake: Any) -> None:
    # The override list misses a pinned patch: what was installed is not the pinned list.
    found = run_to_end(server.url, ssm, bake(override=[PINNED[0], NOT_PINNED]), step=5, limit=1200)
    assert found["AutomationExecutionStatus"] == "Failed"
    ran = {name: step["StepStatus"] for name, step in steps(found).items()}
    assert ran["installPatches"] == "Success" and ran["checkPinnedPatches"] == "Failed"
    assert ran["createImage"] == "Pending" and ran["terminateBuilder"] == "Success"
    assert _builder(ec2, found)["State"]["Name"] == "terminated"


def test_a_failing_health_check_fails_the_bake_and_terminates_the_builder(
    server: Any, ec2: Any, ssm: Any, bake: Any
) -> None:
    # A source AMI whose baked images break: bake one, then bake again from it; the second builder fails its checks.
    first = run_to_end(server.url, ssm, bake(BROKEN_AMI), step=5, limit=1200)
    assert first["AutomationExecutionStatus"] == "Success", first.get("FailureMessage")
    found = run_to_end(server.url, ssm, bake(first["Outputs"]["createImage.ImageId"][0]), step=5, limit=1200)
    assert found["AutomationExecutionStatus"] == "Failed"
    ran = {name: step["StepStatus"] for name, step in steps(found).items()}
    assert ran["linuxHealthCheck"] == "Failed" and ran["stopBuilder"] == "Pending"
    assert ran["createImage"] == "Pending" and ran["terminateBuilder"] == "Success"
    assert "Status=[Failed]" in found["FailureMessage"]
    assert _builder(ec2, found)["State"]["Name"] == "terminated"


def test_the_runbook_parses_as_the_project_writes_runbooks() -> None:
    document = yaml.safe_load(RUNBOOK_FILE.read_text())
    assert document["schemaVersion"] == "0.3"
    assert set(document["parameters"]) >= {
        "SourceAmiId",
        "InstanceType",
        "SubnetId",
        "IamInstanceProfileName",
        "PatchIds",
        "RunId",
        "TargetImageName",
        "AutomationAssumeRole",
    }
