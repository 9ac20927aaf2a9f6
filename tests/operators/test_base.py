"""The operator bases: a target's task is the amazon provider's operator (its connection, region, verify and
botocore settings reach every client and trigger); every task reads the run's settings from the config."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from patchcycle.hooks.inventory import Ec2InventoryHook
from patchcycle.operators.patch_scan import PatchScanOperator
from tests.operators.install_helpers import cycle_config, s3_root

RETRIES = {"retries": {"mode": "standard", "max_attempts": 7}}


def scan(**kwargs: Any) -> PatchScanOperator:
    config = cycle_config(s3_root("base"), poll_seconds=2, command_timeout_minutes=3)
    return PatchScanOperator(task_id="match", config=config, region_name="eu-west-1", **kwargs)


def test_the_provider_s_client_settings_reach_every_hook() -> None:
    operator = scan(aws_conn_id="aws_prod", verify=False, botocore_config=RETRIES)
    assert {"aws_conn_id", "region_name", "verify", "config"} <= set(operator.template_fields)
    for hook in (operator.hook, operator.hook_for(Ec2InventoryHook)):
        assert (hook.aws_conn_id, hook.region_name, hook.verify) == ("aws_prod", "eu-west-1", False)
        assert hook.config.retries == RETRIES["retries"]


def test_a_command_wait_carries_the_run_s_limits_and_the_client_settings() -> None:
    operator = scan(botocore_config=RETRIES, verify="/etc/ssl/ca.pem")
    with pytest.raises(TaskDeferred) as caught:
        operator.wait_for_commands(operator.settings(), ["c-1", "c-2"])
    trigger = caught.value.trigger
    assert trigger.targets == [
        {"aws_conn_id": "aws_default", "region_name": "eu-west-1", "command_ids": ["c-1", "c-2"]}
    ]
    assert (trigger.poll_interval, trigger.timeout) == (2.0, 180.0)
    assert (trigger.verify, trigger.botocore_config) == ("/etc/ssl/ca.pem", RETRIES)
    assert caught.value.timeout is not None and caught.value.timeout.total_seconds() == 180 + 600


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, r"^match: no run settings \(validate_params did not run or failed\)$"),
        ({"canary": "0"}, r"^match: invalid run settings: canary: must be a count or a percentage"),
    ],
)
def test_a_task_without_valid_run_settings_fails_at_once(config: Any, message: str) -> None:
    operator = PatchScanOperator(task_id="match", config=config, region_name="eu-west-1")
    with pytest.raises(AirflowFailException, match=message):
        operator.settings()
