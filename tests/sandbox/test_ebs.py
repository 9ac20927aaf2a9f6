"""EBS snapshots and root volume replacement in the sandbox (ebs.py), through boto3: snapshots pending then completed
(or error) over the simulated clock, DescribeSnapshots' filters and paging, replacement tasks and their errors, and
a restore bringing an instance's patch state back to the snapshot's, as Patch Manager and Inspector then see it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from include.sandbox.scenario import ScenarioError, parse_scenario
from include.sandbox.server import SandboxServer
from tests.conftest import advance_clock, client_factory

ACCOUNT, REGION = "123456789012", "us-east-1"
AL2023 = "ami-0a2023000000000a1"
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
SNAPSHOT, PENDING, IN_PROGRESS = 60, 5, 20  # ebs timings of the scenario below
RESCAN = 100  # Inspector's rescan delay
SCENARIO: dict[str, Any] = {
    "name": "ebs",
    "seed": 7,
    # Nearly frozen: only advance_clock moves simulated time, so every test is exact.
    "clock": {"start": START.isoformat(), "speed": 1e-9},
    "amis": {AL2023: {"os": "AMAZON_LINUX_2023"}},
    "accounts": [
        {
            "id": ACCOUNT,
            "regions": {
                REGION: {
                    "instance_groups": [
                        # Missing approved patches, so an Install changes the patch state.
                        {
                            "name": "web",
                            "count": 3,
                            "ami": AL2023,
                            "tags": {"Role": "web"},
                            "patched_through": "2026-07-31",
                        },
                        {"name": "snapfail", "count": 1, "ami": AL2023, "patched_through": "2026-07-31"},
                        {"name": "restorefail", "count": 1, "ami": AL2023, "patched_through": "2026-07-31"},
                        {"name": "detach", "count": 1, "ami": AL2023, "tags": {"Restore": "detach"}},
                    ]
                }
            },
        }
    ],
    "failures": [
        {"group": "snapfail", "snapshot_fails": True},
        {"group": "restorefail", "restore_fails": True},
        {"tags": {"Restore": "detach"}, "restore_fails": "detached"},
    ],
    "commands": {"delivery_seconds": 1, "scan_seconds": 5, "install_seconds": 20, "reboot_seconds": 10},
    "ebs": {
        "snapshot_seconds": SNAPSHOT,
        "restore_pending_seconds": PENDING,
        "restore_in_progress_seconds": IN_PROGRESS,
    },
    "inspector": {"rescan_delay_seconds": RESCAN},
}

Client = Any


@pytest.fixture
def aws(fresh_server: SandboxServer) -> Callable[..., Client]:
    return client_factory(fresh_server.url)


@pytest.fixture
def ec2(aws: Callable[..., Client]) -> Client:
    return aws("ec2", region=REGION)


def group(server: SandboxServer, name: str) -> list[str]:
    return sorted(i.instance_id for i in server.world.instances(ACCOUNT, REGION).values() if i.group == name)


def now(server: SandboxServer) -> datetime:
    return server.world.now()


def instance(ec2: Client, instance_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return found


def root_volume(ec2: Client, instance_id: str) -> str | None:
    described = instance(ec2, instance_id)
    return next(
        (
            m["Ebs"]["VolumeId"]
            for m in described["BlockDeviceMappings"]
            if m["DeviceName"] == described["RootDeviceName"]
        ),
        None,
    )


def attach_data_volume(ec2: Client, instance_id: str, device: str, **tags: str) -> str:
    zone = instance(ec2, instance_id)["Placement"]["AvailabilityZone"]
    spec = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}] if tags else []
    volume_id: str = ec2.create_volume(Size=20, AvailabilityZone=zone, TagSpecifications=spec)["VolumeId"]
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)
    return volume_id


def snapshot(ec2: Client, snapshot_id: str) -> dict[str, Any]:
    (found,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    return dict(found)


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def error(call: Callable[..., Any], **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]


def completed_root_snapshot(server: SandboxServer, ec2: Client, instance_id: str, **params: Any) -> str:
    """A completed snapshot of the instance's root volume (and only that one)."""
    created = ec2.create_snapshots(InstanceSpecification={"InstanceId": instance_id}, **params)["Snapshots"]
    root = root_volume(ec2, instance_id)
    (snapshot_id,) = [s["SnapshotId"] for s in created if s["VolumeId"] == root]
    advance_clock(server.url, SNAPSHOT)
    assert snapshot(ec2, snapshot_id)["State"] == "completed"
    return snapshot_id


def task_of(ec2: Client, task_id: str) -> dict[str, Any]:
    (found,) = ec2.describe_replace_root_volume_tasks(ReplaceRootVolumeTaskIds=[task_id])["ReplaceRootVolumeTasks"]
    return dict(found)


def restore(server: SandboxServer, ec2: Client, instance_id: str, snapshot_id: str, **params: Any) -> dict[str, Any]:
    """Replace the root volume from the snapshot and let the task finish."""
    task = ec2.create_replace_root_volume_task(InstanceId=instance_id, SnapshotId=snapshot_id, **params)
    advance_clock(server.url, PENDING + IN_PROGRESS)
    return task_of(ec2, task["ReplaceRootVolumeTask"]["ReplaceRootVolumeTaskId"])


def install(ssm: Client, server: SandboxServer, instance_id: str, reboot: str = "RebootIfNeeded") -> None:
    """AWS-RunPatchBaseline Install through SendCommand, run to its end."""
    command = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName="AWS-RunPatchBaseline",
        Parameters={"Operation": ["Install"], "RebootOption": [reboot]},
    )["Command"]
    advance_clock(server.url, 60)
    (invocation,) = ssm.list_command_invocations(CommandId=command["CommandId"])["CommandInvocations"]
    assert invocation["Status"] == "Success"


def patch_view(ssm: Client, instance_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What Patch Manager shows of an instance: its patch state and its patches."""
    (state,) = ssm.describe_instance_patch_states(InstanceIds=[instance_id])["InstancePatchStates"]
    pages = ssm.get_paginator("describe_instance_patches").paginate(InstanceId=instance_id)
    return dict(state), [patch for page in pages for patch in page["Patches"]]


# -- CreateSnapshots / CreateSnapshot ------------------------------------------------------------


def test_create_snapshots_of_every_volume_with_tags(fresh_server: SandboxServer, ec2: Client) -> None:
    instance_id = group(fresh_server, "web")[0]
    data = attach_data_volume(ec2, instance_id, "/dev/sdf", Name="data", Team="storefront")
    created = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": instance_id},
        Description="pre-patch",
        CopyTagsFromSource="volume",
        TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "run", "Value": "r1"}, {"Key": "Team", "Value": "ops"}]}
        ],
    )["Snapshots"]
    assert [s["VolumeId"] for s in created] == [root_volume(ec2, instance_id), data]
    for made in created:
        assert made["State"] == "pending"
        assert made["Progress"] == ""
        assert made["StartTime"] == START
        assert made["Description"] == "pre-patch"
        assert made["OwnerId"] == ACCOUNT
        assert made["Encrypted"] is False
        assert made["SnapshotId"].startswith("snap-")
    root_snap, data_snap = created
    assert tags_of(root_snap) == {"run": "r1", "Team": "ops"}  # the root volume has no tags
    # The volume's tags are copied, then the TagSpecifications apply (Team from them).
    assert tags_of(data_snap) == {"Name": "data", "Team": "ops", "run": "r1"}
    assert data_snap["VolumeSize"] == 20
    # The tags are moto's, for DescribeTags and DescribeSnapshots alike.
    described = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [data_snap["SnapshotId"]]}])["Tags"]
    assert {t["Key"]: t["Value"] for t in described} == tags_of(data_snap)
    assert {t["ResourceType"] for t in described} == {"snapshot"}
    assert tags_of(snapshot(ec2, data_snap["SnapshotId"])) == tags_of(data_snap)
    # Without CopyTagsFromSource only the TagSpecifications count.
    plain = ec2.create_snapshots(InstanceSpecification={"InstanceId": instance_id, "ExcludeBootVolume": True})
    assert [tags_of(s) for s in plain["Snapshots"]] == [{}]


def test_excluding_the_boot_volume_and_data_volumes(fresh_server: SandboxServer, ec2: Client) -> None:
    instance_id, other = group(fresh_server, "web")[:2]
    root = root_volume(ec2, instance_id)
    first, second = attach_data_volume(ec2, instance_id, "/dev/sdf"), attach_data_volume(ec2, instance_id, "/dev/sdg")

    def volumes(**spec: Any) -> list[str]:
        made = ec2.create_snapshots(InstanceSpecification={"InstanceId": instance_id, **spec})["Snapshots"]
        return [s["VolumeId"] for s in made]

    assert volumes() == [root, first, second]
    assert volumes(ExcludeBootVolume=True) == [first, second]
    assert volumes(ExcludeDataVolumeIds=[first]) == [root, second]
    assert volumes(ExcludeBootVolume=True, ExcludeDataVolumeIds=[first, second]) == []
    assert (
        error(ec2.create_snapshots, InstanceSpecification={"InstanceId": instance_id, "ExcludeDataVolumeIds": [root]})[
            0
        ]
        == "InvalidParameterValue"
    )
    elsewhere = attach_data_volume(ec2, other, "/dev/sdf")
    code, message = error(
        ec2.create_snapshots, InstanceSpecification={"InstanceId": instance_id, "ExcludeDataVolumeIds": [elsewhere]}
    )
    assert (code, elsewhere in message) == ("InvalidParameterValue", True)
    code, _ = error(
        ec2.create_snapshots,
        InstanceSpecification={"InstanceId": instance_id, "ExcludeDataVolumeIds": ["vol-0123456789abcdef0"]},
    )
    assert code == "InvalidVolume.NotFound"
    assert error(ec2.create_snapshots, InstanceSpecification={"InstanceId": "i-0123456789abcdef0"}) == (
        "InvalidInstanceID.NotFound",
        "The instance ID 'i-0123456789abcdef0' does not exist",
    )
    assert (
        error(ec2.create_snapshots, InstanceSpecification={"InstanceId": "web-1"})[0] == "InvalidInstanceID.Malformed"
    )
    code, _ = error(
        ec2.create_snapshots,
        InstanceSpecification={"InstanceId": instance_id},
        TagSpecifications=[{"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]}],
    )
    assert code == "InvalidParameterValue"
    assert error(ec2.create_snapshots, InstanceSpecification={"InstanceId": instance_id}, DryRun=True)[0] == (
        "DryRunOperation"
    )


def test_snapshots_are_pending_then_completed(fresh_server: SandboxServer, ec2: Client) -> None:
    instance_id = group(fresh_server, "web")[0]
    (made,) = ec2.create_snapshots(InstanceSpecification={"InstanceId": instance_id})["Snapshots"]
    single = ec2.create_snapshot(VolumeId=made["VolumeId"], Description="one volume")
    assert (single["State"], single["Progress"], single["Description"]) == ("pending", "", "one volume")
    for snapshot_id in (made["SnapshotId"], single["SnapshotId"]):
        assert (snapshot(ec2, snapshot_id)["State"], snapshot(ec2, snapshot_id)["Progress"]) == ("pending", "0%")
    advance_clock(fresh_server.url, SNAPSHOT / 2)
    halfway = snapshot(ec2, made["SnapshotId"])
    assert (halfway["State"], halfway["Progress"]) == ("pending", "50%")
    assert "CompletionTime" not in halfway
    advance_clock(fresh_server.url, SNAPSHOT / 2)
    for snapshot_id in (made["SnapshotId"], single["SnapshotId"]):
        done = snapshot(ec2, snapshot_id)
        assert (done["State"], done["Progress"], done["StartTime"]) == ("completed", "100%", START)
        assert done["CompletionTime"] == START + timedelta(seconds=SNAPSHOT)
        assert "StateMessage" not in done
    # moto's own view of the snapshot catches up too.
    statuses = ec2.describe_snapshot_tier_status()["SnapshotTierStatuses"]
    assert {s["SnapshotId"]: s["Status"] for s in statuses}[made["SnapshotId"]] == "completed"


def test_snapshot_fails_ends_in_error(fresh_server: SandboxServer, ec2: Client) -> None:
    (failing,) = group(fresh_server, "snapfail")
    data = attach_data_volume(ec2, failing, "/dev/sdf")
    created = ec2.create_snapshots(InstanceSpecification={"InstanceId": failing})["Snapshots"]
    single = ec2.create_snapshot(VolumeId=data)
    assert {s["State"] for s in created} == {"pending"}
    advance_clock(fresh_server.url, SNAPSHOT - 1)
    assert {snapshot(ec2, s["SnapshotId"])["State"] for s in created} == {"pending"}
    advance_clock(fresh_server.url, 1)
    for snapshot_id in [*(s["SnapshotId"] for s in created), single["SnapshotId"]]:
        failed = snapshot(ec2, snapshot_id)
        assert failed["State"] == "error"
        assert failed["StateMessage"]
        assert failed["Progress"] != "100%"
    # A snapshot in error cannot restore anything.
    root_snapshot = next(s["SnapshotId"] for s in created if s["VolumeId"] == root_volume(ec2, failing))
    code, message = error(ec2.create_replace_root_volume_task, InstanceId=failing, SnapshotId=root_snapshot)
    assert (code, "'error'" in message) == ("IncorrectState", True)
    # Other instances' snapshots complete as usual.
    healthy = ec2.create_snapshots(InstanceSpecification={"InstanceId": group(fresh_server, "web")[0]})["Snapshots"]
    advance_clock(fresh_server.url, SNAPSHOT)
    assert {snapshot(ec2, s["SnapshotId"])["State"] for s in healthy} == {"completed"}


# -- DescribeSnapshots, DeleteSnapshot -------------------------------------------------------------


def test_describe_snapshots_filters(fresh_server: SandboxServer, ec2: Client) -> None:
    web = group(fresh_server, "web")
    older = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": web[0]},
        Description="nightly backup",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "patchcycle:run-id", "Value": "run-1"}]}],
    )["Snapshots"][0]
    advance_clock(fresh_server.url, SNAPSHOT)
    newer = ec2.create_snapshots(
        InstanceSpecification={"InstanceId": web[1]},
        Description="pre-patch snapshot",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": [{"Key": "patchcycle:run-id", "Value": "run-2"}]}],
    )["Snapshots"][0]
    ids = {older["SnapshotId"], newer["SnapshotId"]}

    def found(**params: Any) -> set[str]:
        return {s["SnapshotId"] for s in ec2.describe_snapshots(**params)["Snapshots"]}

    def by(name: str, *values: str) -> set[str]:
        return found(Filters=[{"Name": name, "Values": list(values)}])

    assert found() == ids
    assert found(OwnerIds=["self"]) == ids == found(OwnerIds=[ACCOUNT])
    # The AMI's snapshot (its owner's, not shared) is not the caller's to see, even by id.
    (image,) = ec2.describe_images(ImageIds=[AL2023])["Images"]
    ami_snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    assert found(SnapshotIds=[ami_snapshot]) == set()
    assert found(OwnerIds=["210987654321"]) == set()
    assert by("snapshot-id", older["SnapshotId"]) == {older["SnapshotId"]}
    assert by("volume-id", newer["VolumeId"]) == {newer["SnapshotId"]}
    assert by("status", "completed") == {older["SnapshotId"]}
    assert by("status", "pending") == {newer["SnapshotId"]}
    assert by("status", "pending", "completed") == ids
    assert by("owner-id", ACCOUNT) == ids
    assert by("tag:patchcycle:run-id", "run-2") == {newer["SnapshotId"]}
    assert by("tag:patchcycle:run-id", "run-*") == ids
    assert by("tag-key", "patchcycle:run-id") == ids
    assert by("tag-key", "other") == set()
    assert by("description", "pre-patch snapshot") == {newer["SnapshotId"]}
    assert by("description", "*backup") == {older["SnapshotId"]}
    assert by("description", "?re-patch*") == {newer["SnapshotId"]}
    assert by("progress", "100%") == {older["SnapshotId"]}
    # Filters AND, their values OR.
    both = [
        {"Name": "tag:patchcycle:run-id", "Values": ["run-1", "run-2"]},
        {"Name": "volume-id", "Values": [older["VolumeId"]]},
        {"Name": "status", "Values": ["completed"]},
    ]
    assert found(Filters=both) == {older["SnapshotId"]}
    assert found(SnapshotIds=[newer["SnapshotId"]], Filters=[{"Name": "status", "Values": ["completed"]}]) == set()
    assert error(ec2.describe_snapshots, Filters=[{"Name": "colour", "Values": ["blue"]}])[0] == "InvalidParameterValue"
    assert error(ec2.describe_snapshots, SnapshotIds=["snap-0123456789abcdef0"]) == (
        "InvalidSnapshot.NotFound",
        "The snapshot 'snap-0123456789abcdef0' does not exist.",
    )
    assert error(ec2.describe_snapshots, SnapshotIds=["nightly"])[0] == "InvalidSnapshotID.Malformed"


def test_describe_snapshots_paging(fresh_server: SandboxServer, ec2: Client) -> None:
    volumes = [root_volume(ec2, instance_id) for instance_id in group(fresh_server, "web")]
    made = []
    for round_ in range(4):
        for volume_id in volumes:
            made.append(ec2.create_snapshot(VolumeId=volume_id, Description=f"round {round_}")["SnapshotId"])
            advance_clock(fresh_server.url, 1)
    assert len(made) == 12
    first = ec2.describe_snapshots(MaxResults=5)
    second = ec2.describe_snapshots(MaxResults=5, NextToken=first["NextToken"])
    third = ec2.describe_snapshots(MaxResults=5, NextToken=second["NextToken"])
    pages = [first, second, third]
    assert [len(p["Snapshots"]) for p in pages] == [5, 5, 2]
    assert "NextToken" not in third
    assert [s["SnapshotId"] for p in pages for s in p["Snapshots"]] == made  # oldest first
    # Pages stay right while snapshots complete and are deleted in between.
    advance_clock(fresh_server.url, SNAPSHOT)
    ec2.delete_snapshot(SnapshotId=made[6])
    again = ec2.describe_snapshots(MaxResults=5, NextToken=first["NextToken"])
    assert [s["SnapshotId"] for s in again["Snapshots"]] == made[5:6] + made[7:11]
    paginated = ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], PaginationConfig={"PageSize": 5})
    assert [s["SnapshotId"] for page in paginated for s in page["Snapshots"]] == made[:6] + made[7:]
    assert len(ec2.describe_snapshots(MaxResults=1000)["Snapshots"]) == 11
    assert len(ec2.describe_snapshots(MaxResults=5000)["Snapshots"]) == 11  # more than 1000 reads as 1000
    assert error(ec2.describe_snapshots, MaxResults=4)[0] == "InvalidParameterValue"
    assert error(ec2.describe_snapshots, MaxResults=5, SnapshotIds=[made[0]])[0] == "InvalidParameterCombination"
    assert error(ec2.describe_snapshots, MaxResults=5, NextToken="not-a-token")[0] == "InvalidPaginationToken"


def test_delete_snapshot(fresh_server: SandboxServer, ec2: Client) -> None:
    instance_id = group(fresh_server, "web")[0]
    snapshot_id = completed_root_snapshot(fresh_server, ec2, instance_id)
    ec2.create_tags(Resources=[snapshot_id], Tags=[{"Key": "keep", "Value": "no"}])
    assert tags_of(snapshot(ec2, snapshot_id)) == {"keep": "no"}
    assert error(ec2.delete_snapshot, SnapshotId=snapshot_id, DryRun=True)[0] == "DryRunOperation"
    # In use while a root volume replacement from it is under way.
    task = ec2.create_replace_root_volume_task(InstanceId=instance_id, SnapshotId=snapshot_id)["ReplaceRootVolumeTask"]
    code, message = error(ec2.delete_snapshot, SnapshotId=snapshot_id)
    assert (code, task["ReplaceRootVolumeTaskId"] in message) == ("InvalidSnapshot.InUse", True)
    advance_clock(fresh_server.url, PENDING + IN_PROGRESS)
    ec2.delete_snapshot(SnapshotId=snapshot_id)
    assert ec2.describe_snapshots()["Snapshots"] == []
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [snapshot_id]}])["Tags"] == []
    assert error(ec2.delete_snapshot, SnapshotId=snapshot_id) == (
        "InvalidSnapshot.NotFound",
        f"The snapshot '{snapshot_id}' does not exist.",
    )


# -- CreateReplaceRootVolumeTask / DescribeReplaceRootVolumeTasks -----------------------------------------


def test_replace_root_volume_task_errors(fresh_server: SandboxServer, ec2: Client) -> None:
    first, second, third = group(fresh_server, "web")
    snapshot_id = completed_root_snapshot(fresh_server, ec2, first)
    create = ec2.create_replace_root_volume_task
    assert error(create, InstanceId="i-0123456789abcdef0", SnapshotId=snapshot_id)[0] == "InvalidInstanceID.NotFound"
    assert error(create, InstanceId=first, SnapshotId="snap-0123456789abcdef0") == (
        "InvalidSnapshot.NotFound",
        "The snapshot 'snap-0123456789abcdef0' does not exist.",
    )
    assert error(create, InstanceId=first, SnapshotId="latest")[0] == "InvalidSnapshotID.Malformed"
    # Only a snapshot of the instance's root volume lineage: not another instance's, not a data volume's.
    assert error(create, InstanceId=second, SnapshotId=snapshot_id)[0] == "InvalidParameterValue"
    data = attach_data_volume(ec2, first, "/dev/sdf")
    data_snapshot = ec2.create_snapshot(VolumeId=data)["SnapshotId"]
    advance_clock(fresh_server.url, SNAPSHOT)
    assert error(create, InstanceId=first, SnapshotId=data_snapshot)[0] == "InvalidParameterValue"
    # A snapshot still pending.
    pending = ec2.create_snapshot(VolumeId=root_volume(ec2, first))["SnapshotId"]
    code, message = error(create, InstanceId=first, SnapshotId=pending)
    assert (code, "pending" in message) == ("IncorrectState", True)
    # The instance must be running.
    ec2.stop_instances(InstanceIds=[second])
    stopped_snapshot = ec2.create_snapshot(VolumeId=root_volume(ec2, second))["SnapshotId"]
    advance_clock(fresh_server.url, SNAPSHOT)
    assert error(create, InstanceId=second, SnapshotId=stopped_snapshot) == (
        "IncorrectState",
        f"Instance '{second}' is not 'running'.",
    )
    # Tags only for the task, and only one task at a time per instance.
    wrong_tags = [{"ResourceType": "snapshot", "Tags": [{"Key": "a", "Value": "b"}]}]
    assert error(create, InstanceId=first, SnapshotId=snapshot_id, TagSpecifications=wrong_tags)[0] == (
        "InvalidParameterValue"
    )
    assert error(create, InstanceId=first, SnapshotId=snapshot_id, DryRun=True)[0] == "DryRunOperation"
    create(InstanceId=first, SnapshotId=snapshot_id)
    assert error(create, InstanceId=first, SnapshotId=snapshot_id)[0] == "IncorrectState"
    # Launch state, AMIs and given volumes are not simulated: said so, never silently ignored.
    with pytest.raises(ClientError) as raised:
        create(InstanceId=third)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert error(create, InstanceId=third, SnapshotId=snapshot_id, ImageId=AL2023)[0] == "InvalidParameterCombination"
    assert ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed"


def test_task_states_over_time_and_the_new_root_volume(fresh_server: SandboxServer, ec2: Client) -> None:
    first, second = group(fresh_server, "web")[:2]
    snapshot_id = completed_root_snapshot(fresh_server, ec2, first)
    original = root_volume(ec2, first)
    started = now(fresh_server)
    tags = [{"ResourceType": "replace-root-volume-task", "Tags": [{"Key": "patchcycle:run-id", "Value": "run-1"}]}]
    created = ec2.create_replace_root_volume_task(
        InstanceId=first, SnapshotId=snapshot_id, TagSpecifications=tags, ClientToken="restore-1"
    )["ReplaceRootVolumeTask"]
    task_id = created["ReplaceRootVolumeTaskId"]
    assert task_id.startswith("replacevol-")
    assert created["TaskState"] == "pending"
    assert created["StartTime"] == started.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "CompleteTime" not in created
    assert tags_of(created) == {"patchcycle:run-id": "run-1"}
    assert (created["InstanceId"], created["SnapshotId"], created["DeleteReplacedRootVolume"]) == (
        first,
        snapshot_id,
        False,
    )
    # The same ClientToken answers the same task; with other parameters it is refused.
    again = ec2.create_replace_root_volume_task(InstanceId=first, SnapshotId=snapshot_id, ClientToken="restore-1")
    assert again["ReplaceRootVolumeTask"]["ReplaceRootVolumeTaskId"] == task_id
    code, _ = error(
        ec2.create_replace_root_volume_task,
        InstanceId=first,
        SnapshotId=snapshot_id,
        ClientToken="restore-1",
        DeleteReplacedRootVolume=True,
    )
    assert code == "IdempotentParameterMismatch"
    advance_clock(fresh_server.url, PENDING - 1)
    assert task_of(ec2, task_id)["TaskState"] == "pending"
    advance_clock(fresh_server.url, 1)
    assert task_of(ec2, task_id)["TaskState"] == "in-progress"
    assert root_volume(ec2, first) == original
    advance_clock(fresh_server.url, IN_PROGRESS)
    done = task_of(ec2, task_id)
    assert done["TaskState"] == "succeeded"
    assert done["CompleteTime"] == (started + timedelta(seconds=PENDING + IN_PROGRESS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # A new root volume from the snapshot, same size and type; the old one is kept, detached.
    replacement = root_volume(ec2, first)
    assert replacement not in (None, original)
    (volume,) = ec2.describe_volumes(VolumeIds=[replacement])["Volumes"]
    (old,) = ec2.describe_volumes(VolumeIds=[original])["Volumes"]
    assert (volume["SnapshotId"], volume["Size"], volume["VolumeType"]) == (snapshot_id, old["Size"], old["VolumeType"])
    assert (volume["State"], old["State"]) == ("in-use", "available")
    (mapping,) = [m for m in instance(ec2, first)["BlockDeviceMappings"] if m["Ebs"]["VolumeId"] == replacement]
    assert mapping["Ebs"]["DeleteOnTermination"] is True
    assert instance(ec2, first)["State"]["Name"] == "running"
    # The snapshot of the replaced volume still restores the new one (same lineage); DeleteReplacedRootVolume.
    second_task = restore(fresh_server, ec2, first, snapshot_id, DeleteReplacedRootVolume=True)
    assert second_task["TaskState"] == "succeeded"
    assert error(ec2.describe_volumes, VolumeIds=[replacement])[0] == "InvalidVolume.NotFound"
    # Describing: by id, by instance, paging; unknown ids are errors.
    other_snapshot = completed_root_snapshot(fresh_server, ec2, second)
    other = restore(fresh_server, ec2, second, other_snapshot)
    listed = ec2.describe_replace_root_volume_tasks()["ReplaceRootVolumeTasks"]
    assert [t["ReplaceRootVolumeTaskId"] for t in listed] == [
        task_id,
        second_task["ReplaceRootVolumeTaskId"],
        other["ReplaceRootVolumeTaskId"],
    ]
    by_instance = ec2.describe_replace_root_volume_tasks(Filters=[{"Name": "instance-id", "Values": [second]}])
    assert [t["ReplaceRootVolumeTaskId"] for t in by_instance["ReplaceRootVolumeTasks"]] == [
        other["ReplaceRootVolumeTaskId"]
    ]
    page = ec2.describe_replace_root_volume_tasks(MaxResults=2)
    rest = ec2.describe_replace_root_volume_tasks(MaxResults=2, NextToken=page["NextToken"])
    assert [t["ReplaceRootVolumeTaskId"] for t in page["ReplaceRootVolumeTasks"] + rest["ReplaceRootVolumeTasks"]] == [
        t["ReplaceRootVolumeTaskId"] for t in listed
    ]
    assert "NextToken" not in rest
    assert error(ec2.describe_replace_root_volume_tasks, MaxResults=51)[0] == "InvalidParameterValue"
    missing = "replacevol-0123456789abcdef0"
    assert error(ec2.describe_replace_root_volume_tasks, ReplaceRootVolumeTaskIds=[missing])[0] == (
        "InvalidReplaceRootVolumeTaskId.NotFound"
    )
    assert error(ec2.describe_replace_root_volume_tasks, ReplaceRootVolumeTaskIds=["task-1"])[0] == (
        "InvalidReplaceRootVolumeTaskId.Malformed"
    )
    assert error(ec2.describe_replace_root_volume_tasks, Filters=[{"Name": "state", "Values": ["x"]}])[0] == (
        "InvalidParameterValue"
    )


def test_restore_fails(fresh_server: SandboxServer, aws: Callable[..., Client], ec2: Client) -> None:
    (failing,) = group(fresh_server, "restorefail")
    original = root_volume(ec2, failing)
    snapshot_id = completed_root_snapshot(fresh_server, ec2, failing)
    task = ec2.create_replace_root_volume_task(InstanceId=failing, SnapshotId=snapshot_id)["ReplaceRootVolumeTask"]
    advance_clock(fresh_server.url, PENDING)
    assert task_of(ec2, task["ReplaceRootVolumeTaskId"])["TaskState"] == "in-progress"
    advance_clock(fresh_server.url, IN_PROGRESS)
    failed = task_of(ec2, task["ReplaceRootVolumeTaskId"])
    assert failed["TaskState"] == "failed"
    assert "CompleteTime" in failed
    assert root_volume(ec2, failing) == original  # the original root volume stays attached
    # failed-detached (restore_fails: detached, selected by tag): no root volume left, the agent unreachable.
    (detached,) = group(fresh_server, "detach")
    detached_snapshot = completed_root_snapshot(fresh_server, ec2, detached)
    task = restore(fresh_server, ec2, detached, detached_snapshot)
    assert task["TaskState"] == "failed-detached"
    assert root_volume(ec2, detached) is None
    info = aws("ssm", region=REGION).describe_instance_information(
        Filters=[{"Key": "InstanceIds", "Values": [detached]}]
    )["InstanceInformationList"]
    assert [i["PingStatus"] for i in info] == ["ConnectionLost"]


# -- the patch state comes back ---------------------------------------------------------------------------


def test_restore_brings_back_the_patch_state(
    fresh_server: SandboxServer, aws: Callable[..., Client], ec2: Client
) -> None:
    ssm, inspector = aws("ssm", region=REGION), aws("inspector2", region=REGION)
    instance_id = group(fresh_server, "web")[0]

    def findings() -> dict[str, str]:
        criteria = {"resourceId": [{"comparison": "EQUALS", "value": instance_id}]}
        pages = inspector.get_paginator("list_findings").paginate(filterCriteria=criteria)
        return {
            f["packageVulnerabilityDetails"]["vulnerabilityId"]: f["status"] for page in pages for f in page["findings"]
        }

    snapshot_id = completed_root_snapshot(fresh_server, ec2, instance_id)
    before = patch_view(ssm, instance_id)
    findings_before = findings()
    assert before[0]["Operation"] == "Scan" and before[0]["MissingCount"] > 0
    install(ssm, fresh_server, instance_id)
    advance_clock(fresh_server.url, RESCAN)
    patched = patch_view(ssm, instance_id)
    assert patched[0]["Operation"] == "Install"
    assert patched[0]["MissingCount"] == 0 and patched[0]["InstalledCount"] > before[0]["InstalledCount"]
    closed = {cve for cve, status in findings().items() if status == "CLOSED"}
    assert closed and all(findings_before[cve] == "ACTIVE" for cve in closed)
    task = restore(fresh_server, ec2, instance_id, snapshot_id)
    assert task["TaskState"] == "succeeded"
    # Patch Manager shows what it showed when the snapshot was taken: the last operation before it.
    assert patch_view(ssm, instance_id) == before
    world_instance = fresh_server.world.instance(ACCOUNT, REGION, instance_id)
    assert world_instance is not None and world_instance.pending_reboot == set()
    # Inspector noticed the change when the replacement completed and rescanned RESCAN seconds later.
    completed = datetime.fromisoformat(task["CompleteTime"].replace("Z", "+00:00"))
    advance_clock(fresh_server.url, (completed + timedelta(seconds=RESCAN) - now(fresh_server)).total_seconds())
    assert {cve: status for cve, status in findings().items() if cve in closed} == dict.fromkeys(closed, "ACTIVE")
    # A scan now reports what the restored disk holds: the same patches missing as before the install.
    command = ssm.send_command(
        InstanceIds=[instance_id], DocumentName="AWS-RunPatchBaseline", Parameters={"Operation": ["Scan"]}
    )["Command"]
    advance_clock(fresh_server.url, 30)
    assert ssm.list_commands(CommandId=command["CommandId"])["Commands"][0]["Status"] == "Success"
    rescanned = patch_view(ssm, instance_id)
    assert rescanned[0]["Operation"] == "Scan"
    assert rescanned[0]["MissingCount"] == before[0]["MissingCount"]


def test_patches_pending_a_reboot_take_effect_with_the_replacement(
    fresh_server: SandboxServer, aws: Callable[..., Client], ec2: Client
) -> None:
    ssm = aws("ssm", region=REGION)
    instance_id = group(fresh_server, "web")[1]
    managed = fresh_server.world.instance(ACCOUNT, REGION, instance_id)
    assert managed is not None
    install(ssm, fresh_server, instance_id, reboot="NoReboot")
    pending, installed = set(managed.pending_reboot), set(managed.installed)
    assert pending  # the kernel update waits for a reboot
    snapshot_id = completed_root_snapshot(fresh_server, ec2, instance_id)
    at_snapshot = patch_view(ssm, instance_id)
    assert at_snapshot[0]["InstalledPendingRebootCount"] == len(pending)
    install(ssm, fresh_server, instance_id)  # RebootIfNeeded: the reboot puts them in effect
    assert managed.pending_reboot == set()
    assert restore(fresh_server, ec2, instance_id, snapshot_id)["TaskState"] == "succeeded"
    # Patch Manager shows the report as of the snapshot; the disk holds what it held then, and the
    # replacement rebooted the instance, so the pending patches now run.
    assert patch_view(ssm, instance_id) == at_snapshot
    assert set(managed.installed) == installed
    assert managed.pending_reboot == set()


def test_only_what_finished_before_the_restore_is_rolled_back(
    fresh_server: SandboxServer, aws: Callable[..., Client], ec2: Client
) -> None:
    """Both an install and the replacement come due in one jump of the clock: they apply in time order."""
    ssm = aws("ssm", region=REGION)
    earlier, later = group(fresh_server, "web")[:2]
    snapshots = {i: completed_root_snapshot(fresh_server, ec2, i) for i in (earlier, later)}
    before = {i: patch_view(ssm, i)[0] for i in (earlier, later)}

    def send_install(instance_id: str) -> None:
        params = {"Operation": ["Install"], "RebootOption": ["NoReboot"]}  # done 21 s after sending
        ssm.send_command(InstanceIds=[instance_id], DocumentName="AWS-RunPatchBaseline", Parameters=params)

    # Install finishes at +21 s, before the replacement completes (+25 s): it is rolled back.
    send_install(earlier)
    ec2.create_replace_root_volume_task(InstanceId=earlier, SnapshotId=snapshots[earlier])
    # Replacement completes at +25 s, the install sent at +10 s finishes at +31 s: it stays.
    ec2.create_replace_root_volume_task(InstanceId=later, SnapshotId=snapshots[later])
    advance_clock(fresh_server.url, 10)
    send_install(later)
    advance_clock(fresh_server.url, 100)
    assert patch_view(ssm, earlier)[0] == before[earlier]
    kept = patch_view(ssm, later)[0]
    assert kept["Operation"] == "Install" and kept["MissingCount"] == 0


# -- scenario knobs -----------------------------------------------------------------------------------------


def test_scenario_knobs() -> None:
    scenario = parse_scenario(copy.deepcopy(SCENARIO))
    assert (
        scenario.ebs.snapshot_seconds,
        scenario.ebs.restore_pending_seconds,
        scenario.ebs.restore_in_progress_seconds,
    ) == (SNAPSHOT, PENDING, IN_PROGRESS)
    assert [(f.snapshot_fails, f.restore_fails) for f in scenario.failures] == [
        (True, ""),
        (False, "failed"),
        (False, "failed-detached"),
    ]
    defaults = parse_scenario({k: v for k, v in copy.deepcopy(SCENARIO).items() if k not in ("ebs", "failures")})
    assert (defaults.ebs.snapshot_seconds, defaults.ebs.restore_pending_seconds) == (60, 5)
    for bad, field in (
        ({"ebs": {"snapshot_seconds": -1}}, "ebs.snapshot_seconds"),
        ({"ebs": {"snapshot_minutes": 1}}, "ebs"),
        ({"failures": [{"group": "web", "restore_fails": "sometimes"}]}, "failures[0].restore_fails"),
    ):
        with pytest.raises(ScenarioError, match=field.replace("[", r"\[").replace("]", r"\]")):
            parse_scenario({**copy.deepcopy(SCENARIO), **bad}, source="bad.yaml")
