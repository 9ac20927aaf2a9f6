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


class Run:
    def __init__(self, run_type: str) -> None:
        self.run_type = run_type


class TaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def outputs(params: dict[str, Any], run_type: str = "manual") -> dict[str, Any]:
    """The targets it returns and the XComs it pushes."""
    ti = TaskInstance()
    context: Any = {"params": params, "dag_run": Run(run_type), "ti": ti}
    targets = CycleParamsOperator(task_id="validate_params").execute(context)
    return {"targets": targets, **ti.pushed}


def execute(params: dict[str, Any]) -> list[dict[str, str]]:
    targets: list[dict[str, str]] = outputs(params)["targets"]
    return targets


@pytest.mark.parametrize(
    ("mode", "run_type", "resolved"),
    [
        ("default", "scheduled", "install"),
        ("default", "manual", "scan"),
        ("default", "asset_triggered", "scan"),
        ("scan", "scheduled", "scan"),
        ("install", "manual", "install"),
    ],
)
def test_mode_default_installs_on_the_schedule_and_scans_by_hand(mode: str, run_type: str, resolved: str) -> None:
    assert outputs({**PARAMS, "mode": mode}, run_type)["mode"] == resolved


def test_install_settings_are_published_for_later_tasks() -> None:
    install = outputs({**PARAMS, "mode": "install", "canary": "2", "wave_percentages": [50, 50]})["install"]
    assert install["canary"] == "2" and install["wave_percentages"] == [50, 50]
    assert install["approval_mode"] == "manual"  # a person approves unless the run asks for the auto policy


def test_returns_the_targets_as_operator_kwargs_in_order() -> None:
    assert execute(PARAMS) == [
        {"aws_conn_id": "aws_prod", "region_name": "us-east-1"},
        {"aws_conn_id": "aws_prod", "region_name": "eu-west-1"},
        {"aws_conn_id": "aws_dev", "region_name": "us-east-1"},
    ]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"mode": "patch"}, "mode"),
        ({"mode": "install", "artifact_root": "file:///tmp/x"}, "artifact_root"),
        ({"approval_mode": "yes"}, "approval_mode"),
        ({"wave_percentages": [50, 40]}, "wave_percentages"),
        ({"canary": "0"}, "canary"),
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
