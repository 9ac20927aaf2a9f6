"""The watch's first task: its params are validated, and the latest cycle report event is what it compares with."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from patchcycle.assets import PATCH_CYCLE_REPORT
from patchcycle.config import WatchConfig
from patchcycle.operators.last_cycle import LastCycleOperator

PARAMS = {
    "targets": [{"aws_conn_id": "aws_default", "regions": ["us-east-1", "eu-west-1"]}],
    "artifact_root": "s3://patchcycle-artifacts",
    "finding_severities": ["CRITICAL", "HIGH"],
    "config_rule_name": "patchcycle-rule",
}


class Ti:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def context(events: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    return {
        "params": {**PARAMS, **params},
        "inlet_events": {PATCH_CYCLE_REPORT: [SimpleNamespace(extra=extra) for extra in events]},
        "ti": Ti(),
    }


def test_the_latest_event_is_the_cycle_to_compare_with() -> None:
    operator = LastCycleOperator(task_id="last_cycle")
    assert [inlet.name for inlet in operator.inlets] == [PATCH_CYCLE_REPORT.name]
    ctx = context([{"report": "s3://b/old.json", "run_id": "old"}, {"report": "s3://b/new.json", "run_id": "new"}])
    targets = operator.execute(ctx)  # type: ignore[arg-type]
    assert targets == [
        {"aws_conn_id": "aws_default", "region_name": "us-east-1"},
        {"aws_conn_id": "aws_default", "region_name": "eu-west-1"},
    ]
    assert ctx["ti"].pushed["cycle"]["run_id"] == "new"


def test_the_validated_config_is_handed_on() -> None:
    ctx = context([{"report": "s3://b/r.json", "run_id": "r"}], poll_seconds=5)
    LastCycleOperator(task_id="last_cycle").execute(ctx)  # type: ignore[arg-type]
    pushed = ctx["ti"].pushed["config"]
    config = WatchConfig.from_params(pushed)  # what every later task of the watch reads back
    assert config == WatchConfig.from_params({**PARAMS, "poll_seconds": 5}) and config.as_params() == pushed
    assert config.finding_severities == ("CRITICAL", "HIGH") and config.config_rule_name == "patchcycle-rule"
    assert config.poll_seconds == 5.0


def test_no_cycle_yet_leaves_nothing_to_watch() -> None:
    ctx = context([])
    assert LastCycleOperator(task_id="last_cycle").execute(ctx) == []  # type: ignore[arg-type]
    # An empty cycle (not None: Airflow reads a None XCom as missing), and the config all the same.
    assert ctx["ti"].pushed == {"cycle": {}, "config": WatchConfig.from_params(PARAMS).as_params()}


def test_an_event_without_a_report_fails_naming_it() -> None:
    with pytest.raises(AirflowFailException, match="names no report"):
        LastCycleOperator(task_id="last_cycle").execute(context([{"run_id": "x"}]))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"finding_severities": ["SEVERE"]}, "finding_severities[0]"),
        ({"finding_severities": []}, "finding_severities"),
        ({"targets": [{"aws_conn_id": "aws_default", "regions": ["mars-1"]}]}, "targets[0].regions[0]"),
        ({"config_rule_name": ""}, "config_rule_name"),
        ({"artifact_root": "/tmp/x"}, "artifact_root"),
    ],
)
def test_bad_params_fail_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(AirflowFailException, match=rf"invalid params: {re.escape(field)}"):
        LastCycleOperator(task_id="last_cycle").execute(context([{"report": "s3://b/r.json"}], **params))  # type: ignore[arg-type]
