"""InventoryOperator.execute against the sandbox (default scenario): the table, its summary, scope and failures."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.sandbox.scenario import Region, Scenario, parse_scenario
from include.sandbox.server import SandboxServer
from patchcycle.config import Target
from patchcycle.operators.inventory import InventoryOperator
from patchcycle.run_artifacts import INVENTORY, INVENTORY_SUMMARY, RDS_PLAN, TARGET_ERROR, RunArtifacts, Step
from tests.conftest import default_scenario, sandbox_calls
from tests.operators.install_helpers import ACCOUNT, context, cycle_config, run_artifacts, s3_root

REGIONS = ("us-east-1", "eu-west-1")
DENIED_REGION = "us-west-2"  # the role may not call ec2:DescribeInstances there
FULL_RUN = "manual__full"
ROOT = s3_root("inventory")  # the default scenario's patchcycle-artifacts bucket


SCENARIO = default_scenario(faults={"ec2:DescribeInstances": {"access_denied": True, "regions": [DENIED_REGION]}})


def scenario() -> Scenario:
    return parse_scenario(SCENARIO, source="<default, ec2 denied in us-west-2>")


def region(name: str) -> Region:
    return next(r for account in scenario().accounts for r in account.regions if r.name == name)


def config(**params: Any) -> dict[str, Any]:
    """A scan run's validated config (the inventory reads only its scope and where its artifacts go)."""
    return cycle_config(ROOT, mode="scan", **params)


def run_inventory(run_id: str, region_name: str, scope: dict[str, Any] | None = None) -> dict[str, Any]:
    operator = InventoryOperator(
        task_id="inventory", region_name=region_name, config=config(**({"scope": scope} if scope else {}))
    )
    summary: dict[str, Any] = operator.execute(context(run_id))
    return summary


def target(region_name: str) -> Target:
    return Target("aws_default", region_name)


@pytest.fixture(scope="module")
def inventories(server: SandboxServer) -> dict[str, tuple[dict[str, Any], pd.DataFrame, RunArtifacts]]:
    """Each region's inventory without a scope: (returned summary, table, the run's artifacts)."""
    artifacts = run_artifacts(config(), FULL_RUN)
    result = {}
    for name in REGIONS:
        summary = run_inventory(FULL_RUN, name)
        result[name] = (summary, artifacts.read(INVENTORY, target=target(name)), artifacts)
    return result


@pytest.mark.parametrize("name", REGIONS)
def test_inventory_counts_match_the_scenario(
    inventories: dict[str, tuple[dict[str, Any], pd.DataFrame, RunArtifacts]], name: str
) -> None:
    summary, table, artifacts = inventories[name]
    expected = region(name)
    by_type = {
        "ec2": sum(group.count for group in expected.instance_groups),
        "rds": len(expected.rds_instances),
        "s3": len(expected.s3_buckets),
    }
    assert table["resource_type"].value_counts().to_dict() == by_type
    assert set(table["region"]) == {name} and set(table["account_id"]) == {ACCOUNT}
    assert not table.duplicated(["resource_type", "resource_id"]).any()
    assert sorted(table.loc[table["resource_type"] == "rds", "resource_id"]) == sorted(
        db.id for db in expected.rds_instances
    )
    assert sorted(table.loc[table["resource_type"] == "s3", "resource_id"]) == sorted(
        b.name for b in expected.s3_buckets
    )
    online = sum(group.count for group in expected.instance_groups if group.agent == "online")
    with_maintenance = sum(1 for db in expected.rds_instances if db.pending_maintenance)
    assert summary == {
        "aws_conn_id": "aws_default",
        "region_name": name,
        "account_id": ACCOUNT,
        "resources": sum(by_type.values()),
        "in_scope": sum(by_type.values()),
        "by_type": by_type,
        "patchable_in_scope": online + with_maintenance,
    }
    assert asdict(artifacts.read(INVENTORY_SUMMARY, target=target(name))) == summary
    rds_plan = artifacts.read(RDS_PLAN, target=target(name))
    assert sorted(rds_plan["resource_id"]) == sorted(
        db.id for db in expected.rds_instances for _ in db.pending_maintenance
    )


def test_unmanaged_and_offline_instances_are_kept_with_their_skip_reasons(
    inventories: dict[str, tuple[dict[str, Any], pd.DataFrame, RunArtifacts]],
) -> None:
    _, table, _ = inventories["us-east-1"]
    ec2 = table[table["resource_type"] == "ec2"]
    unmanaged = ec2[ec2["name"] == "legacy-prod-use1-unmanaged"]
    offline = ec2[ec2["name"] == "batch-prod-use1-offline"]
    assert (len(unmanaged), len(offline)) == (3, 4)
    assert set(unmanaged["skip_reason"]) == {"unmanaged: not registered with Systems Manager"}
    assert not unmanaged["managed"].any() and not unmanaged["patchable"].any()
    assert offline["managed"].all() and not offline["patchable"].any()
    assert set(offline["ping_status"]) == {"ConnectionLost"}
    assert all(reason.startswith("offline: SSM Agent ConnectionLost since 2026-") for reason in offline["skip_reason"])
    assert unmanaged["in_scope"].all() and offline["in_scope"].all()  # skipped, never dropped
    online = ec2[~ec2["name"].isin(["legacy-prod-use1-unmanaged", "batch-prod-use1-offline"])]
    assert online["patchable"].all() and set(online["skip_reason"]) == {""}
    assert set(table.loc[table["resource_type"] == "s3", "skip_reason"]) == {"aws-managed: patched by AWS"}


def test_scope_include_tags_filters(server: SandboxServer) -> None:
    run_id = "manual__staging_scope"
    summary = run_inventory(run_id, "us-east-1", scope={"include_tags": {"Environment": ["staging"]}})
    table = run_artifacts(config(), run_id).read(INVENTORY, target=target("us-east-1"))
    expected = region("us-east-1")
    staging_ec2 = sum(g.count for g in expected.instance_groups if g.tags.get("Environment") == "staging")
    staging_rds = [db.id for db in expected.rds_instances if db.tags.get("Environment") == "staging"]
    assert len(table) == summary["resources"] == 93 + 3 + 3  # out of scope is kept, marked
    in_scope = table[table["in_scope"]]
    assert summary["in_scope"] == len(in_scope) == staging_ec2 + len(staging_rds)
    assert set(in_scope["environment"]) == {"staging"}
    assert summary["patchable_in_scope"] == staging_ec2  # the staging database has no pending maintenance
    out = table[~table["in_scope"]]
    assert set(out.loc[out["environment"] == "production", "scope_reason"]) == {
        "tag Environment is 'production', not one of ['staging']"
    }
    artifacts_bucket = table[table["resource_id"] == "patchcycle-artifacts"].iloc[0]
    assert artifacts_bucket["scope_reason"] == "tag Environment is missing, not one of ['staging']"


def test_access_denied_fails_at_once_naming_api_account_and_region_and_records_the_error(
    server: SandboxServer,
) -> None:
    run_id = "manual__denied"
    denied = target(DENIED_REGION)
    before = sandbox_calls(server.url, "ec2:DescribeInstances")
    with pytest.raises(AirflowFailException) as caught:
        run_inventory(run_id, DENIED_REGION)
    message = str(caught.value)
    assert "ec2:DescribeInstances" in message and ACCOUNT in message and DENIED_REGION in message
    assert "UnauthorizedOperation" in message
    assert sandbox_calls(server.url, "ec2:DescribeInstances") - before == 1  # no retry of an error no retry can fix

    artifacts = run_artifacts(config(), run_id)
    recorded = artifacts.read(TARGET_ERROR, step=Step.INVENTORY, target=denied)
    assert recorded.stage == "inventory"
    assert (recorded.aws_conn_id, recorded.region) == ("aws_default", DENIED_REGION)
    assert recorded.error.startswith("AirflowFailException: ec2:DescribeInstances failed in account 123456789012")
    assert recorded.at
    assert not artifacts.exists(INVENTORY, target=denied)
    assert not artifacts.exists(INVENTORY_SUMMARY, target=denied)
