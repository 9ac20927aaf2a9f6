"""The inventory table from raw EC2, SSM, RDS and S3 records: columns, dtypes and classification."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import pytest

from patchcycle.core.inventory import (
    INVENTORY_COLUMNS,
    RESPONSIBILITY_BY_TYPE,
    combine,
    ec2_rows,
    empty_inventory,
    rds_rows,
    s3_rows,
)

ACCOUNT, REGION = "123456789012", "us-east-1"
LAST_PING = dt.datetime(2026, 11, 18, 2, 30, tzinfo=dt.UTC)


def instance(
    instance_id: str, state: str = "running", tags: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """An EC2 DescribeInstances Instance dict."""
    return {
        "InstanceId": instance_id,
        "ImageId": "ami-0a1b2c3d4e5f60001",
        "InstanceType": "t3.medium",
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "State": {"Code": 16, "Name": state},
        "PlatformDetails": "Linux/UNIX",
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        **extra,
    }


def info(instance_id: str, ping: str = "Online") -> dict[str, Any]:
    """An SSM InstanceInformation dict."""
    return {
        "InstanceId": instance_id,
        "PingStatus": ping,
        "LastPingDateTime": LAST_PING,
        "AgentVersion": "3.3.987.0",
        "PlatformType": "Linux",
        "PlatformName": "Amazon Linux",
        "PlatformVersion": "2023",
        "ResourceType": "EC2Instance",
    }


def _check_schema(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(INVENTORY_COLUMNS)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == dict(INVENTORY_COLUMNS)


def test_ec2_classification_managed_unmanaged_offline_stopped_terminated() -> None:
    instances = [
        instance("i-online", tags={"Name": "web-1", "Environment": "production", "PatchGroup": "web"}),
        instance("i-unmanaged", tags={"Patch Group": "legacy"}),
        instance("i-offline"),
        instance("i-stopped", state="stopped"),
        instance("i-terminated", state="terminated"),
        instance("i-windows", Platform="windows", PlatformDetails="Windows"),
    ]
    managed = [info("i-online"), info("i-offline", ping="ConnectionLost"), info("i-stopped"), info("mi-onprem")]
    frame = ec2_rows(ACCOUNT, REGION, instances, managed)
    _check_schema(frame)
    rows = frame.set_index("resource_id")
    assert list(rows.index) == ["i-online", "i-unmanaged", "i-offline", "i-stopped", "i-windows"]
    assert set(rows["responsibility"]) == {"customer"}
    assert rows["patchable"].to_dict() == {
        "i-online": True,
        "i-unmanaged": False,
        "i-offline": False,
        "i-stopped": False,
        "i-windows": False,
    }
    assert rows["skip_reason"].to_dict() == {
        "i-online": "",
        "i-unmanaged": "unmanaged: not registered with Systems Manager",
        "i-offline": "offline: SSM Agent ConnectionLost since 2026-11-18T02:30:00Z",
        "i-stopped": "stopped",
        "i-windows": "unmanaged: not registered with Systems Manager",
    }
    assert rows["managed"].to_dict() == {
        "i-online": True,
        "i-unmanaged": False,
        "i-offline": True,
        "i-stopped": True,
        "i-windows": False,
    }
    assert rows["ping_status"].to_dict()["i-unmanaged"] == ""
    assert rows.loc["i-offline", "ping_status"] == "ConnectionLost"
    online = rows.loc["i-online"]
    assert (online["name"], online["environment"], online["patch_group"]) == ("web-1", "production", "web")
    assert json.loads(online["tags"]) == {"Name": "web-1", "Environment": "production", "PatchGroup": "web"}
    assert online["resource_arn"] == f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-online"
    assert (online["platform_type"], online["platform_name"], online["platform_version"]) == (
        "Linux",
        "Amazon Linux",
        "2023",
    )
    assert online["availability_zone"] == "us-east-1a"
    assert rows.loc["i-unmanaged", "patch_group"] == "legacy"
    assert rows.loc["i-windows", "platform_type"] == "Windows"


def test_rds_with_and_without_pending_actions() -> None:
    dbs: list[dict[str, Any]] = [
        {
            "DBInstanceIdentifier": "orders-db",
            "DBInstanceArn": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-db",
            "Engine": "postgres",
            "EngineVersion": "16.3",
            "DBInstanceClass": "db.r6g.large",
            "DBInstanceStatus": "available",
            "AvailabilityZone": "us-east-1b",
            "TagList": [{"Key": "Environment", "Value": "production"}],
        },
        {"DBInstanceIdentifier": "quiet-db", "Engine": "mysql", "EngineVersion": "8.0.39"},
    ]
    pending = [
        {
            "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-db",
            "PendingMaintenanceActionDetails": [
                {"Action": "system-update", "Description": "New Operating System update is available"},
                {"Action": "db-upgrade", "Description": "Upgrade to 16.4"},
            ],
        },
        {
            "ResourceIdentifier": f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster:aurora-1",
            "PendingMaintenanceActionDetails": [{}],
        },
    ]
    frame = rds_rows(ACCOUNT, REGION, dbs, pending)
    _check_schema(frame)
    rows = frame.set_index("resource_id")
    assert rows["pending_actions"].to_dict() == {"orders-db": 2, "quiet-db": 0}
    assert rows["patchable"].to_dict() == {"orders-db": True, "quiet-db": False}
    assert rows["skip_reason"].to_dict() == {"orders-db": "", "quiet-db": "no pending maintenance actions"}
    assert set(rows["responsibility"]) == {"shared"}
    assert rows.loc["orders-db", "engine"] == "postgres"
    assert rows.loc["orders-db", "environment"] == "production"
    assert rows.loc["quiet-db", "resource_arn"] == f"arn:aws:rds:{REGION}:{ACCOUNT}:db:quiet-db"


def test_s3_is_aws_managed_and_kept_to_its_region() -> None:
    buckets: list[dict[str, Any]] = [
        {"Name": "assets", "CreationDate": LAST_PING, "BucketRegion": REGION, "Tags": {"Environment": "production"}},
        {"Name": "exports", "BucketRegion": REGION, "Tags": [{"Key": "App", "Value": "orders"}]},
        {"Name": "elsewhere", "BucketRegion": "eu-west-1", "Tags": {}},
    ]
    frame = s3_rows(ACCOUNT, REGION, buckets)
    _check_schema(frame)
    rows = frame.set_index("resource_id")
    assert list(rows.index) == ["assets", "exports"]
    assert set(rows["responsibility"]) == {"aws"}
    assert not rows["patchable"].any()
    assert rows.loc["assets", "resource_arn"] == "arn:aws:s3:::assets"
    assert rows.loc["assets", "environment"] == "production"
    assert json.loads(rows.loc["exports", "tags"]) == {"App": "orders"}


def test_responsibility_vocabulary() -> None:
    assert {k: v.value for k, v in RESPONSIBILITY_BY_TYPE.items()} == {"ec2": "customer", "rds": "shared", "s3": "aws"}


def test_combine_keeps_dtypes_sorts_and_rejects_duplicates() -> None:
    east = ec2_rows(ACCOUNT, REGION, [instance("i-2"), instance("i-1")], [info("i-1")])
    west = ec2_rows(ACCOUNT, "us-west-2", [instance("i-3")], [])
    buckets = s3_rows(ACCOUNT, REGION, [{"Name": "b", "BucketRegion": REGION}])
    combined = combine([west, east, empty_inventory(), buckets])
    _check_schema(combined)
    assert list(zip(combined["region"], combined["resource_id"], strict=True)) == [
        (REGION, "i-1"),
        (REGION, "i-2"),
        (REGION, "b"),
        ("us-west-2", "i-3"),
    ]
    with pytest.raises(ValueError, match="more than once"):
        combine([east, east])
    _check_schema(combine([]))


def test_ec2_rows_name_each_auto_scaling_members_group_and_launch_template_version() -> None:
    groups = [
        {
            "AutoScalingGroupName": "web-asg",
            "LaunchTemplate": {"LaunchTemplateId": "lt-1", "LaunchTemplateName": "web", "Version": "4"},
            "Instances": [
                {
                    "InstanceId": "i-old",
                    "LaunchTemplate": {"LaunchTemplateId": "lt-1", "LaunchTemplateName": "web", "Version": "3"},
                },
                {
                    "InstanceId": "i-new",
                    "LaunchTemplate": {"LaunchTemplateId": "lt-1", "LaunchTemplateName": "web", "Version": "4"},
                },
            ],
        },
        {
            "AutoScalingGroupName": "legacy-asg",
            "Instances": [{"InstanceId": "i-lc", "LaunchConfigurationName": "lc-1"}],
        },
        {"AutoScalingGroupName": "empty-asg", "Instances": []},
    ]
    instances = [instance(i) for i in ("i-old", "i-new", "i-lc", "i-alone")]
    managed = [info(i) for i in ("i-old", "i-new", "i-lc", "i-alone")]
    frame = ec2_rows(ACCOUNT, REGION, instances, managed, groups, {"web-asg": "ami-0new"})
    _check_schema(frame)
    # What the group launches now (its new instances' AMI), for every member whatever it runs itself.
    launches = frame.set_index("resource_id")[["group_launch_template_version", "group_image_id"]]
    assert launches.loc["i-old"].tolist() == launches.loc["i-new"].tolist() == ["4", "ami-0new"]
    assert launches.loc["i-lc"].tolist() == launches.loc["i-alone"].tolist() == ["", ""]  # no launch template
    rows = frame.set_index("resource_id")[["auto_scaling_group", "launch_template", "launch_template_version"]]
    assert rows.to_dict("index") == {
        "i-old": {"auto_scaling_group": "web-asg", "launch_template": "web", "launch_template_version": "3"},
        "i-new": {"auto_scaling_group": "web-asg", "launch_template": "web", "launch_template_version": "4"},
        "i-lc": {"auto_scaling_group": "legacy-asg", "launch_template": "lc-1", "launch_template_version": ""},
        "i-alone": {"auto_scaling_group": "", "launch_template": "", "launch_template_version": ""},
    }
    assert frame["patchable"].all()  # membership alone changes nothing: the run's immutable setting decides
