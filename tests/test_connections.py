"""The sandbox's connections: one per scenario account, each reaching its own account through the provider's hook."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from include import connections
from include.sandbox.scenario import parse_scenario

AMI = "ami-0a1b2c3d4e5f60001"


def _two_accounts() -> dict[str, Any]:
    def region(count: int) -> dict[str, Any]:
        return {"instance_groups": [{"name": f"web-{count}", "count": count, "ami": AMI}]}

    return {
        "name": "two-accounts",
        "seed": 1,
        "amis": {AMI: {"os": "AMAZON_LINUX_2023"}},
        "accounts": [
            {"id": "111122223333", "regions": {"us-east-1": region(5)}},
            {"id": "444455556666", "regions": {"us-east-1": region(3), "eu-west-1": region(2)}},
        ],
    }


def test_targets_cover_every_account_and_region() -> None:
    scenario = parse_scenario(_two_accounts(), "<test>")
    assert connections.targets(scenario) == [
        {"aws_conn_id": "aws_default", "regions": ["us-east-1"]},
        {"aws_conn_id": "aws_444455556666", "regions": ["us-east-1", "eu-west-1"]},
    ]
    env = connections.connection_env(scenario, "http://127.0.0.1:1")
    assert sorted(env) == ["AIRFLOW_CONN_AWS_444455556666", "AIRFLOW_CONN_AWS_DEFAULT"]
    assert "role_arn" not in json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]
    other = json.loads(env["AIRFLOW_CONN_AWS_444455556666"])["extra"]
    assert other["role_arn"] == "arn:aws:iam::444455556666:role/patchcycle"


def test_each_connection_reaches_its_account_through_the_provider_s_hook(
    sandbox_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = parse_scenario(_two_accounts(), "<test>")
    server = sandbox_factory(scenario)
    for name, value in connections.connection_env(scenario, server.url).items():
        monkeypatch.setenv(name, value)
    seen = {}
    for target in connections.targets(scenario):
        for region in target["regions"]:
            hook = AwsBaseHook(aws_conn_id=target["aws_conn_id"], client_type="ssm", region_name=region)
            listed = hook.conn.describe_instance_information()["InstanceInformationList"]
            account = AwsBaseHook(aws_conn_id=target["aws_conn_id"], client_type="sts").conn.get_caller_identity()
            seen[(account["Account"], region)] = len(listed)
    assert seen == {
        ("111122223333", "us-east-1"): 5,
        ("444455556666", "us-east-1"): 3,
        ("444455556666", "eu-west-1"): 2,
    }
    # The check make cycle runs at the end reads every account too.
    ec2 = connections.account_client(scenario, "444455556666", server.url, "ec2", "eu-west-1")
    assert sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"]) == 2
