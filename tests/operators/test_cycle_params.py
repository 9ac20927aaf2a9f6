"""CycleParamsOperator: the first task validates the run's params, returns the targets to fan out over and hands
the whole validated config on; installs() and InstallModeGate are the one place the mode is checked."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, DownstreamTasksSkipped

from patchcycle.config import CycleConfig
from patchcycle.operators.cycle_params import CycleParamsOperator, installs
from patchcycle.operators.mode_gate import InstallModeGate

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
    pushed = outputs({**PARAMS, "mode": mode}, run_type)
    assert set(pushed) == {"targets", "config"}  # the config is the only XCom: no separate mode or install keys
    assert pushed["config"]["mode"] == resolved
    # Resolved once: read back by a later task (whatever its own run type), the config keeps the run's mode.
    assert CycleConfig.from_params(pushed["config"]).mode == resolved
    assert installs(pushed["config"]) is (resolved == "install")


def test_install_settings_are_published_for_later_tasks() -> None:
    config = outputs({**PARAMS, "mode": "install", "canary": "2", "wave_percentages": [50, 50]})["config"]
    assert config["canary"] == "2" and config["wave_percentages"] == [50, 50]
    assert config["approval_mode"] == "manual"  # a person approves unless the run asks for the auto policy
    install = CycleConfig.from_params(config).install
    assert str(install.canary) == "2" and install.wave_percentages == (50, 50) and install.approval_mode == "manual"


@pytest.mark.parametrize(
    ("params", "run_type"),
    [
        (PARAMS, "manual"),
        ({**PARAMS, "mode": "default"}, "scheduled"),
        (
            {
                **PARAMS,
                "mode": "install",
                "canary": "10%",
                "halt_threshold": "0",
                "wave_percentages": [20, 30, 50],
                "approval_mode": "auto",
                "scope": {"include_tags": {"Environment": ["production"]}, "exclude_ids": ["i-1"], "exclude_tags": {}},
                "dashboard_name": "",
                "poll_seconds": 0.5,
            },
            "manual",
        ),
    ],
)
def test_the_config_xcom_round_trips_into_the_cycle_config(params: dict[str, Any], run_type: str) -> None:
    pushed = outputs(params, run_type)["config"]
    assert json.loads(json.dumps(pushed)) == pushed  # XCom stores JSON
    config = CycleConfig.from_params(pushed)
    assert config == CycleConfig.from_params(params, run_type=run_type)  # every setting, as validated
    assert config.as_params() == pushed


def test_installs_only_in_install_mode() -> None:
    assert installs(outputs({**PARAMS, "mode": "install"})["config"]) is True
    assert installs(outputs({**PARAMS, "mode": "scan"})["config"]) is False
    assert installs(outputs({**PARAMS, "mode": "default"}, "scheduled")["config"]) is True
    assert installs(outputs({**PARAMS, "mode": "default"}, "manual")["config"]) is False


def gate_run(mode: str) -> tuple[InstallModeGate, Any]:
    """The gate in a DAG shaped like patch_cycle's (the install branch's entry and verify right after it, the
    report further down), run on a config of `mode`; returns the gate and what its execute returned."""
    with DAG("gate", schedule=None):
        gate = InstallModeGate(task_id="install_mode", config=outputs({**PARAMS, "mode": mode})["config"])
        plan_install, verify, report = (EmptyOperator(task_id=t) for t in ("plan_install", "verify", "report"))
        gate >> [plan_install, verify]
        plan_install >> verify >> report
    ti = SimpleNamespace(map_index=-1, pushed={})
    ti.xcom_push = lambda key, value: ti.pushed.__setitem__(key, value)
    return gate, gate.execute({"ti": ti, "task": gate, "dag_run": SimpleNamespace()})  # type: ignore[arg-type]


def test_the_gate_lets_the_install_branch_run_in_install_mode() -> None:
    assert gate_run("install")[1] is True


def test_the_gate_skips_only_the_install_branch_s_entry_and_verify_in_scan_mode() -> None:
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        gate_run("scan")
    # Only its direct downstream: the report (and the rest) follow their own trigger rules.
    assert sorted(skipped.value.tasks) == ["plan_install", "verify"]


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
