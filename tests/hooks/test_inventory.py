"""The inventory hooks against the sandbox (default scenario): EC2 instances, RDS and its pending maintenance, S3."""

from __future__ import annotations

from datetime import UTC

import pytest
import yaml

from include.sandbox.scenario import DEFAULT_SCENARIO, Region, Scenario, parse_scenario
from include.sandbox.server import SandboxServer
from patchcycle.hooks.inventory import Ec2InventoryHook, RdsInventoryHook, S3InventoryHook
from tests.conftest import client_factory

REGIONS = ("us-east-1", "eu-west-1")
# Created by the fixture: a bucket without tags (GetBucketTagging answers NoSuchTagSet).
UNTAGGED = ("eu-west-1", "untagged-eu-123456789012")
SANDBOX_DROP_FAULTS = True


def scenario() -> Scenario:
    document = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    document.pop("faults", None)
    return parse_scenario(document, source="<default without faults>")


def region(name: str) -> Region:
    return next(r for account in scenario().accounts for r in account.regions if r.name == name)


@pytest.fixture(scope="module", autouse=True)
def untagged_bucket(server: SandboxServer) -> None:
    bucket_region, bucket = UNTAGGED
    client_factory(server.url)("s3", region=bucket_region).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": bucket_region}
    )


@pytest.mark.parametrize("name", REGIONS)
def test_ec2_instances_lists_every_instance_of_the_region(name: str) -> None:
    instances = Ec2InventoryHook(aws_conn_id="aws_default", region_name=name).instances()
    expected = region(name)
    assert len(instances) == sum(group.count for group in expected.instance_groups)
    assert len({i["InstanceId"] for i in instances}) == len(instances)
    names = [tag["Value"] for i in instances for tag in i.get("Tags", []) if tag["Key"] == "Name"]
    by_group = {group.name: group.count for group in expected.instance_groups}
    assert {n: names.count(n) for n in set(names)} == by_group
    assert {i["Placement"]["AvailabilityZone"][:-1] for i in instances} == {name}


@pytest.mark.parametrize("name", REGIONS)
def test_s3_buckets_in_region_returns_only_that_regions_buckets_with_tags(name: str) -> None:
    buckets = S3InventoryHook(aws_conn_id="aws_default", region_name=name).buckets_in_region(name)
    expected = {bucket.name: bucket.tags for bucket in region(name).s3_buckets}
    if name == UNTAGGED[0]:
        expected[UNTAGGED[1]] = {}
    assert {bucket["Name"]: bucket["Tags"] for bucket in buckets} == expected
    assert {bucket["BucketRegion"] for bucket in buckets} == {name}


@pytest.mark.parametrize("name", REGIONS)
def test_rds_db_instances_and_pending_maintenance(name: str) -> None:
    rds = RdsInventoryHook(aws_conn_id="aws_default", region_name=name)
    expected = region(name).rds_instances
    databases = rds.db_instances()
    assert sorted(db["DBInstanceIdentifier"] for db in databases) == sorted(db.id for db in expected)
    arns = {db["DBInstanceIdentifier"]: db["DBInstanceArn"] for db in databases}

    pending = rds.pending_maintenance_actions()
    actions = {
        (item["ResourceIdentifier"], detail["Action"], detail["Description"])
        for item in pending
        for detail in item["PendingMaintenanceActionDetails"]
    }
    assert actions == {
        (arns[db.id], action.action, action.description) for db in expected for action in db.pending_maintenance
    }
    assert actions, f"the scenario gives {name} pending maintenance"


def test_rds_pending_maintenance_dates_come_from_the_scenario() -> None:
    pending = RdsInventoryHook(aws_conn_id="aws_default", region_name="us-east-1").pending_maintenance_actions()
    details = {
        item["ResourceIdentifier"].rsplit(":", 1)[-1]: item["PendingMaintenanceActionDetails"][0] for item in pending
    }
    assert details["orders-db"]["AutoAppliedAfterDate"].astimezone(UTC).date().isoformat() == "2026-12-15"
    assert details["storefront-db"]["ForcedApplyDate"].astimezone(UTC).date().isoformat() == "2027-01-31"
    assert "reporting-db-staging" not in details
