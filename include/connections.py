"""Airflow connections to the sandbox: one per scenario account, as a real deployment has one per AWS account.

The scenario's first account is `aws_default` with plain keys (the sandbox's home account). Every other account
gets `aws_<account id>`, which reaches its account as on AWS: the provider assumes the account's role
(`role_arn`) through STS, pointed at the sandbox by `service_config.sts.endpoint_url` (the provider's AssumeRole
client does not read the connection's `endpoint_url`, and would otherwise call the real STS). The default
targets cover every account and region of the scenario.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from include.sandbox.scenario import Scenario

DEFAULT_CONN_ID = "aws_default"
# The role assumed in each other account (docs/aws_setup.md's example names it the same).
ROLE_NAME = "patchcycle"


def conn_id(scenario: Scenario, account_id: str) -> str:
    """The connection id that reaches `account_id`: aws_default for the first account, else aws_<id>."""
    return DEFAULT_CONN_ID if account_id == scenario.accounts[0].id else f"aws_{account_id}"


def sandbox_connection(sandbox_url: str, region: str, max_attempts: int = 10) -> dict[str, Any]:
    """An Airflow connection (in AIRFLOW_CONN_* JSON form) to the sandbox's home account, with dummy keys."""
    return {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {
            "endpoint_url": sandbox_url,
            "region_name": region,
            "config_kwargs": {"retries": {"mode": "standard", "max_attempts": max_attempts}},
        },
    }


def connection(scenario: Scenario, account_id: str, sandbox_url: str, max_attempts: int = 10) -> dict[str, Any]:
    """The connection reaching one scenario account through the sandbox: another account's assumes its role."""
    found = sandbox_connection(sandbox_url, scenario.accounts[0].regions[0].name, max_attempts)
    if account_id != scenario.accounts[0].id:
        found["extra"]["role_arn"] = f"arn:aws:iam::{account_id}:role/{ROLE_NAME}"
        found["extra"]["service_config"] = {"sts": {"endpoint_url": sandbox_url}}
    return found


def connection_env(scenario: Scenario, sandbox_url: str, max_attempts: int = 10) -> dict[str, str]:
    """AIRFLOW_CONN_<ID> environment variables, one per scenario account."""
    return {
        f"AIRFLOW_CONN_{conn_id(scenario, account.id).upper()}": json.dumps(
            connection(scenario, account.id, sandbox_url, max_attempts)
        )
        for account in scenario.accounts
    }


def targets(scenario: Scenario) -> list[dict[str, Any]]:
    """The `targets` param covering every account and region of the scenario, in the scenario's order."""
    return [
        {"aws_conn_id": conn_id(scenario, account.id), "regions": [region.name for region in account.regions]}
        for account in scenario.accounts
        if account.regions
    ]


def account_client(scenario: Scenario, account_id: str, sandbox_url: str, service: str, region: str) -> Any:
    """A boto3 client in one scenario account, reached as its connection reaches it (plain keys, or AssumeRole)."""
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    if account_id != scenario.accounts[0].id:
        sts = boto3.client("sts", region_name=region, endpoint_url=sandbox_url, **keys)
        role_arn = f"arn:aws:iam::{account_id}:role/{ROLE_NAME}"
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName="patchcycle-check")["Credentials"]
        keys = {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }
    return boto3.client(service, region_name=region, endpoint_url=sandbox_url, **keys)
