"""The inventory table: one row per resource, built from raw AWS API records.

Operators fetch the records (EC2 DescribeInstances, SSM DescribeInstanceInformation, RDS
DescribeDBInstances, DescribeDBClusters and DescribePendingMaintenanceActions, S3 ListBuckets + GetBucketTagging) per
(AWS connection, region) and hand them here; `combine` joins the per-region frames.

Shared responsibility decides what each resource type gets (RESPONSIBILITY_BY_TYPE):
EC2 OS patches are the customer's (Patch Manager), RDS engine/OS patches are built by AWS and
scheduled by the customer (pending maintenance actions), S3 is fully AWS-managed (listed, never patched).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from patchcycle.core.frames import typed_frame
from patchcycle.core.timestamps import iso_utc


class Responsibility(StrEnum):
    """Who patches a resource, after the AWS shared responsibility model."""

    CUSTOMER = "customer"  # the customer patches the OS (EC2 through Patch Manager)
    SHARED = "shared"  # AWS builds the patches, the customer schedules them (RDS pending maintenance)
    AWS = "aws"  # fully AWS-managed: listed, never patched by the customer (S3)


RESPONSIBILITY_BY_TYPE: Final[Mapping[str, Responsibility]] = {
    "ec2": Responsibility.CUSTOMER,
    "rds": Responsibility.SHARED,
    "s3": Responsibility.AWS,
}

# Column -> pandas dtype. Text is "str" ("" when unknown, never missing); tags is a JSON object string.
INVENTORY_COLUMNS: Final[Mapping[str, str]] = {
    "account_id": "str",
    "region": "str",
    "resource_type": "str",  # ec2 | rds | s3
    "resource_id": "str",  # instance id, DB instance or Aurora DB cluster identifier, bucket name
    "resource_arn": "str",
    "name": "str",  # Name tag (EC2, RDS) or bucket name
    "tags": "str",  # JSON object {key: value}, keys sorted
    "environment": "str",  # tag Environment (or environment, Env, env)
    "patch_group": "str",  # EC2 tag "Patch Group" or "PatchGroup"
    "state": "str",  # EC2 State.Name, RDS DBInstanceStatus, "" for S3
    "availability_zone": "str",
    "instance_type": "str",  # EC2 instance type, RDS DB instance class
    "image_id": "str",
    "auto_scaling_group": "str",  # EC2: the Auto Scaling group the instance belongs to ("" when none)
    "launch_template": "str",  # EC2 in a group: the launch template it was launched from (name, else id)
    "launch_template_version": "str",  # EC2 in a group: that template's version number
    "group_launch_template_version": "str",  # EC2 in a group: the version the group launches now ("1", "$Default")
    "group_image_id": "str",  # EC2 in a group: that version's ImageId as stored ("" when unknown)
    "platform_type": "str",  # Linux | Windows | MacOS (SSM, else guessed from EC2 Platform)
    "platform_name": "str",  # SSM PlatformName, else EC2 PlatformDetails
    "platform_version": "str",
    "agent_version": "str",
    "ping_status": "str",  # Online | ConnectionLost | Inactive | "" when unmanaged
    "managed": "bool",  # in SSM's DescribeInstanceInformation list
    "engine": "str",
    "engine_version": "str",
    "pending_actions": "int64",  # RDS pending maintenance actions
    "multi_az": "bool",  # RDS: a Multi-AZ DB instance (maintenance fails over to its standby)
    "replica_of": "str",  # RDS: the source DB instance of a read replica ("" when not a replica)
    "db_cluster": "str",  # RDS: the Aurora DB cluster of a member instance, or a cluster row's own identifier
    "responsibility": "str",  # customer | shared | aws (Responsibility)
    "patchable": "bool",  # this run can act on it
    "skip_reason": "str",  # why not patchable ("" when patchable)
}

KEY_COLUMNS: Final = ("account_id", "region", "resource_type", "resource_id")

# EC2 states whose instances are gone or going: left out of the inventory.
GONE_STATES: Final = frozenset({"terminated", "shutting-down"})
UNMANAGED_REASON: Final = "unmanaged: not registered with Systems Manager"


def partition_of(region: str) -> str:
    """The ARN partition of a region."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def tag_dict(tags: Any) -> dict[str, str]:
    """Tags as {key: value}, from an AWS TagList ([{"Key", "Value"}]) or an already decoded dict."""
    if not tags:
        return {}
    if isinstance(tags, Mapping):
        return {str(key): str(value) for key, value in tags.items()}
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tags}


def _tags_json(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(tags), sort_keys=True, ensure_ascii=False)


def _environment(tags: Mapping[str, str]) -> str:
    for key in ("Environment", "environment", "Env", "env"):
        if key in tags:
            return tags[key]
    return ""


def _base_row(account_id: str, region: str, resource_type: str) -> dict[str, Any]:
    """A row with every column at its empty value."""
    row: dict[str, Any] = {name: "" for name, dtype in INVENTORY_COLUMNS.items() if dtype == "str"}
    row.update(
        account_id=account_id,
        region=region,
        resource_type=resource_type,
        managed=False,
        pending_actions=0,
        multi_az=False,
        patchable=False,
        responsibility=RESPONSIBILITY_BY_TYPE[resource_type].value,
    )
    return row


def _ec2_platform(instance: Mapping[str, Any], info: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(platform_type, platform_name, platform_version): SSM's view, else what EC2 says."""
    if info is not None and info.get("PlatformType"):
        return str(info["PlatformType"]), str(info.get("PlatformName", "")), str(info.get("PlatformVersion", ""))
    details = str(instance.get("PlatformDetails", ""))
    if str(instance.get("Platform", "")).lower() == "windows" or details.startswith("Windows"):
        return "Windows", details, ""
    return ("Linux" if details else ""), details, ""


def _ec2_skip_reason(state: str, info: Mapping[str, Any] | None) -> str:
    """Why an instance cannot be patched now; "" when it can (running, managed, Online)."""
    if state in ("stopped", "stopping"):
        return "stopped"
    if info is None:
        return UNMANAGED_REASON
    ping = str(info.get("PingStatus", ""))
    if ping != "Online":
        since = iso_utc(info.get("LastPingDateTime")) or "an unknown time"
        return f"offline: SSM Agent {ping or 'status unknown'} since {since}"
    return ""


def group_membership(groups: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """Instance id -> (Auto Scaling group, launch template, its version) from DescribeAutoScalingGroups'
    AutoScalingGroups. The template is the one each instance was launched from (a group's instances may run
    several versions while a refresh is under way); a launch configuration is named as the template."""
    members: dict[str, tuple[str, str, str]] = {}
    for group in groups:
        for instance in group.get("Instances", []):
            template = instance.get("LaunchTemplate") or {}
            name = str(template.get("LaunchTemplateName") or template.get("LaunchTemplateId") or "")
            name = name or str(instance.get("LaunchConfigurationName", ""))
            members[str(instance["InstanceId"])] = (
                str(group["AutoScalingGroupName"]),
                name,
                str(template.get("Version", "")),
            )
    return members


def launch_template_spec(group: Mapping[str, Any]) -> tuple[str, str, str]:
    """(template id, template name, version) a DescribeAutoScalingGroups group launches now; ("", "", "") for a
    launch configuration or a mixed instances policy (not refreshed: refresh_groups refuses them)."""
    template = group.get("LaunchTemplate") or {}
    return (
        str(template.get("LaunchTemplateId") or ""),
        str(template.get("LaunchTemplateName") or ""),
        str(template.get("Version") or "$Default") if template else "",
    )


def ec2_rows(
    account_id: str,
    region: str,
    instances: list[dict[str, Any]],
    managed: list[dict[str, Any]],
    auto_scaling_groups: Iterable[Mapping[str, Any]] = (),
    group_images: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Inventory rows for EC2 instances (DescribeInstances Instance dicts, flattened from Reservations).

    `managed` is SSM DescribeInstanceInformation's InstanceInformationList; an instance is managed when
    it is listed there (hybrid "mi-" nodes without an EC2 instance are ignored). `auto_scaling_groups`
    (DescribeAutoScalingGroups' AutoScalingGroups) names each member's group and launch template, and
    `group_images` (group name -> ImageId) the AMI of the version each group launches now. Terminated and
    shutting-down instances are left out. An instance is patchable only when running, managed and
    Online; otherwise skip_reason says "stopped", "unmanaged: ..." or "offline: SSM Agent <status> since <time>".
    """
    info_by_id = {str(info["InstanceId"]): info for info in managed}
    auto_scaling_groups = list(auto_scaling_groups)
    members = group_membership(auto_scaling_groups)
    group_versions = {str(g["AutoScalingGroupName"]): launch_template_spec(g)[2] for g in auto_scaling_groups}
    rows = []
    for instance in instances:
        state = str(instance.get("State", {}).get("Name", ""))
        if state in GONE_STATES:
            continue
        instance_id = str(instance["InstanceId"])
        info = info_by_id.get(instance_id)
        tags = tag_dict(instance.get("Tags"))
        platform_type, platform_name, platform_version = _ec2_platform(instance, info)
        skip_reason = _ec2_skip_reason(state, info)
        group, template, version = members.get(instance_id, ("", "", ""))
        row = _base_row(account_id, region, "ec2")
        row.update(
            resource_id=instance_id,
            resource_arn=f"arn:{partition_of(region)}:ec2:{region}:{account_id}:instance/{instance_id}",
            name=tags.get("Name", ""),
            tags=_tags_json(tags),
            environment=_environment(tags),
            patch_group=tags.get("Patch Group", tags.get("PatchGroup", "")),
            state=state,
            availability_zone=str(instance.get("Placement", {}).get("AvailabilityZone", "")),
            instance_type=str(instance.get("InstanceType", "")),
            image_id=str(instance.get("ImageId", "")),
            auto_scaling_group=group,
            launch_template=template,
            launch_template_version=version,
            group_launch_template_version=group_versions.get(group, ""),
            group_image_id=(group_images or {}).get(group, ""),
            platform_type=platform_type,
            platform_name=platform_name,
            platform_version=platform_version,
            agent_version=str(info.get("AgentVersion", "")) if info else "",
            ping_status=str(info.get("PingStatus", "")) if info else "",
            managed=info is not None,
            patchable=skip_reason == "",
            skip_reason=skip_reason,
        )
        rows.append(row)
    return typed_frame(rows, INVENTORY_COLUMNS)


def pending_actions_by_arn(pending: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """RDS DescribePendingMaintenanceActions items as {resource ARN: [PendingMaintenanceActionDetails]}."""
    by_arn: dict[str, list[dict[str, Any]]] = {}
    for item in pending:
        by_arn.setdefault(str(item["ResourceIdentifier"]), []).extend(item.get("PendingMaintenanceActionDetails", []))
    return by_arn


def _rds_row(
    account_id: str,
    region: str,
    kind: str,
    identifier: str,
    record: Mapping[str, Any],
    actions: Mapping[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The columns a DB instance (`kind` "db") and an Aurora DB cluster ("cluster") row fill alike."""
    arn_field = "DBClusterArn" if kind == "cluster" else "DBInstanceArn"
    arn = str(record.get(arn_field) or f"arn:{partition_of(region)}:rds:{region}:{account_id}:{kind}:{identifier}")
    tags = tag_dict(record.get("TagList"))
    count = len(actions.get(arn, []))
    row = _base_row(account_id, region, "rds")
    row.update(
        resource_id=identifier,
        resource_arn=arn,
        name=tags.get("Name", identifier),
        tags=_tags_json(tags),
        environment=_environment(tags),
        engine=str(record.get("Engine", "")),
        engine_version=str(record.get("EngineVersion", "")),
        pending_actions=count,
        multi_az=bool(record.get("MultiAZ", False)),
        patchable=count > 0,
        skip_reason="" if count else "no pending maintenance actions",
    )
    return row


def rds_rows(
    account_id: str, region: str, db_instances: list[dict[str, Any]], pending: list[dict[str, Any]]
) -> pd.DataFrame:
    """Inventory rows for RDS DB instances (DescribeDBInstances DBInstances).

    `pending` is DescribePendingMaintenanceActions' PendingMaintenanceActions (ResourcePendingMaintenanceActions),
    matched to instances by DBInstanceArn. An instance is patchable when it has pending actions.
    Actions on Aurora clusters (":cluster:" ARNs) are the cluster rows' (`rds_cluster_rows`), not its members'.
    """
    actions = pending_actions_by_arn(pending)
    rows = []
    for db in db_instances:
        row = _rds_row(account_id, region, "db", str(db["DBInstanceIdentifier"]), db, actions)
        row.update(
            state=str(db.get("DBInstanceStatus", "")),
            availability_zone=str(db.get("AvailabilityZone", "")),
            instance_type=str(db.get("DBInstanceClass", "")),
            replica_of=str(db.get("ReadReplicaSourceDBInstanceIdentifier", "")).rsplit(":", 1)[-1],
            db_cluster=str(db.get("DBClusterIdentifier", "")),
        )
        rows.append(row)
    return typed_frame(rows, INVENTORY_COLUMNS)


def is_cluster_arn(arn: str) -> bool:
    """An Aurora DB cluster's ARN (arn:aws:rds:REGION:ACCOUNT:cluster:ID), not a DB instance's (...:db:ID)."""
    parts = arn.split(":")
    return len(parts) >= 7 and parts[2] == "rds" and parts[5] == "cluster"


def rds_cluster_rows(
    account_id: str, region: str, db_clusters: list[dict[str, Any]], pending: list[dict[str, Any]]
) -> pd.DataFrame:
    """Inventory rows for Aurora DB clusters (DescribeDBClusters DBClusters), resource_type rds like DB instances.

    A cluster is one resource to patch: its cluster-level pending actions (on its DBClusterArn) are applied to
    every member at once. Its `db_cluster` is its own identifier, as its members' is; `instance_type` is "".
    Clusters of other engines (Multi-AZ DB clusters, Neptune, DocumentDB) are left out: not Aurora.
    """
    actions = pending_actions_by_arn(pending)
    rows = []
    for cluster in db_clusters:
        if not str(cluster.get("Engine", "")).startswith("aurora"):
            continue
        identifier = str(cluster["DBClusterIdentifier"])
        row = _rds_row(account_id, region, "cluster", identifier, cluster, actions)
        row.update(
            state=str(cluster.get("Status", "")),
            availability_zone=",".join(str(zone) for zone in cluster.get("AvailabilityZones", [])),
            db_cluster=identifier,
        )
        rows.append(row)
    return typed_frame(rows, INVENTORY_COLUMNS)


def s3_rows(account_id: str, region: str, buckets: list[dict[str, Any]]) -> pd.DataFrame:
    """Inventory rows for S3 buckets (ListBuckets Buckets, each with its tags under "Tags").

    "Tags" may be a {key: value} dict or GetBucketTagging's TagSet. ListBuckets is global, so only
    buckets whose BucketRegion is `region` are kept (no BucketRegion: kept), so that per-region tasks
    do not list a bucket twice. S3 is AWS-managed: never patchable.
    """
    rows = []
    for bucket in buckets:
        bucket_region = str(bucket.get("BucketRegion") or region)
        if bucket_region != region:
            continue
        name = str(bucket["Name"])
        tags = tag_dict(bucket.get("Tags", bucket.get("tags")))
        row = _base_row(account_id, region, "s3")
        row.update(
            resource_id=name,
            resource_arn=str(bucket.get("BucketArn") or f"arn:{partition_of(region)}:s3:::{name}"),
            name=name,
            tags=_tags_json(tags),
            environment=_environment(tags),
            skip_reason="aws-managed: patched by AWS",
        )
        rows.append(row)
    return typed_frame(rows, INVENTORY_COLUMNS)


def empty_inventory() -> pd.DataFrame:
    """An inventory with no rows and the documented dtypes."""
    return typed_frame([], INVENTORY_COLUMNS)


def combine(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One inventory from per-(account, region, type) frames; raises ValueError on a duplicated resource.

    Extra columns (e.g. in_scope, scope_reason) are kept; rows are sorted by account, region, type, id.
    """
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return empty_inventory()
    combined = pd.concat(frames, ignore_index=True)
    duplicated = combined[combined.duplicated(list(KEY_COLUMNS), keep=False)]
    if len(duplicated):
        keys = sorted({"/".join(map(str, key)) for key in duplicated[list(KEY_COLUMNS)].itertuples(index=False)})
        raise ValueError(f"inventory lists {len(keys)} resource(s) more than once: {keys[:10]}")
    combined = combined.astype(dict(INVENTORY_COLUMNS))
    return combined.sort_values(list(KEY_COLUMNS), ignore_index=True)
