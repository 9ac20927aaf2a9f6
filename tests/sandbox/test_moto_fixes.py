"""The sandbox's fixes to moto: the tag lookup gives moto's own answer, DescribeInstances pages as AWS does."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.core import TaggedEC2Resource

from include.sandbox import moto_fixes
from tests.conftest import client_factory


def test_tag_lookup_matches_moto(sandbox: Any) -> None:
    backend = ec2_backends["123456789012"]["us-east-1"]
    instances = [i for r in list(backend.reservations.values())[:3] for i in r.instances][:5]
    assert instances
    for instance in instances:
        fixed = TaggedEC2Resource.get_tags(instance)
        moto_own = backend.describe_tags(filters={"resource-id": [instance.id]})
        assert sorted(fixed, key=lambda t: t["key"]) == sorted(moto_own, key=lambda t: t["key"])
        assert {t["key"] for t in fixed} >= {"Name", "Environment"}
    assert TaggedEC2Resource.get_tags is moto_fixes._get_tags


def _paging_scenario() -> dict[str, Any]:
    groups = [{"name": "web", "count": 12, "ami": AMI}, {"name": "api", "count": 3, "ami": AMI}]
    return {
        "name": "paging",
        "seed": 1,
        "amis": {AMI: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [{"id": "123456789012", "regions": {"us-east-1": {"instance_groups": groups}}}],
    }


AMI = "ami-0a1b2c3d4e5f60001"


def test_describe_instances_pages_by_instance(sandbox_factory: Callable[..., Any]) -> None:
    ec2 = client_factory(sandbox_factory(_paging_scenario()).url)("ec2")
    pages = list(ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5}))
    sizes = [sum(len(r["Instances"]) for r in page["Reservations"]) for page in pages]
    assert sizes == [5, 5, 5]
    # No instance repeats; a reservation that does not fit a page goes on under its id on the next one.
    ids = [i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]]
    assert len(ids) == len(set(ids)) == 15
    per_page = [[r["ReservationId"] for r in page["Reservations"]] for page in pages]
    assert all(len(ids_) == len(set(ids_)) for ids_ in per_page)
    assert any(before[-1] == after[0] for before, after in itertools.pairwise(per_page))
    # Without MaxResults one page holds everything up to 1,000 instances; with instance ids no token.
    assert "NextToken" not in ec2.describe_instances()
    assert len(ec2.describe_instances(InstanceIds=ids[:2])["Reservations"][0]["Instances"]) == 2


@pytest.mark.parametrize("size", [4, 1001])
def test_describe_instances_refuses_a_page_size_out_of_bounds(sandbox_factory: Callable[..., Any], size: int) -> None:
    ec2 = client_factory(sandbox_factory(_paging_scenario()).url)("ec2")
    with pytest.raises(ClientError) as raised:
        ec2.describe_instances(MaxResults=size)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "between 5 and 1000" in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as bad_token:
        ec2.describe_instances(MaxResults=5, NextToken="not-a-token")
    assert bad_token.value.response["Error"]["Code"] == "InvalidParameterValue"
