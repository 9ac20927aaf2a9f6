"""InspectorHook against the sandbox (default scenario, no injected faults): 10-id batches, paging, and one
region-wide coverage listing for large sets."""

from __future__ import annotations

import math
from typing import Any

import pytest

from include.sandbox.server import SandboxServer
from patchcycle.hooks.inspector import (
    MAX_FILTER_VALUES,
    REGION_LISTING_THRESHOLD,
    InspectorHook,
    coverage_criteria,
    findings_criteria,
)
from tests.conftest import client_factory, sandbox_calls

ACCOUNT = "123456789012"
UNKNOWN = "i-0ffffffffffffffff"
SANDBOX_DROP_FAULTS = True  # the default scenario, exact call counts: no throttling retries
pytestmark = pytest.mark.usefixtures("server")


def hook(region: str) -> InspectorHook:
    return InspectorHook(aws_conn_id="aws_default", region_name=region)


def instances(server: SandboxServer, region: str, registered: bool = True) -> list[str]:
    return [i.instance_id for i in server.world.instances(ACCOUNT, region).values() if i.registered == registered]


def raw_findings(server: SandboxServer, region: str, instance_id: str) -> list[dict[str, Any]]:
    """Every finding on one instance, read with plain boto3."""
    client = client_factory(server.url)("inspector2", region=region)
    pages = client.get_paginator("list_findings").paginate(
        filterCriteria={"resourceId": [{"comparison": "EQUALS", "value": instance_id}]}
    )
    return [finding for page in pages for finding in page["findings"]]


def test_coverage_criteria_batch_ten_ids_up_to_the_threshold_then_list_the_region() -> None:
    ids = [f"i-{n:017x}" for n in range(REGION_LISTING_THRESHOLD + 1)]
    assert coverage_criteria([]) == []
    batched = coverage_criteria(ids[:25])
    assert [len(c["resourceId"]) for c in batched] == [10, 10, 5]
    assert [v["value"] for c in batched for v in c["resourceId"]] == ids[:25]
    assert all(c["resourceType"][0]["value"] == "AWS_EC2_INSTANCE" for c in batched)
    (region_wide,) = coverage_criteria(ids)
    assert "resourceId" not in region_wide and region_wide["scanType"] == [{"comparison": "EQUALS", "value": "PACKAGE"}]


def test_findings_criteria_batch_ten_ids_and_refuse_long_filter_lists() -> None:
    ids = [f"i-{n:017x}" for n in range(23)]
    criteria = list(findings_criteria(ids, ("ACTIVE",), ("CRITICAL", "HIGH")))
    assert [len(c["resourceId"]) for c in criteria] == [10, 10, 3]
    assert all(len(c["severity"]) == 2 and c["findingStatus"][0]["value"] == "ACTIVE" for c in criteria)
    assert "severity" not in next(findings_criteria(ids, ("ACTIVE",), None))
    with pytest.raises(ValueError, match="at most 10"):
        list(findings_criteria(ids, ("ACTIVE",), ["CRITICAL"] * (MAX_FILTER_VALUES + 1)))


@pytest.mark.parametrize("count", [1, 10, 11, 35])
def test_coverage_batches_ids_ten_per_call(server: SandboxServer, count: int) -> None:
    region = "us-east-1"
    wanted = [*instances(server, region), UNKNOWN][:count] if count < 35 else [*instances(server, region)[:34], UNKNOWN]
    before = sandbox_calls(server.url, "inspector2:ListCoverage")
    covered = hook(region).coverage(wanted)
    assert sandbox_calls(server.url, "inspector2:ListCoverage") - before == math.ceil(count / MAX_FILTER_VALUES)
    assert set(covered) == set(wanted) - {UNKNOWN}
    assert all(item["scanStatus"]["statusCode"] == "ACTIVE" and item["lastScannedAt"] for item in covered.values())


def test_coverage_of_many_ids_lists_the_region_once(server: SandboxServer) -> None:
    region = "eu-west-1"
    everyone = [*instances(server, region), *instances(server, region, registered=False)]
    assert len(everyone) == REGION_LISTING_THRESHOLD, "the default scenario's eu-west-1 has 100 instances"
    wanted = [*everyone[1:], UNKNOWN, "i-0eeeeeeeeeeeeeeee"]  # 101 ids: past the threshold
    before = sandbox_calls(server.url, "inspector2:ListCoverage")
    covered = hook(region).coverage(wanted)
    assert sandbox_calls(server.url, "inspector2:ListCoverage") - before == math.ceil(len(everyone) / 200)
    assert set(covered) == set(everyone[1:])


def test_findings_batch_ten_ids_and_page_by_one_hundred(server: SandboxServer) -> None:
    region = "us-east-1"
    counted = {instance_id: raw_findings(server, region, instance_id) for instance_id in instances(server, region)}
    wanted = sorted(counted, key=lambda i: -len(counted[i]))[:25]  # the most findings: pages fill up
    per_instance = {instance_id: counted[instance_id] for instance_id in wanted}
    batches = [wanted[i : i + MAX_FILTER_VALUES] for i in range(0, len(wanted), MAX_FILTER_VALUES)]
    pages = sum(max(1, math.ceil(sum(len(per_instance[i]) for i in batch) / 100)) for batch in batches)
    assert pages > len(batches), "a batch should need more than one page"
    before = sandbox_calls(server.url, "inspector2:ListFindings")
    found = hook(region).findings(wanted)
    assert sandbox_calls(server.url, "inspector2:ListFindings") - before == pages
    assert sorted(f["findingArn"] for f in found) == sorted(f["findingArn"] for fs in per_instance.values() for f in fs)


def test_findings_keep_only_the_statuses_and_severities_asked_for(server: SandboxServer) -> None:
    region = "eu-west-1"
    wanted = instances(server, region)[:12]
    found = hook(region).findings(wanted, statuses=("ACTIVE",), severities=("CRITICAL", "HIGH"))
    expected = [
        f
        for instance_id in wanted
        for f in raw_findings(server, region, instance_id)
        if f["status"] == "ACTIVE" and f["severity"] in ("CRITICAL", "HIGH")
    ]
    assert expected and sorted(f["findingArn"] for f in found) == sorted(f["findingArn"] for f in expected)
    assert hook(region).findings([]) == []
