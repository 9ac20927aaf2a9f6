"""The APIs the sandbox adds are still missing (or wrong) in the pinned moto: a moto upgrade shows up here."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError
from moto.server import ThreadedMotoServer

from include.sandbox import automation, ebs, rds_maintenance, ssm_commands, ssm_documents, ssm_patches
from include.sandbox.server import HANDLERS, reset_moto

INSTANCE = "i-0123456789abcdef0"
MINIMAL_PARAMS: dict[str, dict[str, Any]] = {
    "DescribeInstancePatchStates": {"InstanceIds": [INSTANCE]},
    "DescribeInstancePatchStatesForPatchGroup": {"PatchGroup": "web"},
    "DescribeInstancePatches": {"InstanceId": INSTANCE},
    "DescribeAvailablePatches": {},
    "GetPatchBaseline": {"BaselineId": "pb-0123456789abcdef0"},
    "ListComplianceItems": {"ResourceIds": [INSTANCE], "ResourceTypes": ["ManagedInstance"]},
    "ListResourceComplianceSummaries": {},
    "ListCommandInvocations": {"CommandId": "5b8c4f2e-1111-2222-3333-444455556666"},
    "CancelCommand": {"CommandId": "5b8c4f2e-1111-2222-3333-444455556666"},
    "DescribeInstanceInformation": {},
    "StartAutomationExecution": {"DocumentName": "PatchCycle-Runbook"},
    "GetAutomationExecution": {"AutomationExecutionId": "5b8c4f2e-1111-2222-3333-444455556666"},
    "DescribeAutomationExecutions": {},
    "DescribeAutomationStepExecutions": {"AutomationExecutionId": "5b8c4f2e-1111-2222-3333-444455556666"},
    "StopAutomationExecution": {"AutomationExecutionId": "5b8c4f2e-1111-2222-3333-444455556666"},
}
RDS_MINIMAL_PARAMS: dict[str, dict[str, Any]] = {
    "DescribePendingMaintenanceActions": {},
    "ApplyPendingMaintenanceAction": {
        "ResourceIdentifier": "arn:aws:rds:us-east-1:123456789012:db:db-1",
        "ApplyAction": "system-update",
        "OptInType": "immediate",
    },
}


@pytest.fixture(scope="module")
def plain_moto() -> Iterator[Any]:
    reset_moto()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield boto3.client(
        "ssm",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    server.stop()


def test_every_missing_operation_is_served_by_the_sandbox() -> None:
    for operation in [*ssm_patches.MOTO_MISSING, *ssm_commands.MOTO_MISSING, *ssm_commands.MOTO_WRONG]:
        assert ("ssm", operation) in HANDLERS
    for operation in rds_maintenance.MOTO_MISSING:
        assert ("rds", operation) in HANDLERS
    for operation in [*automation.MOTO_MISSING, *ssm_documents.MOTO_WRONG]:
        assert ("ssm", operation) in HANDLERS
    for operation in [*ebs.MOTO_MISSING, *ebs.MOTO_WRONG]:
        assert ("ec2", operation) in HANDLERS


@pytest.mark.parametrize("operation", [*ssm_patches.MOTO_MISSING, *ssm_commands.MOTO_MISSING, *automation.MOTO_MISSING])
def test_moto_still_lacks(plain_moto: Any, operation: str) -> None:
    assert operation in MINIMAL_PARAMS, f"add minimal parameters for {operation} to this test"
    method = getattr(plain_moto, _snake(operation))
    with pytest.raises(ClientError) as raised:
        method(**MINIMAL_PARAMS[operation])
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500, (
        f"moto now implements ssm:{operation}: compare it with the sandbox's and drop ours if it is faithful"
    )


def test_moto_still_fans_send_command_out(plain_moto: Any) -> None:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=plain_moto.meta.endpoint_url)
    reservation = ec2.run_instances(ImageId="ami-0a1b2c3d4e5f60001", MinCount=3, MaxCount=3)
    target = reservation["Instances"][0]["InstanceId"]
    command = plain_moto.send_command(InstanceIds=[target], DocumentName="No-Such-Document")["Command"]
    # AWS: InvalidDocument, and a command for exactly one target. moto: accepted, and sent to all three.
    in_region = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}
    assert len(in_region) >= 3
    assert set(command["InstanceIds"]) == in_region
    assert command["TargetCount"] != 1
    listed = plain_moto.list_commands(CommandId=command["CommandId"])["Commands"][0]
    assert listed["Status"] == "Success"  # moto: done at once, whatever the document


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@pytest.mark.parametrize("operation", rds_maintenance.MOTO_MISSING)
def test_moto_still_lacks_rds(plain_moto: Any, operation: str) -> None:
    rds = boto3.client(
        "rds",
        region_name="us-east-1",
        endpoint_url=plain_moto.meta.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    # moto answers an HTML 500 page, which botocore cannot parse as RDS's XML.
    with pytest.raises((ClientError, ResponseParserError)) as raised:
        getattr(rds, _snake(operation))(**RDS_MINIMAL_PARAMS[operation])
    if isinstance(raised.value, ClientError):
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500, (
            f"moto now implements rds:{operation}"
        )
    else:
        assert "500 Internal Server Error" in str(raised.value), f"moto now implements rds:{operation}"


EC2_MINIMAL_PARAMS: dict[str, dict[str, Any]] = {
    "CreateReplaceRootVolumeTask": {"InstanceId": INSTANCE, "SnapshotId": "snap-0123456789abcdef0"},
    "DescribeReplaceRootVolumeTasks": {},
}


def _ec2(plain_moto: Any) -> Any:
    return boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=plain_moto.meta.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


@pytest.mark.parametrize("operation", ebs.MOTO_MISSING)
def test_moto_still_lacks_ec2(plain_moto: Any, operation: str) -> None:
    # moto answers an HTML 500 page (NotImplementedError), which botocore cannot parse as EC2's XML.
    with pytest.raises((ClientError, ResponseParserError)) as raised:
        getattr(_ec2(plain_moto), _snake(operation))(**EC2_MINIMAL_PARAMS[operation])
    if isinstance(raised.value, ClientError):
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500, (
            f"moto now implements ec2:{operation}"
        )
    else:
        assert "500 Internal Server Error" in str(raised.value), f"moto now implements ec2:{operation}"


def test_moto_still_gets_snapshots_wrong(plain_moto: Any) -> None:
    ec2 = _ec2(plain_moto)
    launched = ec2.run_instances(ImageId="ami-0a1b2c3d4e5f60001", MinCount=1, MaxCount=1)["Instances"][0]
    zone = launched["Placement"]["AvailabilityZone"]
    tags = [{"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "data"}]}]
    data = ec2.create_volume(Size=10, AvailabilityZone=zone, TagSpecifications=tags)["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=launched["InstanceId"], Device="/dev/sdf")
    made = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": launched["InstanceId"], "ExcludeDataVolumeIds": [data]},
        CopyTagsFromSource="volume",
    )["Snapshots"]
    # AWS: the data volume excluded, its tags copied, each snapshot pending. moto: neither, and no State at all.
    assert data in {s["VolumeId"] for s in made}, "moto now honours ExcludeDataVolumeIds"
    assert all(s["Tags"] == [] for s in made), "moto now honours CopyTagsFromSource"
    assert all("State" not in s for s in made)
    ids = [s["SnapshotId"] for s in made]
    states = {s["SnapshotId"]: s["State"] for s in ec2.describe_snapshots(SnapshotIds=ids)["Snapshots"]}
    assert set(states.values()) == {"completed"}, "moto's snapshots no longer complete at once"
    for _ in range(2):
        ec2.create_snapshots(InstanceSpecification={"InstanceId": launched["InstanceId"]})
    assert len(ec2.describe_snapshots(MaxResults=5)["Snapshots"]) > 5, "moto now pages DescribeSnapshots"
    with pytest.raises(ClientError) as raised:
        ec2.delete_snapshot(SnapshotId="snap-0123456789abcdef0")
    assert raised.value.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
    assert "snap-0123456789abcdef0" not in str(raised.value.response["Error"].get("Message")), (
        "moto's InvalidSnapshot.NotFound now names the snapshot"
    )


def test_moto_still_gets_automation_documents_wrong(plain_moto: Any) -> None:
    # AWS: InvalidDocumentContent (an Automation document needs mainSteps). moto: stored.
    plain_moto.create_document(
        Name="Empty-Runbook", Content='{"schemaVersion": "0.3", "mainSteps": []}', DocumentType="Automation"
    )
    described = plain_moto.describe_document(Name="Empty-Runbook")["Document"]
    assert described["PlatformTypes"] == ["Not Implemented (moto)"], "moto now reports real PlatformTypes"
    with pytest.raises(ClientError) as raised:
        plain_moto.describe_document(Name="Empty-Runbook", DocumentVersion="$DEFAULT")
    assert raised.value.response["Error"]["Code"] == "InvalidDocument", "moto now reads $DEFAULT"
