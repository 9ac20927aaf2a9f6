"""CycleParamsOperator: the first task validates the run's params and returns the targets to fan out over."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.operators.cycle_params import CycleParamsOperator

PARAMS: dict[str, Any] = {
    "mode": "scan",
    "targets": [
        {"aws_conn_id": "aws_prod", "regions": ["us-east-1", "eu-west-1"]},
        {"aws_conn_id": "aws_dev", "regions": ["us-east-1"]},
    ],
    "scope": {"include_tags": {}, "exclude_ids": [], "exclude_tags": {}},
    "artifact_root": "s3://patchcycle-artifacts",
    "artifact_conn_id": "aws_default",
    "max_concurrency": "50",
    "max_errors": "10%",
    "poll_seconds": 30,
    "command_timeout_minutes": 60,
}


def execute(params: dict[str, Any]) -> list[dict[str, str]]:
    context: Any = {"params": params}
    result: list[dict[str, str]] = CycleParamsOperator(task_id="validate_params").execute(context)
    return result


def test_returns_the_targets_as_operator_kwargs_in_order() -> None:
    assert execute(PARAMS) == [
        {"aws_conn_id": "aws_prod", "region_name": "us-east-1"},
        {"aws_conn_id": "aws_prod", "region_name": "eu-west-1"},
        {"aws_conn_id": "aws_dev", "region_name": "us-east-1"},
    ]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"mode": "install"}, "mode"),
        ({"targets": []}, "targets"),
        ({"targets": [{"aws_conn_id": "aws_prod", "regions": ["moon-base-1"]}]}, "targets[0].regions[0]"),
        ({"artifact_root": "ftp://x"}, "artifact_root"),
        ({"max_errors": "05%"}, "max_errors"),
        ({"poll_seconds": 0}, "poll_seconds"),
        ({"scope": {"exclude_tag": {}}}, "scope.exclude_tag"),
    ],
)
def test_invalid_params_fail_the_task_without_retries_naming_the_field(override: dict[str, Any], field: str) -> None:
    with pytest.raises(AirflowFailException) as caught:
        execute({**PARAMS, **override})
    assert str(caught.value).startswith(f"invalid params: {field}:"), str(caught.value)
    assert isinstance(caught.value.__cause__, ValueError)
